//! Lint rules, as data: every build and `nodeimg check` run them.
//!
//! [`RULES`] lists every rule (id, severity, summary, hint); [`run`] checks a
//! recipe against the base it builds on and returns the findings, each
//! pointing at a recipe file, line and key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use nodeimg_layers::RootView;
use serde::Serialize;

use nodeimg_deb::version::Version;
use nodeimg_recipe::recipe::{Recipe, RecipeLayer};
use nodeimg_recipe::sourcemap;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Probably wrong; the build goes on.
    Warning,
    /// Wrong; the build stops, `check` exits 1.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A lint rule.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `NI001`.
    pub id: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// What it checks, in one line.
    pub summary: &'static str,
    /// What to do about a finding.
    pub hint: &'static str,
}

/// Every rule.
pub static RULES: &[Rule] = &[
    Rule {
        id: "NI001",
        severity: Severity::Error,
        summary: "cgroup drivers disagree between docker, containerd, CRI-O and the kubelet",
        hint: "use the same driver everywhere: `systemd` (docker exec-opts native.cgroupdriver=systemd, containerd systemd-cgroup = true, crio cgroup-manager = \"systemd\", kubelet cgroup-driver = \"systemd\")",
    },
    Rule {
        id: "NI002",
        severity: Severity::Error,
        summary: "the cgroup driver is not systemd on a systemd base",
        hint: "on a systemd host the runtime and the kubelet must use the `systemd` cgroup driver; two cgroup managers make the node unstable under resource pressure",
    },
    Rule {
        id: "NI003",
        severity: Severity::Error,
        summary: "containerd `extra` keys that do not belong to the chosen config version",
        hint: "config-version 2 (containerd 1.x) uses plugins.\"io.containerd.grpc.v1.cri\"; 3 (containerd 2.x) uses plugins.\"io.containerd.cri.v1.runtime\" and \"io.containerd.cri.v1.images\"; use `systemd-cgroup` instead of the old `systemd_cgroup` key",
    },
    Rule {
        id: "NI004",
        severity: Severity::Error,
        summary: "a CRI runtime without the kernel prerequisites (overlay, br_netfilter, bridge and forwarding sysctls)",
        hint: "add a layer with modules = { file = \"k8s\", load = [\"overlay\", \"br_netfilter\"] } and sysctl = { file = \"99-kubernetes-cri\", set = { \"net.bridge.bridge-nf-call-iptables\" = 1, \"net.bridge.bridge-nf-call-ip6tables\" = 1, \"net.ipv4.ip_forward\" = 1 } }",
    },
    Rule {
        id: "NI005",
        severity: Severity::Error,
        summary: "two CRI runtimes enabled at once",
        hint: "enable one runtime per image: containerd (also under docker) or CRI-O",
    },
    Rule {
        id: "NI006",
        severity: Severity::Error,
        summary: "a daemon.json value dockerd accepts but is wrong",
        hint: "dockerd --validate does not check these values; fix the spelling (see the dockerd documentation)",
    },
    Rule {
        id: "NI007",
        severity: Severity::Warning,
        summary: "the base's /etc/machine-id is kept in an immutable image",
        hint: "add file = [{ path = \"/etc/machine-id\", content = \"\" }] (systemd then makes one at first boot), or remove = [\"/etc/machine-id\"]",
    },
    Rule {
        id: "NI008",
        severity: Severity::Warning,
        summary: "the kubelet's container-runtime-endpoint does not match the configured runtime",
        hint: "containerd: unix:///run/containerd/containerd.sock; CRI-O: unix:///var/run/crio/crio.sock; docker: unix:///run/cri-dockerd.sock",
    },
    Rule {
        id: "NI009",
        severity: Severity::Error,
        summary: "a package pin to a container runtime version with a known vulnerability",
        hint: "pin a fixed version (see the message), or leave the package unpinned to take the newest one the repository offers",
    },
];

