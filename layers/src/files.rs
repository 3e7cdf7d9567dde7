//! `file`, `dir`, `symlink`: plain entries.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tree::{Content, FileTree, ImagePath, Meta, Node, NodeKind, Origin};
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
        let path = entry_path(key, &self.path)?;
        let meta = meta(key, self.mode.as_deref(), 0o644, self.owner, self.group)?;
        let origin = Origin::new("file", key);
        let content = match (&self.content, &self.source) {
            (Some(text), None) => Content::Bytes(text.as_bytes().to_vec()),
            (None, Some(src)) => {
                let file = ctx.inputs.host_file(src).map_err(|source| Error::Input {
                    key: format!("{key}.source"),
                    path: src.clone(),
                    source,
                })?;
                Content::Input(file)
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid_hint(
                    key,
                    "both content and source are set",
                    "give the file's text inline with content, or name a file with source, not both",
                ))
            }
            (None, None) => {
                return Err(Error::invalid_hint(
                    key,
                    "neither content nor source is set",
                    "add content = \"...\" (use \"\" for an empty file) or source = \"path/in/recipe/folder\"",
                ))
            }
        };
        let mut tree = FileTree::new();
        tree.insert(
            path,
            Node {
                kind: NodeKind::File(content),
                meta,
                origin,
                mtime: None,
            },
        )?;
        Ok(tree)
    }
}

impl Dir {
    /// Render the directory.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let path = entry_path(key, &self.path)?;
        let meta = meta(key, self.mode.as_deref(), 0o755, self.owner, self.group)?;
        let mut tree = FileTree::new();
        tree.insert(path, Node::dir(Origin::new("dir", key)).with_meta(meta))?;
        Ok(tree)
    }
}

impl Symlink {
    /// Render the link.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let path = entry_path(key, &self.path)?;
        let t = &self.target;
        if t.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.target"),
                "the link target is empty",
                "give the path the link points to, absolute (/usr/bin/x) or relative (../x)",
            ));
        }
        if t.contains('\0') || t.contains('\n') {
            return Err(Error::invalid(
                format!("{key}.target"),
                format!("{t:?} contains a NUL byte or a newline"),
            ));
        }
        let mut tree = FileTree::new();
        tree.insert(path, Node::symlink(t.clone(), Origin::new("symlink", key)))?;
        Ok(tree)
    }
}

/// Check the `path` of an entry: absolute, plain, not the root.
fn entry_path(key: &str, path: &str) -> Result<ImagePath> {
    let p =
        ImagePath::new(path).map_err(|m| Error::invalid(format!("{key}.path"), m.to_string()))?;
    if p.is_root() {
        return Err(Error::invalid(
            format!("{key}.path"),
            "the image root itself cannot be an entry",
        ));
    }
    Ok(p)
}

/// Parse an octal mode string as written in a recipe: 3 or 4 octal digits
/// (`"644"`, `"0600"`, `"1777"`).
pub(crate) fn parse_mode(s: &str) -> std::result::Result<u32, ModeError> {
    if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(ModeError::NotOctal(s.to_string()));
    }
    u32::from_str_radix(s, 8).map_err(|source| ModeError::Number {
        mode: s.to_string(),
        source,
    })
}

/// How a mode is written, said after every [`ModeError`].
const MODE_HINT: &str =
    "write the mode as an octal string of 3 or 4 digits, e.g. \"0644\" or \"755\"";

/// Why a recipe's mode string is not a mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ModeError {
    /// Not 3 or 4 octal digits.
    #[error("{0:?} is not an octal mode; {hint}", hint = MODE_HINT)]
    NotOctal(String),
    /// Octal digits the number parser still refused.
    #[error("{mode:?}: {source}; {hint}", hint = MODE_HINT)]
    Number {
        /// The mode as written.
        mode: String,
        /// The parser's error.
        #[source]
        source: std::num::ParseIntError,
    },
}

