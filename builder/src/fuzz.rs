//! Mutation fuzzing of the parsers that read hostile input, on the stable
//! toolchain: each target starts from valid seeds built here, applies
//! random mutations (bit flips, random and boundary bytes, insertions,
//! deletions, duplicated runs, splices of two seeds), and feeds the result
//! to the parser. A panic or an input that takes longer than
//! [`SLOW`] is a failure; the input is saved for replay.
//!
//! `cargo test -p nodeimg --lib fuzz` runs a bounded number of cases per
//! target (`NODEIMG_FUZZ_ITERS`, default 300) from a fixed seed
//! (`NODEIMG_FUZZ_SEED`, default 1), so `make test` is repeatable; `make
//! fuzz` runs many more from a random seed, which it prints. Each target
//! reports its executions and the number of distinct outcomes (error
//! messages with digits blanked), a rough measure of the paths reached.
//! `NODEIMG_FUZZ_REPLAY=FILE` with `NODEIMG_FUZZ_TARGET=NAME` runs one
//! saved input.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use nodeimg_deb::control::{self, Syntax};
use nodeimg_deb::repo::{self, Release};
use nodeimg_fetch::openpgp::Keyring;
use nodeimg_image::base::{Base, BaseRef};
use nodeimg_pkg::lock::Lock;
use nodeimg_recipe::recipe::Loaded;
use nodeimg_rpm::{repodata, rpmfile::RpmFile, testutil};

/// An input that takes longer than this is reported as a hang.
const SLOW: Duration = Duration::from_secs(20);

/// The largest input a mutation may grow to.
const MAX_LEN: usize = 256 << 10;

/// One parser under test: its seeds and how to feed it.
struct Target {
    name: &'static str,
    seeds: fn(&Path) -> Vec<Vec<u8>>,
    /// Feeds one input; `scratch` is a private folder for file-based parsers.
    run: fn(&[u8], &Path) -> Outcome,
}

/// What the parser said: accepted, or the error's text.
type Outcome = std::result::Result<(), String>;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn err_of<E: std::fmt::Display>(r: std::result::Result<impl Sized, E>) -> Outcome {
    r.map(|_| ()).map_err(|e| e.to_string())
}

// ---- deb822 / control files -------------------------------------------------

const PACKAGES: &str = "Package: containerd
Version: 1.6.20~ds1-1+deb12u3
Architecture: amd64
Maintainer: Debian Go Packaging Team <team+pkg-go@tracker.debian.org>
Installed-Size: 117210
Depends: libc6 (>= 2.34), libseccomp2 (>= 2.5.0), runc (>= 1.0.0~rc2~), adduser | passwd
Pre-Depends: init-system-helpers (>= 1.54~)
Breaks: docker.io (<< 20.10.5+dfsg1-1~)
Provides: containerd-runtime
Multi-Arch: foreign
Filename: pool/main/c/containerd/containerd_1.6.20~ds1-1+deb12u3_amd64.deb
Size: 26004144
SHA256: 4f2b1ff26f5cbb3f4e1db2e07d1e1d5bfcda9da59ac23ad6e02bbd8d1c35e1e4
Description: open and reliable container runtime
 containerd is an industry-standard container runtime.
 .
 It is available as a daemon.

Package: runc
Source: runc (1.1.5+ds1-1)
Version: 1.1.5+ds1-1+deb12u1
Architecture: amd64
Depends: libc6 (>= 2.34), libseccomp2 (>= 2.5.0)
Filename: pool/main/r/runc/runc_1.1.5+ds1-1+deb12u1_amd64.deb
Size: 2716732
SHA256: 9c0b1e13bd4c2af1b2e6a7f25b3c6a56f3f2c18c2b3d6a0c4b7a1f6e0e6f0f0f
";

