//! The command line: `nodeimg build | lock | check | inspect | sbom | push | sign | verify |
//! keygen | cache | schema | completions | man`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use nodeimg::build::{self, BuildOptions, Progress};
use nodeimg_fetch::progress::Meter;
use nodeimg_image::output::{Compression, Format};
use nodeimg_lint::{self as lint, Finding};
use nodeimg_recipe::recipe::parse_platform;

const AFTER_HELP: &str = "\
Examples:
  nodeimg build recipes/containerd-ubuntu.toml
  nodeimg build recipe.toml --format oci-archive -o out/node.tar --var k8s=1.30
  nodeimg build recipe.toml --base oci:bases/debian:bookworm --json
  nodeimg check recipe.toml --json
  nodeimg lock recipe.toml                 # pin every package in recipe.toml.lock
  nodeimg build recipe.toml --offline      # from the lock and the cache, no network
  nodeimg inspect out/containerd-ubuntu --why /etc/containerd/config.toml
  nodeimg sbom out/containerd-ubuntu --format cyclonedx-json -o out/sbom.cdx.json
  nodeimg cache prune --older-than 30d     # trim the download and layer cache
  nodeimg keygen && nodeimg build recipe.toml --push HOST/nodes/node:1.30 --sign-key cosign.key
  nodeimg verify HOST/nodes/node:1.30 --key cosign.pub --attestations
  nodeimg schema > recipe.schema.json

Exit codes:
  0  success (check: no lint errors; verify: verified)
  1  build failure, or lint errors (verify: not verified)
  2  usage error, or an error in the recipe (the message names file, line and key)
  3  verify: the registry could not be asked

Environment:
  SOURCE_DATE_EPOCH     creation time and mtime of every file nodeimg writes (default: 0;
                        files from packages keep the mtime their package records),
                        and the time an SBOM carries
  NODEIMG_NO_CACHE      1: build without the layer cache (as build --no-cache)
  NODEIMG_KEY_PASSWORD  password of an encrypted signing key (else COSIGN_PASSWORD)";

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
  nodeimg lock recipe.toml && nodeimg build recipe.toml --offline
  nodeimg build recipe.toml --trust-stat         # a rebuild that hashes neither base nor cache
  nodeimg build recipe.toml --base docker://registry.example.org/bases/debian:12 \\
      --push registry.example.org/nodes/node:1.30 --metadata-file out/node.json
  nodeimg build recipe.toml --push registry.example.org/nodes/node:1.30 --sign-key cosign.key
  nodeimg build recipe.toml --format docker-archive -o out/node.docker.tar
  nodeimg build recipe.toml --platform linux/amd64,linux/arm64 \\
      --base linux/amd64=rootfs:amd64.tar --base linux/arm64=rootfs:arm64.tar
                                                 # one image index, an image per platform
  nodeimg build recipe.toml --sbom spdx-json=out/sbom.spdx.json \\
      --sbom cyclonedx-json=out/sbom.cdx.json

Packages: with RECIPE.lock next to the recipe (see `nodeimg lock`), exactly
the locked .debs are installed and a recipe that no longer matches the lock
fails; --no-lock resolves anew, --locked requires the lock. --offline builds
from the lock and --cache-dir without any network access.

Layer cache: layers, a base's index and installed packages that did not
change come from layers/ in --cache-dir (verified again on every use) and
go there otherwise; --no-cache builds every layer anew; `nodeimg cache`
shows and prunes the cache.

Signing: --push REF --sign-key KEY signs the pushed digest (as `nodeimg
sign`) and attaches the build's SLSA provenance (recipe and its digest, the
base and its layers, the lock and every package with its SHA-256, offline or
not, SOURCE_DATE_EPOCH) as an in-toto attestation in a DSSE envelope, under
sha256-<hex>.att; `nodeimg verify --attestations` checks both.

Progress goes to stderr: bars on a terminal, one line per step otherwise
(`nodeimg: fetched containerd 1.6.20 (30.1 MB)`), nothing with -q.

Exit codes: 0 built, 1 build or lint failure, 2 usage or recipe error.")]
    Build(BuildArgs),
    /// Resolve every layer's packages and write the lock file RECIPE.lock
    /// next to the recipe; prints its path on stdout.
    #[command(after_help = "\
Examples:
  nodeimg lock recipes/docker-ubuntu.toml        # writes recipes/docker-ubuntu.toml.lock
  nodeimg lock recipe.toml --base rootfs:base.tar --cache-dir /var/cache/nodeimg
  nodeimg lock recipe.toml --mirror https://deb.example.org/debian=file:///srv/mirror

The lock records, per layer, the packages asked for, the apt sources seen
and every package installed (name, version, architecture, URL before
--mirror, size, SHA256, the repository it came from), and the signed
Release/InRelease files and Packages indexes used. Each .deb is downloaded,
verified and kept in --cache-dir, so `build --offline` can follow.

build (and check) use RECIPE.lock when it exists: exactly the locked .debs
are installed, verified by size and SHA256, with no repository metadata
read, and the image digest is the one a build that resolved gives. A recipe
that no longer matches the lock (a pin added, changed or removed, a layer
renamed, an apt source changed) fails naming the change; run lock again.

