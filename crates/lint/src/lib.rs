//! Lint rules, as data: every build and `nodeimg check` run them.
//!
//! Each rule is one static [`Rule`] (id, severity, summary, hint and its
//! check), next to its check function; [`RULES`] lists them all. [`run`]
//! runs every rule's check on a recipe and the base it builds on and returns
//! the findings, each carrying its rule and pointing at a recipe file, line
//! and key. Adding a rule: a static and its check here, and an entry in
//! [`RULES`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use nodeimg_layers::RootView;
use serde::Serialize;

use nodeimg_pkg::backend::{pick, Backend};
use nodeimg_pkg::lock::LayerKind;
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

/// A lint rule: what it checks, how bad its findings are, what to do
/// about them, and the check itself.
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
    /// Looks at the recipe and its base; every finding it adds is this
    /// rule's.
    #[serde(skip)]
    check: fn(&mut Ctx<'_>),
}

/// Rules are the same rule when their ids are (ids are unique).
impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Rule {}

/// Every rule, in id order: [`run`] runs them in this order.
pub static RULES: &[&Rule] = &[
    &NI001, &NI002, &NI003, &NI004, &NI005, &NI006, &NI007, &NI008, &NI009, &NI010,
];

/// A range of a package's versions (in the order of the backend that
/// installs it) with a known vulnerability.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Vulnerable {
    /// The CVE id.
    pub cve: &'static str,
    /// What an attacker can do.
    pub effect: &'static str,
    /// The package name.
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
/// Docker's epochs follow its versions: the rpm backend's pins leave them
/// out).
pub type VulnerableRpm = Vulnerable;

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

impl Vulnerable {
    /// True when the pinned `version` (as `backend` reads pins, see
    /// [`Backend::pin_version`]) is in this range; a bound that is not a
    /// version of `backend` does not count.
    pub fn affects(&self, backend: &dyn Backend, version: &str) -> bool {
        self.from
            .and_then(|from| backend.version_lt(version, from))
            .is_none_or(|lt| !lt)
            && self
                .below
                .and_then(|below| backend.version_lt(version, below))
                .is_none_or(|lt| lt)
    }
}

/// The ranges NI009 refuses in a layer of `kind`.
fn vulnerable_for(kind: LayerKind) -> &'static [Vulnerable] {
    match kind {
        LayerKind::Deb => VULNERABLE,
        LayerKind::Rpm => VULNERABLE_RPM,
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule that found it.
    pub rule: &'static Rule,
    /// Recipe file, as shown in messages.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path in that file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The reason the recipe gives for allowing the rule (`[lint] allow`),
    /// when it does: the finding is then shown, but counts for nothing.
    pub allowed: Option<String>,
}

impl Finding {
    /// Its rule's severity.
    pub fn severity(&self) -> Severity {
        self.rule.severity
    }

    /// Whether it is an error that stops a build and fails `check`: an
    /// error the recipe does not allow.
    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error && self.allowed.is_none()
    }

    /// What to do: its rule's hint.
    pub fn hint(&self) -> &'static str {
        self.rule.hint
    }
}

/// A finding in JSON: `{"rule": id, "severity", "file", "line", "key",
/// "message", "hint", "allowed"}` (`allowed`: the recipe's reason, or null).
impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut f = s.serialize_struct("Finding", 8)?;
        f.serialize_field("rule", self.rule.id)?;
        f.serialize_field("severity", &self.rule.severity)?;
        f.serialize_field("file", &self.file)?;
        f.serialize_field("line", &self.line)?;
        f.serialize_field("key", &self.key)?;
        f.serialize_field("message", &self.message)?;
        f.serialize_field("hint", self.rule.hint)?;
        f.serialize_field("allowed", &self.allowed)?;
        f.end()
    }
}

/// What a rule's check sees (the recipe and the base it builds on) and
/// where its findings go, all of them under that rule.
struct Ctx<'a> {
    rule: &'static Rule,
    recipe: &'a Recipe,
    base: &'a dyn RootView,
    arch: &'a str,
    backends: &'a [&'a dyn Backend],
    out: &'a mut Vec<Finding>,
}

