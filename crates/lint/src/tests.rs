use super::*;

use std::collections::{BTreeMap, BTreeSet};

use nodeimg_layers::MemView;

use nodeimg_recipe::recipe::Loaded;

const BACKENDS: &[&dyn Backend] = &[&nodeimg_deb::Deb, &nodeimg_rpm::Rpm];

const PREREQS: &str = r#"
[[layer]]
name = "kernel"
modules = { file = "k8s", load = ["overlay", "br_netfilter"] }
sysctl = { file = "99-k8s", set = { "net.bridge.bridge-nf-call-iptables" = 1, "net.bridge.bridge-nf-call-ip6tables" = 1, "net.ipv4.ip_forward" = 1 } }
"#;

fn lint_on(base: &MemView, layers: &str) -> Vec<Finding> {
    lint_recipe(base, &format!("{PREREQS}{layers}"))
}

/// Lint `[image]` and the given layers (without [`PREREQS`]).
fn lint_recipe(base: &MemView, layers: &str) -> Vec<Finding> {
    let d = tempfile::tempdir().unwrap();
    let text = format!("[image]\nname = \"n\"\n{layers}");
    std::fs::write(d.path().join("recipe.toml"), text).unwrap();
    let r = Loaded::load(&d.path().join("recipe.toml"))
        .unwrap()
        .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
        .unwrap();
    run(&r, base, "amd64", BACKENDS)
}

fn lint(layers: &str) -> Vec<Finding> {
    lint_on(&MemView::new(), layers)
}

fn ids(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.rule.id).collect()
}

fn systemd_base() -> MemView {
    MemView::new()
        .file("/usr/lib/systemd/systemd", "")
        .symlink("/sbin/init", "/lib/systemd/systemd")
}

#[test]
fn rules_are_data() {
    let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "NI001", "NI002", "NI003", "NI004", "NI005", "NI006", "NI007", "NI008", "NI009",
            "NI010"
        ]
    );
    assert!(RULES
        .iter()
        .all(|r| !r.summary.is_empty() && !r.hint.is_empty()));
}

#[test]
fn rule_ids_are_unique_and_well_formed() {
    let mut seen = BTreeSet::new();
    for r in RULES {
        let digits = r.id.strip_prefix("NI").unwrap_or("");
        assert!(
            digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()),
            "{}: not NI and three digits",
            r.id
        );
        assert!(seen.insert(r.id), "{}: listed twice", r.id);
    }
    // Listed in id order, as `run` runs them.
    assert!(RULES.windows(2).all(|w| w[0].id < w[1].id));
}

/// For every rule, a base and a recipe's layers on which it finds something.
fn examples() -> Vec<(&'static Rule, MemView, String)> {
    let layers = |l: &str| format!("{PREREQS}[[layer]]\nname = \"rt\"\n{l}");
    let none = MemView::new;
    vec![
        (
            &NI001,
            none(),
            layers("crio = {}\nkubelet = { cgroup-driver = \"cgroupfs\" }\n"),
        ),
        (
            &NI002,
            systemd_base(),
            layers("crio = { cgroup-manager = \"cgroupfs\" }\n"),
        ),
        (
            &NI003,
            none(),
            layers("containerd = { config-version = 2, extra = { plugins = { cri = {} } } }\n"),
        ),
        // A runtime without the kernel layer [`PREREQS`].
        (
            &NI004,
            none(),
            "[[layer]]\nname = \"rt\"\ncrio = {}\n".to_string(),
        ),
        (
            &NI005,
            none(),
            layers("systemd = { enable = [\"crio.service\", \"docker.service\"] }\n"),
        ),
        (
            &NI006,
            none(),
            layers("docker = { log-driver = \"json\" }\n"),
        ),
        (
            &NI007,
            none().file("/etc/machine-id", "0123456789abcdef\n"),
            layers(""),
        ),
        (
            &NI008,
            none(),
            layers("crio = {}\nkubelet = { container-runtime-endpoint = \"unix:///run/containerd/containerd.sock\" }\n"),
        ),
        (
            &NI009,
            none(),
            layers("packages = [\"runc=1.0.0~rc6\"]\n"),
        ),
        (
            &NI010,
            none(),
            layers("[[layer.apt-source]]\nname = \"snap\"\nuris = [\"http://r.invalid/debian\"]\nsuites = [\"testing\"]\ncomponents = [\"main\"]\noptions = { Check-Valid-Until = \"no\" }\n"),
        ),
    ]
}

