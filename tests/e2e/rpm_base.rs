//! Which rpm registers a layer's rpm packages: the build host's on a copy of
//! a sqlite database (nothing else of the base read, no program of the
//! image run); the image's own rpm (chrooted in the image below the layer,
//! so the database keeps the format that rpm writes) when the build host
//! has none; the build host's when the image has none; and a clear error
//! when neither can run.
//!
//! The test base is built from the host's rpm and its libraries, its rpm
//! wrapped in a script that records each call in the rpm database folder
//! (which the layer takes back), so the output image shows which rpm ran.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nodeimg_e2e::{nodeimg, require, run, temp_dir, Run, TEST_EPOCH};

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &root),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        Server {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    let mut out = stream;
    if rel.split('/').any(|c| c == "..") || !file.is_file() {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut body = Vec::new();
    fs::File::open(&file)
        .unwrap()
        .read_to_end(&mut body)
        .unwrap();
    let _ = out.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = out.write_all(&body);
}

/// An unsigned repository with one noarch package `demo-1.0-1`, its file
/// dated at the build epoch (as nodeimg dates layer entries).
fn repository(dir: &Path) -> PathBuf {
    let spec = dir.join("demo.spec");
    fs::write(
        &spec,
        format!(
            "Name: demo\nVersion: 1.0\nRelease: 1\nSummary: demo\nLicense: MIT\nAutoReqProv: no\nBuildArch: noarch\n%description\ndemo\n%install\nmkdir -p %{{buildroot}}/usr/share/demo\nprintf 'hello\\n' > %{{buildroot}}/usr/share/demo/hello\nfind %{{buildroot}} -exec touch -h -d @{TEST_EPOCH} {{}} +\n%files\n/usr/share/demo/hello\n"
        ),
    )
    .unwrap();
    let top = dir.join("rpmbuild");
    run(Command::new("rpmbuild")
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", "_buildhost build.invalid"])
        .arg("-bb")
        .arg(&spec))
    .ok();
    let repo = dir.join("served/repo");
    fs::create_dir_all(repo.join("Packages")).unwrap();
    fs::copy(
        top.join("RPMS/noarch/demo-1.0-1.noarch.rpm"),
        repo.join("Packages/demo-1.0-1.noarch.rpm"),
    )
    .unwrap();
    run(Command::new("createrepo_c")
        .args(["--no-database", "--simple-md-filenames"])
        .arg(&repo))
    .ok();
    dir.join("served")
}

/// Copies `bins` and the libraries `ldd` names for them into `root`.
fn copy_with_libraries(root: &Path, bins: &[&str]) {
    let mut copies: Vec<PathBuf> = Vec::new();
    for bin in bins {
        let ldd = run(Command::new("ldd").arg(bin)).ok();
        copies.push(PathBuf::from(bin));
        for l in ldd.stdout.lines() {
            if let Some(p) = l.split_whitespace().find(|w| w.starts_with('/')) {
                copies.push(PathBuf::from(p));
            }
        }
    }
    copies.sort();
    copies.dedup();
    for c in copies {
        let canon = fs::canonicalize(&c).unwrap();
        let dst = root.join(c.strip_prefix("/").unwrap());
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(&canon, &dst).unwrap();
    }
}

/// What the test base holds besides accounts, os-release and an empty
/// (initialised) sqlite rpm database.
#[derive(Clone, Copy, PartialEq)]
enum Rpm {
    /// The host's rpm as `/usr/bin/rpm.real`, `/usr/bin/rpm` a shell
    /// script that appends its arguments to `/var/lib/rpm/calls` first.
    Wrapped,
    /// No rpm at all.
    Without,
}

fn make_base(dir: &Path, rpm: Rpm) -> PathBuf {
    let name = match rpm {
        Rpm::Wrapped => "wrapped",
        Rpm::Without => "without",
    };
    let root = dir.join(name);
    fs::create_dir_all(root.join("etc/rpm")).unwrap();
    fs::write(root.join("etc/rpm/macros"), "%_dbpath /var/lib/rpm\n").unwrap();
    fs::write(
        root.join("etc/os-release"),
        "NAME=\"Test EL\"\nID=\"testel\"\nVERSION_ID=\"9\"\n",
    )
    .unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    for d in ["tmp", "var/tmp", "var/lib/rpm", "usr/lib"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    copy_with_libraries(&root, &["/usr/bin/rpm", "/usr/bin/rpmdb", "/bin/sh"]);
    run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/rpm")
        .arg(root.join("usr/lib/")))
    .ok();
    run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(&root)
        .args(["/usr/bin/rpm", "--initdb"]))
    .ok();
    assert!(root.join("var/lib/rpm/rpmdb.sqlite").is_file());
    match rpm {
        Rpm::Wrapped => {
            fs::rename(root.join("usr/bin/rpm"), root.join("usr/bin/rpm.real")).unwrap();
            let w = root.join("usr/bin/rpm");
            fs::write(
                &w,
                "#!/bin/sh\necho \"$*\" >> /var/lib/rpm/calls\nexec /usr/bin/rpm.real \"$@\"\n",
            )
            .unwrap();
            fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Rpm::Without => {
            fs::remove_file(root.join("usr/bin/rpm")).unwrap();
        }
    }
    let tar = dir.join(format!("{name}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
        ])
        .arg(&tar)
        .arg("."))
    .ok();
    tar
}

fn recipe(dir: &Path, server: &Server) -> PathBuf {
    let p = dir.join("demo.toml");
    fs::write(
        &p,
        format!(
            r#"[image]
name = "rpm-base"

[[layer]]
name = "repo"

[[layer.yum-repo]]
name = "demo"
baseurl = "http://127.0.0.1:{}/repo"
gpgcheck = false

[[layer]]
name = "packages"
packages = ["demo"]
"#,
            server.port
        ),
    )
    .unwrap();
    p
}

