//! Read-only access to "the image so far" and to the files a recipe names.

use std::collections::BTreeMap;

use crate::tree::{Content, FileTree, ImagePath, InputFile, Meta, NodeKind, PathError};

/// What a path is in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// A regular file of the given size.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link with its target, verbatim.
    Symlink(String),
    /// Anything else (device, fifo, socket).
    Other,
}

/// The answer of [`RootView::stat`]: kind and owner/mode, without following
/// a final symlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// What the path is.
    pub kind: StatKind,
    /// Owner and mode.
    pub meta: Meta,
}

/// A read-only view of the image built so far (base, earlier layers, and
/// possibly the current layer's own entries).
///
/// Implementations answer for paths as they are; symlinks are resolved
/// *inside* the image root by the provided methods, never through the host.
pub trait RootView {
    /// Kind and meta of `path`, not following a final symlink; `None` if absent
    /// (or removed by a whiteout).
    fn stat(&self, path: &ImagePath) -> Option<Stat>;

    /// The bytes of the regular file at `path` (no symlink following);
    /// `None` if absent or not a regular file, or too large for the view to
    /// hold (views keep the text files that items read: unit files,
    /// os-release, package databases).
    fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>>;

    /// Names of the entries directly inside the directory `path` (no symlink
    /// following), sorted; empty if absent or not a directory.
    fn list_raw(&self, path: &ImagePath) -> Vec<String>;

    /// `path` with every symlink among its components resolved inside the
    /// image root, the last one included. Gives up (returning the path as
    /// far as resolved) after 40 links, like the kernel.
    fn resolve(&self, path: &ImagePath) -> ImagePath {
        resolve_in(self, path, true)
    }

    /// `path` with the symlinks of its parent components resolved; the last
    /// component is kept as it is. This is where an entry written at `path`
    /// really lands (e.g. `/lib/x` on a merged-/usr base lands at `/usr/lib/x`).
    fn resolve_parent(&self, path: &ImagePath) -> ImagePath {
        resolve_in(self, path, false)
    }

    /// Stat after resolving symlinks.
    fn stat_follow(&self, path: &ImagePath) -> Option<Stat> {
        self.stat(&self.resolve(path))
    }

    /// Read a regular file, following symlinks inside the root.
    fn read(&self, path: &ImagePath) -> Option<Vec<u8>> {
        self.read_raw(&self.resolve(path))
    }

    /// Read a regular file as UTF-8 text, following symlinks.
    fn read_text(&self, path: &str) -> Option<String> {
        let p = ImagePath::new(path).ok()?;
        self.read(&p).and_then(|b| String::from_utf8(b).ok())
    }

    /// Read a regular file that must be read whole when it is there
    /// (package databases, state files): `Ok(None)` when the image has
    /// nothing at `path`; an error when something is there that cannot be
    /// read as a regular file (a folder, a link that does not resolve, a
    /// file whose bytes the view does not hold), so that it is never taken
    /// for an absent or empty file.
    fn read_required(&self, path: &str) -> Result<Option<Vec<u8>>, ReadRequiredError> {
        let p = ImagePath::new(path)?;
        let resolved = self.resolve(&p);
        let Some(stat) = self.stat(&resolved) else {
            return Ok(None);
        };
        let at = (resolved != p).then(|| resolved.clone());
        let path = path.to_string();
        match stat.kind {
            StatKind::File(size) => self
                .read_raw(&resolved)
                .map(Some)
                .ok_or(ReadRequiredError::Unreadable { path, at, size }),
            StatKind::Symlink(target) => {
                Err(ReadRequiredError::DanglingSymlink { path, at, target })
            }
            StatKind::Dir | StatKind::Other => Err(ReadRequiredError::NotRegular { path, at }),
        }
    }

    /// Whether `path` exists (following symlinks).
    fn exists(&self, path: &str) -> bool {
        ImagePath::new(path)
            .ok()
            .and_then(|p| self.stat_follow(&p))
            .is_some()
    }

    /// List a directory, following symlinks.
    fn list(&self, path: &str) -> Vec<String> {
        match ImagePath::new(path) {
            Ok(p) => self.list_raw(&self.resolve(&p)),
            Err(_) => Vec::new(),
        }
    }
}

