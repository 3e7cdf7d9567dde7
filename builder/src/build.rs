//! `nodeimg build`: recipe to image, top-down.
//!
//! recipe (pass 1) -> base -> variables (pass 2) -> lint -> plan -> output.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::packages::{self, PackageEnv};
use crate::plan;
use nodeimg_fetch::progress::{human_size, Meter};
use nodeimg_image::base::{Base, BaseRef, BaseRefError};
use nodeimg_image::cache::{Counts, LayerCache};
use nodeimg_image::output::{self, Built, Compression, Format, ImageMeta, OutputOptions};
use nodeimg_lint::{self as lint, Finding};
use nodeimg_pkg::lock::{self, Lock};
use nodeimg_recipe::inputs::RecipeInputs;
use nodeimg_recipe::recipe::{self, Loaded, Recipe};
use nodeimg_recipe::vars;
use nodeimg_registry::RegistryOptions;

pub use nodeimg_image::output::RECIPE_DIGEST_ANNOTATION;

/// What to build and how.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The recipe file, as the user named it.
    pub recipe: PathBuf,
    /// Output path; default `out/<name>` (`out/<name>.tar` for archives and rootfs).
    pub output: Option<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Compression of new layers.
    pub compression: Compression,
    /// `--force`: replace what is at the output path even when it is not
    /// a previous output.
    pub force: bool,
    /// `--var NAME=VALUE` arguments.
    pub vars: Vec<String>,
    /// `--base REF`, relative to the current directory; overrides the recipe's.
    pub base: Option<String>,
    /// `--platform`: the OCI architectures to build, overriding the
    /// recipe's `image.platforms`; several make one image index.
    pub platforms: Vec<String>,
    /// `--base PLATFORM=REF`: the base of one platform (by OCI
    /// architecture), over `base` and the recipe's.
    pub platform_bases: BTreeMap<String, String>,
    /// The `SOURCE_DATE_EPOCH` value, if set.
    pub source_date_epoch: Option<String>,
    /// Where packages are downloaded and installed from.
    pub packages: PackageOptions,
    /// How registry bases are pulled (`docker://` bases).
    pub registry: RegistryOptions,
    /// Reuse and keep layers in the layer cache (`layers/` of the cache
    /// directory); `false` (`--no-cache`) builds every layer anew.
    pub layer_cache: bool,
    /// `--trust-stat`: a rootfs base, or a blob of the layer cache, whose
    /// file identity is the one recorded when it was last hashed is not
    /// hashed again.
    pub trust_stat: bool,
}

/// How layers' `packages` are fetched.
#[derive(Clone, Debug, Default)]
pub struct PackageOptions {
    /// The download cache; default [`packages::default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// `--mirror FROM=TO` pairs.
    pub mirrors: Vec<String>,
    /// `--offline`: no network; every file comes from the cache, as the
    /// lock file names it.
    pub offline: bool,
    /// What to do with the recipe's lock file.
    pub lock: LockUse,
}

/// What a build or check does with the recipe's lock file (`RECIPE.lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockUse {
    /// Use it when it exists (the default).
    #[default]
    Auto,
    /// `--locked`: it must exist.
    Require,
    /// `--no-lock`: ignore it and resolve against the repositories.
    Ignore,
}

impl BuildOptions {
    /// Defaults for `recipe`: OCI layout, gzip, no overrides.
    pub fn new(recipe: impl Into<PathBuf>) -> Self {
        BuildOptions {
            recipe: recipe.into(),
            output: None,
            format: Format::Oci,
            compression: Compression::Gzip,
            force: false,
            vars: Vec::new(),
            base: None,
            platforms: Vec::new(),
            platform_bases: BTreeMap::new(),
            source_date_epoch: None,
            packages: PackageOptions::default(),
            registry: RegistryOptions::default(),
            layer_cache: true,
            trust_stat: false,
        }
    }
}

/// Told about each step of a build.
pub trait Progress {
    /// A step starts.
    fn step(&mut self, message: &str);
    /// Lint findings, before the build goes on or stops.
    fn findings(&mut self, findings: &[Finding]);
    /// Something the user should know that does not stop the build.
    fn warn(&mut self, message: &str) {
        self.meter().suspend(|| eprintln!("warning: {message}"));
    }
    /// Where package downloads and unpacking are shown; quiet by default.
    fn meter(&self) -> Meter {
        Meter::quiet()
    }
}

/// A [`Progress`] that says nothing.
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: &str) {}
    fn findings(&mut self, _: &[Finding]) {}
}

/// A recipe ready to build: expanded, its base opened, linted.
pub struct Prepared {
    /// The recipe.
    pub recipe: Recipe,
    /// The base.
    pub base: Base,
    /// Target architecture.
    pub arch: String,
    /// `--var` overrides.
    pub overrides: BTreeMap<String, String>,
    /// Lint findings.
    pub findings: Vec<Finding>,
}

/// The result of [`build_with`].
pub struct Outcome {
    /// What was written.
    pub built: Built,
    /// Image name.
    pub name: String,
    /// Image tag.
    pub tag: String,
    /// Lint findings (warnings, infos and allowed findings: errors stop the build).
    pub findings: Vec<Finding>,
    /// The digest of the recipe and its inputs.
    pub recipe_digest: String,
    /// The base, as the recipe or `--base` named it.
    pub base: String,
    /// The packages each recipe layer installed (name, version,
    /// architecture, in its backend's spelling), by recipe layer name;
    /// layers without packages are absent.
    pub packages: BTreeMap<String, Vec<InstalledPackage>>,
    /// What the layer cache did (`None` without one).
    pub cache: Option<Counts>,
    /// The lint rules the recipe allows, with its reasons.
    pub lint_allow: Vec<nodeimg_recipe::recipe::LintAllow>,
    /// A multi-platform build: each platform's image, in the order built
    /// (`built` is then the image index: its digest in `manifest_digest`,
    /// no config, no layers; `packages` is empty). Empty otherwise.
    pub platforms: Vec<PlatformOutcome>,
}

/// One platform's image of a multi-platform build.
pub struct PlatformOutcome {
    /// Its OCI architecture.
    pub arch: String,
    /// Its image: manifest and config digests, layers.
    pub built: Built,
    /// Its base, as named.
    pub base: String,
    /// The packages each recipe layer installed on it.
    pub packages: BTreeMap<String, Vec<InstalledPackage>>,
}

impl PlatformOutcome {
    /// `linux/ARCH[/VARIANT]`.
    pub fn platform(&self) -> String {
        platform_name(&self.arch)
    }
}

/// One platform of a build: its OCI architecture, and whether the build
/// makes several (each then has its own lock file, `RECIPE.ARCH.lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform<'a> {
    /// OCI architecture (`amd64`, `arm64`, `arm`).
    pub arch: &'a str,
    /// One of several.
    pub multi: bool,
}

