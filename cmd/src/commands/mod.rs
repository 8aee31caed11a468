//! One module per subcommand.

pub mod build;
pub mod build_multi;
pub mod cache;
pub mod index;
pub mod inspect;
pub mod plan;
pub mod pull;
pub mod unshare;
pub mod warm;
