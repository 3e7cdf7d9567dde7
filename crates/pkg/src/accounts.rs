//! The system users and groups that maintainer scripts (Debian) and
//! scriptlets (rpm) ask for, added to the image's account files.
//!
//! The scripts are never run: [`crate::scripts`] reads their
//! `adduser`/`addgroup`/`useradd`/`groupadd` calls, and both package
//! backends hand them to one [`Accounts`], which
//!
//! * reads `/etc/passwd`, `/etc/group`, `/etc/shadow` and `/etc/gshadow`
//!   through the image's view (any size up to [`FILE_MAX`]; a file the view
//!   lists but cannot give the bytes of is an error, never an empty file);
//! * validates what a package asks for ([`check_name`], [`check_text`],
//!   [`check_path`]) and refuses uid or gid 0 and an explicit id that another
//!   account already has, naming the package, the script and its line;
//! * keeps an existing account of the same name, as adduser and useradd do;
//! * picks the ids of new accounts by the backend's [`IdRule`];
//! * adds locked entries (`name:!:::::::`, `name:!::`) to `/etc/shadow` and
//!   `/etc/gshadow` when the image has them;
//! * writes the changed files into the layer with their mode and owner.

use std::collections::BTreeMap;

use nodeimg_layers::tree::Origin;
use nodeimg_layers::{FileTree, ImagePath, Meta, Node, RootView, StatKind};

use crate::scripts::{GroupSpec, PrimaryGroup, UserSpec};

/// The user database.
pub(crate) const PASSWD: &str = "/etc/passwd";
/// The group database.
pub(crate) const GROUP: &str = "/etc/group";
/// The users' passwords.
pub(crate) const SHADOW: &str = "/etc/shadow";
/// The groups' passwords.
pub(crate) const GSHADOW: &str = "/etc/gshadow";
pub use nodeimg_image::tarindex::{ACCOUNT_FILES as FILES, ACCOUNT_FILE_MAX as FILE_MAX};
/// The longest user or group name (shadow's and adduser's limit).
pub(crate) const NAME_MAX: usize = 32;
/// The group id a user of the missing group `nogroup` gets (Debian's).
const NOGROUP: u32 = 65534;

/// How the ids of new system accounts are picked: the free id in
/// `first..=last` nearest to `first` (upward) or to `last` (downward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRule {
    /// Lowest system id.
    pub first: u32,
    /// Highest system id.
    pub last: u32,
    /// Search from `last` down instead of from `first` up.
    pub downward: bool,
    /// A user's own new group takes the user's id when no group has it.
    pub group_id_from_uid: bool,
}

impl IdRule {
    /// Debian's `adduser --system` / `addgroup --system`: the first free id
    /// upward from 100 (`FIRST_SYSTEM_UID`) to 999, users and groups apart.
    pub const ADDUSER: IdRule = IdRule {
        first: 100,
        last: 999,
        downward: false,
        group_id_from_uid: false,
    };
    /// shadow's `useradd -r` / `groupadd -r`: the highest free id downward
    /// from 999 (`SYS_UID_MAX`); a user's own group gets the uid when free.
    pub const USERADD: IdRule = IdRule {
        first: 100,
        last: 999,
        downward: true,
        group_id_from_uid: true,
    };
}

/// Who asks for an account: a package's script and the line of the call.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The package, as the backend names it (`name=version`, a NEVRA).
    pub package: &'a str,
    /// The script (`postinst`, `%pre`).
    pub script: &'a str,
    /// The line of the call in the script (from 1).
    pub line: usize,
}

