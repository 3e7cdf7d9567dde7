//! Registries, with a real CNCF distribution registry on 127.0.0.1: a base
//! pushed by skopeo and pulled by nodeimg gives the same image as the same
//! base read from an OCI layout; nodeimg's push is read back by skopeo with
//! the same digest, sends no blob twice, survives a registry restart in the
//! middle of an upload, and a blob tampered with in the registry's storage
//! is refused. The docker-archive output is read by skopeo and unpacked by
//! umoci.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodeimg_e2e::*;

const NODE_RECIPE: &str = r#"[image]
name = "node"
tag = "v1"

[[layer]]
name = "kernel"
modules = { file = "containerd", load = ["overlay", "br_netfilter"] }
sysctl = { file = "99-kubernetes-cri", set = { "net.ipv4.ip_forward" = 1 } }
"#;

/// A work folder with the node recipe and the fixture base as an OCI layout
/// (`base`, tag `v1`), or `None` (skip) when a tool is missing.
struct Work {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    recipe: PathBuf,
}

fn work(label: &str) -> Option<Work> {
    if !require("skopeo", "skopeo") || !require("umoci", "umoci") {
        return None;
    }
    let base = fixture_base()?;
    let tmp = temp_dir(label);
    let dir = tmp.path().to_path_buf();
    fs::write(
        dir.join("base.toml"),
        "[image]\nname = \"base\"\ntag = \"v1\"\n",
    )
    .unwrap();
    build_ok(
        &dir,
        &dir.join("base.toml"),
        &dir.join("base"),
        "oci",
        &fixture_base_ref(&base),
    );
    let recipe = dir.join("node.toml");
    fs::write(&recipe, NODE_RECIPE).unwrap();
    Some(Work {
        _tmp: tmp,
        dir,
        recipe,
    })
}

fn skopeo_push(layout: &Path, tag: &str, dest: &str) {
    run(Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(dest))
    .ok();
}

fn push_json(w: &Path, image: &str, dest: &str, reg: &TestRegistry) -> serde_json::Value {
    let r = run(nodeimg(w)
        .args(["push", image, dest, "--json", "--insecure-registry"])
        .arg(&reg.addr))
    .ok();
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("push --json: {e}: {r}"))
}

/// The same base, from a layout and from the registry: the same image (its
/// digest returned).
fn builds_on_the_registry_base(w: &Work, reg: &TestRegistry) -> String {
    let d = &w.dir;
    // The same base, from a layout and from the registry: the same image.
    let from_layout = build_ok(d, &w.recipe, &d.join("node-layout"), "oci", "oci:base:v1");
    let t = Instant::now();
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "node-reg", "--cache-dir", "cache", "--base"])
        .arg(reg.docker_ref("fixture/base:v1"))
        .args(["--insecure-registry", &reg.addr]))
    .ok();
    eprintln!(
        "build on a registry base: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(single_digest_line(&r), from_layout, "{r}");
    assert!(r.stderr.contains("pulled"), "pull progress is shown: {r}");
    from_layout
}

/// The base's blobs are cached by digest (a second build does not fetch
/// them again); a damaged cached blob is fetched again. Returns the digest
/// of the base's layer.
fn registry_blobs_are_cached(w: &Work, reg: &TestRegistry, from_layout: &str) -> String {
    let d = &w.dir;
    // Cached by digest: the base layer blob is in the cache, byte for byte.
    let base_index: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("base/index.json")).unwrap()).unwrap();
    let m = base_index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("base/blobs/sha256").join(&m[7..])).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cached = d.join("cache/registry/blobs/sha256").join(&layer[7..]);
    assert_eq!(
        sha256_file(&cached),
        layer,
        "the cached blob is the registry's"
    );
    // By digest, and a second build reads the cache (the registry is not
    // asked for blobs again).
    let by_digest = reg.docker_ref(&format!("fixture/base@{m}"));
    let gets = reg.count_requests("GET");
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "node-digest", "--cache-dir", "cache", "--base"])
        .arg(&by_digest)
        .args(["--insecure-registry", &reg.addr]))
    .ok();
    assert_eq!(single_digest_line(&r), from_layout);
    let blob_gets = fs::read_to_string(&reg.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/"))
        .count();
    assert!(reg.count_requests("GET") > gets, "the manifest is fetched");
    assert_eq!(
        blob_gets, 2,
        "blobs are fetched once (config and layer), then read from the cache"
    );
    // A damaged cached blob is noticed and fetched again.
    let mut bytes = fs::read(&cached).unwrap();
    bytes[100] ^= 1;
    fs::write(&cached, &bytes).unwrap();
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "node-healed", "--cache-dir", "cache", "--base"])
        .arg(&by_digest)
        .args(["--insecure-registry", &reg.addr]))
    .ok();
    assert_eq!(single_digest_line(&r), from_layout);
    assert!(r.stderr.contains("damaged; fetching it again"), "{r}");
    assert_eq!(sha256_file(&cached), layer);
    layer
}

