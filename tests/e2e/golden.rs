//! Golden outputs: every shipped recipe built on the fixture base gives the
//! image it gave when the values in `tests/golden/` were recorded, byte for
//! byte (manifest, config and each layer digest), and `nodeimg lock` writes
//! the recorded lock file, byte for byte, for one apt and one rpm recipe.
//!
//! Every recipe is built as the other tests build it: one that installs
//! Debian packages on the fixture base, from the seed apt repositories
//! (`repo::SeedRepos`) through a mirror that re-signs; one that installs rpm
//! packages (docker-centos, containerd-centos, crio-centos, crio-opensuse) on
//! the rpm fixture base, from the generated yum and zypper repositories
//! (`rpmrepo::RpmRepos`). None is left out. The repositories are the same
//! bytes on every run (fixed keys, signatures at a frozen time, packages and
//! metadata dated by a fixed epoch); the server's port changes, and appears
//! in no output (the recipes' own URLs are mirrored).
//!
//! In the recorded locks, a `sha256` (and the `size` before it) of a file the
//! test repositories serve is written as the path it is served under:
//! `sha256 = <served /debian/dists/bookworm/InRelease>`. The test checks that
//! the lock names exactly that file's hash and size, and is not tied to the
//! bytes the build host's `dpkg-deb`, `dpkg-scanpackages` or `gpg` generate
//! (which may change with their versions). Everything else, and every image
//! digest, is compared byte for byte.
//!
//! The values hold only for the inputs they were recorded with: the fixture
//! base (real Debian bookworm packages, see `scripts/make-test-base`) and the
//! rpm fixture base (that base plus the build host's rpm, see
//! `rpmrepo::rpm_fixture_base`). Their sha256 are recorded too; when one
//! differs the test fails saying that the base changed, not the code.
//!
//! Re-record (after a change that is meant to change the outputs, or on a
//! new base):
//!
//! ```text
//! NODEIMG_GOLDEN=record cargo test -p nodeimg-e2e --test golden
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nodeimg_e2e::*;

/// The recorded digests, one `KEY VALUE` line each.
const DIGESTS: &str = "digests.txt";
/// The apt recipe whose lock file is recorded.
const APT_LOCK_RECIPE: &str = "containerd-debian.toml";
/// The rpm recipe whose lock file is recorded.
const RPM_LOCK_RECIPE: &str = "docker-centos.toml";

fn golden_dir() -> PathBuf {
    workspace_root().join("tests/golden")
}

fn recording() -> bool {
    std::env::var("NODEIMG_GOLDEN").is_ok_and(|v| v == "record")
}

const RERECORD: &str =
    "re-record with `NODEIMG_GOLDEN=record cargo test -p nodeimg-e2e --test golden` \
     (with the binary whose outputs are the reference, e.g. NODEIMG_BIN=<binary of the \
     last release>)";

fn json(path: &Path) -> serde_json::Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn str_at<'a>(v: &'a serde_json::Value, ptr: &str, what: &Path) -> &'a str {
    v.pointer(ptr)
        .and_then(|d| d.as_str())
        .unwrap_or_else(|| panic!("{}: no {ptr}", what.display()))
}

/// The digests of the OCI layout `layout` (one image): `manifest`,
/// `config`, `layer0`, `layer1`... (bottom layer first).
fn layout_digests(layout: &Path) -> Vec<(String, String)> {
    let index_path = layout.join("index.json");
    let index = json(&index_path);
    let manifest = str_at(&index, "/manifests/0/digest", &index_path).to_string();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest_path = blob(&manifest);
    assert_eq!(
        sha256_file(&manifest_path),
        manifest,
        "{}: the manifest blob does not match its digest",
        layout.display()
    );
    let m = json(&manifest_path);
    let mut out = vec![
        ("manifest".to_string(), manifest),
        (
            "config".to_string(),
            str_at(&m, "/config/digest", &manifest_path).to_string(),
        ),
    ];
    let layers = m
        .get("layers")
        .and_then(|l| l.as_array())
        .unwrap_or_else(|| panic!("{}: no layers", manifest_path.display()));
    for (i, l) in layers.iter().enumerate() {
        let d = l
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or_else(|| panic!("{}: layer {i} has no digest", manifest_path.display()));
        out.push((format!("layer{i}"), d.to_string()));
    }
    // The diff_ids: a layer whose tar is the recorded one but whose blob
    // is not was compressed differently (see `layer_cache_format_moves`).
    let config_path = blob(str_at(&m, "/config/digest", &manifest_path));
    let config = json(&config_path);
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .unwrap_or_else(|| panic!("{}: no diff_ids", config_path.display()));
    for (i, d) in diff_ids.iter().enumerate() {
        let d = d
            .as_str()
            .unwrap_or_else(|| panic!("{}: diff_id {i} is not a string", config_path.display()));
        out.push((format!("diff{i}"), d.to_string()));
    }
    out
}

