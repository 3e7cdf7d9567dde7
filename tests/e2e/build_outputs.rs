//! Every recipe in `recipes/` builds on the fixture base (one with rpm packages
//! on the fixture made an rpm base, see `test_build`) in all three output
//! formats; the OCI outputs pass umoci and oci-image-tool, and the rootfs tar
//! holds the files the recipe asks for, with the modes and owners it asks for.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use nodeimg_e2e::*;

/// What the tests expect to find at one path of the flattened image.
#[derive(Debug, Clone)]
struct Expect {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    content: Option<Vec<u8>>,
    link: Option<String>,
    /// Set by recipe items whose output the test only checks for existence
    /// and metadata (the content depends on the layer's renderer).
    json: Option<serde_json::Value>,
    why: String,
}

fn file(mode: u32, content: Option<Vec<u8>>, why: String) -> Expect {
    Expect {
        kind: '-',
        mode,
        uid: 0,
        gid: 0,
        content,
        link: None,
        json: None,
        why,
    }
}

fn str_of<'a>(v: &'a toml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|v| v.as_str())
}

fn mode_of(v: &toml::Value, default: u32) -> u32 {
    match str_of(v, "mode") {
        Some(m) => {
            u32::from_str_radix(m, 8).unwrap_or_else(|_| panic!("bad mode {m:?} in a recipe"))
        }
        None => default,
    }
}

fn id_of(v: &toml::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|v| v.as_integer())
        .map(|i| i as u64)
        .unwrap_or(0)
}

/// What the tests expect at each path of the flattened image.
type Expects = BTreeMap<String, Expect>;

