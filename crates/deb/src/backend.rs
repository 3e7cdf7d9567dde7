//! The Debian backend behind the package seam ([`Backend`] for [`Deb`]):
//! Debian packages installed from the apt sources the image declares,
//! without running apt or dpkg.
//!
//! For one layer: the deb822 sources (`/etc/apt/sources.list.d/*.sources`)
//! are read from the image as it stands (the layers below plus this layer's
//! own items); each source's `InRelease` (or `Release` + `Release.gpg`) is
//! fetched through the download cache and its mirrors and verified against
//! that source's own `Signed-By` keyring (or the key of a mirror that
//! re-signs), `Valid-Until` is checked against the clock read once when the
//! build starts, each `Packages` index is checked against `Release`, the
//! requests are resolved against the image's dpkg status for the target
//! architecture; the driver downloads and verifies every `.deb` (size and
//! SHA256 from `Packages`), which are then unpacked and registered (see
//! [`crate::install`]).

use std::collections::{BTreeMap, BTreeSet};

use nodeimg_fetch::cachefile::CachedFile;
use nodeimg_fetch::fetch::FetchError;
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_layers::{FileTree, ImagePath, LayerSpec, RootView};
use nodeimg_pkg::backend::{
    Backend, InstalledPackage, LabelError, LayerInstall, LayerRequest, PackageOwner, Resolution,
};
use nodeimg_pkg::driver::{
    build_cause, build_err, fetch_shown, keep_resolution, kept_resolution, LockRef, PackagesError,
};
use nodeimg_pkg::env::PackageEnv;
use nodeimg_pkg::lock::{self, LockedFile, LockedLayer, LockedPackage, LockedSource};

use crate::control::{self, BinaryPackage, Syntax};
use crate::install::{self, Package};
use crate::repo;
use crate::resolve::{self, Request, ResolveError};
use crate::version::{Version, VersionError};
use crate::{Deb, SOURCES_DIR};

impl Backend for Deb {
    fn present(&self, view: &dyn RootView, arch: &str) -> bool {
        enabled_stanzas(view, nodeimg_pkg::arch::debian(arch)).map_or(true, |s| !s.is_empty())
    }

    fn declared_by(&self, layer: &LayerSpec) -> bool {
        !layer.apt_source.is_empty()
    }

