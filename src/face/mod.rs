//! The per-face stages, in the order a frame meets them: [`detect`] finds
//! faces and their five landmarks, [`align`] warps a face to the embedder's
//! template ([`pipeline`] chains the two), [`presence`] tells whether the
//! face wears a mask, [`embed`] turns aligned crops into embeddings.
//! Around them: [`mask`] paints synthetic masks (tests, enrolment,
//! evaluation), [`imageio`] reads images with clear errors, [`draw`]
//! annotates.

pub mod align;
pub mod detect;
pub mod draw;
pub mod embed;
pub mod imageio;
pub mod mask;
pub mod periocular;
pub mod pipeline;
pub mod presence;
