//! The driver of every package backend: for one layer, choose the backend
//! ([`detect`]), check the layer against the lock, resolve it against the
//! repositories (recording it for a lock) or take the locked packages,
//! fetch and verify each package through the cache, have the backend
//! unpack and register them, and report its warnings. And what every
//! backend does the same way: report a layer's problems (the recipe's, or
//! the build's), fetch a verified file with progress, warn about damaged
//! cache entries.

use std::path::Path;

use nodeimg_fetch::fetch::FetchError;
use nodeimg_fetch::{Cache, CachedFile, Meter};
use nodeimg_layers::FileTree;

use crate::backend::{detect, Backend, LabelError, LayerInstall, LayerRequest, Resolution};
use crate::env::{LayerInstalled, LockMode, PackageEnv};
use crate::lock::{self, Lock, LockedLayer, LockedPackage};

/// Why a layer's packages cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    /// The recipe's fault: `key` relative to the layer (`packages[j]` or
    /// `packages`).
    #[error("{key}: {message}")]
    Recipe {
        /// Key path within the layer.
        key: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Anything else (network, signatures, checksums, the image).
    #[error(transparent)]
    Build(nodeimg_image::Error),
}

impl From<nodeimg_image::Error> for PackagesError {
    fn from(e: nodeimg_image::Error) -> Self {
        PackagesError::Build(e)
    }
}

/// A verified file (package or index) in `cache`, downloaded when missing,
/// shown on `meter` as `what`; shared by the Debian and rpm backends. The
/// file is the open handle that was verified: read it, never its path.
pub fn fetch_shown(
    cache: &Cache,
    meter: &Meter,
    url: &str,
    size: u64,
    sha256: &str,
    what: &str,
) -> Result<CachedFile, PackagesError> {
    let mut d = meter.download(what, size);
    let got = cache.fetch_with_progress(url, size, sha256, &mut |n| d.received(n));
    report_damaged(cache, meter);
    let file = got.map_err(|e| build_cause("download", e))?;
    d.finish();
    Ok(file)
}

/// Warn about the damaged cache entries `cache` found (and removed) so far.
/// Shown even with `-q`: a damaged cache may be an attack.
pub fn report_damaged(cache: &Cache, meter: &Meter) {
    for note in cache.take_damaged() {
        meter.suspend(|| eprintln!("warning: {note}"));
    }
}

/// A problem of the build (not the recipe's) with nothing beneath it but
/// `message`: `what` was being done.
pub fn build_err(what: impl Into<String>, message: impl Into<String>) -> PackagesError {
    PackagesError::Build(nodeimg_image::Error::image(what, message))
}

/// A problem of the build (not the recipe's): `what` was being done when
/// `source` failed; `source` stays the error's cause.
pub fn build_cause(
    what: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> PackagesError {
    PackagesError::Build(nodeimg_image::Error::cause(what, source))
}

/// The lock file a layer is installed from, for messages.
#[derive(Debug, Clone, Copy)]
pub struct LockRef<'a> {
    /// The lock file.
    pub file: &'a Path,
}

impl LockRef<'_> {
    /// The command that makes the lock again.
    pub fn run_lock(&self) -> String {
        format!("nodeimg lock {}", self.file.with_extension("").display())
    }

    /// What to do when the lock no longer matches.
    pub fn hint(&self) -> Option<String> {
        Some(format!(
            "run `{}` to resolve the recipe again and update {}, or build with --no-lock",
            self.run_lock(),
            self.file.display()
        ))
    }

    /// A mismatch between the recipe (at `key`) and the lock.
    pub fn mismatch(&self, key: impl Into<String>, message: String) -> PackagesError {
        PackagesError::Recipe {
            key: key.into(),
            message,
            hint: self.hint(),
        }
    }
}

