//! One module per subcommand.

pub mod build;
pub mod build_multi;
pub mod index;
pub mod cache;
pub mod inspect;
pub mod plan;
pub mod pull;
pub mod warm;
pub mod unshare;
