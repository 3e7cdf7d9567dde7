//! Installing packages from a signed apt repository generated here: real
//! `.deb`s (`dpkg-deb --build`), `Packages` (`dpkg-scanpackages`), a
//! `Release` clearsigned into `InRelease` with a throwaway gpg key, reached
//! through `--mirror` as `file://`. The result is checked with the image's
//! own dpkg database (`dpkg --root`) and `systemctl --root`; the attacks
//! (another key, a tampered `.deb`) and a missing pin are refused with no
//! output left.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::{
    extract_tar, fixture_base, fixture_base_ref, nodeimg, repo, require, run, sha256_file,
    temp_dir, Run, PACKAGE_EPOCH, TEST_EPOCH,
};

const REPO_URL: &str = "http://repo.invalid/debian";

/// A fresh gpg home with one signing key; returns (home, armored public key).
fn gpg_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let home = dir.join(format!("gnupg-{name}"));
    let key = repo::gpg_key(&home, name);
    (home, key)
}

/// `name_version_all.deb` into `pool`, its members compressed with gzip;
/// its tree is made under `dir/deb-src`.
fn deb(
    dir: &Path,
    pool: &Path,
    name: &'static str,
    version: &'static str,
    control_extra: &str,
    files: &[(&str, &str)],
) {
    repo::TestDeb {
        compression: "gzip",
        ..repo::deb(name, version, "all", control_extra, files, &[])
    }
    .build(&dir.join("deb-src"), pool);
}

/// The repository in `dists/` layout under `dir/repo`, signed with `home`'s key.
fn make_repo(dir: &Path, home: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let pool = repo.join("pool/main/d");
    deb(
        dir,
        &pool,
        "demo-lib",
        "1.0-1",
        "",
        &[("/usr/lib/demo/lib.txt", "lib 1.0\n")],
    );
    deb(
        dir,
        &pool,
        "demo-runtime",
        "2.0-1",
        "Depends: demo-lib (>= 1.0)\n",
        &[
            ("/usr/bin/demo-runtime", "#!/bin/sh\necho demo\n"),
            ("/DEBIAN/postinst", "#!/bin/sh\nset -e\necho configured\n"),
            (
                "/usr/lib/systemd/system/demo.service",
                "[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo-runtime\n\n[Install]\nWantedBy=multi-user.target\n",
            ),
        ],
    );
    let scan = run(Command::new("dpkg-scanpackages")
        .current_dir(&repo)
        .args(["--multiversion", "pool"]))
    .ok();
    let bin = repo.join("dists/stable/main/binary-amd64");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("Packages"), &scan.stdout).unwrap();
    let release = format!(
        "Origin: Demo\nLabel: Demo\nSuite: stable\nCodename: stable\nDate: Sat, 01 Jan 2022 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
        sha256_file(&bin.join("Packages")).trim_start_matches("sha256:"),
        scan.stdout.len()
    );
    let dists = repo.join("dists/stable");
    fs::write(dists.join("Release"), release).unwrap();
    clearsign(home, &dists);
    repo
}

/// A flat repository (`Packages` and a detached `Release.gpg` next to the
/// `.deb`s) under `dir/flat`.
fn make_flat_repo(dir: &Path, home: &Path) -> PathBuf {
    let repo = dir.join("flat");
    deb(
        dir,
        &repo,
        "demo-lib",
        "1.0-1",
        "",
        &[("/usr/lib/demo/lib.txt", "lib 1.0\n")],
    );
    deb(
        dir,
        &repo,
        "demo-runtime",
        "2.0-1",
        "Depends: demo-lib (>= 1.0)\n",
        &[("/usr/bin/demo-runtime", "#!/bin/sh\necho demo\n")],
    );
    let scan = run(Command::new("dpkg-scanpackages")
        .current_dir(&repo)
        .args(["--multiversion", "."]))
    .ok();
    fs::write(repo.join("Packages"), &scan.stdout).unwrap();
    let release = format!(
        "Origin: Flat\nDate: Sat, 01 Jan 2022 00:00:00 UTC\nArchitectures: amd64\nSHA256:\n {} {} Packages\n",
        sha256_file(&repo.join("Packages")).trim_start_matches("sha256:"),
        scan.stdout.len()
    );
    fs::write(repo.join("Release"), release).unwrap();
    repo::gpg_sign(
        home,
        &["--detach-sign", "--armor"],
        &repo.join("Release.gpg"),
        &repo.join("Release"),
    );
    repo
}

