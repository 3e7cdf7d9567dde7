//! `docker`: Docker daemon settings, `/etc/docker/daemon.json`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::containerd::key_segment;
use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, Origin};

/// daemon.json keys, verbatim (`exec-opts`, `log-driver`, `storage-driver`, ...).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Docker(pub BTreeMap<String, serde_json::Value>);

/// The field name under which the `toml` crate hands a date-time to a
/// self-describing deserializer such as `serde_json::Value`.
const TOML_DATETIME: &str = "$__toml_private_datetime";

impl Docker {
    /// Render `/etc/docker/daemon.json`: sorted keys, 2-space indent, trailing newline.
    pub fn render(&self, key: &str) -> Result<FileTree> {
        let mut top = Map::new();
        for (k, v) in &self.0 {
            let here = format!("{key}.{}", key_segment(k));
            top.insert(k.clone(), sorted(&here, v)?);
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(top))
            .map_err(|e| Error::invalid(key, format!("cannot be written as JSON: {e}")))?;
        text.push('\n');
        let path = ImagePath::new("/etc/docker/daemon.json")
            .map_err(|m| Error::invalid(key, m.to_string()))?;
        let mut tree = FileTree::new();
        tree.insert(path, Node::file(text, Origin::new("docker", key)))?;
        Ok(tree)
    }
}

/// A copy of `v` with the keys of every object in byte order, refusing
/// values JSON cannot hold. `key` is the key path of `v`.
fn sorted(key: &str, v: &Value) -> Result<Value> {
    Ok(match v {
        Value::Object(m) => {
            if let Some(Value::String(dt)) = m.get(TOML_DATETIME) {
                if m.len() == 1 {
                    return Err(Error::invalid_hint(
                        key,
                        format!("{dt} is a TOML date-time, which JSON cannot hold"),
                        format!("quote it as a string: \"{dt}\""),
                    ));
                }
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(x) = m.get(k) {
                    out.insert(k.clone(), sorted(&format!("{key}.{}", key_segment(k)), x)?);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| sorted(&format!("{key}[{i}]"), x))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    fn parse(s: &str) -> Docker {
        toml::from_str(s).unwrap()
    }

    fn daemon_json(d: &Docker) -> String {
        let t = d.render("docker").unwrap();
        assert_eq!(t.len(), 1);
        let n = t.get_str("/etc/docker/daemon.json").unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("docker", "docker"));
        t.text("/etc/docker/daemon.json").unwrap().to_string()
    }

    #[test]
    fn guide_daemon_json_exact_bytes() {
        let d = parse(
            r#"storage-driver = "overlay2"
log-opts = { max-size = "100m" }
log-driver = "json-file"
exec-opts = ["native.cgroupdriver=systemd"]"#,
        );
        assert_eq!(
            daemon_json(&d),
            r#"{
  "exec-opts": [
    "native.cgroupdriver=systemd"
  ],
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "100m"
  },
  "storage-driver": "overlay2"
}
"#
        );
    }

    #[test]
    fn nested_keys_are_sorted_at_every_level() {
        let d = parse(
            r#"log-opts = { max-size = "100m", max-file = "3", labels = "a" }
default-ulimits = { nofile = { Soft = 64000, Name = "nofile", Hard = 64000 } }
storage-opts = ["overlay2.override_kernel_check=true"]
debug = true
default-address-pools = [{ size = 24, base = "172.30.0.0/16" }]
"#,
        );
        assert_eq!(
            daemon_json(&d),
            r#"{
  "debug": true,
  "default-address-pools": [
    {
      "base": "172.30.0.0/16",
      "size": 24
    }
  ],
  "default-ulimits": {
    "nofile": {
      "Hard": 64000,
      "Name": "nofile",
      "Soft": 64000
    }
  },
  "log-opts": {
    "labels": "a",
    "max-file": "3",
    "max-size": "100m"
  },
  "storage-opts": [
    "overlay2.override_kernel_check=true"
  ]
}
"#
        );
    }

    #[test]
    fn empty_table_is_an_empty_object() {
        assert_eq!(daemon_json(&parse("")), "{}\n");
    }

    #[test]
    fn strings_are_json_escaped() {
        let d = parse(r#"data-root = "/var/lib/dö\"cker\\x""#);
        assert_eq!(
            daemon_json(&d),
            "{\n  \"data-root\": \"/var/lib/dö\\\"cker\\\\x\"\n}\n"
        );
        let back: Value = serde_json::from_str(&daemon_json(&d)).unwrap();
        assert_eq!(back["data-root"], "/var/lib/dö\"cker\\x");
    }

    #[test]
    fn datetimes_are_refused_with_their_key_path() {
        let e = parse("log-opts = { since = 2020-01-01T00:00:00Z }")
            .render("docker")
            .unwrap_err();
        assert_eq!(e.key(), "docker.log-opts.since");
        assert!(e.to_string().contains("date-time"), "{e}");
        assert_eq!(
            e.hint(),
            Some("quote it as a string: \"2020-01-01T00:00:00Z\"")
        );
        let e = parse("x = [1, 1979-05-27]").render("docker").unwrap_err();
        assert_eq!(e.key(), "docker.x[1]");
        let e = parse("\"a.b\" = 07:32:00").render("docker").unwrap_err();
        assert_eq!(e.key(), "docker.\"a.b\"");
    }

    #[test]
    fn output_does_not_depend_on_insertion_order() {
        let a = parse("a = { z = 1, y = 2 }\nb = 1");
        let b = parse("b = 1\na = { y = 2, z = 1 }");
        assert_eq!(daemon_json(&a), daemon_json(&b));
        assert_eq!(
            daemon_json(&a),
            "{\n  \"a\": {\n    \"y\": 2,\n    \"z\": 1\n  },\n  \"b\": 1\n}\n"
        );
    }
}
