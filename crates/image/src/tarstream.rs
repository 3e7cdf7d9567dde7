//! Streaming building blocks shared by the base reader, the packer and the
//! writers: hashing readers and writers, layer (de)compression, and tar
//! headers written field by field (GNU format, long names as GNU long-name
//! entries), so that every byte of a produced tar is decided here.

use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use nodeimg_layers::Meta;
use sha2::{Digest as _, Sha256};

use crate::pgzip::{self, ParGzEncoder, Reservation};

/// Format a finished SHA-256 as an OCI digest string.
pub(crate) fn sha256_digest(h: Sha256) -> String {
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A writer that hashes and counts everything written through it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the `sha256:` digest and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, sha256_digest(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Read the rest of the stream, then return the digest and byte count.
    pub(crate) fn drain(self) -> io::Result<(String, u64)> {
        let (d, n, _) = self.drain_into_inner()?;
        Ok((d, n))
    }

    /// Read the rest of the stream, then return the digest, the byte count
    /// and the inner reader.
    pub(crate) fn drain_into_inner(mut self) -> io::Result<(String, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((sha256_digest(self.hasher), self.count, self.inner))
    }
}

/// A reader of a layer's tar that checks, when it reaches the end, that
/// what was read has the layer's diff_id: a base that changed since it was
/// indexed fails to read instead of being used. Read it to the end (past
/// the tar's end-of-archive blocks) for the check to happen.
pub(crate) struct CheckedTar<R> {
    inner: HashReader<R>,
    want: String,
    what: String,
    checked: bool,
}

impl<R: Read> CheckedTar<R> {
    /// `inner`, which must read as `want` (a `sha256:` digest); `what`
    /// names it in the error.
    pub(crate) fn new(inner: R, want: &str, what: String) -> Self {
        CheckedTar {
            inner: HashReader::new(inner),
            want: want.to_string(),
            what,
            checked: false,
        }
    }
}

impl<R: Read> Read for CheckedTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            let found = sha256_digest(self.inner.hasher.clone());
            if found != self.want {
                return Err(io::Error::other(format!(
                    "{} changed since it was read: its tar is {found}, not {}; run the build again",
                    self.what, self.want
                )));
            }
        }
        Ok(n)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// How a layer blob or a tarball is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Plain,
    Gzip,
    Zstd,
}

