//! Unpacking resolved `.deb` files into a layer and registering them in the
//! image's dpkg database, without running dpkg or any maintainer script on
//! the build host.
//!
//! # What the layer holds
//!
//! * Every `data.tar` entry of every package, in installation order, with
//!   its mode, owner (tar owner names are mapped through the image's
//!   `/etc/passwd` and `/etc/group`, like dpkg does; unknown names keep the
//!   numeric ids; `dpkg-statoverride` entries of the image win), symlink
//!   target and hard links. Regular files are streamed
//!   once into the caller's scratch directory and referenced from there.
//! * Paths land where they land in the image below (merged-/usr: `/lib/x`
//!   on a base with `/lib -> usr/lib` is written at `/usr/lib/x`); a
//!   directory entry never replaces an existing directory or a symlink to
//!   one, as dpkg keeps both.
//! * The dpkg database: `/var/lib/dpkg/status` is the image's file with its
//!   stanzas kept byte for byte, each new package's stanza (fields in the
//!   order dpkg writes them, `Status: install ok installed`, `Conffiles`
//!   with the md5 of the unpacked content) inserted by package name or
//!   replacing the stanza of the version it upgrades; `info/<pkg>.list`
//!   (`/.` first, then the package's paths as the `.deb` names them),
//!   `.md5sums` (the package's own, else computed like dpkg does),
//!   `.conffiles`, the maintainer scripts and the other control files with
//!   their modes, named `<pkg>:<arch>.*` for `Multi-Arch: same` packages.
//!   Files of the replaced version that the new one no longer ships are
//!   removed (whiteouts), as are its info files.
//!
//! # Maintainer scripts: the declarative-effects policy
//!
//! Maintainer scripts are **never run** on the build host (the target may
//! be another architecture, the build runs without root, and a script may
//! do anything). Instead the effects that a node image needs are read from
//! the scripts and applied declaratively, when the call is literal:
//!
//! * system users and groups created with `adduser --system`, `addgroup
//!   --system`, `groupadd -r` and `useradd -r` (docker's `docker` group) are
//!   added by [`nodeimg_pkg::accounts`] (validated; `/etc/group`, `/etc/passwd`,
//!   and locked entries in `/etc/gshadow` and `/etc/shadow` when the image
//!   has them), unless the image already has them, with the first free id
//!   in 100-999 (adduser's system range, [`IdRule::ADDUSER`]), so the same
//!   inputs always give the same ids; `preinst` effects are applied before
//!   the package's files are unpacked, `postinst` effects after;
//! * `update-alternatives --install` calls are applied: the
//!   `/var/lib/dpkg/alternatives/<name>` file and the `/etc/alternatives`
//!   links, as update-alternatives writes them in auto mode;
//! * `deb-systemd-helper enable` calls are **reported** and not applied:
//!   enabling units is the job of the recipe's `systemd` item, and the lint
//!   uses the report to suggest it.
//!
//! Not checked: whether a new package overwrites a file that a package of
//! the base owns (dpkg refuses that without `Replaces`); between the
//! packages of one installation it is checked.
//!
//! Everything else is listed in the [`InstallReport`]: every `preinst`,
//! `postinst` and `config` script (and, for an upgrade, the old version's
//! `prerm` and `postrm`) appears as "not run" together with what was
//! applied from it and which recognised calls could not be taken literally;
//! dpkg triggers that the new files or the packages' `triggers` files would
//! activate are listed too. Nothing is dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use nodeimg_layers::tree::Origin;
use nodeimg_layers::{Content, FileTree, ImagePath, Meta, Node, NodeKind, RootView, StatKind};
use serde::Serialize;

use super::control::{self, MultiArch, Stanza, Syntax};
use super::debfile::{ControlFiles, DataEntry, Deb, DebError, EntryKind};
use super::resolve::Planned;
use nodeimg_pkg::accounts::{Accounts, AccountsError, IdRule, Request};
use nodeimg_pkg::scripts::{self, AlternativeSpec, Effect, Located};

const STATUS: &str = "/var/lib/dpkg/status";
const INFO: &str = "/var/lib/dpkg/info";
const ALTERNATIVES_DB: &str = "/var/lib/dpkg/alternatives";
const STATOVERRIDE: &str = "/var/lib/dpkg/statoverride";

/// A dpkg state file of the image as text; `None` when absent. One the
/// image has but whose bytes cannot be read is an error, never taken for
/// an empty file.
fn read_state(view: &dyn RootView, path: &str) -> Result<Option<String>, InstallError> {
    let bad = |message: String| InstallError::Image {
        path: path.to_string(),
        message,
    };
    match view.read_required(path).map_err(|e| bad(e.to_string()))? {
        None => Ok(None),
        Some(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| bad("is not UTF-8; fix the base image".into())),
    }
}
const ALTERNATIVES_DIR: &str = "/etc/alternatives";

/// The fields dpkg knows, in the order it writes them to the status file;
/// other fields follow in the order of the package's control file.
const DPKG_FIELD_ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Fields dpkg never keeps for an installed package.
const NOT_INSTALLED_FIELDS: &[&str] = &[
    "Status",
    "Conffiles",
    "Config-Version",
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
    "Triggers-Pending",
    "Triggers-Awaited",
];

const DEPENDENCY_FIELDS: &[&str] = &[
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
];

/// Names of the info files dpkg may keep for a package.
const INFO_SUFFIXES: &[&str] = &[
    "list",
    "md5sums",
    "conffiles",
    "preinst",
    "postinst",
    "prerm",
    "postrm",
    "config",
    "templates",
    "triggers",
    "shlibs",
    "symbols",
];

/// One package to install: the verified `.deb` and what the resolver
/// planned for it.
#[derive(Debug, Clone)]
pub struct Package {
    /// The verified `.deb` in the download cache, open: read from this
    /// handle, never from its path.
    pub deb: nodeimg_fetch::cachefile::CachedFile,
    /// The resolver's answer for it.
    pub planned: Planned,
}

/// Why an installation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The `.deb` is unreadable or malformed.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// A host file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The host path.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A package cannot be installed as it is.
    #[error("package {package}: {message}")]
    Package {
        /// `name=version`.
        package: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A script asks for an account that cannot be added, or the image's
    /// account files are unusable.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The image's own files (dpkg status, alternatives) are unusable.
    #[error("{path} in the image: {message}")]
    Image {
        /// Image path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The control file of a package is not the control data of one
    /// package.
    #[error("package {package}: control file: {source}")]
    Control {
        /// `name=version`.
        package: String,
        /// What is wrong, at which line.
        #[source]
        source: control::ControlError,
    },
    /// A stanza of the image's dpkg status is not control data; the line
    /// is the file's.
    #[error("{path} in the image: {source}")]
    ImageControl {
        /// Image path.
        path: String,
        /// What is wrong, at which line.
        #[source]
        source: control::ControlError,
    },
}

/// The result: the layer's files and what was done.
#[derive(Debug)]
pub struct Installed {
    /// Every file of the packages plus the dpkg database and the
    /// declaratively applied effects.
    pub tree: FileTree,
    /// What was installed and what was not run.
    pub report: InstallReport,
}

/// What an installation did, for the user and the lint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// The installed packages, in installation order.
    pub packages: Vec<PackageReport>,
    /// Number of data entries unpacked, all packages together.
    pub files: usize,
    /// System groups added to `/etc/group`.
    pub groups_added: Vec<AccountAdded>,
    /// System users added to `/etc/passwd`.
    pub users_added: Vec<AccountAdded>,
    /// Alternatives registered.
    pub alternatives: Vec<AlternativeSet>,
    /// Units a script would enable; enable them with the `systemd` item.
    pub systemd_enable: Vec<UnitToEnable>,
    /// Maintainer scripts that were not run.
    pub scripts_not_run: Vec<ScriptNotRun>,
    /// dpkg triggers that were not processed.
    pub triggers_not_run: Vec<TriggerNotRun>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageReport {
    /// Package name.
    pub name: String,
    /// Version installed.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// Number of data entries.
    pub files: usize,
    /// Conffiles with their md5.
    pub conffiles: Vec<String>,
    /// The version it replaced, when an upgrade or downgrade.
    pub replaced: Option<String>,
}

/// A user or group added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountAdded {
    /// Name.
    pub name: String,
    /// Numeric id.
    pub id: u32,
    /// The package whose script asks for it.
    pub package: String,
}

/// An alternative registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlternativeSet {
    /// Alternative name.
    pub name: String,
    /// The generic link.
    pub link: String,
    /// The path it points to now (the highest priority).
    pub path: String,
    /// The package that offered a choice.
    pub package: String,
}

/// A unit a maintainer script would enable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitToEnable {
    /// Package.
    pub package: String,
    /// Unit name.
    pub unit: String,
}

/// A maintainer script that was not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptNotRun {
    /// Package.
    pub package: String,
    /// `preinst`, `postinst`, `config`, or `prerm`/`postrm` of a replaced
    /// version.
    pub script: String,
    /// Effects applied (or reported) from it instead.
    pub applied: Vec<String>,
    /// Recognised calls that could not be applied.
    pub not_understood: Vec<String>,
}

