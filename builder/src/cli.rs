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
  nodeimg build recipe.toml --base docker://registry.example.org/bases/debian:12 \\
      --push registry.example.org/nodes/node:1.30 --metadata-file out/node.json
  nodeimg build recipe.toml --format docker-archive -o out/node.docker.tar

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
A docker:// base is pulled (into the default cache) like build pulls it.

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
    /// Push an image (OCI layout folder or OCI archive) to a registry;
    /// prints the pushed manifest digest.
    #[command(after_help = "\
Examples:
  nodeimg push out/node registry.example.org/nodes/containerd:1.30
  nodeimg push out/node.tar:latest docker://127.0.0.1:5000/node:v1 --insecure-registry 127.0.0.1:5000

Blobs the registry already has are not sent again. Credentials come from
$NODEIMG_REGISTRY_TOKEN (a bearer token), else $REGISTRY_AUTH_FILE,
$XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json.

Exit codes: 0 pushed, 1 push failure, 2 usage error.")]
    Push(PushArgs),
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
    /// What docker load and podman load read (uncompressed layers).
    DockerArchive,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Oci => Format::Oci,
            FormatArg::OciArchive => Format::OciArchive,
            FormatArg::Rootfs => Format::Rootfs,
            FormatArg::DockerArchive => Format::DockerArchive,
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
    /// oci-archive:FILE[:TAG] | rootfs:FILE | docker://HOST/REPO:TAG (or
    /// @sha256:...); paths relative to the current directory.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Speak plain HTTP to this registry (loopback addresses only:
    /// localhost, 127.0.0.1, [::1]); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
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
    /// Signatures are still checked against the sources' own keys.
    #[arg(long = "mirror", value_name = "FROM=TO")]
    pub mirrors: Vec<String>,
    /// Push the image to [docker://]HOST[:PORT]/REPO:TAG once built
    /// (formats oci and oci-archive).
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// Write the build's metadata (recipe and digest, image and config
    /// digests, tags, layers, packages, build time) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
}

/// `nodeimg push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// An OCI layout folder or OCI archive, optionally :TAG (all its
    /// images, as one multi-platform index, when it holds several and no
    /// tag is named).
    pub image: String,
    /// Destination: [docker://]HOST[:PORT]/REPO:TAG.
    pub destination: String,
    /// Speak plain HTTP to this registry (loopback addresses only); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Mount blobs the registry lacks in the destination from this
    /// repository of the same registry, when it has them.
    #[arg(long, value_name = "REPO")]
    pub mount_from: Option<String>,
    /// Print one JSON object (reference, digest, blobs uploaded, present, mounted).
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
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

/// Write `bytes` to `path` atomically (a temporary sibling renamed).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::Builder::new()
        .prefix(".metadata.tmp-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(&parent)
        .map_err(|e| anyhow::anyhow!("creating a file in {}: {e}", parent.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.as_file().sync_all())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    f.persist(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Where a build that pulled `base` can mount blobs from when pushing to
/// `dest`: the base's repository, when both are on one registry.
fn mount_source(base: Option<&str>, dest: &str) -> Option<String> {
    let b = crate::registry::parse_reference(base?).ok()?;
    let d = crate::registry::parse_reference(dest).ok()?;
    (b.registry() == d.registry() && b.repository() != d.repository())
        .then(|| b.repository().to_string())
}

fn run_push(a: PushArgs) -> anyhow::Result<ExitCode> {
    let (path, tag) = crate::registry::split_image_arg(&a.image);
    if !path.exists() {
        return Err(crate::Error::Usage(format!(
            "{}: no such OCI layout folder or OCI archive",
            path.display()
        ))
        .into());
    }
    let opts = crate::registry::RegistryOptions {
        insecure: a.insecure_registries,
        cache_dir: None,
        quiet: a.quiet,
    };
    let report = crate::registry::push(
        &path,
        tag.as_deref(),
        &a.destination,
        a.mount_from.as_deref(),
        &opts,
    )?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(out, "{}", report.digest)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    if a.push.is_some() && !matches!(a.format, FormatArg::Oci | FormatArg::OciArchive) {
        return Err(crate::Error::Usage(
            "--push needs --format oci or oci-archive (the image is pushed as built)".into(),
        )
        .into());
    }
    if let Some(dest) = &a.push {
        crate::registry::parse_reference(dest)
            .map_err(|m| crate::Error::Usage(format!("--push {m}")))?;
        crate::registry::check_insecure(&a.recipe.insecure_registries)?;
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let build_time = match &epoch {
        Some(v) => build::parse_epoch(Some(v))?,
        None => chrono::Utc::now().timestamp(),
    };
    let registry = crate::registry::RegistryOptions {
        insecure: a.recipe.insecure_registries.clone(),
        cache_dir: a.cache_dir.clone(),
        quiet: a.quiet,
    };
    let opts = BuildOptions {
        recipe: a.recipe.recipe,
        output: a.output,
        format: a.format.into(),
        compression: a.compression.into(),
        vars: a.recipe.vars,
        base: a.recipe.base,
        source_date_epoch: epoch,
        packages: build::PackageOptions {
            cache_dir: a.cache_dir,
            mirrors: a.mirrors,
        },
        registry: registry.clone(),
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
    let pushed = match &a.push {
        Some(dest) => {
            let tag = (opts.format == Format::Oci).then(|| outcome.tag.clone());
            let mount = mount_source(Some(&outcome.base), dest);
            let report = crate::registry::push(
                &outcome.built.path,
                tag.as_deref(),
                dest,
                mount.as_deref(),
                &registry,
            )?;
            if Some(&report.digest) != outcome.built.manifest_digest.as_ref() {
                return Err(anyhow::anyhow!(
                    "the pushed digest {} differs from the built {}",
                    report.digest,
                    outcome.built.manifest_digest.as_deref().unwrap_or("(none)")
                ));
            }
            Some(report)
        }
        None => None,
    };
    let doc = build::metadata(
        &opts.recipe,
        &outcome,
        opts.format,
        build_time,
        pushed.as_ref(),
    );
    if let Some(file) = &a.metadata_file {
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        write_atomic(file, &text)?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&doc)?)?;
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
    let registry = crate::registry::RegistryOptions {
        insecure: a.recipe.insecure_registries.clone(),
        cache_dir: None,
        quiet: false,
    };
    let c = build::check_registry(
        &a.recipe.recipe,
        &a.recipe.vars,
        a.recipe.base.as_deref(),
        None,
        &registry,
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
        Command::Push(a) => run_push(a),
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
