//! `apt-source`: deb822 `.sources` files and their keyrings.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keys;
use crate::tree::{FileTree, ImagePath, Node, Origin};
use crate::view::Context;

/// An apt repository.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AptSource {
    /// Name of the `.sources` file and keyring, e.g. `docker`.
    pub name: String,
    /// `Types:`; default `["deb"]`.
    #[serde(default)]
    pub types: Vec<String>,
    /// `URIs:`.
    pub uris: Vec<String>,
    /// `Suites:`; a suite ending in `/` is a flat repository (no components).
    pub suites: Vec<String>,
    /// `Components:`; empty for flat repositories.
    #[serde(default)]
    pub components: Vec<String>,
    /// `Architectures:`; empty means apt's default.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// The signing key file relative to the recipe (ASCII-armored or binary);
    /// stored as `/etc/apt/keyrings/<name>.gpg` and named by `Signed-By:`.
    pub key: Option<String>,
    /// Further deb822 fields, verbatim (e.g. `Check-Valid-Until = "no"`).
    #[serde(default)]
    pub options: IndexMap<String, String>,
}

/// Fields this item writes itself; `options` may not repeat them.
const MANAGED: [&str; 6] = [
    "Types",
    "URIs",
    "Suites",
    "Components",
    "Architectures",
    "Signed-By",
];

impl AptSource {
    /// Render the `.sources` file and the keyring.
    pub fn render(&self, key: &str, ctx: &Context) -> Result<FileTree> {
        check_name(key, &self.name)?;
        let origin = Origin::new("apt-source", key);
        let types = self.types(key)?;
        self.check_uris_and_suites(key)?;
        let flat = self.flat(key)?;
        self.check_options(key)?;

        let mut tree = FileTree::new();
        let mut signed_by = None;
        if let Some(rel) = &self.key {
            let k = format!("{key}.key");
            let data = ctx.inputs.read(rel).map_err(|source| Error::Input {
                key: k.clone(),
                path: rel.clone(),
                source,
            })?;
            let bin = keys::load_public_key(&data).map_err(|m| {
                Error::invalid_hint(
                    &k,
                    format!("{rel}: {m}"),
                    "give the repository's OpenPGP public key, ASCII-armored or binary",
                )
            })?;
            let path = format!("/etc/apt/keyrings/{}.gpg", self.name);
            let p = ImagePath::new(&path).map_err(|m| Error::invalid(key, m.to_string()))?;
            tree.insert(p, Node::file(bin, origin.clone()))?;
            signed_by = Some(path);
        }

        let mut out = String::new();
        field(&mut out, "Types", &types);
        field(&mut out, "URIs", &self.uris);
        field(&mut out, "Suites", &self.suites);
        if !flat {
            field(&mut out, "Components", &self.components);
        }
        if !self.architectures.is_empty() {
            field(&mut out, "Architectures", &self.architectures);
        }
        if let Some(s) = &signed_by {
            field(&mut out, "Signed-By", std::slice::from_ref(s));
        }
        for (name, value) in &self.options {
            out.push_str(&format!("{name}: {}\n", value.trim()));
        }
        let path = format!("/etc/apt/sources.list.d/{}.sources", self.name);
        let p = ImagePath::new(&path).map_err(|m| Error::invalid(key, m.to_string()))?;
        tree.insert(p, Node::file(out, origin))?;
        Ok(tree)
    }

    /// The repository types, `deb` when none are given.
    fn types(&self, key: &str) -> Result<Vec<String>> {
        let types: Vec<String> = if self.types.is_empty() {
            vec!["deb".to_string()]
        } else {
            self.types.clone()
        };
        for (i, t) in types.iter().enumerate() {
            if t != "deb" && t != "deb-src" {
                return Err(Error::invalid_hint(
                    format!("{key}.types[{i}]"),
                    format!("{t:?} is not a repository type"),
                    "use \"deb\" for binary packages or \"deb-src\" for sources",
                ));
            }
        }
        Ok(types)
    }

