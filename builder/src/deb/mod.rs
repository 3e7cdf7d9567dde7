//! Debian packages: versions, deb822 control stanzas and dependency
//! resolution (pure: parsers take text and return values), signed repository
//! metadata, `.deb` files, and a verified download cache.

pub mod control;
pub mod debfile;
pub mod fetch;
pub mod install;
pub mod repo;
pub mod resolve;
pub mod scripts;
pub mod version;
