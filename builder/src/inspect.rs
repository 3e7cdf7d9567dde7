//! `nodeimg inspect`: layers, sizes, files per layer, and where a file came from.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// What `inspect` reports (placeholder until the image reader lands).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The image inspected.
    pub image: String,
}

/// Inspect an image: a layout directory, an OCI archive or a rootfs tar.
pub fn inspect(image: &Path, why: Option<&str>) -> Result<Report> {
    let _ = why;
    Err(Error::image(
        image.display().to_string(),
        "inspect is not available in this build",
    ))
}

/// Print a report as text.
pub fn print_text(report: &Report, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w, "{}", report.image)
}
