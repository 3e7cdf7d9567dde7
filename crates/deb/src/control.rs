//! deb822 control data: the stanza format of `Packages` indexes, the dpkg
//! `status` database, `Release` files and `DEBIAN/control`, plus typed
//! accessors for binary package stanzas and the dependency-field grammar.
//!
//! The format: stanzas are separated by blank lines (empty or whitespace
//! only). A field is `Name: value` starting in column 0; a line starting
//! with a space or tab continues the previous field (a continuation line
//! holding only `.` stands for an empty line in multi-line text). Field
//! names match case-insensitively but keep their spelling and order.
//! Comment lines (`#` in column 0) exist only in source control files
//! (`debian/control`); dpkg's status file, `Packages` and `Release` have
//! none, so they are an error unless [`Syntax::with_comments`] is used.

use std::fmt;

use super::version::{Version, VersionError};

/// A syntax or value error in control data, with its 1-based line. The
/// caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// What is wrong, and what to do when not obvious.
    pub message: String,
    /// The error of the field's value the message tells of, when there is
    /// one (its `source()`); boxed, so the error stays small.
    pub cause: Option<Box<FieldCause>>,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl ControlError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ControlError {
            line,
            message: message.into(),
            cause: None,
        }
    }

    /// The value of a field is refused for `cause`; `message` tells of it.
    fn because(line: usize, message: String, cause: impl Into<FieldCause>) -> Self {
        ControlError {
            line,
            message,
            cause: Some(Box::new(cause.into())),
        }
    }
}

/// Why the value of a field is refused, as a [`ControlError`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldCause {
    /// The `Version` field.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// A dependency field.
    #[error(transparent)]
    Relation(#[from] RelationError),
    /// The `Status` field.
    #[error(transparent)]
    Status(#[from] StatusError),
}

/// Why a dependency field is refused: the field, its text and the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {fault} in `{text}`")]
pub struct RelationError {
    /// The field (`Depends`).
    pub field: String,
    /// Its value, without surrounding blanks.
    pub text: String,
    /// What is wrong with it.
    #[source]
    pub fault: RelationFault,
}

/// What is wrong with a dependency field ([`RelationError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationFault {
    /// Nothing between two commas.
    #[error("empty entry between commas")]
    EmptyEntry,
    /// `|` in a field without alternatives (the field).
    #[error("alternatives (`|`) are not allowed in {0}")]
    Alternatives(String),
    /// Nothing on one side of a `|`.
    #[error("empty alternative around `|`")]
    EmptyAlternative,
    /// Not a package name.
    #[error(
        "invalid package name `{0}` (letters, digits and `+-._`, starting with a letter or digit)"
    )]
    Name(String),
    /// `name:` with nothing after the colon.
    #[error("empty architecture qualifier after `{0}:`")]
    EmptyQualifier(String),
    /// `name (` with no `)`.
    #[error("missing `)` after `{0} (`")]
    UnclosedVersion(String),
    /// A version restriction without an operator (what is in the brackets).
    #[error("missing relation operator (one of << <= = >= >>) in `({0})`")]
    NoOperator(String),
    /// The version of a restriction.
    #[error("{0}")]
    Version(#[source] VersionError),
    /// `name [` with no `]`.
    #[error("missing `]` after `{0} [`")]
    UnclosedArches(String),
    /// `name []`.
    #[error("empty architecture list after `{0}`")]
    EmptyArches(String),
    /// `name <` with no `>`.
    #[error("missing `>` after `{0} <`")]
    UnclosedProfiles(String),
    /// `name <>`.
    #[error("empty build profile list after `{0}`")]
    EmptyProfiles(String),
    /// Text after the relation.
    #[error("unexpected `{rest}` after `{name}`")]
    Trailing {
        /// The package name.
        name: String,
        /// What follows the relation.
        rest: String,
    },
}

/// Why a dpkg `Status` field is refused ([`Status::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Not three words (the field's text).
    #[error("field `Status`: expected three words (want flag state), found `{0}`")]
    Words(String),
    /// A word that is not one of dpkg's.
    #[error("field `Status`: unknown {what} `{word}` (expected one of {expected})")]
    Unknown {
        /// `want`, `flag` or `state`.
        what: &'static str,
        /// The word.
        word: String,
        /// The words dpkg knows there, comma-separated.
        expected: String,
    },
}

/// Which dialect to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Syntax {
    /// Whether `#` lines in column 0 are comments (source control files).
    pub comments: bool,
}

impl Syntax {
    /// dpkg status, `Packages`, `Release`, `DEBIAN/control`: no comments.
    pub fn strict() -> Self {
        Syntax { comments: false }
    }
    /// `debian/control` and other deb822 files that allow comments.
    pub fn with_comments() -> Self {
        Syntax { comments: true }
    }
}

/// One field of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written.
    pub name: String,
    /// The value: the first line with surrounding whitespace removed, then
    /// each continuation line after a `\n`, as written (leading whitespace
    /// kept, trailing whitespace removed).
    pub value: String,
    /// 1-based line of the field name.
    pub line: usize,
}

impl Field {
    /// The value with all line breaks and runs of whitespace folded to
    /// single spaces (for simple and folded fields such as `Depends`).
    pub fn folded(&self) -> String {
        // Most values are folded already: one space between words, no
        // other whitespace (ASCII 9-13, or anything non-ASCII, which may be).
        let mut after_space = true;
        for &b in self.value.as_bytes() {
            match b {
                b' ' if after_space => return self.fold(),
                b' ' => after_space = true,
                0x09..=0x0d | 0x80..=0xff => return self.fold(),
                _ => after_space = false,
            }
        }
        if after_space {
            return self.fold();
        }
        self.value.clone()
    }

