//! Packing a layer tree into a tar stream: sorted entries, parent
//! directories present, owners and modes as declared, one fixed mtime
//! (except for entries that keep their package's), whiteouts in OCI form.
//! Streams: file contents are copied, never held.

use std::collections::BTreeMap;
use std::io::Write;

use nodeimg_layers::{Content, FileTree, ImagePath, Meta, Node, NodeKind, RootView, StatKind};

use crate::error::{Error, IoContext, Result};
use crate::tarstream::{copy_exact, write_end, write_header, write_padding, EntryHeader};

/// Write `tree` as an (uncompressed) tar stream to `w`. Missing parent
/// directories take their owner and mode from `below` when it has them,
/// else root 0755. Every entry gets `mtime`, except those whose node carries
/// its own (a package's file keeps the time its package records).
pub fn write_tar<W: Write>(tree: &FileTree, below: &dyn RootView, mtime: u64, w: W) -> Result<W> {
    let mut w = w;
    let links = hardlink_groups(tree)?;
    let parents = tree.missing_parents();
    let mut parents = parents.into_iter().peekable();
    for (path, node) in tree.iter() {
        while let Some(p) = parents.next_if(|p| p < path) {
            write_parent(&mut w, &p, below, mtime)?;
        }
        write_node(&mut w, tree, &links, path, node, mtime)?;
    }
    for p in parents {
        write_parent(&mut w, &p, below, mtime)?;
    }
    write_end(&mut w).ctx(|| "writing a layer tar".to_string())?;
    Ok(w)
}

/// For every member of a hard link group (the target and the links to it),
/// the member that carries the content: the first in path order, so the
/// archive always names a link's target before the link.
fn hardlink_groups(tree: &FileTree) -> Result<BTreeMap<ImagePath, (ImagePath, ImagePath)>> {
    // target -> members
    let mut groups: BTreeMap<&ImagePath, Vec<&ImagePath>> = BTreeMap::new();
    for (p, n) in tree.iter() {
        if let NodeKind::Hardlink(t) = &n.kind {
            match tree.get(t).map(|n| &n.kind) {
                Some(NodeKind::File(_)) => {}
                _ => {
                    return Err(Error::image(
                        "layer",
                        format!(
                            "hard link {p} points at {t}, which is not a regular file of the same layer"
                        ),
                    ))
                }
            }
            groups.entry(t).or_insert_with(|| vec![t]).push(p);
        }
    }
    let mut out = BTreeMap::new();
    for (target, members) in groups {
        let leader = members.iter().min().copied().unwrap_or(target);
        for m in members {
            out.insert(m.clone(), (leader.clone(), target.clone()));
        }
    }
    Ok(out)
}

fn tar_name(path: &ImagePath, dir: bool) -> Vec<u8> {
    if path.is_root() {
        return b"./".to_vec();
    }
    let mut n = crate::tarname::encode(path.relative()).into_owned();
    if dir {
        n.push(b'/');
    }
    n
}

fn io_err(path: &ImagePath) -> impl FnOnce() -> String + '_ {
    move || format!("packing {path}")
}

fn write_parent(w: &mut dyn Write, p: &ImagePath, below: &dyn RootView, mtime: u64) -> Result<()> {
    let meta = match below.stat(p) {
        Some(s) => match s.kind {
            StatKind::Dir => s.meta,
            StatKind::Symlink(t) => {
                return Err(Error::image(
                    "layer",
                    format!(
                        "{p} is a symlink to {t:?} in the image below; entries under it must be \
                         moved to where the link points before packing"
                    ),
                ))
            }
            _ => Meta::DIR,
        },
        None => Meta::DIR,
    };
    let name = tar_name(p, true);
    write_header(w, &entry(&name, tar::EntryType::Directory, meta, mtime)).ctx(io_err(p))
}

fn empty_file(w: &mut dyn Write, name: &[u8], meta: Meta, mtime: u64) -> std::io::Result<()> {
    write_header(w, &entry(name, tar::EntryType::Regular, meta, mtime))
}

