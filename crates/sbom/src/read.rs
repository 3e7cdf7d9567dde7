//! Reading an image into an [`Sbom`]: one pass over its layers
//! ([`nodeimg_image::inspect::walk`], every blob verified) that hashes every
//! regular file and keeps the bytes of the few files an SBOM reads (the
//! package databases of every layer that changes them, copyright files,
//! `os-release`, the packages' records), then the packages and files worked
//! out from those, with the layer and recipe item behind each path as
//! `inspect --why` answers it ([`Provenance`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use nodeimg_image::inspect::{walk, Provenance, Report};
use nodeimg_image::tarindex::{FileVisitor, Kind as EntryKind, MergedIndex, RPMDB_KEEP_MAX};
use nodeimg_layers::{ImagePath, RootView};
use nodeimg_pkg::record::{LayerRecord, RECORD_DIR, RECORD_MAX};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::{
    dpkg, license, rpmdb, Download, Error, FileRecord, Image, Kind, Layer, OsRelease, Package,
    Result, Sbom,
};

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "/var/lib/dpkg/status.d/";
const DPKG_INFO: &str = "/var/lib/dpkg/info/";
const DPKG_DIR: &str = "/var/lib/dpkg/";
/// Where rpm keeps its database (the second for newer distributions, with
/// `/var/lib/rpm` a symlink to it).
const RPM_DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
/// The most bytes of all kept files together.
const KEPT_MAX: u64 = 2 << 30;
/// The largest dpkg status file read (as the base view reads it).
const DPKG_STATUS_MAX: u64 = 64 << 20;
/// The largest copyright, `.list` or `status.d` file read.
const SMALL_MAX: u64 = 16 << 20;

/// Read the image at `image` (an OCI layout `DIR[:TAG]`, an OCI archive
/// `FILE[:TAG]`, or a rootfs tar, as `nodeimg inspect` takes them; `arch`
/// picks the image of an image index by its OCI architecture). The
/// documents carry the time `epoch` (seconds since 1970) when given, else
/// the image's creation time, else 0.
pub fn read(image: &Path, arch: Option<&str>, epoch: Option<i64>) -> Result<Sbom> {
    let mut seen = Seen::default();
    let (report, prov) = walk(image, arch, Some(&mut seen))?;
    let created = epoch
        .or_else(|| {
            report
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|t| t.timestamp())
        })
        .unwrap_or(0);
    let image_info = image_of(image, &report, created, &seen, prov.tree());
    let mut work = Work {
        seen: &seen,
        tree: prov.tree(),
        warnings: Vec::new(),
        owners: HashMap::new(),
        downloads: downloads(&seen, prov.tree()),
        namespace: image_info.os.as_ref().map(|o| o.id.clone()),
    };
    let mut packages = work.dpkg()?;
    packages.extend(work.rpm()?);
    packages.sort_by_cached_key(|p| (crate::purl::package_url(p), p.layer));
    let files = work.files(&prov);
    let warnings = work.warnings;
    Ok(Sbom {
        image: image_info,
        packages,
        files,
        warnings,
    })
}

/// A file's hashes and size.
#[derive(Debug, Clone)]
struct Hashed {
    sha256: String,
    sha1: String,
    size: u64,
}

/// What the pass over the layers saw: every regular file's hashes by layer
/// and path, and the bytes of the files kept.
#[derive(Default)]
struct Seen {
    hashes: HashMap<(u32, String), Hashed>,
    kept: BTreeMap<(u32, String), Vec<u8>>,
    /// Files that were to be kept but were larger than their bound.
    too_large: BTreeMap<(u32, String), u64>,
    kept_bytes: u64,
}

