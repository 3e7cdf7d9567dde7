//! Hostile inputs: caches.
//!
//! The cache folder (`--cache-dir`) may be written by someone else: every
//! hit must be verified again. Two caches are attacked here:
//!
//! - the registry cache: a base pinned by digest (`docker://.../a@sha256:A`)
//!   is pulled from a test registry, then the cache is edited so that the
//!   entry for A names (or holds) another image B. The rebuild gives A's
//!   image again (fetched anew) or fails with a clear error, online, with
//!   the registry stopped, and `--offline`; never B's image. A's cached
//!   layer replaced by a FIFO is fetched again (online) or named in the
//!   error (`--offline`), without hanging;
//! - the package download cache: a cached `.deb` is replaced by a symbolic
//!   link to a host file, a larger file, a huge sparse file, a FIFO, a
//!   folder, and a file of the right size with other bytes. Each rebuild
//!   finishes promptly and gives the clean build's image (the `.deb`
//!   fetched again) or a clear error (`--offline`), and never reads the
//!   link's target into the image.
//!
//! Negative controls: an untouched cache gives the first build's digest.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nodeimg_e2e::*;

/// How long one build may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Run `cmd` (stdin closed) to completion, or kill it after `DEADLINE` and
/// fail: a build that reads a FIFO or hashes a huge file never ends.
fn run_deadline(cmd: &mut Command, label: &str) -> Run {
    let t = run_within(cmd, DEADLINE);
    assert!(
        !t.killed,
        "{label}: the build did not finish within {} s (killed): a cache entry made it hang\n{}",
        DEADLINE.as_secs(),
        t.run
    );
    eprintln!(
        "{label}: exit {} in {:.1} s\n{}",
        t.run.code,
        t.elapsed.as_secs_f64(),
        t.run.stderr
    );
    t.run
}

/// A failed build that says what went wrong: exit code 1 or 2 (not a
/// signal or a panic), no digest on stdout, a message that names `words`.
fn assert_clear_error(r: &Run, label: &str, words: &[&str]) {
    assert!(r.code == 1 || r.code == 2, "{label}: {r}");
    assert!(r.stdout.trim().is_empty(), "{label}: {r}");
    assert!(!r.stderr.contains("panicked"), "{label}: {r}");
    for w in words {
        assert!(
            r.stderr.contains(w),
            "{label}: the error does not say {w:?}: {r}"
        );
    }
}

/// Run every case, each to its end even when an earlier one failed, then
/// fail naming the cases that did.
struct Cases {
    failed: Vec<String>,
}

impl Cases {
    fn new() -> Cases {
        Cases { failed: Vec::new() }
    }

    fn case(&mut self, label: &str, f: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            self.failed.push(label.to_string());
        }
    }

    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "failed cases: {}",
            self.failed.join("; ")
        );
    }
}

// ------------------------------------------------------------ registry

/// An image holding `/etc/hostile-marker` = `<name>\n`.
fn marker_recipe(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    fs::write(
        &p,
        format!(
            "[image]\nname = \"{name}\"\ntag = \"v1\"\n\n[[layer]]\nname = \"marker\"\nfile = [{{ path = \"/etc/hostile-marker\", content = \"{name}\\n\" }}]\n"
        ),
    )
    .unwrap();
    p
}

const NODE: &str = "[image]\nname = \"node\"\ntag = \"v1\"\n\n[[layer]]\nname = \"node\"\nfile = [{ path = \"/etc/node\", content = \"node\\n\" }]\n";

struct Images {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    reg: TestRegistry,
    node: PathBuf,
    /// Manifest digests in the registry.
    a: String,
    b: String,
    /// The layout B was pushed from (its blobs, for the attacker).
    b_layout: PathBuf,
    /// The digest of A's layer.
    a_layer: String,
}

