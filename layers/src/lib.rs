//! Pure renderers for nodeimg layer items.
//!
//! Every item kind of a recipe layer lives in its own module with a typed
//! settings struct (deserialised straight from the recipe) and a `render`
//! function that turns those settings into a [`FileTree`]. Nothing here does
//! I/O: the image built so far is read through [`RootView`], and files named
//! by the recipe are read through [`Inputs`]; both are implemented by the
//! builder and by in-memory fakes in tests.

pub mod apt;
pub mod arch;
pub mod containerd;
pub mod crio;
pub mod docker;
pub mod error;
pub mod files;
pub mod keys;
pub mod kubelet;
pub mod modules;
pub mod rpmrepo;
pub mod spec;
pub mod sysctl;
pub mod systemd;
pub mod tree;
pub mod view;

pub use error::{Error, Result};
pub use spec::LayerSpec;
pub use tree::{
    Content, FileTree, ImagePath, InputFile, InputReader, Meta, Node, NodeKind, PathError,
};
pub use view::{
    land, Context, InputCause, Inputs, MemInputs, MemView, Overlay, ReadRequiredError, RootView,
    Stack, Stat, StatKind,
};
