//! `.dockerignore` conformance (`shared/conformance/dockerignore/`, README section 7 and
//! `RULES.md`) plus rbuild's own cases for the directory-walk query and ignore-file lookup.

mod common;
use common::{corpus, Tally};
use std::path::{Path, PathBuf};

use rbuild_builder::dockerignore::{ignore_file_for, read_patterns, DockerIgnore, ParentMatches, WalkDecision};
use rstest::rstest;

/// Evaluates one `cases.tsv` row; `Err` describes a mismatch.
fn check_case(row: &str) -> Result<(), String> {
    let cells: Vec<&str> = row.split('\t').collect();
    let [id, expected, path, _note, patterns @ ..] = &cells[..] else {
        return Err(format!("malformed row {row:?}"));
    };
    let got = DockerIgnore::parse(&patterns.join("\n")).map(|ignore| ignore.is_excluded(path));
    let got_text = match &got {
        Ok(excluded) => excluded.to_string(),
        Err(_) => "error".to_owned(),
    };
    if got_text == *expected {
        Ok(())
    } else {
        Err(format!("{id}: {path:?} with {patterns:?} → {got:?}, want {expected}"))
    }
}

/// Evaluates one `ignorefile-lines.tsv` row.
fn check_line(row: &str) -> Result<(), String> {
    let [id, input, output] = row.split('\t').collect::<Vec<_>>()[..] else {
        return Err(format!("malformed row {row:?}"));
    };
    let input: String = serde_json::from_str(input).map_err(|e| format!("{id}: {e}"))?;
    let want: Option<String> = serde_json::from_str(output).map_err(|e| format!("{id}: {e}"))?;
    let got = read_patterns(&input).into_iter().next().map(|(_, p)| p);
    if got == want {
        Ok(())
    } else {
        Err(format!("{id}: {input:?} → {got:?}, want {want:?}"))
    }
}

#[test]
fn dockerignore_tables() {
    let Some(dir) = corpus("dockerignore") else {
        return;
    };
    type RowCheck = fn(&str) -> Result<(), String>;
    let tables: [(&str, RowCheck, usize); 2] =
        [("cases.tsv", check_case, 77), ("ignorefile-lines.tsv", check_line, 21)];
    let mut tally = Tally::default();
    for (file, check, rows) in tables {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let results: Vec<_> = text.lines().skip(1).filter(|l| !l.is_empty()).map(check).collect();
        assert_eq!(results.len(), rows, "{file}: row count");
        for result in results {
            tally.record(file, result);
        }
    }
    // 77 `cases.tsv` rows and 21 `ignorefile-lines.tsv` rows.
    tally.finish("dockerignore", "dockerignore", 98);
}

/// Entering an excluded directory for a `!` exception, BuildKit's way (fsutil's walker):
/// only when an exception pattern starts with the directory's path literally.
#[rstest]
#[case("dir;!dir/keep.txt", "dir", true)]
#[case("docs/**;!docs/**/*.md", "docs/x", false)]
#[case("build;!b*/x", "build", false)]
#[case("a;!a/b/c", "a/b", true)]
#[case("a/b;!a/b2", "a/b", false)]
fn exception_under_like_fsutil(#[case] patterns: &str, #[case] dir: &str, #[case] want: bool) {
    let ignore = DockerIgnore::parse(&patterns.replace(';', "\n")).unwrap();
    assert_eq!(ignore.exception_under(dir), want, "{patterns} / {dir}");
}

/// `patterns` are ignore-file lines separated by `;`.
#[rstest]
#[case("node_modules", "node_modules", WalkDecision::SkipSubtree)]
#[case("node_modules", "src", WalkDecision::Walk)]
#[case("", "src", WalkDecision::Walk)]
#[case("*", ".", WalkDecision::Walk)]
#[case("**;!util/docker/web", "util", WalkDecision::WalkExcluded)]
#[case("**;!util/docker/web", "util/docker/web", WalkDecision::Walk)]
#[case("**;!util/docker/web", "vendor", WalkDecision::SkipSubtree)]
#[case("**;!util/docker/web;util", "util", WalkDecision::SkipSubtree)]
#[case("**;!dist/*.whl", "dist", WalkDecision::WalkExcluded)]
#[case("**;!**/*.go", "deep/er", WalkDecision::WalkExcluded)]
#[case("docs;!docs/README.md", "docs", WalkDecision::WalkExcluded)]
#[case("docs;!docs/README.md", "docs/sub", WalkDecision::SkipSubtree)]
#[case("!keep;build", "build", WalkDecision::SkipSubtree)]
#[case("build;!build/**", "build", WalkDecision::WalkExcluded)]
#[case("build;!b*/x", "build", WalkDecision::WalkExcluded)]
#[case("build;!c*/x", "build", WalkDecision::SkipSubtree)]
#[case("a/b;!a/b2", "a/b", WalkDecision::SkipSubtree)]
fn walk_decisions(#[case] patterns: &str, #[case] dir: &str, #[case] want: WalkDecision) {
    let ignore = DockerIgnore::parse(&patterns.replace(';', "\n")).unwrap();
    assert_eq!(ignore.walk_decision(dir), want, "{patterns} / {dir}");
    // A skipped directory must really have nothing re-included below it.
    if want == WalkDecision::SkipSubtree {
        for child in ["x", "README.md", "docker/web", "web/x.go", "b/x", "x.whl"] {
            assert!(ignore.is_excluded(&format!("{dir}/{child}")), "{dir}/{child}");
        }
    }
}

