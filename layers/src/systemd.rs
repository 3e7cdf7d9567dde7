//! `systemd`: units, drop-ins, and enablement as `systemctl --root=DIR enable` does it.

use schemars::JsonSchema;
use serde::Deserialize;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::tree::{FileTree, ImagePath, Node, Origin};
use crate::view::{Context, RootView, StatKind};

/// A unit file to install in `/etc/systemd/system/<name>`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Unit {
    /// Unit name with its suffix, e.g. `kubelet.service`.
    pub name: String,
    /// The unit text.
    pub content: Option<String>,
    /// A file relative to the recipe to take the unit text from.
    pub source: Option<String>,
}

/// A drop-in, `/etc/systemd/system/<unit>.d/<name>.conf`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Dropin {
    /// The unit it applies to, e.g. `docker.service`.
    pub unit: String,
    /// File name without `.conf`.
    pub name: String,
    /// The drop-in text.
    pub content: Option<String>,
    /// A file relative to the recipe to take the text from.
    pub source: Option<String>,
}

/// systemd settings of a layer.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Systemd {
    /// Units to enable, as `systemctl enable` does (links from `[Install]`).
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units to disable: the links their `[Install]` section makes are removed.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Units to mask (`/etc/systemd/system/<unit>` -> `/dev/null`).
    #[serde(default)]
    pub mask: Vec<String>,
    /// Unit files to install.
    #[serde(default)]
    pub unit: Vec<Unit>,
    /// Drop-ins to install.
    #[serde(default)]
    pub dropin: Vec<Dropin>,
}

impl Systemd {
    /// Render the unit files and drop-ins. `key` is this item's key path.
    pub(crate) fn render_units(&self, key: &str, ctx: &Context) -> Result<FileTree> {
        let mut tree = FileTree::new();
        for (i, u) in self.unit.iter().enumerate() {
            let k = format!("{key}.unit[{i}]");
            UnitName::parse(&u.name).map_err(|m| name_error(format!("{k}.name"), m))?;
            let text = text_of(&k, u.content.as_deref(), u.source.as_deref(), ctx)?;
            let p = image_path(&k, &format!("{CONFIG_DIR}/{}", u.name))?;
            tree.insert(p, Node::file(text, Origin::new("systemd", &k)))?;
        }
        for (i, d) in self.dropin.iter().enumerate() {
            let k = format!("{key}.dropin[{i}]");
            UnitName::parse(&d.unit).map_err(|m| name_error(format!("{k}.unit"), m))?;
            check_dropin_name(&format!("{k}.name"), &d.name)?;
            let text = text_of(&k, d.content.as_deref(), d.source.as_deref(), ctx)?;
            let p = image_path(&k, &format!("{CONFIG_DIR}/{}.d/{}.conf", d.unit, d.name))?;
            tree.insert(p, Node::file(text, Origin::new("systemd", &k)))?;
        }
        Ok(tree)
    }

    /// Render enable/disable/mask against `view` (the image so far including
    /// this layer's other entries). Disabling a link that exists below
    /// yields a whiteout. A unit to enable or disable that `view` lacks is
    /// left alone when `elsewhere` says so (see [`Elsewhere`]).
    pub(crate) fn render_enablement(
        &self,
        key: &str,
        view: &dyn RootView,
        elsewhere: &dyn Elsewhere,
    ) -> Result<FileTree> {
        self.check_lists(key)?;
        let mut tree = FileTree::new();
        self.enable_links(key, view, elsewhere, &mut tree)?;
        self.disable_links(key, view, elsewhere, &mut tree)?;
        self.mask_links(key, view, &mut tree)?;
        Ok(tree)
    }

    /// The names in enable, disable and mask are unit names, and no unit
    /// is both enabled and disabled or masked.
    fn check_lists(&self, key: &str) -> Result<()> {
        let lists = [
            ("enable", &self.enable),
            ("disable", &self.disable),
            ("mask", &self.mask),
        ];
        for (field, list) in lists {
            for (i, n) in list.iter().enumerate() {
                UnitName::parse(n).map_err(|m| name_error(format!("{key}.{field}[{i}]"), m))?;
            }
        }
        for (j, m) in self.mask.iter().enumerate() {
            if self.enable.contains(m) {
                return Err(Error::invalid_hint(
                    format!("{key}.mask[{j}]"),
                    format!("{m} is both enabled and masked"),
                    "a masked unit cannot start; drop it from enable or from mask",
                ));
            }
        }
        for (j, d) in self.disable.iter().enumerate() {
            if self.enable.contains(d) {
                return Err(Error::invalid_hint(
                    format!("{key}.disable[{j}]"),
                    format!("{d} is both enabled and disabled"),
                    "drop it from enable or from disable",
                ));
            }
        }
        Ok(())
    }

    /// Enable: every link, checked against what the view already holds.
    fn enable_links(
        &self,
        key: &str,
        view: &dyn RootView,
        elsewhere: &dyn Elsewhere,
        tree: &mut FileTree,
    ) -> Result<()> {
        let mut made: BTreeMap<ImagePath, (String, String)> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, name) in self.enable.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                continue;
            }
            let k = format!("{key}.enable[{i}]");
            if left_elsewhere(view, name, &k, elsewhere) {
                continue;
            }
            let links = install_links(view, name, &k, true)?;
            for l in links {
                if let Some((other, target)) = made.get(&l.path) {
                    if *target != l.target {
                        return Err(Error::invalid_hint(
                            &k,
                            format!(
                                "{} would link to {}, but {other} links it to {target}",
                                l.path, l.target
                            ),
                            "two enabled units claim the same name; enable only one of them",
                        ));
                    }
                    continue;
                }
                if let Some(node) = link_node(view, &l, &k)? {
                    tree.insert(l.path.clone(), node)?;
                }
                made.insert(l.path, (k.clone(), l.target));
            }
        }
        Ok(())
    }

    /// Disable: whiteouts for the links that exist.
    fn disable_links(
        &self,
        key: &str,
        view: &dyn RootView,
        elsewhere: &dyn Elsewhere,
        tree: &mut FileTree,
    ) -> Result<()> {
        for (i, name) in self.disable.iter().enumerate() {
            let k = format!("{key}.disable[{i}]");
            if left_elsewhere(view, name, &k, elsewhere) {
                continue;
            }
            let links = install_links(view, name, &k, false)?;
            for l in links {
                let real = view.resolve_parent(&l.path);
                if matches!(view.stat(&real).map(|s| s.kind), Some(StatKind::Symlink(_)))
                    && tree.get(&l.path).is_none()
                {
                    tree.insert(l.path, Node::whiteout(Origin::new("systemd", &k)))?;
                }
            }
        }
        Ok(())
    }

    /// Mask: a link to /dev/null in /etc/systemd/system.
    fn mask_links(&self, key: &str, view: &dyn RootView, tree: &mut FileTree) -> Result<()> {
        for (i, name) in self.mask.iter().enumerate() {
            let k = format!("{key}.mask[{i}]");
            let path = image_path(&k, &format!("{CONFIG_DIR}/{name}"))?;
            match view.stat(&view.resolve_parent(&path)).map(|s| s.kind) {
            None => {}
            Some(StatKind::Symlink(t)) if t == "/dev/null" => continue,
            Some(StatKind::Symlink(t)) => {
                return Err(Error::invalid_hint(
                    &k,
                    format!("{path} already exists and is a link to {t}"),
                    "it is an alias of another unit; mask that unit, or remove the link first (remove = [...])",
                ))
            }
            Some(_) => {
                return Err(Error::invalid_hint(
                    &k,
                    format!("{path} already exists and is not a link; masking would replace it"),
                    "remove the unit file (remove = [...]) or do not mask the unit",
                ))
            }
        }
            if tree.get(&path).is_some() {
                continue;
            }
            tree.insert(path, Node::symlink("/dev/null", Origin::new("systemd", &k)))?;
        }
        Ok(())
    }
}