/// A layer's items of one kind (an array of tables, or one table).
fn items_of(layer: &toml::Table, kind: &str) -> Vec<toml::Value> {
    match layer.get(kind) {
        Some(toml::Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
        None => vec![],
    }
}

/// The files of a layer's `modules` and `sysctl` items.
fn expect_kernel_config(layer: &toml::Table, lname: &str, exp: &mut Expects) {
    let items = |kind: &str| items_of(layer, kind);
    for it in items("modules") {
        let f = str_of(&it, "file").expect("modules.file");
        let load: Vec<String> = it
            .get("load")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let content = load.iter().map(|l| format!("{l}\n")).collect::<String>();
        let content = (!has_var(&content)).then(|| content.into_bytes());
        exp.insert(
            format!("/etc/modules-load.d/{f}.conf"),
            file(0o644, content, format!("layer {lname}: modules")),
        );
    }
    for it in items("sysctl") {
        let f = str_of(&it, "file").expect("sysctl.file");
        let mut content = String::new();
        if let Some(set) = it.get("set").and_then(|v| v.as_table()) {
            for (k, v) in set {
                content.push_str(&format!("{k} = {}\n", toml_scalar_text(v)));
            }
        }
        let content = (!has_var(&content)).then(|| content.into_bytes());
        exp.insert(
            format!("/etc/sysctl.d/{f}.conf"),
            file(0o644, content, format!("layer {lname}: sysctl")),
        );
    }
}

/// The files of a layer's `docker`, `containerd`, `crio` and `kubelet` items.
fn expect_runtime_config(layer: &toml::Table, lname: &str, exp: &mut Expects) {
    let items = |kind: &str| items_of(layer, kind);
    for it in items("docker") {
        let mut e = file(0o644, None, format!("layer {lname}: docker"));
        let j = toml_to_json(&it);
        if !has_var(&j.to_string()) {
            e.json = Some(j);
        }
        exp.insert("/etc/docker/daemon.json".into(), e);
    }
    for _ in items("containerd") {
        exp.insert(
            "/etc/containerd/config.toml".into(),
            file(0o644, None, format!("layer {lname}: containerd")),
        );
    }
    for it in items("crio") {
        let f = str_of(&it, "file").unwrap_or("02-cgroup-manager");
        exp.insert(
            format!("/etc/crio/crio.conf.d/{f}.conf"),
            file(0o644, None, format!("layer {lname}: crio")),
        );
    }
    for it in items("kubelet") {
        let mut paths = vec!["/var/lib/kubelet/config.yaml", "/etc/default/kubelet"];
        if it.get("container-runtime-endpoint").is_some() {
            paths.push("/etc/crictl.yaml");
        }
        for p in paths {
            exp.insert(
                p.into(),
                file(0o644, None, format!("layer {lname}: kubelet")),
            );
        }
    }
}

/// The files of a layer's `apt-source`, `yum-repo` and `zypper-repo` items.
fn expect_repositories(layer: &toml::Table, lname: &str, exp: &mut Expects) {
    let items = |kind: &str| items_of(layer, kind);
    for it in items("apt-source") {
        let n = str_of(&it, "name").expect("apt-source.name");
        exp.insert(
            format!("/etc/apt/sources.list.d/{n}.sources"),
            file(0o644, None, format!("layer {lname}: apt-source")),
        );
        if it.get("key").is_some() {
            exp.insert(
                format!("/etc/apt/keyrings/{n}.gpg"),
                file(0o644, None, format!("layer {lname}: apt-source key")),
            );
        }
    }
    for (kind, dir) in [
        ("yum-repo", "/etc/yum.repos.d"),
        ("zypper-repo", "/etc/zypp/repos.d"),
    ] {
        for it in items(kind) {
            if let Some(f) = str_of(&it, "file") {
                exp.insert(
                    format!("{dir}/{f}.repo"),
                    file(0o644, None, format!("layer {lname}: {kind}")),
                );
            }
        }
    }
}

/// The units, drop-ins and masks of a layer's `systemd` items.
fn expect_systemd(layer: &toml::Table, lname: &str, exp: &mut Expects) {
    let items = |kind: &str| items_of(layer, kind);
    for it in items("systemd") {
        if let Some(units) = it.get("unit").and_then(|v| v.as_array()) {
            for u in units {
                let n = str_of(u, "name").expect("systemd.unit.name");
                let content = str_of(u, "content")
                    .filter(|c| !has_var(c))
                    .map(|c| c.as_bytes().to_vec());
                exp.insert(
                    format!("/etc/systemd/system/{n}"),
                    file(0o644, content, format!("layer {lname}: systemd.unit")),
                );
            }
        }
        if let Some(dropins) = it.get("dropin").and_then(|v| v.as_array()) {
            for d in dropins {
                let u = str_of(d, "unit").expect("systemd.dropin.unit");
                let n = str_of(d, "name").expect("systemd.dropin.name");
                let content = str_of(d, "content")
                    .filter(|c| !has_var(c))
                    .map(|c| c.as_bytes().to_vec());
                exp.insert(
                    format!("/etc/systemd/system/{u}.d/{n}.conf"),
                    file(0o644, content, format!("layer {lname}: systemd.dropin")),
                );
            }
        }
        if let Some(mask) = it.get("mask").and_then(|v| v.as_array()) {
            for u in mask.iter().filter_map(|v| v.as_str()) {
                exp.insert(
                    format!("/etc/systemd/system/{u}"),
                    Expect {
                        kind: 'l',
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        content: None,
                        link: Some("/dev/null".into()),
                        json: None,
                        why: format!("layer {lname}: systemd.mask"),
                    },
                );
            }
        }
    }
}

/// A layer's `file`, `dir` and `symlink` items.
fn expect_files(layer: &toml::Table, lname: &str, exp: &mut Expects) {
    let items = |kind: &str| items_of(layer, kind);
    for it in items("file") {
        let p = str_of(&it, "path").expect("file.path");
        if has_var(p) {
            continue;
        }
        let mut e = file(
            mode_of(&it, 0o644),
            str_of(&it, "content")
                .filter(|c| !has_var(c))
                .map(|c| c.as_bytes().to_vec()),
            format!("layer {lname}: file"),
        );
        e.uid = id_of(&it, "owner");
        e.gid = id_of(&it, "group");
        exp.insert(p.into(), e);
    }
    for it in items("dir") {
        let p = str_of(&it, "path").expect("dir.path");
        if has_var(p) {
            continue;
        }
        let mut e = file(mode_of(&it, 0o755), None, format!("layer {lname}: dir"));
        e.kind = 'd';
        e.uid = id_of(&it, "owner");
        e.gid = id_of(&it, "group");
        exp.insert(p.trim_end_matches('/').into(), e);
    }
    for it in items("symlink") {
        let p = str_of(&it, "path").expect("symlink.path");
        let t = str_of(&it, "target").expect("symlink.target");
        if has_var(p) || has_var(t) {
            continue;
        }
        let mut e = file(0o777, None, format!("layer {lname}: symlink"));
        e.kind = 'l';
        e.link = Some(t.into());
        exp.insert(p.into(), e);
    }
}

/// Predict the files a recipe writes, from the recipe alone.
fn expectations(m: &RecipeModel) -> (Expects, Vec<String>) {
    let mut exp = Expects::new();
    let mut removed = Vec::new();
    for layer in &m.layers {
        let lname = layer.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        expect_kernel_config(layer, lname, &mut exp);
        expect_runtime_config(layer, lname, &mut exp);
        expect_repositories(layer, lname, &mut exp);
        expect_systemd(layer, lname, &mut exp);
        expect_files(layer, lname, &mut exp);
        for it in items_of(layer, "remove") {
            if let Some(p) = it.as_str() {
                exp.remove(p);
                removed.push(p.to_string());
            }
        }
    }
    (exp, removed)
}

const KUBERNETES_SYSCTLS: [&str; 3] = [
    "net.bridge.bridge-nf-call-iptables = 1",
    "net.ipv4.ip_forward = 1",
    "net.bridge.bridge-nf-call-ip6tables = 1",
];

/// The owners the image's rpm database records for the files of its
/// packages that are not root's (read by the host's rpm from the rootfs
/// `tar`), as ids through the image's `/etc/passwd` and `/etc/group`; a name
/// they do not hold is root, as rpm makes it.
fn rpm_owners(tar: &Path) -> BTreeMap<String, (u64, u64)> {
    let tmp = temp_dir("rpm-owners");
    let root = tmp.path().join("root");
    extract_tar(tar, &root);
    let ids = |file: &str, id_field: usize| -> BTreeMap<String, u64> {
        fs::read_to_string(root.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(id_field)?.parse().ok()?))
            })
            .collect()
    };
    let (users, groups) = (ids("etc/passwd", 2), ids("etc/group", 2));
    let q = run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "-qa", "--qf"])
        .arg("[%{FILENAMES}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\n]"))
    .ok();
    let mut out = BTreeMap::new();
    for l in q.stdout.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let [path, user, group] = f[..] else {
            panic!("unexpected rpm -qa line {l:?}: {q}")
        };
        let owner = (
            users.get(user).copied().unwrap_or(0),
            groups.get(group).copied().unwrap_or(0),
        );
        if owner != (0, 0) {
            out.insert(path.to_string(), owner);
        }
    }
    assert!(
        !q.stdout.is_empty(),
        "the image's rpm database lists no files: {q}"
    );
    out
}