/// nodeimg's push is read back by skopeo with the same digest; a second
/// push uploads no blob.
fn push_round_trips(w: &Work, reg: &TestRegistry, from_layout: &str) {
    let d = &w.dir;
    // Push: skopeo reads back the same digest.
    let dest = reg.docker_ref("nodes/node:v1");
    let t = Instant::now();
    let first = push_json(d, "node-layout:v1", &dest, reg);
    eprintln!("first push: {:.2} s: {first}", t.elapsed().as_secs_f64());
    assert_eq!(first["digest"], from_layout);
    assert_eq!(first["uploaded"], 3, "config and two layers: {first}");
    assert_eq!(skopeo_digest(&dest), from_layout);

    // A second push uploads no blob: none in our report, none in the
    // registry's access log.
    let posts = reg.count_requests("POST");
    let second = push_json(d, "node-layout:v1", &dest, reg);
    assert_eq!(second["digest"], from_layout);
    assert_eq!(second["uploaded"], 0, "{second}");
    assert_eq!(second["present"], 3, "{second}");
    assert_eq!(
        reg.count_requests("POST"),
        posts,
        "no upload was started by the second push"
    );
}

/// `build --push` with `--metadata-file`: the base's blobs mounted, the
/// metadata naming the image, the recipe, the tags and the layers.
fn build_pushes_with_metadata(w: &Work, reg: &TestRegistry, from_layout: &str, layer: &str) {
    let d = &w.dir;
    // build --push, with the metadata file; blobs of the base are mounted
    // from the base's repository on the same registry.
    let dest2 = reg.docker_ref("nodes/pushed:v1");
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "node-pushed", "--cache-dir", "cache", "--base"])
        .arg(reg.docker_ref("fixture/base:v1"))
        .args(["--insecure-registry", &reg.addr, "--push", &dest2])
        .args(["--metadata-file", "meta/node.json"]))
    .ok();
    assert_eq!(single_digest_line(&r), from_layout);
    assert!(r.stderr.contains("1 mounted"), "{r}");
    assert_eq!(skopeo_digest(&dest2), from_layout);
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("meta/node.json")).unwrap()).unwrap();
    assert_eq!(meta["image_digest"], from_layout);
    assert_eq!(meta["pushed"]["digest"], from_layout);
    assert_eq!(meta["recipe"]["path"], w.recipe.display().to_string());
    assert!(meta["recipe"]["digest"]
        .as_str()
        .is_some_and(|s| s.starts_with("sha256:")));
    assert_eq!(meta["build_time"], "2024-03-09T16:00:00Z");
    let tags: Vec<&str> = meta["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tags, ["node:v1", &dest2["docker://".len()..]]);
    let layers = meta["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["name"], "base");
    assert_eq!(layers[1]["name"], "kernel");
    assert_eq!(
        layers[1]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(layers[0]["digest"], layer);
    // No leftover temporary file beside the metadata.
    let names: Vec<String> = fs::read_dir(d.join("meta"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["node.json"]);
}

/// The base named by the recipe itself: its blobs are mounted too.
fn base_named_by_the_recipe_is_mounted(w: &Work, reg: &TestRegistry) {
    let d = &w.dir;
    // The base named by the recipe itself, and its blobs mounted too.
    fs::write(
        d.join("in-recipe.toml"),
        NODE_RECIPE.replace(
            "tag = \"v1\"",
            &format!(
                "tag = \"v1\"\nbase = \"{}\"",
                reg.docker_ref("fixture/base:v1")
            ),
        ),
    )
    .unwrap();
    let dest3 = reg.docker_ref("nodes/in-recipe:v1");
    let r = run(nodeimg(d)
        .args([
            "build",
            "in-recipe.toml",
            "-o",
            "in-recipe",
            "--cache-dir",
            "cache",
        ])
        .args(["--insecure-registry", &reg.addr, "--push", &dest3]))
    .ok();
    assert!(r.stderr.contains("1 mounted"), "{r}");
    assert_eq!(skopeo_digest(&dest3), single_digest_line(&r));
}

#[test]
fn registry_base_builds_the_same_image_and_push_round_trips() {
    let Some(w) = work("registry") else { return };
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let d = &w.dir;
    skopeo_push(&d.join("base"), "v1", &reg.docker_ref("fixture/base:v1"));

    let from_layout = builds_on_the_registry_base(&w, &reg);
    let layer = registry_blobs_are_cached(&w, &reg, &from_layout);
    push_round_trips(&w, &reg, &from_layout);
    build_pushes_with_metadata(&w, &reg, &from_layout, &layer);
    base_named_by_the_recipe_is_mounted(&w, &reg);
}

/// Two architectures of the node image in one layout, `amd` (the second
/// image's blobs and manifest merged into the first's): the two digests.
fn two_architectures_in_one_layout(w: &Work) -> (String, String) {
    let d = &w.dir;
    // Two architectures of the node image in one layout.
    let amd = build_ok(d, &w.recipe, &d.join("amd"), "oci", "oci:base:v1");
    let r = run(nodeimg(d)
        .env("SOURCE_DATE_EPOCH", "1700000001")
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "arm", "--base", "oci:base:v1"]))
    .ok();
    let other = single_digest_line(&r);
    assert_ne!(amd, other);
    // Merge: the second image's blobs and manifest into the first layout.
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("amd/index.json")).unwrap()).unwrap();
    let arm_index: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("arm/index.json")).unwrap()).unwrap();
    for e in fs::read_dir(d.join("arm/blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let to = d.join("amd/blobs/sha256").join(e.file_name());
        if !to.exists() {
            fs::copy(e.path(), to).unwrap();
        }
    }
    let mut m2 = arm_index["manifests"][0].clone();
    m2["annotations"]["org.opencontainers.image.ref.name"] = "v1-b".into();
    m2["platform"]["architecture"] = "arm64".into();
    index["manifests"].as_array_mut().unwrap().push(m2);
    fs::write(d.join("amd/index.json"), index.to_string()).unwrap();
    (amd, other)
}

