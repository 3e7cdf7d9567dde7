//! Software bills of materials: `build --sbom` and `nodeimg sbom` on images
//! with packages, checked by real validators and against the image itself.
//!
//! - `containerd-debian.toml` built on the fixture base from the seed apt
//!   repositories (`repo::SeedRepos`), and `docker-centos.toml` on the rpm
//!   test base from the generated yum repositories (`rpmrepo::RpmRepos`):
//!   each SBOM passes `pyspdxtools` (SPDX 2.3) and cyclonedx-python-lib's
//!   strict JSON validator (CycloneDX 1.6); the packages' versions, purls,
//!   layers and the SHA-256 of the `.deb`/`.rpm` the repositories serve,
//!   the base's packages, and a configuration file with its recipe item
//!   and SHA-256 are what the image holds; `nodeimg sbom` gives the same
//!   bytes as `build --sbom`.
//! - Negative controls: a document with a required field removed is
//!   refused by each validator; an image without any package database
//!   gives an SBOM of its files; a damaged dpkg status is an error naming
//!   it, with nothing written.
//!
//! The validators live in the virtual environment `scripts/install-test-deps`
//! makes (`build/tools/sbom-venv`).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::repo::{seed_repos, DEBIAN_URL};
use nodeimg_e2e::rpmrepo::rpm_repos;
use nodeimg_e2e::{
    fixture_base, fixture_base_ref, nodeimg, run, sha256_file, skip_or_fail, temp_dir,
    workspace_root, Run,
};
use serde_json::Value;

/// The validators' virtual environment, `None` (skip, or fail under CI)
/// when it was not made.
fn validators() -> Option<PathBuf> {
    let bin = workspace_root().join("build/tools/sbom-venv/bin");
    if bin.join("pyspdxtools").is_file() && bin.join("python").is_file() {
        return Some(bin);
    }
    skip_or_fail(
        "the SBOM validators (spdx-tools, cyclonedx-python-lib[json-validation])",
        "run scripts/install-test-deps (it makes build/tools/sbom-venv)",
    );
    None
}

/// cyclonedx-python-lib's strict JSON validator for CycloneDX 1.6 on the
/// file given: prints the first error's message and exits 1, else 0.
const CDX_VALIDATE: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    data = getattr(error, "data", None)
    print("invalid:", getattr(data, "message", error))
    sys.exit(1)
print("valid")
"#;

fn spdx_check(venv: &Path, file: &Path) -> Run {
    run(Command::new(venv.join("pyspdxtools")).arg("-i").arg(file))
}

fn cdx_check(venv: &Path, file: &Path) -> Run {
    run(Command::new(venv.join("python"))
        .args(["-c", CDX_VALIDATE])
        .arg(file))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Both validators accept the two documents; each refuses its document
/// with a required field removed (`remove` takes it out).
fn validate(venv: &Path, spdx: &Path, cdx: &Path) {
    let r = spdx_check(venv, spdx);
    assert_eq!(r.code, 0, "pyspdxtools refused {}: {r}", spdx.display());
    let r = cdx_check(venv, cdx);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), "valid", "{r}");

    // Negative controls: the validators run and refuse what is broken.
    let dir = spdx.parent().unwrap();
    let mut doc = json(spdx);
    doc["packages"][0].as_object_mut().unwrap().remove("SPDXID");
    let broken = dir.join("broken.spdx.json");
    fs::write(&broken, serde_json::to_vec(&doc).unwrap()).unwrap();
    let r = spdx_check(venv, &broken);
    assert_ne!(
        r.code, 0,
        "pyspdxtools accepted a package without SPDXID: {r}"
    );
    let mut doc = json(cdx);
    doc["metadata"]["component"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let broken = dir.join("broken.cdx.json");
    fs::write(&broken, serde_json::to_vec(&doc).unwrap()).unwrap();
    let r = cdx_check(venv, &broken);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("'name' is a required property"), "{r}");
}

