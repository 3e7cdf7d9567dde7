//! The errors of registries: each keeps the error beneath it as its source,
//! and says the same sentence as the image errors it turns into.

use std::path::PathBuf;

use oci_client::errors::OciDistributionError;
use oci_client::ParseError;

/// Result alias for this crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What can go wrong pulling from or pushing to a registry. Every variant
/// but the command-line ones, [`RegistryError::Io`],
/// [`RegistryError::Upload`] (the destination first) and
/// [`RegistryError::Image`] starts its message with `what`: the image as
/// the user named it. [`RegistryError::exit_code`] says 2 for command-line
/// mistakes, 1 for the rest.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The command line is wrong (a refused insecure registry, a push
    /// destination naming a digest, no cache directory). Exit 2.
    #[error("{0}")]
    Usage(String),
    /// A reference on the command line (or a base) does not parse. Exit 2.
    #[error("{role}{source}")]
    Reference {
        /// What the reference is for, with its separator:
        /// `push destination `, or nothing.
        role: &'static str,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// `--mount-from` does not name a repository. Exit 2.
    #[error("--mount-from {repository:?}: {source}")]
    MountFrom {
        /// The repository as given.
        repository: String,
        /// The reference parser's error.
        #[source]
        source: ParseError,
    },
    /// An auth file naming the registry is not valid. Exit 2.
    #[error("{}: {source}; fix the file or point REGISTRY_AUTH_FILE at another", .file.display())]
    AuthFile {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        #[source]
        source: AuthFileError,
    },
    /// A request to the registry failed for good (after `attempts`).
    #[error("{what}: {action}: {}{}", crate::chain(.source), tries(.attempts))]
    Request {
        /// The image.
        what: String,
        /// What was asked: `downloading blob D`, `checking blob D`...
        action: String,
        /// Attempts made.
        attempts: u32,
        /// The client's error (its causes are part of the message).
        #[source]
        source: OciDistributionError,
    },
    /// Fetching a manifest failed for good (after `attempts`).
    #[error("{what}: {action}: {source}{}", tries(.attempts))]
    Fetch {
        /// The image.
        what: String,
        /// `fetching the manifest of REF`.
        action: String,
        /// Attempts made.
        attempts: u32,
        /// Why.
        #[source]
        source: crate::Fetch,
    },
    /// A blob of the image to push could not be opened for an upload.
    #[error(transparent)]
    Upload(Box<UploadError>),
    /// A JSON document from a registry or an image is not valid.
    #[error("{what}: {item}{source}")]
    Json {
        /// The image.
        what: String,
        /// What the document is, with its separator: `index D is not JSON: `.
        item: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest from a registry or an image is not one.
    #[error("{what}: manifest {digest}: {source}")]
    Manifest {
        /// The image.
        what: String,
        /// The manifest's digest.
        digest: String,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// A descriptor of an image index from a registry is not valid.
    #[error("{what}: {source}")]
    Descriptor {
        /// The image.
        what: String,
        /// What is wrong with it.
        #[source]
        source: DescriptorError,
    },
    /// A digest to fetch is not a sha256 digest.
    #[error("{what}: {source}")]
    Digest {
        /// The image.
        what: String,
        /// The digest.
        #[source]
        source: DigestError,
    },
    /// The OCI layout library could not read an image to push.
    #[error("{what}: {item}{}", nodeimg_image::base::oci_msg(.source))]
    Layout {
        /// The image.
        what: String,
        /// What was read, with its separator: `D: `, `cannot read index.json: `.
        item: String,
        /// The library error (its causes are part of the message).
        #[source]
        source: ocidir::Error,
    },
    /// The folder of an image to push could not be opened.
    #[error("{what}: cannot open: {source}")]
    Open {
        /// The image.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a blob of an image to push failed.
    #[error("{what}: {item}{source}")]
    Read {
        /// The image.
        what: String,
        /// The blob, with its separator: `D: `.
        item: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O operation (on the cache, a temporary file) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something sent or read is refused, and no underlying error says more
    /// than the reason.
    #[error("{what}: {}{reason}", refetched(.refetch))]
    Refused {
        /// The image.
        what: String,
        /// Why the blob was fetched again after the cache failed to serve
        /// it, when it was.
        refetch: Option<Box<CacheMiss>>,
        /// Why.
        reason: Refusal,
    },
    /// An error of the image crate (a descriptor).
    #[error(transparent)]
    Image(#[from] nodeimg_image::Error),
}

/// ` (after N attempts)` when there were several, else nothing.
fn tries(attempts: &u32) -> String {
    if *attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// The blob of an image to push that could not be opened for an upload.
#[derive(Debug, thiserror::Error)]
#[error(
    "{dest}: {action}: {what}: blob {digest}: {}{}",
    nodeimg_image::base::oci_msg(.source),
    tries(.attempts)
)]
pub struct UploadError {
    /// The destination (`HOST/REPO:TAG`).
    pub dest: String,
    /// `uploading blob D`.
    pub action: String,
    /// The local image.
    pub what: String,
    /// The blob.
    pub digest: String,
    /// Attempts made.
    pub attempts: u32,
    /// The library error (its causes are part of the message).
    #[source]
    pub source: ocidir::Error,
}

/// `WHY; fetching it again failed: `, or nothing.
fn refetched(note: &Option<Box<CacheMiss>>) -> String {
    match note {
        Some(why) => format!("{why}; fetching it again failed: "),
        None => String::new(),
    }
}

impl RegistryError {
    /// `what` is refused for `reason`.
    pub(crate) fn refused(what: impl Into<String>, reason: Refusal) -> Self {
        RegistryError::Refused {
            what: what.into(),
            refetch: None,
            reason,
        }
    }

    /// An I/O error while doing `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for command-line mistakes,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RegistryError::Usage(_)
            | RegistryError::Reference { .. }
            | RegistryError::MountFrom { .. }
            | RegistryError::AuthFile { .. } => 2,
            RegistryError::Image(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// Attach a context sentence to I/O results.
pub(crate) trait IoContext<T> {
    /// Wrap an I/O error with `context` (computed only on error).
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| RegistryError::io(context(), source))
    }
}

/// At the boundary with the image crate (its `Puller` trait and the
/// callers that expect its error): the same sentence, the causes kept. A
/// command-line mistake becomes the image crate's usage error (exit 2),
/// which holds its sentence alone.
impl From<RegistryError> for nodeimg_image::Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Usage(m) => nodeimg_image::Error::Usage(m),
            RegistryError::Image(e) => e,
            e if e.exit_code() == 2 => nodeimg_image::Error::Usage(e.to_string()),
            e => nodeimg_image::Error::External(Box::new(e)),
        }
    }
}

/// Why a registry reference is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing after the prefix.
    #[error("{input:?} names no image")]
    Empty {
        /// The reference as given.
        input: String,
    },
    /// No registry host: there is no implicit default registry.
    #[error(
        "{input:?} names no registry host; write HOST[:PORT]/REPO:TAG (e.g. 127.0.0.1:5000/{rest})"
    )]
    NoHost {
        /// The reference as given.
        input: String,
        /// The reference without its prefix.
        rest: String,
    },
    /// The reference parser refused it.
    #[error(
        "{input:?} is not an image reference ({source}); write HOST[:PORT]/REPO:TAG or \
         HOST[:PORT]/REPO@sha256:HEX"
    )]
    Invalid {
        /// The reference as given.
        input: String,
        /// The parser's error.
        #[source]
        source: ParseError,
    },
    /// The digest it pins is not a sha256 digest.
    #[error("{input:?}: {source}")]
    Digest {
        /// The reference as given.
        input: String,
        /// The digest.
        #[source]
        source: DigestError,
    },
}

