//! `portico-proxy vtl`: renders a mapping template offline, the way the proxy renders it
//! for a request (API Gateway's console "test" as a command).
//!
//! ```text
//!  --template FILE  --body FILE  --input '{"params": {"path": {}, "querystring": {}, "header": {}},
//!                                        "context": {...}, "stageVariables": {...}}'
//!    -> stdout: the rendered body; stderr: the $context.*Override values, if any
//!    -> error: stderr `FILE:line:col: message`, exit status 1
//! ```

use crate::cli::VtlArgs;
use portico_vtl::{RequestData, Template};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;

/// Runs the command; never panics on any input.
pub fn main(args: &VtlArgs) -> ExitCode {
    match render(args) {
        Ok((body, overrides)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(body.as_bytes());
            let _ = out.flush();
            if let Some(o) = overrides {
                let _ = writeln!(std::io::stderr(), "overrides: {o}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            ExitCode::from(1)
        }
    }
}

/// The request a template renders against, from `--body` and `--input`.
pub fn request_data(body: String, input: Option<&str>) -> Result<RequestData, String> {
    let mut data = RequestData {
        body,
        ..Default::default()
    };
    let Some(input) = input else { return Ok(data) };
    let v: serde_json::Value =
        serde_json::from_str(input).map_err(|e| format!("--input is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("--input must be a JSON object")?;
    let strings =
        |v: Option<&serde_json::Value>, what: &str| -> Result<BTreeMap<String, String>, String> {
            match v {
                None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
                Some(serde_json::Value::Object(m)) => Ok(m
                    .iter()
                    .map(|(k, v)| {
                        let s = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect()),
                Some(_) => Err(format!("--input: {what} must be an object")),
            }
        };
    let params = obj.get("params");
    data.path_params = strings(params.and_then(|p| p.get("path")), "params.path")?;
    data.query_params = strings(
        params.and_then(|p| p.get("querystring")),
        "params.querystring",
    )?;
    data.headers = strings(params.and_then(|p| p.get("header")), "params.header")?;
    data.stage_variables = strings(obj.get("stageVariables"), "stageVariables")?;
    match obj.get("context") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => data.context = m.clone(),
        Some(_) => return Err("--input: context must be an object".into()),
    }
    Ok(data)
}

fn render(args: &VtlArgs) -> Result<(String, Option<String>), String> {
    let name = args.template.display();
    let src =
        std::fs::read_to_string(&args.template).map_err(|e| format!("cannot read {name}: {e}"))?;
    let body = match &args.body {
        None => String::new(),
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
    };
    let data = request_data(body, args.input.as_deref())?;
    let tpl = Template::parse(&src).map_err(|e| format!("{name}:{e}"))?;
    let rendered = tpl.render(&data).map_err(|e| match e.pos() {
        Some(_) => format!("{name}:{e}"),
        None => format!("{name}: {e}"),
    })?;
    let o = &rendered.overrides;
    let overrides = (!o.is_empty()).then(|| {
        serde_json::json!({
            "requestOverride": {
                "header": o.request_headers,
                "path": o.request_path,
                "querystring": o.request_querystring,
            },
            "responseOverride": {
                "header": o.response_headers,
                "status": o.response_status,
            },
        })
        .to_string()
    });
    Ok((rendered.body, overrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_json_fills_params_context_and_stage_variables() {
        let d = request_data(
            "{}".into(),
            Some(r#"{"params": {"path": {"id": 7}, "querystring": {"q": "x"}, "header": {"H": "v"}}, "context": {"stage": "dev"}, "stageVariables": {"a": "b"}}"#),
        )
        .unwrap();
        assert_eq!(d.path_params["id"], "7");
        assert_eq!(d.query_params["q"], "x");
        assert_eq!(d.headers["H"], "v");
        assert_eq!(d.context["stage"], "dev");
        assert_eq!(d.stage_variables["a"], "b");
        assert!(request_data(String::new(), Some("[]")).is_err());
        assert!(request_data(String::new(), Some(r#"{"params": {"path": 1}}"#)).is_err());
    }
}