/// The bound of the bytes kept of `path`, when it is one an SBOM reads.
fn keep_max(path: &str) -> Option<u64> {
    if path == DPKG_STATUS {
        return Some(DPKG_STATUS_MAX);
    }
    if path.starts_with(DPKG_STATUS_D) || (path.starts_with(DPKG_INFO) && path.ends_with(".list")) {
        return Some(SMALL_MAX);
    }
    if let Some(rest) = path.strip_prefix("/usr/share/doc/") {
        return rest
            .strip_suffix("/copyright")
            .filter(|p| !p.contains('/'))
            .map(|_| SMALL_MAX);
    }
    if OS_RELEASE.contains(&path) {
        return Some(1 << 20);
    }
    if path
        .strip_prefix(RECORD_DIR)
        .is_some_and(|r| r.starts_with('/') && r.ends_with(".json"))
    {
        return Some(RECORD_MAX);
    }
    let (dir, name) = path.rsplit_once('/')?;
    (RPM_DIRS.contains(&dir) && matches!(name, "rpmdb.sqlite" | "rpmdb.sqlite-wal"))
        .then_some(RPMDB_KEEP_MAX)
}

impl FileVisitor for Seen {
    fn file(
        &mut self,
        layer: u32,
        path: &str,
        size: u64,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let keep = keep_max(path);
        let keeping = keep.is_some_and(|max| size <= max && self.kept_bytes + size <= KEPT_MAX);
        if let (Some(_), false) = (keep, keeping) {
            self.too_large.insert((layer, path.to_string()), size);
        }
        let mut sha256 = Sha256::new();
        let mut sha1 = Sha1::new();
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha256.update(&buf[..n]);
            sha1.update(&buf[..n]);
            if keeping {
                bytes.extend_from_slice(&buf[..n]);
            }
            total += n as u64;
        }
        if keeping {
            self.kept_bytes += total;
            self.kept.insert((layer, path.to_string()), bytes);
        }
        self.hashes.insert(
            (layer, path.to_string()),
            Hashed {
                sha256: hex::encode(sha256.finalize()),
                sha1: hex::encode(sha1.finalize()),
                size: total,
            },
        );
        Ok(())
    }
}

impl Seen {
    /// The bytes of `path` as the final image has it: kept from the layer
    /// that last wrote it. `Ok(None)` when the image has no such regular
    /// file; an error when it was too large to keep.
    fn final_bytes(&self, tree: &MergedIndex, path: &str) -> Result<Option<&[u8]>> {
        let Some(layer) = file_layer(tree, path) else {
            return Ok(None);
        };
        self.bytes_of(layer, path).map(Some)
    }

    /// The bytes of `path` as layer `layer` wrote it.
    fn bytes_of(&self, layer: u32, path: &str) -> Result<&[u8]> {
        let key = (layer, path.to_string());
        if let Some(b) = self.kept.get(&key) {
            return Ok(b);
        }
        let size = self.too_large.get(&key).copied().unwrap_or(0);
        Err(Error::TooLarge {
            path: path.to_string(),
            size,
            max: keep_max(path).unwrap_or(0),
        })
    }

    /// The layers that wrote `path`, lowest first.
    fn layers_of(&self, path: &str) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .kept
            .keys()
            .chain(self.too_large.keys())
            .filter(|(_, p)| p == path)
            .map(|(l, _)| *l)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The layer of the regular file `path` of the final image.
fn file_layer(tree: &MergedIndex, path: &str) -> Option<u32> {
    tree.get(path)
        .filter(|r| matches!(r.kind, EntryKind::File(_)))
        .map(|r| r.layer)
}

/// The image's name, digest, time, layers and distribution.
fn image_of(image: &Path, report: &Report, created: i64, seen: &Seen, tree: &MergedIndex) -> Image {
    let name = report.tag.clone().unwrap_or_else(|| {
        image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| image.display().to_string())
    });
    let digest = report
        .manifest_digest
        .clone()
        .or_else(|| report.layers.first().map(|l| l.digest.clone()))
        .unwrap_or_default();
    let os = OS_RELEASE.iter().find_map(|p| {
        let real = ImagePath::new(p).ok().map(|ip| tree.resolve(&ip))?;
        let bytes = seen.final_bytes(tree, real.as_str()).ok().flatten()?;
        parse_os_release(&String::from_utf8_lossy(bytes))
    });
    Image {
        name,
        digest,
        created,
        architecture: report.architecture.clone(),
        os,
        layers: report
            .layers
            .iter()
            .map(|l| Layer {
                name: l.name.clone(),
                digest: l.digest.clone(),
            })
            .collect(),
    }
}