#[test]
fn ni010_names_the_option_and_leaves_a_checked_source_alone() {
    let source = |value: &str| {
        format!(
            "[[layer]]\nname = \"rt\"\n\n[[layer.apt-source]]\nname = \"snap\"\nuris = [\"http://r.invalid/debian\"]\nsuites = [\"testing\"]\ncomponents = [\"main\"]\noptions = {{ Check-Valid-Until = \"{value}\" }}\n"
        )
    };
    let f = lint(&source("false"));
    let f: Vec<&Finding> = f.iter().filter(|f| f.rule.id == "NI010").collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity(), Severity::Warning);
    assert!(
        f[0].key
            .ends_with(".apt-source[0].options.Check-Valid-Until"),
        "{}",
        f[0].key
    );
    assert!(f[0].message.contains("\"snap\""), "{}", f[0].message);
    for checked in ["yes", "true"] {
        let f = lint(&source(checked));
        assert!(f.iter().all(|f| f.rule.id != "NI010"), "{checked}: {f:?}");
    }
}

#[test]
fn every_rule_finds_its_example_and_findings_carry_it() {
    let examples = examples();
    // One example per rule in RULES, and no rule outside it.
    let covered: Vec<&str> = examples.iter().map(|(r, ..)| r.id).collect();
    let listed: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(covered, listed);
    for (rule, base, layers) in &examples {
        assert!(
            RULES.iter().any(|r| std::ptr::eq(*r, *rule)),
            "{} is not in RULES",
            rule.id
        );
        let f = lint_recipe(base, layers);
        assert!(
            f.iter().any(|f| std::ptr::eq(f.rule, *rule)),
            "{}: its example finds nothing: {f:?}",
            rule.id
        );
        for f in &f {
            assert!(
                RULES.iter().any(|r| std::ptr::eq(f.rule, *r)),
                "{}: a finding of a rule not in RULES",
                f.rule.id
            );
            assert_eq!(f.severity(), f.rule.severity);
            assert_eq!(f.hint(), f.rule.hint);
        }
    }
}

#[test]
fn clean_recipe_has_no_findings() {
    let f = lint_on(
        &systemd_base(),
        r#"
[[layer]]
name = "rt"
containerd = { config-version = 2 }
kubelet = { cgroup-driver = "systemd", container-runtime-endpoint = "unix:///run/containerd/containerd.sock" }
systemd = { enable = ["containerd.service"] }
"#,
    );
    assert_eq!(f, []);
}

#[test]
fn ni001_drivers_disagree() {
    let f = lint(
        r#"
[[layer]]
name = "rt"
docker = { exec-opts = ["native.cgroupdriver=systemd"] }

[[layer]]
name = "kubelet"
kubelet = { cgroup-driver = "cgroupfs" }
"#,
    );
    assert_eq!(ids(&f), ["NI001"]);
    assert_eq!(f[0].severity(), Severity::Error);
    assert_eq!(f[0].key, "layer[2].kubelet.cgroup-driver");
    assert_eq!(f[0].line, Some(15));
    assert!(f[0].file.ends_with("/recipe.toml"));
    assert!(
        f[0].message.contains("docker = systemd ("),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message
            .contains("recipe.toml:11), kubelet = cgroupfs ("),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message.ends_with("recipe.toml:15)"),
        "{}",
        f[0].message
    );

    let f = lint("[[layer]]\nname = \"rt\"\ncrio = {}\nkubelet = {}\n");
    assert_eq!(f, []);
}

