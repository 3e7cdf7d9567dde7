//! A content-addressed download cache and URL mirror remapping.
//!
//! Files live at `DIR/sha256/<hex>`. A cached file is checked (size and SHA256) every time it is
//! used, on a handle opened without following symbolic links ([`crate::cachefile`]), and that
//! open, verified handle is what callers read: the path is never opened again. An entry that is
//! not a regular file of the right size and digest is reported, removed and downloaded again. A
//! download goes to a temporary file in the cache directory, is checked, and only then renamed
//! into place, so a wrong or partial download is never kept. `http://`, `https://` and `file://`
//! URLs are read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use crate::cachefile::CachedFile;
use crate::cachefile::{self, Entry};
use crate::policy::{self, HttpPolicy};
use crate::progress::Meter;

/// Default cap for [`Cache::fetch_unverified`] (InRelease, Release, Release.gpg).
pub(crate) const DEFAULT_METADATA_CAP: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not found{status}")]
    NotFound { url: String, status: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: unsupported URL scheme; use http://, https:// or file://")]
    Scheme { url: String },
    #[error("{url}: larger than the {cap}-byte limit for metadata")]
    TooLarge { url: String, cap: u64 },
    #[error("{url}: downloaded {actual} bytes, expected {expected}: the mirror is inconsistent or the file was modified")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: SHA256 is {actual}, expected {expected}: the mirror is inconsistent or the file was modified")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: not in the cache {cache} (sha256 {sha256}){} and downloads are off (--offline); build once online or fill the cache", damaged_note(.damaged))]
    Offline {
        url: String,
        cache: String,
        sha256: String,
        /// The cache entry that was there and was removed, and why.
        damaged: Option<String>,
    },
    #[error("expected SHA256 {sha256:?} is not 64 hex digits")]
    BadDigest { sha256: String },
    #[error("mirror {pair:?}: {reason}")]
    Mirror { pair: String, reason: String },
    #[error("cache {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn damaged_note(d: &Option<String>) -> String {
    match d {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

impl FetchError {
    /// True when the server or filesystem says the file does not exist (e.g. no InRelease).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

/// One `--mirror`: repository URLs starting with `from` are fetched from `to`; with `key`, the
/// mirror re-signs the metadata and `Release`/`InRelease` fetched through it are verified
/// against that key file (on the build host) instead of the source's `Signed-By`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// URL prefix of the original repository, without a trailing `/`.
    pub from: String,
    /// URL prefix it is fetched from instead, without a trailing `/`.
    pub to: String,
    /// The public key the mirror signs with, if it re-signs.
    pub key: Option<PathBuf>,
}

/// URL prefix remapping: `FROM=TO` pairs (each optionally with the key of a mirror that
/// re-signs); the longest matching `FROM` wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    pairs: Vec<Mirror>,
}

/// The `--mirrors FILE` format: `[[mirror]]` tables.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorsFile {
    #[serde(default)]
    mirror: Vec<MirrorEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorEntry {
    from: String,
    to: String,
    key: Option<PathBuf>,
}

/// What separates `FROM=TO` from the mirror's key in a `--mirror` value.
pub(crate) const KEY_SEPARATOR: &str = ",key=";

impl Mirrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `FROM=TO` and `FROM=TO,key=FILE` values (as given to `--mirror`).
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self> {
        let mut m = Self::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let err = |reason: String| FetchError::Mirror {
                pair: pair.to_string(),
                reason,
            };
            let (map, key) = match pair.rsplit_once(KEY_SEPARATOR) {
                Some((_, "")) => {
                    return Err(err(format!(
                        "{KEY_SEPARATOR} names no file; give the mirror's public key file, e.g. FROM=TO{KEY_SEPARATOR}mirror.asc"
                    )))
                }
                Some((map, key)) => (map, Some(PathBuf::from(key))),
                None => (pair, None),
            };
            let Some((from, to)) = map.split_once('=') else {
                return Err(err(format!(
                    "expected FROM=TO or FROM=TO{KEY_SEPARATOR}FILE"
                )));
            };
            m.add_mirror(from, to, key)
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(m)
    }

    /// Reads a mirrors file: TOML `[[mirror]]` tables with `from`, `to` and optionally `key`
    /// (a public key file, relative to the mirrors file's folder). `display` names the file
    /// in errors.
    pub fn parse_file(text: &str, dir: &Path, display: &str) -> Result<Self> {
        let err = |reason: String| FetchError::Mirror {
            pair: display.to_string(),
            reason,
        };
        let file: MirrorsFile = toml::from_str(text).map_err(|e| {
            err(format!(
                "{}; expected [[mirror]] tables with from = \"URL\", to = \"URL\" and optionally key = \"FILE\"",
                e.to_string().trim_end()
            ))
        })?;
        let mut m = Self::new();
        for (i, e) in file.mirror.into_iter().enumerate() {
            let key = e.key.map(|k| if k.is_absolute() { k } else { dir.join(k) });
            m.add_mirror(&e.from, &e.to, key)
                .map_err(|r| err(format!("mirror[{i}]: {r}")))?;
        }
        Ok(m)
    }

    /// The `--mirror` values that stand for these mirrors (keys as given).
    pub fn to_args(&self) -> Vec<String> {
        self.pairs
            .iter()
            .map(|m| match &m.key {
                Some(k) => format!("{}={}{KEY_SEPARATOR}{}", m.from, m.to, k.display()),
                None => format!("{}={}", m.from, m.to),
            })
            .collect()
    }

    /// Adds one remapping; a later pair with the same `FROM` replaces the earlier one.
    pub fn add(&mut self, from: &str, to: &str) -> std::result::Result<(), MirrorError> {
        self.add_mirror(from, to, None)
    }

    /// [`Mirrors::add`] with the key of a mirror that re-signs.
    pub(crate) fn add_mirror(
        &mut self,
        from: &str,
        to: &str,
        key: Option<PathBuf>,
    ) -> std::result::Result<(), MirrorError> {
        if from.is_empty() || to.is_empty() {
            return Err(MirrorError::Empty);
        }
        if !has_scheme(to) {
            return Err(MirrorError::NotUrl(to.to_string()));
        }
        // Map whole path segments: "http://a/debian" and "http://a/debian/" behave the same.
        let norm = |s: &str| s.trim_end_matches('/').to_string();
        let (from, to) = (norm(from), norm(to));
        self.pairs.retain(|m| m.from != from);
        self.pairs.push(Mirror { from, to, key });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Every mirror, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Mirror> {
        self.pairs.iter()
    }

    fn best(&self, url: &str) -> Option<&Mirror> {
        self.pairs
            .iter()
            .filter(|m| {
                url.strip_prefix(m.from.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|m| m.from.len())
    }

    /// The URL to fetch for `url`.
    pub fn map(&self, url: &str) -> String {
        match self.best(url) {
            Some(m) => format!("{}{}", m.to, &url[m.from.len()..]),
            None => url.to_string(),
        }
    }

    /// The key `url` is signed with when it is fetched through a mirror that re-signs.
    pub fn key_for(&self, url: &str) -> Option<&Path> {
        self.best(url).and_then(|m| m.key.as_deref())
    }
}

/// Why a `FROM`/`TO` pair is not a mirror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// `FROM` or `TO` is empty.
    #[error("FROM and TO must not be empty")]
    Empty,
    /// `TO` has no scheme nodeimg fetches from.
    #[error("{0:?} is not a URL (http://, https:// or file://)")]
    NotUrl(String),
}

fn has_scheme(url: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
}

/// The download cache.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    mirrors: Mirrors,
    offline: bool,
    metadata_cap: u64,
    policy: HttpPolicy,
    agent: ureq::Agent,
    /// Where retries are told.
    meter: Meter,
    /// Every file [`Cache::fetch_unverified`] returned, in order.
    metadata: std::sync::Mutex<Vec<Fetched>>,
    /// Damaged entries found and removed, not yet reported.
    damaged: std::sync::Mutex<Vec<String>>,
}

/// A file as it was fetched: canonical URL (before mirror remapping), size, SHA256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fetched {
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

enum Source {
    Http(Box<dyn Read + Send>),
    File(File),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Http(r) => r.read(buf),
            Source::File(f) => f.read(buf),
        }
    }
}

