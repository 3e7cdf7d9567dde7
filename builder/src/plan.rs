//! The plan: one rendered [`FileTree`] per recipe layer.

use nodeimg_layers::{land, Context, FileTree, Inputs, RootView, Stack};

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
/// offline check) packages are not installed, and in a layer that has
/// packages the `systemd` enablement lists are not checked (they may name
/// units the packages ship).
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
            None if !l.spec.packages.is_empty() => {
                let mut spec = l.spec.clone();
                if let Some(s) = spec.systemd.as_mut() {
                    s.enable.clear();
                    s.disable.clear();
                    s.mask.clear();
                }
                spec.render(&ctx).map_err(LayerFail::Item)
            }
            _ => l.spec.render(&ctx).map_err(LayerFail::Item),
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
    Ok(recipe
        .layers
        .iter()
        .zip(trees)
        .map(|(l, tree)| LayerPlan {
            name: l.spec.name.clone(),
            tree,
        })
        .collect())
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
}
