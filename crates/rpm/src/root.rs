//! The image below a layer, materialised in a temporary directory so the
//! image's own `rpm` can run in it (as the root of its sandbox, see
//! [`nodeimg_pkg::sandbox`]).
//!
//! The base's layer tars are extracted in order, streaming, with their
//! whiteouts and opaque folders applied; the result is then brought in
//! line with the layer's view of the image (the recipe's earlier layers and
//! this layer's items): entries the view does not have are removed, and
//! folders, symlinks and the files whose bytes the view holds (every file
//! a recipe layer wrote) are written. Owners are not kept (the extraction
//! runs as the caller); modes are, with the owner's read and write bits
//! added so the tree can be cleaned up. Device nodes are skipped.
//!
//! Every path is resolved inside the temporary root: a symlink of the
//! image (absolute or with `..`) never leads outside it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nodeimg_layers::{ImagePath, RootView, StatKind};

use nodeimg_image::base::BaseTars;
use nodeimg_image::error::EntryError;
use nodeimg_image::tarindex::{parse_entry, Kind, Parsed};

/// What materialising did, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries extracted from the base's tars.
    pub base_entries: u64,
    /// Bytes of file content extracted from the base's tars.
    pub base_bytes: u64,
    /// Entries written or removed to match the layer's view.
    pub view_changes: u64,
}

/// The host path of `components` resolved inside `root`: symlinks among
/// them (the last one too when `follow_last`) are followed as the image
/// would, an absolute target restarting at `root` and `..` stopping there.
/// Missing components are kept as they are. Gives up after 40 links.
pub(crate) fn resolve_in_root(
    root: &Path,
    path: &str,
    follow_last: bool,
) -> Result<Vec<String>, PlaceError> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        if pending.is_empty() && !follow_last {
            cur.push(c);
            break;
        }
        let host = host_of(root, &cur).join(&c);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(PlaceError::SymlinkLoop {
                        path: path.to_string(),
                    });
                }
                let target = fs::read_link(&host).map_err(|source| PlaceError::Host {
                    host: host.clone(),
                    source,
                })?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                pending.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(str::to_string),
                );
            }
            _ => cur.push(c),
        }
    }
    Ok(cur)
}

