//! Authentication and role-based access for the HTTP API.
//!
//! A request authenticates with `Authorization: Bearer <token>`, where the token is either
//! - a JWT access token from the city's OpenID provider ([`oidc`]), validated against the
//!   provider's JWKS (signature, issuer, audience, expiry, not-before), with roles taken from a
//!   configurable claim ([`claims`]); machine clients use client-credentials tokens the same way,
//! - or the node's local admin token ([`token`]), printed once by `allmende init` and stored
//!   only as a hash, so that a node works on a bare machine without a provider.
//!
//! Every route declares the role it needs in [`ROUTES`]; [`middleware`] enforces the table
//! centrally (a route missing from it needs `admin`, and a warning is logged). Browsers sign
//! in with the authorization-code flow with PKCE ([`routes`]: `/auth/login`, `/auth/callback`).
//! Failed authentications are rate-limited per client IP. Missing or invalid tokens get 401, a
//! missing role 403, too many failures 429, all as problem documents.

mod access;
pub mod claims;
mod flow;
mod limit;
pub mod oidc;
pub mod token;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, Config};
use crate::identity::Identity;
use crate::problem::Problem as ApiError;

pub use access::{Access, ROUTES, Role, required};
pub use flow::routes;

/// How a principal authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The node's local admin token.
    LocalToken,
    /// An access token from the OpenID provider.
    Oidc,
}

/// The authenticated caller of a request: what a federated assertion says about the user.
/// It holds no token; the subject is a pseudonym (a keyed hash of issuer and subject).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Pseudonymous subject: hex SHA-256 over a node secret, the issuer and the `sub` claim.
    /// Stable for one user at one node; not linkable across nodes.
    pub subject: String,
    /// The organisation the user acts for (the token's organisation claim, else the node's
    /// name).
    pub organisation: String,
    /// The roles held.
    pub roles: BTreeSet<Role>,
    /// The OAuth client the token was issued to, if the token says.
    pub client_id: Option<String>,
    /// When the token expires (Unix seconds), if it does.
    pub expires_at: Option<u64>,
    /// How the principal authenticated.
    pub via: Via,
}

impl Principal {
    /// Whether the principal holds `role` or a role that includes it.
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|held| held.grants(role))
    }
}

/// The authenticated principal of a request, if it carried a valid token (set by
/// [`middleware`]). For signing federated user assertions.
pub fn principal(parts: &Parts) -> Option<&Principal> {
    parts.extensions.get::<Principal>()
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        principal(parts)
            .cloned()
            .ok_or_else(|| AuthError::Missing.into_response())
    }
}

/// Authentication failures and start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The route needs a token and none was sent.
    #[error("this route needs `Authorization: Bearer <token>`")]
    Missing,
    /// The token was rejected.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The principal lacks the role.
    #[error("this route needs the role `{0}`")]
    Forbidden(Role),
    /// Too many failed authentications from this address.
    #[error("too many failed authentications from this address; retry in {0} s")]
    RateLimited(u64),
    /// The OpenID provider could not be reached or answered nonsense.
    #[error("the OpenID provider is unavailable: {0}")]
    Unavailable(String),
    /// The sign-in flow failed (bad state, code exchange, ID token).
    #[error("sign-in failed: {0}")]
    Login(String),
    /// Browser sign-in is not configured.
    #[error("browser sign-in needs auth.issuer, auth.client_id and a client secret")]
    LoginNotConfigured,
    /// The configuration is unusable.
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl AuthError {
    fn counts_as_failure(&self) -> bool {
        matches!(self, AuthError::Invalid(_) | AuthError::Login(_))
    }
}

impl AuthError {
    /// The HTTP status and problem kind of this error.
    pub fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AuthError::Invalid(_) => (StatusCode::UNAUTHORIZED, "invalid-token"),
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AuthError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "too-many-requests"),
            AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "auth-unavailable"),
            AuthError::Login(_) => (StatusCode::BAD_REQUEST, "login-failed"),
            AuthError::LoginNotConfigured => (StatusCode::NOT_FOUND, "login-not-configured"),
            AuthError::Config(_) | AuthError::Io { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if matches!(self, AuthError::Unavailable(_)) {
            tracing::warn!(error = %self, "authentication could not be checked");
        }
        let mut response = ApiError::new(status, kind, self.to_string()).into_response();
        let headers = response.headers_mut();
        match &self {
            AuthError::Missing => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"allmende\""),
                );
            }
            AuthError::Invalid(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"allmende\", error=\"invalid_token\""),
                );
            }
            AuthError::Forbidden(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"allmende\", error=\"insufficient_scope\"",
                    ),
                );
            }
            AuthError::RateLimited(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            _ => {}
        }
        response
    }
}

impl From<AuthError> for ApiError {
    /// The same status and kind, without the `WWW-Authenticate` and `Retry-After` headers.
    fn from(e: AuthError) -> Self {
        let (status, kind) = e.status_and_kind();
        ApiError::new(status, kind, e.to_string())
    }
}

