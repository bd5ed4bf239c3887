//! `$context.*` templates: parsed once (at `Runtime` build), rendered per request.
//!
//! Used by the access log ([`Mode::AccessLog`]: values JSON-escaped, missing values `-`, as
//! AWS) and by gateway response bodies ([`Mode::GatewayResponse`]: values raw, missing values
//! empty; `$context.error.messageString` is the JSON-quoted message).
//! Entry points: [`Template::parse`], [`Template::render`].

use crate::pipeline::RequestCtx;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A `$context` variable this build knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `requestId`, `extendedRequestId`.
    RequestId,
    /// `stage`.
    Stage,
    /// `apiId`: the API's stable id (`restapi/<namespace>/<name>`), not its display name.
    ApiId,
    /// `resourcePath`.
    ResourcePath,
    /// `resourceId` (the route's stable id).
    ResourceId,
    /// `routeKey`.
    RouteKey,
    /// `httpMethod`.
    HttpMethod,
    /// `path` (the normalised request path, base path included).
    Path,
    /// `protocol`, e.g. `HTTP/1.1`.
    Protocol,
    /// `identity.sourceIp`.
    SourceIp,
    /// `identity.userAgent`.
    UserAgent,
    /// `requestTime` (CLF: `25/Nov/2026:09:35:27 +0000`).
    RequestTime,
    /// `requestTimeEpoch` (milliseconds).
    RequestTimeEpoch,
    /// `status`.
    Status,
    /// `responseLength`.
    ResponseLength,
    /// `responseLatency` (milliseconds).
    ResponseLatency,
    /// `integrationLatency`, `integration.latency` (milliseconds).
    IntegrationLatency,
    /// `integrationStatus`, `integration.status`.
    IntegrationStatus,
    /// `error.message`.
    ErrorMessage,
    /// `error.messageString` (JSON-quoted message).
    ErrorMessageString,
    /// `error.responseType`.
    ErrorResponseType,
    /// `error.validationErrorString` (what request validation found; raw).
    ValidationErrorString,
    /// `domainName` (the Host header).
    DomainName,
}