/// A digest that is not `sha256:` and 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("digest {0:?} is not sha256:<64 lowercase hex digits>")]
pub struct DigestError(pub String);

/// Why an auth file is not valid.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file does not parse.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// An `auth` value is not base64.
    #[error("auths.{key}.auth is not base64: {source}")]
    NotBase64 {
        /// The registry's key.
        key: String,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// An `auth` value decodes to bytes that are not UTF-8 (the decoder's
    /// position of the first bad byte is not part of the sentence).
    #[error("auths.{key}.auth is not UTF-8")]
    NotUtf8 {
        /// The registry's key.
        key: String,
    },
    /// An `auth` value has no `:` between user and password.
    #[error("auths.{key}.auth is not base64 of user:password")]
    NotUserPassword {
        /// The registry's key.
        key: String,
    },
}

/// Why a descriptor in a manifest or an index from a registry is refused.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    /// No `digest` string.
    #[error("{key} has no digest")]
    NoDigest {
        /// Where the descriptor is: `config`, `layers[2]`, `manifests[0]`.
        key: String,
    },
    /// A digest that is not sha256.
    #[error("{key}: {source}")]
    Digest {
        /// Where the descriptor is.
        key: String,
        /// The digest.
        #[source]
        source: DigestError,
    },
    /// No `size`, or not a non-negative integer.
    #[error("{key} has no size (a non-negative integer)")]
    NoSize {
        /// Where the descriptor is.
        key: String,
    },
}

