//! Registries: pulling a base image (`docker://HOST/REPO:TAG` or
//! `@sha256:...`) into the content-addressed cache, and pushing an image
//! (OCI layout or OCI archive) to a registry.
//!
//! The protocol is spoken by `oci-client` on a current-thread tokio runtime
//! that lives as long as one [`Session`], except manifests, which are fetched
//! with its credentials over a plain HTTP client so that their size can be
//! bounded while reading. Every blob is streamed (never held
//! in memory) and checked against its digest; answers from a registry are
//! input like any other: wrong digests, bad JSON and absurd sizes are errors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use ocidir::oci_spec::image::{Descriptor, ImageIndex};
use ocidir::{OciArchive, OciDir, OciRead};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use nodeimg_fetch::cachefile::{self, CachedFile, CachedReader, Entry};
use nodeimg_fetch::policy::{self, HttpPolicy};
use nodeimg_fetch::progress::Transfer;
use nodeimg_fetch::{sha256_digest, Meter};

/// The prefix of a registry reference.
pub use nodeimg_image::base::DOCKER_PREFIX;

mod artifacts;
mod error;
pub use artifacts::{referrers_supported, Manifest, Repository};
pub use error::{
    AuthFileError, CacheMiss, DescriptorError, DigestError, ManifestError, ReferenceError, Refusal,
    RegistryError, Result, UploadError,
};
use error::{IoContext, Retried};
/// Environment variable holding a bearer token for every registry.
pub const TOKEN_ENV: &str = "NODEIMG_REGISTRY_TOKEN";

/// Largest manifest, index or config accepted from a registry.
const JSON_MAX: usize = 16 << 20;
/// Largest blob accepted from a registry (a sanity bound, far above any
/// real layer; a registry claiming more is refused before downloading).
const BLOB_MAX: u64 = 1 << 40;
/// Blobs larger than this are uploaded in chunks.
const CHUNKED_FROM: u64 = 512 << 20;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// `--insecure-registry HOST[:PORT]`: loopback registries spoken to over
    /// plain HTTP.
    pub insecure: Vec<String>,
    /// The cache for pulled images; default
    /// [`nodeimg_fetch::default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Where pulls and pushes show their progress (lines, bars, retries);
    /// [`Meter::quiet`] for none. Warnings (a damaged cache entry) are
    /// written to stderr even then.
    pub meter: Meter,
    /// `--offline`: no network; a base pinned by digest comes from the
    /// cache alone (verified), a tag is refused.
    pub offline: bool,
}

impl Default for RegistryOptions {
    /// No insecure registries, the default cache, online, one line per step
    /// on stderr.
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            cache_dir: None,
            meter: Meter::lines(),
            offline: false,
        }
    }
}

/// Pulls `docker://` bases for [`nodeimg_image::base::Base::open_with`]
/// with these options.
pub struct BasePuller<'a>(pub &'a RegistryOptions);

impl nodeimg_image::base::Puller for BasePuller<'_> {
    fn pull(
        &self,
        reference: &str,
        arch: &str,
    ) -> nodeimg_image::Result<Box<dyn nodeimg_image::base::OciSource + Send + Sync>> {
        Ok(Box::new(pull(reference, arch, self.0)?))
    }
}

impl nodeimg_image::base::OciSource for Pulled {
    fn index(&self) -> std::result::Result<ImageIndex, nodeimg_image::error::SourceError> {
        Ok(self.read_index()?)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> std::result::Result<Box<dyn std::io::Read + Send>, nodeimg_image::error::SourceError> {
        Ok(Box::new(self.read_blob(desc)?))
    }
}

/// Parse `[docker://]HOST[:PORT]/REPO(:TAG|@sha256:...)`.
pub fn parse_reference(s: &str) -> Result<Reference, ReferenceError> {
    let rest = s.strip_prefix(DOCKER_PREFIX).unwrap_or(s);
    if rest.is_empty() {
        return Err(ReferenceError::Empty {
            input: s.to_string(),
        });
    }
    // The registry host is always written: no implicit default registry.
    let first = rest.split('/').next().unwrap_or_default();
    let is_host =
        rest.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !is_host {
        return Err(ReferenceError::NoHost {
            input: s.to_string(),
            rest: rest.to_string(),
        });
    }
    let r: Reference = rest.parse().map_err(|e| ReferenceError::Invalid {
        input: s.to_string(),
        source: e,
    })?;
    if let Some(d) = r.digest() {
        check_digest(d).map_err(|e| ReferenceError::Digest {
            input: s.to_string(),
            source: e,
        })?;
    }
    Ok(r)
}

fn check_digest(d: &str) -> Result<(), DigestError> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(())
        }
        _ => Err(DigestError(d.to_string())),
    }
}

/// A blob about to be fetched: its digest well-formed and its size at most
/// `max` (else the refusal `too_large` makes of the digest and size).
pub(crate) fn check_blob_request(
    what: &str,
    digest: &str,
    size: u64,
    max: u64,
    too_large: fn(String, u64) -> Refusal,
) -> Result<()> {
    check_digest(digest).map_err(|e| RegistryError::Digest {
        what: what.to_string(),
        source: e,
    })?;
    if size > max {
        return Err(RegistryError::refused(
            what,
            too_large(digest.to_string(), size),
        ));
    }
    Ok(())
}

/// A fetched blob: `received` bytes whose digest is `found` must be the
/// `size` bytes of `digest` asked for.
pub(crate) fn check_blob_received(
    what: &str,
    digest: &str,
    size: u64,
    found: String,
    received: u64,
) -> Result<()> {
    if found != digest || received != size {
        return Err(RegistryError::refused(
            what,
            Refusal::BlobMismatch {
                digest: digest.to_string(),
                found,
                received,
                size,
            },
        ));
    }
    Ok(())
}

/// Is `host[:port]` a loopback address (`localhost`, `127.0.0.0/8`, `::1`)?
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host_port,
        }
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Check `--insecure-registry` values: plain HTTP is for loopback test
/// registries only, because anything else would send images and
/// credentials in clear over a network.
pub fn check_insecure(hosts: &[String]) -> Result<()> {
    for h in hosts {
        if h.is_empty() || h.contains('/') {
            return Err(RegistryError::Usage(format!(
                "--insecure-registry {h:?}: give HOST[:PORT], e.g. 127.0.0.1:5000"
            )));
        }
        if !is_loopback(h) {
            return Err(RegistryError::Usage(format!(
                "--insecure-registry {h:?}: plain HTTP is allowed for loopback registries only \
                 (localhost, 127.0.0.1, [::1]); give the registry a TLS certificate instead"
            )));
        }
    }
    Ok(())
}

/// Credentials for `registry`: `$NODEIMG_REGISTRY_TOKEN` (a bearer token),
/// else the first auth file that names the registry: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`.
pub fn auth_for(registry: &str) -> Result<RegistryAuth> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        if !t.trim().is_empty() {
            return Ok(RegistryAuth::Bearer(t.trim().to_string()));
        }
    }
    for file in auth_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(a) =
            auth_in(&text, registry).map_err(|e| RegistryError::AuthFile { file, source: e })?
        {
            return Ok(a);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(p) = std::env::var_os("HOME") {
        v.push(PathBuf::from(p).join(".docker/config.json"));
    }
    v
}

/// The entry for `registry` in an auth file (docker and podman format:
/// `{"auths": {"HOST": {"auth": base64("user:password")}}}`; a key may
/// carry a scheme and path, as the default registry's key does; the
/// default registry's names, as the reference parser knows them, are one).
pub fn auth_in(text: &str, registry: &str) -> Result<Option<RegistryAuth>, AuthFileError> {
    use base64::Engine as _;
    let v: Value = serde_json::from_str(text).map_err(AuthFileError::NotJson)?;
    let Some(auths) = v.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let host_of = |k: &str| -> String {
        let k = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"))
            .unwrap_or(k);
        let k = k.split('/').next().unwrap_or_default();
        match default_registry() {
            Some((name, resolved)) if k == resolved => name,
            _ => k.to_string(),
        }
    };
    let want = host_of(registry);
    let mut keys: Vec<&String> = auths.keys().collect();
    keys.sort();
    for k in keys {
        if host_of(k) != want {
            continue;
        }
        let entry = &auths[k];
        if let Some(t) = entry.get("registrytoken").and_then(Value::as_str) {
            return Ok(Some(RegistryAuth::Bearer(t.to_string())));
        }
        let Some(b64) = entry.get("auth").and_then(Value::as_str) else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| AuthFileError::NotBase64 {
                key: k.clone(),
                source: e,
            })?;
        let s = String::from_utf8(raw).map_err(|_| AuthFileError::NotUtf8 { key: k.clone() })?;
        let (user, pass) = s
            .split_once(':')
            .ok_or_else(|| AuthFileError::NotUserPassword { key: k.clone() })?;
        return Ok(Some(RegistryAuth::Basic(
            user.to_string(),
            pass.to_string(),
        )));
    }
    Ok(None)
}

