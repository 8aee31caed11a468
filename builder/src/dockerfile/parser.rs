//! Low-level Dockerfile parser (BuildKit's `parser.Parse`).
//!
//! Text → [`Dockerfile`]: directives, comments, continuations and heredocs come from
//! [`super::lexer`] and [`super::heredoc`]; this module drives the line loop and splits each
//! instruction's arguments the way BuildKit's per-instruction line parsers do. No variable
//! expansion and no instruction validation happen here (unknown keywords parse).

use super::heredoc::{can_contain_heredoc, heredocs_from_line, read_body};
use super::lexer::{
    go_to_lower, is_comment, is_go_space, is_go_space_byte, is_token_space, parse_words, split_command,
    trim_continuation, trim_newline, DirectiveScanner, Lines,
};
use super::{Arg, Directives, Dockerfile, Location, Node, Warning};

/// ONBUILD may nest instructions; deeper nesting than this is refused instead of recursing.
pub const MAX_NESTING: usize = 16;

/// A parse failure with its position (1-based line and column) and the offending line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based physical line.
    pub line: usize,
    /// 1-based column (in chars) of the offending token, else of the instruction keyword.
    pub column: usize,
    /// The physical source line, for quoting in messages.
    pub line_text: String,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// What went wrong while parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but blank lines, comments and directives.
    #[error("file with no instructions")]
    Empty,
    /// A parser directive given twice (names compare case-insensitively).
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { name: String },
    /// `# escape=` with something other than `` ` `` or `\`.
    #[error("invalid escape token '{token}' does not match ` or \\")]
    InvalidEscapeToken { token: String },
    /// Legacy `ENV key` / `LABEL key` without a value.
    #[error("{instruction} must have two arguments")]
    MissingValue { instruction: &'static str },
    /// `ENV a=b c`: once the first word is `k=v`, every word must be.
    #[error("{instruction}: can't find = in {word:?}, must be of the form name=value")]
    MissingEquals { instruction: &'static str, word: String },
    /// Exec form whose JSON array holds something other than strings.
    #[error("{instruction}: when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStringArray { instruction: String },
    /// End of file before the heredoc's terminator line.
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc { name: String },
    /// A heredoc delimiter the shell-word lexer could not read.
    #[error("invalid heredoc delimiter {word:?}")]
    HeredocDelimiter { word: String },
    /// ONBUILD chains deeper than [`MAX_NESTING`].
    #[error("instructions nested deeper than {max} levels")]
    NestingTooDeep { max: usize },
}

/// A logical line: physical lines joined, with where each piece came from.
struct LogicalLine {
    text: String,
    /// (byte offset in `text`, physical line, 1-based column where the piece starts).
    pieces: Vec<(usize, usize, usize)>,
}

impl LogicalLine {
    /// Maps a byte offset in the joined text back to (line, column).
    fn position(&self, offset: usize) -> (usize, usize) {
        let idx = self.pieces.partition_point(|p| p.0 <= offset).saturating_sub(1);
        let Some(&(start, line, col)) = self.pieces.get(idx) else {
            return (1, 1);
        };
        let end = offset.min(self.text.len());
        let chars = self.text.get(start..end).map_or(0, |s| s.chars().count());
        (line, col + chars)
    }
}

/// Parses Dockerfile text into nodes, the way BuildKit's `parser.Parse` does.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let mut reader = Reader {
        source,
        lines: Lines::new(source),
        scanner: DirectiveScanner::default(),
        directives: Directives::default(),
        escape: '\\',
    };
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    while let Some((logical, empty_continuation)) = reader.next_logical()? {
        // `next_logical` always creates the first piece.
        let (start_line, end_line) = (logical.pieces[0].1, reader.lines.line_no);
        if empty_continuation {
            let message = format!("Empty continuation line found in: {}", logical.text);
            warnings.push(Warning { line: end_line, message });
        }
        let mut node = node_from_line(&logical.text, reader.escape, 0).map_err(|(kind, offset)| {
            let (line, column) = logical.position(offset);
            reader.error_at(line, column, kind)
        })?;
        let column = logical.position(keyword_offset(&logical.text)).1;
        if can_contain_heredoc(&node) && logical.text.contains("<<") {
            let at_keyword = |k| reader.error_at(start_line, column, k);
            let mut docs = heredocs_from_line(&logical.text).map_err(at_keyword)?;
            for doc in &mut docs {
                read_body(doc, &mut reader.lines).map_err(|k| reader.error_at(start_line, column, k))?;
            }
            node.heredocs = docs;
        }
        let location = Location { start_line, end_line: reader.lines.line_no, column };
        set_location(&mut node, location, &logical, 0, &logical.text);
        node.original = logical.text;
        instructions.push(node);
    }
    if instructions.is_empty() {
        return Err(reader.error_at(reader.lines.line_no, 1, ParseErrorKind::Empty));
    }
    Ok(Dockerfile { escape: reader.escape, directives: reader.directives, instructions, warnings })
}