/// Why [`RootView::read_required`] cannot give a file that is there. `path`
/// is as asked; `at` is where it resolved to, when that is elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadRequiredError {
    /// A regular file whose bytes the view does not hold.
    #[error(
        "{path}{}: the image holds it ({size} bytes) but its content cannot be read \
         here (larger than nodeimg keeps of it, or a hard link to a file whose bytes \
         are missing); store it as a regular file of a reasonable size in the base",
        at_note(.at.as_ref())
    )]
    Unreadable {
        /// The path as asked.
        path: String,
        /// Where it resolved to, if elsewhere.
        at: Option<ImagePath>,
        /// The size the image gives for it.
        size: u64,
    },
    /// A symbolic link that does not lead to a file.
    #[error(
        "{path}{}: is a symbolic link ({target}) that does not resolve to a file",
        at_note(.at.as_ref())
    )]
    DanglingSymlink {
        /// The path as asked.
        path: String,
        /// Where it resolved to, if elsewhere.
        at: Option<ImagePath>,
        /// The link's target, verbatim.
        target: String,
    },
    /// A folder or a special file.
    #[error("{path}{}: is not a regular file", at_note(.at.as_ref()))]
    NotRegular {
        /// The path as asked.
        path: String,
        /// Where it resolved to, if elsewhere.
        at: Option<ImagePath>,
    },
    /// The path asked for is not an image path.
    #[error("{0}")]
    BadPath(#[from] PathError),
}

fn at_note(at: Option<&ImagePath>) -> String {
    match at {
        Some(r) => format!(" (at {r})"),
        None => String::new(),
    }
}

fn resolve_in<V: RootView + ?Sized>(view: &V, path: &ImagePath, follow_last: bool) -> ImagePath {
    let mut pending: Vec<String> = path
        .relative()
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur = ImagePath::root();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        let next = match comp.as_str() {
            "." => continue,
            ".." => {
                cur = cur.parent().unwrap_or_else(ImagePath::root);
                continue;
            }
            c => match cur.join(c) {
                Ok(n) => n,
                Err(_) => return cur,
            },
        };
        let is_last = pending.is_empty();
        if is_last && !follow_last {
            return next;
        }
        match view.stat(&next) {
            Some(Stat {
                kind: StatKind::Symlink(target),
                ..
            }) if hops < 40 => {
                hops += 1;
                if target.starts_with('/') {
                    cur = ImagePath::root();
                }
                for c in target.split('/').filter(|c| !c.is_empty()).rev() {
                    pending.push(c.to_string());
                }
            }
            _ => cur = next,
        }
    }
    cur
}

/// Where files named by the recipe (`source = ...`, `key = ...`) are read
/// from. Paths are as written in the recipe, relative to its folder; the
/// builder checks that they stay inside it.
pub trait Inputs {
    /// Read a small input file whole (keys, unit files, snippets).
    fn read(&self, rel: &str) -> Result<Vec<u8>, InputCause>;

    /// A large input file to be streamed at pack time: the file, opened
    /// once and checked, with its size.
    fn host_file(&self, rel: &str) -> Result<InputFile, InputCause>;
}

/// Why an [`Inputs`] implementation could not give a file: its own error
/// (the folder walk refused a link, the system refused the open...), kept
/// whole as the cause of [`crate::Error::Input`].
pub type InputCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a renderer may look at.
pub struct Context<'a> {
    /// The image so far.
    pub view: &'a dyn RootView,
    /// Files named by the recipe.
    pub inputs: &'a dyn Inputs,
    /// Target architecture in OCI/Go spelling (`amd64`, `arm64`, `arm`).
    pub arch: &'a str,
}

/// A view of `tree` laid over `lower`: entries of the tree win, whiteouts
/// hide the lower path (and everything below it), opaque directories hide
/// the lower directory's content.
pub struct Overlay<'a> {
    /// The upper layer.
    pub tree: &'a FileTree,
    /// The image below it.
    pub lower: &'a dyn RootView,
}

impl Overlay<'_> {
    fn hidden_in_lower(&self, path: &ImagePath) -> bool {
        for a in path.ancestors().into_iter().skip(1).chain([path.clone()]) {
            match self.tree.get(&a).map(|n| &n.kind) {
                Some(NodeKind::Whiteout) => return true,
                Some(NodeKind::Opaque) if &a != path => return true,
                _ => {}
            }
        }
        false
    }
}

