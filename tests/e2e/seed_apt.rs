//! The apt seed recipes, built for real: their packages come from the
//! signed test repositories of `nodeimg_e2e::repo`, served on 127.0.0.1
//! and reached through `--mirror FROM=TO,key=FILE` (a mirror that re-signs
//! with the test key). The image is checked with the real tools on the
//! unpacked rootfs: `dpkg --root -l`, `--verify`, `--audit` and
//! `systemctl --root is-enabled`.

use std::fs;
use std::path::Path;
use std::process::Command;

use nodeimg_e2e::repo::{http_get, seed_repos, RepoServer, SeedRepos};
use nodeimg_e2e::{
    extract_tar, fixture_base, fixture_base_ref, nodeimg, require, run, temp_dir, workspace_root,
    Run,
};

/// One seed recipe and what its image must hold.
struct Seed {
    recipe: &'static str,
    /// Every package `dpkg -l` lists as `ii`: (name, version, architecture).
    installed: &'static [(&'static str, &'static str, &'static str)],
    /// The exact `dpkg --verify` output: conffiles the recipe replaces on
    /// purpose.
    verify: &'static str,
    /// The unit that must be enabled.
    unit: &'static str,
    /// (path, text it contains): a file of the right architecture.
    probe: (&'static str, &'static str),
}

const CONTAINERD_CONFIG_REPLACED: &str = "??5?????? c /etc/containerd/config.toml\n";

/// The CRI-O seed on amd64; Debian 10 installs the very same packages.
const CRIO_UBUNTU: Seed = Seed {
    recipe: "crio-ubuntu.toml",
    installed: &[
        ("conmon", "2.0.16~1", "amd64"),
        ("containers-golang", "0.1.0~1", "all"),
        ("cri-o-1.17", "1.17.4~1", "amd64"),
        ("cri-o-runc", "1.0.0~rc10~1", "amd64"),
    ],
    verify: "",
    unit: "crio.service",
    probe: ("usr/bin/crio", "crio 1.17.4~1 (amd64)"),
};

const SEEDS: &[Seed] = &[
    Seed {
        recipe: "docker-ubuntu.toml",
        installed: &[
            ("containerd.io", "1.2.13-2", "amd64"),
            ("docker-ce", "5:19.03.11~3-0~ubuntu-focal", "amd64"),
            ("docker-ce-cli", "5:19.03.11~3-0~ubuntu-focal", "amd64"),
            ("iptables", "1.8.4-3ubuntu2", "amd64"),
            ("libseccomp2", "2.4.3-1ubuntu3.20.04.3", "amd64"),
        ],
        verify: "",
        unit: "docker.service",
        probe: (
            "usr/bin/dockerd",
            "dockerd 5:19.03.11~3-0~ubuntu-focal (amd64)",
        ),
    },
    Seed {
        recipe: "containerd-ubuntu.toml",
        installed: &[
            ("containerd.io", "1.3.7-1", "amd64"),
            ("libseccomp2", "2.4.3-1ubuntu3.20.04.3", "amd64"),
        ],
        verify: CONTAINERD_CONFIG_REPLACED,
        unit: "containerd.service",
        probe: ("usr/bin/runc", "runc of containerd.io 1.3.7-1 (amd64)"),
    },
    Seed {
        recipe: "containerd-debian.toml",
        installed: &[
            ("containerd", "1.6.20~ds1-1+deb12u3", "amd64"),
            ("libseccomp2:amd64", "2.5.4-1+deb12u1", "amd64"),
            ("runc", "1.1.5+ds1-1+deb12u1", "amd64"),
        ],
        verify: CONTAINERD_CONFIG_REPLACED,
        unit: "containerd.service",
        probe: ("usr/sbin/runc", "runc 1.1.5 (amd64)"),
    },
    Seed {
        recipe: "docker-debian.toml",
        installed: &[
            ("containerd", "1.6.20~ds1-1+deb12u3", "amd64"),
            ("docker.io", "20.10.24+dfsg1-1+deb12u1+b6", "amd64"),
            ("libseccomp2:amd64", "2.5.4-1+deb12u1", "amd64"),
            ("runc", "1.1.5+ds1-1+deb12u1", "amd64"),
        ],
        verify: "",
        unit: "docker.service",
        probe: ("usr/sbin/dockerd", "dockerd 20.10.24 (amd64)"),
    },
    Seed {
        // containerd from testing (the highest version of the two
        // suites), runc pinned to bookworm's.
        recipe: "containerd-testing.toml",
        installed: &[
            ("containerd", "2.1.9+ds1-5", "amd64"),
            ("libseccomp2:amd64", "2.5.4-1+deb12u1", "amd64"),
            ("runc", "1.1.5+ds1-1+deb12u1", "amd64"),
        ],
        verify: CONTAINERD_CONFIG_REPLACED,
        unit: "containerd.service",
        probe: ("usr/bin/containerd", "containerd 2.1.9 (amd64)"),
    },
    CRIO_UBUNTU,
    Seed {
        recipe: "crio-debian10.toml",
        ..CRIO_UBUNTU
    },
    Seed {
        recipe: "crio-raspbian10.toml",
        installed: &[
            // armhf is foreign to the host's dpkg, which qualifies the names.
            ("conmon:armhf", "2.0.16~1", "armhf"),
            ("containers-golang", "0.1.0~1", "all"),
            ("cri-o-1.17:armhf", "1.17.4~1", "armhf"),
            ("cri-o-runc:armhf", "1.0.0~rc10~1", "armhf"),
        ],
        probe: ("usr/bin/crio", "crio 1.17.4~1 (armhf)"),
        ..CRIO_UBUNTU
    },
];