/// Where the units an image lacks may come from when the image is
/// rendered without its packages (an offline check): packages that are not
/// installed, whose unit files a lock may record.
pub trait Elsewhere {
    /// Whether the enablement (at `key`) of `unit`, which the image lacks,
    /// is left to the packages not installed: true when they ship it, or
    /// when what they ship is not known (then this says so).
    fn leaves(&self, unit: &str, key: &str) -> bool;
}

/// Nothing comes from elsewhere: every unit must be in the image.
pub struct Nowhere;

impl Elsewhere for Nowhere {
    fn leaves(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// Whether `name` (at `key`) is missing from `view` and `elsewhere` leaves
/// its enablement to the packages not installed.
fn left_elsewhere(view: &dyn RootView, name: &str, key: &str, elsewhere: &dyn Elsewhere) -> bool {
    matches!(discover(view, name), Err(Lookup::Missing)) && elsewhere.leaves(name, key)
}

/// The unit name of a unit file a package ships at `path`: its file name,
/// when `path` is in a directory of the system unit search path that
/// packages ship units in and the name is a unit name.
pub fn unit_file_name(path: &str) -> Option<&str> {
    let (dir, name) = path.rsplit_once('/')?;
    let dir = if dir.is_empty() { "/" } else { dir };
    (SEARCH_PATH.contains(&dir) && !GENERATED.contains(&dir) && UnitName::parse(name).is_ok())
        .then_some(name)
}

/// The unit file names systemctl looks `unit` up by: the name, and for an
/// instance (`getty@tty1.service`) its template (`getty@.service`). Empty
/// when `unit` is not a unit name.
pub fn unit_file_candidates(unit: &str) -> Vec<String> {
    match UnitName::parse(unit) {
        Ok(un) if un.is_instance() => vec![unit.to_string(), un.template()],
        Ok(_) => vec![unit.to_string()],
        Err(_) => Vec::new(),
    }
}

/// Where recipe units, drop-ins, masks and enablement links go.
pub(crate) const CONFIG_DIR: &str = "/etc/systemd/system";

/// The system unit search path in the order systemd 252 (`systemctl
/// --root`) looks units up: the first directory holding a name wins.
pub(crate) const SEARCH_PATH: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Directories whose units are generated or transient: never enabled.
const GENERATED: [&str; 4] = [
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/run/systemd/generator",
    "/run/systemd/generator.late",
];

/// Directories where a symlinked unit is an alias systemctl refuses to enable.
const CONFIG_DIRS: [&str; 2] = ["/etc/systemd/system", "/run/systemd/system"];

const SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "path",
    "slice",
    "scope",
    "swap",
    "device",
];

/// Why a string is not a unit name; each variant is one rule systemd has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnitNameError {
    /// Empty, or longer than 255 bytes.
    #[error("{0:?} is not a unit name (1 to 255 characters)")]
    Length(String),
    /// A character systemd does not allow in unit names.
    #[error(
        "{name:?} is not a unit name: {character:?} is not allowed (use letters, digits and :_.\\@-)"
    )]
    Character {
        /// The name.
        name: String,
        /// The first character refused.
        character: char,
    },
    /// No known unit type at the end.
    #[error("{0:?} is not a unit name: it must end in a unit type ({types})", types = unit_types())]
    NoType(String),
    /// More than one `@`.
    #[error("{0:?} is not a unit name: more than one @")]
    ManyAts(String),
    /// Nothing before `@` or the type.
    #[error("{0:?} is not a unit name: nothing before the type")]
    NoPrefix(String),
}

/// The unit types, as suffixes: `.service, .socket, ...`.
fn unit_types() -> String {
    SUFFIXES.map(|s| format!(".{s}")).join(", ")
}

/// A checked unit name: `prefix[@instance].suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnitName {
    /// Before `@` (or the whole name without suffix).
    pub prefix: String,
    /// `None` for a plain unit, `Some("")` for a template, `Some(i)` for an instance.
    pub instance: Option<String>,
    /// The type, e.g. `service`.
    pub suffix: String,
}

impl UnitName {
    /// Check a unit name as systemd does (known type suffix, allowed
    /// characters, at most one `@`).
    pub fn parse(name: &str) -> std::result::Result<UnitName, UnitNameError> {
        if name.is_empty() || name.len() > 255 {
            return Err(UnitNameError::Length(name.to_string()));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ":_.\\@-".contains(*c)))
        {
            return Err(UnitNameError::Character {
                name: name.to_string(),
                character: c,
            });
        }
        let (stem, suffix) = match name.rsplit_once('.') {
            Some((s, x)) if SUFFIXES.contains(&x) => (s, x),
            _ => return Err(UnitNameError::NoType(name.to_string())),
        };
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => {
                if i.contains('@') {
                    return Err(UnitNameError::ManyAts(name.to_string()));
                }
                (p, Some(i.to_string()))
            }
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(UnitNameError::NoPrefix(name.to_string()));
        }
        Ok(UnitName {
            prefix: prefix.to_string(),
            instance,
            suffix: suffix.to_string(),
        })
    }

    /// Whether this is a template (`foo@.service`).
    pub(crate) fn is_template(&self) -> bool {
        self.instance.as_deref() == Some("")
    }

    /// Whether this is an instance (`foo@bar.service`).
    pub(crate) fn is_instance(&self) -> bool {
        matches!(self.instance.as_deref(), Some(i) if !i.is_empty())
    }

    /// The template of an instance (`foo@.service`).
    pub fn template(&self) -> String {
        format!("{}@.{}", self.prefix, self.suffix)
    }

    /// This template with an instance (`foo@i.service`).
    pub(crate) fn with_instance(&self, instance: &str) -> String {
        format!("{}@{instance}.{}", self.prefix, self.suffix)
    }
}

impl std::fmt::Display for UnitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance {
            Some(i) => write!(f, "{}@{i}.{}", self.prefix, self.suffix),
            None => write!(f, "{}.{}", self.prefix, self.suffix),
        }
    }
}

fn name_error(key: String, message: UnitNameError) -> Error {
    Error::invalid_hint(
        key,
        message.to_string(),
        "write the full unit name with its type, e.g. \"docker.service\" or \"getty@tty1.service\"",
    )
}

fn image_path(key: &str, s: &str) -> Result<ImagePath> {
    ImagePath::new(s).map_err(|m| Error::invalid(key, m.to_string()))
}

fn check_dropin_name(key: &str, name: &str) -> Result<()> {
    if name.ends_with(".conf") {
        return Err(Error::invalid_hint(
            key,
            format!("{name:?} ends in .conf, which is added for you"),
            format!("write name = {:?}", name.trim_end_matches(".conf")),
        ));
    }
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@:-".contains(&b));
    if !ok {
        return Err(Error::invalid_hint(
            key,
            format!("{name:?} is not a usable drop-in name"),
            "use letters, digits and ._@:-, e.g. \"10-cgroup\"",
        ));
    }
    Ok(())
}