/// The default registry's name and the host it resolves to, as the
/// reference parser knows them (a reference without a host).
fn default_registry() -> Option<(String, String)> {
    let r: Reference = "library/x".parse().ok()?;
    Some((r.registry().to_string(), r.resolve_registry().to_string()))
}

/// Is this error worth another attempt (a server error or a dropped
/// connection)?
fn retryable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => policy::transient_status(*code),
        // A name that does not resolve will not resolve in a second.
        OciDistributionError::RequestError(_) if chain(e).contains("dns error") => false,
        OciDistributionError::RequestError(r) => {
            r.is_connect()
                || r.is_timeout()
                || r.is_request()
                || r.is_body()
                || r.status().is_some_and(|s| s.is_server_error())
        }
        OciDistributionError::IoError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            format!("{:?}", e.code)
                .to_ascii_uppercase()
                .contains("UNAVAILABLE")
        }),
        _ => false,
    }
}

/// Full text of an error and its causes.
pub(crate) fn chain(e: &OciDistributionError) -> String {
    if let OciDistributionError::GenericError(Some(m)) = e {
        return m.clone();
    }
    let mut s = without_query(&e.to_string());
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = without_query(&c.to_string());
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// A message without the query strings of the URLs it quotes (upload
/// session state: long, and of no use to a reader).
fn without_query(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    let mut rest = m;
    while let Some(i) = rest.find('?') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest
            .find(|c: char| c == ')' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Why one attempt at fetching a manifest failed.
#[derive(Debug)]
pub enum Fetch {
    /// Getting the credentials failed.
    Auth(OciDistributionError),
    /// The connection failed or broke: worth another attempt.
    Transport(Box<ureq::Error>),
    /// Reading the answer failed: worth another attempt.
    Body(std::io::Error),
    /// Failed for good before an answer (no such host, bad TLS).
    Final(Box<ureq::Error>),
    /// The registry answered with this status (and these words).
    Status(u16, String),
    /// The manifest is larger than [`JSON_MAX`].
    TooLarge,
}

impl Fetch {
    fn again(&self) -> bool {
        match self {
            Fetch::Auth(e) => retryable(e),
            Fetch::Transport(_) | Fetch::Body(_) => true,
            Fetch::Status(s, _) => policy::transient_status(*s),
            Fetch::Final(_) | Fetch::TooLarge => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Fetch::Auth(e) => format!(
                "{}; check the name of the registry and the credentials",
                chain(e)
            ),
            Fetch::Transport(e) | Fetch::Final(e) => {
                format!("{e}; check the name of the registry and the network")
            }
            Fetch::Body(e) => {
                format!("reading the answer: {e}; check the name of the registry and the network")
            }
            Fetch::Status(s, said) => {
                let hint = match s {
                    401 | 403 => {
                        "; check the credentials (docker login, or NODEIMG_REGISTRY_TOKEN)"
                    }
                    404 => "; check the name and the tag",
                    _ => "",
                };
                format!("the registry answered {s}{said}{hint}")
            }
            Fetch::TooLarge => format!(
                "the registry sent a manifest of more than {} MiB; refused",
                JSON_MAX >> 20
            ),
        }
    }
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for Fetch {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Fetch::Auth(e) => Some(e),
            Fetch::Transport(e) | Fetch::Final(e) => Some(&**e),
            Fetch::Body(e) => Some(e),
            Fetch::Status(..) | Fetch::TooLarge => None,
        }
    }
}

/// The first words of a registry's error answer, printable, for a message.
fn registry_says(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn short(d: &str) -> &str {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    h.get(..12).unwrap_or(h)
}

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A connection to registries: the client, the runtime it runs on, and
/// the credentials of the registry it talks to.
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// A second client for chunked uploads of large blobs, made when needed.
    chunked: std::sync::OnceLock<Client>,
    insecure: Vec<String>,
    auth: std::sync::Mutex<Vec<(String, RegistryAuth)>>,
    /// The HTTP client for manifests, read with a bound.
    http: ureq::Agent,
    /// Where transfers and retries are shown.
    meter: Meter,
    /// Timeouts and retries.
    policy: HttpPolicy,
    /// Whether the session uploads (its answers wait longer).
    uploads: bool,
}

/// The oci-client settings of the HTTP policy (timeouts, user agent; TLS
/// is reqwest's platform verifier, the system's trust store, as the
/// policy's).
fn client_config(
    insecure: &[String],
    monolithic: bool,
    policy: &HttpPolicy,
    uploads: bool,
) -> ClientConfig {
    ClientConfig {
        protocol: if insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(insecure.to_vec())
        },
        use_monolithic_push: monolithic,
        platform_resolver: None,
        connect_timeout: Some(policy.connect_timeout),
        read_timeout: Some(if uploads {
            policy.upload_read_timeout
        } else {
            policy.read_timeout
        }),
        user_agent: nodeimg_fetch::policy::USER_AGENT,
        ..ClientConfig::default()
    }
}

impl Session {
    /// A session for pulls honouring `opts` (insecure loopback hosts,
    /// progress).
    pub fn new(opts: &RegistryOptions) -> Result<Session> {
        Session::with(opts, false)
    }

    /// A session for pushes: as [`Session::new`], waiting as long for
    /// answers as an upload may take.
    pub(crate) fn uploading(opts: &RegistryOptions) -> Result<Session> {
        Session::with(opts, true)
    }

    fn with(opts: &RegistryOptions, uploads: bool) -> Result<Session> {
        check_insecure(&opts.insecure)?;
        // The TLS backend's crypto; already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx(|| "starting the network runtime".to_string())?;
        let policy = HttpPolicy::default();
        Ok(Session {
            rt,
            client: Client::new(client_config(&opts.insecure, true, &policy, uploads)),
            chunked: std::sync::OnceLock::new(),
            insecure: opts.insecure.clone(),
            auth: std::sync::Mutex::new(Vec::new()),
            http: policy.agent(),
            meter: opts.meter.clone(),
            policy,
            uploads,
        })
    }

    fn login(&self, r: &Reference) -> Result<()> {
        let auth = auth_for(r.resolve_registry())?;
        self.rt.block_on(
            self.client
                .store_auth_if_needed(r.resolve_registry(), &auth),
        );
        if let Ok(mut v) = self.auth.lock() {
            v.push((r.resolve_registry().to_string(), auth));
        }
        Ok(())
    }

    /// The chunked-upload client, logged in like the main one.
    fn chunked(&self) -> &Client {
        self.chunked.get_or_init(|| {
            let c = Client::new(client_config(
                &self.insecure,
                false,
                &self.policy,
                self.uploads,
            ));
            if let Ok(v) = self.auth.lock() {
                for (registry, auth) in v.iter() {
                    self.rt.block_on(c.store_auth_if_needed(registry, auth));
                }
            }
            c
        })
    }

    /// Run `op` as the HTTP policy says: until it succeeds, fails for
    /// good, or the attempts are used up.
    fn retry<T, F>(
        &self,
        what: &str,
        op: F,
    ) -> std::result::Result<T, Retried<OciDistributionError>>
    where
        F: FnMut(&Session) -> std::result::Result<T, OciDistributionError>,
    {
        self.retry_when(what, op, retryable, chain)
    }

    /// As [`Session::retry`], for any error: `again` says whether it is
    /// worth another attempt, `text` what to tell the user.
    fn retry_when<T, E, F>(
        &self,
        what: &str,
        mut op: F,
        again: impl Fn(&E) -> bool,
        text: impl Fn(&E) -> String,
    ) -> std::result::Result<T, Retried<E>>
    where
        F: FnMut(&Session) -> std::result::Result<T, E>,
    {
        self.policy
            .retry(
                || op(self),
                again,
                |e, r| {
                    self.meter.done(&format!(
                        "{what}: {} (attempt {} of {}, again in {:.1} s)",
                        text(e),
                        r.attempt,
                        r.of,
                        r.wait.as_secs_f64()
                    ));
                },
            )
            .map_err(|f| Retried {
                action: what.to_string(),
                attempts: f.attempts,
                error: f.error,
            })
    }

    /// One GET of `/v2/<repository>/<path>` of `r`'s registry with the
    /// credentials oci-client would use, answering `accept`; the answer
    /// whatever its status (its body not read yet).
    fn get(
        &self,
        r: &Reference,
        auth: &RegistryAuth,
        path: &str,
        accept: &str,
    ) -> std::result::Result<http::Response<ureq::Body>, Fetch> {
        let token = self
            .rt
            .block_on(self.client.auth(r, auth, RegistryOperation::Pull))
            .map_err(Fetch::Auth)?;
        let registry = r.resolve_registry();
        let scheme = if self.insecure.iter().any(|h| h == registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/{path}{}",
            r.repository(),
            r.namespace()
                .map(|ns| format!("?ns={ns}"))
                .unwrap_or_default()
        );
        let mut req = self.http.get(&url).header("Accept", accept);
        match (token, auth) {
            (Some(t), _) => req = req.header("Authorization", format!("Bearer {t}")),
            (None, RegistryAuth::Basic(user, pass)) => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req = req.header("Authorization", format!("Basic {b}"));
            }
            _ => {}
        }
        req.call().map_err(|e| {
            if policy::transient_error(&e) {
                Fetch::Transport(Box::new(e))
            } else {
                Fetch::Final(Box::new(e))
            }
        })
    }

    /// One attempt at fetching the manifest of `r`: the credentials
    /// oci-client would use, then a GET whose body is read no further than
    /// [`JSON_MAX`] bytes (oci-client would buffer all of it).
    fn fetch_manifest(
        &self,
        r: &Reference,
        auth: &RegistryAuth,
    ) -> std::result::Result<Vec<u8>, Fetch> {
        let path = format!("manifests/{}", r.digest().or(r.tag()).unwrap_or("latest"));
        let res = self.get(r, auth, &path, &ACCEPTED.join(", "))?;
        let status = res.status().as_u16();
        let length = res
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if status != 200 {
            let mut said = Vec::new();
            let _ = res
                .into_body()
                .into_reader()
                .take(4096)
                .read_to_end(&mut said);
            return Err(Fetch::Status(status, registry_says(&said)));
        }
        if length.is_some_and(|n| n > JSON_MAX as u64) {
            return Err(Fetch::TooLarge);
        }
        let mut body = Vec::new();
        res.into_body()
            .into_reader()
            .take(JSON_MAX as u64 + 1)
            .read_to_end(&mut body)
            .map_err(Fetch::Body)?;
        if body.len() > JSON_MAX {
            return Err(Fetch::TooLarge);
        }
        Ok(body)
    }

    /// Fetch a manifest or index: its bytes, checked against `digest`
    /// when the reference has one.
    fn manifest(&self, r: &Reference, what: &str) -> Result<Vec<u8>> {
        let auth = auth_for(r.resolve_registry())?;
        let body = self
            .retry_when(
                &format!("fetching the manifest of {}", r.whole()),
                |s| s.fetch_manifest(r, &auth),
                Fetch::again,
                Fetch::text,
            )
            .map_err(|f| RegistryError::Fetch {
                what: what.to_string(),
                action: f.action,
                attempts: f.attempts,
                source: f.error,
            })?;
        if let Some(d) = r.digest() {
            let found = sha256_digest(&body);
            if found != d {
                return Err(RegistryError::refused(
                    what,
                    Refusal::ManifestMismatch {
                        expected: d.to_string(),
                        found,
                    },
                ));
            }
        }
        Ok(body)
    }

    /// Download blob `digest` of `size` bytes into `dest` (atomically:
    /// a temporary file is renamed once the digest is verified); returns
    /// the file written, open.
    fn download(
        &self,
        r: &Reference,
        what: &str,
        digest: &str,
        size: u64,
        dest: &Path,
    ) -> Result<CachedFile> {
        check_blob_request(what, digest, size, BLOB_MAX, |digest, size| {
            Refusal::BlobTooLarge { digest, size }
        })?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        self.meter
            .step(&format!("pulling {} ({})", short(digest), human(size)));
        let pb = self.meter.bar(&format!("pull {}", short(digest)), size);
        let fetched = self.retry(&format!("downloading blob {digest}"), |s| {
            pb.set_position(0);
            let tmp = tempfile::Builder::new()
                .prefix(".blob-")
                .tempfile_in(dir)
                .map_err(OciDistributionError::IoError)?;
            s.rt.block_on(stream_blob(&s.client, r, digest, size, tmp, &pb))
        });
        drop(pb);
        let (tmp, found, n) = fetched.map_err(|f| f.of(what))?;
        check_blob_received(what, digest, size, found, n)?;
        tmp.as_file()
            .sync_all()
            .ctx(|| format!("writing {}", dest.display()))?;
        clear_folder(dest)?;
        let file = tmp
            .persist(dest)
            .map_err(|e| e.error)
            .ctx(|| format!("storing {}", dest.display()))?;
        Ok(CachedFile::written(file, dest.to_path_buf(), size))
    }
}

