//! The layer cache: a warm build is the cold build bit for bit, reuses
//! every layer it can (the base's too) and puts the blobs into the output
//! by link; a changed input misses; a damaged entry is reported, not used,
//! and built again. Cold builds here are `--no-cache` builds of the same
//! recipe, the reference a cache must never drift from.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nodeimg_e2e::*;

/// A recipe folder: three config layers and a file from the folder.
fn recipe_dir(root: &Path, max_map_count: u32) -> PathBuf {
    let dir = root.join("recipe");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("motd"), "a node\n").expect("write");
    fs::write(
        dir.join("node.toml"),
        format!(
            r#"[image]
name = "cached"

[[layer]]
name = "kernel"
modules = {{ file = "k8s", load = ["overlay", "br_netfilter"] }}
sysctl = {{ file = "99-k8s", set = {{ "net.ipv4.ip_forward" = 1 }} }}

[[layer]]
name = "kubelet"
kubelet = {{ cgroup-driver = "systemd", container-runtime-endpoint = "unix:///run/containerd/containerd.sock" }}
file = [{{ path = "/etc/motd", source = "motd" }}]

[[layer]]
name = "tuning"
sysctl = {{ file = "99-tuning", set = {{ "vm.max_map_count" = {max_map_count} }} }}
"#
        ),
    )
    .expect("write");
    dir.join("node.toml")
}

/// What one build printed.
struct Built {
    digest: String,
    stderr: String,
}

/// Build `recipe` on `base` into `out` (`format`); with `cache`, through
/// that layer cache, else with none.
fn build(recipe: &Path, base: &str, out: &Path, format: &str, cache: Option<&Path>) -> Built {
    build_args(recipe, base, out, cache, &["--format", format])
}

/// [`build`] with more arguments (`--format` among them, or the default).
fn build_args(recipe: &Path, base: &str, out: &Path, cache: Option<&Path>, args: &[&str]) -> Built {
    let dir = recipe.parent().expect("folder");
    let mut c = nodeimg(dir);
    c.arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--base", base])
        .args(args);
    match cache {
        Some(cache) => {
            c.env_remove("NODEIMG_NO_CACHE")
                .arg("--cache-dir")
                .arg(cache);
        }
        None => {
            c.arg("--no-cache");
        }
    }
    let r = run(&mut c).ok();
    Built {
        digest: single_digest_line(&r),
        stderr: r.stderr,
    }
}

/// The "layer cache: ..." line of a build's progress.
fn cache_line(b: &Built) -> String {
    b.stderr
        .lines()
        .find(|l| l.contains("layer cache:") && l.contains("reused"))
        .unwrap_or_else(|| panic!("no layer cache line in:\n{}", b.stderr))
        .trim_start_matches("nodeimg: ")
        .to_string()
}

