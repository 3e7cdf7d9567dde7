//! Hostile inputs: tiny inputs that would cost unbounded memory or time.
//!
//! Every case runs nodeimg under a 2 GiB address-space limit (`prlimit
//! --as`) with a 60 s deadline, and must end with exit 1 or 2 and a message
//! naming the input, or with a correct image.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodeimg_e2e::*;

/// The address space a hostile input may cost.
pub const LIMIT_AS: u64 = 2 << 30;
/// The time a hostile input may cost.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How a bounded run ended.
#[derive(Debug)]
pub struct Bounded {
    /// Exit code; None when killed at the deadline or by a signal.
    pub code: Option<i32>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl std::fmt::Display for Bounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1} s\n--- stderr ---\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stderr.chars().take(4000).collect::<String>()
        )
    }
}

/// `nodeimg ARGS` in `cwd` under [`LIMIT_AS`], killed at [`DEADLINE`].
pub fn bounded(cwd: &Path, args: &[&str]) -> Bounded {
    let t = run_within(
        Command::new("prlimit")
            .arg(format!("--as={LIMIT_AS}"))
            .arg("--")
            .arg(nodeimg_bin())
            .args(args)
            .current_dir(cwd)
            .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
            .env_remove("RUST_LOG"),
        DEADLINE,
    );
    Bounded {
        code: if t.killed || t.run.code < 0 {
            None
        } else {
            Some(t.run.code)
        },
        stderr: t.run.stderr,
        elapsed: t.elapsed,
    }
}

/// Asserts the run was refused (exit 1 or 2) in time, without a panic,
/// with a message holding every one of `words`.
pub fn assert_refused(b: &Bounded, words: &[&str]) {
    assert!(
        matches!(b.code, Some(1) | Some(2)),
        "not refused with exit 1 or 2: {b}"
    );
    assert!(!b.stderr.contains("panicked"), "a panic: {b}");
    for w in words {
        assert!(b.stderr.contains(w), "the message lacks {w:?}: {b}");
    }
}

/// A one-layer recipe in `dir` (a sysctl), returned by path.
pub fn small_recipe(dir: &Path) -> PathBuf {
    let r = dir.join("recipe.toml");
    std::fs::write(
        &r,
        "[image]\nname = \"h\"\n\n[[layer]]\nname = \"l\"\n[layer.sysctl]\nfile = \"99-h\"\nset = { \"net.ipv4.ip_forward\" = 1 }\n",
    )
    .expect("write recipe");
    r
}

/// A raw 512-byte tar header block with a correct checksum.
pub fn raw_header(name: &[u8], kind: u8, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::new(kind));
    {
        let b = h.as_mut_bytes();
        let n = name.len().min(99);
        b[..100].fill(0);
        b[..n].copy_from_slice(&name[..n]);
    }
    h.set_cksum();
    *h.as_bytes()
}

/// Streams `n` bytes of `byte` into `w`, then the padding to 512.
pub fn stream_fill(w: &mut impl Write, byte: u8, n: u64) {
    let chunk = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..k]).expect("write");
        left -= k as u64;
    }
    let pad = (512 - n % 512) % 512;
    w.write_all(&vec![0u8; pad as usize])
        .expect("write padding");
}

/// A gzip writer to `path`, fast level.
fn gz(path: &Path) -> flate2::write::GzEncoder<std::fs::File> {
    flate2::write::GzEncoder::new(
        std::fs::File::create(path).expect("create"),
        flate2::Compression::fast(),
    )
}

/// Ends a gzip tar after its hostile entry: one short regular file, the
/// end-of-archive blocks, the gzip trailer.
fn finish_gz(mut w: flate2::write::GzEncoder<std::fs::File>) {
    w.write_all(&raw_header(b"short", b'0', 0)).expect("write");
    w.write_all(&[0u8; 1024]).expect("write end");
    w.finish().expect("finish");
}

/// Builds the small recipe on `base` (a rootfs tar) into `out` in `format`.
pub(crate) fn build_small(dir: &Path, base: &Path, format: &str, out: &Path) -> Bounded {
    let recipe = small_recipe(dir);
    let base = format!("rootfs:{}", base.display());
    bounded(
        dir,
        &[
            "build",
            recipe.to_str().unwrap_or_default(),
            "--base",
            &base,
            "--format",
            format,
            "-o",
            out.to_str().unwrap_or_default(),
        ],
    )
}

/// Builds the small recipe on `base` (a rootfs tar) into `dir/out.tar`.
fn build_rootfs(dir: &Path, base: &Path) -> Bounded {
    build_small(dir, base, "rootfs", &dir.join("out.tar"))
}

