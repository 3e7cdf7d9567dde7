//! The record of a layer's packages kept in the image: for each package the
//! layer installed, the repository it came from, its canonical URL and the
//! size and SHA-256 of the `.deb` or `.rpm` that was verified and unpacked.
//! The package databases (dpkg's status, rpm's database) say what is
//! installed, not where it came from; this file does, so that a software
//! bill of materials (`nodeimg sbom`) can be made from the image alone.
//!
//! One JSON file per layer with packages, at
//! `/var/lib/nodeimg/packages/<layer>.json` (see [`record_path`]):
//!
//! ```json
//! {
//!   "layer": "runtime",
//!   "kind": "deb",
//!   "packages": [
//!     {
//!       "name": "containerd",
//!       "version": "1.6.20~ds1-1+deb12u3",
//!       "architecture": "amd64",
//!       "repository": "http://deb.example/debian bookworm main",
//!       "url": "http://deb.example/debian/pool/main/c/containerd/containerd_1.6.20~ds1-1+deb12u3_amd64.deb",
//!       "size": 30100000,
//!       "sha256": "..."
//!     }
//!   ]
//! }
//! ```
//!
//! The values are the lock file's (URLs before `--mirror`), so a build from
//! the lock and a build that resolved write the same bytes; packages are
//! sorted by name and architecture.

use serde::{Deserialize, Serialize};

use crate::lock::{LayerKind, LockedPackage};

/// The folder of the records in the image.
pub const RECORD_DIR: &str = "/var/lib/nodeimg/packages";

/// The largest record read back.
pub const RECORD_MAX: u64 = 16 << 20;

/// One layer's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRecord {
    /// The recipe layer's name.
    pub layer: String,
    /// The backend that installed the packages.
    pub kind: LayerKind,
    /// The packages, by name and architecture.
    pub packages: Vec<RecordedPackage>,
}

/// One package of a [`LayerRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedPackage {
    /// Package name.
    pub name: String,
    /// Version as the repository writes it (rpm: `epoch:version-release`).
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// The repository it came from: `URI SUITE [COMPONENT]`, or an rpm
    /// repository's id.
    pub repository: String,
    /// Canonical URL of the `.deb` or `.rpm` (before `--mirror`).
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// Where the record of the layer `layer` is: the name with every byte but
/// ASCII letters, digits, `-` and `_` written `%XX` (a layer name may hold
/// any character but a control character), so that two layers never share
/// a file.
pub fn record_path(layer: &str) -> String {
    let mut name = String::with_capacity(layer.len());
    for b in layer.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() > 200 {
        use sha2::Digest as _;
        name = hex::encode(sha2::Sha256::digest(layer.as_bytes()));
    }
    format!("{RECORD_DIR}/{name}.json")
}

/// The record of `packages`, installed by `kind` in the layer `layer`.
pub fn record(layer: &str, kind: LayerKind, packages: &[LockedPackage]) -> LayerRecord {
    let mut packages: Vec<RecordedPackage> = packages
        .iter()
        .map(|p| RecordedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            repository: p.source.clone(),
            url: p.url.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        })
        .collect();
    packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    LayerRecord {
        layer: layer.to_string(),
        kind,
        packages,
    }
}

impl LayerRecord {
    /// The file's bytes: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// A record read back from an image.
    pub fn parse(bytes: &[u8]) -> Result<LayerRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn locked(name: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
            multi_arch: String::new(),
            auto: false,
            order: 0,
            source: "http://repo.invalid/debian stable main".into(),
            url: format!("http://repo.invalid/debian/pool/{name}.deb"),
            size: 10,
            sha256: "ab".repeat(32),
            units: Vec::new(),
        }
    }

    #[test]
    fn records_are_sorted_and_read_back() {
        let r = record("runtime", LayerKind::Deb, &[locked("b"), locked("a")]);
        let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let bytes = r.to_bytes();
        assert!(bytes.ends_with(b"}\n"));
        assert_eq!(LayerRecord::parse(&bytes).unwrap(), r);
        assert_eq!(
            record("runtime", LayerKind::Deb, &[locked("a"), locked("b")]).to_bytes(),
            bytes
        );
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\"kind\": \"deb\""));
        // Anything else is refused, never half read.
        assert!(LayerRecord::parse(b"{\"layer\": \"x\"}").is_err());
    }

    #[test]
    fn layer_names_become_distinct_file_names() {
        assert_eq!(
            record_path("containerd-packages"),
            "/var/lib/nodeimg/packages/containerd-packages.json"
        );
        assert_eq!(
            record_path("a/b c"),
            "/var/lib/nodeimg/packages/a%2Fb%20c.json"
        );
        assert_ne!(record_path("a b"), record_path("a_b"));
        assert_eq!(record_path(".."), "/var/lib/nodeimg/packages/%2E%2E.json");
        let long = "x".repeat(300);
        assert_eq!(record_path(&long).len(), RECORD_DIR.len() + 1 + 64 + 5);
    }
}
