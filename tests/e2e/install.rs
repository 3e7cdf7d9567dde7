//! `make install-files` (what `make install` runs after the release build)
//! into a `DESTDIR` with a `PREFIX`: the binary, one manual page per command
//! and the bash, zsh and fish completions, nothing elsewhere. The installed
//! bash completion, loaded in bash, completes `nodeimg b` to `build` (and
//! nothing for a word no command starts with); fish completes the same; the
//! zsh script defines its function; every page renders with groff without a
//! warning (a broken page does not), and `nodeimg.1` names every command
//! (a page that lacks one is caught).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use nodeimg_e2e::{files_under, nodeimg, nodeimg_bin, require, run, temp_dir, workspace_root};

/// The commands `nodeimg --help` lists (`help` aside).
fn commands(dir: &Path) -> Vec<String> {
    let h = run(nodeimg(dir).arg("--help")).ok();
    let mut out = Vec::new();
    let mut inside = false;
    for l in h.stdout.lines() {
        if l.starts_with("Commands:") {
            inside = true;
            continue;
        }
        if inside {
            if !l.starts_with("  ") {
                break;
            }
            // A command's line; its description goes on, further indented.
            match l.split_whitespace().next() {
                Some(c) if !l.starts_with("   ") && c != "help" => out.push(c.to_string()),
                _ => {}
            }
        }
    }
    out
}

/// Installs into `dest` with `prefix`; the installed files, relative to `dest`.
fn install(dest: &Path, prefix: &str) -> Vec<String> {
    let r = run(Command::new("make")
        .current_dir(workspace_root())
        .args(["--no-print-directory", "-s", "install-files"])
        .arg(format!("INSTALL_BIN={}", nodeimg_bin().display()))
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("PREFIX={prefix}")));
    assert_eq!(r.code, 0, "{r}");
    files_under(dest, "")
}

/// What the bash completion offers for the command line `words`.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cur = words.last().copied().unwrap_or("");
    let prev = words
        .len()
        .checked_sub(2)
        .and_then(|i| words.get(i))
        .copied()
        .unwrap_or("");
    let line = words.join(" ");
    let shell = format!(
        "source '{}'\ncomplete -p nodeimg >/dev/null || exit 3\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n_nodeimg nodeimg '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len()
    );
    let r = run(Command::new("bash").args(["--norc", "--noprofile", "-c", &shell])).ok();
    // printf prints an empty line for no words at all.
    r.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// groff's warnings for the page `page` (all of them, `-ww`).
fn groff_warnings(page: &Path) -> String {
    let r = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page));
    assert_eq!(r.code, 0, "{r}");
    r.stderr
}

/// The commands of `names` the rendered page `text` does not name.
fn missing_from(text: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|c| !text.contains(&format!("nodeimg-{c}(1)")))
        .cloned()
        .collect()
}

