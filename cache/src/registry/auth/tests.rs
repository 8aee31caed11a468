use super::*;
use rstest::rstest;
use std::os::unix::fs::PermissionsExt;

fn basic(u: &str, p: &str) -> Option<Credential> {
    Some(Credential::Basic { username: u.into(), password: Secret::new(p) })
}

fn store_with(config_json: &str, helper_path: Option<OsString>) -> (tempfile::TempDir, CredentialStore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json).unwrap();
    let store = CredentialStore::load(AuthConfig {
        docker_config_dir: Some(dir.path().to_owned()),
        helper_path,
        explicit: HashMap::new(),
    })
    .unwrap();
    (dir, store)
}

// "alice:s3cret" in base64.
const ALICE: &str = "YWxpY2U6czNjcmV0";

#[rstest]
#[case(r#"{"auths":{"reg.io":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "reg.io", basic("alice", "s3cret"))]
#[case(r#"{"auths":{"https://reg.io/v2/":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "reg.io", basic("alice", "s3cret"))]
#[case(r#"{"auths":{"reg.io":{"username":"bob","password":"pw"}}}"#, "reg.io", basic("bob", "pw"))]
#[case(
    r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
    "docker.io",
    basic("alice", "s3cret")
)]
#[case(
    r#"{"auths":{"reg.io":{"identitytoken":"refresh"}}}"#,
    "reg.io",
    Some(Credential::IdentityToken(Secret::new("refresh")))
)]
#[case(r#"{"auths":{"reg.io":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "other.io", None)]
#[case(r#"{"auths":{"localhost:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "localhost:5000", basic("alice", "s3cret"))]
#[case(r#"{}"#, "reg.io", None)]
#[tokio::test]
async fn reads_auths(#[case] json: &str, #[case] registry: &str, #[case] expected: Option<Credential>) {
    let _ = ALICE;
    let (_dir, store) = store_with(json, None);
    assert_eq!(store.lookup(registry).await.unwrap(), expected);
}

#[tokio::test]
async fn invalid_auth_entry_is_an_error_without_the_secret() {
    let (_dir, store) = store_with(r#"{"auths":{"reg.io":{"auth":"bm9jb2xvbg=="}}}"#, None);
    let err = store.lookup("reg.io").await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidAuthEntry { .. }));
    assert!(!format!("{err:?}").contains("bm9jb2xvbg"));
}

fn helper_dir(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-credential-test");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[rstest]
#[case::cred_helpers(r#"{"credHelpers":{"reg.io":"test"}}"#)]
#[case::creds_store(r#"{"credsStore":"test"}"#)]
#[tokio::test]
async fn runs_credential_helpers(#[case] json: &str) {
    let helpers = helper_dir(
        "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 3\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"helper-%s\",\"Secret\":\"pw\"}' \"$server\" \"$server\"\n",
    );
    let (_dir, store) = store_with(json, Some(helpers.path().as_os_str().to_owned()));
    assert_eq!(store.lookup("reg.io").await.unwrap(), basic("helper-reg.io", "pw"));
}

#[tokio::test]
async fn helper_not_found_means_no_credentials_and_token_user_means_identity_token() {
    let helpers = helper_dir(
        "#!/bin/sh\nread server\ncase \"$server\" in\n  tok.io) echo '{\"Username\":\"<token>\",\"Secret\":\"rt\"}' ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
    );
    let (_dir, store) = store_with(r#"{"credsStore":"test"}"#, Some(helpers.path().as_os_str().to_owned()));
    assert_eq!(store.lookup("none.io").await.unwrap(), None);
    assert_eq!(store.lookup("tok.io").await.unwrap(), Some(Credential::IdentityToken(Secret::new("rt"))));
}

#[test]
fn missing_config_means_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::load(AuthConfig {
        docker_config_dir: Some(dir.path().join("absent")),
        ..AuthConfig::default()
    })
    .unwrap();
    assert!(store.file.is_none());
}

#[rstest]
#[case("Basic realm=\"registry\"", Some(Challenge::Basic))]
#[case(
    "Bearer realm=\"https://auth.io/token\",service=\"reg.io\",scope=\"repository:a/b:pull,push\"",
    Some(Challenge::Bearer { realm: "https://auth.io/token".into(), service: Some("reg.io".into()), scope: Some("repository:a/b:pull,push".into()) })
)]
#[case(
    "bearer realm=http://127.0.0.1:1/t, service=svc",
    Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: Some("svc".into()), scope: None })
)]
#[case("Bearer service=\"x\"", None)]
#[case("Negotiate abc", None)]
fn parses_challenges(#[case] header: &str, #[case] expected: Option<Challenge>) {
    assert_eq!(Challenge::parse(header), expected);
}

#[test]
fn secrets_are_redacted() {
    let c = basic("alice", "hunter2").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(
        c.basic_header().unwrap(),
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:hunter2"))
    );
}

#[rstest]
#[case(Some("/cfg"), Some("/home/u"), Some("/cfg"))]
#[case(None, Some("/home/u"), Some("/home/u/.docker"))]
#[case(Some(""), Some("/home/u"), Some("/home/u/.docker"))]
#[case(None, None, None)]
fn config_dir_precedence(#[case] env: Option<&str>, #[case] home: Option<&str>, #[case] want: Option<&str>) {
    assert_eq!(
        AuthConfig::default_config_dir(env.map(OsString::from), home.map(PathBuf::from)),
        want.map(PathBuf::from)
    );
}

#[rstest]
#[case::auths(r#"{"auths":{"reg:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "auths entry in")]
#[case::url_key(r#"{"auths":{"https://reg:5000/v1/":{"username":"a","password":"b"}}}"#, "auths entry in")]
#[case::helper(
    r#"{"credHelpers":{"reg:5000":"pass"},"auths":{"reg:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
    "docker-credential-pass"
)]
#[case::store(r#"{"credsStore":"secretservice"}"#, "docker-credential-secretservice")]
#[case::other_registry(r#"{"auths":{"other:1":{"auth":"YWxpY2U6czNjcmV0"}}}"#, "has no entry for this registry")]
#[case::empty_entry(r#"{"auths":{"reg:5000":{}}}"#, "has no entry for this registry")]
fn credential_source_names_the_file_or_helper(#[case] config_json: &str, #[case] want: &str) {
    let (dir, _) = store_with(config_json, None);
    let config = AuthConfig { docker_config_dir: Some(dir.path().to_owned()), ..AuthConfig::default() };
    let source = CredentialSource::find(&config, "reg:5000");
    let text = source.to_string();
    assert!(text.contains(want), "{text}");
    assert_eq!(source.found(), !want.contains("no entry"));
    if want.contains("auths") || want.contains("no entry") {
        assert!(text.contains(&dir.path().join("config.json").display().to_string()), "{text}");
    }
}

#[test]
fn credential_source_without_a_config_dir_or_with_explicit_credentials() {
    assert!(!CredentialSource::find(&AuthConfig::default(), "reg:5000").found());
    let mut config = AuthConfig::default();
    config.explicit.insert("reg:5000".into(), Credential::IdentityToken(Secret::new("t")));
    assert_eq!(CredentialSource::find(&config, "reg:5000"), CredentialSource::Explicit);
}
