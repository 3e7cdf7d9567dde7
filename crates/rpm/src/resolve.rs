//! Dependency resolution for rpm packages against the image's installed
//! packages: Requires against Provides, package names and listed files,
//! with rpm's version ordering; rich dependencies of the form `(a or b)`;
//! Conflicts and Obsoletes against installed and chosen packages; exact pins
//! `name-version` and `name-version-release`; the target architecture and
//! `noarch`. The answer is deterministic: the same inputs give the same
//! packages in the same order (sorted by name).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::repodata::{Dep, RpmPackage};
use super::version::{ranges_overlap, rpmvercmp, Evr, EvrError, Op};

/// The packages of one repository.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The repository id (`[section]` of its `.repo` file).
    pub id: String,
    /// Its packages.
    pub packages: Vec<RpmPackage>,
}

/// A package chosen for installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The repository it comes from.
    pub repository: String,
    /// The package.
    pub package: RpmPackage,
}

/// Why the requests cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No package of that name for the architecture.
    #[error("no package {name:?} for {arch} (or noarch) in the image's rpm repositories")]
    NotFound {
        /// The requested name.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// The name exists, the pinned version does not.
    #[error("{name} {version} is not in the image's rpm repositories for {arch}; available: {}", available.join(", "))]
    PinNotFound {
        /// Package name.
        name: String,
        /// The pinned version.
        version: String,
        /// The architecture.
        arch: String,
        /// The versions there are.
        available: Vec<String>,
    },
    /// Nothing provides a requirement.
    #[error("{package} requires {dep}, which no installed package and no package of the image's rpm repositories provides{}", if dep.starts_with('/') { " (files are looked up in the lists primary.xml carries: /etc and bin directories)" } else { "" })]
    Unsatisfiable {
        /// The requiring package.
        package: String,
        /// The requirement.
        dep: String,
    },
    /// A rich dependency other than `(a or b ...)`.
    #[error("{package} requires the rich dependency {:?}; only (a or b ...) is supported", .source.dep())]
    RichDependency {
        /// The requiring package.
        package: String,
        /// What in the dependency is not supported.
        #[source]
        source: RichError,
    },
    /// A chosen package obsoletes an installed or chosen one.
    #[error("{package} obsoletes {other} ({dep}), which is {where_}; remove it from the base or pin another version")]
    Obsoletes {
        /// The obsoleting package.
        package: String,
        /// The obsoleted package.
        other: String,
        /// The Obsoletes entry.
        dep: String,
        /// "installed in the image" or "also to be installed".
        where_: String,
    },
    /// Two packages conflict.
    #[error("{package} conflicts with {other} ({dep}), which is {where_}")]
    Conflict {
        /// The package declaring the conflict.
        package: String,
        /// The other package.
        other: String,
        /// The Conflicts entry.
        dep: String,
        /// Where the other is.
        where_: String,
    },
    /// The package is installed at another version.
    #[error("{name} is installed in the image at {installed}; {wanted} would replace it, and replacing installed packages is not supported")]
    Replaces {
        /// Package name.
        name: String,
        /// Installed NEVRA.
        installed: String,
        /// Chosen NEVRA.
        wanted: String,
    },
    /// A request that is not `name`, `name-version` or `name-version-release`.
    #[error("{text:?} is not a package name, name-version or name-version-release")]
    InvalidRequest {
        /// The request.
        text: String,
    },
}

/// The architectures a target installs: its own and `noarch`.
pub(crate) fn compatible(arch: &str, pkg_arch: &str) -> bool {
    pkg_arch == arch || pkg_arch == "noarch"
}

/// rpm's name for an OCI architecture.
pub(crate) fn rpm_arch(oci: &str) -> &str {
    nodeimg_pkg::arch::rpm(oci)
}

/// A parsed request: a name with an optional exact version (and release).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    name: String,
    evr: Option<Evr>,
    /// Whether the pin names an epoch; without one any epoch matches, as
    /// yum and dnf match `name-version`.
    epoch: bool,
}

