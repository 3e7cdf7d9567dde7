//! `.rpm` files: the lead, the signature header, the header, and the
//! compressed cpio (newc) payload, read as a stream.
//!
//! Headers are bounded (as rpm bounds them) and every index entry is checked
//! against its data store, so a malformed file gives an error naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Why an `.rpm` cannot be read. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct RpmError {
    /// The file.
    pub file: String,
    /// What is wrong, or what was being read when `source` failed.
    pub reason: String,
    /// The I/O (or decompression) error beneath, if any.
    #[source]
    pub source: Option<io::Error>,
}

fn err(file: &str, reason: impl Into<String>) -> RpmError {
    RpmError {
        file: file.to_string(),
        reason: reason.into(),
        source: None,
    }
}

/// Reading `file` failed while doing `context`.
fn io_err(file: &str, context: impl Into<String>, source: io::Error) -> RpmError {
    RpmError {
        file: file.to_string(),
        reason: context.into(),
        source: Some(source),
    }
}

/// Header tags used here.
pub mod tag {
    /// Signature header: RSA (OpenPGP) signature over the header.
    pub(crate) const SIG_RSAHEADER: u32 = 268;
    /// Signature header: DSA/EdDSA (OpenPGP) signature over the header.
    pub(crate) const SIG_DSAHEADER: u32 = 267;
    /// Signature header: SHA256 of the header, hex.
    pub(crate) const SIG_SHA256: u32 = 273;
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const VENDOR: u32 = 1011;
    pub const LICENSE: u32 = 1014;
    pub const ARCH: u32 = 1022;
    pub const PREIN: u32 = 1023;
    pub(crate) const POSTIN: u32 = 1024;
    pub(crate) const PREUN: u32 = 1025;
    pub(crate) const POSTUN: u32 = 1026;
    pub(crate) const OLDFILENAMES: u32 = 1027;
    pub(crate) const FILESIZES: u32 = 1028;
    pub(crate) const FILEMODES: u32 = 1030;
    pub(crate) const FILEMTIMES: u32 = 1034;
    pub(crate) const FILELINKTOS: u32 = 1036;
    pub(crate) const FILEFLAGS: u32 = 1037;
    pub const FILEUSERNAME: u32 = 1039;
    pub const FILEGROUPNAME: u32 = 1040;
    pub(crate) const TRIGGERSCRIPTS: u32 = 1065;
    pub(crate) const PREINPROG: u32 = 1085;
    pub(crate) const POSTINPROG: u32 = 1086;
    pub(crate) const PREUNPROG: u32 = 1087;
    pub(crate) const POSTUNPROG: u32 = 1088;
    pub(crate) const DIRINDEXES: u32 = 1116;
    pub(crate) const BASENAMES: u32 = 1117;
    pub(crate) const DIRNAMES: u32 = 1118;
    pub(crate) const PAYLOADFORMAT: u32 = 1124;
    pub(crate) const PAYLOADCOMPRESSOR: u32 = 1125;
    pub(crate) const PRETRANS: u32 = 1151;
    pub(crate) const POSTTRANS: u32 = 1152;
    pub(crate) const LONGFILESIZES: u32 = 5008;
    pub(crate) const FILETRIGGERSCRIPTS: u32 = 5066;
    pub(crate) const TRANSFILETRIGGERSCRIPTS: u32 = 5076;
    pub(crate) const PAYLOADDIGEST: u32 = 5092;
    pub(crate) const PAYLOADDIGESTALGO: u32 = 5093;
}

/// `%config` in the file flags.
pub(crate) const FILE_CONFIG: u32 = 1;
/// `%ghost` in the file flags: not in the payload, not installed.
pub(crate) const FILE_GHOST: u32 = 64;

const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
/// rpm's own bounds (HEADER_TAGS_MAX, HEADER_DATA_MAX).
const MAX_TAGS: u32 = 0xffff;
const MAX_DATA: u32 = 256 << 20;

