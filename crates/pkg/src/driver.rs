//! What every package backend does the same way: report a layer's
//! problems (the recipe's, or the build's), fetch a verified file through
//! the cache with progress, warn about damaged cache entries.

use nodeimg_fetch::{Cache, CachedFile, Meter};

/// Why a layer's packages cannot be installed.
#[derive(Debug)]
pub enum PackagesError {
    /// The recipe's fault: `key` relative to the layer (`packages[j]` or
    /// `packages`).
    Recipe {
        /// Key path within the layer.
        key: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Anything else (network, signatures, checksums, the image).
    Build(nodeimg_image::Error),
}

impl From<nodeimg_image::Error> for PackagesError {
    fn from(e: nodeimg_image::Error) -> Self {
        PackagesError::Build(e)
    }
}

/// A verified file (package or index) in `cache`, downloaded when missing,
/// shown on `meter` as `what`; shared by the Debian and rpm backends. The
/// file is the open handle that was verified: read it, never its path.
pub fn fetch_shown(
    cache: &Cache,
    meter: &Meter,
    url: &str,
    size: u64,
    sha256: &str,
    what: &str,
) -> Result<CachedFile, PackagesError> {
    let mut d = meter.download(what, size);
    let got = cache.fetch_with_progress(url, size, sha256, &mut |n| d.received(n));
    report_damaged(cache, meter);
    let file = got.map_err(|e| build_err("download", e))?;
    d.finish();
    Ok(file)
}

/// Warn about the damaged cache entries `cache` found (and removed) so far.
/// Shown even with `-q`: a damaged cache may be an attack.
pub fn report_damaged(cache: &Cache, meter: &Meter) {
    for note in cache.take_damaged() {
        meter.suspend(|| eprintln!("warning: {note}"));
    }
}

/// A problem of the build (not the recipe's): `what` was being done.
pub fn build_err(what: impl Into<String>, message: impl ToString) -> PackagesError {
    PackagesError::Build(nodeimg_image::Error::image(what, message.to_string()))
}
