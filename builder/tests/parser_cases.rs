//! Table-driven cases for the Dockerfile parser beyond the BuildKit corpus: error kinds and
//! positions, directives, heredocs and locations.

use rbuild_builder::dockerfile::parser::MAX_NESTING;
use rbuild_builder::dockerfile::{parse, Arg, Location, ParseErrorKind as K, Warning};

#[test]
fn errors_name_line_and_column() {
    let deep = format!("{}RUN x", "ONBUILD ".repeat(20));
    let cases: Vec<(&str, K, usize, usize)> = vec![
        ("", K::Empty, 1, 1),
        ("# only\n\n# comments\n", K::Empty, 3, 1),
        ("FROM x\nENV PATH\n", K::MissingValue { instruction: "ENV" }, 2, 5),
        ("FROM x\n  LABEL a=b c\n", K::MissingEquals { instruction: "LABEL", word: "c".into() }, 2, 13),
        ("ENV a=b \\\n   c", K::MissingEquals { instruction: "ENV", word: "c".into() }, 2, 4),
        ("CMD [ \"echo\", [ \"x\" ] ]", K::JsonNotStringArray { instruction: "CMD".into() }, 1, 5),
        ("# escape=`\n# Escape=\\\nFROM x", K::DuplicateDirective { name: "escape".into() }, 2, 1),
        ("# escape=x\nFROM x", K::InvalidEscapeToken { token: "x".into() }, 1, 1),
        ("FROM x\nRUN <<EOF\nbody\n", K::UnterminatedHeredoc { name: "EOF".into() }, 2, 1),
        (&deep, K::NestingTooDeep { max: MAX_NESTING }, 1, 137),
    ];
    for (source, kind, line, column) in cases {
        let err = parse(source).expect_err(source);
        assert_eq!((err.kind, err.line, err.column), (kind, line, column), "{source:?}");
    }
}

#[test]
fn directives_only_at_the_top() {
    let df = parse("# Syntax = docker/dockerfile:1\n#ESCAPE=`\n# check=skip=all\nFROM x `\n  y").unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(df.instructions[0].original, "FROM x   y");
    let df = parse("# hello\n# escape=`\nFROM x").unwrap();
    assert_eq!((df.escape, df.directives.escape), ('\\', None));
    let df = parse("FROM x\n# escape=`\n# escape=`\n").unwrap();
    assert_eq!(df.directives.escape, None);
}

/// (source, index of the node, name, fd, expand, chomp, content, start, end)
type HeredocCase<'a> = (&'a str, usize, &'a str, u32, bool, bool, &'a str, usize, usize);

#[test]
fn heredocs_are_read_after_their_line() {
    let cases: Vec<HeredocCase> = vec![
        ("FROM x\nRUN <<EOF\nhello\nEOF\nRUN b", 1, "EOF", 0, true, false, "hello\n", 2, 4),
        ("RUN <<-EOT\n\techo $a\n\t\tEOT\n", 0, "EOT", 0, true, true, "\techo $a\n", 1, 3),
        ("COPY <<'EOF' /path\n$x\nEOF\n", 0, "EOF", 0, false, false, "$x\n", 1, 3),
        ("ADD 3<<\"E\" /p\r\nx\r\nE\r\n", 0, "E", 3, false, false, "x\r\n", 1, 3),
        ("ONBUILD RUN <<EOF\nx\nEOF", 0, "EOF", 0, true, false, "x\n", 1, 3),
        ("RUN a \\\n  <<EOF\nb\nEOF", 0, "EOF", 0, true, false, "b\n", 1, 4),
    ];
    for (source, idx, name, fd, expand, chomp, content, start, end) in cases {
        let df = parse(source).unwrap();
        let node = &df.instructions[idx];
        let doc = &node.heredocs[0];
        let got = (doc.name.as_str(), doc.fd, doc.expand, doc.chomp, doc.content.as_str());
        assert_eq!(got, (name, fd, expand, chomp, content), "{source:?}");
        assert_eq!((node.location.start_line, node.location.end_line), (start, end), "{source:?}");
    }
}

#[test]
fn heredocs_only_where_buildkit_reads_them() {
    for source in ["RUN [\"<<EOF\"]\nEOF", "LABEL a=<<EOF\nEOF", "RUN cat<<EOF\nEOF", "RUN 'a <<EOF'\nEOF"] {
        let df = parse(source).unwrap();
        assert!(df.instructions[0].heredocs.is_empty(), "{source:?}");
        assert_eq!(df.instructions.len(), 2, "{source:?}");
    }
    let df = parse("RUN <<A cat - /dev/fd/3 3<<B\na\nA\nb\nB\n").unwrap();
    let names: Vec<_> = df.instructions[0].heredocs.iter().map(|h| (h.name.as_str(), h.content.as_str())).collect();
    assert_eq!(names, [("A", "a\n"), ("B", "b\n")]);
}

#[test]
fn locations_and_warnings() {
    let df = parse("\u{feff}  FROM x\n\nRUN a \\\n\n# c\n  b\n").unwrap();
    let loc: Vec<_> = df.instructions.iter().map(|n| n.location).collect();
    let want = [Location { start_line: 1, end_line: 1, column: 3 }, Location { start_line: 3, end_line: 6, column: 1 }];
    assert_eq!(loc, want);
    assert_eq!(df.instructions[1].original, "RUN a   b");
    assert_eq!(df.warnings, [Warning { line: 6, message: "Empty continuation line found in: RUN a   b".into() }]);
    let df = parse("FROM x\n ONBUILD  \\\n  RUN a").unwrap();
    let Arg::Nested(child) = &df.instructions[1].args[0] else { panic!("not nested") };
    assert_eq!((child.location.start_line, child.location.end_line, child.location.column), (2, 3, 3));
    assert_eq!(df.instructions[1].location.column, 2);
}
