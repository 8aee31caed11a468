//! Support code for rbuild integration tests: a real registry process ([`registry`]), base
//! images made offline ([`images`]), a Kubernetes pod emulator on runc ([`pod`]) and a
//! fault-injecting proxy ([`fault_proxy`]).

pub mod fault_proxy;
pub mod images;
pub mod pod;
pub mod registry;

pub use images::{push_base_images, BaseImages, Flavor};
pub use registry::{TestRegistry, Variant};