fn host_of(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

/// Why a path of the image cannot be placed inside the materialised root.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The path goes through more than 40 symlinks.
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The path inside the image.
        path: String,
    },
    /// A symlink cannot be read, or a folder created, on the host.
    #[error("{}: {source}", .host.display())]
    Host {
        /// The host path.
        host: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Why an entry of a base layer cannot be written into the root.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Removing what is there, or writing the entry, failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The tar stream ends inside the file's data.
    #[error("the tar entry ends after {written} of {size} bytes")]
    Short {
        /// Bytes written.
        written: u64,
        /// Bytes the entry's header announces.
        size: u64,
    },
    /// A hard link's target cannot be placed.
    #[error("{0}")]
    Place(#[from] PlaceError),
    /// A hard link can neither be made nor its target copied.
    #[error("hard link to {target}: {source}")]
    HardLink {
        /// The link's target, inside the image.
        target: String,
        /// Why copying it failed.
        #[source]
        source: io::Error,
    },
}

/// Why the image below a layer cannot be materialised for rpm.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// A layer of the base cannot be opened.
    #[error("materialising {layer}: {source}")]
    Open {
        /// The layer, as messages name it.
        layer: String,
        /// Why it cannot be opened: a [`nodeimg_image::Error`], boxed so
        /// this error stays small.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The layer is not a tar stream.
    #[error("materialising {layer}: not a tar stream: {source}")]
    NotTar {
        /// The layer, as messages name it.
        layer: String,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },
    /// The layer's tar stream breaks off or is malformed.
    #[error("materialising {layer}: broken tar stream: {source}")]
    BrokenTar {
        /// The layer, as messages name it.
        layer: String,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },
    /// A tar entry of the layer is refused.
    #[error("materialising {layer}: {source}")]
    Entry {
        /// The layer, as messages name it.
        layer: String,
        /// Why the entry is refused.
        #[source]
        source: EntryError,
    },
    /// An entry's path cannot be placed inside the root.
    #[error("materialising {layer}: {source}")]
    Place {
        /// The layer, as messages name it.
        layer: String,
        /// Why.
        #[source]
        source: PlaceError,
    },
    /// An entry (or a whiteout) cannot be applied.
    #[error("materialising {layer}: {path}: {source}")]
    Write {
        /// The layer, as messages name it.
        layer: String,
        /// The entry's path inside the image.
        path: String,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// Bringing the root in line with the layer's view failed on the host.
    #[error("materialising {path} of the image: {source}")]
    View {
        /// The path inside the image (or the name in its folder).
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A name the view lists does not make a path of the image.
    #[error("materialising {name} of the image: {source}")]
    ViewPath {
        /// The name in its folder.
        name: String,
        /// Why it is not a path.
        #[source]
        source: nodeimg_layers::PathError,
    },
}

pub use nodeimg_pkg::sandbox::remove_tree;

fn remove_any(p: &Path) -> io::Result<()> {
    remove_tree(p)
}

fn dir_mode(mode: u32) -> fs::Permissions {
    fs::Permissions::from_mode((mode & 0o7777) | 0o700)
}

fn file_mode(mode: u32) -> fs::Permissions {
    fs::Permissions::from_mode((mode & 0o7777) | 0o600)
}

/// Where the entry `path` of the image goes on the host: its parent
/// resolved inside `root` (and created), its own name kept.
fn place(root: &Path, path: &str) -> Result<PathBuf, PlaceError> {
    let comps = resolve_in_root(root, path, false)?;
    let Some((name, parent)) = comps.split_last() else {
        return Ok(root.to_path_buf());
    };
    let dir = host_of(root, parent);
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(|source| PlaceError::Host {
            host: dir.clone(),
            source,
        })?;
    }
    Ok(dir.join(name))
}

/// Extracts the base's layers into `root`, in order, applying whiteouts.
pub(crate) fn extract_base(base: &BaseTars, root: &Path) -> Result<Counts, RootError> {
    let mut counts = Counts::default();
    for i in 0..base.len() {
        let layer = format!("{} layer {}", base.what(), i + 1);
        let layer = layer.as_str();
        let placed = |source| RootError::Place {
            layer: layer.to_string(),
            source,
        };
        let write = |path: &str, source| RootError::Write {
            layer: layer.to_string(),
            path: path.to_string(),
            source,
        };
        let r = base.open(i).map_err(|source| RootError::Open {
            layer: layer.to_string(),
            source: Box::new(source),
        })?;
        let mut archive = nodeimg_image::limits::tar_archive(r);
        let entries = archive.entries().map_err(|source| RootError::NotTar {
            layer: layer.to_string(),
            source,
        })?;
        for (ord, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|source| RootError::BrokenTar {
                layer: layer.to_string(),
                source,
            })?;
            let parsed = parse_entry(&mut entry, i as u32, ord as u64, None).map_err(|source| {
                RootError::Entry {
                    layer: layer.to_string(),
                    source,
                }
            })?;
            match parsed {
                Parsed::Skip => {}
                Parsed::Whiteout(p) => {
                    let host = place(root, &p).map_err(placed)?;
                    remove_any(&host).map_err(|e| write(&p, e.into()))?;
                }
                Parsed::Opaque(p) => {
                    let comps = resolve_in_root(root, &p, true).map_err(placed)?;
                    let host = host_of(root, &comps);
                    if let Ok(rd) = fs::read_dir(&host) {
                        for e in rd.flatten() {
                            remove_any(&e.path()).map_err(|e| write(&p, e.into()))?;
                        }
                    }
                }
                Parsed::Entry(p, rec) => {
                    if p == "/" {
                        continue;
                    }
                    counts.base_entries += 1;
                    let host = place(root, &p).map_err(placed)?;
                    write_entry(root, &host, &rec.kind, rec.meta.mode, &mut entry)
                        .map_err(|e| write(&p, e))?;
                    if let Kind::File(size) = rec.kind {
                        counts.base_bytes += size;
                    }
                }
            }
        }
        // Read to the end: the layer's reader checks it was the tar the
        // base was indexed from.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|source| {
            RootError::BrokenTar {
                layer: layer.to_string(),
                source,
            }
        })?;
    }
    Ok(counts)
}