/// The repositories the layer sees must be the ones `ll` was made from; a
/// change of the packages installed below is warned about.
fn check_lock(
    install: &mut dyn LayerInstall,
    env: &PackageEnv,
    ll: &LockedLayer,
    by: &LockRef<'_>,
    layer: &str,
) -> Result<(), PackagesError> {
    let lf = by.file.display();
    let (what, diff) = install.repositories_diff(ll);
    if !diff.is_empty() {
        return Err(by.mismatch(
            "packages",
            format!(
                "the {what} layer {layer:?} installs from are not the ones in {lf}: {}",
                diff.join("; ")
            ),
        ));
    }
    if let Some(what) = install.below_changed(ll)? {
        env.warn(&format!(
            "layer {layer:?}: the {what} are not the ones {lf} was made against (the base or an earlier layer changed); the locked packages are installed as locked, so run `{}` to resolve them against this image",
            by.run_lock()
        ));
    }
    Ok(())
}

/// Installs `requests` over `view` (the image below plus the layer's own
/// items) for the OCI architecture `arch` with the backend [`detect`]
/// chooses among `backends`; returns the packages' tree. `layer` names the
/// layer in warnings, which go to stderr (the maintainer scripts and
/// triggers that were not run).
///
/// With a lock ([`PackageEnv::using_lock`]) the layer's locked packages are
/// installed as they are, once the repositories the layer sees are found
/// to be the locked ones; otherwise the requests are resolved against the
/// repositories' metadata (and recorded with [`PackageEnv::recording`]).
/// Every package is fetched and verified through the cache.
pub fn install_layer(
    backends: &[&dyn Backend],
    req: LayerRequest<'_>,
) -> Result<FileTree, PackagesError> {
    let LayerRequest {
        env,
        view,
        requests,
        arch,
        layer,
        view_id,
    } = req;
    let Some(backend) = detect(backends, view, arch) else {
        return Err(build_err("packages", "no package backend"));
    };
    let locked = match &env.lock {
        LockMode::Use(lock, file) => {
            let by = LockRef { file };
            Some((check_layer(backend, lock, by, requests, layer)?, by))
        }
        LockMode::Resolve | LockMode::Record(_) => None,
    };
    let mut install = backend.open(req)?;
    env.meter().status(&format!(
        "{} the packages of layer {layer:?}",
        if locked.is_some() {
            "fetching"
        } else {
            "resolving"
        }
    ));
    // The packages to install, and how each one is fetched once it is
    // known that the layer cache does not hold them installed.
    let mut fetched = false;
    let (packages, by) = match locked {
        Some((ll, by)) => {
            check_lock(&mut *install, env, ll, &by, layer)?;
            install.take_locked(ll, &by)?;
            let packages: Vec<LockedPackage> = ll.in_order().into_iter().cloned().collect();
            (packages, Some(by))
        }
        None => {
            let mut resolved = install.resolve()?;
            let packages: Vec<LockedPackage> =
                resolved.layer.in_order().into_iter().cloned().collect();
            if matches!(env.lock, LockMode::Record(_)) {
                // The lock records the units each package ships: read from
                // the packages, fetched now.
                fetch_all(&mut *install, env, backend, &packages, None, layer)?;
                record_units(&*install, &packages, &mut resolved.layer)?;
                fetched = true;
            }
            env.record(resolved.layer, resolved.indexes);
            (packages, None)
        }
    };
    let key = tree_key(env, backend, arch, view_id, &packages);
    let kept = match (env.layer_cache(), key.as_deref()) {
        (Some(c), Some(k)) => c.load_tree(k),
        _ => None,
    };
    let (mut tree, warnings) = match kept {
        Some(kept) => {
            env.meter().step(&format!(
                "{} package(s) of layer {layer:?} from the layer cache",
                packages.len()
            ));
            kept
        }
        None => {
            if !fetched {
                fetch_all(&mut *install, env, backend, &packages, by.as_ref(), layer)?;
            }
            install_kept(install, env, key.as_deref(), layer, &packages)?
        }
    };
    add_record(&mut tree, view, layer, backend.kind(), &packages)?;
    for line in warnings {
        env.warn(&format!("layer {layer:?}: {line}"));
    }
    env.note_installed(LayerInstalled {
        layer: layer.to_string(),
        kind: backend.kind(),
        packages,
    });
    Ok(tree)
}

