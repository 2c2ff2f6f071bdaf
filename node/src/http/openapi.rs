//! Completes the generated OpenAPI document so it is a valid contract (`openapi-spec-validator`
//! and spectral's `spectral:oas` pass it, see tests/tests/openapi.rs) that client generators can
//! use: every tag an operation uses is declared with a description, and every response has the
//! `description` OpenAPI requires.
//!
//! Why fill response descriptions here rather than on each of the ~130 `responses(...)` entries:
//! a status means the same thing on every route of this API (one error type, mapped once in
//! `error.rs`), so one table says it once and a route added later cannot forget it. A response
//! whose annotation gives its own description (a 409 saying which conflict) keeps it.

use utoipa::openapi::path::Operation;
use utoipa::openapi::tag::Tag;
use utoipa::openapi::{OpenApi, RefOr};

/// Tags with what they group, in the order documentation shows them.
const TAGS: &[(&str, &str)] = &[
    (
        "catalog",
        "Categories, products and this store's stock (reads are public; changes are admin-only).",
    ),
    (
        "orders",
        "Placing, reading, cancelling and fulfilling orders; stock is taken when an order is placed.",
    ),
    (
        "payments",
        "Cash and card payments of orders, and refunds. Cards are charged by the hub.",
    ),
    (
        "users",
        "Registration, sign-in (bearer JWTs) and account management.",
    ),
    (
        "notifications",
        "Notifications sent to customers and staff, and webhook deliveries given up on.",
    ),
    (
        "sync",
        "Replication with the hub, as this store sees it (admin).",
    ),
    (
        "operations",
        "Health, readiness, metrics and the store's public status.",
    ),
];

/// Declares the tags and fills in missing response descriptions.
pub fn complete(doc: &mut OpenApi) {
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, about)| {
                let mut tag = Tag::new(*name);
                tag.description = Some((*about).to_string());
                tag
            })
            .collect(),
    );
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            describe_responses(operation);
        }
    }
}

fn describe_responses(operation: &mut Operation) {
    let summary = operation.summary.clone().unwrap_or_default();
    for (status, response) in &mut operation.responses.responses {
        if let RefOr::T(response) = response
            && response.description.trim().is_empty()
        {
            response.description = meaning(status, &summary);
        }
    }
}

/// What a status means on this API (see `error::Error::status`).
fn meaning(status: &str, summary: &str) -> String {
    let fixed = match status {
        "200" | "201" | "204" => {
            let reason = match status {
                "200" => "OK",
                "201" => "Created",
                _ => "No content",
            };
            return match summary.trim() {
                "" => reason.to_string(),
                s => format!("{reason}: {}", s.trim_end_matches('.')),
            };
        }
        "400" => {
            "The request could not be read (malformed JSON, query string or header); problem JSON naming the field"
        }
        "401" => "Missing, expired or invalid credentials (problem JSON)",
        "403" => "Signed in, but not allowed to do this, e.g. not an admin (problem JSON)",
        "404" => "No such record, or one the caller may not see (problem JSON)",
        "409" => "The request conflicts with the current state (problem JSON)",
        "413" => "The request body is larger than the limit (problem JSON)",
        "415" => "The request body is not application/json (problem JSON)",
        "422" => "Well-formed but invalid; problem JSON naming the field",
        "503" => {
            "Unavailable right now (database, storage or re-sync); nothing was kept, retry later (problem JSON)"
        }
        "500" => "Internal error; details are logged, not returned (problem JSON)",
        _ => "See the problem document",
    };
    fixed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_descriptions_name_the_operation_and_errors_their_meaning() {
        assert_eq!(meaning("200", "One product."), "OK: One product");
        assert_eq!(meaning("201", ""), "Created");
        assert!(meaning("422", "x").contains("naming the field"));
        assert!(!meaning("418", "x").is_empty());
    }
}
