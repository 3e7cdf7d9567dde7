//! The layer cache, `layers/` in the cache directory: what a build made
//! that the next build of the same input would make again, kept so that it
//! is not made again.
//!
//! - `blobs/<hex>`: compressed layer blobs, named by their SHA-256. A blob
//!   is put into an output by reflink or hard link when the cache and the
//!   output share a file system, by copy otherwise, and the placed file is
//!   hashed against its digest every time: a damaged blob is reported,
//!   removed and built again, so a warm build is the cold one bit for bit.
//! - `entries/<key>.json`: which blob a layer compresses to. The key is a
//!   SHA-256 over [`FORMAT`], the compression and the digest of the layer's
//!   uncompressed tar (its diff_id): the tar is everything that decides the
//!   blob's bytes (the rendered files, the packages installed, the folders'
//!   owners taken from the layers below), so an equal key means equal bytes.
//! - `index/<key>`: the file index of a base layer (what a build reads of a
//!   base instead of its bytes): a rootfs tarball's by the tarball's
//!   SHA-256, an OCI layer's by its blob digest and diff_id. Each file
//!   carries the SHA-256 of its content, checked before it is read, and is
//!   bounded in size.
//!
//! The cache is an optimisation: an entry that cannot be read, or a write
//! that fails (a read-only or full disk), is a warning, never an error.
//! Files are written under a temporary name and renamed, so a reader never
//! sees half an entry; unused entries age out with `nodeimg cache prune`
//! (each reuse refreshes a file's modification time).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nodeimg_fetch::cachefile::{self, Entry};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::tarindex::LayerChanges;
use crate::tarstream::Codec;

/// The version of what nodeimg writes for a given input (compression
/// settings and libraries, index layout). Raise it with any change that
/// moves a layer's blob for the same tar: entries of another version are
/// then never found. The golden test (`tests/e2e/golden.rs`) refuses to
/// record a blob that moved while its diff_id did not unless this moved.
pub const FORMAT: u32 = 3;

/// The folder of the layer cache in a cache directory.
pub const LAYERS_DIR: &str = "layers";

/// The largest index file read (the kept files of a base are bounded by
/// `limits::KEPT_TOTAL_MAX`; the entries themselves are small).
const INDEX_MAX: u64 = 768 << 20;
/// The largest blob entry read.
const ENTRY_MAX: u64 = 4096;
/// The largest value of [`LayerCache::load_value`].
const ENTRY_VALUE_MAX: u64 = 16 << 20;
/// The first bytes of an index file, before the SHA-256 of the rest.
const INDEX_MAGIC: &[u8] = b"nodeimg layer index\n";

/// What the cache did during a build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Layer blobs put into the output from the cache.
    pub reused: usize,
    /// Layer blobs compressed (and kept).
    pub built: usize,
    /// Base layers whose index came from the cache.
    pub indexes_reused: usize,
    /// Entries found damaged (removed, and built again).
    pub damaged: usize,
    /// Package layers whose installed files came from the cache.
    pub trees_reused: usize,
    /// Package layers installed (and kept).
    pub trees_built: usize,
    /// Package layers whose resolution came from the cache.
    pub resolutions_reused: usize,
}

/// An opened layer cache (see the module documentation).
#[derive(Debug)]
pub struct LayerCache {
    dir: PathBuf,
    notes: Mutex<Vec<String>>,
    counts: Mutex<Counts>,
    trust_identity: bool,
    /// How this build compresses a rootfs base it makes a layer of, when
    /// its output is an OCI layout or archive.
    base_codec: Option<Codec>,
    /// Blobs this process wrote into the cache and hashed as it wrote
    /// them: placed without hashing them again, counted as built.
    fresh: Mutex<std::collections::HashSet<String>>,
}

/// What a placed blob was found to be.
enum Check {
    Sound,
    Damaged(String),
    Gone,
}

/// Which blob a layer compresses to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlobEntry {
    /// The blob's digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The diff_id of the layer the blob holds.
    pub diff_id: String,
}

/// The index of one base layer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    /// The diff_id of the layer (of a rootfs tarball: of its tar).
    pub diff_id: String,
    /// The size of its tar.
    pub tar_size: u64,
    /// Whether its names must be normalised (see `BaseLayer::normalise`).
    pub normalise: bool,
    /// What the layer holds.
    pub changes: LayerChanges,
}

/// The key of a cache entry: SHA-256 over the format and `parts`.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(format!("nodeimg layer cache {FORMAT}\n"));
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The key of the blob of a layer whose tar has `diff_id`, compressed
/// with `codec`; `normalised` for a base tarball rewritten with normalised
/// names (`diff_id` is then the tarball's).
pub(crate) fn blob_key(codec: Codec, diff_id: &str, normalised: bool) -> String {
    let form = if normalised { "normalised" } else { "tar" };
    key(&["blob", codec.name(), form, diff_id])
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits.
fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Read the regular file at `path` (never through a symbolic link, never
/// a FIFO or device), at most `max` bytes. `Ok(None)` when absent,
/// `Ok(Some(Err(why)))` when it is not a usable entry.
fn read_entry_file(
    path: &Path,
    max: u64,
) -> io::Result<Option<std::result::Result<Vec<u8>, String>>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Some(Err("a symbolic link".to_string())))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Some(Err("not a regular file".to_string())));
    }
    if meta.len() > max {
        return Ok(Some(Err(format!("{} bytes, more than {max}", meta.len()))));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(Some(Err(format!("more than {max} bytes"))));
    }
    Ok(Some(Ok(bytes)))
}