/// Stream blob `digest` of `size` bytes from the registry into `tmp`,
/// hashing it on the way; returns the file, the digest found and the
/// bytes received.
async fn stream_blob(
    client: &Client,
    r: &Reference,
    digest: &str,
    size: u64,
    tmp: tempfile::NamedTempFile,
    pb: &Transfer,
) -> std::result::Result<(tempfile::NamedTempFile, String, u64), OciDistributionError> {
    let mut stream = client.pull_blob_stream(r, digest).await?;
    if stream.content_length.is_some_and(|n| n != size) {
        return Err(OciDistributionError::GenericError(Some(format!(
            "the registry announces {} bytes for a blob of {size}",
            stream.content_length.unwrap_or_default()
        ))));
    }
    let mut h = Sha256::new();
    let mut n: u64 = 0;
    let mut mismatch = None;
    let mut w = std::io::BufWriter::with_capacity(1 << 17, tmp.as_file());
    while let Some(chunk) = stream.stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if e.to_string().to_ascii_lowercase().contains("digest") => {
                // The library's own check; ours below says it plainly.
                let got = e
                    .to_string()
                    .rsplit("got ")
                    .next()
                    .unwrap_or("a different digest")
                    .to_string();
                mismatch = Some(got);
                break;
            }
            Err(e) => return Err(OciDistributionError::IoError(e)),
        };
        n += chunk.len() as u64;
        if n > size {
            return Err(OciDistributionError::GenericError(Some(format!(
                "the registry sent more than the {size} bytes of the blob"
            ))));
        }
        h.update(&chunk);
        w.write_all(&chunk)?;
        pb.set_position(n);
    }
    w.flush()?;
    drop(w);
    let found = mismatch.unwrap_or_else(|| format!("sha256:{}", hex::encode(h.finalize())));
    Ok((tmp, found, n))
}

/// Remove a folder put where a blob goes (a rename does not replace one;
/// anything else there, a symbolic link included, is replaced itself).
fn clear_folder(dest: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        cachefile::remove_entry(dest).ctx(|| format!("removing {}", dest.display()))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ pull

/// The parts of a manifest that matter here.
#[derive(Debug)]
struct ManifestInfo {
    config: Blob,
    layers: Vec<Blob>,
}

#[derive(Clone, Debug)]
struct Blob {
    digest: String,
    size: u64,
    media_type: String,
}

fn blob_of(v: &Value, key: &str) -> Result<Blob, DescriptorError> {
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| DescriptorError::NoDigest { key: key.into() })?;
    check_digest(digest).map_err(|e| DescriptorError::Digest {
        key: key.into(),
        source: e,
    })?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| DescriptorError::NoSize { key: key.into() })?;
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Blob {
        digest: digest.to_string(),
        size,
        media_type,
    })
}