fn stat_of_node(n: &crate::tree::Node) -> Option<Stat> {
    let kind = match &n.kind {
        NodeKind::File(c) => StatKind::File(c.len()),
        NodeKind::Dir | NodeKind::Opaque => StatKind::Dir,
        NodeKind::Symlink(t) => StatKind::Symlink(t.clone()),
        NodeKind::Hardlink(_) => StatKind::File(0),
        NodeKind::Whiteout => return None,
    };
    Some(Stat { kind, meta: n.meta })
}

impl RootView for Overlay<'_> {
    fn stat(&self, path: &ImagePath) -> Option<Stat> {
        if let Some(n) = self.tree.get(path) {
            if let NodeKind::Hardlink(t) = &n.kind {
                return self.stat(t);
            }
            return stat_of_node(n);
        }
        if self.hidden_in_lower(path) {
            return None;
        }
        match self.lower.stat(path) {
            Some(s) => Some(s),
            // A parent implied by an entry of the tree.
            None if self
                .tree
                .iter()
                .any(|(p, _)| p.starts_with(path) && p != path) =>
            {
                Some(Stat {
                    kind: StatKind::Dir,
                    meta: Meta::DIR,
                })
            }
            None => None,
        }
    }

    fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>> {
        if let Some(n) = self.tree.get(path) {
            return match &n.kind {
                NodeKind::File(Content::Bytes(b)) => Some(b.clone()),
                NodeKind::File(Content::Host { path, .. }) => std::fs::read(path).ok(),
                NodeKind::File(Content::Input(f)) => f.read_all().ok(),
                NodeKind::Hardlink(t) => self.read_raw(t),
                _ => None,
            };
        }
        if self.hidden_in_lower(path) {
            return None;
        }
        self.lower.read_raw(path)
    }

    fn list_raw(&self, path: &ImagePath) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = if self.hidden_in_lower(path)
            || matches!(self.tree.get(path).map(|n| &n.kind), Some(NodeKind::Opaque))
        {
            Default::default()
        } else {
            self.lower.list_raw(path).into_iter().collect()
        };
        for (p, n) in self.tree.iter() {
            if p.starts_with(path) && p != path {
                let rest = &p.as_str()[path.as_str().len()..];
                let rest = rest.trim_start_matches('/');
                let name = rest.split('/').next().unwrap_or_default().to_string();
                if rest.contains('/') || !matches!(n.kind, NodeKind::Whiteout) {
                    names.insert(name);
                } else {
                    names.remove(&name);
                }
            }
        }
        names.into_iter().collect()
    }
}

/// A stack of layer trees over a lower view: the image after each of
/// `uppers` (first is lowest) has been applied to `lower`. The uppers may be
/// bare trees or anything holding one (`AsRef<FileTree>`).
pub struct Stack<'a, T = FileTree> {
    /// The base image.
    pub lower: &'a dyn RootView,
    /// Layer trees, lowest first.
    pub uppers: &'a [T],
}

impl AsRef<FileTree> for FileTree {
    fn as_ref(&self) -> &FileTree {
        self
    }
}

impl<T: AsRef<FileTree>> Stack<'_, T> {
    /// Run `f` on the top tree laid over the rest of the stack (or on the
    /// lower view when there are no uppers).
    fn with_top<R>(&self, f: impl FnOnce(&dyn RootView) -> R) -> R {
        match self.uppers.split_last() {
            None => f(self.lower),
            Some((top, rest)) => {
                let below = Stack {
                    lower: self.lower,
                    uppers: rest,
                };
                f(&Overlay {
                    tree: top.as_ref(),
                    lower: &below,
                })
            }
        }
    }
}

impl<T: AsRef<FileTree>> RootView for Stack<'_, T> {
    fn stat(&self, path: &ImagePath) -> Option<Stat> {
        self.with_top(|v| v.stat(path))
    }

    fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>> {
        self.with_top(|v| v.read_raw(path))
    }

    fn list_raw(&self, path: &ImagePath) -> Vec<String> {
        self.with_top(|v| v.list_raw(path))
    }
}

