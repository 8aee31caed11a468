//! Benchmark: parse and plan a generated 2,000-instruction Dockerfile, next to the
//! `dockerfile-parser` crate parsing the same text in the same run.
//! Run: `cargo run --release -p rbuild-builder --example frontend_bench [INSTRUCTIONS] [RUNS]`,
//! or `... frontend_bench --write PATH [INSTRUCTIONS]` to write the generated Dockerfile.

use rbuild_builder::dockerfile;
use rbuild_builder::frontend::plan_source;
use rbuild_builder::plan::{PlanRequest, UnresolvedBases};
use std::path::Path;
use std::time::{Duration, Instant};

/// A realistic mix: global ARGs, several stages, continuations, heredocs, mounts, COPY --from.
fn generate(instructions: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\nARG VERSION=1.0\n");
    let mut n = 2;
    let mut stage = 0;
    while n < instructions {
        if n % 200 == 2 {
            out.push_str(&format!(
                "FROM ${{BASE}} AS stage{stage}\nARG VERSION\nENV APP_HOME=/app/{stage} PATH=/usr/local/bin:/usr/bin\n"
            ));
            stage += 1;
            n += 3;
            continue;
        }
        let line = match n % 10 {
            0 => format!(
                "RUN apt-get update \\\n    && apt-get install -y pkg{n} \\\n    && rm -rf /var/lib/apt/lists/*\n"
            ),
            1 => format!("COPY --chown=1000:1000 src/file{n}.txt $APP_HOME/file{n}.txt\n"),
            2 => format!("ENV VAR_{n}=\"value ${{VERSION}} {n}\"\n"),
            3 => format!("LABEL com.example.step{n}=\"${{VERSION}}-{n}\"\n"),
            4 => format!("RUN --mount=type=cache,target=/root/.cache/{n} echo {n} > /tmp/{n}\n"),
            5 => format!("WORKDIR $APP_HOME/dir{n}\n"),
            6 => format!("RUN <<EOF\nset -e\necho step {n}\nEOF\n"),
            7 if stage > 1 => format!("COPY --from=stage{} /app /app{n}\n", stage - 2),
            7 => format!("ARG OPT{n}=x\n"),
            8 => format!("EXPOSE {}/tcp\n", 1000 + n),
            _ => format!("USER {}\n", 1000 + n % 7),
        };
        out.push_str(&line);
        n += 1;
    }
    out.push_str("CMD [\"/bin/sh\"]\n");
    out
}

fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--write") {
        let path = args.nth(1).expect("--write PATH");
        let instructions = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
        std::fs::write(path, generate(instructions)).expect("write the Dockerfile");
        return;
    }
    let instructions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(51);
    let text = generate(instructions);
    let parsed = dockerfile::parse(&text).expect("generated Dockerfile parses");
    println!("instructions: {} ({} bytes)", parsed.instructions.len(), text.len());
    let request = PlanRequest::host();
    let report = |name: &str, (median, min, max): (Duration, Duration, Duration)| {
        println!("{name:<28} median {:>8.3} ms  min {:>8.3} ms  max {:>8.3} ms", ms(median), ms(min), ms(max));
        median
    };
    report("rbuild parse", measure(runs, || drop(dockerfile::parse(&text))));
    let plan = report(
        "rbuild parse+plan",
        measure(runs, || drop(plan_source(Path::new("Dockerfile"), &text, &request, &UnresolvedBases).expect("plans"))),
    );
    // dockerfile-parser has no heredocs: it gets the same file with the heredoc RUNs written
    // as plain RUNs (and must parse it, or the comparison would time an early error).
    let peer_text = text.replace("RUN <<EOF\nset -e\necho step", "RUN set -e; echo step").replace("\nEOF\n", "\n");
    let peer_parsed = dockerfile_parser::Dockerfile::parse(&peer_text).expect("dockerfile-parser parses the peer text");
    println!("dockerfile-parser instructions: {}", peer_parsed.instructions.len());
    let peer =
        report("dockerfile-parser 0.9 parse", measure(runs, || drop(dockerfile_parser::Dockerfile::parse(&peer_text))));
    let same = report("rbuild parse (peer's text)", measure(runs, || drop(dockerfile::parse(&peer_text))));
    println!("ratio parse rbuild/dockerfile-parser (same text): {:.2}", ms(same) / ms(peer));
    println!("ratio parse+plan rbuild/dockerfile-parser parse: {:.2}", ms(plan) / ms(peer));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
