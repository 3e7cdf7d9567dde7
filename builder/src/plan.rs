//! The plan: one rendered [`FileTree`] per recipe layer.

use nodeimg_layers::FileTree;

/// One recipe layer, rendered and landed on the image below it.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    /// The recipe layer's name.
    pub name: String,
    /// Its content; paths already resolved through the links of the image below.
    pub tree: FileTree,
}
