use super::*;

use std::fs;

struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

/// A recipe folder `<tmp>/r` with the given files.
fn folder(files: &[(&str, &str)]) -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    fs::create_dir_all(&root).unwrap();
    for (name, text) in files {
        let p = tmp.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    Dir { _tmp: tmp, root }
}

fn os() -> BTreeMap<String, String> {
    vars::parse_os_release("ID=debian\nVERSION_CODENAME=bookworm\n")
}

fn load_expand(d: &Dir, overrides: &[(&str, &str)]) -> Result<Recipe> {
    let ov: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Loaded::load(&d.root.join("recipe.toml"))?.expand("amd64", &os(), &ov)
}

fn recipe_err(r: Result<Recipe>) -> RecipeError {
    match r {
        Err(Error::Recipe(e)) => *e,
        Err(e) => panic!("not a recipe error: {e}"),
        Ok(_) => panic!("no error"),
    }
}

fn file_name(e: &RecipeError) -> String {
    e.file.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn includes_vars_and_builtins() {
    let d = folder(&[
        (
            "r/recipe.toml",
            r#"include = ["common/kernel.toml", "common/extra.toml"]

[image]
name = "node-${flavor}"
labels = { "org.example.os" = "${os.ID}-${codename}" }

[vars]
flavor = "containerd"
repo = "https://example.invalid/${os.ID} ${codename}"

[[layer]]
name = "own"
file = [{ path = "/etc/motd", content = "$${literal} $basearch ${arch} ${repo}" }]
"#,
        ),
        (
            "r/common/kernel.toml",
            r#"include = ["deeper.toml"]
[vars]
codename = "${os.VERSION_CODENAME}"

[[layer]]
name = "kernel"
modules = { file = "k8s", load = ["overlay", "br_netfilter"] }
"#,
        ),
        ("r/common/deeper.toml", "[[layer]]\nname = \"deep\"\n"),
        ("r/common/extra.toml", "[[layer]]\nname = \"extra\"\n"),
    ]);
    let r = load_expand(&d, &[]).unwrap();
    let names: Vec<&str> = r.layers.iter().map(|l| l.spec.name.as_str()).collect();
    assert_eq!(names, ["deep", "kernel", "extra", "own"]);
    assert_eq!(r.image.name, "node-containerd");
    assert_eq!(r.image.tag, "latest");
    assert_eq!(r.image.base, None);
    assert_eq!(r.image.labels["org.example.os"], "debian-bookworm");
    let own = &r.layers[3];
    assert_eq!(own.file, 0);
    assert_eq!(own.index, 0);
    assert_eq!(
        own.spec.file[0].content.as_deref(),
        Some("${literal} $basearch amd64 https://example.invalid/debian bookworm")
    );
    assert_eq!(
        r.files[r.layers[1].file].display,
        Path::new("common/kernel.toml")
    );
    assert_eq!(
        r.files[r.layers[0].file].display,
        Path::new("common/deeper.toml")
    );

    // --var overrides a [vars] value.
    let r = load_expand(&d, &[("flavor", "crio")]).unwrap();
    assert_eq!(r.image.name, "node-crio");
}

#[test]
fn base_may_use_plain_vars_but_not_os() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\narchitecture = \"arm64\"\nbase = \"oci:${dir}/${arch}\"\n[vars]\ndir = \"bases\"\n",
    )]);
    let l = Loaded::load(&d.root.join("recipe.toml")).unwrap();
    assert_eq!(
        l.base(&BTreeMap::new()).unwrap().as_deref(),
        Some("oci:bases/arm64")
    );
    assert_eq!(
        l.architecture(&BTreeMap::new()).unwrap().as_deref(),
        Some("arm64")
    );

    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\nbase = \"oci:${os.ID}\"\n",
    )]);
    let l = Loaded::load(&d.root.join("recipe.toml")).unwrap();
    let e = match l.base(&BTreeMap::new()) {
        Err(Error::Recipe(e)) => e,
        _ => panic!("expected an error"),
    };
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("image.base"));
    assert!(
        e.message.contains("`os.ID` is not available"),
        "{}",
        e.message
    );
}

#[test]
fn toml_syntax_error() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[[layer]]\nname = \"a\nmodules = {}\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(file_name(&e), "recipe.toml");
    assert_eq!(e.line, Some(5));
    assert!(e.message.starts_with("TOML syntax error"), "{}", e.message);
}

#[test]
fn unknown_key_in_layer_item() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[[layer]]\nname = \"a\"\n\n[[layer]]\nname = \"b\"\nfile = [\n  { path = \"/x\", sourc = \"f\" },\n]\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(10));
    assert_eq!(e.key.as_deref(), Some("layer[1].file[0].sourc"));
    assert!(e.message.contains("unknown field `sourc`"), "{}", e.message);
    assert!(e.hint.unwrap().contains("nodeimg schema"));
}

