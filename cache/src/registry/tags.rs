//! Tag listing (`GET /v2/<repo>/tags/list`, following `Link` pages) and manifest deletion
//! (`DELETE /v2/<repo>/manifests/<digest>`, where the registry allows deletes).

use reqwest::header::LINK;
use reqwest::Method;

use crate::oci::Digest;
use crate::reference::Reference;
use crate::registry::error::{Operation, RegistryError};
use crate::registry::liveness::MAX_MANIFEST_SIZE;
use crate::registry::manifest::pull_scope;
use crate::registry::transport::Call;
use crate::registry::RegistryClient;

/// Tags asked for per page.
const PAGE: usize = 1000;

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every tag of `repository`'s repository (empty when the repository does not exist).
    pub async fn list_tags(&self, repository: &Reference) -> Result<Vec<String>, RegistryError> {
        let endpoint = self.endpoint(repository.registry());
        let repo = repository.repository();
        let scopes = [pull_scope(repo)];
        let mut url = endpoint.repository_url(repo, &format!("tags/list?n={PAGE}"), Operation::ListTags)?;
        let mut tags = Vec::new();
        loop {
            let call = Call::new(&endpoint, repo, Operation::ListTags, Method::GET, url.clone(), &scopes);
            let response = self.transport().send(&call).await?;
            if response.status().as_u16() == 404 {
                return Ok(tags);
            }
            if !response.status().is_success() {
                return Err(call.status_error(response).await);
            }
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .and_then(|link| url.join(&link).ok());
            let body = self.transport().read_body(&call, response, MAX_MANIFEST_SIZE, "tag lists").await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|_| call.invalid("tag list is not valid JSON"))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if n != url => url = n,
                _ => return Ok(tags),
            }
        }
    }

    /// Deletes the manifest `digest` (and so every tag naming it) from `repository`'s
    /// repository. Registries that forbid deletes answer 405 (`UNSUPPORTED`).
    pub async fn delete_manifest(&self, repository: &Reference, digest: &Digest) -> Result<(), RegistryError> {
        let endpoint = self.endpoint(repository.registry());
        let repo = repository.repository();
        let scopes = [format!("repository:{repo}:delete")];
        let url = endpoint.repository_url(repo, &format!("manifests/{digest}"), Operation::DeleteManifest)?;
        let call = Call::new(&endpoint, repo, Operation::DeleteManifest, Method::DELETE, url, &scopes);
        let response = self.transport().send(&call).await?;
        if !response.status().is_success() {
            return Err(call.status_error(response).await);
        }
        tracing::info!(registry = %endpoint.name, repository = repo, %digest, "manifest deleted");
        Ok(())
    }
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        part.get(start..end).map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    #[rstest::rstest]
    #[case(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#, Some("/v2/a/tags/list?last=x&n=2"))]
    #[case(r#"<http://r/v2/a/tags/list?n=1>; rel="prev""#, None)]
    #[case("", None)]
    fn next_links(#[case] header: &str, #[case] want: Option<&str>) {
        assert_eq!(super::next_link(header).as_deref(), want);
    }
}
