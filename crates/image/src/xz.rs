//! xz decoding on every core, streaming, for streams whose blocks record
//! their sizes in their headers (what multi-threaded encoders write: `xz
//! -T`, `dpkg-deb`; most `.deb` payloads of a distribution).
//!
//! The stream is read in order. Each round takes up to one block per core:
//! the first is decoded in the reader's thread as it is read, the others on
//! threads of their own into anonymous temporary files, which are then read
//! in turn, as are compressed blocks of more than 1 MiB before them; memory
//! stays at one decoder (its dictionary) per core,
//! whatever the blocks' size. Each block is decoded by liblzma
//! as a stream of its own (the stream's header, the block, an index of that
//! one block), so its header, sizes and check are verified as in the whole
//! stream; the stream's own index and footer are checked here against the
//! blocks read. A stream whose first block has no sizes (single-threaded
//! encoders) is decoded as it is, in one thread, as are concatenated
//! streams from there on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek};
use std::thread::JoinHandle;

const MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];

/// The largest compressed block held in memory; a larger one is spooled to
/// an anonymous temporary file first (read back from the page cache, it
/// costs no resident memory of the process).
const HOLD_MAX: u64 = 1 << 20;

/// The largest LZMA2 dictionary decoded alongside others; a block with a
/// larger one is decoded alone (its decoder's memory is about its
/// dictionary).
const PARALLEL_DICT_MAX: u64 = 16 << 20;

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("xz: {}", what.into()))
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "xz: the stream is truncated")
}

/// An xz decoder of `r` for `threads` cores (see the module's notes).
pub(crate) fn decoder<'a, R: Read + 'a>(r: R, threads: usize) -> ParallelXz<'a, R> {
    ParallelXz {
        input: Some(r),
        threads: threads.max(1),
        cur: None,
        queue: VecDeque::new(),
        stream: None,
        first_stream: true,
        finished: false,
    }
}

/// The stream being read: its header and the blocks seen so far.
struct Stream {
    header: [u8; 12],
    check_size: u64,
    /// (unpadded size, uncompressed size) of each block read.
    records: Vec<(u64, u64)>,
}

/// Where the bytes of a block come from, in order.
enum Source<'a> {
    Inline(Box<dyn Read + 'a>),
    Decoded(JoinHandle<io::Result<File>>),
}

pub struct ParallelXz<'a, R> {
    input: Option<R>,
    threads: usize,
    cur: Option<Box<dyn Read + 'a>>,
    queue: VecDeque<Source<'a>>,
    stream: Option<Stream>,
    first_stream: bool,
    finished: bool,
}

impl<'a, R: Read + 'a> Read for ParallelXz<'a, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(cur) = &mut self.cur {
                let n = cur.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.cur = None;
            }
            if let Some(next) = self.queue.pop_front() {
                self.cur = Some(match next {
                    Source::Inline(r) => r,
                    Source::Decoded(h) => reread(
                        h.join()
                            .map_err(|_| io::Error::other("xz: a decoding thread panicked"))??,
                    )?,
                });
                continue;
            }
            if self.finished {
                return Ok(0);
            }
            self.round()?;
        }
    }
}