Exit codes: 0 written (or unchanged), 1 failure, 2 usage or recipe error.")]
    Lock(LockArgs),
    /// Lint a recipe: every finding with its rule, file:line and a hint.
    #[command(after_help = "\
Examples:
  nodeimg check recipe.toml
  nodeimg check recipe.toml --json --var runtime=crio

check works offline: layers' packages are not downloaded or installed. When
RECIPE.lock exists, the recipe's packages and layers must match it, and the
enablement of units the packages ship is checked against the unit files the
lock records (--no-lock skips both); without it, the enablement of a unit the
image below lacks, above a layer with packages, is a note (unchecked), not an
error. A docker:// base is pulled (into the default cache) like build pulls it.

A recipe may allow a rule that does not apply to it, with its reason:
  [lint]
  allow = [{ rule = \"NI004\", reason = \"set up by the boot image\" }]
Its findings are then shown as allowed and do not fail check or build.

Exit codes: 0 no lint errors (warnings allowed), 1 lint errors, 2 usage or recipe error.")]
    Check(CheckArgs),
    /// Show an image's layers, sizes and files, and which recipe layer and
    /// item produced a file.
    #[command(after_help = "\
Examples:
  nodeimg inspect out/node                      # OCI layout
  nodeimg inspect out/node.tar --json           # OCI archive or rootfs tar
  nodeimg inspect out/node --why /etc/docker/daemon.json
  nodeimg inspect out/node --why /usr/bin/containerd   # also the package it is a file of
  nodeimg inspect out/node --platform linux/arm64      # one image of a multi-platform image

--why names the layer and recipe item that wrote a path, and the packages
whose files it is (name, version, architecture), as the image's dpkg file
lists or rpm database list them; images do not record the repository a
package came from (the lock file does).")]
    Inspect(InspectArgs),
    /// Write a software bill of materials of an image (SPDX 2.3 or
    /// CycloneDX 1.6 JSON): its packages, the base's included, and the
    /// files no package owns.
    #[command(after_help = crate::sbom::AFTER_HELP)]
    Sbom(crate::sbom::SbomArgs),
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
    /// Sign an image in a registry with a key, as cosign does; prints the
    /// digest signed.
    #[command(after_help = "\
Examples:
  nodeimg keygen                               # cosign.key (encrypted) and cosign.pub
  NODEIMG_KEY_PASSWORD=... nodeimg sign registry.example.org/nodes/node:1.30 --key cosign.key
  nodeimg sign 127.0.0.1:5000/node:v1 --key ec-p256.pem --insecure-registry 127.0.0.1:5000
  nodeimg verify registry.example.org/nodes/node:1.30 --key cosign.pub

The tag is resolved once and its digest signed: the simple-signing payload
(the image's HOST/REPO:TAG and manifest digest), ECDSA P-256 with SHA-256,
goes under the tag sha256-<hex>.sig of the same repository, next to the
signatures already there (none is dropped; signing again with the same key
adds nothing). cosign verify and containers/image's sigstoreSigned policy
(podman, skopeo, CRI-O) read it.

Keys: PEM PKCS#8 P-256 (openssl genpkey -algorithm EC -pkeyopt
ec_paramgen_curve:P-256), or cosign's encrypted format (nodeimg keygen,
cosign generate-key-pair) opened with $NODEIMG_KEY_PASSWORD, else
$COSIGN_PASSWORD. Keyless signing (Fulcio, Rekor) is not done.

The signature's blob and config are pushed before its tag: a failure leaves
the tag as it was.

Exit codes: 0 signed, 1 registry failure, 2 usage error or a key that cannot
be used (unreadable, wrong password, not P-256).")]
    Sign(crate::sign::SignArgs),
    /// Check an image's signatures (and attestations) against a public
    /// key; prints the verdict and every signature checked.
    #[command(after_help = "\
Examples:
  nodeimg verify registry.example.org/nodes/node:1.30 --key cosign.pub
  nodeimg verify 127.0.0.1:5000/node:v1 --key cosign.pub --attestations --json \\
      --insecure-registry 127.0.0.1:5000

Verified: at least one signature under sha256-<hex>.sig verifies with the
key and signs this manifest digest; with --attestations, also at least one
DSSE envelope under sha256-<hex>.att verifies, has payload type
application/vnd.in-toto+json and a subject with this digest. Every
signature and attestation is listed with its verdict (--json: one object).

Exit codes: 0 verified, 1 not verified, 2 usage error or a key that cannot be
used, 3 the registry could not be asked (network, credentials, no such
image).")]
    Verify(crate::sign::VerifyArgs),
    /// Make a key pair: PREFIX.key (cosign's encrypted format, mode 0600)
    /// and PREFIX.pub; prints their paths.
    #[command(after_help = "\
Examples:
  NODEIMG_KEY_PASSWORD=secret nodeimg keygen            # cosign.key, cosign.pub
  COSIGN_PASSWORD=secret nodeimg keygen --output-key-prefix keys/nodes

The private key is ECDSA P-256 in cosign's encrypted format (-----BEGIN
ENCRYPTED SIGSTORE PRIVATE KEY-----: scrypt N=65536 r=8 p=1 and NaCl
secretbox), which cosign reads with the same password. The password comes
from $NODEIMG_KEY_PASSWORD, else $COSIGN_PASSWORD (set and empty: an empty
password, as cosign takes it). Both files appear together, or neither;
existing files are replaced only with --force.

