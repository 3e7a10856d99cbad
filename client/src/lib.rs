//! A small client of the node's HTTP API, used by the command line.

use std::path::Path;

use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot reach the node at {url}: {source}; is `allmende run` running there?")]
    Unreachable {
        /// The API base URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The node answered with an error.
    #[error("{detail} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The problem's detail.
        detail: String,
    },
    /// A local file could not be read.
    #[error("cannot read `{path}`: {source}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The response was not what the API promises.
    #[error("unexpected response: {0}")]
    Protocol(String),
}

/// A client of one node's API.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the API at `base`, e.g. `http://127.0.0.1:7070`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The same client sending `Authorization: Bearer <token>` with every request, if a token
    /// is given (the header is marked sensitive, so it is not printed).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        let Some(token) = token else { return self };
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        else {
            return self;
        };
        value.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
        if let Ok(http) = reqwest::Client::builder().default_headers(headers).build() {
            self.http = http;
        }
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn check(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ClientError> {
        let response = sent.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or(body);
        Err(ClientError::Api {
            status: status.as_u16(),
            detail,
        })
    }

    async fn json(&self, response: reqwest::Response) -> Result<Value, ClientError> {
        response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let r = self
            .check(self.http.get(self.url(path)).send().await)
            .await?;
        self.json(r).await
    }

    /// `GET path` with an `Accept` header, as text.
    pub async fn get_text(&self, path: &str, accept: &str) -> Result<String, ClientError> {
        let r = self
            .check(
                self.http
                    .get(self.url(path))
                    .header("accept", accept)
                    .send()
                    .await,
            )
            .await?;
        r.text()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET path`, streaming the body into `out`.
    pub async fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, ClientError> {
        let r = self
            .check(self.http.get(self.url(path)).send().await)
            .await?;
        let mut body = r.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ClientError::Protocol(format!("download cut off: {e}")))?;
            out.write_all(&chunk).map_err(|source| ClientError::File {
                path: "output".into(),
                source,
            })?;
            total += chunk.len() as u64;
        }
        Ok(total)
    }

    /// `GET path?query` as JSON.
    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let r = self
            .check(self.http.get(self.url(path)).query(query).send().await)
            .await?;
        self.json(r).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let r = self
            .check(self.http.post(self.url(path)).json(body).send().await)
            .await?;
        self.json(r).await
    }

    /// `PUT path` with a JSON text body.
    pub async fn put_text(&self, path: &str, body: String) -> Result<Value, ClientError> {
        let r = self
            .check(
                self.http
                    .put(self.url(path))
                    .header("content-type", "application/ld+json")
                    .body(body)
                    .send()
                    .await,
            )
            .await?;
        self.json(r).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let r = self
            .check(self.http.patch(self.url(path)).json(body).send().await)
            .await?;
        self.json(r).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.check(self.http.delete(self.url(path)).send().await)
            .await?;
        Ok(())
    }

    /// `POST /api/v1/sql`, returning the raw body in `format`.
    pub async fn sql(&self, sql: &str, format: &str) -> Result<bytes::Bytes, ClientError> {
        let body = serde_json::json!({ "sql": sql, "format": format });
        let r = self
            .check(
                self.http
                    .post(self.url("/api/v1/sql"))
                    .json(&body)
                    .send()
                    .await,
            )
            .await?;
        r.bytes()
            .await
            .map_err(|e| ClientError::Protocol(format!("result cut off: {e}")))
    }

    /// Uploads `file` with form `fields` to `path`, reporting bytes sent to `progress`.
    pub async fn upload(
        &self,
        path: &str,
        file: &Path,
        fields: Vec<(&'static str, String)>,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Value, ClientError> {
        let file_error = |source| ClientError::File {
            path: file.display().to_string(),
            source,
        };
        let handle = tokio::fs::File::open(file).await.map_err(file_error)?;
        let len = handle.metadata().await.map_err(file_error)?.len();
        let mut sent = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(handle, 1 << 16).map(move |chunk| {
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                    progress(sent);
                }
                chunk
            });
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let mut form = Form::new();
        for (key, value) in fields {
            form = form.text(key, value);
        }
        let part =
            Part::stream_with_length(reqwest::Body::wrap_stream(stream), len).file_name(name);
        form = form.part("file", part);
        let r = self
            .check(self.http.post(self.url(path)).multipart(form).send().await)
            .await?;
        self.json(r).await
    }
}
