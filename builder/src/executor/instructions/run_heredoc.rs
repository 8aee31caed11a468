//! RUN with heredocs, as BuildKit's `dispatchRun` does it:
//!
//! * the command is exactly one heredoc (`RUN <<EOF`): its body (tabs stripped for `<<-`)
//!   is the script given to the shell; a body starting with `#!` is instead written to
//!   `/dev/pipes/<name>` (mode 0755, a read-only mount) and that path is run by the shell,
//!   so the shebang's interpreter runs it;
//! * anything else (`RUN <<EOF bash`, `RUN python3 <<EOF`, several heredocs): the line and
//!   every body with its terminator are joined back into one shell script, so the shell
//!   itself feeds the heredocs (and handles `<<-`, quoting and expansion).
//!
//! BuildKit never expands heredoc bodies of RUN itself; neither do we.

use crate::dockerfile::instruction::{CommandLine, Run};
use crate::dockerfile::Heredoc;

/// Where a heredoc script file is mounted.
pub(super) const PIPES_DIR: &str = "/dev/pipes";

/// What a RUN executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Script {
    pub argv: Vec<String>,
    /// A file to place at `/dev/pipes/<name>` (name, contents) for the shebang form.
    pub pipe: Option<(String, String)>,
}

/// The argv of `run` under `shell` (SHELL, or `/bin/sh -c`).
pub(super) fn script(run: &Run, shell: &[String]) -> Script {
    let with_shell = |arg: String| shell.iter().cloned().chain(std::iter::once(arg)).collect();
    let line = match (&run.command, run.heredocs.first()) {
        (CommandLine::Shell(line), Some(_)) => line,
        (command, _) => return Script { argv: command.argv(shell), pipe: None },
    };
    match (Heredoc::from_word(line), run.heredocs.first()) {
        (Some(_), Some(first)) => {
            let body = first.body();
            if body.starts_with("#!") {
                let argv = with_shell(format!("{PIPES_DIR}/{}", first.name));
                Script { argv, pipe: Some((first.name.clone(), body)) }
            } else {
                Script { argv: with_shell(body), pipe: None }
            }
        }
        _ => {
            let mut full = line.clone();
            for doc in &run.heredocs {
                full.push('\n');
                full.push_str(&doc.content);
                full.push_str(&doc.name);
            }
            Script { argv: with_shell(full), pipe: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instruction::{NetworkMode, Security};
    use rstest::rstest;

    fn doc(name: &str, chomp: bool, content: &str) -> Heredoc {
        Heredoc { name: name.into(), fd: 0, expand: true, chomp, content: content.into() }
    }

    fn run(line: &str, docs: Vec<Heredoc>) -> Run {
        Run {
            command: CommandLine::Shell(line.into()),
            mounts: Vec::new(),
            network: NetworkMode::Default,
            security: Security::Sandbox,
            heredocs: docs,
        }
    }

    const SH: [&str; 2] = ["/bin/sh", "-c"];

    #[rstest]
    #[case::script("<<EOF", vec![doc("EOF", false, "echo a\necho b\n")], &["/bin/sh", "-c", "echo a\necho b\n"], None)]
    #[case::chomped_script("<<-EOF", vec![doc("EOF", true, "\techo a\n\t\techo b\n")], &["/bin/sh", "-c", "echo a\necho b\n"], None)]
    #[case::quoted_delimiter_still_a_script("<<'EOF'", vec![doc("EOF", false, "echo $HOME\n")], &["/bin/sh", "-c", "echo $HOME\n"], None)]
    #[case::shebang("<<EOF", vec![doc("EOF", false, "#!/usr/bin/env python3\nprint(1)\n")], &["/bin/sh", "-c", "/dev/pipes/EOF"], Some(("EOF", "#!/usr/bin/env python3\nprint(1)\n")))]
    #[case::interpreter_after("<<EOF bash", vec![doc("EOF", false, "echo hi\n")], &["/bin/sh", "-c", "<<EOF bash\necho hi\nEOF"], None)]
    #[case::interpreter_before("python3 <<EOF", vec![doc("EOF", false, "print(1)\n")], &["/bin/sh", "-c", "python3 <<EOF\nprint(1)\nEOF"], None)]
    #[case::several("cat <<A <<-B > /f", vec![doc("A", false, "a\n"), doc("B", true, "\tb\n")], &["/bin/sh", "-c", "cat <<A <<-B > /f\na\nA\n\tb\nB"], None)]
    fn builds_the_command(
        #[case] line: &str,
        #[case] docs: Vec<Heredoc>,
        #[case] argv: &[&str],
        #[case] pipe: Option<(&str, &str)>,
    ) {
        let shell: Vec<String> = SH.iter().map(|s| s.to_string()).collect();
        let got = script(&run(line, docs), &shell);
        assert_eq!(got.argv, argv);
        assert_eq!(got.pipe, pipe.map(|(n, c)| (n.to_string(), c.to_string())));
    }

    #[test]
    fn without_heredocs_the_command_is_unchanged() {
        let shell: Vec<String> = SH.iter().map(|s| s.to_string()).collect();
        let exec = Run { command: CommandLine::Exec(vec!["ls".into(), "/".into()]), ..run("", Vec::new()) };
        assert_eq!(script(&exec, &shell).argv, ["ls", "/"]);
        assert_eq!(script(&run("echo hi", Vec::new()), &shell).argv, ["/bin/sh", "-c", "echo hi"]);
    }
}
