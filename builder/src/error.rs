//! The error of a build: each crate's errors, kept whole, and the kinds the
//! CLI maps to exit codes.

pub use nodeimg_image::IoContext;
pub use nodeimg_recipe::RecipeError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a build. [`Error::exit_code`] maps each
/// kind to the CLI's documented exit code.
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
    /// An input image, the output, I/O or a registry failed (exit 1), or a
    /// value the image crate was given is wrong (exit 2).
    #[error(transparent)]
    Image(#[from] nodeimg_image::Error),
}

impl Error {
    /// The process exit code for this error: 2 for usage and recipe errors,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Recipe(_) | Error::Usage(_) => 2,
            Error::Lint { .. } => 1,
            Error::Image(e) => e.exit_code(),
        }
    }

    /// A recipe error.
    pub fn recipe(e: RecipeError) -> Self {
        Error::Recipe(Box::new(e))
    }

    /// An unusable input: `what` names it.
    pub fn image(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Image(nodeimg_image::Error::image(what, message))
    }

    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Image(nodeimg_image::Error::Io {
            context: context.into(),
            source,
        })
    }
}

impl From<nodeimg_recipe::Error> for Error {
    fn from(e: nodeimg_recipe::Error) -> Self {
        match e {
            nodeimg_recipe::Error::Recipe(r) => Error::Recipe(r),
            nodeimg_recipe::Error::Usage(m) => Error::Usage(m),
        }
    }
}

impl From<nodeimg_pkg::Error> for Error {
    fn from(e: nodeimg_pkg::Error) -> Self {
        match e {
            nodeimg_pkg::Error::Recipe(r) => Error::Recipe(r),
            nodeimg_pkg::Error::Image(e) => Error::Image(e),
        }
    }
}
