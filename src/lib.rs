//! facegate: face (and masked-face) unlock for small ARM boards, offline.
//!
//! The library is laid out by the path of a frame (see docs/ARCHITECTURE.md):
//! [`source`] yields camera frames; [`face`] holds the per-face stages
//! (detection, alignment, mask presence, embedding, synthetic masks, image
//! decoding, drawing); [`engine`] turns frames into decisions; [`gallery`]
//! stores templates and scans them; [`ident`] scales identification
//! thresholds with the gallery's size; [`daemon`] is `facegated` (service
//! layer, socket server, camera hubs, configuration, authorisation,
//! systemd). Around them: [`bundle`] verifies model bundles, [`protocol`]
//! is the wire protocol (the `facegate-proto` crate), [`cli`] is the
//! `facegate` command line, [`eval`] measures accuracy, [`bench`] measures
//! speed, [`cpu`] and [`crash`] set up the process.

pub mod bench;
pub mod bundle;
pub mod cli;
pub mod cpu;
pub mod crash;
pub mod daemon;
pub mod engine;
pub mod eval;
pub mod face;
pub mod gallery;
pub mod ident;
pub mod malloc;
pub use facegate_proto as protocol;
pub mod source;
