//! Word expansion never panics, for either escape character.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::dockerfile::shell::ShellLexer;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let word = String::from_utf8_lossy(data);
    let env: BTreeMap<String, String> =
        [("A", "a b"), ("EMPTY", ""), ("PWD", "/home")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for escape in ['\\', '`'] {
        let lexer = ShellLexer::new(escape);
        let _ = lexer.expand_word(&word, &env);
        let _ = lexer.expand_words(&word, &env);
    }
});