fn blob_names(layout: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn warm_builds_are_the_cold_build_and_link_the_cached_blobs() {
    let Some(base) = fixture_base() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("cache-warm");
    let recipe = recipe_dir(t.path(), 262_144);
    let cache = t.path().join("cache");

    let cold = build(&recipe, &base, &t.path().join("cold"), "oci", None);
    let first = build(&recipe, &base, &t.path().join("first"), "oci", Some(&cache));
    assert_eq!(first.digest, cold.digest, "{}", first.stderr);
    assert_eq!(
        cache_line(&first),
        "layer cache: 0 layer(s) reused, 4 built; 0 base layer index(es) reused"
    );
    let warm = build(&recipe, &base, &t.path().join("warm"), "oci", Some(&cache));
    assert_eq!(warm.digest, cold.digest, "{}", warm.stderr);
    assert_eq!(
        cache_line(&warm),
        "layer cache: 4 layer(s) reused, 0 built; 1 base layer index(es) reused"
    );
    assert!(!warm.stderr.contains("warning"), "{}", warm.stderr);

    // The same files, byte for byte; every blob what its name says.
    let (c, w) = (t.path().join("cold"), t.path().join("warm"));
    assert_eq!(tree_listing(&c), tree_listing(&w));
    for name in blob_names(&w) {
        let (a, b) = (
            c.join("blobs/sha256").join(&name),
            w.join("blobs/sha256").join(&name),
        );
        assert_eq!(
            sha256_file(&b),
            format!("sha256:{name}"),
            "{name} of the warm build"
        );
        assert!(
            fs::read(&a).expect("read") == fs::read(&b).expect("read"),
            "{name}"
        );
    }
    verify_layout_blobs(&w, "latest").expect("the warm layout's blobs");
    // Cache and outputs share a file system here: the four layer blobs are
    // links to the cached files, not copies (the config and manifest are
    // written by each build).
    let linked = blob_names(&w)
        .iter()
        .filter(|n| {
            let m = fs::metadata(w.join("blobs/sha256").join(n)).expect("stat");
            let cached = cache.join("layers/blobs").join(n);
            cached.exists() && fs::metadata(&cached).expect("stat").ino() == m.ino()
        })
        .count();
    assert_eq!(linked, 4, "layer blobs linked from the cache");

    // Archives from the cache are the cold archives too.
    for format in ["oci-archive", "docker-archive"] {
        let cold_ar = build(
            &recipe,
            &base,
            &t.path().join(format!("cold.{format}.tar")),
            format,
            None,
        );
        let warm_ar = build(
            &recipe,
            &base,
            &t.path().join(format!("warm.{format}.tar")),
            format,
            Some(&cache),
        );
        assert_eq!(warm_ar.digest, cold_ar.digest, "{format}");
        assert_eq!(
            sha256_file(&t.path().join(format!("warm.{format}.tar"))),
            sha256_file(&t.path().join(format!("cold.{format}.tar"))),
            "{format}"
        );
    }
}

#[test]
fn a_changed_input_misses_the_cache_and_only_its_layer_is_built() {
    let Some(base_tar) = fixture_base() else {
        return;
    };
    let base = fixture_base_ref(&base_tar);
    let t = temp_dir("cache-change");
    let cache = t.path().join("cache");
    let recipe = recipe_dir(t.path(), 262_144);
    build(&recipe, &base, &t.path().join("a"), "oci", Some(&cache));

    // One sysctl of the top layer changed: that layer is built, the rest
    // (the base's blob and index among them) come from the cache.
    let recipe = recipe_dir(t.path(), 262_145);
    let warm = build(&recipe, &base, &t.path().join("b"), "oci", Some(&cache));
    assert_eq!(
        cache_line(&warm),
        "layer cache: 3 layer(s) reused, 1 built; 1 base layer index(es) reused"
    );
    let cold = build(&recipe, &base, &t.path().join("b-cold"), "oci", None);
    assert_eq!(warm.digest, cold.digest);

    // A recipe input's bytes changed (its size kept): its layer misses.
    fs::write(t.path().join("recipe/motd"), "A node\n").expect("write");
    let warm = build(&recipe, &base, &t.path().join("c"), "oci", Some(&cache));
    assert_eq!(
        cache_line(&warm),
        "layer cache: 3 layer(s) reused, 1 built; 1 base layer index(es) reused"
    );
    assert_eq!(
        warm.digest,
        build(&recipe, &base, &t.path().join("c-cold"), "oci", None).digest
    );

    // Another compression is another blob.
    let zstd = build_args(
        &recipe,
        &base,
        &t.path().join("zstd"),
        Some(&cache),
        &["--compression", "zstd"],
    );
    assert_eq!(
        cache_line(&zstd),
        "layer cache: 0 layer(s) reused, 4 built; 1 base layer index(es) reused"
    );
}

#[test]
fn a_rootfs_base_rewritten_in_place_gets_a_new_index() {
    let Some(base_tar) = fixture_base() else {
        return;
    };
    let t = temp_dir("cache-rewritten");
    let cache = t.path().join("cache");
    let recipe = recipe_dir(t.path(), 262_144);
    let moved = t.path().join("base.tar");
    fs::copy(&base_tar, &moved).expect("copy");
    let base = format!("rootfs:{}", moved.display());
    build(&recipe, &base, &t.path().join("a"), "oci", Some(&cache));
    // Its size and mtime kept, one byte changed: it is hashed, so its old
    // index and blob are not used, even when the build is told to trust a
    // file's identity (the write moved the change time).
    let mtime = fs::metadata(&moved)
        .expect("stat")
        .modified()
        .expect("mtime");
    let mut bytes = fs::read(&moved).expect("read");
    let at = find(&bytes, b"ID=").expect("an os-release in the fixture base");
    bytes[at] = b'J';
    fs::write(&moved, &bytes).expect("write");
    fs::File::options()
        .write(true)
        .open(&moved)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    let trusted = ["--trust-stat"];
    let warm = build_args(&recipe, &base, &t.path().join("b"), Some(&cache), &trusted);
    assert_eq!(
        cache_line(&warm),
        "layer cache: 3 layer(s) reused, 1 built; 0 base layer index(es) reused"
    );
    let cold = build(&recipe, &base, &t.path().join("b-cold"), "oci", None);
    assert_eq!(warm.digest, cold.digest);
    // Unchanged since: trusted, its index is reused.
    let warm = build_args(&recipe, &base, &t.path().join("c"), Some(&cache), &trusted);
    assert_eq!(warm.digest, cold.digest);
    assert_eq!(
        cache_line(&warm),
        "layer cache: 4 layer(s) reused, 0 built; 1 base layer index(es) reused"
    );
    assert!(!warm.stderr.contains("warning"), "{}", warm.stderr);
    // A cached blob changed in place, its size kept: trusted only by its
    // identity, which the write moved, so it is hashed and found damaged.
    let blob = files_in(&cache.join("layers/blobs"))
        .into_iter()
        .max_by_key(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .expect("the base's blob");
    let mut bytes = fs::read(&blob).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&blob, &bytes).expect("write in place");
    let again = build_args(&recipe, &base, &t.path().join("d"), Some(&cache), &trusted);
    assert_eq!(again.digest, cold.digest);
    assert!(
        again.stderr.contains(&format!(
            "warning: layer cache: {} is damaged",
            blob.display()
        )),
        "{}",
        again.stderr
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The files in `dir` whose names do not start with a dot, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Damage the layer cache `layers` every way there is: three blobs (a
/// flipped byte, a truncation, a symbolic link to `host`, a copy with the
/// right content), the base index (one byte), the entry of the fourth blob
/// (not JSON). What each warning must say, and the path.
fn damage_every_kind(layers: &Path, host: &Path) -> Vec<(&'static str, PathBuf)> {
    // Every blob damaged in a different way: a flipped byte, a truncation,
    // a symbolic link to a file of the host with the right content.
    let blobs = files_in(&layers.join("blobs"));
    assert_eq!(blobs.len(), 4, "{blobs:?}");
    let mut bytes = fs::read(&blobs[0]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::remove_file(&blobs[0]).expect("rm");
    fs::write(&blobs[0], &bytes).expect("write");
    let len = fs::metadata(&blobs[1]).expect("stat").len();
    fs::File::options()
        .write(true)
        .open(&blobs[1])
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    fs::copy(&blobs[2], host).expect("copy");
    fs::remove_file(&blobs[2]).expect("rm");
    std::os::unix::fs::symlink(host, &blobs[2]).expect("symlink");
    // The base index: one byte of its content changed. (The other file
    // there remembers the tarball's SHA-256 by its identity.)
    let index: Vec<PathBuf> = files_in(&layers.join("index"))
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("file-"))
        })
        .collect();
    assert_eq!(index.len(), 1);
    let mut bytes = fs::read(&index[0]).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&index[0], &bytes).expect("write");
    // A blob entry that is not JSON: the entry of the blob left intact
    // (the others are found damaged through their entries).
    let intact = blobs[3]
        .file_name()
        .map(|n| format!("sha256:{}", n.to_string_lossy()))
        .expect("name");
    let entry = files_in(&layers.join("entries"))
        .into_iter()
        .find(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&fs::read(e).expect("read")).expect("json");
            v["digest"] == intact.as_str()
        })
        .expect("the entry of the intact blob");
    fs::write(&entry, b"not json").expect("write");

    vec![
        ("its SHA256 is", blobs[0].clone()),
        ("bytes instead of", blobs[1].clone()),
        ("not a regular file", blobs[2].clone()),
        ("its content's SHA256 is", index[0].clone()),
        ("not a blob entry", entry),
    ]
}

