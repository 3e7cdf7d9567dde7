//! Installing rpm packages from the signed yum repositories of
//! [`nodeimg_e2e::rpmrepo`] (real `.rpm` files signed with a throwaway gpg
//! key, `repomd.xml` signed detached, served from 127.0.0.1 and reached
//! through `--mirror` from the recipes' real URLs), on its minimal rpm test
//! bases. The result is checked with rpm itself
//! (`rpm --root DIR --dbpath /var/lib/rpm -qa` and `-V`) and
//! `systemctl --root`. The test tampers with the served files (and puts
//! them back): the repositories are this test process's own.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::rpmrepo::{rpm_repos, RpmRepos};
use nodeimg_e2e::{nodeimg, require, run, temp_dir, Run, PACKAGE_EPOCH, TEST_EPOCH};

fn rpm_q(root: &Path, args: &[&str]) -> Run {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args))
}

/// Unpacks a rootfs tar keeping numeric owners (the test runs as root;
/// otherwise owners fall back to the caller and `rpm -V` would report them).
fn extract_owned(tar: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--numeric-owner", "-xpf"])
        .arg(tar))
    .ok();
}

/// The image's own rpm chrooted into `root` (in a user namespace unless
/// the test runs as root: a namespace mapping only root would show the
/// files of other owners as the overflow id).
fn own_rpm(root: &Path, args: &[&str]) -> Run {
    let uid = run(Command::new("id").arg("-u")).ok();
    let mut c = if uid.stdout.trim() == "0" {
        Command::new("chroot")
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user", "chroot"]);
        c
    };
    run(c.arg(root).arg("/usr/bin/rpm").args(args))
}

fn build(
    dir: &Path,
    recipe: &Path,
    base: &Path,
    repos: &RpmRepos,
    cache: &Path,
    out: &Path,
    arch: Option<&str>,
) -> Run {
    let mut c = nodeimg(dir);
    c.arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", "rootfs", "--base"])
        .arg(format!("rootfs:{}", base.display()))
        .arg("--cache-dir")
        .arg(cache)
        .args(repos.mirror_args());
    if let Some(a) = arch {
        c.args(["--var", &format!("arch={a}")]);
    }
    run(&mut c)
}

fn tools() -> bool {
    nodeimg_e2e::rpmrepo::tools() && require("systemctl", "systemd")
}

/// A recipe with one yum repository (the Docker test repository) and one
/// packages layer.
fn small_recipe(dir: &Path, name: &str, packages: &str, key: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[image]
name = "rpm-{name}"

[[layer]]
name = "repo"

[[layer.yum-repo]]
name = "docker-ce-stable"
baseurl = "https://download.docker.com/linux/centos/$releasever/$basearch/stable"
gpgkey = "{key}"
repo-gpgcheck = true
{extra}

[[layer]]
name = "packages"
packages = [{packages}]
"#
    );
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, text).unwrap();
    p
}

/// The rootfs of `docker-centos.toml`: the packages rpm lists, and verifies
/// with the image's own rpm; the config the %pre's group owns, the links,
/// the enabled service.
fn check_docker_root(root: &Path) {
    let qa = rpm_q(root, &["-qa", "--qf", "%{NEVRA}\\n"]).ok();
    let mut listed: Vec<&str> = qa.stdout.lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "centos-base-7-9.2009.0.el7.x86_64",
            "container-selinux-2:2.119.2-1.911c772.el7_8.noarch",
            "containerd.io-1.2.13-3.2.el7.x86_64",
            "docker-ce-3:19.03.11-3.el7.x86_64",
            "docker-ce-cli-1:19.03.11-3.el7.x86_64",
            "nftables-0.8-14.el7.x86_64",
        ],
        "{qa}"
    );
    // The image's own rpm, chrooted in a user namespace, verifies the files
    // (owners by the image's own /etc/passwd and /etc/group).
    let v = own_rpm(
        root,
        &[
            "-V",
            "docker-ce",
            "containerd.io",
            "docker-ce-cli",
            "container-selinux",
            "nftables",
        ],
    );
    assert_eq!((v.code, v.stdout.as_str()), (0, ""), "{v}");
    // It does so because the package files keep the times the packages
    // record (not the build's); what nodeimg writes has the build's.
    use std::os::unix::fs::MetadataExt;
    let mtime = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mtime() as u64;
    for p in ["usr/bin/dockerd", "usr/bin/containerd", "usr/bin/ctr"] {
        assert_eq!(mtime(p), PACKAGE_EPOCH, "{p}");
    }
    for p in ["etc/docker/daemon.json", "var/lib/rpm/rpmdb.sqlite"] {
        assert_eq!(mtime(p), TEST_EPOCH, "{p}");
    }
    // Negative control: rpm -V does check the times; a file dated at the
    // build's epoch is reported.
    let dockerd = root.join("usr/bin/dockerd");
    run(Command::new("touch")
        .args(["-d", &format!("@{TEST_EPOCH}")])
        .arg(&dockerd))
    .ok();
    let v = own_rpm(root, &["-V", "docker-ce"]);
    assert_eq!(v.stdout, ".......T.    /usr/bin/dockerd\n", "{v}");
    run(Command::new("touch")
        .args(["-d", &format!("@{PACKAGE_EPOCH}")])
        .arg(&dockerd))
    .ok();
    // %config is recorded; the docker group the %pre creates owns the config.
    let c = rpm_q(root, &["-qc", "containerd.io"]).ok();
    assert_eq!(c.stdout.trim(), "/etc/containerd/config.toml");
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("docker:x:999:"), "{group}");
    let m = fs::metadata(root.join("etc/containerd/config.toml")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o640, 999));
    let hard = fs::metadata(root.join("usr/bin/containerd-shim")).unwrap();
    assert_eq!(
        hard.ino(),
        fs::metadata(root.join("usr/bin/containerd")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(root.join("usr/bin/ctr")).unwrap(),
        Path::new("containerd")
    );
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "docker.service"]));
    assert_eq!(e.stdout.trim(), "enabled", "{e}");
    // The image's own rpm reads the database.
    let own = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(root)
        .args(["/usr/bin/rpm", "-q", "docker-ce"]));
    assert_eq!(
        own.stdout.trim(),
        "docker-ce-19.03.11-3.el7.x86_64",
        "{own}"
    );
}

