//! The driver's environment: the verified download cache (with its
//! mirrors and the keys of those that re-sign), a scratch directory for
//! unpacked contents, the build's clock, what to do with a lock file, where
//! progress goes, and what each layer installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use nodeimg_fetch::cachefile;
use nodeimg_fetch::fetch::{Cache, Mirrors};
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_fetch::progress::Meter;
use nodeimg_image::Error;

use crate::lock::{LayerKind, Lock, LockedFile, LockedLayer, LockedPackage};

/// Everything a build needs to install packages: the verified download
/// cache, a scratch directory for unpacked contents (alive as long as this
/// value), the time signatures and `Valid-Until` are checked against, what
/// to do with a lock file, and where progress goes.
#[derive(Debug)]
pub struct PackageEnv {
    cache: Cache,
    scratch: tempfile::TempDir,
    now: DateTime<Utc>,
    /// The keys of mirrors that re-sign, by their file.
    mirror_keys: BTreeMap<PathBuf, Keyring>,
    pub(crate) lock: LockMode,
    meter: Meter,
    /// The base's layers, for backends that run the image's own tools.
    base: Option<nodeimg_image::base::BaseTars>,
    /// What each layer installed, in the order the layers were installed.
    installed: Mutex<Vec<LayerInstalled>>,
    /// Where layers' installed packages are kept and found again.
    layer_cache: Option<std::sync::Arc<nodeimg_image::cache::LayerCache>>,
    /// The platform (`linux/arm64`) of one image of several, named in
    /// warnings.
    platform: Option<String>,
}

/// A warning as printed: `warning: [PLATFORM: ]MESSAGE`.
fn warning_line(platform: Option<&str>, message: &str) -> String {
    match platform {
        Some(p) => format!("warning: {p}: {message}"),
        None => format!("warning: {message}"),
    }
}

/// The packages the driver installed for one layer, and which backend did.
#[derive(Debug, Clone)]
pub struct LayerInstalled {
    /// The recipe layer.
    pub layer: String,
    /// The backend that installed them.
    pub kind: LayerKind,
    /// The packages, in installation order.
    pub packages: Vec<LockedPackage>,
}

/// Resolve, resolve and record, or install what a lock names.
#[derive(Debug)]
pub(crate) enum LockMode {
    /// Resolve against the repositories' current metadata.
    Resolve,
    /// Resolve, and keep what was resolved for a lock file.
    Record(Mutex<Recorded>),
    /// Install exactly what the lock (read from the file) names; no
    /// repository metadata is read.
    Use(Box<Lock>, PathBuf),
}

/// The layers resolved so far, and the index files they read.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) layers: Vec<LockedLayer>,
    pub(crate) indexes: Vec<LockedFile>,
}

