//! Writing the image: OCI layout directory, OCI archive, or flattened rootfs
//! tarball. Every output appears atomically (written to a temporary sibling,
//! renamed at the end), under a lock that keeps a second build of the same
//! output out, and replaces only a previous output unless forced (see
//! [`guard`]).

mod guard;

pub use guard::{lock, OutputLock};

#[cfg(test)]
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use nodeimg_layers::{FileTree, ImagePath, Meta, RootView, Stack};
use ocidir::cap_std::{ambient_authority, fs::Dir};
use ocidir::oci_spec::image::{
    Arch, Config, Descriptor, DescriptorBuilder, History, HistoryBuilder, ImageConfiguration,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, RootFs,
    SCHEMA_VERSION,
};
use ocidir::OciDir;

use crate::base::Base;
use crate::cache::{self, BlobEntry, LayerCache};
use crate::error::{EntryError, Error, IoContext, Result};
use crate::pack::write_tar;
use crate::tarindex::{scan_layer, Kind, MergedIndex, Parsed, Rec};
use crate::tarstream::{
    copy_exact, write_end, write_header, write_padding, write_pax, Codec, Encoder, EntryHeader,
    HashReader, HashWriter, PaxRecord, TAR_EXTENSIONS,
};

/// The annotation holding the digest of the recipe and its inputs.
pub const RECIPE_DIGEST_ANNOTATION: &str = "io.nodeimg.recipe.digest";

/// One recipe layer, rendered and landed on the image below it.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    /// The recipe layer's name.
    pub name: String,
    /// Its content; paths already resolved through the links of the image below.
    pub tree: FileTree,
}

impl AsRef<FileTree> for LayerPlan {
    fn as_ref(&self) -> &FileTree {
        &self.tree
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image layout directory.
    Oci,
    /// Tar of an OCI image layout.
    OciArchive,
    /// Flattened root file system tar (`.tar`, `.tar.gz`, `.tar.zst` by extension).
    Rootfs,
    /// What `docker load` and `podman load` read: `manifest.json`,
    /// `repositories`, the config and one uncompressed tar per layer.
    DockerArchive,
}

impl Format {
    /// Where an image named `name` is written when no path is given:
    /// `out/NAME` for a layout folder, `out/NAME.tar` for the tar formats.
    pub fn default_output(self, name: &str) -> PathBuf {
        match self {
            Format::Oci => PathBuf::from("out").join(name),
            Format::OciArchive | Format::Rootfs | Format::DockerArchive => {
                PathBuf::from("out").join(format!("{name}.tar"))
            }
        }
    }
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
    /// Replace what is at `path` even when it is not a previous output
    /// (`--force`).
    pub force: bool,
    /// The layer cache blobs are reused from and kept in (OCI layouts and
    /// archives); `None` builds every layer anew.
    pub cache: Option<std::sync::Arc<LayerCache>>,
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
    /// Blob media type (for a rootfs output: the uncompressed tar's).
    pub media_type: String,
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

impl Compression {
    pub(crate) fn codec(self) -> Codec {
        match self {
            Compression::Gzip => Codec::Gzip,
            Compression::Zstd => Codec::Zstd,
            Compression::None => Codec::Plain,
        }
    }
}

/// Annotation on each new layer's descriptor: the recipe layer's name.
pub(crate) const LAYER_ANNOTATION: &str = "io.nodeimg.layer";
/// Annotation on each new layer's descriptor: compact JSON mapping each
/// path the layer writes to the recipe item (key path) that produced it.
pub(crate) const ORIGINS_ANNOTATION: &str = "io.nodeimg.origins";
/// The tag annotation of `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Refuse an output path the format cannot be written to (a rootfs tar
/// must be named for its compression), before any work is done.
pub fn check_path(path: &Path, format: Format) -> Result<()> {
    if format == Format::Rootfs {
        rootfs_codec(path)?;
    }
    Ok(())
}

fn rootfs_codec(path: &Path) -> Result<Codec> {
    Codec::from_tar_name(path).ok_or_else(|| {
        Error::Usage(format!(
            "{}: a rootfs output must be named {TAR_EXTENSIONS}",
            path.display()
        ))
    })
}

/// Write the image made of `base` plus `layers`, taking the output's lock
/// for the time it takes (see [`lock`]).
pub fn write(
    base: &Base,
    layers: &[LayerPlan],
    meta: &ImageMeta,
    opts: &OutputOptions,
) -> Result<Built> {
    let lock = lock(opts)?;
    write_locked(&lock, base, layers, meta, opts)
}

/// Write the image made of `base` plus `layers` to `opts.path`, whose lock
/// the caller took (before any other work) with [`lock`].
pub fn write_locked(
    lock: &OutputLock,
    base: &Base,
    layers: &[LayerPlan],
    meta: &ImageMeta,
    opts: &OutputOptions,
) -> Result<Built> {
    check_lock(lock, opts)?;
    let mtime = entry_mtime(meta.created)?;
    let (parent, name) = split_output(&opts.path)?;
    std::fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
    guard::check_replaceable(&opts.path, opts.format, opts.force)?;
    match opts.format {
        Format::Oci => {
            let tmp = temp_dir(&parent, &name)?;
            let mut built = write_layout(tmp.path(), base, layers, meta, opts)?;
            base.confirm()?;
            guard::put_in_place(tmp.path(), &opts.path)?;
            drop(tmp);
            built.path = opts.path.clone();
            Ok(built)
        }
        Format::OciArchive | Format::DockerArchive => {
            let at = Destination {
                path: &opts.path,
                parent: &parent,
                name: &name,
            };
            write_archive(&at, base, layers, meta, opts, mtime)
        }
        Format::Rootfs => {
            let codec = rootfs_codec(&opts.path)?;
            let tmp = temp_dir(&parent, &name)?;
            let file = temp_file(&parent, &name)?;
            let w = BufWriter::with_capacity(1 << 17, file.as_file());
            let enc = Encoder::new(codec, HashWriter::new(w))
                .ctx(|| format!("writing {}", opts.path.display()))?;
            let (enc, layer_info) = flatten(base, layers, mtime, tmp.path(), enc)?;
            let hw = enc
                .finish()
                .ctx(|| format!("writing {}", opts.path.display()))?;
            let digest = flush_file(hw, &opts.path)?;
            base.confirm()?;
            persist(file, &opts.path)?;
            Ok(Built {
                path: opts.path.clone(),
                manifest_digest: None,
                config_digest: None,
                file_digest: Some(digest),
                layers: layer_info,
            })
        }
    }
}

/// One image of a multi-platform output: a base, the recipe layers on it
/// and what the image says about itself (its architecture among it).
#[derive(Clone, Copy)]
pub struct Image<'a> {
    /// The base of this platform.
    pub base: &'a Base,
    /// The rendered recipe layers.
    pub layers: &'a [LayerPlan],
    /// Name, tag, architecture, labels, annotations, time.
    pub meta: &'a ImageMeta,
}

/// The result of a multi-platform build: one OCI image index, tagged, that
/// names an image per platform.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuiltIndex {
    /// Where it was written.
    pub path: PathBuf,
    /// The digest of the image index.
    pub index_digest: String,
    /// Digest of the output file itself (an OCI archive).
    pub file_digest: Option<String>,
    /// Each platform's image (its manifest and config digests and layers),
    /// in the order given.
    pub images: Vec<Built>,
}

/// Write `images` (one per platform) as one OCI image index to
/// `opts.path`: an OCI layout whose `index.json` holds that index under
/// `tag`, or an OCI archive of it. Every image's blobs are written as
/// [`write_locked`] writes one image's; the output appears atomically.
pub fn write_index_locked(
    lock: &OutputLock,
    images: &[Image<'_>],
    tag: &str,
    opts: &OutputOptions,
) -> Result<BuiltIndex> {
    check_lock(lock, opts)?;
    let Some(first) = images.first() else {
        return Err(Error::Usage(
            "a multi-platform image needs at least one platform".into(),
        ));
    };
    if !matches!(opts.format, Format::Oci | Format::OciArchive) {
        return Err(Error::Usage(
            "several platforms are written as one OCI image index: use --format oci or oci-archive"
                .into(),
        ));
    }
    let mtime = entry_mtime(first.meta.created)?;
    let (parent, name) = split_output(&opts.path)?;
    std::fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
    guard::check_replaceable(&opts.path, opts.format, opts.force)?;
    let tmp = temp_dir(&parent, &name)?;
    let layout = match opts.format {
        Format::Oci => tmp.path().to_path_buf(),
        _ => {
            let l = tmp.path().join("layout");
            std::fs::create_dir(&l).ctx(|| format!("creating {}", l.display()))?;
            l
        }
    };
    let (index_digest, mut built) = write_index_layout(&layout, images, tag, opts)?;
    let file_digest = if opts.format == Format::Oci {
        for i in images {
            i.base.confirm()?;
        }
        guard::put_in_place(tmp.path(), &opts.path)?;
        None
    } else {
        let file = temp_file(&parent, &name)?;
        let w = HashWriter::new(BufWriter::with_capacity(1 << 17, file.as_file()));
        let hw = tar_layout(&layout, mtime, w)?;
        let digest = flush_file(hw, &opts.path)?;
        for i in images {
            i.base.confirm()?;
        }
        persist(file, &opts.path)?;
        Some(digest)
    };
    drop(tmp);
    for b in &mut built {
        b.path = opts.path.clone();
    }
    Ok(BuiltIndex {
        path: opts.path.clone(),
        index_digest,
        file_digest,
        images: built,
    })
}

/// Write every image of `images` into the (empty) layout `dir`, then an
/// image index naming their manifests with their platforms, and
/// `index.json` naming that index under `tag`. Returns the index's digest
/// and each image.
fn write_index_layout(
    dir: &Path,
    images: &[Image<'_>],
    tag: &str,
    opts: &OutputOptions,
) -> Result<(String, Vec<Built>)> {
    let oci = open_layout(dir)?;
    let mut descs = Vec::new();
    let mut built = Vec::new();
    for image in images {
        let (mut b, manifest, platform) = layout_image(&oci, dir, image, opts)?;
        let desc = oci
            .write_json_blob(&manifest, MediaType::ImageManifest)
            .map_err(oci_err("writing an image manifest"))?
            .platform(platform)
            .build()
            .map_err(spec_err)?;
        b.manifest_digest = Some(desc.digest().to_string());
        descs.push(desc);
        built.push(b);
    }
    let mut ib = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(descs);
    // The image's own annotations (title, version, created, recipe digest),
    // the same on every platform.
    let annotations = &images[0].meta.annotations;
    if !annotations.is_empty() {
        ib = ib.annotations(annotation_map(annotations));
    }
    let index = ib.build().map_err(spec_err)?;
    let mut tagged = HashMap::new();
    tagged.insert(REF_NAME.to_string(), tag.to_string());
    let idesc = oci
        .write_json_blob(&index, MediaType::ImageIndex)
        .map_err(oci_err("writing the image index"))?
        .annotations(tagged)
        .build()
        .map_err(spec_err)?;
    let top = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .manifests(vec![idesc.clone()])
        .build()
        .map_err(spec_err)?;
    let mut text = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut text, olpc_cjson::CanonicalFormatter::new());
    serde::Serialize::serialize(&top, &mut ser)
        .map_err(|e| Error::image("index.json", format!("cannot be written: {e}")))?;
    let path = dir.join("index.json");
    std::fs::write(&path, &text).ctx(|| format!("writing {}", path.display()))?;
    Ok((idesc.digest().to_string(), built))
}

/// Annotations as oci-spec takes them.
fn annotation_map(a: &BTreeMap<String, String>) -> HashMap<String, String> {
    a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The output `opts` names is the one `lock` was taken for.
fn check_lock(lock: &OutputLock, opts: &OutputOptions) -> Result<()> {
    if lock.path() != opts.path {
        return Err(Error::image(
            opts.path.display().to_string(),
            format!("written under the lock of {}", lock.path().display()),
        ));
    }
    Ok(())
}

/// The mtime of every new entry: the creation time, which must not be
/// before 1970.
fn entry_mtime(created: i64) -> Result<u64> {
    u64::try_from(created).map_err(|_| {
        Error::Usage(format!(
            "the creation time {created} is before 1970; set SOURCE_DATE_EPOCH to a positive number"
        ))
    })
}

/// Where an output file goes: its path, its folder and its file name.
struct Destination<'a> {
    path: &'a Path,
    parent: &'a Path,
    name: &'a str,
}

/// Write the image as an OCI or docker archive (`opts.format`): an OCI
/// layout in a temporary folder first, then archived into the file.
fn write_archive(
    at: &Destination<'_>,
    base: &Base,
    layers: &[LayerPlan],
    meta: &ImageMeta,
    opts: &OutputOptions,
    mtime: u64,
) -> Result<Built> {
    let tmp = temp_dir(at.parent, at.name)?;
    let layout = tmp.path().join("layout");
    std::fs::create_dir(&layout).ctx(|| format!("creating {}", layout.display()))?;
    let mut built = write_layout(&layout, base, layers, meta, opts)?;
    let file = temp_file(at.parent, at.name)?;
    let w = HashWriter::new(BufWriter::with_capacity(1 << 17, file.as_file()));
    let hw = if opts.format == Format::DockerArchive {
        tar_docker(&layout, &built, meta, mtime, tmp.path(), w)?
    } else {
        tar_layout(&layout, mtime, w)?
    };
    let digest = flush_file(hw, at.path)?;
    base.confirm()?;
    persist(file, at.path)?;
    built.path = at.path.to_path_buf();
    built.file_digest = Some(digest);
    Ok(built)
}

/// Flush the output file written through `hw` to disk; returns its digest.
fn flush_file(hw: HashWriter<BufWriter<&File>>, dest: &Path) -> Result<String> {
    let (w, digest, _) = hw.finish();
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .ctx(|| format!("writing {}", dest.display()))?;
    Ok(digest)
}

/// Put the finished temporary file at `dest` (see [`guard::put_in_place`]).
fn persist(file: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    let tmp = file.into_temp_path();
    guard::put_in_place(&tmp, dest)?;
    // Renamed: nothing is left at the temporary path to remove.
    let _ = tmp.keep();
    Ok(())
}

fn split_output(path: &Path) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{}: not a usable output path", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn temp_dir(parent: &Path, name: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&guard::tmp_prefix(name))
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(parent)
        .ctx(|| format!("creating a temporary folder in {}", parent.display()))
}