/// `inspect --why` on the docker rootfs `out` names the package a file is
/// from, as the image's rpm database lists it; a file no package lists
/// (written by the recipe's docker item) names none.
fn inspect_names_the_rpm_packages(dir: &Path, out: &Path) {
    let why = |path: &str| {
        let r = run(nodeimg(dir)
            .arg("inspect")
            .arg(out)
            .args(["--why", path, "--json"]))
        .ok();
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        j["why"]["packages"].clone()
    };
    let dockerd = why("/usr/bin/dockerd");
    let repository = dockerd[0]["repository"]
        .as_str()
        .unwrap_or_else(|| panic!("no repository (the layer's record names it): {dockerd}"))
        .to_string();
    assert_eq!(
        dockerd,
        serde_json::json!([{
            "name": "docker-ce",
            "version": "3:19.03.11-3.el7",
            "architecture": "x86_64",
            "repository": repository,
            "database": "rpm"
        }])
    );
    assert_eq!(why("/usr/bin/ctr")[0]["name"], "containerd.io");
    assert_eq!(why("/etc/docker/daemon.json"), serde_json::json!([]));
    let r = run(nodeimg(dir)
        .arg("inspect")
        .arg(out)
        .args(["--why", "/usr/bin/dockerd"]))
    .ok();
    assert!(
        r.stdout.trim_end().ends_with(&format!(
            ", package docker-ce 3:19.03.11-3.el7 (x86_64, rpm), repository {repository}"
        )),
        "{r}"
    );
}

/// `docker-centos.toml` as written: built, checked, and built again from the
/// warm cache to the same bytes.
fn builds_docker_centos(dir: &Path, repos: &RpmRepos, cache: &Path) {
    let base = &repos.base;
    let recipes = &repos.recipes;
    let recipe = recipes.join("docker-centos.toml");
    let out = dir.join("docker.tar");
    let r = build(dir, &recipe, base, repos, cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("not run docker-ce-3:19.03.11-3.el7.x86_64: %post"),
        "{r}"
    );
    assert!(
        r.stderr.contains("systemd preset/enable of docker.service"),
        "{r}"
    );
    let root = dir.join("docker-root");
    extract_owned(&out, &root);
    check_docker_root(&root);
    inspect_names_the_rpm_packages(dir, &out);

    // A second build from the warm cache gives the same files.
    let out2 = dir.join("docker2.tar");
    let r2 = build(dir, &recipe, base, repos, cache, &out2, None);
    assert_eq!(r2.code, 0, "{r2}");
    // ... and the same bytes: the rpm database records the build's epoch.
    assert_eq!(
        nodeimg_e2e::sha256_file(&out),
        nodeimg_e2e::sha256_file(&out2),
        "the same recipe built twice gave another rootfs"
    );
}