fn parse_manifest(body: &[u8]) -> Result<ManifestInfo, ManifestError> {
    let v: Value = serde_json::from_slice(body).map_err(ManifestError::NotJson)?;
    let config = blob_of(v.get("config").ok_or(ManifestError::NoConfig)?, "config")
        .map_err(ManifestError::Descriptor)?;
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or(ManifestError::NoLayers)?
        .iter()
        .enumerate()
        .map(|(i, l)| blob_of(l, &format!("layers[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ManifestError::Descriptor)?;
    Ok(ManifestInfo { config, layers })
}

fn media_type_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| {
            if let Some(m) = v.get("mediaType").and_then(Value::as_str) {
                return m.to_string();
            }
            // OCI documents may omit mediaType: an index has manifests.
            if v.get("manifests").is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        })
        .unwrap_or_default()
}

fn is_index_type(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

/// Pick the `linux/arch` entry of an index.
///
/// Not `nodeimg_image::base::select_manifest`, on purpose: that one reads
/// the index of a local layout (by tag; a nested index's platform must be
/// unique, and a one-entry index is taken whatever its platform). This one
/// reads a registry's answer before anything of it is trusted: raw JSON (an
/// OCI index or a Docker manifest list), each descriptor checked as it is
/// taken, and the first `linux/ARCH` entry wins, as `docker pull` chooses
/// (registries list variants and attestations next to the images).
fn pick_platform(body: &[u8], arch: &str, what: &str) -> Result<Blob> {
    let v: Value = serde_json::from_slice(body).map_err(|e| RegistryError::Json {
        what: what.to_string(),
        item: "the image index is not JSON: ".to_string(),
        source: e,
    })?;
    let ms = v
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| RegistryError::refused(what, Refusal::NoManifests))?;
    let mut platforms = Vec::new();
    let mut hit = None;
    for (i, m) in ms.iter().enumerate() {
        let os = m
            .pointer("/platform/os")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let a = m
            .pointer("/platform/architecture")
            .and_then(Value::as_str)
            .unwrap_or("?");
        platforms.push(format!("{os}/{a}"));
        if os == "linux" && a == arch && hit.is_none() {
            hit = Some(blob_of(m, &format!("manifests[{i}]")).map_err(|e| {
                RegistryError::Descriptor {
                    what: what.to_string(),
                    source: e,
                }
            })?);
        }
    }
    hit.ok_or_else(|| {
        RegistryError::refused(
            what,
            Refusal::NoPlatform {
                arch: arch.to_string(),
                platforms,
            },
        )
    })
}

/// The registry part of the cache: `<cache>/registry`.
fn cache_root(opts: &RegistryOptions) -> Result<PathBuf> {
    let dir = opts
        .cache_dir
        .clone()
        .or_else(nodeimg_fetch::default_cache_dir)
        .ok_or_else(|| {
            RegistryError::Usage(
                "no cache directory for pulled images: give --cache-dir, or set XDG_CACHE_HOME or HOME"
                    .into(),
            )
        })?;
    Ok(dir.join("registry"))
}

/// A pulled image: the manifest chosen for the platform and the blobs it
/// names, each verified against its digest (and size) and open. It is read
/// as an OCI image whose index names that one manifest; nothing of the
/// cache is trusted to say which manifest a reference means.
pub struct Pulled {
    index: ImageIndex,
    blobs: BTreeMap<String, CachedFile>,
}

impl std::fmt::Debug for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pulled({} blob(s))", self.blobs.len())
    }
}

impl OciRead for Pulled {
    type BlobReader = CachedReader;

    fn read_blob(&self, desc: &Descriptor) -> std::result::Result<CachedReader, ocidir::Error> {
        let digest = desc.digest().to_string();
        let f = self.blobs.get(&digest).ok_or_else(|| {
            ocidir::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("blob {digest} is not part of the pulled image"),
            ))
        })?;
        if f.size() != desc.size() {
            return Err(ocidir::Error::SizeMismatch {
                expected: desc.size(),
                found: f.size(),
            });
        }
        Ok(f.reader())
    }

    fn read_index(&self) -> std::result::Result<ImageIndex, ocidir::Error> {
        Ok(self.index.clone())
    }

    fn has_blob(&self, desc: &Descriptor) -> std::result::Result<bool, ocidir::Error> {
        Ok(self.blobs.contains_key(&desc.digest().to_string()))
    }
}

/// Where and how a pull gets what the cache lacks.
struct Puller<'a> {
    s: &'a Session,
    r: &'a Reference,
    what: &'a str,
    store: PathBuf,
    offline: bool,
    fetched: u64,
}

impl Puller<'_> {
    fn path(&self, digest: &str) -> PathBuf {
        self.store.join(digest.trim_start_matches("sha256:"))
    }

    /// The cached blob `digest` when it is intact; a damaged one is
    /// reported and removed. Returns the blob, or why it must be fetched.
    fn cached(&self, digest: &str, size: Option<u64>) -> Result<Result<CachedFile, CacheMiss>> {
        check_digest(digest).map_err(|e| RegistryError::Digest {
            what: self.what.to_string(),
            source: e,
        })?;
        let path = self.path(digest);
        let hex = digest.trim_start_matches("sha256:");
        let entry = match size {
            Some(n) => cachefile::open_verified(&path, n, hex),
            None => cachefile::open_verified_at_most(&path, JSON_MAX as u64, hex),
        }
        .ctx(|| format!("reading the cached blob {}", path.display()))?;
        Ok(match entry {
            Entry::Verified(f) => Ok(f),
            Entry::Absent => Err(CacheMiss::Absent {
                digest: digest.to_string(),
                path,
            }),
            Entry::Damaged(why) => {
                cachefile::remove_entry(&path)
                    .ctx(|| format!("removing the damaged cache entry {}", path.display()))?;
                Err(CacheMiss::Damaged { path, why })
            }
        })
    }

    /// What is done when the cache cannot serve a blob (`why`): with
    /// `--offline` an error that says why and what to do; else a damaged
    /// entry is reported and the blob fetched again.
    fn need_network(&self, why: CacheMiss) -> Result<CacheMiss> {
        if self.offline {
            return Err(RegistryError::refused(self.what, Refusal::Offline(why)));
        }
        if let CacheMiss::Damaged { path, why } = &why {
            // Shown even when quiet: a damaged cache may be an attack.
            let warning = format!(
                "warning: the cached blob {} ({why}) is damaged; fetching it again",
                path.display()
            );
            self.s.meter.suspend(|| eprintln!("{warning}"));
        }
        Ok(why)
    }

    /// A config or layer blob, verified against its descriptor.
    fn blob(&mut self, b: &Blob) -> Result<CachedFile> {
        let why = match self.cached(&b.digest, Some(b.size))? {
            Ok(f) => return Ok(f),
            Err(why) => self.need_network(why)?,
        };
        let dest = self.path(&b.digest);
        let f = self
            .s
            .download(self.r, self.what, &b.digest, b.size, &dest)
            .map_err(|e| noted(e, why))?;
        self.fetched += b.size;
        Ok(f)
    }

    /// Manifest or index `digest` (of `size` bytes when known): from the
    /// cache when intact, else from the registry (checked against the
    /// digest) and then kept in the cache.
    fn manifest_by_digest(
        &mut self,
        digest: &str,
        size: Option<u64>,
        online_first: bool,
    ) -> Result<Vec<u8>> {
        let why = if online_first && !self.offline {
            CacheMiss::Pinned
        } else {
            match self.cached(digest, size)? {
                Ok(f) => {
                    return f
                        .read_all()
                        .ctx(|| format!("reading the cached blob {}", f.path().display()))
                }
                Err(why) => why,
            }
        };
        self.need_network(why)?;
        let body = self
            .s
            .manifest(&self.r.clone_with_digest(digest.to_string()), self.what)?;
        if let Some(listed) = size.filter(|n| *n != body.len() as u64) {
            return Err(RegistryError::refused(
                self.what,
                Refusal::ManifestSize {
                    digest: digest.to_string(),
                    sent: body.len(),
                    listed,
                },
            ));
        }
        self.keep(digest, &body)?;
        Ok(body)
    }

    /// Keep a manifest or index (already checked against `digest`) in the
    /// blob store, atomically.
    ///
    /// The store is not an OCI layout, on purpose, and is not written with
    /// `ocidir`: it is a content-addressed cache with no `index.json`
    /// (nothing of the cache says which manifest a reference means; see
    /// [`Pulled`]), whose entries are read only through
    /// [`cachefile::open_verified`] and replaced when damaged.
    fn keep(&self, digest: &str, body: &[u8]) -> Result<()> {
        let dest = self.path(digest);
        let mut tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(&self.store)
            .ctx(|| format!("creating a file in {}", self.store.display()))?;
        tmp.write_all(body)
            .and_then(|()| tmp.as_file().sync_all())
            .ctx(|| format!("writing {}", dest.display()))?;
        clear_folder(&dest)?;
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .ctx(|| format!("storing {}", dest.display()))?;
        Ok(())
    }

    /// The manifest (or index) the reference names: fetched by digest
    /// (from the cache when there), or resolved by tag and kept.
    fn top_manifest(&mut self) -> Result<Vec<u8>> {
        match self.r.digest() {
            Some(d) => self.manifest_by_digest(d, None, true),
            None => {
                let body = self.s.manifest(self.r, self.what)?;
                self.keep(&sha256_digest(&body), &body)?;
                Ok(body)
            }
        }
    }

    /// The image manifest for `arch`: `top` itself, or the one an index
    /// names for that platform. Returns its bytes, media type and digest.
    fn platform_manifest(&mut self, top: Vec<u8>, arch: &str) -> Result<(Vec<u8>, String, String)> {
        let what = self.what;
        let mut body = top;
        let mut mt = media_type_of(&body);
        let mut digest = sha256_digest(&body);
        if is_index_type(&mt) {
            let chosen = pick_platform(&body, arch, what)?;
            body = self.manifest_by_digest(&chosen.digest, Some(chosen.size), false)?;
            if sha256_digest(&body) != chosen.digest {
                return Err(RegistryError::refused(
                    what,
                    Refusal::ManifestDigest {
                        digest: chosen.digest,
                    },
                ));
            }
            digest = chosen.digest;
            mt = media_type_of(&body);
            if is_index_type(&mt) {
                return Err(RegistryError::refused(what, Refusal::NestedIndex));
            }
        }
        Ok((body, mt, digest))
    }

    /// The config and layers of a manifest, each once, by digest.
    fn blobs(&mut self, info: &ManifestInfo) -> Result<BTreeMap<String, CachedFile>> {
        let mut blobs = BTreeMap::new();
        for b in std::iter::once(&info.config).chain(info.layers.iter()) {
            if blobs.contains_key(&b.digest) {
                continue;
            }
            let f = self.blob(b)?;
            blobs.insert(b.digest.clone(), f);
        }
        Ok(blobs)
    }
}

