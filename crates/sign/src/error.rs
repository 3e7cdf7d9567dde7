//! The errors of signing and verifying: each keeps the error beneath it.

use std::path::PathBuf;

use nodeimg_registry::RegistryError;

/// Why a key cannot be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No `-----BEGIN ...-----` line.
    #[error("no PEM block (-----BEGIN ...-----) in it; give a PEM key file")]
    NoPem,
    /// The PEM block does not decode.
    #[error("the PEM block is damaged: {0}")]
    Pem(#[source] pkcs8::der::Error),
    /// A PEM block of a kind that is not read here.
    #[error("a {label:?} PEM block is not a key nodeimg reads; {hint}")]
    Label {
        /// The label found.
        label: String,
        /// What to give instead.
        hint: &'static str,
    },
    /// A key of another curve or algorithm.
    #[error(
        "the key is {kind}, not an ECDSA P-256 key; signatures here are ECDSA P-256 with SHA-256 \
         as cosign makes them: make a key with `nodeimg keygen` or `openssl genpkey -algorithm \
         EC -pkeyopt ec_paramgen_curve:P-256`"
    )]
    Curve {
        /// What it is (`an ECDSA P-384 (secp384r1) key`, `an RSA key`).
        kind: String,
    },
    /// The DER of a private key is not PKCS#8.
    #[error("not a PKCS#8 private key: {0}")]
    Pkcs8(#[source] pkcs8::Error),
    /// The DER of a public key is not a SubjectPublicKeyInfo.
    #[error("not a public key (SubjectPublicKeyInfo): {0}")]
    Spki(#[source] pkcs8::spki::Error),
    /// An encrypted key and no password.
    #[error(
        "the key is encrypted: set {} (or {}) to its password",
        crate::keys::PASSWORD_ENV,
        crate::keys::COSIGN_PASSWORD_ENV
    )]
    NeedPassword,
    /// The password does not open the key (or the key was changed).
    #[error(
        "wrong password: the key does not decrypt with it (or the file was changed); check {} \
         (or {})",
        crate::keys::PASSWORD_ENV,
        crate::keys::COSIGN_PASSWORD_ENV
    )]
    WrongPassword,
    /// The encrypted key's document is not JSON of cosign's format.
    #[error("the encrypted key is not cosign's format: {0}")]
    Json(#[source] serde_json::Error),
    /// A field of the encrypted key is not base64.
    #[error("the encrypted key's {field} is not base64: {source}")]
    Base64 {
        /// Which field.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// Something of the encrypted key's format that is not supported.
    #[error("the encrypted key uses {what}, which cosign's format does not")]
    Unsupported {
        /// What.
        what: String,
    },
    /// The system's random numbers could not be read.
    #[error("reading random numbers from the system: {0}")]
    Random(#[source] rand_core::Error),
}

/// Why a signature or attestation does not verify (a verdict, not a failure
/// of the command: [`crate::remote::Verification`] lists them).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The layer has no signature annotation.
    #[error("no {0} annotation")]
    NoSignature(&'static str),
    /// The signature is not base64.
    #[error("the signature is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The signature does not verify with the key.
    #[error("the signature does not verify with the key")]
    BadSignature,
    /// The signed payload is not what it must be.
    #[error("the signed payload {0}")]
    Payload(String),
    /// It names another image.
    #[error("it is for {found}, not {expected}")]
    OtherImage {
        /// The digest it names.
        found: String,
        /// The image's digest.
        expected: String,
    },
    /// Its blob could not be read, or is too large.
    #[error("{0}")]
    Blob(#[source] RegistryError),
}

/// Why the signature or attestation manifest under a tag cannot be added
/// to.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// Not an image manifest.
    #[error("not an image manifest ({0})")]
    NotManifest(String),
    /// A layer without digest or size.
    #[error("layers[{0}] has no digest or size")]
    Layer(usize),
    /// More layers than are read.
    #[error("{0} layers; more than the {max} read", max = crate::layout::MAX_LAYERS)]
    TooMany(usize),
}

/// What can go wrong signing, attesting or verifying. [`SignError::exit_code`]:
/// 2 for command-line mistakes and keys that cannot be used, the registry's
/// code for its errors, 1 for the rest.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// A key file could not be read.
    #[error("{}: {source}", .path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file holds no key that can be used.
    #[error("{}: {source}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A key could not be made.
    #[error("making a key: {0}")]
    Keygen(#[source] KeyError),
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// What a tag holds cannot be added to (it is not a signature or
    /// attestation manifest): nothing was changed.
    #[error(
        "{reference}: {source}: not a signature manifest that can be read or added to; nothing \
         was pushed under it (move or delete what is there, or sign in another repository)"
    )]
    Attachments {
        /// `HOST/REPO:sha256-HEX.sig`.
        reference: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// The registry has no manifest of the digest just pushed.
    #[error(
        "{repository}: the registry has no manifest {digest}, which was just pushed there; \
         another client removed it, or the registry lost it: push again"
    )]
    Missing {
        /// `HOST/REPO`.
        repository: String,
        /// The digest.
        digest: String,
    },
}

impl SignError {
    /// The process exit code: 2 for command-line mistakes and keys (a file
    /// that cannot be read, a wrong password, another curve), the
    /// registry's code for its errors (2 for its command-line mistakes,
    /// else 1), 1 for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            SignError::Usage(_) | SignError::ReadKey { .. } | SignError::Key { .. } => 2,
            SignError::Registry(e) => e.exit_code(),
            _ => 1,
        }
    }

    /// Whether the registry could not be asked (a network, credential or
    /// registry failure), as opposed to a verdict or a local mistake.
    pub fn is_registry_failure(&self) -> bool {
        matches!(self, SignError::Registry(e) if e.exit_code() != 2)
    }
}

/// Result alias for this crate.
pub type Result<T, E = SignError> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn exit_codes_and_causes() {
        let key = SignError::Key {
            path: "k.pem".into(),
            source: KeyError::WrongPassword,
        };
        assert_eq!(key.exit_code(), 2);
        assert!(
            key.to_string().starts_with("k.pem: wrong password"),
            "{key}"
        );
        assert!(key.source().unwrap().is::<KeyError>());
        assert!(!key.is_registry_failure());
        let missing = SignError::Missing {
            repository: "h/r".into(),
            digest: "sha256:ab".into(),
        };
        assert_eq!(missing.exit_code(), 1);
        let usage = SignError::from(RegistryError::Usage("bad".into()));
        assert_eq!(usage.exit_code(), 2);
        assert!(!usage.is_registry_failure());
        let down = SignError::from(RegistryError::Io {
            context: "x".into(),
            source: std::io::Error::other("down"),
        });
        assert_eq!(down.exit_code(), 1);
        assert!(down.is_registry_failure());
        let refused = SignError::Attachments {
            reference: "h/r:sha256-ab.sig".into(),
            source: LayoutError::NotManifest("an image index".into()),
        };
        assert_eq!(refused.exit_code(), 1);
        assert!(
            refused.to_string().contains("nothing was pushed"),
            "{refused}"
        );
        assert!(refused.source().unwrap().is::<LayoutError>());
    }
}
