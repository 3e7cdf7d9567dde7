//! Signatures and attestations of node images, compatible with cosign and
//! with containers/image's `sigstoreSigned` policy:
//!
//! - [`keys`]: ECDSA P-256 keys in PEM (PKCS#8, cosign's encrypted format,
//!   [`encrypted`]), new pairs;
//! - [`payload`]: the simple-signing payload signed for an image;
//! - [`dsse`], [`intoto`], [`slsa`]: attestations, an in-toto statement of
//!   any predicate (SLSA provenance, SPDX, CycloneDX) in a DSSE envelope;
//! - [`layout`]: where they go in a registry (cosign's `.sig` and `.att`
//!   tags, OCI 1.1 referrers);
//! - [`remote`]: signing, attesting and verifying an image in its
//!   registry, through `nodeimg-registry`.
//!
//! Everything but [`remote`] (and the key files read by [`keys`]) is a pure
//! function: the same key and input give the same bytes (ECDSA nonces are
//! deterministic, RFC 6979). Keyless signing (Fulcio certificates, Rekor
//! transparency log entries) needs services on the internet and is not
//! done here.

pub mod dsse;
pub mod encrypted;
mod error;
pub mod intoto;
pub mod keys;
pub mod layout;
pub mod payload;
pub mod remote;
pub mod slsa;

pub use error::{Invalid, KeyError, LayoutError, Result, SignError};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
