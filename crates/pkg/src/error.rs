//! The errors of the package layer: a problem located in the recipe or the
//! lock file, or one of the image crate's (I/O, an unusable image).

pub use nodeimg_image::IoContext;
pub use nodeimg_recipe::RecipeError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading a lock file or checking it against a recipe.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem located in the recipe or the lock file (file, line, key).
    #[error("{0}")]
    Recipe(Box<RecipeError>),
    /// I/O, or an unusable input.
    #[error(transparent)]
    Image(#[from] nodeimg_image::Error),
}

impl Error {
    /// A located problem.
    pub fn recipe(e: RecipeError) -> Self {
        Error::Recipe(Box::new(e))
    }

    /// An unusable input: `what` names it.
    pub fn image(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Image(nodeimg_image::Error::image(what, message))
    }
}

impl From<nodeimg_recipe::Error> for Error {
    fn from(e: nodeimg_recipe::Error) -> Self {
        match e {
            nodeimg_recipe::Error::Recipe(r) => Error::Recipe(r),
            nodeimg_recipe::Error::Usage(m) => Error::Image(nodeimg_image::Error::Usage(m)),
        }
    }
}
