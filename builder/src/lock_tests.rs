//! The lock file with the rules of both package backends.

#![allow(clippy::unwrap_used)]
use std::path::Path;

use nodeimg_pkg::error::{Error, RecipeError};
use nodeimg_pkg::lock::*;
use nodeimg_recipe::recipe::Recipe;

use crate::packages::LOCK_RULES;
use std::collections::BTreeMap as Map;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn pkg(name: &str, version: &str, order: usize, sha: &str) -> LockedPackage {
    LockedPackage {
        name: name.into(),
        version: version.into(),
        architecture: "all".into(),
        multi_arch: "no".into(),
        auto: order == 0,
        order,
        source: "http://repo.invalid/debian stable main".into(),
        url: format!("http://repo.invalid/debian/pool/main/d/{name}_{version}_all.deb"),
        size: 100 + order as u64,
        sha256: sha.into(),
        units: Vec::new(),
    }
}

pub(crate) fn sample() -> Lock {
    Lock::new(
        "amd64",
        vec![
            LockedFile {
                url: "http://repo.invalid/debian/dists/stable/InRelease".into(),
                size: 10,
                sha256: SHA_B.into(),
            },
            LockedFile {
                url: "http://a.invalid/InRelease".into(),
                size: 11,
                sha256: SHA_A.into(),
            },
            LockedFile {
                url: "http://a.invalid/InRelease".into(),
                size: 11,
                sha256: SHA_A.into(),
            },
        ],
        vec![LockedFile {
            url: "http://repo.invalid/debian/dists/stable/main/binary-amd64/Packages".into(),
            size: 12,
            sha256: SHA_A.into(),
        }],
        vec![LockedLayer {
            name: "runtime".into(),
            kind: LayerKind::Deb,
            requests: vec!["demo-runtime".into(), "demo-tools=1:2.0~rc1-1".into()],
            dpkg_status: SHA_A.into(),
            rpmdb: String::new(),
            repos: vec![],
            sources: vec![LockedSource {
                file: "/etc/apt/sources.list.d/demo.sources".into(),
                uris: vec!["http://repo.invalid/debian".into()],
                suites: vec!["stable".into()],
                components: vec!["main".into()],
                keys: vec!["0123ABCD".into()],
            }],
            packages: vec![
                pkg("demo-tools", "1:2.0~rc1-1", 2, SHA_B),
                pkg("demo-lib", "1.0-1", 0, SHA_A),
                LockedPackage {
                    units: vec![
                        "/lib/systemd/system/demo.socket".into(),
                        "/lib/systemd/system/demo.service".into(),
                    ],
                    ..pkg("demo-runtime", "2.0-1", 1, SHA_B)
                },
            ],
        }],
    )
}

#[test]
fn canonical_order_and_exact_text() {
    let lock = sample();
    let urls: Vec<&str> = lock.releases.iter().map(|f| f.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://a.invalid/InRelease",
            "http://repo.invalid/debian/dists/stable/InRelease"
        ]
    );
    let names: Vec<&str> = lock.layers[0]
        .packages
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["demo-lib", "demo-runtime", "demo-tools"]);
    let order: Vec<&str> = lock.layers[0]
        .in_order()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(order, ["demo-lib", "demo-runtime", "demo-tools"]);
    let text = lock.render().unwrap();
    assert!(text.starts_with("# Written by `nodeimg lock`"), "{text}");
    let expected_tail = format!(
        "[[layer.package]]\nname = \"demo-tools\"\nversion = \"1:2.0~rc1-1\"\narchitecture = \"all\"\nmulti-arch = \"no\"\nauto = false\norder = 2\nsource = \"http://repo.invalid/debian stable main\"\nurl = \"http://repo.invalid/debian/pool/main/d/demo-tools_1:2.0~rc1-1_all.deb\"\nsize = 102\nsha256 = \"{SHA_B}\"\n"
    );
    assert!(text.ends_with(&expected_tail), "{text}");
    // A package's unit files, sorted; none: no key.
    assert!(
        text.contains(&format!("size = 101\nsha256 = \"{SHA_B}\"\nunits = [\"/lib/systemd/system/demo.service\", \"/lib/systemd/system/demo.socket\"]\n")),
        "{text}"
    );
    assert_eq!(text.matches("units = ").count(), 1, "{text}");
    assert!(
        text.contains("\nversion = 2\narchitecture = \"amd64\"\n\n[[release]]\nurl = \"http://a.invalid/InRelease\"\nsize = 11\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("[[layer]]\nname = \"runtime\"\nrequests = [\"demo-runtime\", \"demo-tools=1:2.0~rc1-1\"]\ndpkg-status = \"{SHA_A}\"\n\n[[layer.source]]\nfile = \"/etc/apt/sources.list.d/demo.sources\"\n")),
        "{text}"
    );
    // Deterministic: the same lock, the same bytes.
    assert_eq!(text, sample().render().unwrap());
}

