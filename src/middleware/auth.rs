//! [`AuthMiddleware`]: per-provider credentials from a [`CredentialSource`], put on each
//! request (connectors send [`CompletionRequest::credential`] instead of their configured
//! key), and one refresh-and-retry when the provider answers 401.
//!
//! A 401 runs the source's [`refresh`](CredentialSource::refresh) hook (fetch a new token,
//! re-read a rotated key) and retries the call once; a second 401 for the same provider in
//! the same call is given to the caller. A 403 (the key is valid but lacks permission) is
//! never retried. The retry runs the whole chain again, so `on_request` fetches the
//! refreshed credential and the rate limiter re-acquires.

use std::collections::{HashMap, HashSet};
use std::fmt;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError};
use crate::provider::{ApiKey, CompletionRequest, ConnectorError};

/// Context slot: the providers whose credential was already refreshed in this call.
/// Context value: the providers whose credential was refreshed in this call.
#[derive(Debug, Default)]
struct Refreshed(HashSet<String>);

/// A credential could not be obtained or refreshed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The source failed for this provider (token endpoint down, secret store refused).
    #[error("credential for provider `{provider}` unavailable: {reason}")]
    Unavailable {
        /// The provider id.
        provider: String,
        /// Why (never the credential itself).
        reason: String,
    },
}

/// Where credentials come from. Implement it for a token service or a secret store; the
/// hub ships [`StaticCredentials`].
#[async_trait]
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential to send to `provider`, or `None` to use the connector's configured
    /// key.
    async fn credential(&self, provider: &str) -> Result<Option<ApiKey>, CredentialError>;

    /// Called after `provider` answered 401 with the current credential: obtain a fresh
    /// one, so the next [`credential`](Self::credential) returns it.
    async fn refresh(&self, provider: &str) -> Result<(), CredentialError>;
}

/// A fixed map of provider id → key, replaceable at run time with
/// [`set`](Self::set) (a key rotated by another task is picked up by the next request).
/// Its `refresh` changes nothing: the retry after a 401 sends the key then in the map.
#[derive(Default)]
pub struct StaticCredentials {
    keys: RwLock<HashMap<String, ApiKey>>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<String> = self.keys.read().keys().cloned().collect();
        providers.sort();
        f.debug_struct("StaticCredentials")
            .field("providers", &providers)
            .finish()
    }
}

impl StaticCredentials {
    /// Credentials from `(provider id, key)` pairs.
    pub fn new(keys: impl IntoIterator<Item = (impl Into<String>, impl Into<ApiKey>)>) -> Self {
        Self {
            keys: RwLock::new(
                keys.into_iter()
                    .map(|(p, k)| (p.into(), k.into()))
                    .collect(),
            ),
        }
    }

    /// Sets (or replaces) the key of `provider`.
    pub fn set(&self, provider: impl Into<String>, key: impl Into<ApiKey>) {
        self.keys.write().insert(provider.into(), key.into());
    }
}

#[async_trait]
impl CredentialSource for StaticCredentials {
    async fn credential(&self, provider: &str) -> Result<Option<ApiKey>, CredentialError> {
        Ok(self.keys.read().get(provider).cloned())
    }

    async fn refresh(&self, _provider: &str) -> Result<(), CredentialError> {
        Ok(())
    }
}

/// Applies credentials from a [`CredentialSource`]; refreshes and retries once on 401.
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    source: std::sync::Arc<dyn CredentialSource>,
}

impl AuthMiddleware {
    /// Credentials from `source`.
    pub fn new(source: std::sync::Arc<dyn CredentialSource>) -> Self {
        Self { source }
    }

    fn failed(e: impl fmt::Display) -> MiddlewareError {
        MiddlewareError::Failed {
            middleware: "auth".into(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl Middleware for AuthMiddleware {
    fn name(&self) -> &str {
        "auth"
    }

    /// Sets the request's credential for the current provider (unchanged when the source
    /// has none); a key that cannot be sent in a header stops the call.
    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        if let Some(key) = self
            .source
            .credential(&ctx.provider_id)
            .await
            .map_err(Self::failed)?
        {
            key.validate().map_err(Self::failed)?;
            request.credential = Some(key);
        }
        Ok(())
    }

    /// On the first 401 from a provider in this call: refresh, then `Retry`. Otherwise
    /// `Propagate`. A failed refresh replaces the 401 with its error.
    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        if ctx.decided.is_some()
            || !matches!(error, ConnectorError::Authentication { status: 401, .. })
        {
            return Ok(ErrorAction::Propagate);
        }
        let provider = ctx.provider_id.clone();
        let first = match ctx.extensions.get_mut::<Refreshed>() {
            Some(r) => r.0.insert(provider),
            None => {
                ctx.extensions.insert(Refreshed(HashSet::from([provider])));
                true
            }
        };
        if !first {
            return Ok(ErrorAction::Propagate);
        }
        self.source
            .refresh(&ctx.provider_id)
            .await
            .map_err(Self::failed)?;
        Ok(ErrorAction::Retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_credentials_hide_keys_and_can_be_rotated() {
        let s = StaticCredentials::new([("openai", "sk-one")]);
        assert!(!format!("{s:?}").contains("sk-one"));
        assert_eq!(
            s.credential("openai").await.unwrap().unwrap().expose(),
            "sk-one"
        );
        assert_eq!(s.credential("azure").await.unwrap(), None);
        s.set("openai", "sk-two");
        assert_eq!(
            s.credential("openai").await.unwrap().unwrap().expose(),
            "sk-two"
        );
    }

    #[tokio::test]
    async fn a_401_retries_once_per_provider_and_a_403_never() {
        let m = AuthMiddleware::new(std::sync::Arc::new(StaticCredentials::default()));
        let unauthorized = |status| ConnectorError::Authentication {
            status,
            message: "no".into(),
            meta: Box::default(),
        };
        let mut ctx = MiddlewareContext::new("a", 0);
        assert_eq!(
            m.on_error(&unauthorized(401), &mut ctx).await.unwrap(),
            ErrorAction::Retry
        );
        assert_eq!(
            m.on_error(&unauthorized(401), &mut ctx).await.unwrap(),
            ErrorAction::Propagate
        );
        ctx.provider_id = "b".into();
        assert_eq!(
            m.on_error(&unauthorized(403), &mut ctx).await.unwrap(),
            ErrorAction::Propagate
        );
        assert_eq!(
            m.on_error(&unauthorized(401), &mut ctx).await.unwrap(),
            ErrorAction::Retry
        );
    }

    #[tokio::test]
    async fn an_unsendable_key_stops_the_call() {
        let m = AuthMiddleware::new(std::sync::Arc::new(StaticCredentials::new([(
            "a", "bad\nkey",
        )])));
        let mut req = CompletionRequest::default();
        let mut ctx = MiddlewareContext::new("a", 0);
        let e = m.on_request(&mut req, &mut ctx).await.unwrap_err();
        assert!(!e.to_string().contains("bad\nkey"), "{e}");
        assert!(req.credential.is_none());
    }
}