/// The layer cache format of the binary (`nodeimg cache --json`).
fn layer_cache_format() -> String {
    let t = temp_dir("golden-format");
    let r = run(nodeimg(t.path())
        .args(["cache", "--json", "--cache-dir"])
        .arg(t.path()))
    .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("nodeimg cache --json");
    v.get("layer_cache_format")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no layer_cache_format in {r}"))
        .to_string()
}

/// Recording: a layer whose tar (diff_id) is the recorded one but whose
/// blob is not means the same input now compresses to other bytes. Layer
/// caches filled by the previous code would serve the old bytes for it,
/// so the layer cache format must have moved; the names of such layers.
fn layer_cache_format_moves(
    old: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    if old.get(FORMAT_KEY) != now.get(FORMAT_KEY) {
        return Vec::new();
    }
    now.iter()
        .filter_map(|(k, blob)| {
            let (recipe, i) = k.rsplit_once(" layer")?;
            let diff = format!("{recipe} diff{i}");
            let same_tar = old.get(&diff).is_some_and(|d| now.get(&diff) == Some(d));
            let other_blob = old.get(k).is_some_and(|b| b != blob);
            (same_tar && other_blob).then(|| k.clone())
        })
        .collect()
}

/// The key of the layer cache format in the golden values.
const FORMAT_KEY: &str = "layer-cache-format";

/// Build `recipe` (a file of the workspace's `recipes/`) as the tests build
/// it on `base` into `dir/img` (an OCI layout); its digests, keyed
/// `<recipe> <what>`.
fn build_recipe(recipe: &Path, base: &Path, dir: &Path) -> Vec<(String, String)> {
    let file = recipe
        .file_name()
        .expect("a recipe file name")
        .to_string_lossy()
        .into_owned();
    let b = test_build(recipe, base);
    let out = dir.join("img");
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&b.recipe)
        .arg("-o")
        .arg(&out)
        .args(["--format", "oci", "--base", &b.base_ref()])
        .args(&b.args))
    .ok();
    let printed = single_digest_line(&r);
    let digests = layout_digests(&out);
    assert_eq!(
        digests[0].1, printed,
        "{file}: the printed digest is not the layout's manifest"
    );
    digests
        .into_iter()
        .map(|(k, v)| (format!("{file} {k}"), v))
        .collect()
}

/// `nodeimg lock` of `recipe` (built as the tests build it on `base`), in a
/// copy of the recipes under `dir`, so that no lock lands next to the
/// workspace's recipes; the lock file's bytes.
fn lock_recipe(recipe: &Path, base: &Path, dir: &Path) -> Vec<u8> {
    let b = test_build(recipe, base);
    // The recipe the tests build (for an rpm recipe, in the copy whose key
    // files are the test key), copied with its folder.
    let src = b.recipe.parent().expect("the recipes folder");
    let copy = dir.join("recipes");
    copy_dir(src, &copy);
    let name = b.recipe.file_name().expect("a recipe file name");
    let recipe_copy = copy.join(name);
    let lock = copy.join(format!("{}.lock", name.to_string_lossy()));
    let _ = fs::remove_file(&lock);
    run(nodeimg(dir)
        .arg("lock")
        .arg(&recipe_copy)
        .args(["--base", &b.base_ref()])
        .args(&b.args))
    .ok();
    fs::read(&lock).unwrap_or_else(|e| panic!("read {}: {e}", lock.display()))
}

