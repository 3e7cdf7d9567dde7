//! What surrounds the writing of an output: the lock that keeps two builds
//! of one output apart, the removal of what an interrupted build left, the
//! refusal to replace what nodeimg did not write, and the final swap.
//!
//! Beside an output `DIR/NAME` a build keeps:
//! - `DIR/.NAME.nodeimg-lock`: a file holding `pid N`, locked (`flock`,
//!   exclusive) by the build from before any work until the output is in
//!   place, and removed then. The kernel releases the lock of a killed build.
//! - `DIR/.NAME.nodeimg-tmp-XXXXXX`: the output being written (and work
//!   files), renamed to `DIR/NAME` when complete. Whoever holds the lock is
//!   the only build of that output, so it removes every such sibling first:
//!   they were left by a build that was killed.

use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::{split_output, Format, OutputOptions};
use crate::error::{Error, IoContext, Result};
use crate::tarstream::{Codec, Decoder};

/// The infix of every temporary sibling of an output.
const TMP_INFIX: &str = "nodeimg-tmp-";

/// The largest `index.json` or manifest read to recognise a previous
/// output; nodeimg's are a few KiB.
const MAX_JSON: u64 = 4 << 20;

/// The most tar entries read to recognise a previous archive output.
const MAX_ENTRIES: usize = 100_000;

/// The exclusive lock of one output path, held while it is built. Dropping
/// it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    lock_path: PathBuf,
    path: PathBuf,
    /// Folders `lock` created for the output, deepest first: removed again
    /// (when empty) if no output was written.
    created: Vec<PathBuf>,
}

impl OutputLock {
    /// The output path this lock is for.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked: a build that opened this file before
        // the removal and locks it after sees that it is no longer the
        // file at the path, and takes the lock again (see `lock`).
        let _ = std::fs::remove_file(&self.lock_path);
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
        if std::fs::symlink_metadata(&self.path).is_err() {
            for d in &self.created {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
            }
        }
    }
}

/// The prefix of the temporary siblings of the output `name`.
pub(super) fn tmp_prefix(name: &str) -> String {
    format!(".{name}.{TMP_INFIX}")
}

/// Take the lock of `opts.path` (creating its folder), at once or not at
/// all: when another build holds it, fail naming that build. Then remove
/// what interrupted builds of this output left, and refuse an existing
/// `opts.path` that is not a previous output (unless `opts.force`).
pub fn lock(opts: &OutputOptions) -> Result<OutputLock> {
    let (parent, name) = split_output(&opts.path)?;
    let created: Vec<PathBuf> = parent
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
    let lock_path = parent.join(format!(".{name}.nodeimg-lock"));
    let file = take_lock(&lock_path, &opts.path)?;
    let lock = OutputLock {
        file,
        lock_path,
        path: opts.path.clone(),
        created,
    };
    let mut f = &lock.file;
    f.set_len(0)
        .and_then(|()| f.write_all(format!("pid {}\n", std::process::id()).as_bytes()))
        .ctx(|| format!("writing {}", lock.lock_path.display()))?;
    remove_debris(&parent, &name)?;
    check_replaceable(&opts.path, opts.format, opts.force)?;
    Ok(lock)
}

fn take_lock(lock_path: &Path, output: &Path) -> Result<File> {
    let ctx = || format!("locking {}", lock_path.display());
    // A lock file removed and created again between our open and our lock
    // is retried; more than a few times means something else is at work.
    for _ in 0..16 {
        let fd = match rustix::fs::open(
            lock_path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            // The folder, just created, was removed by a failed build of
            // another output in it that had created it too: again.
            Err(rustix::io::Errno::NOENT) => {
                if let Some(parent) = lock_path.parent() {
                    std::fs::create_dir_all(parent)
                        .ctx(|| format!("creating {}", parent.display()))?;
                }
                continue;
            }
            Err(e) => return Err(std::io::Error::from(e)).ctx(ctx),
        };
        let file = File::from(fd);
        let md = file.metadata().ctx(ctx)?;
        if !md.is_file() {
            return Err(Error::Usage(format!(
                "{}: the lock file of {} is not a regular file; remove it",
                lock_path.display(),
                output.display()
            )));
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(Error::OutputBusy {
                    path: output.to_path_buf(),
                    holder: holder(&file),
                    lock: lock_path.to_path_buf(),
                });
            }
            Err(e) => return Err(std::io::Error::from(e)).ctx(ctx),
        }
        let same = std::fs::symlink_metadata(lock_path)
            .map(|now| now.dev() == md.dev() && now.ino() == md.ino())
            .unwrap_or(false);
        if same {
            return Ok(file);
        }
    }
    Err(Error::image(
        output.display().to_string(),
        format!(
            "its lock file {} keeps being replaced; is another program removing it?",
            lock_path.display()
        ),
    ))
}

