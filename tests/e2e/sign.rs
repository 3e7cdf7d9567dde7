//! Signatures and attestations, against a CNCF distribution registry on
//! 127.0.0.1 and read by programs that are not nodeimg:
//!
//! - sigstore-rs (the sigstore project's Rust client) verifies the images
//!   as `cosign verify --key` does: the `.sig` tag of the digest, each
//!   payload against that digest, a signature by the public key; it
//!   refuses an unsigned image, another key and a manifest changed after
//!   signing. It also opens `nodeimg keygen`'s encrypted key with its
//!   password, and nodeimg signs with a key it wrote.
//! - skopeo (containers/image, the library of podman and CRI-O) finds the
//!   signatures where cosign puts them (`use-sigstore-attachments`) and
//!   copies them with the image; openssl verifies each one (ECDSA P-256
//!   over SHA-256 of the payload) with the public key, the payload naming
//!   the digest skopeo copied.
//! - containers/image's `sigstoreSigned` policy, as skopeo enforces it on a
//!   copy: Debian testing's skopeo (Debian 12's is built with sigstore
//!   disabled; `scripts/install-test-deps` unpacks testing's), with a policy
//!   that requires a signature by the public key, copies the signed image
//!   and refuses an unsigned one, one signed by another key and one whose
//!   manifest changed after signing, each for a reason about its signature.
//! - keys from openssl (P-256, PKCS#8) and from `nodeimg keygen` (cosign's
//!   encrypted format, with its password from NODEIMG_KEY_PASSWORD or
//!   COSIGN_PASSWORD); a P-384 key and a wrong password are refused.
//! - the build's provenance: an in-toto statement in a DSSE envelope under
//!   the `.att` tag, whose signature openssl verifies over the PAE bytes
//!   built here; its subject is the pushed digest, its dependencies the
//!   recipe, the lock and every package with the lock's SHA-256; a changed
//!   payload is refused.
//! - a registry refusing the signature tag leaves the tag as it was and
//!   says why.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use nodeimg_e2e::*;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A recipe on scratch; `value` changes the image.
fn scratch_recipe(dir: &Path, value: u32) -> PathBuf {
    let p = dir.join(format!("node-{value}.toml"));
    fs::write(
        &p,
        format!(
            "[image]\nname = \"node\"\ntag = \"v1\"\n\n[[layer]]\nname = \"kernel\"\n\
             sysctl = {{ file = \"99-k8s\", set = {{ \"net.ipv4.ip_forward\" = {value} }} }}\n"
        ),
    )
    .unwrap();
    p
}

/// The work folder, the registry and the keys: `a` from openssl (PKCS#8
/// P-256), `b` from `nodeimg keygen` (password [`PASSWORD`]), `p384` from
/// openssl.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    reg: TestRegistry,
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
    p384: (PathBuf, PathBuf),
}

const PASSWORD: &str = "correct horse battery staple";

fn setup(label: &str) -> Option<Setup> {
    if !require("skopeo", "skopeo") || !require("openssl", "openssl") {
        return None;
    }
    let reg = TestRegistry::start()?;
    let tmp = temp_dir(label);
    let dir = tmp.path().to_path_buf();
    let a = openssl_key(&dir, "a", "P-256");
    let p384 = openssl_key(&dir, "p384", "P-384");
    let r = run(nodeimg(&dir).env("NODEIMG_KEY_PASSWORD", PASSWORD).args([
        "keygen",
        "--output-key-prefix",
        "b",
    ]))
    .ok();
    assert_eq!(r.stdout, "b.key\nb.pub\n", "{r}");
    let b = (dir.join("b.key"), dir.join("b.pub"));
    Some(Setup {
        _tmp: tmp,
        dir,
        reg,
        a,
        b,
        p384,
    })
}

impl Setup {
    /// `docker://127.0.0.1:PORT/<repo_tag>`.
    fn at(&self, repo_tag: &str) -> String {
        self.reg.docker_ref(repo_tag)
    }

