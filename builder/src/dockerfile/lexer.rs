//! Physical lines → logical lines, the way BuildKit's `parser.Parse` reads a Dockerfile.
//!
//! This module owns everything below the instruction level: splitting the source into
//! physical lines, parser directives (`# escape=`, `# syntax=`, `# check=`), comments, line
//! continuations with the active escape token, and the word scanners the argument splitters
//! share (`--flag` extraction and BuildKit's quote-aware `parseWords`).

use super::parser::ParseErrorKind;
use super::Directives;

/// Go's `unicode.IsSpace`: ASCII blanks plus Unicode `White_Space` (which `char::is_whitespace`
/// implements with the same set).
pub(crate) fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `unicode.IsSpace(rune(b))` on a single byte, as BuildKit's byte-wise scanners call it.
pub(crate) fn is_go_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// BuildKit's `[\t\v\f\r ]` whitespace class used to split words.
pub(crate) fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Go regexp's `\s` class: `[\t\n\f\r ]`.
fn is_regex_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0c}' | '\r' | ' ')
}

/// Go's `strings.ToLower`: simple lower-case mapping per char (`İ` → `i`, unlike Rust's `i̇`).
pub(crate) fn go_to_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// True when `keyword` lower-cases (as Go does) to `name`, which is ASCII lower case.
pub(crate) fn keyword_is(keyword: &str, name: &str) -> bool {
    if keyword.is_ascii() {
        keyword.eq_ignore_ascii_case(name)
    } else {
        go_to_lower(keyword) == name
    }
}

/// A cursor over the physical lines of a source text, counting them from 1.
pub(crate) struct Lines<'a> {
    rest: &'a str,
    /// Number of lines handed out so far (the 1-based number of the last one).
    pub(crate) line_no: usize,
}

impl<'a> Lines<'a> {
    /// Starts at the first line, dropping a UTF-8 byte-order mark.
    pub(crate) fn new(source: &'a str) -> Self {
        let rest = source.strip_prefix('\u{feff}').unwrap_or(source);
        Self { rest, line_no: 0 }
    }

    /// The next physical line including its line ending, if any is left.
    pub(crate) fn next_raw(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.line_no += 1;
        Some(line)
    }
}

/// Removes every trailing `\r` and `\n` (Go's `bytes.TrimRight(s, "\r\n")`).
pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// True when the line, after leading whitespace, starts with `#`.
pub(crate) fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_go_space).starts_with('#')
}

/// Strips a trailing line-continuation token: returns the line without it and `false`, or the
/// line unchanged and `true` when the logical line ends here. The token continues the line when
/// it is the last non-blank character and not itself preceded by the escape token.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Detects parser directives at the top of the file, until the first line that is not one.
#[derive(Debug, Default)]
pub(crate) struct DirectiveScanner {
    done: bool,
    seen: Vec<&'static str>,
}

