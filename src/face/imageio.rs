//! Reading images from disk with clear errors (never a panic on bad input).

use std::path::{Path, PathBuf};

use image::{ImageReader, Limits, RgbImage};

/// Images larger than this many pixels on a side are refused.
pub const MAX_SIDE: u32 = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path} is {width}x{height}: empty or too large (at most {MAX_SIDE} per side)")]
    Size {
        path: PathBuf,
        width: u32,
        height: u32,
    },
}

/// Load any supported image (JPEG, PNG; grey, RGB, RGBA, 16-bit) as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let decode = |message: String| ImageError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = ImageReader::open(path)
        .map_err(|source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_complete(path).map_err(decode)?;
    }
    let img = reader.decode().map_err(|e| decode(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Size {
            path: path.to_path_buf(),
            width: img.width(),
            height: img.height(),
        });
    }
    Ok(img.to_rgb8())
}

/// The JPEG decoder fills a truncated file's missing rows with grey; refuse
/// such files instead. A complete JPEG ends with the EOI marker (FF D9),
/// possibly followed by padding or trailer bytes; in entropy-coded data FF is
/// always followed by 00 or a restart marker, so FF D9 near the end means the
/// image data is complete.
fn check_jpeg_complete(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let tail_start = bytes.len().saturating_sub(4096).max(bytes.len() / 2);
    if bytes[tail_start..].windows(2).any(|w| w == [0xff, 0xd9]) {
        Ok(())
    } else {
        Err("truncated JPEG (no end-of-image marker)".into())
    }
}
