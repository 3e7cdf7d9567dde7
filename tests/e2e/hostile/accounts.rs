//! Hostile inputs: accounts that maintainer scripts and rpm scriptlets ask
//! for. nodeimg never runs the scripts; it reads their `adduser`,
//! `addgroup`, `useradd` and `groupadd` calls and adds the accounts itself,
//! so a package must not be able to smuggle a line into `/etc/passwd`
//! (newline in the GECOS field, a ':' in the home directory, control
//! characters in the name), make an account with uid or gid 0, take an id
//! that another account has, nor make the base's accounts vanish (a large
//! `/etc/passwd`). The shadow files get locked entries for the new users.
//!
//! Each refused case exits 1, names the package, the script and its line,
//! and leaves no output; a clean twin package builds with the expected
//! lines.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nodeimg_e2e::repo::{self, RepoServer, TestDeb};
use nodeimg_e2e::rpmrepo::{copy_into, createrepo, rpmbuild, Spec};
use nodeimg_e2e::{nodeimg, require, run, temp_dir, Run};

/// The apt repository URL the recipes name, mirrored to the test server.
const APT_URL: &str = "http://apt.accounts.invalid/debian";
/// The yum repository URL the recipes name, mirrored to the test server.
const YUM_URL: &str = "https://yum.accounts.invalid/el9";

const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const BASE_GROUP: &str = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n";
const BASE_SHADOW: &str = "root:*:19000:0:99999:7:::\n\
daemon:*:19000:0:99999:7:::\n\
nobody:*:19000:0:99999:7:::\n";
const BASE_GSHADOW: &str = "root:*::\ndaemon:*::\nshadow:*::\nnogroup:*::\n";

/// The clean twin's postinst: what a real package does (line 4).
const CLEAN_POSTINST: &str = "#!/bin/sh\nset -e\nif ! getent passwd clean >/dev/null; then\n    adduser --system --group --home /var/lib/clean --no-create-home --gecos 'Clean daemon' clean\nfi\n";
/// The line the clean twin adds to `/etc/passwd` (first free ids from 100).
const CLEAN_PASSWD_LINE: &str = "clean:x:100:100:Clean daemon:/var/lib/clean:/usr/sbin/nologin\n";

/// The hostile packages: (name, postinst, words the refusal must hold).
/// Each call is on line 3 of its script.
const ATTACKS: &[(&str, &str, &[&str])] = &[
    (
        "acct-gecos",
        "#!/bin/sh\nset -e\nadduser --system --no-create-home --gecos 'x\npwn::0:0::/root:/bin/sh' evil\n",
        &["system user: the GECOS field", "control character '\\n'"],
    ),
    (
        "acct-uid0",
        "#!/bin/sh\nset -e\nadduser --system --uid 0 --no-create-home toor\n",
        &["user \"toor\" asks for uid 0, root's"],
    ),
    (
        "acct-home",
        "#!/bin/sh\nset -e\nadduser --system --home '/root:/bin/bash' --no-create-home evilhome\n",
        &["system user: the home directory \"/root:/bin/bash\" holds a ':'"],
    ),
    (
        "acct-ctrl",
        "#!/bin/sh\nset -e\nadduser --system --no-create-home 'evil\u{1b}[8mname'\n",
        &["system user: the name", "holds '\\u{1b}'"],
    ),
    (
        "acct-uid-used",
        "#!/bin/sh\nset -e\nadduser --system --uid 1 --no-create-home usurper\n",
        &["user \"usurper\" asks for uid 1, which the user \"daemon\" of /etc/passwd already has"],
    ),
    (
        "acct-gid-used",
        "#!/bin/sh\nset -e\naddgroup --system --gid 42 notshadow\n",
        &["group \"notshadow\" asks for gid 42, which the group \"shadow\" of /etc/group already has"],
    ),
    (
        "acct-gid0",
        "#!/bin/sh\nset -e\naddgroup --system --gid 0 wheel0\n",
        &["group \"wheel0\" asks for gid 0, root's"],
    ),
];

fn deb_tools() -> bool {
    require("dpkg-deb", "dpkg") && require("dpkg-scanpackages", "dpkg-dev") && require("gpg", "gpg")
}

/// The flat apt repository of the test packages, signed (`Release.gpg`),
/// and the key file recipes name; generated once per test process.
struct DebRepo {
    repo: PathBuf,
    key: PathBuf,
}

