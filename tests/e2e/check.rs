//! `nodeimg check` on the shipped recipes that install packages in one
//! layer and enable a unit those packages ship in a later one: without a
//! lock file the enablement cannot be checked offline, so it is a note, not
//! an error, and every lint rule still runs (a vulnerable pin is still
//! NI009, exit 1). A unit that no layer has, before any packages, is still
//! refused (exit 2). The check of the enablement against a lock that records
//! the units each package ships is in `rpm_lock`.
//!
//! A lint rule the recipe allows (`[lint] allow`) is shown as allowed with
//! its reason, does not fail `check` or `build`, and is recorded in the
//! build's metadata; without the allowance the same recipe fails both. The
//! allowances refused (no reason, an unknown rule) are in `bad_recipes`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use nodeimg_e2e::{copy_dir, nodeimg, run, temp_dir, workspace_root, Run};

/// The shipped recipes whose packages layer ships a unit a later layer
/// enables, and that unit.
const RECIPES: [(&str, &str, &str); 4] = [
    (
        "containerd-centos",
        "containerd.service",
        "layer[2].systemd.enable[0]",
    ),
    ("crio-centos", "crio.service", "layer[2].systemd.enable[0]"),
    (
        "crio-opensuse",
        "crio.service",
        "layer[2].systemd.enable[0]",
    ),
    (
        "docker-centos",
        "docker.service",
        "layer[2].systemd.enable[0]",
    ),
];

fn check(dir: &Path, recipe: &Path, json: bool) -> Run {
    let mut c = nodeimg(dir);
    c.arg("check").arg(recipe);
    if json {
        c.arg("--json");
    }
    run(&mut c)
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"))
}

/// A copy of `recipes/` (the recipes, their fragments and keys) in `dir`,
/// without lock files.
fn recipes_copy(dir: &Path) -> PathBuf {
    let to = dir.join("recipes");
    copy_dir(&workspace_root().join("recipes"), &to);
    for e in fs::read_dir(&to).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "lock") {
            fs::remove_file(p).unwrap();
        }
    }
    to
}

#[test]
fn shipped_recipes_check_with_their_package_units_unchecked() {
    let t = temp_dir("check");
    let recipes = recipes_copy(t.path());
    for (name, unit, key) in RECIPES {
        let recipe = recipes.join(format!("{name}.toml"));
        let r = check(t.path(), &recipe, true);
        assert_eq!(r.code, 0, "{name}: {r}");
        let j = json(&r);
        assert_eq!(j["counts"]["error"], 0, "{name}: {r}");
        let notes = j["notes"].as_array().unwrap();
        assert_eq!(notes.len(), 1, "{name}: {r}");
        assert_eq!(notes[0]["key"], key, "{name}: {r}");
        assert!(notes[0]["line"].as_u64().is_some(), "{name}: {r}");
        let m = notes[0]["message"].as_str().unwrap();
        assert!(
            m.contains(&format!("enabling {unit} is not checked")) && m.contains("no lock file"),
            "{name}: {m}"
        );
        assert!(
            notes[0]["hint"].as_str().unwrap().contains("nodeimg lock"),
            "{name}: {r}"
        );
        // The text form: the note with its place, and the count.
        let r = check(t.path(), &recipe, false);
        assert_eq!(r.code, 0, "{name}: {r}");
        assert!(
            r.stdout
                .contains(&format!(": note: {key}: enabling {unit}")),
            "{name}: {r}"
        );
        assert!(
            r.stderr.contains("0 error(s)") && r.stderr.contains("1 note(s)"),
            "{name}: {r}"
        );
    }
}