impl Cache {
    /// A cache in `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let objects = dir.join("sha256");
        crate::cachedir::create_dirs(&objects).map_err(|source| FetchError::Cache {
            path: objects.display().to_string(),
            source,
        })?;
        let policy = HttpPolicy::default();
        Ok(Self {
            dir,
            mirrors: Mirrors::new(),
            offline: false,
            metadata_cap: DEFAULT_METADATA_CAP,
            agent: policy.agent(),
            policy,
            meter: Meter::quiet(),
            metadata: std::sync::Mutex::new(Vec::new()),
            damaged: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn with_mirrors(mut self, mirrors: Mirrors) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// With `offline`, nothing is downloaded: only verified cached files are served.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// With another HTTP policy than [`HttpPolicy::default`] (tests shorten
    /// its waits).
    pub fn with_policy(mut self, policy: HttpPolicy) -> Self {
        self.agent = policy.agent();
        self.policy = policy;
        self
    }

    /// Retries are told to `meter` (a line each); quiet by default.
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = meter;
        self
    }

    pub fn with_metadata_cap(mut self, cap: u64) -> Self {
        self.metadata_cap = cap;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    /// Where the file with this digest is stored.
    pub(crate) fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(sha256.to_ascii_lowercase())
    }

    /// What the cache holds for this size and digest, verified now on an open handle (see
    /// [`crate::cachefile::open_verified`]). A damaged entry (not a regular file, wrong size or
    /// digest) is removed and returned as [`Entry::Damaged`] with its path and what was wrong.
    pub fn check(&self, expected_size: u64, expected_sha256: &str) -> Result<Entry> {
        check_digest(expected_sha256)?;
        let path = self.path_for(expected_sha256);
        let cache_err = |source| FetchError::Cache {
            path: path.display().to_string(),
            source,
        };
        match cachefile::open_verified(&path, expected_size, expected_sha256).map_err(cache_err)? {
            Entry::Damaged(why) => {
                cachefile::remove_entry(&path).map_err(cache_err)?;
                Ok(Entry::Damaged(format!(
                    "the cached copy {} was damaged ({why}) and was removed",
                    path.display()
                )))
            }
            e => Ok(e),
        }
    }

    /// The cached file for this size and digest, verified now and open; None when absent. A
    /// damaged entry is removed (and reported by [`Cache::take_damaged`]).
    pub fn lookup(&self, expected_size: u64, expected_sha256: &str) -> Result<Option<CachedFile>> {
        match self.check(expected_size, expected_sha256)? {
            Entry::Verified(f) => Ok(Some(f)),
            Entry::Absent => Ok(None),
            Entry::Damaged(note) => {
                self.note_damaged(note);
                Ok(None)
            }
        }
    }

    fn note_damaged(&self, note: String) {
        self.damaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(note);
    }

    /// The damaged entries found (and removed) since the last call, one sentence each, for the
    /// user to see.
    pub fn take_damaged(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .damaged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The verified local copy of `url`, open, downloading it when the cache does not hold it.
    pub fn fetch(
        &self,
        url: &str,
        expected_size: u64,
        expected_sha256: &str,
    ) -> Result<CachedFile> {
        self.fetch_with_progress(url, expected_size, expected_sha256, &mut |_| {})
    }

    /// [`Cache::fetch`], calling `progress` with the bytes received so far while downloading
    /// (not called when the cache already holds the file). The file returned is the open handle
    /// that was verified: read it, not its path.
    pub fn fetch_with_progress(
        &self,
        url: &str,
        expected_size: u64,
        expected_sha256: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CachedFile> {
        let damaged = match self.check(expected_size, expected_sha256)? {
            Entry::Verified(f) => return Ok(f),
            Entry::Absent => None,
            Entry::Damaged(note) => Some(note),
        };
        let mapped = self.mirrors.map(url);
        if self.offline {
            return Err(FetchError::Offline {
                url: mapped,
                cache: self.dir.display().to_string(),
                sha256: expected_sha256.to_ascii_lowercase(),
                damaged,
            });
        }
        if let Some(note) = damaged {
            self.note_damaged(format!("{note}; downloading {mapped} again"));
        }
        let target = self.path_for(expected_sha256);
        let cache_err = |source| FetchError::Cache {
            path: self.dir.display().to_string(),
            source,
        };
        // A broken transfer starts again from the first byte; a file of the
        // wrong size or checksum is not fetched again.
        let (tmp, size, hash) =
            self.with_retries(|| self.download_once(&mapped, expected_size, progress))?;
        if size != expected_size {
            return Err(FetchError::SizeMismatch {
                url: mapped,
                expected: expected_size,
                actual: size,
            });
        }
        if !hash.eq_ignore_ascii_case(expected_sha256) {
            return Err(FetchError::HashMismatch {
                url: mapped,
                expected: expected_sha256.to_ascii_lowercase(),
                actual: hash,
            });
        }
        tmp.as_file().sync_all().map_err(cache_err)?;
        // Something put there since the check above is replaced: rename does not follow a
        // symbolic link at the target, and a folder there is removed first.
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            cachefile::remove_entry(&target).map_err(cache_err)?;
        }
        // The handle written and hashed above is the one handed out.
        let file = tmp.persist(&target).map_err(|e| cache_err(e.error))?;
        Ok(CachedFile::written(file, target, size))
    }

    /// One attempt at downloading `url` into a new temporary file of the
    /// cache: the file, the bytes received (at most one more than
    /// expected) and their SHA256.
    fn download_once(
        &self,
        url: &str,
        expected_size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(tempfile::NamedTempFile, u64, String), Attempt> {
        let cache_err = |source| FetchError::Cache {
            path: self.dir.display().to_string(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(self.dir.join("sha256"))
            .map_err(|e| Attempt::last(cache_err(e)))?;
        let (source, again) = self.open(url)?;
        // One byte more than expected is enough to know the size is wrong.
        let mut limited = source.take(expected_size.saturating_add(1));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let error = FetchError::Transport {
                        url: url.to_string(),
                        reason: e.to_string(),
                    };
                    return Err(Attempt { error, again });
                }
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| Attempt::last(cache_err(e)))?;
            size += n as u64;
            progress(size);
        }
        Ok((tmp, size, hex::encode(hasher.finalize())))
    }

    /// Small metadata (InRelease, Release, Release.gpg) that is verified by other means;
    /// refused when larger than the metadata cap. Not cached.
    pub fn fetch_unverified(&self, url: &str) -> Result<Vec<u8>> {
        let mapped = self.mirrors.map(url);
        if self.offline {
            return Err(FetchError::Offline {
                url: mapped,
                cache: self.dir.display().to_string(),
                sha256: "unknown".into(),
                damaged: None,
            });
        }
        let out = self.with_retries(|| {
            let (source, again) = self.open(&mapped)?;
            let mut out = Vec::new();
            source
                .take(self.metadata_cap + 1)
                .read_to_end(&mut out)
                .map_err(|e| Attempt {
                    error: FetchError::Transport {
                        url: mapped.clone(),
                        reason: e.to_string(),
                    },
                    again,
                })?;
            Ok(out)
        })?;
        if out.len() as u64 > self.metadata_cap {
            return Err(FetchError::TooLarge {
                url: mapped,
                cap: self.metadata_cap,
            });
        }
        let fetched = Fetched {
            url: url.to_string(),
            size: out.len() as u64,
            sha256: crate::sha256_hex(&out),
        };
        self.metadata
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fetched);
        Ok(out)
    }

    /// Run `op` as the HTTP policy says: again after a failure that may
    /// pass, each retry told to the meter.
    fn with_retries<T>(&self, op: impl FnMut() -> Result<T, Attempt>) -> Result<T> {
        self.policy
            .retry(
                op,
                |a| a.again,
                |a, r| {
                    self.meter.done(&format!(
                        "{} (attempt {} of {}, again in {:.1} s)",
                        a.error,
                        r.attempt,
                        r.of,
                        r.wait.as_secs_f64()
                    ));
                },
            )
            .map_err(|f| f.error.error)
    }

    /// The files [`Cache::fetch_unverified`] returned so far (InRelease, Release,
    /// Release.gpg), in the order they were fetched, by canonical URL.
    pub fn metadata_fetched(&self) -> Vec<Fetched> {
        self.metadata
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether downloads are off.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The body of `url`, and whether a failure reading it may pass (it
    /// may over HTTP, not from a file).
    fn open(&self, url: &str) -> Result<(Source, bool), Attempt> {
        if let Some(rest) = url.strip_prefix("file://") {
            let path = percent_decode(rest);
            return match File::open(&path) {
                Ok(f) => Ok((Source::File(f), false)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(Attempt::last(FetchError::NotFound {
                        url: url.to_string(),
                        status: String::new(),
                    }))
                }
                Err(e) => Err(Attempt::last(FetchError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                })),
            };
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Attempt::last(FetchError::Scheme {
                url: url.to_string(),
            }));
        }
        let response = self.agent.get(url).call().map_err(|e| Attempt {
            again: policy::transient_error(&e),
            error: FetchError::Transport {
                url: url.to_string(),
                reason: e.to_string(),
            },
        })?;
        let status = response.status().as_u16();
        match status {
            200 => Ok((
                Source::Http(Box::new(response.into_body().into_reader())),
                true,
            )),
            404 | 410 => Err(Attempt::last(FetchError::NotFound {
                url: url.to_string(),
                status: format!(" (HTTP {status})"),
            })),
            _ => Err(Attempt {
                again: policy::transient_status(status),
                error: FetchError::Status {
                    url: url.to_string(),
                    status,
                },
            }),
        }
    }
}

/// A failed attempt, and whether it is worth another.
struct Attempt {
    error: FetchError,
    again: bool,
}

impl Attempt {
    /// A failure that will not pass.
    fn last(error: FetchError) -> Self {
        Attempt {
            error,
            again: false,
        }
    }
}

fn check_digest(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(FetchError::BadDigest {
            sha256: sha256.to_string(),
        })
    }
}

