//! OpenTelemetry export of the node's `tracing` spans over OTLP/HTTP (protobuf), when a
//! collector is configured (`[telemetry] otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`).
//!
//! Without a collector nothing here runs: no exporter, no thread, no layer. With one, finished
//! spans go into the SDK's batch queue (2,048 spans; the `OTEL_BSP_*` variables tune it), a
//! background thread of the SDK sends a batch every five seconds, and each HTTP request runs on
//! the node's tokio runtime with the workspace's `reqwest` client. A collector that is down or
//! slow costs the node one warning in the log and the spans that do not fit the queue; it never
//! holds up a request, and shutdown waits for it at most [`SHUTDOWN_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response, ResponseBodyTooLarge};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::TelemetryConfig;

/// The standard variable naming the collector's base URL (`/v1/traces` is appended).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the full URL spans are sent to (used as it is).
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The path of the OTLP/HTTP traces service below the collector's base URL.
pub const TRACES_PATH: &str = "/v1/traces";
/// How long one export request may take, reading the answer included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the last batch to reach the collector.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The collector's answer is a small protobuf message; a longer one is refused.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Errors setting up the export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `telemetry.filter` is not a valid `tracing` filter.
    #[error("invalid telemetry.filter `{filter}`: {message}")]
    Filter {
        /// The filter as configured.
        filter: String,
        /// What the parser said.
        message: String,
    },
    /// The exporter could not be built, e.g. for a malformed endpoint.
    #[error("cannot export spans to `{endpoint}`: {message}")]
    Exporter {
        /// The URL spans would have been sent to.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
}

/// The URL spans are sent to, or `None` when no collector is configured: the configured base
/// URL plus [`TRACES_PATH`], else [`TRACES_ENDPOINT_ENV`] as it is, else [`ENDPOINT_ENV`] plus
/// [`TRACES_PATH`]. `env` looks a variable up (`std::env::var` in the binary); empty values count
/// as unset.
pub fn endpoint(config: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(base) = &config.otlp_endpoint {
        return Some(traces_url(base));
    }
    env(TRACES_ENDPOINT_ENV).or_else(|| env(ENDPOINT_ENV).map(|base| traces_url(&base)))
}

fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// Who the spans come from: the resource attributes of every exported span.
#[derive(Clone, Debug)]
pub struct Origin<'a> {
    /// The node's peer id (`allmende.peer_id`, also `service.instance.id`).
    pub peer_id: PeerId,
    /// The organisation running the node (`allmende.node.name`).
    pub name: &'a str,
    /// The node's district key (`allmende.district_key`).
    pub district_key: &'a str,
}

/// A running export pipeline; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Telemetry {
    /// Sets up the export of spans to `endpoint` (see [`endpoint`]), with HTTP requests on
    /// `runtime`, and returns it with the `tracing` layer that feeds it (filtered by
    /// `config.filter`). Nothing is sent before a span ends.
    pub fn start(
        config: &TelemetryConfig,
        endpoint: String,
        origin: &Origin<'_>,
        runtime: tokio::runtime::Handle,
    ) -> Result<(Self, impl Layer<Registry> + Send + Sync + 'static), TelemetryError> {
        // The SDK's own diagnostics must never become spans of their own.
        let filter =
            EnvFilter::try_new(format!("{},opentelemetry=off", config.filter)).map_err(|e| {
                TelemetryError::Filter {
                    filter: config.filter.clone(),
                    message: e.to_string(),
                }
            })?;
        let exporter_error = |message: String| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            message,
        };
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| exporter_error(e.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OnRuntime {
                client,
                runtime,
                endpoint: endpoint.clone(),
                failing: Arc::new(AtomicBool::new(false)),
            })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| exporter_error(e.to_string()))?;
        let peer_id = origin.peer_id.to_string();
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", peer_id.clone()),
                KeyValue::new("allmende.peer_id", peer_id),
                KeyValue::new("allmende.node.name", origin.name.to_owned()),
                KeyValue::new("allmende.district_key", origin.district_key.to_owned()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("allmende"))
            .with_filter(filter);
        Ok((Self { provider, endpoint }, layer))
    }

    /// The URL spans are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends the spans still queued and stops the export, waiting at most
    /// [`SHUTDOWN_TIMEOUT`]. Call it outside the runtime's worker threads while the runtime
    /// still runs (the requests run there).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(endpoint = %self.endpoint, error = %e,
                "the last spans may not have reached the collector");
        }
    }
}