impl<'a, R: Read + 'a> ParallelXz<'a, R> {
    fn input(&mut self) -> io::Result<&mut R> {
        self.input
            .as_mut()
            .ok_or_else(|| io::Error::other("xz: the input was handed over"))
    }

    /// Reads the next blocks (up to one per thread), queueing their output.
    fn round(&mut self) -> io::Result<()> {
        let mut queued = 0;
        while queued < self.threads {
            if self.stream.is_none() && !self.start_stream()? {
                self.finished = true;
                return Ok(());
            }
            let mut first = [0u8; 1];
            read_full(self.input()?, &mut first)?;
            if first[0] == 0 {
                self.end_stream()?;
                if queued > 0 {
                    return Ok(());
                }
                continue;
            }
            let header_len = (usize::from(first[0]) + 1) * 4;
            let mut header = vec![0u8; header_len];
            header[0] = first[0];
            read_full(self.input()?, &mut header[1..])?;
            let sizes = parse_block_header(&header)?;
            let Some(stream) = self.stream.as_mut() else {
                return Err(io::Error::other("xz: no stream"));
            };
            let Some(sizes) = sizes else {
                if stream.records.is_empty() {
                    // Written without sizes: decoded as it comes, in one
                    // thread, with any stream after it.
                    self.sequential(header)?;
                    return Ok(());
                }
                return Err(bad(format!(
                    "block {} has no sizes in its header after blocks that have them",
                    stream.records.len() + 1
                )));
            };
            let check_size = stream.check_size;
            let stream_header = stream.header;
            let body = sizes
                .compressed
                .checked_add(pad4(header_len as u64 + sizes.compressed))
                .and_then(|n| n.checked_add(check_size))
                .ok_or_else(|| bad("a block's size is out of range"))?;
            let unpadded = header_len as u64 + sizes.compressed + check_size;
            stream.records.push((unpadded, sizes.uncompressed));
            let bytes = self.take_block(header, body)?;
            let synthetic = one_block_stream(stream_header, bytes, unpadded, sizes.uncompressed)?;
            let alone = sizes.dict > PARALLEL_DICT_MAX;
            if queued == 0 || alone {
                self.queue
                    .push_back(Source::Inline(Box::new(super::limits::xz_stream(
                        synthetic,
                    ))));
            } else {
                self.queue.push_back(Source::Decoded(std::thread::spawn(
                    move || -> io::Result<File> {
                        let mut f = tempfile::tempfile()?;
                        let mut w = io::BufWriter::with_capacity(1 << 16, &mut f);
                        io::copy(&mut super::limits::xz_stream(synthetic), &mut w)?;
                        w.into_inner().map_err(io::IntoInnerError::into_error)?;
                        Ok(f)
                    },
                )));
            }
            queued += 1;
            if alone {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The block whose header is `header`, with the `body` bytes after it
    /// (compressed data, padding, check), in memory or spooled to a file.
    fn take_block(&mut self, header: Vec<u8>, body: u64) -> io::Result<Box<dyn Read + Send>> {
        let input = self.input()?;
        if body <= HOLD_MAX {
            let mut bytes = header;
            let start = bytes.len();
            bytes.resize(start + body as usize, 0);
            read_full(input, &mut bytes[start..])?;
            Ok(Box::new(Cursor::new(bytes)))
        } else {
            let mut f = tempfile::tempfile()?;
            io::Write::write_all(&mut f, &header)?;
            let n = io::copy(&mut input.take(body), &mut f)?;
            if n != body {
                return Err(truncated());
            }
            reread(f)
        }
    }

    /// Reads a stream header (after the padding of an earlier stream);
    /// false at the end of the input.
    fn start_stream(&mut self) -> io::Result<bool> {
        let first_stream = self.first_stream;
        let input = self.input()?;
        let mut header = [0u8; 12];
        loop {
            let n = read_some(input, &mut header[..4])?;
            if n == 0 {
                if first_stream {
                    return Err(truncated());
                }
                return Ok(false);
            }
            if n < 4 {
                return Err(truncated());
            }
            // Stream padding: groups of four zero bytes between streams.
            if !first_stream && header[..4] == [0; 4] {
                continue;
            }
            break;
        }
        read_full(input, &mut header[4..])?;
        if header[..6] != MAGIC {
            return Err(bad("not an xz stream (no magic bytes)"));
        }
        let flags = [header[6], header[7]];
        if crc32(&flags) != u32_le(&header[8..12]) {
            return Err(bad("the stream header's CRC32 does not match"));
        }
        if flags[0] != 0 || flags[1] & 0xF0 != 0 {
            return Err(bad("unsupported stream flags"));
        }
        self.first_stream = false;
        self.stream = Some(Stream {
            header,
            check_size: check_size(flags[1]),
            records: Vec::new(),
        });
        Ok(true)
    }

    /// Reads the index (its indicator byte already read) and the footer of
    /// the stream, checked against the blocks read.
    fn end_stream(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.take() else {
            return Err(io::Error::other("xz: no stream"));
        };
        let input = self.input()?;
        let mut index = vec![0u8];
        let count = read_vli(input, &mut index)?;
        if count != stream.records.len() as u64 {
            return Err(bad(format!(
                "the index lists {count} blocks, the stream has {}",
                stream.records.len()
            )));
        }
        for (i, &(unpadded, uncompressed)) in stream.records.iter().enumerate() {
            let u = read_vli(input, &mut index)?;
            let c = read_vli(input, &mut index)?;
            if (u, c) != (unpadded, uncompressed) {
                return Err(bad(format!(
                    "the index does not match block {}'s sizes",
                    i + 1
                )));
            }
        }
        let pad = pad4(index.len() as u64) as usize;
        let mut tail = vec![0u8; pad + 4];
        read_full(input, &mut tail)?;
        if tail[..pad].iter().any(|b| *b != 0) {
            return Err(bad("the index's padding is not zero"));
        }
        index.extend_from_slice(&tail[..pad]);
        if crc32(&index) != u32_le(&tail[pad..]) {
            return Err(bad("the index's CRC32 does not match"));
        }
        let index_size = index.len() as u64 + 4;
        let mut footer = [0u8; 12];
        read_full(input, &mut footer)?;
        if footer[10..] != FOOTER_MAGIC {
            return Err(bad("no stream footer after the index"));
        }
        if crc32(&footer[4..10]) != u32_le(&footer[..4]) {
            return Err(bad("the stream footer's CRC32 does not match"));
        }
        if u64::from(u32_le(&footer[4..8])) != index_size / 4 - 1 {
            return Err(bad(
                "the stream footer's index size does not match the index",
            ));
        }
        if footer[8..10] != stream.header[6..8] {
            return Err(bad("the stream footer's flags differ from its header's"));
        }
        Ok(())
    }

    /// From the block whose header is `header` on, one liblzma decoder over
    /// the rest of the input (concatenated streams included).
    fn sequential(&mut self, header: Vec<u8>) -> io::Result<()> {
        let Some(stream) = self.stream.take() else {
            return Err(io::Error::other("xz: no stream"));
        };
        let input = self
            .input
            .take()
            .ok_or_else(|| io::Error::other("xz: the input was handed over"))?;
        let mut start = stream.header.to_vec();
        start.extend_from_slice(&header);
        let rest = Cursor::new(start).chain(input);
        self.queue
            .push_back(Source::Inline(super::limits::xz_sequential(rest)));
        self.finished = true;
        Ok(())
    }
}

/// The sizes a block header records, and its LZMA2 dictionary size.
struct BlockSizes {
    compressed: u64,
    uncompressed: u64,
    dict: u64,
}

/// The sizes of a block header (with its CRC32 checked); `None` when it
/// does not record both.
fn parse_block_header(h: &[u8]) -> io::Result<Option<BlockSizes>> {
    let n = h.len();
    if crc32(&h[..n - 4]) != u32_le(&h[n - 4..]) {
        return Err(bad("a block header's CRC32 does not match"));
    }
    let flags = h[1];
    if flags & 0x3C != 0 {
        return Err(bad("a block header has unsupported flags"));
    }
    if flags & 0xC0 != 0xC0 {
        return Ok(None);
    }
    let mut at = Cursor::new(&h[2..n - 4]);
    let mut sink = Vec::new();
    let compressed = read_vli(&mut at, &mut sink)?;
    let uncompressed = read_vli(&mut at, &mut sink)?;
    if compressed == 0 {
        return Err(bad("a block header records a compressed size of 0"));
    }
    // The filters: the dictionary of the LZMA2 filter (ID 0x21) bounds
    // the decoder's memory.
    let filters = usize::from(flags & 0x03) + 1;
    let mut dict = u64::MAX;
    for _ in 0..filters {
        let id = read_vli(&mut at, &mut sink)?;
        let size = read_vli(&mut at, &mut sink)?;
        let mut props = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX).min(n)];
        read_full(&mut at, &mut props)?;
        if id == 0x21 && props.len() == 1 && props[0] <= 40 {
            let d = u64::from(props[0]);
            dict = if d == 40 {
                u64::from(u32::MAX)
            } else {
                (2 | (d & 1)) << (d / 2 + 11)
            };
        }
    }
    Ok(Some(BlockSizes {
        compressed,
        uncompressed,
        dict,
    }))
}