/// Decodes `%XX` escapes in a `file://` path.
fn percent_decode(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = [bytes[i + 1], bytes[i + 2]];
            if let Some(v) = std::str::from_utf8(&hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(out))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use crate::sha256_hex as sha;

    /// A one-request-per-connection HTTP server on 127.0.0.1, stopped on drop.
    struct Server {
        port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        /// The path of every request, in order.
        seen: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(routes: BTreeMap<String, (u16, Vec<u8>)>) -> Self {
            Self::scripted(routes.into_iter().map(|(p, a)| (p, vec![a])).collect())
        }

        /// Each path answered with its answers in turn, the last one again
        /// and again.
        fn scripted(mut routes: BTreeMap<String, Vec<(u16, Vec<u8>)>>) -> Self {
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = seen.clone();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        continue;
                    }
                    loop {
                        let mut l = String::new();
                        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                            break;
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                    log.lock().unwrap().push(path.clone());
                    let (status, body) = match routes.get_mut(&path) {
                        Some(answers) if answers.len() > 1 => answers.remove(0),
                        Some(answers) => answers[0].clone(),
                        None => (404, b"not found".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&body);
                }
            });
            Self {
                port,
                stop,
                thread: Some(thread),
                seen,
            }
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// The default policy with short waits.
    fn quick() -> HttpPolicy {
        HttpPolicy {
            first_wait: Duration::from_millis(5),
            ..HttpPolicy::default()
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn mirrors_longest_prefix_wins_on_segment_boundaries() {
        let m = Mirrors::parse(&[
            "http://deb.example/debian=file:///srv/mirror",
            "http://deb.example/debian/pool/=http://127.0.0.1:8080/pool",
            "https://other.example=http://127.0.0.1:9/o/",
        ])
        .unwrap();
        assert_eq!(
            m.map("http://deb.example/debian/dists/x/InRelease"),
            "file:///srv/mirror/dists/x/InRelease"
        );
        assert_eq!(
            m.map("http://deb.example/debian/pool/a.deb"),
            "http://127.0.0.1:8080/pool/a.deb"
        );
        assert_eq!(
            m.map("http://deb.example/debian-security/x"),
            "http://deb.example/debian-security/x"
        );
        assert_eq!(
            m.map("https://other.example/k.gpg"),
            "http://127.0.0.1:9/o/k.gpg"
        );
        assert_eq!(m.map("http://unrelated/x"), "http://unrelated/x");
        assert!(Mirrors::parse(&["no-equals-sign"]).is_err());
        let err = Mirrors::parse(&["http://a=/srv"]).unwrap_err();
        assert!(err.to_string().contains("is not a URL"), "{err}");
        let mut m = Mirrors::new();
        assert_eq!(m.add("http://a", ""), Err(MirrorError::Empty));
        assert_eq!(
            Mirrors::parse(&["=http://b"]).unwrap_err().to_string(),
            "mirror \"=http://b\": FROM and TO must not be empty"
        );
        let err = m.add("http://a", "/srv").unwrap_err();
        assert_eq!(err, MirrorError::NotUrl("/srv".to_string()));
        assert_eq!(
            err.to_string(),
            "\"/srv\" is not a URL (http://, https:// or file://)"
        );
    }

    #[test]
    fn mirrors_name_the_key_of_a_mirror_that_re_signs() {
        let m = Mirrors::parse(&[
            "https://download.example/linux/ubuntu=http://127.0.0.1:8/docker,key=keys/m.asc",
            "http://plain.example/debian=file:///srv/debian",
        ])
        .unwrap();
        assert_eq!(
            m.key_for("https://download.example/linux/ubuntu/dists/focal/InRelease"),
            Some(Path::new("keys/m.asc"))
        );
        assert_eq!(
            m.map("https://download.example/linux/ubuntu/dists/focal/InRelease"),
            "http://127.0.0.1:8/docker/dists/focal/InRelease"
        );
        assert_eq!(
            m.key_for("http://plain.example/debian/dists/x/InRelease"),
            None
        );
        assert_eq!(m.key_for("http://unrelated.example/x"), None);
        assert_eq!(
            m.to_args(),
            [
                "https://download.example/linux/ubuntu=http://127.0.0.1:8/docker,key=keys/m.asc",
                "http://plain.example/debian=file:///srv/debian"
            ]
        );
        // A later value for the same FROM replaces the key too.
        let m = Mirrors::parse(&[
            "http://a.example/x=http://127.0.0.1:1/x,key=k.asc",
            "http://a.example/x/=http://127.0.0.1:1/y",
        ])
        .unwrap();
        assert_eq!(m.key_for("http://a.example/x/InRelease"), None);
        let err = Mirrors::parse(&["http://a.example=http://b.example,key="]).unwrap_err();
        assert!(err.to_string().contains("names no file"), "{err}");
        let err = Mirrors::parse(&["http://a.example,key=k.asc"]).unwrap_err();
        assert!(err.to_string().contains("expected FROM=TO"), "{err}");
    }

    #[test]
    fn mirrors_file_resolves_keys_against_its_folder() {
        let text = r#"
[[mirror]]
from = "https://download.example/linux/ubuntu"
to = "http://127.0.0.1:8/docker"
key = "keys/mirror.asc"

[[mirror]]
from = "http://plain.example/debian"
to = "file:///srv/debian"
"#;
        let m = Mirrors::parse_file(text, Path::new("/etc/nodeimg"), "mirrors.toml").unwrap();
        assert_eq!(
            m.iter().cloned().collect::<Vec<_>>(),
            [
                Mirror {
                    from: "https://download.example/linux/ubuntu".into(),
                    to: "http://127.0.0.1:8/docker".into(),
                    key: Some(PathBuf::from("/etc/nodeimg/keys/mirror.asc")),
                },
                Mirror {
                    from: "http://plain.example/debian".into(),
                    to: "file:///srv/debian".into(),
                    key: None,
                },
            ]
        );
        let err = Mirrors::parse_file(
            "[[mirror]]\nfrom = \"http://a.example\"\nto = \"http://b.example\"\nkye = \"k\"\n",
            Path::new("."),
            "mirrors.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mirrors.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("kye"), "{err}");
        let err = Mirrors::parse_file(
            "[[mirror]]\nfrom = \"http://a.example\"\nto = \"/srv\"\n",
            Path::new("."),
            "mirrors.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mirror[0]"), "{err}");
        assert!(err.contains("is not a URL"), "{err}");
    }

    #[test]
    fn file_urls_are_fetched_verified_and_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("repo dir");
        fs::create_dir(&src).unwrap();
        let data = b"a package".to_vec();
        fs::write(src.join("a.deb"), &data).unwrap();
        let cache = Cache::new(tmp.path().join("cache")).unwrap();
        let url = format!("file://{}/a.deb", src.display()).replace(' ', "%20");
        let mut seen = Vec::new();
        let got = cache
            .fetch_with_progress(&url, data.len() as u64, &sha(&data), &mut |n| seen.push(n))
            .unwrap();
        assert_eq!(seen.last(), Some(&(data.len() as u64)));
        let path = got.path().to_path_buf();
        assert_eq!(path, tmp.path().join("cache/sha256").join(sha(&data)));
        assert_eq!(got.read_all().unwrap(), data);
        assert_eq!(fs::read(&path).unwrap(), data);
        // Served from the cache once the source is gone.
        fs::remove_file(src.join("a.deb")).unwrap();
        let again = cache.fetch(&url, data.len() as u64, &sha(&data)).unwrap();
        assert_eq!(again.path(), path);
        assert_eq!(again.read_all().unwrap(), data);
        let err = cache.fetch_unverified(&url).unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[test]
    fn corrupted_cache_entry_is_caught_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let data = b"runc binary".to_vec();
        let src = tmp.path().join("runc.deb");
        fs::write(&src, &data).unwrap();
        let url = format!("file://{}", src.display());
        let cache = Cache::new(tmp.path().join("c")).unwrap();
        let path = cache
            .fetch(&url, data.len() as u64, &sha(&data))
            .unwrap()
            .path()
            .to_path_buf();
        fs::write(&path, b"runc binarY").unwrap();
        // Same size, other content: found out, removed, reported.
        assert!(cache
            .lookup(data.len() as u64, &sha(&data))
            .unwrap()
            .is_none());
        assert!(!path.exists());
        let notes = cache.take_damaged();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(&path.display().to_string()), "{notes:?}");
        assert!(notes[0].contains("SHA256"), "{notes:?}");
        fs::write(&path, b"runc binarY").unwrap();
        let offline = Cache::new(tmp.path().join("c")).unwrap().with_offline(true);
        let err = offline
            .fetch(&url, data.len() as u64, &sha(&data))
            .unwrap_err();
        assert!(matches!(err, FetchError::Offline { .. }), "{err}");
        assert!(err.to_string().contains("was damaged"), "{err}");
        assert!(!path.exists(), "the corrupted file must not be kept");
        // A symbolic link to a host file: not followed, replaced by a download.
        let host = tmp.path().join("host-secret");
        fs::write(&host, b"host secret").unwrap();
        std::os::unix::fs::symlink(&host, &path).unwrap();
        let again = cache.fetch(&url, data.len() as u64, &sha(&data)).unwrap();
        assert_eq!(again.read_all().unwrap(), data);
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read(&host).unwrap(), b"host secret");
        assert!(cache.take_damaged()[0].contains("a symbolic link"));
    }

    #[test]
    fn wrong_downloads_are_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("x.deb");
        fs::write(&src, b"tampered!").unwrap();
        let url = format!("file://{}", src.display());
        let cache = Cache::new(tmp.path().join("c")).unwrap();
        let good = b"original!";
        let err = cache
            .fetch(&url, good.len() as u64, &sha(good))
            .unwrap_err();
        match &err {
            FetchError::HashMismatch {
                url: u,
                expected,
                actual,
            } => {
                assert_eq!(u, &url);
                assert_eq!(expected, &sha(good));
                assert_eq!(actual, &sha(b"tampered!"));
            }
            other => panic!("{other}"),
        }
        let err = cache.fetch(&url, 5, &sha(good)).unwrap_err();
        match &err {
            FetchError::SizeMismatch {
                expected, actual, ..
            } => assert_eq!((*expected, *actual), (5, 6)),
            other => panic!("{other}"),
        }
        assert!(
            entries(&tmp.path().join("c")).is_empty(),
            "{:?}",
            entries(&tmp.path().join("c"))
        );
        let err = cache.fetch(&url, 1, "abc").unwrap_err();
        assert!(matches!(err, FetchError::BadDigest { .. }), "{err}");
        let err = cache.fetch("ftp://x/y", 1, &sha(good)).unwrap_err();
        assert!(matches!(err, FetchError::Scheme { .. }), "{err}");
    }

    #[test]
    fn http_fetch_status_mirrors_and_caps() {
        let deb = b"containerd.io 1.2.13-2".to_vec();
        let mut routes = BTreeMap::new();
        routes.insert("/repo/pool/c.deb".to_string(), (200, deb.clone()));
        routes.insert(
            "/repo/dists/focal/InRelease".to_string(),
            (200, b"signed".to_vec()),
        );
        routes.insert("/repo/big".to_string(), (200, vec![b'x'; 100]));
        routes.insert("/repo/broken".to_string(), (500, b"oops".to_vec()));
        let server = Server::start(routes);
        let tmp = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::parse(&[format!(
            "https://download.example/linux/ubuntu={}",
            server.url("/repo")
        )])
        .unwrap();
        let cache = Cache::new(tmp.path())
            .unwrap()
            .with_policy(quick())
            .with_mirrors(mirrors)
            .with_metadata_cap(50);

        let got = cache
            .fetch(
                "https://download.example/linux/ubuntu/pool/c.deb",
                deb.len() as u64,
                &sha(&deb),
            )
            .unwrap();
        assert_eq!(got.read_all().unwrap(), deb);
        assert_eq!(
            cache
                .fetch_unverified("https://download.example/linux/ubuntu/dists/focal/InRelease")
                .unwrap(),
            b"signed"
        );
        // Recorded by the URL asked for, not the mirror's; failures are not.
        assert_eq!(
            cache.metadata_fetched(),
            vec![Fetched {
                url: "https://download.example/linux/ubuntu/dists/focal/InRelease".into(),
                size: 6,
                sha256: sha(b"signed"),
            }]
        );
        let err = cache
            .fetch_unverified(&server.url("/repo/missing"))
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: not found (HTTP 404)", server.url("/repo/missing"))
        );
        let err = cache
            .fetch_unverified(&server.url("/repo/broken"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: HTTP status 500", server.url("/repo/broken"))
        );
        let err = cache
            .fetch_unverified(&server.url("/repo/big"))
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { cap: 50, .. }), "{err}");
        assert_eq!(cache.metadata_fetched().len(), 1);
        let err = cache
            .fetch(&server.url("/repo/big"), 10, &sha(b"0123456789"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::SizeMismatch {
                    expected: 10,
                    actual: 11,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(entries(tmp.path()), vec![sha(&deb)]);
        drop(server);
    }

    #[test]
    fn unreachable_server_names_the_url() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path()).unwrap().with_policy(quick());
        let url = format!("http://127.0.0.1:{port}/InRelease");
        let err = cache.fetch_unverified(&url).unwrap_err();
        assert!(matches!(err, FetchError::Transport { .. }), "{err}");
        assert!(err.to_string().starts_with(&url), "{err}");
    }

    #[test]
    fn server_errors_are_retried_and_not_found_is_not() {
        let deb = b"runc 1.1.12".to_vec();
        let busy = (503, b"busy".to_vec());
        let mut routes = BTreeMap::new();
        routes.insert(
            "/pool/runc.deb".to_string(),
            vec![busy.clone(), busy.clone(), (200, deb.clone())],
        );
        routes.insert(
            "/dists/x/InRelease".to_string(),
            vec![(429, Vec::new()), (200, b"signed".to_vec())],
        );
        routes.insert("/always-busy".to_string(), vec![busy]);
        let server = Server::scripted(routes);
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path()).unwrap().with_policy(quick());
        let got = cache
            .fetch(&server.url("/pool/runc.deb"), deb.len() as u64, &sha(&deb))
            .unwrap();
        assert_eq!(got.read_all().unwrap(), deb);
        assert_eq!(server.seen(), ["/pool/runc.deb"; 3]);
        let missing = server.url("/pool/missing.deb");
        let err = cache.fetch(&missing, 1, &sha(b"x")).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            server
                .seen()
                .iter()
                .filter(|p| **p == "/pool/missing.deb")
                .count(),
            1
        );
        let signed = cache
            .fetch_unverified(&server.url("/dists/x/InRelease"))
            .unwrap();
        assert_eq!(signed, b"signed");
        let err = cache
            .fetch_unverified(&server.url("/always-busy"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: HTTP status 503", server.url("/always-busy"))
        );
        let busy = server
            .seen()
            .iter()
            .filter(|p| *p == "/always-busy")
            .count();
        assert_eq!(busy, 6);
    }

    #[test]
    fn wrong_checksums_are_not_fetched_again() {
        let mut routes = BTreeMap::new();
        routes.insert("/a.deb".to_string(), (200, b"tampered".to_vec()));
        let server = Server::start(routes);
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path()).unwrap().with_policy(quick());
        let err = cache
            .fetch(&server.url("/a.deb"), 8, &sha(b"original"))
            .unwrap_err();
        assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
        assert_eq!(server.seen(), ["/a.deb"]);
    }
}