fn recipe(dir: &Path, key_file: &str, package: &str) -> PathBuf {
    let text = format!(
        r#"[image]
name = "pkgdemo"

[[layer]]
name = "dpkg-db"
file = [{{ path = "/var/lib/dpkg/status", content = "" }}]

[[layer]]
name = "runtime"
apt-source = [{{ name = "demo", uris = ["{REPO_URL}"], suites = ["stable"], components = ["main"], key = "{key_file}" }}]
packages = ["{package}"]
systemd = {{ enable = ["demo.service"] }}
"#
    );
    let label: String = format!("{key_file}-{package}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let p = dir.join(format!("recipe-{label}.toml"));
    fs::write(&p, text).unwrap();
    p
}

fn build(dir: &Path, recipe: &Path, repo: &Path, cache: &Path, out: &Path, base: &str) -> Run {
    run(nodeimg(dir)
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", "rootfs", "--base", base])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--mirror")
        .arg(format!("{REPO_URL}=file://{}", repo.display())))
}

fn tools() -> bool {
    require("dpkg-deb", "dpkg")
        && require("dpkg-scanpackages", "dpkg-dev")
        && require("gpg", "gpg")
        && require("systemctl", "systemd")
}

/// What each scenario starts from: the fixture base (as `--base`), a temp
/// folder holding a signing key `key.asc` and its gpg home, and the signed
/// repository made with it. `None` (skipped) without the tools or the base.
struct Setup {
    t: tempfile::TempDir,
    base: String,
    home: PathBuf,
    repo: PathBuf,
}

fn setup(label: &str) -> Option<Setup> {
    if !tools() {
        return None;
    }
    let base = fixture_base_ref(&fixture_base()?);
    let t = temp_dir(label);
    let dir = t.path();
    let (home, key) = gpg_key(dir, "repo");
    fs::write(dir.join("key.asc"), key).unwrap();
    let repo = make_repo(dir, &home);
    Some(Setup {
        t,
        base,
        home,
        repo,
    })
}

#[test]
fn installs_verified_packages_and_refuses_attacks() {
    let Some(Setup { t, base, repo, .. }) = setup("packages") else {
        return;
    };
    let dir = t.path();
    let (_other_home, other_key) = gpg_key(dir, "other");
    fs::write(dir.join("other.asc"), other_key).unwrap();

    // The good build; check stays offline and accepts the recipe.
    let good = recipe(dir, "key.asc", "demo-runtime");
    let c = run(nodeimg(dir).arg("check").arg(&good).args(["--base", &base]));
    assert_eq!(c.code, 0, "{c}");
    let out = dir.join("out.tar");
    let r = build(dir, &good, &repo, &dir.join("cache"), &out, &base);
    assert_eq!(r.code, 0, "{r}");
    // The maintainer script that was not run is reported.
    assert!(
        r.stderr
            .contains("warning: layer \"runtime\": not run: demo-runtime postinst"),
        "{r}"
    );
    let root = dir.join("root");
    extract_tar(&out, &root);
    assert_demo_packages_installed(&root);
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "demo.service"]));
    assert_eq!(e.stdout.trim(), "enabled", "{e}");
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/demo/lib.txt")).unwrap(),
        "lib 1.0\n"
    );

    // Signed by another key than the recipe names.
    let wrong = recipe(dir, "other.asc", "demo-runtime");
    let out2 = dir.join("out-wrong-key.tar");
    let r = build(dir, &wrong, &repo, &dir.join("cache"), &out2, &base);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("InRelease"), "{r}");
    assert!(r.stderr.contains("not by a key of keyring"), "{r}");
    assert!(!out2.exists());

    // A pin to a version that does not exist: the recipe's fault, with the versions that do.
    let pin = recipe(dir, "key.asc", "demo-runtime=9.9-1");
    let out3 = dir.join("out-pin.tar");
    let r = build(dir, &pin, &repo, &dir.join("cache"), &out3, &base);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("layer[1].packages[0]"), "{r}");
    assert!(r.stderr.contains("9.9-1"), "{r}");
    assert!(r.stderr.contains("2.0-1"), "{r}");
    assert!(!out3.exists());

    // A tampered .deb in the pool (same size, one byte changed), fresh cache.
    let deb = repo.join("pool/main/d/demo-lib_1.0-1_all.deb");
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&deb, bytes).unwrap();
    let out4 = dir.join("out-tampered.tar");
    let r = build(dir, &good, &repo, &dir.join("cache2"), &out4, &base);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("demo-lib_1.0-1_all.deb"), "{r}");
    assert!(r.stderr.contains("SHA256"), "{r}");
    assert!(!out4.exists());
}

