//! What packages declare as their license, as SPDX license expressions.
//!
//! - Debian: the `License:` fields of a machine-readable copyright file
//!   (`/usr/share/doc/PACKAGE/copyright`, `Format: .../copyright-format/1.0/`).
//!   Each field's short name becomes an SPDX identifier where there is one
//!   (`GPL-2+` is `GPL-2.0-or-later`, `LGPL-2.1` is `LGPL-2.1-only`,
//!   `Expat` is `MIT`, `BSD-3-clause` is `BSD-3-Clause`, `Apache-2.0` stays),
//!   else `LicenseRef-NAME`; `or` and `and` become `OR` and `AND`; a name
//!   with an exception (`GPL-2+ with OpenSSL exception`) is one
//!   `LicenseRef-`. The distinct fields are joined with `AND`.
//! - rpm: the `License` tag, as it is when it is a valid SPDX expression,
//!   else `LicenseRef-TAG`.

/// The GNU license families whose Debian names (`GPL-2`, `GPL-2+`) map to
/// SPDX's `-only` and `-or-later` identifiers.
const GNU: &[&str] = &["AGPL", "GPL", "LGPL", "GFDL"];

/// The license expression of a Debian copyright file; `None` when it is not
/// machine-readable or names no license.
pub fn debian_copyright(text: &str) -> Option<String> {
    use nodeimg_deb::control::{parse, Syntax};
    let stanzas = parse(text, Syntax::strict()).ok()?;
    let header = stanzas.first()?;
    if !header
        .get("Format")
        .is_some_and(|f| f.contains("copyright-format"))
    {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for s in &stanzas {
        let Some(field) = s.field("License") else {
            continue;
        };
        let Some(expr) = debian_field(field.first_line()) else {
            continue;
        };
        if !parts.contains(&expr) {
            parts.push(expr);
        }
    }
    join_and(&parts)
}

/// `parts` joined with `AND`, each in parentheses when it has an operator.
fn join_and(parts: &[String]) -> Option<String> {
    match parts {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(
            many.iter()
                .map(|p| {
                    if p.contains(' ') {
                        format!("({p})")
                    } else {
                        p.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// The expression of one `License:` short name line (`GPL-2+ or Artistic`).
/// A comma binds less than `or` and `and` (`GPL-1+ or Artistic, and BSD`
/// is `(GPL-1.0-or-later OR LicenseRef-Artistic) AND BSD`).
fn debian_field(line: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let chunks: Vec<&str> = line
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let several = chunks.len() > 1;
    for chunk in chunks {
        let (op, rest) = match chunk.split_once(char::is_whitespace) {
            Some((w, rest)) if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("and") => {
                (Some(w.to_ascii_uppercase()), rest)
            }
            _ => (None, chunk),
        };
        let Some(expr) = debian_terms(rest) else {
            continue;
        };
        if !out.is_empty() {
            out.push(op.unwrap_or_else(|| "AND".to_string()));
        }
        out.push(if several && expr.contains(' ') {
            format!("({expr})")
        } else {
            expr
        });
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// The expression of names joined by `or` and `and` (no commas).
fn debian_terms(line: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let mut term: Vec<&str> = Vec::new();
    let flush = |term: &mut Vec<&str>, out: &mut Vec<String>| {
        if !term.is_empty() {
            out.push(debian_term(&term.join(" ")));
            term.clear();
        }
    };
    for word in line.split_whitespace() {
        let word = word.trim_matches(',');
        if word.is_empty() {
            continue;
        }
        match word.to_ascii_lowercase().as_str() {
            op @ ("or" | "and") if !term.is_empty() => {
                flush(&mut term, &mut out);
                out.push(op.to_ascii_uppercase());
            }
            _ => term.push(word),
        }
    }
    flush(&mut term, &mut out);
    // A dangling operator (`GPL-2 or`) is dropped.
    while out.last().is_some_and(|w| w == "OR" || w == "AND") {
        out.pop();
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// The SPDX identifier of one Debian license short name, else a
/// `LicenseRef-`.
fn debian_term(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.contains(' ') {
        // A name with an exception, or prose.
        return license_ref(name);
    }
    if lower == "expat" {
        return "MIT".to_string();
    }
    if let Some(id) = gnu(name) {
        return id;
    }
    let (base, or_later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    // `Apache-2` and `MPL-2` are Apache-2.0 and MPL-2.0.
    let found = spdx_id(base).or_else(|| {
        let last = base.rsplit('-').next().unwrap_or("");
        (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
            .then(|| spdx_id(&format!("{base}.0")))
            .flatten()
    });
    match found {
        Some(id) => format!("{id}{}", if or_later { "+" } else { "" }),
        None => license_ref(name),
    }
}

/// `GPL-2+` as `GPL-2.0-or-later`, `LGPL-2.1` as `LGPL-2.1-only`.
fn gnu(name: &str) -> Option<String> {
    let (family, rest) = name.split_once('-')?;
    let family = GNU
        .iter()
        .find(|f| f.eq_ignore_ascii_case(family))
        .copied()?;
    let (version, or_later) = match rest.strip_suffix('+') {
        Some(v) => (v, true),
        None => (rest, false),
    };
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let version = if version.contains('.') {
        version.to_string()
    } else {
        format!("{version}.0")
    };
    let id = format!(
        "{family}-{version}-{}",
        if or_later { "or-later" } else { "only" }
    );
    spdx::license_id(&id).map(|l| l.name.to_string())
}

/// The SPDX license identifier spelled `name` in any case (not a
/// deprecated one).
fn spdx_id(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.ends_with('+') {
        return None;
    }
    spdx::identifiers::LICENSES
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .and_then(|l| spdx::license_id(l.name))
        .filter(|id| !id.is_deprecated())
        .map(|id| id.name)
}

/// The expression of an rpm `License` tag.
pub fn rpm_license(tag: &str) -> Option<String> {
    let tag = tag.trim();
    if tag.is_empty() || tag == "(none)" {
        return None;
    }
    match spdx::Expression::parse(tag) {
        Ok(_) => Some(tag.to_string()),
        Err(_) => Some(license_ref(tag)),
    }
}

/// `LicenseRef-` and `name` with every character but letters, digits, `.`
/// and `-` written `-`.
pub fn license_ref(name: &str) -> String {
    let idstring: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{idstring}")
}

/// The `LicenseRef-` identifiers an expression uses, sorted.
pub fn license_refs(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = expr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| t.starts_with("LicenseRef-"))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: containerd
Source: https://github.com/containerd/containerd

Files: *
Copyright: 2012-2023 The containerd Authors
License: Apache-2.0

Files: debian/*
Copyright: 2019 Someone
License: GPL-2+ or Expat

Files: vendor/x/*
Copyright: 2020 Someone Else
License: BSD-3-clause

Files: vendor/y/*
Copyright: 2021 Another
License: GPL-2+ with OpenSSL exception

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the \"License\");
 .
 the full text
";

    #[test]
    fn debian_copyright_files_give_spdx_expressions() {
        assert_eq!(
            debian_copyright(COPYRIGHT).unwrap(),
            "Apache-2.0 AND (GPL-2.0-or-later OR MIT) AND BSD-3-Clause AND LicenseRef-GPL-2--with-OpenSSL-exception"
        );
        assert!(spdx::Expression::parse(
            &debian_copyright(COPYRIGHT)
                .unwrap()
                .replace("LicenseRef-GPL-2--with-OpenSSL-exception", "MIT")
        )
        .is_ok());
    }

    #[test]
    fn debian_names() {
        for (debian, spdx) in [
            ("GPL-2", "GPL-2.0-only"),
            ("GPL-3+", "GPL-3.0-or-later"),
            ("LGPL-2.1+", "LGPL-2.1-or-later"),
            ("lgpl-2", "LGPL-2.0-only"),
            ("MPL-1.1+", "MPL-1.1+"),
            ("zlib", "Zlib"),
            ("public-domain", "LicenseRef-public-domain"),
            ("Artistic", "LicenseRef-Artistic"),
        ] {
            assert_eq!(debian_term(debian), spdx, "{debian}");
        }
        assert_eq!(
            debian_field("GPL-1+ or Artistic, and BSD-3-clause").unwrap(),
            "(GPL-1.0-or-later OR LicenseRef-Artistic) AND BSD-3-Clause"
        );
        assert_eq!(
            debian_field("GPL-2+ or Artistic-2, or MIT").unwrap(),
            "(GPL-2.0-or-later OR Artistic-2.0) OR MIT"
        );
        assert_eq!(debian_term("Apache-2"), "Apache-2.0");
        assert_eq!(debian_field("GPL-2 or").unwrap(), "GPL-2.0-only");
    }

    #[test]
    fn files_that_are_not_machine_readable_name_no_license() {
        assert_eq!(
            debian_copyright("This package was debianized by someone.\n\nIt is GPL.\n"),
            None
        );
        assert_eq!(debian_copyright(""), None);
        assert_eq!(
            debian_copyright(
                "Format: https://x/copyright-format/1.0/\n\nFiles: *\nCopyright: me\n"
            ),
            None
        );
    }

    #[test]
    fn rpm_tags() {
        assert_eq!(rpm_license("Apache-2.0").unwrap(), "Apache-2.0");
        assert_eq!(
            rpm_license("GPL-2.0-or-later AND MIT").unwrap(),
            "GPL-2.0-or-later AND MIT"
        );
        assert_eq!(rpm_license("ASL 2.0").unwrap(), "LicenseRef-ASL-2.0");
        assert_eq!(rpm_license("(none)"), None);
        assert_eq!(
            license_refs("(LicenseRef-b OR MIT) AND LicenseRef-a AND LicenseRef-b"),
            ["LicenseRef-a", "LicenseRef-b"]
        );
    }
}
