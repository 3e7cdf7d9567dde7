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
//! and registered (see [`crate::deb::install`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nodeimg_layers::{FileTree, ImagePath, RootView};

use crate::deb::control::{self, BinaryPackage, Syntax};
use crate::deb::fetch::{Cache, Mirrors};
use crate::deb::install::{self, Package};
use crate::deb::repo::{self, Keyring};
use crate::deb::resolve::{self, Request, ResolveError};
use crate::error::{Error, IoContext, Result};

/// The directory of deb822 apt sources in the image.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Everything a build needs to install packages: the verified download
/// cache, a scratch directory for unpacked contents (alive as long as this
/// value), and the time `Valid-Until` is checked against.
#[derive(Debug)]
pub struct PackageEnv {
    cache: Cache,
    scratch: tempfile::TempDir,
    now: DateTime<Utc>,
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
        let cache = Cache::new(cache_dir)
            .map_err(|e| Error::image("--cache-dir", e.to_string()))?
            .with_mirrors(mirrors);
        let scratch = tempfile::Builder::new()
            .prefix("nodeimg-packages-")
            .tempdir()
            .ctx(|| "creating a scratch directory for package contents".to_string())?;
        Ok(PackageEnv {
            cache,
            scratch,
            now,
        })
    }

    /// The scratch directory the installed trees reference.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/nodeimg`, else
/// `~/.cache/nodeimg`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let from = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("nodeimg"))
}

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

/// Why a layer's packages cannot be installed.
#[derive(Debug)]
pub enum PackagesError {
    /// The recipe's fault: `key` relative to the layer (`packages[j]` or
    /// `packages`).
    Recipe {
        /// Key path within the layer.
        key: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Anything else (network, signatures, checksums, the image).
    Build(Error),
}

impl From<Error> for PackagesError {
    fn from(e: Error) -> Self {
        PackagesError::Build(e)
    }
}

fn build_err(what: impl Into<String>, message: impl ToString) -> PackagesError {
    PackagesError::Build(Error::image(what, message.to_string()))
}

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

/// The repositories (one per source, URI, suite and component) and where
/// each one's files are.
fn read_indexes(
    env: &PackageEnv,
    sources: &[Source],
    arch: &str,
) -> Result<(Vec<resolve::Repository>, Roots), PackagesError> {
    let mut repos = Vec::new();
    let mut roots = BTreeMap::new();
    for s in sources {
        for uri in &s.uris {
            for suite in &s.suites {
                let dir = repo::release_dir_url(uri, suite);
                let release = fetch_release(env, &dir, &s.keyring)?;
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
                    let path = env
                        .cache
                        .fetch(&url, loc.size, &loc.sha256)
                        .map_err(|e| build_err("download", e))?;
                    let bytes = std::fs::read(&path)
                        .ctx(|| format!("reading {} (cached {url})", path.display()))?;
                    let text = loc
                        .open(&bytes, &url)
                        .map_err(|e| build_err("repository metadata", e))?;
                    let text = String::from_utf8(text)
                        .map_err(|_| build_err(&url, "the Packages index is not UTF-8"))?;
                    let packages = control::parse_packages(&text)
                        .map_err(|e| build_err(&url, format!("line {}: {}", e.line, e.message)))?;
                    let id = match comp {
                        Some(c) => format!("{uri} {suite} {c}"),
                        None => format!("{uri} {suite}"),
                    };
                    roots.insert(id.clone(), (uri.clone(), suite.clone()));
                    repos.push(resolve::Repository { id, packages });
                }
            }
        }
    }
    Ok((repos, roots))
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

/// The image's installed packages (`/var/lib/dpkg/status` and `status.d/`).
fn installed(view: &dyn RootView) -> Result<Vec<BinaryPackage>, PackagesError> {
    let mut files = vec!["/var/lib/dpkg/status".to_string()];
    let mut extra: Vec<String> = view.list("/var/lib/dpkg/status.d");
    extra.sort();
    files.extend(
        extra
            .into_iter()
            .map(|n| format!("/var/lib/dpkg/status.d/{n}")),
    );
    let mut out = Vec::new();
    for f in files {
        if let Some(text) = view.read_text(&f) {
            let mut pkgs = control::parse_installed(&text)
                .map_err(|e| build_err(&f, format!("line {}: {}", e.line, e.message)))?;
            out.append(&mut pkgs);
        }
    }
    Ok(out)
}

fn recipe_err(requests: &[String], e: &ResolveError) -> Option<PackagesError> {
    let name = match e {
        ResolveError::InvalidRequest { text, .. } => Some(text.split('=').next().unwrap_or(text)),
        ResolveError::DuplicateRequest { name, .. }
        | ResolveError::PinNotFound { name, .. }
        | ResolveError::NotFound { name, .. }
        | ResolveError::AmbiguousVirtual { name, .. } => Some(name.as_str()),
        ResolveError::Conflict(_)
        | ResolveError::Unsatisfiable { .. }
        | ResolveError::BreaksInstalled { .. } => None,
        ResolveError::MissingField { .. } | ResolveError::PreDependsCycle { .. } => return None,
    };
    let key = name
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
pub fn install_layer(
    env: &PackageEnv,
    view: &dyn RootView,
    requests: &[String],
    arch: &str,
    layer: &str,
) -> Result<FileTree, PackagesError> {
    if read_sources(view, debian_arch(arch))?.is_empty() && crate::rpm::has_repos(view) {
        return crate::rpm::install_layer(
            &env.cache,
            env.scratch(),
            env.now,
            view,
            requests,
            arch,
            layer,
        );
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
    if sources.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!("the image has no apt source for {arch} in {SOURCES_DIR}"),
            hint: Some("add an apt-source item (with its key) in this layer or one below".into()),
        });
    }
    let (repos, roots) = read_indexes(env, &sources, arch)?;
    let installed = installed(view)?;
    let input = resolve::Input {
        installed: &installed,
        repositories: &repos,
        architecture: arch,
    };
    let planned = resolve::resolve(&input, &reqs).map_err(|e| {
        recipe_err(requests, &e).unwrap_or_else(|| build_err("resolving packages", e))
    })?;
    let mut pkgs = Vec::with_capacity(planned.len());
    for p in planned {
        let Some((uri, suite)) = roots.get(&p.repository) else {
            return Err(build_err(
                "resolving packages",
                format!("unknown repository {}", p.repository),
            ));
        };
        let url = repo::package_url(uri, suite, &p.filename);
        let deb = env
            .cache
            .fetch(&url, p.size, &p.sha256)
            .map_err(|e| build_err("download", e))?;
        pkgs.push(Package { deb, planned: p });
    }
    let done = install::install(view, &pkgs, arch, env.scratch(), "packages")
        .map_err(|e| build_err(format!("installing the packages of layer {layer:?}"), e))?;
    for line in done.report.to_string().lines() {
        if line.starts_with("not run") || line.starts_with("trigger not run") {
            eprintln!("warning: layer {layer:?}: {line}");
        }
    }
    Ok(done.tree)
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
    }
}
