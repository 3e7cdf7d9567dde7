//! The package-backend seam: what a backend (Debian, rpm) does for the
//! generic driver ([`crate::driver::install_layer`]), for the build
//! metadata and for lint, and the one function that chooses the backend of
//! a layer ([`detect`]).

use nodeimg_fetch::CachedFile;
use nodeimg_layers::{FileTree, ImagePath, LayerSpec, RootView};
use serde::Serialize;

use crate::driver::{LockRef, PackagesError};
use crate::env::PackageEnv;
use crate::lock::{LockedFile, LockedLayer, LockedPackage, PackageRules};

/// A package a layer installed, as the build metadata lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Version, in the backend's spelling.
    pub version: String,
    /// Architecture, in the backend's spelling.
    pub architecture: String,
}

/// What a layer asks of a package backend: install `requests` over `view`
/// (the image below plus the layer's own items) for the OCI architecture
/// `arch`, in the build's `env`; `layer` names the layer in messages.
#[derive(Clone, Copy)]
pub struct LayerRequest<'a> {
    /// The build's package settings (cache, lock mode, progress).
    pub env: &'a PackageEnv,
    /// The image below the layer plus the layer's own items.
    pub view: &'a dyn RootView,
    /// The layer's package requests, as the recipe writes them.
    pub requests: &'a [String],
    /// The OCI architecture (`amd64`, `arm64`...).
    pub arch: &'a str,
    /// The layer's name.
    pub layer: &'a str,
    /// A digest of `view` (the base's layers, the trees of the layers
    /// below and the layer's own items), when the build keeps installed
    /// packages in a layer cache: with the packages, the key of what they
    /// install.
    pub view_id: Option<&'a str>,
}

/// Why a backend cannot name a package ([`Backend::label`]).
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The version is not one of the backend's; the backend's own error
    /// (or its message) says why.
    #[error("{0}")]
    Version(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl LabelError {
    /// The version is refused for `why` (an error, or a message).
    pub fn version(why: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        LabelError::Version(why.into())
    }
}

/// One package backend: how a layer's `packages` are installed from the
/// repositories the image declares, and the backend's rules for the lock
/// file ([`PackageRules`]), the build metadata and lint.
pub trait Backend: PackageRules + Send + Sync {
    /// Whether the image `view` declares repositories of this backend for
    /// the OCI architecture `arch` (an unreadable declaration counts: the
    /// backend reports it when it installs).
    fn present(&self, view: &dyn RootView, arch: &str) -> bool;

    /// Whether the items of `layer` declare repositories of this backend
    /// (what lint sees of a layer before it is rendered).
    fn declared_by(&self, layer: &LayerSpec) -> bool;

    /// What a layer of this backend installs and why, for messages
    /// (`Debian packages (the image has apt sources)`).
    fn installs(&self) -> &'static str;

    /// Starts installing the request's packages over its view (the image
    /// below plus the layer's own items) for its OCI architecture: the
    /// requests are parsed and the repositories read from the image.
    fn open<'a>(
        &'a self,
        req: LayerRequest<'a>,
    ) -> Result<Box<dyn LayerInstall + 'a>, PackagesError>;

    /// How a package is named while it is fetched and in messages;
    /// `Err` when the lock's version is not one of this backend.
    fn label(&self, p: &LockedPackage) -> Result<String, LabelError>;

    /// The packages a layer added, for the build metadata: `below` is the
    /// image under the layer, `above` the image with it, `installed` what
    /// the driver installed for it.
    fn layer_packages(
        &self,
        below: &dyn RootView,
        above: &dyn RootView,
        installed: &[LockedPackage],
    ) -> Vec<InstalledPackage>;

    /// The version `request` pins `package` to, when it does and the
    /// version is one of this backend, in a form [`Backend::version_lt`]
    /// compares (lint).
    fn pin_version(&self, request: &str, package: &str) -> Option<String>;

    /// Whether version `a` is older than `b` in this backend's order;
    /// `None` when either is not a version of this backend.
    fn version_lt(&self, a: &str, b: &str) -> Option<bool>;

    /// The packages of the image `view` whose files (as this backend's
    /// package database in the image lists them) include `path` (where an
    /// entry really is: its parent folders resolved), for `inspect --why`;
    /// none when the image has no database of this backend.
    fn owners(
        &self,
        view: &dyn RootView,
        path: &ImagePath,
    ) -> Result<Vec<PackageOwner>, PackagesError>;

    /// The architecture (OCI spelling) the image `view`'s own package
    /// manager is built for, as its database says; `None` when the image
    /// has no database of this backend or it does not say. A build of a
    /// base without an image config takes it when the recipe names none.
    fn native_architecture(&self, _view: &dyn RootView) -> Option<String> {
        None
    }
}