/// A dpkg trigger that was not processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerNotRun {
    /// Trigger name (a path for file triggers).
    pub trigger: String,
    /// The package interested in it, when the image says.
    pub interested: Option<String>,
    /// The package that activates it.
    pub activated_by: String,
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.packages {
            write!(
                f,
                "installed: {} {} {} ({} files)",
                p.name, p.version, p.architecture, p.files
            )?;
            if let Some(r) = &p.replaced {
                write!(f, ", replacing {r}")?;
            }
            writeln!(f)?;
        }
        for g in &self.groups_added {
            writeln!(f, "group added: {} ({}) for {}", g.name, g.id, g.package)?;
        }
        for u in &self.users_added {
            writeln!(f, "user added: {} ({}) for {}", u.name, u.id, u.package)?;
        }
        for a in &self.alternatives {
            writeln!(
                f,
                "alternative: {} -> {} ({}) from {}",
                a.link, a.path, a.name, a.package
            )?;
        }
        for u in &self.systemd_enable {
            writeln!(
                f,
                "unit to enable: {} (from {}); enable it with the systemd item",
                u.unit, u.package
            )?;
        }
        for s in &self.scripts_not_run {
            write!(f, "not run: {} {}", s.package, s.script)?;
            if !s.applied.is_empty() {
                write!(f, " (applied instead: {})", s.applied.join(", "))?;
            }
            if !s.not_understood.is_empty() {
                write!(f, " (not applied: {})", s.not_understood.join("; "))?;
            }
            writeln!(f)?;
        }
        for t in &self.triggers_not_run {
            write!(
                f,
                "trigger not run: {} activated by {}",
                t.trigger, t.activated_by
            )?;
            if let Some(i) = &t.interested {
                write!(f, " (for {i})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn ipath(s: &str) -> Result<ImagePath, InstallError> {
    ImagePath::new(s).map_err(|e| InstallError::Image {
        path: s.to_string(),
        message: e.to_string(),
    })
}

/// Installs `packages` (in this order, as the resolver ordered them) over
/// `view` for `arch` (Debian's spelling: `amd64`, `arm64`, `armhf`),
/// extracting file contents into a new directory below `scratch` (which
/// must outlive the returned tree).
/// Entries get the origin item `packages` and the key `<key_prefix>[<i>]`,
/// `i` being the package's index; the shared database files get
/// `key_prefix` itself.
pub fn install(
    view: &dyn RootView,
    packages: &[Package],
    arch: &str,
    scratch: &Path,
    key_prefix: &str,
) -> Result<Installed, InstallError> {
    let mut st = State {
        view,
        tree: FileTree::new(),
        owner: BTreeMap::new(),
        accounts: Accounts::read(view, IdRule::ADDUSER)?,
        overrides: read_statoverride(view)?,
        report: InstallReport::default(),
        alternatives: BTreeMap::new(),
        info_written: BTreeSet::new(),
        stale_info: BTreeSet::new(),
    };
    let mut status = StatusDb::read(view)?;
    std::fs::create_dir_all(scratch).map_err(io_err(scratch))?;
    // A directory of its own, so that several installations can share the
    // caller's scratch directory.
    let scratch = &tempfile::Builder::new()
        .prefix("packages-")
        .tempdir_in(scratch)
        .map_err(io_err(scratch))?
        .keep();
    for (i, pkg) in packages.iter().enumerate() {
        let origin = Origin::new("packages", format!("{key_prefix}[{i}]"));
        let stanza = st.unpack(i, pkg, arch, scratch, &origin, &status)?;
        status.put(stanza, &pkg.planned);
    }
    let shared = Origin::new("packages", key_prefix);
    st.finish_alternatives(&shared)?;
    st.accounts.write(&mut st.tree, &shared);
    for p in std::mem::take(&mut st.stale_info) {
        if !st.info_written.contains(&p) {
            st.tree.replace(p, Node::whiteout(shared.clone()));
        }
    }
    if st.view.stat(&ipath("/var/lib/dpkg/info/format")?).is_none() && !packages.is_empty() {
        let p = view.resolve_parent(&ipath("/var/lib/dpkg/info/format")?);
        st.tree.replace(p, Node::file("1\n", shared.clone()));
    }
    let status_path = view.resolve(&ipath(STATUS)?);
    let meta = view.stat(&status_path).map_or(Meta::FILE, |s| s.meta);
    st.tree.replace(
        status_path,
        Node::file(status.render(), shared).with_meta(meta),
    );
    Ok(Installed {
        tree: st.tree,
        report: st.report,
    })
}

struct State<'a> {
    view: &'a dyn RootView,
    tree: FileTree,
    /// Which package (index, name) wrote each non-directory path.
    owner: BTreeMap<ImagePath, (usize, String)>,
    accounts: Accounts,
    /// `dpkg-statoverride` entries of the image: path -> (owner, group, mode).
    overrides: BTreeMap<String, (String, String, u32)>,
    report: InstallReport,
    alternatives: BTreeMap<String, (Alternative, String)>,
    info_written: BTreeSet<ImagePath>,
    stale_info: BTreeSet<ImagePath>,
}

/// What one data entry became, for the list, md5sums and conffiles.
struct Unpacked {
    /// Path as the `.deb` names it.
    deb_path: ImagePath,
    md5: Option<String>,
}

/// The package being unpacked, as the checks and messages name it.
struct Unpacking<'o> {
    /// Its place in the installation order.
    index: usize,
    /// `name=version`, naming the package in messages.
    label: String,
    /// The binary package's name.
    name: String,
    /// The packages whose files it may take over (`Replaces`).
    replaces: BTreeSet<String>,
    origin: &'o Origin,
}

impl Unpacking<'_> {
    fn err(&self, message: String) -> InstallError {
        InstallError::Package {
            package: self.label.clone(),
            message,
        }
    }

    /// A node of the package: `mtime` is the time the package records
    /// for it (kept for files and links, so that package verifiers find
    /// it), `None` for directories, which the build's time dates.
    fn node(&self, kind: NodeKind, meta: Meta, mtime: Option<u64>) -> Node {
        Node {
            kind,
            meta,
            origin: self.origin.clone(),
            mtime,
        }
    }
}

/// What the data entries of one package became.
struct DataUnpacked {
    /// The scratch directory holding the package's regular files.
    dir: PathBuf,
    /// The lines of `info/<pkg>.list`: `/.`, then the paths as the `.deb`
    /// names them.
    list: Vec<String>,
    unpacked: Vec<Unpacked>,
    md5_of: BTreeMap<ImagePath, String>,
    /// The files whose md5 is computed as they are unpacked: every one
    /// (`None`) when the package has no `md5sums`, else its conffiles.
    md5_for: Option<BTreeSet<ImagePath>>,
    /// The scratch file of each regular file (for the md5 of a conffile
    /// that is a hard link to a file whose md5 was not computed).
    host_of: BTreeMap<ImagePath, PathBuf>,
    /// Where each path of the `.deb` landed in the image.
    landed_of: BTreeMap<ImagePath, ImagePath>,
    /// Entries other than the root directory.
    count: usize,
}