/// A range of a package's versions (dpkg order) with a known vulnerability.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Vulnerable {
    /// The CVE id.
    pub cve: &'static str,
    /// What an attacker can do.
    pub effect: &'static str,
    /// The Debian package name.
    pub package: &'static str,
    /// Lowest affected version (inclusive); `None`: every version below `below`.
    pub from: Option<&'static str>,
    /// First version that is not affected any more (exclusive); `None`: no fixed release.
    pub below: Option<&'static str>,
    /// The fixed releases, as the message names them.
    pub fixed: &'static str,
}

const CVE_2019_5736: &str = "CVE-2019-5736";
const RUNC_ESCAPE: &str =
    "runc lets a malicious container overwrite the host's runc binary and run commands as root on the host";

/// Pinned versions NI009 refuses. A version `X~` is below every build of
/// `X` (`18.06.2~` < `18.06.2~ce~3-0~ubuntu`), so a bound `X~` means "every
/// release before X".
pub static VULNERABLE: &[Vulnerable] = &[
    // Upstream runc through 1.0.0-rc6; Debian patched its rc6 package in
    // 1.0.0~rc6+dfsg1-3 (buster and later carry the fix).
    Vulnerable {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "runc",
        from: None,
        below: Some("1.0.0~rc6+dfsg1-3"),
        fixed: "1.0.0~rc7 (upstream), 1.0.0~rc6+dfsg1-3 (Debian)",
    },
    // Docker CE bundles runc in containerd.io (18.09 and later) or in
    // docker-ce itself (18.06 and before). Fixed: 18.06.2 and 18.09.2;
    // 18.03 and older CE releases were never fixed.
    Vulnerable {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-ce",
        from: None,
        below: Some("18.06.2~"),
        fixed: "18.06.2~ce~3-0 or 18.06.3~ce~3-0 (18.06), 5:18.09.2~3-0 or later (18.09 and newer)",
    },
    Vulnerable {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-ce",
        from: Some("5:0"),
        below: Some("5:18.09.2~"),
        fixed: "5:18.09.2~3-0 or later",
    },
    // docker-engine (Docker's packages before 17.03 CE) bundled runc and had
    // no fixed release.
    Vulnerable {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-engine",
        from: None,
        below: None,
        fixed: "no docker-engine release; use docker-ce 5:18.09.2~3-0 or later",
    },
    // containerd.io ships Docker's runc; 1.2.2-3 is the first build with the
    // patched runc (released with Docker 18.09.2).
    Vulnerable {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "containerd.io",
        from: None,
        below: Some("1.2.2-3"),
        fixed: "1.2.2-3 or later",
    },
];

/// A range of an rpm package's versions (rpm order, `rpmvercmp`) with a
/// known vulnerability. Bounds are `version[-release]`; epochs are not
/// compared (a pin without an epoch matches any epoch, as yum's does, and
/// Docker's epochs follow its versions).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct VulnerableRpm {
    /// The CVE id.
    pub cve: &'static str,
    /// What an attacker can do.
    pub effect: &'static str,
    /// The rpm package name.
    pub package: &'static str,
    /// Lowest affected version (inclusive); `None`: every version below `below`.
    pub from: Option<&'static str>,
    /// First version that is not affected any more (exclusive); `None`: no fixed release.
    pub below: Option<&'static str>,
    /// The fixed releases, as the message names them.
    pub fixed: &'static str,
}