#[test]
fn installs_from_a_flat_repository_with_a_detached_signature() {
    if !tools() {
        return;
    }
    let Some(base) = fixture_base() else {
        return;
    };
    let base = fixture_base_ref(&base);
    let t = temp_dir("packages-flat");
    let dir = t.path();
    let (home, key) = gpg_key(dir, "flat");
    fs::write(dir.join("key.asc"), key).unwrap();
    let repo = make_flat_repo(dir, &home);
    assert!(!repo.join("InRelease").exists());
    let text = format!(
        r#"[image]
name = "flatdemo"

[[layer]]
name = "runtime"
apt-source = [{{ name = "flat", uris = ["{REPO_URL}"], suites = ["./"], key = "key.asc" }}]
packages = ["demo-runtime=2.0-1"]
"#
    );
    let recipe = dir.join("recipe.toml");
    fs::write(&recipe, text).unwrap();
    let out = dir.join("out.tar");
    let r = build(dir, &recipe, &repo, &dir.join("cache"), &out, &base);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("root");
    extract_tar(&out, &root);
    assert_demo_packages_installed(&root);

    // The lock of a flat repository records Release and its detached
    // signature; an offline build from it gives the same rootfs.
    let cache = dir.join("cache");
    let r = nodeimg_with(dir, "lock", &recipe, &repo, &cache, &base, &[]);
    assert_eq!(r.code, 0, "{r}");
    let lock: toml::Value =
        toml::from_str(&fs::read_to_string(dir.join("recipe.toml.lock")).unwrap()).unwrap();
    let releases: Vec<(&str, String)> = lock["release"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["url"].as_str().unwrap(),
                format!("sha256:{}", f["sha256"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        releases,
        vec![
            (
                "http://repo.invalid/debian/Release",
                sha256_file(&repo.join("Release"))
            ),
            (
                "http://repo.invalid/debian/Release.gpg",
                sha256_file(&repo.join("Release.gpg"))
            ),
        ]
    );
    let out2 = dir.join("out-offline.tar");
    let r = build(dir, &recipe, &repo, &cache, &out2, &base);
    assert_eq!(r.code, 0, "{r}");
    let r2 = nodeimg_with(
        dir,
        "build",
        &recipe,
        &repo,
        &cache,
        &base,
        &[
            "--offline",
            "--format",
            "rootfs",
            "-o",
            out2.to_str().unwrap(),
        ],
    );
    assert_eq!(r2.code, 0, "{r2}");
    assert_eq!(r2.stdout, r.stdout);
    assert_eq!(sha256_file(&out2), sha256_file(&out));
}

/// `dpkg --root` lists both demo packages as installed (`ii`) with their
/// versions, and `dpkg --verify` finds nothing wrong with their files; the
/// files keep the times the `.deb`s record, what nodeimg writes has the
/// build's.
fn assert_demo_packages_installed(root: &Path) {
    let l = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("-l"))
    .ok();
    let rows: Vec<Vec<&str>> = l
        .stdout
        .lines()
        .filter(|x| x.starts_with("ii"))
        .map(|x| x.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["ii", "demo-lib", "1.0-1"],
            vec!["ii", "demo-runtime", "2.0-1"]
        ],
        "{l}"
    );
    let v = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--verify"));
    assert_eq!((v.code, v.stdout.as_str()), (0, ""), "{v}");
    use std::os::unix::fs::MetadataExt;
    let mtime = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mtime() as u64;
    for p in ["usr/bin/demo-runtime", "usr/lib/demo/lib.txt"] {
        assert_eq!(mtime(p), PACKAGE_EPOCH, "{p}");
    }
    for p in ["var/lib/dpkg/status", "var/lib/dpkg/info/demo-runtime.list"] {
        assert_eq!(mtime(p), TEST_EPOCH, "{p}");
    }
}