#[test]
fn ni002_cgroupfs_on_systemd_base() {
    let layers = "[[layer]]\nname = \"rt\"\ncrio = { cgroup-manager = \"cgroupfs\" }\n";
    let f = lint_on(&systemd_base(), layers);
    assert_eq!(ids(&f), ["NI002"]);
    assert_eq!(f[0].key, "layer[1].crio.cgroup-manager");
    assert_eq!(lint(layers), []);
    // /sbin/init pointing at systemd is enough.
    let base = MemView::new().symlink("/sbin/init", "../lib/systemd/systemd");
    assert_eq!(ids(&lint_on(&base, layers)), ["NI002"]);
}

#[test]
fn ni003_containerd_keys() {
    let f = lint(
        r#"
[[layer]]
name = "rt"
[layer.containerd]
config-version = 3
[layer.containerd.extra.plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "x"
"#,
    );
    assert_eq!(ids(&f), ["NI003"]);
    assert_eq!(
        f[0].key,
        "layer[1].containerd.extra.plugins.\"io.containerd.grpc.v1.cri\""
    );
    assert_eq!(f[0].line, Some(13));

    let f = lint(
        r#"
[[layer]]
name = "rt"
[layer.containerd]
config-version = 2
extra = { plugins = { cri = { systemd_cgroup = true } } }
"#,
    );
    assert_eq!(ids(&f), ["NI003", "NI003"]);
    assert!(f
        .iter()
        .any(|f| f.key == "layer[1].containerd.extra.plugins.cri.systemd_cgroup"));

    let f = lint(
        r#"
[[layer]]
name = "rt"
[layer.containerd]
config-version = 2
[layer.containerd.extra.plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
"#,
    );
    assert_eq!(f, []);
    let f = lint(
        r#"
[[layer]]
name = "rt"
containerd = { config-version = 3, extra = { plugins = { "io.containerd.cri.v1.images" = { snapshotter = "overlayfs" } } } }
"#,
    );
    assert_eq!(f, []);
}

#[test]
fn ni004_prerequisites() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("recipe.toml"),
        "[image]\nname = \"n\"\n[[layer]]\nname = \"rt\"\nmodules = { file = \"k\", load = [\"overlay\"] }\nsystemd = { enable = [\"crio.service\"] }\n",
    )
    .unwrap();
    let r = Loaded::load(&d.path().join("recipe.toml"))
        .unwrap()
        .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
        .unwrap();
    let f = run(&r, &MemView::new(), "amd64", BACKENDS);
    assert_eq!(ids(&f), ["NI004"]);
    assert_eq!(f[0].severity(), Severity::Error);
    assert_eq!(f[0].key, "layer[0].systemd.enable[0]");
    assert_eq!(
        f[0].message,
        "a CRI runtime is configured, but the image does not set up module br_netfilter, net.bridge.bridge-nf-call-iptables = 1, net.bridge.bridge-nf-call-ip6tables = 1, net.ipv4.ip_forward = 1"
    );
    // The base may already carry them.
    let base = MemView::new()
        .file("/etc/modules-load.d/k8s.conf", "br_netfilter\n")
        .file(
            "/etc/sysctl.d/k8s.conf",
            "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables=1\nnet/ipv4/ip_forward = 1\n",
        );
    assert_eq!(run(&r, &base, "amd64", BACKENDS), []);
}

#[test]
fn ni005_two_runtimes() {
    let f = lint(
        "[[layer]]\nname = \"rt\"\nsystemd = { enable = [\"containerd.service\"] }\n[[layer]]\nname = \"rt2\"\nsystemd = { enable = [\"crio.service\"] }\n",
    );
    assert_eq!(ids(&f), ["NI005"]);
    assert_eq!(f[0].key, "layer[2].systemd.enable[0]");
    assert!(
        f[0].message.contains("recipe.toml:10) are both enabled"),
        "{}",
        f[0].message
    );
    let f = lint("[[layer]]\nname = \"rt\"\nsystemd = { enable = [\"containerd.service\", \"docker.service\"] }\n");
    assert_eq!(f, []);
}

