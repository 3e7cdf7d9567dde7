//! Where signatures and attestations live in a registry, as cosign puts
//! them: an OCI image manifest under the tag `sha256-<hex>.sig` (or
//! `.att`) of the image's repository, one layer per signature (or
//! attestation) with its annotations, and a config listing the layers as
//! diff_ids. A new one is appended to what the tag holds; nothing there is
//! dropped. Where the registry serves the referrers API, an attestation is
//! also pushed as a manifest whose `subject` is the image.
//!
//! Pure functions: manifests in, manifests out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::LayoutError;

/// The media type of a signature layer (the simple-signing payload).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of an attestation layer (a DSSE envelope).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation holding the base64 DER signature of the payload
/// (empty on attestations, whose envelope holds it).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The media type of the manifests written.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The empty config of OCI 1.1 artifacts, and its media type.
pub const EMPTY_CONFIG: &[u8] = b"{}";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Most layers read from a signature or attestation manifest.
pub const MAX_LAYERS: usize = 1000;
/// The Go zero time cosign's signature images carry.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Signatures or attestations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.sig`.
    Signatures,
    /// `.att`.
    Attestations,
}

/// The tag holding `kind` of the manifest `digest` (`sha256:<hex>`):
/// `sha256-<hex>.sig` or `.att`.
pub fn tag(kind: Kind, digest: &str) -> String {
    let suffix = match kind {
        Kind::Signatures => "sig",
        Kind::Attestations => "att",
    };
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// A layer: its descriptor's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Its digest.
    pub digest: String,
    /// Its annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    /// A layer of `blob`, of type `media_type`.
    pub fn of(blob: &[u8], media_type: &str, annotations: BTreeMap<String, String>) -> Layer {
        Layer {
            media_type: media_type.to_string(),
            size: blob.len() as u64,
            digest: crate::sha256_digest(blob),
            annotations,
        }
    }

    fn from_json(v: &Value, i: usize) -> Result<Layer, LayoutError> {
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .filter(|d| d.starts_with("sha256:"))
            .ok_or(LayoutError::Layer(i))?;
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or(LayoutError::Layer(i))?;
        let annotations = v
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Layer {
            media_type: v
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            size,
            digest: digest.to_string(),
            annotations,
        })
    }
}

/// The layers of a signature or attestation manifest: each descriptor as
/// it is (kept whole when appending), and what it says.
pub fn layers(manifest: &[u8]) -> Result<Vec<(Value, Layer)>, LayoutError> {
    let v: Value = serde_json::from_slice(manifest).map_err(LayoutError::NotJson)?;
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if v.get("manifests").is_some()
        || !(mt.is_empty()
            || mt == OCI_MANIFEST
            || mt == "application/vnd.docker.distribution.manifest.v2+json")
    {
        return Err(LayoutError::NotManifest(if mt.is_empty() {
            "an image index".to_string()
        } else {
            mt.to_string()
        }));
    }
    let list = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| LayoutError::NotManifest("no layers".to_string()))?;
    if list.len() > MAX_LAYERS {
        return Err(LayoutError::TooMany(list.len()));
    }
    list.iter()
        .enumerate()
        .map(|(i, l)| Ok((l.clone(), Layer::from_json(l, i)?)))
        .collect()
}

/// The layers with `new` appended, or `None` when it is there already
/// (the same blob with the same signature annotation).
pub fn append(existing: Vec<(Value, Layer)>, new: &Layer) -> Option<Vec<Value>> {
    let same = |l: &Layer| {
        l.digest == new.digest
            && l.annotations.get(SIGNATURE_ANNOTATION) == new.annotations.get(SIGNATURE_ANNOTATION)
    };
    if existing.iter().any(|(_, l)| same(l)) {
        return None;
    }
    let mut out: Vec<Value> = existing.into_iter().map(|(v, _)| v).collect();
    out.push(serde_json::to_value(new).unwrap_or(Value::Null));
    Some(out)
}

/// The config and manifest of an image of these layers (cosign's shape:
/// the layers as diff_ids, the Go zero time).
pub fn image(layers: &[Value]) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<&str> = layers
        .iter()
        .filter_map(|l| l.get("digest").and_then(Value::as_str))
        .collect();
    let history: Vec<Value> = diff_ids
        .iter()
        .map(|_| json!({"created": ZERO_TIME}))
        .collect();
    let config = json!({
        "architecture": "",
        "created": ZERO_TIME,
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": config.len(),
            "digest": crate::sha256_digest(&config),
        },
        "layers": layers,
    });
    (config, serde_json::to_vec(&manifest).unwrap_or_default())
}