impl Images {
    fn setup() -> Option<Images> {
        let reg = TestRegistry::start()?;
        let tmp = temp_dir("hostile-caches-reg");
        let dir = tmp.path().to_path_buf();
        let mut digests = Vec::new();
        for name in ["a", "b"] {
            let recipe = marker_recipe(&dir, name);
            build_ok(&dir, &recipe, &dir.join(name), "oci", "scratch");
            let r = run(nodeimg(&dir)
                .args(["push", &format!("{name}:v1")])
                .arg(reg.docker_ref(&format!("hostile/{name}:v1")))
                .args(["--json", "--insecure-registry", &reg.addr]))
            .ok();
            let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
            digests.push(v["digest"].as_str().unwrap().to_string());
        }
        let node = dir.join("node.toml");
        fs::write(&node, NODE).unwrap();
        let b_layout = dir.join("b");
        let (b, a) = (digests.pop().unwrap(), digests.pop().unwrap());
        assert_ne!(a, b);
        let a_manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("a/blobs/sha256").join(&a[7..])).unwrap())
                .unwrap();
        let a_layer = a_manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        Some(Images {
            _tmp: tmp,
            dir,
            reg,
            node,
            a,
            b,
            b_layout,
            a_layer,
        })
    }

    fn pinned(&self, name: &str, digest: &str) -> String {
        self.reg.docker_ref(&format!("hostile/{name}@{digest}"))
    }

    /// `build node.toml` on `base` as a rootfs tar `out`, with `cache`.
    fn build(&self, base: &str, cache: &Path, out: &str, extra: &[&str], label: &str) -> Run {
        run_deadline(
            nodeimg(&self.dir)
                .arg("build")
                .arg(&self.node)
                .args(["--format", "rootfs", "-o", out, "--cache-dir"])
                .arg(cache)
                .args(["--base", base, "--insecure-registry", &self.reg.addr])
                .args(extra),
            label,
        )
    }
}

/// The marker file of a built rootfs tar.
fn marker_of(tar: &Path) -> String {
    let entries = by_path(&read_tar(tar));
    String::from_utf8_lossy(
        &entries
            .get("/etc/hostile-marker")
            .map(|e| e.data.clone())
            .unwrap_or_default(),
    )
    .into_owned()
}

/// Every folder (`true`) and other file (`false`) under `root`, depth first.
fn walk(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                stack.push(p.clone());
            }
            out.push((p, is_dir));
        }
    }
    out
}

/// Every `blobs/sha256` folder under `root`.
fn blob_dirs(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(p, is_dir)| *is_dir && p.ends_with("blobs/sha256"))
        .map(|(p, _)| p)
        .collect()
}

/// Every `index.json` under `root`.
fn index_files(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(p, is_dir)| !*is_dir && p.file_name().is_some_and(|n| n == "index.json"))
        .map(|(p, _)| p)
        .collect()
}

/// How the attacker edits the cache entry of A.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tamper {
    /// Untouched (negative control).
    None,
    /// Every cached `index.json` that names A names B instead; B's blobs
    /// are put next to A's.
    Index,
    /// As `Index`, and the cached manifest of A (every file named by A's
    /// digest) holds B's manifest.
    IndexAndManifest,
    /// A's cached layer (every file named by its digest) is a FIFO.
    LayerFifo,
}

const TAMPERS: [Tamper; 4] = [
    Tamper::None,
    Tamper::Index,
    Tamper::IndexAndManifest,
    Tamper::LayerFifo,
];

