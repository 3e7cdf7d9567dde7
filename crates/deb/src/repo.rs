//! Signed apt repository metadata: `InRelease` / `Release` + `Release.gpg` verified against
//! the source's own keyring, the `Release` fields, and the `Packages` index it lists.
//!
//! Everything here works on bytes already fetched; nothing reads the network or the clock.
//! The caller passes "now" for the `Valid-Until` check and a label (the URL or path the bytes
//! came from) that every error names.

use std::fmt;
use std::io::Read;

use chrono::{DateTime, Utc};
use pgp::composed::{CleartextSignedMessage, Deserializable, StandaloneSignature};
use pgp::packet::Signature;
use sha2::{Digest, Sha256};

use nodeimg_fetch::openpgp::{Keyring, SignatureError};

/// Largest decompressed `Packages` index accepted (the Debian main archive's is about 70 MiB).
pub(crate) const MAX_INDEX_SIZE: u64 = 1 << 30;

/// Everything that can be wrong with repository metadata.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{file}: Valid-Until {valid_until} is before now ({now}): the metadata is stale; refresh the mirror or check the clock")]
    Expired {
        file: String,
        valid_until: String,
        now: String,
    },
    #[error("{file}: malformed Release: {reason}")]
    Malformed { file: String, reason: String },
    /// The Release paragraph is not deb822 (see [`parse_fields`]).
    #[error("{file}: malformed Release: {source}")]
    Fields {
        file: String,
        #[source]
        source: FieldError,
    },
    #[error("{file}: lists no SHA256 checksums; refusing a repository with only weak checksums")]
    NoSha256 { file: String },
    #[error("{file}: {what} is not offered (Release lists {listed})")]
    NotOffered {
        file: String,
        what: String,
        listed: String,
    },
    #[error("{file}: no Packages index for {what} (looked for {tried})")]
    MissingIndex {
        file: String,
        what: String,
        tried: String,
    },
    #[error("{file}: size is {actual} bytes, Release says {expected}: the file was modified or the mirror is inconsistent")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{file}: SHA256 is {actual}, Release says {expected}: the file was modified or the mirror is inconsistent")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: cannot decompress ({compression}): {source}")]
    Decompress {
        file: String,
        compression: Compression,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// Whether a `Release`'s `Valid-Until` is checked: apt's
/// `Check-Valid-Until` option of a source (`no` for a snapshot of an
/// archive whose metadata has expired on purpose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// `Valid-Until`, when present, must be after now (the default).
    Checked,
    /// `Valid-Until` is not looked at (`Check-Valid-Until: no`).
    NotChecked,
}

impl Freshness {
    fn check(self, release: &Release, now: DateTime<Utc>) -> Result<()> {
        match self {
            Freshness::Checked => release.check_valid(now),
            Freshness::NotChecked => Ok(()),
        }
    }
}

/// Verifies a clearsigned `InRelease` and returns the parsed, signed `Release` text.
/// Nothing outside the signed part is used.
pub fn verify_inrelease(
    inrelease: &[u8],
    keyring: &Keyring,
    now: DateTime<Utc>,
    file: &str,
) -> Result<Release> {
    verify_inrelease_with(inrelease, keyring, now, file, Freshness::Checked)
}

/// [`verify_inrelease`], checking `Valid-Until` as `freshness` says.
pub fn verify_inrelease_with(
    inrelease: &[u8],
    keyring: &Keyring,
    now: DateTime<Utc>,
    file: &str,
    freshness: Freshness,
) -> Result<Release> {
    let text = std::str::from_utf8(inrelease).map_err(|_| RepoError::Malformed {
        file: file.to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    if !text
        .trim_start()
        .starts_with("-----BEGIN PGP SIGNED MESSAGE-----")
    {
        return Err(SignatureError::Unsigned {
            file: file.to_string(),
            reason: "no \"-----BEGIN PGP SIGNED MESSAGE-----\" header".into(),
        }
        .into());
    }
    let (msg, _) = CleartextSignedMessage::from_string(text.trim_start()).map_err(|e| {
        SignatureError::Unsigned {
            file: file.to_string(),
            reason: format!("cannot read the clearsigned message: {e}"),
        }
    })?;
    let signed = msg.signed_text();
    let sigs: Vec<Signature> = msg
        .signatures()
        .iter()
        .map(|s| s.signature.clone())
        .collect();
    let key = keyring.verify(&sigs, signed.as_bytes(), now, file)?;
    // The signature covers the text without its final line break; give the file back whole.
    let mut release_text = signed.replace("\r\n", "\n");
    if !release_text.ends_with('\n') {
        release_text.push('\n');
    }
    let release = Release::parse(&release_text, file, Some(key))?;
    freshness.check(&release, now)?;
    Ok(release)
}

/// Verifies `Release` against the detached `Release.gpg` (armored or binary) and parses it,
/// checking `Valid-Until` as `freshness` says.
pub(crate) fn verify_detached(
    release: &[u8],
    signature: &[u8],
    keyring: &Keyring,
    now: DateTime<Utc>,
    file: &str,
    freshness: Freshness,
) -> Result<Release> {
    let sig_file = format!("{file}.gpg");
    let unsigned = |reason: String| SignatureError::Unsigned {
        file: sig_file.clone(),
        reason,
    };
    let trimmed = signature.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(unsigned("the signature file is empty".into()).into());
    }
    let sigs: Vec<Signature> = if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).map_err(|_| unsigned("not UTF-8".into()))?;
        let (iter, _) = StandaloneSignature::from_string_many(text)
            .map_err(|e| unsigned(format!("cannot read the signature: {e}")))?;
        iter.map(|s| s.map(|s| s.signature))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| unsigned(format!("cannot read the signature: {e}")))?
    } else {
        StandaloneSignature::from_bytes_many(trimmed)
            .map_err(|e| unsigned(format!("cannot read the signature: {e}")))?
            .map(|s| s.map(|s| s.signature))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| unsigned(format!("cannot read the signature: {e}")))?
    };
    let key = keyring.verify(&sigs, release, now, file)?;
    let text = std::str::from_utf8(release).map_err(|_| RepoError::Malformed {
        file: file.to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    let parsed = Release::parse(text, file, Some(key))?;
    freshness.check(&parsed, now)?;
    Ok(parsed)
}

/// True for a flat repository: its suite ends in `/` (e.g. `xUbuntu_20.04/`, `./`).
pub(crate) fn is_flat(suite: &str) -> bool {
    suite.ends_with('/')
}

/// The URL of the directory holding `InRelease`/`Release` (ending in `/`): `URI/dists/SUITE/`,
/// or `URI/SUITE` for a flat repository.
pub(crate) fn release_dir_url(uri: &str, suite: &str) -> String {
    let base = uri.trim_end_matches('/');
    if is_flat(suite) {
        let sub = suite.trim_start_matches("./").trim_matches('/');
        if sub.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/{sub}/")
        }
    } else {
        format!("{base}/dists/{}/", suite.trim_matches('/'))
    }
}

