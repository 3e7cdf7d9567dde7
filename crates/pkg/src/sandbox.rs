//! Running a program with no view of the build host.
//!
//! A base's programs (its `/usr/bin/rpm`) are the attacker's code, and a
//! host program reading or writing an image's files (the build host's rpm
//! over an image's rpm database) parses the attacker's input: both run
//! here, in a bubblewrap (`bwrap`) sandbox:
//!
//! - its own user namespace, root inside mapped to one unprivileged host
//!   id: the caller's, or [`SANDBOX_UID`] when nodeimg runs as root (bwrap
//!   is then started as that uid and gid, with no supplementary groups);
//!   no capabilities (the host program's sandbox keeps `CAP_SYS_CHROOT`,
//!   for `rpm --root`, within its namespace); no further user namespaces
//!   inside where bwrap can forbid them;
//! - its own mount namespace, pivoted into the sandbox's root: the image's
//!   tree ([`Sandbox::image`]), or a tmpfs with only the host's system
//!   folders read-only and the image's tree at one path
//!   ([`Sandbox::host`]); a fresh `/proc` of its own pid namespace, a
//!   minimal `/dev`;
//! - its own pid, network (loopback only), ipc, uts and cgroup namespaces,
//!   a new session, killed with nodeimg (`--die-with-parent`);
//! - an empty environment but what the caller sets, stdin `/dev/null`, no
//!   other inherited descriptor (every descriptor above 2 of nodeimg is
//!   marked close-on-exec first);
//! - bounded time ([`TIMEOUT_VAR`], killed after it), address space
//!   (`prlimit --as`, [`MEMORY_VAR`]) and output.
//!
//! When the sandbox cannot be had (bwrap missing, user namespaces refused)
//! the run fails with what to install or enable: nothing weaker runs.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The host uid and gid the sandbox's root is when nodeimg runs as root.
pub(crate) const SANDBOX_UID: u32 = 65534;

/// The environment variable with the seconds a sandboxed program may run.
pub(crate) const TIMEOUT_VAR: &str = "NODEIMG_SANDBOX_TIMEOUT";

/// The environment variable with the MiB of address space a sandboxed
/// program may map.
pub(crate) const MEMORY_VAR: &str = "NODEIMG_SANDBOX_MEMORY";

/// Seconds a sandboxed program may run unless [`TIMEOUT_VAR`] says.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// MiB of address space unless [`MEMORY_VAR`] says.
pub(crate) const DEFAULT_MEMORY_MIB: u64 = 4096;

/// The most standard output kept; past it the program is stopped.
const STDOUT_MAX: usize = 512 << 20;

/// The most standard error kept (the rest is dropped, not an error).
const STDERR_MAX: usize = 64 << 10;

