//! Bundles and OperationOutcomes.

use chrono::Utc;
use serde_json::{Value, json};

use super::{FhirBase, instant};

/// One `Bundle.entry` for a resource, with its absolute URL and, in a
/// searchset, whether it matched the search or came along (`include`).
pub fn entry(base: &FhirBase, resource: Value, search_mode: Option<&str>) -> Value {
    let full_url = base.full_url(
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default(),
    );
    let mut entry = json!({ "fullUrl": full_url, "resource": resource });
    if let Some(mode) = search_mode {
        entry["search"] = json!({ "mode": mode });
    }
    entry
}

/// A searchset Bundle: the matches of one page, the total when counted,
/// and `self`/`next`/`previous` links (absolute URLs).
pub fn searchset(
    base: &FhirBase,
    matches: Vec<Value>,
    total: Option<i64>,
    links: &[(&str, String)],
) -> Value {
    let entries: Vec<Value> = matches
        .into_iter()
        .map(|resource| entry(base, resource, Some("match")))
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "lastUpdated": instant(Utc::now()) },
        "type": "searchset",
        "link": links.iter().map(|(relation, url)| json!({ "relation": relation, "url": url })).collect::<Vec<_>>(),
        "entry": entries
    });
    if let Some(total) = total {
        bundle["total"] = json!(total);
    }
    bundle
}

/// An OperationOutcome with one issue. `code` is FHIR's IssueType
/// (`invalid`, `not-found`, `forbidden`, `conflict`, ...); `expression`
/// names the element or parameter at fault.
pub fn operation_outcome(
    severity: &str,
    code: &str,
    diagnostics: &str,
    expression: Option<&str>,
) -> Value {
    let mut issue = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}
