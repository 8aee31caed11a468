//! BuildKit's own word-expansion tables (`shell/envVarTest`, `shell/wordsTest`) run against
//! [`ShellLexer`]. Formats: `shared/conformance/README.md` sections 5 and 6.

mod common;
use common::{corpus, Tally};

use rbuild_builder::dockerfile::shell::ShellLexer;

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn env_var_test() {
    let Some(dir) = corpus("shell") else { return };
    let text = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    let env = pairs(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
    let lexer = ShellLexer::new('\\');
    let mut tally = Tally::default();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else { panic!("line {}: expected 3 fields: {line:?}", index + 1) };
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("line {}: unknown platform {other:?}", index + 1),
        }
        let got = lexer.expand_word(input, &env).map(|e| e.value);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            (Err(_), _) => false,
        };
        let why = || format!("{input:?} → {got:?}, want {expected:?}");
        tally.record(&format!("line {}", index + 1), if ok { Ok(()) } else { Err(why()) });
    }
    // The 226 `A` and 2 `U` rows.
    tally.finish("shell envVarTest", "envVarTest", 228);
}

#[test]
fn words_test() {
    let Some(dir) = corpus("shell") else { return };
    let text = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let lexer = ShellLexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut tally = Tally::default();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(entry) = line.strip_prefix("ENV ") {
            let entry = entry.trim_start_matches(' ');
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let [input, expected] = line.split('|').collect::<Vec<_>>()[..] else {
            panic!("line {}: expected exactly one '|': {line:?}", index + 1)
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = lexer.expand_words(input, &env).map(|e| e.value);
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => *words == expected,
        };
        let why = || format!("{input:?} → {got:?}, want {expected:?}");
        tally.record(&format!("line {}", index + 1), if ok { Ok(()) } else { Err(why()) });
    }
    tally.finish("shell wordsTest", "wordsTest", 24);
}

// ---- rbuild's own cases: pattern operators, used/unset tracking, backtick escape ----

use rbuild_builder::dockerfile::shell::{LexOptions, ShellErrorKind};
use rstest::rstest;