/// The `PATH` inside the sandbox.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a sandboxed run did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A tool the sandbox needs is not on `PATH`.
    #[error("{tool} is not on PATH: programs of the image, and rpm, run only in its sandbox; install it (Debian: apt-get install {package})")]
    Missing {
        /// The executable.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// bwrap could not set the sandbox up.
    #[error("the sandbox could not be set up ({detail}); {hint}")]
    Setup {
        /// What bwrap said.
        detail: String,
        /// What to do.
        hint: &'static str,
    },
    /// A setting in the environment is not valid.
    #[error("{var}={value:?}: {why}")]
    Setting {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The program ran past its time and was killed.
    #[error("{program} did not finish within {secs} s and was stopped; a sandboxed rpm takes seconds, so check the image, or set {TIMEOUT_VAR} (seconds) higher if it is only slow")]
    Timeout {
        /// The program, for the message.
        program: String,
        /// The limit.
        secs: u64,
    },
    /// The program printed more than nodeimg keeps.
    #[error("{program} printed more than {max} bytes and was stopped")]
    TooMuchOutput {
        /// The program, for the message.
        program: String,
        /// The limit.
        max: usize,
    },
    /// The sandbox's folder cannot be reached by its user.
    #[error("{dir} is below {blocked}, which the sandbox's user (uid {uid}) cannot enter; for the sandbox's own folder set TMPDIR to a folder every user can reach (such as /tmp), for a program install it where it can reach it")]
    Unreachable {
        /// The folder.
        dir: PathBuf,
        /// The ancestor that stops it.
        blocked: PathBuf,
        /// The sandbox's uid.
        uid: u32,
    },
    /// A file operation of the sandbox failed.
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// Whether nodeimg runs as root (and so drops to [`SANDBOX_UID`]).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid the sandbox's root is on the host.
pub fn host_uid() -> u32 {
    if running_as_root() {
        SANDBOX_UID
    } else {
        rustix::process::geteuid().as_raw()
    }
}

/// `name` on `PATH` (or `name` itself when it has a `/`): an executable
/// file.
pub fn find_on_path(name: &OsStr) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let as_path = Path::new(name);
    if as_path.components().count() > 1 || name.to_string_lossy().contains('/') {
        return executable(as_path).then(|| as_path.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

fn tool(name: &'static str, package: &'static str) -> Result<PathBuf, SandboxError> {
    find_on_path(OsStr::new(name)).ok_or(SandboxError::Missing {
        tool: name,
        package,
    })
}

/// The limits a run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Wall-clock time.
    pub timeout: Duration,
    /// Address space, bytes.
    pub memory: u64,
}

impl Limits {
    /// The defaults, or what [`TIMEOUT_VAR`] and [`MEMORY_VAR`] say.
    pub(crate) fn from_env() -> Result<Limits, SandboxError> {
        Limits::parse(
            std::env::var(TIMEOUT_VAR).ok().as_deref(),
            std::env::var(MEMORY_VAR).ok().as_deref(),
        )
    }

    fn parse(timeout: Option<&str>, memory: Option<&str>) -> Result<Limits, SandboxError> {
        let number = |var: &'static str, v: &str, max: u64| -> Result<u64, SandboxError> {
            match v.trim().parse::<u64>() {
                Ok(n) if n > 0 && n <= max => Ok(n),
                _ => Err(SandboxError::Setting {
                    var,
                    value: v.to_string(),
                    why: format!("expected a whole number from 1 to {max}"),
                }),
            }
        };
        let secs = match timeout {
            Some(v) => number(TIMEOUT_VAR, v, 7 * 24 * 3600)?,
            None => DEFAULT_TIMEOUT_SECS,
        };
        let mib = match memory {
            Some(v) => number(MEMORY_VAR, v, 1 << 30)?,
            None => DEFAULT_MEMORY_MIB,
        };
        Ok(Limits {
            timeout: Duration::from_secs(secs),
            memory: mib << 20,
        })
    }
}

/// A private folder for a sandbox's files (its root and what is bound in),
/// in the temp folder (`TMPDIR`), where the sandbox's user can reach it:
/// owned by [`SANDBOX_UID`], mode 0700, when nodeimg runs as root. Removed
/// when dropped, whatever the sandbox left in it.
#[derive(Debug)]
pub struct Workspace {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Workspace {
    /// A new workspace, `nodeimg-LABEL-*` in the temp folder.
    pub fn new(label: &str) -> Result<Workspace, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("nodeimg-{label}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(io_err(format!(
                "creating a folder for the sandbox in {}",
                std::env::temp_dir().display()
            )))?;
        let path = dir.path().to_path_buf();
        if running_as_root() {
            std::os::unix::fs::lchown(&path, Some(SANDBOX_UID), Some(SANDBOX_UID)).map_err(
                io_err(format!(
                    "{}: handing it to uid {SANDBOX_UID}",
                    path.display()
                )),
            )?;
            reachable(&path, SANDBOX_UID, SANDBOX_UID)?;
        }
        Ok(Workspace {
            dir: Some(dir),
            path,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the tree at `path` (not following symlinks) to the sandbox's
    /// user, when nodeimg runs as root; nothing otherwise.
    pub fn hand_over(&self, path: &Path) -> Result<(), SandboxError> {
        if !running_as_root() {
            return Ok(());
        }
        for entry in walkdir::WalkDir::new(path).follow_links(false) {
            let entry = entry.map_err(|e| SandboxError::Io {
                what: format!("{}: handing it to uid {SANDBOX_UID}", path.display()),
                source: e.into(),
            })?;
            std::os::unix::fs::lchown(entry.path(), Some(SANDBOX_UID), Some(SANDBOX_UID)).map_err(
                io_err(format!(
                    "{}: handing it to uid {SANDBOX_UID}",
                    entry.path().display()
                )),
            )?;
        }
        Ok(())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
        drop(self.dir.take());
    }
}

/// Checks that uid/gid can search every folder above `dir`.
fn reachable(dir: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    let canon = std::fs::canonicalize(dir).map_err(io_err(dir.display().to_string()))?;
    let mut p = canon.parent();
    while let Some(a) = p {
        let m = std::fs::metadata(a).map_err(io_err(a.display().to_string()))?;
        let bits = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        if m.mode() & bits == 0 {
            return Err(SandboxError::Unreachable {
                dir: dir.to_path_buf(),
                blocked: a.to_path_buf(),
                uid,
            });
        }
        p = a.parent();
    }
    Ok(())
}

/// Whether this bwrap has `--disable-userns` (0.8 and later).
fn bwrap_disables_userns(bwrap: &Path) -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| {
        Command::new(bwrap)
            .arg("--help")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--disable-userns"))
    })
}

/// Marks every open descriptor above 2 of this process close-on-exec, so
/// that no child inherits one.
pub(crate) fn close_inherited_descriptors() -> Result<(), SandboxError> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(io_err("listing the open descriptors (/proc/self/fd)"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The listing's own descriptor is closed by now: EBADF.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

/// What a sandboxed program did.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error (at most 64 KiB), control characters but tab
    /// and newline replaced.
    pub stderr: String,
}

/// One sandbox: its root, what is bound in and the environment.
#[derive(Debug, Clone)]
pub struct Sandbox {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

/// Host folders a host program needs, read-only.
const HOST_SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

impl Sandbox {
    fn base() -> Sandbox {
        let args = [
            "--unshare-all",
            "--unshare-user",
            "--uid",
            "0",
            "--gid",
            "0",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ];
        Sandbox {
            args: args.iter().map(OsString::from).collect(),
            env: vec![("PATH".into(), PATH.into()), ("LC_ALL".into(), "C".into())],
        }
    }

    fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    /// The tree at `root` (the image) is the sandbox's root, writable;
    /// `/proc` and `/dev` are the sandbox's own.
    pub fn image(root: &Path) -> Sandbox {
        let mut s = Sandbox::base();
        s.arg("--bind").arg(root).arg("/");
        s.arg("--proc").arg("/proc").arg("--dev").arg("/dev");
        s
    }

    /// A tmpfs root with the host's system folders read-only (`/usr`, the
    /// `/bin`, `/sbin` and `/lib*` folders or links, `/etc/ld.so.cache`,
    /// `/etc/rpm`), and the tree at `tree` (writable) at `at`; the program
    /// may chroot (into the tree).
    pub fn host(tree: &Path, at: &str) -> Sandbox {
        let mut s = Sandbox::base();
        for d in HOST_SYSTEM {
            match std::fs::symlink_metadata(d) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(d) {
                        s.arg("--symlink").arg(t).arg(d);
                    }
                }
                Ok(m) if m.is_dir() => {
                    s.arg("--ro-bind").arg(d).arg(d);
                }
                _ => {}
            }
        }
        for f in ["/etc/ld.so.cache", "/etc/rpm"] {
            s.arg("--ro-bind-try").arg(f).arg(f);
        }
        s.arg("--proc").arg("/proc").arg("--dev").arg("/dev");
        s.arg("--tmpfs").arg("/tmp").arg("--dir").arg("/var/tmp");
        s.arg("--bind").arg(tree).arg(at);
        // `rpm --root` changes its root to the tree (in the sandbox's own
        // user namespace); no other capability is kept.
        s.arg("--cap-add").arg("CAP_SYS_CHROOT");
        s
    }

    /// Binds the host's `src` read-only at `dst`.
    pub fn ro_bind(&mut self, src: &Path, dst: &str) -> &mut Self {
        self.arg("--ro-bind").arg(src).arg(dst)
    }

    /// Makes the host program `program` (absolute) visible at its own path:
    /// bound read-only unless it is in one of the host's system folders.
    /// Fails when the sandbox's user cannot reach it.
    pub fn host_program(&mut self, program: &Path) -> Result<&mut Self, SandboxError> {
        let system = HOST_SYSTEM.iter().any(|d| program.starts_with(d));
        if !system {
            if running_as_root() {
                reachable(program, SANDBOX_UID, SANDBOX_UID)?;
            }
            self.arg("--ro-bind").arg(program).arg(program);
        }
        Ok(self)
    }

    /// Sets `key=value` in the program's environment.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The `prlimit` and `bwrap` command running `program` with `args`.
    fn command(
        &self,
        program: &OsStr,
        args: &[OsString],
        limits: &Limits,
    ) -> Result<Command, SandboxError> {
        let bwrap = tool("bwrap", "bubblewrap")?;
        let prlimit = tool("prlimit", "util-linux")?;
        let mut c = Command::new(prlimit);
        c.arg(format!("--as={}", limits.memory))
            .arg("--")
            .arg(&bwrap)
            .args(&self.args);
        if bwrap_disables_userns(&bwrap) {
            c.arg("--disable-userns");
        }
        c.args(["--chdir", "/"]);
        for (k, v) in &self.env {
            c.arg("--setenv").arg(k).arg(v);
        }
        c.arg("--").arg(program).args(args);
        c.env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if running_as_root() {
            c.uid(SANDBOX_UID).gid(SANDBOX_UID);
        }
        Ok(c)
    }

    /// Runs `program` (a path inside the sandbox) with `args`; `what`
    /// names it in messages. Fails when the sandbox cannot be set up, the
    /// program runs past the time limit or prints too much; a program that
    /// ran and failed is an [`Output`] with its status.
    pub fn run(
        &self,
        program: &OsStr,
        args: &[OsString],
        what: &str,
    ) -> Result<Output, SandboxError> {
        self.run_limited(program, args, what, &Limits::from_env()?)
    }

    /// [`Sandbox::run`] with the given limits.
    pub(crate) fn run_limited(
        &self,
        program: &OsStr,
        args: &[OsString],
        what: &str,
        limits: &Limits,
    ) -> Result<Output, SandboxError> {
        let mut c = self.command(program, args, limits)?;
        close_inherited_descriptors()?;
        let mut child = c.spawn().map_err(io_err("starting bwrap"))?;
        let too_much = Arc::new(AtomicBool::new(false));
        let out = child.stdout.take().map(|r| {
            let flag = too_much.clone();
            std::thread::spawn(move || read_capped(r, STDOUT_MAX, Some(&flag)))
        });
        let err = child
            .stderr
            .take()
            .map(|r| std::thread::spawn(move || read_capped(r, STDERR_MAX, None)));
        let started = Instant::now();
        let mut timed_out = false;
        let status = loop {
            match child.try_wait().map_err(io_err("waiting for bwrap"))? {
                Some(s) => break s,
                None if started.elapsed() > limits.timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().map_err(io_err("waiting for bwrap"))?;
                }
                None if too_much.load(Ordering::SeqCst) => {
                    let _ = child.kill();
                    break child.wait().map_err(io_err("waiting for bwrap"))?;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
        if timed_out {
            return Err(SandboxError::Timeout {
                program: what.to_string(),
                secs: limits.timeout.as_secs(),
            });
        }
        if too_much.load(Ordering::SeqCst) {
            return Err(SandboxError::TooMuchOutput {
                program: what.to_string(),
                max: STDOUT_MAX,
            });
        }
        let stderr = printable(&String::from_utf8_lossy(&stderr));
        if !status.success() {
            if let Some(detail) = setup_failure(&stderr) {
                let hint = setup_hint(&detail);
                return Err(SandboxError::Setup { detail, hint });
            }
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Reads `r` to its end, keeping at most `max` bytes; past that sets
/// `flag` (and stops reading) when given, else drops the rest.
fn read_capped(mut r: impl Read, max: usize, flag: Option<&AtomicBool>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    if let Some(f) = flag {
                        f.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// `s` with control characters (but newline and tab) replaced, so that a
/// program's messages cannot drive the terminal they are shown on.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// bwrap's own complaint when it could not set the sandbox up (a line
/// `bwrap: ...` other than its failure to start the program).
fn setup_failure(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.starts_with("bwrap: ") && !l.starts_with("bwrap: execvp "))
        .map(str::to_string)
}

/// What to do about bwrap's complaint `detail`.
fn setup_hint(detail: &str) -> &'static str {
    let userns = [
        "namespace",
        "uid map",
        "gid map",
        "setgroups",
        "Operation not permitted",
    ];
    if userns.iter().any(|w| detail.contains(w)) {
        "the build host must allow unprivileged user namespaces (sysctl user.max_user_namespaces above 0, kernel.unprivileged_userns_clone=1 where that setting exists, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap)"
    } else {
        "check that the folders named are there and reachable by the sandbox's user (uid 65534 when nodeimg runs as root)"
    }
}

/// bwrap's failure to start the program (`bwrap: execvp PROGRAM: ...`).
pub fn exec_failure(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .find(|l| l.starts_with("bwrap: execvp "))
        .map(str::trim)
}

/// Removes whatever is at `p` (a folder with its content), if anything.
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            make_writable_tree(p);
            std::fs::remove_dir_all(p)
        }
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives the owner write and search permission on every folder below `p`
/// (an image's read-only folders would stop the removal).
fn make_writable_tree(p: &Path) {
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable_tree(&e.path());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_settings() {
        let d = Limits::parse(None, None).unwrap();
        assert_eq!(d.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
        assert_eq!(d.memory, DEFAULT_MEMORY_MIB << 20);
        let l = Limits::parse(Some("30"), Some("256")).unwrap();
        assert_eq!(
            l,
            Limits {
                timeout: Duration::from_secs(30),
                memory: 256 << 20
            }
        );
        for (t, m) in [(Some("0"), None), (Some("x"), None), (None, Some("-1"))] {
            let e = Limits::parse(t, m).unwrap_err().to_string();
            assert!(e.contains("expected a whole number"), "{e}");
            assert!(e.contains("NODEIMG_SANDBOX_"), "{e}");
        }
    }

    #[test]
    fn bwrap_messages_are_told_apart() {
        assert_eq!(
            setup_failure("bwrap: setting up uid map: Permission denied\n").as_deref(),
            Some("bwrap: setting up uid map: Permission denied")
        );
        assert_eq!(
            setup_failure("bwrap: execvp /usr/bin/rpm: No such file or directory\n"),
            None
        );
        assert_eq!(
            exec_failure("bwrap: execvp /usr/bin/rpm: Exec format error\n"),
            Some("bwrap: execvp /usr/bin/rpm: Exec format error")
        );
        assert_eq!(setup_failure("error: rpmdb: damaged\n"), None);
        assert!(setup_hint("bwrap: setting up uid map: Permission denied")
            .contains("unprivileged user namespaces"));
        assert!(
            setup_hint("bwrap: No permissions to creating new namespace")
                .contains("unprivileged user namespaces")
        );
        assert!(
            setup_hint("bwrap: Can't find source path /x: Permission denied")
                .contains("reachable by the sandbox's user")
        );
        let e = SandboxError::Missing {
            tool: "bwrap",
            package: "bubblewrap",
        };
        assert!(e.to_string().contains("apt-get install bubblewrap"), "{e}");
        assert_eq!(printable("a\x1b[2Jb\n\tc"), "a\u{fffd}[2Jb\n\tc");
    }

    #[test]
    fn output_is_capped() {
        let flag = AtomicBool::new(false);
        let big = vec![b'x'; 300];
        assert_eq!(read_capped(&big[..], 100, Some(&flag)).len(), 100);
        assert!(flag.load(Ordering::SeqCst));
        let flag = AtomicBool::new(false);
        assert_eq!(read_capped(&big[..], 1000, Some(&flag)).len(), 300);
        assert!(!flag.load(Ordering::SeqCst));
        assert_eq!(read_capped(&big[..], 10, None).len(), 10);
    }

    #[test]
    fn a_folder_below_a_private_one_is_unreachable() {
        let t = tempfile::tempdir().unwrap();
        let private = t.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let inner = private.join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another id than the owner's cannot pass the 0700 folder.
        let me = std::fs::metadata(&private).unwrap().uid();
        let other = if me == 4242 { 4243 } else { 4242 };
        let e = reachable(&inner, other, other).unwrap_err().to_string();
        assert!(e.contains("cannot enter") && e.contains("TMPDIR"), "{e}");
        assert!(e.contains(&private.display().to_string()), "{e}");
        // The owner can; so can anyone once it is searchable.
        reachable(&inner, me, me).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        reachable(&inner, other, other).unwrap();
    }

    /// Whether bwrap and prlimit are here; under CI=true they must be.
    fn have_tools() -> bool {
        let ok = tool("bwrap", "bubblewrap").is_ok() && tool("prlimit", "util-linux").is_ok();
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "bwrap and prlimit are needed (install bubblewrap and util-linux)"
            );
            eprintln!("SKIP: install bubblewrap");
        }
        ok
    }

    /// A host program (sh) in the host sandbox sees none of the host but
    /// its system folders, is root inside but not on the host, is pid 1's
    /// child in its own pid namespace, has no network but lo and no
    /// descriptor but 0-2, and writes only the tree it is given.
    #[test]
    fn a_host_program_sees_no_host() {
        if !have_tools() {
            return;
        }
        let ws = Workspace::new("sandbox-test").unwrap();
        let tree = ws.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("in"), "given\n").unwrap();
        ws.hand_over(&tree).unwrap();
        // A descriptor this process leaves open for its children.
        let leaked = std::fs::File::open("/proc/self/status").unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
        let _ = nix::fcntl::fcntl(
            raw,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
        let secret =
            std::env::temp_dir().join(format!("nodeimg-sandbox-secret-{}", std::process::id()));
        std::fs::write(&secret, "host\n").unwrap();
        let script = format!(
            "echo uid=$(id -u); cat /proc/self/uid_map; echo pid=$$; cat /proc/1/comm; \
             ls /proc/self/fd | tr '\\n' ' '; echo; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '; echo; \
             ls /; ls /home /root /work {secret} 2>&1 | wc -l; cat /image/in; echo out > /image/out; \
             echo env=$(env | cut -d= -f1 | sort | tr '\\n' ' '); touch /usr/x 2>&1 | wc -l",
            secret = secret.display()
        );
        let mut s = Sandbox::host(&tree, "/image");
        s.env("SOURCE_DATE_EPOCH", "0");
        let out = s
            .run(
                OsStr::new("/bin/sh"),
                &[OsString::from("-c"), OsString::from(script)],
                "sh",
            )
            .unwrap();
        drop(leaked);
        let _ = std::fs::remove_file(&secret);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "uid=0", "{text}");
        // One id mapped (with --disable-userns the map shown is that of a
        // nested namespace, so the host id is checked on the host below).
        let map: Vec<&str> = lines[1].split_whitespace().collect();
        assert!(map.len() == 3 && map[0] == "0" && map[2] == "1", "{text}");
        assert_eq!(lines[2], "pid=2", "{text}");
        assert_eq!(lines[3], "bwrap", "{text}");
        // 0-2 and the listing's own descriptor.
        assert_eq!(lines[4].trim(), "0 1 2 3", "{text}");
        assert_eq!(lines[5].trim(), "lo", "{text}");
        let root: Vec<&str> = lines[6..]
            .iter()
            .take_while(|l| l.parse::<u32>().is_err())
            .copied()
            .collect();
        for r in &root {
            assert!(
                [
                    "bin", "dev", "etc", "image", "lib", "lib32", "lib64", "libx32", "proc",
                    "sbin", "tmp", "usr", "var"
                ]
                .contains(r),
                "the sandbox's / has {r}: {text}"
            );
        }
        let rest = &lines[6 + root.len()..];
        assert_eq!(rest[0], "4", "the host's folders are not there: {text}");
        assert_eq!(rest[1], "given", "{text}");
        assert_eq!(rest[2], "env=LC_ALL PATH PWD SOURCE_DATE_EPOCH", "{text}");
        assert_eq!(rest[3], "1", "/usr is read-only: {text}");
        assert_eq!(std::fs::read_to_string(tree.join("out")).unwrap(), "out\n");
        // Root inside wrote it as an unprivileged host id.
        let owner = std::fs::metadata(tree.join("out")).unwrap().uid();
        assert_eq!(owner, host_uid());
        if running_as_root() {
            assert_eq!(owner, SANDBOX_UID);
        }
    }

    #[test]
    fn a_program_past_its_time_is_stopped() {
        if !have_tools() {
            return;
        }
        let ws = Workspace::new("sandbox-test").unwrap();
        let s = Sandbox::host(ws.path(), "/image");
        let limits = Limits {
            timeout: Duration::from_secs(1),
            memory: DEFAULT_MEMORY_MIB << 20,
        };
        let started = Instant::now();
        let e = s
            .run_limited(
                OsStr::new("/bin/sh"),
                &[OsString::from("-c"), OsString::from("sleep 30 & sleep 30")],
                "sh",
                &limits,
            )
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            e.to_string().contains("sh did not finish within 1 s"),
            "{e}"
        );
    }
}