fn temp_file(parent: &Path, name: &str) -> Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&guard::tmp_prefix(name))
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(parent)
        .ctx(|| format!("creating a temporary file in {}", parent.display()))
}

/// Compact JSON: every path of the tree to the item that produced it.
/// Paths a layer's `packages` installed are not listed one by one (a
/// runtime's packages hold thousands of files, and the package database in
/// the image already says which package owns each): the empty key `""`
/// stands for all of them, with the value `packages`.
pub(crate) fn origins_json(tree: &FileTree) -> String {
    let mut from_packages = false;
    let mut map: BTreeMap<&str, &str> = tree
        .iter()
        .filter(|(_, n)| {
            let pkg = n.origin.item == "packages";
            from_packages |= pkg;
            !pkg
        })
        .map(|(p, n)| {
            let o = if n.origin.key.is_empty() {
                n.origin.item.as_str()
            } else {
                n.origin.key.as_str()
            };
            (p.as_str(), o)
        })
        .collect();
    if from_packages {
        map.insert(PACKAGES_ORIGIN_KEY, "packages");
    }
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
}

/// The key of `io.nodeimg.origins` that stands for every path the layer's
/// packages installed.
pub(crate) const PACKAGES_ORIGIN_KEY: &str = "";

fn rfc3339(secs: i64) -> Result<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or_else(|| Error::Usage(format!("creation time {secs} is out of range")))
}

fn oci_err(what: &str) -> impl Fn(ocidir::Error) -> Error + '_ {
    move |e| Error::Oci {
        context: what.to_string(),
        source: e,
    }
}

fn spec_err(source: ocidir::oci_spec::OciSpecError) -> Error {
    Error::Spec {
        context: "building the image metadata".to_string(),
        source,
    }
}

struct NewLayer {
    digest: String,
    diff_id: String,
    size: u64,
}

/// One recipe layer to pack: its tree over the image `below`, every entry
/// with `mtime`, compressed with `codec`; `name` for messages.
struct LayerJob<'a> {
    tree: &'a FileTree,
    below: &'a dyn RootView,
    mtime: u64,
    codec: Codec,
    name: &'a str,
}

/// Pack one recipe layer into a blob of `oci`, hashing while streaming.
fn pack_layer(oci: &OciDir, job: &LayerJob<'_>) -> Result<NewLayer> {
    let LayerJob {
        tree,
        below,
        mtime,
        codec,
        name,
    } = *job;
    let ctx = || format!("writing layer {name}");
    let bw = oci.create_blob().map_err(oci_err(&ctx()))?;
    let enc = Encoder::new(codec, bw).ctx(ctx)?;
    let w = BufWriter::with_capacity(1 << 17, HashWriter::new(enc));
    let w = write_tar(tree, below, mtime, w)?;
    let hw = w.into_inner().map_err(|e| e.into_error()).ctx(ctx)?;
    let (enc, diff_id, _) = hw.finish();
    let bw = enc.finish().ctx(ctx)?;
    let blob = bw.complete().map_err(oci_err(&ctx()))?;
    Ok(NewLayer {
        digest: format!("sha256:{}", blob.sha256().digest()),
        diff_id,
        size: blob.size(),
    })
}

/// The diff_id of the tar `tree` packs to over `below`: the tar is
/// written to a hasher only.
fn tar_digest(tree: &FileTree, below: &dyn RootView, mtime: u64) -> Result<String> {
    let w = BufWriter::with_capacity(1 << 17, HashWriter::new(std::io::sink()));
    let w = write_tar(tree, below, mtime, w)?;
    let hw = w
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx(|| "hashing a layer".to_string())?;
    Ok(hw.finish().1)
}

/// One recipe layer into the layout: its blob from the layer cache when
/// the cache holds its tar compressed the same way, else packed (and kept).
fn pack_or_reuse(blobs: &Blobs<'_>, job: &LayerJob<'_>) -> Result<NewLayer> {
    let Some(cache) = blobs.cache else {
        return pack_layer(blobs.oci, job);
    };
    let diff_id = tar_digest(job.tree, job.below, job.mtime)?;
    let key = cache::blob_key(job.codec, &diff_id, false);
    if let Some(e) = cache.entry(&key).filter(|e| e.diff_id == diff_id) {
        if blobs.reuse(&e.digest, e.size) {
            return Ok(NewLayer {
                digest: e.digest,
                diff_id,
                size: e.size,
            });
        }
    }
    let packed = pack_layer(blobs.oci, job)?;
    if packed.diff_id != diff_id {
        return Err(Error::image(
            format!("layer {}", job.name),
            "its files changed while it was being written; run the build again",
        ));
    }
    blobs.keep(&packed.digest);
    cache.store_entry(
        &key,
        &BlobEntry {
            digest: packed.digest.clone(),
            size: packed.size,
            diff_id,
        },
    );
    Ok(packed)
}

/// Pack every recipe layer, two at a time; results in layer order.
fn pack_all(
    blobs: &Blobs<'_>,
    base: &Base,
    layers: &[LayerPlan],
    mtime: u64,
    codec: Codec,
) -> Result<Vec<NewLayer>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 2)
        .min(layers.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<NewLayer>>>> =
        Mutex::new((0..layers.len()).map(|_| None).collect());
    let lower = base.index();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= layers.len() || failed.load(Ordering::SeqCst) {
                    break;
                }
                let below = Stack {
                    lower,
                    uppers: &layers[..i],
                };
                let l = &layers[i];
                let job = LayerJob {
                    tree: &l.tree,
                    below: &below,
                    mtime,
                    codec,
                    name: &l.name,
                };
                let r = pack_or_reuse(blobs, &job);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| Error::image("image", "a packing thread failed"))?;
    let mut out = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(r) => out.push(r?),
            None => {
                return Err(Error::image(
                    "image",
                    format!("layer {} was not packed", layers[i].name),
                ))
            }
        }
    }
    Ok(out)
}

/// Where the blobs of the layout being written go, and the layer cache
/// they may come from and are kept in.
struct Blobs<'a> {
    oci: &'a OciDir,
    dir: PathBuf,
    cache: Option<&'a LayerCache>,
}

impl Blobs<'_> {
    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest.trim_start_matches("sha256:"))
    }

    /// Put the cached blob `digest` (`size` bytes) into the layout,
    /// verified; `false` when the cache has no sound copy.
    fn reuse(&self, digest: &str, size: u64) -> bool {
        let Some(c) = self.cache else {
            return false;
        };
        let dest = self.path(digest);
        // Written (and verified) by this build already.
        dest.exists() || c.place_blob(digest, size, &dest)
    }

    /// Keep the blob `digest` this build wrote in the cache.
    fn keep(&self, digest: &str) {
        if let Some(c) = self.cache {
            c.keep_blob(&self.path(digest), digest);
        }
    }
}

/// Copy base layers into the layout: reused blobs byte for byte
/// (verified), a rootfs tarball compressed as a new blob (or its blob
/// from the layer cache).
fn copy_base(
    blobs: &Blobs<'_>,
    base: &Base,
    codec: Codec,
) -> Result<Vec<(Descriptor, BuiltLayer)>> {
    let mut out = Vec::new();
    for (i, layer) in base.layers().iter().enumerate() {
        out.push(match &layer.descriptor {
            Some(desc) => copy_base_blob(blobs, base, layer, desc)?,
            None => compress_base(blobs, base, i, layer, codec)?,
        });
    }
    Ok(out)
}

/// A base layer's blob into the layout: from the layer cache, else copied
/// from the base (verified) and kept.
fn copy_base_blob(
    blobs: &Blobs<'_>,
    base: &Base,
    layer: &crate::base::BaseLayer,
    desc: &Descriptor,
) -> Result<(Descriptor, BuiltLayer)> {
    let digest = desc.digest().to_string();
    if !blobs.reuse(&digest, desc.size()) {
        let ctx = format!("copying base layer {digest}");
        let mut bw = blobs.oci.create_blob().map_err(oci_err(&ctx))?;
        let mut src = base.open_blob(desc)?;
        std::io::copy(&mut src, &mut bw).ctx(|| ctx.clone())?;
        bw.complete_verified_as(desc)
            .map_err(|e| Error::layout(base.what(), format!("layer blob {digest}"), e))?;
        blobs.keep(&digest);
    }
    let mut desc = desc.clone();
    if let Some(mt) = oci_media_type(desc.media_type().as_ref()) {
        desc.set_media_type(MediaType::from(mt));
    }
    let built = BuiltLayer {
        name: "base".to_string(),
        digest,
        diff_id: layer.diff_id.clone(),
        size: desc.size(),
        from_base: true,
        media_type: desc.media_type().to_string(),
    };
    Ok((desc, built))
}