    /// `127.0.0.1:PORT/<repo_tag>`.
    fn bare(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.reg.addr)
    }

    fn nodeimg(&self) -> Command {
        let mut c = nodeimg(&self.dir);
        c.env_remove("NODEIMG_KEY_PASSWORD")
            .env_remove("COSIGN_PASSWORD");
        c
    }

    /// Build `recipe` on scratch and push it to `repo_tag` (with `extra`
    /// arguments); the digest.
    fn build_push(&self, recipe: &Path, out: &str, repo_tag: &str, extra: &[&str]) -> String {
        let r = run(self
            .nodeimg()
            .env("NODEIMG_KEY_PASSWORD", PASSWORD)
            .arg("build")
            .arg(recipe)
            .args(["-o", out, "--push", &self.at(repo_tag)])
            .args(["--insecure-registry", &self.reg.addr])
            .args(extra))
        .ok();
        single_digest_line(&r)
    }

    /// `nodeimg sign REF --key KEY` with `env`.
    fn sign(&self, repo_tag: &str, key: &Path, env: &[(&str, &str)]) -> Run {
        let mut c = self.nodeimg();
        for (k, v) in env {
            c.env(k, v);
        }
        run(c
            .args(["sign", "--json", &self.bare(repo_tag), "--key"])
            .arg(key)
            .args(["--insecure-registry", &self.reg.addr]))
    }

    /// `nodeimg verify REF --key PUB --json [--attestations]`.
    fn verify(&self, repo_tag: &str, public: &Path, attestations: bool) -> (Run, Value) {
        let mut c = self.nodeimg();
        c.args(["verify", "--json", &self.bare(repo_tag), "--key"])
            .arg(public)
            .args(["--insecure-registry", &self.reg.addr]);
        if attestations {
            c.arg("--attestations");
        }
        let r = run(&mut c);
        let v = serde_json::from_str(r.stdout.trim()).unwrap_or(Value::Null);
        (r, v)
    }

    /// skopeo's configuration: a policy and registries.d that reads
    /// sigstore attachments from this registry.
    fn skopeo(&self, policy: &Value) -> Command {
        self.skopeo_as(Path::new("skopeo"), policy)
    }

    /// [`Self::skopeo`] with another skopeo program.
    fn skopeo_as(&self, program: &Path, policy: &Value) -> Command {
        let regd = self.dir.join("registries.d");
        fs::create_dir_all(&regd).unwrap();
        fs::write(
            regd.join("test.yaml"),
            format!(
                "docker:\n  {}:\n    use-sigstore-attachments: true\n",
                self.reg.addr
            ),
        )
        .unwrap();
        let policy_file = self.dir.join(format!(
            "policy-{}.json",
            &sha256_reader(policy.to_string().as_bytes())[7..19]
        ));
        fs::write(&policy_file, policy.to_string()).unwrap();
        let mut c = Command::new(program);
        c.arg("--policy")
            .arg(policy_file)
            .arg("--registries.d")
            .arg(regd);
        c
    }

    /// skopeo copies the image and its signatures into a `dir:` folder;
    /// the folder, the digest of the manifest copied and the signatures.
    fn copied(&self, repo_tag: &str, name: &str) -> (String, Vec<Sigstore>) {
        let out = self.dir.join(name);
        run(self
            .skopeo(&json!({"default": [{"type": "insecureAcceptAnything"}]}))
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(self.at(repo_tag))
            .arg(format!("dir:{}", out.display())))
        .ok();
        let digest = sha256_file(&out.join("manifest.json"));
        (digest, sigstore_signatures(&out))
    }

    /// `skopeo` (a sigstore-capable one) copies `repo_tag` with its
    /// signatures into a `dir:` folder under a policy that requires a
    /// sigstore signature by `public`.
    fn policy_copy(&self, skopeo: &Path, repo_tag: &str, public: &Path, name: &str) -> Run {
        let policy = json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {self.reg.addr.clone(): [
                {"type": "sigstoreSigned", "keyPath": public.display().to_string()}
            ]}}
        });
        run(self
            .skopeo_as(skopeo, &policy)
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(self.at(repo_tag))
            .arg(format!("dir:{}", self.dir.join(name).display())))
    }

    /// The manifest under `repo_tag`, as the registry serves it.
    fn raw_manifest(&self, repo_tag: &str) -> Option<Vec<u8>> {
        let r = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(self.at(repo_tag)));
        (r.code == 0).then(|| r.stdout.into_bytes())
    }

    /// Put `manifest` (with its `blobs`) under `repo_tag`, as a registry
    /// client that is not nodeimg's signer would: through an OCI layout
    /// pushed as it is.
    fn put_manifest(&self, repo_tag: &str, manifest: &[u8], blobs: &[&[u8]]) {
        let layout = self
            .dir
            .join(format!("crafted-{}", &sha256_reader(manifest)[7..19]));
        let store = layout.join("blobs/sha256");
        fs::create_dir_all(&store).unwrap();
        for b in blobs.iter().chain([&manifest]) {
            fs::write(store.join(&sha256_reader(*b)[7..]), b).unwrap();
        }
        let tag = repo_tag.rsplit_once(':').unwrap().1;
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_reader(manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }]});
        fs::write(layout.join("index.json"), index.to_string()).unwrap();
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        run(self
            .nodeimg()
            .arg("push")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(self.at(repo_tag))
            .args(["--insecure-registry", &self.reg.addr, "-q"]))
        .ok();
    }
}

