//! Small artifacts next to an image in its repository (signatures,
//! attestations): manifests read and written by tag or digest, blobs small
//! enough to be held in memory, and whether the registry serves the OCI 1.1
//! referrers API.
//!
//! Everything read is bounded and checked against its digest, as pulls
//! are; writes go through the same client, retries and credentials as
//! pushes.

use std::io::Read as _;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::Reference;

use crate::error::{Refusal, RegistryError, Result};
use crate::{
    auth_for, check_blob_received, check_blob_request, check_digest, media_type_of,
    parse_reference, put_manifest, sha256_digest, Fetch, RegistryOptions, Session, JSON_MAX,
};

/// A manifest (or index) as a registry serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of its bytes (`sha256:...`).
    pub digest: String,
    /// Its media type, as it says (an OCI document may leave it out: then
    /// the OCI type its shape says).
    pub media_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Manifest {
    fn of(bytes: Vec<u8>) -> Manifest {
        Manifest {
            digest: sha256_digest(&bytes),
            media_type: media_type_of(&bytes),
            bytes,
        }
    }
}

/// The index media type a referrers answer has.
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Whether a registry's answer to `GET /v2/<name>/referrers/<digest>`
/// says it serves the OCI 1.1 referrers API: a 200 with an image index.
/// A registry that serves it never answers 404 (the distribution
/// specification's rule); anything else (404, 405, an error page, another
/// type) is a registry without it, whose clients read the tag schema
/// instead.
pub fn referrers_supported(status: u16, content_type: Option<&str>) -> bool {
    let ct = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    status == 200 && ct.as_deref() == Some(INDEX_TYPE)
}

/// One repository of a registry, named by a reference (`HOST/REPO:TAG` or
/// `@sha256:...`), with a session logged in to it.
pub struct Repository {
    s: Session,
    r: Reference,
}

impl Repository {
    /// Open the repository of `reference`; `write`: for pushes (answers
    /// may take as long as an upload).
    pub fn open(reference: &str, opts: &RegistryOptions, write: bool) -> Result<Repository> {
        let r = parse_reference(reference).map_err(|e| RegistryError::Reference {
            role: "",
            source: e,
        })?;
        let s = if write {
            Session::uploading(opts)?
        } else {
            Session::new(opts)?
        };
        s.login(&r)?;
        Ok(Repository { s, r })
    }

    /// The reference it was opened with.
    pub fn reference(&self) -> &Reference {
        &self.r
    }

    /// Where progress goes.
    pub fn meter(&self) -> &nodeimg_fetch::Meter {
        &self.s.meter
    }

