//! Base images: `scratch`, an OCI layout directory, an OCI archive, or a
//! rootfs tarball; their layers (reused by digest) and a [`RootView`] of
//! their merged file tree.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use nodeimg_layers::RootView;
use ocidir::cap_std::{ambient_authority, fs::Dir};
use ocidir::oci_spec::image::{
    Descriptor, History, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use ocidir::{OciArchive, OciDir, OciRead};
use sha2::{Digest as _, Sha256};

use crate::cache::{self, LayerCache};
use crate::error::{Error, Result, SourceError};
use crate::limits::KeepBudget;
use crate::tarindex::{scan_layer, MergedIndex};
use crate::tarstream::{
    CheckedTar, Codec, Decoder, Encoder, HashReader, HashWriter, TAR_EXTENSIONS,
};

/// Where the base image comes from, as written after `base =` or `--base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseRef {
    /// No base: the image holds only the recipe's layers.
    Scratch,
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; the only manifest if absent.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive.
        file: PathBuf,
        /// As for [`BaseRef::Oci`].
        tag: Option<String>,
    },
    /// `rootfs:FILE` (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`): a root file
    /// system tarball, which becomes one layer.
    Rootfs {
        /// The tarball.
        file: PathBuf,
    },
    /// `docker://HOST[:PORT]/REPO:TAG` or `...@sha256:HEX`: an image in a
    /// registry, pulled into the cache and used like an OCI layout.
    Registry {
        /// The reference as written, `docker://` included.
        reference: String,
    },
}

