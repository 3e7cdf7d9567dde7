//! The `packages` item of a layer: Debian packages installed from the apt
//! sources the image declares, without running apt or dpkg.
//!
//! For one layer: the deb822 sources (`/etc/apt/sources.list.d/*.sources`)
//! are read from the image as it stands (the layers below plus this layer's
//! own items); each source's `InRelease` (or `Release` + `Release.gpg`) is
//! fetched through the download cache and its mirrors and verified against
//! that source's own `Signed-By` keyring, `Valid-Until` is checked against
//! the clock read once when the build starts, each `Packages` index is
//! checked against `Release`, the requests are resolved against the image's
//! dpkg status for the target architecture, every `.deb` is downloaded into
//! the cache and verified (size and SHA256 from `Packages`), then unpacked
//! and registered (see [`nodeimg_deb::install`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use nodeimg_layers::{FileTree, ImagePath, RootView};

use crate::error::{Error, IoContext, Result};
use nodeimg_deb::control::{self, BinaryPackage, Syntax};
use nodeimg_deb::install::{self, Package};
use nodeimg_deb::repo;
use nodeimg_deb::resolve::{self, Request, ResolveError};
use nodeimg_deb::version::Version;
use nodeimg_fetch::cachefile::{self, CachedFile};
use nodeimg_fetch::fetch::{Cache, FetchError, Mirrors};
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_fetch::progress::Meter;
use nodeimg_pkg::lock::{self, Lock, LockedFile, LockedLayer, LockedPackage, LockedSource};

pub use nodeimg_deb::SOURCES_DIR;

/// The rules of every package backend for the packages a lock names.
pub const LOCK_RULES: &[&dyn nodeimg_pkg::lock::PackageRules] =
    &[&nodeimg_deb::Deb, &nodeimg_rpm::Rpm];

/// Everything a build needs to install packages: the verified download
/// cache, a scratch directory for unpacked contents (alive as long as this
/// value), the time `Valid-Until` is checked against, what to do with a
/// lock file, and where progress goes.
#[derive(Debug)]
pub struct PackageEnv {
    cache: Cache,
    scratch: tempfile::TempDir,
    now: DateTime<Utc>,
    /// The keys of mirrors that re-sign, by their file.
    mirror_keys: BTreeMap<PathBuf, Keyring>,
    lock: LockMode,
    meter: Meter,
    /// The base's layers, for backends that run the image's own tools.
    base: Option<nodeimg_image::base::BaseTars>,
}

/// Resolve, resolve and record, or install what a lock names.
#[derive(Debug)]
enum LockMode {
    /// Resolve against the repositories' current metadata.
    Resolve,
    /// Resolve, and keep what was resolved for a lock file.
    Record(Mutex<Recorded>),
    /// Install exactly what the lock (read from the file) names; no
    /// repository metadata is read.
    Use(Box<Lock>, PathBuf),
}

