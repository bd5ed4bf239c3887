//! Every folder under `examples/` compiles with zero diagnostics: the
//! examples are documentation, and documentation that warns is wrong.

use portico_crds::{Snapshot, compile, parse_manifests};
use std::path::Path;

#[test]
fn every_example_compiles_without_diagnostics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no example folders under {}",
        root.display()
    );
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        let mut resources = Vec::new();
        for f in &files {
            let origin = f.strip_prefix(root.parent().unwrap()).unwrap_or(f);
            let text = std::fs::read_to_string(f).unwrap();
            resources.extend(
                parse_manifests(&origin.display().to_string(), &text)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let out = compile(&Snapshot::from_resources(resources));
        let diags: Vec<String> = out.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            diags.is_empty(),
            "{} has diagnostics:\n{}",
            dir.display(),
            diags.join("\n")
        );
        out.config.validate().unwrap();
        assert!(
            !out.config.stages.is_empty(),
            "{} serves no stage",
            dir.display()
        );
    }
}

#[test]
fn mobile_backend_serves_the_documented_routes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mobile-backend");
    let mut resources = Vec::new();
    for f in [
        "restapi.yaml",
        "restapi-v2.yaml",
        "stages.yaml",
        "authorizer.yaml",
        "usage-plan.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        resources.extend(parse_manifests(f, &text).unwrap());
    }
    let out = compile(&Snapshot::from_resources(resources));
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let ids: Vec<&str> = out.config.apis.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "restapi/default/mobile-backend",
            "restapi/default/mobile-backend-v2"
        ]
    );
    let api = &out.config.apis[0];
    // The JWT authorizer guards every method but login and signup; the API key only /content*.
    let guarded = |api: &portico_config::Api| -> Vec<(String, Option<String>, bool)> {
        api.routes
            .iter()
            .map(|r| {
                (
                    r.route_key.clone(),
                    r.authorization.as_ref().map(|a| a.authorizer_id.clone()),
                    r.api_key_required,
                )
            })
            .collect()
    };
    // Version 2 (the prod canary) guards the same methods alike: a caller on the canary
    // needs what a caller on the base needs.
    assert_eq!(guarded(api), guarded(&out.config.apis[1]));
    let base = guarded(api);
    let jwt = Some("authorizer/default/mobile-users");
    assert_eq!(
        base.iter()
            .map(|(k, a, key)| (k.as_str(), a.as_deref(), *key))
            .collect::<Vec<_>>(),
        [
            ("POST /auth/login", None, false),
            ("POST /auth/signup", None, false),
            ("GET /comments", jwt, false),
            ("POST /comments", jwt, false),
            ("GET /content", jwt, true),
            ("GET /content/{id}", jwt, true),
            ("GET /profile", jwt, false),
            ("PUT /profile", jwt, false),
        ]
    );
    assert_eq!(out.config.usage_plans.len(), 1);
    assert_eq!(out.config.api_keys.len(), 1);
    let keys: Vec<&str> = api.routes.iter().map(|r| r.route_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "POST /auth/login",
            "POST /auth/signup",
            "GET /comments",
            "POST /comments",
            "GET /content",
            "GET /content/{id}",
            "GET /profile",
            "PUT /profile",
        ]
    );
    let stages: Vec<(&str, &str, &str)> = out
        .config
        .stages
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.base_path.as_str(),
                s.variables["backend"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("dev", "/dev", "127.0.0.1:9000"),
            ("prod", "/prod", "127.0.0.1:9001")
        ]
    );
    // prod sends 10% to version 2, with its own variables; `always` / `never` pick the side
    // behind the authorizer.
    let canary = out.config.stages[1]
        .canary
        .as_ref()
        .expect("prod has a canary");
    assert_eq!(canary.api_id, "restapi/default/mobile-backend-v2");
    assert_eq!(canary.percent_traffic, 10.0);
    assert_eq!(canary.variables, out.config.stages[1].variables);
    let force = canary.force_header.as_ref().expect("a force header");
    assert_eq!(
        (force.name.as_str(), force.require_authorizer),
        ("x-portico-canary", true)
    );
    assert!(out.config.stages[0].canary.is_none());
    // prod caches GET /content/{id} only (60 s, keyed by item and caller); dev has no cache.
    let cache = out.config.stages[1]
        .cache
        .as_ref()
        .expect("prod has a cache");
    let cached: Vec<&str> = api
        .routes
        .iter()
        .filter(|r| cache.method(&r.route_key, &r.http_method).is_some())
        .map(|r| r.route_key.as_str())
        .collect();
    assert_eq!(cached, ["GET /content/{id}"]);
    assert_eq!(cache.methods["GET /content/{id}"].ttl_seconds, 60);
    assert!(out.config.stages[0].cache.is_none());
}
