//! The lock file: every package a recipe's `packages` layers resolved to,
//! so that later builds install exactly those files.
//!
//! `nodeimg lock RECIPE` writes `RECIPE.lock` next to the recipe
//! (`recipes/x.toml` -> `recipes/x.toml.lock`), a TOML file:
//!
//! ```toml
//! version = 2
//! architecture = "amd64"
//!
//! [[release]]                 # the signed metadata the resolution used
//! url = "http://repo.invalid/debian/dists/stable/InRelease"
//! size = 1234
//! sha256 = "..."
//!
//! [[index]]                   # the Packages indexes it read
//! url = "http://repo.invalid/debian/dists/stable/main/binary-amd64/Packages.xz"
//! size = 567
//! sha256 = "..."
//!
//! [[layer]]
//! name = "runtime"
//! requests = ["containerd.io=1.6.20-1"]   # the layer's packages, as the recipe asks
//! dpkg-status = "..."         # SHA256 of the installed packages it resolved against
//!
//! [[layer.source]]            # the apt sources the layer saw, in priority order
//! file = "/etc/apt/sources.list.d/docker.sources"
//! uris = ["https://download.example/linux/ubuntu"]
//! suites = ["focal"]
//! components = ["stable"]
//! keys = ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]
//!
//! [[layer.package]]           # sorted by name; `order` is the installation order
//! name = "containerd.io"
//! version = "1.6.20-1"
//! architecture = "amd64"
//! multi-arch = "no"
//! auto = false
//! order = 0
//! source = "https://download.example/linux/ubuntu focal stable"
//! url = "https://download.example/linux/ubuntu/pool/stable/c/containerd.io_1.6.20-1_amd64.deb"
//! size = 30100000
//! sha256 = "..."
//! units = ["/lib/systemd/system/containerd.service"]  # its systemd unit files
//! ```
//!
//! A layer installed by the rpm backend has `kind = "rpm"`, `rpmdb` (the
//! SHA256 of the installed packages it resolved against, see
//! [`rpmdb_digest`]) instead of `dpkg-status`, `[[layer.repo]]` (file, id,
//! baseurl, gpgcheck, repo-gpgcheck, gpgkeys) instead of
//! `[[layer.source]]`, and packages whose `version` is
//! `epoch:version-release`, without `multi-arch`:
//!
//! ```toml
//! [[layer]]
//! name = "docker"
//! kind = "rpm"
//! requests = ["docker-ce-19.03.11"]
//! rpmdb = "..."
//!
//! [[layer.repo]]
//! file = "/etc/yum.repos.d/docker-ce.repo"
//! id = "docker-ce-stable"
//! baseurl = "https://download.example/linux/centos/7/x86_64/stable"
//! gpgcheck = true
//! repo-gpgcheck = false
//! gpgkeys = ["https://download.example/linux/centos/gpg"]
//!
//! [[layer.package]]
//! name = "docker-ce"
//! version = "3:19.03.11-3.el7"
//! architecture = "x86_64"
//! auto = false
//! order = 3
//! source = "docker-ce-stable"
//! url = "https://download.example/linux/centos/7/x86_64/stable/Packages/docker-ce-19.03.11-3.el7.x86_64.rpm"
//! size = 25100000
//! sha256 = "..."
//! ```
//!
//! URLs are the canonical ones, before `--mirror` remapping. The output is
//! deterministic: the same resolution writes the same bytes.
//!
//! Version 2 added `units`: the systemd unit files each package ships (its
//! entries in the system unit folders, left out when there are none), which
//! lets `nodeimg check` see, without installing anything, the units a
//! layer's `systemd.enable` may name. Version 1 files are read as they are;
//! what their packages ship is unknown until `nodeimg lock` runs again.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, RecipeError, Result};
use nodeimg_recipe::recipe::Recipe;
use nodeimg_recipe::sourcemap::SourceMap;

