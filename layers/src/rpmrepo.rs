//! `yum-repo` and `zypper-repo`: `.repo` files and their keys.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keys;
use crate::tree::{FileTree, ImagePath, Node, Origin};
use crate::view::Context;

/// Which package manager reads the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/etc/yum.repos.d/`.
    Yum,
    /// `/etc/zypp/repos.d/`.
    Zypper,
}

/// An rpm repository.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RpmRepo {
    /// The repository id (the `[section]` of the file).
    pub name: String,
    /// File name without `.repo`; default: the name.
    pub file: Option<String>,
    /// Human-readable `name=`; default: the id.
    pub title: Option<String>,
    /// `baseurl=`.
    pub baseurl: Option<String>,
    /// `mirrorlist=`.
    pub mirrorlist: Option<String>,
    /// The signing key: a file relative to the recipe (stored under
    /// `/etc/pki/rpm-gpg/` and referenced as `file://`), or an `http(s)://`
    /// or `file://` URL used verbatim.
    pub gpgkey: Option<String>,
    /// `gpgcheck=`; default true.
    pub gpgcheck: Option<bool>,
    /// `repo_gpgcheck=`; default false.
    pub repo_gpgcheck: Option<bool>,
    /// `enabled=`; default true.
    pub enabled: Option<bool>,
    /// Further `key=value` lines, verbatim (e.g. `type = "rpm-md"`).
    #[serde(default)]
    pub options: IndexMap<String, String>,
}

/// Keys this item writes itself; `options` may not repeat them.
const MANAGED: [&str; 7] = [
    "name",
    "baseurl",
    "mirrorlist",
    "enabled",
    "gpgcheck",
    "gpgkey",
    "repo_gpgcheck",
];

impl Flavor {
    fn item(self) -> &'static str {
        match self {
            Flavor::Yum => "yum-repo",
            Flavor::Zypper => "zypper-repo",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Flavor::Yum => "/etc/yum.repos.d",
            Flavor::Zypper => "/etc/zypp/repos.d",
        }
    }
}

impl RpmRepo {
    /// Render the `.repo` file and the key.
    pub fn render(&self, key: &str, flavor: Flavor, ctx: &Context) -> Result<FileTree> {
        let origin = Origin::new(flavor.item(), key);
        check_id(&format!("{key}.name"), &self.name, "repository id")?;
        let file = self.file.as_deref().unwrap_or(&self.name);
        check_id(&format!("{key}.file"), file, "file name")?;
        let title = self.title.as_deref().unwrap_or(&self.name);
        check_value(&format!("{key}.title"), title)?;
        if self.baseurl.is_none() && self.mirrorlist.is_none() {
            return Err(Error::invalid_hint(
                key,
                "neither baseurl nor mirrorlist is set",
                "add baseurl = \"https://...\" (yum variables like $basearch are kept as written)",
            ));
        }
        if let Some(u) = &self.baseurl {
            check_value(&format!("{key}.baseurl"), u)?;
        }
        if let Some(u) = &self.mirrorlist {
            check_value(&format!("{key}.mirrorlist"), u)?;
        }
        self.check_options(key)?;

        let mut tree = FileTree::new();
        let gpgkey = match &self.gpgkey {
            None => None,
            Some(g) if is_url(g) => {
                check_value(&format!("{key}.gpgkey"), g)?;
                Some(g.clone())
            }
            Some(rel) => {
                let k = format!("{key}.gpgkey");
                let data = ctx.inputs.read(rel).map_err(|source| Error::Input {
                    key: k.clone(),
                    path: rel.clone(),
                    source,
                })?;
                let bin = keys::load_public_key(&data).map_err(|m| {
                    Error::invalid_hint(
                        &k,
                        format!("{rel}: {m}"),
                        "give the repository's OpenPGP public key (armored or binary), or an https:// or file:// URL",
                    )
                })?;
                let path = format!("/etc/pki/rpm-gpg/RPM-GPG-KEY-{}", self.name);
                let p = ImagePath::new(&path).map_err(|m| Error::invalid(&k, m.to_string()))?;
                tree.insert(p, Node::file(keys::armor(&bin), origin.clone()))?;
                Some(format!("file://{path}"))
            }
        };

        let out = self.repo_text(title, gpgkey.as_deref());
        let path = format!("{}/{file}.repo", flavor.dir());
        let p = ImagePath::new(&path)
            .map_err(|m| Error::invalid(format!("{key}.file"), m.to_string()))?;
        tree.insert(p, Node::file(out, origin))?;
        Ok(tree)
    }