impl BaseRef {
    /// Parse a base reference; relative paths are joined to `relative_to`.
    pub fn parse(s: &str, relative_to: &Path) -> std::result::Result<BaseRef, BaseRefError> {
        let bad = |reason| BaseRefError {
            base: s.to_string(),
            reason,
        };
        let join = |p: &str| -> std::result::Result<PathBuf, BaseRefError> {
            if p.is_empty() {
                return Err(bad(BaseRefReason::NoPath));
            }
            let p = Path::new(p);
            Ok(if p.is_absolute() {
                p.to_path_buf()
            } else {
                relative_to.join(p)
            })
        };
        let split_tag = |rest: &str| match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => {
                if t.is_empty() {
                    return Err(bad(BaseRefReason::EmptyTag));
                }
                Ok((join(p)?, Some(t.to_string())))
            }
            _ => Ok((join(rest)?, None)),
        };
        if s == "scratch" {
            return Ok(BaseRef::Scratch);
        }
        if s.starts_with(DOCKER_PREFIX) {
            return Ok(BaseRef::Registry {
                reference: s.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_tag(rest)?;
            return Ok(BaseRef::Oci { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_tag(rest)?;
            return Ok(BaseRef::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("rootfs:") {
            let file = join(rest)?;
            if Codec::from_tar_name(&file).is_none() {
                return Err(bad(BaseRefReason::RootfsName));
            }
            return Ok(BaseRef::Rootfs { file });
        }
        Err(bad(BaseRefReason::Unknown))
    }
}

/// A base reference that does not parse (see [`BaseRef::parse`]).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.message())]
pub struct BaseRefError {
    /// The reference as written.
    pub base: String,
    /// What is wrong with it.
    pub reason: BaseRefReason,
}

/// What is wrong with a base reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseRefReason {
    /// `oci:`, `oci-archive:` or `rootfs:` with nothing after it.
    NoPath,
    /// A `:` with no tag after it.
    EmptyTag,
    /// A rootfs tarball whose name says no tar codec.
    RootfsName,
    /// No known prefix.
    Unknown,
}

impl BaseRefError {
    fn message(&self) -> String {
        let s = &self.base;
        match self.reason {
            BaseRefReason::NoPath => format!("base {s:?} names no path"),
            BaseRefReason::EmptyTag => {
                format!("base {s:?} ends with an empty tag; drop the last ':' or name the tag")
            }
            BaseRefReason::RootfsName => {
                format!("base {s:?}: a rootfs tarball must be named {TAR_EXTENSIONS}")
            }
            BaseRefReason::Unknown => format!(
                "unknown base {s:?}; use scratch, oci:DIR[:TAG], oci-archive:FILE[:TAG], \
                 rootfs:FILE (.tar, .tar.gz, .tar.zst) or docker://HOST/REPO:TAG"
            ),
        }
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRef::Scratch => write!(f, "scratch"),
            BaseRef::Oci { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            BaseRef::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}", file.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            BaseRef::Rootfs { file } => write!(f, "rootfs:{}", file.display()),
            BaseRef::Registry { reference } => write!(f, "{reference}"),
        }
    }
}

/// One layer of a base image.
#[derive(Clone, Debug)]
pub struct BaseLayer {
    /// The blob descriptor, for layers reused as they are (OCI bases);
    /// `None` for a rootfs tarball, which is compressed at output time.
    pub descriptor: Option<Descriptor>,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Whether the layer must be rewritten entry by entry with normalised
    /// names (a rootfs tarball with absolute names or hard link targets)
    /// before it becomes a layer of an image.
    pub normalise: bool,
}

enum Source {
    Scratch,
    Remote(Box<dyn OciSource + Send + Sync>),
    Dir(OciDir),
    Archive(OciArchive),
    Rootfs { file: PathBuf, codec: Codec },
}

/// The prefix of a registry reference.
pub const DOCKER_PREFIX: &str = "docker://";

/// Pulls `docker://` bases: given the reference and the OCI architecture,
/// an image source whose blobs were verified against the reference.
pub trait Puller {
    /// Pull `reference` for `arch`.
    fn pull(&self, reference: &str, arch: &str) -> Result<Box<dyn OciSource + Send + Sync>>;
}

/// The [`Puller`] of builds that reach no registry.
pub(crate) struct NoRegistry;

impl Puller for NoRegistry {
    fn pull(&self, reference: &str, _arch: &str) -> Result<Box<dyn OciSource + Send + Sync>> {
        Err(Error::image(
            reference,
            "registry bases are not available here; open the base with a registry puller",
        ))
    }
}

/// An opened base image.
pub struct Base {
    what: String,
    index: MergedIndex,
    config: Option<ImageConfiguration>,
    layers: Vec<BaseLayer>,
    source: std::sync::Arc<Source>,
    pending: Option<cache::PendingHash>,
}

/// Largest manifest, index or config we read (they are small JSON documents).
const JSON_MAX: u64 = 16 << 20;

/// Open the OCI layout folder `dir` (the base named `what`).
fn open_layout(dir: &Path, what: &str) -> Result<OciDir> {
    let d = Dir::open_ambient_dir(dir, ambient_authority())
        .map_err(|e| Error::read(what, "cannot open the layout directory", e))?;
    OciDir::open(d)
        .map_err(|e| Error::layout(what, "not an OCI image layout (no blobs/sha256?)", e))
}

impl Base {
    /// Open and index a local base image (a registry base is refused; see
    /// [`Base::open_with`]). The layers are read once, streaming, to build
    /// the view; nothing is extracted to disk.
    pub fn open(r: &BaseRef) -> Result<Base> {
        Self::open_with(r, None, &NoRegistry)
    }

    /// As [`Base::open`]; when the chosen tag is a multi-platform image
    /// index, pick the manifest for `architecture` (OCI spelling). A
    /// registry base is pulled (for `architecture`, default amd64) by
    /// `puller`, and its layers then reused by digest like those of an OCI
    /// layout.
    pub fn open_with(r: &BaseRef, architecture: Option<&str>, puller: &dyn Puller) -> Result<Base> {
        Self::open_cached(r, architecture, puller, None)
    }

    /// As [`Base::open_with`], taking the index of each layer from `cache`
    /// when it holds it (and keeping it there when it does not): a rootfs
    /// tarball's by the tarball's SHA-256 (the file is hashed, not
    /// decompressed and read entry by entry), an OCI layer's by its blob
    /// digest and diff_id (the blob is not read; it is verified where it
    /// is copied).
    pub fn open_cached(
        r: &BaseRef,
        architecture: Option<&str>,
        puller: &dyn Puller,
        cache: Option<&LayerCache>,
    ) -> Result<Base> {
        let what = r.to_string();
        match r {
            BaseRef::Scratch => Ok(Base::scratch()),
            BaseRef::Registry { reference } => {
                let arch = architecture.unwrap_or("amd64");
                // Verified against the reference and open: the blobs are
                // read from the handles that were checked, and the image
                // is the manifest the reference means, whatever the cache
                // holds besides.
                let pulled = puller.pull(reference, arch)?;
                let (config, layers, index) =
                    open_image(&*pulled, &what, None, architecture, cache)?;
                Ok(Base {
                    what,
                    index,
                    config: Some(config),
                    layers,
                    source: std::sync::Arc::new(Source::Remote(pulled)),
                    pending: None,
                })
            }
            BaseRef::Oci { dir, tag } => {
                let oci = open_layout(dir, &what)?;
                let (config, layers, index) =
                    open_image(&oci, &what, tag.as_deref(), architecture, cache)?;
                Ok(Base {
                    what,
                    index,
                    config: Some(config),
                    layers,
                    source: std::sync::Arc::new(Source::Dir(oci)),
                    pending: None,
                })
            }
            BaseRef::OciArchive { file, tag } => {
                let ar = open_archive(file)
                    .map_err(|e| Error::source_error(&what, "cannot read the archive", e))?;
                let (config, layers, index) =
                    open_image(&ar, &what, tag.as_deref(), architecture, cache)?;
                Ok(Base {
                    what,
                    index,
                    config: Some(config),
                    layers,
                    source: std::sync::Arc::new(Source::Archive(ar)),
                    pending: None,
                })
            }
            BaseRef::Rootfs { file } => Self::open_rootfs(file, what, cache),
        }
    }

    /// A rootfs tarball as a one-layer base without a configuration.
    fn open_rootfs(file: &Path, what: String, cache: Option<&LayerCache>) -> Result<Base> {
        let codec = Codec::from_tar_name(file).ok_or_else(|| {
            Error::image(
                &what,
                format!("a rootfs tarball must be named {TAR_EXTENSIONS}"),
            )
        })?;
        let mut budget = KeepBudget::default();
        let mut pending = None;
        let entry = match cache {
            Some(c) => match hinted_index(c, file) {
                Some((entry, p)) => {
                    pending = p;
                    entry
                }
                None => rootfs_index(c, file, codec, &what)?,
            },
            None => scan_rootfs(file, codec, &what, None, None)?.0,
        };
        let mut changes = entry.changes;
        charge_kept(&mut changes, 0, &mut budget, &what)?;
        let mut index = MergedIndex::new();
        index.apply(changes);
        Ok(Base {
            what,
            index,
            config: None,
            layers: vec![BaseLayer {
                descriptor: None,
                diff_id: entry.diff_id,
                tar_size: entry.tar_size,
                normalise: entry.normalise,
            }],
            source: std::sync::Arc::new(Source::Rootfs {
                file: file.to_path_buf(),
                codec,
            }),
            pending,
        })
    }

    /// Wait for the check of a rootfs base whose index came from the
    /// layer cache by its file's identity while its SHA-256 was still being
    /// computed: an error unless the tarball is the one the index was made
    /// from. The writers call it before an output is put in place.
    pub fn confirm(&self) -> Result<()> {
        match &self.pending {
            Some(p) => p.confirm(&self.what),
            None => Ok(()),
        }
    }

    /// The empty base.
    pub fn scratch() -> Base {
        Base {
            what: "scratch".to_string(),
            index: MergedIndex::new(),
            config: None,
            layers: Vec::new(),
            source: std::sync::Arc::new(Source::Scratch),
            pending: None,
        }
    }

    /// The merged file tree of the base.
    pub fn view(&self) -> &dyn RootView {
        &self.index
    }

    /// The merged file tree of the base, as its concrete (shareable) type.
    pub fn index(&self) -> &MergedIndex {
        &self.index
    }

    /// The base's image configuration, if it has one (OCI bases).
    pub fn config(&self) -> Option<&ImageConfiguration> {
        self.config.as_ref()
    }

    /// The base's architecture (OCI spelling), if it says.
    pub fn architecture(&self) -> Option<String> {
        self.config.as_ref().map(|c| c.architecture().to_string())
    }

    /// The base as the user named it.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The base's layers, lowest first.
    pub fn layers(&self) -> &[BaseLayer] {
        &self.layers
    }

    /// The history entries of the base config (empty when it has none).
    pub fn history(&self) -> Vec<History> {
        self.config
            .as_ref()
            .and_then(|c| c.history().clone())
            .unwrap_or_default()
    }

    /// The file name of a rootfs base, for its history entry.
    pub(crate) fn rootfs_name(&self) -> Option<String> {
        match &*self.source {
            Source::Rootfs { file, .. } => Some(
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    /// The raw (compressed) bytes of a reused layer blob.
    pub(crate) fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        open_blob_of(&self.what, &self.source, desc)
    }

    /// The uncompressed tar stream of base layer `i`.
    pub(crate) fn open_tar(&self, i: usize) -> Result<Box<dyn Read + Send>> {
        open_layer_tar(&self.what, &self.source, &self.layers, i)
    }

    /// An owned handle that opens the base's layer tars (uncompressed),
    /// lowest first, for work that outlives a borrow of the base (e.g.
    /// materialising the image below a layer on disk).
    pub fn tars(&self) -> BaseTars {
        BaseTars {
            what: self.what.clone(),
            source: std::sync::Arc::clone(&self.source),
            layers: self.layers.clone(),
        }
    }
}

/// The base's layer tars, opened on demand (see [`Base::tars`]).
#[derive(Clone)]
pub struct BaseTars {
    what: String,
    source: std::sync::Arc<Source>,
    layers: Vec<BaseLayer>,
}

impl fmt::Debug for BaseTars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseTars({}, {} layer(s))", self.what, self.layers.len())
    }
}

impl BaseTars {
    /// The base as named (`oci:...`, `rootfs:...`).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// How many layers the base has.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the base has no layer (`scratch`).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The uncompressed tar of layer `i` (lowest is 0). Read to its end,
    /// it fails unless it is the tar the base was indexed from (its
    /// diff_id): a base that changed since, or whose index came from the
    /// layer cache and does not match it, is not used.
    pub fn open(&self, i: usize) -> Result<Box<dyn Read + Send>> {
        let r = open_layer_tar(&self.what, &self.source, &self.layers, i)?;
        let want = self
            .layers
            .get(i)
            .map(|l| l.diff_id.clone())
            .unwrap_or_default();
        let name = format!("{} layer {}", self.what, i + 1);
        Ok(Box::new(CheckedTar::new(r, &want, name)))
    }
}

fn open_blob_of(what: &str, source: &Source, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
    let context = || format!("layer blob {}", desc.digest());
    let err = |e| Error::source_error(what, context(), e);
    let r: Box<dyn Read + Send> = match source {
        Source::Dir(d) => d.open_blob(desc).map_err(err)?,
        Source::Archive(a) => Box::new(
            a.read_blob(desc)
                .map_err(|e| Error::layout(what, context(), e))?,
        ),
        Source::Remote(p) => p.open_blob(desc).map_err(err)?,
        _ => return Err(Error::image(what, format!("has no blob {}", desc.digest()))),
    };
    Ok(r)
}

fn open_layer_tar(
    what: &str,
    source: &Source,
    layers: &[BaseLayer],
    i: usize,
) -> Result<Box<dyn Read + Send>> {
    let layer = layers
        .get(i)
        .ok_or_else(|| Error::image(what, format!("has no layer {i}")))?;
    match (source, &layer.descriptor) {
        (Source::Rootfs { file, codec }, _) => {
            let f =
                File::open(file).map_err(|e| Error::read(what, "cannot open the tarball", e))?;
            let d = Decoder::new(*codec, BufReader::with_capacity(1 << 17, f))
                .map_err(|e| Error::read(what, "cannot decompress", e))?;
            Ok(Box::new(d))
        }
        (_, Some(desc)) => {
            let codec = layer_codec(what, desc)?;
            let raw = open_blob_of(what, source, desc)?;
            let d = Decoder::new(codec, BufReader::with_capacity(1 << 17, raw)).map_err(|e| {
                Error::read(
                    what,
                    format!("layer blob {}: cannot decompress", desc.digest()),
                    e,
                )
            })?;
            Ok(Box::new(d))
        }
        _ => Err(Error::image(what, format!("has no layer {i}"))),
    }
}

/// The largest `index.json` read.
pub(crate) const INDEX_MAX: u64 = JSON_MAX;

/// An OCI layout or archive, read with bounds: `index.json` is read up to
/// [`INDEX_MAX`] and a layout's blobs are opened only when they are regular
/// files (a FIFO, socket or device is an error, never a wait).
pub trait OciSource {
    /// The parsed `index.json`, or what is wrong with it.
    fn index(&self) -> std::result::Result<ImageIndex, SourceError>;
    /// A reader of the blob `desc` names, of the size it says.
    fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> std::result::Result<Box<dyn Read + Send>, SourceError>;
}

/// Opens `path` of `dir` (`name` in messages) for reading without waiting
/// (a FIFO would block an ordinary open), and only if it is a regular file.
fn open_regular(
    dir: &Dir,
    path: &str,
    name: &str,
) -> std::result::Result<(File, u64), SourceError> {
    use ocidir::cap_std::fs::{OpenOptions, OpenOptionsExt};
    let mut o = OpenOptions::new();
    o.read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let f = dir
        .open_with(path, &o)
        .map_err(|source| SourceError::Open {
            name: name.to_string(),
            source,
        })?
        .into_std();
    let md = f.metadata().map_err(|source| SourceError::Metadata {
        name: name.to_string(),
        source,
    })?;
    if !md.is_file() {
        return Err(SourceError::NotRegular {
            name: name.to_string(),
        });
    }
    Ok((f, md.len()))
}

impl OciSource for OciDir {
    fn index(&self) -> std::result::Result<ImageIndex, SourceError> {
        let (f, len) = open_regular(self.dir(), "index.json", "index.json")?;
        if len > INDEX_MAX {
            return Err(SourceError::IndexTooLarge { len });
        }
        ImageIndex::from_reader(BufReader::new(f.take(INDEX_MAX + 1)))
            .map_err(SourceError::InvalidIndex)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> std::result::Result<Box<dyn Read + Send>, SourceError> {
        let digest = desc.digest().to_string();
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| SourceError::UnsupportedDigest(digest.clone()))?;
        let (f, len) = open_regular(self.blobs_dir(), hex, &format!("blobs/sha256/{hex}"))?;
        if len != desc.size() {
            return Err(SourceError::Size {
                len,
                expected: desc.size(),
            });
        }
        Ok(Box::new(f.take(len)))
    }
}

impl OciSource for OciArchive {
    fn index(&self) -> std::result::Result<ImageIndex, SourceError> {
        Ok(self.read_index()?)
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> std::result::Result<Box<dyn Read + Send>, SourceError> {
        Ok(Box::new(self.read_blob(desc)?))
    }
}

/// Opens an OCI archive: only a regular file, whose tar headers are checked
/// against the bounds of [`crate::limits::BoundedTar`] before the layout
/// library indexes it.
pub(crate) fn open_archive(file: &Path) -> std::result::Result<OciArchive, SourceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(file)?;
    if !f.metadata()?.is_file() {
        return Err(SourceError::ArchiveNotRegular);
    }
    crate::limits::check_tar_headers(&f)?;
    check_archive_index_size(&f)?;
    Ok(OciArchive::from_file(f)?)
}

/// Refuses an OCI archive whose `index.json` is larger than [`INDEX_MAX`]
/// (the layout library would parse it whole). The headers were checked by
/// [`crate::limits::check_tar_headers`]; the walk seeks over the data.
fn check_archive_index_size(mut f: &File) -> std::result::Result<(), SourceError> {
    use std::io::{Seek, SeekFrom};
    let mut ar = tar::Archive::new(f);
    for e in ar.entries_with_seek()? {
        let e = e?;
        let name = e.path_bytes();
        let name = name.strip_prefix(b"./").unwrap_or(&name);
        if name == b"index.json" && e.size() > INDEX_MAX {
            return Err(SourceError::IndexTooLarge { len: e.size() });
        }
    }
    f.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// A readable message for a layout library error, with its causes.
pub fn oci_msg(e: &ocidir::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

pub(crate) fn layer_codec(what: &str, desc: &Descriptor) -> Result<Codec> {
    let mt = desc.media_type().to_string();
    Codec::from_media_type(&mt).ok_or_else(|| {
        Error::image(
            what,
            format!(
                "layer {} has media type {mt:?}, which is not a tar layer (plain, gzip or zstd)",
                desc.digest()
            ),
        )
    })
}

/// Read a small JSON blob whole, check its digest, and parse it.
pub(crate) fn read_json<S: OciSource + ?Sized, T: serde::de::DeserializeOwned>(
    src: &S,
    what: &str,
    desc: &Descriptor,
    kind: &str,
) -> Result<T> {
    if desc.size() > JSON_MAX {
        return Err(Error::image(
            what,
            format!(
                "{kind} {} is {} bytes; too large",
                desc.digest(),
                desc.size()
            ),
        ));
    }
    let mut buf = Vec::new();
    // Read at most one byte more than the descriptor says: a longer blob
    // is refused below (its digest cannot match) without reading it all.
    let item = || format!("{kind} {}", desc.digest());
    src.open_blob(desc)
        .map_err(|e| Error::source_error(what, item(), e))?
        .take(desc.size() + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::read(what, item(), e))?;
    let found = format!("sha256:{}", hex::encode(Sha256::digest(&buf)));
    if found != desc.digest().to_string() {
        return Err(Error::Digest {
            what: what.to_string(),
            item: item(),
            found,
        });
    }
    serde_json::from_slice(&buf).map_err(|source| Error::Json {
        what: what.to_string(),
        item: item(),
        source,
    })
}

fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.ref.name"))
        .map(String::as_str)
}

fn is_index(d: &Descriptor) -> bool {
    matches!(d.media_type(), MediaType::ImageIndex)
        || d.media_type().to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn platform_of(d: &Descriptor) -> String {
    d.platform()
        .as_ref()
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .unwrap_or_else(|| "unknown platform".to_string())
}

/// Pick the manifest descriptor: by tag, or the only one.
pub(crate) fn select_manifest<S: OciSource + ?Sized>(
    src: &S,
    what: &str,
    tag: Option<&str>,
    architecture: Option<&str>,
) -> Result<Descriptor> {
    let index = src
        .index()
        .map_err(|e| Error::source_error(what, "cannot read index.json", e))?;
    let tags: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| tag_of(d).unwrap_or("(untagged)").to_string())
        .collect();
    let chosen = match tag {
        Some(t) => index
            .manifests()
            .iter()
            .find(|d| tag_of(d) == Some(t))
            .ok_or_else(|| {
                Error::image(
                    what,
                    format!("has no tag {t:?}; its tags: {}", list_or_none(&tags)),
                )
            })?,
        None => match index.manifests().as_slice() {
            [one] => one,
            [] => return Err(Error::image(what, "index.json lists no image")),
            _ => {
                return Err(Error::image(
                    what,
                    format!(
                        "holds several images; name one with :TAG (tags: {})",
                        tags.join(", ")
                    ),
                ))
            }
        },
    };
    if !is_index(chosen) {
        return Ok(chosen.clone());
    }
    let nested: ImageIndex = read_json(src, what, chosen, "image index")?;
    let ms = nested.manifests();
    if let [one] = ms.as_slice() {
        return Ok(one.clone());
    }
    let platforms: Vec<String> = ms.iter().map(platform_of).collect();
    if let Some(arch) = architecture {
        let hits: Vec<&Descriptor> = ms
            .iter()
            .filter(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.architecture().to_string() == arch && p.os().to_string() == "linux"
                })
            })
            .collect();
        if let [one] = hits.as_slice() {
            return Ok((*one).clone());
        }
        return Err(Error::image(
            what,
            format!(
                "has no single linux/{arch} image; its platforms: {}",
                platforms.join(", ")
            ),
        ));
    }
    Err(Error::image(
        what,
        format!(
            "is a multi-platform index ({}); pick one with --platform (image.architecture in a recipe)",
            platforms.join(", ")
        ),
    ))
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn open_image<S: OciSource + ?Sized>(
    src: &S,
    what: &str,
    tag: Option<&str>,
    architecture: Option<&str>,
    cache: Option<&LayerCache>,
) -> Result<(ImageConfiguration, Vec<BaseLayer>, MergedIndex)> {
    let mdesc = select_manifest(src, what, tag, architecture)?;
    let manifest: ImageManifest = read_json(src, what, &mdesc, "manifest")?;
    let config: ImageConfiguration = read_json(src, what, manifest.config(), "config")?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::image(
            what,
            format!(
                "config {} lists {} diff_ids for {} layers",
                manifest.config().digest(),
                diff_ids.len(),
                manifest.layers().len()
            ),
        ));
    }
    let mut index = MergedIndex::new();
    let mut layers = Vec::new();
    let mut budget = KeepBudget::default();
    for (i, (desc, want_diff)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let key = cache::key(&["layer-index", desc.digest().as_ref(), want_diff]);
        let (changes, diff_id, tar_size) = match cache.and_then(|c| c.load_index(&key)) {
            Some(e) if e.diff_id == *want_diff => {
                let mut changes = e.changes;
                charge_kept(&mut changes, i as u32, &mut budget, what)?;
                (changes, e.diff_id, e.tar_size)
            }
            _ => {
                let (changes, diff_id, tar_size) = scan_blob_verified(
                    src,
                    what,
                    desc,
                    i,
                    Some(&mut budget),
                    Some(want_diff),
                    None,
                )?;
                if let Some(c) = cache {
                    let entry = cache::IndexEntry {
                        diff_id,
                        tar_size,
                        normalise: false,
                        changes,
                    };
                    c.store_index(&key, &entry);
                    (entry.changes, entry.diff_id, entry.tar_size)
                } else {
                    (changes, diff_id, tar_size)
                }
            }
        };
        index.apply(changes);
        layers.push(BaseLayer {
            descriptor: Some(desc.clone()),
            diff_id,
            tar_size,
            normalise: false,
        });
    }
    Ok((config, layers, index))
}

