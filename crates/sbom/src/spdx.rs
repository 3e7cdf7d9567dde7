//! SPDX 2.3 JSON: a document describing the image (a package of purpose
//! `CONTAINER`, which contains its packages) and the image's files no
//! package owns (described by the document itself: SPDX lets a package
//! whose files were not all analysed contain none).
//!
//! - `documentNamespace` is `urn:uuid:` and a UUID (version 5) of the image
//!   digest, `created` the image's time: the same image gives the same
//!   document, byte for byte.
//! - A package: its version, purl (`externalRefs`), declared license (an
//!   SPDX expression; `LicenseRef-` names are listed in
//!   `hasExtractedLicensingInfos`), the URL and SHA-256 of the `.deb` or
//!   `.rpm` nodeimg installed (`downloadLocation`, `checksums`) and the
//!   repository it came from (`sourceInfo`), and its layer (`comment`).
//!   `filesAnalyzed` is false: a package's files are in its database.
//! - A file: its SHA-1 and SHA-256 (SPDX requires SHA-1), its layer and
//!   the recipe item that wrote it (`comment`).

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::{FileRecord, Package, Sbom};

const NOASSERTION: &str = "NOASSERTION";

/// The SPDX document of `s`.
pub fn document(s: &Sbom) -> Value {
    let mut packages = vec![image_package(s)];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut refs: Vec<String> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for p in &s.packages {
        let mut id = package_id(s, p);
        while !ids.insert(id.clone()) {
            id.push('-');
        }
        if let Some(l) = &p.license {
            refs.extend(crate::license::license_refs(l));
        }
        relationships.push(contains(&id));
        packages.push(package(s, p, &id));
    }
    let files: Vec<Value> = s
        .files
        .iter()
        .map(|f| {
            let id = file_id(f);
            relationships.push(json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": id,
            }));
            file(s, f, &id)
        })
        .collect();
    refs.sort();
    refs.dedup();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": s.image.name,
        "documentNamespace": format!("urn:uuid:{}", crate::cyclonedx::uuid_of(s, "spdx")),
        "creationInfo": {
            "created": nodeimg_image::epoch::rfc3339(s.image.created),
            "creators": [format!("Tool: nodeimg-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
    });
    if !files.is_empty() {
        doc["files"] = Value::Array(files);
    }
    doc["relationships"] = Value::Array(relationships);
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = refs
            .iter()
            .map(|r| {
                let name = r.trim_start_matches("LicenseRef-");
                json!({
                    "licenseId": r,
                    "name": name,
                    "extractedText": format!(
                        "The license packages of this image name \"{name}\", which has no SPDX identifier; its text is in their copyright files."
                    ),
                })
            })
            .collect();
    }
    doc
}

fn contains(id: &str) -> Value {
    json!({
        "spdxElementId": "SPDXRef-Image",
        "relationshipType": "CONTAINS",
        "relatedSpdxElement": id,
    })
}

fn image_package(s: &Sbom) -> Value {
    let mut comment = format!("image {}", s.image.digest);
    if let Some(a) = &s.image.architecture {
        comment.push_str(&format!(", architecture {a}"));
    }
    if let Some(os) = &s.image.os {
        comment.push_str(&format!(
            ", {}",
            os.pretty_name.clone().unwrap_or_else(|| os.id.clone())
        ));
    }
    json!({
        "name": s.image.name,
        "SPDXID": "SPDXRef-Image",
        "versionInfo": s.image.digest,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "comment": comment,
        "primaryPackagePurpose": "CONTAINER",
    })
}

/// `SPDXRef-Package-KIND-NAME-HASH`: the name's characters SPDX does not
/// allow written `-`, and 8 hex digits of the package URL's SHA-256.
fn package_id(s: &Sbom, p: &Package) -> String {
    let purl = s.purl(p);
    let h = hex::encode(Sha256::digest(purl.as_bytes()));
    format!(
        "SPDXRef-Package-{}-{}-{}",
        p.kind,
        id_chars(&p.name),
        &h[..8]
    )
}

fn file_id(f: &FileRecord) -> String {
    let h = hex::encode(Sha256::digest(f.path.as_bytes()));
    format!("SPDXRef-File-{}", &h[..16])
}

fn id_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn package(s: &Sbom, p: &Package, id: &str) -> Value {
    let mut v = json!({
        "name": p.name,
        "SPDXID": id,
        "versionInfo": p.version,
        "downloadLocation": p.download.as_ref().map_or(NOASSERTION, |d| d.url.as_str()),
        "filesAnalyzed": false,
    });
    if let Some(d) = &p.download {
        v["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": d.sha256 }]);
    }
    v["licenseConcluded"] = json!(NOASSERTION);
    v["licenseDeclared"] = json!(p.license.as_deref().unwrap_or(NOASSERTION));
    v["copyrightText"] = json!(NOASSERTION);
    let mut source = Vec::new();
    if let Some(d) = &p.download {
        source.push(format!(
            "installed by nodeimg from repository {}",
            d.repository
        ));
    }
    if let Some(src) = &p.source {
        source.push(format!("source package {src}"));
    }
    if !source.is_empty() {
        v["sourceInfo"] = json!(source.join("; "));
    }
    if let Some(l) = p.layer {
        v["comment"] = json!(format!("arrived in {}", s.layer_text(l)));
    }
    v["externalRefs"] = json!([{
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": s.purl(p),
    }]);
    v
}

fn file(s: &Sbom, f: &FileRecord, id: &str) -> Value {
    let mut comment = format!("written by {}", s.layer_text(f.layer));
    if let Some(o) = &f.origin {
        comment.push_str(&format!(", recipe item {o}"));
    }
    if let Some(p) = &f.package {
        comment.push_str(&format!("; replaces the file of package {p}"));
    }
    json!({
        "fileName": format!(".{}", f.path),
        "SPDXID": id,
        "checksums": [
            { "algorithm": "SHA1", "checksumValue": f.sha1 },
            { "algorithm": "SHA256", "checksumValue": f.sha256 },
        ],
        "licenseConcluded": NOASSERTION,
        "copyrightText": NOASSERTION,
        "comment": comment,
    })
}
