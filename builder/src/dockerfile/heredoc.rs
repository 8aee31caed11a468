//! Heredocs (`<<EOF` … `EOF`): finding the delimiters on an instruction line and reading bodies.
//!
//! BuildKit looks for heredocs only in RUN, COPY and ADD (also under ONBUILD), never in exec
//! form. It splits the joined line into shell words (quotes and escapes kept), keeps the words
//! matching `^(\d*)<<(-?)([^<]*)$`, and reads one body per word, in order, after the line.

use super::lexer::{is_go_space, keyword_is, trim_newline, Lines};
use super::parser::ParseErrorKind;
use super::{Arg, Heredoc, Node};

impl Heredoc {
    /// The body as the instruction sees it: with `<<-`, leading tabs are removed from every line.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
    }
}

impl Heredoc {
    /// The heredoc `word` opens when the whole word is one (`<<EOF`, `<<-"EOF"`, `3<<EOF`),
    /// as BuildKit's `ParseHeredoc`; bodies stay empty.
    pub fn from_word(word: &str) -> Option<Heredoc> {
        parse_heredoc(word).ok().flatten()
    }
}

/// True when BuildKit would look for heredocs in this node.
pub(crate) fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if keyword_is(&node.keyword, "onbuild") {
        if let Some(Arg::Nested(child)) = node.args.first() {
            node = child;
        }
    }
    ["add", "copy", "run"].iter().any(|k| keyword_is(&node.keyword, k)) && !node.json_form
}

/// The heredocs a logical line opens, in order (bodies still empty).
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseErrorKind> {
    let Ok(words) = shell_words(line, Quoting::Raw) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Parses one word such as `<<EOF`, `<<-"EOF"` or `3<<EOF`; `None` when it is not a heredoc.
fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ParseErrorKind> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // Go ignores the parse error here: no digits → 0; overflow saturates.
    let fd = if digits == 0 { 0 } else { word[..digits].parse::<u32>().unwrap_or(u32::MAX) };
    let bad = || ParseErrorKind::HeredocDelimiter { word: word.to_string() };
    let cooked = shell_words(rest, Quoting::Removed).map_err(|()| bad())?;
    let [name] = cooked.as_slice() else {
        return Ok(None);
    };
    let raw = shell_words(rest, Quoting::Kept).map_err(|()| bad())?;
    let [raw_name] = raw.as_slice() else {
        return Err(bad());
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        fd,
        expand: quotes(name) == quotes(raw_name),
        chomp,
        content: String::new(),
    }))
}

/// Reads the body of `doc` from `lines` up to its terminator line (excluded).
pub(crate) fn read_body(doc: &mut Heredoc, lines: &mut Lines<'_>) -> Result<(), ParseErrorKind> {
    while let Some(raw) = lines.next_raw() {
        let mut candidate = trim_newline(raw);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Ok(());
        }
        doc.content.push_str(raw);
    }
    Err(ParseErrorKind::UnterminatedHeredoc { name: doc.name.clone() })
}

/// How [`shell_words`] treats quotes and escapes.
#[derive(Clone, Copy, PartialEq)]
enum Quoting {
    /// Quotes and escape characters are kept (BuildKit's `RawQuotes` + `RawEscapes`).
    Raw,
    /// Quotes are kept, escapes are applied (`RawQuotes`).
    Kept,
    /// Quotes are removed and escapes applied (the default mode).
    Removed,
}

/// A small subset of BuildKit's shell-word lexer, as the heredoc detection uses it: words split
/// on unquoted whitespace, `\` escapes, single and double quotes. Variables are never set, so
/// `$x` and `${...}` stay literal. Fails on an unterminated quote or `${`.
fn shell_words(src: &str, mode: Quoting) -> Result<Vec<String>, ()> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = src.chars().peekable();
    let keep_quotes = mode != Quoting::Removed;
    while let Some(c) = chars.next() {
        match c {
            c if is_go_space(c) => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if mode == Quoting::Raw {
                    word.push('\\');
                }
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '\'' => {
                in_word = true;
                if keep_quotes {
                    word.push('\'');
                }
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(()),
                    }
                }
                if keep_quotes {
                    word.push('\'');
                }
            }
            '"' => {
                in_word = true;
                if keep_quotes {
                    word.push('"');
                }
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\' | '$')) => {
                            if mode == Quoting::Raw {
                                word.push('\\');
                            }
                            word.extend(chars.next());
                        }
                        Some('$') if chars.peek() == Some(&'{') => braced_var(&mut chars, &mut word)?,
                        Some(n) => word.push(n),
                        None => return Err(()),
                    }
                }
                if keep_quotes {
                    word.push('"');
                }
            }
            '$' if chars.peek() == Some(&'{') => {
                in_word = true;
                braced_var(&mut chars, &mut word)?;
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Copies `${...}` (the `$` already consumed) literally, failing when it is not closed.
fn braced_var(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut String) -> Result<(), ()> {
    word.push('$');
    let mut depth = 0usize;
    for c in chars.by_ref() {
        word.push(c);
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Err(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, fd, expand, chomp)
    type Expected<'a> = Option<(&'a str, u32, bool, bool)>;

    #[test]
    fn heredoc_words_are_recognised() {
        let cases: &[(&str, Expected)] = &[
            ("<<EOF", Some(("EOF", 0, true, false))),
            ("<<-EOT", Some(("EOT", 0, true, true))),
            ("<<'EOF'", Some(("EOF", 0, false, false))),
            ("<<\"EOF\"", Some(("EOF", 0, false, false))),
            ("3<<EOF", Some(("EOF", 3, true, false))),
            ("<<", None),
            ("<<<EOF", None),
            ("cat<<EOF", None),
        ];
        for (word, want) in cases {
            let got = parse_heredoc(word).unwrap().map(|h| (h.name, h.fd, h.expand, h.chomp));
            let want = want.map(|(n, fd, e, c)| (n.to_string(), fd, e, c));
            assert_eq!(got, want, "{word}");
        }
    }

    #[test]
    fn several_heredocs_on_one_line() {
        let docs = heredocs_from_line("RUN cat <<A 3<<-'B' > /x").unwrap();
        let names: Vec<_> = docs.iter().map(|d| (d.name.as_str(), d.fd, d.expand, d.chomp)).collect();
        assert_eq!(names, [("A", 0, true, false), ("B", 3, false, true)]);
    }

    #[test]
    fn body_strips_tabs_only_when_chomping() {
        let mut doc = Heredoc { name: "E".into(), fd: 0, expand: true, chomp: true, content: "\t\ta\n\tb\n".into() };
        assert_eq!(doc.body(), "a\nb\n");
        doc.chomp = false;
        assert_eq!(doc.body(), "\t\ta\n\tb\n");
    }
}
