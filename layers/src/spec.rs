//! One `[[layer]]` of a recipe: its items, and the order they render in.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, NodeKind, Origin};
use crate::view::{Context, Overlay, RootView};
use crate::{apt, containerd, crio, docker, files, kubelet, modules, rpmrepo, sysctl, systemd};

/// A recipe layer: a name and any number of items. Each layer becomes
/// exactly one image layer.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LayerSpec {
    /// Unique name of the layer; shown in the image history and by `inspect`.
    pub name: String,
    /// Kernel modules to load at boot (`/etc/modules-load.d/<file>.conf`).
    pub modules: Option<modules::Modules>,
    /// Kernel parameters (`/etc/sysctl.d/<file>.conf`).
    pub sysctl: Option<sysctl::Sysctl>,
    /// apt repositories (deb822 `.sources` files and their keyrings).
    #[serde(default)]
    pub apt_source: Vec<apt::AptSource>,
    /// yum repositories (`/etc/yum.repos.d/<file>.repo`).
    #[serde(default)]
    pub yum_repo: Vec<rpmrepo::RpmRepo>,
    /// zypper repositories (`/etc/zypp/repos.d/<file>.repo`).
    #[serde(default)]
    pub zypper_repo: Vec<rpmrepo::RpmRepo>,
    /// Docker daemon settings (`/etc/docker/daemon.json`), keys verbatim.
    pub docker: Option<docker::Docker>,
    /// containerd settings (`/etc/containerd/config.toml`).
    pub containerd: Option<containerd::Containerd>,
    /// CRI-O drop-in (`/etc/crio/crio.conf.d/<file>.conf`).
    pub crio: Option<crio::Crio>,
    /// kubelet settings (`/var/lib/kubelet/config.yaml`, `/etc/crictl.yaml`, `/etc/default/kubelet`).
    pub kubelet: Option<kubelet::Kubelet>,
    /// systemd units, drop-ins and enablement.
    pub systemd: Option<systemd::Systemd>,
    /// Plain files.
    #[serde(default)]
    pub file: Vec<files::File>,
    /// Directories.
    #[serde(default)]
    pub dir: Vec<files::Dir>,
    /// Symbolic links.
    #[serde(default)]
    pub symlink: Vec<files::Symlink>,
    /// Paths to remove from the layers below (OCI whiteouts).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Debian packages to install from the image's apt sources (every
    /// `/etc/apt/sources.list.d/*.sources` of the image below and of this
    /// layer, each verified against its own `Signed-By` keyring): `name`
    /// (the highest version) or `name=version` (an exact pin). Installed by
    /// the builder after the layer's other items and before its systemd
    /// units and enablement, so `systemd.enable` may name a unit a package
    /// ships. Maintainer scripts are not run; see the build's report.
    #[serde(default)]
    pub packages: Vec<String>,
}

impl LayerSpec {
    /// Render every item of the layer into one tree.
    ///
    /// Order: plain files, directories and links; repositories; runtime and
    /// kernel configuration; systemd units and drop-ins; systemd enablement
    /// (which sees everything rendered before it, over `ctx.view`); removals.
    /// Two items writing the same path are an error naming both.
    /// `packages` is not rendered here (it needs the network); see
    /// [`LayerSpec::render_with`].
    pub fn render(&self, ctx: &Context) -> Result<FileTree> {
        self.render_with(ctx, |_, _| Ok(FileTree::new()))
    }

    /// [`LayerSpec::render`], with `packages` merged into the layer's tree
    /// right before its systemd units and enablement: `packages` is given
    /// the image as it stands (`ctx.view` under everything rendered so
    /// far) and the tree of the layer's items rendered before them, and
    /// returns the packages' tree. Its errors pass through.
    pub fn render_with<E: From<Error>>(
        &self,
        ctx: &Context,
        packages: impl FnOnce(&dyn RootView, &FileTree) -> std::result::Result<FileTree, E>,
    ) -> std::result::Result<FileTree, E> {
        self.render_parts(ctx, packages, &systemd::Nowhere)
    }

