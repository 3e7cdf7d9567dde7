//! Signing, attesting and verifying an image in its registry.
//!
//! A signature or attestation is pushed as cosign pushes it (see
//! [`crate::layout`]): its blob first, then the config, then the manifest
//! under the tag, last, so that a failure on the way leaves the tag as it
//! was (unsigned, or with the signatures it had), never a tag naming blobs
//! the registry lacks.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use nodeimg_registry::{Manifest, RegistryOptions, Repository};
use serde::Serialize;

use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::error::{Invalid, Result, SignError};
use crate::intoto::{Predicate, Statement};
use crate::keys::{PrivateKey, PublicKey};
use crate::layout::{self, Kind, Layer};
use crate::payload;

/// Largest signature payload read.
const PAYLOAD_MAX: u64 = 1 << 20;
/// Largest attestation envelope read (an SBOM may be large).
const ENVELOPE_MAX: u64 = 64 << 20;

/// An image in a registry, resolved to its manifest.
pub struct Target {
    repo: Repository,
    /// The identity signed: `HOST/REPO:TAG`, or `HOST/REPO` when the image
    /// was named by digest alone.
    pub identity: String,
    /// `HOST/REPO`.
    pub name: String,
    /// The manifest (or index) signed.
    pub manifest: Manifest,
}

/// What was attached to an image.
#[derive(Clone, Debug, Serialize)]
pub struct Attached {
    /// Where: `HOST/REPO:sha256-<hex>.sig` (or `.att`).
    pub reference: String,
    /// The digest of the signature (attestation) manifest under it.
    pub manifest_digest: String,
    /// The digest of the layer added (the payload or envelope).
    pub layer: String,
    /// How many signatures (attestations) the tag holds now.
    pub count: usize,
    /// `false` when the tag held this one already (nothing was pushed).
    pub added: bool,
    /// The predicate type, for an attestation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// The digest of the referrer manifest pushed, when the registry
    /// serves the referrers API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
}

/// The verdict on one signature or attestation.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    /// The digest of its layer.
    pub layer: String,
    /// Whether it verifies with the key and is about this image.
    pub valid: bool,
    /// The identity a signature names (`docker-reference`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// An attestation's predicate type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// Why it does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The image as named.
    pub reference: String,
    /// Its manifest digest.
    pub digest: String,
    /// Whether at least one signature (and, when asked, one attestation)
    /// verifies.
    pub verified: bool,
    /// Every simple-signing layer under the `.sig` tag.
    pub signatures: Vec<Checked>,
    /// Every DSSE layer under the `.att` tag, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestations: Option<Vec<Checked>>,
}

impl Target {
    /// The image `reference` names (`[docker://]HOST/REPO:TAG` or
    /// `@sha256:...`), resolved to its manifest; `write`: to attach to it.
    pub fn open(reference: &str, opts: &RegistryOptions, write: bool) -> Result<Target> {
        let repo = Repository::open(reference, opts, write)?;
        let manifest = repo.image()?;
        Ok(Self::with(repo, manifest))
    }

    /// The image just pushed to `reference` (a tag) as `digest`: its
    /// manifest is read by that digest (and checked against it), so that
    /// what is signed is what was pushed whatever the tag names by now.
    pub fn pushed(reference: &str, digest: &str, opts: &RegistryOptions) -> Result<Target> {
        let repo = Repository::open(reference, opts, true)?;
        let manifest = repo.manifest(digest)?.ok_or_else(|| SignError::Missing {
            repository: repo.name(),
            digest: digest.to_string(),
        })?;
        Ok(Self::with(repo, manifest))
    }

    fn with(repo: Repository, manifest: Manifest) -> Target {
        let name = repo.name();
        let identity = match repo.reference().tag() {
            Some(t) => format!("{name}:{t}"),
            None => name.clone(),
        };
        Target {
            repo,
            identity,
            name,
            manifest,
        }
    }

    fn step(&self, message: &str) {
        self.repo.meter().done(message);
    }

    /// The layers the tag of `kind` holds now (none when it holds
    /// nothing); what is not a signature manifest is an error.
    fn existing(&self, kind: Kind) -> Result<(String, Vec<(serde_json::Value, Layer)>)> {
        let tag = layout::tag(kind, &self.manifest.digest);
        let reference = format!("{}:{tag}", self.name);
        let layers = match self.repo.manifest(&tag)? {
            Some(m) => layout::layers(&m.bytes).map_err(|e| SignError::Attachments {
                reference: reference.clone(),
                source: e,
            })?,
            None => Vec::new(),
        };
        Ok((tag, layers))
    }

