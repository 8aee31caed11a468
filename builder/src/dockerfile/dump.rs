//! BuildKit-compatible dump of a parsed Dockerfile (the conformance `result` format).
//!
//! One `(keyword ["--flags"] "arg" ...)` line per instruction, as BuildKit's `Node.Dump`
//! prints it, with strings quoted the way Go's `strconv.Quote` does.

use super::lexer::go_to_lower;
use super::{Arg, Dockerfile, Node};
use std::fmt::Write as _;
use unicode_general_category::get_general_category;

/// Dumps every instruction as an S-expression line, each ending in `\n`.
pub fn dump(df: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &df.instructions {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// One node without its outer parentheses (nested nodes get theirs).
fn dump_node(node: &Node) -> String {
    let mut s = go_to_lower(&node.keyword);
    if !node.flags.is_empty() {
        s.push_str(" [");
        for (i, flag) in node.flags.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&go_quote(flag));
        }
        s.push(']');
    }
    for arg in &node.args {
        s.push(' ');
        match arg {
            Arg::Word(word) => s.push_str(&go_quote(word)),
            Arg::Nested(child) => {
                s.push('(');
                s.push_str(&dump_node(child));
                s.push(')');
            }
        }
    }
    s.trim_matches(char::is_whitespace).to_string()
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes for non-printable characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_print(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_go_print(c: char) -> bool {
    let u = c as u32;
    if u <= 0xff {
        return (0x20..=0x7e).contains(&u) || ((0xa1..=0xff).contains(&u) && u != 0xad);
    }
    matches!(get_general_category(c).abbreviation().as_bytes().first(), Some(b'L' | b'M' | b'N' | b'P' | b'S'))
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quoting_matches_go() {
        let cases = [
            ("abc", r#""abc""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\t\n\r\u{07}\u{0b}\u{0c}\u{08}", r#""\t\n\r\a\v\f\b""#),
            ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("\u{a0}\u{ad}\u{feff}", r#""\u00a0\u00ad\ufeff""#),
            ("♥☃한국어😀é", "\"♥☃한국어😀é\""),
            ("\u{e0000}\u{10ffff}", r#""\U000e0000\U0010ffff""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }
}