/// `env` is `NAME=value;NAME=value`; `want` is the expansion or `Err`.
#[rstest]
// # / ## : shortest / longest prefix
#[case("${FOO#*x*y}", "FOO=xxyy", Ok("y"))]
#[case("${FOO#*}", "FOO=xxyy", Ok("xxyy"))]
#[case("${FOO##*x}", "FOO=xxyy", Ok("yy"))]
#[case("${FOO#x}", "FOO=xxyy", Ok("xyy"))]
#[case("${FOO#}", "FOO=xxyy", Ok("xxyy"))]
#[case("${FOO##}", "FOO=xxyy", Ok("xxyy"))]
#[case("${FOO#$BAR}", "FOO=xxyy;BAR=x", Ok("xyy"))]
#[case("${FOO#$BAR}", "FOO=xxyy;BAR=", Ok("xxyy"))]
#[case(r"${FOO#?\?}", "FOO=???y", Ok("?y"))]
#[case(r"${FOO#()[]{\}^$.\*\?|\\}", r"FOO=()[]{}^$.*?|\x", Ok("x"))]
#[case("${FOO#[ab]}", "FOO=[ab]c", Ok("c"))]
#[case("${FOO:#x}", "FOO=xy", Ok("y"))]
#[case("${FOO#x}", "", Ok(""))]
// % / %% : shortest / longest suffix
#[case("${FOO%y}", "FOO=xxyy", Ok("xxy"))]
#[case("${FOO%%y*}", "FOO=xxyy", Ok("xx"))]
#[case("${FOO%y*}", "FOO=xxyy", Ok("xxy"))]
#[case("${FOO%x}", "FOO=xxyy", Ok("xxyy"))]
#[case("${FOO%}", "FOO=xxyy", Ok("xxyy"))]
#[case(r"${FOO%%\**}", "FOO=xx**", Ok("xx"))]
#[case(r"${FOO%%\**\*}", "FOO=a***yy*", Ok("a"))]
#[case("${FOO%%$BAR}", "FOO=xxyy;BAR=", Ok("xxyy"))]
#[case("${FOO%.*}", "FOO=app.tar.gz", Ok("app.tar"))]
#[case("${FOO%%.*}", "FOO=app.tar.gz", Ok("app"))]
#[case("${FOO%하*}", "FOO=한국어하세요", Ok("한국어"))]
// / and // : first / every match, `*` greedy
#[case("${FOO/$N/.} - ${FOO//$N/.}", r"FOO=/foo*/*/*.txt;N=\*/", Ok("/foo.*/*.txt - /foo..*.txt"))]
#[case("${FOO/$N/} - ${FOO//$N/}", "FOO=/tmp/tmp/bar.txt;N=/tmp", Ok("/tmp/bar.txt - /bar.txt"))]
#[case("${FOO/$N/$R} - ${FOO//$N/$R}", "FOO=/a/foo/b/c.txt;N=/?/;R=/", Ok("/foo/b/c.txt - /foo/c.txt"))]
#[case("${FOO/$N/$R}", "FOO=http://google.de;N=http://;R=https://", Ok("https://google.de"))]
#[case(r"${FOO//\//\/}", "FOO=/tmp/foo.txt", Ok(r"\/tmp\/foo.txt"))]
#[case("${FOO/$BAR/ww}", "FOO=xxyy;BAR=", Ok("wwxxyy"))]
#[case("${FOO///}", "FOO=xxyy", Ok("xxyy"))]
#[case("${FOO///}", "", Ok(""))]
#[case("${FOO//a*/b}", "FOO=xaya", Ok("xb"))]
#[case("${FOO//?/-}", "FOO=한국", Ok("--"))]
// `//` expands the replacement as a Go regexp template: `$0` is the match, `$$` is `$`
#[case("${FOO//a/<$R>}", "FOO=banana;R=$0", Ok("b<a>n<a>n<a>"))]
#[case("${FOO//a/$R}", "FOO=aa;R=$$", Ok("$$"))]
#[case("${FOO//a/$R}", "FOO=aa;R=$x", Ok(""))]
#[case("${FOO/a/$R}", "FOO=aa;R=$0", Ok("$0a"))]
#[case(r"${FOO//a/\$0}", "FOO=ba", Ok(r"b\a"))]
#[case("${FOO//ww}", "FOO=xxyy", Err(()))]
#[case("${FOO//}", "FOO=xxyy", Err(()))]
#[case("${FOO/a", "FOO=xxyy", Err(()))]
#[case(r"${FOO#\x}", "FOO=xxyy", Err(()))]
#[case(r"${FOO/\x/y}", "FOO=xxyy", Err(()))]
// substring is not supported by BuildKit, nor are assignment and length forms
#[case("${FOO:0:2}", "FOO=xxyy", Err(()))]
#[case("${FOO:=x}", "FOO=xxyy", Err(()))]
#[case("${FOO=x}", "", Err(()))]
#[case("${#FOO}", "FOO=xxyy", Err(()))]
// required variables
#[case("${VAR:?message here$ARG}", "VAR=plain;ARG=x", Ok("plain"))]
#[case("${VAR?message here$ARG}", "VAR=;ARG=x", Ok(""))]
#[case("${VAR:?message here$ARG}", "VAR=;ARG=x", Err(()))]
#[case("${VAR?message here$ARG}", "ARG=x", Err(()))]
// case-sensitive names, positional parameters never set even if present in env
#[case("$foo-${FOO}", "FOO=up;foo=low", Ok("low-up"))]
#[case("$1${1:-d}", "1=one", Ok("d"))]
fn pattern_and_modifier_cases(#[case] input: &str, #[case] env: &str, #[case] want: Result<&str, ()>) {
    let env = parse_env(env);
    let got = ShellLexer::new('\\').expand_word(input, &env);
    match want {
        Ok(want) => assert_eq!(got.map(|e| e.value).as_deref(), Ok(want), "{input}"),
        Err(()) => assert!(got.is_err(), "{input} should fail, got {got:?}"),
    }
}