fn check_rootfs_tar(recipe: &Path, m: &RecipeModel, tar: &Path, user: (u32, u32)) {
    let entries = read_tar(tar);
    let idx = by_path(&entries);
    let name = &recipe.display().to_string();
    let (exp, removed) = expectations(m);
    assert!(
        !exp.is_empty(),
        "{name}: the recipe predicts no files at all"
    );
    check_base_entries(name, &idx, &entries);
    check_owners(recipe, name, tar, &entries, &exp, user);
    check_expected(name, &idx, &exp, &removed);
    check_kubernetes_prerequisites(name, &idx);
}

/// The base is in the rootfs, whole and flattened.
fn check_base_entries(name: &str, idx: &BTreeMap<String, TarEntry>, entries: &[TarEntry]) {
    // The base is there, merged-/usr links intact.
    for (p, target) in [
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
    ] {
        let e = idx
            .get(p)
            .unwrap_or_else(|| panic!("{name}: base entry {p} missing"));
        assert_eq!(
            (e.kind, e.link.as_deref()),
            ('l', Some(target)),
            "{name}: {p}"
        );
    }
    for p in [
        "/usr/lib/systemd/systemd",
        "/usr/lib/systemd/system/containerd.service",
    ] {
        assert!(
            idx.contains_key(p),
            "{name}: base entry {p} missing from the rootfs"
        );
    }

    // No whiteouts survive flattening, no duplicates.
    assert_eq!(
        idx.len(),
        entries.len(),
        "{name}: duplicate paths in the rootfs tar"
    );
    for e in entries {
        let leaf = e.path.rsplit('/').next().unwrap_or_default();
        assert!(
            !leaf.starts_with(".wh."),
            "{name}: whiteout {} left in the rootfs",
            e.path
        );
    }
}