/// A signature as containers/image stores it in a `dir:` copy.
#[derive(Debug)]
struct Sigstore {
    mime_type: String,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// The sigstore signatures of a `dir:` copy (`signature-N`: a 0 byte,
/// `sigstore-json`, a newline, then JSON of the MIME type, the payload and
/// the annotations).
fn sigstore_signatures(dir: &Path) -> Vec<Sigstore> {
    let mut out = Vec::new();
    for n in 1.. {
        let Ok(bytes) = fs::read(dir.join(format!("signature-{n}"))) else {
            break;
        };
        let body = bytes
            .strip_prefix(b"\x00sigstore-json\n".as_slice())
            .unwrap_or_else(|| panic!("signature-{n} is not a sigstore signature"));
        let v: Value = serde_json::from_slice(body).unwrap();
        out.push(Sigstore {
            mime_type: v["mimeType"].as_str().unwrap().to_string(),
            payload: B64.decode(v["payload"].as_str().unwrap()).unwrap(),
            signature: B64
                .decode(
                    v["annotations"]["dev.cosignproject.cosign/signature"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap(),
        });
    }
    out
}

/// Does openssl verify `sig` (DER) as `public`'s ECDSA signature of
/// SHA-256(`data`)?
fn openssl_verifies(dir: &Path, public: &Path, data: &[u8], sig: &[u8]) -> bool {
    let d = tempfile::tempdir_in(dir).unwrap();
    fs::write(d.path().join("data.bin"), data).unwrap();
    fs::write(d.path().join("sig.der"), sig).unwrap();
    let r = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(d.path().join("sig.der"))
        .arg(d.path().join("data.bin")));
    assert!(
        r.code == 0 || r.stdout.contains("Verification failure"),
        "openssl did not run as expected: {r}"
    );
    r.code == 0 && r.stdout.contains("Verified OK")
}

/// The digest a simple-signing payload names, and its identity.
fn claim(payload: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(v["critical"]["type"], "cosign container image signature");
    assert_eq!(v["optional"], Value::Null);
    (
        v["critical"]["image"]["docker-manifest-digest"]
            .as_str()
            .unwrap()
            .to_string(),
        v["critical"]["identity"]["docker-reference"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// sigstore-rs, the sigstore project's Rust client, verifying `reference`
/// (`HOST/REPO:TAG` on the test registry at `addr`) as cosign does with a
/// public key: the `.sig` tag of the digest the tag names, each layer's
/// payload checked against its digest and that image digest, and at least
/// one signed by `public`. `Err` with its words when it refuses.
fn sigstore_rs_verifies(addr: &str, reference: &str, public: &Path) -> Result<(), String> {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraint};
    use sigstore::cosign::CosignCapabilities as _;
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![addr.to_string()]),
            ..ClientConfig::default()
        };
        let mut client = sigstore::cosign::ClientBuilder::default()
            .with_oci_client_config(config)
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let image: OciReference = reference
            .parse()
            .map_err(|e| format!("{reference}: {e:?}"))?;
        let layers = client
            .trusted_signature_layers(&Auth::Anonymous, &image)
            .await
            .map_err(|e| format!("signature layers: {e}"))?;
        let key = fs::read(public).unwrap();
        let verifier: Box<dyn VerificationConstraint> = Box::new(
            PublicKeyVerifier::new(&key, &sigstore::crypto::SigningScheme::default())
                .map_err(|e| format!("key: {e}"))?,
        );
        let constraints = [verifier];
        sigstore::cosign::verify_constraints(&layers, constraints.iter())
            .map_err(|e| format!("{} layer(s), none signed by the key: {e}", layers.len()))
    })
}

