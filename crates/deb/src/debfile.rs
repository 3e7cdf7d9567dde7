//! Reading a `.deb` as a stream: the `ar` container, the control files, and the entries of
//! `data.tar` one at a time, never holding the data member in memory.
//!
//! Layout (deb(5)): `!<arch>\n`, then `debian-binary` ("2.0\n"), `control.tar[.gz|.xz|.zst]`,
//! `data.tar[.gz|.xz|.zst|.lzma]`, in this order; members whose name starts with `_` may appear
//! between them and are skipped, as dpkg does.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// Largest decompressed control member accepted.
pub(crate) const MAX_CONTROL_SIZE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{file}: not a Debian package: {reason}")]
    NotDeb { file: String, reason: String },
    #[error("{file}: malformed ar container: {reason}")]
    Ar { file: String, reason: String },
    #[error("{file}: unsupported package format version {version:?} (only 2.x is known)")]
    Version { file: String, version: String },
    #[error("{file}: unexpected member {member:?} {reason}")]
    Member {
        file: String,
        member: String,
        reason: String,
    },
    #[error(
        "{file}: {member}: unsupported compression {suffix:?} (gz, xz, zst, lzma or none are read)"
    )]
    Compression {
        file: String,
        member: String,
        suffix: String,
    },
    #[error("{file}: {member}: {reason}")]
    Tar {
        file: String,
        member: String,
        reason: String,
    },
    /// A path in a member that is refused.
    #[error("{file}: {member}: {source}")]
    Path {
        file: String,
        member: String,
        #[source]
        source: PathError,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = DebError> = std::result::Result<T, E>;

/// Why a path in a member of a package is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path has a `..` component.
    #[error("{0:?}: a path with \"..\" is not allowed")]
    DotDot(String),
    /// The path is absolute.
    #[error("{0:?}: an absolute path is not allowed")]
    Absolute(String),
}

/// Why the `control` fields of a package cannot be read
/// ([`ControlFiles::fields`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlFieldsError {
    /// The package has no `control` file.
    #[error("no UTF-8 control file")]
    Missing,
    /// The `control` file is not UTF-8.
    #[error("no UTF-8 control file")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The `control` file is not one deb822 paragraph.
    #[error("{0}")]
    Fields(#[from] crate::repo::FieldError),
}

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";

struct ArHeader {
    name: String,
    size: u64,
}

/// Reads member headers and bodies of an `ar` archive in order.
struct ArReader<R> {
    inner: R,
    file: String,
    /// Bytes of the current member's body (plus padding) not yet consumed.
    pending: u64,
}

impl<R: Read> ArReader<R> {
    fn new(mut inner: R, file: &str) -> Result<Self> {
        let mut magic = [0u8; 8];
        read_exact_or(&mut inner, &mut magic, file, "the ar signature")?;
        if &magic != AR_MAGIC {
            return Err(DebError::NotDeb {
                file: file.to_string(),
                reason: "no \"!<arch>\" signature".into(),
            });
        }
        Ok(Self {
            inner,
            file: file.to_string(),
            pending: 0,
        })
    }

    fn ar_err(&self, reason: String) -> DebError {
        DebError::Ar {
            file: self.file.clone(),
            reason,
        }
    }

    /// Skips whatever is left of the current member and reads the next header.
    fn next_header(&mut self) -> Result<Option<ArHeader>> {
        if self.pending > 0 {
            let skipped = io::copy(&mut (&mut self.inner).take(self.pending), &mut io::sink())
                .map_err(|source| DebError::Io {
                    file: self.file.clone(),
                    source,
                })?;
            if skipped != self.pending {
                return Err(self.ar_err("truncated member".into()));
            }
            self.pending = 0;
        }
        let mut hdr = [0u8; 60];
        let mut got = 0;
        while got < hdr.len() {
            let n = self
                .inner
                .read(&mut hdr[got..])
                .map_err(|source| DebError::Io {
                    file: self.file.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(self.ar_err("truncated member header".into()));
        }
        if &hdr[58..60] != b"`\n" {
            return Err(self.ar_err("bad member header terminator".into()));
        }
        let name = std::str::from_utf8(&hdr[0..16])
            .map_err(|_| self.ar_err("member name is not ASCII".into()))?
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size_field = std::str::from_utf8(&hdr[48..58])
            .map_err(|_| self.ar_err(format!("member {name:?}: size is not ASCII")))?
            .trim();
        let size = size_field
            .parse::<u64>()
            .map_err(|_| self.ar_err(format!("member {name:?}: bad size {size_field:?}")))?;
        self.pending = size + (size & 1);
        Ok(Some(ArHeader { name, size }))
    }

    /// A reader over the current member's body; the padding byte is skipped by the next header.
    fn body(&mut self, size: u64) -> MemberReader<'_, R> {
        MemberReader {
            ar: self,
            remaining: size,
        }
    }
}

struct MemberReader<'a, R> {
    ar: &'a mut ArReader<R>,
    remaining: u64,
}

