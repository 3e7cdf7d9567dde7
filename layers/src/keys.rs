//! OpenPGP public keys as repositories need them: ASCII armor in and out
//! (RFC 4880 section 6), and a check that binary data starts with a
//! public-key packet.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const BEGIN_PUBLIC: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END_PUBLIC: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// What the first packet of a key must be, and how to give it.
const NOT_KEY: &str = "it does not start with an OpenPGP public-key packet; give the key as \
                       exported by gpg --export (binary) or gpg --armor --export";

/// Why bytes given as a public key are not one; each message is a sentence
/// that can be shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Armor that is not text.
    #[error("the armored key is not ASCII text")]
    NotText(#[source] std::str::Utf8Error),
    /// A private key (armor header or packet tag 5).
    #[error("this is a private key; give the public key (gpg --export)")]
    Private,
    /// Armor whose first line is not the public key block's.
    #[error("expected {:?} as the first line, found {found:?}", BEGIN_PUBLIC)]
    NoBegin {
        /// The first line that is not blank.
        found: String,
    },
    /// A line between the checksum line and the end line.
    #[error(
        "unexpected line {line:?} after the checksum line; the armor must end with {:?}",
        END_PUBLIC
    )]
    AfterChecksum {
        /// The line, trailing white space removed.
        line: String,
    },
    /// Armor without its end line.
    #[error("the armor has no {:?} line", END_PUBLIC)]
    NoEnd,
    /// An armor body that base64 does not decode.
    #[error("the armored key body is not valid base64: {0}")]
    Body(#[source] base64::DecodeError),
    /// A checksum line that base64 does not decode.
    #[error("the armor checksum line ={line} is not valid base64: {source}")]
    ChecksumLine {
        /// The checksum, without its `=`.
        line: String,
        /// The base64 error.
        #[source]
        source: base64::DecodeError,
    },
    /// A checksum that does not match the body.
    #[error(
        "the armor checksum does not match (line ={line}, computed ={computed}); the key file is \
         damaged, download it again"
    )]
    ChecksumMismatch {
        /// The checksum the armor gives, without its `=`.
        line: String,
        /// The checksum of the body, in base64.
        computed: String,
    },
    /// No bytes at all.
    #[error("the key is empty")]
    Empty,
    /// Bytes that do not start with a well-formed packet header.
    #[error("{}", NOT_KEY)]
    NotKey,
    /// A first packet of another kind than a public key.
    #[error("{} (first packet has tag {tag})", NOT_KEY)]
    OtherPacket {
        /// The packet tag.
        tag: u8,
    },
    /// A public-key packet longer than the bytes given, or empty.
    #[error("the public-key packet is truncated; the key file is damaged")]
    Truncated,
    /// A key version that is not 3 to 6.
    #[error("unknown OpenPGP key version {0}")]
    Version(u8),
}

/// The OpenPGP CRC-24 of `data` (RFC 4880 section 6.1).
pub(crate) fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Whether `data` looks like ASCII armor (it starts, after white space, with
/// a `-----BEGIN PGP` line).
pub(crate) fn is_armored(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(data.len());
    data[start..].starts_with(b"-----BEGIN PGP")
}

/// Decode an ASCII-armored public key block into its binary packets.
///
/// Armor headers (`Version: ...`) are skipped, the CRC-24 checksum line is
/// verified when present (RFC 9580 made it optional), and the result must
/// start with a public-key packet.
pub fn dearmor(data: &[u8]) -> Result<Vec<u8>, KeyError> {
    let text = std::str::from_utf8(data).map_err(KeyError::NotText)?;
    let mut lines = text.lines().map(|l| l.trim_end());
    let begin = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if begin != BEGIN_PUBLIC {
        if begin.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK") {
            return Err(KeyError::Private);
        }
        return Err(KeyError::NoBegin {
            found: begin.to_string(),
        });
    }
    let mut in_headers = true;
    let mut body = String::new();
    let mut checksum: Option<&str> = None;
    let mut ended = false;
    for line in lines.by_ref() {
        if line == END_PUBLIC {
            ended = true;
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
                continue;
            }
            if line.contains(": ") {
                continue;
            }
            in_headers = false;
        }
        if line.trim().is_empty() {
            continue;
        }
        if checksum.is_some() {
            return Err(KeyError::AfterChecksum {
                line: line.to_string(),
            });
        }
        match line.strip_prefix('=') {
            Some(c) if c.len() == 4 => checksum = Some(c),
            _ => body.push_str(line.trim()),
        }
    }
    if !ended {
        return Err(KeyError::NoEnd);
    }
    let bin = STANDARD.decode(body.as_bytes()).map_err(KeyError::Body)?;
    if let Some(c) = checksum {
        let sum = STANDARD
            .decode(c.as_bytes())
            .map_err(|source| KeyError::ChecksumLine {
                line: c.to_string(),
                source,
            })?;
        let want = sum.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let got = crc24(&bin);
        if sum.len() != 3 || want != got {
            return Err(KeyError::ChecksumMismatch {
                line: c.to_string(),
                computed: checksum_b64(got),
            });
        }
    }
    check_public_key(&bin)?;
    Ok(bin)
}

