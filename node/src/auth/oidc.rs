//! The OpenID provider: discovery from the issuer URL, a JWKS cache that follows key rotation,
//! access-token (JWT) validation, and the authorization-code flow with PKCE (`openidconnect`).
//!
//! Access tokens are checked for a signature by a key of the provider's JWKS (asymmetric
//! algorithms only), the exact issuer, the configured audience in `aud`, `exp` and `nbf` (with
//! `auth.leeway_secs`). A token whose key id is not in the cached JWKS makes the node fetch the
//! JWKS again, at most once per [`JWKS_REFRESH_INTERVAL`]; a key id that is still unknown is
//! refused.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKey, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKey,
    JsonWebKeyAlgorithm, JsonWebKeySet, JsonWebKeyUse, JwsSigningAlgorithm, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use super::AuthError;
use crate::config::AuthConfig;

/// Shortest time between two JWKS fetches caused by unknown key ids.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a failed discovery is remembered before the next attempt.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// Timeout of every request to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that may hold the client secret instead of a file.
pub const CLIENT_SECRET_ENV: &str = "ALLMENDE_OIDC_CLIENT_SECRET";

/// A connection to one OpenID provider. `Debug` prints no secret.
pub struct Oidc {
    issuer: IssuerUrl,
    audience: String,
    leeway: u64,
    client_id: Option<ClientId>,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    http: openidconnect::reqwest::Client,
    metadata: RwLock<Option<Arc<CoreProviderMetadata>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    jwks_refreshes: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    last_refresh: Option<Instant>,
    last_failure: Option<Instant>,
}

impl fmt::Debug for Oidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .field("audience", &self.audience)
            .field("client_id", &self.client_id.as_ref().map(|c| c.as_str()))
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect", &self.redirect.as_str())
            .finish_non_exhaustive()
    }
}

fn read_secret(path: &Path) -> Result<ClientSecret, AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the OpenID client secret file is readable by others; chmod 600 it"
        );
    }
    let secret = text.trim();
    if secret.is_empty() {
        return Err(AuthError::Config(format!(
            "`{}` holds no client secret",
            path.display()
        )));
    }
    Ok(ClientSecret::new(secret.to_owned()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid("the token is not a JWT (bad base64url)"))
}

fn compatible(key: &CoreJsonWebKey, alg: &CoreJwsSigningAlgorithm) -> bool {
    if key.key_use().is_some_and(|u| !u.allows_signature()) {
        return false;
    }
    if alg.key_type().as_ref() != Some(key.key_type()) {
        return false;
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => true,
        JsonWebKeyAlgorithm::Algorithm(a) => a == alg,
        JsonWebKeyAlgorithm::Unsupported => false,
    }
}

fn find_key(
    metadata: &CoreProviderMetadata,
    kid: Option<&str>,
    alg: &CoreJwsSigningAlgorithm,
) -> Option<CoreJsonWebKey> {
    metadata
        .jwks()
        .keys()
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.key_id().is_some_and(|id| id.as_str() == kid),
            None => true,
        })
        .find(|k| compatible(k, alg))
        .cloned()
}