/// Owners: never the building user's; 0:0 unless the recipe says otherwise
/// or an rpm package the recipe installs does.
fn check_owners(
    recipe: &Path,
    name: &str,
    tar: &Path,
    entries: &[TarEntry],
    exp: &Expects,
    user: (u32, u32),
) {
    let packaged = if rpmrepo::has_rpm_packages(recipe) {
        rpm_owners(tar)
    } else {
        BTreeMap::new()
    };
    for e in entries {
        if let Some(x) = exp.get(&e.path) {
            assert_eq!(
                (e.uid, e.gid),
                (x.uid, x.gid),
                "{name}: owner of {} ({})",
                e.path,
                x.why
            );
        } else if let Some(owner) = packaged.get(&e.path) {
            assert_eq!(
                (e.uid, e.gid),
                *owner,
                "{name}: owner of {}, which the image's rpm database records",
                e.path
            );
        } else {
            assert_eq!(
                (e.uid, e.gid),
                (0, 0),
                "{name}: owner of base entry {}",
                e.path
            );
        }
        if user != (0, 0) {
            assert!(
                e.uid != u64::from(user.0) && e.gid != u64::from(user.1),
                "{name}: {} is owned by the building user {}:{}",
                e.path,
                user.0,
                user.1
            );
        }
    }
}

/// Every predicted path is there as predicted; every removed one is gone.
fn check_expected(name: &str, idx: &BTreeMap<String, TarEntry>, exp: &Expects, removed: &[String]) {
    for (p, x) in exp {
        let e = idx
            .get(p)
            .unwrap_or_else(|| panic!("{name}: {p} missing from the rootfs ({})", x.why));
        assert_eq!(e.kind, x.kind, "{name}: type of {p} ({})", x.why);
        if x.kind != 'l' {
            assert_eq!(
                e.mode, x.mode,
                "{name}: mode of {p} is {:o} ({})",
                e.mode, x.why
            );
        }
        assert_eq!(
            e.mtime, TEST_EPOCH,
            "{name}: mtime of {p} is not SOURCE_DATE_EPOCH"
        );
        if let Some(c) = &x.content {
            assert_eq!(
                String::from_utf8_lossy(&e.data),
                String::from_utf8_lossy(c),
                "{name}: content of {p} ({})",
                x.why
            );
        }
        if let Some(l) = &x.link {
            assert_eq!(e.link.as_deref(), Some(l.as_str()), "{name}: target of {p}");
        }
        if let Some(j) = &x.json {
            check_json(name, p, &e.data, j);
        }
    }
    for p in removed {
        assert!(
            !idx.contains_key(p),
            "{name}: {p} was removed by the recipe but is present"
        );
    }
}