struct Index<'a> {
    arch: &'a str,
    /// (repository, package), compatible architectures only, repository order.
    all: Vec<(&'a str, &'a RpmPackage)>,
    by_name: BTreeMap<&'a str, Vec<usize>>,
    by_provide: BTreeMap<&'a str, Vec<usize>>,
    by_file: BTreeMap<&'a str, Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(repos: &'a [Repository], arch: &'a str) -> Self {
        let mut ix = Index {
            arch,
            all: Vec::new(),
            by_name: BTreeMap::new(),
            by_provide: BTreeMap::new(),
            by_file: BTreeMap::new(),
        };
        for r in repos {
            for p in &r.packages {
                if !compatible(arch, &p.arch) {
                    continue;
                }
                let i = ix.all.len();
                ix.all.push((&r.id, p));
                ix.by_name.entry(&p.name).or_default().push(i);
                for d in &p.provides {
                    ix.by_provide.entry(&d.name).or_default().push(i);
                }
                for f in &p.files {
                    ix.by_file.entry(f).or_default().push(i);
                }
            }
        }
        ix
    }

    /// Candidates providing `dep`, best first: the package named like the
    /// capability, then higher versions, the target architecture before
    /// noarch, then names, then repository order.
    fn providers(&self, dep: &Dep) -> Vec<usize> {
        let mut set = BTreeSet::new();
        for i in self.by_provide.get(dep.name.as_str()).into_iter().flatten() {
            let p = self.all[*i].1;
            if p.provides
                .iter()
                .any(|pr| pr.name == dep.name && ranges_overlap(pr.range(), dep.range()))
            {
                set.insert(*i);
            }
        }
        for i in self.by_name.get(dep.name.as_str()).into_iter().flatten() {
            let p = self.all[*i].1;
            if ranges_overlap(Some((Op::Eq, &p.evr)), dep.range()) {
                set.insert(*i);
            }
        }
        if dep.name.starts_with('/') {
            set.extend(self.by_file.get(dep.name.as_str()).into_iter().flatten());
        }
        let mut v: Vec<usize> = set.into_iter().collect();
        v.sort_by(|&a, &b| self.better(a, b, &dep.name));
        v
    }

    fn better(&self, a: usize, b: usize, name: &str) -> std::cmp::Ordering {
        let (pa, pb) = (self.all[a].1, self.all[b].1);
        (pb.name == name)
            .cmp(&(pa.name == name))
            .then_with(|| pa.name.cmp(&pb.name))
            .then_with(|| pb.evr.compare(&pa.evr))
            .then_with(|| (pb.arch == self.arch).cmp(&(pa.arch == self.arch)))
            .then_with(|| a.cmp(&b))
    }
}

fn provides_dep(p: &RpmPackage, dep: &Dep) -> bool {
    if p.name == dep.name && ranges_overlap(Some((Op::Eq, &p.evr)), dep.range()) {
        return true;
    }
    if p.provides
        .iter()
        .any(|pr| pr.name == dep.name && ranges_overlap(pr.range(), dep.range()))
    {
        return true;
    }
    dep.name.starts_with('/') && p.files.contains(&dep.name)
}

/// Why a rich dependency is not one of the form `(a or b ...)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RichError {
    /// Not in parentheses, nested, or an alternative that is not
    /// `name [op version]`.
    #[error("{dep:?} is not of the form (a or b ...)")]
    Shape {
        /// The dependency.
        dep: String,
    },
    /// An operator other than `or` (`and`, `if`, `with`...), or a
    /// comparison rpm does not have.
    #[error("{dep:?} uses {operator:?}")]
    Operator {
        /// The dependency.
        dep: String,
        /// The operator.
        operator: String,
    },
    /// The version an alternative is compared with does not parse.
    #[error("{dep:?}: {source}")]
    Version {
        /// The dependency.
        dep: String,
        /// Why the version does not parse.
        #[source]
        source: EvrError,
    },
}

impl RichError {
    /// The dependency, as written.
    pub fn dep(&self) -> &str {
        match self {
            RichError::Shape { dep }
            | RichError::Operator { dep, .. }
            | RichError::Version { dep, .. } => dep,
        }
    }
}

