//! Credentials: Docker `config.json` (`auths`, `credHelpers`, `credsStore`) and credential
//! helpers, plus `WWW-Authenticate` challenge parsing.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` is redacted, so they never reach logs or
//! error messages.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Errors resolving credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `config.json` exists but cannot be read.
    #[error("cannot read docker config {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON of the expected shape.
    #[error("invalid docker config {path}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` entry is not base64 `user:password`.
    #[error("invalid auth entry for {registry} in {path}")]
    InvalidAuthEntry {
        /// Registry key.
        registry: String,
        /// The file.
        path: PathBuf,
    },
    /// The credential helper could not be run.
    #[error("cannot run credential helper {helper}")]
    HelperSpawn {
        /// Helper program name.
        helper: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The credential helper failed.
    #[error("credential helper {helper} failed for {registry} (exit status {status})")]
    HelperFailed {
        /// Helper program name.
        helper: String,
        /// Registry asked about.
        registry: String,
        /// Exit status.
        status: String,
    },
    /// The credential helper printed something that is not its JSON answer.
    #[error("credential helper {helper} returned invalid output for {registry}")]
    HelperOutput {
        /// Helper program name.
        helper: String,
        /// Registry asked about.
        registry: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (sent as Basic, or to the token realm).
    Basic {
        /// Username.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
}

impl Credential {
    /// The `Authorization: Basic …` value, if these are basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
            }
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Where credentials come from. Everything is passed in: nothing is read from the process
/// environment here.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Directory holding `config.json` (`$DOCKER_CONFIG` or `~/.docker`), if any.
    pub docker_config_dir: Option<PathBuf>,
    /// `PATH` used to find `docker-credential-<name>` helpers (inherited when `None`).
    pub helper_path: Option<OsString>,
    /// Credentials given explicitly (e.g. on the command line), by registry name.
    pub explicit: HashMap<String, Credential>,
}

impl AuthConfig {
    /// The conventional config directory: `docker_config_env` (`$DOCKER_CONFIG`) if set, else
    /// `<home>/.docker`.
    pub fn default_config_dir(docker_config_env: Option<OsString>, home: Option<PathBuf>) -> Option<PathBuf> {
        docker_config_env.filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| home.map(|h| h.join(".docker")))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// Resolves credentials per registry, caching answers (helpers are slow).
#[derive(Debug)]
pub struct CredentialStore {
    config: AuthConfig,
    file: Option<(PathBuf, DockerConfigFile)>,
    resolved: Mutex<HashMap<String, Option<Credential>>>,
}

/// The key Docker uses for a registry in `config.json` and with helpers.
fn docker_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// Reduce a `config.json` key (`https://host/v1/`, `host`) to the registry host.
fn normalise_key(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

impl CredentialStore {
    /// Load `config.json` (a missing file means no stored credentials).
    pub fn load(config: AuthConfig) -> Result<Self, AuthError> {
        let file = match &config.docker_config_dir {
            Some(dir) => read_config_file(&dir.join("config.json"))?,
            None => None,
        };
        Ok(Self { config, file, resolved: Mutex::new(HashMap::new()) })
    }

    /// Credentials for `registry` (as written in references: `docker.io`, `host:port`).
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credential>, AuthError> {
        let registry = normalise_key(registry);
        if let Some(found) = self.resolved.lock().await.get(registry) {
            return Ok(found.clone());
        }
        let found = self.resolve(registry).await?;
        tracing::debug!(registry, found = found.is_some(), "credentials resolved");
        self.resolved.lock().await.insert(registry.to_owned(), found.clone());
        Ok(found)
    }

    async fn resolve(&self, registry: &str) -> Result<Option<Credential>, AuthError> {
        if let Some(c) = self.config.explicit.get(registry) {
            return Ok(Some(c.clone()));
        }
        let Some((path, file)) = &self.file else {
            return Ok(None);
        };
        if let Some(helper) = file.cred_helpers.iter().find(|(k, _)| normalise_key(k) == registry).map(|(_, v)| v) {
            return self.run_helper(helper, registry).await;
        }
        let entry = file.auths.iter().find(|(k, _)| normalise_key(k) == registry);
        if let Some((key, entry)) = entry {
            if let Some(c) = entry_credential(key, entry, path)? {
                return Ok(Some(c));
            }
        }
        match &file.creds_store {
            Some(store) => self.run_helper(store, registry).await,
            None => Ok(None),
        }
    }

    async fn run_helper(&self, name: &str, registry: &str) -> Result<Option<Credential>, AuthError> {
        let helper = format!("docker-credential-{name}");
        let mut cmd = tokio::process::Command::new(&helper);
        cmd.arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        if let Some(path) = &self.config.helper_path {
            cmd.env("PATH", path);
        }
        let spawn_err = |source| AuthError::HelperSpawn { helper: helper.clone(), source };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(docker_key(registry).as_bytes()).await.map_err(spawn_err)?;
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if !out.status.success() {
            // Helpers report a missing entry with a failure and this message on stdout.
            if String::from_utf8_lossy(&out.stdout).contains("credentials not found") {
                return Ok(None);
            }
            return Err(AuthError::HelperFailed {
                helper,
                registry: registry.to_owned(),
                status: out.status.to_string(),
            });
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct HelperAnswer {
            username: String,
            secret: String,
        }
        let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|source| AuthError::HelperOutput {
            helper: helper.clone(),
            registry: registry.to_owned(),
            source,
        })?;
        Ok(Some(if answer.username == "<token>" {
            Credential::IdentityToken(Secret::new(answer.secret))
        } else {
            Credential::Basic { username: answer.username, password: Secret::new(answer.secret) }
        }))
    }
}

/// Where a registry's credentials come from, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Given to the client directly.
    Explicit,
    /// An `auths` entry of this `config.json`.
    ConfigFile(PathBuf),
    /// `docker-credential-<name>`, named by `credHelpers` or `credsStore` of this file.
    Helper { name: String, config: PathBuf },
    /// None: this `config.json` (if one was looked for) has nothing for the registry.
    Nothing { config: Option<PathBuf> },
}

impl CredentialSource {
    /// Where [`CredentialStore::lookup`] takes `registry`'s credentials from (re-reads
    /// `config.json`: meant for error paths; an unreadable file counts as none).
    pub fn find(config: &AuthConfig, registry: &str) -> Self {
        let registry = normalise_key(registry);
        if config.explicit.contains_key(registry) {
            return Self::Explicit;
        }
        let path = config.docker_config_dir.as_ref().map(|d| d.join("config.json"));
        let Some((path, file)) = path.as_deref().and_then(|p| read_config_file(p).ok().flatten()) else {
            return Self::Nothing { config: path };
        };
        let keyed = |map: &HashMap<String, String>| {
            map.iter().find(|(k, _)| normalise_key(k) == registry).map(|(_, v)| v.clone())
        };
        if let Some(name) = keyed(&file.cred_helpers) {
            return Self::Helper { name, config: path };
        }
        if file
            .auths
            .iter()
            .any(|(k, e)| normalise_key(k) == registry && matches!(entry_credential(k, e, &path), Ok(Some(_))))
        {
            return Self::ConfigFile(path);
        }
        match file.creds_store {
            Some(name) => Self::Helper { name, config: path },
            None => Self::Nothing { config: Some(path) },
        }
    }

    /// Whether any credentials were found.
    pub fn found(&self) -> bool {
        !matches!(self, Self::Nothing { .. })
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit => f.write_str("given explicitly"),
            Self::ConfigFile(path) => write!(f, "from the auths entry in {}", path.display()),
            Self::Helper { name, config } => {
                write!(f, "from credential helper docker-credential-{name} (named in {})", config.display())
            }
            Self::Nothing { config: Some(path) } => {
                write!(f, "none ({} has no entry for this registry)", path.display())
            }
            Self::Nothing { config: None } => f.write_str("none (no DOCKER_CONFIG or HOME to find config.json in)"),
        }
    }
}

fn read_config_file(path: &Path) -> Result<Option<(PathBuf, DockerConfigFile)>, AuthError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuthError::ReadConfig { path: path.to_owned(), source }),
    };
    let file =
        serde_json::from_slice(&bytes).map_err(|source| AuthError::ParseConfig { path: path.to_owned(), source })?;
    Ok(Some((path.to_owned(), file)))
}

fn entry_credential(key: &str, entry: &AuthEntry, path: &Path) -> Result<Option<Credential>, AuthError> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token.clone()))));
    }
    let invalid = || AuthError::InvalidAuthEntry { registry: key.to_owned(), path: path.to_owned() };
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(invalid)?;
        return Ok(Some(Credential::Basic { username: user.to_owned(), password: Secret::new(pass) }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credential::Basic { username: u.clone(), password: Secret::new(p.clone()) })),
        _ => Ok(None),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// Service name to ask for.
        service: Option<String>,
        /// Scope the registry asked for, if it said.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parse a header value; `None` for unknown schemes or a bearer challenge without realm.
    pub fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// Parse `k="v",k2=v2` auth parameters; quoted values may contain commas.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = input.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',');
    }
    out
}

#[cfg(test)]
mod tests;
