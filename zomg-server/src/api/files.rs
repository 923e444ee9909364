//! File routes: `GET/PUT …/boxes/{name}/files?path=` and `GET …/files/stat?path=`
//! (SPEC §6, §11; wire format in `zomg_sdk::file_types`).
//!
//! Bodies stream both ways: a download is sent as it is read, an upload is written as it
//! arrives, so memory stays flat whatever the size.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_util::io::StreamReader;
use zomg_sdk::{
    BoxName, FileKind, FileStat, ProjectName, TAR_CONTENT_TYPE, UploadResult, parse_mode,
};

use super::{ApiError, AppState, NamedPath};

/// The query of the file routes: `path` (required), and for uploads `mode` and `mtime`.
#[derive(Debug, Default)]
struct FileQuery {
    path: String,
    mode: Option<u32>,
    mtime: Option<i64>,
}

fn file_query(q: &Option<String>) -> Result<FileQuery, ApiError> {
    let mut out = FileQuery::default();
    let mut path = None;
    for (k, v) in url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "path" => path = Some(v.into_owned()),
            "mode" => out.mode = Some(parse_mode(&v).map_err(ApiError::invalid)?),
            "mtime" => {
                out.mtime = Some(
                    v.parse()
                        .map_err(|_| ApiError::invalid(format!("invalid mtime {v:?}")))?,
                );
            }
            _ => {}
        }
    }
    out.path = path.ok_or_else(|| {
        ApiError::invalid("the path query parameter is required (an absolute path in the box)")
    })?;
    Ok(out)
}

/// `GET …/files/stat?path=`: the metadata of a path.
pub(super) async fn stat(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    RawQuery(q): RawQuery,
) -> Result<Json<FileStat>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let q = file_query(&q)?;
    Ok(Json(
        state.service.file_stat(&project, &name, &q.path).await?,
    ))
}

/// `GET …/files?path=`: a file's bytes, or a tar of a directory's contents, with the
/// metadata of the path in `x-zomg-*` headers.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let q = file_query(&q)?;
    let (stat, stream) = state.service.download(&project, &name, &q.path).await?;
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    for (k, v) in stat.to_headers() {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    if stat.kind == FileKind::File {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(stat.size));
    } else {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(TAR_CONTENT_TYPE));
    }
    Ok(response)
}

/// `PUT …/files?path=&mode=&mtime=`: writes the body to the file `path`, or with
/// `content-type: application/x-tar` extracts it into the directory `path`.
pub(super) async fn upload(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadResult>), ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let q = file_query(&q)?;
    let is_tar = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == TAR_CONTENT_TYPE);
    // A body that breaks off (client gone, connection reset) is an interrupted upload.
    let reader = StreamReader::new(
        body.into_data_stream()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e)),
    );
    let svc = &state.service;
    let result = if is_tar {
        svc.upload_tar(&project, &name, &q.path, reader).await?
    } else {
        svc.upload_file(&project, &name, &q.path, q.mode, q.mtime, reader)
            .await?
    };
    Ok((StatusCode::OK, Json(result)))
}
