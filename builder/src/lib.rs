//! nodeimg: build immutable, preconfigured Kubernetes node images from TOML recipes.
//!
//! The pipeline, top-down:
//!
//! ```text
//! recipe.toml --recipe--> Recipe (includes merged, spans kept for errors)
//!             --base----> Base (scratch | OCI layout | OCI archive | rootfs tar), its RootView
//!             --recipe--> variables expanded (os-release of the base, --var)
//!             --lint----> findings (errors stop the build)
//!             --plan----> one FileTree per recipe layer (nodeimg-layers renders them)
//!             --output--> layers packed (sorted tar, compressed, hashed while streaming),
//!                         written to an OCI layout, OCI archive or rootfs tar, atomically
//! ```

pub mod accounts;
pub mod base;
pub mod build;
pub mod cachefile;
pub mod cli;
pub mod deb;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod inputs;
pub mod inspect;
pub mod limits;
pub mod lint;
pub mod lock;
pub mod output;
pub mod pack;
pub mod packages;
pub mod plan;
pub mod progress;
pub mod recipe;
pub mod registry;
pub mod rpm;
pub mod sandbox;
pub mod schema;
pub mod sourcemap;
pub mod tarindex;
pub(crate) mod tarname;
pub(crate) mod tarstream;
pub mod vars;

pub use error::{Error, Result};