/// The index of the rootfs tarball `file` from the layer cache by the
/// file's identity (see [`cache::FileId`]), with the check of its SHA-256
/// running meanwhile; `None` when the cache has no index for it.
/// When the cache trusts file identities (`--trust-stat`), the file
/// is not hashed at all.
fn hinted_index(
    c: &LayerCache,
    file: &Path,
) -> Option<(cache::IndexEntry, Option<cache::PendingHash>)> {
    let id = cache::FileId::of(file).ok()?;
    let sha = c.hint(&id)?;
    // The index first: without it the file is hashed once, by the caller.
    let entry = c.load_index(&cache::key(&["rootfs-index", &sha]))?;
    let pending = (!c.trusts_identity()).then(|| {
        let hashing = file.to_path_buf();
        let handle = std::thread::spawn(move || {
            let f = File::open(&hashing)?;
            HashReader::new(BufReader::with_capacity(4 << 20, f))
                .drain()
                .map(|(d, _)| d.trim_start_matches("sha256:").to_string())
        });
        cache::PendingHash::new(sha.clone(), id, c.dir(), handle)
    });
    Some((entry, pending))
}

/// The index of the rootfs tarball `file`: hashed, then from the layer
/// cache, else read entry by entry and kept; the file's identity is
/// remembered with its SHA-256 for the next build.
fn rootfs_index(
    c: &LayerCache,
    file: &Path,
    codec: Codec,
    what: &str,
) -> Result<cache::IndexEntry> {
    let before = cache::FileId::of(file).ok();
    let seen = before.as_ref().and_then(|id| c.hint(id)).is_some();
    if let (false, Some(out)) = (seen, c.base_codec()) {
        // A tarball the cache has never seen: hashed, indexed and
        // compressed as the output wants it in one pass.
        let (entry, sha) = scan_compressing(c, file, codec, what, out)?;
        c.store_index(&cache::key(&["rootfs-index", &sha]), &entry);
        if let Some(id) = before.filter(|b| cache::FileId::of(file).ok().as_ref() == Some(b)) {
            c.remember(&id, &sha);
        }
        return Ok(entry);
    }
    let f = File::open(file).map_err(|e| Error::read(what, "cannot open the tarball", e))?;
    let (sha, _) = HashReader::new(BufReader::with_capacity(1 << 20, f))
        .drain()
        .map_err(|e| Error::read(what, "reading the tarball", e))?;
    let sha = sha.trim_start_matches("sha256:").to_string();
    let key = cache::key(&["rootfs-index", &sha]);
    let entry = match c.load_index(&key) {
        Some(entry) => entry,
        None => {
            let (entry, _) = scan_rootfs(file, codec, what, Some(&sha), None)?;
            c.store_index(&key, &entry);
            entry
        }
    };
    if let Some(id) = before.filter(|b| cache::FileId::of(file).ok().as_ref() == Some(b)) {
        c.remember(&id, &sha);
    }
    Ok(entry)
}