    fn installs(&self) -> &'static str {
        "Debian packages (the image has apt sources)"
    }

    fn open<'a>(
        &'a self,
        req: LayerRequest<'a>,
    ) -> Result<Box<dyn LayerInstall + 'a>, PackagesError> {
        let arch = nodeimg_pkg::arch::debian(req.arch).to_string();
        let mut reqs = Vec::with_capacity(req.requests.len());
        for (j, r) in req.requests.iter().enumerate() {
            reqs.push(Request::parse(r).map_err(|e| PackagesError::Recipe {
                key: format!("packages[{j}]"),
                message: e.to_string(),
                hint: Some("write name or name=version (an exact pin)".into()),
            })?);
        }
        let sources = read_sources(req.view, &arch)?;
        Ok(Box::new(DebLayer {
            env: req.env,
            view: req.view,
            requests: req.requests,
            reqs,
            arch,
            layer: req.layer,
            sources,
            planned: Vec::new(),
            pkgs: Vec::new(),
        }))
    }

    fn label(&self, p: &LockedPackage) -> Result<String, LabelError> {
        Ok(p.label())
    }

    fn layer_packages(
        &self,
        below: &dyn RootView,
        above: &dyn RootView,
        _installed: &[LockedPackage],
    ) -> Vec<InstalledPackage> {
        const STATUS: &str = "/var/lib/dpkg/status";
        let read = |v: &dyn RootView| {
            v.read_text(STATUS)
                .map(|t| dpkg_installed(&t))
                .unwrap_or_default()
        };
        read(above).difference(&read(below)).cloned().collect()
    }

    fn pin_version(&self, request: &str, package: &str) -> Option<String> {
        let (name, version) = request.split_once('=')?;
        let name = name.split(':').next().unwrap_or(name).trim();
        (name == package && Version::parse(version).is_ok()).then(|| version.to_string())
    }

    fn version_lt(&self, a: &str, b: &str) -> Option<bool> {
        Some(Version::parse(a).ok()? < Version::parse(b).ok()?)
    }

    fn native_architecture(&self, view: &dyn RootView) -> Option<String> {
        // dpkg's own package is built for the architecture dpkg calls
        // native.
        let dpkg = installed(view)
            .ok()?
            .into_iter()
            .find(|p| p.name == "dpkg")?;
        let arch = dpkg.architecture.trim();
        (!arch.is_empty() && arch != "all")
            .then(|| nodeimg_pkg::arch::oci_from_debian(arch).to_string())
    }

    fn owners(
        &self,
        view: &dyn RootView,
        path: &ImagePath,
    ) -> Result<Vec<PackageOwner>, PackagesError> {
        const INFO: &str = "/var/lib/dpkg/info";
        let lists = nodeimg_pkg::backend::files_ending(view, INFO, ".list");
        let status = view
            .read_text("/var/lib/dpkg/status")
            .map(|t| dpkg_installed(&t))
            .unwrap_or_default();
        let mut out = Vec::new();
        for f in lists {
            let list = format!("{INFO}/{f}");
            let Some(text) = view.read_text(&list) else {
                return Err(build_err(
                    "reading the dpkg database",
                    format!("{list} is not a readable text file"),
                ));
            };
            if !text
                .lines()
                .any(|l| nodeimg_pkg::backend::lists(view, l, path))
            {
                continue;
            }
            let stem = f.trim_end_matches(".list");
            let (name, arch) = match stem.split_once(':') {
                Some((n, a)) => (n, Some(a)),
                None => (stem, None),
            };
            let known = status
                .iter()
                .find(|p| p.name == name && arch.is_none_or(|a| p.architecture == a));
            out.push(PackageOwner {
                name: name.to_string(),
                version: known.map(|p| p.version.clone()).unwrap_or_default(),
                architecture: known
                    .map(|p| p.architecture.clone())
                    .or_else(|| arch.map(str::to_string))
                    .unwrap_or_default(),
                repository: None,
                database: "dpkg".to_string(),
            });
        }
        Ok(out)
    }
}

/// The installed packages of a dpkg status file.
pub fn dpkg_installed(status: &str) -> BTreeSet<InstalledPackage> {
    let mut out = BTreeSet::new();
    for stanza in status.split("\n\n") {
        let field = |k: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(name), Some(version)) = (installed, field("Package"), field("Version")) {
            out.insert(InstalledPackage {
                name,
                version,
                architecture: field("Architecture").unwrap_or_default(),
            });
        }
    }
    out
}

/// One Debian layer being installed.
struct DebLayer<'a> {
    env: &'a PackageEnv,
    view: &'a dyn RootView,
    requests: &'a [String],
    reqs: Vec<Request>,
    /// Debian's spelling.
    arch: String,
    layer: &'a str,
    sources: Vec<Source>,
    /// The packages to install, in order.
    planned: Vec<resolve::Planned>,
    /// Those fetched so far.
    pkgs: Vec<Package>,
}

impl LayerInstall for DebLayer<'_> {
    fn repositories_diff(&self, ll: &LockedLayer) -> (&'static str, Vec<String>) {
        let now: Vec<LockedSource> = self.sources.iter().map(locked_source).collect();
        ("apt sources", lock::diff_sources(&ll.sources, &now))
    }

    fn below_changed(&mut self, ll: &LockedLayer) -> Result<Option<&'static str>, PackagesError> {
        Ok((status_digest(self.view)? != ll.dpkg_status)
            .then_some("packages installed in the image below it (its dpkg status)"))
    }

    fn take_locked(&mut self, ll: &LockedLayer, _: &LockRef<'_>) -> Result<(), PackagesError> {
        for p in ll.in_order() {
            self.planned.push(planned_from_lock(p)?);
        }
        Ok(())
    }

    fn resolve(&mut self) -> Result<Resolution, PackagesError> {
        resolve_layer(self)
    }

    fn fetched(&mut self, i: usize, deb: CachedFile) -> Result<(), PackagesError> {
        let Some(planned) = self.planned.get(i) else {
            return Err(build_err("resolving packages", format!("no package {i}")));
        };
        self.pkgs.push(Package {
            deb,
            planned: planned.clone(),
        });
        Ok(())
    }

    fn unit_files(&self, i: usize) -> Result<Vec<String>, PackagesError> {
        let Some(p) = self.pkgs.get(i) else {
            return Err(build_err("listing unit files", format!("no package {i}")));
        };
        crate::debfile::unit_files(
            std::io::BufReader::new(p.deb.reader()),
            &format!("{} {}", p.planned.name, p.planned.version),
        )
        .map_err(|e| build_cause("listing the unit files of a package", e))
    }

    fn install(self: Box<Self>) -> Result<(FileTree, Vec<String>), PackagesError> {
        let layer = self.layer;
        let done = install::install(
            self.view,
            &self.pkgs,
            &self.arch,
            self.env.scratch(),
            "packages",
        )
        .map_err(|e| build_cause(format!("installing the packages of layer {layer:?}"), e))?;
        let warnings = done
            .report
            .to_string()
            .lines()
            .filter(|l| l.starts_with("not run") || l.starts_with("trigger not run"))
            .map(str::to_string)
            .collect();
        Ok((done.tree, warnings))
    }
}