impl<R: Read> Read for MemberReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.ar.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive member is truncated",
            ));
        }
        self.remaining -= n as u64;
        self.ar.pending -= n as u64;
        Ok(n)
    }
}

/// Owning variant used for the data member, which outlives the borrow of [`ArReader`].
struct OwnedMember<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for OwnedMember<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "data member is truncated",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], file: &str, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            DebError::NotDeb {
                file: file.to_string(),
                reason: format!("too short for {what}"),
            }
        } else {
            DebError::Io {
                file: file.to_string(),
                source: e,
            }
        }
    })
}

fn decoder<'a, R: Read + 'a>(
    reader: R,
    member: &str,
    prefix: &str,
    file: &str,
) -> Result<Box<dyn Read + 'a>> {
    let suffix = &member[prefix.len()..];
    Ok(match suffix {
        "" => Box::new(reader),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        ".xz" => nodeimg_image::limits::xz_decoder(reader),
        ".lzma" => nodeimg_image::limits::lzma_decoder(reader),
        ".zst" => {
            Box::new(
                zstd::stream::read::Decoder::new(reader).map_err(|e| DebError::Tar {
                    file: file.to_string(),
                    member: member.to_string(),
                    reason: format!("cannot start the zstd decoder: {e}"),
                })?,
            )
        }
        _ => {
            return Err(DebError::Compression {
                file: file.to_string(),
                member: member.to_string(),
                suffix: suffix.to_string(),
            })
        }
    })
}

/// One file of `control.tar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// The files of `control.tar`, keyed by name without the leading `./` (`control`, `md5sums`,
/// `conffiles`, `preinst`, `postinst`, `prerm`, `postrm`, `config`, `triggers`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlFiles {
    pub files: BTreeMap<String, ControlFile>,
}

impl ControlFiles {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|f| f.contents.as_slice())
    }

    /// The `control` file's text.
    pub(crate) fn control_text(&self) -> Option<&str> {
        self.get("control")
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The `control` fields in file order (continuation lines joined with '\n').
    pub fn fields(&self) -> std::result::Result<Vec<(String, String)>, ControlFieldsError> {
        let bytes = self.get("control").ok_or(ControlFieldsError::Missing)?;
        let text = std::str::from_utf8(bytes).map_err(ControlFieldsError::NotUtf8)?;
        Ok(super::repo::parse_fields(text)?)
    }

    /// One `control` field, by case-insensitive name.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .ok()?
            .into_iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The maintainer scripts present, in the order dpkg lists them.
    pub fn maintainer_scripts(&self) -> Vec<&str> {
        ["preinst", "postinst", "prerm", "postrm", "config"]
            .into_iter()
            .filter(|s| self.files.contains_key(*s))
            .collect()
    }

    /// The conffiles, one absolute path each (the `remove-on-upgrade` flag is kept in the line).
    pub fn conffiles(&self) -> Vec<String> {
        self.get("conffiles")
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The kind of a data.tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A hard link to an earlier entry (`link_target`).
    Hardlink,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// A streaming view of a `.deb`: the control files are read at open; the data entries are
/// read on demand.
pub struct Deb<'r> {
    file: String,
    version: String,
    control: ControlFiles,
    data_member: String,
    data: tar::Archive<nodeimg_image::limits::BoundedTar<Box<dyn Read + 'r>>>,
}

impl std::fmt::Debug for Deb<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deb")
            .field("file", &self.file)
            .field("version", &self.version)
            .field("data_member", &self.data_member)
            .finish_non_exhaustive()
    }
}

impl<'r> Deb<'r> {
    /// Reads the container up to the start of `data.tar`. `file` names the package in errors.
    pub fn open<R: Read + 'r>(reader: R, file: &str) -> Result<Self> {
        let mut ar = ArReader::new(reader, file)?;
        let member_err = |member: &str, reason: &str| DebError::Member {
            file: file.to_string(),
            member: member.to_string(),
            reason: reason.to_string(),
        };

        // debian-binary
        let Some(first) = ar.next_header()? else {
            return Err(DebError::NotDeb {
                file: file.to_string(),
                reason: "empty archive".into(),
            });
        };
        if first.name != "debian-binary" {
            return Err(DebError::NotDeb {
                file: file.to_string(),
                reason: format!("first member is {:?}, not \"debian-binary\"", first.name),
            });
        }
        if first.size > 64 {
            return Err(member_err("debian-binary", "is too large"));
        }
        let mut vbytes = Vec::new();
        ar.body(first.size)
            .read_to_end(&mut vbytes)
            .map_err(|source| DebError::Io {
                file: file.to_string(),
                source,
            })?;
        let version = String::from_utf8_lossy(&vbytes).trim_end().to_string();
        let major = version.split('.').next().unwrap_or("");
        if major != "2" || !version.contains('.') {
            return Err(DebError::Version {
                file: file.to_string(),
                version,
            });
        }