/// A copy of the clean cache `clean` at `dst`, tampered with as `how` says.
fn tampered_cache(img: &Images, clean: &Path, dst: &Path, how: Tamper) {
    copy_dir(clean, dst);
    if how == Tamper::None {
        return;
    }
    let reg = dst.join("registry");
    if how == Tamper::LayerFifo {
        let mut n = 0;
        for d in blob_dirs(&reg) {
            let layer = d.join(&img.a_layer[7..]);
            if fs::symlink_metadata(&layer).is_ok() {
                fs::remove_file(&layer).unwrap();
                run(Command::new("mkfifo").arg(&layer)).ok();
                n += 1;
            }
        }
        assert!(n > 0, "A's layer is not in the cache {}", reg.display());
        return;
    }
    let b_blobs = img.b_layout.join("blobs/sha256");
    let b_manifest = fs::read(b_blobs.join(&img.b[7..])).unwrap();
    let dirs = blob_dirs(&reg);
    assert!(!dirs.is_empty(), "no blob folder under {}", reg.display());
    for d in &dirs {
        for e in fs::read_dir(&b_blobs).unwrap().flatten() {
            let to = d.join(e.file_name());
            if !to.exists() {
                fs::copy(e.path(), &to).unwrap();
            }
        }
        let a_manifest = d.join(&img.a[7..]);
        if how == Tamper::IndexAndManifest {
            // A new file (the entry may be a hard link of another).
            let _ = fs::remove_file(&a_manifest);
            fs::write(&a_manifest, &b_manifest).unwrap();
        }
    }
    for ix in index_files(&reg) {
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&ix).unwrap()).unwrap();
        let mut changed = false;
        if let Some(ms) = v["manifests"].as_array_mut() {
            for m in ms {
                if m["digest"] == img.a.as_str() {
                    m["digest"] = img.b.clone().into();
                    m["size"] = b_manifest.len().into();
                    changed = true;
                }
            }
        }
        if changed {
            let _ = fs::remove_file(&ix);
            fs::write(&ix, serde_json::to_vec(&v).unwrap()).unwrap();
        }
    }
}

/// A rebuild on the tampered cache gives A's image exactly or a clear
/// error, never B's.
fn a_or_refused(r: &Run, out: &Path, clean_a: &str, on_b: &str, label: &str, error_words: &[&str]) {
    if r.code == 0 {
        let d = single_digest_line(r);
        assert_ne!(d, on_b, "{label}: the build used image B: {r}");
        assert_eq!(d, clean_a, "{label}: not the image of A: {r}");
        assert_eq!(marker_of(out), "a\n", "{label}");
    } else {
        assert!(
            !out.exists(),
            "{label}: a failed build left {}",
            out.display()
        );
        assert_clear_error(r, label, error_words);
    }
}

/// The clean builds: A and B into one cache; their digests, which differ.
fn clean_builds(img: &Images, pin_a: &str, pin_b: &str, clean: &Path) -> (String, String) {
    let d = &img.dir;
    let r = img.build(pin_a, clean, "a.tar", &[], "clean A");
    assert_eq!(r.code, 0, "{r}");
    let on_a = single_digest_line(&r);
    assert_eq!(marker_of(&d.join("a.tar")), "a\n");
    let r = img.build(pin_b, clean, "b.tar", &[], "clean B");
    assert_eq!(r.code, 0, "{r}");
    let on_b = single_digest_line(&r);
    assert_eq!(marker_of(&d.join("b.tar")), "b\n");
    assert_ne!(on_a, on_b);
    (on_a, on_b)
}