/// A locked package whose version is not a Debian version.
#[derive(Debug, thiserror::Error)]
#[error("{package}: version {:?}: {}", source.text, source.reason)]
struct LockedVersionError {
    package: String,
    source: VersionError,
}

/// A repository with neither `InRelease` nor `Release.gpg`: `source` is
/// the download of `Release.gpg` that found nothing.
#[derive(Debug, thiserror::Error)]
#[error("{source}: the repository is not signed (no InRelease, no Release.gpg); packages are only installed from signed repositories")]
struct UnsignedRepository {
    source: FetchError,
}

/// A locked package as the installer takes it.
fn planned_from_lock(p: &LockedPackage) -> Result<resolve::Planned, PackagesError> {
    let version = Version::parse(&p.version).map_err(|source| {
        build_cause(
            "lock file",
            LockedVersionError {
                package: p.name.clone(),
                source,
            },
        )
    })?;
    let multi_arch = crate::locked_multi_arch(p).ok_or_else(|| {
        build_err(
            "lock file",
            format!("{}: Multi-Arch {:?} is not valid", p.name, p.multi_arch),
        )
    })?;
    Ok(resolve::Planned {
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
    })
}

/// Resolves the layer's requests against its sources' metadata: the
/// packages to fetch, and the layer as a lock records it.
fn resolve_layer(l: &mut DebLayer<'_>) -> Result<Resolution, PackagesError> {
    let (env, view, arch) = (l.env, l.view, l.arch.as_str());
    if l.sources.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!("the image has no apt source for {arch} in {SOURCES_DIR}"),
            hint: Some("add an apt-source item (with its key) in this layer or one below".into()),
        });
    }
    let located = locate_indexes(env, &l.sources, arch)?;
    let dpkg_status = status_digest(view)?;
    let sources: Vec<LockedSource> = l.sources.iter().map(locked_source).collect();
    let key = resolution_key(env, arch, l.requests, &dpkg_status, &sources, &located);
    if let Some(kept) = key
        .as_deref()
        .and_then(|k| kept_resolution(env, k, l.requests))
    {
        env.meter().step(&format!(
            "the resolution of layer {:?} from the layer cache (the same requests, installed packages and indexes)",
            l.layer
        ));
        for p in kept.layer.in_order() {
            l.planned.push(planned_from_lock(p)?);
        }
        return Ok(kept);
    }
    let mut read = Vec::new();
    let (indexes, roots) = read_indexes(env, &located, &mut read)?;
    let installed = installed(view)?;
    let repos = select_packages(indexes, &l.reqs, &installed)?;
    let input = resolve::Input {
        installed: &installed,
        repositories: &repos,
        architecture: arch,
    };
    let planned = resolve::resolve(&input, &l.reqs).map_err(|e| {
        recipe_err(l.requests, &e).unwrap_or_else(|| build_cause("resolving packages", e))
    })?;
    let mut locked = Vec::with_capacity(planned.len());
    for (order, p) in planned.iter().enumerate() {
        let Some((uri, suite)) = roots.get(&p.repository) else {
            return Err(build_err(
                "resolving packages",
                format!("unknown repository {}", p.repository),
            ));
        };
        locked.push(LockedPackage {
            name: p.name.clone(),
            version: p.version.to_string(),
            architecture: p.architecture.clone(),
            multi_arch: p.multi_arch.as_str().to_string(),
            auto: p.auto,
            order,
            source: p.repository.clone(),
            url: repo::package_url(uri, suite, &p.filename),
            size: p.size,
            sha256: p.sha256.to_ascii_lowercase(),
            units: Vec::new(),
        });
    }
    l.planned = planned;
    let resolution = Resolution {
        layer: LockedLayer {
            name: l.layer.to_string(),
            kind: lock::LayerKind::Deb,
            requests: l.requests.to_vec(),
            dpkg_status,
            rpmdb: String::new(),
            sources,
            repos: Vec::new(),
            packages: locked,
        },
        indexes: read,
    };
    if let Some(k) = &key {
        keep_resolution(env, k, &resolution);
    }
    Ok(resolution)
}