impl Codec {
    /// From an OCI or Docker layer media type; `None` if it is not a layer type we read.
    pub(crate) fn from_media_type(mt: &str) -> Option<Codec> {
        let known_prefix = [
            "application/vnd.oci.image.layer.",
            "application/vnd.docker.image.rootfs.",
        ];
        if !known_prefix.iter().any(|p| mt.starts_with(p)) {
            return None;
        }
        if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
            Some(Codec::Gzip)
        } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
            Some(Codec::Zstd)
        } else if mt.ends_with(".tar") {
            Some(Codec::Plain)
        } else {
            None
        }
    }

    /// From a tarball's file name: `.tar`, `.tar.gz`/`.tgz`, `.tar.zst`.
    pub(crate) fn from_tar_name(p: &Path) -> Option<Codec> {
        let name = p.file_name()?.to_str()?;
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Codec::Gzip)
        } else if name.ends_with(".tar.zst") {
            Some(Codec::Zstd)
        } else if name.ends_with(".tar") {
            Some(Codec::Plain)
        } else {
            None
        }
    }

    /// From the first bytes of a file (magic numbers).
    pub(crate) fn sniff(head: &[u8]) -> Codec {
        if head.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Codec::Zstd
        } else {
            Codec::Plain
        }
    }

    /// Its name in cache keys.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Plain => "plain",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The OCI layer media type of a blob compressed this way.
    pub(crate) fn layer_media_type(self) -> &'static str {
        match self {
            Codec::Plain => "application/vnd.oci.image.layer.v1.tar",
            Codec::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Codec::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The spelling of tarball names `Codec::from_tar_name` accepts, for messages.
pub(crate) const TAR_EXTENSIONS: &str = ".tar, .tar.gz (or .tgz), .tar.zst";

/// The size of the jobs the zstd encoder hands its workers.
const ZSTD_JOB: u32 = 2 << 20;

/// A decompressing reader that gives its source back when done.
pub(crate) enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoder<R> {
    pub(crate) fn new(codec: Codec, r: R) -> io::Result<Self> {
        Ok(match codec {
            Codec::Plain => Decoder::Plain(r),
            Codec::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(r)),
            Codec::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }

    pub(crate) fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A compressing writer that gives its sink back when finished.
///
/// Both codecs compress on several threads and write the same bytes for any
/// number of them: gzip cut into fixed blocks ([`crate::pgzip`]), zstd in
/// multithreaded mode with at least one worker.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(ParGzEncoder<W>, Reservation),
    Zstd(zstd::stream::write::Encoder<'static, W>, Reservation),
}

impl<W: Write> Encoder<W> {
    /// gzip at level 6 (no name, mtime 0 in the header), zstd at level 3,
    /// or nothing; compressing on as many threads as the process budget
    /// ([`crate::pgzip::Reservation`]) gives.
    pub(crate) fn new(codec: Codec, w: W) -> io::Result<Self> {
        if codec == Codec::Plain {
            return Ok(Encoder::Plain(w));
        }
        Self::with_reservation(codec, w, Reservation::take(pgzip::cores()))
    }

    /// As [`Encoder::new`] with exactly `threads` (at least one) compression
    /// threads, outside the budget.
    #[cfg(test)]
    pub(crate) fn with_threads(codec: Codec, w: W, threads: usize) -> io::Result<Self> {
        Self::with_reservation(codec, w, Reservation::exactly(threads))
    }

    fn with_reservation(codec: Codec, w: W, r: Reservation) -> io::Result<Self> {
        Ok(match codec {
            Codec::Plain => Encoder::Plain(w),
            Codec::Gzip => Encoder::Gzip(ParGzEncoder::new(w, r.threads())?, r),
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, 3)?;
                let n = u32::try_from(r.threads()).unwrap_or(u32::MAX);
                e.multithread(n)?;
                // Fixed 2 MiB jobs (not zstd's 4 windows at level 3): the
                // bytes still do not depend on the number of workers, and
                // the buffers in flight stay small.
                e.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
                Encoder::Zstd(e, r)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Gzip(e, _budget) => e.finish(),
            Encoder::Zstd(e, _budget) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e, _) => e.write(buf),
            Encoder::Zstd(e, _) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e, _) => e.flush(),
            Encoder::Zstd(e, _) => e.flush(),
        }
    }
}

/// One tar header to write.
pub(crate) struct EntryHeader<'a> {
    /// Name as stored (`etc/x`, `etc/d/`), without a leading slash.
    pub name: &'a [u8],
    pub kind: tar::EntryType,
    pub meta: Meta,
    pub size: u64,
    pub mtime: u64,
    /// Symlink target or hard link name.
    pub link: Option<&'a [u8]>,
    /// Device numbers (character and block devices only).
    pub device: (u32, u32),
}

const BLOCK: usize = 512;

fn write_long(w: &mut dyn Write, kind: tar::EntryType, value: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    set_raw(&mut h.as_old_mut().name, b"././@LongLink");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(kind);
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    w.write_all(value)?;
    w.write_all(&[0])?;
    write_padding(w, value.len() as u64 + 1)
}

fn set_raw(slot: &mut [u8], value: &[u8]) {
    slot.fill(0);
    let n = value.len().min(slot.len());
    slot[..n].copy_from_slice(&value[..n]);
}

/// Write one header (preceded by GNU long-name / long-link entries when the
/// name or link does not fit in 100 bytes). The caller writes `size` bytes
/// of data and then [`write_padding`].
pub(crate) fn write_header(w: &mut dyn Write, e: &EntryHeader<'_>) -> io::Result<()> {
    if e.name.len() > 100 {
        write_long(w, tar::EntryType::GNULongName, e.name)?;
    }
    if let Some(l) = e.link {
        if l.len() > 100 {
            write_long(w, tar::EntryType::GNULongLink, l)?;
        }
    }
    let mut h = tar::Header::new_gnu();
    set_raw(&mut h.as_old_mut().name, e.name);
    if let Some(l) = e.link {
        set_raw(&mut h.as_old_mut().linkname, l);
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.meta.mode & 0o7777);
    h.set_uid(u64::from(e.meta.uid));
    h.set_gid(u64::from(e.meta.gid));
    h.set_size(e.size);
    h.set_mtime(e.mtime);
    h.set_device_major(e.device.0)?;
    h.set_device_minor(e.device.1)?;
    h.set_cksum();
    w.write_all(h.as_bytes())
}

