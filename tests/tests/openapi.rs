//! `/openapi.json` is a valid OpenAPI document that client generators can use: a real node's
//! document passes `openapi-spec-validator` (PyPI, installed by `.ci/run`), and every operation
//! is described, tagged with a declared tag, and has a described answer for each status.

use std::collections::HashSet;
use std::process::Command;

use edgecart_e2e::TestNode;
use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_validates() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start("openapi", &dir.path().join("node"), None);
    let text = reqwest::get(node.url("/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();

    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("running python3 (openapi-spec-validator is installed by .ci/run)");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects /openapi.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What spectral's `spectral:oas` also asks, checked here without it.
    let doc: Value = serde_json::from_str(&text).unwrap();
    let declared: HashSet<&str> = doc["tags"]
        .as_array()
        .expect("top-level tags")
        .iter()
        .map(|t| {
            assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()));
            t["name"].as_str().unwrap()
        })
        .collect();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let at = format!("{} {path}", method.to_uppercase());
            let described = |k: &str| op[k].as_str().is_some_and(|s| !s.trim().is_empty());
            assert!(
                described("summary") && described("description"),
                "{at} is not described"
            );
            let tags = op["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{at} has no tag"));
            for tag in tags {
                assert!(
                    declared.contains(tag.as_str().unwrap()),
                    "{at}: undeclared tag {tag}"
                );
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{at} {status} has no description"
                );
            }
        }
    }
    assert!(operations >= 30, "only {operations} operations");
    assert!(
        doc["paths"]["/v1/status"]["get"].is_object(),
        "the public status endpoint is in the contract"
    );
}
