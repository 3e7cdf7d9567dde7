//! Tar entry names (and link targets) as strings, byte for byte.
//!
//! A tar name is a string of bytes; the image model names paths with
//! `String`s. A name that is not UTF-8 is decoded with each byte of an
//! invalid sequence (always 0x80..=0xFF) standing for the reserved code
//! point `U+10FF00 + byte` (U+10FF80..=U+10FFFF, the end of the
//! supplementary private use area B), and encoded back to that byte
//! wherever a tar name is written. Names that differ in bytes stay
//! distinct, and an archive written from them holds the original bytes.
//! A UTF-8 name that already holds one of the reserved code points is
//! refused, so that decoding is one-to-one.

use std::borrow::Cow;

/// The first reserved code point: `RESERVED + byte` stands for `byte`.
const RESERVED: u32 = 0x10_FF00;

/// The character standing for the raw byte `b` (0x80..=0xFF).
fn stand_in(b: u8) -> char {
    char::from_u32(RESERVED + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The raw byte a reserved character stands for.
fn raw_byte(c: char) -> Option<u8> {
    let v = u32::from(c);
    if (RESERVED + 0x80..=RESERVED + 0xFF).contains(&v) {
        u8::try_from(v - RESERVED).ok()
    } else {
        None
    }
}

/// Decode a tar name (or link target) into a string: UTF-8 as it is, each
/// byte of an invalid sequence as its reserved stand-in. An error when a
/// UTF-8 part holds a reserved code point.
pub(crate) fn decode(raw: &[u8]) -> Result<String, ReservedCodePoint> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_checked(&mut out, s)?;
                return Ok(out);
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by the error's account.
                push_checked(&mut out, &String::from_utf8_lossy(good))?;
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push(stand_in(*b));
                }
                rest = &bad[n..];
            }
        }
    }
}

/// A UTF-8 name holds one of the code points that stand for the bytes of
/// names that are not UTF-8.
#[derive(Debug, thiserror::Error)]
#[error(
    "the name holds the code point U+{:X}, which nodeimg reserves for the bytes of \
     names that are not UTF-8; rename the file",
    u32::from(*.0)
)]
pub struct ReservedCodePoint(pub char);

fn push_checked(out: &mut String, s: &str) -> Result<(), ReservedCodePoint> {
    if let Some(c) = s.chars().find(|c| raw_byte(*c).is_some()) {
        return Err(ReservedCodePoint(c));
    }
    out.push_str(s);
    Ok(())
}

/// The bytes a decoded name stands for (the string's own bytes when it
/// holds no reserved code point).
pub(crate) fn encode(s: &str) -> Cow<'_, [u8]> {
    if !s.chars().any(|c| raw_byte(c).is_some()) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match raw_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_byte_for_byte() {
        for raw in [
            &b"etc/caf\xe9"[..],
            b"etc/caf\xe8",
            b"etc/caf\xc3\xa9",
            b"\xff\xfe/x",
            b"a\xc3",
            b"a\xe2\x82",
            b"\x80\x80",
            b"plain/name",
            b"",
        ] {
            let s = decode(raw).unwrap();
            assert_eq!(&*encode(&s), raw, "{s:?}");
        }
        assert_ne!(
            decode(b"etc/caf\xe9").unwrap(),
            decode(b"etc/caf\xe8").unwrap()
        );
        assert_eq!(decode(b"etc/caf\xc3\xa9").unwrap(), "etc/café");
        assert!(matches!(encode("etc/café"), Cow::Borrowed(_)));
    }

    #[test]
    fn reserved_code_points_in_real_names_are_refused() {
        let e = decode("x\u{10FFE9}".as_bytes()).unwrap_err().to_string();
        assert!(e.contains("U+10FFE9"), "{e}");
        assert!(decode("x\u{10FF7F}".as_bytes()).is_ok());
    }
}
