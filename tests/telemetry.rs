//! Black-box tests of the OpenTelemetry export: a real node process sends its spans over
//! OTLP/HTTP to a receiver in this test (axum, decoding the protobuf bodies with the
//! `opentelemetry-proto` types), and hands over the last ones when SIGTERM stops it; a node whose
//! collector is unreachable serves and stops as usual.

use std::collections::HashMap;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allmende_e2e::{AirSample, TestNode, allmende, path};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;

/// What the receiver got: decoded export requests, or why a body was refused.
type Received = Arc<Mutex<Vec<Result<ExportTraceServiceRequest, String>>>>;

/// An OTLP/HTTP (protobuf) traces receiver on an ephemeral loopback port.
struct Collector {
    /// The base URL, as a node is configured with it.
    url: String,
    received: Received,
}

impl Collector {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = Received::default();
        let state = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route("/v1/traces", axum::routing::post(traces))
                    .with_state(state);
                axum::serve(listener, app).await.expect("serve");
            });
        });
        Self { url, received }
    }

    /// Every span received so far, with its resource's attributes.
    fn spans(&self) -> Vec<Exported> {
        let received = self.received.lock().expect("lock");
        let mut out = Vec::new();
        for request in received.iter() {
            let request = request.as_ref().expect("a well-formed OTLP/HTTP request");
            for rs in &request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    out.push(Exported {
                        resource: resource.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent: span.parent_span_id.clone(),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        out
    }
}

async fn traces(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let protobuf = [(header::CONTENT_TYPE, "application/x-protobuf")];
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    if content_type != Some(b"application/x-protobuf") {
        let message = format!("content type {content_type:?}");
        received.lock().expect("lock").push(Err(message));
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, protobuf, Vec::new());
    }
    let decoded = ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string());
    let status = if decoded.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    received.lock().expect("lock").push(decoded);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (status, protobuf, answer)
}

/// One received span.
#[derive(Debug)]
struct Exported {
    resource: HashMap<String, String>,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Attributes as strings (numbers and booleans printed).
fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn one<'a>(spans: &'a [Exported], name: &str) -> &'a Exported {
    let found: Vec<&Exported> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span `{name}`; got the names {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// Whether `span` descends from `ancestor` within the spans received.
fn descends(spans: &[Exported], span: &Exported, ancestor: &Exported) -> bool {
    let mut parent = &span.parent;
    while !parent.is_empty() {
        if *parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == *parent) {
            Some(p) => parent = &p.parent,
            None => return false,
        }
    }
    false
}

/// Imports one day of sample air-quality data as `air` (common schema `air_quality_hourly`),
/// attaches `policy` (a file under data/policies) if given, and publishes it.
fn publish_air(node: &TestNode, district_key: &str, policy: Option<&str>) {
    node.import_air(&AirSample {
        slug: "air",
        title: "Luftqualität",
        district_key,
        days: 1,
        stations: 2,
        conforms: true,
    });
    if let Some(policy) = policy {
        node.attach_policy("air", policy);
    }
    node.ok(&["dataset", "publish", "air"]);
}

#[test]
fn spans_reach_an_otlp_collector_and_sigterm_flushes_the_last_ones() {
    let collector = Collector::start();
    let mut node = TestNode::init_at(
        "Stadt Münster",
        "05515",
        "127.0.0.31",
        &[
            "--otlp-endpoint",
            &collector.url,
            "--contact-email",
            "daten@example.org",
        ],
    );
    let config = std::fs::read_to_string(node.dir.path().join("allmende.toml")).expect("config");
    assert!(
        config.contains("[telemetry]") && config.contains(&collector.url),
        "{config}"
    );
    node.start();
    let peer_id = node.get("/api/v1/node")["peer_id"]
        .as_str()
        .expect("peer id")
        .to_owned();

    // A federated query over the node's own published dataset.
    publish_air(&node, "05515", None);
    let (status, answer) = node.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT station FROM federation.air_quality_hourly LIMIT 2" }),
    );
    assert_eq!(status, 200, "{answer}");
    let response = allmende_e2e::http()
        .get(format!("{}/api/v1/datasets/no-such-dataset", node.url))
        .send()
        .expect("GET");
    assert_eq!(response.status().as_u16(), 404);

    // The batch interval is five seconds: what was not sent yet goes out on SIGTERM.
    let stopped = Instant::now();
    assert!(node.stop(libc::SIGTERM, Duration::from_secs(20)).success());
    let spans = collector.spans();
    assert!(!spans.is_empty(), "no span arrived");

    for span in &spans {
        let r = &span.resource;
        assert_eq!(r.get("service.name").map(String::as_str), Some("allmende"));
        assert_eq!(r.get("allmende.peer_id"), Some(&peer_id), "{r:?}");
        assert_eq!(r.get("service.instance.id"), Some(&peer_id));
        assert_eq!(
            r.get("allmende.node.name").map(String::as_str),
            Some("Stadt Münster")
        );
        assert!(r.get("service.version").is_some_and(|v| !v.is_empty()));
    }

    let info = one(&spans, "GET /api/v1/node");
    assert_eq!(info.kind, SpanKind::Server as i32);
    assert_eq!(info.attr("http.request.method"), Some("GET"));
    assert_eq!(info.attr("http.route"), Some("/api/v1/node"));
    assert_eq!(info.attr("url.path"), Some("/api/v1/node"));
    assert_eq!(info.attr("http.response.status_code"), Some("200"));

    let missing = one(&spans, "GET /api/v1/datasets/{id}");
    assert_eq!(missing.attr("http.route"), Some("/api/v1/datasets/{id}"));
    assert_eq!(
        missing.attr("url.path"),
        Some("/api/v1/datasets/no-such-dataset")
    );
    assert_eq!(missing.attr("http.response.status_code"), Some("404"));

    let request = one(&spans, "POST /api/v1/query");
    assert_eq!(request.attr("http.response.status_code"), Some("200"));
    let query = one(&spans, "federated_query");
    assert_eq!(query.attr("providers"), Some("1"));
    assert_eq!(query.trace_id, request.trace_id);
    assert!(descends(&spans, query, request), "{query:?}");
    let answer = one(&spans, "query_answer");
    assert_eq!(answer.attr("decision"), Some("permit"));
    assert_eq!(answer.attr("rows"), Some("2"));
    assert!(descends(&spans, answer, query), "{answer:?}");

    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopped.elapsed()
    );
}