/// Who holds a lock, from what it wrote in the lock file.
fn holder(mut file: &File) -> String {
    let mut buf = Vec::new();
    let _ = Read::by_ref(&mut file).take(64).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    match text
        .trim()
        .strip_prefix("pid ")
        .and_then(|p| p.parse::<u32>().ok())
    {
        Some(pid) => format!("another nodeimg build (pid {pid})"),
        None => "another nodeimg build".to_string(),
    }
}

/// Remove every temporary sibling of the output `name` in `parent`: with
/// the lock held, no build is writing them.
fn remove_debris(parent: &Path, name: &str) -> Result<()> {
    let prefix = tmp_prefix(name);
    let entries = std::fs::read_dir(parent).ctx(|| format!("reading {}", parent.display()))?;
    for e in entries {
        let e = e.ctx(|| format!("reading {}", parent.display()))?;
        if !e.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let p = e.path();
        let removed = match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(err) => Err(err),
        };
        match removed {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).ctx(|| {
                    format!(
                        "removing {}, left by an interrupted build (remove it by hand)",
                        p.display()
                    )
                })
            }
        }
    }
    Ok(())
}

/// Refuse to replace what is at `path` unless it is a previous output of
/// `format` (or nothing of value: an empty folder or file), or `force`.
pub(super) fn check_replaceable(path: &Path, format: Format, force: bool) -> Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    };
    if force {
        return Ok(());
    }
    match foreign(path, &md, format) {
        None => Ok(()),
        Some(what) => Err(Error::Usage(format!(
            "{} exists and is {what}; nodeimg replaces only an output it wrote. Remove it, \
             choose another output path with -o, or pass --force to replace it",
            path.display()
        ))),
    }
}

/// What is at `path`, when it is not a previous output of `format`.
fn foreign(path: &Path, md: &Metadata, format: Format) -> Option<String> {
    let ft = md.file_type();
    if ft.is_symlink() {
        let to = std::fs::read_link(path)
            .map(|t| format!(" to {}", t.display()))
            .unwrap_or_default();
        return Some(format!("a symlink{to}"));
    }
    if md.is_dir() {
        let names = match dir_names(path) {
            Ok(n) => n,
            Err(e) => return Some(format!("a folder that cannot be read ({e})")),
        };
        if names.is_empty() {
            return None;
        }
        if format != Format::Oci {
            return Some(format!("a folder holding {}", list(&names)));
        }
        return foreign_layout(path, &names);
    }
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a named pipe"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Some(kind.to_string());
    }
    if format == Format::Oci {
        return Some("a file, not an OCI image layout folder".to_string());
    }
    if md.len() == 0 {
        return None;
    }
    match format {
        Format::Rootfs => not_rootfs_tar(path),
        Format::OciArchive => not_archive_with(path, "oci-layout", "an OCI archive"),
        Format::DockerArchive => not_archive_with(path, "manifest.json", "a docker archive"),
        Format::Oci => None,
    }
}

fn dir_names(path: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(path)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Up to three names, and how many more.
fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(3)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 3 {
        s.push_str(&format!(" and {} more", names.len() - 3));
    }
    s
}

