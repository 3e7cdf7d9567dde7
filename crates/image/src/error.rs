//! The errors of images: an unusable input image, I/O with its context, the
//! OCI layout library, a busy output.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading and writing images. [`Error::exit_code`] maps
/// each kind to the CLI's documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong. Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The base image or another image given as input is unusable, and
    /// no underlying error says more than the message. Exit 1.
    #[error("{what}: {message}")]
    Image {
        /// Which image (the reference as the user wrote it).
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// A step on `what` failed for a reason another library gives (a
    /// download, a signature, a package, a registry): the cause is kept as
    /// the error's `source()`. Exit 1.
    #[error("{what}: {source}")]
    Cause {
        /// What was being done, or on what.
        what: String,
        /// Why, with its own causes.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The error of a crate that serves this one through a trait (a
    /// registry behind [`crate::base::Puller`]), whole: its message and its
    /// causes are its own. Exit 1.
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Reading an input image (a file, a blob, a tar stream) failed.
    #[error("{what}: {context}: {source}")]
    Read {
        /// Which image (or layer), as named in messages.
        what: String,
        /// What was being read: `cannot open the tarball`, `reading`...
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The OCI layout library could not read an input image.
    #[error("{what}: {context}: {}", crate::base::oci_msg(.source))]
    Layout {
        /// Which image.
        what: String,
        /// What was being read.
        context: String,
        /// The library error (its causes are part of the message).
        #[source]
        source: ocidir::Error,
    },
    /// An image's layout, archive or pulled copy refused a read.
    #[error("{what}: {context}: {source}")]
    Source {
        /// Which image.
        what: String,
        /// What was being read: `cannot read index.json`, `layer blob D`...
        context: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A tar entry of an input image is refused.
    #[error("{what}: {source}")]
    Entry {
        /// Which image (or layer).
        what: String,
        /// Why.
        #[source]
        source: EntryError,
    },
    /// A blob does not hash to its digest.
    #[error("{what}: {item} does not match its digest (found {found}); the image is damaged")]
    Digest {
        /// Which image.
        what: String,
        /// The blob: `layer blob D`, `manifest D`...
        item: String,
        /// The digest of what was read.
        found: String,
    },
    /// A layer's uncompressed digest is not the diff_id its config lists.
    #[error(
        "{what}: layer {layer}: uncompressed digest {found} differs from the config's \
         diff_id {expected}"
    )]
    DiffId {
        /// Which image.
        what: String,
        /// The layer blob's digest.
        layer: String,
        /// The digest of the uncompressed layer.
        found: String,
        /// The config's diff_id.
        expected: String,
    },
    /// A JSON document of an image is not valid.
    #[error("{what}: {item} is not valid: {source}")]
    Json {
        /// Which image.
        what: String,
        /// The document: `manifest D`, `config D`...
        item: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Serialising a JSON document of the output image failed.
    #[error("image: writing {item}: {source}")]
    Encode {
        /// The document.
        item: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Building the metadata of the output image failed.
    #[error("image: {context}: {source}")]
    Spec {
        /// What was being built.
        context: String,
        /// The OCI specification library error.
        #[source]
        source: ocidir::oci_spec::OciSpecError,
    },
    /// An I/O operation failed. Exit 1.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another build is writing the same output (it holds its lock). Exit 1.
    #[error(
        "{}: {holder} is writing this output (it holds {}); wait for it to finish, \
         or write to another path with -o",
        .path.display(),
        .lock.display()
    )]
    OutputBusy {
        /// The output path.
        path: PathBuf,
        /// Who holds the lock: `another nodeimg build (pid N)`.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The OCI layout library failed. Exit 1.
    #[error("{context}: {source}")]
    Oci {
        /// What we were doing.
        context: String,
        /// The library error.
        #[source]
        source: ocidir::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage errors,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Reading `what` failed while doing `context`.
    pub fn read(
        what: impl Into<String>,
        context: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Read {
            what: what.into(),
            context: context.into(),
            source,
        }
    }

    /// A tar entry of `what` is refused.
    pub fn entry(what: impl Into<String>, source: EntryError) -> Self {
        Error::Entry {
            what: what.into(),
            source,
        }
    }

    /// The layout library failed reading `what` while doing `context`.
    pub fn layout(
        what: impl Into<String>,
        context: impl Into<String>,
        source: ocidir::Error,
    ) -> Self {
        Error::Layout {
            what: what.into(),
            context: context.into(),
            source,
        }
    }

    /// The source of `what` refused a read while doing `context`.
    pub(crate) fn source_error(
        what: impl Into<String>,
        context: impl Into<String>,
        source: SourceError,
    ) -> Self {
        Error::Source {
            what: what.into(),
            context: context.into(),
            source,
        }
    }

    /// `what` failed because of `source`, which stays the error's cause.
    pub fn cause(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Cause {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An image error with nothing beneath it but `message`.
    pub fn image(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Image {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Attach a context sentence to I/O results.
pub trait IoContext<T> {
    /// Wrap an I/O error with `context` (computed only on error).
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for std::result::Result<T, ocidir::Error> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|source| Error::Oci {
            context: context(),
            source,
        })
    }
}

/// Why an OCI layout, archive or pulled image refused a read (see
/// [`crate::base::OciSource`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file of the layout could not be opened.
    #[error("cannot open {name}: {source}")]
    Open {
        /// The file, relative to the layout.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata of a file of the layout could not be read.
    #[error("cannot read the metadata of {name}: {source}")]
    Metadata {
        /// The file, relative to the layout.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the layout is a FIFO, a socket, a device or a directory.
    #[error("{name} is not a regular file; an image layout holds only regular files")]
    NotRegular {
        /// The file, relative to the layout.
        name: String,
    },
    /// An OCI archive is not a regular file.
    #[error("not a regular file")]
    ArchiveNotRegular,
    /// `index.json` is larger than we read.
    #[error("index.json is {len} bytes, over the limit of {} MiB", crate::base::INDEX_MAX >> 20)]
    IndexTooLarge {
        /// Its size.
        len: u64,
    },
    /// `index.json` does not parse.
    #[error("index.json is not valid: {0}")]
    InvalidIndex(#[source] ocidir::oci_spec::OciSpecError),
    /// A descriptor names a digest other than sha256.
    #[error("unsupported digest {0:?} (only sha256 is read)")]
    UnsupportedDigest(String),
    /// A blob's size is not the one its descriptor says.
    #[error("the blob is {len} bytes, its descriptor says {expected}; the image is damaged")]
    Size {
        /// The size of the file.
        len: u64,
        /// The descriptor's size.
        expected: u64,
    },
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The OCI layout library failed (its causes are part of the message).
    #[error("{}", crate::base::oci_msg(.0))]
    Layout(#[from] ocidir::Error),
}

/// Why a tar entry of an input image is refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A path (or link target) is longer than [`crate::limits::PATH_MAX`].
    #[error(
        "{what} {shown} is {len} bytes long, over the limit of {} bytes",
        crate::limits::PATH_MAX
    )]
    PathTooLong {
        /// `entry` or `the link target of entry`.
        what: &'static str,
        /// The first bytes of the path, quoted.
        shown: String,
        /// Its length.
        len: usize,
    },
    /// A path (or link target) has more than
    /// [`crate::limits::PATH_DEPTH_MAX`] components.
    #[error(
        "{what} {shown} has {depth} components, over the limit of {}",
        crate::limits::PATH_DEPTH_MAX
    )]
    PathTooDeep {
        /// `entry` or `the link target of entry`.
        what: &'static str,
        /// The first bytes of the path, quoted.
        shown: String,
        /// Its number of components.
        depth: usize,
    },
    /// The link target of an entry is refused.
    #[error("{source} ({entry})")]
    LinkTarget {
        /// The first bytes of the entry's path, quoted.
        entry: String,
        /// Why.
        #[source]
        source: Box<EntryError>,
    },
    /// A file to keep in memory would take the kept bytes over
    /// [`crate::limits::KEPT_TOTAL_MAX`].
    #[error(
        "keeping {path} ({size} bytes) in memory would take the base's files kept \
         in memory over the limit of {} MiB; the base's system databases or unit \
         folders are too large",
        crate::limits::KEPT_TOTAL_MAX >> 20
    )]
    KeepBudget {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The entry's name is refused.
    #[error("entry {name:?}: {reason}")]
    Name {
        /// The name, as read.
        name: String,
        /// The path rule it breaks.
        #[source]
        reason: nodeimg_layers::PathError,
    },
    /// The entry's name holds a reserved code point.
    #[error("entry {name:?}: {source}")]
    Reserved {
        /// The name, as read.
        name: String,
        /// The code point.
        #[source]
        source: crate::tarname::ReservedCodePoint,
    },
    /// The entry's mode field does not parse.
    #[error("entry {name:?}: mode: {source}")]
    Mode {
        /// The name.
        name: String,
        /// The tar reader's error.
        #[source]
        source: std::io::Error,
    },
    /// The entry's uid or gid is over 32 bits.
    #[error("entry {name:?}: {field} out of range")]
    OwnerRange {
        /// The name.
        name: String,
        /// `uid` or `gid`.
        field: &'static str,
    },
    /// A whiteout names no file.
    #[error("whiteout {name:?}: {reason}")]
    Whiteout {
        /// The whiteout's name.
        name: String,
        /// The path rule it breaks.
        #[source]
        reason: nodeimg_layers::PathError,
    },
    /// A link has no target.
    #[error("link {name:?} has no target")]
    NoTarget {
        /// The link's name.
        name: String,
    },
    /// A link's target holds a reserved code point.
    #[error("link {name:?}: its target: {source}")]
    Target {
        /// The link's name.
        name: String,
        /// The code point.
        #[source]
        source: crate::tarname::ReservedCodePoint,
    },
    /// A hard link's target is refused.
    #[error("hard link {name:?} -> {target:?}: {reason}")]
    HardLink {
        /// The link's name.
        name: String,
        /// Its target.
        target: String,
        /// The path rule it breaks.
        #[source]
        reason: nodeimg_layers::PathError,
    },
    /// Reading the entry's data failed.
    #[error("reading {name:?}: {source}")]
    Read {
        /// The name.
        name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The entry is a sparse file.
    #[error(
        "entry {name:?} is a sparse file; sparse files are not supported: pack the base \
         without --sparse (GNU tar -S), so that the file is stored whole"
    )]
    Sparse {
        /// The name (the real one of a PAX sparse file).
        name: String,
    },
    /// A record of the entry's PAX header cannot be read.
    #[error(
        "entry {name:?}: a record of its PAX extended header cannot be read (an \
         extended attribute whose value holds a newline byte?); nodeimg does not \
         hand on an entry with attributes lost: remove the attribute from the base"
    )]
    PaxRecord {
        /// The name.
        name: String,
        /// The tar reader's error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn messages_embed_their_cause_and_keep_it() {
        let e = Error::read(
            "rootfs:r.tar",
            "cannot open the tarball",
            std::io::Error::other("denied"),
        );
        assert_eq!(
            e.to_string(),
            "rootfs:r.tar: cannot open the tarball: denied"
        );
        assert_eq!(e.source().unwrap().to_string(), "denied");

        let e = Error::source_error(
            "oci:img",
            "cannot read index.json",
            SourceError::IndexTooLarge { len: 17 << 20 },
        );
        assert_eq!(
            e.to_string(),
            "oci:img: cannot read index.json: index.json is 17825792 bytes, over the limit of 16 MiB"
        );
        assert!(matches!(
            e.source().unwrap().downcast_ref::<SourceError>(),
            Some(SourceError::IndexTooLarge { .. })
        ));

        let long = EntryError::PathTooLong {
            what: "the link target of entry",
            shown: "\"a\"".into(),
            len: 5000,
        };
        let e = Error::entry(
            "layer",
            EntryError::LinkTarget {
                entry: "\"l\"".into(),
                source: Box::new(long),
            },
        );
        assert_eq!(
            e.to_string(),
            "layer: the link target of entry \"a\" is 5000 bytes long, over the limit of 4096 \
             bytes (\"l\")"
        );
        let inner = e.source().unwrap().source().unwrap();
        assert!(inner.to_string().starts_with("the link target"), "{inner}");
    }

    #[test]
    fn digests_keep_the_sentence_of_a_damaged_image() {
        let e = Error::Digest {
            what: "oci:img".into(),
            item: "manifest sha256:ab".into(),
            found: "sha256:cd".into(),
        };
        assert_eq!(
            e.to_string(),
            "oci:img: manifest sha256:ab does not match its digest (found sha256:cd); the \
             image is damaged"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
    }
}