/// One PAX record (`key`, `value`) of an extended header.
pub(crate) type PaxRecord = (Vec<u8>, Vec<u8>);

/// Write a PAX extended header holding `records` for the entry whose
/// header follows (nothing when there are none).
pub(crate) fn write_pax(w: &mut dyn Write, records: &[PaxRecord]) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (k, v) in records {
        // "LEN KEY=VALUE\n", LEN counting its own digits.
        let body = k.len() + v.len() + 3;
        let mut len = body + 1;
        loop {
            let n = body + len.to_string().len();
            if n == len {
                break;
            }
            len = n;
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(k);
        data.push(b'=');
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_gnu();
    set_raw(&mut h.as_old_mut().name, b"././@PaxHeader");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    w.write_all(&data)?;
    write_padding(w, data.len() as u64)
}

/// Zero padding after `size` bytes of entry data.
pub(crate) fn write_padding(w: &mut dyn Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The end-of-archive marker: two zero blocks.
pub(crate) fn write_end(w: &mut dyn Write) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK])
}

/// Copy exactly `size` bytes from `r` to `w`; an error if `r` ends early.
pub(crate) fn copy_exact(r: &mut dyn Read, w: &mut dyn Write, size: u64) -> io::Result<()> {
    let n = io::copy(&mut r.take(size), w)?;
    if n != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("expected {size} bytes, got {n}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_codecs() {
        assert_eq!(
            Codec::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(
            Codec::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(
            Codec::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Codec::Zstd)
        );
        assert_eq!(
            Codec::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(Codec::Plain)
        );
        assert_eq!(
            Codec::from_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(Codec::from_media_type("application/octet-stream"), None);
        assert_eq!(
            Codec::from_media_type("application/vnd.oci.image.layer.v1.tar+lz4"),
            None
        );
    }

    #[test]
    fn tar_names_map_to_codecs() {
        assert_eq!(
            Codec::from_tar_name(Path::new("a/b.tar")),
            Some(Codec::Plain)
        );
        assert_eq!(Codec::from_tar_name(Path::new("b.tgz")), Some(Codec::Gzip));
        assert_eq!(
            Codec::from_tar_name(Path::new("b.tar.gz")),
            Some(Codec::Gzip)
        );
        assert_eq!(
            Codec::from_tar_name(Path::new("b.tar.zst")),
            Some(Codec::Zstd)
        );
        assert_eq!(Codec::from_tar_name(Path::new("b.zip")), None);
        assert_eq!(Codec::from_tar_name(Path::new("b.tar.xz")), None);
    }

    #[test]
    fn pax_records_are_read_back() {
        let mut w = Vec::new();
        let value = vec![b'v'; 95];
        write_pax(
            &mut w,
            &[
                (
                    b"SCHILY.xattr.security.capability".to_vec(),
                    b"\x01\0\x02".to_vec(),
                ),
                (b"SCHILY.xattr.user.k".to_vec(), value.clone()),
            ],
        )
        .unwrap();
        write_header(
            &mut w,
            &EntryHeader {
                name: b"usr/bin/ping",
                kind: tar::EntryType::Regular,
                meta: Meta::FILE,
                size: 0,
                mtime: 0,
                link: None,
                device: (0, 0),
            },
        )
        .unwrap();
        write_end(&mut w).unwrap();
        let mut a = tar::Archive::new(&w[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), b"usr/bin/ping");
        let got: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key_bytes().to_vec(), r.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    b"SCHILY.xattr.security.capability".to_vec(),
                    b"\x01\0\x02".to_vec()
                ),
                (b"SCHILY.xattr.user.k".to_vec(), value),
            ]
        );
    }

    #[test]
    fn compression_roundtrips() {
        for c in [Codec::Plain, Codec::Gzip, Codec::Zstd] {
            let mut e = Encoder::new(c, Vec::new()).unwrap();
            e.write_all(b"hello world").unwrap();
            let bytes = e.finish().unwrap();
            assert_eq!(Codec::sniff(&bytes), c);
            let mut d = Decoder::new(c, &bytes[..]).unwrap();
            let mut s = String::new();
            d.read_to_string(&mut s).unwrap();
            assert_eq!(s, "hello world");
        }
    }
}
