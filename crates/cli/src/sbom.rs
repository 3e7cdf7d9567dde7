//! `nodeimg sbom` and `build --sbom`: software bills of materials of an
//! image, made by `nodeimg-sbom`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use nodeimg_sbom::Format;

/// The examples and notes of `nodeimg sbom --help`.
pub const AFTER_HELP: &str = "\
Examples:
  nodeimg sbom out/node                                   # SPDX 2.3 JSON on stdout
  nodeimg sbom out/node --format cyclonedx-json -o out/node.cdx.json
  nodeimg sbom out/node.tar:v1 --format spdx-json -o out/node.spdx.json
  nodeimg sbom out/node-rootfs.tar.zst --format cyclonedx-json
  nodeimg build recipe.toml --sbom spdx-json=out/sbom.spdx.json \\
      --sbom cyclonedx-json=out/sbom.cdx.json

What it lists: every package of the image, the base's included, from the
image's own databases (dpkg's status and status.d/, rpm's rpmdb.sqlite), with
its version, architecture, purl, declared license (Debian copyright files,
rpm License tags) and the layer it arrived in; for the packages nodeimg
installed, the repository and the URL and verified SHA-256 of the .deb or
.rpm (from /var/lib/nodeimg/packages/). Then every regular file no package
owns, and every package file a recipe item replaced, with its SHA-1, SHA-256,
layer and recipe item (as `inspect --why` finds them); the package databases
themselves are left out.

The same image gives the same bytes: identifiers derive from the image
digest, the time is SOURCE_DATE_EPOCH, else the image's creation time, and
everything is sorted. What cannot be read (an rpm database that is not
sqlite) is said on stderr as a warning.

Exit codes: 0 written, 1 the image or a package database of it cannot be read,
2 usage error.";

/// SBOM formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// SPDX 2.3, JSON.
    SpdxJson,
    /// CycloneDX 1.6, JSON.
    CyclonedxJson,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::SpdxJson => Format::SpdxJson,
            FormatArg::CyclonedxJson => Format::CycloneDxJson,
        }
    }
}

/// `nodeimg sbom`.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// The image: an OCI layout folder or an OCI archive (optionally :TAG),
    /// or a rootfs tar (.tar, .tar.gz, .tar.zst), as `inspect` takes it.
    pub image: PathBuf,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = FormatArg::SpdxJson)]
    pub format: FormatArg,
    /// Write the document to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The platform's image of a multi-platform image (an image index),
    /// e.g. linux/arm64.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// One `build --sbom FORMAT=FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SbomOutput {
    /// The format.
    pub format: Format,
    /// Where it goes.
    pub file: PathBuf,
}

/// Parse `FORMAT=FILE` (`spdx-json=out/sbom.spdx.json`).
pub fn parse_output(s: &str) -> Result<SbomOutput, String> {
    let (f, file) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not FORMAT=FILE (e.g. spdx-json=out/sbom.spdx.json)"))?;
    let format = Format::parse(f)
        .ok_or_else(|| format!("unknown SBOM format {f:?}; use spdx-json or cyclonedx-json"))?;
    if file.is_empty() {
        return Err(format!("{s:?} names no file"));
    }
    Ok(SbomOutput {
        format,
        file: PathBuf::from(file),
    })
}

/// `SOURCE_DATE_EPOCH`, when set: the time the documents carry.
fn epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(nodeimg_image::epoch::parse(Some(&v))?)),
        Err(_) => Ok(None),
    }
}

/// Read `image` (its image for `arch`, an OCI architecture, when it is an
/// image index) and print what could not be read as warnings.
fn read(image: &Path, arch: Option<&str>) -> anyhow::Result<nodeimg_sbom::Sbom> {
    let sbom = nodeimg_sbom::read(image, arch, epoch()?)?;
    for w in &sbom.warnings {
        eprintln!("warning: sbom of {}: {w}", image.display());
    }
    Ok(sbom)
}

/// `nodeimg sbom`.
pub fn run_sbom(a: SbomArgs) -> anyhow::Result<ExitCode> {
    let arch = crate::cli::platform_arg(a.platform.as_deref())?;
    let sbom = read(&a.image, arch.as_deref())?;
    let bytes = sbom.to_json(a.format.into());
    match &a.output {
        Some(file) => crate::cli::write_atomic(file, &bytes)?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The documents `build --sbom` asked for, of the image just built at
/// `image`, each written atomically; returned as in-toto predicates, for
/// `--sign-key` to attach.
pub fn write_outputs(
    image: &Path,
    outputs: &[SbomOutput],
) -> anyhow::Result<Vec<nodeimg_sign::intoto::Predicate>> {
    if outputs.is_empty() {
        return Ok(Vec::new());
    }
    let sbom = read(image, None)?;
    let docs: Vec<(&SbomOutput, Vec<u8>)> = outputs
        .iter()
        .map(|o| (o, sbom.to_json(o.format)))
        .collect();
    let mut predicates = Vec::new();
    for (o, bytes) in docs {
        crate::cli::write_atomic(&o.file, &bytes)?;
        predicates.push(nodeimg_sign::intoto::Predicate {
            predicate_type: match o.format {
                Format::SpdxJson => nodeimg_sign::intoto::SPDX_DOCUMENT,
                Format::CycloneDxJson => nodeimg_sign::intoto::CYCLONEDX_BOM,
            }
            .to_string(),
            predicate: serde_json::from_slice(&bytes)?,
        });
    }
    Ok(predicates)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_and_the_build_flag_parse() {
        use crate::cli::{Cli, Command};
        use clap::Parser as _;
        let c = Cli::try_parse_from([
            "nodeimg",
            "build",
            "r.toml",
            "--sbom",
            "spdx-json=a.json",
            "--sbom",
            "cyclonedx-json=b.json",
        ])
        .unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        let formats: Vec<Format> = b.sbom.iter().map(|o| o.format).collect();
        assert_eq!(formats, [Format::SpdxJson, Format::CycloneDxJson]);
        let e =
            Cli::try_parse_from(["nodeimg", "build", "r.toml", "--sbom", "x.json"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let c = Cli::try_parse_from([
            "nodeimg",
            "sbom",
            "out/n",
            "--format",
            "cyclonedx-json",
            "-o",
            "x",
        ])
        .unwrap();
        let Command::Sbom(s) = c.command else {
            panic!("not sbom")
        };
        assert_eq!(Format::from(s.format), Format::CycloneDxJson);
        assert_eq!(s.output, Some(PathBuf::from("x")));
        let c = Cli::try_parse_from(["nodeimg", "sbom", "out/n"]).unwrap();
        let Command::Sbom(s) = c.command else {
            panic!("not sbom")
        };
        assert_eq!((s.format, s.output), (FormatArg::SpdxJson, None));
    }

    #[test]
    fn sbom_outputs_parse() {
        assert_eq!(
            parse_output("cyclonedx-json=out/a.cdx.json").unwrap(),
            SbomOutput {
                format: Format::CycloneDxJson,
                file: PathBuf::from("out/a.cdx.json")
            }
        );
        assert_eq!(
            parse_output("spdx-json=x=y").unwrap().file,
            PathBuf::from("x=y")
        );
        for bad in ["spdx-json", "spdx=out/x", "spdx-json="] {
            assert!(parse_output(bad).is_err(), "{bad}");
        }
    }
}
