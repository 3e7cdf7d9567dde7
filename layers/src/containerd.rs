//! `containerd`: `/etc/containerd/config.toml` for config version 2 (containerd 1.x)
//! or 3 (containerd 2.x).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

fn default_version() -> u8 {
    2
}

/// containerd settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Containerd {
    /// Config file version: 2 for containerd 1.x, 3 for containerd 2.x.
    #[serde(default = "default_version")]
    pub config_version: u8,
    /// Use the systemd cgroup driver for runc (`SystemdCgroup`). Default true.
    pub systemd_cgroup: Option<bool>,
    /// The pause image used for pod sandboxes.
    pub sandbox_image: Option<String>,
    /// Directory of per-registry `hosts.toml` files.
    pub registry_config_path: Option<String>,
    /// Raw TOML merged over the generated config (tables merge, values replace).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub extra: toml::Table,
}

impl Containerd {
    /// Render `/etc/containerd/config.toml`.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