const STATUS: &str = "Package: base-files
Status: install ok installed
Priority: required
Essential: yes
Version: 12.4+deb12u5
Architecture: amd64
Conffiles:
 /etc/debian_version 2e7f3f6ef2e3c8bde7e2b85d2d7c0a4f
 /etc/host.conf 4eb63731c9f5e30903ac4fc07a7fe3d6 obsolete

Package: passwd
Status: deinstall ok config-files
Version: 1:4.13+dfsg1-1
Architecture: amd64
";

fn control_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![PACKAGES.into(), STATUS.into()]
}

fn control_run(data: &[u8], _: &Path) -> Outcome {
    let t = text(data);
    let _ = control::parse(&t, Syntax::with_comments());
    let _ = control::parse_installed(&t);
    let _ = control::parse_relations("Depends", &t, true);
    if let Ok(index) = control::read_packages(Cursor::new(data)) {
        let _ = index.packages();
    }
    err_of(control::parse_packages(&t))
}

// ---- Release / InRelease ----------------------------------------------------

const RELEASE: &str = "Origin: Debian
Label: Debian
Suite: stable
Codename: bookworm
Date: Sat, 09 Nov 2024 10:00:00 UTC
Valid-Until: Sat, 16 Nov 2024 10:00:00 UTC
Acquire-By-Hash: yes
Architectures: all amd64 arm64
Components: main contrib
Description: Debian 12.8 Released 09 November 2024
SHA256:
 4f2b1ff26f5cbb3f4e1db2e07d1e1d5bfcda9da59ac23ad6e02bbd8d1c35e1e4  1234 main/binary-amd64/Packages
 9c0b1e13bd4c2af1b2e6a7f25b3c6a56f3f2c18c2b3d6a0c4b7a1f6e0e6f0f0f   345 main/binary-amd64/Packages.xz
 1111111111111111111111111111111111111111111111111111111111111111  4567 main/binary-arm64/Packages.gz
";

fn inrelease(body: &str) -> String {
    let escaped: String = body
        .lines()
        .map(|l| {
            if l.starts_with('-') {
                format!("- {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    format!(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{escaped}-----BEGIN PGP SIGNATURE-----\n\n\
         iHUEARYKAB0WIQQe8t7hQ4PeoV1OwdFSbm5bF9LYMwUCZy8ZYAAKCRBSbm5bF9LY\n\
         M0N2AQCdXnH0s4P3Oj4pAq0o2lCq4lUhB1Rj4p5k0qQm3bTGfgD/bYb1l3L1b2Z7\n\
         =Wb3A\n-----END PGP SIGNATURE-----\n"
    )
}

fn release_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![RELEASE.into(), inrelease(RELEASE).into()]
}

fn keyring() -> &'static Keyring {
    static KEYRING: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    KEYRING.get_or_init(|| {
        let key = include_bytes!("../../recipes/keys/debian-bookworm.asc");
        Keyring::from_bytes(key, "debian-bookworm.asc").unwrap()
    })
}

fn release_run(data: &[u8], _: &Path) -> Outcome {
    let now = chrono::DateTime::from_timestamp(1_731_200_000, 0).unwrap_or_default();
    let _ = repo::verify_inrelease(data, keyring(), now, "InRelease");
    let _ = repo::parse_fields(&text(data));
    let r = Release::parse(&text(data), "Release", None).map_err(|e| e.to_string())?;
    let _ = r.check_valid(now);
    let _ = r.packages_index(Some("main"), "amd64");
    Ok(())
}

// ---- repomd.xml / primary.xml -----------------------------------------------

fn rpm_metadata_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![
        repodata::fixtures::REPOMD.into(),
        repodata::fixtures::PRIMARY.into(),
    ]
}

fn rpm_metadata_run(data: &[u8], _: &Path) -> Outcome {
    let _ = repodata::parse_repomd(data, "repomd.xml");
    err_of(repodata::parse_primary(Cursor::new(data), "primary.xml"))
}

// ---- .rpm: lead, signature header, header, cpio payload ---------------------

