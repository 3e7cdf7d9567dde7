//! Package URLs (purl): `pkg:deb/debian/containerd@1.6.20~ds1-1%2Bb1?arch=amd64`,
//! `pkg:rpm/centos/docker-ce@19.03.11-3.el7?arch=x86_64&epoch=3`.
//!
//! As the purl specification says: the type is `deb` or `rpm`; the
//! namespace is the distribution (lowercase); a Debian version keeps its
//! epoch (`1:2.0-1`), an rpm version is `version-release` with the epoch,
//! when not 0, in the `epoch` qualifier; qualifiers are sorted by key.
//! Every character but the unreserved ones (`A-Z a-z 0-9 . - _ ~`) and the
//! colon is percent-encoded (UTF-8 bytes, upper-case hex): a `+` is `%2B`,
//! a `~` and a `:` stay as they are.

use crate::{Kind, Package};

/// The package URL of `p`.
pub fn package_url(p: &Package) -> String {
    let mut out = format!("pkg:{}/", p.kind);
    if let Some(ns) = p.namespace.as_deref().filter(|n| !n.is_empty()) {
        out.push_str(&encode(&ns.to_lowercase()));
        out.push('/');
    }
    let name = match p.kind {
        // Debian package names are lower case; rpm's are case-sensitive.
        Kind::Deb => p.name.to_lowercase(),
        Kind::Rpm => p.name.clone(),
    };
    out.push_str(&encode(&name));
    if !p.version.is_empty() {
        out.push('@');
        out.push_str(&encode(&p.version));
    }
    let mut qualifiers: Vec<(&str, String)> = Vec::new();
    if !p.architecture.is_empty() {
        qualifiers.push(("arch", p.architecture.clone()));
    }
    if let Some(e) = p.epoch.filter(|e| *e != 0) {
        qualifiers.push(("epoch", e.to_string()));
    }
    qualifiers.sort();
    for (i, (k, v)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// `s` percent-encoded as a purl component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(kind: Kind, name: &str, version: &str, arch: &str, epoch: Option<u64>) -> Package {
        Package {
            kind,
            name: name.into(),
            version: version.into(),
            epoch,
            architecture: arch.into(),
            namespace: Some("Debian".into()),
            source: None,
            license: None,
            layer: None,
            download: None,
        }
    }

    #[test]
    fn debian_versions_keep_tilde_and_epoch_and_escape_plus() {
        let p = pkg(Kind::Deb, "containerd", "1.6.20~ds1-1+b1", "amd64", None);
        assert_eq!(
            package_url(&p),
            "pkg:deb/debian/containerd@1.6.20~ds1-1%2Bb1?arch=amd64"
        );
        let p = pkg(Kind::Deb, "libc6", "1:2.36-9+deb12u4", "amd64", None);
        assert_eq!(
            package_url(&p),
            "pkg:deb/debian/libc6@1:2.36-9%2Bdeb12u4?arch=amd64"
        );
        let p = pkg(Kind::Deb, "libstdc++6", "12.2.0-14", "amd64", None);
        assert_eq!(
            package_url(&p),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64"
        );
    }

    #[test]
    fn rpm_epochs_are_a_qualifier_sorted_after_arch() {
        let mut p = pkg(Kind::Rpm, "docker-ce", "19.03.11-3.el7", "x86_64", Some(3));
        p.namespace = Some("centos".into());
        assert_eq!(
            package_url(&p),
            "pkg:rpm/centos/docker-ce@19.03.11-3.el7?arch=x86_64&epoch=3"
        );
        // Epoch 0 is the default and not written.
        p.epoch = Some(0);
        assert_eq!(
            package_url(&p),
            "pkg:rpm/centos/docker-ce@19.03.11-3.el7?arch=x86_64"
        );
        // Without a namespace there is no empty segment.
        p.namespace = None;
        p.name = "NetworkManager".into();
        assert_eq!(
            package_url(&p),
            "pkg:rpm/NetworkManager@19.03.11-3.el7?arch=x86_64"
        );
    }

    #[test]
    fn reserved_and_non_ascii_characters_are_escaped() {
        assert_eq!(
            encode("a b/c?d#e@f&g=h%"),
            "a%20b%2Fc%3Fd%23e%40f%26g%3Dh%25"
        );
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("1:2.0~rc1_x-y"), "1:2.0~rc1_x-y");
        // A negative control: the unescaped form is not what is written.
        assert_ne!(encode("1.0+b1"), "1.0+b1");
    }
}
