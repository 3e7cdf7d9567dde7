//! OpenPGP verification: the keyring a recipe names (armored or binary
//! public keys) and signatures over bytes already fetched checked against
//! it, strong digests only. Shared by every package backend.

use chrono::{DateTime, Utc};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicKeyTrait};

/// Why a keyring cannot be read or a signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "keyring {keyring}: {reason}; give the repository's public key (armored or binary OpenPGP)"
    )]
    Keyring { keyring: String, reason: String },
    #[error("{file}: not signed: {reason}; the repository must publish InRelease or Release with Release.gpg")]
    Unsigned { file: String, reason: String },
    #[error("{file}: signed by {issuers}, not by a key of keyring {keyring} ({keys}); give the key this repository is signed with")]
    WrongKey {
        file: String,
        issuers: String,
        keyring: String,
        keys: String,
    },
    #[error("{file}: the signature by {key} does not verify ({reason}): the file was modified or corrupted")]
    BadSignature {
        file: String,
        key: String,
        reason: String,
    },
    #[error("{file}: signed by {key} with the weak digest {algorithm}; only SHA-2 or stronger signatures are accepted")]
    WeakDigest {
        file: String,
        key: String,
        algorithm: String,
    },
    #[error("{file}: the signing key {key} expired at {expired}")]
    KeyExpired {
        file: String,
        key: String,
        expired: String,
    },
}

/// The public keys one source trusts. A signature by any other key is refused.
#[derive(Debug, Clone)]
pub struct Keyring {
    label: String,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads one or more public keys, armored or binary. `label` names the keyring in errors.
    pub fn from_bytes(bytes: &[u8], label: &str) -> Result<Self, SignatureError> {
        let err = |reason: String| SignatureError::Keyring {
            keyring: label.to_string(),
            reason,
        };
        let mut keys = Vec::new();
        let trimmed = trim_ascii_start(bytes);
        if trimmed.starts_with(b"-----BEGIN") {
            // An armored file may hold several blocks one after another.
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| err("armored keyring is not UTF-8".into()))?;
            for block in split_armor_blocks(text) {
                let (iter, _) = SignedPublicKey::from_string_many(block)
                    .map_err(|e| err(format!("cannot parse: {e}")))?;
                for key in iter {
                    keys.push(key.map_err(|e| err(format!("cannot parse a key: {e}")))?);
                }
            }
        } else {
            let iter = SignedPublicKey::from_bytes_many(trimmed)
                .map_err(|e| err(format!("cannot parse: {e}")))?;
            for key in iter {
                keys.push(key.map_err(|e| err(format!("cannot parse a key: {e}")))?);
            }
        }
        if keys.is_empty() {
            return Err(err("holds no public key".into()));
        }
        // The keys are trusted because the recipe names them (as gpgv trusts its keyring); user-ID
        // certifications, often by third parties in real keyrings, are not checked. Signing
        // subkeys are only used when their binding to the primary key verifies.
        Ok(Self {
            label: label.to_string(),
            keys,
        })
    }

    /// Upper-case hex fingerprints of the primary keys, in keyring order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint_hex(&k.fingerprint()))
            .collect()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Checks that one of `signatures` is a valid, strong signature over `data` by a key of this
    /// keyring (a primary key or a signing subkey bound to it); returns that key's fingerprint.
    pub fn verify(
        &self,
        signatures: &[Signature],
        data: &[u8],
        now: DateTime<Utc>,
        file: &str,
    ) -> Result<String, SignatureError> {
        if signatures.is_empty() {
            return Err(SignatureError::Unsigned {
                file: file.to_string(),
                reason: "no signature packet".into(),
            });
        }
        let mut first_failure: Option<SignatureError> = None;
        let mut issuers = Vec::new();
        for sig in signatures {
            for id in sig.issuer_fingerprint() {
                issuers.push(fingerprint_hex(id));
            }
            for id in sig.issuer() {
                issuers.push(id.to_string().to_uppercase());
            }
            if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
                continue;
            }
            for key in &self.keys {
                let primary_fp = fingerprint_hex(&key.fingerprint());
                // The primary key and every signing subkey bound to it that the signature names
                // (or all of them when it names none); one valid signature is enough.
                let mut outcomes = Vec::new();
                if matches_identity(sig, key) {
                    outcomes.push(check_one(sig, key, data));
                }
                for sub in &key.public_subkeys {
                    if !matches_identity(sig, sub) {
                        continue;
                    }
                    let bound = sub.verify(&key.primary_key).is_ok()
                        && sub.signatures.iter().any(|s| s.key_flags().sign());
                    if bound {
                        outcomes.push(check_one(sig, sub, data));
                    }
                }
                let outcome = match outcomes.iter().position(Result::is_ok) {
                    Some(i) => outcomes.swap_remove(i),
                    None if outcomes.is_empty() => continue,
                    None => outcomes.swap_remove(0),
                };
                let failure = match outcome {
                    Ok(()) => match key.expires_at() {
                        Some(at) if at <= now => SignatureError::KeyExpired {
                            file: file.to_string(),
                            key: primary_fp,
                            expired: at.to_rfc2822(),
                        },
                        _ => return Ok(primary_fp),
                    },
                    Err(Check::Weak(alg)) => SignatureError::WeakDigest {
                        file: file.to_string(),
                        key: primary_fp,
                        algorithm: alg.to_string(),
                    },
                    Err(Check::Bad(reason)) => SignatureError::BadSignature {
                        file: file.to_string(),
                        key: primary_fp,
                        reason,
                    },
                };
                first_failure.get_or_insert(failure);
            }
        }
        if let Some(failure) = first_failure {
            return Err(failure);
        }
        issuers.sort();
        issuers.dedup();
        Err(SignatureError::WrongKey {
            file: file.to_string(),
            issuers: if issuers.is_empty() {
                "an unnamed key".into()
            } else {
                issuers.join(", ")
            },
            keyring: self.label.clone(),
            keys: self.fingerprints().join(", "),
        })
    }
}

enum Check {
    Weak(HashAlgorithm),
    Bad(String),
}

fn check_one(sig: &Signature, key: &impl PublicKeyTrait, data: &[u8]) -> Result<(), Check> {
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Sha224
            | HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => {}
        Some(alg) => return Err(Check::Weak(alg)),
        None => return Err(Check::Bad("unknown signature version".into())),
    }
    sig.verify(key, data).map_err(|e| Check::Bad(e.to_string()))
}

fn matches_identity(sig: &Signature, key: &impl PublicKeyTrait) -> bool {
    let ids = sig.issuer();
    let fps = sig.issuer_fingerprint();
    if ids.is_empty() && fps.is_empty() {
        return true;
    }
    let key_id = key.key_id();
    let fp = key.fingerprint();
    ids.iter().any(|id| **id == key_id) || fps.iter().any(|f| **f == fp)
}

fn fingerprint_hex(fp: &pgp::types::Fingerprint) -> String {
    hex::encode_upper(fp.as_bytes())
}

pub fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn split_armor_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let tail = &rest[start..];
        let end = tail
            .find("-----END")
            .and_then(|e| tail[e..].find('\n').map(|nl| e + nl + 1))
            .unwrap_or(tail.len());
        blocks.push(&tail[..end]);
        rest = &tail[end..];
    }
    blocks
}