impl Ctx<'_> {
    fn add(&mut self, l: &RecipeLayer, sub: &str, message: String) {
        let key = l.key_of(sub);
        self.add_at(l.file, key, message);
    }

    fn add_at(&mut self, file: usize, key: String, message: String) {
        let (f, line) = self.recipe.locate(file, &key);
        self.out.push(Finding {
            rule: self.rule,
            file: f.display().to_string(),
            line,
            key,
            message,
            allowed: None,
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

/// NI001: the cgroup drivers of the runtimes and the kubelet disagree.
pub static NI001: Rule = Rule {
    id: "NI001",
    severity: Severity::Error,
    summary: "cgroup drivers disagree between docker, containerd, CRI-O and the kubelet",
    hint: "use the same driver everywhere: `systemd` (docker exec-opts native.cgroupdriver=systemd, containerd systemd-cgroup = true, crio cgroup-manager = \"systemd\", kubelet cgroup-driver = \"systemd\")",
    check: cgroup_drivers_disagree,
};

fn cgroup_drivers_disagree(c: &mut Ctx) {
    let ds = drivers(c.recipe);
    let Some(first) = ds.first() else { return };
    if let Some(other) = ds.iter().find(|d| d.value != first.value) {
        let all: Vec<String> = ds
            .iter()
            .map(|d| format!("{} = {} ({})", d.what, d.value, c.place(d.layer, &d.key)))
            .collect();
        let msg = format!("cgroup drivers disagree: {}", all.join(", "));
        c.add(other.layer, &other.key, msg);
    }
}

/// NI002: a cgroup driver other than systemd on a systemd base.
pub static NI002: Rule = Rule {
    id: "NI002",
    severity: Severity::Error,
    summary: "the cgroup driver is not systemd on a systemd base",
    hint: "on a systemd host the runtime and the kubelet must use the `systemd` cgroup driver; two cgroup managers make the node unstable under resource pressure",
    check: cgroup_driver_not_systemd,
};

fn cgroup_driver_not_systemd(c: &mut Ctx) {
    if !systemd_base(c.base) {
        return;
    }
    for d in &drivers(c.recipe) {
        if d.value != "systemd" {
            let msg = format!(
                "{} uses the {:?} cgroup driver, but the base boots with systemd",
                d.what, d.value
            );
            c.add(d.layer, &d.key, msg);
        }
    }
}

/// NI003: containerd `extra` keys of another config version.
pub static NI003: Rule = Rule {
    id: "NI003",
    severity: Severity::Error,
    summary: "containerd `extra` keys that do not belong to the chosen config version",
    hint: "config-version 2 (containerd 1.x) uses plugins.\"io.containerd.grpc.v1.cri\"; 3 (containerd 2.x) uses plugins.\"io.containerd.cri.v1.runtime\" and \"io.containerd.cri.v1.images\"; use `systemd-cgroup` instead of the old `systemd_cgroup` key",
    check: containerd_keys_of_another_version,
};

fn containerd_keys_of_another_version(c: &mut Ctx) {
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
                    c.add(l, &key, msg);
                }
            }
        }
        let mut old = Vec::new();
        find_key(&cd.extra, "systemd_cgroup", base, &mut old);
        for (key, _) in old {
            c.add(
                l,
                &key,
                "the old `systemd_cgroup` key makes containerd 1.x skip the CRI plugin".to_string(),
            );
        }
        match cd.extra.get("version") {
            Some(toml::Value::Integer(n)) if *n != i64::from(v) => {
                let msg = format!("extra sets version = {n}, but config-version is {v}");
                c.add(l, "containerd.extra.version", msg);
            }
            Some(toml::Value::Integer(_)) | None => {}
            Some(_) => c.add(
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

/// NI004: a CRI runtime without its kernel prerequisites.
pub static NI004: Rule = Rule {
    id: "NI004",
    severity: Severity::Error,
    summary: "a CRI runtime without the kernel prerequisites (overlay, br_netfilter, bridge and forwarding sysctls)",
    hint: "add a layer with modules = { file = \"k8s\", load = [\"overlay\", \"br_netfilter\"] } and sysctl = { file = \"99-kubernetes-cri\", set = { \"net.bridge.bridge-nf-call-iptables\" = 1, \"net.bridge.bridge-nf-call-ip6tables\" = 1, \"net.ipv4.ip_forward\" = 1 } }",
    check: missing_kernel_prerequisites,
};

fn missing_kernel_prerequisites(c: &mut Ctx) {
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
    base_prerequisites(c.base, &mut modules, &mut sysctls);
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
        c.add(l, &key, msg);
    }
}

/// NI005: two CRI runtimes enabled.
pub static NI005: Rule = Rule {
    id: "NI005",
    severity: Severity::Error,
    summary: "two CRI runtimes enabled at once",
    hint: "enable one runtime per image: containerd (also under docker) or CRI-O",
    check: two_runtimes,
};

fn two_runtimes(c: &mut Ctx) {
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
                c.add(l, key, msg);
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

/// NI006: daemon.json values dockerd takes but are wrong.
pub static NI006: Rule = Rule {
    id: "NI006",
    severity: Severity::Error,
    summary: "a daemon.json value dockerd accepts but is wrong",
    hint: "dockerd --validate does not check these values; fix the spelling (see the dockerd documentation)",
    check: wrong_daemon_json_values,
};

fn wrong_daemon_json_values(c: &mut Ctx) {
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
                        c.add(l, &format!("docker.exec-opts[{j}]"), msg);
                    }
                }
            }
        }
        if let Some(serde_json::Value::Object(opts)) = d.0.get("log-opts") {
            if let Some(v) = opts.get("max-size") {
                if !v.as_str().is_some_and(valid_size) {
                    let msg = format!("log-opts max-size {v} is not a size like \"100m\"");
                    c.add(l, "docker.log-opts.max-size", msg);
                }
            }
            if let Some(v) = opts.get("max-file") {
                if !v
                    .as_str()
                    .is_some_and(|s| s.parse::<u32>().is_ok_and(|n| n > 0))
                {
                    let msg = format!("log-opts max-file {v} is not a positive count like \"3\"");
                    c.add(l, "docker.log-opts.max-file", msg);
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
                    c.add(l, &format!("docker.{field}"), msg);
                }
            }
        }
    }
}