    fn fold(&self) -> String {
        self.value.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The continuation lines of a multi-line field (`Description`,
    /// `Conffiles`, `SHA256` in `Release`), with the one leading space
    /// removed and ` .` turned into an empty line.
    pub(crate) fn continuation_lines(&self) -> Vec<&str> {
        self.value
            .split('\n')
            .skip(1)
            .map(|l| {
                let l = l.strip_prefix([' ', '\t']).unwrap_or(l);
                if l == "." {
                    ""
                } else {
                    l
                }
            })
            .collect()
    }

    /// The first line of the value (may be empty, e.g. `SHA256:` in
    /// `Release`).
    pub fn first_line(&self) -> &str {
        self.value.split('\n').next().unwrap_or("")
    }
}

/// One stanza (paragraph): fields in their original order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stanza {
    /// 1-based line of the first field.
    pub line: usize,
    fields: Vec<Field>,
}

impl Stanza {
    /// An empty stanza (for building one to write).
    pub fn new() -> Self {
        Stanza::default()
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The field named `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The raw value of the field named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// Sets a field: replaces the value of an existing field of that name
    /// (keeping its place and spelling) or appends a new one. `value` is
    /// stored as given (see [`Field::value`] for the multi-line form).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(f) => f.value = value,
            None => self.fields.push(Field {
                name: name.to_string(),
                value,
                line: 0,
            }),
        }
    }

    /// Removes the field named `name`, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Field> {
        let i = self
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(i))
    }
}

/// Writes the stanza in deb822 form, one `Name: value` per field and the
/// continuation lines as stored, each line ending in `\n` (no blank line
/// after the stanza).
impl fmt::Display for Stanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for field in &self.fields {
            let mut lines = field.value.split('\n');
            let first = lines.next().unwrap_or("");
            if first.is_empty() {
                writeln!(f, "{}:", field.name)?;
            } else {
                writeln!(f, "{}: {}", field.name, first)?;
            }
            for l in lines {
                writeln!(f, "{l}")?;
            }
        }
        Ok(())
    }
}

/// Parses control data into stanzas.
pub fn parse(text: &str, syntax: Syntax) -> Result<Vec<Stanza>, ControlError> {
    let mut stanzas = Vec::new();
    let mut lines = Lines::new(syntax, None);
    for (i, raw) in text.split('\n').enumerate() {
        stanzas.extend(lines.line(i + 1, raw)?);
    }
    stanzas.extend(lines.finish());
    Ok(stanzas)
}

/// The stanza parser, fed one line at a time (by [`parse`] and
/// [`read_packages`]).
struct Lines<'k> {
    syntax: Syntax,
    /// Only these fields are kept (all of them when None); the others are
    /// checked but their values are not stored.
    keep: Option<&'k [&'k str]>,
    cur: Option<Stanza>,
    /// Whether the last field of the stanza is kept (None before any field).
    last_kept: Option<bool>,
    /// With `keep`: every field name of the stanza so far (concatenated)
    /// with its end in `seen_names` and its line.
    seen_names: String,
    seen: Vec<(usize, usize)>,
}

impl<'k> Lines<'k> {
    fn new(syntax: Syntax, keep: Option<&'k [&'k str]>) -> Self {
        Lines {
            syntax,
            keep,
            cur: None,
            last_kept: None,
            seen_names: String::new(),
            seen: Vec::new(),
        }
    }

    /// Takes line `n` (1-based, without its `\n`); returns the stanza a
    /// blank line ends.
    fn line(&mut self, n: usize, raw: &str) -> Result<Option<Stanza>, ControlError> {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        // Most lines start with a visible character: not blank.
        let visible = line.as_bytes().first().is_some_and(u8::is_ascii_graphic);
        if !visible && line.trim().is_empty() {
            return Ok(self.finish());
        }
        if line.starts_with('#') {
            if self.syntax.comments {
                return Ok(None);
            }
            return Err(ControlError::new(
                n,
                "comment lines are not allowed in this kind of file",
            ));
        }
        if matches!(line.as_bytes().first(), Some(b' ' | b'\t')) {
            self.continuation(n, line)?;
            return Ok(None);
        }
        let (name, value) = split_field(n, line)?;
        let stanza = self.cur.get_or_insert_with(|| Stanza {
            line: n,
            fields: Vec::new(),
        });
        let first = match self.keep {
            None => stanza.field(name).map(|f| f.line),
            Some(_) => {
                let mut start = 0;
                self.seen.iter().find_map(|&(end, line)| {
                    let seen = &self.seen_names[start..end];
                    start = end;
                    seen.eq_ignore_ascii_case(name).then_some(line)
                })
            }
        };
        if let Some(first) = first {
            return Err(ControlError::new(
                n,
                format!("duplicate field `{name}` (first at line {first}) in the same stanza"),
            ));
        }
        let kept = match self.keep {
            None => true,
            Some(keep) => {
                self.seen_names.push_str(name);
                self.seen.push((self.seen_names.len(), n));
                keep.iter().any(|k| k.eq_ignore_ascii_case(name))
            }
        };
        self.last_kept = Some(kept);
        if kept {
            stanza.fields.push(Field {
                name: name.to_string(),
                value: value.trim().to_string(),
                line: n,
            });
        }
        Ok(None)
    }

    /// Takes the continuation line `n`: adds it to the value of the last
    /// field if that is kept.
    fn continuation(&mut self, n: usize, line: &str) -> Result<(), ControlError> {
        match self.last_kept {
            Some(true) => {
                if let Some(field) = self.cur.as_mut().and_then(|s| s.fields.last_mut()) {
                    field.value.push('\n');
                    field.value.push_str(line.trim_end());
                }
                Ok(())
            }
            Some(false) => Ok(()),
            None => Err(ControlError::new(
                n,
                "continuation line (starting with a space) outside any field",
            )),
        }
    }

    /// The stanza in progress, if any (at a blank line or the end).
    fn finish(&mut self) -> Option<Stanza> {
        self.last_kept = None;
        self.seen_names.clear();
        self.seen.clear();
        self.cur.take()
    }
}

/// A relation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `<<`
    Earlier,
    /// `<=` (also the obsolete `<`)
    EarlierOrEqual,
    /// `=`
    Equal,
    /// `>=` (also the obsolete `>`)
    LaterOrEqual,
    /// `>>`
    Later,
}

impl Op {
    /// Whether `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let o = have.cmp(want);
        match self {
            Op::Earlier => o == Less,
            Op::EarlierOrEqual => o != Greater,
            Op::Equal => o == Equal,
            Op::LaterOrEqual => o != Less,
            Op::Later => o == Greater,
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierOrEqual => "<=",
            Op::Equal => "=",
            Op::LaterOrEqual => ">=",
            Op::Later => ">>",
        }
    }
}

/// One relation: `name[:archqual] [(op version)] [arches] <profiles>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier after `:` (`any`, `native`, or an architecture).
    pub arch: Option<String>,
    /// Version constraint.
    pub version: Option<(Op, Version)>,
    /// Architecture restriction list, entries as written (`amd64`, `!i386`).
    pub arches: Vec<String>,
    /// Build profile formulas, one list per `<...>` group.
    pub profiles: Vec<Vec<String>>,
}

impl Relation {
    /// Whether `version` satisfies this relation's constraint (always, when
    /// there is none).
    pub(crate) fn version_matches(&self, version: &Version) -> bool {
        self.version
            .as_ref()
            .is_none_or(|(op, want)| op.holds(version, want))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.version {
            write!(f, " ({} {v})", op.as_str())?;
        }
        if !self.arches.is_empty() {
            write!(f, " [{}]", self.arches.join(" "))?;
        }
        for p in &self.profiles {
            write!(f, " <{}>", p.join(" "))?;
        }
        Ok(())
    }
}

/// A dependency field: all of the outer list must hold; each inner list is
/// a set of alternatives (`a | b`), first preferred.
pub(crate) type Relations = Vec<Vec<Relation>>;