/// The layer's [`record`](crate::record) of its packages, in the tree
/// where the image below puts `/var/lib/nodeimg/packages`.
fn add_record(
    tree: &mut FileTree,
    view: &dyn nodeimg_layers::RootView,
    layer: &str,
    kind: lock::LayerKind,
    packages: &[LockedPackage],
) -> Result<(), PackagesError> {
    use nodeimg_layers::tree::Origin;
    use nodeimg_layers::{ImagePath, Node};
    let path = ImagePath::new(&crate::record::record_path(layer))
        .map_err(|e| build_err("recording the packages", e.to_string()))?;
    let bytes = crate::record::record(layer, kind, packages).to_bytes();
    tree.replace(
        view.resolve_parent(&path),
        Node::file(bytes, Origin::new("packages", "packages")),
    );
    Ok(())
}

/// The unit files each of `packages` (installation order) ships, into the
/// layer the lock records.
fn record_units(
    install: &dyn LayerInstall,
    packages: &[LockedPackage],
    layer: &mut LockedLayer,
) -> Result<(), PackagesError> {
    for (i, p) in packages.iter().enumerate() {
        let units = install.unit_files(i)?;
        if let Some(l) = layer.packages.iter_mut().find(|l| l.order == p.order) {
            l.units = units;
        }
    }
    Ok(())
}

/// The key of a layer's installed packages in the layer cache: the
/// program, the backend, the architecture, the image the packages go on
/// (`view_id`), every package (name, version, architecture, size and
/// SHA-256, in installation order) and `SOURCE_DATE_EPOCH`; `None` without
/// a layer cache.
fn tree_key(
    env: &PackageEnv,
    backend: &dyn Backend,
    arch: &str,
    view_id: Option<&str>,
    packages: &[LockedPackage],
) -> Option<String> {
    let cache = env.layer_cache()?;
    let program = nodeimg_image::cache::program_digest(cache)?;
    let kind = format!("{:?}", backend.kind());
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default();
    let mut parts: Vec<String> = vec![
        "packages".to_string(),
        program,
        kind,
        arch.to_string(),
        view_id?.to_string(),
        epoch,
    ];
    for p in packages {
        parts.push(format!(
            "{} {} {} {} {}",
            p.name, p.version, p.architecture, p.size, p.sha256
        ));
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Some(nodeimg_image::cache::key(&parts))
}

/// Every package of `packages` fetched and verified through the cache and
/// handed to `install`: as the lock `by` names them, or as resolved.
fn fetch_all(
    install: &mut dyn LayerInstall,
    env: &PackageEnv,
    backend: &dyn Backend,
    packages: &[LockedPackage],
    by: Option<&LockRef<'_>>,
    layer: &str,
) -> Result<(), PackagesError> {
    for (i, p) in packages.iter().enumerate() {
        let file = match by {
            Some(by) => fetch_locked(env, backend, p, by, layer)?,
            None => {
                let what = backend
                    .label(p)
                    .map_err(|e| build_cause("resolving packages", e))?;
                fetch_shown(env.cache(), env.meter(), &p.url, p.size, &p.sha256, &what)?
            }
        };
        install.fetched(i, file)?;
    }
    Ok(())
}

/// The layer's packages installed (and kept in the layer cache as `key`):
/// the tree and the installation's warnings.
fn install_kept(
    install: Box<dyn LayerInstall + '_>,
    env: &PackageEnv,
    key: Option<&str>,
    layer: &str,
    packages: &[LockedPackage],
) -> Result<(FileTree, Vec<String>), PackagesError> {
    env.meter().step(&format!(
        "unpacking {} package(s) into layer {layer:?}",
        packages.len()
    ));
    let (tree, warnings) = install.install()?;
    if let (Some(c), Some(k)) = (env.layer_cache(), key) {
        c.store_tree(k, &tree, &warnings);
    }
    Ok((tree, warnings))
}

/// The folder of the layer cache that resolutions are kept in.
const RESOLVED: &str = "resolved";

/// A resolution as the layer cache keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptResolution {
    layer: LockedLayer,
    indexes: Vec<lock::LockedFile>,
}

