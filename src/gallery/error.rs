//! The single error type of the gallery.

use std::path::PathBuf;

use super::types::ModelId;

/// Everything that can go wrong in the gallery. Messages never contain
/// embeddings.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// A filesystem operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The embedded database (sled) reported an error.
    #[error("gallery database error: {0}")]
    Db(#[from] sled::Error),

    /// The gallery was enrolled with another face model: scores would be meaningless.
    #[error(
        "gallery was built with model {stored_name} (sha256 {stored_sha}); this daemon runs \
         {running_name} (sha256 {running_sha}); re-enrol users with `facegate enroll` or import \
         a gallery made with {running_name}",
        stored_name = stored.name, stored_sha = stored.sha256,
        running_name = running.name, running_sha = running.sha256
    )]
    ModelMismatch { stored: ModelId, running: ModelId },

    /// The gallery stores embeddings of another dimension than requested.
    #[error("gallery stores {stored}-dimensional embeddings but {requested} were requested")]
    DimensionMismatch { stored: usize, requested: usize },

    /// An embedding passed in has the wrong length.
    #[error("embedding has {got} values, the gallery needs {expected}")]
    WrongEmbeddingDim { expected: usize, got: usize },

    /// An embedding passed in is not finite or not L2-normalised.
    #[error("invalid embedding: {0}")]
    InvalidEmbedding(String),

    /// The on-disk schema is newer (or older) than this code understands.
    #[error("gallery schema version {found} is not supported (this build supports {supported})")]
    UnsupportedSchema { found: u32, supported: u32 },

    /// The directory or one of its files can be accessed by other users.
    #[error(
        "refusing to open gallery: {path} has mode {mode:04o}, which other users can access; \
         run `chmod -R go-rwx` on the gallery directory or set allow_insecure_permissions"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    /// Another process (or a still-closing instance) holds the gallery's lock.
    #[error("gallery {0} is locked by another process (is another facegate running?)")]
    Locked(PathBuf),

    /// No gallery at this path and creation was not requested.
    #[error("no gallery at {0} (use create to make a new one)")]
    NotFound(PathBuf),

    /// A gallery already exists where a new one was to be created.
    #[error("a gallery already exists at {0}")]
    AlreadyExists(PathBuf),

    /// The directory holds a database that is not (or not yet) a facegate gallery.
    #[error("{0} is not an initialised facegate gallery")]
    NotAGallery(PathBuf),

    /// A user name is not acceptable.
    #[error("invalid user name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// `add_user` for a name that exists.
    #[error("user {0:?} already exists")]
    UserExists(String),

    /// The named user does not exist.
    #[error("unknown user {0:?}")]
    UnknownUser(String),

    /// The template id does not exist.
    #[error("unknown template id {0}")]
    UnknownTemplate(u64),

    /// A stored record could not be decoded.
    #[error("corrupt gallery record: {0}")]
    Corrupt(String),

    /// An export file does not start with the gallery magic bytes.
    #[error("{0} is not a facegate gallery export (bad magic)")]
    ExportBadMagic(PathBuf),

    /// An export file of an unknown format version.
    #[error(
        "gallery export format version {found} is not supported (this build reads {supported})"
    )]
    ExportUnsupportedVersion { found: u32, supported: u32 },

    /// An export file is shorter than its header says.
    #[error("gallery export is truncated: expected {expected} bytes, found {found}")]
    ExportTruncated { expected: u64, found: u64 },

    /// An export file is longer than its header says.
    #[error("gallery export has {extra} unexpected trailing bytes")]
    ExportTrailingData { extra: u64 },

    /// The sha256 of an export file does not match: it was modified or damaged.
    #[error("gallery export checksum mismatch: the file was modified or damaged")]
    ExportChecksumMismatch,

    /// An export file was made with another face model.
    #[error(
        "export file was made with model {file_name} (sha256 {file_sha}) but this gallery uses \
         {gallery_name} (sha256 {gallery_sha}); re-enrol users with `facegate enroll` instead",
        file_name = file.name, file_sha = file.sha256,
        gallery_name = gallery.name, gallery_sha = gallery.sha256
    )]
    ImportModelMismatch { file: ModelId, gallery: ModelId },

    /// `ImportMode::IntoEmpty` on a gallery that has users.
    #[error("import into an empty gallery requested, but the gallery has {users} users")]
    ImportTargetNotEmpty { users: usize },

    /// Scan arguments are invalid (e.g. k = 0 or a query of the wrong size).
    #[error("invalid scan request: {0}")]
    InvalidQuery(String),
}

impl GalleryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GalleryError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<sled::transaction::TransactionError<GalleryError>> for GalleryError {
    fn from(e: sled::transaction::TransactionError<GalleryError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => GalleryError::Db(e),
        }
    }
}

/// Result alias of the gallery.
pub type Result<T> = std::result::Result<T, GalleryError>;