/// Pinned rpm versions NI009 refuses in a layer that installs from yum or
/// zypper repositories.
pub static VULNERABLE_RPM: &[VulnerableRpm] = &[
    // Upstream runc through 1.0.0-rc6 (rpm spells it 1.0.0~rc6).
    VulnerableRpm {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "runc",
        from: None,
        below: Some("1.0.0~rc7"),
        fixed: "1.0.0~rc7 (upstream) and later",
    },
    // Docker CE 18.06 and older (epoch 0, `18.06.1.ce`): fixed in
    // 18.06.2.ce; 18.03 and older never were.
    VulnerableRpm {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-ce",
        from: None,
        below: Some("18.06.2"),
        fixed: "18.06.2.ce-3.el7 or 18.06.3.ce-3.el7 (18.06), 3:18.09.2-3.el7 or later (18.09 and newer)",
    },
    // Docker CE 18.09 (epoch 3): fixed in 18.09.2.
    VulnerableRpm {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-ce",
        from: Some("18.09"),
        below: Some("18.09.2"),
        fixed: "3:18.09.2-3.el7 or later",
    },
    VulnerableRpm {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "docker-engine",
        from: None,
        below: None,
        fixed: "no docker-engine release; use docker-ce 3:18.09.2-3.el7 or later",
    },
    // containerd.io ships Docker's runc; 1.2.2-3 is the first build with the
    // patched runc. A pin without a release (`containerd.io-1.2.2`) is
    // not refused: every 1.2.2 rpm Docker published is 1.2.2-3 or later.
    VulnerableRpm {
        cve: CVE_2019_5736,
        effect: RUNC_ESCAPE,
        package: "containerd.io",
        from: None,
        below: Some("1.2.2-3"),
        fixed: "1.2.2-3.el7 or later",
    },
];

impl VulnerableRpm {
    /// True when the pinned `evr` of `package` is in this range (epochs
    /// not compared; the release only when both sides have one).
    pub fn affects(&self, package: &str, evr: &nodeimg_rpm::version::Evr) -> bool {
        use nodeimg_rpm::version::Evr;
        let pin = Evr {
            epoch: 0,
            ..evr.clone()
        };
        let parse = |s: &str| Evr::parse(s).ok();
        package == self.package
            && self
                .from
                .and_then(parse)
                .is_none_or(|from| pin.compare(&from).is_ge())
            && self
                .below
                .and_then(parse)
                .is_none_or(|below| pin.compare(&below).is_lt())
    }
}

impl Vulnerable {
    /// True when `version` of `package` is in this range.
    pub fn affects(&self, package: &str, version: &Version) -> bool {
        let parse = |s: &str| Version::parse(s).ok();
        package == self.package
            && self
                .from
                .and_then(parse)
                .is_none_or(|from| *version >= from)
            && self
                .below
                .and_then(parse)
                .is_none_or(|below| *version < below)
    }
}

fn rule(id: &str) -> &'static Rule {
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id.
    pub rule: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Recipe file, as shown in messages.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path in that file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

struct Ctx<'a> {
    recipe: &'a Recipe,
    out: Vec<Finding>,
}

impl Ctx<'_> {
    fn add(&mut self, id: &str, l: &RecipeLayer, sub: &str, message: String) {
        let key = l.key_of(sub);
        self.add_at(id, l.file, key, message);
    }

    fn add_at(&mut self, id: &str, file: usize, key: String, message: String) {
        let r = rule(id);
        let (f, line) = self.recipe.locate(file, &key);
        self.out.push(Finding {
            rule: r.id,
            severity: r.severity,
            file: f.display().to_string(),
            line,
            key,
            message,
            hint: r.hint.to_string(),
        });
    }

    fn place(&self, l: &RecipeLayer, sub: &str) -> String {
        let key = l.key_of(sub);
        let (f, line) = self.recipe.locate(l.file, &key);
        match line {
            Some(n) => format!("{}:{n}", f.display()),
            None => f.display().to_string(),
        }
    }
}

/// A cgroup driver setting found in the recipe.
struct Driver<'a> {
    what: &'static str,
    value: String,
    layer: &'a RecipeLayer,
    key: String,
}

fn find_key<'t>(
    t: &'t toml::Table,
    name: &str,
    prefix: &str,
    out: &mut Vec<(String, &'t toml::Value)>,
) {
    for (k, v) in t {
        let p = sourcemap::join(prefix, k);
        if k == name {
            out.push((p.clone(), v));
        }
        if let toml::Value::Table(sub) = v {
            find_key(sub, name, &p, out);
        }
    }
}

