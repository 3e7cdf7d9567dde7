//! `nodeimg inspect`: layers, sizes, files per layer, and where a file came from.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use nodeimg_layers::ImagePath;
use ocidir::cap_std::{ambient_authority, fs::Dir};
use ocidir::oci_spec::image::{ImageConfiguration, ImageManifest};
use ocidir::{OciDir, OciRead};

use crate::base::{read_json, scan_blob_verified, select_manifest};
use crate::error::{Error, Result};
use crate::output::{LAYER_ANNOTATION, ORIGINS_ANNOTATION, REF_NAME};
use crate::tarindex::{scan_layer_visiting, FileVisitor, Kind, LayerChanges, MergedIndex};
use crate::tarstream::{Codec, Decoder, HashReader};
use nodeimg_layers::RootView;

/// What `inspect` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The inspected path.
    pub image: PathBuf,
    /// `oci`, `oci-archive` or `rootfs`.
    pub format: String,
    /// The tag (`org.opencontainers.image.ref.name`) of the inspected manifest.
    pub tag: Option<String>,
    /// Manifest digest (OCI images).
    pub manifest_digest: Option<String>,
    /// Config digest (OCI images).
    pub config_digest: Option<String>,
    /// Architecture from the config.
    pub architecture: Option<String>,
    /// Creation time from the config (RFC 3339), when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Layers, lowest first.
    pub layers: Vec<LayerReport>,
    /// The answer to `--why PATH`.
    pub why: Option<Why>,
}

/// One layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    /// Recipe layer name (`io.nodeimg.layer`), else the history's `created_by`.
    pub name: String,
    /// Blob digest (for a rootfs tar: the file's digest).
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
    /// Entries of the layer, in path order.
    pub files: Vec<FileReport>,
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    /// Image path.
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, `other`, `whiteout` or `opaque`.
    pub kind: String,
    /// Octal permission bits, e.g. `0644`.
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Link target (symlinks and hard links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Which layer last wrote a path, and which recipe item made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Why {
    /// The asked path.
    pub path: String,
    /// Where that path really is, when a folder on the way is a symlink
    /// (e.g. `/lib/...` on a merged-/usr image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Whether the final image has it.
    pub in_image: bool,
    /// 1-based index of the layer that last wrote it.
    pub layer: Option<usize>,
    /// That layer's name.
    pub layer_name: Option<String>,
    /// That layer's digest.
    pub layer_digest: Option<String>,
    /// The recipe item (key path) from `io.nodeimg.origins`.
    pub origin: Option<String>,
    /// The packages whose files the image's package database (dpkg's or
    /// rpm's) says the path is.
    pub packages: Vec<PackageOwner>,
    /// Why the packages could not be looked up, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages_note: Option<String>,
}

/// A package of the image that lists a path among its files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackageOwner {
    /// Package name.
    pub name: String,
    /// Version, as its package database writes it.
    pub version: String,
    /// Architecture, in its backend's spelling.
    pub architecture: String,
    /// The repository it was installed from, when the image records it;
    /// `None`: unknown (neither dpkg's nor rpm's database records it).
    pub repository: Option<String>,
    /// The database that lists it: `dpkg` or `rpm`.
    pub database: String,
}

/// Looks up the packages that own a path of an image: given the merged
/// view of the image (which keeps the package databases, and dpkg's file
/// lists) and the path where the asked one really is, the owners, or why
/// they cannot be known.
pub type OwnerLookup<'a> =
    &'a dyn Fn(&dyn RootView, &ImagePath) -> std::result::Result<Vec<PackageOwner>, String>;

/// The folders a `--why` answer keeps the files of, besides those every
/// view keeps: dpkg's file lists, and the records nodeimg's packages
/// layers write of where each package came from (`nodeimg_pkg::record`).
const WHY_KEEPS: &[&str] = &["/var/lib/dpkg/info/", "/var/lib/nodeimg/packages/"];

