//! Sign-in with tokens of a real OpenID provider, in-process (`Router::oneshot`): the test
//! provider `tests/idp/server.mjs` (npm `oidc-provider`) is started per test on 127.0.0.1 and
//! killed when the test ends (`common::auth`). Valid tokens with their roles, refused ones
//! (expired, another audience or issuer, tampered, unknown or rotated keys), and the
//! authorization code flow with PKCE. Every test here is skipped, with a message, when `node` or
//! `tests/idp/node_modules` is missing (`npm ci --prefix tests/idp` installs it;
//! `scripts/test.sh` does).

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use common::auth::{REDIRECT, assert_401, idp_or_skip, node, token_from, with_header};

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
