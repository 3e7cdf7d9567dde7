//! Parallel gzip, in the manner of pigz: the input is cut into fixed
//! [`BLOCK`]-sized blocks, each raw-deflated at level 6 by a pool of worker
//! threads (with the previous block's last 32 KiB as dictionary, ending in a
//! sync flush, the last block finished), and the blocks are written in order
//! as one gzip member. The block size never depends on the number of
//! threads, so neither do the bytes.
//!
//! Also the compression thread budget shared by every encoder of the
//! process, so that layers packed side by side do not each take every core.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zlib_rs::{Deflate, DeflateFlush, Status};

/// Input bytes per block (fixed, whatever the number of threads).
pub(crate) const BLOCK: usize = 128 << 10;
/// Bytes of the previous block given to the next as its dictionary.
const DICT: usize = 32 << 10;
/// The deflate level (gzip's default).
const LEVEL: i32 = 6;
/// The header flate2's `GzEncoder` writes: no name, mtime 0, no extra
/// flags, OS "unknown".
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compression threads currently reserved by live encoders.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may run on (respects CPU affinity).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Compression threads reserved from the process budget ([`cores`]); given
/// back when dropped. Always at least one, so a second encoder running
/// beside a first may go one thread over the budget, never more.
pub(crate) struct Reservation {
    n: usize,
    counted: bool,
}

impl Reservation {
    pub(crate) fn take(want: usize) -> Reservation {
        let total = cores();
        let mut cur = IN_USE.load(Ordering::SeqCst);
        loop {
            let n = want.min(total.saturating_sub(cur)).max(1);
            match IN_USE.compare_exchange(cur, cur + n, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Reservation { n, counted: true },
                Err(now) => cur = now,
            }
        }
    }

    /// Exactly `n` (at least one) threads, outside the budget.
    #[cfg(test)]
    pub(crate) fn exactly(n: usize) -> Reservation {
        Reservation {
            n: n.max(1),
            counted: false,
        }
    }

    pub(crate) fn threads(&self) -> usize {
        self.n
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.counted {
            IN_USE.fetch_sub(self.n, Ordering::SeqCst);
        }
    }
}

/// One block to compress: `data[..dict]` is the dictionary, the rest the input.
struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: usize,
    last: bool,
}

/// A compressed block (or why it could not be).
struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
}

/// Raw-deflate one block: sync flush, or finish for the last one. The
/// deflater is zlib-rs (zlib-ng's algorithms in Rust: about twice as fast
/// as zlib at level 6 for 1-2% more bytes); its CPU-specific code (match
/// comparison, hash sliding) computes what its portable code does, so the
/// bytes depend on neither the machine nor the number of threads.
fn deflate_block(job: &Job) -> io::Result<Vec<u8>> {
    let failed = |e: zlib_rs::DeflateError| io::Error::other(format!("deflate: {e:?}"));
    let mut c = Deflate::new(LEVEL, false, 15);
    let (dict, input) = job.data.split_at(job.dict);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(failed)?;
    }
    let flush = if job.last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    let mut out = vec![0u8; zlib_rs::compress_bound(input.len()) + 64];
    loop {
        let done_in = usize::try_from(c.total_in()).map_err(io::Error::other)?;
        let done_out = usize::try_from(c.total_out()).map_err(io::Error::other)?;
        let rest = input.get(done_in..).unwrap_or_default();
        let status = c
            .compress(rest, out.get_mut(done_out..).unwrap_or_default(), flush)
            .map_err(failed)?;
        let done_in = usize::try_from(c.total_in()).map_err(io::Error::other)?;
        let done_out = usize::try_from(c.total_out()).map_err(io::Error::other)?;
        // A sync flush is complete when it left room in the output.
        let flushed = !job.last && done_in == input.len() && done_out < out.len();
        match status {
            Status::StreamEnd => {}
            Status::Ok | Status::BufError if flushed => {}
            Status::Ok | Status::BufError => {
                out.resize(out.len() * 2, 0);
                continue;
            }
        }
        out.truncate(done_out);
        return Ok(out);
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let out = catch_unwind(AssertUnwindSafe(|| deflate_block(&job)))
            .unwrap_or_else(|_| Err(io::Error::other("a compression thread failed")));
        if done.send(Done { seq: job.seq, out }).is_err() {
            return;
        }
    }
}

/// A gzip writer compressing on `threads` worker threads; the calling thread
/// writes the blocks in order, with the header, CRC-32 and size.
pub(crate) struct ParGzEncoder<W: Write> {
    inner: Option<W>,
    buf: Vec<u8>,
    tail: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    queue: Arc<Mutex<Receiver<Job>>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    ready: BTreeMap<u64, Vec<u8>>,
    submitted: u64,
    written: u64,
    max_in_flight: u64,
    crc: crc32fast::Hasher,
    size: u64,
    failed: Option<String>,
}