/// A `docker` item's `daemon.json`: the recipe's table, 2-space indented,
/// ending with a newline.
fn check_json(name: &str, p: &str, data: &[u8], j: &serde_json::Value) {
    let text = String::from_utf8_lossy(data);
    let got: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{name}: {p} is not JSON: {err}\n{text}"));
    assert_eq!(
        &got, j,
        "{name}: {p} differs from the recipe's docker table"
    );
    assert!(text.ends_with("}\n"), "{name}: {p} must end with a newline");
    if let Some(second) = text.lines().nth(1) {
        assert!(
            second.starts_with("  \"") && !second.starts_with("   "),
            "{name}: {p} must use a 2-space indent: {second:?}"
        );
    }
}

/// The kernel prerequisites every Kubernetes node needs.
fn check_kubernetes_prerequisites(name: &str, idx: &BTreeMap<String, TarEntry>) {
    let sysctl = idx
        .get("/etc/sysctl.d/99-kubernetes-cri.conf")
        .unwrap_or_else(|| panic!("{name}: /etc/sysctl.d/99-kubernetes-cri.conf missing"));
    assert_eq!(
        (sysctl.kind, sysctl.mode, sysctl.uid, sysctl.gid),
        ('-', 0o644, 0, 0)
    );
    let mut lines: Vec<&str> = std::str::from_utf8(&sysctl.data)
        .expect("utf-8")
        .lines()
        .collect();
    lines.sort();
    let mut want = KUBERNETES_SYSCTLS.to_vec();
    want.sort();
    assert_eq!(
        lines, want,
        "{name}: 99-kubernetes-cri.conf must hold exactly the three settings"
    );
    let modules = idx
        .get("/etc/modules-load.d/containerd.conf")
        .unwrap_or_else(|| panic!("{name}: /etc/modules-load.d/containerd.conf missing"));
    assert_eq!(
        (modules.kind, modules.mode, modules.uid, modules.gid),
        ('-', 0o644, 0, 0)
    );
    let mods: Vec<&str> = std::str::from_utf8(&modules.data)
        .expect("utf-8")
        .lines()
        .collect();
    assert!(
        mods.contains(&"overlay") && mods.contains(&"br_netfilter"),
        "{name}: containerd.conf must load overlay and br_netfilter: {mods:?}"
    );
}

/// Check an OCI layout with both validators; the tag must resolve to `digest`.
fn check_layout(label: &str, layout: &Path, tag: &str, digest: &str, work: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let tagged: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .expect("index.json manifests")
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    assert_eq!(
        tagged.len(),
        1,
        "{label}: exactly one manifest tagged {tag}: {index}"
    );
    assert_eq!(
        tagged[0]["digest"], digest,
        "{label}: tagged manifest vs printed digest"
    );

    if let Err(e) = verify_layout_blobs(layout, tag) {
        panic!("{label}: {e}");
    }
    if label.ends_with("-zstd") {
        // umoci 0.4 and oci-image-tool 1.0 do not know zstd layers; skopeo
        // copies the image, checking every blob against its digest.
        let copy = work.join(format!("copy-{label}"));
        let r = run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("oci:{}:{tag}", copy.display())));
        assert_eq!(r.code, 0, "{label}: skopeo could not copy the image: {r}");
        return;
    }
    let r = oci_validate(layout);
    assert_eq!(r.code, 0, "{label}: oci-image-tool rejected the image: {r}");
    let bundle = work.join(format!("bundle-{label}"));
    let r = umoci_unpack(layout, tag, &bundle);
    assert_eq!(r.code, 0, "{label}: umoci unpack rejected the image: {r}");
    assert!(
        bundle.join("rootfs/usr/lib/systemd/systemd").exists(),
        "{label}: unpacked rootfs lacks the base"
    );
}

