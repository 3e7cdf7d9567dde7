//! Keys: ECDSA P-256 private keys in PEM (PKCS#8, as `openssl genpkey
//! -algorithm EC -pkeyopt ec_paramgen_curve:P-256` makes them, or encrypted
//! in cosign's format, see [`crate::encrypted`]), public keys in PEM
//! (SubjectPublicKeyInfo, as `cosign.pub` and `openssl pkey -pubout` write
//! them), and new pairs. Signatures are ECDSA over SHA-256, DER-encoded,
//! with deterministic nonces (RFC 6979): the same key and message give the
//! same signature.

use std::io::Read as _;
use std::path::Path;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use pkcs8::der::pem;
use pkcs8::ObjectIdentifier;
use rand_core::{OsRng, RngCore as _};
use zeroize::Zeroizing;

use crate::encrypted;
use crate::error::{Invalid, KeyError, SignError};

/// The environment variable holding the password of an encrypted key
/// (read first).
pub const PASSWORD_ENV: &str = "NODEIMG_KEY_PASSWORD";
/// cosign's variable for the same, read when [`PASSWORD_ENV`] is not set.
pub const COSIGN_PASSWORD_ENV: &str = "COSIGN_PASSWORD";
/// The PEM label of cosign's encrypted private keys.
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign versions wrote.
pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// Largest key file read.
const KEY_FILE_MAX: u64 = 64 << 10;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// What a key of algorithm `alg` (curve `curve`) is, in words, for the
/// error that refuses it.
fn kind_of(alg: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    if alg == EC_PUBLIC_KEY {
        let name = match curve.map(|c| c.to_string()).as_deref() {
            Some("1.3.132.0.34") => "P-384 (secp384r1)".to_string(),
            Some("1.3.132.0.35") => "P-521 (secp521r1)".to_string(),
            Some("1.3.132.0.10") => "secp256k1".to_string(),
            Some(other) => format!("curve {other}"),
            None => "a curve given by explicit parameters".to_string(),
        };
        return format!("an ECDSA key on {name}");
    }
    match alg.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "an RSA key".to_string(),
        "1.3.101.112" => "an Ed25519 key".to_string(),
        "1.3.101.113" => "an Ed448 key".to_string(),
        other => format!("a key of algorithm {other}"),
    }
}

/// That the algorithm identifier names ECDSA on P-256.
fn check_p256(alg: &pkcs8::AlgorithmIdentifierRef<'_>) -> Result<(), KeyError> {
    let curve = alg.parameters_oid().ok();
    if alg.oid == EC_PUBLIC_KEY && curve == Some(P256) {
        return Ok(());
    }
    Err(KeyError::Curve {
        kind: kind_of(alg.oid, curve),
    })
}

/// The PEM blocks of `text`, in order (text around them ignored).
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(label_end) = from["-----BEGIN ".len()..].find("-----") else {
            break;
        };
        let label = &from["-----BEGIN ".len().."-----BEGIN ".len() + label_end];
        let end_line = format!("-----END {label}-----");
        let Some(end) = from.find(&end_line) else {
            // An unterminated block: given whole, the decoder says why.
            out.push(from);
            break;
        };
        out.push(&from[..end + end_line.len()]);
        rest = &from[end + end_line.len()..];
    }
    out
}

/// An ECDSA P-256 private key.
pub struct PrivateKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(P-256, public {:?})", self.public().to_pem())
    }
}