/// The URL of a package's `Filename` from `Packages`: relative to `URI` in the `dists/`
/// layout, to the suite directory in a flat repository.
pub(crate) fn package_url(uri: &str, suite: &str, filename: &str) -> String {
    let rel = filename.trim_start_matches("./");
    if is_flat(suite) {
        format!("{}{rel}", release_dir_url(uri, suite))
    } else {
        format!("{}/{rel}", uri.trim_end_matches('/'))
    }
}

/// One file listed under `SHA256:` in a `Release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the directory holding `Release`.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// A parsed, signed `Release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The verified text exactly as signed (LF line endings).
    pub text: String,
    /// The file (URL or path) it came from.
    pub file: String,
    /// Fingerprint of the primary key that signed it (None when parsed unverified).
    pub signed_by: Option<String>,
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub version: Option<String>,
    pub date: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub acquire_by_hash: bool,
    /// In file order.
    pub sha256: Vec<FileEntry>,
}

/// Why a deb822 paragraph is refused ([`parse_fields`]), with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A second paragraph follows the first.
    #[error("line {line}: more than one paragraph")]
    Paragraphs { line: usize },
    /// A continuation line comes before any field.
    #[error("line {line}: continuation line before any field")]
    Continuation { line: usize },
    /// A line is not `Field: value`.
    #[error("line {line}: expected \"Field: value\", got {text:?}")]
    NoColon { line: usize, text: String },
    /// A field name is empty or holds blanks.
    #[error("line {line}: bad field name {name:?}")]
    BadName { line: usize, name: String },
    /// A field appears twice.
    #[error("line {line}: field {name} appears twice")]
    Twice { line: usize, name: String },
}

impl FieldError {
    /// The 1-based line of the fault.
    pub fn line(&self) -> usize {
        match self {
            FieldError::Paragraphs { line }
            | FieldError::Continuation { line }
            | FieldError::NoColon { line, .. }
            | FieldError::BadName { line, .. }
            | FieldError::Twice { line, .. } => *line,
        }
    }
}

/// Parses one deb822 paragraph into (field, value) pairs in file order; continuation lines are
/// joined with '\n' (the first line of a multi-line field may be empty).
pub fn parse_fields(text: &str) -> std::result::Result<Vec<(String, String)>, FieldError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            // A Release has exactly one paragraph; anything after a blank line is ignored by apt
            // too, but refuse it so nothing unsigned-looking is ever mixed in.
            if text
                .lines()
                .skip(n)
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                return Err(FieldError::Paragraphs { line: n + 1 });
            }
            break;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(last) = fields.last_mut() else {
                return Err(FieldError::Continuation { line: n + 1 });
            };
            last.1.push('\n');
            last.1.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(FieldError::NoColon {
                line: n + 1,
                text: line.to_string(),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(FieldError::BadName {
                line: n + 1,
                name: name.to_string(),
            });
        }
        if fields.iter().any(|(f, _)| f.eq_ignore_ascii_case(name)) {
            return Err(FieldError::Twice {
                line: n + 1,
                name: name.to_string(),
            });
        }
        fields.push((name.to_string(), value.trim().to_string()));
    }
    Ok(fields)
}

/// Parses an RFC 2822 date as apt writes it ("Sat, 09 Nov 2024 10:00:00 UTC").
pub(crate) fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let normalized = ["UTC", "GMT", "Z", "UT"]
        .iter()
        .find_map(|z| s.strip_suffix(z).map(|head| format!("{}+0000", head)))
        .unwrap_or_else(|| s.to_string());
    DateTime::parse_from_rfc2822(&normalized)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl Release {
    /// Parses `Release` text; `file` names it in errors. Refuses a Release without SHA256 entries.
    pub fn parse(text: &str, file: &str, signed_by: Option<String>) -> Result<Self> {
        let malformed = |reason: String| RepoError::Malformed {
            file: file.to_string(),
            reason,
        };
        let fields = parse_fields(text).map_err(|source| RepoError::Fields {
            file: file.to_string(),
            source,
        })?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let date_field = |name: &str| -> Result<Option<DateTime<Utc>>> {
            match get(name) {
                None => Ok(None),
                Some(v) => parse_date(v)
                    .map(Some)
                    .ok_or_else(|| malformed(format!("{name}: cannot parse the date {v:?}"))),
            }
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut sha256 = Vec::new();
        if let Some(list) = get("SHA256") {
            for line in list.lines().filter(|l| !l.trim().is_empty()) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [hash, size, path] = parts[..] else {
                    return Err(malformed(format!(
                        "SHA256: expected \"hash size path\", got {line:?}"
                    )));
                };
                if hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(malformed(format!("SHA256: bad hash {hash:?} for {path}")));
                }
                let size = size
                    .parse::<u64>()
                    .map_err(|_| malformed(format!("SHA256: bad size {size:?} for {path}")))?;
                sha256.push(FileEntry {
                    path: path.to_string(),
                    size,
                    sha256: hash.to_ascii_lowercase(),
                });
            }
        }
        if sha256.is_empty() {
            return Err(RepoError::NoSha256 {
                file: file.to_string(),
            });
        }
        let acquire_by_hash = match get("Acquire-By-Hash") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("yes") => true,
            Some(v) if v.eq_ignore_ascii_case("no") => false,
            Some(v) => {
                return Err(malformed(format!(
                    "Acquire-By-Hash: expected yes or no, got {v:?}"
                )))
            }
        };
        Ok(Self {
            text: text.to_string(),
            file: file.to_string(),
            signed_by,
            origin: get("Origin").map(str::to_string),
            label: get("Label").map(str::to_string),
            suite: get("Suite").map(str::to_string),
            codename: get("Codename").map(str::to_string),
            version: get("Version").map(str::to_string),
            date: date_field("Date")?,
            valid_until: date_field("Valid-Until")?,
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash,
            sha256,
        })
    }

    /// Refuses metadata whose `Valid-Until` is not after `now`.
    pub fn check_valid(&self, now: DateTime<Utc>) -> Result<()> {
        match self.valid_until {
            Some(until) if until <= now => Err(RepoError::Expired {
                file: self.file.clone(),
                valid_until: until.to_rfc2822(),
                now: now.to_rfc2822(),
            }),
            _ => Ok(()),
        }
    }

    /// The SHA256 entry for `path` (relative to the Release directory).
    pub fn entry(&self, path: &str) -> Option<&FileEntry> {
        self.sha256
            .iter()
            .find(|e| e.path.strip_prefix("./").unwrap_or(&e.path) == path)
    }

    /// Locates the `Packages` index for `component` and `arch` (`component` None: a flat
    /// repository, `Packages` next to `Release`), preferring `.xz`, then `.gz`, then plain.
    pub fn packages_index(&self, component: Option<&str>, arch: &str) -> Result<IndexLocation> {
        let dir = match component {
            Some(c) => {
                // Debian's security archive lists "updates/main" for the "main" it serves.
                let listed = |x: &String| {
                    x == c || x.strip_suffix(c).is_some_and(|head| head.ends_with('/'))
                };
                if !self.components.is_empty() && !self.components.iter().any(listed) {
                    return Err(RepoError::NotOffered {
                        file: self.file.clone(),
                        what: format!("component {c}"),
                        listed: format!("Components: {}", self.components.join(" ")),
                    });
                }
                format!("{c}/binary-{arch}/")
            }
            None => String::new(),
        };
        if !self.architectures.is_empty() && !self.architectures.iter().any(|a| a == arch) {
            return Err(RepoError::NotOffered {
                file: self.file.clone(),
                what: format!("architecture {arch}"),
                listed: format!("Architectures: {}", self.architectures.join(" ")),
            });
        }
        let candidates = [
            ("Packages.xz", Compression::Xz),
            ("Packages.gz", Compression::Gzip),
            ("Packages", Compression::None),
        ];
        for (name, compression) in candidates {
            let path = format!("{dir}{name}");
            if let Some(entry) = self.entry(&path) {
                let fetch_path = if self.acquire_by_hash {
                    format!("{dir}by-hash/SHA256/{}", entry.sha256)
                } else {
                    path.clone()
                };
                return Ok(IndexLocation {
                    path,
                    fetch_path,
                    size: entry.size,
                    sha256: entry.sha256.clone(),
                    compression,
                });
            }
        }
        Err(RepoError::MissingIndex {
            file: self.file.clone(),
            what: match component {
                Some(c) => format!("component {c}, architecture {arch}"),
                None => format!("the flat repository, architecture {arch}"),
            },
            tried: candidates
                .iter()
                .map(|(n, _)| format!("{dir}{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Compression of an index or archive member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
        })
    }
}

/// Where a `Packages` index is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLocation {
    /// The path `Release` lists, relative to the Release directory.
    pub path: String,
    /// The path to download (the by-hash path when the repository offers it).
    pub fetch_path: String,
    pub size: u64,
    pub sha256: String,
    pub compression: Compression,
}