#[test]
fn ni006_daemon_json_values() {
    let f = lint(
        r#"
[[layer]]
name = "docker"
docker = { exec-opts = ["native.cgroupdriver=sytemd"], log-driver = "json", log-opts = { max-size = "lots", max-file = "3" }, storage-driver = "overlay3" }
"#,
    );
    let keys: Vec<&str> = f.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(ids(&f), ["NI006", "NI006", "NI006", "NI006"]);
    assert_eq!(
        keys,
        [
            "layer[1].docker.exec-opts[0]",
            "layer[1].docker.log-driver",
            "layer[1].docker.log-opts.max-size",
            "layer[1].docker.storage-driver",
        ]
    );
    assert_eq!(f[0].line, Some(11));
    assert_eq!(
        f[0].message,
        "native.cgroupdriver=sytemd is not a cgroup driver (systemd or cgroupfs)"
    );
    let f = lint(
        r#"
[[layer]]
name = "docker"
docker = { exec-opts = ["native.cgroupdriver=systemd"], log-driver = "json-file", log-opts = { max-size = "100m", max-file = "5" }, storage-driver = "overlay2" }
"#,
    );
    assert_eq!(f, []);
    assert!(valid_size("10MB") && valid_size("1.5g") && valid_size("1024"));
    assert!(!valid_size("lots") && !valid_size("m") && !valid_size("10 parsecs"));
}

#[test]
fn ni007_machine_id() {
    let base = MemView::new().file("/etc/machine-id", "0123456789abcdef\n");
    let f = lint_on(&base, "");
    assert_eq!(ids(&f), ["NI007"]);
    assert_eq!(f[0].key, "image");
    assert_eq!(f[0].line, Some(1));
    let f = lint_on(
        &base,
        "[[layer]]\nname = \"x\"\nremove = [\"/etc/machine-id\"]\n",
    );
    assert_eq!(f, []);
    // An empty machine-id is what an image should ship.
    let f = lint_on(&MemView::new().file("/etc/machine-id", ""), "");
    assert_eq!(f, []);
}

#[test]
fn ni008_endpoint() {
    let f = lint(
        "[[layer]]\nname = \"rt\"\ncontainerd = {}\nkubelet = { container-runtime-endpoint = \"unix:///var/run/crio/crio.sock\" }\n",
    );
    assert_eq!(ids(&f), ["NI008"]);
    assert_eq!(f[0].key, "layer[1].kubelet.container-runtime-endpoint");
    let f = lint(
        "[[layer]]\nname = \"rt\"\ncrio = {}\nkubelet = { container-runtime-endpoint = \"unix:///var/run/crio/crio.sock\" }\n",
    );
    assert_eq!(f, []);
}

#[test]
fn output_forms() {
    let f =
        lint("[[layer]]\nname = \"rt\"\ncrio = {}\nkubelet = { cgroup-driver = \"cgroupfs\" }\n");
    let mut out = Vec::new();
    print_text(&f, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "{}:11: error[NI001] layer[1].kubelet.cgroup-driver: cgroup drivers disagree",
            f[0].file
        )),
        "{text}"
    );
    assert!(text.contains("\n  hint: use the same driver everywhere"));
    let j = to_json(&f);
    assert_eq!(
        j["counts"],
        serde_json::json!({"error": 1, "warning": 0, "info": 0, "allowed": 0})
    );
    assert_eq!(j["findings"][0]["rule"], "NI001");
    assert_eq!(j["findings"][0]["severity"], "error");
    assert_eq!(j["findings"][0]["line"], 11);
    // A finding in JSON: its rule's id, severity and hint around its place.
    let one = serde_json::to_string(&f[0]).unwrap();
    let expected = format!(
        "{{\"rule\":\"NI001\",\"severity\":\"error\",\"file\":{},\"line\":11,\"key\":\"layer[1].kubelet.cgroup-driver\",\"message\":{},\"hint\":{},\"allowed\":null}}",
        serde_json::to_string(&f[0].file).unwrap(),
        serde_json::to_string(&f[0].message).unwrap(),
        serde_json::to_string(NI001.hint).unwrap(),
    );
    assert_eq!(one, expected);
}

