//! Dataset routes: upload (multipart, streamed to disk), read back as JSON or DCAT-AP JSON-LD,
//! schema, data export, validation, metadata update and delete.

use std::io::Write;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;

use super::error::{ApiJson, ApiQuery};
use super::sql::{FormatQuery, pick_format};
use super::{ApiError, AppState};
use allmende_data::datasets::{ImportRequest, MetadataInput};
use allmende_store::StoredDataset;

pub(super) fn routes() -> Router<AppState> {
    // Uploads are bounded by `limits.max_upload_bytes` while they stream to disk; every other
    // body by the router's limit.
    let upload = || DefaultBodyLimit::disable();
    Router::new()
        .route("/api/v1/datasets", get(list).post(create).layer(upload()))
        .route(
            "/api/v1/datasets/{id}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/api/v1/datasets/{id}/versions",
            post(new_version).layer(upload()),
        )
        .route("/api/v1/datasets/{id}/schema", get(schema))
        .route("/api/v1/datasets/{id}/validation", get(validation))
        .route("/api/v1/datasets/{id}/data", get(data))
}

/// A dataset as the API shows it.
#[derive(Debug, Serialize)]
pub struct DatasetView<'a> {
    /// Stable id.
    pub id: &'a str,
    /// Table name.
    pub slug: &'a str,
    /// Version.
    pub version: u64,
    /// Title.
    pub title: &'a str,
    /// Rows in the current version.
    pub rows: u64,
    /// The DCAT-AP.de record.
    pub record: &'a allmende_protocol::dcat::DatasetRecord,
    /// Columns.
    pub schema: &'a [allmende_store::Field],
    /// The import that made the current version.
    pub source: &'a allmende_store::SourceInfo,
    /// Mandatory DCAT-AP.de fields still missing before the dataset can be published.
    pub missing: Vec<String>,
}

impl<'a> From<&'a StoredDataset> for DatasetView<'a> {
    fn from(d: &'a StoredDataset) -> Self {
        Self {
            id: &d.record.id,
            slug: &d.record.slug,
            version: d.record.version,
            title: &d.record.title,
            rows: d.rows,
            record: &d.record,
            schema: &d.schema,
            source: &d.source,
            missing: d.record.missing_mandatory(),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let datasets = blocking(move || Ok(state.datasets.list()?)).await?;
    let views: Vec<DatasetView<'_>> = datasets.iter().map(DatasetView::from).collect();
    Ok(Json(json!({ "datasets": views })))
}

/// The dataset with this id or name (looked up on a blocking thread).
pub(super) async fn find(state: &AppState, id: String) -> Result<StoredDataset, ApiError> {
    let datasets = state.datasets.clone();
    blocking(move || Ok(datasets.get(&id)?)).await
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dataset = find(&state, id).await?;
    let wants_ld = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/ld+json"));
    if wants_ld {
        let doc = allmende_data::dcat::to_jsonld(&dataset.record, &state.config.public_url());
        return Ok((
            [(header::CONTENT_TYPE, "application/ld+json")],
            doc.to_string(),
        )
            .into_response());
    }
    Ok(Json(DatasetView::from(&dataset)).into_response())
}

async fn schema(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dataset = find(&state, id).await?;
    Ok(Json(
        json!({ "id": dataset.record.id, "slug": dataset.record.slug, "fields": dataset.schema }),
    ))
}

async fn validation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let dataset = find(&state, id).await?;
    let missing = dataset.record.missing_mandatory();
    Ok(Json(
        json!({ "id": dataset.record.id, "valid": missing.is_empty(), "missing": missing }),
    ))
}

async fn data(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dataset = find(&state, id).await?;
    if query.format.as_deref() == Some("parquet") {
        let file = tokio::fs::File::open(state.datasets.file_path(&dataset))
            .await
            .map_err(ApiError::internal)?;
        let len = file.metadata().await.map_err(ApiError::internal)?.len();
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/vnd.apache.parquet")
            .header(header::CONTENT_LENGTH, len)
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.parquet\"", dataset.record.slug),
            )
            .body(Body::from_stream(ReaderStream::with_capacity(
                file,
                1 << 16,
            )))
            .map_err(ApiError::internal);
    }
    let format = pick_format(query.format.as_deref(), None, &headers)?;
    super::answer::local_query(
        &state,
        format!("SELECT * FROM \"{}\"", dataset.record.slug),
        format,
    )
    .await
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<MetadataInput>,
) -> Result<Json<Value>, ApiError> {
    let datasets = state.datasets.clone();
    let checking = state.clone();
    let dataset = blocking(move || {
        Ok(datasets.update_metadata_checked(&id, &input, |d| {
            super::federation::check_republishable(&checking, d)
        })?)
    })
    .await?;
    let federation = super::federation::republish(&state, &dataset, false).await;
    let mut view = json!(DatasetView::from(&dataset));
    view["federation"] = federation;
    Ok(Json(view))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let dataset = find(&state, id.clone()).await?;
    super::federation::republish(&state, &dataset, true).await;
    state
        .policies
        .detach(&dataset.record.id)
        .map_err(ApiError::from)?;
    let datasets = state.datasets.clone();
    blocking(move || Ok(datasets.delete(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    import(state, headers, multipart, None).await
}

async fn new_version(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    find(&state, id.clone()).await?;
    import(state, headers, multipart, Some(id)).await
}

/// Rejects file names that try to name a path.
pub fn check_file_name(name: &str) -> Result<(), ApiError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.contains(['/', '\\', '\0'])
        || name == "."
        || name == ".."
        || name.chars().any(char::is_control);
    if bad {
        return Err(ApiError::bad_request(
            "invalid-file-name",
            format!(
                "file name `{}` is not a plain file name",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid-upload",
        format!("the upload is malformed or was cut off: {e}"),
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("the upload exceeds the node's limit of {limit} bytes"),
    )
}

/// Streams one multipart field into `file`, enforcing the size limit.
async fn save_field(
    field: &mut Field<'_>,
    file: &mut std::fs::File,
    limit: u64,
) -> Result<(), ApiError> {
    let mut written = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large(limit));
        }
        // Writes of up to a chunk's size to a local file: short enough not to need a
        // blocking thread.
        file.write_all(&chunk).map_err(ApiError::internal)?;
    }
    Ok(())
}

/// Longest form field of an upload other than the file and `metadata`, in bytes (the
/// description's limit).
const MAX_FORM_FIELD_BYTES: usize = allmende_data::datasets::MAX_DESCRIPTION_BYTES;

/// Most form fields of an upload besides the file.
const MAX_FORM_FIELDS: usize = 64;

/// A form field's text, of at most `max` bytes.
async fn text(mut field: Field<'_>, max: usize) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("form field `{name}` exceeds {max} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid-upload",
            format!("form field `{name}` is not UTF-8"),
        )
    })
}

