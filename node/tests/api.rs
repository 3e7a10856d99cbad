//! The HTTP API in-process (`Router::oneshot`): every import format, read-back, SQL, and every
//! kind of bad input, each checked to leave the store exactly as it was.

use std::path::Path;

use allmende_node::api::{self, AppState};
use allmende_node::config::Config;
use allmende_node::identity::Identity;
use allmende_store::Store;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const BOUNDARY: &str = "allmende-test-boundary";

struct Node {
    dir: tempfile::TempDir,
    state: AppState,
    /// The local admin token `init` would print; every request sends it.
    token: String,
}

fn node_with(limit: u64) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("Stadt Münster".into(), "05515".into());
    config.limits.max_upload_bytes = limit;
    config.publisher.contact_email = Some("open-data@example.org".into());
    config.save(dir.path()).unwrap();
    Identity::create(dir.path()).unwrap();
    Store::open(dir.path(), true).unwrap();
    let token = allmende_node::auth::token::create(dir.path(), None)
        .unwrap()
        .reveal()
        .to_owned();
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    Node { dir, state, token }
}

fn node() -> Node {
    node_with(64 << 20)
}

enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a [u8]),
}

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File(file_name, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Node {
    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    async fn send(&self, mut req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        let resp = self.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ct, body)
    }

    async fn json(&self, req: Request<Body>) -> (StatusCode, Value) {
        let (status, ct, body) = self.send(req).await;
        if !status.is_success() {
            assert_eq!(ct.as_deref(), Some("application/problem+json"), "{status}");
        }
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
        };
        (status, v)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.json(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn upload_raw(&self, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let req = Request::post(uri)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.json(req).await
    }

    async fn upload(
        &self,
        file_name: &str,
        bytes: &[u8],
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut parts: Vec<Part<'_>> = fields.iter().map(|(k, v)| Part::Text(k, v)).collect();
        parts.push(Part::File(file_name, bytes));
        self.upload_raw("/api/v1/datasets", multipart(&parts)).await
    }

    async fn sql(&self, sql: &str) -> (StatusCode, Value) {
        let req = Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "sql": sql }).to_string()))
            .unwrap();
        self.json(req).await
    }

    /// The datasets, the files under `datasets/` and what is in `tmp/` (besides the queries'
    /// spill directory).
    async fn snapshot(&self) -> (Value, Vec<String>, usize) {
        let (_, list) = self.get("/api/v1/datasets").await;
        (
            list,
            files_under(&self.dir.path().join("datasets")),
            std::fs::read_dir(self.dir.path().join("tmp"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != allmende_data::datasets::SPILL_DIR)
                .count(),
        )
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

const TRAFFIC: &str = "Station;Zeit;Fahrzeuge;Anteil LKW\nMS-1;2024-01-01T00:00:00Z;120;0.1\nMS-2;2024-01-01T00:00:00Z;80;0.25\nMS-1;2024-01-01T01:00:00Z;95;\n";

#[tokio::test]
async fn imports_csv_and_answers_sql() {
    let n = node();
    let (status, v) = n
        .upload(
            "verkehr.csv",
            TRAFFIC.as_bytes(),
            &[
                ("title", "Verkehrszählung"),
                ("description", "Stündliche Zählungen"),
                ("license", "dl-by-de/2.0"),
                ("theme", "TRAN"),
                ("keywords", "Verkehr, Zählung"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["slug"], "verkehrszaehlung");
    assert_eq!(v["version"], 1);
    assert_eq!(v["rows"], 3);
    assert_eq!(v["source"]["delimiter"], ";");
    assert_eq!(v["missing"], json!([]));
    let types: Vec<(&str, &str)> = v["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["data_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("station", "Utf8"),
            ("zeit", "Timestamp(ms, \"UTC\")"),
            ("fahrzeuge", "Int64"),
            ("anteil_lkw", "Float64"),
        ]
    );
    let record = &v["record"];
    assert_eq!(record["keywords"], json!(["Verkehr", "Zählung"]));
    assert_eq!(record["district_key"], "05515");
    assert_eq!(record["publisher"]["name"], "Stadt Münster");
    let dist = &record["distributions"][0];
    assert_eq!(dist["format"], "PARQUET");
    assert_eq!(dist["checksum"]["value"].as_str().unwrap().len(), 64);

    let (status, rows) = n
        .sql("SELECT station, SUM(fahrzeuge) AS n, COUNT(anteil_lkw) AS k FROM verkehrszaehlung GROUP BY station ORDER BY station")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rows,
        json!([{ "station": "MS-1", "n": 215, "k": 1 }, { "station": "MS-2", "n": 80, "k": 1 }])
    );
}

#[tokio::test]
async fn detects_latin1_and_comma_csv() {
    let n = node();
    let mut bytes = b"ort,einwohner\n".to_vec();
    bytes.extend_from_slice(b"M\xfcnster,314319\nW\xfcrzburg,127880\n");
    let (status, v) = n.upload("orte.csv", &bytes, &[("title", "Orte")]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["source"]["encoding"], "ISO-8859-1");
    assert_eq!(v["source"]["delimiter"], ",");
    let (_, rows) = n.sql("SELECT ort FROM orte ORDER BY einwohner DESC").await;
    assert_eq!(rows, json!([{ "ort": "Münster" }, { "ort": "Würzburg" }]));
}

#[tokio::test]
async fn imports_geojson_json_and_ndjson() {
    let n = node();
    let geojson = r#"{"type":"FeatureCollection","name":"stations","features":[
      {"type":"Feature","id":7,"properties":{"name":"Aasee","level":{"a":1}},"geometry":{"type":"Point","coordinates":[7.61,51.95]}},
      {"type":"Feature","properties":{"name":"Hafen"},"geometry":null}]}"#;
    let (status, v) = n.upload("stationen.geojson", geojson.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["source"]["format"], "geojson");
    let (_, rows) = n
        .sql("SELECT name, level, feature_id, geometry FROM stationen ORDER BY name")
        .await;
    assert_eq!(rows[0]["level"], "{\"a\":1}");
    assert_eq!(rows[0]["feature_id"], "7");
    let geometry: Value = serde_json::from_str(rows[0]["geometry"].as_str().unwrap()).unwrap();
    assert_eq!(geometry["type"], "Point");
    assert!(rows[1]["geometry"].is_null());

    let array = r#"[{"id": 1, "value": 1.5, "ok": true, "day": "2024-03-01"}, {"id": 2, "value": 2, "ok": false, "day": null}]"#;
    let (status, v) = n.upload("werte.json", array.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (_, rows) = n.sql("SELECT SUM(value) AS s, COUNT(day) AS d, MIN(day) AS first FROM werte WHERE ok OR NOT ok").await;
    assert_eq!(rows, json!([{ "s": 3.5, "d": 1, "first": "2024-03-01" }]));

    let nd = "{\"k\": \"a\", \"n\": 1}\n{\"k\": \"b\", \"n\": 2}\n\n{\"k\": \"c\"}\n";
    let (status, v) = n.upload("zeilen.ndjson", nd.as_bytes(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["rows"], 3);
    assert_eq!(v["source"]["format"], "ndjson");
}

#[tokio::test]
async fn parquet_export_imports_again_and_versions_keep_the_id() {
    let n = node();
    let (_, first) = n
        .upload("verkehr.csv", TRAFFIC.as_bytes(), &[("slug", "verkehr")])
        .await;
    let id = first["id"].as_str().unwrap().to_owned();
    let (status, ct, parquet) = n
        .send(
            Request::get("/api/v1/datasets/verkehr/data?format=parquet")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("application/vnd.apache.parquet"));
    assert!(parquet.starts_with(b"PAR1"));

    let (status, copy) = n
        .upload("copy.parquet", &parquet, &[("slug", "kopie")])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    assert_eq!(
        copy["schema"],
        first["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f.as_object_mut().unwrap().remove("source_name");
                f
            })
            .collect::<Value>()
    );
    let (_, same) = n
        .sql("SELECT COUNT(*) AS n FROM (SELECT * FROM verkehr EXCEPT SELECT * FROM kopie)")
        .await;
    assert_eq!(same, json!([{ "n": 0 }]));

    let more = format!("{TRAFFIC}MS-3;2024-01-01T02:00:00Z;10;0.5\n");
    let body = multipart(&[
        Part::Text("title", "Verkehr v2"),
        Part::File("v2.csv", more.as_bytes()),
    ]);
    let (status, v2) = n
        .upload_raw(&format!("/api/v1/datasets/{id}/versions"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["id"], id.as_str());
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["rows"], 4);
    assert_eq!(v2["record"]["issued"], first["record"]["issued"]);
    let (_, files, tmp) = n.snapshot().await;
    assert_eq!(
        files.iter().filter(|f| f.contains(&id)).count(),
        1,
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(&format!("{id}/v2.parquet")))
    );
    assert_eq!(tmp, 0);
}