/// Whether the folder `path` holding `names` is an OCI layout nodeimg
/// wrote: exactly `oci-layout`, `index.json` and `blobs/` (with `sha256/`
/// only), one image whose manifest carries nodeimg's annotations.
fn foreign_layout(path: &Path, names: &[String]) -> Option<String> {
    const NOT: &str = "not an OCI image layout nodeimg wrote";
    let known = ["blobs", "index.json", "oci-layout"];
    let other: Vec<String> = names
        .iter()
        .filter(|n| !known.contains(&n.as_str()))
        .cloned()
        .collect();
    if !other.is_empty() {
        return Some(format!("a folder holding {}, {NOT}", list(&other)));
    }
    let is_file = |n: &str| {
        std::fs::symlink_metadata(path.join(n))
            .map(|m| m.is_file())
            .unwrap_or(false)
    };
    if !is_file("oci-layout") || !is_file("index.json") {
        return Some(format!(
            "a folder without the oci-layout and index.json files of an image, {NOT}"
        ));
    }
    let blobs = path.join("blobs");
    let blob_names = std::fs::symlink_metadata(&blobs)
        .ok()
        .filter(|m| m.is_dir())
        .and_then(|_| dir_names(&blobs).ok());
    match blob_names {
        Some(b) if b.iter().all(|n| n == "sha256") => {}
        Some(b) => {
            return Some(format!(
                "a folder whose blobs/ holds {}, {NOT}",
                list(&b.into_iter().filter(|n| n != "sha256").collect::<Vec<_>>())
            ))
        }
        None => return Some(format!("a folder whose blobs is not a folder, {NOT}")),
    }
    match nodeimg_manifest(path) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "an OCI image layout nodeimg did not write (its image carries no \
             {RECIPE_DIGEST} or {LAYER} annotation)",
            RECIPE_DIGEST = crate::output::RECIPE_DIGEST_ANNOTATION,
            LAYER = super::LAYER_ANNOTATION,
        )),
        Err(why) => Some(format!("an OCI image layout that is {NOT} ({why})")),
    }
}