fn drivers(recipe: &Recipe) -> Vec<Driver<'_>> {
    let mut out = Vec::new();
    for l in &recipe.layers {
        if let Some(d) = &l.spec.docker {
            if let Some(serde_json::Value::Array(opts)) = d.0.get("exec-opts") {
                for (j, o) in opts.iter().enumerate() {
                    if let Some(v) = o
                        .as_str()
                        .and_then(|s| s.strip_prefix("native.cgroupdriver="))
                    {
                        out.push(Driver {
                            what: "docker",
                            value: v.to_string(),
                            layer: l,
                            key: format!("docker.exec-opts[{j}]"),
                        });
                    }
                }
            }
        }
        if let Some(c) = &l.spec.containerd {
            let mut found = Vec::new();
            find_key(&c.extra, "SystemdCgroup", "containerd.extra", &mut found);
            let (value, key) = match found.last() {
                Some((k, toml::Value::Boolean(b))) => (*b, k.clone()),
                _ => match c.systemd_cgroup {
                    Some(b) => (b, "containerd.systemd-cgroup".to_string()),
                    None => (true, "containerd".to_string()),
                },
            };
            out.push(Driver {
                what: "containerd",
                value: if value { "systemd" } else { "cgroupfs" }.to_string(),
                layer: l,
                key,
            });
        }
        if let Some(c) = &l.spec.crio {
            let (value, key) = match &c.cgroup_manager {
                Some(v) => (v.clone(), "crio.cgroup-manager"),
                None => ("systemd".to_string(), "crio"),
            };
            out.push(Driver {
                what: "crio",
                value,
                layer: l,
                key: key.to_string(),
            });
        }
        if let Some(k) = &l.spec.kubelet {
            let (value, key) = match (&k.cgroup_driver, k.config.get("cgroupDriver")) {
                (_, Some(toml::Value::String(v))) => (v.clone(), "kubelet.config.cgroupDriver"),
                (Some(v), _) => (v.clone(), "kubelet.cgroup-driver"),
                (None, _) => ("systemd".to_string(), "kubelet"),
            };
            out.push(Driver {
                what: "kubelet",
                value,
                layer: l,
                key: key.to_string(),
            });
        }
    }
    out
}

/// Whether the base boots with systemd.
pub fn systemd_base(view: &dyn RootView) -> bool {
    if view.exists("/lib/systemd/systemd") || view.exists("/usr/lib/systemd/systemd") {
        return true;
    }
    match nodeimg_layers::ImagePath::new("/sbin/init") {
        Ok(p) => {
            let linked = matches!(
                view.stat(&p).map(|s| s.kind),
                Some(nodeimg_layers::StatKind::Symlink(t)) if t.contains("systemd")
            );
            linked || view.resolve(&p).as_str().contains("systemd")
        }
        Err(_) => false,
    }
}

fn cgroup_rules(c: &mut Ctx, view: &dyn RootView) {
    let ds = drivers(c.recipe);
    if let Some(first) = ds.first() {
        if let Some(other) = ds.iter().find(|d| d.value != first.value) {
            let all: Vec<String> = ds
                .iter()
                .map(|d| format!("{} = {} ({})", d.what, d.value, c.place(d.layer, &d.key)))
                .collect();
            let msg = format!("cgroup drivers disagree: {}", all.join(", "));
            c.add("NI001", other.layer, &other.key, msg);
        }
    }
    if systemd_base(view) {
        for d in &ds {
            if d.value != "systemd" {
                let msg = format!(
                    "{} uses the {:?} cgroup driver, but the base boots with systemd",
                    d.what, d.value
                );
                c.add("NI002", d.layer, &d.key, msg);
            }
        }
    }
}

