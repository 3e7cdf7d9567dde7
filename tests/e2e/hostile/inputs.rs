//! Hostile inputs: the files a recipe names (`include`, a file item's
//! `source`, an apt-source's `key`) and the files named on the command line
//! (`--mirrors FILE`, a mirror's `key=FILE`).
//!
//! A recipe input is read from the recipe's folder only: a symbolic link that
//! leads out of it is refused, one to another file inside it is followed; a
//! FIFO, socket or device is refused without blocking on it. Each refusal
//! names the recipe file, line and key, and leaves no image behind; the
//! outside file's bytes never reach the output.
//!
//! Every case writes its own folder: `r/` is the recipe's folder, `secret.txt`
//! beside it is the outside file a link points at.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nodeimg_e2e::*;

/// The bytes of the file outside the recipe's folder.
const SECRET: &[u8] = b"outside-the-recipe-folder secret 0123456789\n";
/// The bytes of the file item's source inside the folder.
const APP: &[u8] = b"listen = 127.0.0.1:8080\n";
/// How long a refused build may take; a build that blocks (on a FIFO) is
/// killed after it.
const DEADLINE: Duration = Duration::from_secs(60);

/// The recipe's lines that name inputs (1-based): the include, the file
/// item's source, the apt-source's key.
const INCLUDE_LINE: usize = 1;
const SOURCE_LINE: usize = 7;
const KEY_LINE: usize = 8;

/// A recipe naming `source`, `key` and including `include`.
fn recipe_text(include: &str, source: &str, key: &str) -> String {
    format!(
        r#"include = [{include:?}]
[image]
name = "hostile-inputs"

[[layer]]
name = "files"
file = [{{ path = "/etc/app.conf", source = {source:?} }}]
apt-source = [{{ name = "docker", uris = ["https://download.docker.com/linux/debian"], suites = ["bookworm"], components = ["stable"], key = {key:?} }}]
"#
    )
}

const FRAGMENT: &str =
    "[[layer]]\nname = \"frag\"\nfile = [{ path = \"/etc/frag.conf\", content = \"frag\\n\" }]\n";

/// A temp folder with the clean recipe in `r/` and the outside file beside it.
struct Folder {
    tmp: tempfile::TempDir,
}

impl Folder {
    fn new(label: &str) -> Folder {
        let tmp = temp_dir(&format!("hostile-inputs-{label}"));
        let f = Folder { tmp };
        let r = f.dir();
        fs::create_dir_all(r.join("files")).expect("mkdir files");
        fs::create_dir_all(r.join("keys")).expect("mkdir keys");
        fs::write(r.join("files/app.conf"), APP).expect("write source");
        fs::copy(
            workspace_root().join("recipes/keys/docker.asc"),
            r.join("keys/docker.asc"),
        )
        .expect("copy the key");
        fs::write(r.join("frag.toml"), FRAGMENT).expect("write fragment");
        fs::write(f.root().join("secret.txt"), SECRET).expect("write secret");
        fs::write(
            f.root().join("outside.toml"),
            "[[layer]]\nname = \"outside\"\nfile = [{ path = \"/etc/outside\", content = \"outside\\n\" }]\n",
        )
        .expect("write outside fragment");
        f.recipe("frag.toml", "files/app.conf", "keys/docker.asc");
        f
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn dir(&self) -> PathBuf {
        self.root().join("r")
    }

    fn out(&self) -> PathBuf {
        self.root().join("out/img.tar")
    }

    fn recipe(&self, include: &str, source: &str, key: &str) {
        fs::write(
            self.dir().join("recipe.toml"),
            recipe_text(include, source, key),
        )
        .expect("write recipe");
    }

    /// `nodeimg build r/recipe.toml -o out/img.tar --format rootfs --base
    /// scratch EXTRA`, killed at [`DEADLINE`].
    fn build(&self, extra: &[&str]) -> Run {
        let mut cmd = nodeimg(self.root());
        cmd.arg("build")
            .arg("r/recipe.toml")
            .arg("-o")
            .arg(self.out())
            .args(["--format", "rootfs", "--base", "scratch"])
            .args(extra);
        run_with_deadline(&mut cmd, self.root())
    }

    /// Builds the recipe as last written and asserts its refusal at
    /// `recipe.toml:LINE` (see [`assert_refused`]).
    #[track_caller]
    fn assert_build_refused(&self, line: usize, words: &[&str]) {
        let r = self.build(&[]);
        assert_refused(self, &r, &format!("recipe.toml:{line}"), words);
    }

    /// No image and no temp file beside it.
    fn assert_no_output(&self, r: &Run) {
        let out = self.root().join("out");
        let left: Vec<String> = fs::read_dir(&out)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "output left behind: {left:?}\n{r}");
    }
}

