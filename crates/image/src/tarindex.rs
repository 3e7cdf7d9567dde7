//! An index of the merged file tree of a stack of tar layers: path -> stat
//! (and the bytes of the few small files items read), with OCI whiteouts
//! applied across layers. It is the base image's [`RootView`] and the first
//! pass of flattening.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use nodeimg_layers::{ImagePath, Meta, RootView, Stat, StatKind};

use crate::error::{EntryError, Error, Result};
use crate::limits::KeepBudget;

/// The account files, whose bytes a base image's index keeps.
pub const ACCOUNT_FILES: [&str; 4] = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
/// The largest account file read: larger is an error naming the file.
pub const ACCOUNT_FILE_MAX: u64 = 64 << 20;

/// Files whose bytes the view keeps (when at most [`KEEP_MAX`] bytes):
/// exact paths, and folders (ending in `/`) whose whole content is kept.
/// The account files ([`ACCOUNT_FILES`]) are kept too, up to
/// [`ACCOUNT_FILE_MAX`], and the dpkg status files up to
/// [`DPKG_STATUS_MAX`].
pub(crate) const KEEP_PATHS: &[&str] = &[
    "/etc/os-release",
    // Lint's NI007 reads it: a base's machine-id shared by every node.
    "/etc/machine-id",
    "/usr/lib/os-release",
    "/etc/systemd/",
    "/lib/systemd/",
    "/usr/lib/systemd/",
    "/usr/local/lib/systemd/",
    "/run/systemd/",
    "/var/lib/dpkg/statoverride",
    "/var/lib/dpkg/triggers/",
    "/var/lib/dpkg/alternatives/",
    "/var/lib/rpm/",
    "/etc/yum.repos.d/",
    "/etc/zypp/repos.d/",
    "/etc/pki/rpm-gpg/",
];

/// The dpkg database: `status` and `status.d/`, kept up to
/// [`DPKG_STATUS_MAX`] (a server image's database is larger than
/// [`KEEP_MAX`]).
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "/var/lib/dpkg/status.d/";

/// The largest dpkg status file the view keeps; a larger one is an error
/// where it is read, never an empty database.
pub(crate) const DPKG_STATUS_MAX: u64 = 64 << 20;

/// The largest file whose bytes the view keeps.
pub(crate) const KEEP_MAX: u64 = 1 << 20;

/// The largest rpm database file (under `/var/lib/rpm/`) the view keeps:
/// a distribution's database is larger than [`KEEP_MAX`].
pub const RPMDB_KEEP_MAX: u64 = 128 << 20;

/// Whether the view keeps the bytes of a regular file at `path` of `size` bytes.
pub fn keeps(path: &str, size: u64) -> bool {
    if path.starts_with("/var/lib/rpm/") {
        return size <= RPMDB_KEEP_MAX;
    }
    if ACCOUNT_FILES.contains(&path) {
        return size <= ACCOUNT_FILE_MAX;
    }
    if path == DPKG_STATUS || path.starts_with(DPKG_STATUS_D) {
        return size <= DPKG_STATUS_MAX;
    }
    size <= KEEP_MAX
        && KEEP_PATHS.iter().any(|k| {
            if k.ends_with('/') {
                path.starts_with(k)
            } else {
                path == *k
            }
        })
}

/// What an indexed entry is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    File(u64),
    Dir,
    Symlink(String),
    /// Hard link to the given image path.
    Hardlink(String),
    /// Device, fifo, socket: the tar entry type and device numbers.
    Other(u8, u32, u32),
}

/// One indexed entry.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rec {
    pub kind: Kind,
    pub meta: Meta,
    pub mtime: u64,
    /// Which layer wrote it (index in the stack).
    pub layer: u32,
    /// Position of the entry in that layer's tar (the last one counts).
    /// `u64::MAX` for parents implied by an entry.
    pub ord: u64,
    #[serde(with = "kept_bytes")]
    pub content: Option<Arc<[u8]>>,
}

/// Kept bytes as one byte string in the layer cache's index files.
mod kept_bytes {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Arc<[u8]>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(serde_bytes_ref).serialize(s)
    }

    fn serde_bytes_ref(b: &[u8]) -> Bytes<'_> {
        Bytes(b)
    }

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Arc<[u8]>>, D::Error> {
        let v: Option<ByteBuf> = Option::deserialize(d)?;
        Ok(v.map(|b| Arc::from(b.0)))
    }

    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