#[test]
fn round_trip() {
    let lock = sample();
    let text = lock.render().unwrap();
    let back = Lock::parse(&text, Path::new("r.toml.lock"), LOCK_RULES).unwrap();
    assert_eq!(back, lock);
    assert_eq!(back.render().unwrap(), text);
    let d = tempfile::tempdir().unwrap();
    let path = lock_path(&d.path().join("r.toml"));
    assert_eq!(path, d.path().join("r.toml.lock"));
    assert_eq!(Lock::read(&path, LOCK_RULES).unwrap(), None);
    lock.write(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(Lock::read(&path, LOCK_RULES).unwrap(), Some(lock));
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["r.toml.lock"], "no temporary file is left");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    assert_eq!(lock_path(Path::new("x.toml")), Path::new("x.toml.lock"));
}

#[test]
fn version_1_locks_are_read_without_units() {
    let v2 = sample().render().unwrap();
    let units = v2
        .lines()
        .find(|l| l.starts_with("units = "))
        .unwrap()
        .to_string();
    let v1 =
        v2.replacen("version = 2\n", "version = 1\n", 1)
            .replacen(&format!("{units}\n"), "", 1);
    let lock = Lock::parse(&v1, Path::new("r.toml.lock"), LOCK_RULES).unwrap();
    assert_eq!(lock.version, 1);
    assert!(!lock.records_units());
    assert!(lock.packages().all(|(_, p)| p.units.is_empty()));
    assert!(sample().records_units());
}

fn parse_err(text: &str) -> RecipeError {
    match Lock::parse(text, Path::new("r.toml.lock"), LOCK_RULES).unwrap_err() {
        Error::Recipe(r) => *r,
        e => panic!("{e}"),
    }
}