fn write_content(w: &mut dyn Write, path: &ImagePath, c: &Content) -> Result<()> {
    match c {
        Content::Bytes(b) => w.write_all(b).ctx(io_err(path)),
        Content::Host { path: host, size } => {
            let mut f = std::fs::File::open(host)
                .ctx(|| format!("opening {} for {path}", host.display()))?;
            let now = f
                .metadata()
                .ctx(|| format!("reading {} for {path}", host.display()))?
                .len();
            if now != *size {
                return Err(Error::Io {
                    context: format!("packing {path}"),
                    source: std::io::Error::other(format!(
                        "{} changed size during the build ({size} bytes when checked, {now} now); \
                         run the build again",
                        host.display()
                    )),
                });
            }
            copy_exact(&mut f, w, *size).ctx(|| format!("copying {} into {path}", host.display()))
        }
        // A recipe input: streamed from the handle it was checked (and
        // hashed into the recipe digest) through, never opened again.
        Content::Input(input) => {
            let name = input.name();
            let size = input.size();
            let now = input
                .file()
                .metadata()
                .ctx(|| format!("reading the recipe input {name} for {path}"))?
                .len();
            if now != size {
                return Err(Error::Io {
                    context: format!("packing {path}"),
                    source: std::io::Error::other(format!(
                        "the recipe input {name} changed size during the build ({size} bytes when opened, {now} now); \
                         run the build again"
                    )),
                });
            }
            copy_exact(&mut input.reader(), w, size)
                .ctx(|| format!("copying the recipe input {name} into {path}"))
        }
    }
}

/// A digest of what `tree` holds, whatever its layer is packed over:
/// every path with its kind, owner, mode, link target and the SHA-256 of
/// its content (origins are left out). Two trees with the same digest pack
/// the same tar over the same image.
pub fn tree_digest(tree: &FileTree) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for (path, node) in tree.iter() {
        let m = node.meta;
        h.update(format!(
            "{}\0{:o} {} {}\0",
            path.as_str(),
            m.mode,
            m.uid,
            m.gid
        ));
        if let Some(t) = node.mtime {
            h.update(format!("mtime {t}\0"));
        }
        match &node.kind {
            NodeKind::File(c) => {
                let mut ch = crate::tarstream::HashWriter::new(std::io::sink());
                write_content(&mut ch, path, c)?;
                let (_, d, n) = ch.finish();
                h.update(format!("file {n} {d}"));
            }
            NodeKind::Dir => h.update("dir"),
            NodeKind::Symlink(t) => h.update(format!("symlink {t}")),
            NodeKind::Hardlink(t) => h.update(format!("hardlink {}", t.as_str())),
            NodeKind::Whiteout => h.update("whiteout"),
            NodeKind::Opaque => h.update("opaque"),
        }
        h.update(b"\n");
    }
    Ok(crate::tarstream::sha256_digest(h))
}

/// The header of an entry named `name`: no content, no link target, no
/// device numbers. Entries that have them say so with `..entry(..)`.
fn entry(name: &[u8], kind: tar::EntryType, meta: Meta, mtime: u64) -> EntryHeader<'_> {
    EntryHeader {
        name,
        kind,
        meta,
        size: 0,
        mtime,
        link: None,
        device: (0, 0),
    }
}