/// Move every entry of `tree` to where it really lands in the image below:
/// parent components that are symlinks there are resolved (on a merged-/usr
/// base, `/lib/systemd/system/x` lands at `/usr/lib/systemd/system/x`), so a
/// layer never replaces such a link with a directory. Hard link targets are
/// moved the same way.
pub fn land(tree: FileTree, below: &dyn RootView) -> crate::Result<FileTree> {
    let mut out = FileTree::new();
    for (p, mut n) in tree {
        let q = below.resolve_parent(&p);
        if let NodeKind::Hardlink(t) = &n.kind {
            n.kind = NodeKind::Hardlink(below.resolve_parent(t));
        }
        out.insert(q, n)?;
    }
    Ok(out)
}

/// An in-memory [`RootView`] for tests and for the empty (`scratch`) base.
#[derive(Clone, Debug, Default)]
pub struct MemView {
    entries: BTreeMap<ImagePath, (Stat, Option<Vec<u8>>)>,
}

impl MemView {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, p: &ImagePath) {
        for a in p.ancestors() {
            self.entries.entry(a).or_insert((
                Stat {
                    kind: StatKind::Dir,
                    meta: Meta::DIR,
                },
                None,
            ));
        }
    }

    /// Add a regular file (parents are added as directories).
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        let p = ImagePath::new(path).expect("test path");
        let c = content.into();
        self.add_parents(&p);
        self.entries.insert(
            p,
            (
                Stat {
                    kind: StatKind::File(c.len() as u64),
                    meta: Meta::FILE,
                },
                Some(c),
            ),
        );
        self
    }

    /// Add a regular file of `size` bytes whose content the view does not
    /// hold (as a base's large files).
    pub fn unheld(mut self, path: &str, size: u64) -> Self {
        let p = ImagePath::new(path).expect("test path");
        self.add_parents(&p);
        self.entries.insert(
            p,
            (
                Stat {
                    kind: StatKind::File(size),
                    meta: Meta::FILE,
                },
                None,
            ),
        );
        self
    }

    /// Add a directory.
    pub fn dir(mut self, path: &str) -> Self {
        let p = ImagePath::new(path).expect("test path");
        self.add_parents(&p);
        self.entries.insert(
            p,
            (
                Stat {
                    kind: StatKind::Dir,
                    meta: Meta::DIR,
                },
                None,
            ),
        );
        self
    }

    /// Add a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let p = ImagePath::new(path).expect("test path");
        self.add_parents(&p);
        self.entries.insert(
            p,
            (
                Stat {
                    kind: StatKind::Symlink(target.to_string()),
                    meta: Meta::LINK,
                },
                None,
            ),
        );
        self
    }
}

impl RootView for MemView {
    fn stat(&self, path: &ImagePath) -> Option<Stat> {
        if path.is_root() {
            return Some(Stat {
                kind: StatKind::Dir,
                meta: Meta::DIR,
            });
        }
        self.entries.get(path).map(|(s, _)| s.clone())
    }

    fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>> {
        self.entries.get(path).and_then(|(_, c)| c.clone())
    }

    fn list_raw(&self, path: &ImagePath) -> Vec<String> {
        self.entries
            .keys()
            .filter(|p| p.parent().as_ref() == Some(path))
            .map(|p| p.file_name().to_string())
            .collect()
    }
}

/// In-memory [`Inputs`] for tests.
#[derive(Clone, Debug, Default)]
pub struct MemInputs {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemInputs {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file at a recipe-relative path.
    pub fn with(mut self, rel: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(rel.to_string(), content.into());
        self
    }
}

impl Inputs for MemInputs {
    fn read(&self, rel: &str) -> Result<Vec<u8>, InputCause> {
        self.files
            .get(rel)
            .cloned()
            .ok_or_else(|| "no such file".into())
    }

