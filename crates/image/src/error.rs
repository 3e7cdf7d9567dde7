//! The errors of images: an unusable input image, I/O with its context, the
//! OCI layout library, a busy output.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading and writing images. [`Error::exit_code`] maps
/// each kind to the CLI's documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong. Exit 2.
    #[error("{0}")]
    Usage(String),
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
    /// The process exit code for this error: 2 for usage errors,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
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