#[test]
fn damaged_entries_are_reported_removed_and_built_again() {
    let Some(base) = fixture_base() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("cache-damaged");
    let cache = t.path().join("cache");
    let recipe = recipe_dir(t.path(), 262_144);
    let cold = build(&recipe, &base, &t.path().join("cold"), "oci", None);
    build(&recipe, &base, &t.path().join("a"), "oci", Some(&cache));
    let host = t.path().join("host-copy");
    let damaged = damage_every_kind(&cache.join("layers"), &host);

    let again = build(&recipe, &base, &t.path().join("b"), "oci", Some(&cache));
    assert_eq!(again.digest, cold.digest, "{}", again.stderr);
    let warnings: Vec<&str> = again
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: layer cache:"))
        .collect();
    assert_eq!(warnings.len(), 5, "{}", again.stderr);
    for (what, path) in &damaged {
        let p = path.display().to_string();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&p) && w.contains(what) && w.contains("is damaged")),
            "no warning naming {p} ({what}):\n{}",
            again.stderr
        );
    }
    assert!(host.exists(), "the link's target is left alone");
    verify_layout_blobs(&t.path().join("b"), "latest").expect("blobs");

    // Built again: the next build reuses everything, warning-free.
    let warm = build(&recipe, &base, &t.path().join("c"), "oci", Some(&cache));
    assert_eq!(warm.digest, cold.digest);
    assert_eq!(
        cache_line(&warm),
        "layer cache: 4 layer(s) reused, 0 built; 1 base layer index(es) reused"
    );
    assert!(!warm.stderr.contains("warning"), "{}", warm.stderr);
}

