//! The CI examples users copy (`examples/ci/`), run as they are written.
//!
//! Both files are read with a YAML parser; the commands of the GitHub
//! Actions job (each `run:` step, in its own bash as the runner does) and of
//! the GitLab CI job (every `script:` line, in one bash as GitLab does) run
//! with `set -euo pipefail` against a CNCF distribution registry on
//! 127.0.0.1, with the variables the files read set here: the registry,
//! the image name and tag, the recipe (a locked recipe with a package from
//! the generated test repository, on the fixture base), `NODEIMG_FLAGS`
//! (`--insecure-registry` for the test registry), the signing key (GitHub:
//! its text, as a secret; GitLab: a file's path, as a file variable) and
//! its password, and a PATH with the built `nodeimg` first.
//!
//! Steps that only concern the CI machine are skipped as the files say:
//! GitHub steps whose `id` starts with `ci-`, GitLab's `before_script:`.
//! Anything else the test cannot run as shell (an unmarked `uses:` step,
//! another shell, a `${{ }}` expression in a command, a condition other
//! than `always()`, a job key it does not know) fails the test.
//!
//! Proven: the pushed image verifies with the public key (its signature and
//! the provenance, SPDX and CycloneDX attestations) and not with another
//! key; the SBOM files are JSON of their formats; the metadata names the
//! digest the registry serves under the tag. Negative controls: the same
//! commands with a wrong key password fail and push nothing (and the GitHub
//! job still removes the key file), and an unrecognised step is an error.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeimg_e2e::*;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const PASSWORD: &str = "ci example password";

/// Where the examples write their outputs (relative to the checkout).
const SPDX: &str = "out/node-image.spdx.json";
const CYCLONEDX: &str = "out/node-image.cdx.json";
const METADATA: &str = "out/node-image.metadata.json";

