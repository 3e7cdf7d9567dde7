//! The reader on images written by nodeimg's own writer, and the
//! documents' determinism.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use nodeimg_image::base::Base;
use nodeimg_image::output::{
    write, Compression, Format as OutFormat, ImageMeta, LayerPlan, OutputOptions,
};
use nodeimg_layers::tree::Origin;
use nodeimg_layers::{FileTree, ImagePath, Node};
use nodeimg_pkg::lock::{LayerKind, LockedPackage};

use crate::{read, Format, Kind};

fn tree(files: &[(&str, &str, &str, &str)]) -> FileTree {
    let mut t = FileTree::new();
    for (path, content, item, key) in files {
        t.insert(
            ImagePath::new(path).unwrap(),
            Node::file(content.as_bytes(), Origin::new(*item, *key)),
        )
        .unwrap();
    }
    t
}

fn status(packages: &[(&str, &str)]) -> String {
    packages
        .iter()
        .map(|(n, v)| {
            format!(
                "Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn locked(name: &str, version: &str) -> LockedPackage {
    LockedPackage {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        multi_arch: String::new(),
        auto: false,
        order: 0,
        source: "http://repo.invalid/debian stable main".into(),
        url: format!("http://repo.invalid/debian/pool/{name}_{version}_amd64.deb"),
        size: 3,
        sha256: "ab".repeat(32),
        units: Vec::new(),
    }
}

/// Three layers: a base with packages a and b, a packages layer that
/// upgrades b and adds c (recorded), a configuration layer that writes a
/// file of its own and replaces one of a's.
#[allow(
    clippy::too_many_lines,
    reason = "the three layers, read top to bottom"
)]
fn image(dir: &Path, last_status: Option<&str>) -> std::path::PathBuf {
    let base_status = status(&[("a", "1.0"), ("b", "1.0")]);
    let copyright = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: me\nLicense: Expat\n";
    let base = tree(&[
        (
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\n",
            "file",
            "file[0]",
        ),
        ("/var/lib/dpkg/status", &base_status, "file", "file[1]"),
        (
            "/var/lib/dpkg/info/a.list",
            "/.\n/usr\n/usr/bin/a\n/usr/share/doc/a/copyright\n",
            "file",
            "file[2]",
        ),
        ("/usr/bin/a", "a 1\n", "packages", "packages"),
        (
            "/usr/share/doc/a/copyright",
            copyright,
            "packages",
            "packages",
        ),
    ]);
    let upgraded = status(&[("a", "1.0"), ("b", "2.0"), ("c", "1.0+b1")]);
    let record = nodeimg_pkg::record::record(
        "pkgs",
        LayerKind::Deb,
        &[locked("b", "2.0"), locked("c", "1.0+b1")],
    );
    let record_path = nodeimg_pkg::record::record_path("pkgs");
    let record_text = String::from_utf8(record.to_bytes()).unwrap();
    let pkgs = tree(&[
        ("/var/lib/dpkg/status", &upgraded, "packages", "packages"),
        ("/usr/bin/b", "b 2\n", "packages", "packages"),
        (
            "/var/lib/dpkg/info/b.list",
            "/.\n/usr/bin/b\n",
            "packages",
            "packages",
        ),
        (&record_path, &record_text, "packages", "packages"),
    ]);
    let mut config = vec![
        ("/etc/app.conf", "x = 1\n", "file", "file[0]"),
        ("/usr/bin/a", "patched\n", "file", "file[1]"),
    ];
    if let Some(s) = last_status {
        config.push(("/var/lib/dpkg/status", s, "file", "file[2]"));
    }
    let out = dir.join("img");
    write(
        &Base::scratch(),
        &[
            LayerPlan {
                name: "base".into(),
                tree: base,
            },
            LayerPlan {
                name: "pkgs".into(),
                tree: pkgs,
            },
            LayerPlan {
                name: "config".into(),
                tree: tree(&config),
            },
        ],
        &ImageMeta {
            name: "n".into(),
            tag: "v1".into(),
            architecture: "amd64".into(),
            labels: Default::default(),
            annotations: Default::default(),
            created: 1_700_000_000,
        },
        &OutputOptions {
            path: out.clone(),
            format: OutFormat::Oci,
            compression: Compression::Gzip,
            force: false,
            cache: None,
        },
    )
    .unwrap();
    out
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn packages_layers_downloads_and_files_of_an_image() {
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path(), None);
    let s = read(&img, None, None).unwrap();
    assert_eq!(s.image.name, "v1");
    assert_eq!(s.image.created, 1_700_000_000);
    assert_eq!(s.image.os.as_ref().unwrap().id, "debian");
    let names: Vec<(&str, &str, Option<usize>)> = s
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.layer))
        .collect();
    assert_eq!(
        names,
        [
            ("a", "1.0", Some(0)),
            ("b", "2.0", Some(1)),
            ("c", "1.0+b1", Some(1))
        ]
    );
    assert!(s.packages.iter().all(|p| p.kind == Kind::Deb));
    let a = &s.packages[0];
    assert_eq!(a.license.as_deref(), Some("MIT"));
    assert_eq!(a.download, None);
    let c = &s.packages[2];
    assert_eq!(s.purl(c), "pkg:deb/debian/c@1.0%2Bb1?arch=amd64");
    let d = c.download.as_ref().unwrap();
    assert_eq!(d.sha256, "ab".repeat(32));
    assert_eq!(d.url, "http://repo.invalid/debian/pool/c_1.0+b1_amd64.deb");

    // Files: no package's own (/usr/bin/b), no database, no record; a's
    // file the configuration layer replaced, with its item.
    let files: Vec<(&str, usize, Option<&str>, Option<&str>)> = s
        .files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.layer,
                f.origin.as_deref(),
                f.package.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/app.conf", 2, Some("file[0]"), None),
            ("/etc/os-release", 0, Some("file[0]"), None),
            ("/usr/bin/a", 2, Some("file[1]"), Some("a")),
        ]
    );
    assert_eq!(s.files[0].sha256, sha256_hex(b"x = 1\n"));
    assert_eq!(s.files[0].size, 6);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn the_same_image_gives_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path(), None);
    for format in [Format::SpdxJson, Format::CycloneDxJson] {
        let one = read(&img, None, None).unwrap().to_json(format);
        let two = read(&img, None, None).unwrap().to_json(format);
        assert_eq!(one, two, "{}", format.name());
        // The time given is the one written, and only it changes.
        let other = read(&img, None, Some(0)).unwrap().to_json(format);
        assert_ne!(one, other);
        let text = String::from_utf8(one).unwrap();
        assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
        assert!(!String::from_utf8(other)
            .unwrap()
            .contains("2023-11-14T22:13:20Z"));
    }
    // Another image, another namespace and serial number.
    let mut s = read(&img, None, None).unwrap();
    let spdx = s.to_json(Format::SpdxJson);
    let cdx = s.to_json(Format::CycloneDxJson);
    s.image.digest = format!("sha256:{}", "0".repeat(64));
    let ns = |b: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        (
            v["documentNamespace"].as_str().map(str::to_string),
            v["serialNumber"].as_str().map(str::to_string),
        )
    };
    assert_ne!(ns(&spdx), ns(&s.to_json(Format::SpdxJson)));
    assert_ne!(ns(&cdx), ns(&s.to_json(Format::CycloneDxJson)));
    let serial = ns(&cdx).1.unwrap();
    assert!(
        serial.starts_with("urn:uuid:") && serial.as_bytes()[23] == b'5',
        "{serial}"
    );
}

#[test]
fn a_damaged_status_is_an_error_and_no_database_gives_files() {
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path(), Some("Package: a\nVersion 1.0\n"));
    let e = read(&img, None, None).unwrap_err().to_string();
    assert!(
        e.starts_with("/var/lib/dpkg/status in the image: line 2:"),
        "{e}"
    );
    // A status that was emptied: no packages, and the files still listed.
    let t = tempfile::tempdir().unwrap();
    let img = image(t.path(), Some(""));
    let s = read(&img, None, None).unwrap();
    assert!(s.packages.is_empty());
    assert!(s.files.iter().any(|f| f.path == "/etc/app.conf"));
    // Not an image at all.
    assert!(read(&t.path().join("missing"), None, None).is_err());
}
