//! rpm-md repository metadata: `repodata/repomd.xml` (which names and
//! checksums the other files) and `primary.xml` (the packages, their
//! dependencies and the files dependencies may name). Both are read with a
//! streaming XML parser; nothing is kept but the fields used.

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::version::{Evr, Op};

/// Why metadata cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct MetadataError {
    /// The file (URL) the problem is in.
    pub file: String,
    /// What is wrong, or where the XML reader's `source` failed.
    pub reason: String,
    /// The XML reader's error beneath (a [`quick_xml::Error`] or an
    /// attribute's [`quick_xml::events::attributes::AttrError`]), if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

fn err(file: &str, reason: impl Into<String>) -> MetadataError {
    MetadataError {
        file: file.to_string(),
        reason: reason.into(),
        source: None,
    }
}

/// The XML reader failed on `file` at `context`.
fn xml_err(
    file: &str,
    context: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> MetadataError {
    MetadataError {
        file: file.to_string(),
        reason: context.into(),
        source: Some(Box::new(source)),
    }
}

/// Where `repomd.xml` says the primary metadata is, and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryLocation {
    /// Relative to the repository root, e.g. `repodata/<sha>-primary.xml.gz`.
    pub href: String,
    /// Lower-case hex SHA256 of the file as stored.
    pub sha256: String,
    /// Size of the file as stored.
    pub size: u64,
}

/// Reads `repomd.xml` and returns the `primary` entry.
pub fn parse_repomd(xml: &[u8], file: &str) -> Result<PrimaryLocation, MetadataError> {
    let mut r = Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut in_primary = false;
    let mut field = String::new();
    let (mut href, mut sum, mut sum_type, mut size) = (None, None, None, None);
    let mut seen_root = false;
    loop {
        match r.read_event_into(&mut buf) {
            Err(e) => {
                return Err(xml_err(
                    file,
                    format!("malformed XML at byte {}", r.error_position()),
                    e,
                ))
            }
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = local(&e);
                if name == "repomd" {
                    seen_root = true;
                }
                if name == "data" && attr(&e, "type", file)?.as_deref() == Some("primary") {
                    in_primary = true;
                } else if in_primary {
                    if name == "checksum" {
                        sum_type = attr(&e, "type", file)?;
                    }
                    field = name;
                }
            }
            Ok(Event::Empty(e)) => {
                if in_primary && local(&e) == "location" {
                    href = attr(&e, "href", file)?;
                }
            }
            Ok(Event::Text(t)) if in_primary => {
                let text = t.unescape().map_err(|e| xml_err(file, "bad text", e))?;
                match field.as_str() {
                    "checksum" => sum = Some(text.trim().to_ascii_lowercase()),
                    "size" => {
                        size = Some(text.trim().parse::<u64>().map_err(|_| {
                            err(file, format!("primary <size> {text:?} is not a number"))
                        })?)
                    }
                    _ => {}
                }
            }
            Ok(Event::End(e)) => {
                if in_primary && e.local_name().as_ref() == b"data" {
                    in_primary = false;
                }
                field.clear();
            }
            Ok(_) => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err(err(file, "not a repomd.xml (no <repomd> element)"));
    }
    primary_location(file, href, sum, sum_type, size)
}

/// The primary entry of `repomd.xml` from what was read of it, checked.
fn primary_location(
    file: &str,
    href: Option<String>,
    sum: Option<String>,
    sum_type: Option<String>,
    size: Option<u64>,
) -> Result<PrimaryLocation, MetadataError> {
    let href = href.ok_or_else(|| err(file, "no <data type=\"primary\"> with a <location>"))?;
    let sum = sum.ok_or_else(|| err(file, "the primary entry has no <checksum>"))?;
    match sum_type.as_deref() {
        Some("sha256") => {}
        other => {
            return Err(err(
                file,
                format!(
                    "the primary checksum type is {:?}; only sha256 is accepted (recreate the repository with createrepo_c --checksum sha256)",
                    other.unwrap_or("missing")
                ),
            ))
        }
    }
    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(
            file,
            format!("primary checksum {sum:?} is not a SHA256"),
        ));
    }
    let size = size.ok_or_else(|| err(file, "the primary entry has no <size>"))?;
    check_href(&href, file)?;
    Ok(PrimaryLocation {
        href,
        sha256: sum,
        size,
    })
}