/// `linux/ARCH[/VARIANT]` for an OCI architecture.
pub fn platform_name(arch: &str) -> String {
    match nodeimg_layers::arch::variant(arch) {
        Some(v) => format!("linux/{arch}/{v}"),
        None => format!("linux/{arch}"),
    }
}

/// The platforms (OCI architectures) a build of `recipe` makes:
/// `platforms` (from `--platform`) when given, else the recipe's
/// `image.platforms`; empty when neither names any (one image, of the
/// recipe's or the base's architecture).
pub fn platforms_of(recipe: &Path, platforms: &[String]) -> Result<Vec<String>> {
    if !platforms.is_empty() {
        return Ok(platforms.to_vec());
    }
    Ok(Loaded::load(recipe)?.platforms()?)
}

/// Each platform a build of `platforms` makes, in order (`[None]` when it
/// names none: one image, of the recipe's or the base's architecture),
/// once `bases` (`--base PLATFORM=REF`) are found to name only these.
pub fn each_platform<'a>(
    platforms: &'a [String],
    bases: &BTreeMap<String, String>,
) -> Result<Vec<Option<Platform<'a>>>> {
    check_platform_bases(platforms, bases)?;
    let multi = platforms.len() > 1;
    Ok(if platforms.is_empty() {
        vec![None]
    } else {
        platforms
            .iter()
            .map(|arch| Some(Platform { arch, multi }))
            .collect()
    })
}

/// `--base PLATFORM=REF` must name a platform the build makes.
fn check_platform_bases(platforms: &[String], bases: &BTreeMap<String, String>) -> Result<()> {
    for (arch, base) in bases {
        if !platforms.contains(arch) {
            let names: Vec<String> = platforms.iter().map(|a| platform_name(a)).collect();
            return Err(Error::Usage(format!(
                "--base {}={base}: the build has no platform {} ({}); name the platforms with --platform or image.platforms",
                platform_name(arch),
                platform_name(arch),
                if names.is_empty() {
                    "it builds one image, of the recipe's or the base's architecture".to_string()
                } else {
                    format!("its platforms: {}", names.join(", "))
                }
            )));
        }
    }
    Ok(())
}

/// The lock file of `recipe` for `platform`: `RECIPE.lock`, or, one
/// platform of several, `RECIPE.ARCH.lock` (the OCI architecture).
pub fn lock_file(recipe: &Path, platform: Option<Platform<'_>>) -> PathBuf {
    match platform {
        Some(p) if p.multi => lock::lock_path_for(recipe, p.arch),
        _ => lock::lock_path(recipe),
    }
}

pub use nodeimg_pkg::backend::InstalledPackage;

/// The packages each layer with `packages` added to the image, as the
/// backend that installed them lists them (the Debian backend reads the
/// dpkg status below and at the layer; the rpm backend lists what it
/// installed). A layer the driver did not install (no environment) is
/// listed by the backend [`nodeimg_pkg::backend::detect`] chooses for it.
fn layer_packages(
    recipe: &Recipe,
    base: &Base,
    plans: &[plan::LayerPlan],
    arch: &str,
    env: Option<&PackageEnv>,
) -> BTreeMap<String, Vec<InstalledPackage>> {
    let installed = env.map(PackageEnv::installed).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (i, l) in recipe.layers.iter().enumerate() {
        if l.spec.packages.is_empty() || i >= plans.len() {
            continue;
        }
        let view = |n: usize| nodeimg_layers::Stack {
            lower: base.index(),
            uppers: &plans[..n],
        };
        let (below, above) = (view(i), view(i + 1));
        let done = installed.iter().find(|d| d.layer == l.spec.name);
        let backend = match done {
            Some(d) => packages::BACKENDS
                .iter()
                .copied()
                .find(|b| b.kind() == d.kind),
            None => nodeimg_pkg::backend::detect(packages::BACKENDS, &above, arch),
        };
        let Some(backend) = backend else { continue };
        let pkgs = done.map_or(&[][..], |d| &d.packages[..]);
        out.insert(
            l.spec.name.clone(),
            backend.layer_packages(&below, &above, pkgs),
        );
    }
    out
}

/// Read the recipe, open its base, expand variables and lint.
pub fn prepare(
    recipe_path: &Path,
    var_args: &[String],
    base_arg: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<Prepared> {
    prepare_with(
        &PrepareArgs {
            recipe_path,
            var_args,
            base_arg,
            arch: None,
        },
        &RegistryOptions::default(),
        None,
        progress,
    )
}

/// What [`prepare_with`] reads: the recipe, `--var`, `--base`, and the
/// platform's architecture when building for one.
pub(crate) struct PrepareArgs<'a> {
    pub(crate) recipe_path: &'a Path,
    pub(crate) var_args: &'a [String],
    pub(crate) base_arg: Option<&'a str>,
    pub(crate) arch: Option<&'a str>,
}

/// The architecture of an image on `base` whose recipe names none: the
/// base config's, else (a rootfs base) its package manager's, else amd64.
fn architecture_of(base: &Base) -> String {
    base.architecture()
        .or_else(|| {
            packages::BACKENDS
                .iter()
                .find_map(|b| b.native_architecture(base.view()))
        })
        .unwrap_or_else(|| "amd64".to_string())
}

/// A base without an image config (a rootfs tarball) whose package
/// manager is built for another architecture than the image's cannot
/// make it: its programs would not run.
fn check_base_architecture(base: &Base, arch: &str) -> Result<()> {
    if base.config().is_some() {
        return Ok(());
    }
    let native = packages::BACKENDS
        .iter()
        .find_map(|b| b.native_architecture(base.view()));
    match native {
        Some(n) if n != arch => Err(Error::Usage(format!(
            "base {} is a {n} system (its package manager's architecture), the image is {arch}; \
             give a base of {}, with --base {}=REF for one platform of several",
            base.what(),
            platform_name(arch),
            platform_name(arch)
        ))),
        _ => Ok(()),
    }
}

/// [`prepare`], pulling a registry base as `registry` says, the base's
/// index from `cache` when it holds it.
pub(crate) fn prepare_with(
    args: &PrepareArgs<'_>,
    registry: &RegistryOptions,
    cache: Option<&LayerCache>,
    progress: &mut dyn Progress,
) -> Result<Prepared> {
    let (recipe_path, var_args, base_arg) = (args.recipe_path, args.var_args, args.base_arg);
    let overrides = recipe::parse_overrides(var_args)?;
    progress.step(&format!("reading recipe {}", recipe_path.display()));
    let loaded = load_for(recipe_path, args.arch)?;
    let base_ref = base_ref_of(&loaded, base_arg, &overrides)?;
    let base = match &base_ref {
        BaseRef::Scratch => Base::scratch(),
        r => {
            progress.step(&format!("opening base {r}"));
            let wanted = loaded.architecture(&overrides)?;
            Base::open_cached(
                r,
                wanted.as_deref(),
                &nodeimg_registry::BasePuller(registry),
                cache,
            )?
        }
    };
    let arch = match loaded.architecture(&overrides)? {
        Some(a) => {
            check_base_architecture(&base, &a)?;
            a
        }
        None => architecture_of(&base),
    };
    let os_release = os_release_of(base.view());
    let recipe = loaded.expand(&arch, &os_release, &overrides)?;
    if let Some((i, id)) = lint::unknown_allowed(&recipe) {
        return Err(recipe
            .error(
                0,
                &format!("lint.allow[{i}].rule"),
                format!("{id:?} is not a lint rule"),
                Some(format!(
                    "the rules are {} (see docs/lint.md)",
                    lint::rule_ids()
                )),
            )
            .into());
    }
    progress.step("linting");
    let findings = lint::run(&recipe, base.view(), &arch, packages::BACKENDS);
    Ok(Prepared {
        recipe,
        base,
        arch,
        overrides,
        findings,
    })
}