/// Writes a dependency field back in canonical form.
pub(crate) fn format_relations(rels: &Relations) -> String {
    rels.iter()
        .map(|alts| {
            alts.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn valid_name(name: &str) -> bool {
    name.as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// Parses a dependency field (`Depends`, `Pre-Depends`, `Conflicts`,
/// `Provides`, ...). `field` names the field in error messages;
/// `alternatives` says whether `|` is allowed (not in `Conflicts`,
/// `Breaks`, `Replaces`, `Provides`). An empty value is an empty list; a
/// trailing comma is tolerated.
pub fn parse_relations(
    field: &str,
    text: &str,
    alternatives: bool,
) -> Result<Relations, RelationError> {
    let fail = |fault: RelationFault| RelationError {
        field: field.to_string(),
        text: text.trim().to_string(),
        fault,
    };
    let mut out = Vec::new();
    let items: Vec<&str> = text.split(',').collect();
    for (i, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            if i + 1 == items.len() && i > 0 || items.len() == 1 {
                continue; // trailing comma, or an empty field
            }
            return Err(fail(RelationFault::EmptyEntry));
        }
        let alts: Vec<&str> = item.split('|').collect();
        if alts.len() > 1 && !alternatives {
            return Err(fail(RelationFault::Alternatives(field.to_string())));
        }
        let mut group = Vec::new();
        for alt in alts {
            group.push(parse_relation(alt).map_err(&fail)?);
        }
        out.push(group);
    }
    Ok(out)
}

/// Splits the field line `n` into name and value, refusing a name that
/// starts with `-` (OpenPGP armour) or holds blanks or control characters.
fn split_field(n: usize, line: &str) -> Result<(&str, &str), ControlError> {
    if line.starts_with('-') {
        return Err(ControlError::new(
            n,
            format!(
                "field name must not start with `-` (found `{}`); OpenPGP-signed data must be \
                 verified and unwrapped first",
                line.trim_end()
            ),
        ));
    }
    let Some((name, value)) = line.split_once(':') else {
        return Err(ControlError::new(
            n,
            format!("expected `Field: value`, found `{}`", line.trim_end()),
        ));
    };
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ControlError::new(
            n,
            format!("field name `{name}` contains {c:?}; a field name must be followed by a colon"),
        ));
    }
    Ok((name, value))
}

/// Parses a version restriction after `name (` up to its `)`; returns it
/// and the text after the `)`, without leading blanks.
fn parse_restriction<'t>(
    r: &'t str,
    name: &str,
) -> Result<((Op, Version), &'t str), RelationFault> {
    let Some(close) = r.find(')') else {
        return Err(RelationFault::UnclosedVersion(name.to_string()));
    };
    let inner = r[..close].trim();
    let ops = [
        ("<<", Op::Earlier),
        ("<=", Op::EarlierOrEqual),
        (">=", Op::LaterOrEqual),
        (">>", Op::Later),
        ("=", Op::Equal),
        ("<", Op::EarlierOrEqual),
        (">", Op::LaterOrEqual),
    ];
    let Some((op, vtext)) = ops
        .iter()
        .find_map(|(p, op)| inner.strip_prefix(p).map(|v| (*op, v.trim())))
    else {
        return Err(RelationFault::NoOperator(inner.to_string()));
    };
    let v = Version::parse(vtext).map_err(RelationFault::Version)?;
    Ok(((op, v), r[close + 1..].trim_start()))
}

fn parse_relation(text: &str) -> Result<Relation, RelationFault> {
    let s = text.trim();
    if s.is_empty() {
        return Err(RelationFault::EmptyAlternative);
    }
    let end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | '<' | ':'))
        .unwrap_or(s.len());
    let name = &s[..end];
    if !valid_name(name) {
        return Err(RelationFault::Name(name.to_string()));
    }
    let mut rest = &s[end..];
    let mut rel = Relation {
        name: name.to_string(),
        arch: None,
        version: None,
        arches: Vec::new(),
        profiles: Vec::new(),
    };
    if let Some(r) = rest.strip_prefix(':') {
        let end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(r.len());
        if end == 0 {
            return Err(RelationFault::EmptyQualifier(name.to_string()));
        }
        rel.arch = Some(r[..end].to_string());
        rest = &r[end..];
    }
    rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix('(') {
        let (version, after) = parse_restriction(r, name)?;
        rel.version = Some(version);
        rest = after;
    }
    while let Some(r) = rest.strip_prefix('[') {
        let Some(close) = r.find(']') else {
            return Err(RelationFault::UnclosedArches(name.to_string()));
        };
        let list: Vec<String> = r[..close].split_whitespace().map(str::to_string).collect();
        if list.is_empty() {
            return Err(RelationFault::EmptyArches(name.to_string()));
        }
        rel.arches.extend(list);
        rest = r[close + 1..].trim_start();
    }
    while let Some(r) = rest.strip_prefix('<') {
        let Some(close) = r.find('>') else {
            return Err(RelationFault::UnclosedProfiles(name.to_string()));
        };
        let list: Vec<String> = r[..close].split_whitespace().map(str::to_string).collect();
        if list.is_empty() {
            return Err(RelationFault::EmptyProfiles(name.to_string()));
        }
        rel.profiles.push(list);
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(RelationFault::Trailing {
            name: name.to_string(),
            rest: rest.to_string(),
        });
    }
    Ok(rel)
}

/// The `Multi-Arch` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    /// Absent or `no`.
    #[default]
    No,
    /// `same`: co-installable with itself for other architectures.
    Same,
    /// `foreign`: satisfies dependencies from any architecture.
    Foreign,
    /// `allowed`: satisfies `name:any` dependencies from any architecture.
    Allowed,
}

impl MultiArch {
    /// The field value as written in control files.
    pub fn as_str(self) -> &'static str {
        match self {
            MultiArch::No => "no",
            MultiArch::Same => "same",
            MultiArch::Foreign => "foreign",
            MultiArch::Allowed => "allowed",
        }
    }
}

/// The dpkg `Status` field: `want flag state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `install`, `hold`, `deinstall`, `purge` or `unknown`.
    pub want: String,
    /// `ok` or `reinstreq`.
    pub flag: String,
    /// `installed`, `unpacked`, `config-files`, `not-installed`, ...
    pub state: String,
}

impl Status {
    /// Parses `want flag state`, checking each word against dpkg's values.
    pub fn parse(text: &str) -> Result<Status, StatusError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [want, flag, state] = words[..] else {
            return Err(StatusError::Words(text.trim().to_string()));
        };
        let check = |word: &str, what: &'static str, allowed: &[&str]| {
            if allowed.contains(&word) {
                Ok(word.to_string())
            } else {
                Err(StatusError::Unknown {
                    what,
                    word: word.to_string(),
                    expected: allowed.join(", "),
                })
            }
        };
        Ok(Status {
            want: check(
                want,
                "want",
                &["unknown", "install", "hold", "deinstall", "purge"],
            )?,
            flag: check(flag, "flag", &["ok", "reinstreq"])?,
            state: check(
                state,
                "state",
                &[
                    "not-installed",
                    "config-files",
                    "half-installed",
                    "unpacked",
                    "half-configured",
                    "triggers-awaited",
                    "triggers-pending",
                    "installed",
                ],
            )?,
        })
    }

    /// Whether the package is fully installed and configured (`ok
    /// installed`, whatever the selection: `install`, `hold`, ...). Only
    /// such packages satisfy dependencies.
    pub(crate) fn is_installed(&self) -> bool {
        self.flag == "ok" && self.state == "installed"
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.want, self.flag, self.state)
    }
}