/// The key of a layer's resolution in the layer cache (see
/// [`nodeimg_pkg::driver::resolution_key`]): its requests, the dpkg status
/// below it, its sources, and every index it reads by URL and SHA-256.
fn resolution_key(
    env: &PackageEnv,
    arch: &str,
    requests: &[String],
    dpkg_status: &str,
    sources: &[LockedSource],
    located: &[Located],
) -> Option<String> {
    let mut inputs = vec![
        serde_json::to_string(requests).ok()?,
        dpkg_status.to_string(),
        serde_json::to_string(sources).ok()?,
    ];
    for i in located {
        inputs.push(format!(
            "{} {} {} {} {}",
            i.id, i.url, i.loc.size, i.loc.sha256, i.loc.compression
        ));
    }
    nodeimg_pkg::driver::resolution_key(env, lock::LayerKind::Deb, arch, &inputs)
}

/// One enabled `deb` source of the image.
#[derive(Debug, Clone)]
struct Source {
    file: String,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    keyring: Keyring,
    /// `Check-Valid-Until`, as apt reads it (`no` skips the check).
    freshness: repo::Freshness,
}

/// A deb822 source's `Check-Valid-Until`: apt's boolean spellings, `yes`
/// when absent.
fn freshness(file: &str, st: &control::Stanza) -> Result<repo::Freshness, PackagesError> {
    let Some(v) = st.get("Check-Valid-Until") else {
        return Ok(repo::Freshness::Checked);
    };
    match nodeimg_layers::apt::apt_bool(v) {
        Some(true) => Ok(repo::Freshness::Checked),
        Some(false) => Ok(repo::Freshness::NotChecked),
        None => Err(build_err(
            file,
            format!("Check-Valid-Until: {:?} is neither yes nor no", v.trim()),
        )),
    }
}

