//! Sign-in against a real OpenID provider: `tests/idp/server.mjs` (npm `oidc-provider`),
//! started per test on 127.0.0.1 and killed when the test ends, and an in-process node whose
//! `[auth]` points at it, asked through its router from any client address.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use allmende_node::api::{self, AppState};
use allmende_node::config::Config;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The audience the test provider issues tokens for and the nodes expect.
pub const AUDIENCE: &str = "urn:allmende";
/// The console's redirect URL registered at the test provider.
pub const REDIRECT: &str = "http://127.0.0.1:7070/auth/callback";

/// A running `tests/idp/server.mjs`; killed on drop.
pub struct Idp {
    child: Child,
    /// The provider's issuer URL.
    pub issuer: String,
    /// A second issuer of the same process, which no node trusts.
    pub other_issuer: String,
}

impl Idp {
    /// Starts the provider, or prints why it cannot and returns `None` (the test is skipped).
    pub fn start(test: &str) -> Option<Idp> {
        let dir = super::manifest_dir().join("../tests/idp");
        let has_node = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_node {
            eprintln!(
                "SKIPPED {test}: `node` is not installed (the test OpenID provider needs it)"
            );
            return None;
        }
        if !dir.join("node_modules/oidc-provider").exists() {
            eprintln!(
                "SKIPPED {test}: {} is missing; run `npm ci --prefix tests/idp`",
                dir.join("node_modules").display()
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("PORT", "0")
            .env("REDIRECT_URI", REDIRECT)
            .env("AUDIENCE", AUDIENCE)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node tests/idp/server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the test OpenID provider did not start within 20 s");
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line");
        Some(Idp {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            other_issuer: ready["other_issuer"].as_str().unwrap().to_owned(),
        })
    }

    /// A client-credentials access token for `client` (secret `<client>-secret`).
    pub async fn token(&self, client: &str) -> String {
        token_from(&self.issuer, client, None).await
    }

    /// Makes the provider sign with a new key.
    pub async fn rotate(&self) {
        let r = reqwest::Client::new()
            .post(format!("{}/test/rotate", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client-credentials access token from `issuer` for `client` (secret `<client>-secret`),
/// for the audience `resource` if given.
pub async fn token_from(issuer: &str, client: &str, resource: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", "allmende")];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(client, Some(format!("{client}-secret")))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "token for {client}: {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The started [`Idp`], or returns from the test (skipped, with the reason printed).
macro_rules! idp_or_skip {
    ($name:expr) => {
        match $crate::common::auth::Idp::start($name) {
            Some(idp) => idp,
            None => return,
        }
    };
}
pub(crate) use idp_or_skip;

/// An in-process node asked through its router, from any client address.
pub struct Node {
    _dir: tempfile::TempDir,
    /// What its router serves.
    pub state: AppState,
    /// The local admin token.
    pub admin: String,
}

/// A node whose `[auth]` points at `idp` (if any), after `tweak`.
pub fn node(idp: Option<&Idp>, tweak: impl FnOnce(&mut Config)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("Stadt Münster".into(), "05515".into());
    if let Some(idp) = idp {
        let secret = dir.path().join("oidc-secret");
        std::fs::write(&secret, "console-secret\n").unwrap();
        config.auth.issuer = Some(idp.issuer.clone());
        config.auth.audience = Some(AUDIENCE.into());
        config.auth.client_id = Some("console".into());
        config.auth.client_secret_file = Some(secret);
        config.auth.redirect_url = Some(REDIRECT.into());
        config.auth.scopes = vec!["openid".into(), "allmende".into()];
        config.auth.organisation_claim = Some("org".into());
        config.auth.leeway_secs = 0;
    }
    tweak(&mut config);
    let admin = super::init(dir.path(), &config);
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    Node {
        _dir: dir,
        state,
        admin,
    }
}

/// An answer: status, headers and JSON body (`null` if none).
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Value,
}

impl Node {
    /// The node's API router.
    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// A request from client address `ip`, with `bearer` as token and `body` as JSON; a 4xx
    /// answer must be a problem document.
    pub async fn call_from(
        &self,
        ip: &str,
        method: Method,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_client_error() {
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json",
                "{status}"
            );
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET uri` from 127.0.0.1.
    pub async fn get(&self, uri: &str, bearer: Option<&str>) -> Reply {
        self.call_from("127.0.0.1", Method::GET, uri, bearer, None)
            .await
    }

    /// `POST /api/v1/sql` of `SELECT 1` from 127.0.0.1.
    pub async fn sql(&self, bearer: Option<&str>) -> Reply {
        self.call_from(
            "127.0.0.1",
            Method::POST,
            "/api/v1/sql",
            bearer,
            Some(json!({ "sql": "SELECT 1 AS one", "format": "json" })),
        )
        .await
    }
}

/// Asserts a 401 problem whose detail contains `detail_has`, with a `WWW-Authenticate: Bearer`
/// challenge.
pub fn assert_401(reply: &Reply, detail_has: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.body["status"], 401);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains(detail_has), "{detail}");
    assert!(
        reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

/// The JWT with its header replaced by `f(header)` (signature unchanged).
pub fn with_header(jwt: &str, f: impl FnOnce(&mut Value)) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (h, rest) = jwt.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
    f(&mut header);
    format!("{}.{rest}", b64.encode(header.to_string()))
}
