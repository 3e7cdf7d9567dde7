//! Multi-platform builds: `--platform linux/amd64,linux/arm64` (or
//! `image.platforms`) writes one OCI image index, tagged, naming an image
//! per platform, each made on its own base from its own architecture's
//! packages, each locked in its own file; skopeo reads the index and each
//! platform's image, and `push` sends the index to a registry.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::repo::seed_repos;
use nodeimg_e2e::{
    dpkg_base, nodeimg, openssl_key, read_tar, require, run, temp_dir, workspace_root,
};

/// `DIR/r.toml`: a recipe of two platforms, linux/amd64 and linux/arm64,
/// that writes `/etc/arch`.
fn two_platforms(dir: &Path) -> PathBuf {
    let recipe = dir.join("r.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"p\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n[[layer]]\nname = \"a\"\nfile = [{ path = \"/etc/arch\", content = \"${deb_arch}\\n\" }]\n",
    )
    .unwrap();
    recipe
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The file `path` of the image `manifest` (a digest) of `layout`, from
/// the layer that last wrote it.
fn file_of(layout: &Path, manifest: &str, path: &str) -> Option<String> {
    let m = json(&blob(layout, manifest));
    let mut found = None;
    for l in m["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        if let Some(e) = read_tar(&blob(layout, digest))
            .into_iter()
            .find(|e| e.path == path)
        {
            found = Some(String::from_utf8_lossy(&e.data).into_owned());
        }
    }
    found
}

/// The recipe the test builds: the workspace's Docker-on-Ubuntu recipe,
/// copied so that its lock files land in the test's folder.
fn recipe_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("recipes");
    nodeimg_e2e::copy_dir(&workspace_root().join("recipes"), &copy);
    copy.join("docker-ubuntu.toml")
}

#[test]
fn one_index_holds_an_image_per_platform_each_from_its_own_packages() {
    let Some(repos) = seed_repos() else { return };
    if !require("skopeo", "skopeo") {
        return;
    }
    let t = temp_dir("platforms");
    let dir = t.path();
    let recipe = recipe_copy(dir);
    let (amd, arm) = (dpkg_base(dir, "amd64"), dpkg_base(dir, "arm64"));
    let out = dir.join("out");
    let build = |out: &Path, extra: &[&str]| {
        run(nodeimg(dir)
            .arg("build")
            .arg(&recipe)
            .args(["--platform", "linux/amd64,linux/arm64"])
            .arg("--base")
            .arg(format!("linux/amd64=rootfs:{}", amd.display()))
            .arg("--base")
            .arg(format!("linux/arm64=rootfs:{}", arm.display()))
            .arg("-o")
            .arg(out)
            .args(extra)
            .args(repos.build_args()))
    };
    let r = build(&out, &["--json"]);
    assert_eq!(r.code, 0, "{r}");
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();

    // index.json: one entry, the image index, under the recipe's tag.
    let top = json(&out.join("index.json"));
    let entries = top["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{top}");
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let index_digest = entries[0]["digest"].as_str().unwrap();
    assert_eq!(doc["image_digest"], index_digest, "{doc}");
    let index = json(&blob(&out, index_digest));
    let platforms: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let archs: Vec<&str> = platforms.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");
    assert_ne!(platforms[0].1, platforms[1].1);

    skopeo_reads_each_platform(&out, &index, &platforms);
    for (arch, manifest) in &platforms {
        holds_its_own_packages(&out, arch, manifest);
    }
    inspect_and_sbom_read_each_platform(dir, &out, &platforms);
    // The metadata lists each platform.
    let listed: Vec<&str> = doc["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["linux/amd64", "linux/arm64"], "{doc}");

    // The same build again gives the same index.
    let again = dir.join("again");
    let r = build(&again, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), index_digest);
}

