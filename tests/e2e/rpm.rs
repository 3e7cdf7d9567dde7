//! Installing rpm packages from signed yum repositories generated here:
//! real `.rpm` files (`rpmbuild`), signed with a throwaway gpg key
//! (`rpmsign --addsign`), indexed by `createrepo_c`, `repomd.xml` signed
//! detached, served from 127.0.0.1 by a small HTTP server this test starts
//! and stops, and reached through `--mirror` from the recipes' real URLs.
//!
//! No CentOS mirror is reachable, so the test base is made here from the
//! build host's rpm: the `rpm` binary, its libraries and `/usr/lib/rpm`,
//! `%_dbpath /var/lib/rpm` in `/etc/rpm/macros`, and a database initialised
//! with two base packages (one providing `/bin/sh`, and an old `docker`
//! that a newer package obsoletes). The result is checked with rpm itself
//! (`rpm --root DIR --dbpath /var/lib/rpm -qa` and `-V`) and
//! `systemctl --root`.

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

use nodeimg_e2e::{nodeimg, require, run, temp_dir, workspace_root, Run, TEST_EPOCH};

/// A static file server on 127.0.0.1 for one test.
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

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

/// A fresh gpg home with one RSA signing key; returns (home, armored public key).
fn gpg_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let home = dir.join(format!("gnupg-{name}"));
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    run(Command::new("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(["--quick-gen-key", &format!("{name} <{name}@repo.invalid>")])
        .args(["rsa3072", "sign", "never"]))
    .ok();
    let export = run(Command::new("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--armor", "--export"]))
    .ok();
    assert!(export.stdout.contains("BEGIN PGP PUBLIC KEY BLOCK"));
    (home, export.stdout)
}

/// One package to build.
#[derive(Default)]
struct Spec<'a> {
    name: &'a str,
    epoch: Option<u32>,
    version: &'a str,
    release: &'a str,
    arch: &'a str,
    requires: &'a [&'a str],
    provides: &'a [&'a str],
    obsoletes: &'a [&'a str],
    /// (path, content, %files line prefix such as `%config(noreplace) %attr(0640,root,docker)`)
    files: &'a [(&'a str, &'a str, &'a str)],
    /// Extra shell for %install (links).
    install: &'a str,
    /// Extra %files lines.
    extra_files: &'a [&'a str],
    pre: &'a str,
    post: &'a str,
}

fn rpmbuild(dir: &Path, s: &Spec) -> PathBuf {
    let mut t = format!(
        "Name: {}\nVersion: {}\nRelease: {}\nSummary: {} test package\nLicense: Apache-2.0\nAutoReqProv: no\n",
        s.name, s.version, s.release, s.name
    );
    // Other architectures are cross builds (--target), noarch is declared.
    if s.arch == "noarch" {
        t.push_str("BuildArch: noarch\n");
    }
    if let Some(e) = s.epoch {
        t.push_str(&format!("Epoch: {e}\n"));
    }
    for r in s.requires {
        t.push_str(&format!("Requires: {r}\n"));
    }
    for p in s.provides {
        t.push_str(&format!("Provides: {p}\n"));
    }
    for o in s.obsoletes {
        t.push_str(&format!("Obsoletes: {o}\n"));
    }
    t.push_str("%description\ntest\n%install\n");
    for (path, content, _) in s.files {
        let p = format!("%{{buildroot}}{path}");
        let parent = Path::new(path).parent().unwrap().display().to_string();
        t.push_str(&format!("mkdir -p %{{buildroot}}{parent}\n"));
        let escaped = content.replace('\\', "\\\\").replace('\'', "'\\''");
        t.push_str(&format!("printf '%s' '{escaped}' > {p}\n"));
    }
    t.push_str(s.install);
    // Every file dated at the build epoch, as nodeimg dates the layer's
    // entries, so that `rpm -V` compares equal mtimes.
    t.push_str(&format!(
        "\nfind %{{buildroot}} -exec touch -h -d @{TEST_EPOCH} {{}} +\n"
    ));
    if !s.pre.is_empty() {
        t.push_str(&format!("%pre\n{}\n", s.pre));
    }
    if !s.post.is_empty() {
        t.push_str(&format!("%post\n{}\n", s.post));
    }
    t.push_str("%files\n");
    for (path, _, prefix) in s.files {
        t.push_str(&format!("{prefix} {path}\n"));
    }
    for l in s.extra_files {
        t.push_str(&format!("{l}\n"));
    }
    let spec = dir.join(format!("{}-{}-{}.spec", s.name, s.version, s.arch));
    fs::write(&spec, t).unwrap();
    let top = dir.join("rpmbuild");
    run(Command::new("rpmbuild")
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--define", "clamp_mtime_to_source_epoch 1"])
        .args(["--define", "use_source_date_epoch_as_buildtime 1"])
        .args(["--define", "_buildhost build.invalid"])
        .args(["--target", s.arch])
        .arg("-bb")
        .arg(&spec))
    .ok();
    let file = top.join(format!(
        "RPMS/{}/{}-{}-{}.{}.rpm",
        s.arch, s.name, s.version, s.release, s.arch
    ));
    assert!(file.is_file(), "{} not built", file.display());
    file
}

