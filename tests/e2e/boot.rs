//! Boot proof of the main job: the containerd node image
//! (`recipes/containerd-debian.toml` on the mmdebstrap base of
//! `scripts/make-node-base`, containerd and runc installed by nodeimg from
//! the build machine's Debian mirror) boots under QEMU with a read-only root
//! and reports the node's real state on the serial console. The bare base,
//! booted with the same probe, is the negative control: a test that cannot
//! tell the two apart proves nothing.
//!
//! Before booting, the node image is checked with its own dpkg and systemctl
//! (`dpkg --root -l/--verify/--audit`, `systemctl --root is-enabled`).
//!
//! Needs root (the boot disk keeps the image's file owners), mmdebstrap,
//! e2fsprogs and qemu-system-x86 (`scripts/install-test-deps`); a missing one
//! skips the test, or fails it under `CI=true`.
//!
//! Environment: `NODEIMG_BOOT_TIMEOUT` (seconds per boot, default 480),
//! `NODEIMG_BOOT_PARALLEL=0` boots one machine after the other,
//! `NODEIMG_BOOT_SMP` (vCPUs per machine, default 2).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nodeimg_e2e::*;

const RECIPE: &str = "recipes/containerd-debian.toml";
const PROBE: &str = "tests/boot/probe.toml";
const BEGIN: &str = "NODE-PROBE-BEGIN";
const END: &str = "NODE-PROBE-END";
/// The one dpkg --verify line the recipe causes on purpose: it replaces
/// containerd's conffile with its own config.toml.
const EXPECTED_VERIFY: &str = "??5?????? c /etc/containerd/config.toml";

/// A line of the test's report, printed whether the test passes or fails
/// (straight to the process's stderr, which the test harness does not
/// capture).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "[boot] {line}");
}

