//! Debian package repositories: signed metadata, .deb files, and a verified download cache.

pub mod debfile;
pub mod fetch;
pub mod repo;
