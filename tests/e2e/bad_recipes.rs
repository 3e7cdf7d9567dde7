//! A table of broken recipes. Each must fail with the documented exit code
//! (2 for recipe and usage errors, 1 for lint errors), name the file and line
//! (`recipe.toml:N`) and the key on stderr, and leave no output behind (no
//! image, no temp file beside it).
//!
//! Every file of a case is written under a temp folder; the recipe is
//! `r/recipe.toml` and the command runs in the temp folder. The line the error
//! must name is the one marked `# <- HERE` in the file(s) listed in `at` (any
//! marked line of those files is accepted, for findings that may point at
//! either side of a conflict).

use std::fs;
use std::path::Path;
use std::process::Command;

use nodeimg_e2e::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Base {
    /// `--base scratch`.
    Scratch,
    /// `--base rootfs:<fixture base>` (a Debian root with systemd units).
    Fixture,
    /// No `--base`: the recipe's `image.base` is under test.
    Recipe,
}

struct Case {
    name: &'static str,
    /// (path relative to the temp folder, content).
    files: &'static [(&'static str, &'static str)],
    /// Extra command-line arguments after `build RECIPE -o out/img`.
    args: &'static [&'static str],
    /// Which recipe to build; default `r/recipe.toml`.
    recipe: Option<&'static str>,
    base: Base,
    code: i32,
    /// Files whose `# <- HERE` line must be named; empty: no line (usage errors).
    at: &'static [&'static str],
    /// Every one of these must appear on stderr (the key, or the name at fault).
    keys: &'static [&'static str],
}

const MARK: &str = "# <- HERE";