/// The node's authentication state: the local admin token's hash, the OpenID provider, pending
/// browser sign-ins and the failure rate limit. Prints no secrets in `Debug`.
pub struct Auth {
    local: Option<token::TokenHash>,
    oidc: Option<oidc::Oidc>,
    rules: claims::ClaimRules,
    organisation: String,
    pseudonym_key: [u8; 32],
    limiter: limit::FailureLimiter,
    logins: flow::PendingLogins,
    cors_origins: Vec<String>,
    warned_routes: Mutex<HashSet<String>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("local_token", &self.local.as_ref().map(|_| "<redacted>"))
            .field("oidc", &self.oidc)
            .field("rules", &self.rules)
            .field("organisation", &self.organisation)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The authentication state for a node: its `[auth]` configuration, the local admin token's
    /// hash in `data_dir` (if `init` made one) and a pseudonym key derived from the node's
    /// identity. Refuses a production node without an OpenID provider unless
    /// `auth.allow_local_token_in_production` is set.
    pub fn open(config: &Config, data_dir: &Path, identity: &Identity) -> Result<Self, AuthError> {
        let a = &config.auth;
        if a.production && a.issuer.is_none() && !a.allow_local_token_in_production {
            return Err(AuthError::Config(
                "auth.production is set but no OpenID provider is configured (auth.issuer); \
                 configure one, or set auth.allow_local_token_in_production = true to run on \
                 the local admin token alone"
                    .into(),
            ));
        }
        let local_allowed = !a.production || a.allow_local_token_in_production;
        let local = if local_allowed {
            token::TokenHash::load(data_dir)?
        } else {
            None
        };
        if a.issuer.is_none() && local.is_none() {
            tracing::warn!(
                "no OpenID provider and no local admin token ({}): only public routes are usable",
                token::HASH_FILE
            );
        }
        let mut hasher = Sha256::new();
        hasher.update(b"allmende/auth/pseudonym/v1");
        hasher.update(identity.signing_key().to_bytes());
        Self::build(
            a,
            &config.name,
            local,
            hasher.finalize().into(),
            &config.public_url(),
        )
    }

    /// An `Auth` that accepts only the local admin token `token` (no OpenID provider), for
    /// in-process tests and embedding. A node started by `allmende run` uses [`Auth::open`].
    pub fn with_local_token(token: &str) -> Self {
        let config = AuthConfig::default();
        Self::build(
            &config,
            "local",
            Some(token::TokenHash::of(token)),
            [0; 32],
            "http://127.0.0.1:7070",
        )
        .expect("the default auth configuration is valid")
    }

    fn build(
        a: &AuthConfig,
        organisation: &str,
        local: Option<token::TokenHash>,
        pseudonym_key: [u8; 32],
        public_url: &str,
    ) -> Result<Self, AuthError> {
        let oidc = match &a.issuer {
            Some(_) => Some(oidc::Oidc::new(a, public_url)?),
            None => None,
        };
        Ok(Self {
            local,
            oidc,
            rules: claims::ClaimRules::new(a)?,
            organisation: organisation.to_owned(),
            pseudonym_key,
            limiter: limit::FailureLimiter::new(a.max_failures_per_minute, Duration::from_secs(60)),
            logins: flow::PendingLogins::default(),
            cors_origins: a.cors_allowed_origins.clone(),
            warned_routes: Mutex::new(HashSet::new()),
        })
    }

    /// The OpenID provider client, if one is configured.
    pub fn oidc(&self) -> Option<&oidc::Oidc> {
        self.oidc.as_ref()
    }

    /// Fetches the provider's metadata and keys now, logging a warning if that fails (it is
    /// retried on the first request that needs it).
    pub async fn warm_up(&self) {
        if let Some(oidc) = &self.oidc {
            match oidc.metadata().await {
                Ok(_) => tracing::info!(issuer = oidc.issuer(), "OpenID provider discovered"),
                Err(e) => {
                    tracing::warn!(error = %e, "OpenID provider discovery failed; will retry")
                }
            }
        }
    }

    /// The CORS layer for the configured origins (`*` allows any origin; none: no CORS).
    pub fn cors(&self) -> tower_http::cors::CorsLayer {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let layer = CorsLayer::new()
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .max_age(Duration::from_secs(3600));
        if self.cors_origins.iter().any(|o| o == "*") {
            layer.allow_origin(AllowOrigin::any())
        } else {
            let origins: Vec<HeaderValue> = self
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect();
            layer.allow_origin(AllowOrigin::list(origins))
        }
    }

    /// Authenticates the bearer token in `headers`, if there is one. Failures count against
    /// `ip`; an address over the limit gets [`AuthError::RateLimited`] without a check.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        self.limiter.check(ip)?;
        let result = match bearer(value) {
            Some(token) => self.verify(token).await,
            None => Err(AuthError::Invalid(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        };
        match result {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                if e.counts_as_failure() {
                    self.limiter.fail(ip);
                }
                Err(e)
            }
        }
    }