/// Run `cmd` with stdin closed; a command still running after
/// [`DEADLINE`] is killed and the test fails.
fn run_with_deadline(cmd: &mut Command, _dir: &Path) -> Run {
    let t = run_within(cmd, DEADLINE);
    assert!(
        !t.killed,
        "nodeimg still ran after {}s (blocked on an input?); killed\n{}",
        DEADLINE.as_secs(),
        t.run
    );
    t.run
}

fn mkfifo(path: &Path) -> bool {
    let r = run(Command::new("mkfifo").arg(path));
    if r.code != 0 {
        return !skip_or_fail("mkfifo", &format!("cannot make a FIFO: {r}"));
    }
    true
}

/// A refused build: exit 2, `recipe.toml:LINE` and every word of `words` on
/// stderr, no output, and the outside bytes nowhere on stdout or stderr.
#[track_caller]
fn assert_refused(f: &Folder, r: &Run, file_line: &str, words: &[&str]) {
    assert_eq!(r.code, 2, "expected a recipe error (exit 2)\n{r}");
    assert!(
        r.stderr.contains(file_line),
        "the error must name {file_line}\n{r}"
    );
    let lower = r.stderr.to_lowercase();
    for w in words {
        assert!(
            lower.contains(&w.to_lowercase()),
            "the error must say {w:?}\n{r}"
        );
    }
    let secret = String::from_utf8_lossy(SECRET);
    assert!(
        !r.stderr.contains(secret.trim()) && !r.stdout.contains(secret.trim()),
        "the outside file's bytes were shown\n{r}"
    );
    f.assert_no_output(r);
}

/// The image's entries by path.
fn image(f: &Folder) -> std::collections::BTreeMap<String, TarEntry> {
    by_path(&read_tar(&f.out()))
}

#[test]
fn clean_recipe_builds() {
    let f = Folder::new("clean");
    let r = f.build(&[]);
    assert_eq!(r.code, 0, "{r}");
    let img = image(&f);
    assert_eq!(img["/etc/app.conf"].data, APP);
    assert_eq!(img["/etc/frag.conf"].data, b"frag\n");
    assert!(
        !img["/etc/apt/keyrings/docker.gpg"].data.is_empty(),
        "the key is in the image"
    );
}

#[test]
fn source_symlink_out_of_the_folder_is_refused() {
    let f = Folder::new("source-out");
    symlink("../../secret.txt", f.dir().join("files/link.conf")).expect("symlink");
    f.recipe("frag.toml", "files/link.conf", "keys/docker.asc");
    f.assert_build_refused(
        SOURCE_LINE,
        &[
            "file[0].source",
            "files/link.conf",
            "outside",
            "symbolic link",
        ],
    );

    // An absolute link to the outside file, and a folder link out of the
    // folder, the same.
    let abs = f.root().join("secret.txt");
    symlink(&abs, f.dir().join("files/abs.conf")).expect("symlink");
    f.recipe("frag.toml", "files/abs.conf", "keys/docker.asc");
    f.assert_build_refused(SOURCE_LINE, &["file[0].source", "outside", "symbolic link"]);
    symlink("..", f.dir().join("up")).expect("symlink");
    f.recipe("frag.toml", "up/secret.txt", "keys/docker.asc");
    f.assert_build_refused(SOURCE_LINE, &["file[0].source", "outside", "symbolic link"]);
}

#[test]
fn source_symlink_inside_the_folder_is_followed() {
    let f = Folder::new("source-in");
    // A file link (relative), a folder link, and a link chain through both.
    symlink("app.conf", f.dir().join("files/alias.conf")).expect("symlink");
    symlink("files", f.dir().join("conf")).expect("symlink");
    symlink("../conf/alias.conf", f.dir().join("keys/chain.conf")).expect("symlink");
    for source in ["files/alias.conf", "conf/app.conf", "keys/chain.conf"] {
        f.recipe("frag.toml", source, "keys/docker.asc");
        let r = f.build(&[]);
        assert_eq!(r.code, 0, "{source}: {r}");
        assert_eq!(image(&f)["/etc/app.conf"].data, APP, "{source}");
        fs::remove_file(f.out()).expect("remove the image");
    }
}

#[test]
fn source_fifo_is_refused_without_blocking() {
    let f = Folder::new("source-fifo");
    if !mkfifo(&f.dir().join("files/pipe.conf")) {
        return;
    }
    f.recipe("frag.toml", "files/pipe.conf", "keys/docker.asc");
    f.assert_build_refused(
        SOURCE_LINE,
        &["file[0].source", "files/pipe.conf", "not a regular file"],
    );

    // A folder is not a regular file either.
    f.recipe("frag.toml", "files", "keys/docker.asc");
    f.assert_build_refused(SOURCE_LINE, &["file[0].source", "not a regular file"]);
}

