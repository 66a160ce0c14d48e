//! `[camera]` and `[camera.ir]`: the frame sources (a V4L2 device or a
//! replay of images) and their reopen back-off.

use std::path::PathBuf;

use serde::Deserialize;

use crate::source::{PixelFormat, V4l2Config};

use super::ConfigError;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    V4l2,
    Replay,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    pub kind: SourceKind,
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: String,
    pub timeout_ms: u64,
    /// Replay: a directory of images, or image files (looped in order).
    pub replay: Vec<PathBuf>,
    /// Reopen back-off after the source fails: first and largest delay.
    pub reopen_min_ms: u64,
    pub reopen_max_ms: u64,
    /// Optional second camera (`[camera.ir]`, same keys), an IR camera for
    /// the liveness check (`[liveness]`): streamed, reopened and reported in
    /// `status` like the main one; its last frames are kept so that a
    /// decision can use the one captured closest to its colour frame.
    pub ir: Option<Box<Camera>>,
}

impl Default for Camera {
    fn default() -> Self {
        let v = V4l2Config::default();
        Camera {
            kind: SourceKind::V4l2,
            device: v.device,
            width: v.width,
            height: v.height,
            fps: v.fps,
            format: "auto".into(),
            timeout_ms: v.timeout_ms,
            replay: Vec::new(),
            reopen_min_ms: 250,
            reopen_max_ms: 10_000,
            ir: None,
        }
    }
}

impl Camera {
    /// Check one camera table; messages name keys under `key` ("camera", "camera.ir").
    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.format.parse::<PixelFormat>() {
            return bad(format!("{key}.format: {e}"));
        }
        if !(1..=120).contains(&self.fps) {
            return bad(format!("{key}.fps {} is not in 1..=120", self.fps));
        }
        if self.width < 16 || self.height < 16 || self.width > 8192 || self.height > 8192 {
            return bad(format!(
                "{key} size {}x{} is out of range",
                self.width, self.height
            ));
        }
        if self.kind == SourceKind::Replay && self.replay.is_empty() {
            return bad(format!(
                "{key}.kind = \"replay\" needs {key}.replay = [\"<dir or images>\"]"
            ));
        }
        if self.reopen_min_ms == 0 || self.reopen_min_ms > self.reopen_max_ms {
            return bad(format!(
                "{key}.reopen_min_ms must be > 0 and <= {key}.reopen_max_ms"
            ));
        }
        Ok(())
    }

    /// The V4L2 settings.
    pub fn v4l2(&self) -> Result<V4l2Config, String> {
        Ok(V4l2Config {
            device: self.device.clone(),
            width: self.width,
            height: self.height,
            fps: self.fps,
            format: self.format.parse::<PixelFormat>()?,
            timeout_ms: self.timeout_ms,
        })
    }
}