const CASES: &[Case] = &[
    Case {
        name: "a lint rule allowed without a reason",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[lint]
allow = [{ rule = "NI004" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["lint.allow[0].reason", "reason"],
    },
    Case {
        name: "a lint rule allowed with an empty reason",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[lint]
allow = [
  { rule = "NI007", reason = "host settings" },
  { rule = "NI004", reason = " " },  # <- HERE
]
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["lint.allow[1].reason", "allowing NI004 needs a reason"],
    },
    Case {
        name: "an unknown lint rule allowed",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[lint]
allow = [{ rule = "NI404", reason = "no such rule" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &[
            "lint.allow[0].rule",
            "\"NI404\" is not a lint rule",
            "NI009",
        ],
    },
    Case {
        name: "toml syntax error",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = = "bad"  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &[],
    },
    Case {
        name: "unknown top-level key",
        files: &[(
            "r/recipe.toml",
            r#"colour = "red"  # <- HERE
[image]
name = "bad"
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["colour"],
    },
    Case {
        name: "unknown key in [image]",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"
nmae = "typo"  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["nmae"],
    },
    Case {
        name: "unknown key in a [[layer]] table",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "one"
flavour = "vanilla"  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["flavour"],
    },
    Case {
        name: "unknown key in a layer item",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "kernel"
modules = { file = "m", load = ["overlay"], lod = ["br_netfilter"] }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["lod"],
    },
    Case {
        name: "unknown key in an array item",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", content = "x\n", mdoe = "0600" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["mdoe"],
    },
    Case {
        name: "wrong type: image.tag is a number",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"
tag = 5  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["tag"],
    },
    Case {
        name: "wrong type: modules.load is a string",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "kernel"
modules = { file = "m", load = "overlay" }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["load"],
    },
    Case {
        name: "wrong type: include is a string",
        files: &[
            (
                "r/recipe.toml",
                r#"include = "common.toml"  # <- HERE
[image]
name = "bad"
"#,
            ),
            (
                "r/common.toml",
                "[[layer]]\nname = \"c\"\nfile = [{ path = \"/etc/c\", content = \"c\\n\" }]\n",
            ),
        ],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["include"],
    },
    Case {
        name: "wrong type: owner is a name",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", content = "x\n", owner = "root" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["owner"],
    },
    Case {
        name: "wrong type: a label value is a number",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"
labels = { "org.example.count" = 1 }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["labels"],
    },
    Case {
        name: "missing image.name",
        files: &[(
            "r/recipe.toml",
            r#"[image]  # <- HERE
tag = "v1"
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["name"],
    },
    Case {
        name: "missing layer name",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]  # <- HERE
file = [{ path = "/etc/x", content = "x\n" }]
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["name"],
    },
    Case {
        name: "duplicate layer name",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "same"
file = [{ path = "/etc/a", content = "a\n" }]

[[layer]]
name = "same"  # <- HERE
file = [{ path = "/etc/b", content = "b\n" }]
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["name", "same"],
    },
    Case {
        name: "duplicate layer name across an include",
        files: &[
            (
                "r/recipe.toml",
                r#"include = ["frag.toml"]
[image]
name = "bad"

[[layer]]
name = "kernel"  # <- HERE
file = [{ path = "/etc/b", content = "b\n" }]
"#,
            ),
            (
                "r/frag.toml",
                r#"[[layer]]
name = "kernel"  # <- HERE
file = [{ path = "/etc/a", content = "a\n" }]
"#,
            ),
        ],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml", "frag.toml"],
        keys: &["kernel"],
    },
    Case {
        name: "include that does not exist",
        files: &[(
            "r/recipe.toml",
            r#"include = ["nope.toml"]  # <- HERE
[image]
name = "bad"
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["include", "nope.toml"],
    },
    Case {
        name: "include escaping the recipe folder",
        files: &[
            (
                "r/recipe.toml",
                r#"include = ["../outside.toml"]  # <- HERE
[image]
name = "bad"
"#,
            ),
            (
                "outside.toml",
                "[[layer]]\nname = \"o\"\nfile = [{ path = \"/etc/o\", content = \"o\\n\" }]\n",
            ),
        ],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["include"],
    },
    Case {
        name: "include of an absolute host path",
        files: &[(
            "r/recipe.toml",
            r#"include = ["/etc/passwd"]  # <- HERE
[image]
name = "bad"
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["include"],
    },
    Case {
        name: "source file missing",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", source = "missing.txt" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["source", "missing.txt"],
    },
    Case {
        name: "source escaping with ..",
        files: &[
            (
                "r/recipe.toml",
                r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", source = "../secret.txt" }]  # <- HERE
"#,
            ),
            ("secret.txt", "not for the image\n"),
        ],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["source"],
    },
    Case {
        name: "source is an absolute host path",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", source = "/etc/passwd" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["source"],
    },
    Case {
        name: "undefined variable",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", content = "${no_such_var}\n" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["no_such_var"],
    },
    Case {
        name: "unknown unit in systemd.enable",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "units"
systemd = { enable = ["no-such-unit.service"] }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Fixture,
        code: 2,
        at: &["recipe.toml"],
        keys: &["no-such-unit.service"],
    },
    Case {
        name: "bad mode 999",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/x", content = "x\n", mode = "999" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["mode"],
    },
    Case {
        name: "relative image path",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "etc/x", content = "x\n" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["path"],
    },
    Case {
        name: ".. in an image path",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "files"
file = [{ path = "/etc/../x", content = "x\n" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["path"],
    },
    Case {
        name: "relative path in remove",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "immutable"
remove = ["etc/machine-id"]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["remove"],
    },
    Case {
        name: "symlink without target",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "links"
symlink = [{ path = "/etc/alias" }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["target"],
    },
    Case {
        name: "bad sysctl key",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "kernel"
sysctl = { file = "k", set = { "net..ipv4.ip_forward" = 1 } }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["net..ipv4.ip_forward"],
    },
    Case {
        name: "containerd config-version 4",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "containerd"
containerd = { config-version = 4, systemd-cgroup = true }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["config-version"],
    },
    Case {
        name: "flat apt suite with components",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "repos"
apt-source = [{ name = "flat", uris = ["https://repo.example.invalid/debian"], suites = ["./"], components = ["main"] }]  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &["recipe.toml"],
        keys: &["components"],
    },
    Case {
        name: "bad base reference",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"
base = "docker://nodes/base:1"  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Recipe,
        code: 2,
        at: &["recipe.toml"],
        keys: &["base"],
    },
    Case {
        name: "base file missing",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"
base = "rootfs:missing-base.tar"  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Recipe,
        code: 2,
        at: &["recipe.toml"],
        keys: &["base", "missing-base.tar"],
    },
    Case {
        name: "lint: cgroup drivers disagree",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "runtime"
docker = { exec-opts = ["native.cgroupdriver=cgroupfs"] }  # <- HERE
kubelet = { cgroup-driver = "systemd" }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 1,
        at: &["recipe.toml"],
        keys: &["cgroup"],
    },
    Case {
        name: "lint: sytemd typo in docker exec-opts",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "docker"
docker = { exec-opts = ["native.cgroupdriver=sytemd"] }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 1,
        at: &["recipe.toml"],
        keys: &["sytemd"],
    },
    Case {
        name: "lint: containerd without the kernel prerequisites",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "containerd"
containerd = { config-version = 2, systemd-cgroup = true }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 1,
        at: &["recipe.toml"],
        keys: &["containerd"],
    },
    Case {
        name: "lint: cgroupfs containerd on a systemd base",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "kernel"
modules = { file = "containerd", load = ["overlay", "br_netfilter"] }
sysctl = { file = "99-kubernetes-cri", set = { "net.bridge.bridge-nf-call-iptables" = 1, "net.ipv4.ip_forward" = 1, "net.bridge.bridge-nf-call-ip6tables" = 1 } }

[[layer]]
name = "containerd"
containerd = { config-version = 2, systemd-cgroup = false }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Fixture,
        code: 1,
        at: &["recipe.toml"],
        keys: &["containerd"],
    },
    Case {
        name: "lint: two CRI runtimes enabled",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "kernel"
modules = { file = "containerd", load = ["overlay", "br_netfilter"] }
sysctl = { file = "99-kubernetes-cri", set = { "net.bridge.bridge-nf-call-iptables" = 1, "net.ipv4.ip_forward" = 1, "net.bridge.bridge-nf-call-ip6tables" = 1 } }

[[layer]]
name = "runtimes"
systemd = { enable = ["containerd.service", "crio.service"] }  # <- HERE
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Fixture,
        code: 1,
        at: &["recipe.toml"],
        keys: &["enable"],
    },
    Case {
        name: "lint: a runtime pin affected by CVE-2019-5736",
        files: &[(
            "r/recipe.toml",
            r#"[image]
name = "bad"

[[layer]]
name = "docker"
packages = [
  "containerd.io=1.2.13-2",
  "docker-ce=5:18.09.1~3-0~ubuntu-bionic",  # <- HERE
]
"#,
        )],
        args: &[],
        recipe: None,
        base: Base::Scratch,
        code: 1,
        at: &["recipe.toml"],
        keys: &[
            "NI009",
            "CVE-2019-5736",
            "layer[0].packages[1]",
            "docker-ce=5:18.09.1~3-0~ubuntu-bionic",
            "5:18.09.2~3-0",
        ],
    },
    Case {
        name: "usage: unknown output format",
        files: &[("r/recipe.toml", "[image]\nname = \"ok\"\n")],
        args: &["--format", "qcow9"],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &[],
        keys: &["qcow9"],
    },
    Case {
        name: "usage: unknown compression",
        files: &[("r/recipe.toml", "[image]\nname = \"ok\"\n")],
        args: &["--compression", "lzma9"],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &[],
        keys: &["lzma9"],
    },
    Case {
        name: "usage: --var without a value",
        files: &[("r/recipe.toml", "[image]\nname = \"ok\"\n")],
        args: &["--var", "novalue"],
        recipe: None,
        base: Base::Scratch,
        code: 2,
        at: &[],
        keys: &["novalue"],
    },
    Case {
        name: "recipe file missing",
        files: &[],
        args: &[],
        recipe: Some("r/absent.toml"),
        base: Base::Scratch,
        code: 2,
        at: &[],
        keys: &["absent.toml"],
    },
];

/// 1-based numbers of the lines marked `# <- HERE`.
fn marked_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(MARK))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Does `stderr` name `file:line` (not followed by another digit)?
fn names_location(stderr: &str, file: &str, line: usize) -> bool {
    let needle = format!("{file}:{line}");
    stderr.match_indices(&needle).any(|(i, _)| {
        !stderr[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// The `FILE:LINE`s a case's error may name: each line marked `# <- HERE`
/// in the files of `c.at`.
fn wanted_locations(c: &Case) -> Vec<(&'static str, usize)> {
    let mut wanted = Vec::new();
    for f in c.at {
        let text = c
            .files
            .iter()
            .find(|(p, _)| Path::new(p).file_name() == Path::new(f).file_name())
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("case {}: no file {f}", c.name));
        let lines = marked_lines(text);
        assert!(
            !lines.is_empty(),
            "case {}: {f} has no `{MARK}` marker",
            c.name
        );
        wanted.extend(lines.into_iter().map(|l| (*f, l)));
    }
    wanted
}

/// `nodeimg VERB RECIPE` in `w` for case `c`; a build writes `out/img` from
/// the case's base.
fn case_command(c: &Case, verb: &str, base: Option<&Path>, w: &Path) -> Command {
    let recipe = c.recipe.unwrap_or("r/recipe.toml");
    let mut cmd = nodeimg(w);
    cmd.arg(verb).arg(recipe);
    if verb == "build" {
        cmd.args(["-o", "out/img"]).args(c.args);
        match c.base {
            Base::Scratch => {
                cmd.args(["--base", "scratch"]);
            }
            Base::Fixture => {
                let b = base.expect("fixture base");
                cmd.args(["--base", &fixture_base_ref(b)]);
            }
            Base::Recipe => {}
        }
    }
    cmd
}

fn check_case(c: &Case, verb: &str, base: Option<&Path>, failures: &mut Vec<String>) {
    let tmp = temp_dir("bad");
    let w = tmp.path();
    for (p, text) in c.files {
        let path = w.join(p);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write case file");
    }
    fs::create_dir_all(w.join("r")).expect("mkdir r");
    fs::create_dir_all(w.join("out")).expect("mkdir out");
    let before = tree_listing(w);

    {
        let r = run(&mut case_command(c, verb, base, w));
        // Build errors go to stderr; `check` may print its findings on either.
        let said = if verb == "build" {
            r.stderr.clone()
        } else {
            format!("{}{}", r.stdout, r.stderr)
        };
        let mut problems = Vec::new();
        if r.code != c.code {
            problems.push(format!("exit code {} (want {})", r.code, c.code));
        }
        if !said.to_lowercase().contains("error") {
            problems.push("stderr does not say `error`".to_string());
        }
        if !c.at.is_empty() {
            let wanted = wanted_locations(c);
            if !wanted.iter().any(|(f, l)| names_location(&said, f, *l)) {
                problems.push(format!("stderr names none of {wanted:?} as FILE:LINE"));
            }
        }
        for k in c.keys {
            if !said.contains(k) {
                problems.push(format!("stderr does not name `{k}`"));
            }
        }
        if verb == "build" && !r.stdout.trim().is_empty() {
            problems.push("a failed build printed on stdout".to_string());
        }
        let after = tree_listing(w);
        if after != before {
            let extra: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
            problems.push(format!("files left behind: {extra:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case `{}` ({verb}): {}\n{}",
                c.name,
                problems.join("; "),
                r
            ));
        }
    }
}

/// `check` takes no output nor base options: usage cases and cases on the
/// fixture base are build-only, and `check` need not open a base file.
fn checkable(c: &Case) -> bool {
    c.args.is_empty() && c.base != Base::Fixture && c.name != "base file missing"
}

fn run_table(verb: &str) {
    assert!(CASES.len() >= 25, "the table must hold at least 25 cases");
    let base = fixture_base();
    let mut failures = Vec::new();
    let mut ran = 0;
    for c in CASES {
        if c.base == Base::Fixture && base.is_none() {
            continue; // fixture_base() already reported the skip
        }
        if verb == "check" && !checkable(c) {
            continue;
        }
        check_case(c, verb, base.as_deref(), &mut failures);
        ran += 1;
    }
    assert!(ran >= 25, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} bad-recipe cases misbehaved under `nodeimg {verb}`:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_recipes_fail_build_with_code_location_key_and_no_output() {
    run_table("build");
}

/// `nodeimg check` must report the same recipe and lint errors as `build`,
/// with the same exit code and location, and write nothing.
#[test]
fn bad_recipes_fail_check_like_build() {
    run_table("check");
}

/// The table's own sanity: markers where a line is asserted, none where not,
/// and the recipe of every case (bar the missing-file one) is among its files.
#[test]
fn bad_recipe_table_is_well_formed() {
    let mut names = std::collections::BTreeSet::new();
    for c in CASES {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let recipe = c.recipe.unwrap_or("r/recipe.toml");
        let has_recipe = c.files.iter().any(|(p, _)| *p == recipe);
        assert_eq!(
            has_recipe,
            c.recipe.is_none(),
            "case {}: recipe file",
            c.name
        );
        for f in c.at {
            let text = c
                .files
                .iter()
                .find(|(p, _)| p.ends_with(f))
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("case {}: no file {f}", c.name));
            assert!(
                !marked_lines(text).is_empty(),
                "case {}: {f} lacks a marker",
                c.name
            );
        }
        if c.at.is_empty() {
            assert!(
                c.files.iter().all(|(_, t)| !t.contains(MARK)),
                "case {}: a marker but no location asserted",
                c.name
            );
        }
        assert!(c.code == 1 || c.code == 2, "case {}: exit code", c.name);
        if c.code == 1 {
            assert!(
                c.name.starts_with("lint:"),
                "case {}: only lint errors exit 1",
                c.name
            );
        }
    }
    assert_eq!(marked_lines("a\nb # <- HERE\nc\n"), vec![2]);
    assert!(names_location(
        "error: r/recipe.toml:12: key: x",
        "recipe.toml",
        12
    ));
    assert!(!names_location(
        "error: r/recipe.toml:123: key: x",
        "recipe.toml",
        12
    ));
    assert!(!names_location(
        "error: r/recipe.toml: key: x",
        "recipe.toml",
        1
    ));
}

/// A rootfs base holding only `/etc/machine-id` with `content`.
fn machine_id_base(path: &Path, content: &[u8]) {
    let mut b = tar::Builder::new(fs::File::create(path).expect("create base"));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    b.append_data(&mut h, "etc/", std::io::empty())
        .expect("etc/");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o444);
    h.set_size(content.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "etc/machine-id", content)
        .expect("machine-id");
    b.finish().expect("finish the base");
}

#[test]
fn lint_names_a_machine_id_kept_from_a_rootfs_base() {
    let tmp = temp_dir("machine-id");
    let dir = tmp.path();
    let recipe = dir.join("recipe.toml");
    fs::write(
        &recipe,
        "[image]\nname = \"m\"\n\n[[layer]]\nname = \"k\"\nsysctl = { file = \"99-k\", set = { \"net.ipv4.ip_forward\" = 1 } }\n",
    )
    .expect("write recipe");
    let with = dir.join("with.tar");
    machine_id_base(&with, b"0123456789abcdef0123456789abcdef\n");
    let r = run(nodeimg(dir)
        .arg("check")
        .arg(&recipe)
        .args(["--base", &format!("rootfs:{}", with.display())]));
    // A warning: the check passes, and names the rule and the file.
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("warning[NI007]") && r.stdout.contains("/etc/machine-id"),
        "{r}"
    );
    // Negative control: an empty machine-id (systemd makes one at first
    // boot) is what the rule asks for.
    let empty = dir.join("empty.tar");
    machine_id_base(&empty, b"");
    let r = run(nodeimg(dir)
        .arg("check")
        .arg(&recipe)
        .args(["--base", &format!("rootfs:{}", empty.display())]));
    assert_eq!(r.code, 0, "{r}");
    assert!(
        !r.stderr.contains("NI007") && !r.stdout.contains("NI007"),
        "{r}"
    );
}