#[test]
fn a_path_of_50000_components() {
    let dir = temp_dir("deep-path");
    let tar = dir.path().join("deep.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).expect("create"));
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    let name = format!("{}f", "a/".repeat(50_000));
    b.append_data(&mut h, name, &b"x"[..]).expect("append");
    b.finish().expect("finish");
    let r = build_rootfs(dir.path(), &tar);
    assert_refused(&r, &["deep.tar"]);
}

#[test]
fn a_gnu_long_name_of_256_mib() {
    let dir = temp_dir("long-name");
    let path = dir.path().join("long.tar.gz");
    let mut w = gz(&path);
    let n = 256u64 << 20;
    w.write_all(&raw_header(b"././@LongLink", b'L', n))
        .expect("write");
    stream_fill(&mut w, b'a', n);
    finish_gz(w);
    let r = build_rootfs(dir.path(), &path);
    assert_refused(&r, &["long.tar.gz"]);
}

#[test]
fn a_pax_record_of_256_mib() {
    let dir = temp_dir("pax-record");
    let path = dir.path().join("pax.tar.gz");
    let mut w = gz(&path);
    let n = 256u64 << 20;
    // One record "LEN comment=aaaa...\n", LEN counting itself.
    let body = n - 64;
    let key = b" comment=";
    let mut len = body + key.len() as u64 + 1;
    len += len.to_string().len() as u64;
    let head = format!("{len} comment=");
    w.write_all(&raw_header(b"././@PaxHeader", b'x', len))
        .expect("write");
    w.write_all(head.as_bytes()).expect("write");
    let fill = len - head.len() as u64 - 1;
    let chunk = vec![b'a'; 1 << 20];
    let mut left = fill;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..k]).expect("write");
        left -= k as u64;
    }
    w.write_all(b"\n").expect("write");
    w.write_all(&vec![0u8; ((512 - len % 512) % 512) as usize])
        .expect("pad");
    finish_gz(w);
    let r = build_rootfs(dir.path(), &path);
    assert!(r.code.is_some(), "did not finish in time: {r}");
    if r.code != Some(0) {
        assert_refused(&r, &["pax.tar.gz"]);
    }
}

#[test]
fn rpm_database_files_of_3_gib() {
    if !require("zstd", "zstd") {
        return;
    }
    let dir = temp_dir("rpmdb-size");
    let path = dir.path().join("rpmdb.tar.zst");
    let mut z = Command::new("zstd")
        .args(["-1", "-q", "-T0", "-o"])
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run zstd");
    {
        let mut w = z.stdin.take().expect("zstd stdin");
        let os = b"ID=centos\nVERSION_ID=\"9\"\n";
        w.write_all(&raw_header(b"etc/os-release", b'0', os.len() as u64))
            .expect("write");
        w.write_all(os).expect("write");
        w.write_all(&vec![0u8; 512 - os.len()]).expect("pad");
        for i in 0..24 {
            let n = 128u64 << 20;
            let name = format!("var/lib/rpm/part{i:02}");
            w.write_all(&raw_header(name.as_bytes(), b'0', n))
                .expect("write");
            stream_fill(&mut w, 0, n);
        }
        w.write_all(&[0u8; 1024]).expect("write end");
    }
    assert!(z.wait().expect("zstd").success());
    let r = build_rootfs(dir.path(), &path);
    assert!(r.code.is_some(), "did not finish in time: {r}");
    if r.code != Some(0) {
        assert_refused(&r, &["rpmdb.tar.zst"]);
    }
}

#[test]
fn a_recipe_that_doubles_a_variable_30_times() {
    let dir = temp_dir("doubling");
    let mut text = "[image]\nname = \"h\"\n[vars]\nv0 = \"xx\"\n".to_string();
    for i in 1..=30 {
        text.push_str(&format!("v{i} = \"${{v{}}}${{v{}}}\"\n", i - 1, i - 1));
    }
    text.push_str("[[layer]]\nname = \"l\"\n[layer.sysctl]\nfile = \"99-${v30}\"\nset = { \"net.ipv4.ip_forward\" = 1 }\n");
    let r = dir.path().join("recipe.toml");
    std::fs::write(&r, text).expect("write");
    let b = bounded(dir.path(), &["check", "recipe.toml"]);
    assert_refused(&b, &["recipe.toml", "vars.v20"]);
}