/// An error with what was found in the cache before it.
fn noted(e: RegistryError, note: CacheMiss) -> RegistryError {
    match e {
        RegistryError::Refused {
            what,
            refetch: None,
            reason,
        } => RegistryError::Refused {
            what,
            refetch: Some(Box::new(note)),
            reason,
        },
        e => e,
    }
}

/// Pull `reference` (`docker://...`) for `arch` into the cache (blobs by
/// digest under `registry/blobs/sha256`) and return it, verified and open.
///
/// A reference pinned by digest is checked against that digest on every
/// use: the manifest's bytes hash to the pin (or, for an index, the
/// platform's manifest is the one an index hashing to the pin names), and
/// the config and every layer match the manifest's descriptors (size and
/// digest) before they are used. Online, the manifest comes from the
/// registry; with `offline` from the cache, verified the same way. A tag is
/// resolved by the registry. A damaged cache entry is reported, removed and
/// fetched again (offline: an error naming it).
pub fn pull(reference: &str, arch: &str, opts: &RegistryOptions) -> Result<Pulled> {
    let what = reference.to_string();
    let r = parse_reference(reference).map_err(|e| RegistryError::Reference {
        role: "",
        source: e,
    })?;
    if opts.offline && r.digest().is_none() {
        return Err(RegistryError::refused(&what, Refusal::OfflineTag));
    }
    let root = cache_root(opts)?;
    let store = root.join("blobs/sha256");
    nodeimg_fetch::cachedir::create_dirs(&store).ctx(|| format!("creating {}", store.display()))?;
    let s = Session::new(opts)?;
    if !opts.offline {
        s.login(&r)?;
    }
    let started = Instant::now();
    s.meter.done(&format!("pulling {}", r.whole()));
    let mut p = Puller {
        s: &s,
        r: &r,
        what: &what,
        store,
        offline: opts.offline,
        fetched: 0,
    };
    let top = p.top_manifest()?;
    let (body, mt, digest) = p.platform_manifest(top, arch)?;
    let info = parse_manifest(&body).map_err(|e| RegistryError::Manifest {
        what: what.clone(),
        digest: digest.clone(),
        source: e,
    })?;
    let mut blobs = p.blobs(&info)?;
    let fetched = p.fetched;
    let mdesc = nodeimg_image::output::descriptor_for(&mt, body.len() as u64, &digest)?;
    let index: ImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [mdesc],
    }))
    .map_err(|e| RegistryError::Json {
        what: what.to_string(),
        item: format!("describing manifest {digest}: "),
        source: e,
    })?;
    // The manifest itself, verified above, served from memory.
    let mfile = manifest_file(&p, &digest, &body)?;
    blobs.insert(digest.clone(), mfile);
    s.meter.done(&format!(
        "pulled {} ({digest}): {} fetched in {:.1} s",
        r.whole(),
        human(fetched),
        started.elapsed().as_secs_f64()
    ));
    Ok(Pulled { index, blobs })
}

/// The manifest bytes (verified) as a file of this process: an anonymous
/// temporary file, so that nothing of the cache can change them.
fn manifest_file(p: &Puller<'_>, digest: &str, body: &[u8]) -> Result<CachedFile> {
    let mut f = tempfile::tempfile().ctx(|| "creating a temporary file".to_string())?;
    f.write_all(body)
        .ctx(|| "writing a temporary file".to_string())?;
    Ok(CachedFile::written(f, p.path(digest), body.len() as u64))
}

// ------------------------------------------------------------------ push

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    /// Where the image went (`HOST/REPO:TAG`).
    pub reference: String,
    /// The digest of the pushed manifest (or index).
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Blobs the registry already had.
    pub present: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
}

/// An image to push: an OCI layout directory or an OCI archive.
enum Source {
    Dir(OciDir),
    Archive(OciArchive),
}

/// An owned reader of one blob (both kinds are `Send + Sync + 'static`).
enum BlobReader {
    Dir(File),
    Archive(ocidir::ArchiveReader),
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlobReader::Dir(f) => f.read(buf),
            BlobReader::Archive(a) => a.read(buf),
        }
    }
}

impl Source {
    /// The image at `path`, named `what` in messages.
    fn open(path: &Path, what: &str) -> Result<Source> {
        let layout = |item: &str, e| RegistryError::Layout {
            what: what.to_string(),
            item: item.to_string(),
            source: e,
        };
        if path.is_dir() {
            let d = ocidir::cap_std::fs::Dir::open_ambient_dir(
                path,
                ocidir::cap_std::ambient_authority(),
            )
            .map_err(|e| RegistryError::Open {
                what: what.to_string(),
                source: e,
            })?;
            let o = OciDir::open(d).map_err(|e| layout("not an OCI image layout: ", e))?;
            Ok(Source::Dir(o))
        } else {
            let a = OciArchive::open(path)
                .map_err(|e| layout("not an OCI layout folder nor an OCI archive: ", e))?;
            Ok(Source::Archive(a))
        }
    }

    fn index(&self) -> std::result::Result<ocidir::oci_spec::image::ImageIndex, ocidir::Error> {
        match self {
            Source::Dir(d) => d.read_index(),
            Source::Archive(a) => a.read_index(),
        }
    }

    fn reader(&self, desc: &Descriptor) -> std::result::Result<BlobReader, ocidir::Error> {
        Ok(match self {
            Source::Dir(d) => BlobReader::Dir(d.read_blob(desc)?),
            Source::Archive(a) => BlobReader::Archive(a.read_blob(desc)?),
        })
    }