fn example(name: &str) -> String {
    let p = workspace_root().join("examples/ci").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One command step: its name, its script, the variables only it gets (a
/// GitHub step's `env:`), and whether it runs after a failed step (`if:
/// always()`).
#[derive(Debug, Clone)]
struct Step {
    name: String,
    script: String,
    own_env: Vec<String>,
    always: bool,
}

/// What the test makes of a CI file: the steps it runs, the ones it skips
/// (as the file marks them) and every variable the file declares.
#[derive(Debug, Default)]
struct Plan {
    steps: Vec<Step>,
    skipped: Vec<String>,
    declared: Vec<String>,
}

impl Plan {
    /// All the commands it runs, for checks on what they do.
    fn commands(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.script.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn load(text: &str) -> Result<Yaml, String> {
    let mut docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    if docs.len() != 1 {
        return Err(format!("{} YAML documents, one expected", docs.len()));
    }
    Ok(docs.remove(0))
}

fn hash_keys(y: &Yaml, what: &str) -> Result<Vec<String>, String> {
    let Some(h) = y.as_hash() else {
        return Err(format!("{what} is not a mapping"));
    };
    h.keys()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{what} has a key that is not a string: {k:?}"))
        })
        .collect()
}

/// The keys of an `env:` or `variables:` mapping (absent: none).
fn declared(y: &Yaml, what: &str) -> Result<Vec<String>, String> {
    if y.is_badvalue() {
        return Ok(Vec::new());
    }
    hash_keys(y, what)
}

fn only_keys(y: &Yaml, what: &str, known: &[&str]) -> Result<(), String> {
    for k in hash_keys(y, what)? {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "{what} has `{k}`, which the test does not know how to run (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// A command must be plain shell: values come in through variables.
fn plain_shell(script: &str, what: &str) -> Result<(), String> {
    if script.contains("${{") {
        return Err(format!(
            "{what}: `${{{{ }}}}` in a command; pass the value through `env:`"
        ));
    }
    Ok(())
}

/// Whether a `shell:` is bash (or absent: the default, bash on Linux).
fn shell_ok(y: &Yaml) -> bool {
    y.is_badvalue() || y.as_str() == Some("bash")
}

/// One GitHub step: `Ok(None)` when it is marked as the CI machine's
/// (`id: ci-...`), the step to run, or why the test cannot run it.
fn github_step(step: &Yaml, i: usize, job: &str) -> Result<Option<Step>, String> {
    let id = step["id"].as_str().unwrap_or_default();
    if id.starts_with("ci-") {
        return Ok(None);
    }
    let name = match (step["name"].as_str(), id) {
        (Some(n), _) => n.to_string(),
        (None, "") => format!("#{}", i + 1),
        (None, id) => id.to_string(),
    };
    let what = format!("{job}, step {name}");
    only_keys(step, &what, &["name", "id", "env", "run", "if", "shell"]).map_err(|e| {
        format!("{e}; a step that only concerns the CI machine needs an id starting with `ci-`")
    })?;
    let script = step["run"]
        .as_str()
        .ok_or_else(|| format!("{what} has no `run:` and its id does not start with `ci-`"))?;
    if !shell_ok(&step["shell"]) {
        return Err(format!("{what}: its shell is not bash"));
    }
    plain_shell(script, &what)?;
    let always = match &step["if"] {
        Yaml::BadValue => false,
        y if y.as_str() == Some("always()") => true,
        other => {
            return Err(format!(
                "{what}: condition {other:?}; the test runs steps unconditionally or `always()`"
            ))
        }
    };
    Ok(Some(Step {
        name,
        script: script.to_string(),
        own_env: declared(&step["env"], &format!("{what}'s env"))?,
        always,
    }))
}

/// A GitHub Actions workflow: every job's steps, in order. A step whose `id`
/// starts with `ci-` is skipped; every other step must be a bash `run:`.
fn github_plan(text: &str) -> Result<Plan, String> {
    let doc = load(text)?;
    only_keys(
        &doc,
        "the workflow",
        &["name", "on", "permissions", "env", "defaults", "jobs"],
    )?;
    if !shell_ok(&doc["defaults"]["run"]["shell"]) {
        return Err("defaults.run.shell is not bash".into());
    }
    let mut plan = Plan {
        declared: declared(&doc["env"], "the workflow's env")?,
        ..Plan::default()
    };
    let jobs = doc["jobs"]
        .as_hash()
        .ok_or("the workflow has no jobs mapping")?;
    for (job_name, job) in jobs {
        let what = format!("job {}", job_name.as_str().unwrap_or("?"));
        only_keys(
            job,
            &what,
            &[
                "name",
                "runs-on",
                "permissions",
                "env",
                "steps",
                "timeout-minutes",
            ],
        )?;
        plan.declared
            .extend(declared(&job["env"], &format!("{what}'s env"))?);
        let steps = job["steps"]
            .as_vec()
            .ok_or_else(|| format!("{what} has no steps"))?;
        for (i, step) in steps.iter().enumerate() {
            match github_step(step, i, &what)? {
                Some(s) => {
                    plan.declared.extend(s.own_env.iter().cloned());
                    plan.steps.push(s);
                }
                None => plan
                    .skipped
                    .push(step["id"].as_str().unwrap_or_default().to_string()),
            }
        }
    }
    Ok(plan)
}

/// A GitLab CI file: each job's `script:` lines, as one step per job;
/// `before_script:` is skipped.
fn gitlab_plan(text: &str) -> Result<Plan, String> {
    let doc = load(text)?;
    let mut plan = Plan {
        declared: declared(&doc["variables"], "the file's variables")?,
        ..Plan::default()
    };
    for key in hash_keys(&doc, "the file")? {
        if matches!(key.as_str(), "stages" | "variables") {
            continue;
        }
        if matches!(
            key.as_str(),
            "default"
                | "include"
                | "workflow"
                | "image"
                | "services"
                | "before_script"
                | "after_script"
                | "cache"
        ) || key.starts_with('.')
        {
            return Err(format!(
                "`{key}` at the top: the test does not know how to run it"
            ));
        }
        let job = &doc[key.as_str()];
        let what = format!("job {key}");
        only_keys(
            job,
            &what,
            &[
                "stage",
                "image",
                "rules",
                "tags",
                "variables",
                "before_script",
                "script",
                "artifacts",
            ],
        )?;
        plan.declared
            .extend(declared(&job["variables"], &format!("{what}'s variables"))?);
        if !job["before_script"].is_badvalue() {
            plan.skipped.push(format!("{key}: before_script"));
        }
        let lines: Vec<String> = match &job["script"] {
            Yaml::String(s) => vec![s.clone()],
            Yaml::Array(a) => a
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{what}: a script line is not a string: {l:?}"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("{what} has no `script:`")),
        };
        for l in &lines {
            plain_shell(l, &what)?;
        }
        plan.steps.push(Step {
            name: key.clone(),
            script: lines.join("\n"),
            own_env: Vec::new(),
            always: false,
        });
    }
    Ok(plan)
}

/// How a run of a plan ended: the step that failed (and its run), if any.
struct Outcome {
    failed: Option<(String, Run)>,
    ran: Vec<String>,
}

/// Run the plan's steps in `dir` with `env` (and nothing else of this
/// process's environment), each in `bash` with `set -euo pipefail`; a
/// variable a step declares is given to that step only; after a failure
/// only `always()` steps run.
fn run_plan(plan: &Plan, dir: &Path, env: &BTreeMap<String, String>) -> Outcome {
    for v in &plan.declared {
        assert!(
            env.contains_key(v),
            "the example declares {v}, which the test does not set: set it in the test"
        );
    }
    let step_scoped: Vec<&String> = plan.steps.iter().flat_map(|s| &s.own_env).collect();
    let mut out = Outcome {
        failed: None,
        ran: Vec::new(),
    };
    for step in &plan.steps {
        if out.failed.is_some() && !step.always {
            continue;
        }
        let step_env = env
            .iter()
            .filter(|(k, _)| !step_scoped.contains(k) || step.own_env.contains(k));
        let r = run(Command::new("bash")
            .args(["--noprofile", "--norc", "-c"])
            .arg(format!("set -euo pipefail\n{}", step.script))
            .current_dir(dir)
            .env_clear()
            .envs(step_env));
        eprintln!("--- step {}: exit {}\n{}", step.name, r.code, r.stderr);
        out.ran.push(step.name.clone());
        if r.code != 0 && out.failed.is_none() {
            out.failed = Some((step.name.clone(), r));
        }
    }
    out
}

/// The registry, repositories, keys and a locked recipe: what a project
/// that copies the examples holds, and what its CI settings give.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    reg: TestRegistry,
    /// The project: the recipe, its lock, its key and the public key.
    project: PathBuf,
    /// The private key (kept out of the project, as a secret is).
    key: PathBuf,
    /// A public key of another pair.
    other_pub: PathBuf,
}

fn setup(label: &str) -> Option<Setup> {
    if !require("skopeo", "skopeo") || !require("bash", "bash") {
        return None;
    }
    let base = fixture_base()?;
    let repos = repo::seed_repos()?;
    let reg = TestRegistry::start()?;
    let tmp = temp_dir(label);
    let dir = tmp.path().to_path_buf();
    let secrets = dir.join("secrets");
    fs::create_dir_all(&secrets).unwrap();
    for prefix in ["cosign", "other"] {
        run(nodeimg(&secrets)
            .env("NODEIMG_KEY_PASSWORD", PASSWORD)
            .args(["keygen", "--output-key-prefix", prefix]))
        .ok();
    }
    let project = dir.join("project");
    fs::create_dir_all(project.join("recipes")).unwrap();
    fs::copy(secrets.join("cosign.pub"), project.join("cosign.pub")).unwrap();
    fs::copy(&repos.key, project.join("recipes/debian.asc")).unwrap();
    let recipe = project.join("recipes/node.toml");
    fs::write(
        &recipe,
        format!(
            "[image]\nname = \"node\"\ntag = \"v1\"\nbase = \"rootfs:{}\"\n\n\
             [[layer]]\nname = \"runtime\"\npackages = [\"containerd\"]\n\n\
             [[layer.apt-source]]\nname = \"debian\"\nuris = [\"{}/debian\"]\n\
             suites = [\"bookworm\"]\ncomponents = [\"main\"]\nkey = \"debian.asc\"\n\n\
             [[layer]]\nname = \"kernel\"\n\
             sysctl = {{ file = \"99-k8s\", set = {{ \"net.ipv4.ip_forward\" = 1 }} }}\n",
            base.display(),
            repos.server.url()
        ),
    )
    .unwrap();
    // The lock is part of the project, made once by its maintainer.
    run(nodeimg(&project)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .args(["lock", "recipes/node.toml", "-q"]))
    .ok();
    assert!(project.join("recipes/node.toml.lock").is_file());
    Some(Setup {
        _tmp: tmp,
        key: secrets.join("cosign.key"),
        other_pub: secrets.join("other.pub"),
        project,
        reg,
        dir,
    })
}

impl Setup {
    /// A fresh copy of the project, as a CI job checks it out.
    fn checkout(&self, name: &str) -> PathBuf {
        let to = self.dir.join(name);
        run(Command::new("cp").arg("-a").arg(&self.project).arg(&to)).ok();
        to
    }

    /// What every run gets: the variables the examples read, and a PATH
    /// with the nodeimg under test first.
    fn env(&self, image: &str, tag: &str, password: &str) -> BTreeMap<String, String> {
        let bin_dir = nodeimg_bin().parent().unwrap().to_path_buf();
        let home = self.dir.join(format!("home-{tag}"));
        fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        [
            ("PATH", path),
            ("HOME", home.display().to_string()),
            (
                "XDG_CACHE_HOME",
                self.dir.join(format!("cache-{tag}")).display().to_string(),
            ),
            ("REGISTRY", self.reg.addr.clone()),
            ("IMAGE", image.to_string()),
            ("TAG", tag.to_string()),
            ("RECIPE", "recipes/node.toml".to_string()),
            ("PUBLIC_KEY", "cosign.pub".to_string()),
            (
                "NODEIMG_FLAGS",
                format!("--insecure-registry {}", self.reg.addr),
            ),
            ("NODEIMG_KEY_PASSWORD", password.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn reference(&self, image: &str, tag: &str) -> String {
        format!("{}/{image}:{tag}", self.reg.addr)
    }

    /// Whether the registry has `image:tag`.
    fn has(&self, image: &str, tag: &str) -> bool {
        run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}", self.reference(image, tag))))
        .code
            == 0
    }

    /// `nodeimg verify --json --attestations` of `image:tag` with `public`.
    fn verify(&self, image: &str, tag: &str, public: &Path) -> (Run, Value) {
        let r = run(nodeimg(&self.dir)
            .args(["verify", "--json", "--attestations"])
            .arg(self.reference(image, tag))
            .arg("--key")
            .arg(public)
            .args(["--insecure-registry", &self.reg.addr]));
        let v = serde_json::from_str(r.stdout.trim()).unwrap_or(Value::Null);
        (r, v)
    }

    /// What a successful run must have left: SBOMs of both formats, the
    /// metadata naming the digest the registry serves, an image that
    /// verifies with the public key (signature and all three attestations)
    /// and not with another.
    fn assert_results(&self, checkout: &Path, image: &str, tag: &str) {
        let read = |p: &str| -> Value {
            let bytes = fs::read(checkout.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{p} is not JSON: {e}"))
        };
        let spdx = read(SPDX);
        assert_eq!(spdx["spdxVersion"], "SPDX-2.3", "{SPDX}");
        assert!(
            spdx["packages"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "containerd")),
            "{SPDX} lists containerd: {spdx}"
        );
        let cdx = read(CYCLONEDX);
        assert_eq!(cdx["bomFormat"], "CycloneDX", "{CYCLONEDX}");
        assert!(cdx["specVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")));
        assert!(
            cdx["components"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == "containerd")),
            "{CYCLONEDX} lists containerd"
        );

        let meta = read(METADATA);
        let digest = meta["pushed"]["digest"].as_str().unwrap_or_default();
        let served = skopeo_digest(&format!("docker://{}", self.reference(image, tag)));
        assert!(
            served.starts_with("sha256:") && served.len() == 71,
            "{served}"
        );
        assert_eq!(digest, served, "the metadata names the digest pushed");
        assert_eq!(meta["pushed"]["reference"], self.reference(image, tag));
        assert_eq!(meta["image_digest"], served);
        assert_eq!(
            meta["signed"]["attestations"].as_array().map(Vec::len),
            Some(3),
            "{meta}"
        );

        let (r, v) = self.verify(image, tag, &self.project.join("cosign.pub"));
        assert_eq!((r.code, &v["verified"]), (0, &Value::Bool(true)), "{r}");
        assert_eq!(v["digest"], served);
        assert!(
            v["signatures"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["valid"] == true)),
            "{v}"
        );
        let mut types: Vec<&str> = v["attestations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["valid"] == true)
            .filter_map(|a| a["predicate_type"].as_str())
            .collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                "https://cyclonedx.org/bom",
                "https://slsa.dev/provenance/v1",
                "https://spdx.dev/Document"
            ],
            "{v}"
        );
        // Negative control: another key verifies nothing.
        let (r, v) = self.verify(image, tag, &self.other_pub);
        assert_eq!((r.code, &v["verified"]), (1, &Value::Bool(false)), "{r}");
    }
}

/// The commands a plan runs do what the examples promise (so marking one
/// of them as CI-only would fail here, not pass unnoticed).
fn assert_pipeline(plan: &Plan) {
    let c = plan.commands();
    for needle in [
        "nodeimg check \"$RECIPE\"",
        "nodeimg build \"$RECIPE\" --locked",
        "--sbom spdx-json=out/node-image.spdx.json",
        "--sbom cyclonedx-json=out/node-image.cdx.json",
        "--metadata-file out/node-image.metadata.json",
        "--push \"$REGISTRY/$IMAGE:$TAG\"",
        "--sign-key ",
        "nodeimg verify \"$REGISTRY/$IMAGE:$TAG\" --key \"$PUBLIC_KEY\" --attestations",
    ] {
        assert!(c.contains(needle), "the commands run lack `{needle}`:\n{c}");
    }
}

/// `command -v nodeimg` in the environment the steps get is the binary
/// under test.
fn assert_path(env: &BTreeMap<String, String>) {
    let r = run(Command::new("bash")
        .args(["-c", "command -v nodeimg"])
        .env_clear()
        .envs(env))
    .ok();
    assert_eq!(
        PathBuf::from(r.stdout.trim()),
        nodeimg_bin(),
        "the steps run the nodeimg under test"
    );
}

#[test]
fn github_actions_workflow_builds_pushes_signs_and_verifies() {
    let plan = github_plan(&example("github-actions.yml")).unwrap();
    assert_pipeline(&plan);
    let Some(s) = setup("ci-github") else { return };
    let key_text = fs::read_to_string(&s.key).unwrap();
    let runner_temp = |name: &str| {
        let p = s.dir.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    };

    let checkout = s.checkout("github");
    let temp = runner_temp("runner-temp");
    let mut env = s.env("nodes/github", "gh1", PASSWORD);
    env.insert("NODEIMG_SIGNING_KEY".into(), key_text.clone());
    env.insert("RUNNER_TEMP".into(), temp.display().to_string());
    assert_path(&env);
    let out = run_plan(&plan, &checkout, &env);
    if let Some((step, r)) = &out.failed {
        panic!("step {step} failed: {r}");
    }
    assert_eq!(out.ran.len(), plan.steps.len());
    assert!(
        !temp.join("nodeimg.key").exists(),
        "the key file is removed"
    );
    s.assert_results(&checkout, "nodes/github", "gh1");

    // Negative control: a wrong password. The build step fails, the key
    // file is removed all the same, nothing is pushed, nothing verifies.
    let checkout = s.checkout("github-wrong");
    let temp = runner_temp("runner-temp-wrong");
    let mut env = s.env("nodes/github", "gh-wrong", "not the password");
    env.insert("NODEIMG_SIGNING_KEY".into(), key_text);
    env.insert("RUNNER_TEMP".into(), temp.display().to_string());
    let out = run_plan(&plan, &checkout, &env);
    let (step, r) = out.failed.expect("a wrong password fails the job");
    assert_ne!(r.code, 0);
    assert!(step.starts_with("Build"), "{step}: {r}");
    assert!(r.stderr.contains("wrong password"), "{r}");
    assert!(out.ran.iter().any(|s| s == "Remove the signing key"));
    assert!(!temp.join("nodeimg.key").exists());
    assert!(!s.has("nodes/github", "gh-wrong"), "nothing pushed");
    assert!(!checkout.join(METADATA).exists());
}

#[test]
fn gitlab_ci_job_builds_pushes_signs_and_verifies() {
    let plan = gitlab_plan(&example("gitlab-ci.yml")).unwrap();
    assert_pipeline(&plan);
    let Some(s) = setup("ci-gitlab") else { return };
    // A file variable: GitLab writes the key to a file and passes its path.
    let key_file = s.dir.join("gitlab-file-variable");
    fs::copy(&s.key, &key_file).unwrap();

    let checkout = s.checkout("gitlab");
    let mut env = s.env("nodes/gitlab", "gl1", PASSWORD);
    env.insert("NODEIMG_SIGNING_KEY".into(), key_file.display().to_string());
    assert_path(&env);
    let out = run_plan(&plan, &checkout, &env);
    if let Some((step, r)) = &out.failed {
        panic!("job {step} failed: {r}");
    }
    s.assert_results(&checkout, "nodes/gitlab", "gl1");

    // Negative control: a wrong password fails the job, nothing pushed.
    let checkout = s.checkout("gitlab-wrong");
    let mut env = s.env("nodes/gitlab", "gl-wrong", "not the password");
    env.insert("NODEIMG_SIGNING_KEY".into(), key_file.display().to_string());
    let out = run_plan(&plan, &checkout, &env);
    let (_, r) = out.failed.expect("a wrong password fails the job");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("wrong password"), "{r}");
    assert!(!s.has("nodes/gitlab", "gl-wrong"), "nothing pushed");
    assert!(!checkout.join(METADATA).exists());
}