/// Patterns keep their normalised text, `!` marker and line for cache keys and messages.
#[test]
fn patterns_are_normalised() {
    let ignore = DockerIgnore::parse("# c\n/a/./b/\n\n ! ./keep \n").unwrap();
    let shown: Vec<(String, usize)> = ignore.patterns().iter().map(|p| (p.to_string(), p.line())).collect();
    assert_eq!(shown, [("a/b".to_owned(), 2), ("!keep".to_owned(), 4)]);
    assert!(ignore.has_exclusions());
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dockerignore").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("ctx/sub")).unwrap();
    dir
}

/// `(files to create, dockerfile path, expected ignore file)`, paths relative to a scratch dir.
#[rstest]
#[case::both(&["ctx/.dockerignore", "ctx/sub/app.Dockerfile.dockerignore"], "ctx/sub/app.Dockerfile", Some("ctx/sub/app.Dockerfile.dockerignore"))]
#[case::context_only(&["ctx/.dockerignore"], "ctx/sub/app.Dockerfile", Some("ctx/.dockerignore"))]
#[case::specific_only(&["ctx/Dockerfile.dockerignore"], "ctx/Dockerfile", Some("ctx/Dockerfile.dockerignore"))]
#[case::other_name_ignored(&["ctx/sub/Dockerfile.dockerignore"], "ctx/sub/app.Dockerfile", None)]
#[case::none(&[], "ctx/Dockerfile", None)]
fn ignore_file_precedence(#[case] files: &[&str], #[case] dockerfile: &str, #[case] want: Option<&str>) {
    let name = format!("{}-{dockerfile}", files.join("+")).replace('/', "_");
    let root = scratch(&name);
    for file in files {
        std::fs::write(root.join(file), "x\n").unwrap();
    }
    let got = ignore_file_for(&root.join("ctx"), &root.join(dockerfile));
    assert_eq!(got, want.map(|w| root.join(w)));
}

// ---- properties: no panics, and `SkipSubtree` never hides a re-included path ----

use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "*", "**", "?", "[ab]", "[^a]", "\\*", ".", "..", "x.go", "한", "[", "]"])
        .prop_map(str::to_owned)
}

fn path_like() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|parts| parts.join("/"))
}

fn ignore_line() -> impl Strategy<Value = String> {
    (any::<bool>(), path_like()).prop_map(|(bang, p)| if bang { format!("!{p}") } else { p })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_input_never_panics(text in any::<String>(), path in any::<String>()) {
        if let Ok(ignore) = DockerIgnore::parse(&text) {
            let _ = ignore.is_excluded(&path);
            let _ = ignore.walk_decision(&path);
        }
    }

    /// The incremental walker check agrees with the one-shot check at every level.
    #[test]
    fn check_entry_agrees_with_is_excluded(
        lines in prop::collection::vec(ignore_line(), 1..5),
        path in prop::collection::vec("[ab]{1,2}|x\\.go", 1..5),
    ) {
        let Ok(ignore) = DockerIgnore::parse(&lines.join("\n")) else { return Ok(()) };
        let mut parent = ParentMatches::default();
        for depth in 1..=path.len() {
            let prefix = path[..depth].join("/");
            let (excluded, here) = ignore.check_entry(&prefix, &parent);
            prop_assert_eq!(excluded, ignore.is_excluded(&prefix), "{:?}: {}", lines, prefix);
            parent = here;
        }
    }

    #[test]
    fn skip_subtree_is_sound(
        lines in prop::collection::vec(ignore_line(), 1..5),
        dir in "[ab]{1,2}(/[ab]{1,2})?",
        children in prop::collection::vec("[ab]{1,2}(/(x\\.go|[ab]))?", 1..6),
    ) {
        let Ok(ignore) = DockerIgnore::parse(&lines.join("\n")) else { return Ok(()) };
        if ignore.walk_decision(&dir) == WalkDecision::SkipSubtree {
            for child in children {
                let path = format!("{dir}/{child}");
                prop_assert!(ignore.is_excluded(&path), "{:?}: {} kept", lines, path);
            }
        }
    }
}
