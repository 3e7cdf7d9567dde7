//! Reading maintainer scripts for the effects that can be applied without
//! running them: system users and groups (`adduser --system`, `addgroup
//! --system`, `groupadd -r`, `useradd -r`), `update-alternatives --install`
//! and `deb-systemd-helper enable`.
//!
//! The scripts are never executed. They are split into simple commands with
//! a small shell tokenizer (quotes, backslashes, line continuations,
//! comments, `;`, `&&`, `||`, `|`, redirections); a command is recognised by
//! its first word after shell keywords (`if`, `then`, `!`, ...). Only
//! literal calls are taken: an argument holding `$`, a backquote or a glob
//! makes the call "not understood", and it is reported as such.

use std::fmt;

/// A group to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Fixed id, when the script gives one.
    pub gid: Option<u32>,
}

/// The primary group of a user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryGroup {
    /// A group of the user's own name, created with it.
    Own,
    /// An existing group, by name.
    Named(String),
    /// An existing group, by id.
    Id(u32),
}

/// A system user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// User name.
    pub name: String,
    /// Fixed id, when the script gives one.
    pub uid: Option<u32>,
    /// Primary group.
    pub group: PrimaryGroup,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// GECOS field.
    pub gecos: String,
    /// Whether the home directory is created (owned by the user, 0755).
    pub create_home: bool,
}

/// One `update-alternatives --install` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternativeSpec {
    /// The generic name, e.g. `/usr/bin/editor`.
    pub link: String,
    /// The alternative's name, e.g. `editor`.
    pub name: String,
    /// The path this package offers.
    pub path: String,
    /// Its priority.
    pub priority: i64,
    /// `--slave link name path` triples.
    pub slaves: Vec<(String, String, String)>,
}

/// An effect read from a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create a system group.
    Group(GroupSpec),
    /// Create a system user.
    User(UserSpec),
    /// Register an alternative.
    Alternative(AlternativeSpec),
    /// Enable a systemd unit (left to the recipe's systemd item).
    SystemdEnable(String),
}

/// An effect with the line of the script that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The line (from 1) where the command starts.
    pub line: usize,
    /// What the command does.
    pub effect: Effect,
}

/// What a script scan found: the recognised effects, and the calls of the
/// recognised commands that could not be taken literally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Effects, in script order, with their lines.
    pub effects: Vec<Located>,
    /// Calls of user, group, alternatives or unit commands that were not
    /// understood (variables, unknown options), as written.
    pub not_understood: Vec<String>,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Group(g) => write!(f, "system group {}", g.name),
            Effect::User(u) => write!(f, "system user {}", u.name),
            Effect::Alternative(a) => write!(f, "alternative {} -> {}", a.name, a.path),
            Effect::SystemdEnable(u) => write!(f, "enable {u}"),
        }
    }
}

/// Scans a maintainer script.
pub fn scan(script: &str) -> Scan {
    let mut out = Scan::default();
    for (line, words) in commands(script) {
        let Some(first) = words.first() else { continue };
        let cmd = first.rsplit('/').next().unwrap_or(first);
        let args = &words[1..];
        let known = matches!(
            cmd,
            "adduser"
                | "addgroup"
                | "groupadd"
                | "useradd"
                | "update-alternatives"
                | "deb-systemd-helper"
        );
        if !known {
            continue;
        }
        let literal = words.iter().all(|w| !w.contains(['$', '`', '*', '?']));
        let parsed = if literal {
            match cmd {
                "adduser" => adduser(args),
                "addgroup" => addgroup(args),
                "groupadd" => groupadd(args),
                "useradd" => useradd(args),
                "update-alternatives" => alternatives(args),
                _ => systemd_helper(args),
            }
        } else {
            Parsed::NotUnderstood
        };
        match parsed {
            Parsed::Effects(e) => out
                .effects
                .extend(e.into_iter().map(|effect| Located { line, effect })),
            Parsed::Ignore => {}
            Parsed::NotUnderstood => out.not_understood.push(words.join(" ")),
        }
    }
    out
}

enum Parsed {
    Effects(Vec<Effect>),
    /// A call with no effect on the image (queries, `--remove`, ...).
    Ignore,
    NotUnderstood,
}

fn id(v: &str) -> Option<u32> {
    v.parse().ok()
}

/// Flags without value, options with a value, and positional words.
type Opts<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