/// A rootfs base compressed as a new layer (its blob from the layer cache
/// when the cache holds the same tar compressed the same way).
fn compress_base(
    blobs: &Blobs<'_>,
    base: &Base,
    i: usize,
    layer: &crate::base::BaseLayer,
    codec: Codec,
) -> Result<(Descriptor, BuiltLayer)> {
    let key = cache::blob_key(codec, &layer.diff_id, layer.normalise);
    let cached = blobs
        .cache
        .and_then(|c| c.entry(&key))
        .filter(|e| blobs.reuse(&e.digest, e.size));
    let entry = match cached {
        Some(e) => e,
        None => {
            let e = compress_base_tar(blobs.oci, base, i, layer, codec)?;
            blobs.keep(&e.digest);
            if let Some(c) = blobs.cache {
                c.store_entry(&key, &e);
            }
            e
        }
    };
    let desc = descriptor(codec.layer_media_type(), entry.size, &entry.digest, None)?;
    let built = BuiltLayer {
        name: "base".to_string(),
        digest: entry.digest,
        diff_id: entry.diff_id,
        size: entry.size,
        from_base: false,
        media_type: codec.layer_media_type().to_string(),
    };
    Ok((desc, built))
}

/// Compress the tar of base layer `i` (a rootfs tarball, its names
/// normalised when the layer says so) into a blob of `oci`.
fn compress_base_tar(
    oci: &OciDir,
    base: &Base,
    i: usize,
    layer: &crate::base::BaseLayer,
    codec: Codec,
) -> Result<BlobEntry> {
    let ctx = || format!("compressing the base {}", base.what());
    let bw = oci.create_blob().map_err(oci_err(&ctx()))?;
    let mut enc = Encoder::new(codec, bw).ctx(ctx)?;
    let mut src = HashReader::new(base.open_tar(i)?);
    let (src_diff_id, diff_id) = if layer.normalise {
        let mut hw = HashWriter::new(BufWriter::with_capacity(1 << 17, &mut enc));
        let src = write_normalised(src, base.what(), &mut hw)?;
        let (bw, new_diff_id, _) = hw.finish();
        bw.into_inner().map_err(|e| e.into_error()).ctx(ctx)?;
        (src.drain().ctx(ctx)?.0, new_diff_id)
    } else {
        std::io::copy(&mut src, &mut enc).ctx(ctx)?;
        let (d, _) = src.drain().ctx(ctx)?;
        (d.clone(), d)
    };
    if src_diff_id != layer.diff_id {
        return Err(Error::image(
            base.what(),
            "changed while the image was being built; run the build again",
        ));
    }
    let blob = enc.finish().ctx(ctx)?.complete().map_err(oci_err(&ctx()))?;
    Ok(BlobEntry {
        digest: format!("sha256:{}", blob.sha256().digest()),
        size: blob.size(),
        diff_id,
    })
}

/// The OCI spelling of a Docker layer media type (same bytes, so the blob
/// and its digest stay as they are).
fn oci_media_type(mt: &str) -> Option<&'static str> {
    Some(match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        _ => return None,
    })
}

/// A plain descriptor (media type, size, digest).
pub fn descriptor_for(media_type: &str, size: u64, digest: &str) -> Result<Descriptor> {
    descriptor(media_type, size, digest, None)
}

fn descriptor(
    media_type: &str,
    size: u64,
    digest: &str,
    annotations: Option<HashMap<String, String>>,
) -> Result<Descriptor> {
    let d: ocidir::oci_spec::image::Digest = digest.parse().map_err(|source| Error::Spec {
        context: format!("digest {digest}"),
        source,
    })?;
    let mut b = DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .size(size)
        .digest(d);
    if let Some(a) = annotations {
        b = b.annotations(a);
    }
    b.build().map_err(spec_err)
}

/// The image config: the base's (environment, entrypoint, ...) with the
/// architecture, creation time, layers, history and labels of this image.
fn image_config(
    base: &Base,
    meta: &ImageMeta,
    diff_ids: Vec<String>,
    layers: &[LayerPlan],
) -> Result<ImageConfiguration> {
    let created = rfc3339(meta.created)?;
    let mut cfg = base.config().cloned().unwrap_or_default();
    let arch_changed = cfg.architecture().to_string() != meta.architecture;
    cfg.set_architecture(Arch::from(meta.architecture.as_str()));
    cfg.set_os(Os::Linux);
    if arch_changed || base.config().is_none() {
        cfg.set_variant(None);
    }
    if cfg.variant().is_none() {
        cfg.set_variant(nodeimg_layers::arch::variant(&meta.architecture).map(String::from));
    }
    cfg.set_created(Some(created.clone()));
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(diff_ids);
    cfg.set_rootfs(rootfs);

    let mut history = base.history();
    let base_nonempty = history
        .iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .count();
    for _ in base_nonempty..base.layers().len() {
        let by = match base.rootfs_name() {
            Some(n) => format!("nodeimg base rootfs {n}"),
            None => "base layer".to_string(),
        };
        history.push(history_entry(&created, &by)?);
    }
    for l in layers {
        history.push(history_entry(
            &created,
            &format!("nodeimg layer {}", l.name),
        )?);
    }
    cfg.set_history(if history.is_empty() {
        None
    } else {
        Some(history)
    });

    let mut exec = cfg.config().clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = exec
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(meta.labels.clone());
    exec.set_labels(if labels.is_empty() {
        None
    } else {
        Some(labels.into_iter().collect())
    });
    if exec != Config::default() {
        cfg.set_config(Some(exec));
    }
    Ok(cfg)
}

fn history_entry(created: &str, by: &str) -> Result<History> {
    HistoryBuilder::default()
        .created(created.to_string())
        .created_by(by.to_string())
        .build()
        .map_err(spec_err)
}

/// Write the OCI layout of the image into the (empty) directory `dir`.
fn write_layout(
    dir: &Path,
    base: &Base,
    layers: &[LayerPlan],
    meta: &ImageMeta,
    opts: &OutputOptions,
) -> Result<Built> {
    let oci = open_layout(dir)?;
    let image = Image { base, layers, meta };
    let (built, manifest, platform) = layout_image(&oci, dir, &image, opts)?;
    let mdesc = oci
        .insert_manifest(manifest, Some(&meta.tag), platform)
        .map_err(oci_err("writing the image manifest"))?;
    Ok(Built {
        manifest_digest: Some(mdesc.digest().to_string()),
        ..built
    })
}

fn open_layout(dir: &Path) -> Result<OciDir> {
    let d = Dir::open_ambient_dir(dir, ambient_authority())
        .ctx(|| format!("opening {}", dir.display()))?;
    OciDir::ensure(d).map_err(oci_err("creating the image layout"))
}

/// The blobs of one image (its layers and config) into the layout `oci`
/// at `dir`; its manifest and platform, for the caller to put in the
/// layout's index (or a nested one).
fn layout_image(
    oci: &OciDir,
    dir: &Path,
    image: &Image<'_>,
    opts: &OutputOptions,
) -> Result<(Built, ocidir::oci_spec::image::ImageManifest, Platform)> {
    let Image { base, layers, meta } = *image;
    let mtime = u64::try_from(meta.created).unwrap_or(0);
    let codec = opts.compression.codec();
    let blobs = Blobs {
        oci,
        dir: dir.join("blobs/sha256"),
        cache: opts.cache.as_deref(),
    };
    // The base's blobs are copied (or compressed) while the recipe's
    // layers are packed.
    let (based, packed) = std::thread::scope(|s| {
        let packing = s.spawn(|| pack_all(&blobs, base, layers, mtime, codec));
        let based = copy_base(&blobs, base, codec);
        let packed = packing
            .join()
            .map_err(|_| Error::image("image", "a packing thread failed"))?;
        Ok::<_, Error>((based?, packed?))
    })?;

    let mut descs = Vec::new();
    let mut built = Vec::new();
    let mut diff_ids = Vec::new();
    for (d, b) in based {
        diff_ids.push(b.diff_id.clone());
        descs.push(d);
        built.push(b);
    }
    for (l, p) in layers.iter().zip(packed) {
        let mut ann = HashMap::new();
        ann.insert(LAYER_ANNOTATION.to_string(), l.name.clone());
        ann.insert(ORIGINS_ANNOTATION.to_string(), origins_json(&l.tree));
        descs.push(descriptor(
            codec.layer_media_type(),
            p.size,
            &p.digest,
            Some(ann),
        )?);
        diff_ids.push(p.diff_id.clone());
        built.push(BuiltLayer {
            name: l.name.clone(),
            digest: p.digest,
            diff_id: p.diff_id,
            size: p.size,
            from_base: false,
            media_type: codec.layer_media_type().to_string(),
        });
    }

    let cfg = image_config(base, meta, diff_ids, layers)?;
    let variant = cfg.variant().clone();
    let config_desc = oci
        .write_config(cfg)
        .map_err(oci_err("writing the image config"))?;
    let mut mb = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config_desc.clone())
        .layers(descs);
    if !meta.annotations.is_empty() {
        mb = mb.annotations(annotation_map(&meta.annotations));
    }
    let manifest = mb.build().map_err(spec_err)?;
    let mut pb = PlatformBuilder::default()
        .architecture(Arch::from(meta.architecture.as_str()))
        .os(Os::Linux);
    if let Some(v) = variant {
        pb = pb.variant(v);
    }
    let platform = pb.build().map_err(spec_err)?;
    let built = Built {
        path: dir.to_path_buf(),
        manifest_digest: None,
        config_digest: Some(config_desc.digest().to_string()),
        file_digest: None,
        layers: built,
    };
    Ok((built, manifest, platform))
}

/// Tar an OCI layout directory deterministically: sorted names, one mtime,
/// root-owned, 0755 folders and 0644 files.
fn tar_layout<W: Write>(layout: &Path, mtime: u64, mut w: W) -> Result<W> {
    let mut names: Vec<(String, bool)> = Vec::new();
    for e in walkdir::WalkDir::new(layout).min_depth(1) {
        let e = e.map_err(|e| Error::Io {
            context: format!("reading {}", layout.display()),
            source: e.into(),
        })?;
        let rel = e
            .path()
            .strip_prefix(layout)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        names.push((rel, e.file_type().is_dir()));
    }
    let key = |(n, d): &(String, bool)| if *d { format!("{n}/") } else { n.clone() };
    names.sort_by_key(key);
    for (n, is_dir) in &names {
        let ctx = || format!("archiving {n}");
        if *is_dir {
            let name = format!("{n}/");
            write_header(
                &mut w,
                &EntryHeader {
                    name: name.as_bytes(),
                    kind: tar::EntryType::Directory,
                    meta: Meta::DIR,
                    size: 0,
                    mtime,
                    link: None,
                    device: (0, 0),
                },
            )
            .ctx(ctx)?;
        } else {
            let path = layout.join(n);
            let mut f = File::open(&path).ctx(ctx)?;
            let size = f.metadata().ctx(ctx)?.len();
            write_header(
                &mut w,
                &EntryHeader {
                    name: n.as_bytes(),
                    kind: tar::EntryType::Regular,
                    meta: Meta::FILE,
                    size,
                    mtime,
                    link: None,
                    device: (0, 0),
                },
            )
            .ctx(ctx)?;
            copy_exact(&mut f, &mut w, size).ctx(ctx)?;
            write_padding(&mut w, size).ctx(ctx)?;
        }
    }
    write_end(&mut w).ctx(|| "archiving the layout".to_string())?;
    Ok(w)
}