fn checksum_b64(crc: u32) -> String {
    let b = [(crc >> 16) as u8, (crc >> 8) as u8, crc as u8];
    STANDARD.encode(b)
}

/// ASCII-armor binary public key packets: base64 in 64-column lines and the
/// CRC-24 checksum line, ending with a newline.
pub fn armor(bin: &[u8]) -> String {
    let b64 = STANDARD.encode(bin);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 100);
    out.push_str(BEGIN_PUBLIC);
    out.push_str("\n\n");
    let bytes = b64.as_bytes();
    for chunk in bytes.chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push('=');
    out.push_str(&checksum_b64(crc24(bin)));
    out.push('\n');
    out.push_str(END_PUBLIC);
    out.push('\n');
    out
}

/// Check that `bin` starts with an OpenPGP public-key packet (tag 6) whose
/// header is well formed and whose key version is known (3 to 6).
pub(crate) fn check_public_key(bin: &[u8]) -> Result<(), KeyError> {
    let first = *bin.first().ok_or(KeyError::Empty)?;
    if first & 0x80 == 0 {
        return Err(KeyError::NotKey);
    }
    let (tag, len, hdr) = if first & 0x40 != 0 {
        // New format: one, two or five length octets.
        let tag = first & 0x3f;
        let l0 = *bin.get(1).ok_or(KeyError::NotKey)? as usize;
        match l0 {
            0..=191 => (tag, l0, 2),
            192..=223 => {
                let l1 = *bin.get(2).ok_or(KeyError::NotKey)? as usize;
                (tag, ((l0 - 192) << 8) + l1 + 192, 3)
            }
            255 => {
                let b = bin.get(2..6).ok_or(KeyError::NotKey)?;
                let l = b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
                (tag, l, 6)
            }
            _ => return Err(KeyError::NotKey),
        }
    } else {
        // Old format: the length type is in the two low bits.
        let tag = (first >> 2) & 0x0f;
        let n = match first & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return Err(KeyError::NotKey),
        };
        let b = bin.get(1..1 + n).ok_or(KeyError::NotKey)?;
        let l = b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
        (tag, l, 1 + n)
    };
    if tag == 5 {
        return Err(KeyError::Private);
    }
    if tag != 6 {
        return Err(KeyError::OtherPacket { tag });
    }
    if bin.len() < hdr + len || len == 0 {
        return Err(KeyError::Truncated);
    }
    match bin[hdr] {
        3..=6 => Ok(()),
        v => Err(KeyError::Version(v)),
    }
}

