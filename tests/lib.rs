//! Helpers for the end-to-end tests in this folder.
//!
//! The tests run the `nodeimg` binary (from `NODEIMG_BIN`, else
//! `<target dir>/debug/nodeimg`) and check its outputs with independent
//! tools: umoci, oci-image-tool, containerd, a trixie dockerd (`--validate`),
//! systemctl and systemd-analyze. A tool that is missing skips the test with
//! `SKIP: install <package>`, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub mod repo;
pub mod rpmrepo;

/// `SOURCE_DATE_EPOCH` the tests build with unless a test says otherwise.
pub const TEST_EPOCH: u64 = 1_710_000_000;

/// The modification time of every file in the test packages (`.deb`s and
/// `.rpm`s): another time than [`TEST_EPOCH`], so that a package file the
/// build dates at its own epoch shows (`rpm -V` reports `.......T.`).
pub const PACKAGE_EPOCH: u64 = 1_700_000_000;

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// True when running in CI (`CI=true`): missing tools are failures there.
pub fn is_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// The `nodeimg` binary under test.
pub fn nodeimg_bin() -> PathBuf {
    let path = match std::env::var_os("NODEIMG_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_absolute() {
                    t
                } else {
                    workspace_root().join(t)
                }
            })
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug/nodeimg"),
    };
    assert!(
        path.is_file(),
        "the nodeimg binary is missing at {}: run `cargo build --workspace --bins` first, \
         or point NODEIMG_BIN at it",
        path.display()
    );
    path
}

/// Find `tool` on PATH (or take it as a path if it contains a `/`).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // Tools in sbin are not on a non-root user's PATH on Debian.
    for extra in ["/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| {
        p.is_file()
            && fs::metadata(p)
                .map(|m| m.mode() & 0o111 != 0)
                .unwrap_or(false)
    })
}

/// Report a missing prerequisite: a failure under CI, a skip otherwise.
/// Returns false when the caller must stop (skip).
pub fn skip_or_fail(what: &str, how: &str) -> bool {
    if is_ci() {
        panic!("{what} is missing (CI=true makes this a failure): {how}");
    }
    eprintln!("SKIP: {how} ({what} is missing)");
    false
}

/// Make sure `tool` is available; `pkg` is the Debian package that has it.
/// Under `CI=true` a missing tool fails the test; otherwise the test prints
/// `SKIP: install <pkg>` and the caller returns (when this returns false).
pub fn require(tool: &str, pkg: &str) -> bool {
    if find_tool(tool).is_some() {
        return true;
    }
    skip_or_fail(tool, &format!("install {pkg}"))
}

/// The trixie dockerd (which has `--validate`), unpacked by
/// `scripts/install-test-deps` under `build/tools/docker-trixie`.
pub fn trixie_dockerd() -> Option<PathBuf> {
    let p = workspace_root().join("build/tools/docker-trixie/usr/sbin/dockerd");
    if p.is_file() {
        Some(p)
    } else {
        skip_or_fail(
            &p.display().to_string(),
            "install trixie's docker.io: run scripts/install-test-deps",
        );
        None
    }
}

/// Debian testing's skopeo (`build/tools/skopeo-testing/skopeo`, a wrapper
/// that runs it with the libraries unpacked beside it), which has
/// containers/image's sigstore verification; Debian 12's is built without.
pub fn sigstore_skopeo() -> Option<PathBuf> {
    let p = workspace_root().join("build/tools/skopeo-testing/skopeo");
    if p.is_file() {
        Some(p)
    } else {
        skip_or_fail(
            &p.display().to_string(),
            "unpack Debian testing's skopeo: run scripts/install-test-deps",
        );
        None
    }
}