/// A repository-relative path: no `..`, not absolute, no scheme.
fn check_href(href: &str, file: &str) -> Result<(), MetadataError> {
    if href.is_empty()
        || href.starts_with('/')
        || href.contains("://")
        || href.split('/').any(|c| c == "..")
    {
        return Err(err(
            file,
            format!("location {href:?} is not a path inside the repository"),
        ));
    }
    Ok(())
}

/// One dependency entry (`rpm:entry`). The name may be a rich dependency
/// `(a or b)`, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dep {
    /// The capability (package name, virtual name, file path or rich dep).
    pub name: String,
    /// The version constraint.
    pub constraint: Option<(Op, Evr)>,
}

impl Dep {
    /// The constraint as `ranges_overlap` takes it.
    pub fn range(&self) -> Option<(Op, &Evr)> {
        self.constraint.as_ref().map(|(o, e)| (*o, e))
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, evr)) = &self.constraint {
            write!(f, " {op} {evr}")?;
        }
        Ok(())
    }
}

/// One package of `primary.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpmPackage {
    /// `name`.
    pub name: String,
    /// `arch` (`x86_64`, `noarch`, `aarch64`, `src`, ...).
    pub arch: String,
    /// Epoch, version, release.
    pub evr: Evr,
    /// SHA256 of the `.rpm`, lower-case hex.
    pub sha256: String,
    /// Size of the `.rpm`.
    pub size: u64,
    /// Repository-relative location of the `.rpm`.
    pub href: String,
    /// Provides.
    pub provides: Vec<Dep>,
    /// Requires.
    pub requires: Vec<Dep>,
    /// Conflicts.
    pub conflicts: Vec<Dep>,
    /// Obsoletes.
    pub obsoletes: Vec<Dep>,
    /// The files primary.xml lists (those dependencies usually name).
    pub files: Vec<String>,
}

impl Default for Evr {
    fn default() -> Self {
        Evr::new(0, "", None)
    }
}

impl RpmPackage {
    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    None,
    Provides,
    Requires,
    Conflicts,
    Obsoletes,
    Other,
}

