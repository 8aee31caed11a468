//! Property test for the whole frontend: parsing plus planning (typing, flags, mounts,
//! expansion, ARG scoping, stage graph) never panics on random instruction soup.

use proptest::prelude::*;
use rbuild_builder::frontend::plan_source;
use rbuild_builder::plan::{PlanRequest, UnresolvedBases};
use std::path::Path;

/// Instruction heads and argument pieces glued together into lines.
const HEADS: &[&str] = &[
    "FROM",
    "FROM --platform=$P",
    "RUN",
    "RUN --mount=",
    "RUN --network=",
    "COPY",
    "COPY --from=",
    "COPY --chown=",
    "ADD --checksum=",
    "ENV",
    "LABEL",
    "ARG",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "HEALTHCHECK",
    "HEALTHCHECK --interval=",
    "ONBUILD",
    "VOLUME",
    "EXPOSE",
    "USER",
    "WORKDIR",
    "STOPSIGNAL",
    "MAINTAINER",
];
const PIECES: &[&str] = &[
    " ",
    "a",
    "AS",
    "as",
    "b",
    "0",
    "7",
    "scratch",
    "$A",
    "${A:-x}",
    "${A#*}",
    "${",
    "}",
    "=",
    "A=1",
    "\"",
    "'",
    "[",
    "]",
    "[\"x\"]",
    ",",
    "type=cache",
    "type=bind",
    "target=/t",
    "from=a",
    "from=0",
    "NONE",
    "CMD",
    "<<EOF\nx\nEOF",
    "--",
    "--link",
    "/",
    "..",
    "1s",
    "\\\n",
];

fn line() -> impl Strategy<Value = String> {
    (prop::sample::select(HEADS), prop::collection::vec(prop::sample::select(PIECES), 0..8))
        .prop_map(|(head, pieces)| format!("{head} {}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn planning_never_panics(lines in prop::collection::vec(line(), 1..12), target in prop::option::of("[a-c0-2]")) {
        let text = lines.join("\n");
        let mut request = PlanRequest::host();
        request.target = target;
        request.build_args.insert("A".into(), "v".into());
        let _ = plan_source(Path::new("Dockerfile"), &text, &request, &UnresolvedBases);
    }
}