#[test]
fn unknown_item_in_layer() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\nsystemdd = { enable = [\"x\"] }\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.key.as_deref(), Some("layer[0].systemdd"));
}

#[test]
fn wrong_type() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\n[[layer.file]]\npath = \"/x\"\ncontent = \"\"\nowner = \"root\"\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(8));
    assert_eq!(e.key.as_deref(), Some("layer[0].file[0].owner"));
    assert!(e.message.contains("invalid type"), "{}", e.message);
}

#[test]
fn missing_image_name() {
    let d = folder(&[(
        "r/recipe.toml",
        "# recipe\n[image]\ntag = \"v1\"\n\n[[layer]]\nname = \"a\"\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("image.name"));
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("missing field `name`"), "{}", e.message);
}

#[test]
fn bad_image_name() {
    let d = folder(&[("r/recipe.toml", "[image]\nname = \"Node Image\"\n")]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("image.name"));
    assert_eq!(e.line, Some(2));
}

#[test]
fn duplicate_layer_name_across_include() {
    let d = folder(&[
        (
            "r/recipe.toml",
            "include = [\"frag.toml\"]\n[image]\nname = \"n\"\n\n[[layer]]\nname = \"one\"\n\n[[layer]]\nname = \"kernel\"\n",
        ),
        ("r/frag.toml", "\n[[layer]]\nname = \"kernel\"\n"),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(file_name(&e), "recipe.toml");
    assert_eq!(e.line, Some(9));
    assert_eq!(e.key.as_deref(), Some("layer[1].name"));
    assert!(
        e.message
            .contains("already used at frag.toml:3 (layer[0].name)"),
        "{}",
        e.message
    );
}

#[test]
fn include_escaping_the_folder() {
    let d = folder(&[
        (
            "r/recipe.toml",
            "\ninclude = [\"../outside.toml\"]\n[image]\nname = \"n\"\n",
        ),
        ("outside.toml", "[[layer]]\nname = \"x\"\n"),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(2));
    assert_eq!(e.key.as_deref(), Some("include[0]"));
    assert!(
        e.message.contains("leaves the recipe's folder"),
        "{}",
        e.message
    );

    let abs = d.root.parent().unwrap().join("outside.toml");
    fs::write(
        d.root.join("recipe.toml"),
        format!(
            "include = [{:?}]\n[image]\nname = \"n\"\n",
            abs.to_str().unwrap()
        ),
    )
    .unwrap();
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("include[0]"));
    assert!(e.message.contains("absolute"), "{}", e.message);
}

#[test]
fn include_cycle_and_fragment_rules() {
    let d = folder(&[
        (
            "r/recipe.toml",
            "include = [\"a.toml\"]\n[image]\nname = \"n\"\n",
        ),
        ("r/a.toml", "include = [\"b.toml\"]\n"),
        ("r/b.toml", "include = [\"a.toml\"]\n"),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(file_name(&e), "b.toml");
    assert_eq!(e.key.as_deref(), Some("include[0]"));
    assert!(
        e.message.contains("a.toml -> b.toml -> a.toml"),
        "{}",
        e.message
    );

    let d = folder(&[
        (
            "r/recipe.toml",
            "include = [\"a.toml\"]\n[image]\nname = \"n\"\n",
        ),
        ("r/a.toml", "[vars]\nx = \"1\"\n\n[image]\nname = \"m\"\n"),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.file, Path::new("a.toml"));
    assert_eq!(e.line, Some(4));
    assert!(e.hint.unwrap().contains("fragment holds only"));
}

#[test]
fn source_escaping_the_folder() {
    let d = folder(&[
        (
            "r/recipe.toml",
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\nfile = [{ path = \"/x\", source = \"../secret\" }]\n",
        ),
        ("secret", "s"),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.key.as_deref(), Some("layer[0].file[0].source"));
    assert!(e.message.contains("`..`"), "{}", e.message);

    let abs = d.root.parent().unwrap().join("secret");
    fs::write(
        d.root.join("recipe.toml"),
        format!(
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\n[[layer.systemd.unit]]\nname = \"x.service\"\nsource = {:?}\n",
            abs.to_str().unwrap()
        ),
    )
    .unwrap();
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(7));
    assert_eq!(e.key.as_deref(), Some("layer[0].systemd.unit[0].source"));
    assert!(e.message.contains("absolute"), "{}", e.message);

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&abs, d.root.join("link")).unwrap();
        fs::write(
            d.root.join("recipe.toml"),
            "[image]\nname = \"n\"\n[[layer]]\nname = \"a\"\napt-source = [{ name = \"d\", uris = [\"http://x\"], suites = [\"s\"], key = \"link\" }]\n",
        )
        .unwrap();
        let e = recipe_err(load_expand(&d, &[]));
        assert_eq!(e.key.as_deref(), Some("layer[0].apt-source[0].key"));
        assert!(e.message.contains("outside"), "{}", e.message);
    }
}

#[test]
fn undefined_variable() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[vars]\nrelease = \"1.30\"\n[[layer]]\nname = \"a\"\nsystemd = { enable = [\"ok.service\", \"${runtime}.service\"] }\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(7));
    assert_eq!(e.key.as_deref(), Some("layer[0].systemd.enable[1]"));
    assert_eq!(e.message, "undefined variable `runtime`");
    let hint = e.hint.unwrap();
    assert!(
        hint.contains("arch, os.ID, os.VERSION_CODENAME, release"),
        "{hint}"
    );

    // In a variable's own value.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[vars]\na = \"${b}\"\nb = \"${c}\"\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.key.as_deref(), Some("vars.b"));
    assert_eq!(e.message, "undefined variable `c`");

    // A cycle.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[vars]\na = \"${b}\"\nb = \"${a}\"\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert!(e.message.contains("a -> b -> a"), "{}", e.message);

    // Variables that double each other: refused once a value passes the
    // bound, at the variable that passes it, in linear time.
    let mut text = "[image]\nname = \"n\"\n[vars]\nv0 = \"xx\"\n".to_string();
    for i in 1..=30 {
        text.push_str(&format!("v{i} = \"${{v{}}}${{v{}}}\"\n", i - 1, i - 1));
    }
    let d = folder(&[("r/recipe.toml", &text)]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("vars.v20"), "{}", e.message);
    assert!(e.message.contains("more than 1024 KiB"), "{}", e.message);
}

#[test]
fn overrides_parse() {
    let o = parse_overrides(&["a=1".into(), "b=x=y".into()]).unwrap();
    assert_eq!(o["a"], "1");
    assert_eq!(o["b"], "x=y");
    assert!(matches!(
        parse_overrides(&["a".into()]),
        Err(Error::Usage(_))
    ));
    assert!(matches!(
        parse_overrides(&["arch=x".into()]),
        Err(Error::Usage(_))
    ));
}

#[test]
fn a_fragment_included_twice_is_read_once() {
    // A diamond: both halves include the same fragment, also named another
    // way; its layer comes once, where it is first included.
    let d = folder(&[
        (
            "r/recipe.toml",
            "include = [\"a.toml\", \"b.toml\"]\n[image]\nname = \"n\"\n",
        ),
        (
            "r/a.toml",
            "include = [\"common.toml\"]\n[[layer]]\nname = \"a\"\n",
        ),
        (
            "r/b.toml",
            "include = [\"./common.toml\"]\n[[layer]]\nname = \"b\"\n",
        ),
        ("r/common.toml", "[[layer]]\nname = \"common\"\n"),
    ]);
    let r = load_expand(&d, &[]).unwrap();
    let names: Vec<&str> = r.layers.iter().map(|l| l.spec.name.as_str()).collect();
    assert_eq!(names, ["common", "a", "b"]);
    assert_eq!(r.files.len(), 4);
}

#[test]
fn lint_allow_needs_a_reason_and_each_rule_once() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[vars]\nwhy = \"the host\"\n\n[lint]\nallow = [\n  { rule = \"NI004\", reason = \"set up by ${why}\" },\n  { rule = \"NI007\", reason = \"kept on purpose\" },\n]\n",
    )]);
    let r = load_expand(&d, &[]).unwrap();
    assert_eq!(
        r.lint_allow,
        [
            LintAllow {
                rule: "NI004".into(),
                reason: "set up by the host".into()
            },
            LintAllow {
                rule: "NI007".into(),
                reason: "kept on purpose".into()
            },
        ]
    );
    // No reason: the key and its line.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[lint]\nallow = [\n  { rule = \"NI004\" },\n]\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("lint.allow[0].reason"));
    assert_eq!(e.line, Some(6));
    assert_eq!(file_name(&e), "recipe.toml");
    // An empty reason.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[lint]\nallow = [\n  { rule = \"NI004\", reason = \"  \" },\n]\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("lint.allow[0].reason"));
    assert_eq!(e.line, Some(6));
    assert!(e.message.contains("needs a reason"), "{}", e.message);
    // Twice the same rule.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n[lint]\nallow = [{ rule = \"NI004\", reason = \"a\" }, { rule = \"NI004\", reason = \"b\" }]\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("lint.allow[1].rule"));
    // Only the recipe allows rules, not a fragment it includes.
    let d = folder(&[
        (
            "r/recipe.toml",
            "include = [\"f.toml\"]\n[image]\nname = \"n\"\n",
        ),
        (
            "r/f.toml",
            "[lint]\nallow = [{ rule = \"NI004\", reason = \"a\" }]\n",
        ),
    ]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(file_name(&e), "f.toml");
    assert!(e
        .hint
        .unwrap()
        .contains("move `[image]` and `[lint]` to the recipe"));
}

#[test]
fn architecture_variables_in_layers_and_the_base() {
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\narchitecture = \"arm\"\nbase = \"rootfs:${deb_arch}-${rpm_arch}.tar\"\n\n[vars]\nrepo = \"https://mirror.example.org/raspbian/${deb_arch}\"\n\n[[layer]]\nname = \"a\"\nfile = [{ path = \"/etc/arch\", content = \"${arch} ${deb_arch} ${rpm_arch} ${repo}\" }]\n",
    )]);
    let loaded = Loaded::load(&d.root.join("recipe.toml")).unwrap();
    assert_eq!(
        loaded.base(&BTreeMap::new()).unwrap().as_deref(),
        Some("rootfs:armhf-armv7hl.tar")
    );
    let r = loaded.expand("arm", &os(), &BTreeMap::new()).unwrap();
    assert_eq!(
        r.layers[0].spec.file[0].content.as_deref(),
        Some("arm armhf armv7hl https://mirror.example.org/raspbian/armhf")
    );
    assert_eq!(r.vars["deb_arch"], "armhf");
    // The names are reserved.
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\n\n[vars]\ndeb_arch = \"armel\"\n",
    )]);
    let e = recipe_err(load_expand(&d, &[]));
    assert_eq!(e.key.as_deref(), Some("vars.deb_arch"));
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("built-in"), "{}", e.message);
    assert!(e.hint.unwrap().contains("`deb_arch`"));
}

