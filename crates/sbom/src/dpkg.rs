//! The dpkg database as an SBOM reads it: the packages of a `status` file
//! (or of the files of `status.d/`, as distroless images keep them), and
//! the paths each package's `info/PACKAGE.list` names.

use nodeimg_deb::control::{parse, Status, Syntax};

use crate::{Error, Result};

/// One package of a dpkg status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Architecture`.
    pub architecture: String,
    /// The source package (`Source`, without a version in parentheses).
    pub source: Option<String>,
}

/// The packages of the status file `text` (at `path` in the image, for
/// errors) whose files are on disk: every state but `not-installed` and
/// `config-files`. A file that is not dpkg's format is an error saying
/// where.
pub fn parse_status(text: &str, path: &str) -> Result<Vec<Entry>> {
    let stanzas = parse(text, Syntax::strict())
        .map_err(|e| Error::database(path, e.to_string(), Some(Box::new(e))))?;
    let mut out = Vec::new();
    for s in stanzas {
        let line = s.line;
        let Some(name) = s.get("Package") else {
            return Err(Error::database(
                path,
                format!("line {line}: a stanza without a Package field"),
                None,
            ));
        };
        // status.d files have no Status field: their packages are installed.
        if let Some(f) = s.field("Status") {
            let status = Status::parse(&f.folded()).map_err(|e| {
                Error::database(path, format!("line {}: {e}", f.line), Some(Box::new(e)))
            })?;
            if matches!(status.state.as_str(), "not-installed" | "config-files") {
                continue;
            }
        }
        let field = |f: &str| -> Result<String> {
            s.get(f).map(str::to_string).ok_or_else(|| {
                Error::database(
                    path,
                    format!("line {line}: package {name} has no {f} field"),
                    None,
                )
            })
        };
        let source = s
            .get("Source")
            .and_then(|v| v.split_whitespace().next())
            .filter(|v| *v != name)
            .map(str::to_string);
        out.push(Entry {
            name: name.to_string(),
            version: field("Version")?,
            architecture: field("Architecture")?,
            source,
        });
    }
    Ok(out)
}

/// The paths of a `.list` file: one absolute path a line, `/.` left out.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with('/') && *l != "/.")
        .map(str::to_string)
        .collect()
}

/// The package a `var/lib/dpkg/info` file name is of: `NAME.list` or
/// `NAME:ARCH.list` gives `(NAME, Some(ARCH))`.
pub fn list_owner(file_name: &str) -> Option<(String, Option<String>)> {
    let stem = file_name.strip_suffix(".list")?;
    Some(match stem.split_once(':') {
        Some((n, a)) => (n.to_string(), Some(a.to_string())),
        None => (stem.to_string(), None),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_of_a_status_file() {
        let text = "Package: containerd\nStatus: install ok installed\nArchitecture: amd64\nSource: containerd (1.6.20~ds1-1)\nVersion: 1.6.20~ds1-1+b1\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9\n";
        let p = parse_status(text, "/var/lib/dpkg/status").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "containerd");
        assert_eq!(p[0].version, "1.6.20~ds1-1+b1");
        assert_eq!(p[0].source, None);
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
    }

    #[test]
    fn damaged_status_files_are_refused_saying_where() {
        let e = parse_status(
            "Package: a\nStatus: install ok\nVersion: 1\nArchitecture: all\n",
            "/var/lib/dpkg/status",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/var/lib/dpkg/status in the image: line 2:"),
            "{e}"
        );
        let e = parse_status("Package: a\nStatus: install ok installed\n", "/s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("package a has no Version field"), "{e}");
        let e = parse_status("this is not a status file\n", "/s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_status("", "/s").unwrap().is_empty());
    }

    #[test]
    fn list_files() {
        assert_eq!(parse_list("/.\n/usr\n/usr/bin/x\n"), ["/usr", "/usr/bin/x"]);
        assert_eq!(
            list_owner("libc6:amd64.list"),
            Some(("libc6".into(), Some("amd64".into())))
        );
        assert_eq!(list_owner("runc.list"), Some(("runc".into(), None)));
        assert_eq!(list_owner("runc.md5sums"), None);
    }
}