        // control.tar
        let control_hdr =
            next_non_underscore(&mut ar)?.ok_or_else(|| member_err("control.tar", "is missing"))?;
        if !control_hdr.name.starts_with("control.tar") {
            return Err(member_err(
                &control_hdr.name,
                "where control.tar was expected (second member)",
            ));
        }
        let control = {
            let body = ar.body(control_hdr.size);
            let dec = decoder(body, &control_hdr.name, "control.tar", file)?;
            read_control(dec.take(MAX_CONTROL_SIZE + 1), &control_hdr.name, file)?
        };
        if !control.files.contains_key("control") {
            return Err(member_err(&control_hdr.name, "has no control file"));
        }

        // data.tar
        let data_hdr =
            next_non_underscore(&mut ar)?.ok_or_else(|| member_err("data.tar", "is missing"))?;
        if !data_hdr.name.starts_with("data.tar") {
            return Err(member_err(
                &data_hdr.name,
                "where data.tar was expected (after control.tar)",
            ));
        }
        let ArReader { inner, .. } = ar;
        let body = OwnedMember {
            inner,
            remaining: data_hdr.size,
        };
        let dec = decoder(body, &data_hdr.name, "data.tar", file)?;
        Ok(Self {
            file: file.to_string(),
            version,
            control,
            data_member: data_hdr.name,
            data: nodeimg_image::limits::tar_archive(dec),
        })
    }

    /// The `debian-binary` version ("2.0").
    pub fn format_version(&self) -> &str {
        &self.version
    }

    pub fn control(&self) -> &ControlFiles {
        &self.control
    }

    /// The data member's name (`data.tar.xz`, ...).
    pub fn data_member(&self) -> &str {
        &self.data_member
    }

    /// The data.tar entries in archive order. Each entry must be read (or dropped) before the
    /// next one is requested.
    pub fn entries(&mut self) -> Result<DataEntries<'_, 'r>> {
        let member = self.data_member.clone();
        let inner = self.data.entries().map_err(|e| DebError::Tar {
            file: self.file.clone(),
            member: member.clone(),
            reason: e.to_string(),
        })?;
        Ok(DataEntries {
            file: self.file.clone(),
            member,
            inner,
            done: false,
        })
    }
}

/// The systemd unit files (see [`nodeimg_layers::systemd::unit_file_name`])
/// the `.deb` `reader` reads ships, as image paths (`/lib/systemd/system/x.service`),
/// sorted; `file` names it in errors.
pub fn unit_files<'r>(reader: impl Read + 'r, file: &str) -> Result<Vec<String>> {
    let mut deb = Deb::open(reader, file)?;
    let mut out = Vec::new();
    for e in deb.entries()? {
        let path = format!("/{}", e?.path);
        if nodeimg_layers::systemd::unit_file_name(&path).is_some() {
            out.push(path);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn next_non_underscore<R: Read>(ar: &mut ArReader<R>) -> Result<Option<ArHeader>> {
    loop {
        match ar.next_header()? {
            Some(h) if h.name.starts_with('_') => continue,
            other => return Ok(other),
        }
    }
}

fn read_control(reader: impl Read, member: &str, file: &str) -> Result<ControlFiles> {
    let tar_err = |reason: String| DebError::Tar {
        file: file.to_string(),
        member: member.to_string(),
        reason,
    };
    let mut archive = nodeimg_image::limits::tar_archive(reader);
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(|e| tar_err(e.to_string()))? {
        let mut entry = entry.map_err(|e| tar_err(e.to_string()))?;
        let raw = entry.path().map_err(|e| tar_err(e.to_string()))?;
        let raw = raw
            .to_str()
            .ok_or_else(|| tar_err("a path is not UTF-8".into()))?
            .to_string();
        let name = normalize_path(&raw).map_err(|source| DebError::Path {
            file: file.to_string(),
            member: member.to_string(),
            source,
        })?;
        match entry.header().entry_type() {
            tar::EntryType::Directory if name.is_empty() => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                return Err(tar_err(format!(
                    "{raw:?} is a {other:?}, only plain files belong in control.tar"
                )))
            }
        }
        if name.is_empty() || name.contains('/') {
            return Err(tar_err(format!(
                "{raw:?}: control files must be at the top of control.tar"
            )));
        }
        let mode = entry.header().mode().map_err(|e| tar_err(e.to_string()))?;
        let mut contents = Vec::new();
        entry
            .read_to_end(&mut contents)
            .map_err(|e| tar_err(e.to_string()))?;
        total += contents.len() as u64;
        if total > MAX_CONTROL_SIZE {
            return Err(tar_err(format!("larger than {MAX_CONTROL_SIZE} bytes")));
        }
        if files
            .insert(name.clone(), ControlFile { mode, contents })
            .is_some()
        {
            return Err(tar_err(format!("{name} appears twice")));
        }
    }
    Ok(ControlFiles { files })
}

/// `./usr/bin/x` -> `usr/bin/x`, `./` -> ``; refuses `..` and absolute paths.
fn normalize_path(raw: &str) -> std::result::Result<String, PathError> {
    let mut parts = Vec::new();
    for comp in raw.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(PathError::DotDot(raw.to_string())),
            c => parts.push(c),
        }
    }
    if raw.starts_with('/') && !parts.is_empty() {
        return Err(PathError::Absolute(raw.to_string()));
    }
    Ok(parts.join("/"))
}