fn tools() -> bool {
    require("dpkg", "dpkg") && require("systemctl", "systemd")
}

fn build(dir: &Path, recipe: &Path, out: &Path, base: &str, args: &[String]) -> Run {
    run(nodeimg(dir)
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", "rootfs", "--base", base])
        .args(args))
}

fn dpkg(root: &Path, args: &[&str]) -> Run {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(args))
}

/// The `ii` rows of `dpkg -l`: (name, version, architecture).
fn installed(root: &Path) -> Vec<(String, String, String)> {
    let l = dpkg(root, &["-l"]).ok();
    l.stdout
        .lines()
        .filter(|x| x.starts_with("ii "))
        .map(|x| {
            let f: Vec<&str> = x.split_whitespace().collect();
            (f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

/// The pins a recipe's layers ask for, as written (variables expanded by
/// the caller's expectations).
fn recipe_pins(recipe: &Path) -> Vec<String> {
    nodeimg_e2e::RecipeModel::load(recipe).package_requests()
}

fn check_seed(s: &Seed, repos: &SeedRepos, base: &str) {
    let t = temp_dir("seed");
    let dir = t.path();
    let recipe = workspace_root().join("recipes").join(s.recipe);
    let out = dir.join("rootfs.tar");
    let r = build(dir, &recipe, &out, base, &repos.build_args());
    assert_eq!(r.code, 0, "{}: {r}", s.recipe);
    let root = dir.join("root");
    extract_tar(&out, &root);

    let got = installed(&root);
    let want: Vec<(String, String, String)> = s
        .installed
        .iter()
        .map(|(n, v, a)| (n.to_string(), v.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, want, "{}: dpkg -l", s.recipe);
    // Each pin of the recipe is installed at exactly that version.
    for pin in recipe_pins(&recipe) {
        let (name, version) = pin.split_once('=').unwrap_or((pin.as_str(), ""));
        let version = version.replace("${codename}", "focal");
        let row = got
            .iter()
            .find(|(n, _, _)| n.split(':').next() == Some(name))
            .unwrap_or_else(|| panic!("{}: {name} is not installed: {got:?}", s.recipe));
        if !version.is_empty() {
            assert_eq!(row.1, version, "{}: {pin}", s.recipe);
        }
    }

    let v = dpkg(&root, &["--verify"]);
    assert_eq!(
        (v.code, v.stdout.as_str()),
        (0, s.verify),
        "{}: dpkg --verify: {v}",
        s.recipe
    );
    // The host's dpkg takes its own architecture as native; on the target
    // the image's architecture is. Register it as the host needs, so that
    // the audit looks at what the target would.
    let host = run(Command::new("dpkg").arg("--print-architecture")).ok();
    let host = host.stdout.trim();
    for (_, _, arch) in s.installed {
        if *arch != "all" && *arch != host {
            dpkg(&root, &["--add-architecture", arch]).ok();
        }
    }
    let a = dpkg(&root, &["--audit"]);
    assert_eq!(
        (a.code, a.stdout.as_str(), a.stderr.as_str()),
        (0, "", ""),
        "{}: dpkg --audit: {a}",
        s.recipe
    );
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", s.unit]));
    assert_eq!(e.stdout.trim(), "enabled", "{}: {e}", s.recipe);
    let (path, text) = s.probe;
    let content =
        fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{}: {path}: {e}", s.recipe));
    assert!(
        content.contains(text),
        "{}: {path} is not the package's ({text}): {content}",
        s.recipe
    );
}

#[test]
fn apt_seed_recipes_install_their_pins_through_a_re_signing_mirror() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let base = fixture_base_ref(&base);
    // Every recipe with apt packages is in the table; the ones with rpm
    // packages are the four tests/e2e/rpm.rs builds.
    let file_names = |rpm: bool| -> Vec<String> {
        nodeimg_e2e::recipes()
            .iter()
            .filter(|r| {
                nodeimg_e2e::repo::has_packages(r)
                    && nodeimg_e2e::rpmrepo::has_rpm_packages(r) == rpm
            })
            .map(|r| {
                r.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let mut listed: Vec<String> = SEEDS.iter().map(|s| s.recipe.to_string()).collect();
    listed.sort();
    assert_eq!(file_names(false), listed);
    assert_eq!(
        file_names(true),
        [
            "containerd-centos.toml",
            "crio-centos.toml",
            "crio-opensuse.toml",
            "docker-centos.toml"
        ]
    );
    for s in SEEDS {
        check_seed(s, repos, &base);
    }
    // The packages came from the server, through the mirrors.
    let served = repos.server.served();
    for want in [
        "200 /docker/dists/focal/InRelease",
        "200 /kubic/Raspbian_10/InRelease",
        "200 /debian/dists/bookworm/InRelease",
        "200 /debian/dists/testing/InRelease",
    ] {
        assert!(served.iter().any(|s| s == want), "{want} in {served:?}");
    }
    assert!(
        served
            .iter()
            .any(|s| s.ends_with("/kubic/Raspbian_10/armhf/cri-o-1.17_1.17.4~1_armhf.deb")),
        "{served:?}"
    );
}

#[test]
fn a_mirror_is_verified_against_the_key_it_names_and_no_other() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("seed-keys");
    let dir = t.path();
    let recipe = workspace_root().join("recipes/docker-ubuntu.toml");
    let common = |key: Option<&Path>| {
        let mut a = vec![
            "--cache-dir".to_string(),
            dir.join("cache").display().to_string(),
        ];
        for m in repos.mirrors(key) {
            a.push("--mirror".into());
            a.push(m);
        }
        a
    };
    // Without the mirror's key: checked against Docker's key, refused.
    let out = dir.join("no-key.tar");
    let r = build(dir, &recipe, &out, &base, &common(None));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("dists/focal/InRelease"), "{r}");
    assert!(r.stderr.contains("not by a key of keyring"), "{r}");
    assert!(!out.exists());
    // With a key that did not sign it: refused.
    let out = dir.join("other-key.tar");
    let r = build(dir, &recipe, &out, &base, &common(Some(&repos.other_key)));
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("not by a key of keyring"), "{r}");
    assert!(r.stderr.contains("other.asc"), "{r}");
    assert!(!out.exists());
    // A key file that is not there: a usage error before any download.
    let out = dir.join("missing-key.tar");
    let r = build(
        dir,
        &recipe,
        &out,
        &base,
        &common(Some(&dir.join("absent.asc"))),
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("absent.asc"), "{r}");
    assert!(!out.exists());
    // With the mirror's key: built.
    let out = dir.join("ok.tar");
    let r = build(dir, &recipe, &out, &base, &common(Some(&repos.key)));
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn mirrors_come_from_a_file_with_keys_relative_to_it() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("seed-file");
    let dir = t.path();
    fs::create_dir_all(dir.join("conf/keys")).unwrap();
    fs::copy(&repos.key, dir.join("conf/keys/mirror.asc")).unwrap();
    let url = repos.server.url();
    fs::write(
        dir.join("conf/mirrors.toml"),
        format!(
            "[[mirror]]\nfrom = \"{}\"\nto = \"{url}/kubic\"\nkey = \"keys/mirror.asc\"\n",
            nodeimg_e2e::repo::KUBIC_URL
        ),
    )
    .unwrap();
    let recipe = workspace_root().join("recipes/crio-raspbian10.toml");
    let out = dir.join("out.tar");
    let args = vec![
        "--cache-dir".to_string(),
        dir.join("cache").display().to_string(),
        "--mirrors".to_string(),
        "conf/mirrors.toml".to_string(),
    ];
    let r = build(dir, &recipe, &out, &base, &args);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("root");
    extract_tar(&out, &root);
    assert!(installed(&root).contains(&(
        "cri-o-1.17:armhf".to_string(),
        "1.17.4~1".to_string(),
        "armhf".to_string()
    )));

    // A --mirror for the same FROM comes after the file and wins: without a
    // key, the expired kubic key is asked and the build is refused.
    let out = dir.join("override.tar");
    let args2 = vec![
        "--cache-dir".to_string(),
        dir.join("cache2").display().to_string(),
        "--mirrors".to_string(),
        "conf/mirrors.toml".to_string(),
        "--mirror".to_string(),
        format!("{}={url}/kubic", nodeimg_e2e::repo::KUBIC_URL),
    ];
    let r = build(dir, &recipe, &out, &base, &args2);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("Raspbian_10/InRelease"), "{r}");
    assert!(!out.exists());

    // A file with a typo names the file, the line and the key.
    fs::write(
        dir.join("conf/bad.toml"),
        "[[mirror]]\nfrom = \"http://a.invalid\"\nto = \"http://b.invalid\"\nkye = \"x\"\n",
    )
    .unwrap();
    let out = dir.join("bad.tar");
    let mut bad = args.clone();
    bad[3] = "conf/bad.toml".into();
    let r = build(dir, &recipe, &out, &base, &bad);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("conf/bad.toml"), "{r}");
    assert!(r.stderr.contains("line 4"), "{r}");
    assert!(r.stderr.contains("kye"), "{r}");
    assert!(!out.exists());
}

#[test]
fn the_repository_server_serves_files_and_stops() {
    let t = temp_dir("server");
    let dir = t.path();
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::write(dir.join("a/b/file~1.txt"), "hello\n").unwrap();
    fs::write(t.path().join("secret"), "no\n").unwrap();
    let served = dir.join("a");
    let s = RepoServer::start(&served);
    let addr = s.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(
        http_get(addr, "/b/file~1.txt").unwrap(),
        (200, b"hello\n".to_vec())
    );
    assert_eq!(
        http_get(addr, "/b/file%7E1.txt").unwrap(),
        (200, b"hello\n".to_vec())
    );
    assert_eq!(http_get(addr, "/b/missing").unwrap().0, 404);
    assert_eq!(http_get(addr, "/../secret").unwrap().0, 404);
    assert_eq!(http_get(addr, "/b").unwrap().0, 404);
    assert_eq!(
        s.served(),
        [
            "200 /b/file~1.txt",
            "200 /b/file%7E1.txt",
            "404 /b/missing",
            "404 /../secret",
            "404 /b"
        ]
    );
    drop(s);
    assert!(http_get(addr, "/b/file~1.txt").is_err());
}

#[test]
fn the_test_repositories_hold_what_the_recipes_pin() {
    if !tools() {
        return;
    }
    let Some(repos) = seed_repos() else { return };
    let docker = fs::read_to_string(
        repos
            .root
            .join("docker/dists/focal/stable/binary-arm64/Packages"),
    )
    .unwrap();
    for want in [
        "Package: docker-ce\nVersion: 5:19.03.11~3-0~ubuntu-focal\nArchitecture: arm64\n",
        "Depends: containerd.io (>= 1.2.2-3), docker-ce-cli, iptables | nftables, libseccomp2 (>= 2.3.0)\n",
        "Provides: containerd, runc\n",
        "Filename: dists/focal/pool/stable/arm64/docker-ce_19.03.11~3-0~ubuntu-focal_arm64.deb\n",
    ] {
        assert!(docker.contains(want), "{want} in {docker}");
    }
    let kubic = fs::read_to_string(repos.root.join("kubic/Raspbian_10/Packages")).unwrap();
    assert!(kubic.contains("Package: cri-o-1.17\nVersion: 1.17.4~1\nArchitecture: armhf\n"));
    assert!(kubic.contains("Provides: containers-common\n"));
    assert!(!kubic.contains("Architecture: amd64"));
    // Real .debs: dpkg-deb reads them.
    let info = run(Command::new("dpkg-deb").arg("-f").arg(
        repos
            .root
            .join("kubic/Raspbian_10/armhf/cri-o-1.17_1.17.4~1_armhf.deb"),
    ))
    .ok();
    assert!(info.stdout.contains("Architecture: armhf"), "{info}");
    // Signed by the mirror key.
    let t = temp_dir("gpgv");
    let v = run(Command::new("gpgv")
        .arg("--keyring")
        .arg(dearmor(&repos.key, &t.path().join("k.gpg")))
        .arg(repos.root.join("docker/dists/focal/InRelease")));
    assert_eq!(v.code, 0, "{v}");
}

fn dearmor(armored: &Path, out: &Path) -> std::path::PathBuf {
    run(Command::new("gpg")
        .args(["--batch", "--yes", "--dearmor", "-o"])
        .arg(out)
        .arg(armored))
    .ok();
    out.to_path_buf()
}

#[test]
fn a_vulnerable_pin_is_refused_before_anything_is_downloaded() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("seed-cve");
    let dir = t.path();
    // The recipes folder, with docker-ubuntu pinned to a containerd.io that
    // bundles a runc affected by CVE-2019-5736 (the repository has it).
    let copy = dir.join("recipes");
    nodeimg_e2e::copy_dir(&workspace_root().join("recipes"), &copy);
    let recipe = copy.join("docker-ubuntu.toml");
    let text = fs::read_to_string(&recipe).unwrap();
    let bad = text.replace("\"containerd.io=1.2.13-2\"", "\"containerd.io=1.2.0-1\"");
    assert_ne!(bad, text);
    fs::write(&recipe, bad).unwrap();
    // A server of its own, to see that nothing is asked of it.
    let server = RepoServer::start(&repos.root);
    let url = server.url();
    let out = dir.join("out.tar");
    let args = vec![
        "--cache-dir".to_string(),
        dir.join("cache").display().to_string(),
        "--mirror".to_string(),
        format!(
            "{}={url}/docker,key={}",
            nodeimg_e2e::repo::DOCKER_URL,
            repos.key.display()
        ),
    ];
    let r = build(dir, &recipe, &out, &base, &args);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains(
            "error[NI009] layer[0].packages[0]: containerd.io=1.2.0-1 is affected by CVE-2019-5736"
        ),
        "{r}"
    );
    assert!(r.stderr.contains("fixed in 1.2.2-3 or later"), "{r}");
    assert!(!out.exists());
    assert_eq!(server.served(), Vec::<String>::new());
    // The fixed pin from the same repository builds.
    let r = build(
        dir,
        &copy.join("containerd-ubuntu.toml"),
        &out,
        &base,
        &args,
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(!server.served().is_empty());
}

#[test]
fn the_raspbian_image_is_an_arm_image_built_on_this_host() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(repos) = seed_repos() else { return };
    let t = temp_dir("seed-arm");
    let dir = t.path();
    let layout = dir.join("oci");
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(workspace_root().join("recipes/crio-raspbian10.toml"))
        .arg("-o")
        .arg(&layout)
        .args(["--format", "oci", "--base", &fixture_base_ref(&base)])
        .args(repos.build_args()))
    .ok();
    nodeimg_e2e::single_digest_line(&r);
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(&p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    let config = json(blob(&manifest["config"]["digest"]));
    assert_eq!(config["architecture"], "arm", "{config}");
    assert_eq!(config["os"], "linux", "{config}");
}
