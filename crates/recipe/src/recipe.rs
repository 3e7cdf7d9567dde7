//! Recipes: parsing, includes, variables, validation.
//!
//! Loading happens in two steps. [`Loaded::load`] reads the recipe and its
//! fragments and deserialises each of them as written (syntax, unknown keys
//! and wrong types are reported here, with the span the TOML parser gives).
//! [`Loaded::expand`] then expands `${var}` in every string value, once the
//! base (and so its os-release) is known, deserialises again and validates
//! what the types cannot say: names, duplicate layers, input paths.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use nodeimg_layers::LayerSpec;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, RecipeError, Result};
use crate::inputs::{InputError, RecipeInputs};
use crate::sourcemap::{self, SourceMap};
use crate::vars::{self, ExpandError};

fn default_tag() -> String {
    "latest".to_string()
}

/// The `[image]` table.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ImageSection {
    /// Image name: lowercase letters, digits, `.`, `_`, `-`. Required.
    pub name: String,
    /// Tag, written as `org.opencontainers.image.ref.name`; default `latest`.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// The base image: `scratch` (default), `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `rootfs:FILE` (`.tar`, `.tar.gz`,
    /// `.tar.zst`) or `docker://HOST[:PORT]/REPO:TAG` (or `@sha256:...`);
    /// paths relative to the recipe's folder.
    pub base: Option<String>,
    /// OCI architecture (`amd64`, `arm64`, ...); default: the base's
    /// config's, else (a rootfs base) its package manager's, else `amd64`.
    pub architecture: Option<String>,
    /// Build one image per platform (`linux/amd64`, `linux/arm64`,
    /// `linux/arm/v7`, ...) into one OCI image index, each from its own
    /// architecture's packages; `--platform` overrides it. Not with
    /// `architecture`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Labels of the image configuration.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the manifest.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The `[lint]` table.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LintSection {
    /// Lint rules allowed for this recipe: their findings are shown as
    /// allowed, with the reason, and do not stop the build nor fail
    /// `check`. Each rule once.
    #[serde(default)]
    pub allow: Vec<LintAllow>,
}

/// A lint rule allowed for one recipe, and why.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LintAllow {
    /// The rule's id, e.g. `NI004` (see `nodeimg check` and docs/lint.md).
    #[schemars(regex(pattern = r"^NI[0-9]{3}$"))]
    pub rule: String,
    /// Why the rule does not apply to this recipe (required, not empty):
    /// shown with every finding it allows and recorded in the build's
    /// metadata.
    #[schemars(length(min = 1))]
    pub reason: String,
}

/// A nodeimg recipe: a base image plus `[[layer]]`s of configuration items.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "nodeimg recipe")]
pub(crate) struct RecipeFile {
    /// Fragments (relative to this file, inside the recipe's folder) whose
    /// `[vars]` and `[[layer]]`s come before this file's own.
    #[serde(default)]
    pub include: Vec<String>,
    /// The image to build.
    pub image: ImageSection,
    /// Variables, used as `${name}` in any string value. Values may use other
    /// variables and the built-ins `${arch}` (the OCI architecture: `arm`),
    /// `${deb_arch}` (Debian's name for it: `armhf`), `${rpm_arch}` (rpm's:
    /// `armv7hl`) and `${os.<KEY>}` (the base's os-release). `--var
    /// name=value` overrides.
    #[serde(default)]
    pub vars: IndexMap<String, String>,
    /// Layers, in order; each becomes exactly one image layer.
    #[serde(default)]
    pub layer: Vec<LayerSpec>,
    /// Lint settings of this recipe.
    #[serde(default)]
    pub lint: LintSection,
}

/// An included fragment: only `include`, `[vars]` and `[[layer]]`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FragmentFile {
    /// Further fragments, relative to this one.
    #[serde(default)]
    pub include: Vec<String>,
    /// Variables.
    #[serde(default)]
    pub vars: IndexMap<String, String>,
    /// Layers.
    #[serde(default)]
    pub layer: Vec<LayerSpec>,
}

/// One file of a recipe (the recipe itself, or a fragment).
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name shown in messages: the recipe as the user named it, a
    /// fragment relative to the recipe's folder.
    pub display: PathBuf,
    /// Name relative to the recipe's folder (the recipe's own file name for
    /// the recipe): what the recipe digest records.
    pub rel: String,
    /// Canonical host path.
    pub host: PathBuf,
    /// The text.
    pub text: String,
    /// Key paths to lines.
    pub map: SourceMap,
    raw: toml::Table,
    include: Vec<String>,
    vars: IndexMap<String, String>,
    layers: usize,
}

