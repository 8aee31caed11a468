//! Filesystem layers: unpack, snapshot, deterministic tar writing.
