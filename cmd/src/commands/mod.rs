//! One module per subcommand.

pub mod inspect;
pub mod plan;
pub mod pull;