fn list_of(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tracing::instrument(skip_all, fields(version_of = version_of.as_deref()))]
async fn import(
    state: AppState,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
    version_of: Option<String>,
) -> Result<Response, ApiError> {
    let limit = state.config.limits.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(64 * 1024)) {
        return Err(too_large(limit));
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid-upload",
            format!("expected a multipart/form-data upload with a `file` part: {e}"),
        )
    })?;
    let mut meta = MetadataInput::default();
    let mut format = None;
    let mut upload: Option<(tempfile::TempPath, Option<String>)> = None;
    let max_metadata = usize::try_from(state.config.limits.max_body_bytes).unwrap_or(usize::MAX);
    let mut fields = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        fields += 1;
        if fields > MAX_FORM_FIELDS {
            return Err(ApiError::bad_request(
                "invalid-upload",
                format!("the upload has more than {MAX_FORM_FIELDS} form fields"),
            ));
        }
        match name.as_str() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid-upload",
                        "more than one `file` part",
                    ));
                }
                let file_name = field.file_name().map(str::to_owned);
                if let Some(n) = &file_name {
                    check_file_name(n)?;
                }
                let tmp = tempfile::NamedTempFile::new_in(state.datasets.tmp_dir())
                    .map_err(ApiError::internal)?;
                let (mut file, path) = tmp.into_parts();
                save_field(&mut field, &mut file, limit).await?;
                file.sync_all().map_err(ApiError::internal)?;
                upload = Some((path, file_name));
            }
            "metadata" => {
                let m: MetadataInput = serde_json::from_str(&text(field, max_metadata).await?)
                    .map_err(|e| {
                        ApiError::bad_request("invalid-metadata", format!("`metadata` part: {e}"))
                    })?;
                meta = m;
            }
            "format" => format = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "title" => meta.title = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "description" => meta.description = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "license" => meta.license = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "theme" | "themes" => meta
                .themes
                .get_or_insert_with(Vec::new)
                .extend(list_of(&text(field, MAX_FORM_FIELD_BYTES).await?)),
            "keywords" | "keyword" => meta
                .keywords
                .get_or_insert_with(Vec::new)
                .extend(list_of(&text(field, MAX_FORM_FIELD_BYTES).await?)),
            "slug" => meta.slug = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "contact_email" => meta.contact_email = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "contact_name" => meta.contact_name = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "temporal_start" => {
                meta.temporal_start = Some(text(field, MAX_FORM_FIELD_BYTES).await?)
            }
            "temporal_end" => meta.temporal_end = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "spatial" => meta.spatial = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            "conforms_to" => meta.conforms_to = Some(text(field, MAX_FORM_FIELD_BYTES).await?),
            other => {
                return Err(ApiError::bad_request(
                    "invalid-upload",
                    format!("unknown form field `{other}`"),
                ));
            }
        }
    }
    let Some((path, file_name)) = upload else {
        return Err(ApiError::bad_request(
            "invalid-upload",
            "the upload has no `file` part",
        ));
    };
    let datasets = state.datasets.clone();
    let created = version_of.is_none();
    let dataset = blocking(move || {
        let req = ImportRequest {
            source: path.to_path_buf(),
            file_name,
            format,
            metadata: meta,
            version_of,
        };
        let result = datasets.import(req, &|_| {});
        drop(path);
        Ok(result?)
    })
    .await?;
    tracing::info!(id = %dataset.record.id, slug = %dataset.record.slug,
        version = dataset.record.version, rows = dataset.rows, "dataset imported");
    let mut view = json!(DatasetView::from(&dataset));
    if !created {
        view["federation"] = super::federation::republish(&state, &dataset, false).await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/datasets/{}", dataset.record.id);
    Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_like_file_names() {
        for bad in ["../etc/passwd", "a/b.csv", "..", "a\\b.csv", "x\0.csv", ""] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
        assert!(check_file_name("verkehr 2024.csv").is_ok());
        assert!(check_file_name("verkehr..2024.csv").is_ok());
    }
}