fn deb_repo() -> &'static DebRepo {
    static REPO: OnceLock<DebRepo> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = repo::repos_dir().join("accounts-deb");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let home = dir.join("gnupg");
        let key = repo::gpg_key(&home, "accounts");
        fs::write(dir.join("key.asc"), key).expect("write key");
        let flat = dir.join("flat");
        let mut debs: Vec<(&'static str, &str)> = vec![("acct-clean", CLEAN_POSTINST)];
        debs.extend(ATTACKS.iter().map(|(n, s, _)| (*n, *s)));
        for (name, postinst) in debs {
            TestDeb {
                compression: "gzip",
                ..repo::deb(
                    name,
                    "1.0",
                    "all",
                    "",
                    &[
                        (&format!("/usr/share/doc/{name}/README"), "test\n"),
                        ("/DEBIAN/postinst", postinst),
                    ],
                    &[],
                )
            }
            .build(&dir.join("src"), &flat);
        }
        let scan = run(std::process::Command::new("dpkg-scanpackages")
            .current_dir(&flat)
            .args(["--multiversion", "."]))
        .ok();
        fs::write(flat.join("Packages"), &scan.stdout).expect("write Packages");
        let sum = nodeimg_e2e::sha256_file(&flat.join("Packages"));
        fs::write(
            flat.join("Release"),
            format!(
                "Origin: Accounts\nDate: Sat, 01 Jan 2022 00:00:00 UTC\nArchitectures: amd64 all\nSHA256:\n {} {} Packages\n",
                sum.trim_start_matches("sha256:"),
                scan.stdout.len()
            ),
        )
        .expect("write Release");
        repo::gpg_sign(
            &home,
            &["--detach-sign", "--armor"],
            &flat.join("Release.gpg"),
            &flat.join("Release"),
        );
        let _ = run(std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(&home)
            .args(["--kill", "gpg-agent"]));
        DebRepo {
            repo: flat,
            key: dir.join("key.asc"),
        }
    })
}

/// One file of a generated base: path, content, mode, uid, gid.
struct BaseFile<'a> {
    path: &'a str,
    content: Box<dyn Read + 'a>,
    size: u64,
    mode: u32,
    gid: u64,
    /// A hard link to this path instead of a file.
    link: Option<&'a str>,
}

fn file<'a>(path: &'a str, content: &'a [u8]) -> BaseFile<'a> {
    BaseFile {
        path,
        content: Box::new(content),
        size: content.len() as u64,
        mode: 0o644,
        gid: 0,
        link: None,
    }
}

/// A rootfs tar `dir/name.tar`: `empty_dirs` and the directories the files
/// need, then the files, with their modes and owners, dated at 0.
fn base_tar(dir: &Path, name: &str, empty_dirs: &[&str], files: Vec<BaseFile<'_>>) -> PathBuf {
    let tar = dir.join(format!("{name}.tar"));
    let mut b = tar::Builder::new(fs::File::create(&tar).expect("create base tar"));
    let mut dirs = std::collections::BTreeSet::new();
    let placeholders: Vec<String> = empty_dirs.iter().map(|d| format!("{d}/x")).collect();
    for path in files
        .iter()
        .map(|f| f.path)
        .chain(placeholders.iter().map(String::as_str))
    {
        let mut p = Path::new(path.trim_start_matches('/'));
        while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.to_path_buf());
            p = parent;
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, &d, std::io::empty())
            .expect("append dir");
    }
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(f.mode);
        h.set_uid(0);
        h.set_gid(f.gid);
        h.set_mtime(0);
        let path = f.path.trim_start_matches('/');
        if let Some(target) = f.link {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            b.append_link(&mut h, path, target.trim_start_matches('/'))
                .expect("append hard link");
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(f.size);
            b.append_data(&mut h, path, f.content).expect("append file");
        }
    }
    b.finish().expect("finish base tar");
    tar
}

/// The files every Debian test base has, `passwd` aside.
fn debian_files<'a>() -> Vec<BaseFile<'a>> {
    vec![
        file(
            "/etc/os-release",
            b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        ),
        file("/etc/group", BASE_GROUP.as_bytes()),
        file("/var/lib/dpkg/status", b""),
        file("/var/lib/dpkg/info/format", b"1\n"),
    ]
}

