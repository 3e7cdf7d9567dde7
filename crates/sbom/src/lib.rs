//! Software bills of materials of nodeimg images: every package the image
//! holds (the base's too), read from the image's own package databases,
//! and every file no package owns, as SPDX 2.3 JSON or CycloneDX 1.6 JSON.
//!
//! - [`read`] reads an image (OCI layout, OCI archive, rootfs tar) into an
//!   [`Sbom`]: the dpkg database (`/var/lib/dpkg/status`, `status.d/`) and
//!   the rpm database (`rpmdb.sqlite`, read from a temporary copy), the
//!   Debian copyright files and rpm `License` tags, the record nodeimg
//!   keeps of the packages it installed ([`nodeimg_pkg::record`]: the
//!   repository, URL and verified SHA-256 of each `.deb` or `.rpm`), the
//!   layer each package arrived in, and the SHA-256 of every file no
//!   package owns with the recipe item that wrote it (what `nodeimg inspect
//!   --why` answers).
//! - [`spdx::document`] and [`cyclonedx::document`] are pure functions of an
//!   [`Sbom`]: the same value gives the same bytes (identifiers derived from
//!   the image digest, the time given, everything sorted).
//! - [`purl`] makes package URLs; [`license`] turns what packages declare
//!   into SPDX license expressions.

use std::fmt;

pub mod cyclonedx;
pub mod dpkg;
pub mod license;
pub mod purl;
pub mod read;
pub mod rpmdb;
pub mod spdx;

pub use read::read;

/// Everything an SBOM of an image says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    /// The image.
    pub image: Image,
    /// Its packages, sorted by package URL.
    pub packages: Vec<Package>,
    /// Its files no package owns, and the packages' files a recipe item
    /// replaced, sorted by path.
    pub files: Vec<FileRecord>,
    /// What could not be read and was left out (e.g. an rpm database in a
    /// format other than sqlite); not part of the documents.
    pub warnings: Vec<String>,
}

/// The image an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its name: the tag, else the file or folder name.
    pub name: String,
    /// The manifest digest (OCI images) or the rootfs tar's SHA-256,
    /// `sha256:HEX`.
    pub digest: String,
    /// The time the documents carry, seconds since 1970.
    pub created: i64,
    /// The OCI architecture, when the image says.
    pub architecture: Option<String>,
    /// `/etc/os-release` (else `/usr/lib/os-release`).
    pub os: Option<OsRelease>,
    /// Its layers, lowest first.
    pub layers: Vec<Layer>,
}

/// What `os-release` says of the distribution.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `centos`, `opensuse-leap`).
    pub id: String,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// One layer of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The recipe layer's name, else the history's, else `layer N`.
    pub name: String,
    /// Blob digest (a rootfs tar: the file's).
    pub digest: String,
}

/// Which package manager's database a package is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// dpkg.
    Deb,
    /// rpm.
    Rpm,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Deb => "deb",
            Kind::Rpm => "rpm",
        })
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its package manager.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Version: Debian's whole version (epoch included), rpm's
    /// `version-release`.
    pub version: String,
    /// rpm's epoch, when the database has one.
    pub epoch: Option<u64>,
    /// Architecture (`amd64`, `all`, `x86_64`, `noarch`).
    pub architecture: String,
    /// The package URL namespace: the distribution's `os-release` ID, else
    /// (rpm) the vendor.
    pub namespace: Option<String>,
    /// The source package, when it differs from the name.
    pub source: Option<String>,
    /// The SPDX license expression of what the package declares.
    pub license: Option<String>,
    /// Index into [`Image::layers`] of the layer it arrived in.
    pub layer: Option<usize>,
    /// Where nodeimg downloaded it from, when nodeimg installed it.
    pub download: Option<Download>,
}

/// Where a package nodeimg installed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The repository: `URI SUITE [COMPONENT]`, or an rpm repository id.
    pub repository: String,
    /// Canonical URL of the `.deb` or `.rpm`.
    pub url: String,
    /// SHA-256 of the file that was verified and installed, lowercase hex.
    pub sha256: String,
}

/// One file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Image path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// SHA-1, lowercase hex (SPDX requires it for every file).
    pub sha1: String,
    /// Index into [`Image::layers`] of the layer that last wrote it.
    pub layer: usize,
    /// The recipe item that wrote it (`io.nodeimg.origins`), when known.
    pub origin: Option<String>,
    /// The package that ships this path, when a recipe item replaced it.
    pub package: Option<String>,
}

/// An SBOM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SPDX 2.3, JSON.
    SpdxJson,
    /// CycloneDX 1.6, JSON.
    CycloneDxJson,
}

impl Format {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::SpdxJson => "spdx-json",
            Format::CycloneDxJson => "cyclonedx-json",
        }
    }

    /// The format named `s` (`spdx-json`, `cyclonedx-json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "spdx-json" => Some(Format::SpdxJson),
            "cyclonedx-json" => Some(Format::CycloneDxJson),
            _ => None,
        }
    }
}

impl Sbom {
    /// The document in `format`: pretty JSON ending in a newline.
    pub fn to_json(&self, format: Format) -> Vec<u8> {
        let doc = match format {
            Format::SpdxJson => spdx::document(self),
            Format::CycloneDxJson => cyclonedx::document(self),
        };
        let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The package URL of `p` in this image.
    pub fn purl(&self, p: &Package) -> String {
        purl::package_url(p)
    }

    /// `layer N (NAME, DIGEST)` for the layer at `index`.
    pub(crate) fn layer_text(&self, index: usize) -> String {
        match self.image.layers.get(index) {
            Some(l) => format!("layer {} ({}, {})", index + 1, l.name, l.digest),
            None => format!("layer {}", index + 1),
        }
    }

    /// The hex of the image digest, for identifiers.
    pub(crate) fn digest_hex(&self) -> &str {
        self.image
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&self.image.digest)
    }
}

/// Why an SBOM cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image cannot be read.
    #[error(transparent)]
    Image(#[from] nodeimg_image::Error),
    /// A package database of the image is damaged.
    #[error("{path} in the image: {message}; the image's package database is damaged: repair or rebuild the base image")]
    Database {
        /// The database file.
        path: String,
        /// What is wrong.
        message: String,
        /// The parser's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The rpm database cannot be read.
    #[error("{path} in the image: reading the rpm database: {source}")]
    Rpmdb {
        /// The database file.
        path: String,
        /// sqlite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file of the image is larger than what is read of it.
    #[error("{path} in the image is {size} bytes, more than the {max} bytes read of it")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// A temporary copy cannot be made.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn database(
        path: &str,
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Database {
            path: path.to_string(),
            message: message.into(),
            source,
        }
    }
}

/// The result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