    /// Append a layer of `blob` to the tag of `kind`: the blob, the
    /// config, then the manifest under the tag.
    fn attach(&self, kind: Kind, blob: &[u8], layer: &Layer) -> Result<Attached> {
        let (tag, existing) = self.existing(kind)?;
        let reference = format!("{}:{tag}", self.name);
        let count = existing.len();
        let Some(all) = layout::append(existing, layer) else {
            let current = self.repo.manifest(&tag)?.map(|m| m.digest);
            return Ok(Attached {
                reference,
                manifest_digest: current.unwrap_or_default(),
                layer: layer.digest.clone(),
                count,
                added: false,
                predicate_type: None,
                referrer: None,
            });
        };
        self.repo.put_blob(blob)?;
        let (config, manifest) = layout::image(&all);
        self.repo.put_blob(&config)?;
        let digest = self
            .repo
            .put_manifest(&tag, manifest, layout::OCI_MANIFEST)?;
        Ok(Attached {
            reference,
            manifest_digest: digest,
            layer: layer.digest.clone(),
            count: all.len(),
            added: true,
            predicate_type: None,
            referrer: None,
        })
    }

    /// Sign the image with `key`: the simple-signing payload of its
    /// identity and digest, appended under the `.sig` tag.
    pub fn sign(&self, key: &PrivateKey) -> Result<Attached> {
        let payload = payload::simple_signing(&self.identity, &self.manifest.digest);
        let sig = B64.encode(key.sign(&payload));
        let layer = Layer::of(
            &payload,
            layout::SIMPLE_SIGNING_MEDIA_TYPE,
            BTreeMap::from([(layout::SIGNATURE_ANNOTATION.to_string(), sig)]),
        );
        let a = self.attach(Kind::Signatures, &payload, &layer)?;
        self.step(&format!(
            "{} {} ({} signature(s) under {})",
            if a.added {
                "signed"
            } else {
                "already signed with this key:"
            },
            self.at(),
            a.count,
            a.reference
        ));
        Ok(a)
    }

    /// `HOST/REPO@sha256:...`.
    fn at(&self) -> String {
        format!("{}@{}", self.name, self.manifest.digest)
    }

    /// Attest `predicate` about the image with `key`: an in-toto statement
    /// in a DSSE envelope, appended under the `.att` tag and, where the
    /// registry serves the referrers API, pushed as a referrer of the
    /// image too.
    pub fn attest(&self, key: &PrivateKey, predicate: &Predicate) -> Result<Attached> {
        let statement = Statement::new(&self.name, &self.manifest.digest, predicate);
        let envelope = Envelope::sign(key, IN_TOTO_PAYLOAD_TYPE, &statement.to_json()).to_json();
        let layer = Layer::of(
            &envelope,
            layout::DSSE_MEDIA_TYPE,
            BTreeMap::from([
                (layout::SIGNATURE_ANNOTATION.to_string(), String::new()),
                (
                    layout::PREDICATE_TYPE_ANNOTATION.to_string(),
                    predicate.predicate_type.clone(),
                ),
            ]),
        );
        let referrer = self.referrer(&envelope, &layer)?;
        let mut a = self.attach(Kind::Attestations, &envelope, &layer)?;
        a.predicate_type = Some(predicate.predicate_type.clone());
        a.referrer = referrer;
        self.step(&format!(
            "attested {} ({}) under {}{}",
            self.at(),
            predicate.predicate_type,
            a.reference,
            match &a.referrer {
                Some(d) => format!(" and as its referrer {d}"),
                None => String::new(),
            }
        ));
        Ok(a)
    }

    /// Push the attestation as a referrer of the image when the registry
    /// serves the referrers API (probed first); `None` otherwise.
    fn referrer(&self, envelope: &[u8], layer: &Layer) -> Result<Option<String>> {
        let d = &self.manifest.digest;
        let supported = match self.repo.referrers_api(d) {
            Ok(s) => s,
            Err(e) => {
                self.step(&format!(
                    "warning: the referrers API could not be probed ({e}); the attestation \
                     goes under the tag alone"
                ));
                false
            }
        };
        if !supported {
            return Ok(None);
        }
        self.repo.put_blob(envelope)?;
        self.repo.put_blob(layout::EMPTY_CONFIG)?;
        let m = layout::referrer(
            layer,
            (
                &self.manifest.media_type,
                d,
                self.manifest.bytes.len() as u64,
            ),
        );
        let digest = crate::sha256_digest(&m);
        self.repo
            .put_manifest(&digest, m, layout::OCI_MANIFEST)
            .map(Some)
            .map_err(SignError::from)
    }