impl IndexLocation {
    /// Checks `bytes` against this entry and decompresses them.
    pub fn open(&self, bytes: &[u8], file: &str) -> Result<Vec<u8>> {
        let out = self.stream(bytes, file, |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        });
        match out {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(source)) | Err(StreamError::Read(source)) => Err(RepoError::Decompress {
                file: file.to_string(),
                compression: self.compression,
                source,
            }),
            Err(StreamError::Repo(e)) => Err(e),
        }
    }

    /// Reads the index from `source` (the file `Release` lists, as fetched),
    /// decompressing it as it goes, and gives the decompressed text to
    /// `parse`, which should read it to the end. The rest of `source` is
    /// read even when `parse` stops early, then its size and SHA256 are
    /// checked: when they do not match (or when decompression failed), that
    /// is the error, whatever `parse` returned, so nothing read from a file
    /// that is not the one `Release` lists is ever used. The errors are
    /// those of [`IndexLocation::open`]: an error reading `source` first,
    /// then the size, the SHA256, decompression.
    pub fn stream<R: Read + Send, T>(
        &self,
        source: R,
        file: &str,
        parse: impl FnOnce(&mut dyn std::io::BufRead) -> T,
    ) -> Result<T, StreamError> {
        let mut hashed = Hashed {
            inner: source,
            hasher: Sha256::new(),
            size: 0,
            error: None,
        };
        let compression = self.compression;
        // Decompression runs on its own thread, a few chunks ahead of the
        // parser: the two take about the same time on a large index.
        let (out, failed) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD_CHUNKS);
            let hashed = &mut hashed;
            let decoding = scope.spawn(move || {
                let decoder: Box<dyn Read + '_> = match compression {
                    Compression::None => Box::new(hashed),
                    Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(hashed)),
                    Compression::Xz => nodeimg_image::limits::xz_decoder(hashed),
                };
                let mut limited = Limited {
                    inner: decoder,
                    left: match compression {
                        Compression::None => u64::MAX,
                        _ => MAX_INDEX_SIZE,
                    },
                    error: None,
                };
                read_ahead(&mut limited, &tx);
                limited.error
            });
            let mut chunks = Chunks {
                rx,
                chunk: Vec::new(),
                at: 0,
            };
            let out = parse(&mut std::io::BufReader::with_capacity(
                64 * 1024,
                &mut chunks,
            ));
            // The decoder stops at its next chunk when the parser stopped
            // early.
            drop(chunks);
            let failed = decoding.join().unwrap_or_else(|_| {
                Some(std::io::Error::other(
                    "the decompressor stopped unexpectedly",
                ))
            });
            (out, failed)
        });
        if hashed.error.is_none() {
            // An error is kept in `hashed.error`.
            let _ = std::io::copy(&mut hashed, &mut std::io::sink());
        }
        if let Some(e) = hashed.error {
            return Err(StreamError::Read(e));
        }
        if hashed.size != self.size {
            return Err(StreamError::Repo(RepoError::SizeMismatch {
                file: file.to_string(),
                expected: self.size,
                actual: hashed.size,
            }));
        }
        let hash = hex::encode(hashed.hasher.finalize());
        if !hash.eq_ignore_ascii_case(&self.sha256) {
            return Err(StreamError::Repo(RepoError::HashMismatch {
                file: file.to_string(),
                expected: self.sha256.to_ascii_lowercase(),
                actual: hash,
            }));
        }
        if let Some(source) = failed {
            return Err(StreamError::Repo(RepoError::Decompress {
                file: file.to_string(),
                compression: self.compression,
                source,
            }));
        }
        Ok(out)
    }
}

/// Why [`IndexLocation::stream`] refused an index.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The source could not be read.
    #[error("{0}")]
    Read(std::io::Error),
    /// The file is not the one `Release` lists, or does not decompress.
    #[error(transparent)]
    Repo(RepoError),
}