#[test]
fn an_unreachable_collector_neither_blocks_nor_breaks_the_node() {
    // Nothing listens on the discard port: every export is refused.
    let mut node = TestNode::init_at(
        "Stadt Münster",
        "05515",
        "127.0.0.32",
        &["--otlp-endpoint", "http://127.0.0.1:9"],
    );
    node.start();
    for _ in 0..20 {
        assert_eq!(node.get("/healthz")["status"], "ok");
    }
    let stopped = Instant::now();
    assert!(node.stop(libc::SIGTERM, Duration::from_secs(20)).success());
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "stopping took {:?}",
        stopped.elapsed()
    );
}

#[test]
fn a_malformed_endpoint_is_refused_at_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = allmende(&[
        "init",
        "--data-dir",
        path(dir.path()),
        "--name",
        "A",
        "--district-key",
        "05515",
        "--otlp-endpoint",
        "collector:4318",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("telemetry.otlp_endpoint"), "{stderr}");
}

#[test]
fn a_providers_answer_and_transfer_join_the_askers_trace() {
    let collector = Collector::start();
    let node = |name: &str, key: &str, ip: &str| {
        let mut n = TestNode::init_at(
            name,
            key,
            ip,
            &[
                "--otlp-endpoint",
                &collector.url,
                "--sync-interval-ms",
                "500",
                "--contact-email",
                "daten@example.org",
            ],
        );
        n.start();
        n
    };
    let mut asker = node("Stadt Münster", "05515", "127.0.0.34");
    let mut provider = node("Stadt Würzburg", "09663", "127.0.0.35");
    allmende_e2e::federate(&[&asker, &provider], "trace");
    publish_air(&provider, "09663", Some("offer-open.jsonld"));
    allmende_e2e::poll(
        "catalog replicated",
        Duration::from_secs(20),
        || (asker.get("/api/v1/catalog?theme=ENVI")["total"] == 1).then_some(()),
        || asker.get("/api/v1/catalog?theme=ENVI").to_string(),
    );
    let (status, answer) = asker.post(
        "/api/v1/query",
        &json!({ "sql": "SELECT station FROM federation.air_quality_hourly LIMIT 2" }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["members"][0]["status"], "ok", "{answer}");
    // A whole-dataset transfer too, under an agreement concluded on the way.
    let copy = asker.dir.path().join("copy.parquet");
    asker.ok(&["fetch", "wuerzburg.air", "--negotiate", "-o", path(&copy)]);
    assert!(copy.is_file());

    assert!(
        provider
            .stop(libc::SIGTERM, Duration::from_secs(20))
            .success()
    );
    assert!(asker.stop(libc::SIGTERM, Duration::from_secs(20)).success());
    let spans = collector.spans();
    let query = one(&spans, "federated_query");
    let answered = one(&spans, "query_answer");
    assert_eq!(answered.attr("decision"), Some("permit"));
    // Exported by two processes, one trace: the provider's spans descend from the asker's query.
    assert_ne!(
        query.resource.get("allmende.peer_id"),
        answered.resource.get("allmende.peer_id")
    );
    assert_eq!(answered.trace_id, query.trace_id);
    assert!(descends(&spans, answered, query), "{answered:?}");
    let fetch = one(&spans, "transfer_fetch");
    let served = one(&spans, "transfer_request");
    assert_eq!(served.trace_id, fetch.trace_id);
    assert!(descends(&spans, served, fetch), "{served:?}");
}
