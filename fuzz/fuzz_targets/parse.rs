//! The parser never panics, and its dump never panics either.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(df) = rbuild_builder::dockerfile::parse(&text) {
        let _ = rbuild_builder::dockerfile::dump::dump(&df);
    }
});
