//! Property tests: no input panics the shell-word expander, for either escape character.

use proptest::prelude::*;
use rbuild_builder::dockerfile::shell::{LexOptions, ShellLexer};

/// Words built mostly from the characters the lexer treats specially, plus arbitrary text.
fn word() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "$", "{", "}", ":", "-", "+", "?", "=", "#", "%", "/", "*", "\\", "`", "'", "\"", " ", "A", "PWD", "1", "@",
        "[", "]", ".", "한", "\n", "$$", "${", "${A", "${A:", "${A#", "${A/",
    ]);
    prop::collection::vec(prop_oneof![4 => special.prop_map(str::to_owned), 1 => any::<String>()], 0..24)
        .prop_map(|parts| parts.concat())
}

fn env() -> Vec<(String, String)> {
    [("PWD", "/home"), ("A", "a*b?c"), ("E", ""), ("S", " x  y ")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn expansion_never_panics(input in word(), backtick in any::<bool>(), raw in any::<bool>()) {
        let escape = if backtick { '`' } else { '\\' };
        let options = LexOptions { raw_quotes: raw, raw_escapes: raw, skip_unset_env: raw, ..Default::default() };
        let lexer = ShellLexer::with_options(escape, options);
        let env = env();
        let word = lexer.expand_word(&input, &env);
        let words = lexer.expand_words(&input, &env);
        // Both entry points run the same scan: they succeed or fail together.
        prop_assert_eq!(word.is_ok(), words.is_ok());
        if let Err(err) = word {
            prop_assert!(err.offset <= input.chars().count());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(input in any::<String>(), backtick in any::<bool>()) {
        let lexer = ShellLexer::new(if backtick { '`' } else { '\\' });
        let env = env();
        let _ = lexer.expand_word(&input, &env);
        let _ = lexer.expand_words(&input, &env);
    }

    /// Text without special characters comes back unchanged.
    #[test]
    fn plain_text_is_identity(input in "[a-zA-Z0-9_./,:=@ -]{0,40}") {
        let env = env();
        let got = ShellLexer::new('\\').expand_word(&input, &env).unwrap();
        prop_assert_eq!(got.value, input);
    }
}