/// The fields of a binary package stanza that installation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPackage {
    /// `Package`
    pub name: String,
    /// `Version`
    pub version: Version,
    /// `Architecture` (`amd64`, `arm64`, `all`, ...)
    pub architecture: String,
    /// `Multi-Arch`
    pub multi_arch: MultiArch,
    /// `Essential: yes`
    pub essential: bool,
    /// `Priority`
    pub priority: Option<String>,
    /// `Provides` (no alternatives; versions only with `=`)
    pub provides: Vec<Relation>,
    /// `Pre-Depends`
    pub pre_depends: Relations,
    /// `Depends`
    pub depends: Relations,
    /// `Conflicts`
    pub conflicts: Relations,
    /// `Breaks`
    pub breaks: Relations,
    /// `Replaces`
    pub replaces: Relations,
    /// `Filename` (path relative to the repository root)
    pub filename: Option<String>,
    /// `Size` in bytes
    pub size: Option<u64>,
    /// `SHA256`, lowercase hex
    pub sha256: Option<String>,
    /// `Status` (dpkg status database only)
    pub status: Option<Status>,
}

impl BinaryPackage {
    /// Reads the typed fields of a package stanza. `Package`, `Version` and
    /// `Architecture` are required. Errors carry the line of the field.
    pub(crate) fn from_stanza(stanza: &Stanza) -> Result<BinaryPackage, ControlError> {
        let at = |name: &str| stanza.field(name).map_or(stanza.line, |f| f.line);
        let err = |name: &str, msg: String| ControlError::new(at(name), msg);
        let required = |name: &str| {
            stanza
                .field(name)
                .map(Field::folded)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    let pkg = stanza.get("Package").unwrap_or("?");
                    err(
                        name,
                        format!("stanza of package `{pkg}` has no `{name}` field"),
                    )
                })
        };
        let name = required("Package")?;
        if !valid_name(&name) {
            return Err(err("Package", format!("invalid package name `{name}`")));
        }
        let version = Version::parse(&required("Version")?).map_err(|e| {
            ControlError::because(
                at("Version"),
                format!("field `Version` of `{name}`: {e}"),
                e,
            )
        })?;
        let architecture = required("Architecture")?;
        let multi_arch = multi_arch_field(stanza, &name)?;
        let essential = essential_field(stanza, &name)?;
        let rels = |field: &str, alternatives: bool| -> Result<Relations, ControlError> {
            match stanza.field(field) {
                None => Ok(Vec::new()),
                Some(f) => parse_relations(field, &f.folded(), alternatives).map_err(|e| {
                    ControlError::because(f.line, format!("package `{name}`: {e}"), e)
                }),
            }
        };
        let provides: Vec<Relation> = rels("Provides", false)?.into_iter().flatten().collect();
        if let Some(bad) = provides
            .iter()
            .find(|r| r.version.as_ref().is_some_and(|(op, _)| *op != Op::Equal))
        {
            return Err(err(
                "Provides",
                format!("package `{name}`: field `Provides`: only `=` versions may be provided, found `{bad}`"),
            ));
        }
        let size = size_field(stanza, &name)?;
        let sha256 = sha256_field(stanza, &name)?;
        let status =
            match stanza.field("Status") {
                None => None,
                Some(f) => Some(Status::parse(&f.folded()).map_err(|e| {
                    ControlError::because(f.line, format!("package `{name}`: {e}"), e)
                })?),
            };
        Ok(BinaryPackage {
            priority: stanza.field("Priority").map(Field::folded),
            filename: stanza.field("Filename").map(Field::folded),
            provides,
            pre_depends: rels("Pre-Depends", true)?,
            depends: rels("Depends", true)?,
            conflicts: rels("Conflicts", false)?,
            breaks: rels("Breaks", false)?,
            replaces: rels("Replaces", false)?,
            size,
            sha256,
            status,
            name,
            version,
            architecture,
            multi_arch,
            essential,
        })
    }
}

/// The line of the field `field` of `stanza`, else of the stanza.
fn field_line(stanza: &Stanza, field: &str) -> usize {
    stanza.field(field).map_or(stanza.line, |f| f.line)
}

/// The `Multi-Arch` field of the package `name`.
fn multi_arch_field(stanza: &Stanza, name: &str) -> Result<MultiArch, ControlError> {
    Ok(match stanza.field("Multi-Arch").map(Field::folded).as_deref() {
        None | Some("no") => MultiArch::No,
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        Some(other) => {
            return Err(ControlError::new(
                field_line(stanza, "Multi-Arch"),
                format!(
                    "field `Multi-Arch` of `{name}`: `{other}` is not one of no, same, foreign, allowed"
                ),
            ))
        }
    })
}

/// The `Essential` field of the package `name`.
fn essential_field(stanza: &Stanza, name: &str) -> Result<bool, ControlError> {
    Ok(
        match stanza.field("Essential").map(Field::folded).as_deref() {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => {
                return Err(ControlError::new(
                    field_line(stanza, "Essential"),
                    format!("field `Essential` of `{name}`: `{other}` is not yes or no"),
                ))
            }
        },
    )
}

/// The `Size` field of the package `name`.
fn size_field(stanza: &Stanza, name: &str) -> Result<Option<u64>, ControlError> {
    Ok(match stanza.field("Size") {
        None => None,
        Some(f) => Some(f.folded().parse::<u64>().map_err(|_| {
            ControlError::new(
                f.line,
                format!(
                    "field `Size` of `{name}`: `{}` is not a byte count",
                    f.folded()
                ),
            )
        })?),
    })
}

/// The `SHA256` field of the package `name`, in lower case.
fn sha256_field(stanza: &Stanza, name: &str) -> Result<Option<String>, ControlError> {
    Ok(match stanza.field("SHA256") {
        None => None,
        Some(f) => {
            let h = f.folded().to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ControlError::new(
                    f.line,
                    format!("field `SHA256` of `{name}`: `{h}` is not 64 hex digits"),
                ));
            }
            Some(h)
        }
    })
}

/// Parses a `Packages` index into packages, in file order.
pub fn parse_packages(text: &str) -> Result<Vec<BinaryPackage>, ControlError> {
    parse(text, Syntax::strict())?
        .iter()
        .map(BinaryPackage::from_stanza)
        .collect()
}

