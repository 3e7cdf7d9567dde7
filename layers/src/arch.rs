//! Architecture names: the OCI spelling an image declares (`amd64`, `arm`),
//! Debian's (`armhf`) and rpm's (`x86_64`, `armv7hl`). The one map of the
//! project: the recipe's `${deb_arch}` and `${rpm_arch}` and the package
//! backends (through `nodeimg_pkg::arch`) read it.

/// (OCI, Debian, rpm) for every architecture whose names differ somewhere.
const NAMES: [(&str, &str, &str); 7] = [
    ("amd64", "amd64", "x86_64"),
    ("arm64", "arm64", "aarch64"),
    ("arm", "armhf", "armv7hl"),
    ("386", "i386", "i686"),
    ("ppc64le", "ppc64el", "ppc64le"),
    ("mips64le", "mips64el", "mips64le"),
    ("mipsle", "mipsel", "mipsle"),
];

/// Debian's name for an OCI architecture (`arm` is `armhf`, `386` is
/// `i386`, ...).
pub fn debian(oci: &str) -> &str {
    NAMES.iter().find(|n| n.0 == oci).map_or(oci, |n| n.1)
}

/// The OCI name for Debian's spelling.
pub fn oci_from_debian(debian: &str) -> &str {
    NAMES.iter().find(|n| n.1 == debian).map_or(debian, |n| n.0)
}

/// rpm's name for an OCI architecture (`amd64` is `x86_64`, ...).
pub fn rpm(oci: &str) -> &str {
    NAMES.iter().find(|n| n.0 == oci).map_or(oci, |n| n.2)
}

/// The OCI platform variant of an architecture, when its packages name one:
/// Debian's `armhf` and rpm's `armv7hl` are ARMv7 (`arm` + `v7`).
pub fn variant(oci: &str) -> Option<&'static str> {
    match oci {
        "arm" => Some("v7"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(debian("arm"), "armhf");
        assert_eq!(debian("amd64"), "amd64");
        assert_eq!(debian("riscv64"), "riscv64");
        assert_eq!(oci_from_debian("armhf"), "arm");
        assert_eq!(oci_from_debian("ppc64el"), "ppc64le");
        assert_eq!(rpm("amd64"), "x86_64");
        assert_eq!(rpm("arm64"), "aarch64");
        assert_eq!(rpm("arm"), "armv7hl");
        assert_eq!(rpm("386"), "i686");
        assert_eq!(rpm("s390x"), "s390x");
        assert_eq!(variant("arm"), Some("v7"));
        assert_eq!(variant("arm64"), None);
        assert_eq!(variant("amd64"), None);
        for (o, d, r) in NAMES {
            assert_eq!(oci_from_debian(debian(o)), o);
            assert!(!d.is_empty() && !r.is_empty());
        }
    }
}