#[derive(Debug, Default)]
struct Recorded {
    layers: Vec<LockedLayer>,
    indexes: Vec<LockedFile>,
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file a lock names that the cache does not hold (for `--offline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The layer that installs it.
    pub layer: String,
    /// The locked package.
    pub package: LockedPackage,
    /// Where it would be downloaded from (after `--mirror`).
    pub fetch_url: String,
    /// The damaged entry that was in the cache (removed), and what was wrong with it.
    pub damaged: Option<String>,
}

impl PackageEnv {
    /// A cache in `cache_dir` with the `--mirror FROM=TO` pairs; reads the
    /// clock (the only clock a build reads, for `Valid-Until`).
    pub fn new(cache_dir: &Path, mirrors: &[String]) -> Result<Self> {
        Self::at(cache_dir, mirrors, Utc::now())
    }

    /// [`PackageEnv::new`] with a given time.
    pub fn at(cache_dir: &Path, mirrors: &[String], now: DateTime<Utc>) -> Result<Self> {
        let mirrors =
            Mirrors::parse(mirrors).map_err(|e| Error::Usage(format!("--mirror: {e}")))?;
        let mirror_keys = mirror_keys(&mirrors)?;
        let cache = Cache::new(cache_dir)
            .map_err(|e| Error::image("--cache-dir", e.to_string()))?
            .with_mirrors(mirrors);
        // Private: it holds the contents of packages being installed.
        let scratch = tempfile::Builder::new()
            .prefix("nodeimg-packages-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .ctx(|| "creating a scratch directory for package contents".to_string())?;
        Ok(PackageEnv {
            cache,
            scratch,
            now,
            mirror_keys,
            lock: LockMode::Resolve,
            meter: Meter::quiet(),
            base: None,
        })
    }

    /// The keyring `Release`/`InRelease` under `dir` is verified against: the key of the
    /// mirror that re-signs it when `dir` is fetched through one, else the source's own.
    fn release_keyring<'a>(&'a self, dir: &str, source: &'a Keyring) -> &'a Keyring {
        self.cache
            .mirrors()
            .key_for(dir)
            .and_then(|k| self.mirror_keys.get(k))
            .unwrap_or(source)
    }

    /// The scratch directory the installed trees reference.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// With `offline`, nothing is downloaded: only verified cached files are used.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.cache = self.cache.with_offline(offline);
        self
    }

    /// The base image's layers: an rpm layer over a base that has its own
    /// rpm materialises the image below it and registers its packages with
    /// that rpm.
    pub fn with_base(mut self, base: nodeimg_image::base::BaseTars) -> Self {
        self.base = Some(base);
        self
    }

    /// Downloads and unpacking are shown on `meter`.
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = meter;
        self
    }

    /// Install exactly what `lock` names (checked against the recipe by
    /// [`nodeimg_pkg::lock::check_recipe`] first): no repository metadata is
    /// fetched, each `.deb` comes from the cache or its locked URL and is
    /// verified against the locked size and SHA256.
    /// `file` names the lock in messages.
    pub fn using_lock(mut self, lock: Lock, file: &Path) -> Self {
        self.lock = LockMode::Use(Box::new(lock), file.to_path_buf());
        self
    }

    /// Resolve as usual and keep every resolution for
    /// [`PackageEnv::recorded_lock`].
    pub fn recording(mut self) -> Self {
        self.lock = LockMode::Record(Mutex::new(Recorded::default()));
        self
    }

    /// The lock of everything resolved so far (with [`PackageEnv::recording`];
    /// `None` otherwise), for the Debian architecture `arch`.
    pub fn recorded_lock(&self, arch: &str) -> Option<Lock> {
        let LockMode::Record(r) = &self.lock else {
            return None;
        };
        let r = guard(r);
        let releases = self
            .cache
            .metadata_fetched()
            .into_iter()
            .map(|f| LockedFile {
                url: f.url,
                size: f.size,
                sha256: f.sha256,
            })
            .collect();
        Some(Lock::new(
            debian_arch(arch),
            releases,
            r.indexes.clone(),
            r.layers.clone(),
        ))
    }

    /// The files of the lock in use that the cache does not hold (each
    /// cached file is verified; a corrupt one counts as missing).
    pub fn missing_from_cache(&self) -> Result<Vec<Missing>> {
        let LockMode::Use(lock, _) = &self.lock else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (layer, p) in lock.packages() {
            let damaged = match self
                .cache
                .check(p.size, &p.sha256)
                .map_err(|e| Error::image("--cache-dir", e.to_string()))?
            {
                cachefile::Entry::Verified(_) => continue,
                cachefile::Entry::Absent => None,
                cachefile::Entry::Damaged(note) => Some(note),
            };
            out.push(Missing {
                layer: layer.to_string(),
                package: p.clone(),
                fetch_url: self.cache.mirrors().map(&p.url),
                damaged,
            });
        }
        Ok(out)
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    fn note_index(&self, url: &str, size: u64, sha256: &str) {
        if let LockMode::Record(r) = &self.lock {
            guard(r).indexes.push(LockedFile {
                url: url.to_string(),
                size,
                sha256: sha256.to_ascii_lowercase(),
            });
        }
    }

    /// A verified `.deb` (or index) in the cache, downloaded when missing,
    /// shown on the meter as `what`.
    fn fetch_shown(
        &self,
        url: &str,
        size: u64,
        sha256: &str,
        what: &str,
    ) -> Result<CachedFile, PackagesError> {
        fetch_shown(&self.cache, &self.meter, url, size, sha256, what)
    }
}

/// Reads the key file of every mirror that re-signs, so that a missing or
/// unreadable key stops the build before anything is fetched.
fn mirror_keys(mirrors: &Mirrors) -> Result<BTreeMap<PathBuf, Keyring>> {
    let mut out = BTreeMap::new();
    for m in mirrors.iter() {
        let Some(k) = &m.key else { continue };
        if out.contains_key(k) {
            continue;
        }
        let what = format!("--mirror {}={}: key {}", m.from, m.to, k.display());
        let bytes = nodeimg_recipe::inputs::read_regular_file(k).map_err(|e| {
            Error::Usage(format!(
                "{what}: {e}; name the public key file the mirror signs its Release files with"
            ))
        })?;
        let ring = Keyring::from_bytes(&bytes, &k.display().to_string())
            .map_err(|e| Error::Usage(format!("{what}: {e}")))?;
        out.insert(k.clone(), ring);
    }
    Ok(out)
}

pub use nodeimg_fetch::default_cache_dir;

/// Debian's name for an OCI architecture (`arm` is `armhf`, `386` is
/// `i386`, ...).
pub fn debian_arch(oci: &str) -> &str {
    match oci {
        "arm" => "armhf",
        "386" => "i386",
        "ppc64le" => "ppc64el",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        other => other,
    }
}

pub use nodeimg_pkg::driver::{build_err, fetch_shown, report_damaged, PackagesError};

/// One enabled `deb` source of the image.
#[derive(Debug, Clone)]
struct Source {
    file: String,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    keyring: Keyring,
}

fn words(stanza: &control::Stanza, name: &str) -> Vec<String> {
    stanza
        .field(name)
        .map(|f| f.folded().split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The enabled binary sources of the image, in file name order, for `arch`.
fn read_sources(view: &dyn RootView, arch: &str) -> Result<Vec<Source>, PackagesError> {
    let mut names: Vec<String> = view
        .list(SOURCES_DIR)
        .into_iter()
        .filter(|n| n.ends_with(".sources"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let file = format!("{SOURCES_DIR}/{name}");
        let Some(text) = view.read_text(&file) else {
            continue;
        };
        let stanzas = control::parse(&text, Syntax::with_comments())
            .map_err(|e| build_err(&file, format!("line {}: {}", e.line, e.message)))?;
        for st in stanzas {
            if st
                .get("Enabled")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
            {
                continue;
            }
            if !words(&st, "Types").iter().any(|t| t == "deb") {
                continue;
            }
            let arches = words(&st, "Architectures");
            if !arches.is_empty() && !arches.iter().any(|a| a == arch) {
                continue;
            }
            let keyring = read_keyring(view, &file, &st)?;
            out.push(Source {
                file: file.clone(),
                uris: words(&st, "URIs"),
                suites: words(&st, "Suites"),
                components: words(&st, "Components"),
                keyring,
            });
        }
    }
    Ok(out)
}

/// The keyring a source names with `Signed-By`: key files in the image, or
/// an armored key inline.
fn read_keyring(
    view: &dyn RootView,
    file: &str,
    st: &control::Stanza,
) -> Result<Keyring, PackagesError> {
    let Some(field) = st.field("Signed-By") else {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!(
                "the apt source {file} (URIs: {}) has no Signed-By keyring, and packages are only installed from sources verified against their own key",
                words(st, "URIs").join(" ")
            ),
            hint: Some(
                "declare the repository with an apt-source item and its key = \"<public key file>\""
                    .into(),
            ),
        });
    };
    let lines = field.continuation_lines();
    if !lines.is_empty() && lines.iter().any(|l| l.contains("BEGIN PGP")) {
        let text: String = lines
            .iter()
            .map(|l| if l.trim() == "." { "" } else { l.trim() })
            .collect::<Vec<_>>()
            .join("\n");
        return Keyring::from_bytes(text.as_bytes(), &format!("{file} Signed-By"))
            .map_err(|e| build_err(file, e));
    }
    let mut bytes = Vec::new();
    for p in field.folded().split_whitespace() {
        if !p.starts_with('/') {
            return Err(build_err(
                file,
                format!("Signed-By {p:?} is not a keyring file; name the key file (e.g. /etc/apt/keyrings/NAME.gpg)"),
            ));
        }
        let ip = ImagePath::new(p).map_err(|m| build_err(file, format!("Signed-By {p:?}: {m}")))?;
        let Some(b) = view.read(&ip) else {
            return Err(build_err(
                file,
                format!("Signed-By names {p}, which the image does not have"),
            ));
        };
        let armored = b.trim_ascii_start().starts_with(b"-----BEGIN");
        bytes.extend_from_slice(&b);
        if armored {
            // Armored blocks of several files stay separate.
            bytes.push(b'\n');
        }
    }
    Keyring::from_bytes(&bytes, &field.folded()).map_err(|e| build_err(file, e))
}

/// Repository id -> (URI, suite): where its `Filename`s are relative to.
type Roots = BTreeMap<String, (String, String)>;

/// The `Packages` indexes (one per source, URI, suite and component) in
/// compact form, with their repository ids, and where each one's files are.
/// Each index is streamed from the cache: verified (size and SHA256 from
/// `Release`), decompressed and parsed in one pass, one stanza at a time.
fn read_indexes(
    env: &PackageEnv,
    sources: &[Source],
    arch: &str,
) -> Result<(Vec<(String, control::PackageIndex)>, Roots), PackagesError> {
    let mut indexes = Vec::new();
    let mut roots = BTreeMap::new();
    for s in sources {
        for uri in &s.uris {
            for suite in &s.suites {
                let dir = repo::release_dir_url(uri, suite);
                let release = fetch_release(env, &dir, env.release_keyring(&dir, &s.keyring))?;
                let comps: Vec<Option<&str>> = if repo::is_flat(suite) {
                    vec![None]
                } else {
                    s.components.iter().map(|c| Some(c.as_str())).collect()
                };
                for comp in comps {
                    let loc = release
                        .packages_index(comp, arch)
                        .map_err(|e| build_err(&s.file, e))?;
                    let url = format!("{dir}{}", loc.fetch_path);
                    let file =
                        env.fetch_shown(&url, loc.size, &loc.sha256, &format!("index {url}"))?;
                    env.note_index(&url, loc.size, &loc.sha256);
                    let index = read_index(&file, &loc, &url)?;
                    let id = match comp {
                        Some(c) => format!("{uri} {suite} {c}"),
                        None => format!("{uri} {suite}"),
                    };
                    roots.insert(id.clone(), (uri.clone(), suite.clone()));
                    indexes.push((id, index));
                }
            }
        }
    }
    Ok((indexes, roots))
}

/// Streams the cached index `file` (fetched from `url`): nothing of it is
/// kept unless the whole file matches `loc`.
fn read_index(
    file: &CachedFile,
    loc: &repo::IndexLocation,
    url: &str,
) -> Result<control::PackageIndex, PackagesError> {
    let reading = || format!("reading {} (cached {url})", file.path().display());
    match loc.stream(file.reader(), url, |r| control::read_packages(r)) {
        Err(repo::StreamError::Read(source)) => {
            Err(PackagesError::Build(nodeimg_image::Error::Io {
                context: reading(),
                source,
            }))
        }
        Err(repo::StreamError::Repo(e)) => Err(build_err("repository metadata", e)),
        // An error of the stream is the one above.
        Ok(Err(control::IndexError::Io(e))) => Err(build_err(
            "repository metadata",
            format!("{url}: cannot decompress ({}): {e}", loc.compression),
        )),
        Ok(Err(control::IndexError::NotUtf8)) => {
            Err(build_err(url, "the Packages index is not UTF-8"))
        }
        Ok(Err(control::IndexError::Control(e))) => {
            Err(build_err(url, format!("line {}: {}", e.line, e.message)))
        }
        Ok(Ok(index)) => Ok(index),
    }
}

/// The repositories the resolver sees: of each index, the packages a
/// resolution of `requests` over `installed` can look at (see
/// [`control::reachable`]); the resolver gives the same answer on them as
/// on the whole indexes, without every package of a large archive parsed
/// in memory. The installed packages' names and dependencies are roots as
/// well, so their newer versions are at hand too.
fn select_packages(
    indexes: Vec<(String, control::PackageIndex)>,
    requests: &[Request],
    installed: &[BinaryPackage],
) -> Result<Vec<resolve::Repository>, PackagesError> {
    let names = requests
        .iter()
        .map(|r| r.name.as_str())
        .chain(installed.iter().flat_map(|p| {
            std::iter::once(p.name.as_str()).chain(
                p.pre_depends
                    .iter()
                    .chain(&p.depends)
                    .flatten()
                    .map(|r| r.name.as_str()),
            )
        }));
    let refs: Vec<&control::PackageIndex> = indexes.iter().map(|(_, i)| i).collect();
    let selected = control::reachable(&refs, names).map_err(|e| {
        build_err(
            "repository metadata",
            format!("line {}: {}", e.line, e.message),
        )
    })?;
    Ok(indexes
        .into_iter()
        .zip(selected)
        .map(|((id, _), packages)| resolve::Repository { id, packages })
        .collect())
}

/// `InRelease`, else `Release` + `Release.gpg`, verified against `keyring`.
fn fetch_release(
    env: &PackageEnv,
    dir: &str,
    keyring: &Keyring,
) -> Result<repo::Release, PackagesError> {
    let inrelease = format!("{dir}InRelease");
    match env.cache.fetch_unverified(&inrelease) {
        Ok(bytes) => repo::verify_inrelease(&bytes, keyring, env.now, &inrelease)
            .map_err(|e| build_err("repository metadata", e)),
        Err(e) if e.is_not_found() => {
            let release = format!("{dir}Release");
            let text = env
                .cache
                .fetch_unverified(&release)
                .map_err(|e| build_err("download", e))?;
            let sig = env
                .cache
                .fetch_unverified(&format!("{release}.gpg"))
                .map_err(|e| {
                    if e.is_not_found() {
                        build_err(
                            "repository metadata",
                            format!("{e}: the repository is not signed (no InRelease, no Release.gpg); packages are only installed from signed repositories"),
                        )
                    } else {
                        build_err("download", e)
                    }
                })?;
            repo::verify_detached(&text, &sig, keyring, env.now, &release)
                .map_err(|e| build_err("repository metadata", e))
        }
        Err(e) => Err(build_err("download", e)),
    }
}

/// The files of the image's dpkg status: `/var/lib/dpkg/status`, then
/// `status.d/*` by name.
fn status_files(view: &dyn RootView) -> Vec<String> {
    let mut files = vec!["/var/lib/dpkg/status".to_string()];
    let mut extra: Vec<String> = view.list("/var/lib/dpkg/status.d");
    extra.sort();
    files.extend(
        extra
            .into_iter()
            .map(|n| format!("/var/lib/dpkg/status.d/{n}")),
    );
    files
}

/// The text of one of the image's dpkg status files; `None` when absent.
/// A file the image has but whose bytes cannot be read is an error, never
/// an empty database.
fn status_text(view: &dyn RootView, file: &str) -> Result<Option<String>, PackagesError> {
    let Some(bytes) = view
        .read_required(file)
        .map_err(|m| build_err("the image's dpkg database", m))?
    else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| build_err(file, "is not UTF-8; fix the base image"))
}

/// SHA256 (hex) of the image's dpkg status files, names and contents.
fn status_digest(view: &dyn RootView) -> Result<String, PackagesError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in status_files(view) {
        if let Some(text) = status_text(view, &f)? {
            h.update(format!("{f} {}\n", text.len()).as_bytes());
            h.update(text.as_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The image's installed packages (`/var/lib/dpkg/status` and `status.d/`).
fn installed(view: &dyn RootView) -> Result<Vec<BinaryPackage>, PackagesError> {
    let files = status_files(view);
    let mut out = Vec::new();
    for f in files {
        if let Some(text) = status_text(view, &f)? {
            let mut pkgs = control::parse_installed(&text)
                .map_err(|e| build_err(&f, format!("line {}: {}", e.line, e.message)))?;
            out.append(&mut pkgs);
        }
    }
    Ok(out)
}

fn recipe_err(requests: &[String], e: &ResolveError) -> Option<PackagesError> {
    if matches!(
        e,
        ResolveError::MissingField { .. } | ResolveError::PreDependsCycle { .. }
    ) {
        return None;
    }
    // The one entry the error comes from, else the list as a whole.
    let key = e
        .request_name()
        .and_then(|n| {
            requests
                .iter()
                .rposition(|r| r.split('=').next() == Some(n))
        })
        .map_or_else(|| "packages".to_string(), |j| format!("packages[{j}]"));
    let hint = match e {
        ResolveError::NotFound { .. } => {
            Some("check the name and that an apt-source of the image offers it".to_string())
        }
        _ => None,
    };
    Some(PackagesError::Recipe {
        key,
        message: e.to_string(),
        hint,
    })
}

/// Installs `requests` over `view` (the image below plus the layer's own
/// items) for the OCI architecture `arch`; returns the packages' tree.
/// `layer` names the layer in warnings, which go to stderr (the maintainer
/// scripts and triggers that were not run).
///
/// With a lock ([`PackageEnv::using_lock`]) the layer's locked packages are
/// installed as they are, once the apt sources the layer sees are found
/// to be the locked ones; otherwise the requests are resolved against the
/// repositories' metadata (and recorded with [`PackageEnv::recording`]).
pub fn install_layer(
    env: &PackageEnv,
    view: &dyn RootView,
    requests: &[String],
    arch: &str,
    layer: &str,
) -> Result<FileTree, PackagesError> {
    if read_sources(view, debian_arch(arch))?.is_empty() && nodeimg_rpm::has_repos(view) {
        return rpm_layer(env, view, requests, arch, layer);
    }
    let arch = debian_arch(arch);
    let mut reqs = Vec::with_capacity(requests.len());
    for (j, r) in requests.iter().enumerate() {
        reqs.push(Request::parse(r).map_err(|e| PackagesError::Recipe {
            key: format!("packages[{j}]"),
            message: e.to_string(),
            hint: Some("write name or name=version (an exact pin)".into()),
        })?);
    }
    let sources = read_sources(view, arch)?;
    env.meter.status(&format!(
        "{} the packages of layer {layer:?}",
        if matches!(env.lock, LockMode::Use(..)) {
            "fetching"
        } else {
            "resolving"
        }
    ));
    let pkgs = match &env.lock {
        LockMode::Use(lock, file) => {
            locked_packages(env, view, lock, file, &sources, requests, layer)?
        }
        LockMode::Resolve | LockMode::Record(_) => {
            resolve_packages(env, view, &sources, &reqs, requests, arch, layer)?
        }
    };
    env.meter.step(&format!(
        "unpacking {} package(s) into layer {layer:?}",
        pkgs.len()
    ));
    let done = install::install(view, &pkgs, arch, env.scratch(), "packages")
        .map_err(|e| build_err(format!("installing the packages of layer {layer:?}"), e))?;
    for line in done.report.to_string().lines() {
        if line.starts_with("not run") || line.starts_with("trigger not run") {
            env.meter
                .suspend(|| eprintln!("warning: layer {layer:?}: {line}"));
        }
    }
    Ok(done.tree)
}

/// A layer whose image has rpm repositories and no apt source: the rpm
/// backend, resolving (and recording) or installing what the lock names.
fn rpm_layer(
    env: &PackageEnv,
    view: &dyn RootView,
    requests: &[String],
    arch: &str,
    layer: &str,
) -> Result<FileTree, PackagesError> {
    let renv = nodeimg_rpm::Env {
        cache: &env.cache,
        scratch: env.scratch(),
        now: env.now,
        meter: &env.meter,
        base: env.base.as_ref(),
    };
    match &env.lock {
        LockMode::Use(lock, file) => {
            let Some(ll) = lock.layer(layer) else {
                return Err(PackagesError::Recipe {
                    key: "packages".into(),
                    message: format!("layer {layer:?} is not in {}", file.display()),
                    hint: Some(format!(
                        "run `nodeimg lock {}` to resolve the recipe again, or build with --no-lock",
                        file.with_extension("").display()
                    )),
                });
            };
            nodeimg_rpm::install_locked(&renv, view, ll, file, requests, arch, layer)
        }
        LockMode::Resolve => {
            nodeimg_rpm::install_layer(&renv, view, requests, arch, layer).map(|(t, _)| t)
        }
        LockMode::Record(r) => {
            let (tree, resolved) = nodeimg_rpm::install_layer(&renv, view, requests, arch, layer)?;
            let mut g = guard(r);
            g.layers.push(resolved.layer);
            g.indexes.extend(resolved.indexes);
            Ok(tree)
        }
    }
}

fn locked_source(s: &Source) -> LockedSource {
    LockedSource {
        file: s.file.clone(),
        uris: s.uris.clone(),
        suites: s.suites.clone(),
        components: s.components.clone(),
        keys: s.keyring.fingerprints(),
    }
}

/// Resolve the requests against the sources' metadata and download the
/// `.deb`s; with [`PackageEnv::recording`], keep the layer's resolution.
fn resolve_packages(
    env: &PackageEnv,
    view: &dyn RootView,
    sources: &[Source],
    reqs: &[Request],
    requests: &[String],
    arch: &str,
    layer: &str,
) -> Result<Vec<Package>, PackagesError> {
    if sources.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!("the image has no apt source for {arch} in {SOURCES_DIR}"),
            hint: Some("add an apt-source item (with its key) in this layer or one below".into()),
        });
    }
    let (indexes, roots) = read_indexes(env, sources, arch)?;
    let installed = installed(view)?;
    let repos = select_packages(indexes, reqs, &installed)?;
    let input = resolve::Input {
        installed: &installed,
        repositories: &repos,
        architecture: arch,
    };
    let planned = resolve::resolve(&input, reqs).map_err(|e| {
        recipe_err(requests, &e).unwrap_or_else(|| build_err("resolving packages", e))
    })?;
    let mut pkgs = Vec::with_capacity(planned.len());
    let mut locked = Vec::with_capacity(planned.len());
    for (order, p) in planned.into_iter().enumerate() {
        let Some((uri, suite)) = roots.get(&p.repository) else {
            return Err(build_err(
                "resolving packages",
                format!("unknown repository {}", p.repository),
            ));
        };
        let url = repo::package_url(uri, suite, &p.filename);
        let deb = env.fetch_shown(
            &url,
            p.size,
            &p.sha256,
            &format!("{} {}", p.name, p.version),
        )?;
        locked.push(LockedPackage {
            name: p.name.clone(),
            version: p.version.to_string(),
            architecture: p.architecture.clone(),
            multi_arch: p.multi_arch.as_str().to_string(),
            auto: p.auto,
            order,
            source: p.repository.clone(),
            url,
            size: p.size,
            sha256: p.sha256.to_ascii_lowercase(),
        });
        pkgs.push(Package { deb, planned: p });
    }
    if let LockMode::Record(r) = &env.lock {
        guard(r).layers.push(LockedLayer {
            name: layer.to_string(),
            kind: lock::LayerKind::Deb,
            requests: requests.to_vec(),
            dpkg_status: status_digest(view)?,
            rpmdb: String::new(),
            sources: sources.iter().map(locked_source).collect(),
            repos: Vec::new(),
            packages: locked,
        });
    }
    Ok(pkgs)
}

/// The layer's packages as `lock` names them, each `.deb` verified against
/// the locked size and SHA256; the apt sources the layer sees must be the
/// locked ones.
fn locked_packages(
    env: &PackageEnv,
    view: &dyn RootView,
    lock: &Lock,
    lock_file: &Path,
    sources: &[Source],
    requests: &[String],
    layer: &str,
) -> Result<Vec<Package>, PackagesError> {
    let lf = lock_file.display();
    let recipe = lock_file.with_extension("");
    let run_lock = format!("nodeimg lock {}", recipe.display());
    let hint = Some(format!(
        "run `{run_lock}` to resolve the recipe again and update {lf}, or build with --no-lock"
    ));
    let Some(ll) = lock.layer(layer) else {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!("layer {layer:?} is not in {lf}"),
            hint,
        });
    };
    if ll.kind != lock::LayerKind::Deb {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!(
                "layer {layer:?} installs Debian packages (the image has apt sources), but {lf} locks rpm packages for it"
            ),
            hint,
        });
    }
    let changes = lock::diff_requests(&ll.requests, requests);
    if let Some(first) = changes.first() {
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        return Err(PackagesError::Recipe {
            key: first.key(),
            message: format!(
                "the packages of layer {layer:?} no longer match {lf}: {}",
                text.join("; ")
            ),
            hint,
        });
    }
    let now: Vec<LockedSource> = sources.iter().map(locked_source).collect();
    let diff = lock::diff_sources(&ll.sources, &now);
    if !diff.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!(
                "the apt sources layer {layer:?} installs from are not the ones in {lf}: {}",
                diff.join("; ")
            ),
            hint,
        });
    }
    if status_digest(view)? != ll.dpkg_status {
        env.meter.suspend(|| {
            eprintln!(
                "warning: layer {layer:?}: the packages installed in the image below it (its dpkg status) are not the ones {lf} was made against (the base or an earlier layer changed); the locked packages are installed as locked, so run `{run_lock}` to resolve them against this image"
            );
        });
    }
    let mut pkgs = Vec::with_capacity(ll.packages.len());
    for p in ll.in_order() {
        let version = Version::parse(&p.version).map_err(|e| {
            build_err(
                "lock file",
                format!("{}: version {:?}: {}", p.name, e.text, e.reason),
            )
        })?;
        let multi_arch = nodeimg_deb::locked_multi_arch(p).ok_or_else(|| {
            build_err(
                "lock file",
                format!("{}: Multi-Arch {:?} is not valid", p.name, p.multi_arch),
            )
        })?;
        let mut d = env.meter.download(&p.label(), p.size);
        let got = env
            .cache
            .fetch_with_progress(&p.url, p.size, &p.sha256, &mut |n| d.received(n));
        report_damaged(&env.cache, &env.meter);
        let deb = got.map_err(|e| match e {
                FetchError::HashMismatch { .. } | FetchError::SizeMismatch { .. } => build_err(
                    lf.to_string(),
                    format!(
                        "{} (layer {layer:?}) is not the file the lock names: {e}\n  hint: if {lf} was edited, restore it (or run `{run_lock}` where the repositories are trusted); if it was not, the repository or mirror now serves another file under the same name",
                        p.label()
                    ),
                ),
                e => build_err("download", e),
            })?;
        d.finish();
        pkgs.push(Package {
            deb,
            planned: resolve::Planned {
                name: p.name.clone(),
                version,
                architecture: p.architecture.clone(),
                multi_arch,
                repository: p.source.clone(),
                filename: p.url.clone(),
                size: p.size,
                sha256: p.sha256.clone(),
                auto: p.auto,
                replaces_installed: None,
            },
        });
    }
    Ok(pkgs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_layers::MemView;

    #[test]
    fn architectures() {
        assert_eq!(debian_arch("amd64"), "amd64");
        assert_eq!(debian_arch("arm64"), "arm64");
        assert_eq!(debian_arch("arm"), "armhf");
        assert_eq!(debian_arch("ppc64le"), "ppc64el");
        assert_eq!(debian_arch("386"), "i386");
    }

    #[test]
    fn source_without_signed_by_is_refused() {
        let v = MemView::new().file(
            "/etc/apt/sources.list.d/x.sources",
            "Types: deb\nURIs: http://repo.invalid/debian\nSuites: stable\nComponents: main\n",
        );
        match read_sources(&v, "amd64").unwrap_err() {
            PackagesError::Recipe { key, message, hint } => {
                assert_eq!(key, "packages");
                assert!(message.contains("x.sources"), "{message}");
                assert!(message.contains("Signed-By"), "{message}");
                assert!(hint.unwrap().contains("apt-source"));
            }
            PackagesError::Build(e) => panic!("{e}"),
        }
    }

    #[test]
    fn skips_disabled_source_and_other_architectures() {
        let v = MemView::new()
            .file(
                "/etc/apt/sources.list.d/a.sources",
                "Types: deb\nURIs: http://a.invalid/\nSuites: s\nComponents: main\nEnabled: no\n\nTypes: deb-src\nURIs: http://b.invalid/\nSuites: s\nComponents: main\n",
            )
            .file(
                "/etc/apt/sources.list.d/b.sources",
                "Types: deb\nURIs: http://c.invalid/\nSuites: s\nComponents: main\nArchitectures: arm64\n",
            )
            .file("/etc/apt/sources.list.d/c.list", "garbage");
        assert!(read_sources(&v, "amd64").unwrap().is_empty());
    }

    #[test]
    fn missing_keyring_file_names_it() {
        let v = MemView::new().file(
            "/etc/apt/sources.list.d/x.sources",
            "Types: deb\nURIs: http://repo.invalid/\nSuites: s\nComponents: main\nSigned-By: /etc/apt/keyrings/x.gpg\n",
        );
        match read_sources(&v, "amd64").unwrap_err() {
            PackagesError::Build(e) => {
                let m = e.to_string();
                assert!(m.contains("/etc/apt/keyrings/x.gpg"), "{m}");
            }
            PackagesError::Recipe { message, .. } => panic!("{message}"),
        }
    }

    /// The resolver answers the same (plans and errors) on the packages
    /// [`select_packages`] keeps as on the whole indexes.
    #[test]
    fn selected_packages_resolve_as_the_whole_indexes() {
        let main = "\
Package: app
Version: 2
Architecture: amd64
Depends: lib (>= 1) | oldlib, mta, helper:any
Breaks: other (<< 3)
Filename: pool/app_2.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000000

Package: app
Version: 1
Architecture: amd64
Filename: pool/app_1.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: lib
Version: 1.5
Architecture: amd64
Pre-Depends: base
Filename: pool/lib.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000002

Package: postfix
Version: 3
Architecture: amd64
Provides: mta
Conflicts: exim
Filename: pool/postfix.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000003

Package: exim
Version: 4
Architecture: amd64
Provides: mta
Filename: pool/exim.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000004

Package: helper
Version: 1
Architecture: all
Multi-Arch: allowed
Filename: pool/helper.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000005

Package: armonly
Version: 1
Architecture: arm64
Filename: pool/armonly.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000006

Package: bad
Version: 1
Architecture: amd64
Depends: missing
Filename: pool/bad.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000007

Package: clash
Version: 1
Architecture: amd64
Conflicts: base
Filename: pool/clash.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000008
";
        let extra = "\
Package: lib
Version: 1.5
Architecture: amd64
Filename: pool/lib-extra.deb
Size: 1
SHA256: 0000000000000000000000000000000000000000000000000000000000000009

Package: unrelated
Version: 9
Architecture: amd64
Depends: app
Filename: pool/unrelated.deb
Size: 1
SHA256: 000000000000000000000000000000000000000000000000000000000000000a
";
        let installed = control::parse_installed(
            "Package: base\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
             Package: other\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n",
        )
        .unwrap();
        let read = |t: &str| control::read_packages(t.as_bytes()).unwrap();
        let whole = vec![
            resolve::Repository {
                id: "main".into(),
                packages: control::parse_packages(main).unwrap(),
            },
            resolve::Repository {
                id: "extra".into(),
                packages: control::parse_packages(extra).unwrap(),
            },
        ];
        for requests in [
            &["lib"][..],
            &["app=1"],
            &["app=3"],
            &["app"],
            &["mta"],
            &["armonly"],
            &["bad"],
            &["clash"],
            &["helper", "lib"],
            &["nothing"],
        ] {
            let reqs: Vec<Request> = requests
                .iter()
                .map(|r| Request::parse(r).unwrap())
                .collect();
            let indexes = vec![
                ("main".to_string(), read(main)),
                ("extra".to_string(), read(extra)),
            ];
            let selected = select_packages(indexes, &reqs, &installed).unwrap();
            let total: usize = selected.iter().map(|r| r.packages.len()).sum();
            assert!(total < 11, "{requests:?}: {total}");
            let run = |repos: &[resolve::Repository]| {
                resolve::resolve(
                    &resolve::Input {
                        installed: &installed,
                        repositories: repos,
                        architecture: "amd64",
                    },
                    &reqs,
                )
            };
            assert_eq!(run(&selected), run(&whole), "{requests:?}");
        }
    }

    #[test]
    fn a_mirror_that_re_signs_is_verified_against_its_own_key() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/keys");
        let docker = keys.join("docker.asc");
        let kubic = keys.join("kubic-libcontainers.asc");
        let cache = tempfile::tempdir().unwrap();
        let env = PackageEnv::new(
            cache.path(),
            &[
                format!(
                    "https://download.example/linux/ubuntu=http://127.0.0.1:9/docker,key={}",
                    docker.display()
                ),
                "http://plain.example/debian=http://127.0.0.1:9/debian".to_string(),
            ],
        )
        .unwrap();
        let source = Keyring::from_bytes(&std::fs::read(&kubic).unwrap(), "kubic").unwrap();
        let through = env.release_keyring(
            "https://download.example/linux/ubuntu/dists/focal/",
            &source,
        );
        assert_eq!(
            through.fingerprints(),
            ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]
        );
        // Not re-signed, or not mirrored: the source's own key.
        for dir in [
            "http://plain.example/debian/dists/bookworm/",
            "https://download.example/linux/debian/dists/bookworm/",
        ] {
            assert_eq!(
                env.release_keyring(dir, &source).fingerprints(),
                source.fingerprints()
            );
        }

        // A key file that is missing or no key stops the build before any download.
        let missing = cache.path().join("missing.asc");
        let e = PackageEnv::new(
            cache.path(),
            &[format!(
                "http://a.example=http://b.example,key={}",
                missing.display()
            )],
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        let m = e.to_string();
        assert!(m.contains("missing.asc"), "{m}");
        assert!(m.contains("http://a.example=http://b.example"), "{m}");
        let garbage = cache.path().join("garbage.asc");
        std::fs::write(&garbage, "not a key\n").unwrap();
        let e = PackageEnv::new(
            cache.path(),
            &[format!(
                "http://a.example=http://b.example,key={}",
                garbage.display()
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("garbage.asc"), "{e}");
    }

    #[test]
    fn resolve_errors_locate_the_request() {
        let reqs = vec!["a".to_string(), "b=1.0".to_string()];
        let e = ResolveError::PinNotFound {
            name: "b".into(),
            version: "1.0".into(),
            arch: "amd64".into(),
            available: vec!["2.0".into()],
        };
        match recipe_err(&reqs, &e).unwrap() {
            PackagesError::Recipe { key, message, .. } => {
                assert_eq!(key, "packages[1]");
                assert!(message.contains("available: 2.0"), "{message}");
            }
            PackagesError::Build(e) => panic!("{e}"),
        }
        let e = ResolveError::PreDependsCycle {
            packages: vec!["a".into()],
        };
        assert!(recipe_err(&reqs, &e).is_none());
        // A dependency of a request that cannot be met: that request.
        let e = ResolveError::Unsatisfiable {
            chain: vec!["b".into(), "c".into()],
            dependency: "d".into(),
            reason: "gone".into(),
        };
        match recipe_err(&reqs, &e).unwrap() {
            PackagesError::Recipe { key, .. } => assert_eq!(key, "packages[1]"),
            PackagesError::Build(e) => panic!("{e}"),
        }
        // A conflict that names no request: the list.
        let e = ResolveError::Conflict(Box::new(resolve::Conflict {
            package: "x 1".into(),
            verb: "conflicts with".into(),
            other: "installed y 1".into(),
            field: "Conflicts".into(),
            relation: "y".into(),
            via: Vec::new(),
        }));
        match recipe_err(&reqs, &e).unwrap() {
            PackagesError::Recipe { key, .. } => assert_eq!(key, "packages"),
            PackagesError::Build(e) => panic!("{e}"),
        }
    }
}
