//! `containerd`: `/etc/containerd/config.toml` for config version 2 (containerd 1.x)
//! or 3 (containerd 2.x).
//!
//! Also home of the TOML helpers the CRI-O drop-in shares: [`toml_merge`],
//! [`check_toml_merge`], [`toml_text`] and the key-path quoting [`key_segment`].

use schemars::JsonSchema;
use serde::Deserialize;
use toml::{Table, Value};

use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, Origin};

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

/// The CRI plugin of config version 2 (containerd 1.x).
const V2_CRI: &str = "io.containerd.grpc.v1.cri";
/// The CRI image plugin of config version 3 (containerd 2.x).
const V3_IMAGES: &str = "io.containerd.cri.v1.images";
/// The CRI runtime plugin of config version 3 (containerd 2.x).
const V3_RUNTIME: &str = "io.containerd.cri.v1.runtime";
/// The shim runc runs under with either version.
const RUNC_V2: &str = "io.containerd.runc.v2";

impl Containerd {
    /// Render `/etc/containerd/config.toml`.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let version = self.config_version;
        if version != 2 && version != 3 {
            return Err(Error::invalid_hint(
                format!("{key}.config-version"),
                format!("config version {version} is not supported"),
                "use 2 for containerd 1.x or 3 for containerd 2.x (version 1 files put the CRI settings elsewhere and lose SystemdCgroup)",
            ));
        }
        if let Some(img) = &self.sandbox_image {
            check_image_ref(&format!("{key}.sandbox-image"), img)?;
        }
        if let Some(p) = &self.registry_config_path {
            check_config_path(&format!("{key}.registry-config-path"), p)?;
        }
        let plugins = self.plugins(version);
        let mut root = Table::new();
        root.insert("version".into(), Value::Integer(i64::from(version)));
        root.insert("plugins".into(), Value::Table(plugins));

        let xkey = format!("{key}.extra");
        if let Some(v) = self.extra.get("version") {
            if v.as_integer() != Some(i64::from(version)) {
                return Err(Error::invalid_hint(
                    format!("{xkey}.version"),
                    format!("sets version = {v}, but config-version is {version}"),
                    "set the file version with config-version, and drop version from extra",
                ));
            }
        }
        let typed = typed_keys(version);
        check_shadowing(key, &xkey, &self.extra, &typed)?;
        check_toml_merge(&xkey, &root, &self.extra)?;
        toml_merge(&mut root, &self.extra);

        let text = toml_text(&xkey, &root)?;
        let path = ImagePath::new("/etc/containerd/config.toml")
            .map_err(|m| Error::invalid(key, m.to_string()))?;
        let mut tree = FileTree::new();
        tree.insert(path, Node::file(text, Origin::new("containerd", key)))?;
        Ok(tree)
    }

    /// The `plugins` table: runc under the systemd (or cgroupfs) driver,
    /// the sandbox image and the registry folder, where `version` puts them.
    fn plugins(&self, version: u8) -> Table {
        let systemd = self.systemd_cgroup.unwrap_or(true);
        let runc = table([
            ("runtime_type", Value::from(RUNC_V2)),
            ("options", table([("SystemdCgroup", Value::from(systemd))])),
        ]);
        let runtimes = table([("runtimes", table([("runc", runc)]))]);

        let mut plugins = Table::new();
        if version == 2 {
            let mut cri = Table::new();
            if let Some(img) = &self.sandbox_image {
                cri.insert("sandbox_image".into(), Value::from(img.as_str()));
            }
            cri.insert("containerd".into(), runtimes);
            if let Some(p) = &self.registry_config_path {
                cri.insert(
                    "registry".into(),
                    table([("config_path", Value::from(p.as_str()))]),
                );
            }
            plugins.insert(V2_CRI.into(), Value::Table(cri));
        } else {
            plugins.insert(V3_RUNTIME.into(), table([("containerd", runtimes)]));
            let mut images = Table::new();
            if let Some(img) = &self.sandbox_image {
                images.insert(
                    "pinned_images".into(),
                    table([("sandbox", Value::from(img.as_str()))]),
                );
            }
            if let Some(p) = &self.registry_config_path {
                images.insert(
                    "registry".into(),
                    table([("config_path", Value::from(p.as_str()))]),
                );
            }
            if !images.is_empty() {
                plugins.insert(V3_IMAGES.into(), Value::Table(images));
            }
        }
        plugins
    }
}