/// The key of a layer's resolution in the layer cache: the program (whose
/// resolver decides), the backend, the architecture and `inputs`, all that
/// the backend resolves from (the requests, the packages installed below,
/// the repositories and the SHA-256 of every index, as their verified
/// release files name them); `None` without a layer cache.
pub fn resolution_key(
    env: &PackageEnv,
    kind: lock::LayerKind,
    arch: &str,
    inputs: &[String],
) -> Option<String> {
    let cache = env.layer_cache()?;
    let program = nodeimg_image::cache::program_digest(cache)?;
    let kind = format!("{kind:?}");
    let mut parts: Vec<&str> = vec!["resolution", &program, &kind, arch];
    parts.extend(inputs.iter().map(String::as_str));
    Some(nodeimg_image::cache::key(&parts))
}

/// The resolution kept as `key` when the layer cache holds a sound one for
/// `requests` (one that does not decode, or is for other requests, is
/// reported and removed).
pub fn kept_resolution(env: &PackageEnv, key: &str, requests: &[String]) -> Option<Resolution> {
    let cache = env.layer_cache()?;
    let bytes = cache.load_value(RESOLVED, key)?;
    let kept: KeptResolution = match serde_json::from_slice(&bytes) {
        Ok(k) => k,
        Err(e) => {
            cache.value_damaged(RESOLVED, key, &format!("unreadable: {e}"));
            return None;
        }
    };
    if kept.layer.requests != requests {
        cache.value_damaged(RESOLVED, key, "it resolves other requests");
        return None;
    }
    cache.count_resolution_reused();
    Some(Resolution {
        layer: kept.layer,
        indexes: kept.indexes,
    })
}

/// Keep `resolution` as `key` in the layer cache.
pub fn keep_resolution(env: &PackageEnv, key: &str, resolution: &Resolution) {
    let Some(cache) = env.layer_cache() else {
        return;
    };
    let kept = KeptResolution {
        layer: resolution.layer.clone(),
        indexes: resolution.indexes.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec(&kept) {
        cache.store_value(RESOLVED, key, &bytes);
    }
}

/// The layer as `lock` names it: present, installed by `backend`, for the
/// same requests.
fn check_layer<'l>(
    backend: &dyn Backend,
    lock: &'l Lock,
    by: LockRef<'_>,
    requests: &[String],
    layer: &str,
) -> Result<&'l LockedLayer, PackagesError> {
    let lf = by.file.display();
    let Some(ll) = lock.layer(layer) else {
        return Err(by.mismatch("packages", format!("layer {layer:?} is not in {lf}")));
    };
    if ll.kind != backend.kind() {
        return Err(by.mismatch(
            "packages",
            format!(
                "layer {layer:?} installs {}, but {lf} locks {} for it",
                backend.installs(),
                ll.kind.noun()
            ),
        ));
    }
    let changes = lock::diff_requests_of(ll.kind, &ll.requests, requests);
    if let Some(first) = changes.first() {
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        return Err(by.mismatch(
            first.key(),
            format!(
                "the packages of layer {layer:?} no longer match {lf}: {}",
                text.join("; ")
            ),
        ));
    }
    Ok(ll)
}

/// A locked package its backend cannot name: the package and why.
#[derive(Debug, thiserror::Error)]
#[error("{package}: {source}")]
struct UnnamedPackage {
    package: String,
    source: LabelError,
}