fn clearsign(home: &Path, dists: &Path) {
    repo::gpg_sign(
        home,
        &["--clearsign"],
        &dists.join("InRelease"),
        &dists.join("Release"),
    );
}

#[test]
fn refuses_a_tampered_index_expired_and_unsigned_metadata() {
    let Some(Setup {
        t,
        base,
        home,
        repo,
        ..
    }) = setup("packages-meta")
    else {
        return;
    };
    let dir = t.path();
    let good = recipe(dir, "key.asc", "demo-runtime");
    let dists = repo.join("dists/stable");

    // A Packages index that is not the one Release lists (same size).
    let index = dists.join("main/binary-amd64/Packages");
    let original = fs::read(&index).unwrap();
    let tampered = String::from_utf8(original.clone())
        .unwrap()
        .replacen("demo-lib", "demo-LIB", 1);
    fs::write(&index, tampered).unwrap();
    let out = dir.join("out-index.tar");
    let r = build(dir, &good, &repo, &dir.join("cache-index"), &out, &base);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("main/binary-amd64/Packages"), "{r}");
    assert!(r.stderr.contains("SHA256"), "{r}");
    assert!(!out.exists());
    fs::write(&index, original).unwrap();

    // Metadata past its Valid-Until.
    let release = fs::read_to_string(dists.join("Release")).unwrap();
    let expired = release.replace(
        "Date: Sat, 01 Jan 2022 00:00:00 UTC\n",
        "Date: Sat, 01 Jan 2022 00:00:00 UTC\nValid-Until: Sun, 02 Jan 2022 00:00:00 UTC\n",
    );
    assert_ne!(expired, release);
    fs::write(dists.join("Release"), &expired).unwrap();
    clearsign(&home, &dists);
    let out = dir.join("out-expired.tar");
    let r = build(dir, &good, &repo, &dir.join("cache-expired"), &out, &base);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("Valid-Until"), "{r}");
    assert!(r.stderr.contains("InRelease"), "{r}");
    assert!(!out.exists());
    fs::write(dists.join("Release"), &release).unwrap();

    // No signature at all: Release without InRelease or Release.gpg.
    fs::remove_file(dists.join("InRelease")).unwrap();
    let out = dir.join("out-unsigned.tar");
    let r = build(dir, &good, &repo, &dir.join("cache-unsigned"), &out, &base);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("Release.gpg"), "{r}");
    assert!(r.stderr.contains("not signed"), "{r}");
    assert!(!out.exists());
}

/// `nodeimg ARGS RECIPE --base BASE --cache-dir CACHE --mirror REPO [extra...]`.
fn nodeimg_with(
    dir: &Path,
    command: &str,
    recipe: &Path,
    repo: &Path,
    cache: &Path,
    base: &str,
    extra: &[&str],
) -> Run {
    let mut c = nodeimg(dir);
    c.arg(command)
        .arg(recipe)
        .args(["--base", base])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--mirror")
        .arg(format!("{REPO_URL}=file://{}", repo.display()))
        .args(extra);
    run(&mut c)
}

/// An OCI layout build: exit code, manifest digest (stdout) and stderr.
fn build_oci(
    dir: &Path,
    recipe: &Path,
    repo: &Path,
    cache: &Path,
    out: &Path,
    base: &str,
    extra: &[&str],
) -> Run {
    let out = out.to_str().unwrap();
    let mut args = vec!["-o", out];
    args.extend_from_slice(extra);
    nodeimg_with(dir, "build", recipe, repo, cache, base, &args)
}

/// One recipe, its repository and its lock file, for the phases of
/// `lock_offline_and_a_recipe_that_moved_on`.
struct LockScenario {
    dir: PathBuf,
    base: String,
    repo: PathBuf,
    recipe_path: PathBuf,
    /// The recipe as written first; the phases that change it put it back.
    original: String,
    lock_path: PathBuf,
}

