//! Files named by a recipe, read from the recipe's folder (never outside it).
//!
//! Each input is opened once, walking its path from the folder one component
//! at a time with `O_NOFOLLOW` relative to the folder handle opened before:
//! a symbolic link met on the way is resolved here, and followed only while
//! it stays inside the folder. The file must be a regular file (it is
//! opened with `O_NONBLOCK`, so a FIFO cannot stall the build before it is
//! refused). Everything that reads the input afterwards (the renderers, the
//! recipe digest, the layer packer) reads the same open handle, so replacing
//! the name in the folder after the check changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use nodeimg_layers::{InputCause, InputFile, Inputs};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// How many symbolic links one input may go through (as the kernel allows).
const MAX_LINKS: usize = 40;

/// Why an input could not be opened. The messages name the input as the
/// recipe wrote it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The name is empty.
    #[error("empty path")]
    Empty,
    /// An absolute host path.
    #[error("{0:?} is an absolute host path; inputs must be relative to the recipe's folder")]
    Absolute(String),
    /// A `..` component where none is allowed.
    #[error("{0:?} uses `..`; inputs must stay inside the recipe's folder")]
    ParentDir(String),
    /// `..` climbing above the folder, not through a link.
    #[error("{0:?} leaves the recipe's folder")]
    Leaves(String),
    /// A symbolic link leading out of the folder.
    #[error(
        "{rel:?} leads outside the recipe's folder through a symbolic link ({link} -> {target})"
    )]
    OutsideThroughLink {
        /// The input as written.
        rel: String,
        /// The link, relative to the folder.
        link: String,
        /// Its target, verbatim.
        target: String,
    },
    /// Too many links in a row (or a loop).
    #[error("{0:?} goes through more than {MAX_LINKS} symbolic links (a loop?)")]
    TooManyLinks(String),
    /// It is there, but not a regular file.
    #[error("{rel:?} is not a regular file but {what}")]
    NotRegular {
        /// The input as written.
        rel: String,
        /// What it is (`a FIFO`, `a folder`, ...).
        what: &'static str,
    },
    /// It was opened, but reading it failed (or it changed size meanwhile).
    #[error("{rel:?}: {source}")]
    Read {
        /// The input as written.
        rel: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// It cannot be opened (missing, no permission, a file used as folder).
    #[error("{rel:?} cannot be opened in {}: {source}", dir.display())]
    Open {
        /// The input as written.
        rel: String,
        /// The recipe's folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl InputError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            InputError::OutsideThroughLink { .. } | InputError::Leaves(_) => {
                "input files must stay inside the recipe's folder: copy the file into it, or point the link at a file inside it"
            }
            InputError::NotRegular { .. } => {
                "name a regular file inside the recipe's folder"
            }
            _ => "input files are named relative to the recipe's folder and must stay inside it",
        }
    }
}

/// An input opened by [`RecipeInputs::open_fragment`]: the file, its size
/// when opened, and its path inside the folder with every link resolved.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The open file.
    pub file: File,
    /// Its size when it was opened.
    pub size: u64,
    /// Where it is, relative to the folder, links resolved (`sub/frag.toml`).
    pub resolved: String,
}

/// The recipe's folder as a source of input files. Every input is opened
/// once (see the module documentation) and kept open; the names read are
/// remembered (for the recipe digest).
#[derive(Debug)]
pub struct RecipeInputs {
    dir: PathBuf,
    root: OwnedFd,
    opened: Mutex<BTreeMap<String, InputFile>>,
    used: Mutex<BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl RecipeInputs {
    /// Inputs from `dir` (canonicalised and opened here; it must exist).
    pub fn new(dir: &Path) -> std::io::Result<RecipeInputs> {
        let dir = dir.canonicalize()?;
        let root = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RecipeInputs {
            dir,
            root,
            opened: Mutex::new(BTreeMap::new()),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The canonical folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The input file `rel` names (relative, without `..`), opened on first
    /// use and kept open: every later call for the same name answers with
    /// the same handle.
    pub fn open(&self, rel: &str) -> Result<InputFile, InputError> {
        if let Some(f) = lock(&self.opened).get(rel) {
            return Ok(f.clone());
        }
        check_name(rel)?;
        if Path::new(rel)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(InputError::ParentDir(rel.to_string()));
        }
        let o = walk(&self.root, &self.dir, rel)?;
        let f = InputFile::new(Arc::new(o.file), o.size, rel);
        // Two threads opening the same name at once keep the first handle.
        Ok(lock(&self.opened)
            .entry(rel.to_string())
            .or_insert(f)
            .clone())
    }

    /// Open the recipe fragment at `rel`, a path relative to the folder
    /// that may use `..` as long as it stays inside. Not kept: the caller
    /// reads it once.
    pub(crate) fn open_fragment(&self, rel: &str) -> Result<Opened, InputError> {
        check_name(rel)?;
        walk(&self.root, &self.dir, rel)
    }

    /// The recipe-relative names read so far, sorted.
    pub fn used(&self) -> Vec<String> {
        lock(&self.used).iter().cloned().collect()
    }

    fn note(&self, rel: &str) {
        lock(&self.used).insert(rel.to_string());
    }
}

fn check_name(rel: &str) -> Result<(), InputError> {
    if rel.is_empty() {
        return Err(InputError::Empty);
    }
    let p = Path::new(rel);
    if p.is_absolute() || p.has_root() {
        return Err(InputError::Absolute(rel.to_string()));
    }
    Ok(())
}

/// What a file type is called in messages.
fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Symlink => "a symbolic link",
        _ => "not a file",
    }
}