/// Why a manifest is refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It does not parse.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// No `config` descriptor.
    #[error("the manifest has no config")]
    NoConfig,
    /// No `layers` list.
    #[error("the manifest has no layers list")]
    NoLayers,
    /// A descriptor is not valid.
    #[error("{0}")]
    Descriptor(#[source] DescriptorError),
}

/// Why the cache cannot serve a blob.
#[derive(Debug, thiserror::Error)]
pub enum CacheMiss {
    /// A manifest pinned by digest is asked of the registry first.
    #[error("the registry is asked first for a pinned manifest")]
    Pinned,
    /// The blob is not there.
    #[error("blob {digest} is not in the cache ({})", .path.display())]
    Absent {
        /// The blob.
        digest: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// Something else was there, and was removed.
    #[error("the cached blob {} ({why}) is damaged and was removed", .path.display())]
    Damaged {
        /// Where.
        path: PathBuf,
        /// What was there.
        why: String,
    },
}

/// A condition that makes what a registry sent, or an image to push,
/// unusable; nothing beneath it says more.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A manifest fetched by digest hashes to another.
    #[error(
        "the registry sent a manifest that does not match {expected} (found {found}); \
         the registry or something between is corrupt"
    )]
    ManifestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        found: String,
    },
    /// A manifest is not the size its index says.
    #[error("the registry sent {sent} bytes for manifest {digest}, its index says {listed}")]
    ManifestSize {
        /// The manifest.
        digest: String,
        /// The bytes received.
        sent: usize,
        /// The size in the index.
        listed: u64,
    },
    /// The manifest an index names does not hash to its digest.
    #[error("manifest {digest} does not match its digest")]
    ManifestDigest {
        /// The manifest.
        digest: String,
    },
    /// A blob claims an absurd size.
    #[error("blob {digest} claims {size} bytes; refusing")]
    BlobTooLarge {
        /// The blob.
        digest: String,
        /// Its claimed size.
        size: u64,
    },
    /// A downloaded blob does not match its descriptor.
    #[error(
        "the registry sent a blob that does not match {digest} (found {found}, \
         {received} of {size} bytes); nothing was cached. The registry's storage or a \
         proxy in between is corrupt: repair it or pull from another registry"
    )]
    BlobMismatch {
        /// The blob.
        digest: String,
        /// The digest of what came.
        found: String,
        /// The bytes received.
        received: u64,
        /// The descriptor's size.
        size: u64,
    },
    /// An image index without its list of manifests.
    #[error("the image index has no manifests list")]
    NoManifests,
    /// No image of the index is for `linux/ARCH`.
    #[error(
        "has no linux/{arch} image (its platforms: {}); set image.architecture to one of them",
        .platforms.join(", ")
    )]
    NoPlatform {
        /// The architecture wanted.
        arch: String,
        /// `os/arch` of every entry.
        platforms: Vec<String>,
    },
    /// The platform's entry of an index is itself an index.
    #[error("an image index names another index; not supported")]
    NestedIndex,
    /// `--offline` and a blob the cache cannot serve.
    #[error(
        "{0}, and --offline allows no download: build once without --offline with the same \
         --cache-dir to fetch it again"
    )]
    Offline(CacheMiss),
    /// `--offline` and a reference by tag.
    #[error(
        "--offline: a tag can only be resolved by the registry; pin the base by digest \
         (HOST/REPO@sha256:..., the digest a build online prints as `pulled ... (sha256:...)`) \
         or build without --offline"
    )]
    OfflineTag,
    /// A JSON blob of an image to push is larger than is read whole.
    #[error("{digest} is {size} bytes; too large")]
    JsonTooLarge {
        /// The blob.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// A JSON blob of an image to push does not hash to its digest.
    #[error("{digest} does not match its digest (found {found}); the image is damaged")]
    Damaged {
        /// The blob.
        digest: String,
        /// The digest of what was read.
        found: String,
    },
    /// The image has no tag of that name.
    #[error("has no tag {tag:?}; its tags: {}", .tags.join(", "))]
    NoTag {
        /// The tag asked for.
        tag: String,
        /// The image's tags.
        tags: Vec<String>,
    },
    /// The image's index lists nothing.
    #[error("index.json lists no image")]
    EmptyIndex,
    /// A media type that cannot be sent as a header.
    #[error("media type {0:?} is not a valid header value")]
    MediaType(String),
    /// The registry computed another digest for a pushed manifest.
    #[error("pushed manifest {pushed} differs from {digest}")]
    PushedDigest {
        /// The digest the registry gave.
        pushed: String,
        /// The manifest's digest.
        digest: String,
    },
    /// The tag serves another manifest than the one pushed.
    #[error(
        "the registry serves {served} after pushing {pushed}; another push raced this one, \
         or the registry rewrote the manifest"
    )]
    Raced {
        /// The digest served.
        served: String,
        /// The digest pushed.
        pushed: String,
    },
}