#[test]
fn a_pinned_registry_base_is_checked_against_its_digest_on_every_use() {
    let Some(mut img) = Images::setup() else {
        return;
    };
    let d = img.dir.clone();
    let clean = d.join("cache");
    let pin_a = img.pinned("a", &img.a);
    let pin_b = img.pinned("b", &img.b);

    let (on_a, on_b) = clean_builds(&img, &pin_a, &pin_b, &clean);

    let mut cases = Cases::new();
    // Online: A again, whatever the cache says.
    for how in TAMPERS {
        let label = format!("online, cache {how:?}");
        cases.case(&label.clone(), || {
            let cache = d.join(format!("cache-online-{how:?}"));
            tampered_cache(&img, &clean, &cache, how);
            let out = format!("online-{how:?}.tar");
            let r = img.build(&pin_a, &cache, &out, &[], &label);
            assert_eq!(r.code, 0, "{label}: the registry serves A: {r}");
            a_or_refused(&r, &d.join(&out), &on_a, &on_b, &label, &[]);
            if how == Tamper::LayerFifo {
                let layer = cache.join("registry/blobs/sha256").join(&img.a_layer[7..]);
                assert!(
                    r.stderr.contains(&layer.display().to_string())
                        && r.stderr.contains("damaged; fetching it again"),
                    "{label}: the damaged layer is reported: {r}"
                );
                assert!(fs::symlink_metadata(&layer).unwrap().is_file(), "{label}");
                assert_eq!(sha256_file(&layer), img.a_layer, "{label}");
            }
        });
    }

    // The registry stopped: never B; a clear error, or A from the cache
    // (--offline) when what is cached verifies.
    img.reg.kill();
    for how in TAMPERS {
        let label = format!("registry stopped, cache {how:?}");
        cases.case(&label.clone(), || {
            let cache = d.join(format!("cache-stopped-{how:?}"));
            tampered_cache(&img, &clean, &cache, how);
            let out = format!("stopped-{how:?}.tar");
            let r = img.build(&pin_a, &cache, &out, &[], &label);
            a_or_refused(&r, &d.join(&out), &on_a, &on_b, &label, &["hostile/a"]);
        });
    }
    for how in TAMPERS {
        let label = format!("--offline, cache {how:?}");
        cases.case(&label.clone(), || {
            let cache = d.join(format!("cache-offline-{how:?}"));
            tampered_cache(&img, &clean, &cache, how);
            let out = format!("offline-{how:?}.tar");
            let r = img.build(&pin_a, &cache, &out, &["--offline"], &label);
            match how {
                // What is cached verifies (the edited index.json is not read):
                // A, with no network.
                Tamper::None | Tamper::Index => {
                    assert_eq!(r.code, 0, "{label}: {r}");
                    a_or_refused(&r, &d.join(&out), &on_a, &on_b, &label, &[]);
                }
                // A's manifest or layer is damaged: the error names the
                // cache file and says what to do.
                Tamper::IndexAndManifest | Tamper::LayerFifo => {
                    let digest = if how == Tamper::LayerFifo {
                        &img.a_layer
                    } else {
                        &img.a
                    };
                    let file = cache.join("registry/blobs/sha256").join(&digest[7..]);
                    a_or_refused(
                        &r,
                        &d.join(&out),
                        &on_a,
                        &on_b,
                        &label,
                        &[&file.display().to_string(), "damaged", "without --offline"],
                    );
                    assert_ne!(r.code, 0, "{label}: {r}");
                }
            }
        });
    }
    cases.finish();
}

// ------------------------------------------------------------ packages

const REPO_URL: &str = "http://repo.invalid/hostile";
const SECRET: &str = "HOST-SECRET-caches-7f3a";

struct PkgRepo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    recipe: PathBuf,
    /// The cached `.deb`'s name in the cache (its SHA256).
    deb_hex: String,
    deb_bytes: Vec<u8>,
}