/// Open `rel` below the folder handle `root` (whose canonical path is
/// `dir`), resolving symbolic links here, one component at a time, never
/// letting the kernel follow one.
fn walk(root: &OwnedFd, dir: &Path, rel: &str) -> Result<Opened, InputError> {
    let mut w = Walk {
        root,
        dir,
        rel,
        pending: rel
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(OsString::from)
            .collect(),
        dirs: Vec::new(),
        links: 0,
        last_link: None,
    };
    w.run()
}

/// The state of [`walk`].
struct Walk<'a> {
    root: &'a OwnedFd,
    dir: &'a Path,
    rel: &'a str,
    /// Components still to walk, the next one last.
    pending: Vec<OsString>,
    /// The folders walked into below `root`, by name, with their handles.
    dirs: Vec<(OsString, OwnedFd)>,
    /// Symbolic links followed so far.
    links: usize,
    /// The last link followed: an escape after it is its doing.
    last_link: Option<(String, String)>,
}

impl Walk<'_> {
    fn run(&mut self) -> Result<Opened, InputError> {
        while let Some(name) = self.pending.pop() {
            if name == "." {
                continue;
            }
            if name == ".." {
                self.up()?;
                continue;
            }
            let last = self.pending.is_empty();
            let mut flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NONBLOCK
                | OFlags::NOCTTY;
            if !last {
                flags |= OFlags::DIRECTORY;
            }
            match rustix::fs::openat(self.parent(), name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) if last => return self.file(fd, &name),
                Ok(fd) => self.dirs.push((name, fd)),
                // O_NOFOLLOW refuses a symbolic link with ELOOP (or ENOTDIR
                // with O_DIRECTORY): resolve it here.
                Err(e) if e == Errno::LOOP || e == Errno::NOTDIR => self.follow(&name, e)?,
                Err(e) => return Err(self.open_err(e.into())),
            }
        }
        // The path ended on a folder (`files/.`, a link to a folder, ...).
        Err(InputError::NotRegular {
            rel: self.rel.to_string(),
            what: "a folder",
        })
    }

    fn open_err(&self, source: std::io::Error) -> InputError {
        InputError::Open {
            rel: self.rel.to_string(),
            dir: self.dir.to_path_buf(),
            source,
        }
    }

    /// The folder the next component is opened in.
    fn parent(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dirs
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// The path walked so far, then `name`.
    fn here(&self, name: &OsStr) -> PathBuf {
        let mut p = PathBuf::new();
        for (n, _) in &self.dirs {
            p.push(n);
        }
        p.push(name);
        p
    }

    /// `..`: back out of the last folder, never above `root`.
    fn up(&mut self) -> Result<(), InputError> {
        if self.dirs.pop().is_none() {
            return Err(match &self.last_link {
                Some((link, target)) => InputError::OutsideThroughLink {
                    rel: self.rel.to_string(),
                    link: link.clone(),
                    target: target.clone(),
                },
                None => InputError::Leaves(self.rel.to_string()),
            });
        }
        Ok(())
    }

    /// The last component, opened: it must be a regular file.
    fn file(&self, fd: OwnedFd, name: &OsStr) -> Result<Opened, InputError> {
        let st = rustix::fs::fstat(&fd).map_err(|e| self.open_err(e.into()))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            if t == FileType::Directory {
                // `files/sub` as a source: say so plainly.
                return Err(InputError::NotRegular {
                    rel: self.rel.to_string(),
                    what: "a folder",
                });
            }
            return Err(InputError::NotRegular {
                rel: self.rel.to_string(),
                what: kind_name(t),
            });
        }
        Ok(Opened {
            file: File::from(fd),
            size: u64::try_from(st.st_size).unwrap_or(0),
            resolved: self.here(name).to_string_lossy().into_owned(),
        })
    }

    /// `name` could not be opened without following it (`e`): if it is a
    /// symbolic link, put its target's components in front of the rest.
    fn follow(&mut self, name: &OsStr, e: Errno) -> Result<(), InputError> {
        let is_link = rustix::fs::statat(self.parent(), name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
        if !is_link {
            return Err(self.open_err(e.into()));
        }
        self.links += 1;
        if self.links > MAX_LINKS {
            return Err(InputError::TooManyLinks(self.rel.to_string()));
        }
        let target = rustix::fs::readlinkat(self.parent(), name, Vec::new())
            .map_err(|e| self.open_err(e.into()))?;
        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
        let link = self.here(name).display().to_string();
        let shown = target.display().to_string();
        let rest = if target.is_absolute() {
            // An absolute link into the folder itself is fine.
            match target.strip_prefix(self.dir) {
                Ok(rest) => {
                    self.dirs.clear();
                    rest.to_path_buf()
                }
                Err(_) => {
                    return Err(InputError::OutsideThroughLink {
                        rel: self.rel.to_string(),
                        link,
                        target: shown,
                    })
                }
            }
        } else {
            target
        };
        for c in rest.components().rev() {
            match c {
                Component::Normal(n) => self.pending.push(n.to_os_string()),
                Component::ParentDir => self.pending.push(OsString::from("..")),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        self.last_link = Some((link, shown));
        Ok(())
    }
}

/// Read a file named on the command line (a `--mirrors` file, a mirror's
/// key): opened once, without blocking, and read only if it is a regular
/// file. Symbolic links are followed: the operator names these files.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(std::io::Error::other(format!(
            "not a regular file but {}",
            kind_name(t)
        )));
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut File::from(fd), &mut out)?;
    Ok(out)
}

