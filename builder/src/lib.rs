//! rbuild's build pipeline: Dockerfile frontend → plan → executor → layers → image.

pub mod dockerfile;
pub mod dockerignore;
pub mod executor;
pub mod frontend;
pub mod image;
pub mod layer;
pub mod plan;
pub mod sandbox;