/// The text of a unit or drop-in: exactly one of `content`/`source`, ending
/// in a newline.
fn text_of(
    key: &str,
    content: Option<&str>,
    source: Option<&str>,
    ctx: &Context,
) -> Result<String> {
    let mut text = match (content, source) {
        (Some(c), None) => c.to_string(),
        (None, Some(rel)) => {
            let k = format!("{key}.source");
            let bytes = ctx.inputs.read(rel).map_err(|source| Error::Input {
                key: k.clone(),
                path: rel.to_string(),
                source,
            })?;
            String::from_utf8(bytes).map_err(|_| {
                Error::invalid(k, format!("{rel} is not UTF-8 text; unit files are text"))
            })?
        }
        (Some(_), Some(_)) => {
            return Err(Error::invalid_hint(
                key,
                "both content and source are set",
                "give the text inline with content, or name a file with source, not both",
            ))
        }
        (None, None) => {
            return Err(Error::invalid_hint(
                key,
                "neither content nor source is set",
                "add content = \"\"\"...\"\"\" or source = \"path/in/recipe/folder\"",
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(Error::invalid(key, "the unit text is empty"));
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// The `[Install]` settings of a unit, after its drop-ins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Install {
    /// `WantedBy=`.
    pub wanted_by: Vec<String>,
    /// `RequiredBy=`.
    pub required_by: Vec<String>,
    /// `Alias=`.
    pub alias: Vec<String>,
    /// `Also=`.
    pub also: Vec<String>,
    /// `DefaultInstance=`.
    pub default_instance: Option<String>,
}

impl Install {
    /// Whether `systemctl enable` would find anything to do.
    pub(crate) fn has_rules(&self) -> bool {
        !(self.wanted_by.is_empty()
            && self.required_by.is_empty()
            && self.alias.is_empty()
            && self.also.is_empty())
    }

    /// Apply the `[Install]` section of one unit file or drop-in, the way
    /// systemd's parser reads it: `#`/`;` comments, `\` line continuations,
    /// space-separated lists, an empty assignment resets a list. Other
    /// sections and keys are skipped (`UpheldBy=` is unknown to systemd 252).
    pub fn apply(&mut self, text: &str) {
        let mut section = String::new();
        let mut pending = String::new();
        let mut continuing = false;
        for raw in text.lines() {
            let line = raw.trim();
            if continuing && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(body) = line.strip_suffix('\\') {
                pending.push_str(body);
                pending.push(' ');
                continuing = true;
                continue;
            }
            pending.push_str(line);
            continuing = false;
            let full = std::mem::take(&mut pending);
            let l = full.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if l.starts_with('[') {
                if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    section = s.to_string();
                }
                continue;
            }
            if section != "Install" {
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let list = match k {
                "WantedBy" => &mut self.wanted_by,
                "RequiredBy" => &mut self.required_by,
                "Alias" => &mut self.alias,
                "Also" => &mut self.also,
                "DefaultInstance" => {
                    self.default_instance = (!v.is_empty()).then(|| v.to_string());
                    continue;
                }
                _ => continue,
            };
            if v.is_empty() {
                list.clear();
            } else {
                list.extend(v.split_whitespace().map(str::to_string));
            }
        }
    }
}

/// A unit as `systemctl enable` finds it.
#[derive(Clone, Debug)]
struct Found {
    /// The name the unit is known by (an alias followed inside the search
    /// path changes it to the target's name).
    name: String,
    /// Where links point: the search-path spelling of the file, or the
    /// target of a linked unit outside the search path.
    path: String,
    /// Whether `path` lies outside the search path (a linked unit).
    linked: bool,
    install: Install,
}

/// Why a unit could not be used.
enum Lookup {
    Missing,
    Masked(String),
    Refused(String),
}

fn stat_at(view: &dyn RootView, path: &str) -> Option<StatKind> {
    let p = ImagePath::new(path).ok()?;
    view.stat(&view.resolve_parent(&p)).map(|s| s.kind)
}

/// Normalise `target` of a link found in `dir` to an absolute path.
fn absolute_target(dir: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn in_search_path(view: &dyn RootView, dir: &str) -> bool {
    if SEARCH_PATH.contains(&dir) {
        return true;
    }
    let Ok(d) = ImagePath::new(dir) else {
        return false;
    };
    let real = view.resolve(&d);
    SEARCH_PATH
        .iter()
        .filter_map(|s| ImagePath::new(s).ok())
        .any(|s| view.resolve(&s) == real && view.stat(&real).is_some())
}

fn is_null(view: &dyn RootView, abs: &str) -> bool {
    if abs == "/dev/null" {
        return true;
    }
    ImagePath::new(abs)
        .map(|p| view.resolve(&p).as_str() == "/dev/null")
        .unwrap_or(false)
}

/// Find a unit the way systemctl does: every directory of the search path
/// for the name, then (for an instance) for its template; aliases inside the
/// search path are followed by name, links outside it are "linked" units.
fn discover(view: &dyn RootView, name: &str) -> std::result::Result<Found, Lookup> {
    let mut name = name.to_string();
    for _ in 0..8 {
        let un = UnitName::parse(&name).map_err(|_| Lookup::Missing)?;
        let mut candidates = vec![name.clone()];
        if un.is_instance() {
            candidates.push(un.template());
        }
        let hit = candidates.iter().find_map(|file| {
            SEARCH_PATH.iter().find_map(|dir| {
                let p = format!("{dir}/{file}");
                stat_at(view, &p).map(|k| (dir.to_string(), file.clone(), p, k))
            })
        });
        let Some((dir, file, path, kind)) = hit else {
            return Err(Lookup::Missing);
        };
        if GENERATED.contains(&dir.as_str()) {
            return Err(Lookup::Refused(format!("{path} is transient or generated")));
        }
        let target = match kind {
            StatKind::Symlink(t) => t,
            StatKind::File(_) => {
                return Ok(Found {
                    install: load_install(view, &path, &name, &un),
                    name,
                    path,
                    linked: false,
                })
            }
            _ => return Err(Lookup::Refused(format!("{path} is not a regular file"))),
        };
        let abs = absolute_target(&dir, &target);
        if is_null(view, &abs) {
            return Err(Lookup::Masked(path));
        }
        if !in_search_path(view, parent_of(&abs)) {
            // A linked unit: loaded from the link target.
            return Ok(Found {
                install: load_install(view, &abs, &name, &un),
                name,
                path: abs,
                linked: true,
            });
        }
        if CONFIG_DIRS.contains(&dir.as_str()) {
            return Err(Lookup::Refused(format!(
                "{path} is a link to {target}; systemctl refuses to enable a linked unit file in {dir}"
            )));
        }
        let base = abs.rsplit('/').next().unwrap_or_default().to_string();
        let bun = UnitName::parse(&base)
            .map_err(|_| Lookup::Refused(format!("{path} links to {target}, not a unit name")))?;
        if base == file {
            // Same name: the file itself sits at the target.
            return Ok(Found {
                install: load_install(view, &abs, &name, &un),
                name,
                path: abs,
                linked: false,
            });
        }
        // An alias: continue with the target's name.
        name = if un.is_instance() && bun.is_template() {
            bun.with_instance(un.instance.as_deref().unwrap_or_default())
        } else {
            base
        };
    }
    Err(Lookup::Refused(format!(
        "too many levels of aliases for {name}"
    )))
}

/// Read `[Install]` from the unit file at `path` and its drop-ins
/// (`<name>.d/*.conf` and, for an instance, `<template>.d/*.conf` in every
/// search-path directory; the first directory wins for a file name; applied
/// in file-name order).
fn load_install(view: &dyn RootView, path: &str, name: &str, un: &UnitName) -> Install {
    let mut install = Install::default();
    if let Some(text) = view.read_text(path) {
        install.apply(&text);
    }
    let mut dirs = vec![format!("{name}.d")];
    if un.is_instance() {
        dirs.push(format!("{}.d", un.template()));
    }
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for d in &dirs {
        for s in SEARCH_PATH {
            let dir = format!("{s}/{d}");
            for f in view.list(&dir) {
                if f.ends_with(".conf") {
                    files.entry(f.clone()).or_insert(format!("{dir}/{f}"));
                }
            }
        }
    }
    for p in files.values() {
        if let Some(text) = view.read_text(p) {
            install.apply(&text);
        }
    }
    install
}

/// One link `systemctl enable` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    path: ImagePath,
    target: String,
    /// Whether an existing link to something else is replaced (wants and
    /// requires links) or is an error (aliases).
    force: bool,
}

/// Expand the specifiers systemd allows in `[Install]` that make sense
/// offline.
fn printf(key: &str, unit: &str, value: &str) -> Result<String> {
    let un = UnitName::parse(unit).map_err(|m| Error::invalid(key, m.to_string()))?;
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('n') => out.push_str(unit),
            Some('N') => out.push_str(unit.rsplit_once('.').map(|x| x.0).unwrap_or(unit)),
            Some('p') => out.push_str(&un.prefix),
            Some('i') => out.push_str(un.instance.as_deref().unwrap_or_default()),
            Some('j') => out.push_str(un.prefix.rsplit('-').next().unwrap_or_default()),
            other => {
                return Err(Error::invalid_hint(
                    key,
                    format!(
                        "{unit}: the [Install] value {value:?} uses the specifier %{}, which has no meaning when enabling offline",
                        other.map(String::from).unwrap_or_default()
                    ),
                    "use %n, %N, %p, %i, %j or %% in [Install], or write the name out",
                ))
            }
        }
    }
    Ok(out)
}

/// The links enabling `name` makes, following `Also=`. With `strict`
/// (enable), a missing unit, a masked one, one without `[Install]` rules
/// and a template without an instance for a plain target are errors; for
/// disable a missing unit is an error, the rest yields no links.
fn install_links(view: &dyn RootView, name: &str, key: &str, strict: bool) -> Result<Vec<Link>> {
    let mut out = Vec::new();
    let mut queue = vec![(name.to_string(), true)];
    let mut done = BTreeSet::new();
    while let Some((n, primary)) = queue.pop() {
        if !done.insert(n.clone()) {
            continue;
        }
        let found = match discover(view, &n) {
            Ok(f) => f,
            Err(_) if !primary => continue, // systemctl ignores a missing Also= unit
            Err(Lookup::Masked(_)) if !strict => continue,
            Err(e) => return Err(lookup_error(key, &n, e)),
        };
        let inst = &found.install;
        if primary && !inst.has_rules() {
            if !strict {
                continue;
            }
            return Err(Error::invalid_hint(
                key,
                format!(
                    "{n} ({}) has no installation config: no WantedBy=, RequiredBy=, Alias= or Also= in [Install]",
                    found.path
                ),
                "add an [Install] section with a drop-in (systemd.dropin), or link it from a target's .wants with a symlink item",
            ));
        }
        found_links(key, &n, &found, strict, &mut out)?;
        for a in inst.also.iter().rev() {
            let dst = printf(key, &found.name, a)?;
            queue.push((dst, false));
        }
    }
    Ok(out)
}

/// The error for unit `n` that `discover` did not find (or refused).
fn lookup_error(key: &str, n: &str, e: Lookup) -> Error {
    match e {
        Lookup::Missing => {
            let mut dirs: Vec<&str> = SEARCH_PATH
                .iter()
                .copied()
                .filter(|d| !GENERATED.contains(d))
                .collect();
            dirs.dedup();
            Error::invalid_hint(
                key,
                format!(
                    "unit {n} does not exist in the image (searched {})",
                    dirs.join(", ")
                ),
                "add the package that ships it in an earlier layer, or define it with systemd.unit",
            )
        }
        Lookup::Masked(p) => Error::invalid_hint(
            key,
            format!("unit {n} is masked ({p} links to /dev/null)"),
            "remove the mask (remove = [...]) before enabling it",
        ),
        Lookup::Refused(m) => Error::invalid_hint(
            key,
            format!("cannot enable {n}: {m}"),
            "enable the unit by its real name, or install it as a file with systemd.unit",
        ),
    }
}

/// The links that enable the unit `found` (asked for as `n`) makes by its
/// own `[Install]` rules: its name when linked from outside the search
/// path, its aliases, and its place in the `.wants`/`.requires` of the
/// units that want or require it.
fn found_links(key: &str, n: &str, found: &Found, strict: bool, out: &mut Vec<Link>) -> Result<()> {
    let inst = &found.install;
    let un = UnitName::parse(&found.name).map_err(|m| Error::invalid(key, m.to_string()))?;
    let mut link = |path: String, force: bool| -> Result<()> {
        out.push(Link {
            path: image_path(key, &path)?,
            target: found.path.clone(),
            force,
        });
        Ok(())
    };
    if found.linked {
        link(format!("{CONFIG_DIR}/{}", found.name), false)?;
    }
    for a in &inst.alias {
        let dst = printf(key, &found.name, a)?;
        let dun = UnitName::parse(&dst)
            .map_err(|m| Error::invalid(key, format!("{n}: Alias={dst} is not valid: {m}")))?;
        let bad = dun.suffix != un.suffix
            || (dun.instance.is_some() && un.instance.is_none())
            || (un.is_template() && !dun.is_template())
            || (dun.instance.is_none() && un.instance.is_some());
        if bad {
            if !strict {
                continue;
            }
            return Err(Error::invalid(
                key,
                format!("{n}: cannot alias {} as {dst} ({})", found.name, found.path),
            ));
        }
        let dst = if un.is_instance() && dun.is_template() {
            dun.with_instance(un.instance.as_deref().unwrap_or_default())
        } else {
            dst
        };
        link(format!("{CONFIG_DIR}/{dst}"), false)?;
    }
    let member = match (&inst.default_instance, un.is_template()) {
        (Some(i), true) => un.with_instance(i),
        _ => found.name.clone(),
    };
    let mun = UnitName::parse(&member).map_err(|m| Error::invalid(key, m.to_string()))?;
    for (list, dir) in [(&inst.wanted_by, "wants"), (&inst.required_by, "requires")] {
        for w in list {
            let dst = printf(key, &found.name, w)?;
            let dun = UnitName::parse(&dst).map_err(|m| {
                Error::invalid(
                    key,
                    format!("{n}: {dst} in [Install] is not a unit name: {m}"),
                )
            })?;
            if mun.is_template() && dun.instance.is_none() {
                if !strict {
                    continue;
                }
                return Err(Error::invalid_hint(
                    key,
                    format!(
                        "cannot enable the template {member}: its target {dst} is not a template"
                    ),
                    format!(
                        "enable an instance instead, e.g. \"{}\"",
                        mun.with_instance("name")
                    ),
                ));
            }
            link(format!("{CONFIG_DIR}/{dst}.{dir}/{member}"), true)?;
        }
    }
    Ok(())
}

/// The node for a link, given what the view holds at its path: `None` when
/// an equivalent link is already there.
fn link_node(view: &dyn RootView, l: &Link, key: &str) -> Result<Option<Node>> {
    let real = view.resolve_parent(&l.path);
    match view.stat(&real).map(|s| s.kind) {
        None => {}
        Some(StatKind::Symlink(t)) => {
            if t == l.target {
                return Ok(None);
            }
            let same = ImagePath::new(&l.target)
                .map(|p| view.resolve(&p) == view.resolve(&real))
                .unwrap_or(false);
            if same {
                return Ok(None);
            }
            if !l.force {
                return Err(Error::invalid_hint(
                    key,
                    format!("{} already exists and is a link to {t}, not to {}", l.path, l.target),
                    "another unit holds this alias; disable that unit in this layer or do not enable both",
                ));
            }
        }
        Some(_) => {
            return Err(Error::invalid(
                key,
                format!("{} already exists and is not a link", l.path),
            ))
        }
    }
    Ok(Some(Node::symlink(
        l.target.clone(),
        Origin::new("systemd", key),
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The expected links below were measured with `systemctl --root=DIR
    //! enable` of systemd 252 (Debian 12) on scratch roots built like the
    //! views here; each test names the behaviour it mirrors.

    use super::*;
    use crate::tree::NodeKind;
    use crate::view::{MemInputs, MemView, Overlay};

    const SVC: &str = "[Service]\nExecStart=/bin/true\n";

    fn unit(install: &str) -> String {
        format!("{SVC}[Install]\n{install}\n")
    }

    /// A merged-/usr root: `/lib`, `/bin`, `/sbin` link into `/usr`.
    fn merged() -> MemView {
        MemView::new()
            .symlink("/lib", "usr/lib")
            .symlink("/bin", "usr/bin")
            .symlink("/sbin", "usr/sbin")
            .dir("/usr/lib/systemd/system")
            .dir("/etc/systemd/system")
    }

    fn enable(names: &[&str]) -> Systemd {
        Systemd {
            enable: names.iter().map(|s| s.to_string()).collect(),
            ..Systemd::default()
        }
    }

    /// Every entry as `path -> target`, `path (whiteout)` or `path (other)`.
    fn show(t: &FileTree) -> Vec<String> {
        t.iter()
            .map(|(p, n)| match &n.kind {
                NodeKind::Symlink(s) => format!("{p} -> {s}"),
                NodeKind::Whiteout => format!("{p} (whiteout)"),
                k => format!("{p} ({k:?})"),
            })
            .collect()
    }

    fn links(view: &MemView, s: &Systemd) -> Vec<String> {
        show(&s.render_enablement("systemd", view, &Nowhere).unwrap())
    }

    fn err(view: &dyn RootView, s: &Systemd) -> Error {
        s.render_enablement("systemd", view, &Nowhere).unwrap_err()
    }

    #[test]
    fn install_keys_and_merged_usr_spelling() {
        // systemctl: the unit is found through /lib/systemd/system (listed
        // before /usr/lib/systemd/system), WantedBy -> .wants, RequiredBy
        // -> .requires, Alias -> /etc/systemd/system/<alias>, Also= enables
        // d.service too, UpheldBy= is an unknown key in systemd 252.
        let v = merged()
            .file(
                "/usr/lib/systemd/system/a.service",
                unit("WantedBy=multi-user.target\nRequiredBy=b.target\nUpheldBy=c.target\nAlias=aa.service\nAlso=d.service"),
            )
            .file("/usr/lib/systemd/system/d.service", unit("WantedBy=default.target"));
        let t = enable(&["a.service"])
            .render_enablement("systemd", &v, &Nowhere)
            .unwrap();
        assert_eq!(
            show(&t),
            [
                "/etc/systemd/system/aa.service -> /lib/systemd/system/a.service",
                "/etc/systemd/system/b.target.requires/a.service -> /lib/systemd/system/a.service",
                "/etc/systemd/system/default.target.wants/d.service -> /lib/systemd/system/d.service",
                "/etc/systemd/system/multi-user.target.wants/a.service -> /lib/systemd/system/a.service",
            ]
        );
        for (_, n) in t.iter() {
            assert_eq!(n.origin, Origin::new("systemd", "systemd.enable[0]"));
        }
    }

    #[test]
    fn search_path_precedence() {
        // systemctl: /etc/systemd/system before /usr/local/lib before /lib
        // before /usr/lib (split /usr, no links); the link points where the
        // unit was found.
        let v = MemView::new()
            .file(
                "/lib/systemd/system/x.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/usr/lib/systemd/system/x.service",
                unit("WantedBy=graphical.target"),
            )
            .file(
                "/usr/lib/systemd/system/y.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/usr/local/lib/systemd/system/y.service",
                unit("WantedBy=local.target"),
            )
            .file(
                "/etc/systemd/system/z.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/lib/systemd/system/z.service",
                unit("WantedBy=other.target"),
            );
        assert_eq!(
            links(&v, &enable(&["x.service", "y.service", "z.service"])),
            [
                "/etc/systemd/system/local.target.wants/y.service -> /usr/local/lib/systemd/system/y.service",
                "/etc/systemd/system/multi-user.target.wants/x.service -> /lib/systemd/system/x.service",
                "/etc/systemd/system/multi-user.target.wants/z.service -> /etc/systemd/system/z.service",
            ]
        );
        // Only /usr/lib present: found there.
        let v = MemView::new().file(
            "/usr/lib/systemd/system/u.service",
            unit("WantedBy=multi-user.target"),
        );
        assert_eq!(
            links(&v, &enable(&["u.service"])),
            ["/etc/systemd/system/multi-user.target.wants/u.service -> /usr/lib/systemd/system/u.service"]
        );
    }

    #[test]
    fn generated_units_are_refused() {
        // systemctl: "unit ... is transient or generated".
        let v = MemView::new().file(
            "/run/systemd/generator/g.service",
            unit("WantedBy=multi-user.target"),
        );
        let e = err(&v, &enable(&["g.service"]));
        assert_eq!(e.key(), "systemd.enable[0]");
        assert!(e.to_string().contains("transient or generated"), "{e}");
    }

    #[test]
    fn templates_default_instance_and_instances() {
        // systemctl: a template with DefaultInstance= is enabled as that
        // instance; an instance given by name uses the template's file; a
        // template alias is kept as a template, or gets the instance.
        let v = merged()
            .file(
                "/usr/lib/systemd/system/t@.service",
                unit("WantedBy=multi-user.target\nDefaultInstance=def"),
            )
            .file(
                "/usr/lib/systemd/system/n@.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/usr/lib/systemd/system/al@.service",
                unit("WantedBy=multi-user.target\nAlias=other@.service\nDefaultInstance=q"),
            );
        assert_eq!(
            links(&v, &enable(&["t@.service", "t@foo.service", "n@bar.service", "al@.service", "al@x.service"])),
            [
                "/etc/systemd/system/multi-user.target.wants/al@q.service -> /lib/systemd/system/al@.service",
                "/etc/systemd/system/multi-user.target.wants/al@x.service -> /lib/systemd/system/al@.service",
                "/etc/systemd/system/multi-user.target.wants/n@bar.service -> /lib/systemd/system/n@.service",
                "/etc/systemd/system/multi-user.target.wants/t@def.service -> /lib/systemd/system/t@.service",
                "/etc/systemd/system/multi-user.target.wants/t@foo.service -> /lib/systemd/system/t@.service",
                "/etc/systemd/system/other@.service -> /lib/systemd/system/al@.service",
                "/etc/systemd/system/other@x.service -> /lib/systemd/system/al@.service",
            ]
        );
        // systemctl: "destination unit multi-user.target is a non-template unit" (rc 1).
        let e = err(&v, &enable(&["t@.service", "n@.service"]));
        assert_eq!(e.key(), "systemd.enable[1]");
        assert!(
            e.to_string()
                .contains("multi-user.target is not a template"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("n@name.service"), "{e:?}");
    }

    #[test]
    fn template_targets() {
        // systemctl: WantedBy=getty@.target is used verbatim, with the
        // default instance, a given instance, or the bare template.
        let v = merged()
            .file(
                "/usr/lib/systemd/system/g@.service",
                unit("WantedBy=getty@.target foo.target\nDefaultInstance=tty1"),
            )
            .file(
                "/usr/lib/systemd/system/h@.service",
                unit("WantedBy=getty@.target"),
            );
        assert_eq!(
            links(&v, &enable(&["g@.service", "g@tty5.service", "h@.service"])),
            [
                "/etc/systemd/system/foo.target.wants/g@tty1.service -> /lib/systemd/system/g@.service",
                "/etc/systemd/system/foo.target.wants/g@tty5.service -> /lib/systemd/system/g@.service",
                "/etc/systemd/system/getty@.target.wants/g@tty1.service -> /lib/systemd/system/g@.service",
                "/etc/systemd/system/getty@.target.wants/g@tty5.service -> /lib/systemd/system/g@.service",
                "/etc/systemd/system/getty@.target.wants/h@.service -> /lib/systemd/system/h@.service",
            ]
        );
    }

    #[test]
    fn units_that_are_symlinks() {
        // systemctl: an alias link in /usr/lib (sshd.service -> ssh.service,
        // relative or absolute) enables the target by its own name, found
        // again through the search path (/lib spelling).
        for target in ["ssh.service", "/usr/lib/systemd/system/ssh.service"] {
            let v = merged()
                .file(
                    "/usr/lib/systemd/system/ssh.service",
                    unit("WantedBy=multi-user.target\nAlias=sshd.service"),
                )
                .symlink("/usr/lib/systemd/system/sshd.service", target);
            assert_eq!(
                links(&v, &enable(&["sshd.service"])),
                [
                    "/etc/systemd/system/multi-user.target.wants/ssh.service -> /lib/systemd/system/ssh.service",
                    "/etc/systemd/system/sshd.service -> /lib/systemd/system/ssh.service",
                ]
            );
        }
        // systemctl: "refusing to operate on linked unit file" for a link in
        // /etc/systemd/system into the search path, same name or not.
        for name in ["foo.service", "ssh.service"] {
            let v = merged()
                .file(
                    "/usr/lib/systemd/system/ssh.service",
                    unit("WantedBy=multi-user.target"),
                )
                .symlink(
                    &format!("/etc/systemd/system/{name}"),
                    "/lib/systemd/system/ssh.service",
                );
            let e = err(&v, &enable(&[name]));
            assert!(
                e.to_string()
                    .contains("refuses to enable a linked unit file"),
                "{e}"
            );
        }
        // systemctl: a link to a file outside the search path is a linked
        // unit: links point at that file and /etc/systemd/system/<name>
        // links to it (already there when the link is in /etc).
        let v = merged()
            .file("/opt/o.service", unit("WantedBy=multi-user.target"))
            .symlink("/usr/lib/systemd/system/p.service", "/opt/o.service")
            .symlink("/etc/systemd/system/o.service", "/opt/o.service");
        assert_eq!(
            links(&v, &enable(&["p.service", "o.service"])),
            [
                "/etc/systemd/system/multi-user.target.wants/o.service -> /opt/o.service",
                "/etc/systemd/system/multi-user.target.wants/p.service -> /opt/o.service",
                "/etc/systemd/system/p.service -> /opt/o.service",
            ]
        );
    }

    #[test]
    fn masked_missing_and_uninstallable_units() {
        // systemctl: "unit ... is masked".
        let v = merged()
            .file(
                "/usr/lib/systemd/system/x.service",
                unit("WantedBy=multi-user.target"),
            )
            .symlink("/etc/systemd/system/x.service", "/dev/null")
            .file("/usr/lib/systemd/system/noinst.service", SVC)
            .file(
                "/usr/lib/systemd/system/empty.service",
                format!("{SVC}[Install]\n"),
            )
            .file(
                "/usr/lib/systemd/system/di@.service",
                unit("DefaultInstance=tty1"),
            );
        let e = err(&v, &enable(&["x.service"]));
        assert!(e.to_string().contains("masked"), "{e}");
        // systemctl: "unit nope.service does not exist" (rc 1).
        let e = err(&v, &enable(&["nope.service"]));
        assert_eq!(e.key(), "systemd.enable[0]");
        let msg = e.to_string();
        assert!(msg.contains("nope.service does not exist"), "{msg}");
        assert!(
            msg.contains("/etc/systemd/system, ") && msg.contains("/usr/lib/systemd/system"),
            "{msg}"
        );
        assert!(e.hint().unwrap().contains("package"), "{e:?}");
        // systemctl: "The unit files have no installation config" (only a
        // warning there, an error here), also for an empty [Install] and a
        // template with only DefaultInstance=.
        for n in ["noinst.service", "empty.service", "di@.service"] {
            let e = err(&v, &enable(&[n]));
            assert!(e.to_string().contains("no installation config"), "{n}: {e}");
            assert!(e.hint().is_some());
        }
    }

    #[test]
    fn also_chains() {
        // systemctl: Also= units are enabled too; a missing one is ignored
        // ("Failed to enable auxiliary unit c.service, ignoring"); a unit
        // with only Also= is fine.
        let v = merged()
            .file("/usr/lib/systemd/system/a.service", unit("Also=b.service"))
            .file(
                "/usr/lib/systemd/system/b.service",
                unit("WantedBy=x.target\nAlso=a.service c.service"),
            );
        assert_eq!(
            links(&v, &enable(&["a.service"])),
            ["/etc/systemd/system/x.target.wants/b.service -> /lib/systemd/system/b.service"]
        );
    }

    #[test]
    fn unit_file_syntax() {
        // systemctl: comments, continuations, lists, empty assignment
        // resets, whitespace around =, other sections ignored.
        let text = "[Unit]\nDescription=x\n[Install]\n# comment\n; other comment\nWantedBy=a.target \\\n  b.target\nWantedBy=c.target\nWantedBy=\nWantedBy=d.target e.target\n  RequiredBy = f.target\nAlias=p1.service\nAlias=\nAlias=p2.service\n[X-Other]\nWantedBy=z.target\n";
        let v = merged().file("/usr/lib/systemd/system/p.service", text);
        assert_eq!(
            links(&v, &enable(&["p.service"])),
            [
                "/etc/systemd/system/d.target.wants/p.service -> /lib/systemd/system/p.service",
                "/etc/systemd/system/e.target.wants/p.service -> /lib/systemd/system/p.service",
                "/etc/systemd/system/f.target.requires/p.service -> /lib/systemd/system/p.service",
                "/etc/systemd/system/p2.service -> /lib/systemd/system/p.service",
            ]
        );
        let mut i = Install::default();
        i.apply("[Install]\nWantedBy=a.target \\\n# skipped\n b.target\nDefaultInstance=x\nDefaultInstance=\n");
        assert_eq!(i.wanted_by, ["a.target", "b.target"]);
        assert_eq!(i.default_instance, None);
        assert!(i.has_rules());
        assert!(!Install::default().has_rules());
    }

    #[test]
    fn dropins_add_install() {
        // systemctl: [Install] in drop-ins counts; files are merged by
        // name (/etc wins over /usr/lib for 20-b.conf) and applied in name
        // order; an instance also reads its template's drop-ins.
        let v = merged()
            .file("/usr/lib/systemd/system/d.service", SVC)
            .file(
                "/etc/systemd/system/d.service.d/i.conf",
                "[Install]\nWantedBy=multi-user.target\n",
            )
            .file(
                "/usr/lib/systemd/system/y.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/usr/lib/systemd/system/y.service.d/10-a.conf",
                "[Install]\nWantedBy=\nWantedBy=a.target\n",
            )
            .file(
                "/etc/systemd/system/y.service.d/20-b.conf",
                "[Install]\nWantedBy=b.target\n",
            )
            .file(
                "/usr/lib/systemd/system/y.service.d/20-b.conf",
                "[Install]\nWantedBy=c.target\n",
            )
            .file(
                "/usr/lib/systemd/system/t@.service",
                unit("WantedBy=multi-user.target"),
            )
            .file(
                "/usr/lib/systemd/system/t@.service.d/x.conf",
                "[Install]\nWantedBy=b.target\n",
            );
        assert_eq!(
            links(&v, &enable(&["d.service", "y.service", "t@i.service"])),
            [
                "/etc/systemd/system/a.target.wants/y.service -> /lib/systemd/system/y.service",
                "/etc/systemd/system/b.target.wants/t@i.service -> /lib/systemd/system/t@.service",
                "/etc/systemd/system/b.target.wants/y.service -> /lib/systemd/system/y.service",
                "/etc/systemd/system/multi-user.target.wants/d.service -> /lib/systemd/system/d.service",
                "/etc/systemd/system/multi-user.target.wants/t@i.service -> /lib/systemd/system/t@.service",
            ]
        );
    }

    #[test]
    fn specifiers() {
        // systemctl: %p and %N expand in WantedBy= and Alias=.
        let v = merged().file(
            "/usr/lib/systemd/system/sp.service",
            unit("WantedBy=foo.target\nWantedBy=%p-x.target\nAlias=%N-a.service"),
        );
        assert_eq!(
            links(&v, &enable(&["sp.service"])),
            [
                "/etc/systemd/system/foo.target.wants/sp.service -> /lib/systemd/system/sp.service",
                "/etc/systemd/system/sp-a.service -> /lib/systemd/system/sp.service",
                "/etc/systemd/system/sp-x.target.wants/sp.service -> /lib/systemd/system/sp.service",
            ]
        );
        assert_eq!(
            printf("k", "a-b@c.service", "%n %N %p %i %j %%").unwrap(),
            "a-b@c.service a-b@c a-b c b %"
        );
        let v = merged().file(
            "/usr/lib/systemd/system/h.service",
            unit("WantedBy=%H.target"),
        );
        assert!(err(&v, &enable(&["h.service"])).to_string().contains("%H"));
    }

    #[test]
    fn existing_links() {
        // systemctl: an existing link to the same file (other spelling) is
        // kept; a wants link to another unit is replaced; an alias held by
        // another unit is an error ("already exists and is a symlink to").
        let base = || {
            merged()
                .file(
                    "/usr/lib/systemd/system/x.service",
                    unit("WantedBy=multi-user.target"),
                )
                .file(
                    "/usr/lib/systemd/system/y.service",
                    unit("WantedBy=multi-user.target\nAlias=z.service"),
                )
        };
        let v = base().symlink(
            "/etc/systemd/system/multi-user.target.wants/x.service",
            "/usr/lib/systemd/system/x.service",
        );
        assert!(links(&v, &enable(&["x.service"])).is_empty());
        let v = base().symlink(
            "/etc/systemd/system/multi-user.target.wants/x.service",
            "/lib/systemd/system/y.service",
        );
        assert_eq!(
            links(&v, &enable(&["x.service"])),
            ["/etc/systemd/system/multi-user.target.wants/x.service -> /lib/systemd/system/x.service"]
        );
        let v = base().symlink(
            "/etc/systemd/system/z.service",
            "/lib/systemd/system/x.service",
        );
        let e = err(&v, &enable(&["y.service"]));
        assert!(
            e.to_string()
                .contains("already exists and is a link to /lib/systemd/system/x.service"),
            "{e}"
        );
        // Two units of one layer claiming the same alias.
        let v = base().file("/usr/lib/systemd/system/w.service", unit("Alias=z.service"));
        let e = err(&v, &enable(&["y.service", "w.service"]));
        assert_eq!(e.key(), "systemd.enable[1]");
        assert!(e.to_string().contains("systemd.enable[0]"), "{e}");
        // Bad alias type: systemctl "cannot alias q.service as bad.socket".
        let v = base().file(
            "/usr/lib/systemd/system/q.service",
            unit("WantedBy=foo.target\nAlias=bad.socket"),
        );
        assert!(err(&v, &enable(&["q.service"]))
            .to_string()
            .contains("cannot alias"));
    }

    #[test]
    fn unit_from_the_same_layer() {
        let s = Systemd {
            enable: vec!["kubelet.service".into()],
            unit: vec![Unit {
                name: "kubelet.service".into(),
                content: Some(
                    "[Service]\nExecStart=/usr/bin/kubelet\n[Install]\nWantedBy=multi-user.target"
                        .into(),
                ),
                source: None,
            }],
            ..Systemd::default()
        };
        let base = merged();
        let inputs = MemInputs::new();
        let ctx = Context {
            view: &base,
            inputs: &inputs,
            arch: "amd64",
        };
        let units = s.render_units("systemd", &ctx).unwrap();
        let view = Overlay {
            tree: &units,
            lower: &base,
        };
        let t = s.render_enablement("systemd", &view, &Nowhere).unwrap();
        assert_eq!(
            show(&t),
            ["/etc/systemd/system/multi-user.target.wants/kubelet.service -> /etc/systemd/system/kubelet.service"]
        );
        // A drop-in of the same layer can add the [Install] section.
        let s = Systemd {
            enable: vec!["containerd.service".into()],
            dropin: vec![Dropin {
                unit: "containerd.service".into(),
                name: "10-install".into(),
                content: Some("[Install]\nWantedBy=multi-user.target\n".into()),
                source: None,
            }],
            ..Systemd::default()
        };
        let base = merged().file("/usr/lib/systemd/system/containerd.service", SVC);
        let ctx = Context {
            view: &base,
            inputs: &inputs,
            arch: "amd64",
        };
        let units = s.render_units("systemd", &ctx).unwrap();
        let view = Overlay {
            tree: &units,
            lower: &base,
        };
        assert_eq!(
            show(&s.render_enablement("systemd", &view, &Nowhere).unwrap()),
            ["/etc/systemd/system/multi-user.target.wants/containerd.service -> /lib/systemd/system/containerd.service"]
        );
    }

    #[test]
    fn disable_removes_existing_links_only() {
        let v = merged()
            .file(
                "/usr/lib/systemd/system/x.service",
                unit("WantedBy=multi-user.target\nRequiredBy=b.target\nAlias=xx.service"),
            )
            .symlink(
                "/etc/systemd/system/multi-user.target.wants/x.service",
                "/lib/systemd/system/x.service",
            )
            .symlink(
                "/etc/systemd/system/xx.service",
                "/lib/systemd/system/x.service",
            )
            .file("/usr/lib/systemd/system/static.service", SVC)
            .file(
                "/usr/lib/systemd/system/off.service",
                unit("WantedBy=multi-user.target"),
            );
        let s = Systemd {
            disable: vec![
                "x.service".into(),
                "static.service".into(),
                "off.service".into(),
            ],
            ..Systemd::default()
        };
        let t = s.render_enablement("systemd", &v, &Nowhere).unwrap();
        assert_eq!(
            show(&t),
            [
                "/etc/systemd/system/multi-user.target.wants/x.service (whiteout)",
                "/etc/systemd/system/xx.service (whiteout)",
            ]
        );
        assert_eq!(
            t.get_str("/etc/systemd/system/xx.service").unwrap().origin,
            Origin::new("systemd", "systemd.disable[0]")
        );
        let s = Systemd {
            disable: vec!["nope.service".into()],
            ..Systemd::default()
        };
        assert_eq!(err(&v, &s).key(), "systemd.disable[0]");
    }

    #[test]
    fn mask_and_conflicts() {
        let v = merged()
            .file(
                "/usr/lib/systemd/system/x.service",
                unit("WantedBy=multi-user.target"),
            )
            .file("/etc/systemd/system/m.service", SVC)
            .symlink(
                "/etc/systemd/system/old.service",
                "/lib/systemd/system/x.service",
            )
            .symlink("/etc/systemd/system/done.service", "/dev/null");
        // systemctl: masking needs no unit file; an existing mask is kept.
        let s = Systemd {
            mask: vec![
                "x.service".into(),
                "ghost.service".into(),
                "done.service".into(),
            ],
            ..Systemd::default()
        };
        let t = s.render_enablement("systemd", &v, &Nowhere).unwrap();
        assert_eq!(
            show(&t),
            [
                "/etc/systemd/system/ghost.service -> /dev/null",
                "/etc/systemd/system/x.service -> /dev/null",
            ]
        );
        assert_eq!(
            t.get_str("/etc/systemd/system/ghost.service")
                .unwrap()
                .origin,
            Origin::new("systemd", "systemd.mask[1]")
        );
        // systemctl: "Failed to mask unit, file ... already exists." and
        // "... already exists and is a symlink to ...".
        let s = Systemd {
            mask: vec!["m.service".into()],
            ..Systemd::default()
        };
        assert_eq!(err(&v, &s).key(), "systemd.mask[0]");
        let s = Systemd {
            mask: vec!["x.service".into(), "old.service".into()],
            ..Systemd::default()
        };
        let e = err(&v, &s);
        assert_eq!(e.key(), "systemd.mask[1]");
        assert!(
            e.to_string()
                .contains("is a link to /lib/systemd/system/x.service"),
            "{e}"
        );
        let s = Systemd {
            enable: vec!["x.service".into()],
            mask: vec!["x.service".into()],
            ..Systemd::default()
        };
        let e = err(&v, &s);
        assert_eq!(e.key(), "systemd.mask[0]");
        assert!(e.to_string().contains("both enabled and masked"));
        let s = Systemd {
            enable: vec!["x.service".into()],
            disable: vec!["x.service".into()],
            ..Systemd::default()
        };
        assert_eq!(err(&v, &s).key(), "systemd.disable[0]");
        let s = Systemd {
            enable: vec!["x.service".into(), "docker".into()],
            ..Systemd::default()
        };
        let e = err(&v, &s);
        assert_eq!(e.key(), "systemd.enable[1]");
        assert!(e.hint().unwrap().contains("docker.service"), "{e:?}");
    }

    #[test]
    fn link_targets_are_made_absolute() {
        assert_eq!(
            absolute_target("/usr/lib/systemd/system", "ssh.service"),
            "/usr/lib/systemd/system/ssh.service"
        );
        assert_eq!(
            absolute_target("/usr/lib/systemd/system", "../../../../opt/o.service"),
            "/opt/o.service"
        );
        assert_eq!(
            absolute_target("/etc/systemd/system", "/opt//x/./o.service"),
            "/opt/x/o.service"
        );
        // A relative link out of the search path is a linked unit too.
        let v = merged()
            .file("/opt/o.service", unit("WantedBy=multi-user.target"))
            .symlink(
                "/usr/lib/systemd/system/o.service",
                "../../../../opt/o.service",
            );
        assert_eq!(
            links(&v, &enable(&["o.service"])),
            [
                "/etc/systemd/system/multi-user.target.wants/o.service -> /opt/o.service",
                "/etc/systemd/system/o.service -> /opt/o.service",
            ]
        );
    }

    #[test]
    fn unit_names() {
        let n = UnitName::parse("getty@tty1.service").unwrap();
        assert!(n.is_instance() && !n.is_template());
        assert_eq!(n.template(), "getty@.service");
        assert_eq!(n.to_string(), "getty@tty1.service");
        let t = UnitName::parse("foo@.service").unwrap();
        assert!(t.is_template());
        assert_eq!(t.with_instance("x"), "foo@x.service");
        for ok in [
            "a.service",
            "a.socket",
            "a.target",
            "a.timer",
            "-.mount",
            "a.automount",
            "a.path",
            "a.slice",
            "a.scope",
            "a.swap",
            "dev-sda.device",
            "systemd-fsck@dev-disk-by\\x2duuid-1.service",
            "foo.bar:baz_1.service",
        ] {
            assert!(UnitName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "docker",
            "a.conf",
            ".service",
            "@x.service",
            "a@b@c.service",
            "a b.service",
            "a/b.service",
            "ä.service",
        ] {
            assert!(UnitName::parse(bad).is_err(), "{bad:?}");
        }
        let e = UnitName::parse("a b.service").unwrap_err();
        assert_eq!(
            e,
            UnitNameError::Character {
                name: "a b.service".to_string(),
                character: ' '
            }
        );
        assert_eq!(
            e.to_string(),
            "\"a b.service\" is not a unit name: ' ' is not allowed (use letters, digits and \
             :_.\\@-)"
        );
        assert_eq!(
            UnitName::parse("docker").unwrap_err().to_string(),
            "\"docker\" is not a unit name: it must end in a unit type (.service, .socket, \
             .target, .timer, .mount, .automount, .path, .slice, .scope, .swap, .device)"
        );
        assert_eq!(
            UnitName::parse("").unwrap_err().to_string(),
            "\"\" is not a unit name (1 to 255 characters)"
        );
        assert_eq!(
            UnitName::parse("a@b@c.service").unwrap_err().to_string(),
            "\"a@b@c.service\" is not a unit name: more than one @"
        );
        assert_eq!(
            UnitName::parse("@x.service").unwrap_err().to_string(),
            "\"@x.service\" is not a unit name: nothing before the type"
        );
    }

    fn ctx_render(s: &Systemd, inputs: &MemInputs) -> Result<FileTree> {
        let v = MemView::new();
        let ctx = Context {
            view: &v,
            inputs,
            arch: "amd64",
        };
        s.render_units("systemd", &ctx)
    }

    #[test]
    fn units_and_dropins_are_written() {
        let s = Systemd {
            unit: vec![
                Unit {
                    name: "kubelet.service".into(),
                    content: Some("[Unit]\nDescription=k".into()),
                    source: None,
                },
                Unit {
                    name: "x@.service".into(),
                    content: None,
                    source: Some("units/x@.service".into()),
                },
            ],
            dropin: vec![Dropin {
                unit: "docker.service".into(),
                name: "10-cgroup".into(),
                content: Some("[Service]\nExecStart=\n".into()),
                source: None,
            }],
            ..Systemd::default()
        };
        let inputs = MemInputs::new().with("units/x@.service", "[Service]\nExecStart=/bin/x %i\n");
        let t = ctx_render(&s, &inputs).unwrap();
        let paths: Vec<_> = t.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            paths,
            [
                "/etc/systemd/system/docker.service.d/10-cgroup.conf",
                "/etc/systemd/system/kubelet.service",
                "/etc/systemd/system/x@.service",
            ]
        );
        assert_eq!(
            t.text("/etc/systemd/system/kubelet.service").unwrap(),
            "[Unit]\nDescription=k\n"
        );
        assert_eq!(
            t.text("/etc/systemd/system/x@.service").unwrap(),
            "[Service]\nExecStart=/bin/x %i\n"
        );
        assert_eq!(
            t.text("/etc/systemd/system/docker.service.d/10-cgroup.conf")
                .unwrap(),
            "[Service]\nExecStart=\n"
        );
        let n = t
            .get_str("/etc/systemd/system/docker.service.d/10-cgroup.conf")
            .unwrap();
        assert_eq!(n.origin, Origin::new("systemd", "systemd.dropin[0]"));
        assert_eq!(n.meta, crate::tree::Meta::FILE);
        assert_eq!(
            t.get_str("/etc/systemd/system/x@.service").unwrap().origin,
            Origin::new("systemd", "systemd.unit[1]")
        );
    }

    #[test]
    fn bad_units_and_dropins() {
        let u = |name: &str, content: Option<&str>, source: Option<&str>| Systemd {
            unit: vec![Unit {
                name: name.into(),
                content: content.map(Into::into),
                source: source.map(Into::into),
            }],
            ..Systemd::default()
        };
        let d = |unit: &str, name: &str| Systemd {
            dropin: vec![Dropin {
                unit: unit.into(),
                name: name.into(),
                content: Some("[Service]\n".into()),
                source: None,
            }],
            ..Systemd::default()
        };
        let inputs = MemInputs::new().with("bin", vec![0xff, 0xfe]);
        let cases = [
            (u("kubelet", Some("x"), None), "systemd.unit[0].name"),
            (u("../x.service", Some("x"), None), "systemd.unit[0].name"),
            (u("k.service", None, None), "systemd.unit[0]"),
            (u("k.service", Some("x"), Some("y")), "systemd.unit[0]"),
            (u("k.service", Some("  \n"), None), "systemd.unit[0]"),
            (
                u("k.service", None, Some("missing")),
                "systemd.unit[0].source",
            ),
            (u("k.service", None, Some("bin")), "systemd.unit[0].source"),
            (d("docker", "x"), "systemd.dropin[0].unit"),
            (d("docker.service", "x.conf"), "systemd.dropin[0].name"),
            (d("docker.service", "a/b"), "systemd.dropin[0].name"),
            (d("docker.service", ""), "systemd.dropin[0].name"),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            let e = ctx_render(s, &inputs).unwrap_err();
            assert_eq!(e.key(), *want, "case {i}: {e}");
        }
        match ctx_render(&u("k.service", None, Some("missing")), &inputs).unwrap_err() {
            Error::Input { path, .. } => assert_eq!(path, "missing"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn unit_files_and_their_lookup_names() {
        assert_eq!(
            unit_file_name("/lib/systemd/system/containerd.service"),
            Some("containerd.service")
        );
        assert_eq!(
            unit_file_name("/usr/lib/systemd/system/getty@.service"),
            Some("getty@.service")
        );
        for not in [
            "/lib/systemd/system/x.service.d/a.conf",
            "/lib/systemd/system/README",
            "/etc/init/x.service",
            "/run/systemd/generator/x.service",
            "x.service",
            "/",
        ] {
            assert_eq!(unit_file_name(not), None, "{not}");
        }
        assert_eq!(unit_file_candidates("a.service"), ["a.service"]);
        assert_eq!(
            unit_file_candidates("getty@tty1.service"),
            ["getty@tty1.service", "getty@.service"]
        );
        assert!(unit_file_candidates("not a unit").is_empty());
    }
}