impl PrivateKey {
    /// Read a PEM private key: PKCS#8 (`PRIVATE KEY`) or cosign's encrypted
    /// format, opened with `password`.
    pub fn from_pem(text: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyError::NoPem)?;
        for block in pem_blocks(text) {
            let (label, der) =
                pem::decode_vec(block.as_bytes()).map_err(|e| KeyError::Pem(e.into()))?;
            let der = Zeroizing::new(der);
            match label {
                "PRIVATE KEY" => return Self::from_pkcs8(&der),
                SIGSTORE_LABEL | COSIGN_LABEL => {
                    let password = password.ok_or(KeyError::NeedPassword)?;
                    let plain = encrypted::open(&der, password)?;
                    return Self::from_pkcs8(&plain);
                }
                // openssl ecparam -genkey writes the parameters first.
                "EC PARAMETERS" => continue,
                "EC PRIVATE KEY" => {
                    return Err(KeyError::Label {
                        label: label.to_string(),
                        hint: "convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY -out \
                               KEY.pem",
                    })
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError::Label {
                        label: label.to_string(),
                        hint: "decrypt it (openssl pkcs8 -in KEY -out KEY.pem), or make a key \
                               encrypted in cosign's format with nodeimg keygen",
                    })
                }
                "RSA PRIVATE KEY" => {
                    return Err(KeyError::Curve {
                        kind: "an RSA key".to_string(),
                    })
                }
                "PUBLIC KEY" => {
                    return Err(KeyError::Label {
                        label: label.to_string(),
                        hint: "it is a public key: sign with the private key (verify takes the \
                               public one)",
                    })
                }
                _ => {
                    return Err(KeyError::Label {
                        label: label.to_string(),
                        hint: "give a PEM PKCS#8 P-256 private key or a cosign encrypted key",
                    })
                }
            }
        }
        Err(KeyError::NoPem)
    }

    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(KeyError::Pkcs8)?;
        check_p256(&info.algorithm)?;
        let key = p256::SecretKey::from_pkcs8_der(der).map_err(KeyError::Pkcs8)?;
        Ok(PrivateKey(key.into()))
    }

    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey(p256::ecdsa::SigningKey::random(&mut OsRng))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The DER ECDSA signature of SHA-256(`message`).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.0.sign(message);
        sig.to_der().as_bytes().to_vec()
    }

    /// The key in cosign's encrypted format (PEM), sealed with `password`,
    /// `salt` and `nonce`.
    pub fn to_encrypted_pem(
        &self,
        password: &[u8],
        salt: &[u8; encrypted::SALT_LEN],
        nonce: &[u8; encrypted::NONCE_LEN],
    ) -> Result<Zeroizing<String>, KeyError> {
        let secret = p256::SecretKey::from(&self.0);
        let der = secret.to_pkcs8_der().map_err(KeyError::Pkcs8)?.to_bytes();
        let doc = encrypted::seal(&der, password, salt, nonce)?;
        pem::encode_string(SIGSTORE_LABEL, LineEnding::LF, &doc)
            .map(Zeroizing::new)
            .map_err(|e| KeyError::Pem(e.into()))
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(p256::ecdsa::VerifyingKey);

impl PublicKey {
    /// Read a PEM public key (`PUBLIC KEY`, SubjectPublicKeyInfo).
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, KeyError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyError::NoPem)?;
        let Some(block) = pem_blocks(text).into_iter().next() else {
            return Err(KeyError::NoPem);
        };
        let (label, der) =
            pem::decode_vec(block.as_bytes()).map_err(|e| KeyError::Pem(e.into()))?;
        if label != "PUBLIC KEY" {
            let hint = if label.contains("PRIVATE KEY") {
                "it is a private key: verify with the public key (the .pub of the pair)"
            } else {
                "give a PEM public key (-----BEGIN PUBLIC KEY-----)"
            };
            return Err(KeyError::Label {
                label: label.to_string(),
                hint,
            });
        }
        let info = pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der.as_slice())
            .map_err(KeyError::Spki)?;
        check_p256(&info.algorithm)?;
        let key = p256::PublicKey::from_public_key_der(&der).map_err(KeyError::Spki)?;
        Ok(PublicKey(key.into()))
    }

    /// The key in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        p256::PublicKey::from(&self.0)
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// That `signature` (DER) is this key's ECDSA signature of
    /// SHA-256(`message`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Invalid> {
        let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| Invalid::BadSignature)?;
        self.0
            .verify(message, &sig)
            .map_err(|_| Invalid::BadSignature)
    }
}

/// A new pair: the private key in cosign's encrypted format (PEM) and the
/// public key (PEM).
pub struct KeyPair {
    /// `-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----`...
    pub private_pem: Zeroizing<String>,
    /// `-----BEGIN PUBLIC KEY-----`...
    pub public_pem: String,
}

/// A new random key pair, the private key encrypted with `password`.
pub fn generate(password: &[u8]) -> Result<KeyPair, KeyError> {
    let key = PrivateKey::generate();
    let mut salt = [0u8; encrypted::SALT_LEN];
    let mut nonce = [0u8; encrypted::NONCE_LEN];
    OsRng.try_fill_bytes(&mut salt).map_err(KeyError::Random)?;
    OsRng.try_fill_bytes(&mut nonce).map_err(KeyError::Random)?;
    Ok(KeyPair {
        private_pem: key.to_encrypted_pem(password, &salt, &nonce)?,
        public_pem: key.public().to_pem(),
    })
}

/// The password of encrypted keys: `$NODEIMG_KEY_PASSWORD`, else
/// `$COSIGN_PASSWORD` (set and empty is an empty password, as cosign
/// takes it); `None` when neither is set.
pub fn password_from_env() -> Option<Zeroizing<Vec<u8>>> {
    use std::os::unix::ffi::OsStringExt as _;
    [PASSWORD_ENV, COSIGN_PASSWORD_ENV]
        .iter()
        .find_map(std::env::var_os)
        .map(|v| Zeroizing::new(v.into_vec()))
}

