//! rpm packages from yum and zypper repositories, installed natively: the
//! second backend of the `packages` item, beside the apt one, sharing its
//! download cache and mirrors.
//!
//! For one layer: the `.repo` files of `/etc/yum.repos.d` and
//! `/etc/zypp/repos.d` are read from the image as it stands; for each
//! enabled repository `repodata/repomd.xml` is fetched (and, with
//! `repo_gpgcheck`, verified against the repository's own `gpgkey` with
//! its detached `repomd.xml.asc`), `primary.xml` is fetched through the
//! cache and checked against repomd's SHA256 and size, the requests are
//! resolved against the packages the image's rpm database records, every
//! `.rpm` is downloaded into the cache and verified (size and SHA256 from
//! primary.xml; with `gpgcheck`, its header signature against the
//! repository key), unpacked into the layer, and registered in the
//! image's rpm database by rpm (see [`install`]).

pub mod backend;
pub mod install;
pub mod repodata;
pub mod resolve;
pub mod root;
pub mod rpmfile;
pub mod version;

use std::io::{BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use nodeimg_layers::{FileTree, ImagePath, RootView};
use pgp::composed::{Deserializable, StandaloneSignature};
use pgp::packet::Signature;

use nodeimg_fetch::cachefile::CachedFile;
use nodeimg_fetch::fetch::Cache;
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_fetch::progress::Meter;
use nodeimg_pkg::driver::{build_cause, build_err, PackagesError};
#[cfg(test)]
use nodeimg_pkg::lock::LockedLayer;
use nodeimg_pkg::lock::PackageRules;
use nodeimg_pkg::lock::{LayerKind, LockedFile, LockedPackage, LockedRepo};

/// Why a lock's version is not an rpm `epoch:version-release`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockedEvrError {
    /// The version has no epoch.
    #[error("{version:?} is not an rpm epoch:version-release (no epoch)")]
    NoEpoch {
        /// The version as the lock writes it.
        version: String,
    },
    /// The version does not parse.
    #[error("{version:?} is not an rpm epoch:version-release ({source})")]
    Invalid {
        /// The version as the lock writes it.
        version: String,
        /// Why it does not parse.
        #[source]
        source: version::EvrError,
    },
    /// The version has no release.
    #[error("{version:?} is not an rpm epoch:version-release (no release)")]
    NoRelease {
        /// The version as the lock writes it.
        version: String,
    },
}

/// An rpm package's `epoch:version-release` as a lock names it (the
/// epoch is required).
pub fn locked_evr(p: &LockedPackage) -> Result<version::Evr, LockedEvrError> {
    let version = || p.version.clone();
    if !p.version.contains(':') {
        return Err(LockedEvrError::NoEpoch { version: version() });
    }
    let evr = version::Evr::parse(&p.version).map_err(|source| LockedEvrError::Invalid {
        version: version(),
        source,
    })?;
    if evr.release.is_none() {
        return Err(LockedEvrError::NoRelease { version: version() });
    }
    Ok(evr)
}

/// The rpm package backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rpm;

impl PackageRules for Rpm {
    fn kind(&self) -> LayerKind {
        LayerKind::Rpm
    }

    fn check_locked(
        &self,
        p: &LockedPackage,
        architecture: &str,
    ) -> Result<(), (&'static str, String)> {
        locked_evr(p).map_err(|e| ("version", e.to_string()))?;
        let arch = nodeimg_pkg::arch::rpm(nodeimg_pkg::arch::oci_from_debian(architecture));
        nodeimg_pkg::lock::check_architecture(
            p,
            "noarch",
            arch,
            &format!("{arch} ({architecture})"),
        )?;
        if !p.multi_arch.is_empty() {
            return Err(("multi-arch", "an rpm package has no Multi-Arch".into()));
        }
        Ok(())
    }
}

/// Where yum and zypper read repository files.
pub const REPO_DIRS: [&str; 2] = ["/etc/yum.repos.d", "/etc/zypp/repos.d"];

/// One enabled repository of a `.repo` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// The file it is in.
    pub file: String,
    /// Its id (the `[section]`).
    pub id: String,
    /// `baseurl`, variables substituted; the first one is used.
    pub baseurl: String,
    /// `gpgcheck`: package header signatures are verified.
    pub gpgcheck: bool,
    /// `repo_gpgcheck`: `repomd.xml` is verified.
    pub repo_gpgcheck: bool,
    /// `gpgkey` URLs.
    pub gpgkeys: Vec<String>,
}

/// Whether the image has any `.repo` file (the `packages` item then uses
/// this backend when it has no apt source).
pub fn has_repos(view: &dyn RootView) -> bool {
    REPO_DIRS
        .iter()
        .any(|d| view.list(d).iter().any(|n| n.ends_with(".repo")))
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "yes" | "true" | "on"
    )
}

/// One `[section]` of a `.repo` file: its id and its `key=value` lines
/// (keys lowercase, continuation lines joined).
#[derive(Default)]
struct Section {
    id: String,
    keys: Vec<(String, String)>,
}