/// The format version this build writes.
pub(crate) const LOCK_VERSION: u32 = 2;
/// The oldest format version this build reads.
const OLDEST_VERSION: u32 = 1;
/// The first format version that records the units of each package.
const UNITS_VERSION: u32 = 2;

const HEADER: &str = "\
# Written by `nodeimg lock`: the packages this recipe's layers install,
# resolved and verified. Commit it next to the recipe; run `nodeimg lock`
# again to update it rather than editing it.
";

/// The lock file of a recipe: `RECIPE.lock` next to it.
pub fn lock_path(recipe: &Path) -> PathBuf {
    let mut s: OsString = recipe.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The lock file of one platform of a recipe built for several:
/// `RECIPE.ARCH.lock` next to it (`ARCH` the OCI architecture).
pub fn lock_path_for(recipe: &Path, arch: &str) -> PathBuf {
    let mut s: OsString = recipe.as_os_str().to_owned();
    s.push(format!(".{arch}.lock"));
    PathBuf::from(s)
}

/// A lock file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    /// The format version: [`LOCK_VERSION`] when written, 1 or 2 when read.
    pub version: u32,
    /// The image's architecture, Debian's spelling (`amd64`, `armhf`).
    pub architecture: String,
    /// `InRelease`, or `Release` and `Release.gpg`, as verified; by URL.
    #[serde(default, rename = "release", skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<LockedFile>,
    /// `Packages` indexes read; by URL.
    #[serde(default, rename = "index", skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<LockedFile>,
    /// The recipe's layers with packages, in recipe order.
    #[serde(default, rename = "layer", skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LockedLayer>,
}

/// A file by canonical URL, size and SHA256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedFile {
    /// Canonical URL (before `--mirror`).
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA256, lowercase hex.
    pub sha256: String,
}

/// Which backend installed a layer's packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// Debian packages from apt sources (the default, not written).
    #[default]
    Deb,
    /// rpm packages from yum or zypper repositories.
    Rpm,
}

impl LayerKind {
    /// True for [`LayerKind::Deb`] (which the file leaves out).
    pub(crate) fn is_deb(&self) -> bool {
        *self == LayerKind::Deb
    }

    /// What a layer of this kind installs, for messages.
    pub(crate) fn noun(&self) -> &'static str {
        match self {
            LayerKind::Deb => "Debian packages",
            LayerKind::Rpm => "rpm packages",
        }
    }
}

/// One layer's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedLayer {
    /// The layer's name.
    pub name: String,
    /// The backend: `deb` (left out) or `rpm`.
    #[serde(default, skip_serializing_if = "LayerKind::is_deb")]
    pub kind: LayerKind,
    /// Its `packages` list, variables expanded.
    pub requests: Vec<String>,
    /// SHA256 of the dpkg status the layer resolved against (the base's
    /// and earlier layers' installed packages): a build whose image below
    /// the layer differs is warned. Debian layers only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dpkg_status: String,
    /// SHA256 of the installed rpm packages the layer resolved against
    /// (see [`rpmdb_digest`]); rpm layers only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rpmdb: String,
    /// The apt sources it resolved against.
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<LockedSource>,
    /// The yum and zypper repositories it resolved against (rpm layers).
    #[serde(default, rename = "repo", skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<LockedRepo>,
    /// What it installs, by name.
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<LockedPackage>,
}

/// An apt source as the image declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedSource {
    /// The deb822 file in the image.
    pub file: String,
    /// `URIs`.
    pub uris: Vec<String>,
    /// `Suites`.
    pub suites: Vec<String>,
    /// `Components`.
    #[serde(default)]
    pub components: Vec<String>,
    /// Fingerprints of the `Signed-By` keys.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// An enabled yum or zypper repository as the image declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedRepo {
    /// The `.repo` file in the image.
    pub file: String,
    /// The repository id (its `[section]`).
    pub id: String,
    /// `baseurl`, variables substituted.
    pub baseurl: String,
    /// `gpgcheck`.
    pub gpgcheck: bool,
    /// `repo_gpgcheck`.
    pub repo_gpgcheck: bool,
    /// `gpgkey` URLs.
    #[serde(default)]
    pub gpgkeys: Vec<String>,
}