/// The entries of one layer, with its whiteouts.
#[derive(Default, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct LayerChanges {
    pub entries: BTreeMap<String, Rec>,
    /// Paths removed from the layers below (`.wh.NAME`).
    pub whiteouts: Vec<String>,
    /// Directories whose lower content is hidden (`.wh..wh..opq`).
    pub opaques: Vec<String>,
    /// Whether an entry name (or hard link target) is absolute or holds an
    /// empty component, so that the layer must be rewritten with normalised
    /// names before it is handed on as it is.
    pub unnormalised: bool,
}

/// What a tar entry means for the merged tree.
pub enum Parsed {
    Entry(String, Rec),
    Whiteout(String),
    Opaque(String),
    /// Global PAX headers and the like.
    Skip,
}

/// The mode bits and owner of the entry `name` from its tar `header`.
fn header_meta(header: &tar::Header, name: &str) -> std::result::Result<Meta, EntryError> {
    let range = |field| EntryError::OwnerRange {
        name: name.to_string(),
        field,
    };
    Ok(Meta {
        mode: header.mode().map_err(|source| EntryError::Mode {
            name: name.to_string(),
            source,
        })? & 0o7777,
        // An empty owner field (some writers leave it blank) means root.
        uid: u32::try_from(header.uid().unwrap_or(0)).map_err(|_| range("uid"))?,
        gid: u32::try_from(header.gid().unwrap_or(0)).map_err(|_| range("gid"))?,
    })
}

/// Interpret one tar entry of layer `layer` at position `ord`. Keeps the
/// bytes of the entry when given a budget and [`keeps`] (or the budget)
/// says so (reading them from `entry`).
pub fn parse_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    layer: u32,
    ord: u64,
    keep: Option<&mut KeepBudget>,
) -> std::result::Result<Parsed, EntryError> {
    crate::limits::check_tar_entry(entry)?;
    let raw = entry.path_bytes();
    let name = crate::tarname::decode(&raw).map_err(|source| EntryError::Reserved {
        name: String::from_utf8_lossy(&raw).into_owned(),
        source,
    })?;
    let et = entry.header().entry_type();
    if matches!(
        et,
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
    ) {
        return Ok(Parsed::Skip);
    }
    refuse_sparse(entry, &name)?;
    let header = entry.header();
    let path = ImagePath::from_archive(&name).map_err(|reason| EntryError::Name {
        name: name.clone(),
        reason,
    })?;
    let file_name = path.file_name();
    if let Some(hidden) = file_name.strip_prefix(".wh.") {
        let parent = path.parent().unwrap_or_else(ImagePath::root);
        if hidden == ".wh..opq" {
            return Ok(Parsed::Opaque(parent.as_str().to_string()));
        }
        let target = parent.join(hidden).map_err(|reason| EntryError::Whiteout {
            name: name.clone(),
            reason,
        })?;
        return Ok(Parsed::Whiteout(target.as_str().to_string()));
    }
    let meta = header_meta(header, &name)?;
    let mtime = header.mtime().unwrap_or(0);
    let kind = entry_kind(entry, &name)?;
    let content = match (&kind, keep) {
        (Kind::File(size), Some(budget))
            if keeps(path.as_str(), *size) || budget.also_keeps(path.as_str(), *size) =>
        {
            budget.take(path.as_str(), *size)?;
            let mut buf = Vec::with_capacity(*size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|source| EntryError::Read { name, source })?;
            Some(Arc::from(buf))
        }
        _ => None,
    };
    Ok(Parsed::Entry(
        path.as_str().to_string(),
        Rec {
            kind,
            meta,
            mtime,
            layer,
            ord,
            content,
        },
    ))
}

/// The kind of the entry `name` (not a whiteout), with its link target.
fn entry_kind<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
) -> std::result::Result<Kind, EntryError> {
    let header = entry.header();
    let link = || -> std::result::Result<String, EntryError> {
        let l = entry
            .link_name_bytes()
            .ok_or_else(|| EntryError::NoTarget {
                name: name.to_string(),
            })?;
        crate::tarname::decode(&l).map_err(|source| EntryError::Target {
            name: name.to_string(),
            source,
        })
    };
    Ok(match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File(entry.size())
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink(link()?),
        tar::EntryType::Link => {
            let t = link()?;
            let tp = ImagePath::from_archive(&t).map_err(|reason| EntryError::HardLink {
                name: name.to_string(),
                target: t.clone(),
                reason,
            })?;
            Kind::Hardlink(tp.as_str().to_string())
        }
        other => {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            Kind::Other(other.as_byte(), major, minor)
        }
    })
}