/// Inspect an OCI layout directory (`DIR` or `DIR:TAG`), an OCI archive
/// (`FILE` or `FILE:TAG`), or a rootfs tar (`.tar`, `.tar.gz`, `.tar.zst`).
pub fn inspect(image: &Path, why: Option<&str>) -> Result<Report> {
    inspect_with(image, None, why, None)
}

/// [`inspect`] of the image of the OCI architecture `arch` when the tag
/// names an image index; the `--why` answer names the packages that own the
/// path as `owners` finds them in the image.
pub fn inspect_with(
    image: &Path,
    arch: Option<&str>,
    why: Option<&str>,
    owners: Option<OwnerLookup<'_>>,
) -> Result<Report> {
    let why_path = match why {
        Some(w) => Some(ImagePath::new(w).map_err(|e| Error::Usage(format!("--why: {e}")))?),
        None => None,
    };
    // Answering --why keeps the package databases' files.
    let mut budget = why_path
        .as_ref()
        .map(|_| crate::limits::KeepBudget::also_keeping(WHY_KEEPS));
    let (mut report, provenance) = walk_keeping(image, arch, None, budget.as_mut())?;
    if let Some(asked) = why_path {
        let mut w = provenance.why(&asked);
        let real = match &w.resolved {
            Some(r) => ImagePath::new(r).map_err(|e| Error::Usage(format!("--why: {e}")))?,
            None => asked.clone(),
        };
        if let (Some(lookup), true) = (owners, w.in_image) {
            match lookup(provenance.tree(), &real) {
                Ok(p) => w.packages = p,
                Err(note) => w.packages_note = Some(note),
            }
        }
        report.why = Some(w);
    }
    Ok(report)
}

/// Read every layer of `image` (named as for [`inspect`]), verified, showing
/// each regular file to `visit`: the report (without a `why` answer) and the
/// [`Provenance`] of every path.
pub fn walk(
    image: &Path,
    arch: Option<&str>,
    visit: Option<&mut (dyn FileVisitor + '_)>,
) -> Result<(Report, Provenance)> {
    walk_keeping(image, arch, visit, None)
}

/// [`walk`], keeping the contents `keep` allows in the merged tree.
fn walk_keeping(
    image: &Path,
    arch: Option<&str>,
    visit: Option<&mut (dyn FileVisitor + '_)>,
    mut keep: Option<&mut crate::limits::KeepBudget>,
) -> Result<(Report, Provenance)> {
    let (path, tag) = split_tag(image);
    let what = image.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| Error::read(&what, "cannot read it", e))?;
    let mut changes = Vec::new();
    let mut report = if meta.is_dir() {
        let d = Dir::open_ambient_dir(&path, ambient_authority())
            .map_err(|e| Error::read(&what, "cannot open", e))?;
        let oci =
            OciDir::open(d).map_err(|e| Error::layout(&what, "not an OCI image layout", e))?;
        inspect_oci(
            &oci,
            &what,
            (tag.as_deref(), arch),
            "oci",
            &mut changes,
            keep.as_deref_mut(),
            visit,
        )?
    } else {
        match crate::base::open_archive(&path) {
            Ok(ar) if ar.read_index().is_ok() => inspect_oci(
                &ar,
                &what,
                (tag.as_deref(), arch),
                "oci-archive",
                &mut changes,
                keep.as_deref_mut(),
                visit,
            )?,
            _ => inspect_rootfs(&path, &what, &mut changes, keep, visit)?,
        }
    };
    report.image = image.to_path_buf();
    let mut merged = MergedIndex::new();
    for (ch, _) in &changes {
        merged.apply(ch.clone());
    }
    let names = report
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.digest.clone()))
        .collect();
    Ok((
        report,
        Provenance {
            layers: changes,
            names,
            merged,
        },
    ))
}

/// Which layer wrote each path of an image, and the recipe item behind it
/// (from [`walk`]): what `inspect --why` answers, for any path.
pub struct Provenance {
    layers: Vec<(LayerChanges, LayerData)>,
    /// Each layer's name and digest.
    names: Vec<(String, String)>,
    merged: MergedIndex,
}