/// A regular file of an output rootfs: bytes, mode, uid, gid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutFile {
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl OutFile {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Every regular file of a rootfs tar, whatever its size.
fn rootfs_files(tar: &Path) -> BTreeMap<String, OutFile> {
    let mut ar = tar::Archive::new(fs::File::open(tar).expect("open output"));
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = nodeimg_e2e::image_path(&String::from_utf8_lossy(&e.path_bytes()));
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read member");
        out.insert(
            path,
            OutFile {
                data,
                mode: h.mode().unwrap_or(0) & 0o7777,
                uid: h.uid().unwrap_or(u64::MAX),
                gid: h.gid().unwrap_or(u64::MAX),
            },
        );
    }
    out
}

/// `nodeimg build RECIPE -o dir/<label>.tar --format rootfs` on the rootfs
/// `base`, with the download cache `dir/cache-<label>` and the repository
/// URL `from` mirrored to `server`.
fn build_rootfs(
    dir: &Path,
    recipe: &Path,
    base: &Path,
    label: &str,
    from: &str,
    server: &RepoServer,
) -> Run {
    run(nodeimg(dir)
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(dir.join(format!("{label}.tar")))
        .args(["--format", "rootfs"])
        .arg("--base")
        .arg(format!("rootfs:{}", base.display()))
        .arg("--cache-dir")
        .arg(dir.join(format!("cache-{label}")))
        .arg("--mirror")
        .arg(format!("{from}={}", server.url())))
}

/// Builds `package` from the test apt repository (served on 127.0.0.1) on
/// `base` into `dir/<label>.tar`; returns the run and the output path.
fn build_deb(dir: &Path, base: &Path, package: &str, label: &str) -> (Run, PathBuf) {
    let r = deb_repo();
    let server = RepoServer::start(&r.repo);
    let recipe = dir.join(format!("{label}.toml"));
    fs::copy(&r.key, dir.join("key.asc")).expect("copy key");
    fs::write(
        &recipe,
        format!(
            r#"[image]
name = "accounts"

[[layer]]
name = "pkgs"
apt-source = [{{ name = "acct", uris = ["{APT_URL}"], suites = ["./"], key = "key.asc" }}]
packages = ["{package}"]
"#
        ),
    )
    .expect("write recipe");
    let out = dir.join(format!("{label}.tar"));
    let run = build_rootfs(dir, &recipe, base, label, APT_URL, &server);
    drop(server);
    (run, out)
}

/// A refused build: exit 1, the message names the package, the script and
/// the line, and holds `words`; no output.
fn assert_refused(r: &Run, out: &Path, prefix: &str, words: &[&str]) {
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains(prefix), "missing {prefix:?}: {r}");
    for w in words {
        assert!(r.stderr.contains(w), "missing {w:?}: {r}");
    }
    assert!(!out.exists(), "{} was written: {r}", out.display());
}

#[test]
fn hostile_accounts_from_postinst_are_refused_and_the_clean_twin_is_added() {
    if !deb_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-deb");
    let dir = t.path();
    let mut files = debian_files();
    files.push(file("/etc/passwd", BASE_PASSWD.as_bytes()));
    let base = base_tar(dir, "base", &[], files);

    // The clean twin: added with the first free system ids; no shadow files
    // are made for a base without them.
    let (r, out) = build_deb(dir, &base, "acct-clean", "clean");
    assert_eq!(r.code, 0, "{r}");
    let f = rootfs_files(&out);
    assert_eq!(
        f["/etc/passwd"].text(),
        format!("{BASE_PASSWD}{CLEAN_PASSWD_LINE}")
    );
    assert_eq!(
        f["/etc/group"].text(),
        format!("{BASE_GROUP}clean:x:100:\n")
    );
    assert!(!f.contains_key("/etc/shadow") && !f.contains_key("/etc/gshadow"));

    let mut failed = Vec::new();
    for (name, _, words) in ATTACKS {
        let (r, out) = build_deb(dir, &base, name, name);
        let prefix = format!("package {name}=1.0: postinst line 3: ");
        if std::panic::catch_unwind(|| assert_refused(&r, &out, &prefix, words)).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "not refused as they must be: {failed:?}");
}