fn rpmsign(home: &Path, name: &str, files: &[PathBuf]) {
    run(Command::new("rpmsign")
        .env("GNUPGHOME", home)
        .arg("--define")
        .arg(format!("_gpg_name {name} <{name}@repo.invalid>"))
        .args(["--define", "__gpg /usr/bin/gpg"])
        .arg("--addsign")
        .args(files))
    .ok();
}

/// `createrepo_c` over `dir`, then `repomd.xml.asc` signed with `home`'s key.
fn createrepo(dir: &Path, home: &Path, compress: &str) {
    run(Command::new("createrepo_c")
        .args([
            "--no-database",
            "--simple-md-filenames",
            "--general-compress-type",
            compress,
        ])
        .arg(dir))
    .ok();
    let repomd = dir.join("repodata/repomd.xml");
    run(Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(["--digest-algo", "SHA256", "--detach-sign", "--armor", "-o"])
        .arg(dir.join("repodata/repomd.xml.asc"))
        .arg(&repomd))
    .ok();
}

fn copy_into(dir: &Path, rpms: &[PathBuf]) {
    fs::create_dir_all(dir.join("Packages")).unwrap();
    for r in rpms {
        fs::copy(r, dir.join("Packages").join(r.file_name().unwrap())).unwrap();
    }
}

const UNIT: &str = "[Unit]\nDescription=test\n[Service]\nExecStart=/usr/bin/true\n[Install]\nWantedBy=multi-user.target\n";

/// The Docker repository (`/docker/7/{x86_64,aarch64}/stable`) and the kubic
/// CRI-O repository (`/kubic/`), both signed by `home`'s key; and the base
/// packages (unsigned, not in any repository).
struct Fixtures {
    served: PathBuf,
    base_rpms: Vec<PathBuf>,
}

