//! The checked-in spec is the one the code generates.

use std::path::Path;

#[test]
fn checked_in_spec_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = format!("{}\n", comnestor_server::intake::openapi_json());
    assert!(
        checked_in == generated,
        "openapi/openapi.json is stale. Regenerate it from the repository root with:\n\n    \
         cargo run -q -p comnestor-server --bin comnestor -- openapi > openapi/openapi.json\n"
    );
}