fn write_node(
    w: &mut dyn Write,
    tree: &FileTree,
    links: &BTreeMap<ImagePath, (ImagePath, ImagePath)>,
    path: &ImagePath,
    node: &Node,
    mtime: u64,
) -> Result<()> {
    use tar::EntryType as T;
    let name = tar_name(path, false);
    let mtime = node.mtime.unwrap_or(mtime);
    if let Some((leader, target)) = links.get(path) {
        let Some(Node {
            kind: NodeKind::File(c),
            meta,
            mtime: target_mtime,
            ..
        }) = tree.get(target)
        else {
            return Ok(());
        };
        let mtime = target_mtime.unwrap_or(mtime);
        if leader == path {
            let h = EntryHeader {
                size: c.len(),
                ..entry(&name, T::Regular, *meta, mtime)
            };
            write_header(w, &h).ctx(io_err(path))?;
            write_content(w, path, c)?;
            return write_padding(w, c.len()).ctx(io_err(path));
        }
        let lname = crate::tarname::encode(leader.relative());
        let h = EntryHeader {
            link: Some(&lname),
            ..entry(&name, T::Link, *meta, mtime)
        };
        return write_header(w, &h).ctx(io_err(path));
    }
    match &node.kind {
        NodeKind::File(c) => {
            let h = EntryHeader {
                size: c.len(),
                ..entry(&name, T::Regular, node.meta, mtime)
            };
            write_header(w, &h).ctx(io_err(path))?;
            write_content(w, path, c)?;
            write_padding(w, c.len()).ctx(io_err(path))
        }
        NodeKind::Dir | NodeKind::Opaque => {
            let dname = tar_name(path, true);
            write_header(w, &entry(&dname, T::Directory, node.meta, mtime)).ctx(io_err(path))?;
            if node.kind == NodeKind::Opaque {
                let mut marker = if path.is_root() { Vec::new() } else { dname };
                marker.extend_from_slice(b".wh..wh..opq");
                let meta = Meta {
                    mode: 0o644,
                    ..node.meta
                };
                empty_file(w, &marker, meta, mtime).ctx(io_err(path))?;
            }
            Ok(())
        }
        NodeKind::Symlink(t) => {
            let target = crate::tarname::encode(t);
            let h = EntryHeader {
                link: Some(&target),
                ..entry(&name, T::Symlink, node.meta, mtime)
            };
            write_header(w, &h).ctx(io_err(path))
        }
        NodeKind::Hardlink(_) => Ok(()),
        NodeKind::Whiteout => {
            let parent = path.parent().unwrap_or_else(ImagePath::root);
            let mut wname = if parent.is_root() {
                Vec::new()
            } else {
                tar_name(&parent, true)
            };
            wname.extend_from_slice(b".wh.");
            wname.extend_from_slice(&crate::tarname::encode(path.file_name()));
            empty_file(w, &wname, node.meta, mtime).ctx(io_err(path))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_layers::tree::Origin;
    use nodeimg_layers::MemView;
    use std::io::Read;

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[derive(Debug, PartialEq)]
    struct E {
        name: String,
        kind: char,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        size: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn entries(bytes: &[u8]) -> Vec<E> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                assert_eq!(h.username_bytes().unwrap_or_default(), b"");
                assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
                assert_eq!(h.device_major().unwrap(), Some(0));
                E {
                    name: String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                    kind: h.entry_type().as_byte() as char,
                    mode: h.mode().unwrap(),
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    mtime: h.mtime().unwrap(),
                    size: h.size().unwrap(),
                    link: e
                        .link_name_bytes()
                        .map(|l| String::from_utf8(l.to_vec()).unwrap()),
                    data,
                }
            })
            .collect()
    }

    fn o() -> Origin {
        Origin::new("file", "file[0]")
    }

    #[test]
    fn headers_are_exact_and_sorted_with_parents() {
        let mut t = FileTree::new();
        t.insert(
            p("/etc/sysctl.d/99-k8s.conf"),
            Node::file("a=1\n", o()).with_meta(Meta {
                mode: 0o4600,
                uid: 1000,
                gid: 2000,
            }),
        )
        .unwrap();
        t.insert(p("/etc/machine-id"), Node::whiteout(o())).unwrap();
        t.insert(p("/usr/bin/x"), Node::symlink("../lib/x", o()))
            .unwrap();
        t.insert(
            p("/opt/o"),
            Node {
                kind: NodeKind::Opaque,
                meta: Meta::mode(0o700),
                origin: o(),
                mtime: None,
            },
        )
        .unwrap();
        let below = MemView::new().dir("/etc").dir("/usr/bin");
        let bytes = write_tar(&t, &below, 1234, Vec::new()).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let es = entries(&bytes);
        let names: Vec<_> = es.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/.wh.machine-id",
                "etc/sysctl.d/",
                "etc/sysctl.d/99-k8s.conf",
                "opt/",
                "opt/o/",
                "opt/o/.wh..wh..opq",
                "usr/",
                "usr/bin/",
                "usr/bin/x",
            ]
        );
        assert!(es.iter().all(|e| e.mtime == 1234));
        let f = &es[3];
        assert_eq!(
            (f.kind, f.mode, f.uid, f.gid, f.size),
            ('0', 0o4600, 1000, 2000, 4)
        );
        assert_eq!(f.data, b"a=1\n");
        assert_eq!((es[0].kind, es[0].mode, es[0].uid), ('5', 0o755, 0));
        assert_eq!((es[1].kind, es[1].mode, es[1].size), ('0', 0o644, 0));
        assert_eq!((es[5].kind, es[5].mode), ('5', 0o700));
        assert_eq!((es[6].kind, es[6].size), ('0', 0));
        assert_eq!(es[9].kind, '2');
        assert_eq!(es[9].link.as_deref(), Some("../lib/x"));
        assert_eq!(es[9].mode, 0o777);
    }

    #[test]
    fn parent_meta_comes_from_below_and_symlinked_parents_are_refused() {
        let mut t = FileTree::new();
        t.insert(p("/var/lib/k/x"), Node::file("", o())).unwrap();
        let mut below = MemView::new().dir("/var/lib");
        // A 0700 directory owned by 5:6 below.
        let mut tree_below = FileTree::new();
        tree_below
            .insert(
                p("/var/lib/k"),
                Node::dir(o()).with_meta(Meta {
                    mode: 0o700,
                    uid: 5,
                    gid: 6,
                }),
            )
            .unwrap();
        let uppers = [tree_below];
        let stack = nodeimg_layers::Stack {
            lower: &below,
            uppers: &uppers,
        };
        let es = entries(&write_tar(&t, &stack, 0, Vec::new()).unwrap());
        let k = es.iter().find(|e| e.name == "var/lib/k/").unwrap();
        assert_eq!((k.mode, k.uid, k.gid), (0o700, 5, 6));

        below = MemView::new().symlink("/var/lib", "/usr/lib");
        let e = write_tar(&t, &below, 0, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("/var/lib is a symlink"), "{e}");
    }

    #[test]
    fn long_names_and_links_survive() {
        let long = format!("/opt/{}/{}", "d".repeat(90), "f".repeat(60));
        let target = format!("/{}", "t".repeat(150));
        let mut t = FileTree::new();
        t.insert(p(&long), Node::file("x", o())).unwrap();
        t.insert(p("/l"), Node::symlink(target.clone(), o()))
            .unwrap();
        let bytes = write_tar(&t, &MemView::new(), 0, Vec::new()).unwrap();
        let es = entries(&bytes);
        let names: Vec<_> = es.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "l".to_string(),
                "opt/".to_string(),
                format!("opt/{}/", "d".repeat(90)),
                long[1..].to_string()
            ]
        );
        assert_eq!(es[0].link.as_deref(), Some(target.as_str()));
        assert_eq!(es[3].data, b"x");
        // Same input, same bytes.
        assert_eq!(
            write_tar(&t, &MemView::new(), 0, Vec::new()).unwrap(),
            bytes
        );
    }

    #[test]
    fn hard_links_name_the_first_member() {
        let mut t = FileTree::new();
        t.insert(
            p("/z/target"),
            Node::file("data", o()).with_meta(Meta::mode(0o755)),
        )
        .unwrap();
        t.insert(
            p("/a/link"),
            Node {
                kind: NodeKind::Hardlink(p("/z/target")),
                meta: Meta::FILE,
                origin: o(),
                mtime: None,
            },
        )
        .unwrap();
        let es = entries(&write_tar(&t, &MemView::new(), 0, Vec::new()).unwrap());
        let a = es.iter().find(|e| e.name == "a/link").unwrap();
        assert_eq!(
            (a.kind, a.mode, a.data.as_slice()),
            ('0', 0o755, &b"data"[..])
        );
        let z = es.iter().find(|e| e.name == "z/target").unwrap();
        assert_eq!((z.kind, z.link.as_deref()), ('1', Some("a/link")));

        let mut bad = FileTree::new();
        bad.insert(
            p("/a"),
            Node {
                kind: NodeKind::Hardlink(p("/missing")),
                meta: Meta::FILE,
                origin: o(),
                mtime: None,
            },
        )
        .unwrap();
        assert!(write_tar(&bad, &MemView::new(), 0, Vec::new()).is_err());
    }

    #[test]
    fn host_files_stream_and_size_changes_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("big");
        std::fs::write(&host, vec![7u8; 70_000]).unwrap();
        let mut t = FileTree::new();
        t.insert(
            p("/big"),
            Node {
                kind: NodeKind::File(Content::Host {
                    path: host.clone(),
                    size: 70_000,
                }),
                meta: Meta::FILE,
                origin: o(),
                mtime: None,
            },
        )
        .unwrap();
        let es = entries(&write_tar(&t, &MemView::new(), 0, Vec::new()).unwrap());
        assert_eq!(es[0].data.len(), 70_000);
        std::fs::write(&host, b"short").unwrap();
        let e = write_tar(&t, &MemView::new(), 0, Vec::new()).unwrap_err();
        assert!(e.to_string().contains(&host.display().to_string()), "{e}");
    }

    #[test]
    fn a_package_file_keeps_its_own_mtime() {
        let mut t = FileTree::new();
        t.insert(
            p("/usr/bin/a"),
            Node::file("a", o()).with_mtime(1_600_000_000),
        )
        .unwrap();
        t.insert(
            p("/usr/bin/b"),
            Node {
                kind: NodeKind::Hardlink(p("/usr/bin/a")),
                meta: Meta::FILE,
                origin: o(),
                mtime: Some(1_600_000_000),
            },
        )
        .unwrap();
        t.insert(
            p("/usr/bin/l"),
            Node::symlink("a", o()).with_mtime(1_500_000_000),
        )
        .unwrap();
        t.insert(p("/usr/bin/mine"), Node::file("m", o())).unwrap();
        let bytes = write_tar(&t, &MemView::new(), 1234, Vec::new()).unwrap();
        let times: Vec<(String, u64)> = entries(&bytes)
            .into_iter()
            .map(|e| (e.name, e.mtime))
            .collect();
        assert_eq!(
            times,
            [
                ("usr/".to_string(), 1234),
                ("usr/bin/".to_string(), 1234),
                ("usr/bin/a".to_string(), 1_600_000_000),
                ("usr/bin/b".to_string(), 1_600_000_000),
                ("usr/bin/l".to_string(), 1_500_000_000),
                ("usr/bin/mine".to_string(), 1234),
            ]
        );
        // The time is part of what the tree holds.
        let mut other = t.clone();
        other.replace(
            p("/usr/bin/a"),
            Node::file("a", o()).with_mtime(1_600_000_001),
        );
        assert_ne!(tree_digest(&t).unwrap(), tree_digest(&other).unwrap());
    }
}