/// The recipe at `recipe_path`, for the platform `arch` when given; a
/// recipe of several platforms, prepared alone, for its first.
fn load_for(recipe_path: &Path, arch: Option<&str>) -> Result<Loaded> {
    let loaded = Loaded::load(recipe_path)?;
    let arch = match arch {
        Some(a) => Some(a.to_string()),
        None => loaded.platforms()?.first().cloned(),
    };
    Ok(match arch {
        Some(a) => loaded.for_architecture(&a),
        None => loaded,
    })
}

/// The base `--base` (`base_arg`) or the recipe names, checked: a path
/// must exist.
fn base_ref_of(
    loaded: &Loaded,
    base_arg: Option<&str>,
    overrides: &BTreeMap<String, String>,
) -> Result<BaseRef> {
    let base_ref = match base_arg {
        Some(s) => {
            let cwd = std::env::current_dir().ctx(|| "finding the current directory".to_string())?;
            parse_base(s, &cwd).map_err(|m| Error::Usage(format!("--base {s:?}: {m}")))?
        }
        None => match loaded.base(overrides)? {
            None => BaseRef::Scratch,
            Some(s) => parse_base(&s, &loaded.dir).map_err(|m| {
                loaded.files[0].error_at(
                    "image.base",
                    m.to_string(),
                    Some(
                        "scratch | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | rootfs:FILE (.tar, .tar.gz, .tar.zst), relative to the recipe's folder | docker://HOST[:PORT]/REPO:TAG"
                            .to_string(),
                    ),
                )
            })?,
        },
    };
    if let Some(path) = base_path(&base_ref) {
        if !path.exists() {
            let message = format!(
                "base {base_ref} does not exist ({} not found)",
                path.display()
            );
            return Err(match base_arg {
                Some(_) => Error::Usage(format!("--base: {message}")),
                None => loaded.files[0].error_at(
                    "image.base",
                    message,
                    Some("paths in image.base are relative to the recipe's folder; --base paths to the current directory".to_string()),
                ).into(),
            });
        }
    }
    Ok(base_ref)
}

/// The `os.*` variables of an image: `/etc/os-release`, else
/// `/usr/lib/os-release` (symlinks resolved inside the image).
pub(crate) fn os_release_of(view: &dyn nodeimg_layers::RootView) -> BTreeMap<String, String> {
    view.read_text("/etc/os-release")
        .or_else(|| view.read_text("/usr/lib/os-release"))
        .map(|t| vars::parse_os_release(&t))
        .unwrap_or_default()
}

/// The host path a base reference reads, if any.
/// A base reference as the user wrote it, relative to `dir`; a registry
/// reference must name a host, a repository and a tag or digest.
pub(crate) fn parse_base(s: &str, dir: &Path) -> std::result::Result<BaseRef, BaseError> {
    let r = BaseRef::parse(s, dir)?;
    if let BaseRef::Registry { reference } = &r {
        nodeimg_registry::parse_reference(reference)?;
    }
    Ok(r)
}

/// Why a base reference (`--base` or `image.base`) is refused; the caller
/// says where it was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BaseError {
    /// No known kind of base, or a kind with a missing part.
    #[error("{0}")]
    Ref(#[from] BaseRefError),
    /// A registry reference that does not name an image.
    #[error("base {0}")]
    Registry(#[from] nodeimg_registry::ReferenceError),
}

fn base_path(r: &BaseRef) -> Option<&Path> {
    match r {
        BaseRef::Scratch | BaseRef::Registry { .. } => None,
        BaseRef::Oci { dir, .. } => Some(dir),
        BaseRef::OciArchive { file, .. } | BaseRef::Rootfs { file } => Some(file),
    }
}

pub use nodeimg_image::epoch::{parse as parse_epoch, rfc3339};

/// The default output path for an image name and format.
pub fn default_output(name: &str, format: Format) -> PathBuf {
    format.default_output(name)
}

fn hash_entry(h: &mut Sha256, kind: &str, name: &str, len: u64) {
    h.update(format!("{kind} {name} {len}\n").as_bytes());
}

/// sha256 over the recipe files, every input file and the overrides, by
/// recipe-relative name (no host paths, no times): the same recipe gives
/// the same digest wherever it is built.
pub(crate) fn recipe_digest(
    recipe: &Recipe,
    inputs: &RecipeInputs,
    overrides: &BTreeMap<String, String>,
) -> Result<String> {
    let mut h = Sha256::new();
    for f in &recipe.files {
        hash_entry(&mut h, "recipe", &f.rel, f.text.len() as u64);
        h.update(f.text.as_bytes());
    }
    let mut names: BTreeSet<String> = inputs.used().into_iter().collect();
    for l in &recipe.layers {
        names.extend(
            recipe::layer_inputs(&l.spec)
                .into_iter()
                .map(|(_, rel)| rel),
        );
    }
    for rel in names {
        // The handle the layers are packed from: what is hashed is what
        // goes into the image.
        let file = inputs
            .open(&rel)
            .map_err(|e| Error::Usage(format!("input {e}")))?;
        let len = file.size();
        hash_entry(&mut h, "input", &rel, len);
        let mut reader = file.reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .ctx(|| format!("reading the recipe input {rel}"))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            h.update(&buf[..n]);
        }
        if read != len {
            return Err(Error::io(
                format!("reading the recipe input {rel}"),
                std::io::Error::other(format!(
                    "it changed size during the build ({len} bytes when opened, {read} now); \
                     run the build again"
                )),
            ));
        }
    }
    for (k, v) in overrides {
        hash_entry(&mut h, "var", k, v.len() as u64);
        h.update(v.as_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Image metadata: name, tag, architecture, labels, annotations.
pub(crate) fn image_meta(recipe: &Recipe, arch: &str, created: i64, digest: &str) -> ImageMeta {
    let img = &recipe.image;
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        img.name.clone(),
    );
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        img.tag.clone(),
    );
    annotations.extend(img.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        rfc3339(created),
    );
    annotations.insert(RECIPE_DIGEST_ANNOTATION.to_string(), digest.to_string());
    ImageMeta {
        name: img.name.clone(),
        tag: img.tag.clone(),
        architecture: arch.to_string(),
        labels: img.labels.clone(),
        annotations,
        created,
    }
}

/// Build the image; see [`build_with`].
pub fn build(opts: &BuildOptions) -> Result<Built> {
    build_with(opts, &mut Silent).map(|o| o.built)
}

/// A prepared recipe with its layers rendered: everything a build does
/// short of writing. Recipe errors found while rendering (exit 2) come
/// before lint errors (exit 1), so `check` and `build` agree.
pub struct Checked {
    /// The prepared recipe, base and findings.
    pub prepared: Prepared,
    /// The rendered layers.
    pub plans: Vec<plan::LayerPlan>,
    /// The recipe's input files (those of the recipe).
    pub inputs: std::sync::Arc<RecipeInputs>,
    /// The package environment; its scratch directory holds the installed
    /// packages' contents the plans refer to, so it lives as long as they do.
    pub packages: Option<PackageEnv>,
    /// What an offline check could not verify (the enablement of units
    /// the packages it does not install may ship).
    pub notes: Vec<plan::Note>,
}

impl Checked {
    /// How many error findings.
    pub(crate) fn lint_errors(&self) -> usize {
        self.prepared
            .findings
            .iter()
            .filter(|f| f.is_error())
            .count()
    }
}

/// What [`check`] reads and how.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions<'a> {
    /// The recipe file, as the user named it.
    pub recipe: &'a Path,
    /// `--var NAME=VALUE` arguments.
    pub vars: &'a [String],
    /// `--base REF`.
    pub base: Option<&'a str>,
    /// Install layers' `packages` with these; `None`: they are not
    /// installed (offline).
    pub packages: Option<&'a PackageOptions>,
    /// How the lock file is followed (offline, only the pins, layers and
    /// architecture are compared; the apt sources are compared by `build`).
    pub lock: LockUse,
    /// How a registry base is pulled.
    pub registry: &'a RegistryOptions,
    /// The layer cache the base's index and layers' installed packages
    /// may come from.
    pub cache: Option<&'a Arc<LayerCache>>,
    /// The platform to check for (`None`: the recipe's architecture, or
    /// its first platform).
    pub platform: Option<Platform<'a>>,
}

