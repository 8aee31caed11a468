//! BuildKit parser conformance: runs the shared corpus (`shared/conformance`, see its README
//! sections 1–4 and 8) through `dockerfile::parse` and `dockerfile::dump`.
//!
//! Each test walks every case of one kind, collects the failures with a diff and reports
//! `parser conformance: N passed, N failed`. The corpus lives outside the repository; set
//! `RBUILD_CONFORMANCE_DIR` to point at it. When it is missing the tests skip, unless `CI` is set.

mod common;
use common::{corpus, Tally};
use rbuild_builder::dockerfile::dump::dump;
use rbuild_builder::dockerfile::{parse, Arg, Dockerfile, Node};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// Sorted subdirectories of `dir`.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Parses `path` and compares the dump with `result`.
fn check_dump(dockerfile: &Path, result: &Path) -> Result<Dockerfile, String> {
    let df = parse(&read(dockerfile)).map_err(|e| format!("parse error: {e}"))?;
    let got = dump(&df);
    let want = read(result);
    if got != want {
        return Err(line_diff(&want, &got));
    }
    Ok(df)
}

/// The lines that differ between two dumps.
fn line_diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i).copied().unwrap_or("<none>"), g.get(i).copied().unwrap_or("<none>"));
        if a != b {
            out.push_str(&format!("  line {}:\n    want {a}\n    got  {b}\n", i + 1));
        }
    }
    if out.is_empty() {
        out = format!("  trailing difference: want {} bytes, got {}", want.len(), got.len());
    }
    out
}

/// Our node in the generated-json shape (`top` adds lines, original and heredocs).
fn node_json(node: &Node, top: bool) -> Value {
    let args: Vec<Value> = node
        .args
        .iter()
        .map(|a| match a {
            Arg::Word(w) => Value::String(w.clone()),
            Arg::Nested(child) => node_json(child, false),
        })
        .collect();
    let mut v = json!({ "cmd": node.keyword, "flags": node.flags, "args": args, "json_form": node.json_form });
    if top {
        if !node.heredocs.is_empty() {
            let docs: Vec<Value> = node
                .heredocs
                .iter()
                .map(|h| json!({ "name": h.name, "fd": h.fd, "expand": h.expand, "chomp": h.chomp, "content": h.content }))
                .collect();
            v["heredocs"] = Value::Array(docs);
        }
        v["start_line"] = json!(node.location.start_line);
        v["end_line"] = json!(node.location.end_line);
        v["original"] = json!(node.original);
    }
    v
}

/// Compares a parse with a generated `parse.json` / `generated-json` file.
fn check_json(df: &Dockerfile, expected: &Value) -> Result<(), String> {
    let mut errs = Vec::new();
    let want_escape = expected["escape_token"].as_str().unwrap_or("\\");
    if df.escape.to_string() != want_escape {
        errs.push(format!("escape: want {want_escape:?}, got {:?}", df.escape));
    }
    let want_warnings: Vec<&str> =
        expected["warnings"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let got_warnings: Vec<&str> = df.warnings.iter().map(|w| w.message.as_str()).collect();
    if want_warnings != got_warnings {
        errs.push(format!("warnings: want {want_warnings:?}, got {got_warnings:?}"));
    }
    let first = df.instructions.first().map_or(0, |n| n.location.start_line);
    let last = df.instructions.last().map_or(0, |n| n.location.end_line);
    if expected["start_line"] != json!(first) || expected["end_line"] != json!(last) {
        errs.push(format!("root lines: want {}-{}, got {first}-{last}", expected["start_line"], expected["end_line"]));
    }
    let empty = Vec::new();
    let want = expected["instructions"].as_array().unwrap_or(&empty);
    if want.len() != df.instructions.len() {
        errs.push(format!("instruction count: want {}, got {}", want.len(), df.instructions.len()));
    }
    for (i, (w, node)) in want.iter().zip(&df.instructions).enumerate() {
        let got = node_json(node, true);
        for key in ["cmd", "flags", "args", "json_form", "heredocs", "start_line", "end_line", "original"] {
            if w.get(key) != got.get(key) {
                errs.push(format!(
                    "instruction {i} ({}), {key}:\n    want {}\n    got  {}",
                    node.keyword,
                    w.get(key).unwrap_or(&Value::Null),
                    got.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

#[test]
fn buildkit_testfiles_dump_as_expected() {
    let Some(root) = corpus("") else { return };
    let mut tally = Tally::default();
    for case in subdirs(&root.join("parser/testfiles")) {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        tally.record(&name, check_dump(&case.join("Dockerfile"), &case.join("result")).map(|_| ()));
    }
    tally.finish("parser conformance", "testfiles", 33);
}

#[test]
fn buildkit_negative_testfiles_are_rejected() {
    let Some(root) = corpus("") else { return };
    let mut tally = Tally::default();
    for case in subdirs(&root.join("parser/testfiles-negative")) {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let result = match parse(&read(&case.join("Dockerfile"))) {
            Ok(df) => Err(format!("parsed without error:\n{}", dump(&df))),
            Err(e) if e.line == 0 || e.column == 0 => Err(format!("error position not 1-based: {e}")),
            Err(_) => Ok(()),
        };
        tally.record(&name, result);
    }
    tally.finish("parser conformance", "testfiles-negative", 4);
}

#[test]
fn buildkit_testfile_line_numbers() {
    let Some(root) = corpus("") else { return };
    let mut tally = Tally::default();
    let result = parse(&read(&root.join("parser/testfile-line/Dockerfile")))
        .map_err(|e| format!("parse error: {e}"))
        .and_then(|df| {
            let got: Vec<(usize, usize)> =
                df.instructions.iter().map(|n| (n.location.start_line, n.location.end_line)).collect();
            let want = vec![(5, 5), (11, 12), (17, 31)];
            if got == want {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {got:?}"))
            }
        });
    tally.record("testfile-line", result);
    tally.finish("parser conformance", "testfile-line", 1);
}

#[test]
fn generated_json_matches() {
    let Some(root) = corpus("") else { return };
    let mut tally = Tally::default();
    let dir = root.join("parser/generated-json");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let input = if name == "testfile-line" {
            root.join("parser/testfile-line/Dockerfile")
        } else {
            root.join("parser/testfiles").join(&name).join("Dockerfile")
        };
        let expected: Value = serde_json::from_str(&read(&file)).unwrap();
        let result =
            parse(&read(&input)).map_err(|e| format!("parse error: {e}")).and_then(|df| check_json(&df, &expected));
        tally.record(&name, result);
    }
    tally.finish("parser conformance", "generated-json", 34);
}

#[test]
fn real_world_dockerfiles_match() {
    let Some(root) = corpus("") else { return };
    let mut tally = Tally::default();
    for repo in subdirs(&root.join("real-world")) {
        for case in subdirs(&repo) {
            let name = format!(
                "{}/{}",
                repo.file_name().unwrap().to_string_lossy(),
                case.file_name().unwrap().to_string_lossy()
            );
            let expected: Value = serde_json::from_str(&read(&case.join("parse.json"))).unwrap();
            let result =
                check_dump(&case.join("Dockerfile"), &case.join("result")).and_then(|df| check_json(&df, &expected));
            tally.record(&name, result);
        }
    }
    tally.finish("parser conformance", "real-world", 22);
}
