//! Base images: `scratch`, an OCI layout directory, an OCI archive, or a
//! rootfs tarball; their layers (reused by digest) and a [`RootView`] of
//! their merged file tree.

use std::fmt;
use std::path::{Path, PathBuf};

use nodeimg_layers::RootView;
use ocidir::oci_spec::image::ImageConfiguration;

use crate::error::Result;

/// Where the base image comes from, as written after `base =` or `--base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseRef {
    /// No base: the image holds only the recipe's layers.
    Scratch,
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; the only manifest if absent.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive.
        file: PathBuf,
        /// As for [`BaseRef::Oci`].
        tag: Option<String>,
    },
    /// `rootfs:FILE` (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`): a root file
    /// system tarball, which becomes one layer.
    Rootfs {
        /// The tarball.
        file: PathBuf,
    },
}

impl BaseRef {
    /// Parse a base reference; relative paths are joined to `relative_to`.
    pub fn parse(s: &str, relative_to: &Path) -> std::result::Result<BaseRef, String> {
        let _ = (s, relative_to);
        todo!()
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRef::Scratch => write!(f, "scratch"),
            BaseRef::Oci { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            BaseRef::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}", file.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            BaseRef::Rootfs { file } => write!(f, "rootfs:{}", file.display()),
        }
    }
}

/// An opened base image.
pub struct Base {
    _private: (),
}

impl Base {
    /// Open and index a base image. The layers are read once, streaming, to
    /// build the view; nothing is extracted to disk.
    pub fn open(r: &BaseRef) -> Result<Base> {
        let _ = r;
        todo!()
    }

    /// The empty base.
    pub fn scratch() -> Base {
        todo!()
    }

    /// The merged file tree of the base.
    pub fn view(&self) -> &dyn RootView {
        todo!()
    }

    /// The base's image configuration, if it has one (OCI bases).
    pub fn config(&self) -> Option<&ImageConfiguration> {
        todo!()
    }

    /// The base's architecture (OCI spelling), if it says.
    pub fn architecture(&self) -> Option<String> {
        todo!()
    }
}