/// Prepare, lint (findings go to `progress`) and render the layers as
/// `opts` says.
pub fn check(opts: &CheckOptions<'_>, progress: &mut dyn Progress) -> Result<Checked> {
    check_inner(opts, LockStep::Follow(opts.lock), progress)
}

/// Whether a run follows the lock file or writes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockStep {
    Follow(LockUse),
    Record,
}

fn check_inner(
    opts: &CheckOptions<'_>,
    step: LockStep,
    progress: &mut dyn Progress,
) -> Result<Checked> {
    let (recipe_path, packages) = (opts.recipe, opts.packages);
    let (var_args, base_arg, registry) = (opts.vars, opts.base, opts.registry);
    if let Some(o) = packages {
        nodeimg_fetch::fetch::Mirrors::parse(&o.mirrors)
            .map_err(|e| Error::Usage(format!("--mirror: {e}")))?;
    }
    let p = prepare_with(
        &PrepareArgs {
            recipe_path,
            var_args,
            base_arg,
            arch: opts.platform.map(|p| p.arch),
        },
        registry,
        opts.cache.map(|c| &**c),
        progress,
    )?;
    progress.findings(&p.findings);
    // Lint errors stop a build before any package is downloaded (a pin
    // with a known vulnerability is never fetched).
    let errors = lint::counts(&p.findings).error;
    let fetches = p.recipe.layers.iter().any(|l| !l.spec.packages.is_empty());
    if packages.is_some() && fetches && errors > 0 {
        return Err(Error::Lint { errors });
    }
    let inputs = std::sync::Arc::clone(&p.recipe.inputs);
    let wanted = p.recipe.layers.iter().any(|l| !l.spec.packages.is_empty());
    let offline = packages.is_some_and(|o| o.offline);
    let lock_file = lock_file(recipe_path, opts.platform);
    let lock = match step {
        LockStep::Record | LockStep::Follow(LockUse::Ignore) => None,
        LockStep::Follow(_) => Lock::read(&lock_file, packages::LOCK_RULES)?,
    };
    if lock.is_none() {
        let run_lock = format!("run `nodeimg lock {}`", recipe_path.display());
        if step == LockStep::Follow(LockUse::Require) {
            return Err(Error::Usage(format!(
                "--locked: the lock file {} does not exist; {run_lock} first",
                lock_file.display()
            )));
        }
        if offline && wanted {
            return Err(Error::Usage(format!(
                "--offline: the recipe installs packages, and an offline build installs them from the lock file {} and the cache alone, but {}; {run_lock} where the repositories are reachable (it also fills the cache), then build --offline with the same --cache-dir",
                lock_file.display(),
                if step == LockStep::Follow(LockUse::Ignore) {
                    "--no-lock was given"
                } else {
                    "the lock file does not exist"
                }
            )));
        }
    }
    let deb_arch = packages::debian_arch(&p.arch).to_string();
    if let Some(l) = &lock {
        lock::check_recipe(l, &lock_file, &p.recipe, &deb_arch)?;
    }
    let (env, lock) = match packages {
        Some(o) if wanted => (
            Some(
                package_env(o, step, lock, &lock_file, recipe_path, &p, progress)?
                    .with_layer_cache(opts.cache.cloned())
                    .with_platform(
                        opts.platform
                            .filter(|p| p.multi)
                            .map(|p| platform_name(p.arch)),
                    ),
            ),
            None,
        ),
        _ => (None, lock),
    };
    progress.step(&format!("rendering {} layer(s)", p.recipe.layers.len()));
    let (plans, notes) = render_plans(&p, inputs.as_ref(), env.as_ref(), lock.as_ref())?;
    Ok(Checked {
        prepared: p,
        plans,
        inputs,
        packages: env,
        notes,
    })
}

/// The layers of `p` rendered: their packages installed with `env`, or
/// without it (offline) the units they ship taken from `lock`, with what
/// that could not verify.
fn render_plans(
    p: &Prepared,
    inputs: &RecipeInputs,
    env: Option<&PackageEnv>,
    lock: Option<&Lock>,
) -> Result<(Vec<plan::LayerPlan>, Vec<plan::Note>)> {
    match env {
        Some(env) => {
            let base_id = plan::base_id(&p.base);
            let plans = plan::render(
                &p.recipe,
                p.base.view(),
                &base_id,
                inputs,
                &p.arch,
                Some(env),
            )?;
            Ok((plans, Vec::new()))
        }
        None => plan::render_offline(&p.recipe, p.base.view(), inputs, &p.arch, lock),
    }
}

