//! `COPY` and `ADD`: sources (context paths, stages, heredocs; for ADD also URLs and archives)
//! to a destination.

use super::flags::{FlagKind, Flags};
use super::{Expander, InstructionErrorKind, RawArgs};
use crate::dockerfile::Heredoc;
use serde::Serialize;

/// Which of the two instructions (they share a shape, not a behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyKind {
    Copy,
    Add,
}

/// A COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub sources: Vec<String>,
    pub dest: String,
    /// COPY only: a stage name, index or image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// COPY only: keep the source's parent directories.
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only: expected digest of a remote source.
    pub checksum: Option<String>,
    /// ADD only: keep `.git` of a git source.
    pub keep_git_dir: bool,
    /// Heredoc sources (`COPY <<EOF /path`).
    pub heredocs: Vec<Heredoc>,
}

pub(super) fn parse(raw: &RawArgs<'_>, kind: CopyKind) -> Result<Copy, InstructionErrorKind> {
    let (name, known): (&'static str, &[(&str, FlagKind)]) = match kind {
        CopyKind::Copy => (
            "COPY",
            &[
                ("from", FlagKind::String),
                ("chown", FlagKind::String),
                ("chmod", FlagKind::String),
                ("link", FlagKind::Bool),
                ("parents", FlagKind::Bool),
                ("exclude", FlagKind::Multi),
            ],
        ),
        CopyKind::Add => (
            "ADD",
            &[
                ("chown", FlagKind::String),
                ("chmod", FlagKind::String),
                ("checksum", FlagKind::String),
                ("keep-git-dir", FlagKind::Bool),
                ("link", FlagKind::Bool),
                ("exclude", FlagKind::Multi),
            ],
        ),
    };
    let flags = Flags::parse(name, raw.flags, known)?;
    let Some((dest, sources)) = raw.words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(InstructionErrorKind::Arity {
            instruction: name,
            expected: "at least two arguments, but got fewer",
        });
    };
    Ok(Copy {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.multi("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        heredocs: raw.heredocs.to_vec(),
    })
}

impl Copy {
    /// Sources, destination and the string flags expand; heredoc source names stay literal.
    /// A heredoc body expands when its delimiter was unquoted, the way BuildKit's `ExpandRaw`
    /// does (quotes kept, `\` escapes processed); it is then stored tab-stripped.
    pub(super) fn expand(&self, ex: &mut Expander<'_>) -> Result<Self, InstructionErrorKind> {
        let heredocs = self
            .heredocs
            .iter()
            .map(|h| {
                if !h.expand {
                    return Ok(h.clone());
                }
                let content = ex.raw(&h.body(), "heredoc")?;
                Ok(Heredoc { content, chomp: false, expand: false, ..h.clone() })
            })
            .collect::<Result<_, InstructionErrorKind>>()?;
        let sources = self
            .sources
            .iter()
            .map(|s| if s.starts_with("<<") { Ok(s.clone()) } else { ex.word(s, "source") })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sources,
            dest: ex.word(&self.dest, "destination")?,
            from: ex.opt(&self.from, "--from")?,
            chown: ex.opt(&self.chown, "--chown")?,
            chmod: ex.opt(&self.chmod, "--chmod")?,
            checksum: ex.opt(&self.checksum, "--checksum")?,
            exclude: ex.each(&self.exclude, "--exclude")?,
            heredocs,
            ..self.clone()
        })
    }
}
