//! Debian package versions (`[epoch:]upstream[-revision]`) with dpkg's
//! exact ordering.
//!
//! Comparison follows dpkg's `verrevcmp`: the strings are compared in
//! alternating runs of non-digits and digits. In a non-digit run `~` sorts
//! before everything (even the end of the string), then the end of the
//! string, then letters, then every other character (by byte value). Digit
//! runs compare numerically (leading zeros ignored). Epochs compare first,
//! numerically; a missing epoch is 0. A missing revision compares like an
//! empty one, so `1.0` and `1.0-0` are equal, as are `0:1` and `1`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string is not a valid Debian version. The messages follow
/// dpkg's own wording so they are easy to look up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{text}`: {reason}")]
pub struct VersionError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed Debian version. Equality and ordering are dpkg's (so `1.0` ==
/// `1.0-0`); [`fmt::Display`] writes the version as it was written (epoch
/// and revision only when they were present).
#[derive(Debug, Clone)]
pub struct Version {
    epoch: Option<u32>,
    upstream: String,
    revision: Option<String>,
}

impl Version {
    /// Parses and validates a version as dpkg does: surrounding whitespace
    /// is ignored; the epoch must be a decimal number; the upstream part must
    /// start with a digit and hold only alphanumerics and `.+~-:`; the
    /// revision (after the last `-`) only alphanumerics and `.+~`.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let err = |reason: &str| VersionError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(err("version string is empty"));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(err("version string has embedded spaces"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() {
                    return Err(err("epoch in version is empty"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch in version is not number"));
                }
                let n: u32 = e
                    .parse()
                    .ok()
                    .filter(|n| *n <= i32::MAX as u32)
                    .ok_or_else(|| err("epoch in version is too big"))?;
                if rest.is_empty() {
                    return Err(err("nothing after colon in version number"));
                }
                (Some(n), rest)
            }
            None => (None, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return Err(err("revision number is empty"));
                }
                (u, Some(r))
            }
            None => (rest, None),
        };
        if upstream.is_empty() {
            return Err(err("version number is empty"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(err("version number does not start with digit"));
        }
        if let Some(c) = upstream
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".-+~:".contains(*c)))
        {
            return Err(err(&format!("invalid character `{c}` in version number")));
        }
        if let Some(c) = revision
            .unwrap_or("")
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".+~".contains(*c)))
        {
            return Err(err(&format!("invalid character `{c}` in revision number")));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch.unwrap_or(0)
    }

    /// The upstream version.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision, when present.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }
}

