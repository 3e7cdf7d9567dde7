//! The command line: `nodeimg build | check | inspect | schema`.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::{self, BuildOptions, Progress};
use crate::lint::{self, Finding, Severity};
use crate::output::{Compression, Format};

const AFTER_HELP: &str = "\
Examples:
  nodeimg build recipes/containerd-ubuntu.toml
  nodeimg build recipe.toml --format oci-archive -o out/node.tar --var k8s=1.30
  nodeimg build recipe.toml --base oci:bases/debian:bookworm --json
  nodeimg check recipe.toml --json
  nodeimg inspect out/containerd-ubuntu --why /etc/containerd/config.toml
  nodeimg schema > recipe.schema.json

Exit codes:
  0  success (check: no lint errors)
  1  build failure, or lint errors
  2  usage error, or an error in the recipe (the message names file, line and key)

Environment:
  SOURCE_DATE_EPOCH  creation time and mtime of every new file (default: 0)";

/// Build immutable, preconfigured Kubernetes node images from TOML recipes.
///
/// A recipe names a base image and a list of [[layer]]s of configuration
/// items (kernel modules, sysctls, repositories, docker/containerd/CRI-O and
/// kubelet settings, systemd units, files). Each layer becomes one OCI layer.
#[derive(Debug, Parser)]
#[command(name = "nodeimg", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a recipe; prints the manifest digest (or the
    /// rootfs tar's sha256) on stdout.
    #[command(after_help = "\
Examples:
  nodeimg build recipe.toml                      # OCI layout in out/<name>
  nodeimg build recipe.toml --format rootfs -o out/node.tar.zst
  SOURCE_DATE_EPOCH=1700000000 nodeimg build recipe.toml --json
  nodeimg build recipe.toml --mirror https://deb.example.org/debian=file:///srv/mirror
  nodeimg build recipe.toml --mirror https://deb.example.org/debian=http://mirror.lan/d,key=m.asc
  nodeimg build recipe.toml --mirrors mirrors.toml

Exit codes: 0 built, 1 build or lint failure, 2 usage or recipe error.")]
    Build(BuildArgs),
    /// Lint a recipe: every finding with its rule, file:line and a hint.
    #[command(after_help = "\
Examples:
  nodeimg check recipe.toml
  nodeimg check recipe.toml --json --var runtime=crio

check works offline: layers' packages are not downloaded or installed, and
in a layer with packages the systemd enable/disable/mask lists (which may
name units the packages ship) are checked by build only.

Exit codes: 0 no lint errors (warnings allowed), 1 lint errors, 2 usage or recipe error.")]
    Check(CheckArgs),
    /// Show an image's layers, sizes and files, and which recipe layer and
    /// item produced a file.
    #[command(after_help = "\
Examples:
  nodeimg inspect out/node                      # OCI layout
  nodeimg inspect out/node.tar --json           # OCI archive or rootfs tar
  nodeimg inspect out/node --why /etc/docker/daemon.json")]
    Inspect(InspectArgs),
    /// Print the JSON Schema of the recipe format (for editor completion).
    Schema,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// OCI image layout directory.
    Oci,
    /// Tar of an OCI image layout.
    OciArchive,
    /// Flattened root file system tar (.tar, .tar.gz, .tar.zst by extension).
    Rootfs,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Oci => Format::Oci,
            FormatArg::OciArchive => Format::OciArchive,
            FormatArg::Rootfs => Format::Rootfs,
        }
    }
}

/// Layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip (what every consumer reads).
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
}

/// Options shared by `build` and `check`.
#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// Set a variable, overriding the recipe's [vars] (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Base image, overriding image.base: scratch | oci:DIR[:TAG] |
    /// oci-archive:FILE[:TAG] | rootfs:FILE; relative to the current directory.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
}

/// `nodeimg build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Output path [default: out/<name>, out/<name>.tar for oci-archive and rootfs].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Compression of the new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Print one JSON object (digests, layers, name, tag, path) instead of the digest.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr (lint errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// Download cache for layers' packages (repository indexes and .debs,
    /// by SHA256; every cached file is verified again before use)
    /// [default: $XDG_CACHE_HOME/nodeimg, else ~/.cache/nodeimg].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fetch repository URLs starting with FROM from TO instead (an
    /// internal mirror, or file:///DIR); repeatable, the longest FROM wins.
    /// Signatures are checked against the sources' own keys, unless the
    /// mirror re-signs: FROM=TO,key=FILE verifies the Release/InRelease
    /// fetched through it against the public key in FILE instead.
    #[arg(long = "mirror", value_name = "FROM=TO[,key=FILE]")]
    pub mirrors: Vec<String>,
    /// Read mirrors from a TOML file of [[mirror]] tables with from, to and
    /// optionally key (relative to the file); --mirror values come after
    /// them and win for the same FROM.
    #[arg(long = "mirrors", value_name = "FILE")]
    pub mirrors_file: Option<PathBuf>,
}

