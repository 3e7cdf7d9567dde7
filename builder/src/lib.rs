//! nodeimg: build immutable, preconfigured Kubernetes node images from TOML
//! recipes. This crate is the orchestration; the work is done by the crates
//! it drives (see `docs/architecture.md`):
//!
//! ```text
//! recipe.toml --nodeimg-recipe--> Recipe (includes merged, spans kept for errors)
//!             --nodeimg-image---> Base (scratch | OCI layout | OCI archive | rootfs tar,
//!                                 or a registry's through nodeimg-registry), its RootView
//!             --nodeimg-recipe--> variables expanded (os-release of the base, --var)
//!             --nodeimg-lint----> findings (errors stop the build)
//!             --plan------------> one FileTree per recipe layer (nodeimg-layers renders
//!                                 them; packages through a nodeimg-pkg backend:
//!                                 nodeimg-deb or nodeimg-rpm)
//!             --nodeimg-image---> layers packed (sorted tar, compressed, hashed while
//!                                 streaming), written to an OCI layout, OCI archive or
//!                                 rootfs tar, atomically
//! ```

pub mod build;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod inspect;
#[cfg(test)]
mod lock_tests;
pub mod packages;
pub mod plan;

pub use error::{Error, Result};