impl SourceFile {
    /// A recipe error at `key` of this file, with its line.
    pub fn error_at(&self, key: &str, message: impl Into<String>, hint: Option<String>) -> Error {
        located(self, key, message, hint)
    }
}

/// A recipe layer and where it was written.
#[derive(Clone, Debug)]
pub struct RecipeLayer {
    /// The layer, variables expanded.
    pub spec: LayerSpec,
    /// Index into [`Recipe::files`].
    pub file: usize,
    /// Index of the `[[layer]]` within that file.
    pub index: usize,
}

impl RecipeLayer {
    /// Key path of the layer table within its file (`layer[1]`).
    pub fn key(&self) -> String {
        format!("layer[{}]", self.index)
    }

    /// Key path of something inside the layer (`layer[1].systemd.enable[0]`).
    pub fn key_of(&self, sub: &str) -> String {
        if sub.is_empty() {
            self.key()
        } else if sub.starts_with('[') {
            format!("{}{sub}", self.key())
        } else {
            format!("{}.{sub}", self.key())
        }
    }
}

/// The `[image]` table, variables expanded and checked.
#[derive(Clone, Debug)]
pub struct Image {
    /// Name.
    pub name: String,
    /// Tag.
    pub tag: String,
    /// Base reference as written (variables expanded); `None` for scratch by default.
    pub base: Option<String>,
    /// Architecture, if the recipe says.
    pub architecture: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Where a variable was defined.
#[derive(Clone, Debug)]
struct VarDef {
    value: String,
    file: usize,
}

/// A recipe after the first step: every file read and checked as written.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Canonical recipe folder.
    pub dir: PathBuf,
    /// The folder's files, each opened once.
    pub inputs: Arc<RecipeInputs>,
    /// Files; the recipe is the first.
    pub files: Vec<SourceFile>,
    order: Vec<(usize, usize)>,
    defs: IndexMap<String, VarDef>,
    image: ImageSection,
    /// The architecture of one platform of a multi-platform build, which
    /// takes the place of `image.architecture`.
    platform_arch: Option<String>,
}

/// A recipe after the second step: variables expanded, validated.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// Canonical recipe folder.
    pub dir: PathBuf,
    /// The folder's files the recipe names, each opened once: rendering,
    /// the recipe digest and the packer read these handles.
    pub inputs: Arc<RecipeInputs>,
    /// Files; the recipe is the first.
    pub files: Vec<SourceFile>,
    /// The image.
    pub image: Image,
    /// Layers in build order: included ones first, in include order.
    pub layers: Vec<RecipeLayer>,
    /// Every variable's value (user, built-in, overrides).
    pub vars: BTreeMap<String, String>,
    /// The lint rules the recipe allows (`[lint] allow`), in the recipe's
    /// order; the `i`th is at key `lint.allow[i]` of the recipe (file 0).
    pub lint_allow: Vec<LintAllow>,
}

/// Locate `key` in `file` and make a recipe error.
fn located(
    file: &SourceFile,
    key: &str,
    message: impl Into<String>,
    hint: Option<String>,
) -> Error {
    let (line, column) = match file.map.locate(key) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    Error::recipe(RecipeError {
        file: file.display.clone(),
        line,
        column,
        key: (!key.is_empty()).then(|| key.to_string()),
        message: message.into(),
        hint,
    })
}

