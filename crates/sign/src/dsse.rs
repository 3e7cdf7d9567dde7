//! DSSE envelopes (Dead Simple Signing Envelope, v1): a payload, its type,
//! and signatures over the pre-authentication encoding (PAE) of both:
//!
//! ```text
//! "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload
//! ```
//!
//! with lengths in ASCII decimal. The envelope is JSON:
//! `{"payloadType":...,"payload":<base64>,"signatures":[{"keyid":"","sig":<base64>}]}`,
//! as cosign writes it for attestations.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64URL};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::Invalid;
use crate::keys::{PrivateKey, PublicKey};

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The pre-authentication encoding of `payload` of type `payload_type`:
/// what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key (cosign writes an empty one).
    #[serde(default)]
    pub keyid: String,
    /// The base64 DER ECDSA signature of the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload's type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Its signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// Base64 as DSSE allows it: standard, or URL-safe.
fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(s).or_else(|e| B64URL.decode(s).map_err(|_| e))
}

impl Envelope {
    /// `payload` of type `payload_type`, signed with `key`.
    pub fn sign(key: &PrivateKey, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: B64.encode(sig),
            }],
        }
    }

    /// The envelope as JSON (on one line).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Read an envelope.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, Invalid> {
        serde_json::from_slice(bytes)
            .map_err(|e| Invalid::Payload(format!("is not a DSSE envelope: {e}")))
    }

    /// The payload, when one of the signatures is `key`'s signature of the
    /// PAE of the payload and its type.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, Invalid> {
        let payload =
            decode(&self.payload).map_err(|e| Invalid::Payload(format!("is not base64: {e}")))?;
        let message = pae(&self.payload_type, &payload);
        let mut why = Invalid::NoSignature("signatures");
        for s in &self.signatures {
            match decode(&s.sig) {
                Ok(sig) => match key.verify(&message, &sig) {
                    Ok(()) => return Ok(payload),
                    Err(e) => why = e,
                },
                Err(e) => why = Invalid::Base64(e),
            }
        }
        Err(why)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specified_encoding() {
        // The example of the DSSE specification's protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn envelopes_verify_and_a_changed_payload_does_not() {
        let key = PrivateKey::generate();
        let other = PrivateKey::generate();
        let env = Envelope::sign(&key, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let back = Envelope::parse(&env.to_json()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.verify(&key.public()).unwrap(), b"{\"a\":1}");
        assert!(matches!(
            back.verify(&other.public()),
            Err(Invalid::BadSignature)
        ));
        let mut changed = env.clone();
        changed.payload = B64.encode(b"{\"a\":2}");
        assert!(matches!(
            changed.verify(&key.public()),
            Err(Invalid::BadSignature)
        ));
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(retyped.verify(&key.public()).is_err());
        let mut unsigned = env;
        unsigned.signatures.clear();
        assert!(matches!(
            unsigned.verify(&key.public()),
            Err(Invalid::NoSignature(_))
        ));
        assert!(Envelope::parse(b"{}").is_err());
    }
}
