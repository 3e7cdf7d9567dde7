//! cosign's encrypted private keys: the PKCS#8 DER of the key, sealed with
//! NaCl secretbox (XSalsa20-Poly1305) under a key derived from the password
//! by scrypt, as a JSON document inside a PEM block labelled
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED COSIGN
//! PRIVATE KEY`):
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<base64 of 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64 of 24 bytes>"},
//!  "ciphertext":"<base64 of the 16-byte tag and the sealed DER>"}
//! ```
//!
//! The scrypt parameters are the three sets the Go implementation cosign
//! uses accepts (legacy N=32768, standard N=65536, OWASP N=131072; r=8,
//! p=1); anything else is refused before any work, as it refuses it, so
//! that a hostile key file cannot ask for gigabytes of memory.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use crypto_secretbox::XSalsa20Poly1305;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// The scrypt parameters written: cosign's (its "standard" strength).
pub const WRITTEN_N: u64 = 65536;
const R: u32 = 8;
const P: u32 = 1;
/// The values of N read: legacy, standard and OWASP strength.
const ACCEPTED_N: [u64; 3] = [32768, 65536, 131072];
/// Length of the salt written.
pub const SALT_LEN: usize = 32;
/// Length of a secretbox nonce.
pub const NONCE_LEN: usize = 24;
const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";

#[derive(Serialize, Deserialize)]
struct Document {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: Params,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct Params {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The secretbox key for `password` with `salt` and these parameters.
fn derive(password: &[u8], salt: &[u8], n: u64) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    // n is one of ACCEPTED_N: a power of two.
    let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| KeyError::Unsupported {
        what: format!("scrypt N={n}"),
    })?;
    let params = scrypt::Params::new(log_n, R, P, 32).map_err(|_| KeyError::Unsupported {
        what: format!("scrypt N={n}, r={R}, p={P}"),
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, &mut *key).map_err(|_| KeyError::Unsupported {
        what: "a scrypt output of 32 bytes".to_string(),
    })?;
    Ok(key)
}

/// Seal `plaintext` (a key's PKCS#8 DER) with `password`, salt and nonce
/// given: the JSON document cosign writes (the same inputs give the same
/// bytes).
pub fn seal(
    plaintext: &[u8],
    password: &[u8],
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyError> {
    let key = derive(password, salt, WRITTEN_N)?;
    let cipher = XSalsa20Poly1305::new((&*key).into());
    let sealed = cipher
        .encrypt(nonce.into(), plaintext)
        .map_err(|_| KeyError::Unsupported {
            what: "sealing the key".to_string(),
        })?;
    let doc = Document {
        kdf: Kdf {
            name: KDF_NAME.to_string(),
            params: Params {
                n: WRITTEN_N,
                r: R,
                p: P,
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_NAME.to_string(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(sealed),
    };
    serde_json::to_vec(&doc).map_err(KeyError::Json)
}

/// Open a document [`seal`] (or cosign) wrote: the plaintext, or
/// [`KeyError::WrongPassword`] when the password does not open it.
pub fn open(document: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let doc: Document = serde_json::from_slice(document).map_err(KeyError::Json)?;
    if doc.kdf.name != KDF_NAME {
        return Err(KeyError::Unsupported {
            what: format!("key derivation {:?} (only scrypt is)", doc.kdf.name),
        });
    }
    if doc.cipher.name != CIPHER_NAME {
        return Err(KeyError::Unsupported {
            what: format!("cipher {:?} (only nacl/secretbox is)", doc.cipher.name),
        });
    }
    let p = &doc.kdf.params;
    if !ACCEPTED_N.contains(&p.n) || p.r != R || p.p != P {
        return Err(KeyError::Unsupported {
            what: format!(
                "scrypt parameters N={}, r={}, p={} (N must be 32768, 65536 or 131072, r 8, p 1)",
                p.n, p.r, p.p
            ),
        });
    }
    let field = |name: &'static str, v: &str| {
        B64.decode(v).map_err(|e| KeyError::Base64 {
            field: name,
            source: e,
        })
    };
    let salt = field("kdf.salt", &doc.kdf.salt)?;
    let nonce = field("cipher.nonce", &doc.cipher.nonce)?;
    let sealed = field("ciphertext", &doc.ciphertext)?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyError::Unsupported {
            what: format!("a nonce of {} bytes (secretbox takes 24)", nonce.len()),
        });
    }
    let key = derive(password, &salt, p.n)?;
    let cipher = XSalsa20Poly1305::new((&*key).into());
    cipher
        .decrypt(nonce.as_slice().into(), sealed.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::WrongPassword)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Made by an independent implementation of the format (Python's
    /// hashlib.scrypt and PyNaCl's SecretBox), password `supersecret`,
    /// plaintext `nodeimg test plaintext`, legacy and standard strength.
    const PYNACL_LEGACY: &str = r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},"cipher":{"name":"nacl/secretbox","nonce":"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3"},"ciphertext":"FAFA3AHWJp5zRZZ/DI2ROE0AeeeTa5Yv+Gp1dK3KRptRXGU3br4="}"#;
    const PYNACL_STANDARD: &str = r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},"cipher":{"name":"nacl/secretbox","nonce":"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3"},"ciphertext":"eyJUnMDVML7NvoDZjERD/VKUqE++xR1VaCO4GIIMgztWJd2lHJo="}"#;

    fn salt() -> [u8; SALT_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn nonce() -> [u8; NONCE_LEN] {
        std::array::from_fn(|i| 32 + i as u8)
    }

    #[test]
    fn documents_of_another_implementation_open() {
        for doc in [PYNACL_LEGACY, PYNACL_STANDARD] {
            let plain = open(doc.as_bytes(), b"supersecret").unwrap();
            assert_eq!(&plain[..], b"nodeimg test plaintext");
            assert!(matches!(
                open(doc.as_bytes(), b"supersecreT"),
                Err(KeyError::WrongPassword)
            ));
        }
    }

    #[test]
    fn sealing_gives_the_bytes_another_implementation_gives() {
        let doc = seal(b"nodeimg test plaintext", b"supersecret", &salt(), &nonce()).unwrap();
        assert_eq!(String::from_utf8(doc).unwrap(), PYNACL_STANDARD);
    }

    #[test]
    fn tampered_and_foreign_documents_are_refused() {
        let doc = String::from_utf8(seal(b"k", b"pw", &salt(), &nonce()).unwrap()).unwrap();
        assert_eq!(&open(doc.as_bytes(), b"pw").unwrap()[..], b"k");
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let mut ct = B64.decode(v["ciphertext"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        let tampered = doc.replace(v["ciphertext"].as_str().unwrap(), &B64.encode(&ct));
        assert!(matches!(
            open(tampered.as_bytes(), b"pw"),
            Err(KeyError::WrongPassword)
        ));
        // A memory-hungry N is refused before any work.
        let greedy = doc.replace("\"N\":65536", "\"N\":1073741824");
        let e = open(greedy.as_bytes(), b"pw").unwrap_err().to_string();
        assert!(e.contains("N=1073741824"), "{e}");
        let other = doc.replace("nacl/secretbox", "aes-gcm");
        assert!(open(other.as_bytes(), b"pw")
            .unwrap_err()
            .to_string()
            .contains("aes-gcm"));
        assert!(matches!(open(b"{}", b"pw"), Err(KeyError::Json(_))));
        let bad = doc.replace(v["cipher"]["nonce"].as_str().unwrap(), "@@");
        assert!(open(bad.as_bytes(), b"pw")
            .unwrap_err()
            .to_string()
            .contains("cipher.nonce"));
    }
}
