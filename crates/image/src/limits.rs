//! Bounds on what a hostile input may cost: the length and depth of paths in
//! tar streams, the size of tar header extensions (GNU long names and links,
//! PAX headers), the bytes of base files kept in memory, and the memory of
//! xz decoders. Each bound is checked before anything proportional to the
//! input is allocated.

use std::io::{self, Read};

pub use crate::error::EntryError;

/// The longest path or link target a tar entry may have, in bytes (Linux's
/// `PATH_MAX`).
pub(crate) const PATH_MAX: usize = 4096;

/// The most components a tar entry's path may have.
pub(crate) const PATH_DEPTH_MAX: usize = 1024;

/// The largest tar header extension (a GNU long name or long link, a PAX
/// header), in bytes. The tar reader reads these whole into memory.
pub(crate) const TAR_EXTENSION_MAX: u64 = 1 << 20;

/// The most bytes of base files the base index keeps in memory, across all
/// layers of a base (each file is also capped, see
/// [`crate::tarindex::keeps`]).
pub(crate) const KEPT_TOTAL_MAX: u64 = 256 << 20;

/// The most memory an xz decoder may use (its dictionary, mostly).
pub(crate) const XZ_MEMLIMIT: u64 = 256 << 20;

/// The first bytes of a name, for messages about a name too long to show.
fn shown(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(64)];
    let s = String::from_utf8_lossy(head);
    if raw.len() > head.len() {
        format!("{s:?}...")
    } else {
        format!("{s:?}")
    }
}

/// Checks that a path read from a tar entry (`what` says which: "entry",
/// "link target") is within [`PATH_MAX`] and [`PATH_DEPTH_MAX`].
pub(crate) fn check_tar_path(raw: &[u8], what: &'static str) -> Result<(), EntryError> {
    if raw.len() > PATH_MAX {
        return Err(EntryError::PathTooLong {
            what,
            shown: shown(raw),
            len: raw.len(),
        });
    }
    let depth = raw.split(|b| *b == b'/').filter(|c| !c.is_empty()).count();
    if depth > PATH_DEPTH_MAX {
        return Err(EntryError::PathTooDeep {
            what,
            shown: shown(raw),
            depth,
        });
    }
    Ok(())
}

/// Checks the path and link target of a tar entry (see [`check_tar_path`]).
pub fn check_tar_entry<R: Read>(entry: &tar::Entry<'_, R>) -> Result<(), EntryError> {
    check_tar_path(&entry.path_bytes(), "entry")?;
    if let Some(l) = entry.link_name_bytes() {
        check_tar_path(&l, "the link target of entry").map_err(|e| EntryError::LinkTarget {
            entry: shown(&entry.path_bytes()),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// The bytes of base files still allowed in memory (see [`KEPT_TOTAL_MAX`]),
/// and the folders whose files are kept besides those every view keeps.
#[derive(Debug)]
pub struct KeepBudget {
    left: u64,
    also: &'static [&'static str],
}

impl Default for KeepBudget {
    fn default() -> Self {
        KeepBudget {
            left: KEPT_TOTAL_MAX,
            also: &[],
        }
    }
}

impl KeepBudget {
    /// A budget that also keeps the files (each up to the size every kept
    /// file may have) of the folders `also` (paths ending in `/`).
    pub(crate) fn also_keeping(also: &'static [&'static str]) -> Self {
        KeepBudget {
            also,
            ..KeepBudget::default()
        }
    }

    /// Whether the file at `path` of `size` bytes is one of the folders
    /// this budget also keeps.
    pub(crate) fn also_keeps(&self, path: &str, size: u64) -> bool {
        size <= crate::tarindex::KEEP_MAX && self.also.iter().any(|d| path.starts_with(d))
    }

    /// Takes `size` bytes for the file at `path`, or says why not.
    pub(crate) fn take(&mut self, path: &str, size: u64) -> Result<(), EntryError> {
        if size > self.left {
            return Err(EntryError::KeepBudget {
                path: path.to_string(),
                size,
            });
        }
        self.left -= size;
        Ok(())
    }
}

/// An xz decoder of `r` (concatenated streams allowed) whose memory is
/// bounded by [`XZ_MEMLIMIT`] per decoder: a stream needing more fails to
/// read with an error naming the limit instead of allocating. Streams whose
/// blocks record their sizes are decoded on every core (see [`crate::xz`]).
pub fn xz_decoder<'a, R: Read + 'a>(r: R) -> Box<dyn Read + 'a> {
    let threads = crate::pgzip::cores();
    if threads > 1 {
        Box::new(crate::xz::decoder(r, threads))
    } else {
        xz_sequential(r)
    }
}

/// [`xz_decoder`] in one thread.
pub(crate) fn xz_sequential<'a, R: Read + 'a>(r: R) -> Box<dyn Read + 'a> {
    let stream =
        liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED);
    Box::new(bounded_lzma(r, stream))
}

