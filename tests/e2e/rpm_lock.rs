//! `nodeimg lock` on a recipe whose packages are rpm packages, then builds
//! from that lock: exactly the locked `.rpm`s (no repository metadata read),
//! a recipe that no longer matches refused, `--offline` from the lock and
//! the cache alone; `check` verifying a unit's enablement against the unit
//! files the lock records for each package.
//!
//! The repository is generated here, small on purpose: two packages built
//! with `rpmbuild` (`demo-tool`, which requires `demo-lib`), indexed by
//! `createrepo_c`, `repomd.xml` signed detached with a throwaway gpg key,
//! served on 127.0.0.1 and reached through `--mirror` from the recipe's
//! URL. The base is a root file system with no rpm database (the build
//! host's rpm creates it).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::repo::{gpg_key, RepoServer};
use nodeimg_e2e::rpmrepo::{copy_into, createrepo, rpmbuild, Spec};
use nodeimg_e2e::{create_tar, nodeimg, require, run, temp_dir, Run};

const URL: &str = "https://rpm.repo.invalid/demo";

fn tools() -> bool {
    require("rpmbuild", "rpm")
        && require("rpm", "rpm")
        && require("createrepo_c", "createrepo-c")
        && require("gpg", "gnupg")
        && require("unshare", "util-linux")
        && require("bwrap", "bubblewrap")
}

/// The unit file demo-tool ships.
const TOOL_UNIT: &str = "/usr/lib/systemd/system/demo-tool.service";

/// Builds `name-version-1.el9.arch.rpm` holding `/usr/share/NAME/VERSION`
/// (and demo-tool its unit, [`TOOL_UNIT`]).
fn rpm(
    dir: &Path,
    name: &str,
    epoch: u32,
    version: &str,
    arch: &str,
    requires: &[&str],
) -> PathBuf {
    let file = format!("/usr/share/{name}/VERSION");
    let content = format!("{version}\n");
    let owned = format!("%dir /usr/share/{name}");
    let unit = "[Service]\nExecStart=/usr/bin/true\n[Install]\nWantedBy=multi-user.target\n";
    let mut files = vec![(file.as_str(), content.as_str(), "")];
    if name == "demo-tool" {
        files.push((TOOL_UNIT, unit, ""));
    }
    rpmbuild(
        dir,
        &Spec {
            name,
            epoch: Some(epoch),
            version,
            release: "1.el9",
            arch,
            requires,
            files: &files,
            extra_files: &[&owned],
            ..Spec::default()
        },
    )
}

/// The repository under `served/demo`, its repomd.xml signed by `home`'s key.
fn repository(dir: &Path, served: &Path, home: &Path, tool_version: &str) {
    let repo = served.join("demo");
    let _ = fs::remove_dir_all(&repo);
    let b = dir.join(format!("build-{tool_version}"));
    fs::create_dir_all(&b).unwrap();
    copy_into(
        &repo,
        &[
            rpm(&b, "demo-lib", 0, "1.0", "noarch", &[]),
            rpm(
                &b,
                "demo-tool",
                2,
                tool_version,
                "x86_64",
                &["demo-lib >= 1.0"],
            ),
        ],
    );
    createrepo(&repo, home, "gz");
}

/// A root file system without an rpm database.
fn base(dir: &Path) -> PathBuf {
    let root = dir.join("base");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    fs::write(
        root.join("etc/os-release"),
        "ID=\"rocky\"\nVERSION_ID=\"9\"\n",
    )
    .unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = dir.join("base.tar");
    create_tar(&root, &tar);
    tar
}

fn recipe(dir: &Path, packages: &str) -> PathBuf {
    recipe_enabling(dir, packages, None)
}

/// The recipe, with a last layer enabling `unit` when given.
fn recipe_enabling(dir: &Path, packages: &str, unit: Option<&str>) -> PathBuf {
    let mut text = format!(
        r#"[image]
name = "rpm-lock"

[[layer]]
name = "repo"

[[layer.yum-repo]]
name = "demo"
baseurl = "{URL}/$releasever/$basearch"
gpgkey = "{URL}/gpg"
gpgcheck = false
repo-gpgcheck = true

[[layer]]
name = "tools"
packages = [{packages}]
"#
    );
    if let Some(u) = unit {
        text.push_str(&format!(
            "\n[[layer]]\nname = \"on\"\nsystemd = {{ enable = [\"{u}\"] }}\n"
        ));
    }
    let p = dir.join("demo.toml");
    fs::write(&p, text).unwrap();
    p
}