/// `ID`, `VERSION_ID` and `PRETTY_NAME` of an `os-release` file.
pub fn parse_os_release(text: &str) -> Option<OsRelease> {
    let mut fields: HashMap<&str, String> = HashMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        fields.insert(k.trim(), v.to_string());
    }
    let id = fields.remove("ID").filter(|i| !i.is_empty())?;
    Some(OsRelease {
        id,
        version_id: fields.remove("VERSION_ID"),
        pretty_name: fields.remove("PRETTY_NAME"),
    })
}

/// The packages nodeimg installed, by kind, name, architecture and version.
type Downloads = HashMap<(Kind, String, String, String), Download>;

/// Every package's download in the records the final image holds.
fn downloads(seen: &Seen, tree: &MergedIndex) -> Downloads {
    let mut out = HashMap::new();
    let prefix = format!("{RECORD_DIR}/");
    for ((layer, path), bytes) in &seen.kept {
        if !path.starts_with(&prefix) || file_layer(tree, path) != Some(*layer) {
            continue;
        }
        let Ok(rec) = LayerRecord::parse(bytes) else {
            continue;
        };
        let kind = match rec.kind {
            nodeimg_pkg::lock::LayerKind::Deb => Kind::Deb,
            nodeimg_pkg::lock::LayerKind::Rpm => Kind::Rpm,
        };
        for p in rec.packages {
            out.insert(
                (kind, p.name, p.architecture, p.version),
                Download {
                    repository: p.repository,
                    url: p.url,
                    sha256: p.sha256,
                },
            );
        }
    }
    out
}

/// The working state of turning what was seen into packages and files.
struct Work<'a> {
    seen: &'a Seen,
    tree: &'a MergedIndex,
    warnings: Vec<String>,
    /// The package owning each (resolved) path.
    owners: HashMap<String, String>,
    downloads: Downloads,
    namespace: Option<String>,
}

/// A package database as one layer left it: (name, architecture, version)
/// of each package.
type Snapshot = (u32, Vec<(String, String, String)>);

/// Which layer each package (by name and architecture) arrived in: the
/// layer of the first snapshot of the database, from the lowest, that has
/// the package at the version it has in the next ones.
fn arrivals(snapshots: Vec<Snapshot>) -> HashMap<(String, String), u32> {
    let mut version: HashMap<(String, String), String> = HashMap::new();
    let mut arrived: HashMap<(String, String), u32> = HashMap::new();
    for (layer, entries) in snapshots {
        let mut now: HashMap<(String, String), String> = HashMap::new();
        for (name, arch, ver) in entries {
            let key = (name, arch);
            if version.get(&key) != Some(&ver) {
                arrived.insert(key.clone(), layer);
            }
            now.insert(key, ver);
        }
        version = now;
    }
    arrived
}