    /// A small JSON blob, whole, checked against its digest.
    fn json(&self, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        if desc.size() > JSON_MAX as u64 {
            return Err(RegistryError::refused(
                what,
                Refusal::JsonTooLarge {
                    digest: desc.digest().to_string(),
                    size: desc.size(),
                },
            ));
        }
        let mut buf = Vec::new();
        self.reader(desc)
            .map_err(|e| RegistryError::Layout {
                what: what.to_string(),
                item: format!("{}: ", desc.digest()),
                source: e,
            })?
            .read_to_end(&mut buf)
            .map_err(|e| RegistryError::Read {
                what: what.to_string(),
                item: format!("{}: ", desc.digest()),
                source: e,
            })?;
        let found = sha256_digest(&buf);
        if found != desc.digest().to_string() {
            return Err(RegistryError::refused(
                what,
                Refusal::Damaged {
                    digest: desc.digest().to_string(),
                    found,
                },
            ));
        }
        Ok(buf)
    }
}

/// Split `PATH[:TAG]`: the whole string when it exists, else the part
/// before the last `:`.
///
/// Not the base reference's splitter (`nodeimg_image::base::BaseRef`), on
/// purpose: `push` names an image on this host, so a path that exists is
/// taken whole even with a `:` in it, while a base is parsed before
/// anything is opened (relative to the recipe, an empty tag refused).
/// `inspect` splits only when the part before the `:` exists; here the tag
/// is split off anyway, so that the error names the missing path alone.
pub fn split_image_arg(s: &str) -> (PathBuf, Option<String>) {
    if Path::new(s).exists() {
        return (PathBuf::from(s), None);
    }
    match s.rsplit_once(':') {
        Some((p, t)) if !t.is_empty() && !t.contains('/') => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(nodeimg_image::output::REF_NAME))
        .map(String::as_str)
}

/// Push the image at `image` (an OCI layout folder or archive, with an
/// optional tag) to `dest` (`[docker://]HOST[:PORT]/REPO:TAG`). Blobs the
/// registry has are not sent again; with `mount_from` (a repository of the
/// same registry) blobs are mounted from it when it has them. Several
/// images in the layout (and no tag named) are pushed as one
/// multi-platform index.
pub fn push(
    image: &Path,
    tag: Option<&str>,
    dest: &str,
    mount_from: Option<&str>,
    opts: &RegistryOptions,
) -> Result<PushReport> {
    let what = match tag {
        Some(t) => format!("{}:{t}", image.display()),
        None => image.display().to_string(),
    };
    let r = parse_reference(dest).map_err(|e| RegistryError::Reference {
        role: "push destination ",
        source: e,
    })?;
    if r.digest().is_some() {
        return Err(RegistryError::Usage(format!(
            "push destination {dest:?} names a digest; name a tag (HOST/REPO:TAG), the digest is the image's own"
        )));
    }
    let src = Source::open(image, &what)?;
    let index = src.index().map_err(|e| RegistryError::Layout {
        what: what.clone(),
        item: "cannot read index.json: ".to_string(),
        source: e,
    })?;
    let chosen = chosen_manifests(index.manifests(), tag, &what)?;
    let s = Session::uploading(opts)?;
    s.login(&r)?;
    let mount = mount_reference(&r, mount_from)?;
    let started = Instant::now();
    let mut report = PushReport {
        reference: r.whole(),
        ..PushReport::default()
    };
    let pusher = Pusher {
        s: &s,
        src: &src,
        r: &r,
        mount: mount.as_ref(),
        what: &what,
    };
    let top = if chosen.len() == 1 {
        pusher.tree(&chosen[0], true, &mut report)?
    } else {
        pusher.index(&chosen, &mut report)?
    };
    // The registry must now serve exactly that digest under the tag.
    let auth = auth_for(r.resolve_registry())?;
    let served = s
        .retry(&format!("checking {}", r.whole()), |s| {
            s.rt.block_on(s.client.fetch_manifest_digest(&r, &auth))
        })
        .map_err(|f| f.of(&report.reference))?;
    if served != top {
        return Err(RegistryError::refused(
            &report.reference,
            Refusal::Raced {
                served,
                pushed: top,
            },
        ));
    }
    report.digest = top;
    s.meter.done(&format!(
        "pushed {} in {:.1} s: {} blob(s) uploaded ({}), {} already present, {} mounted",
        report.reference,
        started.elapsed().as_secs_f64(),
        report.uploaded,
        human(report.uploaded_bytes),
        report.present,
        report.mounted
    ));
    Ok(report)
}

/// The images of the index to push: the one tagged `tag`, else all of them.
fn chosen_manifests(
    manifests: &[Descriptor],
    tag: Option<&str>,
    what: &str,
) -> Result<Vec<Descriptor>> {
    match tag {
        Some(t) => {
            let d = manifests
                .iter()
                .find(|d| tag_of(d) == Some(t))
                .ok_or_else(|| {
                    let tags = manifests.iter().filter_map(tag_of).map(String::from);
                    RegistryError::refused(
                        what,
                        Refusal::NoTag {
                            tag: t.to_string(),
                            tags: tags.collect(),
                        },
                    )
                })?;
            Ok(vec![d.clone()])
        }
        None if manifests.is_empty() => Err(RegistryError::refused(what, Refusal::EmptyIndex)),
        None => Ok(manifests.to_vec()),
    }
}

/// `--mount-from`: a repository of the destination's registry.
fn mount_reference(r: &Reference, mount_from: Option<&str>) -> Result<Option<Reference>> {
    match mount_from {
        Some(m) => {
            let mr: Reference =
                format!("{}/{m}", r.registry())
                    .parse()
                    .map_err(|e| RegistryError::MountFrom {
                        repository: m.to_string(),
                        source: e,
                    })?;
            Ok(Some(mr))
        }
        None => Ok(None),
    }
}

/// What every manifest and blob of one push shares: the session, the
/// local image, the destination, the repository to mount blobs from, and
/// the image as named in messages.
struct Pusher<'a> {
    s: &'a Session,
    src: &'a Source,
    r: &'a Reference,
    mount: Option<&'a Reference>,
    what: &'a str,
}