impl Var {
    /// Looks up a variable by its name after `$context.`.
    pub fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "requestId" | "extendedRequestId" => Var::RequestId,
            "stage" => Var::Stage,
            "apiId" => Var::ApiId,
            "resourcePath" => Var::ResourcePath,
            "resourceId" => Var::ResourceId,
            "routeKey" => Var::RouteKey,
            "httpMethod" => Var::HttpMethod,
            "path" => Var::Path,
            "protocol" => Var::Protocol,
            "identity.sourceIp" => Var::SourceIp,
            "identity.userAgent" => Var::UserAgent,
            "requestTime" => Var::RequestTime,
            "requestTimeEpoch" => Var::RequestTimeEpoch,
            "status" => Var::Status,
            "responseLength" => Var::ResponseLength,
            "responseLatency" => Var::ResponseLatency,
            "integrationLatency" | "integration.latency" => Var::IntegrationLatency,
            "integrationStatus" | "integration.status" => Var::IntegrationStatus,
            "error.message" => Var::ErrorMessage,
            "error.messageString" => Var::ErrorMessageString,
            "error.responseType" => Var::ErrorResponseType,
            "error.validationErrorString" => Var::ValidationErrorString,
            "domainName" => Var::DomainName,
            _ => return None,
        })
    }

    /// Writes the raw value; false when the request has none.
    pub fn write(self, ctx: &RequestCtx, out: &mut String) -> bool {
        let start = out.len();
        match self {
            Var::RequestId => out.push_str(ctx.request_id.as_str()),
            Var::Stage => out.push_str(ctx.stage_config().map_or("", |s| s.name.as_str())),
            Var::ApiId => out.push_str(ctx.api_config().map_or("", |a| a.id.as_str())),
            Var::ResourcePath => {
                out.push_str(ctx.route_config().map_or("", |r| r.resource_path.as_str()))
            }
            Var::ResourceId => out.push_str(ctx.route_config().map_or("", |r| r.id.as_str())),
            Var::RouteKey => out.push_str(ctx.route_config().map_or("", |r| r.route_key.as_str())),
            Var::HttpMethod => out.push_str(ctx.http_method.as_str()),
            Var::Path => out.push_str(ctx.path()),
            Var::Protocol => out.push_str(match ctx.protocol {
                http::Version::HTTP_09 => "HTTP/0.9",
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            }),
            Var::SourceIp => {
                let _ = write!(out, "{}", ctx.source_ip);
            }
            Var::UserAgent => {
                if let Some(ua) = &ctx.user_agent {
                    out.push_str(&String::from_utf8_lossy(ua.as_bytes()));
                }
            }
            Var::RequestTime => write_clf_time(ctx.request_time, out),
            Var::RequestTimeEpoch => {
                let ms = ctx
                    .request_time
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let _ = write!(out, "{ms}");
            }
            Var::Status => {
                if ctx.status != 0 {
                    let _ = write!(out, "{}", ctx.status);
                }
            }
            Var::ResponseLength => {
                if let Some(n) = ctx.response_length {
                    let _ = write!(out, "{n}");
                }
            }
            Var::ResponseLatency => {
                let _ = write!(out, "{}", ctx.response_latency.as_millis());
            }
            Var::IntegrationLatency => {
                if let Some(d) = ctx.integration_latency {
                    let _ = write!(out, "{}", d.as_millis());
                }
            }
            Var::IntegrationStatus => {
                if let Some(s) = ctx.integration_status {
                    let _ = write!(out, "{s}");
                }
            }
            Var::ErrorMessage => {
                if let Some(t) = ctx.error {
                    out.push_str(ctx.error_message.as_deref().unwrap_or(t.default_message()));
                }
            }
            Var::ErrorMessageString => {
                if let Some(t) = ctx.error {
                    out.push('"');
                    json_escape_into(
                        ctx.error_message.as_deref().unwrap_or(t.default_message()),
                        out,
                    );
                    out.push('"');
                }
            }
            Var::ValidationErrorString => {
                if let Some(v) = &ctx.validation_error {
                    out.push_str(v);
                }
            }
            Var::ErrorResponseType => {
                if let Some(t) = ctx.error {
                    out.push_str(t.as_str());
                }
            }
            Var::DomainName => {
                if let Some(h) = &ctx.host {
                    out.push_str(&String::from_utf8_lossy(h.as_bytes()));
                }
            }
        }
        out.len() > start
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(Box<str>),
    Var(Var),
    /// A `$context.x` this build does not know: renders `-` in access logs.
    Unknown,
    /// `$context.authorizer.<key>`: `principalId` or `claims.<name>` (set by the auth phase).
    Authorizer(Box<str>),
}

/// The raw value of `$context.<name>` (a parameter mapping's `context.<name>`, including
/// `authorizer.principalId`, `authorizer.claims.<name>` and `authorizer.<key>`); `None` when
/// the name is unknown or the request has no value.
pub fn context_value(ctx: &RequestCtx, name: &str) -> Option<String> {
    let mut out = String::new();
    let found = match name.strip_prefix("authorizer.") {
        Some(key) => write_authorizer(ctx, key, &mut out),
        None => Var::from_name(name)?.write(ctx, &mut out),
    };
    found.then_some(out)
}

/// Writes `$context.authorizer.<key>`; false when the request has no such value.
fn write_authorizer(ctx: &RequestCtx, key: &str, out: &mut String) -> bool {
    let Some(a) = &ctx.authorizer else {
        return false;
    };
    if key == "principalId" {
        return a.principal_id.as_deref().is_some_and(|p| {
            out.push_str(p);
            !p.is_empty()
        });
    }
    let v = match key.strip_prefix("claims.") {
        Some(n) => a.claims.get(n),
        None => a.context.get(key),
    };
    let Some(v) = v else {
        return false;
    };
    let start = out.len();
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
    out.len() > start
}

/// How to render values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// JSON-escape every value; a missing value renders `-`.
    AccessLog,
    /// Values raw; a missing value renders nothing.
    GatewayResponse,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    literal_len: usize,
}

const PREFIX: &str = "$context.";

