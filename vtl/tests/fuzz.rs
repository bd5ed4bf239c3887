//! Property tests standing in for a fuzz target: arbitrary strings and token
//! soups go through `Template::parse` and `render`; nothing may panic, and the
//! output must stay within the configured limit. Case counts are fixed so a
//! plain `cargo test -p portico-vtl` stays fast in CI.

use std::collections::BTreeMap;

use portico_vtl::{Limits, Options, RequestData, Template};
use proptest::prelude::*;

/// Small limits so that hostile templates hit them quickly.
fn options() -> Options {
    Options {
        limits: Limits {
            output_bytes: 64 * 1024,
            steps: 200_000,
            ..Limits::default()
        },
        ..Options::default()
    }
}

fn request(body: String) -> RequestData {
    let mut params = BTreeMap::new();
    params.insert("id".to_string(), "7".to_string());
    RequestData {
        body,
        path_params: params.clone(),
        query_params: params.clone(),
        headers: params.clone(),
        context: serde_json::json!({"stage": "prod", "identity": {"sourceIp": "1.2.3.4"}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        stage_variables: params,
    }
}

/// Parses and renders; asserts the output bound. Errors are fine.
fn exercise(src: &str, body: String) {
    let opts = options();
    let limit = opts.limits.output_bytes;
    if let Ok(t) = Template::parse_with(src, opts)
        && let Ok(r) = t.render(&request(body))
    {
        assert!(
            r.body.len() <= limit,
            "output {} over {limit}",
            r.body.len()
        );
    }
}

const TOKENS: &[&str] = &[
    "$",
    "$!",
    "${",
    "}",
    "$x",
    "$input",
    ".path(",
    ".json(",
    "'$.a'",
    "'$..b'",
    "'$[*]'",
    ")",
    "(",
    "[",
    "]",
    "{",
    ":",
    ",",
    "..",
    "#set(",
    "#if(",
    "#elseif(",
    "#else",
    "#end",
    "#{end}",
    "#foreach(",
    " in ",
    "#break",
    "#stop",
    "#define(",
    "#macro(",
    "#m(",
    "##",
    "#*",
    "*#",
    "#[[",
    "]]#",
    "\\",
    "\"",
    "'",
    "=",
    "==",
    "!=",
    "&&",
    "||",
    "!",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<",
    ">=",
    "1",
    "0",
    "-1",
    "2.5",
    "true",
    "false",
    "$foreach.hasNext",
    "$velocityCount",
    ".size()",
    ".get(0)",
    ".put('k', $x)",
    ".add($x)",
    ".keySet()",
    ".entrySet()",
    ".substring(1)",
    ".replaceAll('a', '$1')",
    ".split(',')",
    "$util.escapeJavaScript(",
    "$util.parseJson(",
    "$util.base64Decode(",
    "$util.urlDecode(",
    "$context.requestOverride.header.X-A",
    "$stageVariables.id",
    "$input.params('id')",
    "$input.body",
    "[1..5]",
    "[$x..3]",
    "\n",
    " ",
    "é",
    "\u{1F600}",
    "$x.y",
    "$x[0]",
    "$x[-1]",
    "{'a': [1, 2]}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|v| v.concat())
}

fn json_body() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(r#"{"a": [1, {"b": "x"}], "c": {"d": null}}"#.to_string()),
        Just("[1, 2, 3]".to_string()),
        Just("{\"a\": ".to_string()),
        Just("a=b".to_string()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>(), body in json_body()) {
        exercise(&src, body);
    }

    #[test]
    fn token_soups_never_panic(src in token_soup(), body in json_body()) {
        exercise(&src, body);
    }

    #[test]
    fn well_formed_loops_never_panic(
        inner in token_soup(),
        list in prop::sample::select(vec!["[1..3]", "$input.path('$.a')", "$input.path('$')", "{'a': 1}", "$nothing"]),
    ) {
        let src = format!("#foreach($x in {list})#set($y = $x){inner}#end");
        exercise(&src, r#"{"a": [1, {"b": "x"}]}"#.to_string());
    }
}

#[test]
fn pathological_templates_are_bounded() {
    let cases = [
        "#set($s = 'x')#foreach($i in [1..1000])#set($s = \"$s$s\")#end$s".to_string(),
        "#foreach($i in [1..1000])#foreach($j in [1..1000])#foreach($k in [1..1000])x#end#end#end"
            .to_string(),
        "#set($l = [])#foreach($i in [1..1000])#set($d = $l.add($l))#end$l".to_string(),
        "#set($m = {})#foreach($i in [1..1000])#set($m = {'a': $m})#end$m".to_string(),
        format!("{}x{}", "#if(true)".repeat(200), "#end".repeat(200)),
        format!("$a{}", ".b()".repeat(5000)),
        "#set($r = [1..999999999999])".to_string(),
        "$input.path('$..a..b..c..d')".to_string(),
    ];
    for src in cases {
        exercise(&src, "[[[[[[[[[[1]]]]]]]]]]".to_string());
    }
}
