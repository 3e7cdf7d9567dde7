//! `sysctl`: kernel parameters, `/etc/sysctl.d/<file>.conf`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::containerd::key_segment;
use crate::error::{Error, Result};
use crate::modules::conf_path;
use crate::tree::{FileTree, Node, Origin};

/// A sysctl value as written in the recipe.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SysctlValue {
    /// An integer, written as is.
    Int(i64),
    /// A boolean, written as 1 or 0.
    Bool(bool),
    /// A string, written as is (e.g. `"4096 87380 6291456"`).
    Str(String),
}

/// Kernel parameters applied at boot by `systemd-sysctl`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sysctl {
    /// File name without `.conf`, e.g. `99-kubernetes-cri`.
    pub file: String,
    /// `key = value` lines in the order written.
    pub set: IndexMap<String, SysctlValue>,
}

impl Sysctl {
    /// Render `/etc/sysctl.d/<file>.conf`. `key` is this item's key path.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let path = conf_path("/etc/sysctl.d", &format!("{key}.file"), &self.file)?;
        if self.set.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.set"),
                "sets no kernel parameters",
                "add at least one, e.g. set = { \"net.ipv4.ip_forward\" = 1 }, or drop the sysctl item",
            ));
        }
        let mut text = String::new();
        let mut seen: Vec<(String, &str)> = Vec::with_capacity(self.set.len());
        for (name, value) in &self.set {
            let vkey = format!("{key}.set.{}", key_segment(name));
            let canon = check_sysctl_key(&vkey, name)?;
            if let Some((_, first)) = seen.iter().find(|(c, _)| *c == canon) {
                return Err(Error::invalid_hint(
                    vkey,
                    format!("{name:?} names the same parameter as {first:?}"),
                    "set each kernel parameter once",
                ));
            }
            seen.push((canon, name));
            let v = render_value(&vkey, value)?;
            text.push_str(name);
            text.push_str(" = ");
            text.push_str(&v);
            text.push('\n');
        }
        let mut tree = FileTree::new();
        tree.insert(path, Node::file(text, Origin::new("sysctl", key)))?;
        Ok(tree)
    }
}

/// Check a sysctl name as sysctl.d(5) reads it and return its canonical
/// `/proc/sys`-relative form (for duplicate detection).
///
/// The first `.` or `/` decides the separator; within a component the other
/// character stands for itself (`net.ipv4.conf.eth0/100.forwarding` names the
/// interface `eth0.100`). Components are `[A-Za-z0-9_-]` with `*` globs.
/// A leading `-` on the whole name means "ignore a failure to set it".
fn check_sysctl_key(key: &str, name: &str) -> Result<String> {
    const HINT: &str = "write a name such as \"net.ipv4.ip_forward\": components of letters, digits, `_`, `-` or a `*` glob, separated by `.` (or `/`), optionally prefixed by `-` to ignore a failure";
    let body = name.strip_prefix('-').unwrap_or(name);
    if body.is_empty() {
        return Err(Error::invalid_hint(key, "parameter name is empty", HINT));
    }
    let sep = match body.find(['.', '/']) {
        Some(i) => body.as_bytes()[i] as char,
        None => {
            return Err(Error::invalid_hint(
                key,
                format!("{name:?} has a single component and names a /proc/sys directory"),
                HINT,
            ))
        }
    };
    if body.starts_with('-') {
        return Err(Error::invalid_hint(
            key,
            format!("{name:?} starts with more than one `-`"),
            HINT,
        ));
    }
    let other = if sep == '.' { '/' } else { '.' };
    for comp in body.split(sep) {
        if comp.is_empty() {
            return Err(Error::invalid_hint(
                key,
                format!("{name:?} has an empty component"),
                HINT,
            ));
        }
        if comp.starts_with(other) || comp.ends_with(other) {
            return Err(Error::invalid_hint(
                key,
                format!("{name:?} has a component that starts or ends with {other:?}"),
                HINT,
            ));
        }
        if let Some(c) = comp
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*') || *c == other))
        {
            return Err(Error::invalid_hint(
                key,
                format!("{name:?} contains {c:?}"),
                HINT,
            ));
        }
    }
    Ok(if sep == '.' {
        body.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        body.to_string()
    })
}

