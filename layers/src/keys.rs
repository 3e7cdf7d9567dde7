//! OpenPGP public keys as repositories need them: ASCII armor in and out
//! (RFC 4880 section 6), and a check that binary data starts with a
//! public-key packet.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const BEGIN_PUBLIC: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END_PUBLIC: &str = "-----END PGP PUBLIC KEY BLOCK-----";

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
pub fn dearmor(data: &[u8]) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(data).map_err(|_| "the armored key is not ASCII text".to_string())?;
    let mut lines = text.lines().map(|l| l.trim_end());
    let begin = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if begin != BEGIN_PUBLIC {
        if begin.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK") {
            return Err("this is a private key; give the public key (gpg --export)".to_string());
        }
        return Err(format!(
            "expected {BEGIN_PUBLIC:?} as the first line, found {begin:?}"
        ));
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
            return Err(format!(
                "unexpected line {line:?} after the checksum line; the armor must end with {END_PUBLIC:?}"
            ));
        }
        match line.strip_prefix('=') {
            Some(c) if c.len() == 4 => checksum = Some(c),
            _ => body.push_str(line.trim()),
        }
    }
    if !ended {
        return Err(format!("the armor has no {END_PUBLIC:?} line"));
    }
    let bin = STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("the armored key body is not valid base64: {e}"))?;
    if let Some(c) = checksum {
        let sum = STANDARD
            .decode(c.as_bytes())
            .map_err(|e| format!("the armor checksum line ={c} is not valid base64: {e}"))?;
        let want = sum.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let got = crc24(&bin);
        if sum.len() != 3 || want != got {
            return Err(format!(
                "the armor checksum does not match (line ={c}, computed ={}); the key file is damaged, download it again",
                checksum_b64(got)
            ));
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
pub(crate) fn check_public_key(bin: &[u8]) -> Result<(), String> {
    let not_key = "it does not start with an OpenPGP public-key packet; give the key as \
                   exported by gpg --export (binary) or gpg --armor --export";
    let first = *bin.first().ok_or_else(|| "the key is empty".to_string())?;
    if first & 0x80 == 0 {
        return Err(not_key.to_string());
    }
    let (tag, len, hdr) = if first & 0x40 != 0 {
        // New format: one, two or five length octets.
        let tag = first & 0x3f;
        let l0 = *bin.get(1).ok_or_else(|| not_key.to_string())? as usize;
        match l0 {
            0..=191 => (tag, l0, 2),
            192..=223 => {
                let l1 = *bin.get(2).ok_or_else(|| not_key.to_string())? as usize;
                (tag, ((l0 - 192) << 8) + l1 + 192, 3)
            }
            255 => {
                let b = bin.get(2..6).ok_or_else(|| not_key.to_string())?;
                let l = b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
                (tag, l, 6)
            }
            _ => return Err(not_key.to_string()),
        }
    } else {
        // Old format: the length type is in the two low bits.
        let tag = (first >> 2) & 0x0f;
        let n = match first & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return Err(not_key.to_string()),
        };
        let b = bin.get(1..1 + n).ok_or_else(|| not_key.to_string())?;
        let l = b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
        (tag, l, 1 + n)
    };
    if tag == 5 {
        return Err("this is a private key; give the public key (gpg --export)".to_string());
    }
    if tag != 6 {
        return Err(format!("{not_key} (first packet has tag {tag})"));
    }
    if bin.len() < hdr + len || len == 0 {
        return Err("the public-key packet is truncated; the key file is damaged".to_string());
    }
    match bin[hdr] {
        3..=6 => Ok(()),
        v => Err(format!("unknown OpenPGP key version {v}")),
    }
}

/// Accept a public key as a repository key file holds it: ASCII-armored
/// (de-armored and checked) or binary (checked), returning binary packets.
pub(crate) fn load_public_key(data: &[u8]) -> Result<Vec<u8>, String> {
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
        let e = dearmor(bad.as_bytes()).unwrap_err();
        assert!(e.contains("checksum does not match"), "{e}");
        assert!(e.contains("=etto"), "{e}");
        // A flipped body character is caught by the checksum too.
        let bad = TEST_KEY_ASC.replace("mDMEawe14", "mDMEawe15");
        let e = dearmor(bad.as_bytes()).unwrap_err();
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
        assert!(dearmor(no_end.as_bytes()).unwrap_err().contains("no "));
        let private = TEST_KEY_ASC.replace("PUBLIC KEY", "PRIVATE KEY");
        assert!(dearmor(private.as_bytes())
            .unwrap_err()
            .contains("private key"));
        let msg = TEST_KEY_ASC.replace("PUBLIC KEY BLOCK", "MESSAGE");
        assert!(dearmor(msg.as_bytes()).unwrap_err().contains("expected"));
        let junk = TEST_KEY_ASC.replace("mDMEawe14", "mDMEaw!14");
        assert!(dearmor(junk.as_bytes()).unwrap_err().contains("base64"));
        // Valid armor around something that is not a key.
        let sig = armor(&[0x88, 0x01, 0x04]);
        assert!(dearmor(sig.as_bytes()).unwrap_err().contains("tag 2"));
    }

    #[test]
    fn binary_keys_are_checked() {
        let bin = test_key_bin();
        assert_eq!(load_public_key(&bin).unwrap(), bin);
        // New-format header for the same packet.
        let mut newfmt = vec![0xC6, 0x33];
        newfmt.extend_from_slice(&bin[2..]);
        assert!(check_public_key(&newfmt).is_ok());
        assert!(check_public_key(b"").unwrap_err().contains("empty"));
        assert!(check_public_key(b"hello").is_err());
        assert!(check_public_key(&bin[..20])
            .unwrap_err()
            .contains("truncated"));
        // Secret-key packet (tag 5, old format).
        assert!(check_public_key(&[0x94, 0x01, 0x04])
            .unwrap_err()
            .contains("private key"));
        let mut v9 = bin.clone();
        v9[2] = 9;
        assert!(check_public_key(&v9).unwrap_err().contains("version 9"));
    }
}