/// Why a folder that looks like an OCI layout is not one nodeimg wrote.
#[derive(Debug, thiserror::Error)]
enum LayoutProbe {
    /// A file of it cannot be read.
    #[error("{name}: {source}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A file of it is not a regular file.
    #[error("{name} is not a file")]
    NotFile { name: String },
    /// A file of it is larger than [`MAX_JSON`].
    #[error("{name} is {len} bytes")]
    TooLarge { name: String, len: u64 },
    /// A JSON document of it does not parse.
    #[error("{item}: {source}")]
    Json {
        item: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// `index.json` has no `manifests` array.
    #[error("index.json lists no manifests")]
    NoManifests,
    /// `index.json` lists other than one image.
    #[error("index.json lists {0} images")]
    Images(usize),
    /// The manifest's descriptor has no sha256 digest.
    #[error("index.json names no sha256 manifest")]
    NoManifestDigest,
}

fn read_small(path: &Path) -> std::result::Result<Vec<u8>, LayoutProbe> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let read_err = |source| LayoutProbe::Read {
        name: name.clone(),
        source,
    };
    let md = std::fs::symlink_metadata(path).map_err(read_err)?;
    if !md.is_file() {
        return Err(LayoutProbe::NotFile { name });
    }
    if md.len() > MAX_JSON {
        return Err(LayoutProbe::TooLarge {
            name,
            len: md.len(),
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Whether the layout at `path` holds one image, built by nodeimg.
fn nodeimg_manifest(path: &Path) -> std::result::Result<bool, LayoutProbe> {
    let json = |item, bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|source| LayoutProbe::Json { item, source })
    };
    let index = json("index.json", &read_small(&path.join("index.json"))?)?;
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .ok_or(LayoutProbe::NoManifests)?;
    let [one] = manifests.as_slice() else {
        return Err(LayoutProbe::Images(manifests.len()));
    };
    let hex = one
        .get("digest")
        .and_then(|d| d.as_str())
        .and_then(|d| d.strip_prefix("sha256:"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(LayoutProbe::NoManifestDigest)?;
    let manifest = json(
        "the manifest",
        &read_small(&path.join("blobs/sha256").join(hex))?,
    )?;
    let has = |v: &serde_json::Value, key: &str| {
        v.get("annotations")
            .and_then(|a| a.as_object())
            .is_some_and(|a| a.contains_key(key))
    };
    let layer_marked = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .is_some_and(|l| l.iter().any(|d| has(d, super::LAYER_ANNOTATION)));
    Ok(has(&manifest, crate::output::RECIPE_DIGEST_ANNOTATION) || layer_marked)
}

/// Whether a 512-byte block is a tar header: its checksum matches.
fn tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|b| *b as char)
        .filter(|c| ('0'..='7').contains(c))
        .collect();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// What the file at `path` is, unless it is a rootfs output: a tar,
/// compressed as its name says.
fn not_rootfs_tar(path: &Path) -> Option<String> {
    let codec = Codec::from_tar_name(path).unwrap_or(Codec::Plain);
    let what = match codec {
        Codec::Plain => "a file that is not a tar",
        Codec::Gzip => "a file that is not a gzip-compressed tar",
        Codec::Zstd => "a file that is not a zstd-compressed tar",
    };
    let ok = File::open(path)
        .and_then(|f| Decoder::new(codec, std::io::BufReader::new(f)))
        .and_then(|mut d| {
            let mut block = [0u8; 512];
            d.read_exact(&mut block)?;
            Ok(tar_header(&block))
        })
        .unwrap_or(false);
    (!ok).then(|| what.to_string())
}

/// What the file at `path` is, unless it is an archive output: a plain
/// tar holding the entry `marker`.
fn not_archive_with(path: &Path, marker: &str, kind: &str) -> Option<String> {
    let not = || Some(format!("a file that is not {kind}"));
    let unreadable = |e: std::io::Error| Some(format!("a file that cannot be read ({e})"));
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return unreadable(e),
    };
    let mut block = [0u8; 512];
    if f.read_exact(&mut block).is_err() || !tar_header(&block) {
        return not();
    }
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return unreadable(e),
    };
    let mut ar = tar::Archive::new(f);
    let Ok(entries) = ar.entries_with_seek() else {
        return not();
    };
    for e in entries.take(MAX_ENTRIES) {
        let Ok(e) = e else {
            return not();
        };
        if e.path_bytes().as_ref() == marker.as_bytes() {
            return None;
        }
    }
    Some(format!("a tar without {marker}, not {kind}"))
}

/// Put the finished `tmp` (file or folder) at `dest`. A file over a file
/// (or a symlink) is one rename; otherwise the two are exchanged
/// atomically (or, where the file system cannot, `dest` is moved aside
/// first), and the previous content, now at `tmp`, is removed.
pub(super) fn put_in_place(tmp: &Path, dest: &Path) -> Result<()> {
    let moving = || format!("moving the image to {}", dest.display());
    let Ok(old) = std::fs::symlink_metadata(dest) else {
        return std::fs::rename(tmp, dest).ctx(moving);
    };
    let tmp_is_dir = std::fs::symlink_metadata(tmp)
        .map(|m| m.is_dir())
        .ctx(|| format!("reading {}", tmp.display()))?;
    if !old.is_dir() && !tmp_is_dir {
        return std::fs::rename(tmp, dest).ctx(moving);
    }
    let exchanged = rustix::fs::renameat_with(
        rustix::fs::CWD,
        tmp,
        rustix::fs::CWD,
        dest,
        rustix::fs::RenameFlags::EXCHANGE,
    );
    if exchanged.is_err() {
        let (parent, name) = split_output(dest)?;
        let aside = super::temp_dir(&parent, &name)?;
        let aside_path = aside.path().join("old");
        std::fs::rename(dest, &aside_path)
            .ctx(|| format!("moving the previous {} aside", dest.display()))?;
        if let Err(e) = std::fs::rename(tmp, dest) {
            let _ = std::fs::rename(&aside_path, dest);
            return Err(e).ctx(moving);
        }
        drop(aside);
        return Ok(());
    }
    // `tmp` now holds the previous content. The new output is in place
    // whatever happens here; a leftover is removed by the next build.
    if let Ok(old) = std::fs::symlink_metadata(tmp) {
        let _ = if old.is_dir() {
            std::fs::remove_dir_all(tmp)
        } else {
            std::fs::remove_file(tmp)
        };
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::output::Compression;

    fn opts(path: PathBuf, format: Format) -> OutputOptions {
        OutputOptions {
            path,
            format,
            compression: Compression::Gzip,
            force: false,
            cache: None,
        }
    }

    fn tar_bytes(name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn refused(path: &Path, format: Format) -> String {
        let e = check_replaceable(path, format, false).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(check_replaceable(path, format, true).is_ok());
        let m = e.to_string();
        assert!(m.contains(&path.display().to_string()), "{m}");
        assert!(m.contains("--force"), "{m}");
        m
    }

    #[test]
    fn tar_headers_are_told_from_other_data() {
        let t = tar_bytes("etc/x");
        assert!(tar_header(t[..512].try_into().unwrap()));
        let mut text = [b'a'; 512];
        assert!(!tar_header(&text));
        text[148..156].copy_from_slice(b"0000000\0");
        assert!(!tar_header(&text));
        assert!(!tar_header(&[0u8; 512]));
    }

    #[test]
    fn only_previous_outputs_and_empty_paths_are_replaced() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        // Nothing, an empty folder, an empty file.
        assert!(check_replaceable(&p("none"), Format::Oci, false).is_ok());
        std::fs::create_dir(p("empty")).unwrap();
        for f in [Format::Oci, Format::Rootfs, Format::OciArchive] {
            assert!(check_replaceable(&p("empty"), f, false).is_ok());
        }
        std::fs::write(p("zero.tar"), b"").unwrap();
        assert!(check_replaceable(&p("zero.tar"), Format::Rootfs, false).is_ok());

        // Rootfs tars, compressed as named.
        std::fs::write(p("r.tar"), tar_bytes("etc/x")).unwrap();
        assert!(check_replaceable(&p("r.tar"), Format::Rootfs, false).is_ok());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes("etc/x")).unwrap();
        std::fs::write(p("r.tar.gz"), gz.finish().unwrap()).unwrap();
        assert!(check_replaceable(&p("r.tar.gz"), Format::Rootfs, false).is_ok());
        std::fs::write(p("plain.tar.zst"), tar_bytes("etc/x")).unwrap();
        let m = refused(&p("plain.tar.zst"), Format::Rootfs);
        assert!(m.contains("not a zstd-compressed tar"), "{m}");
        std::fs::write(p("notes.tar"), b"dear diary").unwrap();
        let m = refused(&p("notes.tar"), Format::Rootfs);
        assert!(m.contains("a file that is not a tar"), "{m}");

        // Archives need their marker entry.
        std::fs::write(p("a.tar"), tar_bytes("oci-layout")).unwrap();
        assert!(check_replaceable(&p("a.tar"), Format::OciArchive, false).is_ok());
        let m = refused(&p("a.tar"), Format::DockerArchive);
        assert!(m.contains("without manifest.json"), "{m}");
        std::fs::write(p("d.tar"), tar_bytes("manifest.json")).unwrap();
        assert!(check_replaceable(&p("d.tar"), Format::DockerArchive, false).is_ok());
        let m = refused(&p("r.tar"), Format::OciArchive);
        assert!(m.contains("without oci-layout"), "{m}");

        // A symlink, even to a good output; a folder where a file goes.
        std::os::unix::fs::symlink(p("r.tar"), p("link.tar")).unwrap();
        let m = refused(&p("link.tar"), Format::Rootfs);
        assert!(m.contains("a symlink to "), "{m}");
        std::fs::create_dir(p("home")).unwrap();
        std::fs::write(p("home/notes.txt"), b"x").unwrap();
        let m = refused(&p("home"), Format::Rootfs);
        assert!(m.contains("a folder holding notes.txt"), "{m}");
        let m = refused(&p("r.tar"), Format::Oci);
        assert!(m.contains("a file, not an OCI image layout"), "{m}");
    }

    #[test]
    fn layouts_are_replaced_only_when_nodeimg_wrote_them() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        std::fs::create_dir_all(img.join("blobs/sha256")).unwrap();
        std::fs::write(img.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let manifest = |ann: &str| format!(r#"{{"schemaVersion":2,"layers":[],{ann}"x":1}}"#);
        let put = |m: &str| {
            use sha2::Digest as _;
            let hex = hex::encode(sha2::Sha256::digest(m.as_bytes()));
            std::fs::write(img.join("blobs/sha256").join(&hex), m).unwrap();
            std::fs::write(
                img.join("index.json"),
                format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"sha256:{hex}"}}]}}"#),
            )
            .unwrap();
        };
        put(&manifest(
            r#""annotations":{"io.nodeimg.recipe.digest":"sha256:0"},"#,
        ));
        assert!(check_replaceable(&img, Format::Oci, false).is_ok());
        put(&manifest(""));
        let m = refused(&img, Format::Oci);
        assert!(
            m.contains("an OCI image layout nodeimg did not write"),
            "{m}"
        );
        put(&manifest(
            r#""annotations":{"io.nodeimg.recipe.digest":"sha256:0"},"#,
        ));
        std::fs::write(img.join("blobs/keep"), b"x").unwrap();
        let m = refused(&img, Format::Oci);
        assert!(m.contains("blobs/ holds keep"), "{m}");
        std::fs::remove_file(img.join("blobs/keep")).unwrap();
        std::fs::write(img.join("thesis.txt"), b"x").unwrap();
        let m = refused(&img, Format::Oci);
        assert!(m.contains("a folder holding thesis.txt"), "{m}");
        assert!(m.contains("not an OCI image layout"), "{m}");
        std::fs::remove_file(img.join("thesis.txt")).unwrap();
        std::fs::write(img.join("index.json"), b"{").unwrap();
        let m = refused(&img, Format::Oci);
        assert!(m.contains("index.json"), "{m}");
    }

    #[test]
    fn one_build_per_output_and_it_cleans_up() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("new/deeper/node.tar");
        let o = opts(out.clone(), Format::Rootfs);
        let first = lock(&o).unwrap();
        let lock_file = t.path().join("new/deeper/.node.tar.nodeimg-lock");
        assert_eq!(
            std::fs::read_to_string(&lock_file).unwrap(),
            format!("pid {}\n", std::process::id())
        );
        let e = lock(&o).unwrap_err();
        assert!(matches!(e, Error::OutputBusy { .. }), "{e}");
        assert_eq!(e.exit_code(), 1);
        let m = e.to_string();
        assert!(m.contains(&out.display().to_string()), "{m}");
        assert!(
            m.contains(&format!(
                "another nodeimg build (pid {})",
                std::process::id()
            )),
            "{m}"
        );
        // Another output in the same folder is another lock.
        let other = lock(&opts(t.path().join("new/deeper/other"), Format::Oci)).unwrap();
        drop(other);
        // Nothing written: the lock file and the folders it made go.
        drop(first);
        assert!(!t.path().join("new").exists());

        // What a killed build left is removed by the next lock holder;
        // what merely looks alike is not.
        let dir = t.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join(".node.tar.nodeimg-tmp-abc")).unwrap();
        std::fs::write(dir.join(".node.tar.nodeimg-tmp-abc/layer-0.tar"), b"x").unwrap();
        std::fs::write(dir.join(".node.tar.nodeimg-tmp-def"), b"partial").unwrap();
        std::fs::write(
            dir.join(".node.tar.gz.nodeimg-tmp-xyz"),
            b"another output's",
        )
        .unwrap();
        std::fs::write(dir.join("node.tar.nodeimg-tmp-x"), b"not hidden: not ours").unwrap();
        let l = lock(&opts(dir.join("node.tar"), Format::Rootfs)).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".node.tar.gz.nodeimg-tmp-xyz",
                ".node.tar.nodeimg-lock",
                "node.tar.nodeimg-tmp-x"
            ]
        );
        drop(l);
        assert!(dir.exists(), "a folder it did not create stays");
    }

    #[test]
    fn a_lock_file_that_is_not_a_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join(".n.tar.nodeimg-lock")).unwrap();
        let e = lock(&opts(t.path().join("n.tar"), Format::Rootfs)).unwrap_err();
        assert!(e.to_string().contains(".n.tar.nodeimg-lock"), "{e}");
        std::fs::remove_file(t.path().join(".n.tar.nodeimg-lock")).unwrap();
        std::fs::create_dir(t.path().join(".n.tar.nodeimg-lock")).unwrap();
        let e = lock(&opts(t.path().join("n.tar"), Format::Rootfs)).unwrap_err();
        assert!(e.to_string().contains(".n.tar.nodeimg-lock"), "{e}");
    }
}