#[derive(Debug, Clone, Copy)]
struct Entry {
    typ: u32,
    offset: u32,
    count: u32,
}

/// One header structure: the index and its data store, and the bytes as
/// stored (what a header signature covers).
#[derive(Debug, Clone)]
pub struct Header {
    entries: BTreeMap<u32, Entry>,
    /// Intro, index and data store as in the file.
    raw: Vec<u8>,
    data_start: usize,
    what: String,
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], file: &str, what: &str) -> Result<(), RpmError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            err(file, format!("truncated in the {what}"))
        } else {
            io_err(file, format!("reading the {what}"), e)
        }
    })
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

impl Header {
    /// Reads one header structure (`what` names it in errors).
    pub fn read(r: &mut impl Read, file: &str, what: &str) -> Result<Header, RpmError> {
        let mut intro = [0u8; 16];
        read_exact(r, &mut intro, file, what)?;
        if intro[..8] != HEADER_MAGIC {
            return Err(err(file, format!("the {what} has no header magic")));
        }
        let (nindex, hsize) = (be32(&intro[8..]), be32(&intro[12..]));
        if nindex == 0 || nindex > MAX_TAGS || hsize > MAX_DATA {
            return Err(err(
                file,
                format!("the {what} is out of bounds ({nindex} tags, {hsize} bytes)"),
            ));
        }
        let data_start = 16 + nindex as usize * 16;
        let mut raw = vec![0u8; data_start + hsize as usize];
        raw[..16].copy_from_slice(&intro);
        read_exact(r, &mut raw[16..], file, what)?;
        let mut entries = BTreeMap::new();
        for i in 0..nindex as usize {
            let e = &raw[16 + i * 16..32 + i * 16];
            let (t, typ, offset, count) = (be32(e), be32(&e[4..]), be32(&e[8..]), be32(&e[12..]));
            if typ > 9 || offset > hsize || count > hsize {
                return Err(err(
                    file,
                    format!("the {what} has a malformed entry for tag {t}"),
                ));
            }
            entries.insert(t, Entry { typ, offset, count });
        }
        Ok(Header {
            entries,
            raw,
            data_start,
            what: what.to_string(),
        })
    }

    /// A header as the rpm database stores it (the index count, data size,
    /// index and data, without the magic), e.g. a row of `rpmdb.sqlite`'s
    /// `Packages` table; `file` names it in errors.
    pub fn from_stored(blob: &[u8], file: &str, what: &str) -> Result<Header, RpmError> {
        let mut with_magic = (&HEADER_MAGIC[..]).chain(blob);
        Header::read(&mut with_magic, file, what)
    }

    /// The paths of the files the header lists (`BASENAMES` joined to their
    /// `DIRNAMES`, or the old `OLDFILENAMES`), in header order.
    pub fn file_paths(&self, file: &str) -> Result<Vec<String>, RpmError> {
        match self.strings(tag::BASENAMES, file)? {
            Some(base) => {
                let dirs = self.strings(tag::DIRNAMES, file)?.unwrap_or_default();
                let idx = self.ints(tag::DIRINDEXES, file)?.unwrap_or_default();
                if idx.len() != base.len() {
                    return Err(err(file, "the header's file lists differ in length"));
                }
                base.iter()
                    .zip(&idx)
                    .map(|(b, &i)| {
                        dirs.get(i as usize)
                            .map(|d| format!("{d}{b}"))
                            .ok_or_else(|| err(file, "a file's directory index is out of range"))
                    })
                    .collect()
            }
            None => Ok(self.strings(tag::OLDFILENAMES, file)?.unwrap_or_default()),
        }
    }

    /// The header bytes as stored (intro, index, data).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The data store from `offset` on.
    fn data(&self, e: &Entry) -> &[u8] {
        &self.raw[self.data_start + e.offset as usize..]
    }

    fn bad(&self, file: &str, t: u32, why: &str) -> RpmError {
        err(file, format!("the {} tag {t}: {why}", self.what))
    }

    /// Whether the tag is present.
    pub fn has(&self, t: u32) -> bool {
        self.entries.contains_key(&t)
    }