#[test]
fn each_platform_is_locked_in_its_own_file() {
    let Some(repos) = seed_repos() else { return };
    let t = temp_dir("platforms-lock");
    let dir = t.path();
    let recipe = recipe_copy(dir);
    let (amd, arm) = (dpkg_base(dir, "amd64"), dpkg_base(dir, "arm64"));
    let bases = [
        format!("--base=linux/amd64=rootfs:{}", amd.display()),
        format!("--base=linux/arm64=rootfs:{}", arm.display()),
    ];
    let r = run(nodeimg(dir)
        .arg("lock")
        .arg(&recipe)
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args(&bases)
        .args(repos.build_args()));
    assert_eq!(r.code, 0, "{r}");
    for arch in ["amd64", "arm64"] {
        let lock = PathBuf::from(format!("{}.{arch}.lock", recipe.display()));
        let text = fs::read_to_string(&lock).unwrap();
        assert!(
            text.contains(&format!("architecture = \"{arch}\"")),
            "{text}"
        );
        assert!(
            text.contains(&format!("containerd.io_1.2.13-2_{arch}.deb")),
            "{arch}: {text}"
        );
        assert!(r.stdout.contains(&lock.display().to_string()), "{r}");
    }
    assert!(!PathBuf::from(format!("{}.lock", recipe.display())).exists());
    let locked_build = |out: &str| {
        run(nodeimg(dir)
            .arg("build")
            .arg(&recipe)
            .args(["--platform", "linux/amd64,linux/arm64", "--locked"])
            .args(&bases)
            .arg("-o")
            .arg(dir.join(out))
            .args(repos.build_args()))
    };
    // --locked builds from those files.
    let r = locked_build("out");
    assert_eq!(r.code, 0, "{r}");
    // Negative control: without the arm64 lock, --locked names it.
    fs::remove_file(format!("{}.arm64.lock", recipe.display())).unwrap();
    let r = locked_build("out2");
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("docker-ubuntu.toml.arm64.lock"), "{r}");
}

#[test]
fn a_base_of_another_architecture_or_platform_is_refused() {
    let t = temp_dir("platforms-bad");
    let dir = t.path();
    let (amd, arm) = (dpkg_base(dir, "amd64"), dpkg_base(dir, "arm64"));
    let recipe = two_platforms(dir);
    let build = |args: &[String]| {
        run(nodeimg(dir)
            .arg("build")
            .arg(&recipe)
            .args(args)
            .arg("-o")
            .arg(dir.join("out")))
    };
    // The amd64 base given to arm64.
    let r = build(&[
        format!("--base=linux/amd64=rootfs:{}", amd.display()),
        format!("--base=linux/arm64=rootfs:{}", amd.display()),
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("is a amd64 system") && r.stderr.contains("the image is arm64"),
        "{r}"
    );
    assert!(!dir.join("out").exists());
    // A platform the build does not make.
    let r = build(&[format!("--base=linux/arm/v7=rootfs:{}", arm.display())]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("has no platform linux/arm/v7"), "{r}");
    // check and lock refuse it the same way.
    for cmd in ["check", "lock"] {
        let r = run(nodeimg(dir)
            .arg(cmd)
            .arg(&recipe)
            .arg(format!("--base=linux/arm/v7=rootfs:{}", arm.display())));
        assert_eq!(r.code, 2, "{cmd}: {r}");
        assert!(
            r.stderr.contains("has no platform linux/arm/v7"),
            "{cmd}: {r}"
        );
    }
    // A rootfs format cannot hold two images.
    let r = build(&[
        format!("--base=linux/amd64=rootfs:{}", amd.display()),
        format!("--base=linux/arm64=rootfs:{}", arm.display()),
        "--format=rootfs".to_string(),
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("one OCI image index"), "{r}");
    // Positive control: the right bases build, as an OCI archive too, and
    // one platform of the recipe's alone is one image.
    let ok = [
        format!("--base=linux/amd64=rootfs:{}", amd.display()),
        format!("--base=linux/arm64=rootfs:{}", arm.display()),
        "--format=oci-archive".to_string(),
    ];
    let r = build(&ok);
    assert_eq!(r.code, 0, "{r}");
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&recipe)
        .args(["--platform", "linux/arm64", "--json"])
        .arg(format!("--base=rootfs:{}", arm.display()))
        .arg("-o")
        .arg(dir.join("one")));
    assert_eq!(r.code, 0, "{r}");
    let top = json(&dir.join("one/index.json"));
    assert_eq!(
        top["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(top["manifests"][0]["platform"]["architecture"], "arm64");
}

#[test]
fn push_sends_the_index_and_each_image() {
    let Some(reg) = nodeimg_e2e::TestRegistry::start() else {
        return;
    };
    if !require("skopeo", "skopeo") {
        return;
    }
    let t = temp_dir("platforms-push");
    let dir = t.path();
    let (amd, arm) = (dpkg_base(dir, "amd64"), dpkg_base(dir, "arm64"));
    let recipe = two_platforms(dir);
    let dest = format!("{}/p:multi", reg.addr);
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&recipe)
        .arg(format!("--base=linux/amd64=rootfs:{}", amd.display()))
        .arg(format!("--base=linux/arm64=rootfs:{}", arm.display()))
        .args(["--insecure-registry", &reg.addr])
        .args(["--push", &dest])
        .arg("-o")
        .arg(dir.join("out")));
    assert_eq!(r.code, 0, "{r}");
    let digest = r.stdout.trim().to_string();
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{dest}")))
    .ok();
    let index: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");
    // skopeo's digest of what the registry serves under the tag: the index.
    let served = nodeimg_e2e::skopeo_digest(&format!("docker://{dest}"));
    assert_eq!(served, digest, "the registry serves another index");
    let r = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--override-arch", "arm64"])
        .arg(format!("docker://{dest}")))
    .ok();
    let i: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(i["Architecture"], "arm64");
    assert_eq!(i["Digest"], digest.as_str());
}

