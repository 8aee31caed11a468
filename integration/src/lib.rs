//! Support code for rbuild integration tests.
