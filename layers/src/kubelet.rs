//! `kubelet`: `/var/lib/kubelet/config.yaml`, `/etc/crictl.yaml`, `/etc/default/kubelet`.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Value;

use crate::containerd::key_segment;
use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, Origin};

/// kubelet settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kubelet {
    /// `cgroupDriver`; default `systemd`.
    pub cgroup_driver: Option<String>,
    /// CRI socket, e.g. `unix:///run/containerd/containerd.sock`.
    pub container_runtime_endpoint: Option<String>,
    /// Extra command-line flags (`KUBELET_EXTRA_ARGS` in `/etc/default/kubelet`).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Further KubeletConfiguration fields, verbatim (camelCase keys).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: toml::Table,
}

/// KubeletConfiguration fields that other settings own, with what to do instead.
const OWNED_FIELDS: [(&str, &str); 4] = [
    (
        "apiVersion",
        "drop it; the file is always kubelet.config.k8s.io/v1beta1",
    ),
    ("kind", "drop it; the file is always a KubeletConfiguration"),
    ("cgroupDriver", "set it with {item}.cgroup-driver"),
    (
        "containerRuntimeEndpoint",
        "set it with {item}.container-runtime-endpoint",
    ),
];

/// Command-line flags that other settings own.
const OWNED_FLAGS: [(&str, &str); 2] = [
    ("--cgroup-driver", "cgroup-driver"),
    ("--container-runtime-endpoint", "container-runtime-endpoint"),
];

impl Kubelet {
    /// Render the kubelet files.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let origin = Origin::new("kubelet", key);
        let driver = self.cgroup_driver.as_deref().unwrap_or("systemd");
        if driver != "systemd" && driver != "cgroupfs" {
            return Err(Error::invalid_hint(
                format!("{key}.cgroup-driver"),
                format!("{driver:?} is not a kubelet cgroup driver"),
                "use \"systemd\" (right on a systemd host) or \"cgroupfs\"",
            ));
        }
        if let Some(ep) = &self.container_runtime_endpoint {
            check_endpoint(&format!("{key}.container-runtime-endpoint"), ep)?;
        }
        for (field, hint) in OWNED_FIELDS {
            if self.config.contains_key(field) {
                return Err(Error::invalid_hint(
                    format!("{key}.config.{field}"),
                    format!("{field} is not a free KubeletConfiguration field here"),
                    hint.replace("{item}", key),
                ));
            }
        }

        let mut doc: Vec<(String, Value)> = vec![
            (
                "apiVersion".into(),
                Value::from("kubelet.config.k8s.io/v1beta1"),
            ),
            ("kind".into(), Value::from("KubeletConfiguration")),
            ("cgroupDriver".into(), Value::from(driver)),
        ];
        if let Some(ep) = &self.container_runtime_endpoint {
            doc.push(("containerRuntimeEndpoint".into(), Value::from(ep.as_str())));
        }
        let mut fields: Vec<(&String, &Value)> = self.config.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in fields {
            doc.push((k.clone(), v.clone()));
        }
        let mut config = String::new();
        let entries: Vec<(&str, &Value)> = doc.iter().map(|(k, v)| (k.as_str(), v)).collect();
        yaml_map(&mut config, &format!("{key}.config"), &entries, 0)?;

        let mut tree = FileTree::new();
        tree.insert(
            path("/var/lib/kubelet/config.yaml", key)?,
            Node::file(config, origin.clone()),
        )?;

        if let Some(ep) = &self.container_runtime_endpoint {
            let v = Value::from(ep.as_str());
            let mut crictl = String::new();
            yaml_map(
                &mut crictl,
                &format!("{key}.container-runtime-endpoint"),
                &[("runtime-endpoint", &v), ("image-endpoint", &v)],
                0,
            )?;
            tree.insert(
                path("/etc/crictl.yaml", key)?,
                Node::file(crictl, origin.clone()),
            )?;
        }

