//! `nodeimg sign`, `nodeimg verify`, `nodeimg keygen`, and what `build
//! --push --sign-key` attaches to the image it pushed (a signature and the
//! build's SLSA provenance).

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use nodeimg::build;
use nodeimg_sign::intoto::Predicate;
use nodeimg_sign::keys::{self, PrivateKey};
use nodeimg_sign::remote::{Attached, Target, Verification};
use nodeimg_sign::slsa::{self, BuildFacts, Material};
use nodeimg_sign::SignError;
use serde_json::{json, Value};

/// The exit code of `verify` when the registry could not be asked.
pub const REGISTRY_UNREACHABLE: u8 = 3;

/// `nodeimg sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image: [docker://]HOST[:PORT]/REPO:TAG (or @sha256:...). A tag
    /// is resolved once; the digest it names is what is signed.
    pub reference: String,
    /// The private key: PEM PKCS#8 P-256 (openssl genpkey), or cosign's
    /// encrypted format (nodeimg keygen, cosign generate-key-pair), whose
    /// password is read from $NODEIMG_KEY_PASSWORD, else $COSIGN_PASSWORD.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Speak plain HTTP to this registry (loopback addresses only); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Print one JSON object (the image's digest, where the signature went,
    /// how many the tag holds).
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nodeimg verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: [docker://]HOST[:PORT]/REPO:TAG (or @sha256:...).
    pub reference: String,
    /// The public key (PEM, -----BEGIN PUBLIC KEY-----): cosign.pub, or
    /// `openssl pkey -pubout` of the private key.
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Check the attestations too (DSSE envelopes under the .att tag): at
    /// least one must verify with the key and be about this image.
    #[arg(long)]
    pub attestations: bool,
    /// Speak plain HTTP to this registry (loopback addresses only); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Print one JSON object: verified, digest, and every signature and
    /// attestation with its verdict.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nodeimg keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write PREFIX.key (the private key, encrypted, mode 0600) and
    /// PREFIX.pub (the public key).
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_key_prefix: PathBuf,
    /// Replace existing files of that name.
    #[arg(long)]
    pub force: bool,
}

fn registry_options(insecure: Vec<String>, quiet: bool) -> nodeimg_registry::RegistryOptions {
    nodeimg_registry::RegistryOptions {
        insecure,
        cache_dir: None,
        meter: crate::progress::stderr(quiet),
        offline: false,
    }
}

/// Read the private key `path`, with the password from the environment
/// when it is encrypted.
pub fn private_key(path: &Path) -> Result<PrivateKey, SignError> {
    let password = keys::password_from_env();
    keys::read_private(path, password.as_ref().map(|p| p.as_slice()))
}

/// `--sign-key KEY` of build: the key, read before anything is built.
pub fn key_arg(path: Option<&Path>) -> Result<Option<PrivateKey>, SignError> {
    path.map(private_key).transpose()
}