#[test]
fn several_images_are_pushed_as_one_index() {
    let Some(w) = work("registry-index") else {
        return;
    };
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let d = &w.dir;
    let (amd, other) = two_architectures_in_one_layout(&w);

    let dest = reg.docker_ref("nodes/multi:v1");
    let j = push_json(d, "amd", &dest, &reg);
    let top = j["digest"].as_str().unwrap().to_string();
    assert_ne!(top, amd, "an index, not one of the images");
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&dest))
    .ok();
    let served: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        served["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let digests: Vec<&str> = served["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_eq!(digests, [amd.as_str(), other.as_str()]);
    assert_eq!(sha256_reader(raw.stdout.as_bytes()), top);

    // As a base: the linux/amd64 entry of the index is the one used.
    let on_layout = build_ok(d, &w.recipe, &d.join("on-layout"), "oci", "oci:amd:v1");
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "on-index", "--cache-dir", "cache", "--base", &dest])
        .args(["--insecure-registry", &reg.addr]))
    .ok();
    assert_eq!(single_digest_line(&r), on_layout);
    // An architecture the index does not have: the platforms it has.
    fs::write(
        d.join("s390x.toml"),
        NODE_RECIPE.replace("tag = \"v1\"", "tag = \"v1\"\narchitecture = \"s390x\""),
    )
    .unwrap();
    let r = run(nodeimg(d)
        .args([
            "build",
            "s390x.toml",
            "-o",
            "s390x",
            "--cache-dir",
            "cache",
            "--base",
            &dest,
        ])
        .args(["--insecure-registry", &reg.addr]));
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("no linux/s390x image") && r.stderr.contains("linux/arm64"),
        "{r}"
    );
    assert!(!d.join("s390x").exists());
}