fn secs(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Root, and every tool the test runs.
fn prerequisites() -> bool {
    let uid = run(Command::new("id").arg("-u"));
    if uid.stdout.trim() != "0" {
        return skip_or_fail(
            "root",
            "run as root: the boot disk must keep the image's file owners",
        );
    }
    require("mmdebstrap", "mmdebstrap")
        && require("mkfs.ext4", "e2fsprogs")
        && require("dpkg", "dpkg")
        && require("systemctl", "systemd")
        && require(
            "qemu-system-x86_64",
            "qemu-system-x86 from bookworm-backports (scripts/install-test-deps does it)",
        )
}

/// `scripts/make-node-base build/node-base.tar` (cached by the script).
fn node_base(root: &Path) -> PathBuf {
    let out = root.join("build/node-base.tar");
    let t = Instant::now();
    let r = run(Command::new(root.join("scripts/make-node-base"))
        .arg(&out)
        .current_dir(root));
    assert_eq!(r.code, 0, "scripts/make-node-base failed: {r}");
    let cached = r.stderr.contains("(cached)");
    say(&format!(
        "node base: {} ({} MB), {}{}",
        out.display(),
        fs::metadata(&out).map(|m| m.len() >> 20).unwrap_or(0),
        secs(t),
        if cached { ", cached" } else { "" }
    ));
    out
}

/// The Debian mirror of the build machine's apt configuration, as
/// `scripts/lib-apt.sh` reads it.
fn debian_mirror(root: &Path) -> String {
    let r = run(Command::new("bash")
        .arg("-c")
        .arg(". scripts/lib-apt.sh && debian_mirror")
        .current_dir(root))
    .ok();
    let m = r.stdout.trim().to_string();
    assert!(!m.is_empty(), "no Debian mirror found: {r}");
    m
}

/// `nodeimg build RECIPE --format rootfs -o OUT --base BASE [extra]`.
fn build_rootfs(root: &Path, recipe: &str, base: &Path, out: &Path, extra: &[String]) {
    let t = Instant::now();
    run(nodeimg(root)
        .arg("build")
        .arg(recipe)
        .args(["--format", "rootfs", "-q", "-o"])
        .arg(out)
        .arg("--base")
        .arg(format!("rootfs:{}", base.display()))
        .args(extra))
    .ok();
    say(&format!(
        "nodeimg build {recipe} on {}: {} ({} MB)",
        base.file_name().unwrap_or_default().to_string_lossy(),
        secs(t),
        fs::metadata(out).map(|m| m.len() >> 20).unwrap_or(0)
    ));
}

/// Extract a rootfs tar keeping numeric owners and modes (as root).
fn extract_owned(tar: &Path, dest: &Path) -> Result<(), String> {
    fs::create_dir_all(dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    let r = run(Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--numeric-owner", "--same-owner", "-xpf"])
        .arg(tar));
    if r.code == 0 {
        Ok(())
    } else {
        Err(format!("extracting {} failed: {r}", tar.display()))
    }
}

/// The `name=version` pins of the recipe's `packages` items.
fn pinned_packages(root: &Path) -> Vec<(String, String)> {
    let model = RecipeModel::load(&root.join(RECIPE));
    let pins: Vec<(String, String)> = model
        .items("packages")
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|s| s.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let names: Vec<&str> = pins.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["containerd", "runc"],
        "{RECIPE} must pin containerd and runc"
    );
    pins
}

/// The node image checked with its own package database and unit files.
fn check_installed(dir: &Path, pins: &[(String, String)]) -> Vec<String> {
    let mut failures = Vec::new();
    let root_arg = format!("--root={}", dir.display());

    let list = run(Command::new("dpkg")
        .arg(&root_arg)
        .arg("-l")
        .args(pins.iter().map(|(n, _)| n)));
    for (name, version) in pins {
        let line = list.stdout.lines().find(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|n| n == name || n.strip_suffix(":amd64") == Some(name))
                .unwrap_or(false)
        });
        let fields: Vec<&str> = line
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first() != Some(&"ii") || fields.get(2) != Some(&version.as_str()) {
            failures.push(format!(
                "dpkg -l: want `ii {name} {version}`, got {line:?}\n{list}"
            ));
        } else {
            say(&format!("dpkg -l: ii {name} {version}"));
        }
    }

    let verify = run(Command::new("dpkg").arg(&root_arg).arg("--verify"));
    let lines: Vec<&str> = verify
        .stdout
        .lines()
        .chain(verify.stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines != [EXPECTED_VERIFY] || !(verify.code == 0 || verify.code == 1) {
        failures.push(format!(
            "dpkg --verify: want exactly `{EXPECTED_VERIFY}`, got {lines:?}\n{verify}"
        ));
    } else {
        say(&format!("dpkg --verify: {EXPECTED_VERIFY} (only)"));
    }

    let audit = run(Command::new("dpkg").arg(&root_arg).arg("--audit"));
    if audit.code != 0 || !audit.stdout.trim().is_empty() || !audit.stderr.trim().is_empty() {
        failures.push(format!("dpkg --audit is not silent: {audit}"));
    } else {
        say("dpkg --audit: silent");
    }

    // The recipe's own units, as systemd reads them (warnings exit 0, so
    // any output is a failure).
    let units = [
        "tmp.mount",
        "var-tmp.mount",
        "var-log.mount",
        "var-lib-containerd.mount",
    ];
    let verify_units = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&root_arg)
        .args(units));
    if verify_units.code != 0 || !verify_units.stderr.trim().is_empty() {
        failures.push(format!(
            "systemd-analyze verify of the recipe's units: {verify_units}"
        ));
    } else {
        say(&format!(
            "systemd-analyze verify: {} clean",
            units.join(" ")
        ));
    }

    let enabled = run(Command::new("systemctl")
        .arg(&root_arg)
        .args(["is-enabled", "containerd.service"]));
    if enabled.code != 0 || enabled.stdout.trim() != "enabled" {
        failures.push(format!("containerd.service is not enabled: {enabled}"));
    } else {
        say("systemctl --root is-enabled containerd.service: enabled");
    }
    failures
}

/// A QEMU process that is killed (and reaped) whatever happens.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What one boot printed.
struct Boot {
    label: &'static str,
    report: Vec<String>,
    extract: Duration,
    mkfs: Duration,
    boot: Duration,
}

impl Boot {
    fn value(&self, name: &str) -> Option<&str> {
        self.report.iter().find_map(|l| {
            l.split_once(" = ")
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.trim())
        })
    }
}

