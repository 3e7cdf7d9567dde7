//! The rpm backend behind the package seam ([`Backend`] for [`Rpm`]): the
//! requests resolved against the enabled repositories of the image's
//! `.repo` files (metadata verified, see [`crate::read_repos`]), or the
//! packages a lock names taken as they are; each `.rpm` fetched by the
//! driver is checked against its repository's key (with `gpgcheck`), then
//! unpacked into the layer and registered in the image's rpm database.

use nodeimg_fetch::cachefile::CachedFile;
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_layers::{FileTree, ImagePath, LayerSpec, RootView};
use nodeimg_pkg::backend::{
    Backend, InstalledPackage, LayerInstall, LayerRequest, PackageOwner, Resolution,
};
use nodeimg_pkg::driver::{build_cause, build_err, LockRef, PackagesError};
use nodeimg_pkg::lock::{LayerKind, LockedLayer, LockedPackage, LockedRepo};

use crate::{install, repodata, resolve, version, Env, RepoConfig, Rpm};

impl Backend for Rpm {
    fn present(&self, view: &dyn RootView, _arch: &str) -> bool {
        crate::has_repos(view)
    }

    fn declared_by(&self, layer: &LayerSpec) -> bool {
        !layer.yum_repo.is_empty() || !layer.zypper_repo.is_empty()
    }

    fn open<'a>(
        &'a self,
        req: LayerRequest<'a>,
    ) -> Result<Box<dyn LayerInstall + 'a>, PackagesError> {
        let rarch = resolve::rpm_arch(req.arch).to_string();
        let repos = crate::enabled_repos(req.view, &rarch)?;
        let env = req.env;
        Ok(Box::new(RpmLayer {
            env: Env {
                cache: env.cache(),
                scratch: env.scratch(),
                now: env.now(),
                meter: env.meter(),
                base: env.base(),
            },
            view: req.view,
            requests: req.requests,
            rarch,
            layer: req.layer,
            repos,
            db: None,
            keyrings: Vec::new(),
            planned: Vec::new(),
            pkgs: Vec::new(),
        }))
    }

    fn installs(&self) -> &'static str {
        "rpm packages (the image has yum or zypper repositories and no apt source)"
    }

    fn label(&self, p: &LockedPackage) -> Result<String, nodeimg_pkg::backend::LabelError> {
        let evr =
            version::Evr::parse(&p.version).map_err(nodeimg_pkg::backend::LabelError::version)?;
        Ok(format!("{}-{}.{}", p.name, evr, p.architecture))
    }

    fn layer_packages(
        &self,
        _below: &dyn RootView,
        _above: &dyn RootView,
        installed: &[LockedPackage],
    ) -> Vec<InstalledPackage> {
        let mut out: Vec<InstalledPackage> = installed
            .iter()
            .map(|p| InstalledPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn pin_version(&self, request: &str, package: &str) -> Option<String> {
        if !crate::names_pin(request, package) {
            return None;
        }
        let evr = version::Evr::parse(request.get(package.len() + 1..)?).ok()?;
        // Epochs are not compared: a pin without one matches any.
        Some(version::Evr { epoch: 0, ..evr }.to_string())
    }

    fn version_lt(&self, a: &str, b: &str) -> Option<bool> {
        let (a, b) = (version::Evr::parse(a).ok()?, version::Evr::parse(b).ok()?);
        Some(a.compare(&b).is_lt())
    }

    fn owners(
        &self,
        view: &dyn RootView,
        path: &ImagePath,
    ) -> Result<Vec<PackageOwner>, PackagesError> {
        if view.list(install::DBPATH).is_empty() {
            return Ok(Vec::new());
        }
        // The build host's rpm reads a copy of the database, sandboxed.
        let db = install::materialise(view).map_err(|e| build_cause("rpm database", e))?;
        let installed = db
            .installed(&install::Runner::default())
            .map_err(|e| build_cause("rpm database", e))?;
        Ok(installed
            .into_iter()
            .filter(|p| {
                p.files
                    .iter()
                    .any(|f| nodeimg_pkg::backend::lists(view, f, path))
            })
            .map(|p| PackageOwner {
                version: crate::full_evr(&p.evr),
                name: p.name,
                architecture: p.arch,
                repository: None,
                database: "rpm".to_string(),
            })
            .collect())
    }
}

/// One rpm layer being installed.
struct RpmLayer<'a> {
    env: Env<'a>,
    view: &'a dyn RootView,
    requests: &'a [String],
    /// rpm's spelling.
    rarch: String,
    layer: &'a str,
    repos: Vec<RepoConfig>,
    /// The image's database and the rpm that writes it, once opened.
    db: Option<(install::DbRoot, install::Runner)>,
    /// Each repository's keys, when resolving with signatures checked.
    keyrings: Vec<Option<Keyring>>,
    /// The packages to install, in order, with their URLs.
    planned: Vec<(resolve::Planned, String)>,
    /// Those fetched so far.
    pkgs: Vec<install::Package>,
}