/// The maintainer scripts of a package as far as they are applied or
/// reported.
struct ScriptsRead {
    not_run: Vec<ScriptNotRun>,
    /// `postinst` and `config` effects, applied after the files.
    post_effects: Vec<(&'static str, Located)>,
}

/// Opens `pkg`'s `.deb` and checks its control file against what the
/// resolver planned and against the image's `arch`; `label` names the
/// package in messages.
fn open_deb<'p>(
    pkg: &'p Package,
    arch: &str,
    label: &str,
) -> Result<(Deb<'p>, Stanza, control::BinaryPackage), InstallError> {
    let planned = &pkg.planned;
    let perr = |message: String| InstallError::Package {
        package: label.to_string(),
        message,
    };
    let deb_name = pkg.deb.path().file_name().map_or_else(
        || pkg.deb.path().display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let deb = Deb::open(
        BufReader::new(pkg.deb.reader()),
        &format!("{label} ({deb_name})"),
    )?;
    let text = deb
        .control()
        .control_text()
        .ok_or_else(|| perr("the control file is not UTF-8".into()))?;
    let cerr = |source| InstallError::Control {
        package: label.to_string(),
        source,
    };
    let stanzas = control::parse(text, Syntax::strict()).map_err(cerr)?;
    let [control]: [Stanza; 1] = stanzas.try_into().map_err(|s: Vec<Stanza>| {
        perr(format!(
            "the control file holds {} stanzas instead of one",
            s.len()
        ))
    })?;
    let bin = control::BinaryPackage::from_stanza(&control).map_err(cerr)?;
    if bin.name != planned.name
        || bin.version != planned.version
        || bin.architecture != planned.architecture
    {
        return Err(perr(format!(
            "the .deb is {} {} {}, not what the repository index announced ({} {} {}); \
             the repository is inconsistent, refresh it or pin another version",
            bin.name,
            bin.version,
            bin.architecture,
            planned.name,
            planned.version,
            planned.architecture
        )));
    }
    if bin.architecture != "all" && bin.architecture != arch {
        return Err(perr(format!(
            "architecture {} does not match the image's {arch}",
            bin.architecture
        )));
    }
    Ok((deb, control, bin))
}

/// The `conffiles` control file: each path with its flags.
fn conffile_entries(control_files: &ControlFiles) -> Vec<(String, Vec<String>)> {
    let mut conffiles = Vec::new();
    for line in control_files.conffiles() {
        let mut words = line.split_whitespace();
        let Some(path) = words.next() else { continue };
        conffiles.push((path.to_string(), words.map(str::to_string).collect()));
    }
    conffiles
}

/// The status file's `Conffiles` lines: each conffile with the md5 of what
/// was unpacked, then its flags.
fn conffile_lines(
    u: &Unpacking,
    conffiles: &[(String, Vec<String>)],
    md5_of: &BTreeMap<ImagePath, String>,
) -> Result<Vec<String>, InstallError> {
    let mut lines = Vec::new();
    for (path, flags) in conffiles {
        let p = ImagePath::new(path).map_err(|m| u.err(format!("conffiles: {m}")))?;
        let md5 = match md5_of.get(&p) {
            Some(m) => m.clone(),
            None if flags.iter().any(|f| f == "remove-on-upgrade") => "newconffile".into(),
            None => {
                return Err(u.err(format!(
                    "conffile {path} is not a regular file of the package"
                )))
            }
        };
        let mut line = format!("{path} {md5}");
        for f in flags {
            line.push(' ');
            line.push_str(f);
        }
        lines.push(line);
    }
    Ok(lines)
}

impl State<'_> {
    fn unpack(
        &mut self,
        index: usize,
        pkg: &Package,
        arch: &str,
        scratch: &Path,
        origin: &Origin,
        status: &StatusDb,
    ) -> Result<Stanza, InstallError> {
        let planned = &pkg.planned;
        let label = format!("{}={}", planned.name, planned.version);
        let (mut deb, control, bin) = open_deb(pkg, arch, &label)?;
        let control_files = deb.control().clone();
        let multi_same = bin.multi_arch == MultiArch::Same || planned.multi_arch == MultiArch::Same;
        let info_name = if multi_same {
            format!("{}:{}", bin.name, bin.architecture)
        } else {
            bin.name.clone()
        };
        let u = Unpacking {
            index,
            label,
            name: bin.name.clone(),
            replaces: bin
                .replaces
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect(),
            origin,
        };
        let conffiles = conffile_entries(&control_files);

        // Scripts: preinst effects before the files, postinst effects after.
        let ScriptsRead {
            mut not_run,
            post_effects,
        } = self.read_scripts(&u, &control_files)?;

        // dpkg's md5sums come with the package; computed only when it has
        // none, and for the conffiles (their md5 goes into the status).
        let md5_for = control_files.files.contains_key("md5sums").then(|| {
            conffiles
                .iter()
                .filter_map(|(p, _)| ImagePath::new(p).ok())
                .collect()
        });
        let data = self.unpack_data(&u, &mut deb, scratch.join(index.to_string()), md5_for)?;
        self.report.files += data.count;
        let conffile_lines = conffile_lines(&u, &conffiles, &data.md5_of)?;

        // Upgrade: remove what the old version shipped and the new one does not.
        let mut replaced = None;
        if let Some(old) = status.find(&bin.name, &bin.architecture, multi_same) {
            replaced = Some(old.version.clone());
            self.remove_old_version(&u, &old, &data.list, &mut not_run)?;
        }

        self.write_info_files(&info_name, &control_files, &data, origin)?;

        // Post-unpack effects.
        for (script, e) in &post_effects {
            self.apply(e, &u.label, script, &u.name, origin)?;
        }
        self.report.scripts_not_run.extend(not_run);

        // Triggers.
        self.triggers(&bin.name, &control_files, &data.list)?;

        self.report.packages.push(PackageReport {
            name: bin.name.clone(),
            version: bin.version.to_string(),
            architecture: bin.architecture.clone(),
            files: data.count,
            conffiles: conffile_lines.clone(),
            replaced,
        });
        Ok(status_stanza(&control, &conffile_lines))
    }

    /// Scans the `preinst`, `postinst` and `config` scripts: applies the
    /// `preinst` effects now, returns the others to apply after the files,
    /// and lists every script as not run.
    fn read_scripts(
        &mut self,
        u: &Unpacking,
        control_files: &ControlFiles,
    ) -> Result<ScriptsRead, InstallError> {
        let mut read = ScriptsRead {
            not_run: Vec::new(),
            post_effects: Vec::new(),
        };
        for script in ["preinst", "postinst", "config"] {
            let Some(body) = control_files.get(script) else {
                continue;
            };
            let scan = scripts::scan(&String::from_utf8_lossy(body));
            let mut applied = Vec::new();
            let effects = scan.effects;
            if script == "preinst" {
                for e in &effects {
                    applied.push(self.apply(e, &u.label, script, &u.name, u.origin)?);
                }
            } else {
                applied.extend(effects.iter().map(|e| describe_effect(&e.effect)));
                read.post_effects
                    .extend(effects.into_iter().map(|e| (script, e)));
            }
            read.not_run.push(ScriptNotRun {
                package: u.name.clone(),
                script: script.to_string(),
                applied,
                not_understood: scan.not_understood,
            });
        }
        Ok(read)
    }

    /// Unpacks the data entries of `deb`, regular files into `dir`.
    fn unpack_data(
        &mut self,
        u: &Unpacking,
        deb: &mut Deb,
        dir: PathBuf,
        md5_for: Option<BTreeSet<ImagePath>>,
    ) -> Result<DataUnpacked, InstallError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut data = DataUnpacked {
            dir,
            list: vec!["/.".to_string()],
            unpacked: Vec::new(),
            md5_of: BTreeMap::new(),
            md5_for,
            host_of: BTreeMap::new(),
            landed_of: BTreeMap::new(),
            count: 0,
        };
        for entry in deb.entries()? {
            let mut entry = entry?;
            let deb_path = ImagePath::from_archive(&entry.path)
                .map_err(|m| u.err(format!("data.tar: {m}")))?;
            if deb_path.is_root() {
                continue;
            }
            data.count += 1;
            data.list.push(deb_path.to_string());
            let landed = self.view.resolve_parent(&deb_path);
            data.landed_of.insert(deb_path.clone(), landed.clone());
            let meta = self.entry_meta(&entry, &deb_path);
            match &entry.kind {
                EntryKind::Dir => {
                    let keeps = self.keeps_dir(&landed);
                    data.unpacked.push(Unpacked {
                        deb_path,
                        md5: None,
                    });
                    if !keeps {
                        self.put(u, landed, u.node(NodeKind::Dir, meta, None))?;
                    }
                }
                EntryKind::File => {
                    self.unpack_file(u, &mut data, &mut entry, deb_path, landed, meta)?;
                }
                EntryKind::Symlink => {
                    let target = entry.link_target.clone().unwrap_or_default();
                    data.unpacked.push(Unpacked {
                        deb_path,
                        md5: None,
                    });
                    let node = u.node(NodeKind::Symlink(target), meta, Some(entry.mtime));
                    self.put(u, landed, node)?;
                }
                EntryKind::Hardlink => {
                    let target = entry.link_target.as_deref().unwrap_or("");
                    let at = (deb_path, landed);
                    self.unpack_hardlink(u, &mut data, target, at, meta, entry.mtime)?;
                }
                other => {
                    return Err(u.err(format!(
                        "{deb_path} is a {other:?}; device nodes and fifos cannot be shipped in \
                         an image layer, create them at boot instead (e.g. systemd-tmpfiles)"
                    )))
                }
            }
        }
        Ok(data)
    }

    /// The mode and owner of a data entry: tar owner names mapped through
    /// the image's accounts, then the image's `dpkg-statoverride` entry.
    fn entry_meta(&self, entry: &DataEntry, deb_path: &ImagePath) -> Meta {
        let mut meta = Meta {
            mode: entry.mode & 0o7777,
            uid: entry
                .uname
                .as_deref()
                .and_then(|n| self.accounts.uid(n))
                .unwrap_or_else(|| u32::try_from(entry.uid).unwrap_or(0)),
            gid: entry
                .gname
                .as_deref()
                .and_then(|n| self.accounts.gid(n))
                .unwrap_or_else(|| u32::try_from(entry.gid).unwrap_or(0)),
        };
        if let Some((user, group, mode)) = self.overrides.get(deb_path.as_str()) {
            let by = |v: &str, named: Option<u32>| v.strip_prefix('#').and_then(id_of).or(named);
            meta.uid = by(user, self.accounts.uid(user)).unwrap_or(meta.uid);
            meta.gid = by(group, self.accounts.gid(group)).unwrap_or(meta.gid);
            meta.mode = *mode;
        }
        meta
    }

    /// Whether a directory entry landing at `landed` leaves what is there:
    /// a directory (or a symlink to one) of the image, or a directory an
    /// earlier package wrote.
    fn keeps_dir(&self, landed: &ImagePath) -> bool {
        let keeps = match self.view.stat(landed).map(|s| s.kind) {
            Some(StatKind::Dir) => true,
            Some(StatKind::Symlink(_)) => matches!(
                self.view.stat_follow(landed).map(|s| s.kind),
                Some(StatKind::Dir)
            ),
            _ => false,
        };
        keeps || matches!(self.tree.get(landed).map(|n| &n.kind), Some(NodeKind::Dir))
    }

    /// Streams a regular file into the scratch directory and adds it.
    fn unpack_file(
        &mut self,
        u: &Unpacking,
        data: &mut DataUnpacked,
        entry: &mut DataEntry,
        deb_path: ImagePath,
        landed: ImagePath,
        meta: Meta,
    ) -> Result<(), InstallError> {
        let host = data.dir.join(data.unpacked.len().to_string());
        let want_md5 = data
            .md5_for
            .as_ref()
            .is_none_or(|only| only.contains(&deb_path));
        let (size, md5) = extract(entry, &host, want_md5)?;
        if size != entry.size {
            return Err(u.err(format!(
                "{deb_path}: read {size} bytes, the archive announced {}",
                entry.size
            )));
        }
        if let Some(m) = &md5 {
            data.md5_of.insert(deb_path.clone(), m.clone());
        }
        data.host_of.insert(deb_path.clone(), host.clone());
        data.unpacked.push(Unpacked { deb_path, md5 });
        let kind = NodeKind::File(Content::Host { path: host, size });
        self.put(u, landed, u.node(kind, meta, Some(entry.mtime)))
    }

    /// Adds a hard link to `target`, an entry the package shipped before.
    fn unpack_hardlink(
        &mut self,
        u: &Unpacking,
        data: &mut DataUnpacked,
        target: &str,
        (deb_path, landed): (ImagePath, ImagePath),
        meta: Meta,
        mtime: u64,
    ) -> Result<(), InstallError> {
        let target = ImagePath::from_archive(target)
            .map_err(|m| u.err(format!("{deb_path}: hard link target: {m}")))?;
        let Some(landed_target) = data.landed_of.get(&target).cloned() else {
            return Err(u.err(format!(
                "{deb_path}: hard link to {target}, which the package does not ship before it"
            )));
        };
        let wanted = data
            .md5_for
            .as_ref()
            .is_none_or(|only| only.contains(&deb_path));
        let known = match data.md5_of.get(&target).cloned() {
            Some(m) => Some(m),
            None if wanted => match data.host_of.get(&target) {
                Some(host) => Some(md5_of_file(host)?),
                None => None,
            },
            None => None,
        };
        if let Some(m) = known {
            data.md5_of.insert(deb_path.clone(), m.clone());
            data.unpacked.push(Unpacked {
                deb_path,
                md5: Some(m),
            });
        }
        let node = u.node(NodeKind::Hardlink(landed_target), meta, Some(mtime));
        self.put(u, landed, node)
    }

    /// Removes what the `old` version shipped and the new one (`list`) does
    /// not, marks its info files stale, and lists its `prerm` and `postrm`
    /// as not run.
    fn remove_old_version(
        &mut self,
        u: &Unpacking,
        old: &OldPackage,
        list: &[String],
        not_run: &mut Vec<ScriptNotRun>,
    ) -> Result<(), InstallError> {
        let new_paths: BTreeSet<&str> = list.iter().map(String::as_str).collect();
        for old_info in old_info_names(&u.name, &old.architecture) {
            for suffix in ["prerm", "postrm"] {
                let p = ipath(&format!("{INFO}/{old_info}.{suffix}"))?;
                if self.view.stat(&p).is_some() {
                    not_run.push(ScriptNotRun {
                        package: u.name.clone(),
                        script: format!("{suffix} of {} {}", u.name, old.version),
                        applied: Vec::new(),
                        not_understood: Vec::new(),
                    });
                }
            }
            let list_path = ipath(&format!("{INFO}/{old_info}.list"))?;
            if let Some(text) = self.view.read(&list_path) {
                self.whiteout_dropped(old, &String::from_utf8_lossy(&text), &new_paths, u.origin);
            }
            for suffix in INFO_SUFFIXES {
                let p = ipath(&format!("{INFO}/{old_info}.{suffix}"))?;
                if self.view.stat(&p).is_some() {
                    self.stale_info.insert(self.view.resolve_parent(&p));
                }
            }
        }
        Ok(())
    }

    /// Whiteouts for the paths of the old version's `old_list` that the new
    /// version does not ship, leaving directories, conffiles and paths this
    /// installation wrote.
    fn whiteout_dropped(
        &mut self,
        old: &OldPackage,
        old_list: &str,
        new_paths: &BTreeSet<&str>,
        origin: &Origin,
    ) {
        for line in old_list.lines() {
            if line == "/." || new_paths.contains(line) {
                continue;
            }
            let Ok(p) = ImagePath::new(line) else {
                continue;
            };
            let landed = self.view.resolve_parent(&p);
            let is_dir = matches!(
                self.view.stat_follow(&landed).map(|s| s.kind),
                Some(StatKind::Dir)
            );
            let is_conffile = old.conffiles.iter().any(|c| c == line);
            if is_dir || is_conffile || self.tree.get(&landed).is_some() {
                continue;
            }
            if self.view.stat(&landed).is_some() {
                self.tree.replace(landed, Node::whiteout(origin.clone()));
            }
        }
    }

    /// Writes the package's info files: the list, the md5sums (the
    /// package's own, else computed) and the other control files.
    fn write_info_files(
        &mut self,
        info_name: &str,
        control_files: &ControlFiles,
        data: &DataUnpacked,
        origin: &Origin,
    ) -> Result<(), InstallError> {
        let mut list_text = data.list.join("\n");
        list_text.push('\n');
        self.info(info_name, "list", list_text.into_bytes(), 0o644, origin)?;
        let md5sums = match control_files.files.get("md5sums") {
            Some(f) => (f.contents.clone(), f.mode),
            None => {
                let mut s = String::new();
                for u in &data.unpacked {
                    if let Some(m) = &u.md5 {
                        s.push_str(&format!("{m}  {}\n", u.deb_path.relative()));
                    }
                }
                (s.into_bytes(), 0o644)
            }
        };
        self.info(info_name, "md5sums", md5sums.0, md5sums.1, origin)?;
        for (name, f) in &control_files.files {
            if name == "control" || name == "md5sums" {
                continue;
            }
            if name.contains('/') || name.starts_with('.') {
                continue;
            }
            self.info(info_name, name, f.contents.clone(), f.mode & 0o7777, origin)?;
        }
        Ok(())
    }

    /// Adds a non-directory entry, refusing a path another package of this
    /// installation already wrote unless this one `Replaces` it.
    fn put(&mut self, u: &Unpacking, landed: ImagePath, node: Node) -> Result<(), InstallError> {
        if let Some((i, other)) = self.owner.get(&landed) {
            if *i != u.index && !u.replaces.contains(other) {
                return Err(u.err(format!(
                    "{landed} is also shipped by {other}; a package that takes over files must \
                     declare `Replaces: {other}`"
                )));
            }
        }
        if node.kind != NodeKind::Dir {
            self.owner.insert(landed.clone(), (u.index, u.name.clone()));
        }
        self.tree.replace(landed, node);
        Ok(())
    }

    fn info(
        &mut self,
        info_name: &str,
        suffix: &str,
        bytes: Vec<u8>,
        mode: u32,
        origin: &Origin,
    ) -> Result<(), InstallError> {
        let p = self
            .view
            .resolve_parent(&ipath(&format!("{INFO}/{info_name}.{suffix}"))?);
        self.info_written.insert(p.clone());
        self.tree.replace(
            p,
            Node::file(bytes, origin.clone()).with_meta(Meta::mode(mode)),
        );
        Ok(())
    }

    fn triggers(
        &mut self,
        package: &str,
        control: &ControlFiles,
        list: &[String],
    ) -> Result<(), InstallError> {
        if let Some(t) = control.get("triggers") {
            for line in String::from_utf8_lossy(t).lines() {
                let mut w = line.split_whitespace();
                match (w.next(), w.next()) {
                    (Some(d), Some(name)) if d.starts_with("activate") => {
                        let interested = self
                            .view
                            .read_text(&format!("/var/lib/dpkg/triggers/{name}"))
                            .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
                            .filter(|s| !s.is_empty());
                        self.report.triggers_not_run.push(TriggerNotRun {
                            trigger: name.to_string(),
                            interested,
                            activated_by: package.to_string(),
                        });
                    }
                    (Some(d), Some(name)) if d.starts_with("interest") => {
                        self.report.scripts_not_run.push(ScriptNotRun {
                            package: package.to_string(),
                            script: "triggers".into(),
                            applied: Vec::new(),
                            not_understood: vec![format!("{d} {name} (not registered)")],
                        });
                    }
                    _ => {}
                }
            }
        }
        let Some(file) = read_state(self.view, "/var/lib/dpkg/triggers/File")? else {
            return Ok(());
        };
        for line in file.lines() {
            let Some((path, who)) = line.split_once(' ') else {
                continue;
            };
            let Ok(tp) = ImagePath::new(path) else {
                continue;
            };
            let hit = list
                .iter()
                .filter_map(|l| ImagePath::new(l).ok())
                .any(|p| p.starts_with(&tp));
            if hit {
                let who = who.trim();
                let who = who.strip_suffix("/noawait").unwrap_or(who);
                self.report.triggers_not_run.push(TriggerNotRun {
                    trigger: path.to_string(),
                    interested: Some(who.to_string()),
                    activated_by: package.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Applies (or records) one effect of `script` of the package `label`
    /// (`name=version`) named `package`; returns how it is described in the
    /// report.
    fn apply(
        &mut self,
        located: &Located,
        label: &str,
        script: &str,
        package: &str,
        origin: &Origin,
    ) -> Result<String, InstallError> {
        let who = Request {
            package: label,
            script,
            line: located.line,
        };
        let e = &located.effect;
        match e {
            Effect::Group(g) => {
                if let Some(id) = self.accounts.add_group(g, &who)? {
                    self.report.groups_added.push(AccountAdded {
                        name: g.name.clone(),
                        id,
                        package: package.to_string(),
                    });
                }
            }
            Effect::User(u) => {
                if let Some(added) = self.accounts.add_user(u, &who)? {
                    let (uid, gid) = (added.uid, added.gid);
                    if let Some(g) = added.own_group {
                        self.report.groups_added.push(AccountAdded {
                            name: u.name.clone(),
                            id: g,
                            package: package.to_string(),
                        });
                    }
                    self.report.users_added.push(AccountAdded {
                        name: u.name.clone(),
                        id: uid,
                        package: package.to_string(),
                    });
                    if u.create_home {
                        if let Ok(h) = ImagePath::new(&u.home) {
                            let landed = self.view.resolve_parent(&h);
                            if self.view.stat_follow(&landed).is_none() {
                                self.tree.replace(
                                    landed,
                                    Node::dir(origin.clone()).with_meta(Meta {
                                        mode: 0o755,
                                        uid,
                                        gid,
                                    }),
                                );
                            }
                        }
                    }
                }
            }
            Effect::Alternative(a) => {
                let entry = match self.alternatives.remove(&a.name) {
                    Some(x) => x,
                    None => (Alternative::read(self.view, &a.name)?, package.to_string()),
                };
                let (mut alt, _) = entry;
                alt.add(a);
                self.alternatives
                    .insert(a.name.clone(), (alt, package.to_string()));
            }
            Effect::SystemdEnable(unit) => self.report.systemd_enable.push(UnitToEnable {
                package: package.to_string(),
                unit: unit.clone(),
            }),
        }
        Ok(describe_effect(e))
    }

    fn exists(&self, p: &ImagePath) -> bool {
        let landed = self.view.resolve_parent(p);
        self.tree.get(&landed).is_some() || self.view.stat_follow(&landed).is_some()
    }

    fn finish_alternatives(&mut self, origin: &Origin) -> Result<(), InstallError> {
        let alts = std::mem::take(&mut self.alternatives);
        for (name, (alt, package)) in alts {
            let best = alt.best(self.view, &name);
            let db = self
                .view
                .resolve_parent(&ipath(&format!("{ALTERNATIVES_DB}/{name}"))?);
            self.tree
                .replace(db, Node::file(alt.render(), origin.clone()));
            let Some(best) = best else { continue };
            let choice = &alt.choices[&best];
            self.link_alternative(&alt.link, &name, &best, origin)?;
            for (i, (sname, slink)) in alt.slaves.iter().enumerate() {
                match choice.1.get(i).filter(|p| !p.is_empty()) {
                    Some(path) if ImagePath::new(path).is_ok_and(|p| self.exists(&p)) => {
                        self.link_alternative(slink, sname, path, origin)?;
                    }
                    _ => {}
                }
            }
            self.report.alternatives.push(AlternativeSet {
                name: name.clone(),
                link: alt.link.clone(),
                path: best.clone(),
                package,
            });
        }
        Ok(())
    }

    fn link_alternative(
        &mut self,
        link: &str,
        name: &str,
        path: &str,
        origin: &Origin,
    ) -> Result<(), InstallError> {
        let etc = self
            .view
            .resolve_parent(&ipath(&format!("{ALTERNATIVES_DIR}/{name}"))?);
        self.tree
            .replace(etc, Node::symlink(path.to_string(), origin.clone()));
        let l = self.view.resolve_parent(&ipath(link)?);
        let blocked = match self.tree.get(&l) {
            Some(n) => !matches!(n.kind, NodeKind::Symlink(_)),
            None => matches!(
                self.view.stat(&l).map(|s| s.kind),
                Some(StatKind::File(_) | StatKind::Dir | StatKind::Other)
            ),
        };
        if !blocked {
            self.tree.replace(
                l,
                Node::symlink(format!("{ALTERNATIVES_DIR}/{name}"), origin.clone()),
            );
        }
        Ok(())
    }
}

fn id_of(s: &str) -> Option<u32> {
    s.parse().ok()
}

/// `/var/lib/dpkg/statoverride`: `owner group mode path` per line, the mode
/// in octal, owner and group as names or `#id`.
fn read_statoverride(
    view: &dyn RootView,
) -> Result<BTreeMap<String, (String, String, u32)>, InstallError> {
    let mut out = BTreeMap::new();
    let Some(text) = read_state(view, STATOVERRIDE)? else {
        return Ok(out);
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let [user, group, mode, path] = w[..] {
            if let Ok(m) = u32::from_str_radix(mode, 8) {
                out.insert(
                    path.to_string(),
                    (user.to_string(), group.to_string(), m & 0o7777),
                );
            }
        }
    }
    Ok(out)
}

fn describe_effect(e: &Effect) -> String {
    match e {
        Effect::SystemdEnable(u) => format!("reported: enable {u}"),
        other => other.to_string(),
    }
}

fn old_info_names(name: &str, arch: &str) -> Vec<String> {
    vec![name.to_string(), format!("{name}:{arch}")]
}

/// Streams one file's contents to `host`, returning size and md5.
/// The md5 of the scratch file `host`, as hex.
fn md5_of_file(host: &Path) -> Result<String, InstallError> {
    let mut md5 = Md5::new();
    let mut f = File::open(host).map_err(io_err(host))?;
    io::copy(&mut f, &mut md5).map_err(io_err(host))?;
    Ok(hex::encode(md5.finalize()))
}

/// Streams `reader` into the new scratch file `host`: its size, and its
/// md5 as hex when `want_md5`.
fn extract(
    reader: &mut dyn Read,
    host: &Path,
    want_md5: bool,
) -> Result<(u64, Option<String>), InstallError> {
    let out = File::create(host).map_err(io_err(host))?;
    let mut w = io::BufWriter::new(out);
    let mut md5 = want_md5.then(Md5::new);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(InstallError::Io {
                    path: format!("{} (reading the package)", host.display()),
                    source,
                })
            }
        };
        if let Some(md5) = &mut md5 {
            md5.update(&buf[..n]);
        }
        w.write_all(&buf[..n]).map_err(io_err(host))?;
        size += n as u64;
    }
    w.flush().map_err(io_err(host))?;
    Ok((size, md5.map(|m| hex::encode(m.finalize()))))
}

/// The status stanza dpkg writes for an installed package.
fn status_stanza(control: &Stanza, conffiles: &[String]) -> Stanza {
    let mut out = Stanza::new();
    for &name in DPKG_FIELD_ORDER {
        match name {
            "Status" => out.set("Status", "install ok installed"),
            "Conffiles" => {
                if !conffiles.is_empty() {
                    let mut v = String::new();
                    for c in conffiles {
                        v.push_str("\n ");
                        v.push_str(c);
                    }
                    out.set("Conffiles", v);
                }
            }
            n if NOT_INSTALLED_FIELDS.contains(&n) => {}
            n => {
                let Some(f) = control.field(n) else { continue };
                if (n == "Essential" || n == "Protected") && f.folded() != "yes" {
                    continue;
                }
                let v = if DEPENDENCY_FIELDS.contains(&n) || !f.value.contains('\n') {
                    f.folded()
                } else {
                    f.value.clone()
                };
                if !v.is_empty() {
                    out.set(n, v);
                }
            }
        }
    }
    for f in control.fields() {
        if DPKG_FIELD_ORDER
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&f.name))
        {
            continue;
        }
        out.set(&f.name, f.value.clone());
    }
    out
}

