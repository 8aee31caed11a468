//! Storage: cache keys, blob store, registry client.
//!
//! Everything rbuild pulls and pushes goes through [`registry::RegistryClient`]; every blob it
//! keeps locally lives in a [`store::BlobStore`]. OCI types used across the workspace are
//! re-exported from [`oci`] so that all crates agree on one `Digest`, one `Descriptor`.

pub mod cache_dir;
pub mod index;
pub mod key;
pub mod oci;
pub mod platform;
pub mod push_record;
pub mod reference;
pub mod registry;
pub mod remote_cache;
pub mod state;
pub mod store;