#[test]
fn includes_24_levels_deep_each_included_twice() {
    let dir = temp_dir("diamond");
    for i in 0..24 {
        let next = format!("f{}.toml", i + 1);
        std::fs::write(
            dir.path().join(format!("f{i}.toml")),
            format!("include = [\"{next}\", \"./{next}\"]\n"),
        )
        .expect("write");
    }
    std::fs::write(
        dir.path().join("f24.toml"),
        "[[layer]]\nname = \"l\"\n[layer.sysctl]\nfile = \"99-h\"\nset = { \"net.ipv4.ip_forward\" = 1 }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("recipe.toml"),
        "include = [\"f0.toml\"]\n[image]\nname = \"h\"\n",
    )
    .expect("write");
    let b = bounded(dir.path(), &["check", "recipe.toml"]);
    assert!(b.code.is_some(), "did not finish in time: {b}");
    assert!(b.elapsed < Duration::from_secs(10), "not linear: {b}");
    if b.code != Some(0) {
        assert_refused(&b, &["f"]);
    }
}

/// A registry on 127.0.0.1 that answers every manifest request with a
/// 3 GiB body, streamed; stops when dropped.
struct HugeManifests {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HugeManifests {
    fn start() -> HugeManifests {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + DEADLINE * 2;
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
                let mut req = [0u8; 4096];
                let n = std::io::Read::read(&mut c, &mut req).unwrap_or(0);
                let line = String::from_utf8_lossy(&req[..n]).into_owned();
                if !line.contains("/manifests/") {
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let total: u64 = 3 << 30;
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                let chunk = vec![b' '; 1 << 20];
                let mut sent = 0u64;
                while sent < total && !s.load(Ordering::Relaxed) {
                    if c.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
            }
        });
        HugeManifests {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HugeManifests {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_manifest_of_3_gib() {
    let dir = temp_dir("huge-manifest");
    let reg = HugeManifests::start();
    let recipe = small_recipe(dir.path());
    let base = format!("docker://{}/x:latest", reg.addr);
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let b = bounded(
        dir.path(),
        &[
            "build",
            recipe.to_str().unwrap_or_default(),
            "--base",
            &base,
            "--insecure-registry",
            &reg.addr,
            "--cache-dir",
            cache.to_str().unwrap_or_default(),
            "-o",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert_refused(&b, &["manifest"]);
    assert!(b.elapsed < Duration::from_secs(30), "{b}");
}

#[test]
fn ten_thousand_nested_directories() {
    let dir = temp_dir("nested");
    let path = dir.path().join("nested.tar.gz");
    let mut b = tar::Builder::new(gz(&path));
    let mut name = String::new();
    for _ in 0..10_000 {
        name.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &name, std::io::empty())
            .expect("append");
    }
    b.into_inner()
        .expect("finish")
        .finish()
        .expect("finish gzip");
    let r = build_rootfs(dir.path(), &path);
    assert!(r.code.is_some(), "did not finish in time: {r}");
    assert!(r.elapsed < Duration::from_secs(30), "not linear: {r}");
    if r.code != Some(0) {
        assert_refused(&r, &["nested.tar.gz"]);
    }
}

fn mkfifo(p: &Path) {
    run(Command::new("mkfifo").arg(p)).ok();
}

#[test]
fn a_fifo_as_an_include() {
    let dir = temp_dir("fifo-include");
    mkfifo(&dir.path().join("part.toml"));
    std::fs::write(
        dir.path().join("recipe.toml"),
        "include = [\"part.toml\"]\n[image]\nname = \"h\"\n",
    )
    .expect("write");
    let b = bounded(dir.path(), &["check", "recipe.toml"]);
    assert_refused(&b, &["part.toml"]);
    assert!(b.elapsed < Duration::from_secs(10), "{b}");
}

#[test]
fn a_fifo_as_an_oci_blob() {
    let dir = temp_dir("fifo-blob");
    let recipe = small_recipe(dir.path());
    let layout = dir.path().join("layout");
    let b = bounded(
        dir.path(),
        &[
            "build",
            recipe.to_str().unwrap_or_default(),
            "-o",
            layout.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(b.code, Some(0), "{b}");
    // The layer blob (the largest blob is not needed: every blob but the
    // manifest and config is a layer here) becomes a FIFO.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("json");
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(m)).expect("manifest")).expect("json");
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
    std::fs::remove_file(blob(layer)).expect("remove");
    mkfifo(&blob(layer));
    let base = format!("oci:{}", layout.display());
    let out = dir.path().join("out2");
    let b = bounded(
        dir.path(),
        &[
            "build",
            recipe.to_str().unwrap_or_default(),
            "--base",
            &base,
            "-o",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert_refused(&b, &[layer.trim_start_matches("sha256:")]);
    assert!(b.elapsed < Duration::from_secs(10), "{b}");
}