pub(crate) fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    pub fn new(cache_dir: &Path, mirrors: &[String]) -> Result<Self, Error> {
        Self::at(cache_dir, mirrors, Utc::now())
    }

    /// [`PackageEnv::new`] with a given time.
    pub fn at(cache_dir: &Path, mirrors: &[String], now: DateTime<Utc>) -> Result<Self, Error> {
        let mirrors =
            Mirrors::parse(mirrors).map_err(|e| Error::Usage(format!("--mirror: {e}")))?;
        let mirror_keys = mirror_keys(&mirrors)?;
        let cache = Cache::new(cache_dir)
            .map_err(|e| Error::cause("--cache-dir", e))?
            .with_mirrors(mirrors);
        // Private: it holds the contents of packages being installed.
        let scratch = tempfile::Builder::new()
            .prefix("nodeimg-packages-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating a scratch directory for package contents".to_string(),
                source,
            })?;
        Ok(PackageEnv {
            cache,
            scratch,
            now,
            mirror_keys,
            lock: LockMode::Resolve,
            meter: Meter::quiet(),
            base: None,
            installed: Mutex::new(Vec::new()),
            layer_cache: None,
            platform: None,
        })
    }

    /// The keyring a release file under `dir` is verified against: the key
    /// of the mirror that re-signs it when `dir` is fetched through one,
    /// else the repository's own `source`.
    pub fn release_keyring<'a>(&'a self, dir: &str, source: &'a Keyring) -> &'a Keyring {
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

    /// The verified download cache (with its mirrors).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Where downloads and steps are shown.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The build's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The base image's layers, when given.
    pub fn base(&self) -> Option<&nodeimg_image::base::BaseTars> {
        self.base.as_ref()
    }

    /// With `offline`, nothing is downloaded: only verified cached files are used.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.cache = self.cache.with_offline(offline);
        self
    }

    /// The base image's layers: an rpm layer over a base that has its own
    /// rpm materialises the image below it and registers its packages with
    /// that rpm.
    pub fn with_layer_cache(
        mut self,
        cache: Option<std::sync::Arc<nodeimg_image::cache::LayerCache>>,
    ) -> Self {
        self.layer_cache = cache;
        self
    }

    /// The layer cache installed packages are kept in, if the build has one.
    pub fn layer_cache(&self) -> Option<&nodeimg_image::cache::LayerCache> {
        self.layer_cache.as_deref()
    }

    /// The base's layers, for backends that run the image's own tools.
    pub fn with_base(mut self, base: nodeimg_image::base::BaseTars) -> Self {
        self.base = Some(base);
        self
    }

    /// The packages are installed for `platform` (`linux/arm64`), one of
    /// several the build makes: its warnings name it.
    pub fn with_platform(mut self, platform: Option<String>) -> Self {
        self.platform = platform;
        self
    }

    /// Print `message` as a warning (`warning: [PLATFORM: ]MESSAGE`) on
    /// stderr, around the progress display.
    pub fn warn(&self, message: &str) {
        let line = warning_line(self.platform.as_deref(), message);
        self.meter.suspend(|| eprintln!("{line}"));
    }

    /// Downloads, their retries and unpacking are shown on `meter`.
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.cache = self.cache.with_meter(meter.clone());
        self.meter = meter;
        self
    }

    /// Install exactly what `lock` names (checked against the recipe by
    /// [`crate::lock::check_recipe`] first): no repository metadata is
    /// fetched, each package comes from the cache or its locked URL and is
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

    /// Whether packages are installed as a lock names them.
    pub fn is_locked(&self) -> bool {
        matches!(self.lock, LockMode::Use(..))
    }

    /// The lock of everything resolved so far (with [`PackageEnv::recording`];
    /// `None` otherwise), for the OCI architecture `arch`.
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
            crate::arch::debian(arch),
            releases,
            r.indexes.clone(),
            r.layers.clone(),
        ))
    }

    /// The files of the lock in use that the cache does not hold (each
    /// cached file is verified; a corrupt one counts as missing).
    pub fn missing_from_cache(&self) -> Result<Vec<Missing>, Error> {
        let LockMode::Use(lock, _) = &self.lock else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (layer, p) in lock.packages() {
            let damaged = match self
                .cache
                .check(p.size, &p.sha256)
                .map_err(|e| Error::cause("--cache-dir", e))?
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

    /// What each layer installed so far, in the order it was installed.
    pub fn installed(&self) -> Vec<LayerInstalled> {
        guard(&self.installed).clone()
    }

    pub(crate) fn note_installed(&self, done: LayerInstalled) {
        guard(&self.installed).push(done);
    }

    pub(crate) fn record(&self, layer: LockedLayer, indexes: Vec<LockedFile>) {
        if let LockMode::Record(r) = &self.lock {
            let mut g = guard(r);
            g.layers.push(layer);
            g.indexes.extend(indexes);
        }
    }
}

/// Reads the key file of every mirror that re-signs, so that a missing or
/// unreadable key stops the build before anything is fetched.
fn mirror_keys(mirrors: &Mirrors) -> Result<BTreeMap<PathBuf, Keyring>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_names_the_platform_of_one_image_of_several() {
        assert_eq!(
            warning_line(Some("linux/arm64"), "layer \"p\": not run: x postinst"),
            "warning: linux/arm64: layer \"p\": not run: x postinst"
        );
        assert_eq!(
            warning_line(None, "layer \"p\": not run: x postinst"),
            "warning: layer \"p\": not run: x postinst"
        );
    }
}