/// The recorded values: `KEY VALUE` lines (the key may hold spaces: the value
/// is the last word); `#` lines are comments.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn render(values: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "# Golden outputs of `cargo test -p nodeimg-e2e --test golden`: the digests of every\n\
         # recipes/*.toml built on the fixture base, and the fixture bases they hold for.\n\
         # Re-record: NODEIMG_GOLDEN=record cargo test -p nodeimg-e2e --test golden\n",
    );
    for (k, v) in values {
        s.push_str(&format!("{k} {v}\n"));
    }
    s
}

/// Fails, saying so, when a fixture base is not the one the golden values
/// (in `path`) were recorded on.
fn check_bases(recorded: &BTreeMap<String, String>, now: &BTreeMap<String, String>, path: &Path) {
    for key in ["base fixture-base.tar", "base fixture-rpm.tar"] {
        let (was, is) = (recorded.get(key), now.get(key));
        if was != is {
            let name = key.trim_start_matches("base ");
            let what = if name == "fixture-rpm.tar" {
                "the rpm fixture base (build/fixtures/base.tar with the build host's rpm, its \
                 libraries and an rpm database added, see rpmrepo::rpm_fixture_base): another \
                 rpm on the build host gives another base"
            } else {
                "build/fixtures/base.tar (made by scripts/make-test-base from Debian bookworm's \
                 packages): Debian's bookworm suite may have moved"
            };
            panic!(
                "the fixture base changed, not the code: {name} is {} here, but the golden values \
                 in {} were recorded on {name} {}; {name} is {what}. The values hold only on the base \
                 they were recorded on: {RERECORD}",
                is.map_or("missing", String::as_str),
                path.display(),
                was.map_or("(none recorded)", String::as_str),
            );
        }
    }
}

/// Every regular file under `root` (what a test server serves), by its
/// sha256 (hex): its paths under `root` (with a leading `/`, sorted: equal
/// files may be served under several) and size.
fn served_files(root: &Path) -> BTreeMap<String, (Vec<String>, u64)> {
    let mut out: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    for rel in files_under(root, "") {
        let p = root.join(rel.trim_start_matches('/'));
        let size = fs::metadata(&p)
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .len();
        let hex = sha256_file(&p).trim_start_matches("sha256:").to_string();
        let entry = out.entry(hex).or_insert_with(|| (Vec::new(), size));
        entry.0.push(rel);
        entry.0.sort();
    }
    out
}

/// `lock` with each `sha256 = "H"` of a file in `served` written as
/// `sha256 = <served PATH>`, and the `size = N` line before it as
/// `size = <served PATH>` when N is that file's size (see the module
/// documentation). PATH is the one the entry's `url` ends with, else the
/// first. A hash or size of anything else stays as it is.
fn served_as_paths(lock: &str, served: &BTreeMap<String, (Vec<String>, u64)>) -> String {
    let mut lines: Vec<String> = lock.lines().map(str::to_string).collect();
    for i in 0..lines.len() {
        let Some(hex) = lines[i]
            .strip_prefix("sha256 = \"")
            .and_then(|r| r.strip_suffix('"'))
        else {
            continue;
        };
        let Some((paths, size)) = served.get(hex) else {
            continue;
        };
        let url = lines[i.saturating_sub(3)..i]
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("url = \""))
            .map(|u| u.trim_end_matches('"').to_string());
        let path = url
            .and_then(|u| paths.iter().find(|p| u.ends_with(p.as_str())))
            .unwrap_or(&paths[0])
            .clone();
        lines[i] = format!("sha256 = <served {path}>");
        if i > 0 && lines[i - 1] == format!("size = {size}") {
            lines[i - 1] = format!("size = <served {path}>");
        }
    }
    let mut out = lines.join("\n");
    if lock.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Lock files made by the test: (file name, bytes).
type Locks = Vec<(String, Vec<u8>)>;

