//! `nodeimg completions SHELL` and `nodeimg man`: shell completion scripts
//! and manual pages, generated from the one command-line definition
//! (`cli.rs`), so they name every command and flag the binary has.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use crate::cli::Cli;

/// `nodeimg completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

/// The shells completion scripts are made for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ShellArg {
    /// bash (installed as share/bash-completion/completions/nodeimg).
    Bash,
    /// zsh (installed as share/zsh/site-functions/_nodeimg).
    Zsh,
    /// fish (installed as share/fish/vendor_completions.d/nodeimg.fish).
    Fish,
}

impl From<ShellArg> for clap_complete::Shell {
    fn from(s: ShellArg) -> Self {
        match s {
            ShellArg::Bash => clap_complete::Shell::Bash,
            ShellArg::Zsh => clap_complete::Shell::Zsh,
            ShellArg::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `nodeimg man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page into DIR (nodeimg.1, and nodeimg-COMMAND.1 for each
    /// command, nodeimg-cache-prune.1 for `cache prune`), each atomically,
    /// instead of printing nodeimg.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// The completion script for `a.shell`, on stdout.
pub fn run_completions(a: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(a.shell),
        &mut cmd,
        "nodeimg",
        &mut script,
    );
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// Every manual page: its file name and its roff text; nodeimg.1 first,
/// then one per command (depth first, in the order `--help` lists them).
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    add_pages(&cmd, &mut out)?;
    Ok(out)
}

fn add_pages(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut text = Vec::new();
    man.render(&mut text)
        .with_context(|| format!("rendering the manual page of {}", cmd.get_name()))?;
    out.push((man.get_filename(), text));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub, out)?;
    }
    Ok(())
}

/// `nodeimg man`: nodeimg.1 on stdout, or every page into `--out-dir`.
pub fn run_man(a: &ManArgs) -> anyhow::Result<ExitCode> {
    let pages = man_pages()?;
    match &a.out_dir {
        None => {
            let top = pages.first().map(|(_, t)| t.as_slice()).unwrap_or_default();
            std::io::stdout().lock().write_all(top)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in &pages {
                write_page(dir, name, text)?;
            }
            let mut out = std::io::stdout().lock();
            for (name, _) in &pages {
                writeln!(out, "{}", dir.join(name).display())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `text` as `dir/name`, mode 0644, atomically (a temporary file
/// beside it, renamed).
fn write_page(dir: &Path, name: &str, text: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(".nodeimg-man-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text)
        .and_then(|()| tmp.as_file().sync_all())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every command (and subcommand) of the definition, as `a b`.
    fn commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for s in cmd.get_subcommands() {
            let name = format!("{prefix}{}", s.get_name());
            out.push(name.clone());
            commands(s, &format!("{name} "), out);
        }
    }

    #[test]
    fn one_page_per_command_and_the_first_names_them_all() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = vec!["nodeimg.1".to_string()];
        let mut all = Vec::new();
        commands(&Cli::command(), "", &mut all);
        want.extend(
            all.iter()
                .map(|c| format!("nodeimg-{}.1", c.replace(' ', "-"))),
        );
        assert_eq!(names, want);
        for c in ["build", "check", "completions", "man", "cache prune"] {
            assert!(all.iter().any(|a| a == c), "{c} in {all:?}");
        }
        let top = String::from_utf8(pages[0].1.clone()).unwrap();
        assert!(top.starts_with(".ie \\n(.g .ds Aq \\(aq"), "{top}");
        assert!(top.contains(".TH nodeimg 1"), "{top}");
        for c in all.iter().filter(|c| !c.contains(' ')) {
            assert!(top.contains(&format!("nodeimg\\-{c}(1)")), "{c}: {top}");
        }
        // Reproducible: no date.
        assert_eq!(man_pages().unwrap(), pages);
    }

    #[test]
    fn pages_are_written_atomically_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("man1");
        run_man(&ManArgs {
            out_dir: Some(out.clone()),
        })
        .unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert!(files.contains(&"nodeimg.1".to_string()), "{files:?}");
        assert!(
            files.iter().all(|f| f.ends_with(".1")),
            "no temporary file: {files:?}"
        );
        let mode = std::fs::metadata(out.join("nodeimg-build.1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