#[test]
fn new_users_get_locked_shadow_entries_and_the_files_keep_their_owner() {
    if !deb_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-shadow");
    let dir = t.path();
    let mut files = debian_files();
    files.push(file("/etc/passwd", BASE_PASSWD.as_bytes()));
    for (path, text) in [("/etc/shadow", BASE_SHADOW), ("/etc/gshadow", BASE_GSHADOW)] {
        files.push(BaseFile {
            mode: 0o640,
            gid: 42,
            ..file(path, text.as_bytes())
        });
    }
    let base = base_tar(dir, "base-shadow", &[], files);
    let (r, out) = build_deb(dir, &base, "acct-clean", "clean-shadow");
    assert_eq!(r.code, 0, "{r}");
    let f = rootfs_files(&out);
    assert_eq!(
        f["/etc/passwd"].text(),
        format!("{BASE_PASSWD}{CLEAN_PASSWD_LINE}")
    );
    let owned = |data: String| OutFile {
        data: data.into_bytes(),
        mode: 0o640,
        uid: 0,
        gid: 42,
    };
    assert_eq!(
        f["/etc/shadow"],
        owned(format!("{BASE_SHADOW}clean:!:::::::\n")),
        "{}",
        f["/etc/shadow"].text()
    );
    assert_eq!(
        f["/etc/gshadow"],
        owned(format!("{BASE_GSHADOW}clean:!::\n")),
        "{}",
        f["/etc/gshadow"].text()
    );
}

#[test]
fn a_large_passwd_keeps_every_base_account() {
    if !deb_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-large");
    let dir = t.path();
    let mut passwd = BASE_PASSWD.to_string();
    for i in 0..24_000u32 {
        let id = 10_000 + i;
        passwd.push_str(&format!(
            "u{i:05}:x:{id}:{id}:generated account {i}:/home/u{i:05}:/bin/sh\n"
        ));
    }
    assert!(passwd.len() > 1 << 20, "{}", passwd.len());
    let mut files = debian_files();
    files.push(file("/etc/passwd", passwd.as_bytes()));
    let base = base_tar(dir, "base-large", &[], files);
    let (r, out) = build_deb(dir, &base, "acct-clean", "large");
    assert_eq!(r.code, 0, "{r}");
    let got = rootfs_files(&out)["/etc/passwd"].text();
    assert_eq!(got.lines().count(), 3 + 24_000 + 1);
    assert!(
        got == format!("{passwd}{CLEAN_PASSWD_LINE}"),
        "the output passwd ({} bytes, starting {:?}) is not the base's plus the new user",
        got.len(),
        &got[..got.len().min(200)]
    );
}

#[test]
fn a_passwd_over_the_hard_bound_is_an_error_naming_it() {
    if !deb_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-huge");
    let dir = t.path();
    let size: u64 = (64 << 20) + 1;
    let head = BASE_PASSWD.as_bytes();
    let mut files = debian_files();
    files.push(BaseFile {
        path: "/etc/passwd",
        content: Box::new(head.chain(std::io::repeat(b'#').take(size - head.len() as u64))),
        size,
        mode: 0o644,
        gid: 0,
        link: None,
    });
    let base = base_tar(dir, "base-huge", &[], files);
    let (r, out) = build_deb(dir, &base, "acct-clean", "huge");
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains(&format!(
            "/etc/passwd in the image: is {size} bytes, more than the {} bytes",
            64 << 20
        )),
        "{r}"
    );
    assert!(!out.exists());
    let _ = fs::remove_file(&base);
}

#[test]
fn a_passwd_whose_bytes_are_not_available_is_an_error_not_an_empty_file() {
    if !deb_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-link");
    let dir = t.path();
    // /etc/passwd is a hard link to a file whose bytes the base index does
    // not keep: listed, no content.
    let mut files = debian_files();
    files.push(file("/srv/accounts/passwd.master", BASE_PASSWD.as_bytes()));
    files.push(BaseFile {
        link: Some("/srv/accounts/passwd.master"),
        ..file("/etc/passwd", b"")
    });
    let base = base_tar(dir, "base-link", &[], files);
    let (r, out) = build_deb(dir, &base, "acct-clean", "link");
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains(&format!(
            "/etc/passwd in the image: the image lists it ({} bytes) but its content cannot be read",
            BASE_PASSWD.len()
        )),
        "{r}"
    );
    assert!(!out.exists());
}

fn rpm_tools() -> bool {
    require("rpmbuild", "rpm")
        && require("rpm", "rpm")
        && require("createrepo_c", "createrepo-c")
        && require("gpg", "gnupg")
        && require("unshare", "util-linux")
}

/// A rootfs without an rpm database: root's accounts and an EL9 os-release.
fn rpm_base(dir: &Path) -> PathBuf {
    base_tar(
        dir,
        "base-rpm",
        &["/var/lib/rpm"],
        vec![
            file("/etc/os-release", b"ID=\"rocky\"\nVERSION_ID=\"9\"\n"),
            file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            file("/etc/group", b"root:x:0:\n"),
        ],
    )
}