/// The line loop's state: physical lines, directives and the escape token in force.
struct Reader<'a> {
    source: &'a str,
    lines: Lines<'a>,
    scanner: DirectiveScanner,
    directives: Directives,
    escape: char,
}

impl Reader<'_> {
    /// An error at a 1-based position, quoting that source line.
    fn error_at(&self, line: usize, column: usize, kind: ParseErrorKind) -> ParseError {
        let text = self.source.split('\n').nth(line.saturating_sub(1)).map_or("", trim_newline);
        ParseError { line: line.max(1), column: column.max(1), line_text: text.to_string(), kind }
    }

    /// Feeds one line to the directive scanner.
    fn scan_directive(&mut self, token: &str) -> Result<(), ParseError> {
        match self.scanner.scan(token, &mut self.directives) {
            Ok(Some(escape)) => self.escape = escape,
            Ok(None) => {}
            Err(kind) => return Err(self.error_at(self.lines.line_no, 1, kind)),
        }
        Ok(())
    }

    /// The next instruction's logical line (continuations joined, comments and blank lines
    /// skipped) and whether an empty continuation line was dropped from it.
    fn next_logical(&mut self) -> Result<Option<(LogicalLine, bool)>, ParseError> {
        let (mut logical, mut end_of_line) = loop {
            let Some(raw) = self.lines.next_raw() else {
                return Ok(None);
            };
            let untrimmed = trim_newline(raw);
            let token = untrimmed.trim_start_matches(is_go_space);
            self.scan_directive(token)?;
            let content = if is_comment(token) { "" } else { token };
            let (first, end_of_line) = trim_continuation(content, self.escape);
            if !(end_of_line && first.is_empty()) {
                let column = untrimmed[..untrimmed.len() - token.len()].chars().count() + 1;
                let pieces = vec![(0, self.lines.line_no, column)];
                break (LogicalLine { text: first.to_string(), pieces }, end_of_line);
            }
        };
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = self.lines.next_raw() else {
                break;
            };
            let token = trim_newline(raw);
            self.scan_directive(token)?;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start_matches(is_go_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, eol) = trim_continuation(token, self.escape);
            logical.pieces.push((logical.text.len(), self.lines.line_no, 1));
            logical.text.push_str(piece);
            end_of_line = eol;
        }
        Ok(Some((logical, empty_continuation)))
    }
}

/// Byte offset of the keyword in a logical line (after leading whitespace).
fn keyword_offset(line: &str) -> usize {
    line.len() - line.trim_start_matches(is_go_space).len()
}

/// Sets the location of a node and of the instructions nested in it.
/// Sets the location of a node and of the instructions nested in it (same lines, each with the
/// column of its own keyword). `text` is the node's line, starting at `base` in `logical`.
fn set_location(node: &mut Node, location: Location, logical: &LogicalLine, base: usize, text: &str) {
    node.location = location;
    if let Some(Arg::Nested(child)) = node.args.first_mut() {
        let child_base = base + split_command(text).3;
        let column = logical.position(child_base).1;
        let child_text = child.original.clone();
        set_location(child, Location { column, ..location }, logical, child_base, &child_text);
    }
}

/// An error from an argument splitter, with the byte offset of the offending token.
type SplitError = (ParseErrorKind, usize);

/// Splits one logical line into a node (BuildKit's `newNodeFromLine`); the caller fills in
/// `original`, `heredocs` and `location`.
fn node_from_line(line: &str, escape: char, depth: usize) -> Result<Node, SplitError> {
    if depth > MAX_NESTING {
        return Err((ParseErrorKind::NestingTooDeep { max: MAX_NESTING }, keyword_offset(line)));
    }
    let (keyword, flags, rest, at) = split_command(line);
    let shift = |(kind, offset): SplitError| (kind, at + offset);
    let (args, json_form) = match go_to_lower(&keyword).as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(&rest, &keyword).map_err(shift)?,
        "arg" => (parse_words(&rest, escape).into_iter().map(|(_, w)| Arg::Word(w)).collect(), false),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&rest, &keyword).map_err(shift)?,
        "env" => (name_values(&rest, "ENV", escape).map_err(shift)?, false),
        "label" => (name_values(&rest, "LABEL", escape).map_err(shift)?, false),
        "expose" | "from" => (whitespace_delimited(&rest), false),
        "healthcheck" => health_config(&rest, &keyword).map_err(shift)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (string_arg(&rest), false),
        "onbuild" if rest.is_empty() => (Vec::new(), false),
        "onbuild" => {
            let mut child = node_from_line(&rest, escape, depth + 1).map_err(shift)?;
            child.original = rest.clone();
            (vec![Arg::Nested(Box::new(child))], false)
        }
        _ => (vec![Arg::Word(String::new())], false),
    };
    Ok(Node {
        keyword,
        flags,
        args,
        json_form,
        heredocs: Vec::new(),
        original: String::new(),
        location: Location { start_line: 0, end_line: 0, column: 0 },
    })
}

