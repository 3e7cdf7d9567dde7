//! Same recipe, same inputs -> same image, byte for byte: whatever folder the
//! recipe sits in, whenever it is built, whatever the inputs' mtimes. A
//! different `SOURCE_DATE_EPOCH` is a different image.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nodeimg_e2e::*;

/// Copy `recipes/` into `dir/recipes` and set every mtime to `epoch`. When
/// `recipe` installs rpm packages, the key files it names are replaced by
/// the test repositories' key in the copy (see `test_build`).
fn copy_recipes(dir: &Path, epoch: u64, recipe: &Path) {
    fs::create_dir_all(dir).expect("mkdir");
    copy_dir(&workspace_root().join("recipes"), &dir.join("recipes"));
    if rpmrepo::has_rpm_packages(recipe) {
        let repos = rpmrepo::rpm_repos().expect("the rpm test repositories");
        let name = recipe.file_name().expect("name");
        rpmrepo::use_test_keys(&dir.join("recipes").join(name), &repos.key);
    }
    run(Command::new("find")
        .arg(dir.join("recipes"))
        .args(["-exec", "touch", "-h", "-d"])
        .arg(format!("@{epoch}"))
        .args(["{}", "+"]))
    .ok();
}

fn build_in(
    dir: &Path,
    recipe: &str,
    out: &str,
    format: &str,
    base_ref: &str,
    epoch: Option<u64>,
) -> String {
    let mut c = nodeimg(dir);
    match epoch {
        Some(e) => {
            c.env("SOURCE_DATE_EPOCH", e.to_string());
        }
        None => {
            c.env_remove("SOURCE_DATE_EPOCH");
        }
    }
    let r = run(c
        .arg("build")
        .arg(recipe)
        .args(["-o", out, "--format", format, "--base", base_ref])
        .args(packages_args(&dir.join(recipe))));
    single_digest_line(&r.ok())
}

/// Every file of two output trees, compared by content.
fn assert_same_tree(a: &Path, b: &Path, label: &str) {
    let la = tree_listing(a);
    let lb = tree_listing(b);
    assert_eq!(la, lb, "{label}: the outputs hold different files");
    assert!(
        la.iter().any(|p| p == "index.json"),
        "{label}: no index.json in {la:?}"
    );
    for p in la {
        let (pa, pb) = (a.join(&p), b.join(&p));
        if pa.is_file() {
            assert!(
                fs::read(&pa).expect("read") == fs::read(&pb).expect("read"),
                "{label}: {p} differs between the two builds"
            );
        }
    }
}

#[test]
fn same_recipe_elsewhere_later_with_touched_inputs_gives_same_image() {
    let Some(base) = fixture_base() else { return };
    for recipe in recipes() {
        // An rpm recipe is built on the fixture made an rpm base.
        let base_ref = test_build(&recipe, &base).base_ref();
        let file = recipe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let rel = format!("recipes/{file}");
        let tmp = temp_dir("repro");
        let a = tmp.path().join("first");
        let b = tmp.path().join("second/deeper");
        copy_recipes(&a, 1_000_000_000, &recipe);
        copy_recipes(&b, 1_600_000_000, &recipe);

        let d1 = build_in(&a, &rel, "out/img", "oci", &base_ref, Some(TEST_EPOCH));
        std::thread::sleep(Duration::from_millis(1100));
        let d2 = build_in(&b, &rel, "out/img", "oci", &base_ref, Some(TEST_EPOCH));
        assert_eq!(
            d1, d2,
            "{file}: same inputs in another folder, later, gave another digest"
        );
        assert_same_tree(&a.join("out/img"), &b.join("out/img"), &file);

        // Without SOURCE_DATE_EPOCH the fixed epoch applies: still reproducible.
        let n1 = build_in(&a, &rel, "out/noepoch", "oci", &base_ref, None);
        std::thread::sleep(Duration::from_millis(1100));
        let n2 = build_in(&b, &rel, "out/noepoch", "oci", &base_ref, None);
        assert_eq!(n1, n2, "{file}: builds without SOURCE_DATE_EPOCH differ");
        assert_same_tree(&a.join("out/noepoch"), &b.join("out/noepoch"), &file);

        // The archive and the rootfs too.
        let x1 = build_in(
            &a,
            &rel,
            "out/img.tar",
            "oci-archive",
            &base_ref,
            Some(TEST_EPOCH),
        );
        let x2 = build_in(
            &b,
            &rel,
            "out/img.tar",
            "oci-archive",
            &base_ref,
            Some(TEST_EPOCH),
        );
        assert_eq!(x1, x2, "{file}: oci-archive digests differ");
        assert!(
            fs::read(a.join("out/img.tar")).expect("read")
                == fs::read(b.join("out/img.tar")).expect("read"),
            "{file}: the two oci-archive files differ"
        );
        let r1 = build_in(
            &a,
            &rel,
            "out/rootfs.tar",
            "rootfs",
            &base_ref,
            Some(TEST_EPOCH),
        );
        let r2 = build_in(
            &b,
            &rel,
            "out/rootfs.tar",
            "rootfs",
            &base_ref,
            Some(TEST_EPOCH),
        );
        assert_eq!(r1, r2, "{file}: rootfs tars differ");

        // A different SOURCE_DATE_EPOCH is a different image.
        let d3 = build_in(
            &a,
            &rel,
            "out/later",
            "oci",
            &base_ref,
            Some(TEST_EPOCH + 86_400),
        );
        assert_ne!(
            d1, d3,
            "{file}: SOURCE_DATE_EPOCH did not change the digest"
        );
    }
}