impl Pusher<'_> {
    /// Several images: each by digest, then an index of them under the
    /// tag; returns the index's digest. The index is written here, key by
    /// key, because its bytes are the digest the registry must serve.
    fn index(&self, chosen: &[Descriptor], report: &mut PushReport) -> Result<String> {
        let mut entries = Vec::new();
        for d in chosen {
            let digest = self.tree(d, false, report)?;
            let mut e = serde_json::json!({
                "mediaType": d.media_type().to_string(),
                "digest": digest,
                "size": d.size(),
            });
            if let Some(p) = d.platform() {
                e["platform"] = serde_json::to_value(p).unwrap_or(Value::Null);
            }
            entries.push(e);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let body = serde_json::to_vec(&index).map_err(|e| RegistryError::Json {
            what: self.what.to_string(),
            item: String::new(),
            source: e,
        })?;
        put_manifest(self.s, self.r, body, OCI_INDEX, self.what)
    }

    /// Push one manifest (or a nested index and its manifests) and its
    /// blobs; returns its digest. `tagged`: put it under the reference's
    /// tag, else by digest.
    fn tree(&self, d: &Descriptor, tagged: bool, report: &mut PushReport) -> Result<String> {
        let Pusher {
            s, src, r, what, ..
        } = *self;
        let body = src.json(d, what)?;
        let mt = {
            let m = d.media_type().to_string();
            if m.is_empty() {
                media_type_of(&body)
            } else {
                m
            }
        };
        let digest = d.digest().to_string();
        if is_index_type(&mt) {
            let idx: Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Json {
                what: what.to_string(),
                item: format!("index {digest} is not JSON: "),
                source: e,
            })?;
            let children: Vec<Descriptor> = idx
                .get("manifests")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| RegistryError::Json {
                    what: what.to_string(),
                    item: format!("index {digest}: "),
                    source: e,
                })?
                .unwrap_or_default();
            for c in &children {
                self.tree(c, false, report)?;
            }
        } else {
            let info = parse_manifest(&body).map_err(|e| RegistryError::Manifest {
                what: what.to_string(),
                digest: digest.clone(),
                source: e,
            })?;
            for b in std::iter::once(&info.config).chain(info.layers.iter()) {
                self.blob(b, report)?;
            }
        }
        let target = if tagged {
            r.clone()
        } else {
            r.clone_with_digest(digest.clone())
        };
        let pushed = put_manifest(s, &target, body, &mt, what)?;
        if pushed != digest {
            return Err(RegistryError::refused(
                what,
                Refusal::PushedDigest { pushed, digest },
            ));
        }
        Ok(digest)
    }

    /// Send one blob, unless the registry has it or can mount it.
    fn blob(&self, b: &Blob, report: &mut PushReport) -> Result<()> {
        let Pusher {
            s,
            src,
            r,
            mount,
            what,
        } = *self;
        let present = s
            .retry(&format!("checking blob {}", b.digest), |s| {
                s.rt.block_on(s.client.blob_exists(r, &b.digest))
            })
            .map_err(|f| f.of(r.whole()))?;
        if present {
            report.present += 1;
            return Ok(());
        }
        if let Some(m) = mount {
            let mounted = s.rt.block_on(s.client.mount_blob(r, m, &b.digest)).is_ok();
            if mounted {
                s.meter.done(&format!(
                    "mounted {} from {}",
                    short(&b.digest),
                    m.repository()
                ));
                report.mounted += 1;
                return Ok(());
            }
        }
        let desc = nodeimg_image::output::descriptor_for(&b.media_type, b.size, &b.digest)?;
        s.meter
            .step(&format!("pushing {} ({})", short(&b.digest), human(b.size)));
        let pb = s.meter.bar(&format!("push {}", short(&b.digest)), b.size);
        // Chunked uploads send one request per stream item: larger items.
        let (client, item) = if b.size >= CHUNKED_FROM {
            (s.chunked(), 16 << 20)
        } else {
            (&s.client, 1 << 20)
        };
        s.retry_when(
            &format!("uploading blob {}", b.digest),
            |s| {
                pb.set_position(0);
                let reader = src.reader(&desc).map_err(Upload::Open)?;
                let stream = blob_stream(reader, b.size, item, pb.clone());
                s.rt.block_on(client.push_blob_stream(r, stream, &b.digest, Some(b.size)))
                    .map_err(Upload::Send)
            },
            Upload::again,
            |e| e.text(what, &b.digest),
        )
        .map_err(|f| f.of(r.whole(), what, &b.digest))?;
        drop(pb);
        report.uploaded += 1;
        report.uploaded_bytes += b.size;
        Ok(())
    }
}

/// Why one attempt at uploading a blob failed.
enum Upload {
    /// The local blob could not be opened: not worth another attempt.
    Open(ocidir::Error),
    /// The registry or the connection failed.
    Send(OciDistributionError),
}

impl Upload {
    fn again(&self) -> bool {
        match self {
            Upload::Open(_) => false,
            Upload::Send(e) => retryable(e),
        }
    }

    /// What to tell the user, the local image being `what`.
    fn text(&self, what: &str, digest: &str) -> String {
        match self {
            Upload::Open(e) => {
                format!("{what}: blob {digest}: {}", nodeimg_image::base::oci_msg(e))
            }
            Upload::Send(e) => chain(e),
        }
    }
}

impl Retried<Upload> {
    /// The registry error of pushing blob `digest` of `what` to `dest`.
    fn of(self, dest: String, what: &str, digest: &str) -> RegistryError {
        match self.error {
            Upload::Open(source) => RegistryError::Upload(Box::new(UploadError {
                dest,
                action: self.action,
                what: what.to_string(),
                digest: digest.to_string(),
                attempts: self.attempts,
                source,
            })),
            Upload::Send(error) => Retried {
                action: self.action,
                attempts: self.attempts,
                error,
            }
            .of(dest),
        }
    }
}

fn put_manifest(s: &Session, r: &Reference, body: Vec<u8>, mt: &str, what: &str) -> Result<String> {
    let digest = sha256_digest(&body);
    // The header library's error says nothing the sentence does not.
    let ct = http::HeaderValue::from_str(mt)
        .map_err(|_| RegistryError::refused(what, Refusal::MediaType(mt.to_string())))?;
    let body = Bytes::from(body);
    s.retry(
        &format!("pushing manifest {digest} to {}", r.whole()),
        |s| {
            s.rt.block_on(s.client.push_manifest_raw(r, body.clone(), ct.clone()))
        },
    )
    .map_err(|f| f.of(r.whole()))?;
    Ok(digest)
}

