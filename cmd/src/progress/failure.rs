//! A failed build as the displays show it: the error chain and, when a step failed, that
//! step with the last lines of its output (BuildKit shows the last 10), so a failed RUN can
//! be read in every `--progress` mode without a rerun.

use std::collections::VecDeque;
use std::path::Path;

use serde::Serialize;

/// Output lines kept per running step (BuildKit's error box shows 10).
pub const TAIL_LINES: usize = 10;
/// Longer lines are cut (a minified file on one line must not fill the memory).
const MAX_LINE: usize = 1000;

/// The last lines of one step's output, fed chunk by chunk.
#[derive(Debug, Default, Clone)]
pub struct Tail {
    lines: VecDeque<String>,
    /// A line not yet ended by `\n`.
    partial: String,
}

impl Tail {
    /// Adds a chunk (it may end in the middle of a line).
    pub fn push(&mut self, chunk: &[u8]) {
        let text = String::from_utf8_lossy(chunk);
        let mut pieces = text.split('\n').peekable();
        while let Some(piece) = pieces.next() {
            if self.partial.len() < MAX_LINE {
                self.partial.extend(piece.trim_end_matches('\r').chars().take(MAX_LINE - self.partial.len()));
            }
            if pieces.peek().is_some() {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(std::mem::take(&mut self.partial));
    }

    /// The last [`TAIL_LINES`] lines, an unterminated last line included.
    pub fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.end_line();
        }
        self.lines.into()
    }
}

/// The step a build failed in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedStep {
    /// 1-based stage among those that ran, as in the step lines.
    pub stage: usize,
    pub stages: usize,
    /// 1-based step in the stage (FROM is 1).
    pub step: usize,
    pub steps: usize,
    /// The instruction as written.
    pub instruction: String,
    /// Its Dockerfile line.
    pub line: usize,
    /// Why the step failed (for a RUN: the command and its exit code).
    pub error: String,
    /// The last lines of its output.
    pub output: Vec<String>,
}

/// What the displays show when `rbuild build` fails.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The whole error chain on one line (`outer: cause: cause`).
    pub message: String,
    /// The Dockerfile.
    pub file: String,
    /// The failed step, when a step failed.
    pub step: Option<FailedStep>,
}

impl Failure {
    /// The failure of a build of `dockerfile` that ended with `err`.
    pub fn new(err: &anyhow::Error, step: Option<FailedStep>, dockerfile: &Path) -> Self {
        Self { message: format!("{err:#}"), file: dockerfile.display().to_string(), step }
    }

    /// The box the human displays print (BuildKit's shape): the step, its file and line,
    /// its last output lines; nothing when no step failed (the error chain says it all).
    pub fn lines(&self) -> Vec<String> {
        let Some(s) = &self.step else {
            return Vec::new();
        };
        let mut lines = vec![
            "------".to_string(),
            format!(
                " > [stage {}/{}] STEP {}/{}: {} ({}:{}):",
                s.stage, s.stages, s.step, s.steps, s.instruction, self.file, s.line
            ),
        ];
        if s.output.is_empty() {
            lines.push("   (no output)".to_string());
        }
        lines.extend(s.output.iter().map(|l| format!("   {l}")));
        lines.push("------".to_string());
        lines.push(format!("{}:{}: {}: {}", self.file, s.line, s.instruction, s.error));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case::split_lines(&["a\nb", "c\nd\n"], &["a", "bc", "d"])]
    #[case::unterminated_last(&["x\ny"], &["x", "y"])]
    #[case::crlf(&["p\r\nq\r\n"], &["p", "q"])]
    #[case::keeps_the_last_ten(&["1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"], &["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"])]
    fn tails(#[case] chunks: &[&str], #[case] want: &[&str]) {
        let mut tail = Tail::default();
        for c in chunks {
            tail.push(c.as_bytes());
        }
        assert_eq!(tail.lines(), want);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut tail = Tail::default();
        tail.push(&vec![b'x'; 3 * MAX_LINE]);
        tail.push(b"yy\n");
        assert_eq!(tail.lines()[0].len(), MAX_LINE);
    }

    #[test]
    fn the_box_names_step_file_line_output_and_error() {
        let step = FailedStep {
            stage: 1,
            stages: 2,
            step: 3,
            steps: 4,
            instruction: "RUN make".into(),
            line: 7,
            error: "exit code 2".into(),
            output: vec!["cc: error".into()],
        };
        let failure = Failure { message: "m".into(), file: "app/Dockerfile".into(), step: Some(step) };
        assert_eq!(
            failure.lines(),
            [
                "------",
                " > [stage 1/2] STEP 3/4: RUN make (app/Dockerfile:7):",
                "   cc: error",
                "------",
                "app/Dockerfile:7: RUN make: exit code 2"
            ]
        );
    }
}
