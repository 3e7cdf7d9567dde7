//! nodeimg recipes: the TOML format (layers over a base), includes,
//! variables, the source map that locates errors at file, line and key, the
//! JSON schema, and the recipe's input files opened once, safely, from the
//! recipe's folder. Parsers take text and return values; the only I/O is
//! reading the recipe folder.

pub mod error;
pub mod inputs;
pub mod recipe;
pub mod schema;
pub mod sourcemap;
pub mod vars;

pub use error::{Error, RecipeError, Result};
pub use recipe::{Loaded, Recipe, RecipeLayer};