impl RpmLayer<'_> {
    /// Opens the image's rpm database; the packages it records.
    fn open_db(&mut self) -> Result<Vec<repodata::RpmPackage>, PackagesError> {
        let (db, runner, installed) = crate::open_db(&self.env, self.view, self.layer)?;
        self.db = Some((db, runner));
        Ok(installed)
    }
}

impl LayerInstall for RpmLayer<'_> {
    fn repositories_diff(&self, ll: &LockedLayer) -> (&'static str, Vec<String>) {
        let now: Vec<LockedRepo> = self.repos.iter().map(crate::locked_repo).collect();
        (
            "rpm repositories",
            nodeimg_pkg::lock::diff_repos(&ll.repos, &now),
        )
    }

    fn below_changed(&mut self, ll: &LockedLayer) -> Result<Option<&'static str>, PackagesError> {
        Ok((crate::installed_digest(&self.open_db()?) != ll.rpmdb)
            .then_some("rpm packages installed in the image below it"))
    }

    fn take_locked(&mut self, ll: &LockedLayer, by: &LockRef<'_>) -> Result<(), PackagesError> {
        let lf = by.file.display();
        for p in ll.in_order() {
            let evr =
                crate::locked_evr(p).map_err(|e| build_cause(format!("{lf}: {}", p.name), e))?;
            let package = repodata::RpmPackage {
                name: p.name.clone(),
                arch: p.architecture.clone(),
                evr,
                sha256: p.sha256.clone(),
                size: p.size,
                href: p.url.clone(),
                ..Default::default()
            };
            let planned = resolve::Planned {
                repository: p.source.clone(),
                package,
            };
            self.planned.push((planned, p.url.clone()));
        }
        Ok(())
    }

    fn resolve(&mut self) -> Result<Resolution, PackagesError> {
        resolve_layer(self)
    }

    fn fetched(&mut self, i: usize, rpm: CachedFile) -> Result<(), PackagesError> {
        let Some((planned, url)) = self.planned.get(i).cloned() else {
            return Err(build_err("resolving packages", format!("no package {i}")));
        };
        if let Some(r) = self.repos.iter().position(|r| r.id == planned.repository) {
            if let Some(Some(keys)) = self.keyrings.get(r).filter(|_| self.repos[r].gpgcheck) {
                let covered = crate::verify_package(&rpm, &url, keys, self.env.now)?;
                if !covered && !self.repos[r].repo_gpgcheck {
                    // Built by rpm before 4.14: the header signature does not
                    // reach the payload, which only primary.xml's SHA256
                    // vouches for, and that is unsigned here.
                    self.env.meter.suspend(|| eprintln!(
                        "warning: layer {:?}: {url}: the package has no payload digest, so its signature covers the header only; set repo-gpgcheck on [{}] to have the payload's SHA256 signed",
                        self.layer, self.repos[r].id
                    ));
                }
            }
        }
        self.pkgs.push(install::Package { rpm, url, planned });
        Ok(())
    }

    fn unit_files(&self, i: usize) -> Result<Vec<String>, PackagesError> {
        let Some(p) = self.pkgs.get(i) else {
            return Err(build_err("listing unit files", format!("no package {i}")));
        };
        let rpm = crate::rpmfile::RpmFile::from_reader(p.rpm.reader(), &p.url)
            .map_err(|e| build_cause("package", e))?;
        let files = rpm.files().map_err(|e| build_cause("package", e))?;
        Ok(files
            .into_iter()
            .filter(|f| nodeimg_layers::systemd::unit_file_name(&f.path).is_some())
            .map(|f| f.path)
            .collect())
    }

    fn install(self: Box<Self>) -> Result<(FileTree, Vec<String>), PackagesError> {
        let Some((db, runner)) = &self.db else {
            return Err(build_err("rpm database", "the rpm database was not opened"));
        };
        crate::unpack_and_register(&self.env, self.view, db, runner, &self.pkgs, self.layer)
    }
}