    /// Check the image's signatures (and attestations) against `key`.
    pub fn verify(&self, key: &PublicKey, attestations: bool) -> Result<Verification> {
        let (_, sigs) = self.existing(Kind::Signatures)?;
        let signatures: Vec<Checked> = sigs
            .iter()
            .filter(|(_, l)| l.media_type == layout::SIMPLE_SIGNING_MEDIA_TYPE)
            .map(|(_, l)| self.check_signature(key, l))
            .collect();
        let atts = if attestations {
            let (_, atts) = self.existing(Kind::Attestations)?;
            Some(
                atts.iter()
                    .filter(|(_, l)| l.media_type == layout::DSSE_MEDIA_TYPE)
                    .map(|(_, l)| self.check_attestation(key, l))
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let verified = signatures.iter().any(|c| c.valid)
            && atts
                .as_ref()
                .is_none_or(|a: &Vec<Checked>| a.iter().any(|c| c.valid));
        Ok(Verification {
            reference: self.identity.clone(),
            digest: self.manifest.digest.clone(),
            verified,
            signatures,
            attestations: atts,
        })
    }

    fn check_signature(&self, key: &PublicKey, l: &Layer) -> Checked {
        let mut c = Checked {
            layer: l.digest.clone(),
            valid: false,
            identity: None,
            predicate_type: None,
            error: None,
        };
        match self.signature_claim(key, l) {
            Ok(identity) => {
                c.valid = true;
                c.identity = Some(identity);
            }
            Err(e) => c.error = Some(e.to_string()),
        }
        c
    }

    /// The identity a valid signature names.
    fn signature_claim(&self, key: &PublicKey, l: &Layer) -> std::result::Result<String, Invalid> {
        let sig = l
            .annotations
            .get(layout::SIGNATURE_ANNOTATION)
            .ok_or(Invalid::NoSignature(layout::SIGNATURE_ANNOTATION))?;
        let sig = B64.decode(sig).map_err(Invalid::Base64)?;
        let payload = self
            .repo
            .blob(&l.digest, l.size, PAYLOAD_MAX)
            .map_err(Invalid::Blob)?;
        key.verify(&payload, &sig)?;
        let claim = payload::parse(&payload).map_err(Invalid::Payload)?;
        if claim.digest != self.manifest.digest {
            return Err(Invalid::OtherImage {
                found: claim.digest,
                expected: self.manifest.digest.clone(),
            });
        }
        Ok(claim.docker_reference)
    }

    fn check_attestation(&self, key: &PublicKey, l: &Layer) -> Checked {
        let annotated = l
            .annotations
            .get(layout::PREDICATE_TYPE_ANNOTATION)
            .cloned();
        let mut c = Checked {
            layer: l.digest.clone(),
            valid: false,
            identity: None,
            predicate_type: annotated.clone(),
            error: None,
        };
        match self.attestation(key, l) {
            Ok(s) if annotated.as_ref().is_some_and(|a| *a != s.predicate_type) => {
                c.error = Some(format!(
                    "its predicate type is {:?}, its annotation says {:?}",
                    s.predicate_type,
                    annotated.unwrap_or_default()
                ));
            }
            Ok(s) => {
                c.valid = true;
                c.predicate_type = Some(s.predicate_type);
            }
            Err(e) => c.error = Some(e.to_string()),
        }
        c
    }

    /// The statement of a valid attestation.
    fn attestation(&self, key: &PublicKey, l: &Layer) -> std::result::Result<Statement, Invalid> {
        let blob = self
            .repo
            .blob(&l.digest, l.size, ENVELOPE_MAX)
            .map_err(Invalid::Blob)?;
        let env = Envelope::parse(&blob)?;
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(Invalid::Payload(format!(
                "has payload type {:?}, not {IN_TOTO_PAYLOAD_TYPE:?}",
                env.payload_type
            )));
        }
        let payload = env.verify(key)?;
        let s = Statement::parse(&payload).map_err(Invalid::Payload)?;
        if !s.is_about(&self.manifest.digest) {
            let found = s
                .subject
                .iter()
                .filter_map(|s| s.digest.get("sha256").map(|h| format!("sha256:{h}")))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Invalid::OtherImage {
                found: if found.is_empty() {
                    "no sha256 subject".to_string()
                } else {
                    found
                },
                expected: self.manifest.digest.clone(),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    /// One request a fake registry saw: method, path, body.
    type Request = (String, String, Vec<u8>);
    /// The requests a fake registry saw.
    type Seen = Arc<Mutex<Vec<Request>>>;

    /// A registry on 127.0.0.1 with one image (`nodes/n:v1`, `manifest`),
    /// no blobs, accepting every upload and manifest; serving the
    /// referrers API when `referrers`. One request per connection.
    fn fake_registry(manifest: Vec<u8>, referrers: bool) -> (String, Seen) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                let _ = r.read_exact(&mut body);
                let digest = crate::sha256_digest(&body);
                let (status, headers, answer): (&str, String, Vec<u8>) =
                    match (method.as_str(), path.as_str()) {
                        ("GET", "/v2/") => ("200 OK", String::new(), Vec::new()),
                        ("GET", "/v2/nodes/n/manifests/v1") => (
                            "200 OK",
                            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                            manifest.clone(),
                        ),
                        ("GET", p) if p.starts_with("/v2/nodes/n/referrers/") && referrers => (
                            "200 OK",
                            "Content-Type: application/vnd.oci.image.index.v1+json\r\n".into(),
                            br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
                        ),
                        ("POST", "/v2/nodes/n/blobs/uploads/") => (
                            "202 Accepted",
                            "Location: /v2/nodes/n/blobs/uploads/u1\r\n".into(),
                            Vec::new(),
                        ),
                        ("PUT", p) if p.starts_with("/v2/nodes/n/blobs/uploads/u1") => (
                            "201 Created",
                            "Location: /v2/nodes/n/blobs/x\r\n".into(),
                            Vec::new(),
                        ),
                        ("PUT", p) if p.starts_with("/v2/nodes/n/manifests/") => (
                            "201 Created",
                            format!(
                                "Location: /v2/nodes/n/manifests/{digest}\r\nDocker-Content-Digest: {digest}\r\n"
                            ),
                            Vec::new(),
                        ),
                        _ => ("404 Not Found", String::new(), Vec::new()),
                    };
                log.lock().unwrap().push((method, path, body));
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = c.write_all(&answer);
            }
        });
        (addr, seen)
    }

