//! Deterministic dependency resolution for installing requested packages
//! into an image.
//!
//! The resolver works like apt's "first alternative that works", without
//! backtracking and without a SAT solver:
//!
//! 1. Every request is given its candidate first (so a pin wins over what a
//!    dependency of another request would pick): a pin `name=version` takes
//!    exactly that version; a bare name takes the highest version (ties go
//!    to the repository listed first). A bare name that is already
//!    installed is left as it is.
//! 2. Chosen packages are then processed in the order they were chosen.
//!    For each `Pre-Depends` and `Depends` entry: if any alternative is
//!    already satisfied by an installed or chosen package, nothing is done;
//!    otherwise the first alternative (in the order written) that has a
//!    candidate not in conflict with the packages so far is chosen. The
//!    candidate for a relation is the highest version of a real package of
//!    that name that satisfies it, else a package providing it (the
//!    provider whose name sorts first).
//! 3. A final check verifies that every dependency of the chosen packages
//!    holds, that no dependency of an installed package that held before is
//!    broken, and that no `Conflicts`/`Breaks` holds between a chosen
//!    package and any other package of the result. `Replaces` does not
//!    excuse a conflict: removing installed packages is not something an
//!    image build does behind the recipe's back.
//! 4. The chosen packages are ordered so that dependencies come before
//!    their dependents: a stable topological order (ties by choice order),
//!    in which a `Depends` cycle is broken where needed but `Pre-Depends`
//!    are always strictly first.
//!
//! Only packages for the target architecture and `all` are candidates.
//! Installed packages of other architectures satisfy dependencies as dpkg
//! decides (`Multi-Arch: foreign`, `allowed` with `:any`). Architecture
//! restrictions (`[amd64]`) are evaluated against the target; build
//! profiles (`<!nocheck>`) against an empty profile set.
//!
//! Everything is ordered by indices and `BTreeMap`s: the same inputs give
//! the same answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::control::{format_relations, valid_name, BinaryPackage, MultiArch, Relation};
use super::version::Version;

/// Why a set of requests cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A request is not `name` or `name=version`.
    #[error("invalid package request `{text}`: {reason}")]
    InvalidRequest {
        /// The request as given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The same package is requested twice with different pins.
    #[error("package `{name}` is requested twice, as `{first}` and as `{second}`; keep one")]
    DuplicateRequest {
        /// Package name.
        name: String,
        /// First request.
        first: String,
        /// Second request.
        second: String,
    },
    /// A pinned version does not exist.
    #[error(
        "package `{name}`: version {version} is not available for {arch} in the configured repositories; {}",
        if .available.is_empty() {
            "no version of it is".to_string()
        } else {
            format!("available: {}; pin one of these", .available.join(", "))
        }
    )]
    PinNotFound {
        /// Package name.
        name: String,
        /// The pinned version.
        version: String,
        /// Target architecture.
        arch: String,
        /// The versions that exist, highest first, each with its repository.
        available: Vec<String>,
    },
    /// A requested name matches no package.
    #[error("package `{name}` is not available for {arch} in the configured repositories{note}")]
    NotFound {
        /// Package name.
        name: String,
        /// Target architecture.
        arch: String,
        /// Extra detail (e.g. the architectures it exists for), with its
        /// leading separator.
        note: String,
    },
    /// A requested name is a virtual package with several providers.
    #[error(
        "`{name}` is a virtual package provided by {}; request one of them by name",
        .providers.join(", ")
    )]
    AmbiguousVirtual {
        /// Virtual package name.
        name: String,
        /// Providers, sorted.
        providers: Vec<String>,
    },
    /// Two packages of the result conflict.
    #[error("{0}")]
    Conflict(Box<Conflict>),
    /// A dependency has no package that satisfies it.
    #[error("unsatisfiable dependency: {} -> {dependency}: {reason}", .chain.join(" -> "))]
    Unsatisfiable {
        /// From the request down to the package declaring the dependency.
        chain: Vec<String>,
        /// The dependency entry (alternatives joined with `|`).
        dependency: String,
        /// Why each alternative fails.
        reason: String,
    },
    /// Installing would break a dependency of an installed package.
    #[error(
        "installing {package} would break installed {dependent}, which depends on `{dependency}`{}",
        via_text(.via)
    )]
    BreaksInstalled {
        /// The chosen package (`name version`).
        package: String,
        /// The installed package (`name version`).
        dependent: String,
        /// Its dependency entry.
        dependency: String,
        /// Why the chosen package is being installed.
        via: Vec<String>,
    },
    /// A chosen package lacks a field needed to download it.
    #[error(
        "package {package} from repository {repository} has no `{field}` field; the Packages index is incomplete"
    )]
    MissingField {
        /// `name version`.
        package: String,
        /// Repository id.
        repository: String,
        /// The missing field.
        field: String,
    },
    /// Packages pre-depend on each other in a cycle.
    #[error("Pre-Depends cycle among {}: no installation order exists", .packages.join(", "))]
    PreDependsCycle {
        /// The packages left unordered.
        packages: Vec<String>,
    },
}

impl ResolveError {
    /// The name of the request an error traces back to (as requested, or
    /// the package chosen for it), so that a recipe error can point at that
    /// one entry; None for errors of the repository (a missing field, a
    /// Pre-Depends cycle) and when no single request is at fault.
    pub fn request_name(&self) -> Option<&str> {
        match self {
            ResolveError::InvalidRequest { text, .. } => text.split('=').next(),
            ResolveError::DuplicateRequest { name, .. }
            | ResolveError::PinNotFound { name, .. }
            | ResolveError::NotFound { name, .. }
            | ResolveError::AmbiguousVirtual { name, .. } => Some(name),
            ResolveError::Conflict(c) => c.via.first().map(String::as_str),
            ResolveError::Unsatisfiable { chain, .. } => chain.first().map(String::as_str),
            ResolveError::BreaksInstalled { via, .. } => via.first().map(String::as_str),
            ResolveError::MissingField { .. } | ResolveError::PreDependsCycle { .. } => None,
        }
    }
}

/// A `Conflicts` or `Breaks` that holds between two packages of the result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{package} {verb} {other} ({field}: {relation}){}", via_text(.via))]
pub struct Conflict {
    /// The package declaring the conflict (`name version`, prefixed with
    /// `installed` when it is in the base).
    pub package: String,
    /// `conflicts with` or `breaks`.
    pub verb: String,
    /// The other package, same form.
    pub other: String,
    /// `Conflicts` or `Breaks`.
    pub field: String,
    /// The relation that matched.
    pub relation: String,
    /// Why the chosen one of the two is being installed (request first,
    /// ending with the dependency entry), when it is not itself requested.
    pub via: Vec<String>,
}

/// Refuses a package requested twice with different versions.
fn check_duplicates(requests: &[Request]) -> Result<(), ResolveError> {
    let mut seen: BTreeMap<&str, &Request> = BTreeMap::new();
    for req in requests {
        if let Some(first) = seen.insert(&req.name, req) {
            if first.version == req.version {
                continue;
            }
            return Err(ResolveError::DuplicateRequest {
                name: req.name.clone(),
                first: first.to_string(),
                second: req.to_string(),
            });
        }
    }
    Ok(())
}

fn via_text(via: &[String]) -> String {
    if via.len() > 1 {
        format!(" (needed by {})", via.join(" -> "))
    } else {
        String::new()
    }
}

/// A package request: `name` or `name=version` (exact pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Package name.
    pub name: String,
    /// Exact version, when pinned.
    pub version: Option<Version>,
}