/// The last `n` lines of a serial log.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The lines between the probe's markers, if both were printed.
fn probe_report(serial: &str) -> Option<Vec<String>> {
    let text = serial.replace('\r', "");
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    Some(
        text[start..end]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// The newest `/boot/<prefix>*` of the extracted image `tree`, copied to
/// `<work>/<label>-<prefix>` (outside the disk image).
fn boot_file(label: &str, tree: &Path, work: &Path, prefix: &str) -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = fs::read_dir(tree.join("boot"))
        .map_err(|e| format!("{label}: no /boot in the image: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    let src = found
        .pop()
        .ok_or(format!("{label}: no /boot/{prefix}* in the image"))?;
    let dst = work.join(format!("{label}-{prefix}"));
    fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
    Ok(dst)
}

/// The kernel and initrd to boot `tree` with, once its probe unit is clean.
fn kernel_and_initrd(label: &str, tree: &Path, work: &Path) -> Result<(PathBuf, PathBuf), String> {
    // The probe unit itself must be what systemd reads: a misplaced key
    // (e.g. SuccessAction= outside [Unit]) is only a warning.
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", tree.display()))
        .arg("node-probe.service"));
    if verify.code != 0 || !verify.stderr.trim().is_empty() {
        return Err(format!("{label}: the probe unit is not clean: {verify}"));
    }
    let kernel = boot_file(label, tree, work, "vmlinuz-")?;
    let initrd = boot_file(label, tree, work, "initrd.img-")?;
    Ok((kernel, initrd))
}

/// Runs QEMU (TCG) on `disk` with the serial console into `serial_path`,
/// until it exits or `timeout` passes (then it is killed).
fn run_qemu(
    label: &str,
    kernel: &Path,
    initrd: &Path,
    disk: &Path,
    serial_path: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, Duration), String> {
    let serial =
        fs::File::create(serial_path).map_err(|e| format!("{}: {e}", serial_path.display()))?;
    let serial_err = serial.try_clone().map_err(|e| e.to_string())?;
    let smp = env_u64("NODEIMG_BOOT_SMP", 2).to_string();
    let t = Instant::now();
    let child = Command::new(find_tool("qemu-system-x86_64").unwrap_or_default())
        .args(["-accel", "tcg", "-m", "1024", "-smp", &smp])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "root=/dev/vda ro console=ttyS0 panic=-1 quiet loglevel=3",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .stdin(Stdio::null())
        .stdout(serial)
        .stderr(serial_err)
        .spawn()
        .map_err(|e| format!("{label}: cannot start qemu-system-x86_64: {e}"))?;
    let mut vm = Vm(child);
    let status = loop {
        match vm.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if t.elapsed() > timeout => {
                drop(vm);
                return Err(format!(
                    "{label}: no power-off within {} s (NODEIMG_BOOT_TIMEOUT); serial log tail:\n{}",
                    timeout.as_secs(),
                    tail(serial_path, 40)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => return Err(format!("{label}: waiting for qemu: {e}")),
        }
    };
    Ok((status, t.elapsed()))
}

/// All the serial console printed.
fn read_serial(serial_path: &Path) -> Result<String, String> {
    let mut text = String::new();
    fs::File::open(serial_path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            let mut b = Vec::new();
            f.read_to_end(&mut b)?;
            text = String::from_utf8_lossy(&b).into_owned();
            Ok(())
        })
        .map_err(|e| format!("{}: {e}", serial_path.display()))?;
    Ok(text)
}

/// Make an ext4 disk of a rootfs tar (no mount, no loop device) and boot
/// it under QEMU (TCG), read-only root, until the probe powers it off.
fn boot(label: &'static str, tar: &Path, work: &Path, timeout: Duration) -> Result<Boot, String> {
    let tree = work.join(format!("{label}-root"));
    let t = Instant::now();
    extract_owned(tar, &tree)?;
    let extract_time = t.elapsed();
    let (kernel, initrd) = kernel_and_initrd(label, &tree, work)?;

    let disk = work.join(format!("{label}.ext4"));
    let t = Instant::now();
    let mkfs = run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "root", "-d"])
        .arg(&tree)
        .arg(&disk)
        .arg("2G"));
    let mkfs_time = t.elapsed();
    let _ = fs::remove_dir_all(&tree);
    if mkfs.code != 0 {
        return Err(format!("{label}: mkfs.ext4 -d failed: {mkfs}"));
    }

    let serial_path = work.join(format!("{label}-serial.log"));
    let (status, boot_time) = run_qemu(label, &kernel, &initrd, &disk, &serial_path, timeout)?;
    let _ = fs::remove_file(&disk);
    let text = read_serial(&serial_path)?;
    let report = probe_report(&text).ok_or_else(|| {
        format!(
            "{label}: qemu exited ({status}) after {:.1} s without the probe's report; serial log tail:\n{}",
            boot_time.as_secs_f64(),
            tail(&serial_path, 40)
        )
    })?;
    if !status.success() {
        return Err(format!(
            "{label}: qemu exited {status}; serial log tail:\n{}",
            tail(&serial_path, 40)
        ));
    }
    Ok(Boot {
        label,
        report,
        extract: extract_time,
        mkfs: mkfs_time,
        boot: boot_time,
    })
}