impl Section {
    /// The last value of `k`.
    fn get(&self, k: &str) -> Option<&str> {
        self.keys
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a `.repo` file cannot be used. The build names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoFileError {
    /// A `key=value` line comes before the first `[section]`.
    #[error("line {line}: a setting before any [repository]")]
    SettingOutsideSection {
        /// The line (from 1).
        line: usize,
    },
    /// A line is neither a section, a setting nor a comment.
    #[error("line {line}: expected key=value, found {text:?}")]
    NotKeyValue {
        /// The line (from 1).
        line: usize,
        /// What it says, trimmed.
        text: String,
    },
    /// A value uses a variable the image gives no value.
    #[error("[{id}]: {value:?} uses ${name}, which the image does not define (no VERSION_ID in /etc/os-release)")]
    UndefinedVariable {
        /// The repository.
        id: String,
        /// The value as written.
        value: String,
        /// The variable, without its `$`.
        name: String,
    },
    /// An enabled repository has no `baseurl`.
    #[error("[{id}]: no baseurl; a mirrorlist or metalink alone is not supported, give the repository's baseurl")]
    NoBaseurl {
        /// The repository.
        id: String,
    },
}

/// The sections of a `.repo` file, in order.
fn parse_sections(text: &str) -> Result<Vec<Section>, RepoFileError> {
    let mut sections: Vec<Section> = Vec::new();
    let mut last_key: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(id) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            sections.push(Section {
                id: id.trim().to_string(),
                keys: Vec::new(),
            });
            last_key = None;
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            return Err(RepoFileError::SettingOutsideSection { line: n + 1 });
        };
        if line.starts_with([' ', '\t']) {
            // A continuation line (more baseurls or keys).
            if let Some(k) = last_key {
                let v = &mut sec.keys[k].1;
                v.push(' ');
                v.push_str(t);
                continue;
            }
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(RepoFileError::NotKeyValue {
                line: n + 1,
                text: t.to_string(),
            });
        };
        sec.keys
            .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        last_key = Some(sec.keys.len() - 1);
    }
    Ok(sections)
}

/// `v` with the `vars` substituted; a variable without a value is an error
/// naming the repository `id`.
fn substitute(v: &str, id: &str, vars: &[(&str, Option<&str>)]) -> Result<String, RepoFileError> {
    let mut out = v.to_string();
    for (name, value) in vars {
        let token = format!("${name}");
        if out.contains(&token) {
            match value {
                Some(x) => out = out.replace(&token, x),
                None => {
                    return Err(RepoFileError::UndefinedVariable {
                        id: id.to_string(),
                        value: v.to_string(),
                        name: (*name).to_string(),
                    })
                }
            }
        }
    }
    Ok(out)
}

/// The repository of an enabled section.
fn repo_config(
    s: &Section,
    file: &str,
    zypper: bool,
    vars: &[(&str, Option<&str>)],
) -> Result<RepoConfig, RepoFileError> {
    let subst = |v: &str| substitute(v, &s.id, vars);
    let Some(base) = s.get("baseurl").and_then(|b| b.split_whitespace().next()) else {
        return Err(RepoFileError::NoBaseurl { id: s.id.clone() });
    };
    let gpgcheck = s.get("gpgcheck").is_none_or(truthy);
    let repo_gpgcheck = match s.get("repo_gpgcheck") {
        Some(v) => truthy(v),
        // zypper checks repomd.xml whenever gpgcheck is on.
        None => zypper && gpgcheck,
    };
    let gpgkeys = s
        .get("gpgkey")
        .unwrap_or("")
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|k| !k.is_empty())
        .map(subst)
        .collect::<Result<_, _>>()?;
    Ok(RepoConfig {
        file: file.to_string(),
        id: s.id.clone(),
        baseurl: subst(base)?,
        gpgcheck,
        repo_gpgcheck,
        gpgkeys,
    })
}

/// Parses one `.repo` file; `vars` substitutes `$basearch`, `$arch` and
/// `$releasever`.
pub fn parse_repo_file(
    text: &str,
    file: &str,
    zypper: bool,
    vars: &[(&str, Option<&str>)],
) -> Result<Vec<RepoConfig>, RepoFileError> {
    parse_sections(text)?
        .iter()
        .filter(|s| s.get("enabled").is_none_or(truthy))
        .map(|s| repo_config(s, file, zypper, vars))
        .collect()
}