#[test]
fn platforms_are_checked_and_name_the_base_of_each() {
    for (p, want) in [
        ("linux/amd64", Ok("amd64")),
        ("linux/arm64", Ok("arm64")),
        ("linux/arm64/v8", Ok("arm64")),
        ("linux/arm/v7", Ok("arm")),
        ("linux/arm", Ok("arm")),
        ("windows/amd64", Err("linux images")),
        ("linux/arm/v6", Err("variant v7 only")),
        ("linux/amd64/v3", Err("no variant")),
        ("linux/sparc", Err("unknown architecture")),
        ("amd64", Err("not OS/ARCH")),
        ("linux/amd64/v2/x", Err("not OS/ARCH")),
    ] {
        match (parse_platform(p), want) {
            (Ok(a), Ok(w)) => assert_eq!(a, w, "{p}"),
            (Err(m), Err(w)) => assert!(m.contains(w), "{p}: {m}"),
            (got, _) => panic!("{p}: {got:?}"),
        }
    }
    let d = folder(&[(
        "r/recipe.toml",
        "[image]\nname = \"n\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\nbase = \"rootfs:base-${deb_arch}.tar\"\n",
    )]);
    let l = Loaded::load(&d.root.join("recipe.toml")).unwrap();
    assert_eq!(l.platforms().unwrap(), ["amd64", "arm64"]);
    // No architecture until one platform is chosen: then its base.
    assert!(l.base(&BTreeMap::new()).is_err());
    let arm = l.for_architecture("arm64");
    assert_eq!(
        arm.base(&BTreeMap::new()).unwrap().as_deref(),
        Some("rootfs:base-arm64.tar")
    );
    assert_eq!(
        arm.architecture(&BTreeMap::new()).unwrap().as_deref(),
        Some("arm64")
    );
    for (text, key, message) in [
        (
            "[image]\nname = \"n\"\narchitecture = \"amd64\"\nplatforms = [\"linux/amd64\"]\n",
            "image.platforms",
            "both set",
        ),
        (
            "[image]\nname = \"n\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/amd64\"]\n",
            "image.platforms[2]",
            "listed twice",
        ),
        (
            "[image]\nname = \"n\"\nplatforms = [\"linux/riscv\"]\n",
            "image.platforms[0]",
            "unknown architecture",
        ),
    ] {
        let d = folder(&[("r/recipe.toml", text)]);
        let l = Loaded::load(&d.root.join("recipe.toml")).unwrap();
        let e = match l.platforms() {
            Err(Error::Recipe(e)) => e,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(e.key.as_deref(), Some(key), "{text}");
        assert!(e.message.contains(message), "{text}: {}", e.message);
        assert!(e.line.is_some(), "{text}");
    }
}