fn rpm_seeds(_: &Path) -> Vec<Vec<u8>> {
    let (tags, payload) = testutil::demo_files();
    let plain = testutil::rpm("demo", "x86_64", Vec::new(), b"", None);
    let full = testutil::rpm(
        "demo",
        "x86_64",
        tags,
        &payload,
        Some("getent group docker >/dev/null || groupadd -r docker\n"),
    );
    vec![plain, full]
}

fn rpm_run(data: &[u8], scratch: &Path) -> Outcome {
    let path = scratch.join("p.rpm");
    std::fs::write(&path, data).unwrap();
    let rpm = RpmFile::open(&path, "p.rpm").map_err(|e| e.to_string())?;
    let _ = rpm.nevra();
    let _ = rpm.header_signature();
    let _ = rpm.files();
    let _ = rpm
        .header
        .strings(nodeimg_rpm::rpmfile::tag::PREIN, "p.rpm");
    let mut payload = rpm.payload().map_err(|e| e.to_string())?;
    let mut sink = Vec::new();
    for _ in 0..64 {
        match payload.next_entry() {
            Ok(Some(e)) => {
                sink.clear();
                payload.data(&e, &mut sink).map_err(|e| e.to_string())?;
            }
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    err_of(payload.finish())
}

// ---- recipes ----------------------------------------------------------------

fn recipe_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![
        include_bytes!("../../recipes/containerd-debian.toml").to_vec(),
        include_bytes!("../../recipes/docker-ubuntu.toml").to_vec(),
        include_bytes!("../../recipes/crio-ubuntu.toml").to_vec(),
        include_bytes!("../../recipes/containerd-centos.toml").to_vec(),
    ]
}

fn recipe_run(data: &[u8], scratch: &Path) -> Outcome {
    let path = scratch.join("recipe.toml");
    std::fs::write(&path, data).unwrap();
    err_of(Loaded::load(&path))
}

// ---- lock files -------------------------------------------------------------

fn lock_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![crate::lock_tests::sample().render().unwrap().into_bytes()]
}

fn lock_run(data: &[u8], _: &Path) -> Outcome {
    err_of(Lock::parse(
        &text(data),
        Path::new("recipe.toml.lock"),
        crate::packages::LOCK_RULES,
    ))
}

// ---- tar layers (a rootfs base is indexed as one layer) ---------------------

fn tar_seed() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir.clone(), "etc/", std::io::empty())
        .unwrap();
    b.append_data(&mut dir, "usr/lib/systemd/system/", std::io::empty())
        .unwrap();
    let file = |body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h
    };
    let os = b"ID=debian\nVERSION_ID=\"12\"\n";
    b.append_data(&mut file(os), "etc/os-release", &os[..])
        .unwrap();
    let pw = b"root:x:0:0:root:/root:/bin/bash\n";
    b.append_data(&mut file(pw), "./etc/passwd", &pw[..])
        .unwrap();
    let long = format!("usr/share/{}/file", "d".repeat(120));
    b.append_data(&mut file(b"long"), long, &b"long"[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "etc/mtab", "../proc/self/mounts")
        .unwrap();
    let mut hard = tar::Header::new_gnu();
    hard.set_entry_type(tar::EntryType::Link);
    hard.set_size(0);
    b.append_link(&mut hard, "etc/passwd-", "etc/passwd")
        .unwrap();
    let mut wh = file(b"");
    b.append_data(&mut wh, "etc/.wh.gone", std::io::empty())
        .unwrap();
    let mut opq = file(b"");
    b.append_data(&mut opq, "usr/.wh..wh..opq", std::io::empty())
        .unwrap();
    let unit = b"[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\n";
    b.append_data(
        &mut file(unit),
        "usr/lib/systemd/system/x.service",
        &unit[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

fn pax_seed() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("path", "etc/é-pax-name".as_bytes()), ("uid", b"1000")])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o600);
    h.set_size(3);
    b.append_data(&mut h, "etc/short", &b"pax"[..]).unwrap();
    b.into_inner().unwrap()
}