fn tar_file<W: Write>(w: &mut W, name: &str, src: &Path, mtime: u64) -> Result<()> {
    let ctx = || format!("archiving {name}");
    let mut f = File::open(src).ctx(ctx)?;
    let size = f.metadata().ctx(ctx)?.len();
    write_header(
        w,
        &EntryHeader {
            name: name.as_bytes(),
            kind: tar::EntryType::Regular,
            meta: Meta::FILE,
            size,
            mtime,
            link: None,
            device: (0, 0),
        },
    )
    .ctx(ctx)?;
    copy_exact(&mut f, w, size).ctx(ctx)?;
    write_padding(w, size).ctx(ctx)
}

fn tar_bytes<W: Write>(w: &mut W, name: &str, data: &[u8], mtime: u64) -> Result<()> {
    let ctx = || format!("archiving {name}");
    write_header(
        w,
        &EntryHeader {
            name: name.as_bytes(),
            kind: tar::EntryType::Regular,
            meta: Meta::FILE,
            size: data.len() as u64,
            mtime,
            link: None,
            device: (0, 0),
        },
    )
    .ctx(ctx)?;
    w.write_all(data).ctx(ctx)?;
    write_padding(w, data.len() as u64).ctx(ctx)
}

/// Write the docker-archive form of the image in `layout`: each layer
/// uncompressed as `<diff_id>/layer.tar` (in layer order, each once), the
/// config as `<config digest>.json`, then `manifest.json` and
/// `repositories`. Layers are decompressed through a file in `work`, so
/// memory stays flat.
fn tar_docker<W: Write>(
    layout: &Path,
    built: &Built,
    meta: &ImageMeta,
    mtime: u64,
    work: &Path,
    mut w: W,
) -> Result<W> {
    let blobs = layout.join("blobs/sha256");
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let config = built
        .config_digest
        .clone()
        .ok_or_else(|| Error::image("image", "no config was written"))?;
    let mut layer_names = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    for l in &built.layers {
        let id = hex(&l.diff_id);
        let name = format!("{id}/layer.tar");
        layer_names.push(name.clone());
        if !written.insert(id.clone()) {
            continue;
        }
        let tmp = work.join("layer.tar");
        uncompressed_layer(&blobs, l, &tmp)?;
        write_header(
            &mut w,
            &EntryHeader {
                name: format!("{id}/").as_bytes(),
                kind: tar::EntryType::Directory,
                meta: Meta::DIR,
                size: 0,
                mtime,
                link: None,
                device: (0, 0),
            },
        )
        .ctx(|| format!("archiving layer {id}"))?;
        tar_file(&mut w, &name, &tmp, mtime)?;
        std::fs::remove_file(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
    }
    let config_name = format!("{}.json", hex(&config));
    tar_file(&mut w, &config_name, &blobs.join(hex(&config)), mtime)?;
    docker_manifests(&mut w, built, meta, &config_name, &layer_names, mtime)?;
    write_end(&mut w).ctx(|| "archiving the image".to_string())?;
    Ok(w)
}

/// Decompress layer `l` of the layout's `blobs` into `tmp`, checking its
/// uncompressed digest.
fn uncompressed_layer(blobs: &Path, l: &BuiltLayer, tmp: &Path) -> Result<()> {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let codec = Codec::from_media_type(&l.media_type).ok_or_else(|| {
        Error::image(
            "image",
            format!(
                "layer {} has media type {}, not a tar layer",
                l.digest, l.media_type
            ),
        )
    })?;
    let ctx = || format!("decompressing layer {}", l.digest);
    let src = File::open(blobs.join(hex(&l.digest))).ctx(ctx)?;
    let mut dec =
        crate::tarstream::Decoder::new(codec, std::io::BufReader::with_capacity(1 << 17, src))
            .ctx(ctx)?;
    let out = File::create(tmp).ctx(ctx)?;
    let mut hw = HashWriter::new(BufWriter::with_capacity(1 << 17, out));
    std::io::copy(&mut dec, &mut hw).ctx(ctx)?;
    let (bw, diff_id, _) = hw.finish();
    bw.into_inner().map_err(|e| e.into_error()).ctx(ctx)?;
    if diff_id != l.diff_id {
        return Err(Error::image(
            "image",
            format!(
                "layer {}: uncompressed digest {diff_id} is not its diff_id {}",
                l.digest, l.diff_id
            ),
        ));
    }
    Ok(())
}

/// `manifest.json` and `repositories`, the files `docker load` reads
/// first.
fn docker_manifests<W: Write>(
    w: &mut W,
    built: &Built,
    meta: &ImageMeta,
    config_name: &str,
    layer_names: &[String],
    mtime: u64,
) -> Result<()> {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let repo_tag = format!("{}:{}", meta.name, meta.tag);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": layer_names,
    }]);
    let mut repositories = serde_json::Map::new();
    if let Some(last) = built.layers.last() {
        let mut tags = serde_json::Map::new();
        tags.insert(meta.tag.clone(), hex(&last.diff_id).into());
        repositories.insert(meta.name.clone(), tags.into());
    }
    let json = |v: &serde_json::Value| -> Result<Vec<u8>> {
        serde_json::to_vec(v).map_err(|source| Error::Encode {
            item: "manifest.json".to_string(),
            source,
        })
    };
    tar_bytes(w, "manifest.json", &json(&manifest)?, mtime)?;
    tar_bytes(
        w,
        "repositories",
        &json(&serde_json::Value::Object(repositories))?,
        mtime,
    )?;
    Ok(())
}

/// One input of the flattening: a tar stream to open (twice).
enum FlatSource<'a> {
    Base(usize),
    Packed(PathBuf, &'a str),
}

fn open_source(base: &Base, s: &FlatSource<'_>) -> Result<Box<dyn Read + Send>> {
    match s {
        FlatSource::Base(i) => base.open_tar(*i),
        FlatSource::Packed(p, name) => {
            let f = File::open(p).ctx(|| format!("reading the packed layer {name}"))?;
            Ok(Box::new(std::io::BufReader::with_capacity(1 << 17, f)))
        }
    }
}

fn source_name(base: &Base, s: &FlatSource<'_>) -> String {
    match s {
        FlatSource::Base(i) => format!("{} layer {}", base.what(), i + 1),
        FlatSource::Packed(_, name) => format!("layer {name}"),
    }
}

/// Write the flattened root file system of base + layers as one tar to `w`:
/// the first pass indexes which layer provides each final path, the second
/// streams the winning entries layer by layer (a folder at its first
/// appearance, with its final owner and mode).
fn flatten<W: Write>(
    base: &Base,
    layers: &[LayerPlan],
    mtime: u64,
    work: &Path,
    mut w: W,
) -> Result<(W, Vec<BuiltLayer>)> {
    let mut sources: Vec<FlatSource<'_>> = (0..base.layers().len()).map(FlatSource::Base).collect();
    let mut info = base_layer_info(base);
    for (i, l) in layers.iter().enumerate() {
        let p = work.join(format!("layer-{i}.tar"));
        let below = Stack {
            lower: base.index(),
            uppers: &layers[..i],
        };
        info.push(pack_plain(l, &below, mtime, &p)?);
        sources.push(FlatSource::Packed(p, &l.name));
    }

    // Pass 1: the final tree, each entry knowing its layer and position.
    let mut index = MergedIndex::new();
    for (i, s) in sources.iter().enumerate() {
        let what = source_name(base, s);
        let (changes, _) = scan_layer(open_source(base, s)?, i as u32, None, &what)?;
        index.apply(changes);
    }

    // Pass 2: stream the winners.
    let mut emitted: HashSet<String> = HashSet::new();
    for (i, s) in sources.iter().enumerate() {
        stream_winners(&mut w, base, s, i as u32, &index, &mut emitted)?;
    }
    write_end(&mut w).ctx(|| "writing the rootfs".to_string())?;
    Ok((w, info))
}

/// The base's layers as the build reports them.
fn base_layer_info(base: &Base) -> Vec<BuiltLayer> {
    base.layers()
        .iter()
        .map(|l| BuiltLayer {
            name: "base".to_string(),
            digest: l
                .descriptor
                .as_ref()
                .map(|d| d.digest().to_string())
                .unwrap_or_else(|| l.diff_id.clone()),
            diff_id: l.diff_id.clone(),
            size: l
                .descriptor
                .as_ref()
                .map(|d| d.size())
                .unwrap_or(l.tar_size),
            from_base: true,
            media_type: l
                .descriptor
                .as_ref()
                .map(|d| d.media_type().to_string())
                .unwrap_or_else(|| Codec::Plain.layer_media_type().to_string()),
        })
        .collect()
}

/// Pack recipe layer `l` (over `below`) as an uncompressed tar at `p`.
fn pack_plain(l: &LayerPlan, below: &dyn RootView, mtime: u64, p: &Path) -> Result<BuiltLayer> {
    let f = File::create(p).ctx(|| format!("creating {}", p.display()))?;
    let hw = HashWriter::new(BufWriter::with_capacity(1 << 17, f));
    let hw = write_tar(&l.tree, below, mtime, hw)?;
    let (bw, diff_id, size) = hw.finish();
    bw.into_inner()
        .map_err(|e| e.into_error())
        .ctx(|| format!("writing {}", p.display()))?;
    Ok(BuiltLayer {
        name: l.name.clone(),
        digest: diff_id.clone(),
        diff_id,
        size,
        from_base: false,
        media_type: Codec::Plain.layer_media_type().to_string(),
    })
}