impl Work<'_> {
    fn resolve_parent(&self, path: &str) -> Option<String> {
        let p = ImagePath::new(path).ok()?;
        Some(self.tree.resolve_parent(&p).as_str().to_string())
    }

    /// The dpkg packages: the final status file (its snapshots in every
    /// layer that wrote it give each package's layer), else the files of
    /// `status.d/`.
    fn dpkg(&mut self) -> Result<Vec<Package>> {
        let mut entries: Vec<(dpkg::Entry, Option<u32>)> = Vec::new();
        if let Some(last) = file_layer(self.tree, DPKG_STATUS) {
            let mut snapshots = Vec::new();
            let mut last_entries = Vec::new();
            for layer in self.seen.layers_of(DPKG_STATUS) {
                if layer > last {
                    break;
                }
                let bytes = self.seen.bytes_of(layer, DPKG_STATUS)?;
                let text = String::from_utf8_lossy(bytes);
                let parsed = dpkg::parse_status(&text, DPKG_STATUS)?;
                snapshots.push((
                    layer,
                    parsed
                        .iter()
                        .map(|e| (e.name.clone(), e.architecture.clone(), e.version.clone()))
                        .collect(),
                ));
                last_entries = parsed;
            }
            let arrived = arrivals(snapshots);
            for e in last_entries {
                let layer = arrived
                    .get(&(e.name.clone(), e.architecture.clone()))
                    .copied();
                entries.push((e, layer));
            }
        }
        for (path, layer) in self.status_d() {
            let bytes = self.seen.bytes_of(layer, &path)?;
            for e in dpkg::parse_status(&String::from_utf8_lossy(bytes), &path)? {
                entries.push((e, Some(layer)));
            }
        }
        self.dpkg_owners();
        Ok(entries
            .into_iter()
            .map(|(e, layer)| self.deb_package(e, layer))
            .collect())
    }

    /// The files of `status.d/` in the final image (not their `.md5sums`).
    fn status_d(&self) -> Vec<(String, u32)> {
        self.tree
            .entries()
            .filter(|(p, r)| {
                p.starts_with(DPKG_STATUS_D)
                    && !p[DPKG_STATUS_D.len()..].contains('/')
                    && !p.ends_with(".md5sums")
                    && matches!(r.kind, EntryKind::File(_))
            })
            .map(|(p, r)| (p.to_string(), r.layer))
            .collect()
    }

    /// The owners of the paths the final `.list` files name.
    fn dpkg_owners(&mut self) {
        let lists: Vec<(String, u32)> = self
            .tree
            .entries()
            .filter(|(p, r)| {
                p.starts_with(DPKG_INFO)
                    && p.ends_with(".list")
                    && matches!(r.kind, EntryKind::File(_))
            })
            .map(|(p, r)| (p.to_string(), r.layer))
            .collect();
        for (path, layer) in lists {
            let Some((name, _)) = dpkg::list_owner(&path[DPKG_INFO.len()..]) else {
                continue;
            };
            let Ok(bytes) = self.seen.bytes_of(layer, &path) else {
                self.warnings.push(format!(
                    "{path} is too large to read: the files of package {name} are not told apart from the image's own"
                ));
                continue;
            };
            for p in dpkg::parse_list(&String::from_utf8_lossy(bytes)) {
                if let Some(real) = self.resolve_parent(&p) {
                    self.owners.insert(real, name.clone());
                }
            }
        }
    }

    fn deb_package(&mut self, e: dpkg::Entry, layer: Option<u32>) -> Package {
        let download = self
            .downloads
            .get(&(
                Kind::Deb,
                e.name.clone(),
                e.architecture.clone(),
                e.version.clone(),
            ))
            .cloned();
        let license = self.debian_license(&e.name);
        Package {
            kind: Kind::Deb,
            namespace: self.namespace.clone(),
            license,
            layer: layer.map(|l| l as usize),
            download,
            name: e.name,
            version: e.version,
            epoch: None,
            architecture: e.architecture,
            source: e.source,
        }
    }

    /// The license of `/usr/share/doc/NAME/copyright` (its folder may be a
    /// symlink to another package's).
    fn debian_license(&mut self, name: &str) -> Option<String> {
        let p = ImagePath::new(&format!("/usr/share/doc/{name}/copyright")).ok()?;
        let real = self.tree.resolve(&p);
        match self.seen.final_bytes(self.tree, real.as_str()) {
            Ok(Some(bytes)) => license::debian_copyright(&String::from_utf8_lossy(bytes)),
            Ok(None) => None,
            Err(e) => {
                self.warnings
                    .push(format!("license of {name} not read: {e}"));
                None
            }
        }
    }

    /// The rpm packages of the final `rpmdb.sqlite`, each with the layer
    /// its snapshots give it.
    fn rpm(&mut self) -> Result<Vec<Package>> {
        let Some(dir) = self.rpm_dir() else {
            return Ok(Vec::new());
        };
        let db = format!("{dir}/rpmdb.sqlite");
        let wal = format!("{dir}/rpmdb.sqlite-wal");
        let Some(last) = file_layer(self.tree, &db) else {
            for other in ["Packages", "Packages.db"] {
                if file_layer(self.tree, &format!("{dir}/{other}")).is_some() {
                    self.warnings.push(format!(
                        "{dir}/{other}: the image's rpm database is not sqlite (rpm 4.16 and later); its packages are not listed"
                    ));
                }
            }
            return Ok(Vec::new());
        };
        let mut snapshots = Vec::new();
        let mut final_entries = Vec::new();
        for layer in self.seen.layers_of(&db) {
            if layer > last {
                break;
            }
            let bytes = self.seen.bytes_of(layer, &db)?;
            let log = if layer == last {
                self.seen.final_bytes(self.tree, &wal)?
            } else {
                self.seen.bytes_of(layer, &wal).ok()
            };
            let entries = rpmdb::read_sqlite(bytes, log, &db)?;
            snapshots.push((
                layer,
                entries
                    .iter()
                    .map(|e| (e.name.clone(), e.arch.clone(), e.full_version()))
                    .collect(),
            ));
            final_entries = entries;
        }
        let arrived = arrivals(snapshots);
        let mut out = Vec::new();
        for e in final_entries {
            for f in &e.files {
                if let Some(real) = self.resolve_parent(f) {
                    self.owners.insert(real, e.name.clone());
                }
            }
            let layer = arrived.get(&(e.name.clone(), e.arch.clone())).copied();
            out.push(self.rpm_package(e, layer));
        }
        Ok(out)
    }

    /// The folder of the image's rpm database (`/var/lib/rpm` resolved).
    fn rpm_dir(&self) -> Option<String> {
        RPM_DIRS.iter().find_map(|d| {
            let real = self.tree.resolve(&ImagePath::new(d).ok()?);
            self.tree
                .entries()
                .any(|(p, _)| {
                    p.strip_prefix(real.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                })
                .then(|| real.as_str().to_string())
        })
    }

    fn rpm_package(&self, e: rpmdb::Entry, layer: Option<u32>) -> Package {
        let download = self
            .downloads
            .get(&(Kind::Rpm, e.name.clone(), e.arch.clone(), e.full_version()))
            .cloned();
        let namespace = self.namespace.clone().or_else(|| {
            e.vendor
                .as_deref()
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_lowercase)
        });
        Package {
            kind: Kind::Rpm,
            version: e.version_release(),
            epoch: e.epoch,
            license: e.license.as_deref().and_then(license::rpm_license),
            layer: layer.map(|l| l as usize),
            download,
            namespace,
            source: None,
            architecture: e.arch,
            name: e.name,
        }
    }

    /// The regular files no package owns, and the packages' files a recipe
    /// item replaced, with their hashes and the item that wrote them; the
    /// package databases, the packages' records and the rpm database
    /// folder are left out (they are the packages' own records).
    fn files(&mut self, prov: &Provenance) -> Vec<FileRecord> {
        let rpm_dir = self.rpm_dir().map(|d| format!("{d}/"));
        let skip: Vec<String> = [
            Some(DPKG_DIR.to_string()),
            Some(format!("{RECORD_DIR}/")),
            rpm_dir,
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut out = Vec::new();
        let mut missing = BTreeSet::new();
        for (path, rec) in self.tree.entries() {
            let (layer, at) = match &rec.kind {
                EntryKind::File(_) => (rec.layer, path),
                EntryKind::Hardlink(t) => match self.tree.get(t) {
                    Some(tr) => (tr.layer, t.as_str()),
                    None => continue,
                },
                _ => continue,
            };
            if skip.iter().any(|s| path.starts_with(s.as_str())) {
                continue;
            }
            let owner = self.owners.get(path).cloned();
            let Ok(ip) = ImagePath::new(path) else {
                continue;
            };
            let why = prov.why(&ip);
            let by_item = why.origin.as_deref().filter(|o| *o != "packages");
            if owner.is_some() && by_item.is_none() {
                continue;
            }
            let Some(h) = self.seen.hashes.get(&(layer, at.to_string())) else {
                missing.insert(path.to_string());
                continue;
            };
            out.push(FileRecord {
                path: path.to_string(),
                size: h.size,
                sha256: h.sha256.clone(),
                sha1: h.sha1.clone(),
                layer: rec.layer as usize,
                origin: why.origin.clone(),
                package: owner,
            });
        }
        for m in missing {
            self.warnings
                .push(format!("{m}: no content seen; left out"));
        }
        out
    }
}