    /// The strings of a STRING, STRING_ARRAY or I18NSTRING tag.
    pub fn strings(&self, t: u32, file: &str) -> Result<Option<Vec<String>>, RpmError> {
        let Some(e) = self.entries.get(&t) else {
            return Ok(None);
        };
        if !matches!(e.typ, 6 | 8 | 9) {
            return Err(self.bad(file, t, "is not a string"));
        }
        let count = if e.typ == 6 { 1 } else { e.count as usize };
        let mut data = self.data(e);
        let mut out = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let Some(nul) = data.iter().position(|&b| b == 0) else {
                return Err(self.bad(file, t, "a string runs past the data"));
            };
            let s = std::str::from_utf8(&data[..nul])
                .map_err(|_| self.bad(file, t, "a string is not UTF-8"))?;
            out.push(s.to_string());
            data = &data[nul + 1..];
        }
        Ok(Some(out))
    }

    /// The one string of a tag.
    pub fn string(&self, t: u32, file: &str) -> Result<Option<String>, RpmError> {
        Ok(self.strings(t, file)?.and_then(|v| v.into_iter().next()))
    }

    /// The numbers of an INT8/16/32/64 tag, widened.
    pub fn ints(&self, t: u32, file: &str) -> Result<Option<Vec<u64>>, RpmError> {
        let Some(e) = self.entries.get(&t) else {
            return Ok(None);
        };
        let width = match e.typ {
            2 => 1,
            3 => 2,
            4 => 4,
            5 => 8,
            _ => return Err(self.bad(file, t, "is not a number")),
        };
        let data = self.data(e);
        let n = e.count as usize;
        if data.len() < n * width {
            return Err(self.bad(file, t, "runs past the data"));
        }
        Ok(Some(
            data[..n * width]
                .chunks(width)
                .map(|c| c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
                .collect(),
        ))
    }

    /// The bytes of a BIN tag.
    pub fn bin(&self, t: u32, file: &str) -> Result<Option<&[u8]>, RpmError> {
        let Some(e) = self.entries.get(&t) else {
            return Ok(None);
        };
        if e.typ != 7 {
            return Err(self.bad(file, t, "is not binary"));
        }
        let data = self.data(e);
        data.get(..e.count as usize)
            .map(Some)
            .ok_or_else(|| self.bad(file, t, "runs past the data"))
    }
}

/// One file the header lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path.
    pub path: String,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner name.
    pub user: String,
    /// Group name.
    pub group: String,
    /// rpm file flags (`FILE_CONFIG`, `FILE_GHOST`, ...).
    pub flags: u32,
    /// Symlink target, empty for others.
    pub link_to: String,
    /// Size.
    pub size: u64,
    /// Modification time (seconds since the epoch), when the header
    /// records the files' times (`rpm -V` checks it).
    pub mtime: Option<u64>,
}

/// An opened `.rpm`: its headers, and the reader positioned at the payload.
pub struct RpmFile {
    /// The signature header.
    pub signature: Header,
    /// The header.
    pub header: Header,
    payload: BufReader<Box<dyn Read>>,
    file: String,
}

impl std::fmt::Debug for RpmFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpmFile({})", self.file)
    }
}

impl RpmFile {
    /// Opens `path`, reading the lead and both headers. `file` names it in
    /// errors (e.g. its URL). The header's SHA256 in the signature header
    /// is checked when present.
    pub fn open(path: &Path, file: &str) -> Result<RpmFile, RpmError> {
        let f =
            File::open(path).map_err(|e| io_err(file, format!("opening {}", path.display()), e))?;
        Self::from_reader(f, file)
    }

