//! The file tree a layer item renders: normalised image paths to entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Why a string is not an image path; each variant is one rule of
/// [`ImagePath`], its message a sentence that can be shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A recipe path that does not start with `/`.
    #[error("{0:?} is not an absolute image path (start it with /)")]
    NotAbsolute(String),
    /// A path with a NUL byte.
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    /// A path with a `.` or `..` component.
    #[error("{path:?} has a {component:?} component; image paths must be plain")]
    NotPlain {
        /// The path as checked.
        path: String,
        /// The component refused: `.` or `..`.
        component: String,
    },
}

/// A normalised absolute path inside the image: starts with `/`, no trailing
/// slash (except the root itself), no empty, `.` or `..` components, no NUL.
///
/// This is the one place where paths are checked; every entry of a
/// [`FileTree`] is keyed by one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    /// The image root, `/`.
    pub fn root() -> Self {
        ImagePath("/".to_string())
    }

    /// Check and normalise an absolute image path as written in a recipe.
    ///
    /// Repeated slashes and a trailing slash are folded; `.` and `..`
    /// components, relative paths and NUL bytes are refused with a message
    /// that can be shown to the user.
    pub fn new(s: &str) -> std::result::Result<Self, PathError> {
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute(s.to_string()));
        }
        Self::from_parts(s)
    }

    /// Normalise a path read from an archive (`./etc/x`, `etc/x`, `/etc/x`).
    pub fn from_archive(s: &str) -> std::result::Result<Self, PathError> {
        let t = s.strip_prefix("./").unwrap_or(s);
        if t == "." || t.is_empty() {
            return Ok(Self::root());
        }
        Self::from_parts(t)
    }

    fn from_parts(s: &str) -> std::result::Result<Self, PathError> {
        if s.contains('\0') {
            return Err(PathError::Nul(s.to_string()));
        }
        let mut out = String::with_capacity(s.len() + 1);
        for comp in s.split('/') {
            match comp {
                "" => continue,
                "." | ".." => {
                    return Err(PathError::NotPlain {
                        path: s.to_string(),
                        component: comp.to_string(),
                    })
                }
                c => {
                    out.push('/');
                    out.push_str(c);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(ImagePath(out))
    }

    /// The path as a string, with its leading slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading slash, as tar archives name it (`etc/x`);
    /// empty for the root.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self) -> Option<ImagePath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) => Some(Self::root()),
            Some(i) => Some(ImagePath(self.0[..i].to_string())),
            None => None,
        }
    }

    /// The last component; empty for the root.
    pub fn file_name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Append one or more components (`"a/b"`), checked like [`ImagePath::new`].
    pub fn join(&self, rest: &str) -> std::result::Result<ImagePath, PathError> {
        Self::from_parts(&format!("{}/{}", self.0, rest))
    }

    /// Every ancestor from `/` down to the parent of this path.
    pub fn ancestors(&self) -> Vec<ImagePath> {
        let mut v = Vec::new();
        let mut p = self.parent();
        while let Some(a) = p {
            p = a.parent();
            v.push(a);
        }
        v.reverse();
        v
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &ImagePath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Ownership and permission bits of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

impl Meta {
    /// A root-owned file with mode 0644.
    pub const FILE: Meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    /// A root-owned directory (or executable) with mode 0755.
    pub const DIR: Meta = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    /// A root-owned symlink (mode 0777, as tar records them).
    pub(crate) const LINK: Meta = Meta {
        mode: 0o777,
        uid: 0,
        gid: 0,
    };

    /// Root-owned with the given mode.
    pub const fn mode(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// The bytes of a regular file.
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    /// Held in memory (small generated files).
    Bytes(Vec<u8>),
    /// A file on the build host, streamed when the layer is packed. The
    /// builder checked the path when it handed it over.
    Host {
        /// Absolute host path.
        path: PathBuf,
        /// Its size in bytes when it was checked.
        size: u64,
    },
    /// A file the recipe names, opened once by the builder and streamed from
    /// that open handle when the layer is packed.
    Input(InputFile),
}

/// A recipe input file held open: whatever happens to its name in the
/// recipe's folder afterwards, its bytes are read from this handle.
#[derive(Clone)]
pub struct InputFile {
    file: Arc<std::fs::File>,
    size: u64,
    name: String,
}

impl InputFile {
    /// `file`, opened as `name` (recipe-relative, for messages), which was
    /// `size` bytes long when it was opened.
    pub fn new(file: Arc<std::fs::File>, size: u64, name: impl Into<String>) -> InputFile {
        InputFile {
            file,
            size,
            name: name.into(),
        }
    }

    /// The size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The name the recipe gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// A reader of its bytes from the start. Readers use positional reads,
    /// so that any number of them (and clones of this handle) can read the
    /// file independently.
    pub fn reader(&self) -> InputReader<'_> {
        InputReader {
            file: &self.file,
            pos: 0,
        }
    }

    /// All its bytes; an error when it no longer has the size it was opened
    /// with.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let cap = usize::try_from(self.size.min(1 << 20)).unwrap_or(0);
        let mut out = Vec::with_capacity(cap);
        std::io::Read::read_to_end(&mut self.reader(), &mut out)?;
        if out.len() as u64 != self.size {
            return Err(std::io::Error::other(format!(
                "{} changed size while it was read ({} bytes when opened, {} read)",
                self.name,
                self.size,
                out.len()
            )));
        }
        Ok(out)
    }
}

impl PartialEq for InputFile {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.size == other.size && self.name == other.name
    }
}

