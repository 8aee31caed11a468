//! ONBUILD triggers of a base: each trigger line is parsed and typed like a Dockerfile line
//! and planned right after FROM, as if written there (Docker's semantics). Triggers that
//! Docker refuses (ONBUILD, FROM, MAINTAINER) are errors here too.

use super::{PlanError, PlanErrorKind};
use crate::dockerfile::instruction::{Instruction, Located};
use crate::dockerfile::Location;

/// The typed instructions of `triggers`, located at the FROM that inherits them.
pub(super) fn triggers(triggers: &[String], from: Location) -> Result<Vec<Located>, PlanError> {
    triggers.iter().map(|t| trigger(t, from)).collect()
}

fn trigger(text: &str, from: Location) -> Result<Located, PlanError> {
    let fail = |reason: String| PlanError {
        location: Some(from),
        kind: PlanErrorKind::Onbuild { trigger: text.into(), reason },
    };
    let parsed = crate::dockerfile::parse(text).map_err(|e| fail(e.to_string()))?;
    let [node] = parsed.instructions.as_slice() else {
        return Err(fail("a trigger must hold exactly one instruction".into()));
    };
    let keyword = node.command();
    if matches!(keyword.as_str(), "onbuild" | "from" | "maintainer") {
        return Err(fail(format!("{} isn't allowed as an ONBUILD trigger", keyword.to_ascii_uppercase())));
    }
    let instruction = Instruction::from_node(node).map_err(|e| fail(e.to_string()))?;
    Ok(Located { instruction, location: from, original: text.trim().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location { start_line: 3, end_line: 3, column: 1 };

    #[rstest::rstest]
    #[case("RUN echo hi", Ok("RUN"))]
    #[case("COPY a /b", Ok("COPY"))]
    #[case("ONBUILD RUN x", Err("ONBUILD isn't allowed"))]
    #[case("FROM busybox", Err("FROM isn't allowed"))]
    #[case("MAINTAINER me", Err("MAINTAINER isn't allowed"))]
    #[case("RUN a\nRUN b", Err("exactly one"))]
    #[case("FRM x", Err("unknown instruction"))]
    fn types_triggers(#[case] text: &str, #[case] want: Result<&str, &str>) {
        match (trigger(text, AT), want) {
            (Ok(l), Ok(k)) => {
                assert_eq!(l.instruction.keyword(), k);
                assert_eq!(l.location, AT);
            }
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
}