/// A refusal by containers/image's signature policy (not a failure of
/// another kind), with the words that say why.
fn refused_for(r: &Run, why: &str) -> bool {
    r.code != 0 && r.stderr.contains("Source image rejected") && r.stderr.contains(why)
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one story: sign, append, change, move"
)]
fn signatures_are_read_by_skopeo_and_verified_by_openssl() {
    let Some(s) = setup("sign") else { return };
    let d = &s.dir;
    // Built, pushed and signed with the openssl key in one go.
    let signed = s.build_push(
        &scratch_recipe(d, 1),
        "node",
        "nodes/node:v1",
        &["--sign-key", s.a.0.to_str().unwrap()],
    );
    let (copied, sigs) = s.copied("nodes/node:v1", "copy-1");
    assert_eq!(copied, signed, "skopeo copied the image pushed");
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(
        sigs[0].mime_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert_eq!(
        claim(&sigs[0].payload),
        (signed.clone(), s.bare("nodes/node:v1"))
    );
    assert!(openssl_verifies(
        d,
        &s.a.1,
        &sigs[0].payload,
        &sigs[0].signature
    ));
    // Negative control: the other key does not verify it.
    assert!(!openssl_verifies(
        d,
        &s.b.1,
        &sigs[0].payload,
        &sigs[0].signature
    ));
    let (r, v) = s.verify("nodes/node:v1", &s.a.1, false);
    assert_eq!((r.code, &v["verified"]), (0, &json!(true)), "{r}");
    // sigstore-rs verifies it with the key, and not with another.
    let node = s.bare("nodes/node:v1");
    let addr = s.reg.addr.as_str();
    sigstore_rs_verifies(addr, &node, &s.a.1).unwrap();
    assert!(sigstore_rs_verifies(addr, &node, &s.b.1).is_err());
    let (r, v) = s.verify("nodes/node:v1", &s.b.1, false);
    assert_eq!((r.code, &v["verified"]), (1, &json!(false)), "{r}");
    assert!(r.stderr.contains("no valid signature by this key"), "{r}");

    // The keygen key signs too: appended, the first kept; each verifies
    // with its own key only.
    let r = s
        .sign(
            "nodes/node:v1",
            &s.b.0,
            &[("NODEIMG_KEY_PASSWORD", PASSWORD)],
        )
        .ok();
    let j: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(j["digest"], signed.as_str());
    assert_eq!(
        (&j["signature"]["count"], &j["signature"]["added"]),
        (&json!(2), &json!(true))
    );
    let (_, sigs) = s.copied("nodes/node:v1", "copy-2");
    assert_eq!(sigs.len(), 2);
    assert!(openssl_verifies(
        d,
        &s.a.1,
        &sigs[0].payload,
        &sigs[0].signature
    ));
    assert!(openssl_verifies(
        d,
        &s.b.1,
        &sigs[1].payload,
        &sigs[1].signature
    ));
    assert!(!openssl_verifies(
        d,
        &s.a.1,
        &sigs[1].payload,
        &sigs[1].signature
    ));
    assert_eq!(s.verify("nodes/node:v1", &s.b.1, false).0.code, 0);
    sigstore_rs_verifies(addr, &node, &s.b.1).unwrap();
    sigstore_rs_verifies(addr, &node, &s.a.1).unwrap();
    // The same key again (its password from cosign's variable): nothing added.
    let r = s
        .sign("nodes/node:v1", &s.b.0, &[("COSIGN_PASSWORD", PASSWORD)])
        .ok();
    let j: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (&j["signature"]["count"], &j["signature"]["added"]),
        (&json!(2), &json!(false))
    );

    // Negative control: an unsigned image has no signature to copy, and
    // does not verify.
    let unsigned = s.build_push(&scratch_recipe(d, 2), "node-2", "nodes/plain:v1", &[]);
    let (copied, sigs) = s.copied("nodes/plain:v1", "copy-3");
    assert_eq!((copied, sigs.len()), (unsigned, 0));
    let (r, v) = s.verify("nodes/plain:v1", &s.a.1, false);
    assert_eq!(
        (r.code, v["signatures"].as_array().map(Vec::len)),
        (1, Some(0)),
        "{r}"
    );
    assert!(sigstore_rs_verifies(addr, &s.bare("nodes/plain:v1"), &s.a.1).is_err());

    // Negative control: the manifest changes after signing (another image
    // pushed under the signed tag). Its signature tag is empty...
    let old_sig = s
        .raw_manifest(&format!("nodes/node:{}.sig", signed.replace(':', "-")))
        .unwrap();
    let changed = s.build_push(&scratch_recipe(d, 3), "node-3", "nodes/node:v1", &[]);
    assert_ne!(changed, signed);
    let (copied, sigs) = s.copied("nodes/node:v1", "copy-4");
    assert_eq!((copied.as_str(), sigs.len()), (changed.as_str(), 0));
    assert_eq!(s.verify("nodes/node:v1", &s.a.1, false).0.code, 1);
    assert!(sigstore_rs_verifies(addr, &node, &s.a.1).is_err());
    // ... and the old signatures put under it name the old digest: the
    // signature is intact, the digest is not the image's.
    let m: Value = serde_json::from_slice(&old_sig).unwrap();
    let blobs: Vec<Vec<u8>> = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|b| fs::read(s.reg.blob_data(b["digest"].as_str().unwrap())).unwrap())
        .collect();
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    s.put_manifest(
        &format!("nodes/node:{}.sig", changed.replace(':', "-")),
        &old_sig,
        &refs,
    );
    let (copied, sigs) = s.copied("nodes/node:v1", "copy-5");
    assert_eq!(sigs.len(), 2);
    assert!(openssl_verifies(
        d,
        &s.a.1,
        &sigs[0].payload,
        &sigs[0].signature
    ));
    assert_eq!(claim(&sigs[0].payload).0, signed);
    assert_ne!(
        claim(&sigs[0].payload).0,
        copied,
        "the payload names another image"
    );
    let (r, v) = s.verify("nodes/node:v1", &s.a.1, false);
    assert_eq!(r.code, 1, "{r}");
    let why = v["signatures"][0]["error"].as_str().unwrap();
    assert!(
        why.contains(&format!("it is for {signed}, not {changed}")),
        "{why}"
    );
    let e = sigstore_rs_verifies(addr, &node, &s.a.1).unwrap_err();
    eprintln!("sigstore-rs refuses the moved signatures: {e}");

    // containers/image's sigstoreSigned policy, as skopeo enforces it.
    let Some(skopeo) = sigstore_skopeo() else {
        return;
    };
    // The moved signatures name another digest.
    let r = s.policy_copy(&skopeo, "nodes/node:v1", &s.a.1, "policy-changed");
    assert!(
        refused_for(&r, "does not match"),
        "a changed manifest is refused: {r}"
    );
    let r = s.policy_copy(&skopeo, "nodes/plain:v1", &s.a.1, "policy-unsigned");
    assert!(
        refused_for(&r, "no signature exists"),
        "an unsigned image is refused: {r}"
    );
    let signed_again = s.build_push(
        &scratch_recipe(d, 1),
        "node-again",
        "nodes/node:v1",
        &["--sign-key", s.a.0.to_str().unwrap()],
    );
    assert_eq!(signed_again, signed, "the same recipe, the same image");
    let r = s.policy_copy(&skopeo, "nodes/node:v1", &s.p384.1, "policy-other");
    assert!(refused_for(&r, "signature"), "another key is refused: {r}");
    let r = s.policy_copy(&skopeo, "nodes/node:v1", &s.a.1, "policy-signed");
    assert_eq!(r.code, 0, "the signed image is accepted: {r}");
    assert_eq!(
        sha256_file(&d.join("policy-signed/manifest.json")),
        signed,
        "skopeo copied the signed image"
    );
    // The keygen key's signature, appended beside the first, is accepted
    // by a policy that names that key only.
    let r = s.policy_copy(&skopeo, "nodes/node:v1", &s.b.1, "policy-keygen");
    assert_eq!(r.code, 0, "the keygen key's signature is there too: {r}");
    // An image signed by the keygen key only: refused by a policy that
    // names the openssl key, accepted by one that names its own.
    s.sign(
        "nodes/plain:v1",
        &s.b.0,
        &[("NODEIMG_KEY_PASSWORD", PASSWORD)],
    )
    .ok();
    let r = s.policy_copy(&skopeo, "nodes/plain:v1", &s.a.1, "policy-by-other");
    assert!(
        refused_for(&r, "signature"),
        "an image signed by another key is refused: {r}"
    );
    let r = s.policy_copy(&skopeo, "nodes/plain:v1", &s.b.1, "policy-by-own");
    assert_eq!(r.code, 0, "the same image under its own key: {r}");
}