/// Where `version` puts the settings this item has keys for: the path of
/// each in the file, and its key.
fn typed_keys(version: u8) -> [(&'static [&'static str], &'static str); 3] {
    if version == 2 {
        [
            (
                &[
                    "plugins",
                    V2_CRI,
                    "containerd",
                    "runtimes",
                    "runc",
                    "options",
                    "SystemdCgroup",
                ],
                "systemd-cgroup",
            ),
            (&["plugins", V2_CRI, "sandbox_image"], "sandbox-image"),
            (
                &["plugins", V2_CRI, "registry", "config_path"],
                "registry-config-path",
            ),
        ]
    } else {
        [
            (
                &[
                    "plugins",
                    V3_RUNTIME,
                    "containerd",
                    "runtimes",
                    "runc",
                    "options",
                    "SystemdCgroup",
                ],
                "systemd-cgroup",
            ),
            (
                &["plugins", V3_IMAGES, "pinned_images", "sandbox"],
                "sandbox-image",
            ),
            (
                &["plugins", V3_IMAGES, "registry", "config_path"],
                "registry-config-path",
            ),
        ]
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// An image reference: non-empty, one word.
fn check_image_ref(key: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_hint(
            key,
            format!("{s:?} is not an image reference"),
            "write a reference such as \"example.com/pause:3.9\" (no spaces)",
        ));
    }
    Ok(())
}

/// `config_path`: one or more absolute directories separated by `:`.
fn check_config_path(key: &str, s: &str) -> Result<()> {
    for part in s.split(':') {
        if !part.starts_with('/') || part.chars().any(char::is_control) {
            return Err(Error::invalid_hint(
                key,
                format!("{s:?} is not a list of absolute directories"),
                "write an absolute directory on the node, e.g. \"/etc/containerd/certs.d\" (several separated by `:`)",
            ));
        }
    }
    Ok(())
}

/// One component of a key path, quoted as TOML quotes keys: bare when it is
/// made of `[A-Za-z0-9_-]` only, else a basic string (`"net.ipv4.ip_forward"`).
pub fn key_segment(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return k.to_string();
    }
    let mut s = String::with_capacity(k.len() + 2);
    s.push('"');
    for c in k.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Deep-merge `over` into `base`: tables merge recursively, any other value
/// (arrays included) replaces what `base` had. New keys keep `over`'s order
/// after `base`'s keys.
pub(crate) fn toml_merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => toml_merge(b, o),
            (Some(slot), v) => *slot = v.clone(),
            (None, v) => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Refuse raw keys in `extra` that a typed setting of the item controls:
/// the typed setting is what lint reads (the cgroup driver agreement, for
/// one), so the raw key would silently win over what lint checked. `item`
/// is the item's key path, `key` the key path of `extra`, and `typed` lists
/// raw key paths with the setting to use instead.
pub(crate) fn check_shadowing(
    item: &str,
    key: &str,
    extra: &Table,
    typed: &[(&[&str], &str)],
) -> Result<()> {
    'paths: for (path, setting) in typed {
        let mut t = extra;
        for (i, k) in path.iter().enumerate() {
            match t.get(*k) {
                Some(Value::Table(next)) if i + 1 < path.len() => t = next,
                Some(_) if i + 1 == path.len() => {
                    let here: Vec<String> = path.iter().map(|k| key_segment(k)).collect();
                    return Err(Error::invalid_hint(
                        format!("{key}.{}", here.join(".")),
                        format!("sets what the {setting} setting controls"),
                        format!("set it with {item}.{setting} and drop it from extra"),
                    ));
                }
                _ => continue 'paths,
            }
        }
    }
    Ok(())
}

