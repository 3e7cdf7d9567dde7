//! `yum-repo` and `zypper-repo`: `.repo` files and their keys.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;
use crate::view::Context;

/// Which package manager reads the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/etc/yum.repos.d/`.
    Yum,
    /// `/etc/zypp/repos.d/`.
    Zypper,
}

/// An rpm repository.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RpmRepo {
    /// The repository id (the `[section]` of the file).
    pub name: String,
    /// File name without `.repo`; default: the name.
    pub file: Option<String>,
    /// Human-readable `name=`; default: the id.
    pub title: Option<String>,
    /// `baseurl=`.
    pub baseurl: Option<String>,
    /// `mirrorlist=`.
    pub mirrorlist: Option<String>,
    /// The signing key: a file relative to the recipe (stored under
    /// `/etc/pki/rpm-gpg/` and referenced as `file://`), or an `http(s)://`
    /// or `file://` URL used verbatim.
    pub gpgkey: Option<String>,
    /// `gpgcheck=`; default true.
    pub gpgcheck: Option<bool>,
    /// `repo_gpgcheck=`; default false.
    pub repo_gpgcheck: Option<bool>,
    /// `enabled=`; default true.
    pub enabled: Option<bool>,
    /// Further `key=value` lines, verbatim (e.g. `type = "rpm-md"`).
    #[serde(default)]
    pub options: IndexMap<String, String>,
}

impl RpmRepo {
    /// Render the `.repo` file and the key.
    pub fn render(&self, key: &str, flavor: Flavor, ctx: &Context) -> Result<FileTree> {
        let _ = (key, flavor, ctx);
        todo!()
    }
}