    /// `HOST/REPO`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.r.registry(), self.r.repository())
    }

    fn at(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            self.r.clone_with_digest(tag_or_digest.to_string())
        } else {
            Reference::with_tag(
                self.r.registry().to_string(),
                self.r.repository().to_string(),
                tag_or_digest.to_string(),
            )
        }
    }

    /// The manifest the reference names (by digest: checked against it).
    pub fn image(&self) -> Result<Manifest> {
        let what = self.r.whole();
        Ok(Manifest::of(self.s.manifest(&self.r, &what)?))
    }

    /// The manifest under `tag_or_digest` in this repository, or `None`
    /// when the registry has none there (404).
    pub fn manifest(&self, tag_or_digest: &str) -> Result<Option<Manifest>> {
        let r = self.at(tag_or_digest);
        let what = r.whole();
        let auth = auth_for(r.resolve_registry())?;
        let body = match self.s.retry_when(
            &format!("fetching the manifest of {what}"),
            |s| s.fetch_manifest(&r, &auth),
            Fetch::again,
            Fetch::text,
        ) {
            Ok(b) => b,
            Err(f) if matches!(f.error, Fetch::Status(404, _)) => return Ok(None),
            Err(f) => {
                return Err(RegistryError::Fetch {
                    what,
                    action: f.action,
                    attempts: f.attempts,
                    source: f.error,
                })
            }
        };
        if let Some(d) = r.digest() {
            let found = sha256_digest(&body);
            if found != d {
                return Err(RegistryError::refused(
                    what,
                    Refusal::ManifestMismatch {
                        expected: d.to_string(),
                        found,
                    },
                ));
            }
        }
        Ok(Some(Manifest::of(body)))
    }

    /// Blob `digest` of `size` bytes, whole, when it is at most `max`
    /// bytes; checked against its digest and size.
    pub fn blob(&self, digest: &str, size: u64, max: u64) -> Result<Vec<u8>> {
        let what = self.r.whole();
        check_blob_request(&what, digest, size, max, |digest, size| {
            Refusal::JsonTooLarge { digest, size }
        })?;
        let body = self
            .s
            .retry(&format!("downloading blob {digest}"), |s| {
                s.rt.block_on(bounded_blob(s, &self.r, digest, size))
            })
            .map_err(|f| f.of(what.clone()))?;
        check_blob_received(&what, digest, size, sha256_digest(&body), body.len() as u64)?;
        Ok(body)
    }

    /// Put `bytes` in the repository as a blob, unless it is there;
    /// returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let r = &self.r;
        let present = self
            .s
            .retry(&format!("checking blob {digest}"), |s| {
                s.rt.block_on(s.client.blob_exists(r, &digest))
            })
            .map_err(|f| f.of(r.whole()))?;
        if !present {
            let data = Bytes::copy_from_slice(bytes);
            self.s
                .retry(&format!("uploading blob {digest}"), |s| {
                    s.rt.block_on(s.client.push_blob(r, data.clone(), &digest))
                })
                .map_err(|f| f.of(r.whole()))?;
        }
        Ok(digest)
    }

    /// Put a manifest of type `media_type` under `tag_or_digest` (a digest
    /// must be the body's own); returns its digest.
    pub fn put_manifest(
        &self,
        tag_or_digest: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<String> {
        let r = self.at(tag_or_digest);
        let what = r.whole();
        put_manifest(&self.s, &r, body, media_type, &what)
    }

    /// Whether the registry serves the referrers API for this repository
    /// (see [`referrers_supported`]), asked about the manifest `digest`.
    pub fn referrers_api(&self, digest: &str) -> Result<bool> {
        let what = self.r.whole();
        check_digest(digest).map_err(|e| RegistryError::Digest {
            what: what.clone(),
            source: e,
        })?;
        let auth = auth_for(self.r.resolve_registry())?;
        let answer = self.s.retry_when(
            &format!("asking {} for the referrers of {digest}", self.name()),
            |s| {
                let res = s.get(&self.r, &auth, &format!("referrers/{digest}"), INDEX_TYPE)?;
                let status = res.status().as_u16();
                if crate::policy::transient_status(status) {
                    return Err(Fetch::Status(status, String::new()));
                }
                let ct = res
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                // The answer itself is not needed: read a little of it so
                // that the connection can be reused.
                let _ = res
                    .into_body()
                    .into_reader()
                    .take(64 << 10)
                    .read_to_end(&mut Vec::new());
                Ok((status, ct))
            },
            Fetch::again,
            Fetch::text,
        );
        match answer {
            Ok((status, ct)) => Ok(referrers_supported(status, ct.as_deref())),
            Err(f) => Err(RegistryError::Fetch {
                what,
                action: f.action,
                attempts: f.attempts,
                source: f.error,
            }),
        }
    }
}

/// Blob `digest` of `size` bytes from the registry into memory, refusing
/// more than `size` bytes.
async fn bounded_blob(
    s: &Session,
    r: &Reference,
    digest: &str,
    size: u64,
) -> std::result::Result<Vec<u8>, oci_client::errors::OciDistributionError> {
    use oci_client::errors::OciDistributionError as E;
    let mut stream = s.client.pull_blob_stream(r, digest).await?;
    let mut body = Vec::with_capacity(usize::try_from(size.min(JSON_MAX as u64)).unwrap_or(0));
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(E::IoError)?;
        if body.len() as u64 + chunk.len() as u64 > size {
            return Err(E::GenericError(Some(format!(
                "the registry sent more than the {size} bytes of blob {digest}"
            ))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_referrers_api_is_used_only_when_the_registry_answers_an_index() {
        // An OCI 1.1 registry: an index, even an empty one.
        assert!(referrers_supported(200, Some(INDEX_TYPE)));
        assert!(referrers_supported(
            200,
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8")
        ));
        // CNCF distribution 2.x (Debian's docker-registry): 404 page not found.
        assert!(!referrers_supported(404, Some("text/plain; charset=utf-8")));
        assert!(!referrers_supported(404, None));
        // Not allowed, or an error, or a 200 that is not an index (a
        // catch-all web server in front of the registry).
        assert!(!referrers_supported(405, Some(INDEX_TYPE)));
        assert!(!referrers_supported(500, Some(INDEX_TYPE)));
        assert!(!referrers_supported(200, Some("text/html")));
        assert!(!referrers_supported(200, None));
    }
}
