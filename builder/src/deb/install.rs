//! Unpacking resolved `.deb` files into a layer and registering them in the
//! image's dpkg database, without running dpkg or any maintainer script on
//! the build host.
//!
//! # What the layer holds
//!
//! * Every `data.tar` entry of every package, in installation order, with
//!   its mode, owner (tar owner names are mapped through the image's
//!   `/etc/passwd` and `/etc/group`, like dpkg does; unknown names keep the
//!   numeric ids), symlink target and hard links. Regular files are streamed
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
//!   added to `/etc/group` and `/etc/passwd` (and `/etc/gshadow`,
//!   `/etc/shadow` when the image has them), unless the image already has
//!   them, with the first free id in 100-999 (adduser's system range), so
//!   the same inputs always give the same ids; `preinst` effects are
//!   applied before the package's files are unpacked, `postinst` effects
//!   after;
//! * `update-alternatives --install` calls are applied: the
//!   `/var/lib/dpkg/alternatives/<name>` file and the `/etc/alternatives`
//!   links, as update-alternatives writes them in auto mode;
//! * `deb-systemd-helper enable` calls are **reported** and not applied:
//!   enabling units is the job of the recipe's `systemd` item, and the lint
//!   uses the report to suggest it.
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
use super::debfile::{Deb, DebError, EntryKind};
use super::resolve::Planned;
use super::scripts::{self, AlternativeSpec, Effect, GroupSpec, PrimaryGroup, UserSpec};

const STATUS: &str = "/var/lib/dpkg/status";
const INFO: &str = "/var/lib/dpkg/info";
const ALTERNATIVES_DB: &str = "/var/lib/dpkg/alternatives";
const ALTERNATIVES_DIR: &str = "/etc/alternatives";
const FIRST_SYSTEM_ID: u32 = 100;
const LAST_SYSTEM_ID: u32 = 999;

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
    /// The verified `.deb` in the download cache.
    pub deb: PathBuf,
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
    /// The image's own files (dpkg status, passwd, alternatives) are unusable.
    #[error("{path} in the image: {message}")]
    Image {
        /// Image path.
        path: String,
        /// What is wrong.
        message: String,
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
            write!(f, "trigger not run: {} activated by {}", t.trigger, t.activated_by)?;
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
    ImagePath::new(s).map_err(|m| InstallError::Image {
        path: s.to_string(),
        message: m,
    })
}

/// Installs `packages` (in this order) over `view` for `arch`, extracting
/// file contents into `scratch` (which must outlive the returned tree).
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
        accounts: Accounts::read(view)?,
        report: InstallReport::default(),
        alternatives: BTreeMap::new(),
        info_written: BTreeSet::new(),
        stale_info: BTreeSet::new(),
    };
    let mut status = StatusDb::read(view)?;
    std::fs::create_dir_all(scratch).map_err(io_err(scratch))?;
    for (i, pkg) in packages.iter().enumerate() {
        let origin = Origin::new("packages", format!("{key_prefix}[{i}]"));
        let stanza = st.unpack(i, pkg, arch, scratch, &origin, &status)?;
        status.put(stanza, &pkg.planned);
    }
    let shared = Origin::new("packages", key_prefix);
    st.finish_alternatives(&shared)?;
    st.accounts.write(&mut st.tree, &shared)?;
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
    let meta = view
        .stat(&status_path)
        .map_or(Meta::FILE, |s| s.meta);
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