/// Splits a rich dependency `(a or b or c)` into its alternatives; an error
/// (what is not supported) for any other rich dependency.
fn rich_alternatives(name: &str) -> Result<Vec<Dep>, RichError> {
    let shape = || RichError::Shape {
        dep: name.to_string(),
    };
    let operator = |w: &str| RichError::Operator {
        dep: name.to_string(),
        operator: w.to_string(),
    };
    let inner = name
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(shape)?;
    if inner.contains('(') {
        return Err(shape());
    }
    let mut out = Vec::new();
    for alt in inner.split(" or ") {
        let words: Vec<&str> = alt.split_whitespace().collect();
        let dep = match words.as_slice() {
            [n] => Dep {
                name: (*n).to_string(),
                constraint: None,
            },
            [n, op, v] => {
                let op = match *op {
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    "=" => Op::Eq,
                    ">=" => Op::Ge,
                    ">" => Op::Gt,
                    w => return Err(operator(w)),
                };
                let evr = Evr::parse(v).map_err(|source| RichError::Version {
                    dep: name.to_string(),
                    source,
                })?;
                Dep {
                    name: (*n).to_string(),
                    constraint: Some((op, evr)),
                }
            }
            _ => return Err(shape()),
        };
        if ["and", "if", "else", "with", "without", "unless"].contains(&dep.name.as_str()) {
            return Err(operator(&dep.name));
        }
        out.push(dep);
    }
    Ok(out)
}

/// What satisfies the dependency `dep` of `p`: any alternative of a rich
/// dependency, else `dep` itself.
fn dep_alternatives(p: &RpmPackage, dep: &Dep) -> Result<Vec<Dep>, ResolveError> {
    Ok(if dep.name.starts_with('(') {
        rich_alternatives(&dep.name).map_err(|source| ResolveError::RichDependency {
            package: p.nevra(),
            source,
        })?
    } else {
        vec![dep.clone()]
    })
}

/// The best candidate of the repositories for the request `pin`.
fn best_match(ix: &Index, pin: &Pin, arch: &str) -> Result<usize, ResolveError> {
    let Some(cands) = ix.by_name.get(pin.name.as_str()) else {
        return Err(ResolveError::NotFound {
            name: pin.name.clone(),
            arch: arch.into(),
        });
    };
    let mut matching: Vec<usize> = cands
        .iter()
        .copied()
        .filter(|&i| match &pin.evr {
            None => true,
            Some(want) => {
                let p = &ix.all[i].1.evr;
                (!pin.epoch || want.epoch == p.epoch)
                    && rpmvercmp(&want.version, &p.version).is_eq()
                    && want.release.as_ref().is_none_or(|r| {
                        p.release
                            .as_ref()
                            .is_some_and(|pr| rpmvercmp(r, pr).is_eq())
                    })
            }
        })
        .collect();
    if matching.is_empty() {
        let mut available: Vec<&Evr> = cands.iter().map(|&i| &ix.all[i].1.evr).collect();
        available.sort_by(|a, b| a.compare(b));
        let mut available: Vec<String> = available.into_iter().map(|e| e.to_string()).collect();
        available.dedup();
        return Err(ResolveError::PinNotFound {
            name: pin.name.clone(),
            version: pin.evr.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            arch: arch.into(),
            available,
        });
    }
    matching.sort_by(|&a, &b| ix.better(a, b, &pin.name));
    Ok(matching[0])
}