Exit codes: 0 written, 1 failure, 2 usage error (no password, files exist).")]
    Keygen(crate::sign::KeygenArgs),
    /// Show what the cache directory holds (downloads, registry bases,
    /// built layers); `nodeimg cache prune` trims it.
    #[command(after_help = "\
Examples:
  nodeimg cache                                   # sizes of each part
  nodeimg cache --json --cache-dir /var/cache/nodeimg
  nodeimg cache prune --older-than 30d --max-size 20G

Builds keep what they download and the layers they compress in the cache
(--cache-dir of build), and verify every file again when they use it, so a
damaged or pruned entry only costs the work of making it again. Each use
refreshes a file's modification time, which is what --older-than reads.

Exit codes: 0 success, 1 failure, 2 usage error.")]
    Cache(crate::cache::CacheArgs),
    /// Print the JSON Schema of the recipe format (for editor completion).
    Schema,
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(after_help = "\
Examples:
  nodeimg completions bash > ~/.local/share/bash-completion/completions/nodeimg
  nodeimg completions zsh > ~/.zfunc/_nodeimg     # a folder on $fpath
  nodeimg completions fish > ~/.config/fish/completions/nodeimg.fish

`make install` installs all three (see README). Exit codes: 0 printed, 2 usage error.")]
    Completions(crate::generate::CompletionsArgs),
    /// Print the manual page (roff), or write every page into a folder.
    #[command(after_help = "\
Examples:
  nodeimg man | man -l -                          # read it
  nodeimg man --out-dir /usr/local/share/man/man1 # nodeimg.1, nodeimg-build.1, ...

The pages are generated from the same definitions as --help. Exit codes: 0
printed or written, 1 failure, 2 usage error.")]
    Man(crate::generate::ManArgs),
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
    /// gzip at level 6 in 128 KiB blocks, as pigz makes it: one gzip
    /// stream every consumer reads.
    Gzip,
    /// zstd at level 3 in 2 MiB jobs (smaller, faster; not every consumer
    /// reads it).
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
    /// PLATFORM=REF (linux/arm64=rootfs:arm64.tar) is the base of one
    /// platform of several; repeatable so.
    #[arg(long, value_name = "[PLATFORM=]REF")]
    pub base: Vec<String>,
    /// Build for these platforms instead of image.platforms
    /// (linux/amd64,linux/arm64, linux/arm/v7; comma-separated or
    /// repeated): several make one OCI image index, each image made from
    /// its own architecture's base and packages, each with its lock file
    /// RECIPE.ARCH.lock.
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Speak plain HTTP to this registry (loopback addresses only:
    /// localhost, 127.0.0.1, [::1]); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// What `--base` and `--platform` ask for: a base for every platform,
/// bases of single platforms, the platforms (OCI architectures).
#[derive(Debug, Default)]
struct Targets {
    base: Option<String>,
    platform_bases: BTreeMap<String, String>,
    platforms: Vec<String>,
}

impl RecipeArgs {
    /// `--base` and `--platform`, checked.
    fn targets(&self) -> anyhow::Result<Targets> {
        let usage = |m: String| anyhow::Error::new(nodeimg::Error::Usage(m));
        let mut t = Targets::default();
        for p in &self.platforms {
            let arch = parse_platform(p).map_err(|m| usage(format!("--platform: {m}")))?;
            if t.platforms.contains(&arch) {
                return Err(usage(format!("--platform {p:?} is named twice")));
            }
            t.platforms.push(arch);
        }
        for b in &self.base {
            match b.split_once('=').filter(|(p, _)| p.starts_with("linux/")) {
                Some((p, r)) => {
                    let arch = parse_platform(p).map_err(|m| usage(format!("--base {b}: {m}")))?;
                    if t.platform_bases.insert(arch, r.to_string()).is_some() {
                        return Err(usage(format!("--base: two bases for {p}")));
                    }
                }
                None if t.base.is_some() => {
                    return Err(usage(format!(
                        "--base {b}: a base for every platform is already given; name one platform's with --base PLATFORM=REF"
                    )))
                }
                None => t.base = Some(b.clone()),
            }
        }
        Ok(t)
    }
}

/// The OCI architecture of `--platform`, checked.
pub(crate) fn platform_arg(platform: Option<&str>) -> anyhow::Result<Option<String>> {
    platform
        .map(|p| {
            parse_platform(p).map_err(|m| nodeimg::Error::Usage(format!("--platform: {m}")).into())
        })
        .transpose()
}

/// `nodeimg build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Output path [default: out/<name>, out/<name>.tar for oci-archive and rootfs].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace what is at the output path even when it is not an output
    /// of nodeimg (a folder holding other files, another kind of file, a
    /// symlink, which is replaced itself, not what it points to). Without
    /// it such a path is refused; a previous output is always replaced.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Compression of the new layers (and of a rootfs base made a layer),
    /// on every core; the bytes are the same on any number of cores.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Print one JSON object (digests, layers, name, tag, path) instead of the digest.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr (lint errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// Cache of downloads (repository indexes and packages, by SHA256) and
    /// of built layers (layers/: compressed blobs, base indexes, installed
    /// packages and resolutions; blobs are put into OCI outputs by reflink
    /// or hard link); every cached file is
    /// verified again before use. `nodeimg cache` shows and prunes it
    /// [default: $XDG_CACHE_HOME/nodeimg, else ~/.cache/nodeimg].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build every layer anew: neither reuse nor keep layers in the layer
    /// cache (downloads still use --cache-dir).
    /// [env: NODEIMG_NO_CACHE=1]
    #[arg(
        long,
        env = "NODEIMG_NO_CACHE",
        hide_env = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_cache: bool,
    /// Take a rootfs base (rootfs:FILE) and the layer cache's blobs as
    /// unchanged when their device, inode, size, modification and change
    /// times are those recorded when they were last hashed, without
    /// hashing them again (by default both are hashed on every build, the
    /// base alongside the work).
    #[arg(long, conflicts_with = "no_cache")]
    pub trust_stat: bool,
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
    /// No network: install the packages the lock file (RECIPE.lock) names
    /// from --cache-dir alone; fails naming every file the cache lacks.
    /// Needs the lock file when the recipe has packages.
    #[arg(long)]
    pub offline: bool,
    /// Fail unless RECIPE.lock exists (for CI: never resolve anew).
    #[arg(long, conflicts_with = "no_lock")]
    pub locked: bool,
    /// Ignore RECIPE.lock and resolve the packages against the
    /// repositories' current metadata.
    #[arg(long)]
    pub no_lock: bool,
    /// Push the image to [docker://]HOST[:PORT]/REPO:TAG once built
    /// (formats oci and oci-archive).
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// Write the build's metadata (recipe and digest, image and config
    /// digests, tags, layers, packages, build time) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Write a software bill of materials of the built image to FILE, in
    /// FORMAT (spdx-json or cyclonedx-json), as `nodeimg sbom` makes it;
    /// repeatable. Each is written atomically once the image is
    /// (formats oci, oci-archive and rootfs).
    #[arg(long = "sbom", value_name = "FORMAT=FILE", value_parser = crate::sbom::parse_output)]
    pub sbom: Vec<crate::sbom::SbomOutput>,
    /// With --push: sign the pushed image with this private key and attach
    /// the build's SLSA provenance (and each --sbom document) as signed
    /// in-toto attestations, as
    /// `nodeimg sign` does (password: $NODEIMG_KEY_PASSWORD, else
    /// $COSIGN_PASSWORD). The key is read before anything is built.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub sign_key: Option<PathBuf>,
}

/// `nodeimg lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// No progress on stderr (lint errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// Download cache, as for build; lock leaves every .deb it verified
    /// there, ready for build --offline
    /// [default: $XDG_CACHE_HOME/nodeimg, else ~/.cache/nodeimg].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fetch repository URLs starting with FROM from TO instead, as for
    /// build (,key=FILE for a mirror that re-signs); the lock records the
    /// original URLs.
    #[arg(long = "mirror", value_name = "FROM=TO[,key=FILE]")]
    pub mirrors: Vec<String>,
    /// Read mirrors from a TOML file, as for build.
    #[arg(long = "mirrors", value_name = "FILE")]
    pub mirrors_file: Option<PathBuf>,
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
    /// Do not compare the recipe with its lock file (RECIPE.lock).
    #[arg(long)]
    pub no_lock: bool,
}

