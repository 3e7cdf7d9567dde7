//! Files named by a recipe, read from the recipe's folder (never outside it).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use nodeimg_layers::Inputs;

/// The recipe's folder as a source of input files. Every path is checked:
/// relative, and inside the folder once symlinks are resolved. The names
/// read are remembered (for the recipe digest).
#[derive(Debug)]
pub struct RecipeInputs {
    dir: PathBuf,
    used: Mutex<BTreeSet<String>>,
}

impl RecipeInputs {
    /// Inputs from `dir` (canonicalised here; it must exist).
    pub fn new(dir: &Path) -> std::io::Result<RecipeInputs> {
        Ok(RecipeInputs {
            dir: dir.canonicalize()?,
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The canonical folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Check `rel` and return the canonical host path of the regular file
    /// it names.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        resolve_in(&self.dir, rel)
    }

    /// The recipe-relative names read so far, sorted.
    pub fn used(&self) -> Vec<String> {
        match self.used.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    fn note(&self, rel: &str) {
        match self.used.lock() {
            Ok(mut g) => {
                g.insert(rel.to_string());
            }
            Err(p) => {
                p.into_inner().insert(rel.to_string());
            }
        }
    }
}

/// Check that `rel` names a regular file inside the canonical folder `dir`
/// and return its canonical path.
pub fn resolve_in(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    if rel.is_empty() {
        return Err("empty path".to_string());
    }
    let p = Path::new(rel);
    if p.is_absolute() || p.has_root() {
        return Err(format!(
            "{rel:?} is an absolute host path; inputs must be relative to the recipe's folder"
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{rel:?} uses `..`; inputs must stay inside the recipe's folder"
        ));
    }
    let full = dir.join(p);
    let canon = full
        .canonicalize()
        .map_err(|e| format!("{rel:?} cannot be opened in {}: {e}", dir.display()))?;
    if !canon.starts_with(dir) {
        return Err(format!(
            "{rel:?} leads outside the recipe's folder (to {}) through a symbolic link",
            canon.display()
        ));
    }
    if !canon.is_file() {
        return Err(format!("{rel:?} is not a regular file"));
    }
    Ok(canon)
}

impl Inputs for RecipeInputs {
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        let p = self.resolve(rel)?;
        let b = std::fs::read(&p).map_err(|e| format!("{rel:?}: {e}"))?;
        self.note(rel);
        Ok(b)
    }

    fn host_file(&self, rel: &str) -> Result<(PathBuf, u64), String> {
        let p = self.resolve(rel)?;
        let len = std::fs::metadata(&p)
            .map_err(|e| format!("{rel:?}: {e}"))?
            .len();
        self.note(rel);
        Ok((p, len))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("recipe");
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/a"), "A").unwrap();
        std::fs::write(root.path().join("secret"), "S").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link")).unwrap();
        let inp = RecipeInputs::new(&dir).unwrap();
        assert_eq!(inp.read("files/a").unwrap(), b"A");
        assert_eq!(inp.host_file("files/a").unwrap().1, 1);
        assert!(inp.read("../secret").unwrap_err().contains("`..`"));
        assert!(inp.read("files/../../secret").unwrap_err().contains("`..`"));
        let abs = root.path().join("secret");
        assert!(inp
            .read(abs.to_str().unwrap())
            .unwrap_err()
            .contains("absolute"));
        #[cfg(unix)]
        assert!(inp.read("link").unwrap_err().contains("outside"));
        assert!(inp
            .read("missing")
            .unwrap_err()
            .contains("cannot be opened"));
        assert!(inp
            .read("files")
            .unwrap_err()
            .contains("not a regular file"));
        assert_eq!(inp.used(), vec!["files/a".to_string()]);
    }
}