fn containerd_rules(c: &mut Ctx) {
    for l in &c.recipe.layers {
        let Some(cd) = &l.spec.containerd else {
            continue;
        };
        let v = cd.config_version;
        let base = "containerd.extra";
        if let Some(toml::Value::Table(plugins)) = cd.extra.get("plugins") {
            for k in plugins.keys() {
                let key = sourcemap::join(&sourcemap::join(base, "plugins"), k);
                let wrong = match (v, k.as_str()) {
                    (_, "cri") => Some("the config version 1 plugin name"),
                    (2, k) if k.starts_with("io.containerd.cri.v1.") => {
                        Some("a config version 3 (containerd 2.x) plugin")
                    }
                    (3, "io.containerd.grpc.v1.cri") => {
                        Some("the config version 2 (containerd 1.x) CRI plugin")
                    }
                    _ => None,
                };
                if let Some(why) = wrong {
                    let msg = format!(
                        "plugins.{} is {why}, but config-version is {v}; containerd ignores it",
                        sourcemap::key_segment(k)
                    );
                    c.add("NI003", l, &key, msg);
                }
            }
        }
        let mut old = Vec::new();
        find_key(&cd.extra, "systemd_cgroup", base, &mut old);
        for (key, _) in old {
            c.add(
                "NI003",
                l,
                &key,
                "the old `systemd_cgroup` key makes containerd 1.x skip the CRI plugin".to_string(),
            );
        }
        match cd.extra.get("version") {
            Some(toml::Value::Integer(n)) if *n != i64::from(v) => {
                let msg = format!("extra sets version = {n}, but config-version is {v}");
                c.add("NI003", l, "containerd.extra.version", msg);
            }
            Some(toml::Value::Integer(_)) | None => {}
            Some(_) => c.add(
                "NI003",
                l,
                "containerd.extra.version",
                "`version` must be an integer; without it containerd reads the file as version 1"
                    .to_string(),
            ),
        }
    }
}

const RUNTIME_UNITS: [&str; 3] = ["containerd.service", "crio.service", "docker.service"];

fn sysctl_is_one(v: &nodeimg_layers::sysctl::SysctlValue) -> bool {
    use nodeimg_layers::sysctl::SysctlValue;
    match v {
        SysctlValue::Int(i) => *i == 1,
        SysctlValue::Bool(b) => *b,
        SysctlValue::Str(s) => s.trim() == "1",
    }
}

fn base_prerequisites(
    view: &dyn RootView,
    modules: &mut BTreeSet<String>,
    sysctls: &mut BTreeSet<String>,
) {
    for dir in ["/etc/modules-load.d", "/usr/lib/modules-load.d"] {
        for f in view.list(dir) {
            if let Some(t) = view.read_text(&format!("{dir}/{f}")) {
                for line in t.lines() {
                    let line = line.trim();
                    if !line.is_empty() && !line.starts_with('#') && !line.starts_with(';') {
                        modules.insert(line.to_string());
                    }
                }
            }
        }
    }
    for dir in ["/etc/sysctl.d", "/usr/lib/sysctl.d"] {
        for f in view.list(dir) {
            if let Some(t) = view.read_text(&format!("{dir}/{f}")) {
                for line in t.lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        let k = k.trim().trim_start_matches('-').replace('/', ".");
                        if v.trim() == "1" {
                            sysctls.insert(k);
                        }
                    }
                }
            }
        }
    }
}

fn prerequisite_rule(c: &mut Ctx, view: &dyn RootView) {
    // The first place a runtime is configured or enabled.
    let mut runtime: Option<(&RecipeLayer, String, &str)> = None;
    let mut modules = BTreeSet::new();
    let mut sysctls = BTreeSet::new();
    for l in &c.recipe.layers {
        if runtime.is_none() {
            if l.spec.containerd.is_some() {
                runtime = Some((l, "containerd".into(), "containerd"));
            } else if l.spec.crio.is_some() {
                runtime = Some((l, "crio".into(), "CRI-O"));
            } else if l.spec.docker.is_some() {
                runtime = Some((l, "docker".into(), "docker"));
            } else if let Some(s) = &l.spec.systemd {
                if let Some((j, u)) = s
                    .enable
                    .iter()
                    .enumerate()
                    .find(|(_, u)| RUNTIME_UNITS.contains(&u.as_str()))
                {
                    let _ = u;
                    runtime = Some((l, format!("systemd.enable[{j}]"), "a CRI runtime"));
                }
            }
        }
        if let Some(m) = &l.spec.modules {
            modules.extend(m.load.iter().cloned());
        }
        if let Some(s) = &l.spec.sysctl {
            for (k, v) in &s.set {
                if sysctl_is_one(v) {
                    sysctls.insert(k.replace('/', "."));
                }
            }
        }
    }
    let Some((l, key, what)) = runtime else {
        return;
    };
    base_prerequisites(view, &mut modules, &mut sysctls);
    let mut missing = Vec::new();
    for m in ["overlay", "br_netfilter"] {
        if !modules.contains(m) {
            missing.push(format!("module {m}"));
        }
    }
    for s in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
        "net.ipv4.ip_forward",
    ] {
        if !sysctls.contains(s) {
            missing.push(format!("{s} = 1"));
        }
    }
    if !missing.is_empty() {
        let msg = format!(
            "{what} is configured, but the image does not set up {}",
            missing.join(", ")
        );
        c.add("NI004", l, &key, msg);
    }
}

