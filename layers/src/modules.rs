//! `modules`: kernel modules loaded at boot, `/etc/modules-load.d/<file>.conf`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

/// Kernel modules to load at boot.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Modules {
    /// File name without `.conf`, e.g. `containerd`.
    pub file: String,
    /// Module names, one per line, order kept.
    pub load: Vec<String>,
}

impl Modules {
    /// Render `/etc/modules-load.d/<file>.conf`. `key` is this item's key path.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