impl LayerCache {
    /// The layer cache of the cache directory `cache_dir` (created when
    /// missing).
    ///
    /// Whoever can write the cache can choose what a build's layers hold
    /// (an entry names its blob, a tree its files; checksums only find
    /// damage), so the cache directory and `layers/` must belong to the
    /// user running the build and be writable by no one else: an error
    /// otherwise.
    pub fn open(cache_dir: &Path) -> io::Result<LayerCache> {
        let dir = cache_dir.join(LAYERS_DIR);
        for sub in ["blobs", "entries", "index"] {
            nodeimg_fetch::cachedir::create_dirs(&dir.join(sub))?;
        }
        for d in [cache_dir, dir.as_path()] {
            private_to_user(d)?;
        }
        Ok(LayerCache {
            dir,
            notes: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            trust_identity: false,
            base_codec: None,
            fresh: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The build compresses a rootfs base with `compression` (its output
    /// is an OCI layout or archive): a base tarball the cache has never
    /// seen is then compressed into the cache while it is read for its
    /// index, in the same pass, instead of read twice.
    pub fn compressing_bases(mut self, compression: crate::output::Compression) -> LayerCache {
        self.base_codec = Some(compression.codec()).filter(|c| *c != Codec::Plain);
        self
    }

    /// How a rootfs base is compressed, when it is done while indexing it.
    pub(crate) fn base_codec(&self) -> Option<Codec> {
        self.base_codec
    }

    /// A new temporary file among the cache's blobs, for a blob written
    /// while something else is read.
    pub(crate) fn blob_temp(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(self.dir.join("blobs"))
    }

    /// Keep the blob this process wrote to `tmp` and hashed as `digest`.
    pub(crate) fn keep_fresh_blob(&self, tmp: tempfile::NamedTempFile, digest: &str) -> bool {
        let r = tmp
            .as_file()
            .sync_all()
            .and_then(|()| tmp.persist(self.blob_path(digest)).map_err(|e| e.error));
        match r {
            Ok(_) => {
                if let Ok(mut f) = self.fresh.lock() {
                    f.insert(digest.to_string());
                }
                true
            }
            Err(e) => {
                self.store_failed(&format!("blob {digest}"), &e);
                false
            }
        }
    }

    /// Take a rootfs base, or a blob of the cache, whose file identity
    /// (device, inode, size, modification and change times) is the one
    /// remembered for its SHA-256 as having that SHA-256, without hashing
    /// it (the user's choice: `--trust-stat`).
    pub fn trusting_identity(mut self, trust: bool) -> LayerCache {
        self.trust_identity = trust;
        self
    }

    /// Whether file identities are trusted (see [`Self::trusting_identity`]).
    pub(crate) fn trusts_identity(&self) -> bool {
        self.trust_identity
    }

    /// The folder of the layer cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What went wrong with the cache so far (damaged entries, failed
    /// writes), one sentence each; taken, so each is said once.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// What the cache did so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
        }
    }

    fn note(&self, message: String) {
        if let Ok(mut v) = self.notes.lock() {
            v.push(message);
        }
    }

    /// The entry at `path` is damaged (`why`): said, counted and removed.
    fn damaged(&self, path: &Path, why: &str) {
        self.count(|c| c.damaged += 1);
        let removed = match cachefile::remove_entry(path) {
            Ok(()) => "removed it".to_string(),
            Err(e) => format!("could not remove it ({e})"),
        };
        self.note(format!(
            "layer cache: {} is damaged ({why}); {removed}, and the layer is built again",
            path.display()
        ));
    }

    /// The blob of `what` made while reading it could not be written.
    pub(crate) fn note_failed_blob(&self, what: &str, e: &io::Error) {
        self.store_failed(&format!("the compressed blob of {what}"), e);
    }

    fn store_failed(&self, what: &str, e: &io::Error) {
        self.note(format!(
            "layer cache: could not keep {what} in {}: {e}",
            self.dir.display()
        ));
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Write `bytes` as the file `dest` of the cache, atomically.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let parent = dest.parent().unwrap_or(&self.dir);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// The bytes of the cache file at `path` (at most `max`); `None` when
    /// absent, or unusable (said; a damaged one removed).
    fn read_entry(&self, path: &Path, max: u64) -> Option<Vec<u8>> {
        match read_entry_file(path, max) {
            Ok(Some(Ok(b))) => Some(b),
            Ok(None) => None,
            Ok(Some(Err(why))) => {
                self.damaged(path, &why);
                None
            }
            Err(e) => {
                self.note(format!("layer cache: cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// The blob entry `key`, when there is a sound one.
    pub(crate) fn entry(&self, key: &str) -> Option<BlobEntry> {
        let path = self.dir.join("entries").join(format!("{key}.json"));
        let bytes = self.read_entry(&path, ENTRY_MAX)?;
        match serde_json::from_slice::<BlobEntry>(&bytes) {
            Ok(e) if is_digest(&e.digest) && is_digest(&e.diff_id) => Some(e),
            Ok(_) => {
                self.damaged(&path, "a digest is not sha256:<64 hex digits>");
                None
            }
            Err(e) => {
                self.damaged(&path, &format!("not a blob entry: {e}"));
                None
            }
        }
    }

    /// Record that the layer of `key` compresses to `entry`.
    pub(crate) fn store_entry(&self, key: &str, entry: &BlobEntry) {
        let path = self.dir.join("entries").join(format!("{key}.json"));
        let bytes = match serde_json::to_vec(entry) {
            Ok(b) => b,
            Err(e) => return self.store_failed("a blob entry", &io::Error::other(e)),
        };
        if let Err(e) = self.write_atomic(&path, &bytes) {
            self.store_failed("a blob entry", &e);
        }
    }

    /// Put the cached blob `digest` (`size` bytes) at `dest` (a new path
    /// of an output being written): reflink, else hard link, else copy;
    /// then hash what is at `dest`. `false` when the cache has no sound
    /// copy (a damaged one is reported and removed) and nothing is at
    /// `dest`.
    pub(crate) fn place_blob(&self, digest: &str, size: u64, dest: &Path) -> bool {
        let src = self.blob_path(digest);
        match fs::symlink_metadata(&src) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => {
                self.damaged(&src, "not a regular file");
                return false;
            }
            Err(_) => return false,
        }
        let hex = digest.trim_start_matches("sha256:");
        // A blob this build wrote (and hashed while writing) is placed as
        // it is, and counts as built.
        let fresh = self.fresh.lock().is_ok_and(|f| f.contains(digest));
        if fresh {
            let placed = link_or_copy(&src, dest)
                .and_then(|()| fs::symlink_metadata(dest))
                .is_ok_and(|m| m.is_file() && m.len() == size);
            if placed {
                self.count(|c| c.built += 1);
            } else {
                let _ = fs::remove_file(dest);
            }
            return placed;
        }
        // With --trust-stat, a blob whose identity is the one recorded when
        // it was last hashed is not hashed again (only its size checked).
        let before = FileId::of_blob(&src).ok();
        let trusted = self.trust_identity
            && before
                .as_ref()
                .is_some_and(|id| self.hint(id).as_deref() == Some(hex));
        if let Err(e) = link_or_copy(&src, dest) {
            let _ = fs::remove_file(dest);
            self.note(format!(
                "layer cache: cannot use {} ({e}); the layer is built again",
                src.display()
            ));
            return false;
        }
        let checked = if trusted {
            fs::symlink_metadata(dest).map(|m| {
                if m.is_file() && m.len() == size {
                    Check::Sound
                } else {
                    Check::Damaged(format!("{} bytes instead of {size}", m.len()))
                }
            })
        } else {
            cachefile::open_verified(dest, size, hex).map(|e| match e {
                Entry::Verified(_) => Check::Sound,
                Entry::Damaged(why) => Check::Damaged(why),
                Entry::Absent => Check::Gone,
            })
        };
        match checked {
            Ok(Check::Sound) => {
                self.count(|c| c.reused += 1);
                // Used now: pruning by age keeps it; and its identity, as
                // it is now, is remembered with its SHA-256.
                touch(&src);
                if let Some(id) = &before {
                    let _ = fs::remove_file(hint_path(&self.dir, id));
                }
                if let Ok(id) = FileId::of_blob(&src) {
                    self.remember(&id, hex);
                }
                true
            }
            Ok(Check::Damaged(why)) => {
                let _ = fs::remove_file(dest);
                self.damaged(&src, &why);
                false
            }
            Ok(Check::Gone) => false,
            Err(e) => {
                let _ = fs::remove_file(dest);
                self.note(format!(
                    "layer cache: cannot read {} ({e}); the layer is built again",
                    src.display()
                ));
                false
            }
        }
    }

    /// Keep the finished blob at `src` (named by `digest`, written and
    /// hashed by this build) in the cache, in place of what the cache
    /// had under that name (which was not used, so may be damaged).
    pub(crate) fn keep_blob(&self, src: &Path, digest: &str) {
        self.count(|c| c.built += 1);
        let dest = self.blob_path(digest);
        let r = temp_in(&self.dir.join("blobs"), |p| link_or_copy(src, p))
            .and_then(|tmp| tmp.persist(&dest).map_err(|e| e.error));
        if let Err(e) = r {
            self.store_failed(&format!("blob {digest}"), &e);
        }
    }

    /// The index `key`, when there is a sound one.
    pub(crate) fn load_index(&self, key: &str) -> Option<IndexEntry> {
        let path = self.dir.join("index").join(key);
        let bytes = self.read_entry(&path, INDEX_MAX)?;
        match decode_index(&bytes) {
            Ok(e) => {
                self.count(|c| c.indexes_reused += 1);
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(e)
            }
            Err(why) => {
                self.damaged(&path, &why);
                None
            }
        }
    }

    /// Keep the index `key`.
    pub(crate) fn store_index(&self, key: &str, entry: &IndexEntry) {
        let path = self.dir.join("index").join(key);
        let r = postcard::to_stdvec(entry)
            .map_err(io::Error::other)
            .map(|payload| encode_index(&payload))
            .and_then(|bytes| self.write_atomic(&path, &bytes));
        if let Err(e) = r {
            self.store_failed("a base index", &e);
        }
    }
}

impl LayerCache {
    /// The value kept as `key` in the folder `part` (see
    /// [`LayerCache::store_value`]), once its recorded SHA-256 is found to
    /// be its content's; `None` when there is none (a damaged one is
    /// reported and removed). The caller still checks what it decodes.
    pub fn load_value(&self, part: &str, key: &str) -> Option<Vec<u8>> {
        self.load_value_at_most(part, key, ENTRY_VALUE_MAX)
    }

    /// [`LayerCache::load_value`] of a value that may take up to `max`
    /// bytes (a larger file is reported as damaged, never read).
    pub fn load_value_at_most(&self, part: &str, key: &str, max: u64) -> Option<Vec<u8>> {
        let path = self.dir.join(part).join(key);
        let mut bytes = self.read_entry(&path, max)?;
        match checked_payload(&bytes) {
            Ok(p) => {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                // The payload in place: no second copy of a large value.
                let start = bytes.len() - p.len();
                bytes.drain(..start);
                Some(bytes)
            }
            Err(why) => {
                self.damaged(&path, &why);
                None
            }
        }
    }

    /// Keep `payload` as `key` in the folder `part` of the layer cache
    /// (written atomically, with its SHA-256); a failure only warns.
    pub fn store_value(&self, part: &str, key: &str, payload: &[u8]) {
        self.store_value_streamed(part, key, &|w| w.write_all(payload));
    }

    /// Keep the bytes `write` writes as `key` in the folder `part` of the
    /// layer cache (written atomically, after the SHA-256 of the bytes),
    /// without holding them in memory:
    /// `write` is called twice (to hash, then to write the file) and must
    /// write the same bytes both times (if not, the entry is found damaged
    /// when it is read). A failure only warns.
    pub fn store_value_streamed(
        &self,
        part: &str,
        key: &str,
        write: &dyn Fn(&mut dyn Write) -> io::Result<()>,
    ) {
        let dir = self.dir.join(part);
        let r = (|| {
            nodeimg_fetch::cachedir::create_dirs(&dir)?;
            let mut hash = crate::tarstream::HashWriter::new(io::sink());
            write(&mut hash)?;
            let (_, digest, _) = hash.finish();
            let sum = digest.trim_start_matches("sha256:");
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
            {
                let mut w = io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
                w.write_all(INDEX_MAGIC)?;
                w.write_all(sum.as_bytes())?;
                w.write_all(b"\n")?;
                write(&mut w)?;
                w.flush()?;
            }
            tmp.as_file().sync_all()?;
            tmp.persist(dir.join(key)).map_err(|e| e.error)?;
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = r {
            self.store_failed(part, &e);
        }
    }

    /// A value of `part` was reused: counted for the build's summary.
    pub fn count_resolution_reused(&self) {
        self.count(|c| c.resolutions_reused += 1);
    }

    /// A value found unusable after its checksum held (it does not decode):
    /// reported and removed.
    pub fn value_damaged(&self, part: &str, key: &str, why: &str) {
        self.damaged(&self.dir.join(part).join(key), why);
    }
}

/// What identifies a file's content without reading it, as far as the
/// file system tells: device, inode, size, and modification and change
/// times in nanoseconds (the change time moves with every write and cannot
/// be set back). Used only to start work early: the content is hashed
/// all the same ([`PendingHash`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileId(String);

impl FileId {
    /// The identity of `path` now.
    pub(crate) fn of(path: &Path) -> io::Result<FileId> {
        Self::make(path, true)
    }

    /// The identity of a blob of the cache now: without the change time,
    /// which moves whenever an output linked to the blob is removed.
    fn of_blob(path: &Path) -> io::Result<FileId> {
        Self::make(path, false)
    }

    fn make(path: &Path, ctime: bool) -> io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path)?;
        let abs = fs::canonicalize(path)?;
        let changed = if ctime {
            format!("{}.{}", m.ctime(), m.ctime_nsec())
        } else {
            "-".to_string()
        };
        Ok(FileId(key(&[
            "file",
            &abs.to_string_lossy(),
            &format!(
                "{} {} {} {}.{} {changed}",
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
            ),
        ])))
    }
}

/// The SHA-256 of a file being computed on another thread, and the value
/// the build went on with.
#[derive(Debug)]
pub(crate) struct PendingHash {
    want: String,
    hint: PathBuf,
    handle: Mutex<Option<std::thread::JoinHandle<io::Result<String>>>>,
}

impl PendingHash {
    /// `handle` computes the hex SHA-256 of the file `id`, which the
    /// layer cache in `dir` remembered as `want`.
    pub(crate) fn new(
        want: String,
        id: FileId,
        dir: &Path,
        handle: std::thread::JoinHandle<io::Result<String>>,
    ) -> PendingHash {
        PendingHash {
            want,
            hint: hint_path(dir, &id),
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Wait for the hash: an error naming `what` unless it is the value
    /// the build went on with (the remembered identity is then forgotten,
    /// so the next build hashes first).
    pub(crate) fn confirm(&self, what: &str) -> crate::Result<()> {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let Some(handle) = handle else {
            return Ok(());
        };
        let found = match handle.join() {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(crate::Error::read(what, "reading the tarball", e)),
            Err(_) => return Err(crate::Error::image(what, "hashing the tarball failed")),
        };
        if found == self.want {
            return Ok(());
        }
        let _ = fs::remove_file(&self.hint);
        Err(crate::Error::image(
            what,
            format!(
                "changed in place since its index was made (SHA-256 {found}, not {}, with the \
                 same size and times); run the build again",
                self.want
            ),
        ))
    }
}

fn hint_path(dir: &Path, id: &FileId) -> PathBuf {
    dir.join("index").join(format!("file-{}", id.0))
}

impl LayerCache {
    /// The SHA-256 (hex) a file of identity `id` had when it was last
    /// hashed, if remembered.
    pub(crate) fn hint(&self, id: &FileId) -> Option<String> {
        let path = hint_path(&self.dir, id);
        match read_entry_file(&path, 64) {
            Ok(Some(Ok(b))) if b.len() == 64 && b.iter().all(u8::is_ascii_hexdigit) => {
                String::from_utf8(b).ok().map(|s| s.to_ascii_lowercase())
            }
            Ok(Some(_)) => {
                self.damaged(&path, "not a SHA-256");
                None
            }
            _ => None,
        }
    }

    /// Remember that the file of identity `id` has the SHA-256 `sha` (hex).
    pub(crate) fn remember(&self, id: &FileId, sha: &str) {
        if let Err(e) = self.write_atomic(&hint_path(&self.dir, id), sha.as_bytes()) {
            self.store_failed("a file's SHA-256", &e);
        }
    }
}

/// A layer's packages as installed, kept by what decided them (see
/// [`LayerCache::load_tree`]): the tree's entries, its files by SHA-256 in
/// `files/`, and the warnings the installation gave.
#[derive(Serialize, Deserialize)]
struct StoredTree {
    nodes: Vec<StoredNode>,
    warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredNode {
    path: String,
    kind: StoredKind,
    meta: nodeimg_layers::Meta,
    item: String,
    key: String,
    mtime: Option<u64>,
}

#[derive(Serialize, Deserialize)]
enum StoredKind {
    File { sha256: String, size: u64 },
    Dir,
    Symlink(String),
    Hardlink(String),
    Whiteout,
    Opaque,
}

/// The SHA-256 (hex) of the running program, by its file's identity, so
/// that what one nodeimg installed is never taken for what another would.
pub fn program_digest(cache: &LayerCache) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let id = FileId::of(&exe).ok()?;
    if let Some(sha) = cache.hint(&id) {
        return Some(sha);
    }
    let (sha, _) = hash_file(&exe).ok()?;
    if FileId::of(&exe).ok().as_ref() == Some(&id) {
        cache.remember(&id, &sha);
    }
    Some(sha)
}

impl LayerCache {
    fn tree_path(&self, key: &str) -> PathBuf {
        self.dir.join("trees").join(key)
    }

    fn file_path(&self, sha: &str) -> PathBuf {
        self.dir.join("files").join(sha)
    }

    /// The tree and warnings kept as `key`, every file verified and held
    /// open (the layer is packed from the handle that was verified);
    /// `None` when there is no sound one (a damaged part is reported and
    /// removed).
    pub fn load_tree(&self, key: &str) -> Option<(nodeimg_layers::FileTree, Vec<String>)> {
        let path = self.tree_path(key);
        let bytes = self.read_entry(&path, INDEX_MAX)?;
        let stored: StoredTree = match checked_payload(&bytes)
            .and_then(|p| postcard::from_bytes(p).map_err(|e| format!("unreadable: {e}")))
        {
            Ok(t) => t,
            Err(why) => {
                self.damaged(&path, &why);
                return None;
            }
        };
        let mut tree = nodeimg_layers::FileTree::new();
        for n in stored.nodes {
            let kind = self.node_of(&path, n.kind)?;
            let (Ok(p), Some(kind)) = (nodeimg_layers::ImagePath::new(&n.path), kind) else {
                self.damaged(
                    &path,
                    &format!("it names {:?}, which no layer can hold", n.path),
                );
                return None;
            };
            let node = nodeimg_layers::Node {
                kind,
                meta: n.meta,
                origin: nodeimg_layers::tree::Origin::new(n.item, n.key),
                mtime: n.mtime,
            };
            if let Err(e) = tree.insert(p, node) {
                self.damaged(&path, &e.to_string());
                return None;
            }
        }
        self.count(|c| c.trees_reused += 1);
        touch(&path);
        Some((tree, stored.warnings))
    }

    /// The node kind of a stored one: `None` when a file is missing or
    /// damaged (said), `Some(None)` when a link target is no image path.
    fn node_of(&self, tree: &Path, kind: StoredKind) -> Option<Option<nodeimg_layers::NodeKind>> {
        use nodeimg_layers::{Content, InputFile, NodeKind};
        Some(Some(match kind {
            StoredKind::File { sha256, size } => {
                let path = self.file_path(&sha256);
                match cachefile::open_verified(&path, size, &sha256) {
                    Ok(Entry::Verified(f)) => {
                        touch(&path);
                        let name = format!("the layer cache's {}", path.display());
                        NodeKind::File(Content::Input(InputFile::new(f.shared(), size, name)))
                    }
                    Ok(Entry::Damaged(why)) => {
                        self.damaged(&path, &why);
                        return None;
                    }
                    Ok(Entry::Absent) => {
                        self.note(format!(
                            "layer cache: {} names {}, which is not there; the layer is built again",
                            tree.display(),
                            path.display()
                        ));
                        return None;
                    }
                    Err(e) => {
                        self.note(format!("layer cache: cannot read {}: {e}", path.display()));
                        return None;
                    }
                }
            }
            StoredKind::Dir => NodeKind::Dir,
            StoredKind::Symlink(t) => NodeKind::Symlink(t),
            StoredKind::Hardlink(t) => match nodeimg_layers::ImagePath::new(&t) {
                Ok(p) => NodeKind::Hardlink(p),
                Err(_) => return Some(None),
            },
            StoredKind::Whiteout => NodeKind::Whiteout,
            StoredKind::Opaque => NodeKind::Opaque,
        }))
    }

    /// Keep `tree` (its files by content) and `warnings` as `key`.
    pub fn store_tree(&self, key: &str, tree: &nodeimg_layers::FileTree, warnings: &[String]) {
        self.count(|c| c.trees_built += 1);
        if let Err(e) = self.try_store_tree(key, tree, warnings) {
            self.store_failed("a layer's packages", &e);
        }
    }

    fn try_store_tree(
        &self,
        key: &str,
        tree: &nodeimg_layers::FileTree,
        warnings: &[String],
    ) -> io::Result<()> {
        use nodeimg_layers::NodeKind;
        nodeimg_fetch::cachedir::create_dirs(&self.dir.join("trees"))?;
        nodeimg_fetch::cachedir::create_dirs(&self.dir.join("files"))?;
        let mut nodes = Vec::new();
        for (p, n) in tree.iter() {
            let kind = match &n.kind {
                NodeKind::File(c) => {
                    let (sha256, size) = self.keep_file(c)?;
                    StoredKind::File { sha256, size }
                }
                NodeKind::Dir => StoredKind::Dir,
                NodeKind::Symlink(t) => StoredKind::Symlink(t.clone()),
                NodeKind::Hardlink(t) => StoredKind::Hardlink(t.as_str().to_string()),
                NodeKind::Whiteout => StoredKind::Whiteout,
                NodeKind::Opaque => StoredKind::Opaque,
            };
            nodes.push(StoredNode {
                path: p.as_str().to_string(),
                kind,
                meta: n.meta,
                item: n.origin.item.clone(),
                key: n.origin.key.clone(),
                mtime: n.mtime,
            });
        }
        let payload = postcard::to_stdvec(&StoredTree {
            nodes,
            warnings: warnings.to_vec(),
        })
        .map_err(io::Error::other)?;
        self.write_atomic(&self.tree_path(key), &encode_index(&payload))
    }

    /// Keep one file's content in `files/` (linked from a file of the
    /// build's scratch folder when it can be): its SHA-256 and size.
    fn keep_file(&self, c: &nodeimg_layers::Content) -> io::Result<(String, u64)> {
        use nodeimg_layers::Content;
        let tmp = temp_in(&self.dir.join("files"), |p| match c {
            Content::Host { path, .. } => link_or_copy(path, p),
            Content::Bytes(b) => write_new(p, &mut b.as_slice()),
            Content::Input(f) => write_new(p, &mut f.reader()),
        })?;
        let (sha, size) = hash_file(&tmp)?;
        tmp.persist(self.file_path(&sha)).map_err(|e| e.error)?;
        Ok((sha, size))
    }
}

/// A new file in `dir` under a temporary name, made by `fill` (which must
/// create it); removed unless persisted.
fn temp_in(
    dir: &Path,
    fill: impl FnMut(&Path) -> io::Result<()>,
) -> io::Result<tempfile::TempPath> {
    Ok(tempfile::Builder::new()
        .prefix(".tmp-")
        .make_in(dir, fill)?
        .into_temp_path())
}

/// Create the file `path` (it must not exist) with what `r` reads.
fn write_new(path: &Path, r: &mut dyn Read) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    io::copy(r, &mut f)?;
    f.sync_all()
}

/// The SHA-256 (hex) and size of the file at `path`.
fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let f = File::open(path)?;
    let mut h = Sha256::new();
    let n = io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut h)?;
    Ok((hex::encode(h.finalize()), n))
}

/// Refresh a cache file's modification time (pruning by age keeps it).
fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// `dir` is a folder of the user running the build that no one else may
/// write to; an error saying what is wrong otherwise.
fn private_to_user(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    if m.uid() != me {
        return Err(io::Error::other(format!(
            "{} belongs to user {}, not to the user running the build ({me}); whoever owns it chooses what layers hold",
            dir.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} may be written by others (mode {:o}); whoever can write it chooses what layers hold: chmod go-w it",
            dir.display(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// An index file: [`INDEX_MAGIC`], the SHA-256 of the payload (hex, and a
/// newline), the payload.
fn encode_index(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_MAGIC.len() + 65 + payload.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(hex::encode(Sha256::digest(payload)).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The payload of an index or tree file, once its recorded SHA-256 is
/// found to be its content's.
fn checked_payload(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let rest = bytes
        .strip_prefix(INDEX_MAGIC)
        .ok_or("not a layer index file")?;
    if rest.len() < 65 || rest[64] != b'\n' {
        return Err("truncated".to_string());
    }
    let (sum, payload) = (&rest[..64], &rest[65..]);
    let found = hex::encode(Sha256::digest(payload));
    if found.as_bytes() != sum {
        return Err(format!(
            "its content's SHA256 is {found}, not the {} it records",
            String::from_utf8_lossy(sum)
        ));
    }
    Ok(payload)
}

fn decode_index(bytes: &[u8]) -> std::result::Result<IndexEntry, String> {
    let payload = checked_payload(bytes)?;
    let entry: IndexEntry =
        postcard::from_bytes(payload).map_err(|e| format!("unreadable: {e}"))?;
    if !is_digest(&entry.diff_id) {
        return Err("its diff_id is not sha256:<64 hex digits>".to_string());
    }
    let bad = entry
        .changes
        .entries
        .keys()
        .chain(&entry.changes.whiteouts)
        .chain(&entry.changes.opaques)
        .find(|p| nodeimg_layers::ImagePath::new(p.as_str()).is_err());
    if let Some(p) = bad {
        return Err(format!("it names the path {p:?}, which no layer can hold"));
    }
    Ok(entry)
}

/// Make `dest` (a new path) the content of `src`: a reflink (a copy that
/// shares blocks, on file systems that can), else a hard link, else a
/// copy. `src` is never followed through a symbolic link.
fn link_or_copy(src: &Path, dest: &Path) -> io::Result<()> {
    let from = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)?;
    if !from.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)?;
    if rustix::fs::ioctl_ficlone(&to, &from).is_ok() {
        return Ok(());
    }
    drop(to);
    fs::remove_file(dest)?;
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)?;
    io::copy(&mut (&from), &mut to)?;
    to.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn digest_of(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    #[test]
    fn blobs_are_placed_verified_and_damaged_ones_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let c = LayerCache::open(&t.path().join("cache")).unwrap();
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        let blob = b"a compressed layer".to_vec();
        let d = digest_of(&blob);
        let made = out.join("made");
        fs::write(&made, &blob).unwrap();
        c.keep_blob(&made, &d);
        let e = BlobEntry {
            digest: d.clone(),
            size: blob.len() as u64,
            diff_id: digest_of(b"tar"),
        };
        let k = blob_key(Codec::Gzip, &e.diff_id, false);
        c.store_entry(&k, &e);
        assert_eq!(c.entry(&k), Some(e.clone()));
        assert_eq!(c.entry(&blob_key(Codec::Zstd, &e.diff_id, false)), None);
        assert_eq!(c.entry(&blob_key(Codec::Gzip, &e.diff_id, true)), None);

        assert!(c.place_blob(&d, e.size, &out.join("a")));
        assert_eq!(fs::read(out.join("a")).unwrap(), blob);
        assert!(c.take_notes().is_empty());

        // Damaged in the cache: refused, nothing placed, said, removed.
        let cached = c.dir().join("blobs").join(d.trim_start_matches("sha256:"));
        fs::remove_file(&cached).unwrap();
        fs::write(&cached, b"a compressed layeR").unwrap();
        assert!(!c.place_blob(&d, e.size, &out.join("b")));
        assert!(!out.join("b").exists());
        let notes = c.take_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("is damaged") && notes[0].contains("SHA256"),
            "{notes:?}"
        );
        assert!(!cached.exists());
        assert_eq!(c.counts().damaged, 1);
        assert_eq!(c.counts().reused, 1);

        // A symbolic link in its place is not followed.
        let host = t.path().join("host");
        fs::write(&host, &blob).unwrap();
        std::os::unix::fs::symlink(&host, &cached).unwrap();
        assert!(!c.place_blob(&d, e.size, &out.join("c")));
        assert!(!out.join("c").exists() && host.exists());
    }

    #[test]
    fn entries_and_indexes_that_do_not_check_out_are_damaged() {
        let t = tempfile::tempdir().unwrap();
        let c = LayerCache::open(t.path()).unwrap();
        let k = key(&["x"]);
        fs::write(
            c.dir().join("entries").join(format!("{k}.json")),
            b"{\"digest\":1}",
        )
        .unwrap();
        assert_eq!(c.entry(&k), None);
        assert!(c.take_notes()[0].contains("not a blob entry"));

        let mut changes = LayerChanges::default();
        changes.whiteouts.push("/etc/gone".to_string());
        let ie = IndexEntry {
            diff_id: digest_of(b"t"),
            tar_size: 1024,
            normalise: false,
            changes,
        };
        c.store_index(&k, &ie);
        let back = c.load_index(&k).unwrap();
        assert_eq!(back.changes.whiteouts, vec!["/etc/gone".to_string()]);
        assert_eq!(back.tar_size, 1024);
        // One byte changed: its recorded SHA256 no longer matches.
        let p = c.dir().join("index").join(&k);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(c.load_index(&k).is_none());
        assert!(c.take_notes()[0].contains("SHA256"));
        assert!(!p.exists());
        // A path no layer can hold, with a matching checksum.
        let mut bad = IndexEntry {
            diff_id: digest_of(b"t"),
            tar_size: 0,
            normalise: false,
            changes: LayerChanges::default(),
        };
        bad.changes.opaques.push("/etc/../../x".to_string());
        c.store_index(&k, &bad);
        assert!(c.load_index(&k).is_none());
        assert!(c.take_notes()[0].contains("no layer can hold"));
    }

    #[test]
    fn a_file_is_known_by_its_identity_and_a_wrong_guess_fails_the_build() {
        let t = tempfile::tempdir().unwrap();
        let c = LayerCache::open(&t.path().join("cache")).unwrap();
        let f = t.path().join("base.tar");
        fs::write(&f, b"a tarball").unwrap();
        let id = FileId::of(&f).unwrap();
        assert_eq!(c.hint(&id), None);
        let sha = hex::encode(Sha256::digest(b"a tarball"));
        c.remember(&id, &sha);
        assert_eq!(c.hint(&id), Some(sha.clone()));
        // Any write moves the identity (the change time at least).
        fs::write(&f, b"a tarbalL").unwrap();
        assert_ne!(FileId::of(&f).unwrap(), id);

        // The hash agrees: fine, once and again.
        let agree = sha.clone();
        let p = PendingHash::new(
            sha.clone(),
            id.clone(),
            c.dir(),
            std::thread::spawn(move || Ok(agree)),
        );
        p.confirm("rootfs:base.tar").unwrap();
        p.confirm("rootfs:base.tar").unwrap();
        // It does not: the build fails naming both, and the guess is forgotten.
        let other = "0".repeat(64);
        let found = other.clone();
        let p = PendingHash::new(
            sha.clone(),
            id.clone(),
            c.dir(),
            std::thread::spawn(move || Ok(found)),
        );
        let e = p.confirm("rootfs:base.tar").unwrap_err().to_string();
        assert!(
            e.contains("rootfs:base.tar") && e.contains(&other) && e.contains(&sha),
            "{e}"
        );
        assert!(e.contains("run the build again"), "{e}");
        assert_eq!(c.hint(&id), None);
    }

    #[test]
    fn blobs_are_linked_on_one_file_system_and_copied_across() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let c = LayerCache::open(&t.path().join("cache")).unwrap();
        let blob = b"layer bytes".to_vec();
        let d = digest_of(&blob);
        let made = t.path().join("made");
        fs::write(&made, &blob).unwrap();
        c.keep_blob(&made, &d);
        let cached = c.dir().join("blobs").join(d.trim_start_matches("sha256:"));
        let same = t.path().join("same-fs");
        assert!(c.place_blob(&d, blob.len() as u64, &same));
        let (a, b) = (fs::metadata(&cached).unwrap(), fs::metadata(&same).unwrap());
        // A hard link is the same inode; a reflink (where the file system
        // has them) a new one sharing blocks.
        let probe = t.path().join("probe");
        fs::write(&probe, b"x").unwrap();
        let to = fs::File::create(t.path().join("probe2")).unwrap();
        let reflinks = rustix::fs::ioctl_ficlone(&to, fs::File::open(&probe).unwrap()).is_ok();
        assert!(reflinks || a.ino() == b.ino(), "linked, not copied");
        // Another file system (a tmpfs, when there is one): copied.
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let across = other.path().join("blob");
        assert!(c.place_blob(&d, blob.len() as u64, &across));
        assert_eq!(fs::read(&across).unwrap(), blob);
        assert_ne!(fs::metadata(&across).unwrap().ino(), a.ino());
        assert_eq!(
            fs::metadata(&cached).unwrap().nlink(),
            a.nlink(),
            "not linked"
        );
    }

    #[test]
    fn a_cache_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("cache");
        LayerCache::open(&d).unwrap();
        for (path, mode) in [(d.clone(), 0o777), (d.join(LAYERS_DIR), 0o775)] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = LayerCache::open(&d).unwrap_err().to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains("written by others"),
                "{e}"
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        LayerCache::open(&d).unwrap();
    }

    #[test]
    fn keys_depend_on_every_part() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let all = [
            blob_key(Codec::Gzip, &d, false),
            blob_key(Codec::Zstd, &d, false),
            blob_key(Codec::Plain, &d, false),
            blob_key(Codec::Gzip, &d, true),
            blob_key(
                Codec::Gzip,
                &("sha256:".to_string() + &"b".repeat(64)),
                false,
            ),
        ];
        let set: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len());
    }
}
