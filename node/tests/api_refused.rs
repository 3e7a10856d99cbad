//! Bad input to the HTTP API in-process (`Router::oneshot`): every kind of bad upload gets a
//! problem document and leaves the store exactly as it was.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::api::{Part, TRAFFIC, multipart, node, node_with};
use serde_json::json;

#[tokio::test]
async fn bad_uploads_get_problems_and_change_nothing() {
    let n = node_with(4096);
    n.upload("verkehr.csv", TRAFFIC.as_bytes(), &[("slug", "verkehr")])
        .await;
    let before = n.snapshot().await;

    let big = "a,b\n".to_owned() + &"1,2\n".repeat(2000);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed CSV line",
            multipart(&[Part::File("x.csv", b"a;b\n1;2\n3;4;5\n")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "line 3 has 3 fields",
        ),
        (
            "unknown format",
            multipart(&[Part::File("x.bin", &[0, 159, 146, 150, 1, 2])]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unknown or unsupported format",
        ),
        (
            "explicit unknown format",
            multipart(&[Part::Text("format", "xlsx"), Part::File("x.csv", b"a\n1\n")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "xlsx",
        ),
        (
            "over the size limit",
            multipart(&[Part::File("big.csv", big.as_bytes())]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit of 4096 bytes",
        ),
        (
            "path traversal",
            multipart(&[Part::File("../../etc/passwd", b"a\n1\n")]),
            StatusCode::BAD_REQUEST,
            "not a plain file name",
        ),
        (
            "truncated upload",
            multipart(&[Part::File("x.csv", b"a\n1\n")])[..60].to_vec(),
            StatusCode::BAD_REQUEST,
            "cut off",
        ),
        (
            "no file",
            multipart(&[Part::Text("title", "x")]),
            StatusCode::BAD_REQUEST,
            "no `file` part",
        ),
        (
            "unknown field",
            multipart(&[Part::Text("colour", "x"), Part::File("x.csv", b"a\n1\n")]),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "bad licence",
            multipart(&[
                Part::Text("license", "beer-ware"),
                Part::File("x.csv", b"a\n1\n"),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "licence vocabulary",
        ),
        (
            "bad theme",
            multipart(&[Part::Text("theme", "FOOD"), Part::File("x.csv", b"a\n1\n")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "EU data-theme",
        ),
        (
            "taken slug",
            multipart(&[
                Part::Text("slug", "verkehr"),
                Part::File("x.csv", b"a\n1\n"),
            ]),
            StatusCode::CONFLICT,
            "already used",
        ),
        (
            "bad slug",
            multipart(&[Part::Text("slug", "../x"), Part::File("x.csv", b"a\n1\n")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be 1-63",
        ),
        (
            "header only",
            multipart(&[Part::File("x.csv", b"a;b\n")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no rows",
        ),
        (
            "empty file",
            multipart(&[Part::File("x.csv", b"")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no data",
        ),
        (
            "broken JSON",
            multipart(&[Part::File("x.json", b"[{\"a\": 1}, {\"a\": ")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid json",
        ),
        (
            "JSON scalar rows",
            multipart(&[Part::File("x.json", b"[1, 2]")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a JSON object",
        ),
        (
            "wrong JSON type",
            multipart(&[Part::File(
                "x.json",
                b"[{\"a\": 1}, {\"a\": {\"b\": 2}}, {\"a\": \"x\"}]",
            )]),
            StatusCode::CREATED,
            "",
        ),
        (
            "bad GeoJSON",
            multipart(&[Part::File(
                "x.geojson",
                b"{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Point\"}]}",
            )]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "feature 1",
        ),
        (
            "truncated Parquet",
            multipart(&[Part::File("x.parquet", b"PAR1\x00\x00\x00garbage")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid parquet",
        ),
        (
            "version of missing",
            multipart(&[Part::File("x.csv", b"a\n1\n")]),
            StatusCode::NOT_FOUND,
            "no dataset",
        ),
    ];
    for (what, body, expected, needle) in cases {
        let uri = if what == "version of missing" {
            "/api/v1/datasets/nope/versions"
        } else {
            "/api/v1/datasets"
        };
        let (status, v) = n.upload_raw(uri, body).await;
        assert_eq!(status, expected, "{what}: {v}");
        if expected == StatusCode::CREATED {
            // A column whose values mix types becomes text: nothing is lost.
            let slug = v["slug"].as_str().unwrap();
            let (_, rows) = n.sql(&format!("SELECT a FROM {slug}")).await;
            assert_eq!(
                rows,
                json!([{ "a": "1" }, { "a": "{\"b\":2}" }, { "a": "x" }])
            );
            let req = Request::delete(format!("/api/v1/datasets/{slug}"))
                .body(Body::empty())
                .unwrap();
            n.send(req).await;
            continue;
        }
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "{what}: `{detail}` lacks `{needle}`"
        );
        assert_eq!(v["status"], expected.as_u16());
        assert!(
            v["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:allmende:problem:")
        );
        assert_eq!(n.snapshot().await, before, "{what} changed the store");
    }
    let (status, v) = n
        .json(
            Request::post("/api/v1/datasets")
                .header(header::CONTENT_TYPE, "text/csv")
                .body(Body::from("a\n1\n"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_eq!(n.snapshot().await, before);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_after_the_sample_is_refused() {
    let n = node();
    let mut csv = "n;s\n".to_owned();
    for i in 0..25_000 {
        csv.push_str(&format!("{i};x\n"));
    }
    csv.push_str("zwölf;x\n");
    let (status, v) = n.upload("zahlen.csv", csv.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("zwölf") && detail.contains("Int64"),
        "{detail}"
    );
    let (list, files, tmp) = n.snapshot().await;
    assert_eq!(list["datasets"], json!([]));
    assert!(files.is_empty());
    assert_eq!(tmp, 0);
}