/// The package environment of a build of `recipe_path` with `o`: the cache,
/// the mirrors, progress, the base, and what to do with the lock.
fn package_env(
    o: &PackageOptions,
    step: LockStep,
    lock: Option<Lock>,
    lock_file: &Path,
    recipe_path: &Path,
    p: &Prepared,
    progress: &mut dyn Progress,
) -> Result<PackageEnv> {
    let dir = o
        .cache_dir
        .clone()
        .or_else(packages::default_cache_dir)
        .ok_or_else(|| {
            Error::Usage(
                "no package cache directory: give --cache-dir, or set XDG_CACHE_HOME or HOME"
                    .into(),
            )
        })?;
    let env = packages::new_env(&dir, &o.mirrors)?
        .with_offline(o.offline)
        .with_meter(progress.meter())
        .with_base(p.base.tars());
    let env = match (step, lock) {
        (LockStep::Record, _) => env.recording(),
        (_, Some(l)) => env.using_lock(l, lock_file),
        (_, None) => env,
    };
    if o.offline {
        check_offline(&env, recipe_path)?;
    }
    Ok(env)
}

/// `--offline`: every file the lock names must be in the cache; the error
/// names each one that is not.
fn check_offline(env: &PackageEnv, recipe_path: &Path) -> Result<()> {
    let missing = env.missing_from_cache()?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{} file(s) the lock file names are not in the cache {}:",
        missing.len(),
        env.cache_dir().display()
    );
    for m in &missing {
        message.push_str(&format!(
            "\n  {} (layer {:?}, {}): {} sha256 {}",
            m.package.label(),
            m.layer,
            human_size(m.package.size),
            m.package.url,
            m.package.sha256
        ));
        if m.fetch_url != m.package.url {
            message.push_str(&format!(" (fetched from {})", m.fetch_url));
        }
        if let Some(d) = &m.damaged {
            message.push_str(&format!("; {d}"));
        }
    }
    message.push_str(&format!(
        "\n  hint: where the repositories are reachable, run `nodeimg lock {}` or a build without --offline with the same --cache-dir {}, then build --offline again",
        recipe_path.display(),
        env.cache_dir().display()
    ));
    Err(Error::image("--offline", message))
}

/// What `nodeimg lock` resolves.
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// The recipe file, as the user named it.
    pub recipe: PathBuf,
    /// `--var NAME=VALUE` arguments.
    pub vars: Vec<String>,
    /// `--base REF`.
    pub base: Option<String>,
    /// Cache and mirrors (`offline` and `lock` are not used).
    pub packages: PackageOptions,
    /// How a registry base is pulled (`--insecure-registry`); the cache is
    /// the packages' when none is named.
    pub registry: RegistryOptions,
    /// `--platform`, as for a build: each platform of several is locked
    /// in its own file.
    pub platforms: Vec<String>,
    /// `--base PLATFORM=REF`, as for a build.
    pub platform_bases: BTreeMap<String, String>,
}

/// The result of [`lock_with`].
#[derive(Debug)]
pub struct LockOutcome {
    /// The lock file.
    pub path: PathBuf,
    /// What it holds.
    pub lock: Lock,
    /// False when the file already held exactly this (and was left alone).
    pub changed: bool,
}

/// `nodeimg lock`: resolve every layer's `packages` against the
/// repositories (signatures verified, `.deb`s downloaded into the cache and
/// verified, installed as a build would), and write `RECIPE.lock`
/// atomically; for a recipe of several platforms, `RECIPE.ARCH.lock` for
/// each, in order. Lint findings go to `progress` and do not stop it.
pub fn lock_with(opts: &LockOptions, progress: &mut dyn Progress) -> Result<Vec<LockOutcome>> {
    let platforms = platforms_of(&opts.recipe, &opts.platforms)?;
    let mut out = Vec::new();
    for platform in each_platform(&platforms, &opts.platform_bases)? {
        if let Some(p) = platform.filter(|p| p.multi) {
            progress.step(&format!("platform {}", platform_name(p.arch)));
        }
        out.push(lock_one(opts, platform, progress)?);
    }
    Ok(out)
}

/// The base of `platform`: its own (`--base PLATFORM=REF`), else `base`.
pub fn base_for<'a>(
    platform: Option<Platform<'_>>,
    bases: &'a BTreeMap<String, String>,
    base: Option<&'a str>,
) -> Option<&'a str> {
    platform
        .and_then(|p| bases.get(p.arch))
        .map(String::as_str)
        .or(base)
}

/// Lock one platform (or the recipe's one architecture).
fn lock_one(
    opts: &LockOptions,
    platform: Option<Platform<'_>>,
    progress: &mut dyn Progress,
) -> Result<LockOutcome> {
    let packages = PackageOptions {
        offline: false,
        lock: LockUse::Ignore,
        ..opts.packages.clone()
    };
    let mut registry = opts.registry.clone();
    if registry.cache_dir.is_none() {
        registry.cache_dir = opts.packages.cache_dir.clone();
    }
    let check = CheckOptions {
        recipe: &opts.recipe,
        vars: &opts.vars,
        base: base_for(platform, &opts.platform_bases, opts.base.as_deref()),
        packages: Some(&packages),
        lock: LockUse::Ignore,
        registry: &registry,
        cache: None,
        platform,
    };
    let c = check_inner(&check, LockStep::Record, progress)?;
    let arch = &c.prepared.arch;
    let lock = c
        .packages
        .as_ref()
        .and_then(|e| e.recorded_lock(arch))
        .unwrap_or_else(|| Lock::new(packages::debian_arch(arch), vec![], vec![], vec![]));
    let path = lock_file(&opts.recipe, platform);
    let text = lock.render()?;
    let changed = std::fs::read(&path).ok().as_deref() != Some(text.as_bytes());
    if changed {
        lock.write(&path)?;
    }
    Ok(LockOutcome {
        path,
        lock,
        changed,
    })
}

/// The layer cache of a build: `layers/` in the cache directory, unless
/// the build asks for none.
/// A cache that cannot be opened is a warning: the build goes on without.
fn layer_cache(opts: &BuildOptions, progress: &mut dyn Progress) -> Option<Arc<LayerCache>> {
    if !opts.layer_cache {
        return None;
    }
    let dir = opts
        .packages
        .cache_dir
        .clone()
        .or_else(packages::default_cache_dir)?;
    match LayerCache::open(&dir) {
        Ok(c) => {
            let c = c.trusting_identity(opts.trust_stat);
            // An OCI output makes a rootfs base a compressed layer: done
            // while the base is read for its index, when that is read.
            let c = match opts.format {
                Format::Oci | Format::OciArchive => c.compressing_bases(opts.compression),
                Format::Rootfs | Format::DockerArchive => c,
            };
            Some(Arc::new(c))
        }
        Err(e) => {
            progress.warn(&format!(
                "layer cache: cannot use {}: {e}; every layer is built anew",
                dir.join(nodeimg_image::cache::LAYERS_DIR).display()
            ));
            None
        }
    }
}