#[test]
fn the_unchecked_enablement_hides_no_lint_finding() {
    let t = temp_dir("check-cve");
    let recipes = recipes_copy(t.path());
    // docker-centos with a Docker CE 18.06.1 pin: CVE-2019-5736.
    let text = fs::read_to_string(recipes.join("docker-centos.toml")).unwrap();
    let pinned = text.replace("\"docker-ce-19.03.11\"", "\"docker-ce-18.06.1.ce-3.el7\"");
    assert_ne!(pinned, text);
    let recipe = recipes.join("docker-cve.toml");
    fs::write(&recipe, pinned).unwrap();
    let r = check(t.path(), &recipe, true);
    assert_eq!(r.code, 1, "lint errors, not a recipe error: {r}");
    let j = json(&r);
    let findings = j["findings"].as_array().unwrap();
    let cve: Vec<_> = findings.iter().filter(|f| f["rule"] == "NI009").collect();
    assert_eq!(cve.len(), 1, "{r}");
    assert_eq!(cve[0]["severity"], "error");
    assert!(
        cve[0]["message"]
            .as_str()
            .unwrap()
            .contains("CVE-2019-5736"),
        "{r}"
    );
    assert_eq!(j["notes"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn a_unit_no_layer_ships_is_still_refused() {
    let t = temp_dir("check-missing");
    let recipes = recipes_copy(t.path());
    // Enabled in a layer below the packages: nothing can ship it there.
    let recipe = recipes.join("early.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"early\"\n\n[[layer]]\nname = \"on\"\nsystemd = { enable = [\"docker.service\"] }\n\n[[layer]]\nname = \"pkgs\"\npackages = [\"docker-ce\"]\n\n[[layer.yum-repo]]\nname = \"docker-ce-stable\"\nbaseurl = \"https://rpm.repo.invalid/docker\"\ngpgkey = \"https://rpm.repo.invalid/gpg\"\n",
    )
    .unwrap();
    let r = check(t.path(), &recipe, true);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("early.toml:6:")
            && r.stderr.contains("layer[0].systemd.enable[0]")
            && r.stderr.contains("unit docker.service does not exist"),
        "{r}"
    );
    // The same unit enabled above the packages: a note.
    let above = recipes.join("above.toml");
    fs::write(
        &above,
        "include = [\"common/kubernetes-kernel.toml\"]\n[image]\nname = \"above\"\n\n[[layer]]\nname = \"pkgs\"\npackages = [\"docker-ce\"]\n\n[[layer.yum-repo]]\nname = \"docker-ce-stable\"\nbaseurl = \"https://rpm.repo.invalid/docker\"\ngpgkey = \"https://rpm.repo.invalid/gpg\"\n\n[[layer]]\nname = \"on\"\nsystemd = { enable = [\"docker.service\"] }\n",
    )
    .unwrap();
    let r = check(t.path(), &above, true);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(json(&r)["notes"][0]["key"], "layer[1].systemd.enable[0]");
}

/// A recipe that configures containerd without the kernel prerequisites
/// (NI004), allowing the rule or not.
fn ni004_recipe(dir: &Path, allow: bool) -> PathBuf {
    let mut text = String::from("[image]\nname = \"allowed\"\n\n");
    if allow {
        text.push_str(
            "[lint]\nallow = [{ rule = \"NI004\", reason = \"the node's kernel settings come from its boot image\" }]\n\n",
        );
    }
    text.push_str("[[layer]]\nname = \"runtime\"\ncontainerd = { systemd-cgroup = true }\n");
    let p = dir.join(if allow {
        "allowed.toml"
    } else {
        "refused.toml"
    });
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_rule_the_recipe_allows_is_shown_with_its_reason_and_recorded() {
    const REASON: &str = "the node's kernel settings come from its boot image";
    let t = temp_dir("check-allow");
    let dir = t.path();
    let allowed = ni004_recipe(dir, true);
    // check: shown as allowed, with the reason; exit 0.
    let r = check(dir, &allowed, false);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .contains("allowed.toml:9: allowed error[NI004] layer[0].containerd: ")
            && r.stdout
                .contains(&format!("  allowed by the recipe: {REASON}")),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("0 error(s), 0 warning(s), 0 info(s), 1 allowed"),
        "{r}"
    );
    let j = json(&check(dir, &allowed, true));
    assert_eq!(j["counts"]["error"], 0);
    assert_eq!(j["counts"]["allowed"], 1);
    assert_eq!(j["findings"][0]["rule"], "NI004");
    assert_eq!(j["findings"][0]["allowed"], REASON);
    // build: goes on, and the metadata records the allowance and what it allowed.
    let meta = dir.join("meta.json");
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&allowed)
        .arg("-o")
        .arg(dir.join("out"))
        .arg("--metadata-file")
        .arg(&meta));
    assert_eq!(r.code, 0, "{r}");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(
        m["lint"]["allow"],
        serde_json::json!([{ "rule": "NI004", "reason": REASON }])
    );
    assert_eq!(m["lint"]["allowed"][0]["rule"], "NI004");
    assert_eq!(m["lint"]["allowed"][0]["key"], "layer[0].containerd");
    assert_eq!(m["lint"]["allowed"][0]["allowed"], REASON);

    // Negative control: the same recipe without the allowance fails both.
    let refused = ni004_recipe(dir, false);
    let r = check(dir, &refused, false);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("refused.toml:6: error[NI004]"), "{r}");
    let r = run(nodeimg(dir)
        .arg("build")
        .arg(&refused)
        .arg("-o")
        .arg(dir.join("out-refused")));
    assert_eq!(r.code, 1, "{r}");
    assert!(!dir.join("out-refused").exists());
}