/// The CRI-O recipes (the kubic repository, zypper and yum) and containerd
/// on CentOS.
fn builds_crio_and_containerd(dir: &Path, repos: &RpmRepos, cache: &Path) {
    let base = &repos.base;
    let recipes = &repos.recipes;
    // The CRI-O recipes: the kubic repository, zypper and yum.
    for name in ["crio-opensuse", "crio-centos"] {
        let recipe = recipes.join(format!("{name}.toml"));
        let out = dir.join(format!("{name}.tar"));
        let r = build(dir, &recipe, base, repos, cache, &out, None);
        assert_eq!(r.code, 0, "{name}: {r}");
        let root = dir.join(format!("{name}-root"));
        extract_owned(&out, &root);
        let q = rpm_q(&root, &["-q", "cri-o", "conmon"]).ok();
        assert_eq!(
            q.stdout, "cri-o-1.24.6-1.1.x86_64\nconmon-2.1.2-1.1.x86_64\n",
            "{q}"
        );
        let v = own_rpm(&root, &["-V", "cri-o", "conmon"]);
        assert_eq!((v.code, v.stdout.as_str()), (0, ""), "{v}");
        let e = run(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["is-enabled", "crio.service"]));
        assert_eq!(e.stdout.trim(), "enabled", "{name}: {e}");
    }

    // containerd on CentOS.
    let recipe = recipes.join("containerd-centos.toml");
    let out = dir.join("containerd.tar");
    let r = build(dir, &recipe, base, repos, cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("containerd-root");
    extract_owned(&out, &root);
    let q = rpm_q(&root, &["-q", "containerd.io"]).ok();
    assert_eq!(q.stdout.trim(), "containerd.io-1.2.13-3.2.el7.x86_64");
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "containerd.service"]));
    assert_eq!(e.stdout.trim(), "enabled", "{e}");
    // The containerd item's config.toml replaces the package's %config file,
    // which rpm -V reports as changed (size, mode, digest and, written by
    // the build, its time) and nothing else.
    let v = own_rpm(&root, &["-V", "containerd.io"]);
    assert_eq!(
        v.stdout, "SM5....T.  c /etc/containerd/config.toml\n",
        "{v}"
    );
}

/// Recipes that cannot be built: a missing pin, an obsoleted package in the
/// base, an unsigned package, repository metadata signed by another key.
fn refuses_bad_recipes(dir: &Path, repos: &RpmRepos, cache: &Path) {
    let (base, base_old) = (&repos.base, &repos.base_old);
    // A pin that does not exist lists the versions that do.
    let key_rel = "key.asc";
    let p = small_recipe(dir, "missing-pin", "\"docker-ce-19.03.99\"", key_rel, "");
    let r = build(dir, &p, base, repos, cache, &dir.join("x.tar"), None);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("docker-ce 19.03.99 is not in the image's rpm repositories for x86_64; available: 3:19.03.5-3.el7, 3:19.03.11-3.el7"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());

    // An obsoleted package in the base is named with the package that obsoletes it.
    let p = small_recipe(dir, "obsoletes", "\"moby-engine\"", key_rel, "");
    let r = build(dir, &p, base_old, repos, cache, &dir.join("x.tar"), None);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("moby-engine-20.10.0-1.x86_64 obsoletes docker-1:1.13.1-209.el7.x86_64"),
        "{r}"
    );

    // An unsigned package with gpgcheck.
    let p = small_recipe(dir, "unsigned", "\"unsigned-tool\"", key_rel, "");
    let r = build(dir, &p, base, repos, cache, &dir.join("x.tar"), None);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("unsigned-tool-1.0-1.noarch.rpm: the package is not signed"),
        "{r}"
    );

    // repomd.xml signed by another key than the recipe names.
    let p = small_recipe(dir, "other-key", "\"nftables\"", "other.asc", "");
    let r = build(dir, &p, base, repos, cache, &dir.join("x.tar"), None);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/repodata/repomd.xml: signed by")
            && r.stderr
                .contains("not by a key of keyring gpgkey of [docker-ce-stable]"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());
}