impl State<'_> {
    #[allow(clippy::too_many_lines)]
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
        let perr = |message: String| InstallError::Package {
            package: label.clone(),
            message,
        };
        let file = File::open(&pkg.deb).map_err(io_err(&pkg.deb))?;
        let deb_name = pkg
            .deb
            .file_name()
            .map_or_else(|| pkg.deb.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut deb = Deb::open(BufReader::new(file), &format!("{label} ({deb_name})"))?;
        let control_files = deb.control().clone();
        let text = control_files
            .control_text()
            .ok_or_else(|| perr("the control file is not UTF-8".into()))?;
        let stanzas = control::parse(text, Syntax::strict())
            .map_err(|e| perr(format!("control file: {e}")))?;
        let [control] = &stanzas[..] else {
            return Err(perr(format!(
                "the control file holds {} stanzas instead of one",
                stanzas.len()
            )));
        };
        let bin = control::BinaryPackage::from_stanza(control)
            .map_err(|e| perr(format!("control file: {e}")))?;
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
        let multi_same = bin.multi_arch == MultiArch::Same || planned.multi_arch == MultiArch::Same;
        let info_name = if multi_same {
            format!("{}:{}", bin.name, bin.architecture)
        } else {
            bin.name.clone()
        };
        let replaces: BTreeSet<String> = bin
            .replaces
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();

        let mut conffiles: Vec<(String, Vec<String>)> = Vec::new();
        for line in control_files.conffiles() {
            let mut words = line.split_whitespace();
            let Some(path) = words.next() else { continue };
            conffiles.push((path.to_string(), words.map(str::to_string).collect()));
        }

        // Scripts: preinst effects before the files, postinst effects after.
        let mut not_run = Vec::new();
        let mut post_effects = Vec::new();
        for script in ["preinst", "postinst", "config"] {
            let Some(body) = control_files.get(script) else {
                continue;
            };
            let scan = scripts::scan(&String::from_utf8_lossy(body));
            let mut applied = Vec::new();
            let effects = scan.effects;
            if script == "preinst" {
                for e in &effects {
                    applied.push(self.apply(e, &bin.name, origin)?);
                }
            } else {
                applied.extend(effects.iter().map(describe_effect));
                post_effects.extend(effects);
            }
            not_run.push(ScriptNotRun {
                package: bin.name.clone(),
                script: script.to_string(),
                applied,
                not_understood: scan.not_understood,
            });
        }

        // The data.
        let dir = scratch.join(index.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut list = vec!["/.".to_string()];
        let mut unpacked: Vec<Unpacked> = Vec::new();
        let mut md5_of: BTreeMap<ImagePath, String> = BTreeMap::new();
        let mut landed_of: BTreeMap<ImagePath, ImagePath> = BTreeMap::new();
        let mut count = 0usize;
        for entry in deb.entries()? {
            let mut entry = entry?;
            count += 1;
            let deb_path = ImagePath::from_archive(&entry.path)
                .map_err(|m| perr(format!("data.tar: {m}")))?;
            if deb_path.is_root() {
                continue;
            }
            list.push(deb_path.to_string());
            let landed = self.view.resolve_parent(&deb_path);
            landed_of.insert(deb_path.clone(), landed.clone());
            let meta = Meta {
                mode: entry.mode & 0o7777,
                uid: self
                    .accounts
                    .uid(entry.uname.as_deref())
                    .unwrap_or_else(|| u32::try_from(entry.uid).unwrap_or(0)),
                gid: self
                    .accounts
                    .gid(entry.gname.as_deref())
                    .unwrap_or_else(|| u32::try_from(entry.gid).unwrap_or(0)),
            };
            let kind = match &entry.kind {
                EntryKind::Dir => {
                    let existing = self.view.stat(&landed).map(|s| s.kind);
                    let keeps = match existing {
                        Some(StatKind::Dir) => true,
                        Some(StatKind::Symlink(_)) => matches!(
                            self.view.stat_follow(&landed).map(|s| s.kind),
                            Some(StatKind::Dir)
                        ),
                        _ => false,
                    };
                    if keeps
                        || matches!(self.tree.get(&landed).map(|n| &n.kind), Some(NodeKind::Dir))
                    {
                        unpacked.push(Unpacked {
                            deb_path,
                            md5: None,
                        });
                        continue;
                    }
                    NodeKind::Dir
                }
                EntryKind::File => {
                    let host = dir.join(unpacked.len().to_string());
                    let (size, md5) = extract(&mut entry, &host)?;
                    if size != entry.size {
                        return Err(perr(format!(
                            "{deb_path}: read {size} bytes, the archive announced {}",
                            entry.size
                        )));
                    }
                    md5_of.insert(deb_path.clone(), md5.clone());
                    unpacked.push(Unpacked {
                        deb_path: deb_path.clone(),
                        md5: Some(md5),
                    });
                    self.put(
                        index,
                        &bin.name,
                        &replaces,
                        landed,
                        Node {
                            kind: NodeKind::File(Content::Host { path: host, size }),
                            meta,
                            origin: origin.clone(),
                        },
                        &label,
                    )?;
                    continue;
                }
                EntryKind::Symlink => {
                    let target = entry.link_target.clone().unwrap_or_default();
                    NodeKind::Symlink(target)
                }
                EntryKind::Hardlink => {
                    let target = ImagePath::from_archive(entry.link_target.as_deref().unwrap_or(""))
                        .map_err(|m| perr(format!("{deb_path}: hard link target: {m}")))?;
                    let Some(landed_target) = landed_of.get(&target).cloned() else {
                        return Err(perr(format!(
                            "{deb_path}: hard link to {target}, which the package does not ship before it"
                        )));
                    };
                    if let Some(m) = md5_of.get(&target).cloned() {
                        md5_of.insert(deb_path.clone(), m.clone());
                        unpacked.push(Unpacked {
                            deb_path: deb_path.clone(),
                            md5: Some(m),
                        });
                    }
                    self.put(
                        index,
                        &bin.name,
                        &replaces,
                        landed,
                        Node {
                            kind: NodeKind::Hardlink(landed_target),
                            meta,
                            origin: origin.clone(),
                        },
                        &label,
                    )?;
                    continue;
                }
                other => {
                    return Err(perr(format!(
                        "{deb_path} is a {other:?}; device nodes and fifos cannot be shipped in \
                         an image layer, create them at boot instead (e.g. systemd-tmpfiles)"
                    )))
                }
            };
            unpacked.push(Unpacked {
                deb_path,
                md5: None,
            });
            self.put(
                index,
                &bin.name,
                &replaces,
                landed,
                Node {
                    kind,
                    meta,
                    origin: origin.clone(),
                },
                &label,
            )?;
        }
        self.report.files += count;

        // Conffiles with the md5 of what was unpacked.
        let mut conffile_lines = Vec::new();
        for (path, flags) in &conffiles {
            let p = ImagePath::new(path).map_err(|m| perr(format!("conffiles: {m}")))?;
            let md5 = match md5_of.get(&p) {
                Some(m) => m.clone(),
                None if flags.iter().any(|f| f == "remove-on-upgrade") => "newconffile".into(),
                None => {
                    return Err(perr(format!(
                        "conffile {path} is not a regular file of the package"
                    )))
                }
            };
            let mut line = format!("{path} {md5}");
            for f in flags {
                line.push(' ');
                line.push_str(f);
            }
            conffile_lines.push(line);
        }

        // Upgrade: remove what the old version shipped and the new one does not.
        let old = status.find(&bin.name, &bin.architecture, multi_same);
        let mut replaced = None;
        if let Some(old) = old {
            replaced = Some(old.version.clone());
            let new_paths: BTreeSet<&str> = list.iter().map(String::as_str).collect();
            for old_info in old_info_names(&bin.name, &old.architecture) {
                for suffix in ["prerm", "postrm"] {
                    let p = ipath(&format!("{INFO}/{old_info}.{suffix}"))?;
                    if self.view.stat(&p).is_some() {
                        not_run.push(ScriptNotRun {
                            package: bin.name.clone(),
                            script: format!("{suffix} of {} {}", bin.name, old.version),
                            applied: Vec::new(),
                            not_understood: Vec::new(),
                        });
                    }
                }
                let list_path = ipath(&format!("{INFO}/{old_info}.list"))?;
                if let Some(text) = self.view.read(&list_path) {
                    for line in String::from_utf8_lossy(&text).lines() {
                        if line == "/." || new_paths.contains(line) {
                            continue;
                        }
                        let Ok(p) = ImagePath::new(line) else { continue };
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
                for suffix in INFO_SUFFIXES {
                    let p = ipath(&format!("{INFO}/{old_info}.{suffix}"))?;
                    if self.view.stat(&p).is_some() {
                        self.stale_info.insert(self.view.resolve_parent(&p));
                    }
                }
            }
        }

        // Info files.
        let mut list_text = list.join("\n");
        list_text.push('\n');
        self.info(&info_name, "list", list_text.into_bytes(), 0o644, origin)?;
        let md5sums = match control_files.files.get("md5sums") {
            Some(f) => (f.contents.clone(), f.mode),
            None => {
                let mut s = String::new();
                for u in &unpacked {
                    if let Some(m) = &u.md5 {
                        s.push_str(&format!("{m}  {}\n", u.deb_path.relative()));
                    }
                }
                (s.into_bytes(), 0o644)
            }
        };
        self.info(&info_name, "md5sums", md5sums.0, md5sums.1, origin)?;
        for (name, f) in &control_files.files {
            if name == "control" || name == "md5sums" {
                continue;
            }
            if name.contains('/') || name.starts_with('.') {
                continue;
            }
            self.info(&info_name, name, f.contents.clone(), f.mode & 0o7777, origin)?;
        }

        // Post-unpack effects.
        for e in &post_effects {
            self.apply(e, &bin.name, origin)?;
        }
        self.report.scripts_not_run.extend(not_run);

        // Triggers.
        self.triggers(&bin.name, &control_files, &list);

        self.report.packages.push(PackageReport {
            name: bin.name.clone(),
            version: bin.version.to_string(),
            architecture: bin.architecture.clone(),
            files: count,
            conffiles: conffile_lines.clone(),
            replaced,
        });
        Ok(status_stanza(control, &conffile_lines))
    }

    /// Adds a non-directory entry, refusing a path another package of this
    /// installation already wrote unless this one `Replaces` it.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        index: usize,
        name: &str,
        replaces: &BTreeSet<String>,
        landed: ImagePath,
        node: Node,
        label: &str,
    ) -> Result<(), InstallError> {
        if let Some((i, other)) = self.owner.get(&landed) {
            if *i != index && !replaces.contains(other) {
                return Err(InstallError::Package {
                    package: label.to_string(),
                    message: format!(
                        "{landed} is also shipped by {other}; a package that takes over files must \
                         declare `Replaces: {other}`"
                    ),
                });
            }
        }
        if node.kind != NodeKind::Dir {
            self.owner.insert(landed.clone(), (index, name.to_string()));
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

    fn triggers(&mut self, package: &str, control: &super::debfile::ControlFiles, list: &[String]) {
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
        let Some(file) = self.view.read_text("/var/lib/dpkg/triggers/File") else {
            return;
        };
        for line in file.lines() {
            let Some((path, who)) = line.split_once(' ') else {
                continue;
            };
            let Ok(tp) = ImagePath::new(path) else { continue };
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
    }

    /// Applies (or records) one effect; returns how it is described in the report.
    fn apply(&mut self, e: &Effect, package: &str, origin: &Origin) -> Result<String, InstallError> {
        match e {
            Effect::Group(g) => {
                if let Some(id) = self.accounts.add_group(g)? {
                    self.report.groups_added.push(AccountAdded {
                        name: g.name.clone(),
                        id,
                        package: package.to_string(),
                    });
                }
            }
            Effect::User(u) => {
                if let Some((uid, gid, own)) = self.accounts.add_user(u)? {
                    if let Some(g) = own {
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
fn extract(reader: &mut dyn Read, host: &Path) -> Result<(u64, String), InstallError> {
    let out = File::create(host).map_err(io_err(host))?;
    let mut w = io::BufWriter::new(out);
    let mut md5 = Md5::new();
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
        md5.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(io_err(host))?;
        size += n as u64;
    }
    w.flush().map_err(io_err(host))?;
    Ok((size, hex::encode(md5.finalize())))
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
        let Some(bytes) = view.read(&ipath(STATUS)?) else {
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
        let stanzas = control::parse(&text, Syntax::strict())
            .map_err(|e| bad(format!("line {}: {}", e.line + line - 1, e.message)))?;
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
        let stanza = control::parse(&c.3, Syntax::strict()).ok()?.into_iter().next()?;
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

/// An account file of the image.
struct AccountFile {
    path: ImagePath,
    meta: Meta,
    text: String,
    changed: bool,
}

impl AccountFile {
    fn read(view: &dyn RootView, path: &str) -> Result<Option<Self>, InstallError> {
        let p = ipath(path)?;
        let resolved = view.resolve(&p);
        let Some(bytes) = view.read_raw(&resolved) else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| InstallError::Image {
            path: path.into(),
            message: "is not UTF-8".into(),
        })?;
        let meta = view.stat(&resolved).map_or(Meta::FILE, |s| s.meta);
        Ok(Some(AccountFile {
            path: resolved,
            meta,
            text,
            changed: false,
        }))
    }

    fn append(&mut self, line: &str) {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.text.push('\n');
        self.changed = true;
    }

    /// (name, id) of each entry (third field).
    fn entries(&self) -> Vec<(String, u32)> {
        self.text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?.to_string();
                let id = f.nth(1)?.parse().ok()?;
                Some((name, id))
            })
            .collect()
    }
}

/// `/etc/group`, `/etc/passwd` and their shadows.
struct Accounts {
    group: AccountFile,
    passwd: AccountFile,
    gshadow: Option<AccountFile>,
    shadow: Option<AccountFile>,
}

impl Accounts {
    fn read(view: &dyn RootView) -> Result<Self, InstallError> {
        let blank = |p: &str| -> Result<AccountFile, InstallError> {
            Ok(AccountFile {
                path: view.resolve(&ipath(p)?),
                meta: Meta::FILE,
                text: String::new(),
                changed: false,
            })
        };
        Ok(Accounts {
            group: match AccountFile::read(view, "/etc/group")? {
                Some(f) => f,
                None => blank("/etc/group")?,
            },
            passwd: match AccountFile::read(view, "/etc/passwd")? {
                Some(f) => f,
                None => blank("/etc/passwd")?,
            },
            gshadow: AccountFile::read(view, "/etc/gshadow")?,
            shadow: AccountFile::read(view, "/etc/shadow")?,
        })
    }

    fn uid(&self, name: Option<&str>) -> Option<u32> {
        let name = name?;
        self.passwd
            .entries()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
    }

    fn gid(&self, name: Option<&str>) -> Option<u32> {
        let name = name?;
        self.group
            .entries()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
    }

    fn free(file: &AccountFile, what: &str) -> Result<u32, InstallError> {
        let used: BTreeSet<u32> = file.entries().into_iter().map(|(_, id)| id).collect();
        (FIRST_SYSTEM_ID..=LAST_SYSTEM_ID)
            .find(|i| !used.contains(i))
            .ok_or_else(|| InstallError::Image {
                path: file.path.to_string(),
                message: format!(
                    "no free system {what} id left in {FIRST_SYSTEM_ID}-{LAST_SYSTEM_ID}"
                ),
            })
    }

    /// Adds a group unless it exists; returns its new id.
    fn add_group(&mut self, g: &GroupSpec) -> Result<Option<u32>, InstallError> {
        if self.gid(Some(&g.name)).is_some() {
            return Ok(None);
        }
        let id = match g.gid {
            Some(id) => id,
            None => Self::free(&self.group, "group")?,
        };
        self.group.append(&format!("{}:x:{id}:", g.name));
        if let Some(s) = &mut self.gshadow {
            s.append(&format!("{}:!::", g.name));
        }
        Ok(Some(id))
    }

    /// Adds a user unless it exists; returns (uid, gid, id of its own new group).
    fn add_user(&mut self, u: &UserSpec) -> Result<Option<(u32, u32, Option<u32>)>, InstallError> {
        if self.uid(Some(&u.name)).is_some() {
            return Ok(None);
        }
        let uid = match u.uid {
            Some(id) => id,
            None => Self::free(&self.passwd, "user")?,
        };
        let (gid, own) = match &u.group {
            PrimaryGroup::Own => match self.gid(Some(&u.name)) {
                Some(g) => (g, None),
                None => {
                    let g = self
                        .add_group(&GroupSpec {
                            name: u.name.clone(),
                            gid: None,
                        })?
                        .unwrap_or(0);
                    (g, Some(g))
                }
            },
            PrimaryGroup::Named(n) => match self.gid(Some(n)) {
                Some(g) => (g, None),
                None if n == "nogroup" => (65534, None),
                None => {
                    return Err(InstallError::Image {
                        path: self.group.path.to_string(),
                        message: format!(
                            "user {} is to be created in group {n}, which the image does not have",
                            u.name
                        ),
                    })
                }
            },
            PrimaryGroup::Id(g) => (*g, None),
        };
        self.passwd.append(&format!(
            "{}:x:{uid}:{gid}:{}:{}:{}",
            u.name, u.gecos, u.home, u.shell
        ));
        if let Some(s) = &mut self.shadow {
            s.append(&format!("{}:!:::::::", u.name));
        }
        Ok(Some((uid, gid, own)))
    }

    fn write(&self, tree: &mut FileTree, origin: &Origin) -> Result<(), InstallError> {
        for f in [Some(&self.group), Some(&self.passwd), self.gshadow.as_ref(), self.shadow.as_ref()]
            .into_iter()
            .flatten()
        {
            if f.changed {
                tree.replace(
                    f.path.clone(),
                    Node::file(f.text.clone(), origin.clone()).with_meta(f.meta),
                );
            }
        }
        Ok(())
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
        let Some(text) = view.read_text(&path) else {
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
