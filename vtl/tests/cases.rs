//! Table-driven template cases: the AWS developer guide's mapping-template
//! examples and the recorded behaviour listed in
//! shared/notes/vtl-semantics.md. Each case names its source.
//!
//! Multi-line outputs are compared as JSON (whitespace around directives is
//! not recorded from AWS); single-line outputs are compared exactly.

use std::collections::BTreeMap;

use portico_vtl::{RequestData, Template, VtlError};

/// How to compare a rendered body with the expectation.
enum Expect {
    /// Byte-for-byte.
    Exact(&'static str),
    /// Both sides parsed as JSON and compared as values.
    Json(&'static str),
    /// Rendering fails with this HTTP status.
    Status(u16),
}

struct Case {
    name: &'static str,
    source: &'static str,
    template: &'static str,
    req: RequestData,
    expect: Expect,
}

fn req() -> RequestData {
    RequestData::default()
}

fn body(b: &str) -> RequestData {
    RequestData {
        body: b.to_string(),
        ..RequestData::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn context(j: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match j {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

const DG_MODELS: &str = "AWS API Gateway developer guide, models-mappings (PetStore)";
const DG_PHOTOS: &str = "AWS API Gateway developer guide, example-photos";
const DG_REF: &str = "AWS API Gateway developer guide, api-gateway-mapping-template-reference";
const DG_VARS: &str = "AWS API Gateway developer guide, api-gateway-mapping-variable-examples";
const SEM: &str = "shared/notes/vtl-semantics.md";
const VEL: &str = "Velocity 1.7 user guide";

const PETS: &str = r#"[
  {"id": 1, "type": "dog", "price": 249.99},
  {"id": 2, "type": "cat", "price": 124.99},
  {"id": 3, "type": "fish", "price": 0.99}
]"#;

const PHOTOS: &str = r#"{
  "photos": {
    "page": 1, "pages": "1234", "perpage": 100, "total": "123398",
    "photo": [
      {"id": "12345678901", "owner": "23456789@A12", "secret": "abc123d456", "server": "1234",
       "farm": 1, "title": "Sample photo 1", "ispublic": 1, "isfriend": 0, "isfamily": 0},
      {"id": "23456789012", "owner": "34567890@B23", "secret": "bcd234e567", "server": "2345",
       "farm": 2, "title": "Sample photo 2", "ispublic": 1, "isfriend": 0, "isfamily": 0}
    ]
  }
}"#;

fn cases() -> Vec<Case> {
    vec![
        // ---- AWS developer guide examples ----
        Case {
            name: "petstore request template",
            source: DG_MODELS,
            template: "#set($inputRoot = $input.path('$'))\n[\n#foreach($elem in $inputRoot)\n  {\n    \"description\" : \"Item $elem.id is a $elem.type.\",\n    \"askingPrice\" : $elem.price\n  }#if($foreach.hasNext),#end\n\n#end\n]\n",
            req: body(PETS),
            expect: Expect::Json(
                r#"[{"description":"Item 1 is a dog.","askingPrice":249.99},
                    {"description":"Item 2 is a cat.","askingPrice":124.99},
                    {"description":"Item 3 is a fish.","askingPrice":0.99}]"#,
            ),
        },
        Case {
            name: "photos input mapping template",
            source: DG_PHOTOS,
            template: "#set($inputRoot = $input.path('$'))\n{\n  \"photos\": {\n    \"page\": $inputRoot.photos.page,\n    \"pages\": \"$inputRoot.photos.pages\",\n    \"perpage\": $inputRoot.photos.perpage,\n    \"total\": \"$inputRoot.photos.total\",\n    \"photo\": [\n#foreach($elem in $inputRoot.photos.photo)\n      {\n        \"id\": \"$elem.id\",\n        \"owner\": \"$elem.owner\",\n        \"secret\": \"$elem.secret\",\n        \"server\": \"$elem.server\",\n        \"farm\": $elem.farm,\n        \"title\": \"$elem.title\",\n        \"ispublic\": $elem.ispublic,\n        \"isfriend\": $elem.isfriend,\n        \"isfamily\": $elem.isfamily\n      }#if($foreach.hasNext),#end\n\t\t\t\n#end\n    ]\n  }\n}",
            req: body(PHOTOS),
            expect: Expect::Json(PHOTOS),
        },
        Case {
            name: "photos output mapping template",
            source: DG_PHOTOS,
            template: "#set($inputRoot = $input.path('$'))\n{\n  \"photos\": [\n#foreach($elem in $inputRoot.photos.photo)\n    {\n      \"id\": \"$elem.id\",\n      \"owner\": \"$elem.owner\",\n      \"title\": \"$elem.title\",\n      \"ispublic\": $elem.ispublic,\n      \"isfriend\": $elem.isfriend,\n      \"isfamily\": $elem.isfamily\n    }#if($foreach.hasNext),#end\n\t\t\n#end\n  ]\n}",
            req: body(PHOTOS),
            expect: Expect::Json(
                r#"{"photos":[
                  {"id":"12345678901","owner":"23456789@A12","title":"Sample photo 1","ispublic":1,"isfriend":0,"isfamily":0},
                  {"id":"23456789012","owner":"34567890@B23","title":"Sample photo 2","ispublic":1,"isfriend":0,"isfamily":0}]}"#,
            ),
        },
        Case {
            name: "context variables template",
            source: DG_VARS,
            template: "{\n    \"stage\" : \"$context.stage\",\n    \"request_id\" : \"$context.requestId\",\n    \"api_id\" : \"$context.apiId\",\n    \"resource_path\" : \"$context.resourcePath\",\n    \"resource_id\" : \"$context.resourceId\",\n    \"http_method\" : \"$context.httpMethod\",\n    \"source_ip\" : \"$context.identity.sourceIp\",\n    \"user-agent\" : \"$context.identity.userAgent\",\n    \"account_id\" : \"$context.identity.accountId\",\n    \"api_key\" : \"$context.identity.apiKey\",\n    \"caller\" : \"$context.identity.caller\",\n    \"user\" : \"$context.identity.user\",\n    \"user_arn\" : \"$context.identity.userArn\"\n}",
            req: RequestData {
                context: context(serde_json::json!({
                    "stage": "prod", "requestId": "abcdefg-000-000-0000-abcdefg", "apiId": "abcd1234",
                    "resourcePath": "/", "resourceId": "efg567", "httpMethod": "GET",
                    "identity": {"sourceIp": "192.0.2.1", "userAgent": "curl/7.84.0",
                        "accountId": "111122223333", "apiKey": "MyTestKey", "caller": "ABCD-0000-12345",
                        "user": "ABCD-0000-12345",
                        "userArn": "arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar"}
                })),
                ..req()
            },
            expect: Expect::Json(
                r#"{"stage":"prod","request_id":"abcdefg-000-000-0000-abcdefg","api_id":"abcd1234",
                "resource_path":"/","resource_id":"efg567","http_method":"GET","source_ip":"192.0.2.1",
                "user-agent":"curl/7.84.0","account_id":"111122223333","api_key":"MyTestKey",
                "caller":"ABCD-0000-12345","user":"ABCD-0000-12345",
                "user_arn":"arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar"}"#,
            ),
        },
        Case {
            name: "pass all parameters through",
            source: DG_REF,
            template: "#set($allParams = $input.params())\n{\n  \"params\" : {\n    #foreach($type in $allParams.keySet())\n    #set($params = $allParams.get($type))\n    \"$type\" : {\n      #foreach($paramName in $params.keySet())\n      \"$paramName\" : \"$util.escapeJavaScript($params.get($paramName))\"\n      #if($foreach.hasNext),#end\n      #end\n    }\n    #if($foreach.hasNext),#end\n    #end\n  }\n}\n",
            req: RequestData {
                path_params: map(&[("id", "abc")]),
                query_params: map(&[("q", "s/x"), ("n", "1")]),
                headers: map(&[("Accept", "application/json")]),
                ..req()
            },
            expect: Expect::Json(
                r#"{"params":{"path":{"id":"abc"},"querystring":{"n":"1","q":"s/x"},"header":{"Accept":"application/json"}}}"#,
            ),
        },
        Case {
            name: "name from query string and whole body",
            source: DG_REF,
            template: "{\n    \"name\" : \"$input.params('name')\",\n    \"body\" : $input.json('$') \n}",
            req: RequestData {
                query_params: map(&[("name", "me")]),
                body: r#"{"a": [1, 2.5, "x"], "b": {"c": true}}"#.into(),
                ..req()
            },
            expect: Expect::Json(r#"{"name":"me","body":{"a":[1,2.5,"x"],"b":{"c":true}}}"#),
        },
        Case {
            name: "json of a sub-path",
            source: DG_REF,
            template: "{\"name\" : \"$input.params('name')\", \"body\" : $input.json('$.mykey')}",
            req: RequestData {
                query_params: map(&[("name", "me")]),
                body: r#"{"mykey": {"k": "v"}}"#.into(),
                ..req()
            },
            expect: Expect::Exact(r#"{"name" : "me", "body" : {"k":"v"}}"#),
        },
        Case {
            name: "things example: id, count and escaped json",
            source: DG_REF,
            template: "{\"id\" : \"$input.params('id')\", \"count\" : \"$input.path('$.things').size()\", \"things\" : $util.escapeJavaScript($input.json('$.things'))}",
            req: RequestData {
                path_params: map(&[("id", "abc")]),
                body: r#"{"things": {"1": {}, "2": {}, "3": {}}}"#.into(),
                ..req()
            },
            expect: Expect::Exact(
                r#"{"id" : "abc", "count" : "3", "things" : {\"1\":{},\"2\":{},\"3\":{}}}"#,
            ),
        },
        Case {
            name: "parseJson of a stringified payload field",
            source: DG_REF,
            template: "#set ($errorMessageObj = $util.parseJson($input.path('$.errorMessage')))\n{\n   \"errorMessageObjKey2ArrVal\" : $errorMessageObj.key2.arr[0]\n}\n",
            req: body(r#"{"errorMessage":"{\"key1\":\"var1\",\"key2\":{\"arr\":[1,2,3]}}"}"#),
            expect: Expect::Json(r#"{"errorMessageObjKey2ArrVal": 1}"#),
        },
        Case {
            name: "escapeJavaScript then undo the quote escape",
            source: DG_REF,
            template: "$util.escapeJavaScript($input.path('$.s')).replaceAll(\"\\\\'\",\"'\")",
            req: body(r#"{"s": "it's \"q\""}"#),
            expect: Expect::Exact(r#"it's \"q\""#),
        },
        Case {
            name: "stage variables in three spellings",
            source: DG_REF,
            template: "$stageVariables.v1|$stageVariables['v1']|${stageVariables['v1']}",
            req: RequestData {
                stage_variables: map(&[("v1", "one")]),
                ..req()
            },
            expect: Expect::Exact("one|one|one"),
        },
        Case {
            name: "authorizer context values are strings",
            source: DG_REF,
            template: "$context.authorizer.key $context.authorizer.numKey $context.authorizer.boolKey #if($context.authorizer.numKey == '1')s#end",
            req: RequestData {
                context: context(
                    serde_json::json!({"authorizer": {"key": "value", "numKey": 1, "boolKey": true}}),
                ),
                ..req()
            },
            expect: Expect::Exact("value 1 true s"),
        },
        // ---- recorded AWS behaviour (vtl-semantics.md) ----
        Case {
            name: "null references render empty without !",
            source: SEM,
            template: "#set($result = $input.path('$.nothing')){\"body\": $result, \"nested\": $result.nested}",
            req: body("{}"),
            expect: Expect::Exact(r#"{"body": , "nested": }"#),
        },
        Case {
            name: "missing stage variable and parameter render empty",
            source: SEM,
            template: "\"$stageVariables.noStageVar\" \"$input.params('petId')\"",
            req: req(),
            expect: Expect::Exact(r#""" """#),
        },
        Case {
            name: "null equals null and the empty string",
            source: SEM,
            template: "#set($result = $input.path('$.x'))#if($result == $null)a#end#if($result == \"\")b#end#if($foo.bar.stuff != '')c#else d#end",
            req: body("{}"),
            expect: Expect::Exact("ab d"),
        },
        Case {
            name: "empty string is truthy, null is not",
            source: SEM,
            template: "#set($e = \"\")#if($e)t#else f#end#if($nope)t#else f#end#if(\"$!nope\" != \"\")t#else f#end",
            req: req(),
            expect: Expect::Exact("t f f"),
        },
        Case {
            name: "maps print Java-style, JSON arrays as compact JSON",
            source: SEM,
            template: "$input.path('$.m') $input.path('$.a') $input.path('$.e') $input.path('$.m.n')",
            req: body(
                r#"{"m": {"a": 1, "b": "x", "n": {"c": null}, "l": [1, "y"]}, "a": [{"foo": "bar"}], "e": []}"#,
            ),
            expect: Expect::Exact(
                r#"{a=1, b=x, n={c=null}, l=[1,"y"]} [{"foo":"bar"}] [] {c=null}"#,
            ),
        },
        Case {
            name: "VTL list literals and keySet print Java-style",
            source: SEM,
            template: "#set($l = [1, 'a', true])$l $input.path('$').keySet() $input.path('$').toString().contains('a=1')",
            req: body(r#"{"a": 1, "b": 2}"#),
            expect: Expect::Exact("[1, a, true] [a, b] true"),
        },
        Case {
            name: "numbers print in Java form",
            source: SEM,
            template: "$input.path('$.p') $input.path('$.big') $input.path('$.d') $input.path('$.e')",
            req: body(r#"{"p": 1.99, "big": 2345678901, "d": 1.0, "e": 1e7}"#),
            expect: Expect::Exact("1.99 2345678901 1.0 1.0E7"),
        },
        Case {
            name: "string values from path print raw, from json quoted",
            source: SEM,
            template: "$input.path('$.s') $input.json('$.s') $input.json('$.n')",
            req: body(r#"{"s": "foobar", "n": 5}"#),
            expect: Expect::Exact(r#"foobar "foobar" 5"#),
        },
        Case {
            name: "empty body is {} for body, json and path",
            source: SEM,
            template: "$input.body $input.json('$') $input.path('$')",
            req: req(),
            expect: Expect::Exact("{} {} {}"),
        },
        Case {
            name: "body is raw and keeps its formatting; .prop on it is empty",
            source: SEM,
            template: "$input.body|$input.body.foo|",
            req: body("{ \"a\" :\n 1 }"),
            expect: Expect::Exact("{ \"a\" :\n 1 }||"),
        },
        Case {
            name: "a JSON string body through json('$')",
            source: SEM,
            template: "$input.json('$')",
            req: body("\"a=b\""),
            expect: Expect::Exact("\"a=b\""),
        },
        Case {
            name: "non-JSON body becomes one string",
            source: SEM,
            template: "$input.path('$')|$input.json('$')",
            req: body("a=b"),
            expect: Expect::Exact("a=b|\"a=b\""),
        },
        Case {
            name: "broken JSON body is a 400 when read through path",
            source: SEM,
            template: "$input.path('$.a')",
            req: body("{\"a\": "),
            expect: Expect::Status(400),
        },
        Case {
            name: "broken JSON body is fine when only body is read",
            source: SEM,
            template: "$input.body",
            req: body("{\"a\": "),
            expect: Expect::Exact("{\"a\": "),
        },
        Case {
            name: "index after a method call",
            source: SEM,
            template: "$input.path('$.foo')[1][1] $input.path('$.foo')[0][-1]",
            req: body(r#"{"foo": [[1, 2], [3, 4]]}"#),
            expect: Expect::Exact("4 2"),
        },
        Case {
            name: "interpolated JSONPath inside a double-quoted argument",
            source: SEM,
            template: "#set($idx = 1)$input.path(\"$.records[${idx}]\").id",
            req: body(r#"{"records": [{"id": "a"}, {"id": "b"}]}"#),
            expect: Expect::Exact("b"),
        },
        Case {
            name: "params map: path, querystring, header",
            source: SEM,
            template: "$input.params().path.id $input.params().get('querystring').get('q') $input.params().keySet() $input.params('id') $input.params('q') $input.params('X-H')",
            req: RequestData {
                path_params: map(&[("id", "7")]),
                query_params: map(&[("q", "s"), ("id", "shadowed")]),
                headers: map(&[("X-H", "h")]),
                ..req()
            },
            expect: Expect::Exact("7 s [path, querystring, header] 7 s h"),
        },
        Case {
            name: "hidden headers are not visible to params",
            source: SEM,
            template: "[$input.params('Content-Length')][$input.params('User-Agent')][$input.params().header.size()]",
            req: RequestData {
                headers: map(&[("Content-Length", "3"), ("User-Agent", "curl")]),
                ..req()
            },
            expect: Expect::Exact("[][curl][1]"),
        },
        Case {
            name: "util url and base64 helpers",
            source: SEM,
            template: "$util.urlEncode('a b&c/é') $util.urlDecode('a+b%26c') $util.base64Encode('{\"a\":1}') $util.parseJson($util.base64Decode('eyJhIjoxfQ==')).a [$util.urlEncode($nothing)]",
            req: req(),
            expect: Expect::Exact("a+b%26c%2F%C3%A9 a b&c eyJhIjoxfQ== 1 []"),
        },
        Case {
            name: "escapeJavaScript escapes quotes, backslash, slash and controls",
            source: SEM,
            template: "$util.escapeJavaScript($input.path('$.s'))",
            req: body(r#"{"s": "a'b\"c\\d/e\nf"}"#),
            expect: Expect::Exact(r#"a\'b\"c\\d\/e\nf"#),
        },
        Case {
            name: "hyphenated identifiers in override targets",
            source: SEM,
            template: "#set($context.requestOverride.header.X-Amz-Target = \"Svc.Op\")$context.requestOverride.header.X-Amz-Target",
            req: req(),
            expect: Expect::Exact("Svc.Op"),
        },
        // ---- Velocity 1.7 syntax ----
        Case {
            name: "quiet, braced and escaped references",
            source: VEL,
            template: "#set($x = 'v')$x $!x ${x} $!{x} ${x}y \\$x \\\\$x $!nope|${nope}|",
            req: req(),
            expect: Expect::Exact("v v v v vy $x \\v ||"),
        },
        Case {
            name: "text that is not a reference stays",
            source: SEM,
            template: "$. $\" $1 $ #foo # $!",
            req: req(),
            expect: Expect::Exact("$. $\" $1 $ #foo # $!"),
        },
        Case {
            name: "comments and unparsed blocks",
            source: VEL,
            template: "a## line comment\nb#* block\ncomment *#c#[[ $x #if ]]#d",
            req: req(),
            expect: Expect::Exact("abc $x #if d"),
        },
        Case {
            name: "if / elseif / else with braced forms and spaces before parens",
            source: SEM,
            template: "#set ($n = 2)#if ($n == 1)one#elseif($n == 2)two#{else}other#{end}|#if($n > 5)big#{else}small#end",
            req: req(),
            expect: Expect::Exact("two|small"),
        },
        Case {
            name: "operators and word forms",
            source: VEL,
            template: "#set($a = 7)#if($a gt 5 and $a lt 10 && !($a == 8) || false)y#end #if(not $a eq 7)n#else e#end $a ${a}0 #set($b = $a * 2 + 1 - 3 / 2 % 5)$b",
            req: req(),
            expect: Expect::Exact("y  e 7 70 14"),
        },
        Case {
            name: "integer division truncates, division by zero is null",
            source: SEM,
            template: "#set($q = 7 / 2)$q #set($z = 1 / 0)[$z] #set($f = 1.5 * 2)$f",
            req: req(),
            expect: Expect::Exact("3 [] 3.0"),
        },
        Case {
            name: "string interpolation in double quotes, not in single",
            source: VEL,
            template: "#set($n = 'w')#set($s = \"hello $n #if(true)!#end\")#set($t = 'hello $n')$s|$t",
            req: req(),
            expect: Expect::Exact("hello w !|hello $n"),
        },
        Case {
            name: "ranges with references and spaces, ascending and descending",
            source: SEM,
            template: "#set($s = 1)#set($e = 3)#foreach($i in [$s .. $e])$i#end #foreach($i in [3..1])$i#end $([1..3])",
            req: req(),
            expect: Expect::Exact("123 321 $([1..3])"),
        },
        Case {
            name: "list and map literals",
            source: VEL,
            template: "#set($l = [1, \"two\", [3]])#set($m = {\"k\": \"v\", \"n\": 1})$l $l.size() $l[1] $m $m.k $m.get('n') $m.size()",
            req: req(),
            expect: Expect::Exact("[1, two, [3]] 3 two {k=v, n=1} v 1 2"),
        },
        Case {
            name: "foreach scope: index, count, hasNext, first, last, velocityCount",
            source: SEM,
            template: "#foreach($x in ['a','b','c'])$foreach.index$foreach.count$velocityCount$x#if($foreach.first)F#end#if($foreach.last)L#end#if($foreach.hasNext),#end#end",
            req: req(),
            expect: Expect::Exact("011aF,122b,233cL"),
        },
        Case {
            name: "foreach over a map iterates values; loop variable is restored",
            source: VEL,
            template: "#set($x = 'outer')#foreach($x in {'a': 1, 'b': 2})$x#end $x",
            req: req(),
            expect: Expect::Exact("12 outer"),
        },
        Case {
            name: "break leaves the innermost loop, stop ends the template",
            source: SEM,
            template: "#foreach($i in [1..3])#foreach($j in [1..3])#if($j == 2)#break#end$i$j #end#end|#stop after",
            req: req(),
            expect: Expect::Exact("11 21 31 |"),
        },
        Case {
            name: "define and macro",
            source: SEM,
            template: "#define($greet)hi $who#end#set($who = 'bob')$greet #macro(tag $n)<$n>#end#tag('b')#tag(\"i\")",
            req: req(),
            expect: Expect::Exact("hi bob <b><i>"),
        },
        Case {
            name: "set with index and property targets on context",
            source: SEM,
            template: "#set($k = 'q1')#set($context.requestOverride.querystring[$k] = \"v\")#set($context[\"requestOverride\"].querystring[\"x\"] = \"y\")$context.requestOverride.querystring",
            req: req(),
            expect: Expect::Exact("{q1=v, x=y}"),
        },
        Case {
            name: "set with a null right-hand side keeps the old value (1.7 default)",
            source: SEM,
            template: "#set($a = 1)#set($a = $nothing)$a",
            req: req(),
            expect: Expect::Exact("1"),
        },
        Case {
            name: "BC whitespace gobbling of #set (velocity-engine gobbling/set.vtl)",
            source: SEM,
            template: "#set($foo = 'foo')\n #set($foo = 'foo')\n#set($foo = 'foo') postfix\n #set($foo = 'foo') postfix\nprefix #set($foo = 'foo')\nprefix #set($foo = 'foo') postfix\n",
            req: req(),
            expect: Expect::Exact(" postfix\n  postfix\nprefix prefix  postfix\n"),
        },
        Case {
            name: "directives on their own line eat the newline, keep indentation",
            source: SEM,
            template: "a\n  #if(true)\n  b\n  #end\nc\n",
            req: req(),
            expect: Expect::Exact("a\n    b\n  c\n"),
        },
        // ---- methods ----
        Case {
            name: "string methods",
            source: VEL,
            template: "#set($s = ' Hello World ')$s.trim().length() $s.trim().toUpperCase() $s.toLowerCase().trim() $s.trim().substring(6) $s.trim().substring(0, 5) $s.indexOf('o') $s.contains('World') $s.trim().startsWith('He') $s.trim().endsWith('ld') $s.isEmpty() $s.replace('l', 'L') $s.trim().equals('Hello World') $s.trim().matches('H.*d')",
            req: req(),
            expect: Expect::Exact(
                "11 HELLO WORLD hello world World Hello 5 true true true false  HeLLo WorLd  true true",
            ),
        },
        Case {
            name: "replaceAll with groups and split",
            source: SEM,
            template: "$input.path('$.d').replaceAll(\"(\\d+)-(\\d+)\", \"$2-$1\") #set($csv = 'a,b,,c,,')#foreach($p in $csv.split(','))[$p]#end 'x'.split(',').size()",
            req: body(r#"{"d": "12-34 5-6"}"#),
            expect: Expect::Exact("34-12 6-5 [a][b][][c] 'x'.split(',').size()"),
        },
        Case {
            name: "list methods",
            source: VEL,
            template: "#set($l = [])#set($d = $l.add('a'))#set($d = $l.add('b'))$l.size() $l.get(0) $l.contains('b') $l.isEmpty() $l.indexOf('b') #set($d = $l.remove(0))$l",
            req: req(),
            expect: Expect::Exact("2 a true false 1 [b]"),
        },
        Case {
            name: "map methods",
            source: VEL,
            template: "#set($m = {})#set($d = $m.put('a', 1))#set($d = $m.put('b', 'x'))$m.size() $m.containsKey('a') $m.keySet() $m.values() #foreach($e in $m.entrySet())$e.key=$e.value;#end $m.remove('a') $m",
            req: req(),
            expect: Expect::Exact("2 true [a, b] [1, x] a=1;b=x; 1 {b=x}"),
        },
        Case {
            name: "out-of-range substring is a template error (500)",
            source: VEL,
            template: "$input.path('$.s').substring(5)",
            req: body(r#"{"s": "abc"}"#),
            expect: Expect::Status(500),
        },
        Case {
            name: "JSONPath wildcard and deep scan give lists",
            source: SEM,
            template: "$input.path('$.a[*].id') $input.json('$..id') $input.path('$.a[0]').id $input.path('a[1].id') $input.json('$.a[0:1]')",
            req: body(r#"{"a": [{"id": 1}, {"id": 2}]}"#),
            expect: Expect::Exact(r#"[1,2] [1,2] 1 2 [{"id":1}]"#),
        },
        Case {
            name: "missing path: path is null, json is empty [?]",
            source: SEM,
            template: "[$input.path('$.missing')][$input.json('$.missing')][$input.path('$.a.b.c')]",
            req: body(r#"{"a": 1}"#),
            expect: Expect::Exact("[][][]"),
        },
        Case {
            name: "json escapes slashes as json-smart does [J]",
            source: SEM,
            template: "$input.json('$.u') $input.path('$.l')",
            req: body(r#"{"u": "http://x/y", "l": ["a/b"]}"#),
            expect: Expect::Exact(r#""http:\/\/x\/y" ["a\/b"]"#),
        },
    ]
}

#[test]
fn table_driven_cases_match_expected_output() {
    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let got = Template::parse(c.template).and_then(|t| t.render(&c.req));
        let ok = match (&c.expect, &got) {
            (Expect::Exact(want), Ok(r)) => r.body == *want,
            (Expect::Json(want), Ok(r)) => {
                let w: serde_json::Value = serde_json::from_str(want).expect("expected JSON");
                serde_json::from_str::<serde_json::Value>(&r.body).is_ok_and(|g| g == w)
            }
            (Expect::Status(s), Err(e)) => e.status_code() == *s,
            _ => false,
        };
        if !ok {
            let shown = match &got {
                Ok(r) => format!("{:?}", r.body),
                Err(e) => format!("error: {e}"),
            };
            failures.push(format!("{} ({}): got {shown}", c.name, c.source));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn overrides_are_returned_from_render() {
    // vtl-semantics.md §3.6: request and response overrides.
    let t = Template::parse(
        "#set($context.requestOverride.header.X-Amz-Target = 'Svc.Op')\
         #set($context.requestOverride.header.multi = ['a', 'b'])\
         #set($context.requestOverride.path.id = 'p1')\
         #set($context.requestOverride.querystring.q = 'v')\
         #set($context.responseOverride.status = 444)\
         #set($context.responseOverride.header.X-Custom = 'c')",
    )
    .expect("parses");
    let r = t.render(&RequestData::default()).expect("renders");
    assert_eq!(r.body, "");
    let o = r.overrides;
    assert_eq!(o.request_headers["X-Amz-Target"], vec!["Svc.Op"]);
    assert_eq!(o.request_headers["multi"], vec!["a", "b"]);
    assert_eq!(o.request_path["id"], "p1");
    assert_eq!(o.request_querystring["q"], vec!["v"]);
    assert_eq!(o.response_status, Some(444));
    assert_eq!(o.response_headers["X-Custom"], vec!["c"]);
}

#[test]
fn invalid_status_override_is_an_error() {
    let t = Template::parse("#set($context.responseOverride.status = 'abc')").expect("parses");
    assert!(matches!(
        t.render(&RequestData::default()),
        Err(VtlError::Runtime { .. })
    ));
}

#[test]
fn no_overrides_means_empty_overrides() {
    let r = Template::parse("x")
        .expect("parses")
        .render(&RequestData::default())
        .expect("renders");
    assert!(r.overrides.is_empty());
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = Template::parse("line one\n  #foreach($x in )").unwrap_err();
    assert_eq!(e.pos().map(|p| p.line), Some(2));
    assert_eq!(e.status_code(), 500);
}