/// NI007: the base's machine-id kept.
pub static NI007: Rule = Rule {
    id: "NI007",
    severity: Severity::Warning,
    summary: "the base's /etc/machine-id is kept in an immutable image",
    hint: "add file = [{ path = \"/etc/machine-id\", content = \"\" }] (systemd then makes one at first boot), or remove = [\"/etc/machine-id\"]",
    check: machine_id_kept,
};

fn machine_id_kept(c: &mut Ctx) {
    let has = nodeimg_layers::ImagePath::new("/etc/machine-id")
        .ok()
        .and_then(|p| c.base.read(&p))
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
            0,
            "image".to_string(),
            "the base has an /etc/machine-id; every node built from this image would share it"
                .to_string(),
        );
    }
}

/// NI008: the kubelet connects to another runtime's socket.
pub static NI008: Rule = Rule {
    id: "NI008",
    severity: Severity::Warning,
    summary: "the kubelet's container-runtime-endpoint does not match the configured runtime",
    hint: "containerd: unix:///run/containerd/containerd.sock; CRI-O: unix:///var/run/crio/crio.sock; docker: unix:///run/cri-dockerd.sock",
    check: endpoint_of_another_runtime,
};

fn endpoint_of_another_runtime(c: &mut Ctx) {
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
                c.add(l, "kubelet.container-runtime-endpoint", msg);
            }
        }
    }
}

/// The backend of each layer: chosen by [`pick`], as a build chooses it,
/// from the repositories the base declares and those the layers up to it
/// declare with their items.
fn layer_backends<'a>(c: &Ctx<'a>) -> Vec<Option<&'a dyn Backend>> {
    let layers = &c.recipe.layers;
    (0..layers.len())
        .map(|i| {
            pick(c.backends, |b| {
                b.present(c.base, c.arch) || layers[..=i].iter().any(|l| b.declared_by(&l.spec))
            })
        })
        .collect()
}

/// NI009: a pin to a container runtime version with a known vulnerability.
pub static NI009: Rule = Rule {
    id: "NI009",
    severity: Severity::Error,
    summary: "a package pin to a container runtime version with a known vulnerability",
    hint: "pin a fixed version (see the message), or leave the package unpinned to take the newest one the repository offers",
    check: vulnerable_pins,
};

/// Pins (`name=version`; rpm layers: `name-version[-release]`, as the
/// layer's backend reads them) in a vulnerable range. Unpinned packages and
/// versions that do not parse are left to the resolver.
fn vulnerable_pins(c: &mut Ctx) {
    let backends = layer_backends(c);
    for (l, b) in c.recipe.layers.iter().zip(backends) {
        let Some(b) = b else { continue };
        for (j, p) in l.spec.packages.iter().enumerate() {
            for vuln in vulnerable_for(b.kind()) {
                let Some(version) = b.pin_version(p, vuln.package) else {
                    continue;
                };
                if vuln.affects(b, &version) {
                    let msg = format!(
                        "{p} is affected by {} ({}); fixed in {}",
                        vuln.cve, vuln.effect, vuln.fixed
                    );
                    c.add(l, &format!("packages[{j}]"), msg);
                }
            }
        }
    }
}

