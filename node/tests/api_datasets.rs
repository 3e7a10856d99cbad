//! Datasets through the HTTP API in-process (`Router::oneshot`): importing every format (CSV
//! with its delimiter and encoding detected, GeoJSON, JSON, NDJSON, Parquet), new versions that
//! keep the id, and reading back as JSON-LD, schema, validation and every data format.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::api::{Part, TRAFFIC, multipart, node};
use serde_json::{Value, json};

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