impl Oidc {
    /// A provider client for an `[auth]` section with an issuer; nothing is fetched yet.
    pub fn new(a: &AuthConfig, public_url: &str) -> Result<Self, AuthError> {
        let issuer = a
            .issuer
            .as_deref()
            .ok_or_else(|| AuthError::Config("auth.issuer is not set".into()))?;
        let issuer = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| AuthError::Config(format!("auth.issuer `{issuer}`: {e}")))?;
        let audience = a.audience.clone().ok_or_else(|| {
            AuthError::Config(
                "auth.audience is required with auth.issuer (the `aud` the node's access tokens carry)"
                    .into(),
            )
        })?;
        let client_secret = match &a.client_secret_file {
            Some(path) => Some(read_secret(path)?),
            None => std::env::var(CLIENT_SECRET_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| ClientSecret::new(s.trim().to_owned())),
        };
        let redirect = a
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("{}/auth/callback", public_url.trim_end_matches('/')));
        let redirect = RedirectUrl::new(redirect.clone())
            .map_err(|e| AuthError::Config(format!("auth.redirect_url `{redirect}`: {e}")))?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            issuer,
            audience,
            leeway: a.leeway_secs,
            client_id: a.client_id.clone().map(ClientId::new),
            client_secret,
            redirect,
            scopes: a.scopes.clone(),
            http,
            metadata: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            jwks_refreshes: AtomicU64::new(0),
        })
    }

    /// The issuer URL as configured.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// How many times the JWKS was fetched again because of an unknown key id.
    pub fn jwks_refreshes(&self) -> u64 {
        self.jwks_refreshes.load(Ordering::Relaxed)
    }

    /// Whether browser sign-in is configured (client id and secret).
    pub fn can_login(&self) -> bool {
        self.client_id.is_some() && self.client_secret.is_some()
    }

    fn cached(&self) -> Option<Arc<CoreProviderMetadata>> {
        self.metadata
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, metadata: Arc<CoreProviderMetadata>) {
        *self.metadata.write().unwrap_or_else(|e| e.into_inner()) = Some(metadata);
    }

    /// The provider's metadata with its JWKS, discovered on first use.
    pub async fn metadata(&self) -> Result<Arc<CoreProviderMetadata>, AuthError> {
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let mut fetch = self.fetch.lock().await;
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        if let Some(t) = fetch.last_failure
            && t.elapsed() < DISCOVERY_RETRY
        {
            return Err(AuthError::Unavailable(format!(
                "discovery of {} failed recently",
                self.issuer.as_str()
            )));
        }
        match CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await {
            Ok(m) => {
                let m = Arc::new(m);
                self.store(m.clone());
                fetch.last_failure = None;
                Ok(m)
            }
            Err(e) => {
                fetch.last_failure = Some(Instant::now());
                Err(AuthError::Unavailable(format!(
                    "discovery of {}: {e}",
                    self.issuer.as_str()
                )))
            }
        }
    }

    /// Fetches the JWKS again unless another task just did or the last refresh was less than
    /// [`JWKS_REFRESH_INTERVAL`] ago; returns the metadata to retry with, if it changed.
    async fn refresh_jwks(
        &self,
        seen: &Arc<CoreProviderMetadata>,
    ) -> Result<Option<Arc<CoreProviderMetadata>>, AuthError> {
        let mut fetch = self.fetch.lock().await;
        if let Some(current) = self.cached()
            && !Arc::ptr_eq(&current, seen)
        {
            return Ok(Some(current));
        }
        if fetch
            .last_refresh
            .is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL)
        {
            return Ok(None);
        }
        fetch.last_refresh = Some(Instant::now());
        self.jwks_refreshes.fetch_add(1, Ordering::Relaxed);
        let jwks = JsonWebKeySet::fetch_async(seen.jwks_uri(), &self.http)
            .await
            .map_err(|e| AuthError::Unavailable(format!("fetching the JWKS: {e}")))?;
        let updated = Arc::new((**seen).clone().set_jwks(jwks));
        self.store(updated.clone());
        tracing::info!(
            issuer = self.issuer.as_str(),
            "fetched the provider's keys again"
        );
        Ok(Some(updated))
    }

    /// Validates a JWT access token and returns its claims.
    pub async fn validate(&self, token: &str) -> Result<Value, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("the token is not a JWT"));
        };
        let header: Value = serde_json::from_slice(&decode_part(h)?)
            .map_err(|_| invalid("the token's header is not JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg: CoreJwsSigningAlgorithm =
            serde_json::from_value(Value::String(alg_name.to_owned()))
                .map_err(|_| invalid(format!("unsupported algorithm `{alg_name}`")))?;
        if matches!(
            alg,
            CoreJwsSigningAlgorithm::None
                | CoreJwsSigningAlgorithm::HmacSha256
                | CoreJwsSigningAlgorithm::HmacSha384
                | CoreJwsSigningAlgorithm::HmacSha512
        ) {
            return Err(invalid(format!("algorithm `{alg_name}` is not accepted")));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let signature = decode_part(s)?;
        let metadata = self.metadata().await?;
        let key = match find_key(&metadata, kid, &alg) {
            Some(k) => k,
            None => {
                let retry = self.refresh_jwks(&metadata).await?;
                retry
                    .and_then(|m| find_key(&m, kid, &alg))
                    .ok_or_else(|| invalid("the token's key id is not in the provider's JWKS"))?
            }
        };
        let signed = &token[..h.len() + 1 + p.len()];
        key.verify_signature(&alg, signed.as_bytes(), &signature)
            .map_err(|_| invalid("the token's signature does not verify"))?;
        let claims: Value = serde_json::from_slice(&decode_part(p)?)
            .map_err(|_| invalid("the token's claims are not JSON"))?;
        self.check_claims(&claims)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Value) -> Result<(), AuthError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid("the token is from another issuer"));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(invalid("the token is not for this audience"));
        }
        let now = now();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("the token has no expiry"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(invalid("the token has expired"));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(invalid("the token is not valid yet"));
        }
        Ok(())
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        AuthError,
    > {
        let id = self
            .client_id
            .clone()
            .ok_or(AuthError::LoginNotConfigured)?;
        let secret = self
            .client_secret
            .clone()
            .ok_or(AuthError::LoginNotConfigured)?;
        Ok(
            CoreClient::from_provider_metadata(metadata.clone(), id, Some(secret))
                .set_redirect_uri(self.redirect.clone()),
        )
    }

    /// Starts a browser sign-in: the provider's authorization URL with PKCE (S256), a nonce and
    /// a state, plus what the callback needs.
    pub(super) async fn authorize(&self) -> Result<Authorization, AuthError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.into_secret(),
            nonce,
            verifier,
        })
    }

    /// Finishes a browser sign-in: exchanges `code` with the PKCE verifier, verifies the ID
    /// token (signature, issuer, audience, expiry, nonce) and returns the access token and its
    /// lifetime.
    pub(super) async fn exchange(
        &self,
        code: String,
        verifier: PkceCodeVerifier,
        nonce: &Nonce,
    ) -> Result<(String, Option<Duration>), AuthError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| AuthError::Login(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| AuthError::Login(format!("the provider refused the code: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| AuthError::Login("the provider sent no ID token".into()))?;
        if let Err(first) = id_token.claims(&client.id_token_verifier(), nonce) {
            // The ID token may be signed with a key published after the cached JWKS.
            let refreshed = self.refresh_jwks(&metadata).await?;
            let Some(refreshed) = refreshed else {
                return Err(AuthError::Login(format!("ID token: {first}")));
            };
            let client = self.client(&refreshed)?;
            id_token
                .claims(&client.id_token_verifier(), nonce)
                .map_err(|e| AuthError::Login(format!("ID token: {e}")))?;
        }
        Ok((
            response.access_token().secret().clone(),
            response.expires_in(),
        ))
    }
}

/// A started browser sign-in.
pub(super) struct Authorization {
    pub(super) url: String,
    pub(super) state: String,
    pub(super) nonce: Nonce,
    pub(super) verifier: PkceCodeVerifier,
}