fn tar_seeds(_: &Path) -> Vec<Vec<u8>> {
    vec![tar_seed(), pax_seed()]
}

fn tar_run(data: &[u8], scratch: &Path) -> Outcome {
    let path = scratch.join("rootfs.tar");
    std::fs::write(&path, data).unwrap();
    let base = Base::open(&BaseRef::Rootfs { file: path }).map_err(|e| e.to_string())?;
    let _ = base.view().read_text("/etc/passwd");
    let _ = base.view().read_text("/etc/os-release");
    Ok(())
}

// ---- xz streams (package payloads, indexes) ---------------------------------

/// xz streams whose blocks record their sizes (decoded on every core), one
/// without (decoded in one thread), and two concatenated.
fn xz_seeds(_: &Path) -> Vec<Vec<u8>> {
    let data: Vec<u8> = PACKAGES.bytes().cycle().take(40_000).collect();
    let multi = |block: u64| {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(2)
            .block_size(block)
            .preset(0)
            .encoder()
            .unwrap();
        let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        w.write_all(&data).unwrap();
        w.finish().unwrap()
    };
    let mut single = liblzma::write::XzEncoder::new(Vec::new(), 0);
    single.write_all(&data[..5000]).unwrap();
    let single = single.finish().unwrap();
    let mut both = multi(8000);
    both.extend_from_slice(&single);
    vec![multi(8000), multi(1500), single, both]
}

fn xz_run(data: &[u8], _: &Path) -> Outcome {
    // At most 64 MiB of output: a mutated size can claim much more.
    let mut d = nodeimg_image::limits::xz_decoder(Cursor::new(data.to_vec())).take(64 << 20);
    err_of(std::io::copy(&mut d, &mut std::io::sink()))
}

// ---- OCI layouts: index.json, manifest, config ------------------------------