fn words(items: impl IntoIterator<Item = String>) -> Vec<Arg> {
    items.into_iter().map(Arg::Word).collect()
}

/// `parseString`: the whole rest as one node.
fn string_arg(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![Arg::Word(rest.to_string())]
    }
}

/// `parseStringsWhitespaceDelimited`: split on `[\t\v\f\r ]+`.
fn whitespace_delimited(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        return Vec::new();
    }
    words(rest.split(is_token_space).filter(|w| !w.is_empty()).map(str::to_string))
}

/// What `parseJSON` made of the arguments.
enum Json {
    Strings(Vec<String>),
    NotJson,
}

/// `parseJSON`: a JSON array of strings; any other valid JSON array is an error.
fn parse_json(rest: &str, keyword: &str) -> Result<Json, SplitError> {
    let trimmed = rest.trim_start_matches(is_go_space);
    if !trimmed.starts_with('[') {
        return Ok(Json::NotJson);
    }
    // Like Go's json.Decoder, read one value and ignore whatever follows it.
    let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = stream.next() else {
        return Ok(Json::NotJson);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            _ => {
                let kind = ParseErrorKind::JsonNotStringArray { instruction: keyword.to_ascii_uppercase() };
                return Err((kind, rest.len() - trimmed.len()));
            }
        }
    }
    Ok(Json::Strings(out))
}

/// `parseMaybeJSON` (RUN, CMD, ENTRYPOINT, SHELL): JSON array, else the whole rest.
fn maybe_json(rest: &str, keyword: &str) -> Result<(Vec<Arg>, bool), SplitError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest, keyword)? {
        Json::Strings(items) => (words(items), true),
        Json::NotJson => (vec![Arg::Word(rest.to_string())], false),
    })
}

/// `parseMaybeJSONToList` (ADD, COPY, VOLUME): JSON array, else whitespace-separated words.
fn maybe_json_to_list(rest: &str, keyword: &str) -> Result<(Vec<Arg>, bool), SplitError> {
    Ok(match parse_json(rest, keyword)? {
        Json::Strings(items) => (words(items), true),
        Json::NotJson => (whitespace_delimited(rest), false),
    })
}

/// `parseHealthConfig`: the type word (`CMD`, `NONE`, ...) then the rest as for CMD.
fn health_config(rest: &str, keyword: &str) -> Result<(Vec<Arg>, bool), SplitError> {
    let bytes = rest.as_bytes();
    let sep = bytes.iter().position(|&b| is_go_space_byte(b)).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let next = bytes[sep..].iter().position(|&b| !is_go_space_byte(b)).map_or(bytes.len(), |i| sep + i);
    let typ = String::from_utf8_lossy(&bytes[..sep]).into_owned();
    let cmd = String::from_utf8_lossy(&bytes[next..]);
    let (mut args, json_form) = maybe_json(&cmd, keyword).map_err(|(k, o)| (k, next + o))?;
    args.insert(0, Arg::Word(typ));
    Ok((args, json_form))
}

/// `parseNameVal` (ENV, LABEL): `key value sep` triples, legacy `KEY value` or `k=v ...`.
fn name_values(rest: &str, instruction: &'static str, escape: char) -> Result<Vec<Arg>, SplitError> {
    let parsed = parse_words(rest, escape);
    let Some((_, first)) = parsed.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(sep) = rest.find(is_token_space) else {
            return Err((ParseErrorKind::MissingValue { instruction }, 0));
        };
        let value = rest[sep..].trim_start_matches(is_token_space);
        return Ok(words([rest[..sep].to_string(), value.to_string(), String::new()]));
    }
    let mut out = Vec::with_capacity(parsed.len() * 3);
    for (at, word) in parsed {
        let Some((key, value)) = word.split_once('=') else {
            return Err((ParseErrorKind::MissingEquals { instruction, word }, at));
        };
        out.extend(words([key.to_string(), value.to_string(), "=".to_string()]));
    }
    Ok(out)
}