fn write_entry(
    root: &Path,
    host: &Path,
    kind: &Kind,
    mode: u32,
    data: &mut dyn Read,
) -> Result<(), WriteError> {
    let io = WriteError::Io;
    let existing = fs::symlink_metadata(host).ok();
    match kind {
        Kind::Dir => {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                remove_any(host).map_err(io)?;
                fs::create_dir(host).map_err(io)?;
            }
            fs::set_permissions(host, dir_mode(mode)).map_err(io)?;
        }
        Kind::File(size) => {
            remove_any(host).map_err(io)?;
            let f = File::options()
                .write(true)
                .create_new(true)
                .open(host)
                .map_err(io)?;
            let mut w = BufWriter::new(f);
            let n = io::copy(&mut data.take(*size), &mut w).map_err(io)?;
            if n != *size {
                return Err(WriteError::Short {
                    written: n,
                    size: *size,
                });
            }
            w.flush().map_err(io)?;
            fs::set_permissions(host, file_mode(mode)).map_err(io)?;
        }
        Kind::Symlink(t) => {
            remove_any(host).map_err(io)?;
            std::os::unix::fs::symlink(t, host).map_err(io)?;
        }
        Kind::Hardlink(t) => {
            let target = place(root, t)?;
            remove_any(host).map_err(io)?;
            if fs::hard_link(&target, host).is_err() {
                fs::copy(&target, host).map_err(|source| WriteError::HardLink {
                    target: t.clone(),
                    source,
                })?;
            }
        }
        // Device nodes, fifos, sockets: not needed to run rpm, and an
        // unprivileged caller cannot create device nodes.
        Kind::Other(..) => {}
    }
    Ok(())
}

/// Brings the tree at `root` in line with `view`, below `dir` (a folder
/// of the view, and a real folder of `root`). `skip` is left as it is.
pub(crate) fn match_view(
    view: &dyn RootView,
    root: &Path,
    dir: &ImagePath,
    skip: &ImagePath,
    counts: &mut Counts,
) -> Result<(), RootError> {
    let host_dir = root.join(dir.relative());
    let err = |p: &str, source: io::Error| RootError::View {
        path: p.to_string(),
        source,
    };
    let names = view.list_raw(dir);
    let mut present: Vec<String> = fs::read_dir(&host_dir)
        .map_err(|e| err(dir.as_str(), e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    present.sort();
    for n in present {
        if names.binary_search(&n).is_err() {
            remove_any(&host_dir.join(&n)).map_err(|e| err(&n, e))?;
            counts.view_changes += 1;
        }
    }
    for n in names {
        let path = dir.join(&n).map_err(|source| RootError::ViewPath {
            name: n.clone(),
            source,
        })?;
        if &path == skip {
            continue;
        }
        let Some(stat) = view.stat(&path) else {
            continue;
        };
        let host = host_dir.join(&n);
        let existing = fs::symlink_metadata(&host).ok();
        let e = |x: io::Error| err(path.as_str(), x);
        match &stat.kind {
            StatKind::Dir => {
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    remove_any(&host).map_err(e)?;
                    fs::create_dir(&host).map_err(e)?;
                    fs::set_permissions(&host, dir_mode(stat.meta.mode)).map_err(e)?;
                    counts.view_changes += 1;
                }
                match_view(view, root, &path, skip, counts)?;
            }
            StatKind::Symlink(t) => {
                let same = existing
                    .as_ref()
                    .is_some_and(|m| m.file_type().is_symlink())
                    && fs::read_link(&host).is_ok_and(|l| l.as_os_str() == t.as_str());
                if !same {
                    remove_any(&host).map_err(e)?;
                    std::os::unix::fs::symlink(t, &host).map_err(e)?;
                    counts.view_changes += 1;
                }
            }
            StatKind::File(_) => {
                // The view holds the bytes of every file a recipe layer
                // wrote (and of the few base files it keeps): those are
                // written when they differ; any other file is the base's.
                let Some(bytes) = view.read_raw(&path) else {
                    continue;
                };
                let same = existing
                    .as_ref()
                    .is_some_and(|m| m.is_file() && m.len() == bytes.len() as u64)
                    && fs::read(&host).is_ok_and(|b| b == bytes);
                if !same {
                    remove_any(&host).map_err(e)?;
                    fs::write(&host, &bytes).map_err(e)?;
                    fs::set_permissions(&host, file_mode(stat.meta.mode)).map_err(e)?;
                    counts.view_changes += 1;
                }
            }
            StatKind::Other => {}
        }
    }
    Ok(())
}

/// The rpm executable of the image, as a path inside it: `/usr/bin/rpm`
/// or `/bin/rpm`, when the view has a regular file there (through its
/// symlinks).
pub(crate) fn image_rpm(view: &dyn RootView) -> Option<&'static str> {
    ["/usr/bin/rpm", "/bin/rpm"].into_iter().find(|p| {
        ImagePath::new(p)
            .ok()
            .and_then(|ip| view.stat_follow(&ip))
            .is_some_and(|s| matches!(s.kind, StatKind::File(_)))
    })
}