/// A stream of the one block `block` (its header, data, padding, check):
/// `header` (the stream's), the block, an index of it and a footer.
fn one_block_stream(
    header: [u8; 12],
    block: Box<dyn Read + Send>,
    unpadded: u64,
    uncompressed: u64,
) -> io::Result<Box<dyn Read + Send>> {
    let mut index = vec![0u8];
    write_vli(&mut index, 1);
    write_vli(&mut index, unpadded);
    write_vli(&mut index, uncompressed);
    index.resize(index.len() + pad4(index.len() as u64) as usize, 0);
    let crc = crc32(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    let backward = u32::try_from(index.len() / 4 - 1).map_err(|_| bad("index too large"))?;
    let mut footer = Vec::with_capacity(12);
    footer.extend_from_slice(&backward.to_le_bytes());
    footer.extend_from_slice(&header[6..8]);
    let crc = crc32(&footer);
    let mut tail = crc.to_le_bytes().to_vec();
    tail.extend_from_slice(&footer);
    tail.extend_from_slice(&FOOTER_MAGIC);
    index.extend_from_slice(&tail);
    Ok(Box::new(
        Cursor::new(header).chain(block).chain(Cursor::new(index)),
    ))
}

/// The temporary file `f`, just written, read from its start.
fn reread(mut f: File) -> io::Result<Box<dyn Read + Send>> {
    f.rewind()?;
    Ok(Box::new(io::BufReader::with_capacity(1 << 16, f)))
}

fn check_size(id: u8) -> u64 {
    match id {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    }
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads an xz variable-length integer (at most 9 bytes, no trailing zero
/// byte), appending its bytes to `raw`.
fn read_vli(r: &mut impl Read, raw: &mut Vec<u8>) -> io::Result<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let mut b = [0u8; 1];
        read_full(r, &mut b)?;
        raw.push(b[0]);
        v |= u64::from(b[0] & 0x7F) << (7 * i);
        if b[0] & 0x80 == 0 {
            if i > 0 && b[0] == 0 {
                return Err(bad("an integer is not in its shortest form"));
            }
            return Ok(v);
        }
    }
    Err(bad("an integer is longer than 9 bytes"))
}

fn write_vli(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated()
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random text, compressible but not trivially.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = ["node", "image", "layer", "kubelet", "cgroup", "systemd"][(x % 6) as usize];
            out.extend_from_slice(word.as_bytes());
            out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    /// `data` xz-compressed in blocks of `block` bytes (sizes in headers).
    fn multi_block(data: &[u8], block: u64) -> Vec<u8> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(2)
            .block_size(block)
            .preset(1)
            .encoder()
            .expect("encoder");
        let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        io::Write::write_all(&mut w, data).expect("compress");
        w.finish().expect("finish")
    }

    fn single(data: &[u8]) -> Vec<u8> {
        let mut w = liblzma::write::XzEncoder::new(Vec::new(), 1);
        io::Write::write_all(&mut w, data).expect("compress");
        w.finish().expect("finish")
    }

    fn decode(bytes: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, as a tar reader does.
        let mut d = decoder(bytes, threads);
        let mut buf = [0u8; 777];
        loop {
            let n = d.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn blocks_with_sizes_decode_in_parallel_to_the_same_bytes() {
        let data = sample(1_300_000);
        let xz = multi_block(&data, 200_000);
        // Several blocks, each with its sizes: the parallel path is taken.
        assert!(
            parse_block_header(&xz[12..12 + (usize::from(xz[12]) + 1) * 4])
                .expect("header")
                .is_some()
        );
        for threads in [1, 2, 3, 8] {
            assert_eq!(
                decode(&xz, threads).expect("decode"),
                data,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn a_stream_without_sizes_and_concatenated_streams_decode() {
        let a = sample(300_000);
        let b = sample(500_000);
        let mut both = multi_block(&a, 64_000);
        both.extend_from_slice(&[0u8; 8]); // stream padding
        both.extend_from_slice(&single(&b));
        both.extend_from_slice(&multi_block(&b, 64_000));
        let mut want = a.clone();
        want.extend_from_slice(&b);
        want.extend_from_slice(&b);
        assert_eq!(decode(&both, 2).expect("decode"), want);
        assert_eq!(decode(&single(&a), 2).expect("decode"), a);
        assert_eq!(decode(&multi_block(&[], 64_000), 2).expect("decode"), b"");
    }

    /// `NODEIMG_XZ_BENCH=FILE cargo test --release -p nodeimg-image --lib
    /// xz_bench -- --ignored --nocapture`: FILE (an xz stream) decoded in
    /// one thread and on every core.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn xz_bench() {
        let Ok(path) = std::env::var("NODEIMG_XZ_BENCH") else {
            eprintln!("set NODEIMG_XZ_BENCH=FILE");
            return;
        };
        let cores = crate::pgzip::cores();
        for (what, threads) in [("one thread", 1), ("every core", cores)] {
            let f = File::open(&path).expect("open");
            let start = std::time::Instant::now();
            let n = if threads == 1 {
                io::copy(&mut super::super::limits::xz_sequential(f), &mut io::sink())
            } else {
                io::copy(&mut decoder(f, threads), &mut io::sink())
            }
            .expect("decode");
            eprintln!("{what} ({threads}): {n} bytes in {:.2?}", start.elapsed());
        }
    }

    #[test]
    fn damage_anywhere_is_an_error() {
        let data = sample(400_000);
        let xz = multi_block(&data, 100_000);
        // Truncated at any point.
        for cut in [0, 5, 12, 40, xz.len() / 2, xz.len() - 13, xz.len() - 1] {
            assert!(decode(&xz[..cut], 2).is_err(), "cut at {cut}");
        }
        // A byte flipped in a block, in the index, in the footer.
        for at in [30, xz.len() / 2, xz.len() - 20, xz.len() - 6] {
            let mut bad = xz.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, 2).is_err(), "flipped at {at}");
        }
        // Garbage after the stream.
        let mut trailing = xz.clone();
        trailing.extend_from_slice(b"junk");
        assert!(decode(&trailing, 2).is_err());
        // Not xz at all.
        let e = decode(b"not an xz stream at all", 2).expect_err("not xz");
        assert!(e.to_string().contains("magic"), "{e}");
    }
}
