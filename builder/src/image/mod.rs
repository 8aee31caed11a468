//! Image assembly: config, manifest, OCI layout and docker-archive outputs.