/// The lock as `nodeimg lock` first wrote it.
struct Locked {
    text: String,
    /// The SHA256 the lock records for demo-lib's `.deb`.
    lib_sha: String,
    /// How long `nodeimg lock` took.
    time: std::time::Duration,
}

/// Builds before there is a lock: resolving gives the reference digest
/// (returned); `--locked` and `--offline` refuse.
fn builds_without_a_lock(s: &LockScenario) -> String {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        lock_path,
        ..
    } = s;

    // A build that resolves (no lock yet): the reference digest.
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        &dir.join("cache-resolve"),
        &dir.join("out-resolved"),
        base,
        &[],
    );
    assert_eq!(r.code, 0, "{r}");
    let digest = r.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:"), "{r}");
    // Progress: one plain line per download (stderr is not a terminal here).
    assert!(
        r.stderr.contains("nodeimg: fetched demo-lib 1.0-1 ("),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("nodeimg: unpacking 2 package(s) into layer \"runtime\""),
        "{r}"
    );
    assert!(!lock_path.exists(), "build does not write the lock");

    // --locked refuses to resolve.
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        &dir.join("cache-resolve"),
        &dir.join("out-locked"),
        base,
        &["--locked"],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("--locked") && r.stderr.contains("nodeimg lock"),
        "{r}"
    );
    assert!(!dir.join("out-locked").exists());

    // --offline without a lock says what to do.
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        &dir.join("cache-resolve"),
        &dir.join("out-nolock"),
        base,
        &["--offline"],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains(".lock") && r.stderr.contains("nodeimg lock"),
        "{r}"
    );
    assert!(!dir.join("out-nolock").exists());

    digest
}

/// `nodeimg lock` into `cache`: the lock file, the same bytes again, and
/// `check` accepting the recipe.
fn lock_the_recipe(s: &LockScenario, cache: &Path) -> Locked {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        lock_path,
        ..
    } = s;

    // lock: resolves, fills its cache, writes RECIPE.lock with canonical URLs.
    let started = std::time::Instant::now();
    let r = nodeimg_with(dir, "lock", recipe_path, repo, cache, base, &[]);
    let lock_time = started.elapsed();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), lock_path.display().to_string(), "{r}");
    assert!(
        r.stderr.contains("locked 2 package(s) of 1 layer(s)"),
        "{r}"
    );
    let text = fs::read_to_string(lock_path).unwrap();
    let lib_sha = check_lock_file(&text, repo);
    // Locking again gives the same bytes.
    let r = nodeimg_with(dir, "lock", recipe_path, repo, cache, base, &["-q"]);
    assert_eq!(r.code, 0, "{r}");
    // Quiet: no progress, only the warnings.
    assert!(!r.stderr.contains("nodeimg:"), "{r}");
    assert!(r.stderr.contains("not run: demo-runtime postinst"), "{r}");
    assert_eq!(fs::read_to_string(lock_path).unwrap(), text);
    // check compares the recipe with the lock, offline, and checks the
    // enablement of demo.service against the units the lock records.
    let c = run(nodeimg(dir)
        .arg("check")
        .arg(recipe_path)
        .args(["--base", base]));
    assert_eq!(c.code, 0, "{c}");
    assert!(!c.stdout.contains("note:"), "checked, no note: {c}");
    let c = run(nodeimg(dir)
        .arg("check")
        .arg(recipe_path)
        .args(["--base", base, "--no-lock"]));
    assert_eq!(c.code, 0, "{c}");
    assert!(
        c.stdout
            .contains("note: layer[1].systemd.enable[0]: enabling demo.service is not checked"),
        "{c}"
    );

    Locked {
        text,
        lib_sha,
        time: lock_time,
    }
}