fn two_runtimes_rule(c: &mut Ctx) {
    let mut enabled: BTreeMap<&str, (&RecipeLayer, String)> = BTreeMap::new();
    for l in &c.recipe.layers {
        if let Some(s) = &l.spec.systemd {
            for (j, u) in s.enable.iter().enumerate() {
                if RUNTIME_UNITS.contains(&u.as_str()) {
                    let name: &str = RUNTIME_UNITS
                        .iter()
                        .find(|r| **r == u.as_str())
                        .copied()
                        .unwrap_or("");
                    enabled
                        .entry(name)
                        .or_insert((l, format!("systemd.enable[{j}]")));
                }
            }
        }
    }
    if let Some((l, key)) = enabled.get("crio.service") {
        for other in ["containerd.service", "docker.service"] {
            if let Some((ol, okey)) = enabled.get(other) {
                let msg = format!(
                    "crio.service and {other} ({}) are both enabled; kubelet can use only one CRI runtime",
                    c.place(ol, okey)
                );
                c.add("NI005", l, key, msg);
            }
        }
    }
}

fn valid_size(s: &str) -> bool {
    let s = s.trim();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() || num.parse::<f64>().is_err() {
        return false;
    }
    let unit = unit.trim().to_ascii_lowercase();
    matches!(
        unit.as_str(),
        "" | "b"
            | "k"
            | "kb"
            | "kib"
            | "m"
            | "mb"
            | "mib"
            | "g"
            | "gb"
            | "gib"
            | "t"
            | "tb"
            | "tib"
    )
}

const LOG_DRIVERS: &[&str] = &[
    "awslogs",
    "etwlogs",
    "fluentd",
    "gcplogs",
    "gelf",
    "journald",
    "json-file",
    "local",
    "logentries",
    "none",
    "splunk",
    "syslog",
];
const STORAGE_DRIVERS: &[&str] = &[
    "aufs",
    "btrfs",
    "devicemapper",
    "fuse-overlayfs",
    "overlay",
    "overlay2",
    "vfs",
    "zfs",
];

fn docker_rule(c: &mut Ctx) {
    for l in &c.recipe.layers {
        let Some(d) = &l.spec.docker else { continue };
        if let Some(serde_json::Value::Array(opts)) = d.0.get("exec-opts") {
            for (j, o) in opts.iter().enumerate() {
                if let Some(v) = o
                    .as_str()
                    .and_then(|s| s.strip_prefix("native.cgroupdriver="))
                {
                    if v != "systemd" && v != "cgroupfs" {
                        let msg = format!(
                            "native.cgroupdriver={v} is not a cgroup driver (systemd or cgroupfs)"
                        );
                        c.add("NI006", l, &format!("docker.exec-opts[{j}]"), msg);
                    }
                }
            }
        }
        if let Some(serde_json::Value::Object(opts)) = d.0.get("log-opts") {
            if let Some(v) = opts.get("max-size") {
                if !v.as_str().is_some_and(valid_size) {
                    let msg = format!("log-opts max-size {v} is not a size like \"100m\"");
                    c.add("NI006", l, "docker.log-opts.max-size", msg);
                }
            }
            if let Some(v) = opts.get("max-file") {
                if !v
                    .as_str()
                    .is_some_and(|s| s.parse::<u32>().is_ok_and(|n| n > 0))
                {
                    let msg = format!("log-opts max-file {v} is not a positive count like \"3\"");
                    c.add("NI006", l, "docker.log-opts.max-file", msg);
                }
            }
        }
        for (field, known) in [
            ("log-driver", LOG_DRIVERS),
            ("storage-driver", STORAGE_DRIVERS),
        ] {
            if let Some(v) = d.0.get(field) {
                if !v.as_str().is_some_and(|s| known.contains(&s)) {
                    let msg = format!("unknown {field} {v}; known: {}", known.join(", "));
                    c.add("NI006", l, &format!("docker.{field}"), msg);
                }
            }
        }
    }
}