/// Served files tampered with (and put back): primary.xml, a package, and
/// repomd.xml under its signature.
fn refuses_tampered_repositories(dir: &Path, repos: &RpmRepos) {
    let base = &repos.base;
    let key_rel = "key.asc";
    // A tampered primary.xml (re-signed repomd, so only the checksum catches it).
    let x86 = repos.served.join("docker/7/x86_64/stable");
    let primary = x86.join("repodata/primary.xml.gz");
    let saved = fs::read(&primary).unwrap();
    let mut bad = saved.clone();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    fs::write(&primary, &bad).unwrap();
    // The recipe of the missing pin (see `refuses_bad_recipes`): the build
    // fails at the index, before the pin is looked up.
    let r = build(
        dir,
        &dir.join("missing-pin.toml"),
        base,
        repos,
        &dir.join("cache-2"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("primary.xml.gz: SHA256 is"), "{r}");
    assert!(!dir.join("x.tar").exists());
    fs::write(&primary, &saved).unwrap();

    // A tampered package (same size, another byte), fresh cache.
    let pkg = x86.join("Packages/nftables-0.8-14.el7.x86_64.rpm");
    let saved = fs::read(&pkg).unwrap();
    let mut bad = saved.clone();
    let n = bad.len();
    bad[n - 5] ^= 0xff;
    fs::write(&pkg, &bad).unwrap();
    let p = small_recipe(dir, "tampered", "\"nftables\"", key_rel, "");
    let r = build(
        dir,
        &p,
        base,
        repos,
        &dir.join("cache-3"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("nftables-0.8-14.el7.x86_64.rpm: SHA256 is"),
        "{r}"
    );
    fs::write(&pkg, &saved).unwrap();

    // A bad repomd.xml signature with repo_gpgcheck.
    let asc = x86.join("repodata/repomd.xml.asc");
    let saved = fs::read(&asc).unwrap();
    let repomd = x86.join("repodata/repomd.xml");
    let saved_repomd = fs::read(&repomd).unwrap();
    let mut text = String::from_utf8(saved_repomd.clone()).unwrap();
    text = text.replacen("<revision>", "<revision>1", 1);
    fs::write(&repomd, text).unwrap();
    let r = build(
        dir,
        &p,
        base,
        repos,
        &dir.join("cache-4"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/repodata/repomd.xml: the signature by")
            && r.stderr.contains("does not verify"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());
    fs::write(&repomd, saved_repomd).unwrap();
    fs::write(&asc, saved).unwrap();
}

#[test]
fn installs_rpm_packages_and_refuses_attacks() {
    if !tools() {
        return;
    }
    let Some(repos) = rpm_repos() else { return };
    let t = temp_dir("rpm");
    let dir = t.path();
    fs::copy(&repos.key, dir.join("key.asc")).unwrap();
    fs::copy(&repos.other_key, dir.join("other.asc")).unwrap();
    let base = &repos.base;
    let cache = dir.join("cache");

    // The recipes as written in the repository, with the kubic key file
    // replaced by the test key (the test repositories are signed with it).
    let recipes = &repos.recipes;
    assert_eq!(
        fs::read(recipes.join("keys/kubic-libcontainers.asc")).unwrap(),
        fs::read(&repos.key).unwrap(),
        "the recipes' copy holds the test key"
    );
    builds_docker_centos(dir, repos, &cache);
    builds_crio_and_containerd(dir, repos, &cache);
    refuses_bad_recipes(dir, repos, &cache);
    refuses_tampered_repositories(dir, repos);

    let key_rel = "key.asc";
    // The aarch64 build picks the aarch64 package and the noarch one.
    let p = small_recipe(dir, "arm", "\"containerd.io-1.2.13\"", key_rel, "");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace("[image]\n", "[image]\narchitecture = \"arm64\"\n");
    fs::write(&p, text).unwrap();
    let out = dir.join("arm.tar");
    let r = build(dir, &p, base, repos, &cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("arm-root");
    extract_owned(&out, &root);
    let q = rpm_q(&root, &["-qa", "--qf", "%{NEVRA}\\n"]).ok();
    assert!(
        q.stdout.contains("containerd.io-1.2.13-3.2.el7.aarch64"),
        "{q}"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/containerd")).unwrap(),
        "containerd arm64\n"
    );
}

/// The build metadata lists the rpm packages each layer installed (name,
/// `epoch:version-release`, architecture; the dependency too), as it lists
/// a Debian layer's; a layer without packages, and the base's packages
/// (centos-base), are not listed.
#[test]
fn build_metadata_lists_the_rpm_packages_a_layer_installed() {
    if !tools() {
        return;
    }
    let Some(repos) = rpm_repos() else { return };
    let t = temp_dir("rpm-meta");
    let dir = t.path();
    fs::copy(&repos.key, dir.join("key.asc")).unwrap();
    let p = small_recipe(dir, "meta", "\"containerd.io\"", "key.asc", "");
    let mut c = nodeimg(dir);
    c.arg("build")
        .arg(&p)
        .arg("-o")
        .arg(dir.join("meta.tar"))
        .args(["--format", "rootfs", "--json", "--base"])
        .arg(format!("rootfs:{}", repos.base.display()))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(repos.mirror_args());
    let r = run(&mut c).ok();
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let layers = j["layers"].as_array().unwrap();
    let layer = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no layer {name}: {j}"))
    };
    assert_eq!(
        layer("packages")["packages"],
        serde_json::json!([
            {"name": "container-selinux", "version": "2:2.119.2-1.911c772.el7_8", "architecture": "noarch"},
            {"name": "containerd.io", "version": "0:1.2.13-3.2.el7", "architecture": "x86_64"}
        ]),
        "{j}"
    );
    assert!(layer("repo").get("packages").is_none(), "{j}");
}
