//! Measures the `dockerfile-parser` crate (0.9) against the shared conformance corpus, to back
//! the decision recorded in `docs/decisions.md` ("Dockerfile parser"). Ignored by default:
//! `cargo test -p rbuild-builder --test measure_dockerfile_parser -- --ignored --nocapture`.

mod common;
use common::corpus_root;
use dockerfile_parser::{Dockerfile as Theirs, Instruction};
use rbuild_builder::dockerfile::parse;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::time::Instant;

/// One corpus Dockerfile with what BuildKit made of it.
struct Case {
    name: String,
    source: String,
    instructions: usize,
    heredocs: bool,
    backtick: bool,
}

fn case(name: String, dockerfile: &Path, json: &Path) -> Case {
    let expected: Value = serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
    let list = expected["instructions"].as_array().cloned().unwrap_or_default();
    Case {
        name,
        source: fs::read_to_string(dockerfile).unwrap(),
        instructions: list.len(),
        heredocs: list.iter().any(|i| i.get("heredocs").is_some()),
        backtick: expected["escape_token"] == "`",
    }
}

fn cases(root: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut jsons: Vec<_> =
        fs::read_dir(root.join("parser/generated-json")).unwrap().map(|e| e.unwrap().path()).collect();
    jsons.sort();
    for json in jsons {
        let name = json.file_stem().unwrap().to_string_lossy().into_owned();
        let df = if name == "testfile-line" {
            root.join("parser/testfile-line/Dockerfile")
        } else {
            root.join("parser/testfiles").join(&name).join("Dockerfile")
        };
        out.push(case(name, &df, &json));
    }
    let mut repos: Vec<_> = fs::read_dir(root.join("real-world")).unwrap().map(|e| e.unwrap().path()).collect();
    repos.sort();
    for repo in repos.into_iter().filter(|p| p.is_dir()) {
        let mut dirs: Vec<_> = fs::read_dir(&repo).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for dir in dirs {
            let name = format!("real-world/{}", dir.strip_prefix(root.join("real-world")).unwrap().display());
            out.push(case(name, &dir.join("Dockerfile"), &dir.join("parse.json")));
        }
    }
    out
}

#[derive(Default, Debug)]
struct Score {
    files: usize,
    parsed: usize,
    count_matches: usize,
}

impl Score {
    fn add(&mut self, parsed: Option<usize>, expected: usize) {
        self.files += 1;
        if let Some(n) = parsed {
            self.parsed += 1;
            self.count_matches += usize::from(n == expected);
        }
    }
}

#[test]
#[ignore = "measurement, run with --ignored --nocapture"]
fn measure_dockerfile_parser_crate() {
    let root = corpus_root();
    let (mut all, mut heredoc, mut backtick) = (Score::default(), Score::default(), Score::default());
    let (mut typed, mut misc) = (0usize, 0usize);
    for c in cases(&root) {
        let parsed = Theirs::parse(&c.source);
        if let Err(e) = &parsed {
            eprintln!("  {}: {}", c.name, e.to_string().lines().take(4).collect::<Vec<_>>().join(" | "));
        }
        let theirs = parsed.ok();
        let count = theirs.as_ref().map(|d| d.instructions.len());
        if count.is_some_and(|n| n != c.instructions) {
            eprintln!("  {}: expected {} instructions, dockerfile-parser {count:?}", c.name, c.instructions);
        }
        for i in theirs.iter().flat_map(|d| &d.instructions) {
            match i {
                Instruction::Misc(_) => misc += 1,
                _ => typed += 1,
            }
        }
        all.add(count, c.instructions);
        if c.heredocs {
            heredoc.add(count, c.instructions);
        }
        if c.backtick {
            backtick.add(count, c.instructions);
        }
    }
    let mut rejected = 0;
    let negative = root.join("parser/testfiles-negative");
    let negatives: Vec<_> = fs::read_dir(&negative).unwrap().map(|e| e.unwrap().path()).collect();
    for dir in &negatives {
        rejected += usize::from(Theirs::parse(&fs::read_to_string(dir.join("Dockerfile")).unwrap()).is_err());
    }
    println!("dockerfile-parser 0.9 on the corpus:");
    println!("  all:      {all:?}");
    println!("  heredocs: {heredoc:?}");
    println!("  escape=`: {backtick:?}");
    println!("  negatives rejected: {rejected}/{}", negatives.len());
    println!("  instructions typed: {typed}, misc (untyped): {misc}");
}

#[test]
#[ignore = "measurement, run with --release --ignored --nocapture"]
fn measure_our_parser_speed() {
    let unit = "RUN apt-get update \\\n    && apt-get install -y curl \\\n    && rm -rf /var/lib/apt/lists/*\n\
                COPY --from=build --chown=1:1 /src/a /dst/\nENV A=1 B=\"two words\"\n\
                RUN <<EOF\nset -e\necho hi\nEOF\n";
    let source = format!("FROM scratch\n{}", unit.repeat(500));
    let df = parse(&source).unwrap();
    // The fastest of many runs: the machine is shared, so the mean mostly measures other load.
    let mut best = std::time::Duration::MAX;
    for _ in 0..200 {
        let start = Instant::now();
        std::hint::black_box(parse(std::hint::black_box(&source)).unwrap());
        best = best.min(start.elapsed());
    }
    println!("parsed {} instructions ({} bytes): fastest of 200 runs {best:?}", df.instructions.len(), source.len());
}
