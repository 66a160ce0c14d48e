//! facegate: face (and masked-face) unlock for small ARM boards, offline.
//!
//! The library is layered like the product (see docs/ARCHITECTURE.md):
//! [`bundle`] verifies model bundles, [`embed`] turns aligned crops into
//! embeddings, [`imageio`] reads images with clear errors, [`bench`] measures.

pub mod align;
pub mod bench;
pub mod bundle;
pub mod detect;
pub mod draw;
pub mod embed;
pub mod imageio;
pub mod mask;
pub mod pipeline;
pub mod presence;
