//! `kubelet`: `/var/lib/kubelet/config.yaml`, `/etc/crictl.yaml`, `/etc/default/kubelet`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

/// kubelet settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kubelet {
    /// `cgroupDriver`; default `systemd`.
    pub cgroup_driver: Option<String>,
    /// CRI socket, e.g. `unix:///run/containerd/containerd.sock`.
    pub container_runtime_endpoint: Option<String>,
    /// Extra command-line flags (`KUBELET_EXTRA_ARGS` in `/etc/default/kubelet`).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Further KubeletConfiguration fields, verbatim (camelCase keys).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: toml::Table,
}

impl Kubelet {
    /// Render the kubelet files.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
