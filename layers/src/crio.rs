//! `crio`: a CRI-O drop-in, `/etc/crio/crio.conf.d/<file>.conf`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

/// CRI-O settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Crio {
    /// Drop-in file name without `.conf`; default `02-cgroup-manager`.
    pub file: Option<String>,
    /// `crio.runtime.cgroup_manager`; default `systemd`.
    pub cgroup_manager: Option<String>,
    /// `crio.runtime.conmon_cgroup`; default `pod` with the systemd manager.
    pub conmon_cgroup: Option<String>,
    /// `crio.image.pause_image`.
    pub pause_image: Option<String>,
    /// Raw TOML merged over the generated drop-in.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub extra: toml::Table,
}

impl Crio {
    /// Render the drop-in.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