/// The lock file `text`: its release, its packages in install order with
/// their canonical URLs and digests; no mirror. Returns demo-lib's SHA256.
fn check_lock_file(text: &str, repo: &Path) -> String {
    let lock: toml::Value = toml::from_str(text).unwrap();
    assert_eq!(lock["version"].as_integer(), Some(2));
    assert_eq!(lock["architecture"].as_str(), Some("amd64"));
    assert_eq!(
        lock["release"][0]["url"].as_str(),
        Some(format!("{REPO_URL}/dists/stable/InRelease").as_str())
    );
    assert_eq!(
        lock["release"][0]["sha256"]
            .as_str()
            .map(|s| format!("sha256:{s}")),
        Some(sha256_file(&repo.join("dists/stable/InRelease")))
    );
    let layer = &lock["layer"][0];
    assert_eq!(layer["name"].as_str(), Some("runtime"));
    let pkgs: Vec<(String, String, i64, String)> = layer["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
                p["order"].as_integer().unwrap(),
                p["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pkgs,
        vec![
            (
                "demo-lib".into(),
                "1.0-1".into(),
                0,
                format!("{REPO_URL}/pool/main/d/demo-lib_1.0-1_all.deb")
            ),
            (
                "demo-runtime".into(),
                "2.0-1".into(),
                1,
                format!("{REPO_URL}/pool/main/d/demo-runtime_2.0-1_all.deb")
            ),
        ]
    );
    let lib_sha = sha256_file(&repo.join("pool/main/d/demo-lib_1.0-1_all.deb"));
    assert_eq!(
        layer["package"][0]["sha256"]
            .as_str()
            .map(|s| format!("sha256:{s}")),
        Some(lib_sha.clone())
    );
    // The unit files each package ships: demo-runtime's unit, none for demo-lib.
    assert!(layer["package"][0].get("units").is_none(), "{text}");
    assert_eq!(
        layer["package"][1]["units"],
        toml::Value::Array(vec!["/usr/lib/systemd/system/demo.service".into()]),
        "{text}"
    );
    assert_eq!(
        layer["package"][0]["source"].as_str(),
        Some(format!("{REPO_URL} stable main").as_str())
    );
    assert!(
        !text.contains("file://"),
        "the mirror is not recorded:\n{text}"
    );
    lib_sha
}

/// Builds from the lock: online with a fresh cache, offline from the lock's
/// cache with the repository gone (the same digest), and offline with an
/// empty cache (every missing file named).
fn builds_from_the_lock(
    s: &LockScenario,
    cache: &Path,
    digest: &str,
    lock_time: std::time::Duration,
) {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        ..
    } = s;

    // A build from the lock (fresh cache, online) gives the same digest.
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        &dir.join("cache-fresh"),
        &dir.join("out-locked-build"),
        base,
        &["--locked"],
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), digest, "{r}");

    // --offline with the cache lock filled: same digest, and no repository
    // is reachable (the repository folder is moved away).
    let away = dir.join("repo-away");
    fs::rename(repo, &away).unwrap();
    let started = std::time::Instant::now();
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        cache,
        &dir.join("out-offline"),
        base,
        &["--offline"],
    );
    let offline_time = started.elapsed();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), digest, "{r}");
    assert!(
        r.stderr
            .contains("nodeimg: verified demo-lib 1.0-1 in the cache"),
        "{r}"
    );
    assert!(!r.stderr.contains("dpkg status"), "{r}");
    eprintln!("lock: {lock_time:?}, offline build: {offline_time:?}");

    // --offline with an empty cache: every missing file named, no output.
    let out = dir.join("out-offline-empty");
    let r = build_oci(
        dir,
        recipe_path,
        repo,
        &dir.join("cache-empty"),
        &out,
        base,
        &["--offline"],
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("2 file(s) the lock file names are not in the cache"),
        "{r}"
    );
    for (p, file) in [
        ("demo-lib 1.0-1", "demo-lib_1.0-1_all.deb"),
        ("demo-runtime 2.0-1", "demo-runtime_2.0-1_all.deb"),
    ] {
        assert!(r.stderr.contains(&format!("{p} (layer \"runtime\"")), "{r}");
        assert!(
            r.stderr.contains(&format!("{REPO_URL}/pool/main/d/{file}")),
            "{r}"
        );
    }
    assert!(r.stderr.contains("nodeimg lock"), "{r}");
    assert!(!out.exists());
    fs::rename(&away, repo).unwrap();
}