    /// [`RpmFile::open`] on a reader of the package (e.g. the open,
    /// verified handle of a cache entry).
    pub fn from_reader(reader: impl Read + 'static, file: &str) -> Result<RpmFile, RpmError> {
        let mut r: BufReader<Box<dyn Read>> = BufReader::new(Box::new(reader));
        let mut lead = [0u8; 96];
        read_exact(&mut r, &mut lead, file, "lead")?;
        if lead[..4] != LEAD_MAGIC {
            return Err(err(file, "not an rpm package (no lead magic)"));
        }
        let signature = Header::read(&mut r, file, "signature header")?;
        let pad = (8 - signature.raw.len() % 8) % 8;
        let mut skip = [0u8; 8];
        read_exact(&mut r, &mut skip[..pad], file, "signature header padding")?;
        let header = Header::read(&mut r, file, "header")?;
        if let Some(want) = signature.string(tag::SIG_SHA256, file)? {
            let got = nodeimg_fetch::sha256_hex(header.raw());
            if !got.eq_ignore_ascii_case(want.trim()) {
                return Err(err(
                    file,
                    format!("the header's SHA256 is {got}, the signature header says {want}: the package was modified"),
                ));
            }
        }
        Ok(RpmFile {
            signature,
            header,
            payload: r,
            file: file.to_string(),
        })
    }

    /// The OpenPGP signature over the header (RSA or DSA/EdDSA tag), if any.
    pub fn header_signature(&self) -> Result<Option<&[u8]>, RpmError> {
        match self.signature.bin(tag::SIG_RSAHEADER, &self.file)? {
            Some(b) => Ok(Some(b)),
            None => self.signature.bin(tag::SIG_DSAHEADER, &self.file),
        }
    }

    /// Whether the header carries a SHA256 payload digest (rpm 4.14 and
    /// later), which a header signature then covers.
    pub(crate) fn has_payload_digest(&self) -> bool {
        self.header.has(tag::PAYLOADDIGEST)
    }

    /// A required string tag.
    fn required(&self, t: u32, what: &str) -> Result<String, RpmError> {
        self.header
            .string(t, &self.file)?
            .ok_or_else(|| err(&self.file, format!("the header has no {what}")))
    }

    /// `name`, `[epoch:]version-release`, `arch`.
    pub fn nevra(&self) -> Result<(String, super::version::Evr, String), RpmError> {
        let epoch = self
            .header
            .ints(tag::EPOCH, &self.file)?
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        let evr = super::version::Evr::new(
            epoch,
            &self.required(tag::VERSION, "version")?,
            Some(&self.required(tag::RELEASE, "release")?),
        );
        Ok((
            self.required(tag::NAME, "name")?,
            evr,
            self.header
                .string(tag::ARCH, &self.file)?
                .unwrap_or_else(|| "noarch".into()),
        ))
    }