/// Recipe layers' tars: parent directories present, owners and mtimes
/// fixed: `SOURCE_DATE_EPOCH`, but for the files and links packages install,
/// which keep their packages' (the test packages': [`PACKAGE_EPOCH`]).
fn check_layer_blobs(label: &str, layout: &Path, json: &serde_json::Value) {
    // Skip the base layer: only the recipe's layers are nodeimg's own tars.
    for l in json["layers"].as_array().expect("layers").iter().skip(1) {
        let installs = l.get("packages").is_some();
        let mut packaged = 0;
        let d = l["digest"].as_str().expect("layer digest");
        let blob = layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        let entries = read_tar(&blob);
        let paths: std::collections::BTreeSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        for e in &entries {
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                if !parent.is_empty() {
                    assert!(
                        paths.contains(parent),
                        "{label}: layer {} has {} without its parent directory",
                        l["name"],
                        e.path
                    );
                }
            }
            if installs && e.kind != 'd' && e.mtime == PACKAGE_EPOCH {
                packaged += 1;
                continue;
            }
            assert_eq!(
                e.mtime, TEST_EPOCH,
                "{label}: layer {} entry {} mtime",
                l["name"], e.path
            );
        }
        assert_eq!(
            installs,
            packaged > 0,
            "{label}: layer {}: {packaged} entries keep a package's mtime",
            l["name"]
        );
    }
}

