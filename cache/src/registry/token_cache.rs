//! Bearer tokens, cached per (registry, scope set) until shortly before they expire.
//!
//! The scope set is the whole set a request needs (e.g. push to `a` plus pull from `b` for a
//! cross-repository mount), so one token covers a whole push.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::Mutex;

use crate::registry::auth::Secret;

/// Tokens are considered expired this long before their real expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Lifetime assumed when neither `exp` nor `expires_in` says (the spec's default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// A token cache key: registry host and the sorted, joined scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    registry: String,
    scopes: String,
}

impl TokenKey {
    /// Build a key; scope order does not matter.
    pub fn new(registry: &str, scopes: &[String]) -> Self {
        let mut sorted = scopes.to_vec();
        sorted.sort();
        sorted.dedup();
        Self { registry: registry.to_owned(), scopes: sorted.join(" ") }
    }
}

#[derive(Debug)]
struct Cached {
    token: Secret,
    valid_until: Instant,
}

/// The token cache of one client.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenCache {
    /// A token still valid for `key`.
    pub async fn get(&self, key: &TokenKey) -> Option<Secret> {
        let tokens = self.tokens.lock().await;
        tokens.get(key).filter(|c| c.valid_until > Instant::now()).map(|c| c.token.clone())
    }

    /// Store a token; its lifetime comes from the JWT `exp` claim when readable, else from
    /// `expires_in`, else 60 s.
    pub async fn insert(&self, key: TokenKey, token: Secret, expires_in: Option<u64>) {
        let lifetime = jwt_lifetime(token.expose()).or(expires_in.map(Duration::from_secs)).unwrap_or(DEFAULT_LIFETIME);
        let valid_until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        self.tokens.lock().await.insert(key, Cached { token, valid_until });
    }

    /// Forget a token the registry rejected.
    pub async fn invalidate(&self, key: &TokenKey) {
        self.tokens.lock().await.remove(key);
    }
}

/// Remaining lifetime of a JWT according to its `exp` claim (no signature check: the token is
/// opaque to us, this only schedules a refresh).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: u64,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(claims.exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: u64) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b64.encode(r#"{"alg":"RS256"}"#), b64.encode(format!(r#"{{"exp":{exp}}}"#)))
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[tokio::test]
    async fn scope_order_does_not_matter_and_registries_are_separate() {
        let cache = TokenCache::default();
        let scopes = vec!["repository:a:pull".to_owned(), "repository:b:push".to_owned()];
        let reversed: Vec<String> = scopes.iter().rev().cloned().collect();
        cache.insert(TokenKey::new("r1", &scopes), Secret::new("t"), Some(300)).await;
        assert!(cache.get(&TokenKey::new("r1", &reversed)).await.is_some());
        assert!(cache.get(&TokenKey::new("r2", &scopes)).await.is_none());
        assert!(cache.get(&TokenKey::new("r1", &scopes[..1])).await.is_none());
    }

    #[tokio::test]
    async fn expiry_comes_from_the_jwt_exp_claim() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", &["s".to_owned()]);
        // Expires in 5 s: inside the safety margin, so never served.
        cache.insert(key.clone(), Secret::new(jwt(now() + 5)), Some(3600)).await;
        assert!(cache.get(&key).await.is_none());
        cache.insert(key.clone(), Secret::new(jwt(now() + 600)), Some(1)).await;
        assert!(cache.get(&key).await.is_some());
        cache.invalidate(&key).await;
        assert!(cache.get(&key).await.is_none());
    }

    #[tokio::test]
    async fn opaque_tokens_use_expires_in() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", &[]);
        cache.insert(key.clone(), Secret::new("opaque"), Some(3)).await;
        assert!(cache.get(&key).await.is_none());
        cache.insert(key.clone(), Secret::new("opaque"), None).await;
        assert!(cache.get(&key).await.is_some());
    }
}