pub use nodeimg_image::inspect::PackageOwner;

/// Whether the file list entry `listed` of a package names the entry at
/// `path` of `view` (where it really is): the same path once its parent
/// folders are resolved (`/lib/x` is `/usr/lib/x` on a merged-/usr image).
pub fn lists(view: &dyn RootView, listed: &str, path: &ImagePath) -> bool {
    if listed.rsplit('/').next() != Some(path.file_name()) {
        return false;
    }
    ImagePath::new(listed).is_ok_and(|l| l == *path || view.resolve_parent(&l) == *path)
}

/// What resolving a layer against the repositories found: the layer as
/// the lock records it (its packages in installation order by `order`)
/// and the index files read.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The layer for the lock file.
    pub layer: LockedLayer,
    /// The index files (Packages, primary.xml) read.
    pub indexes: Vec<LockedFile>,
}

/// One layer being installed by a backend, driven by
/// [`crate::driver::install_layer`].
pub trait LayerInstall {
    /// What the layer's repositories are called in messages (`apt
    /// sources`), and how those it sees differ from the ones `locked` was
    /// made from, a line each (none: the same).
    fn repositories_diff(&self, locked: &LockedLayer) -> (&'static str, Vec<String>);

    /// `Some(what)` when the packages installed below the layer are not the
    /// ones `locked` was made against; `what` names them in the warning
    /// (`packages installed in the image below it (its dpkg status)`).
    fn below_changed(
        &mut self,
        locked: &LockedLayer,
    ) -> Result<Option<&'static str>, PackagesError>;

    /// Installs what `locked` names (in installation order) as it is.
    fn take_locked(
        &mut self,
        locked: &LockedLayer,
        lock: &LockRef<'_>,
    ) -> Result<(), PackagesError>;

    /// Resolves the requests against the repositories' metadata; the
    /// packages to fetch are the layer's, in installation order.
    fn resolve(&mut self) -> Result<Resolution, PackagesError>;

    /// The `i`th package (installation order) was fetched and verified
    /// against its size and SHA256.
    fn fetched(&mut self, i: usize, file: CachedFile) -> Result<(), PackagesError>;

    /// The systemd unit files the `i`th fetched package ships: its entries
    /// in the system unit folders (see
    /// [`nodeimg_layers::systemd::unit_file_name`]) as image paths, for the
    /// lock being written.
    fn unit_files(&self, i: usize) -> Result<Vec<String>, PackagesError>;

    /// Unpacks and registers the packages; returns the layer's packages
    /// tree and the lines to warn about (scripts not run).
    fn install(self: Box<Self>) -> Result<(FileTree, Vec<String>), PackagesError>;
}

/// The files of `dir` in the image whose names end in `suffix`, sorted by
/// name: the order apt, yum and zypper read their source files in.
pub fn files_ending(view: &dyn RootView, dir: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = view
        .list(dir)
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The first of `backends` for which `present` holds, else the first one
/// (whose own checks then say what the image lacks). Builds and lint
/// choose a layer's backend with it, so they always agree.
pub fn pick<'a>(
    backends: &[&'a dyn Backend],
    present: impl Fn(&dyn Backend) -> bool,
) -> Option<&'a dyn Backend> {
    backends
        .iter()
        .copied()
        .find(|b| present(*b))
        .or_else(|| backends.first().copied())
}

/// The backend of a layer whose image (below plus its own items) is `view`,
/// for the OCI architecture `arch`: see [`pick`].
pub fn detect<'a>(
    backends: &[&'a dyn Backend],
    view: &dyn RootView,
    arch: &str,
) -> Option<&'a dyn Backend> {
    pick(backends, |b| b.present(view, arch))
}