#[test]
fn invalid_locks_are_refused_with_their_place() {
    let good = sample().render().unwrap();
    // A SHA256 that is not one.
    let bad = good.replacen(
        &format!("sha256 = \"{SHA_A}\"\n\n[[layer.package]]"),
        "sha256 = \"xyz\"\n\n[[layer.package]]",
        1,
    );
    assert_ne!(bad, good);
    let e = parse_err(&bad);
    assert_eq!(e.file, Path::new("r.toml.lock"));
    assert_eq!(e.key.as_deref(), Some("layer[0].package[0].sha256"));
    assert!(
        e.message.contains("\"xyz\" is not a SHA256"),
        "{}",
        e.message
    );
    let line = bad.lines().position(|l| l == "sha256 = \"xyz\"").unwrap() + 1;
    assert_eq!(e.line, Some(line));
    assert!(e.hint.unwrap().contains("nodeimg lock"));
    // Uppercase hex is not the canonical spelling.
    let e = parse_err(&good.replace(SHA_B, &SHA_B.to_uppercase()));
    assert!(e.key.unwrap().ends_with(".sha256"));
    // Another version.
    let e = parse_err(&good.replacen("version = 2\n", "version = 3\n", 1));
    assert_eq!(e.key.as_deref(), Some("version"));
    assert!(
        e.message.contains("version 3 is not supported"),
        "{}",
        e.message
    );
    // Units in a version 1 lock, which does not record them.
    let e = parse_err(&good.replacen("version = 2\n", "version = 1\n", 1));
    assert_eq!(e.key.as_deref(), Some("layer[0].package[1].units"));
    // A unit file outside the unit folders, or not a unit's name.
    for bad in [
        "/etc/demo.service",
        "/lib/systemd/system/demo.conf",
        "demo.service",
    ] {
        let e = parse_err(&good.replacen("/lib/systemd/system/demo.socket", bad, 1));
        assert_eq!(
            e.key.as_deref(),
            Some("layer[0].package[1].units[1]"),
            "{bad}"
        );
        assert!(e.message.contains("is not a unit file"), "{}", e.message);
    }
    // Unknown keys are errors, with their line.
    let e = parse_err(&good.replacen("version = 2\n", "version = 2\nextra = true\n", 1));
    assert!(e.message.contains("extra"), "{}", e.message);
    assert!(e.line.is_some());
    // Broken TOML.
    let e = parse_err("version = \n");
    assert_eq!(e.line, Some(1));
    // A repeated order.
    let e = parse_err(&good.replace("order = 2\n", "order = 1\n"));
    assert!(e.key.unwrap().ends_with(".order"));
    // A version dpkg would not accept.
    let e = parse_err(&good.replace("version = \"1.0-1\"", "version = \"not a version\""));
    assert!(e.key.unwrap().ends_with(".version"));
    // Another architecture than the lock's.
    let e = parse_err(&good.replacen("architecture = \"all\"", "architecture = \"arm64\"", 1));
    assert!(e.message.contains("is for arm64"), "{}", e.message);
    // A URL scheme that is not fetched.
    let e = parse_err(&good.replacen(
        "url = \"http://a.invalid/InRelease\"",
        "url = \"ftp://a/InRelease\"",
        1,
    ));
    assert_eq!(e.key.as_deref(), Some("release[0].url"));
    let e = parse_err(&good.replacen("multi-arch = \"no\"", "multi-arch = \"maybe\"", 1));
    assert!(e.key.unwrap().ends_with(".multi-arch"));
}

#[test]
fn request_changes_are_named() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let locked = s(&["a", "b=1.0", "c=2"]);
    assert!(diff_requests(&locked, &locked).is_empty());
    let d = diff_requests(&locked, &s(&["a=3", "b=1.1", "d"]));
    assert_eq!(
        d,
        vec![
            Change::Changed {
                index: 0,
                locked: "a".into(),
                now: "a=3".into()
            },
            Change::Changed {
                index: 1,
                locked: "b=1.0".into(),
                now: "b=1.1".into()
            },
            Change::Added {
                index: 2,
                text: "d".into()
            },
            Change::Removed { text: "c=2".into() },
        ]
    );
    assert_eq!(d[1].key(), "packages[1]");
    assert_eq!(
        d[1].to_string(),
        "\"b=1.1\" was \"b=1.0\" when the lock was made"
    );
    assert_eq!(d[3].key(), "packages");
    assert_eq!(d[3].to_string(), "\"c=2\" was removed");
    assert_eq!(
        diff_requests(&locked, &s(&["c=2", "a", "b=1.0"])),
        vec![Change::Reordered]
    );
    assert_eq!(
        diff_requests(&locked, &s(&["a", "b"])),
        vec![
            Change::Changed {
                index: 1,
                locked: "b=1.0".into(),
                now: "b".into()
            },
            Change::Removed { text: "c=2".into() }
        ]
    );
}

#[test]
fn source_changes_are_named() {
    let a = sample().layers[0].sources.clone();
    assert!(diff_sources(&a, &a).is_empty());
    let mut b = a.clone();
    b[0].uris = vec!["http://other.invalid/debian".into()];
    b[0].keys = vec!["FFFF".into()];
    assert_eq!(
        diff_sources(&a, &b),
        ["/etc/apt/sources.list.d/demo.sources: URIs http://repo.invalid/debian -> http://other.invalid/debian, Signed-By keys 0123ABCD -> FFFF"]
    );
    assert_eq!(
        diff_sources(&a, &[]),
        ["/etc/apt/sources.list.d/demo.sources (http://repo.invalid/debian stable) was removed"]
    );
    assert_eq!(
        diff_sources(&[], &a),
        ["/etc/apt/sources.list.d/demo.sources (http://repo.invalid/debian stable) was added"]
    );
}

