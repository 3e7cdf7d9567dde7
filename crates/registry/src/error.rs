//! The errors of registries: each keeps the error beneath it as its source,
//! and says the same sentence as the image errors it turns into.

use oci_client::errors::OciDistributionError;

/// What can go wrong pulling from or pushing to a registry. Every variant
/// but [`RegistryError::Usage`] and [`RegistryError::Image`] starts its
/// message with `what`: the image as the user named it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The command line is wrong (a bad reference, a refused insecure
    /// registry, unreadable credentials). Exit 2.
    #[error("{0}")]
    Usage(String),
    /// A request to the registry failed for good (after `tries`).
    #[error("{what}: {action}: {}{tries}", crate::chain(.source))]
    Request {
        /// The image.
        what: String,
        /// What was asked: `downloading blob D`, `checking blob D`...
        action: String,
        /// ` (after N attempts)`, or nothing.
        tries: String,
        /// The client's error (its causes are part of the message).
        #[source]
        source: OciDistributionError,
    },
    /// Fetching a manifest failed for good (after `tries`).
    #[error("{what}: {action}: {source}{tries}")]
    Fetch {
        /// The image.
        what: String,
        /// `fetching the manifest of REF`.
        action: String,
        /// ` (after N attempts)`, or nothing.
        tries: String,
        /// Why.
        #[source]
        source: crate::Fetch,
    },
    /// A JSON document from a registry or an image is not valid.
    #[error("{what}: {item}{source}")]
    Json {
        /// The image.
        what: String,
        /// What the document is, with its separator: `index D is not JSON: `.
        item: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The OCI layout library could not read an image to push.
    #[error("{what}: {item}{}", nodeimg_image::base::oci_msg(.source))]
    Layout {
        /// The image.
        what: String,
        /// What was read, with its separator: `D: `, `cannot read index.json: `.
        item: String,
        /// The library error (its causes are part of the message).
        #[source]
        source: ocidir::Error,
    },
    /// Reading a blob of an image to push failed.
    #[error("{what}: {item}{source}")]
    Read {
        /// The image.
        what: String,
        /// The blob, with its separator: `D: `.
        item: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something sent or read is refused, and no underlying error says more
    /// than the reason.
    #[error("{what}: {reason}")]
    Refused {
        /// The image.
        what: String,
        /// Why.
        reason: String,
    },
    /// An error of the image crate (a cache file, a descriptor).
    #[error(transparent)]
    Image(#[from] nodeimg_image::Error),
}

impl RegistryError {
    /// `what` is refused for `reason`.
    pub(crate) fn refused(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RegistryError::Refused {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// At the boundary with the image crate (its `Puller` trait and the
/// callers that expect its error): the same sentence, the causes kept.
impl From<RegistryError> for nodeimg_image::Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Usage(m) => nodeimg_image::Error::Usage(m),
            RegistryError::Image(e) => e,
            e => nodeimg_image::Error::External(Box::new(e)),
        }
    }
}

/// A failed retried operation: the last error and ` (after N attempts)`.
pub(crate) struct Retried<E> {
    /// What was attempted.
    pub(crate) action: String,
    /// ` (after N attempts)`, or nothing.
    pub(crate) tries: String,
    /// The last error.
    pub(crate) error: E,
}

impl Retried<OciDistributionError> {
    /// The registry error of `what` this failure is.
    pub(crate) fn of(self, what: impl Into<String>) -> RegistryError {
        RegistryError::Request {
            what: what.into(),
            action: self.action,
            tries: self.tries,
            source: self.error,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn errors_keep_their_cause_and_the_image_sentence() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let shown = json.to_string();
        let e = RegistryError::Json {
            what: "img".into(),
            item: "index sha256:ab is not JSON: ".into(),
            source: json,
        };
        assert_eq!(
            e.to_string(),
            format!("img: index sha256:ab is not JSON: {shown}")
        );
        assert!(e.source().unwrap().is::<serde_json::Error>());
        let sentence = e.to_string();
        let image: nodeimg_image::Error = e.into();
        assert_eq!(image.to_string(), sentence);
        assert_eq!(image.exit_code(), 1);
        assert!(
            image.source().unwrap().is::<serde_json::Error>(),
            "the cause survives the image crate's boundary"
        );

        let e = Retried {
            action: "checking blob sha256:ab".into(),
            tries: " (after 3 attempts)".into(),
            error: OciDistributionError::GenericError(Some("refused".into())),
        };
        let e = e.of("reg/x:1");
        assert_eq!(
            e.to_string(),
            "reg/x:1: checking blob sha256:ab: refused (after 3 attempts)"
        );
        assert!(e.source().unwrap().is::<OciDistributionError>());

        let usage: nodeimg_image::Error = RegistryError::Usage("bad".into()).into();
        assert_eq!(usage.exit_code(), 2);
        assert_eq!(usage.to_string(), "bad");
    }
}
