//! Sign-in and access control, in-process (`Router::oneshot`) against a real OpenID provider:
//! `tests/idp/server.mjs` (npm `oidc-provider`), started per test on 127.0.0.1 and killed when
//! the test ends. Tests that need it are skipped, with a message, when `node` or
//! `tests/idp/node_modules` is missing (`npm ci --prefix tests/idp` installs it;
//! `scripts/test.sh` does).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use allmende_node::api::{self, AppState};
use allmende_node::auth::{Role, token};
use allmende_node::config::Config;
use allmende_node::identity::Identity;
use allmende_store::Store;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The package's directory: as cargo gives it to the running test (a test built in another
/// checkout sharing the target dir would otherwise carry that checkout's path), else as compiled.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

const AUDIENCE: &str = "urn:allmende";
const REDIRECT: &str = "http://127.0.0.1:7070/auth/callback";

/// A running `tests/idp/server.mjs`; killed on drop.
struct Idp {
    child: Child,
    issuer: String,
    other_issuer: String,
}

impl Idp {
    /// Starts the provider, or prints why it cannot and returns `None` (the test is skipped).
    fn start(test: &str) -> Option<Idp> {
        let dir = manifest_dir().join("../tests/idp");
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
    async fn token(&self, client: &str) -> String {
        token_from(&self.issuer, client, None).await
    }

    async fn rotate(&self) {
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

async fn token_from(issuer: &str, client: &str, resource: Option<&str>) -> String {
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

macro_rules! idp_or_skip {
    ($name:expr) => {
        match Idp::start($name) {
            Some(idp) => idp,
            None => return,
        }
    };
}

struct Node {
    _dir: tempfile::TempDir,
    state: AppState,
    /// The local admin token.
    admin: String,
}

/// A node whose `[auth]` points at `idp` (if any), after `tweak`.
fn node(idp: Option<&Idp>, tweak: impl FnOnce(&mut Config)) -> Node {
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
    config.save(dir.path()).unwrap();
    Identity::create(dir.path()).unwrap();
    Store::open(dir.path(), true).unwrap();
    let admin = token::create(dir.path(), None).unwrap().reveal().to_owned();
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    Node {
        _dir: dir,
        state,
        admin,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Node {
    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    async fn call_from(
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

    async fn get(&self, uri: &str, bearer: Option<&str>) -> Reply {
        self.call_from("127.0.0.1", Method::GET, uri, bearer, None)
            .await
    }

    async fn sql(&self, bearer: Option<&str>) -> Reply {
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

fn assert_401(reply: &Reply, detail_has: &str) {
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
fn with_header(jwt: &str, f: impl FnOnce(&mut Value)) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (h, rest) = jwt.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
    f(&mut header);
    format!("{}.{rest}", b64.encode(header.to_string()))
}

#[tokio::test]
async fn a_valid_provider_token_is_accepted_with_its_roles() {
    let idp = idp_or_skip!("a_valid_provider_token_is_accepted_with_its_roles");
    let node = node(Some(&idp), |_| {});
    let viewer = idp.token("viewer").await;
    assert_eq!(
        node.get("/api/v1/datasets", Some(&viewer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        node.get("/api/v1/node", Some(&viewer)).await.status,
        StatusCode::OK
    );
    let researcher = idp.token("researcher").await;
    assert_eq!(node.sql(Some(&researcher)).await.status, StatusCode::OK);
    let admin = idp.token("admin").await;
    assert_eq!(node.sql(Some(&admin)).await.status, StatusCode::OK);
    let steward = idp.token("steward").await;
    let deleted = node
        .call_from(
            "127.0.0.1",
            Method::DELETE,
            "/api/v1/datasets/nothing-here",
            Some(&steward),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{}", deleted.body);
}

#[tokio::test]
async fn a_missing_role_is_403_and_no_token_is_401() {
    let idp = idp_or_skip!("a_missing_role_is_403_and_no_token_is_401");
    let node = node(Some(&idp), |_| {});
    let viewer = idp.token("viewer").await;
    let forbidden = node.sql(Some(&viewer)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.body["type"], "urn:allmende:problem:forbidden");
    assert!(
        forbidden.body["detail"]
            .as_str()
            .unwrap()
            .contains("researcher")
    );
    let norole = idp.token("norole").await;
    assert_eq!(
        node.get("/api/v1/datasets", Some(&norole)).await.status,
        StatusCode::FORBIDDEN
    );
    let steward = idp.token("steward").await;
    let federation = node
        .call_from(
            "127.0.0.1",
            Method::POST,
            "/api/v1/federation/leave",
            Some(&steward),
            Some(json!({})),
        )
        .await;
    assert_eq!(federation.status, StatusCode::FORBIDDEN);

    assert_401(&node.get("/api/v1/datasets", None).await, "Bearer");
    assert_401(&node.sql(None).await, "Bearer");
    assert_eq!(node.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(
        node.get("/api/v1/catalog", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let idp = idp_or_skip!("an_expired_token_is_refused");
    let node = node(Some(&idp), |_| {});
    let short = idp.token("short").await; // expires after 1 s; the node allows no leeway here
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_401(&node.get("/api/v1/datasets", Some(&short)).await, "expired");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let idp = idp_or_skip!("a_token_for_another_audience_is_refused");
    let node = node(Some(&idp), |_| {});
    let other = token_from(&idp.issuer, "viewer", Some("urn:another-service")).await;
    assert_401(
        &node.get("/api/v1/datasets", Some(&other)).await,
        "audience",
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let idp = idp_or_skip!("a_token_from_another_issuer_is_refused");
    let node = node(Some(&idp), |_| {});
    // The other issuer signs with the same keys: only the issuer check can catch it.
    let foreign = token_from(&idp.other_issuer, "admin", None).await;
    assert_401(
        &node.get("/api/v1/datasets", Some(&foreign)).await,
        "issuer",
    );
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    use base64::Engine;
    let idp = idp_or_skip!("a_tampered_token_is_refused");
    let node = node(Some(&idp), |_| {});
    let token = idp.token("viewer").await;
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = b64.decode(sig).unwrap();
    bytes[10] ^= 0x01;
    let bad_signature = format!("{rest}.{}", b64.encode(bytes));
    assert_401(
        &node.get("/api/v1/datasets", Some(&bad_signature)).await,
        "signature",
    );
    // Claims raised to admin under the original signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    claims["realm_access"]["roles"] = json!(["admin"]);
    parts[1] = b64.encode(claims.to_string());
    let escalated = parts.join(".");
    assert_401(
        &node.get("/api/v1/datasets", Some(&escalated)).await,
        "signature",
    );
    // `alg: none` and HMAC are never accepted.
    let none = with_header(&token, |h| h["alg"] = json!("none"));
    assert_401(&node.get("/api/v1/datasets", Some(&none)).await, "none");
    let hs = with_header(&token, |h| h["alg"] = json!("HS256"));
    assert_401(&node.get("/api/v1/datasets", Some(&hs)).await, "HS256");
    assert_401(
        &node.get("/api/v1/datasets", Some("not-a-jwt")).await,
        "not a JWT",
    );
}

#[tokio::test]
async fn an_unknown_key_id_refetches_the_jwks_once_then_is_refused() {
    let idp = idp_or_skip!("an_unknown_key_id_refetches_the_jwks_once_then_is_refused");
    let node = node(Some(&idp), |_| {});
    let token = idp.token("viewer").await;
    assert_eq!(
        node.get("/api/v1/datasets", Some(&token)).await.status,
        StatusCode::OK
    );
    let oidc = node.state.auth.oidc().unwrap();
    assert_eq!(oidc.jwks_refreshes(), 0);
    let unknown = with_header(&token, |h| h["kid"] = json!("no-such-key"));
    assert_401(
        &node.get("/api/v1/datasets", Some(&unknown)).await,
        "key id",
    );
    assert_eq!(oidc.jwks_refreshes(), 1);
    // A second unknown key id right away does not make the node fetch again.
    let unknown2 = with_header(&token, |h| h["kid"] = json!("another-unknown-key"));
    assert_401(
        &node.get("/api/v1/datasets", Some(&unknown2)).await,
        "key id",
    );
    assert_eq!(oidc.jwks_refreshes(), 1);
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up() {
    let idp = idp_or_skip!("a_rotated_signing_key_is_picked_up");
    let node = node(Some(&idp), |_| {});
    let before = idp.token("viewer").await;
    assert_eq!(
        node.get("/api/v1/datasets", Some(&before)).await.status,
        StatusCode::OK
    );
    idp.rotate().await;
    let after = idp.token("viewer").await;
    assert_ne!(
        before.split('.').next(),
        after.split('.').next(),
        "new key id"
    );
    assert_eq!(
        node.get("/api/v1/datasets", Some(&after)).await.status,
        StatusCode::OK
    );
    assert_eq!(node.state.auth.oidc().unwrap().jwks_refreshes(), 1);
    // The old key is still published, so tokens signed before the rotation stay valid.
    assert_eq!(
        node.get("/api/v1/datasets", Some(&before)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_local_admin_token_works_and_a_wrong_one_does_not() {
    let node = node(None, |_| {});
    let admin = node.admin.clone();
    assert_eq!(node.sql(Some(&admin)).await.status, StatusCode::OK);
    let leave = node
        .call_from(
            "127.0.0.1",
            Method::GET,
            "/api/v1/federation",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(leave.status, StatusCode::OK, "{}", leave.body);
    let mut wrong = admin.clone();
    wrong.pop();
    wrong.push('x');
    assert_401(&node.sql(Some(&wrong)).await, "admin token");
    // Without an OpenID provider, a JWT-looking token is refused too.
    assert_401(&node.sql(Some("eyJ.a.b")).await, "OpenID provider");
    assert_401(
        &node
            .call_from(
                "127.0.0.1",
                Method::GET,
                "/api/v1/datasets",
                Some(&format!("{admin} extra")),
                None,
            )
            .await,
        "admin token",
    );
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_address() {
    let node = node(None, |c| c.auth.max_failures_per_minute = 5);
    let admin = node.admin.clone();
    let attacker = "192.0.2.7";
    for _ in 0..5 {
        let r = node
            .call_from(
                attacker,
                Method::GET,
                "/api/v1/datasets",
                Some("allmende_guess"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let limited = node
        .call_from(
            attacker,
            Method::GET,
            "/api/v1/datasets",
            Some("allmende_guess"),
            None,
        )
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.body["type"],
        "urn:allmende:problem:too-many-requests"
    );
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    // Even the right token waits, from that address; other addresses are unaffected.
    let right = node
        .call_from(
            attacker,
            Method::GET,
            "/api/v1/datasets",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    let other = node
        .call_from(
            "192.0.2.8",
            Method::GET,
            "/api/v1/datasets",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    // Requests without a token are not failures.
    for _ in 0..10 {
        let r = node
            .call_from("192.0.2.9", Method::GET, "/api/v1/datasets", None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn production_needs_an_openid_provider_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("Stadt Münster".into(), "05515".into());
    config.auth.production = true;
    config.save(dir.path()).unwrap();
    Identity::create(dir.path()).unwrap();
    Store::open(dir.path(), true).unwrap();
    let token = token::create(dir.path(), None).unwrap();
    let err = allmende_node::server::open(dir.path(), config.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("allow_local_token_in_production"), "{err}");
    config.auth.allow_local_token_in_production = true;
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    let p = state.auth.verify(token.reveal()).await.unwrap();
    assert!(p.has(Role::Admin));
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let node = node(None, |c| {
        c.auth.cors_allowed_origins = vec!["https://console.muenster.example".into()]
    });
    let preflight = |origin: &'static str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/datasets")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let ok = node
        .router()
        .oneshot(preflight("https://console.muenster.example"))
        .await
        .unwrap();
    assert_eq!(
        ok.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .unwrap(),
        "https://console.muenster.example"
    );
    let other = node
        .router()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

/// Follows the provider's development login and consent forms with a cookie jar until it
/// redirects to the node's callback; returns that callback URL.
async fn sign_in_at_provider(start: &str, login: &str) -> String {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = reqwest::Url::parse(start).unwrap();
    let mut response = http.get(url.clone()).send().await.unwrap();
    for _ in 0..20 {
        if let Some(location) = response.headers().get(header::LOCATION) {
            let next = url.join(location.to_str().unwrap()).unwrap();
            if next.as_str().starts_with(REDIRECT) {
                return next.to_string();
            }
            url = next;
            response = http.get(url.clone()).send().await.unwrap();
            continue;
        }
        let status = response.status();
        let page = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {page}");
        let prompt = attribute_after(&page, "name=\"prompt\"", "value")
            .unwrap_or_else(|| panic!("no prompt in the provider's page: {page}"));
        let action = attribute_after(&page, "<form", "action").expect("form action");
        let target = url.join(&action).unwrap();
        let form: Vec<(&str, &str)> = match prompt.as_str() {
            "login" => vec![("prompt", "login"), ("login", login), ("password", "x")],
            other => vec![("prompt", other)],
        };
        response = http.post(target.clone()).form(&form).send().await.unwrap();
        url = target;
    }
    panic!("the provider did not redirect back to the node");
}

/// The value of attribute `attr` in the first tag at or after `marker`.
fn attribute_after(page: &str, marker: &str, attr: &str) -> Option<String> {
    let at = page.find(marker)?;
    let tag_start = page[..at].rfind('<').unwrap_or(at);
    let tag_end = at + page[at..].find('>')?;
    let tag = &page[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    let end = tag[v..].find('"')?;
    Some(tag[v..v + end].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_authorization_code_flow_with_pkce_signs_a_user_in() {
    let idp = idp_or_skip!("the_authorization_code_flow_with_pkce_signs_a_user_in");
    let node = node(Some(&idp), |_| {});
    let login = node.get("/auth/login", None).await;
    assert_eq!(login.status, StatusCode::FOUND);
    let location = login.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(&idp.issuer), "{location}");
    let auth_url = reqwest::Url::parse(&location).unwrap();
    let params: std::collections::HashMap<_, _> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["client_id"], "console");
    assert!(params.contains_key("nonce") && params.contains_key("state"));

    let callback = sign_in_at_provider(&location, "alice").await;
    let callback = reqwest::Url::parse(&callback).unwrap();
    let path_and_query = format!("{}?{}", callback.path(), callback.query().unwrap());
    let signed_in = node.get(&path_and_query, None).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    assert_eq!(
        signed_in.headers[header::CACHE_CONTROL].to_str().unwrap(),
        "no-store"
    );
    let principal = &signed_in.body["principal"];
    assert_eq!(principal["roles"], json!(["viewer", "researcher"]));
    assert_eq!(principal["organisation"], "Stadt Münster");
    assert_eq!(principal["via"], "oidc");
    let subject = principal["subject"].as_str().unwrap();
    assert_eq!(subject.len(), 64, "a pseudonymous hash");
    assert!(!subject.contains("alice"));

    let access = signed_in.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        node.get("/api/v1/datasets", Some(&access)).await.status,
        StatusCode::OK
    );
    assert_eq!(node.sql(Some(&access)).await.status, StatusCode::OK);
    let publish = node
        .call_from(
            "127.0.0.1",
            Method::POST,
            "/api/v1/datasets/x/publish",
            Some(&access),
            Some(json!({})),
        )
        .await;
    assert_eq!(publish.status, StatusCode::FORBIDDEN);

    // The state is used once: replaying the callback fails.
    let replay = node.get(&path_and_query, None).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["type"], "urn:allmende:problem:login-failed");
    // A forged state fails too.
    let forged = node.get("/auth/callback?code=abc&state=forged", None).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn login_without_a_provider_is_not_configured() {
    let node = node(None, |_| {});
    let r = node.get("/auth/login", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["type"], "urn:allmende:problem:login-not-configured");
}