/// The bytes of key file `path` (at most 64 KiB).
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SignError> {
    let io = |e| SignError::ReadKey {
        path: path.to_path_buf(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(KEY_FILE_MAX + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > KEY_FILE_MAX {
        return Err(io(std::io::Error::other(
            "larger than 64 KiB: not a key file",
        )));
    }
    Ok(buf)
}

/// Read private key file `path`, opened with `password` when encrypted.
pub fn read_private(path: &Path, password: Option<&[u8]>) -> Result<PrivateKey, SignError> {
    let text = read_key_file(path)?;
    PrivateKey::from_pem(&text, password).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Read public key file `path`.
pub fn read_public(path: &Path) -> Result<PublicKey, SignError> {
    let text = read_key_file(path)?;
    PublicKey::from_pem(&text).map_err(|e| SignError::Key {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
    const OPENSSL_P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9xNpzqpmLKmxXqJj
nweXyhM+0jzSVrdH7G8wcKm/4uGhRANCAAQ9HL8Crh/dDPgaOlbPAC6jdrNBW6jp
TR7+bHPdY6ou0Z5TapI6fvyliGWWSIl/g5keYZuWzC+danbRij9xYxf7
-----END PRIVATE KEY-----
";
    /// `openssl pkey -pubout` of it.
    const OPENSSL_P256_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPRy/Aq4f3Qz4GjpWzwAuo3azQVuo
6U0e/mxz3WOqLtGeU2qSOn78pYhllkiJf4OZHmGblswvnWp20Yo/cWMX+w==
-----END PUBLIC KEY-----
";
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`.
    const OPENSSL_P384: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDAwa3DWdo9KJhm4Febl
7Im5StIBmvUaf5pMt3bKYUuP/CUKFEg1ap/7yWiFCNQa0KyhZANiAAQrCin6+1dr
Hos+yCprwvaK+DwRhydjhXwxKm04AhgnWdO2WgN4d3TGKI1rDcOlLbufyasgAeSh
qQlAKryKXcrkJ5mcL70pPnsfSRSNwsRdsBTZzW2bJjKxB+k7HrhtQ74=
-----END PRIVATE KEY-----
";

    #[test]
    fn openssl_keys_are_read_and_sign() {
        let k = PrivateKey::from_pem(OPENSSL_P256.as_bytes(), None).unwrap();
        assert_eq!(k.public().to_pem(), OPENSSL_P256_PUB);
        let p = PublicKey::from_pem(OPENSSL_P256_PUB.as_bytes()).unwrap();
        let sig = k.sign(b"payload");
        p.verify(b"payload", &sig).unwrap();
        assert!(p.verify(b"payloaD", &sig).is_err());
        assert_eq!(sig, k.sign(b"payload"), "deterministic (RFC 6979)");
        // A password is not needed, and not used, for a plain key.
        assert!(PrivateKey::from_pem(OPENSSL_P256.as_bytes(), Some(b"x")).is_ok());
    }

    #[test]
    fn keys_of_other_curves_are_refused_by_name() {
        let e = PrivateKey::from_pem(OPENSSL_P384.as_bytes(), None).unwrap_err();
        assert!(matches!(e, KeyError::Curve { .. }));
        let m = e.to_string();
        assert!(m.contains("P-384 (secp384r1)"), "{m}");
        assert!(m.contains("ec_paramgen_curve:P-256"), "{m}");
        let e = PrivateKey::from_pem(OPENSSL_P256_PUB.as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
        let e = PublicKey::from_pem(OPENSSL_P256.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        assert!(matches!(
            PrivateKey::from_pem(b"hello", None),
            Err(KeyError::NoPem)
        ));
        let damaged = OPENSSL_P256.replace("MIGH", "M@GH");
        assert!(matches!(
            PrivateKey::from_pem(damaged.as_bytes(), None),
            Err(KeyError::Pem(_))
        ));
    }

    #[test]
    fn encrypted_keys_round_trip_and_want_their_password() {
        let pair = generate(b"pw").unwrap();
        assert!(pair
            .private_pem
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let k = PrivateKey::from_pem(pair.private_pem.as_bytes(), Some(b"pw")).unwrap();
        assert_eq!(k.public().to_pem(), pair.public_pem);
        assert!(matches!(
            PrivateKey::from_pem(pair.private_pem.as_bytes(), Some(b"wrong")),
            Err(KeyError::WrongPassword)
        ));
        let e = PrivateKey::from_pem(pair.private_pem.as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains(PASSWORD_ENV), "{e}");
        // The older label is read the same.
        let old = pair.private_pem.replace("SIGSTORE", "COSIGN");
        assert!(PrivateKey::from_pem(old.as_bytes(), Some(b"pw")).is_ok());
        // The same inputs give the same bytes.
        let k = PrivateKey::from_pem(OPENSSL_P256.as_bytes(), None).unwrap();
        let a = k.to_encrypted_pem(b"pw", &[1; 32], &[2; 24]).unwrap();
        let b = k.to_encrypted_pem(b"pw", &[1; 32], &[2; 24]).unwrap();
        assert_eq!(*a, *b);
    }

    #[test]
    fn pem_blocks_are_found_among_other_text() {
        let text = format!("comment\n{OPENSSL_P256}\ntrailing");
        assert_eq!(pem_blocks(&text).len(), 1);
        assert!(PrivateKey::from_pem(text.as_bytes(), None).is_ok());
        assert!(pem_blocks("-----BEGIN X-----\nabc").len() == 1);
        assert!(pem_blocks("none").is_empty());
    }
}
