//! nodeimg downloads: one HTTP client policy (timeouts, TLS from the system
//! trust store, retries), the verified content-addressed download cache and
//! the handles it hands out, `--mirror` remapping, OpenPGP verification of
//! signed metadata, and the progress every crate reports to (shown by the
//! command line).

pub mod cachedir;
pub mod cachefile;
pub mod fetch;
pub mod openpgp;
pub mod policy;
pub mod progress;

pub use cachefile::CachedFile;
pub use fetch::{Cache, FetchError, MirrorError, Mirrors};
pub use openpgp::{Keyring, SignatureError};
pub use policy::HttpPolicy;
pub use progress::{Meter, Progress};

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `bytes`: 64 lowercase hex digits, as the cache names
/// files and package indexes write them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 of `bytes` as an OCI digest: `sha256:` and 64 lowercase hex
/// digits.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
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

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_of_nothing() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(super::sha256_hex(b""), empty);
        assert_eq!(super::sha256_digest(b""), format!("sha256:{empty}"));
    }
}
