//! One `.dockerignore` pattern: syntax check (Go's `filepath.Match` rules) and compilation
//! into one of moby/patternmatcher's four match kinds.

use regex::Regex;

/// Why a pattern does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GlobError {
    Syntax,
    TooLarge,
}

/// How a compiled pattern matches a cleaned, slash-separated path.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// No wildcard: the path equals the text.
    Exact(String),
    /// `<literal>**`: the path starts with the literal.
    Prefix(String),
    /// `**<literal>`: the path ends with the literal (`**/x` also matches `x`).
    Suffix(String),
    /// Anything else, as an anchored regex; `literal` is the fixed text it must start with.
    Regex { re: Regex, literal: String },
}

impl Matcher {
    pub(super) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(text) => path == text,
            Self::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Self::Regex { re, .. } => re.is_match(path),
        }
    }

    /// Whether some path below `dir_slash` (a directory path ending in `/`) might match.
    /// Never answers `false` wrongly; may answer `true` for paths that do not match.
    pub(super) fn may_match_below(&self, dir_slash: &str) -> bool {
        let compatible = |lit: &str| lit.starts_with(dir_slash) || dir_slash.starts_with(lit);
        match self {
            Self::Exact(text) => text.starts_with(dir_slash),
            Self::Prefix(lit) | Self::Regex { literal: lit, .. } => compatible(lit),
            Self::Suffix(_) => true,
        }
    }
}

/// Checks `pattern` with Go's `filepath.Match` syntax rules: classes must be closed and
/// non-empty, ranges must have both ends, a trailing `\` escapes nothing.
pub(super) fn validate(pattern: &str) -> Result<(), GlobError> {
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                chars.next().ok_or(GlobError::Syntax)?;
            }
            '[' => {
                parse_class(&mut chars)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A parsed `[...]` class (after the `[`).
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Parses a class body with `filepath.Match` rules (`^` negation, `\` escapes, `a-z` ranges).
fn parse_class(chars: &mut Chars<'_>) -> Result<Class, GlobError> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Ok(Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() { class_char(chars)? } else { lo };
        ranges.push((lo, hi));
    }
}

/// One class character (Go's `getEsc`): not `-` or `]`, maybe escaped, never last.
fn class_char(chars: &mut Chars<'_>) -> Result<char, GlobError> {
    let ch = match chars.next() {
        None | Some('-' | ']') => return Err(GlobError::Syntax),
        Some('\\') => chars.next().ok_or(GlobError::Syntax)?,
        Some(ch) => ch,
    };
    if chars.peek().is_none() {
        return Err(GlobError::Syntax);
    }
    Ok(ch)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Compiles a validated, cleaned pattern (without its `!`) the way patternmatcher does.
pub(super) fn compile(pattern: &str) -> Result<Matcher, GlobError> {
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    let mut buf = [0u8; 4];
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.next_if_eq(&'*').is_some() => {
                // `**/` is the same as `**`.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '\\' => {
                let escaped = chars.next().ok_or(GlobError::Syntax)?;
                re.push_str(&regex::escape(escaped.encode_utf8(&mut buf)));
                kind = Kind::Regex;
            }
            '[' => {
                push_class(&mut re, &parse_class(&mut chars)?);
                kind = Kind::Regex;
            }
            ']' => {
                re.push_str("\\]");
                kind = Kind::Regex;
            }
            // Go leaves `^` unescaped, which makes it an anchor in a regex-kind pattern.
            '^' => re.push('^'),
            _ => {
                re.push_str(&regex::escape(ch.encode_utf8(&mut buf)));
            }
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact(pattern.to_owned()),
        Kind::Prefix => Matcher::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned()),
        Kind::Suffix => Matcher::Suffix(pattern.get(2..).unwrap_or_default().to_owned()),
        Kind::Regex => {
            re.push('$');
            let re = Regex::new(&re).map_err(|err| match err {
                regex::Error::CompiledTooBig(_) => GlobError::TooLarge,
                _ => GlobError::Syntax,
            })?;
            Matcher::Regex { re, literal: literal_prefix(pattern) }
        }
    })
}

/// The text before the first character that is not matched literally.
fn literal_prefix(pattern: &str) -> String {
    pattern.chars().take_while(|c| !matches!(c, '*' | '?' | '[' | ']' | '\\' | '^')).collect()
}

/// Emits a class with every member escaped, so the regex engine sees only ranges.
fn push_class(re: &mut String, class: &Class) {
    let mut buf = [0u8; 4];
    re.push('[');
    if class.negated {
        re.push('^');
    }
    for &(lo, hi) in &class.ranges {
        re.push_str(&regex::escape(lo.encode_utf8(&mut buf)));
        if hi != lo {
            re.push('-');
            re.push_str(&regex::escape(hi.encode_utf8(&mut buf)));
        }
    }
    re.push(']');
}
