//! The frontend's entry point: a Dockerfile on disk (or in memory) to a [`Plan`], with errors
//! that name the file, line and column and quote the line.

use crate::dockerfile::{self, ParseErrorKind};
use crate::plan::{BaseImages, Plan, PlanErrorKind, PlanRequest};
use std::fmt;
use std::path::{Path, PathBuf};

/// A Dockerfile that cannot be read, parsed or planned.
#[derive(Debug, thiserror::Error)]
pub struct DockerfileError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    pub column: usize,
    /// The offending physical line, quoted in the message.
    pub line_text: String,
    /// Shown in this error's own message (not as a separate cause).
    pub kind: DockerfileErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileErrorKind {
    #[error("cannot read the Dockerfile")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseErrorKind),
    #[error(transparent)]
    Plan(#[from] PlanErrorKind),
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.line {
            0 => write!(f, "{file}: {}", self.kind)?,
            line => write!(f, "{file}:{line}:{}: {}", self.column, self.kind)?,
        }
        if let DockerfileErrorKind::Read(e) = &self.kind {
            write!(f, ": {e}")?;
        }
        if self.line > 0 {
            write!(f, "\n {:>4} | {}", self.line, self.line_text)?;
        }
        Ok(())
    }
}

/// Reads, parses and plans the Dockerfile at `path`.
#[expect(clippy::result_large_err, reason = "one error per build, carrying the quoted line; boxing buys nothing")]
pub fn load_plan(path: &Path, request: &PlanRequest, bases: &dyn BaseImages) -> Result<Plan, DockerfileError> {
    let text = std::fs::read(path).map_err(|e| DockerfileError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        line_text: String::new(),
        kind: DockerfileErrorKind::Read(e),
    })?;
    plan_source(path, &String::from_utf8_lossy(&text), request, bases)
}

/// Parses and plans Dockerfile text; `file` names it in errors.
#[expect(clippy::result_large_err, reason = "one error per build, carrying the quoted line; boxing buys nothing")]
pub fn plan_source(
    file: &Path,
    text: &str,
    request: &PlanRequest,
    bases: &dyn BaseImages,
) -> Result<Plan, DockerfileError> {
    let df = dockerfile::parse(text).map_err(|e| DockerfileError {
        file: file.to_path_buf(),
        line: e.line,
        column: e.column,
        line_text: e.line_text,
        kind: e.kind.into(),
    })?;
    Plan::resolve(&df, request, bases).map_err(|e| {
        let (line, column) = e.location.map_or((0, 0), |l| (l.start_line, l.column));
        let line_text = line.checked_sub(1).and_then(|i| text.lines().nth(i)).unwrap_or_default().to_string();
        DockerfileError { file: file.to_path_buf(), line, column, line_text, kind: e.kind.into() }
    })
}