impl DirectiveScanner {
    /// Looks at one line (newline removed); records a directive into `directives`. Returns the
    /// new escape token when the line was a valid `# escape=` directive.
    pub(crate) fn scan(&mut self, line: &str, directives: &mut Directives) -> Result<Option<char>, ParseErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let key: &'static str = match name.to_ascii_lowercase().as_str() {
            "syntax" => "syntax",
            "escape" => "escape",
            "check" => "check",
            _ => {
                self.done = true;
                return Ok(None);
            }
        };
        if self.seen.contains(&key) {
            return Err(ParseErrorKind::DuplicateDirective { name: key.to_string() });
        }
        self.seen.push(key);
        match key {
            "escape" => {
                let token = match value {
                    "`" => '`',
                    "\\" => '\\',
                    _ => return Err(ParseErrorKind::InvalidEscapeToken { token: value.to_string() }),
                };
                directives.escape = Some(token);
                Ok(Some(token))
            }
            "syntax" => {
                directives.syntax = Some(value.to_string());
                Ok(None)
            }
            _ => {
                directives.check = Some(value.to_string());
                Ok(None)
            }
        }
    }
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` and returns (name, value).
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_regex_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_regex_space).strip_prefix('=')?;
    if rest.is_empty() || rest.contains('\n') {
        return None;
    }
    let value = rest.trim_matches(is_regex_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // Only blanks after `=`: the lazy `(.+?)` still takes the last one.
    let last = rest.char_indices().last().map_or(0, |(i, _)| i);
    Some((name, &rest[last..]))
}

/// Splits a logical line into (keyword, flags, arguments, byte offset of the arguments).
///
/// The keyword keeps its case. Flags are the leading `--words` (a bare `--` ends them).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String, usize) {
    let trimmed = line.trim_matches(is_go_space);
    let base = trimmed.as_ptr() as usize - line.as_ptr() as usize;
    let Some(sep) = trimmed.find(is_token_space) else {
        return (trimmed.to_string(), Vec::new(), String::new(), line.len());
    };
    let cmd = trimmed[..sep].to_string();
    let after_sep = sep + trimmed[sep..].len() - trimmed[sep..].trim_start_matches(is_token_space).len();
    let rest = &trimmed[after_sep..];
    let (args_at, flags) = extract_flags(rest.as_bytes());
    let tail = String::from_utf8_lossy(rest.as_bytes().get(args_at..).unwrap_or_default());
    let args = tail.trim_matches(is_go_space);
    let lead = tail.len() - tail.trim_start_matches(is_go_space).len();
    (cmd, flags, args.to_string(), base + after_sep + args_at + lead)
}

/// BuildKit's `extractBuilderFlags`, byte by byte as it is written: quotes are dropped, a
/// backslash takes the next byte literally, and each byte becomes the char of the same value.
/// Returns the offset where the arguments start and the flags.
fn extract_flags(line: &[u8]) -> (usize, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(u8),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= line.len() {
        let ch = line.get(pos).copied().unwrap_or(0);
        if phase == Phase::Spaces {
            if pos == line.len() {
                break;
            }
            if is_go_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || line.get(pos + 1) != Some(&b'-') {
                return (pos, words);
            }
            phase = Phase::Word;
        }
        if pos == line.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return (line.len(), words);
        }
        match phase {
            Phase::Word if is_go_space_byte(ch) => {
                phase = Phase::Spaces;
                if word == "--" {
                    return (pos, words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
            }
            Phase::Word if ch == b'\'' || ch == b'"' => {
                phase = Phase::Quote(ch);
                blank_ok = true;
            }
            Phase::Quote(q) if ch == q => phase = Phase::Word,
            _ => {
                let mut ch = ch;
                if ch == b'\\' {
                    if pos + 1 == line.len() {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    ch = line.get(pos).copied().unwrap_or(0);
                }
                word.push(char::from(ch));
            }
        }
        pos += 1;
    }
    (line.len(), words)
}

/// BuildKit's `parseWords`: splits on whitespace outside quotes, keeping quotes and escapes.
/// Returns each word with the byte offset where it starts.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<(usize, String)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut chars = rest.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        let at_end = chars.peek().is_none();
        if phase == Phase::Spaces {
            if is_go_space(ch) {
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        match phase {
            Phase::Word if is_go_space(ch) => {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push((start, std::mem::take(&mut word)));
                }
                blank_ok = false;
                continue;
            }
            Phase::Word => {
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if at_end {
                        continue;
                    }
                    word.push(ch);
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                if ch == escape && q != '\'' {
                    if at_end {
                        phase = Phase::Word;
                        continue;
                    }
                    word.push(ch);
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push((start, word));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_matching_follows_the_regex() {
        let cases = [
            ("# escape=`", Some(("escape", "`"))),
            ("#escape = \\ ", Some(("escape", "\\"))),
            ("# syntax = docker/dockerfile:1", Some(("syntax", "docker/dockerfile:1"))),
            ("# escape=  ", Some(("escape", " "))),
            ("# escape=", None),
            ("# 1abc=x", None),
            ("# Comment here", None),
            ("FROM x", None),
        ];
        for (line, want) in cases {
            assert_eq!(match_directive(line), want, "{line:?}");
        }
    }

    #[test]
    fn continuation_needs_an_unescaped_final_token() {
        let cases = [
            ("RUN a \\", '\\', ("RUN a ", false)),
            ("RUN a \\ \t", '\\', ("RUN a ", false)),
            ("\\", '\\', ("", false)),
            ("RUN a \\\\", '\\', ("RUN a \\\\", true)),
            ("RUN a `", '`', ("RUN a ", false)),
            ("RUN a \\", '`', ("RUN a \\", true)),
        ];
        for (line, esc, want) in cases {
            assert_eq!(trim_continuation(line, esc), want, "{line:?}");
        }
    }

    #[test]
    fn flags_stop_at_the_first_plain_word() {
        let (at, flags) = extract_flags(b"--a=1 --b \"x y\" -- rest");
        assert_eq!(flags, ["--a=1", "--b"]);
        assert_eq!(at, 10);
        let (_, flags) = extract_flags(b"--x='a b' c");
        assert_eq!(flags, ["--x=a b"]);
    }
}