impl Template {
    /// Splits `src` into literal text and `$context.<name>` variables. A name is the longest
    /// run of `[A-Za-z0-9_.]` after the prefix, less trailing dots.
    pub fn parse(src: &str) -> Template {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(pos) = rest.find(PREFIX) {
            lit.push_str(&rest[..pos]);
            let after = &rest[pos + PREFIX.len()..];
            let mut end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(after.len());
            while end > 0 && after.as_bytes()[end - 1] == b'.' {
                end -= 1;
            }
            if end == 0 {
                lit.push_str(PREFIX);
                rest = after;
                continue;
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
            }
            let name = &after[..end];
            pieces.push(match Var::from_name(name) {
                Some(v) => Piece::Var(v),
                None => match name.strip_prefix("authorizer.") {
                    Some(key) if !key.is_empty() => Piece::Authorizer(key.into()),
                    _ => Piece::Unknown,
                },
            });
            rest = &after[end..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit.into()));
        }
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(l) => l.len(),
                _ => 0,
            })
            .sum();
        Template {
            pieces,
            literal_len,
        }
    }

    /// Appends the rendering for `ctx` to `out`.
    pub fn render(&self, ctx: &RequestCtx, mode: Mode, out: &mut String) {
        out.reserve(self.literal_len + 16 * self.pieces.len());
        let mut scratch = String::new();
        for p in &self.pieces {
            match (p, mode) {
                (Piece::Lit(l), _) => out.push_str(l),
                (Piece::Var(v), Mode::GatewayResponse) => {
                    v.write(ctx, out);
                }
                (Piece::Var(v), Mode::AccessLog) => {
                    scratch.clear();
                    if v.write(ctx, &mut scratch) {
                        json_escape_into(&scratch, out);
                    } else {
                        out.push('-');
                    }
                }
                (Piece::Authorizer(k), Mode::GatewayResponse) => {
                    write_authorizer(ctx, k, out);
                }
                (Piece::Authorizer(k), Mode::AccessLog) => {
                    scratch.clear();
                    if write_authorizer(ctx, k, &mut scratch) {
                        json_escape_into(&scratch, out);
                    } else {
                        out.push('-');
                    }
                }
                (Piece::Unknown, Mode::AccessLog) => out.push('-'),
                (Piece::Unknown, Mode::GatewayResponse) => {}
            }
        }
    }
}

/// Appends `s` JSON-escaped (no surrounding quotes).
pub fn json_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `t` in Common Log Format, UTC: `25/Nov/2026:09:35:27 +0000`.
pub fn write_clf_time(t: SystemTime, out: &mut String) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_variables_literals_and_unknowns() {
        let t =
            Template::parse("{\"id\":\"$context.requestId\",\"x\":\"$context.nope\"}.$context.");
        assert_eq!(
            t.pieces,
            vec![
                Piece::Lit("{\"id\":\"".into()),
                Piece::Var(Var::RequestId),
                Piece::Lit("\",\"x\":\"".into()),
                Piece::Unknown,
                Piece::Lit("\"}.$context.".into()),
            ]
        );
        let t = Template::parse("$context.status.");
        assert_eq!(
            t.pieces,
            vec![Piece::Var(Var::Status), Piece::Lit(".".into())]
        );
        let t = Template::parse("$context.identity.sourceIp $context.error.messageString");
        assert_eq!(
            t.pieces,
            vec![
                Piece::Var(Var::SourceIp),
                Piece::Lit(" ".into()),
                Piece::Var(Var::ErrorMessageString)
            ]
        );
    }

    #[test]
    fn clf_time_matches_aws_format() {
        let mut s = String::new();
        write_clf_time(UNIX_EPOCH + Duration::from_secs(1_795_599_327), &mut s);
        assert_eq!(s, "25/Nov/2026:09:35:27 +0000");
        s.clear();
        write_clf_time(UNIX_EPOCH, &mut s);
        assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
        s.clear();
        write_clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn json_escaping_covers_quotes_backslashes_and_controls() {
        let mut s = String::new();
        json_escape_into("a\"b\\c\nd\u{1}é", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001é");
    }
}
