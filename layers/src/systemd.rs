//! `systemd`: units, drop-ins, and enablement as `systemctl --root=DIR enable` does it.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;
use crate::view::{Context, RootView};

/// A unit file to install in `/etc/systemd/system/<name>`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Unit {
    /// Unit name with its suffix, e.g. `kubelet.service`.
    pub name: String,
    /// The unit text.
    pub content: Option<String>,
    /// A file relative to the recipe to take the unit text from.
    pub source: Option<String>,
}

/// A drop-in, `/etc/systemd/system/<unit>.d/<name>.conf`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dropin {
    /// The unit it applies to, e.g. `docker.service`.
    pub unit: String,
    /// File name without `.conf`.
    pub name: String,
    /// The drop-in text.
    pub content: Option<String>,
    /// A file relative to the recipe to take the text from.
    pub source: Option<String>,
}

/// systemd settings of a layer.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Systemd {
    /// Units to enable, as `systemctl enable` does (links from `[Install]`).
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units to disable: the links their `[Install]` section makes are removed.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Units to mask (`/etc/systemd/system/<unit>` -> `/dev/null`).
    #[serde(default)]
    pub mask: Vec<String>,
    /// Unit files to install.
    #[serde(default)]
    pub unit: Vec<Unit>,
    /// Drop-ins to install.
    #[serde(default)]
    pub dropin: Vec<Dropin>,
}

impl Systemd {
    /// Render the unit files and drop-ins. `key` is this item's key path.
    pub fn render_units(&self, key: &str, ctx: &Context) -> Result<FileTree> {
        let _ = (key, ctx);
        todo!()
    }

    /// Render enable/disable/mask against `view` (the image so far including
    /// this layer's other entries). Disabling a link that exists below
    /// yields a whiteout.
    pub fn render_enablement(&self, key: &str, view: &dyn RootView) -> Result<FileTree> {
        let _ = (key, view);
        todo!()
    }
}