/// Splits options: flags without value, options with a value, and the
/// remaining positional words. `None` when an option is unknown.
fn options<'a>(args: &'a [String], flags: &[&str], valued: &[&str]) -> Option<Opts<'a>> {
    let mut f = Vec::new();
    let mut v = Vec::new();
    let mut pos = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            pos.extend(args[i + 1..].iter().map(String::as_str));
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            if let Some((name, val)) = a.split_once('=').filter(|_| a.starts_with("--")) {
                if !valued.contains(&name) {
                    return None;
                }
                v.push((name, val));
            } else if flags.contains(&a) {
                f.push(a);
            } else if valued.contains(&a) {
                i += 1;
                v.push((a, args.get(i)?.as_str()));
            } else {
                return None;
            }
        } else {
            pos.push(a);
        }
        i += 1;
    }
    Some((f, v, pos))
}

fn value<'a>(v: &[(&str, &'a str)], names: &[&str]) -> Option<&'a str> {
    v.iter()
        .rev()
        .find(|(n, _)| names.contains(n))
        .map(|(_, x)| *x)
}

const QUIET: &[&str] = &[
    "--quiet",
    "-q",
    "--force-badname",
    "--allow-badname",
    "--debug",
];

fn adduser(args: &[String]) -> Parsed {
    let mut flags = vec![
        "--system",
        "--group",
        "--no-create-home",
        "--disabled-password",
        "--disabled-login",
        "--force-badname",
        "--allow-badname",
    ];
    flags.extend(QUIET);
    let valued = [
        "--home",
        "--shell",
        "--gecos",
        "--comment",
        "--uid",
        "--gid",
        "--ingroup",
        "--firstuid",
        "--lastuid",
        "--firstgid",
        "--lastgid",
    ];
    let Some((f, v, pos)) = options(args, &flags, &valued) else {
        return Parsed::NotUnderstood;
    };
    if !f.contains(&"--system") {
        return Parsed::NotUnderstood;
    }
    let [name] = pos[..] else {
        return Parsed::NotUnderstood;
    };
    let group = if f.contains(&"--group") {
        if let Some(g) = value(&v, &["--gid"]) {
            // `--system --group --gid N`: the user's own group with that id.
            let Some(gid) = id(g) else {
                return Parsed::NotUnderstood;
            };
            return Parsed::Effects(vec![
                Effect::Group(GroupSpec {
                    name: name.to_string(),
                    gid: Some(gid),
                }),
                Effect::User(user_adduser(name, &f, &v, PrimaryGroup::Named(name.into()))),
            ]);
        }
        PrimaryGroup::Own
    } else if let Some(g) = value(&v, &["--ingroup"]) {
        PrimaryGroup::Named(g.to_string())
    } else if let Some(g) = value(&v, &["--gid"]) {
        match id(g) {
            Some(n) => PrimaryGroup::Id(n),
            None => return Parsed::NotUnderstood,
        }
    } else {
        PrimaryGroup::Named("nogroup".into())
    };
    if value(&v, &["--uid"]).is_some_and(|u| id(u).is_none()) {
        return Parsed::NotUnderstood;
    }
    Parsed::Effects(vec![Effect::User(user_adduser(name, &f, &v, group))])
}

fn user_adduser(name: &str, f: &[&str], v: &[(&str, &str)], group: PrimaryGroup) -> UserSpec {
    let home = value(v, &["--home"]).unwrap_or("/nonexistent").to_string();
    UserSpec {
        name: name.to_string(),
        uid: value(v, &["--uid"]).and_then(id),
        group,
        create_home: !f.contains(&"--no-create-home") && home != "/nonexistent",
        home,
        shell: value(v, &["--shell"])
            .unwrap_or("/usr/sbin/nologin")
            .to_string(),
        gecos: value(v, &["--gecos", "--comment"])
            .unwrap_or_default()
            .to_string(),
    }
}

fn addgroup(args: &[String]) -> Parsed {
    let mut flags = vec!["--system"];
    flags.extend(QUIET);
    let Some((f, v, pos)) = options(args, &flags, &["--gid"]) else {
        return Parsed::NotUnderstood;
    };
    let [name] = pos[..] else {
        return Parsed::NotUnderstood;
    };
    if !f.contains(&"--system") {
        return Parsed::NotUnderstood;
    }
    let gid = match value(&v, &["--gid"]) {
        None => None,
        Some(g) => match id(g) {
            Some(n) => Some(n),
            None => return Parsed::NotUnderstood,
        },
    };
    Parsed::Effects(vec![Effect::Group(GroupSpec {
        name: name.to_string(),
        gid,
    })])
}