/// Index the rootfs tarball `file` (compressed with `codec`) as
/// [`scan_rootfs`] does, its tar compressed with `out` into the cache
/// meanwhile: the blob a build of an OCI output makes of the base, kept
/// with its entry unless the tar's names must be normalised (that blob is
/// made of the normalised tar) or the blob could not be written (a note).
/// Returns the index and the file's SHA-256 (hex).
fn scan_compressing(
    c: &LayerCache,
    file: &Path,
    codec: Codec,
    what: &str,
    out: Codec,
) -> Result<(cache::IndexEntry, String)> {
    let opened = c
        .blob_temp()
        .and_then(|tmp| Ok((tmp.as_file().try_clone()?, tmp)))
        .and_then(|(f, tmp)| {
            let w = HashWriter::new(BufWriter::with_capacity(1 << 17, f));
            Ok((Encoder::new(out, w)?, tmp))
        });
    let (mut enc, tmp) = match opened {
        Ok(o) => o,
        Err(e) => {
            c.note_failed_blob(what, &e);
            return scan_rootfs(file, codec, what, None, None);
        }
    };
    let mut tee_failed = None;
    let (entry, sha) = scan_rootfs(
        file,
        codec,
        what,
        None,
        Some(Tee {
            out: &mut enc,
            failed: &mut tee_failed,
        }),
    )?;
    let written = match tee_failed {
        Some(e) => Err(e),
        None => enc.finish().and_then(|hw| {
            let (w, digest, size) = hw.finish();
            w.into_inner().map_err(|e| e.into_error())?;
            Ok((digest, size))
        }),
    };
    match written {
        Ok((digest, size)) if !entry.normalise => {
            if c.keep_fresh_blob(tmp, &digest) {
                c.store_entry(
                    &cache::blob_key(out, &entry.diff_id, false),
                    &cache::BlobEntry {
                        digest,
                        size,
                        diff_id: entry.diff_id.clone(),
                    },
                );
            }
        }
        Ok(_) => {}
        Err(e) => c.note_failed_blob(what, &e),
    }
    Ok((entry, sha))
}

