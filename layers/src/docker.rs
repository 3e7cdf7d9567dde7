//! `docker`: Docker daemon settings, `/etc/docker/daemon.json`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;

/// daemon.json keys, verbatim (`exec-opts`, `log-driver`, `storage-driver`, ...).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Docker(pub BTreeMap<String, serde_json::Value>);

impl Docker {
    /// Render `/etc/docker/daemon.json`: sorted keys, 2-space indent, trailing newline.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