/// Streams `primary.xml` (already decompressed) and returns its binary
/// packages (source packages are skipped) in file order.
pub fn parse_primary<R: BufRead>(input: R, file: &str) -> Result<Vec<RpmPackage>, MetadataError> {
    let mut r = Reader::from_reader(input);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<RpmPackage> = None;
    let mut field = String::new();
    let mut list = List::None;
    let mut seen_root = false;
    loop {
        let ev = r.read_event_into(&mut buf).map_err(|e| {
            xml_err(
                file,
                format!("malformed XML at byte {}", r.error_position()),
                e,
            )
        })?;
        match ev {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = local(&e);
                match name.as_str() {
                    "metadata" => seen_root = true,
                    "package" => {
                        cur = Some(RpmPackage::default());
                    }
                    _ => {}
                }
                let Some(p) = cur.as_mut() else {
                    buf.clear();
                    continue;
                };
                package_element(p, &e, name, file, &mut field, &mut list)?;
            }
            Event::Text(t) => {
                if let Some(p) = cur.as_mut() {
                    let text = t.unescape().map_err(|e| xml_err(file, "bad text", e))?;
                    match field.as_str() {
                        "name" => p.name = text.into_owned(),
                        "arch" => p.arch = text.into_owned(),
                        "checksum" => p.sha256 = text.trim().to_ascii_lowercase(),
                        "file" => p.files.push(text.into_owned()),
                        _ => {}
                    }
                }
            }
            Event::End(e) => {
                field.clear();
                match e.local_name().as_ref() {
                    b"provides" | b"requires" | b"conflicts" | b"obsoletes" | b"suggests"
                    | b"recommends" | b"supplements" | b"enhances" => list = List::None,
                    b"package" => {
                        if let Some(p) = cur.take() {
                            if p.arch != "src" && p.arch != "nosrc" {
                                check_package(&p, file)?;
                                out.push(p);
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err(err(file, "not a primary.xml (no <metadata> element)"));
    }
    Ok(out)
}

/// Reads the start (or empty) element `e`, named `name`, inside the
/// `<package>` `p`: its attributes, or which text (`field`) or dependency
/// list (`list`) follows.
fn package_element(
    p: &mut RpmPackage,
    e: &BytesStart,
    name: String,
    file: &str,
    field: &mut String,
    list: &mut List,
) -> Result<(), MetadataError> {
    match name.as_str() {
        "version" => {
            let epoch = match attr(e, "epoch", file)? {
                None => 0,
                Some(s) if s.is_empty() => 0,
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| err(file, format!("epoch {s:?} is not a number{}", at(p))))?,
            };
            let ver = attr(e, "ver", file)?
                .ok_or_else(|| err(file, format!("<version> without ver{}", at(p))))?;
            let rel = attr(e, "rel", file)?;
            p.evr = Evr::new(epoch, &ver, rel.as_deref());
        }
        "checksum" => {
            let t = attr(e, "type", file)?;
            if t.as_deref() != Some("sha256") {
                return Err(err(
                    file,
                    format!(
                        "package checksum type {:?}{}; only sha256 is accepted",
                        t.unwrap_or_default(),
                        at(p)
                    ),
                ));
            }
            *field = name;
        }
        "size" => {
            if let Some(s) = attr(e, "package", file)? {
                p.size = s.parse().map_err(|_| {
                    err(file, format!("package size {s:?} is not a number{}", at(p)))
                })?;
            }
        }
        "location" => {
            let href = attr(e, "href", file)?
                .ok_or_else(|| err(file, format!("<location> without href{}", at(p))))?;
            check_href(&href, file)?;
            p.href = href;
        }
        "provides" => *list = List::Provides,
        "requires" => *list = List::Requires,
        "conflicts" => *list = List::Conflicts,
        "obsoletes" => *list = List::Obsoletes,
        "suggests" | "recommends" | "supplements" | "enhances" => *list = List::Other,
        "entry" => {
            let dep = read_entry(e, file, &at(p))?;
            match list {
                List::Provides => p.provides.push(dep),
                List::Requires => p.requires.push(dep),
                List::Conflicts => p.conflicts.push(dep),
                List::Obsoletes => p.obsoletes.push(dep),
                List::Other | List::None => {}
            }
        }
        "name" | "arch" | "file" => *field = name,
        _ => {}
    }
    Ok(())
}

fn check_package(p: &RpmPackage, file: &str) -> Result<(), MetadataError> {
    let what = if p.name.is_empty() {
        "a package without <name>".to_string()
    } else {
        format!("package {:?}", p.name)
    };
    if p.name.is_empty() || p.arch.is_empty() || p.evr.version.is_empty() {
        return Err(err(file, format!("{what} lacks its name, arch or version")));
    }
    if p.href.is_empty() {
        return Err(err(file, format!("{what} has no <location>")));
    }
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(file, format!("{what} has no SHA256 <checksum>")));
    }
    Ok(())
}

fn read_entry(e: &BytesStart, file: &str, at: &str) -> Result<Dep, MetadataError> {
    let name = attr(e, "name", file)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err(file, format!("<rpm:entry> without a name{at}")))?;
    let constraint = match attr(e, "flags", file)? {
        None => None,
        Some(f) => {
            let op = Op::from_flags(&f)
                .ok_or_else(|| err(file, format!("dependency {name:?}: flags {f:?}{at}")))?;
            let epoch = match attr(e, "epoch", file)? {
                None => 0,
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| err(file, format!("dependency {name:?}: epoch {s:?}{at}")))?,
            };
            let ver = attr(e, "ver", file)?.unwrap_or_default();
            if ver.is_empty() {
                None
            } else {
                let rel = attr(e, "rel", file)?;
                Some((op, Evr::new(epoch, &ver, rel.as_deref())))
            }
        }
    };
    Ok(Dep { name, constraint })
}

