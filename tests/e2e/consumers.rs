//! The real programs that read a node's configuration accept what nodeimg
//! writes: containerd parses config.toml and ends up with the systemd cgroup
//! driver, a trixie dockerd validates every daemon.json, systemctl sees the
//! units enabled exactly as its own `enable` would, and systemd-analyze finds
//! nothing to say about generated units and drop-ins.
//!
//! Each checker also has a negative control, so a check that cannot fail is
//! caught.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nodeimg_e2e::*;

/// One recipe built on the fixture base (one with rpm packages on the
/// fixture made an rpm base, see `test_build`) and unpacked with umoci.
struct Unpacked {
    label: String,
    model: RecipeModel,
    /// The base it was built on, unpacked (shared by the recipes built on
    /// the same base; read only).
    base_root: PathBuf,
    /// A folder of this recipe's own.
    work: PathBuf,
    rootfs: PathBuf,
}

/// Every recipe built and unpacked, once per test process (the tests share
/// them and only read them), under `build/test-repos/<pid>/consumers`, which
/// the next test process removes.
fn build_and_unpack_all() -> Option<&'static [Unpacked]> {
    static BUILT: OnceLock<Option<Vec<Unpacked>>> = OnceLock::new();
    BUILT.get_or_init(build_and_unpack).as_deref()
}

fn build_and_unpack() -> Option<Vec<Unpacked>> {
    if !require("umoci", "umoci") {
        return None;
    }
    let fixture = fixture_base()?;
    let dir = repo::repos_dir().join("consumers");
    let _ = fs::remove_dir_all(&dir);
    let mut bases: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for recipe in recipes() {
        let tb = test_build(&recipe, &fixture);
        let model = RecipeModel::load(&recipe);
        let label = recipe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let work = dir.join(&label);
        fs::create_dir_all(&work).expect("create the recipe's folder");
        let layout = work.join("oci");
        let r = run(nodeimg(&work)
            .arg("build")
            .arg(&tb.recipe)
            .arg("-o")
            .arg(&layout)
            .args(["--format", "oci", "--base", &tb.base_ref()])
            .args(&tb.args))
        .ok();
        single_digest_line(&r);
        let bundle = work.join("bundle");
        let r = umoci_unpack(&layout, &model.tag(), &bundle);
        assert_eq!(r.code, 0, "{label}: umoci unpack failed: {r}");
        let n = bases.len();
        let base_root = bases
            .entry(tb.base.clone())
            .or_insert_with(|| unpack_base(&dir.join(format!("base-{n}")), &tb.base))
            .clone();
        out.push(Unpacked {
            label,
            model,
            base_root,
            rootfs: bundle.join("rootfs"),
            work,
        });
    }
    Some(out)
}

// ---------------------------------------------------------------- containerd