/// Builds every recipe on the fixture `base` (in `tmp`): the values to record
/// of each, and the locks of [`APT_LOCK_RECIPE`] and [`RPM_LOCK_RECIPE`].
fn build_all(base: &Path, tmp: &Path) -> (Vec<(String, String)>, Locks) {
    // Two workers, one per package backend: each download cache is used by
    // one build at a time.
    let (rpm_recipes, apt_recipes): (Vec<PathBuf>, Vec<PathBuf>) = recipes()
        .into_iter()
        .partition(|r| rpmrepo::has_rpm_packages(r));
    let results: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let locks: Mutex<Locks> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (kind, list, lock_name) in [
            ("apt", &apt_recipes, APT_LOCK_RECIPE),
            ("rpm", &rpm_recipes, RPM_LOCK_RECIPE),
        ] {
            let (results, locks) = (&results, &locks);
            s.spawn(move || {
                for recipe in list {
                    let file = recipe
                        .file_name()
                        .expect("a recipe file name")
                        .to_string_lossy()
                        .into_owned();
                    let dir = tmp.join(kind).join(&file);
                    fs::create_dir_all(&dir).expect("mkdir");
                    let d = build_recipe(recipe, base, &dir);
                    results.lock().expect("results").extend(d);
                    if file == lock_name {
                        let ldir = tmp.join(kind).join(format!("lock-{file}"));
                        fs::create_dir_all(&ldir).expect("mkdir");
                        let bytes = lock_recipe(recipe, base, &ldir);
                        locks
                            .lock()
                            .expect("locks")
                            .push((format!("{file}.lock"), bytes));
                    }
                }
            });
        }
    });
    (
        results.into_inner().expect("results"),
        locks.into_inner().expect("locks"),
    )
}

/// What differs between the recorded values and locks (in `dir`) and
/// today's, a line each.
fn differences(
    recorded: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    locks: &[(String, Vec<u8>)],
    dir: &Path,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (k, v) in now {
        match recorded.get(k) {
            Some(r) if r == v => {}
            Some(r) => diffs.push(format!("  {k}: recorded {r}, now {v}")),
            None => diffs.push(format!("  {k}: not recorded, now {v}")),
        }
    }
    for (k, r) in recorded {
        if !now.contains_key(k) {
            diffs.push(format!("  {k}: recorded {r}, now missing"));
        }
    }
    for (name, bytes) in locks {
        let p = dir.join(name);
        let want = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        if &want != bytes {
            let got = String::from_utf8_lossy(bytes);
            let want = String::from_utf8_lossy(&want);
            let first = want
                .lines()
                .zip(got.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .map(|(i, (a, b))| format!("line {}: recorded `{a}`, now `{b}`", i + 1))
                .unwrap_or_else(|| "the lengths differ".to_string());
            diffs.push(format!("  {name}: the lock file differs ({first})"));
        }
    }
    diffs
}

/// Write the golden values `now` and the `locks` into `dir`, unless a
/// layer's blob moved while its tar did not and the layer cache format
/// stayed (see [`layer_cache_format_moves`]).
fn record(dir: &Path, now: &BTreeMap<String, String>, locks: &Locks) {
    let path = dir.join(DIGESTS);
    let old = fs::read_to_string(&path)
        .map(|t| parse(&t))
        .unwrap_or_default();
    let moved = layer_cache_format_moves(&old, now);
    assert!(
        moved.is_empty(),
        "the same layer tars now compress to other bytes ({}): raise FORMAT in \
         crates/image/src/cache.rs, so that layer caches filled before do not serve \
         the old blobs, then record again",
        moved.join(", ")
    );
    fs::create_dir_all(dir).expect("mkdir tests/golden");
    fs::write(&path, render(now)).expect("write the golden digests");
    for (name, bytes) in locks {
        fs::write(dir.join(name), bytes).expect("write a golden lock");
    }
    eprintln!("recorded {} values in {}", now.len(), dir.display());
}

#[test]
fn every_recipe_gives_the_recorded_image_and_lock() {
    let Some(base) = fixture_base() else { return };
    // Both kinds of repositories, and the rpm base, before the builds start.
    let Some(apt) = repo::seed_repos() else {
        return;
    };
    let Some(rpm) = rpmrepo::rpm_repos() else {
        return;
    };
    let Some(rpm_base) = rpmrepo::rpm_fixture_base() else {
        return;
    };
    // What the repositories serve, by hash, for the locks (see the module
    // documentation).
    let mut served = served_files(&apt.root);
    served.extend(served_files(&rpm.served));

    let mut now: BTreeMap<String, String> = BTreeMap::new();
    now.insert("base fixture-base.tar".to_string(), sha256_file(&base));
    now.insert("base fixture-rpm.tar".to_string(), sha256_file(&rpm_base));

    let dir = golden_dir();
    let path = dir.join(DIGESTS);
    // The bases first, before any build: another base is no fault of the code.
    let recorded = if recording() {
        BTreeMap::new()
    } else {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no golden values at {} ({e}): {RERECORD}", path.display()));
        let recorded = parse(&text);
        check_bases(&recorded, &now, &path);
        recorded
    };

    let tmp = temp_dir("golden");
    let (results, locks) = build_all(&base, tmp.path());
    now.extend(results);
    let locks: Locks = locks
        .into_iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes).expect("a lock file is UTF-8");
            (name, served_as_paths(&text, &served).into_bytes())
        })
        .collect();
    let hashed = locks
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).matches("<served ").count())
        .collect::<Vec<_>>();
    // Every lock names served files (its index and packages at least): the
    // substitution found them.
    assert!(
        hashed.iter().all(|&n| n >= 4),
        "a lock names fewer served files than expected ({hashed:?} hashes and sizes)"
    );
    assert_eq!(
        locks.len(),
        2,
        "the lock of {APT_LOCK_RECIPE} or {RPM_LOCK_RECIPE} was not made: is the recipe still shipped?"
    );
    // Every recipe is covered: none is skipped.
    for r in recipes() {
        let file = r.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            now.contains_key(&format!("{file} manifest")),
            "{file} was not built"
        );
    }

    now.insert(FORMAT_KEY.to_string(), layer_cache_format());
    if recording() {
        record(&dir, &now, &locks);
        return;
    }

    let diffs = differences(&recorded, &now, &locks, &dir);
    assert!(
        diffs.is_empty(),
        "the outputs differ from the golden values in {} (bases unchanged, so the code \
         changed them):\n{}\nIf the change is intended, {RERECORD}",
        dir.display(),
        diffs.join("\n")
    );
}

