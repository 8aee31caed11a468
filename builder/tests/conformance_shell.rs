//! BuildKit's own word-expansion tables (`shell/envVarTest`, `shell/wordsTest`) run against
//! [`ShellLexer`]. Formats: `shared/conformance/README.md` sections 5 and 6.

use std::path::PathBuf;

use rbuild_builder::dockerfile::shell::ShellLexer;

/// The corpus folder, or `None` (after printing why) when it is missing outside CI.
fn corpus(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance").into());
    let dir = root.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "conformance corpus missing at {}",
        dir.display()
    );
    eprintln!("skipping: conformance corpus missing at {}", dir.display());
    None
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn env_var_test() {
    let Some(dir) = corpus("shell") else { return };
    let text = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    let env = pairs(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
    let lexer = ShellLexer::new('\\');
    let (mut passed, mut failures) = (0, Vec::new());
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("line {}: expected 3 fields: {line:?}", index + 1)
        };
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
        if ok {
            passed += 1;
        } else {
            failures.push(format!("line {}: {input:?} → {got:?}, want {expected:?}", index + 1));
        }
    }
    println!("shell envVarTest: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    assert_eq!(passed, 228, "expected the 226 `A` + 2 `U` rows");
}

#[test]
fn words_test() {
    let Some(dir) = corpus("shell") else { return };
    let text = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let lexer = ShellLexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut passed, mut failures) = (0, Vec::new());
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
        if ok {
            passed += 1;
        } else {
            failures.push(format!("line {}: {input:?} → {got:?}, want {expected:?}", index + 1));
        }
    }
    println!("shell wordsTest: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    assert_eq!(passed, 24, "expected 24 cases");
}