/// Iterator over the entries of `data.tar`.
pub struct DataEntries<'a, 'r> {
    file: String,
    member: String,
    inner: tar::Entries<'a, nodeimg_image::limits::BoundedTar<Box<dyn Read + 'r>>>,
    done: bool,
}

/// One entry of `data.tar`; read it for a regular file's contents.
pub struct DataEntry<'a, 'r> {
    /// Relative to the root, no leading `./` or `/`; empty for the root directory itself.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Owner names from the tar header when present (dpkg prefers them to the ids).
    pub uname: Option<String>,
    pub gname: Option<String>,
    pub mtime: u64,
    /// Size of the contents (0 for anything but a regular file).
    pub size: u64,
    /// A symlink's target as written, or a hard link's target path normalised like `path`.
    pub link_target: Option<String>,
    reader: tar::Entry<'a, nodeimg_image::limits::BoundedTar<Box<dyn Read + 'r>>>,
}

impl std::fmt::Debug for DataEntry<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataEntry")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("size", &self.size)
            .field("link_target", &self.link_target)
            .finish_non_exhaustive()
    }
}

impl Read for DataEntry<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<'a, 'r> Iterator for DataEntries<'a, 'r> {
    type Item = Result<DataEntry<'a, 'r>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.inner.next()?;
        let out = self.convert(item);
        if out.is_err() {
            self.done = true;
        }
        Some(out)
    }
}

impl<'a, 'r> DataEntries<'a, 'r> {
    /// A refused path of the data member.
    fn path_err(&self, source: PathError) -> DebError {
        DebError::Path {
            file: self.file.clone(),
            member: self.member.clone(),
            source,
        }
    }

