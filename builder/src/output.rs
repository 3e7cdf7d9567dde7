//! Writing the image: OCI layout directory, OCI archive, or flattened rootfs
//! tarball. Every output appears atomically (written to a temporary sibling,
//! renamed at the end).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::base::Base;
use crate::error::Result;
use crate::plan::LayerPlan;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image layout directory.
    Oci,
    /// Tar of an OCI image layout.
    OciArchive,
    /// Flattened root file system tar (`.tar`, `.tar.gz`, `.tar.zst` by extension).
    Rootfs,
}

/// Compression of new layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (default; what every consumer reads).
    Gzip,
    /// zstd.
    Zstd,
    /// Plain tar.
    None,
}

/// What the image says about itself.
#[derive(Clone, Debug)]
pub struct ImageMeta {
    /// Image name (recipe `image.name`).
    pub name: String,
    /// Tag, written as `org.opencontainers.image.ref.name` in `index.json`.
    pub tag: String,
    /// OCI architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations (`org.opencontainers.image.*` and the recipe digest).
    pub annotations: BTreeMap<String, String>,
    /// Creation time and mtime of every new entry, seconds since the epoch
    /// (`SOURCE_DATE_EPOCH`, else 0).
    pub created: i64,
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct OutputOptions {
    /// Output path (a directory for [`Format::Oci`], a file otherwise).
    pub path: PathBuf,
    /// Format.
    pub format: Format,
    /// Compression of new layers.
    pub compression: Compression,
}

/// One layer of the written image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuiltLayer {
    /// Recipe layer name, or `base` for a layer reused from the base.
    pub name: String,
    /// Blob digest (`sha256:...`).
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Whether it was reused from the base as it was.
    pub from_base: bool,
}

/// The result of a build.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Built {
    /// Where it was written.
    pub path: PathBuf,
    /// Manifest digest (OCI outputs).
    pub manifest_digest: Option<String>,
    /// Config digest (OCI outputs).
    pub config_digest: Option<String>,
    /// Digest of the output file itself (archive and rootfs outputs).
    pub file_digest: Option<String>,
    /// Layers, lowest first.
    pub layers: Vec<BuiltLayer>,
}

/// Write the image made of `base` plus `layers`.
pub fn write(
    base: &Base,
    layers: &[LayerPlan],
    meta: &ImageMeta,
    opts: &OutputOptions,
) -> Result<Built> {
    let _ = (base, layers, meta, opts);
    todo!()
}