/// The `--json` object of a build: the printed digest, the output path, the
/// base tar unchanged as the first layer, then one layer per `[[layer]]`.
fn check_build_json(
    label: &str,
    j: &serde_json::Value,
    digest: &str,
    base: &Path,
    m: &RecipeModel,
) {
    assert_eq!(
        j["manifest_digest"], digest,
        "{label}: --json digest differs"
    );
    assert!(j["path"].is_string(), "{label}: --json lacks path: {j}");
    let layers = j["layers"].as_array().expect("--json layers");
    assert_eq!(
        layers.len(),
        1 + m.layers.len(),
        "{label}: one base layer plus one per [[layer]]: {j}"
    );
    // A rootfs base becomes one layer holding the base tar as it is.
    assert_eq!(
        layers[0]["diff_id"].as_str(),
        Some(sha256_file(base).as_str()),
        "{label}: the first layer must be the base tar, unchanged: {j}"
    );
    let mut names: Vec<String> = layers[1..]
        .iter()
        .map(|l| {
            assert_eq!(l["from_base"], false, "{label}: {l}");
            for k in ["digest", "diff_id"] {
                assert!(
                    l[k].as_str().is_some_and(|s| s.starts_with("sha256:")),
                    "{label}: layer {k}: {l}"
                );
            }
            assert!(
                l["size"].as_u64().is_some_and(|s| s > 0),
                "{label}: layer size: {l}"
            );
            l["name"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    names.sort();
    let mut want = m.layer_names();
    want.sort();
    assert_eq!(names, want, "{label}: layer names");
}

#[test]
fn every_recipe_builds_in_every_format_and_passes_validators() {
    for (tool, pkg) in [
        ("umoci", "umoci"),
        ("oci-image-tool", "oci-image-tool"),
        ("sha256sum", "coreutils"),
    ] {
        if !require(tool, pkg) {
            return;
        }
    }
    let Some(fixture) = fixture_base() else {
        return;
    };
    for recipe in recipes() {
        // An rpm recipe is built on the fixture made an rpm base.
        let tb = test_build(&recipe, &fixture);
        let (base, base_ref) = (&tb.base, tb.base_ref());
        let m = RecipeModel::load(&recipe);
        let tag = m.tag();
        let tmp = temp_dir("build");
        let w = tmp.path();
        let user = building_user(w);
        let label = recipe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();

        // OCI layout.
        let oci = w.join("oci");
        let digest = build_ok(w, &recipe, &oci, "oci", &base_ref);
        check_layout(&format!("{label}-oci"), &oci, &tag, &digest, w);

        // --json: one object; same image, same digest.
        let oci2 = w.join("oci-json");
        let r = run(nodeimg(w)
            .arg("build")
            .arg(&tb.recipe)
            .arg("-o")
            .arg(&oci2)
            .args(["--format", "oci", "--base", &base_ref, "--json"])
            .args(&tb.args))
        .ok();
        let j: serde_json::Value = serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("{label}: --json output is not one JSON object: {e}\n{r}"));
        check_build_json(&label, &j, &digest, base, &m);
        check_layer_blobs(&label, &oci2, &j);

        // OCI archive: the same image; its unpacked layout validates too.
        let archive = w.join("image.oci.tar");
        let adigest = build_ok(w, &recipe, &archive, "oci-archive", &base_ref);
        assert_eq!(
            adigest, digest,
            "{label}: oci-archive and oci digests differ"
        );
        let alayout = w.join("archive-layout");
        extract_tar(&archive, &alayout);
        check_layout(&format!("{label}-archive"), &alayout, &tag, &digest, w);

        // Flattened rootfs tar: stdout is the file's sha256.
        let rootfs = w.join("rootfs.tar");
        let sum = build_ok(w, &recipe, &rootfs, "rootfs", &base_ref);
        let r = run(Command::new("sha256sum").arg(&rootfs)).ok();
        let hex = r.stdout.split_whitespace().next().unwrap_or_default();
        assert_eq!(
            sum.trim_start_matches("sha256:"),
            hex,
            "{label}: printed sum vs file"
        );
        check_rootfs_tar(&recipe, &m, &rootfs, user);

        // Compressed rootfs by extension.
        let gz = w.join("rootfs.tar.gz");
        build_ok(w, &recipe, &gz, "rootfs", &base_ref);
        let plain = read_tar(&rootfs);
        assert_eq!(
            read_tar(&gz),
            plain,
            "{label}: .tar.gz rootfs differs from .tar"
        );
    }
}

#[test]
fn zstd_and_uncompressed_layers_pass_validators() {
    for (tool, pkg) in [
        ("umoci", "umoci"),
        ("oci-image-tool", "oci-image-tool"),
        ("skopeo", "skopeo"),
    ] {
        if !require(tool, pkg) {
            return;
        }
    }
    let Some(fixture) = fixture_base() else {
        return;
    };
    let recipe = recipes().into_iter().next().expect("a recipe");
    let tb = test_build(&recipe, &fixture);
    let base_ref = tb.base_ref();
    let tag = RecipeModel::load(&recipe).tag();
    let tmp = temp_dir("compression");
    let w = tmp.path();
    let mut digests = Vec::new();
    for c in ["gzip", "zstd", "none"] {
        let out = w.join(format!("oci-{c}"));
        let r = run(nodeimg(w)
            .arg("build")
            .arg(&tb.recipe)
            .arg("-o")
            .arg(&out)
            .args(["--format", "oci", "--base", &base_ref, "--compression", c])
            .args(&tb.args))
        .ok();
        let d = single_digest_line(&r);
        check_layout(&format!("compression-{c}"), &out, &tag, &d, w);
        digests.push(d);
    }
    // The blob check can fail: a flipped byte in a layer is caught.
    let tampered = w.join("tampered");
    copy_dir(&w.join("oci-gzip"), &tampered);
    let blobs = tampered.join("blobs/sha256");
    let biggest = fs::read_dir(&blobs)
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let mut bytes = fs::read(&biggest).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&biggest, bytes).expect("write blob");
    assert!(
        verify_layout_blobs(&tampered, &tag).is_err(),
        "a tampered blob went unnoticed"
    );

    assert_ne!(digests[0], digests[1], "gzip and zstd images must differ");
    assert_ne!(
        digests[1], digests[2],
        "zstd and uncompressed images must differ"
    );
}

#[test]
fn default_output_is_out_slash_name() {
    let Some(fixture) = fixture_base() else {
        return;
    };
    let recipe = recipes().into_iter().next().expect("a recipe");
    let tb = test_build(&recipe, &fixture);
    let name = RecipeModel::load(&recipe).name();
    let tmp = temp_dir("default-out");
    let w = tmp.path();
    let r = run(nodeimg(w)
        .arg("build")
        .arg(&tb.recipe)
        .args(["--base", &tb.base_ref(), "-q"])
        .args(&tb.args))
    .ok();
    single_digest_line(&r);
    assert!(
        w.join("out").join(&name).join("index.json").is_file(),
        "default output must be out/{name} (an OCI layout): {:?}",
        tree_listing(w)
    );
}
