//! `rbuild plan` through the real binary: JSON on stdout, errors on stderr, exit codes.

use std::process::Command;

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    args: &'static [&'static str],
    success: bool,
    stdout_has: &'static [&'static str],
    stderr_has: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "valid multi-stage file with a build arg and a target",
        dockerfile:
            "ARG BASE=busybox\nFROM $BASE AS build\nRUN make\nFROM scratch AS final\nCOPY --from=build /out /\n",
        args: &["--build-arg", "BASE=alpine", "--target", "final"],
        success: true,
        stdout_has: &["\"reference\": \"alpine\"", "\"depends_on\": [\n        0\n      ]", "\"target\": 1"],
        stderr_has: &[],
    },
    Case {
        name: "parse error: file, line, column and the line quoted",
        dockerfile: "FROM scratch\nENV PATH\n",
        args: &[],
        success: false,
        stdout_has: &[],
        stderr_has: &["Dockerfile:2:5: ENV must have two arguments", "2 | ENV PATH"],
    },
    Case {
        name: "unknown target",
        dockerfile: "FROM scratch\n",
        args: &["--target", "nope"],
        success: false,
        stdout_has: &[],
        stderr_has: &["target stage \"nope\" could not be found"],
    },
    Case {
        name: "unconsumed build arg warns on stderr",
        dockerfile: "FROM scratch\n",
        args: &["--build-arg", "X=1"],
        success: true,
        stdout_has: &["\"stages\""],
        stderr_has: &["warning: build-arg \"X\" was not consumed"],
    },
    Case {
        name: "bad --platform",
        dockerfile: "FROM scratch\n",
        args: &["--platform", "linux"],
        success: false,
        stdout_has: &[],
        stderr_has: &["invalid platform \"linux\""],
    },
];

#[test]
fn plan_cli_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = std::env::temp_dir().join(format!("rbuild-plan-cli-{}-{}", std::process::id(), case.name.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), case.dockerfile).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rbuild")).arg("plan").args(case.args).arg(&dir).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() != case.success {
            failures.push(format!("{}: exit {:?}, stderr {stderr}", case.name, out.status.code()));
        }
        for want in case.stdout_has {
            if !stdout.contains(want) {
                failures.push(format!("{}: stdout lacks {want:?}", case.name));
            }
        }
        for want in case.stderr_has {
            if !stderr.contains(want) {
                failures.push(format!("{}: stderr lacks {want:?}: {stderr}", case.name));
            }
        }
        if !case.success && !stdout.is_empty() {
            failures.push(format!("{}: printed a plan despite the error", case.name));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