fn machine_id_rule(c: &mut Ctx, view: &dyn RootView) {
    let has = nodeimg_layers::ImagePath::new("/etc/machine-id")
        .ok()
        .and_then(|p| view.read(&p))
        .is_some_and(|b| !b.iter().all(u8::is_ascii_whitespace));
    if !has {
        return;
    }
    let handled = c.recipe.layers.iter().any(|l| {
        l.spec
            .remove
            .iter()
            .any(|r| r.trim_end_matches('/') == "/etc/machine-id")
            || l.spec.file.iter().any(|f| f.path == "/etc/machine-id")
    });
    if !handled {
        c.add_at(
            "NI007",
            0,
            "image".to_string(),
            "the base has an /etc/machine-id; every node built from this image would share it"
                .to_string(),
        );
    }
}

fn endpoint_rule(c: &mut Ctx) {
    let mut runtimes = BTreeSet::new();
    for l in &c.recipe.layers {
        if l.spec.containerd.is_some() {
            runtimes.insert("containerd");
        }
        if l.spec.crio.is_some() {
            runtimes.insert("crio");
        }
        if let Some(s) = &l.spec.systemd {
            for u in &s.enable {
                match u.as_str() {
                    "containerd.service" => {
                        runtimes.insert("containerd");
                    }
                    "crio.service" => {
                        runtimes.insert("crio");
                    }
                    "cri-docker.service" | "cri-docker.socket" => {
                        runtimes.insert("cri-dockerd");
                    }
                    _ => {}
                }
            }
        }
    }
    if runtimes.len() != 1 {
        return;
    }
    let Some(rt) = runtimes.iter().next().copied() else {
        return;
    };
    let sock = match rt {
        "containerd" => "containerd.sock",
        "crio" => "crio.sock",
        _ => "cri-dockerd.sock",
    };
    for l in &c.recipe.layers {
        let Some(k) = &l.spec.kubelet else { continue };
        if let Some(ep) = &k.container_runtime_endpoint {
            if !ep.ends_with(sock) {
                let msg = format!("the image runs {rt}, but the kubelet connects to {ep}");
                c.add("NI008", l, "kubelet.container-runtime-endpoint", msg);
            }
        }
    }
}

/// Which layers install rpm packages: those whose image (the base and
/// the layers up to it) has yum or zypper repositories and no apt source,
/// as the `packages` item chooses its backend.
fn rpm_layers(recipe: &Recipe, base: &dyn RootView) -> Vec<bool> {
    let mut apt = base
        .list(nodeimg_deb::SOURCES_DIR)
        .iter()
        .any(|n| n.ends_with(".sources"));
    let mut rpm = nodeimg_rpm::has_repos(base);
    recipe
        .layers
        .iter()
        .map(|l| {
            apt |= !l.spec.apt_source.is_empty();
            rpm |= !l.spec.yum_repo.is_empty() || !l.spec.zypper_repo.is_empty();
            rpm && !apt
        })
        .collect()
}