/// The blob as a stream of `item`-byte chunks; refuses to send more or
/// fewer bytes than the descriptor says.
fn blob_stream(
    reader: BlobReader,
    size: u64,
    item: usize,
    pb: Transfer,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, OciDistributionError>> + Send + 'static
{
    futures_util::stream::unfold((reader, 0u64, false), move |(mut r, sent, done)| {
        let pb = pb.clone();
        async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; item];
            let mut n = 0;
            while n < item {
                match r.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some((Err(OciDistributionError::IoError(e)), (r, sent, true)))
                    }
                }
            }
            if n == 0 {
                if sent != size {
                    let e = OciDistributionError::GenericError(Some(format!(
                        "the local blob has {sent} bytes, its descriptor says {size}"
                    )));
                    return Some((Err(e), (r, sent, true)));
                }
                return None;
            }
            buf.truncate(n);
            let sent = sent + n as u64;
            if sent > size {
                let e = OciDistributionError::GenericError(Some(format!(
                    "the local blob has more than the {size} bytes its descriptor says"
                )));
                return Some((Err(e), (r, sent, true)));
            }
            pb.set_position(sent);
            Some((Ok(Bytes::from(buf)), (r, sent, false)))
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn references() {
        let r = parse_reference("docker://127.0.0.1:5000/fixture/base:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "fixture/base");
        assert_eq!(r.tag(), Some("v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert!(parse_reference("docker://").is_err());
        for no_host in [
            "docker://nodes/base:1",
            "debian:12",
            "docker://library/debian",
        ] {
            let e = parse_reference(no_host).unwrap_err().to_string();
            assert!(e.contains("names no registry host"), "{e}");
        }
        assert!(parse_reference("localhost/x:y").is_ok());
        assert!(parse_reference("docker://Bad Name/x").is_err());
        let e = parse_reference(&format!("localhost:5000/x@sha256:{}", "A".repeat(64)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lowercase") || e.contains("not an image reference"),
            "{e}"
        );
    }

    #[test]
    fn loopback_only_for_plain_http() {
        for ok in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:1",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for bad in [
            "10.0.0.1:5000",
            "registry.example.org",
            "192.168.1.1",
            "0.0.0.0:80",
        ] {
            assert!(!is_loopback(bad), "{bad}");
        }
        assert!(check_insecure(&["127.0.0.1:5000".into()]).is_ok());
        let e = check_insecure(&["10.1.1.1:5000".into()]).unwrap_err();
        assert!(matches!(e, RegistryError::Usage(_)));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(check_insecure(&["http://127.0.0.1".into()]).is_err());
    }

    #[test]
    fn auth_files_are_read() {
        // "user:secret"
        let (hub, hub_host) = default_registry().unwrap();
        let text = format!(
            r#"{{"auths": {{"https://{hub_host}/v1/": {{"auth": "ZDpw"}}, "127.0.0.1:5000": {{"auth": "dXNlcjpzZWNyZXQ="}}}}}}"#
        );
        let text = text.as_str();
        match auth_in(text, "127.0.0.1:5000").unwrap() {
            Some(RegistryAuth::Basic(u, p)) => {
                assert_eq!((u.as_str(), p.as_str()), ("user", "secret"))
            }
            other => panic!("{other:?}"),
        }
        match auth_in(text, &hub).unwrap() {
            Some(RegistryAuth::Basic(u, p)) => assert_eq!((u.as_str(), p.as_str()), ("d", "p")),
            other => panic!("{other:?}"),
        }
        assert!(auth_in(text, "other:1").unwrap().is_none());
        assert!(auth_in("{}", "x").unwrap().is_none());
        assert!(auth_in("not json", "x")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        let bad = r#"{"auths": {"x": {"auth": "@@@"}}}"#;
        assert!(auth_in(bad, "x")
            .unwrap_err()
            .to_string()
            .contains("base64"));
        let nocolon = r#"{"auths": {"x": {"auth": "dXNlcg=="}}}"#;
        assert!(auth_in(nocolon, "x")
            .unwrap_err()
            .to_string()
            .contains("user:password"));
    }

    #[test]
    fn manifests_from_registries_are_checked() {
        let d = format!("sha256:{}", "b".repeat(64));
        let good = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{d}","size":3}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":10}}]}}"#
        );
        let m = parse_manifest(good.as_bytes()).unwrap();
        assert_eq!(m.config.size, 3);
        assert_eq!(m.layers[0].size, 10);
        assert!(parse_manifest(b"[")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        let neg = good.replace("\"size\":10", "\"size\":-1");
        assert!(parse_manifest(neg.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("layers[0]"));
        let baddigest = good.replace(&d, "sha256:xyz");
        assert!(parse_manifest(baddigest.as_bytes()).is_err());
        assert!(parse_manifest(b"{}")
            .unwrap_err()
            .to_string()
            .contains("config"));

        let idx = format!(
            r#"{{"manifests":[{{"digest":"{d}","size":5,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        assert_eq!(media_type_of(idx.as_bytes()), OCI_INDEX);
        assert_eq!(pick_platform(idx.as_bytes(), "arm64", "x").unwrap().size, 5);
        let e = pick_platform(idx.as_bytes(), "amd64", "x").unwrap_err();
        assert!(e.to_string().contains("linux/arm64"), "{e}");
    }

    #[test]
    fn absurd_blobs_are_refused_before_any_request() {
        let t = tempfile::tempdir().unwrap();
        let s = Session::new(&RegistryOptions {
            insecure: vec!["127.0.0.1:1".into()],
            cache_dir: None,
            meter: Meter::quiet(),
            offline: false,
        })
        .unwrap();
        let r = parse_reference("127.0.0.1:1/x:y").unwrap();
        let d = format!("sha256:{}", "c".repeat(64));
        let dest = t.path().join("blob");
        let e = s.download(&r, "x", &d, BLOB_MAX + 1, &dest).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        let e = s
            .download(&r, "x", "sha256:../../etc", 1, &dest)
            .unwrap_err();
        assert!(e.to_string().contains("64 lowercase hex"), "{e}");
        assert!(!dest.exists());
    }

    /// A registry on 127.0.0.1 answering every manifest request with the
    /// next of `answers` (then closing), `/v2/` with an empty 200.
    fn scripted(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            while let Ok((mut c, _)) = l.accept() {
                let mut req = [0u8; 4096];
                let n = c.read(&mut req).unwrap_or(0);
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                if !req.contains("/manifests/") {
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                seen.push(req);
                match answers.next() {
                    Some(a) => {
                        let _ = c.write_all(&a);
                    }
                    None => break,
                }
            }
            seen
        });
        (addr, h)
    }

    fn session_for(addr: &str) -> Session {
        let mut s = Session::new(&RegistryOptions {
            insecure: vec![addr.to_string()],
            cache_dir: None,
            meter: Meter::quiet(),
            offline: false,
        })
        .unwrap();
        s.policy.first_wait = Duration::from_millis(10);
        s
    }

    #[test]
    fn manifests_are_read_no_further_than_the_bound() {
        let ok = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            ok.len()
        )
        .into_bytes();
        answer.extend_from_slice(ok);
        // No length given: read until the bound, then refused.
        let mut endless = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        endless.resize(endless.len() + JSON_MAX + 4096, b' ');
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            3u64 << 30
        )
        .into_bytes();
        let unavailable =
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                .to_vec();
        let missing =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        let (addr, server) = scripted(vec![unavailable, answer.clone(), endless, huge, missing]);
        let s = session_for(&addr);
        let r = parse_reference(&format!("{addr}/x:y")).unwrap();
        // A server error is retried; the body comes back whole.
        assert_eq!(s.manifest(&r, "base").unwrap(), ok.to_vec());
        for _ in 0..2 {
            let e = s.manifest(&r, "base").unwrap_err().to_string();
            assert!(e.contains("more than 16 MiB"), "{e}");
            assert!(e.contains(&format!("{addr}/x:y")), "{e}");
        }
        let e = s.manifest(&r, "base").unwrap_err().to_string();
        assert!(
            e.contains("404") && e.contains("check the name and the tag"),
            "{e}"
        );
        drop(s);
        // Stop the server: one more connection finds no answer left.
        let _ = std::net::TcpStream::connect(&addr)
            .and_then(|mut c| c.write_all(b"GET /v2/x/manifests/y HTTP/1.1\r\n\r\n"));
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(seen[0].contains("GET /v2/x/manifests/y "), "{}", seen[0]);
        assert!(
            seen[0].to_ascii_lowercase().contains(OCI_INDEX),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn offline_pulls_use_the_verified_cache_alone() {
        let t = tempfile::tempdir().unwrap();
        let opts = RegistryOptions {
            insecure: vec!["127.0.0.1:1".into()],
            cache_dir: Some(t.path().to_path_buf()),
            meter: Meter::quiet(),
            offline: true,
        };
        let e = pull("docker://127.0.0.1:1/x:y", "amd64", &opts).unwrap_err();
        assert!(e.to_string().contains("--offline"), "{e}");
        assert!(e.to_string().contains("pin the base by digest"), "{e}");
        let d = format!("sha256:{}", "d".repeat(64));
        let e = pull(&format!("docker://127.0.0.1:1/x@{d}"), "amd64", &opts).unwrap_err();
        assert!(e.to_string().contains("is not in the cache"), "{e}");
        assert!(e.to_string().contains("without --offline"), "{e}");
        // Something else under the pinned digest's name: named, removed.
        let store = t.path().join("registry/blobs/sha256");
        let other = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        std::fs::write(store.join("d".repeat(64)), other).unwrap();
        let e = pull(&format!("docker://127.0.0.1:1/x@{d}"), "amd64", &opts).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(&store.join("d".repeat(64)).display().to_string()),
            "{m}"
        );
        assert!(m.contains("is damaged"), "{m}");
        assert!(!store.join("d".repeat(64)).exists());
    }

    fn collect(reader: BlobReader, size: u64, item: usize) -> Vec<Result<usize, String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            blob_stream(reader, size, item, Meter::quiet().bar("b", size))
                .map(|r| r.map(|b| b.len()).map_err(|e| chain(&e)))
                .collect::<Vec<_>>()
                .await
        })
    }

    #[test]
    fn blob_streams_send_exactly_the_descriptor_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b");
        std::fs::write(&p, vec![7u8; 10]).unwrap();
        let open = || BlobReader::Dir(File::open(&p).unwrap());
        assert_eq!(collect(open(), 10, 4), [Ok(4), Ok(4), Ok(2)]);
        assert_eq!(collect(open(), 10, 16), [Ok(10)]);
        let short = collect(open(), 12, 16);
        assert_eq!(short[0], Ok(10));
        assert!(short[1]
            .as_ref()
            .unwrap_err()
            .contains("descriptor says 12"));
        let long = collect(open(), 8, 4);
        assert_eq!(long[..2], [Ok(4), Ok(4)]);
        assert!(long[2]
            .as_ref()
            .unwrap_err()
            .contains("more than the 8 bytes"));
        assert_eq!(long.len(), 3);
    }

    #[test]
    fn messages_drop_upload_state() {
        assert_eq!(
            without_query("error sending request for url (http://h/v2/x/blobs/uploads/u?_state=abc&digest=d): reset"),
            "error sending request for url (http://h/v2/x/blobs/uploads/u): reset"
        );
        assert_eq!(without_query("why? no"), "why no");
        assert_eq!(without_query("plain"), "plain");
    }

    #[test]
    fn image_arguments_split() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("img");
        assert_eq!(
            split_image_arg(&format!("{}:v1", p.display())),
            (p.clone(), Some("v1".into()))
        );
        std::fs::create_dir(&p).unwrap();
        assert_eq!(split_image_arg(p.to_str().unwrap()), (p, None));
        assert_eq!(human(10), "10 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