/// A rootfs tar (`DIR/base-ARCH.tar`) holding only a dpkg status whose
/// `dpkg` is built for `dpkg_arch`: a base of that architecture as nodeimg
/// reads it (no image config: the architecture is its dpkg's).
pub fn dpkg_base(dir: &Path, dpkg_arch: &str) -> PathBuf {
    let root = dir.join(format!("base-{dpkg_arch}"));
    fs::create_dir_all(root.join("var/lib/dpkg")).expect("mkdir var/lib/dpkg");
    fs::write(
        root.join("var/lib/dpkg/status"),
        format!(
            "Package: dpkg\nStatus: install ok installed\nPriority: required\nVersion: 1.21.22\nArchitecture: {dpkg_arch}\nDescription: x\n"
        ),
    )
    .expect("write the dpkg status");
    let tar = dir.join(format!("base-{dpkg_arch}.tar"));
    create_tar(&root, &tar);
    tar
}

/// An EC key pair made by openssl on `curve` (`P-256`, `P-384`) in
/// `dir`: (`NAME.pem`, the private key; `NAME.pub`, the public key).
pub fn openssl_key(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
        .arg(format!("ec_paramgen_curve:{curve}"))
        .arg("-out")
        .arg(&key))
    .ok();
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public))
    .ok();
    (key, public)
}

/// The fixture base rootfs tar, built (once per test binary, cached under
/// `build/fixtures`) by `scripts/make-test-base`.
pub fn fixture_base() -> Option<PathBuf> {
    static BASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BASE.get_or_init(|| {
        let root = workspace_root();
        let out = root.join("build/fixtures/base.tar");
        let run = run(Command::new(root.join("scripts/make-test-base")).arg(&out));
        if run.code == 0 && out.is_file() {
            Ok(out)
        } else {
            Err(format!(
                "scripts/make-test-base failed (exit {}):\n{}{}",
                run.code, run.stdout, run.stderr
            ))
        }
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            skip_or_fail(
                "the fixture base",
                &format!("install dpkg-dev and apt; {e}"),
            );
            None
        }
    }
}

/// `--base rootfs:<fixture>` argument value.
pub fn fixture_base_ref(base: &Path) -> String {
    format!("rootfs:{}", base.display())
}