/// Build `recipe` on `base` into `out`; with `path_env`, the `PATH` of
/// nodeimg, and a layer cache of its own (the installed packages a build
/// keeps do not say which rpm registered them).
fn build(dir: &Path, recipe: &Path, base: &Path, out: &Path, path_env: Option<&str>) -> Run {
    let mut c = nodeimg(dir);
    c.arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", "rootfs", "--base"])
        .arg(format!("rootfs:{}", base.display()))
        .arg("--cache-dir")
        .arg(dir.join(if path_env.is_some() {
            "cache-path"
        } else {
            "cache"
        }));
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    run(&mut c)
}

fn extract(tar: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--numeric-owner", "-xf"])
        .arg(tar))
    .ok();
}

fn rpm_q(root: &Path, args: &[&str]) -> Run {
    run(Command::new("rpm")
        .arg(format!("--root={}", root.display()))
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args))
}

fn tools() -> bool {
    require("rpmbuild", "rpm")
        && require("rpm", "rpm")
        && require("createrepo_c", "createrepo-c")
        && require("unshare", "util-linux")
        && require("chroot", "coreutils")
        && require("bwrap", "bubblewrap")
        && require("prlimit", "util-linux")
}

/// The image at `root` knows the demo package: `rpm -q` names it, `rpm -V`
/// finds its files as packaged, and its install time is the build's
/// `SOURCE_DATE_EPOCH`.
fn registered(root: &Path) {
    let q = rpm_q(root, &["-q", "demo"]).ok();
    assert_eq!(q.stdout.trim(), "demo-1.0-1.noarch");
    let v = rpm_q(root, &["-V", "demo"]);
    assert_eq!(v.code, 0, "{v}");
    assert_eq!(v.stdout, "", "{v}");
    let it = rpm_q(root, &["-q", "--qf", "%{INSTALLTIME}", "demo"]).ok();
    assert_eq!(it.stdout, TEST_EPOCH.to_string());
}

#[test]
fn which_rpm_registers_the_packages() {
    if !tools() {
        return;
    }
    let t = temp_dir("rpm-base");
    let dir = t.path();
    let server = Server::start(repository(dir));
    let recipe = recipe(dir, &server);

    // A sqlite database: the build host's rpm writes a copy of it; the
    // image's (wrapped) rpm does not run, the base is not materialised.
    let base = make_base(dir, Rpm::Wrapped);
    let out = dir.join("host-out.tar");
    let r = build(dir, &recipe, &base, &out, None);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("with the build host's rpm (rpm)"), "{r}");
    assert!(!r.stderr.contains("materialis"), "{r}");
    let root = dir.join("host-root");
    extract(&out, &root);
    assert!(!root.join("var/lib/rpm/calls").exists());
    registered(&root);

    // A build host without rpm (only the sandbox's tools): the base's own
    // (wrapped) rpm reads and writes the database, in the image below the
    // layer, materialised.
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["bwrap", "prlimit"] {
        std::os::unix::fs::symlink(nodeimg_e2e::find_tool(tool).unwrap(), bin.join(tool)).unwrap();
    }
    let no_rpm = Some(bin.to_str().unwrap());
    let out = dir.join("wrapped-out.tar");
    let r = build(dir, &recipe, &base, &out, no_rpm);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("with the image's rpm (/usr/bin/rpm)"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("materialised the image below layer \"packages\""),
        "{r}"
    );
    // The same image again: the database the image's rpm wrote is the same.
    let again = build(dir, &recipe, &base, &dir.join("wrapped-again.tar"), no_rpm);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(again.stdout, r.stdout);
    assert_eq!(
        fs::read(dir.join("wrapped-again.tar")).unwrap(),
        fs::read(&out).unwrap()
    );
    // How long materialising took (shown with --nocapture).
    for l in r.stderr.lines().filter(|l| l.contains("materialised")) {
        eprintln!("{l}");
    }
    let root = dir.join("wrapped-root");
    extract(&out, &root);
    let calls = fs::read_to_string(root.join("var/lib/rpm/calls")).unwrap();
    // Two calls: the query of what is installed, then the registration
    // (the query format's `\n` are expanded by the script's echo).
    assert_eq!(calls.matches("--dbpath /var/lib/rpm").count(), 2, "{calls}");
    assert!(
        calls.starts_with("--dbpath /var/lib/rpm -qa --qf "),
        "{calls}"
    );
    assert_eq!(
        calls.lines().last(),
        Some("--dbpath /var/lib/rpm -i --justdb --nodeps --noscripts --notriggers --nosignature --nodigest --ignorearch --ignoreos /.nodeimg-rpms/00000.rpm"),
        "{calls}"
    );
    registered(&root);

    // Without rpm in the image, the build host's rpm does it.
    let base = make_base(dir, Rpm::Without);
    let out = dir.join("without-out.tar");
    let r = build(dir, &recipe, &base, &out, None);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("with the build host's rpm (rpm)"), "{r}");
    assert!(!r.stderr.contains("materialis"), "{r}");
    let root = dir.join("without-root");
    extract(&out, &root);
    assert!(!root.join("var/lib/rpm/calls").exists());
    let q = rpm_q(&root, &["-q", "demo"]).ok();
    assert_eq!(q.stdout.trim(), "demo-1.0-1.noarch");

    // Neither: no rpm in the image and none on the build host (which has
    // the sandbox's tools).
    let out = dir.join("neither-out.tar");
    let r = build(dir, &recipe, &base, &out, no_rpm);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("rpm cannot be run on the build host"),
        "{r}"
    );
    assert!(r.stderr.contains("install rpm"), "{r}");
    assert!(!out.exists());
}