impl Request {
    /// Parses `name` or `name=version`.
    pub fn parse(text: &str) -> Result<Request, ResolveError> {
        let err = |reason: String| ResolveError::InvalidRequest {
            text: text.to_string(),
            reason,
        };
        let (name, version) = match text.split_once('=') {
            Some((n, v)) => (n, Some(Version::parse(v).map_err(|e| err(e.to_string()))?)),
            None => (text, None),
        };
        if !valid_name(name) {
            return Err(err(format!(
                "`{name}` is not a package name (letters, digits and `+-.`, starting with a letter or digit)"
            )));
        }
        Ok(Request {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(v) = &self.version {
            write!(f, "={v}")?;
        }
        Ok(())
    }
}

/// The packages of one repository (one `Packages` index or several merged),
/// with the id the output names it by.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Repository id (e.g. the apt-source name and component).
    pub id: String,
    /// Its packages, in index order.
    pub packages: Vec<BinaryPackage>,
}

/// What the resolver works on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Installed packages (only those fully installed, see
    /// [`super::control::parse_installed`]).
    pub installed: &'a [BinaryPackage],
    /// Repositories in priority order (first wins a tie).
    pub repositories: &'a [Repository],
    /// Target (native) architecture, e.g. `amd64`.
    pub architecture: &'a str,
}

/// One package to install, in installation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Architecture (the target or `all`).
    pub architecture: String,
    /// `Multi-Arch` (dpkg names the info files `name:arch.*` for `same`).
    pub multi_arch: MultiArch,
    /// Id of the repository it comes from.
    pub repository: String,
    /// `Filename` relative to the repository root.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA256, lowercase hex.
    pub sha256: String,
    /// Pulled in as a dependency rather than requested (apt's auto mark).
    pub auto: bool,
    /// The installed version this replaces (an upgrade or downgrade).
    pub replaces_installed: Option<Version>,
}

/// Name and provides indexes over a list of packages.
struct Pool<'a> {
    pkgs: Vec<&'a BinaryPackage>,
    by_name: BTreeMap<&'a str, Vec<usize>>,
    by_provides: BTreeMap<&'a str, Vec<usize>>,
}

impl<'a> Pool<'a> {
    fn new(pkgs: Vec<&'a BinaryPackage>) -> Self {
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut by_provides: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            by_name.entry(p.name.as_str()).or_default().push(i);
            for v in &p.provides {
                by_provides.entry(v.name.as_str()).or_default().push(i);
            }
        }
        Pool {
            pkgs,
            by_name,
            by_provides,
        }
    }

    /// Indices of packages named `name` or providing it, each once, in order.
    fn lookup(&self, name: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.by_name.get(name).cloned().unwrap_or_default();
        out.extend(self.by_provides.get(name).into_iter().flatten());
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// dpkg's `deparchsatisfied`: whether `pkg`'s architecture fits `rel` as
/// written in a package of architecture `dependent_arch`. `conflict_like`
/// is true for Conflicts/Breaks/Replaces, whose unqualified names match
/// every architecture.
fn arch_ok(
    pkg: &BinaryPackage,
    rel: &Relation,
    dependent_arch: &str,
    native: &str,
    conflict_like: bool,
) -> bool {
    let implicit = rel.arch.is_none();
    if implicit && pkg.multi_arch == MultiArch::Foreign {
        return true;
    }
    if implicit && conflict_like {
        return true;
    }
    if rel.arch.as_deref() == Some("any") {
        // `:any` is satisfied across architectures only by Multi-Arch: allowed.
        return pkg.multi_arch == MultiArch::Allowed || conflict_like;
    }
    let dep_arch = match rel.arch.as_deref() {
        None => dependent_arch,
        Some("native") => native,
        Some(a) => a,
    };
    let norm = |a: &'_ str| -> String {
        if a == "all" {
            native.to_string()
        } else {
            a.to_string()
        }
    };
    norm(dep_arch) == norm(&pkg.architecture)
}

/// Whether `pkg` satisfies `rel` (by its own name or by a Provides).
fn matches(
    pkg: &BinaryPackage,
    rel: &Relation,
    dependent_arch: &str,
    native: &str,
    conflict_like: bool,
) -> bool {
    if !arch_ok(pkg, rel, dependent_arch, native, conflict_like) {
        return false;
    }
    if pkg.name == rel.name && rel.version_matches(&pkg.version) {
        return true;
    }
    pkg.provides.iter().any(|p| {
        p.name == rel.name
            && match &rel.version {
                None => true,
                // Only a versioned Provides satisfies a versioned relation.
                Some((op, want)) => p.version.as_ref().is_some_and(|(_, pv)| op.holds(pv, want)),
            }
    })
}

/// Whether a relation applies on `native` given its architecture
/// restriction list and build profiles (no profile is active).
fn applies(rel: &Relation, native: &str) -> bool {
    let arch_matches = |a: &str| {
        a == native
            || a == "any"
            || a == "linux-any"
            || a == format!("any-{native}")
            || a == format!("linux-{native}")
    };
    let arch_ok = if rel.arches.is_empty() {
        true
    } else if rel.arches.iter().any(|a| a.starts_with('!')) {
        !rel.arches
            .iter()
            .filter_map(|a| a.strip_prefix('!'))
            .any(arch_matches)
    } else {
        rel.arches.iter().any(|a| arch_matches(a))
    };
    let profiles_ok = rel.profiles.is_empty()
        || rel
            .profiles
            .iter()
            .any(|group| group.iter().all(|term| term.starts_with('!')));
    arch_ok && profiles_ok
}

fn label(p: &BinaryPackage) -> String {
    format!("{} {}", p.name, p.version)
}

fn group_text(group: &[Relation]) -> String {
    format_relations(&vec![group.to_vec()])
}

/// A package of the result: installed (index into the installed pool) or
/// chosen (index into the choice list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Installed(usize),
    Chosen(usize),
}

/// A chosen package.
struct Choice {
    /// Index into the available pool.
    cand: usize,
    /// The choice that pulled it in (None for a request).
    parent: Option<usize>,
    /// The installed package it replaces (same name).
    replaces: Option<usize>,
}

struct Resolver<'a> {
    native: &'a str,
    installed: Pool<'a>,
    avail: Pool<'a>,
    /// Repository index of each available package.
    repo_of: Vec<usize>,
    repo_ids: Vec<&'a str>,
    /// Architectures of packages skipped for being foreign, by name.
    foreign: BTreeMap<&'a str, BTreeSet<&'a str>>,
    chosen: Vec<Choice>,
    chosen_by_name: BTreeMap<&'a str, usize>,
    replaced: BTreeSet<usize>,
}

/// Resolves `requests` against `input`: the packages to install, in
/// installation order. An empty list means everything requested is
/// already installed.
pub fn resolve(input: &Input<'_>, requests: &[Request]) -> Result<Vec<Planned>, ResolveError> {
    let native = input.architecture;
    let mut avail = Vec::new();
    let mut repo_of = Vec::new();
    let mut foreign: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (r, repo) in input.repositories.iter().enumerate() {
        for p in &repo.packages {
            if p.architecture == native || p.architecture == "all" {
                avail.push(p);
                repo_of.push(r);
            } else {
                foreign
                    .entry(p.name.as_str())
                    .or_default()
                    .insert(p.architecture.as_str());
            }
        }
    }
    let mut r = Resolver {
        native,
        installed: Pool::new(input.installed.iter().collect()),
        avail: Pool::new(avail),
        repo_of,
        repo_ids: input.repositories.iter().map(|r| r.id.as_str()).collect(),
        foreign,
        chosen: Vec::new(),
        chosen_by_name: BTreeMap::new(),
        replaced: BTreeSet::new(),
    };
    r.choose_requests(requests)?;
    // Process choices in order; new choices are appended and processed in turn.
    let mut i = 0;
    while i < r.chosen.len() {
        r.process(i)?;
        i += 1;
    }
    r.final_check()?;
    r.plan(requests)
}