/// A pin changed in the recipe: refused by build and check, resolved anew
/// with `--no-lock`.
fn refuses_a_changed_pin(s: &LockScenario, cache: &Path, out: &Path, digest: &str) {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        original,
        ..
    } = s;

    // A pin changed in the recipe: refused, naming it, until locked again.
    fs::write(
        recipe_path,
        original.replace("\"demo-runtime\"", "\"demo-runtime=2.0-1\""),
    )
    .unwrap();
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("layer[1].packages[0]"), "{r}");
    assert!(
        r.stderr
            .contains("\"demo-runtime=2.0-1\" was \"demo-runtime\" when the lock was made"),
        "{r}"
    );
    assert!(r.stderr.contains("hint: run `nodeimg lock"), "{r}");
    assert!(!out.exists());
    let c = run(nodeimg(dir)
        .arg("check")
        .arg(recipe_path)
        .args(["--base", base]));
    assert_eq!(c.code, 2, "{c}");
    assert!(c.stderr.contains("demo-runtime=2.0-1"), "{c}");
    // --no-lock resolves anew (the recipe text changed, and with it the
    // recipe digest annotation, so the image digest differs).
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &["--no-lock"]);
    assert_eq!(r.code, 0, "{r}");
    assert_ne!(r.stdout.trim(), digest, "{r}");
    fs::remove_dir_all(out).unwrap();
}

/// The recipe's apt source or layer name changed: refused; the image below
/// the layer changed: built as locked, with a warning.
fn refuses_other_changes_to_the_recipe(s: &LockScenario, cache: &Path, out: &Path) {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        original,
        ..
    } = s;

    // An apt source changed: refused before anything is fetched.
    fs::write(
        recipe_path,
        original.replace(
            &format!("uris = [\"{REPO_URL}\"]"),
            &format!("uris = [\"{REPO_URL}/\", \"http://other.invalid/debian\"]"),
        ),
    )
    .unwrap();
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("apt sources"), "{r}");
    assert!(r.stderr.contains("http://other.invalid/debian"), "{r}");
    assert!(!out.exists());

    // The layer renamed.
    fs::write(
        recipe_path,
        original.replace("name = \"runtime\"", "name = \"containers\""),
    )
    .unwrap();
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("layer \"containers\" installs packages"),
        "{r}"
    );
    assert!(r.stderr.contains("(it has: runtime)"), "{r}");
    assert!(!out.exists());
    fs::write(recipe_path, original).unwrap();

    // The image below the layer changed (another dpkg status): built as
    // locked, with a warning that says to lock again.
    fs::write(
        recipe_path,
        original.replace(
            r#"content = "" }"#,
            r#"content = "Package: other\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n" }"#,
        ),
    )
    .unwrap();
    assert_ne!(fs::read_to_string(recipe_path).unwrap(), *original);
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("warning: layer \"runtime\": the packages installed in the image below it (its dpkg status) are not the ones"),
        "{r}"
    );
    assert!(r.stderr.contains("run `nodeimg lock"), "{r}");
    fs::remove_dir_all(out).unwrap();
    fs::write(recipe_path, original).unwrap();
}

/// A lock file whose SHA256 for demo-lib was changed: the `.deb` does not
/// match it; one that is not a SHA256 at all: the lock file's line and key.
fn refuses_a_tampered_lock(s: &LockScenario, cache: &Path, out: &Path, locked: &Locked) {
    let LockScenario {
        dir,
        base,
        repo,
        recipe_path,
        lock_path,
        ..
    } = s;
    let Locked { text, lib_sha, .. } = locked;
    // A lock whose SHA256 was tampered with: the .deb does not match it.
    let other = "0".repeat(64);
    let tampered = text.replace(lib_sha.trim_start_matches("sha256:"), &other);
    assert_ne!(&tampered, text);
    fs::write(lock_path, tampered).unwrap();
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("demo-lib_1.0-1_all.deb"), "{r}");
    assert!(r.stderr.contains(&format!("expected {other}")), "{r}");
    assert!(
        r.stderr
            .contains("demo-lib 1.0-1 (layer \"runtime\") is not the file the lock names"),
        "{r}"
    );
    assert!(!out.exists());
    // One that is not a SHA256 at all: the lock file's line and key.
    fs::write(
        lock_path,
        text.replace(lib_sha.trim_start_matches("sha256:"), "beef"),
    )
    .unwrap();
    let r = build_oci(dir, recipe_path, repo, cache, out, base, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains(".toml.lock:"), "{r}");
    assert!(r.stderr.contains("layer[0].package[0].sha256"), "{r}");
    assert!(!out.exists());
}

