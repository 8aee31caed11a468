//! Push access checked before a build runs (Kaniko's push-permission check): start a blob
//! upload in the target repository and cancel it. A missing or rejected credential then
//! fails the build in one round trip, naming where the credentials came from, instead of
//! after every step has run.

use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};

use crate::reference::Reference;
use crate::registry::auth::CredentialSource;
use crate::registry::error::{Operation, RegistryError, RegistryMessage};
use crate::registry::manifest::push_scope;
use crate::registry::transport::Call;
use crate::registry::RegistryClient;

impl RegistryClient {
    /// Checks that `target`'s repository accepts pushes: `POST /v2/<repo>/blobs/uploads/`
    /// (with a push token where the registry wants one), then `DELETE` of the session. A
    /// 401 or 403 (from the registry or its token server) is [`RegistryError::AccessDenied`].
    pub async fn check_push_access(&self, target: &Reference) -> Result<(), RegistryError> {
        let endpoint = self.endpoint(target.registry());
        let repository = target.repository();
        let scopes = [push_scope(repository)];
        let url = endpoint.repository_url(repository, "blobs/uploads/", Operation::StartUpload)?;
        let call = Call::new(&endpoint, repository, Operation::StartUpload, Method::POST, url, &scopes);
        let response = match self.transport().send(&call).await {
            Ok(r) => r,
            Err(RegistryError::Status { status: status @ (401 | 403), message, .. }) => {
                return Err(self.denied(target, status, message))
            }
            Err(e) => return Err(e),
        };
        if response.status() != StatusCode::ACCEPTED {
            return Err(match call.status_error(response).await {
                RegistryError::Status { status: status @ (401 | 403), message, .. } => {
                    self.denied(target, status, message)
                }
                other => other,
            });
        }
        // Best effort: the registry expires an abandoned session anyway.
        let session =
            response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).and_then(|l| call.url.join(l).ok());
        if let Some(url) = session {
            let cancel = Call::new(&endpoint, repository, Operation::StartUpload, Method::DELETE, url, &scopes);
            if let Err(e) = self.transport().send(&cancel).await {
                tracing::debug!(error = %e, "cancelling the push check's upload session failed");
            }
        }
        tracing::debug!(registry = %target.registry(), repository, "push access checked");
        Ok(())
    }

    fn denied(&self, target: &Reference, status: u16, message: RegistryMessage) -> RegistryError {
        RegistryError::AccessDenied {
            registry: target.registry().to_owned(),
            repository: target.repository().to_owned(),
            status,
            message,
            credentials: CredentialSource::find(&self.config().auth, target.registry()),
        }
    }
}