/// A decoder of the one xz stream `r` (nothing after it), for a thread of
/// its own.
pub(crate) fn xz_stream<R: Read + Send + 'static>(r: R) -> Box<dyn Read + Send> {
    Box::new(bounded_lzma(
        r,
        liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0),
    ))
}

/// As [`xz_decoder`], for a `.lzma` (LZMA-alone) stream.
pub fn lzma_decoder<'a, R: Read + 'a>(r: R) -> Box<dyn Read + 'a> {
    Box::new(bounded_lzma(
        r,
        liblzma::stream::Stream::new_lzma_decoder(XZ_MEMLIMIT),
    ))
}

/// The decoder `stream` of `r` with its memory-limit error explained, or,
/// when it could not start, a reader that fails saying so.
fn bounded_lzma<R: Read>(
    r: R,
    stream: std::result::Result<liblzma::stream::Stream, liblzma::stream::Error>,
) -> XzLimited<Started<R>> {
    XzLimited(match stream {
        Ok(s) => Started::Yes(liblzma::read::XzDecoder::new_stream(r, s)),
        Err(e) => Started::No(Failed(Some(io::Error::other(format!(
            "cannot start the xz decoder: {e}"
        ))))),
    })
}

/// An xz decoder of `R`, or why it did not start.
enum Started<R: Read> {
    Yes(liblzma::read::XzDecoder<R>),
    No(Failed),
}

impl<R: Read> Read for Started<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Started::Yes(d) => d.read(buf),
            Started::No(f) => f.read(buf),
        }
    }
}

/// A reader whose first read fails.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::Error::other("failed")))
    }
}

/// An xz decoder whose memory-limit error says what the limit is.
struct XzLimited<R>(R);

impl<R: Read> Read for XzLimited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let memlimit = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<liblzma::stream::Error>())
                .is_some_and(|x| matches!(x, liblzma::stream::Error::MemLimit));
            if memlimit {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the xz stream needs more memory to decode than the limit of {} MiB",
                        XZ_MEMLIMIT >> 20
                    ),
                )
            } else {
                e
            }
        })
    }
}

const BLOCK: usize = 512;

/// Where a [`BoundedTar`] is in the stream.
#[derive(Debug)]
enum At {
    /// Reading a header block.
    Header,
    /// Passing `n` bytes of entry data and padding.
    Data(u64),
    /// Reading the `n` bytes of a PAX header's records (then `pad` bytes).
    Pax(u64, u64),
    /// Reading a GNU sparse extension block; the entry's data (with
    /// padding) follows.
    SparseExt(u64),
    /// After the end-of-archive block: passes everything.
    End,
}

/// A reader of a tar stream that follows its 512-byte headers the way the
/// `tar` crate does and refuses a header extension (GNU long name `L`, long
/// link `K`, PAX `x` and `g`) larger than [`TAR_EXTENSION_MAX`] before the
/// `tar` crate (which reads them whole into memory) sees it.
pub struct BoundedTar<R> {
    inner: R,
    at: At,
    block: Vec<u8>,
    pax: Vec<u8>,
    /// The `size` of the pending PAX header, for the next entry.
    pax_size: Option<Option<u64>>,
}