fn nodeimg_cmd(dir: &Path, what: &str, recipe: &Path, base: &Path, cache: &Path) -> Command {
    let mut c = nodeimg(dir);
    c.arg(what)
        .arg(recipe)
        .args(["--base"])
        .arg(format!("rootfs:{}", base.display()))
        .arg("--cache-dir")
        .arg(cache);
    c
}

fn build(
    dir: &Path,
    recipe: &Path,
    base: &Path,
    cache: &Path,
    out: &Path,
    extra: &[String],
) -> Run {
    let mut c = nodeimg_cmd(dir, "build", recipe, base, cache);
    c.arg("-o")
        .arg(out)
        .args(["--format", "rootfs"])
        .args(extra);
    run(&mut c)
}

fn rpm_qa(dir: &Path, tar: &Path) -> Vec<String> {
    let root = dir.join(format!(
        "root-{}",
        tar.file_stem().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(&root).unwrap();
    run(Command::new("tar").arg("-C").arg(&root).arg("-xf").arg(tar)).ok();
    let qa = run(Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-qa",
        "--qf",
        "%{NEVRA}\\n",
    ]))
    .ok();
    let mut v: Vec<String> = qa.stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The served repository's recipe builds: the work folder, the base, the
/// download cache and the `--mirror` arguments that reach the server.
struct Demo<'a> {
    dir: &'a Path,
    base: PathBuf,
    cache: PathBuf,
    mirror: Vec<String>,
}

/// `nodeimg lock`: the resolved packages and the metadata read, written next
/// to the recipe; locking again writes the same bytes. Returns the lock file.
fn locks_the_recipe(d: &Demo, recipe: &Path) -> PathBuf {
    let Demo {
        dir,
        base,
        cache,
        mirror,
    } = d;
    // lock: the resolved packages, the metadata read, written next to the recipe.
    let mut c = nodeimg_cmd(dir, "lock", recipe, base, cache);
    let r = run(c.args(mirror));
    assert_eq!(r.code, 0, "{r}");
    let lock_file = dir.join("demo.toml.lock");
    let text = fs::read_to_string(&lock_file).unwrap();
    let repo_url = format!("{URL}/9/x86_64");
    for want in [
        format!("[[release]]\nurl = \"{repo_url}/repodata/repomd.xml\"\n"),
        format!("[[release]]\nurl = \"{repo_url}/repodata/repomd.xml.asc\"\n"),
        format!("[[release]]\nurl = \"{URL}/gpg\"\n"),
        format!("[[index]]\nurl = \"{repo_url}/repodata/primary.xml.gz\"\n"),
        "[[layer]]\nname = \"tools\"\nkind = \"rpm\"\nrequests = [\"demo-tool-2.0\"]\nrpmdb = \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n".to_string(),
        format!("[[layer.repo]]\nfile = \"/etc/yum.repos.d/demo.repo\"\nid = \"demo\"\nbaseurl = \"{repo_url}\"\ngpgcheck = false\nrepo-gpgcheck = true\ngpgkeys = [\"{URL}/gpg\"]\n"),
        format!("[[layer.package]]\nname = \"demo-lib\"\nversion = \"0:1.0-1.el9\"\narchitecture = \"noarch\"\nauto = true\norder = 0\nsource = \"demo\"\nurl = \"{repo_url}/Packages/demo-lib-1.0-1.el9.noarch.rpm\"\n"),
        format!("[[layer.package]]\nname = \"demo-tool\"\nversion = \"2:2.0-1.el9\"\narchitecture = \"x86_64\"\nauto = false\norder = 1\nsource = \"demo\"\nurl = \"{repo_url}/Packages/demo-tool-2.0-1.el9.x86_64.rpm\"\n"),
    ] {
        assert!(text.contains(&want), "{want}\nnot in\n{text}");
    }
    assert!(!text.contains("dpkg-status"), "{text}");
    // The unit files each package ships: demo-tool's unit, nothing for demo-lib.
    assert!(
        text.starts_with("# Written by") && text.contains("\nversion = 2\n"),
        "{text}"
    );
    let tool = &text[text.find("name = \"demo-tool\"").unwrap()..];
    assert!(
        tool.contains(&format!("\nunits = [\"{TOOL_UNIT}\"]\n")),
        "{text}"
    );
    assert_eq!(text.matches("units = ").count(), 1, "{text}");
    // The same resolution writes the same bytes.
    let mut c = nodeimg_cmd(dir, "lock", recipe, base, cache);
    run(c.args(mirror)).ok();
    assert_eq!(fs::read_to_string(&lock_file).unwrap(), text);
    lock_file
}

