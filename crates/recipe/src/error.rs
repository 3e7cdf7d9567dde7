//! The errors of recipes: located problems (file, line, column, key, hint)
//! and command-line values that are wrong.

use std::fmt;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A problem with the recipe, located as precisely as we can: file, line,
/// key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    /// The recipe or fragment file, as the user named it (or relative to
    /// the recipe's folder).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Key path, e.g. `layer[1].systemd.enable[0]` (`layer` is the
    /// `[[layer]]` array, indexed from 0 within this file).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// What can go wrong reading a recipe.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recipe (or a fragment, or a file it names) is wrong.
    #[error("{0}")]
    Recipe(Box<RecipeError>),
    /// A command-line value (`--var`) is wrong.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// A recipe error.
    pub fn recipe(e: RecipeError) -> Self {
        Error::Recipe(Box::new(e))
    }
}