/// How many decompressed chunks (of [`CHUNK`] bytes) the decompressor of
/// [`IndexLocation::stream`] may be ahead of the parser.
const AHEAD_CHUNKS: usize = 8;
const CHUNK: usize = 256 * 1024;

/// Sends what `r` reads, in chunks, until its end, an error (sent too) or
/// the receiver is gone.
fn read_ahead(r: &mut dyn Read, tx: &std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        let result = loop {
            match r.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let last = filled < CHUNK || result.is_err();
        if filled > 0 && tx.send(Ok(chunk)).is_err() {
            return;
        }
        if let Err(e) = result {
            let _ = tx.send(Err(e));
            return;
        }
        if last {
            return;
        }
    }
}

/// The reading end of [`read_ahead`].
struct Chunks {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The decompressor is done.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Counts and hashes what passes through; keeps the first read error.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    error: Option<std::io::Error>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("the index could not be read"));
        }
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.hasher.update(&buf[..n]);
                    self.size += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    self.error = Some(e);
                    return Err(copy);
                }
            }
        }
    }
}

/// Stops after `left` bytes and keeps the first error; the reader is
/// given its text.
struct Limited<R> {
    inner: R,
    left: u64,
    error: Option<std::io::Error>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(std::io::Error::other(e.to_string()));
        }
        let error = match self.inner.read(buf) {
            Ok(n) if n as u64 <= self.left => {
                self.left -= n as u64;
                return Ok(n);
            }
            Ok(_) => too_large(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(e),
            Err(e) => e,
        };
        let copy = std::io::Error::other(error.to_string());
        self.error = Some(error);
        Err(copy)
    }
}

/// A decompressed index over [`MAX_INDEX_SIZE`].
fn too_large() -> std::io::Error {
    std::io::Error::other(format!("larger than {MAX_INDEX_SIZE} bytes"))
}

/// Checks the size and SHA256 of a downloaded index (the weak MD5/SHA1 lists are never used).
pub fn verify_index(
    bytes: &[u8],
    expected_size: u64,
    expected_sha256: &str,
    file: &str,
) -> Result<()> {
    let actual = bytes.len() as u64;
    if actual != expected_size {
        return Err(RepoError::SizeMismatch {
            file: file.to_string(),
            expected: expected_size,
            actual,
        });
    }
    let hash = nodeimg_fetch::sha256_hex(bytes);
    if !hash.eq_ignore_ascii_case(expected_sha256) {
        return Err(RepoError::HashMismatch {
            file: file.to_string(),
            expected: expected_sha256.to_ascii_lowercase(),
            actual: hash,
        });
    }
    Ok(())
}