/// A recipe installing containerd from the test repository, its key beside
/// it; locked.
fn packages_recipe(s: &Setup, repos: &repo::SeedRepos) -> PathBuf {
    let d = &s.dir;
    fs::copy(&repos.key, d.join("debian.asc")).unwrap();
    let recipe = d.join("runtime.toml");
    fs::write(
        &recipe,
        format!(
            "[image]\nname = \"runtime\"\ntag = \"v1\"\n\n[[layer]]\nname = \"runtime\"\n\
             packages = [\"containerd\"]\n\n[[layer.apt-source]]\nname = \"debian\"\n\
             uris = [\"{}\"]\nsuites = [\"bookworm\"]\ncomponents = [\"main\"]\nkey = \"debian.asc\"\n",
            repo::DEBIAN_URL
        ),
    )
    .unwrap();
    recipe
}

/// The envelope of the only attestation of `digest` under `repo`, and its
/// annotations.
fn attestation_layers(s: &Setup, repo: &str, digest: &str) -> (Value, Vec<Vec<u8>>) {
    let m = s
        .raw_manifest(&format!("{repo}:{}.att", digest.replace(':', "-")))
        .expect("an attestation manifest");
    let m: Value = serde_json::from_slice(&m).unwrap();
    let envelopes = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| fs::read(s.reg.blob_data(l["digest"].as_str().unwrap())).unwrap())
        .collect();
    (m, envelopes)
}