fn recipe(text: &str) -> (tempfile::TempDir, Recipe) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("r.toml"), text).unwrap();
    let r = nodeimg_recipe::recipe::Loaded::load(&d.path().join("r.toml"))
        .unwrap()
        .expand("amd64", &Map::new(), &Map::new())
        .unwrap();
    (d, r)
}

fn check_err(lock: &Lock, r: &Recipe, arch: &str) -> RecipeError {
    match check_recipe(lock, Path::new("r.toml.lock"), r, arch).unwrap_err() {
        Error::Recipe(e) => *e,
        e => panic!("{e}"),
    }
}

#[test]
fn recipe_against_lock() {
    let lock = sample();
    let head = "[image]\nname = \"n\"\n[[layer]]\nname = \"base\"\n";
    let (_d, same) = recipe(&format!(
        "{head}[[layer]]\nname = \"runtime\"\npackages = [\"demo-runtime\", \"demo-tools=1:2.0~rc1-1\"]\n"
    ));
    check_recipe(&lock, Path::new("r.toml.lock"), &same, "amd64").unwrap();

    // Another architecture.
    let e = check_err(&lock, &same, "arm64");
    assert_eq!(e.key.as_deref(), Some("architecture"));
    assert!(
        e.message.contains("made for amd64, the image is arm64"),
        "{}",
        e.message
    );

    // A pin changed: the recipe's line and key, both texts, the hint.
    let (_d, pinned) = recipe(&format!(
        "{head}[[layer]]\nname = \"runtime\"\npackages = [\n  \"demo-runtime\",\n  \"demo-tools=1:2.1-1\",\n]\n"
    ));
    let e = check_err(&lock, &pinned, "amd64");
    assert!(e.file.ends_with("r.toml"), "{}", e.file.display());
    assert_eq!(e.key.as_deref(), Some("layer[1].packages[1]"));
    assert_eq!(e.line, Some(9));
    assert_eq!(
        e.message,
        "the packages of layer \"runtime\" no longer match r.toml.lock: \"demo-tools=1:2.1-1\" was \"demo-tools=1:2.0~rc1-1\" when the lock was made"
    );
    assert!(e.hint.unwrap().starts_with("run `nodeimg lock "));

    // A pin removed from the list.
    let (_d, fewer) = recipe(&format!(
        "{head}[[layer]]\nname = \"runtime\"\npackages = [\"demo-runtime\"]\n"
    ));
    let e = check_err(&lock, &fewer, "amd64");
    assert_eq!(e.key.as_deref(), Some("layer[1].packages"));
    assert!(
        e.message.contains("\"demo-tools=1:2.0~rc1-1\" was removed"),
        "{}",
        e.message
    );

    // The layer renamed.
    let (_d, renamed) = recipe(&format!(
        "{head}[[layer]]\nname = \"containers\"\npackages = [\"demo-runtime\", \"demo-tools=1:2.0~rc1-1\"]\n"
    ));
    let e = check_err(&lock, &renamed, "amd64");
    assert_eq!(e.key.as_deref(), Some("layer[1].packages"));
    assert!(
        e.message.contains("layer \"containers\" installs packages but r.toml.lock has no layer of that name (it has: runtime)"),
        "{}",
        e.message
    );

    // The packages dropped altogether.
    let (_d, none) = recipe(head);
    let e = check_err(&lock, &none, "amd64");
    assert!(
        e.message
            .contains("locks packages for layer \"runtime\", which the recipe no longer has"),
        "{}",
        e.message
    );
}