/// An installed package of the image's status file that may be replaced.
struct OldPackage {
    version: String,
    architecture: String,
    conffiles: Vec<String>,
}

/// The image's status file as stanza chunks kept byte for byte.
struct StatusDb {
    /// (name, architecture, multi-arch same, text of the stanza).
    chunks: Vec<(String, String, bool, String)>,
}

impl StatusDb {
    fn read(view: &dyn RootView) -> Result<Self, InstallError> {
        let Some(bytes) = view
            .read_required(STATUS)
            .map_err(|e| InstallError::Image {
                path: STATUS.into(),
                message: e.to_string(),
            })?
        else {
            return Ok(StatusDb { chunks: Vec::new() });
        };
        let text = String::from_utf8(bytes).map_err(|_| InstallError::Image {
            path: STATUS.into(),
            message: "is not UTF-8".into(),
        })?;
        let mut chunks = Vec::new();
        let mut cur = String::new();
        let mut start = 1;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                if !cur.is_empty() {
                    chunks.push(Self::chunk(std::mem::take(&mut cur), start)?);
                }
                start = i + 2;
            } else {
                cur.push_str(line);
            }
        }
        if !cur.is_empty() {
            if !cur.ends_with('\n') {
                cur.push('\n');
            }
            chunks.push(Self::chunk(cur, start)?);
        }
        Ok(StatusDb { chunks })
    }

    fn chunk(text: String, line: usize) -> Result<(String, String, bool, String), InstallError> {
        let bad = |m: String| InstallError::Image {
            path: STATUS.into(),
            message: m,
        };
        let stanzas =
            control::parse(&text, Syntax::strict()).map_err(|e| InstallError::ImageControl {
                path: STATUS.into(),
                source: control::ControlError {
                    line: e.line + line - 1,
                    ..e
                },
            })?;
        let Some(s) = stanzas.first() else {
            return Err(bad(format!("line {line}: empty stanza")));
        };
        let name = s
            .get("Package")
            .ok_or_else(|| bad(format!("line {line}: stanza without a Package field")))?
            .trim()
            .to_string();
        let arch = s.get("Architecture").unwrap_or("").trim().to_string();
        let same = s.get("Multi-Arch").is_some_and(|m| m.trim() == "same");
        Ok((name, arch, same, text))
    }

    fn matches(c: &(String, String, bool, String), name: &str, arch: &str, same: bool) -> bool {
        c.0 == name && (!(same && c.2) || c.1 == arch)
    }

    fn find(&self, name: &str, arch: &str, same: bool) -> Option<OldPackage> {
        let c = self
            .chunks
            .iter()
            .find(|c| Self::matches(c, name, arch, same))?;
        let stanza = control::parse(&c.3, Syntax::strict())
            .ok()?
            .into_iter()
            .next()?;
        let installed = stanza
            .get("Status")
            .and_then(|s| control::Status::parse(s).ok())
            .is_some_and(|s| s.state != "not-installed");
        if !installed {
            return None;
        }
        Some(OldPackage {
            version: stanza.get("Version").unwrap_or("").trim().to_string(),
            architecture: c.1.clone(),
            conffiles: stanza
                .field("Conffiles")
                .map(|f| {
                    f.continuation_lines()
                        .iter()
                        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Replaces the stanza of the same package or inserts it in dpkg's order
    /// (by name, then architecture).
    fn put(&mut self, stanza: Stanza, planned: &Planned) {
        let same = planned.multi_arch == MultiArch::Same
            || stanza.get("Multi-Arch").is_some_and(|m| m.trim() == "same");
        let arch = planned.architecture.clone();
        let entry = (planned.name.clone(), arch.clone(), same, stanza.to_string());
        if let Some(i) = self
            .chunks
            .iter()
            .position(|c| Self::matches(c, &planned.name, &arch, same))
        {
            self.chunks[i] = entry;
            return;
        }
        let at = self
            .chunks
            .iter()
            .position(|c| (c.0.as_str(), c.1.as_str()) > (entry.0.as_str(), entry.1.as_str()))
            .unwrap_or(self.chunks.len());
        self.chunks.insert(at, entry);
    }

    fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        for c in &self.chunks {
            out.push_str(&c.3);
            out.push('\n');
        }
        out.into_bytes()
    }
}

/// One alternative as update-alternatives keeps it.
#[derive(Debug, Clone, Default)]
struct Alternative {
    manual: bool,
    link: String,
    /// (slave name, slave link), sorted by name.
    slaves: Vec<(String, String)>,
    /// path -> (priority, slave paths in `slaves` order).
    choices: BTreeMap<String, (i64, Vec<String>)>,
}

impl Alternative {
    fn read(view: &dyn RootView, name: &str) -> Result<Self, InstallError> {
        let path = format!("{ALTERNATIVES_DB}/{name}");
        let Some(text) = read_state(view, &path)? else {
            return Ok(Alternative::default());
        };
        let bad = || InstallError::Image {
            path: path.clone(),
            message: "is not an update-alternatives file; fix or remove it".into(),
        };
        let mut lines = text.lines();
        let mode = lines.next().ok_or_else(bad)?;
        let link = lines.next().ok_or_else(bad)?.to_string();
        let mut slaves = Vec::new();
        loop {
            let n = lines.next().ok_or_else(bad)?;
            if n.is_empty() {
                break;
            }
            let l = lines.next().ok_or_else(bad)?;
            slaves.push((n.to_string(), l.to_string()));
        }
        let mut choices = BTreeMap::new();
        loop {
            let p = match lines.next() {
                None | Some("") => break,
                Some(p) => p.to_string(),
            };
            let prio = lines
                .next()
                .and_then(|x| x.parse::<i64>().ok())
                .ok_or_else(bad)?;
            let mut sp = Vec::new();
            for _ in 0..slaves.len() {
                sp.push(lines.next().ok_or_else(bad)?.to_string());
            }
            choices.insert(p, (prio, sp));
        }
        Ok(Alternative {
            manual: mode == "manual",
            link,
            slaves,
            choices,
        })
    }

    fn add(&mut self, a: &AlternativeSpec) {
        self.link = a.link.clone();
        for (slink, sname, _) in &a.slaves {
            match self.slaves.iter_mut().find(|(n, _)| n == sname) {
                Some(s) => s.1 = slink.clone(),
                None => {
                    let at = self
                        .slaves
                        .iter()
                        .position(|(n, _)| n > sname)
                        .unwrap_or(self.slaves.len());
                    self.slaves.insert(at, (sname.clone(), slink.clone()));
                    for c in self.choices.values_mut() {
                        c.1.insert(at, String::new());
                    }
                }
            }
        }
        let paths = self
            .slaves
            .iter()
            .map(|(n, _)| {
                a.slaves
                    .iter()
                    .find(|(_, sn, _)| sn == n)
                    .map(|(_, _, p)| p.clone())
                    .unwrap_or_default()
            })
            .collect();
        self.choices.insert(a.path.clone(), (a.priority, paths));
    }

    /// The selected choice: the current one in manual mode, else the
    /// highest priority (the first in path order on a tie).
    fn best(&self, view: &dyn RootView, name: &str) -> Option<String> {
        if self.manual {
            let cur = view
                .stat(&ImagePath::new(&format!("{ALTERNATIVES_DIR}/{name}")).ok()?)
                .and_then(|s| match s.kind {
                    StatKind::Symlink(t) => Some(t),
                    _ => None,
                });
            if let Some(c) = cur.filter(|c| self.choices.contains_key(c)) {
                return Some(c);
            }
        }
        let mut best: Option<(&String, i64)> = None;
        for (p, (prio, _)) in &self.choices {
            if best.is_none_or(|(_, b)| *prio > b) {
                best = Some((p, *prio));
            }
        }
        best.map(|(p, _)| p.clone())
    }

    fn render(&self) -> Vec<u8> {
        let mut s = String::new();
        s.push_str(if self.manual { "manual\n" } else { "auto\n" });
        s.push_str(&self.link);
        s.push('\n');
        for (n, l) in &self.slaves {
            s.push_str(&format!("{n}\n{l}\n"));
        }
        s.push('\n');
        for (p, (prio, sp)) in &self.choices {
            s.push_str(&format!("{p}\n{prio}\n"));
            for x in sp {
                s.push_str(x);
                s.push('\n');
            }
        }
        s.push('\n');
        s.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeimg_layers::MemView;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::Command;

    fn md5_hex(b: &[u8]) -> String {
        hex::encode(Md5::digest(b))
    }

    fn host_arch() -> Option<String> {
        let out = Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn have_dpkg() -> Option<String> {
        let arch = host_arch();
        let deb = Command::new("dpkg-deb").arg("--version").output().is_ok();
        match arch {
            Some(a) if deb => Some(a),
            _ => {
                eprintln!("dpkg or dpkg-deb not found: test skipped");
                None
            }
        }
    }

    enum F<'a> {
        File(&'a str, &'a [u8], u32),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Dir(&'a str),
    }

    /// Builds a .deb with dpkg-deb and returns its path and planned entry.
    fn build(root: &Path, control: &str, files: &[F<'_>], extra: &[(&str, &str, u32)]) -> Package {
        let stanza = control::parse(control, Syntax::strict()).unwrap().remove(0);
        let name = stanza.get("Package").unwrap().to_string();
        let tree = root.join(format!("src-{name}"));
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::write(tree.join("DEBIAN/control"), control).unwrap();
        for (n, body, mode) in extra {
            let p = tree.join("DEBIAN").join(n);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        for f in files {
            match f {
                F::File(p, body, mode) => {
                    let p = tree.join(p);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, body).unwrap();
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                }
                F::Link(p, t) => {
                    let p = tree.join(p);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    symlink(t, p).unwrap();
                }
                F::Hard(p, t) => std::fs::hard_link(tree.join(t), tree.join(p)).unwrap(),
                F::Dir(p) => std::fs::create_dir_all(tree.join(p)).unwrap(),
            }
        }
        let out = root.join(format!("{name}.deb"));
        let res = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&tree)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let bin = control::BinaryPackage::from_stanza(&stanza).unwrap();
        let size = std::fs::metadata(&out).unwrap().len();
        let file = std::fs::File::open(&out).unwrap();
        Package {
            deb: nodeimg_fetch::cachefile::CachedFile::written(file, out, size),
            planned: Planned {
                name: bin.name,
                version: bin.version,
                architecture: bin.architecture,
                multi_arch: bin.multi_arch,
                repository: "test".into(),
                filename: format!("pool/{name}.deb"),
                size: 0,
                sha256: String::new(),
                auto: false,
                replaces_installed: None,
            },
        }
    }

    /// A tiny base: both a MemView and the same files on disk.
    struct Base {
        view: MemView,
        files: Vec<(String, Option<Vec<u8>>, Option<String>)>,
    }

    impl Base {
        fn new() -> Self {
            Base {
                view: MemView::new(),
                files: Vec::new(),
            }
        }
        fn file(mut self, p: &str, c: &[u8]) -> Self {
            self.view = self.view.file(p, c.to_vec());
            self.files.push((p.into(), Some(c.to_vec()), None));
            self
        }
        fn dir(mut self, p: &str) -> Self {
            self.view = self.view.dir(p);
            self.files.push((p.into(), None, None));
            self
        }
        fn link(mut self, p: &str, t: &str) -> Self {
            self.view = self.view.symlink(p, t);
            self.files.push((p.into(), None, Some(t.into())));
            self
        }
        fn write(&self, dir: &Path) {
            for (p, c, t) in &self.files {
                let host = dir.join(&p[1..]);
                std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                match (c, t) {
                    (Some(c), _) => std::fs::write(&host, c).unwrap(),
                    (None, Some(t)) => symlink(t, &host).unwrap(),
                    (None, None) => std::fs::create_dir_all(&host).unwrap(),
                }
            }
        }
    }

    /// Writes a layer tree over an unpacked root.
    fn materialise(tree: &FileTree, dir: &Path) {
        let root = nix_root();
        for (p, n) in tree.iter() {
            let host = dir.join(p.relative());
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            let meta = std::fs::symlink_metadata(&host).ok();
            let remove = |host: &Path| {
                if let Some(m) = &meta {
                    if m.is_dir() {
                        std::fs::remove_dir_all(host).unwrap();
                    } else {
                        std::fs::remove_file(host).unwrap();
                    }
                }
            };
            match &n.kind {
                NodeKind::Dir | NodeKind::Opaque => {
                    if meta.as_ref().is_some_and(|m| !m.is_dir()) {
                        remove(&host);
                    }
                    std::fs::create_dir_all(&host).unwrap();
                }
                NodeKind::File(c) => {
                    remove(&host);
                    match c {
                        Content::Bytes(b) => std::fs::write(&host, b).unwrap(),
                        Content::Host { path, .. } => {
                            std::fs::copy(path, &host).unwrap();
                        }
                        Content::Input(f) => std::fs::write(&host, f.read_all().unwrap()).unwrap(),
                    }
                }
                NodeKind::Symlink(t) => {
                    remove(&host);
                    symlink(t, &host).unwrap();
                    if root {
                        std::os::unix::fs::lchown(&host, Some(n.meta.uid), Some(n.meta.gid))
                            .unwrap();
                    }
                    continue;
                }
                NodeKind::Hardlink(t) => {
                    remove(&host);
                    std::fs::hard_link(dir.join(t.relative()), &host).unwrap();
                    continue;
                }
                NodeKind::Whiteout => {
                    remove(&host);
                    continue;
                }
            }
            if root {
                std::os::unix::fs::chown(&host, Some(n.meta.uid), Some(n.meta.gid)).unwrap();
            }
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(n.meta.mode)).unwrap();
        }
    }

    fn nix_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(args[0])
            .arg(format!("--root={}", dir.display()))
            .args(&args[1..])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    const BASE_FILES_LIST: &str = "/.\n/etc\n/etc/debian_version\n";
    const OLD_LIST: &str =
        "/.\n/usr\n/usr/share\n/usr/share/oldpkg\n/usr/share/oldpkg/gone\n/usr/share/oldpkg/kept\n";

    fn base(arch: &str) -> Base {
        let status = format!(
            "Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\nMaintainer: Base <b@example.invalid>\nArchitecture: {arch}\nVersion: 12.4\nDescription: base\n\nPackage: oldpkg\nStatus: install ok installed\nMaintainer: Old <o@example.invalid>\nArchitecture: all\nVersion: 1.0\nDescription: old\n\n"
        );
        Base::new()
            .link("/bin", "usr/bin")
            .link("/lib", "usr/lib")
            .link("/sbin", "usr/sbin")
            .dir("/usr/bin")
            .dir("/usr/lib")
            .dir("/usr/sbin")
            .dir("/usr/share/oldpkg")
            .file("/etc/debian_version", b"12.4\n")
            .file(
                "/etc/passwd",
                b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            )
            .file(
                "/etc/group",
                b"root:x:0:\nsystemd-journal:x:100:\nnogroup:x:65534:\n",
            )
            .file("/etc/gshadow", b"root:*::\nsystemd-journal:!::\nnogroup:*::\n")
            .file("/usr/share/oldpkg/gone", b"gone\n")
            .file("/usr/share/oldpkg/kept", b"old\n")
            .dir("/var/lib/dpkg/updates")
            .dir("/var/lib/dpkg/triggers")
            .dir("/var/lib/dpkg/alternatives")
            .dir("/etc/alternatives")
            .file("/var/lib/dpkg/info/format", b"1\n")
            .file("/var/lib/dpkg/triggers/File", b"/usr/share/man base-files/noawait\n")
            .file(
                "/var/lib/dpkg/statoverride",
                b"root nogroup 750 /usr/bin/dockerd\n#0 #7 4711 /etc/not-shipped\n",
            )
            .file("/var/lib/dpkg/status", status.as_bytes())
            .file("/var/lib/dpkg/info/base-files.list", BASE_FILES_LIST.as_bytes())
            .file(
                "/var/lib/dpkg/info/base-files.md5sums",
                format!("{}  etc/debian_version\n", md5_hex(b"12.4\n")).as_bytes(),
            )
            .file("/var/lib/dpkg/info/oldpkg.list", OLD_LIST.as_bytes())
            .file(
                "/var/lib/dpkg/info/oldpkg.md5sums",
                format!(
                    "{}  usr/share/oldpkg/gone\n{}  usr/share/oldpkg/kept\n",
                    md5_hex(b"gone\n"),
                    md5_hex(b"old\n")
                )
                .as_bytes(),
            )
            .file("/var/lib/dpkg/info/oldpkg.postrm", b"#!/bin/sh\nexit 0\n")
    }

    const FOO_TOOLS_LIST: &str = "/.\n/bin\n/bin/fooctl\n/bin/fooctl-hard\n/etc\n/etc/foo\n/etc/foo/foo.conf\n/lib\n/lib/foo\n/lib/foo/helper\n/usr\n/usr/bin\n/usr/bin/foosu\n/usr/sbin\n/var\n/var/lib\n/var/lib/foo\n/usr/sbin/foo\n";
    const FOO_CONF: &[u8] = b"# foo configuration\nlevel = 3\n";
    const DOCKER_POSTINST: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  if [ -z \"$2\" ] && ! getent group docker > /dev/null; then\n    addgroup --system docker\n  fi\nfi\nupdate-alternatives --install /usr/bin/dockerd-alt dockerd-alt /usr/bin/dockerd 50 \\\n  --slave /usr/share/man/man8/dockerd-alt.8.gz dockerd-alt.8.gz /usr/share/man/man8/dockerd.8.gz\nif deb-systemd-helper --quiet was-enabled 'docker.service'; then\n  deb-systemd-helper enable 'docker.service' >/dev/null || true\nfi\nchown root:\"$DOCKER_GROUP\" /run/docker.sock || true\n";

    fn packages(root: &Path, arch: &str) -> Vec<Package> {
        let lib = build(
            root,
            &format!("Package: libfoo1\nVersion: 1:1.2~rc1-1\nArchitecture: {arch}\nMulti-Arch: same\nMaintainer: Foo <f@example.invalid>\nInstalled-Size: 8\nSection: libs\nPriority: optional\nDescription: foo library\n The foo library.\n .\n Second paragraph.\n"),
            &[
                F::File("usr/lib/foo/libfoo.so.1.0", b"\x7fELF lib", 0o644),
                F::Link("usr/lib/foo/libfoo.so.1", "libfoo.so.1.0"),
                F::File("usr/share/doc/libfoo1/copyright", b"free\n", 0o644),
            ],
            &[("triggers", "activate-noawait ldconfig\n", 0o644)],
        );
        let tools = build(
            root,
            &format!("Package: foo-tools\nVersion: 2.0-1\nArchitecture: {arch}\nMaintainer: Foo <f@example.invalid>\nDepends: libfoo1 (>= 1:1.0),\n  libc6\nHomepage: https://foo.example.invalid\nDescription: foo tools\n"),
            &[
                F::File("lib/foo/helper", b"#!/bin/sh\n", 0o755),
                F::File("bin/fooctl", b"fooctl binary", 0o755),
                F::Hard("bin/fooctl-hard", "bin/fooctl"),
                F::File("usr/bin/foosu", b"suid", 0o4755),
                F::Link("usr/sbin/foo", "../bin/fooctl"),
                F::File("etc/foo/foo.conf", FOO_CONF, 0o640),
                F::Dir("var/lib/foo"),
            ],
            &[("conffiles", "/etc/foo/foo.conf\n", 0o644)],
        );
        let docker = build(
            root,
            &format!("Package: docker.io\nVersion: 20.10.24+dfsg1-1\nArchitecture: {arch}\nMaintainer: D <d@example.invalid>\nDepends: foo-tools\nDescription: docker\n"),
            &[
                F::File("usr/bin/dockerd", b"dockerd", 0o755),
                F::File("usr/share/man/man8/dockerd.8.gz", b"man", 0o644),
                F::File("lib/systemd/system/docker.service", b"[Unit]\n", 0o644),
            ],
            &[("postinst", DOCKER_POSTINST, 0o755)],
        );
        let old = build(
            root,
            "Package: oldpkg\nVersion: 2.0\nArchitecture: all\nMaintainer: Old <o@example.invalid>\nDescription: old\n",
            &[F::File("usr/share/oldpkg/kept", b"new\n", 0o644)],
            &[],
        );
        vec![lib, tools, docker, old]
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one scenario against the real dpkg: the installation is built once, each of \
                  its properties checked in turn, then handed to dpkg"
    )]
    fn installs_packages_that_the_real_dpkg_accepts() {
        let Some(arch) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let pkgs = packages(tmp.path(), &arch);
        let base = base(&arch);
        let scratch = tmp.path().join("scratch");
        let out = install(&base.view, &pkgs, &arch, &scratch, "layer[0].packages").unwrap();
        let tree = &out.tree;

        // Merged /usr: the links stay, the files land below /usr.
        assert!(tree.get_str("/lib").is_none());
        assert!(tree.get_str("/bin").is_none());
        assert!(tree.get_str("/lib/foo/helper").is_none());
        let helper = tree.get_str("/usr/lib/foo/helper").unwrap();
        assert_eq!(helper.meta.mode, 0o755);
        assert_eq!(
            helper.origin,
            Origin::new("packages", "layer[0].packages[1]")
        );
        assert!(
            matches!(&helper.kind, NodeKind::File(Content::Host { size: 10, path }) if path.starts_with(&scratch))
        );
        assert_eq!(
            tree.get_str("/usr/bin/fooctl-hard").unwrap().kind,
            NodeKind::Hardlink(ImagePath::new("/usr/bin/fooctl").unwrap())
        );
        assert_eq!(
            tree.get_str("/usr/sbin/foo").unwrap().kind,
            NodeKind::Symlink("../bin/fooctl".into())
        );
        assert_eq!(tree.get_str("/usr/bin/foosu").unwrap().meta.mode, 0o4755);
        // dpkg-statoverride entries of the image apply.
        assert_eq!(
            tree.get_str("/usr/bin/dockerd").unwrap().meta,
            Meta {
                mode: 0o750,
                uid: 0,
                gid: 65534
            }
        );
        assert_eq!(tree.get_str("/etc/foo/foo.conf").unwrap().meta.mode, 0o640);
        assert_eq!(tree.get_str("/var/lib/foo").unwrap().kind, NodeKind::Dir);
        assert_eq!(
            tree.get_str("/usr/share/oldpkg/gone").unwrap().kind,
            NodeKind::Whiteout
        );
        assert_eq!(
            tree.get_str("/var/lib/dpkg/info/oldpkg.postrm")
                .unwrap()
                .kind,
            NodeKind::Whiteout
        );

        // The dpkg database.
        assert_eq!(
            tree.text("/var/lib/dpkg/info/foo-tools.list").unwrap(),
            FOO_TOOLS_LIST
        );
        assert!(tree
            .get_str(&format!("/var/lib/dpkg/info/libfoo1:{arch}.list"))
            .is_some());
        assert!(tree.get_str("/var/lib/dpkg/info/libfoo1.list").is_none());
        let post = tree
            .get_str("/var/lib/dpkg/info/docker.io.postinst")
            .unwrap();
        assert_eq!(post.meta.mode, 0o755);
        assert_eq!(
            tree.text("/var/lib/dpkg/info/docker.io.postinst").unwrap(),
            DOCKER_POSTINST
        );
        assert_eq!(
            tree.text("/var/lib/dpkg/info/foo-tools.conffiles").unwrap(),
            "/etc/foo/foo.conf\n"
        );
        let status = tree.text("/var/lib/dpkg/status").unwrap();
        let names: Vec<&str> = status
            .lines()
            .filter_map(|l| l.strip_prefix("Package: "))
            .collect();
        assert_eq!(
            names,
            ["base-files", "docker.io", "foo-tools", "libfoo1", "oldpkg"]
        );
        assert!(status.starts_with(&format!(
            "Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\nMaintainer: Base <b@example.invalid>\nArchitecture: {arch}\nVersion: 12.4\nDescription: base\n\nPackage: docker.io\n"
        )));
        assert!(status.contains(&format!(
            "Package: foo-tools\nStatus: install ok installed\nMaintainer: Foo <f@example.invalid>\nArchitecture: {arch}\nVersion: 2.0-1\nDepends: libfoo1 (>= 1:1.0), libc6\nConffiles:\n /etc/foo/foo.conf {}\nDescription: foo tools\nHomepage: https://foo.example.invalid\n\n",
            md5_hex(FOO_CONF)
        )), "{status}");
        assert!(status.contains("Package: oldpkg\nStatus: install ok installed\nMaintainer: Old <o@example.invalid>\nArchitecture: all\nVersion: 2.0\n"));
        assert!(!status.contains("Version: 1.0\n"));

        // Declarative effects.
        assert_eq!(
            tree.text("/etc/group").unwrap(),
            "root:x:0:\nsystemd-journal:x:100:\nnogroup:x:65534:\ndocker:x:101:\n"
        );
        assert_eq!(
            tree.text("/etc/gshadow").unwrap(),
            "root:*::\nsystemd-journal:!::\nnogroup:*::\ndocker:!::\n"
        );
        assert!(tree.get_str("/etc/passwd").is_none());
        assert_eq!(
            tree.get_str("/etc/alternatives/dockerd-alt").unwrap().kind,
            NodeKind::Symlink("/usr/bin/dockerd".into())
        );
        assert_eq!(
            tree.get_str("/usr/bin/dockerd-alt").unwrap().kind,
            NodeKind::Symlink("/etc/alternatives/dockerd-alt".into())
        );
        assert_eq!(
            tree.text("/var/lib/dpkg/alternatives/dockerd-alt").unwrap(),
            "auto\n/usr/bin/dockerd-alt\ndockerd-alt.8.gz\n/usr/share/man/man8/dockerd-alt.8.gz\n\n/usr/bin/dockerd\n50\n/usr/share/man/man8/dockerd.8.gz\n\n"
        );

        // The report.
        let r = &out.report;
        assert_eq!(r.packages.len(), 4);
        assert_eq!(r.packages[3].replaced.as_deref(), Some("1.0"));
        assert_eq!(r.packages[1].files, FOO_TOOLS_LIST.lines().count() - 1);
        assert_eq!(
            r.packages[1].conffiles,
            [format!("/etc/foo/foo.conf {}", md5_hex(FOO_CONF))]
        );
        let counts: Vec<usize> = r.packages.iter().map(|p| p.files).collect();
        assert_eq!(counts, [9, 17, 11, 4]);
        assert_eq!(r.files, 41);
        assert_eq!(
            r.groups_added,
            [AccountAdded {
                name: "docker".into(),
                id: 101,
                package: "docker.io".into()
            }]
        );
        assert_eq!(
            r.systemd_enable,
            [UnitToEnable {
                package: "docker.io".into(),
                unit: "docker.service".into()
            }]
        );
        let text = r.to_string();
        assert!(text.contains("not run: docker.io postinst (applied instead: system group docker, alternative dockerd-alt -> /usr/bin/dockerd, reported: enable docker.service)"), "{text}");
        assert!(
            text.contains("not run: oldpkg postrm of oldpkg 1.0"),
            "{text}"
        );
        assert_eq!(r.scripts_not_run.len(), 2);
        assert_eq!(
            r.triggers_not_run,
            [
                TriggerNotRun {
                    trigger: "ldconfig".into(),
                    interested: None,
                    activated_by: "libfoo1".into()
                },
                TriggerNotRun {
                    trigger: "/usr/share/man".into(),
                    interested: Some("base-files".into()),
                    activated_by: "docker.io".into()
                },
            ]
        );
        assert!(
            text.contains(
                "trigger not run: /usr/share/man activated by docker.io (for base-files)"
            ),
            "{text}"
        );
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["groups_added"][0]["name"], "docker");

        // The real consumer.
        let dir = tmp.path().join("root");
        base.write(&dir);
        materialise(tree, &dir);
        assert!(std::fs::symlink_metadata(dir.join("lib"))
            .unwrap()
            .is_symlink());
        let (ok, list, err) = run(&dir, &["dpkg", "-l"]);
        assert!(ok, "{err}");
        let ii: Vec<(String, String)> = list
            .lines()
            .filter(|l| l.starts_with("ii "))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w[1].to_string(), w[2].to_string())
            })
            .collect();
        assert_eq!(
            ii,
            [
                ("base-files".to_string(), "12.4".to_string()),
                ("docker.io".into(), "20.10.24+dfsg1-1".into()),
                ("foo-tools".into(), "2.0-1".into()),
                (format!("libfoo1:{arch}"), "1:1.2~rc1-1".into()),
                ("oldpkg".into(), "2.0".into()),
            ]
        );
        let (ok, v, err) = run(&dir, &["dpkg", "--verify"]);
        assert!(ok && v.is_empty() && err.is_empty(), "verify: {v}{err}");
        let (ok, a, err) = run(&dir, &["dpkg", "--audit"]);
        assert!(ok && a.is_empty() && err.is_empty(), "audit: {a}{err}");
        let (ok, l, err) = run(&dir, &["dpkg", "-L", "foo-tools"]);
        assert!(ok, "{err}");
        assert_eq!(l, FOO_TOOLS_LIST);
        let (ok, c, err) = run(&dir, &["dpkg-query", "-W", "-f=${Conffiles}", "foo-tools"]);
        assert!(ok, "{err}");
        assert_eq!(c, format!(" /etc/foo/foo.conf {}", md5_hex(FOO_CONF)));
        let q = Command::new("update-alternatives")
            .arg("--root")
            .arg(&dir)
            .args(["--query", "dockerd-alt"])
            .output()
            .unwrap();
        assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
        let q = String::from_utf8_lossy(&q.stdout);
        assert!(q.contains("Value: /usr/bin/dockerd\n"), "{q}");

        // Negative control: a changed file is seen by dpkg.
        std::fs::write(dir.join("usr/lib/foo/helper"), "#!/bin/sh\nevil\n").unwrap();
        std::fs::write(dir.join("etc/foo/foo.conf"), "changed\n").unwrap();
        let (_, v, _) = run(&dir, &["dpkg", "--verify"]);
        assert!(v.contains("??5?????? c /etc/foo/foo.conf"), "{v}");
        assert!(v.contains("??5??????   /lib/foo/helper"), "{v}");
    }

    fn dpkg_root(dir: &Path) {
        std::fs::create_dir_all(dir.join("var/lib/dpkg/info")).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/dpkg/updates")).unwrap();
        std::fs::write(dir.join("var/lib/dpkg/status"), "").unwrap();
    }

    #[test]
    fn database_matches_what_dpkg_itself_writes() {
        let Some(arch) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let mut pkgs = packages(tmp.path(), &arch);
        pkgs.truncate(2); // libfoo1 and foo-tools: no maintainer scripts
        let real = tmp.path().join("real");
        dpkg_root(&real);
        let out = Command::new("dpkg")
            .arg(format!("--root={}", real.display()))
            .args(["--force-all", "-i"])
            .args(pkgs.iter().map(|p| p.deb.path()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let view = MemView::new()
            .file("/var/lib/dpkg/status", "")
            .file("/var/lib/dpkg/info/format", "1\n");
        let ours = install(&view, &pkgs, &arch, &tmp.path().join("s"), "packages").unwrap();
        let read = |p: &str| std::fs::read_to_string(real.join(&p[1..])).unwrap();
        assert_eq!(
            ours.tree.text("/var/lib/dpkg/status").unwrap(),
            read("/var/lib/dpkg/status")
        );
        for f in [
            format!("libfoo1:{arch}.list"),
            format!("libfoo1:{arch}.md5sums"),
            format!("libfoo1:{arch}.triggers"),
            "foo-tools.list".into(),
            "foo-tools.md5sums".into(),
            "foo-tools.conffiles".into(),
        ] {
            let p = format!("/var/lib/dpkg/info/{f}");
            assert_eq!(ours.tree.text(&p).unwrap(), read(&p), "{f}");
        }
        let mut names: Vec<String> = std::fs::read_dir(real.join("var/lib/dpkg/info"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "format") // the base already has it
            .collect();
        names.sort();
        let ours_names: Vec<String> = ours
            .tree
            .iter()
            .filter_map(|(p, _)| p.as_str().strip_prefix("/var/lib/dpkg/info/"))
            .map(str::to_string)
            .collect();
        assert_eq!(ours_names, names);
        assert!(ours.report.scripts_not_run.is_empty());
    }

    fn planned(name: &str, version: &str) -> Planned {
        Planned {
            name: name.into(),
            version: crate::version::Version::parse(version).unwrap(),
            architecture: "all".into(),
            multi_arch: MultiArch::No,
            repository: "test".into(),
            filename: String::new(),
            size: 0,
            sha256: String::new(),
            auto: false,
            replaces_installed: None,
        }
    }

    #[test]
    fn refusals_name_the_packages() {
        let Some(_) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let a = build(
            tmp.path(),
            "Package: aaa\nVersion: 1\nArchitecture: all\nMaintainer: A <a@example.invalid>\nDescription: a\n",
            &[F::File("usr/share/x", b"a", 0o644)],
            &[],
        );
        let b = build(
            tmp.path(),
            "Package: bbb\nVersion: 1\nArchitecture: all\nMaintainer: B <b@example.invalid>\nDescription: b\n",
            &[F::File("usr/share/x", b"b", 0o644)],
            &[],
        );
        let c = build(
            tmp.path(),
            "Package: ccc\nVersion: 1\nArchitecture: all\nReplaces: aaa\nMaintainer: C <c@example.invalid>\nDescription: c\n",
            &[F::File("usr/share/x", b"c", 0o644)],
            &[],
        );
        let view = MemView::new();
        let s = tmp.path().join("s");

        let e = install(&view, &[a.clone(), b], "amd64", &s, "p").unwrap_err();
        assert_eq!(
            e.to_string(),
            "package bbb=1: /usr/share/x is also shipped by aaa; a package that takes over \
             files must declare `Replaces: aaa`"
        );
        let ok = install(&view, &[a.clone(), c], "amd64", &s, "p").unwrap();
        assert!(matches!(
            &ok.tree.get_str("/usr/share/x").unwrap().kind,
            NodeKind::File(Content::Host { size: 1, .. })
        ));
        assert_eq!(ok.tree.get_str("/usr/share/x").unwrap().origin.key, "p[1]");

        let mut wrong = a.clone();
        wrong.planned = planned("aaa", "2");
        let e = install(&view, &[wrong], "amd64", &s, "p").unwrap_err();
        assert!(
            e.to_string().contains(
                "the .deb is aaa 1 all, not what the repository index announced (aaa 2 all)"
            ),
            "{e}"
        );

        let bad = MemView::new().file(
            "/var/lib/dpkg/status",
            "Package: x\n continuation\nbroken line\n",
        );
        let e = install(&bad, &[a], "amd64", &s, "p").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/var/lib/dpkg/status in the image: line 3:"),
            "{e}"
        );
        // The control error is kept, at the line of the file.
        let source =
            std::error::Error::source(&e).and_then(|c| c.downcast_ref::<control::ControlError>());
        assert_eq!(source.map(|c| c.line), Some(3), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("/var/lib/dpkg/status in the image: {}", source.unwrap())
        );
    }

    fn update_alternatives(root: &Path, args: &[&str]) {
        let out = Command::new("update-alternatives")
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one scenario run twice, by update-alternatives and by the installer, whose \
                  files are compared side by side"
    )]
    fn alternatives_match_update_alternatives() {
        let Some(_) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let first = [
            "--install",
            "/usr/bin/ed",
            "ed",
            "/usr/bin/ed-a",
            "10",
            "--slave",
            "/usr/share/man/man1/ed.1",
            "ed.1",
            "/usr/share/man/ed-a.1",
        ];
        let second = "update-alternatives --install /usr/bin/ed ed /usr/bin/ed-b 20 \\\n --slave /usr/share/man/man1/ed.1 ed.1 /usr/share/man/ed-b.1 \\\n --slave /usr/bin/red red /usr/bin/red-b\n";
        let mut base = Base::new()
            .file("/usr/bin/ed-a", b"a")
            .file("/usr/share/man/ed-a.1", b"a")
            .dir("/usr/share/man/man1")
            .dir("/var/lib/dpkg/alternatives")
            .dir("/etc/alternatives");
        // The base as update-alternatives leaves it after the first call.
        let r1 = tmp.path().join("r1");
        base.write(&r1);
        update_alternatives(&r1, &first);
        base = base.file(
            "/var/lib/dpkg/alternatives/ed",
            &std::fs::read(r1.join("var/lib/dpkg/alternatives/ed")).unwrap(),
        );
        for l in [
            "etc/alternatives/ed",
            "etc/alternatives/ed.1",
            "usr/bin/ed",
            "usr/share/man/man1/ed.1",
        ] {
            let t = std::fs::read_link(r1.join(l)).unwrap();
            base = base.link(&format!("/{l}"), t.to_str().unwrap());
        }
        let pkg = build(
            tmp.path(),
            "Package: ed-b\nVersion: 1\nArchitecture: all\nMaintainer: E <e@example.invalid>\nDescription: e\n",
            &[
                F::File("usr/bin/ed-b", b"b", 0o755),
                F::File("usr/bin/red-b", b"b", 0o755),
                F::File("usr/share/man/ed-b.1", b"b", 0o644),
            ],
            &[("postinst", second, 0o755)],
        );
        let out = install(&base.view, &[pkg], "amd64", &tmp.path().join("s"), "p").unwrap();

        // Ours, materialised, against update-alternatives' own result.
        let r2 = tmp.path().join("r2");
        base.write(&r2);
        materialise(&out.tree, &r2);
        let r3 = tmp.path().join("r3");
        base.write(&r3);
        for f in ["usr/bin/ed-b", "usr/bin/red-b", "usr/share/man/ed-b.1"] {
            std::fs::write(r3.join(f), "b").unwrap();
        }
        update_alternatives(
            &r3,
            &[
                "--install",
                "/usr/bin/ed",
                "ed",
                "/usr/bin/ed-b",
                "20",
                "--slave",
                "/usr/share/man/man1/ed.1",
                "ed.1",
                "/usr/share/man/ed-b.1",
                "--slave",
                "/usr/bin/red",
                "red",
                "/usr/bin/red-b",
            ],
        );
        assert_eq!(
            out.tree.text("/var/lib/dpkg/alternatives/ed").unwrap(),
            std::fs::read_to_string(r3.join("var/lib/dpkg/alternatives/ed")).unwrap()
        );
        for l in [
            "etc/alternatives/ed",
            "etc/alternatives/ed.1",
            "etc/alternatives/red",
            "usr/bin/ed",
            "usr/bin/red",
            "usr/share/man/man1/ed.1",
        ] {
            assert_eq!(
                std::fs::read_link(r2.join(l)).unwrap(),
                std::fs::read_link(r3.join(l)).unwrap(),
                "{l}"
            );
        }
        assert_eq!(
            out.report.alternatives,
            [AlternativeSet {
                name: "ed".into(),
                link: "/usr/bin/ed".into(),
                path: "/usr/bin/ed-b".into(),
                package: "ed-b".into()
            }]
        );
    }

    #[test]
    fn device_nodes_are_refused() {
        let Some(_) = have_dpkg() else { return };
        if !nix_root() {
            eprintln!("mknod needs root: test skipped");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src-dev");
        std::fs::create_dir_all(src.join("dev")).unwrap();
        let made = Command::new("mknod")
            .arg(src.join("dev/null2"))
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(made.success());
        let pkg = build(
            tmp.path(),
            "Package: dev\nVersion: 1\nArchitecture: all\nMaintainer: D <d@example.invalid>\nDescription: d\n",
            &[],
            &[],
        );
        let e = install(&MemView::new(), &[pkg], "amd64", &tmp.path().join("s"), "p").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("package dev=1: /dev/null2 is a CharDevice"),
            "{e}"
        );
    }

    /// A package with its own md5sums: those are written as they are, and
    /// only the conffiles' md5s are computed for the status (one of them a
    /// hard link to a file before it whose md5 was not computed).
    #[test]
    fn conffile_md5s_are_computed_when_the_package_has_md5sums() {
        let Some(_) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let own = format!(
            "{}  etc/kept/a-data\n{}  etc/kept/b.conf\n",
            md5_hex(b"data\n"),
            md5_hex(b"conf\n")
        );
        let pkg = build(
            tmp.path(),
            "Package: kept\nVersion: 1\nArchitecture: all\nMaintainer: K <k@example.invalid>\nDescription: k\n",
            &[
                F::File("etc/kept/a-data", b"data\n", 0o644),
                F::File("etc/kept/b.conf", b"conf\n", 0o644),
                F::Hard("etc/kept/z.conf", "etc/kept/a-data"),
            ],
            &[
                ("md5sums", &own, 0o644),
                ("conffiles", "/etc/kept/b.conf\n/etc/kept/z.conf\n", 0o644),
            ],
        );
        let view = MemView::new()
            .dir("/var/lib/dpkg")
            .file("/var/lib/dpkg/status", "");
        let out = install(&view, &[pkg], "amd64", &tmp.path().join("s"), "p").unwrap();
        assert_eq!(
            out.tree.text("/var/lib/dpkg/info/kept.md5sums").unwrap(),
            own
        );
        let status = out.tree.text("/var/lib/dpkg/status").unwrap();
        assert!(
            status.contains(&format!(
                "Conffiles:\n /etc/kept/b.conf {}\n /etc/kept/z.conf {}\n",
                md5_hex(b"conf\n"),
                md5_hex(b"data\n")
            )),
            "{status}"
        );
    }

    #[test]
    fn files_and_links_keep_the_times_the_package_records() {
        let Some(_) = have_dpkg() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src-timed");
        std::fs::create_dir_all(src.join("usr/bin")).unwrap();
        std::fs::write(src.join("usr/bin/timed"), b"#!/bin/sh\n").unwrap();
        symlink("timed", src.join("usr/bin/timed-link")).unwrap();
        std::fs::hard_link(src.join("usr/bin/timed"), src.join("usr/bin/timed-hard")).unwrap();
        for (path, at) in [
            ("usr/bin/timed", "@1600000000"),
            ("usr/bin/timed-link", "@1500000000"),
        ] {
            let ok = Command::new("touch")
                .args(["-h", "-d", at])
                .arg(src.join(path))
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pkg = build(
            tmp.path(),
            "Package: timed\nVersion: 1\nArchitecture: all\nMaintainer: T <t@example.invalid>\nDescription: t\n",
            &[],
            &[],
        );
        let view = MemView::new()
            .dir("/var/lib/dpkg")
            .file("/var/lib/dpkg/status", "");
        let out = install(&view, &[pkg], "amd64", &tmp.path().join("s"), "p").unwrap();
        let mtime = |p: &str| out.tree.get_str(p).unwrap().mtime;
        assert_eq!(mtime("/usr/bin/timed"), Some(1_600_000_000));
        assert_eq!(mtime("/usr/bin/timed-hard"), Some(1_600_000_000));
        assert_eq!(mtime("/usr/bin/timed-link"), Some(1_500_000_000));
        // Directories, and the database nodeimg writes, get the build's time.
        assert_eq!(mtime("/usr/bin"), None);
        assert_eq!(mtime("/var/lib/dpkg/status"), None);
        assert_eq!(mtime("/var/lib/dpkg/info/timed.list"), None);
    }
}
