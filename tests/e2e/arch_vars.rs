//! The architecture variables: `${arch}` is the OCI name, `${deb_arch}` and
//! `${rpm_arch}` the names Debian and rpm give the same architecture, so an
//! `arm` image's recipe can name Debian's `armhf` and rpm's `armv7hl`. A
//! recipe that defines one of them is refused (they are built-ins).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use nodeimg_e2e::{dpkg_base, nodeimg, read_tar, run, temp_dir};

fn recipe(dir: &Path, arch: &str) -> std::path::PathBuf {
    let p = dir.join(format!("arch-{arch}.toml"));
    fs::write(
        &p,
        format!(
            "[image]\nname = \"arch\"\narchitecture = \"{arch}\"\n\n[[layer]]\nname = \"names\"\nfile = [{{ path = \"/etc/arch-names\", content = \"${{arch}} ${{deb_arch}} ${{rpm_arch}}\\n\" }}]\n"
        ),
    )
    .unwrap();
    p
}

/// The content of `/etc/arch-names` in the rootfs `recipe` builds to.
fn names_built(dir: &Path, recipe: &Path) -> String {
    names_built_on(dir, recipe, None, "")
}

/// [`names_built`] on the rootfs tar `base`, when given; `suffix` tells
/// the outputs of several bases apart.
fn names_built_on(dir: &Path, recipe: &Path, base: Option<&Path>, suffix: &str) -> String {
    let out = dir.join(format!(
        "{}{suffix}.tar",
        recipe.file_stem().unwrap().to_string_lossy()
    ));
    let mut c = nodeimg(dir);
    c.arg("build").arg(recipe);
    if let Some(b) = base {
        c.arg("--base").arg(format!("rootfs:{}", b.display()));
    }
    let r = run(c.args(["--format", "rootfs", "-o"]).arg(&out));
    assert_eq!(r.code, 0, "{r}");
    let entries = read_tar(&out);
    let e = entries
        .iter()
        .find(|e| e.path == "/etc/arch-names")
        .unwrap_or_else(|| panic!("no /etc/arch-names in {}", out.display()));
    String::from_utf8(e.data.clone()).unwrap()
}

#[test]
fn arch_deb_arch_and_rpm_arch_name_the_image_architecture() {
    let t = temp_dir("arch-vars");
    let dir = t.path();
    for (arch, names) in [
        ("arm", "arm armhf armv7hl\n"),
        ("amd64", "amd64 amd64 x86_64\n"),
        ("arm64", "arm64 arm64 aarch64\n"),
        ("386", "386 i386 i686\n"),
        ("s390x", "s390x s390x s390x\n"),
    ] {
        assert_eq!(names_built(dir, &recipe(dir, arch)), names, "{arch}");
    }
}

#[test]
fn a_recipe_cannot_define_an_architecture_variable() {
    let t = temp_dir("arch-vars-defined");
    let dir = t.path();
    for name in ["deb_arch", "rpm_arch"] {
        let p = dir.join(format!("{name}.toml"));
        fs::write(
            &p,
            format!("[image]\nname = \"arch\"\n\n[vars]\n{name} = \"armel\"\n"),
        )
        .unwrap();
        let r = run(nodeimg(dir).arg("check").arg(&p));
        assert_eq!(r.code, 2, "{r}");
        assert!(
            r.stderr.contains(&format!("{name}.toml:5:"))
                && r.stderr.contains(&format!("vars.{name}"))
                && r.stderr.contains("is a built-in variable"),
            "{r}"
        );
    }
}

#[test]
fn a_rootfs_base_without_config_gives_its_dpkg_architecture() {
    let t = temp_dir("arch-of-base");
    let dir = t.path();
    let p = dir.join("names.toml");
    fs::write(
        &p,
        "[image]\nname = \"arch\"\n\n[[layer]]\nname = \"names\"\nfile = [{ path = \"/etc/arch-names\", content = \"${arch} ${deb_arch} ${rpm_arch}\\n\" }]\n",
    )
    .unwrap();
    for (dpkg_arch, names) in [
        ("arm64", "arm64 arm64 aarch64\n"),
        ("armhf", "arm armhf armv7hl\n"),
        ("amd64", "amd64 amd64 x86_64\n"),
    ] {
        let base = dpkg_base(dir, dpkg_arch);
        let out = dir.join(format!("oci-{dpkg_arch}"));
        let r = run(nodeimg(dir)
            .arg("build")
            .arg(&p)
            .arg("--base")
            .arg(format!("rootfs:{}", base.display()))
            .arg("-o")
            .arg(&out)
            .arg("--json"));
        assert_eq!(r.code, 0, "{r}");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        let platform = &index["manifests"][0]["platform"];
        let want = names.split(' ').next().unwrap();
        assert_eq!(platform["architecture"], want, "{dpkg_arch}");
        let built = names_built_on(dir, &p, Some(&base), &format!("-{dpkg_arch}"));
        assert_eq!(built, names, "{dpkg_arch}");
    }
    // Negative control: a base without a dpkg database is amd64.
    let empty = dir.join("empty");
    fs::create_dir_all(empty.join("etc")).unwrap();
    let tar = dir.join("empty.tar");
    nodeimg_e2e::create_tar(&empty, &tar);
    assert_eq!(
        names_built_on(dir, &p, Some(&tar), "-empty"),
        "amd64 amd64 x86_64\n"
    );
}