#[test]
fn a_rule_the_recipe_allows_counts_for_nothing_and_says_why() {
    let layers = "[[layer]]\nname = \"rt\"\ncontainerd = {}\n";
    let refused = lint_recipe(&MemView::new(), layers);
    assert_eq!(ids(&refused), ["NI004"]);
    assert!(refused[0].is_error() && refused[0].allowed.is_none());
    let allowed = lint_recipe(
        &MemView::new(),
        &format!(
            "[lint]\nallow = [{{ rule = \"NI004\", reason = \"the host loads them\" }}]\n{layers}"
        ),
    );
    assert_eq!(ids(&allowed), ["NI004"], "still found, and shown");
    let f = &allowed[0];
    assert_eq!(f.allowed.as_deref(), Some("the host loads them"));
    assert_eq!(f.severity(), Severity::Error);
    assert!(!f.is_error());
    assert_eq!(
        counts(&allowed),
        Counts {
            error: 0,
            warning: 0,
            info: 0,
            allowed: 1
        }
    );
    let mut out = Vec::new();
    print_text(&allowed, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(": allowed error[NI004] layer[0].containerd: ")
            && text.contains("\n  allowed by the recipe: the host loads them\n")
            && !text.contains("hint:"),
        "{text}"
    );
    assert_eq!(
        to_json(&allowed)["findings"][0]["allowed"],
        "the host loads them"
    );
    // Allowing another rule allows nothing here.
    let other = lint_recipe(
        &MemView::new(),
        &format!("[lint]\nallow = [{{ rule = \"NI007\", reason = \"x\" }}]\n{layers}"),
    );
    assert!(other[0].is_error());
}

#[test]
fn unknown_allowed_rules_are_named() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("recipe.toml");
    std::fs::write(
        &p,
        "[image]\nname = \"n\"\n[lint]\nallow = [{ rule = \"NI004\", reason = \"r\" }, { rule = \"NI404\", reason = \"r\" }]\n",
    )
    .unwrap();
    let r = Loaded::load(&p)
        .unwrap()
        .expand("amd64", &BTreeMap::new(), &BTreeMap::new())
        .unwrap();
    assert_eq!(unknown_allowed(&r), Some((1, "NI404")));
    assert_eq!(rule("NI004"), Some(&NI004));
    assert!(rule_ids().starts_with("NI001, NI002"));
}

fn pins(packages: &[&str]) -> Vec<Finding> {
    let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    lint(&format!(
        "[[layer]]\nname = \"rt\"\npackages = [{}]\n",
        list.join(", ")
    ))
}

