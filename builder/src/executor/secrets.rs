//! Build secrets (`--secret id=ID,src=PATH` / `id=ID,env=VAR`, BuildKit's syntax) for
//! `RUN --mount=type=secret`. Values are read once, when the build starts, and never reach
//! a layer, the history, a log line or a `Debug` print.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Errors of `--secret` values.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A field is not `key=value`.
    #[error("invalid --secret field {field:?}: expected key=value")]
    Field { field: String },
    /// An unknown key.
    #[error("unexpected key {key:?} in --secret {spec:?} (expected id, type, src, source or env)")]
    Key { key: String, spec: String },
    /// `type=` other than `file` or `env`.
    #[error("unsupported secret type {value:?} (expected file or env)")]
    Type { value: String },
    /// No id and no source to derive it from.
    #[error("--secret {spec:?} has no id")]
    NoId { spec: String },
    /// The same id twice.
    #[error("--secret id {id:?} is given twice")]
    Duplicate { id: String },
    /// The file cannot be read.
    #[error("cannot read secret {id:?} from {path}")]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("secret {id:?}: environment variable {var} is not set")]
    EnvUnset { id: String, var: String },
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The contents of a file.
    File(PathBuf),
    /// The value of an environment variable of rbuild.
    Env(String),
}

/// One parsed `--secret` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

impl SecretSpec {
    /// Parses BuildKit's `--secret` syntax: comma-separated `id=`, `type=file|env`,
    /// `src=`/`source=`, `env=`. Without `src` or `env` the value is the environment
    /// variable named like the id; without `id` the id is the file name of `src`.
    pub fn parse(spec: &str) -> Result<Self, SecretError> {
        let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = field.split_once('=').ok_or_else(|| SecretError::Field { field: field.into() })?;
            let value = value.to_string();
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value),
                "type" if value == "file" || value == "env" => kind = Some(value),
                "type" => return Err(SecretError::Type { value }),
                "src" | "source" => src = Some(value),
                "env" => env = Some(value),
                _ => return Err(SecretError::Key { key: key.into(), spec: spec.into() }),
            }
        }
        if kind.as_deref() == Some("env") && env.is_none() {
            env = src.take();
        }
        let id = match (id, &src) {
            (Some(id), _) if !id.is_empty() => id,
            (_, Some(path)) => PathBuf::from(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| SecretError::NoId { spec: spec.into() })?,
            _ => return Err(SecretError::NoId { spec: spec.into() }),
        };
        let source = match (src, env) {
            (Some(path), _) => SecretSource::File(PathBuf::from(path)),
            (None, Some(var)) => SecretSource::Env(var),
            (None, None) => SecretSource::Env(id.clone()),
        };
        Ok(Self { id, source })
    }
}

/// A secret's bytes; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// The bytes, for writing the secret file or the environment variable.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

/// The build's secrets by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets(BTreeMap<String, SecretValue>);

impl Secrets {
    /// Reads every spec's value (files now, so a missing file fails before the build);
    /// `env` looks environment variables up.
    pub fn load(specs: &[SecretSpec], env: impl Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let mut out = BTreeMap::new();
        for spec in specs {
            let value = match &spec.source {
                SecretSource::File(path) => std::fs::read(path).map_err(|source| SecretError::Read {
                    id: spec.id.clone(),
                    path: path.clone(),
                    source,
                })?,
                SecretSource::Env(var) => env(var)
                    .ok_or_else(|| SecretError::EnvUnset { id: spec.id.clone(), var: var.clone() })?
                    .into_bytes(),
            };
            if out.insert(spec.id.clone(), SecretValue(value)).is_some() {
                return Err(SecretError::Duplicate { id: spec.id.clone() });
            }
        }
        Ok(Self(out))
    }

    /// The secret named `id`.
    pub fn get(&self, id: &str) -> Option<&SecretValue> {
        self.0.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn file(id: &str, p: &str) -> Result<SecretSpec, &'static str> {
        Ok(SecretSpec { id: id.into(), source: SecretSource::File(p.into()) })
    }
    fn env(id: &str, v: &str) -> Result<SecretSpec, &'static str> {
        Ok(SecretSpec { id: id.into(), source: SecretSource::Env(v.into()) })
    }

    #[rstest]
    #[case::file_src("id=npm,src=/home/u/.npmrc", file("npm", "/home/u/.npmrc"))]
    #[case::file_source("id=npm,source=x/y", file("npm", "x/y"))]
    #[case::explicit_file_type("type=file,id=a,src=f", file("a", "f"))]
    #[case::env("id=token,env=GH_TOKEN", env("token", "GH_TOKEN"))]
    #[case::env_type_uses_src("type=env,id=token,src=GH_TOKEN", env("token", "GH_TOKEN"))]
    #[case::id_only_is_env_of_same_name("id=TOKEN", env("TOKEN", "TOKEN"))]
    #[case::id_from_file_name("src=/run/keys/deploy.pem", file("deploy.pem", "/run/keys/deploy.pem"))]
    #[case::keys_case_insensitive("ID=a,SRC=f", file("a", "f"))]
    #[case::no_id("env=X", Err("has no id"))]
    #[case::bad_type("id=a,type=ssh", Err("unsupported secret type"))]
    #[case::unknown_key("id=a,path=f", Err("unexpected key"))]
    #[case::not_key_value("id=a,src", Err("expected key=value"))]
    fn parses(#[case] spec: &str, #[case] want: Result<SecretSpec, &str>) {
        match (SecretSpec::parse(spec), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{spec}: {e}"),
            (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn loads_files_and_env_and_redacts_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "hunter2").unwrap();
        let specs = [
            SecretSpec { id: "f".into(), source: SecretSource::File(dir.path().join("s")) },
            SecretSpec { id: "e".into(), source: SecretSource::Env("V".into()) },
        ];
        let secrets = Secrets::load(&specs, |k| (k == "V").then(|| "from-env".to_string())).unwrap();
        assert_eq!(secrets.get("f").unwrap().expose(), b"hunter2");
        assert_eq!(secrets.get("e").unwrap().expose(), b"from-env");
        assert!(!format!("{secrets:?}").contains("hunter2"));
        let unset = Secrets::load(&specs[1..], |_| None).unwrap_err();
        assert!(unset.to_string().contains("V is not set"), "{unset}");
        let dup = Secrets::load(&[specs[0].clone(), specs[0].clone()], |_| None).unwrap_err();
        assert!(matches!(dup, SecretError::Duplicate { .. }));
    }
}