    /// At least one URI and one suite, each well formed.
    fn check_uris_and_suites(&self, key: &str) -> Result<()> {
        if self.uris.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.uris"),
                "no URIs given",
                "add the repository address, e.g. uris = [\"https://deb.example.org/debian\"]",
            ));
        }
        for (i, u) in self.uris.iter().enumerate() {
            check_uri(&format!("{key}.uris[{i}]"), u)?;
        }
        if self.suites.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.suites"),
                "no suites given",
                "add the distribution codename, e.g. suites = [\"bookworm\"], or \"/\" for a flat repository",
            ));
        }
        for (i, s) in self.suites.iter().enumerate() {
            check_word(&format!("{key}.suites[{i}]"), s, "suite")?;
        }
        Ok(())
    }

    /// Whether this is a flat repository (its suites end in `/`), with the
    /// components (none, or some) that goes with it, and the other words.
    fn flat(&self, key: &str) -> Result<bool> {
        let flat = self.suites.iter().filter(|s| s.ends_with('/')).count();
        if flat > 0 && flat < self.suites.len() {
            return Err(Error::invalid_hint(
                format!("{key}.suites"),
                "mixes flat suites (ending in /) with distribution suites",
                "put the flat repository in its own apt-source entry",
            ));
        }
        let flat = flat > 0;
        if flat && !self.components.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.components"),
                "a flat repository (suite ending in /) has no components",
                "remove components, or use a distribution suite without the trailing /",
            ));
        }
        if !flat && self.components.is_empty() {
            return Err(Error::invalid_hint(
                format!("{key}.components"),
                "no components given for a distribution suite",
                "add e.g. components = [\"main\"]; for a flat repository end the suite with / (e.g. \"/\")",
            ));
        }
        for (i, c) in self.components.iter().enumerate() {
            check_word(&format!("{key}.components[{i}]"), c, "component")?;
        }
        for (i, a) in self.architectures.iter().enumerate() {
            check_word(&format!("{key}.architectures[{i}]"), a, "architecture")?;
        }
        Ok(flat)
    }

    /// The `Check-Valid-Until` option (name as written, value) when it
    /// turns the check off.
    pub fn valid_until_unchecked(&self) -> Option<(&str, &str)> {
        self.options
            .iter()
            .find(|(n, v)| {
                n.eq_ignore_ascii_case("Check-Valid-Until") && apt_bool(v) == Some(false)
            })
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Extra fields: deb822 names, not one this item writes itself, one
    /// non-empty line each.
    fn check_options(&self, key: &str) -> Result<()> {
        for (name, value) in &self.options {
            let k = format!("{key}.options.{name}");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(Error::invalid_hint(
                    k,
                    format!("{name:?} is not a deb822 field name"),
                    "field names use letters, digits and -, e.g. Check-Valid-Until",
                ));
            }
            let managed = MANAGED
                .iter()
                .find(|m| m.eq_ignore_ascii_case(name))
                .filter(|m| **m != "Signed-By" || self.key.is_some());
            if let Some(m) = managed {
                return Err(Error::invalid_hint(
                    k,
                    format!("{m} is written from this item's own keys"),
                    "set it with types, uris, suites, components, architectures or key instead",
                ));
            }
            if value.contains('\n') || value.contains('\r') {
                return Err(Error::invalid(k, "the value contains a newline"));
            }
            if value.trim().is_empty() {
                return Err(Error::invalid(k, "the value is empty"));
            }
            if name.eq_ignore_ascii_case("Check-Valid-Until") && apt_bool(value).is_none() {
                return Err(Error::invalid_hint(
                    k,
                    format!("{value:?} is neither yes nor no"),
                    "write \"yes\" (the default: a Release past its Valid-Until is refused) or \"no\"",
                ));
            }
        }
        Ok(())
    }
}

/// An apt boolean option value, as apt reads it: `yes`, `true`, `with`,
/// `on`, `enable`, `1` or their opposites, in any case.
pub fn apt_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "with" | "on" | "enable" | "1" => Some(true),
        "no" | "false" | "without" | "off" | "disable" | "0" => Some(false),
        _ => None,
    }
}

fn field(out: &mut String, name: &str, values: &[String]) {
    out.push_str(name);
    out.push(':');
    for v in values {
        out.push(' ');
        out.push_str(v);
    }
    out.push('\n');
}

fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(Error::invalid_hint(
            format!("{key}.name"),
            format!("{name:?} is not a usable source name"),
            "use letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. \"docker\")",
        ));
    }
    Ok(())
}

fn check_word(key: &str, s: &str, what: &str) -> Result<()> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            key,
            format!("{s:?} is not a valid {what}: it must be one non-empty word"),
        ));
    }
    Ok(())
}

