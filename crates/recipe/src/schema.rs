//! `nodeimg schema`: the JSON Schema of the recipe format.
//!
//! Generated from the same structs the recipe is deserialised into, so it
//! cannot drift from what the builder accepts.

use crate::recipe::RecipeFile;

/// The JSON Schema of a recipe file.
pub fn schema() -> serde_json::Value {
    let s = schemars::schema_for!(RecipeFile);
    serde_json::to_value(&s).unwrap_or_default()
}

/// The schema, pretty-printed, with a trailing newline.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_every_item() {
        let s = schema();
        assert_eq!(s["title"], "nodeimg recipe");
        assert_eq!(s["required"], serde_json::json!(["image"]));
        assert_eq!(s["additionalProperties"], false);
        let defs = s["$defs"].as_object().unwrap();
        let layer = &defs["LayerSpec"]["properties"];
        for item in [
            "name",
            "modules",
            "sysctl",
            "apt-source",
            "yum-repo",
            "zypper-repo",
            "docker",
            "containerd",
            "crio",
            "kubelet",
            "systemd",
            "file",
            "dir",
            "symlink",
            "remove",
        ] {
            assert!(layer.get(item).is_some(), "no {item} in the layer schema");
        }
        assert!(layer.get("nonsense").is_none());
        let image = &defs["ImageSection"];
        assert_eq!(image["required"], serde_json::json!(["name"]));
        assert_eq!(image["properties"]["tag"]["default"], "latest");
        let allow = &defs["LintAllow"];
        assert_eq!(allow["required"], serde_json::json!(["rule", "reason"]));
        assert_eq!(allow["properties"]["rule"]["pattern"], "^NI[0-9]{3}$");
        assert_eq!(allow["properties"]["reason"]["minLength"], 1);
        assert!(s["properties"]["lint"].is_object());
        let text = schema_text();
        assert!(text.contains("\"config-version\""));
        assert!(text.contains("\"exec-opts\"") || text.contains("daemon.json"));
        assert!(text.ends_with("}\n"));
    }
}