#[test]
fn a_new_compression_of_the_same_tar_needs_a_new_layer_cache_format() {
    let v = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    let old = v(&[
        (FORMAT_KEY, "1"),
        ("a.toml layer0", "sha256:b0"),
        ("a.toml diff0", "sha256:t0"),
        ("a.toml layer1", "sha256:b1"),
        ("a.toml diff1", "sha256:t1"),
    ]);
    // The recipe changed layer 1's files: its tar and blob move together.
    let edited = v(&[
        (FORMAT_KEY, "1"),
        ("a.toml layer0", "sha256:b0"),
        ("a.toml diff0", "sha256:t0"),
        ("a.toml layer1", "sha256:b9"),
        ("a.toml diff1", "sha256:t9"),
    ]);
    assert!(layer_cache_format_moves(&old, &edited).is_empty());
    // The compressor changed: same tar, other blob.
    let recompressed = v(&[
        (FORMAT_KEY, "1"),
        ("a.toml layer0", "sha256:c0"),
        ("a.toml diff0", "sha256:t0"),
        ("a.toml layer1", "sha256:b1"),
        ("a.toml diff1", "sha256:t1"),
    ]);
    assert_eq!(
        layer_cache_format_moves(&old, &recompressed),
        vec!["a.toml layer0".to_string()]
    );
    let mut raised = recompressed.clone();
    raised.insert(FORMAT_KEY.to_string(), "2".to_string());
    assert!(layer_cache_format_moves(&old, &raised).is_empty());
}

#[test]
fn a_lock_hash_is_written_as_the_served_file_only_when_it_is_that_files() {
    let mut served = BTreeMap::new();
    served.insert(
        "aa".to_string(),
        (
            vec!["/c/InRelease".to_string(), "/d/InRelease".to_string()],
            10,
        ),
    );
    let lock = "[[release]]\nurl = \"http://x/d/InRelease\"\nsize = 10\nsha256 = \"aa\"\n\
                [[index]]\nsize = 10\nsha256 = \"bb\"\n[[x]]\nsize = 11\nsha256 = \"aa\"\n";
    assert_eq!(
        served_as_paths(lock, &served),
        "[[release]]\nurl = \"http://x/d/InRelease\"\nsize = <served /d/InRelease>\n\
         sha256 = <served /d/InRelease>\n[[index]]\nsize = 10\nsha256 = \"bb\"\n\
         [[x]]\nsize = 11\nsha256 = <served /c/InRelease>\n"
    );
}