/// What the node must show, and what the bare base must not.
fn check_boots(node: &Boot, base: &Boot) -> Vec<String> {
    let mut failures = Vec::new();
    let mut want = |b: &Boot, name: &str, ok: &dyn Fn(Option<&str>) -> bool, what: &str| {
        let got = b.value(name);
        if !ok(got) {
            failures.push(format!(
                "{}: `{name}` should be {what}, the probe says {}",
                b.label,
                got.map_or("nothing".to_string(), |v| format!("`{v}`"))
            ));
        }
    };
    let is = |v: &'static str| move |got: Option<&str>| got == Some(v);
    for key in [
        "sysctl net.bridge.bridge-nf-call-iptables",
        "sysctl net.bridge.bridge-nf-call-ip6tables",
        "sysctl net.ipv4.ip_forward",
    ] {
        want(node, key, &is("1"), "1");
    }
    want(node, "module overlay", &is("loaded"), "loaded");
    want(node, "module br_netfilter", &is("loaded"), "loaded");
    want(node, "containerd", &is("installed"), "installed");
    want(node, "containerd.service", &is("active"), "active");
    want(node, "SystemdCgroup", &is("true"), "true");
    want(node, "cgroup fs", &is("cgroup2fs"), "cgroup2fs");
    want(node, "failed units", &is("none"), "none");
    want(node, "root mount", &is("ro"), "ro (immutable root)");

    // The negative control: the same probe on the base alone.
    want(base, "sysctl net.ipv4.ip_forward", &is("0"), "0");
    want(
        base,
        "sysctl net.bridge.bridge-nf-call-iptables",
        &is("absent"),
        "absent",
    );
    want(
        base,
        "sysctl net.bridge.bridge-nf-call-ip6tables",
        &is("absent"),
        "absent",
    );
    want(base, "module br_netfilter", &is("absent"), "absent");
    want(base, "containerd", &is("absent"), "absent");
    want(
        base,
        "SystemdCgroup",
        &|got| got.is_none() || got == Some("false"),
        "absent or false",
    );
    want(base, "cgroup fs", &is("cgroup2fs"), "cgroup2fs");
    failures
}