fn at_span(
    display: &Path,
    map: &SourceMap,
    span: Option<Range<usize>>,
    key: Option<String>,
    message: String,
    hint: Option<String>,
) -> Error {
    let (line, column) = match span {
        Some(r) => {
            let (l, c) = map.line_col(r.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    Error::recipe(RecipeError {
        file: display.to_path_buf(),
        line,
        column,
        key,
        message,
        hint,
    })
}

/// Turn a deserialisation error into a recipe error with line and key path.
fn de_error(display: &Path, map: &SourceMap, e: &toml::de::Error, fragment: bool) -> Error {
    let message = e.message().trim().to_string();
    let span = e.span();
    let mut key = None;
    if let Some(r) = &span {
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            let container = map.path_containing(r.clone()).unwrap_or_default();
            key = Some(sourcemap::join(&container, field));
        } else {
            key = map.path_at(r.start);
        }
    }
    let hint = if message.starts_with("unknown field") {
        Some(
            if fragment && (message.contains("`image`") || message.contains("`lint`")) {
                "a fragment holds only `include`, `[vars]` and `[[layer]]`; move `[image]` and `[lint]` to the recipe".to_string()
            } else {
                "check the spelling; `nodeimg schema` lists every key the recipe format accepts"
                    .to_string()
            },
        )
    } else if message.starts_with("missing field") {
        Some("add it; `nodeimg schema` lists the required keys".to_string())
    } else if message.starts_with("invalid type") {
        Some("check the value's type; `nodeimg schema` gives the type of every key".to_string())
    } else {
        None
    };
    at_span(display, map, span, key, message, hint)
}

fn parse_file(
    display: &Path,
    rel: String,
    host: PathBuf,
    file: std::fs::File,
    fragment: bool,
) -> Result<SourceFile> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { file }, &mut text).map_err(|e| {
        Error::recipe(RecipeError {
            file: display.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the file: {e}"),
            hint: None,
        })
    })?;
    let map = SourceMap::new(&text);
    if let Err(e) = toml_edit::ImDocument::parse(text.as_str()) {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(at_span(
            display,
            &map,
            e.span(),
            None,
            format!("TOML syntax error: {message}"),
            Some("fix the TOML syntax at that line".to_string()),
        ));
    }
    let raw: toml::Table =
        toml::from_str(&text).map_err(|e| de_error(display, &map, &e, fragment))?;
    let (include, vars, layers) = if fragment {
        let f: FragmentFile =
            toml::from_str(&text).map_err(|e| de_error(display, &map, &e, true))?;
        (f.include, f.vars, f.layer.len())
    } else {
        let f: RecipeFile =
            toml::from_str(&text).map_err(|e| de_error(display, &map, &e, false))?;
        (f.include, f.vars, f.layer.len())
    };
    Ok(SourceFile {
        display: display.to_path_buf(),
        rel,
        host,
        text,
        map,
        raw,
        include,
        vars,
        layers,
    })
}

/// A resolver of variables: user definitions, built-ins, overrides.
struct Resolver<'a> {
    files: &'a [SourceFile],
    defs: &'a IndexMap<String, VarDef>,
    builtins: &'a BTreeMap<String, String>,
    overrides: &'a BTreeMap<String, String>,
    /// Why the built-ins are missing, if they are.
    no_builtins: Option<&'static str>,
    cache: BTreeMap<String, String>,
}

