//! Hostile inputs: outputs.
//!
//! What is at the output path (or beside it) is not the build's to lose: a
//! folder or file that is not a previous nodeimg output is refused unless
//! `--force` is given; a build killed mid-write leaves nothing at the
//! output path, and the next build of that output removes what it left; two
//! builds of one output at once: one fails at once, naming the other.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeimg_e2e::*;
use sha2::Digest;

const RECIPE: &str = r#"[image]
name = "node"

[[layer]]
name = "cfg"
sysctl = { file = "99-test", set = { "net.ipv4.ip_forward" = 1 } }
"#;

/// The file the recipe writes, as a flattened rootfs holds it.
const SYSCTL: &str = "/etc/sysctl.d/99-test.conf";

/// A temp dir holding `recipe.toml` and an empty `out/`.
fn setup(label: &str) -> tempfile::TempDir {
    let t = temp_dir(label);
    fs::write(t.path().join("recipe.toml"), RECIPE).expect("write the recipe");
    fs::create_dir(t.path().join("out")).expect("create out/");
    t
}

fn build_cmd(dir: &Path, out: &str, format: &str, base: &str, extra: &[&str]) -> Command {
    let mut c = nodeimg(dir);
    c.args(["build", "recipe.toml", "-o", out, "--format", format])
        .args(["--base", base])
        .args(extra);
    c
}