fn lock_use(locked: bool, no_lock: bool) -> build::LockUse {
    match (locked, no_lock) {
        (true, _) => build::LockUse::Require,
        (false, true) => build::LockUse::Ignore,
        (false, false) => build::LockUse::Auto,
    }
}

/// `nodeimg inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An OCI layout directory, an OCI archive, or a rootfs tar.
    pub image: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show which recipe layer and item produced this path, and which
    /// package it is a file of.
    #[arg(long, value_name = "PATH")]
    pub why: Option<String>,
    /// The platform's image of a multi-platform image (an image index),
    /// e.g. linux/arm64.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// Progress on stderr: a spinner and download bars on a terminal, one line
/// per step otherwise, nothing but lint errors when quiet.
struct StderrProgress {
    quiet: bool,
    meter: Meter,
}

impl StderrProgress {
    fn new(quiet: bool) -> Self {
        StderrProgress {
            quiet,
            meter: crate::progress::stderr(quiet),
        }
    }

    fn finish(&mut self) {
        self.meter.finish();
    }

    fn print_findings(&mut self, findings: &[Finding]) {
        let shown: Vec<Finding> = findings
            .iter()
            .filter(|f| !self.quiet || f.is_error())
            .cloned()
            .collect();
        if shown.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let _ = lint::print_text(&shown, &mut buf);
        let text = String::from_utf8_lossy(&buf);
        self.meter.suspend(|| eprint!("{text}"));
    }
}

impl Progress for StderrProgress {
    fn step(&mut self, message: &str) {
        self.meter.step(message);
    }

    fn findings(&mut self, findings: &[Finding]) {
        self.print_findings(findings);
    }