/// `text` with `from` replaced by `to`; the change must happen.
fn changed(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has `{from}`");
    text.replacen(from, to, 1)
}

#[test]
fn a_step_the_test_does_not_recognise_fails_it() {
    let gh = example("github-actions.yml");
    let plan = github_plan(&gh).unwrap();
    assert_eq!(
        plan.skipped,
        [
            "ci-checkout",
            "ci-install-nodeimg",
            "ci-registry-login",
            "ci-keep-outputs"
        ]
    );
    assert!(plan.steps.len() >= 3, "{plan:?}");
    let refused = |text: &str, why: &str| {
        let e = github_plan(text).expect_err("refused");
        assert!(e.contains(why), "{e}");
    };
    // An action that is not marked as the CI machine's.
    refused(
        &format!("{gh}      - name: Publish\n        uses: some/action@v1\n"),
        "`uses`",
    );
    // A step with neither `run:` nor the mark.
    refused(&format!("{gh}      - name: Nothing\n"), "has no `run:`");
    // Another shell, an expression in a command, a condition.
    refused(
        &changed(&gh, "    shell: bash", "    shell: pwsh"),
        "not bash",
    );
    refused(
        &changed(
            &gh,
            "run: rm -f \"$RUNNER_TEMP/nodeimg.key\"",
            "run: rm -f \"${{ runner.temp }}/nodeimg.key\"",
        ),
        "${{ }}",
    );
    refused(
        &changed(&gh, "if: always()", "if: github.ref == 'refs/heads/main'"),
        "condition",
    );
    // A job the test cannot reproduce.
    refused(
        &changed(
            &gh,
            "    runs-on: ubuntu-24.04\n",
            "    runs-on: ubuntu-24.04\n    container: debian:12\n",
        ),
        "`container`",
    );

    let gl = example("gitlab-ci.yml");
    let plan = gitlab_plan(&gl).unwrap();
    assert_eq!(plan.skipped, ["node-image: before_script"]);
    assert_eq!(plan.steps.len(), 1);
    let refused = |text: &str, why: &str| {
        let e = gitlab_plan(text).expect_err("refused");
        assert!(e.contains(why), "{e}");
    };
    refused(
        &changed(
            &gl,
            "  artifacts:\n",
            "  after_script:\n    - echo done\n  artifacts:\n",
        ),
        "`after_script`",
    );
    refused(&format!("{gl}include:\n  - local: more.yml\n"), "`include`");
    refused(
        &format!("{gl}.template:\n  script: [\"true\"]\n"),
        "`.template`",
    );
    refused(
        &format!("{gl}other:\n  stage: node-image\n  script:\n    - echo \"${{{{ x }}}}\"\n"),
        "${{ }}",
    );
    refused(
        &format!("{gl}other:\n  stage: node-image\n"),
        "has no `script:`",
    );
    // Not YAML at all.
    assert!(github_plan("jobs: [").is_err());
}