fn parse_env(env: &str) -> Vec<(String, String)> {
    env.split(';')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `used` holds referenced names that were set, `unset` the others (even inside defaults).
#[rstest]
#[case("x", "DUMMY=d", &[], &[])]
#[case("x ${UNUSED}", "DUMMY=d", &[], &["UNUSED"])]
#[case("${FOO-a} ${BAR-b} ${BAZ-c}", "FOO=x;BAR=", &["BAR", "FOO"], &["BAZ"])]
#[case("${FOO:+a} ${BAR:+b} ${BAZ:+c}", "FOO=x;BAR=", &["BAR", "FOO"], &["BAZ"])]
#[case("${ABC:-.}${FOO%x}${ABC:-.}", "FOO=xxyy", &["FOO"], &["ABC"])]
#[case("${A:-${B:-$C}}", "C=c", &["C"], &["A", "B"])]
#[case("${FOO/$N/$R}", "FOO=f;N=n;R=r", &["FOO", "N", "R"], &[])]
#[case("'$QUOTED' \"$DQ\"", "DQ=1", &["DQ"], &[])]
#[case("$1 $@ ${#} $0", "", &[], &[])]
fn used_and_unset(#[case] input: &str, #[case] env: &str, #[case] used: &[&str], #[case] unset: &[&str]) {
    let env = parse_env(env);
    let got = ShellLexer::new('\\').expand_word(input, &env).unwrap();
    assert_eq!(got.used.iter().map(String::as_str).collect::<Vec<_>>(), used, "{input}");
    assert_eq!(got.unset.iter().map(String::as_str).collect::<Vec<_>>(), unset, "{input}");
}

/// With `# escape=` `` ` `` the backtick escapes and `\` is an ordinary character.
#[rstest]
#[case(r"C:\path\$PWD", r"C:\path\/home")]
#[case("he`$PWD", "he$PWD")]
#[case("he``$PWD", "he`/home")]
#[case("hello`", "hello")]
#[case(r#""a`"b""#, r#"a"b"#)]
#[case(r#""a\b`$x""#, r"a\b$x")]
#[case(r#""C:\dir\""#, r"C:\dir\")]
#[case("'a`b'", "a`b")]
#[case("${NOPE:-C:\\x`}y}", r"C:\x}y")]
#[case("${PWD#`*}", "/home")]
fn backtick_escape(#[case] input: &str, #[case] want: &str) {
    let env = parse_env("PWD=/home");
    let got = ShellLexer::new('`').expand_word(input, &env);
    assert_eq!(got.map(|e| e.value).as_deref(), Ok(want), "{input}");
}

/// Errors carry the character offset of the construct that failed.
#[rstest]
#[case("ab'cd", 2, ShellErrorKind::UnterminatedSingleQuote)]
#[case("안녕\"x", 2, ShellErrorKind::UnterminatedDoubleQuote)]
#[case("a${}", 1, ShellErrorKind::BadSubstitution)]
#[case("x${A:-${B", 1, ShellErrorKind::MissingBrace)]
#[case("${A/x", 0, ShellErrorKind::MissingSlash)]
#[case("한${V:?gone}", 1, ShellErrorKind::Required { name: "V".into(), message: "gone".into() })]
#[case("${V=x}", 0, ShellErrorKind::UnsupportedModifier { modifier: "=".into() })]
#[case("${V:=x}", 0, ShellErrorKind::UnsupportedModifier { modifier: ":=".into() })]
fn error_offsets(#[case] input: &str, #[case] offset: usize, #[case] kind: ShellErrorKind) {
    let env: Vec<(String, String)> = Vec::new();
    let err = ShellLexer::new('\\').expand_word(input, &env).unwrap_err();
    assert_eq!((err.offset, err.kind), (offset, kind), "{input}");
}

/// BuildKit's optional modes: raw quotes/escapes (heredoc bodies) and keeping unset references.
#[rstest]
#[case(LexOptions { raw_quotes: true, raw_escapes: true, ..Default::default() }, r#"'a' "$V" \$V"#, r#"'a' "v" \$V"#)]
#[case(LexOptions { skip_unset_env: true, ..Default::default() }, "$V $U ${U} ${U:-d} ${U//a/b}", "v $U ${U} ${U:-d} ${U//a/b}")]
#[case(LexOptions { skip_process_quotes: true, ..Default::default() }, r#"'$V' "x""#, r#"'v' "x""#)]
fn lexer_modes(#[case] options: LexOptions, #[case] input: &str, #[case] want: &str) {
    let env = parse_env("V=v");
    let got = ShellLexer::with_options('\\', options).expand_word(input, &env);
    assert_eq!(got.map(|e| e.value).as_deref(), Ok(want), "{input}");
}
