//! rpm's version ordering: `rpmvercmp` on version and release strings, and
//! epoch:version-release comparison as rpm does it for dependencies.

use std::cmp::Ordering;
use std::fmt;

/// rpm's `rpmvercmp`: compares two version (or release) strings segment by
/// segment. Digit runs compare numerically (leading zeros ignored), letter
/// runs by bytes, a digit run is newer than a letter run, `~` sorts before
/// anything (even the end), `^` after the end but before anything else;
/// other characters only separate segments.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        let (sa, sb) = (&a[si..i], &b[sj..j]);
        if sb.is_empty() {
            // A digit segment against a letter one: the digits are newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        match segment_cmp(sa, sb, numeric) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Compares two segments of one class: digit runs numerically (leading
/// zeros ignored), letter runs by bytes.
fn segment_cmp(mut sa: &[u8], mut sb: &[u8], numeric: bool) -> Ordering {
    if numeric {
        while sa.first() == Some(&b'0') {
            sa = &sa[1..];
        }
        while sb.first() == Some(&b'0') {
            sb = &sb[1..];
        }
        match sa.len().cmp(&sb.len()) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    sa.cmp(sb)
}

/// Why a text is not an `[epoch:]version[-release]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvrError {
    /// The part before the colon is not a number.
    #[error("{text:?}: the epoch {epoch:?} is not a number")]
    Epoch {
        /// The whole text.
        text: String,
        /// The epoch as written.
        epoch: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The version is empty, or the release after a dash is.
    #[error("{text:?} is not an [epoch:]version[-release]")]
    Malformed {
        /// The whole text.
        text: String,
    },
}

/// An epoch:version-release. A missing epoch is 0; a missing release (in a
/// dependency) matches any release.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Evr {
    /// The epoch.
    pub epoch: u64,
    /// The version.
    pub version: String,
    /// The release; `None` when not given.
    pub release: Option<String>,
}

impl Evr {
    /// From the parts as primary.xml or a header gives them.
    pub fn new(epoch: u64, version: &str, release: Option<&str>) -> Self {
        Evr {
            epoch,
            version: version.to_string(),
            release: release.filter(|r| !r.is_empty()).map(str::to_string),
        }
    }

    /// Parses `[epoch:]version[-release]`.
    pub fn parse(s: &str) -> Result<Self, EvrError> {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (
                e.parse::<u64>().map_err(|source| EvrError::Epoch {
                    text: s.to_string(),
                    epoch: e.to_string(),
                    source,
                })?,
                rest,
            ),
            None => (0, s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r)),
            None => (rest, None),
        };
        if version.is_empty() || release == Some("") {
            return Err(EvrError::Malformed {
                text: s.to_string(),
            });
        }
        Ok(Evr::new(epoch, version, release))
    }

    /// rpm's comparison: epoch, then version, then release only when both
    /// have one.
    pub fn compare(&self, other: &Evr) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                _ => Ordering::Equal,
            })
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// A dependency's comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Op {
    /// From primary.xml's `flags` attribute (`LT`, `LE`, `EQ`, `GE`, `GT`).
    pub(crate) fn from_flags(s: &str) -> Option<Op> {
        Some(match s {
            "LT" => Op::Lt,
            "LE" => Op::Le,
            "EQ" => Op::Eq,
            "GE" => Op::Ge,
            "GT" => Op::Gt,
            _ => return None,
        })
    }

    /// From the header's sense flags (RPMSENSE_LESS 2, GREATER 4, EQUAL 8).
    pub(crate) fn from_sense(flags: u32) -> Option<Op> {
        match flags & 0xe {
            2 => Some(Op::Lt),
            10 => Some(Op::Le),
            8 => Some(Op::Eq),
            12 => Some(Op::Ge),
            4 => Some(Op::Gt),
            _ => None,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }

    fn range(self) -> (bool, bool, bool) {
        // (allows less, allows equal, allows greater)
        match self {
            Op::Lt => (true, false, false),
            Op::Le => (true, true, false),
            Op::Eq => (false, true, false),
            Op::Ge => (false, true, true),
            Op::Gt => (false, false, true),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// Whether a provide `(op_p, p)` satisfies a requirement `(op_r, r)`: the
/// two ranges overlap (rpm's `rpmdsCompare`). Either side without a version
/// matches anything.
pub(crate) fn ranges_overlap(provide: Option<(Op, &Evr)>, require: Option<(Op, &Evr)>) -> bool {
    let (Some((op_p, p)), Some((op_r, r))) = (provide, require) else {
        return true;
    };
    let (pl, pe, pg) = op_p.range();
    let (rl, re, rg) = op_r.range();
    match p.compare(r) {
        Ordering::Less => pg || rl,
        Ordering::Greater => pl || rg,
        Ordering::Equal => (pe && re) || (pl && rl) || (pg && rg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// Pairs from rpm's own test suite (rpmvercmp.at).
    const CASES: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Equal),
        ("1.0", "2.0", Less),
        ("2.0", "1.0", Greater),
        ("2.0.1", "2.0.1", Equal),
        ("2.0", "2.0.1", Less),
        ("2.0.1", "2.0", Greater),
        ("2.0.1a", "2.0.1a", Equal),
        ("2.0.1a", "2.0.1", Greater),
        ("2.0.1", "2.0.1a", Less),
        ("5.5p1", "5.5p1", Equal),
        ("5.5p1", "5.5p2", Less),
        ("5.5p2", "5.5p1", Greater),
        ("5.5p10", "5.5p10", Equal),
        ("5.5p1", "5.5p10", Less),
        ("5.5p10", "5.5p1", Greater),
        ("10xyz", "10.1xyz", Less),
        ("10.1xyz", "10xyz", Greater),
        ("xyz10", "xyz10", Equal),
        ("xyz10", "xyz10.1", Less),
        ("xyz10.1", "xyz10", Greater),
        ("xyz.4", "xyz.4", Equal),
        ("xyz.4", "8", Less),
        ("8", "xyz.4", Greater),
        ("xyz.4", "2", Less),
        ("2", "xyz.4", Greater),
        ("5.5p2", "5.6p1", Less),
        ("5.6p1", "5.5p2", Greater),
        ("5.6p1", "6.5p1", Less),
        ("6.5p1", "5.6p1", Greater),
        ("6.0.rc1", "6.0", Greater),
        ("6.0", "6.0.rc1", Less),
        ("10b2", "10a1", Greater),
        ("10a2", "10b2", Less),
        ("1.0aa", "1.0aa", Equal),
        ("1.0a", "1.0aa", Less),
        ("1.0aa", "1.0a", Greater),
        ("10.0001", "10.0001", Equal),
        ("10.0001", "10.1", Equal),
        ("10.1", "10.0001", Equal),
        ("10.0001", "10.0039", Less),
        ("10.0039", "10.0001", Greater),
        ("4.999.9", "5.0", Less),
        ("5.0", "4.999.9", Greater),
        ("20101121", "20101121", Equal),
        ("20101121", "20101122", Less),
        ("20101122", "20101121", Greater),
        ("2_0", "2_0", Equal),
        ("2.0", "2_0", Equal),
        ("2_0", "2.0", Equal),
        ("a", "a", Equal),
        ("a+", "a+", Equal),
        ("a+", "a_", Equal),
        ("a_", "a+", Equal),
        ("+a", "+a", Equal),
        ("+a", "_a", Equal),
        ("_a", "+a", Equal),
        ("+_", "+_", Equal),
        ("_+", "+_", Equal),
        ("_+", "_+", Equal),
        ("+", "_", Equal),
        ("_", "+", Equal),
        ("1.0~rc1", "1.0~rc1", Equal),
        ("1.0~rc1", "1.0", Less),
        ("1.0", "1.0~rc1", Greater),
        ("1.0~rc1", "1.0~rc2", Less),
        ("1.0~rc2", "1.0~rc1", Greater),
        ("1.0~rc1~git123", "1.0~rc1~git123", Equal),
        ("1.0~rc1~git123", "1.0~rc1", Less),
        ("1.0~rc1", "1.0~rc1~git123", Greater),
        ("1.0^", "1.0^", Equal),
        ("1.0^", "1.0", Greater),
        ("1.0", "1.0^", Less),
        ("1.0^git1", "1.0^git1", Equal),
        ("1.0^git1", "1.0", Greater),
        ("1.0", "1.0^git1", Less),
        ("1.0^git1", "1.0^git2", Less),
        ("1.0^git2", "1.0^git1", Greater),
        ("1.0^git1", "1.01", Less),
        ("1.01", "1.0^git1", Greater),
        ("1.0^20160101", "1.0^20160101", Equal),
        ("1.0^20160101", "1.0.1", Less),
        ("1.0.1", "1.0^20160101", Greater),
        ("1.0^20160101^git1", "1.0^20160101^git1", Equal),
        ("1.0^20160102", "1.0^20160101^git1", Greater),
        ("1.0^20160101^git1", "1.0^20160102", Less),
        ("1.0~rc1^git1", "1.0~rc1^git1", Equal),
        ("1.0~rc1^git1", "1.0~rc1", Greater),
        ("1.0~rc1", "1.0~rc1^git1", Less),
        ("1.0^git1~pre", "1.0^git1~pre", Equal),
        ("1.0^git1", "1.0^git1~pre", Greater),
        ("1.0^git1~pre", "1.0^git1", Less),
        ("19.03.11", "19.03.5", Greater),
        ("1.2.13", "1.2.6", Greater),
    ];

    #[test]
    fn rpmvercmp_matches_rpms_own_cases() {
        for (a, b, want) in CASES {
            assert_eq!(rpmvercmp(a, b), *want, "rpmvercmp({a:?}, {b:?})");
        }
    }

    /// Every pair of a set of tricky versions, compared by this code and by
    /// the build host's rpm (`rpm.vercmp` in rpm's Lua); skipped without rpm
    /// outside CI.
    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "a flat table of versions, every pair compared with rpm's own order"
    )]
    fn rpmvercmp_agrees_with_rpm() {
        let versions = [
            "1",
            "1.0",
            "1.00",
            "1.0.0",
            "1.0a",
            "1.0.a",
            "1a",
            "a",
            "A",
            "1.0~rc1",
            "1.0~rc1~1",
            "1.0^",
            "1.0^1",
            "1.0^a",
            "1.0~",
            "~",
            "^",
            "1_0",
            "1+0",
            "01",
            "001.002",
            "1.2.13",
            "1.2.6",
            "19.03.11",
            "19.03.5",
            "19.03.11~3",
            "2.119.2",
            "2.74",
            "3.el7",
            "3.2.el7",
            "3.el7_8",
            "1.911c772.el7_8",
            "10",
            "9",
            "1.0.1a",
            "1.0.1b",
            "abc",
            "abd",
            "ab1",
            "1ab",
            "1..0",
            "1.0.",
            "0",
            "00",
            "2.0.0.0",
            "2.0.0~",
            "1.1.1.1.1",
        ];
        let mut pairs = Vec::new();
        for a in versions {
            for b in versions {
                pairs.push((a, b));
            }
        }
        let table: Vec<String> = pairs
            .iter()
            .map(|(a, b)| format!("{{'{a}','{b}'}}"))
            .collect();
        let script = format!(
            "%{{lua: for _,p in ipairs({{{}}}) do print(rpm.vercmp(p[1],p[2]) .. ',') end}}",
            table.join(",")
        );
        let out = match std::process::Command::new("rpm")
            .arg("--eval")
            .arg(&script)
            .output()
        {
            Ok(o) if o.status.success() => o,
            other => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "rpm --eval is needed for this test in CI: {other:?}"
                );
                eprintln!("skipped: rpm is not usable on this host");
                return;
            }
        };
        let text = String::from_utf8(out.stdout).unwrap();
        let answers: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(answers.len(), pairs.len(), "{text}");
        let mut wrong = Vec::new();
        for ((a, b), want) in pairs.iter().zip(answers) {
            let got = match rpmvercmp(a, b) {
                Less => "-1",
                Equal => "0",
                Greater => "1",
            };
            if got != want {
                wrong.push(format!("rpmvercmp({a:?}, {b:?}) = {got}, rpm says {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn evr_parse_and_compare() {
        let e = Evr::parse("3:19.03.11-3.el7").unwrap();
        assert_eq!(e, Evr::new(3, "19.03.11", Some("3.el7")));
        assert_eq!(e.to_string(), "3:19.03.11-3.el7");
        assert_eq!(Evr::parse("1.2.13").unwrap().release, None);
        let e = Evr::parse("x:1").unwrap_err();
        assert_eq!(e.to_string(), "\"x:1\": the epoch \"x\" is not a number");
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.is::<std::num::ParseIntError>(), "{source}");
        assert_eq!(
            Evr::parse("1-").unwrap_err().to_string(),
            "\"1-\" is not an [epoch:]version[-release]"
        );
        assert!(Evr::parse("").is_err());
        // The epoch wins over the version.
        assert_eq!(
            Evr::parse("1:1.0-1")
                .unwrap()
                .compare(&Evr::parse("9.0-1").unwrap()),
            Greater
        );
        // A missing release matches any release.
        assert_eq!(
            Evr::parse("1.0")
                .unwrap()
                .compare(&Evr::parse("1.0-7").unwrap()),
            Equal
        );
        assert_eq!(
            Evr::parse("1.0-7")
                .unwrap()
                .compare(&Evr::parse("1.0-10").unwrap()),
            Less
        );
    }

    #[test]
    fn dependency_ranges() {
        let v = |s: &str| Evr::parse(s).unwrap();
        let (a, b) = (v("1.2.13-3.2.el7"), v("1.2.2"));
        assert!(ranges_overlap(Some((Op::Eq, &a)), Some((Op::Ge, &b))));
        assert!(!ranges_overlap(Some((Op::Eq, &a)), Some((Op::Lt, &b))));
        assert!(ranges_overlap(None, Some((Op::Lt, &b))));
        assert!(ranges_overlap(Some((Op::Eq, &a)), None));
        assert!(ranges_overlap(
            Some((Op::Eq, &v("1.2.13"))),
            Some((Op::Eq, &a))
        ));
        assert!(!ranges_overlap(
            Some((Op::Eq, &v("1.2.13-1"))),
            Some((Op::Eq, &a))
        ));
        assert!(ranges_overlap(Some((Op::Le, &b)), Some((Op::Lt, &a))));
        assert!(!ranges_overlap(Some((Op::Gt, &a)), Some((Op::Lt, &a))));
        assert_eq!(Op::from_flags("GE"), Some(Op::Ge));
        assert_eq!(Op::from_flags("ge"), None);
        assert_eq!(Op::from_sense(8 | 4), Some(Op::Ge));
        assert_eq!(Op::from_sense(0), None);
    }
}