/// Resolves the layer's requests against its repositories' metadata: the
/// packages to fetch, and the layer as a lock records it.
fn resolve_layer(l: &mut RpmLayer<'_>) -> Result<Resolution, PackagesError> {
    let installed = l.open_db()?;
    let mut indexes = Vec::new();
    let mut read = Vec::new();
    for r in &l.repos {
        let keys = if r.gpgcheck || r.repo_gpgcheck {
            Some(crate::keyring(l.view, l.env.cache, r)?)
        } else {
            None
        };
        let (packages, index) = crate::read_metadata(&l.env, r, keys.as_ref())?;
        indexes.push(resolve::Repository {
            id: r.id.clone(),
            packages,
        });
        read.push(index);
        l.keyrings.push(keys);
    }
    let requests = l.requests;
    let planned = resolve::resolve(&installed, &indexes, &l.rarch, requests)
        .map_err(|e| crate::recipe_err(requests, &e))?;
    let mut locked = Vec::with_capacity(planned.len());
    for (order, p) in planned.into_iter().enumerate() {
        let Some(repo) = l.repos.iter().find(|r| r.id == p.repository) else {
            return Err(build_err(
                "resolving packages",
                format!("unknown repository {}", p.repository),
            ));
        };
        let url = crate::join(&repo.baseurl, &p.package.href);
        let name = &p.package.name;
        locked.push(LockedPackage {
            name: name.clone(),
            version: crate::full_evr(&p.package.evr),
            architecture: p.package.arch.clone(),
            multi_arch: String::new(),
            auto: !requests
                .iter()
                .any(|r| r == name || crate::names_pin(r, name)),
            order,
            source: p.repository.clone(),
            url: url.clone(),
            size: p.package.size,
            sha256: p.package.sha256.to_ascii_lowercase(),
            units: Vec::new(),
        });
        l.planned.push((p, url));
    }
    Ok(Resolution {
        layer: LockedLayer {
            name: l.layer.to_string(),
            kind: LayerKind::Rpm,
            requests: requests.to_vec(),
            dpkg_status: String::new(),
            rpmdb: crate::installed_digest(&installed),
            sources: Vec::new(),
            repos: l.repos.iter().map(crate::locked_repo).collect(),
            packages: locked,
        },
        indexes: read,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_layers::MemView;

    fn locked(name: &str, version: &str, arch: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: arch.into(),
            multi_arch: String::new(),
            auto: false,
            order: 0,
            source: "r".into(),
            url: "https://repo.invalid/p.rpm".into(),
            size: 1,
            sha256: "0".repeat(64),
            units: Vec::new(),
        }
    }

    #[test]
    fn a_layer_lists_the_packages_it_installed() {
        let (below, above) = (MemView::new(), MemView::new());
        let installed = [
            locked("docker-ce", "3:19.03.11-3.el7", "x86_64"),
            locked("container-selinux", "2:2.119.2-1.911c772.el7_8", "noarch"),
        ];
        let got: Vec<(String, String, String)> = Rpm
            .layer_packages(&below, &above, &installed)
            .into_iter()
            .map(|p| (p.name, p.version, p.architecture))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "container-selinux".into(),
                    "2:2.119.2-1.911c772.el7_8".into(),
                    "noarch".into()
                ),
                (
                    "docker-ce".into(),
                    "3:19.03.11-3.el7".into(),
                    "x86_64".into()
                ),
            ]
        );
        // Nothing installed, nothing listed (whatever the views hold).
        assert!(Rpm.layer_packages(&below, &above, &[]).is_empty());
    }

    #[test]
    fn pins_and_order() {
        assert_eq!(
            Rpm.pin_version("docker-ce-3:18.09.1-3.el7", "docker-ce")
                .as_deref(),
            Some("18.09.1-3.el7")
        );
        assert_eq!(Rpm.pin_version("docker-ce-cli-18.09.1", "docker-ce"), None);
        assert_eq!(Rpm.pin_version("docker-ce", "docker-ce"), None);
        assert_eq!(Rpm.version_lt("1.0.0~rc6", "1.0.0~rc7"), Some(true));
        assert_eq!(Rpm.version_lt("18.09.2", "18.09.1"), Some(false));
        assert_eq!(
            Rpm.label(&locked("a", "0:1-1", "noarch")).unwrap(),
            "a-1-1.noarch"
        );
    }
}
