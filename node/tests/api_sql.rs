//! Local SQL through the HTTP API in-process (`Router::oneshot`): clear errors, only reads
//! allowed, and answers as CSV.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::api::{TRAFFIC, node};
use serde_json::json;

#[tokio::test]
async fn sql_errors_are_clear_and_only_reads_are_allowed() {
    let n = node();
    n.upload("verkehr.csv", TRAFFIC.as_bytes(), &[("slug", "verkehr")])
        .await;
    let cases = [
        ("SELEC 1", StatusCode::BAD_REQUEST, "syntax"),
        ("SELECT * FROM nowhere", StatusCode::BAD_REQUEST, "nowhere"),
        ("SELECT nope FROM verkehr", StatusCode::BAD_REQUEST, "nope"),
        (
            "SELECT * FROM other.verkehr",
            StatusCode::BAD_REQUEST,
            "only this node's datasets",
        ),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            StatusCode::FORBIDDEN,
            "read-only",
        ),
        (
            "INSERT INTO verkehr VALUES ('x', NULL, 1, 1.0)",
            StatusCode::FORBIDDEN,
            "read-only",
        ),
        (
            "COPY verkehr TO '/tmp/x.csv'",
            StatusCode::FORBIDDEN,
            "read-only",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            StatusCode::FORBIDDEN,
            "read-only",
        ),
    ];
    for (sql, expected, needle) in cases {
        let (status, v) = n.sql(sql).await;
        assert_eq!(status, expected, "{sql}: {v}");
        let detail = v["detail"].as_str().unwrap().to_lowercase();
        assert!(
            detail.contains(needle),
            "{sql}: `{detail}` lacks `{needle}`"
        );
    }
    for (body, expected) in [
        ("{\"sql\": ", StatusCode::BAD_REQUEST),
        ("{\"sql\": 1}", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let req = Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, v) = n.json(req).await;
        assert_eq!(status, expected, "{body}: {v}");
    }
    let req = Request::post("/api/v1/sql?format=csv")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"sql": "SELECT station FROM verkehr ORDER BY station LIMIT 1"}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = n.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(body).unwrap(), "station\nMS-1\n");
}
