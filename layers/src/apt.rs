//! `apt-source`: deb822 `.sources` files and their keyrings.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;
use crate::view::Context;

/// An apt repository.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AptSource {
    /// Name of the `.sources` file and keyring, e.g. `docker`.
    pub name: String,
    /// `Types:`; default `["deb"]`.
    #[serde(default)]
    pub types: Vec<String>,
    /// `URIs:`.
    pub uris: Vec<String>,
    /// `Suites:`; a suite ending in `/` is a flat repository (no components).
    pub suites: Vec<String>,
    /// `Components:`; empty for flat repositories.
    #[serde(default)]
    pub components: Vec<String>,
    /// `Architectures:`; empty means apt's default.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// The signing key file relative to the recipe (ASCII-armored or binary);
    /// stored as `/etc/apt/keyrings/<name>.gpg` and named by `Signed-By:`.
    pub key: Option<String>,
    /// Further deb822 fields, verbatim (e.g. `Check-Valid-Until = "no"`).
    #[serde(default)]
    pub options: IndexMap<String, String>,
}

impl AptSource {
    /// Render the `.sources` file and the keyring.
    pub fn render(&self, key: &str, ctx: &Context) -> Result<FileTree> {
        let _ = (key, ctx);
        todo!()
    }
}