fn rpm_layer() -> LockedLayer {
    LockedLayer {
        name: "docker".into(),
        kind: LayerKind::Rpm,
        requests: vec!["docker-ce-19.03.11".into()],
        dpkg_status: String::new(),
        rpmdb: SHA_B.into(),
        sources: vec![],
        repos: vec![LockedRepo {
            file: "/etc/yum.repos.d/docker-ce.repo".into(),
            id: "docker-ce-stable".into(),
            baseurl: "https://download.example/linux/centos/7/x86_64/stable".into(),
            gpgcheck: true,
            repo_gpgcheck: true,
            gpgkeys: vec!["https://download.example/linux/centos/gpg".into()],
        }],
        packages: vec![
            LockedPackage {
                name: "docker-ce".into(),
                version: "3:19.03.11-3.el7".into(),
                architecture: "x86_64".into(),
                multi_arch: String::new(),
                auto: false,
                order: 1,
                source: "docker-ce-stable".into(),
                url: "https://download.example/linux/centos/7/x86_64/stable/Packages/docker-ce-19.03.11-3.el7.x86_64.rpm".into(),
                size: 200,
                sha256: SHA_A.into(),
                units: Vec::new(),
            },
            LockedPackage {
                name: "container-selinux".into(),
                version: "2:2.119.2-1.911c772.el7_8".into(),
                architecture: "noarch".into(),
                multi_arch: String::new(),
                auto: true,
                order: 0,
                source: "docker-ce-stable".into(),
                url: "https://download.example/linux/centos/7/x86_64/stable/Packages/container-selinux.noarch.rpm".into(),
                size: 100,
                sha256: SHA_B.into(),
                units: Vec::new(),
            },
        ],
    }
}

fn rpm_sample() -> Lock {
    let mut layers = sample().layers;
    layers.push(rpm_layer());
    Lock::new(
        "amd64",
        vec![LockedFile {
            url: "https://download.example/linux/centos/7/x86_64/stable/repodata/repomd.xml".into(),
            size: 3000,
            sha256: SHA_A.into(),
        }],
        vec![LockedFile {
            url: "https://download.example/linux/centos/7/x86_64/stable/repodata/primary.xml.gz"
                .into(),
            size: 4000,
            sha256: SHA_B.into(),
        }],
        layers,
    )
}

#[test]
fn rpm_layers_round_trip_beside_debian_ones() {
    let lock = rpm_sample();
    let text = lock.render().unwrap();
    // The Debian layer is written as before (no kind, no rpm keys).
    assert!(
        text.contains(&format!("[[layer]]\nname = \"runtime\"\nrequests = [\"demo-runtime\", \"demo-tools=1:2.0~rc1-1\"]\ndpkg-status = \"{SHA_A}\"\n\n[[layer.source]]")),
        "{text}"
    );
    assert!(
        text.contains(&format!("[[layer]]\nname = \"docker\"\nkind = \"rpm\"\nrequests = [\"docker-ce-19.03.11\"]\nrpmdb = \"{SHA_B}\"\n\n[[layer.repo]]\nfile = \"/etc/yum.repos.d/docker-ce.repo\"\nid = \"docker-ce-stable\"\nbaseurl = \"https://download.example/linux/centos/7/x86_64/stable\"\ngpgcheck = true\nrepo-gpgcheck = true\ngpgkeys = [\"https://download.example/linux/centos/gpg\"]\n\n[[layer.package]]\nname = \"container-selinux\"\nversion = \"2:2.119.2-1.911c772.el7_8\"\narchitecture = \"noarch\"\nauto = true\norder = 0\nsource = \"docker-ce-stable\"\n")),
        "{text}"
    );
    assert!(!text.contains("multi-arch = \"\""), "{text}");
    let back = Lock::parse(&text, Path::new("r.toml.lock"), LOCK_RULES).unwrap();
    assert_eq!(back, lock);
    assert_eq!(back.render().unwrap(), text);
    let order: Vec<&str> = back.layers[1]
        .in_order()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(order, ["container-selinux", "docker-ce"]);
    assert_eq!(
        nodeimg_rpm::locked_evr(&back.layers[1].packages[1]).unwrap(),
        nodeimg_rpm::version::Evr::new(3, "19.03.11", Some("3.el7"))
    );
    // A lock written before rpm layers existed still reads as Debian.
    assert_eq!(
        Lock::parse(
            &sample().render().unwrap(),
            Path::new("r.toml.lock"),
            LOCK_RULES
        )
        .unwrap()
        .layers[0]
            .kind,
        LayerKind::Deb
    );
}