/// An OCI 1.1 artifact manifest of `layer` (config: the empty
/// descriptor) whose subject is the manifest `subject` (media type,
/// digest, size); `artifactType` the layer's media type, and the layer's
/// annotations on the manifest too (a referrers list shows them).
pub fn referrer(layer: &Layer, subject: (&str, &str, u64)) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": layer.media_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "size": EMPTY_CONFIG.len(),
            "digest": crate::sha256_digest(EMPTY_CONFIG),
        },
        "layers": [layer],
        "subject": {
            "mediaType": subject.0,
            "digest": subject.1,
            "size": subject.2,
        },
        "annotations": layer.annotations,
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sig_layer(payload: &[u8], sig: &str) -> Layer {
        Layer::of(
            payload,
            SIMPLE_SIGNING_MEDIA_TYPE,
            BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), sig.to_string())]),
        )
    }

    #[test]
    fn tags_are_cosigns() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            tag(Kind::Signatures, &d),
            format!("sha256-{}.sig", "a".repeat(64))
        );
        assert_eq!(
            tag(Kind::Attestations, &d),
            format!("sha256-{}.att", "a".repeat(64))
        );
    }

    #[test]
    fn signatures_are_appended_never_dropped() {
        let first = sig_layer(b"p1", "MEU=");
        let (_, m1) = image(&append(Vec::new(), &first).unwrap());
        let v: Value = serde_json::from_slice(&m1).unwrap();
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["layers"][0]["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
        assert_eq!(v["layers"][0]["annotations"][SIGNATURE_ANNOTATION], "MEU=");
        // Another signer's layer, with fields of its own, is kept whole.
        let mut theirs: Value = v.clone();
        theirs["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = json!("{}");
        let existing = layers(&serde_json::to_vec(&theirs).unwrap()).unwrap();
        let second = sig_layer(b"p2", "MEY=");
        let all = append(existing.clone(), &second).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], theirs["layers"][0]);
        let (config, manifest) = image(&all);
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(
            c["rootfs"]["diff_ids"],
            json!([first.digest, second.digest])
        );
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["config"]["digest"], crate::sha256_digest(&config));
        // The same signature again: nothing to add.
        assert!(append(existing, &first).is_none());
    }

    #[test]
    fn what_is_not_a_signature_manifest_is_refused() {
        assert!(matches!(layers(b"nope"), Err(LayoutError::NotJson(_))));
        assert!(matches!(
            layers(br#"{"manifests":[]}"#),
            Err(LayoutError::NotManifest(_))
        ));
        assert!(matches!(
            layers(br#"{"mediaType":"application/vnd.oci.image.index.v1+json","layers":[]}"#),
            Err(LayoutError::NotManifest(_))
        ));
        assert!(matches!(
            layers(br#"{"layers":[{"digest":"sha256:ab"}]}"#),
            Err(LayoutError::Layer(0))
        ));
        let many =
            json!({"layers": vec![json!({"digest": "sha256:ab", "size": 1}); MAX_LAYERS + 1]});
        assert!(matches!(
            layers(&serde_json::to_vec(&many).unwrap()),
            Err(LayoutError::TooMany(_))
        ));
    }

    #[test]
    fn referrers_name_their_subject() {
        let l = Layer::of(
            b"{}",
            DSSE_MEDIA_TYPE,
            BTreeMap::from([(
                PREDICATE_TYPE_ANNOTATION.to_string(),
                "https://slsa.dev/provenance/v1".to_string(),
            )]),
        );
        let d = format!("sha256:{}", "f".repeat(64));
        let m: Value = serde_json::from_slice(&referrer(&l, (OCI_MANIFEST, &d, 123))).unwrap();
        assert_eq!(m["artifactType"], DSSE_MEDIA_TYPE);
        assert_eq!(m["subject"]["digest"], d);
        assert_eq!(m["subject"]["size"], 123);
        assert_eq!(m["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            m["annotations"]["predicateType"],
            "https://slsa.dev/provenance/v1"
        );
    }
}
