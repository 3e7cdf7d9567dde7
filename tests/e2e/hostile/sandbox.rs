//! Hostile inputs: the programs a build runs. A base's `/usr/bin/rpm` (run
//! to read and write the image's rpm database) is the attacker's code, and
//! so is what the build host's rpm parses: every run of rpm is sandboxed
//! and has no view of the build host.
//!
//! The attacker here is `escape.c`, compiled static per case: shipped as a
//! base's `/usr/bin/rpm` (or first on the build host's `PATH`), it tries
//! the chroot escape, `/proc/1/root`, every inherited descriptor and
//! guessed host paths, and plants a canary (with a host file's bytes)
//! wherever it gets out. Each case asserts the canary never appears on the
//! host, that nodeimg stops with a clear message (exit 1, no panic), and
//! what the program saw inside (root mapped to an unprivileged host id, its
//! own pid namespace, no descriptors but 0-2, no network but lo). The
//! negative control runs the same program outside nodeimg, where it does
//! plant the canary. The cases run as root and as an ordinary user (uid
//! 65534 through `setpriv`).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nodeimg_e2e::{
    create_tar, nodeimg_bin, require, run, run_within, skip_or_fail, Run, TEST_EPOCH,
};

/// The ordinary user the `as_user` runs use.
const USER: u32 = 65534;

/// The host folders the program plants its canary in when it gets out
/// (besides the test's own temp dir, which it finds by name in /tmp).
const CANARY_DIRS: &[&str] = &[
    "/tmp", "/var/tmp", "/root", "/home", "/work", "/dev/shm", "/run",
];

/// How long any one nodeimg run may take here before the test kills it.
const RUN_LIMIT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    /// The test's own user (root in CI).
    Caller,
    /// uid/gid 65534 through setpriv (only when the test runs as root).
    User,
}

fn is_root() -> bool {
    let r = run(Command::new("id").arg("-u"));
    r.stdout.trim() == "0"
}

fn tools() -> bool {
    require("gcc", "gcc") && require("tar", "tar") && require("setpriv", "util-linux")
}

/// One case's world: its temp dir (named `nodeimg-e2e-sandbox-TOKEN-*` in
/// the temp folder, so the program finds it), a token naming its canaries, and
/// a secret host file the program copies into the canary when it gets out.
struct World {
    t: tempfile::TempDir,
    token: String,
    secret: String,
}

impl World {
    fn new(label: &str) -> World {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("{label}-{}-{nanos}", std::process::id());
        let t = tempfile::Builder::new()
            .prefix(&format!("nodeimg-e2e-sandbox-{token}-"))
            .tempdir()
            .unwrap();
        // Searchable by the sandbox's user, which runs the build host's rpm
        // from bin/ here when nodeimg runs as root.
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let secret = format!("host-secret-{token}");
        fs::write(t.path().join("host-secret"), format!("{secret}\n")).unwrap();
        World { t, token, secret }
    }

    fn dir(&self) -> &Path {
        self.t.path()
    }

    fn canary_name(&self) -> String {
        format!("nodeimg-escape-{}", self.token)
    }

    /// Every canary on the host, with its content: in the guessed folders
    /// and anywhere in the temp dir but the scratch folder nodeimg is given
    /// (`tmp/`, where the sandboxed root lives).
    fn canaries(&self) -> Vec<(PathBuf, String)> {
        let name = self.canary_name();
        let mut out = Vec::new();
        for d in CANARY_DIRS {
            let p = Path::new(d).join(&name);
            if fs::symlink_metadata(&p).is_ok() {
                out.push((p.clone(), fs::read_to_string(&p).unwrap_or_default()));
            }
        }
        find_named(self.dir(), &name, &self.dir().join("tmp"), &mut out);
        out
    }

    fn clear_canaries(&self) {
        for (p, _) in self.canaries() {
            let _ = fs::remove_file(p);
        }
    }