/// A small OCI layout written by nodeimg itself: returns its folder's
/// index.json, manifest and config bytes.
fn oci_parts(scratch: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = scratch.join("seed-layout");
    if !dir.join("index.json").is_file() {
        nodeimg_image::base::fixtures::layout(&dir);
    }
    let index = std::fs::read(dir.join("index.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let blob = |d: &str| {
        let hex = d.trim_start_matches("sha256:");
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let manifest = blob(v["manifests"][0]["digest"].as_str().unwrap());
    let mv: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = blob(mv["config"]["digest"].as_str().unwrap());
    (index, manifest, config)
}

/// The three parts of a layout joined, so one mutated input can change
/// any of them: `index \0 manifest \0 config`.
fn oci_seeds(scratch: &Path) -> Vec<Vec<u8>> {
    let (i, m, c) = oci_parts(scratch);
    vec![[i, m, c].join(&0u8)]
}

/// Writes a layout from the (mutated) parts: the config and manifest are
/// stored under their own digests, and the manifest's and index's
/// references are rewritten to them when they still parse as JSON, so the
/// parsers behind the digest checks are reached.
fn oci_run(data: &[u8], scratch: &Path) -> Outcome {
    let mut parts = data.splitn(3, |b| *b == 0);
    let index = parts.next().unwrap_or_default().to_vec();
    let mut manifest = parts.next().unwrap_or_default().to_vec();
    let config = parts.next().unwrap_or_default().to_vec();
    let (_, seed_manifest, _) = oci_parts(scratch);
    let seed_layer: serde_json::Value = serde_json::from_slice(&seed_manifest).unwrap();
    let dir = scratch.join("layout");
    let _ = std::fs::remove_dir_all(&dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    // The seed's layer blob, so a manifest that names it can be read.
    let seed_dir = scratch.join("seed-layout/blobs/sha256");
    if let Some(l) = seed_layer["layers"][0]["digest"].as_str() {
        let hex = l.trim_start_matches("sha256:");
        std::fs::copy(seed_dir.join(hex), blobs.join(hex)).unwrap();
    }
    let put = |b: &[u8]| {
        let hex = hex::encode(Sha256::digest(b));
        std::fs::write(blobs.join(&hex), b).unwrap();
        (format!("sha256:{hex}"), b.len())
    };
    let (cd, cs) = put(&config);
    if let Ok(mut mv) = serde_json::from_slice::<serde_json::Value>(&manifest) {
        if mv["config"].is_object() {
            mv["config"]["digest"] = cd.into();
            mv["config"]["size"] = cs.into();
            manifest = serde_json::to_vec(&mv).unwrap();
        }
    }
    let (md, ms) = put(&manifest);
    let index = match serde_json::from_slice::<serde_json::Value>(&index) {
        Ok(mut iv) if iv["manifests"][0].is_object() => {
            iv["manifests"][0]["digest"] = md.into();
            iv["manifests"][0]["size"] = ms.into();
            serde_json::to_vec(&iv).unwrap()
        }
        _ => index,
    };
    std::fs::write(dir.join("index.json"), &index).unwrap();
    std::fs::write(
        dir.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    let base = Base::open(&BaseRef::Oci { dir, tag: None }).map_err(|e| e.to_string())?;
    let _ = base.view().read_text("/etc/os-release");
    Ok(())
}

const TARGETS: &[Target] = &[
    Target {
        name: "control",
        seeds: control_seeds,
        run: control_run,
    },
    Target {
        name: "release",
        seeds: release_seeds,
        run: release_run,
    },
    Target {
        name: "rpm-metadata",
        seeds: rpm_metadata_seeds,
        run: rpm_metadata_run,
    },
    Target {
        name: "rpm",
        seeds: rpm_seeds,
        run: rpm_run,
    },
    Target {
        name: "recipe",
        seeds: recipe_seeds,
        run: recipe_run,
    },
    Target {
        name: "lock",
        seeds: lock_seeds,
        run: lock_run,
    },
    Target {
        name: "tar",
        seeds: tar_seeds,
        run: tar_run,
    },
    Target {
        name: "oci",
        seeds: oci_seeds,
        run: oci_run,
    },
    Target {
        name: "xz",
        seeds: xz_seeds,
        run: xz_run,
    },
];

// ---- the mutator ------------------------------------------------------------

const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"0",
    b"-1",
    b"4294967295",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"..",
    b"../../../../",
    b"/",
    b"\n",
    b"\n ",
    b":",
    b"\"",
    b"{",
    b"[",
    b"<",
    b"</",
    b"&#0;",
    b"${a}",
    b"=",
    b"\xc3\x28",
];

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let len = d.len();
        match rng.u8(..8) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                d[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                d[i] = rng.u8(..);
            }
            2 => {
                let i = rng.usize(..=len);
                let v = INTERESTING[rng.usize(..INTERESTING.len())];
                d.splice(i..i, v.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(64));
                d.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(512));
                let run: Vec<u8> = d[i..i + n].to_vec();
                let at = rng.usize(..=len);
                for _ in 0..rng.usize(1..=4) {
                    d.splice(at..at, run.iter().copied());
                }
            }
            5 => {
                let other = &seeds[rng.usize(..seeds.len())];
                if !other.is_empty() && len > 0 {
                    let a = rng.usize(..len);
                    let b = rng.usize(..other.len());
                    d.truncate(a);
                    d.extend_from_slice(&other[b..]);
                }
            }
            6 if len > 0 => {
                // A number in text replaced by a boundary value.
                let i = rng.usize(..len);
                if let Some(off) = d[i..].iter().position(u8::is_ascii_digit) {
                    let s = i + off;
                    let e = d[s..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(d.len(), |x| s + x);
                    let v = INTERESTING[rng.usize(4..9)];
                    d.splice(s..e, v.iter().copied());
                }
            }
            7 if len > 0 => d.truncate(rng.usize(..len)),
            _ => {}
        }
    }
    d.truncate(MAX_LEN);
    d
}