/// DSSE's pre-authentication encoding, written out here.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// The base: `SeedRepos` lives for the test process; the setup with the
/// repositories ready, or `None` (skip).
fn package_setup(label: &str) -> Option<(Setup, &'static repo::SeedRepos, PathBuf)> {
    let base = fixture_base()?;
    let repos = repo::seed_repos()?;
    let s = setup(label)?;
    Some((s, repos, base))
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one story: provenance, openssl, tampering"
)]
fn attestations_carry_the_provenance_and_verify_with_openssl() {
    let Some((s, repos, base)) = package_setup("attest") else {
        return;
    };
    let d = &s.dir;
    let recipe = packages_recipe(&s, repos);
    let base = fixture_base_ref(&base);
    let mut pkg_args = vec!["--cache-dir".to_string(), repos.cache.display().to_string()];
    for m in repos.mirrors(Some(&repos.key)) {
        pkg_args.push("--mirror".to_string());
        pkg_args.push(m);
    }
    run(s
        .nodeimg()
        .arg("lock")
        .arg(&recipe)
        .args(["--base", &base, "-q"])
        .args(&pkg_args))
    .ok();
    let lock_file = d.join("runtime.toml.lock");
    let lock: toml::Value = toml::from_str(&fs::read_to_string(&lock_file).unwrap()).unwrap();
    let mut extra = vec!["--base", base.as_str(), "--metadata-file", "meta.json"];
    extra.extend(pkg_args.iter().map(String::as_str));
    extra.extend(["--sign-key", "b.key"]);
    let digest = s.build_push(&recipe, "runtime", "nodes/runtime:v1", &extra);
    let meta: Value = serde_json::from_slice(&fs::read(d.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta["signed"]["attestations"][0]["predicate_type"],
        "https://slsa.dev/provenance/v1"
    );

    let (r, v) = s.verify("nodes/runtime:v1", &s.b.1, true);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(v["attestations"][0]["valid"], true, "{v}");
    // Negative control: the other key verifies neither.
    let (r, v) = s.verify("nodes/runtime:v1", &s.a.1, true);
    assert_eq!(
        (r.code, &v["attestations"][0]["valid"]),
        (1, &json!(false)),
        "{r}"
    );

    // The attestation as cosign lays it out, its DSSE signature verified by
    // openssl over the PAE built here.
    let (m, envelopes) = attestation_layers(&s, "nodes/runtime", &digest);
    assert_eq!(envelopes.len(), 1);
    let layer = &m["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(
        layer["annotations"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let env: Value = serde_json::from_slice(&envelopes[0]).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let sig = B64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let signed_bytes = pae("application/vnd.in-toto+json", &payload);
    assert!(openssl_verifies(d, &s.b.1, &signed_bytes, &sig));
    assert!(
        !openssl_verifies(d, &s.b.1, &payload, &sig),
        "the PAE is what is signed"
    );

    // The statement: this image, and every input of its build.
    let st: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["subject"][0]["name"], s.bare("nodes/runtime"));
    assert_eq!(st["subject"][0]["digest"]["sha256"], &digest[7..]);
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let p = &st["predicate"];
    let bd = &p["buildDefinition"];
    assert_eq!(bd["internalParameters"]["SOURCE_DATE_EPOCH"], TEST_EPOCH);
    assert_eq!(bd["internalParameters"]["offline"], false);
    assert_eq!(bd["internalParameters"]["locked"], true);
    assert_eq!(bd["externalParameters"]["push"], s.bare("nodes/runtime:v1"));
    let ver = run(nodeimg(d).arg("--version")).ok();
    let version = ver.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        p["runDetails"]["builder"]["id"],
        format!("pkg:generic/nodeimg@{version}")
    );
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let by_name = |n: &str| deps.iter().find(|d| d["name"] == n).cloned();
    let recipe_dep = by_name("recipe").unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            recipe_dep["digest"]["sha256"].as_str().unwrap()
        ),
        meta["recipe"]["digest"].as_str().unwrap()
    );
    let lock_dep = by_name("lock").unwrap();
    assert_eq!(
        format!("sha256:{}", lock_dep["digest"]["sha256"].as_str().unwrap()),
        sha256_file(&lock_file)
    );
    assert_eq!(by_name("base").unwrap()["uri"], base);
    assert!(by_name("base layer 0").is_some(), "{deps:?}");
    let locked: Vec<&toml::Value> = lock["layer"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["package"].as_array().unwrap())
        .collect();
    assert!(
        locked.len() >= 2,
        "containerd and what it depends on: {locked:?}"
    );
    for pkg in &locked {
        let dep = by_name(pkg["name"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{pkg:?} is not a dependency: {deps:?}"));
        assert_eq!(dep["digest"]["sha256"], pkg["sha256"].as_str().unwrap());
        assert_eq!(dep["uri"], pkg["url"].as_str().unwrap());
        assert_eq!(
            dep["annotations"]["version"],
            pkg["version"].as_str().unwrap()
        );
    }

    // An offline build of the same lock, writing an SBOM: the same image, a
    // second attestation saying offline, and the SBOM as a third.
    let mut offline = extra.clone();
    offline.extend(["--offline", "--sbom", "spdx-json=sbom.spdx.json"]);
    let again = s.build_push(&recipe, "runtime-offline", "nodes/runtime:v1", &offline);
    assert_eq!(again, digest);
    let (m3, envelopes) = attestation_layers(&s, "nodes/runtime", &digest);
    assert_eq!(envelopes.len(), 3, "appended, not replaced");
    let second: Value = serde_json::from_slice(&envelopes[1]).unwrap();
    let st2: Value =
        serde_json::from_slice(&B64.decode(second["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        st2["predicate"]["buildDefinition"]["internalParameters"]["offline"],
        true
    );
    assert_eq!(
        m3["layers"][2]["annotations"]["predicateType"],
        "https://spdx.dev/Document"
    );
    let third: Value = serde_json::from_slice(&envelopes[2]).unwrap();
    let sbom_payload = B64.decode(third["payload"].as_str().unwrap()).unwrap();
    let sbom_sig = B64
        .decode(third["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    assert!(openssl_verifies(
        d,
        &s.b.1,
        &pae("application/vnd.in-toto+json", &sbom_payload),
        &sbom_sig
    ));
    let st3: Value = serde_json::from_slice(&sbom_payload).unwrap();
    assert_eq!(st3["subject"][0]["digest"]["sha256"], &digest[7..]);
    let written: Value =
        serde_json::from_slice(&fs::read(d.join("sbom.spdx.json")).unwrap()).unwrap();
    assert_eq!(st3["predicate"], written, "the SBOM the build wrote");
    assert_eq!(written["spdxVersion"], "SPDX-2.3");

    // A tampered attestation (the payload changed, the signature kept) is
    // refused, by openssl and by verify.
    let mut tampered_st = st.clone();
    tampered_st["predicate"]["buildDefinition"]["internalParameters"]["offline"] = json!(true);
    tampered_st["predicate"]["runDetails"]["builder"]["id"] = json!("pkg:generic/evil@1");
    let tampered_payload = serde_json::to_vec(&tampered_st).unwrap();
    assert!(!openssl_verifies(
        d,
        &s.b.1,
        &pae("application/vnd.in-toto+json", &tampered_payload),
        &sig
    ));
    let mut tampered = env.clone();
    tampered["payload"] = json!(B64.encode(&tampered_payload));
    let blob = serde_json::to_vec(&tampered).unwrap();
    let mut layer = layer.clone();
    layer["digest"] = json!(sha256_reader(blob.as_slice()));
    layer["size"] = json!(blob.len());
    let config = json!({"architecture": "", "os": "", "rootfs": {"type": "layers",
        "diff_ids": [layer["digest"].clone()]}, "config": {}})
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_reader(config.as_slice()), "size": config.len()},
        "layers": [layer],
    })
    .to_string()
    .into_bytes();
    s.put_manifest(
        &format!("nodes/runtime:{}.att", digest.replace(':', "-")),
        &manifest,
        &[&config, &blob],
    );
    let (r, v) = s.verify("nodes/runtime:v1", &s.b.1, true);
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(
        v["signatures"][0]["valid"], true,
        "the signature still holds"
    );
    assert_eq!(v["attestations"][0]["valid"], false, "{v}");
    assert!(
        v["attestations"][0]["error"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{v}"
    );
    assert!(r.stderr.contains("no valid attestation"), "{r}");
}

/// A proxy on 127.0.0.1 in front of `upstream` that answers 403 to every
/// PUT of a manifest whose tag ends with `.sig`, and passes everything
/// else on, one request per connection; the request lines it saw.
fn refusing_proxy(upstream: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).is_ok_and(|k| k == 1) {
                head.push(b[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let line = text.lines().next().unwrap_or_default().to_string();
            log.lock().unwrap().push(line.clone());
            if line.starts_with("PUT ") && line.contains("/manifests/") && line.contains(".sig ") {
                let body = r#"{"errors":[{"code":"DENIED","message":"signature tags are protected here"}]}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(mut u) = TcpStream::connect(&upstream) else {
                continue;
            };
            // One request per connection: the registry closes after it.
            let forwarded: String = text
                .split("\r\n")
                .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
                .take_while(|h| !h.is_empty())
                .map(|h| format!("{h}\r\n"))
                .collect();
            let _ = write!(u, "{forwarded}Connection: close\r\n\r\n");
            let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(Shutdown::Both);
            });
        }
    });
    (addr, seen)
}

