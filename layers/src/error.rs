//! The one error type of this crate.
//!
//! Every error carries the key path of the recipe value it is about,
//! relative to the `[[layer]]` table (for example `systemd.enable[1]`), so the
//! builder can point at the recipe file and line.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error found while rendering a layer item.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value of the recipe is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// Key path relative to the layer table, e.g. `sysctl.set."net.ipv4.ip_forward"`.
        key: String,
        /// What is wrong, in one sentence.
        message: String,
        /// What to do about it, if there is something useful to say.
        hint: Option<String>,
    },
    /// A file named by the recipe could not be read.
    #[error("{key}: cannot read {path:?}: {source}")]
    Input {
        /// Key path relative to the layer table.
        key: String,
        /// The path as written in the recipe.
        path: String,
        /// Why it could not be read.
        #[source]
        source: crate::view::InputCause,
    },
}

impl Error {
    /// An [`Error::Invalid`] without a hint.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// An [`Error::Invalid`] with a hint.
    pub fn invalid_hint(
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            key: key.into(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The key path this error is about.
    pub fn key(&self) -> &str {
        match self {
            Error::Invalid { key, .. } | Error::Input { key, .. } => key,
        }
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Invalid { hint, .. } => hint.as_deref(),
            Error::Input { .. } => None,
        }
    }

    /// The same error with its key path prefixed (`prefix.key`).
    pub fn within(mut self, prefix: &str) -> Self {
        let k = match &mut self {
            Error::Invalid { key, .. } | Error::Input { key, .. } => key,
        };
        *k = if k.is_empty() {
            prefix.to_string()
        } else if k.starts_with('[') {
            format!("{prefix}{k}")
        } else {
            format!("{prefix}.{k}")
        };
        self
    }
}
