//! Typed Dockerfile instructions.