/// Why accounts cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// An account file of the image is unusable.
    #[error("{path} in the image: {message}")]
    Image {
        /// The image path (and where it resolves to).
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A script asks for an account that cannot be added.
    #[error("package {package}: {script} line {line}: {message}")]
    Refused {
        /// The package.
        package: String,
        /// Its script.
        script: String,
        /// The line of the call.
        line: usize,
        /// What is refused, why, and what to do.
        message: String,
        /// The rule the account breaks (an [`AccountError`]), when a name
        /// or field is refused; boxed, so the error stays small.
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl AccountsError {
    /// The rule a refused name or field breaks.
    pub fn rule(&self) -> Option<&AccountError> {
        match self {
            AccountsError::Refused {
                cause: Some(cause), ..
            } => cause.downcast_ref(),
            _ => None,
        }
    }
}

impl Request<'_> {
    fn refuse(&self, message: String) -> AccountsError {
        self.refuse_for(message, None)
    }

    /// A refusal of the `what` (`system user`) because of `cause`.
    fn refuse_because(&self, what: &str, cause: AccountError) -> AccountsError {
        self.refuse_for(format!("{what}: {cause}"), Some(Box::new(cause)))
    }

    fn refuse_for(
        &self,
        message: String,
        cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> AccountsError {
        AccountsError::Refused {
            package: self.package.to_string(),
            script: self.script.to_string(),
            line: self.line,
            message: format!(
                "{message}; nodeimg does not add such accounts: use another version of the \
                 package or leave it out"
            ),
            cause,
        }
    }
}

/// Why a name or a field of an account is refused; the message names the
/// value and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The name is empty.
    #[error("the name {0:?} is empty")]
    EmptyName(String),
    /// The name has more than [`NAME_MAX`] characters.
    #[error("the name {0:?} is longer than {NAME_MAX} characters")]
    LongName(String),
    /// The name is `.` or `..`.
    #[error("the name {0:?} is not a name")]
    DotName(String),
    /// The name starts with `-`.
    #[error("the name {0:?} starts with '-'")]
    DashFirst(String),
    /// The name is all digits.
    #[error("the name {0:?} is all digits (it would read as an id)")]
    AllDigits(String),
    /// The name is only `$`.
    #[error("the name {0:?} is only '$'")]
    OnlyDollar(String),
    /// The name holds a character names may not have.
    #[error(
        "the name {name:?} holds {found:?}; a name is made of letters, digits, '_', '.', '-' \
         and may end in '$'"
    )]
    BadChar {
        /// The name.
        name: String,
        /// The first character refused.
        found: char,
    },
    /// A field holds `:`, which separates the fields of the account files.
    #[error("the {what} {value:?} holds a ':', which separates the fields of the account files")]
    Colon {
        /// The field (`GECOS field`, `shell`).
        what: String,
        /// Its value.
        value: String,
    },
    /// A field holds a control character.
    #[error(
        "the {what} {value:?} holds the control character {found:?}, which would split or hide \
         lines of the account files"
    )]
    Control {
        /// The field.
        what: String,
        /// Its value.
        value: String,
        /// The first control character.
        found: char,
    },
    /// A path field is not absolute.
    #[error("the {what} {value:?} is not an absolute path")]
    Relative {
        /// The field (`home directory`, `shell`).
        what: String,
        /// Its value.
        value: String,
    },
}

/// Checks a user or group name by shadow's rules (which Debian's adduser
/// applies too, and more strictly): letters, digits, `_`, `.` and `-` (not
/// first), an optional final `$`, not all digits, not `.` or `..`, at most
/// [`NAME_MAX`] characters. So no `:`, `,`, `/`, whitespace or control
/// characters, which would break the account files.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let owned = || name.to_string();
    if name.is_empty() {
        return Err(AccountError::EmptyName(owned()));
    }
    if name.chars().count() > NAME_MAX {
        return Err(AccountError::LongName(owned()));
    }
    if name == "." || name == ".." {
        return Err(AccountError::DotName(owned()));
    }
    if name.starts_with('-') {
        return Err(AccountError::DashFirst(owned()));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AccountError::AllDigits(owned()));
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty() {
        return Err(AccountError::OnlyDollar(owned()));
    }
    if let Some(found) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(AccountError::BadChar {
            name: owned(),
            found,
        });
    }
    Ok(())
}

/// Checks a free-text field of `/etc/passwd` (GECOS): no `:`, newline or
/// other control character.
pub(crate) fn check_text(what: &str, value: &str) -> Result<(), AccountError> {
    let (what, owned) = (what.to_string(), value.to_string());
    match value.chars().find(|c| *c == ':' || c.is_control()) {
        None => Ok(()),
        Some(':') => Err(AccountError::Colon { what, value: owned }),
        Some(found) => Err(AccountError::Control {
            what,
            value: owned,
            found,
        }),
    }
}

