//! A FHIR R4 read API over the vault, so FHIR tooling reads it as it reads a FHIR
//! server: the base URL is `http://<api>/fhir`, also `http://<api>/api/v1/vault/fhir`
//! (both behind the node's token).
//!
//! - `GET [base]/metadata`: the CapabilityStatement;
//! - `GET [base]/<Type>/<id>`: read;
//! - `GET [base]/<Type>?patient=<id>` (also `subject`, `_id`): search, a `searchset`
//!   Bundle. Other search parameters are refused (400), not ignored: a filter silently
//!   dropped would hand out more of a patient's records than asked for.
//!
//! Errors are OperationOutcomes.

use std::collections::HashMap;

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::error::VaultError;
use crate::fhir::schema::R4;
use crate::handle::VaultHandle;

const FHIR_JSON: &str = "application/fhir+json";

/// The path the API is mounted at, for the `fullUrl`s of search results.
#[derive(Clone, Copy)]
struct Base(&'static str);

/// The routes, for mounting at `base` (`/fhir`, `/api/v1/vault/fhir`).
pub(crate) fn routes(base: &'static str) -> Router<VaultHandle> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/{rtype}", get(search))
        .route("/{rtype}/{id}", get(read))
        .layer(Extension(Base(base)))
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn outcome(status: StatusCode, code: &str, text: &str) -> Response {
    fhir(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]
        }),
    )
}

fn failed(e: VaultError) -> Response {
    match e {
        VaultError::NoRecord(r) => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("{r} is not in this vault"),
        ),
        other => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &other.to_string(),
        ),
    }
}

/// The answer for a type that is not R4's, if `rtype` is not one.
fn unknown(rtype: &str) -> Option<Response> {
    R4.resource(rtype).is_none().then(|| {
        outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            &format!("{rtype} is not a FHIR R4 resource type"),
        )
    })
}

/// The CapabilityStatement: read and search by patient for every R4 resource type.
pub fn capability_statement() -> Value {
    let mut types: Vec<&str> = R4.resource_types().collect();
    types.sort_unstable();
    let resources: Vec<Value> = types
        .into_iter()
        .map(|t| {
            json!({
                "type": t,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [
                    {"name": "patient", "type": "reference"},
                    {"name": "subject", "type": "reference"},
                    {"name": "_id", "type": "token"}
                ]
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "kind": "instance",
        "software": {"name": "nodus vault", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "A patient-held record vault on a nodus node"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}]
    })
}

async fn metadata() -> Response {
    fhir(StatusCode::OK, &capability_statement())
}

async fn read(State(h): State<VaultHandle>, Path((rtype, id)): Path<(String, String)>) -> Response {
    if let Some(r) = unknown(&rtype) {
        return r;
    }
    match h.show(rtype, id).await {
        Ok(v) => fhir(StatusCode::OK, &v),
        Err(e) => failed(e),
    }
}

fn refers_to(v: &Value, element: &str, patient: &str) -> bool {
    let target = format!("Patient/{patient}");
    v.get(element)
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .is_some_and(|r| r == target || r == patient || r.ends_with(&format!("/{target}")))
}

async fn search(
    State(h): State<VaultHandle>,
    Path(rtype): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Extension(Base(base_path)): Extension<Base>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = unknown(&rtype) {
        return r;
    }
    for k in q.keys() {
        if !matches!(k.as_str(), "patient" | "subject" | "_id" | "_format") {
            return outcome(
                StatusCode::BAD_REQUEST,
                "not-supported",
                &format!(
                    "search parameter {k:?} is not supported here (patient, subject, _id are)"
                ),
            );
        }
    }
    let all = match h.resources(Some(rtype.clone())).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let base = format!("http://{host}{base_path}");
    let entries: Vec<Value> = all
        .into_iter()
        .filter(|v| {
            q.get("patient").is_none_or(|p| {
                refers_to(v, "patient", p)
                    || refers_to(v, "subject", p)
                    || (rtype == "Patient" && v["id"] == p.as_str())
            })
        })
        .filter(|v| q.get("subject").is_none_or(|p| refers_to(v, "subject", p)))
        .filter(|v| q.get("_id").is_none_or(|id| v["id"] == id.as_str()))
        .map(|v| {
            json!({
                "fullUrl": format!("{base}/{rtype}/{}", v["id"].as_str().unwrap_or_default()),
                "resource": v,
                "search": {"mode": "match"}
            })
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len()});
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    fhir(StatusCode::OK, &bundle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_capability_statement_is_valid_r4() {
        crate::fhir::validate::resource(&super::capability_statement(), "CapabilityStatement")
            .unwrap();
    }
}