#[test]
fn make_install_puts_binary_pages_and_completions_under_destdir_and_prefix() {
    if !require("make", "make") || !require("install", "coreutils") {
        return;
    }
    let t = temp_dir("install");
    let dest = t.path().join("dest");
    let files = install(&dest, "/opt/nodeimg");
    let cmds = commands(t.path());
    assert!(cmds.len() >= 9, "{cmds:?}");
    for c in ["build", "check", "completions", "man"] {
        assert!(cmds.iter().any(|x| x == c), "{c} in {cmds:?}");
    }
    let mut want = vec![
        "/opt/nodeimg/bin/nodeimg".to_string(),
        "/opt/nodeimg/share/bash-completion/completions/nodeimg".to_string(),
        "/opt/nodeimg/share/fish/vendor_completions.d/nodeimg.fish".to_string(),
        "/opt/nodeimg/share/man/man1/nodeimg.1".to_string(),
        "/opt/nodeimg/share/man/man1/nodeimg-cache-prune.1".to_string(),
        "/opt/nodeimg/share/zsh/site-functions/_nodeimg".to_string(),
    ];
    want.extend(
        cmds.iter()
            .map(|c| format!("/opt/nodeimg/share/man/man1/nodeimg-{c}.1")),
    );
    want.sort();
    assert_eq!(files, want, "exactly these files, all under DESTDIR/PREFIX");
    let at = |rel: &str| dest.join(rel.trim_start_matches('/'));
    let mode = |rel: &str| fs::metadata(at(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("/opt/nodeimg/bin/nodeimg"), 0o755);
    assert_eq!(mode("/opt/nodeimg/share/man/man1/nodeimg.1"), 0o644);
    let v = run(Command::new(at("/opt/nodeimg/bin/nodeimg")).arg("--version")).ok();
    assert!(v.stdout.starts_with("nodeimg "), "{v}");
}

#[test]
fn the_bash_completion_completes_commands() {
    if !require("bash", "bash") || !require("make", "make") {
        return;
    }
    let t = temp_dir("install-bash");
    let dest = t.path().join("dest");
    install(&dest, "/usr");
    let script = dest.join("usr/share/bash-completion/completions/nodeimg");
    assert_eq!(bash_complete(&script, &["nodeimg", "b"]), ["build"]);
    assert_eq!(
        bash_complete(&script, &["nodeimg", "c"]),
        ["check", "cache", "completions"]
    );
    assert_eq!(
        bash_complete(&script, &["nodeimg", "completions", ""]),
        ["-h", "-V", "--help", "--version", "bash", "zsh", "fish"]
    );
    assert!(
        bash_complete(&script, &["nodeimg", "build", "--for"]).contains(&"--format".to_string())
    );
    // Negative control: no command starts with `zz`.
    assert!(bash_complete(&script, &["nodeimg", "zz"]).is_empty());
}

#[test]
fn the_zsh_and_fish_completions_load() {
    if !require("zsh", "zsh") || !require("fish", "fish") || !require("make", "make") {
        return;
    }
    let t = temp_dir("install-zsh-fish");
    let dest = t.path().join("dest");
    install(&dest, "/usr");
    let zsh = dest.join("usr/share/zsh/site-functions/_nodeimg");
    let text = fs::read_to_string(&zsh).unwrap();
    assert!(text.starts_with("#compdef nodeimg"), "{text}");
    let r = run(Command::new("zsh").arg("-n").arg(&zsh));
    assert_eq!(r.code, 0, "{r}");
    // compinit without a dump file (-D): with -d PATH it replaces PATH by
    // a file of its own.
    let r = run(Command::new("zsh")
        .args(["-f", "-c"])
        .arg(format!(
            "autoload -U compinit && compinit -u -D && source {} && whence -w _nodeimg",
            zsh.display()
        ))
        .env("HOME", t.path()));
    assert!(
        std::fs::metadata("/dev/null").is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_char_device()
        }),
        "/dev/null is still the null device"
    );
    assert_eq!(r.stdout.trim(), "_nodeimg: function", "{r}");
    let fish = dest.join("usr/share/fish/vendor_completions.d/nodeimg.fish");
    let complete = |line: &str| {
        let r = run(Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", fish.display())))
        .ok();
        r.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("nodeimg b"), ["build"]);
    assert!(complete("nodeimg zz").is_empty());
}

#[test]
fn the_man_pages_render_and_name_every_command() {
    if !require("groff", "groff-base") || !require("man", "man-db") || !require("make", "make") {
        return;
    }
    let t = temp_dir("install-man");
    let dest = t.path().join("dest");
    install(&dest, "/usr/local");
    let man1 = dest.join("usr/local/share/man/man1");
    let cmds = commands(t.path());
    for e in fs::read_dir(&man1).unwrap() {
        let page = e.unwrap().path();
        let w = groff_warnings(&page);
        assert!(w.is_empty(), "{}: {w}", page.display());
    }
    // Rendered by man, the top page names every command.
    let r = run(Command::new("man")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .arg("-l")
        .arg(man1.join("nodeimg.1")))
    .ok();
    assert!(r.stdout.contains("SUBCOMMANDS"), "{r}");
    assert_eq!(missing_from(&r.stdout, &cmds), Vec::<String>::new(), "{r}");
    let build = run(Command::new("man")
        .env("MANPAGER", "cat")
        .arg("-l")
        .arg(man1.join("nodeimg-build.1")))
    .ok();
    assert!(
        build.stdout.contains("--metadata-file") && build.stdout.contains("--offline"),
        "{build}"
    );
    // Negative controls: a page that lacks the commands is caught, and so
    // is a page groff warns about.
    assert!(!missing_from(&build.stdout, &cmds).is_empty());
    let broken = t.path().join("broken.1");
    fs::write(&broken, ".TH broken 1\n.SH NAME\n.XX not a macro\n").unwrap();
    assert!(!groff_warnings(&broken).is_empty());
}