/// Accept a public key as a repository key file holds it: ASCII-armored
/// (de-armored and checked) or binary (checked), returning binary packets.
pub(crate) fn load_public_key(data: &[u8]) -> Result<Vec<u8>, KeyError> {
    if is_armored(data) {
        dearmor(data)
    } else {
        check_public_key(data)?;
        Ok(data.to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// An ed25519 public key as `gpg --armor --export` (GnuPG 2.2.40) wrote it.
    pub(crate) const TEST_KEY_ASC: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawe14BYJKwYBBAHaRw8BAQdAZA3QqiCE/FO4/MasJt7Z9hxkDbzx5QbZJXbh
uNcXJ4W0I25vZGVpbWcgdGVzdCA8dGVzdEBleGFtcGxlLmludmFsaWQ+iJAEExYI
ADgWIQTU6VoKSke+5/ILvBfU7TbwkdDs0gUCawe14AIbAwULCQgHAgYVCgkICwIE
FgIDAQIeAQIXgAAKCRDU7TbwkdDs0nVCAP9uRjlk6QoNfyYe+2fhesNCmwpa4Wjd
Wdb1AU5X4vgOAwEAm6emySPC8Ud6cIFB6cGtKCYVE7lRs9gUGQZnYv3NOwI=
=etto
-----END PGP PUBLIC KEY BLOCK-----
";

    /// The same key in binary, as `gpg --export` wrote it (236 bytes).
    pub(crate) fn test_key_bin() -> Vec<u8> {
        let body: String = TEST_KEY_ASC
            .lines()
            .skip(2)
            .take(5)
            .collect::<Vec<_>>()
            .concat();
        STANDARD.decode(body).unwrap()
    }

    #[test]
    fn crc24_known_values() {
        assert_eq!(crc24(b""), 0xB704CE);
        // CRC-24/OPENPGP check value for "123456789".
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }

    #[test]
    fn gpg_armor_decodes_and_its_checksum_verifies() {
        let bin = dearmor(TEST_KEY_ASC.as_bytes()).unwrap();
        assert_eq!(bin.len(), 236);
        assert_eq!(&bin[..4], &[0x98, 0x33, 0x04, 0x6b]);
        assert_eq!(bin, test_key_bin());
        assert_eq!(checksum_b64(crc24(&bin)), "etto");
    }

    #[test]
    fn armor_round_trips_and_matches_gpg_byte_for_byte() {
        let bin = test_key_bin();
        let a = armor(&bin);
        assert_eq!(a, TEST_KEY_ASC);
        assert_eq!(dearmor(a.as_bytes()).unwrap(), bin);
        // Longer input: lines are 64 columns, the last one shorter.
        let mut big = bin.clone();
        big.extend(std::iter::repeat_n(0u8, 1000));
        let a = armor(&big);
        let body: Vec<&str> = a
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('='))
            .collect();
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert_eq!(dearmor(a.as_bytes()).unwrap(), big);
    }

    #[test]
    fn corrupted_checksum_is_refused() {
        let bad = TEST_KEY_ASC.replace("=etto", "=etta");
        let e = dearmor(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("checksum does not match"), "{e}");
        assert!(e.contains("=etto"), "{e}");
        // A flipped body character is caught by the checksum too.
        let bad = TEST_KEY_ASC.replace("mDMEawe14", "mDMEawe15");
        let e = dearmor(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn headers_crlf_and_missing_checksum_are_accepted() {
        let with_headers = TEST_KEY_ASC.replace(
            "BLOCK-----\n\n",
            "BLOCK-----\nVersion: GnuPG v2\nComment: test\n\n",
        );
        assert_eq!(dearmor(with_headers.as_bytes()).unwrap(), test_key_bin());
        let crlf = TEST_KEY_ASC.replace('\n', "\r\n");
        assert_eq!(dearmor(crlf.as_bytes()).unwrap(), test_key_bin());
        let no_sum = TEST_KEY_ASC.replace("=etto\n", "");
        assert_eq!(dearmor(no_sum.as_bytes()).unwrap(), test_key_bin());
        let leading = format!("\n  \n{TEST_KEY_ASC}");
        assert_eq!(load_public_key(leading.as_bytes()).unwrap(), test_key_bin());
    }

    #[test]
    fn broken_armor_is_refused() {
        let no_end = TEST_KEY_ASC.replace(END_PUBLIC, "");
        assert!(dearmor(no_end.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("no "));
        let private = TEST_KEY_ASC.replace("PUBLIC KEY", "PRIVATE KEY");
        assert!(dearmor(private.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("private key"));
        let msg = TEST_KEY_ASC.replace("PUBLIC KEY BLOCK", "MESSAGE");
        assert!(dearmor(msg.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("expected"));
        let junk = TEST_KEY_ASC.replace("mDMEawe14", "mDMEaw!14");
        assert!(dearmor(junk.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("base64"));
        // Valid armor around something that is not a key.
        let sig = armor(&[0x88, 0x01, 0x04]);
        assert!(dearmor(sig.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("tag 2"));
    }

    #[test]
    fn each_key_refusal_has_its_variant_and_sentence() {
        let e = dearmor(&[0xff, 0xfe]).unwrap_err();
        assert!(matches!(e, KeyError::NotText(_)));
        assert_eq!(e.to_string(), "the armored key is not ASCII text");
        let msg = TEST_KEY_ASC.replace("PUBLIC KEY BLOCK", "MESSAGE");
        let e = dearmor(msg.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, KeyError::NoBegin { found } if found == "-----BEGIN PGP MESSAGE-----")
        );
        assert_eq!(
            e.to_string(),
            "expected \"-----BEGIN PGP PUBLIC KEY BLOCK-----\" as the first line, found \
             \"-----BEGIN PGP MESSAGE-----\""
        );
        let after = TEST_KEY_ASC.replace("=etto\n", "=etto\nmore\n");
        assert_eq!(
            dearmor(after.as_bytes()).unwrap_err().to_string(),
            "unexpected line \"more\" after the checksum line; the armor must end with \
             \"-----END PGP PUBLIC KEY BLOCK-----\""
        );
        let no_end = TEST_KEY_ASC.replace(END_PUBLIC, "");
        let e = dearmor(no_end.as_bytes()).unwrap_err();
        assert!(matches!(e, KeyError::NoEnd));
        assert_eq!(
            e.to_string(),
            "the armor has no \"-----END PGP PUBLIC KEY BLOCK-----\" line"
        );
        let junk = TEST_KEY_ASC.replace("mDMEawe14", "mDMEaw!14");
        let e = dearmor(junk.as_bytes()).unwrap_err();
        let KeyError::Body(cause) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(
            e.to_string(),
            format!("the armored key body is not valid base64: {cause}")
        );
        assert!(std::error::Error::source(&e).is_some());
        let bad_sum = TEST_KEY_ASC.replace("=etto", "=et!o");
        let e = dearmor(bad_sum.as_bytes()).unwrap_err();
        let KeyError::ChecksumLine { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(
            e.to_string(),
            format!("the armor checksum line =et!o is not valid base64: {source}")
        );
        let bad_sum = TEST_KEY_ASC.replace("=etto", "=etta");
        assert_eq!(
            dearmor(bad_sum.as_bytes()).unwrap_err().to_string(),
            "the armor checksum does not match (line =etta, computed =etto); the key file is \
             damaged, download it again"
        );
        let not_key = "it does not start with an OpenPGP public-key packet; give the key as \
                       exported by gpg --export (binary) or gpg --armor --export";
        let e = check_public_key(b"hello").unwrap_err();
        assert!(matches!(e, KeyError::NotKey));
        assert_eq!(e.to_string(), not_key);
        let e = dearmor(armor(&[0x88, 0x01, 0x04]).as_bytes()).unwrap_err();
        assert!(matches!(e, KeyError::OtherPacket { tag: 2 }));
        assert_eq!(e.to_string(), format!("{not_key} (first packet has tag 2)"));
        let e = check_public_key(&[0x94, 0x01, 0x04]).unwrap_err();
        assert!(matches!(e, KeyError::Private));
        assert_eq!(
            e.to_string(),
            "this is a private key; give the public key (gpg --export)"
        );
        assert_eq!(
            check_public_key(b"").unwrap_err().to_string(),
            "the key is empty"
        );
        assert_eq!(
            check_public_key(&test_key_bin()[..20])
                .unwrap_err()
                .to_string(),
            "the public-key packet is truncated; the key file is damaged"
        );
        let mut v9 = test_key_bin();
        v9[2] = 9;
        let e = load_public_key(&v9).unwrap_err();
        assert!(matches!(e, KeyError::Version(9)));
        assert_eq!(e.to_string(), "unknown OpenPGP key version 9");
    }

    #[test]
    fn binary_keys_are_checked() {
        let bin = test_key_bin();
        assert_eq!(load_public_key(&bin).unwrap(), bin);
        // New-format header for the same packet.
        let mut newfmt = vec![0xC6, 0x33];
        newfmt.extend_from_slice(&bin[2..]);
        assert!(check_public_key(&newfmt).is_ok());
        assert!(check_public_key(b"")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(check_public_key(b"hello").is_err());
        assert!(check_public_key(&bin[..20])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // Secret-key packet (tag 5, old format).
        assert!(check_public_key(&[0x94, 0x01, 0x04])
            .unwrap_err()
            .to_string()
            .contains("private key"));
        let mut v9 = bin.clone();
        v9[2] = 9;
        assert!(check_public_key(&v9)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
