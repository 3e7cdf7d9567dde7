//! The plan: one rendered [`FileTree`] per recipe layer.

use std::cell::RefCell;
use std::collections::BTreeSet;

use nodeimg_layers::{land, Context, FileTree, Inputs, RootView, Stack};
use nodeimg_pkg::lock::Lock;

use crate::error::{Error, Result};
use crate::packages::{self, PackageEnv, PackagesError};
use nodeimg_recipe::recipe::{Recipe, RecipeLayer};

pub use nodeimg_image::output::LayerPlan;

/// A layer failing: an item's error, or the packages'.
enum LayerFail {
    Item(nodeimg_layers::Error),
    Packages(PackagesError),
}

impl From<nodeimg_layers::Error> for LayerFail {
    fn from(e: nodeimg_layers::Error) -> Self {
        LayerFail::Item(e)
    }
}

/// Render every layer of `recipe`, in order, over the image `lower` (the
/// base's view): each layer sees the base and the layers before it, and its
/// tree is landed on them (paths resolved through their symlinks). Each
/// layer's `packages` are installed with `env`, after the layer's other
/// items and before its systemd units and enablement. Without `env` (an
/// offline check) packages are not installed, and the `systemd` enablement
/// of a unit the image lacks, in a layer with packages or above one, is
/// not checked (the packages may ship it; [`render_offline`] checks it
/// against a lock).
///
/// With a layer cache in `env`, each layer with packages is given a digest
/// of the image it is installed on (`base_id`, see [`base_id`], the trees
/// below and its own items), with which the cache keys what it installs.
pub fn render(
    recipe: &Recipe,
    lower: &dyn RootView,
    base_id: &str,
    inputs: &dyn Inputs,
    arch: &str,
    env: Option<&PackageEnv>,
) -> Result<Vec<LayerPlan>> {
    let mode = match env {
        Some(env) => Mode::Install(env),
        None => Mode::Offline(None),
    };
    render_all(recipe, lower, base_id, inputs, arch, mode).map(|(plans, _)| plans)
}

/// [`render`] for an offline check: no package is installed, and the
/// systemd enablement of a unit the image lacks is checked against the
/// units the lock records for the packages of the layers up to it. Without
/// a lock (or with one that does not record units) it cannot be checked:
/// it is left out, and a [`Note`] says so.
pub fn render_offline(
    recipe: &Recipe,
    lower: &dyn RootView,
    inputs: &dyn Inputs,
    arch: &str,
    lock: Option<&Lock>,
) -> Result<(Vec<LayerPlan>, Vec<Note>)> {
    render_all(recipe, lower, "", inputs, arch, Mode::Offline(lock))
}

/// Something a check could not verify, at a recipe file, line and key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Recipe file, as shown in messages.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path in that file.
    pub key: String,
    /// What was not verified, and why.
    pub message: String,
    /// How to have it verified.
    pub hint: String,
}