fn os_version(view: &dyn RootView) -> Option<String> {
    let text = view
        .read_text("/etc/os-release")
        .or_else(|| view.read_text("/usr/lib/os-release"))?;
    text.lines().find_map(|l| {
        l.strip_prefix("VERSION_ID=")
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The enabled repositories of the image, in file name order.
pub fn read_repos(view: &dyn RootView, arch: &str) -> Result<Vec<RepoConfig>, PackagesError> {
    let release = os_version(view);
    let vars = [
        ("basearch", Some(arch)),
        ("arch", Some(arch)),
        ("releasever", release.as_deref()),
    ];
    let mut out = Vec::new();
    for dir in REPO_DIRS {
        let names = nodeimg_pkg::backend::files_ending(view, dir, ".repo");
        for n in names {
            let file = format!("{dir}/{n}");
            let Some(text) = view.read_text(&file) else {
                return Err(build_err(
                    &file,
                    "the repository file cannot be read from the image",
                ));
            };
            let mut repos = parse_repo_file(&text, &file, dir.contains("zypp"), &vars)
                .map_err(|e| build_cause(&file, e))?;
            out.append(&mut repos);
        }
    }
    Ok(out)
}

/// The repository's keys: `file://` paths in the image, `http(s)://` URLs
/// through the cache (and its mirrors).
pub(crate) fn keyring(
    view: &dyn RootView,
    cache: &Cache,
    repo: &RepoConfig,
) -> Result<Keyring, PackagesError> {
    if repo.gpgkeys.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: format!(
                "the repository [{}] in {} checks signatures but names no gpgkey",
                repo.id, repo.file
            ),
            hint: Some(
                "give the repository's key with the yum-repo or zypper-repo item's gpgkey".into(),
            ),
        });
    }
    let mut bytes = Vec::new();
    for k in &repo.gpgkeys {
        let b = if let Some(p) = k.strip_prefix("file://") {
            let ip = ImagePath::new(p)
                .map_err(|m| build_err(&repo.file, format!("gpgkey {k:?}: {m}")))?;
            view.read(&ip)
                .ok_or_else(|| build_err(&repo.file, format!("gpgkey {k} is not in the image")))?
        } else {
            cache
                .fetch_unverified(k)
                .map_err(|e| build_cause(format!("download: gpgkey of [{}]", repo.id), e))?
        };
        let armored = b.trim_ascii_start().starts_with(b"-----BEGIN");
        bytes.extend_from_slice(&b);
        if armored {
            bytes.push(b'\n');
        }
    }
    Keyring::from_bytes(&bytes, &format!("gpgkey of [{}] ({})", repo.id, repo.file))
        .map_err(|e| build_cause(&repo.file, e))
}

/// Why a detached OpenPGP signature (of `repomd.xml` or a package header)
/// cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SignatureParseError {
    /// The signature has no bytes (or only blanks).
    #[error("{file}: the signature is empty")]
    Empty {
        /// The signature's file or URL.
        file: String,
    },
    /// An armored signature is not UTF-8 text.
    #[error("{file}: not UTF-8")]
    NotUtf8 {
        /// The signature's file or URL.
        file: String,
        /// Where the text stops being UTF-8.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The OpenPGP packets cannot be read.
    #[error("{file}: cannot read the signature: {source}")]
    Unreadable {
        /// The signature's file or URL.
        file: String,
        /// What the OpenPGP reader says.
        #[source]
        source: pgp::errors::Error,
    },
}

fn parse_signatures(bytes: &[u8], file: &str) -> Result<Vec<Signature>, SignatureParseError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(SignatureParseError::Empty {
            file: file.to_string(),
        });
    }
    let read = |source: pgp::errors::Error| SignatureParseError::Unreadable {
        file: file.to_string(),
        source,
    };
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).map_err(|source| SignatureParseError::NotUtf8 {
            file: file.to_string(),
            source,
        })?;
        let (iter, _) = StandaloneSignature::from_string_many(text).map_err(read)?;
        iter.map(|s| s.map(|s| s.signature))
            .collect::<Result<_, _>>()
            .map_err(read)
    } else {
        StandaloneSignature::from_bytes_many(trimmed)
            .map_err(read)?
            .map(|s| s.map(|s| s.signature))
            .collect::<Result<_, _>>()
            .map_err(read)
    }
}

/// A repository with `repo_gpgcheck` serves no `repomd.xml.asc`: the
/// download's error is the cause.
#[derive(Debug, thiserror::Error)]
#[error("{source}: the repository [{id}] is not signed, and its repo_gpgcheck requires a signed repomd.xml")]
pub struct UnsignedRepository {
    /// The repository.
    pub id: String,
    /// The failed download of the signature.
    #[source]
    pub source: nodeimg_fetch::fetch::FetchError,
}