#[test]
fn ni009_vulnerable_runtime_pins_name_the_cve_and_the_fix() {
    // (pin, what the message names as fixed)
    let table = [
        (
            "runc=1.0.0~rc6+dfsg1-2",
            "1.0.0~rc7 (upstream), 1.0.0~rc6+dfsg1-3 (Debian)",
        ),
        ("runc=1.0.0~rc5+dfsg1-1", "1.0.0~rc7"),
        ("runc=1.0.0~rc6", "1.0.0~rc7"),
        ("runc=0.1.1+dfsg1-2", "1.0.0~rc7"),
        ("docker-ce=18.06.1~ce~3-0~ubuntu", "18.06.2~ce~3-0"),
        ("docker-ce=18.03.1~ce-0~ubuntu", "18.06.2~ce~3-0"),
        ("docker-ce=17.09.0~ce-0~debian", "18.06.2~ce~3-0"),
        (
            "docker-ce=5:18.09.1~3-0~ubuntu-bionic",
            "5:18.09.2~3-0 or later",
        ),
        (
            "docker-ce=5:18.09.0~3-0~debian-stretch",
            "5:18.09.2~3-0 or later",
        ),
        (
            "docker-engine=1.13.1-0~ubuntu-xenial",
            "no docker-engine release",
        ),
        ("containerd.io=1.2.2-1", "1.2.2-3 or later"),
        ("containerd.io=1.2.0-1", "1.2.2-3 or later"),
        ("containerd.io:amd64=1.2.2-2", "1.2.2-3 or later"),
    ];
    for (pin, fixed) in table {
        let f = pins(&[pin]);
        assert_eq!(ids(&f), ["NI009"], "{pin}: {f:?}");
        assert_eq!(f[0].severity(), Severity::Error);
        assert_eq!(f[0].key, "layer[1].packages[0]", "{pin}");
        assert_eq!(f[0].line, Some(10), "{pin}");
        let m = &f[0].message;
        assert!(
            m.starts_with(&format!("{pin} is affected by CVE-2019-5736 (runc lets")),
            "{m}"
        );
        assert!(m.contains(&format!("fixed in {fixed}")), "{pin}: {m}");
    }
    // The key points at the entry, not at the list.
    let f = pins(&["containerd.io=1.2.13-2", "runc=1.0.0~rc6+dfsg1-1"]);
    assert_eq!(ids(&f), ["NI009"]);
    assert_eq!(f[0].key, "layer[1].packages[1]");
}

#[test]
fn ni009_fixed_and_unpinned_versions_pass() {
    for pin in [
        "runc=1.0.0~rc6+dfsg1-3",
        "runc=1.0.0~rc6+dfsg1-3+deb10u2",
        "runc=1.0.0~rc7",
        "runc=1.1.5+ds1-1+deb12u1",
        "runc",
        "docker-ce=18.06.2~ce~3-0~ubuntu",
        "docker-ce=18.06.3~ce~3-0~debian",
        "docker-ce=5:18.09.2~3-0~ubuntu-bionic",
        "docker-ce=5:19.03.11~3-0~ubuntu-focal",
        "docker-ce-cli=5:18.09.0~3-0~ubuntu-bionic",
        "docker-ce",
        "containerd.io=1.2.2-3",
        "containerd.io=1.2.13-2",
        "containerd=1.6.20~ds1-1+deb12u3",
        "cri-o-1.17=1.17.4~1",
    ] {
        assert_eq!(pins(&[pin]), [], "{pin}");
    }
    // A version that does not parse is the resolver's to report.
    assert_eq!(pins(&["runc=bad version"]), []);
}

const YUM: &str = r#"
[[layer]]
name = "repo"
[[layer.yum-repo]]
name = "docker-ce-stable"
baseurl = "https://download.example/linux/centos/$releasever/$basearch/stable"
gpgkey = "https://download.example/linux/centos/gpg"
"#;

fn rpm_pins_on(base: &MemView, repos: &str, packages: &[&str]) -> Vec<Finding> {
    let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    lint_on(
        base,
        &format!(
            "{repos}[[layer]]\nname = \"rt\"\npackages = [{}]\n",
            list.join(", ")
        ),
    )
}

fn rpm_pins(packages: &[&str]) -> Vec<Finding> {
    rpm_pins_on(&MemView::new(), YUM, packages)
}

