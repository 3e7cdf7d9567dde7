//! `${name}` expansion in recipe strings.
//!
//! `${name}` is replaced by the variable's value, `$${` stands for a literal
//! `${`, and any other `$` (such as yum's `$basearch`) is left alone.
//! Built-in variables: `arch` (OCI), `deb_arch` and `rpm_arch` (the same
//! architecture as Debian and rpm name it) and `os.<KEY>` from the base's
//! os-release.

use std::collections::BTreeMap;

/// Why a string could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// `${name}` names no variable.
    Undefined(String),
    /// `${` without a closing `}`, or a name with characters outside
    /// `A-Za-z0-9_.-`.
    Syntax(String),
    /// The expansion is longer than [`MAX_EXPANDED`] bytes.
    TooLong,
}

/// The longest string an expansion may produce: far more than any recipe
/// value needs, and a bound on what a few variables that double each other
/// can cost.
pub(crate) const MAX_EXPANDED: usize = 1 << 20;

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Undefined(n) => write!(f, "undefined variable `{n}`"),
            ExpandError::Syntax(m) => write!(f, "{m}"),
            ExpandError::TooLong => write!(
                f,
                "expands to more than {} KiB; variables that repeat each other grow without bound",
                MAX_EXPANDED >> 10
            ),
        }
    }
}

/// Whether `name` is a valid variable name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Expand `s`, asking `lookup` for each variable (it may itself fail, e.g.
/// on a cycle).
pub(crate) fn expand_with<F>(s: &str, mut lookup: F) -> Result<String, ExpandError>
where
    F: FnMut(&str) -> Result<Option<String>, ExpandError>,
{
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r.find('}').ok_or_else(|| {
                ExpandError::Syntax(format!(
                    "`${{` without a closing `}}` in {s:?} (write `$${{` for a literal `${{`)"
                ))
            })?;
            let name = &r[..end];
            if !valid_name(name) {
                return Err(ExpandError::Syntax(format!(
                    "`${{{name}}}` is not a variable name (letters, digits, `_`, `.`, `-`)"
                )));
            }
            match lookup(name)? {
                Some(v) if out.len() + v.len() > MAX_EXPANDED => return Err(ExpandError::TooLong),
                Some(v) => out.push_str(&v),
                None => return Err(ExpandError::Undefined(name.to_string())),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expand `s` against already resolved values.
pub fn expand(s: &str, values: &BTreeMap<String, String>) -> Result<String, ExpandError> {
    expand_with(s, |n| Ok(values.get(n).cloned()))
}

/// Parse an os-release file into its `KEY=value` pairs (quotes and
/// backslash escapes removed, comments and malformed lines skipped).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        out.insert(k.to_string(), unquote(v.trim()));
    }
    out
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && b[0] == b'\'' && b[b.len() - 1] == b'\'' {
        return v[1..v.len() - 1].to_string();
    }
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_string()
}

/// The built-in variables: the architecture ones ([`arch_builtins`]) and
/// `os.<KEY>`.
pub(crate) fn builtins(
    arch: &str,
    os_release: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = os_release
        .iter()
        .map(|(k, v)| (format!("os.{k}"), v.clone()))
        .collect();
    m.extend(arch_builtins(arch));
    m
}

/// The architecture's built-ins: `arch` (the OCI name, `arm`), `deb_arch`
/// (Debian's, `armhf`) and `rpm_arch` (rpm's, `armv7hl`).
pub(crate) fn arch_builtins(arch: &str) -> BTreeMap<String, String> {
    [
        (ARCH_BUILTINS[0], arch),
        (ARCH_BUILTINS[1], nodeimg_layers::arch::debian(arch)),
        (ARCH_BUILTINS[2], nodeimg_layers::arch::rpm(arch)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The names of the architecture's built-ins.
pub(crate) const ARCH_BUILTINS: [&str; 3] = ["arch", "deb_arch", "rpm_arch"];

/// Whether a name is reserved for built-ins.
pub(crate) fn is_builtin_name(name: &str) -> bool {
    ARCH_BUILTINS.contains(&name) || name.starts_with("os.")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vals() -> BTreeMap<String, String> {
        [("a", "1"), ("os.ID", "debian")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_and_escapes() {
        let v = vals();
        assert_eq!(expand("x${a}y${os.ID}", &v).unwrap(), "x1ydebian");
        assert_eq!(
            expand("$${a} and $basearch $", &v).unwrap(),
            "${a} and $basearch $"
        );
        assert_eq!(expand("plain", &v).unwrap(), "plain");
    }

    #[test]
    fn errors() {
        let v = vals();
        assert_eq!(
            expand("${nope}", &v),
            Err(ExpandError::Undefined("nope".into()))
        );
        assert!(matches!(expand("${a", &v), Err(ExpandError::Syntax(_))));
        assert!(matches!(expand("${a b}", &v), Err(ExpandError::Syntax(_))));
    }

    #[test]
    fn architecture_builtins_name_it_as_oci_debian_and_rpm_do() {
        let b = builtins("arm", &BTreeMap::new());
        assert_eq!(
            expand("${arch} ${deb_arch} ${rpm_arch}", &b).unwrap(),
            "arm armhf armv7hl"
        );
        let os = BTreeMap::from([("ID".to_string(), "debian".to_string())]);
        let b = builtins("amd64", &os);
        assert_eq!(
            expand("${arch} ${deb_arch} ${rpm_arch} ${os.ID}", &b).unwrap(),
            "amd64 amd64 x86_64 debian"
        );
        // An architecture no map names differently is the same everywhere.
        assert_eq!(arch_builtins("s390x")["deb_arch"], "s390x");
        for n in ["arch", "deb_arch", "rpm_arch", "os.ID"] {
            assert!(is_builtin_name(n), "{n}");
        }
        assert!(!is_builtin_name("debian_arch"));
    }

    #[test]
    fn expansions_are_bounded() {
        let mut v = BTreeMap::new();
        v.insert("half".to_string(), "x".repeat(MAX_EXPANDED / 2));
        assert_eq!(expand("${half}${half}", &v).unwrap().len(), MAX_EXPANDED);
        assert_eq!(
            expand("${half}${half}y", &v).unwrap().len(),
            MAX_EXPANDED + 1
        );
        assert_eq!(
            expand("${half}${half}${half}", &v),
            Err(ExpandError::TooLong)
        );
    }

    #[test]
    fn os_release() {
        let m = parse_os_release(
            "# c\nID=debian\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian \\\"12\\\"\"\nX='a b'\nbad line\n",
        );
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["VERSION_CODENAME"], "bookworm");
        assert_eq!(m["PRETTY_NAME"], "Debian \"12\"");
        assert_eq!(m["X"], "a b");
        assert_eq!(m.len(), 4);
    }
}
