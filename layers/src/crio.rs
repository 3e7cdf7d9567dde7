//! `crio`: a CRI-O drop-in, `/etc/crio/crio.conf.d/<file>.conf`.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::{Table, Value};

use crate::containerd::{check_shadowing, check_toml_merge, toml_merge, toml_text};
use crate::error::{Error, Result};
use crate::modules::conf_path;
use crate::tree::{FileTree, Node, Origin};

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

/// The drop-in name used when `file` is not set.
pub(crate) const DEFAULT_FILE: &str = "02-cgroup-manager";

impl Crio {
    /// Render the drop-in.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let file = self.file.as_deref().unwrap_or(DEFAULT_FILE);
        let path = conf_path("/etc/crio/crio.conf.d", &format!("{key}.file"), file)?;

        let manager = self.cgroup_manager.as_deref().unwrap_or("systemd");
        if manager != "systemd" && manager != "cgroupfs" {
            return Err(Error::invalid_hint(
                format!("{key}.cgroup-manager"),
                format!("{manager:?} is not a CRI-O cgroup manager"),
                "use \"systemd\" (right on a systemd host) or \"cgroupfs\"",
            ));
        }
        let ckey = format!("{key}.conmon-cgroup");
        let conmon = match (manager, self.conmon_cgroup.as_deref()) {
            ("systemd", None) => Some("pod"),
            ("systemd", Some(c)) if c == "pod" || is_slice(c) => Some(c),
            ("systemd", Some(c)) => {
                return Err(Error::invalid_hint(
                    ckey,
                    format!("{c:?} is neither \"pod\" nor a systemd slice"),
                    "with the systemd cgroup manager use \"pod\" or a slice name such as \"system.slice\"",
                ))
            }
            (_, Some("pod")) => Some("pod"),
            (_, Some(c)) => {
                return Err(Error::invalid_hint(
                    ckey,
                    format!("{c:?} is not valid with the cgroupfs cgroup manager"),
                    "with cgroupfs, CRI-O only accepts \"pod\"; set it to \"pod\" or leave it out",
                ))
            }
            (_, None) => None,
        };
        if let Some(p) = &self.pause_image {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid_hint(
                    format!("{key}.pause-image"),
                    format!("{p:?} is not an image reference"),
                    "write a reference such as \"example.com/pause:3.9\" (no spaces)",
                ));
            }
        }

        let mut runtime = Table::new();
        runtime.insert("cgroup_manager".into(), Value::from(manager));
        if let Some(c) = conmon {
            runtime.insert("conmon_cgroup".into(), Value::from(c));
        }
        let mut crio = Table::new();
        crio.insert("runtime".into(), Value::Table(runtime));
        if let Some(p) = &self.pause_image {
            let mut image = Table::new();
            image.insert("pause_image".into(), Value::from(p.as_str()));
            crio.insert("image".into(), Value::Table(image));
        }
        let mut root = Table::new();
        root.insert("crio".into(), Value::Table(crio));

        let xkey = format!("{key}.extra");
        check_shadowing(
            key,
            &xkey,
            &self.extra,
            &[
                (&["crio", "runtime", "cgroup_manager"], "cgroup-manager"),
                (&["crio", "runtime", "conmon_cgroup"], "conmon-cgroup"),
                (&["crio", "image", "pause_image"], "pause-image"),
            ],
        )?;
        check_toml_merge(&xkey, &root, &self.extra)?;
        toml_merge(&mut root, &self.extra);
        let text = toml_text(&xkey, &root)?;

        let mut tree = FileTree::new();
        tree.insert(path, Node::file(text, Origin::new("crio", key)))?;
        Ok(tree)
    }
}