/// Where a tar being read is also written (see [`Teed`]); a write that
/// fails is kept in `failed` and ends the copy, not the read.
struct Tee<'a> {
    out: &'a mut dyn Write,
    failed: &'a mut Option<std::io::Error>,
}

/// A reader that writes what it reads to a [`Tee`] as well.
struct Teed<'a, R> {
    inner: R,
    tee: Option<Tee<'a>>,
}

impl<R: Read> Read for Teed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(t) = &mut self.tee {
            if let Err(e) = t.out.write_all(&buf[..n]) {
                *t.failed = Some(e);
                self.tee = None;
            }
        }
        Ok(n)
    }
}

/// Read the rootfs tarball `file` (compressed with `codec`) entry by entry
/// into its index; its tar written to `tee` too, when given. With
/// `want_sha`, the file must still have that SHA-256 (it was hashed to
/// find the index in the cache). Returns the index and the file's
/// SHA-256 (hex).
fn scan_rootfs(
    file: &Path,
    codec: Codec,
    what: &str,
    want_sha: Option<&str>,
    tee: Option<Tee<'_>>,
) -> Result<(cache::IndexEntry, String)> {
    let f = File::open(file).map_err(|e| Error::read(what, "cannot open the tarball", e))?;
    let read_err = |e| Error::read(what, "reading the tarball", e);
    let (changes, diff_id, tar_size, sha) = if codec == Codec::Plain {
        // The file is the tar: one hash is both its SHA-256 and the diff_id.
        let hr = HashReader::new(Teed {
            inner: BufReader::with_capacity(1 << 17, f),
            tee,
        });
        let (changes, hr) = scan_layer(hr, 0, Some(&mut KeepBudget::default()), what)?;
        let (diff_id, tar_size) = hr.drain().map_err(read_err)?;
        (changes, diff_id.clone(), tar_size, diff_id)
    } else {
        let file_hash = HashReader::new(f);
        let dec = Decoder::new(codec, BufReader::with_capacity(1 << 17, file_hash))
            .map_err(|e| Error::read(what, "cannot decompress", e))?;
        let hr = HashReader::new(Teed { inner: dec, tee });
        let (changes, hr) = scan_layer(hr, 0, Some(&mut KeepBudget::default()), what)?;
        let (diff_id, tar_size, teed) = hr.drain_into_inner().map_err(read_err)?;
        let mut rest = teed.inner.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(read_err)?;
        let (sha, _) = rest.into_inner().drain().map_err(read_err)?;
        (changes, diff_id, tar_size, sha)
    };
    let sha = sha.trim_start_matches("sha256:").to_string();
    if want_sha.is_some_and(|w| w != sha) {
        return Err(Error::image(
            what,
            "changed while the image was being built; run the build again",
        ));
    }
    let entry = cache::IndexEntry {
        diff_id,
        tar_size,
        normalise: changes.unnormalised,
        changes,
    };
    Ok((entry, sha))
}