/// Resolves `requests` for the rpm architecture `arch` over `installed`.
pub fn resolve(
    installed: &[RpmPackage],
    repos: &[Repository],
    arch: &str,
    requests: &[String],
) -> Result<Vec<Planned>, ResolveError> {
    let ix = Index::new(repos, arch);
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    let mut queue: Vec<usize> = Vec::new();
    for r in requests {
        let pin = parse_request(r, &ix)?;
        let best = best_match(&ix, &pin, arch)?;
        if let Some(&prev) = chosen.get(&pin.name) {
            if prev != best {
                return Err(ResolveError::InvalidRequest { text: r.clone() });
            }
            continue;
        }
        chosen.insert(pin.name.clone(), best);
        queue.push(best);
    }
    // Packages already installed by name, for "installed" checks.
    let installed_named: BTreeMap<&str, &RpmPackage> =
        installed.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut skip_installed: BTreeSet<String> = BTreeSet::new();
    while let Some(i) = queue.pop() {
        let p = ix.all[i].1;
        if let Some(inst) = installed_named.get(p.name.as_str()) {
            if inst.evr.compare(&p.evr).is_eq() && inst.arch == p.arch {
                skip_installed.insert(p.name.clone());
                continue;
            }
            return Err(ResolveError::Replaces {
                name: p.name.clone(),
                installed: inst.nevra(),
                wanted: p.nevra(),
            });
        }
        for dep in &p.requires {
            if dep.name.starts_with("rpmlib(") {
                continue;
            }
            let alternatives = dep_alternatives(p, dep)?;
            let satisfied = alternatives.iter().any(|d| {
                installed.iter().any(|q| provides_dep(q, d))
                    || chosen.values().any(|&c| provides_dep(ix.all[c].1, d))
            });
            if satisfied {
                continue;
            }
            let pick = alternatives
                .iter()
                .find_map(|d| ix.providers(d).into_iter().next());
            let Some(pick) = pick else {
                return Err(ResolveError::Unsatisfiable {
                    package: p.nevra(),
                    dep: dep.to_string(),
                });
            };
            let name = ix.all[pick].1.name.clone();
            if chosen.contains_key(&name) {
                // Another version of a chosen package would be needed.
                return Err(ResolveError::Unsatisfiable {
                    package: p.nevra(),
                    dep: dep.to_string(),
                });
            }
            chosen.insert(name, pick);
            queue.push(pick);
        }
    }
    for n in &skip_installed {
        chosen.remove(n);
    }
    let picked: Vec<&RpmPackage> = chosen.values().map(|&i| ix.all[i].1).collect();
    check_relations(installed, &picked)?;
    Ok(chosen
        .values()
        .map(|&i| Planned {
            repository: ix.all[i].0.to_string(),
            package: ix.all[i].1.clone(),
        })
        .collect())
}

/// Obsoletes and Conflicts of the chosen packages against the installed
/// ones and each other, and the installed packages' Conflicts.
fn check_relations(installed: &[RpmPackage], picked: &[&RpmPackage]) -> Result<(), ResolveError> {
    let inst = "installed in the image";
    let also = "also to be installed";
    for p in picked {
        for o in &p.obsoletes {
            let hit = |q: &RpmPackage| {
                q.name == o.name && ranges_overlap(Some((Op::Eq, &q.evr)), o.range())
            };
            if let Some(q) = installed.iter().find(|q| hit(q)) {
                return Err(ResolveError::Obsoletes {
                    package: p.nevra(),
                    other: q.nevra(),
                    dep: o.to_string(),
                    where_: inst.into(),
                });
            }
            if let Some(q) = picked.iter().find(|q| q.name != p.name && hit(q)) {
                return Err(ResolveError::Obsoletes {
                    package: p.nevra(),
                    other: q.nevra(),
                    dep: o.to_string(),
                    where_: also.into(),
                });
            }
        }
        for c in &p.conflicts {
            if let Some(q) = installed.iter().find(|q| provides_dep(q, c)) {
                return Err(ResolveError::Conflict {
                    package: p.nevra(),
                    other: q.nevra(),
                    dep: c.to_string(),
                    where_: inst.into(),
                });
            }
            if let Some(q) = picked
                .iter()
                .find(|q| q.name != p.name && provides_dep(q, c))
            {
                return Err(ResolveError::Conflict {
                    package: p.nevra(),
                    other: q.nevra(),
                    dep: c.to_string(),
                    where_: also.into(),
                });
            }
        }
    }
    for q in installed {
        for c in &q.conflicts {
            if let Some(p) = picked.iter().find(|p| provides_dep(p, c)) {
                return Err(ResolveError::Conflict {
                    package: q.nevra(),
                    other: p.nevra(),
                    dep: c.to_string(),
                    where_: also.into(),
                });
            }
        }
    }
    Ok(())
}