/// Refuse a sparse file (a GNU `S` entry, or a PAX entry with
/// `GNU.sparse.*` records), before any of its data is read: the tar
/// reader would expand its holes (or, for PAX sparse files, hand on the
/// sparse map as a file of its own), and the writers have no sparse form.
fn refuse_sparse<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> std::result::Result<(), EntryError> {
    let mut sparse = entry.header().entry_type() == tar::EntryType::GNUSparse;
    let mut real_name = None;
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            let key = ext.key_bytes();
            if key.starts_with(b"GNU.sparse.") {
                sparse = true;
                if key == b"GNU.sparse.name" {
                    real_name = Some(String::from_utf8_lossy(ext.value_bytes()).into_owned());
                }
            }
        }
    }
    if !sparse {
        return Ok(());
    }
    Err(EntryError::Sparse {
        name: real_name.unwrap_or_else(|| name.to_string()),
    })
}

/// Read a whole layer tar into its changes, keeping the bytes of files
/// [`keeps`] names when given a budget. `what` names the layer in messages.
/// Returns the reader (positioned after the end-of-archive marker) so the
/// caller can drain and hash the rest.
pub(crate) fn scan_layer<R: Read>(
    r: R,
    layer: u32,
    keep: Option<&mut KeepBudget>,
    what: &str,
) -> Result<(LayerChanges, R)> {
    scan_layer_visiting(r, layer, keep, what, None)
}

/// Sees the content of every regular file of a layer while it is scanned
/// (e.g. to hash it or keep a database file): `file` is called once per
/// regular file entry, in tar order, and may read `content` (the entry's
/// bytes, `size` of them) or leave it.
pub trait FileVisitor {
    /// The regular file `path` (an image path) of layer `layer` (0 is the
    /// lowest), `size` bytes.
    fn file(
        &mut self,
        layer: u32,
        path: &str,
        size: u64,
        content: &mut dyn Read,
    ) -> std::io::Result<()>;
}

/// As [`scan_layer`], showing every regular file to `visit`.
pub(crate) fn scan_layer_visiting<R: Read>(
    r: R,
    layer: u32,
    mut keep: Option<&mut KeepBudget>,
    what: &str,
    mut visit: Option<&mut (dyn FileVisitor + '_)>,
) -> Result<(LayerChanges, R)> {
    let mut archive = crate::limits::tar_archive(r);
    let mut ch = LayerChanges::default();
    {
        let entries = archive
            .entries()
            .map_err(|e| Error::read(what, "not a tar stream", e))?;
        for (ord, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| Error::read(what, "broken tar stream", e))?;
            ch.unnormalised |= !normalised_names(&entry);
            match parse_entry(&mut entry, layer, ord as u64, keep.as_deref_mut())
                .map_err(|e| Error::entry(what, e))?
            {
                Parsed::Entry(p, rec) => {
                    if let (Some(v), Kind::File(size)) = (visit.as_deref_mut(), &rec.kind) {
                        let seen = match &rec.content {
                            Some(kept) => v.file(layer, &p, *size, &mut &kept[..]),
                            None => v.file(layer, &p, *size, &mut entry),
                        };
                        seen.map_err(|e| Error::read(what, format!("reading {p}"), e))?;
                    }
                    if rec.kind != Kind::Dir && p != "/" {
                        remove_entries_below(&mut ch.entries, &p);
                    }
                    ch.entries.insert(p, rec);
                }
                Parsed::Whiteout(p) => ch.whiteouts.push(p),
                Parsed::Opaque(p) => ch.opaques.push(p),
                Parsed::Skip => {}
            }
        }
    }
    Ok((ch, archive.into_inner().into_inner()))
}