impl Resolver<'_> {
    fn defined(&self) -> String {
        let mut names: Vec<&str> = self
            .defs
            .keys()
            .chain(self.builtins.keys())
            .chain(self.overrides.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    fn undefined(&self, name: &str) -> (String, Option<String>) {
        if vars::is_builtin_name(name) {
            if let Some(why) = self.no_builtins {
                return (
                    format!("variable `{name}` is not available here"),
                    Some(why.to_string()),
                );
            }
        }
        (
            format!("undefined variable `{name}`"),
            Some(format!(
                "defined variables: {}; define it under [vars] or pass --var {name}=VALUE (write `$${{` for a literal `${{`)",
                self.defined()
            )),
        )
    }

    fn value(&mut self, name: &str, stack: &mut Vec<String>) -> Result<Option<String>> {
        if let Some(v) = self.overrides.get(name) {
            return Ok(Some(v.clone()));
        }
        if let Some(v) = self.builtins.get(name) {
            return Ok(Some(v.clone()));
        }
        if let Some(v) = self.cache.get(name) {
            return Ok(Some(v.clone()));
        }
        let Some(def) = self.defs.get(name) else {
            return Ok(None);
        };
        let file = &self.files[def.file];
        let key = sourcemap::join("vars", name);
        if stack.iter().any(|s| s == name) {
            let mut chain = stack.clone();
            chain.push(name.to_string());
            return Err(located(
                file,
                &key,
                format!(
                    "variables refer to each other in a cycle: {}",
                    chain.join(" -> ")
                ),
                Some("give one of them a plain value".to_string()),
            ));
        }
        stack.push(name.to_string());
        let value = def.value.clone();
        let v = self.expand_str(&value, file, &key, stack)?;
        stack.pop();
        self.cache.insert(name.to_string(), v.clone());
        Ok(Some(v))
    }

    fn expand_str(
        &mut self,
        s: &str,
        file: &SourceFile,
        key: &str,
        stack: &mut Vec<String>,
    ) -> Result<String> {
        let mut nested: Option<Error> = None;
        let r = vars::expand_with(s, |n| match self.value(n, stack) {
            Ok(v) => Ok(v),
            Err(e) => {
                nested = Some(e);
                Err(ExpandError::Syntax(String::new()))
            }
        });
        if let Some(e) = nested {
            return Err(e);
        }
        match r {
            Ok(v) => Ok(v),
            Err(ExpandError::Undefined(n)) => {
                let (m, h) = self.undefined(&n);
                Err(located(file, key, m, h))
            }
            Err(ExpandError::Syntax(m)) => Err(located(file, key, m, None)),
            Err(e @ ExpandError::TooLong) => Err(located(
                file,
                key,
                e.to_string(),
                Some("check the variables this value names, and what they name in turn".into()),
            )),
        }
    }

    fn expand_value(
        &mut self,
        v: &mut toml::Value,
        file: &SourceFile,
        key: &str,
        stack: &mut Vec<String>,
    ) -> Result<()> {
        match v {
            toml::Value::String(s) => {
                *s = self.expand_str(s, file, key, stack)?;
            }
            toml::Value::Array(a) => {
                for (i, e) in a.iter_mut().enumerate() {
                    self.expand_value(e, file, &format!("{key}[{i}]"), stack)?;
                }
            }
            toml::Value::Table(t) => {
                for (k, e) in t.iter_mut() {
                    self.expand_value(e, file, &sourcemap::join(key, k), stack)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

const BASE_NO_OS: &str =
    "the base reference and architecture are needed before the base is opened, so `${os.*}` cannot be used in them (nor `${arch}`, `${deb_arch}` and `${rpm_arch}` unless image.architecture is a plain value)";

const PLATFORM_HINT: &str =
    "write linux/ARCH or linux/ARCH/VARIANT, e.g. linux/amd64, linux/arm64, linux/arm/v7";

/// The OCI architecture of a platform as `--platform` and
/// `image.platforms` spell it: `linux/ARCH[/VARIANT]`, the variant the one
/// the architecture's packages are built for (`arm` is `v7`, `arm64` may
/// say `v8`). The error says what is wrong.
pub fn parse_platform(s: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (os, arch, variant) = match parts[..] {
        [os, arch] => (os, arch, None),
        [os, arch, v] => (os, arch, Some(v)),
        _ => return Err(format!("platform {s:?} is not OS/ARCH[/VARIANT]")),
    };
    if os != "linux" {
        return Err(format!(
            "platform {s:?}: node images are linux images, not {os:?}"
        ));
    }
    if !ARCHITECTURES.contains(&arch) {
        return Err(format!(
            "platform {s:?}: unknown architecture {arch:?} (known: {})",
            ARCHITECTURES.join(", ")
        ));
    }
    if let Some(v) = variant {
        let own = nodeimg_layers::arch::variant(arch).or((arch == "arm64").then_some("v8"));
        if own != Some(v) {
            return Err(format!(
                "platform {s:?}: nodeimg builds {arch} images for {}",
                match own {
                    Some(o) => format!("variant {o} only (linux/{arch}/{o})"),
                    None => format!("no variant (linux/{arch})"),
                }
            ));
        }
    }
    Ok(arch.to_string())
}

/// Known OCI architectures.
pub(crate) const ARCHITECTURES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x",
];

fn valid_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn valid_tag(s: &str) -> bool {
    let mut cs = s.chars();
    match cs.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    s.len() <= 128 && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Files a layer reads from the recipe's folder: `(key path relative to the
/// layer, path as written)`. URLs (`gpgkey = "https://..."`) are not files.
pub fn layer_inputs(spec: &LayerSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, f) in spec.file.iter().enumerate() {
        if let Some(s) = &f.source {
            out.push((format!("file[{i}].source"), s.clone()));
        }
    }
    for (i, a) in spec.apt_source.iter().enumerate() {
        if let Some(k) = &a.key {
            out.push((format!("apt-source[{i}].key"), k.clone()));
        }
    }
    for (name, repos) in [
        ("yum-repo", &spec.yum_repo),
        ("zypper-repo", &spec.zypper_repo),
    ] {
        for (i, r) in repos.iter().enumerate() {
            if let Some(k) = &r.gpgkey {
                if !k.contains("://") {
                    out.push((format!("{name}[{i}].gpgkey"), k.clone()));
                }
            }
        }
    }
    if let Some(s) = &spec.systemd {
        for (i, u) in s.unit.iter().enumerate() {
            if let Some(src) = &u.source {
                out.push((format!("systemd.unit[{i}].source"), src.clone()));
            }
        }
        for (i, d) in s.dropin.iter().enumerate() {
            if let Some(src) = &d.source {
                out.push((format!("systemd.dropin[{i}].source"), src.clone()));
            }
        }
    }
    out
}

impl Loaded {
    /// Read the recipe at `path` (named in messages as given) and its
    /// fragments, checking each as written.
    pub fn load(path: &Path) -> Result<Loaded> {
        let recipe_err = |message: String, hint: Option<String>| {
            Error::recipe(RecipeError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message,
                hint,
            })
        };
        let host = path
            .canonicalize()
            .map_err(|e| recipe_err(format!("cannot open the recipe: {e}"), None))?;
        if !host.is_file() {
            return Err(recipe_err(
                "is not a file".to_string(),
                Some("name a recipe .toml file".to_string()),
            ));
        }
        let dir = host.parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let inputs = RecipeInputs::new(&dir)
            .map_err(|e| recipe_err(format!("cannot open the recipe's folder: {e}"), None))?;
        // The recipe itself is read like every other file of its folder.
        let opened = inputs
            .open_fragment(&rel)
            .map_err(|e| recipe_err(format!("cannot open the recipe: {e}"), None))?;
        let first = parse_file(path, rel.clone(), host, opened.file, false)?;
        let image: RecipeFile =
            toml::from_str(&first.text).map_err(|e| de_error(path, &first.map, &e, false))?;
        let mut l = Loaded {
            dir: inputs.dir().to_path_buf(),
            inputs: Arc::new(inputs),
            files: vec![first],
            order: Vec::new(),
            defs: IndexMap::new(),
            image: image.image,
            platform_arch: None,
        };
        let mut stack = vec![opened.resolved.clone()];
        let mut seen = std::collections::HashSet::from([opened.resolved]);
        l.collect(0, &mut stack, &mut seen)?;
        Ok(l)
    }

    /// Read the includes of file `idx`, depth first. `stack` is the chain
    /// of files being read (for cycles); `seen` every file read so far: a
    /// file included again (a diamond) is read once, where it is first
    /// included, so the work stays linear in the number of files.
    fn collect(
        &mut self,
        idx: usize,
        stack: &mut Vec<String>,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<()> {
        let includes = self.files[idx].include.clone();
        for (i, inc) in includes.iter().enumerate() {
            let key = format!("include[{i}]");
            // Where the including file is, inside the folder.
            let here = Path::new(&self.files[idx].rel)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let p = Path::new(inc);
            if p.is_absolute() || p.has_root() {
                return Err(located(
                    &self.files[idx],
                    &key,
                    format!("include {inc:?} is an absolute path"),
                    Some(
                        "name fragments relative to the including file, inside the recipe's folder"
                            .to_string(),
                    ),
                ));
            }
            let joined = here.join(p).to_string_lossy().into_owned();
            let opened = self
                .inputs
                .open_fragment(&joined)
                .map_err(|e| self.include_error(idx, &key, inc, e))?;
            let rel_path = PathBuf::from(&opened.resolved);
            let canon = self.dir.join(&rel_path);
            if let Some(pos) = stack.iter().position(|s| s == &opened.resolved) {
                let mut chain: Vec<String> = stack[pos..].to_vec();
                chain.push(rel_path.display().to_string());
                return Err(located(
                    &self.files[idx],
                    &key,
                    format!("include cycle: {}", chain.join(" -> ")),
                    Some("remove one of the includes".to_string()),
                ));
            }
            if !seen.insert(opened.resolved.clone()) {
                continue;
            }
            let rel = opened.resolved.clone();
            let f = parse_file(&rel_path, rel, canon, opened.file, true)?;
            self.files.push(f);
            let new = self.files.len() - 1;
            stack.push(opened.resolved);
            self.collect(new, stack, seen)?;
            stack.pop();
        }
        for j in 0..self.files[idx].layers {
            self.order.push((idx, j));
        }
        self.define_vars(idx)
    }

    /// The error for include `inc` (at `key` of file `idx`) that cannot be
    /// opened.
    fn include_error(&self, idx: usize, key: &str, inc: &str, e: InputError) -> Error {
        let outside = || {
            Some(format!(
                "fragments must live inside {}; copy the fragment there",
                self.dir.display()
            ))
        };
        let (message, hint) = match e {
            InputError::Leaves(_) => (format!("include {inc:?} leaves the recipe's folder"), outside()),
            InputError::OutsideThroughLink { link, target, .. } => (
                format!(
                    "include {inc:?} leaves the recipe's folder through a symbolic link ({link} -> {target})"
                ),
                outside(),
            ),
            InputError::NotRegular { what, .. } => (
                format!("include {inc:?} is not a regular file but {what}"),
                Some("name a fragment .toml file".to_string()),
            ),
            InputError::Open { source, .. } => (
                format!("cannot open include {inc:?}: {source}"),
                Some("paths are relative to the including file".to_string()),
            ),
            other => (
                format!("include {inc:?}: {other}"),
                Some("paths are relative to the including file".to_string()),
            ),
        };
        located(&self.files[idx], key, message, hint)
    }

    /// Add the variables file `idx` defines, checking their names.
    fn define_vars(&mut self, idx: usize) -> Result<()> {
        let f = &self.files[idx];
        let defs: Vec<(String, String)> =
            f.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in defs {
            let key = sourcemap::join("vars", &k);
            if !vars::valid_name(&k) {
                return Err(located(
                    &self.files[idx],
                    &key,
                    format!("`{k}` is not a valid variable name"),
                    Some("use letters, digits, `_`, `.` and `-`".to_string()),
                ));
            }
            if vars::is_builtin_name(&k) {
                return Err(located(
                    &self.files[idx],
                    &key,
                    format!("`{k}` is a built-in variable and cannot be defined"),
                    Some(
                        "`arch`, `deb_arch`, `rpm_arch` and `os.*` come from the image; pick another name"
                            .to_string(),
                    ),
                ));
            }
            // A later definition (the including file) overrides an earlier one.
            self.defs.shift_remove(&k);
            self.defs.insert(
                k,
                VarDef {
                    value: v,
                    file: idx,
                },
            );
        }
        Ok(())
    }

    fn early_resolver<'a>(
        &'a self,
        builtins: &'a BTreeMap<String, String>,
        overrides: &'a BTreeMap<String, String>,
    ) -> Resolver<'a> {
        Resolver {
            files: &self.files,
            defs: &self.defs,
            builtins,
            overrides,
            no_builtins: Some(BASE_NO_OS),
            cache: BTreeMap::new(),
        }
    }

    /// `image.platforms`, checked: each platform's OCI architecture, in
    /// the recipe's order (empty when it names none).
    pub fn platforms(&self) -> Result<Vec<String>> {
        let rf = &self.files[0];
        if self.image.platforms.is_empty() {
            return Ok(Vec::new());
        }
        if self.image.architecture.is_some() {
            return Err(located(
                rf,
                "image.platforms",
                "image.platforms and image.architecture are both set",
                Some(
                    "keep one: platforms builds an image per platform, architecture one image"
                        .to_string(),
                ),
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for (i, p) in self.image.platforms.iter().enumerate() {
            let key = format!("image.platforms[{i}]");
            let arch = parse_platform(p)
                .map_err(|m| located(rf, &key, m, Some(PLATFORM_HINT.to_string())))?;
            if out.contains(&arch) {
                return Err(located(
                    rf,
                    &key,
                    format!("platform {p:?} is listed twice"),
                    Some("name each platform once".to_string()),
                ));
            }
            out.push(arch);
        }
        Ok(out)
    }

    /// Build for one platform of a multi-platform build: `arch` (an OCI
    /// architecture from [`parse_platform`]) takes the place of
    /// `image.architecture` and `image.platforms`.
    pub fn for_architecture(mut self, arch: &str) -> Loaded {
        self.platform_arch = Some(arch.to_string());
        self
    }

    /// `image.architecture`, variables expanded (built-ins are not
    /// available); the platform's when building for one.
    pub fn architecture(&self, overrides: &BTreeMap<String, String>) -> Result<Option<String>> {
        if let Some(a) = &self.platform_arch {
            return Ok(Some(a.clone()));
        }
        let empty = BTreeMap::new();
        let mut r = self.early_resolver(&empty, overrides);
        let Some(a) = &self.image.architecture else {
            return Ok(None);
        };
        let a = r.expand_str(a, &self.files[0], "image.architecture", &mut Vec::new())?;
        if !ARCHITECTURES.contains(&a.as_str()) {
            return Err(located(
                &self.files[0],
                "image.architecture",
                format!("unknown architecture {a:?}"),
                Some(format!("use one of: {}", ARCHITECTURES.join(", "))),
            ));
        }
        Ok(Some(a))
    }

    /// `image.base`, variables expanded (`${os.*}` is not available; `${arch}`
    /// only when the recipe sets the architecture).
    pub fn base(&self, overrides: &BTreeMap<String, String>) -> Result<Option<String>> {
        let mut builtins = BTreeMap::new();
        if let Some(a) = self.architecture(overrides)? {
            builtins = vars::arch_builtins(&a);
        }
        let mut r = self.early_resolver(&builtins, overrides);
        match &self.image.base {
            None => Ok(None),
            Some(b) => Ok(Some(r.expand_str(
                b,
                &self.files[0],
                "image.base",
                &mut Vec::new(),
            )?)),
        }
    }

    /// Expand every string value against the built-ins (`arch`, os-release
    /// of the base) and the overrides, and validate.
    pub fn expand(
        &self,
        arch: &str,
        os_release: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Recipe> {
        let base = self.base(overrides)?;
        let builtins = vars::builtins(arch, os_release);
        let mut r = Resolver {
            files: &self.files,
            defs: &self.defs,
            builtins: &builtins,
            overrides,
            no_builtins: None,
            cache: BTreeMap::new(),
        };
        let values = self.values(&mut r, &builtins, overrides)?;
        let (image, layer_specs, lint) = self.expand_files(&mut r)?;
        let Some(img) = image else {
            return Err(located(&self.files[0], "image", "no [image] table", None));
        };
        self.check_image(&img)?;
        self.check_lint(&lint)?;
        let architecture = self.architecture(overrides)?;
        let layers = self.ordered_layers(layer_specs)?;
        Ok(Recipe {
            dir: self.dir.clone(),
            inputs: Arc::clone(&self.inputs),
            files: self.files.clone(),
            image: Image {
                name: img.name,
                tag: img.tag,
                base,
                architecture,
                labels: img.labels,
                annotations: img.annotations,
            },
            layers,
            vars: values,
            lint_allow: lint.allow,
        })
    }

    /// Each allowed rule once, each with a reason (its id is checked
    /// against the rules by the linter).
    fn check_lint(&self, lint: &LintSection) -> Result<()> {
        let rf = &self.files[0];
        for (i, a) in lint.allow.iter().enumerate() {
            if a.reason.trim().is_empty() {
                return Err(located(
                    rf,
                    &format!("lint.allow[{i}].reason"),
                    format!("allowing {} needs a reason", a.rule),
                    Some(
                        "say why the rule does not apply to this recipe: reason = \"...\"; it is shown with every finding it allows"
                            .to_string(),
                    ),
                ));
            }
            if let Some(j) = lint.allow[..i].iter().position(|b| b.rule == a.rule) {
                return Err(located(
                    rf,
                    &format!("lint.allow[{i}].rule"),
                    format!("{} is already allowed at lint.allow[{j}]", a.rule),
                    Some("allow each rule once".to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Every variable's value as the recipe sees it: the definitions
    /// (expanded), then the built-ins, then the overrides on top.
    fn values(
        &self,
        r: &mut Resolver<'_>,
        builtins: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for name in self.defs.keys() {
            if let Some(v) = r.value(name, &mut Vec::new())? {
                values.insert(name.clone(), v);
            }
        }
        values.extend(builtins.iter().map(|(k, v)| (k.clone(), v.clone())));
        values.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(values)
    }

    /// Expand every file's values and read them again as a recipe (file 0)
    /// or a fragment: the `[image]` table of the recipe, each file's
    /// layers, in file order, and the recipe's `[lint]` table.
    fn expand_files(
        &self,
        r: &mut Resolver<'_>,
    ) -> Result<(Option<ImageSection>, Vec<Vec<LayerSpec>>, LintSection)> {
        let mut layer_specs: Vec<Vec<LayerSpec>> = Vec::new();
        let mut image = None;
        let mut lint = LintSection::default();
        for (fi, f) in self.files.iter().enumerate() {
            let t = Self::expand_file(r, fi, f)?;
            let wrap = |e: toml::de::Error| {
                located(
                    f,
                    "",
                    format!("after expanding variables: {}", e.message().trim()),
                    None,
                )
            };
            if fi == 0 {
                let doc: RecipeFile = toml::Value::Table(t).try_into().map_err(wrap)?;
                image = Some(doc.image);
                lint = doc.lint;
                layer_specs.push(doc.layer);
            } else {
                let doc: FragmentFile = toml::Value::Table(t).try_into().map_err(wrap)?;
                layer_specs.push(doc.layer);
            }
        }
        Ok((image, layer_specs, lint))
    }

    /// File `fi`'s table with its variables expanded, without `vars` and
    /// `include`. The recipe's `image.base` is left as written: it is
    /// expanded earlier, with fewer variables.
    fn expand_file(r: &mut Resolver<'_>, fi: usize, f: &SourceFile) -> Result<toml::Table> {
        let mut t = f.raw.clone();
        t.remove("vars");
        t.remove("include");
        for (k, v) in t.iter_mut() {
            if fi == 0 && k == "image" {
                if let toml::Value::Table(it) = v {
                    for (ik, iv) in it.iter_mut() {
                        if ik != "base" {
                            let key = sourcemap::join("image", ik);
                            r.expand_value(iv, f, &key, &mut Vec::new())?;
                        }
                    }
                }
                continue;
            }
            let key = sourcemap::key_segment(k);
            r.expand_value(v, f, &key, &mut Vec::new())?;
        }
        Ok(t)
    }

    /// The image name and tag, as expanded, are valid.
    fn check_image(&self, img: &ImageSection) -> Result<()> {
        let rf = &self.files[0];
        if !valid_image_name(&img.name) {
            return Err(located(
                rf,
                "image.name",
                format!("image name {:?} is not valid", img.name),
                Some("use lowercase letters, digits, `.`, `_` and `-`".to_string()),
            ));
        }
        if !valid_tag(&img.tag) {
            return Err(located(
                rf,
                "image.tag",
                format!("tag {:?} is not valid", img.tag),
                Some("a tag is up to 128 letters, digits, `.`, `_`, `-`, not starting with `.` or `-`".to_string()),
            ));
        }
        Ok(())
    }

    /// The layers of every file in build order (`order` interleaves the
    /// files' layers: included ones first), each checked.
    fn ordered_layers(&self, layer_specs: Vec<Vec<LayerSpec>>) -> Result<Vec<RecipeLayer>> {
        let mut layers = Vec::new();
        let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut per_file: Vec<Vec<Option<LayerSpec>>> = layer_specs
            .into_iter()
            .map(|v| v.into_iter().map(Some).collect())
            .collect();
        for &(fi, li) in &self.order {
            let Some(spec) = per_file
                .get_mut(fi)
                .and_then(|v| v.get_mut(li))
                .and_then(Option::take)
            else {
                continue;
            };
            let rl = RecipeLayer {
                spec,
                file: fi,
                index: li,
            };
            self.check_layer(&rl, &mut seen)?;
            layers.push(rl);
        }
        Ok(layers)
    }

    /// A layer has a usable name, not used by an earlier layer (`seen`:
    /// name to file and index), and the files it names can be opened.
    fn check_layer(
        &self,
        rl: &RecipeLayer,
        seen: &mut BTreeMap<String, (usize, usize)>,
    ) -> Result<()> {
        let (fi, li) = (rl.file, rl.index);
        let f = &self.files[fi];
        let name = rl.spec.name.clone();
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(located(
                f,
                &rl.key_of("name"),
                "a layer needs a non-empty name without control characters",
                None,
            ));
        }
        if let Some(&(pf, pl)) = seen.get(&name) {
            let first = &self.files[pf];
            let pkey = format!("layer[{pl}].name");
            let where_ = match first.map.locate(&pkey) {
                Some((l, _)) => format!("{}:{l}", first.display.display()),
                None => first.display.display().to_string(),
            };
            return Err(located(
                f,
                &rl.key_of("name"),
                format!("layer name {name:?} is already used at {where_} ({pkey})"),
                Some(
                    "layer names must be unique across the recipe and its includes; rename one"
                        .to_string(),
                ),
            ));
        }
        seen.insert(name, (fi, li));
        for (k, rel) in layer_inputs(&rl.spec) {
            if let Err(e) = self.inputs.open(&rel) {
                return Err(located(
                    f,
                    &rl.key_of(&k),
                    e.to_string(),
                    Some(e.hint().to_string()),
                ));
            }
        }
        Ok(())
    }
}

impl Recipe {
    /// A recipe error at `key` of file `file`.
    pub fn error(
        &self,
        file: usize,
        key: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Error {
        match self.files.get(file) {
            Some(f) => located(f, key, message, hint),
            None => Error::Usage(message.into()),
        }
    }

    /// File name (as shown) and line of `key` in file `file`.
    pub fn locate(&self, file: usize, key: &str) -> (PathBuf, Option<usize>) {
        match self.files.get(file) {
            Some(f) => (f.display.clone(), f.map.locate(key).map(|l| l.0)),
            None => (PathBuf::new(), None),
        }
    }
}

/// Parse `--var K=V` arguments.
pub fn parse_overrides(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(Error::Usage(format!("--var {a:?}: expected NAME=VALUE")));
        };
        if !vars::valid_name(k) {
            return Err(Error::Usage(format!(
                "--var {a:?}: {k:?} is not a variable name (letters, digits, `_`, `.`, `-`)"
            )));
        }
        if vars::is_builtin_name(k) {
            return Err(Error::Usage(format!(
                "--var {a:?}: `{k}` is built in (arch and os.* come from the image)"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