/// The fields of a `Packages` stanza that [`BinaryPackage::from_stanza`]
/// reads; [`read_packages`] keeps only these.
pub(crate) const INDEX_FIELDS: &[&str] = &[
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Priority",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Filename",
    "Size",
    "SHA256",
    "Status",
];

/// Why a `Packages` index read from a stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The stream failed (the caller knows why: decompression, reading).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The index is not UTF-8 text.
    #[error("the Packages index is not UTF-8")]
    NotUtf8,
    /// A syntax or field error, as [`parse_packages`] reports it.
    #[error("{0}")]
    Control(#[from] ControlError),
}

/// One package of a [`PackageIndex`]: its name, the names it provides, and
/// the fields [`BinaryPackage`] needs, as deb822 text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    name: Box<str>,
    provides: Box<[Box<str>]>,
    text: Box<str>,
}

impl Entry {
    fn package(&self) -> Result<BinaryPackage, ControlError> {
        let stanzas = parse(&self.text, Syntax::strict())?;
        let Some(stanza) = stanzas.first() else {
            return Err(ControlError::new(
                1,
                format!("package `{}`: empty", self.name),
            ));
        };
        BinaryPackage::from_stanza(stanza)
    }
}

/// A `Packages` index in compact form: every stanza was checked as
/// [`parse_packages`] checks it, and only the fields of [`INDEX_FIELDS`]
/// are kept (a few hundred bytes per package, not the whole stanza or the
/// parsed relations). [`reachable`] turns the packages a resolution can
/// look at into [`BinaryPackage`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageIndex {
    entries: Vec<Entry>,
}

impl PackageIndex {
    /// The number of packages.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index lists no package.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every package, in index order (what [`parse_packages`] returns).
    pub fn packages(&self) -> Result<Vec<BinaryPackage>, ControlError> {
        self.entries.iter().map(Entry::package).collect()
    }
}

/// Reads a `Packages` index stanza by stanza from `input`, holding one
/// stanza at a time. Refuses what [`parse_packages`] refuses, with the same
/// errors and the same precedence: text that is not UTF-8 anywhere, then
/// the first syntax error, then the first field error. An error of `input`
/// is returned as soon as it happens.
pub fn read_packages(mut input: impl std::io::BufRead) -> Result<PackageIndex, IndexError> {
    let mut lines = Lines::new(Syntax::strict(), Some(INDEX_FIELDS));
    let mut entries = Vec::new();
    let mut not_utf8 = false;
    let mut syntax: Option<ControlError> = None;
    let mut field: Option<ControlError> = None;
    let mut take = |stanza: Stanza, field: &mut Option<ControlError>| {
        if field.is_some() {
            return;
        }
        match BinaryPackage::from_stanza(&stanza) {
            Ok(p) => entries.push(Entry {
                provides: p.provides.into_iter().map(|r| r.name.into()).collect(),
                name: p.name.into(),
                text: stanza.to_string().into(),
            }),
            Err(e) => *field = Some(e),
        }
    };
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        // The whole input is read even after an error: a later error of
        // `input` (or a line that is not UTF-8) still decides the outcome.
        if not_utf8 {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            not_utf8 = true;
            continue;
        };
        if syntax.is_some() {
            continue;
        }
        let text = text.strip_suffix('\n').unwrap_or(text);
        match lines.line(n, text) {
            Ok(Some(stanza)) => take(stanza, &mut field),
            Ok(None) => {}
            Err(e) => syntax = Some(e),
        }
    }
    if syntax.is_none() {
        if let Some(stanza) = lines.finish() {
            take(stanza, &mut field);
        }
    }
    if not_utf8 {
        return Err(IndexError::NotUtf8);
    }
    if let Some(e) = syntax.or(field) {
        return Err(IndexError::Control(e));
    }
    Ok(PackageIndex { entries })
}

/// The packages of `indexes` a resolution of `roots` can look at, per
/// index in index order: every package named `root` or providing it, and
/// in turn every package named or provided by an alternative of their
/// `Pre-Depends` and `Depends` (whatever the architecture or version).
/// The resolver looks packages up only by those names, so it gives the same
/// answer on this selection as on the whole indexes.
pub fn reachable<'a>(
    indexes: &[&PackageIndex],
    roots: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Vec<BinaryPackage>>, ControlError> {
    let mut by_name: std::collections::HashMap<&str, Vec<(usize, usize)>> =
        std::collections::HashMap::new();
    for (i, index) in indexes.iter().enumerate() {
        for (j, e) in index.entries.iter().enumerate() {
            by_name.entry(&e.name).or_default().push((i, j));
            for v in e.provides.iter() {
                let at = by_name.entry(v).or_default();
                if at.last() != Some(&(i, j)) {
                    at.push((i, j));
                }
            }
        }
    }
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for r in roots {
        if names.insert(r.to_string()) {
            todo.push(r.to_string());
        }
    }
    let mut picked: std::collections::BTreeMap<(usize, usize), BinaryPackage> =
        std::collections::BTreeMap::new();
    while let Some(name) = todo.pop() {
        for &(i, j) in by_name.get(name.as_str()).into_iter().flatten() {
            if picked.contains_key(&(i, j)) {
                continue;
            }
            let p = indexes[i].entries[j].package()?;
            for rel in p.pre_depends.iter().chain(&p.depends).flatten() {
                if names.insert(rel.name.clone()) {
                    todo.push(rel.name.clone());
                }
            }
            picked.insert((i, j), p);
        }
    }
    let mut out: Vec<Vec<BinaryPackage>> = vec![Vec::new(); indexes.len()];
    for ((i, _), p) in picked {
        out[i].push(p);
    }
    Ok(out)
}