/// `nodeimg check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Print one JSON object: {"findings": [...], "counts": {...}}.
    #[arg(long)]
    pub json: bool,
}

/// `nodeimg inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An OCI layout directory, an OCI archive, or a rootfs tar.
    pub image: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show which recipe layer and item produced this path.
    #[arg(long, value_name = "PATH")]
    pub why: Option<String>,
}

/// Progress on stderr: a spinner on a terminal, one line per step otherwise.
struct StderrProgress {
    quiet: bool,
    spinner: Option<indicatif::ProgressBar>,
}

impl StderrProgress {
    fn new(quiet: bool) -> Self {
        let spinner = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        StderrProgress { quiet, spinner }
    }

    fn finish(&mut self) {
        if let Some(pb) = self.spinner.take() {
            pb.finish_and_clear();
        }
    }

    fn print_findings(&mut self, findings: &[Finding]) {
        let shown: Vec<Finding> = findings
            .iter()
            .filter(|f| !self.quiet || f.severity == Severity::Error)
            .cloned()
            .collect();
        if shown.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let _ = lint::print_text(&shown, &mut buf);
        let text = String::from_utf8_lossy(&buf);
        match &self.spinner {
            Some(pb) => pb.suspend(|| eprint!("{text}")),
            None => eprint!("{text}"),
        }
    }
}

impl Progress for StderrProgress {
    fn step(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.spinner {
            Some(pb) => pb.set_message(message.to_string()),
            None => eprintln!("nodeimg: {message}"),
        }
    }

