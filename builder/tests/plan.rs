//! The plan: instruction typing, expansion, ARG scoping, the stage graph and its errors.
//! Each case is a Dockerfile plus JSON-pointer checks on `rbuild plan`'s JSON.

mod common;

use rbuild_builder::frontend::plan_source;
use rbuild_builder::plan::{BaseImages, PlanRequest, Platform};
use serde_json::Value;
use std::path::Path;

/// Answers the ENV and ONBUILD triggers of known base images, as the executor does after
/// resolving them.
struct Bases;
impl BaseImages for Bases {
    fn env(&self, image: &str, _: &Platform) -> Option<Vec<(String, String)>> {
        match image {
            "golang:1.22" => Some(vec![("GOPATH".into(), "/go".into()), ("PATH".into(), "/usr/bin".into())]),
            "onbuild/base:1" => Some(vec![("SRC".into(), "a.txt".into())]),
            _ => None,
        }
    }

    fn onbuild(&self, image: &str, _: &Platform) -> Option<Vec<String>> {
        match image {
            "onbuild/base:1" => Some(vec!["COPY ${SRC} /x/".into(), "RUN echo $SRC".into()]),
            "onbuild/bad:1" => Some(vec!["ONBUILD RUN true".into()]),
            _ => None,
        }
    }
}

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    args: &'static [(&'static str, &'static str)],
    target: Option<&'static str>,
    checks: &'static [(&'static str, &'static str)],
}

fn request(case_args: &[(&str, &str)], target: Option<&str>) -> PlanRequest {
    let mut r = PlanRequest::host();
    r.platform = "linux/arm64".parse().unwrap();
    r.build_platform = "linux/amd64".parse().unwrap();
    r.build_args = case_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    r.target = target.map(String::from);
    r
}