#[test]
fn oci_bases_are_indexed_once_and_their_blobs_linked() {
    let Some(base) = fixture_base() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("cache-oci");
    let cache = t.path().join("cache");
    let recipe = recipe_dir(t.path(), 262_144);
    // The image of the recipe becomes the base of the next builds, of a
    // recipe of one layer.
    build(&recipe, &base, &t.path().join("node"), "oci", None);
    let node = format!("oci:{}", t.path().join("node").display());
    let recipe = t.path().join("recipe/top.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"top\"\n[[layer]]\nname = \"top\"\nsysctl = { file = \"99-top\", set = { \"vm.swappiness\" = 1 } }\n",
    )
    .expect("write");

    let cold = build(&recipe, &node, &t.path().join("cold"), "oci", None);
    let first = build(&recipe, &node, &t.path().join("a"), "oci", Some(&cache));
    assert_eq!(first.digest, cold.digest);
    assert_eq!(
        cache_line(&first),
        "layer cache: 0 layer(s) reused, 5 built; 0 base layer index(es) reused"
    );
    let warm = build(&recipe, &node, &t.path().join("b"), "oci", Some(&cache));
    assert_eq!(warm.digest, cold.digest);
    assert_eq!(
        cache_line(&warm),
        "layer cache: 5 layer(s) reused, 0 built; 4 base layer index(es) reused"
    );
    verify_layout_blobs(&t.path().join("b"), "latest").expect("blobs");

    // A base blob changed in the base (its digest no longer holds): the
    // index from the cache is not a way around the check; the build fails
    // naming the blob, or reuses the cache's verified copy of it. Either
    // way no output is made from the changed bytes.
    let manifest_layers = |dir: &Path| -> Vec<String> {
        let idx: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index"))
                .expect("json");
        let m = idx["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_string();
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(
                dir.join("blobs/sha256")
                    .join(m.trim_start_matches("sha256:")),
            )
            .expect("m"),
        )
        .expect("json");
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    };
    let first_layer = manifest_layers(&t.path().join("node"))[0].clone();
    let blob = t
        .path()
        .join("node/blobs/sha256")
        .join(first_layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::remove_file(&blob).expect("rm");
    fs::write(&blob, &bytes).expect("write");
    let again = build(&recipe, &node, &t.path().join("c"), "oci", Some(&cache));
    assert_eq!(again.digest, cold.digest);
    verify_layout_blobs(&t.path().join("c"), "latest").expect("blobs");
    let mut c = nodeimg(t.path());
    let r = run(c
        .arg("build")
        .arg(&recipe)
        .arg("-o")
        .arg(t.path().join("d"))
        .args(["--base", &node, "--no-cache"]));
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains(&first_layer), "{r}");
    assert!(!t.path().join("d").exists());
}