    /// The program compiled static with this world's token, in `mode`.
    fn program(&self, mode: &str) -> Option<PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/hostile/escape.c");
        let out = self.dir().join(format!("escape-{mode}"));
        let r = run(Command::new("gcc")
            .args(["-static", "-O0", "-o"])
            .arg(&out)
            .arg(format!("-DTOKEN=\"{}\"", self.token))
            .arg(format!("-DMODE=\"{mode}\""))
            .arg(&src));
        if r.code != 0 {
            skip_or_fail(
                "a static C toolchain",
                &format!("install gcc and libc6-dev ({r})"),
            );
            return None;
        }
        Some(out)
    }

    /// A rootfs base tar: os-release, accounts, an rpm database file (so
    /// that rpm is asked what is installed), and `rpm` as `/usr/bin/rpm`
    /// when given (the database then one that only the image's rpm
    /// writes).
    fn base(&self, name: &str, rpm: Option<&Path>) -> PathBuf {
        let root = self.dir().join(format!("{name}-root"));
        for d in ["etc", "tmp", "var/tmp", "var/lib/rpm", "usr/bin"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(
            root.join("etc/os-release"),
            "NAME=\"Test EL\"\nID=\"testel\"\nVERSION_ID=\"9\"\n",
        )
        .unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        // With its own rpm, an ndb database (openSUSE's), which the build
        // host's rpm does not write: the image's rpm is the one asked.
        let db = if rpm.is_some() {
            "Packages.db"
        } else {
            "rpmdb.sqlite"
        };
        fs::write(root.join("var/lib/rpm").join(db), "not a database").unwrap();
        if let Some(rpm) = rpm {
            let dst = root.join("usr/bin/rpm");
            fs::copy(rpm, &dst).unwrap();
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let tar = self.dir().join(format!("{name}.tar"));
        create_tar(&root, &tar);
        tar
    }

    /// A recipe with a yum repository (that need not exist: the image's
    /// rpm database is read first) and a packages list.
    fn recipe(&self) -> PathBuf {
        let p = self.dir().join("escape.toml");
        fs::write(
            &p,
            "[image]\nname = \"escape\"\n\n[[layer]]\nname = \"repo\"\n\n[[layer.yum-repo]]\nname = \"demo\"\nbaseurl = \"http://127.0.0.1:9/repo\"\ngpgcheck = false\n\n[[layer]]\nname = \"packages\"\npackages = [\"demo\"]\n",
        )
        .unwrap();
        p
    }

    /// Hands the temp dir to [`USER`] (who runs nodeimg in it), with a
    /// scratch folder `tmp/` for its `TMPDIR`.
    fn give_to_user(&self) {
        fs::create_dir_all(self.dir().join("tmp")).unwrap();
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{USER}:{USER}"))
            .arg(self.dir()))
        .ok();
    }

    /// `nodeimg ARGS` as `who`, in the temp dir, with `TMPDIR` the temp
    /// dir's `tmp/`.
    fn nodeimg(&self, who: Who, args: &[&str], env: &[(&str, String)]) -> Command {
        let tmp = self.dir().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let mut c = match who {
            Who::Caller => Command::new(nodeimg_bin()),
            Who::User => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={USER}"))
                    .arg(format!("--regid={USER}"))
                    .args(["--clear-groups", "--"])
                    .arg(self.user_binary());
                c
            }
        };
        c.args(args)
            .current_dir(self.dir())
            .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
            .env("TMPDIR", &tmp)
            .env_remove("RUST_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// The nodeimg binary, copied into the temp dir when [`USER`] cannot
    /// run it where it is (a workspace below a private folder).
    fn user_binary(&self) -> PathBuf {
        let bin = nodeimg_bin();
        let probe = run(Command::new("setpriv")
            .arg(format!("--reuid={USER}"))
            .arg(format!("--regid={USER}"))
            .args(["--clear-groups", "--"])
            .arg(&bin)
            .arg("--help"));
        if probe.code == 0 {
            return bin;
        }
        let copy = self.dir().join("nodeimg");
        if !copy.exists() {
            fs::copy(&bin, &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        }
        copy
    }

    fn build_args(&self, recipe: &Path, base: &Path) -> Vec<String> {
        vec![
            "build".into(),
            recipe.display().to_string(),
            "-o".into(),
            self.dir().join("out.tar").display().to_string(),
            "--format".into(),
            "rootfs".into(),
            "--base".into(),
            format!("rootfs:{}", base.display()),
            "--cache-dir".into(),
            self.dir().join("cache").display().to_string(),
        ]
    }

    fn lock_args(&self, recipe: &Path, base: &Path) -> Vec<String> {
        vec![
            "lock".into(),
            recipe.display().to_string(),
            "--base".into(),
            format!("rootfs:{}", base.display()),
            "--cache-dir".into(),
            self.dir().join("cache").display().to_string(),
        ]
    }

    /// Runs nodeimg as `who` and checks that the program stayed inside:
    /// no canary on the host, no host secret in the output, a clear
    /// failure (exit 1 naming the rpm, no panic), and the program's own
    /// report of what it saw shows a sandbox.
    fn assert_contained(
        &self,
        who: Who,
        args: &[String],
        env: &[(&str, String)],
        what: &str,
        may_chroot: bool,
    ) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (r, killed) = run_bounded(&mut self.nodeimg(who, &args, env), RUN_LIMIT);
        let found = self.canaries();
        self.clear_canaries();
        eprintln!(
            "{what} ({who:?}): exit {}: {}",
            r.code,
            r.stderr.lines().last().unwrap_or("")
        );
        assert!(
            found.is_empty(),
            "{what} ({who:?}): the image's program reached the build host, canaries {found:?}\n{r}"
        );
        assert!(!killed, "{what} ({who:?}): nodeimg did not finish\n{r}");
        for out in [&r.stdout, &r.stderr] {
            assert!(
                !out.contains(&self.secret),
                "{what} ({who:?}): a host file's bytes reached the output\n{r}"
            );
        }
        assert!(!r.stderr.contains("panicked"), "{what} ({who:?}): {r}");
        assert_eq!(r.code, 1, "{what} ({who:?}): {r}");
        assert!(
            r.stderr.contains("rpm") && r.stderr.contains("failed"),
            "{what} ({who:?}): the message must say the rpm failed: {r}"
        );
        let report = Report::of(&r.stderr)
            .unwrap_or_else(|| panic!("{what} ({who:?}): the program's report is not shown: {r}"));
        report.assert_sandboxed(&format!("{what} ({who:?})"), &r, may_chroot);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.clear_canaries();
    }
}

/// Files named `name` below `dir` (symlinks not followed), but not below
/// `skip`.
fn find_named(dir: &Path, name: &str, skip: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if e.file_name().to_str() == Some(name) {
            out.push((p.clone(), fs::read_to_string(&p).unwrap_or_default()));
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&p, name, skip, out);
        }
    }
}