impl<'a> Resolver<'a> {
    fn cand(&self, i: usize) -> &'a BinaryPackage {
        self.avail.pkgs[i]
    }

    fn member_pkg(&self, m: Member) -> &'a BinaryPackage {
        match m {
            Member::Installed(i) => self.installed.pkgs[i],
            Member::Chosen(c) => self.cand(self.chosen[c].cand),
        }
    }

    fn member_label(&self, m: Member) -> String {
        match m {
            Member::Installed(i) => format!("installed {}", label(self.installed.pkgs[i])),
            Member::Chosen(c) => label(self.cand(self.chosen[c].cand)),
        }
    }

    /// Names from the request down to choice `c`.
    fn chain(&self, c: usize) -> Vec<String> {
        let mut out = vec![self.cand(self.chosen[c].cand).name.clone()];
        let mut cur = self.chosen[c].parent;
        while let Some(p) = cur {
            out.push(self.cand(self.chosen[p].cand).name.clone());
            cur = self.chosen[p].parent;
        }
        out.reverse();
        out
    }

    /// Installed packages still present and chosen packages, in order.
    fn members(&self) -> impl Iterator<Item = Member> + '_ {
        (0..self.installed.pkgs.len())
            .filter(|i| !self.replaced.contains(i))
            .map(Member::Installed)
            .chain((0..self.chosen.len()).map(Member::Chosen))
    }

    /// A package of the current state satisfying `rel` (installed first).
    fn satisfier(&self, rel: &Relation, dependent_arch: &str) -> Option<Member> {
        let inst = self
            .installed
            .lookup(&rel.name)
            .into_iter()
            .filter(|i| !self.replaced.contains(i))
            .find(|&i| {
                matches(
                    self.installed.pkgs[i],
                    rel,
                    dependent_arch,
                    self.native,
                    false,
                )
            })
            .map(Member::Installed);
        inst.or_else(|| {
            (0..self.chosen.len())
                .find(|&c| {
                    matches(
                        self.cand(self.chosen[c].cand),
                        rel,
                        dependent_arch,
                        self.native,
                        false,
                    )
                })
                .map(Member::Chosen)
        })
    }

    /// The installed package a new package named `name` would replace.
    fn installed_named(&self, name: &str) -> Option<usize> {
        self.installed
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .find(|&i| {
                let p = self.installed.pkgs[i];
                // Multi-Arch: same packages of another architecture coexist.
                !(p.multi_arch == MultiArch::Same
                    && p.architecture != self.native
                    && p.architecture != "all")
            })
    }

    /// Best available package for `rel`: the highest version of a real
    /// package of that name satisfying it (first repository on a tie), else
    /// the first provider by name (then highest version).
    fn candidate(&self, rel: &Relation, dependent_arch: &str) -> Option<usize> {
        let ok = |&i: &usize| matches(self.cand(i), rel, dependent_arch, self.native, false);
        let best = |v: Vec<usize>| {
            v.into_iter().min_by(|&a, &b| {
                let (pa, pb) = (self.cand(a), self.cand(b));
                (&pa.name, std::cmp::Reverse(&pa.version), a).cmp(&(
                    &pb.name,
                    std::cmp::Reverse(&pb.version),
                    b,
                ))
            })
        };
        let all = self.avail.lookup(&rel.name);
        let (real, provided): (Vec<usize>, Vec<usize>) = all
            .into_iter()
            .filter(ok)
            .partition(|&i| self.cand(i).name == rel.name);
        best(real).or_else(|| best(provided))
    }

    /// The first Conflicts/Breaks between available package `cand` and the
    /// current state (ignoring `skip`, the package it replaces).
    fn conflict_with_state(&self, cand: usize, skip: Option<usize>) -> Option<ResolveError> {
        let p = self.cand(cand);
        self.members()
            .filter(|m| {
                *m != Member::Installed(skip.unwrap_or(usize::MAX))
                    && self.member_pkg(*m).name != p.name
            })
            .find_map(|m| {
                let other = self.member_pkg(m);
                self.conflict_between(p, label(p), other, self.member_label(m), Vec::new())
            })
    }

    /// The Conflicts/Breaks declared by `a` against `b` or by `b` against
    /// `a`, as an error naming both.
    fn conflict_between(
        &self,
        a: &BinaryPackage,
        a_label: String,
        b: &BinaryPackage,
        b_label: String,
        via: Vec<String>,
    ) -> Option<ResolveError> {
        let find = |x: &BinaryPackage, y: &BinaryPackage| {
            for (field, verb, rels) in [
                ("Conflicts", "conflicts with", &x.conflicts),
                ("Breaks", "breaks", &x.breaks),
            ] {
                for rel in rels.iter().flatten() {
                    if applies(rel, self.native)
                        && matches(y, rel, &x.architecture, self.native, true)
                    {
                        return Some((field, verb, rel.to_string()));
                    }
                }
            }
            None
        };
        if let Some((field, verb, relation)) = find(a, b) {
            return Some(ResolveError::Conflict(Box::new(Conflict {
                package: a_label,
                verb: verb.into(),
                other: b_label,
                field: field.into(),
                relation,
                via,
            })));
        }
        find(b, a).map(|(field, verb, relation)| {
            ResolveError::Conflict(Box::new(Conflict {
                package: b_label,
                verb: verb.into(),
                other: a_label,
                field: field.into(),
                relation,
                via,
            }))
        })
    }

    fn add_choice(&mut self, cand: usize, parent: Option<usize>) {
        let p = self.cand(cand);
        let replaces = self.installed_named(&p.name);
        if let Some(i) = replaces {
            self.replaced.insert(i);
        }
        self.chosen_by_name
            .insert(p.name.as_str(), self.chosen.len());
        self.chosen.push(Choice {
            cand,
            parent,
            replaces,
        });
    }

    /// The error for the request `req` pinned at `pin`, a version none of
    /// the candidates `named` has: the versions there are, newest first.
    fn pin_not_found(&self, req: &Request, pin: &Version, named: &[usize]) -> ResolveError {
        let mut versions: Vec<usize> = named.to_vec();
        versions.sort_by(|&a, &b| {
            self.cand(b)
                .version
                .cmp(&self.cand(a).version)
                .then(a.cmp(&b))
        });
        ResolveError::PinNotFound {
            name: req.name.clone(),
            version: pin.to_string(),
            arch: self.native.to_string(),
            available: versions
                .into_iter()
                .map(|i| {
                    format!(
                        "{} ({})",
                        self.cand(i).version,
                        self.repo_ids[self.repo_of[i]]
                    )
                })
                .collect(),
        }
    }

    /// Step 1: a candidate for every request.
    fn choose_requests(&mut self, requests: &[Request]) -> Result<(), ResolveError> {
        check_duplicates(requests)?;
        for req in requests {
            if self.chosen_by_name.contains_key(req.name.as_str()) {
                continue;
            }
            let named: Vec<usize> = self
                .avail
                .by_name
                .get(req.name.as_str())
                .cloned()
                .unwrap_or_default();
            let installed = self
                .installed_named(&req.name)
                .map(|i| self.installed.pkgs[i]);
            let cand = match &req.version {
                Some(pin) => {
                    if installed.is_some_and(|p| &p.version == pin) {
                        continue; // already installed at the pinned version
                    }
                    let Some(c) = named
                        .iter()
                        .copied()
                        .find(|&i| &self.cand(i).version == pin)
                    else {
                        return Err(self.pin_not_found(req, pin, &named));
                    };
                    c
                }
                None => {
                    if installed.is_some() {
                        continue; // already installed: left as it is
                    }
                    let rel = Relation {
                        name: req.name.clone(),
                        arch: None,
                        version: None,
                        arches: Vec::new(),
                        profiles: Vec::new(),
                    };
                    if named.is_empty() {
                        // A virtual package: fine when one package provides it.
                        if self.satisfier(&rel, self.native).is_some() {
                            continue;
                        }
                        let providers: BTreeSet<&str> = self
                            .avail
                            .lookup(&req.name)
                            .into_iter()
                            .map(|i| self.cand(i).name.as_str())
                            .collect();
                        if providers.len() > 1 {
                            return Err(ResolveError::AmbiguousVirtual {
                                name: req.name.clone(),
                                providers: providers.into_iter().map(str::to_string).collect(),
                            });
                        }
                    }
                    let Some(c) = self.candidate(&rel, self.native) else {
                        return Err(ResolveError::NotFound {
                            name: req.name.clone(),
                            arch: self.native.to_string(),
                            note: self.foreign_note(&req.name),
                        });
                    };
                    c
                }
            };
            let skip = self.installed_named(&self.cand(cand).name);
            if let Some(mut e) = self.conflict_with_state(cand, skip) {
                if let ResolveError::Conflict(c) = &mut e {
                    c.via = vec![req.name.clone()];
                }
                return Err(e);
            }
            self.add_choice(cand, None);
        }
        Ok(())
    }

    fn foreign_note(&self, name: &str) -> String {
        match self.foreign.get(name) {
            Some(archs) => format!(
                " (it exists only for {})",
                archs.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            None => String::new(),
        }
    }

    /// Step 2: the dependencies of choice `c`.
    fn process(&mut self, c: usize) -> Result<(), ResolveError> {
        let pkg = self.cand(self.chosen[c].cand);
        for group in pkg.pre_depends.iter().chain(&pkg.depends) {
            let group: Vec<Relation> = group
                .iter()
                .filter(|r| applies(r, self.native))
                .cloned()
                .collect();
            if group.is_empty()
                || group
                    .iter()
                    .any(|r| self.satisfier(r, &pkg.architecture).is_some())
            {
                continue;
            }
            // First alternative with a usable candidate.
            let mut reasons = Vec::new();
            let mut conflict = None;
            let mut picked = None;
            for rel in &group {
                let Some(cand) = self.candidate(rel, &pkg.architecture) else {
                    reasons.push(self.why_missing(rel));
                    continue;
                };
                let cp = self.cand(cand);
                if let Some(&other) = self.chosen_by_name.get(cp.name.as_str()) {
                    let other_label = label(self.cand(self.chosen[other].cand));
                    reasons.push(if self.chosen[other].parent.is_none() {
                        format!("{other_label} is requested")
                    } else {
                        format!(
                            "{other_label} is to be installed instead (needed by {})",
                            self.chain(other).join(" -> ")
                        )
                    });
                    continue;
                }
                let skip = self.installed_named(&cp.name);
                if let Some(e) = self.conflict_with_state(cand, skip) {
                    reasons.push(e.to_string());
                    conflict.get_or_insert(e);
                    continue;
                }
                picked = Some(cand);
                break;
            }
            match picked {
                Some(cand) => self.add_choice(cand, Some(c)),
                None => {
                    let mut chain = self.chain(c);
                    if let Some(mut e) = conflict {
                        if let ResolveError::Conflict(c) = &mut e {
                            chain.push(group_text(&group));
                            c.via = chain;
                        }
                        return Err(e);
                    }
                    return Err(ResolveError::Unsatisfiable {
                        chain,
                        dependency: group_text(&group),
                        reason: reasons.join("; "),
                    });
                }
            }
        }
        Ok(())
    }

    /// Why no available package satisfies `rel`.
    fn why_missing(&self, rel: &Relation) -> String {
        let named: Vec<&BinaryPackage> = self
            .avail
            .by_name
            .get(rel.name.as_str())
            .into_iter()
            .flatten()
            .map(|&i| self.cand(i))
            .collect();
        if let Some(i) = self.installed_named(&rel.name).filter(|_| named.is_empty()) {
            return format!(
                "installed {} does not match and no other version is available",
                label(self.installed.pkgs[i])
            );
        }
        if named.is_empty() {
            if self.avail.by_provides.contains_key(rel.name.as_str()) {
                return format!("no package provides `{rel}`");
            }
            return format!(
                "`{}` is not in any configured repository for {}{}",
                rel.name,
                self.native,
                self.foreign_note(&rel.name)
            );
        }
        if let Some(p) = named.iter().find(|p| rel.version_matches(&p.version)) {
            return format!(
                "{} ({}, Multi-Arch: {}) does not fit `{rel}` by architecture",
                label(p),
                p.architecture,
                p.multi_arch.as_str()
            );
        }
        let mut versions: Vec<&Version> = named.iter().map(|p| &p.version).collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        format!(
            "`{}` is available only in version(s) {}",
            rel.name,
            versions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Step 3: every dependency and conflict of the final set.
    fn final_check(&self) -> Result<(), ResolveError> {
        let members: Vec<Member> = self.members().collect();
        for c in 0..self.chosen.len() {
            let pkg = self.cand(self.chosen[c].cand);
            for group in pkg.pre_depends.iter().chain(&pkg.depends) {
                let group: Vec<Relation> = group
                    .iter()
                    .filter(|r| applies(r, self.native))
                    .cloned()
                    .collect();
                if !group.is_empty()
                    && !group
                        .iter()
                        .any(|r| self.satisfier(r, &pkg.architecture).is_some())
                {
                    return Err(ResolveError::Unsatisfiable {
                        chain: self.chain(c),
                        dependency: group_text(&group),
                        reason: "a package chosen later no longer satisfies it".into(),
                    });
                }
            }
            for &m in &members {
                if m == Member::Chosen(c) || self.member_pkg(m).name == pkg.name {
                    continue;
                }
                // Each chosen pair once.
                if matches!(m, Member::Chosen(o) if o < c) {
                    continue;
                }
                if let Some(e) = self.conflict_between(
                    pkg,
                    label(pkg),
                    self.member_pkg(m),
                    self.member_label(m),
                    self.chain(c),
                ) {
                    return Err(e);
                }
            }
        }
        // Dependencies of installed packages that held before must still hold.
        let before = |rel: &Relation, arch: &str| {
            self.installed
                .lookup(&rel.name)
                .into_iter()
                .any(|i| matches(self.installed.pkgs[i], rel, arch, self.native, false))
        };
        for (i, pkg) in self.installed.pkgs.iter().enumerate() {
            if self.replaced.contains(&i) {
                continue;
            }
            for group in pkg.pre_depends.iter().chain(&pkg.depends) {
                let held = group.iter().any(|r| before(r, &pkg.architecture));
                let holds = group
                    .iter()
                    .any(|r| self.satisfier(r, &pkg.architecture).is_some());
                if held && !holds {
                    // Blame the replacement of a package the entry names.
                    let blame = (0..self.chosen.len())
                        .find(|&c| {
                            self.chosen[c].replaces.is_some_and(|old| {
                                group.iter().any(|r| {
                                    matches(
                                        self.installed.pkgs[old],
                                        r,
                                        &pkg.architecture,
                                        self.native,
                                        false,
                                    )
                                })
                            })
                        })
                        .unwrap_or(0);
                    return Err(ResolveError::BreaksInstalled {
                        package: label(self.cand(self.chosen[blame].cand)),
                        dependent: label(pkg),
                        dependency: group_text(group),
                        via: self.chain(blame),
                    });
                }
            }
        }
        Ok(())
    }

    /// For every choice, the choices it needs first: (choice, whether by
    /// Pre-Depends).
    fn predecessors(&self) -> Vec<BTreeSet<(usize, bool)>> {
        let n = self.chosen.len();
        let mut preds: Vec<BTreeSet<(usize, bool)>> = vec![BTreeSet::new(); n];
        for (c, pred) in preds.iter_mut().enumerate() {
            let pkg = self.cand(self.chosen[c].cand);
            let groups = pkg
                .pre_depends
                .iter()
                .map(|g| (g, true))
                .chain(pkg.depends.iter().map(|g| (g, false)));
            for (group, pre) in groups {
                let sat = group
                    .iter()
                    .filter(|r| applies(r, self.native))
                    .find_map(|r| self.satisfier(r, &pkg.architecture));
                if let Some(Member::Chosen(d)) = sat {
                    if d != c {
                        pred.insert((d, pre));
                    }
                }
            }
        }
        preds
    }

    /// Step 4: installation order and the output records.
    fn plan(&self, requests: &[Request]) -> Result<Vec<Planned>, ResolveError> {
        let n = self.chosen.len();
        // preds[c]: (choice it needs first, whether by Pre-Depends).
        let preds = self.predecessors();
        // reach[c]: every package c needs before it, directly or not. Two
        // packages are in the same cycle when each reaches the other.
        let reach: Vec<BTreeSet<usize>> = (0..n)
            .map(|c| {
                let mut seen = BTreeSet::new();
                let mut stack: Vec<usize> = preds[c].iter().map(|&(d, _)| d).collect();
                while let Some(d) = stack.pop() {
                    if seen.insert(d) {
                        stack.extend(preds[d].iter().map(|&(e, _)| e));
                    }
                }
                seen
            })
            .collect();
        let same_cycle = |c: usize, d: usize| reach[c].contains(&d) && reach[d].contains(&c);
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            // First choice: a package whose dependencies, direct or not, are
            // all placed (so a whole cycle comes before what needs it).
            let strict = (0..n).find(|&c| !done[c] && reach[c].iter().all(|&d| d == c || done[d]));
            // Otherwise break a Depends cycle: a package whose unplaced
            // dependencies are all in its own cycle, none by Pre-Depends.
            let in_cycle = || {
                (0..n).find(|&c| {
                    !done[c]
                        && reach[c].iter().all(|&d| done[d] || same_cycle(c, d))
                        && preds[c].iter().all(|&(d, pre)| done[d] || !pre)
                })
            };
            let Some(c) = strict.or_else(in_cycle) else {
                return Err(ResolveError::PreDependsCycle {
                    packages: (0..n)
                        .filter(|&c| !done[c])
                        .map(|c| label(self.cand(self.chosen[c].cand)))
                        .collect(),
                });
            };
            done[c] = true;
            order.push(c);
        }
        let requested: BTreeSet<&str> = requests.iter().map(|r| r.name.as_str()).collect();
        order
            .into_iter()
            .map(|c| {
                let i = self.chosen[c].cand;
                let p = self.cand(i);
                let repository = self.repo_ids[self.repo_of[i]].to_string();
                let missing = |field: &str| ResolveError::MissingField {
                    package: label(p),
                    repository: repository.clone(),
                    field: field.into(),
                };
                Ok(Planned {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    multi_arch: p.multi_arch,
                    filename: p.filename.clone().ok_or_else(|| missing("Filename"))?,
                    size: p.size.ok_or_else(|| missing("Size"))?,
                    sha256: p.sha256.clone().ok_or_else(|| missing("SHA256"))?,
                    auto: !requested.contains(p.name.as_str()),
                    replaces_installed: self.chosen[c]
                        .replaces
                        .map(|r| self.installed.pkgs[r].version.clone()),
                    repository,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{parse, parse_installed, Syntax};

    /// A repository from compact stanzas; Filename, Size and SHA256 are
    /// added when absent.
    fn repo(id: &str, text: &str) -> Repository {
        let packages = parse(text, Syntax::strict())
            .unwrap()
            .into_iter()
            .map(|mut s| {
                let (n, v, a) = (
                    s.get("Package").unwrap().to_string(),
                    s.get("Version").unwrap().to_string(),
                    s.get("Architecture").unwrap().to_string(),
                );
                if s.get("Filename").is_none() {
                    s.set("Filename", format!("pool/{n}_{v}_{a}.deb"));
                    s.set("Size", format!("{}", 1000 + n.len()));
                    s.set("SHA256", "ab".repeat(32));
                }
                BinaryPackage::from_stanza(&s).unwrap()
            })
            .collect();
        Repository {
            id: id.to_string(),
            packages,
        }
    }

    fn installed(text: &str) -> Vec<BinaryPackage> {
        parse_installed(text).unwrap()
    }

    fn req(list: &[&str]) -> Vec<Request> {
        list.iter().map(|r| Request::parse(r).unwrap()).collect()
    }

    fn run(
        inst: &[BinaryPackage],
        repos: &[Repository],
        arch: &str,
        requests: &[&str],
    ) -> Result<Vec<Planned>, ResolveError> {
        let input = Input {
            installed: inst,
            repositories: repos,
            architecture: arch,
        };
        resolve(&input, &req(requests))
    }

    fn names(plan: &[Planned]) -> Vec<String> {
        plan.iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    const BASE: &str = "\
Package: libc6
Status: install ok installed
Version: 2.31-0ubuntu9
Architecture: amd64
Multi-Arch: same

Package: dpkg
Essential: yes
Status: install ok installed
Version: 1.19.7ubuntu3
Architecture: amd64

Package: removed
Status: deinstall ok config-files
Version: 1.0
Architecture: amd64
";

    const DOCKER: &str = "\
Package: docker-ce
Version: 5:19.03.11~3-0~ubuntu-focal
Architecture: amd64
Pre-Depends: init-system-helpers (>= 1.18~)
Depends: containerd.io (>= 1.2.2-3), docker-ce-cli, iptables, libc6 (>= 2.17)
Conflicts: docker.io, docker-engine
Replaces: docker.io

Package: docker-ce
Version: 5:20.10.0~3-0~ubuntu-focal
Architecture: amd64
Depends: containerd.io (>= 1.4.1), docker-ce-cli

Package: docker-ce-cli
Version: 5:19.03.11~3-0~ubuntu-focal
Architecture: amd64

Package: docker-ce-cli
Version: 5:20.10.0~3-0~ubuntu-focal
Architecture: amd64

Package: containerd.io
Version: 1.2.13-1
Architecture: amd64

Package: containerd.io
Version: 1.2.13-2
Architecture: amd64
Provides: containerd, runc (= 1.0.0~rc10)
Depends: libseccomp2 (>= 2.4.0)
Conflicts: containerd, runc
Replaces: containerd, runc
";

    const UBUNTU: &str = "\
Package: init-system-helpers
Version: 1.57
Architecture: all
Multi-Arch: foreign
Pre-Depends: dpkg (>= 1.17)

Package: dpkg
Version: 1.19.7ubuntu3.2
Architecture: amd64

Package: iptables
Version: 1.8.4-3ubuntu2
Architecture: amd64
Depends: libc6 (>= 2.28), libip4tc2 (= 1.8.4-3ubuntu2)

Package: libip4tc2
Version: 1.8.4-3ubuntu2
Architecture: amd64
Multi-Arch: same

Package: libseccomp2
Version: 2.4.3-1ubuntu1
Architecture: amd64

Package: libseccomp2
Version: 2.5.1-1
Architecture: arm64

Package: containerd
Version: 1.3.3-0ubuntu2
Architecture: amd64
Provides: runc
";

    #[test]
    fn dependency_chain_in_install_order() {
        let inst = installed(BASE);
        let repos = [repo("docker", DOCKER), repo("ubuntu", UBUNTU)];
        let plan = run(
            &inst,
            &repos,
            "amd64",
            &[
                "docker-ce=5:19.03.11~3-0~ubuntu-focal",
                "containerd.io=1.2.13-2",
            ],
        )
        .unwrap();
        assert_eq!(
            names(&plan),
            [
                "init-system-helpers=1.57",
                "docker-ce-cli=5:20.10.0~3-0~ubuntu-focal",
                "libseccomp2=2.4.3-1ubuntu1",
                "containerd.io=1.2.13-2",
                "libip4tc2=1.8.4-3ubuntu2",
                "iptables=1.8.4-3ubuntu2",
                "docker-ce=5:19.03.11~3-0~ubuntu-focal",
            ]
        );
        let d = plan.last().unwrap();
        assert_eq!(d.repository, "docker");
        assert_eq!(d.architecture, "amd64");
        assert_eq!(
            d.filename,
            "pool/docker-ce_5:19.03.11~3-0~ubuntu-focal_amd64.deb"
        );
        assert_eq!(d.size, 1009);
        assert_eq!(d.sha256, "ab".repeat(32));
        assert!(!d.auto);
        assert_eq!(d.replaces_installed, None);
        let ish = &plan[0];
        assert_eq!(
            (ish.repository.as_str(), ish.architecture.as_str()),
            ("ubuntu", "all")
        );
        assert!(ish.auto);
        assert_eq!(plan[4].multi_arch, MultiArch::Same);
        // The same inputs give the same answer.
        assert_eq!(
            plan,
            run(
                &inst,
                &repos,
                "amd64",
                &[
                    "docker-ce=5:19.03.11~3-0~ubuntu-focal",
                    "containerd.io=1.2.13-2"
                ]
            )
            .unwrap()
        );
    }

    #[test]
    fn unpinned_takes_highest_version_across_epochs_and_tilde() {
        let repos = [repo(
            "r",
            "\
Package: e
Version: 2.0
Architecture: all

Package: e
Version: 1:1.0
Architecture: all

Package: t
Version: 1.0~rc1
Architecture: all

Package: t
Version: 1.0
Architecture: all

Package: t
Version: 1.0~rc2
Architecture: all
",
        )];
        let plan = run(&[], &repos, "amd64", &["e", "t"]).unwrap();
        assert_eq!(names(&plan), ["e=1:1.0", "t=1.0"]);
        let plan = run(&[], &repos, "amd64", &["t=1.0~rc2", "e=2.0"]).unwrap();
        assert_eq!(names(&plan), ["t=1.0~rc2", "e=2.0"]);
    }

    #[test]
    fn tie_goes_to_first_repository() {
        let one = "Package: p\nVersion: 1.0\nArchitecture: all\n";
        let repos = [repo("mirror-a", one), repo("mirror-b", one)];
        assert_eq!(
            run(&[], &repos, "amd64", &["p"]).unwrap()[0].repository,
            "mirror-a"
        );
        let repos = [repo("mirror-b", one), repo("mirror-a", one)];
        assert_eq!(
            run(&[], &repos, "amd64", &["p=1.0"]).unwrap()[0].repository,
            "mirror-b"
        );
    }

    #[test]
    fn tilde_constraint_and_versioned_provides() {
        let repos = [
            repo("docker", DOCKER),
            repo(
                "r",
                "\
Package: needs-runc
Version: 1
Architecture: all
Depends: runc (>= 1.0.0~rc9), libseccomp2

Package: needs-new-runc
Version: 1
Architecture: all
Depends: runc (>= 1.0.0)

Package: libseccomp2
Version: 2.4.3-1ubuntu1
Architecture: amd64
",
            ),
        ];
        // runc is virtual here: only containerd.io provides it (= 1.0.0~rc10).
        let plan = run(&[], &repos, "amd64", &["needs-runc"]).unwrap();
        assert_eq!(
            names(&plan),
            [
                "libseccomp2=2.4.3-1ubuntu1",
                "containerd.io=1.2.13-2",
                "needs-runc=1"
            ]
        );
        let e = run(&[], &repos, "amd64", &["needs-new-runc"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsatisfiable dependency: needs-new-runc -> runc (>= 1.0.0): no package provides `runc (>= 1.0.0)`"
        );
    }

    #[test]
    fn virtual_package_providers() {
        let mta = "\
Package: mailer
Version: 1
Architecture: all
Depends: mail-transport-agent

Package: postfix
Version: 3.5
Architecture: amd64
Provides: mail-transport-agent

Package: exim4-daemon-light
Version: 4.94
Architecture: amd64
Provides: mail-transport-agent
";
        let repos = [repo("r", mta)];
        let plan = run(&[], &repos, "amd64", &["mailer"]).unwrap();
        assert_eq!(names(&plan), ["exim4-daemon-light=4.94", "mailer=1"]);
        // An installed provider satisfies it.
        let inst = installed(
            "Package: postfix\nStatus: install ok installed\nVersion: 3.4\nArchitecture: amd64\nProvides: mail-transport-agent\n",
        );
        assert_eq!(
            names(&run(&inst, &repos, "amd64", &["mailer"]).unwrap()),
            ["mailer=1"]
        );
        // A request for the virtual name itself must pick one.
        let e = run(&[], &repos, "amd64", &["mail-transport-agent"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`mail-transport-agent` is a virtual package provided by exim4-daemon-light, postfix; request one of them by name"
        );
        let one = [repo(
            "r",
            "Package: postfix\nVersion: 3.5\nArchitecture: amd64\nProvides: mta\n",
        )];
        assert_eq!(
            names(&run(&[], &one, "amd64", &["mta"]).unwrap()),
            ["postfix=3.5"]
        );
    }

    #[test]
    fn alternatives_first_that_works_preferring_present() {
        let text = "\
Package: app
Version: 1
Architecture: all
Depends: missing-thing | iptables-nft | iptables-legacy, helper | helper-alt

Package: iptables-nft
Version: 1
Architecture: amd64

Package: iptables-legacy
Version: 1
Architecture: amd64

Package: helper
Version: 1
Architecture: all

Package: helper-alt
Version: 1
Architecture: all
";
        let repos = [repo("r", text)];
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["app"]).unwrap()),
            ["iptables-nft=1", "helper=1", "app=1"]
        );
        // Installed or already chosen alternatives are preferred.
        let inst = installed(
            "Package: iptables-legacy\nStatus: install ok installed\nVersion: 0.9\nArchitecture: amd64\n",
        );
        assert_eq!(
            names(&run(&inst, &repos, "amd64", &["app", "helper-alt"]).unwrap()),
            ["helper-alt=1", "app=1"]
        );
    }

    #[test]
    fn architecture_variants() {
        let text = "\
Package: tool
Version: 1.0
Architecture: amd64

Package: tool
Version: 2.0
Architecture: arm64

Package: armonly
Version: 1
Architecture: arm64

Package: armonly
Version: 1
Architecture: armhf
";
        let repos = [repo("r", text)];
        let plan = run(&[], &repos, "amd64", &["tool"]).unwrap();
        assert_eq!(names(&plan), ["tool=1.0"]);
        assert_eq!(plan[0].architecture, "amd64");
        let plan = run(&[], &repos, "arm64", &["tool"]).unwrap();
        assert_eq!(
            (names(&plan), plan[0].architecture.as_str()),
            (vec!["tool=2.0".to_string()], "arm64")
        );
        let e = run(&[], &repos, "amd64", &["armonly"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `armonly` is not available for amd64 in the configured repositories (it exists only for arm64, armhf)"
        );
        let e = run(&[], &repos, "amd64", &["tool=2.0"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `tool`: version 2.0 is not available for amd64 in the configured repositories; available: 1.0 (r); pin one of these"
        );
    }

    #[test]
    fn multi_arch_cross_architecture() {
        let text = "\
Package: app
Version: 1
Architecture: amd64
Depends: toolx, python3:any

Package: toolx
Version: 5
Architecture: amd64

Package: python3
Version: 3.9
Architecture: amd64
Multi-Arch: allowed
";
        let repos = [repo("r", text)];
        // An installed i386 toolx that is Multi-Arch: foreign satisfies an
        // amd64 dependency; python3:any is satisfied by an i386 python3 only
        // when it is Multi-Arch: allowed.
        let inst = installed(
            "\
Package: toolx
Status: install ok installed
Version: 4
Architecture: i386
Multi-Arch: foreign

Package: python3
Status: install ok installed
Version: 3.8
Architecture: i386
Multi-Arch: allowed
",
        );
        assert_eq!(
            names(&run(&inst, &repos, "amd64", &["app"]).unwrap()),
            ["app=1"]
        );
        // `:any` is not satisfied by a package that is not Multi-Arch: allowed.
        let strict = [repo("r", &text.replace("Multi-Arch: allowed\n", ""))];
        let no_allowed: Vec<BinaryPackage> = inst
            .iter()
            .cloned()
            .map(|mut p| {
                p.multi_arch = MultiArch::No;
                p
            })
            .collect();
        let e = run(&no_allowed, &strict, "amd64", &["app"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsatisfiable dependency: app -> python3:any: python3 3.9 (amd64, Multi-Arch: no) does not fit `python3:any` by architecture"
        );
        // Without Multi-Arch the native package is installed instead, and
        // replaces the foreign one.
        let inst = installed(
            "\
Package: toolx
Status: install ok installed
Version: 4
Architecture: i386

Package: python3
Status: install ok installed
Version: 3.8
Architecture: i386
Multi-Arch: foreign
",
        );
        let plan = run(&inst, &repos, "amd64", &["app"]).unwrap();
        assert_eq!(names(&plan), ["toolx=5", "python3=3.9", "app=1"]);
        assert_eq!(
            plan[0].replaces_installed,
            Some(Version::parse("4").unwrap())
        );
    }

    #[test]
    fn essential_installed_package_satisfies() {
        let inst = installed(BASE);
        let repos = [repo("ubuntu", UBUNTU)];
        // init-system-helpers pre-depends on dpkg (>= 1.17): the installed
        // essential dpkg holds it; the newer dpkg in the repository is not taken.
        let plan = run(&inst, &repos, "amd64", &["init-system-helpers"]).unwrap();
        assert_eq!(names(&plan), ["init-system-helpers=1.57"]);
        // A bare request for an installed package leaves it as it is.
        assert_eq!(run(&inst, &repos, "amd64", &["dpkg"]).unwrap(), []);
        // A pin of another version replaces it.
        let plan = run(&inst, &repos, "amd64", &["dpkg=1.19.7ubuntu3.2"]).unwrap();
        assert_eq!(
            plan[0].replaces_installed,
            Some(Version::parse("1.19.7ubuntu3").unwrap())
        );
        // A pin of the installed version is already done.
        assert_eq!(
            run(&inst, &repos, "amd64", &["dpkg=1.19.7ubuntu3"]).unwrap(),
            []
        );
    }

    #[test]
    fn conflicts_name_both_packages() {
        let repos = [repo("docker", DOCKER), repo("ubuntu", UBUNTU)];
        let inst = installed(&format!(
            "{BASE}\nPackage: docker.io\nStatus: install ok installed\nVersion: 19.03.8-0ubuntu1\nArchitecture: amd64\n"
        ));
        // Replaces: docker.io does not excuse Conflicts: docker.io.
        let e = run(
            &inst,
            &repos,
            "amd64",
            &["docker-ce=5:19.03.11~3-0~ubuntu-focal"],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "docker-ce 5:19.03.11~3-0~ubuntu-focal conflicts with installed docker.io 19.03.8-0ubuntu1 (Conflicts: docker.io)"
        );
        // Between two chosen packages, with the dependency chain.
        let e = run(
            &[],
            &repos,
            "amd64",
            &["containerd", "containerd.io=1.2.13-2"],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "containerd.io 1.2.13-2 conflicts with containerd 1.3.3-0ubuntu2 (Conflicts: containerd)"
        );
        // Breaks declared by an installed package against a chosen one.
        let inst = installed(
            "Package: old\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nBreaks: libip4tc2 (<< 2)\n",
        );
        let inst = [installed(BASE), inst].concat();
        let e = run(&inst, &repos, "amd64", &["iptables"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "installed old 1 breaks libip4tc2 1.8.4-3ubuntu2 (Breaks: libip4tc2 (<< 2)) (needed by iptables -> libip4tc2 (= 1.8.4-3ubuntu2))"
        );
        assert!(matches!(e, ResolveError::Conflict(ref c) if c.field == "Breaks"));
    }

    #[test]
    fn errors_name_the_request_they_come_from() {
        let repos = [repo("docker", DOCKER), repo("ubuntu", UBUNTU)];
        let inst = installed(&format!(
            "{BASE}\nPackage: docker.io\nStatus: install ok installed\nVersion: 19.03.8-0ubuntu1\nArchitecture: amd64\n"
        ));
        // A request that conflicts with the base itself.
        let e = run(
            &inst,
            &repos,
            "amd64",
            &["iptables", "docker-ce=5:19.03.11~3-0~ubuntu-focal"],
        )
        .unwrap_err();
        assert!(matches!(e, ResolveError::Conflict(_)), "{e}");
        assert_eq!(e.request_name(), Some("docker-ce"));
        // Two requests that conflict: the later one is at fault.
        let e = run(
            &[],
            &repos,
            "amd64",
            &["containerd", "containerd.io=1.2.13-2"],
        )
        .unwrap_err();
        assert_eq!(e.request_name(), Some("containerd.io"));
        // A conflict down a dependency chain: its request.
        let inst = [
            installed(BASE),
            installed(
                "Package: old\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nBreaks: libip4tc2 (<< 2)\n",
            ),
        ]
        .concat();
        let e = run(&inst, &repos, "amd64", &["containerd", "iptables"]).unwrap_err();
        assert_eq!(e.request_name(), Some("iptables"));
        // Unsatisfiable: the head of the chain.
        let text = "Package: top\nVersion: 1\nArchitecture: all\nDepends: mid\n\nPackage: mid\nVersion: 1\nArchitecture: all\nDepends: gone\n\nPackage: fine\nVersion: 1\nArchitecture: all\n";
        let r = [repo("r", text)];
        let e = run(&[], &r, "amd64", &["fine", "top"]).unwrap_err();
        assert!(matches!(e, ResolveError::Unsatisfiable { .. }), "{e}");
        assert_eq!(e.request_name(), Some("top"));
        // Not a request's fault.
        let e = ResolveError::PreDependsCycle {
            packages: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.request_name(), None);
    }

    #[test]
    fn conflicting_alternative_is_skipped() {
        let text = "\
Package: app
Version: 1
Architecture: all
Depends: bad | good

Package: bad
Version: 1
Architecture: all
Conflicts: base-thing

Package: good
Version: 1
Architecture: all
";
        let inst = installed(
            "Package: base-thing\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
        );
        let repos = [repo("r", text)];
        assert_eq!(
            names(&run(&inst, &repos, "amd64", &["app"]).unwrap()),
            ["good=1", "app=1"]
        );
    }

    #[test]
    fn missing_pin_lists_available_versions() {
        let repos = [repo("docker", DOCKER), repo("ubuntu", UBUNTU)];
        let e = run(&[], &repos, "amd64", &["containerd.io=1.2.6-3"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `containerd.io`: version 1.2.6-3 is not available for amd64 in the configured repositories; available: 1.2.13-2 (docker), 1.2.13-1 (docker); pin one of these"
        );
        let e = run(&[], &repos, "amd64", &["nosuch=1.0"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `nosuch`: version 1.0 is not available for amd64 in the configured repositories; no version of it is"
        );
        let e = run(&[], &repos, "amd64", &["nosuch"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `nosuch` is not available for amd64 in the configured repositories"
        );
    }

    #[test]
    fn unsatisfiable_dependency_names_the_chain() {
        let text = "\
Package: top
Version: 1
Architecture: all
Depends: mid

Package: mid
Version: 1
Architecture: amd64
Depends: leaf (>= 2) | other-leaf, libseccomp2

Package: leaf
Version: 1.0
Architecture: all

Package: leaf
Version: 1.5
Architecture: all

Package: libseccomp2
Version: 2.5.1-1
Architecture: arm64
";
        let repos = [repo("r", text)];
        let e = run(&[], &repos, "amd64", &["top"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsatisfiable dependency: top -> mid -> leaf (>= 2) | other-leaf: `leaf` is available only in version(s) 1.5, 1.0; `other-leaf` is not in any configured repository for amd64"
        );
        let repos = [repo("r", &text.replace("leaf (>= 2)", "leaf (>= 1.5)"))];
        let e = run(&[], &repos, "amd64", &["top"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsatisfiable dependency: top -> mid -> libseccomp2: `libseccomp2` is not in any configured repository for amd64 (it exists only for arm64)"
        );
        // A pinned version that a dependency cannot use.
        let text = text
            .replace("leaf (>= 2)", "leaf (>= 1.5)")
            .replace("Architecture: arm64", "Architecture: amd64");
        let repos = [repo("r", &text)];
        let e = run(&[], &repos, "amd64", &["leaf=1.0", "top"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsatisfiable dependency: top -> mid -> leaf (>= 1.5) | other-leaf: leaf 1.0 is requested; `other-leaf` is not in any configured repository for amd64"
        );
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["top"]).unwrap()),
            ["leaf=1.5", "libseccomp2=2.5.1-1", "mid=1", "top=1"]
        );
    }

    #[test]
    fn architecture_matching_follows_dpkg() {
        let pkg = |arch: &str, ma: MultiArch| {
            let mut p = crate::control::parse_packages(&format!(
                "Package: foo\nVersion: 1\nArchitecture: {arch}\n"
            ))
            .unwrap()
            .remove(0);
            p.multi_arch = ma;
            p
        };
        let rel = |text: &str| {
            crate::control::parse_relations("Depends", text, true).unwrap()[0][0].clone()
        };
        use MultiArch::*;
        // (package arch, Multi-Arch, relation, dependent arch, conflict-like, expected)
        let cases = [
            ("amd64", No, "foo", "amd64", false, true),
            ("amd64", No, "foo", "i386", false, false),
            ("amd64", No, "foo", "all", false, true),
            ("all", No, "foo", "i386", false, false),
            ("all", No, "foo", "amd64", false, true),
            ("i386", Foreign, "foo", "amd64", false, true),
            ("i386", Foreign, "foo:amd64", "amd64", false, false),
            ("i386", Allowed, "foo:any", "amd64", false, true),
            ("i386", Allowed, "foo", "amd64", false, false),
            ("i386", No, "foo:any", "amd64", false, false),
            ("amd64", Foreign, "foo:any", "amd64", false, false),
            ("amd64", No, "foo:native", "i386", false, true),
            ("i386", No, "foo:native", "i386", false, false),
            ("i386", No, "foo:i386", "amd64", false, true),
            ("i386", No, "foo", "amd64", true, true),
            ("i386", No, "foo:any", "amd64", true, true),
            ("i386", No, "foo:amd64", "amd64", true, false),
        ];
        for (arch, ma, r, dep_arch, conflict_like, want) in cases {
            assert_eq!(
                arch_ok(&pkg(arch, ma), &rel(r), dep_arch, "amd64", conflict_like),
                want,
                "{arch} {ma:?} {r} from {dep_arch} conflict={conflict_like}"
            );
        }
    }

    #[test]
    fn depends_cycle_is_broken_inside_the_cycle() {
        // b and c depend on each other (like libc6 and libgcc-s1); a needs b.
        let text = "\
Package: a
Version: 1
Architecture: all
Depends: b

Package: b
Version: 1
Architecture: all
Depends: c

Package: c
Version: 1
Architecture: all
Depends: b
";
        let repos = [repo("r", text)];
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["a"]).unwrap()),
            ["b=1", "c=1", "a=1"]
        );
    }

    #[test]
    fn pre_depends_strictly_first_in_a_cycle() {
        let text = "\
Package: x
Version: 1
Architecture: all
Depends: y

Package: y
Version: 1
Architecture: all
Pre-Depends: x
";
        let repos = [repo("r", text)];
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["y"]).unwrap()),
            ["x=1", "y=1"]
        );
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["x"]).unwrap()),
            ["x=1", "y=1"]
        );
        let repos = [repo("r", &text.replace("Depends: y", "Pre-Depends: y"))];
        let e = run(&[], &repos, "amd64", &["x"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Pre-Depends cycle among x 1, y 1: no installation order exists"
        );
    }

    #[test]
    fn upgrade_that_breaks_an_installed_package() {
        let inst = installed(
            "\
Package: kubelet
Status: install ok installed
Version: 1.18.0
Architecture: amd64
Depends: containerd (<< 1.4)

Package: containerd
Status: install ok installed
Version: 1.3.3-0ubuntu1
Architecture: amd64
",
        );
        let repos = [repo(
            "r",
            "Package: containerd\nVersion: 1.4.0-1\nArchitecture: amd64\n\nPackage: containerd\nVersion: 1.3.3-0ubuntu2\nArchitecture: amd64\n",
        )];
        let e = run(&inst, &repos, "amd64", &["containerd=1.4.0-1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "installing containerd 1.4.0-1 would break installed kubelet 1.18.0, which depends on `containerd (<< 1.4)`"
        );
        let plan = run(&inst, &repos, "amd64", &["containerd=1.3.3-0ubuntu2"]).unwrap();
        assert_eq!(names(&plan), ["containerd=1.3.3-0ubuntu2"]);
    }

    #[test]
    fn requests_and_index_problems() {
        assert_eq!(
            Request::parse("containerd.io=1.2.13-2").unwrap(),
            Request {
                name: "containerd.io".into(),
                version: Some(Version::parse("1.2.13-2").unwrap())
            }
        );
        assert_eq!(Request::parse("a=1:2.0").unwrap().to_string(), "a=1:2.0");
        assert_eq!(
            Request::parse("Bad Name").unwrap_err().to_string(),
            "invalid package request `Bad Name`: `Bad Name` is not a package name (letters, digits and `+-.`, starting with a letter or digit)"
        );
        assert_eq!(
            Request::parse("a=").unwrap_err().to_string(),
            "invalid package request `a=`: invalid version ``: version string is empty"
        );
        let repos = [repo("docker", DOCKER)];
        let e = run(
            &[],
            &repos,
            "amd64",
            &["docker-ce-cli", "docker-ce-cli=5:19.03.11~3-0~ubuntu-focal"],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "package `docker-ce-cli` is requested twice, as `docker-ce-cli` and as `docker-ce-cli=5:19.03.11~3-0~ubuntu-focal`; keep one"
        );
        let bare = Repository {
            id: "bare".into(),
            packages: crate::control::parse_packages("Package: p\nVersion: 1\nArchitecture: all\n")
                .unwrap(),
        };
        let e = run(&[], &[bare], "amd64", &["p"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package p 1 from repository bare has no `Filename` field; the Packages index is incomplete"
        );
    }

    #[test]
    fn arch_restrictions_and_profiles() {
        let text = "\
Package: app
Version: 1
Architecture: all
Depends: only-arm [arm64], not-amd [!amd64], everywhere [amd64 arm64], tests <!nocheck>, stage <stage1>

Package: everywhere
Version: 1
Architecture: all

Package: tests
Version: 1
Architecture: all
";
        let repos = [repo("r", text)];
        assert_eq!(
            names(&run(&[], &repos, "amd64", &["app"]).unwrap()),
            ["everywhere=1", "tests=1", "app=1"]
        );
        assert!(run(&[], &repos, "arm64", &["app"]).is_err());
    }
}