fn groupadd(args: &[String]) -> Parsed {
    let flags = ["-r", "--system", "-f", "--force", "-o", "--non-unique"];
    let valued = ["-g", "--gid", "-K", "--key"];
    let Some((f, v, pos)) = options(args, &flags, &valued) else {
        return Parsed::NotUnderstood;
    };
    let [name] = pos[..] else {
        return Parsed::NotUnderstood;
    };
    if !f.contains(&"-r") && !f.contains(&"--system") {
        return Parsed::NotUnderstood;
    }
    let gid = match value(&v, &["-g", "--gid"]) {
        None => None,
        Some(g) => match id(g) {
            Some(n) => Some(n),
            None => return Parsed::NotUnderstood,
        },
    };
    Parsed::Effects(vec![Effect::Group(GroupSpec {
        name: name.to_string(),
        gid,
    })])
}

fn useradd(args: &[String]) -> Parsed {
    let flags = [
        "-r",
        "--system",
        "-M",
        "--no-create-home",
        "-m",
        "--create-home",
        "-U",
        "--user-group",
        "-N",
        "--no-user-group",
        "-l",
        "--no-log-init",
    ];
    let valued = [
        "-g",
        "--gid",
        "-G",
        "--groups",
        "-d",
        "--home-dir",
        "--home",
        "-s",
        "--shell",
        "-c",
        "--comment",
        "-u",
        "--uid",
        "-K",
        "--key",
    ];
    let Some((f, v, pos)) = options(args, &flags, &valued) else {
        return Parsed::NotUnderstood;
    };
    let [name] = pos[..] else {
        return Parsed::NotUnderstood;
    };
    if !f.contains(&"-r") && !f.contains(&"--system") || value(&v, &["-G", "--groups"]).is_some() {
        return Parsed::NotUnderstood;
    }
    let group = match value(&v, &["-g", "--gid"]) {
        Some(g) => match id(g) {
            Some(n) => PrimaryGroup::Id(n),
            None => PrimaryGroup::Named(g.to_string()),
        },
        None if f.contains(&"-N") || f.contains(&"--no-user-group") => {
            PrimaryGroup::Named("users".into())
        }
        None => PrimaryGroup::Own,
    };
    let uid = match value(&v, &["-u", "--uid"]) {
        None => None,
        Some(u) => match id(u) {
            Some(n) => Some(n),
            None => return Parsed::NotUnderstood,
        },
    };
    Parsed::Effects(vec![Effect::User(UserSpec {
        name: name.to_string(),
        uid,
        group,
        home: value(&v, &["-d", "--home-dir", "--home"])
            .map_or_else(|| format!("/home/{name}"), str::to_string),
        shell: value(&v, &["-s", "--shell"])
            .unwrap_or("/bin/sh")
            .to_string(),
        gecos: value(&v, &["-c", "--comment"])
            .unwrap_or_default()
            .to_string(),
        create_home: f.contains(&"-m") || f.contains(&"--create-home"),
    })])
}

fn alternatives(args: &[String]) -> Parsed {
    let mut i = 0;
    let mut install = None;
    let mut slaves = Vec::new();
    while i < args.len() {
        match args[i].as_str() {
            "--quiet" | "--verbose" | "--debug" | "--force" => i += 1,
            "--altdir" | "--admindir" | "--root" | "--log" => return Parsed::NotUnderstood,
            "--install" => {
                let Some([link, name, path, prio]) = args.get(i + 1..i + 5) else {
                    return Parsed::NotUnderstood;
                };
                let Ok(priority) = prio.parse::<i64>() else {
                    return Parsed::NotUnderstood;
                };
                install = Some((link.clone(), name.clone(), path.clone(), priority));
                i += 5;
            }
            "--slave" => {
                let Some([link, name, path]) = args.get(i + 1..i + 4) else {
                    return Parsed::NotUnderstood;
                };
                slaves.push((link.clone(), name.clone(), path.clone()));
                i += 4;
            }
            // Queries and removals change nothing on a fresh install.
            "--remove" | "--remove-all" | "--query" | "--display" | "--list"
            | "--get-selections" => return Parsed::Ignore,
            _ => return Parsed::NotUnderstood,
        }
    }
    match install {
        Some((link, name, path, priority)) => {
            Parsed::Effects(vec![Effect::Alternative(AlternativeSpec {
                link,
                name,
                path,
                priority,
                slaves,
            })])
        }
        None => Parsed::NotUnderstood,
    }
}

fn systemd_helper(args: &[String]) -> Parsed {
    let rest: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    match rest.split_first() {
        Some((verb, units)) if verb.as_str() == "enable" && !units.is_empty() => Parsed::Effects(
            units
                .iter()
                .map(|u| Effect::SystemdEnable(u.to_string()))
                .collect(),
        ),
        Some(_) => Parsed::Ignore,
        None => Parsed::NotUnderstood,
    }
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "(", ")",
    "exec", "command", "time",
];

