//! Hostile inputs: bases whose flattening or re-packing could lose or
//! damage data, or hand on entries that make a naive extractor write
//! outside its root.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use nodeimg_e2e::*;

use crate::resources::{assert_refused, build_small};

/// Raw names (bytes) and contents of the regular files of a tar (plain or
/// gzip), links as "-> target".
fn raw_entries(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let f = std::fs::File::open(path).expect("open tar");
    let mut magic = [0u8; 2];
    let gzip = std::fs::File::open(path)
        .and_then(|mut g| g.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b];
    let r: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(r);
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path_bytes().into_owned();
        let mut data = Vec::new();
        match e.header().entry_type() {
            tar::EntryType::Regular => {
                e.read_to_end(&mut data).expect("read");
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                data = b"-> ".to_vec();
                data.extend_from_slice(&e.link_name_bytes().unwrap_or_default());
            }
            tar::EntryType::Directory => data = b"dir".to_vec(),
            _ => data = b"other".to_vec(),
        }
        out.insert(name, data);
    }
    out
}

fn strip(name: &[u8]) -> Vec<u8> {
    let mut n = name;
    while let Some(r) = n.strip_prefix(b"./").or_else(|| n.strip_prefix(b"/")) {
        n = r;
    }
    n.strip_suffix(b"/").unwrap_or(n).to_vec()
}

fn file(b: &mut tar::Builder<std::fs::File>, name: &[u8], body: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    {
        let raw = h.as_mut_bytes();
        raw[..100].fill(0);
        raw[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    b.append(&h, body).expect("append");
}

fn dir_entry(b: &mut tar::Builder<std::fs::File>, name: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, name, std::io::empty())
        .expect("append");
}

/// The small recipe built on `base` to the rootfs `dir/out.tar`, which must
/// succeed: its files by raw name (as [`strip`] leaves it).
fn flattened(dir: &Path, base: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = dir.join("out.tar");
    let r = build_small(dir, base, "rootfs", &out);
    assert_eq!(r.code, Some(0), "{r}");
    raw_entries(&out)
        .into_iter()
        .map(|(k, v)| (strip(&k), v))
        .collect()
}

#[test]
fn non_utf8_names_are_kept_byte_for_byte() {
    let dir = temp_dir("non-utf8");
    let base = dir.path().join("base.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&base).expect("create"));
    dir_entry(&mut b, "etc/");
    file(&mut b, b"etc/caf\xe9", b"e-acute");
    file(&mut b, b"etc/caf\xe8", b"e-grave");
    b.finish().expect("finish");
    let got = flattened(dir.path(), &base);
    assert_eq!(
        got.get(&b"etc/caf\xe9"[..]).map(Vec::as_slice),
        Some(&b"e-acute"[..]),
        "names: {:?}",
        got.keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        got.get(&b"etc/caf\xe8"[..]).map(Vec::as_slice),
        Some(&b"e-grave"[..])
    );
}

/// A sparse file of `size` bytes with `data` at offset 0 and at the end,
/// packed by GNU tar in `format` (`pax` or `gnu`) with `--sparse`.
fn sparse_base(dir: &Path, format: &str, size: u64) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("var")).expect("mkdir");
    let p = root.join("var/sparse");
    let f = std::fs::File::create(&p).expect("create");
    f.set_len(size).expect("set_len");
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).expect("write");
    f.write_all_at(b"tail", size - 4).expect("write");
    drop(f);
    let tar = dir.join(format!("sparse-{format}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--sparse", &format!("--format={format}"), "-cf"])
        .arg(&tar)
        .arg("var"))
    .ok();
    tar
}

/// Checks a sparse file of `size` came through as one (GNU tar reads it
/// back with the same size and bytes at both ends) or was refused.
fn sparse_case(format: &str, size: u64) {
    let dir = temp_dir(&format!("sparse-{format}"));
    let base = sparse_base(dir.path(), format, size);
    let out = dir.path().join("out.tar");
    let r = build_small(dir.path(), &base, "rootfs", &out);
    assert!(r.code.is_some(), "did not finish in time: {r}");
    if r.code != Some(0) {
        assert_refused(&r, &["sparse"]);
        return;
    }
    let out_size = std::fs::metadata(&out).expect("output").len();
    assert!(
        out_size < 64 << 20,
        "the output holds the holes: {out_size} bytes"
    );
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).expect("mkdir");
    let names = run(Command::new("tar").arg("-tf").arg(&out)).ok().stdout;
    assert!(!names.contains("GNUSparseFile"), "{names}");
    run(Command::new("tar")
        .arg("-C")
        .arg(&x)
        .args(["--no-same-owner", "-xf"])
        .arg(&out)
        .arg("var/sparse"))
    .ok();
    let p = x.join("var/sparse");
    let m = std::fs::metadata(&p).expect("extracted sparse file");
    assert_eq!(m.len(), size);
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(&p).expect("open");
    let mut head = [0u8; 4];
    f.read_exact_at(&mut head, 0).expect("read");
    let mut tail = [0u8; 4];
    f.read_exact_at(&mut tail, size - 4).expect("read");
    assert_eq!((&head, &tail), (b"head", b"tail"));
}

