//! The generated CRDs are structural (a real kube-apiserver accepts them) and the chart's copy
//! is up to date.

use portico_crds::{all_crds, all_crds_yaml};
use serde_json::Value;

/// Formats kube-apiserver understands; anything else is silently ignored there, so a typo
/// would hide a validation we believe we have.
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "password",
    "uri",
    "hostname",
    "email",
    "uuid",
];

fn walk(path: &str, node: &Value, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: schema node is not an object: {node}"));
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let ty = obj.get("type").and_then(Value::as_str);
    if ty.is_none() && !preserve && !int_or_string {
        errors.push(format!(
            "{path}: no type (and not x-kubernetes-preserve-unknown-fields)"
        ));
    }
    for forbidden in [
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
        "definitions",
        "$defs",
    ] {
        if obj.contains_key(forbidden) {
            errors.push(format!(
                "{path}: uses {forbidden}, which is not structural here"
            ));
        }
    }
    if obj.contains_key("nullable") && ty.is_none() {
        errors.push(format!("{path}: nullable without type"));
    }
    if let Some(f) = obj.get("format").and_then(Value::as_str)
        && !KNOWN_FORMATS.contains(&f)
    {
        errors.push(format!(
            "{path}: format {f:?} is not one kube-apiserver knows"
        ));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    match ty {
        Some("object") => {
            let props = obj.get("properties").and_then(Value::as_object);
            let extra = obj.get("additionalProperties");
            if props.is_none() && extra.is_none() && !preserve {
                errors.push(format!(
                    "{path}: object without properties, additionalProperties or preserve-unknown-fields (everything would be pruned)"
                ));
            }
            if let Some(extra) = extra {
                if extra.is_boolean() {
                    errors.push(format!(
                        "{path}: additionalProperties must be a typed schema"
                    ));
                } else {
                    walk(&format!("{path}.additionalProperties"), extra, errors);
                }
            }
            if let Some(req) = obj.get("required").and_then(Value::as_array) {
                for r in req {
                    let r = r.as_str().unwrap_or_default();
                    if props.is_none_or(|p| !p.contains_key(r)) {
                        errors.push(format!("{path}: required {r:?} is not a property"));
                    }
                }
            }
            for (k, v) in props.into_iter().flatten() {
                walk(&format!("{path}.{k}"), v, errors);
            }
        }
        Some("array") => match obj.get("items") {
            Some(items) => walk(&format!("{path}[]"), items, errors),
            None => errors.push(format!("{path}: array without items")),
        },
        Some("string") | Some("integer") | Some("number") | Some("boolean") | None => {
            if let Some(values) = obj.get("enum").and_then(Value::as_array) {
                let nullable = obj.get("nullable") == Some(&Value::Bool(true));
                for v in values {
                    if v.is_null() && !nullable {
                        errors.push(format!("{path}: enum contains null but is not nullable"));
                    }
                }
            }
        }
        Some(other) => errors.push(format!("{path}: unknown type {other:?}")),
    }
}

#[test]
fn every_crd_schema_is_structural() {
    let crds = all_crds();
    assert_eq!(crds.len(), 5);
    let mut errors = Vec::new();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert_eq!(crd.spec.group, "portico.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{name} has no shortname"
        );
        for v in &crd.spec.versions {
            assert_eq!(v.name, "v1alpha1");
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("every version has a schema");
            let json = serde_json::to_value(schema).unwrap();
            walk(&name, &json, &mut errors);
            let spec = &json["properties"]["spec"];
            assert_eq!(spec["type"], "object", "{name}: spec is an object");
            assert!(
                json["properties"]["status"]["properties"]["conditions"].is_object(),
                "{name}: status.conditions"
            );
            assert!(
                v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
                "{name}: status subresource"
            );
        }
    }
    assert!(
        errors.is_empty(),
        "non-structural schema nodes:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_field_has_a_description() {
    fn walk_desc(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                // apiVersion/kind/metadata are described by Kubernetes itself.
                if v.get("description").is_none()
                    && !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    missing.push(p.clone());
                }
                walk_desc(&p, v, missing);
            }
        }
        for child in ["items", "additionalProperties"] {
            if let Some(c) = node.get(child).filter(|c| c.is_object()) {
                walk_desc(&format!("{path}.{child}"), c, missing);
            }
        }
    }
    let mut missing = Vec::new();
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk_desc(&name, &schema["openAPIV3Schema"], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (add a ///):\n{}",
        missing.join("\n")
    );
}

#[test]
fn printer_columns_make_kubectl_get_useful() {
    let crds = all_crds();
    let cols = |kind: &str| -> Vec<String> {
        crds.iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap()
            .spec
            .versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(cols("RestApi"), ["Protocol", "Accepted", "Age"]);
    assert_eq!(
        cols("Stage"),
        [
            "API", "Stage", "BasePath", "URL", "Canary", "Canary%", "Ready", "Age"
        ]
    );
}

#[test]
fn chart_crds_match_the_generated_output() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/portico/crds/portico.dev.yaml"
    );
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == all_crds_yaml(),
        "charts/portico/crds/portico.dev.yaml is stale; regenerate it with\n    \
         cargo run -p portico-operator -- crds > charts/portico/crds/portico.dev.yaml"
    );
}

#[test]
fn crd_yaml_is_five_documents_that_parse_back() {
    use serde::Deserialize;
    let text = all_crds_yaml();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "restapis.portico.dev",
            "stages.portico.dev",
            "usageplans.portico.dev",
            "apikeys.portico.dev",
            "authorizers.portico.dev"
        ]
    );
}