/// `check` (offline, nothing installed) verifies the enablement of a unit
/// the locked packages ship against the units the lock records: the
/// packages' unit passes, a unit none of them ships is refused; without
/// the lock the enablement is a note. Leaves the recipe as it was.
fn checks_enablement_against_the_lock(d: &Demo, packages: &str) {
    let Demo { dir, base, .. } = d;
    let check = |unit: &str, extra: &[&str]| {
        let recipe = recipe_enabling(dir, packages, Some(unit));
        let mut c = nodeimg(dir);
        c.arg("check")
            .arg(&recipe)
            .arg("--base")
            .arg(format!("rootfs:{}", base.display()))
            .arg("--json")
            .args(extra);
        run(&mut c)
    };
    let r = check("demo-tool.service", &[]);
    assert_eq!(r.code, 0, "{r}");
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        j["notes"],
        serde_json::json!([]),
        "checked, so no note: {r}"
    );
    assert_eq!(j["counts"]["error"], 0, "{r}");
    // A unit neither the image nor a locked package ships: refused.
    let r = check("nosuch.service", &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("layer[2].systemd.enable[0]")
            && r.stderr.contains("unit nosuch.service does not exist"),
        "{r}"
    );
    // Without the lock neither can be checked: a note each.
    for unit in ["demo-tool.service", "nosuch.service"] {
        let r = check(unit, &["--no-lock"]);
        assert_eq!(r.code, 0, "{r}");
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(j["notes"][0]["key"], "layer[2].systemd.enable[0]", "{r}");
    }
    recipe(dir, packages);
}

/// A build with the lock reads no repository metadata; the .rpms come from
/// the cache the lock filled. Returns the rootfs.
fn builds_exactly_the_locked_rpms(d: &Demo, recipe: &Path, server: &RepoServer) -> PathBuf {
    let Demo {
        dir,
        base,
        cache,
        mirror,
    } = d;
    // A build with the lock reads no repository metadata; the .rpms come
    // from the cache the lock filled; progress has one line per step.
    let before = server.served().len();
    let out = dir.join("locked.tar");
    let r = build(dir, recipe, base, cache, &out, mirror);
    assert_eq!(r.code, 0, "{r}");
    let after: Vec<String> = server.served()[before..].to_vec();
    assert!(after.is_empty(), "a locked build fetched {after:?}");
    assert!(
        r.stderr
            .contains("nodeimg: verified demo-tool-2:2.0-1.el9.x86_64 in the cache ("),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("nodeimg: unpacking 2 package(s) into layer \"tools\""),
        "{r}"
    );
    assert_eq!(
        rpm_qa(dir, &out),
        [
            "demo-lib-0:1.0-1.el9.noarch",
            "demo-tool-2:2.0-1.el9.x86_64"
        ]
    );
    out
}

/// The repository moves on (a 3.0 replaces 2.0): the locked build is the
/// same rootfs `out` from the cache, a fresh cache cannot have it; the
/// recipe changed is refused.
fn the_repository_moves_on(d: &Demo, recipe: &Path, served: &Path, home: &Path, out: &Path) {
    let Demo {
        dir,
        base,
        cache,
        mirror,
    } = d;
    // The repository moves on (a 3.0 replaces 2.0): the locked build still
    // installs the locked files, which the cache holds.
    let tree = served.join("9");
    repository(dir, &tree, home, "3.0");
    fs::remove_dir_all(tree.join("x86_64")).unwrap();
    fs::rename(tree.join("demo"), tree.join("x86_64")).unwrap();
    let out2 = dir.join("locked-again.tar");
    let r = build(dir, recipe, base, cache, &out2, mirror);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(fs::read(out).unwrap(), fs::read(&out2).unwrap());

    // ... but a fresh cache must download the locked 2.0, which is gone.
    let fresh = dir.join("fresh-cache");
    let r = build(dir, recipe, base, &fresh, &dir.join("gone.tar"), mirror);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("demo-tool-2.0-1.el9.x86_64.rpm"), "{r}");

    // The recipe changed: refused with its line and key, and the hint.
    let changed = recipe_with(dir, "\"demo-tool-3.0\"");
    let r = build(dir, &changed, base, cache, &dir.join("changed.tar"), mirror);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("layer[1].packages[0]: the packages of layer \"tools\" no longer match")
            && r.stderr
                .contains("\"demo-tool-3.0\" was \"demo-tool-2.0\" when the lock was made")
            && r.stderr.contains("nodeimg lock"),
        "{r}"
    );
}