/// How layers' packages are rendered.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Installed with this environment.
    Install(&'a PackageEnv),
    /// Not installed; the units they ship as this lock records them.
    Offline(Option<&'a Lock>),
}

/// The units the packages of the layers rendered so far ship, when they
/// are not installed (an offline check): what the lock records of them,
/// and the layers whose packages' units it does not record.
#[derive(Default)]
struct LockedUnits {
    shipped: BTreeSet<String>,
    unknown: Vec<String>,
    /// Whether the lock exists (and records no units: version 1).
    old_lock: bool,
    /// The units left unchecked, by key within the layer.
    unchecked: RefCell<Vec<(String, String)>>,
}

impl LockedUnits {
    /// Add the packages of layer `l` (named `name`).
    fn add_layer(&mut self, lock: Option<&Lock>, name: &str) {
        let locked = lock
            .filter(|l| l.records_units())
            .and_then(|l| l.layer(name));
        match locked {
            Some(ll) => {
                let names = ll.packages.iter().flat_map(|p| &p.units);
                self.shipped.extend(
                    names
                        .filter_map(|u| nodeimg_layers::systemd::unit_file_name(u))
                        .map(str::to_string),
                );
            }
            None => {
                self.old_lock |= lock.is_some();
                self.unknown.push(name.to_string());
            }
        }
    }

    /// The notes for the units layer `l` left unchecked.
    fn notes(&self, recipe: &Recipe, l: &RecipeLayer) -> Vec<Note> {
        let layers: Vec<String> = self.unknown.iter().map(|n| format!("{n:?}")).collect();
        let why = if self.old_lock {
            "the lock file does not record the unit files packages ship (it predates version 2)"
        } else {
            "there is no lock file recording the unit files packages ship"
        };
        self.unchecked
            .take()
            .into_iter()
            .map(|(key, unit)| {
                let key = l.key_of(&key);
                let (file, line) = recipe.locate(l.file, &key);
                Note {
                    file: file.display().to_string(),
                    line,
                    key,
                    message: format!(
                        "enabling {unit} is not checked: the image below does not have it, the packages of layer {} are not installed by check, and {why}; build checks it",
                        layers.join(", ")
                    ),
                    hint: "run `nodeimg lock` on the recipe: the lock records the unit files each package ships, and check verifies the enablement against them".to_string(),
                }
            })
            .collect()
    }
}

impl nodeimg_layers::systemd::Elsewhere for LockedUnits {
    fn leaves(&self, unit: &str, key: &str) -> bool {
        let candidates = nodeimg_layers::systemd::unit_file_candidates(unit);
        if candidates.iter().any(|c| self.shipped.contains(c)) {
            return true;
        }
        if self.unknown.is_empty() {
            return false;
        }
        self.unchecked
            .borrow_mut()
            .push((key.to_string(), unit.to_string()));
        true
    }
}

fn render_all(
    recipe: &Recipe,
    lower: &dyn RootView,
    base_id: &str,
    inputs: &dyn Inputs,
    arch: &str,
    mode: Mode<'_>,
) -> Result<(Vec<LayerPlan>, Vec<Note>)> {
    let env = match mode {
        Mode::Install(env) => Some(env),
        Mode::Offline(_) => None,
    };
    let mut units = LockedUnits::default();
    let mut notes = Vec::new();
    let mut trees: Vec<FileTree> = Vec::with_capacity(recipe.layers.len());
    // The digest of the image so far, while a layer above installs packages.
    let mut below = env
        .and_then(PackageEnv::layer_cache)
        .map(|_| base_id.to_string());
    for (i, l) in recipe.layers.iter().enumerate() {
        let view = Stack {
            lower,
            uppers: &trees,
        };
        let ctx = Context {
            view: &view,
            inputs,
            arch,
        };
        let rendered = match env {
            Some(env) if !l.spec.packages.is_empty() => l.spec.render_with(&ctx, |v, own| {
                let view_id = match &below {
                    Some(b) => Some(
                        chain(b, own).map_err(|e| LayerFail::Packages(PackagesError::Build(e)))?,
                    ),
                    None => None,
                };
                packages::install_layer(
                    env,
                    v,
                    view_id.as_deref(),
                    &l.spec.packages,
                    arch,
                    &l.spec.name,
                )
                .map_err(LayerFail::Packages)
            }),
            Some(_) => l.spec.render(&ctx).map_err(LayerFail::Item),
            None => {
                if let (false, Mode::Offline(lock)) = (l.spec.packages.is_empty(), mode) {
                    units.add_layer(lock, &l.spec.name);
                }
                let r = l.spec.render_without_packages(&ctx, &units);
                notes.extend(units.notes(recipe, l));
                r.map_err(LayerFail::Item)
            }
        };
        let tree = match rendered {
            Ok(t) => land(t, &view).map_err(|e| layer_error(recipe, l, &e))?,
            Err(LayerFail::Item(e)) => return Err(layer_error(recipe, l, &e)),
            Err(LayerFail::Packages(PackagesError::Recipe { key, message, hint })) => {
                return Err(recipe.error(l.file, &l.key_of(&key), message, hint).into())
            }
            Err(LayerFail::Packages(PackagesError::Build(e))) => return Err(e.into()),
        };
        let above = &recipe.layers[i + 1..];
        below = match below {
            Some(b) if above.iter().any(|l| !l.spec.packages.is_empty()) => Some(chain(&b, &tree)?),
            _ => None,
        };
        trees.push(tree);
    }
    let plans = recipe
        .layers
        .iter()
        .zip(trees)
        .map(|(l, tree)| LayerPlan {
            name: l.spec.name.clone(),
            tree,
        })
        .collect();
    Ok((plans, notes))
}

/// The digest of a base: its layers' diff_ids.
pub fn base_id(base: &nodeimg_image::base::Base) -> String {
    let ids: Vec<&str> = std::iter::once("base")
        .chain(base.layers().iter().map(|l| l.diff_id.as_str()))
        .collect();
    nodeimg_image::cache::key(&ids)
}

/// The digest of the image `below` with `tree` on it.
fn chain(below: &str, tree: &FileTree) -> nodeimg_image::Result<String> {
    let d = nodeimg_image::pack::tree_digest(tree)?;
    Ok(nodeimg_image::cache::key(&["layer", below, &d]))
}

/// A layer error as a recipe error: the layer's file, the line of the key,
/// the key path within the file.
pub(crate) fn layer_error(recipe: &Recipe, l: &RecipeLayer, e: &nodeimg_layers::Error) -> Error {
    let message = match e {
        nodeimg_layers::Error::Invalid { message, .. } => message.clone(),
        nodeimg_layers::Error::Input { path, source, .. } => {
            format!("cannot read {path:?}: {source}")
        }
    };
    let hint = e.hint().map(str::to_string).or_else(|| match e {
        nodeimg_layers::Error::Input { .. } => {
            Some("input files are named relative to the recipe's folder".to_string())
        }
        _ => None,
    });
    recipe
        .error(l.file, &l.key_of(e.key()), message, hint)
        .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::RecipeError;
    use nodeimg_recipe::recipe::Loaded;
    use std::collections::BTreeMap;

    fn recipe(text: &str) -> (tempfile::TempDir, Recipe) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("recipe.toml"), text).unwrap();
        let r = Loaded::load(&d.path().join("recipe.toml"))
            .unwrap()
            .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        (d, r)
    }

    fn rec(e: Error) -> RecipeError {
        match e {
            Error::Recipe(r) => *r,
            e => panic!("{e}"),
        }
    }

    #[test]
    fn maps_layer_errors_to_lines() {
        let (_d, r) = recipe(
            "[image]\nname = \"n\"\n\n[[layer]]\nname = \"a\"\n\n[[layer]]\nname = \"b\"\nsystemd = { enable = [\n  \"ok.service\",\n  \"nope.service\",\n] }\n[[layer.file]]\npath = \"/x\"\ncontent = \"\"\nmode = \"rwx\"\n",
        );
        let l = &r.layers[1];
        let e = rec(layer_error(
            &r,
            l,
            &nodeimg_layers::Error::invalid_hint(
                "systemd.enable[1]",
                "unit nope.service does not exist",
                "install it first",
            ),
        ));
        assert_eq!(e.line, Some(11));
        assert_eq!(e.key.as_deref(), Some("layer[1].systemd.enable[1]"));
        assert_eq!(e.message, "unit nope.service does not exist");
        assert_eq!(e.hint.as_deref(), Some("install it first"));

        let e = rec(layer_error(
            &r,
            l,
            &nodeimg_layers::Error::invalid("file[0].mode", "\"rwx\" is not an octal mode"),
        ));
        assert_eq!(e.line, Some(16));
        assert_eq!(e.key.as_deref(), Some("layer[1].file[0].mode"));
    }

    #[test]
    fn renders_layers_in_order_over_earlier_ones() {
        let (d, r) = recipe(
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\nremove = [\"/etc/machine-id\"]\n[[layer]]\nname = \"b\"\n",
        );
        let inputs = nodeimg_recipe::inputs::RecipeInputs::new(d.path()).unwrap();
        let base = nodeimg_layers::MemView::new().file("/etc/machine-id", "x");
        let plans = render(&r, &base, "", &inputs, "amd64", None).unwrap();
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(
            plans[0].tree.get_str("/etc/machine-id").map(|n| &n.kind),
            Some(nodeimg_layers::NodeKind::Whiteout)
        ));
        assert!(plans[1].tree.is_empty());
    }

    #[test]
    fn unknown_unit_and_bad_mode_from_layers() {
        let (d, r) = recipe(
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\nsystemd = { enable = [\"nope.service\"] }\n",
        );
        let inputs = nodeimg_recipe::inputs::RecipeInputs::new(d.path()).unwrap();
        let base = nodeimg_layers::MemView::new();
        let e = rec(render(&r, &base, "", &inputs, "amd64", None).unwrap_err());
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("layer[0].systemd.enable[0]"));
        assert!(e.message.contains("nope.service"), "{}", e.message);

        let (d, r) = recipe(
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"\"\nmode = \"rwx\"\n",
        );
        let inputs = nodeimg_recipe::inputs::RecipeInputs::new(d.path()).unwrap();
        let e = rec(render(&r, &base, "", &inputs, "amd64", None).unwrap_err());
        assert_eq!(e.line, Some(8));
        assert_eq!(e.key.as_deref(), Some("layer[0].file[0].mode"));
    }

    fn locked(layer: &str, units: &[&str]) -> Lock {
        use nodeimg_pkg::lock::{LayerKind, LockedLayer, LockedPackage};
        let p = LockedPackage {
            name: "demo".into(),
            version: "1".into(),
            architecture: "amd64".into(),
            multi_arch: String::new(),
            auto: false,
            order: 0,
            source: "r".into(),
            url: "http://r.invalid/demo.deb".into(),
            size: 1,
            sha256: "0".repeat(64),
            units: units.iter().map(|u| u.to_string()).collect(),
        };
        Lock::new(
            "amd64",
            vec![],
            vec![],
            vec![LockedLayer {
                name: layer.into(),
                kind: LayerKind::Deb,
                requests: vec!["demo".into()],
                dpkg_status: "0".repeat(64),
                rpmdb: String::new(),
                sources: vec![],
                repos: vec![],
                packages: vec![p],
            }],
        )
    }

    const PACKAGES_THEN_ENABLE: &str = "[image]\nname = \"n\"\n[[layer]]\nname = \"pkgs\"\npackages = [\"demo\"]\n[[layer]]\nname = \"on\"\nsystemd = { enable = [\"UNIT\"] }\n";

    fn offline(unit: &str, lock: Option<&Lock>) -> Result<(Vec<LayerPlan>, Vec<Note>)> {
        let (d, r) = recipe(&PACKAGES_THEN_ENABLE.replace("UNIT", unit));
        let inputs = nodeimg_recipe::inputs::RecipeInputs::new(d.path()).unwrap();
        render_offline(&r, &nodeimg_layers::MemView::new(), &inputs, "amd64", lock)
    }

    #[test]
    fn offline_enablement_is_checked_against_the_units_the_lock_records() {
        let lock = locked(
            "pkgs",
            &[
                "/usr/lib/systemd/system/demo.service",
                "/lib/systemd/system/getty@.service",
            ],
        );
        for unit in ["demo.service", "getty@tty1.service"] {
            let (plans, notes) = offline(unit, Some(&lock)).unwrap();
            assert_eq!(plans.len(), 2);
            assert!(notes.is_empty(), "{unit}: {notes:?}");
        }
        // A unit neither the image nor a locked package has: refused.
        let e = rec(offline("nope.service", Some(&lock)).unwrap_err());
        assert_eq!(e.key.as_deref(), Some("layer[1].systemd.enable[0]"));
        assert_eq!(e.line, Some(8));
        assert!(
            e.message.contains("unit nope.service does not exist"),
            "{}",
            e.message
        );
        // The lock of another layer's packages does not count.
        let other = locked("elsewhere", &["/usr/lib/systemd/system/demo.service"]);
        let (_, notes) = offline("demo.service", Some(&other)).unwrap();
        assert_eq!(notes.len(), 1, "the layer's units are not known: {notes:?}");
    }

    #[test]
    fn offline_enablement_without_units_is_a_note_not_an_error() {
        let (plans, notes) = offline("demo.service", None).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(notes.len(), 1);
        let n = &notes[0];
        assert_eq!(n.key, "layer[1].systemd.enable[0]");
        assert_eq!(n.line, Some(8));
        assert!(
            n.message.contains("enabling demo.service is not checked"),
            "{}",
            n.message
        );
        assert!(n.message.contains("no lock file"), "{}", n.message);
        assert!(n.hint.contains("nodeimg lock"), "{}", n.hint);
        // A version 1 lock records no units: the same note, saying why.
        let mut v1 = locked("pkgs", &[]);
        v1.version = 1;
        let (_, notes) = offline("demo.service", Some(&v1)).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].message.contains("predates version 2"),
            "{}",
            notes[0].message
        );
        // Without packages at or below the layer a missing unit stays an error.
        let (d, r) = recipe(
            "[image]\nname = \"n\"\n[[layer]]\nname = \"on\"\nsystemd = { enable = [\"demo.service\"] }\n[[layer]]\nname = \"pkgs\"\npackages = [\"demo\"]\n",
        );
        let inputs = nodeimg_recipe::inputs::RecipeInputs::new(d.path()).unwrap();
        let e = rec(
            render_offline(&r, &nodeimg_layers::MemView::new(), &inputs, "amd64", None)
                .unwrap_err(),
        );
        assert_eq!(e.key.as_deref(), Some("layer[0].systemd.enable[0]"));
    }
}