fn build(dir: &Path, out: &str, format: &str, base: &str, extra: &[&str]) -> Run {
    run(&mut build_cmd(dir, out, format, base, extra))
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Hidden siblings of the output `name` in `dir` (temporary files and
/// folders, aside copies, locks).
fn debris(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.");
    listing(dir)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// A rootfs base tar of `mib` MiB of incompressible data (plus /etc), so
/// that flattening it takes a while.
fn big_base(dir: &Path, mib: u64) -> PathBuf {
    let path = dir.join("big-base.tar");
    let f = fs::File::create(&path).expect("create the base");
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_cksum();
    b.append_data(&mut h, "etc/", std::io::empty())
        .expect("append etc/");
    let size = mib << 20;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    let random = fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(size);
    b.append_data(&mut h, "opt/noise.bin", random)
        .expect("append the noise");
    b.into_inner()
        .expect("finish the base")
        .flush()
        .expect("flush the base");
    path
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a
/// failing assertion stops what the test started.
struct Running(Option<Child>);

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nodeimg");
        Running(Some(child))
    }

    fn id(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn running(&mut self) -> bool {
        match self.0.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn finish(&mut self) -> Run {
        let c = self.0.take().expect("a running child");
        let out = c.wait_with_output().expect("wait for nodeimg");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline: "nodeimg build (background)".to_string(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until a temporary sibling of `name` in `dir` holds at least
/// `bytes` (the build is writing the output), or the child ends.
fn wait_for_write(child: &mut Running, dir: &Path, name: &str, bytes: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for n in debris(dir, name) {
            let size = fs::symlink_metadata(dir.join(&n))
                .map(|m| if m.is_file() { m.len() } else { 0 })
                .unwrap_or(0);
            if n.contains("tmp") && size >= bytes {
                return true;
            }
        }
        if !child.running() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn assert_refused(r: &Run, path: &str, what: &[&str]) {
    assert_eq!(r.code, 2, "refusing {path} is a usage error: {r}");
    assert!(r.stderr.contains(path), "the error names {path}: {r}");
    for w in what {
        assert!(r.stderr.contains(w), "the error says {w:?}: {r}");
    }
    assert!(
        r.stderr.contains("--force"),
        "the error says --force replaces it: {r}"
    );
    assert!(r.stdout.is_empty(), "nothing was built: {r}");
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(data))
}

#[test]
fn force_is_documented_in_build_help() {
    let r = run(nodeimg(Path::new("/")).args(["build", "--help"])).ok();
    let line = r
        .stdout
        .lines()
        .skip_while(|l| !l.contains("--force"))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(line.contains("--force"), "build --help lists --force: {r}");
    assert!(
        line.contains("replace"),
        "build --help says what --force replaces: {line}"
    );
}

/// A folder holding an OCI layout and the user's other data is not a
/// previous output: refused, untouched; `--force` replaces it.
#[test]
fn oci_layout_folder_with_other_data_is_refused_unless_forced() {
    let t = setup("out-layout-extra");
    let img = t.path().join("out/img");
    fs::create_dir_all(img.join("blobs/sha256")).unwrap();
    fs::write(img.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        img.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    fs::write(img.join("thesis.txt"), b"the only copy").unwrap();

    let r = build(t.path(), "out/img", "oci", "scratch", &[]);
    assert_refused(&r, "out/img", &["thesis.txt"]);
    assert_eq!(fs::read(img.join("thesis.txt")).unwrap(), b"the only copy");
    assert_eq!(
        listing(&img),
        ["blobs", "index.json", "oci-layout", "thesis.txt"]
    );
    assert_eq!(debris(&t.path().join("out"), "img"), Vec::<String>::new());

    let r = build(t.path(), "out/img", "oci", "scratch", &["--force"]).ok();
    let digest = single_digest_line(&r);
    assert_eq!(listing(&img), ["blobs", "index.json", "oci-layout"]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(img.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(listing(&t.path().join("out")), ["img"]);
}

/// An OCI layout another tool wrote (a base store: oci-layout, index.json
/// and blobs, but an image nodeimg did not build) is not replaced either.
#[test]
fn oci_layout_nodeimg_did_not_write_is_refused_unless_forced() {
    let t = setup("out-layout-foreign");
    let img = t.path().join("out/bases");
    let blobs = img.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    fs::write(blobs.join(sha256_hex(config)), config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config)),
            "size": config.len(),
        },
        "layers": [],
    })
    .to_string();
    fs::write(blobs.join(sha256_hex(manifest.as_bytes())), &manifest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(manifest.as_bytes())),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "debian"},
        }],
    })
    .to_string();
    fs::write(img.join("index.json"), &index).unwrap();
    fs::write(img.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let r = build(t.path(), "out/bases", "oci", "scratch", &[]);
    assert_refused(&r, "out/bases", &["OCI image layout"]);
    assert_eq!(fs::read_to_string(img.join("index.json")).unwrap(), index);

    build(t.path(), "out/bases", "oci", "scratch", &["--force"]).ok();
    assert_ne!(fs::read_to_string(img.join("index.json")).unwrap(), index);
}

/// A regular file that is not a tar, at a rootfs output path: refused;
/// `--force` replaces it.
#[test]
fn unrelated_file_as_rootfs_output_is_refused_unless_forced() {
    let t = setup("out-file");
    let out = t.path().join("out/notes.tar");
    fs::write(&out, b"dear diary, today I wrote no tar\n").unwrap();

    let r = build(t.path(), "out/notes.tar", "rootfs", "scratch", &[]);
    assert_refused(&r, "out/notes.tar", &["not a tar"]);
    assert_eq!(
        fs::read(&out).unwrap(),
        b"dear diary, today I wrote no tar\n"
    );

    let r = build(t.path(), "out/notes.tar", "rootfs", "scratch", &["--force"]).ok();
    let digest = single_digest_line(&r);
    assert_eq!(sha256_file(&out), digest);
    let entries = by_path(&read_tar(&out));
    assert!(entries.contains_key(SYSCTL), "{:?}", entries.keys());
    assert_eq!(listing(&t.path().join("out")), ["notes.tar"]);

    // The same for an OCI archive: a file that is not one is refused.
    let arch = t.path().join("out/node.oci.tar");
    fs::write(&arch, b"not an archive").unwrap();
    let r = build(t.path(), "out/node.oci.tar", "oci-archive", "scratch", &[]);
    assert_refused(&r, "out/node.oci.tar", &[]);
    assert_eq!(fs::read(&arch).unwrap(), b"not an archive");
}

/// A symlink at the output path is refused (whatever it points to); with
/// `--force` the link itself is replaced and its target left alone.
#[test]
fn symlink_output_is_refused_unless_forced() {
    let t = setup("out-symlink");
    let precious = t.path().join("precious.tar");
    fs::write(&precious, b"precious").unwrap();
    let link = t.path().join("out/node.tar");
    std::os::unix::fs::symlink(&precious, &link).unwrap();

    let r = build(t.path(), "out/node.tar", "rootfs", "scratch", &[]);
    assert_refused(&r, "out/node.tar", &["symlink"]);
    assert_eq!(fs::read(&precious).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());

    build(t.path(), "out/node.tar", "rootfs", "scratch", &["--force"]).ok();
    assert_eq!(fs::read(&precious).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&link).unwrap().is_file());
    assert!(by_path(&read_tar(&link)).contains_key(SYSCTL));
}

/// Negative control: a previous nodeimg output of each format (and an empty
/// folder for an OCI layout) is replaced without `--force`, leaving
/// nothing beside it.
#[test]
fn previous_outputs_are_replaced_without_force() {
    let t = setup("out-previous");
    fs::create_dir(t.path().join("out/empty")).unwrap();
    for (out, format) in [
        ("out/empty", "oci"),
        ("out/layout", "oci"),
        ("out/node.oci.tar", "oci-archive"),
        ("out/node.docker.tar", "docker-archive"),
        ("out/node.tar", "rootfs"),
        ("out/node.tar.gz", "rootfs"),
        ("out/node.tar.zst", "rootfs"),
    ] {
        let first = build(t.path(), out, format, "scratch", &[]).ok();
        let again = run(build_cmd(t.path(), out, format, "scratch", &[])
            .env("SOURCE_DATE_EPOCH", (TEST_EPOCH + 1).to_string()));
        assert_eq!(again.code, 0, "rebuilding {out} ({format}): {again}");
        assert_ne!(
            single_digest_line(&first),
            single_digest_line(&again),
            "{out}: the second build is another image"
        );
        if format == "rootfs" {
            // A rootfs build prints the file's sha256.
            assert_eq!(
                sha256_file(&t.path().join(out)),
                single_digest_line(&again),
                "{out} holds the second build"
            );
        }
    }
    assert_eq!(
        listing(&t.path().join("out")),
        [
            "empty",
            "layout",
            "node.docker.tar",
            "node.oci.tar",
            "node.tar",
            "node.tar.gz",
            "node.tar.zst"
        ]
    );
}

/// A rootfs build killed (SIGKILL) while it writes leaves nothing at the
/// output path; the next build of that output removes what was left and
/// succeeds.
#[test]
fn killed_rootfs_build_leaves_no_output_and_the_next_build_cleans_up() {
    let t = setup("out-killed");
    let base = big_base(t.path(), 128);
    let base_ref = format!("rootfs:{}", base.display());
    let out_dir = t.path().join("out");

    let mut child = Running::spawn(build_cmd(
        t.path(),
        "out/node.tar.gz",
        "rootfs",
        &base_ref,
        &[],
    ));
    let writing = wait_for_write(&mut child, &out_dir, "node.tar.gz", 4 << 20);
    assert!(
        writing,
        "the build ended before it wrote 4 MiB: {}",
        child.finish()
    );
    child.kill();
    assert!(
        fs::symlink_metadata(out_dir.join("node.tar.gz")).is_err(),
        "a killed build left a file at the output path: {:?}",
        listing(&out_dir)
    );
    let left = debris(&out_dir, "node.tar.gz");
    assert!(
        !left.is_empty(),
        "the killed build left its temporary output"
    );

    let r = build(t.path(), "out/node.tar.gz", "rootfs", &base_ref, &[]).ok();
    assert_eq!(
        listing(&out_dir),
        ["node.tar.gz"],
        "the next build removes what the killed one left ({left:?})"
    );
    assert_eq!(
        sha256_file(&out_dir.join("node.tar.gz")),
        single_digest_line(&r)
    );
}

/// Two builds of one output at once: the second fails at once naming the
/// output and the other build; the first completes.
#[test]
fn concurrent_builds_of_one_output_one_fails_at_once() {
    let t = setup("out-concurrent");
    let base = big_base(t.path(), 128);
    let base_ref = format!("rootfs:{}", base.display());
    let out_dir = t.path().join("out");

    let mut first = Running::spawn(build_cmd(
        t.path(),
        "out/node.tar.gz",
        "rootfs",
        &base_ref,
        &[],
    ));
    let writing = wait_for_write(&mut first, &out_dir, "node.tar.gz", 1);
    assert!(
        writing,
        "the first build ended before it wrote: {}",
        first.finish()
    );
    let first_pid = first.id();
    let started = Instant::now();
    let mut second = Running::spawn(build_cmd(
        t.path(),
        "out/node.tar.gz",
        "rootfs",
        &base_ref,
        &[],
    ));
    // The second must not wait for the first (nor do its work).
    let deadline = started + Duration::from_secs(20);
    while second.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let first_still_running = first.running();
    let r2 = second.finish();
    let r1 = first.finish();
    assert_ne!(r2.code, 0, "the second build must fail: {r2}\nfirst: {r1}");
    assert_eq!(r2.code, 1, "a busy output is a build failure: {r2}");
    assert!(
        took < Duration::from_secs(5) && first_still_running,
        "the second build failed at once ({took:?}), while the first ran: {r2}"
    );
    assert!(
        r2.stderr.contains("out/node.tar.gz"),
        "names the output: {r2}"
    );
    assert!(
        r2.stderr.contains("another nodeimg build"),
        "names the other build: {r2}"
    );
    assert!(
        r2.stderr.contains(&format!("pid {first_pid}")),
        "gives the other build's pid: {r2}"
    );
    assert!(r2.stdout.is_empty(), "{r2}");
    assert_eq!(r1.code, 0, "the first build completes: {r1}");
    assert_eq!(
        sha256_file(&out_dir.join("node.tar.gz")),
        single_digest_line(&r1)
    );
    assert_eq!(listing(&out_dir), ["node.tar.gz"]);
}