/// `name`, `name-version`, `name-version-release` (the version may carry
/// an epoch, `name-1:2.0-1`). The longest name the repositories know wins.
fn parse_request(text: &str, ix: &Index) -> Result<Pin, ResolveError> {
    let t = text.trim();
    let invalid = || ResolveError::InvalidRequest {
        text: text.to_string(),
    };
    if t.is_empty() || t.contains(char::is_whitespace) || t.contains(['=', '<', '>', '/', '(']) {
        return Err(invalid());
    }
    if ix.by_name.contains_key(t) {
        return Ok(Pin {
            name: t.to_string(),
            evr: None,
            epoch: false,
        });
    }
    let parts: Vec<usize> = t.match_indices('-').map(|(i, _)| i).collect();
    // name-version, then name-version-release.
    for k in 1..=2usize {
        if parts.len() < k {
            break;
        }
        let at = parts[parts.len() - k];
        let (name, ver) = (&t[..at], &t[at + 1..]);
        if name.is_empty() || ver.is_empty() {
            continue;
        }
        if ix.by_name.contains_key(name) {
            let evr = Evr::parse(ver).map_err(|_| invalid())?;
            return Ok(Pin {
                name: name.to_string(),
                evr: Some(evr),
                epoch: ver.contains(':'),
            });
        }
    }
    // Unknown: report the shortest plausible name with its pin.
    match parts.last() {
        Some(&at) if parts.len() >= 2 && t[at + 1..].starts_with(|c: char| c.is_ascii_digit()) => {
            let before = parts[parts.len() - 2];
            let ver_start = if t[before + 1..].starts_with(|c: char| c.is_ascii_digit()) {
                before
            } else {
                at
            };
            Ok(Pin {
                name: t[..ver_start].to_string(),
                evr: Evr::parse(&t[ver_start + 1..]).ok(),
                epoch: t[ver_start + 1..].contains(':'),
            })
        }
        Some(&at) if t[at + 1..].starts_with(|c: char| c.is_ascii_digit()) => Ok(Pin {
            name: t[..at].to_string(),
            evr: Evr::parse(&t[at + 1..]).ok(),
            epoch: t[at + 1..].contains(':'),
        }),
        _ => Ok(Pin {
            name: t.to_string(),
            evr: None,
            epoch: false,
        }),
    }
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.package.nevra(), self.repository)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dep(s: &str) -> Dep {
        let w: Vec<&str> = s.split_whitespace().collect();
        if s.starts_with('(') {
            return Dep {
                name: s.into(),
                constraint: None,
            };
        }
        match w.as_slice() {
            [n] => Dep {
                name: (*n).into(),
                constraint: None,
            },
            [n, op, v] => Dep {
                name: (*n).into(),
                constraint: Some((
                    match *op {
                        ">=" => Op::Ge,
                        "=" => Op::Eq,
                        "<" => Op::Lt,
                        _ => panic!("{op}"),
                    },
                    Evr::parse(v).unwrap(),
                )),
            },
            _ => Dep {
                name: s.into(),
                constraint: None,
            },
        }
    }

    fn pkg(nevra: &str, arch: &str, requires: &[&str]) -> RpmPackage {
        let (name, evr) = nevra.split_once(' ').unwrap();
        let evr = Evr::parse(evr).unwrap();
        RpmPackage {
            name: name.into(),
            arch: arch.into(),
            provides: vec![Dep {
                name: name.into(),
                constraint: Some((Op::Eq, evr.clone())),
            }],
            evr,
            sha256: "0".repeat(64),
            size: 1,
            href: format!("Packages/{name}.rpm"),
            requires: requires.iter().map(|r| dep(r)).collect(),
            ..Default::default()
        }
    }

    fn repo(pkgs: Vec<RpmPackage>) -> Vec<Repository> {
        vec![Repository {
            id: "test".into(),
            packages: pkgs,
        }]
    }

    fn names(p: &[Planned]) -> Vec<String> {
        p.iter().map(|p| p.package.nevra()).collect()
    }

    fn docker_repo() -> Vec<RpmPackage> {
        let mut selinux = pkg(
            "container-selinux 2:2.119.2-1.911c772.el7_8",
            "noarch",
            &["/bin/sh"],
        );
        selinux.files = vec!["/usr/share/selinux/x".into()];
        let mut runc = pkg("runc-helper 1.0-1", "x86_64", &[]);
        runc.files = vec!["/usr/libexec/runc-helper".into()];
        vec![
            pkg(
                "docker-ce 3:19.03.11-3.el7",
                "x86_64",
                &[
                    "containerd.io >= 1.2.2-3",
                    "docker-ce-cli",
                    "(iptables or nftables)",
                ],
            ),
            pkg(
                "docker-ce 3:19.03.5-3.el7",
                "x86_64",
                &["containerd.io >= 1.2.2-3"],
            ),
            pkg("docker-ce 3:19.03.11-3.el7", "aarch64", &[]),
            pkg("docker-ce-cli 1:19.03.11-3.el7", "x86_64", &[]),
            pkg(
                "containerd.io 1.2.13-3.2.el7",
                "x86_64",
                &["container-selinux >= 2:2.74", "/usr/libexec/runc-helper"],
            ),
            pkg(
                "containerd.io 1.2.6-3.3.el7",
                "x86_64",
                &["container-selinux >= 2:2.74"],
            ),
            pkg("containerd.io 1.2.13-3.2.el7", "aarch64", &[]),
            selinux,
            runc,
            pkg("nftables 0.8-14.el7", "x86_64", &[]),
        ]
    }

    fn base() -> Vec<RpmPackage> {
        let mut bash = pkg("bash 4.2.46-34.el7", "x86_64", &[]);
        bash.files = vec!["/bin/sh".into(), "/bin/bash".into()];
        vec![bash]
    }

    #[test]
    fn pins_chain_file_dependency_epoch_and_alternative() {
        let repos = repo(docker_repo());
        let got = resolve(
            &base(),
            &repos,
            "x86_64",
            &["docker-ce-19.03.11".into(), "containerd.io-1.2.13".into()],
        )
        .unwrap();
        assert_eq!(
            names(&got),
            [
                "container-selinux-2:2.119.2-1.911c772.el7_8.noarch",
                "containerd.io-1.2.13-3.2.el7.x86_64",
                "docker-ce-3:19.03.11-3.el7.x86_64",
                "docker-ce-cli-1:19.03.11-3.el7.x86_64",
                "nftables-0.8-14.el7.x86_64",
                "runc-helper-1.0-1.x86_64",
            ]
        );
        // Without a pin the newest; for aarch64 the aarch64 build.
        let got = resolve(&base(), &repos, "aarch64", &["docker-ce".into()]).unwrap();
        assert_eq!(names(&got), ["docker-ce-3:19.03.11-3.el7.aarch64"]);
        // name-version-release.
        let got = resolve(
            &base(),
            &repos,
            "x86_64",
            &["containerd.io-1.2.6-3.3.el7".into()],
        )
        .unwrap();
        assert_eq!(got[1].package.nevra(), "containerd.io-1.2.6-3.3.el7.x86_64");
        // Deterministic.
        let again = resolve(
            &base(),
            &repos,
            "x86_64",
            &["containerd.io-1.2.6-3.3.el7".into()],
        )
        .unwrap();
        assert_eq!(got, again);
    }

    #[test]
    fn missing_pin_lists_versions() {
        let repos = repo(docker_repo());
        let e = resolve(&base(), &repos, "x86_64", &["docker-ce-18.09.1".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "docker-ce 18.09.1 is not in the image's rpm repositories for x86_64; available: 3:19.03.5-3.el7, 3:19.03.11-3.el7"
        );
        // An explicit epoch must match.
        assert_eq!(
            resolve(
                &base(),
                &repos,
                "x86_64",
                &["docker-ce-cli-1:19.03.11".into()]
            )
            .unwrap()
            .len(),
            1
        );
        let e = resolve(
            &base(),
            &repos,
            "x86_64",
            &["docker-ce-cli-2:19.03.11".into()],
        )
        .unwrap_err();
        assert!(matches!(e, ResolveError::PinNotFound { .. }), "{e}");
        let e = resolve(&base(), &repos, "x86_64", &["podman-1.0".into()]).unwrap_err();
        assert_eq!(
            e,
            ResolveError::NotFound {
                name: "podman".into(),
                arch: "x86_64".into()
            }
        );
        let e = resolve(&base(), &repos, "x86_64", &["docker-ce>=1".into()]).unwrap_err();
        assert!(matches!(e, ResolveError::InvalidRequest { .. }), "{e}");
    }

    #[test]
    fn unsatisfiable_and_rich() {
        let repos = repo(vec![
            pkg("a 1-1", "x86_64", &["libmissing.so.1()(64bit)"]),
            pkg("b 1-1", "noarch", &["(c if d)"]),
        ]);
        let e = resolve(&[], &repos, "x86_64", &["a".into()]).unwrap_err();
        assert_eq!(e.to_string(), "a-1-1.x86_64 requires libmissing.so.1()(64bit), which no installed package and no package of the image's rpm repositories provides");
        let e = resolve(&[], &repos, "x86_64", &["b".into()]).unwrap_err();
        assert_eq!(
            e,
            ResolveError::RichDependency {
                package: "b-1-1.noarch".into(),
                source: RichError::Operator {
                    dep: "(c if d)".into(),
                    operator: "if".into()
                }
            }
        );
        assert_eq!(e.to_string(), "b-1-1.noarch requires the rich dependency \"(c if d)\"; only (a or b ...) is supported");
        // The file dependency /bin/sh is only satisfied by the base.
        let repos = repo(docker_repo());
        let e = resolve(&[], &repos, "x86_64", &["container-selinux".into()]).unwrap_err();
        assert!(e.to_string().contains("requires /bin/sh"), "{e}");
    }

    #[test]
    fn obsoletes_and_conflicts_name_both() {
        let mut ce = pkg("docker-ce 3:19.03.11-3.el7", "x86_64", &[]);
        ce.obsoletes = vec![dep("docker < 2")];
        ce.conflicts = vec![dep("podman-docker")];
        let repos = repo(vec![ce]);
        let mut base = base();
        base.push(pkg("docker 1.13.1-1.el7", "x86_64", &[]));
        let e = resolve(&base, &repos, "x86_64", &["docker-ce".into()]).unwrap_err();
        assert_eq!(e.to_string(), "docker-ce-3:19.03.11-3.el7.x86_64 obsoletes docker-1.13.1-1.el7.x86_64 (docker < 2), which is installed in the image; remove it from the base or pin another version");
        let mut base2 = self::base();
        base2.push(pkg("podman-docker 1.6-1", "noarch", &[]));
        let e = resolve(&base2, &repos, "x86_64", &["docker-ce".into()]).unwrap_err();
        assert_eq!(e.to_string(), "docker-ce-3:19.03.11-3.el7.x86_64 conflicts with podman-docker-1.6-1.noarch (podman-docker), which is installed in the image");
        // An installed package at a version the obsolete does not cover is fine.
        let mut base3 = self::base();
        base3.push(pkg("docker 2:1.13.1-1.el7", "x86_64", &[]));
        assert_eq!(
            resolve(&base3, &repos, "x86_64", &["docker-ce".into()])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn installed_same_version_is_skipped_other_refused() {
        let repos = repo(docker_repo());
        let mut b = base();
        b.push(pkg("docker-ce-cli 1:19.03.11-3.el7", "x86_64", &[]));
        let got = resolve(&b, &repos, "x86_64", &["docker-ce-cli".into()]).unwrap();
        assert!(got.is_empty());
        let mut b = base();
        b.push(pkg("docker-ce-cli 1:18.09.0-3.el7", "x86_64", &[]));
        let e = resolve(&b, &repos, "x86_64", &["docker-ce-cli".into()]).unwrap_err();
        assert!(matches!(e, ResolveError::Replaces { .. }), "{e}");
    }

    #[test]
    fn rich_or_parsing() {
        let alts = rich_alternatives("(iptables >= 1.4 or nftables)").unwrap();
        assert_eq!(alts.len(), 2);
        assert_eq!(alts[0].to_string(), "iptables >= 1.4");
        assert_eq!(alts[1].to_string(), "nftables");
        assert!(rich_alternatives("(a and b)").is_err());
        assert!(rich_alternatives("(a or (b with c))").is_err());
        // A version that does not parse: the same sentence, its cause kept.
        let repos = repo(vec![pkg("b 1-1", "noarch", &["(c >= x:1 or d)"])]);
        let e = resolve(&[], &repos, "x86_64", &["b".into()]).unwrap_err();
        assert_eq!(e.to_string(), "b-1-1.noarch requires the rich dependency \"(c >= x:1 or d)\"; only (a or b ...) is supported");
        let rich = std::error::Error::source(&e).unwrap();
        let evr = rich.source().unwrap().downcast_ref::<EvrError>().unwrap();
        assert!(
            matches!(evr, EvrError::Epoch { epoch, .. } if epoch == "x"),
            "{evr}"
        );
        assert_eq!(rpm_arch("amd64"), "x86_64");
        assert_eq!(rpm_arch("arm64"), "aarch64");
    }
}
