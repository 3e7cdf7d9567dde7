//! Files of the caches, opened as the hostile input they are.
//!
//! Another user, or anything else with write access to the cache folder,
//! may have put anything at a cache path: a symbolic link to a host file,
//! a FIFO that never answers, a device, a folder, a file far larger than
//! the entry. A cache entry is therefore opened without following a
//! symbolic link and without blocking, checked on the open handle to be a
//! regular file of exactly the expected size, and hashed up to that size
//! only. The caller gets the open, verified handle ([`CachedFile`]) and
//! reads the content from it, never from the path again, so what was
//! verified is what is used.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A cache entry that was a regular file of the expected size and SHA256
/// when it was opened: the open handle, shared by its readers.
#[derive(Clone, Debug)]
pub struct CachedFile {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
}

impl CachedFile {
    /// A file this process has just written (`size` bytes, hashed as they
    /// were written) and still holds open.
    pub fn written(file: File, path: PathBuf, size: u64) -> CachedFile {
        CachedFile {
            file: Arc::new(file),
            path,
            size,
        }
    }

    /// The open, verified file, shared.
    pub fn shared(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Where the entry is in the cache (for messages; never reopen it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size, as verified.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A reader of the verified content from its first byte: positional
    /// reads on the open handle, so readers do not disturb each other, and
    /// never past the verified size.
    pub fn reader(&self) -> CachedReader {
        CachedReader {
            file: Arc::clone(&self.file),
            pos: 0,
            len: self.size,
        }
    }

    /// The whole content (for small files: manifests, configs).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 24));
        self.reader().read_to_end(&mut out)?;
        Ok(out)
    }

    /// Copy the verified content to a new file at `dest` (created, not
    /// overwritten), for a program that reads a path.
    pub fn copy_to(&self, dest: &Path) -> io::Result<u64> {
        let mut out = OpenOptions::new().write(true).create_new(true).open(dest)?;
        let n = io::copy(&mut self.reader(), &mut out)?;
        if n != self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was copied", self.path.display()),
            ));
        }
        Ok(n)
    }
}

/// A reader of a [`CachedFile`] (see [`CachedFile::reader`]).
#[derive(Debug)]
pub struct CachedReader {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl Read for CachedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CachedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of a cached file",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

/// What a cache path held.
#[derive(Debug)]
pub enum Entry {
    /// A regular file of the expected size and digest, open.
    Verified(CachedFile),
    /// Nothing.
    Absent,
    /// Something else: what it is (`"a symbolic link"`, `"1234 bytes
    /// instead of 56"`, ...). Nothing of it was read beyond the expected
    /// size.
    Damaged(String),
}

/// What `meta` is, when it is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// Open the cache entry at `path`, which must be a regular file of `size`
/// bytes whose SHA256 is `sha256_hex` (lowercase or uppercase hex). A
/// symbolic link is not followed, a FIFO or device is not read, and no
/// more than `size` bytes are hashed. Errors are the file system's (e.g.
/// permission denied), not the entry's: a wrong entry is
/// [`Entry::Damaged`].
pub fn open_verified(path: &Path, size: u64, sha256_hex: &str) -> io::Result<Entry> {
    open_checked(path, Size::Exactly(size), sha256_hex)
}

/// [`open_verified`] for an entry whose size is not known beforehand (a
/// manifest named by its digest alone): at most `max` bytes.
pub fn open_verified_at_most(path: &Path, max: u64, sha256_hex: &str) -> io::Result<Entry> {
    open_checked(path, Size::AtMost(max), sha256_hex)
}

#[derive(Clone, Copy)]
enum Size {
    Exactly(u64),
    AtMost(u64),
}

fn open_checked(path: &Path, want: Size, sha256_hex: &str) -> io::Result<Entry> {
    // Refuse what is not a regular file before opening it: opening a device
    // may have effects of its own.
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            if let Some(what) = not_regular(&m) {
                return Ok(Entry::Damaged(what.to_string()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Absent),
        Err(e) => return Err(e),
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Absent),
        // Replaced by a symbolic link since the check above.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Entry::Damaged("a symbolic link".to_string()))
        }
        Err(e) => return Err(e),
    };
    // The handle is what counts: the path may have changed since.
    let meta = file.metadata()?;
    if let Some(what) = not_regular(&meta) {
        return Ok(Entry::Damaged(what.to_string()));
    }
    let size = meta.len();
    match want {
        Size::Exactly(n) if n != size => {
            return Ok(Entry::Damaged(format!("{size} bytes instead of {n}")))
        }
        Size::AtMost(n) if size > n => {
            return Ok(Entry::Damaged(format!("{size} bytes, more than {n}")))
        }
        _ => {}
    }
    let cached = CachedFile {
        file: Arc::new(file),
        path: path.to_path_buf(),
        size,
    };
    let mut h = Sha256::new();
    let read = io::copy(&mut cached.reader(), &mut h)?;
    if read != size {
        return Ok(Entry::Damaged(format!(
            "{read} bytes readable instead of {size}"
        )));
    }
    let found = hex::encode(h.finalize());
    if !found.eq_ignore_ascii_case(sha256_hex) {
        return Ok(Entry::Damaged(format!(
            "its SHA256 is {found}, not {}",
            sha256_hex.to_ascii_lowercase()
        )));
    }
    Ok(Entry::Verified(cached))
}

