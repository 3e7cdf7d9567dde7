//! Installing downloaded `.rpm` files into a layer.
//!
//! - **Unpack**: each package's payload is streamed into a [`FileTree`]
//!   (file contents go to the scratch directory, one file at a time):
//!   modes from the header, owners by name mapped through the image's
//!   `/etc/passwd` and `/etc/group` (an unknown name falls back to root, as
//!   rpm does, and is reported), symlinks, hardlinks; `%ghost` files are not
//!   created; `%config` files are listed in the report. Device nodes are
//!   refused.
//! - **Scriptlets** are never run. Like the apt backend they are read for
//!   the effects that can be applied declaratively: system groups and users
//!   (`groupadd -r`, `useradd -r`) are added by [`nodeimg_pkg::accounts`]
//!   (validated; `/etc/group`, `/etc/passwd`, and locked entries in
//!   `/etc/gshadow` and `/etc/shadow` when the image has them) with ids
//!   picked as shadow's `useradd -r` does ([`IdRule::USERADD`]); every scriptlet (and trigger) that was not run is
//!   reported, with the units it would have preset or enabled, which the
//!   recipe enables with its `systemd` item.
//! - **Register**: the rpm database is written by rpm itself
//!   ([`register`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cap_std_ext::cap_std::ambient_authority;
use cap_std_ext::cap_std::fs::Dir;
use nodeimg_layers::tree::Origin;
use nodeimg_layers::{Content, FileTree, ImagePath, Meta, Node, NodeKind, RootView};

use super::resolve::Planned;
use super::rpmfile::{tag, CpioEntry, FileInfo, Payload, RpmFile, FILE_CONFIG, FILE_GHOST};
use nodeimg_pkg::accounts::{Accounts, AccountsError, IdRule, Request};
use nodeimg_pkg::sandbox::{self, Sandbox, SandboxError, Workspace};
use nodeimg_pkg::scripts::{self, Effect};

/// A downloaded, verified package to install.
#[derive(Debug, Clone)]
pub struct Package {
    /// The `.rpm` in the cache, open and verified: read from this handle,
    /// never from its path.
    pub rpm: nodeimg_fetch::cachefile::CachedFile,
    /// Its URL (names it in errors).
    pub url: String,
    /// What the resolver chose.
    pub planned: Planned,
}

/// What installing did and did not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per package (NEVRA), in install order.
    pub packages: Vec<PackageReport>,
}

/// What one package's install did and did not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageReport {
    /// `name-[epoch:]version-release.arch`.
    pub nevra: String,
    /// Entries unpacked.
    pub entries: usize,
    /// `%config` files.
    pub config: Vec<String>,
    /// Scriptlets present and not run (`%post`, `%pre`, ...).
    pub not_run: Vec<String>,
    /// Groups and users added from the scriptlets.
    pub accounts: Vec<String>,
    /// Units the scriptlets preset or enable (left to the systemd item).
    pub units: Vec<String>,
    /// Owner names the image does not know (root was used).
    pub unknown_owners: Vec<String>,
    /// Commands the scriptlets call that could not be read literally.
    pub not_understood: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.packages {
            writeln!(f, "installed {} ({} entries)", p.nevra, p.entries)?;
            for c in &p.config {
                writeln!(f, "config {}: {c}", p.nevra)?;
            }
            for a in &p.accounts {
                writeln!(f, "added {}: {a}", p.nevra)?;
            }
            for s in &p.not_run {
                writeln!(f, "not run {}: {s}", p.nevra)?;
            }
            for u in &p.units {
                writeln!(
                    f,
                    "not run {}: systemd preset/enable of {u} (enable it with the systemd item)",
                    p.nevra
                )?;
            }
            for c in &p.not_understood {
                writeln!(f, "not run {}: not understood: {c}", p.nevra)?;
            }
            for o in &p.unknown_owners {
                writeln!(
                    f,
                    "not run {}: owner {o} is not in the image, root used",
                    p.nevra
                )?;
            }
        }
        Ok(())
    }
}