/// The exporter's HTTP client: `reqwest` requests spawned on the node's runtime, so the SDK's
/// batch thread (which has no runtime of its own) only waits for them.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    endpoint: String,
    /// Whether the last request failed; the log hears of a change only, not of each batch.
    failing: Arc<AtomicBool>,
}

impl OnRuntime {
    fn report(&self, problem: Option<String>) {
        match problem {
            Some(problem) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(endpoint = %self.endpoint, %problem,
                        "cannot export spans; they are dropped until the collector answers");
                }
            }
            None => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "exporting spans again");
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Ok(Err(ResponseBodyTooLarge::new()));
                }
                body.extend_from_slice(&chunk);
            }
            let mut answer = Response::new(Bytes::from(body));
            *answer.status_mut() = response.status();
            *answer.headers_mut() = std::mem::take(response.headers_mut());
            Ok::<_, reqwest::Error>(Ok(answer))
        });
        let outcome = match task.await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(too_large))) => Err(HttpError::from(too_large)),
            Ok(Err(e)) => Err(HttpError::from(e)),
            // The runtime is shutting down.
            Err(e) => Err(HttpError::from(e)),
        };
        self.report(match &outcome {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("the collector answered {}", answer.status())),
            Err(e) => Some(chain(e.as_ref())),
        });
        outcome
    }
}

/// An error with its causes, `: `-separated (reqwest's own message leaves out why).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The longest `traceparent` value taken from a peer (the W3C format has 55 characters).
const MAX_TRACEPARENT: usize = 64;

/// The current span's trace context as a W3C `traceparent` value, to carry to a peer; `None` when
/// no trace is being recorded (no exporter, or the span is not sampled).
pub fn traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` — created, not yet entered — a child of a peer's span named by a W3C
/// `traceparent` value. A malformed or oversized value is ignored: the span keeps its own trace.
pub fn follow_remote(span: &tracing::Span, traceparent: &str) {
    if traceparent.len() > MAX_TRACEPARENT {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trace_context_goes_out_unrecorded_and_a_bad_one_coming_in_is_ignored() {
        // No OpenTelemetry layer here: nothing is recorded, so nothing is sent to a peer.
        assert_eq!(traceparent(), None);
        let span = tracing::info_span!("answer");
        follow_remote(&span, "not a traceparent");
        follow_remote(&span, &"0".repeat(10_000));
        follow_remote(
            &span,
            "00-00000000000000000000000000000000-0000000000000000-01",
        );
    }

    fn config(endpoint: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: endpoint.map(str::to_owned),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn endpoint_prefers_the_configuration_then_the_standard_variables() {
        let none = |_: &str| None;
        assert_eq!(endpoint(&config(None), none), None);
        assert_eq!(
            endpoint(&config(Some("http://collector:4318/")), none).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            endpoint(&config(Some("http://c:4318/v1/traces")), none).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let base = |k: &str| (k == ENDPOINT_ENV).then(|| "http://env:4318".to_owned());
        assert_eq!(
            endpoint(&config(None), base).as_deref(),
            Some("http://env:4318/v1/traces")
        );
        assert_eq!(
            endpoint(&config(Some("http://file:4318")), base).as_deref(),
            Some("http://file:4318/v1/traces")
        );
        let both = |k: &str| match k {
            TRACES_ENDPOINT_ENV => Some("http://env:4318/custom".to_owned()),
            ENDPOINT_ENV => Some("http://env:4318".to_owned()),
            _ => None,
        };
        assert_eq!(
            endpoint(&config(None), both).as_deref(),
            Some("http://env:4318/custom")
        );
        let empty = |_: &str| Some(" ".to_owned());
        assert_eq!(endpoint(&config(None), empty), None);
    }

    #[test]
    fn a_bad_filter_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = config(Some("http://127.0.0.1:9"));
        config.filter = "allmende=loud".into();
        let origin = Origin {
            peer_id: PeerId::random(),
            name: "Stadt Münster",
            district_key: "05515",
        };
        let result = Telemetry::start(
            &config,
            "http://127.0.0.1:9/v1/traces".into(),
            &origin,
            runtime.handle().clone(),
        );
        assert!(matches!(result, Err(TelemetryError::Filter { .. })));
    }
}