/// NI009 for a layer installing rpm packages: `name-version[-release]`
/// pins in a vulnerable range (rpm order).
fn vulnerable_rpm_pins(c: &mut Ctx, l: &RecipeLayer) {
    for (j, p) in l.spec.packages.iter().enumerate() {
        for vuln in VULNERABLE_RPM {
            if !nodeimg_rpm::names_pin(p, vuln.package) {
                continue;
            }
            let version = &p[vuln.package.len() + 1..];
            let Ok(evr) = nodeimg_rpm::version::Evr::parse(version) else {
                continue;
            };
            if vuln.affects(vuln.package, &evr) {
                let msg = format!(
                    "{p} is affected by {} ({}); fixed in {}",
                    vuln.cve, vuln.effect, vuln.fixed
                );
                c.add("NI009", l, &format!("packages[{j}]"), msg);
            }
        }
    }
}

/// NI009: `name=version` pins (rpm layers: `name-version[-release]`) in a
/// vulnerable range. Unpinned packages and versions that do not parse are
/// left to the resolver.
fn vulnerable_pin_rule(c: &mut Ctx, base: &dyn RootView) {
    let rpm = rpm_layers(c.recipe, base);
    for (i, l) in c.recipe.layers.iter().enumerate() {
        if rpm.get(i).copied().unwrap_or(false) {
            vulnerable_rpm_pins(c, l);
            continue;
        }
        for (j, p) in l.spec.packages.iter().enumerate() {
            let Some((name, version)) = p.split_once('=') else {
                continue;
            };
            let name = name.split(':').next().unwrap_or(name).trim();
            let Ok(v) = Version::parse(version) else {
                continue;
            };
            for vuln in VULNERABLE.iter().filter(|x| x.affects(name, &v)) {
                let msg = format!(
                    "{p} is affected by {} ({}); fixed in {}",
                    vuln.cve, vuln.effect, vuln.fixed
                );
                c.add("NI009", l, &format!("packages[{j}]"), msg);
            }
        }
    }
}

/// Run every rule on `recipe` built over `base`. Findings are sorted by
/// file order, line, rule.
pub fn run(recipe: &Recipe, base: &dyn RootView) -> Vec<Finding> {
    let mut c = Ctx {
        recipe,
        out: Vec::new(),
    };
    cgroup_rules(&mut c, base);
    containerd_rules(&mut c);
    prerequisite_rule(&mut c, base);
    two_runtimes_rule(&mut c);
    docker_rule(&mut c);
    machine_id_rule(&mut c, base);
    endpoint_rule(&mut c);
    vulnerable_pin_rule(&mut c, base);
    let order: BTreeMap<String, usize> = recipe
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.display.display().to_string(), i))
        .collect();
    let mut out = c.out;
    out.sort_by(|a, b| {
        (order.get(&a.file), a.line, a.rule, &a.key).cmp(&(
            order.get(&b.file),
            b.line,
            b.rule,
            &b.key,
        ))
    });
    out
}

/// How many findings of each severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Errors.
    pub error: usize,
    /// Warnings.
    pub warning: usize,
    /// Infos.
    pub info: usize,
}

/// Count findings by severity.
pub fn counts(findings: &[Finding]) -> Counts {
    let mut c = Counts::default();
    for f in findings {
        match f.severity {
            Severity::Error => c.error += 1,
            Severity::Warning => c.warning += 1,
            Severity::Info => c.info += 1,
        }
    }
    c
}

/// Print findings as `file:line: severity[ID] key: message` plus a hint line.
pub fn print_text(findings: &[Finding], w: &mut dyn Write) -> std::io::Result<()> {
    for f in findings {
        match f.line {
            Some(l) => write!(w, "{}:{l}: ", f.file)?,
            None => write!(w, "{}: ", f.file)?,
        }
        writeln!(w, "{}[{}] {}: {}", f.severity, f.rule, f.key, f.message)?;
        writeln!(w, "  hint: {}", f.hint)?;
    }
    Ok(())
}

/// Findings as one JSON object: `{"findings": [...], "counts": {...}}`.
pub fn to_json(findings: &[Finding]) -> serde_json::Value {
    serde_json::json!({
        "findings": findings,
        "counts": counts(findings),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