fn fixtures(dir: &Path, home: &Path) -> Fixtures {
    let b = dir.join("build");
    fs::create_dir_all(&b).unwrap();
    let docker_ce = rpmbuild(
        &b,
        &Spec {
            name: "docker-ce",
            epoch: Some(3),
            version: "19.03.11",
            release: "3.el7",
            arch: "x86_64",
            requires: &[
                "containerd.io >= 1.2.2-3",
                "docker-ce-cli",
                "/usr/sbin/container-selinux-check",
                "(iptables or nftables)",
                "/bin/sh",
            ],
            files: &[
                ("/usr/bin/dockerd", "dockerd\n", "%attr(0755,root,root)"),
                ("/usr/lib/systemd/system/docker.service", UNIT, ""),
            ],
            pre: "getent group docker >/dev/null || groupadd -r docker",
            post: "systemctl --no-reload preset docker.service >/dev/null 2>&1 || :",
            ..Default::default()
        },
    );
    let docker_ce_old = rpmbuild(
        &b,
        &Spec {
            name: "docker-ce",
            epoch: Some(3),
            version: "19.03.5",
            release: "3.el7",
            arch: "x86_64",
            files: &[("/usr/bin/dockerd", "dockerd old\n", "")],
            ..Default::default()
        },
    );
    let cli = rpmbuild(
        &b,
        &Spec {
            name: "docker-ce-cli",
            epoch: Some(1),
            version: "19.03.11",
            release: "3.el7",
            arch: "x86_64",
            files: &[("/usr/bin/docker", "docker\n", "%attr(0755,root,root)")],
            ..Default::default()
        },
    );
    let containerd = rpmbuild(
        &b,
        &Spec {
            name: "containerd.io",
            version: "1.2.13",
            release: "3.2.el7",
            arch: "x86_64",
            requires: &["container-selinux >= 2:2.74"],
            provides: &["containerd", "runc"],
            files: &[
                ("/usr/bin/containerd", "containerd\n", "%attr(0755,root,root)"),
                (
                    "/etc/containerd/config.toml",
                    "disabled_plugins = []\n",
                    "%config(noreplace) %attr(0640,root,docker)",
                ),
                ("/usr/lib/systemd/system/containerd.service", UNIT, ""),
            ],
            install: "ln %{buildroot}/usr/bin/containerd %{buildroot}/usr/bin/containerd-shim\nln -s containerd %{buildroot}/usr/bin/ctr",
            extra_files: &[
                "%attr(0755,root,root) /usr/bin/containerd-shim",
                "/usr/bin/ctr",
                "%dir /etc/containerd",
            ],
            ..Default::default()
        },
    );
    let containerd_arm = rpmbuild(
        &b,
        &Spec {
            name: "containerd.io",
            version: "1.2.13",
            release: "3.2.el7",
            arch: "aarch64",
            files: &[(
                "/usr/bin/containerd",
                "containerd arm64\n",
                "%attr(0755,root,root)",
            )],
            ..Default::default()
        },
    );
    let selinux = rpmbuild(
        &b,
        &Spec {
            name: "container-selinux",
            epoch: Some(2),
            version: "2.119.2",
            release: "1.911c772.el7_8",
            arch: "noarch",
            files: &[("/usr/sbin/container-selinux-check", "policy\n", "")],
            ..Default::default()
        },
    );
    let nft = rpmbuild(
        &b,
        &Spec {
            name: "nftables",
            version: "0.8",
            release: "14.el7",
            arch: "x86_64",
            files: &[("/usr/sbin/nft", "nft\n", "%attr(0755,root,root)")],
            ..Default::default()
        },
    );
    let moby = rpmbuild(
        &b,
        &Spec {
            name: "moby-engine",
            version: "20.10.0",
            release: "1",
            arch: "x86_64",
            obsoletes: &["docker < 1:2"],
            files: &[("/usr/bin/moby", "moby\n", "")],
            ..Default::default()
        },
    );
    let cri_o = rpmbuild(
        &b,
        &Spec {
            name: "cri-o",
            version: "1.24.6",
            release: "1.1",
            arch: "x86_64",
            requires: &["conmon >= 2.0"],
            files: &[
                ("/usr/bin/crio", "crio\n", "%attr(0755,root,root)"),
                ("/usr/lib/systemd/system/crio.service", UNIT, ""),
                (
                    "/etc/crio/crio.conf.d/00-default.conf",
                    "[crio]\n",
                    "%config(noreplace)",
                ),
            ],
            ..Default::default()
        },
    );
    let conmon = rpmbuild(
        &b,
        &Spec {
            name: "conmon",
            epoch: Some(2),
            version: "2.1.2",
            release: "1.1",
            arch: "x86_64",
            files: &[("/usr/bin/conmon", "conmon\n", "%attr(0755,root,root)")],
            ..Default::default()
        },
    );
    // Unsigned, for the gpgcheck attack.
    let unsigned = rpmbuild(
        &b,
        &Spec {
            name: "unsigned-tool",
            version: "1.0",
            release: "1",
            arch: "noarch",
            files: &[("/usr/share/unsigned-tool/x", "x\n", "")],
            ..Default::default()
        },
    );
    let base_files = rpmbuild(
        &b,
        &Spec {
            name: "centos-base",
            version: "7",
            release: "9.2009.0.el7",
            arch: "x86_64",
            files: &[("/bin/sh", "#!sh\n", "%attr(0755,root,root)")],
            ..Default::default()
        },
    );
    let old_docker = rpmbuild(
        &b,
        &Spec {
            name: "docker",
            epoch: Some(1),
            version: "1.13.1",
            release: "209.el7",
            arch: "x86_64",
            files: &[("/usr/share/doc/docker-old/README", "old\n", "")],
            ..Default::default()
        },
    );
    let signed = vec![
        docker_ce.clone(),
        docker_ce_old.clone(),
        cli.clone(),
        containerd.clone(),
        containerd_arm.clone(),
        selinux.clone(),
        nft.clone(),
        moby.clone(),
        cri_o.clone(),
        conmon.clone(),
    ];
    rpmsign(home, "repo", &signed);

    let served = dir.join("served");
    let x86 = served.join("docker/7/x86_64/stable");
    copy_into(
        &x86,
        &[
            docker_ce,
            docker_ce_old,
            cli,
            containerd,
            selinux.clone(),
            nft,
            moby,
            unsigned,
        ],
    );
    createrepo(&x86, home, "gz");
    let arm = served.join("docker/7/aarch64/stable");
    copy_into(&arm, &[containerd_arm, selinux]);
    createrepo(&arm, home, "xz");
    let kubic = served.join("kubic/CentOS_7");
    copy_into(&kubic, &[cri_o, conmon]);
    createrepo(&kubic, home, "gz");
    // The same packages for openSUSE and in the cri-o 1.24 stream.
    for other in ["kubic/openSUSE_Leap_15.2", "crio/CentOS_7"] {
        fs::create_dir_all(served.join(other).parent().unwrap()).unwrap();
        run(Command::new("cp")
            .arg("-a")
            .arg(&kubic)
            .arg(served.join(other)))
        .ok();
    }
    Fixtures {
        served,
        base_rpms: vec![base_files, old_docker],
    }
}