impl Provenance {
    /// The image's merged file tree.
    pub fn tree(&self) -> &MergedIndex {
        &self.merged
    }

    /// Which layer last wrote `asked` (its folders' symlinks followed) and
    /// the recipe item that made it.
    pub fn why(&self, asked: &ImagePath) -> Why {
        let real = self.merged.resolve_parent(asked);
        let mut w = answer_why(&self.names, &self.layers, &real);
        w.path = asked.to_string();
        if real != *asked {
            w.resolved = Some(real.to_string());
        }
        w
    }
}

fn split_tag(image: &Path) -> (PathBuf, Option<String>) {
    if image.exists() {
        return (image.to_path_buf(), None);
    }
    let s = image.to_string_lossy();
    match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() && Path::new(p).exists() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (image.to_path_buf(), None),
    }
}

struct LayerData {
    origins: BTreeMap<String, String>,
}

fn files_of(ch: &LayerChanges) -> Vec<FileReport> {
    let mut out: Vec<FileReport> = ch
        .entries
        .iter()
        .map(|(p, r)| {
            let (kind, size, target) = match &r.kind {
                Kind::File(s) => ("file", *s, None),
                Kind::Dir => ("dir", 0, None),
                Kind::Symlink(t) => ("symlink", 0, Some(t.clone())),
                Kind::Hardlink(t) => ("hardlink", 0, Some(t.clone())),
                Kind::Other(..) => ("other", 0, None),
            };
            FileReport {
                path: p.clone(),
                kind: kind.to_string(),
                mode: format!("{:04o}", r.meta.mode),
                uid: r.meta.uid,
                gid: r.meta.gid,
                size,
                target,
            }
        })
        .collect();
    for (list, kind) in [(&ch.whiteouts, "whiteout"), (&ch.opaques, "opaque")] {
        for p in list {
            out.push(FileReport {
                path: p.clone(),
                kind: kind.to_string(),
                mode: "0000".to_string(),
                uid: 0,
                gid: 0,
                size: 0,
                target: None,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.kind.cmp(&b.kind)));
    out
}

fn inspect_oci<S: crate::base::OciSource>(
    src: &S,
    what: &str,
    (tag, arch): (Option<&str>, Option<&str>),
    format: &str,
    changes: &mut Vec<(LayerChanges, LayerData)>,
    mut keep: Option<&mut crate::limits::KeepBudget>,
    mut visit: Option<&mut (dyn FileVisitor + '_)>,
) -> Result<Report> {
    let mdesc = select_manifest(src, what, tag, arch)?;
    let manifest: ImageManifest = read_json(src, what, &mdesc, "manifest")?;
    let config: ImageConfiguration = read_json(src, what, manifest.config(), "config")?;
    let history: Vec<String> = config
        .history()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .map(|h| h.created_by().clone().unwrap_or_default())
        .collect();
    let mut layers = Vec::new();
    for (i, desc) in manifest.layers().iter().enumerate() {
        let want = config.rootfs().diff_ids().get(i).map(String::as_str);
        let (ch, diff_id, _) = scan_blob_verified(
            src,
            what,
            desc,
            i,
            keep.as_deref_mut(),
            want,
            visit.as_deref_mut(),
        )?;
        let ann = desc.annotations().clone().unwrap_or_default();
        let name = ann
            .get(LAYER_ANNOTATION)
            .cloned()
            .or_else(|| history.get(i).cloned().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("layer {}", i + 1));
        let origins: BTreeMap<String, String> = ann
            .get(ORIGINS_ANNOTATION)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        layers.push(LayerReport {
            name,
            digest: desc.digest().to_string(),
            diff_id,
            size: desc.size(),
            media_type: desc.media_type().to_string(),
            files: files_of(&ch),
        });
        changes.push((ch, LayerData { origins }));
    }
    let tag = mdesc
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME).cloned())
        .or_else(|| tag.map(str::to_string));
    Ok(Report {
        image: PathBuf::new(),
        format: format.to_string(),
        tag,
        manifest_digest: Some(mdesc.digest().to_string()),
        config_digest: Some(manifest.config().digest().to_string()),
        architecture: Some(config.architecture().to_string()),
        created: config.created().clone(),
        layers,
        why: None,
    })
}

fn inspect_rootfs(
    path: &Path,
    what: &str,
    changes: &mut Vec<(LayerChanges, LayerData)>,
    keep: Option<&mut crate::limits::KeepBudget>,
    visit: Option<&mut (dyn FileVisitor + '_)>,
) -> Result<Report> {
    let open = || File::open(path).map_err(|e| Error::read(what, "cannot read it", e));
    let mut head = [0u8; 4];
    let n = open()?
        .read(&mut head)
        .map_err(|e| Error::read(what, "cannot read it", e))?;
    let codec = Codec::sniff(&head[..n]);
    let raw = HashReader::new(open()?);
    let dec = Decoder::new(codec, BufReader::with_capacity(1 << 17, raw))
        .map_err(|e| Error::read(what, "cannot decompress", e))?;
    let (ch, hr) = scan_layer_visiting(HashReader::new(dec), 0, keep, what, visit)?;
    let read_err = |e: std::io::Error| Error::read(what, "reading", e);
    let (diff_id, _, dec) = hr.drain_into_inner().map_err(read_err)?;
    let mut buffered = dec.into_inner();
    std::io::copy(&mut buffered, &mut std::io::sink()).map_err(read_err)?;
    let (digest, size) = buffered.into_inner().drain().map_err(read_err)?;
    let media_type = match codec {
        Codec::Plain => "application/x-tar",
        Codec::Gzip => "application/gzip",
        Codec::Zstd => "application/zstd",
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let layer = LayerReport {
        name,
        digest,
        diff_id,
        size,
        media_type: media_type.to_string(),
        files: files_of(&ch),
    };
    changes.push((
        ch,
        LayerData {
            origins: BTreeMap::new(),
        },
    ));
    Ok(Report {
        image: PathBuf::new(),
        format: "rootfs".to_string(),
        tag: None,
        manifest_digest: None,
        config_digest: None,
        architecture: None,
        created: None,
        layers: vec![layer],
        why: None,
    })
}

fn answer_why(
    names: &[(String, String)],
    layers: &[(LayerChanges, LayerData)],
    path: &ImagePath,
) -> Why {
    let mut last: Option<usize> = None;
    let ancestors = path.ancestors();
    for (i, (ch, _)) in layers.iter().enumerate() {
        let removed = ch
            .whiteouts
            .iter()
            .any(|w| w == path.as_str() || ancestors.iter().any(|a| a.as_str() == w))
            || ch
                .opaques
                .iter()
                .any(|o| ancestors.iter().any(|a| a.as_str() == o))
            || ancestors.iter().skip(1).any(|a| {
                ch.entries
                    .get(a.as_str())
                    .is_some_and(|r| r.kind != Kind::Dir)
            });
        if removed {
            last = None;
        }
        if ch.entries.contains_key(path.as_str()) {
            last = Some(i);
        }
    }
    match last {
        Some(i) => Why {
            path: path.to_string(),
            resolved: None,
            in_image: true,
            layer: Some(i + 1),
            layer_name: names.get(i).map(|l| l.0.clone()),
            layer_digest: names.get(i).map(|l| l.1.clone()),
            origin: layers[i]
                .1
                .origins
                .get(path.as_str())
                .or_else(|| layers[i].1.origins.get(crate::output::PACKAGES_ORIGIN_KEY))
                .cloned(),
            packages: Vec::new(),
            packages_note: None,
        },
        None => Why {
            path: path.to_string(),
            resolved: None,
            in_image: false,
            layer: None,
            layer_name: None,
            layer_digest: None,
            origin: None,
            packages: Vec::new(),
            packages_note: None,
        },
    }
}

/// The packages that own the answer's path: `, package NAME VERSION (ARCH,
/// DB), repository ...` (`; a file of package ...` after an item other
/// than `packages`, which replaced it), or why they are not known.
fn print_owners(w: &Why, out: &mut dyn Write) -> std::io::Result<()> {
    const SHOWN: usize = 5;
    if let Some(note) = &w.packages_note {
        return write!(out, "; its package is not known: {note}");
    }
    if w.packages.is_empty() {
        return Ok(());
    }
    let lead = match w.origin.as_deref() {
        Some(o) if o != "packages" => "; a file of ",
        _ => ", ",
    };
    let names: Vec<String> = w
        .packages
        .iter()
        .take(SHOWN)
        .map(|p| {
            let repo = p.repository.as_deref().map_or_else(
                || "repository unknown (the image does not record it)".to_string(),
                |r| format!("repository {r}"),
            );
            format!(
                "package {} {} ({}, {}), {repo}",
                p.name, p.version, p.architecture, p.database
            )
        })
        .collect();
    write!(out, "{lead}{}", names.join("; "))?;
    if w.packages.len() > SHOWN {
        write!(out, "; and {} more packages", w.packages.len() - SHOWN)?;
    }
    Ok(())
}

/// Print a report for people. With a `why` answer, print only that answer.
pub fn print_text(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(w) = &report.why {
        return match (&w.layer, &w.layer_name) {
            (Some(i), name) if w.in_image => {
                let shown = match &w.resolved {
                    Some(r) => format!("{} (at {r})", w.path),
                    None => w.path.clone(),
                };
                write!(
                    out,
                    "{shown}: written by layer {i} ({}, {})",
                    name.as_deref().unwrap_or("?"),
                    w.layer_digest.as_deref().unwrap_or("?")
                )?;
                if let Some(o) = &w.origin {
                    write!(out, ", item {o}")?;
                }
                print_owners(w, out)?;
                writeln!(out)
            }
            _ => writeln!(out, "{}: not in the image", w.path),
        };
    }
    writeln!(
        out,
        "image     {} ({})",
        report.image.display(),
        report.format
    )?;
    if let Some(t) = &report.tag {
        writeln!(out, "tag       {t}")?;
    }
    if let Some(d) = &report.manifest_digest {
        writeln!(out, "manifest  {d}")?;
    }
    if let Some(d) = &report.config_digest {
        writeln!(out, "config    {d}")?;
    }
    if let Some(a) = &report.architecture {
        writeln!(out, "arch      {a}")?;
    }
    let n = report.layers.len();
    for (i, l) in report.layers.iter().enumerate() {
        writeln!(
            out,
            "\nlayer {}/{n}  {}  {}  {} bytes  {}",
            i + 1,
            l.name,
            l.digest,
            l.size,
            l.media_type
        )?;
        for f in &l.files {
            let size = if f.kind == "file" {
                f.size.to_string()
            } else {
                "-".to_string()
            };
            write!(
                out,
                "  {} {:>5}:{:<5} {:>10}  {}",
                f.mode, f.uid, f.gid, size, f.path
            )?;
            match (&f.target, f.kind.as_str()) {
                (Some(t), "symlink") => writeln!(out, " -> {t}")?,
                (Some(t), _) => writeln!(out, " => {t}")?,
                (None, "file") => writeln!(out)?,
                (None, k) => writeln!(out, " ({k})")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::base::Base;
    use crate::output::LayerPlan;
    use crate::output::{write, Compression, Format, ImageMeta, OutputOptions};
    use nodeimg_layers::tree::Origin;
    use nodeimg_layers::{FileTree, Node};

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    fn image(dir: &Path, format: Format, name: &str) -> PathBuf {
        let mut a = FileTree::new();
        a.insert(
            p("/etc/sysctl.d/99-kubernetes-cri.conf"),
            Node::file("x = 1\n", Origin::new("sysctl", "sysctl")),
        )
        .unwrap();
        a.insert(
            p("/etc/machine-id"),
            Node::file("id\n", Origin::new("file", "file[0]")),
        )
        .unwrap();
        a.insert(
            p("/lib"),
            Node::symlink("usr/lib", Origin::new("symlink", "symlink[0]")),
        )
        .unwrap();
        a.insert(
            p("/usr/lib/systemd/system/k.service"),
            Node::file("[Unit]\n", Origin::new("systemd", "systemd.unit[0]")),
        )
        .unwrap();
        let mut b = FileTree::new();
        b.insert(
            p("/etc/machine-id"),
            Node::whiteout(Origin::new("remove", "remove[0]")),
        )
        .unwrap();
        let out = dir.join(name);
        write(
            &Base::scratch(),
            &[
                LayerPlan {
                    name: "kernel".into(),
                    tree: a,
                },
                LayerPlan {
                    name: "immutable".into(),
                    tree: b,
                },
            ],
            &ImageMeta {
                name: "n".into(),
                tag: "latest".into(),
                architecture: "arm64".into(),
                labels: Default::default(),
                annotations: Default::default(),
                created: 0,
            },
            &OutputOptions {
                path: out.clone(),
                format,
                compression: Compression::Gzip,
                force: false,
                cache: None,
            },
        )
        .unwrap();
        out
    }

    // One scenario, read top to bottom: setting it up in pieces would
    // hide what is checked against what.
    #[allow(clippy::too_many_lines)]
    #[test]
    fn reports_layers_files_and_origins() {
        let t = tempfile::tempdir().unwrap();
        for (format, name) in [(Format::Oci, "img"), (Format::OciArchive, "img.tar")] {
            let img = image(t.path(), format, name);
            let r = inspect(&img, Some("/etc/sysctl.d/99-kubernetes-cri.conf")).unwrap();
            assert_eq!(r.layers.len(), 2);
            assert_eq!(r.tag.as_deref(), Some("latest"));
            assert_eq!(r.architecture.as_deref(), Some("arm64"));
            assert_eq!(r.layers[0].name, "kernel");
            let f = r.layers[0]
                .files
                .iter()
                .find(|f| f.path == "/etc/sysctl.d/99-kubernetes-cri.conf")
                .unwrap();
            assert_eq!(
                (f.kind.as_str(), f.mode.as_str(), f.size),
                ("file", "0644", 6)
            );
            let kinds: Vec<(&str, &str)> = r.layers[1]
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.kind.as_str()))
                .collect();
            assert_eq!(kinds, [("/etc", "dir"), ("/etc/machine-id", "whiteout")]);
            let w = r.why.clone().unwrap();
            assert_eq!(w.layer, Some(1));
            assert_eq!(w.origin.as_deref(), Some("sysctl"));
            let mut text = Vec::new();
            print_text(&r, &mut text).unwrap();
            let text = String::from_utf8(text).unwrap();
            assert!(
                text.starts_with(
                    "/etc/sysctl.d/99-kubernetes-cri.conf: written by layer 1 (kernel, sha256:"
                ),
                "{text}"
            );
            assert!(text.trim_end().ends_with("item sysctl"), "{text}");

            let via = inspect(&img, Some("/lib/systemd/system/k.service")).unwrap();
            let w = via.why.unwrap();
            assert_eq!(
                w.resolved.as_deref(),
                Some("/usr/lib/systemd/system/k.service")
            );
            assert_eq!(w.origin.as_deref(), Some("systemd.unit[0]"));

            let gone = inspect(&img, Some("/etc/machine-id")).unwrap();
            assert!(!gone.why.as_ref().unwrap().in_image);
            let mut text = Vec::new();
            print_text(&gone, &mut text).unwrap();
            assert_eq!(
                String::from_utf8(text).unwrap(),
                "/etc/machine-id: not in the image\n"
            );

            let full = inspect(&img, None).unwrap();
            let mut text = Vec::new();
            print_text(&full, &mut text).unwrap();
            let text = String::from_utf8(text).unwrap();
            assert!(text.contains("layer 2/2  immutable"), "{text}");
            assert!(text.contains("/etc/machine-id (whiteout)"), "{text}");
        }
        let rootfs = image(t.path(), Format::Rootfs, "root.tar.zst");
        let r = inspect(&rootfs, Some("/etc/machine-id")).unwrap();
        assert_eq!(r.format, "rootfs");
        assert_eq!(r.layers.len(), 1);
        assert_eq!(r.layers[0].media_type, "application/zstd");
        assert!(!r.why.unwrap().in_image);
        let r = inspect(&rootfs, Some("/etc/sysctl.d/99-kubernetes-cri.conf")).unwrap();
        assert_eq!(r.why.unwrap().layer, Some(1));
        assert!(inspect(&t.path().join("nothing"), None).is_err());
        // A damaged layer is reported, naming its digest.
        let img = t.path().join("img");
        let r = inspect(&img, None).unwrap();
        let d = &r.layers[0].digest;
        let blob = img
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        let mut bytes = std::fs::read(&blob).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 1;
        std::fs::write(&blob, bytes).unwrap();
        let e = inspect(&img, None).unwrap_err();
        assert!(e.to_string().contains(d.as_str()), "{e}");
        assert!(matches!(
            inspect(&rootfs, Some("relative")),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn why_names_the_packages_the_lookup_finds_in_the_kept_files() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), Format::Oci, "img");
        let owner = |name: &str| PackageOwner {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: "all".into(),
            repository: None,
            database: "dpkg".into(),
        };
        // The lookup sees the merged image and where the path really is.
        let seen = std::cell::RefCell::new(Vec::new());
        let lookup = |v: &dyn RootView, p: &ImagePath| {
            seen.borrow_mut()
                .push((p.to_string(), v.exists("/usr/lib/systemd")));
            Ok(vec![owner("k")])
        };
        let r = inspect_with(
            &img,
            None,
            Some("/lib/systemd/system/k.service"),
            Some(&lookup),
        )
        .unwrap();
        assert_eq!(
            seen.take(),
            [("/usr/lib/systemd/system/k.service".to_string(), true)]
        );
        let w = r.why.clone().unwrap();
        assert_eq!(w.packages, [owner("k")]);
        let mut text = Vec::new();
        print_text(&r, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.trim_end().ends_with(
                ", item systemd.unit[0]; a file of package k 1.0-1 (all, dpkg), repository unknown (the image does not record it)"
            ),
            "{text}"
        );
        // Not asked for a path the image lacks.
        let r = inspect_with(&img, None, Some("/etc/machine-id"), Some(&lookup)).unwrap();
        assert!(seen.take().is_empty());
        assert!(r.why.unwrap().packages.is_empty());
        // Many owners (a folder) are shortened; a failed lookup is said.
        let many =
            |_: &dyn RootView, _: &ImagePath| Ok((0..7).map(|i| owner(&format!("p{i}"))).collect());
        let r = inspect_with(&img, None, Some("/etc/sysctl.d"), Some(&many)).unwrap();
        let mut text = Vec::new();
        print_text(&r, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("package p4 ") && !text.contains("package p5 "),
            "{text}"
        );
        assert!(text.trim_end().ends_with("; and 2 more packages"), "{text}");
        let failing = |_: &dyn RootView, _: &ImagePath| Err("rpm database: no rpm".to_string());
        let r = inspect_with(&img, None, Some("/etc/sysctl.d"), Some(&failing)).unwrap();
        assert_eq!(
            r.why.as_ref().unwrap().packages_note.as_deref(),
            Some("rpm database: no rpm")
        );
        let mut text = Vec::new();
        print_text(&r, &mut text).unwrap();
        assert!(String::from_utf8(text)
            .unwrap()
            .contains("; its package is not known: rpm database: no rpm"));
    }
}
