//! SLSA provenance (v1) of a nodeimg build: the recipe and the parameters
//! it was built with, every input resolved (the recipe and the files it
//! reads, the base, the lock file, each package with its digest), and
//! nodeimg as the builder. A pure function of what the build knows: the
//! same build gives the same bytes (no clock; the one time is
//! `SOURCE_DATE_EPOCH`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::intoto::{Predicate, SLSA_PROVENANCE_V1};

/// `buildDefinition.buildType` of nodeimg builds: the parameters below are
/// the ones it defines (see docs/signing.md).
pub const BUILD_TYPE: &str = "urn:nodeimg:build:v1";

/// One input of a build, as a SLSA resource descriptor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Material {
    /// What it is to the build (`recipe`, `base`, `lock`, a package name).
    pub name: String,
    /// Where it was read (a path, a reference, a URL), when known.
    pub uri: Option<String>,
    /// Its digests by algorithm (`sha256` -> hex).
    pub digest: BTreeMap<String, String>,
    /// Anything else worth saying (a package's version and layer).
    pub annotations: BTreeMap<String, Value>,
}

impl Material {
    /// A material with a `sha256:<hex>` (or bare hex) digest.
    pub fn sha256(name: &str, uri: Option<String>, digest: &str) -> Material {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        Material {
            name: name.to_string(),
            uri,
            digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
            annotations: BTreeMap::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        if let Some(u) = &self.uri {
            m.insert("uri".into(), json!(u));
        }
        if !self.digest.is_empty() {
            m.insert("digest".into(), json!(self.digest));
        }
        if !self.annotations.is_empty() {
            m.insert("annotations".into(), json!(self.annotations));
        }
        Value::Object(m)
    }
}

/// What a build knows about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildFacts {
    /// nodeimg's version.
    pub version: String,
    /// The recipe (its path as given, and the digest of it and every file
    /// it reads).
    pub recipe: Material,
    /// The base (as named, with its manifest or file digest when known),
    /// and its layers.
    pub base: Vec<Material>,
    /// The lock files used (one per platform of a multi-platform build),
    /// when they were.
    pub locks: Vec<Material>,
    /// Every package installed.
    pub packages: Vec<Material>,
    /// The rest of the command line that shapes the image (format,
    /// compression, variables, where it was pushed), by name.
    pub parameters: BTreeMap<String, Value>,
    /// `--offline`.
    pub offline: bool,
    /// The `SOURCE_DATE_EPOCH` the image carries.
    pub source_date_epoch: i64,
}

/// The builder's id: nodeimg at its version, as a package URL.
pub fn builder_id(version: &str) -> String {
    format!("pkg:generic/nodeimg@{version}")
}

/// The SLSA provenance predicate of a build.
pub fn provenance(f: &BuildFacts) -> Predicate {
    let mut external = Map::new();
    external.insert(
        "recipe".into(),
        json!({
            "path": f.recipe.uri,
            "digest": f.recipe.digest,
        }),
    );
    for (k, v) in &f.parameters {
        external.insert(k.clone(), v.clone());
    }
    let deps: Vec<Value> = std::iter::once(&f.recipe)
        .chain(f.base.iter())
        .chain(f.locks.iter())
        .chain(f.packages.iter())
        .map(Material::to_json)
        .collect();
    Predicate {
        predicate_type: SLSA_PROVENANCE_V1.to_string(),
        predicate: json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    "offline": f.offline,
                    "SOURCE_DATE_EPOCH": f.source_date_epoch,
                    "locked": !f.locks.is_empty(),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": builder_id(&f.version),
                    "version": {"nodeimg": f.version},
                },
                "metadata": {},
            },
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn facts() -> BuildFacts {
        let mut pkg = Material::sha256(
            "containerd",
            Some("http://mirror.invalid/pool/c.deb".into()),
            &"e".repeat(64),
        );
        pkg.annotations.insert("version".into(), json!("1.6.20"));
        BuildFacts {
            version: "0.1.0".into(),
            recipe: Material::sha256(
                "recipe",
                Some("recipes/node.toml".into()),
                &format!("sha256:{}", "a".repeat(64)),
            ),
            base: vec![Material::sha256(
                "base",
                Some("oci:base:v1".into()),
                &format!("sha256:{}", "b".repeat(64)),
            )],
            locks: vec![Material::sha256(
                "lock",
                Some("recipes/node.toml.lock".into()),
                &"d".repeat(64),
            )],
            packages: vec![pkg],
            parameters: BTreeMap::from([("format".to_string(), json!("oci"))]),
            offline: true,
            source_date_epoch: 1_710_000_000,
        }
    }

    #[test]
    fn provenance_names_every_input_and_the_builder() {
        let p = provenance(&facts());
        assert_eq!(p.predicate_type, "https://slsa.dev/provenance/v1");
        let v = &p.predicate;
        let bd = &v["buildDefinition"];
        assert_eq!(bd["buildType"], BUILD_TYPE);
        assert_eq!(
            bd["externalParameters"]["recipe"]["path"],
            "recipes/node.toml"
        );
        assert_eq!(
            bd["externalParameters"]["recipe"]["digest"]["sha256"],
            "a".repeat(64)
        );
        assert_eq!(bd["externalParameters"]["format"], "oci");
        assert_eq!(bd["internalParameters"]["offline"], true);
        assert_eq!(bd["internalParameters"]["SOURCE_DATE_EPOCH"], 1_710_000_000);
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["recipe", "base", "lock", "containerd"]);
        assert_eq!(deps[1]["digest"]["sha256"], "b".repeat(64));
        assert_eq!(deps[3]["digest"]["sha256"], "e".repeat(64));
        assert_eq!(deps[3]["annotations"]["version"], "1.6.20");
        assert_eq!(
            v["runDetails"]["builder"]["id"],
            "pkg:generic/nodeimg@0.1.0"
        );
        assert_eq!(v["runDetails"]["builder"]["version"]["nodeimg"], "0.1.0");
        // The same facts, the same bytes.
        assert_eq!(
            serde_json::to_vec(&provenance(&facts()).predicate).unwrap(),
            serde_json::to_vec(v).unwrap()
        );
        let mut unlocked = facts();
        unlocked.locks.clear();
        let p = provenance(&unlocked);
        assert_eq!(
            p.predicate["buildDefinition"]["internalParameters"]["locked"],
            false
        );
    }
}