/// The test base: the host's rpm with its libraries and `/usr/lib/rpm`,
/// `%_dbpath /var/lib/rpm`, accounts, os-release, and a database holding
/// `base_rpms` (registered by that rpm, chrooted).
fn make_base(dir: &Path, base_rpms: &[PathBuf], with_old_docker: bool) -> PathBuf {
    let root = dir.join(if with_old_docker { "base-old" } else { "base" });
    fs::create_dir_all(root.join("etc/rpm")).unwrap();
    fs::write(root.join("etc/rpm/macros"), "%_dbpath /var/lib/rpm\n").unwrap();
    fs::write(
        root.join("etc/os-release"),
        "NAME=\"CentOS Linux\"\nID=\"centos\"\nVERSION_ID=\"7\"\n",
    )
    .unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    // rpm, and rpmdb (`rpm --initdb` runs it).
    let mut copies: Vec<PathBuf> = Vec::new();
    for bin in ["/usr/bin/rpm", "/usr/bin/rpmdb"] {
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
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/rpm")
        .arg(root.join("usr/lib/")))
    .ok();
    fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    let pkgs = root.join("tmp/pkgs");
    fs::create_dir_all(&pkgs).unwrap();
    let mut names = Vec::new();
    for (i, r) in base_rpms.iter().enumerate() {
        if i == 1 && !with_old_docker {
            continue;
        }
        let n = r.file_name().unwrap().to_string_lossy().into_owned();
        fs::copy(r, pkgs.join(&n)).unwrap();
        names.push(format!("/tmp/pkgs/{n}"));
    }
    run(Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/rpm", "--initdb"]))
    .ok();
    run(Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/bin/rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--nosignature",
        ])
        .args(&names))
    .ok();
    fs::remove_dir_all(&pkgs).unwrap();
    let tar = dir.join(format!(
        "{}.tar",
        root.file_name().unwrap().to_string_lossy()
    ));
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

fn rpm_q(root: &Path, args: &[&str]) -> Run {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args))
}

/// Unpacks a rootfs tar keeping numeric owners (the test runs as root;
/// otherwise owners fall back to the caller and `rpm -V` would report them).
fn extract_owned(tar: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--numeric-owner", "-xpf"])
        .arg(tar))
    .ok();
}

/// The image's own rpm chrooted into `root` (in a user namespace unless
/// the test runs as root: a namespace mapping only root would show the
/// files of other owners as the overflow id).
fn own_rpm(root: &Path, args: &[&str]) -> Run {
    let uid = run(Command::new("id").arg("-u")).ok();
    let mut c = if uid.stdout.trim() == "0" {
        Command::new("chroot")
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user", "chroot"]);
        c
    };
    run(c.arg(root).arg("/usr/bin/rpm").args(args))
}

