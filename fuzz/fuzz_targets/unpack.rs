//! The unpacker under arbitrary archives: applied as an ADD archive and as a layer into a
//! fresh root. `builder/tests/unpack_props.rs` runs the same check on stable in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_builder::layer::ownership::IdMaps;
use rbuild_builder::layer::root_path::RootDir;
use rbuild_builder::layer::unpack::{unpack_archive, unpack_layer, OwnershipMode, UnpackOptions};
use rbuild_builder::layer::Codec;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let Ok(root) = RootDir::open(tmp.path()) else {
        return;
    };
    let _ = unpack_archive(
        &root,
        data,
        &UnpackOptions {
            ownership: OwnershipMode::Record,
        },
    );
    let _ = unpack_layer(
        &root,
        Codec::Gzip,
        data,
        &UnpackOptions {
            ownership: OwnershipMode::Chown(IdMaps::default()),
        },
    );
});