    /// Extra options: names of letters, digits, `_` and `-`, not one this
    /// item writes itself, with one-line values.
    fn check_options(&self, key: &str) -> Result<()> {
        for (name, value) in &self.options {
            let k = format!("{key}.options.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::invalid_hint(
                    k,
                    format!("{name:?} is not a repository option name"),
                    "option names use letters, digits, _ and -, e.g. skip_if_unavailable",
                ));
            }
            if MANAGED.contains(&name.as_str()) {
                return Err(Error::invalid_hint(
                k,
                format!("{name} is written from this item's own keys"),
                "set it with title, baseurl, mirrorlist, enabled, gpgcheck, gpgkey or repo-gpgcheck",
            ));
            }
            check_value(&k, value)?;
        }
        Ok(())
    }

    /// The `.repo` file: the section `[name]`, the settings, then the
    /// extra options.
    fn repo_text(&self, title: &str, gpgkey: Option<&str>) -> String {
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut out = format!("[{}]\nname={title}\n", self.name);
        if let Some(u) = &self.baseurl {
            out.push_str(&format!("baseurl={u}\n"));
        }
        if let Some(u) = &self.mirrorlist {
            out.push_str(&format!("mirrorlist={u}\n"));
        }
        out.push_str(&format!("enabled={}\n", flag(self.enabled.unwrap_or(true))));
        out.push_str(&format!(
            "gpgcheck={}\n",
            flag(self.gpgcheck.unwrap_or(true))
        ));
        if let Some(g) = &gpgkey {
            out.push_str(&format!("gpgkey={g}\n"));
        }
        if let Some(r) = self.repo_gpgcheck {
            out.push_str(&format!("repo_gpgcheck={}\n", flag(r)));
        }
        for (name, value) in &self.options {
            out.push_str(&format!("{name}={value}\n"));
        }
        out
    }
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|p| s.len() > p.len() && s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
}