/// Why a package cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A package file cannot be read.
    #[error("{0}")]
    Rpm(#[from] super::rpmfile::RpmError),
    /// The image's accounts cannot be read.
    #[error("{0}")]
    Accounts(#[from] AccountsError),
    /// The image cannot be materialised for rpm.
    #[error("{0}")]
    Root(#[from] super::root::RootError),
    /// The image's rpm cannot be found inside the materialised image.
    #[error("{0}")]
    Place(#[source] super::root::PlaceError),
    /// The rpm database folder cannot be found inside the materialised
    /// image.
    #[error("{DBPATH}: {0}", DBPATH = DBPATH)]
    DbPath(#[source] super::root::PlaceError),
    /// A file or folder of the build host cannot be written or read.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// rpm's sandbox cannot be prepared or run.
    #[error("{context}: {source}")]
    Sandbox {
        context: String,
        #[source]
        source: SandboxError,
    },
    /// A file lands where the layer cannot hold it.
    #[error("{0}")]
    Tree(#[source] nodeimg_layers::Error),
    /// The packages or the image are refused, with no further cause.
    #[error("{0}")]
    Refused(String),
    /// The image's rpm is built for another architecture than the build
    /// host, so it cannot run here (the build host's rpm can stand in).
    #[error("{0}")]
    ForeignArch(String),
}

impl InstallError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
        let context = context.into();
        move |source| InstallError::Io { context, source }
    }

    fn sandbox(context: impl Into<String>) -> impl FnOnce(SandboxError) -> InstallError {
        let context = context.into();
        move |source| InstallError::Sandbox { context, source }
    }
}

/// The id of the user `name`: root is 0 even when the image has no
/// `/etc/passwd`, as rpm takes it.
fn owner_uid(accounts: &Accounts, name: &str) -> Option<u32> {
    accounts.uid(name).or((name == "root").then_some(0))
}

/// The id of the group `name` (root is 0, see [`owner_uid`]).
fn owner_gid(accounts: &Accounts, name: &str) -> Option<u32> {
    accounts.gid(name).or((name == "root").then_some(0))
}

/// The install-time scriptlets, by rpm's names.
const SCRIPTLETS: &[(u32, u32, &str)] = &[
    (tag::PRETRANS, 0, "%pretrans"),
    (tag::PREIN, tag::PREINPROG, "%pre"),
    (tag::POSTIN, tag::POSTINPROG, "%post"),
    (tag::POSTTRANS, 0, "%posttrans"),
    (tag::PREUN, tag::PREUNPROG, "%preun"),
    (tag::POSTUN, tag::POSTUNPROG, "%postun"),
    (tag::TRIGGERSCRIPTS, 0, "%trigger"),
    (tag::FILETRIGGERSCRIPTS, 0, "%filetrigger"),
    (tag::TRANSFILETRIGGERSCRIPTS, 0, "%transfiletrigger"),
];

/// Units a scriptlet presets or enables (`systemctl preset|enable UNIT`, as
/// `%systemd_post` writes it).
fn systemd_units(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .collect();
        for (i, w) in words.iter().enumerate() {
            if w.ends_with("systemctl") {
                let rest = &words[i + 1..];
                if rest.iter().any(|a| *a == "preset" || *a == "enable") {
                    for a in rest {
                        let unit = a.ends_with(".service")
                            || a.ends_with(".socket")
                            || a.ends_with(".timer");
                        if unit && !a.contains('$') && !out.contains(&a.to_string()) {
                            out.push(a.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// Unpacks `pkgs` into one tree. `scratch` holds the file contents;
/// `origin_key` is the key path of the packages item.
pub fn unpack(
    view: &dyn RootView,
    pkgs: &[Package],
    scratch: &Path,
    origin_key: &str,
) -> Result<(FileTree, Report), InstallError> {
    let mut report = Report::default();
    let accounts = Accounts::read(view, IdRule::USERADD)?;
    let dir = tempfile::Builder::new()
        .prefix("rpm-")
        .tempdir_in(scratch)
        .map_err(InstallError::io(format!(
            "creating a scratch directory in {}",
            scratch.display()
        )))?
        .keep();
    let mut u = Unpacker {
        tree: FileTree::new(),
        accounts,
        dir,
        counter: 0,
    };
    // Scriptlets first, for every package: a %pre creates the users and
    // groups files of this and later packages are owned by.
    let mut reports = Vec::with_capacity(pkgs.len());
    for pkg in pkgs {
        reports.push(u.scriptlets(pkg)?);
    }
    // Then the files, owned by names the scriptlets may have added.
    for (pkg, mut rep) in pkgs.iter().zip(reports) {
        u.files(pkg, &mut rep, &Origin::new("packages", origin_key))?;
        report.packages.push(rep);
    }
    let Unpacker {
        mut tree, accounts, ..
    } = u;
    accounts.write(&mut tree, &Origin::new("packages", origin_key));
    Ok((tree, report))
}

/// The state of an [`unpack`].
struct Unpacker {
    tree: FileTree,
    /// The image's users and groups, with those the scriptlets add.
    accounts: Accounts,
    /// Where the regular files' contents are written.
    dir: PathBuf,
    /// Regular files written so far (their names in `dir`).
    counter: usize,
}

/// The time the header records for a file (`rpm -V` checks it), kept for
/// what is not a directory (directories get the build's).
fn packaged_mtime(info: Option<&FileInfo>, mode: u32) -> Option<u64> {
    info.and_then(|i| i.mtime)
        .filter(|_| mode & 0o170000 != 0o040000)
}

impl Unpacker {
    /// Checks that `pkg` is what the metadata planned, applies the effects
    /// of its install-time scriptlets and starts its report.
    fn scriptlets(&mut self, pkg: &Package) -> Result<PackageReport, InstallError> {
        let rpm = RpmFile::from_reader(pkg.rpm.reader(), &pkg.url)?;
        let (name, evr, arch) = rpm.nevra()?;
        let want = &pkg.planned.package;
        if name != want.name || !evr.compare(&want.evr).is_eq() || arch != want.arch {
            return Err(InstallError::Refused(format!(
                "{}: the package is {name}-{evr}.{arch}, the repository metadata says {}",
                pkg.url,
                want.nevra()
            )));
        }
        let mut rep = PackageReport {
            nevra: want.nevra(),
            ..Default::default()
        };
        // Scriptlets first: %pre creates the users the files are owned by.
        for (t, prog, label) in SCRIPTLETS {
            let body = rpm.header.strings(*t, &pkg.url)?.unwrap_or_default();
            let interp = if *prog != 0 {
                rpm.header.strings(*prog, &pkg.url)?.unwrap_or_default()
            } else {
                Vec::new()
            };
            if body.is_empty() && interp.is_empty() {
                continue;
            }
            rep.not_run.push(label.to_string());
            let is_install = matches!(*label, "%pre" | "%post" | "%pretrans" | "%posttrans");
            if !is_install {
                continue;
            }
            for script in &body {
                self.scriptlet(script, label, &mut rep)?;
            }
        }
        Ok(rep)
    }

    /// Applies what the install-time scriptlet `label` reads as: users and
    /// groups are added, units and the rest reported in `rep`.
    fn scriptlet(
        &mut self,
        script: &str,
        label: &str,
        rep: &mut PackageReport,
    ) -> Result<(), InstallError> {
        let scan = scripts::scan(script);
        let nevra = rep.nevra.clone();
        for e in scan.effects {
            let who = Request {
                package: &nevra,
                script: label,
                line: e.line,
            };
            match e.effect {
                Effect::Group(g) => {
                    if let Some(gid) = self.accounts.add_group(&g, &who)? {
                        rep.accounts
                            .push(format!("system group {} ({gid})", g.name));
                    }
                }
                Effect::User(u) => {
                    if let Some(added) = self.accounts.add_user(&u, &who)? {
                        if let Some(gid) = added.own_group {
                            rep.accounts
                                .push(format!("system group {} ({gid})", u.name));
                        }
                        rep.accounts
                            .push(format!("system user {} ({})", u.name, added.uid));
                    }
                }
                Effect::SystemdEnable(unit) => {
                    if !rep.units.contains(&unit) {
                        rep.units.push(unit);
                    }
                }
                Effect::Alternative(a) => rep
                    .not_understood
                    .push(format!("update-alternatives {}", a.name)),
            }
        }
        rep.not_understood.extend(scan.not_understood);
        for u in systemd_units(script) {
            if !rep.units.contains(&u) {
                rep.units.push(u);
            }
        }
        Ok(())
    }

    /// Unpacks the payload of `pkg` into the tree.
    fn files(
        &mut self,
        pkg: &Package,
        rep: &mut PackageReport,
        origin: &Origin,
    ) -> Result<(), InstallError> {
        let rpm = RpmFile::from_reader(pkg.rpm.reader(), &pkg.url)?;
        let files = rpm.files()?;
        let by_path: BTreeMap<&str, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.as_str(), i))
            .collect();
        for f in &files {
            if f.flags & FILE_CONFIG != 0
                && f.flags & FILE_GHOST == 0
                && f.mode & 0o170000 == 0o100000
            {
                rep.config.push(f.path.clone());
            }
        }
        let url = pkg.url.clone();
        let mut payload = rpm.payload()?;
        // Hard links whose data comes with a later entry, by inode.
        let mut pending: BTreeMap<u32, Vec<ImagePath>> = BTreeMap::new();
        while let Some(e) = payload.next_entry()? {
            let path = ImagePath::new(&e.path).map_err(|m| {
                InstallError::Refused(format!("{url}: payload path {:?}: {m}", e.path))
            })?;
            let info = by_path.get(e.path.as_str()).map(|&i| &files[i]);
            let mode = info.map_or(e.mode, |i| i.mode);
            let mtime = packaged_mtime(info, mode);
            let meta = self.entry_meta(info, &e, mode, rep);
            let kind = match mode & 0o170000 {
                0o040000 => {
                    payload.data(&e, &mut std::io::sink())?;
                    NodeKind::Dir
                }
                0o120000 => read_symlink(&mut payload, &e, &url)?,
                0o100000 if e.nlink > 1 && e.size == 0 => {
                    payload.data(&e, &mut std::io::sink())?;
                    pending.entry(e.ino).or_default().push(path);
                    rep.entries += 1;
                    continue;
                }
                0o100000 => {
                    let kind = self.write_file(&mut payload, &e)?;
                    for o in pending.remove(&e.ino).unwrap_or_default() {
                        let n = Node {
                            kind: NodeKind::Hardlink(path.clone()),
                            meta,
                            origin: origin.clone(),
                            mtime,
                        };
                        insert(&mut self.tree, o, n, &url)?;
                    }
                    kind
                }
                _ => {
                    return Err(InstallError::Refused(format!(
                        "{url}: {} is a device node or fifo, which a layer does not carry; the package cannot be installed this way",
                        e.path
                    )))
                }
            };
            rep.entries += 1;
            let n = Node {
                kind,
                meta,
                origin: origin.clone(),
                mtime,
            };
            insert(&mut self.tree, path, n, &url)?;
        }
        if let Some((_, paths)) = pending.into_iter().next() {
            return Err(InstallError::Refused(format!(
                "{url}: the hardlinks {} have no data in the payload",
                paths
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        payload.finish()?;
        Ok(())
    }

    /// The mode bits and owner of a payload entry, by the header's file
    /// list (`info`) when it names the entry; owners the image does not
    /// know become root and are reported.
    fn entry_meta(
        &self,
        info: Option<&FileInfo>,
        e: &CpioEntry,
        mode: u32,
        rep: &mut PackageReport,
    ) -> Meta {
        let (user, group) = info.map_or(("root", "root"), |i| (i.user.as_str(), i.group.as_str()));
        let uid = owner_uid(&self.accounts, user).unwrap_or_else(|| {
            let o = format!("user {user} of {}", e.path);
            rep.unknown_owners.push(o);
            0
        });
        let gid = owner_gid(&self.accounts, group).unwrap_or_else(|| {
            rep.unknown_owners
                .push(format!("group {group} of {}", e.path));
            0
        });
        Meta {
            mode: mode & 0o7777,
            uid,
            gid,
        }
    }

    /// Writes the data of the regular file `e` into the scratch directory.
    fn write_file(
        &mut self,
        payload: &mut Payload,
        e: &CpioEntry,
    ) -> Result<NodeKind, InstallError> {
        self.counter += 1;
        let host = self.dir.join(self.counter.to_string());
        let out =
            File::create(&host).map_err(InstallError::io(format!("writing {}", host.display())))?;
        let mut w = BufWriter::new(out);
        payload.data(e, &mut w)?;
        std::io::Write::flush(&mut w)
            .map_err(InstallError::io(format!("writing {}", host.display())))?;
        Ok(NodeKind::File(Content::Host {
            path: host,
            size: e.size,
        }))
    }
}

/// Reads the target of the symlink `e` of the package at `url`.
fn read_symlink(payload: &mut Payload, e: &CpioEntry, url: &str) -> Result<NodeKind, InstallError> {
    let mut target = Vec::new();
    if e.size > 4096 {
        return Err(InstallError::Refused(format!(
            "{url}: symlink {} is too long",
            e.path
        )));
    }
    payload.data(e, &mut target)?;
    let t = String::from_utf8(target)
        .map_err(|_| InstallError::Refused(format!("{url}: symlink {} is not UTF-8", e.path)))?;
    Ok(NodeKind::Symlink(t))
}

fn insert(tree: &mut FileTree, path: ImagePath, node: Node, url: &str) -> Result<(), InstallError> {
    if let (Some(old), NodeKind::Dir) = (tree.get(&path), &node.kind) {
        if old.kind == NodeKind::Dir {
            return Ok(());
        }
    }
    if tree.get(&path).is_some() {
        return Err(InstallError::Refused(format!(
            "{url}: {path} is also shipped by another package of this layer"
        )));
    }
    tree.insert(path, node).map_err(InstallError::Tree)
}

/// The rpm database directory inside the image.
pub(crate) const DBPATH: &str = "/var/lib/rpm";

/// How rpm runs, always in the sandbox ([`nodeimg_pkg::sandbox`]): either the
/// image's own `rpm` with the materialised image as the sandbox's root, or
/// the build host's `rpm` with `--root` at the image's copy, which is all
/// it sees of the image (and of the host, only its system folders).
#[derive(Debug, Clone)]
pub struct Runner {
    /// The rpm executable (a path inside the image when `in_image`, else
    /// found on the build host's `PATH`).
    pub rpm: PathBuf,
    /// Seconds since 1970: what rpm records as the install time.
    pub epoch: i64,
    /// Whether `rpm` is the image's, run with the image as its root.
    pub in_image: bool,
}

/// Where the packages to register are bound read-only in the sandbox.
const RPMS_INSIDE: &str = "/.nodeimg-rpms";

/// Where the image's copy is in the sandbox of the build host's rpm.
const IMAGE_INSIDE: &str = "/image";

/// The largest database file read back from rpm's work.
const DB_FILE_MAX: u64 = 1 << 30;

/// The build host's ELF machine number and name.
const HOST_MACHINE: Option<(u16, &str)> = if cfg!(target_arch = "x86_64") {
    Some((62, "x86_64"))
} else if cfg!(target_arch = "aarch64") {
    Some((183, "aarch64"))
} else if cfg!(target_arch = "powerpc64") {
    Some((21, "ppc64"))
} else if cfg!(target_arch = "s390x") {
    Some((22, "s390x"))
} else {
    None
};

fn elf_machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        8 => "mips",
        20 => "ppc",
        21 => "ppc64",
        22 => "s390x",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv64",
        _ => "another machine",
    }
}

/// Part of the message when the image's rpm cannot be run on this host
/// because it is built for another architecture.
pub(crate) const FOREIGN_ARCH: &str = "is built for another architecture than the build host";

impl Default for Runner {
    /// `rpm` from `PATH`, with the build's `SOURCE_DATE_EPOCH` (0 when
    /// unset, as the build's own default).
    fn default() -> Self {
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| nodeimg_image::epoch::parse(Some(&v)).ok())
            .unwrap_or(0);
        Runner {
            rpm: PathBuf::from("rpm"),
            epoch,
            in_image: false,
        }
    }
}

impl Runner {
    /// The image's rpm at `rpm` (a path inside the image), with the build's
    /// `SOURCE_DATE_EPOCH` as [`Runner::default`] reads it.
    pub fn image(rpm: &str) -> Runner {
        Runner {
            rpm: PathBuf::from(rpm),
            in_image: true,
            ..Runner::default()
        }
    }

    /// Whether this rpm (the build host's) is on the build host's `PATH`.
    pub fn on_host(&self) -> bool {
        !self.in_image && sandbox::find_on_path(self.rpm.as_os_str()).is_some()
    }

    /// Refuses the image's rpm when it is an ELF executable for another
    /// machine than the build host (it could not run, or would only run
    /// through an emulator the sandbox does not hold). `root` is the
    /// materialised image.
    pub(crate) fn check_machine(&self, root: &Path) -> Result<(), InstallError> {
        if !self.in_image {
            return Ok(());
        }
        let inside = self.rpm.to_string_lossy();
        let comps =
            super::root::resolve_in_root(root, &inside, true).map_err(InstallError::Place)?;
        let mut host = root.to_path_buf();
        host.extend(&comps);
        let mut head = [0u8; 20];
        let read = File::open(&host).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
        if read.is_err() || head[..4] != *b"\x7fELF" {
            return Ok(());
        }
        let machine = if head[5] == 2 {
            u16::from_be_bytes([head[18], head[19]])
        } else {
            u16::from_le_bytes([head[18], head[19]])
        };
        match HOST_MACHINE {
            Some((m, _)) if m != machine => Err(InstallError::ForeignArch(format!(
                "the image's rpm ({inside}) {FOREIGN_ARCH} ({}, ELF machine {machine}, where the build host is {}); build on a host of the image's architecture",
                elf_machine_name(machine),
                HOST_MACHINE.map_or("?", |h| h.1),
            ))),
            _ => Ok(()),
        }
    }

    /// Which rpm this is, for messages.
    pub fn describe(&self) -> String {
        if self.in_image {
            format!("the image's rpm ({})", self.rpm.display())
        } else {
            format!("the build host's rpm ({})", self.rpm.display())
        }
    }

    /// The sandbox rpm runs in over `root` (the image's copy), the program
    /// to run in it and its first arguments.
    fn sandbox(
        &self,
        root: &Path,
        what: &str,
    ) -> Result<(Sandbox, OsString, Vec<OsString>), InstallError> {
        let mut args: Vec<OsString> = Vec::new();
        let (mut sandbox, program) = if self.in_image {
            (Sandbox::image(root), self.rpm.clone().into_os_string())
        } else {
            let found = sandbox::find_on_path(self.rpm.as_os_str())
                .and_then(|p| std::fs::canonicalize(p).ok())
                .ok_or_else(|| {
                    InstallError::Refused(format!(
                        "{what}: {} cannot be run on the build host (it is not on PATH); install rpm (Debian: apt-get install rpm)",
                        self.rpm.display()
                    ))
                })?;
            let mut s = Sandbox::host(root, IMAGE_INSIDE);
            s.host_program(&found)
                .map_err(InstallError::sandbox(what))?;
            args.push("--root".into());
            args.push(IMAGE_INSIDE.into());
            (s, found.into_os_string())
        };
        args.push("--dbpath".into());
        args.push(DBPATH.into());
        // The install time rpm records is the build's epoch, so the
        // database is the same on every build.
        sandbox.env("SOURCE_DATE_EPOCH", &self.epoch.to_string());
        Ok((sandbox, program, args))
    }

    fn run(
        &self,
        root: &Path,
        extra: &[OsString],
        rpms: Option<&Path>,
        what: &str,
    ) -> Result<Vec<u8>, InstallError> {
        let (mut sandbox, program, mut args) = self.sandbox(root, what)?;
        if let Some(dir) = rpms {
            sandbox.ro_bind(dir, RPMS_INSIDE);
        }
        args.extend(extra.iter().cloned());
        let out = sandbox
            .run(&program, &args, &self.describe())
            .map_err(InstallError::sandbox(what))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let msg: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.contains("use Alien") && !l.trim().is_empty())
            .collect();
        let joined = msg.join("; ");
        if let Some(exec) = sandbox::exec_failure(&out.stderr) {
            if self.in_image && exec.contains("Exec format error") {
                return Err(InstallError::ForeignArch(format!(
                    "{what}: the image's rpm ({}) {FOREIGN_ARCH} ({joined}); build on a host of the image's architecture, or register an emulator for it with binfmt_misc",
                    self.rpm.display()
                )));
            }
            if self.in_image {
                return Err(InstallError::Refused(format!(
                    "{what}: the image's rpm ({}) cannot be run in the image ({joined}); check that its libraries are in the image",
                    self.rpm.display()
                )));
            }
            return Err(InstallError::Refused(format!(
                "{what}: {} cannot be run on the build host ({joined}); install rpm (Debian: apt-get install rpm)",
                self.rpm.display()
            )));
        }
        Err(InstallError::Refused(format!(
            "{what}: {} failed ({}): {joined}",
            self.describe(),
            out.status
        )))
    }
}

/// A copy of the image's rpm database (alone, or in the whole image) in a
/// temporary root, in a workspace of the sandbox.
#[derive(Debug)]
pub struct DbRoot {
    workspace: Workspace,
    root: PathBuf,
    /// The database folder on the host (inside `root`).
    db: PathBuf,
    before: BTreeMap<String, Vec<u8>>,
}

/// Whether the image's rpm database is rpm's sqlite one (`rpmdb.sqlite`
/// in `/var/lib/rpm`), which the build host's rpm writes.
pub fn is_sqlite_db(view: &dyn RootView) -> bool {
    view.list(DBPATH).iter().any(|n| n == "rpmdb.sqlite")
}

/// Copies the image's `/var/lib/rpm` into a temporary root (only the
/// database files). Refuses a Berkeley DB database, which the build host's
/// rpm cannot write.
pub fn materialise(view: &dyn RootView) -> Result<DbRoot, InstallError> {
    let (workspace, root) = temp_root()?;
    let db = root.join(DBPATH.trim_start_matches('/'));
    let names = view.list(DBPATH);
    if names.iter().any(|n| n == "Packages") && !names.iter().any(|n| n == "rpmdb.sqlite") {
        return Err(InstallError::Refused(format!(
            "{DBPATH} in the image is a Berkeley DB rpm database (rpm before 4.16), which the build host's rpm cannot write; use a base whose rpm uses the sqlite backend, or one that has its own rpm (/usr/bin/rpm), which registers the packages itself"
        )));
    }
    let before = fill_db(view, &db)?;
    hand_over(&workspace, &root)?;
    Ok(DbRoot {
        workspace,
        root,
        db,
        before,
    })
}

/// A workspace of the sandbox and the (empty) root folder in it.
fn temp_root() -> Result<(Workspace, PathBuf), InstallError> {
    let workspace =
        Workspace::new("rpm").map_err(InstallError::sandbox("preparing rpm's sandbox"))?;
    let root = workspace.path().join("root");
    std::fs::create_dir(&root).map_err(InstallError::io(format!(
        "creating a temporary root: {}",
        root.display()
    )))?;
    Ok((workspace, root))
}

fn hand_over(workspace: &Workspace, path: &Path) -> Result<(), InstallError> {
    workspace
        .hand_over(path)
        .map_err(InstallError::sandbox("preparing rpm's sandbox"))
}

/// Writes the database files of the image's `/var/lib/rpm` into `db`
/// (created); returns them by name.
fn fill_db(view: &dyn RootView, db: &Path) -> Result<BTreeMap<String, Vec<u8>>, InstallError> {
    std::fs::create_dir_all(db).map_err(InstallError::io(db.display().to_string()))?;
    let mut before = BTreeMap::new();
    for n in view.list(DBPATH) {
        let p = format!("{DBPATH}/{n}");
        let ip = ImagePath::new(&p).map_err(|e| InstallError::Refused(e.to_string()))?;
        let Some(stat) = view.stat_follow(&ip) else {
            continue;
        };
        if !matches!(stat.kind, nodeimg_layers::StatKind::File(_)) {
            continue;
        }
        let Some(bytes) = view.read(&ip) else {
            return Err(InstallError::Refused(format!(
                "{p}: the image's rpm database file cannot be read (too large for the base view, which keeps files up to {} bytes)",
                nodeimg_image::tarindex::RPMDB_KEEP_MAX
            )));
        };
        std::fs::write(db.join(&n), &bytes).map_err(InstallError::io(db.display().to_string()))?;
        before.insert(n, bytes);
    }
    Ok(before)
}

/// Materialises the whole image below the layer (the base's layers from
/// `base`, then what `view` changes) into a temporary root for the image's
/// own rpm; its database folder holds the view's database files, in
/// whatever format the image's rpm wrote them.
pub(crate) fn materialise_image(
    base: &nodeimg_image::base::BaseTars,
    view: &dyn RootView,
) -> Result<(DbRoot, super::root::Counts), InstallError> {
    let (workspace, root) = temp_root()?;
    let dbpath = ImagePath::new(DBPATH).map_err(|e| InstallError::Refused(e.to_string()))?;
    let resolved = view.resolve(&dbpath);
    let counts = super::root::materialise_root(base, view, &root, &resolved)?;
    let comps = super::root::resolve_in_root(&root, resolved.as_str(), true)
        .map_err(InstallError::DbPath)?;
    let mut db = root.clone();
    db.extend(&comps);
    if std::fs::symlink_metadata(&db).is_ok() {
        super::root::remove_tree(&db).map_err(InstallError::io(db.display().to_string()))?;
    }
    let before = fill_db(view, &db)?;
    hand_over(&workspace, &root)?;
    Ok((
        DbRoot {
            workspace,
            root,
            db,
            before,
        },
        counts,
    ))
}

impl DbRoot {
    /// The temporary root (the materialised image, or only its database).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The packages the database records, as the resolver reads them.
    pub fn installed(
        &self,
        runner: &Runner,
    ) -> Result<Vec<super::repodata::RpmPackage>, InstallError> {
        if self.before.is_empty() {
            return Ok(Vec::new());
        }
        let args: Vec<OsString> = [
            "-qa",
            "--qf",
            "P\\t%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n[V\\t%{PROVIDENAME}\\t%{PROVIDEFLAGS}\\t%{PROVIDEVERSION}\\n][C\\t%{CONFLICTNAME}\\t%{CONFLICTFLAGS}\\t%{CONFLICTVERSION}\\n][F\\t%{FILENAMES}\\n]",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = runner.run(&self.root, &args, None, "reading the image's rpm database")?;
        parse_query(&String::from_utf8_lossy(&out))
    }

    /// Registers `pkgs` in the database (`rpm -i --justdb --nodeps
    /// --noscripts`) and returns the database files that changed, as layer
    /// entries whose contents live in `scratch`.
    pub fn register(
        &self,
        runner: &Runner,
        pkgs: &[Package],
        scratch: &Path,
        origin_key: &str,
    ) -> Result<FileTree, InstallError> {
        if self.before.is_empty() {
            runner.run(
                &self.root,
                &[OsString::from("--initdb")],
                None,
                "creating the image's rpm database",
            )?;
        }
        let mut args: Vec<OsString> = [
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--notriggers",
            "--nosignature",
            "--nodigest",
            "--ignorearch",
            "--ignoreos",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // rpm sees the packages only as copies, bound read-only.
        let rpms = self.workspace.path().join("rpms");
        let io = |p: &Path, source: std::io::Error| InstallError::Io {
            context: p.display().to_string(),
            source,
        };
        super::root::remove_tree(&rpms).map_err(|e| io(&rpms, e))?;
        std::fs::create_dir(&rpms).map_err(|e| io(&rpms, e))?;
        for (i, p) in pkgs.iter().enumerate() {
            let name = format!("{i:05}.rpm");
            let dst = rpms.join(&name);
            // From its verified handle, never from the cache path.
            p.rpm.copy_to(&dst).map_err(|e| io(&dst, e))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| io(&dst, e))?;
            args.push(format!("{RPMS_INSIDE}/{name}").into());
        }
        hand_over(&self.workspace, &rpms)?;
        // The mount point in the image's copy: a folder of nodeimg's.
        let mount = self.root.join(RPMS_INSIDE.trim_start_matches('/'));
        if runner.in_image {
            super::root::remove_tree(&mount).map_err(|e| io(&mount, e))?;
            std::fs::create_dir(&mount).map_err(|e| io(&mount, e))?;
            hand_over(&self.workspace, &mount)?;
        }
        let what = format!(
            "registering the packages in the image's rpm database with {}",
            runner.describe()
        );
        let ran = runner.run(&self.root, &args, Some(&rpms), &what);
        let _ = super::root::remove_tree(&rpms);
        if runner.in_image {
            let _ = super::root::remove_tree(&mount);
        }
        ran?;
        self.changed_db_files(runner, scratch, origin_key)
    }

    /// The database files that `runner` changed, copied into `scratch` as
    /// layer entries; the write-ahead log and shared-memory index of a
    /// checkpointed database are left out (and the base's removed).
    fn changed_db_files(
        &self,
        runner: &Runner,
        scratch: &Path,
        origin_key: &str,
    ) -> Result<FileTree, InstallError> {
        let out_dir = tempfile::Builder::new()
            .prefix("rpmdb-out-")
            .tempdir_in(scratch)
            .map_err(InstallError::io("creating a scratch directory"))?
            .keep();
        // What rpm left is read through the copy's root folder: a symlink
        // it made never leads out of it.
        let db_err = |source: std::io::Error| InstallError::Io {
            context: format!("reading back {DBPATH} after {}", runner.describe()),
            source,
        };
        let root_dir = Dir::open_ambient_dir(&self.root, ambient_authority()).map_err(db_err)?;
        let rel = self.db.strip_prefix(&self.root).unwrap_or(Path::new("."));
        let db = root_dir.open_dir(rel).map_err(db_err)?;
        let mut names: Vec<String> = Vec::new();
        for e in db.entries().map_err(db_err)? {
            let e = e.map_err(db_err)?;
            if e.file_type().map_err(db_err)?.is_file() {
                if let Ok(n) = e.file_name().into_string() {
                    names.push(n);
                }
            }
        }
        names.sort();
        let mut tree = FileTree::new();
        let wal_empty = db
            .symlink_metadata("rpmdb.sqlite-wal")
            .map_or(true, |m| m.len() == 0);
        for n in names {
            if n == ".rpm.lock" && !self.before.contains_key(&n) {
                continue;
            }
            // With the write-ahead log checkpointed into the database, its
            // log and shared-memory index (which holds random salts) are
            // left out, and the base's removed.
            if wal_empty && (n.ends_with("-wal") || n.ends_with("-shm")) {
                if self.before.contains_key(&n) {
                    let p = ImagePath::new(&format!("{DBPATH}/{n}"))
                        .map_err(|e| InstallError::Refused(e.to_string()))?;
                    tree.replace(p, Node::whiteout(Origin::new("packages", origin_key)));
                }
                continue;
            }
            let size = db.symlink_metadata(&n).map_err(db_err)?.len();
            if size > DB_FILE_MAX {
                return Err(InstallError::Refused(format!(
                    "{DBPATH}/{n} is {size} bytes after {}, more than a database file can be ({DB_FILE_MAX})",
                    runner.describe()
                )));
            }
            let bytes = db.read(&n).map_err(db_err)?;
            if self.before.get(&n) == Some(&bytes) {
                continue;
            }
            let dst = out_dir.join(&n);
            std::fs::write(&dst, &bytes).map_err(InstallError::io(dst.display().to_string()))?;
            let p = ImagePath::new(&format!("{DBPATH}/{n}"))
                .map_err(|e| InstallError::Refused(e.to_string()))?;
            let node = Node {
                kind: NodeKind::File(Content::Host {
                    path: dst,
                    size: bytes.len() as u64,
                }),
                meta: Meta::FILE,
                origin: Origin::new("packages", origin_key),
                mtime: None,
            };
            tree.replace(p, node);
        }
        Ok(tree)
    }
}

/// Parses the `--qf` output of [`DbRoot::installed`].
fn parse_query(text: &str) -> Result<Vec<super::repodata::RpmPackage>, InstallError> {
    use super::repodata::{Dep, RpmPackage};
    use super::version::{Evr, Op};
    let mut out: Vec<RpmPackage> = Vec::new();
    let dep = |f: &[&str]| -> Option<Dep> {
        let name = f.get(1)?.to_string();
        let flags: u32 = f.get(2)?.parse().ok()?;
        let ver = f.get(3).copied().unwrap_or("");
        let constraint = match (Op::from_sense(flags), ver.is_empty()) {
            (Some(op), false) => Evr::parse(ver).ok().map(|e| (op, e)),
            _ => None,
        };
        Some(Dep { name, constraint })
    };
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || {
            InstallError::Refused(format!(
                "the image's rpm database query, line {}: {line:?}",
                n + 1
            ))
        };
        match f.first().copied() {
            Some("P") => {
                if f.len() != 6 {
                    return Err(bad());
                }
                let epoch = f[2].parse().map_err(|_| bad())?;
                out.push(RpmPackage {
                    name: f[1].into(),
                    evr: Evr::new(epoch, f[3], Some(f[4])),
                    arch: f[5].into(),
                    ..Default::default()
                });
            }
            Some(k @ ("V" | "C" | "F")) => {
                let p = out.last_mut().ok_or_else(bad)?;
                match k {
                    "V" => p.provides.push(dep(&f).ok_or_else(bad)?),
                    "C" => p.conflicts.push(dep(&f).ok_or_else(bad)?),
                    _ => p.files.push(f.get(1).ok_or_else(bad)?.to_string()),
                }
            }
            Some("") | None => {}
            Some(_) => return Err(bad()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.evr.compare(&b.evr)));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_output() {
        let text = "P\tbash\t0\t5.2\t1\tx86_64\nV\tbash\t8\t5.2-1\nV\t/bin/sh\t0\t\nC\tzsh-compat\t2\t1.0\nF\t/bin/bash\nP\ttzdata\t0\t2024a\t1\tnoarch\n";
        let p = parse_query(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].nevra(), "bash-5.2-1.x86_64");
        assert_eq!(
            p[0].provides
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>(),
            ["bash = 5.2-1", "/bin/sh"]
        );
        assert_eq!(p[0].conflicts[0].to_string(), "zsh-compat < 1.0");
        assert_eq!(p[0].files, ["/bin/bash"]);
        assert!(parse_query("V\tx\t0\t\n").is_err());
        assert!(parse_query("P\tx\tnope\t1\t1\tnoarch\n").is_err());
        assert!(parse_query("Q\n").is_err());
    }

    #[test]
    fn database_refusals() {
        let bdb = nodeimg_layers::MemView::new()
            .file("/var/lib/rpm/Packages", "x")
            .file("/var/lib/rpm/Name", "x");
        let e = materialise(&bdb).unwrap_err();
        assert!(e.to_string().contains("Berkeley DB"), "{e}");
        let v = nodeimg_layers::MemView::new().file("/var/lib/rpm/rpmdb.sqlite", "x");
        let db = materialise(&v).unwrap();
        let runner = Runner {
            rpm: PathBuf::from("/nonexistent/bin/rpm"),
            epoch: 0,
            in_image: false,
        };
        let e = db.installed(&runner).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/bin/rpm cannot be run on the build host")
                || e.to_string().contains("bubblewrap"),
            "{e}"
        );
        // A distribution's database is kept by the base view.
        assert!(nodeimg_image::tarindex::keeps(
            "/var/lib/rpm/rpmdb.sqlite",
            40 << 20
        ));
        assert!(!nodeimg_image::tarindex::keeps(
            "/var/lib/rpm/rpmdb.sqlite",
            200 << 20
        ));
        // No database in the image: nothing is installed, rpm is not asked.
        let empty = materialise(&nodeimg_layers::MemView::new()).unwrap();
        assert!(empty.installed(&runner).unwrap().is_empty());
    }

    #[test]
    fn an_image_rpm_of_another_architecture_is_named() {
        let v = nodeimg_layers::MemView::new().file("/var/lib/rpm/rpmdb.sqlite", "x");
        let db = materialise(&v).unwrap();
        // Not an executable of this machine: a truncated ELF header.
        let bin = db.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let (other, name) = if cfg!(target_arch = "aarch64") {
            (62u16, "x86_64")
        } else {
            (183u16, "aarch64")
        };
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
        elf.extend(other.to_le_bytes());
        std::fs::write(bin.join("rpm"), &elf).unwrap();
        std::fs::set_permissions(bin.join("rpm"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let runner = Runner::image("/usr/bin/rpm");
        assert_eq!(runner.describe(), "the image's rpm (/usr/bin/rpm)");
        let e = runner.check_machine(db.path()).unwrap_err();
        // Typed, so the build can fall back to its own rpm.
        assert!(matches!(e, InstallError::ForeignArch(_)), "{e}");
        let e = e.to_string();
        assert!(
            e.contains(&format!(
                "the image's rpm (/usr/bin/rpm) {FOREIGN_ARCH} ({name}, ELF machine {other}"
            )),
            "{e}"
        );
        // The build host's own machine, and scripts, pass.
        let own = std::fs::read("/proc/self/exe").unwrap();
        std::fs::write(bin.join("rpm"), &own[..64]).unwrap();
        runner.check_machine(db.path()).unwrap();
        std::fs::write(bin.join("rpm"), "#!/bin/sh\n").unwrap();
        runner.check_machine(db.path()).unwrap();
        Runner::default().check_machine(db.path()).unwrap();
    }

    #[test]
    fn units_from_systemd_macros() {
        let post = "\nif [ $1 -eq 1 ] ; then\n        # Initial installation\n        systemctl --no-reload preset docker.service docker.socket &>/dev/null || :\nfi\n";
        assert_eq!(systemd_units(post), ["docker.service", "docker.socket"]);
        assert!(systemd_units("systemctl daemon-reload").is_empty());
        assert!(systemd_units("systemctl enable $UNIT.service").is_empty());
    }

    use crate::repodata::RpmPackage;
    use crate::resolve::Planned;
    use crate::testutil;
    use crate::version::Evr;

    fn package(dir: &Path, bytes: &[u8], arch: &str) -> Package {
        let rpm = dir.join("demo.rpm");
        std::fs::write(&rpm, bytes).unwrap();
        let file = std::fs::File::open(&rpm).unwrap();
        Package {
            rpm: nodeimg_fetch::cachefile::CachedFile::written(file, rpm, bytes.len() as u64),
            url: "http://repo.invalid/Packages/demo.rpm".into(),
            planned: Planned {
                repository: "test".into(),
                package: RpmPackage {
                    name: "demo".into(),
                    arch: arch.into(),
                    evr: Evr::new(0, "1.0", Some("1")),
                    ..Default::default()
                },
            },
        }
    }

    fn view() -> nodeimg_layers::MemView {
        nodeimg_layers::MemView::new()
            .file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
            .file("/etc/group", "root:x:0:\n")
    }

    #[test]
    fn unpacks_modes_owners_links_and_config() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        let bytes = testutil::rpm(
            "demo",
            "x86_64",
            tags,
            &payload,
            Some("getent group docker >/dev/null || groupadd -r docker\nsystemctl preset demo.service\n"),
        );
        let pkg = package(t.path(), &bytes, "x86_64");
        let (tree, report) = unpack(&view(), &[pkg], t.path(), "packages").unwrap();
        let node = |p: &str| tree.get_str(p).unwrap();
        assert_eq!(node("/etc/demo").kind, NodeKind::Dir);
        assert_eq!(node("/etc/demo").meta, Meta::DIR);
        let conf = node("/etc/demo/demo.conf");
        assert_eq!(
            conf.meta,
            Meta {
                mode: 0o640,
                uid: 0,
                gid: 999
            }
        );
        match &conf.kind {
            NodeKind::File(Content::Host { path, size }) => {
                assert_eq!(*size, 4);
                assert_eq!(std::fs::read(path).unwrap(), b"a=1\n");
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(node("/usr/bin/demo").meta.mode, 0o4755);
        assert_eq!(
            node("/usr/bin/demo-hard").kind,
            NodeKind::Hardlink(ImagePath::new("/usr/bin/demo").unwrap())
        );
        assert_eq!(
            node("/usr/bin/demo-link").kind,
            NodeKind::Symlink("demo".into())
        );
        // Files and links keep the times the header records (rpm -V checks
        // them); directories and what nodeimg writes get the build's.
        let mtimes: Vec<Option<u64>> = [
            "/etc/demo",
            "/etc/demo/demo.conf",
            "/usr/bin/demo",
            "/usr/bin/demo-hard",
            "/usr/bin/demo-link",
            "/etc/group",
        ]
        .iter()
        .map(|p| node(p).mtime)
        .collect();
        assert_eq!(
            mtimes,
            [
                None,
                Some(1_700_000_000),
                Some(1_700_000_001),
                Some(1_700_000_001),
                Some(1_700_000_002),
                None
            ]
        );
        assert_eq!(tree.text("/etc/group"), Some("root:x:0:\ndocker:x:999:\n"));
        // Only the changed account file is written into the layer.
        assert!(tree.get_str("/etc/passwd").is_none());
        let r = &report.packages[0];
        assert_eq!(r.nevra, "demo-1.0-1.x86_64");
        assert_eq!(r.entries, 5);
        assert_eq!(r.config, ["/etc/demo/demo.conf"]);
        assert_eq!(r.not_run, ["%pre"]);
        assert_eq!(r.accounts, ["system group docker (999)"]);
        assert_eq!(r.units, ["demo.service"]);
        assert!(r.unknown_owners.is_empty());
        let text = report.to_string();
        assert!(text.contains("not run demo-1.0-1.x86_64: %pre\n"), "{text}");
    }

    #[test]
    fn unknown_owner_is_root_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        let bytes = testutil::rpm("demo", "x86_64", tags, &payload, None);
        let pkg = package(t.path(), &bytes, "x86_64");
        let (tree, report) = unpack(&view(), &[pkg], t.path(), "packages").unwrap();
        assert_eq!(tree.get_str("/etc/demo/demo.conf").unwrap().meta.gid, 0);
        assert_eq!(
            report.packages[0].unknown_owners,
            ["group docker of /etc/demo/demo.conf"]
        );
        assert!(tree.get_str("/etc/group").is_none());
    }

    #[test]
    fn refusals_name_the_package() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        // Another package than the metadata says.
        let bytes = testutil::rpm("demo", "aarch64", tags, &payload, None);
        let pkg = package(t.path(), &bytes, "x86_64");
        let e = unpack(&view(), &[pkg], t.path(), "packages").unwrap_err();
        assert_eq!(e.to_string(), "http://repo.invalid/Packages/demo.rpm: the package is demo-1.0-1.aarch64, the repository metadata says demo-1.0-1.x86_64");
        // A device node.
        let payload = testutil::cpio(&[testutil::Entry("./dev/null", 0o020666, 1, 1, b"")]);
        let bytes = testutil::rpm("demo", "x86_64", vec![], &payload, None);
        let pkg = package(t.path(), &bytes, "x86_64");
        let e = unpack(&view(), &[pkg], t.path(), "packages").unwrap_err();
        assert!(e.to_string().contains("/dev/null is a device node"), "{e}");
        // A hardlink whose data never comes.
        let payload = testutil::cpio(&[testutil::Entry("./a", 0o100644, 7, 2, b"")]);
        let bytes = testutil::rpm("demo", "x86_64", vec![], &payload, None);
        let pkg = package(t.path(), &bytes, "x86_64");
        let e = unpack(&view(), &[pkg], t.path(), "packages").unwrap_err();
        assert!(
            e.to_string().contains("the hardlinks /a have no data"),
            "{e}"
        );
        // A path leaving the root.
        let payload = testutil::cpio(&[testutil::Entry("./../etc/x", 0o100644, 7, 1, b"x")]);
        let bytes = testutil::rpm("demo", "x86_64", vec![], &payload, None);
        let pkg = package(t.path(), &bytes, "x86_64");
        let e = unpack(&view(), &[pkg], t.path(), "packages").unwrap_err();
        assert!(e.to_string().contains("payload path"), "{e}");
    }
}