    fn host_file(&self, rel: &str) -> Result<InputFile, InputCause> {
        Err(format!("{rel}: in-memory inputs have no host files").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Node, Origin};

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn a_required_file_is_absent_read_or_an_error() {
        let v = MemView::new()
            .file("/var/lib/dpkg/status", "Package: a\n")
            .symlink("/etc/status", "../var/lib/dpkg/status")
            .unheld("/var/lib/dpkg/big", 5 << 20)
            .symlink("/etc/dangling", "/nowhere")
            .symlink("/etc/loop", "/etc/loop")
            .dir("/etc/dir")
            .symlink("/etc/to-dir", "dir");
        assert_eq!(v.read_required("/nope").unwrap(), None);
        assert_eq!(
            v.read_required("/etc/status").unwrap().unwrap(),
            b"Package: a\n"
        );
        let e = v.read_required("/var/lib/dpkg/big").unwrap_err();
        assert!(matches!(
            e,
            ReadRequiredError::Unreadable {
                size: 5_242_880,
                at: None,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "/var/lib/dpkg/big: the image holds it (5242880 bytes) but its content cannot be \
             read here (larger than nodeimg keeps of it, or a hard link to a file whose bytes \
             are missing); store it as a regular file of a reasonable size in the base"
        );
        assert_eq!(v.read_required("/etc/dangling").unwrap(), None);
        let e = v.read_required("/etc/loop").unwrap_err();
        assert!(matches!(e, ReadRequiredError::DanglingSymlink { .. }));
        assert_eq!(
            e.to_string(),
            "/etc/loop: is a symbolic link (/etc/loop) that does not resolve to a file"
        );
        let e = v.read_required("/etc/dir").unwrap_err();
        assert_eq!(
            e,
            ReadRequiredError::NotRegular {
                path: "/etc/dir".to_string(),
                at: None
            }
        );
        assert_eq!(e.to_string(), "/etc/dir: is not a regular file");
        let e = v.read_required("/etc/to-dir").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/to-dir (at /etc/dir): is not a regular file"
        );
        let e = v.read_required("etc/dir").unwrap_err();
        assert_eq!(
            e,
            ReadRequiredError::BadPath(PathError::NotAbsolute("etc/dir".to_string()))
        );
        assert_eq!(
            e.to_string(),
            "\"etc/dir\" is not an absolute image path (start it with /)"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some(e.to_string().as_str()));
    }

    #[test]
    fn resolves_merged_usr_and_relative_links() {
        let v = MemView::new()
            .symlink("/lib", "usr/lib")
            .dir("/usr/lib/systemd/system")
            .file("/usr/lib/systemd/system/a.service", "[Unit]\n")
            .symlink(
                "/etc/systemd/system/b.service",
                "../../../lib/systemd/system/a.service",
            );
        assert_eq!(
            v.resolve_parent(&p("/lib/systemd/system/x")).as_str(),
            "/usr/lib/systemd/system/x"
        );
        assert_eq!(
            v.resolve(&p("/etc/systemd/system/b.service")).as_str(),
            "/usr/lib/systemd/system/a.service"
        );
        assert_eq!(
            v.read_text("/lib/systemd/system/a.service").unwrap(),
            "[Unit]\n"
        );
        assert_eq!(v.list("/lib/systemd/system"), ["a.service"]);
    }

    #[test]
    fn link_loops_stop() {
        let v = MemView::new().symlink("/a", "/b").symlink("/b", "/a");
        let _ = v.resolve(&p("/a/x"));
        assert!(!v.exists("/a/x"));
    }

    #[test]
    fn overlay_hides_whiteouts_and_shows_upper() {
        let lower = MemView::new()
            .file("/etc/machine-id", "x")
            .file("/etc/keep", "k");
        let mut t = FileTree::new();
        t.insert(p("/etc/machine-id"), Node::whiteout(Origin::default()))
            .unwrap();
        t.insert(p("/etc/new/f"), Node::file("n", Origin::default()))
            .unwrap();
        let o = Overlay {
            tree: &t,
            lower: &lower,
        };
        assert!(!o.exists("/etc/machine-id"));
        assert!(o.exists("/etc/new"));
        assert_eq!(o.read_text("/etc/new/f").unwrap(), "n");
        assert_eq!(o.list("/etc"), ["keep", "new"]);
    }

    #[test]
    fn land_follows_merged_usr_links() {
        let lower = MemView::new().symlink("/lib", "usr/lib").dir("/usr/lib");
        let mut t = FileTree::new();
        t.insert(
            p("/lib/systemd/system/x.service"),
            Node::file("", Origin::default()),
        )
        .unwrap();
        let t = land(t, &lower).unwrap();
        assert!(t.get_str("/usr/lib/systemd/system/x.service").is_some());
        let uppers = [t];
        let s = Stack {
            lower: &lower,
            uppers: &uppers,
        };
        assert!(s.exists("/lib/systemd/system/x.service"));
    }
}
