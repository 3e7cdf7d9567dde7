//! The Packer template in `packer/`: a `file` builder makes the rootfs
//! artifact (the fixture base), the `shell-local` post-processor runs
//! nodeimg on it and pushes to a registry on 127.0.0.1; skopeo reads the
//! pushed image back with the digest nodeimg reported.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use nodeimg_e2e::*;

#[test]
fn packer_builds_and_pushes_a_node_image() {
    if !require("packer", "packer") || !require("skopeo", "skopeo") {
        return;
    }
    let Some(base) = fixture_base() else { return };
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let tmp = temp_dir("packer");
    let d = tmp.path();
    let recipe = d.join("node.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"node\"\ntag = \"v1\"\n[[layer]]\nname = \"kernel\"\n\
         modules = { file = \"containerd\", load = [\"overlay\", \"br_netfilter\"] }\n",
    )
    .unwrap();
    let out = d.join("out");
    let template = workspace_root().join("packer/node-image.pkr.hcl");
    let r = run(Command::new("packer")
        .current_dir(d)
        .env("CHECKPOINT_DISABLE", "1")
        .env("PACKER_CONFIG_DIR", d.join(".packer.d"))
        .env("PACKER_CACHE_DIR", d.join("packer_cache"))
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH.to_string())
        .args(["build", "-color=false"])
        .arg(format!("-var=rootfs={}", base.display()))
        .arg(format!("-var=recipe={}", recipe.display()))
        .arg(format!("-var=registry={}", reg.addr))
        .arg("-var=repository=nodes/packer")
        .arg("-var=tag=v1")
        .arg(format!("-var=output_dir={}", out.display()))
        .arg(format!("-var=nodeimg={}", nodeimg_bin().display()))
        .arg("-var=insecure_registry=true")
        .arg(&template))
    .ok();
    // The artifact is the base, as the builder stored it.
    assert_eq!(sha256_file(&out.join("rootfs.tar")), sha256_file(&base));
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("metadata.json")).unwrap()).unwrap();
    let digest = meta["image_digest"].as_str().unwrap().to_string();
    assert!(
        r.stdout.contains(&digest),
        "the post-processor printed it: {r}"
    );
    let dest = reg.docker_ref("nodes/packer:v1");
    let inspect = skopeo_inspect(&dest);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
    // The same recipe on the artifact, built directly: the same image.
    let direct = build_ok(
        d,
        &recipe,
        &d.join("direct"),
        "oci",
        &fixture_base_ref(&out.join("rootfs.tar")),
    );
    assert_eq!(direct, digest);
}
