//! The `packages` item of a layer: the package backends the build knows,
//! in the order [`nodeimg_pkg::backend::detect`] tries them (Debian, then
//! rpm), and the glue between the build and the generic driver
//! ([`nodeimg_pkg::driver::install_layer`]). Adding a backend is one crate
//! implementing [`Backend`] and one entry in [`BACKENDS`] and [`LOCK_RULES`].

use std::path::Path;

use nodeimg_layers::{FileTree, RootView};
use nodeimg_pkg::backend::{Backend, LayerRequest};

use crate::error::{Error, Result};

pub use nodeimg_deb::SOURCES_DIR;
pub use nodeimg_fetch::default_cache_dir;
pub use nodeimg_pkg::driver::{build_err, fetch_shown, report_damaged, PackagesError};
pub use nodeimg_pkg::env::{Missing, PackageEnv};

/// The package backends, in the order a layer's backend is chosen.
pub const BACKENDS: &[&dyn Backend] = &[&nodeimg_deb::Deb, &nodeimg_rpm::Rpm];

/// The rules of every package backend for the packages a lock names.
pub const LOCK_RULES: &[&dyn nodeimg_pkg::lock::PackageRules] =
    &[&nodeimg_deb::Deb, &nodeimg_rpm::Rpm];

/// A package environment with the cache in `cache_dir` and the
/// `--mirror FROM=TO` pairs (see [`PackageEnv::new`]).
pub(crate) fn new_env(cache_dir: &Path, mirrors: &[String]) -> Result<PackageEnv> {
    PackageEnv::new(cache_dir, mirrors).map_err(|e| match e {
        nodeimg_image::Error::Usage(m) => Error::Usage(m),
        e => Error::Image(e),
    })
}

/// Debian's name for an OCI architecture (`arm` is `armhf`, `386` is
/// `i386`, ...).
pub(crate) fn debian_arch(oci: &str) -> &str {
    nodeimg_pkg::arch::debian(oci)
}

/// Installs `requests` over `view` (the image below plus the layer's own
/// items) for the OCI architecture `arch` with the backend the image
/// calls for; see [`nodeimg_pkg::driver::install_layer`].
pub fn install_layer(
    env: &PackageEnv,
    view: &dyn RootView,
    view_id: Option<&str>,
    requests: &[String],
    arch: &str,
    layer: &str,
) -> Result<FileTree, PackagesError> {
    nodeimg_pkg::driver::install_layer(
        BACKENDS,
        LayerRequest {
            env,
            view,
            requests,
            arch,
            layer,
            view_id,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_fetch::openpgp::Keyring;

    #[test]
    fn architectures() {
        assert_eq!(debian_arch("amd64"), "amd64");
        assert_eq!(debian_arch("arm64"), "arm64");
        assert_eq!(debian_arch("arm"), "armhf");
        assert_eq!(debian_arch("ppc64le"), "ppc64el");
        assert_eq!(debian_arch("386"), "i386");
    }

    #[test]
    fn a_mirror_that_re_signs_is_verified_against_its_own_key() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/keys");
        let docker = keys.join("docker.asc");
        let kubic = keys.join("kubic-libcontainers.asc");
        let cache = tempfile::tempdir().unwrap();
        let env = new_env(
            cache.path(),
            &[
                format!(
                    "https://download.example/linux/ubuntu=http://127.0.0.1:9/docker,key={}",
                    docker.display()
                ),
                "http://plain.example/debian=http://127.0.0.1:9/debian".to_string(),
            ],
        )
        .unwrap();
        let source = Keyring::from_bytes(&std::fs::read(&kubic).unwrap(), "kubic").unwrap();
        let through = env.release_keyring(
            "https://download.example/linux/ubuntu/dists/focal/",
            &source,
        );
        assert_eq!(
            through.fingerprints(),
            ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]
        );
        // Not re-signed, or not mirrored: the source's own key.
        for dir in [
            "http://plain.example/debian/dists/bookworm/",
            "https://download.example/linux/debian/dists/bookworm/",
        ] {
            assert_eq!(
                env.release_keyring(dir, &source).fingerprints(),
                source.fingerprints()
            );
        }

        // A key file that is missing or no key stops the build before any download.
        let missing = cache.path().join("missing.asc");
        let e = new_env(
            cache.path(),
            &[format!(
                "http://a.example=http://b.example,key={}",
                missing.display()
            )],
        )
        .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        let m = e.to_string();
        assert!(m.contains("missing.asc"), "{m}");
        assert!(m.contains("http://a.example=http://b.example"), "{m}");
        let garbage = cache.path().join("garbage.asc");
        std::fs::write(&garbage, "not a key\n").unwrap();
        let e = new_env(
            cache.path(),
            &[format!(
                "http://a.example=http://b.example,key={}",
                garbage.display()
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("garbage.asc"), "{e}");
    }
}