/// Digits blanked, so one kind of error counts once.
fn outcome_class(o: &Outcome) -> String {
    match o {
        Ok(()) => "ok".into(),
        Err(e) => e
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(120)
            .collect(),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn failures_dir() -> PathBuf {
    std::env::var_os("NODEIMG_FUZZ_FAILURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nodeimg-fuzz-failures"))
}

fn save_failure(target: &str, n: u64, data: &[u8]) -> PathBuf {
    let dir = failures_dir();
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(format!("{target}-{n}.bin"));
    if let Ok(mut f) = std::fs::File::create(&p) {
        let _ = f.write_all(data);
    }
    p
}

/// Aborts the process when one input takes longer than [`SLOW`], saving it.
struct Watchdog {
    current: Arc<Mutex<(String, Instant, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let current = Arc::new(Mutex::new((String::new(), Instant::now(), Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (current.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let g = match c.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if !g.0.is_empty() && g.1.elapsed() > SLOW {
                    let p = save_failure(&g.0, 0, &g.2);
                    eprintln!(
                        "fuzz {}: one input took more than {} s; saved as {}",
                        g.0,
                        SLOW.as_secs(),
                        p.display()
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog { current, stop }
    }

    fn enter(&self, target: &str, data: &[u8]) {
        let mut g = match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = (target.to_string(), Instant::now(), data.to_vec());
    }

    fn leave(&self) {
        if let Ok(mut g) = self.current.lock() {
            g.0.clear();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `target` on `data`, catching a panic.
fn run_one(t: &Target, data: &[u8], scratch: &Path) -> std::result::Result<Outcome, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(data, scratch))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn fuzz_parsers() {
    let iters = env_u64("NODEIMG_FUZZ_ITERS", 300);
    let seed = env_u64("NODEIMG_FUZZ_SEED", 1);
    let only = std::env::var("NODEIMG_FUZZ_TARGET").ok();
    let scratch = tempfile::tempdir().unwrap();
    if let Some(file) = std::env::var_os("NODEIMG_FUZZ_REPLAY") {
        let mut data = Vec::new();
        std::fs::File::open(&file)
            .and_then(|mut f| f.read_to_end(&mut data))
            .unwrap();
        let name = only.expect("NODEIMG_FUZZ_TARGET names the target to replay");
        let t = TARGETS.iter().find(|t| t.name == name).unwrap();
        let r = run_one(t, &data, scratch.path());
        eprintln!("replay {name}: {r:?}");
        assert!(r.is_ok(), "{name} panicked: {r:?}");
        return;
    }
    let dog = Watchdog::start();
    let mut failures = Vec::new();
    eprintln!("fuzz: seed {seed}, {iters} inputs per target");
    for (k, t) in TARGETS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let dir = scratch.path().join(t.name);
        std::fs::create_dir_all(&dir).unwrap();
        let seeds = (t.seeds)(&dir);
        for s in &seeds {
            let r = run_one(t, s, &dir);
            assert!(r.is_ok(), "{}: a seed panics: {r:?}", t.name);
        }
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(k as u64));
        let mut classes = BTreeSet::new();
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for n in 0..iters {
            let data = mutate(&mut rng, &seeds);
            dog.enter(t.name, &data);
            let t0 = Instant::now();
            let r = run_one(t, &data, &dir);
            slowest = slowest.max(t0.elapsed());
            dog.leave();
            match r {
                Ok(o) => {
                    classes.insert(outcome_class(&o));
                }
                Err(msg) => {
                    let p = save_failure(t.name, n + 1, &data);
                    failures.push(format!("{}: panic: {msg} (input {})", t.name, p.display()));
                }
            }
        }
        eprintln!(
            "fuzz {:<13} {iters} executions in {:.1} s, {} distinct outcomes, slowest {:.0} ms",
            t.name,
            started.elapsed().as_secs_f64(),
            classes.len(),
            slowest.as_secs_f64() * 1000.0
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