/// Write the entries of source `s` (layer `layer`, lowest first) that the
/// final tree `index` keeps: a folder the first time it appears, anything
/// else where it was last written. `emitted`: the folders written so far.
fn stream_winners<W: Write>(
    w: &mut W,
    base: &Base,
    s: &FlatSource<'_>,
    layer: u32,
    index: &MergedIndex,
    emitted: &mut HashSet<String>,
) -> Result<()> {
    let what = source_name(base, s);
    let mut archive = crate::limits::tar_archive(open_source(base, s)?);
    let entries = archive
        .entries()
        .map_err(|e| Error::read(&what, "not a tar stream", e))?;
    for (ord, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| Error::read(&what, "broken tar stream", e))?;
        let parsed = crate::tarindex::parse_entry(&mut entry, layer, ord as u64, None)
            .map_err(|e| Error::entry(&what, e))?;
        let Parsed::Entry(path, _) = parsed else {
            continue;
        };
        if path == "/" {
            continue;
        }
        let Some(rec) = index.get(&path) else {
            continue;
        };
        let wins = if rec.kind == Kind::Dir {
            !emitted.contains(&path)
        } else {
            rec.layer == layer && rec.ord == ord as u64
        };
        if !wins {
            continue;
        }
        emit_parents(w, index, &path, emitted)?;
        if rec.kind == Kind::Dir {
            emit_dir(w, &path, rec, emitted)?;
            continue;
        }
        if let Kind::Hardlink(t) = &rec.kind {
            let ok = index.get(t).is_some_and(|tr| {
                matches!(tr.kind, Kind::File(_))
                    && (tr.layer < layer || (tr.layer == layer && tr.ord < ord as u64))
            });
            if !ok {
                return Err(Error::image(
                    &what,
                    format!(
                        "hard link {path} -> {t}: its target is replaced or removed by a \
                         later layer, which a flattened tar cannot express"
                    ),
                ));
            }
        }
        let xattrs = xattr_records(&mut entry).map_err(|e| Error::entry(&what, e))?;
        emit_entry(w, &path, rec, &xattrs, &mut entry)
            .ctx(|| format!("writing {path} of {what}"))?;
    }
    Ok(())
}

fn emit_parents(
    w: &mut dyn Write,
    index: &MergedIndex,
    path: &str,
    emitted: &mut HashSet<String>,
) -> Result<()> {
    // The ancestors not yet written, from the parent upwards: a written
    // directory's ancestors are all written, so the walk stops there and
    // the work stays linear in the depth.
    let mut missing = Vec::new();
    let mut cur = path;
    while let Some(i) = cur.rfind('/') {
        if i == 0 {
            break;
        }
        cur = &cur[..i];
        if emitted.contains(cur) {
            break;
        }
        missing.push(cur);
    }
    for a in missing.into_iter().rev() {
        if let Some(rec) = index.get(a) {
            emit_dir(w, a, rec, emitted)?;
        }
    }
    Ok(())
}

fn emit_dir(w: &mut dyn Write, path: &str, rec: &Rec, emitted: &mut HashSet<String>) -> Result<()> {
    write_dir(w, path, rec).ctx(|| format!("writing {path}"))?;
    emitted.insert(path.to_string());
    Ok(())
}

/// The tar name of the image path `path`: relative, in the bytes the base
/// named it with (see [`crate::tarname`]); `./` for the root.
fn entry_name(path: &str) -> Vec<u8> {
    match path.strip_prefix('/') {
        Some("") | None => b"./".to_vec(),
        Some(rel) => crate::tarname::encode(rel).into_owned(),
    }
}

/// A directory header for the image path `path`.
fn write_dir(w: &mut dyn Write, path: &str, rec: &Rec) -> std::io::Result<()> {
    let mut name = entry_name(path);
    if !name.ends_with(b"/") {
        name.push(b'/');
    }
    write_header(
        w,
        &EntryHeader {
            name: &name,
            kind: tar::EntryType::Directory,
            meta: rec.meta,
            size: 0,
            mtime: rec.mtime,
            link: None,
            device: (0, 0),
        },
    )
}

/// Rewrite the tar of a rootfs base entry by entry with normalised names:
/// relative (no leading `/` or `./`), no empty, `.` or `..` components,
/// hard link targets the same way (so inside the root); contents, owners,
/// modes and times as they are. Whiteout entries stay empty whiteout
/// files.
fn write_normalised<R: Read>(src: R, what: &str, w: &mut dyn Write) -> Result<R> {
    let mut archive = crate::limits::tar_archive(src);
    {
        let entries = archive
            .entries()
            .map_err(|e| Error::read(what, "not a tar stream", e))?;
        for (ord, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| Error::read(what, "broken tar stream", e))?;
            let h = entry.header();
            let marker_meta = Meta {
                mode: h.mode().unwrap_or(0o644) & 0o7777,
                uid: h
                    .uid()
                    .ok()
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or(0),
                gid: h
                    .gid()
                    .ok()
                    .and_then(|g| u32::try_from(g).ok())
                    .unwrap_or(0),
            };
            let mtime = h.mtime().unwrap_or(0);
            let xattrs = xattr_records(&mut entry).map_err(|e| Error::entry(what, e))?;
            let parsed = crate::tarindex::parse_entry(&mut entry, 0, ord as u64, None)
                .map_err(|e| Error::entry(what, e))?;
            let (marker, path) = match parsed {
                Parsed::Skip => continue,
                Parsed::Entry(path, rec) => {
                    let r = match rec.kind {
                        Kind::Dir => write_pax(w, &xattrs).and_then(|()| write_dir(w, &path, &rec)),
                        _ if path == "/" => continue,
                        _ => emit_entry(w, &path, &rec, &xattrs, &mut entry),
                    };
                    r.ctx(|| format!("writing {path} of {what}"))?;
                    continue;
                }
                Parsed::Whiteout(p) => {
                    let ip = ImagePath::new(&p).map_err(|e| Error::cause(what, e))?;
                    let parent = ip.parent().unwrap_or_else(ImagePath::root);
                    (format!(".wh.{}", ip.file_name()), parent)
                }
                Parsed::Opaque(d) => (
                    ".wh..wh..opq".to_string(),
                    ImagePath::new(&d).map_err(|e| Error::cause(what, e))?,
                ),
            };
            let mut name = if path.is_root() {
                Vec::new()
            } else {
                entry_name(&format!("{path}/"))
            };
            name.extend_from_slice(&crate::tarname::encode(&marker));
            write_header(
                w,
                &EntryHeader {
                    name: &name,
                    kind: tar::EntryType::Regular,
                    meta: marker_meta,
                    size: 0,
                    mtime,
                    link: None,
                    device: (0, 0),
                },
            )
            .ctx(|| format!("writing a whiteout of {what}"))?;
        }
    }
    write_end(w).ctx(|| format!("writing {what}"))?;
    Ok(archive.into_inner().into_inner())
}

