//! Access control without an OpenID provider, in-process (`Router::oneshot`): the local admin
//! token, rate limiting of failures per client address, production mode, CORS, and login
//! when no provider is configured.

mod common;

use allmende_node::auth::Role;
use allmende_node::config::Config;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use common::auth::{assert_401, node};

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
    let token = common::init(dir.path(), &config);
    let err = allmende_node::server::open(dir.path(), config.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("allow_local_token_in_production"), "{err}");
    config.auth.allow_local_token_in_production = true;
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    let p = state.auth.verify(&token).await.unwrap();
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

#[tokio::test]
async fn login_without_a_provider_is_not_configured() {
    let node = node(None, |_| {});
    let r = node.get("/auth/login", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["type"], "urn:allmende:problem:login-not-configured");
}
