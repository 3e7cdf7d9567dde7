//! The Debian package backend: versions, deb822 control stanzas and
//! dependency resolution (pure: parsers take text and return values), signed
//! apt repository metadata, `.deb` files, and installing them into a layer
//! with the dpkg database updated, without running apt or dpkg.

pub mod backend;
pub mod control;
pub mod debfile;
pub mod install;
pub mod repo;
pub mod resolve;
pub mod version;

use nodeimg_pkg::lock::{LayerKind, LockedPackage, PackageRules};

/// The `Multi-Arch` value a lock names for `p`.
pub fn locked_multi_arch(p: &LockedPackage) -> Option<control::MultiArch> {
    use control::MultiArch;
    match p.multi_arch.as_str() {
        "no" => Some(MultiArch::No),
        "same" => Some(MultiArch::Same),
        "foreign" => Some(MultiArch::Foreign),
        "allowed" => Some(MultiArch::Allowed),
        _ => None,
    }
}

/// The Debian package backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deb;

impl PackageRules for Deb {
    fn kind(&self) -> LayerKind {
        LayerKind::Deb
    }

    fn check_locked(
        &self,
        p: &LockedPackage,
        architecture: &str,
    ) -> Result<(), (&'static str, String)> {
        version::Version::parse(&p.version).map_err(|e| {
            (
                "version",
                format!("{:?} is not a Debian version: {}", e.text, e.reason),
            )
        })?;
        nodeimg_pkg::lock::check_architecture(p, "all", architecture, architecture)?;
        if locked_multi_arch(p).is_none() {
            return Err((
                "multi-arch",
                format!("{:?} is not no, same, foreign or allowed", p.multi_arch),
            ));
        }
        Ok(())
    }
}

/// The directory of deb822 apt sources in the image.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
