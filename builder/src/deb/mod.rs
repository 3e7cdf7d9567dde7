//! Debian package metadata: versions, deb822 control stanzas, dependency
//! resolution. Pure: parsers take text and return values; no I/O here.

pub mod control;
pub mod resolve;
pub mod version;