/// dpkg's character weight in a non-digit run.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream or revision).
pub(crate) fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run, compared numerically.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch()
            .cmp(&other.epoch())
            .then_with(|| compare_part(&self.upstream, &other.upstream))
            .then_with(|| {
                compare_part(
                    self.revision.as_deref().unwrap_or(""),
                    other.revision.as_deref().unwrap_or(""),
                )
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.epoch {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.upstream)?;
        if let Some(r) = &self.revision {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parts_and_display_round_trip() {
        let x = v("5:19.03.11~3-0~ubuntu-focal");
        assert_eq!(x.epoch(), 5);
        assert_eq!(x.upstream(), "19.03.11~3-0~ubuntu");
        assert_eq!(x.revision(), Some("focal"));
        for s in [
            "1.2.13-2",
            "5:19.03.11~3-0~ubuntu-focal",
            "1.0~rc1",
            "1:0",
            "0:1",
            "1.0+dfsg1-1+deb12u1",
            "2:1.2.3",
        ] {
            assert_eq!(v(s).to_string(), s);
            assert_eq!(v(&v(s).to_string()), v(s));
        }
        assert_eq!(v(" 1.0 ").to_string(), "1.0");
    }

    #[test]
    fn ordering() {
        use Ordering::*;
        let cases = [
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0.1", Less),
            ("1.10", "1.9", Greater),
            ("1.010", "1.10", Equal),
            ("1:0", "0:1", Greater),
            ("0:1", "1", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.2.13-2", "1.2.13-10", Less),
            ("5:19.03.11~3-0~ubuntu-focal", "5:19.03.11-0", Less),
            ("1.0+dfsg1-1+deb12u1", "1.0+dfsg1-1", Greater),
            ("1.0+dfsg1-1+deb12u1", "1.0+dfsg1-2", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn invalid_versions() {
        let cases = [
            ("", "version string is empty"),
            ("1 0", "version string has embedded spaces"),
            (":1", "epoch in version is empty"),
            ("a:1", "epoch in version is not number"),
            ("99999999999:1", "epoch in version is too big"),
            ("1:", "nothing after colon in version number"),
            ("1.0-", "revision number is empty"),
            ("-1", "version number is empty"),
            ("a1.0", "version number does not start with digit"),
            ("1.0_1", "invalid character `_` in version number"),
            ("1.0-1_2", "invalid character `_` in revision number"),
            ("1.0-1:2", "epoch in version is not number"),
        ];
        for (text, reason) in cases {
            let e = Version::parse(text).unwrap_err();
            assert_eq!(e.reason, reason, "{text:?}");
            assert_eq!(e.to_string(), format!("invalid version `{text}`: {reason}"));
        }
    }

    /// Tiny deterministic generator for the dpkg cross-check.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
        fn version(&mut self) -> String {
            const PIECES: &[&str] = &[
                "0", "1", "2", "9", "10", "01", "00", "a", "b", "z", "A", "Z", "~", "~~", "+", ".",
                "rc", "dfsg", "~rc", "+deb", "ubuntu",
            ];
            let mut s = String::new();
            if self.next(4) == 0 {
                s.push_str(["0:", "1:", "2:", "10:"][self.next(4)]);
            }
            s.push_str(["0", "1", "2", "1.0", "10"][self.next(5)]);
            for _ in 0..self.next(4) {
                s.push_str(PIECES[self.next(PIECES.len())]);
            }
            if self.next(2) == 0 {
                s.push('-');
                s.push_str(["0", "1", "2", "a", "1~", "0~", "1+b1"][self.next(7)]);
                for _ in 0..self.next(3) {
                    s.push_str(["1", "~", "+", ".", "a", "10"][self.next(6)]);
                }
            }
            s
        }
    }

    fn dpkg_ordering(a: &str, b: &str) -> Ordering {
        let run = |op: &str| {
            std::process::Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .unwrap()
                .success()
        };
        if run("lt") {
            Ordering::Less
        } else if run("eq") {
            Ordering::Equal
        } else {
            Ordering::Greater
        }
    }

    #[test]
    fn ordering_matches_dpkg() {
        let has_dpkg = std::process::Command::new("dpkg")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_dpkg {
            eprintln!("skipped: dpkg is not on PATH, cannot cross-check version ordering");
            return;
        }
        let fixed = [
            "1.2.13-2",
            "1.2.13-10",
            "5:19.03.11~3-0~ubuntu-focal",
            "5:19.03.11~3-0~ubuntu-bionic",
            "5:20.10.0~3-0~ubuntu-focal",
            "1.0~rc1",
            "1.0",
            "1.0-0",
            "1:0",
            "0:1",
            "1",
            "1.0+dfsg1-1+deb12u1",
            "1.0+dfsg1-1",
            "1.0~",
            "1.0a",
            "1.0+",
            "1.01",
            "1.10",
            "1.9",
            "2.38-1",
            "2.38-1~",
        ];
        let mut pairs: Vec<(String, String)> = Vec::new();
        for a in fixed {
            for b in fixed {
                if a < b {
                    pairs.push((a.to_string(), b.to_string()));
                }
            }
        }
        let mut g = Lcg(42);
        while pairs.len() < 500 {
            let a = g.version();
            // Half the pairs share a prefix so the interesting tails meet.
            let b = if g.next(2) == 0 {
                let cut = g.next(a.len() + 1);
                let mut b = a[..cut].to_string();
                b.push_str(&g.version()[1..]);
                b
            } else {
                g.version()
            };
            let (Ok(_), Ok(_)) = (Version::parse(&a), Version::parse(&b)) else {
                continue;
            };
            pairs.push((a, b));
        }
        let mut mismatches = Vec::new();
        for (a, b) in &pairs {
            let ours = v(a).cmp(&v(b));
            let theirs = dpkg_ordering(a, b);
            if ours != theirs {
                mismatches.push(format!("{a} vs {b}: ours {ours:?}, dpkg {theirs:?}"));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
        assert!(pairs.len() >= 500);
    }
}
