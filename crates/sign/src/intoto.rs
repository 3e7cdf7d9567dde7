//! in-toto statements (v1): what an attestation says about an image, the
//! image named by its repository and manifest digest, with a predicate of
//! any type: SLSA provenance (see [`crate::slsa`]), an SPDX or CycloneDX
//! document, anything with a type URI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `_type` of the statements written.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of statements older cosign versions wrote (read too).
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// The predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The predicate type of an SPDX document.
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// The predicate type of a CycloneDX document.
pub const CYCLONEDX_BOM: &str = "https://cyclonedx.org/bom";

/// A predicate: its type URI and its JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    /// `https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`, ...
    pub predicate_type: String,
    /// The document.
    pub predicate: serde_json::Value,
}

/// The subject of a statement: a name and its digests by algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The image's repository, `HOST/REPO`.
    pub name: String,
    /// `{"sha256": "<hex>"}`.
    pub digest: BTreeMap<String, String>,
}

/// An in-toto statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_V1`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// What it is about.
    pub subject: Vec<Subject>,
    /// The predicate's type.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
}

impl Statement {
    /// `predicate` about the image `name` (`HOST/REPO`) whose manifest
    /// digest is `digest` (`sha256:...`).
    pub fn new(name: &str, digest: &str, predicate: &Predicate) -> Statement {
        let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        Statement {
            kind: STATEMENT_V1.to_string(),
            subject: vec![Subject {
                name: name.to_string(),
                digest: BTreeMap::from([(alg.to_string(), hex.to_string())]),
            }],
            predicate_type: predicate.predicate_type.clone(),
            predicate: predicate.predicate.clone(),
        }
    }

    /// The statement as JSON (one line).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Read a statement of a known `_type` (v1, or v0.1 as older cosign
    /// versions wrote).
    pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
        let s: Statement = serde_json::from_slice(bytes)
            .map_err(|e| format!("is not an in-toto statement: {e}"))?;
        if s.kind != STATEMENT_V1 && s.kind != STATEMENT_V01 {
            return Err(format!("has _type {:?}, not {STATEMENT_V1:?}", s.kind));
        }
        Ok(s)
    }

    /// Whether a subject has the manifest digest `digest` (`sha256:...`).
    pub fn is_about(&self, digest: &str) -> bool {
        let Some((alg, hex)) = digest.split_once(':') else {
            return false;
        };
        self.subject
            .iter()
            .any(|s| s.digest.get(alg).is_some_and(|h| h == hex))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_image_by_its_digest() {
        let d = format!("sha256:{}", "c".repeat(64));
        let p = Predicate {
            predicate_type: SPDX_DOCUMENT.into(),
            predicate: serde_json::json!({"spdxVersion": "SPDX-2.3"}),
        };
        let s = Statement::new("127.0.0.1:5000/nodes/node", &d, &p);
        let text = String::from_utf8(s.to_json()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"127.0.0.1:5000/nodes/node","digest":{{"sha256":"{}"}}}}],"predicateType":"https://spdx.dev/Document","predicate":{{"spdxVersion":"SPDX-2.3"}}}}"#,
                "c".repeat(64)
            )
        );
        let back = Statement::parse(text.as_bytes()).unwrap();
        assert!(back.is_about(&d));
        assert!(!back.is_about(&format!("sha256:{}", "d".repeat(64))));
        assert!(!back.is_about("nonsense"));
        let old = text.replace("Statement/v1", "Statement/v0.1");
        assert!(Statement::parse(old.as_bytes()).is_ok());
        let other = text.replace("in-toto.io/Statement/v1", "example.org/x");
        assert!(Statement::parse(other.as_bytes())
            .unwrap_err()
            .contains("example.org"));
    }
}