    fn convert(
        &self,
        item: io::Result<tar::Entry<'a, nodeimg_image::limits::BoundedTar<Box<dyn Read + 'r>>>>,
    ) -> Result<DataEntry<'a, 'r>> {
        let err = |reason: String| DebError::Tar {
            file: self.file.clone(),
            member: self.member.clone(),
            reason,
        };
        let entry = item.map_err(|e| err(e.to_string()))?;
        nodeimg_image::limits::check_tar_entry(&entry).map_err(|e| err(e.to_string()))?;
        let raw_path = {
            let p = entry.path().map_err(|e| err(e.to_string()))?;
            p.to_str()
                .ok_or_else(|| err(format!("the path {p:?} is not UTF-8")))?
                .to_string()
        };
        let path = normalize_path(&raw_path).map_err(|e| self.path_err(e))?;
        let h = entry.header();
        let ctx = |e: io::Error| err(format!("{raw_path:?}: {e}"));
        let mode = h.mode().map_err(ctx)? & 0o7777;
        let uid = h.uid().map_err(ctx)?;
        let gid = h.gid().map_err(ctx)?;
        let mtime = h.mtime().map_err(ctx)?;
        let uname = h
            .username()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let gname = h
            .groupname()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let (kind, size, link_target) = self.entry_kind(&entry, &raw_path)?;
        if path.is_empty() && kind != EntryKind::Dir {
            return Err(err(format!("{raw_path:?}: the root must be a directory")));
        }
        Ok(DataEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            size,
            link_target,
            reader: entry,
        })
    }

    /// The kind of `entry` (at `raw_path`), its size and its link target.
    fn entry_kind(
        &self,
        entry: &tar::Entry<'a, nodeimg_image::limits::BoundedTar<Box<dyn Read + 'r>>>,
        raw_path: &str,
    ) -> Result<(EntryKind, u64, Option<String>)> {
        let err = |reason: String| DebError::Tar {
            file: self.file.clone(),
            member: self.member.clone(),
            reason,
        };
        let h = entry.header();
        let ctx = |e: io::Error| err(format!("{raw_path:?}: {e}"));
        let link = || -> Result<String> {
            let l = entry
                .link_name()
                .map_err(|e| err(format!("{raw_path:?}: {e}")))?
                .ok_or_else(|| err(format!("{raw_path:?}: link without a target")))?;
            Ok(l.to_str()
                .ok_or_else(|| err(format!("{raw_path:?}: link target is not UTF-8")))?
                .to_string())
        };
        let device = || -> Result<(u32, u32)> {
            let major = h.device_major().map_err(ctx)?.unwrap_or(0);
            let minor = h.device_minor().map_err(ctx)?.unwrap_or(0);
            Ok((major, minor))
        };
        let mut size = 0;
        let mut link_target = None;
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                size = entry.size();
                EntryKind::File
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => {
                link_target = Some(link()?);
                EntryKind::Symlink
            }
            tar::EntryType::Link => {
                let target = link()?;
                link_target = Some(normalize_path(&target).map_err(|e| self.path_err(e))?);
                EntryKind::Hardlink
            }
            tar::EntryType::Char => {
                let (major, minor) = device()?;
                EntryKind::CharDevice { major, minor }
            }
            tar::EntryType::Block => {
                let (major, minor) = device()?;
                EntryKind::BlockDevice { major, minor }
            }
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => {
                return Err(err(format!(
                    "{raw_path:?}: unsupported tar entry type {other:?}"
                )))
            }
        };
        Ok((kind, size, link_target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    const CONTROL: &str = "Package: containerd.io\nVersion: 1.2.13-2\nArchitecture: amd64\n\
        Maintainer: Test <t@example.invalid>\nInstalled-Size: 1\nDepends: libc6 (>= 2.14), libseccomp2 (>= 2.4.1)\n\
        Provides: containerd, runc\nDescription: An open and reliable container runtime\n \
        containerd is a daemon.\n .\n It manages containers.\n";

    struct Row {
        path: String,
        kind: EntryKind,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
        link: Option<String>,
        contents: Vec<u8>,
    }

    fn read_all(deb: &mut Deb<'_>) -> Vec<Row> {
        let mut rows = Vec::new();
        for e in deb.entries().unwrap() {
            let mut e = e.unwrap();
            let mut contents = Vec::new();
            e.read_to_end(&mut contents).unwrap();
            rows.push(Row {
                path: e.path.clone(),
                kind: e.kind.clone(),
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                link: e.link_target.clone(),
                contents,
            });
        }
        rows
    }

    fn find<'a>(rows: &'a [Row], path: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} missing"))
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const LONG: &str = "usr/share/doc/containerd.io/a-rather-long-directory-name-to-exceed-the-classic-tar-limit/and-a-file-name-that-is-long-too.txt";

    /// Builds a package tree and returns its directory.
    fn package_tree(root: &Path) -> std::path::PathBuf {
        let pkg = root.join("pkg");
        for d in ["DEBIAN", "usr/bin", "etc/containerd", "usr/sbin"] {
            std::fs::create_dir_all(pkg.join(d)).unwrap();
        }
        std::fs::create_dir_all(pkg.join(LONG).parent().unwrap()).unwrap();
        std::fs::write(pkg.join("DEBIAN/control"), CONTROL).unwrap();
        std::fs::write(
            pkg.join("DEBIAN/conffiles"),
            "/etc/containerd/config.toml\n",
        )
        .unwrap();
        std::fs::write(
            pkg.join("DEBIAN/md5sums"),
            "0123456789abcdef0123456789abcdef  usr/bin/containerd\n",
        )
        .unwrap();
        std::fs::write(pkg.join("DEBIAN/postinst"), "#!/bin/sh\nset -e\nexit 0\n").unwrap();
        chmod(&pkg.join("DEBIAN/postinst"), 0o755);
        std::fs::write(pkg.join("usr/bin/containerd"), b"\x7fELF binary").unwrap();
        chmod(&pkg.join("usr/bin/containerd"), 0o755);
        std::fs::hard_link(
            pkg.join("usr/bin/containerd"),
            pkg.join("usr/bin/containerd-hard"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../bin/containerd", pkg.join("usr/sbin/containerd")).unwrap();
        std::fs::write(pkg.join("usr/bin/suid"), b"s").unwrap();
        chmod(&pkg.join("usr/bin/suid"), 0o4755);
        std::fs::write(pkg.join("etc/containerd/config.toml"), "version = 2\n").unwrap();
        chmod(&pkg.join("etc/containerd/config.toml"), 0o640);
        std::fs::write(pkg.join(LONG), "long\n").unwrap();
        for d in [
            "",
            "DEBIAN",
            "usr",
            "usr/bin",
            "usr/sbin",
            "etc",
            "etc/containerd",
        ] {
            chmod(&pkg.join(d), 0o755);
        }
        pkg
    }

    fn dpkg_deb(root: &Path, compression: &str) -> Option<Vec<u8>> {
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            eprintln!("dpkg-deb not found: test skipped");
            return None;
        }
        let pkg = root.join("pkg");
        if !pkg.exists() {
            package_tree(root);
        }
        let out = root.join(format!("p-{compression}.deb"));
        let res = Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
            .arg(&pkg)
            .arg(&out)
            .output()
            .unwrap();
        if !res.status.success() {
            eprintln!(
                "dpkg-deb -Z{compression} failed ({}): test skipped",
                String::from_utf8_lossy(&res.stderr)
            );
            return None;
        }
        Some(std::fs::read(out).unwrap())
    }

    #[test]
    fn unit_files_are_the_entries_of_the_unit_folders() {
        let t = tempfile::tempdir().unwrap();
        let pkg = package_tree(t.path());
        for d in [
            "lib/systemd/system",
            "usr/lib/systemd/system/x.d",
            "etc/init",
        ] {
            std::fs::create_dir_all(pkg.join(d)).unwrap();
        }
        for f in [
            "lib/systemd/system/containerd.service",
            "usr/lib/systemd/system/getty@.service",
            "usr/lib/systemd/system/x.d/over.conf",
            "lib/systemd/system/README",
            "etc/init/containerd.service",
        ] {
            std::fs::write(pkg.join(f), "[Unit]\n").unwrap();
        }
        std::os::unix::fs::symlink(
            "containerd.service",
            pkg.join("lib/systemd/system/ctr.service"),
        )
        .unwrap();
        let Some(bytes) = dpkg_deb(t.path(), "xz") else {
            return;
        };
        let units = unit_files(&bytes[..], "containerd.io.deb").unwrap();
        assert_eq!(
            units,
            [
                "/lib/systemd/system/containerd.service",
                "/lib/systemd/system/ctr.service",
                "/usr/lib/systemd/system/getty@.service",
            ]
        );
        // A package without units: none.
        let t = tempfile::tempdir().unwrap();
        package_tree(t.path());
        let bytes = dpkg_deb(t.path(), "gzip").unwrap();
        assert!(unit_files(&bytes[..], "p.deb").unwrap().is_empty());
        // Not a .deb: an error, not a panic.
        assert!(unit_files(&b"garbage"[..], "g.deb").is_err());
    }

    fn check_round_trip(bytes: &[u8], data_member: &str) {
        // A plain Read (not Seek) is enough.
        struct OnlyRead<'a>(&'a [u8]);
        impl Read for OnlyRead<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }
        let mut deb = Deb::open(OnlyRead(bytes), "containerd.io.deb").unwrap();
        assert_eq!(deb.format_version(), "2.0");
        assert_eq!(deb.data_member(), data_member);
        let c = deb.control();
        assert_eq!(c.control_text(), Some(CONTROL));
        assert_eq!(c.field("package").as_deref(), Some("containerd.io"));
        assert_eq!(c.field("Version").as_deref(), Some("1.2.13-2"));
        assert_eq!(
            c.field("Description").as_deref(),
            Some("An open and reliable container runtime\ncontainerd is a daemon.\n.\nIt manages containers.")
        );
        assert_eq!(c.conffiles(), vec!["/etc/containerd/config.toml"]);
        assert_eq!(c.maintainer_scripts(), vec!["postinst"]);
        assert_eq!(c.files["postinst"].mode & 0o777, 0o755);
        assert_eq!(
            c.get("md5sums"),
            Some(&b"0123456789abcdef0123456789abcdef  usr/bin/containerd\n"[..])
        );
        let keys: Vec<&str> = c.files.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["conffiles", "control", "md5sums", "postinst"]);

        let rows = read_all(&mut deb);
        assert_eq!(rows[0].path, "");
        assert_eq!(rows[0].kind, EntryKind::Dir);
        let bin = find(&rows, "usr/bin/containerd");
        let hard = find(&rows, "usr/bin/containerd-hard");
        // One of the pair holds the data, the other is a hard link to it.
        let (file, link) = if bin.kind == EntryKind::File {
            (bin, hard)
        } else {
            (hard, bin)
        };
        assert_eq!(file.kind, EntryKind::File);
        assert_eq!(file.contents, b"\x7fELF binary");
        assert_eq!(file.size, 11);
        assert_eq!(file.mode, 0o755);
        assert_eq!((file.uid, file.gid), (0, 0));
        assert_eq!(link.kind, EntryKind::Hardlink);
        assert_eq!(link.link.as_deref(), Some(file.path.as_str()));
        let sym = find(&rows, "usr/sbin/containerd");
        assert_eq!(sym.kind, EntryKind::Symlink);
        assert_eq!(sym.link.as_deref(), Some("../bin/containerd"));
        assert_eq!(find(&rows, "usr/bin/suid").mode, 0o4755);
        let conf = find(&rows, "etc/containerd/config.toml");
        assert_eq!(conf.mode, 0o640);
        assert_eq!(conf.contents, b"version = 2\n");
        assert_eq!(find(&rows, LONG).contents, b"long\n");
        assert_eq!(find(&rows, "etc").kind, EntryKind::Dir);
        assert_eq!(find(&rows, "etc").mode, 0o755);
        assert!(rows.iter().all(|r| !r.path.starts_with("DEBIAN")));
    }

    #[test]
    fn dpkg_deb_xz_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(bytes) = dpkg_deb(tmp.path(), "xz") else {
            return;
        };
        check_round_trip(&bytes, "data.tar.xz");
    }

    #[test]
    fn dpkg_deb_gzip_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(bytes) = dpkg_deb(tmp.path(), "gzip") else {
            return;
        };
        check_round_trip(&bytes, "data.tar.gz");
    }

    #[test]
    fn dpkg_deb_zstd_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(bytes) = dpkg_deb(tmp.path(), "zstd") else {
            return;
        };
        check_round_trip(&bytes, "data.tar.zst");
    }

    #[test]
    fn dpkg_deb_none_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(bytes) = dpkg_deb(tmp.path(), "none") else {
            return;
        };
        check_round_trip(&bytes, "data.tar");
    }

    // Hand-made containers for the refusals (no external tool needed).

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            let hdr = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                "100644",
                data.len()
            );
            assert_eq!(hdr.len(), 60);
            out.extend_from_slice(hdr.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn control_tar() -> Vec<u8> {
        gz(&tar_of(&[("./control", CONTROL.as_bytes())]))
    }

    #[test]
    fn hand_made_zstd_deb_with_extra_member_reads() {
        let data = zstd::encode_all(&tar_of(&[("./usr/bin/x", b"hello")])[..], 3).unwrap();
        let ctl = control_tar();
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"sig"),
            ("control.tar.gz", &ctl),
            ("data.tar.zst", &data),
        ]);
        let mut deb = Deb::open(&bytes[..], "x.deb").unwrap();
        let rows = read_all(&mut deb);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].path, "usr/bin/x");
        assert_eq!(rows[0].contents, b"hello");
    }

    fn open_err(bytes: &[u8]) -> DebError {
        Deb::open(bytes, "bad.deb").unwrap_err()
    }

    #[test]
    fn malformed_packages_are_refused() {
        let ctl = control_tar();
        let data = gz(&tar_of(&[("./usr/bin/x", b"hello")]));

        let err = open_err(b"PK\x03\x04 zip file");
        assert!(
            err.to_string().starts_with("bad.deb: not a Debian package"),
            "{err}"
        );

        let err = open_err(&ar(&[("control.tar.gz", &ctl)]));
        assert!(
            err.to_string()
                .contains("first member is \"control.tar.gz\""),
            "{err}"
        );

        let err = open_err(&ar(&[
            ("debian-binary", b"3.0\n"),
            ("control.tar.gz", &ctl),
        ]));
        assert!(
            matches!(err, DebError::Version { ref version, .. } if version == "3.0"),
            "{err}"
        );

        let err = open_err(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("data.tar.gz", &data),
            ("control.tar.gz", &ctl),
        ]));
        assert!(
            matches!(err, DebError::Member { ref member, .. } if member == "data.tar.gz"),
            "{err}"
        );

        let err = open_err(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &ctl),
        ]));
        assert!(err.to_string().contains("data.tar"), "{err}");

        let err = open_err(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.bz3", &ctl),
        ]));
        assert!(
            matches!(err, DebError::Compression { ref suffix, .. } if suffix == ".bz3"),
            "{err}"
        );

        let no_control = gz(&tar_of(&[("./md5sums", b"")]));
        let err = open_err(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &no_control),
            ("data.tar.gz", &data),
        ]));
        assert!(err.to_string().contains("has no control file"), "{err}");

        // A corrupted control member.
        let mut bad_ctl = ctl.clone();
        let mid = bad_ctl.len() / 2;
        bad_ctl[mid] ^= 0xff;
        let err = open_err(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &bad_ctl),
            ("data.tar.gz", &data),
        ]));
        assert!(matches!(err, DebError::Tar { .. }), "{err}");

        // A bad ar header.
        let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
        bytes[8 + 58] = b'x';
        let err = open_err(&bytes);
        assert!(matches!(err, DebError::Ar { .. }), "{err}");
    }

    #[test]
    fn truncated_or_hostile_data_is_refused_while_iterating() {
        let ctl = control_tar();
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let data = gz(&tar_of(&[("./usr/bin/x", &big[..]), ("./usr/bin/y", b"y")]));
        let mut bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &ctl),
            ("data.tar.gz", &data),
        ]);
        bytes.truncate(bytes.len() - data.len() / 2);
        let mut deb = Deb::open(&bytes[..], "cut.deb").unwrap();
        let mut failed = false;
        for e in deb.entries().unwrap() {
            match e {
                Ok(mut e) => {
                    let mut sink = Vec::new();
                    if e.read_to_end(&mut sink).is_err() {
                        failed = true;
                        break;
                    }
                }
                Err(err) => {
                    assert!(
                        err.to_string().starts_with("cut.deb: data.tar.gz:"),
                        "{err}"
                    );
                    failed = true;
                }
            }
        }
        assert!(failed, "a truncated data member must not read cleanly");

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..", so write the name bytes directly.
        h.as_old_mut().name[..14].copy_from_slice(b"./../etc/evil\0");
        h.set_cksum();
        b.append(&h, &b"a"[..]).unwrap();
        let data = gz(&b.into_inner().unwrap());
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &ctl),
            ("data.tar.gz", &data),
        ]);
        let mut deb = Deb::open(&bytes[..], "evil.deb").unwrap();
        let err = deb.entries().unwrap().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("\"..\" is not allowed"), "{err}");
        assert_eq!(
            err.to_string(),
            "evil.deb: data.tar.gz: \"./../etc/evil\": a path with \"..\" is not allowed"
        );
        let cause = std::error::Error::source(&err).and_then(|c| c.downcast_ref::<PathError>());
        assert_eq!(cause, Some(&PathError::DotDot("./../etc/evil".into())));
    }

    /// Counts the bytes taken from the underlying reader.
    struct Counting<'a> {
        inner: &'a [u8],
        taken: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken.set(self.taken.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn data_member_is_streamed_not_buffered() {
        let big = vec![7u8; 8 << 20];
        let data = tar_of(&[("./usr/share/big", &big[..]), ("./usr/share/small", b"s")]);
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control_tar()),
            ("data.tar", &data),
        ]);
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = Counting {
            inner: &bytes,
            taken: taken.clone(),
        };
        let mut deb = Deb::open(reader, "big.deb").unwrap();
        let mut entries = deb.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path, "usr/share/big");
        assert_eq!(first.size, 8 << 20);
        // Only the headers so far, not the 8 MiB body.
        assert!(
            taken.get() < 1 << 20,
            "read {} bytes before the contents",
            taken.get()
        );
        let mut chunk = [0u8; 4096];
        first.read_exact(&mut chunk).unwrap();
        assert_eq!(chunk, [7u8; 4096]);
        assert!(
            taken.get() < 1 << 20,
            "read {} bytes for one chunk",
            taken.get()
        );
        drop(first);
        let second = entries.next().unwrap().unwrap();
        assert_eq!(second.path, "usr/share/small");
        assert!(entries.next().is_none());
    }

    #[test]
    fn paths_normalise() {
        assert_eq!(normalize_path("./usr/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(normalize_path("./").unwrap(), "");
        assert_eq!(normalize_path("usr//lib/").unwrap(), "usr/lib");
        assert!(normalize_path("/etc/passwd").is_err());
        assert!(normalize_path("usr/../../x").is_err());
        let e = normalize_path("/etc/passwd").unwrap_err();
        assert_eq!(e, PathError::Absolute("/etc/passwd".into()));
        assert_eq!(
            e.to_string(),
            "\"/etc/passwd\": an absolute path is not allowed"
        );
        assert_eq!(
            normalize_path("usr/../../x").unwrap_err(),
            PathError::DotDot("usr/../../x".into())
        );
    }

    #[test]
    fn control_fields_say_why_they_cannot_be_read() {
        use std::error::Error as _;
        let files = |control: &[u8]| ControlFiles {
            files: BTreeMap::from([(
                "control".to_string(),
                ControlFile {
                    mode: 0o644,
                    contents: control.to_vec(),
                },
            )]),
        };
        let good = files(b"Package: a\nVersion: 1\n");
        assert_eq!(good.field("version").as_deref(), Some("1"));
        let e = ControlFiles::default().fields().unwrap_err();
        assert_eq!(e, ControlFieldsError::Missing);
        assert_eq!(e.to_string(), "no UTF-8 control file");
        let e = files(b"Package: \xff\n").fields().unwrap_err();
        assert!(matches!(e, ControlFieldsError::NotUtf8(_)), "{e}");
        assert_eq!(e.to_string(), "no UTF-8 control file");
        assert!(e.source().is_some_and(|c| c.is::<std::str::Utf8Error>()));
        let e = files(b"Package: a\n x\nPackage: b\n").fields().unwrap_err();
        assert_eq!(e.to_string(), "line 3: field Package appears twice");
        assert!(e
            .source()
            .is_some_and(|c| c.is::<crate::repo::FieldError>()));
    }
}