fn render_value(key: &str, v: &SysctlValue) -> Result<String> {
    Ok(match v {
        SysctlValue::Int(i) => i.to_string(),
        SysctlValue::Bool(true) => "1".to_string(),
        SysctlValue::Bool(false) => "0".to_string(),
        SysctlValue::Str(s) => {
            if s.is_empty() {
                return Err(Error::invalid_hint(
                    key,
                    "value is empty",
                    "give the value the kernel expects, or drop the key",
                ));
            }
            if let Some(c) = s.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(Error::invalid_hint(
                    key,
                    format!("value {s:?} contains the control character {c:?}"),
                    "a sysctl.d value is one line; separate several numbers with spaces",
                ));
            }
            if s.trim() != s {
                return Err(Error::invalid_hint(
                    key,
                    format!("value {s:?} has leading or trailing whitespace"),
                    "systemd-sysctl strips it; remove it",
                ));
            }
            s.clone()
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    fn sysctl(file: &str, set: &[(&str, SysctlValue)]) -> Sysctl {
        Sysctl {
            file: file.to_string(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    use SysctlValue::{Bool, Int, Str};

    #[test]
    fn guide_sysctl_file_exact_bytes() {
        let s: Sysctl = toml::from_str(
            r#"file = "99-kubernetes-cri"
set = { "net.bridge.bridge-nf-call-iptables" = 1, "net.ipv4.ip_forward" = 1, "net.bridge.bridge-nf-call-ip6tables" = 1 }"#,
        )
        .unwrap();
        let t = s.render("sysctl").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.text("/etc/sysctl.d/99-kubernetes-cri.conf").unwrap(),
            "net.bridge.bridge-nf-call-iptables = 1\n\
             net.ipv4.ip_forward = 1\n\
             net.bridge.bridge-nf-call-ip6tables = 1\n"
        );
        let n = t.get_str("/etc/sysctl.d/99-kubernetes-cri.conf").unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("sysctl", "sysctl"));
    }

    #[test]
    fn value_kinds_render_as_sysctl_expects() {
        let s: Sysctl = toml::from_str(
            r#"file = "x"
set = { "vm.overcommit_memory" = true, "kernel.panic" = false, "net.ipv4.tcp_rmem" = "4096 87380 6291456", "vm.min_free_kbytes" = -1, "kernel.domainname" = "example.com" }"#,
        )
        .unwrap();
        assert_eq!(s.set["vm.overcommit_memory"], Bool(true));
        assert_eq!(s.set["vm.min_free_kbytes"], Int(-1));
        let t = s.render("sysctl").unwrap();
        assert_eq!(
            t.text("/etc/sysctl.d/x.conf").unwrap(),
            "vm.overcommit_memory = 1\nkernel.panic = 0\nnet.ipv4.tcp_rmem = 4096 87380 6291456\nvm.min_free_kbytes = -1\nkernel.domainname = example.com\n"
        );
    }

    #[test]
    fn accepted_key_forms() {
        let t = sysctl(
            "x",
            &[
                ("-net.ipv6.conf.all.disable_ipv6", Int(1)),
                ("net.ipv4.conf.*.rp_filter", Int(2)),
                ("net/ipv4/conf/eth0.100/forwarding", Int(1)),
                ("net.ipv4.conf.eth1/200.forwarding", Int(1)),
                ("net.ipv4.conf.enp*.accept_ra", Int(0)),
            ],
        )
        .render("sysctl")
        .unwrap();
        assert_eq!(
            t.text("/etc/sysctl.d/x.conf").unwrap(),
            "-net.ipv6.conf.all.disable_ipv6 = 1\nnet.ipv4.conf.*.rp_filter = 2\nnet/ipv4/conf/eth0.100/forwarding = 1\nnet.ipv4.conf.eth1/200.forwarding = 1\nnet.ipv4.conf.enp*.accept_ra = 0\n"
        );
    }

    #[test]
    fn bad_keys_name_the_key_path() {
        for bad in [
            "",
            "-",
            "net..ipv4",
            ".net.ipv4",
            "net.ipv4.",
            "net.ipv4.ip_forward ",
            "net ipv4",
            "net.ipv4=1",
            "kernel",
            "net.ipv4.conf./eth0.x",
            "net.ipv4.conf.eth0/.x",
            "--net.ipv4.ip_forward",
            "net.ipv4.ip_förward",
        ] {
            let e = sysctl("x", &[("net.ipv4.ip_forward", Int(1)), (bad, Int(1))])
                .render("sysctl")
                .unwrap_err();
            assert_eq!(
                e.key(),
                format!("sysctl.set.{}", key_segment(bad)),
                "{bad:?}: {e}"
            );
            assert!(e.hint().unwrap().contains("net.ipv4.ip_forward"), "{e}");
        }
    }

    #[test]
    fn key_path_quotes_like_toml() {
        let e = sysctl("x", &[("net.ipv4.ip_forward", Str("1\n2".into()))])
            .render("sysctl")
            .unwrap_err();
        assert_eq!(e.key(), "sysctl.set.\"net.ipv4.ip_forward\"");
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in ["", "1\n", "1\nkernel.panic = 1", " 1", "1 ", "a\rb", "x\0"] {
            let e = sysctl("x", &[("net.ipv4.ip_forward", Str(bad.into()))])
                .render("sysctl")
                .unwrap_err();
            assert_eq!(e.key(), "sysctl.set.\"net.ipv4.ip_forward\"", "{bad:?}");
        }
    }

    #[test]
    fn the_same_parameter_twice_is_refused() {
        for (a, b) in [
            ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
            ("net.ipv4.ip_forward", "-net.ipv4.ip_forward"),
            (
                "net.ipv4.conf.eth0/1.forwarding",
                "net/ipv4/conf/eth0.1/forwarding",
            ),
        ] {
            let e = sysctl("x", &[(a, Int(1)), (b, Int(0))])
                .render("sysctl")
                .unwrap_err();
            assert_eq!(e.key(), format!("sysctl.set.\"{b}\""));
            assert!(e.to_string().contains(a), "{e}");
        }
        // Different interfaces are different parameters.
        sysctl(
            "x",
            &[
                ("net.ipv4.conf.eth0/1.forwarding", Int(1)),
                ("net.ipv4.conf.eth0.forwarding", Int(1)),
            ],
        )
        .render("sysctl")
        .unwrap();
    }

    #[test]
    fn empty_set_and_bad_file_are_refused() {
        let e = sysctl("x", &[]).render("sysctl").unwrap_err();
        assert_eq!(e.key(), "sysctl.set");
        for bad in ["", "99-k8s.conf", "a/b", "a b"] {
            let e = sysctl(bad, &[("net.ipv4.ip_forward", Int(1))])
                .render("sysctl")
                .unwrap_err();
            assert_eq!(e.key(), "sysctl.file", "{bad:?}");
        }
    }
}
