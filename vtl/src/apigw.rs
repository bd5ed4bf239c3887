//! API Gateway's template variables: `$input`, `$util`, `$context`,
//! `$stageVariables`, and the `requestOverride`/`responseOverride` writes.
//!
//! Entry points: [`RequestData`] (what the proxy hands in), [`Rendered`] and
//! [`Overrides`] (what comes back). The renderer calls [`bind`] before a
//! render, [`input_method`]/[`util_method`] for `$input.x(..)`/`$util.x(..)`,
//! and [`collect_overrides`] after it.
//!
//! ```text
//! RequestData --bind--> $input (payload parsed lazily, once)
//!                       $context (JSON -> maps; requestOverride/responseOverride added)
//!                       $stageVariables, $util
//! $context.requestOverride.* / responseOverride.* --collect_overrides--> Overrides
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::VtlError;
use crate::ast::Pos;
use crate::jsonpath;
use crate::methods::string_map;
use crate::render::{Renderer, write_error};
use crate::value::{ListKind, Sink, Value};

/// The request a template renders against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestData {
    /// The payload (`$input.body`); for a response template, the integration's body.
    pub body: String,
    /// Path parameters by name.
    pub path_params: BTreeMap<String, String>,
    /// Query string parameters by name.
    pub query_params: BTreeMap<String, String>,
    /// Headers by name, as sent.
    pub headers: BTreeMap<String, String>,
    /// `$context`, as JSON (`{"requestId": .., "identity": {..}, ..}`).
    pub context: serde_json::Map<String, serde_json::Value>,
    /// `$stageVariables`.
    pub stage_variables: BTreeMap<String, String>,
}

/// What a render produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered text.
    pub body: String,
    /// Overrides the template set through `$context.*Override`.
    pub overrides: Overrides,
}

/// Values written to `$context.requestOverride.*` and `$context.responseOverride.*`.
/// A list value gives a multi-value header or query parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `requestOverride.header.<name>`.
    pub request_headers: BTreeMap<String, Vec<String>>,
    /// `requestOverride.path.<name>`.
    pub request_path: BTreeMap<String, String>,
    /// `requestOverride.querystring.<name>`.
    pub request_querystring: BTreeMap<String, Vec<String>>,
    /// `responseOverride.header.<name>`.
    pub response_headers: BTreeMap<String, Vec<String>>,
    /// `responseOverride.status`.
    pub response_status: Option<u16>,
}

impl Overrides {
    /// True when the template set no override.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }
}

/// Headers `$input.params` does not show (recorded against AWS).
const HIDDEN_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-md5",
    "expect",
    "max-forwards",
    "proxy-authenticate",
    "server",
    "te",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "www-authenticate",
];

fn hidden(name: &str) -> bool {
    HIDDEN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Binds `$input`, `$util`, `$context` and `$stageVariables`.
pub fn bind(r: &mut Renderer<'_>) {
    let req = r.req;
    let ctx = match json_to_value(r, &serde_json::Value::Object(req.context.clone())) {
        Value::Map(m) => m,
        _ => return,
    };
    {
        // Authorizer context values are stringified (`numKey: 1` -> "1");
        // `claims` stays a map.
        let authorizer = ctx.borrow().entries.get("authorizer").cloned();
        if let Some(Value::Map(a)) = authorizer
            && let Ok(mut a) = a.try_borrow_mut()
        {
            for (k, v) in a.entries.iter_mut() {
                if k != "claims" && matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_)) {
                    let s = v.to_display(64).unwrap_or_default();
                    *v = Value::from(s);
                }
            }
        }
    }
    let ensure = |r: &mut Renderer<'_>, parent: &str, children: &[&str]| {
        let existing = ctx.borrow().entries.get(parent).cloned();
        let map = match existing {
            Some(Value::Map(m)) => m,
            _ => {
                let Value::Map(m) = r.heap.map(IndexMap::new()) else {
                    return;
                };
                ctx.borrow_mut()
                    .entries
                    .insert(parent.to_string(), Value::Map(m.clone()));
                m
            }
        };
        for c in children {
            let missing = !matches!(map.borrow().entries.get(*c), Some(Value::Map(_)));
            if missing {
                let v = r.heap.map(IndexMap::new());
                map.borrow_mut().entries.insert((*c).to_string(), v);
            }
        }
    };
    ensure(r, "requestOverride", &["header", "path", "querystring"]);
    ensure(r, "responseOverride", &["header"]);
    let stage = string_map(r, &req.stage_variables);
    r.set_var("input", Value::Input);
    r.set_var("util", Value::Util);
    r.set_var("stageVariables", stage);
    r.set_var("context", Value::Map(ctx.clone()));
    r.context = Some(ctx);
}