/// Whether the entry's name and hard link target are relative names
/// without empty components (`etc/x`, `./etc/x`), as a layer hands them on.
fn normalised_names<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    let plain = |n: &[u8]| !n.starts_with(b"/") && !n.windows(2).any(|w| w == b"//");
    let link_ok = entry.header().entry_type() != tar::EntryType::Link
        || entry.link_name_bytes().is_none_or(|l| plain(&l));
    plain(&entry.path_bytes()) && link_ok
}

/// A non-directory entry replaces what an earlier entry of the same layer
/// put at its path, with everything below it (as `tar -x` does).
fn remove_entries_below(entries: &mut BTreeMap<String, Rec>, path: &str) {
    let prefix = subtree_prefix(path);
    let doomed: Vec<String> = entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        entries.remove(&k);
    }
}

/// The merged tree of a stack of layers.
#[derive(Default, Debug, Clone)]
pub struct MergedIndex {
    map: BTreeMap<String, Rec>,
}

fn subtree_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

impl MergedIndex {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn remove_below(&mut self, path: &str) {
        let prefix = subtree_prefix(path);
        let doomed: Vec<String> = self
            .map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }

    /// Lay one layer over the tree: opaque directories and whiteouts hide
    /// what the lower layers had, then the layer's entries are added (a
    /// non-directory replaces a lower directory with all its content).
    pub(crate) fn apply(&mut self, ch: LayerChanges) {
        for d in &ch.opaques {
            self.remove_below(d);
        }
        for w in &ch.whiteouts {
            self.remove_below(w);
            self.map.remove(w);
        }
        for (p, rec) in ch.entries {
            if rec.kind != Kind::Dir {
                self.remove_below(&p);
            }
            self.imply_parents(&p, &rec);
            self.map.insert(p, rec);
        }
    }

    /// Make the ancestors of `path` directories (implied by `rec`), from
    /// its parent upwards, stopping at the first that is a directory: the
    /// tree keeps every ancestor of a path present, so the ones above are
    /// directories already. The work is linear in what is added.
    fn imply_parents(&mut self, path: &str, rec: &Rec) {
        let mut cur = path;
        while let Some(i) = cur.rfind('/') {
            if i == 0 {
                break;
            }
            cur = &cur[..i];
            if self.map.get(cur).is_some_and(|r| r.kind == Kind::Dir) {
                break;
            }
            self.map.insert(
                cur.to_string(),
                Rec {
                    kind: Kind::Dir,
                    meta: Meta::DIR,
                    mtime: rec.mtime,
                    layer: rec.layer,
                    ord: u64::MAX,
                    content: None,
                },
            );
        }
    }

    /// The entry at `path` (an image path, no symlink followed).
    pub fn get(&self, path: &str) -> Option<&Rec> {
        self.map.get(path)
    }

    /// Every entry of the tree (implied folders too), in path order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Rec)> {
        self.map.iter().map(|(p, r)| (p.as_str(), r))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn target_of<'a>(&'a self, mut rec: &'a Rec) -> Option<&'a Rec> {
        for _ in 0..8 {
            match &rec.kind {
                Kind::Hardlink(t) => rec = self.map.get(t)?,
                _ => return Some(rec),
            }
        }
        None
    }
}

impl RootView for MergedIndex {
    fn stat(&self, path: &ImagePath) -> Option<Stat> {
        let rec = match self.map.get(path.as_str()) {
            Some(r) => r,
            None if path.is_root() => {
                return Some(Stat {
                    kind: StatKind::Dir,
                    meta: Meta::DIR,
                })
            }
            None => return None,
        };
        let kind = match &rec.kind {
            Kind::File(s) => StatKind::File(*s),
            Kind::Dir => StatKind::Dir,
            Kind::Symlink(t) => StatKind::Symlink(t.clone()),
            Kind::Hardlink(_) => match self.target_of(rec).map(|r| &r.kind) {
                Some(Kind::File(s)) => StatKind::File(*s),
                _ => StatKind::File(0),
            },
            Kind::Other(..) => StatKind::Other,
        };
        Some(Stat {
            kind,
            meta: rec.meta,
        })
    }

    fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>> {
        let rec = self.map.get(path.as_str())?;
        self.target_of(rec)?.content.as_ref().map(|c| c.to_vec())
    }