fn check_uri(key: &str, u: &str) -> Result<()> {
    check_word(key, u, "URI")?;
    let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or_default();
    let ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        && u.len() > scheme.len() + 1;
    if !ok {
        return Err(Error::invalid_hint(
            key,
            format!("{u:?} has no URI scheme"),
            "write the full address, e.g. https://deb.example.org/debian or file:/srv/repo",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::tests::{test_key_bin, TEST_KEY_ASC};
    use crate::tree::{Meta, NodeKind};
    use crate::view::{MemInputs, MemView};

    fn src(name: &str, uri: &str, suite: &str, comps: &[&str]) -> AptSource {
        AptSource {
            name: name.into(),
            types: vec![],
            uris: vec![uri.into()],
            suites: vec![suite.into()],
            components: comps.iter().map(|s| s.to_string()).collect(),
            architectures: vec![],
            key: None,
            options: IndexMap::new(),
        }
    }

    fn render(s: &AptSource, inputs: &MemInputs) -> Result<FileTree> {
        let view = MemView::new();
        let ctx = Context {
            view: &view,
            inputs,
            arch: "amd64",
        };
        s.render("apt-source[0]", &ctx)
    }

    fn inputs() -> MemInputs {
        MemInputs::new()
            .with("keys/docker.asc", TEST_KEY_ASC)
            .with("keys/docker.gpg", test_key_bin())
    }

    #[test]
    fn docker_repository_from_the_guide() {
        let mut s = src(
            "docker",
            "https://download.docker.com/linux/ubuntu",
            "focal",
            &["stable"],
        );
        s.architectures = vec!["amd64".into()];
        s.key = Some("keys/docker.asc".into());
        let t = render(&s, &inputs()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.text("/etc/apt/sources.list.d/docker.sources").unwrap(),
            "Types: deb\n\
             URIs: https://download.docker.com/linux/ubuntu\n\
             Suites: focal\n\
             Components: stable\n\
             Architectures: amd64\n\
             Signed-By: /etc/apt/keyrings/docker.gpg\n"
        );
        // The armored key is stored as binary packets.
        assert_eq!(
            t.bytes("/etc/apt/keyrings/docker.gpg").unwrap(),
            &test_key_bin()[..]
        );
        let n = t.get_str("/etc/apt/keyrings/docker.gpg").unwrap();
        assert_eq!(n.meta, Meta::FILE);
        assert_eq!(n.origin, Origin::new("apt-source", "apt-source[0]"));
    }

    #[test]
    fn kubic_flat_repository_from_the_guide() {
        let mut s = src(
            "kubic",
            "http://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable/Debian_10/",
            "/",
            &[],
        );
        s.key = Some("keys/docker.gpg".into());
        let t = render(&s, &inputs()).unwrap();
        assert_eq!(
            t.text("/etc/apt/sources.list.d/kubic.sources").unwrap(),
            "Types: deb\n\
             URIs: http://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable/Debian_10/\n\
             Suites: /\n\
             Signed-By: /etc/apt/keyrings/kubic.gpg\n"
        );
        // A binary key is stored as it is.
        assert_eq!(
            t.bytes("/etc/apt/keyrings/kubic.gpg").unwrap(),
            &test_key_bin()[..]
        );
    }

    #[test]
    fn check_valid_until_takes_apt_booleans_only() {
        assert_eq!(apt_bool("Yes"), Some(true));
        assert_eq!(apt_bool(" off "), Some(false));
        assert_eq!(apt_bool("0"), Some(false));
        assert_eq!(apt_bool("later"), None);
        let mut s = src("deb", "http://r.example/debian", "testing", &["main"]);
        s.options.insert("check-valid-until".into(), "no".into());
        assert_eq!(s.valid_until_unchecked(), Some(("check-valid-until", "no")));
        assert!(render(&s, &MemInputs::new()).is_ok());
        s.options.insert("check-valid-until".into(), "yes".into());
        assert_eq!(s.valid_until_unchecked(), None);
        s.options
            .insert("check-valid-until".into(), "sometimes".into());
        let e = render(&s, &MemInputs::new()).unwrap_err();
        assert_eq!(e.key(), "apt-source[0].options.check-valid-until");
        assert!(
            e.to_string()
                .contains("\"sometimes\" is neither yes nor no"),
            "{e}"
        );
    }

    #[test]
    fn several_values_and_options_in_order_without_key() {
        let mut s = src(
            "deb",
            "http://debian.mirror.example/debian",
            "bookworm",
            &["main", "contrib"],
        );
        s.types = vec!["deb".into(), "deb-src".into()];
        s.uris.push("mirror+file:/etc/apt/mirrors.txt".into());
        s.suites.push("bookworm-updates".into());
        s.architectures = vec!["amd64".into(), "arm64".into()];
        s.options.insert("Check-Valid-Until".into(), "no".into());
        s.options.insert(
            "Signed-By".into(),
            "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
        );
        let t = render(&s, &MemInputs::new()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.text("/etc/apt/sources.list.d/deb.sources").unwrap(),
            "Types: deb deb-src\n\
             URIs: http://debian.mirror.example/debian mirror+file:/etc/apt/mirrors.txt\n\
             Suites: bookworm bookworm-updates\n\
             Components: main contrib\n\
             Architectures: amd64 arm64\n\
             Check-Valid-Until: no\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
    }

    #[test]
    fn flat_and_component_rules() {
        let s = src("x", "http://a/b/", "/", &["main"]);
        assert_eq!(
            render(&s, &MemInputs::new()).unwrap_err().key(),
            "apt-source[0].components"
        );
        let s = src("x", "http://a/b", "bookworm", &[]);
        let e = render(&s, &MemInputs::new()).unwrap_err();
        assert_eq!(e.key(), "apt-source[0].components");
        assert!(e.hint().unwrap().contains("flat"), "{e:?}");
        let mut s = src("x", "http://a/b", "bookworm", &["main"]);
        s.suites.push("./".into());
        assert_eq!(
            render(&s, &MemInputs::new()).unwrap_err().key(),
            "apt-source[0].suites"
        );
        let mut s = src("x", "http://a/b", "bookworm", &["main"]);
        s.suites.clear();
        assert_eq!(
            render(&s, &MemInputs::new()).unwrap_err().key(),
            "apt-source[0].suites"
        );
    }

    type Edit = Box<dyn Fn(&mut AptSource)>;

    #[test]
    fn bad_values_name_their_key() {
        let base = || src("docker", "https://a.example/x", "focal", &["stable"]);
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|s| s.name = "dock er".into()),
                "apt-source[0].name",
            ),
            (Box::new(|s| s.name = "../x".into()), "apt-source[0].name"),
            (Box::new(|s| s.name = String::new()), "apt-source[0].name"),
            (
                Box::new(|s| s.types = vec!["deb".into(), "rpm".into()]),
                "apt-source[0].types[1]",
            ),
            (Box::new(|s| s.uris.clear()), "apt-source[0].uris"),
            (
                Box::new(|s| s.uris = vec!["download.docker.com/linux".into()]),
                "apt-source[0].uris[0]",
            ),
            (
                Box::new(|s| s.uris = vec!["https:".into()]),
                "apt-source[0].uris[0]",
            ),
            (
                Box::new(|s| s.uris.push("https://a b".into())),
                "apt-source[0].uris[1]",
            ),
            (
                Box::new(|s| s.suites = vec!["focal\nX: y".into()]),
                "apt-source[0].suites[0]",
            ),
            (
                Box::new(|s| s.components.push(String::new())),
                "apt-source[0].components[1]",
            ),
            (
                Box::new(|s| s.architectures = vec!["amd 64".into()]),
                "apt-source[0].architectures[0]",
            ),
            (
                Box::new(|s| {
                    s.options.insert("Bad Name".into(), "x".into());
                }),
                "apt-source[0].options.Bad Name",
            ),
            (
                Box::new(|s| {
                    s.options.insert("uris".into(), "x".into());
                }),
                "apt-source[0].options.uris",
            ),
            (
                Box::new(|s| {
                    s.options.insert("Trusted".into(), "yes\nTypes: deb".into());
                }),
                "apt-source[0].options.Trusted",
            ),
            (
                Box::new(|s| {
                    s.options.insert("Trusted".into(), " ".into());
                }),
                "apt-source[0].options.Trusted",
            ),
            (
                Box::new(|s| {
                    s.key = Some("keys/docker.asc".into());
                    s.options.insert("Signed-By".into(), "/x".into());
                }),
                "apt-source[0].options.Signed-By",
            ),
        ];
        for (i, (f, want)) in cases.into_iter().enumerate() {
            let mut s = base();
            f(&mut s);
            let e = render(&s, &inputs()).unwrap_err();
            assert_eq!(e.key(), want, "case {i}: {e}");
        }
    }

    #[test]
    fn key_problems() {
        let mut s = src("docker", "https://a.example/x", "focal", &["stable"]);
        s.key = Some("keys/missing.asc".into());
        match render(&s, &inputs()).unwrap_err() {
            Error::Input { key, path, .. } => {
                assert_eq!(key, "apt-source[0].key");
                assert_eq!(path, "keys/missing.asc");
            }
            e => panic!("{e:?}"),
        }
        let bad = MemInputs::new()
            .with("k.txt", "not a key\n")
            .with("k.asc", TEST_KEY_ASC.replace("=etto", "=AAAA"));
        for f in ["k.txt", "k.asc"] {
            s.key = Some(f.into());
            let e = render(&s, &bad).unwrap_err();
            assert_eq!(e.key(), "apt-source[0].key");
            assert!(e.to_string().contains(f), "{e}");
            assert!(matches!(e, Error::Invalid { .. }));
        }
        // Nothing but the keyring and the sources file is written.
        s.key = Some("keys/docker.asc".into());
        let t = render(&s, &inputs()).unwrap();
        let kinds: Vec<_> = t
            .iter()
            .map(|(p, n)| (p.to_string(), matches!(n.kind, NodeKind::File(_))))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/etc/apt/keyrings/docker.gpg".to_string(), true),
                ("/etc/apt/sources.list.d/docker.sources".to_string(), true)
            ]
        );
    }
}
