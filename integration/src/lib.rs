//! Support code for rbuild integration tests: a real registry process ([`registry`]) and base
//! images made offline ([`images`]).

pub mod images;
pub mod registry;

pub use images::{push_base_images, BaseImages, Flavor};
pub use registry::{TestRegistry, Variant};