/// The characters of a script, counting lines.
struct Chars<'a> {
    inner: std::iter::Peekable<std::str::Chars<'a>>,
    /// The line (from 1) of the next character.
    line: usize,
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let c = self.inner.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
}

impl Chars<'_> {
    fn peek(&mut self) -> Option<&char> {
        self.inner.peek()
    }
}

/// A word being read, with the line it starts on.
#[derive(Default)]
struct Word {
    text: String,
    line: usize,
    started: bool,
}

impl Word {
    /// Marks the word started (at `line`) if it is not yet.
    fn start(&mut self, line: usize) {
        if !self.started {
            self.started = true;
            self.line = line;
        }
    }

    /// Adds the rest of a single-quoted string, up to its closing quote.
    fn single_quoted(&mut self, chars: &mut Chars) {
        for n in chars.by_ref() {
            if n == '\'' {
                break;
            }
            self.text.push(n);
        }
    }

    /// Adds the rest of a double-quoted string, up to its closing quote:
    /// a backslash escapes `$`, `` ` ``, `"`, `\\` and a newline only.
    fn double_quoted(&mut self, chars: &mut Chars) {
        while let Some(n) = chars.next() {
            match n {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\n') | None => {}
                    Some(m) if "$`\"\\".contains(m) => self.text.push(m),
                    Some(m) => {
                        self.text.push('\\');
                        self.text.push(m);
                    }
                },
                m => self.text.push(m),
            }
        }
    }
}

/// Ends the simple command of `words` (if any word is left after the
/// keywords and assignments) and adds it to `out` with its first line.
fn end_command(words: &mut Vec<(String, usize)>, out: &mut Vec<(usize, Vec<String>)>) {
    let mut w = std::mem::take(words);
    let start = w
        .iter()
        .position(|(x, _)| !KEYWORDS.contains(&x.as_str()) && !is_assignment(x))
        .unwrap_or(w.len());
    w.drain(..start);
    if let Some((_, line)) = w.first() {
        let line = *line;
        out.push((line, w.into_iter().map(|(x, _)| x).collect()));
    }
}