pub(crate) fn join(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// Fetches and verifies one repository's metadata; returns its packages
/// and the primary.xml file read (canonical URL, size, SHA256).
pub(crate) fn read_metadata(
    env: &Env,
    repo: &RepoConfig,
    keys: Option<&Keyring>,
) -> Result<(Vec<repodata::RpmPackage>, LockedFile), PackagesError> {
    let (cache, now) = (env.cache, env.now);
    let url = join(&repo.baseurl, "repodata/repomd.xml");
    let repomd = cache
        .fetch_unverified(&url)
        .map_err(|e| build_cause("download", e))?;
    if repo.repo_gpgcheck {
        let Some(keys) = keys else {
            return Err(build_err(
                &repo.file,
                "repo_gpgcheck is on but there is no key",
            ));
        };
        let asc = format!("{url}.asc");
        let sig = cache.fetch_unverified(&asc).map_err(|source| {
            if source.is_not_found() {
                let e = UnsignedRepository {
                    id: repo.id.clone(),
                    source,
                };
                build_cause("repository metadata", e)
            } else {
                build_cause("download", source)
            }
        })?;
        let sigs =
            parse_signatures(&sig, &asc).map_err(|e| build_cause("repository metadata", e))?;
        keys.verify(&sigs, &repomd, now, &url)
            .map_err(|e| build_cause("repository metadata", e))?;
    }
    let loc =
        repodata::parse_repomd(&repomd, &url).map_err(|e| build_cause("repository metadata", e))?;
    let purl = join(&repo.baseurl, &loc.href);
    let path = nodeimg_pkg::driver::fetch_shown(
        env.cache,
        env.meter,
        &purl,
        loc.size,
        &loc.sha256,
        &format!("index {purl}"),
    )?;
    let index = LockedFile {
        url: purl.clone(),
        size: loc.size,
        sha256: loc.sha256.to_ascii_lowercase(),
    };
    let file = path.reader();
    let reader: Box<dyn Read> = if loc.href.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else if loc.href.ends_with(".xz") {
        nodeimg_image::limits::xz_decoder(BufReader::new(file))
    } else if loc.href.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| build_cause(format!("repository metadata: {purl}"), e))?,
        )
    } else if loc.href.ends_with(".xml") {
        Box::new(file)
    } else {
        return Err(build_err(
            "repository metadata",
            format!("{purl}: unsupported compression (gz, xz, zst or none)"),
        ));
    };
    let packages = repodata::parse_primary(BufReader::new(reader), &purl)
        .map_err(|e| build_cause("repository metadata", e))?;
    Ok((packages, index))
}

/// Checks a downloaded package's header signature against the repository
/// key; returns whether that signature also covers the payload (through
/// the header's payload digest).
pub(crate) fn verify_package(
    file: &CachedFile,
    url: &str,
    keys: &Keyring,
    now: DateTime<Utc>,
) -> Result<bool, PackagesError> {
    let rpm =
        rpmfile::RpmFile::from_reader(file.reader(), url).map_err(|e| build_cause("package", e))?;
    let Some(sig) = rpm
        .header_signature()
        .map_err(|e| build_cause("package", e))?
    else {
        return Err(build_err(
            "package signature",
            format!("{url}: the package is not signed, and its repository has gpgcheck on"),
        ));
    };
    let sigs = parse_signatures(sig, url).map_err(|e| build_cause("package signature", e))?;
    keys.verify(&sigs, rpm.header.raw(), now, url)
        .map_err(|e| build_cause("package signature", e))?;
    Ok(rpm.has_payload_digest())
}

/// Whether the request `r` is `name-VERSION...` (a digit or an epoch after
/// the dash), so `docker-ce-cli-1.0` does not count as a pin of `docker-ce`.
pub fn names_pin(r: &str, name: &str) -> bool {
    r.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

pub(crate) fn recipe_err(requests: &[String], e: &resolve::ResolveError) -> PackagesError {
    use resolve::ResolveError as R;
    let name = match e {
        R::NotFound { name, .. } | R::PinNotFound { name, .. } => Some(name.as_str()),
        R::InvalidRequest { text } => Some(text.as_str()),
        _ => None,
    };
    let key = name
        .and_then(|n| requests.iter().rposition(|r| r == n || names_pin(r, n)))
        .map_or_else(|| "packages".to_string(), |j| format!("packages[{j}]"));
    let hint = match e {
        R::NotFound { .. } => {
            Some("check the name and that a yum-repo or zypper-repo of the image offers it".into())
        }
        R::InvalidRequest { .. } => Some("write name, name-version or name-version-release".into()),
        _ => None,
    };
    PackagesError::Recipe {
        key,
        message: e.to_string(),
        hint,
    }
}

/// What installing a layer needs from the build: the download cache, the
/// scratch directory, the time signatures are checked against, and where
/// progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The verified download cache (with its mirrors).
    pub cache: &'a Cache,
    /// Holds the unpacked contents.
    pub scratch: &'a Path,
    /// The build's clock.
    pub now: DateTime<Utc>,
    /// Downloads and steps are shown here.
    pub meter: &'a Meter,
    /// The base's layers: with them, a layer over an image that has its
    /// own rpm is registered by that rpm (see [`open_db`]).
    pub base: Option<&'a nodeimg_image::base::BaseTars>,
}

/// A repository as the lock file records it.
pub fn locked_repo(r: &RepoConfig) -> LockedRepo {
    LockedRepo {
        file: r.file.clone(),
        id: r.id.clone(),
        baseurl: r.baseurl.clone(),
        gpgcheck: r.gpgcheck,
        repo_gpgcheck: r.repo_gpgcheck,
        gpgkeys: r.gpgkeys.clone(),
    }
}

