//! The one error type of the `nodeimg` library.

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

/// Everything that can go wrong in the library. [`Error::exit_code`] maps
/// each kind to the CLI's documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recipe (or a fragment, or a file it names) is wrong. Exit 2.
    #[error("{0}")]
    Recipe(Box<RecipeError>),
    /// The command line is wrong. Exit 2.
    #[error("{0}")]
    Usage(String),
    /// Lint found errors (already printed as findings). Exit 1.
    #[error("{errors} lint error(s); the build was stopped")]
    Lint {
        /// How many error findings.
        errors: usize,
    },
    /// The base image or another image given as input is unusable. Exit 1.
    #[error("{what}: {message}")]
    Image {
        /// Which image (the reference as the user wrote it).
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O operation failed. Exit 1.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another build is writing the same output (it holds its lock). Exit 1.
    #[error(
        "{}: {holder} is writing this output (it holds {}); wait for it to finish, \
         or write to another path with -o",
        .path.display(),
        .lock.display()
    )]
    OutputBusy {
        /// The output path.
        path: PathBuf,
        /// Who holds the lock: `another nodeimg build (pid N)`.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The OCI layout library failed. Exit 1.
    #[error("{context}: {source}")]
    Oci {
        /// What we were doing.
        context: String,
        /// The library error.
        #[source]
        source: ocidir::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage and recipe errors,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Recipe(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// A recipe error.
    pub fn recipe(e: RecipeError) -> Self {
        Error::Recipe(Box::new(e))
    }

    /// An image error.
    pub fn image(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Image {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Attach a context sentence to I/O results.
pub trait IoContext<T> {
    /// Wrap an I/O error with `context` (computed only on error).
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for std::result::Result<T, ocidir::Error> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| Error::Oci {
            context: context(),
            source,
        })
    }
}