/// Every `recipes/*.toml` of the workspace, sorted. Fails when there is none:
/// a suite that checks no recipe proves nothing.
pub fn recipes() -> Vec<PathBuf> {
    let dir = workspace_root().join("recipes");
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some(OsStr::new("toml")) && p.is_file())
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no recipes/*.toml found in {}",
        dir.display()
    );
    out
}

/// A temp dir for one test.
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("nodeimg-e2e-{label}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Run {
    /// Panic with the whole output unless the command exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// Run a command to completion with stdin closed.
pub fn run(cmd: &mut Command) -> Run {
    let cmdline = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline,
    }
}

/// A command run with a deadline: what it did, how long it took, and
/// whether it was killed at the deadline.
#[derive(Debug, Clone)]
pub struct Timed {
    /// The run (exit code -1 when killed).
    pub run: Run,
    /// Wall time until it ended or was killed.
    pub elapsed: std::time::Duration,
    /// Whether it was still running at the deadline (its process group
    /// was then killed).
    pub killed: bool,
}

/// Run `cmd` with stdin closed, in its own process group, its output in
/// files (no pipe to fill); kill the whole group when it still runs after
/// `limit`. For hostile inputs that must not hang a build.
pub fn run_within(cmd: &mut Command, limit: std::time::Duration) -> Timed {
    use std::os::unix::process::CommandExt;
    let cmdline = format!("{cmd:?}");
    let dir = tempfile::tempdir().expect("a temp dir for the output");
    let (out_p, err_p) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).expect("stdout file"))
        .stderr(fs::File::create(&err_p).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let started = std::time::Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the command") {
            break s;
        }
        if started.elapsed() > limit {
            killed = true;
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            break child.wait().expect("wait for the killed command");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Timed {
        run: Run {
            code: if killed {
                -1
            } else {
                status.code().unwrap_or(-1)
            },
            stdout: read(&out_p),
            stderr: read(&err_p),
            cmdline,
        },
        elapsed: started.elapsed(),
        killed,
    }
}

/// A `nodeimg` command running in `cwd`, with `SOURCE_DATE_EPOCH` set to
/// [`TEST_EPOCH`] and the layer cache off (`NODEIMG_NO_CACHE`).
pub fn nodeimg(cwd: &Path) -> Command {
    let mut c = Command::new(nodeimg_bin());
    c.current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
        // Every build is a cold one (the cache's tests turn it on), so
        // what a test checks is never a blob an earlier build left.
        .env("NODEIMG_NO_CACHE", "1")
        .env_remove("RUST_LOG");
    c
}

/// `nodeimg build RECIPE -o OUT --format FORMAT --base BASE`, plus, for a
/// recipe that installs packages, the arguments that install them from the
/// test repositories ([`packages_args`]); must succeed; returns the single
/// stdout line. A recipe that installs rpm packages is built as
/// [`test_build`] says, on the rpm fixture base instead of `base`.
pub fn build_ok(cwd: &Path, recipe: &Path, out: &Path, format: &str, base: &str) -> String {
    let (recipe, base) = if rpmrepo::has_rpm_packages(recipe) {
        let fixture = fixture_base().expect("the fixture base");
        let b = test_build(recipe, &fixture);
        (b.recipe.clone(), b.base_ref())
    } else {
        (recipe.to_path_buf(), base.to_string())
    };
    let r = run(nodeimg(cwd)
        .arg("build")
        .arg(&recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", format, "--base", &base])
        .args(packages_args(&recipe)))
    .ok();
    single_digest_line(&r)
}

/// The extra `build` arguments a recipe needs in the tests: for one that
/// installs packages, the download cache, variables and `--mirror`s that
/// install them from the generated repositories served on 127.0.0.1 (see
/// [`repo`], and [`rpmrepo`] for yum and zypper repositories); none
/// otherwise. Panics when the repositories cannot be made.
pub fn packages_args(recipe: &Path) -> Vec<String> {
    if rpmrepo::has_rpm_packages(recipe) {
        return rpmrepo::rpm_repos()
            .map(rpmrepo::RpmRepos::build_args)
            .unwrap_or_else(|| {
                panic!(
                    "{} installs rpm packages and the test repositories cannot be made: \
                     install rpm, createrepo-c and gpg",
                    recipe.display()
                )
            });
    }
    repo::package_args(recipe).unwrap_or_else(|| {
        panic!(
            "{} installs packages and the test repositories cannot be made: install dpkg-dev and gpg",
            recipe.display()
        )
    })
}

/// How the tests build one recipe.
#[derive(Debug, Clone)]
pub struct TestBuild {
    /// The recipe file to give `nodeimg build`.
    pub recipe: PathBuf,
    /// The base rootfs tar to build on.
    pub base: PathBuf,
    /// The extra arguments ([`packages_args`]).
    pub args: Vec<String>,
}

impl TestBuild {
    /// `rootfs:<base>`.
    pub fn base_ref(&self) -> String {
        fixture_base_ref(&self.base)
    }
}

/// How the tests build `recipe` given the fixture base `fixture`: most
/// recipes as they are on the fixture. One that installs rpm packages needs
/// an rpm database in its base and repositories signed by the keys it names:
/// it is built on [`rpmrepo::rpm_fixture_base`] (the fixture plus rpm), and a
/// recipe of the workspace from the copy whose key files are the test key
/// ([`rpmrepo::RpmRepos::recipe`]). Panics when the rpm repositories or
/// base cannot be made.
pub fn test_build(recipe: &Path, fixture: &Path) -> TestBuild {
    if !rpmrepo::has_rpm_packages(recipe) {
        return TestBuild {
            recipe: recipe.to_path_buf(),
            base: fixture.to_path_buf(),
            args: packages_args(recipe),
        };
    }
    let repos = rpmrepo::rpm_repos().unwrap_or_else(|| {
        panic!(
            "{} installs rpm packages and the test repositories cannot be made: \
             install rpm, createrepo-c and gpg",
            recipe.display()
        )
    });
    let base = rpmrepo::rpm_fixture_base().unwrap_or_else(|| {
        panic!(
            "{} installs rpm packages and the rpm fixture base cannot be made",
            recipe.display()
        )
    });
    TestBuild {
        recipe: repos.recipe(recipe),
        base,
        args: repos.build_args(),
    }
}

/// Check that stdout is exactly one line `sha256:<64 hex>` and return it.
pub fn single_digest_line(r: &Run) -> String {
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be exactly one line: {r}");
    let d = lines[0].trim();
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "stdout is not a sha256 digest: {r}"
    );
    d.to_string()
}

/// `umoci unpack --rootless --image LAYOUT:TAG BUNDLE`.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> Run {
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle))
}

/// `oci-image-tool validate --type image LAYOUT`.
pub fn oci_validate(layout: &Path) -> Run {
    run(Command::new("oci-image-tool")
        .args(["validate", "--type", "image"])
        .arg(layout))
}

/// Extract a tar (plain, gzip or zstd: `tar` detects it) into `dest`.
pub fn extract_tar(tar: &Path, dest: &Path) {
    fs::create_dir_all(dest).expect("create extraction dir");
    run(Command::new("tar")
        .arg("-C")
        .arg(dest)
        .arg("--no-same-owner")
        .arg("-xf")
        .arg(tar))
    .ok();
}

/// Pack the tree `root` into the plain tar `tar` as a base image: entries
/// sorted by name, owned by root (uid and gid 0).
pub fn create_tar(root: &Path, tar: &Path) {
    run(Command::new("tar")
        .arg("-C")
        .arg(root)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
        ])
        .arg(tar)
        .arg("."))
    .ok();
}

/// One entry of a tar archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Absolute image path, e.g. `/etc/os-release` (no trailing slash).
    pub path: String,
    /// `-` file, `d` dir, `l` symlink, `h` hard link, `c`/`b`/`p` others.
    pub kind: char,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Modification time.
    pub mtime: u64,
    /// Link target for symlinks and hard links.
    pub link: Option<String>,
    /// Content of regular files up to 1 MiB (empty for larger ones).
    pub data: Vec<u8>,
}

/// Normalize a tar member name to an absolute image path.
pub fn image_path(name: &str) -> String {
    let t = name.trim_start_matches("./").trim_start_matches('/');
    let t = t.trim_end_matches('/');
    if t.is_empty() || t == "." {
        "/".to_string()
    } else {
        format!("/{t}")
    }
}

/// Read every entry of a tar archive (plain or gzip; zstd through `zstd -dc`).
pub fn read_tar(path: &Path) -> Vec<TarEntry> {
    let mut magic = [0u8; 4];
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let n = f.read(&mut magic).expect("read tar magic");
    drop(f);
    let reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(
            fs::File::open(path).expect("open tar"),
        ))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let out = Command::new("zstd")
            .arg("-dc")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .expect("run zstd -dc");
        assert!(out.status.success(), "zstd -dc {} failed", path.display());
        Box::new(std::io::Cursor::new(out.stdout))
    } else {
        Box::new(fs::File::open(path).expect("open tar"))
    };
    let mut ar = tar::Archive::new(reader);
    let mut out = Vec::new();
    for e in ar.entries().expect("read tar entries") {
        let mut e = e.expect("read tar entry");
        let h = e.header().clone();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => '-',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            _ => '?',
        };
        let mut data = Vec::new();
        if kind == '-' && h.size().unwrap_or(0) <= 1 << 20 {
            e.read_to_end(&mut data).expect("read tar member");
        }
        out.push(TarEntry {
            path: image_path(&name),
            kind,
            mode: h.mode().unwrap_or(0) & 0o7777,
            uid: h.uid().unwrap_or(u64::MAX),
            gid: h.gid().unwrap_or(u64::MAX),
            mtime: h.mtime().unwrap_or(0),
            link,
            data,
        });
    }
    out
}

/// Index tar entries by path.
pub fn by_path(entries: &[TarEntry]) -> BTreeMap<String, TarEntry> {
    entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect()
}

/// The uid and gid of the user running the tests (of a file it creates).
pub fn building_user(dir: &Path) -> (u32, u32) {
    let p = dir.join(".whoami");
    fs::write(&p, b"").expect("write probe file");
    let m = fs::metadata(&p).expect("stat probe file");
    let _ = fs::remove_file(&p);
    (m.uid(), m.gid())
}

/// Copy a directory tree with `cp -a`.
pub fn copy_dir(src: &Path, dst: &Path) {
    run(Command::new("cp").arg("-a").arg(src).arg(dst)).ok();
}

/// Every symlink under `root/rel`, as (path relative to `root`) -> target.
pub fn symlinks_under(root: &Path, rel: &str) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    format!("/{}", rel.display()),
                    t.to_string_lossy().into_owned(),
                );
            } else if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &root.join(rel), &mut out);
    out
}

/// Every regular file under `root/rel`, as paths relative to `root` with a
/// leading `/`.
pub fn files_under(root: &Path, rel: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_file() {
                let rel = p.strip_prefix(root).expect("under root");
                out.push(format!("/{}", rel.display()));
            } else if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &root.join(rel), &mut out);
    out.sort();
    out
}

/// What a containerd config dump says `SystemdCgroup` is for the runc
/// runtime. Parses the config with the real containerd
/// (`containerd --config FILE config dump`) and reads the value from its
/// output: the exit code alone proves nothing (containerd accepts typos).
pub fn containerd_systemd_cgroup(config: &Path) -> Result<bool, String> {
    let r = run(Command::new("containerd")
        .arg("--config")
        .arg(config)
        .args(["config", "dump"]));
    if r.code != 0 {
        return Err(format!("containerd rejected the config: {r}"));
    }
    let mut in_runc_options = false;
    let mut found = None;
    for line in r.stdout.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_runc_options = t.ends_with("containerd.runtimes.runc.options]");
            continue;
        }
        if in_runc_options {
            if let Some(v) = t.strip_prefix("SystemdCgroup = ") {
                found = Some(v.trim().to_string());
            }
        }
    }
    match found.as_deref() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("SystemdCgroup = {other} in the dump: {r}")),
        None => Err(format!(
            "no SystemdCgroup under the runc runtime options in the dump: {r}"
        )),
    }
}

/// The `version = N` of a containerd config.toml, if present.
pub fn containerd_config_version(config_text: &str) -> Option<i64> {
    let v: toml::Table = config_text.parse().ok()?;
    v.get("version")?.as_integer()
}

/// `dockerd --validate --config-file FILE` with the trixie dockerd; Ok when
/// it exits 0 and says "configuration OK".
pub fn dockerd_validate(dockerd: &Path, daemon_json: &Path) -> Result<(), String> {
    let bin_dir = dockerd.parent().unwrap_or(Path::new("/"));
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![bin_dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).expect("join PATH")
        }
        None => bin_dir.as_os_str().to_owned(),
    };
    let r = run(Command::new(dockerd)
        .arg("--validate")
        .arg("--config-file")
        .arg(daemon_json)
        .env("PATH", path));
    if r.code == 0 && format!("{}{}", r.stdout, r.stderr).contains("configuration OK") {
        Ok(())
    } else {
        Err(format!("dockerd --validate did not accept it: {r}"))
    }
}

/// A recipe with its includes resolved, as plain TOML values: what the tests
/// need to predict the files nodeimg writes.
#[derive(Debug, Clone, Default)]
pub struct RecipeModel {
    /// The `[image]` table of the main recipe.
    pub image: toml::Table,
    /// Every `[[layer]]`, fragments' first (in include order), then the
    /// recipe's own.
    pub layers: Vec<toml::Table>,
}

impl RecipeModel {
    /// Load a recipe and its includes (relative to the including file).
    pub fn load(path: &Path) -> RecipeModel {
        let mut m = RecipeModel::default();
        m.add(path, true);
        m
    }

    fn add(&mut self, path: &Path, main: bool) {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let t: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(inc) = t.get("include").and_then(|v| v.as_array()) {
            for i in inc.iter().filter_map(|v| v.as_str()) {
                self.add(&dir.join(i), false);
            }
        }
        if main {
            if let Some(img) = t.get("image").and_then(|v| v.as_table()) {
                self.image = img.clone();
            }
        }
        if let Some(layers) = t.get("layer").and_then(|v| v.as_array()) {
            for l in layers.iter().filter_map(|v| v.as_table()) {
                self.layers.push(l.clone());
            }
        }
    }

    /// `image.name`.
    pub fn name(&self) -> String {
        self.image
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// `image.tag`, default `latest`.
    pub fn tag(&self) -> String {
        self.image
            .get("tag")
            .and_then(|v| v.as_str())
            .unwrap_or("latest")
            .to_string()
    }

    /// Layer names in order.
    pub fn layer_names(&self) -> Vec<String> {
        self.layers
            .iter()
            .filter_map(|l| l.get("name").and_then(|v| v.as_str()).map(str::to_string))
            .collect()
    }

    /// Every item of `kind` over all layers. Array-valued items (e.g. `file`)
    /// yield each element.
    pub fn items(&self, kind: &str) -> Vec<toml::Value> {
        let mut out = Vec::new();
        for l in &self.layers {
            match l.get(kind) {
                Some(toml::Value::Array(a)) => out.extend(a.iter().cloned()),
                Some(v) => out.push(v.clone()),
                None => {}
            }
        }
        out
    }

    /// Every layer's `packages` requests, as written (`name` or
    /// `name=version`), in order.
    pub fn package_requests(&self) -> Vec<String> {
        self.items("packages")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Unit names listed under `systemd.<list>` (enable, disable, mask), in order.
    pub fn systemd_list(&self, list: &str) -> Vec<String> {
        self.items("systemd")
            .iter()
            .filter_map(|s| s.get(list).and_then(|v| v.as_array()).cloned())
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

/// A TOML scalar as a sysctl value is written: `1`, `true`, or the string.
pub fn toml_scalar_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Convert a TOML value into JSON (for comparing daemon.json).
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// True when `s` still holds a `${var}` reference (its final value depends on
/// the base or the command line).
pub fn has_var(s: &str) -> bool {
    s.contains("${")
}

/// Names (relative paths) of every entry under `dir`, recursively, sorted.
pub fn tree_listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `sha256:<hex>` of a byte stream.
pub fn sha256_reader(mut r: impl Read) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).expect("read for hashing");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{:x}", h.finalize())
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    sha256_reader(fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())))
}

/// Check an OCI layout's blobs ourselves: the manifest tagged `tag`, its
/// config and every layer match their digests and sizes, and each layer
/// decompresses (gzip, zstd or none, by media type) to its config diff_id.
/// Independent of umoci, which cannot read zstd layers.
pub fn verify_layout_blobs(layout: &Path, tag: &str) -> Result<(), String> {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let json = |p: &Path| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let check = |desc: &serde_json::Value| -> Result<PathBuf, String> {
        let d = desc["digest"].as_str().ok_or("descriptor without digest")?;
        let p = blob(d);
        let got = sha256_file(&p);
        if got != d {
            return Err(format!("blob {d} hashes to {got}"));
        }
        let size = fs::metadata(&p).map_err(|e| e.to_string())?.len();
        if desc["size"].as_u64() != Some(size) {
            return Err(format!(
                "blob {d} is {size} bytes, descriptor says {}",
                desc["size"]
            ));
        }
        Ok(p)
    };
    let index = json(&layout.join("index.json"))?;
    let m = index["manifests"]
        .as_array()
        .ok_or("index.json without manifests")?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .ok_or(format!("no manifest tagged {tag}"))?;
    let manifest = json(&check(m)?)?;
    let config = json(&check(&manifest["config"])?)?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or("manifest without layers")?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("config without diff_ids")?;
    if layers.len() != diff_ids.len() {
        return Err(format!(
            "{} layers but {} diff_ids",
            layers.len(),
            diff_ids.len()
        ));
    }
    for (l, want) in layers.iter().zip(diff_ids) {
        let p = check(l)?;
        let mt = l["mediaType"].as_str().unwrap_or_default();
        let got = if mt.ends_with("+gzip") {
            sha256_reader(flate2::read::GzDecoder::new(
                fs::File::open(&p).map_err(|e| e.to_string())?,
            ))
        } else if mt.ends_with("+zstd") {
            let out = Command::new("zstd")
                .arg("-dc")
                .arg(&p)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("zstd: {e}"))?;
            if !out.status.success() {
                return Err(format!("zstd -dc {} failed", p.display()));
            }
            sha256_reader(std::io::Cursor::new(out.stdout))
        } else if mt.ends_with(".tar") {
            sha256_file(&p)
        } else {
            return Err(format!("unexpected layer media type {mt}"));
        };
        if want.as_str() != Some(got.as_str()) {
            return Err(format!(
                "layer {} ({mt}) has diff_id {got}, config says {want}",
                l["digest"]
            ));
        }
    }
    Ok(())
}

/// A CNCF distribution registry (Debian's `docker-registry`) on
/// 127.0.0.1, with its storage and configuration in a temp dir. Started on a
/// free port, killed when dropped (also when a test panics).
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The registry's storage root.
    pub storage: PathBuf,
    /// The registry's log (stdout and stderr, appended across restarts).
    pub log: PathBuf,
    config: PathBuf,
    child: Option<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start one, or `None` (skip) when `docker-registry` is missing.
    pub fn start() -> Option<TestRegistry> {
        if !require("docker-registry", "docker-registry") {
            return None;
        }
        let dir = temp_dir("registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .expect("write the registry config");
        let mut r = TestRegistry {
            addr,
            storage,
            log: dir.path().join("registry.log"),
            config,
            child: None,
            _dir: dir,
        };
        r.restart();
        Some(r)
    }

    /// Start the registry again (after [`TestRegistry::kill`]), same port
    /// and storage; waits until `/v2/` answers.
    pub fn restart(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the registry log");
        let child = Command::new(find_tool("docker-registry").expect("docker-registry"))
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if self.answers() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the registry on {} did not answer /v2/ within 20 s; its log:\n{}",
            self.addr,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Whether `GET /v2/` answers 200.
    pub fn answers(&self) -> bool {
        use std::io::Write;
        let Ok(mut s) = std::net::TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[8..] == b" 200"
    }

    /// Kill the registry (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `docker://127.0.0.1:PORT/<repo_tag>`.
    pub fn docker_ref(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.addr)
    }

    /// How many requests with `method` the access log holds so far.
    pub fn count_requests(&self, method: &str) -> usize {
        let needle = format!("\"{method} /v2/");
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// The data file of blob `digest` in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `skopeo inspect --tls-verify=false docker://...`: the JSON it prints.
pub fn skopeo_inspect(reference: &str) -> serde_json::Value {
    let r = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(reference))
    .ok();
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("skopeo inspect: {e}: {r}"))
}

/// The digest of an image in a registry as skopeo reads it (the digest
/// of the manifest bytes the registry serves).
pub fn skopeo_digest(reference: &str) -> String {
    skopeo_inspect(reference)["Digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
