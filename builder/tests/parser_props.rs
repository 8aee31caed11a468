//! Property tests for the Dockerfile parser: arbitrary input never panics, parsing is
//! deterministic, and every location of a successful parse lies inside the file.

use proptest::prelude::*;
use rbuild_builder::dockerfile::dump::dump;
use rbuild_builder::dockerfile::{parse, Arg, Node};

/// Pieces that exercise the parser's special cases when glued together at random.
const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "run",
    "COPY",
    "ADD",
    "ENV",
    "LABEL",
    "ARG",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "HEALTHCHECK",
    "ONBUILD",
    "VOLUME",
    "EXPOSE",
    "USER",
    "WORKDIR",
    "FOO",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=a\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "3<<E",
    "EOF\n",
    "\tEOF\n",
    "E\n",
    "[",
    "]",
    "\"",
    "'",
    ",",
    "--from=a",
    "--",
    "=",
    "a=b",
    "${",
    "}",
    "$x",
    "\u{a0}",
    "é",
    "\u{feff}",
    "\u{0}",
    "[\"a\", \"b\"]",
    "[[",
    "{}",
    "1",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.concat())
}

/// Every (start, end, column) of a node and the nodes nested in it.
fn locations(node: &Node, out: &mut Vec<(usize, usize, usize)>) {
    out.push((node.location.start_line, node.location.end_line, node.location.column));
    for arg in &node.args {
        if let Arg::Nested(child) = arg {
            locations(child, out);
        }
    }
}

fn check(source: &str) -> Result<(), TestCaseError> {
    let first = parse(source);
    let second = parse(source);
    prop_assert_eq!(&first, &second);
    let line_count = source.split_inclusive('\n').count();
    match first {
        Ok(df) => {
            prop_assert!(!df.instructions.is_empty());
            prop_assert_eq!(dump(&df), dump(&parse(source).unwrap()));
            let mut locs = Vec::new();
            df.instructions.iter().for_each(|n| locations(n, &mut locs));
            for (start, end, column) in locs {
                prop_assert!(1 <= start && start <= end && end <= line_count, "{start}-{end} of {line_count}");
                prop_assert!(column >= 1);
            }
            for w in &df.warnings {
                prop_assert!(1 <= w.line && w.line <= line_count);
            }
        }
        Err(e) => {
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(e.line <= line_count.max(1), "error line {} of {line_count}", e.line);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check(&source)?;
    }

    #[test]
    fn dockerfile_token_soup_never_panics(source in token_soup()) {
        check(&source)?;
    }
}