    fn findings(&mut self, findings: &[Finding]) {
        self.print_findings(findings);
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The `--mirrors FILE` entries (first) and the `--mirror` values, as
/// `--mirror` values.
fn mirror_args(
    file: Option<&std::path::Path>,
    args: Vec<String>,
) -> Result<Vec<String>, crate::Error> {
    let Some(file) = file else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| crate::Error::Usage(format!("--mirrors {}: {e}", file.display())))?;
    let dir = file.parent().unwrap_or(std::path::Path::new("."));
    let m = crate::deb::fetch::Mirrors::parse_file(&text, dir, &file.display().to_string())
        .map_err(|e| crate::Error::Usage(format!("--mirrors: {e}")))?;
    let mut out = m.to_args();
    out.extend(args);
    Ok(out)
}

fn run_build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let mirrors = mirror_args(a.mirrors_file.as_deref(), a.mirrors)?;
    let opts = BuildOptions {
        recipe: a.recipe.recipe,
        output: a.output,
        format: a.format.into(),
        compression: a.compression.into(),
        vars: a.recipe.vars,
        base: a.recipe.base,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        packages: build::PackageOptions {
            cache_dir: a.cache_dir,
            mirrors,
        },
    };
    let mut progress = StderrProgress::new(a.quiet);
    let outcome = build::build_with(&opts, &mut progress)?;
    progress.step(&format!(
        "built {}:{} at {}",
        outcome.name,
        outcome.tag,
        outcome.built.path.display()
    ));
    progress.finish();
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::to_value(&outcome.built)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("name".into(), outcome.name.clone().into());
            o.insert("tag".into(), outcome.tag.clone().into());
        }
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        let line = match opts.format {
            Format::Rootfs => outcome.built.file_digest.as_deref(),
            _ => outcome.built.manifest_digest.as_deref(),
        }
        .or(outcome.built.manifest_digest.as_deref())
        .or(outcome.built.file_digest.as_deref())
        .unwrap_or_default();
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let c = build::check(
        &a.recipe.recipe,
        &a.recipe.vars,
        a.recipe.base.as_deref(),
        &mut build::Silent,
    )?;
    let p = &c.prepared;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&lint::to_json(&p.findings))?
        )?;
    } else {
        lint::print_text(&p.findings, &mut out)?;
        let c = lint::counts(&p.findings);
        eprintln!(
            "{}: {} error(s), {} warning(s), {} info(s)",
            a.recipe.recipe.display(),
            c.error,
            c.warning,
            c.info
        );
    }
    let errors = p.findings.iter().any(|f| f.severity == Severity::Error);
    Ok(if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let report = crate::inspect::inspect(&a.image, a.why.as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::inspect::print_text(&report, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(a) => run_build(a),
        Command::Check(a) => run_check(a),
        Command::Inspect(a) => run_inspect(a),
        Command::Schema => {
            print!("{}", crate::schema::schema_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The exit code for an error: the library's mapping (2 for usage and
/// recipe errors, 1 otherwise), 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<crate::Error>() {
        Some(err) => u8::try_from(err.exit_code()).unwrap_or(1),
        None => 1,
    }
}

/// Format an error and its causes, each cause once.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut s = format!("error: {e}");
    let mut shown = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !shown.contains(&c) {
            s.push_str(&format!("\n  caused by: {c}"));
            shown.push('\n');
            shown.push_str(&c);
        }
    }
    s
}

/// Parse `args`, run, print errors, and return the exit code.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version exit 0; usage errors exit 2.
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mirrors_file_comes_before_the_mirror_flags() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("mirrors.toml");
        std::fs::write(
            &file,
            "[[mirror]]\nfrom = \"http://a.example/x\"\nto = \"http://127.0.0.1:1/x\"\nkey = \"k.asc\"\n",
        )
        .unwrap();
        let c = Cli::try_parse_from([
            "nodeimg",
            "build",
            "r.toml",
            "--mirrors",
            file.to_str().unwrap(),
            "--mirror",
            "http://b.example=file:///srv/b",
        ])
        .unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        let args = mirror_args(b.mirrors_file.as_deref(), b.mirrors).unwrap();
        assert_eq!(
            args,
            [
                format!(
                    "http://a.example/x=http://127.0.0.1:1/x,key={}",
                    d.path().join("k.asc").display()
                ),
                "http://b.example=file:///srv/b".to_string(),
            ]
        );
        let e = mirror_args(Some(&d.path().join("absent.toml")), Vec::new()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("absent.toml"), "{e}");
    }

    #[test]
    fn parses_build() {
        let c = Cli::try_parse_from([
            "nodeimg",
            "build",
            "r.toml",
            "-o",
            "x",
            "--format",
            "oci-archive",
            "--compression",
            "zstd",
            "--var",
            "a=1",
            "--var",
            "b=2",
            "--base",
            "oci:d",
            "--json",
            "-q",
        ])
        .unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        assert_eq!(b.recipe.recipe, PathBuf::from("r.toml"));
        assert_eq!(b.output, Some(PathBuf::from("x")));
        assert_eq!(b.format, FormatArg::OciArchive);
        assert_eq!(b.compression, CompressionArg::Zstd);
        assert_eq!(b.recipe.vars, ["a=1", "b=2"]);
        assert_eq!(b.recipe.base.as_deref(), Some("oci:d"));
        assert!(b.json && b.quiet);
        let c = Cli::try_parse_from(["nodeimg", "build", "r.toml"]).unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        assert_eq!(
            (b.format, b.compression),
            (FormatArg::Oci, CompressionArg::Gzip)
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let e =
            Cli::try_parse_from(["nodeimg", "build", "r.toml", "--format", "qcow2"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["nodeimg", "frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["nodeimg", "--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"));
        assert!(help.contains("nodeimg check recipe.toml --json"));
    }

    #[test]
    fn error_codes_and_text() {
        let e = anyhow::Error::new(crate::Error::Usage("bad".into()));
        assert_eq!(exit_code(&e), 2);
        assert_eq!(error_text(&e), "error: bad");
        let e = anyhow::Error::new(crate::Error::Lint { errors: 2 });
        assert_eq!(exit_code(&e), 1);
        let e = anyhow::anyhow!("plain");
        assert_eq!(exit_code(&e), 1);
        let io = crate::Error::Io {
            context: "writing out/x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(
            error_text(&anyhow::Error::new(io)),
            "error: writing out/x: disk full"
        );
        let e = anyhow::Error::new(std::io::Error::other("inner")).context("outer");
        assert_eq!(error_text(&e), "error: outer\n  caused by: inner");
    }

    #[test]
    fn check_exit_codes() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.toml");
        std::fs::write(&good, "[image]\nname = \"n\"\n").unwrap();
        let bad = d.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[image]\nname = \"n\"\n[[layer]]\nname = \"d\"\ndocker = { exec-opts = [\"native.cgroupdriver=sytemd\"] }\n",
        )
        .unwrap();
        let broken = d.path().join("broken.toml");
        std::fs::write(&broken, "[image]\nnam = \"n\"\n").unwrap();
        let run =
            |p: &std::path::Path| main_with(["nodeimg", "check", "--json", p.to_str().unwrap()]);
        assert_eq!(run(&good), ExitCode::SUCCESS);
        assert_eq!(run(&bad), ExitCode::from(1));
        assert_eq!(run(&broken), ExitCode::from(2));
    }
}