/// Converts JSON into values: objects become maps, arrays JSON lists.
pub fn json_to_value(r: &mut Renderer<'_>, j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => {
            let items = a.iter().map(|x| json_to_value(r, x)).collect();
            r.heap.list(items, ListKind::Json)
        }
        serde_json::Value::Object(o) => {
            let entries = o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(r, v)))
                .collect();
            r.heap.map(entries)
        }
    }
}

/// Parses JSON text the way the payload is parsed: valid JSON as is, text
/// that does not start like JSON as one string (json-smart's permissive
/// mode), an empty body as an empty object.
fn parse_permissive(r: &mut Renderer<'_>, text: &str) -> Result<Value, VtlError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(r.heap.map(IndexMap::new()));
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(j) => Ok(json_to_value(r, &j)),
        Err(e) if t.starts_with('{') || t.starts_with('[') => Err(VtlError::InvalidPayload {
            message: e.to_string(),
        }),
        Err(_) => Ok(Value::from(text)),
    }
}

fn payload(r: &mut Renderer<'_>) -> Result<Value, VtlError> {
    if let Some(p) = &r.payload {
        return p.clone();
    }
    let body = r.req.body.as_str();
    let p = parse_permissive(r, body);
    r.payload = Some(p.clone());
    p
}

fn string_arg(r: &Renderer<'_>, args: &[Value], pos: Pos) -> Result<Option<String>, VtlError> {
    match args.first() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.to_string())),
        Some(v) => r.display(v, pos).map(Some),
    }
}

fn select(r: &mut Renderer<'_>, path: &str, pos: Pos) -> Result<Option<Value>, VtlError> {
    let root = payload(r)?;
    let p = jsonpath::parse(path).map_err(|message| VtlError::Runtime { pos, message })?;
    let mut found = Vec::new();
    let mut budget: u64 = 1_000_000;
    jsonpath::select(&root, &p, &mut found, &mut budget);
    r.step(1_000_000 - budget, pos)?;
    if p.is_definite() {
        Ok(found.into_iter().next())
    } else {
        Ok(Some(r.heap.list(found, ListKind::Json)))
    }
}

/// `$input.body`, `$input.json(p)`, `$input.path(p)`, `$input.params(..)`.
pub fn input_method(
    r: &mut Renderer<'_>,
    name: &str,
    args: &[Value],
    pos: Pos,
) -> Result<Value, VtlError> {
    match (name, args.len()) {
        ("getBody", 0) | ("body", 0) => {
            if r.req.body.is_empty() {
                Ok(Value::from("{}"))
            } else {
                r.string(r.req.body.clone(), pos)
            }
        }
        ("json", 1) => {
            let path = string_arg(r, args, pos)?.unwrap_or_else(|| "$".into());
            match select(r, &path, pos)? {
                // A missing path renders as nothing [?]: see README.
                None => Ok(Value::from("")),
                Some(v) => {
                    let mut out = String::new();
                    let limit = r.limit();
                    v.write_json(
                        &mut Sink {
                            out: &mut out,
                            limit,
                        },
                        0,
                    )
                    .map_err(|e| write_error(e, pos))?;
                    Ok(Value::Str(Arc::from(out)))
                }
            }
        }
        ("path", 1) => {
            let path = string_arg(r, args, pos)?.unwrap_or_else(|| "$".into());
            Ok(select(r, &path, pos)?.unwrap_or_default())
        }
        ("params", 0) => {
            if let Some(p) = &r.params {
                return Ok(p.clone());
            }
            let req = r.req;
            let path = string_map(r, &req.path_params);
            let query = string_map(r, &req.query_params);
            let headers = string_map(r, req.headers.iter().filter(|(k, _)| !hidden(k)));
            let mut m = IndexMap::new();
            m.insert("path".to_string(), path);
            m.insert("querystring".to_string(), query);
            m.insert("header".to_string(), headers);
            let v = r.heap.map(m);
            r.params = Some(v.clone());
            Ok(v)
        }
        ("params", 1) => {
            let Some(name) = string_arg(r, args, pos)? else {
                return Ok(Value::from(""));
            };
            let req = r.req;
            let found = req
                .path_params
                .get(&name)
                .or_else(|| req.query_params.get(&name))
                .or_else(|| {
                    if hidden(&name) {
                        return None;
                    }
                    req.headers.get(&name).or_else(|| {
                        req.headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                            .map(|(_, v)| v)
                    })
                });
            Ok(Value::from(found.map_or("", String::as_str)))
        }
        _ => Ok(Value::Null),
    }
}