impl<R: Read> BoundedTar<R> {
    pub(crate) fn new(inner: R) -> Self {
        BoundedTar {
            inner,
            at: At::Header,
            block: Vec::with_capacity(BLOCK),
            pax: Vec::new(),
            pax_size: None,
        }
    }

    /// The underlying reader.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn padded(size: u64) -> u64 {
        size.saturating_add((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64)
    }

    /// A full header block in `self.block`: what follows it.
    fn header(&mut self) -> io::Result<At> {
        if self.block.iter().all(|b| *b == 0) {
            return Ok(At::End);
        }
        let h = tar::Header::from_byte_slice(&self.block);
        let kind = h.entry_type().as_byte();
        let Ok(size) = h.entry_size() else {
            // The tar reader reports the broken header.
            return Ok(At::End);
        };
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if extension && size > TAR_EXTENSION_MAX {
            let name = match kind {
                b'L' => "GNU long name",
                b'K' => "GNU long link",
                b'x' => "PAX header",
                _ => "PAX global header",
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a tar {name} of {size} bytes, over the limit of {} MiB",
                    TAR_EXTENSION_MAX >> 20
                ),
            ));
        }
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let size = match (&self.pax_size, extension) {
            (Some(Some(s)), false) => *s,
            _ => size,
        };
        if recognized && matches!(kind, b'L' | b'K') {
            return Ok(At::Data(Self::padded(size)));
        }
        if recognized && kind == b'x' {
            self.pax.clear();
            return Ok(At::Pax(size, Self::padded(size) - size));
        }
        // An entry the tar reader returns: the PAX header applied to it.
        self.pax_size = None;
        if kind == b'S' && h.as_gnu().is_some_and(|g| g.is_extended()) {
            return Ok(At::SparseExt(Self::padded(size)));
        }
        Ok(At::Data(Self::padded(size)))
    }

    /// Follow the stream through `buf`, just read.
    fn follow(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match &mut self.at {
                At::End => return Ok(()),
                At::Data(n) => {
                    let k = (*n).min(buf.len() as u64) as usize;
                    *n -= k as u64;
                    buf = &buf[k..];
                    if *n == 0 {
                        self.at = At::Header;
                    }
                }
                At::Pax(n, pad) => {
                    let k = (*n).min(buf.len() as u64) as usize;
                    self.pax.extend_from_slice(&buf[..k]);
                    *n -= k as u64;
                    buf = &buf[k..];
                    if *n == 0 {
                        let pad = *pad;
                        self.pax_size = Some(pax_size(&self.pax));
                        self.pax = Vec::new();
                        self.at = if pad == 0 { At::Header } else { At::Data(pad) };
                    }
                }
                At::Header | At::SparseExt(_) => {
                    let k = (BLOCK - self.block.len()).min(buf.len());
                    self.block.extend_from_slice(&buf[..k]);
                    buf = &buf[k..];
                    if self.block.len() == BLOCK {
                        let sparse = match self.at {
                            At::SparseExt(data) => Some(data),
                            _ => None,
                        };
                        let next = match sparse {
                            // `isextended` follows 21 sparse records.
                            Some(data) if self.block[21 * 24] == 1 => At::SparseExt(data),
                            Some(data) => At::Data(data),
                            None => self.header()?,
                        };
                        self.at = match next {
                            At::Data(0) => At::Header,
                            at => at,
                        };
                        self.block.clear();
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `size` record of PAX records, read as the `tar` crate reads it.
fn pax_size(records: &[u8]) -> Option<u64> {
    for r in tar::PaxExtensions::new(records) {
        let r = r.ok()?;
        if r.key() != Ok("size") {
            continue;
        }
        return r.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> Read for BoundedTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !matches!(self.at, At::End) {
            self.follow(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Checks the headers of the tar file `f` as [`BoundedTar`] does, seeking
/// over the entries' data, then seeks back to the start.
pub(crate) fn check_tar_headers(mut f: &std::fs::File) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    let mut t = BoundedTar::new(f);
    let mut block = [0u8; BLOCK];
    loop {
        match t.at {
            At::End => break,
            At::Data(n) => {
                let to = i64::try_from(n).map_err(io::Error::other)?;
                t.inner.seek(SeekFrom::Current(to))?;
                t.at = At::Header;
            }
            _ => {
                if t.read(&mut block)? == 0 {
                    break;
                }
            }
        }
    }
    f.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// A `tar` reader of `r` whose header extensions are bounded (see
/// [`BoundedTar`]).
pub fn tar_archive<R: Read>(r: R) -> tar::Archive<BoundedTar<R>> {
    tar::Archive::new(BoundedTar::new(r))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn names(bytes: &[u8]) -> io::Result<Vec<String>> {
        let mut a = tar_archive(bytes);
        let mut out = Vec::new();
        for e in a.entries()? {
            let e = e?;
            out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        }
        Ok(out)
    }

    fn pad(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(BLOCK) {
            v.push(0);
        }
    }

    #[test]
    fn long_names_pax_headers_and_sizes_are_followed() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/f", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(700);
        b.append_pax_extensions([("comment", &b"x"[..])]).unwrap();
        b.append_data(&mut h, "b", &[7u8; 700][..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert_eq!(names(&bytes).unwrap(), [long, "b".to_string()]);
    }

    #[test]
    fn a_pax_size_moves_the_next_header() {
        // The header says 0 bytes, the PAX record 600: the data (which looks
        // like a long name over the limit) is skipped, and the next header
        // is after two blocks, where a long link over the limit sits.
        let mut v = Vec::new();
        let rec = "12 size=600\n";
        v.extend(header(b"pax", b'x', rec.len() as u64));
        v.extend(rec.as_bytes());
        pad(&mut v);
        v.extend(header(b"f", b'0', 0));
        let mut data = header(b"././@LongLink", b'L', TAR_EXTENSION_MAX + 1);
        data.resize(600, 0);
        v.extend(data);
        pad(&mut v);
        let mut ok = v.clone();
        ok.extend([0u8; 1024]);
        assert_eq!(names(&ok).unwrap(), ["f"]);
        v.extend(header(b"././@LongLink", b'K', TAR_EXTENSION_MAX + 1));
        let e = names(&v).unwrap_err();
        assert!(e.to_string().contains("GNU long link"), "{e}");
    }

    #[test]
    fn extensions_over_the_limit_are_refused_before_they_are_read() {
        for kind in [b'L', b'K', b'x', b'g'] {
            let mut v = header(b"././@LongLink", kind, 1 << 40);
            v.extend([b'a'; 4096]);
            let e = names(&v).unwrap_err();
            assert!(e.to_string().contains("over the limit of 1 MiB"), "{e}");
        }
        let mut v = header(b"././@LongLink", b'L', TAR_EXTENSION_MAX);
        v.extend(vec![b'a'; TAR_EXTENSION_MAX as usize - 1]);
        v.push(0);
        v.extend(header(b"short", b'0', 0));
        v.extend([0u8; 1024]);
        assert_eq!(names(&v).unwrap()[0].len(), TAR_EXTENSION_MAX as usize - 1);
    }

    #[test]
    fn the_rest_after_the_end_passes() {
        let mut v = header(b"a", b'0', 0);
        v.extend([0u8; 1024]);
        v.extend(header(b"././@LongLink", b'L', 1 << 40));
        let mut r = BoundedTar::new(&v[..]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, v);
    }

    #[test]
    fn gnu_sparse_extension_blocks_are_followed() {
        // A sparse entry with one extension block, then its 512 bytes of
        // data (which look like a long name over the limit), then a file.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(512);
        h.set_mode(0o644);
        h.as_mut_bytes()[..2].copy_from_slice(b"sp");
        {
            let g = h.as_gnu_mut().unwrap();
            g.sparse[0].offset = *b"00000000000\0";
            g.sparse[0].numbytes = *b"00000001000\0";
            g.isextended[0] = 1;
            g.realsize = *b"00000002000\0";
        }
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.sparse[0].offset = *b"00000002000\0";
        ext.sparse[0].numbytes = *b"00000000000\0";
        v.extend(ext.as_bytes());
        v.extend(header(b"././@LongLink", b'L', 1 << 40));
        v.extend(header(b"f", b'0', 0));
        v.extend([0u8; 1024]);
        assert_eq!(names(&v).unwrap(), ["sp", "f"]);
    }

    #[test]
    fn headers_of_a_tar_file_are_checked_by_seeking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        let mut v = header(b"big", b'0', 1 << 30);
        v.extend([0u8; 512]);
        std::fs::write(&p, &v).unwrap();
        let f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        // The data of `big` is a hole; a long name over the limit follows.
        f.set_len(512 + (1 << 30)).unwrap();
        drop(f);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&header(b"././@LongLink", b'L', 1 << 40))
            .unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let e = check_tar_headers(&f).unwrap_err();
        assert!(e.to_string().contains("GNU long name"), "{e}");
        let ok = dir.path().join("ok.tar");
        let mut v = header(b"a", b'0', 3);
        v.extend([b'x'; 512]);
        v.extend([0u8; 1024]);
        std::fs::write(&ok, &v).unwrap();
        check_tar_headers(&std::fs::File::open(&ok).unwrap()).unwrap();
    }

    #[test]
    fn paths_are_bounded_in_length_and_depth() {
        assert!(check_tar_path(b"etc/os-release", "entry").is_ok());
        let long = vec![b'a'; PATH_MAX + 1];
        let e = check_tar_path(&long, "entry").unwrap_err().to_string();
        assert!(e.contains("4097 bytes") && e.contains("4096"), "{e}");
        let deep = "a/".repeat(PATH_DEPTH_MAX + 1);
        let e = check_tar_path(deep.as_bytes(), "entry")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1025 components"), "{e}");
        assert!(check_tar_path("a/".repeat(PATH_DEPTH_MAX).as_bytes(), "entry").is_ok());
    }

    #[test]
    fn the_keep_budget_is_shared() {
        let mut b = KeepBudget::default();
        b.take("/var/lib/rpm/a", KEPT_TOTAL_MAX - 10).unwrap();
        b.take("/var/lib/rpm/b", 10).unwrap();
        let e = b.take("/var/lib/rpm/c", 1).unwrap_err().to_string();
        assert!(e.contains("/var/lib/rpm/c") && e.contains("256 MiB"), "{e}");
    }

    #[test]
    fn xz_streams_needing_more_memory_than_the_limit_are_refused() {
        // An xz stream whose header asks for a 512 MiB dictionary: the
        // decoder refuses it before allocating.
        let mut opts = liblzma::stream::LzmaOptions::new_preset(0).unwrap();
        opts.dict_size(512 << 20);
        let mut filters = liblzma::stream::Filters::new();
        filters.lzma2(&opts);
        let enc =
            liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc32)
                .unwrap();
        let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), enc);
        w.write_all(b"hello").unwrap();
        let big = w.finish().unwrap();
        let mut out = Vec::new();
        let e = xz_decoder(&big[..]).read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("limit of 256 MiB"), "{e}");
        // A usual stream decodes.
        let mut w = liblzma::write::XzEncoder::new(Vec::new(), 6);
        w.write_all(b"hello").unwrap();
        let small = w.finish().unwrap();
        let mut out = Vec::new();
        xz_decoder(&small[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
    }
}
