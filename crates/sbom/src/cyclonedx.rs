//! CycloneDX 1.6 JSON: the image is the BOM's `metadata.component` (a
//! `container`); its packages (`library` components with their purl as
//! `bom-ref`) and files (`file` components) follow, and the image depends
//! on each package.
//!
//! - `serialNumber` is `urn:uuid:` and a UUID (version 5) of the image
//!   digest, `metadata.timestamp` the image's time: the same image gives
//!   the same document, byte for byte.
//! - A package: version, purl, `licenses` (one SPDX expression), the
//!   SHA-256 of the `.deb` or `.rpm` nodeimg installed (`hashes`, and the
//!   `distribution` reference to its URL), and `nodeimg:` properties: the
//!   layer it arrived in, the repository, the source package.
//! - A file: SHA-1 and SHA-256, and `nodeimg:` properties: the layer that
//!   wrote it, the recipe item, the package whose file it replaces.

use serde_json::{json, Value};

use crate::{FileRecord, Package, Sbom};

/// A UUID (version 5) of the image digest for the document `kind`.
pub(crate) fn uuid_of(s: &Sbom, kind: &str) -> uuid::Uuid {
    let name = format!("urn:nodeimg:{kind}:sha256:{}", s.digest_hex());
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
}

/// The CycloneDX document of `s`.
pub fn document(s: &Sbom) -> Value {
    let mut refs = std::collections::BTreeSet::new();
    let mut components = Vec::new();
    let mut depends = Vec::new();
    for p in &s.packages {
        let mut r = s.purl(p);
        while !refs.insert(r.clone()) {
            r.push('#');
        }
        depends.push(json!(r));
        components.push(package(s, p, &r));
    }
    for f in &s.files {
        components.push(file(s, f));
    }
    let mut image_props = vec![prop("nodeimg:digest", &s.image.digest)];
    if let Some(a) = &s.image.architecture {
        image_props.push(prop("nodeimg:architecture", a));
    }
    if let Some(os) = &s.image.os {
        image_props.push(prop("nodeimg:os-release:id", &os.id));
        if let Some(v) = &os.version_id {
            image_props.push(prop("nodeimg:os-release:version-id", v));
        }
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_of(s, "cyclonedx")),
        "version": 1,
        "metadata": {
            "timestamp": nodeimg_image::epoch::rfc3339(s.image.created),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "nodeimg",
                    "version": env!("CARGO_PKG_VERSION"),
                }],
            },
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": s.image.name,
                "version": s.image.digest,
                "properties": image_props,
            },
        },
        "components": components,
        "dependencies": [{ "ref": "image", "dependsOn": depends }],
    })
}

fn prop(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn layer_props(s: &Sbom, index: usize, out: &mut Vec<Value>) {
    out.push(prop("nodeimg:layer", &(index + 1).to_string()));
    if let Some(l) = s.image.layers.get(index) {
        out.push(prop("nodeimg:layer:name", &l.name));
        out.push(prop("nodeimg:layer:digest", &l.digest));
    }
}

fn package(s: &Sbom, p: &Package, bom_ref: &str) -> Value {
    let mut v = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": p.name,
        "version": p.version,
        "purl": s.purl(p),
    });
    if let Some(l) = &p.license {
        v["licenses"] = json!([{ "expression": l }]);
    }
    let mut props = Vec::new();
    if let Some(d) = &p.download {
        let hashes = json!([{ "alg": "SHA-256", "content": d.sha256 }]);
        v["hashes"] = hashes.clone();
        v["externalReferences"] = json!([{
            "type": "distribution",
            "url": d.url,
            "hashes": hashes,
        }]);
        props.push(prop("nodeimg:repository", &d.repository));
    }
    if let Some(l) = p.layer {
        layer_props(s, l, &mut props);
    }
    if let Some(src) = &p.source {
        props.push(prop("nodeimg:source-package", src));
    }
    if !props.is_empty() {
        v["properties"] = Value::Array(props);
    }
    v
}

fn file(s: &Sbom, f: &FileRecord) -> Value {
    let mut props = Vec::new();
    layer_props(s, f.layer, &mut props);
    if let Some(o) = &f.origin {
        props.push(prop("nodeimg:recipe-item", o));
    }
    if let Some(p) = &f.package {
        props.push(prop("nodeimg:replaces-package-file", p));
    }
    json!({
        "type": "file",
        "bom-ref": format!("file:{}", f.path),
        "name": f.path,
        "hashes": [
            { "alg": "SHA-1", "content": f.sha1 },
            { "alg": "SHA-256", "content": f.sha256 },
        ],
        "properties": props,
    })
}
