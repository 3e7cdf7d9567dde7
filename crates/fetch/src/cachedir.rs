//! The cache directory as a whole: how much each part holds, and pruning
//! it by age or size. Only the folders nodeimg writes are looked at
//! ([`PARTS`]); whatever else is in the directory is left alone. Every
//! entry of every part is content-addressed or derived from content and
//! verified when it is used, so removing any file only costs the work of
//! making it again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The parts of a cache directory: folder and what it holds.
pub const PARTS: [(&str, &str); 3] = [
    ("sha256", "downloads (repository indexes and packages)"),
    ("registry", "registry bases (pulled blobs)"),
    (
        "layers",
        "built layers (blobs, entries, base indexes, installed packages, resolutions, parsed package indexes)",
    ),
];

/// Temporary files older than this are left from an interrupted write.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// One part of the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Its folder, relative to the cache directory.
    pub name: String,
    /// What it holds.
    pub holds: String,
    /// Files in it.
    pub files: u64,
    /// Their bytes (apparent sizes: a blob hard-linked into an output
    /// counts here in full).
    pub bytes: u64,
}

/// What the cache directory holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The cache directory.
    pub dir: PathBuf,
    /// Each part, in [`PARTS`] order.
    pub parts: Vec<Part>,
    /// Files in all parts.
    pub files: u64,
    /// Bytes in all parts.
    pub bytes: u64,
}

/// What to prune.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Remove files not used (modified: a reuse refreshes it) for longer.
    pub older_than: Option<Duration>,
    /// Then remove the least recently used files until the cache holds at
    /// most this many bytes.
    pub max_bytes: Option<u64>,
}

/// What pruning did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Files removed.
    pub removed_files: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Bytes left in the cache.
    pub left_bytes: u64,
}

struct File {
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
}

/// Every file (not folder) under `dir`, never following a symbolic link
/// (a link is a file of the cache here: it is counted, and removed).
fn files_under(dir: &Path) -> io::Result<Vec<File>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let m = fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push(File {
                    path: e.path(),
                    bytes: m.len(),
                    used: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    Ok(out)
}

/// Create `dir` and its missing parents as folders only their owner may
/// write to (0755 whatever the umask allows more), as every folder of the
/// cache is made: the layer cache is used only in folders no one else can
/// write.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

/// How much each part of the cache directory `dir` holds.
pub fn usage(dir: &Path) -> io::Result<Usage> {
    let mut parts = Vec::new();
    for (name, holds) in PARTS {
        let files = files_under(&dir.join(name))?;
        parts.push(Part {
            name: name.to_string(),
            holds: holds.to_string(),
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.bytes).sum(),
        });
    }
    Ok(Usage {
        dir: dir.to_path_buf(),
        files: parts.iter().map(|p| p.files).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        parts,
    })
}

fn is_temp(f: &File) -> bool {
    f.path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
}

/// Prune the cache directory `dir` as `rule` says (temporary files older
/// than an hour go too). `now` is the time ages are counted from.
pub fn prune(dir: &Path, rule: Rule, now: SystemTime) -> io::Result<Pruned> {
    let mut files = Vec::new();
    for (name, _) in PARTS {
        files.extend(files_under(&dir.join(name))?);
    }
    // Least recently used first.
    files.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    let age = |f: &File| now.duration_since(f.used).unwrap_or(Duration::ZERO);
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut pruned = Pruned::default();
    for f in &files {
        let old = rule.older_than.is_some_and(|d| age(f) > d);
        let over = rule.max_bytes.is_some_and(|m| total > m);
        let stale = is_temp(f) && age(f) > STALE_TEMP;
        if !(old || over || stale) {
            continue;
        }
        match fs::remove_file(&f.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        total -= f.bytes;
        pruned.removed_files += 1;
        pruned.removed_bytes += f.bytes;
    }
    pruned.left_bytes = total;
    Ok(pruned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(dir: &Path, rel: &str, bytes: usize, age_s: u64, now: SystemTime) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, vec![b'x'; bytes]).unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(now - Duration::from_secs(age_s)).unwrap();
    }

    #[test]
    fn usage_counts_the_parts_and_prune_removes_by_age_then_size() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let now = SystemTime::now();
        put(d, "sha256/aa", 100, 10 * 86400, now);
        put(d, "sha256/bb", 200, 60, now);
        put(d, "registry/blobs/sha256/cc", 300, 3 * 86400, now);
        put(d, "layers/blobs/dd", 400, 120, now);
        put(d, "layers/entries/ee.json", 50, 30, now);
        put(d, "layers/blobs/.tmp-1-2", 7, 2 * 3600, now);
        put(d, "unrelated/file", 1000, 100 * 86400, now);

        let u = usage(d).unwrap();
        assert_eq!(u.bytes, 100 + 200 + 300 + 400 + 50 + 7);
        assert_eq!(u.files, 6);
        assert_eq!(
            u.parts
                .iter()
                .map(|p| (p.name.as_str(), p.files, p.bytes))
                .collect::<Vec<_>>(),
            vec![("sha256", 2, 300), ("registry", 1, 300), ("layers", 3, 457)]
        );

        // Nothing asked: only the stale temporary file goes.
        let p = prune(d, Rule::default(), now).unwrap();
        assert_eq!(
            (p.removed_files, p.removed_bytes, p.left_bytes),
            (1, 7, 1050)
        );

        // By age: what was not used for two days.
        let two_days = Rule {
            older_than: Some(Duration::from_secs(2 * 86400)),
            max_bytes: None,
        };
        let p = prune(d, two_days, now).unwrap();
        assert_eq!(
            (p.removed_files, p.removed_bytes, p.left_bytes),
            (2, 400, 650)
        );
        assert!(!d.join("sha256/aa").exists() && !d.join("registry/blobs/sha256/cc").exists());

        // By size: least recently used first, until at most 500 bytes.
        let p = prune(
            d,
            Rule {
                older_than: None,
                max_bytes: Some(500),
            },
            now,
        )
        .unwrap();
        assert_eq!((p.removed_files, p.left_bytes), (1, 250));
        assert!(
            !d.join("layers/blobs/dd").exists(),
            "the oldest of the rest"
        );
        assert!(d.join("sha256/bb").exists() && d.join("layers/entries/ee.json").exists());
        assert!(
            d.join("unrelated/file").exists(),
            "only nodeimg's folders are pruned"
        );
    }
}
