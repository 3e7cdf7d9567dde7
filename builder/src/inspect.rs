//! `nodeimg inspect`: the image crate's report of an image, whose `--why`
//! answer also names the packages that own the path, as the image's own
//! package database (dpkg's file lists, the rpm database) lists them.

use std::path::Path;

use nodeimg_image::inspect::{PackageOwner, Report};
use nodeimg_layers::{ImagePath, RootView};

use crate::error::Result;
use crate::packages;

/// Inspect `image` (see [`nodeimg_image::inspect::inspect`]); `why` is
/// answered with the recipe layer and item that wrote the path and the
/// packages whose files it is. The repository a package came from is not
/// recorded in an image, so it is left unknown.
pub fn inspect(image: &Path, why: Option<&str>) -> Result<Report> {
    Ok(nodeimg_image::inspect::inspect_with(
        image,
        why,
        Some(&owners),
    )?)
}

/// The packages every backend finds owning `path` in `view`, or why they
/// cannot be known.
fn owners(view: &dyn RootView, path: &ImagePath) -> std::result::Result<Vec<PackageOwner>, String> {
    let mut out = Vec::new();
    for b in packages::BACKENDS {
        out.extend(b.owners(view, path).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
