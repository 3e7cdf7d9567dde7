//! `modules`: kernel modules loaded at boot, `/etc/modules-load.d/<file>.conf`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, Origin};

/// Kernel modules to load at boot.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Modules {
    /// File name without `.conf`, e.g. `containerd`.
    pub file: String,
    /// Module names, one per line, order kept.
    pub load: Vec<String>,
}

impl Modules {
    /// Render `/etc/modules-load.d/<file>.conf`. `key` is this item's key path.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let path = conf_path("/etc/modules-load.d", &format!("{key}.file"), &self.file)?;
        if self.load.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.load"),
                "lists no modules",
                "name at least one kernel module, e.g. load = [\"overlay\", \"br_netfilter\"], or drop the modules item",
            ));
        }
        let mut text = String::new();
        let mut seen: Vec<String> = Vec::with_capacity(self.load.len());
        for (i, m) in self.load.iter().enumerate() {
            let mkey = format!("{key}.load[{i}]");
            check_module_name(&mkey, m)?;
            // The kernel treats `-` and `_` in module names as the same character.
            let canon = m.replace('-', "_");
            if let Some(j) = seen.iter().position(|s| *s == canon) {
                return Err(Error::invalid_hint(
                    mkey,
                    format!("module {m:?} is already listed at {key}.load[{j}]"),
                    "list each module once (`-` and `_` are the same in module names)",
                ));
            }
            seen.push(canon);
            text.push_str(m);
            text.push('\n');
        }
        let mut tree = FileTree::new();
        tree.insert(path, Node::file(text, Origin::new("modules", key)))?;
        Ok(tree)
    }
}

fn check_module_name(key: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_hint(
            key,
            "module name is empty",
            "write a kernel module name such as \"br_netfilter\"",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid_hint(
            key,
            format!("module name {name:?} contains {c:?}"),
            "module names use only letters, digits, `_` and `-` (no path, no `.ko` suffix, no parameters)",
        ));
    }
    Ok(())
}

/// Check the `file` setting of an item that writes `<dir>/<file>.conf`:
/// non-empty, no `/`, only `[A-Za-z0-9._-]`, not ending in `.conf` (the
/// suffix is added), and not `.`/`..`-like. `key` is the key path of the
/// `file` value itself.
pub(crate) fn check_conf_name(key: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_hint(
            key,
            "file name is empty",
            "write a name without directory or suffix, e.g. \"99-kubernetes-cri\"",
        ));
    }
    if name.contains('/') {
        return Err(Error::invalid_hint(
            key,
            format!("file name {name:?} contains `/`"),
            "write only the file name; the directory is fixed by the item",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid_hint(
            key,
            format!("file name {name:?} contains {c:?}"),
            "file names use only letters, digits, `.`, `_` and `-`",
        ));
    }
    if name.starts_with('.') {
        return Err(Error::invalid_hint(
            key,
            format!("file name {name:?} starts with `.`"),
            "hidden files are ignored by the reading daemon; start the name with a letter or digit",
        ));
    }
    if let Some(stem) = name.strip_suffix(".conf") {
        return Err(Error::invalid_hint(
            key,
            format!("file name {name:?} ends in .conf"),
            format!("write {stem:?}; the .conf suffix is added"),
        ));
    }
    Ok(())
}

/// `<dir>/<name>.conf` after [`check_conf_name`].
pub(crate) fn conf_path(dir: &str, key: &str, name: &str) -> Result<ImagePath> {
    check_conf_name(key, name)?;
    ImagePath::new(&format!("{dir}/{name}.conf")).map_err(|m| Error::invalid(key, m.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::{Meta, NodeKind};

    fn modules(file: &str, load: &[&str]) -> Modules {
        Modules {
            file: file.to_string(),
            load: load.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn guide_modules_file_exact_bytes() {
        let t = modules("containerd", &["overlay", "br_netfilter"])
            .render("modules")
            .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.bytes("/etc/modules-load.d/containerd.conf").unwrap(),
            b"overlay\nbr_netfilter\n"
        );
        let n = t.get_str("/etc/modules-load.d/containerd.conf").unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("modules", "modules"));
        assert!(matches!(n.kind, NodeKind::File(_)));
    }

    #[test]
    fn order_is_kept() {
        let t = modules("k8s", &["br_netfilter", "overlay", "ip_vs", "nf-conntrack"])
            .render("modules")
            .unwrap();
        assert_eq!(
            t.text("/etc/modules-load.d/k8s.conf").unwrap(),
            "br_netfilter\noverlay\nip_vs\nnf-conntrack\n"
        );
    }

    #[test]
    fn deserialises_from_toml_and_rejects_unknown_keys() {
        let m: Modules = toml::from_str("file = \"a\"\nload = [\"overlay\"]").unwrap();
        assert_eq!(m.load, ["overlay"]);
        assert!(toml::from_str::<Modules>("file = \"a\"\nload = []\nmodule = 1").is_err());
    }

    #[test]
    fn empty_list_is_refused() {
        let e = modules("x", &[]).render("modules").unwrap_err();
        assert_eq!(e.key(), "modules.load");
        assert!(e.hint().unwrap().contains("overlay"));
    }

    #[test]
    fn bad_module_names_name_their_index() {
        for bad in [
            "",
            "over lay",
            "overlay.ko",
            "/lib/modules/x",
            "br_netfilter foo=1",
        ] {
            let e = modules("x", &["overlay", bad])
                .render("modules")
                .unwrap_err();
            assert_eq!(e.key(), "modules.load[1]", "{bad:?}: {e}");
        }
    }

    #[test]
    fn duplicates_are_refused_including_dash_underscore_twins() {
        let e = modules("x", &["overlay", "br_netfilter", "overlay"])
            .render("modules")
            .unwrap_err();
        assert_eq!(e.key(), "modules.load[2]");
        assert!(e.to_string().contains("modules.load[0]"), "{e}");
        let e = modules("x", &["br_netfilter", "br-netfilter"])
            .render("modules")
            .unwrap_err();
        assert_eq!(e.key(), "modules.load[1]");
    }

    #[test]
    fn bad_file_names_are_refused() {
        for bad in ["", "a/b", "../x", "containerd.conf", "a b", ".hidden", "ü"] {
            let e = modules(bad, &["overlay"]).render("modules").unwrap_err();
            assert_eq!(e.key(), "modules.file", "{bad:?}: {e}");
        }
        let e = modules("containerd.conf", &["overlay"])
            .render("modules")
            .unwrap_err();
        assert_eq!(
            e.hint(),
            Some("write \"containerd\"; the .conf suffix is added")
        );
    }

    #[test]
    fn dotted_file_names_are_fine() {
        let t = modules("10-k8s.v1_x", &["overlay"]).render("m").unwrap();
        assert!(t.get_str("/etc/modules-load.d/10-k8s.v1_x.conf").is_some());
        assert_eq!(
            t.get_str("/etc/modules-load.d/10-k8s.v1_x.conf")
                .unwrap()
                .origin,
            Origin::new("modules", "m")
        );
    }
}