#[test]
#[allow(clippy::too_many_lines, reason = "one table of bad inputs")]
fn bad_keys_and_a_refusing_registry_fail_cleanly() {
    let Some(s) = setup("sign-bad") else { return };
    let d = &s.dir;
    let digest = s.build_push(&scratch_recipe(d, 1), "node", "nodes/node:v1", &[]);
    let sig_tag = format!("nodes/node:{}.sig", digest.replace(':', "-"));

    // A wrong password, no password: exit 2, nothing pushed.
    let r = s.sign(
        "nodes/node:v1",
        &s.b.0,
        &[("NODEIMG_KEY_PASSWORD", "wrong")],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("b.key: wrong password"), "{r}");
    let r = s.sign("nodes/node:v1", &s.b.0, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("NODEIMG_KEY_PASSWORD"), "{r}");
    // A key of another curve: exit 2, for signing and verifying; a build
    // with it stops before building or pushing anything.
    let r = s.sign("nodes/node:v1", &s.p384.0, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("P-384 (secp384r1)"), "{r}");
    let (r, _) = s.verify("nodes/node:v1", &s.p384.1, false);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("P-384 (secp384r1)"), "{r}");
    let r = run(s
        .nodeimg()
        .arg("build")
        .arg(scratch_recipe(d, 4))
        .args([
            "-o",
            "never",
            "--push",
            &s.at("nodes/never:v1"),
            "--sign-key",
        ])
        .arg(&s.p384.0)
        .args(["--insecure-registry", &s.reg.addr]));
    assert_eq!(r.code, 2, "{r}");
    assert!(!d.join("never").exists(), "nothing built");
    assert!(s.raw_manifest("nodes/never:v1").is_none(), "nothing pushed");
    assert!(s.raw_manifest(&sig_tag).is_none(), "no signature tag");
    // keygen without a password, or over existing files: exit 2.
    let r = run(s.nodeimg().args(["keygen", "--output-key-prefix", "c"]));
    assert_eq!(r.code, 2, "{r}");
    assert!(!d.join("c.key").exists() && !d.join("c.pub").exists());
    let r =
        run(s
            .nodeimg()
            .env("COSIGN_PASSWORD", "x")
            .args(["keygen", "--output-key-prefix", "b"]));
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("b.key exists"), "{r}");
    // Keys cross with sigstore-rs's implementation of cosign's format: it
    // opens keygen's key with the password (and not without it), to the
    // public key keygen wrote; nodeimg signs with a key it wrote, and it
    // verifies that signature.
    use sigstore::crypto::signing_key::SigStoreKeyPair;
    let pem = fs::read(&s.b.0).unwrap();
    let theirs = SigStoreKeyPair::from_encrypted_pem(&pem, PASSWORD.as_bytes()).unwrap();
    assert_eq!(
        theirs
            .public_key_to_pem()
            .unwrap()
            .replace("\r\n", "\n")
            .trim(),
        fs::read_to_string(&s.b.1).unwrap().trim()
    );
    assert!(SigStoreKeyPair::from_encrypted_pem(&pem, b"wrong").is_err());
    let made = sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap()
        .to_sigstore_keypair()
        .unwrap();
    fs::write(
        d.join("rs.key"),
        made.private_key_to_encrypted_pem(b"rs password")
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    fs::write(d.join("rs.pub"), made.public_key_to_pem().unwrap()).unwrap();
    s.sign(
        "nodes/node:v1",
        &d.join("rs.key"),
        &[("NODEIMG_KEY_PASSWORD", "rs password")],
    )
    .ok();
    assert_eq!(
        s.verify("nodes/node:v1", &d.join("rs.pub"), false).0.code,
        0
    );
    sigstore_rs_verifies(&s.reg.addr, &s.bare("nodes/node:v1"), &d.join("rs.pub")).unwrap();
    // The private key of keygen is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&s.b.0).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A registry that refuses the signature tag: exit 1, the refusal said,
    // the payload and config sent first and no tag left.
    let (proxy, seen) = refusing_proxy(&s.reg.addr);
    let r = run(s
        .nodeimg()
        .args(["sign", &format!("{proxy}/nodes/node:v1"), "--key"])
        .arg(&s.a.0)
        .args(["--insecure-registry", &proxy]));
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains(".sig") && r.stderr.contains("signature tags are protected here"),
        "{r}"
    );
    let seen = seen.lock().unwrap().clone();
    let refused = seen
        .iter()
        .position(|l| l.starts_with("PUT ") && l.contains(".sig "))
        .unwrap_or_else(|| panic!("{seen:?}"));
    let blob_puts: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("PUT ") && l.contains("/blobs/uploads/"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(blob_puts.len(), 2, "payload and config: {seen:?}");
    assert!(
        blob_puts.iter().all(|&i| i < refused),
        "blobs before the tag: {seen:?}"
    );
    // The tag holds what it held: the one signature by the sigstore-rs key.
    let held: Value = serde_json::from_slice(&s.raw_manifest(&sig_tag).unwrap()).unwrap();
    assert_eq!(held["layers"].as_array().unwrap().len(), 1);
    let (r, v) = s.verify("nodes/node:v1", &s.a.1, false);
    assert_eq!((r.code, &v["verified"]), (1, &json!(false)), "{r}");
    let (_, sigs) = s.copied("nodes/node:v1", "copy-refused");
    assert_eq!(sigs.len(), 1);
    assert!(!openssl_verifies(
        d,
        &s.a.1,
        &sigs[0].payload,
        &sigs[0].signature
    ));

    // A registry that does not answer: verify says so, exit 3.
    let r = run(s
        .nodeimg()
        .args(["verify", "127.0.0.1:1/nodes/node:v1", "--key"])
        .arg(&s.a.1)
        .args(["--insecure-registry", "127.0.0.1:1"]));
    assert_eq!(r.code, 3, "{r}");
    assert!(r.stderr.contains("could not check"), "{r}");
}
