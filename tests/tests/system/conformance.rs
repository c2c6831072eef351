//! Schemathesis (PyPI, installed by `deploy/dev install_missing`) against the live system: it
//! reads the OpenAPI document the gateway serves and sends generated requests, valid and
//! invalid, through the gateway to every documented operation, checking each answer against
//! the document: never a 5xx, only documented status codes, content types, bodies and headers.
//!
//! The run is reproducible (a fixed seed) so that a red run can be replayed; `SCHEMATHESIS_SEED`
//! picks another seed, `SCHEMATHESIS_EXAMPLES` another number of cases per operation.

use std::process::Command;

use crate::stack::{Options, Stack};

/// The checks the document must pass. `allow_header_conformance` and `unsupported_method`
/// also send undocumented methods and want a 405 that names the allowed ones in `Allow`.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,\
                      allow_header_conformance,unsupported_method";

#[tokio::test]
async fn every_answer_through_the_gateway_conforms_to_the_openapi_document() {
    // The business limits would turn most generated requests into 429s after a few: raise
    // them, so the cases reach the rules they are meant to probe (429 is documented anyway).
    let stack = Stack::start_with(
        Options::default()
            .env("COUNT_LIMIT_PER_IP_PER_MINUTE", "100000000")
            .env("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "100000000")
            .env("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", "100000000"),
    )
    .await;
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "2000".into());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into());
    let report = tempfile::tempdir().expect("a temp dir");
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(stack.url("/openapi.json"))
        .args(["--url", &stack.url("")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples, "--seed", &seed])
        // One worker: Python 3.11 before 3.11.8 can fail parsing in two threads at once
        // ("AST constructor recursion depth mismatch"), a CPython bug, not a finding.
        .args(["--workers", "1", "--no-shrink"])
        .args(["--request-timeout", "10"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache (`.schemathesis/`) goes there too, not into the checkout.
        .current_dir(report.path())
        // No colours or progress animation in a captured log.
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs (deploy/dev install_missing installs it from PyPI)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found non-conforming answers (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    println!("{stdout}");
}