impl Eq for InputFile {}

impl fmt::Debug for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Input({:?}, {} bytes)", self.name, self.size)
    }
}

/// Reads an [`InputFile`] from the start by positional reads.
pub struct InputReader<'a> {
    file: &'a std::fs::File,
    pos: u64,
}

impl std::io::Read for InputReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Content {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Host { size, .. } => *size,
            Content::Input(f) => f.size(),
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if b.len() <= 4096 => write!(f, "Bytes({s:?})"),
                _ => write!(f, "Bytes(<{} bytes>)", b.len()),
            },
            Content::Host { path, size } => write!(f, "Host({path:?}, {size} bytes)"),
            Content::Input(i) => i.fmt(f),
        }
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File(Content),
    /// A directory.
    Dir,
    /// A symbolic link to the given target (kept verbatim).
    Symlink(String),
    /// A hard link to another path of the same layer.
    Hardlink(ImagePath),
    /// Removes the path from the layers below (an OCI whiteout).
    Whiteout,
    /// A directory that hides everything the layers below have in it (an
    /// OCI opaque whiteout).
    Opaque,
}

/// Which recipe item produced an entry: what `inspect --why` shows.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    /// The item kind, e.g. `sysctl`, `systemd`, `file`.
    pub item: String,
    /// Key path relative to the layer table, e.g. `file[2]`.
    pub key: String,
}

impl Origin {
    /// An origin for the item `item` at key path `key`.
    pub fn new(item: impl Into<String>, key: impl Into<String>) -> Self {
        Origin {
            item: item.into(),
            key: key.into(),
        }
    }
}

/// One entry of a [`FileTree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Owner and mode.
    pub meta: Meta,
    /// Which recipe item made it.
    pub origin: Origin,
    /// Its modification time, seconds since the epoch, when it comes from a
    /// package that records one (and a package verifier checks it); `None`
    /// for what nodeimg writes, which gets the build's `SOURCE_DATE_EPOCH`.
    pub mtime: Option<u64>,
}

impl Node {
    /// A root-owned 0644 file with the given bytes.
    pub fn file(bytes: impl Into<Vec<u8>>, origin: Origin) -> Self {
        Node {
            kind: NodeKind::File(Content::Bytes(bytes.into())),
            meta: Meta::FILE,
            origin,
            mtime: None,
        }
    }

    /// A root-owned 0755 directory.
    pub fn dir(origin: Origin) -> Self {
        Node {
            kind: NodeKind::Dir,
            meta: Meta::DIR,
            origin,
            mtime: None,
        }
    }

    /// A symlink to `target`.
    pub fn symlink(target: impl Into<String>, origin: Origin) -> Self {
        Node {
            kind: NodeKind::Symlink(target.into()),
            meta: Meta::LINK,
            origin,
            mtime: None,
        }
    }

    /// A whiteout.
    pub fn whiteout(origin: Origin) -> Self {
        Node {
            kind: NodeKind::Whiteout,
            meta: Meta::FILE,
            origin,
            mtime: None,
        }
    }

    /// The same node with another meta.
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = meta;
        self
    }

    /// The same node with the modification time `mtime` (a package's).
    pub fn with_mtime(mut self, mtime: u64) -> Self {
        self.mtime = Some(mtime);
        self
    }
}

/// An ordered map from image path to entry: the content of one layer, or of
/// one item of a layer.
///
/// Iteration is in byte order of the path, so a parent always comes before
/// its children. Parent directories are not stored unless an item declared
/// them; the packer adds the missing ones ([`FileTree::missing_parents`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTree {
    nodes: BTreeMap<ImagePath, Node>,
}