/// skopeo reads the index `out` holds under `latest`, and each platform's
/// image from it (its architecture and layers), and copies them all.
fn skopeo_reads_each_platform(
    out: &Path,
    index: &serde_json::Value,
    platforms: &[(String, String)],
) {
    // skopeo reads the index, and each platform's image from it.
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", out.display())))
    .ok();
    let seen: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(&seen, index, "skopeo reads another index");
    for (arch, manifest) in platforms {
        let r = run(Command::new("skopeo")
            .args(["inspect", "--override-arch", arch])
            .arg(format!("oci:{}:latest", out.display())))
        .ok();
        let i: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(i["Architecture"], arch.as_str(), "{r}");
        let layers: Vec<serde_json::Value> = json(&blob(out, manifest))["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].clone())
            .collect();
        assert_eq!(i["Layers"], serde_json::Value::from(layers), "{arch}: {r}");
    }
    let copy = out.with_file_name("copy");
    run(Command::new("skopeo")
        .args(["copy", "--all", "--quiet"])
        .arg(format!("oci:{}:latest", out.display()))
        .arg(format!("oci:{}:latest", copy.display())))
    .ok();
}

/// The image `manifest` of `out` holds `arch`'s packages: the file the
/// package of that architecture ships, the dpkg status says so, and so
/// does its config.
fn holds_its_own_packages(out: &Path, arch: &str, manifest: &str) {
    let containerd = file_of(out, manifest, "/usr/bin/containerd").unwrap();
    assert!(
        containerd.contains(&format!("containerd.io 1.2.13-2 ({arch})")),
        "{arch}: {containerd}"
    );
    let status = file_of(out, manifest, "/var/lib/dpkg/status").unwrap();
    let stanza = status
        .split("\n\n")
        .find(|s| s.starts_with("Package: containerd.io\n"))
        .unwrap_or_else(|| panic!("{arch}: no containerd.io in\n{status}"));
    assert!(
        stanza.contains(&format!("\nArchitecture: {arch}\n")),
        "{arch}: {stanza}"
    );
    let config = json(&blob(
        out,
        json(&blob(out, manifest))["config"]["digest"]
            .as_str()
            .unwrap(),
    ));
    assert_eq!(config["architecture"], arch);
}

/// `inspect` and `sbom` read one platform's image of the index `out`
/// with `--platform`; `inspect` without it is refused, naming the flag.
fn inspect_and_sbom_read_each_platform(dir: &Path, out: &Path, platforms: &[(String, String)]) {
    for (arch, manifest) in platforms {
        let r = run(nodeimg(dir).arg("inspect").arg(out).args([
            "--platform",
            &format!("linux/{arch}"),
            "--json",
        ]))
        .ok();
        let i: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(i["architecture"], arch.as_str(), "{r}");
        assert_eq!(i["manifest_digest"], manifest.as_str(), "{r}");
    }
    let r = run(nodeimg(dir).arg("inspect").arg(out));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("pick one with --platform"), "{r}");
    let r = run(nodeimg(dir)
        .arg("sbom")
        .arg(out)
        .args(["--platform", "linux/arm64"]))
    .ok();
    assert!(
        r.stdout.contains("containerd.io") && r.stdout.contains("arm64"),
        "{r}"
    );
}