/// The simple commands of a script with the line each starts on: words
/// after shell keywords and variable assignments, redirections removed.
fn commands(script: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut words: Vec<(String, usize)> = Vec::new();
    let mut word = Word::default();
    let mut skip_next_word = false;
    let mut chars = Chars {
        inner: script.chars().peekable(),
        line: 1,
    };
    let end_word = |word: &mut Word, words: &mut Vec<(String, usize)>, skip: &mut bool| {
        if word.started {
            if *skip {
                *skip = false;
            } else {
                words.push((std::mem::take(&mut word.text), word.line));
            }
            *word = Word::default();
        }
    };
    loop {
        let line = chars.line;
        let Some(c) = chars.next() else { break };
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    word.start(line);
                    word.text.push(n);
                }
            },
            '\'' => {
                word.start(line);
                word.single_quoted(&mut chars);
            }
            '"' => {
                word.start(line);
                word.double_quoted(&mut chars);
            }
            '#' if !word.started => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_command(&mut words, &mut out);
            }
            '<' | '>' => {
                // A file descriptor number written before the operator.
                if word.started && word.text.chars().all(|d| d.is_ascii_digit()) {
                    word = Word::default();
                }
                end_word(&mut word, &mut words, &mut skip_next_word);
                if chars.peek() == Some(&'&') || chars.peek() == Some(&c) {
                    chars.next();
                }
                skip_next_word = true;
            }
            ';' | '&' | '|' | '\n' | '(' | ')' => {
                end_word(&mut word, &mut words, &mut skip_next_word);
                skip_next_word = false;
                end_command(&mut words, &mut out);
            }
            c if c.is_whitespace() => {
                end_word(&mut word, &mut words, &mut skip_next_word);
            }
            c => {
                word.start(line);
                word.text.push(c);
            }
        }
    }
    end_word(&mut word, &mut words, &mut skip_next_word);
    end_command(&mut words, &mut out);
    out
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Vec<String>> {
        commands(s).into_iter().map(|(_, w)| w).collect()
    }

    fn effects(s: &Scan) -> Vec<Effect> {
        s.effects.iter().map(|l| l.effect.clone()).collect()
    }

    #[test]
    fn effects_carry_the_line_their_command_starts_on() {
        let s = scan(
            "#!/bin/sh\nset -e\n# a comment\nif true; then\n  echo 'two\nlines'\n  addgroup --system a\nfi\nadduser --system \\\n  --group b\nx=1 useradd -r \"c\nd\" ; groupadd -r e\n",
        );
        let lines: Vec<(usize, String)> = s
            .effects
            .iter()
            .map(|l| (l.line, l.effect.to_string()))
            .collect();
        assert_eq!(
            lines,
            [
                (7, "system group a".to_string()),
                (9, "system user b".to_string()),
                (11, "system user c\nd".to_string()),
                (12, "system group e".to_string()),
            ]
        );
        let c = commands("a\n\n  b 'x\ny' c\nd");
        let starts: Vec<usize> = c.iter().map(|(l, _)| *l).collect();
        assert_eq!(starts, [1, 3, 5]);
    }

    #[test]
    fn tokenizer_splits_commands() {
        let c = words(
            "#!/bin/sh\nset -e\nif [ -z \"$2\" ] && ! getent group docker > /dev/null; then\n    addgroup --system docker\nfi\nupdate-alternatives --install /usr/bin/x \\\n  x '/usr/bin/x a' 10 2>&1 || true # done\n",
        );
        let c: Vec<String> = c.iter().map(|w| w.join("|")).collect();
        assert_eq!(
            c,
            [
                "set|-e",
                "[|-z|$2|]",
                "getent|group|docker",
                "addgroup|--system|docker",
                "update-alternatives|--install|/usr/bin/x|x|/usr/bin/x a|10",
                "true",
            ]
        );
    }

    #[test]
    fn docker_postinsts() {
        let s = scan(
            "#!/bin/sh\nset -e\ncase \"$1\" in\n  configure)\n    if [ -z \"$2\" ] && ! getent group docker > /dev/null; then\n      addgroup --system docker\n    fi\n  ;;\nesac\nif deb-systemd-helper --quiet was-enabled 'docker.service'; then\n  deb-systemd-helper enable 'docker.service' 'docker.socket' >/dev/null || true\nfi\n",
        );
        assert_eq!(
            effects(&s),
            [
                Effect::Group(GroupSpec {
                    name: "docker".into(),
                    gid: None
                }),
                Effect::SystemdEnable("docker.service".into()),
                Effect::SystemdEnable("docker.socket".into()),
            ]
        );
        assert!(s.not_understood.is_empty());
        let s = scan("if ! getent group docker >/dev/null; then groupadd --system docker; fi\n");
        assert_eq!(
            effects(&s),
            [Effect::Group(GroupSpec {
                name: "docker".into(),
                gid: None
            })]
        );
    }

    #[test]
    fn users_and_alternatives() {
        let s = scan(
            "adduser --system --group --home /var/lib/foo --no-create-home --gecos 'Foo daemon' foo\nuseradd -r -g nogroup -s /bin/false -d /run/bar bar\n/usr/bin/update-alternatives --quiet --install /usr/sbin/iptables iptables /usr/sbin/iptables-legacy 10 \\\n --slave /usr/sbin/iptables-save iptables-save /usr/sbin/iptables-legacy-save\n",
        );
        assert_eq!(
            effects(&s),
            [
                Effect::User(UserSpec {
                    name: "foo".into(),
                    uid: None,
                    group: PrimaryGroup::Own,
                    home: "/var/lib/foo".into(),
                    shell: "/usr/sbin/nologin".into(),
                    gecos: "Foo daemon".into(),
                    create_home: false,
                }),
                Effect::User(UserSpec {
                    name: "bar".into(),
                    uid: None,
                    group: PrimaryGroup::Named("nogroup".into()),
                    home: "/run/bar".into(),
                    shell: "/bin/false".into(),
                    gecos: String::new(),
                    create_home: false,
                }),
                Effect::Alternative(AlternativeSpec {
                    link: "/usr/sbin/iptables".into(),
                    name: "iptables".into(),
                    path: "/usr/sbin/iptables-legacy".into(),
                    priority: 10,
                    slaves: vec![(
                        "/usr/sbin/iptables-save".into(),
                        "iptables-save".into(),
                        "/usr/sbin/iptables-legacy-save".into()
                    )],
                }),
            ]
        );
    }

    #[test]
    fn non_literal_or_unknown_calls_are_reported() {
        let s = scan(
            "addgroup --system \"$GROUP\"\nadduser --frobnicate x\nadduser alice docker\nupdate-alternatives --remove x /usr/bin/x\ngroupadd docker\n",
        );
        assert!(s.effects.is_empty());
        assert_eq!(
            s.not_understood,
            [
                "addgroup --system $GROUP",
                "adduser --frobnicate x",
                "adduser alice docker",
                "groupadd docker",
            ]
        );
    }
}