/// A proxy on 127.0.0.1 in front of `upstream`: the first `fail`
/// connections get `503 Service Unavailable`, the others are piped through.
fn flaky_proxy(upstream: &str, fail: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut c) = conn else { continue };
            if n < fail {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).is_ok_and(|k| k == 1) {
                    head.push(b[0]);
                }
                let _ = c.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let _ = c.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(u) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
            let mut u = u;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
                let _ = u2.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn server_errors_are_retried() {
    let Some(w) = work("registry-503") else {
        return;
    };
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let d = &w.dir;
    let digest = build_ok(d, &w.recipe, &d.join("node"), "oci", "oci:base:v1");
    let proxy = flaky_proxy(&reg.addr, 2);
    let r = run(nodeimg(d)
        .args(["push", "node:v1"])
        .arg(format!("docker://{proxy}/nodes/flaky:v1"))
        .args(["--insecure-registry", &proxy]))
    .ok();
    assert_eq!(single_digest_line(&r), digest);
    assert!(r.stderr.contains("503"), "{r}");
    assert!(r.stderr.contains("attempt 1 of 6"), "{r}");
    assert_eq!(skopeo_digest(&reg.docker_ref("nodes/flaky:v1")), digest);
}

/// `size` bytes that do not compress (xorshift).
fn noise(path: &Path, size: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(size);
    while buf.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(size);
    fs::write(path, buf).unwrap();
}

fn has_upload_in_progress(storage: &Path) -> bool {
    // An upload of the big layer has started: more than 4 MiB received.
    let uploads = storage.join("docker/registry/v2/repositories/nodes/big/_uploads");
    fs::read_dir(uploads).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() > 4 << 20))
    })
}

#[test]
fn a_push_survives_a_registry_restart() {
    let Some(w) = work("registry-restart") else {
        return;
    };
    let Some(mut reg) = TestRegistry::start() else {
        return;
    };
    let d = &w.dir;
    fs::create_dir(d.join("files")).unwrap();
    noise(&d.join("files/blob.bin"), 96 << 20);
    let recipe = d.join("big.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"big\"\ntag = \"v1\"\n[[layer]]\nname = \"data\"\n\
         file = [{ path = \"/opt/blob.bin\", source = \"files/blob.bin\" }]\n",
    )
    .unwrap();
    let digest = run(nodeimg(d).arg("build").arg(&recipe).args([
        "-o",
        "big",
        "--base",
        "oci:base:v1",
        "--compression",
        "none",
    ]))
    .ok();
    let digest = single_digest_line(&digest);

    let dest = reg.docker_ref("nodes/big:v1");
    let t = Instant::now();
    let child = nodeimg(d)
        .args(["push", "big:v1", &dest, "--insecure-registry", &reg.addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the registry while an upload is in progress.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_upload_in_progress(&reg.storage) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mid = has_upload_in_progress(&reg.storage);
    reg.kill();
    assert!(
        mid,
        "the registry was killed while the big layer was uploading"
    );
    std::thread::sleep(Duration::from_millis(800));
    reg.restart();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "push across a restart: {:.2} s\n{stderr}",
        t.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        // The retries ran out before the registry came back: a second
        // push completes it.
        run(nodeimg(d).args(["push", "big:v1", &dest, "--insecure-registry", &reg.addr])).ok();
    } else {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    }
    assert_eq!(skopeo_digest(&dest), digest);
    run(Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(&dest)
        .arg(format!("oci:{}:v1", d.join("back").display())))
    .ok();
    let bundle = d.join("bundle");
    umoci_unpack(&d.join("back"), "v1", &bundle).ok();
    assert_eq!(
        sha256_file(&bundle.join("rootfs/opt/blob.bin")),
        sha256_file(&d.join("files/blob.bin"))
    );
}

#[test]
fn a_tampered_blob_is_refused() {
    let Some(w) = work("registry-tamper") else {
        return;
    };
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let d = &w.dir;
    skopeo_push(&d.join("base"), "v1", &reg.docker_ref("fixture/base:v1"));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("base/index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("base/blobs/sha256").join(&m[7..])).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let data = reg.blob_data(layer);
    let mut bytes = fs::read(&data).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&data, &bytes).unwrap();

    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args(["-o", "node", "--cache-dir", "cache", "--base"])
        .arg(reg.docker_ref("fixture/base:v1"))
        .args(["--insecure-registry", &reg.addr]));
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains(&format!("does not match {layer}")) && r.stderr.contains("corrupt"),
        "{r}"
    );
    assert!(!d.join("node").exists(), "no output");
    assert!(
        !d.join("cache/registry/blobs/sha256")
            .join(&layer[7..])
            .exists(),
        "the bad blob is not cached"
    );
    let leftovers: Vec<_> = fs::read_dir(d.join("cache/registry/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn plain_http_is_for_loopback_only() {
    let tmp = temp_dir("registry-insecure");
    let d = tmp.path();
    fs::write(d.join("r.toml"), "[image]\nname = \"n\"\n").unwrap();
    let r = run(nodeimg(d).args([
        "build",
        "r.toml",
        "--base",
        "docker://10.0.0.1:5000/x:y",
        "--insecure-registry",
        "10.0.0.1:5000",
    ]));
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("loopback"), "{r}");
    let r = run(nodeimg(d).args(["push", "nothing-here", "docker://127.0.0.1:1/x:y"]));
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("nothing-here"), "{r}");
    let r = run(nodeimg(d).args([
        "build",
        "r.toml",
        "-o",
        "out",
        "--push",
        "docker://127.0.0.1:1/x:y",
        "--format",
        "rootfs",
    ]));
    assert_eq!(r.code, 2, "--push needs an OCI format: {r}");
}

