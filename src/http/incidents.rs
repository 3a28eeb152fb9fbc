//! `/alerts/incidents/`: incidents newest first, filtered by status and
//! severity; and one incident with its alerts, their history, and its runs.

use super::response::{ApiError, Resp, json};
use super::{App, query_pairs};
use crate::alerts::Severity;
use crate::alerts::incident::IncidentStatus;
use crate::store::IncidentQuery;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

pub fn list(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let query = parse_query(query_pairs(req))?;
    let page = app.store.list_incidents(&query).map_err(ApiError::store)?;
    Ok(json(
        StatusCode::OK,
        &json!({"count": page.incidents.len(), "next_cursor": page.next_cursor, "results": page.incidents}),
    ))
}

/// Reads `status, severity, limit, cursor`; anything else is a 400.
pub fn parse_query(pairs: Vec<(String, String)>) -> Result<IncidentQuery, ApiError> {
    let mut query = IncidentQuery {
        limit: 50,
        ..IncidentQuery::default()
    };
    for (key, value) in pairs {
        let bad = |m: String| ApiError::bad_request("invalid_parameter", m);
        match key.as_str() {
            "status" => {
                query.status =
                    Some(IncidentStatus::parse(&value).ok_or_else(|| {
                        bad(format!("status `{value}` is not one of open, resolved"))
                    })?)
            }
            "severity" => {
                query.severity = Some(
                    // Any case, as `status` and the runs' `status` are.
                    ["critical", "warning", "info"]
                        .contains(&value.to_ascii_lowercase().as_str())
                        .then(|| Severity::parse(&value))
                        .flatten()
                        .ok_or_else(|| {
                            bad(format!(
                                "severity `{value}` is not one of critical, warning, info"
                            ))
                        })?,
                )
            }
            "limit" => query.limit = super::parse_limit(&value)?,
            "cursor" => {
                if !value.starts_with("inc-") {
                    return Err(bad(format!("cursor `{value}` is not an incident id")));
                }
                query.cursor = Some(value)
            }
            other => {
                return Err(bad(format!(
                    "unknown parameter `{other}`; known: status, severity, limit, cursor"
                )));
            }
        }
    }
    Ok(query)
}

pub fn detail(app: &App, id: &str) -> Result<Resp, ApiError> {
    let out = crate::intake::incident_detail(&app.store, id)
        .map_err(ApiError::store)?
        .ok_or_else(|| {
            ApiError::not_found("incident_not_found", format!("no incident with id {id}"))
        })?;
    Ok(json(StatusCode::OK, &out))
}