/// SHA256 (hex) of a list of installed rpm packages, given as
/// `name-epoch:version-release.arch`: sorted, one per line.
pub fn rpmdb_digest(nevras: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut v: Vec<&String> = nevras.iter().collect();
    v.sort();
    v.dedup();
    let mut h = Sha256::new();
    for n in v {
        h.update(n.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// One resolved package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Version, as the repository writes it (rpm: always
    /// `epoch:version-release`).
    pub version: String,
    /// Architecture (the image's or `all`; rpm: the image's or `noarch`).
    pub architecture: String,
    /// `Multi-Arch`: no, same, foreign or allowed (Debian packages only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub multi_arch: String,
    /// Pulled in as a dependency rather than requested.
    pub auto: bool,
    /// Position in the layer's installation order, from 0.
    pub order: usize,
    /// The repository it came from: `URI SUITE [COMPONENT]`, or an rpm
    /// repository's id.
    pub source: String,
    /// Canonical URL of the `.deb` or `.rpm`.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA256, lowercase hex.
    pub sha256: String,
    /// The systemd unit files it ships (its entries in the system unit
    /// folders, see [`nodeimg_layers::systemd::unit_file_name`]), sorted;
    /// empty in a version 1 lock, where they are not recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
}

impl LockedPackage {
    /// `name version` for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// That a locked package is for the lock's architecture `arch` (spelled
/// `shown` in the message) or for every architecture (`neutral`: `all`,
/// `noarch`); otherwise the field and what is wrong, as
/// [`PackageRules::check_locked`] returns them.
pub fn check_architecture(
    p: &LockedPackage,
    neutral: &str,
    arch: &str,
    shown: &str,
) -> std::result::Result<(), (&'static str, String)> {
    if p.architecture == neutral || p.architecture == arch {
        return Ok(());
    }
    Err((
        "architecture",
        format!(
            "{} {} is for {}, the lock for {shown}",
            p.name, p.version, p.architecture
        ),
    ))
}

/// The checks one package backend makes of the packages a lock names for
/// the layers it installs.
pub trait PackageRules {
    /// The kind of layer this backend installs.
    fn kind(&self) -> LayerKind;
    /// Whether `p` is a package this backend can install in an image of
    /// the lock's `architecture` (Debian's spelling); otherwise the field
    /// of the package that is wrong (`version`, `architecture`,
    /// `multi-arch`) and what is wrong with it.
    fn check_locked(
        &self,
        p: &LockedPackage,
        architecture: &str,
    ) -> std::result::Result<(), (&'static str, String)>;
}

impl LockedLayer {
    /// The packages in installation order.
    pub fn in_order(&self) -> Vec<&LockedPackage> {
        let mut v: Vec<&LockedPackage> = self.packages.iter().collect();
        v.sort_by_key(|p| p.order);
        v
    }
}

impl Lock {
    /// A lock in its canonical form: release and index files sorted by URL
    /// without duplicates, each layer's packages sorted by name and
    /// architecture.
    pub fn new(
        architecture: &str,
        releases: Vec<LockedFile>,
        indexes: Vec<LockedFile>,
        mut layers: Vec<LockedLayer>,
    ) -> Lock {
        let sorted = |v: Vec<LockedFile>| -> Vec<LockedFile> {
            v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
        };
        for l in &mut layers {
            for p in &mut l.packages {
                p.units.sort();
                p.units.dedup();
            }
            l.packages.sort_by(|a, b| {
                (a.name.as_str(), a.architecture.as_str(), a.order).cmp(&(
                    b.name.as_str(),
                    b.architecture.as_str(),
                    b.order,
                ))
            });
        }
        Lock {
            version: LOCK_VERSION,
            architecture: architecture.to_string(),
            releases: sorted(releases),
            indexes: sorted(indexes),
            layers,
        }
    }

    /// Whether the lock records the unit files its packages ship (a
    /// version 1 lock does not).
    pub fn records_units(&self) -> bool {
        self.version >= UNITS_VERSION
    }

    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LockedLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Every locked package with its layer's name.
    pub fn packages(&self) -> impl Iterator<Item = (&str, &LockedPackage)> {
        self.layers
            .iter()
            .flat_map(|l| l.in_order().into_iter().map(move |p| (l.name.as_str(), p)))
    }

    /// The file's text: a comment header, then TOML.
    pub fn render(&self) -> Result<String> {
        let body = toml::to_string(self).map_err(|e| {
            Error::Image(nodeimg_image::Error::cause(
                "lock file: cannot write TOML",
                e,
            ))
        })?;
        Ok(format!("{HEADER}\n{body}"))
    }

    /// Parse and validate a lock file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path, rules: &[&dyn PackageRules]) -> Result<Lock> {
        let map = SourceMap::new(text);
        let lock: Lock = toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(s) => {
                    let (l, c) = map.line_col(s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            lock_error(file, line, column, None, e.message().trim().to_string())
        })?;
        lock.validate(file, &map, rules)?;
        Ok(lock)
    }

    fn validate(&self, file: &Path, map: &SourceMap, rules: &[&dyn PackageRules]) -> Result<()> {
        let err = |key: &str, message: String| {
            let (line, column) = map
                .locate(key)
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            lock_error(file, line, column, Some(key.to_string()), message)
        };
        if !(OLDEST_VERSION..=LOCK_VERSION).contains(&self.version) {
            return Err(err(
                "version",
                format!(
                    "lock file version {} is not supported (this nodeimg reads versions {OLDEST_VERSION} to {LOCK_VERSION})",
                    self.version
                ),
            ));
        }
        if self.architecture.trim().is_empty() {
            return Err(err("architecture", "the architecture is empty".into()));
        }
        for (what, files) in [("release", &self.releases), ("index", &self.indexes)] {
            for (i, f) in files.iter().enumerate() {
                check_url(&f.url).map_err(|e| err(&format!("{what}[{i}].url"), e.to_string()))?;
                check_sha256(&f.sha256)
                    .map_err(|e| err(&format!("{what}[{i}].sha256"), e.to_string()))?;
            }
        }
        let mut names = BTreeSet::new();
        for (li, l) in self.layers.iter().enumerate() {
            let key = format!("layer[{li}]");
            if !names.insert(l.name.as_str()) {
                return Err(err(
                    &format!("{key}.name"),
                    format!("layer {:?} appears twice", l.name),
                ));
            }
            validate_kind(l, &key, &err)?;
            self.validate_packages(l, &key, rules, &err)?;
        }
        Ok(())
    }

    /// Read `path`; `None` when it does not exist. Only a regular file is
    /// read (a FIFO there is an error, not a wait).
    pub fn read(path: &Path, rules: &[&dyn PackageRules]) -> Result<Option<Lock>> {
        let text = match nodeimg_recipe::inputs::read_regular_file(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(nodeimg_image::Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
                .into())
            }
        };
        let text = String::from_utf8(text)
            .map_err(|_| lock_error(path, None, None, None, "the lock file is not UTF-8".into()))?;
        Lock::parse(&text, path, rules).map(Some)
    }

    /// Write to `path` atomically (a temporary file next to it, renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = self.render()?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".nodeimg-lock-")
            .tempfile_in(&dir)
            .ctx(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.write_all(text.as_bytes())
            .ctx(|| format!("writing {}", tmp.path().display()))?;
        tmp.as_file()
            .sync_all()
            .ctx(|| format!("writing {}", tmp.path().display()))?;
        // A new file gets the usual mode of a source file, not tempfile's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777);
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                .ctx(|| format!("setting the mode of {}", tmp.path().display()))?;
        }
        tmp.persist(path)
            .map_err(|e| e.error)
            .ctx(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// The fields of a layer that only its kind may have.
fn validate_kind(l: &LockedLayer, key: &str, err: &dyn Fn(&str, String) -> Error) -> Result<()> {
    match l.kind {
        LayerKind::Deb => {
            check_sha256(&l.dpkg_status)
                .map_err(|e| err(&format!("{key}.dpkg-status"), e.to_string()))?;
            if !l.rpmdb.is_empty() || !l.repos.is_empty() {
                return Err(err(
                    &format!("{key}.kind"),
                    "rpmdb and [[layer.repo]] belong to a layer of kind = \"rpm\"".into(),
                ));
            }
        }
        LayerKind::Rpm => {
            check_sha256(&l.rpmdb).map_err(|e| err(&format!("{key}.rpmdb"), e.to_string()))?;
            if !l.dpkg_status.is_empty() || !l.sources.is_empty() {
                return Err(err(
                    &format!("{key}.kind"),
                    "dpkg-status and [[layer.source]] belong to a Debian layer, not one of kind = \"rpm\"".into(),
                ));
            }
            for (ri, r) in l.repos.iter().enumerate() {
                check_url(&r.baseurl)
                    .map_err(|e| err(&format!("{key}.repo[{ri}].baseurl"), e.to_string()))?;
            }
        }
    }
    Ok(())
}

impl Lock {
    /// The packages of layer `l` (at `key`).
    fn validate_packages(
        &self,
        l: &LockedLayer,
        key: &str,
        rules: &[&dyn PackageRules],
        err: &dyn Fn(&str, String) -> Error,
    ) -> Result<()> {
        let mut orders = BTreeSet::new();
        for (pi, p) in l.packages.iter().enumerate() {
            let pkey = format!("{key}.package[{pi}]");
            if p.name.is_empty() {
                return Err(err(&format!("{pkey}.name"), "the name is empty".into()));
            }
            if let Some(r) = rules.iter().find(|r| r.kind() == l.kind) {
                r.check_locked(p, &self.architecture)
                    .map_err(|(field, m)| err(&format!("{pkey}.{field}"), m))?;
            }
            check_url(&p.url).map_err(|e| err(&format!("{pkey}.url"), e.to_string()))?;
            check_sha256(&p.sha256).map_err(|e| err(&format!("{pkey}.sha256"), e.to_string()))?;
            if !p.units.is_empty() && !self.records_units() {
                return Err(err(
                    &format!("{pkey}.units"),
                    format!("units are recorded from lock file version {UNITS_VERSION} on, and this one is version {}", self.version),
                ));
            }
            for (ui, u) in p.units.iter().enumerate() {
                if nodeimg_layers::systemd::unit_file_name(u).is_none() {
                    return Err(err(
                        &format!("{pkey}.units[{ui}]"),
                        format!(
                            "{u:?} is not a unit file in a folder of the systemd unit search path"
                        ),
                    ));
                }
            }
            if p.order >= l.packages.len() || !orders.insert(p.order) {
                return Err(err(
                    &format!("{pkey}.order"),
                    format!(
                        "order {} of {} is repeated or out of range 0..{}",
                        p.order,
                        p.name,
                        l.packages.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn lock_error(
    file: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: Option<String>,
    message: String,
) -> Error {
    Error::recipe(RecipeError {
        file: file.to_path_buf(),
        line,
        column,
        key,
        message,
        hint: Some(
            "the lock file is written by `nodeimg lock RECIPE`; run it again instead of editing the file"
                .into(),
        ),
    })
}

/// Why a value of the lock file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LockValueError {
    /// Not a URL nodeimg fetches from.
    #[error("{0:?} is not an http://, https:// or file:// URL")]
    Url(String),
    /// Not a SHA256 as the lock writes it.
    #[error("{0:?} is not a SHA256 (64 lowercase hex digits)")]
    Sha256(String),
}

fn check_url(url: &str) -> std::result::Result<(), LockValueError> {
    if ["http://", "https://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        Ok(())
    } else {
        Err(LockValueError::Url(url.to_string()))
    }
}

fn check_sha256(s: &str) -> std::result::Result<(), LockValueError> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(LockValueError::Sha256(s.to_string()))
    }
}

/// How a layer's `packages` list differs from the locked one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// In the recipe, not in the lock; `index` into the recipe's list.
    Added {
        /// Position in the recipe's list.
        index: usize,
        /// The request.
        text: String,
    },
    /// In the lock, no longer in the recipe.
    Removed {
        /// The locked request.
        text: String,
    },
    /// The same package asked for differently (a pin added, changed or
    /// dropped).
    Changed {
        /// Position in the recipe's list.
        index: usize,
        /// The locked request.
        locked: String,
        /// The recipe's.
        now: String,
    },
    /// The same requests in another order.
    Reordered,
}

impl Change {
    /// Where in the layer the change is: `packages[i]` or `packages`.
    pub fn key(&self) -> String {
        match self {
            Change::Added { index, .. } | Change::Changed { index, .. } => {
                format!("packages[{index}]")
            }
            Change::Removed { .. } | Change::Reordered => "packages".into(),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added { text, .. } => write!(f, "{text:?} was added"),
            Change::Removed { text } => write!(f, "{text:?} was removed"),
            Change::Changed { locked, now, .. } => {
                write!(f, "{now:?} was {locked:?} when the lock was made")
            }
            Change::Reordered => write!(f, "the packages were reordered"),
        }
    }
}

fn request_name(r: &str) -> &str {
    r.split('=').next().unwrap_or(r).trim()
}

/// The package an rpm request names: `name`, `name-version` or
/// `name-version-release`, where a version starts with a digit (or is
/// `epoch:version`).
fn rpm_request_name(r: &str) -> &str {
    let mut name = r.trim();
    for _ in 0..2 {
        match name.rsplit_once('-') {
            Some((n, v)) if !n.is_empty() && v.starts_with(|c: char| c.is_ascii_digit()) => {
                name = n;
            }
            _ => break,
        }
    }
    name
}

/// How `now` (the recipe's list) differs from `locked`; empty when equal.
pub fn diff_requests(locked: &[String], now: &[String]) -> Vec<Change> {
    diff_requests_of(LayerKind::Deb, locked, now)
}

/// [`diff_requests`] for a layer of `kind`: an rpm request's package is
/// its name before `-version[-release]`, a Debian one's before `=`.
pub fn diff_requests_of(kind: LayerKind, locked: &[String], now: &[String]) -> Vec<Change> {
    if locked == now {
        return Vec::new();
    }
    let request_name = match kind {
        LayerKind::Deb => request_name,
        LayerKind::Rpm => rpm_request_name,
    };
    let mut by_name: BTreeMap<&str, &String> = BTreeMap::new();
    for r in locked {
        by_name.insert(request_name(r), r);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (index, r) in now.iter().enumerate() {
        let name = request_name(r);
        seen.insert(name);
        match by_name.get(name) {
            None => out.push(Change::Added {
                index,
                text: r.clone(),
            }),
            Some(l) if *l != r => out.push(Change::Changed {
                index,
                locked: (*l).clone(),
                now: r.clone(),
            }),
            Some(_) => {}
        }
    }
    for r in locked {
        if !seen.contains(request_name(r)) {
            out.push(Change::Removed { text: r.clone() });
        }
    }
    if out.is_empty() {
        out.push(Change::Reordered);
    }
    out
}

/// How the apt sources a layer sees differ from the locked ones: one
/// sentence per difference; empty when equal.
pub fn diff_sources(locked: &[LockedSource], now: &[LockedSource]) -> Vec<String> {
    let mut out = Vec::new();
    let describe =
        |s: &LockedSource| format!("{} ({} {})", s.file, s.uris.join(" "), s.suites.join(" "));
    let max = locked.len().max(now.len());
    for i in 0..max {
        match (locked.get(i), now.get(i)) {
            (Some(l), Some(n)) if l == n => {}
            (Some(l), Some(n)) => {
                let mut what = Vec::new();
                if l.file != n.file {
                    what.push(format!("file {} -> {}", l.file, n.file));
                }
                for (field, a, b) in [
                    ("URIs", &l.uris, &n.uris),
                    ("Suites", &l.suites, &n.suites),
                    ("Components", &l.components, &n.components),
                    ("Signed-By keys", &l.keys, &n.keys),
                ] {
                    if a != b {
                        what.push(format!("{field} {} -> {}", a.join(" "), b.join(" ")));
                    }
                }
                out.push(format!("{}: {}", n.file, what.join(", ")));
            }
            (Some(l), None) => out.push(format!("{} was removed", describe(l))),
            (None, Some(n)) => out.push(format!("{} was added", describe(n))),
            (None, None) => {}
        }
    }
    out
}

/// How the rpm repositories a layer sees differ from the locked ones: one
/// sentence per difference; empty when equal.
pub fn diff_repos(locked: &[LockedRepo], now: &[LockedRepo]) -> Vec<String> {
    let mut out = Vec::new();
    let describe = |r: &LockedRepo| format!("[{}] in {} ({})", r.id, r.file, r.baseurl);
    for i in 0..locked.len().max(now.len()) {
        match (locked.get(i), now.get(i)) {
            (Some(l), Some(n)) if l == n => {}
            (Some(l), Some(n)) => {
                let mut what = Vec::new();
                for (field, a, b) in [
                    ("file", &l.file, &n.file),
                    ("id", &l.id, &n.id),
                    ("baseurl", &l.baseurl, &n.baseurl),
                ] {
                    if a != b {
                        what.push(format!("{field} {a} -> {b}"));
                    }
                }
                for (field, a, b) in [
                    ("gpgcheck", l.gpgcheck, n.gpgcheck),
                    ("repo_gpgcheck", l.repo_gpgcheck, n.repo_gpgcheck),
                ] {
                    if a != b {
                        what.push(format!("{field} {a} -> {b}"));
                    }
                }
                if l.gpgkeys != n.gpgkeys {
                    what.push(format!(
                        "gpgkey {} -> {}",
                        l.gpgkeys.join(" "),
                        n.gpgkeys.join(" ")
                    ));
                }
                out.push(format!("[{}] in {}: {}", n.id, n.file, what.join(", ")));
            }
            (Some(l), None) => out.push(format!("{} was removed", describe(l))),
            (None, Some(n)) => out.push(format!("{} was added", describe(n))),
            (None, None) => {}
        }
    }
    out
}

/// Check `recipe` (expanded for the Debian architecture `arch`) against
/// `lock` read from `lock_file`, without the network: the same
/// architecture, the same layers with packages in the same order, the same
/// requests in each. The apt sources are compared when each layer is
/// installed. Errors name the recipe's file, line and key where there is
/// one, what changed, and say to run `nodeimg lock`.
pub fn check_recipe(lock: &Lock, lock_file: &Path, recipe: &Recipe, arch: &str) -> Result<()> {
    let lf = lock_file.display();
    let recipe_file = recipe
        .files
        .first()
        .map_or_else(|| PathBuf::from("recipe"), |f| f.display.clone());
    let hint = Some(format!(
        "run `nodeimg lock {}` to resolve the recipe again and update {lf}, or build with --no-lock",
        recipe_file.display()
    ));
    if lock.architecture != arch {
        return Err(Error::recipe(RecipeError {
            file: lock_file.to_path_buf(),
            line: None,
            column: None,
            key: Some("architecture".into()),
            message: format!(
                "the lock was made for {}, the image is {arch}",
                lock.architecture
            ),
            hint,
        }));
    }
    let with_packages: Vec<_> = recipe
        .layers
        .iter()
        .filter(|l| !l.spec.packages.is_empty())
        .collect();
    let locked_names: Vec<&str> = lock.layers.iter().map(|l| l.name.as_str()).collect();
    for l in &with_packages {
        check_layer(lock, &lf.to_string(), recipe, l, &locked_names, &hint)?;
    }
    let recipe_names: Vec<&str> = with_packages.iter().map(|l| l.spec.name.as_str()).collect();
    for ll in &lock.layers {
        if !recipe_names.contains(&ll.name.as_str()) {
            return Err(recipe.error(
                0,
                "",
                format!(
                    "{lf} locks packages for layer {:?}, which the recipe no longer has or which has no packages any more",
                    ll.name
                ),
                hint,
            ).into());
        }
    }
    if recipe_names != locked_names {
        return Err(recipe
            .error(
                0,
                "",
                format!(
                    "the layers with packages are in another order than in {lf} ({} there, {} now)",
                    locked_names.join(", "),
                    recipe_names.join(", ")
                ),
                hint,
            )
            .into());
    }
    Ok(())
}

/// A recipe layer with packages against the lock: locked, for the same requests.
fn check_layer(
    lock: &Lock,
    lf: &str,
    recipe: &Recipe,
    l: &nodeimg_recipe::recipe::RecipeLayer,
    locked_names: &[&str],
    hint: &Option<String>,
) -> Result<()> {
    let Some(ll) = lock.layer(&l.spec.name) else {
        return Err(recipe.error(
            l.file,
            &l.key_of("packages"),
            format!(
                "layer {:?} installs packages but {lf} has no layer of that name (it has: {}); the layer was renamed or its packages added since the lock was made",
                l.spec.name,
                if locked_names.is_empty() { "none".to_string() } else { locked_names.join(", ") }
            ),
            hint.clone(),
        ).into());
    };
    let changes = diff_requests_of(ll.kind, &ll.requests, &l.spec.packages);
    if let Some(first) = changes.first() {
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        return Err(recipe
            .error(
                l.file,
                &l.key_of(&first.key()),
                format!(
                    "the packages of layer {:?} no longer match {lf}: {}",
                    l.spec.name,
                    text.join("; ")
                ),
                hint.clone(),
            )
            .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_are_refused_by_kind_with_the_same_sentence() {
        assert_eq!(check_url("https://r/x.deb"), Ok(()));
        let e = check_url("ftp://r/x").unwrap_err();
        assert_eq!(e, LockValueError::Url("ftp://r/x".into()));
        assert_eq!(
            e.to_string(),
            "\"ftp://r/x\" is not an http://, https:// or file:// URL"
        );
        assert_eq!(check_sha256(&"a".repeat(64)), Ok(()));
        let e = check_sha256(&"A".repeat(64)).unwrap_err();
        assert!(matches!(&e, LockValueError::Sha256(s) if s.len() == 64));
        assert_eq!(
            check_sha256("xyz").unwrap_err().to_string(),
            "\"xyz\" is not a SHA256 (64 lowercase hex digits)"
        );
    }

    #[test]
    fn rpm_requests_are_named_by_package() {
        assert_eq!(rpm_request_name("docker-ce-19.03.11"), "docker-ce");
        assert_eq!(rpm_request_name("docker-ce-3:19.03.11-3.el7"), "docker-ce");
        assert_eq!(rpm_request_name("docker-ce-cli"), "docker-ce-cli");
        assert_eq!(rpm_request_name("containerd.io-1.2.13"), "containerd.io");
        assert_eq!(rpm_request_name("cri-o"), "cri-o");
    }
}