/// The in-toto statement of the only attestation of `digest` in the
/// repository `repo` of `reg`.
fn statement(reg: &nodeimg_e2e::TestRegistry, repo: &str, digest: &str) -> serde_json::Value {
    use base64::Engine as _;
    let att = format!("{repo}:{}.att", digest.replace(':', "-"));
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(reg.docker_ref(&att)))
    .ok();
    let m: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(reg.blob_data(layer)).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn a_signed_index_carries_the_provenance_of_every_platform() {
    let Some(repos) = seed_repos() else { return };
    let Some(reg) = nodeimg_e2e::TestRegistry::start() else {
        return;
    };
    if !require("skopeo", "skopeo") || !require("openssl", "openssl") {
        return;
    }
    let t = temp_dir("platforms-sign");
    let dir = t.path();
    let recipe = recipe_copy(dir);
    let (amd, arm) = (dpkg_base(dir, "amd64"), dpkg_base(dir, "arm64"));
    let (key, public) = openssl_key(dir, "a", "P-256");
    let (_, other) = openssl_key(dir, "b", "P-256");
    let args = [
        "--platform=linux/amd64,linux/arm64".to_string(),
        format!("--base=linux/amd64=rootfs:{}", amd.display()),
        format!("--base=linux/arm64=rootfs:{}", arm.display()),
    ];
    run(nodeimg(dir)
        .arg("lock")
        .arg(&recipe)
        .args(&args)
        .args(repos.build_args()))
    .ok();
    let dest = format!("{}/nodes/docker:multi", reg.addr);
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&recipe)
        .args(&args)
        .args([
            "--locked",
            "--insecure-registry",
            &reg.addr,
            "--push",
            &dest,
        ])
        .arg("--sign-key")
        .arg(&key)
        .arg("-o")
        .arg(dir.join("out"))
        .args(repos.build_args()))
    .ok();
    let digest = r.stdout.trim().to_string();
    let verify = |public: &Path| {
        run(nodeimg(dir)
            .args([
                "verify",
                "--json",
                "--attestations",
                "--insecure-registry",
                &reg.addr,
            ])
            .arg(&dest)
            .arg("--key")
            .arg(public))
    };
    let v = verify(&public);
    assert_eq!(v.code, 0, "{v}");
    let doc: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        doc["digest"],
        digest.as_str(),
        "the index is what is signed"
    );
    // Negative control: another key verifies nothing.
    assert_eq!(verify(&other).code, 1);

    // The provenance names the index, each platform's base and lock, and
    // the packages of both architectures.
    let st = statement(&reg, "nodes/docker", &digest);
    assert_eq!(st["subject"][0]["digest"]["sha256"], &digest[7..]);
    provenance_of_both_platforms(&st["predicate"]["buildDefinition"]);
}

/// The build definition of a provenance of a linux/amd64 and linux/arm64
/// build of `docker-ubuntu.toml`, locked: both platforms, their bases,
/// their locks and the containerd.io of each architecture.
fn provenance_of_both_platforms(bd: &serde_json::Value) {
    assert_eq!(
        bd["externalParameters"]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(bd["internalParameters"]["locked"], true);
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let names: Vec<&str> = deps.iter().filter_map(|d| d["name"].as_str()).collect();
    for n in ["base linux/amd64", "base linux/arm64"] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let locks: Vec<&str> = deps
        .iter()
        .filter(|d| d["name"] == "lock")
        .filter_map(|d| d["uri"].as_str())
        .collect();
    assert_eq!(locks.len(), 2, "{locks:?}");
    assert!(locks[0].ends_with(".amd64.lock") && locks[1].ends_with(".arm64.lock"));
    for arch in ["amd64", "arm64"] {
        assert!(
            deps.iter().any(|d| d["name"] == "containerd.io"
                && d["annotations"]["architecture"] == arch
                && d["uri"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&format!("_{arch}.deb")))),
            "no {arch} containerd.io in {deps:?}"
        );
    }
}
