//! `sysctl`: kernel parameters, `/etc/sysctl.d/<file>.conf`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

/// A sysctl value as written in the recipe.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SysctlValue {
    /// An integer, written as is.
    Int(i64),
    /// A boolean, written as 1 or 0.
    Bool(bool),
    /// A string, written as is (e.g. `"4096 87380 6291456"`).
    Str(String),
}

/// Kernel parameters applied at boot by `systemd-sysctl`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sysctl {
    /// File name without `.conf`, e.g. `99-kubernetes-cri`.
    pub file: String,
    /// `key = value` lines in the order written.
    pub set: IndexMap<String, SysctlValue>,
}

impl Sysctl {
    /// Render `/etc/sysctl.d/<file>.conf`. `key` is this item's key path.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