impl Inputs for RecipeInputs {
    fn read(&self, rel: &str) -> Result<Vec<u8>, InputCause> {
        let f = self.open(rel)?;
        let b = f.read_all().map_err(|source| InputError::Read {
            rel: rel.to_string(),
            source,
        })?;
        self.note(rel);
        Ok(b)
    }

    fn host_file(&self, rel: &str) -> Result<InputFile, InputCause> {
        let f = self.open(rel)?;
        self.note(rel);
        Ok(f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn stays_inside() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("recipe");
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/a"), "A").unwrap();
        std::fs::write(root.path().join("secret"), "S").unwrap();
        symlink(root.path().join("secret"), dir.join("link")).unwrap();
        symlink("../secret", dir.join("rel-link")).unwrap();
        symlink("..", dir.join("up")).unwrap();
        let inp = RecipeInputs::new(&dir).unwrap();
        assert_eq!(inp.read("files/a").unwrap(), b"A");
        assert_eq!(inp.host_file("files/a").unwrap().size(), 1);
        assert!(inp
            .read("../secret")
            .unwrap_err()
            .to_string()
            .contains("`..`"));
        assert!(inp
            .read("files/../../secret")
            .unwrap_err()
            .to_string()
            .contains("`..`"));
        let abs = root.path().join("secret");
        assert!(inp
            .read(abs.to_str().unwrap())
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        for l in ["link", "rel-link", "up/secret"] {
            let e = inp.read(l).unwrap_err().to_string();
            assert!(
                e.contains("outside") && e.contains("symbolic link"),
                "{l}: {e}"
            );
        }
        assert!(inp
            .read("missing")
            .unwrap_err()
            .to_string()
            .contains("cannot be opened"));
        assert!(inp
            .read("files")
            .unwrap_err()
            .to_string()
            .contains("not a regular file but a folder"));
        assert_eq!(inp.used(), vec!["files/a".to_string()]);
    }

    #[test]
    fn links_inside_are_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("recipe");
        std::fs::create_dir_all(dir.join("files/sub")).unwrap();
        std::fs::write(dir.join("files/sub/a"), "A").unwrap();
        symlink("sub/a", dir.join("files/alias")).unwrap();
        symlink("files/sub", dir.join("d")).unwrap();
        symlink("../../d/../alias", dir.join("files/sub/back")).unwrap();
        let canon = dir.canonicalize().unwrap();
        symlink(canon.join("files/sub/a"), dir.join("abs")).unwrap();
        symlink("loop", dir.join("loop")).unwrap();
        let inp = RecipeInputs::new(&dir).unwrap();
        for rel in ["files/alias", "d/a", "files/sub/back", "abs", "./d/./a"] {
            assert_eq!(inp.read(rel).unwrap(), b"A", "{rel}");
        }
        assert!(inp
            .read("loop")
            .unwrap_err()
            .to_string()
            .contains("symbolic links"));
        assert!(inp
            .read("files/alias/x")
            .unwrap_err()
            .to_string()
            .contains("cannot be opened"));
        let f = inp.open_fragment("files/sub/../alias").unwrap();
        assert_eq!(f.resolved, "files/sub/a");
        assert!(matches!(
            inp.open_fragment("files/../../x").unwrap_err(),
            InputError::Leaves(_)
        ));
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let inp = RecipeInputs::new(root.path()).unwrap();
        let e = inp.read("pipe").unwrap_err();
        // The walk's own error is the cause, typed.
        assert!(
            matches!(
                e.downcast_ref::<InputError>(),
                Some(InputError::NotRegular { .. })
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("not a regular file but a FIFO"), "{e}");
    }

    #[test]
    fn one_handle_per_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a"), "first").unwrap();
        std::fs::write(root.path().join("outside"), "OUTSIDE").unwrap();
        let inp = RecipeInputs::new(root.path()).unwrap();
        let a = inp.open("a").unwrap();
        // The name now leads elsewhere; the input is what was opened.
        std::fs::remove_file(root.path().join("a")).unwrap();
        symlink(root.path().join("outside"), root.path().join("a")).unwrap();
        assert_eq!(inp.open("a").unwrap(), a);
        assert_eq!(inp.read("a").unwrap(), b"first");
    }
}