#[test]
fn docker_archive_is_read_by_skopeo_and_unpacked_by_umoci() {
    let Some(w) = work("docker-archive") else {
        return;
    };
    let d = &w.dir;
    let r = run(nodeimg(d)
        .arg("build")
        .arg(&w.recipe)
        .args([
            "-o",
            "node.tar",
            "--format",
            "docker-archive",
            "--base",
            "oci:base:v1",
        ])
        .args(["--json"]))
    .ok();
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(j["format"], "docker-archive");
    assert_eq!(j["file_digest"], sha256_file(&d.join("node.tar")).as_str());
    // Reproducible, byte for byte.
    run(nodeimg(d).arg("build").arg(&w.recipe).args([
        "-o",
        "again.tar",
        "--format",
        "docker-archive",
        "--base",
        "oci:base:v1",
    ]))
    .ok();
    assert_eq!(
        sha256_file(&d.join("again.tar")),
        sha256_file(&d.join("node.tar"))
    );
    // What docker load reads.
    let names: Vec<String> = read_tar(&d.join("node.tar"))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(names.iter().any(|n| n == "/manifest.json"), "{names:?}");
    assert!(names.iter().any(|n| n == "/repositories"), "{names:?}");
    let config = j["config_digest"].as_str().unwrap();
    assert!(
        names.contains(&format!("/{}.json", &config[7..])),
        "{names:?}"
    );

    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("docker-archive:{}", d.join("node.tar").display()))
        .arg(format!("oci:{}:v1", d.join("loaded").display())))
    .ok();
    let bundle = d.join("bundle");
    umoci_unpack(&d.join("loaded"), "v1", &bundle).ok();
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/modules-load.d/containerd.conf")).unwrap(),
        "overlay\nbr_netfilter\n"
    );
    // skopeo reads the same layers (by diff_id) and architecture.
    let inspect = run(Command::new("skopeo")
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}:v1", d.join("loaded").display())))
    .ok();
    let loaded: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let want: Vec<&serde_json::Value> = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["diff_id"])
        .collect();
    let got: Vec<&serde_json::Value> = loaded["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(got, want);
    assert_eq!(loaded["architecture"], "amd64");
}