fn at(p: &RpmPackage) -> String {
    format!(" (package {:?})", p.name)
}

fn local(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn attr(e: &BytesStart, key: &str, file: &str) -> Result<Option<String>, MetadataError> {
    for a in e.attributes() {
        let a = a.map_err(|x| xml_err(file, "bad attribute", x))?;
        if a.key.local_name().as_ref() == key.as_bytes() {
            let v = a
                .unescape_value()
                .map_err(|x| xml_err(file, format!("bad attribute {key}"), x))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Repository metadata for tests, here and in other crates.
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures {
    pub const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="filelists">
    <checksum type="sha256">1111111111111111111111111111111111111111111111111111111111111111</checksum>
    <location href="repodata/f-filelists.xml.gz"/>
    <size>10</size>
  </data>
  <data type="primary">
    <checksum type="sha256">ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789</checksum>
    <open-checksum type="sha256">2222222222222222222222222222222222222222222222222222222222222222</open-checksum>
    <location href="repodata/abc-primary.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>1234</size>
    <open-size>9999</open-size>
  </data>
</repomd>"#;

    pub const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>docker-ce</name>
  <arch>x86_64</arch>
  <version epoch="3" ver="19.03.11" rel="3.el7"/>
  <checksum type="sha256" pkgid="YES">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
  <summary>The open-source application container engine &amp; more</summary>
  <size package="24512" installed="90000" archive="90500"/>
  <location href="Packages/docker-ce-19.03.11-3.el7.x86_64.rpm"/>
  <format>
    <rpm:provides>
      <rpm:entry name="docker-ce" flags="EQ" epoch="3" ver="19.03.11" rel="3.el7"/>
      <rpm:entry name="docker-engine"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="containerd.io" flags="GE" epoch="0" ver="1.2.2" rel="3"/>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="(iptables or nftables)"/>
    </rpm:requires>
    <rpm:conflicts><rpm:entry name="docker"/></rpm:conflicts>
    <rpm:obsoletes><rpm:entry name="docker-io" flags="LT" epoch="0" ver="1.8"/></rpm:obsoletes>
    <rpm:recommends><rpm:entry name="docker-ce-cli"/></rpm:recommends>
    <file>/usr/bin/dockerd</file>
    <file type="dir">/etc/docker</file>
  </format>
</package>
<package type="rpm">
  <name>docker-ce</name>
  <arch>src</arch>
  <version epoch="3" ver="19.03.11" rel="3.el7"/>
  <checksum type="sha256" pkgid="YES">bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</checksum>
  <size package="1"/>
  <location href="SRPMS/docker-ce.src.rpm"/>
</package>
</metadata>"#;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixtures::{PRIMARY, REPOMD};
    use super::*;

    #[test]
    fn repomd_primary_entry() {
        let p = parse_repomd(REPOMD.as_bytes(), "r/repomd.xml").unwrap();
        assert_eq!(
            p,
            PrimaryLocation {
                href: "repodata/abc-primary.xml.gz".into(),
                sha256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789".into(),
                size: 1234,
            }
        );
    }

    #[test]
    fn repomd_refusals_name_the_file() {
        let sha1 = REPOMD.replace(
            r#"<checksum type="sha256">ABCDEF"#,
            r#"<checksum type="sha">ABCDEF"#,
        );
        let e = parse_repomd(sha1.as_bytes(), "r/repomd.xml").unwrap_err();
        assert!(e.to_string().starts_with("r/repomd.xml: "), "{e}");
        assert!(e.to_string().contains("\"sha\""), "{e}");
        let e = parse_repomd(b"<repomd><data type=\"primary\"></dat", "x").unwrap_err();
        assert!(e.to_string().contains("malformed XML"), "{e}");
        // The XML reader's error stays the cause, its text the message's end.
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.is::<quick_xml::Error>(), "{source}");
        assert!(e.to_string().ends_with(&format!(": {source}")), "{e}");
        let e = parse_repomd(b"<html/>", "x").unwrap_err();
        assert!(e.to_string().contains("not a repomd.xml"), "{e}");
        let up = REPOMD.replace("repodata/abc-primary", "../../etc/primary");
        assert!(parse_repomd(up.as_bytes(), "x").is_err());
        let nosize = REPOMD.replace("<size>1234</size>", "");
        let e = parse_repomd(nosize.as_bytes(), "x").unwrap_err();
        assert!(e.to_string().contains("<size>"), "{e}");
    }

    #[test]
    fn primary_packages() {
        let pkgs = parse_primary(PRIMARY.as_bytes(), "p.xml").unwrap();
        assert_eq!(pkgs.len(), 1, "the source package is skipped");
        let p = &pkgs[0];
        assert_eq!(p.nevra(), "docker-ce-3:19.03.11-3.el7.x86_64");
        assert_eq!(p.size, 24512);
        assert_eq!(p.href, "Packages/docker-ce-19.03.11-3.el7.x86_64.rpm");
        assert_eq!(p.sha256, "a".repeat(64));
        let names = |d: &[Dep]| d.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&p.provides),
            ["docker-ce = 3:19.03.11-3.el7", "docker-engine"]
        );
        assert_eq!(
            names(&p.requires),
            [
                "containerd.io >= 1.2.2-3",
                "/bin/sh",
                "(iptables or nftables)"
            ]
        );
        assert_eq!(names(&p.conflicts), ["docker"]);
        assert_eq!(names(&p.obsoletes), ["docker-io < 1.8"]);
        assert_eq!(p.files, ["/usr/bin/dockerd", "/etc/docker"]);
    }

    #[test]
    fn primary_refusals() {
        let bad = PRIMARY.replace("flags=\"GE\"", "flags=\"ABOUT\"");
        let e = parse_primary(bad.as_bytes(), "p.xml").unwrap_err();
        assert!(
            e.to_string()
                .contains("p.xml: dependency \"containerd.io\""),
            "{e}"
        );
        let bad = PRIMARY.replace(
            "epoch=\"3\" ver=\"19.03.11\" rel=\"3.el7\"/>\n  <checksum",
            "epoch=\"x\" ver=\"1\"/>\n  <checksum",
        );
        let e = parse_primary(bad.as_bytes(), "p.xml").unwrap_err();
        assert!(e.to_string().contains("epoch \"x\""), "{e}");
        let bad = PRIMARY.replacen(
            r#"<location href="Packages/"#,
            r#"<location href="/etc/"#,
            1,
        );
        assert!(parse_primary(bad.as_bytes(), "p.xml").is_err());
        let truncated = &PRIMARY[..PRIMARY.len() / 2];
        // A truncated file either fails as XML or misses its packages; it never panics.
        let _ = parse_primary(truncated.as_bytes(), "p.xml");
        let e = parse_primary(
            &b"<metadata><package><name>x</name></package></metadata>"[..],
            "p.xml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("package \"x\""), "{e}");
        let e = parse_primary(&b"<other/>"[..], "p.xml").unwrap_err();
        assert!(e.to_string().contains("no <metadata>"), "{e}");
    }
}
