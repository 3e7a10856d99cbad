//! The HTTP API of an in-process node (`Router::oneshot`) with the admin token: uploads as
//! multipart forms, JSON answers, SQL, and snapshots of what is stored.

use allmende_node::api::{self, AppState};
use allmende_node::config::Config;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The multipart boundary of [`multipart`].
pub const BOUNDARY: &str = "allmende-test-boundary";

/// An in-process node with a data dir of its own, asked through its router.
pub struct Node {
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// What its router serves.
    pub state: AppState,
    /// The local admin token `init` would print; every request sends it.
    pub token: String,
}

/// A node of Stadt Münster whose uploads may be `limit` bytes.
pub fn node_with(limit: u64) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("Stadt Münster".into(), "05515".into());
    config.limits.max_upload_bytes = limit;
    config.publisher.contact_email = Some("open-data@example.org".into());
    let token = super::init(dir.path(), &config);
    let state = allmende_node::server::open(dir.path(), config)
        .unwrap()
        .state;
    Node { dir, state, token }
}

/// A node with uploads of up to 64 MiB.
pub fn node() -> Node {
    node_with(64 << 20)
}

/// One part of a multipart form.
pub enum Part<'a> {
    /// A text field: name and value.
    Text(&'a str, &'a str),
    /// The `file` part: file name and content.
    File(&'a str, &'a [u8]),
}

/// A `multipart/form-data` body of `parts` with [`BOUNDARY`].
pub fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
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
    /// The node's API router.
    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// Sends `req` with the admin token; the status, content type and body.
    pub async fn send(&self, mut req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
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

    /// Sends `req`; the status and the JSON body (`null` if empty); a non-2xx answer must be
    /// a problem document.
    pub async fn json(&self, req: Request<Body>) -> (StatusCode, Value) {
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

    /// `GET uri` as JSON.
    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.json(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// `POST uri` with a multipart `body`.
    pub async fn upload_raw(&self, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let req = Request::post(uri)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.json(req).await
    }

    /// Uploads `bytes` as `file_name` with the form `fields` (`POST /api/v1/datasets`).
    pub async fn upload(
        &self,
        file_name: &str,
        bytes: &[u8],
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut parts: Vec<Part<'_>> = fields.iter().map(|(k, v)| Part::Text(k, v)).collect();
        parts.push(Part::File(file_name, bytes));
        self.upload_raw("/api/v1/datasets", multipart(&parts)).await
    }

    /// `POST /api/v1/sql` with `sql`.
    pub async fn sql(&self, sql: &str) -> (StatusCode, Value) {
        let req = Request::post("/api/v1/sql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "sql": sql }).to_string()))
            .unwrap();
        self.json(req).await
    }

    /// The datasets, the files under `datasets/` and what is in `tmp/` (besides the queries'
    /// spill directory).
    pub async fn snapshot(&self) -> (Value, Vec<String>, usize) {
        let (_, list) = self.get("/api/v1/datasets").await;
        (
            list,
            super::files_under(&self.dir.path().join("datasets")),
            std::fs::read_dir(self.dir.path().join("tmp"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != allmende_data::datasets::SPILL_DIR)
                .count(),
        )
    }
}

/// A small traffic count CSV: `;`-separated, German headers, 3 rows, one value missing.
pub const TRAFFIC: &str = "Station;Zeit;Fahrzeuge;Anteil LKW\nMS-1;2024-01-01T00:00:00Z;120;0.1\nMS-2;2024-01-01T00:00:00Z;80;0.25\nMS-1;2024-01-01T01:00:00Z;95;\n";