/// Refuse a merge of `over` into `base` that would replace a table with a
/// plain value or a plain value with a table: that drops generated settings
/// or changes their type, and is never what a recipe means. `key` is the key
/// path of `over` (e.g. `containerd.extra`).
pub(crate) fn check_toml_merge(key: &str, base: &Table, over: &Table) -> Result<()> {
    for (k, v) in over {
        let here = format!("{key}.{}", key_segment(k));
        match (base.get(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => check_toml_merge(&here, b, o)?,
            (Some(Value::Table(_)), _) => {
                return Err(Error::invalid_hint(
                    here,
                    format!("replaces a generated table with the {}", v.type_str()),
                    "write a table here, or set the generated value through its own setting",
                ))
            }
            (Some(b), Value::Table(_)) => {
                return Err(Error::invalid_hint(
                    here,
                    format!("is a table where the generated file has a {}", b.type_str()),
                    "write a plain value here",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A table as TOML text (tables as `[headers]`), ending in a newline.
pub(crate) fn toml_text(key: &str, t: &Table) -> Result<String> {
    let mut s = toml::to_string(t)
        .map_err(|e| Error::invalid(key, format!("cannot be written as TOML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    fn parse(s: &str) -> Containerd {
        toml::from_str(s).unwrap()
    }

    fn config(c: &Containerd) -> String {
        let t = c.render("containerd").unwrap();
        assert_eq!(t.len(), 1);
        let n = t.get_str("/etc/containerd/config.toml").unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("containerd", "containerd"));
        t.text("/etc/containerd/config.toml").unwrap().to_string()
    }

    const V2_FULL: &str = r#"version = 2

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "example.com/pause:3.9"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/etc/containerd/certs.d"
"#;

    #[test]
    fn v2_exact_bytes() {
        let c = parse(
            r#"sandbox-image = "example.com/pause:3.9"
registry-config-path = "/etc/containerd/certs.d""#,
        );
        assert_eq!(c.config_version, 2);
        assert_eq!(config(&c), V2_FULL);
    }

    #[test]
    fn v2_minimal_defaults_to_systemd_cgroup() {
        assert_eq!(
            config(&parse("")),
            r#"version = 2

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
"#
        );
    }

    #[test]
    fn v2_parses_back_with_systemd_cgroup_at_the_exact_path() {
        for (setting, want) in [
            ("", true),
            ("systemd-cgroup = true", true),
            ("systemd-cgroup = false", false),
        ] {
            let text = config(&parse(setting));
            let t: Table = toml::from_str(&text).unwrap();
            assert_eq!(t["version"].as_integer(), Some(2));
            let runc = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"];
            assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
            assert_eq!(
                runc["options"]["SystemdCgroup"].as_bool(),
                Some(want),
                "{setting}"
            );
            // The old key that makes containerd 1.x skip the CRI plugin is never written.
            assert!(!text.contains("systemd_cgroup"));
        }
    }

    #[test]
    fn v3_exact_bytes() {
        let c = parse(
            r#"config-version = 3
systemd-cgroup = false
sandbox-image = "example.com/pause:3.10"
registry-config-path = "/etc/containerd/certs.d""#,
        );
        assert_eq!(
            config(&c),
            r#"version = 3

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
SystemdCgroup = false

[plugins."io.containerd.cri.v1.images".pinned_images]
sandbox = "example.com/pause:3.10"

[plugins."io.containerd.cri.v1.images".registry]
config_path = "/etc/containerd/certs.d"
"#
        );
        let t: Table = toml::from_str(&config(&c)).unwrap();
        assert_eq!(
            t["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
                ["options"]["SystemdCgroup"]
                .as_bool(),
            Some(false)
        );
        assert_eq!(
            t["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"].as_str(),
            Some("example.com/pause:3.10")
        );
    }

    #[test]
    fn v3_minimal_has_no_images_table() {
        let text = config(&parse("config-version = 3"));
        assert!(!text.contains("io.containerd.cri.v1.images"), "{text}");
        assert!(text.starts_with("version = 3\n"));
    }

    #[test]
    fn extra_deep_merges_over_the_generated_table() {
        let c = parse(
            r#"sandbox-image = "example.com/pause:3.9"
[extra]
version = 2
oom_score = -999
[extra.plugins."io.containerd.grpc.v1.cri"]
enable_unprivileged_ports = true
[extra.plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "runc"
[extra.plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
BinaryName = "/usr/bin/runc"
"#,
        );
        assert_eq!(
            config(&c),
            r#"version = 2
oom_score = -999

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "example.com/pause:3.9"
enable_unprivileged_ports = true

[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
BinaryName = "/usr/bin/runc"
"#
        );
    }

    #[test]
    fn output_is_deterministic() {
        let src = r#"sandbox-image = "p:1"
extra = { b = 1, a = { y = 2, x = [1, 2] } }"#;
        assert_eq!(config(&parse(src)), config(&parse(src)));
    }

    #[test]
    fn unsupported_versions_are_refused_with_a_hint() {
        for v in [0, 1, 4] {
            let e = parse(&format!("config-version = {v}"))
                .render("containerd")
                .unwrap_err();
            assert_eq!(e.key(), "containerd.config-version");
            assert!(e.hint().unwrap().contains("containerd 2.x"), "{e:?}");
        }
    }

    #[test]
    fn extra_may_not_change_the_version() {
        for x in [
            "extra = { version = 3 }",
            "extra = { version = \"2\" }",
            "config-version = 3\nextra = { version = 2 }",
        ] {
            let e = parse(x).render("containerd").unwrap_err();
            assert_eq!(e.key(), "containerd.extra.version", "{x}");
            assert!(e.hint().unwrap().contains("config-version"));
        }
        // Repeating the same version is harmless.
        assert!(config(&parse("extra = { version = 2 }")).starts_with("version = 2\n"));
    }

    #[test]
    fn extra_may_not_replace_tables_with_values_or_back() {
        let e = parse("[extra.plugins]\n\"io.containerd.grpc.v1.cri\" = \"off\"")
            .render("containerd")
            .unwrap_err();
        assert_eq!(
            e.key(),
            "containerd.extra.plugins.\"io.containerd.grpc.v1.cri\""
        );
        let e = parse(
            "[extra.plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.runtime_type]\nx = 1",
        )
        .render("containerd")
        .unwrap_err();
        assert_eq!(
            e.key(),
            "containerd.extra.plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.runtime_type"
        );
    }

    #[test]
    fn extra_may_not_set_what_a_typed_setting_controls() {
        for (src, path, setting) in [
            (
                "[extra.plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = false",
                "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options.SystemdCgroup",
                "systemd-cgroup",
            ),
            (
                "[extra.plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"p:1\"",
                "plugins.\"io.containerd.grpc.v1.cri\".sandbox_image",
                "sandbox-image",
            ),
            (
                "[extra.plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"",
                "plugins.\"io.containerd.grpc.v1.cri\".registry.config_path",
                "registry-config-path",
            ),
            (
                "config-version = 3\n[extra.plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\nSystemdCgroup = true",
                "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options.SystemdCgroup",
                "systemd-cgroup",
            ),
            (
                "config-version = 3\n[extra.plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"p:1\"",
                "plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox",
                "sandbox-image",
            ),
        ] {
            let e = parse(src).render("containerd").unwrap_err();
            assert_eq!(e.key(), format!("containerd.extra.{path}"), "{src}");
            assert_eq!(
                e.hint(),
                Some(format!("set it with containerd.{setting} and drop it from extra").as_str())
            );
        }
        // The other version's key paths are not shadowed (lint reports them).
        let t = config(&parse(
            "[extra.plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"p:1\"",
        ));
        assert!(t.contains("sandbox = \"p:1\""));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("sandbox-image = \"\"")
            .render("containerd")
            .unwrap_err();
        assert_eq!(e.key(), "containerd.sandbox-image");
        let e = parse("sandbox-image = \"a b\"")
            .render("containerd")
            .unwrap_err();
        assert_eq!(e.key(), "containerd.sandbox-image");
        for p in ["", "certs.d", "/etc/a:certs.d", "/etc/a\n"] {
            let e = parse(&format!("registry-config-path = {p:?}"))
                .render("containerd")
                .unwrap_err();
            assert_eq!(e.key(), "containerd.registry-config-path", "{p:?}");
        }
        let two = config(&parse("registry-config-path = \"/etc/a:/etc/b\""));
        assert!(two.contains("config_path = \"/etc/a:/etc/b\"\n"));
        assert!(toml::from_str::<Containerd>("systemd_cgroup = true").is_err());
    }

    #[test]
    fn key_segments_quote_like_toml() {
        assert_eq!(key_segment("log-opts"), "log-opts");
        assert_eq!(
            key_segment("net.ipv4.ip_forward"),
            "\"net.ipv4.ip_forward\""
        );
        assert_eq!(key_segment(""), "\"\"");
        assert_eq!(key_segment("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn toml_merge_rules() {
        let mut base: Table = toml::from_str("a = 1\n[t]\nx = [1]\ny = 2\n[t.u]\nz = 3").unwrap();
        let over: Table = toml::from_str("b = 2\n[t]\nx = [2, 3]\n[t.u]\nw = 4").unwrap();
        check_toml_merge("k", &base, &over).unwrap();
        toml_merge(&mut base, &over);
        let want: Table =
            toml::from_str("a = 1\nb = 2\n[t]\nx = [2, 3]\ny = 2\n[t.u]\nz = 3\nw = 4").unwrap();
        assert_eq!(base, want);
        let keys: Vec<_> = base["t"]["u"].as_table().unwrap().keys().collect();
        assert_eq!(keys, ["z", "w"]);
    }
}
