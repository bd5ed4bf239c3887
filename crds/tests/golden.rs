//! Golden tests of `parse_manifests` + `compile`: every `golden/<case>.yaml` is compiled and
//! `{config, diagnostics}` (or the decode error) is snapshotted as YAML in `snapshots/`.
//!
//! Regenerate after an intended change: `INSTA_UPDATE=always cargo test -p portico-crds --test golden`
//! (or `cargo insta review`); one case: `INSTA_GLOB_FILTER=stage-variables.yaml`. Under
//! `CI=true` insta never writes and a mismatch fails.

use portico_config::{Diagnostic, GatewayConfig};
use portico_crds::{Snapshot, compile, parse_manifests};
use serde::Serialize;

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Compiled {
        config: GatewayConfig,
        diagnostics: Vec<Diagnostic>,
    },
    DecodeError {
        error: String,
    },
}

#[test]
fn golden_cases() {
    insta::glob!("golden/*.yaml", |path| {
        let text = std::fs::read_to_string(path).expect("golden input is readable");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // The first comment line says what the case shows; it becomes the description.
        let description = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .unwrap_or_default()
            .to_string();
        let outcome = match parse_manifests(&name, &text) {
            Ok(resources) => {
                let out = compile(&Snapshot::from_resources(resources));
                out.config
                    .validate()
                    .unwrap_or_else(|e| panic!("{name}: compiled config is invalid: {e}"));
                // The compile is deterministic: a second run gives the same output.
                let text2 = std::fs::read_to_string(path).unwrap();
                let again = compile(&Snapshot::from_resources(
                    parse_manifests(&name, &text2).unwrap(),
                ));
                assert_eq!(again.config, out.config);
                Outcome::Compiled {
                    config: out.config,
                    diagnostics: out.diagnostics,
                }
            }
            Err(e) => Outcome::DecodeError {
                error: e.to_string(),
            },
        };
        insta::with_settings!({
            sort_maps => true,
            description => description,
            omit_expression => true,
        }, {
            insta::assert_yaml_snapshot!(outcome);
        });
    });
}