/// `--offline`: the same rootfs `out` from the lock and the cache; with an
/// empty cache every missing package named; without the lock, refused.
fn builds_offline(d: &Demo, recipe: &Path, out: &Path) {
    let Demo {
        dir, base, cache, ..
    } = d;
    let out3 = dir.join("offline.tar");
    let r = build(dir, recipe, base, cache, &out3, &["--offline".to_string()]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(fs::read(out).unwrap(), fs::read(&out3).unwrap());
    // --offline with an empty cache names every missing package.
    let r = build(
        dir,
        recipe,
        base,
        &dir.join("empty-cache"),
        &dir.join("o.tar"),
        &["--offline".to_string()],
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("demo-lib-1.0-1.el9.noarch.rpm")
            && r.stderr.contains("demo-tool-2.0-1.el9.x86_64.rpm"),
        "{r}"
    );
    // --offline without the lock cannot resolve.
    let r = build(
        dir,
        recipe,
        base,
        cache,
        &dir.join("n.tar"),
        &["--offline".to_string(), "--no-lock".to_string()],
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("--offline"), "{r}");
}

/// A lock whose SHA256 was edited is refused before anything is unpacked.
fn refuses_an_edited_lock(d: &Demo, recipe: &Path, lock_file: &Path) {
    let Demo {
        dir, base, cache, ..
    } = d;
    let text = fs::read_to_string(lock_file).unwrap();
    let tool = text.find("name = \"demo-tool\"").unwrap();
    let sha_at = tool + text[tool..].find("sha256 = \"").unwrap() + 10;
    let mut edited = text.clone();
    let flip = if &text[sha_at..sha_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    edited.replace_range(sha_at..sha_at + 1, flip);
    fs::write(lock_file, edited).unwrap();
    let r = build(
        dir,
        recipe,
        base,
        cache,
        &dir.join("t.tar"),
        &["--offline".to_string()],
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("demo-tool"), "{r}");
}

#[test]
fn lock_then_build_exactly_the_locked_rpms_and_offline() {
    if !tools() {
        return;
    }
    let t = temp_dir("rpm-lock");
    let dir = t.path();
    let home = dir.join("gnupg");
    let key = gpg_key(&home, "repo");
    let served = dir.join("served");
    // Served as $releasever/$basearch below the recipe's URL.
    let tree = served.join("9");
    fs::create_dir_all(&tree).unwrap();
    repository(dir, &tree, &home, "2.0");
    fs::rename(tree.join("demo"), tree.join("x86_64")).unwrap();
    fs::write(served.join("gpg"), &key).unwrap();
    let server = RepoServer::start(&served);
    let d = Demo {
        dir,
        mirror: vec!["--mirror".to_string(), format!("{URL}={}", server.url())],
        base: base(dir),
        cache: dir.join("cache"),
    };
    let recipe = recipe(dir, "\"demo-tool-2.0\"");

    let lock_file = locks_the_recipe(&d, &recipe);
    checks_enablement_against_the_lock(&d, "\"demo-tool-2.0\"");
    let out = builds_exactly_the_locked_rpms(&d, &recipe, &server);
    the_repository_moves_on(&d, &recipe, &served, &home, &out);
    // Back to the locked recipe.
    let recipe = recipe_with(dir, "\"demo-tool-2.0\"");

    // --offline: no server at all; from the lock and the cache.
    drop(server);
    builds_offline(&d, &recipe, &out);
    refuses_an_edited_lock(&d, &recipe, &lock_file);
}

fn recipe_with(dir: &Path, packages: &str) -> PathBuf {
    recipe(dir, packages)
}