    /// Verifies one bearer token: the local admin token, else a JWT from the provider.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.starts_with(token::PREFIX) {
            return match &self.local {
                Some(hash) if hash.matches(token) => Ok(Principal {
                    subject: self.pseudonym("local", "admin"),
                    organisation: self.organisation.clone(),
                    roles: BTreeSet::from([Role::Admin]),
                    client_id: None,
                    expires_at: None,
                    via: Via::LocalToken,
                }),
                _ => Err(AuthError::Invalid("not this node's admin token".into())),
            };
        }
        let Some(oidc) = &self.oidc else {
            return Err(AuthError::Invalid(
                "this node has no OpenID provider configured (auth.issuer)".into(),
            ));
        };
        let claims = oidc.validate(token).await?;
        Ok(self.principal_from_claims(oidc.issuer(), &claims))
    }

    fn principal_from_claims(&self, issuer: &str, claims: &serde_json::Value) -> Principal {
        let client_id = claims
            .get("client_id")
            .or_else(|| claims.get("azp"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| client_id.clone())
            .unwrap_or_default();
        Principal {
            subject: self.pseudonym(issuer, &sub),
            organisation: self
                .rules
                .organisation(claims)
                .unwrap_or_else(|| self.organisation.clone()),
            roles: self.rules.roles(claims),
            client_id,
            expires_at: claims.get("exp").and_then(|v| v.as_u64()),
            via: Via::Oidc,
        }
    }

    fn pseudonym(&self, issuer: &str, subject: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.pseudonym_key);
        for part in [issuer, subject] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    fn warn_undeclared(&self, method: &Method, path: &str) {
        let key = format!("{method} {path}");
        let mut warned = self.warned_routes.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(key.clone()) {
            tracing::warn!(
                route = %key,
                "route is missing from auth::ROUTES; it needs the admin role until it is declared"
            );
        }
    }
}

fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client's IP address (from axum's `ConnectInfo`; unspecified when served without it).
pub fn client_ip(parts_extensions: &axum::http::Extensions) -> IpAddr {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The access check for every route: looks up the matched route in [`ROUTES`], authenticates
/// the bearer token and inserts the [`Principal`] into the request's extensions.
pub async fn middleware(
    State(auth): State<std::sync::Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let access = required(req.method(), &path).unwrap_or_else(|| {
        auth.warn_undeclared(req.method(), &path);
        Access::Role(Role::Admin)
    });
    let ip = client_ip(req.extensions());
    let principal = match auth.authenticate(req.headers(), ip).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match (access, principal) {
        (Access::Public, None) => {}
        (Access::Public, Some(p)) => {
            req.extensions_mut().insert(p);
        }
        (Access::Role(_), None) => return AuthError::Missing.into_response(),
        (Access::Role(role), Some(p)) => {
            if !p.has(role) {
                return AuthError::Forbidden(role).into_response();
            }
            req.extensions_mut().insert(p);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_viewer_and_admin_includes_all() {
        assert!(Role::Admin.grants(Role::Steward));
        assert!(Role::Steward.grants(Role::Viewer));
        assert!(Role::Researcher.grants(Role::Viewer));
        assert!(!Role::Researcher.grants(Role::Steward));
        assert!(!Role::Viewer.grants(Role::Researcher));
        assert!(!Role::Steward.grants(Role::Admin));
    }

    #[test]
    fn route_table_is_consistent() {
        assert_eq!(required(&Method::GET, "/healthz"), Some(Access::Public));
        assert_eq!(
            required(&Method::HEAD, "/api/v1/catalog"),
            Some(Access::Public)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/sql"),
            Some(Access::Role(Role::Researcher))
        );
        assert_eq!(required(&Method::GET, "/api/v1/unknown"), None);
        let mut seen = HashSet::new();
        for (m, p, _) in ROUTES {
            assert!(seen.insert((m, p)), "{m} {p} is declared twice");
            assert!(p.starts_with('/'), "{p}");
        }
        let public: Vec<_> = ROUTES
            .iter()
            .filter(|(_, _, a)| *a == Access::Public)
            .map(|(_, p, _)| *p)
            .collect();
        assert_eq!(
            public,
            [
                "/healthz",
                "/api/v1/catalog",
                "/auth/login",
                "/auth/callback"
            ]
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("bearer abc")), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer ")), None);
    }

    #[tokio::test]
    async fn local_token_is_admin_and_debug_is_redacted() {
        let auth = Auth::with_local_token("allmende_secret-value");
        let p = auth.verify("allmende_secret-value").await.unwrap();
        assert!(p.has(Role::Steward));
        assert_eq!(p.via, Via::LocalToken);
        assert!(auth.verify("allmende_other").await.is_err());
        assert!(!format!("{auth:?}").contains("secret-value"));
    }
}
