//! nodeimg packages: what every package backend shares. The lock file
//! schema (plain data, one kind of layer per backend), system accounts made
//! by maintainer scripts, the scanner of maintainer scripts, and the
//! sandbox that runs an image's own programs with no view of the host.

pub mod accounts;
pub mod arch;
pub mod error;
pub mod lock;
pub mod record;
pub mod sandbox;
pub mod scripts;

pub use error::{Error, Result};
pub mod backend;
pub mod driver;
pub mod env;