fn plan_json(dockerfile: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Value, String> {
    plan_source(Path::new("Dockerfile"), dockerfile, &request(args, target), &Bases)
        .map(|p| serde_json::to_value(p).unwrap())
        .map_err(|e| e.to_string())
}

const CASES: &[Case] = &[
    Case {
        name: "global arg in FROM, build-arg override",
        dockerfile: "ARG TAG=1.0\nARG IMG=alpine:$TAG\nFROM $IMG AS base\nRUN true\n",
        args: &[("TAG", "2.0")],
        target: None,
        checks: &[("/stages/0/base/reference", "alpine:2.0"), ("/stages/0/name", "base"), ("/global_args/IMG", "alpine:2.0")],
    },
    Case {
        name: "global arg re-declared in a stage takes the global value",
        dockerfile: "ARG V=7\nFROM scratch\nARG V\nENV X=$V\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/1/instruction/vars/0/value", "7"), ("/stages/0/base/kind", "scratch")],
    },
    Case {
        name: "global arg not re-declared is invisible in the stage",
        dockerfile: "ARG V=7\nFROM scratch\nENV X=${V:-unset}\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/0/instruction/vars/0/value", "unset")],
    },
    Case {
        name: "ENV overrides ARG of the same name",
        dockerfile: "FROM scratch\nARG A=arg\nENV A=env\nWORKDIR /$A\n",
        args: &[("A", "cli")],
        target: None,
        checks: &[("/stages/0/steps/2/instruction/path", "/env")],
    },
    Case {
        name: "automatic platform args, declared in stage",
        dockerfile: "FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL arch=$TARGETARCH p=$TARGETPLATFORM os=$TARGETOS\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/platform/architecture", "amd64"),
            ("/stages/0/steps/2/instruction/labels/0/value", "arm64"),
            ("/stages/0/steps/2/instruction/labels/1/value", "linux/arm64"),
            ("/stages/0/steps/2/instruction/labels/2/value", ""),
        ],
    },
    Case {
        name: "base image ENV is visible to expansion",
        dockerfile: "FROM golang:1.22\nWORKDIR $GOPATH/src\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/0/instruction/path", "/go/src")],
    },
    Case {
        name: "stage ENV carries into FROM stage",
        dockerfile: "FROM scratch AS a\nENV D=/data\nFROM a\nWORKDIR $D\n",
        args: &[],
        target: None,
        checks: &[("/stages/1/base/kind", "stage"), ("/stages/1/steps/0/instruction/path", "/data")],
    },
    Case {
        name: "RUN sees every ARG in scope; other steps only what they use",
        dockerfile: "FROM scratch\nARG A=1\nARG COMMIT=abc\nRUN make\nENV X=$A\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/2/args/A", "1"), ("/stages/0/steps/2/args/COMMIT", "abc"), ("/stages/0/steps/3/args/A", "1")],
    },
    Case {
        name: "RUN is not expanded, its mounts are",
        dockerfile: "FROM scratch\nARG D=/cache\nRUN --mount=type=cache,target=$D echo $D\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/1/instruction/command/shell", "echo $D"), ("/stages/0/steps/1/instruction/mounts/0/target", "/cache"), ("/stages/0/steps/1/instruction/mounts/0/kind", "cache")],
    },
    Case {
        name: "COPY expands sources, dest and flags; exec form CMD",
        dockerfile: "FROM scratch\nARG U=1000\nCOPY --chown=$U:$U --chmod=755 a${U} /dst/\nCMD [\"/bin/app\", \"$U\"]\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/steps/1/instruction/chown", "1000:1000"),
            ("/stages/0/steps/1/instruction/sources/0", "a1000"),
            ("/stages/0/steps/1/instruction/dest", "/dst/"),
            ("/stages/0/steps/2/instruction/exec/1", "$U"),
        ],
    },
    Case {
        name: "COPY --from by name, by index and from an image; target pruning",
        dockerfile: "FROM scratch AS one\nFROM scratch AS two\nCOPY --from=one / /\nCOPY --from=0 / /\nCOPY --from=busybox:1 / /\nFROM scratch AS unused\nFROM two\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/1/depends_on/0", "0"),
            ("/stages/1/images/0", "busybox:1"),
            ("/stages/3/depends_on/0", "1"),
            ("/stages/2/needed", "false"),
            ("/stages/0/needed", "true"),
            ("/target", "3"),
        ],
    },
    Case {
        name: "--target selects a stage and prunes the rest",
        dockerfile: "FROM scratch AS build\nFROM scratch AS test\nCOPY --from=build / /\nFROM scratch AS final\n",
        args: &[],
        target: Some("TEST"),
        checks: &[("/target", "1"), ("/stages/0/needed", "true"), ("/stages/2/needed", "false")],
    },
    Case {
        name: "HEALTHCHECK options and NONE; ONBUILD nests",
        dockerfile: "FROM scratch\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f localhost\nONBUILD RUN echo hi\nFROM scratch\nHEALTHCHECK NONE\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/steps/0/instruction/interval", "5000000000"),
            ("/stages/0/steps/0/instruction/retries", "3"),
            ("/stages/0/steps/0/instruction/test/cmd/shell", "curl -f localhost"),
            ("/stages/0/steps/1/instruction/trigger/kind", "RUN"),
            ("/stages/1/steps/0/instruction/test", "none"),
        ],
    },
    Case {
        name: "ARG default sees earlier ARGs of the same line",
        dockerfile: "FROM scratch\nARG A=x B=${A}y\nLABEL b=$B\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/1/instruction/labels/0/value", "xy")],
    },
    Case {
        name: "EXPOSE splits expanded words; VOLUME and USER expand",
        dockerfile: "FROM scratch\nENV PORTS=\"80 443/tcp\" U=app\nEXPOSE $PORTS 53/udp\nVOLUME /data /$U\nUSER $U:$U\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/steps/1/instruction/ports/1", "443/tcp"),
            ("/stages/0/steps/1/instruction/ports/2", "53/udp"),
            ("/stages/0/steps/2/instruction/paths/1", "/app"),
            ("/stages/0/steps/3/instruction/user", "app:app"),
        ],
    },
    Case {
        name: "base image ONBUILD triggers run right after FROM, expanded in the stage's scope",
        dockerfile: "FROM onbuild/base:1\nRUN own\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/steps/0/instruction/kind", "COPY"),
            ("/stages/0/steps/0/instruction/sources/0", "a.txt"),
            ("/stages/0/steps/0/original", "COPY ${SRC} /x/"),
            ("/stages/0/steps/0/location/start_line", "1"),
            ("/stages/0/steps/1/original", "RUN echo $SRC"),
            ("/stages/0/steps/2/original", "RUN own"),
        ],
    },
    Case {
        name: "a stage's ONBUILD triggers run in a stage built FROM it, not in the stage itself",
        dockerfile: "FROM scratch AS a\nONBUILD COPY f /f\nFROM a\nRUN own\n",
        args: &[],
        target: None,
        checks: &[
            ("/stages/0/steps/0/instruction/kind", "ONBUILD"),
            ("/stages/1/steps/0/instruction/kind", "COPY"),
            ("/stages/1/steps/1/original", "RUN own"),
        ],
    },
    Case {
        name: "COPY heredoc with an unquoted delimiter expands, quotes kept",
        dockerfile: "FROM scratch\nENV N=v\nCOPY <<EOF /f\n$N \"q\" \\$N\nEOF\n",
        args: &[],
        target: None,
        checks: &[("/stages/0/steps/1/instruction/heredocs/0/content", "v \"q\" $N\n")],
    },
];