/// Build the image: recipe -> base -> variables -> lint -> plan -> output.
/// Lint errors stop the build with [`Error::Lint`] after `progress` has
/// seen the findings, before anything is written. Several platforms
/// (`--platform`, `image.platforms`) are each prepared and rendered in
/// turn, then written as one image index.
pub fn build_with(opts: &BuildOptions, progress: &mut dyn Progress) -> Result<Outcome> {
    let created = parse_epoch(opts.source_date_epoch.as_deref())?;
    let platforms = platforms_of(&opts.recipe, &opts.platforms)?;
    let multi = platforms.len() > 1;
    if multi && !matches!(opts.format, Format::Oci | Format::OciArchive) {
        return Err(Error::Usage(format!(
            "{} platforms make one OCI image index: use --format oci or oci-archive, or build one platform with --platform",
            platforms.len()
        )));
    }
    let out_opts = |path: PathBuf, cache: Option<Arc<LayerCache>>| OutputOptions {
        path,
        format: opts.format,
        compression: opts.compression,
        force: opts.force,
        cache,
    };
    // The output named on the command line is locked (and checked) before
    // any work, so that a second build of it fails at once.
    let early = match &opts.output {
        Some(path) => {
            output::check_path(path, opts.format)?;
            Some(output::lock(&out_opts(path.clone(), None))?)
        }
        None => None,
    };
    let mut registry = opts.registry.clone();
    if registry.cache_dir.is_none() {
        registry.cache_dir = opts.packages.cache_dir.clone();
    }
    // --offline: no network for the base either.
    registry.offline |= opts.packages.offline;
    let cache = layer_cache(opts, progress);
    let checked = check_platforms(
        opts,
        &platforms,
        &registry,
        cache.as_ref(),
        created,
        progress,
    )?;
    let (first, meta) = &checked[0];
    let path = opts
        .output
        .clone()
        .unwrap_or_else(|| default_output(&meta.name, opts.format));
    let out = out_opts(path, cache.clone());
    let lock = match early {
        Some(lock) => lock,
        None => output::lock(&out)?,
    };
    progress.step(&format!("writing {}", out.path.display()));
    let written = if multi {
        let images: Vec<output::Image<'_>> = checked
            .iter()
            .map(|(c, meta)| output::Image {
                base: &c.prepared.base,
                layers: &c.plans,
                meta,
            })
            .collect();
        output::write_index_locked(&lock, &images, &meta.tag, &out).map(Written::Index)
    } else {
        output::write_locked(&lock, &first.prepared.base, &first.plans, meta, &out)
            .map(Written::Image)
    };
    drop(lock);
    let cache_counts = cache.as_ref().map(|c| {
        for note in c.take_notes() {
            progress.warn(&note);
        }
        c.counts()
    });
    let written = written?;
    Ok(outcome(checked, written, cache_counts))
}

/// Prepare, lint and render each platform of a build in turn (or the one
/// image of a recipe without platforms), each with its image metadata.
fn check_platforms(
    opts: &BuildOptions,
    platforms: &[String],
    registry: &RegistryOptions,
    cache: Option<&Arc<LayerCache>>,
    created: i64,
    progress: &mut dyn Progress,
) -> Result<Vec<(Checked, ImageMeta)>> {
    let mut checked: Vec<(Checked, ImageMeta)> = Vec::new();
    for platform in each_platform(platforms, &opts.platform_bases)? {
        if let Some(p) = platform.filter(|p| p.multi) {
            progress.step(&format!("platform {}", platform_name(p.arch)));
        }
        let c = check(
            &CheckOptions {
                recipe: &opts.recipe,
                vars: &opts.vars,
                base: base_for(platform, &opts.platform_bases, opts.base.as_deref()),
                packages: Some(&opts.packages),
                lock: opts.packages.lock,
                registry,
                cache,
                platform,
            },
            progress,
        )?;
        let errors = c.lint_errors();
        if errors > 0 {
            return Err(Error::Lint { errors });
        }
        let p = &c.prepared;
        // The recipe, its inputs and the overrides are every platform's:
        // hashed once.
        let digest = match checked.first() {
            Some((_, m)) => m.annotations.get(RECIPE_DIGEST_ANNOTATION).cloned(),
            None => None,
        };
        let digest = match digest {
            Some(d) => d,
            None => recipe_digest(&p.recipe, &c.inputs, &p.overrides)?,
        };
        let meta = image_meta(&p.recipe, &p.arch, created, &digest);
        checked.push((c, meta));
    }
    Ok(checked)
}

/// What the output writer made: one image, or an index of several.
enum Written {
    Image(Built),
    Index(output::BuiltIndex),
}