/// What the program reported it saw (its `hostile-rpm:` line, which
/// nodeimg shows in its error).
struct Report(String);

impl Report {
    fn of(stderr: &str) -> Option<Report> {
        let at = stderr.find("hostile-rpm: token=")?;
        Some(Report(stderr[at..].to_string()))
    }

    fn field(&self, key: &str) -> Option<String> {
        let at = self.0.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &self.0[at..];
        if let Some(inner) = rest.strip_prefix('[') {
            inner.find(']').map(|e| inner[..e].to_string())
        } else {
            Some(
                rest.split([' ', ';', '\n'])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        }
    }

    fn assert_sandboxed(&self, what: &str, r: &Run, may_chroot: bool) {
        // One id mapped: root inside. (Which host id it is cannot be seen
        // from a nested namespace, as bwrap --disable-userns makes; the
        // sandbox's unit tests check it on the host.)
        let map = self.field("uid_map").unwrap_or_default();
        let cols: Vec<&str> = map.split(' ').collect();
        assert!(
            cols.len() == 3 && cols[0] == "0" && cols[2] == "1",
            "{what}: root inside must be one mapped id, uid_map [{map}]\n{r}"
        );
        assert_eq!(self.field("uid").as_deref(), Some("0"), "{what}\n{r}");
        let pid: u32 = self.field("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(
            (1..=2).contains(&pid),
            "{what}: not in a pid namespace of its own (pid {pid})\n{r}"
        );
        assert_eq!(
            self.field("fds").as_deref(),
            Some(""),
            "{what}: descriptors were inherited\n{r}"
        );
        let ifaces = self.field("ifaces").unwrap_or_default();
        assert!(
            ifaces.split(',').all(|i| i.is_empty() || i == "lo"),
            "{what}: network interfaces [{ifaces}]\n{r}"
        );
        assert!(!self.0.contains("planted(fd"), "{what}: {}\n{r}", self.0);
        // The image's program has no capability: chroot is refused. (The
        // build host's rpm may chroot, for --root: out of a chroot it only
        // reaches the sandbox's own root, which the canaries check.)
        if !may_chroot {
            assert!(
                !self.0.contains("planted(chroot") && self.0.contains(" chroot:"),
                "{what}: {}\n{r}",
                self.0
            );
        }
    }
}

/// Runs `cmd` (stdin closed) in its own process group; kills the group
/// after `limit`. Returns the run and whether it was killed.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Run, bool) {
    let t = run_within(cmd, limit);
    (t.run, t.killed)
}

