//! The scanner behind [`ShellLexer`]: one pass over the word's characters, mirroring the
//! control flow of BuildKit's `shellWord` so that edge cases (nested defaults, escapes inside
//! patterns, unbalanced braces) come out the same.

use std::collections::BTreeSet;

use unicode_general_category::{get_general_category, GeneralCategory};

use super::pattern;
use super::{EnvLookup, Expanded, ShellError, ShellErrorKind, ShellLexer};

/// Runs the lexer over `word`; the value is (unsplit result, split words).
pub(super) fn run(
    lexer: &ShellLexer,
    word: &str,
    env: &dyn EnvLookup,
) -> Result<Expanded<(String, Vec<String>)>, ShellError> {
    let chars: Vec<char> = word.chars().collect();
    let mut scan = Scanner { chars: &chars, pos: 0, lexer, env, used: BTreeSet::new(), unset: BTreeSet::new() };
    let value = scan.process_until(None, lexer.options.raw_escapes)?;
    Ok(Expanded { value, used: scan.used, unset: scan.unset })
}

/// Collects the split words the way BuildKit's `wordsStruct` does.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: &'a [char],
    pos: usize,
    lexer: &'a ShellLexer,
    env: &'a dyn EnvLookup,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
}

fn error(offset: usize, kind: ShellErrorKind) -> ShellError {
    ShellError { offset, kind }
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn quotes_active(&self) -> bool {
        !self.lexer.options.skip_process_quotes
    }

    /// Processes until the end of the word, or until `stop` (consumed) when given.
    /// `raw_escapes` keeps escape characters, as BuildKit does inside patterns.
    fn process_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), ShellError> {
        let start = self.pos;
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let text = self.process_dollar()?;
                result.push_str(&text);
                words.add_string(&text);
            } else if self.quotes_active() && (ch == '\'' || ch == '"') {
                let text =
                    if ch == '\'' { self.process_single_quote()? } else { self.process_double_quote(raw_escapes)? };
                result.push_str(&text);
                words.add_raw_string(&text);
            } else {
                self.pos += 1;
                if ch == self.lexer.escape {
                    if raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // A trailing escape is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            // Callers turn this into a more specific error for their construct.
            Some(_) => Err(error(start, ShellErrorKind::MissingBrace)),
            None => Ok((result, words.finish())),
        }
    }

    /// `'…'`: everything literal up to the next `'`.
    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let raw = self.lexer.options.raw_quotes;
        let mut result = String::new();
        if let Some(quote) = self.next().filter(|_| raw) {
            result.push(quote);
        }
        loop {
            match self.next() {
                None => return Err(error(start, ShellErrorKind::UnterminatedSingleQuote)),
                Some('\'') => {
                    if raw {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"…"`: literal except `$…`; the escape character only escapes `"`, `$` and itself.
    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ShellError> {
        let start = self.pos;
        let raw = self.lexer.options.raw_quotes;
        let escape = self.lexer.escape;
        let mut result = String::new();
        if let Some(quote) = self.next().filter(|_| raw) {
            result.push(quote);
        }
        loop {
            match self.peek() {
                None => return Err(error(start, ShellErrorKind::UnterminatedDoubleQuote)),
                Some('"') => {
                    self.pos += 1;
                    if raw {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let text = self.process_dollar()?;
                    result.push_str(&text);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$name`, `${name}` and `${name<op>word}`; the scanner is on the `$`.
    fn process_dollar(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.pos += 1;
        let skip_unset = self.lexer.options.skip_unset_env;
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(error(start, ShellErrorKind::MissingBrace)),
            Some('{' | '}' | ':') => return Err(error(start, ShellErrorKind::BadSubstitution)),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.next() {
            None => Err(error(start, ShellErrorKind::MissingBrace)),
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                self.process_modifier(start, &name, true, op)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => self.process_modifier(start, &name, false, Some(op)),
            Some('/') => self.process_replace(start, &name),
            Some(other) => Err(error(start, ShellErrorKind::UnsupportedModifier { modifier: other.to_string() })),
        }
    }

    /// `${name[:]<op>word}` for `-`, `+`, `?`, `#`, `##`, `%`, `%%`.
    fn process_modifier(
        &mut self,
        start: usize,
        name: &str,
        null_is_unset: bool,
        op: Option<char>,
    ) -> Result<String, ShellError> {
        let raw_escapes = matches!(op, Some('#' | '%'));
        let word = self.nested(start, '}', raw_escapes, ShellErrorKind::MissingBrace)?;
        let value = self.get_env(name);
        let modifier = || {
            let mut text = if null_is_unset { ":" } else { "" }.to_owned();
            text.extend(op);
            text
        };
        if value.is_none() && self.lexer.options.skip_unset_env {
            return Ok(format!("${{{name}{}{word}}}", modifier()));
        }
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match op {
            Some('-') => Ok(if unset { word } else { value.unwrap_or_default() }),
            Some('+') => Ok(if unset { String::new() } else { word }),
            Some('?') => match value {
                Some(value) if !unset => Ok(value),
                _ => {
                    let message = if !word.is_empty() {
                        word
                    } else if value.is_none() {
                        "is not allowed to be unset".to_owned()
                    } else {
                        "is not allowed to be empty".to_owned()
                    };
                    let name = name.to_owned();
                    Err(error(start, ShellErrorKind::Required { name, message }))
                }
            },
            Some(op @ ('#' | '%')) => {
                let value = value.unwrap_or_default();
                let (greedy, pat) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let trimmed = if op == '#' {
                    pattern::trim_prefix(pat, &value, greedy)
                } else {
                    pattern::trim_suffix(pat, &value, greedy)
                };
                trimmed.map_err(|reason| invalid_pattern(start, pat, reason))
            }
            _ => Err(error(start, ShellErrorKind::UnsupportedModifier { modifier: modifier() })),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn process_replace(&mut self, start: usize, name: &str) -> Result<String, ShellError> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.pos += 1;
        }
        let pat = self.nested(start, '/', true, ShellErrorKind::MissingSlash)?;
        let replacement = self.nested(start, '}', true, ShellErrorKind::MissingBrace)?;
        let value = self.get_env(name);
        if value.is_none() && self.lexer.options.skip_unset_env {
            let slashes = if replace_all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pat}/{replacement}}}"));
        }
        pattern::replace(&value.unwrap_or_default(), &pat, &replacement, replace_all)
            .map_err(|reason| invalid_pattern(start, &pat, reason))
    }

    /// A nested word up to `stop`; running out of input is reported as `at_end`.
    fn nested(
        &mut self,
        start: usize,
        stop: char,
        raw_escapes: bool,
        at_end: ShellErrorKind,
    ) -> Result<String, ShellError> {
        match self.process_until(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(error(start, at_end)),
            Err(err) => Err(err),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional); or one
    /// special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !(is_letter(ch) || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// Looks a variable up and records it as used or unset. Positional and special
    /// parameters are never set and are not recorded.
    fn get_env(&mut self, name: &str) -> Option<String> {
        let first = name.chars().next()?;
        if is_digit(first) || is_special_param(first) {
            return None;
        }
        match self.env.lookup(name) {
            Some(value) => {
                self.used.insert(name.to_owned());
                Some(value.to_owned())
            }
            None => {
                self.unset.insert(name.to_owned());
                None
            }
        }
    }
}

fn invalid_pattern(start: usize, pat: &str, reason: pattern::PatternError) -> ShellError {
    error(start, ShellErrorKind::InvalidPattern { pattern: pat.to_owned(), reason })
}

/// Go's `unicode.IsDigit`: general category Nd.
pub(super) fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && get_general_category(ch) == GeneralCategory::DecimalNumber)
}

/// Go's `unicode.IsLetter`: general categories Lu, Ll, Lt, Lm, Lo.
pub(super) fn is_letter(ch: char) -> bool {
    if ch.is_ascii() {
        return ch.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(ch),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