#[tokio::test]
async fn reads_back_as_json_ld_schema_and_data_formats() {
    let n = node();
    n.upload("verkehr.csv", TRAFFIC.as_bytes(), &[("slug", "verkehr")])
        .await;
    let (status, ct, body) = n
        .send(
            Request::get("/api/v1/datasets/verkehr")
                .header(header::ACCEPT, "application/ld+json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("application/ld+json"));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["@type"], "dcat:Dataset");
    assert_eq!(
        doc["dcatde:politicalGeocodingURI"]["@id"],
        "http://dcat-ap.de/def/politicalGeocoding/districtKey/05515"
    );

    let (_, schema) = n.get("/api/v1/datasets/verkehr/schema").await;
    assert_eq!(schema["fields"][3]["source_name"], "Anteil LKW");

    let (_, validation) = n.get("/api/v1/datasets/verkehr/validation").await;
    assert_eq!(validation["valid"], false);
    let missing: Vec<&str> = validation["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        vec!["dct:title", "dct:description", "dcat:theme", "dct:license"]
    );

    let (_, ct, csv) = n
        .send(
            Request::get("/api/v1/datasets/verkehr/data?format=csv")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(ct.unwrap().starts_with("text/csv"));
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("station,zeit,fahrzeuge,anteil_lkw\nMS-1,2024-01-01T00:00:00Z,120,0.1\n"),
        "{csv}"
    );
    let (_, rows) = n.get("/api/v1/datasets/verkehr/data?format=json").await;
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let (_, ct, arrow) = n
        .send(
            Request::get("/api/v1/datasets/verkehr/data?format=arrow")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ct.as_deref(), Some("application/vnd.apache.arrow.stream"));
    assert!(!arrow.is_empty());
    let (status, _) = n.get("/api/v1/datasets/verkehr/data?format=xlsx").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let patch = Request::patch("/api/v1/datasets/verkehr")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"title": "Verkehr", "description": "d", "themes": ["TRAN"], "license": "cc-zero"}).to_string()))
        .unwrap();
    let (status, v) = n.json(patch).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["missing"], json!([]));
    assert_eq!(v["version"], 1);
    let (_, info) = n.get("/api/v1/node").await;
    assert_eq!(info["datasets"], 1);
    assert!(info["peer_id"].as_str().unwrap().starts_with("12D3KooW"));

    let (status, _, _) = n
        .send(
            Request::delete("/api/v1/datasets/verkehr")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = n.get("/api/v1/datasets/verkehr").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, files, _) = n.snapshot().await;
    assert!(files.is_empty(), "{files:?}");
}

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