    fn attest_on(referrers: bool) -> (Attached, Vec<Request>, String) {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2},"layers":[]}"#.to_vec();
        let digest = crate::sha256_digest(&manifest);
        let (addr, seen) = fake_registry(manifest, referrers);
        let opts = RegistryOptions {
            insecure: vec![addr.clone()],
            cache_dir: None,
            meter: nodeimg_fetch::Meter::quiet(),
            offline: false,
        };
        let t = Target::open(&format!("{addr}/nodes/n:v1"), &opts, true).unwrap();
        assert_eq!(t.manifest.digest, digest);
        let p = Predicate {
            predicate_type: crate::intoto::SPDX_DOCUMENT.into(),
            predicate: serde_json::json!({"spdxVersion": "SPDX-2.3"}),
        };
        let a = t.attest(&PrivateKey::generate(), &p).unwrap();
        let seen = seen.lock().unwrap().clone();
        (a, seen, digest)
    }

    #[test]
    fn attestations_become_referrers_where_the_registry_serves_the_api() {
        let (a, seen, digest) = attest_on(true);
        let puts: Vec<&Request> = seen
            .iter()
            .filter(|(m, p, _)| m == "PUT" && p.contains("/manifests/"))
            .collect();
        assert_eq!(puts.len(), 2, "the referrer, then the tag: {seen:?}");
        let referrer: serde_json::Value = serde_json::from_slice(&puts[0].2).unwrap();
        assert!(puts[0].1.ends_with(&crate::sha256_digest(&puts[0].2)));
        assert_eq!(referrer["subject"]["digest"], digest.as_str());
        assert_eq!(
            referrer["subject"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(referrer["artifactType"], layout::DSSE_MEDIA_TYPE);
        assert_eq!(
            referrer["annotations"]["predicateType"],
            "https://spdx.dev/Document"
        );
        assert_eq!(a.referrer, Some(crate::sha256_digest(&puts[0].2)));
        // The tag last, after every blob.
        let tag = layout::tag(Kind::Attestations, &digest);
        assert!(puts[1].1.ends_with(&tag), "{}", puts[1].1);
        let last_blob = seen
            .iter()
            .rposition(|(m, p, _)| m == "PUT" && p.contains("/blobs/"))
            .unwrap();
        let tag_at = seen
            .iter()
            .position(|(m, p, _)| m == "PUT" && p.ends_with(&tag))
            .unwrap();
        assert!(last_blob < tag_at);
        // The envelope uploaded is a DSSE envelope of an SPDX statement.
        assert_eq!(
            a.predicate_type.as_deref(),
            Some("https://spdx.dev/Document")
        );
    }

    #[test]
    fn without_the_referrers_api_the_tag_alone() {
        let (a, seen, digest) = attest_on(false);
        assert!(a.referrer.is_none());
        let probes = seen
            .iter()
            .filter(|(m, p, _)| m == "GET" && p.contains("/referrers/"))
            .count();
        assert_eq!(probes, 1, "asked once: {seen:?}");
        let puts: Vec<&String> = seen
            .iter()
            .filter(|(m, p, _)| m == "PUT" && p.contains("/manifests/"))
            .map(|(_, p, _)| p)
            .collect();
        assert_eq!(puts.len(), 1, "{puts:?}");
        assert!(puts[0].ends_with(&layout::tag(Kind::Attestations, &digest)));
    }
}