    /// The files the header lists, in header order.
    pub fn files(&self) -> Result<Vec<FileInfo>, RpmError> {
        let f = &self.file;
        let h = &self.header;
        let paths = h.file_paths(f)?;
        let n = paths.len();
        let list = |t: u32| -> Result<Vec<String>, RpmError> {
            let v = h.strings(t, f)?.unwrap_or_else(|| vec![String::new(); n]);
            if v.len() != n {
                return Err(err(
                    f,
                    format!("the header's tag {t} lists {} files, not {n}", v.len()),
                ));
            }
            Ok(v)
        };
        let nums = |t: u32, default: u64| -> Result<Vec<u64>, RpmError> {
            let v = h.ints(t, f)?.unwrap_or_else(|| vec![default; n]);
            if v.len() != n {
                return Err(err(
                    f,
                    format!("the header's tag {t} lists {} files, not {n}", v.len()),
                ));
            }
            Ok(v)
        };
        let modes = nums(tag::FILEMODES, 0o100644)?;
        let flags = nums(tag::FILEFLAGS, 0)?;
        let sizes = if h.has(tag::LONGFILESIZES) {
            nums(tag::LONGFILESIZES, 0)?
        } else {
            nums(tag::FILESIZES, 0)?
        };
        let mtimes = self.file_mtimes(n)?;
        let users = list(tag::FILEUSERNAME)?;
        let groups = list(tag::FILEGROUPNAME)?;
        let links = list(tag::FILELINKTOS)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let user = if users[i].is_empty() {
                "root".into()
            } else {
                users[i].clone()
            };
            let group = if groups[i].is_empty() {
                "root".into()
            } else {
                groups[i].clone()
            };
            out.push(FileInfo {
                path: paths[i].clone(),
                mode: modes[i] as u32,
                user,
                group,
                flags: flags[i] as u32,
                link_to: links[i].clone(),
                size: sizes[i],
                mtime: mtimes[i],
            });
        }
        Ok(out)
    }

    /// The modification time of each of the header's `n` files, `None`
    /// each when the header records none.
    fn file_mtimes(&self, n: usize) -> Result<Vec<Option<u64>>, RpmError> {
        match self.header.ints(tag::FILEMTIMES, &self.file)? {
            Some(v) if v.len() == n => Ok(v.into_iter().map(Some).collect()),
            Some(v) => Err(err(
                &self.file,
                format!("the header's file times list {} files, not {n}", v.len()),
            )),
            None => Ok(vec![None; n]),
        }
    }

    /// The payload's decompressed cpio stream. Its compressed bytes are
    /// hashed while read; [`Payload::finish`] checks them against the
    /// header's payload digest.
    pub fn payload(self) -> Result<Payload, RpmError> {
        let f = self.file.clone();
        if let Some(fmt) = self.header.string(tag::PAYLOADFORMAT, &f)? {
            if fmt != "cpio" {
                return Err(err(&f, format!("payload format {fmt:?} is not cpio")));
            }
        }
        let digest = match self.header.strings(tag::PAYLOADDIGEST, &f)? {
            Some(d) => {
                let algo = self
                    .header
                    .ints(tag::PAYLOADDIGESTALGO, &f)?
                    .and_then(|v| v.first().copied())
                    .unwrap_or(8);
                // 8 is SHA256 in rpm's hash algorithm numbering.
                if algo == 8 {
                    d.into_iter().next()
                } else {
                    None
                }
            }
            None => None,
        };
        let compressor = self
            .header
            .string(tag::PAYLOADCOMPRESSOR, &f)?
            .unwrap_or_else(|| "gzip".into());
        let hashing = Hashing {
            inner: self.payload,
            hasher: Sha256::new(),
        };
        let shared = std::rc::Rc::new(std::cell::RefCell::new(Some(hashing)));
        let reader = Shared(shared.clone());
        let decoder: Box<dyn Read> = match compressor.as_str() {
            "gzip" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            "xz" | "lzma" => nodeimg_image::limits::xz_decoder(reader),
            "zstd" => Box::new(
                zstd::stream::read::Decoder::new(reader)
                    .map_err(|e| io_err(&f, "zstd payload", e))?,
            ),
            "identity" => Box::new(reader),
            other => {
                return Err(err(
                    &f,
                    format!("payload compression {other:?} is not supported (gzip, xz, zstd)"),
                ))
            }
        };
        Ok(Payload {
            cpio: decoder,
            hashing: shared,
            digest,
            file: f,
        })
    }
}

struct Hashing {
    inner: BufReader<Box<dyn Read>>,
    hasher: Sha256,
}

/// The compressed stream, shared by the decoder and [`Payload::finish`].
struct Shared(std::rc::Rc<std::cell::RefCell<Option<Hashing>>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut g = self.0.borrow_mut();
        let Some(h) = g.as_mut() else {
            return Ok(0);
        };
        let n = h.inner.read(buf)?;
        h.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A cpio entry of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// The path, absolute (`./usr/bin/x` becomes `/usr/bin/x`).
    pub path: String,
    /// `st_mode`.
    pub mode: u32,
    /// Inode number (hardlinks share it).
    pub ino: u32,
    /// Link count.
    pub nlink: u32,
    /// Size of the data that follows.
    pub size: u64,
}

/// The decompressed payload, read entry by entry.
pub struct Payload {
    cpio: Box<dyn Read>,
    hashing: std::rc::Rc<std::cell::RefCell<Option<Hashing>>>,
    digest: Option<String>,
    file: String,
}