/// A failed retried operation: the last error and ` (after N attempts)`.
pub(crate) struct Retried<E> {
    /// What was attempted.
    pub(crate) action: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// The last error.
    pub(crate) error: E,
}

impl Retried<OciDistributionError> {
    /// The registry error of `what` this failure is.
    pub(crate) fn of(self, what: impl Into<String>) -> RegistryError {
        RegistryError::Request {
            what: what.into(),
            action: self.action,
            attempts: self.attempts,
            source: self.error,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn errors_keep_their_cause_and_the_image_sentence() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let shown = json.to_string();
        let e = RegistryError::Json {
            what: "img".into(),
            item: "index sha256:ab is not JSON: ".into(),
            source: json,
        };
        assert_eq!(
            e.to_string(),
            format!("img: index sha256:ab is not JSON: {shown}")
        );
        assert!(e.source().unwrap().is::<serde_json::Error>());
        let sentence = e.to_string();
        let image: nodeimg_image::Error = e.into();
        assert_eq!(image.to_string(), sentence);
        assert_eq!(image.exit_code(), 1);
        assert!(
            image.source().unwrap().is::<serde_json::Error>(),
            "the cause survives the image crate's boundary"
        );

        let e = Retried {
            action: "checking blob sha256:ab".into(),
            attempts: 3,
            error: OciDistributionError::GenericError(Some("refused".into())),
        };
        let e = e.of("reg/x:1");
        assert_eq!(
            e.to_string(),
            "reg/x:1: checking blob sha256:ab: refused (after 3 attempts)"
        );
        assert!(e.source().unwrap().is::<OciDistributionError>());

        let usage: nodeimg_image::Error = RegistryError::Usage("bad".into()).into();
        assert_eq!(usage.exit_code(), 2);
        assert_eq!(usage.to_string(), "bad");
    }

    /// The errors beneath an error, nearest first.
    fn causes<'a>(
        e: &'a (dyn std::error::Error + 'static),
    ) -> Vec<&'a (dyn std::error::Error + 'static)> {
        let mut out = Vec::new();
        let mut next = e.source();
        while let Some(c) = next {
            out.push(c);
            next = c.source();
        }
        out
    }

    #[test]
    fn a_manifest_that_is_not_json_keeps_the_parse_error() {
        let shown = serde_json::from_slice::<serde_json::Value>(b"[")
            .unwrap_err()
            .to_string();
        let e = RegistryError::Manifest {
            what: "reg/x:1".into(),
            digest: "sha256:ab".into(),
            source: crate::parse_manifest(b"[").unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            format!("reg/x:1: manifest sha256:ab: not JSON: {shown}")
        );
        assert!(matches!(
            e.source().unwrap().downcast_ref::<ManifestError>(),
            Some(ManifestError::NotJson(_))
        ));
        assert!(causes(&e)[1].is::<serde_json::Error>());
        // Across the image crate's boundary: the same sentence and causes.
        let sentence = e.to_string();
        let image: nodeimg_image::Error = e.into();
        assert_eq!((image.to_string(), image.exit_code()), (sentence, 1));
        assert!(causes(&image).iter().any(|c| c.is::<serde_json::Error>()));
    }

    #[test]
    fn a_failed_request_keeps_the_client_error_and_what_is_beneath() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Retried {
            action: "downloading blob sha256:ab".into(),
            attempts: 6,
            error: OciDistributionError::IoError(reset),
        }
        .of("reg/x:1");
        assert_eq!(
            e.to_string(),
            "reg/x:1: downloading blob sha256:ab: reset by peer (after 6 attempts)"
        );
        match e.source().unwrap().downcast_ref::<OciDistributionError>() {
            Some(OciDistributionError::IoError(io)) => {
                assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset)
            }
            other => panic!("{other:?}"),
        }

        let body = crate::Fetch::Body(std::io::Error::other("cut"));
        let e = RegistryError::Fetch {
            what: "base".into(),
            action: "fetching the manifest of reg/x:1".into(),
            attempts: 1,
            source: body,
        };
        assert_eq!(
            e.to_string(),
            "base: fetching the manifest of reg/x:1: reading the answer: cut; \
             check the name of the registry and the network"
        );
        assert!(causes(&e)[1].is::<std::io::Error>());
    }

    #[test]
    fn a_blob_that_cannot_be_opened_for_upload_keeps_the_layout_error() {
        let e = Retried {
            action: "uploading blob sha256:ab".into(),
            attempts: 1,
            error: crate::Upload::Open(ocidir::Error::Io(std::io::Error::other("gone"))),
        }
        .of("reg/x:1".into(), "img:v1", "sha256:ab");
        let layout = e.source().unwrap().downcast_ref::<ocidir::Error>().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "reg/x:1: uploading blob sha256:ab: img:v1: blob sha256:ab: {}",
                nodeimg_image::base::oci_msg(layout)
            )
        );
    }

    #[test]
    fn command_line_mistakes_exit_2_and_keep_their_cause() {
        let e = RegistryError::Reference {
            role: "push destination ",
            source: crate::parse_reference("127.0.0.1:1/x@sha256:abc").unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            "push destination \"127.0.0.1:1/x@sha256:abc\" is not an image reference \
             (invalid reference format); write HOST[:PORT]/REPO:TAG or \
             HOST[:PORT]/REPO@sha256:HEX"
        );
        assert_eq!(e.exit_code(), 2);
        assert!(causes(&e)[1].is::<ParseError>());
        let e = RegistryError::AuthFile {
            file: "/run/auth.json".into(),
            source: crate::auth_in(r#"{"auths": {"x": {"auth": "@@@"}}}"#, "x").unwrap_err(),
        };
        assert!(causes(&e)[1].is::<base64::DecodeError>());
        let sentence = e.to_string();
        assert!(
            sentence.starts_with("/run/auth.json: auths.x.auth is not base64: ")
                && sentence.ends_with("; fix the file or point REGISTRY_AUTH_FILE at another"),
            "{sentence}"
        );
        let image: nodeimg_image::Error = e.into();
        assert_eq!((image.to_string(), image.exit_code()), (sentence, 2));
        let e = RegistryError::MountFrom {
            repository: "Bad".into(),
            source: ParseError::NameContainsUppercase,
        };
        assert_eq!(
            e.to_string(),
            "--mount-from \"Bad\": repository name must be lowercase"
        );
        assert_eq!(e.exit_code(), 2);
        let e = RegistryError::io("creating /c", std::io::Error::other("full"));
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("creating /c: full", 1)
        );
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one table of every refusal and its sentence"
    )]
    fn refusals_say_the_sentences_they_always_said() {
        let d = "sha256:ab";
        let cases = [
            (
                Refusal::ManifestMismatch {
                    expected: d.into(),
                    found: "sha256:cd".into(),
                },
                "the registry sent a manifest that does not match sha256:ab (found sha256:cd); \
                 the registry or something between is corrupt",
            ),
            (
                Refusal::ManifestSize {
                    digest: d.into(),
                    sent: 3,
                    listed: 4,
                },
                "the registry sent 3 bytes for manifest sha256:ab, its index says 4",
            ),
            (
                Refusal::ManifestDigest { digest: d.into() },
                "manifest sha256:ab does not match its digest",
            ),
            (
                Refusal::BlobTooLarge {
                    digest: d.into(),
                    size: 9,
                },
                "blob sha256:ab claims 9 bytes; refusing",
            ),
            (
                Refusal::NoManifests,
                "the image index has no manifests list",
            ),
            (
                Refusal::NoPlatform {
                    arch: "s390x".into(),
                    platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
                },
                "has no linux/s390x image (its platforms: linux/amd64, linux/arm64); \
                 set image.architecture to one of them",
            ),
            (
                Refusal::NestedIndex,
                "an image index names another index; not supported",
            ),
            (
                Refusal::JsonTooLarge {
                    digest: d.into(),
                    size: 7,
                },
                "sha256:ab is 7 bytes; too large",
            ),
            (
                Refusal::Damaged {
                    digest: d.into(),
                    found: "sha256:cd".into(),
                },
                "sha256:ab does not match its digest (found sha256:cd); the image is damaged",
            ),
            (
                Refusal::NoTag {
                    tag: "v2".into(),
                    tags: vec!["v1".into(), "v3".into()],
                },
                "has no tag \"v2\"; its tags: v1, v3",
            ),
            (Refusal::EmptyIndex, "index.json lists no image"),
            (
                Refusal::MediaType("a\nb".into()),
                "media type \"a\\nb\" is not a valid header value",
            ),
            (
                Refusal::PushedDigest {
                    pushed: "sha256:cd".into(),
                    digest: d.into(),
                },
                "pushed manifest sha256:cd differs from sha256:ab",
            ),
            (
                Refusal::Raced {
                    served: "sha256:cd".into(),
                    pushed: d.into(),
                },
                "the registry serves sha256:cd after pushing sha256:ab; another push raced \
                 this one, or the registry rewrote the manifest",
            ),
        ];
        for (reason, sentence) in cases {
            let e = RegistryError::refused("img", reason);
            assert_eq!(e.to_string(), format!("img: {sentence}"));
            assert!(e.source().is_none(), "a refusal has nothing beneath it");
        }
    }

    #[test]
    fn a_refetch_after_a_damaged_cache_entry_says_both() {
        let e = RegistryError::Refused {
            what: "reg/x:1".into(),
            refetch: Some(Box::new(CacheMiss::Damaged {
                path: "/c/ab".into(),
                why: "3 bytes instead of 4".into(),
            })),
            reason: Refusal::BlobMismatch {
                digest: "sha256:ab".into(),
                found: "sha256:cd".into(),
                received: 4,
                size: 4,
            },
        };
        assert_eq!(
            e.to_string(),
            "reg/x:1: the cached blob /c/ab (3 bytes instead of 4) is damaged and was removed; \
             fetching it again failed: the registry sent a blob that does not match sha256:ab \
             (found sha256:cd, 4 of 4 bytes); nothing was cached. The registry's storage or a \
             proxy in between is corrupt: repair it or pull from another registry"
        );
        let offline = RegistryError::refused(
            "reg/x@sha256:ab",
            Refusal::Offline(CacheMiss::Absent {
                digest: "sha256:ab".into(),
                path: "/c/ab".into(),
            }),
        );
        assert_eq!(
            offline.to_string(),
            "reg/x@sha256:ab: blob sha256:ab is not in the cache (/c/ab), and --offline allows \
             no download: build once without --offline with the same --cache-dir to fetch it \
             again"
        );
        assert_eq!(
            RegistryError::refused("r", Refusal::OfflineTag).to_string(),
            "r: --offline: a tag can only be resolved by the registry; pin the base by digest \
             (HOST/REPO@sha256:..., the digest a build online prints as `pulled ... \
             (sha256:...)`) or build without --offline"
        );
    }
}