/// (recipe layer name or "", blob digest) of each layer of the single image
/// of the OCI layout `layout`, lowest first.
fn layers(layout: &Path) -> Vec<(String, String)> {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["annotations"]["io.nodeimg.layer"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The bytes of `path` (no leading `/`) in the gzip layer blob `digest`.
fn file_in_layer(layout: &Path, digest: &str, path: &str) -> Vec<u8> {
    let f = fs::File::open(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("{path} is not in layer {digest}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex_of(&sha2::Sha256::digest(bytes))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SPDX package named `name`.
fn spdx_package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no SPDX package {name}"))
}

/// The CycloneDX component named `name`.
fn cdx_component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no CycloneDX component {name}"))
}

/// The value of the property `name` of a CycloneDX component.
fn prop<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
}

/// `nodeimg build` of `recipe` into the OCI layout `out` with both SBOMs;
/// returns their paths.
fn build_with_sboms(
    dir: &Path,
    recipe: &Path,
    base: &str,
    extra: &[String],
    out: &Path,
) -> (PathBuf, PathBuf) {
    let spdx = dir.join("sbom/node.spdx.json");
    let cdx = dir.join("sbom/node.cdx.json");
    run(nodeimg(dir)
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--base", base])
        .args(extra)
        .arg("--sbom")
        .arg(format!("spdx-json={}", spdx.display()))
        .arg("--sbom")
        .arg(format!("cyclonedx-json={}", cdx.display())))
    .ok();
    (spdx, cdx)
}

/// `nodeimg sbom` of `image` gives the bytes `build --sbom` wrote.
fn same_as_sbom_command(dir: &Path, image: &Path, spdx: &Path, cdx: &Path) {
    let r = run(nodeimg(dir).arg("sbom").arg(image)).ok();
    assert_eq!(
        r.stdout.as_bytes(),
        fs::read(spdx).unwrap(),
        "spdx-json differs"
    );
    let again = dir.join("again.cdx.json");
    run(nodeimg(dir)
        .arg("sbom")
        .arg(image)
        .args(["--format", "cyclonedx-json", "-o"])
        .arg(&again))
    .ok();
    assert_eq!(
        fs::read(&again).unwrap(),
        fs::read(cdx).unwrap(),
        "cyclonedx-json differs"
    );
}

/// The copyright file of the base's `base-files`.
const BASE_FILES_COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 1995-2023 The Debian project
License: GPL-2+
";

/// The fixture base (whose packages are unpacked, not registered) with a
/// dpkg database holding `base-files`, which owns `/etc/dpkg/origins/debian`,
/// and its machine-readable copyright file: a base whose packages an SBOM
/// must list.
fn base_with_packages(fixture: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("base.tar");
    let mut b = tar::Builder::new(fs::File::create(&out).unwrap());
    let mut ar = tar::Archive::new(fs::File::open(fixture).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if h.entry_type().is_symlink() || h.entry_type().is_hard_link() {
            let target = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &path, &target).unwrap();
        } else {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            b.append_data(&mut h, &path, &data[..]).unwrap();
        }
    }
    let files: [(&str, &str); 3] = [
        (
            "var/lib/dpkg/status",
            "Package: base-files\nEssential: yes\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n",
        ),
        ("var/lib/dpkg/info/base-files.list", "/.\n/etc\n/etc/dpkg/origins/debian\n"),
        ("usr/share/doc/base-files/copyright", BASE_FILES_COPYRIGHT),
    ];
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    b.finish().unwrap();
    out
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn debian_image() {
    let Some(venv) = validators() else { return };
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let t = temp_dir("sbom-deb");
    let dir = t.path();
    let out = dir.join("node");
    let recipe = workspace_root().join("recipes/containerd-debian.toml");
    let base = base_with_packages(&base, dir);
    let (spdx_file, cdx_file) = build_with_sboms(
        dir,
        &recipe,
        &fixture_base_ref(&base),
        &repos.build_args(),
        &out,
    );
    validate(&venv, &spdx_file, &cdx_file);
    same_as_sbom_command(dir, &out, &spdx_file, &cdx_file);

    let layers = layers(&out);
    let at = |name: &str| layers.iter().position(|(n, _)| n == name).unwrap();
    let (pkgs, cfg) = (at("containerd-packages"), at("containerd"));
    let deb = repos
        .root
        .join("debian/pool/main/c/containerd/containerd_1.6.20~ds1-1+deb12u3_amd64.deb");
    let deb_sha = sha256_file(&deb).trim_start_matches("sha256:").to_string();
    let purl = "pkg:deb/debian/containerd@1.6.20~ds1-1%2Bdeb12u3?arch=amd64";
    let url =
        format!("{DEBIAN_URL}/pool/main/c/containerd/containerd_1.6.20~ds1-1+deb12u3_amd64.deb");

    // SPDX: containerd as nodeimg installed it, over the base's.
    let spdx = json(&spdx_file);
    let c = spdx_package(&spdx, "containerd");
    assert_eq!(c["versionInfo"], "1.6.20~ds1-1+deb12u3");
    assert_eq!(c["externalRefs"][0]["referenceLocator"], purl);
    assert_eq!(c["checksums"][0]["algorithm"], "SHA256");
    assert_eq!(c["checksums"][0]["checksumValue"], deb_sha.as_str());
    assert_eq!(c["downloadLocation"], url.as_str());
    let comment = c["comment"].as_str().unwrap();
    assert_eq!(
        comment,
        format!(
            "arrived in layer {} (containerd-packages, {})",
            pkgs + 1,
            layers[pkgs].1
        )
    );
    assert!(
        c["sourceInfo"]
            .as_str()
            .unwrap()
            .contains(&format!("{DEBIAN_URL} bookworm main")),
        "{c}"
    );
    // A package of the base: layer 1, no download of nodeimg's.
    let b = spdx_package(&spdx, "base-files");
    assert!(
        b["comment"]
            .as_str()
            .unwrap()
            .starts_with("arrived in layer 1 ("),
        "{b}"
    );
    assert_eq!(b["downloadLocation"], "NOASSERTION");
    assert!(b.get("checksums").is_none(), "{b}");
    assert_eq!(b["licenseDeclared"], "GPL-2.0-or-later");
    assert_eq!(
        b["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64"
    );
    assert_eq!(spdx["creationInfo"]["created"], "2024-03-09T16:00:00Z");

    // The recipe's containerd configuration replaces the package's conffile.
    let config = file_in_layer(&out, &layers[cfg].1, "etc/containerd/config.toml");
    let f = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "./etc/containerd/config.toml")
        .expect("the configuration file in the SPDX document");
    assert_eq!(f["checksums"][1]["algorithm"], "SHA256");
    assert_eq!(
        f["checksums"][1]["checksumValue"],
        sha256_hex(&config).as_str()
    );
    let fc = f["comment"].as_str().unwrap();
    assert!(
        fc.starts_with(&format!("written by layer {} (containerd, ", cfg + 1))
            && fc.contains("recipe item containerd;")
            && fc.ends_with("replaces the file of package containerd"),
        "{fc}"
    );

    // CycloneDX says the same.
    let cdx = json(&cdx_file);
    let c = cdx_component(&cdx, "containerd");
    assert_eq!(c["purl"], purl);
    assert_eq!(c["bom-ref"], purl);
    assert_eq!(c["version"], "1.6.20~ds1-1+deb12u3");
    assert_eq!(c["hashes"][0]["content"], deb_sha.as_str());
    assert_eq!(c["externalReferences"][0]["url"], url.as_str());
    assert_eq!(
        prop(c, "nodeimg:layer"),
        Some((pkgs + 1).to_string().as_str())
    );
    assert_eq!(prop(c, "nodeimg:layer:name"), Some("containerd-packages"));
    let f = cdx_component(&cdx, "/etc/containerd/config.toml");
    assert_eq!(f["type"], "file");
    assert_eq!(f["hashes"][1]["content"], sha256_hex(&config).as_str());
    assert_eq!(prop(f, "nodeimg:recipe-item"), Some("containerd"));
    assert_eq!(prop(f, "nodeimg:layer:name"), Some("containerd"));
    assert_eq!(prop(f, "nodeimg:replaces-package-file"), Some("containerd"));
    let names: Vec<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "file")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // A file of the kernel fragment's sysctl item; no package's own file,
    // no package database.
    assert!(
        cdx["components"].as_array().unwrap().iter().any(|c| {
            c["name"].as_str().unwrap().starts_with("/etc/sysctl.d/")
                && prop(c, "nodeimg:recipe-item") == Some("sysctl")
        }),
        "{names:?}"
    );
    assert!(!names.contains(&"/usr/bin/containerd"), "{names:?}");
    assert!(!names.contains(&"/etc/dpkg/origins/debian"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("/var/lib/dpkg/")),
        "{names:?}"
    );
    assert_eq!(cdx["metadata"]["timestamp"], "2024-03-09T16:00:00Z");
    let deps = cdx["dependencies"][0]["dependsOn"].as_array().unwrap();
    assert!(deps.iter().any(|d| d == purl), "{deps:?}");
}

#[test]
fn rpm_image() {
    let Some(venv) = validators() else { return };
    let Some(repos) = rpm_repos() else { return };
    let t = temp_dir("sbom-rpm");
    let dir = t.path();
    let out = dir.join("node");
    let recipe = repos.recipes.join("docker-centos.toml");
    let base = format!("rootfs:{}", repos.base.display());
    let extra = repos.build_args();
    let (spdx_file, cdx_file) = build_with_sboms(dir, &recipe, &base, &extra, &out);
    validate(&venv, &spdx_file, &cdx_file);
    same_as_sbom_command(dir, &out, &spdx_file, &cdx_file);

    let served = walk_files(&repos.served.join("docker"));
    let rpm = served
        .iter()
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with("docker-ce-19.03.11-3.el7.x86_64")
            })
        })
        .expect("the served docker-ce rpm");
    let rpm_sha = sha256_file(rpm).trim_start_matches("sha256:").to_string();
    let layers = layers(&out);
    let docker = layers
        .iter()
        .position(|(n, _)| n == "docker-packages")
        .unwrap();
    let cdx = json(&cdx_file);
    let c = cdx_component(&cdx, "docker-ce");
    assert_eq!(
        c["purl"],
        "pkg:rpm/centos/docker-ce@19.03.11-3.el7?arch=x86_64&epoch=3"
    );
    assert_eq!(c["version"], "19.03.11-3.el7");
    assert_eq!(c["hashes"][0]["content"], rpm_sha.as_str());
    assert_eq!(c["licenses"][0]["expression"], "Apache-2.0");
    assert_eq!(
        prop(c, "nodeimg:layer"),
        Some((docker + 1).to_string().as_str())
    );
    assert_eq!(prop(c, "nodeimg:repository"), Some("docker-ce-stable"));
    // The base's own package: layer 1, not downloaded by nodeimg.
    let b = cdx_component(&cdx, "centos-base");
    assert_eq!(prop(b, "nodeimg:layer"), Some("1"));
    assert!(b.get("hashes").is_none(), "{b}");
    let spdx = json(&spdx_file);
    let p = spdx_package(&spdx, "docker-ce");
    assert_eq!(p["checksums"][0]["checksumValue"], rpm_sha.as_str());
    assert_eq!(p["licenseDeclared"], "Apache-2.0");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A rootfs tar of (path, content) regular files.