    /// [`LayerSpec::render`] for a check that installs no packages: the
    /// enablement of a unit the image lacks is left to the packages not
    /// installed (in this layer or below) when `elsewhere` says so.
    pub fn render_without_packages(
        &self,
        ctx: &Context,
        elsewhere: &dyn systemd::Elsewhere,
    ) -> Result<FileTree> {
        self.render_parts(ctx, |_, _| Ok(FileTree::new()), elsewhere)
    }

    fn render_parts<E: From<Error>>(
        &self,
        ctx: &Context,
        packages: impl FnOnce(&dyn RootView, &FileTree) -> std::result::Result<FileTree, E>,
        elsewhere: &dyn systemd::Elsewhere,
    ) -> std::result::Result<FileTree, E> {
        let mut tree = FileTree::new();
        for (i, f) in self.file.iter().enumerate() {
            tree.merge(f.render(&format!("file[{i}]"), ctx)?)?;
        }
        for (i, d) in self.dir.iter().enumerate() {
            tree.merge(d.render(&format!("dir[{i}]"))?)?;
        }
        for (i, s) in self.symlink.iter().enumerate() {
            tree.merge(s.render(&format!("symlink[{i}]"))?)?;
        }
        for (i, s) in self.apt_source.iter().enumerate() {
            tree.merge(s.render(&format!("apt-source[{i}]"), ctx)?)?;
        }
        for (i, r) in self.yum_repo.iter().enumerate() {
            tree.merge(r.render(&format!("yum-repo[{i}]"), rpmrepo::Flavor::Yum, ctx)?)?;
        }
        for (i, r) in self.zypper_repo.iter().enumerate() {
            tree.merge(r.render(&format!("zypper-repo[{i}]"), rpmrepo::Flavor::Zypper, ctx)?)?;
        }
        if let Some(m) = &self.modules {
            tree.merge(m.render("modules")?)?;
        }
        if let Some(s) = &self.sysctl {
            tree.merge(s.render("sysctl")?)?;
        }
        if let Some(d) = &self.docker {
            tree.merge(d.render("docker")?)?;
        }
        if let Some(c) = &self.containerd {
            tree.merge(c.render("containerd")?)?;
        }
        if let Some(c) = &self.crio {
            tree.merge(c.render("crio")?)?;
        }
        if let Some(k) = &self.kubelet {
            tree.merge(k.render("kubelet")?)?;
        }
        let installed = packages(
            &Overlay {
                tree: &tree,
                lower: ctx.view,
            },
            &tree,
        )?;
        for (p, n) in installed.iter() {
            // Directories the packages share with the items stay as the items made them.
            if n.kind == NodeKind::Dir && tree.get(p).is_some_and(|o| o.kind == NodeKind::Dir) {
                continue;
            }
            tree.insert(p.clone(), n.clone())?;
        }
        if let Some(s) = &self.systemd {
            let units = s.render_units("systemd", ctx)?;
            tree.merge(units)?;
            let view = Overlay {
                tree: &tree,
                lower: ctx.view,
            };
            let links = s.render_enablement("systemd", &view, elsewhere)?;
            for (p, n) in links {
                // Enablement may rewrite a link an earlier item of this layer made.
                tree.replace(p, n);
            }
        }
        for (i, r) in self.remove.iter().enumerate() {
            let key = format!("remove[{i}]");
            let p = ImagePath::new(r).map_err(|m| Error::invalid(&key, m.to_string()))?;
            if p.is_root() {
                return Err(Error::invalid(&key, "cannot remove the image root").into());
            }
            tree.insert(p, Node::whiteout(Origin::new("remove", &key)))?;
        }
        Ok(tree)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::view::{MemInputs, MemView};

    fn spec(text: &str) -> LayerSpec {
        toml::from_str(text).unwrap()
    }

    fn unit_tree() -> FileTree {
        let mut t = FileTree::new();
        t.insert(
            ImagePath::new("/usr/lib/systemd/system/demo.service").unwrap(),
            Node::file(
                "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
                Origin::new("packages", "packages[0]"),
            ),
        )
        .unwrap();
        t
    }

    #[test]
    fn packages_come_before_systemd_enablement() {
        let s = spec(
            "name = \"a\"\npackages = [\"demo\"]\nsystemd = { enable = [\"demo.service\"] }\n",
        );
        assert_eq!(s.packages, ["demo"]);
        let view = MemView::new().dir("/etc");
        let inputs = MemInputs::new();
        let ctx = Context {
            view: &view,
            inputs: &inputs,
            arch: "amd64",
        };
        // Without the packages the unit does not exist.
        assert!(s.render(&ctx).is_err());
        let mut seen_lower = false;
        let tree = s
            .render_with(&ctx, |v, _| {
                seen_lower = v.exists("/etc");
                Ok::<_, Error>(unit_tree())
            })
            .unwrap();
        assert!(seen_lower);
        assert!(tree
            .get_str("/usr/lib/systemd/system/demo.service")
            .is_some());
        let link = tree
            .get_str("/etc/systemd/system/multi-user.target.wants/demo.service")
            .unwrap();
        assert!(matches!(link.kind, NodeKind::Symlink(_)), "{:?}", link.kind);
    }

    #[test]
    fn an_item_and_a_package_writing_one_path_is_an_error() {
        let s = spec(
            "name = \"a\"\npackages = [\"demo\"]\n[[file]]\npath = \"/usr/lib/systemd/system/demo.service\"\ncontent = \"\"\n",
        );
        let view = MemView::new();
        let inputs = MemInputs::new();
        let ctx = Context {
            view: &view,
            inputs: &inputs,
            arch: "amd64",
        };
        let e = s
            .render_with(&ctx, |_, _| Ok::<_, Error>(unit_tree()))
            .unwrap_err();
        assert_eq!(e.key(), "packages[0]");
        let m = e.to_string();
        assert!(m.contains("/usr/lib/systemd/system/demo.service"), "{m}");
        assert!(m.contains("file[0]"), "{m}");
    }

    /// Leaves every unit to the packages, and remembers which.
    #[derive(Default)]
    struct Leaves(std::cell::RefCell<Vec<(String, String)>>);

    impl systemd::Elsewhere for Leaves {
        fn leaves(&self, unit: &str, key: &str) -> bool {
            self.0.borrow_mut().push((unit.into(), key.into()));
            true
        }
    }

    #[test]
    fn without_packages_a_missing_unit_is_left_to_them_when_told() {
        let s = spec(
            "name = \"a\"\npackages = [\"demo\"]\nsystemd = { enable = [\"here.service\", \"demo.service\"], disable = [\"gone.service\"] }\n",
        );
        let view = MemView::new().file(
            "/usr/lib/systemd/system/here.service",
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        );
        let inputs = MemInputs::new();
        let ctx = Context {
            view: &view,
            inputs: &inputs,
            arch: "amd64",
        };
        let leaves = Leaves::default();
        let tree = s.render_without_packages(&ctx, &leaves).unwrap();
        // The unit the image has is enabled; the missing ones are left.
        assert!(tree
            .get_str("/etc/systemd/system/multi-user.target.wants/here.service")
            .is_some());
        assert_eq!(
            leaves.0.take(),
            [
                ("demo.service".to_string(), "systemd.enable[1]".to_string()),
                ("gone.service".to_string(), "systemd.disable[0]".to_string()),
            ]
        );
        // Told nothing comes from elsewhere: the missing unit is an error.
        let e = s
            .render_without_packages(&ctx, &systemd::Nowhere)
            .unwrap_err();
        assert_eq!(e.key(), "systemd.enable[1]");
    }
}
