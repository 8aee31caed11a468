//! BuildKit-compatible dump of a parsed Dockerfile (the conformance `result` format).