/// Whether the ordinary-user runs can be made (only root can switch to
/// [`USER`]); says so when not.
fn can_switch_user() -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIP: the runs as uid {USER} need root");
    false
}

/// A base whose `/usr/bin/rpm` is the program: build and lock.
fn image_rpm_case(who: Who) {
    let w = World::new("image");
    let Some(prog) = w.program("escape") else {
        return;
    };
    let base = w.base("base", Some(&prog));
    let recipe = w.recipe();
    if who == Who::User {
        w.give_to_user();
    }
    w.assert_contained(who, &w.build_args(&recipe, &base), &[], "build", false);
    assert!(
        !w.dir().join("out.tar").exists(),
        "a failed build left its output"
    );
    w.assert_contained(who, &w.lock_args(&recipe, &base), &[], "lock", false);
    assert!(!w.dir().join("escape.toml.lock").exists());
}

/// A base without rpm: the build host's rpm (the first on PATH, here the
/// program) reads the image's database, in a sandbox too.
fn host_rpm_case(who: Who) {
    let w = World::new("host");
    let Some(prog) = w.program("escape") else {
        return;
    };
    let bin = w.dir().join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(&prog, bin.join("rpm")).unwrap();
    fs::set_permissions(bin.join("rpm"), fs::Permissions::from_mode(0o755)).unwrap();
    let base = w.base("base", None);
    let recipe = w.recipe();
    if who == Who::User {
        w.give_to_user();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path)];
    w.assert_contained(who, &w.build_args(&recipe, &base), &env, "build", true);
    w.assert_contained(who, &w.lock_args(&recipe, &base), &env, "lock", true);
}

#[test]
fn the_image_rpm_has_no_view_of_the_build_host_as_root() {
    if tools() {
        image_rpm_case(Who::Caller);
    }
}

#[test]
fn the_image_rpm_has_no_view_of_the_build_host_as_a_user() {
    if tools() && can_switch_user() {
        image_rpm_case(Who::User);
    }
}

#[test]
fn the_build_hosts_rpm_runs_sandboxed_as_root() {
    if tools() {
        host_rpm_case(Who::Caller);
    }
}

#[test]
fn the_build_hosts_rpm_runs_sandboxed_as_a_user() {
    if tools() && can_switch_user() {
        host_rpm_case(Who::User);
    }
}

/// The negative control: the same program, run directly on the host and
/// chrooted in a user namespace (what rpm ran in before the sandbox),
/// plants its canary.
#[test]
fn the_escape_program_gets_out_without_the_sandbox() {
    if !(tools() && require("unshare", "util-linux") && require("chroot", "coreutils")) {
        return;
    }
    let w = World::new("control");
    let Some(prog) = w.program("escape") else {
        return;
    };
    let direct = run(&mut Command::new(&prog));
    let found = w.canaries();
    w.clear_canaries();
    assert!(
        found
            .iter()
            .any(|(p, c)| p.starts_with("/tmp") && c.contains("escaped via path")),
        "{found:?}\n{direct}"
    );
    assert!(
        found
            .iter()
            .any(|(p, c)| p.starts_with(w.dir()) && c.contains(&w.secret)),
        "the program finds the test's folder and reads its secret: {found:?}\n{direct}"
    );

    let root = w.dir().join("jail");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::copy(&prog, root.join("usr/bin/rpm")).unwrap();
    let jailed = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "chroot"])
        .arg(&root)
        .arg("/usr/bin/rpm"));
    if jailed.stderr.contains("unshare:") {
        skip_or_fail(
            "unprivileged user namespaces",
            &format!("allow them on this host: {jailed}"),
        );
        return;
    }
    let found = w.canaries();
    w.clear_canaries();
    assert!(
        found
            .iter()
            .any(|(p, c)| p.starts_with("/tmp") && c.contains("escaped via chroot")),
        "the chroot escape gets out of a chroot in a user namespace: {found:?}\n{jailed}"
    );
}

