//! Small `.rpm` files made in memory for tests.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use sha2::{Digest, Sha256};

use super::rpmfile::tag;

/// One header entry: tag, type, data (already encoded), count.
pub struct Tag(pub u32, pub u32, pub Vec<u8>, pub u32);

pub fn string(t: u32, s: &str) -> Tag {
    let mut d = s.as_bytes().to_vec();
    d.push(0);
    Tag(t, 6, d, 1)
}

pub fn strings(t: u32, v: &[&str]) -> Tag {
    let mut d = Vec::new();
    for s in v {
        d.extend_from_slice(s.as_bytes());
        d.push(0);
    }
    Tag(t, 8, d, v.len() as u32)
}

pub(crate) fn int32(t: u32, v: &[u32]) -> Tag {
    Tag(
        t,
        4,
        v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        v.len() as u32,
    )
}

pub(crate) fn int16(t: u32, v: &[u16]) -> Tag {
    Tag(
        t,
        3,
        v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        v.len() as u32,
    )
}

/// A header structure with the entries in the given order.
pub fn header(tags: &[Tag]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for Tag(t, typ, d, count) in tags {
        let align = match typ {
            3 => 2,
            4 => 4,
            5 => 8,
            _ => 1,
        };
        while !data.len().is_multiple_of(align) {
            data.push(0);
        }
        index.extend_from_slice(&t.to_be_bytes());
        index.extend_from_slice(&typ.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&count.to_be_bytes());
        data.extend_from_slice(d);
    }
    let mut out = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
    out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out
}

/// One cpio (newc) entry: path (`./...`), mode, inode, link count, data.
pub struct Entry<'a>(pub &'a str, pub u32, pub u32, pub u32, pub &'a [u8]);

pub fn cpio(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |name: &str, mode: u32, ino: u32, nlink: u32, data: &[u8]| {
        let namesize = name.len() + 1;
        out.extend_from_slice(
            format!(
                "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
                0, 0, 0, data.len(), 0, 0, 0, 0, 0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    for Entry(name, mode, ino, nlink, data) in entries {
        put(name, *mode, *ino, *nlink, data);
    }
    put("TRAILER!!!", 0, 0, 1, b"");
    out
}

/// The test package `demo-1.0-1.x86_64`: a directory, a `%config` file
/// owned by `root:docker`, an executable, a hardlink to it and a symlink.
pub fn demo_files() -> (Vec<Tag>, Vec<u8>) {
    let tags = vec![
        strings(tag::DIRNAMES, &["/etc/", "/etc/demo/", "/usr/bin/"]),
        strings(
            tag::BASENAMES,
            &["demo", "demo.conf", "demo", "demo-hard", "demo-link"],
        ),
        int32(tag::DIRINDEXES, &[0, 1, 2, 2, 2]),
        int16(
            tag::FILEMODES,
            &[0o040755, 0o100640, 0o104755, 0o104755, 0o120777],
        ),
        strings(tag::FILEUSERNAME, &["root", "root", "root", "root", "root"]),
        strings(
            tag::FILEGROUPNAME,
            &["root", "docker", "root", "root", "root"],
        ),
        int32(tag::FILEFLAGS, &[0, 1 | 16, 0, 0, 0]),
        strings(tag::FILELINKTOS, &["", "", "", "", "demo"]),
        int32(tag::FILESIZES, &[4096, 4, 3, 3, 4]),
        int32(
            tag::FILEMTIMES,
            &[
                1_600_000_000,
                1_700_000_000,
                1_700_000_001,
                1_700_000_001,
                1_700_000_002,
            ],
        ),
    ];
    let payload = cpio(&[
        Entry("./etc/demo", 0o040755, 1, 2, b""),
        Entry("./etc/demo/demo.conf", 0o100640, 2, 1, b"a=1\n"),
        Entry("./usr/bin/demo-hard", 0o104755, 3, 2, b""),
        Entry("./usr/bin/demo", 0o104755, 3, 2, b"bin"),
        Entry("./usr/bin/demo-link", 0o120777, 4, 1, b"demo"),
    ]);
    (tags, payload)
}

/// A whole `.rpm`: lead, signature header (header SHA256), header (the
/// package's tags plus `extra`), gzip payload with its SHA256.
pub fn rpm(name: &str, arch: &str, extra: Vec<Tag>, payload: &[u8], pre: Option<&str>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(payload).unwrap();
    let compressed = gz.finish().unwrap();
    let mut tags = vec![
        string(tag::NAME, name),
        string(tag::VERSION, "1.0"),
        string(tag::RELEASE, "1"),
        string(tag::ARCH, arch),
        string(tag::PAYLOADFORMAT, "cpio"),
        string(tag::PAYLOADCOMPRESSOR, "gzip"),
        strings(
            tag::PAYLOADDIGEST,
            &[&hex::encode(Sha256::digest(&compressed))],
        ),
        int32(tag::PAYLOADDIGESTALGO, &[8]),
    ];
    if let Some(p) = pre {
        tags.push(string(tag::PREIN, p));
    }
    tags.extend(extra);
    tags.sort_by_key(|t| t.0);
    let h = header(&tags);
    let sig = header(&[string(tag::SIG_SHA256, &hex::encode(Sha256::digest(&h)))]);
    let mut out = vec![0u8; 96];
    out[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
    out.extend_from_slice(&sig);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out.extend_from_slice(&h);
    out.extend_from_slice(&compressed);
    out
}

/// The `io::Error` that is `e`'s direct cause (panics, naming `e`, when
/// there is none).
pub fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> &'a std::io::Error {
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("{e}: its cause is not an io::Error"))
}
