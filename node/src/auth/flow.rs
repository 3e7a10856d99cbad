//! Browser sign-in (authorization code with PKCE), for the web console:
//! - `GET /auth/login` redirects to the provider; the PKCE verifier, nonce and state stay on
//!   the node for [`LOGIN_TTL`] and are used once;
//! - `GET /auth/callback?code=…&state=…` exchanges the code, verifies the ID token and the
//!   access token, and answers `{"access_token", "token_type", "expires_in", "principal"}`
//!   (with `Cache-Control: no-store`); the console then sends the access token as a bearer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openidconnect::{Nonce, PkceCodeVerifier};
use serde::Deserialize;
use serde_json::json;

use super::{Auth, AuthError, client_ip};

/// How long a started sign-in may take.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins pending at most; the oldest is dropped beyond this.
const MAX_PENDING: usize = 10_000;

struct Pending {
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    created: Instant,
}

/// Started sign-ins by state. `Debug` shows only how many.
#[derive(Default)]
pub(super) struct PendingLogins {
    map: Mutex<HashMap<String, Pending>>,
}

impl fmt::Debug for PendingLogins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "PendingLogins({n})")
    }
}

impl PendingLogins {
    fn insert(&self, state: String, pending: Pending) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| p.created.elapsed() < LOGIN_TTL);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state, pending);
    }

    fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(state)
            .filter(|p| p.created.elapsed() < LOGIN_TTL)
    }
}

/// The sign-in routes (public in [`super::ROUTES`]), for any router state that holds the
/// node's [`Auth`].
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Auth>: FromRef<S>,
{
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
}

async fn login(State(auth): State<Arc<Auth>>) -> Response {
    let Some(oidc) = auth.oidc().filter(|o| o.can_login()) else {
        return AuthError::LoginNotConfigured.into_response();
    };
    match oidc.authorize().await {
        Ok(a) => {
            auth.logins.insert(
                a.state,
                Pending {
                    nonce: a.nonce,
                    verifier: a.verifier,
                    created: Instant::now(),
                },
            );
            (
                StatusCode::FOUND,
                [
                    (header::LOCATION, a.url),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(State(auth): State<Arc<Auth>>, req: Request) -> Response {
    let ip = client_ip(req.extensions());
    if let Err(e) = auth.limiter.check(ip) {
        return e.into_response();
    }
    let uri = req.uri().clone();
    drop(req);
    let result = finish(&auth, &uri).await;
    match result {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response(),
        Err(e) => {
            if e.counts_as_failure() {
                auth.limiter.fail(ip);
            }
            e.into_response()
        }
    }
}

async fn finish(auth: &Auth, uri: &Uri) -> Result<serde_json::Value, AuthError> {
    let oidc = auth
        .oidc()
        .filter(|o| o.can_login())
        .ok_or(AuthError::LoginNotConfigured)?;
    let Query(q) = Query::<CallbackQuery>::try_from_uri(uri)
        .map_err(|e| AuthError::Login(format!("bad callback parameters: {e}")))?;
    let pending = q
        .state
        .as_deref()
        .and_then(|s| auth.logins.take(s))
        .ok_or_else(|| {
            AuthError::Login("unknown or expired sign-in state; start again at /auth/login".into())
        })?;
    if let Some(error) = q.error {
        return Err(AuthError::Login(format!(
            "the provider answered `{error}`{}",
            q.error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )));
    }
    let code = q
        .code
        .ok_or_else(|| AuthError::Login("the callback has no code".into()))?;
    let (access_token, expires_in) = oidc
        .exchange(code, pending.verifier, &pending.nonce)
        .await?;
    let principal = auth.verify(&access_token).await.map_err(|e| match e {
        AuthError::Invalid(why) => AuthError::Login(format!("the access token: {why}")),
        other => other,
    })?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in.map(|d| d.as_secs()),
        "principal": principal,
    }))
}