#[test]
fn an_rpm_that_never_ends_is_stopped() {
    if !tools() {
        return;
    }
    let w = World::new("hang");
    let Some(prog) = w.program("hang") else {
        return;
    };
    let base = w.base("base", Some(&prog));
    let recipe = w.recipe();
    let args = w.build_args(&recipe, &base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let (r, killed) = run_bounded(
        &mut w.nodeimg(
            Who::Caller,
            &args,
            &[("NODEIMG_SANDBOX_TIMEOUT", "3".into())],
        ),
        Duration::from_secs(60),
    );
    assert!(!killed, "nodeimg did not stop the rpm: {r}");
    assert!(started.elapsed() < Duration::from_secs(45), "{r}");
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("did not finish within 3 s"), "{r}");
    assert!(r.stderr.contains("NODEIMG_SANDBOX_TIMEOUT"), "{r}");
    assert!(!r.stderr.contains("panicked"), "{r}");
}

#[test]
fn an_rpm_that_eats_memory_is_bounded() {
    if !tools() {
        return;
    }
    let w = World::new("memory");
    let Some(prog) = w.program("memory") else {
        return;
    };
    let base = w.base("base", Some(&prog));
    let recipe = w.recipe();
    let args = w.build_args(&recipe, &base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, killed) = run_bounded(
        &mut w.nodeimg(
            Who::Caller,
            &args,
            &[("NODEIMG_SANDBOX_MEMORY", "256".into())],
        ),
        RUN_LIMIT,
    );
    assert!(!killed, "{r}");
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("memory: refused"), "{r}");
    assert!(!r.stderr.contains("allocated"), "{r}");
}

#[test]
fn without_bubblewrap_the_build_stops_and_says_what_to_install() {
    if !tools() {
        return;
    }
    let w = World::new("nobwrap");
    let Some(prog) = w.program("escape") else {
        return;
    };
    let base = w.base("base", Some(&prog));
    let recipe = w.recipe();
    // A PATH with the host's rpm but no bwrap.
    let bin = w.dir().join("bin");
    fs::create_dir_all(&bin).unwrap();
    if let Some(rpm) = nodeimg_e2e::find_tool("rpm") {
        std::os::unix::fs::symlink(rpm, bin.join("rpm")).unwrap();
    }
    let args = w.build_args(&recipe, &base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, killed) = run_bounded(
        &mut w.nodeimg(Who::Caller, &args, &[("PATH", bin.display().to_string())]),
        RUN_LIMIT,
    );
    let found = w.canaries();
    w.clear_canaries();
    assert!(found.is_empty(), "{found:?}\n{r}");
    assert!(!killed, "{r}");
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("bubblewrap") && r.stderr.contains("apt-get install bubblewrap"),
        "{r}"
    );
    // Nothing weaker ran instead: the program never started.
    assert!(!r.stderr.contains("hostile-rpm:"), "{r}");
}

/// As root, a temp folder the sandbox's user cannot enter is refused, with
/// what to do: the sandbox is never run as root instead.
#[test]
fn as_root_a_private_temp_folder_is_refused() {
    if !(tools() && is_root()) {
        if !is_root() {
            eprintln!("SKIP: only root drops to uid {USER}");
        }
        return;
    }
    let w = World::new("private");
    let Some(prog) = w.program("escape") else {
        return;
    };
    let base = w.base("base", Some(&prog));
    let recipe = w.recipe();
    let private = w.dir().join("private");
    fs::create_dir_all(private.join("tmp")).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let args = w.build_args(&recipe, &base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, killed) = run_bounded(
        w.nodeimg(Who::Caller, &args, &[])
            .env("TMPDIR", private.join("tmp"))
            .env("HOME", &private),
        RUN_LIMIT,
    );
    let found = w.canaries();
    w.clear_canaries();
    assert!(found.is_empty(), "{found:?}\n{r}");
    assert!(!killed, "{r}");
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("cannot enter") && r.stderr.contains("set TMPDIR"),
        "{r}"
    );
    assert!(!r.stderr.contains("hostile-rpm:"), "{r}");
}