/// Make the changes of a layer from the cache those of layer `layer` of
/// this stack, and charge the bytes they keep to `budget` as reading the
/// layer would have.
fn charge_kept(
    changes: &mut crate::tarindex::LayerChanges,
    layer: u32,
    budget: &mut KeepBudget,
    what: &str,
) -> Result<()> {
    for (path, rec) in &mut changes.entries {
        rec.layer = layer;
        if let Some(c) = &rec.content {
            budget
                .take(path, c.len() as u64)
                .map_err(|e| Error::entry(what, e))?;
        }
    }
    Ok(())
}

/// Stream one layer blob into its changes, checking the blob digest and,
/// when given, the expected diff_id; every regular file is shown to
/// `visit`, when given. Returns the changes, the diff_id and the
/// uncompressed size.
pub(crate) fn scan_blob_verified<S: OciSource + ?Sized>(
    src: &S,
    what: &str,
    desc: &Descriptor,
    i: usize,
    keep: Option<&mut KeepBudget>,
    want_diff: Option<&str>,
    visit: Option<&mut (dyn crate::tarindex::FileVisitor + '_)>,
) -> Result<(crate::tarindex::LayerChanges, String, u64)> {
    let codec = layer_codec(what, desc)?;
    let raw = src
        .open_blob(desc)
        .map_err(|e| Error::source_error(what, format!("layer blob {}", desc.digest()), e))?;
    let ctx = format!("{what}: layer {}", desc.digest());
    let blob_hash = HashReader::new(raw);
    let dec = Decoder::new(codec, BufReader::with_capacity(1 << 17, blob_hash))
        .map_err(|e| Error::read(&ctx, "cannot decompress", e))?;
    let tar_hash = HashReader::new(dec);
    let (changes, tar_hash) =
        crate::tarindex::scan_layer_visiting(tar_hash, i as u32, keep, &ctx, visit)?;
    let read_err = |e: std::io::Error| Error::read(&ctx, "reading", e);
    let (diff_id, tar_size, dec) = tar_hash.drain_into_inner().map_err(read_err)?;
    let mut buffered = dec.into_inner();
    std::io::copy(&mut buffered, &mut std::io::sink()).map_err(read_err)?;
    let (blob_digest, _) = buffered.into_inner().drain().map_err(read_err)?;
    if blob_digest != desc.digest().to_string() {
        return Err(Error::Digest {
            what: what.to_string(),
            item: format!("layer blob {}", desc.digest()),
            found: blob_digest,
        });
    }
    if let Some(want) = want_diff {
        if diff_id != want {
            return Err(Error::DiffId {
                what: what.to_string(),
                layer: desc.digest().to_string(),
                found: diff_id,
                expected: want.to_string(),
            });
        }
    }
    Ok((changes, diff_id, tar_size))
}

/// Images for tests, here and in other crates.
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used)]
pub mod fixtures {
    use super::*;
    use crate::output::{write, Compression, Format, ImageMeta, LayerPlan, OutputOptions};
    use nodeimg_layers::tree::Origin;
    use nodeimg_layers::{FileTree, ImagePath, Node};