/// `packages_args` of `recipe` with the download cache `cache` instead of
/// the shared one: the layer cache of a test is its own.
fn package_args_with_cache(recipe: &Path, cache: &Path) -> Vec<String> {
    let mut args = packages_args(recipe);
    let at = args
        .iter()
        .position(|a| a == "--cache-dir")
        .expect("the package arguments name a cache");
    args.drain(at..at + 2);
    args.push("--cache-dir".to_string());
    args.push(cache.display().to_string());
    args
}

/// Build `recipe` with its packages from the test repositories; `cache`
/// is the layer cache (and download cache), `None` builds without a layer
/// cache. The digest and stderr.
fn build_packages(recipe: &Path, base: &str, out: &Path, cache: &Path, use_cache: bool) -> Built {
    let args = package_args_with_cache(recipe, cache);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = nodeimg(recipe.parent().expect("folder"));
    c.arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--base", base])
        .args(&args);
    if use_cache {
        c.env_remove("NODEIMG_NO_CACHE");
    }
    let r = run(&mut c).ok();
    Built {
        digest: single_digest_line(&r),
        stderr: r.stderr,
    }
}

/// Flips a bit of the byte of `path` that `at` picks from its length.
fn flip_byte(path: &Path, at: impl Fn(usize) -> usize) {
    let mut bytes = fs::read(path).expect("read");
    let i = at(bytes.len());
    bytes[i] ^= 1;
    fs::write(path, &bytes).expect("write");
}

/// The kept resolution damaged: said, and the layer resolved again from
/// the repository's index (the packages are still those kept).
fn a_damaged_resolution_is_resolved_again(
    recipe: &Path,
    base: &str,
    work: &Path,
    cache: &Path,
    cold: &Built,
    warm: &Built,
) {
    let resolved = files_in(&cache.join("layers/resolved"));
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    flip_byte(&resolved[0], |len| len - 2);
    let re = build_packages(recipe, base, &work.join("r"), cache, true);
    assert_eq!(re.digest, cold.digest);
    assert!(
        re.stderr.contains(&format!(
            "warning: layer cache: {} is damaged",
            resolved[0].display()
        )),
        "{}",
        re.stderr
    );
    assert!(
        cache_line(&re)
            .ends_with("; the packages of 1 layer(s) reused, 0 installed; 0 resolution(s) reused"),
        "{}",
        re.stderr
    );
    assert!(
        warm.stderr.contains("the resolution of layer")
            && !re.stderr.contains("the resolution of layer"),
        "{}",
        re.stderr
    );
    // The index is not parsed again: its parsed form was kept by the first
    // build, by the SHA-256 of the index file.
    assert!(
        re.stderr.contains("parsed, from the layer cache"),
        "{}",
        re.stderr
    );
    let parsed = files_in(&cache.join("layers/deb-indexes"));
    assert_eq!(parsed.len(), 1, "{parsed:?}");

    // Both damaged: said, the index parsed again and kept again.
    for f in [&resolved[0], &parsed[0]] {
        flip_byte(f, |len| len / 2);
    }
    let re = build_packages(recipe, base, &work.join("r2"), cache, true);
    assert_eq!(re.digest, cold.digest);
    assert!(
        re.stderr.contains(&format!(
            "warning: layer cache: {} is damaged",
            parsed[0].display()
        )) && !re.stderr.contains("parsed, from the layer cache"),
        "{}",
        re.stderr
    );
    // Kept again, sound: without the resolution, the index is read from it.
    assert_eq!(files_in(&cache.join("layers/deb-indexes")), parsed);
    for f in files_in(&cache.join("layers/resolved")) {
        fs::remove_file(f).expect("rm");
    }
    let again = build_packages(recipe, base, &work.join("r3"), cache, true);
    assert_eq!(again.digest, cold.digest);
    assert!(
        !again.stderr.contains("is damaged")
            && again.stderr.contains("parsed, from the layer cache"),
        "{}",
        again.stderr
    );
}

