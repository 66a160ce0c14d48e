//! Frame sources: where the daemon's frames come from.
//!
//! Every source (V4L2 camera, replay of image files) implements [`FrameSource`].
//! A source that fails with [`SourceError::Gone`] is expected to be reopened by
//! its owner with back-off; every other error is about one frame or the
//! configuration.

use std::time::Instant;

use image::RgbImage;

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// RGB pixels.
    pub image: RgbImage,
    /// Sequence number within this source, starting at 0 after each open.
    pub seq: u64,
    /// When the frame was captured (or, for replay, emitted).
    pub captured: Instant,
}

/// What can go wrong when reading frames.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The device or directory is no longer there (unplugged, EIO, removed).
    /// The owner should drop the source and reopen it with back-off.
    #[error("frame source gone: {0}")]
    Gone(String),
    /// No frame arrived within the source's own timeout.
    #[error("no frame within {0} ms")]
    Timeout(u64),
    /// One frame could not be decoded; the next one may be fine.
    #[error("cannot decode frame: {0}")]
    Decode(String),
    /// The path exists but is not something that gives frames.
    #[error("{0}")]
    NotACamera(String),
    /// The configuration asks for something the source cannot do.
    #[error("frame source configuration: {0}")]
    Config(String),
}

/// A stream of frames. `next_frame` blocks until the next frame is due.
pub trait FrameSource: Send {
    /// A short human-readable name (device path, directory), for logs and status.
    fn name(&self) -> &str;
    /// The next frame, blocking at most for the source's frame period plus its timeout.
    fn next_frame(&mut self) -> Result<Frame, SourceError>;
}