/// `$util.escapeJavaScript/parseJson/urlEncode/urlDecode/base64Encode/base64Decode`.
pub fn util_method(
    r: &mut Renderer<'_>,
    name: &str,
    args: &[Value],
    pos: Pos,
) -> Result<Value, VtlError> {
    if args.len() != 1 {
        return Ok(Value::Null);
    }
    let Some(s) = string_arg(r, args, pos)? else {
        // Null in, null out (renders as ""); parseJson(null) likewise.
        return Ok(Value::Null);
    };
    let runtime = |message: String| VtlError::Runtime { pos, message };
    match name {
        "escapeJavaScript" => r.string(escape_javascript(&s), pos),
        "parseJson" => {
            let j: serde_json::Value = serde_json::from_str(s.trim())
                .map_err(|e| runtime(format!("$util.parseJson: invalid JSON: {e}")))?;
            Ok(json_to_value(r, &j))
        }
        "urlEncode" => r.string(url_encode(&s), pos),
        "urlDecode" => r.string(url_decode(&s).map_err(runtime)?, pos),
        "base64Encode" => r.string(base64_encode(s.as_bytes()), pos),
        "base64Decode" => {
            let bytes = base64_decode(&s).map_err(runtime)?;
            r.string(String::from_utf8_lossy(&bytes).into_owned(), pos)
        }
        _ => Ok(Value::Null),
    }
}

/// Reads the override maps back after a render.
pub fn collect_overrides(r: &Renderer<'_>) -> Result<Overrides, VtlError> {
    let mut o = Overrides::default();
    let Some(ctx) = &r.context else {
        return Ok(o);
    };
    let get = |m: &Value, k: &str| match m {
        Value::Map(m) => m
            .try_borrow()
            .ok()
            .and_then(|m| m.entries.get(k).cloned())
            .unwrap_or_default(),
        _ => Value::Null,
    };
    let ctx = Value::Map(ctx.clone());
    let req = get(&ctx, "requestOverride");
    let resp = get(&ctx, "responseOverride");
    let pos = Pos::default();
    let multi = |v: &Value| -> Result<BTreeMap<String, Vec<String>>, VtlError> {
        let mut out = BTreeMap::new();
        if let Value::Map(m) = v
            && let Ok(m) = m.try_borrow()
        {
            for (k, v) in &m.entries {
                let vals = match v {
                    Value::Null => continue,
                    Value::List(l) => l
                        .try_borrow()
                        .map(|l| {
                            l.items
                                .iter()
                                .map(|x| r.display(x, pos))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .unwrap_or_else(|_| Ok(Vec::new()))?,
                    other => vec![r.display(other, pos)?],
                };
                out.insert(k.clone(), vals);
            }
        }
        Ok(out)
    };
    o.request_headers = multi(&get(&req, "header"))?;
    o.request_querystring = multi(&get(&req, "querystring"))?;
    o.request_path = multi(&get(&req, "path"))?
        .into_iter()
        .filter_map(|(k, v)| v.into_iter().next_back().map(|v| (k, v)))
        .collect();
    o.response_headers = multi(&get(&resp, "header"))?;
    o.response_status = match get(&resp, "status") {
        Value::Null => None,
        v => {
            let s = r.display(&v, pos)?;
            match s.trim().parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => Some(code),
                _ => {
                    return Err(VtlError::Runtime {
                        pos,
                        message: format!("invalid $context.responseOverride.status {s:?}"),
                    });
                }
            }
        }
    };
    Ok(o)
}

/// Commons Lang 2 `StringEscapeUtils.escapeJavaScript`.
pub fn escape_javascript(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for u in s.encode_utf16() {
        match u {
            0x22 => out.push_str("\\\""),
            0x27 => out.push_str("\\'"),
            0x5c => out.push_str("\\\\"),
            0x2f => out.push_str("\\/"),
            0x08 => out.push_str("\\b"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            0x0d => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(u as u8)),
            _ => out.push_str(&format!("\\u{u:04X}")),
        }
    }
    out
}

/// `java.net.URLEncoder.encode(s, "UTF-8")`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `java.net.URLDecoder.decode(s, "UTF-8")`.
pub fn url_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        "URLDecoder: illegal hex characters in escape (%) pattern".to_string()
                    })?;
                out.push(hex);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                let idx = ((n >> (18 - 6 * k)) & 63) as usize;
                out.push(char::from(B64.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 decoding (padding optional, no whitespace).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64
            .iter()
            .position(|b| *b == c)
            .ok_or_else(|| format!("illegal base64 character {:?}", char::from(c)))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if bits >= 6 {
        return Err("truncated base64 input".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_javascript_matches_commons_lang() {
        assert_eq!(
            escape_javascript("it's \"x\"\\/\n\té\u{1F600}"),
            "it\\'s \\\"x\\\"\\\\\\/\\n\\t\\u00E9\\uD83D\\uDE00"
        );
    }

    #[test]
    fn url_codec_matches_java() {
        assert_eq!(url_encode("a b&c=d/é*~"), "a+b%26c%3Dd%2F%C3%A9*%7E");
        assert_eq!(url_decode("a+b%26c%3Dd%2F%C3%A9").unwrap(), "a b&c=d/é");
        assert!(url_decode("%zz").is_err());
        assert!(url_decode("%4").is_err());
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "{\"a\":1}"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z").is_err());
    }
}
