//! Shell patterns in `${v#p}`, `${v%p}` and `${v/p/r}`: `*` (any run), `?` (one character),
//! `\*`, `\?`, `\\` escapes. Like BuildKit, there are no bracket expressions: `[` is literal.
//!
//! Patterns become regular expressions (as in BuildKit), so leftmost-first matching and the
//! shortest/longest choice follow the same rules as Go's `regexp`.

use regex::Regex;

use super::lexer::{is_digit, is_letter};

/// Why a substitution pattern is invalid.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// Only `\*`, `\?` and `\\` (and `\}`, `\/` inside `${…}`) are allowed.
    #[error("invalid escape {escaped:?}")]
    InvalidEscape { escaped: Option<char> },
    /// The pattern compiles to a regular expression above the size limit.
    #[error("pattern too large")]
    TooLarge,
}

/// Converts a shell pattern to a regex; `greedy` picks `.*` over `.*?` for `*`.
fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, PatternError> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(ch) = chars.next() {
        match ch {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `}` and `/` are escaped only to get them past `${…}`; the escape goes.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                let escaped = chars.next();
                match escaped {
                    Some(c @ ('*' | '?' | '\\')) => out.push_str(&regex::escape(c.encode_utf8(&mut buf))),
                    _ => return Err(PatternError::InvalidEscape { escaped }),
                }
            }
            _ => out.push_str(&regex::escape(ch.encode_utf8(&mut buf))),
        }
    }
    Regex::new(&out).map_err(|_| PatternError::TooLarge)
}

/// `${v#p}` (shortest) / `${v##p}` (longest): removes a matching prefix.
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let re = to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${v%p}` (shortest) / `${v%%p}` (longest): removes a matching suffix. Like BuildKit, the
/// pattern and the value are reversed so that the suffix search becomes a prefix search.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape pair in order (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = chars.len();
    // Walk from the end; a char preceded by an unpaired-from-the-left `\` forms a pair.
    // Pairing is decided left to right, as BuildKit does, so compute it first.
    let mut pair_start = vec![false; chars.len()];
    let mut j = 0;
    while j < chars.len() {
        if chars[j] == '\\' && j + 1 < chars.len() {
            pair_start[j] = true;
            j += 2;
        } else {
            j += 1;
        }
    }
    while i > 0 {
        i -= 1;
        if i > 0 && pair_start[i - 1] {
            out.push(chars[i - 1]);
            out.push(chars[i]);
            i -= 1;
        } else {
            out.push(chars[i]);
        }
    }
    out.into_iter().collect()
}

/// `${v/p/r}` (first match) and `${v//p/r}` (every match). For `//`, the replacement is
/// expanded like Go's `Regexp.ReplaceAllString` template (`$0` is the match, `$$` is `$`,
/// other `$name`s are empty), because that is what BuildKit calls.
pub(super) fn replace(value: &str, pattern: &str, replacement: &str, all: bool) -> Result<String, PatternError> {
    let re = to_regex(pattern, true, false)?;
    if !all {
        return Ok(match re.find(value) {
            Some(m) => format!("{}{replacement}{}", &value[..m.start()], &value[m.end()..]),
            None => value.to_owned(),
        });
    }
    // Go's ReplaceAll loop: an empty match right after a previous match is not replaced,
    // and the search always advances by at least one character.
    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some(m) = re.find_at(value, search) else {
            break;
        };
        out.push_str(&value[last_end..m.start()]);
        if m.end() > last_end || m.start() == 0 {
            expand_template(&mut out, replacement, m.as_str());
        }
        last_end = m.end();
        let width = value[search..].chars().next().map_or(1, char::len_utf8);
        search = if search + width > m.end() { search + width } else { m.end() };
    }
    out.push_str(value.get(last_end..).unwrap_or_default());
    Ok(out)
}

/// Go's `Regexp.Expand` for a regex without capture groups.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest[1..].starts_with('$') {
            out.push('$');
            rest = &rest[2..];
            continue;
        }
        match extract_group(&rest[1..]) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(whole);
                }
                rest = after;
            }
            None => {
                out.push('$');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

/// Parses `name` or `{name}` after a `$`: returns the name and the rest of the template.
fn extract_group(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len: usize = body.chars().take_while(|c| *c == '_' || is_letter(*c) || is_digit(*c)).map(char::len_utf8).sum();
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}