#[test]
fn a_pax_sparse_file_comes_through_whole() {
    sparse_case("pax", 1 << 20);
}

#[test]
fn a_gnu_sparse_file_claiming_10_gb() {
    sparse_case("gnu", 10 << 30);
}

#[test]
fn a_file_that_replaces_a_directory_in_the_same_tar() {
    let dir = temp_dir("file-over-dir");
    let base = dir.path().join("base.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&base).expect("create"));
    dir_entry(&mut b, "x/");
    file(&mut b, b"x/y", b"inside");
    file(&mut b, b"x", b"the file");
    b.finish().expect("finish");
    // What GNU tar makes of it, as the reference.
    let gnu = dir.path().join("gnu");
    std::fs::create_dir_all(&gnu).expect("mkdir");
    let _ = run(Command::new("tar")
        .arg("-C")
        .arg(&gnu)
        .args(["--recursive-unlink", "-xf"])
        .arg(&base));
    assert_eq!(std::fs::read(gnu.join("x")).expect("tar -x"), b"the file");
    let got = flattened(dir.path(), &base);
    assert_eq!(
        got.get(&b"x"[..]).map(Vec::as_slice),
        Some(&b"the file"[..])
    );
    assert!(!got.contains_key(&b"x/y"[..]));
}

#[test]
fn a_rootfs_base_becomes_a_layer_of_normalised_entries() {
    let dir = temp_dir("normalised");
    let base = dir.path().join("base.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&base).expect("create"));
    file(&mut b, b"/etc/abs", b"absolute");
    file(&mut b, b"./etc/dot", b"dotted");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    b.append_link(&mut h, "etc/hard", "/etc/abs")
        .expect("append");
    b.finish().expect("finish");
    let out = dir.path().join("layout");
    let r = build_small(dir.path(), &base, "oci", &out);
    assert_eq!(r.code, Some(0), "{r}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).expect("index"))
            .expect("json");
    let blob = |d: &str| {
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(m)).expect("manifest")).expect("json");
    let first = manifest["layers"][0]["digest"].as_str().expect("layer");
    let entries = raw_entries(&blob(first));
    for name in entries.keys() {
        assert!(
            !name.starts_with(b"/") && !name.split(|c| *c == b'/').any(|c| c == b".."),
            "entry {:?}",
            String::from_utf8_lossy(name)
        );
    }
    let hard = entries
        .iter()
        .find(|(k, _)| strip(k) == b"etc/hard")
        .map(|(_, v)| v.clone())
        .expect("the hard link is in the layer");
    let target = hard.strip_prefix(b"-> ").unwrap_or(&hard);
    assert!(
        !target.starts_with(b"/") && strip(target) == b"etc/abs",
        "hard link target {:?}",
        String::from_utf8_lossy(target)
    );
}

/// A base holding `usr/bin/ping` with one PAX extended attribute record
/// (`SCHILY.xattr.security.capability` = `value`), written as GNU tar does.
fn xattr_base(dir: &Path, value: &[u8]) -> std::path::PathBuf {
    let key = b"SCHILY.xattr.security.capability";
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    let base = dir.join("base.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&base).expect("create"));
    let mut x = tar::Header::new_ustar();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(rec.len() as u64);
    x.set_mode(0o644);
    b.append_data(&mut x, "PaxHeaders/ping", &rec[..])
        .expect("append");
    file(&mut b, b"usr/bin/ping", b"ping");
    b.finish().expect("finish");
    base
}

#[test]
fn a_file_capability_survives_flattening() {
    let dir = temp_dir("xattr");
    let cap = b"\x01\x00\x00\x02\x00\x20\x00\x00";
    let base = xattr_base(dir.path(), cap);
    let out = dir.path().join("out.tar");
    let r = build_small(dir.path(), &base, "rootfs", &out);
    assert_eq!(r.code, Some(0), "{r}");
    let mut ar = tar::Archive::new(std::fs::File::open(&out).expect("open"));
    let mut found = None;
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if strip(&e.path_bytes()) != b"usr/bin/ping" {
            continue;
        }
        let pax = e.pax_extensions().expect("pax");
        found = Some(
            pax.into_iter()
                .flatten()
                .flatten()
                .find(|r| r.key_bytes() == b"SCHILY.xattr.security.capability")
                .map(|r| r.value_bytes().to_vec()),
        );
    }
    assert_eq!(
        found,
        Some(Some(cap.to_vec())),
        "ping or its capability is missing"
    );
}

#[test]
fn an_attribute_the_reader_cannot_split_is_refused_not_dropped() {
    let dir = temp_dir("xattr-newline");
    let base = xattr_base(dir.path(), b"\x01\n\x02");
    let out = dir.path().join("out.tar");
    let r = build_small(dir.path(), &base, "rootfs", &out);
    assert_refused(&r, &["usr/bin/ping", "PAX", "extended attribute"]);
    assert!(!out.exists());
}
