//! The full front end: find the largest face, align it for the embedder.

use image::RgbImage;

use crate::bundle::AlignSection;
use crate::face::align::{align, AlignError};
use crate::face::detect::{largest, DetectError, Detector, Face};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Align(#[from] AlignError),
}

/// Detect faces in `img`, keep the largest, and align it with `cfg`.
/// `Ok(None)` when there is no face.
pub fn largest_face_crop(
    det: &dyn Detector,
    img: &RgbImage,
    cfg: &AlignSection,
) -> Result<Option<(Face, RgbImage)>, PipelineError> {
    let faces = det.detect(img)?;
    let Some(face) = largest(&faces) else {
        return Ok(None);
    };
    let crop = align(img, &face.landmarks, cfg)?;
    Ok(Some((face.clone(), crop)))
}