/// Checks a path field of `/etc/passwd` (home, shell): absolute, and a
/// valid [`check_text`] field.
pub fn check_path(what: &str, value: &str) -> Result<(), AccountError> {
    check_text(what, value)?;
    if !value.starts_with('/') {
        return Err(AccountError::Relative {
            what: what.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// One account file: its text, where it is, and its entries.
#[derive(Debug, Clone)]
struct AccountFile {
    /// The path written (symlinks resolved).
    path: ImagePath,
    meta: Meta,
    text: String,
    /// Name -> id (third field) of each entry, the first one of a name.
    by_name: BTreeMap<String, Option<u32>>,
    /// Id -> name of the first entry with that id.
    by_id: BTreeMap<u32, String>,
    changed: bool,
}

impl AccountFile {
    fn new(path: ImagePath, meta: Meta, text: String) -> Self {
        let mut f = AccountFile {
            path,
            meta,
            text: String::new(),
            by_name: BTreeMap::new(),
            by_id: BTreeMap::new(),
            changed: false,
        };
        for line in text.lines() {
            f.index(line);
        }
        f.text = text;
        f
    }

    fn index(&mut self, line: &str) {
        let mut fields = line.split(':');
        let Some(name) = fields.next().filter(|n| !n.is_empty()) else {
            return;
        };
        let id = fields.nth(1).and_then(|i| i.parse::<u32>().ok());
        self.by_name.entry(name.to_string()).or_insert(id);
        if let Some(id) = id {
            self.by_id.entry(id).or_insert_with(|| name.to_string());
        }
    }

    fn append(&mut self, line: &str) {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.text.push('\n');
        self.index(line);
        self.changed = true;
    }

    fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied().flatten()
    }

    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// Reads an account file through `view`: `None` when the image has none.
fn read(view: &dyn RootView, path: &str) -> Result<Option<AccountFile>, AccountsError> {
    let p = ImagePath::new(path).map_err(|e| AccountsError::Image {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let resolved = view.resolve(&p);
    let named = if resolved == p {
        path.to_string()
    } else {
        format!("{path} (at {resolved})")
    };
    let err = |message: String| AccountsError::Image {
        path: named.clone(),
        message,
    };
    let Some(stat) = view.stat(&resolved) else {
        return Ok(None);
    };
    let size = match stat.kind {
        StatKind::File(size) => size,
        StatKind::Symlink(t) => {
            return Err(err(format!(
                "is a symbolic link ({t}) that does not resolve to a file; fix the base image"
            )))
        }
        StatKind::Dir | StatKind::Other => {
            return Err(err("is not a regular file; fix the base image".to_string()))
        }
    };
    if size > FILE_MAX {
        return Err(err(format!(
            "is {size} bytes, more than the {FILE_MAX} bytes nodeimg reads of an account file; \
             the base image (or a layer below) is not usable for adding accounts"
        )));
    }
    let bytes = view.read_raw(&resolved).ok_or_else(|| {
        err(format!(
            "the image lists it ({size} bytes) but its content cannot be read (e.g. a hard \
             link to a file whose bytes are missing or not kept); store it as a regular file in \
             the base image"
        ))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| err("is not UTF-8; fix the base image".to_string()))?;
    Ok(Some(AccountFile::new(resolved, stat.meta, text)))
}

/// A user added: its ids and, when its own group was created with it, that
/// group's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAdded {
    /// The user's id.
    pub uid: u32,
    /// Its primary group's id.
    pub gid: u32,
    /// The id of the group of its own name created for it.
    pub own_group: Option<u32>,
}

/// The image's account files as the layer leaves them.
#[derive(Debug, Clone)]
pub struct Accounts {
    rule: IdRule,
    passwd: AccountFile,
    group: AccountFile,
    shadow: Option<AccountFile>,
    gshadow: Option<AccountFile>,
}

impl Accounts {
    /// Reads the account files of `view`; new ids are picked by `rule`. A
    /// missing `/etc/passwd` or `/etc/group` is created when an account is
    /// added; a missing shadow file stays missing.
    pub fn read(view: &dyn RootView, rule: IdRule) -> Result<Self, AccountsError> {
        let or_new = |path: &str, f: Option<AccountFile>| -> Result<AccountFile, AccountsError> {
            match f {
                Some(f) => Ok(f),
                None => {
                    let p = ImagePath::new(path).map_err(|e| AccountsError::Image {
                        path: path.to_string(),
                        message: e.to_string(),
                    })?;
                    Ok(AccountFile::new(
                        view.resolve_parent(&p),
                        Meta::FILE,
                        String::new(),
                    ))
                }
            }
        };
        Ok(Accounts {
            rule,
            passwd: or_new(PASSWD, read(view, PASSWD)?)?,
            group: or_new(GROUP, read(view, GROUP)?)?,
            shadow: read(view, SHADOW)?,
            gshadow: read(view, GSHADOW)?,
        })
    }

    /// The id of the user `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.passwd.id(name)
    }

    /// The id of the group `name`.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.group.id(name)
    }

    /// A free id of `file` by the rule, `preferred` first when it is free.
    fn pick(
        &self,
        file: &AccountFile,
        preferred: Option<u32>,
        what: &str,
        who: &Request<'_>,
    ) -> Result<u32, AccountsError> {
        let free = |i: &u32| !file.by_id.contains_key(i);
        if let Some(p) = preferred.filter(free) {
            return Ok(p);
        }
        let IdRule { first, last, .. } = self.rule;
        let found = if self.rule.downward {
            (first..=last).rev().find(free)
        } else {
            (first..=last).find(free)
        };
        found.ok_or_else(|| {
            who.refuse(format!(
                "no free system {what} id is left in {first}-{last} of {}",
                file.path
            ))
        })
    }

    /// Checks an explicit id: not 0, not -1, not another account's.
    fn check_id(
        file: &AccountFile,
        id: u32,
        what: &str,
        name: &str,
        who: &Request<'_>,
    ) -> Result<(), AccountsError> {
        let short = if what == "user" { "uid" } else { "gid" };
        if id == 0 {
            return Err(who.refuse(format!("{what} {name:?} asks for {short} 0, root's")));
        }
        if id == u32::MAX {
            return Err(who.refuse(format!(
                "{what} {name:?} asks for {short} {id}, which means \"no id\""
            )));
        }
        if let Some(other) = file.by_id.get(&id).filter(|o| o.as_str() != name) {
            return Err(who.refuse(format!(
                "{what} {name:?} asks for {short} {id}, which the {what} {other:?} of {} \
                 already has",
                file.path
            )));
        }
        Ok(())
    }

    /// Adds a system group unless one of that name exists; returns the new
    /// group's id.
    pub fn add_group(
        &mut self,
        g: &GroupSpec,
        who: &Request<'_>,
    ) -> Result<Option<u32>, AccountsError> {
        check_name(&g.name).map_err(|e| who.refuse_because("system group", e))?;
        if self.group.has(&g.name) {
            return Ok(None);
        }
        let gid = match g.gid {
            Some(id) => {
                Self::check_id(&self.group, id, "group", &g.name, who)?;
                id
            }
            None => self.pick(&self.group, None, "group", who)?,
        };
        self.append_group(&g.name, gid);
        Ok(Some(gid))
    }

    fn append_group(&mut self, name: &str, gid: u32) {
        self.group.append(&format!("{name}:x:{gid}:"));
        if let Some(s) = self.gshadow.as_mut().filter(|s| !s.has(name)) {
            s.append(&format!("{name}:!::"));
        }
    }

    /// Adds a system user unless one of that name exists (and its own group
    /// when it asks for one and none of that name exists).
    pub fn add_user(
        &mut self,
        u: &UserSpec,
        who: &Request<'_>,
    ) -> Result<Option<UserAdded>, AccountsError> {
        let user = |e: AccountError| who.refuse_because("system user", e);
        check_name(&u.name).map_err(user)?;
        check_text("GECOS field", &u.gecos).map_err(user)?;
        check_path("home directory", &u.home).map_err(user)?;
        check_path("shell", &u.shell).map_err(user)?;
        if self.passwd.has(&u.name) {
            return Ok(None);
        }
        let uid = match u.uid {
            Some(id) => {
                Self::check_id(&self.passwd, id, "user", &u.name, who)?;
                id
            }
            None => self.pick(&self.passwd, None, "user", who)?,
        };
        let (gid, own) = match &u.group {
            PrimaryGroup::Own => match self.gid(&u.name) {
                Some(g) => (g, false),
                None => {
                    let preferred = self.rule.group_id_from_uid.then_some(uid);
                    (self.pick(&self.group, preferred, "group", who)?, true)
                }
            },
            PrimaryGroup::Named(n) => match self.gid(n) {
                Some(g) => (g, false),
                None if n == "nogroup" && !self.group.has(n) => (NOGROUP, false),
                None => {
                    return Err(who.refuse(format!(
                        "system user {:?} is to be in the group {n:?}, which {} does not have",
                        u.name, self.group.path
                    )))
                }
            },
            PrimaryGroup::Id(g) => {
                if *g != 0 && !self.group.by_id.contains_key(g) {
                    return Err(who.refuse(format!(
                        "system user {:?} is to be in the group with gid {g}, which {} does not \
                         have",
                        u.name, self.group.path
                    )));
                }
                (*g, false)
            }
        };
        if gid == 0 {
            return Err(who.refuse(format!(
                "system user {:?} would have root's group (gid 0) as its primary group",
                u.name
            )));
        }
        if own {
            self.append_group(&u.name, gid);
        }
        self.passwd.append(&format!(
            "{}:x:{uid}:{gid}:{}:{}:{}",
            u.name, u.gecos, u.home, u.shell
        ));
        if let Some(s) = self.shadow.as_mut().filter(|s| !s.has(&u.name)) {
            s.append(&format!("{}:!:::::::", u.name));
        }
        Ok(Some(UserAdded {
            uid,
            gid,
            own_group: own.then_some(gid),
        }))
    }

    /// Whether an account was added.
    pub fn changed(&self) -> bool {
        self.files().any(|f| f.changed)
    }

    fn files(&self) -> impl Iterator<Item = &AccountFile> {
        [
            Some(&self.passwd),
            Some(&self.group),
            self.shadow.as_ref(),
            self.gshadow.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// Writes the changed files into `tree`, with the mode and owner they
    /// have in the image (0644 root for a new `/etc/passwd` or `/etc/group`).
    pub fn write(&self, tree: &mut FileTree, origin: &Origin) {
        for f in self.files().filter(|f| f.changed) {
            tree.replace(
                f.path.clone(),
                Node::file(f.text.clone(), origin.clone()).with_meta(f.meta),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nodeimg_layers::MemView;

    const WHO: Request<'static> = Request {
        package: "demo=1.0",
        script: "postinst",
        line: 7,
    };

    fn user(name: &str) -> UserSpec {
        UserSpec {
            name: name.into(),
            uid: None,
            group: PrimaryGroup::Own,
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
            gecos: String::new(),
            create_home: false,
        }
    }

    fn group(name: &str, gid: Option<u32>) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            gid,
        }
    }

    fn view() -> MemView {
        MemView::new()
            .file(
                PASSWD,
                "root:x:0:0:root:/root:/bin/bash\nsvc:x:100:65534::/:/usr/sbin/nologin\n",
            )
            .file(GROUP, "root:x:0:\nadm:x:4:\nsvc:x:100:\nnogroup:x:65534:\n")
    }

    #[test]
    fn a_refused_name_keeps_its_rule_as_the_cause_and_says_the_same_sentence() {
        use std::error::Error as _;
        let mut a = Accounts::read(&view(), IdRule::ADDUSER).unwrap();
        let e = a.add_user(&user("a:b"), &WHO).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package demo=1.0: postinst line 7: system user: the name \"a:b\" holds ':'; a name \
             is made of letters, digits, '_', '.', '-' and may end in '$'; nodeimg does not add \
             such accounts: use another version of the package or leave it out"
        );
        let cause = e.source().and_then(|c| c.downcast_ref::<AccountError>());
        assert_eq!(
            cause,
            Some(&AccountError::BadChar {
                name: "a:b".into(),
                found: ':'
            })
        );
        let e = a.add_group(&group("1234", None), &WHO).unwrap_err();
        assert!(
            e.to_string().contains(
                "system group: the name \"1234\" is all digits (it would read as an id);"
            ),
            "{e}"
        );
        let cause = e.source().and_then(|c| c.downcast_ref::<AccountError>());
        assert_eq!(cause, Some(&AccountError::AllDigits("1234".into())));
        assert_eq!(e.rule(), cause);
        let mut u = user("svc2");
        u.shell = "bin/sh".into();
        let e = a.add_user(&u, &WHO).unwrap_err();
        assert!(matches!(
            e.source().and_then(|c| c.downcast_ref::<AccountError>()),
            Some(AccountError::Relative { what, .. }) if what == "shell"
        ));
        // A refusal with no rule beneath it has no cause.
        let mut u = user("evil");
        u.uid = Some(0);
        let e = a.add_user(&u, &WHO).unwrap_err();
        assert!(e.source().is_none() && e.rule().is_none());
    }

    #[test]
    fn names_follow_shadow_and_debian_rules() {
        for good in [
            "docker",
            "Debian-exim",
            "_apt",
            "systemd-network",
            "machine$",
            "a.b",
            "x1",
            "0day",
            &"a".repeat(32),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("a:b", "holds ':'"),
            ("a,b", "holds ','"),
            ("a b", "holds ' '"),
            ("a\tb", "holds '\\t'"),
            ("a/b", "holds '/'"),
            ("pwn\nroot", "holds '\\n'"),
            ("a\u{1b}[2J", "holds '\\u{1b}'"),
            ("-x", "starts with '-'"),
            ("1234", "is all digits"),
            (".", "is not a name"),
            ("..", "is not a name"),
            ("a$b", "holds '$'"),
            ("$", "is only '$'"),
            ("é", "holds 'é'"),
            (&"a".repeat(33), "longer than 32"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn fields_hold_no_separators_and_paths_are_absolute() {
        assert_eq!(check_text("GECOS field", "Foo daemon,,,"), Ok(()));
        assert!(check_text("GECOS field", "x\npwn::0:0::/root:/bin/sh")
            .unwrap_err()
            .to_string()
            .contains("control character '\\n'"));
        assert!(check_text("GECOS field", "a:b")
            .unwrap_err()
            .to_string()
            .contains("holds a ':'"));
        assert!(check_text("GECOS field", "a\rb").is_err());
        assert_eq!(check_path("home directory", "/var/lib/x"), Ok(()));
        assert!(check_path("home directory", "/var:/x").is_err());
        assert!(check_path("shell", "bin/sh")
            .unwrap_err()
            .to_string()
            .contains("not an absolute path"));
        assert!(check_path("shell", "").is_err());
    }

    #[test]
    fn adduser_ids_go_upward_and_shadow_entries_are_locked() {
        let v = view()
            .file(SHADOW, "root:*:19000:0:99999:7:::\n")
            .file(GSHADOW, "root:*::\n");
        let mut a = Accounts::read(&v, IdRule::ADDUSER).unwrap();
        assert_eq!(
            a.add_group(&group("docker", None), &WHO).unwrap(),
            Some(101)
        );
        assert_eq!(a.add_group(&group("docker", None), &WHO).unwrap(), None);
        let added = a.add_user(&user("foo"), &WHO).unwrap().unwrap();
        assert_eq!(
            added,
            UserAdded {
                uid: 101,
                gid: 102,
                own_group: Some(102)
            }
        );
        let mut bar = user("bar");
        bar.group = PrimaryGroup::Named("nogroup".into());
        bar.gecos = "Bar daemon,,,".into();
        assert_eq!(a.add_user(&bar, &WHO).unwrap().unwrap().gid, 65534);
        // An existing account is kept.
        assert_eq!(a.add_user(&user("svc"), &WHO).unwrap(), None);
        assert_eq!(
            a.passwd.text,
            "root:x:0:0:root:/root:/bin/bash\nsvc:x:100:65534::/:/usr/sbin/nologin\n\
             foo:x:101:102::/nonexistent:/usr/sbin/nologin\n\
             bar:x:102:65534:Bar daemon,,,:/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(
            a.group.text,
            "root:x:0:\nadm:x:4:\nsvc:x:100:\nnogroup:x:65534:\ndocker:x:101:\nfoo:x:102:\n"
        );
        assert_eq!(
            a.shadow.as_ref().unwrap().text,
            "root:*:19000:0:99999:7:::\nfoo:!:::::::\nbar:!:::::::\n"
        );
        assert_eq!(
            a.gshadow.as_ref().unwrap().text,
            "root:*::\ndocker:!::\nfoo:!::\n"
        );
    }

    #[test]
    fn debian_users_get_the_next_free_system_ids() {
        let view = MemView::new()
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/bash\nsvc:x:100:100::/:/bin/false\n",
            )
            .file("/etc/group", "root:x:0:\nsvc:x:100:\nnogroup:x:65534:\n")
            .file("/etc/shadow", "root:*:19000:0:99999:7:::\n");
        let mut acc = Accounts::read(&view, IdRule::ADDUSER).unwrap();
        let spec = |name: &str, group| UserSpec {
            name: name.into(),
            uid: None,
            group,
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
            gecos: String::new(),
            create_home: false,
        };
        assert_eq!(
            acc.add_user(&spec("foo", PrimaryGroup::Own), &WHO).unwrap(),
            Some(UserAdded {
                uid: 101,
                gid: 101,
                own_group: Some(101)
            })
        );
        assert_eq!(
            acc.add_user(&spec("bar", PrimaryGroup::Named("nogroup".into())), &WHO)
                .unwrap(),
            Some(UserAdded {
                uid: 102,
                gid: 65534,
                own_group: None
            })
        );
        assert_eq!(
            acc.add_user(&spec("svc", PrimaryGroup::Own), &WHO).unwrap(),
            None
        );
        assert!(acc
            .add_user(&spec("baz", PrimaryGroup::Named("nosuch".into())), &WHO)
            .is_err());
        assert_eq!(
            acc.passwd.text,
            "root:x:0:0:root:/root:/bin/bash\nsvc:x:100:100::/:/bin/false\nfoo:x:101:101::/nonexistent:/usr/sbin/nologin\nbar:x:102:65534::/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(
            acc.shadow.as_ref().unwrap().text,
            "root:*:19000:0:99999:7:::\nfoo:!:::::::\nbar:!:::::::\n"
        );
        assert!(acc.gshadow.is_none());
        assert_eq!(
            acc.group.text,
            "root:x:0:\nsvc:x:100:\nnogroup:x:65534:\nfoo:x:101:\n"
        );
    }

    #[test]
    fn rpm_groups_get_free_ids_downward() {
        let v = MemView::new()
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/:/sbin/nologin\n",
            )
            .file("/etc/group", "root:x:0:\nsvc:x:999:\n");
        let mut a = Accounts::read(&v, IdRule::USERADD).unwrap();
        assert_eq!(
            a.add_group(&group("docker", None), &WHO).unwrap(),
            Some(998)
        );
        assert_eq!(a.add_group(&group("docker", None), &WHO).unwrap(), None);
        assert_eq!(a.gid("docker"), Some(998));
        assert_eq!(a.uid("nobody"), None);
        assert!(a.group.text.ends_with("docker:x:998:\n"));
    }

    #[test]
    fn useradd_ids_go_downward_and_the_own_group_takes_the_uid() {
        let v = MemView::new()
            .file(
                PASSWD,
                "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/:/sbin/nologin\n",
            )
            .file(GROUP, "root:x:0:\nsvc:x:999:\nother:x:997:\n");
        let mut a = Accounts::read(&v, IdRule::USERADD).unwrap();
        assert_eq!(
            a.add_group(&group("docker", None), &WHO).unwrap(),
            Some(998)
        );
        // gid 998 went to docker: the user's group gets the next free one.
        let u = a.add_user(&user("alpha"), &WHO).unwrap().unwrap();
        assert_eq!((u.uid, u.gid), (998, 996));
        let u = a.add_user(&user("beta"), &WHO).unwrap().unwrap();
        assert_eq!((u.uid, u.gid), (997, 995));
        assert!(a.shadow.is_none() && a.gshadow.is_none());
        assert_eq!(a.gid("docker"), Some(998));
        assert_eq!(a.uid("beta"), Some(997));
        assert_eq!(a.uid("nobody"), None);
    }

    fn refused(e: AccountsError) -> String {
        match &e {
            AccountsError::Refused {
                package,
                script,
                line,
                ..
            } => {
                assert_eq!(
                    (package.as_str(), script.as_str(), *line),
                    ("demo=1.0", "postinst", 7)
                );
            }
            other => panic!("{other}"),
        }
        let text = e.to_string();
        assert!(
            text.starts_with("package demo=1.0: postinst line 7: "),
            "{text}"
        );
        text
    }

    #[test]
    fn root_ids_used_ids_and_bad_fields_are_refused() {
        let mut a = Accounts::read(&view(), IdRule::ADDUSER).unwrap();
        let mut u = user("evil");
        u.uid = Some(0);
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("uid 0, root's"));
        u.uid = Some(100);
        let e = refused(a.add_user(&u, &WHO).unwrap_err());
        assert!(e.contains("uid 100, which the user \"svc\""), "{e}");
        let e = refused(a.add_group(&group("evil", Some(0)), &WHO).unwrap_err());
        assert!(e.contains("gid 0, root's"), "{e}");
        let e = refused(a.add_group(&group("evil", Some(4)), &WHO).unwrap_err());
        assert!(e.contains("group \"adm\""), "{e}");
        let mut u = user("evil");
        u.group = PrimaryGroup::Id(0);
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("gid 0"));
        u.group = PrimaryGroup::Named("root".into());
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("gid 0"));
        u.group = PrimaryGroup::Id(4242);
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("gid 4242"));
        u.group = PrimaryGroup::Named("missing".into());
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("\"missing\""));
        let mut u = user("evil");
        u.gecos = "x\npwn::0:0::/root:/bin/sh".into();
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("GECOS"));
        let mut u = user("evil");
        u.home = "/home/a:b".into();
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("home directory"));
        let mut u = user("evil");
        u.shell = "sh".into();
        assert!(refused(a.add_user(&u, &WHO).unwrap_err()).contains("shell"));
        let e = refused(a.add_user(&user("ev\u{7}il"), &WHO).unwrap_err());
        assert!(e.contains("system user: the name"), "{e}");
        // Nothing was added by the refused calls.
        assert!(!a.changed());
        // The same explicit id as the account's own is not a conflict.
        let mut svc = user("svc");
        svc.uid = Some(100);
        assert_eq!(a.add_user(&svc, &WHO).unwrap(), None);
    }

    #[test]
    fn unreadable_or_huge_account_files_are_errors() {
        // A hard link to a missing file: listed, no bytes.
        struct NoBytes(MemView);
        impl RootView for NoBytes {
            fn stat(&self, path: &ImagePath) -> Option<nodeimg_layers::Stat> {
                self.0.stat(path)
            }
            fn read_raw(&self, path: &ImagePath) -> Option<Vec<u8>> {
                (path.as_str() != PASSWD)
                    .then(|| self.0.read_raw(path))
                    .flatten()
            }
            fn list_raw(&self, path: &ImagePath) -> Vec<String> {
                self.0.list_raw(path)
            }
        }
        let e = Accounts::read(&NoBytes(view()), IdRule::ADDUSER).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/passwd in the image: the image lists it"),
            "{e}"
        );
        let v = MemView::new().file(GROUP, vec![0xff, 0xfe]);
        let e = Accounts::read(&v, IdRule::ADDUSER).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/group in the image: is not UTF-8; fix the base image"
        );
        let v = MemView::new().dir(SHADOW);
        let e = Accounts::read(&v, IdRule::ADDUSER).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/etc/shadow in the image: is not a regular file"));
    }

    #[test]
    fn writes_only_changed_files_keeping_their_meta() {
        let v = view().file(GSHADOW, "root:*::\n");
        let mut a = Accounts::read(&v, IdRule::ADDUSER).unwrap();
        a.gshadow.as_mut().unwrap().meta = Meta {
            mode: 0o640,
            uid: 0,
            gid: 42,
        };
        a.add_group(&group("docker", None), &WHO).unwrap();
        let mut tree = FileTree::new();
        a.write(&mut tree, &Origin::new("packages", "layer[0].packages"));
        assert!(tree.get_str(PASSWD).is_none());
        assert_eq!(
            tree.text(GROUP),
            Some("root:x:0:\nadm:x:4:\nsvc:x:100:\nnogroup:x:65534:\ndocker:x:101:\n")
        );
        let g = tree.get_str(GSHADOW).unwrap();
        assert_eq!((g.meta.mode, g.meta.gid), (0o640, 42));
        assert_eq!(tree.text(GSHADOW), Some("root:*::\ndocker:!::\n"));
        // A missing passwd is created, 0644 root.
        let mut a = Accounts::read(&MemView::new(), IdRule::ADDUSER).unwrap();
        a.add_user(&user("foo"), &WHO).unwrap();
        let mut tree = FileTree::new();
        a.write(&mut tree, &Origin::new("packages", "layer[0].packages"));
        assert_eq!(tree.get_str(PASSWD).unwrap().meta, Meta::FILE);
        assert!(tree.get_str(SHADOW).is_none());
    }
}