fn check_id(key: &str, s: &str, what: &str) -> Result<()> {
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if !ok {
        return Err(Error::invalid_hint(
            key,
            format!("{s:?} is not a valid {what}"),
            "use letters, digits, '.', '_', ':' and '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

fn check_value(key: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::invalid(key, "the value is empty"));
    }
    if v.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
        return Err(Error::invalid(
            key,
            "the value contains a newline or NUL; .repo values are single lines",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::tests::{test_key_bin, TEST_KEY_ASC};
    use crate::view::{MemInputs, MemView};

    fn repo(name: &str) -> RpmRepo {
        RpmRepo {
            name: name.into(),
            file: None,
            title: None,
            baseurl: None,
            mirrorlist: None,
            gpgkey: None,
            gpgcheck: None,
            repo_gpgcheck: None,
            enabled: None,
            options: IndexMap::new(),
        }
    }

    fn render(r: &RpmRepo, flavor: Flavor, inputs: &MemInputs) -> Result<FileTree> {
        let view = MemView::new();
        let ctx = Context {
            view: &view,
            inputs,
            arch: "amd64",
        };
        r.render("yum-repo[1]", flavor, &ctx)
    }

    fn docker_ce() -> RpmRepo {
        let mut r = repo("docker-ce-stable");
        r.file = Some("docker-ce".into());
        r.title = Some("Docker CE Stable - $basearch".into());
        r.baseurl =
            Some("https://download.docker.com/linux/centos/$releasever/$basearch/stable".into());
        r.gpgkey = Some("https://download.docker.com/linux/centos/gpg".into());
        r
    }

    #[test]
    fn docker_ce_repo_from_the_guide() {
        let t = render(&docker_ce(), Flavor::Yum, &MemInputs::new()).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.text("/etc/yum.repos.d/docker-ce.repo").unwrap(),
            "[docker-ce-stable]\n\
             name=Docker CE Stable - $basearch\n\
             baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable\n\
             enabled=1\n\
             gpgcheck=1\n\
             gpgkey=https://download.docker.com/linux/centos/gpg\n"
        );
        let n = t.get_str("/etc/yum.repos.d/docker-ce.repo").unwrap();
        assert_eq!(n.origin, Origin::new("yum-repo", "yum-repo[1]"));
    }

    #[test]
    fn zypper_flavor_and_stored_binary_key_is_armored() {
        let mut r = repo("devel_kubic_libcontainers_stable");
        r.file = Some("devel:kubic:libcontainers:stable".into());
        r.title =
            Some("Stable Releases of Upstream github.com/containers packages (CentOS_7)".into());
        r.baseurl = Some(
            "https://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable/CentOS_7/"
                .into(),
        );
        r.gpgkey = Some("keys/Release.key".into());
        r.repo_gpgcheck = Some(true);
        r.enabled = Some(false);
        r.options.insert("type".into(), "rpm-md".into());
        r.options.insert("autorefresh".into(), "1".into());
        let inputs = MemInputs::new().with("keys/Release.key", test_key_bin());
        let t = render(&r, Flavor::Zypper, &inputs).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.text("/etc/zypp/repos.d/devel:kubic:libcontainers:stable.repo").unwrap(),
            "[devel_kubic_libcontainers_stable]\n\
             name=Stable Releases of Upstream github.com/containers packages (CentOS_7)\n\
             baseurl=https://download.opensuse.org/repositories/devel:/kubic:/libcontainers:/stable/CentOS_7/\n\
             enabled=0\n\
             gpgcheck=1\n\
             gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-devel_kubic_libcontainers_stable\n\
             repo_gpgcheck=1\n\
             type=rpm-md\n\
             autorefresh=1\n"
        );
        let key = t
            .text("/etc/pki/rpm-gpg/RPM-GPG-KEY-devel_kubic_libcontainers_stable")
            .unwrap();
        assert_eq!(key, TEST_KEY_ASC);
        assert_eq!(keys::dearmor(key.as_bytes()).unwrap(), test_key_bin());
    }

    #[test]
    fn armored_key_is_checked_and_stored_armored() {
        let mut r = repo("docker-ce-stable");
        r.baseurl = Some("https://x.example/".into());
        r.gpgcheck = Some(false);
        r.gpgkey = Some("gpg".into());
        let inputs = MemInputs::new().with(
            "gpg",
            TEST_KEY_ASC.replace("BLOCK-----\n\n", "BLOCK-----\nComment: x\n\n"),
        );
        let t = render(&r, Flavor::Yum, &inputs).unwrap();
        assert_eq!(
            t.text("/etc/pki/rpm-gpg/RPM-GPG-KEY-docker-ce-stable")
                .unwrap(),
            TEST_KEY_ASC
        );
        assert_eq!(
            t.text("/etc/yum.repos.d/docker-ce-stable.repo").unwrap(),
            "[docker-ce-stable]\nname=docker-ce-stable\nbaseurl=https://x.example/\nenabled=1\ngpgcheck=0\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker-ce-stable\n"
        );
        let bad = MemInputs::new().with("gpg", TEST_KEY_ASC.replace("=etto", "=etta"));
        let e = render(&r, Flavor::Yum, &bad).unwrap_err();
        assert_eq!(e.key(), "yum-repo[1].gpgkey");
        assert!(e.to_string().contains("checksum"), "{e}");
        match render(&r, Flavor::Yum, &MemInputs::new()).unwrap_err() {
            Error::Input { key, path, .. } => {
                assert_eq!(key, "yum-repo[1].gpgkey");
                assert_eq!(path, "gpg");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn mirrorlist_and_file_url_key() {
        let mut r = repo("base");
        r.mirrorlist = Some("http://mirrorlist.example/?release=$releasever&arch=$basearch".into());
        r.gpgkey = Some("file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7".into());
        let t = render(&r, Flavor::Yum, &MemInputs::new()).unwrap();
        assert_eq!(
            t.text("/etc/yum.repos.d/base.repo").unwrap(),
            "[base]\nname=base\nmirrorlist=http://mirrorlist.example/?release=$releasever&arch=$basearch\nenabled=1\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\n"
        );
    }

    type Edit = Box<dyn Fn(&mut RpmRepo)>;

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|r| r.name = "docker ce".into()),
                "yum-repo[1].name",
            ),
            (Box::new(|r| r.name = "]x".into()), "yum-repo[1].name"),
            (
                Box::new(|r| r.file = Some("../x".into())),
                "yum-repo[1].file",
            ),
            (
                Box::new(|r| r.file = Some(String::new())),
                "yum-repo[1].file",
            ),
            (
                Box::new(|r| r.title = Some("a\nenabled=0".into())),
                "yum-repo[1].title",
            ),
            (
                Box::new(|r| {
                    r.baseurl = None;
                }),
                "yum-repo[1]",
            ),
            (
                Box::new(|r| r.baseurl = Some("https://x\n".into())),
                "yum-repo[1].baseurl",
            ),
            (
                Box::new(|r| r.mirrorlist = Some(" ".into())),
                "yum-repo[1].mirrorlist",
            ),
            (
                Box::new(|r| r.gpgkey = Some("https://k\r".into())),
                "yum-repo[1].gpgkey",
            ),
            (
                Box::new(|r| {
                    r.options.insert("gpgcheck".into(), "0".into());
                }),
                "yum-repo[1].options.gpgcheck",
            ),
            (
                Box::new(|r| {
                    r.options.insert("a=b".into(), "0".into());
                }),
                "yum-repo[1].options.a=b",
            ),
            (
                Box::new(|r| {
                    r.options.insert("cost".into(), "1\n[evil]".into());
                }),
                "yum-repo[1].options.cost",
            ),
        ];
        for (i, (f, want)) in cases.into_iter().enumerate() {
            let mut r = docker_ce();
            f(&mut r);
            let e = render(&r, Flavor::Yum, &MemInputs::new()).unwrap_err();
            assert_eq!(e.key(), want, "case {i}: {e}");
        }
    }
}
