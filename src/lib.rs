//! facegate: face (and masked-face) unlock for small ARM boards, offline.
//!
//! The library is layered like the product (see docs/ARCHITECTURE.md):
//! [`bundle`] verifies model bundles, [`detect`] finds faces and their five
//! landmarks, [`align`] warps a face to the embedder's template,
//! [`pipeline`] chains the two, [`embed`] turns aligned crops into
//! embeddings, [`gallery`] stores templates and scans them, [`mask`] paints
//! synthetic masks (for tests and evaluation), [`presence`] tells whether a
//! face wears one, [`imageio`] reads images with clear errors, [`draw`]
//! annotates, [`bench`] measures.

pub mod align;
pub mod auth;
pub mod bench;
pub mod bundle;
pub mod client;
pub mod config;
pub mod cpu;
pub mod crash;
pub mod daemon;
pub mod detect;
pub mod docs;
pub mod draw;
pub mod embed;
pub mod engine;
pub mod eval;
pub mod gallery;
pub mod imageio;
pub mod mask;
pub mod pipeline;
pub mod presence;
pub mod protocol;
pub mod source;