#[test]
fn containerd_config_dump_says_systemd_cgroup_true() {
    if !require("containerd", "containerd") {
        return;
    }
    let Some(built) = build_and_unpack_all() else {
        return;
    };
    let mut checked = 0;
    for u in built {
        if u.model.items("containerd").is_empty() {
            continue;
        }
        let config = u.rootfs.join("etc/containerd/config.toml");
        let text = fs::read_to_string(&config)
            .unwrap_or_else(|e| panic!("{}: {} unreadable: {e}", u.label, config.display()));
        match containerd_config_version(&text) {
            Some(2) => {}
            Some(3) => {
                // containerd 2.x format; this host's containerd 1.6 cannot read it.
                eprintln!(
                    "{}: config version 3, not readable by containerd 1.6; skipped",
                    u.label
                );
                continue;
            }
            v => panic!(
                "{}: config.toml version is {v:?}, expected 2:\n{text}",
                u.label
            ),
        }
        assert_eq!(
            containerd_systemd_cgroup(&config),
            Ok(true),
            "{}: containerd must see SystemdCgroup = true\n{text}",
            u.label
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no recipe configures containerd (version 2): nothing was checked"
    );
}

/// Negative control: a recipe with `systemd-cgroup = false` must make the same
/// check read `SystemdCgroup = false`, so the check above can fail.
#[test]
fn containerd_check_sees_systemd_cgroup_false() {
    if !require("containerd", "containerd") {
        return;
    }
    for (value, want) in [("false", false), ("true", true)] {
        let tmp = temp_dir("containerd-control");
        let w = tmp.path();
        fs::write(
            w.join("recipe.toml"),
            format!(
                r#"[image]
name = "containerd-control"
base = "scratch"

[[layer]]
name = "kernel"
modules = {{ file = "containerd", load = ["overlay", "br_netfilter"] }}
sysctl = {{ file = "99-kubernetes-cri", set = {{ "net.bridge.bridge-nf-call-iptables" = 1, "net.ipv4.ip_forward" = 1, "net.bridge.bridge-nf-call-ip6tables" = 1 }} }}

[[layer]]
name = "containerd-config"
containerd = {{ config-version = 2, systemd-cgroup = {value} }}
"#
            ),
        )
        .expect("write recipe");
        let r = run(nodeimg(w).args([
            "build",
            "recipe.toml",
            "-o",
            "rootfs.tar",
            "--format",
            "rootfs",
        ]))
        .ok();
        single_digest_line(&r);
        let root = w.join("root");
        extract_tar(&w.join("rootfs.tar"), &root);
        let config = root.join("etc/containerd/config.toml");
        assert_eq!(
            containerd_systemd_cgroup(&config),
            Ok(want),
            "systemd-cgroup = {value} must dump as SystemdCgroup = {value}:\n{}",
            fs::read_to_string(&config).unwrap_or_default()
        );
    }
}

/// The checker itself, on hand-written configs: a missing `version` makes
/// containerd 1.6 ignore the v2 key paths, and the dump shows it.
#[test]
fn containerd_checker_catches_a_config_without_version() {
    if !require("containerd", "containerd") {
        return;
    }
    let tmp = temp_dir("containerd-checker");
    let body = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                runtime_type = \"io.containerd.runc.v2\"\n\
                [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n\
                SystemdCgroup = true\n";
    let good = tmp.path().join("good.toml");
    fs::write(&good, format!("version = 2\n{body}")).expect("write");
    assert_eq!(containerd_systemd_cgroup(&good), Ok(true));
    let no_version = tmp.path().join("no-version.toml");
    fs::write(&no_version, body).expect("write");
    assert_ne!(containerd_systemd_cgroup(&no_version), Ok(true));
    let broken = tmp.path().join("broken.toml");
    fs::write(&broken, "version = 2\n[plugins\n").expect("write");
    assert!(containerd_systemd_cgroup(&broken).is_err());
}

// -------------------------------------------------------------------- docker

#[test]
fn trixie_dockerd_validates_every_daemon_json() {
    let Some(dockerd) = trixie_dockerd() else {
        return;
    };
    let Some(built) = build_and_unpack_all() else {
        return;
    };
    let mut checked = 0;
    for u in built {
        let files: Vec<String> = files_under(&u.rootfs, "etc/docker")
            .into_iter()
            .filter(|p| p.ends_with(".json"))
            .collect();
        if !u.model.items("docker").is_empty() {
            assert!(
                files.iter().any(|f| f == "/etc/docker/daemon.json"),
                "{}: the recipe configures docker but /etc/docker/daemon.json is missing",
                u.label
            );
        }
        for f in files {
            let path = u.rootfs.join(f.trim_start_matches('/'));
            if let Err(e) = dockerd_validate(&dockerd, &path) {
                panic!(
                    "{}: {f}: {e}\n{}",
                    u.label,
                    fs::read_to_string(&path).unwrap_or_default()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no recipe writes a daemon.json: nothing was checked"
    );
}

/// Negative control: the validator rejects an unknown key and bad JSON.
#[test]
fn trixie_dockerd_rejects_bad_daemon_json() {
    let Some(dockerd) = trixie_dockerd() else {
        return;
    };
    let tmp = temp_dir("dockerd-control");
    let good = tmp.path().join("good.json");
    fs::write(&good, "{\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"],\n  \"log-driver\": \"json-file\"\n}\n")
        .expect("write");
    assert_eq!(dockerd_validate(&dockerd, &good), Ok(()));
    for (name, text) in [
        ("unknown.json", "{ \"exec-optz\": [] }\n"),
        ("syntax.json", "{ \"log-driver\": \"json-file\", }\n"),
        (
            "type.json",
            "{ \"exec-opts\": \"native.cgroupdriver=systemd\" }\n",
        ),
    ] {
        let p = tmp.path().join(name);
        fs::write(&p, text).expect("write");
        assert!(
            dockerd_validate(&dockerd, &p).is_err(),
            "dockerd accepted {name}"
        );
    }
}

// ------------------------------------------------------------------- systemd

fn systemctl(root: &Path, args: &[&str]) -> Run {
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .env("SYSTEMD_OFFLINE", "1"))
}

/// Unit names nodeimg wrote files for: units in /etc/systemd/system and the
/// units of drop-in folders there (`*.d/*.conf`), plus those the recipe names.
fn generated_units(u: &Unpacked, base_root: &Path) -> BTreeSet<String> {
    let mut units = BTreeSet::new();
    let base_files: BTreeSet<String> = files_under(base_root, "etc/systemd").into_iter().collect();
    for f in files_under(&u.rootfs, "etc/systemd/system") {
        if base_files.contains(&f) {
            continue;
        }
        let rel = f.trim_start_matches("/etc/systemd/system/");
        match rel.split_once('/') {
            None => {
                units.insert(rel.to_string());
            }
            Some((dir, leaf)) if dir.ends_with(".d") && leaf.ends_with(".conf") => {
                units.insert(dir.trim_end_matches(".d").to_string());
            }
            Some(_) => {}
        }
    }
    for s in u.model.items("systemd") {
        for (list, key) in [("unit", "name"), ("dropin", "unit")] {
            if let Some(a) = s.get(list).and_then(|v| v.as_array()) {
                for it in a {
                    if let Some(n) = it.get(key).and_then(|v| v.as_str()) {
                        units.insert(n.to_string());
                    }
                }
            }
        }
    }
    units
}

/// `base` unpacked into `work/base` (once).
fn unpack_base(work: &Path, base: &Path) -> PathBuf {
    let dir = work.join("base");
    if !dir.exists() {
        extract_tar(base, &dir);
    }
    dir
}

#[test]
fn enabled_units_are_enabled_and_links_equal_systemctl_enable() {
    if !require("systemctl", "systemd") {
        return;
    }
    let Some(built) = build_and_unpack_all() else {
        return;
    };
    let mut checked = 0;
    for u in built {
        let base_root = &u.base_root;
        let enable = u.model.systemd_list("enable");
        let disable = u.model.systemd_list("disable");
        let mask = u.model.systemd_list("mask");
        for unit in &enable {
            let r = systemctl(&u.rootfs, &["is-enabled", unit]);
            assert_eq!(
                (r.code, r.stdout.trim()),
                (0, "enabled"),
                "{}: {unit} must be enabled: {r}",
                u.label
            );
            checked += 1;
        }
        for unit in &mask {
            let r = systemctl(&u.rootfs, &["is-enabled", unit]);
            assert_eq!(
                r.stdout.trim(),
                "masked",
                "{}: {unit} must be masked: {r}",
                u.label
            );
        }

        // Reference: the built root without the links nodeimg made (links the
        // base already had stay), then systemctl's own enable/disable/mask.
        let base_links = symlinks_under(base_root, "etc/systemd");
        let ours = symlinks_under(&u.rootfs, "etc/systemd");
        let reference = u.work.join("reference");
        copy_dir(&u.rootfs, &reference);
        for (p, t) in &ours {
            if base_links.get(p) != Some(t) {
                fs::remove_file(reference.join(p.trim_start_matches('/'))).expect("remove link");
            }
        }
        for (verb, units) in [("enable", &enable), ("disable", &disable), ("mask", &mask)] {
            if units.is_empty() {
                continue;
            }
            let mut args = vec![verb];
            args.extend(units.iter().map(String::as_str));
            let r = systemctl(&reference, &args);
            assert_eq!(
                r.code, 0,
                "{}: reference systemctl {verb} failed: {r}",
                u.label
            );
        }
        let theirs = symlinks_under(&reference, "etc/systemd");
        let only_ours: BTreeMap<_, _> = ours
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(v))
            .collect();
        let only_theirs: BTreeMap<_, _> = theirs
            .iter()
            .filter(|(k, v)| ours.get(*k) != Some(v))
            .collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{}: enablement links differ from `systemctl --root enable`\n only nodeimg: {only_ours:#?}\n only systemctl: {only_theirs:#?}",
            u.label
        );
    }
    assert!(checked > 0, "no recipe enables a unit: nothing was checked");
}

#[test]
fn systemd_analyze_verify_is_silent_on_generated_units() {
    if !require("systemd-analyze", "systemd") {
        return;
    }
    let Some(built) = build_and_unpack_all() else {
        return;
    };
    for u in built {
        let base_root = &u.base_root;
        let masked: BTreeSet<String> = u.model.systemd_list("mask").into_iter().collect();
        let mut units = generated_units(u, base_root);
        units.extend(u.model.systemd_list("enable"));
        let units: Vec<String> = units
            .into_iter()
            .filter(|n| !masked.contains(n) && !n.contains("@."))
            .collect();
        if units.is_empty() {
            continue;
        }
        let r = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", u.rootfs.display()))
            .args(&units)
            .env("SYSTEMD_OFFLINE", "1"));
        assert!(
            r.code == 0 && r.stderr.trim().is_empty() && r.stdout.trim().is_empty(),
            "{}: systemd-analyze verify {units:?} must print nothing: {r}",
            u.label
        );
    }
}

/// Negative control: the verifier speaks up about a broken drop-in in the
/// same kind of root.
#[test]
fn systemd_analyze_verify_reports_a_broken_dropin() {
    if !require("systemd-analyze", "systemd") {
        return;
    }
    let tmp = temp_dir("verify-control");
    let Some(fixture) = fixture_base() else {
        return;
    };
    let root = unpack_base(tmp.path(), &fixture);
    let r = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("containerd.service"));
    assert!(
        r.code == 0 && r.stderr.trim().is_empty(),
        "the fixture's own unit must verify: {r}"
    );
    let d = root.join("etc/systemd/system/containerd.service.d");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(
        d.join("10-broken.conf"),
        "[Service]\nExecStartPost=/usr/bin/no-such-program\nBogusKey=1\n",
    )
    .expect("write");
    let r = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("containerd.service"));
    assert!(
        !r.stderr.trim().is_empty(),
        "a broken drop-in must be reported: {r}"
    );
}