        for (i, a) in self.extra_args.iter().enumerate() {
            check_arg(key, &format!("{key}.extra-args[{i}]"), a)?;
        }
        let joined = self.extra_args.join(" ");
        let default = format!("KUBELET_EXTRA_ARGS={}\n", env_quote(&joined));
        tree.insert(
            path("/etc/default/kubelet", key)?,
            Node::file(default, origin),
        )?;
        Ok(tree)
    }
}

fn path(p: &str, key: &str) -> Result<ImagePath> {
    ImagePath::new(p).map_err(|m| Error::invalid(key, m.to_string()))
}

/// A CRI endpoint: `unix:///absolute/socket` or `tcp://host:port`.
fn check_endpoint(key: &str, ep: &str) -> Result<()> {
    const HINT: &str =
        "write e.g. \"unix:///run/containerd/containerd.sock\" or \"unix:///var/run/crio/crio.sock\"";
    if ep.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_hint(
            key,
            format!("{ep:?} contains whitespace"),
            HINT,
        ));
    }
    if let Some(p) = ep.strip_prefix("unix://") {
        if p.len() < 2 || !p.starts_with('/') {
            return Err(Error::invalid_hint(
                key,
                format!("{ep:?} does not name an absolute socket path"),
                HINT,
            ));
        }
        return Ok(());
    }
    if let Some(h) = ep.strip_prefix("tcp://") {
        if h.is_empty() || h.starts_with(':') || h.contains('/') {
            return Err(Error::invalid_hint(
                key,
                format!("{ep:?} does not name a host and port"),
                "write tcp://HOST:PORT",
            ));
        }
        return Ok(());
    }
    Err(Error::invalid_hint(
        key,
        format!("{ep:?} is neither a unix:// nor a tcp:// endpoint"),
        HINT,
    ))
}

/// One kubelet flag of `KUBELET_EXTRA_ARGS`.
fn check_arg(item: &str, key: &str, a: &str) -> Result<()> {
    let name = a.split('=').next().unwrap_or(a);
    let ok_start = a
        .strip_prefix("--")
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_start {
        return Err(Error::invalid_hint(
            key,
            format!("{a:?} is not a long flag"),
            "write one flag per entry in --name=value form, e.g. \"--node-ip=10.0.0.5\"",
        ));
    }
    if let Some(c) = a.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_hint(
            key,
            format!("{a:?} contains {c:?}"),
            "the kubelet unit splits KUBELET_EXTRA_ARGS on whitespace: write one flag per entry, in --name=value form, with no spaces",
        ));
    }
    if let Some((_, setting)) = OWNED_FLAGS.iter().find(|(f, _)| *f == name) {
        return Err(Error::invalid_hint(
            key,
            format!("{name} is set through {item}.{setting}"),
            format!("set {item}.{setting} and drop the flag"),
        ));
    }
    Ok(())
}

/// `s` as the value of a `KEY=value` line that a POSIX shell and a systemd
/// `EnvironmentFile=` both read back as exactly `s`.
fn env_quote(s: &str) -> String {
    let safe = s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%')
    });
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

// ---- a small deterministic YAML emitter (block style) ----