fn meta(
    key: &str,
    mode: Option<&str>,
    default: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<Meta> {
    let mode = match mode {
        Some(m) => {
            parse_mode(m).map_err(|e| Error::invalid(format!("{key}.mode"), e.to_string()))?
        }
        None => default,
    };
    Ok(Meta {
        mode,
        uid: owner.unwrap_or(0),
        gid: group.unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::InputFile;
    use crate::view::{InputCause, Inputs, MemInputs, MemView};
    use std::sync::{Arc, OnceLock};

    /// One open file standing for `files/big.bin` (any file will do: the
    /// renderer only passes the handle on).
    fn big() -> InputFile {
        static BIG: OnceLock<InputFile> = OnceLock::new();
        BIG.get_or_init(|| {
            let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
            InputFile::new(Arc::new(f), 1 << 30, "files/big.bin")
        })
        .clone()
    }

    struct HostInputs;
    impl Inputs for HostInputs {
        fn read(&self, rel: &str) -> std::result::Result<Vec<u8>, InputCause> {
            Err(format!("{rel}: not here").into())
        }
        fn host_file(&self, rel: &str) -> std::result::Result<InputFile, InputCause> {
            if rel == "files/big.bin" {
                Ok(big())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound).into())
            }
        }
    }

    fn file(path: &str) -> File {
        File {
            path: path.into(),
            content: None,
            source: None,
            mode: None,
            owner: None,
            group: None,
        }
    }

    fn render(f: &File, inputs: &dyn Inputs) -> Result<FileTree> {
        let view = MemView::new();
        let ctx = Context {
            view: &view,
            inputs,
            arch: "amd64",
        };
        f.render("file[2]", &ctx)
    }

    #[test]
    fn inline_file_with_defaults() {
        let mut f = file("/etc/motd");
        f.content = Some("hello\n".into());
        let t = render(&f, &MemInputs::new()).unwrap();
        assert_eq!(t.len(), 1);
        let n = t.get_str("/etc/motd").unwrap();
        assert_eq!(n.kind, NodeKind::File(Content::Bytes(b"hello\n".to_vec())));
        assert_eq!(
            n.meta,
            Meta {
                mode: 0o644,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(n.origin, Origin::new("file", "file[2]"));
    }

    #[test]
    fn mode_owner_group_and_path_normalised() {
        let mut f = file("/etc//secret/");
        f.content = Some(String::new());
        f.mode = Some("0600".into());
        f.owner = Some(1000);
        f.group = Some(50);
        let t = render(&f, &MemInputs::new()).unwrap();
        let n = t.get_str("/etc/secret").unwrap();
        assert_eq!(
            n.meta,
            Meta {
                mode: 0o600,
                uid: 1000,
                gid: 50
            }
        );
        assert_eq!(n.kind, NodeKind::File(Content::Bytes(Vec::new())));
    }

    #[test]
    fn source_is_streamed_from_the_host() {
        let mut f = file("/opt/big.bin");
        f.source = Some("files/big.bin".into());
        f.mode = Some("755".into());
        let t = render(&f, &HostInputs).unwrap();
        let n = t.get_str("/opt/big.bin").unwrap();
        assert_eq!(n.kind, NodeKind::File(Content::Input(big())));
        assert_eq!(n.meta.mode, 0o755);
    }

    #[test]
    fn missing_source_is_an_input_error() {
        let mut f = file("/opt/x");
        f.source = Some("files/missing".into());
        match render(&f, &HostInputs).unwrap_err() {
            e @ Error::Input { .. } => {
                let Error::Input { key, path, source } = &e else {
                    unreachable!()
                };
                assert_eq!(key, "file[2].source");
                assert_eq!(path, "files/missing");
                // The implementation's error is the cause, whole.
                let io = source
                    .downcast_ref::<std::io::Error>()
                    .expect("an io::Error");
                assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
                assert!(std::error::Error::source(&e).is_some());
                assert_eq!(
                    e.to_string(),
                    format!("file[2].source: cannot read \"files/missing\": {io}")
                );
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn content_and_source_are_exclusive() {
        let mut f = file("/etc/x");
        let e = render(&f, &MemInputs::new()).unwrap_err();
        assert_eq!(e.key(), "file[2]");
        assert!(e.to_string().contains("neither"), "{e}");
        f.content = Some("a".into());
        f.source = Some("b".into());
        let e = render(&f, &HostInputs).unwrap_err();
        assert_eq!(e.key(), "file[2]");
        assert!(e.to_string().contains("both"), "{e}");
    }

    #[test]
    fn bad_paths_are_refused_at_the_path_key() {
        for p in ["etc/x", "/etc/../x", "/", "/a\0b", ""] {
            let mut f = file(p);
            f.content = Some("x".into());
            let e = render(&f, &MemInputs::new()).unwrap_err();
            assert_eq!(e.key(), "file[2].path", "{p:?}");
        }
    }

    #[test]
    fn modes_parse_as_octal_strings() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        assert_eq!(parse_mode("7777"), Ok(0o7777));
        assert_eq!(parse_mode("000"), Ok(0));
        for bad in [
            "", "64", "0o644", "0648", "10777", "rwx", "-644", " 644", "+644",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_mode("0648").unwrap_err().to_string(),
            "\"0648\" is not an octal mode; write the mode as an octal string of 3 or 4 digits, \
             e.g. \"0644\" or \"755\""
        );
        let mut f = file("/etc/x");
        f.content = Some("x".into());
        f.mode = Some("0999".into());
        let e = render(&f, &MemInputs::new()).unwrap_err();
        assert_eq!(e.key(), "file[2].mode");
        assert!(e.to_string().contains("octal"), "{e}");
    }

    #[test]
    fn dirs_default_to_0755() {
        let d = Dir {
            path: "/etc/systemd/system/docker.service.d".into(),
            mode: None,
            owner: None,
            group: None,
        };
        let t = d.render("dir[0]").unwrap();
        let n = t.get_str("/etc/systemd/system/docker.service.d").unwrap();
        assert_eq!(n.kind, NodeKind::Dir);
        assert_eq!(
            n.meta,
            Meta {
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(n.origin, Origin::new("dir", "dir[0]"));
        let d = Dir {
            path: "/tmp".into(),
            mode: Some("1777".into()),
            owner: Some(1),
            group: Some(2),
        };
        let t = d.render("dir[1]").unwrap();
        assert_eq!(
            t.get_str("/tmp").unwrap().meta,
            Meta {
                mode: 0o1777,
                uid: 1,
                gid: 2
            }
        );
        let bad = Dir {
            path: "/x".into(),
            mode: Some("77777".into()),
            owner: None,
            group: None,
        };
        assert_eq!(bad.render("dir[3]").unwrap_err().key(), "dir[3].mode");
        let rel = Dir {
            path: "x".into(),
            mode: None,
            owner: None,
            group: None,
        };
        assert_eq!(rel.render("dir[4]").unwrap_err().key(), "dir[4].path");
    }

    #[test]
    fn symlinks_keep_their_target_verbatim() {
        for target in ["/usr/bin/containerd", "../lib/x", "x"] {
            let s = Symlink {
                path: "/usr/local/bin/ctr".into(),
                target: target.into(),
            };
            let t = s.render("symlink[0]").unwrap();
            let n = t.get_str("/usr/local/bin/ctr").unwrap();
            assert_eq!(n.kind, NodeKind::Symlink(target.to_string()));
            assert_eq!(n.meta, Meta::LINK);
            assert_eq!(n.origin, Origin::new("symlink", "symlink[0]"));
        }
        for bad in ["", "a\nb", "a\0b"] {
            let s = Symlink {
                path: "/x".into(),
                target: bad.into(),
            };
            assert_eq!(
                s.render("symlink[1]").unwrap_err().key(),
                "symlink[1].target"
            );
        }
        let s = Symlink {
            path: "rel".into(),
            target: "/x".into(),
        };
        assert_eq!(s.render("symlink[2]").unwrap_err().key(), "symlink[2].path");
    }
}
