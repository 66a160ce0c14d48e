//! Frame sources: where the daemon's frames come from.
//!
//! Every source (V4L2 camera, replay of image files) implements [`FrameSource`].
//! A source that fails with [`SourceError::Gone`] is expected to be reopened by
//! its owner with back-off; every other error is about one frame or the
//! configuration.

pub mod replay;
pub mod v4l2;

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

/// Pixel format asked of a V4L2 camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Prefer MJPEG, then YUYV, then GREY.
    Auto,
    Mjpeg,
    Yuyv,
    /// 8-bit luminance (what most IR cameras offer), expanded to grey RGB.
    Grey,
}

impl std::str::FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(PixelFormat::Auto),
            "mjpeg" | "mjpg" => Ok(PixelFormat::Mjpeg),
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            "grey" | "gray" | "y8" => Ok(PixelFormat::Grey),
            other => Err(format!(
                "unknown pixel format {other:?} (expected auto, mjpeg, yuyv or grey)"
            )),
        }
    }
}

/// Settings of a V4L2 camera (filled from the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Config {
    pub device: std::path::PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: PixelFormat,
    /// How long `next_frame` waits for the driver before [`SourceError::Timeout`].
    pub timeout_ms: u64,
}

impl Default for V4l2Config {
    fn default() -> Self {
        V4l2Config {
            device: "/dev/video0".into(),
            width: 640,
            height: 480,
            fps: 15,
            format: PixelFormat::Auto,
            timeout_ms: 2000,
        }
    }
}