    /// A one-layer OCI layout written by nodeimg itself at `dir` (the
    /// fuzz harness's seed too).
    pub fn layout(dir: &Path) {
        let mut t = FileTree::new();
        t.insert(
            ImagePath::new("/etc/os-release").unwrap(),
            Node::file("ID=x\n", Origin::new("file", "file[0]")),
        )
        .unwrap();
        write(
            &Base::scratch(),
            &[LayerPlan {
                name: "l".into(),
                tree: t,
            }],
            &ImageMeta {
                name: "n".into(),
                tag: "v1".into(),
                architecture: "amd64".into(),
                labels: Default::default(),
                annotations: Default::default(),
                created: 0,
            },
            &OutputOptions {
                path: dir.to_path_buf(),
                format: Format::Oci,
                compression: Compression::None,
                force: false,
                cache: None,
            },
        )
        .unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixtures::layout;
    use super::*;

    #[test]
    fn references_parse() {
        let r = Path::new("/recipes");
        assert_eq!(BaseRef::parse("scratch", r).unwrap(), BaseRef::Scratch);
        assert_eq!(
            BaseRef::parse("oci:img", r).unwrap(),
            BaseRef::Oci {
                dir: "/recipes/img".into(),
                tag: None
            }
        );
        assert_eq!(
            BaseRef::parse("oci:../out/img:v1.2", r).unwrap(),
            BaseRef::Oci {
                dir: "/recipes/../out/img".into(),
                tag: Some("v1.2".into())
            }
        );
        assert_eq!(
            BaseRef::parse("oci-archive:/abs/a.tar:latest", r).unwrap(),
            BaseRef::OciArchive {
                file: "/abs/a.tar".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            BaseRef::parse("rootfs:root.tar.zst", r).unwrap(),
            BaseRef::Rootfs {
                file: "/recipes/root.tar.zst".into()
            }
        );
        assert_eq!(
            BaseRef::parse("oci:img:v1", r).unwrap().to_string(),
            "oci:/recipes/img:v1"
        );
        for bad in [
            "debian:12",
            "oci:",
            "oci:img:",
            "rootfs:root.zip",
            "rootfs:",
            "",
        ] {
            let e = BaseRef::parse(bad, r).unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(BaseRef::parse("rootfs:x.img", r)
            .unwrap_err()
            .to_string()
            .contains(".tar.zst"));
        assert!(BaseRef::parse("ubuntu", r)
            .unwrap_err()
            .to_string()
            .contains("oci:DIR[:TAG]"));
        let reg = BaseRef::parse("docker://127.0.0.1:5000/base:v1", r).unwrap();
        assert_eq!(
            reg,
            BaseRef::Registry {
                reference: "docker://127.0.0.1:5000/base:v1".into()
            }
        );
        assert_eq!(reg.to_string(), "docker://127.0.0.1:5000/base:v1");
    }

    fn put_json(dir: &Path, v: &serde_json::Value) -> (String, usize) {
        let b = serde_json::to_vec(v).unwrap();
        let h = hex::encode(Sha256::digest(&b));
        std::fs::write(dir.join("blobs/sha256").join(&h), &b).unwrap();
        (format!("sha256:{h}"), b.len())
    }

    #[test]
    fn tags_and_platform_indexes_select_one_manifest() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("img");
        layout(&dir);
        let ip = dir.join("index.json");
        let mut ix: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ip).unwrap()).unwrap();
        let m0 = ix["manifests"][0].clone();
        let mut m1 = m0.clone();
        m1["annotations"][crate::output::REF_NAME] = "v2".into();
        ix["manifests"] = serde_json::json!([m0, m1]);
        std::fs::write(&ip, serde_json::to_vec(&ix).unwrap()).unwrap();
        let e = Base::open(&BaseRef::parse("oci:img", t.path()).unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("v1, v2"), "{e}");
        let b = Base::open(&BaseRef::parse("oci:img:v2", t.path()).unwrap()).unwrap();
        assert_eq!(
            b.view().read_text("/etc/os-release").as_deref(),
            Some("ID=x\n")
        );

        // A multi-platform index under one tag.
        let mut amd = m0.clone();
        amd["annotations"] = serde_json::Value::Null;
        let mut arm = amd.clone();
        arm["platform"]["architecture"] = "arm64".into();
        let nested = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [amd, arm],
        });
        let (d, size) = put_json(&dir, &nested);
        let top = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": d,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": "multi"}
            }]
        });
        std::fs::write(&ip, serde_json::to_vec(&top).unwrap()).unwrap();
        let r = BaseRef::parse("oci:img:multi", t.path()).unwrap();
        let e = Base::open(&r).err().unwrap();
        assert!(e.to_string().contains("linux/amd64, linux/arm64"), "{e}");
        assert!(Base::open_with(&r, Some("amd64"), &NoRegistry).is_ok());
        let e = Base::open_with(&r, Some("s390x"), &NoRegistry)
            .err()
            .unwrap();
        assert!(e.to_string().contains("linux/s390x"), "{e}");
    }

    #[test]
    fn missing_bases_say_what_is_wrong() {
        let t = tempfile::tempdir().unwrap();
        let e = Base::open(&BaseRef::parse("oci:nothing", t.path()).unwrap())
            .err()
            .unwrap();
        assert!(matches!(e, Error::Read { .. }));
        assert!(e.to_string().contains("nothing"), "{e}");
        std::fs::write(t.path().join("r.tar"), b"not a tar at all, clearly").unwrap();
        let e = Base::open(&BaseRef::parse("rootfs:r.tar", t.path()).unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("r.tar"), "{e}");
        let s = Base::scratch();
        assert!(s.layers().is_empty() && s.config().is_none() && s.architecture().is_none());
        assert_eq!(s.view().list("/"), Vec::<String>::new());
    }

    #[test]
    fn an_archive_index_over_the_bound_is_refused_before_it_is_parsed() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, index_size: u64| {
            let p = t.path().join(name);
            let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(30);
            h.set_mode(0o644);
            b.append_data(
                &mut h,
                "oci-layout",
                &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
            )
            .unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(index_size);
            h.set_mode(0o644);
            b.append_data(&mut h, "index.json", std::io::repeat(b' ').take(index_size))
                .unwrap();
            b.finish().unwrap();
            p
        };
        let big = write("big.tar", INDEX_MAX + 1);
        let e = open_archive(&big).err().unwrap();
        assert!(matches!(e, SourceError::IndexTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("over the limit of 16 MiB"), "{e}");
        // Within the bound the archive is handed to the layout library.
        let small = write("small.tar", 2);
        assert!(!open_archive(&small)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("over the limit"));
    }
}