fn words(stanza: &control::Stanza, name: &str) -> Vec<String> {
    stanza
        .field(name)
        .map(|f| f.folded().split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The enabled binary source stanzas of the image for `arch`, with their
/// files, in file name order.
fn enabled_stanzas(
    view: &dyn RootView,
    arch: &str,
) -> Result<Vec<(String, control::Stanza)>, PackagesError> {
    let names = nodeimg_pkg::backend::files_ending(view, SOURCES_DIR, ".sources");
    let mut out = Vec::new();
    for name in names {
        let file = format!("{SOURCES_DIR}/{name}");
        let Some(text) = view.read_text(&file) else {
            continue;
        };
        let stanzas =
            control::parse(&text, Syntax::with_comments()).map_err(|e| build_cause(&file, e))?;
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
            out.push((file.clone(), st));
        }
    }
    Ok(out)
}

/// The enabled binary sources of the image, in file name order, for `arch`.
fn read_sources(view: &dyn RootView, arch: &str) -> Result<Vec<Source>, PackagesError> {
    let mut out = Vec::new();
    for (file, st) in enabled_stanzas(view, arch)? {
        let keyring = read_keyring(view, &file, &st)?;
        out.push(Source {
            freshness: freshness(&file, &st)?,
            uris: words(&st, "URIs"),
            suites: words(&st, "Suites"),
            components: words(&st, "Components"),
            file,
            keyring,
        });
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
            .map_err(|e| build_cause(file, e));
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
    Keyring::from_bytes(&bytes, &field.folded()).map_err(|e| build_cause(file, e))
}

/// Repository id -> (URI, suite): where its `Filename`s are relative to.
type Roots = BTreeMap<String, (String, String)>;

/// One `Packages` index a layer reads: its repository id, where its
/// files are, its URL and what the verified `Release` says of it.
struct Located {
    id: String,
    uri: String,
    suite: String,
    url: String,
    loc: repo::IndexLocation,
}

/// The `Packages` indexes (one per source, URI, suite and component), as
/// each source's verified `InRelease` (or `Release`) names them; nothing of
/// the indexes themselves is read.
fn locate_indexes(
    env: &PackageEnv,
    sources: &[Source],
    arch: &str,
) -> Result<Vec<Located>, PackagesError> {
    let mut out = Vec::new();
    for s in sources {
        for uri in &s.uris {
            for suite in &s.suites {
                let dir = repo::release_dir_url(uri, suite);
                let keyring = env.release_keyring(&dir, &s.keyring);
                let release = fetch_release(env, &dir, keyring, s.freshness)?;
                let comps: Vec<Option<&str>> = if repo::is_flat(suite) {
                    vec![None]
                } else {
                    s.components.iter().map(|c| Some(c.as_str())).collect()
                };
                for comp in comps {
                    let loc = release
                        .packages_index(comp, arch)
                        .map_err(|e| build_cause(&s.file, e))?;
                    out.push(Located {
                        id: match comp {
                            Some(c) => format!("{uri} {suite} {c}"),
                            None => format!("{uri} {suite}"),
                        },
                        uri: uri.clone(),
                        suite: suite.clone(),
                        url: format!("{dir}{}", loc.fetch_path),
                        loc,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The `Packages` indexes `located` in compact form, with their repository
/// ids, and where each one's files are. Each index is streamed from the
/// cache: verified (size and SHA256 from `Release`), decompressed and
/// parsed in one pass, one stanza at a time.
fn read_indexes(
    env: &PackageEnv,
    located: &[Located],
    read: &mut Vec<LockedFile>,
) -> Result<(Vec<(String, control::PackageIndex)>, Roots), PackagesError> {
    let mut indexes = Vec::new();
    let mut roots = BTreeMap::new();
    for l in located {
        let file = fetch_shown(
            env.cache(),
            env.meter(),
            &l.url,
            l.loc.size,
            &l.loc.sha256,
            &format!("index {}", l.url),
        )?;
        read.push(LockedFile {
            url: l.url.clone(),
            size: l.loc.size,
            sha256: l.loc.sha256.to_ascii_lowercase(),
        });
        let key = env
            .layer_cache()
            .and_then(|c| parsed_index_key(c, &l.loc.sha256));
        let index = match key.as_deref().and_then(|k| kept_index(env, k, &l.url)) {
            Some(index) => index,
            None => {
                let index = read_index(&file, &l.loc, &l.url)?;
                if let Some(k) = &key {
                    keep_index(env, k, &index);
                }
                index
            }
        };
        roots.insert(l.id.clone(), (l.uri.clone(), l.suite.clone()));
        indexes.push((l.id.clone(), index));
    }
    Ok((indexes, roots))
}

/// The folder of the layer cache that keeps parsed `Packages` indexes, by
/// the SHA-256 of the index file they were read from (as apt keeps its
/// `pkgcache.bin` from one `apt-get update` to the next).
const PARSED_INDEXES: &str = "deb-indexes";

/// The largest parsed index read back from the layer cache (Debian's main
/// archive takes about 26 MB).
const PARSED_INDEX_MAX: u64 = 512 << 20;

/// The key of the index parsed from the file whose SHA-256 is `sha256`:
/// with the running program's own SHA-256, as its parsed form is the
/// program's.
fn parsed_index_key(cache: &nodeimg_image::cache::LayerCache, sha256: &str) -> Option<String> {
    let program = nodeimg_image::cache::program_digest(cache)?;
    Some(nodeimg_image::cache::key(&[
        "deb Packages index, parsed",
        &program,
        &sha256.to_ascii_lowercase(),
    ]))
}

/// The index kept as `key` (see [`parsed_index_key`]) in the layer cache
/// by an earlier build (its own SHA-256 checked; one that does not decode
/// is reported and removed); `url` names it in the progress.
fn kept_index(env: &PackageEnv, key: &str, url: &str) -> Option<control::PackageIndex> {
    let cache = env.layer_cache()?;
    let bytes = cache.load_value_at_most(PARSED_INDEXES, key, PARSED_INDEX_MAX)?;
    match postcard::from_bytes(&bytes) {
        Ok(index) => {
            env.meter()
                .step(&format!("index {url} parsed, from the layer cache"));
            Some(index)
        }
        Err(e) => {
            cache.value_damaged(PARSED_INDEXES, key, &format!("unreadable: {e}"));
            None
        }
    }
}

/// Keep `index` as `key` (see [`parsed_index_key`]).
fn keep_index(env: &PackageEnv, key: &str, index: &control::PackageIndex) {
    let Some(cache) = env.layer_cache() else {
        return;
    };
    // Serialized as it is written: no copy of the index in memory.
    cache.store_value_streamed(PARSED_INDEXES, key, &|w| {
        postcard::to_io(index, w)
            .map(|_| ())
            .map_err(std::io::Error::other)
    });
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
        Err(repo::StreamError::Repo(e)) => Err(build_cause("repository metadata", e)),
        // An error of the stream is the one above.
        Ok(Err(control::IndexError::Io(e))) => Err(build_cause(
            format!(
                "repository metadata: {url}: cannot decompress ({})",
                loc.compression
            ),
            e,
        )),
        Ok(Err(control::IndexError::NotUtf8)) => {
            Err(build_err(url, "the Packages index is not UTF-8"))
        }
        Ok(Err(control::IndexError::Control(e))) => Err(build_cause(url, e)),
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
    let selected =
        control::reachable(&refs, names).map_err(|e| build_cause("repository metadata", e))?;
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
    freshness: repo::Freshness,
) -> Result<repo::Release, PackagesError> {
    let inrelease = format!("{dir}InRelease");
    match env.cache().fetch_unverified(&inrelease) {
        Ok(bytes) => repo::verify_inrelease_with(&bytes, keyring, env.now(), &inrelease, freshness)
            .map_err(|e| build_cause("repository metadata", e)),
        Err(e) if e.is_not_found() => {
            let release = format!("{dir}Release");
            let text = env
                .cache()
                .fetch_unverified(&release)
                .map_err(|e| build_cause("download", e))?;
            let sig = env
                .cache()
                .fetch_unverified(&format!("{release}.gpg"))
                .map_err(|e| {
                    if e.is_not_found() {
                        build_cause("repository metadata", UnsignedRepository { source: e })
                    } else {
                        build_cause("download", e)
                    }
                })?;
            repo::verify_detached(&text, &sig, keyring, env.now(), &release, freshness)
                .map_err(|e| build_cause("repository metadata", e))
        }
        Err(e) => Err(build_cause("download", e)),
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
        .map_err(|e| build_cause("the image's dpkg database", e))?
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
            let mut pkgs = control::parse_installed(&text).map_err(|e| build_cause(&f, e))?;
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

fn locked_source(s: &Source) -> LockedSource {
    LockedSource {
        file: s.file.clone(),
        uris: s.uris.clone(),
        suites: s.suites.clone(),
        components: s.components.clone(),
        keys: s.keyring.fingerprints(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_layers::MemView;

    #[test]
    fn the_native_architecture_is_dpkg_s_own() {
        let status = |dpkg_arch: &str| {
            MemView::new().file(
                "/var/lib/dpkg/status",
                format!(
                    "Package: base-files\nStatus: install ok installed\nVersion: 12\nArchitecture: all\n\n\
                     Package: dpkg\nStatus: install ok installed\nVersion: 1.21\nArchitecture: {dpkg_arch}\n"
                ),
            )
        };
        assert_eq!(
            Deb.native_architecture(&status("arm64")).as_deref(),
            Some("arm64")
        );
        assert_eq!(
            Deb.native_architecture(&status("armhf")).as_deref(),
            Some("arm")
        );
        assert_eq!(
            Deb.native_architecture(&status("amd64")).as_deref(),
            Some("amd64")
        );
        // No dpkg, or no database: nothing said.
        let v = MemView::new().file(
            "/var/lib/dpkg/status",
            "Package: base-files\nStatus: install ok installed\nVersion: 12\nArchitecture: all\n",
        );
        assert_eq!(Deb.native_architecture(&v), None);
        assert_eq!(Deb.native_architecture(&MemView::new()), None);
    }

    #[test]
    fn check_valid_until_is_read_as_apt_reads_it() {
        let stanza = |extra: &str| {
            let text = format!("Types: deb\nURIs: http://r/\nSuites: s\n{extra}");
            control::parse(&text, Syntax::with_comments())
                .unwrap()
                .remove(0)
        };
        let of = |extra: &str| freshness("x.sources", &stanza(extra)).unwrap();
        assert_eq!(of(""), repo::Freshness::Checked);
        for yes in ["yes", "Yes", "true", "1"] {
            assert_eq!(
                of(&format!("Check-Valid-Until: {yes}\n")),
                repo::Freshness::Checked
            );
        }
        for no in ["no", "NO", "false", "0", "off"] {
            assert_eq!(
                of(&format!("Check-Valid-Until: {no}\n")),
                repo::Freshness::NotChecked
            );
        }
        let e = freshness("x.sources", &stanza("Check-Valid-Until: later\n")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("x.sources") && text.contains("\"later\""),
            "{text}"
        );
    }

    /// The cause kept beneath a build error, as `T`.
    fn cause_of<T: std::error::Error + 'static>(e: &PackagesError) -> &T {
        use std::error::Error as _;
        e.source()
            .and_then(|c| c.downcast_ref::<T>())
            .unwrap_or_else(|| panic!("{e:?}"))
    }

    #[test]
    fn unreadable_control_data_keeps_its_control_error() {
        let v = MemView::new().file("/etc/apt/sources.list.d/x.sources", "Types deb\n");
        let e = read_sources(&v, "amd64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/apt/sources.list.d/x.sources: line 1: expected `Field: value`, found `Types deb`"
        );
        assert_eq!(cause_of::<control::ControlError>(&e).line, 1);
        let v = MemView::new().file(
            "/var/lib/dpkg/status",
            "Package: a\nStatus: install ok gone\nVersion: 1\nArchitecture: all\n",
        );
        let e = installed(&v).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/var/lib/dpkg/status: line 2: field `Status`: unknown state `gone`"),
            "{e}"
        );
        let cause = cause_of::<control::ControlError>(&e);
        assert!(matches!(
            cause.cause.as_deref(),
            Some(control::FieldCause::Status(
                control::StatusError::Unknown { .. }
            ))
        ));
    }

    #[test]
    fn a_locked_version_that_is_not_debian_keeps_the_version_error() {
        let p = LockedPackage {
            name: "a".into(),
            version: "x".into(),
            architecture: "all".into(),
            multi_arch: "no".into(),
            auto: false,
            order: 0,
            source: String::new(),
            url: "http://r/a.deb".into(),
            size: 1,
            sha256: "0".repeat(64),
            units: Vec::new(),
        };
        let e = planned_from_lock(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lock file: a: version \"x\": version number does not start with digit"
        );
        let locked = cause_of::<LockedVersionError>(&e);
        assert_eq!(
            std::error::Error::source(locked)
                .map(ToString::to_string)
                .as_deref(),
            Some("invalid version `x`: version number does not start with digit")
        );
    }

    #[test]
    fn an_unsigned_repository_keeps_the_failed_download() {
        let e = build_cause(
            "repository metadata",
            UnsignedRepository {
                source: FetchError::NotFound {
                    url: "http://r/Release.gpg".into(),
                    status: String::new(),
                },
            },
        );
        assert_eq!(
            e.to_string(),
            "repository metadata: http://r/Release.gpg: not found: the repository is not signed (no InRelease, no Release.gpg); packages are only installed from signed repositories"
        );
        let unsigned = cause_of::<UnsignedRepository>(&e);
        assert!(matches!(unsigned.source, FetchError::NotFound { .. }));
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
    #[allow(
        clippy::too_many_lines,
        reason = "the two indexes are written out in full, next to the requests they answer"
    )]
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

    #[test]
    fn the_backend_of_a_layer() {
        use nodeimg_pkg::backend::detect;
        let backends: &[&dyn Backend] = &[&Deb];
        let disabled = MemView::new().file(
            "/etc/apt/sources.list.d/a.sources",
            "Types: deb\nURIs: http://a.invalid/\nSuites: s\nComponents: main\nEnabled: no\n",
        );
        assert!(!Deb.present(&disabled, "amd64"));
        let other_arch = MemView::new().file(
            "/etc/apt/sources.list.d/a.sources",
            "Types: deb\nURIs: http://a.invalid/\nSuites: s\nComponents: main\nArchitectures: armhf\n",
        );
        assert!(!Deb.present(&other_arch, "amd64"));
        assert!(Deb.present(&other_arch, "arm"));
        // A source without a key, or a file that does not parse, is the
        // Debian backend's to report.
        let unsigned = MemView::new().file(
            "/etc/apt/sources.list.d/a.sources",
            "Types: deb\nURIs: http://a.invalid/\nSuites: s\nComponents: main\n",
        );
        assert!(Deb.present(&unsigned, "amd64"));
        let broken = MemView::new().file("/etc/apt/sources.list.d/a.sources", "no colon\n");
        assert!(Deb.present(&broken, "amd64"));
        // With none present, the first backend.
        assert!(detect(backends, &MemView::new(), "amd64").is_some());
    }

    #[test]
    fn pins_and_order() {
        assert_eq!(
            Deb.pin_version("runc=1.0.0~rc6", "runc").as_deref(),
            Some("1.0.0~rc6")
        );
        assert_eq!(
            Deb.pin_version("runc:amd64 =1.0", "runc").as_deref(),
            Some("1.0")
        );
        assert_eq!(Deb.pin_version("runc", "runc"), None);
        assert_eq!(Deb.pin_version("runc=", "runc"), None);
        assert_eq!(Deb.pin_version("other=1", "runc"), None);
        assert_eq!(Deb.version_lt("1.0.0~rc6", "1.0.0~rc6+dfsg1-3"), Some(true));
        assert_eq!(Deb.version_lt("5:18.09.1", "18.06.2~"), Some(false));
        assert_eq!(Deb.version_lt("x y", "1"), None);
    }

    #[test]
    fn a_layer_lists_what_the_dpkg_status_gained() {
        let a = "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n";
        let b = "Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n";
        let below = MemView::new().file("/var/lib/dpkg/status", a);
        let above = MemView::new().file("/var/lib/dpkg/status", format!("{a}\n{b}"));
        let got = Deb.layer_packages(&below, &above, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].version.as_str()), ("b", "2"));
    }

    #[test]
    fn owners_are_the_packages_whose_file_lists_name_the_path() {
        let status = "Package: containerd\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.6.20~ds1-1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n\n";
        let v = MemView::new()
            .symlink("/lib", "usr/lib")
            .file("/var/lib/dpkg/status", status)
            .file(
                "/var/lib/dpkg/info/containerd.list",
                "/.\n/lib\n/lib/systemd/system/containerd.service\n/usr/bin/containerd\n",
            )
            .file(
                "/var/lib/dpkg/info/libc6:amd64.list",
                "/.\n/usr/lib\n/usr/lib/x86_64-linux-gnu/libc.so.6\n",
            )
            .file("/usr/bin/containerd", "elf")
            .file("/usr/lib/systemd/system/containerd.service", "[Unit]\n");
        let ip = |s: &str| ImagePath::new(s).unwrap();
        let names = |p: &str| -> Vec<(String, String, String)> {
            Deb.owners(&v, &ip(p))
                .unwrap()
                .into_iter()
                .map(|o| (o.name, o.version, o.architecture))
                .collect()
        };
        let containerd = (
            "containerd".to_string(),
            "1.6.20~ds1-1".to_string(),
            "amd64".to_string(),
        );
        assert_eq!(
            names("/usr/bin/containerd"),
            std::slice::from_ref(&containerd)
        );
        // Listed as /lib/..., found at /usr/lib/... on a merged-/usr image.
        assert_eq!(
            names("/usr/lib/systemd/system/containerd.service"),
            [containerd]
        );
        assert_eq!(
            names("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            [(
                "libc6".to_string(),
                "2.36-9".to_string(),
                "amd64".to_string()
            )]
        );
        assert!(names("/usr/bin/other").is_empty());
        let o = &Deb.owners(&v, &ip("/usr/bin/containerd")).unwrap()[0];
        assert_eq!(
            (o.repository.as_deref(), o.database.as_str()),
            (None, "dpkg")
        );
        // An image without a dpkg database: none.
        assert!(Deb
            .owners(&MemView::new(), &ip("/usr/bin/containerd"))
            .unwrap()
            .is_empty());
    }
}