/// NI010: an apt source whose metadata is taken past its expiry date.
pub static NI010: Rule = Rule {
    id: "NI010",
    severity: Severity::Warning,
    summary: "an apt source with Check-Valid-Until off: a Release past its Valid-Until is taken, so a mirror can serve old metadata, and its old package versions, for ever",
    hint: "keep the check (drop the option, or set it to yes) unless the source is a snapshot that expired on purpose; pin its packages with a lock file",
    check: expiry_unchecked,
};

fn expiry_unchecked(c: &mut Ctx) {
    for l in &c.recipe.layers {
        for (i, s) in l.spec.apt_source.iter().enumerate() {
            if let Some((name, value)) = s.valid_until_unchecked() {
                let msg = format!(
                    "apt source {:?} is read with Check-Valid-Until: {value}: its Valid-Until is not checked",
                    s.name
                );
                c.add(l, &format!("apt-source[{i}].options.{name}"), msg);
            }
        }
    }
}

/// Run every rule on `recipe` built over `base` for the OCI architecture
/// `arch`, with the package `backends` a build chooses from. Findings are
/// sorted by file order, line, rule.
pub fn run(
    recipe: &Recipe,
    base: &dyn RootView,
    arch: &str,
    backends: &[&dyn Backend],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in RULES {
        (rule.check)(&mut Ctx {
            rule,
            recipe,
            base,
            arch,
            backends,
            out: &mut out,
        });
    }
    let order: BTreeMap<String, usize> = recipe
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.display.display().to_string(), i))
        .collect();
    out.sort_by(|a, b| {
        (order.get(&a.file), a.line, a.rule.id, &a.key).cmp(&(
            order.get(&b.file),
            b.line,
            b.rule.id,
            &b.key,
        ))
    });
    for f in &mut out {
        f.allowed = recipe
            .lint_allow
            .iter()
            .find(|a| a.rule == f.rule.id)
            .map(|a| a.reason.clone());
    }
    out
}

/// The rule with id `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

/// The first rule the recipe's `[lint] allow` names that is not a rule:
/// its index in the list and its id.
pub fn unknown_allowed(recipe: &Recipe) -> Option<(usize, &str)> {
    recipe
        .lint_allow
        .iter()
        .enumerate()
        .find(|(_, a)| rule(&a.rule).is_none())
        .map(|(i, a)| (i, a.rule.as_str()))
}

/// Every rule id, for messages: `NI001, NI002, ...`.
pub fn rule_ids() -> String {
    RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
}

/// How many findings of each severity, and how many the recipe allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Errors.
    pub error: usize,
    /// Warnings.
    pub warning: usize,
    /// Infos.
    pub info: usize,
    /// Findings of any severity the recipe allows (counted only here).
    pub allowed: usize,
}

/// Count findings by severity; allowed ones apart.
pub fn counts(findings: &[Finding]) -> Counts {
    let mut c = Counts::default();
    for f in findings {
        if f.allowed.is_some() {
            c.allowed += 1;
            continue;
        }
        match f.severity() {
            Severity::Error => c.error += 1,
            Severity::Warning => c.warning += 1,
            Severity::Info => c.info += 1,
        }
    }
    c
}

/// Print findings as `file:line: severity[ID] key: message` plus a hint
/// line; an allowed one as `file:line: allowed severity[ID] key: message`
/// plus the recipe's reason.
pub fn print_text(findings: &[Finding], w: &mut dyn Write) -> std::io::Result<()> {
    for f in findings {
        match f.line {
            Some(l) => write!(w, "{}:{l}: ", f.file)?,
            None => write!(w, "{}: ", f.file)?,
        }
        if f.allowed.is_some() {
            write!(w, "allowed ")?;
        }
        writeln!(
            w,
            "{}[{}] {}: {}",
            f.severity(),
            f.rule.id,
            f.key,
            f.message
        )?;
        match &f.allowed {
            Some(reason) => writeln!(w, "  allowed by the recipe: {reason}")?,
            None => writeln!(w, "  hint: {}", f.hint())?,
        }
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