#[test]
fn lock_offline_and_a_recipe_that_moved_on() {
    let Some(Setup { t, base, repo, .. }) = setup("packages-lock") else {
        return;
    };
    let dir = t.path();
    let recipe_path = recipe(dir, "key.asc", "demo-runtime");
    let original = fs::read_to_string(&recipe_path).unwrap();
    let lock_path = PathBuf::from(format!("{}.lock", recipe_path.display()));
    let s = LockScenario {
        dir: dir.to_path_buf(),
        base,
        repo,
        recipe_path,
        original,
        lock_path,
    };

    let digest = builds_without_a_lock(&s);
    let cache = dir.join("cache-lock");
    let locked = lock_the_recipe(&s, &cache);
    builds_from_the_lock(&s, &cache, &digest, locked.time);
    let out = dir.join("out-pin");
    refuses_a_changed_pin(&s, &cache, &out, &digest);
    refuses_other_changes_to_the_recipe(&s, &cache, &out);
    refuses_a_tampered_lock(&s, &cache, &out, &locked);
}

#[test]
fn inspect_why_names_the_package_that_owns_a_path() {
    let Some(Setup { t, base, repo, .. }) = setup("packages-why") else {
        return;
    };
    let dir = t.path();
    let recipe = recipe(dir, "key.asc", "demo-runtime");
    let out = dir.join("out-why");
    let r = build_oci(dir, &recipe, &repo, &dir.join("cache"), &out, &base, &[]);
    assert_eq!(r.code, 0, "{r}");
    let why = |path: &str, json: bool| {
        let mut c = nodeimg(dir);
        c.arg("inspect").arg(&out).args(["--why", path]);
        if json {
            c.arg("--json");
        }
        run(&mut c).ok()
    };
    // Through the merged-/usr link, and as JSON: the package from the
    // image's dpkg database, its repository from the packages layer's
    // record (dpkg does not keep it), as the build's lock names it: the
    // recipe's URI (before --mirror), suite and component.
    let j: serde_json::Value =
        serde_json::from_str(&why("/bin/demo-runtime", true).stdout).unwrap();
    assert_eq!(j["why"]["resolved"], "/usr/bin/demo-runtime");
    let repository = j["why"]["packages"][0]["repository"]
        .as_str()
        .unwrap_or_else(|| panic!("no repository: {j}"))
        .to_string();
    assert_eq!(repository, format!("{REPO_URL} stable main"));
    assert_eq!(
        j["why"]["packages"],
        serde_json::json!([{
            "name": "demo-runtime",
            "version": "2.0-1",
            "architecture": "all",
            "repository": repository,
            "database": "dpkg"
        }])
    );
    // A package's file: the layer, the item, the package.
    let w = why("/usr/bin/demo-runtime", false);
    assert!(
        w.stdout
            .contains("/usr/bin/demo-runtime: written by layer 3 (runtime, sha256:")
            && w.stdout.trim_end().ends_with(&format!(
                ", item packages, package demo-runtime 2.0-1 (all, dpkg), repository {repository}"
            )),
        "{w}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&why("/usr/lib/demo/lib.txt", true).stdout).unwrap();
    assert_eq!(j["why"]["packages"][0]["name"], "demo-lib", "{j}");
    // Negative controls: a file a recipe item wrote, which no package
    // lists, and a path the image does not have.
    let w = why("/etc/apt/sources.list.d/demo.sources", true);
    let j: serde_json::Value = serde_json::from_str(&w.stdout).unwrap();
    assert_eq!(j["why"]["origin"], "apt-source[0]", "{w}");
    assert_eq!(j["why"]["packages"], serde_json::json!([]), "{w}");
    let w = why("/etc/apt/sources.list.d/demo.sources", false);
    assert!(!w.stdout.contains("package"), "{w}");
    let w = why("/usr/bin/nothing-here", false);
    assert_eq!(w.stdout, "/usr/bin/nothing-here: not in the image\n", "{w}");
}