#[test]
fn changed_recipe_content_changes_the_digest() {
    let Some(base) = fixture_base() else { return };
    let recipe = recipes().into_iter().next().expect("a recipe");
    let base_ref = test_build(&recipe, &base).base_ref();
    let file = recipe
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let rel = format!("recipes/{file}");
    let tmp = temp_dir("repro-change");
    let a = tmp.path().join("a");
    copy_recipes(&a, 1_000_000_000, &recipe);
    let d1 = build_in(&a, &rel, "out/one", "oci", &base_ref, Some(TEST_EPOCH));
    let path = a.join(&rel);
    let mut text = fs::read_to_string(&path).expect("read recipe");
    text.push_str(
        "\n[[layer]]\nname = \"reproducibility-probe\"\nfile = [{ path = \"/etc/nodeimg-probe\", content = \"x\\n\" }]\n",
    );
    fs::write(&path, text).expect("write recipe");
    let d2 = build_in(&a, &rel, "out/two", "oci", &base_ref, Some(TEST_EPOCH));
    assert_ne!(d1, d2, "{file}: an added layer did not change the digest");
}

/// Layer compression runs on every core the process may use, and the bytes
/// do not depend on how many: a build pinned to one CPU (`taskset -c 0`)
/// gives the same manifest digest as one on all of them, for gzip and zstd
/// layers (the rootfs base is compressed as a new layer too).
#[test]
fn compressed_layers_do_not_depend_on_the_number_of_cores() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores < 2 {
        eprintln!(
            "note: this machine has one core, so both builds run on one (the unit tests of \
             nodeimg-image compare 1 and 4 threads)"
        );
    }
    let Some(base) = fixture_base() else { return };
    let Some(taskset) = find_tool("taskset") else {
        skip_or_fail("taskset", "install util-linux");
        return;
    };
    let recipe = recipes()
        .into_iter()
        .find(|r| !rpmrepo::has_rpm_packages(r))
        .expect("a recipe without rpm packages");
    let build = test_build(&recipe, &base);
    let tmp = temp_dir("cores");
    for codec in ["gzip", "zstd"] {
        let digest = |pinned: bool| {
            let out = tmp.path().join(format!("{codec}-{pinned}"));
            let mut c = nodeimg(tmp.path());
            if pinned {
                c = on_core_zero(&taskset, &c);
            }
            c.arg("build")
                .arg(&build.recipe)
                .arg("-o")
                .arg(&out)
                .args(["--format", "oci", "--compression", codec])
                .args(["--base", &build.base_ref()])
                .args(&build.args);
            single_digest_line(&run(&mut c).ok())
        };
        let (one, all) = (digest(true), digest(false));
        assert_eq!(
            one, all,
            "{codec}: the image built on one core differs from the one built on all"
        );
    }
}

/// `cmd` (its program, arguments, environment and folder) run by
/// `taskset -c 0`: on the first core only.
fn on_core_zero(taskset: &Path, cmd: &Command) -> Command {
    let mut c = Command::new(taskset);
    c.args(["-c", "0"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}