/// Materialises the image `view` shows (the base `base` under the recipe's
/// layers) into `root`, leaving out the folder `skip` (the rpm database,
/// written from the view by its caller).
pub(crate) fn materialise_root(
    base: &BaseTars,
    view: &dyn RootView,
    root: &Path,
    skip: &ImagePath,
) -> Result<Counts, RootError> {
    let mut counts = extract_base(base, root)?;
    match_view(view, root, &ImagePath::root(), skip, &mut counts)?;
    Ok(counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("usr/up")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/lib/x", true).unwrap(),
            ["usr", "lib", "x"]
        );
        assert_eq!(resolve_in_root(r, "/lib", false).unwrap(), ["lib"]);
        assert_eq!(
            resolve_in_root(r, "/usr/up/passwd", true).unwrap(),
            ["etc", "passwd"]
        );
        assert!(resolve_in_root(r, "/loop/x", true)
            .unwrap_err()
            .to_string()
            .contains("too many levels"));
        // A file written through an absolute symlink lands in the root.
        let host = place(r, "/lib/libx.so").unwrap();
        assert_eq!(host, r.join("usr/lib/libx.so"));
        let host = place(r, "/usr/up/shadow").unwrap();
        assert_eq!(host, r.join("etc/shadow"));
        assert!(r.join("etc").is_dir());
    }

    #[test]
    fn host_errors_keep_their_io_cause() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::write(r.join("a"), "a file, not a folder").unwrap();
        // A folder cannot be made below a file.
        let e = place(r, "/a/b/c").unwrap_err();
        let PlaceError::Host { host, source } = &e else {
            panic!("{e}");
        };
        assert_eq!(host, &r.join("a/b"));
        assert_eq!(
            e.to_string(),
            format!("{}: {source}", r.join("a/b").display())
        );
        assert!(std::error::Error::source(&e).unwrap().is::<io::Error>());
        // The view's folder is missing from the root.
        let view = nodeimg_layers::MemView::new().dir("/etc");
        let missing = r.join("missing");
        let skip = ImagePath::new("/var/lib/rpm").unwrap();
        let mut counts = Counts::default();
        let e = match_view(&view, &missing, &ImagePath::root(), &skip, &mut counts).unwrap_err();
        let source = crate::testutil::io_cause(&e);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!("materialising / of the image: {source}")
        );
    }

    #[test]
    fn a_layer_that_cannot_be_opened_is_named_with_its_cause() {
        let t = tempfile::tempdir().unwrap();
        let tarfile = t.path().join("base.tar");
        fs::write(&tarfile, tar_of(&[("etc/", tar::EntryType::Directory, "")])).unwrap();
        let base = nodeimg_image::base::Base::open(&nodeimg_image::base::BaseRef::Rootfs {
            file: tarfile.clone(),
        })
        .unwrap();
        let tars = base.tars();
        fs::remove_file(&tarfile).unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let e = extract_base(&tars, &root).unwrap_err();
        assert!(matches!(e, RootError::Open { .. }), "{e}");
        let source = std::error::Error::source(&e).unwrap();
        let image = source.downcast_ref::<nodeimg_image::Error>().unwrap();
        assert_eq!(
            e.to_string(),
            format!("materialising {} layer 1: {image}", tars.what())
        );
    }

    #[test]
    fn view_changes_are_applied() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("etc/old")).unwrap();
        fs::write(r.join("etc/old/x"), "x").unwrap();
        fs::write(r.join("etc/passwd"), "root\n").unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("usr/bin/big"), "base bytes").unwrap();
        fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
        fs::write(r.join("var/lib/rpm/keep"), "k").unwrap();
        let view = nodeimg_layers::MemView::new()
            .file("/etc/passwd", "root\nsvc\n")
            .file("/etc/new.conf", "a=1\n")
            .dir("/usr/bin")
            .symlink("/bin", "usr/bin")
            .dir("/var/lib/rpm");
        // /usr/bin/big is a base file whose bytes the view does not hold:
        // MemView lists only what it has, so the stand-in is a bigger view.
        let mut counts = Counts::default();
        let skip = ImagePath::new("/var/lib/rpm").unwrap();
        match_view(&view, r, &ImagePath::root(), &skip, &mut counts).unwrap();
        assert_eq!(
            fs::read_to_string(r.join("etc/passwd")).unwrap(),
            "root\nsvc\n"
        );
        assert_eq!(fs::read_to_string(r.join("etc/new.conf")).unwrap(), "a=1\n");
        assert!(!r.join("etc/old").exists());
        assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(!r.join("usr/bin/big").exists());
        assert_eq!(fs::read_to_string(r.join("var/lib/rpm/keep")).unwrap(), "k");
        assert_eq!(counts.view_changes, 5);
        // A second pass changes nothing.
        let mut again = Counts::default();
        match_view(&view, r, &ImagePath::root(), &skip, &mut again).unwrap();
        assert_eq!(again.view_changes, 0);
    }

    #[test]
    fn finds_the_image_rpm() {
        let v = nodeimg_layers::MemView::new()
            .symlink("/bin", "usr/bin")
            .file("/usr/bin/rpm", "#!/bin/sh\n");
        assert_eq!(image_rpm(&v), Some("/usr/bin/rpm"));
        let v = nodeimg_layers::MemView::new().file("/bin/rpm", "x");
        assert_eq!(image_rpm(&v), Some("/bin/rpm"));
        let v = nodeimg_layers::MemView::new().dir("/usr/bin/rpm");
        assert_eq!(image_rpm(&v), None);
        assert_eq!(image_rpm(&nodeimg_layers::MemView::new()), None);
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o555
            } else {
                0o644
            });
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn base_layers_are_extracted_inside_the_root() {
        use tar::EntryType as T;
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        let tarfile = t.path().join("base.tar");
        std::fs::write(
            &tarfile,
            tar_of(&[
                ("usr/", T::Directory, ""),
                ("usr/lib/", T::Directory, ""),
                ("lib", T::Symlink, "/usr/lib"),
                ("lib/libx.so", T::Regular, "elf"),
                ("usr/lib/liby.so", T::Link, "usr/lib/libx.so"),
                ("escape", T::Symlink, outside.to_str().unwrap()),
                ("escape/owned", T::Regular, "no"),
                ("up", T::Symlink, "../../../.."),
                ("up/etc/passwd", T::Regular, "root\n"),
                ("dev/null", T::Char, ""),
            ]),
        )
        .unwrap();
        let base = nodeimg_image::base::Base::open(&nodeimg_image::base::BaseRef::Rootfs {
            file: tarfile,
        })
        .unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let counts = extract_base(&base.tars(), &root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("usr/lib/libx.so")).unwrap(),
            "elf"
        );
        assert_eq!(
            fs::read_to_string(root.join("usr/lib/liby.so")).unwrap(),
            "elf"
        );
        assert_eq!(
            fs::read_link(root.join("lib")).unwrap(),
            Path::new("/usr/lib")
        );
        // Through the symlinks, but inside the root.
        let escaped = root.join(outside.strip_prefix("/").unwrap()).join("owned");
        assert_eq!(fs::read_to_string(escaped).unwrap(), "no");
        assert!(!outside.exists());
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "root\n"
        );
        assert!(!root.join("dev/null").exists());
        // Read-only folders of the image stay writable by the owner.
        let m = fs::metadata(root.join("usr")).unwrap().permissions().mode();
        assert_eq!(m & 0o7777, 0o755);
        assert_eq!(counts.base_entries, 10);
        assert_eq!(counts.base_bytes, 3 + 2 + 5);
    }
}