#[test]
fn invalid_rpm_layers_are_refused() {
    let good = rpm_sample().render().unwrap();
    let e = parse_err(&good.replace(
        "version = \"3:19.03.11-3.el7\"",
        "version = \"19.03.11-3.el7\"",
    ));
    assert_eq!(e.key.as_deref(), Some("layer[1].package[1].version"));
    assert!(e.message.contains("no epoch"), "{}", e.message);
    let e = parse_err(&good.replace("version = \"3:19.03.11-3.el7\"", "version = \"3:19.03.11\""));
    assert!(e.message.contains("no release"), "{}", e.message);
    let e = parse_err(&good.replace("architecture = \"x86_64\"", "architecture = \"aarch64\""));
    assert_eq!(e.key.as_deref(), Some("layer[1].package[1].architecture"));
    assert!(
        e.message
            .contains("is for aarch64, the lock for x86_64 (amd64)"),
        "{}",
        e.message
    );
    let e = parse_err(&good.replace(&format!("rpmdb = \"{SHA_B}\""), "rpmdb = \"x\""));
    assert_eq!(e.key.as_deref(), Some("layer[1].rpmdb"));
    let e = parse_err(&good.replace(
        "order = 0\nsource = \"docker-ce-stable\"",
        "multi-arch = \"no\"\norder = 0\nsource = \"docker-ce-stable\"",
    ));
    assert!(e.key.unwrap().ends_with(".multi-arch"));
    // A Debian layer without its dpkg status, an rpm one with one.
    let e = parse_err(&good.replacen(&format!("dpkg-status = \"{SHA_A}\"\n"), "", 1));
    assert_eq!(e.key.as_deref(), Some("layer[0].dpkg-status"));
    let e = parse_err(&good.replace("kind = \"rpm\"\n", "kind = \"rpm\"\ndpkg-status = \"x\"\n"));
    assert_eq!(e.key.as_deref(), Some("layer[1].kind"));
    let e = parse_err(&good.replace("kind = \"rpm\"", "kind = \"apk\""));
    assert!(e.message.contains("apk"), "{}", e.message);
    let e = parse_err(&good.replace("baseurl = \"https://", "baseurl = \"ftp://"));
    assert_eq!(e.key.as_deref(), Some("layer[1].repo[0].baseurl"));
}

#[test]
fn rpm_request_changes_are_named_by_package() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let locked = s(&["docker-ce-19.03.11", "cri-o"]);
    assert!(diff_requests_of(LayerKind::Rpm, &locked, &locked).is_empty());
    assert_eq!(
        diff_requests_of(LayerKind::Rpm, &locked, &s(&["docker-ce-20.10.0", "cri-o"])),
        vec![Change::Changed {
            index: 0,
            locked: "docker-ce-19.03.11".into(),
            now: "docker-ce-20.10.0".into()
        }]
    );
    // Read as Debian requests these would be two other packages.
    assert_eq!(
        diff_requests_of(LayerKind::Deb, &locked, &s(&["docker-ce-20.10.0", "cri-o"])).len(),
        2
    );
}

#[test]
fn repo_changes_are_named() {
    let a = rpm_layer().repos;
    assert!(diff_repos(&a, &a).is_empty());
    let mut b = a.clone();
    b[0].baseurl = "https://other.example/centos".into();
    b[0].repo_gpgcheck = false;
    assert_eq!(
        diff_repos(&a, &b),
        ["[docker-ce-stable] in /etc/yum.repos.d/docker-ce.repo: baseurl https://download.example/linux/centos/7/x86_64/stable -> https://other.example/centos, repo_gpgcheck true -> false"]
    );
    assert_eq!(
        diff_repos(&a, &[]),
        ["[docker-ce-stable] in /etc/yum.repos.d/docker-ce.repo (https://download.example/linux/centos/7/x86_64/stable) was removed"]
    );
}

#[test]
fn rpmdb_digest_is_of_the_sorted_set() {
    let a = vec!["b-0:1-1.noarch".to_string(), "a-0:1-1.x86_64".to_string()];
    let b = vec!["a-0:1-1.x86_64".to_string(), "b-0:1-1.noarch".to_string()];
    assert_eq!(rpmdb_digest(&a), rpmdb_digest(&b));
    assert_ne!(rpmdb_digest(&a), rpmdb_digest(&a[..1]));
    assert_eq!(
        rpmdb_digest(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