/// Decompresses an index, refusing results larger than [`MAX_INDEX_SIZE`].
pub fn decompress(bytes: &[u8], compression: Compression, file: &str) -> Result<Vec<u8>> {
    let err = |source: std::io::Error| RepoError::Decompress {
        file: file.to_string(),
        compression,
        source,
    };
    let reader: Box<dyn Read + '_> = match compression {
        Compression::None => return Ok(bytes.to_vec()),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        Compression::Xz => nodeimg_image::limits::xz_decoder(bytes),
    };
    let mut out = Vec::new();
    reader
        .take(MAX_INDEX_SIZE + 1)
        .read_to_end(&mut out)
        .map_err(err)?;
    if out.len() as u64 > MAX_INDEX_SIZE {
        return Err(err(too_large()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    fn at(s: &str) -> DateTime<Utc> {
        parse_date(s).unwrap()
    }

    const PACKAGES: &str = "Package: containerd.io\nVersion: 1.2.13-2\nArchitecture: amd64\n\
        Filename: pool/main/c/containerd.io/containerd.io_1.2.13-2_amd64.deb\nSize: 10\n\
        SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n";

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut w = liblzma::write::XzEncoder::new(Vec::new(), 6);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn line(path: &str, data: &[u8]) -> String {
        format!(
            " {} {} {path}\n",
            hex::encode(Sha256::digest(data)),
            data.len()
        )
    }

    fn release_text() -> String {
        let plain = PACKAGES.as_bytes();
        let mut s = String::from(
            "Origin: Test Origin\nLabel: Test\nSuite: stable\nCodename: focal\nVersion: 20.04\n\
             Date: Wed, 01 Jan 2025 00:00:00 UTC\nValid-Until: Tue, 01 Jan 2030 00:00:00 UTC\n\
             Architectures: amd64 arm64\nComponents: main\nAcquire-By-Hash: yes\n\
             Description: test repository\nMD5Sum:\n 00000000000000000000000000000000 1 main/binary-amd64/Packages\nSHA256:\n",
        );
        s.push_str(&line("main/binary-amd64/Packages", plain));
        s.push_str(&line("main/binary-amd64/Packages.gz", &gz(plain)));
        s.push_str(&line("main/binary-amd64/Packages.xz", &xz(plain)));
        s.push_str(&line("main/binary-arm64/Packages", b""));
        s
    }

    struct Fixtures {
        keyring_a_armored: Vec<u8>,
        keyring_a_binary: Vec<u8>,
        keyring_b: Vec<u8>,
        fpr_a: String,
        fpr_b: String,
        release: Vec<u8>,
        inrelease_a: Vec<u8>,
        detached_a: Vec<u8>,
        detached_a_armored: Vec<u8>,
        inrelease_b: Vec<u8>,
        inrelease_b_sha1: Option<Vec<u8>>,
        inrelease_no_sha256: Vec<u8>,
        inrelease_a_and_b: Vec<u8>,
        keyring_c: Vec<u8>,
        inrelease_c_expired_key: Vec<u8>,
    }

    fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn fingerprint(home: &Path, uid: &str) -> String {
        let out = gpg(home, &["--with-colons", "--list-keys", uid]);
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    }

    fn sign(
        home: &Path,
        dir: &Path,
        key: &str,
        digest: &str,
        mode: &str,
        text: &[u8],
    ) -> Option<Vec<u8>> {
        let input = dir.join("in");
        let output = dir.join("out");
        std::fs::write(&input, text).unwrap();
        let _ = std::fs::remove_file(&output);
        let mut args = vec!["--local-user", key, "--digest-algo", digest];
        args.extend(mode.split(' '));
        let out_s = output.to_str().unwrap().to_string();
        let in_s = input.to_str().unwrap().to_string();
        args.extend(["-o", &out_s, &in_s]);
        let status = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(&args)
            .output()
            .unwrap();
        if !status.status.success() {
            return None;
        }
        Some(std::fs::read(&output).unwrap())
    }

    /// Keys and signed files made with the real gpg, once per test run; None without gpg.
    fn fixtures() -> Option<&'static Fixtures> {
        static F: OnceLock<Option<Fixtures>> = OnceLock::new();
        F.get_or_init(|| {
            if Command::new("gpg").arg("--version").output().is_err() {
                eprintln!("gpg not found: skipping signature tests");
                return None;
            }
            let tmp = tempfile::tempdir().unwrap();
            let home = tmp.path().join("gnupg");
            std::fs::create_dir(&home).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            // Key A: an ed25519 certification-only primary with an ed25519 signing subkey.
            gpg(&home, &["--quick-gen-key", "Repo A <a@example.invalid>", "ed25519", "cert", "never"]);
            let fpr_a = fingerprint(&home, "a@example.invalid");
            gpg(&home, &["--quick-add-key", &fpr_a, "ed25519", "sign", "never"]);
            // Key B: an RSA primary that signs itself.
            gpg(&home, &["--quick-gen-key", "Repo B <b@example.invalid>", "rsa2048", "sign,cert", "never"]);
            let fpr_b = fingerprint(&home, "b@example.invalid");
            // Key C: expires one day after it is made.
            gpg(&home, &["--quick-gen-key", "Repo C <c@example.invalid>", "ed25519", "sign,cert", "1d"]);
            let fpr_c = fingerprint(&home, "c@example.invalid");
            let release = release_text().into_bytes();
            let no_sha = b"Suite: stable\nMD5Sum:\n 00000000000000000000000000000000 1 main/binary-amd64/Packages\n".to_vec();
            let dir = tmp.path();
            let f = Fixtures {
                keyring_a_armored: gpg(&home, &["--armor", "--export", &fpr_a]),
                keyring_a_binary: gpg(&home, &["--export", &fpr_a]),
                keyring_b: gpg(&home, &["--armor", "--export", &fpr_b]),
                inrelease_a: sign(&home, dir, &fpr_a, "SHA256", "--clearsign", &release).unwrap(),
                detached_a: sign(&home, dir, &fpr_a, "SHA512", "--detach-sign", &release).unwrap(),
                detached_a_armored: sign(&home, dir, &fpr_a, "SHA256", "--armor --detach-sign", &release).unwrap(),
                inrelease_b: sign(&home, dir, &fpr_b, "SHA256", "--clearsign", &release).unwrap(),
                inrelease_b_sha1: sign(&home, dir, &format!("{fpr_b}!"), "SHA1", "--clearsign", &release),
                inrelease_no_sha256: sign(&home, dir, &fpr_a, "SHA256", "--clearsign", &no_sha).unwrap(),
                inrelease_a_and_b: sign(&home, dir, &fpr_b, "SHA256", &format!("--local-user {fpr_a} --clearsign"), &release).unwrap(),
                keyring_c: gpg(&home, &["--export", &fpr_c]),
                inrelease_c_expired_key: sign(&home, dir, &fpr_c, "SHA256", "--clearsign", &release).unwrap(),
                release,
                fpr_a,
                fpr_b,
            };
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", &home)
                .args(["--kill", "gpg-agent"])
                .output();
            Some(f)
        })
        .as_ref()
    }

    macro_rules! need_gpg {
        () => {
            match fixtures() {
                Some(f) => f,
                None => {
                    eprintln!("gpg not found: test skipped");
                    return;
                }
            }
        };
    }

    fn now() -> DateTime<Utc> {
        at("Sun, 01 Jun 2025 12:00:00 UTC")
    }

    #[test]
    fn inrelease_signed_by_subkey_verifies_and_parses() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        assert_eq!(ring.fingerprints(), vec![f.fpr_a.clone()]);
        let r = verify_inrelease(
            &f.inrelease_a,
            &ring,
            now(),
            "http://r/dists/stable/InRelease",
        )
        .unwrap();
        assert_eq!(r.text.as_bytes(), &f.release[..]);
        assert_eq!(r.signed_by.as_deref(), Some(f.fpr_a.as_str()));
        assert_eq!(r.origin.as_deref(), Some("Test Origin"));
        assert_eq!(r.suite.as_deref(), Some("stable"));
        assert_eq!(r.codename.as_deref(), Some("focal"));
        assert_eq!(r.date, Some(at("Wed, 01 Jan 2025 00:00:00 +0000")));
        assert_eq!(r.valid_until, Some(at("Tue, 01 Jan 2030 00:00:00 GMT")));
        assert_eq!(r.architectures, vec!["amd64", "arm64"]);
        assert_eq!(r.components, vec!["main"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 4);
        assert_eq!(r.sha256[0].path, "main/binary-amd64/Packages");
        assert_eq!(r.sha256[0].size, PACKAGES.len() as u64);
        assert_eq!(r.sha256[0].sha256, hex::encode(Sha256::digest(PACKAGES)));
    }

    #[test]
    fn detached_signatures_binary_and_armored_verify() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_binary, "a.gpg").unwrap();
        let r = verify_detached(
            &f.release,
            &f.detached_a,
            &ring,
            now(),
            "file:///r/Release",
            Freshness::Checked,
        )
        .unwrap();
        assert_eq!(r.suite.as_deref(), Some("stable"));
        let r = verify_detached(
            &f.release,
            &f.detached_a_armored,
            &ring,
            now(),
            "file:///r/Release",
            Freshness::Checked,
        )
        .unwrap();
        assert_eq!(r.text.as_bytes(), &f.release[..]);
    }

    #[test]
    fn one_good_signature_among_several_is_enough() {
        let f = need_gpg!();
        // Several armored blocks in one file form one keyring.
        let mut both = f.keyring_b.clone();
        both.extend_from_slice(&f.keyring_a_armored);
        let ring = Keyring::from_bytes(&both, "both.asc").unwrap();
        assert_eq!(ring.fingerprints(), vec![f.fpr_b.clone(), f.fpr_a.clone()]);
        assert!(verify_inrelease(&f.inrelease_a, &ring, now(), "InRelease").is_ok());
        let text = String::from_utf8(f.inrelease_a_and_b.clone()).unwrap();
        assert_eq!(text.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
        for ring in [&f.keyring_a_armored, &f.keyring_b] {
            let ring = Keyring::from_bytes(ring, "k").unwrap();
            let r = verify_inrelease(&f.inrelease_a_and_b, &ring, now(), "InRelease").unwrap();
            assert_eq!(
                r.signed_by.as_deref(),
                Some(ring.fingerprints()[0].as_str())
            );
        }
    }

    #[test]
    fn signature_by_an_expired_key_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_c, "c.gpg").unwrap();
        // Before expiry (the key was made today, so "now" is the real clock here).
        assert!(
            verify_inrelease(&f.inrelease_c_expired_key, &ring, Utc::now(), "InRelease").is_ok()
        );
        let later = Utc::now() + chrono::Duration::days(2);
        let err =
            verify_inrelease(&f.inrelease_c_expired_key, &ring, later, "InRelease").unwrap_err();
        assert!(
            matches!(err, RepoError::Signature(SignatureError::KeyExpired { .. })),
            "{err}"
        );
    }

    #[test]
    fn unsigned_release_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        let err = verify_inrelease(&f.release, &ring, now(), "http://r/InRelease").unwrap_err();
        assert!(
            matches!(err, RepoError::Signature(SignatureError::Unsigned { .. })),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("http://r/InRelease: not signed"),
            "{err}"
        );
        let err = verify_detached(
            &f.release,
            b"",
            &ring,
            now(),
            "http://r/Release",
            Freshness::Checked,
        )
        .unwrap_err();
        assert!(
            matches!(err, RepoError::Signature(SignatureError::Unsigned { ref file, .. }) if file == "http://r/Release.gpg"),
            "{err}"
        );
        // A clearsigned header with the signature block cut off.
        let text = String::from_utf8(f.inrelease_a.clone()).unwrap();
        let cut = &text[..text.find("-----BEGIN PGP SIGNATURE-----").unwrap()];
        let err = verify_inrelease(cut.as_bytes(), &ring, now(), "InRelease").unwrap_err();
        assert!(
            matches!(err, RepoError::Signature(SignatureError::Unsigned { .. })),
            "{err}"
        );
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        let err = verify_inrelease(&f.inrelease_b, &ring, now(), "InRelease").unwrap_err();
        match &err {
            RepoError::Signature(SignatureError::WrongKey {
                issuers,
                keys,
                keyring,
                ..
            }) => {
                assert!(issuers.contains(&f.fpr_b), "{issuers}");
                assert_eq!(keys, &f.fpr_a);
                assert_eq!(keyring, "a.asc");
            }
            other => panic!("{other}"),
        }
        // And the other way round: B's keyring does not accept A's subkey signature.
        let ring_b = Keyring::from_bytes(&f.keyring_b, "b.asc").unwrap();
        let err = verify_inrelease(&f.inrelease_a, &ring_b, now(), "InRelease").unwrap_err();
        assert!(
            matches!(err, RepoError::Signature(SignatureError::WrongKey { .. })),
            "{err}"
        );
        assert!(verify_inrelease(&f.inrelease_b, &ring_b, now(), "InRelease").is_ok());
    }

    #[test]
    fn tampered_release_text_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        let text = String::from_utf8(f.inrelease_a.clone()).unwrap();
        let tampered = text.replace("Suite: stable", "Suite: stabl3");
        assert_ne!(tampered, text);
        let err = verify_inrelease(tampered.as_bytes(), &ring, now(), "InRelease").unwrap_err();
        assert!(
            matches!(
                err,
                RepoError::Signature(SignatureError::BadSignature { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("does not verify"), "{err}");
        let mut release = f.release.clone();
        release[0] = b'o';
        let err = verify_detached(
            &release,
            &f.detached_a,
            &ring,
            now(),
            "Release",
            Freshness::Checked,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RepoError::Signature(SignatureError::BadSignature { .. })
            ),
            "{err}"
        );
        // Text before the signed block is refused rather than ignored.
        let mut prefixed = b"Suite: evil\n\n".to_vec();
        prefixed.extend_from_slice(&f.inrelease_a);
        assert!(verify_inrelease(&prefixed, &ring, now(), "InRelease").is_err());
    }

    #[test]
    fn expired_valid_until_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        let later = at("Tue, 01 Jan 2030 00:00:01 UTC");
        let err = verify_inrelease(&f.inrelease_a, &ring, later, "http://r/InRelease").unwrap_err();
        match &err {
            RepoError::Expired {
                file, valid_until, ..
            } => {
                assert_eq!(file, "http://r/InRelease");
                assert_eq!(valid_until, "Tue, 1 Jan 2030 00:00:00 +0000");
            }
            other => panic!("{other}"),
        }
        let err = verify_detached(
            &f.release,
            &f.detached_a,
            &ring,
            later,
            "Release",
            Freshness::Checked,
        )
        .unwrap_err();
        assert!(matches!(err, RepoError::Expired { .. }), "{err}");
        // Check-Valid-Until: no takes the same metadata; the signature is
        // still checked.
        let r = verify_inrelease_with(
            &f.inrelease_a,
            &ring,
            later,
            "http://r/InRelease",
            Freshness::NotChecked,
        )
        .unwrap();
        assert_eq!(r.suite.as_deref(), Some("stable"));
        verify_detached(
            &f.release,
            &f.detached_a,
            &ring,
            later,
            "Release",
            Freshness::NotChecked,
        )
        .unwrap();
        let other = Keyring::from_bytes(&f.keyring_b, "b.asc").unwrap();
        assert!(verify_inrelease_with(
            &f.inrelease_a,
            &other,
            later,
            "http://r/InRelease",
            Freshness::NotChecked,
        )
        .is_err());
    }

    #[test]
    fn weak_digest_is_refused() {
        let f = need_gpg!();
        let Some(sha1) = &f.inrelease_b_sha1 else {
            eprintln!("gpg refused to make a SHA1 signature: test skipped");
            return;
        };
        let ring = Keyring::from_bytes(&f.keyring_b, "b.asc").unwrap();
        let err = verify_inrelease(sha1, &ring, now(), "InRelease").unwrap_err();
        match &err {
            RepoError::Signature(SignatureError::WeakDigest { algorithm, key, .. }) => {
                assert_eq!(algorithm, "SHA1");
                assert_eq!(key, &f.fpr_b);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn release_without_sha256_is_refused() {
        let f = need_gpg!();
        let ring = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
        let err = verify_inrelease(&f.inrelease_no_sha256, &ring, now(), "InRelease").unwrap_err();
        assert!(matches!(err, RepoError::NoSha256 { .. }), "{err}");
    }

    #[test]
    fn bad_keyrings_are_refused() {
        let err = Keyring::from_bytes(b"not a key", "junk.gpg").unwrap_err();
        assert!(err.to_string().starts_with("keyring junk.gpg:"), "{err}");
        let err = Keyring::from_bytes(b"", "empty.gpg").unwrap_err();
        assert!(matches!(err, SignatureError::Keyring { .. }), "{err}");
    }

    #[test]
    fn packages_index_prefers_xz_and_by_hash() {
        let r = Release::parse(&release_text(), "InRelease", None).unwrap();
        let loc = r.packages_index(Some("main"), "amd64").unwrap();
        let compressed = xz(PACKAGES.as_bytes());
        assert_eq!(loc.path, "main/binary-amd64/Packages.xz");
        assert_eq!(
            loc.fetch_path,
            format!(
                "main/binary-amd64/by-hash/SHA256/{}",
                hex::encode(Sha256::digest(&compressed))
            )
        );
        assert_eq!(loc.compression, Compression::Xz);
        assert_eq!(loc.size, compressed.len() as u64);
        assert_eq!(
            loc.open(&compressed, "Packages.xz").unwrap(),
            PACKAGES.as_bytes()
        );
        // arm64 only has the plain file.
        let arm = r.packages_index(Some("main"), "arm64").unwrap();
        assert_eq!(arm.compression, Compression::None);
        assert_eq!(arm.path, "main/binary-arm64/Packages");
    }

    #[test]
    fn tampered_packages_is_refused() {
        let r = Release::parse(&release_text(), "InRelease", None).unwrap();
        let loc = r.packages_index(Some("main"), "amd64").unwrap();
        let mut compressed = xz(PACKAGES.as_bytes());
        let last = compressed.len() - 20;
        compressed[last] ^= 1;
        let err = loc.open(&compressed, "http://r/Packages.xz").unwrap_err();
        assert!(matches!(err, RepoError::HashMismatch { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("http://r/Packages.xz: SHA256 is "),
            "{err}"
        );
        compressed.push(0);
        let err = loc.open(&compressed, "Packages.xz").unwrap_err();
        match err {
            RepoError::SizeMismatch {
                expected, actual, ..
            } => assert_eq!(actual, expected + 1),
            other => panic!("{other}"),
        }
    }

    fn location(bytes: &[u8], compression: Compression) -> IndexLocation {
        IndexLocation {
            path: "Packages".into(),
            fetch_path: "Packages".into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            compression,
        }
    }

    fn read_all(r: &mut dyn std::io::BufRead) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn stream_verifies_and_decompresses_each_compression() {
        let plain = PACKAGES.as_bytes();
        for (bytes, compression) in [
            (plain.to_vec(), Compression::None),
            (gz(plain), Compression::Gzip),
            (xz(plain), Compression::Xz),
        ] {
            let loc = location(&bytes, compression);
            let out = loc.stream(&bytes[..], "P", read_all).unwrap().unwrap();
            assert_eq!(out, plain, "{compression}");
            // A parser that stops early still has the whole file verified.
            let first = loc
                .stream(&bytes[..], "P", |r| {
                    let mut l = String::new();
                    r.read_line(&mut l).map(|_| l)
                })
                .unwrap()
                .unwrap();
            assert_eq!(first, "Package: containerd.io\n");
        }
    }

    #[test]
    fn stream_refuses_a_mismatching_index_whatever_the_parser_read() {
        let plain = PACKAGES.as_bytes();
        let compressed = xz(plain);
        let loc = location(&compressed, Compression::Xz);
        // Same size, one byte changed in the xz payload: the SHA256 is the
        // error, not the decompression error it also causes.
        let mut tampered = compressed.clone();
        let at = tampered.len() - 20;
        tampered[at] ^= 1;
        let err = loc
            .stream(&tampered[..], "http://r/Packages.xz", read_all)
            .unwrap_err();
        match err {
            StreamError::Repo(RepoError::HashMismatch {
                file,
                expected,
                actual,
            }) => {
                assert_eq!(file, "http://r/Packages.xz");
                assert_eq!(expected, loc.sha256);
                assert_eq!(actual, hex::encode(Sha256::digest(&tampered)));
            }
            other => panic!("{other}"),
        }
        // A plain index whose text decodes fine but is not the listed one.
        let other = PACKAGES.replace("1.2.13-2", "1.2.13-3");
        let loc = location(plain, Compression::None);
        let mut seen = Vec::new();
        let err = loc
            .stream(other.as_bytes(), "Packages", |r| {
                seen = read_all(r).unwrap();
            })
            .unwrap_err();
        assert!(
            matches!(err, StreamError::Repo(RepoError::HashMismatch { .. })),
            "{err}"
        );
        assert_eq!(seen, other.as_bytes());
        // Trailing bytes the decoder never needs are still counted.
        let mut longer = compressed.clone();
        longer.extend_from_slice(b"xx");
        let loc = location(&compressed, Compression::Xz);
        match loc.stream(&longer[..], "P", |_| ()).unwrap_err() {
            StreamError::Repo(RepoError::SizeMismatch {
                expected, actual, ..
            }) => assert_eq!(actual, expected + 2),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn stream_reports_decompression_and_read_errors() {
        // Listed as xz, but plain text: it matches Release, it does not decompress.
        let plain = PACKAGES.as_bytes();
        let loc = location(plain, Compression::Xz);
        let err = loc.stream(plain, "P.xz", read_all).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("P.xz: cannot decompress (xz): "),
            "{err}"
        );
        assert_eq!(
            loc.open(plain, "P.xz").unwrap_err().to_string(),
            err.to_string()
        );
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let err = loc.stream(Failing, "P.xz", read_all).unwrap_err();
        match err {
            StreamError::Read(e) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_decompression_failure_keeps_the_io_error_as_its_source() {
        use std::error::Error as _;
        let plain = PACKAGES.as_bytes();
        let loc = location(plain, Compression::Gzip);
        let streamed = match loc.stream(plain, "P.gz", read_all).unwrap_err() {
            StreamError::Repo(e) => e,
            other => panic!("{other}"),
        };
        let decompressed = decompress(plain, Compression::Gzip, "P.gz").unwrap_err();
        let opened = loc.open(plain, "P.gz").unwrap_err();
        for err in [&streamed, &decompressed, &opened] {
            assert!(matches!(err, RepoError::Decompress { .. }), "{err}");
            let source = err.source().expect("a cause");
            let io = source
                .downcast_ref::<std::io::Error>()
                .expect("the io::Error");
            assert_eq!(
                err.to_string(),
                format!("P.gz: cannot decompress (gzip): {io}")
            );
        }
        assert_eq!(streamed.to_string(), decompressed.to_string());
    }

    #[test]
    fn a_malformed_paragraph_names_its_line_and_fault() {
        let cases = [
            (
                "A: 1\n\nB: 2\n",
                FieldError::Paragraphs { line: 2 },
                "line 2: more than one paragraph",
            ),
            (
                " x\n",
                FieldError::Continuation { line: 1 },
                "line 1: continuation line before any field",
            ),
            (
                "A: 1\nB\n",
                FieldError::NoColon {
                    line: 2,
                    text: "B".into(),
                },
                "line 2: expected \"Field: value\", got \"B\"",
            ),
            (
                "A B: 1\n",
                FieldError::BadName {
                    line: 1,
                    name: "A B".into(),
                },
                "line 1: bad field name \"A B\"",
            ),
            (
                "A: 1\na: 2\n",
                FieldError::Twice {
                    line: 2,
                    name: "a".into(),
                },
                "line 2: field a appears twice",
            ),
        ];
        for (text, want, message) in cases {
            let e = parse_fields(text).unwrap_err();
            assert_eq!(e.line(), want.line());
            assert_eq!(e, want, "{text:?}");
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn flat_repository_and_missing_indexes() {
        let plain = PACKAGES.as_bytes();
        let text = format!(
            "Date: Wed, 01 Jan 2025 00:00:00 UTC\nSHA256:\n{}{}",
            line("./Packages", plain),
            line("Packages.gz", &gz(plain))
        );
        let r = Release::parse(&text, "flat/Release", None).unwrap();
        assert!(!r.acquire_by_hash);
        let loc = r.packages_index(None, "arm64").unwrap();
        assert_eq!(loc.path, "Packages.gz");
        assert_eq!(loc.fetch_path, "Packages.gz");
        assert_eq!(loc.compression, Compression::Gzip);
        assert_eq!(loc.open(&gz(plain), "Packages.gz").unwrap(), plain);
        let err = r.packages_index(Some("main"), "amd64").unwrap_err();
        assert!(matches!(err, RepoError::MissingIndex { .. }), "{err}");

        let full = Release::parse(&release_text(), "InRelease", None).unwrap();
        let err = full.packages_index(Some("main"), "armhf").unwrap_err();
        assert_eq!(
            err.to_string(),
            "InRelease: architecture armhf is not offered (Release lists Architectures: amd64 arm64)"
        );
        let err = full.packages_index(Some("contrib"), "amd64").unwrap_err();
        assert!(matches!(err, RepoError::NotOffered { .. }), "{err}");
    }

    #[test]
    fn malformed_release_is_refused() {
        let err = Release::parse("Suite stable\n", "R", None).unwrap_err();
        assert!(
            matches!(
                &err,
                RepoError::Fields {
                    source: FieldError::NoColon { line: 1, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "R: malformed Release: line 1: expected \"Field: value\", got \"Suite stable\""
        );
        let err = Release::parse("SHA256:\n abc 1 Packages\n", "R", None).unwrap_err();
        assert!(err.to_string().contains("bad hash"), "{err}");
        let bad_date = format!("Valid-Until: someday\nSHA256:\n{}", line("Packages", b""));
        let err = Release::parse(&bad_date, "R", None).unwrap_err();
        assert!(err.to_string().contains("Valid-Until"), "{err}");
        let err = Release::parse("Suite: a\n", "R", None).unwrap_err();
        assert!(matches!(err, RepoError::NoSha256 { .. }), "{err}");
    }

    /// The machine's own apt metadata and Debian archive keyring, when present.
    #[test]
    fn real_debian_inrelease_verifies_with_the_archive_keyring() {
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let lists = Path::new("/var/lib/apt/lists");
        let (Ok(key_bytes), Ok(dir)) = (std::fs::read(keyring), std::fs::read_dir(lists)) else {
            eprintln!("no Debian archive keyring or apt lists: test skipped");
            return;
        };
        let ring = Keyring::from_bytes(&key_bytes, "debian-archive-keyring.gpg").unwrap();
        let mut names: Vec<_> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("_InRelease"))
            .collect();
        names.sort();
        if names.is_empty() {
            eprintln!("no InRelease in /var/lib/apt/lists: test skipped");
        }
        for path in names {
            let bytes = std::fs::read(&path).unwrap();
            let file = path.display().to_string();
            // "now" is the publication date, so the test does not depend on the clock.
            let body = String::from_utf8_lossy(&bytes).into_owned();
            let date = body
                .lines()
                .find_map(|l| l.strip_prefix("Date: "))
                .and_then(parse_date)
                .unwrap();
            let r = verify_inrelease(&bytes, &ring, date, &file).unwrap();
            assert!(r.signed_by.is_some());
            assert!(!r.sha256.is_empty());
            let loc = r.packages_index(Some("main"), "amd64").unwrap();
            assert!(
                loc.path.starts_with("main/binary-amd64/Packages"),
                "{}",
                loc.path
            );
            assert!(r.acquire_by_hash == loc.fetch_path.contains("/by-hash/SHA256/"));
            // The same file does not verify with an unrelated key.
            if let Some(f) = fixtures() {
                let other = Keyring::from_bytes(&f.keyring_a_armored, "a.asc").unwrap();
                let err = verify_inrelease(&bytes, &other, date, &file).unwrap_err();
                assert!(
                    matches!(err, RepoError::Signature(SignatureError::WrongKey { .. })),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn repository_urls() {
        let u = "https://download.docker.com/linux/ubuntu/";
        assert_eq!(
            release_dir_url(u, "focal"),
            "https://download.docker.com/linux/ubuntu/dists/focal/"
        );
        assert_eq!(
            package_url(u, "focal", "pool/stable/amd64/containerd.io_1.2.13-2_amd64.deb"),
            "https://download.docker.com/linux/ubuntu/pool/stable/amd64/containerd.io_1.2.13-2_amd64.deb"
        );
        let k = "http://repo.example/kubic/stable";
        assert!(is_flat("xUbuntu_20.04/"));
        assert_eq!(
            release_dir_url(k, "xUbuntu_20.04/"),
            "http://repo.example/kubic/stable/xUbuntu_20.04/"
        );
        assert_eq!(
            package_url(k, "xUbuntu_20.04/", "./amd64/cri-o_1.18.0~0_amd64.deb"),
            "http://repo.example/kubic/stable/xUbuntu_20.04/amd64/cri-o_1.18.0~0_amd64.deb"
        );
        assert_eq!(release_dir_url("file:///srv/r", "/"), "file:///srv/r/");
        assert_eq!(release_dir_url("file:///srv/r", "./"), "file:///srv/r/");
    }

    #[test]
    fn dates_in_apt_forms_parse() {
        let a = parse_date("Sat, 09 Nov 2024 10:00:00 UTC").unwrap();
        assert_eq!(a.to_rfc3339(), "2024-11-09T10:00:00+00:00");
        assert_eq!(parse_date("Sat, 09 Nov 2024 11:00:00 +0100"), Some(a));
        assert_eq!(parse_date("Sat, 09 Nov 2024 10:00:00 GMT"), Some(a));
        assert_eq!(parse_date("2024-11-09"), None);
    }
}