#[test]
fn ni009_vulnerable_rpm_pins_in_rpm_order() {
    // (pin, what the message names as fixed)
    let table = [
        ("docker-ce-18.09.1", "3:18.09.2-3.el7 or later"),
        ("docker-ce-18.09.0", "3:18.09.2-3.el7 or later"),
        ("docker-ce-3:18.09.1-3.el7", "3:18.09.2-3.el7 or later"),
        ("docker-ce-18.06.1.ce", "18.06.2.ce-3.el7"),
        ("docker-ce-18.06.1.ce-3.el7", "18.06.2.ce-3.el7"),
        ("docker-ce-18.03.1.ce-1.el7.centos", "18.06.2.ce-3.el7"),
        ("docker-ce-17.03.2.ce", "18.06.2.ce-3.el7"),
        (
            "docker-engine-1.13.1-1.el7.centos",
            "no docker-engine release",
        ),
        ("containerd.io-1.2.0-3.el7", "1.2.2-3.el7 or later"),
        ("containerd.io-1.2.2-2.el7", "1.2.2-3.el7 or later"),
        ("containerd.io-1.2.0", "1.2.2-3.el7 or later"),
        ("runc-1.0.0~rc6", "1.0.0~rc7 (upstream)"),
        ("runc-1.0.0~rc5-1.fc28", "1.0.0~rc7 (upstream)"),
        ("runc-0.1.1", "1.0.0~rc7 (upstream)"),
    ];
    for (pin, fixed) in table {
        let f = rpm_pins(&[pin]);
        assert_eq!(ids(&f), ["NI009"], "{pin}: {f:?}");
        assert_eq!(f[0].severity(), Severity::Error);
        assert_eq!(f[0].key, "layer[2].packages[0]", "{pin}");
        assert_eq!(f[0].line, Some(17), "{pin}");
        let m = &f[0].message;
        assert!(
            m.starts_with(&format!("{pin} is affected by CVE-2019-5736 (runc lets")),
            "{m}"
        );
        assert!(m.contains(&format!("fixed in {fixed}")), "{pin}: {m}");
    }
    // The key points at the entry.
    let f = rpm_pins(&["containerd.io-1.2.13", "docker-ce-18.09.1"]);
    assert_eq!(ids(&f), ["NI009"]);
    assert_eq!(f[0].key, "layer[2].packages[1]");
    // zypper repositories too.
    let zypper = YUM.replace("layer.yum-repo", "layer.zypper-repo");
    let f = rpm_pins_on(&MemView::new(), &zypper, &["runc-1.0.0~rc6"]);
    assert_eq!(ids(&f), ["NI009"]);
    // Repositories the base already has.
    let base = MemView::new().file(
        "/etc/yum.repos.d/docker-ce.repo",
        "[docker-ce-stable]\nbaseurl=https://download.example/\n",
    );
    let f = rpm_pins_on(&base, "", &["docker-ce-18.09.1"]);
    assert_eq!(ids(&f), ["NI009"]);
}

#[test]
fn ni009_fixed_and_unpinned_rpm_versions_pass() {
    for pin in [
        "docker-ce-18.09.2",
        "docker-ce-3:18.09.2-3.el7",
        "docker-ce-19.03.11",
        "docker-ce-3:19.03.11-3.el7",
        "docker-ce-18.06.2.ce",
        "docker-ce-18.06.2.ce-3.el7",
        "docker-ce-18.06.3.ce-3.el7",
        "docker-ce",
        "docker-ce-cli-18.09.1",
        "docker-ce-rootless-extras-18.09.1",
        "containerd.io-1.2.2-3.el7",
        "containerd.io-1.2.2-3.3.el7",
        "containerd.io-1.2.2",
        "containerd.io-1.2.13",
        "containerd.io",
        "runc-1.0.0~rc7",
        "runc-1.1.12-1.el9",
        "runc",
        // Not a pin: the request is a name the resolver reports.
        "docker-ce-bad version",
    ] {
        assert_eq!(rpm_pins(&[pin]), [], "{pin}");
    }
    // Debian spellings in an rpm layer are not rpm pins (the resolver
    // refuses them), and rpm spellings in an apt layer are package names.
    assert_eq!(rpm_pins(&["docker-ce=18.06.1~ce~3-0~ubuntu"]), []);
    assert_eq!(pins(&["docker-ce-18.09.1"]), []);
    // An apt source anywhere below makes the layer a Debian one.
    let apt = MemView::new().file("/etc/apt/sources.list.d/debian.sources", "Types: deb\n");
    assert_eq!(rpm_pins_on(&apt, YUM, &["docker-ce-18.09.1"]), []);
    let f = rpm_pins_on(&apt, YUM, &["docker-ce=18.06.1~ce~3-0~ubuntu"]);
    assert_eq!(ids(&f), ["NI009"]);
}