/// `epoch:version-release`, the epoch always written.
pub fn full_evr(evr: &version::Evr) -> String {
    match &evr.release {
        Some(r) => format!("{}:{}-{r}", evr.epoch, evr.version),
        None => format!("{}:{}", evr.epoch, evr.version),
    }
}

/// The installed packages as [`nodeimg_pkg::lock::rpmdb_digest`] reads them.
pub(crate) fn installed_digest(installed: &[repodata::RpmPackage]) -> String {
    let nevras: Vec<String> = installed
        .iter()
        .map(|p| format!("{}-{}.{}", p.name, full_evr(&p.evr), p.arch))
        .collect();
    nodeimg_pkg::lock::rpmdb_digest(&nevras)
}

pub(crate) fn enabled_repos(
    view: &dyn RootView,
    rarch: &str,
) -> Result<Vec<RepoConfig>, PackagesError> {
    let repos = read_repos(view, rarch)?;
    if repos.is_empty() {
        return Err(PackagesError::Recipe {
            key: "packages".into(),
            message: "the image has no enabled rpm repository".into(),
            hint: Some("add a yum-repo or zypper-repo item in this layer or one below".into()),
        });
    }
    Ok(repos)
}

/// The image's rpm database and the rpm that reads and writes it, with the
/// packages it records. A sqlite database (rpm 4.16 and later: EL9,
/// Fedora) is written by the build host's rpm, sandboxed, on a copy of
/// `/var/lib/rpm` alone: nothing else of the base is read, and no program
/// of the image runs. When the image's database is another format (Berkeley
/// DB, ndb, or none yet), or the build host has no rpm, and the image has its
/// own rpm (`/usr/bin/rpm` or `/bin/rpm`) and the base's layers are at hand,
/// the image below the layer is materialised in a folder of the sandbox and
/// that rpm runs with it as the sandbox's root, so the database keeps the
/// format the image's rpm uses; the time it takes is shown. Otherwise (or
/// when the image's rpm is built for another architecture than the build
/// host, which is said) the build host's rpm writes the copy of the
/// database.
pub fn open_db(
    env: &Env,
    view: &dyn RootView,
    layer: &str,
) -> Result<(install::DbRoot, install::Runner, Vec<repodata::RpmPackage>), PackagesError> {
    let host_writes = install::is_sqlite_db(view) && install::Runner::default().on_host();
    if let (Some(rpm), Some(base), false) = (root::image_rpm(view), env.base, host_writes) {
        env.meter.step(&format!(
            "materialising the image below layer {layer:?} for its rpm {rpm}"
        ));
        let started = std::time::Instant::now();
        let (db, counts) =
            install::materialise_image(base, view).map_err(|e| build_cause("rpm database", e))?;
        env.meter.done(&format!(
            "materialised the image below layer {layer:?} ({} base entries, {}, {} changed by the recipe's layers) in {:.1}s",
            counts.base_entries,
            nodeimg_fetch::progress::human_size(counts.base_bytes),
            counts.view_changes,
            started.elapsed().as_secs_f64()
        ));
        let runner = install::Runner::image(rpm);
        let checked = runner
            .check_machine(db.path())
            .and_then(|()| db.installed(&runner));
        match checked {
            Ok(installed) => return Ok((db, runner, installed)),
            Err(e @ install::InstallError::ForeignArch(_)) => {
                env.meter.suspend(|| {
                    eprintln!("warning: layer {layer:?}: {e}; the build host's rpm registers the packages instead")
                });
            }
            Err(e) => return Err(build_cause("rpm database", e)),
        }
    }
    let runner = install::Runner::default();
    let db = install::materialise(view).map_err(|e| build_cause("rpm database", e))?;
    let installed = db
        .installed(&runner)
        .map_err(|e| build_cause("rpm database", e))?;
    Ok((db, runner, installed))
}