/// The extended attributes and ACLs of a tar entry (PAX `SCHILY.xattr.*`,
/// `LIBARCHIVE.xattr.*` and `SCHILY.acl.*` records, e.g. file
/// capabilities), to write again with the entry. An error when a record
/// of its PAX header cannot be read (the tar reader splits records at
/// newlines, so a binary value holding one is lost): refused rather than
/// dropped.
fn xattr_records<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> std::result::Result<Vec<PaxRecord>, EntryError> {
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let Ok(Some(pax)) = entry.pax_extensions() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for r in pax {
        let r = r.map_err(|source| EntryError::PaxRecord {
            name: name.clone(),
            source,
        })?;
        let k = r.key_bytes();
        if [&b"SCHILY.xattr."[..], b"LIBARCHIVE.xattr.", b"SCHILY.acl."]
            .iter()
            .any(|p| k.starts_with(p))
        {
            out.push((k.to_vec(), r.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn emit_entry(
    w: &mut dyn Write,
    path: &str,
    rec: &Rec,
    xattrs: &[PaxRecord],
    data: &mut dyn Read,
) -> std::io::Result<()> {
    write_pax(w, xattrs)?;
    let name = entry_name(path);
    let mut h = EntryHeader {
        name: &name,
        kind: tar::EntryType::Regular,
        meta: rec.meta,
        size: 0,
        mtime: rec.mtime,
        link: None,
        device: (0, 0),
    };
    let link;
    match &rec.kind {
        Kind::File(size) => {
            h.size = *size;
            write_header(w, &h)?;
            copy_exact(data, w, *size)?;
            return write_padding(w, *size);
        }
        Kind::Dir => h.kind = tar::EntryType::Directory,
        Kind::Symlink(t) => {
            h.kind = tar::EntryType::Symlink;
            link = crate::tarname::encode(t);
            h.link = Some(&link);
        }
        Kind::Hardlink(t) => {
            h.kind = tar::EntryType::Link;
            link = crate::tarname::encode(t.trim_start_matches('/'));
            h.link = Some(&link);
        }
        Kind::Other(t, major, minor) => {
            h.kind = tar::EntryType::new(*t);
            h.device = (*major, *minor);
        }
    }
    write_header(w, &h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::base::BaseRef;
    use nodeimg_layers::tree::Origin;
    use nodeimg_layers::{ImagePath, Node, NodeKind};

    #[test]
    fn a_new_rootfs_base_is_compressed_while_it_is_indexed() {
        use crate::base::NoRegistry;
        use crate::cache::LayerCache;
        let t = tempfile::tempdir().unwrap();
        // A base of a few files, plain and zstd-compressed.
        let mut raw = Vec::new();
        {
            let mut b = tar::Builder::new(&mut raw);
            for i in 0..50u32 {
                let data = format!("file {i}\n").repeat(1000 + i as usize);
                let mut h = tar::Header::new_gnu();
                h.set_path(format!("etc/f{i}")).unwrap();
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
            b.finish().unwrap();
        }
        std::fs::write(t.path().join("b.tar"), &raw).unwrap();
        std::fs::write(
            t.path().join("b.tar.zst"),
            zstd::encode_all(&raw[..], 1).unwrap(),
        )
        .unwrap();
        for (name, compression) in [
            ("b.tar", Compression::Zstd),
            ("b.tar", Compression::Gzip),
            ("b.tar.zst", Compression::Gzip),
        ] {
            let r = BaseRef::parse(&format!("rootfs:{name}"), t.path()).unwrap();
            let o = |p: &str, cache| OutputOptions {
                compression,
                cache,
                ..opts(t.path().join(p), Format::Oci)
            };
            // Without a cache: the base compressed when the image is written.
            let plain = Base::open(&r).unwrap();
            let want = write(&plain, &plans(), &meta(5), &o("plain", None)).unwrap();
            // A cache that has never seen the base: one pass, the same image.
            let dir = t.path().join(format!("cache-{name}-{compression:?}"));
            let c = std::sync::Arc::new(
                LayerCache::open(&dir)
                    .unwrap()
                    .compressing_bases(compression),
            );
            let base = Base::open_cached(&r, None, &NoRegistry, Some(&c)).unwrap();
            assert_eq!(c.counts().built, 0, "nothing built before the output");
            let blobs = std::fs::read_dir(dir.join("layers/blobs")).unwrap().count();
            assert_eq!(blobs, 1, "{name}: the base's blob is in the cache");
            let got = write(&base, &plans(), &meta(5), &o("onepass", Some(c.clone()))).unwrap();
            assert_eq!(
                got.manifest_digest, want.manifest_digest,
                "{name} {compression:?}"
            );
            assert_eq!(got.layers[0].digest, want.layers[0].digest);
            let counts = c.counts();
            assert_eq!((counts.built, counts.reused), (3, 0), "{name}: {counts:?}");
            // A second build reuses everything, verified.
            let c2 = std::sync::Arc::new(
                LayerCache::open(&dir)
                    .unwrap()
                    .compressing_bases(compression),
            );
            let base = Base::open_cached(&r, None, &NoRegistry, Some(&c2)).unwrap();
            let again = write(&base, &plans(), &meta(5), &o("again", Some(c2.clone()))).unwrap();
            assert_eq!(again.manifest_digest, want.manifest_digest);
            assert_eq!(c2.counts().reused, 3, "{name}: {:?}", c2.counts());
        }
    }

    #[test]
    fn rootfs_output_names_are_checked_up_front() {
        assert!(check_path(Path::new("out/n.tar.zst"), Format::Rootfs).is_ok());
        assert!(check_path(Path::new("out/n"), Format::Oci).is_ok());
        let e = check_path(Path::new("out/n.img"), Format::Rootfs).unwrap_err();
        assert!(
            e.to_string()
                .contains("out/n.img: a rootfs output must be named"),
            "{e}"
        );
    }

    #[test]
    fn origins_sum_up_package_paths_in_one_entry() {
        let mut t = FileTree::new();
        let ip = |p: &str| nodeimg_layers::tree::ImagePath::new(p).unwrap();
        t.insert(
            ip("/etc/sysctl.d/k.conf"),
            Node::file("x", Origin::new("sysctl", "sysctl")),
        )
        .unwrap();
        for p in [
            "/usr/bin/containerd",
            "/usr/bin/runc",
            "/var/lib/dpkg/status",
        ] {
            t.insert(
                ip(p),
                Node::file("b", Origin::new("packages", "packages[0]")),
            )
            .unwrap();
        }
        let m: BTreeMap<String, String> = serde_json::from_str(&origins_json(&t)).unwrap();
        assert_eq!(
            m,
            BTreeMap::from([
                (String::new(), "packages".to_string()),
                ("/etc/sysctl.d/k.conf".to_string(), "sysctl".to_string()),
            ])
        );
        // Without packages there is no summary entry.
        let mut c = FileTree::new();
        c.insert(
            ip("/etc/a"),
            Node::file("x", Origin::new("file", "file[0]")),
        )
        .unwrap();
        assert_eq!(origins_json(&c), r#"{"/etc/a":"file[0]"}"#);
    }

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    fn meta(created: i64) -> ImageMeta {
        ImageMeta {
            name: "node".into(),
            tag: "v1".into(),
            architecture: "amd64".into(),
            labels: [(
                "org.opencontainers.image.title".to_string(),
                "node".to_string(),
            )]
            .into(),
            annotations: [(
                "org.opencontainers.image.version".to_string(),
                "1".to_string(),
            )]
            .into(),
            created,
        }
    }

    fn plans() -> Vec<LayerPlan> {
        let mut a = FileTree::new();
        a.insert(
            p("/etc/sysctl.d/99-kubernetes-cri.conf"),
            Node::file("net.ipv4.ip_forward = 1\n", Origin::new("sysctl", "sysctl")),
        )
        .unwrap();
        a.insert(
            p("/etc/os-release"),
            Node::file(
                "ID=test\nVERSION_CODENAME=x\n",
                Origin::new("file", "file[0]"),
            ),
        )
        .unwrap();
        a.insert(
            p("/etc/d/x"),
            Node::file("x", Origin::new("file", "file[1]")),
        )
        .unwrap();
        a.insert(
            p("/etc/gone"),
            Node::file("g", Origin::new("file", "file[2]")),
        )
        .unwrap();
        let mut b = FileTree::new();
        b.insert(
            p("/etc/gone"),
            Node::whiteout(Origin::new("remove", "remove[0]")),
        )
        .unwrap();
        b.insert(
            p("/etc/d"),
            Node {
                kind: NodeKind::Opaque,
                meta: Meta::DIR,
                origin: Origin::new("dir", "dir[0]"),
                mtime: None,
            },
        )
        .unwrap();
        b.insert(
            p("/etc/d/y"),
            Node::file("y", Origin::new("file", "file[0]")),
        )
        .unwrap();
        b.insert(
            p("/usr/bin/tool"),
            Node::file("#!/bin/sh\n", Origin::new("file", "file[1]")).with_meta(Meta::mode(0o755)),
        )
        .unwrap();
        vec![
            LayerPlan {
                name: "kernel".into(),
                tree: a,
            },
            LayerPlan {
                name: "cleanup".into(),
                tree: b,
            },
        ]
    }

    fn opts(path: PathBuf, format: Format) -> OutputOptions {
        OutputOptions {
            path,
            format,
            compression: Compression::Gzip,
            force: false,
            cache: None,
        }
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn blob(layout: &Path, digest: &str) -> PathBuf {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn manifest_json(layout: &Path, built: &Built) -> serde_json::Value {
        serde_json::from_slice(&read(&blob(
            layout,
            built.manifest_digest.as_ref().unwrap(),
        )))
        .unwrap()
    }

    fn tar_names(bytes: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn docker_archive_is_what_docker_load_reads() {
        let t = tempfile::tempdir().unwrap();
        let base = Base::scratch();
        let a = write(
            &base,
            &plans(),
            &meta(100),
            &opts(t.path().join("a.tar"), Format::DockerArchive),
        )
        .unwrap();
        let b = write(
            &base,
            &plans(),
            &meta(100),
            &opts(t.path().join("b.tar"), Format::DockerArchive),
        )
        .unwrap();
        let bytes = read(&t.path().join("a.tar"));
        assert_eq!(bytes, read(&t.path().join("b.tar")), "reproducible");
        assert_eq!(
            a.file_digest.as_deref(),
            Some(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))).as_str())
        );
        assert_eq!(a.manifest_digest, b.manifest_digest);
        // The same image as the OCI layout output.
        let oci = write(
            &base,
            &plans(),
            &meta(100),
            &opts(t.path().join("oci"), Format::Oci),
        )
        .unwrap();
        assert_eq!(a.manifest_digest, oci.manifest_digest);

        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let (l0, l1) = (hex(&a.layers[0].diff_id), hex(&a.layers[1].diff_id));
        let config = format!("{}.json", hex(a.config_digest.as_ref().unwrap()));
        let names: Vec<(String, u32, u64, u64)> = tar_names(&bytes);
        let just: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            just,
            [
                format!("{l0}/").as_str(),
                &format!("{l0}/layer.tar"),
                &format!("{l1}/"),
                &format!("{l1}/layer.tar"),
                &config,
                "manifest.json",
                "repositories",
            ]
        );
        assert!(names.iter().all(|n| n.2 == 0 && n.3 == 100), "{names:?}");
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut files = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        // Each layer.tar is the uncompressed layer: its sha256 is the diff_id.
        for l in &a.layers {
            let data = &files[&format!("{}/layer.tar", hex(&l.diff_id))];
            assert_eq!(
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(data))),
                l.diff_id
            );
        }
        assert_eq!(
            String::from_utf8(files["manifest.json"].clone()).unwrap(),
            format!(
                "[{{\"Config\":\"{config}\",\"RepoTags\":[\"node:v1\"],\"Layers\":[\"{l0}/layer.tar\",\"{l1}/layer.tar\"]}}]"
            )
        );
        assert_eq!(
            String::from_utf8(files["repositories"].clone()).unwrap(),
            format!("{{\"node\":{{\"v1\":\"{l1}\"}}}}")
        );
        assert_eq!(
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(&files[&config]))
            ),
            a.config_digest.clone().unwrap()
        );
        // No temporaries left beside the outputs.
        let mut left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.tar", "b.tar", "oci"]);
    }

    #[test]
    fn arm_images_name_their_variant() {
        let t = tempfile::tempdir().unwrap();
        let base = Base::scratch();
        for (arch, variant) in [("arm", Some("v7")), ("arm64", None), ("amd64", None)] {
            let dir = t.path().join(arch);
            let mut m = meta(100);
            m.architecture = arch.into();
            let built = write(&base, &plans(), &m, &opts(dir.clone(), Format::Oci)).unwrap();
            let manifest = manifest_json(&dir, &built);
            let config: serde_json::Value = serde_json::from_slice(&read(&blob(
                &dir,
                manifest["config"]["digest"].as_str().unwrap(),
            )))
            .unwrap();
            assert_eq!(config["architecture"], arch);
            assert_eq!(config["variant"].as_str(), variant, "{arch}: config");
            let index: serde_json::Value =
                serde_json::from_slice(&read(&dir.join("index.json"))).unwrap();
            let platform = &index["manifests"][0]["platform"];
            assert_eq!(platform["architecture"], arch);
            assert_eq!(platform["variant"].as_str(), variant, "{arch}: index");
        }
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn same_inputs_same_digest_and_created_changes_it() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        let base = Base::scratch();
        let a = write(
            &base,
            &plans(),
            &meta(100),
            &opts(t1.path().join("a"), Format::Oci),
        )
        .unwrap();
        let b = write(
            &base,
            &plans(),
            &meta(100),
            &opts(t2.path().join("img"), Format::Oci),
        )
        .unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(a.layers.len(), 2);
        assert_eq!(a.layers[0].name, "kernel");
        let c = write(
            &base,
            &plans(),
            &meta(200),
            &opts(t2.path().join("c"), Format::Oci),
        )
        .unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
        assert_ne!(a.layers[0].digest, c.layers[0].digest);

        // Manifest and config say what the image is.
        let m = manifest_json(&t1.path().join("a"), &a);
        assert_eq!(m["annotations"]["org.opencontainers.image.version"], "1");
        let l0 = &m["layers"][0];
        assert_eq!(
            l0["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(l0["annotations"][LAYER_ANNOTATION], "kernel");
        let origins: BTreeMap<String, String> =
            serde_json::from_str(l0["annotations"][ORIGINS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(origins["/etc/sysctl.d/99-kubernetes-cri.conf"], "sysctl");
        assert_eq!(origins["/etc/d/x"], "file[1]");
        let cfg: serde_json::Value = serde_json::from_slice(&read(&blob(
            &t1.path().join("a"),
            a.config_digest.as_ref().unwrap(),
        )))
        .unwrap();
        let keys: Vec<&String> = cfg.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "architecture",
                "config",
                "created",
                "history",
                "os",
                "rootfs"
            ]
        );
        assert_eq!(cfg["created"], "1970-01-01T00:01:40Z");
        assert_eq!(cfg["architecture"], "amd64");
        assert_eq!(cfg["os"], "linux");
        assert_eq!(cfg["history"][1]["created_by"], "nodeimg layer cleanup");
        assert_eq!(
            cfg["config"]["Labels"]["org.opencontainers.image.title"],
            "node"
        );
        assert_eq!(cfg["rootfs"]["diff_ids"][0], a.layers[0].diff_id.as_str());
        let index: serde_json::Value =
            serde_json::from_slice(&read(&t1.path().join("a/index.json"))).unwrap();
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "v1");
        assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");

        // The layer tar itself: sorted, parents present, root-owned, mtime 100.
        let gz = read(&blob(&t1.path().join("a"), &a.layers[1].digest));
        let mut tarbytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tarbytes)
            .unwrap();
        let names: Vec<String> = tar_names(&tarbytes).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/d/",
                "etc/d/.wh..wh..opq",
                "etc/d/y",
                "etc/.wh.gone",
                "usr/",
                "usr/bin/",
                "usr/bin/tool"
            ]
        );
        assert!(tar_names(&tarbytes).iter().all(|e| e.3 == 100 && e.2 == 0));
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn base_layers_are_reused_byte_for_byte() {
        let t = tempfile::tempdir().unwrap();
        let first = t.path().join("first");
        let a = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(first.clone(), Format::Oci),
        )
        .unwrap();
        let r = BaseRef::parse("oci:first:v1", t.path()).unwrap();
        let base = Base::open(&r).unwrap();
        assert_eq!(base.layers().len(), 2);
        assert_eq!(base.architecture().as_deref(), Some("amd64"));
        assert_eq!(
            base.view().read_text("/etc/os-release").as_deref(),
            Some("ID=test\nVERSION_CODENAME=x\n")
        );
        assert!(!base.view().exists("/etc/gone"));
        assert!(!base.view().exists("/etc/d/x"));
        assert!(base.view().exists("/etc/d/y"));
        assert_eq!(base.view().list("/etc/d"), ["y"]);

        let mut more = FileTree::new();
        more.insert(
            p("/etc/more"),
            Node::file("m", Origin::new("file", "file[0]")),
        )
        .unwrap();
        let top = vec![LayerPlan {
            name: "more".into(),
            tree: more,
        }];
        let second = t.path().join("second");
        let mut o = opts(second.clone(), Format::Oci);
        o.compression = Compression::Zstd;
        let b = write(&base, &top, &meta(0), &o).unwrap();
        assert_eq!(b.layers.len(), 3);
        for i in 0..2 {
            assert!(b.layers[i].from_base);
            assert_eq!(b.layers[i].digest, a.layers[i].digest);
            assert_eq!(
                read(&blob(&second, &b.layers[i].digest)),
                read(&blob(&first, &a.layers[i].digest))
            );
        }
        let m = manifest_json(&second, &b);
        assert_eq!(
            m["layers"][2]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert!(
            m["layers"][0]["annotations"].is_null()
                || m["layers"][0]["annotations"][LAYER_ANNOTATION] == "kernel"
        );
        let cfg: serde_json::Value =
            serde_json::from_slice(&read(&blob(&second, b.config_digest.as_ref().unwrap())))
                .unwrap();
        let hist: Vec<&str> = cfg["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].as_str().unwrap())
            .collect();
        assert_eq!(
            hist,
            [
                "nodeimg layer kernel",
                "nodeimg layer cleanup",
                "nodeimg layer more"
            ]
        );
        assert_eq!(
            cfg["config"]["Labels"]["org.opencontainers.image.title"],
            "node"
        );

        // The same through an OCI archive.
        let ar = t.path().join("first.oci.tar");
        let c = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(ar.clone(), Format::OciArchive),
        )
        .unwrap();
        assert_eq!(c.manifest_digest, a.manifest_digest);
        assert!(c.file_digest.is_some());
        let base =
            Base::open(&BaseRef::parse("oci-archive:first.oci.tar", t.path()).unwrap()).unwrap();
        assert!(base.view().exists("/usr/bin/tool"));
        let d = write(&base, &top, &meta(0), &o).unwrap_or_else(|e| panic!("{e}"));
        let _ = d;
        // The archive is deterministic too.
        let ar2 = t.path().join("again.oci.tar");
        let e = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(ar2.clone(), Format::OciArchive),
        )
        .unwrap();
        assert_eq!(e.file_digest, c.file_digest);
        assert_eq!(read(&ar), read(&ar2));
        let names: Vec<String> = tar_names(&read(&ar)).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names[..2],
            ["blobs/".to_string(), "blobs/sha256/".to_string()]
        );
        assert_eq!(
            names[names.len() - 2..],
            ["index.json".to_string(), "oci-layout".to_string()]
        );
    }

    #[test]
    fn damaged_bases_are_refused_naming_the_digest() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("img");
        let a = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(dir.clone(), Format::Oci),
        )
        .unwrap();
        let r = BaseRef::parse("oci:img", t.path()).unwrap();
        let layer = blob(&dir, &a.layers[0].digest);
        let good = read(&layer);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xff; // gzip trailer: size stays, digest and CRC break
        std::fs::write(&layer, &bad).unwrap();
        let e = Base::open(&r).err().unwrap();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(e.to_string().contains(&a.layers[0].digest), "{e}");

        std::fs::remove_file(&layer).unwrap();
        let e = Base::open(&r).err().unwrap();
        assert!(e.to_string().contains(&a.layers[0].digest), "{e}");
        std::fs::write(&layer, &good).unwrap();
        assert!(Base::open(&r).is_ok());

        // Config with a wrong diff_id (digest of the config fixed up).
        let cfgp = blob(&dir, a.config_digest.as_ref().unwrap());
        let mut cfg: serde_json::Value = serde_json::from_slice(&read(&cfgp)).unwrap();
        cfg["rootfs"]["diff_ids"][0] = serde_json::Value::String(a.layers[1].diff_id.clone());
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let cd = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        std::fs::write(blob(&dir, &cd), &bytes).unwrap();
        let mp = blob(&dir, a.manifest_digest.as_ref().unwrap());
        let mut m: serde_json::Value = serde_json::from_slice(&read(&mp)).unwrap();
        m["config"]["digest"] = serde_json::Value::String(cd);
        m["config"]["size"] = bytes.len().into();
        let mb = serde_json::to_vec(&m).unwrap();
        let md = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&mb)));
        std::fs::write(blob(&dir, &md), &mb).unwrap();
        let ip = dir.join("index.json");
        let mut ix: serde_json::Value = serde_json::from_slice(&read(&ip)).unwrap();
        ix["manifests"][0]["digest"] = serde_json::Value::String(md);
        ix["manifests"][0]["size"] = mb.len().into();
        std::fs::write(&ip, serde_json::to_vec(&ix).unwrap()).unwrap();
        let e = Base::open(&r).err().unwrap();
        assert!(e.to_string().contains("diff_id"), "{e}");

        // Bad JSON in the manifest.
        std::fs::write(&ip, b"{not json").unwrap();
        let e = Base::open(&r).err().unwrap();
        assert!(
            matches!(
                e,
                Error::Source {
                    source: crate::error::SourceError::InvalidIndex(_),
                    ..
                }
            ),
            "{e}"
        );

        // Wrong tag lists the tags.
        let t2 = tempfile::tempdir().unwrap();
        write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(t2.path().join("i"), Format::Oci),
        )
        .unwrap();
        let e = Base::open(&BaseRef::parse("oci:i:nope", t2.path()).unwrap())
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("\"nope\"") && e.to_string().contains("v1"),
            "{e}"
        );
    }

    #[test]
    fn rootfs_output_applies_whiteouts_and_rootfs_bases_become_one_layer() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("root.tar");
        let built = write(
            &Base::scratch(),
            &plans(),
            &meta(5),
            &opts(out.clone(), Format::Rootfs),
        )
        .unwrap();
        assert!(built.manifest_digest.is_none());
        let entries = tar_names(&read(&out));
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/d/",
                "etc/os-release",
                "etc/sysctl.d/",
                "etc/sysctl.d/99-kubernetes-cri.conf",
                "etc/d/y",
                "usr/",
                "usr/bin/",
                "usr/bin/tool"
            ]
        );
        let tool = entries.iter().find(|e| e.0 == "usr/bin/tool").unwrap();
        assert_eq!((tool.1, tool.2, tool.3), (0o755, 0, 5));
        let bad = write(
            &Base::scratch(),
            &plans(),
            &meta(5),
            &opts(t.path().join("root.zip"), Format::Rootfs),
        )
        .unwrap_err();
        assert!(matches!(bad, Error::Usage(_)), "{bad}");

        // Compressed, then read back as a base.
        let gz = t.path().join("root.tar.gz");
        write(
            &Base::scratch(),
            &plans(),
            &meta(5),
            &opts(gz.clone(), Format::Rootfs),
        )
        .unwrap();
        let base = Base::open(&BaseRef::parse("rootfs:root.tar.gz", t.path()).unwrap()).unwrap();
        assert_eq!(base.layers().len(), 1);
        assert_eq!(
            base.view().read_text("/etc/os-release").as_deref(),
            Some("ID=test\nVERSION_CODENAME=x\n")
        );
        assert!(base.config().is_none());
        let img = t.path().join("img");
        let b = write(&base, &[], &meta(5), &opts(img.clone(), Format::Oci)).unwrap();
        assert_eq!(b.layers.len(), 1);
        assert_eq!(b.layers[0].diff_id, base.layers()[0].diff_id);
        let again = Base::open(&BaseRef::parse("oci:img", t.path()).unwrap()).unwrap();
        assert_eq!(again.view().list("/etc/d"), ["y"]);
    }

    #[test]
    fn rootfs_bases_with_absolute_names_become_normalised_layers() {
        let t = tempfile::tempdir().unwrap();
        let mut raw = Vec::new();
        for (name, kind, link, data) in [
            (&b"/"[..], b'5', &b""[..], &b""[..]),
            (b"/etc/", b'5', b"", b""),
            (b"/etc/abs", b'0', b"", b"absolute"),
            (b"./etc/caf\xe9", b'0', b"", b"e-acute"),
            (b"etc//hard", b'1', b"/etc/abs", b""),
            (b"/etc/sym", b'2', b"/etc/caf\xe9", b""),
            (b"/etc/.wh.gone", b'0', b"", b""),
        ] {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_entry_type(tar::EntryType::new(kind));
            h.set_mode(0o640);
            h.set_uid(7);
            h.set_mtime(99);
            h.set_size(data.len() as u64);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(data);
            raw.resize(raw.len().div_ceil(512) * 512, 0);
        }
        raw.resize(raw.len() + 1024, 0);
        std::fs::write(t.path().join("b.tar"), &raw).unwrap();
        let base = Base::open(&BaseRef::parse("rootfs:b.tar", t.path()).unwrap()).unwrap();
        assert!(base.layers()[0].normalise);
        let img = t.path().join("img");
        let b = write(&base, &[], &meta(5), &opts(img.clone(), Format::Oci)).unwrap();
        assert_ne!(b.layers[0].diff_id, base.layers()[0].diff_id);
        let layer = read(&blob(&img, &b.layers[0].digest));
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
        let mut got = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let h = e.header();
            got.push((
                e.path_bytes().into_owned(),
                h.entry_type().as_byte(),
                e.link_name_bytes().map(|l| l.into_owned()),
                data,
                (h.mode().unwrap(), h.uid().unwrap(), h.mtime().unwrap()),
            ));
        }
        let m = (0o640, 7, 99);
        assert_eq!(
            got,
            [
                (b"./".to_vec(), b'5', None, vec![], m),
                (b"etc/".to_vec(), b'5', None, vec![], m),
                (b"etc/abs".to_vec(), b'0', None, b"absolute".to_vec(), m),
                (b"etc/caf\xe9".to_vec(), b'0', None, b"e-acute".to_vec(), m),
                (
                    b"etc/hard".to_vec(),
                    b'1',
                    Some(b"etc/abs".to_vec()),
                    vec![],
                    m
                ),
                (
                    b"etc/sym".to_vec(),
                    b'2',
                    Some(b"/etc/caf\xe9".to_vec()),
                    vec![],
                    m
                ),
                (b"etc/.wh.gone".to_vec(), b'0', None, vec![], m),
            ]
        );
        // The image reads back as the same tree; its config names the new
        // layer's diff_id.
        let again = Base::open(&BaseRef::parse("oci:img", t.path()).unwrap()).unwrap();
        assert_eq!(again.layers()[0].diff_id, b.layers[0].diff_id);
        assert_eq!(again.view().list("/etc").len(), 4);
    }

    #[test]
    fn failed_writes_leave_the_previous_output_and_no_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("img");
        let a = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(out.clone(), Format::Oci),
        )
        .unwrap();
        let index_before = read(&out.join("index.json"));
        let mut broken = plans();
        broken[1]
            .tree
            .insert(
                p("/opt/big"),
                Node {
                    kind: NodeKind::File(nodeimg_layers::Content::Host {
                        path: t.path().join("missing-input"),
                        size: 3,
                    }),
                    meta: Meta::FILE,
                    origin: Origin::new("file", "file[9]"),
                    mtime: None,
                },
            )
            .unwrap();
        for f in [Format::Oci, Format::OciArchive, Format::Rootfs] {
            let path = match f {
                Format::Oci => out.clone(),
                _ => t.path().join("x.tar"),
            };
            let e = write(&Base::scratch(), &broken, &meta(0), &opts(path, f)).unwrap_err();
            assert!(e.to_string().contains("missing-input"), "{e}");
        }
        assert_eq!(read(&out.join("index.json")), index_before);
        let left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["img"]);
        // A successful rebuild replaces it.
        let b = write(
            &Base::scratch(),
            &plans(),
            &meta(9),
            &opts(out.clone(), Format::Oci),
        )
        .unwrap();
        assert_ne!(a.manifest_digest, b.manifest_digest);
        let left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["img"]);
        let index: serde_json::Value =
            serde_json::from_slice(&read(&out.join("index.json"))).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            b.manifest_digest.unwrap().as_str()
        );
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn flattening_keeps_hard_links_and_final_folder_owners() {
        let t = tempfile::tempdir().unwrap();
        let tarp = t.path().join("base.tar");
        {
            let mut b = tar::Builder::new(File::create(&tarp).unwrap());
            let mut add =
                |name: &str, kind: tar::EntryType, mode: u32, link: Option<&str>, data: &[u8]| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(kind);
                    h.set_mode(mode);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_size(data.len() as u64);
                    if let Some(l) = link {
                        h.set_link_name(l).unwrap();
                    }
                    h.set_cksum();
                    b.append_data(&mut h, name, data).unwrap();
                };
            add("./", tar::EntryType::Directory, 0o755, None, b"");
            add("./srv/", tar::EntryType::Directory, 0o700, None, b"");
            add("./srv/a", tar::EntryType::Regular, 0o600, None, b"aaa");
            add("./srv/b", tar::EntryType::Link, 0o600, Some("./srv/a"), b"");
            add(
                "./bin",
                tar::EntryType::Symlink,
                0o777,
                Some("usr/bin"),
                b"",
            );
            b.finish().unwrap();
        }
        let base = Base::open(&BaseRef::parse("rootfs:base.tar", t.path()).unwrap()).unwrap();
        assert_eq!(base.view().read_raw(&p("/srv/b")), None);
        assert_eq!(
            base.view().stat(&p("/srv/b")).unwrap().kind,
            nodeimg_layers::StatKind::File(3)
        );
        let mut tree = FileTree::new();
        tree.insert(
            p("/srv"),
            Node::dir(Origin::new("dir", "dir[0]")).with_meta(Meta {
                mode: 0o750,
                uid: 7,
                gid: 8,
            }),
        )
        .unwrap();
        tree.insert(p("/srv/c"), Node::file("c", Origin::new("file", "file[0]")))
            .unwrap();
        let out = t.path().join("flat.tar");
        write(
            &base,
            &[LayerPlan {
                name: "srv".into(),
                tree,
            }],
            &meta(3),
            &opts(out.clone(), Format::Rootfs),
        )
        .unwrap();
        let bytes = read(&out);
        let mut a = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, char, u32, u64, Option<String>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                    h.entry_type().as_byte() as char,
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    e.link_name_bytes()
                        .map(|l| String::from_utf8(l.to_vec()).unwrap()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("srv/".to_string(), '5', 0o750, 7, None),
                ("srv/a".to_string(), '0', 0o600, 0, None),
                (
                    "srv/b".to_string(),
                    '1',
                    0o600,
                    0,
                    Some("srv/a".to_string())
                ),
                (
                    "bin".to_string(),
                    '2',
                    0o777,
                    0,
                    Some("usr/bin".to_string())
                ),
                ("srv/c".to_string(), '0', 0o644, 0, None),
            ]
        );
    }

    /// Edit the manifest of a one-image layout and fix up the digests.
    fn rewrite_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
        let ip = dir.join("index.json");
        let mut ix: serde_json::Value = serde_json::from_slice(&read(&ip)).unwrap();
        let old = ix["manifests"][0]["digest"].as_str().unwrap().to_string();
        let mut m: serde_json::Value = serde_json::from_slice(&read(&blob(dir, &old))).unwrap();
        f(&mut m);
        let mb = serde_json::to_vec(&m).unwrap();
        let md = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&mb)));
        std::fs::write(blob(dir, &md), &mb).unwrap();
        ix["manifests"][0]["digest"] = md.into();
        ix["manifests"][0]["size"] = mb.len().into();
        std::fs::write(&ip, serde_json::to_vec(&ix).unwrap()).unwrap();
    }

    #[test]
    fn docker_typed_bases_are_reused_with_oci_types() {
        let t = tempfile::tempdir().unwrap();
        let first = t.path().join("first");
        let a = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(first.clone(), Format::Oci),
        )
        .unwrap();
        rewrite_manifest(&first, |m| {
            for l in m["layers"].as_array_mut().unwrap() {
                l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
            }
        });
        let base = Base::open(&BaseRef::parse("oci:first", t.path()).unwrap()).unwrap();
        let second = t.path().join("second");
        let b = write(&base, &[], &meta(0), &opts(second.clone(), Format::Oci)).unwrap();
        let m = manifest_json(&second, &b);
        for (i, l) in m["layers"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_eq!(l["digest"], a.layers[i].digest.as_str());
        }
        if tool("oci-image-tool") {
            let o = std::process::Command::new("oci-image-tool")
                .args(["validate", "--type", "image"])
                .arg(&second)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        // An unknown layer media type is refused, naming the layer.
        rewrite_manifest(&first, |m| {
            m["layers"][0]["mediaType"] = "application/x-bogus".into();
        });
        let e = Base::open(&BaseRef::parse("oci:first", t.path()).unwrap())
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("application/x-bogus")
                && e.to_string().contains(&a.layers[0].digest),
            "{e}"
        );
    }

    #[test]
    fn docker_media_types_become_oci() {
        assert_eq!(
            oci_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        );
        assert_eq!(
            oci_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            None
        );
    }

    #[test]
    fn foreign_folders_are_never_replaced() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join("notes.txt"), b"keep me").unwrap();
        let e = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(home.clone(), Format::Oci),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("not an OCI image layout"), "{e}");
        let e = write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(home.clone(), Format::Rootfs),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert_eq!(read(&home.join("notes.txt")), b"keep me");
        // An empty folder is fine.
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(empty.clone(), Format::Oci),
        )
        .unwrap();
        assert!(empty.join("oci-layout").is_file());
    }

    fn tool(name: &str) -> bool {
        std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok()
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn real_consumers_accept_the_layout() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("img");
        write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(out.clone(), Format::Oci),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), 0o755);
        let ar = t.path().join("img.tar");
        write(
            &Base::scratch(),
            &plans(),
            &meta(0),
            &opts(ar.clone(), Format::OciArchive),
        )
        .unwrap();
        assert_eq!(mode(&ar), 0o644);
        if tool("skopeo") {
            let o = std::process::Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}:v1", ar.display()))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
        } else {
            println!("skopeo is not installed; skipping its check");
        }
        if tool("tar") {
            let flat = t.path().join("flat.tar.gz");
            write(
                &Base::scratch(),
                &plans(),
                &meta(0),
                &opts(flat.clone(), Format::Rootfs),
            )
            .unwrap();
            let o = std::process::Command::new("tar")
                .arg("-tzvf")
                .arg(&flat)
                .arg("--numeric-owner")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let listing = String::from_utf8(o.stdout).unwrap();
            assert!(
                listing.contains("-rwxr-xr-x 0/0") && listing.contains("usr/bin/tool"),
                "{listing}"
            );
        }
        // A second image on top of the first, reusing its layers.
        let base = Base::open(&BaseRef::parse("oci:img:v1", t.path()).unwrap()).unwrap();
        let mut top = FileTree::new();
        top.insert(
            p("/etc/top"),
            Node::file("t", Origin::new("file", "file[0]")),
        )
        .unwrap();
        let second = t.path().join("second");
        write(
            &base,
            &[LayerPlan {
                name: "top".into(),
                tree: top,
            }],
            &meta(0),
            &opts(second.clone(), Format::Oci),
        )
        .unwrap();
        for layout in [&out, &second] {
            if tool("oci-image-tool") {
                let o = std::process::Command::new("oci-image-tool")
                    .args(["validate", "--type", "image"])
                    .arg(layout)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            } else {
                println!("oci-image-tool is not installed; skipping its check");
            }
            if tool("umoci") {
                let bundle = layout.with_extension("bundle");
                let o = std::process::Command::new("umoci")
                    .args(["unpack", "--rootless", "--image"])
                    .arg(format!("{}:v1", layout.display()))
                    .arg(&bundle)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let rootfs = bundle.join("rootfs");
                assert_eq!(
                    std::fs::read_to_string(rootfs.join("etc/d/y")).unwrap(),
                    "y"
                );
                assert!(!rootfs.join("etc/d/x").exists());
                assert!(!rootfs.join("etc/gone").exists());
                assert_eq!(rootfs.join("etc/top").exists(), layout == &second);
            } else {
                println!("umoci is not installed; skipping its check");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod memory {
    use super::*;
    use crate::base::BaseRef;

    fn peak_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Peak memory stays far below the size of a large base (run with
    /// `cargo test -p nodeimg --release -- --ignored memory`).
    #[test]
    #[ignore]
    fn large_bases_stream() {
        let t = tempfile::tempdir().unwrap();
        let tarp = t.path().join("big.tar");
        {
            let f = std::io::BufWriter::new(File::create(&tarp).unwrap());
            let mut b = tar::Builder::new(f);
            let chunk = vec![0x5au8; 8 << 20];
            for i in 0..40 {
                let mut h = tar::Header::new_gnu();
                h.set_size(chunk.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, format!("data/blob-{i}"), &chunk[..])
                    .unwrap();
            }
            for i in 0..20_000 {
                let mut h = tar::Header::new_gnu();
                h.set_size(3);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, format!("many/d{}/f{i}", i % 100), &b"abc"[..])
                    .unwrap();
            }
            b.into_inner().unwrap().flush().unwrap();
        }
        let before = peak_kib();
        let base = Base::open(&BaseRef::parse("rootfs:big.tar", t.path()).unwrap()).unwrap();
        let meta = ImageMeta {
            name: "big".into(),
            tag: "latest".into(),
            architecture: "amd64".into(),
            labels: Default::default(),
            annotations: Default::default(),
            created: 0,
        };
        for (format, name) in [(Format::Oci, "img"), (Format::Rootfs, "flat.tar.zst")] {
            write(
                &base,
                &[],
                &meta,
                &OutputOptions {
                    path: t.path().join(name),
                    format,
                    compression: Compression::Gzip,
                    force: false,
                    cache: None,
                },
            )
            .unwrap();
        }
        let after = peak_kib();
        println!("peak memory: {before} KiB before, {after} KiB after a 320 MiB base");
        assert!(after < before + 100 * 1024, "{before} -> {after}");
    }
}