/// Serves the rpm packages of `cases` ((name, %pre, ...)) and the
/// scriptlets' interpreter from a signed repository under `dir/served`.
fn serve_rpm_cases(dir: &Path, cases: &[(&str, &str, &[&str])]) -> RepoServer {
    let home = dir.join("gnupg");
    let key = repo::gpg_key(&home, "accounts");
    let served = dir.join("served");
    let b = dir.join("build");
    fs::create_dir_all(&b).expect("mkdir");
    let mut rpms = Vec::new();
    for (name, pre, _) in cases {
        let doc = format!("/usr/share/doc/{name}/README");
        rpms.push(rpmbuild(
            &b,
            &Spec {
                name,
                version: "1.0",
                release: "1.el9",
                arch: "noarch",
                files: &[(&doc, "test\n", "")],
                pre,
                ..Spec::default()
            },
        ));
    }
    // The scriptlets' interpreter.
    rpms.push(rpmbuild(
        &b,
        &Spec {
            name: "acct-shell",
            version: "1.0",
            release: "1.el9",
            arch: "noarch",
            files: &[("/bin/sh", "#!sh\n", "%attr(0755,root,root)")],
            ..Spec::default()
        },
    ));
    let repo_dir = served.join("x86_64");
    copy_into(&repo_dir, &rpms);
    createrepo(&repo_dir, &home, "gz");
    fs::write(served.join("gpg"), &key).expect("write key");
    let _ = run(std::process::Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"]));
    RepoServer::start(&served)
}

/// Builds the rootfs of a recipe installing package `name` from `server` on
/// `base`: the run and the output.
fn build_rpm_case(dir: &Path, base: &Path, server: &RepoServer, name: &str) -> (Run, PathBuf) {
    let recipe = dir.join(format!("{name}.toml"));
    fs::write(
        &recipe,
        format!(
            r#"[image]
name = "accounts-rpm"

[[layer]]
name = "repo"

[[layer.yum-repo]]
name = "acct"
baseurl = "{YUM_URL}/x86_64"
gpgkey = "{YUM_URL}/gpg"
gpgcheck = false
repo-gpgcheck = true

[[layer]]
name = "pkgs"
packages = ["{name}"]
"#
        ),
    )
    .expect("write recipe");
    let out = dir.join(format!("{name}.tar"));
    let r = build_rootfs(dir, &recipe, base, name, YUM_URL, server);
    (r, out)
}

#[test]
fn hostile_accounts_from_rpm_scriptlets_are_refused_and_the_clean_twin_is_added() {
    if !rpm_tools() {
        return;
    }
    let t = temp_dir("hostile-accounts-rpm");
    let dir = t.path();
    // (name, %pre, words of the refusal); the calls are on line 2.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "acct-clean",
            "getent group clean >/dev/null || :\nuseradd -r -M -d /var/lib/clean -s /sbin/nologin -c 'Clean daemon' clean",
            &[],
        ),
        (
            "acct-gecos",
            "getent passwd evil >/dev/null || :\nuseradd -r -M -c 'x\npwn::0:0::/root:/bin/sh' evil",
            &["system user: the GECOS field", "control character '\\n'"],
        ),
        (
            "acct-uid0",
            "getent passwd toor >/dev/null || :\nuseradd -r -M -u 0 toor",
            &["user \"toor\" asks for uid 0, root's"],
        ),
    ];
    let server = serve_rpm_cases(dir, cases);
    let base = rpm_base(dir);
    let build = |name: &str| build_rpm_case(dir, &base, &server, name);

    // The clean twin: shadow's useradd -r ids, from 999 down, the user's
    // own group taking its uid.
    let (r, out) = build("acct-clean");
    assert_eq!(r.code, 0, "{r}");
    let f = rootfs_files(&out);
    assert_eq!(
        f["/etc/passwd"].text(),
        "root:x:0:0:root:/root:/bin/sh\nclean:x:999:999:Clean daemon:/var/lib/clean:/sbin/nologin\n"
    );
    assert_eq!(f["/etc/group"].text(), "root:x:0:\nclean:x:999:\n");

    let mut failed = Vec::new();
    for (name, _, words) in &cases[1..] {
        let (r, out) = build(name);
        let prefix = format!("package {name}-1.0-1.el9.noarch: %pre line 2: ");
        if std::panic::catch_unwind(|| assert_refused(&r, &out, &prefix, words)).is_err() {
            failed.push(*name);
        }
    }
    drop(server);
    assert!(failed.is_empty(), "not refused as they must be: {failed:?}");
}