fn build(
    dir: &Path,
    recipe: &Path,
    base: &Path,
    server: &Server,
    cache: &Path,
    out: &Path,
    arch: Option<&str>,
) -> Run {
    let mut c = nodeimg(dir);
    c.arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(["--format", "rootfs", "--base"])
        .arg(format!("rootfs:{}", base.display()))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--mirror")
        .arg(format!("https://download.docker.com/linux/centos={}/docker", server.url()))
        .arg("--mirror")
        .arg(format!(
            "https://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable={}/kubic",
            server.url()
        ))
        .arg("--mirror")
        .arg(format!(
            "https://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable:/cri-o:/1.24={}/crio",
            server.url()
        ));
    if let Some(a) = arch {
        c.args(["--var", &format!("arch={a}")]);
    }
    run(&mut c)
}

fn tools() -> bool {
    require("rpmbuild", "rpm")
        && require("rpmsign", "rpm")
        && require("rpm", "rpm")
        && require("createrepo_c", "createrepo-c")
        && require("gpg", "gnupg")
        && require("systemctl", "systemd")
        && require("unshare", "util-linux")
}

/// A recipe with one yum repository (the Docker test repository) and one
/// packages layer.
fn small_recipe(dir: &Path, name: &str, packages: &str, key: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[image]
name = "rpm-{name}"

[[layer]]
name = "repo"

[[layer.yum-repo]]
name = "docker-ce-stable"
baseurl = "https://download.docker.com/linux/centos/$releasever/$basearch/stable"
gpgkey = "{key}"
repo-gpgcheck = true
{extra}

[[layer]]
name = "packages"
packages = [{packages}]
"#
    );
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn installs_rpm_packages_and_refuses_attacks() {
    if !tools() {
        return;
    }
    let t = temp_dir("rpm");
    let dir = t.path();
    let (home, key) = gpg_key(dir, "repo");
    let (other_home, other_key) = gpg_key(dir, "other");
    fs::write(dir.join("key.asc"), &key).unwrap();
    fs::write(dir.join("other.asc"), &other_key).unwrap();
    let fx = fixtures(dir, &home);
    // The recipes name Docker's real key URL: the test serves its own key there.
    fs::write(fx.served.join("docker/gpg"), &key).unwrap();
    let base = make_base(dir, &fx.base_rpms, false);
    let base_old = make_base(dir, &fx.base_rpms, true);
    let server = Server::start(fx.served.clone());
    let cache = dir.join("cache");

    // The recipes as written in the repository, with the kubic key file
    // replaced by the test key (the test repositories are signed with it).
    let recipes = dir.join("recipes");
    run(Command::new("cp")
        .arg("-a")
        .arg(workspace_root().join("recipes"))
        .arg(&recipes))
    .ok();
    fs::write(recipes.join("keys/kubic-libcontainers.asc"), &key).unwrap();
    let recipe = recipes.join("docker-centos.toml");
    let out = dir.join("docker.tar");
    let r = build(dir, &recipe, &base, &server, &cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("not run docker-ce-3:19.03.11-3.el7.x86_64: %post"),
        "{r}"
    );
    assert!(
        r.stderr.contains("systemd preset/enable of docker.service"),
        "{r}"
    );
    let root = dir.join("docker-root");
    extract_owned(&out, &root);
    let qa = rpm_q(&root, &["-qa", "--qf", "%{NEVRA}\\n"]).ok();
    let mut listed: Vec<&str> = qa.stdout.lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "centos-base-7-9.2009.0.el7.x86_64",
            "container-selinux-2:2.119.2-1.911c772.el7_8.noarch",
            "containerd.io-1.2.13-3.2.el7.x86_64",
            "docker-ce-3:19.03.11-3.el7.x86_64",
            "docker-ce-cli-1:19.03.11-3.el7.x86_64",
            "nftables-0.8-14.el7.x86_64",
        ],
        "{qa}"
    );
    // The image's own rpm, chrooted in a user namespace, verifies the files
    // (owners by the image's own /etc/passwd and /etc/group).
    let v = own_rpm(
        &root,
        &[
            "-V",
            "docker-ce",
            "containerd.io",
            "docker-ce-cli",
            "container-selinux",
            "nftables",
        ],
    );
    assert_eq!((v.code, v.stdout.as_str()), (0, ""), "{v}");
    // %config is recorded; the docker group the %pre creates owns the config.
    let c = rpm_q(&root, &["-qc", "containerd.io"]).ok();
    assert_eq!(c.stdout.trim(), "/etc/containerd/config.toml");
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("docker:x:999:"), "{group}");
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(root.join("etc/containerd/config.toml")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o640, 999));
    let hard = fs::metadata(root.join("usr/bin/containerd-shim")).unwrap();
    assert_eq!(
        hard.ino(),
        fs::metadata(root.join("usr/bin/containerd")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(root.join("usr/bin/ctr")).unwrap(),
        Path::new("containerd")
    );
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "docker.service"]));
    assert_eq!(e.stdout.trim(), "enabled", "{e}");
    // The image's own rpm reads the database.
    let own = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(&root)
        .args(["/usr/bin/rpm", "-q", "docker-ce"]));
    assert_eq!(
        own.stdout.trim(),
        "docker-ce-19.03.11-3.el7.x86_64",
        "{own}"
    );

    // A second build from the warm cache gives the same files.
    let out2 = dir.join("docker2.tar");
    let r2 = build(dir, &recipe, &base, &server, &cache, &out2, None);
    assert_eq!(r2.code, 0, "{r2}");
    // ... and the same bytes: the rpm database records the build's epoch.
    assert_eq!(
        nodeimg_e2e::sha256_file(&out),
        nodeimg_e2e::sha256_file(&out2),
        "the same recipe built twice gave another rootfs"
    );

    // The CRI-O recipes: the kubic repository, zypper and yum.
    for name in ["crio-opensuse", "crio-centos"] {
        let recipe = recipes.join(format!("{name}.toml"));
        let out = dir.join(format!("{name}.tar"));
        let r = build(dir, &recipe, &base, &server, &cache, &out, None);
        assert_eq!(r.code, 0, "{name}: {r}");
        let root = dir.join(format!("{name}-root"));
        extract_owned(&out, &root);
        let q = rpm_q(&root, &["-q", "cri-o", "conmon"]).ok();
        assert_eq!(
            q.stdout, "cri-o-1.24.6-1.1.x86_64\nconmon-2.1.2-1.1.x86_64\n",
            "{q}"
        );
        let v = own_rpm(&root, &["-V", "cri-o", "conmon"]);
        assert_eq!((v.code, v.stdout.as_str()), (0, ""), "{v}");
        let e = run(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["is-enabled", "crio.service"]));
        assert_eq!(e.stdout.trim(), "enabled", "{name}: {e}");
    }

    // containerd on CentOS.
    let recipe = recipes.join("containerd-centos.toml");
    let out = dir.join("containerd.tar");
    let r = build(dir, &recipe, &base, &server, &cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("containerd-root");
    extract_owned(&out, &root);
    let q = rpm_q(&root, &["-q", "containerd.io"]).ok();
    assert_eq!(q.stdout.trim(), "containerd.io-1.2.13-3.2.el7.x86_64");
    let e = run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "containerd.service"]));
    assert_eq!(e.stdout.trim(), "enabled", "{e}");
    // The containerd item's config.toml replaces the package's %config file,
    // which rpm -V reports as changed (size, mode and digest) and nothing else.
    let v = own_rpm(&root, &["-V", "containerd.io"]);
    assert_eq!(
        v.stdout, "SM5......  c /etc/containerd/config.toml\n",
        "{v}"
    );

    // A pin that does not exist lists the versions that do.
    let key_rel = "key.asc";
    let p = small_recipe(dir, "missing-pin", "\"docker-ce-18.09.1\"", key_rel, "");
    let r = build(dir, &p, &base, &server, &cache, &dir.join("x.tar"), None);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("docker-ce 18.09.1 is not in the image's rpm repositories for x86_64; available: 3:19.03.5-3.el7, 3:19.03.11-3.el7"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());

    // An obsoleted package in the base is named with the package that obsoletes it.
    let p = small_recipe(dir, "obsoletes", "\"moby-engine\"", key_rel, "");
    let r = build(
        dir,
        &p,
        &base_old,
        &server,
        &cache,
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("moby-engine-20.10.0-1.x86_64 obsoletes docker-1:1.13.1-209.el7.x86_64"),
        "{r}"
    );

    // An unsigned package with gpgcheck.
    let p = small_recipe(dir, "unsigned", "\"unsigned-tool\"", key_rel, "");
    let r = build(dir, &p, &base, &server, &cache, &dir.join("x.tar"), None);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("unsigned-tool-1.0-1.noarch.rpm: the package is not signed"),
        "{r}"
    );

    // repomd.xml signed by another key than the recipe names.
    let p = small_recipe(dir, "other-key", "\"nftables\"", "other.asc", "");
    let r = build(dir, &p, &base, &server, &cache, &dir.join("x.tar"), None);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/repodata/repomd.xml: signed by")
            && r.stderr
                .contains("not by a key of keyring gpgkey of [docker-ce-stable]"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());
    let _ = other_home;

    // A tampered primary.xml (re-signed repomd, so only the checksum catches it).
    let x86 = fx.served.join("docker/7/x86_64/stable");
    let primary = x86.join("repodata/primary.xml.gz");
    let saved = fs::read(&primary).unwrap();
    let mut bad = saved.clone();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    fs::write(&primary, &bad).unwrap();
    let r = build(
        dir,
        &p.with_file_name("missing-pin.toml"),
        &base,
        &server,
        &dir.join("cache-2"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("primary.xml.gz: SHA256 is"), "{r}");
    assert!(!dir.join("x.tar").exists());
    fs::write(&primary, &saved).unwrap();

    // A tampered package (same size, another byte), fresh cache.
    let pkg = x86.join("Packages/nftables-0.8-14.el7.x86_64.rpm");
    let saved = fs::read(&pkg).unwrap();
    let mut bad = saved.clone();
    let n = bad.len();
    bad[n - 5] ^= 0xff;
    fs::write(&pkg, &bad).unwrap();
    let p = small_recipe(dir, "tampered", "\"nftables\"", key_rel, "");
    let r = build(
        dir,
        &p,
        &base,
        &server,
        &dir.join("cache-3"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("nftables-0.8-14.el7.x86_64.rpm: SHA256 is"),
        "{r}"
    );
    fs::write(&pkg, &saved).unwrap();

    // A bad repomd.xml signature with repo_gpgcheck.
    let asc = x86.join("repodata/repomd.xml.asc");
    let saved = fs::read(&asc).unwrap();
    let repomd = x86.join("repodata/repomd.xml");
    let saved_repomd = fs::read(&repomd).unwrap();
    let mut text = String::from_utf8(saved_repomd.clone()).unwrap();
    text = text.replacen("<revision>", "<revision>1", 1);
    fs::write(&repomd, text).unwrap();
    let r = build(
        dir,
        &p,
        &base,
        &server,
        &dir.join("cache-4"),
        &dir.join("x.tar"),
        None,
    );
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("/repodata/repomd.xml: the signature by")
            && r.stderr.contains("does not verify"),
        "{r}"
    );
    assert!(!dir.join("x.tar").exists());
    fs::write(&repomd, saved_repomd).unwrap();
    fs::write(&asc, saved).unwrap();

    // The aarch64 build picks the aarch64 package and the noarch one.
    let p = small_recipe(dir, "arm", "\"containerd.io-1.2.13\"", key_rel, "");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace("[image]\n", "[image]\narchitecture = \"arm64\"\n");
    fs::write(&p, text).unwrap();
    let out = dir.join("arm.tar");
    let r = build(dir, &p, &base, &server, &cache, &out, None);
    assert_eq!(r.code, 0, "{r}");
    let root = dir.join("arm-root");
    extract_owned(&out, &root);
    let q = rpm_q(&root, &["-qa", "--qf", "%{NEVRA}\\n"]).ok();
    assert!(
        q.stdout.contains("containerd.io-1.2.13-3.2.el7.aarch64"),
        "{q}"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/containerd")).unwrap(),
        "containerd arm64\n"
    );
    drop(server);
}