/// A systemd slice unit name, as CRI-O accepts for `conmon_cgroup`.
fn is_slice(s: &str) -> bool {
    s.len() > ".slice".len()
        && s.ends_with(".slice")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '\\'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    fn parse(s: &str) -> Crio {
        toml::from_str(s).unwrap()
    }

    fn dropin(c: &Crio, path: &str) -> String {
        let t = c.render("crio").unwrap();
        assert_eq!(t.len(), 1);
        let n = t.get_str(path).unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("crio", "crio"));
        t.text(path).unwrap().to_string()
    }

    const DEFAULT: &str = "/etc/crio/crio.conf.d/02-cgroup-manager.conf";

    #[test]
    fn defaults_exact_bytes() {
        assert_eq!(
            dropin(&parse(""), DEFAULT),
            "[crio.runtime]\ncgroup_manager = \"systemd\"\nconmon_cgroup = \"pod\"\n"
        );
    }

    #[test]
    fn pause_image_and_file_name() {
        let c = parse(
            r#"file = "10-node"
pause-image = "example.com/pause:3.9"
conmon-cgroup = "system.slice""#,
        );
        assert_eq!(
            dropin(&c, "/etc/crio/crio.conf.d/10-node.conf"),
            r#"[crio.runtime]
cgroup_manager = "systemd"
conmon_cgroup = "system.slice"

[crio.image]
pause_image = "example.com/pause:3.9"
"#
        );
    }

    #[test]
    fn cgroupfs_omits_conmon_cgroup_unless_pod() {
        assert_eq!(
            dropin(&parse("cgroup-manager = \"cgroupfs\""), DEFAULT),
            "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n"
        );
        assert_eq!(
            dropin(
                &parse("cgroup-manager = \"cgroupfs\"\nconmon-cgroup = \"pod\""),
                DEFAULT
            ),
            "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\nconmon_cgroup = \"pod\"\n"
        );
        let e = parse("cgroup-manager = \"cgroupfs\"\nconmon-cgroup = \"system.slice\"")
            .render("crio")
            .unwrap_err();
        assert_eq!(e.key(), "crio.conmon-cgroup");
        assert!(e.hint().unwrap().contains("\"pod\""));
    }

    #[test]
    fn bad_conmon_cgroup_with_systemd() {
        for bad in ["", "system", ".slice", "a b.slice", "/system.slice"] {
            let e = parse(&format!("conmon-cgroup = {bad:?}"))
                .render("crio")
                .unwrap_err();
            assert_eq!(e.key(), "crio.conmon-cgroup", "{bad:?}");
        }
    }

    #[test]
    fn only_two_cgroup_managers() {
        for bad in ["Systemd", "", "none", "sytemd"] {
            let e = parse(&format!("cgroup-manager = {bad:?}"))
                .render("crio")
                .unwrap_err();
            assert_eq!(e.key(), "crio.cgroup-manager", "{bad:?}");
        }
    }

    #[test]
    fn bad_file_and_pause_image() {
        for bad in ["", "02-x.conf", "a/b", "x y"] {
            let e = parse(&format!("file = {bad:?}"))
                .render("crio")
                .unwrap_err();
            assert_eq!(e.key(), "crio.file", "{bad:?}");
        }
        for bad in ["", "a b", "a\nb"] {
            let e = parse(&format!("pause-image = {bad:?}"))
                .render("crio")
                .unwrap_err();
            assert_eq!(e.key(), "crio.pause-image", "{bad:?}");
        }
    }

    #[test]
    fn extra_deep_merges() {
        let c = parse(
            r#"pause-image = "example.com/pause:3.9"
[extra.crio.runtime]
default_runtime = "runc"
[extra.crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"
[extra.crio.network]
network_dir = "/etc/cni/net.d/"
"#,
        );
        let text = dropin(&c, DEFAULT);
        assert_eq!(
            text,
            r#"[crio.runtime]
cgroup_manager = "systemd"
conmon_cgroup = "pod"
default_runtime = "runc"

[crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"

[crio.image]
pause_image = "example.com/pause:3.9"

[crio.network]
network_dir = "/etc/cni/net.d/"
"#
        );
        let back: Table = toml::from_str(&text).unwrap();
        assert_eq!(
            back["crio"]["runtime"]["cgroup_manager"].as_str(),
            Some("systemd")
        );
    }

    #[test]
    fn extra_may_not_set_what_a_typed_setting_controls() {
        for (src, path, setting) in [
            (
                "[extra.crio.runtime]\ncgroup_manager = \"cgroupfs\"",
                "crio.runtime.cgroup_manager",
                "cgroup-manager",
            ),
            (
                "[extra.crio.runtime]\nconmon_cgroup = \"pod\"",
                "crio.runtime.conmon_cgroup",
                "conmon-cgroup",
            ),
            (
                "[extra.crio.image]\npause_image = \"p:1\"",
                "crio.image.pause_image",
                "pause-image",
            ),
        ] {
            let e = parse(src).render("crio").unwrap_err();
            assert_eq!(e.key(), format!("crio.extra.{path}"), "{src}");
            assert_eq!(
                e.hint(),
                Some(format!("set it with crio.{setting} and drop it from extra").as_str())
            );
        }
    }

    #[test]
    fn extra_may_not_replace_a_generated_table() {
        let e = parse("[extra]\ncrio = { runtime = 1 }")
            .render("crio")
            .unwrap_err();
        assert_eq!(e.key(), "crio.extra.crio.runtime");
        let e = parse("[extra.crio.runtime.cgroup_manager]\nx = 1")
            .render("crio")
            .unwrap_err();
        assert_eq!(e.key(), "crio.extra.crio.runtime.cgroup_manager");
    }
}
