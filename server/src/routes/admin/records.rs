//! `/admin/request-records` (JSON) and `/admin/request-records.csv`: the newest requests of
//! every key, filtered by time, key, account, model and status (`crate::admin::records`).

use app::domain::RecordQuery;
use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{AdminError, AdminUser};
use crate::{admin::records, state::AppState};

pub async fn list(
    _: AdminUser,
    State(state): State<AppState>,
    Query(q): Query<RecordQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    Ok(Json(
        json!({"success": true, "data": records::page(&state, &q).await?}),
    ))
}

pub async fn csv(
    _: AdminUser,
    State(state): State<AppState>,
    Query(q): Query<RecordQuery>,
) -> Result<Response, AdminError> {
    let rows = records::matching(&state, &q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"request-records.csv\"",
            ),
        ],
        records::csv(rows),
    )
        .into_response())
}