/// Boots the node's and the base's probe images (at once, unless
/// `NODEIMG_BOOT_PARALLEL=0`) and says what each reported; fails unless both
/// booted to the probe's report.
fn boot_both(node_probe: &Path, base_probe: &Path, w: &Path) -> Vec<Boot> {
    let timeout = Duration::from_secs(env_u64("NODEIMG_BOOT_TIMEOUT", 480));
    let parallel = std::env::var("NODEIMG_BOOT_PARALLEL").map_or(true, |v| v != "0");
    let t = Instant::now();
    let (node_boot, base_boot) = if parallel {
        std::thread::scope(|s| {
            let n = s.spawn(|| boot("node", node_probe, w, timeout));
            let b = s.spawn(|| boot("base", base_probe, w, timeout));
            (
                n.join()
                    .unwrap_or_else(|_| Err("node: boot panicked".into())),
                b.join()
                    .unwrap_or_else(|_| Err("base: boot panicked".into())),
            )
        })
    } else {
        let n = boot("node", node_probe, w, timeout);
        let b = boot("base", base_probe, w, timeout);
        (n, b)
    };
    say(&format!(
        "boots ({}): {}",
        if parallel {
            "parallel"
        } else {
            "one after the other"
        },
        secs(t)
    ));
    let mut errors = Vec::new();
    let boots: Vec<Boot> = [node_boot, base_boot]
        .into_iter()
        .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
        .collect();
    for b in &boots {
        say(&format!(
            "{}: tar -x {:.1} s, mkfs.ext4 -d {:.1} s, boot to power-off {:.1} s; report:",
            b.label,
            b.extract.as_secs_f64(),
            b.mkfs.as_secs_f64(),
            b.boot.as_secs_f64()
        ));
        for l in &b.report {
            say(&format!("  {}: {l}", b.label));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
    boots
}

#[test]
fn node_image_boots_with_its_configuration() {
    let started = Instant::now();
    if !prerequisites() {
        return;
    }
    let root = workspace_root();
    let base = node_base(&root);
    let mirror = debian_mirror(&root);
    let pins = pinned_packages(&root);
    let work = temp_dir("boot");
    let w = work.path();

    // The node image, flattened to a rootfs, packages from the real mirror.
    let node = w.join("node.tar");
    build_rootfs(
        &root,
        RECIPE,
        &base,
        &node,
        &[
            "--var".to_string(),
            format!("mirror={mirror}"),
            "--cache-dir".to_string(),
            root.join("build/nodeimg-cache").display().to_string(),
        ],
    );

    // Its packages, as the image's own dpkg and systemctl see them.
    let installed = w.join("node-installed");
    extract_owned(&node, &installed).unwrap_or_else(|e| panic!("{e}"));
    let package_failures = check_installed(&installed, &pins);
    let _ = fs::remove_dir_all(&installed);
    assert!(
        package_failures.is_empty(),
        "the node image's packages are not what the recipe pins:\n{}",
        package_failures.join("\n")
    );

    // The test-only probe on top of the node image, and of the bare base.
    let node_probe = w.join("node-probe.tar");
    let base_probe = w.join("base-probe.tar");
    build_rootfs(&root, PROBE, &node, &node_probe, &[]);
    build_rootfs(&root, PROBE, &base, &base_probe, &[]);
    let _ = fs::remove_file(&node);

    let boots = boot_both(&node_probe, &base_probe, w);
    let failures = check_boots(&boots[0], &boots[1]);
    say(&format!("total: {}", secs(started)));
    assert!(
        failures.is_empty(),
        "the booted node (or the control) is not what the recipe promises:\n{}",
        failures.join("\n")
    );
}

#[test]
fn probe_report_is_read_between_the_markers_only() {
    let serial = "noise\r\nNODE-PROBE-BEGIN\r\nsysctl net.ipv4.ip_forward = 1\r\n\r\nfailed units = none\r\nNODE-PROBE-END\r\n[  OK  ] later\r\n";
    let report = probe_report(serial).unwrap();
    assert_eq!(
        report,
        ["sysctl net.ipv4.ip_forward = 1", "failed units = none"]
    );
    let b = Boot {
        label: "x",
        report,
        extract: Duration::ZERO,
        mkfs: Duration::ZERO,
        boot: Duration::ZERO,
    };
    assert_eq!(b.value("sysctl net.ipv4.ip_forward"), Some("1"));
    assert_eq!(b.value("failed units"), Some("none"));
    assert_eq!(b.value("containerd"), None);
    // A report cut off before its end marker is no report.
    assert!(probe_report("NODE-PROBE-BEGIN\nsysctl net.ipv4.ip_forward = 1\n").is_none());
    assert!(probe_report("no probe here").is_none());
}

#[test]
fn a_control_that_looks_like_the_node_fails_the_check() {
    let node = Boot {
        label: "node",
        report: [
            "sysctl net.bridge.bridge-nf-call-iptables = 1",
            "sysctl net.bridge.bridge-nf-call-ip6tables = 1",
            "sysctl net.ipv4.ip_forward = 1",
            "module overlay = loaded",
            "module br_netfilter = loaded",
            "containerd = installed",
            "containerd.service = active",
            "SystemdCgroup = true",
            "cgroup fs = cgroup2fs",
            "root mount = ro",
            "failed units = none",
        ]
        .map(String::from)
        .to_vec(),
        extract: Duration::ZERO,
        mkfs: Duration::ZERO,
        boot: Duration::ZERO,
    };
    let control = Boot {
        label: "base",
        report: [
            "sysctl net.bridge.bridge-nf-call-iptables = absent",
            "sysctl net.bridge.bridge-nf-call-ip6tables = absent",
            "sysctl net.ipv4.ip_forward = 0",
            "module overlay = absent",
            "module br_netfilter = absent",
            "containerd = absent",
            "cgroup fs = cgroup2fs",
            "root mount = ro",
            "failed units = none",
        ]
        .map(String::from)
        .to_vec(),
        extract: Duration::ZERO,
        mkfs: Duration::ZERO,
        boot: Duration::ZERO,
    };
    assert_eq!(check_boots(&node, &control), Vec::<String>::new());
    // The node configuration leaking into the control is caught...
    let leaked = Boot {
        label: "base",
        report: node.report.clone(),
        extract: Duration::ZERO,
        mkfs: Duration::ZERO,
        boot: Duration::ZERO,
    };
    let f = check_boots(&node, &leaked);
    assert_eq!(f.len(), 6, "{f:#?}");
    assert!(f[0].starts_with("base: `sysctl net.ipv4.ip_forward` should be 0"));
    // ... and so is a node that lost a setting or has a failed unit.
    let mut broken = node.report.clone();
    broken[2] = "sysctl net.ipv4.ip_forward = 0".into();
    broken[10] = "failed units = containerd.service".into();
    let broken = Boot {
        label: "node",
        report: broken,
        extract: Duration::ZERO,
        mkfs: Duration::ZERO,
        boot: Duration::ZERO,
    };
    let f = check_boots(&broken, &control);
    assert_eq!(
        f,
        [
            "node: `sysctl net.ipv4.ip_forward` should be 1, the probe says `0`",
            "node: `failed units` should be none, the probe says `containerd.service`",
        ]
    );
}