    fn list_raw(&self, path: &ImagePath) -> Vec<String> {
        use std::ops::Bound;
        let prefix = subtree_prefix(path.as_str());
        let mut out = std::collections::BTreeSet::new();
        let mut from = Bound::Included(prefix.clone());
        while let Some((k, _)) = self.map.range((from.clone(), Bound::Unbounded)).next() {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            match rest.find('/') {
                None => {
                    if !rest.is_empty() {
                        out.insert(rest.to_string());
                    }
                    from = Bound::Excluded(k.clone());
                }
                Some(i) => {
                    // Skip everything below this child: the first key after
                    // "child/..." is at least "child0" ('0' follows '/').
                    let name = &rest[..i];
                    out.insert(name.to_string());
                    from = Bound::Included(format!("{prefix}{name}0"));
                }
            }
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(kind: Kind, layer: u32) -> Rec {
        Rec {
            kind,
            meta: Meta::FILE,
            mtime: 0,
            layer,
            ord: 0,
            content: None,
        }
    }

    fn layer(entries: &[(&str, Kind)], wh: &[&str], opq: &[&str], n: u32) -> LayerChanges {
        LayerChanges {
            entries: entries
                .iter()
                .map(|(p, k)| (p.to_string(), rec(k.clone(), n)))
                .collect(),
            whiteouts: wh.iter().map(|s| s.to_string()).collect(),
            opaques: opq.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A tar of (raw name, type, link target or data) entries.
    fn tar_of(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            let body: &[u8] = if kind.is_hard_link() || kind.is_symlink() {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
                b""
            } else {
                data
            };
            h.set_size(body.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn scan(bytes: &[u8]) -> LayerChanges {
        scan_layer(
            bytes,
            0,
            Some(&mut crate::limits::KeepBudget::default()),
            "t",
        )
        .unwrap()
        .0
    }

    #[test]
    fn a_file_replaces_a_directory_of_the_same_layer() {
        use tar::EntryType as T;
        let ch = scan(&tar_of(&[
            (b"x/", T::Directory, b""),
            (b"x/y", T::Regular, b"inside"),
            (b"x", T::Regular, b"the file"),
        ]));
        let mut ix = MergedIndex::new();
        ix.apply(ch);
        assert_eq!(ix.stat(&p("/x")).unwrap().kind, StatKind::File(8));
        assert!(ix.stat(&p("/x/y")).is_none());
        // The other way round, the later entry's folder is implied.
        let mut ix = MergedIndex::new();
        ix.apply(scan(&tar_of(&[
            (b"x", T::Regular, b"the file"),
            (b"x/y", T::Regular, b"inside"),
        ])));
        assert_eq!(ix.stat(&p("/x")).unwrap().kind, StatKind::Dir);
        assert!(ix.stat(&p("/x/y")).is_some());
    }

    #[test]
    fn names_that_are_not_utf8_stay_distinct() {
        use tar::EntryType as T;
        let ch = scan(&tar_of(&[
            (b"etc/caf\xe9", T::Regular, b"a"),
            (b"etc/caf\xe8", T::Regular, b"b"),
            (b"etc/l\xff", T::Symlink, b"caf\xe9"),
        ]));
        let names: Vec<_> = ch
            .entries
            .keys()
            .map(|k| crate::tarname::encode(k).into_owned())
            .collect();
        assert_eq!(
            names,
            [&b"/etc/caf\xe8"[..], b"/etc/caf\xe9", b"/etc/l\xff"]
        );
        let Some(Kind::Symlink(t)) = ch.entries.values().last().map(|r| r.kind.clone()) else {
            panic!("no symlink");
        };
        assert_eq!(&*crate::tarname::encode(&t), b"caf\xe9");
        assert!(!ch.unnormalised);
    }

    #[test]
    fn absolute_names_and_link_targets_mark_the_layer() {
        use tar::EntryType as T;
        assert!(scan(&tar_of(&[(b"/etc/a", T::Regular, b"")])).unnormalised);
        assert!(scan(&tar_of(&[(b"etc//a", T::Regular, b"")])).unnormalised);
        assert!(
            scan(&tar_of(&[
                (b"etc/a", T::Regular, b""),
                (b"etc/b", T::Link, b"/etc/a")
            ]))
            .unnormalised
        );
        assert!(
            !scan(&tar_of(&[
                (b"./etc/a", T::Regular, b""),
                (b"etc/b", T::Link, b"./etc/a"),
                (b"etc/c", T::Symlink, b"/etc/a")
            ]))
            .unnormalised
        );
    }

    #[test]
    fn sparse_entries_are_refused() {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"sparse");
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_size(0);
        if let Some(g) = h.as_gnu_mut() {
            // All hole: one empty chunk at the end of 10 GiB.
            g.set_real_size(10 << 30);
            g.sparse[0].set_offset(10 << 30);
            g.sparse[0].set_length(0);
        }
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.resize(bytes.len() + 1024, 0);
        let e = scan_layer(
            &bytes[..],
            0,
            Some(&mut crate::limits::KeepBudget::default()),
            "rootfs:b.tar",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rootfs:b.tar")
                && e.contains("\"sparse\"")
                && e.contains("sparse files are not supported"),
            "{e}"
        );
    }

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_apply_across_layers() {
        let mut ix = MergedIndex::new();
        ix.apply(layer(
            &[
                ("/etc", Kind::Dir),
                ("/etc/a", Kind::File(1)),
                ("/etc/d/x", Kind::File(1)),
                ("/etc/d/y", Kind::File(1)),
                ("/etc/o/old", Kind::File(1)),
                ("/etc-other", Kind::File(1)),
            ],
            &[],
            &[],
            0,
        ));
        assert_eq!(ix.list("/etc"), ["a", "d", "o"]);
        assert_eq!(ix.list("/etc/d"), ["x", "y"]);
        assert_eq!(ix.list("/"), ["etc", "etc-other"]);
        ix.apply(layer(
            &[("/etc/o", Kind::Dir), ("/etc/o/new", Kind::File(2))],
            &["/etc/d", "/etc/a"],
            &["/etc/o"],
            1,
        ));
        assert_eq!(ix.list("/etc"), ["o"]);
        assert_eq!(ix.list("/etc/o"), ["new"]);
        assert!(ix.stat(&p("/etc/d/x")).is_none());
        assert!(ix.stat(&p("/etc-other")).is_some());
        // A file replacing a directory hides its content.
        ix.apply(layer(&[("/etc/o", Kind::File(3))], &[], &[], 2));
        assert!(ix.stat(&p("/etc/o/new")).is_none());
        assert_eq!(ix.stat(&p("/etc/o")).unwrap().kind, StatKind::File(3));
    }

    #[test]
    fn implied_parents_are_directories() {
        let mut ix = MergedIndex::new();
        ix.apply(layer(&[("/a/b/c", Kind::File(1))], &[], &[], 0));
        assert_eq!(ix.stat(&p("/a/b")).unwrap().kind, StatKind::Dir);
        assert_eq!(ix.list("/a"), ["b"]);
        assert!(ix.stat(&p("/")).is_some());
    }

    #[test]
    fn keep_list_matches_exact_files_and_folders() {
        assert!(keeps("/etc/os-release", 10));
        assert!(keeps("/usr/lib/systemd/system/a.service", 10));
        assert!(!keeps("/etc/os-release.bak", 10));
        assert!(!keeps("/etc/systemd/big", KEEP_MAX + 1));
        assert!(!keeps("/usr/bin/ls", 10));
    }

    #[test]
    fn account_files_are_kept_past_keep_max() {
        use super::ACCOUNT_FILE_MAX as FILE_MAX;
        for f in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
            assert!(keeps(f, 0));
            assert!(keeps(f, KEEP_MAX + 1), "{f}");
            assert!(keeps(f, FILE_MAX), "{f}");
            assert!(!keeps(f, FILE_MAX + 1), "{f}");
        }
        assert!(!keeps("/etc/passwd-", 10));
    }

    #[test]
    fn the_dpkg_database_is_kept_past_keep_max() {
        for f in ["/var/lib/dpkg/status", "/var/lib/dpkg/status.d/containerd"] {
            assert!(keeps(f, KEEP_MAX + 1), "{f}");
            assert!(keeps(f, DPKG_STATUS_MAX), "{f}");
            assert!(!keeps(f, DPKG_STATUS_MAX + 1), "{f}");
        }
        assert!(keeps("/var/lib/dpkg/statoverride", 10));
        assert!(keeps("/var/lib/dpkg/alternatives/iptables", 10));
        assert!(!keeps("/var/lib/dpkg/status-old", 10));
    }
}
