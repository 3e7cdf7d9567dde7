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
/// packages whose files it is, each with the repository it came from when
/// a packages layer of nodeimg recorded it (`/var/lib/nodeimg/packages`);
/// a package of the base is left unknown. `arch` picks the image of an
/// image index.
pub fn inspect(image: &Path, arch: Option<&str>, why: Option<&str>) -> Result<Report> {
    Ok(nodeimg_image::inspect::inspect_with(
        image,
        arch,
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
    let recorded = recorded_packages(view);
    for o in &mut out {
        o.repository = recorded
            .iter()
            .find(|r| {
                r.name == o.name && r.architecture == o.architecture && r.version == o.version
            })
            .map(|r| r.repository.clone());
    }
    Ok(out)
}

/// Every package the image's packages layers recorded (a record that does
/// not parse is left out: the answer then says the repository is unknown).
fn recorded_packages(view: &dyn RootView) -> Vec<nodeimg_pkg::record::RecordedPackage> {
    let dir = nodeimg_pkg::record::RECORD_DIR;
    let mut names = view.list(dir);
    names.sort();
    names
        .iter()
        .filter_map(|n| ImagePath::new(&format!("{dir}/{n}")).ok())
        .filter_map(|p| view.read(&p))
        .filter_map(|b| nodeimg_pkg::record::LayerRecord::parse(&b).ok())
        .flat_map(|r| r.packages)
        .collect()
}