/// Remove a damaged entry, whatever it is (a symbolic link itself, never
/// its target; a folder with what it holds).
pub fn remove_entry(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sha256_hex as sha;

    fn damaged(e: Entry) -> String {
        match e {
            Entry::Damaged(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_regular_files_of_the_right_size_and_digest_are_served() {
        let t = tempfile::tempdir().unwrap();
        let data = b"the package".to_vec();
        let p = t.path().join("entry");
        assert!(matches!(
            open_verified(&p, 11, &sha(&data)).unwrap(),
            Entry::Absent
        ));
        std::fs::write(&p, &data).unwrap();
        let Entry::Verified(f) = open_verified(&p, 11, &sha(&data)).unwrap() else {
            panic!()
        };
        // Read from the handle: replacing the path changes nothing.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"other bytes").unwrap();
        assert_eq!(f.read_all().unwrap(), data);
        let mut r = f.reader();
        let mut two = [0u8; 2];
        r.seek(SeekFrom::Start(4)).unwrap();
        r.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"pa");
        assert!(damaged(open_verified(&p, 11, &sha(&data)).unwrap()).contains("SHA256"));

        // Larger: refused by its size, not hashed.
        std::fs::write(&p, [&data[..], b"and more"].concat()).unwrap();
        assert!(damaged(open_verified(&p, 11, &sha(&data)).unwrap()).contains("19 bytes"));

        // A symbolic link to a file with the right content is still refused.
        let host = t.path().join("host");
        std::fs::write(&host, &data).unwrap();
        remove_entry(&p).unwrap();
        std::os::unix::fs::symlink(&host, &p).unwrap();
        assert_eq!(
            damaged(open_verified(&p, 11, &sha(&data)).unwrap()),
            "a symbolic link"
        );
        remove_entry(&p).unwrap();
        assert!(host.exists(), "the link is removed, not its target");

        // A FIFO: refused at once, never opened for reading.
        let fifo = std::process::Command::new("mkfifo").arg(&p).status();
        if fifo.is_ok_and(|s| s.success()) {
            assert_eq!(
                damaged(open_verified(&p, 11, &sha(&data)).unwrap()),
                "a FIFO"
            );
            remove_entry(&p).unwrap();
        }
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("x"), b"x").unwrap();
        assert_eq!(
            damaged(open_verified(&p, 11, &sha(&data)).unwrap()),
            "a folder"
        );
        remove_entry(&p).unwrap();
        assert!(!p.exists());
    }
}