pub fn run_sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let key = private_key(&a.key)?;
    let opts = registry_options(a.insecure_registries, a.quiet);
    let target = Target::open(&a.reference, &opts, true)?;
    let attached = target.sign(&key)?;
    opts.meter.finish();
    let mut out = std::io::stdout().lock();
    if a.json {
        let doc = json!({
            "reference": target.identity,
            "digest": target.manifest.digest,
            "signature": attached,
        });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(out, "{}", target.manifest.digest)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = keys::read_public(&a.key)?;
    let opts = registry_options(a.insecure_registries, a.quiet);
    let checked =
        Target::open(&a.reference, &opts, false).and_then(|t| t.verify(&key, a.attestations));
    opts.meter.finish();
    let v = match checked {
        Ok(v) => v,
        Err(e) if e.is_registry_failure() => {
            eprintln!(
                "{}",
                crate::cli::error_text(&anyhow::Error::new(e).context(format!(
                    "could not check {}: the registry did not answer as asked",
                    a.reference
                )))
            );
            return Ok(ExitCode::from(REGISTRY_UNREACHABLE));
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        print_verification(&v, &mut out)?;
    }
    if v.verified {
        return Ok(ExitCode::SUCCESS);
    }
    let what = if !v.signatures.iter().any(|c| c.valid) {
        "no valid signature by this key"
    } else {
        "no valid attestation by this key"
    };
    eprintln!(
        "error: {}@{}: {what}; sign it (nodeimg sign, or build --push --sign-key) or check the key",
        v.reference, v.digest
    );
    Ok(ExitCode::from(1))
}

fn print_verification(v: &Verification, out: &mut impl Write) -> std::io::Result<()> {
    let verdict = if v.verified {
        "verified"
    } else {
        "NOT verified"
    };
    writeln!(out, "{}@{}: {verdict}", v.reference, v.digest)?;
    if v.signatures.is_empty() {
        writeln!(out, "  no signatures")?;
    }
    for c in &v.signatures {
        match (&c.identity, &c.error) {
            (Some(i), _) => writeln!(out, "  signature {}: valid, for {i}", c.layer)?,
            (None, e) => writeln!(
                out,
                "  signature {}: invalid: {}",
                c.layer,
                e.as_deref().unwrap_or("?")
            )?,
        }
    }
    if let Some(atts) = &v.attestations {
        if atts.is_empty() {
            writeln!(out, "  no attestations")?;
        }
        for c in atts {
            let t = c.predicate_type.as_deref().unwrap_or("?");
            match &c.error {
                None => writeln!(out, "  attestation {}: valid, {t}", c.layer)?,
                Some(e) => writeln!(out, "  attestation {}: invalid ({t}): {e}", c.layer)?,
            }
        }
    }
    Ok(())
}

pub fn run_keygen(a: KeygenArgs) -> anyhow::Result<ExitCode> {
    let password = keys::password_from_env().ok_or_else(|| {
        SignError::Usage(format!(
            "set {} (or {}) to the password that encrypts the private key",
            keys::PASSWORD_ENV,
            keys::COSIGN_PASSWORD_ENV
        ))
    })?;
    let prefix = a.output_key_prefix.display().to_string();
    let private = PathBuf::from(format!("{prefix}.key"));
    let public = PathBuf::from(format!("{prefix}.pub"));
    if !a.force {
        for p in [&private, &public] {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(SignError::Usage(format!(
                    "{} exists; give another --output-key-prefix, or --force to replace it",
                    p.display()
                ))
                .into());
            }
        }
    }
    let pair = keys::generate(&password).map_err(SignError::Keygen)?;
    write_pair(
        &private,
        pair.private_pem.as_bytes(),
        &public,
        pair.public_pem.as_bytes(),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", private.display())?;
    writeln!(out, "{}", public.display())?;
    Ok(ExitCode::SUCCESS)
}

/// A temporary file beside `path` holding `bytes`, mode `mode`, synced.
fn staged(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<tempfile::NamedTempFile> {
    use anyhow::Context as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut f = tempfile::Builder::new()
        .prefix(".keygen-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(f)
}

/// Write both keys, or neither: each to a temporary file first, then both
/// renamed into place (the private key removed again if the public key
/// cannot be).
fn write_pair(private: &Path, key: &[u8], public: &Path, pub_pem: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let k = staged(private, key, 0o600)?;
    let p = staged(public, pub_pem, 0o644)?;
    k.persist(private)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", private.display()))?;
    if let Err(e) = p.persist(public) {
        let _ = std::fs::remove_file(private);
        return Err(e.error).with_context(|| format!("writing {}", public.display()));
    }
    Ok(())
}

/// What a build knows about itself, for its provenance: the recipe, the
/// base and its layers, the lock and the packages it pins (or, without a
/// lock, the packages installed, without digests), the options that shape
/// the image.
pub fn build_facts(
    opts: &build::BuildOptions,
    outcome: &build::Outcome,
    push: &str,
) -> anyhow::Result<BuildFacts> {
    let recipe = Material::sha256(
        "recipe",
        Some(opts.recipe.display().to_string()),
        &outcome.recipe_digest,
    );
    let bases = if outcome.platforms.is_empty() {
        base_materials(&outcome.base, &outcome.built, "")
    } else {
        outcome
            .platforms
            .iter()
            .flat_map(|p| base_materials(&p.base, &p.built, &format!(" {}", p.platform())))
            .collect()
    };
    let (locks, packages) = locked_packages(opts, outcome)?;
    let epoch = build::parse_epoch(opts.source_date_epoch.as_deref())?;
    let format = match opts.format {
        nodeimg_image::output::Format::Oci => "oci",
        nodeimg_image::output::Format::OciArchive => "oci-archive",
        nodeimg_image::output::Format::Rootfs => "rootfs",
        nodeimg_image::output::Format::DockerArchive => "docker-archive",
    };
    let compression = match opts.compression {
        nodeimg_image::output::Compression::Gzip => "gzip",
        nodeimg_image::output::Compression::Zstd => "zstd",
        nodeimg_image::output::Compression::None => "none",
    };
    let parameters = [
        ("base", json!(outcome.base)),
        ("compression", json!(compression)),
        ("format", json!(format)),
        ("image", json!(format!("{}:{}", outcome.name, outcome.tag))),
        (
            "push",
            json!(push.strip_prefix("docker://").unwrap_or(push)),
        ),
        ("vars", json!(opts.vars)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain((!outcome.platforms.is_empty()).then(|| {
        let names: Vec<String> = outcome.platforms.iter().map(|p| p.platform()).collect();
        ("platforms".to_string(), json!(names))
    }))
    .collect();
    Ok(BuildFacts {
        version: env!("CARGO_PKG_VERSION").to_string(),
        recipe,
        base: bases,
        locks,
        packages,
        parameters,
        offline: opts.packages.offline,
        source_date_epoch: epoch,
    })
}

/// The base as named (with its digest when the name pins one) and each of
/// its layers, their names ending in `suffix` (a platform's).
fn base_materials(base: &str, built: &nodeimg_image::output::Built, suffix: &str) -> Vec<Material> {
    let name = format!("base{suffix}");
    let mut first = Material {
        name: name.clone(),
        uri: Some(base.to_string()),
        ..Material::default()
    };
    if let Some((_, d)) = base
        .rsplit_once('@')
        .filter(|(_, d)| d.starts_with("sha256:"))
    {
        first = Material::sha256(&name, first.uri, d);
    }
    let mut bases = vec![first];
    for (i, l) in built
        .layers
        .iter()
        .filter(|l| l.from_base || l.name == "base")
        .enumerate()
    {
        let mut m = Material::sha256(&format!("base layer {i}{suffix}"), None, &l.digest);
        m.annotations
            .insert("mediaType".into(), json!(l.media_type));
        m.annotations.insert("diffID".into(), json!(l.diff_id));
        bases.push(m);
    }
    bases
}

/// The locks the build followed (one per platform of several) and the
/// packages they pin, or no lock and the packages the build installed.
fn locked_packages(
    opts: &build::BuildOptions,
    outcome: &build::Outcome,
) -> anyhow::Result<(Vec<Material>, Vec<Material>)> {
    if outcome.platforms.is_empty() {
        let path = build::lock_file(&opts.recipe, None);
        let (lock, packages) = locked_packages_of(opts, &path, &outcome.packages)?;
        return Ok((lock.into_iter().collect(), packages));
    }
    let (mut locks, mut packages) = (Vec::new(), Vec::new());
    for p in &outcome.platforms {
        let platform = build::Platform {
            arch: &p.arch,
            multi: true,
        };
        let path = build::lock_file(&opts.recipe, Some(platform));
        let (lock, pkgs) = locked_packages_of(opts, &path, &p.packages)?;
        locks.extend(lock);
        packages.extend(pkgs);
    }
    Ok((locks, packages))
}

/// The lock at `path` the build followed and the packages it pins, or no
/// lock and the packages the build installed (`installed`).
fn locked_packages_of(
    opts: &build::BuildOptions,
    path: &std::path::Path,
    installed: &std::collections::BTreeMap<String, Vec<build::InstalledPackage>>,
) -> anyhow::Result<(Option<Material>, Vec<Material>)> {
    let path = path.to_path_buf();
    // Read once: the bytes hashed are the bytes parsed.
    let bytes = if opts.packages.lock == build::LockUse::Ignore {
        None
    } else {
        match nodeimg_recipe::inputs::read_regular_file(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())))
            }
        }
    };
    let lock = match &bytes {
        Some(b) => Some(nodeimg_pkg::lock::Lock::parse(
            &String::from_utf8_lossy(b),
            &path,
            nodeimg::packages::LOCK_RULES,
        )?),
        None => None,
    };
    let Some(lock) = lock else {
        let mut packages = Vec::new();
        for (layer, list) in installed {
            for p in list {
                let mut m = Material {
                    name: p.name.clone(),
                    uri: Some(format!(
                        "pkg:generic/{}@{}?arch={}",
                        p.name, p.version, p.architecture
                    )),
                    ..Material::default()
                };
                annotate(&mut m, &p.version, &p.architecture, layer);
                packages.push(m);
            }
        }
        return Ok((None, packages));
    };
    let lock_material = Material::sha256(
        "lock",
        Some(path.display().to_string()),
        &nodeimg_sign::sha256_digest(bytes.as_deref().unwrap_or_default()),
    );
    let mut packages = Vec::new();
    for l in &lock.layers {
        for p in &l.packages {
            let mut m = Material::sha256(&p.name, Some(p.url.clone()), &p.sha256);
            annotate(&mut m, &p.version, &p.architecture, &l.name);
            packages.push(m);
        }
    }
    Ok((Some(lock_material), packages))
}

fn annotate(m: &mut Material, version: &str, arch: &str, layer: &str) {
    m.annotations.insert("version".into(), json!(version));
    m.annotations.insert("architecture".into(), json!(arch));
    m.annotations.insert("layer".into(), json!(layer));
}

/// What `build --push --sign-key` attaches: the signature of the pushed
/// image, its provenance and the SBOMs the build wrote (`sboms`).
pub fn attach_build(
    key: &PrivateKey,
    dest: &str,
    pushed: &nodeimg_registry::PushReport,
    (opts, outcome): (&build::BuildOptions, &build::Outcome),
    registry: &nodeimg_registry::RegistryOptions,
    sboms: &[Predicate],
) -> anyhow::Result<Value> {
    let facts = build_facts(opts, outcome, dest)?;
    attach_after_push(key, dest, &pushed.digest, registry, &facts, sboms)
}

/// Sign the image a build pushed to `dest` (as `digest`) with `key`, and
/// attach the build's provenance and every other predicate in `extra`
/// (an SBOM, ...); what was attached, for the build's metadata.
pub fn attach_after_push(
    key: &PrivateKey,
    dest: &str,
    digest: &str,
    registry: &nodeimg_registry::RegistryOptions,
    facts: &BuildFacts,
    extra: &[Predicate],
) -> anyhow::Result<Value> {
    let target = Target::pushed(dest, digest, registry)?;
    let signature = target.sign(key)?;
    let mut attestations: Vec<Attached> = Vec::new();
    for p in std::iter::once(&slsa::provenance(facts)).chain(extra) {
        attestations.push(target.attest(key, p)?);
    }
    Ok(json!({
        "signature": signature,
        "attestations": attestations,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cli::{exit_code, Cli, Command};
    use clap::Parser as _;

    #[test]
    fn sign_key_goes_with_push_only() {
        let e =
            Cli::try_parse_from(["nodeimg", "build", "r.toml", "--sign-key", "k.pem"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--push"), "{e}");
        let c = Cli::try_parse_from([
            "nodeimg",
            "build",
            "r.toml",
            "--push",
            "127.0.0.1:1/x:y",
            "--sign-key",
            "k.pem",
        ])
        .unwrap();
        let Command::Build(b) = c.command else {
            panic!("not build")
        };
        assert_eq!(b.sign_key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn sign_verify_and_keygen_parse() {
        let c = Cli::try_parse_from([
            "nodeimg",
            "verify",
            "127.0.0.1:1/x:y",
            "--key",
            "k.pub",
            "--attestations",
            "--json",
        ])
        .unwrap();
        let Command::Verify(v) = c.command else {
            panic!("not verify")
        };
        assert!(v.attestations && v.json);
        let c = Cli::try_parse_from(["nodeimg", "keygen"]).unwrap();
        let Command::Keygen(k) = c.command else {
            panic!("not keygen")
        };
        assert_eq!(k.output_key_prefix, PathBuf::from("cosign"));
        // sign needs a key.
        assert!(Cli::try_parse_from(["nodeimg", "sign", "127.0.0.1:1/x:y"]).is_err());
    }

    #[test]
    fn key_errors_exit_2_before_anything_is_done() {
        let d = tempfile::tempdir().unwrap();
        let e = anyhow::Error::new(private_key(&d.path().join("absent.pem")).unwrap_err());
        assert_eq!(exit_code(&e), 2);
        assert!(e.to_string().contains("absent.pem"), "{e}");
        std::fs::write(d.path().join("k.pem"), "not a key").unwrap();
        let e = anyhow::Error::new(private_key(&d.path().join("k.pem")).unwrap_err());
        assert_eq!(exit_code(&e), 2);
        assert!(e.to_string().contains("no PEM block"), "{e}");
    }

    #[test]
    fn key_pairs_are_written_together_and_the_private_key_is_private() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = (d.path().join("a.key"), d.path().join("a.pub"));
        write_pair(&k, b"secret", &p, b"public").unwrap();
        assert_eq!(std::fs::read(&k).unwrap(), b"secret");
        assert_eq!(std::fs::read(&p).unwrap(), b"public");
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The public key cannot be written (a folder is in the way): no
        // private key is left either.
        let (k2, p2) = (d.path().join("b.key"), d.path().join("b.pub"));
        std::fs::create_dir(&p2).unwrap();
        std::fs::write(p2.join("x"), "").unwrap();
        assert!(write_pair(&k2, b"secret", &p2, b"public").is_err());
        assert!(!k2.exists());
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "no temporary file left: {names:?}");
    }
}