/// Unpacks `pkgs` into the layer's tree and registers them in the image's
/// rpm database; returns the tree and the scriptlets that were not run.
pub(crate) fn unpack_and_register(
    env: &Env,
    view: &dyn RootView,
    db: &install::DbRoot,
    runner: &install::Runner,
    pkgs: &[install::Package],
    layer: &str,
) -> Result<(FileTree, Vec<String>), PackagesError> {
    let what = format!("installing the packages of layer {layer:?}");
    let (mut tree, report) =
        install::unpack(view, pkgs, env.scratch, "packages").map_err(|e| build_cause(&what, e))?;
    env.meter.step(&format!(
        "registering {} package(s) in the rpm database of layer {layer:?} with {}",
        pkgs.len(),
        runner.describe()
    ));
    let db_tree = db
        .register(runner, pkgs, env.scratch, "packages")
        .map_err(|e| build_cause(&what, e))?;
    for (p, n) in db_tree {
        tree.replace(p, n);
    }
    let warnings = report
        .to_string()
        .lines()
        .filter(|l| l.starts_with("not run"))
        .map(str::to_string)
        .collect();
    Ok((tree, warnings))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn repo_files() {
        let text = "# Docker\n[docker-ce-stable]\nname=Docker CE Stable - $basearch\nbaseurl=https://repo.invalid/centos/$releasever/$basearch/stable\n  https://other.invalid/\nenabled=1\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker\n\n[docker-ce-test]\nbaseurl=https://repo.invalid/test\nenabled=0\n";
        let vars = [("basearch", Some("x86_64")), ("releasever", Some("7"))];
        let r = parse_repo_file(text, "/etc/yum.repos.d/docker-ce.repo", false, &vars).unwrap();
        assert_eq!(
            r,
            [RepoConfig {
                file: "/etc/yum.repos.d/docker-ce.repo".into(),
                id: "docker-ce-stable".into(),
                baseurl: "https://repo.invalid/centos/7/x86_64/stable".into(),
                gpgcheck: true,
                repo_gpgcheck: false,
                gpgkeys: vec!["file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker".into()],
            }]
        );
        // zypper checks repomd.xml with gpgcheck.
        let z = parse_repo_file("[k]\nbaseurl=http://x.invalid/\n", "z.repo", true, &vars).unwrap();
        assert!(z[0].gpgcheck && z[0].repo_gpgcheck);
        let e = parse_repo_file(
            "[k]\nmirrorlist=http://x.invalid/\n",
            "m.repo",
            false,
            &vars,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("[k]: no baseurl"), "{e}");
        let e = parse_repo_file("baseurl=x\n", "m.repo", false, &vars).unwrap_err();
        assert_eq!(e.to_string(), "line 1: a setting before any [repository]");
        let e = parse_repo_file("[k]\nbaseurl\n", "m.repo", false, &vars).unwrap_err();
        assert_eq!(
            e,
            RepoFileError::NotKeyValue {
                line: 2,
                text: "baseurl".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "line 2: expected key=value, found \"baseurl\""
        );
        let e = parse_repo_file(
            "[k]\nbaseurl=http://x/$releasever\n",
            "m.repo",
            false,
            &[("releasever", None)],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "[k]: \"http://x/$releasever\" uses $releasever, which the image does not define (no VERSION_ID in /etc/os-release)"
        );
    }

    const PRIMARY: &str = r#"<?xml version="1.0"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="1">
<package type="rpm"><name>cri-o</name><arch>x86_64</arch><version epoch="0" ver="1.24.6" rel="1.1"/>
<checksum type="sha256" pkgid="YES">cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc</checksum>
<size package="10"/><location href="Packages/cri-o.rpm"/></package>
</metadata>"#;

    /// A repository in `dir` whose primary.xml is stored as `name`.
    fn repo_with(dir: &Path, name: &str, stored: &[u8]) -> RepoConfig {
        use sha2::Digest;
        std::fs::create_dir_all(dir.join("repodata")).unwrap();
        std::fs::write(dir.join("repodata").join(name), stored).unwrap();
        let repomd = format!(
            "<repomd><data type=\"primary\"><checksum type=\"sha256\">{}</checksum><location href=\"repodata/{name}\"/><size>{}</size></data></repomd>",
            hex::encode(sha2::Sha256::digest(stored)),
            stored.len()
        );
        std::fs::write(dir.join("repodata/repomd.xml"), repomd).unwrap();
        RepoConfig {
            file: "/etc/yum.repos.d/t.repo".into(),
            id: "t".into(),
            baseurl: format!("file://{}", dir.display()),
            gpgcheck: false,
            repo_gpgcheck: false,
            gpgkeys: vec![],
        }
    }

    #[test]
    fn primary_in_every_compression() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::new(t.path().join("cache")).unwrap();
        let now = Utc::now();
        let xml = PRIMARY.as_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(xml).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(xml).unwrap();
        let zst = zstd::encode_all(xml, 1).unwrap();
        let forms: Vec<(&str, Vec<u8>)> = vec![
            ("primary.xml", xml.to_vec()),
            ("primary.xml.gz", gz.finish().unwrap()),
            ("primary.xml.xz", xz.finish().unwrap()),
            ("primary.xml.zst", zst),
        ];
        for (i, (name, bytes)) in forms.into_iter().enumerate() {
            let repo = repo_with(&t.path().join(format!("r{i}")), name, &bytes);
            let meter = Meter::quiet();
            let env = Env {
                cache: &cache,
                scratch: t.path(),
                now,
                meter: &meter,
                base: None,
            };
            let (pkgs, index) = read_metadata(&env, &repo, None).unwrap();
            assert_eq!(index.size, bytes.len() as u64, "{name}");
            assert_eq!(
                index.url,
                format!(
                    "file://{}/repodata/{name}",
                    t.path().join(format!("r{i}")).display()
                )
            );
            assert_eq!(pkgs.len(), 1, "{name}");
            assert_eq!(pkgs[0].nevra(), "cri-o-1.24.6-1.1.x86_64", "{name}");
        }
        // The stored file changed after repomd.xml was written.
        let dir = t.path().join("bad");
        let repo = repo_with(&dir, "primary.xml", xml);
        let mut tampered = xml.to_vec();
        tampered[60] ^= 1;
        std::fs::write(dir.join("repodata/primary.xml"), tampered).unwrap();
        // (A cache that already holds the right bytes would serve those.)
        let cache = Cache::new(t.path().join("cache-2")).unwrap();
        let meter = Meter::quiet();
        let env = Env {
            cache: &cache,
            scratch: t.path(),
            now,
            meter: &meter,
            base: None,
        };
        let e = match read_metadata(&env, &repo, None) {
            Err(PackagesError::Build(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(e.contains("primary.xml: SHA256 is"), "{e}");
        // repo_gpgcheck without a signature file.
        let mut repo = repo_with(&t.path().join("unsigned"), "primary.xml", xml);
        repo.repo_gpgcheck = true;
        let keys = Keyring::from_bytes(KEY.as_bytes(), "test").unwrap();
        let e = match read_metadata(&env, &repo, Some(&keys)) {
            Err(PackagesError::Build(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            e.contains("repomd.xml.asc: not found") && e.contains("is not signed"),
            "{e}"
        );
    }

    /// A throwaway Ed25519 public key, only used to build a keyring.
    const KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawfg/xYJKwYBBAHaRw8BAQdASE0JQ1nACxxmK5t5+fH66hmRBbF2xrrpfgbu
uMsZaU+0GHRlc3QgPHRlc3RAcmVwby5pbnZhbGlkPoiQBBMWCAA4FiEEiJVgPGlZ
jqCWB+FftmlKTfqKX7AFAmsH4P8CGwMFCwkIBwIGFQoJCAsCBBYCAwECHgECF4AA
CgkQtmlKTfqKX7C7vQD/U57X/xOA70+thJj2La4dcNEL2ZQ//yPue5CClCHszK4B
AKAr69ettuY1lYjJYbP4fjcgzy3WY/y2P1/fgixCAa8G
=afAx
-----END PGP PUBLIC KEY BLOCK-----
";

    #[test]
    fn resolve_errors_locate_the_request() {
        let reqs: Vec<String> = ["docker-ce-18.09.1", "docker-ce-cli-19.03.11"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = resolve::ResolveError::PinNotFound {
            name: "docker-ce".into(),
            version: "18.09.1".into(),
            arch: "x86_64".into(),
            available: vec!["3:19.03.11-3.el7".into()],
        };
        match recipe_err(&reqs, &e) {
            PackagesError::Recipe { key, .. } => assert_eq!(key, "packages[0]"),
            PackagesError::Build(e) => panic!("{e}"),
        }
        let e = resolve::ResolveError::Unsatisfiable {
            package: "a".into(),
            dep: "b".into(),
        };
        match recipe_err(&reqs, &e) {
            PackagesError::Recipe { key, .. } => assert_eq!(key, "packages"),
            PackagesError::Build(e) => panic!("{e}"),
        }
    }

    fn locked(requests: &[&str], repos: Vec<LockedRepo>) -> LockedLayer {
        LockedLayer {
            name: "docker".into(),
            kind: LayerKind::Rpm,
            requests: requests.iter().map(|r| r.to_string()).collect(),
            dpkg_status: String::new(),
            rpmdb: nodeimg_pkg::lock::rpmdb_digest(&[]),
            sources: vec![],
            repos,
            packages: vec![],
        }
    }

    fn locked_err(ll: &LockedLayer, view: &dyn RootView, requests: &[&str]) -> (String, String) {
        let t = tempfile::tempdir().unwrap();
        let lock = nodeimg_pkg::lock::Lock::new("amd64", vec![], vec![], vec![ll.clone()]);
        let env = nodeimg_pkg::env::PackageEnv::new(&t.path().join("cache"), &[])
            .unwrap()
            .with_offline(true)
            .using_lock(lock, Path::new("r.toml.lock"));
        let reqs: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
        match nodeimg_pkg::driver::install_layer(
            &[&Rpm],
            nodeimg_pkg::backend::LayerRequest {
                env: &env,
                view,
                requests: &reqs,
                arch: "amd64",
                layer: "docker",
                view_id: None,
            },
        ) {
            Err(PackagesError::Recipe { key, message, hint }) => {
                assert!(hint.unwrap().contains("nodeimg lock r.toml"));
                (key, message)
            }
            Err(PackagesError::Build(e)) => panic!("{e}"),
            Ok(_) => panic!("installed"),
        }
    }

    #[test]
    fn a_lock_that_no_longer_matches_is_refused_before_any_download() {
        let view = nodeimg_layers::MemView::new()
            .file("/etc/os-release", "VERSION_ID=\"7\"\n")
            .file(
                "/etc/yum.repos.d/docker-ce.repo",
                "[docker-ce-stable]\nbaseurl=https://download.example/linux/centos/$releasever/$basearch/stable\ngpgkey=https://download.example/linux/centos/gpg\n",
            );
        let repos = read_repos(&view, "x86_64").unwrap();
        let mine: Vec<LockedRepo> = repos.iter().map(locked_repo).collect();
        assert_eq!(
            mine[0].baseurl,
            "https://download.example/linux/centos/7/x86_64/stable"
        );
        // A pin changed: the entry, both texts.
        let ll = locked(&["docker-ce-19.03.11"], mine.clone());
        let (key, m) = locked_err(&ll, &view, &["docker-ce-20.10.0"]);
        assert_eq!(key, "packages[0]");
        assert_eq!(
            m,
            "the packages of layer \"docker\" no longer match r.toml.lock: \"docker-ce-20.10.0\" was \"docker-ce-19.03.11\" when the lock was made"
        );
        // The repository moved.
        let mut other = mine.clone();
        other[0].baseurl = "https://mirror.example/centos".into();
        let (key, m) = locked_err(
            &locked(&["docker-ce-19.03.11"], other),
            &view,
            &["docker-ce-19.03.11"],
        );
        assert_eq!(key, "packages");
        assert!(
            m.contains("the rpm repositories layer \"docker\" installs from are not the ones in r.toml.lock: [docker-ce-stable] in /etc/yum.repos.d/docker-ce.repo: baseurl https://mirror.example/centos -> https://download.example/linux/centos/7/x86_64/stable"),
            "{m}"
        );
        // A Debian layer locked under the same name.
        let mut deb = locked(&["docker-ce-19.03.11"], mine);
        deb.kind = LayerKind::Deb;
        let (_, m) = locked_err(&deb, &view, &["docker-ce-19.03.11"]);
        assert!(
            m.contains("but r.toml.lock locks Debian packages for it"),
            "{m}"
        );
    }

    #[test]
    fn evr_always_names_the_epoch() {
        assert_eq!(
            full_evr(&version::Evr::new(0, "1.2.13", Some("3.2.el7"))),
            "0:1.2.13-3.2.el7"
        );
        assert_eq!(
            full_evr(&version::Evr::new(3, "19.03.11", None)),
            "3:19.03.11"
        );
        let p = repodata::RpmPackage {
            name: "a".into(),
            arch: "noarch".into(),
            evr: version::Evr::new(0, "1", Some("1")),
            ..Default::default()
        };
        assert_eq!(
            installed_digest(std::slice::from_ref(&p)),
            nodeimg_pkg::lock::rpmdb_digest(&["a-0:1-1.noarch".to_string()])
        );
    }

    #[test]
    fn locked_versions_need_epoch_and_release() {
        let p = |version: &str| LockedPackage {
            name: "a".into(),
            version: version.into(),
            architecture: "noarch".into(),
            multi_arch: String::new(),
            auto: false,
            order: 0,
            source: "r".into(),
            url: "http://h/a.rpm".into(),
            size: 1,
            sha256: "0".repeat(64),
            units: Vec::new(),
        };
        assert_eq!(
            locked_evr(&p("3:1.0-2")).unwrap(),
            version::Evr::new(3, "1.0", Some("2"))
        );
        assert_eq!(
            locked_evr(&p("1.0-2")).unwrap_err().to_string(),
            "\"1.0-2\" is not an rpm epoch:version-release (no epoch)"
        );
        assert_eq!(
            locked_evr(&p("0:1.0")).unwrap_err().to_string(),
            "\"0:1.0\" is not an rpm epoch:version-release (no release)"
        );
        let e = locked_evr(&p("x:1.0-2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"x:1.0-2\" is not an rpm epoch:version-release (\"x:1.0-2\": the epoch \"x\" is not a number)"
        );
        let source = std::error::Error::source(&e).unwrap();
        assert!(matches!(
            source.downcast_ref::<version::EvrError>(),
            Some(version::EvrError::Epoch { .. })
        ));
        // Through the build's error, the cause stays reachable.
        let PackagesError::Build(b) = build_cause("demo.lock: a", e) else {
            panic!("a build error");
        };
        assert_eq!(
            b.to_string(),
            "demo.lock: a: \"x:1.0-2\" is not an rpm epoch:version-release (\"x:1.0-2\": the epoch \"x\" is not a number)"
        );
        let cause = std::error::Error::source(&b).unwrap();
        assert!(cause.is::<LockedEvrError>(), "{cause}");
    }

    #[test]
    fn signature_parse_errors_name_the_file() {
        assert_eq!(
            parse_signatures(b"", "r.asc").unwrap_err().to_string(),
            "r.asc: the signature is empty"
        );
        let e = parse_signatures(b"-----BEGIN PGP SIGNATURE-----\nxx\n", "r.asc").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.asc: cannot read the signature: "),
            "{e}"
        );
        // The OpenPGP reader's error stays the cause.
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.is::<pgp::errors::Error>(), "{source}");
        assert!(e.to_string().ends_with(&source.to_string()), "{e}");
        let e = parse_signatures(b"-----BEGIN \xff", "r.asc").unwrap_err();
        assert_eq!(e.to_string(), "r.asc: not UTF-8");
        assert!(std::error::Error::source(&e)
            .unwrap()
            .is::<std::str::Utf8Error>());
        assert_eq!(join("http://h/a/", "/repodata/x"), "http://h/a/repodata/x");
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod testutil;
