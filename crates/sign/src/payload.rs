//! The simple-signing payload cosign signs for an image:
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"HOST/REPO:TAG"},
//!  "image":{"docker-manifest-digest":"sha256:..."},
//!  "type":"cosign container image signature"},"optional":null}
//! ```
//!
//! (on one line, in this key order). Verifiers (cosign, containers/image's
//! `sigstoreSigned` policy) check the signature over these exact bytes,
//! then the digest; containers/image also checks the identity against the
//! reference pulled (by default the repository and tag when pulled by tag).

use serde::{Deserialize, Serialize};

/// The `critical.type` of a cosign image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: ImageDigest,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageDigest {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// What a verified payload says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`.
    pub digest: String,
}

/// The payload signing `digest` for `docker_reference` (`HOST/REPO:TAG`,
/// or `HOST/REPO` for an image named by digest).
pub fn simple_signing(docker_reference: &str, digest: &str) -> Vec<u8> {
    let p = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_string(),
            },
            image: ImageDigest {
                docker_manifest_digest: digest.to_string(),
            },
            kind: SIGNATURE_TYPE.to_string(),
        },
        optional: None,
    };
    serde_json::to_vec(&p).unwrap_or_default()
}

/// Read a payload (whose signature was verified): its claim, or why it is
/// not a cosign image signature. Unknown keys in `critical` are refused,
/// as containers/image refuses them; `optional` may hold anything.
pub fn parse(bytes: &[u8]) -> Result<Claim, String> {
    let p: Payload = serde_json::from_slice(bytes)
        .map_err(|e| format!("is not a simple-signing payload: {e}"))?;
    if p.critical.kind != SIGNATURE_TYPE {
        return Err(format!(
            "has type {:?}, not {SIGNATURE_TYPE:?}",
            p.critical.kind
        ));
    }
    Ok(Claim {
        docker_reference: p.critical.identity.docker_reference,
        digest: p.critical.image.docker_manifest_digest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let d = format!("sha256:{}", "a".repeat(64));
        let p = simple_signing("127.0.0.1:5000/nodes/node:v1", &d);
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/nodes/node:v1"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(
            parse(&p).unwrap(),
            Claim {
                docker_reference: "127.0.0.1:5000/nodes/node:v1".into(),
                digest: d.clone()
            }
        );
        // cosign writes annotations under optional: read.
        let with_optional = String::from_utf8(p)
            .unwrap()
            .replace("null", r#"{"creator":"x"}"#);
        assert!(parse(with_optional.as_bytes()).is_ok());
        let other = with_optional.replace("cosign container image signature", "atomic");
        assert!(parse(other.as_bytes()).unwrap_err().contains("atomic"));
        let extra = with_optional.replace("\"type\"", "\"extra\":1,\"type\"");
        assert!(parse(extra.as_bytes()).is_err());
        assert!(parse(b"[]").is_err());
    }
}
