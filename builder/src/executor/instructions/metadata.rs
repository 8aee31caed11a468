//! Instructions that only change the image config: ENV, LABEL, USER, EXPOSE, VOLUME,
//! STOPSIGNAL, HEALTHCHECK, SHELL, CMD, ENTRYPOINT, ARG, MAINTAINER, ONBUILD.

use super::{shell, InstructionError};
use crate::dockerfile::instruction::{Healthcheck, HealthcheckTest, Instruction};
use crate::image::config::Empty;
use crate::image::{self, ImageConfig};
use crate::plan::Step;

/// Applies a config-only instruction.
pub(super) fn apply(
    instruction: &Instruction,
    config: &mut ImageConfig,
    previous: &[Step],
) -> Result<(), InstructionError> {
    let shell = shell(config);
    let c = &mut config.config;
    match instruction {
        Instruction::Env { vars } => {
            for kv in vars {
                set_env(&mut c.env, &kv.key, &kv.value);
            }
        }
        Instruction::Label { labels } => {
            c.labels.extend(labels.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
        }
        Instruction::User { user } => c.user = Some(user.clone()),
        Instruction::Expose { ports } => {
            c.exposed_ports.extend(ports.iter().flat_map(|p| port_keys(p)).map(|k| (k, Empty {})));
        }
        Instruction::Volume { paths } => c.volumes.extend(paths.iter().map(|p| (p.clone(), Empty {}))),
        Instruction::Stopsignal { signal } => c.stop_signal = Some(signal.clone()),
        Instruction::Healthcheck(h) => c.healthcheck = Some(healthcheck(h)),
        Instruction::Shell { shell: new } => c.shell = Some(new.clone()),
        Instruction::Cmd(cmd) => c.cmd = Some(cmd.argv(&shell)),
        Instruction::Entrypoint(entrypoint) => {
            c.entrypoint = Some(entrypoint.argv(&shell));
            // Docker: an ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
            if !previous.iter().any(|s| matches!(s.instruction, Instruction::Cmd(_))) {
                c.cmd = None;
            }
        }
        Instruction::Maintainer { maintainer } => config.author = Some(maintainer.clone()),
        Instruction::Onbuild { source, .. } => c.on_build.push(source.clone()),
        // ARG values reach RUN through the plan's `Step::args`; nothing lands in the config.
        Instruction::Arg { .. } => {}
        other => {
            return Err(InstructionError::unsupported(format!("{} as a config-only instruction", other.keyword())))
        }
    }
    Ok(())
}

/// Sets `key=value`, replacing an existing entry in place (Docker keeps the order).
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// `80` → `80/tcp`; protocols lower-cased.
/// `port[/proto]` as config keys; a range `8000-8002` is one key per port, as BuildKit's
/// nat.ParsePortSpecs gives (a malformed range is kept as written).
fn port_keys(port: &str) -> Vec<String> {
    let (p, proto) = match port.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (port, "tcp".to_string()),
    };
    let range = p.split_once('-').and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
    match range {
        Some((first, last)) if first <= last => (first..=last).map(|n| format!("{n}/{proto}")).collect(),
        _ => vec![format!("{p}/{proto}")],
    }
}

fn healthcheck(h: &Healthcheck) -> image::Healthcheck {
    let test = match &h.test {
        HealthcheckTest::None => vec!["NONE".to_string()],
        HealthcheckTest::Cmd(crate::dockerfile::instruction::CommandLine::Exec(argv)) => {
            std::iter::once("CMD".to_string()).chain(argv.iter().cloned()).collect()
        }
        HealthcheckTest::Cmd(crate::dockerfile::instruction::CommandLine::Shell(line)) => {
            vec!["CMD-SHELL".to_string(), line.clone()]
        }
    };
    let nanos = |n: u64| (n != 0).then(|| i64::try_from(n).unwrap_or(i64::MAX));
    image::Healthcheck {
        test,
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        start_period: nanos(h.start_period),
        start_interval: nanos(h.start_interval),
        retries: (h.retries != 0).then_some(i64::from(h.retries)),
    }
}

#[cfg(test)]
mod tests {
    use super::{port_keys, set_env};

    #[rstest::rstest]
    #[case("80", &["80/tcp"])]
    #[case("53/UDP", &["53/udp"])]
    #[case("8080/tcp", &["8080/tcp"])]
    #[case("8000-8002", &["8000/tcp", "8001/tcp", "8002/tcp"])]
    #[case("7-8/udp", &["7/udp", "8/udp"])]
    #[case("9-1", &["9-1/tcp"])]
    fn ports(#[case] input: &str, #[case] want: &[&str]) {
        assert_eq!(port_keys(input), want);
    }

    #[test]
    fn env_replaces_in_place() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        set_env(&mut env, "PATH", "/usr/bin");
        set_env(&mut env, "B", "2");
        assert_eq!(env, ["PATH=/usr/bin", "A=1", "B=2"]);
    }
}