impl FileTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an entry. Two items that write the same path are an error naming
    /// both, unless both are directories with the same owner and mode.
    pub fn insert(&mut self, path: ImagePath, node: Node) -> Result<()> {
        if let Some(old) = self.nodes.get(&path) {
            if old.kind == NodeKind::Dir && node.kind == NodeKind::Dir && old.meta == node.meta {
                return Ok(());
            }
            return Err(Error::invalid_hint(
                node.origin.key.clone(),
                format!("{path} is also written by {}", describe(&old.origin)),
                "each path may be written once per layer; drop one of the two",
            ));
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// Add an entry, replacing whatever the tree had at that path.
    pub fn replace(&mut self, path: ImagePath, node: Node) {
        self.nodes.insert(path, node);
    }

    /// Add every entry of `other` (see [`FileTree::insert`]).
    pub(crate) fn merge(&mut self, other: FileTree) -> Result<()> {
        for (p, n) in other.nodes {
            self.insert(p, n)?;
        }
        Ok(())
    }

    /// The entry at `path`.
    pub fn get(&self, path: &ImagePath) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The entry at a path given as a string (no normalisation beyond [`ImagePath::new`]).
    pub fn get_str(&self, path: &str) -> Option<&Node> {
        ImagePath::new(path).ok().and_then(|p| self.nodes.get(&p))
    }

    /// Remove and return the entry at `path`.
    pub fn remove(&mut self, path: &ImagePath) -> Option<Node> {
        self.nodes.remove(path)
    }

    /// Entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&ImagePath, &Node)> {
        self.nodes.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The bytes of an in-memory file entry, if `path` is one.
    pub fn bytes(&self, path: &str) -> Option<&[u8]> {
        match self.get_str(path).map(|n| &n.kind) {
            Some(NodeKind::File(Content::Bytes(b))) => Some(b),
            _ => None,
        }
    }

    /// The text of an in-memory file entry, if `path` is one and is UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.bytes(path).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Ancestors of entries that the tree does not hold itself, in order.
    /// The root is never listed.
    pub fn missing_parents(&self) -> BTreeSet<ImagePath> {
        let mut out = BTreeSet::new();
        for p in self.nodes.keys() {
            for a in p.ancestors() {
                if !a.is_root() && !self.nodes.contains_key(&a) {
                    out.insert(a);
                }
            }
        }
        out
    }
}

impl IntoIterator for FileTree {
    type Item = (ImagePath, Node);
    type IntoIter = std::collections::btree_map::IntoIter<ImagePath, Node>;
    fn into_iter(self) -> Self::IntoIter {
        self.nodes.into_iter()
    }
}

fn describe(o: &Origin) -> String {
    if o.key.is_empty() {
        o.item.clone()
    } else {
        o.key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_refuse_escapes() {
        assert_eq!(ImagePath::new("/etc//x/").unwrap().as_str(), "/etc/x");
        assert_eq!(ImagePath::new("/").unwrap().as_str(), "/");
        assert!(ImagePath::new("etc/x").is_err());
        assert!(ImagePath::new("/etc/../x").is_err());
        assert!(ImagePath::new("/etc/./x").is_err());
        assert!(ImagePath::new("/a\0b").is_err());
        assert_eq!(
            ImagePath::from_archive("./etc/x").unwrap().as_str(),
            "/etc/x"
        );
        assert_eq!(ImagePath::from_archive("./").unwrap().as_str(), "/");
    }

    #[test]
    fn each_path_rule_has_its_variant_and_sentence() {
        let e = ImagePath::new("etc/x").unwrap_err();
        assert_eq!(e, PathError::NotAbsolute("etc/x".to_string()));
        assert_eq!(
            e.to_string(),
            "\"etc/x\" is not an absolute image path (start it with /)"
        );
        let e = ImagePath::new("/a\0b").unwrap_err();
        assert_eq!(e, PathError::Nul("/a\0b".to_string()));
        assert_eq!(e.to_string(), "\"/a\\0b\" contains a NUL byte");
        let e = ImagePath::from_archive("./etc/../x").unwrap_err();
        assert!(matches!(&e, PathError::NotPlain { component, .. } if component == ".."));
        assert_eq!(
            e.to_string(),
            "\"etc/../x\" has a \"..\" component; image paths must be plain"
        );
        // A join names the whole path it checked.
        let e = ImagePath::new("/etc").unwrap().join("./x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"/etc/./x\" has a \".\" component; image paths must be plain"
        );
    }

    #[test]
    fn parents_and_ancestors() {
        let p = ImagePath::new("/etc/a/b").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/etc/a");
        assert_eq!(p.file_name(), "b");
        let a: Vec<_> = p.ancestors().iter().map(|x| x.to_string()).collect();
        assert_eq!(a, ["/", "/etc", "/etc/a"]);
        assert!(p.starts_with(&ImagePath::new("/etc").unwrap()));
        assert!(!ImagePath::new("/etcx")
            .unwrap()
            .starts_with(&ImagePath::new("/etc").unwrap()));
    }

    #[test]
    fn conflicting_writes_name_both_items() {
        let mut t = FileTree::new();
        let p = ImagePath::new("/etc/x").unwrap();
        t.insert(p.clone(), Node::file("a", Origin::new("file", "file[0]")))
            .unwrap();
        let e = t
            .insert(p, Node::file("b", Origin::new("file", "file[1]")))
            .unwrap_err();
        assert_eq!(e.key(), "file[1]");
        assert!(e.to_string().contains("file[0]"), "{e}");
        let d = ImagePath::new("/etc/d").unwrap();
        t.insert(d.clone(), Node::dir(Origin::default())).unwrap();
        t.insert(d, Node::dir(Origin::default())).unwrap();
    }

    #[test]
    fn missing_parents_are_listed_in_order() {
        let mut t = FileTree::new();
        t.insert(
            ImagePath::new("/etc/sysctl.d/x.conf").unwrap(),
            Node::file("", Origin::default()),
        )
        .unwrap();
        t.insert(
            ImagePath::new("/etc").unwrap(),
            Node::dir(Origin::default()),
        )
        .unwrap();
        let m: Vec<_> = t
            .missing_parents()
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(m, ["/etc/sysctl.d"]);
    }
}
