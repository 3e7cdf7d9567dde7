//! `file`, `dir`, `symlink`: plain entries.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::tree::FileTree;
use crate::view::Context;

/// A regular file.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct File {
    /// Absolute path in the image.
    pub path: String,
    /// The file's text.
    pub content: Option<String>,
    /// A file relative to the recipe to copy (streamed, any size).
    pub source: Option<String>,
    /// Octal mode as a string, e.g. `"0600"`; default `"0644"`.
    pub mode: Option<String>,
    /// Numeric owner; default 0.
    pub owner: Option<u32>,
    /// Numeric group; default 0.
    pub group: Option<u32>,
}

/// A directory.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dir {
    /// Absolute path in the image.
    pub path: String,
    /// Octal mode as a string; default `"0755"`.
    pub mode: Option<String>,
    /// Numeric owner; default 0.
    pub owner: Option<u32>,
    /// Numeric group; default 0.
    pub group: Option<u32>,
}

/// A symbolic link.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Symlink {
    /// Absolute path of the link in the image.
    pub path: String,
    /// What it points to, verbatim (absolute or relative).
    pub target: String,
}

impl File {
    /// Render the file. `key` is this item's key path (`file[2]`).
    pub fn render(&self, key: &str, ctx: &Context) -> Result<FileTree> {
        let _ = (key, ctx);
        todo!()
    }
}

impl Dir {
    /// Render the directory.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}

impl Symlink {
    /// Render the link.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let _ = key;
        todo!()
    }
}