    fn meter(&self) -> Meter {
        self.meter.clone()
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
) -> Result<Vec<String>, nodeimg::Error> {
    let Some(file) = file else {
        return Ok(args);
    };
    let text = nodeimg_recipe::inputs::read_regular_file(file)
        .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
        .map_err(|e| nodeimg::Error::Usage(format!("--mirrors {}: {e}", file.display())))?;
    let dir = file.parent().unwrap_or(std::path::Path::new("."));
    let m = nodeimg_fetch::fetch::Mirrors::parse_file(&text, dir, &file.display().to_string())
        .map_err(|e| nodeimg::Error::Usage(format!("--mirrors: {e}")))?;
    let mut out = m.to_args();
    out.extend(args);
    Ok(out)
}

/// Write `bytes` to `path` atomically (a temporary sibling renamed).
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    use nodeimg_image::IoContext as _;
    std::fs::create_dir_all(&parent).ctx(|| format!("creating {}", parent.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::Builder::new()
        .prefix(".metadata.tmp-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(&parent)
        .ctx(|| format!("creating a file in {}", parent.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.as_file().sync_all())
        .ctx(|| format!("writing {}", path.display()))?;
    f.persist(path)
        .map_err(|e| e.error)
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where a build that pulled `base` can mount blobs from when pushing to
/// `dest`: the base's repository, when both are on one registry.
fn mount_source(base: Option<&str>, dest: &str) -> Option<String> {
    let b = nodeimg_registry::parse_reference(base?).ok()?;
    let d = nodeimg_registry::parse_reference(dest).ok()?;
    (b.registry() == d.registry() && b.repository() != d.repository())
        .then(|| b.repository().to_string())
}

fn run_push(a: PushArgs) -> anyhow::Result<ExitCode> {
    let (path, tag) = nodeimg_registry::split_image_arg(&a.image);
    if !path.exists() {
        return Err(nodeimg::Error::Usage(format!(
            "{}: no such OCI layout folder or OCI archive",
            path.display()
        ))
        .into());
    }
    let opts = nodeimg_registry::RegistryOptions {
        insecure: a.insecure_registries,
        cache_dir: None,
        meter: crate::progress::stderr(a.quiet),
        offline: false,
    };
    let report = nodeimg_registry::push(
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
    let mirrors = mirror_args(a.mirrors_file.as_deref(), a.mirrors)?;
    check_push_args(a.push.as_deref(), &a.format, &a.recipe.insecure_registries)?;
    let targets = a.recipe.targets()?;
    let platforms = build::platforms_of(&a.recipe.recipe, &targets.platforms)?;
    check_sbom_args(&a.sbom, a.format, platforms.len())?;
    let sign_key = crate::sign::key_arg(a.sign_key.as_deref())?;
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let build_time = match &epoch {
        Some(v) => build::parse_epoch(Some(v))?,
        None => chrono::Utc::now().timestamp(),
    };
    let mut progress = StderrProgress::new(a.quiet);
    let registry = nodeimg_registry::RegistryOptions {
        insecure: a.recipe.insecure_registries.clone(),
        cache_dir: a.cache_dir.clone(),
        meter: progress.meter.clone(),
        offline: a.offline,
    };
    let opts = BuildOptions {
        recipe: a.recipe.recipe,
        output: a.output,
        format: a.format.into(),
        compression: a.compression.into(),
        force: a.force,
        vars: a.recipe.vars,
        base: targets.base,
        platforms,
        platform_bases: targets.platform_bases,
        source_date_epoch: epoch,
        packages: build::PackageOptions {
            cache_dir: a.cache_dir,
            mirrors,
            offline: a.offline,
            lock: lock_use(a.locked, a.no_lock),
        },
        registry: registry.clone(),
        layer_cache: !a.no_cache,
        trust_stat: a.trust_stat,
    };
    let outcome = build::build_with(&opts, &mut progress)?;
    if let Some(line) = cache_summary(&outcome) {
        progress.step(&line);
    }
    progress.step(&format!(
        "built {}:{} at {}",
        outcome.name,
        outcome.tag,
        outcome.built.path.display()
    ));
    progress.finish();
    let sboms = crate::sbom::write_outputs(&outcome.built.path, &a.sbom)?;
    let pushed = match &a.push {
        Some(dest) => Some(push_built(&outcome, opts.format, dest, &registry)?),
        None => None,
    };
    let mut doc = build::metadata(
        &opts.recipe,
        &outcome,
        opts.format,
        build_time,
        pushed.as_ref(),
    );
    if let (Some(key), Some(p), Some(dest)) = (&sign_key, &pushed, &a.push) {
        doc["signed"] =
            crate::sign::attach_build(key, dest, p, (&opts, &outcome), &registry, &sboms)?;
    }
    if let Some(file) = &a.metadata_file {
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        write_atomic(file, &text)?;
    }
    print_built(&outcome, opts.format, &doc, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `--sbom` describes one image of an OCI or rootfs output.
fn check_sbom_args(
    sbom: &[crate::sbom::SbomOutput],
    format: FormatArg,
    platforms: usize,
) -> anyhow::Result<()> {
    if !sbom.is_empty() && format == FormatArg::DockerArchive {
        return Err(nodeimg::Error::Usage(
            "--sbom needs --format oci, oci-archive or rootfs (run `nodeimg sbom` on an OCI output instead)".into(),
        )
        .into());
    }
    if platforms > 1 && !sbom.is_empty() {
        return Err(nodeimg::Error::Usage(format!(
            "--sbom describes one image, and this build makes {platforms} (an image index); run `nodeimg sbom OUTPUT --platform PLATFORM` for each, or build a platform alone with --platform"
        ))
        .into());
    }
    Ok(())
}

/// What the layer cache gave a build, for its progress: `None` when the
/// build had no layer cache or wrote no OCI layer.
fn cache_summary(outcome: &build::Outcome) -> Option<String> {
    let c = outcome.cache.filter(|c| c.reused + c.built > 0)?;
    let packages = if c.trees_reused + c.trees_built > 0 {
        format!(
            "; the packages of {} layer(s) reused, {} installed; {} resolution(s) reused",
            c.trees_reused, c.trees_built, c.resolutions_reused
        )
    } else {
        String::new()
    };
    Some(format!(
        "layer cache: {} layer(s) reused, {} built; {} base layer index(es) reused{packages}",
        c.reused, c.built, c.indexes_reused
    ))
}

/// `--push` is for OCI outputs, to a destination that parses.
fn check_push_args(
    push: Option<&str>,
    format: &FormatArg,
    insecure_registries: &[String],
) -> anyhow::Result<()> {
    if push.is_some() && !matches!(format, FormatArg::Oci | FormatArg::OciArchive) {
        return Err(nodeimg::Error::Usage(
            "--push needs --format oci or oci-archive (the image is pushed as built)".into(),
        )
        .into());
    }
    if let Some(dest) = push {
        nodeimg_registry::parse_reference(dest)
            .map_err(|m| nodeimg::Error::Usage(format!("--push {m}")))?;
        nodeimg_registry::check_insecure(insecure_registries)?;
    }
    Ok(())
}

/// Push the image just built to `dest`; the registry must end up with the
/// digest that was built.
fn push_built(
    outcome: &build::Outcome,
    format: Format,
    dest: &str,
    registry: &nodeimg_registry::RegistryOptions,
) -> anyhow::Result<nodeimg_registry::PushReport> {
    let tag = (format == Format::Oci).then(|| outcome.tag.clone());
    let mount = mount_source(Some(&outcome.base), dest);
    let report = nodeimg_registry::push(
        &outcome.built.path,
        tag.as_deref(),
        dest,
        mount.as_deref(),
        registry,
    )?;
    if Some(&report.digest) != outcome.built.manifest_digest.as_ref() {
        return Err(anyhow::anyhow!(
            "the pushed digest {} differs from the built {}",
            report.digest,
            outcome.built.manifest_digest.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(report)
}

/// What `build` prints: the build document (`--json`), else the digest
/// of the image (manifest) or, for a rootfs, of the file.
fn print_built(
    outcome: &build::Outcome,
    format: Format,
    doc: &serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(doc)?)?;
    } else {
        let line = match format {
            Format::Rootfs => outcome.built.file_digest.as_deref(),
            _ => outcome.built.manifest_digest.as_deref(),
        }
        .or(outcome.built.manifest_digest.as_deref())
        .or(outcome.built.file_digest.as_deref())
        .unwrap_or_default();
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// What `nodeimg lock` resolves, from its arguments.
fn lock_options(a: LockArgs) -> anyhow::Result<build::LockOptions> {
    let mirrors = mirror_args(a.mirrors_file.as_deref(), a.mirrors)?;
    let targets = a.recipe.targets()?;
    Ok(build::LockOptions {
        recipe: a.recipe.recipe,
        vars: a.recipe.vars,
        base: targets.base,
        platforms: targets.platforms,
        platform_bases: targets.platform_bases,
        packages: build::PackageOptions {
            cache_dir: a.cache_dir,
            mirrors,
            ..build::PackageOptions::default()
        },
        registry: nodeimg_registry::RegistryOptions {
            insecure: a.recipe.insecure_registries,
            ..Default::default()
        },
    })
}

fn run_lock(a: LockArgs) -> anyhow::Result<ExitCode> {
    let quiet = a.quiet;
    let opts = lock_options(a)?;
    let mut progress = StderrProgress::new(quiet);
    let started = std::time::Instant::now();
    let outcomes = build::lock_with(&opts, &mut progress)?;
    for outcome in &outcomes {
        let count: usize = outcome.lock.layers.iter().map(|l| l.packages.len()).sum();
        progress.step(&format!(
            "{} {} package(s) of {} layer(s) in {} ({:.1}s)",
            if outcome.changed {
                "locked"
            } else {
                "unchanged:"
            },
            count,
            outcome.lock.layers.len(),
            outcome.path.display(),
            started.elapsed().as_secs_f64()
        ));
    }
    progress.finish();
    let mut out = std::io::stdout().lock();
    for outcome in &outcomes {
        writeln!(out, "{}", outcome.path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let registry = nodeimg_registry::RegistryOptions {
        insecure: a.recipe.insecure_registries.clone(),
        cache_dir: None,
        meter: crate::progress::stderr(false),
        offline: false,
    };
    let targets = a.recipe.targets()?;
    let platforms = build::platforms_of(&a.recipe.recipe, &targets.platforms)?;
    // Every platform is checked; a finding or note they share is shown once.
    let mut findings: Vec<Finding> = Vec::new();
    let mut notes: Vec<nodeimg::plan::Note> = Vec::new();
    for platform in build::each_platform(&platforms, &targets.platform_bases)? {
        let base = build::base_for(platform, &targets.platform_bases, targets.base.as_deref());
        let c = build::check(
            &build::CheckOptions {
                recipe: &a.recipe.recipe,
                vars: &a.recipe.vars,
                base,
                packages: None,
                lock: lock_use(false, a.no_lock),
                registry: &registry,
                cache: None,
                platform,
            },
            &mut build::Silent,
        )?;
        for f in c.prepared.findings {
            if !findings.contains(&f) {
                findings.push(f);
            }
        }
        for n in c.notes {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    let c = Checked { findings, notes };
    let p = &c;
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut j = lint::to_json(&p.findings);
        j["notes"] = serde_json::to_value(&c.notes)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        lint::print_text(&p.findings, &mut out)?;
        print_notes(&c.notes, &mut out)?;
        let n = lint::counts(&p.findings);
        let mut notes = match n.allowed {
            0 => String::new(),
            k => format!(", {k} allowed"),
        };
        if !c.notes.is_empty() {
            notes.push_str(&format!(", {} note(s)", c.notes.len()));
        }
        eprintln!(
            "{}: {} error(s), {} warning(s), {} info(s){notes}",
            a.recipe.recipe.display(),
            n.error,
            n.warning,
            n.info
        );
    }
    let errors = p.findings.iter().any(Finding::is_error);
    Ok(if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `check` found over every platform.
struct Checked {
    findings: Vec<Finding>,
    notes: Vec<nodeimg::plan::Note>,
}

/// Print what `check` could not verify as `file:line: note: key: message`
/// plus a hint line.
fn print_notes(notes: &[nodeimg::plan::Note], w: &mut dyn Write) -> std::io::Result<()> {
    for n in notes {
        match n.line {
            Some(l) => write!(w, "{}:{l}: ", n.file)?,
            None => write!(w, "{}: ", n.file)?,
        }
        writeln!(w, "note: {}: {}", n.key, n.message)?;
        writeln!(w, "  hint: {}", n.hint)?;
    }
    Ok(())
}

fn run_inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let arch = platform_arg(a.platform.as_deref())?;
    let report = nodeimg::inspect::inspect(&a.image, arch.as_deref(), a.why.as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        nodeimg_image::inspect::print_text(&report, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(a) => run_build(a),
        Command::Check(a) => run_check(a),
        Command::Lock(a) => run_lock(a),
        Command::Inspect(a) => run_inspect(a),
        Command::Sbom(a) => crate::sbom::run_sbom(a),
        Command::Push(a) => run_push(a),
        Command::Sign(a) => crate::sign::run_sign(a),
        Command::Verify(a) => crate::sign::run_verify(a),
        Command::Keygen(a) => crate::sign::run_keygen(a),
        Command::Cache(a) => crate::cache::run_cache(a),
        Command::Completions(a) => crate::generate::run_completions(&a),
        Command::Man(a) => crate::generate::run_man(&a),
        Command::Schema => {
            print!("{}", nodeimg_recipe::schema::schema_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The exit code for an error: the library's mapping (2 for usage and
/// recipe errors, 1 otherwise; a registry's error, from `push`, maps its
/// command-line mistakes to 2), 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let code = if let Some(err) = e.downcast_ref::<nodeimg::Error>() {
        err.exit_code()
    } else if let Some(err) = e.downcast_ref::<nodeimg_registry::RegistryError>() {
        err.exit_code()
    } else if let Some(err) = e.downcast_ref::<nodeimg_sign::SignError>() {
        err.exit_code()
    } else {
        1
    };
    u8::try_from(code).unwrap_or(1)
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
        assert_eq!(b.recipe.base, ["oci:d"]);
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
    fn parses_lock_and_the_lock_flags() {
        let c = Cli::try_parse_from([
            "nodeimg",
            "lock",
            "r.toml",
            "--base",
            "oci:d",
            "--var",
            "a=1",
            "--cache-dir",
            "c",
            "--mirror",
            "http://a=file:///b",
            "-q",
        ])
        .unwrap();
        let Command::Lock(l) = c.command else {
            panic!("not lock")
        };
        assert_eq!(l.recipe.recipe, PathBuf::from("r.toml"));
        assert_eq!(l.recipe.base, ["oci:d"]);
        assert_eq!(l.recipe.vars, ["a=1"]);
        assert_eq!(l.cache_dir, Some(PathBuf::from("c")));
        assert_eq!(l.mirrors, ["http://a=file:///b"]);
        assert!(l.quiet);

        let c =
            Cli::try_parse_from(["nodeimg", "build", "r.toml", "--offline", "--locked"]).unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        assert!(b.offline && b.locked && !b.no_lock);
        assert_eq!(lock_use(b.locked, b.no_lock), build::LockUse::Require);
        assert_eq!(lock_use(false, true), build::LockUse::Ignore);
        assert_eq!(lock_use(false, false), build::LockUse::Auto);
        let e = Cli::try_parse_from(["nodeimg", "build", "r.toml", "--locked", "--no-lock"])
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        // lock takes no output options.
        let e = Cli::try_parse_from(["nodeimg", "lock", "r.toml", "-o", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn check_compares_the_recipe_with_its_lock() {
        use nodeimg_pkg::lock::{Lock, LockedLayer};
        let d = tempfile::tempdir().unwrap();
        let recipe = d.path().join("r.toml");
        std::fs::write(
            &recipe,
            "[image]\nname = \"n\"\n[[layer]]\nname = \"runtime\"\npackages = [\"demo=2.0\"]\n",
        )
        .unwrap();
        let check = |extra: &[&str]| {
            let mut args = vec!["nodeimg", "check", "--json", recipe.to_str().unwrap()];
            args.extend_from_slice(extra);
            main_with(args)
        };
        // No lock: nothing to compare.
        assert_eq!(check(&[]), ExitCode::SUCCESS);
        let layer = |requests: &[&str]| LockedLayer {
            name: "runtime".into(),
            requests: requests.iter().map(|r| (*r).to_string()).collect(),
            dpkg_status: "a".repeat(64),
            kind: Default::default(),
            rpmdb: String::new(),
            repos: Vec::new(),
            sources: vec![],
            packages: vec![],
        };
        let lock_file = nodeimg_pkg::lock::lock_path(&recipe);
        Lock::new("amd64", vec![], vec![], vec![layer(&["demo=2.0"])])
            .write(&lock_file)
            .unwrap();
        assert_eq!(check(&[]), ExitCode::SUCCESS);
        // The pin moved on: a recipe error, unless the lock is ignored.
        Lock::new("amd64", vec![], vec![], vec![layer(&["demo=1.0"])])
            .write(&lock_file)
            .unwrap();
        assert_eq!(check(&[]), ExitCode::from(2));
        assert_eq!(check(&["--no-lock"]), ExitCode::SUCCESS);
        let e = build::check(
            &build::CheckOptions {
                recipe: &recipe,
                vars: &[],
                base: None,
                packages: None,
                lock: build::LockUse::Auto,
                registry: &Default::default(),
                cache: None,
                platform: None,
            },
            &mut build::Silent,
        )
        .err()
        .unwrap();
        let text = e.to_string();
        assert!(
            text.contains(
                "layer[0].packages[0]: the packages of layer \"runtime\" no longer match"
            ),
            "{text}"
        );
        assert!(text.contains("\"demo=2.0\" was \"demo=1.0\""), "{text}");
        // A broken lock file is an error of the lock file.
        std::fs::write(
            &lock_file,
            "version = 1\narchitecture = \"amd64\"\n[[layer]]\n",
        )
        .unwrap();
        let e = build::check(
            &build::CheckOptions {
                recipe: &recipe,
                vars: &[],
                base: None,
                packages: None,
                lock: build::LockUse::Auto,
                registry: &Default::default(),
                cache: None,
                platform: None,
            },
            &mut build::Silent,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("r.toml.lock:3"), "{e}");
    }

    #[test]
    fn lock_pulls_registry_bases_as_told() {
        let cli = Cli::try_parse_from([
            "nodeimg",
            "lock",
            "r.toml",
            "--insecure-registry",
            "127.0.0.1:5000",
        ])
        .unwrap();
        let Command::Lock(a) = cli.command else {
            panic!("not lock");
        };
        let opts = lock_options(a).unwrap();
        assert_eq!(opts.registry.insecure, ["127.0.0.1:5000"]);
        let cli = Cli::try_parse_from(["nodeimg", "lock", "r.toml"]).unwrap();
        let Command::Lock(a) = cli.command else {
            panic!("not lock");
        };
        assert!(lock_options(a).unwrap().registry.insecure.is_empty());
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
        let e = anyhow::Error::new(nodeimg::Error::Usage("bad".into()));
        assert_eq!(exit_code(&e), 2);
        assert_eq!(error_text(&e), "error: bad");
        let e = anyhow::Error::new(nodeimg::Error::Lint { errors: 2 });
        assert_eq!(exit_code(&e), 1);
        let e = anyhow::anyhow!("plain");
        assert_eq!(exit_code(&e), 1);
        let io = nodeimg::Error::io("writing out/x", std::io::Error::other("disk full"));
        assert_eq!(
            error_text(&anyhow::Error::new(io)),
            "error: writing out/x: disk full"
        );
        let e = anyhow::Error::new(std::io::Error::other("inner")).context("outer");
        assert_eq!(error_text(&e), "error: outer\n  caused by: inner");
        // A cause the message already ends with is not printed again.
        let read = nodeimg_image::Error::read(
            "rootfs:r.tar",
            "cannot open the tarball",
            std::io::Error::other("denied"),
        );
        let e = anyhow::Error::new(nodeimg::Error::from(read));
        assert_eq!(
            error_text(&e),
            "error: rootfs:r.tar: cannot open the tarball: denied"
        );
        assert_eq!(exit_code(&e), 1);
        // A registry's command-line mistakes (from push) exit 2.
        let e = check_push_args(
            Some("127.0.0.1:1/x:y"),
            &FormatArg::Oci,
            &["10.0.0.1:5000".into()],
        )
        .unwrap_err();
        assert_eq!(exit_code(&e), 2, "{e}");
        let e = check_push_args(Some("docker://debian:12"), &FormatArg::Oci, &[]).unwrap_err();
        assert_eq!(exit_code(&e), 2, "{e}");
        let e = anyhow::Error::new(nodeimg_registry::RegistryError::Usage("bad".into()));
        assert_eq!((exit_code(&e), error_text(&e).as_str()), (2, "error: bad"));
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