fn rootfs(path: &Path, files: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn images_without_or_with_a_damaged_package_database() {
    let Some(venv) = validators() else { return };
    let t = temp_dir("sbom-bad");
    let dir = t.path();

    // No package database at all: an SBOM of the files.
    let plain = dir.join("plain.tar");
    rootfs(
        &plain,
        &[
            ("etc/hostname", b"node\n"),
            ("usr/bin/tool", b"#!/bin/sh\n"),
        ],
    );
    let spdx = dir.join("plain.spdx.json");
    let cdx = dir.join("plain.cdx.json");
    run(nodeimg(dir).arg("sbom").arg(&plain).arg("-o").arg(&spdx)).ok();
    run(nodeimg(dir)
        .arg("sbom")
        .arg(&plain)
        .args(["--format", "cyclonedx-json", "-o"])
        .arg(&cdx))
    .ok();
    validate(&venv, &spdx, &cdx);
    let doc = json(&cdx);
    let comps = doc["components"].as_array().unwrap();
    assert_eq!(comps.len(), 2, "{doc}");
    assert_eq!(comps[0]["name"], "/etc/hostname");
    assert_eq!(
        comps[0]["hashes"][1]["content"],
        sha256_hex(b"node\n").as_str()
    );
    assert_eq!(
        doc["metadata"]["component"]["version"],
        sha256_file(&plain).as_str()
    );

    // A damaged dpkg status: an error naming it, nothing written.
    let bad = dir.join("bad.tar");
    rootfs(
        &bad,
        &[("var/lib/dpkg/status", b"Package: a\nStatus: install ok\n")],
    );
    let target = dir.join("bad.spdx.json");
    let r = run(nodeimg(dir).arg("sbom").arg(&bad).arg("-o").arg(&target));
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("/var/lib/dpkg/status in the image: line 2: field `Status`"),
        "{r}"
    );
    assert!(!r.stderr.contains("panicked"), "{r}");
    assert!(!target.exists());

    // Not an image; a format that does not exist.
    let r = run(nodeimg(dir).arg("sbom").arg(dir.join("missing")));
    assert_eq!(r.code, 1, "{r}");
    let r = run(nodeimg(dir)
        .arg("sbom")
        .arg(&plain)
        .args(["--format", "spdx-tag-value"]));
    assert_eq!(r.code, 2, "{r}");
    let r = run(nodeimg(dir).args(["build", "r.toml", "--sbom", "spdx=x.json"]));
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("unknown SBOM format"), "{r}");
}
