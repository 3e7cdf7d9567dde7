//! nodeimg downloads: one HTTP client policy (timeouts, TLS from the system
//! trust store, retries), the verified content-addressed download cache and
//! the handles it hands out, `--mirror` remapping, OpenPGP verification of
//! signed metadata, and progress on a terminal.

pub mod cachefile;
pub mod fetch;
pub mod openpgp;
pub mod progress;

pub use cachefile::CachedFile;
pub use fetch::{Cache, FetchError, Mirrors};
pub use openpgp::{Keyring, SignatureError};
pub use progress::Meter;

use std::path::PathBuf;

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
