//! Parsing plus planning (typing, expansion, ARG scoping, stage graph) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::frontend::plan_source;
use rbuild_builder::plan::{PlanRequest, UnresolvedBases};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = plan_source(Path::new("Dockerfile"), &text, &PlanRequest::host(), &UnresolvedBases);
});