/// The [`Outcome`] of a build of `checked` (one per platform) that wrote
/// `written`.
fn outcome(checked: Vec<(Checked, ImageMeta)>, written: Written, cache: Option<Counts>) -> Outcome {
    let packages_of = |c: &Checked| {
        let p = &c.prepared;
        layer_packages(&p.recipe, &p.base, &c.plans, &p.arch, c.packages.as_ref())
    };
    let mut findings: Vec<Finding> = Vec::new();
    for (c, _) in &checked {
        for f in &c.prepared.findings {
            if !findings.contains(f) {
                findings.push(f.clone());
            }
        }
    }
    let (c0, meta) = &checked[0];
    let recipe_digest = meta
        .annotations
        .get(RECIPE_DIGEST_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let lint_allow = c0.prepared.recipe.lint_allow.clone();
    let (name, tag) = (meta.name.clone(), meta.tag.clone());
    let (built, base, packages, platforms) = match written {
        Written::Image(built) => {
            let packages = packages_of(c0);
            (
                built,
                c0.prepared.base.what().to_string(),
                packages,
                Vec::new(),
            )
        }
        Written::Index(index) => {
            let platforms: Vec<PlatformOutcome> = checked
                .iter()
                .zip(index.images)
                .map(|((c, _), built)| PlatformOutcome {
                    arch: c.prepared.arch.clone(),
                    built,
                    base: c.prepared.base.what().to_string(),
                    packages: packages_of(c),
                })
                .collect();
            let bases: Vec<&str> = platforms.iter().map(|p| p.base.as_str()).collect();
            let built = Built {
                path: index.path,
                manifest_digest: Some(index.index_digest),
                config_digest: None,
                file_digest: index.file_digest,
                layers: Vec::new(),
            };
            (built, bases.join(", "), BTreeMap::new(), platforms)
        }
    };
    Outcome {
        built,
        name,
        tag,
        findings,
        recipe_digest,
        base,
        packages,
        cache,
        lint_allow,
        platforms,
    }
}

/// The layers of an image for the build metadata: digest, size, media
/// type, the recipe layer, the packages it installed.
fn layers_json(
    built: &Built,
    packages: &BTreeMap<String, Vec<InstalledPackage>>,
) -> Vec<serde_json::Value> {
    built
        .layers
        .iter()
        .map(|l| {
            let mut v = serde_json::json!({
                "name": l.name,
                "digest": l.digest,
                "diff_id": l.diff_id,
                "size": l.size,
                "media_type": l.media_type,
                "from_base": l.from_base,
            });
            if let Some(p) = packages.get(&l.name).filter(|_| !l.from_base) {
                v["packages"] = serde_json::to_value(p).unwrap_or_default();
            }
            v
        })
        .collect()
}

/// The build's metadata document (`--metadata-file`, `build --json`): the
/// recipe and its digest, the image's digests and tags, every layer (digest,
/// size, media type, recipe layer, packages it installed), the build time
/// (`build_time`: seconds since 1970, from `SOURCE_DATE_EPOCH` when set),
/// the lint rules the recipe allows (`lint.allow`: rule and reason) and
/// the findings they allowed (`lint.allowed`, as `check --json` shows
/// them), and where it was pushed, if it was. A multi-platform build's
/// `image_digest` is its image index's, and `platforms` lists each
/// platform's image (platform, base, manifest and config digests, layers).
pub fn metadata(
    recipe: &Path,
    outcome: &Outcome,
    format: Format,
    build_time: i64,
    pushed: Option<&nodeimg_registry::PushReport>,
) -> serde_json::Value {
    let b = &outcome.built;
    let layers = layers_json(b, &outcome.packages);
    let mut tags = vec![format!("{}:{}", outcome.name, outcome.tag)];
    if let Some(p) = pushed {
        tags.push(p.reference.clone());
    }
    let format_name = match format {
        Format::Oci => "oci",
        Format::OciArchive => "oci-archive",
        Format::Rootfs => "rootfs",
        Format::DockerArchive => "docker-archive",
    };
    let mut doc = serde_json::json!({
        "name": outcome.name,
        "tag": outcome.tag,
        "tags": tags,
        "recipe": {
            "path": recipe.display().to_string(),
            "digest": outcome.recipe_digest,
        },
        "format": format_name,
        "path": b.path.display().to_string(),
        "image_digest": b.manifest_digest,
        "manifest_digest": b.manifest_digest,
        "config_digest": b.config_digest,
        "file_digest": b.file_digest,
        "layers": layers,
        "build_time": rfc3339(build_time),
        "lint": {
            "allow": outcome.lint_allow,
            "allowed": outcome.findings.iter().filter(|f| f.allowed.is_some()).collect::<Vec<_>>(),
        },
        "pushed": pushed.map(|p| serde_json::json!({"reference": p.reference, "digest": p.digest})),
    });
    if !outcome.platforms.is_empty() {
        doc["platforms"] = outcome
            .platforms
            .iter()
            .map(|p| {
                serde_json::json!({
                    "platform": p.platform(),
                    "base": p.base,
                    "manifest_digest": p.built.manifest_digest,
                    "config_digest": p.built.config_digest,
                    "layers": layers_json(&p.built, &p.packages),
                })
            })
            .collect();
    }
    doc
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_bases_are_checked_when_parsed() {
        let dir = Path::new("/recipes");
        for bad in ["docker://", "docker://Not A Ref", "docker://base:v1"] {
            let e = parse_base(bad, dir).unwrap_err();
            assert!(matches!(e, BaseError::Registry(_)), "{bad}: {e:?}");
            assert!(e.to_string().starts_with("base "), "{bad}: {e}");
        }
        let e = parse_base("docker://base:v1", dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            "base \"docker://base:v1\" names no registry host; write HOST[:PORT]/REPO:TAG (e.g. \
             127.0.0.1:5000/base:v1)"
        );
        let e = parse_base("oci:", dir).unwrap_err();
        assert!(matches!(e, BaseError::Ref(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            BaseRef::parse("oci:", dir).unwrap_err().to_string()
        );
        assert!(matches!(
            parse_base("docker://127.0.0.1:5000/base:v1", dir),
            Ok(BaseRef::Registry { .. })
        ));
        assert!(matches!(
            parse_base("oci:img", dir),
            Ok(BaseRef::Oci { .. })
        ));
    }

    #[test]
    fn epoch() {
        assert_eq!(parse_epoch(None).unwrap(), 0);
        assert_eq!(parse_epoch(Some("1700000000")).unwrap(), 1_700_000_000);
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999"] {
            assert!(
                matches!(parse_epoch(Some(bad)), Err(nodeimg_image::Error::Usage(_))),
                "{bad}"
            );
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn os_release_from_the_base() {
        use nodeimg_layers::MemView;
        let usr = "ID=ubuntu\nVERSION_CODENAME=noble\n";
        // The usual link from /etc to /usr/lib.
        let v = MemView::new()
            .file("/usr/lib/os-release", usr)
            .symlink("/etc/os-release", "../usr/lib/os-release");
        let m = os_release_of(&v);
        assert_eq!(m["VERSION_CODENAME"], "noble");
        // Only the fallback.
        let v = MemView::new().file("/usr/lib/os-release", usr);
        assert_eq!(os_release_of(&v)["ID"], "ubuntu");
        // /etc wins.
        let v = MemView::new()
            .file("/usr/lib/os-release", usr)
            .file("/etc/os-release", "ID=debian\n");
        assert_eq!(os_release_of(&v)["ID"], "debian");
        assert!(os_release_of(&MemView::new()).is_empty());

        // Into a recipe.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("recipe.toml"),
            "[image]\nname = \"n\"\n[vars]\nsuite = \"${os.VERSION_CODENAME}-updates\"\n[[layer]]\nname = \"a\"\nfile = [{ path = \"/etc/suite\", content = \"${suite} ${os.ID} ${arch}\" }]\n",
        )
        .unwrap();
        let v = MemView::new().file("/usr/lib/os-release", usr);
        let r = Loaded::load(&d.path().join("recipe.toml"))
            .unwrap()
            .expand("arm64", &os_release_of(&v), &BTreeMap::new())
            .unwrap();
        assert_eq!(
            r.layers[0].spec.file[0].content.as_deref(),
            Some("noble-updates ubuntu arm64")
        );
    }

    #[test]
    fn dpkg_status_packages() {
        let status = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: c\nVersion: 3\nStatus: install ok installed\n";
        let got: Vec<(String, String)> = nodeimg_deb::backend::dpkg_installed(status)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), "1.0".to_string()),
                ("c".into(), "3".into())
            ]
        );
        assert!(nodeimg_deb::backend::dpkg_installed("").is_empty());
    }

    #[test]
    fn packages_a_layer_installed_come_from_the_dpkg_status() {
        use nodeimg_layers::tree::Origin;
        use nodeimg_layers::{FileTree, ImagePath, Node};
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("recipe.toml"),
            "[image]\nname = \"n\"\n[[layer]]\nname = \"first\"\npackages = [\"a\"]\n[[layer]]\nname = \"files\"\nfile = [{ path = \"/x\", content = \"\" }]\n[[layer]]\nname = \"second\"\npackages = [\"b=2\"]\n",
        )
        .unwrap();
        let r = Loaded::load(&d.path().join("recipe.toml"))
            .unwrap()
            .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let st = |text: &str| {
            let mut t = FileTree::new();
            t.insert(
                ImagePath::new("/var/lib/dpkg/status").unwrap(),
                Node::file(text, Origin::new("packages", "packages")),
            )
            .unwrap();
            t
        };
        let a = "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n";
        let b = "Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n";
        let plans = vec![
            plan::LayerPlan {
                name: "first".into(),
                tree: st(a),
            },
            plan::LayerPlan {
                name: "files".into(),
                tree: FileTree::new(),
            },
            plan::LayerPlan {
                name: "second".into(),
                tree: st(&format!("{a}\n{b}")),
            },
        ];
        let got = layer_packages(&r, &Base::scratch(), &plans, "amd64", None);
        type Row<'a> = (&'a str, Vec<(&'a str, &'a str, &'a str)>);
        let names: Vec<Row> = got
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    v.iter()
                        .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("first", vec![("a", "1", "amd64")]),
                ("second", vec![("b", "2", "all")]),
            ]
        );
    }

    #[test]
    fn default_outputs() {
        assert_eq!(default_output("n", Format::Oci), Path::new("out/n"));
        assert_eq!(
            default_output("n", Format::OciArchive),
            Path::new("out/n.tar")
        );
        assert_eq!(default_output("n", Format::Rootfs), Path::new("out/n.tar"));
    }

    /// The layer plans of `r` on an empty base (amd64, no packages).
    fn plans_over_nothing(r: &Recipe, i: &RecipeInputs) -> Vec<crate::plan::LayerPlan> {
        plan::render(r, &nodeimg_layers::MemView::new(), "", i, "amd64", None).unwrap()
    }

    fn recipe_in(dir: &Path, input: &str) -> (Recipe, std::sync::Arc<RecipeInputs>) {
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/motd"), input).unwrap();
        std::fs::write(
            dir.join("recipe.toml"),
            "[image]\nname = \"n\"\ntag = \"v1\"\nannotations = { \"org.example.team\" = \"platform\" }\n[[layer]]\nname = \"a\"\nfile = [{ path = \"/etc/motd\", source = \"files/motd\" }]\n",
        )
        .unwrap();
        let r = Loaded::load(&dir.join("recipe.toml"))
            .unwrap()
            .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let i = std::sync::Arc::clone(&r.inputs);
        (r, i)
    }

    /// The bytes of `/etc/motd` in a packed layer.
    fn motd_in(tree: &nodeimg_layers::FileTree) -> Vec<u8> {
        let tar =
            nodeimg_image::pack::write_tar(tree, &nodeimg_layers::MemView::new(), 0, Vec::new())
                .unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path_bytes().ends_with(b"etc/motd") {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                return data;
            }
        }
        panic!("no /etc/motd in the layer");
    }

    #[test]
    fn an_input_replaced_after_it_was_opened_is_packed_as_opened() {
        let t = tempfile::tempdir().unwrap();
        let none = BTreeMap::new();
        let (rc, ic) = recipe_in(&t.path().join("clean"), "hello\n");
        let clean = recipe_digest(&rc, &ic, &none).unwrap();
        std::fs::write(t.path().join("secret"), "SECRT\n").unwrap();

        // Loading the recipe opened files/motd. Then the name becomes a
        // link of the same size to a file outside the folder (or a new file
        // renamed over it) before the layers are rendered and packed.
        for how in ["symlink", "rename"] {
            let dir = t.path().join(how);
            let (r, i) = recipe_in(&dir, "hello\n");
            let motd = dir.join("files/motd");
            if how == "symlink" {
                std::fs::remove_file(&motd).unwrap();
                std::os::unix::fs::symlink(t.path().join("secret"), &motd).unwrap();
            } else {
                std::fs::write(dir.join("files/new"), "SECRT\n").unwrap();
                std::fs::rename(dir.join("files/new"), &motd).unwrap();
            }
            assert_eq!(std::fs::read(&motd).unwrap(), b"SECRT\n");
            let plans = plans_over_nothing(&r, &i);
            assert_eq!(motd_in(&plans[0].tree), b"hello\n", "{how}");
            assert_eq!(recipe_digest(&r, &i, &none).unwrap(), clean, "{how}");
        }
    }

    #[test]
    fn an_input_that_changes_size_after_it_was_opened_stops_the_build() {
        let t = tempfile::tempdir().unwrap();
        let none = BTreeMap::new();
        for (how, now) in [
            ("truncated", &b"hel"[..]),
            ("extended", &b"hello, and more\n"[..]),
        ] {
            let dir = t.path().join(how);
            let (r, i) = recipe_in(&dir, "hello\n");
            let plans = plans_over_nothing(&r, &i);
            // The same file (same inode), rewritten in place.
            std::fs::write(dir.join("files/motd"), now).unwrap();
            let e = nodeimg_image::pack::write_tar(
                &plans[0].tree,
                &nodeimg_layers::MemView::new(),
                0,
                Vec::new(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("files/motd") && e.contains("changed size"),
                "{how}: {e}"
            );
            let e = recipe_digest(&r, &i, &none).unwrap_err().to_string();
            assert!(
                e.contains("files/motd") && e.contains("changed size"),
                "{how}: {e}"
            );
        }
    }

    #[test]
    fn recipe_digest_ignores_location_and_follows_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (ra, ia) = recipe_in(&a.path().join("one"), "hello\n");
        let (rb, ib) = recipe_in(&b.path().join("two/deeper"), "hello\n");
        let none = BTreeMap::new();
        let da = recipe_digest(&ra, &ia, &none).unwrap();
        assert!(da.starts_with("sha256:") && da.len() == 71);
        assert_eq!(da, recipe_digest(&rb, &ib, &none).unwrap());
        let (rc, ic) = recipe_in(&b.path().join("three"), "changed\n");
        assert_ne!(da, recipe_digest(&rc, &ic, &none).unwrap());
        let mut ov = BTreeMap::new();
        ov.insert("x".to_string(), "1".to_string());
        assert_ne!(da, recipe_digest(&ra, &ia, &ov).unwrap());

        let m = image_meta(&ra, "arm64", 0, &da);
        assert_eq!(m.name, "n");
        assert_eq!(m.tag, "v1");
        assert_eq!(m.architecture, "arm64");
        let keys: Vec<&str> = m.annotations.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "io.nodeimg.recipe.digest",
                "org.example.team",
                "org.opencontainers.image.created",
                "org.opencontainers.image.title",
                "org.opencontainers.image.version",
            ]
        );
        assert_eq!(
            m.annotations["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(m.annotations["org.opencontainers.image.version"], "v1");
        assert_eq!(m.annotations[RECIPE_DIGEST_ANNOTATION], da);
    }
}