fn pkg_repo() -> Option<PkgRepo> {
    if !require("dpkg-deb", "dpkg")
        || !require("dpkg-scanpackages", "dpkg-dev")
        || !require("gpg", "gpg")
        || !require("mkfifo", "coreutils")
    {
        return None;
    }
    let tmp = temp_dir("hostile-caches-pkg");
    let dir = tmp.path().to_path_buf();
    let home = dir.join("gnupg");
    let key = repo::gpg_key(&home, "hostile");
    fs::write(dir.join("key.asc"), key).unwrap();
    let repo = dir.join("repo");
    let pool = repo.join("pool/main/h");
    let deb = repo::TestDeb {
        compression: "gzip",
        ..repo::deb(
            "hostile-demo",
            "1.0-1",
            "all",
            "",
            &[(
                "/usr/share/hostile-demo/demo.txt",
                "demo from the repository\n",
            )],
            &[],
        )
    }
    .build(&dir.join("deb-src"), &pool);
    let deb_bytes = fs::read(&deb).unwrap();
    let deb_hex = sha256_file(&deb)[7..].to_string();
    let scan = run(Command::new("dpkg-scanpackages")
        .current_dir(&repo)
        .args(["--multiversion", "pool"]))
    .ok();
    let bin = repo.join("dists/stable/main/binary-amd64");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("Packages"), &scan.stdout).unwrap();
    let dists = repo.join("dists/stable");
    fs::write(
        dists.join("Release"),
        format!(
            "Origin: Hostile\nSuite: stable\nCodename: stable\nDate: Sat, 01 Jan 2022 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
            &sha256_file(&bin.join("Packages"))[7..],
            scan.stdout.len()
        ),
    )
    .unwrap();
    repo::gpg_sign(
        &home,
        &["--clearsign"],
        &dists.join("InRelease"),
        &dists.join("Release"),
    );
    let recipe = dir.join("pkg.toml");
    fs::write(
        &recipe,
        format!(
            r#"[image]
name = "pkg"
tag = "v1"

[[layer]]
name = "dpkg-db"
file = [{{ path = "/var/lib/dpkg/status", content = "" }}]

[[layer]]
name = "runtime"
apt-source = [{{ name = "hostile", uris = ["{REPO_URL}"], suites = ["stable"], components = ["main"], key = "key.asc" }}]
packages = ["hostile-demo"]
"#
        ),
    )
    .unwrap();
    Some(PkgRepo {
        _tmp: tmp,
        dir,
        repo,
        recipe,
        deb_hex,
        deb_bytes,
    })
}

impl PkgRepo {
    fn args(&self, cache: &Path) -> Vec<String> {
        vec![
            "--cache-dir".into(),
            cache.display().to_string(),
            "--mirror".into(),
            format!("{REPO_URL}=file://{}", self.repo.display()),
        ]
    }

    fn build(&self, cache: &Path, out: &str, extra: &[&str], label: &str) -> Run {
        run_deadline(
            nodeimg(&self.dir)
                .arg("build")
                .arg(&self.recipe)
                .args(["--format", "rootfs", "--base", "scratch", "-o", out])
                .args(self.args(cache))
                .args(extra),
            label,
        )
    }
}

/// What replaces the cached `.deb`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Entry {
    /// Nothing changed (negative control).
    Untouched,
    /// A symbolic link to a host file.
    SymlinkToHostFile,
    /// The `.deb` with more bytes after it.
    Larger,
    /// A sparse file of 1 TiB (hashing it would take hours).
    Huge,
    /// A FIFO nobody writes to.
    Fifo,
    /// A folder.
    Folder,
    /// The right size, other bytes.
    OtherBytes,
}

const ENTRIES: [Entry; 7] = [
    Entry::Untouched,
    Entry::SymlinkToHostFile,
    Entry::Larger,
    Entry::Huge,
    Entry::Fifo,
    Entry::Folder,
    Entry::OtherBytes,
];

/// Replace the cache entry `path` as `how` says; returns the host file a
/// link points at, if any.
fn replace_entry(path: &Path, how: Entry, deb: &[u8], host: &Path) {
    if how == Entry::Untouched {
        return;
    }
    fs::remove_file(path).unwrap();
    match how {
        Entry::Untouched => {}
        Entry::SymlinkToHostFile => std::os::unix::fs::symlink(host, path).unwrap(),
        Entry::Larger => {
            let mut b = deb.to_vec();
            b.extend(vec![b'x'; 1 << 20]);
            fs::write(path, b).unwrap();
        }
        Entry::Huge => {
            let f = fs::File::create(path).unwrap();
            // 1 TiB where the file system allows it, else as much as it does.
            if f.set_len(1 << 40).is_err() {
                f.set_len(64 << 30).unwrap();
            }
        }
        Entry::Fifo => {
            run(Command::new("mkfifo").arg(path)).ok();
            assert!(fs::symlink_metadata(path).unwrap().file_type().is_fifo());
        }
        Entry::Folder => {
            fs::create_dir(path).unwrap();
            fs::write(path.join("x"), b"x").unwrap();
        }
        Entry::OtherBytes => {
            let mut b = deb.to_vec();
            let n = b.len();
            for x in &mut b[n / 2..] {
                *x ^= 0x5a;
            }
            fs::write(path, b).unwrap();
        }
    }
}