impl Payload {
    /// The next entry's header, or None at the trailer. The entry's data
    /// must then be read with [`Payload::data`] (exactly `size` bytes).
    pub fn next_entry(&mut self) -> Result<Option<CpioEntry>, RpmError> {
        let f = self.file.clone();
        let mut h = [0u8; 110];
        read_exact(&mut self.cpio, &mut h, &f, "payload")?;
        if &h[..6] == b"07070X" {
            return Err(err(
                &f,
                "the payload uses rpm's large-file cpio format, which is not supported",
            ));
        }
        if &h[..6] != b"070701" {
            return Err(err(&f, "the payload is not a cpio (newc) archive"));
        }
        let field = |i: usize| -> Result<u32, RpmError> {
            let s = std::str::from_utf8(&h[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok());
            s.ok_or_else(|| err(&f, "a cpio header field is not hex"))
        };
        let (ino, mode, nlink, size, namesize) =
            (field(0)?, field(1)?, field(4)?, field(6)?, field(11)?);
        if namesize == 0 || namesize > 4096 {
            return Err(err(&f, "a cpio entry's name is out of bounds"));
        }
        let mut name = vec![0u8; namesize as usize];
        read_exact(&mut self.cpio, &mut name, &f, "payload")?;
        self.skip_pad(110 + namesize as u64)?;
        if name.last() != Some(&0) {
            return Err(err(&f, "a cpio entry's name is not terminated"));
        }
        name.pop();
        let name =
            String::from_utf8(name).map_err(|_| err(&f, "a cpio entry's name is not UTF-8"))?;
        if name == "TRAILER!!!" {
            return Ok(None);
        }
        let rel = name.trim_start_matches("./").trim_start_matches('/');
        Ok(Some(CpioEntry {
            path: format!("/{rel}"),
            mode,
            ino,
            nlink,
            size: u64::from(size),
        }))
    }

    fn skip_pad(&mut self, len: u64) -> Result<(), RpmError> {
        let pad = ((4 - len % 4) % 4) as usize;
        let mut b = [0u8; 4];
        let f = self.file.clone();
        read_exact(&mut self.cpio, &mut b[..pad], &f, "payload")
    }

    /// Copies the entry's data to `out` (streamed), then skips its padding.
    pub fn data(&mut self, e: &CpioEntry, out: &mut dyn io::Write) -> Result<(), RpmError> {
        let f = self.file.clone();
        let n = io::copy(&mut (&mut self.cpio).take(e.size), out)
            .map_err(|x| io_err(&f, e.path.as_str(), x))?;
        if n != e.size {
            return Err(err(&f, format!("truncated in the payload at {}", e.path)));
        }
        self.skip_pad(e.size)
    }

    /// Reads the rest of the compressed payload and checks its digest.
    pub fn finish(mut self) -> Result<(), RpmError> {
        let f = self.file.clone();
        io::copy(&mut self.cpio, &mut io::sink()).map_err(|e| io_err(&f, "payload", e))?;
        drop(self.cpio);
        let Some(mut h) = self.hashing.borrow_mut().take() else {
            return Ok(());
        };
        io::copy(&mut h.inner, &mut h.hasher).map_err(|e| io_err(&f, "payload", e))?;
        if let Some(want) = &self.digest {
            let got = hex::encode(h.hasher.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(err(
                    &f,
                    format!("the payload's SHA256 is {got}, the header says {want}: the package was modified"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testutil;

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join("x.rpm");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_headers_files_and_payload() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        let bytes = testutil::rpm("demo", "noarch", tags, &payload, None);
        let rpm = RpmFile::open(&write(t.path(), &bytes), "demo.rpm").unwrap();
        let (name, evr, arch) = rpm.nevra().unwrap();
        assert_eq!(
            (name.as_str(), evr.to_string().as_str(), arch.as_str()),
            ("demo", "1.0-1", "noarch")
        );
        assert!(rpm.header_signature().unwrap().is_none());
        assert!(rpm.has_payload_digest());
        let files = rpm.files().unwrap();
        assert_eq!(files.len(), 5);
        assert_eq!(
            files[1],
            FileInfo {
                path: "/etc/demo/demo.conf".into(),
                mode: 0o100640,
                user: "root".into(),
                group: "docker".into(),
                flags: 17,
                link_to: String::new(),
                size: 4,
                mtime: Some(1_700_000_000),
            }
        );
        assert_eq!(files[4].link_to, "demo");
        let mut p = rpm.payload().unwrap();
        let mut seen = Vec::new();
        while let Some(e) = p.next_entry().unwrap() {
            let mut data = Vec::new();
            p.data(&e, &mut data).unwrap();
            seen.push((e.path, e.nlink, data));
        }
        assert_eq!(
            seen[1],
            ("/etc/demo/demo.conf".to_string(), 1, b"a=1\n".to_vec())
        );
        assert_eq!(seen[2], ("/usr/bin/demo-hard".to_string(), 2, Vec::new()));
        p.finish().unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        let good = testutil::rpm("demo", "x86_64", tags, &payload, None);
        // A byte of the header (the name) changed: its SHA256 no longer matches.
        let mut bad = good.clone();
        let at = bad.windows(5).position(|w| w == b"demo\0").unwrap();
        bad[at] = b'x';
        let e = RpmFile::open(&write(t.path(), &bad), "demo.rpm").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("demo.rpm: the header's SHA256 is"),
            "{e}"
        );
        // A byte of the compressed payload changed (the gzip trailer's size
        // field, so the stream still decodes): the payload digest catches it.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x01;
        let rpm = RpmFile::open(&write(t.path(), &bad), "demo.rpm").unwrap();
        let mut p = rpm.payload().unwrap();
        while let Ok(Some(e)) = p.next_entry() {
            if p.data(&e, &mut std::io::sink()).is_err() {
                break;
            }
        }
        let e = p.finish().unwrap_err();
        assert!(e.to_string().contains("demo.rpm"), "{e}");
    }

    #[test]
    fn malformed_files_give_errors_never_panics() {
        let t = tempfile::tempdir().unwrap();
        let (tags, payload) = testutil::demo_files();
        let good = testutil::rpm("demo", "x86_64", tags, &payload, None);
        let e = RpmFile::open(&write(t.path(), b"PK\x03\x04"), "z.rpm").unwrap_err();
        assert_eq!(e.to_string(), "z.rpm: truncated in the lead");
        let mut lead = good.clone();
        lead[0] = 0;
        let e = RpmFile::open(&write(t.path(), &lead), "z.rpm").unwrap_err();
        assert_eq!(e.to_string(), "z.rpm: not an rpm package (no lead magic)");
        // A file that cannot be opened: the I/O error stays the cause.
        let missing = t.path().join("missing.rpm");
        let e = RpmFile::open(&missing, "m.rpm").unwrap_err();
        let source = crate::testutil::io_cause(&e);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!("m.rpm: opening {}: {source}", missing.display())
        );
        // Every truncation, and every single-byte change in the headers,
        // is an error or a readable package: never a panic.
        let path = t.path().join("cut.rpm");
        for cut in (0..good.len()).step_by(7) {
            std::fs::write(&path, &good[..cut]).unwrap();
            if let Ok(rpm) = RpmFile::open(&path, "cut.rpm") {
                let _ = rpm.files();
                if let Ok(mut p) = rpm.payload() {
                    while let Ok(Some(e)) = p.next_entry() {
                        if p.data(&e, &mut std::io::sink()).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        for i in 96..good.len().min(600) {
            let mut b = good.clone();
            b[i] ^= 0xa5;
            std::fs::write(&path, &b).unwrap();
            if let Ok(rpm) = RpmFile::open(&path, "flip.rpm") {
                let _ = rpm.nevra();
                let _ = rpm.files();
                let _ = rpm.header_signature();
            }
        }
    }
}
