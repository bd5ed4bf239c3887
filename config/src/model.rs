//! Request models: the one way a model's JSON Schema becomes a validator, shared by the
//! compiler (which refuses a model the proxy could not build) and the proxy (which builds
//! them at `Runtime` build), so the two cannot disagree.

use crate::document::model_ref;
use serde_json::Value;
use std::collections::BTreeMap;

/// A draft-04 validator for `schema`, with every model in `models` registered under its
/// canonical URI ([`model_ref`]) so that `$ref`s between models resolve; offline: nothing
/// is ever fetched.
pub fn validator(
    models: &BTreeMap<String, Value>,
    schema: &Value,
) -> Result<jsonschema::Validator, String> {
    let resources = models.iter().map(|(n, s)| {
        (
            model_ref(n),
            jsonschema::Draft::Draft4.create_resource(s.clone()),
        )
    });
    let registry = jsonschema::Registry::new()
        .draft(jsonschema::Draft::Draft4)
        .retrieve_known_draft_meta_schemas(false)
        .extend(resources)
        .and_then(|r| r.prepare())
        .map_err(|e| e.to_string())?;
    jsonschema::draft4::options()
        .offline()
        .with_registry(&registry)
        .build(schema)
        .map_err(|e| e.to_string())
}