/// No member of the tar holds the host file's secret.
fn assert_no_secret(tar: &Path, label: &str) {
    let bytes = fs::read(tar).unwrap();
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "{label}: the host file behind the link was read into the image"
    );
}

#[test]
fn a_damaged_package_cache_entry_is_fetched_again_never_followed_or_read_unbounded() {
    let Some(p) = pkg_repo() else { return };
    let d = p.dir.clone();
    // A host file the link points at, of the .deb's size: the secret repeated.
    let host = d.join("host-secret");
    let mut secret = SECRET.repeat(p.deb_bytes.len() / SECRET.len() + 1);
    secret.truncate(p.deb_bytes.len());
    fs::write(&host, &secret).unwrap();

    let clean = d.join("cache");
    let r = p.build(&clean, "clean.tar", &[], "clean build");
    assert_eq!(r.code, 0, "{r}");
    let want = single_digest_line(&r);
    let entries = by_path(&read_tar(&d.join("clean.tar")));
    assert_eq!(
        entries["/usr/share/hostile-demo/demo.txt"].data,
        b"demo from the repository\n"
    );
    let entry = |cache: &Path| cache.join("sha256").join(&p.deb_hex);
    assert_eq!(fs::read(entry(&clean)).unwrap(), p.deb_bytes);

    let mut cases = Cases::new();
    // Online: the entry is replaced by a fresh download; same image.
    for how in ENTRIES {
        let label = format!("cache entry {how:?}");
        cases.case(&label.clone(), || {
            let cache = d.join(format!("cache-{how:?}"));
            copy_dir(&clean, &cache);
            replace_entry(&entry(&cache), how, &p.deb_bytes, &host);
            let out = format!("out-{how:?}.tar");
            let r = p.build(&cache, &out, &[], &label);
            assert_eq!(r.code, 0, "{label}: {r}");
            assert_eq!(single_digest_line(&r), want, "{label}: {r}");
            assert_no_secret(&d.join(&out), &label);
            let now = fs::symlink_metadata(entry(&cache)).unwrap();
            assert!(now.file_type().is_file(), "{label}: {now:?}");
            assert_eq!(fs::read(entry(&cache)).unwrap(), p.deb_bytes, "{label}");
            if how != Entry::Untouched {
                assert!(
                    r.stderr.contains(&entry(&cache).display().to_string()),
                    "{label}: the damaged entry is reported: {r}"
                );
            }
            assert_eq!(fs::read_to_string(&host).unwrap(), secret, "{label}");
        });
    }

    // --offline, from the lock: a damaged entry cannot be fetched again;
    // the build stops at once and names it.
    let lock = run_deadline(
        nodeimg(&d)
            .arg("lock")
            .arg(&p.recipe)
            .args(["--base", "scratch"])
            .args(p.args(&clean)),
        "lock",
    );
    assert_eq!(lock.code, 0, "{lock}");
    for how in ENTRIES {
        let label = format!("--offline, cache entry {how:?}");
        cases.case(&label.clone(), || {
            let cache = d.join(format!("cache-offline-{how:?}"));
            copy_dir(&clean, &cache);
            replace_entry(&entry(&cache), how, &p.deb_bytes, &host);
            let out = format!("offline-{how:?}.tar");
            let r = p.build(&cache, &out, &["--offline"], &label);
            if how == Entry::Untouched {
                assert_eq!(r.code, 0, "{label}: {r}");
                assert_eq!(single_digest_line(&r), want, "{label}: {r}");
                return;
            }
            assert!(!d.join(&out).exists(), "{label}: {r}");
            assert_clear_error(
                &r,
                &label,
                &["--offline", &entry(&cache).display().to_string()],
            );
            assert_eq!(fs::read_to_string(&host).unwrap(), secret, "{label}");
        });
    }
    cases.finish();
}