#[test]
fn installed_packages_are_kept_and_reused_until_what_is_below_them_changes() {
    let Some(base) = fixture_base() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("cache-packages");
    copy_dir(&workspace_root().join("recipes"), &t.path().join("recipes"));
    let recipe = t.path().join("recipes/containerd-debian.toml");
    let cache = t.path().join("cache");
    let cold = build_packages(&recipe, &base, &t.path().join("cold"), &cache, false);

    let first = build_packages(&recipe, &base, &t.path().join("a"), &cache, true);
    assert_eq!(first.digest, cold.digest);
    assert!(
        cache_line(&first)
            .ends_with("; the packages of 0 layer(s) reused, 1 installed; 0 resolution(s) reused"),
        "{}",
        first.stderr
    );
    let warm = build_packages(&recipe, &base, &t.path().join("b"), &cache, true);
    assert_eq!(warm.digest, cold.digest);
    assert!(
        cache_line(&warm)
            .ends_with("; the packages of 1 layer(s) reused, 0 installed; 1 resolution(s) reused"),
        "{}",
        warm.stderr
    );
    assert!(
        warm.stderr.contains("from the layer cache"),
        "{}",
        warm.stderr
    );
    verify_layout_blobs(&t.path().join("b"), "latest").expect("blobs");

    // A kept file damaged: said, and the packages installed again.
    let files = files_in(&cache.join("layers/files"));
    let biggest = files
        .iter()
        .max_by_key(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .expect("kept files");
    let mut bytes = fs::read(biggest).expect("read");
    bytes[0] ^= 1;
    fs::remove_file(biggest).expect("rm");
    fs::write(biggest, &bytes).expect("write");
    let again = build_packages(&recipe, &base, &t.path().join("c"), &cache, true);
    assert_eq!(again.digest, cold.digest);
    assert!(
        again.stderr.contains(&format!(
            "warning: layer cache: {} is damaged",
            biggest.display()
        )),
        "{}",
        again.stderr
    );
    assert!(
        cache_line(&again)
            .ends_with("; the packages of 0 layer(s) reused, 1 installed; 1 resolution(s) reused"),
        "{}",
        again.stderr
    );

    a_damaged_resolution_is_resolved_again(&recipe, &base, t.path(), &cache, &cold, &warm);

    // A sysctl of the layer below the packages changed: the image they are
    // installed on is another, so they are installed again.
    let kernel = t.path().join("recipes/common/kubernetes-kernel.toml");
    let text = fs::read_to_string(&kernel).expect("read");
    let changed = text.replace(
        "\"net.ipv4.ip_forward\" = 1",
        "\"net.ipv4.ip_forward\" = 1, \"vm.swappiness\" = 1",
    );
    assert_ne!(
        changed, text,
        "the kernel fragment sets net.ipv4.ip_forward"
    );
    fs::write(&kernel, changed).expect("write");
    let below = build_packages(&recipe, &base, &t.path().join("d"), &cache, true);
    assert!(
        cache_line(&below)
            .ends_with("; the packages of 0 layer(s) reused, 1 installed; 1 resolution(s) reused"),
        "{}",
        below.stderr
    );
    let below_cold = build_packages(&recipe, &base, &t.path().join("d-cold"), &cache, false);
    assert_eq!(below.digest, below_cold.digest);
    assert_ne!(below.digest, cold.digest);
}

#[test]
fn a_cache_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let Some(base) = fixture_base() else { return };
    let base = fixture_base_ref(&base);
    let t = temp_dir("cache-shared");
    let recipe = recipe_dir(t.path(), 262_144);
    let cache = t.path().join("cache");
    fs::create_dir(&cache).expect("mkdir");
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).expect("chmod");
    let cold = build(&recipe, &base, &t.path().join("cold"), "oci", None);
    for out in ["a", "b"] {
        let b = build(&recipe, &base, &t.path().join(out), "oci", Some(&cache));
        assert_eq!(b.digest, cold.digest);
        assert!(
            b.stderr.contains(&format!(
                "warning: layer cache: cannot use {}",
                cache.join("layers").display()
            )) && b.stderr.contains("may be written by others"),
            "{}",
            b.stderr
        );
        assert!(!b.stderr.contains("layer(s) reused"), "{}", b.stderr);
    }
    // Made private, it is used.
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).expect("chmod");
    let b = build(&recipe, &base, &t.path().join("c"), "oci", Some(&cache));
    assert_eq!(
        cache_line(&b),
        "layer cache: 0 layer(s) reused, 4 built; 0 base layer index(es) reused"
    );
}