/// A locked package from the cache or its locked URL, verified against the
/// locked size and SHA256; a file that is not the locked one names the lock.
fn fetch_locked(
    env: &PackageEnv,
    backend: &dyn Backend,
    p: &LockedPackage,
    by: &LockRef<'_>,
    layer: &str,
) -> Result<CachedFile, PackagesError> {
    let lf = by.file.display();
    let label = backend.label(p).map_err(|source| {
        build_cause(
            lf.to_string(),
            UnnamedPackage {
                package: p.name.clone(),
                source,
            },
        )
    })?;
    let mut d = env.meter().download(&label, p.size);
    let got = env
        .cache()
        .fetch_with_progress(&p.url, p.size, &p.sha256, &mut |n| d.received(n));
    report_damaged(env.cache(), env.meter());
    let file = got.map_err(|e| match e {
        FetchError::HashMismatch { .. } | FetchError::SizeMismatch { .. } => build_err(
            lf.to_string(),
            format!(
                "{label} (layer {layer:?}) is not the file the lock names: {e}\n  hint: if {lf} was edited, restore it (or run `{}` where the repositories are trusted); if it was not, the repository or mirror now serves another file under the same name",
                by.run_lock()
            ),
        ),
        e => build_cause("download", e),
    })?;
    d.finish();
    Ok(file)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_build_error_keeps_its_cause_and_says_the_same_sentence() {
        use std::error::Error as _;
        let cause = nodeimg_fetch::FetchError::Status {
            url: "http://r/x.deb".into(),
            status: 500,
        };
        let e = build_cause("download", cause);
        assert_eq!(e.to_string(), "download: http://r/x.deb: HTTP status 500");
        let source = e.source().expect("a cause");
        assert!(
            source.is::<nodeimg_fetch::FetchError>(),
            "the typed cause is kept, not its text"
        );
        // A message with nothing beneath it has no cause.
        assert!(build_err("packages", "no package backend")
            .source()
            .is_none());
    }

    #[test]
    fn a_package_its_backend_cannot_name_keeps_the_backend_error() {
        use std::error::Error as _;
        let e = build_cause(
            "x.lock",
            UnnamedPackage {
                package: "a".into(),
                source: LabelError::version("bad epoch \"x\""),
            },
        );
        assert_eq!(e.to_string(), "x.lock: a: bad epoch \"x\"");
        let named = e.source().and_then(|c| c.downcast_ref::<UnnamedPackage>());
        let label = named.and_then(|n| n.source()).expect("the label error");
        assert!(label.is::<LabelError>());
        assert_eq!(label.to_string(), "bad epoch \"x\"");
    }
    use crate::backend::{InstalledPackage, LayerInstall, Resolution};
    use crate::lock::{LayerKind, LockedFile, PackageRules};
    use nodeimg_layers::RootView;
    use nodeimg_layers::{LayerSpec, MemView};
    use sha2::Digest;

    /// A backend that resolves every layer to the one file at `url`.
    struct Fake {
        url: String,
        sha256: String,
    }

    struct FakeLayer<'a> {
        fake: &'a Fake,
        layer: &'a str,
        requests: &'a [String],
        fetched: usize,
    }

    impl PackageRules for Fake {
        fn kind(&self) -> LayerKind {
            LayerKind::Rpm
        }
        fn check_locked(&self, _: &LockedPackage, _: &str) -> Result<(), (&'static str, String)> {
            Ok(())
        }
    }

    impl Backend for Fake {
        fn present(&self, _: &dyn RootView, _: &str) -> bool {
            true
        }
        fn declared_by(&self, _: &LayerSpec) -> bool {
            true
        }
        fn installs(&self) -> &'static str {
            "fake packages"
        }
        fn open<'a>(
            &'a self,
            req: LayerRequest<'a>,
        ) -> Result<Box<dyn LayerInstall + 'a>, PackagesError> {
            Ok(Box::new(FakeLayer {
                fake: self,
                layer: req.layer,
                requests: req.requests,
                fetched: 0,
            }))
        }
        fn label(&self, p: &LockedPackage) -> Result<String, LabelError> {
            Ok(p.label())
        }
        fn layer_packages(
            &self,
            _: &dyn RootView,
            _: &dyn RootView,
            _: &[LockedPackage],
        ) -> Vec<InstalledPackage> {
            Vec::new()
        }
        fn pin_version(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn version_lt(&self, _: &str, _: &str) -> Option<bool> {
            None
        }
        fn owners(
            &self,
            _: &dyn RootView,
            _: &nodeimg_layers::ImagePath,
        ) -> Result<Vec<crate::backend::PackageOwner>, PackagesError> {
            Ok(Vec::new())
        }
    }

    impl LayerInstall for FakeLayer<'_> {
        fn repositories_diff(&self, _: &LockedLayer) -> (&'static str, Vec<String>) {
            ("fake repositories", Vec::new())
        }
        fn below_changed(
            &mut self,
            _: &LockedLayer,
        ) -> Result<Option<&'static str>, PackagesError> {
            Ok(None)
        }
        fn take_locked(&mut self, _: &LockedLayer, _: &LockRef<'_>) -> Result<(), PackagesError> {
            Ok(())
        }
        fn resolve(&mut self) -> Result<Resolution, PackagesError> {
            let p = LockedPackage {
                name: "a".into(),
                version: "1".into(),
                architecture: "noarch".into(),
                multi_arch: String::new(),
                auto: false,
                order: 0,
                source: "r".into(),
                url: self.fake.url.clone(),
                size: 5,
                sha256: self.fake.sha256.clone(),
                units: Vec::new(),
            };
            Ok(Resolution {
                layer: LockedLayer {
                    name: self.layer.to_string(),
                    kind: LayerKind::Rpm,
                    requests: self.requests.to_vec(),
                    dpkg_status: String::new(),
                    rpmdb: crate::lock::rpmdb_digest(&[]),
                    sources: vec![],
                    repos: vec![],
                    packages: vec![p],
                },
                indexes: vec![LockedFile {
                    url: "file:///index".into(),
                    size: 0,
                    sha256: self.fake.sha256.clone(),
                }],
            })
        }
        fn fetched(&mut self, _: usize, _: CachedFile) -> Result<(), PackagesError> {
            self.fetched += 1;
            Ok(())
        }
        fn unit_files(&self, i: usize) -> Result<Vec<String>, PackagesError> {
            assert_eq!(
                (i, self.fetched),
                (0, 1),
                "asked once the package is fetched"
            );
            Ok(vec!["/usr/lib/systemd/system/a.service".into()])
        }
        fn install(self: Box<Self>) -> Result<(FileTree, Vec<String>), PackagesError> {
            assert_eq!(self.fetched, 1);
            Ok((FileTree::new(), vec!["not run a: %post".into()]))
        }
    }

    fn fake(dir: &Path) -> Fake {
        let file = dir.join("a.pkg");
        std::fs::write(&file, b"hello").unwrap();
        Fake {
            url: format!("file://{}", file.display()),
            sha256: hex::encode(sha2::Sha256::digest(b"hello")),
        }
    }

    /// Installs `reqs` as layer "l" (amd64, an empty view) with `f` alone.
    fn install_one(f: &Fake, env: &PackageEnv, reqs: &[String]) -> Result<FileTree, PackagesError> {
        install_layer(
            &[f],
            LayerRequest {
                env,
                view: &MemView::new(),
                requests: reqs,
                arch: "amd64",
                layer: "l",
                view_id: None,
            },
        )
    }

    #[test]
    fn a_resolved_layer_is_fetched_recorded_and_listed() {
        let t = tempfile::tempdir().unwrap();
        let f = fake(t.path());
        let env = PackageEnv::new(&t.path().join("cache"), &[])
            .unwrap()
            .recording();
        let reqs = vec!["a".to_string()];
        install_one(&f, &env, &reqs).unwrap();
        let lock = env.recorded_lock("amd64").unwrap();
        assert_eq!(lock.layers.len(), 1);
        assert_eq!(lock.layers[0].packages[0].name, "a");
        assert_eq!(
            lock.layers[0].packages[0].units,
            ["/usr/lib/systemd/system/a.service"],
            "the lock records the unit files the package ships"
        );
        assert!(lock.records_units());
        assert_eq!(lock.indexes.len(), 1);
        let done = env.installed();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].layer.as_str(), done[0].kind),
            ("l", LayerKind::Rpm)
        );
        assert_eq!(done[0].packages[0].url, f.url);
        // Without recording, nothing is kept for a lock; what was
        // installed still is.
        let env = PackageEnv::new(&t.path().join("cache"), &[]).unwrap();
        install_one(&f, &env, &reqs).unwrap();
        assert!(env.recorded_lock("amd64").is_none());
        assert_eq!(env.installed().len(), 1);
    }

    #[test]
    fn resolutions_are_kept_by_every_input_and_checked_when_reused() {
        let t = tempfile::tempdir().unwrap();
        let cache = std::sync::Arc::new(
            nodeimg_image::cache::LayerCache::open(&t.path().join("cache")).unwrap(),
        );
        let env = PackageEnv::new(&t.path().join("cache"), &[])
            .unwrap()
            .with_layer_cache(Some(cache.clone()));
        let inputs = |index: &str| {
            vec![
                "[\"a\"]".to_string(),
                format!("http://r/Packages.xz {index}"),
            ]
        };
        let key = resolution_key(&env, LayerKind::Deb, "amd64", &inputs("1")).unwrap();
        // Every input, the backend and the architecture are in the key.
        for other in [
            resolution_key(&env, LayerKind::Deb, "amd64", &inputs("2")),
            resolution_key(&env, LayerKind::Rpm, "amd64", &inputs("1")),
            resolution_key(&env, LayerKind::Deb, "arm64", &inputs("1")),
        ] {
            assert_ne!(other.unwrap(), key);
        }
        assert_eq!(
            resolution_key(&env, LayerKind::Deb, "amd64", &inputs("1")).unwrap(),
            key
        );
        let reqs = vec!["a".to_string()];
        assert!(kept_resolution(&env, &key, &reqs).is_none());
        let layer = LockedLayer {
            name: "l".into(),
            kind: LayerKind::Deb,
            requests: reqs.clone(),
            dpkg_status: "0".repeat(64),
            rpmdb: String::new(),
            sources: vec![],
            repos: vec![],
            packages: vec![],
        };
        let r = Resolution {
            layer: layer.clone(),
            indexes: vec![lock::LockedFile {
                url: "http://r/Packages.xz".into(),
                size: 3,
                sha256: "1".repeat(64),
            }],
        };
        keep_resolution(&env, &key, &r);
        let back = kept_resolution(&env, &key, &reqs).unwrap();
        assert_eq!(back.layer, layer);
        assert_eq!(back.indexes, r.indexes);
        assert_eq!(cache.counts().resolutions_reused, 1);
        // Kept for other requests: not used, and removed.
        let file = t.path().join("cache/layers/resolved").join(&key);
        assert!(kept_resolution(&env, &key, &["b".to_string()]).is_none());
        assert!(!file.exists());
        assert!(cache
            .take_notes()
            .iter()
            .any(|n| n.contains("resolves other requests")));
        // A changed byte: damaged, removed.
        keep_resolution(&env, &key, &r);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(kept_resolution(&env, &key, &reqs).is_none());
        assert!(!file.exists());
        assert!(cache
            .take_notes()
            .iter()
            .any(|n| n.contains("is damaged") && n.contains("SHA256")));
        assert_eq!(cache.counts().resolutions_reused, 1);
        // Without a layer cache there is no key.
        let plain = PackageEnv::new(&t.path().join("cache"), &[]).unwrap();
        assert!(resolution_key(&plain, LayerKind::Deb, "amd64", &inputs("1")).is_none());
    }

    #[test]
    fn a_lock_of_another_kind_or_without_the_layer_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = fake(t.path());
        let reqs = vec!["a".to_string()];
        let mut deb = LockedLayer {
            name: "l".into(),
            kind: LayerKind::Deb,
            requests: reqs.clone(),
            dpkg_status: String::new(),
            rpmdb: String::new(),
            sources: vec![],
            repos: vec![],
            packages: vec![],
        };
        let run = |ll: LockedLayer| {
            let lock = Lock::new("amd64", vec![], vec![], vec![ll]);
            let env = PackageEnv::new(&t.path().join("cache"), &[])
                .unwrap()
                .using_lock(lock, Path::new("r.toml.lock"));
            match install_one(&f, &env, &reqs) {
                Err(PackagesError::Recipe { message, hint, .. }) => {
                    assert!(hint.unwrap().contains("nodeimg lock r.toml"));
                    message
                }
                other => panic!("{:?}", other.map(|_| ())),
            }
        };
        assert_eq!(
            run(deb.clone()),
            "layer \"l\" installs fake packages, but r.toml.lock locks Debian packages for it"
        );
        deb.name = "other".into();
        assert_eq!(run(deb), "layer \"l\" is not in r.toml.lock");
    }
}