/// Parses a dpkg status database and returns the packages that are
/// installed (`Status: <want> ok installed`), in file order. Stanzas of
/// packages in other states (removed, config-files, half-installed...) are
/// skipped without requiring their other fields.
pub fn parse_installed(text: &str) -> Result<Vec<BinaryPackage>, ControlError> {
    let mut out = Vec::new();
    for stanza in parse(text, Syntax::strict())? {
        let Some(f) = stanza.field("Status") else {
            let pkg = stanza.get("Package").unwrap_or("?");
            return Err(ControlError::new(
                stanza.line,
                format!("status stanza of package `{pkg}` has no `Status` field"),
            ));
        };
        let status = Status::parse(&f.folded())
            .map_err(|e| ControlError::because(f.line, e.to_string(), e))?;
        if status.is_installed() {
            out.push(BinaryPackage::from_stanza(&stanza)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_fields_and_continuations() {
        let text = "Package: foo\nversion: 1.0\nDescription: short\n long line\n .\n \tmore\n\n  \n\nPackage: bar\r\nDepends: a,\n b\n";
        let s = parse(text, Syntax::strict()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].line, 1);
        assert_eq!(s[1].line, 10);
        let names: Vec<&str> = s[0].fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Package", "version", "Description"]);
        assert_eq!(s[0].get("VERSION"), Some("1.0"));
        let d = s[0].field("description").unwrap();
        assert_eq!(d.line, 3);
        assert_eq!(d.value, "short\n long line\n .\n \tmore");
        assert_eq!(d.first_line(), "short");
        assert_eq!(d.continuation_lines(), ["long line", "", "\tmore"]);
        assert_eq!(s[1].get("package"), Some("bar"));
        assert_eq!(s[1].field("Depends").unwrap().folded(), "a, b");
        assert_eq!(
            s[0].to_string(),
            "Package: foo\nversion: 1.0\nDescription: short\n long line\n .\n \tmore\n"
        );
        let r = parse("SHA256:\n abc 1 main/x\n", Syntax::strict()).unwrap();
        assert_eq!(r[0].to_string(), "SHA256:\n abc 1 main/x\n");
        assert_eq!(
            r[0].field("sha256").unwrap().continuation_lines(),
            ["abc 1 main/x"]
        );
    }

    #[test]
    fn folded_values() {
        let f = |value: &str| {
            Field {
                name: "X".into(),
                value: value.into(),
                line: 1,
            }
            .folded()
        };
        for (value, want) in [
            ("a, b (>= 1)", "a, b (>= 1)"),
            ("", ""),
            ("a,  b", "a, b"),
            (" a", "a"),
            ("a ", "a"),
            ("a,\n b,\n\tc", "a, b, c"),
            ("a\u{a0}b", "a b"),
            ("a\u{e9}b", "a\u{e9}b"),
            ("a\x0bb", "a b"),
        ] {
            assert_eq!(f(value), want, "{value:?}");
        }
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut s = parse("Package: a\nStatus: x\nVersion: 1\n", Syntax::strict())
            .unwrap()
            .remove(0);
        s.set("status", "install ok installed");
        s.set("Conffiles", "\n /etc/a 0123");
        assert_eq!(
            s.to_string(),
            "Package: a\nStatus: install ok installed\nVersion: 1\nConffiles:\n /etc/a 0123\n"
        );
        assert_eq!(s.remove("VERSION").unwrap().value, "1");
        assert!(s.remove("Version").is_none());
    }

    #[test]
    fn comments_only_when_allowed() {
        let text = "# top\nSource: x\n# inside\nSection: y\n";
        let s = parse(text, Syntax::with_comments()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].fields().len(), 2);
        let e = parse(text, Syntax::strict()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: comment lines are not allowed in this kind of file"
        );
    }

    #[test]
    fn syntax_errors_have_line_numbers() {
        let cases = [
            (" lead\n", "line 1: continuation line (starting with a space) outside any field"),
            ("A: 1\nnocolon\n", "line 2: expected `Field: value`, found `nocolon`"),
            ("A: 1\nB c: 2\n", "line 2: field name `B c` contains ' '; a field name must be followed by a colon"),
            ("A: 1\nB: 2\na: 3\n", "line 3: duplicate field `a` (first at line 1) in the same stanza"),
            (
                "-----BEGIN PGP SIGNED MESSAGE-----\n",
                "line 1: field name must not start with `-` (found `-----BEGIN PGP SIGNED MESSAGE-----`); OpenPGP-signed data must be verified and unwrapped first",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse(text, Syntax::strict()).unwrap_err().to_string(),
                want,
                "{text:?}"
            );
        }
        // The same name in two stanzas is fine.
        assert_eq!(parse("A: 1\n\nA: 2\n", Syntax::strict()).unwrap().len(), 2);
    }

    #[test]
    fn relations_grammar() {
        let r = parse_relations(
            "Depends",
            "libc6 (>= 2.34), foo:any | bar (<< 1:2~rc1) , baz:amd64 (= 1.0-1) [amd64 !i386] <!nocheck> <stage1 cross>, old (< 1), older (>2)",
            true,
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0][0].name, "libc6");
        assert_eq!(
            r[0][0].version,
            Some((Op::LaterOrEqual, Version::parse("2.34").unwrap()))
        );
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][0].arch.as_deref(), Some("any"));
        assert_eq!(r[1][1].version.as_ref().unwrap().0, Op::Earlier);
        assert_eq!(r[2][0].arches, ["amd64", "!i386"]);
        assert_eq!(
            r[2][0].profiles,
            [vec!["!nocheck"], vec!["stage1", "cross"]]
        );
        assert_eq!(r[3][0].version.as_ref().unwrap().0, Op::EarlierOrEqual);
        assert_eq!(r[4][0].version.as_ref().unwrap().0, Op::LaterOrEqual);
        assert_eq!(
            format_relations(&r),
            "libc6 (>= 2.34), foo:any | bar (<< 1:2~rc1), baz:amd64 (= 1.0-1) [amd64 !i386] <!nocheck> <stage1 cross>, old (<= 1), older (>= 2)"
        );
        assert_eq!(
            parse_relations("Depends", "", true).unwrap(),
            Relations::new()
        );
        assert_eq!(parse_relations("Depends", "a, b,", true).unwrap().len(), 2);
        let v = Version::parse("1.5").unwrap();
        assert!(r[0][0].version_matches(&Version::parse("2.36").unwrap()));
        assert!(!r[0][0].version_matches(&v));
    }

    #[test]
    fn relation_errors_name_field_and_text() {
        let cases = [
            ("Depends", "a, , b", true, "field `Depends`: empty entry between commas in `a, , b`"),
            ("Depends", "a |", true, "field `Depends`: empty alternative around `|` in `a |`"),
            ("Conflicts", "a | b", false, "field `Conflicts`: alternatives (`|`) are not allowed in Conflicts in `a | b`"),
            ("Depends", "a (1.0)", true, "field `Depends`: missing relation operator (one of << <= = >= >>) in `(1.0)` in `a (1.0)`"),
            ("Depends", "a (>= 1.0", true, "field `Depends`: missing `)` after `a (` in `a (>= 1.0`"),
            ("Depends", "a (>= x)", true, "field `Depends`: invalid version `x`: version number does not start with digit in `a (>= x)`"),
            ("Depends", "-a", true, "field `Depends`: invalid package name `-a` (letters, digits and `+-._`, starting with a letter or digit) in `-a`"),
            ("Depends", "a: (>= 1)", true, "field `Depends`: empty architecture qualifier after `a:` in `a: (>= 1)`"),
            ("Depends", "a b", true, "field `Depends`: unexpected `b` after `a` in `a b`"),
        ];
        for (field, text, alts, want) in cases {
            assert_eq!(
                parse_relations(field, text, alts).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }

    const PACKAGES: &str = "\
Package: containerd.io
Version: 1.2.13-2
Architecture: amd64
Multi-Arch: foreign
Priority: optional
Provides: containerd, runc (= 1.0.0~rc10)
Pre-Depends: init-system-helpers (>= 1.18~)
Depends: libc6 (>= 2.14),
 libseccomp2 (>= 2.4.0)
Conflicts: containerd
Breaks: docker-ce (<< 5:19.03.11~)
Replaces: containerd
Filename: pool/stable/amd64/containerd.io_1.2.13-2_amd64.deb
Size: 21186470
SHA256: 5C4B4D4C2E9A1B6F0B2C0D3E4F5A6B7C8D9E0F1A2B3C4D5E6F708192A3B4C5D6

Package: base-files
Essential: yes
Version: 12.4+deb12u1
Architecture: amd64
";

    #[test]
    fn typed_package_fields() {
        let p = parse_packages(PACKAGES).unwrap();
        assert_eq!(p.len(), 2);
        let c = &p[0];
        assert_eq!(c.name, "containerd.io");
        assert_eq!(c.version.to_string(), "1.2.13-2");
        assert_eq!(c.architecture, "amd64");
        assert_eq!(c.multi_arch, MultiArch::Foreign);
        assert!(!c.essential);
        assert_eq!(c.priority.as_deref(), Some("optional"));
        assert_eq!(c.provides.len(), 2);
        assert_eq!(c.provides[1].to_string(), "runc (= 1.0.0~rc10)");
        assert_eq!(
            format_relations(&c.pre_depends),
            "init-system-helpers (>= 1.18~)"
        );
        assert_eq!(
            format_relations(&c.depends),
            "libc6 (>= 2.14), libseccomp2 (>= 2.4.0)"
        );
        assert_eq!(format_relations(&c.conflicts), "containerd");
        assert_eq!(format_relations(&c.breaks), "docker-ce (<< 5:19.03.11~)");
        assert_eq!(format_relations(&c.replaces), "containerd");
        assert_eq!(
            c.filename.as_deref(),
            Some("pool/stable/amd64/containerd.io_1.2.13-2_amd64.deb")
        );
        assert_eq!(c.size, Some(21186470));
        assert_eq!(
            c.sha256.as_deref(),
            Some("5c4b4d4c2e9a1b6f0b2c0d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6")
        );
        assert_eq!(c.status, None);
        assert!(p[1].essential);
        assert_eq!(p[1].multi_arch, MultiArch::No);
    }

    #[test]
    fn typed_field_errors() {
        let base = "Package: a\nVersion: 1\nArchitecture: all\n";
        let cases = [
            ("Package: a\nArchitecture: all\n", "line 1: stanza of package `a` has no `Version` field"),
            ("Package: a\nVersion: 1\n", "line 1: stanza of package `a` has no `Architecture` field"),
            ("Package: a\nVersion: x\nArchitecture: all\n", "line 2: field `Version` of `a`: invalid version `x`: version number does not start with digit"),
            (&format!("{base}Multi-Arch: maybe\n"), "line 4: field `Multi-Arch` of `a`: `maybe` is not one of no, same, foreign, allowed"),
            (&format!("{base}Essential: true\n"), "line 4: field `Essential` of `a`: `true` is not yes or no"),
            (&format!("{base}Size: 12k\n"), "line 4: field `Size` of `a`: `12k` is not a byte count"),
            (&format!("{base}SHA256: abc\n"), "line 4: field `SHA256` of `a`: `abc` is not 64 hex digits"),
            (&format!("{base}Depends: b (>= 1\n"), "line 4: package `a`: field `Depends`: missing `)` after `b (` in `b (>= 1`"),
            (&format!("{base}Provides: b (>= 1)\n"), "line 4: package `a`: field `Provides`: only `=` versions may be provided, found `b (>= 1)`"),
            (&format!("{base}Status: install ok\n"), "line 4: package `a`: field `Status`: expected three words (want flag state), found `install ok`"),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_packages(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn field_errors_keep_the_typed_error_of_the_value() {
        use std::error::Error as _;
        let base = "Package: a\nVersion: 1\nArchitecture: all\n";
        let e = parse_packages(&format!("{base}Depends: b (>= x)\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 4: package `a`: field `Depends`: invalid version `x`: version number does not start with digit in `b (>= x)`"
        );
        let Some(FieldCause::Relation(r)) = e.cause.as_deref() else {
            panic!("{e:?}")
        };
        assert_eq!((r.field.as_str(), r.text.as_str()), ("Depends", "b (>= x)"));
        assert!(matches!(&r.fault, RelationFault::Version(v) if v.text == "x"));
        assert!(e.source().is_some_and(|c| c.is::<FieldCause>()));
        let e = parse_packages(&format!("{base}Status: install ok gone\n")).unwrap_err();
        assert!(
            matches!(e.cause.as_deref(), Some(FieldCause::Status(StatusError::Unknown { what: "state", word, .. })) if word == "gone"),
            "{e:?}"
        );
        let e = parse_packages("Package: a\nVersion: x\nArchitecture: all\n").unwrap_err();
        assert!(
            matches!(e.cause.as_deref(), Some(FieldCause::Version(v)) if v.text == "x"),
            "{e:?}"
        );
        let e = parse_installed("Package: x\nStatus: install\n").unwrap_err();
        assert_eq!(
            e.cause.as_deref(),
            Some(&FieldCause::Status(StatusError::Words("install".into())))
        );
        // A syntax error has no value beneath it.
        assert_eq!(parse_packages("Package a\n").unwrap_err().cause, None);
    }

    #[test]
    fn relation_faults_are_typed() {
        let fault =
            |text: &str, alts: bool| parse_relations("Depends", text, alts).unwrap_err().fault;
        assert_eq!(fault("a, , b", true), RelationFault::EmptyEntry);
        assert_eq!(
            fault("a | b", false),
            RelationFault::Alternatives("Depends".into())
        );
        assert_eq!(fault("a |", true), RelationFault::EmptyAlternative);
        assert_eq!(fault("-a", true), RelationFault::Name("-a".into()));
        assert_eq!(
            fault("a: (>= 1)", true),
            RelationFault::EmptyQualifier("a".into())
        );
        assert_eq!(
            fault("a (>= 1", true),
            RelationFault::UnclosedVersion("a".into())
        );
        assert_eq!(
            fault("a (1.0)", true),
            RelationFault::NoOperator("1.0".into())
        );
        assert_eq!(
            fault("a [amd64", true),
            RelationFault::UnclosedArches("a".into())
        );
        assert_eq!(fault("a []", true), RelationFault::EmptyArches("a".into()));
        assert_eq!(
            fault("a <x", true),
            RelationFault::UnclosedProfiles("a".into())
        );
        assert_eq!(
            fault("a <>", true),
            RelationFault::EmptyProfiles("a".into())
        );
        assert_eq!(
            fault("a b", true),
            RelationFault::Trailing {
                name: "a".into(),
                rest: "b".into()
            }
        );
        let e = parse_relations("Depends", " a (>= x) ", true).unwrap_err();
        let source = std::error::Error::source(&e).expect("the fault");
        let version = source.source().expect("the version error");
        assert!(version.is::<VersionError>());
    }

    /// A generated index of `n` packages with every kind of field, the
    /// unused ones (Description, Maintainer...) included.
    fn big_index(n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "Package: pkg{i}\nSource: src{i}\nVersion: 1.{i}-1\nInstalled-Size: 12\n\
                 Maintainer: Someone <someone@example.org>\nArchitecture: amd64\n\
                 Depends: pkg{} (>= 1.0), libc6 | libc6.1\nProvides: virt{}\n\
                 Description: package number {i}\n a longer text\n .\n over lines\n\
                 Description-md5: 0123456789abcdef0123456789abcdef\nSection: misc\n\
                 Priority: optional\nFilename: pool/main/p/pkg{i}_1.{i}-1_amd64.deb\n\
                 Size: {}\nMD5sum: 0123456789abcdef0123456789abcdef\nSHA256: {:064x}\n\n",
                (i + 1) % n,
                i % 7,
                1000 + i,
                i
            ));
        }
        s
    }

    #[test]
    fn a_large_index_is_read_stanza_by_stanza() {
        let n = 50_000;
        let text = big_index(n);
        let index = read_packages(std::io::Cursor::new(text.as_bytes())).unwrap();
        assert_eq!(index.len(), n);
        // Only the fields installation needs are kept: far less than the text.
        let kept: usize = index.entries.iter().map(|e| e.text.len()).sum();
        assert!(kept * 10 < text.len() * 6, "{kept} of {}", text.len());
        assert!(index.entries.iter().all(|e| !e.text.contains("Description")
            && !e.text.contains("MD5sum")
            && !e.text.contains("Maintainer")));
        let last = index.entries[n - 1].package().unwrap();
        assert_eq!(last.name, "pkg49999");
        assert_eq!(last.version.to_string(), "1.49999-1");
        assert_eq!(
            format_relations(&last.depends),
            "pkg0 (>= 1.0), libc6 | libc6.1"
        );
        assert_eq!(last.provides[0].name, "virt5");
        assert_eq!(last.size, Some(50999));
        assert_eq!(last.sha256, Some(format!("{:064x}", 49999)));
        assert_eq!(
            last.filename.as_deref(),
            Some("pool/main/p/pkg49999_1.49999-1_amd64.deb")
        );
        assert_eq!(&*index.entries[7].provides, [Box::from("virt0")]);
        // The same packages parse_packages reads from the whole text.
        let small = big_index(300);
        let streamed = read_packages(std::io::Cursor::new(small.as_bytes())).unwrap();
        assert_eq!(
            streamed.packages().unwrap(),
            parse_packages(&small).unwrap()
        );
    }

    #[test]
    fn read_packages_refuses_what_parse_packages_refuses() {
        let base = "Package: a\nVersion: 1\nArchitecture: all\n\n";
        let cases = [
            // A field error, then a later syntax error: the syntax error wins.
            format!("Package: a\nVersion: x\nArchitecture: all\n\n{base}Package b\n"),
            // A syntax error in an unused field.
            format!("{base}Package: b\nVersion: 1\nArchitecture: all\nDescription: x\nnocolon\n"),
            // Duplicates among unused fields, in any case.
            format!("{base}Package: b\nTag: x\nVersion: 1\nArchitecture: all\ntag: y\n"),
            format!("{base} lead\n"),
            format!("{base}Package: c\nVersion: 1\nArchitecture: all\nSize: 12k\n"),
            format!("{base}Package: c\nVersion: 1\n"),
            format!("{base}Package: c\nVersion: 1\nArchitecture: all\nDepends: b (>= 1\n"),
            format!("{base}# comment\n"),
        ];
        for text in &cases {
            let want = parse_packages(text).unwrap_err();
            match read_packages(text.as_bytes()).unwrap_err() {
                IndexError::Control(e) => assert_eq!(e, want, "{text}"),
                other => panic!("{other}"),
            }
        }
        // Text that is not UTF-8 anywhere comes first, as when the whole
        // text is checked before parsing.
        let mut bytes = b"Package b\n\n".to_vec();
        bytes.extend_from_slice(b"Description: \xff\n");
        assert!(matches!(
            read_packages(&bytes[..]).unwrap_err(),
            IndexError::NotUtf8
        ));
        // An empty index is fine.
        assert!(read_packages(&b""[..]).unwrap().is_empty());
    }

    #[test]
    fn reachable_follows_names_provides_and_dependencies() {
        let one = read_packages(
            "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b | c, v\n\n\
             Package: unrelated\nVersion: 1\nArchitecture: amd64\nDepends: a\n\n\
             Package: p\nVersion: 1\nArchitecture: amd64\nProvides: v\nPre-Depends: d:any\n\n\
             Package: b\nVersion: 2\nArchitecture: all\n\n\
             Package: e\nVersion: 1\nArchitecture: amd64\nConflicts: a\n"
                .as_bytes(),
        )
        .unwrap();
        let two = read_packages(
            "Package: c\nVersion: 1\nArchitecture: amd64\n\n\
             Package: d\nVersion: 1\nArchitecture: arm64\n\n\
             Package: b\nVersion: 1\nArchitecture: amd64\n"
                .as_bytes(),
        )
        .unwrap();
        let got = reachable(&[&one, &two], ["a"]).unwrap();
        let names: Vec<Vec<String>> = got
            .iter()
            .map(|r| {
                r.iter()
                    .map(|p| format!("{} {}", p.name, p.version))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [vec!["a 1", "p 1", "b 2"], vec!["c 1", "d 1", "b 1"]]
        );
        let none = reachable(&[&one, &two], ["nothing"]).unwrap();
        assert_eq!(none, [vec![], vec![]]);
        let got = reachable(&[&one], ["e", "c"]).unwrap();
        assert_eq!(got[0].len(), 1);
        assert_eq!(got[0][0].name, "e");
    }

    #[test]
    fn installed_packages_from_status() {
        let status = "\
Package: a
Status: install ok installed
Version: 1
Architecture: amd64

Package: gone
Status: purge ok not-installed

Package: conf
Status: deinstall ok config-files
Version: 2
Architecture: amd64

Package: held
Status: hold ok installed
Version: 3
Architecture: all

Package: broken
Status: install reinstreq half-installed
Version: 4
Architecture: amd64
";
        let p = parse_installed(status).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "held"]);
        assert_eq!(
            p[0].status.as_ref().unwrap().to_string(),
            "install ok installed"
        );
        let e = parse_installed("Package: x\nVersion: 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: status stanza of package `x` has no `Status` field"
        );
        let e = parse_installed("Package: x\nStatus: install ok gone\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: field `Status`: unknown state `gone` (expected one of not-installed, config-files, half-installed, unpacked, half-configured, triggers-awaited, triggers-pending, installed)"
        );
    }
}