/// Append `entries` as a block mapping indented by `indent` spaces. `key` is
/// the key path of the mapping. Nested tables are emitted with sorted keys.
fn yaml_map(out: &mut String, key: &str, entries: &[(&str, &Value)], indent: usize) -> Result<()> {
    let pad = " ".repeat(indent);
    for (k, v) in entries {
        let here = format!("{key}.{}", key_segment(k));
        out.push_str(&pad);
        out.push_str(&yaml_str(k));
        out.push(':');
        match v {
            Value::Table(t) if !t.is_empty() => {
                out.push('\n');
                yaml_map(out, &here, &sorted(t), indent + 2)?;
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_seq(out, &here, a, indent)?;
            }
            v => {
                out.push(' ');
                out.push_str(&yaml_scalar(&here, v)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// Append `items` as a block sequence whose dashes are indented by `indent`.
fn yaml_seq(out: &mut String, key: &str, items: &[Value], indent: usize) -> Result<()> {
    let pad = " ".repeat(indent);
    for (i, v) in items.iter().enumerate() {
        let here = format!("{key}[{i}]");
        // A nested collection starts on the dash line: emit it two columns
        // deeper, then put the dash in its first line's indentation.
        let mut nested = String::new();
        match v {
            Value::Table(t) if !t.is_empty() => {
                yaml_map(&mut nested, &here, &sorted(t), indent + 2)?
            }
            Value::Array(a) if !a.is_empty() => yaml_seq(&mut nested, &here, a, indent + 2)?,
            v => {
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&yaml_scalar(&here, v)?);
                out.push('\n');
                continue;
            }
        }
        out.push_str(&pad);
        out.push_str("- ");
        out.push_str(nested.get(indent + 2..).unwrap_or_default());
    }
    Ok(())
}

fn sorted(t: &toml::Table) -> Vec<(&str, &Value)> {
    let mut v: Vec<(&str, &Value)> = t.iter().map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// A scalar (or an empty collection) on one line.
fn yaml_scalar(key: &str, v: &Value) -> Result<String> {
    Ok(match v {
        Value::String(s) => yaml_str(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        Value::Float(f) => {
            return Err(Error::invalid_hint(
                key,
                format!("{f} cannot be a KubeletConfiguration value"),
                "write a finite number",
            ))
        }
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => {
            return Err(Error::invalid_hint(
                key,
                format!("{d} is a TOML date-time, which a KubeletConfiguration cannot hold"),
                format!("quote it as a string: \"{d}\""),
            ))
        }
        Value::Array(_) => "[]".to_string(),
        Value::Table(_) => "{}".to_string(),
    })
}

/// A string as a YAML scalar: plain when no YAML 1.1 or 1.2 reader can take
/// it for anything but that string, else double-quoted with JSON escapes.
fn yaml_str(s: &str) -> String {
    const WORDS: [&str; 9] = ["y", "yes", "n", "no", "true", "false", "on", "off", "null"];
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
        && !s.ends_with(':')
        && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(s));
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    fn parse(s: &str) -> Kubelet {
        toml::from_str(s).unwrap()
    }

    fn render(k: &Kubelet) -> FileTree {
        let t = k.render("kubelet").unwrap();
        for (_, n) in t.iter() {
            assert_eq!(n.meta, Meta::FILE);
            assert_eq!(n.origin, Origin::new("kubelet", "kubelet"));
        }
        t
    }

    #[test]
    fn containerd_node_exact_files() {
        let t = render(&parse(
            r#"container-runtime-endpoint = "unix:///run/containerd/containerd.sock""#,
        ));
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.text("/var/lib/kubelet/config.yaml").unwrap(),
            "apiVersion: kubelet.config.k8s.io/v1beta1\n\
             kind: KubeletConfiguration\n\
             cgroupDriver: systemd\n\
             containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n"
        );
        assert_eq!(
            t.text("/etc/crictl.yaml").unwrap(),
            "runtime-endpoint: unix:///run/containerd/containerd.sock\n\
             image-endpoint: unix:///run/containerd/containerd.sock\n"
        );
        assert_eq!(
            t.text("/etc/default/kubelet").unwrap(),
            "KUBELET_EXTRA_ARGS=\n"
        );
    }

    #[test]
    fn defaults_write_no_crictl_file() {
        let t = render(&parse(""));
        assert_eq!(t.len(), 2);
        assert!(t.get_str("/etc/crictl.yaml").is_none());
        assert_eq!(
            t.text("/var/lib/kubelet/config.yaml").unwrap(),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
        );
    }

    #[test]
    fn config_fields_follow_in_key_order_with_nesting() {
        let t = render(&parse(
            r#"cgroup-driver = "cgroupfs"
[config]
maxPods = 110
clusterDNS = ["10.96.0.10"]
clusterDomain = "cluster.local"
evictionHard = { "memory.available" = "100Mi", "nodefs.available" = "10%" }
failSwapOn = false
authentication = { anonymous = { enabled = false }, webhook = { enabled = true, cacheTTL = "0s" } }
imageGCHighThresholdPercent = 85
cpuCFSQuotaPeriod = "100ms"
registryPullQPS = 5.0
tlsCipherSuites = []
featureGates = {}
allowedUnsafeSysctls = ["net.core.somaxconn", "kernel.msg*"]
reservedMemory = [{ numaNode = 0, limits = { memory = "1Gi" } }]
nested = [[1, 2], ["y", "no"]]
"#,
        ));
        assert_eq!(
            t.text("/var/lib/kubelet/config.yaml").unwrap(),
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
allowedUnsafeSysctls:
- net.core.somaxconn
- "kernel.msg*"
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: "0s"
    enabled: true
clusterDNS:
- "10.96.0.10"
clusterDomain: cluster.local
cpuCFSQuotaPeriod: "100ms"
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "10%"
failSwapOn: false
featureGates: {}
imageGCHighThresholdPercent: 85
maxPods: 110
nested:
- - 1
  - 2
- - "y"
  - "no"
registryPullQPS: 5.0
reservedMemory:
- limits:
    memory: "1Gi"
  numaNode: 0
tlsCipherSuites: []
"#
        );
    }

    #[test]
    fn strings_quote_when_yaml_could_misread_them() {
        for (s, want) in [
            ("systemd", "systemd"),
            ("unix:///run/crio/crio.sock", "unix:///run/crio/crio.sock"),
            ("/var/lib/kubelet", "/var/lib/kubelet"),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("NULL", "\"NULL\""),
            ("~", "\"~\""),
            ("10", "\"10\""),
            ("1e3", "\"1e3\""),
            (".inf", "\".inf\""),
            ("-x", "\"-x\""),
            ("a: b", "\"a: b\""),
            ("a #b", "\"a #b\""),
            ("key:", "\"key:\""),
            ("*ref", "\"*ref\""),
            ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
            ("line\nnext\t\u{7f}", "\"line\\nnext\\t\\u007f\""),
            ("ü", "\"ü\""),
        ] {
            assert_eq!(yaml_str(s), want, "{s:?}");
            // The quoted forms are JSON strings as well.
            if want.starts_with('"') {
                assert_eq!(serde_json::from_str::<String>(want).unwrap(), s);
            }
        }
    }

    #[test]
    fn extra_args_are_quoted_for_shell_and_systemd() {
        let t = render(&parse(r#"extra-args = ["--node-ip=10.0.0.5"]"#));
        assert_eq!(
            t.text("/etc/default/kubelet").unwrap(),
            "KUBELET_EXTRA_ARGS=--node-ip=10.0.0.5\n"
        );
        let t = render(&parse(
            r#"extra-args = ["--node-ip=10.0.0.5", "--node-labels=a=b,c=d"]"#,
        ));
        assert_eq!(
            t.text("/etc/default/kubelet").unwrap(),
            "KUBELET_EXTRA_ARGS=\"--node-ip=10.0.0.5 --node-labels=a=b,c=d\"\n"
        );
        let t = render(&parse(
            r#"extra-args = ["--eviction-hard=memory.available<100Mi", "--x=$HOME`\"\\'"]"#,
        ));
        assert_eq!(
            t.text("/etc/default/kubelet").unwrap(),
            "KUBELET_EXTRA_ARGS=\"--eviction-hard=memory.available<100Mi --x=\\$HOME\\`\\\"\\\\'\"\n"
        );
    }

    #[test]
    fn bad_extra_args_name_their_index() {
        for bad in [
            "-v=2",
            "node-ip=1",
            "--",
            "---x",
            "--a b",
            "--a\nb",
            "--a\tb",
            "",
        ] {
            let k = Kubelet {
                extra_args: vec!["--v=2".into(), bad.into()],
                ..parse("")
            };
            let e = k.render("kubelet").unwrap_err();
            assert_eq!(e.key(), "kubelet.extra-args[1]", "{bad:?}");
        }
        let e = parse(r#"extra-args = ["--cgroup-driver=cgroupfs"]"#)
            .render("kubelet")
            .unwrap_err();
        assert_eq!(e.key(), "kubelet.extra-args[0]");
        assert_eq!(
            e.hint(),
            Some("set kubelet.cgroup-driver and drop the flag")
        );
        let e = parse(r#"extra-args = ["--container-runtime-endpoint", "unix:///x"]"#)
            .render("kubelet")
            .unwrap_err();
        assert_eq!(e.key(), "kubelet.extra-args[0]");
    }

    #[test]
    fn cgroup_driver_must_be_known() {
        for bad in ["", "Systemd", "sytemd", "none"] {
            let e = parse(&format!("cgroup-driver = {bad:?}"))
                .render("kubelet")
                .unwrap_err();
            assert_eq!(e.key(), "kubelet.cgroup-driver", "{bad:?}");
        }
    }

    #[test]
    fn endpoints_are_checked() {
        for ok in [
            "unix:///var/run/crio/crio.sock",
            "tcp://127.0.0.1:10000",
            "tcp://localhost:3735",
        ] {
            let t = render(&parse(&format!("container-runtime-endpoint = {ok:?}")));
            assert!(t.text("/etc/crictl.yaml").unwrap().contains(ok));
        }
        for bad in [
            "",
            "/run/containerd/containerd.sock",
            "unix://",
            "unix:///",
            "unix://run/x.sock",
            "npipe:////./pipe/containerd",
            "http://x:1",
            "tcp://",
            "tcp://:1",
            "tcp://h:1/x",
            "unix:///run/a b.sock",
        ] {
            let e = parse(&format!("container-runtime-endpoint = {bad:?}"))
                .render("kubelet")
                .unwrap_err();
            assert_eq!(e.key(), "kubelet.container-runtime-endpoint", "{bad:?}");
        }
    }

    #[test]
    fn config_may_not_set_owned_fields() {
        for (field, hint) in [
            ("apiVersion", "kubelet.config.k8s.io/v1beta1"),
            ("kind", "KubeletConfiguration"),
            ("cgroupDriver", "kubelet.cgroup-driver"),
            (
                "containerRuntimeEndpoint",
                "kubelet.container-runtime-endpoint",
            ),
        ] {
            let e = parse(&format!("config = {{ {field} = \"x\" }}"))
                .render("kubelet")
                .unwrap_err();
            assert_eq!(e.key(), format!("kubelet.config.{field}"));
            assert!(e.hint().unwrap().contains(hint), "{e:?}");
        }
    }

    #[test]
    fn config_refuses_datetimes_and_non_finite_numbers() {
        let e = parse("config = { a = { b = [1, 2020-01-01T00:00:00Z] } }")
            .render("kubelet")
            .unwrap_err();
        assert_eq!(e.key(), "kubelet.config.a.b[1]");
        assert_eq!(
            e.hint(),
            Some("quote it as a string: \"2020-01-01T00:00:00Z\"")
        );
        let e = parse("config = { \"x.y\" = nan }")
            .render("kubelet")
            .unwrap_err();
        assert_eq!(e.key(), "kubelet.config.\"x.y\"");
        let e = parse("config = { x = [{ z = -inf }] }")
            .render("kubelet")
            .unwrap_err();
        assert_eq!(e.key(), "kubelet.config.x[0].z");
    }

    #[test]
    fn output_does_not_depend_on_table_order() {
        let a = render(&parse("config = { b = 1, a = { d = 1, c = 2 } }"));
        let b = render(&parse("config = { a = { c = 2, d = 1 }, b = 1 }"));
        assert_eq!(a, b);
    }
}
