//! `RUN --mount=type=...,target=...`: BuildKit's run mounts.

use super::Expander;
use serde::Serialize;

/// What kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Where it appears inside the step. Secrets and ssh have defaults, and a bind mount
    /// without a target is mounted on the working directory (BuildKit's own Dockerfile relies on it).
    pub target: Option<String>,
    pub source: Option<String>,
    /// A stage name/index or image the source comes from.
    pub from: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Sharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<String>,
    /// For secrets: expose as this environment variable instead of (or besides) a file.
    pub env: Option<String>,
}

/// A malformed `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("invalid mount option {option:?}: expected key=value")]
    Option { option: String },
    #[error("unknown mount option {key:?}")]
    UnknownKey { key: String },
    #[error("unsupported mount type {value:?} (expected bind, cache, tmpfs, secret or ssh)")]
    Type { value: String },
    #[error("invalid value {value:?} for mount option {key}")]
    Value { key: String, value: String },
    #[error("mount type {kind} requires a target")]
    NoTarget { kind: &'static str },
}

impl Mount {
    /// Parses one `--mount` value (comma-separated `key=value`, CSV quoting allowed).
    pub fn parse(value: &str) -> Result<Self, MountError> {
        let fields = split_csv(value);
        let kind =
            fields.iter().find_map(|f| f.strip_prefix("type=")).map(parse_kind).transpose()?.unwrap_or(MountKind::Bind);
        let mut m = Mount {
            kind,
            target: None,
            source: None,
            from: None,
            readonly: matches!(kind, MountKind::Bind),
            id: None,
            sharing: Sharing::Shared,
            mode: None,
            uid: None,
            gid: None,
            required: false,
            size: None,
            env: None,
        };
        for field in &fields {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (field.to_ascii_lowercase(), None),
            };
            m.set(&key, val)?;
        }
        if m.target.is_none() && matches!(kind, MountKind::Cache | MountKind::Tmpfs) {
            return Err(MountError::NoTarget { kind: kind_name(kind) });
        }
        Ok(m)
    }

    fn set(&mut self, key: &str, val: Option<String>) -> Result<(), MountError> {
        let need = |v: Option<String>| v.ok_or_else(|| MountError::Option { option: key.to_string() });
        match key {
            "type" => {}
            "target" | "dst" | "destination" => self.target = Some(need(val)?),
            "source" | "src" => self.source = Some(need(val)?),
            "from" => self.from = Some(need(val)?),
            "id" => self.id = Some(need(val)?),
            "size" => self.size = Some(need(val)?),
            "env" => self.env = Some(need(val)?),
            "readonly" | "ro" => self.readonly = parse_bool(key, val)?,
            "readwrite" | "rw" => self.readonly = !parse_bool(key, val)?,
            "required" => self.required = parse_bool(key, val)?,
            "sharing" => {
                self.sharing = match need(val)?.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => return Err(MountError::Value { key: key.into(), value: other.into() }),
                }
            }
            "mode" => {
                let v = need(val)?;
                self.mode =
                    Some(u32::from_str_radix(&v, 8).map_err(|_| MountError::Value { key: key.into(), value: v })?);
            }
            "uid" | "gid" => {
                let v = need(val)?;
                let n = v.parse().map_err(|_| MountError::Value { key: key.into(), value: v })?;
                if key == "uid" {
                    self.uid = Some(n)
                } else {
                    self.gid = Some(n)
                }
            }
            _ => return Err(MountError::UnknownKey { key: key.to_string() }),
        }
        Ok(())
    }

    /// Mount values are expanded like other single words (BuildKit does the same).
    pub(super) fn expand(&self, ex: &mut Expander<'_>) -> Result<Self, super::InstructionErrorKind> {
        Ok(Self {
            target: ex.opt(&self.target, "mount target")?,
            source: ex.opt(&self.source, "mount source")?,
            from: ex.opt(&self.from, "mount from")?,
            id: ex.opt(&self.id, "mount id")?,
            ..self.clone()
        })
    }
}

fn parse_kind(value: &str) -> Result<MountKind, MountError> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "bind" => MountKind::Bind,
        "cache" => MountKind::Cache,
        "tmpfs" => MountKind::Tmpfs,
        "secret" => MountKind::Secret,
        "ssh" => MountKind::Ssh,
        _ => return Err(MountError::Type { value: value.to_string() }),
    })
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::Cache => "cache",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Secret => "secret",
        MountKind::Ssh => "ssh",
    }
}

fn parse_bool(key: &str, val: Option<String>) -> Result<bool, MountError> {
    match val.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(MountError::Value { key: key.to_string(), value: other.to_string() }),
    }
}

/// Splits a CSV record: commas separate fields, double quotes group (`""` is a literal quote).
fn split_csv(value: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                push(&mut fields, '"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => push(&mut fields, c),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect()
}

fn push(fields: &mut [String], c: char) {
    if let Some(last) = fields.last_mut() {
        last.push(c);
    }
}