impl<W: Write> ParGzEncoder<W> {
    pub(crate) fn new(w: W, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let max_in_flight = 2 * threads as u64;
        let cap = usize::try_from(max_in_flight).unwrap_or(usize::MAX);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(cap);
        let (done_tx, done_rx) = mpsc::sync_channel::<Done>(cap);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || worker(&rx, &tx))?;
            workers.push(h);
        }
        let mut inner = w;
        inner.write_all(&HEADER)?;
        Ok(ParGzEncoder {
            inner: Some(inner),
            buf: Vec::with_capacity(BLOCK),
            tail: Vec::new(),
            jobs: Some(job_tx),
            queue: job_rx,
            done: done_rx,
            workers,
            ready: BTreeMap::new(),
            submitted: 0,
            written: 0,
            max_in_flight,
            crc: crc32fast::Hasher::new(),
            size: 0,
            failed: None,
        })
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(m) => Err(io::Error::other(m.clone())),
            None => Ok(()),
        }
    }

    /// Remember the first error, so later calls fail the same way.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// Write every finished block that is next in order.
    fn write_ready(&mut self) -> io::Result<()> {
        let Some(w) = self.inner.as_mut() else {
            return Ok(());
        };
        while let Some(out) = self.ready.remove(&self.written) {
            w.write_all(&out)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Wait for one block from the workers (`block`) or take those already
    /// done, then write what is next in order.
    fn collect(&mut self, block: bool) -> io::Result<()> {
        let mut first = block;
        loop {
            let d = if first {
                first = false;
                self.done
                    .recv()
                    .map_err(|_| io::Error::other("the compression threads stopped"))?
            } else {
                match self.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            };
            self.ready.insert(d.seq, d.out?);
        }
        self.write_ready()
    }

    /// Hand the current block to the workers, waiting while too many are
    /// in flight.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.submitted - self.written >= self.max_in_flight {
            self.collect(true)?;
        }
        let input = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let mut data = Vec::with_capacity(self.tail.len() + input.len());
        data.extend_from_slice(&self.tail);
        data.extend_from_slice(&input);
        let job = Job {
            seq: self.submitted,
            data,
            dict: self.tail.len(),
            last,
        };
        let keep = input.len().min(DICT);
        self.tail.clear();
        self.tail.extend_from_slice(&input[input.len() - keep..]);
        let tx = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("finished"))?;
        tx.send(job)
            .map_err(|_| io::Error::other("the compression threads stopped"))?;
        self.submitted += 1;
        self.collect(false)
    }

    fn finish_inner(&mut self) -> io::Result<W> {
        self.submit(true)?;
        self.jobs = None;
        while self.written < self.submitted {
            self.collect(true)?;
        }
        let mut w = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("finished"))?;
        let crc = std::mem::take(&mut self.crc).finalize();
        w.write_all(&crc.to_le_bytes())?;
        // The gzip trailer holds the size modulo 2^32.
        w.write_all(&((self.size & 0xffff_ffff) as u32).to_le_bytes())?;
        w.flush()?;
        Ok(w)
    }

    /// Compress what is left, write the trailer and give the sink back.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.finish_inner().map_err(|e| self.fail(e))
    }

    fn write_inner(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.buf.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.write_inner(buf).map_err(|e| self.fail(e))
    }

    /// Writes the blocks already compressed and flushes the sink; the block
    /// being filled is not cut short (that would change the bytes).
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        let r = self
            .collect(false)
            .and_then(|()| match self.inner.as_mut() {
                Some(w) => w.flush(),
                None => Ok(()),
            });
        r.map_err(|e| self.fail(e))
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    /// Stop the workers: queued blocks are dropped, a block being compressed
    /// is finished (its result has room in the channel), then they see no
    /// more jobs and end.
    fn drop(&mut self) {
        self.jobs = None;
        if let Ok(rx) = self.queue.lock() {
            while rx.try_recv().is_ok() {}
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::BLOCK;
    use crate::tarstream::{Codec, Encoder};

    /// Runs of text and of xorshift noise, `len` bytes.
    fn mixed(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::with_capacity(len);
        let text = b"usr/lib/modules/6.1.0/kernel/drivers/net/ethernet/intel/e1000e.ko\n";
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let run = (x % 50_000) as usize;
            if x.is_multiple_of(3) {
                for _ in 0..run / 8 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.extend_from_slice(&x.to_le_bytes());
                }
            } else {
                out.extend(text.iter().cycle().take(run));
            }
        }
        out.truncate(len);
        out
    }

    fn encode(codec: Codec, threads: usize, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut e = Encoder::with_threads(codec, Vec::new(), threads).unwrap();
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    fn sizes() -> Vec<usize> {
        vec![0, 1, BLOCK, BLOCK + 1, 5 << 20]
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_threads_and_decode_as_one_member() {
        for n in sizes() {
            let data = mixed(n);
            let one = encode(Codec::Gzip, 1, &data, 1 << 20);
            let four = encode(Codec::Gzip, 4, &data, 1 << 20);
            assert_eq!(one, four, "gzip of {n} bytes");
            assert_eq!(
                one,
                encode(Codec::Gzip, 3, &data, 1000),
                "{n} bytes, small writes"
            );
            let mut d = flate2::read::GzDecoder::new(&one[..]);
            let mut back = Vec::new();
            d.read_to_end(&mut back).unwrap();
            assert!(back == data, "gzip round trip of {n} bytes");
            assert!(d.into_inner().is_empty(), "one gzip member for {n} bytes");
        }
    }

    /// The bytes of a known input, pinned: a change of the deflater (its
    /// version, or code that depends on the machine) shows here first.
    #[test]
    fn gzip_bytes_are_pinned() {
        use sha2::{Digest as _, Sha256};
        let out = encode(Codec::Gzip, 2, &mixed(3 << 20), 1 << 16);
        assert_eq!(
            hex::encode(Sha256::digest(&out)),
            "a46d91164eda927873f6746f624bbd27ecfffc838e6ff1dbeb6d5d77454fb922"
        );
    }

    #[test]
    fn gzip_header_is_the_one_flate2_writes() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"x").unwrap();
        let theirs = e.finish().unwrap();
        let ours = encode(Codec::Gzip, 2, b"x", 1);
        assert_eq!(ours[..10], theirs[..10]);
        assert_eq!(ours[ours.len() - 8..], theirs[theirs.len() - 8..]);
    }

    #[test]
    fn gzip_t_accepts_the_output() {
        if std::process::Command::new("gzip")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "gzip is required under CI=true (apt-get install gzip)"
            );
            eprintln!("SKIP: install gzip");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for n in sizes() {
            let p = dir.path().join(format!("{n}.gz"));
            std::fs::write(&p, encode(Codec::Gzip, 4, &mixed(n), 1 << 16)).unwrap();
            let out = std::process::Command::new("gzip")
                .arg("-t")
                .arg(&p)
                .output()
                .unwrap();
            assert!(out.status.success(), "gzip -t on {n} bytes: {out:?}");
        }
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_threads() {
        for n in sizes() {
            let data = mixed(n);
            let one = encode(Codec::Zstd, 1, &data, 1 << 20);
            let four = encode(Codec::Zstd, 4, &data, 1 << 20);
            assert_eq!(one, four, "zstd of {n} bytes");
            assert_eq!(
                one,
                encode(Codec::Zstd, 2, &data, 1000),
                "{n} bytes, small writes"
            );
            assert!(
                zstd::decode_all(&one[..]).unwrap() == data,
                "zstd round trip of {n} bytes"
            );
        }
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_threads_past_a_job() {
        // Larger than one multithreaded job, so several jobs run at once.
        let data = mixed(40 << 20);
        let one = encode(Codec::Zstd, 1, &data, 1 << 17);
        let four = encode(Codec::Zstd, 4, &data, 1 << 17);
        assert!(one == four, "zstd of 40 MiB");
        assert!(zstd::decode_all(&one[..]).unwrap() == data);
    }

    /// A sink that fails after `left` bytes.
    struct Failing {
        left: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_sink_is_an_error_not_a_panic_or_a_hang() {
        let data = mixed(3 << 20);
        let mut e = Encoder::with_threads(Codec::Gzip, Failing { left: 1000 }, 2).unwrap();
        let written = data.chunks(1 << 16).try_for_each(|c| e.write_all(c));
        let err = match written {
            Err(err) => err,
            Ok(()) => e.finish().err().unwrap(),
        };
        assert_eq!(err.to_string(), "disk full");
    }

    #[test]
    fn a_dropped_encoder_stops_its_workers() {
        let data = mixed(2 << 20);
        for _ in 0..20 {
            let mut e = Encoder::with_threads(Codec::Gzip, Vec::new(), 4).unwrap();
            e.write_all(&data).unwrap();
            drop(e);
        }
    }

    /// Times the single-threaded encoders against these on the file named by
    /// `NODEIMG_COMPRESS_BENCH`:
    /// `NODEIMG_COMPRESS_BENCH=x.tar cargo test -p nodeimg-image --lib compress_bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn compress_bench() {
        use sha2::{Digest as _, Sha256};
        let Some(path) = std::env::var_os("NODEIMG_COMPRESS_BENCH") else {
            return;
        };
        let data = std::fs::read(path).unwrap();
        let report = |what: &str, t: std::time::Instant, out: &[u8]| {
            let h = hex::encode(Sha256::digest(out));
            eprintln!(
                "{what}: {:.2} s, {} bytes, {h}",
                t.elapsed().as_secs_f64(),
                out.len()
            );
        };
        let t = std::time::Instant::now();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        report("gzip, one thread (GzEncoder)", t, &e.finish().unwrap());
        let t = std::time::Instant::now();
        let out = zstd::stream::encode_all(&data[..], 3).unwrap();
        report("zstd -3, one thread", t, &out);
        for codec in [Codec::Gzip, Codec::Zstd] {
            let t = std::time::Instant::now();
            let mut e = Encoder::new(codec, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            report(&format!("{codec:?}, Encoder::new"), t, &e.finish().unwrap());
        }
    }
}