#[test]
fn plan_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let json = match plan_json(case.dockerfile, case.args, case.target) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{}: unexpected error: {e}", case.name));
                continue;
            }
        };
        for (pointer, want) in case.checks {
            let got = match json.pointer(pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "<missing>".to_string(),
            };
            if got != *want {
                failures.push(format!("{}: {pointer} = {got:?}, want {want:?}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// (name, Dockerfile, target, expected message part, line, column)
type ErrorCase = (&'static str, &'static str, Option<&'static str>, &'static str, usize, usize);
const ERRORS: &[ErrorCase] = &[
    (
        "unknown instruction with suggestion",
        "FROM scratch\nFRM x\n",
        None,
        "unknown instruction: FRM (did you mean FROM?)",
        2,
        1,
    ),
    ("instruction before FROM", "ENV A=1\nFROM scratch\n", None, "no build stage in current context", 1, 1),
    ("no FROM at all", "ARG A=1\n", None, "no FROM instruction", 0, 0),
    ("duplicate stage name", "FROM scratch AS a\nFROM scratch AS A\n", None, "duplicate stage name \"a\"", 2, 1),
    ("unknown target", "FROM scratch AS a\n", Some("b"), "target stage \"b\" could not be found", 0, 0),
    ("stage index out of range", "FROM scratch\nCOPY --from=4 / /\n", None, "invalid stage index 4", 2, 1),
    (
        "cycle",
        "FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\nCOPY --from=a / /\n",
        None,
        "circular dependency",
        1,
        1,
    ),
    ("self reference", "FROM scratch AS a\nCOPY --from=a / /\n", None, "circular dependency", 1, 1),
    ("unknown flag", "FROM scratch\nCOPY --frm=a / /\n", None, "unknown flag: --frm", 2, 1),
    ("flag without value", "FROM scratch\nCOPY --from / /\n", None, "missing a value on flag: --from", 2, 1),
    ("bad bool flag", "FROM scratch\nCOPY --link=yes a /\n", None, "invalid value \"yes\" for flag --link", 2, 1),
    ("COPY with one argument", "FROM scratch\nCOPY a\n", None, "COPY requires at least two arguments", 2, 1),
    ("bad stage name", "FROM scratch AS 1abc\n", None, "invalid name for build stage", 1, 1),
    ("FROM with two words", "FROM scratch foo\n", None, "FROM requires either one argument", 1, 1),
    (
        "SHELL not JSON",
        "FROM scratch\nSHELL /bin/bash -c\n",
        None,
        "SHELL requires the arguments to be in JSON form",
        2,
        1,
    ),
    ("ONBUILD FROM", "FROM scratch\nONBUILD FROM x\n", None, "FROM isn't allowed as an ONBUILD trigger", 2, 1),
    (
        "HEALTHCHECK NONE with args",
        "FROM scratch\nHEALTHCHECK NONE x\n",
        None,
        "HEALTHCHECK NONE takes no arguments",
        2,
        1,
    ),
    (
        "HEALTHCHECK bad type",
        "FROM scratch\nHEALTHCHECK CONNECT TCP 7000\n",
        None,
        "unknown type \"CONNECT\" in HEALTHCHECK",
        2,
        1,
    ),
    (
        "HEALTHCHECK tiny interval",
        "FROM scratch\nHEALTHCHECK --interval=1us CMD true\n",
        None,
        "--interval cannot be less than 1ms",
        2,
        1,
    ),
    (
        "bad mount type",
        "FROM scratch\nRUN --mount=type=nfs,target=/x true\n",
        None,
        "unsupported mount type \"nfs\"",
        2,
        1,
    ),
    (
        "cache mount without target",
        "FROM scratch\nRUN --mount=type=cache true\n",
        None,
        "mount type cache requires a target",
        2,
        1,
    ),
    (
        "tmpfs mount without target",
        "FROM scratch\nRUN --mount=type=tmpfs true\n",
        None,
        "mount type tmpfs requires a target",
        2,
        1,
    ),
    (
        "bad network",
        "FROM scratch\nRUN --network=bridge true\n",
        None,
        "invalid value \"bridge\" for flag --network",
        2,
        1,
    ),
    ("bad platform", "FROM --platform=linux scratch\n", None, "invalid platform \"linux\"", 1, 1),
    ("bad substitution", "FROM scratch\nWORKDIR ${}\n", None, "failed to expand WORKDIR", 2, 1),
    ("empty base after expansion", "ARG B\nFROM $B\n", None, "base name can not be an empty string", 2, 1),
    ("USER with no argument", "FROM scratch\nUSER\n", None, "USER requires exactly one argument", 2, 1),
];

#[test]
fn plan_errors_name_file_line_and_column() {
    let mut failures = Vec::new();
    for (name, dockerfile, target, want, line, column) in ERRORS {
        match plan_source(Path::new("ctx/Dockerfile"), dockerfile, &request(&[], *target), &Bases) {
            Ok(_) => failures.push(format!("{name}: planned without error")),
            Err(e) => {
                let msg = e.to_string();
                let prefix = if *line == 0 {
                    "ctx/Dockerfile: ".to_string()
                } else {
                    format!("ctx/Dockerfile:{line}:{column}: ")
                };
                if !msg.contains(want) || !msg.starts_with(&prefix) {
                    failures.push(format!("{name}: got {msg:?}, want prefix {prefix:?} and {want:?}"));
                }
                if *line > 0 {
                    let quoted = dockerfile.lines().nth(line - 1).unwrap_or_default();
                    if !msg.ends_with(&format!("| {quoted}")) {
                        failures.push(format!("{name}: line not quoted in {msg:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn unconsumed_build_args_warn_but_proxy_args_do_not() {
    let plan = plan_source(
        Path::new("Dockerfile"),
        "FROM scratch\nARG USED\n",
        &request(&[("USED", "1"), ("UNUSED", "2"), ("HTTP_PROXY", "http://p")], None),
        &Bases,
    )
    .unwrap();
    let warnings: Vec<_> = plan.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(warnings, vec!["build-arg \"UNUSED\" was not consumed by any ARG".to_string()]);
    assert_eq!(plan.proxy_args.get("HTTP_PROXY").map(String::as_str), Some("http://p"));
}

/// Every real-world Dockerfile of the conformance corpus plans (typing, expansion, stage graph),
/// not only parses.
#[test]
fn real_world_dockerfiles_plan() {
    let Some(root) = common::corpus("real-world") else { return };
    let mut files = Vec::new();
    for repo in std::fs::read_dir(&root).unwrap().flatten() {
        for case in std::fs::read_dir(repo.path()).into_iter().flatten().flatten() {
            let file = case.path().join("Dockerfile");
            if file.is_file() {
                files.push(file);
            }
        }
    }
    assert!(files.len() >= 22, "found only {} real-world Dockerfiles", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            rbuild_builder::frontend::load_plan(f, &PlanRequest::host(), &Bases).err().map(|e| e.to_string())
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn forbidden_onbuild_trigger_of_a_base_image_is_an_error() {
    let err = plan_json("FROM onbuild/bad:1\n", &[], None).unwrap_err();
    assert!(err.contains("ONBUILD isn't allowed as an ONBUILD trigger"), "{err}");
}