#[test]
fn include_symlink_out_of_the_folder_is_refused() {
    let f = Folder::new("include-out");
    symlink("../outside.toml", f.dir().join("frag-link.toml")).expect("symlink");
    f.recipe("frag-link.toml", "files/app.conf", "keys/docker.asc");
    f.assert_build_refused(
        INCLUDE_LINE,
        &["include[0]", "frag-link.toml", "symbolic link"],
    );

    // A link to a fragment inside the folder is followed.
    symlink("frag.toml", f.dir().join("frag-alias.toml")).expect("symlink");
    f.recipe("frag-alias.toml", "files/app.conf", "keys/docker.asc");
    let r = f.build(&[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(image(&f)["/etc/frag.conf"].data, b"frag\n");
}

#[test]
fn include_fifo_is_refused_without_blocking() {
    let f = Folder::new("include-fifo");
    if !mkfifo(&f.dir().join("pipe.toml")) {
        return;
    }
    f.recipe("pipe.toml", "files/app.conf", "keys/docker.asc");
    f.assert_build_refused(
        INCLUDE_LINE,
        &["include[0]", "pipe.toml", "not a regular file"],
    );
}

#[test]
fn key_symlink_out_of_the_folder_is_refused() {
    let f = Folder::new("key-out");
    fs::copy(
        workspace_root().join("recipes/keys/docker.asc"),
        f.root().join("outside.asc"),
    )
    .expect("copy the key");
    symlink("../../outside.asc", f.dir().join("keys/link.asc")).expect("symlink");
    f.recipe("frag.toml", "files/app.conf", "keys/link.asc");
    f.assert_build_refused(
        KEY_LINE,
        &[
            "apt-source[0].key",
            "keys/link.asc",
            "outside",
            "symbolic link",
        ],
    );
}

#[test]
fn key_fifo_is_refused_without_blocking() {
    let f = Folder::new("key-fifo");
    if !mkfifo(&f.dir().join("keys/pipe.asc")) {
        return;
    }
    f.recipe("frag.toml", "files/app.conf", "keys/pipe.asc");
    f.assert_build_refused(
        KEY_LINE,
        &["apt-source[0].key", "keys/pipe.asc", "not a regular file"],
    );
}

#[test]
fn mirrors_file_fifo_is_refused_without_blocking() {
    let f = Folder::new("mirrors-fifo");
    let pipe = f.root().join("mirrors.toml");
    if !mkfifo(&pipe) {
        return;
    }
    let r = f.build(&["--mirrors", "mirrors.toml"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("mirrors.toml"), "{r}");
    assert!(r.stderr.contains("not a regular file"), "{r}");
    f.assert_no_output(&r);

    // Negative control: a mirrors file that is a file.
    fs::remove_file(&pipe).expect("remove the FIFO");
    fs::write(
        &pipe,
        "[[mirror]]\nfrom = \"http://a.example/x\"\nto = \"http://127.0.0.1:1/x\"\n",
    )
    .expect("write mirrors");
    let r = f.build(&["--mirrors", "mirrors.toml"]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn mirror_key_fifo_is_refused_without_blocking() {
    let Some(base) = fixture_base() else {
        return;
    };
    let f = Folder::new("mirror-key-fifo");
    let pipe = f.root().join("mirror.asc");
    if !mkfifo(&pipe) {
        return;
    }
    // A layer that installs packages: the build reads the mirror keys
    // before it fetches anything, so the repositories need not answer.
    let mut text = recipe_text("frag.toml", "files/app.conf", "keys/docker.asc");
    text.push_str("packages = [\"hello\"]\n");
    fs::write(f.dir().join("recipe.toml"), text).expect("write recipe");
    let mut cmd = nodeimg(f.root());
    cmd.arg("build")
        .arg("r/recipe.toml")
        .arg("-o")
        .arg(f.out())
        .args(["--format", "rootfs", "--no-lock", "--base"])
        .arg(fixture_base_ref(&base))
        .arg("--cache-dir")
        .arg(f.root().join("cache"))
        .arg("--mirror")
        .arg("https://download.docker.com/linux/debian=http://127.0.0.1:9/d,key=mirror.asc");
    let r = run_with_deadline(&mut cmd, f.root());
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("mirror.asc"), "{r}");
    assert!(r.stderr.contains("not a regular file"), "{r}");
    f.assert_no_output(&r);
}

#[test]
fn lock_file_fifo_is_refused_without_blocking() {
    let f = Folder::new("lock-fifo");
    let lock = f.dir().join("recipe.toml.lock");
    if !mkfifo(&lock) {
        return;
    }
    let r = f.build(&[]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("recipe.toml.lock"), "{r}");
    assert!(r.stderr.contains("not a regular file"), "{r}");
    f.assert_no_output(&r);
}
