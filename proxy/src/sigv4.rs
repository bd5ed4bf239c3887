//! AWS Signature Version 4 verification (server side) for the WebSocket `@connections`
//! management API, which boto3's `apigatewaymanagementapi` client signs for service
//! `execute-api`. The verifier rebuilds what the client signed from the request as received,
//! derives the signing key from the secret of the access key the credential names, and compares
//! its signature with the client's in constant time.
//!
//! ```text
//!  Authorization: AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/<service>/aws4_request,
//!                 SignedHeaders=host;x-amz-date, Signature=<64 hex>
//!
//!  canonical request                     string to sign
//!    METHOD                                AWS4-HMAC-SHA256
//!    path, encoded again                   X-Amz-Date
//!    sorted query           ──sha256──>    <date>/<region>/<service>/aws4_request
//!    name:value per signed header          hex(sha256(canonical request))
//!    signed;names                                 │
//!    hex(sha256(body))                            v
//!  secret_for(akid) ─> signing key ───────> HMAC-SHA256 ─> == Signature? (constant time)
//!    HMAC("AWS4"+secret, date) ─> region ─> service ─> "aws4_request"
//! ```
//!
//! The time of signing (`X-Amz-Date`, else `Date`) must be signed, fall on the credential's date
//! and lie within 15 minutes of the server's clock, as AWS requires. Only the `Authorization`
//! header form is read (no presigned query strings), and only `AWS4-HMAC-SHA256` (no SigV4a).
//! A session token (`X-Amz-Security-Token`) is just one more signed header: static credentials
//! only, nothing checks it.

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::{digest, hmac};

/// The service name the `@connections` management API is signed for.
pub const SERVICE: &str = "execute-api";

/// How far (seconds) the time of signing may lie from the server's clock, either way: AWS's 15
/// minutes.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// The `x-amz-content-sha256` value of a client that leaves the body out of the signature.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What AWS leaves unencoded: the unreserved characters `A-Z a-z 0-9 - _ . ~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// A canonical URI's: the unreserved characters and `/` (botocore's `quote(path, safe='/~')`).
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// What the verifier needs from a request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The method, as received (`POST`, `GET`, `DELETE`).
    pub method: &'a str,
    /// The path as received, still percent-encoded (`/prod/@connections/abc%3D`).
    pub raw_path: &'a str,
    /// The query as received, without the `?`.
    pub raw_query: Option<&'a str>,
    /// The headers as received; must hold `host` (over HTTP/2, the `:authority`).
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

/// Why a request is refused. The messages never repeat the `Authorization` header's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("the request is not signed: no Authorization header")]
    Missing,
    /// The `Authorization` header, the time of signing or a signed header is not as SigV4 wants.
    #[error("malformed SigV4 request: {0}")]
    Malformed(String),
    /// `secret_for` knows no secret for the credential's access key id.
    #[error("unknown access key id")]
    UnknownAccessKey,
    /// The time of signing lies more than [`MAX_SKEW_SECS`] from the server's clock.
    #[error("the request was signed more than 15 minutes from the server's time")]
    Expired,
    /// The credential is scoped to another service than [`SERVICE`].
    #[error("the credential is not scoped to service {SERVICE}")]
    WrongService,
    /// The signature is not the request's (or the body is not the one `x-amz-content-sha256`
    /// declares).
    #[error("the signature does not match the request")]
    Mismatch,
}

/// Verifies `req`, signed for [`SERVICE`], against `secret_for(access_key_id)` at `now` (unix
/// seconds), allowing [`MAX_SKEW_SECS`] of skew as AWS does. Returns the access key id on
/// success.
pub fn verify(
    req: &SignedRequest<'_>,
    now: i64,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    verify_for_service(req, now, SERVICE, secret_for)
}

/// [`verify`] for any service name (AWS's test suite signs for `service`).
fn verify_for_service(
    req: &SignedRequest<'_>,
    now: i64,
    service: &str,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    let authorization = single(req.headers, "authorization")?.ok_or(SigV4Error::Missing)?;
    let auth = Authorization::parse(authorization)?;
    if auth.service != service {
        return Err(SigV4Error::WrongService);
    }
    let (signed_at, date_header) = signing_time(req.headers)?;
    if !auth.signed_headers.contains(&date_header) {
        return Err(malformed(format!("{date_header} is not a signed header")));
    }
    let amz_date = signed_at.amz();
    if auth.date != &amz_date[..8] {
        return Err(malformed("the credential's date is not the request's"));
    }
    if now.abs_diff(signed_at.unix()) > MAX_SKEW_SECS {
        return Err(SigV4Error::Expired);
    }
    let secret = secret_for(auth.access_key_id).ok_or(SigV4Error::UnknownAccessKey)?;
    let creq = canonical_request(req, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.date, auth.region, auth.service
    );
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(&secret, auth.date, auth.region, auth.service);
    hmac::verify(&key, sts.as_bytes(), &auth.signature).map_err(|_| SigV4Error::Mismatch)?;
    Ok(auth.access_key_id.to_owned())
}

fn malformed(why: impl Into<String>) -> SigV4Error {
    SigV4Error::Malformed(why.into())
}

/// The `Authorization` header's parts.
#[derive(Debug)]
struct Authorization<'a> {
    access_key_id: &'a str,
    /// `yyyymmdd`.
    date: &'a str,
    region: &'a str,
    service: &'a str,
    /// Lowercase, sorted, without duplicates; holds `host`.
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

impl<'a> Authorization<'a> {
    /// `AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/<service>/aws4_request,
    /// SignedHeaders=a;b;c, Signature=<hex>` (components in any order).
    fn parse(value: &'a str) -> Result<Self, SigV4Error> {
        let (scheme, components) = value
            .trim()
            .split_once([' ', '\t'])
            .ok_or_else(|| malformed("Authorization is not SigV4"))?;
        if scheme != ALGORITHM {
            return Err(malformed(format!("Authorization is not {ALGORITHM}")));
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for component in components.split(',') {
            let (name, value) = component
                .trim()
                .split_once('=')
                .ok_or_else(|| malformed("an Authorization component is not name=value"))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(malformed("unknown Authorization component")),
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("Authorization repeats {name}")));
            }
        }
        let missing = |name: &str| malformed(format!("Authorization lacks {name}"));
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;

        let scope: Vec<&str> = credential.split('/').collect();
        let (access_key_id, date, region, service) = match scope[..] {
            [id, date, region, service, TERMINATOR] if ![id, region, service].contains(&"") => {
                (id, date, region, service)
            }
            _ => {
                return Err(malformed(
                    "Credential is not <key id>/<date>/<region>/<service>/aws4_request",
                ));
            }
        };
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("the Credential's date is not yyyymmdd"));
        }

        let signed_headers: Vec<&str> = signed_headers.split(';').collect();
        if signed_headers
            .iter()
            .any(|name| name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(malformed("SignedHeaders holds an empty or uppercase name"));
        }
        if signed_headers.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(malformed("SignedHeaders is not sorted"));
        }
        if !signed_headers.contains(&"host") {
            return Err(malformed("host is not a signed header"));
        }

        let signature =
            unhex32(signature).ok_or_else(|| malformed("Signature is not 64 hex digits"))?;
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

/// The one value of header `name`, if any; two values, or one that is not visible ASCII, is
/// malformed.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed(format!("more than one {name} header")));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| malformed(format!("{name} is not visible ASCII")))
}

/// The time of signing and the header it came from: `X-Amz-Date` (`yyyymmddThhmmssZ`), else
/// `Date` (the same, or an HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`).
fn signing_time(headers: &HeaderMap) -> Result<(DateTime, &'static str), SigV4Error> {
    if let Some(value) = single(headers, "x-amz-date")? {
        let at = DateTime::parse_amz(value.trim())
            .ok_or_else(|| malformed("X-Amz-Date is not yyyymmddThhmmssZ"))?;
        return Ok((at, "x-amz-date"));
    }
    if let Some(value) = single(headers, "date")? {
        let value = value.trim();
        let at = DateTime::parse_amz(value)
            .or_else(|| DateTime::parse_http(value))
            .ok_or_else(|| malformed("Date is not an HTTP date"))?;
        return Ok((at, "date"));
    }
    Err(malformed("neither X-Amz-Date nor Date"))
}

/// A UTC time to the second, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl DateTime {
    /// `yyyymmddThhmmssZ`.
    fn parse_amz(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        Self::new(
            digits(&b[0..4])?,
            digits(&b[4..6])?,
            digits(&b[6..8])?,
            digits(&b[9..11])?,
            digits(&b[11..13])?,
            digits(&b[13..15])?,
        )
    }

    /// RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT` (the day name is not checked).
    fn parse_http(s: &str) -> Option<Self> {
        const MONTHS: [&[u8]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let b = s.as_bytes();
        if b.len() != 29
            || &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || b[19] != b':'
            || b[22] != b':'
            || &b[25..] != b" GMT"
        {
            return None;
        }
        let month = MONTHS.iter().position(|m| *m == &b[8..11])? as u32 + 1;
        Self::new(
            digits(&b[12..16])?,
            month,
            digits(&b[5..7])?,
            digits(&b[17..19])?,
            digits(&b[20..22])?,
            digits(&b[23..25])?,
        )
    }

    fn new(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Self> {
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        let valid = (1..=days_in_month).contains(&day) && hour < 24 && minute < 60 && second < 60;
        valid.then_some(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// `yyyymmddThhmmssZ`, as the string to sign holds it.
    fn amz(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Seconds since 1970-01-01T00:00:00Z (days from the civil date: Howard Hinnant's algorithm).
    fn unix(&self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// The decimal number `b` spells, when all of it is ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `method \n canonical URI \n canonical query \n name:value\n... \n signed;names \n payload
/// hash`, as bytes (a header value need not be UTF-8).
fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[&str],
) -> Result<Vec<u8>, SigV4Error> {
    let mut creq = Vec::with_capacity(512);
    for part in [
        req.method,
        &canonical_uri(req.raw_path),
        &canonical_query(req.raw_query.unwrap_or("")),
    ] {
        creq.extend_from_slice(part.as_bytes());
        creq.push(b'\n');
    }
    for name in signed_headers {
        let mut values = req.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(malformed(format!("signed header {name} is absent")));
        }
        creq.extend_from_slice(name.as_bytes());
        creq.push(b':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                creq.push(b',');
            }
            push_trimmed(&mut creq, value.as_bytes());
        }
        creq.push(b'\n');
    }
    creq.push(b'\n');
    creq.extend_from_slice(signed_headers.join(";").as_bytes());
    creq.push(b'\n');
    creq.extend_from_slice(payload_hash(req)?.as_bytes());
    Ok(creq)
}

/// `value` without leading and trailing blanks, each inner run of them one space (botocore's
/// `' '.join(value.split())`).
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let words = value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty());
    for (i, word) in words.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
}

/// The path as botocore signs it for services other than S3: dot segments and empty segments
/// removed, then the already-encoded path percent-encoded again (`%3D` -> `%253D`, `@` -> `%40`);
/// an empty path is `/`.
fn canonical_uri(raw_path: &str) -> String {
    utf8_percent_encode(&remove_dot_segments(raw_path), PATH).to_string()
}

/// botocore's `normalize_url_path`: RFC 3986's dot-segment removal, which also drops empty
/// segments (`//`); `""` is `/`.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Each `name=value` pair decoded and encoded again (unreserved characters kept, everything
/// else `%XX`), sorted by name then value, joined with `&`; a name alone has an empty value.
fn canonical_query(raw_query: &str) -> String {
    let encode = |s: &str| -> String {
        let bytes: Vec<u8> = percent_decode_str(s).collect();
        percent_encoding::percent_encode(&bytes, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(raw_query.len() + 8);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// `x-amz-content-sha256` when the client sent it (as sent: `UNSIGNED-PAYLOAD` leaves the body
/// out of the signature), else the body's SHA-256 in hex. A declared hash that is not the
/// body's is a mismatch.
fn payload_hash(req: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let declared = single(req.headers, "x-amz-content-sha256")?;
    if declared == Some(UNSIGNED_PAYLOAD) {
        return Ok(UNSIGNED_PAYLOAD.into());
    }
    let body = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    match declared {
        None => Ok(body),
        Some(declared) if declared.eq_ignore_ascii_case(&body) => Ok(declared.into()),
        Some(_) => Err(SigV4Error::Mismatch),
    }
}

/// `AWS4-HMAC-SHA256 \n amz date \n scope \n hex(sha256(canonical request))`.
fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    let hash = hex(digest::digest(&digest::SHA256, canonical_request).as_ref());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// HMAC("AWS4" + secret, date) -> region -> service -> "aws4_request".
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), TERMINATOR);
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// 64 hex digits (either case) as 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::SignableBody;
    use http::{HeaderName, HeaderValue};

    /// AWS's test-suite credentials.
    const SUITE_AKID: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z, the suite's time of signing.
    const SUITE_AT: i64 = 1_440_938_160;

    /// The credentials the botocore and aws-sigv4 requests below are signed with.
    const AKID: &str = "AKIDPORTICOEXAMPLE";
    const SECRET: &str = "portico/secret+EXAMPLEKEY";
    /// 2026-01-15T10:30:00Z.
    const AT: i64 = 1_768_473_000;
    const CONNECTION_PATH: &str = "/prod/@connections/L0SM9cOFvHcCIhw%3D";
    const BODY: &[u8] = br#"{"msg":"hi"}"#;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn request<'a>(
        method: &'a str,
        raw_path: &'a str,
        raw_query: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> SignedRequest<'a> {
        SignedRequest {
            method,
            raw_path,
            raw_query,
            headers,
            body,
        }
    }

    fn secret_of(akid: &'static str, secret: &'static str) -> impl Fn(&str) -> Option<String> {
        move |id| (id == akid).then(|| secret.to_owned())
    }

    fn verify_suite(
        req: &SignedRequest<'_>,
        now: i64,
        service: &str,
    ) -> Result<String, SigV4Error> {
        verify_for_service(req, now, service, secret_of(SUITE_AKID, SUITE_SECRET))
    }

    fn suite_authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    /// AWS's SigV4 test suite, case `get-vanilla` (`aws-sig-v4-test-suite/get-vanilla/
    /// get-vanilla.{req,creq,authz}`, as shipped with AWS's SDKs, e.g. smithy-lang/smithy-rs
    /// `aws/rust-runtime/aws-sigv4/aws-sig-v4-test-suite`, and by the scratchstack-aws-signature
    /// crate: docs.rs/crate/scratchstack-aws-signature/latest/source/src/aws-sig-v4-test-suite/):
    /// `GET /` on `example.amazonaws.com`, service `service`, region `us-east-1`.
    #[test]
    fn aws_suite_get_vanilla() {
        let map = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                &suite_authorization(
                    "host;x-amz-date",
                    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                ),
            ),
        ]);
        let req = request("GET", "/", None, &map, b"");
        let creq = canonical_request(&req, &["host", "x-amz-date"]).unwrap();
        assert_eq!(
            String::from_utf8(creq).unwrap(),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            verify_suite(&req, SUITE_AT, "service"),
            Ok(SUITE_AKID.into())
        );
        // The same request, for the management API, is scoped to the wrong service.
        assert_eq!(
            verify(&req, SUITE_AT, secret_of(SUITE_AKID, SUITE_SECRET)),
            Err(SigV4Error::WrongService)
        );
    }

    /// More of the same suite: `get-vanilla-query-order-key-case` (query sorted by encoded
    /// name), `get-header-value-order` (repeated header values joined by `,` in the order
    /// received) and `get-header-value-trim` (blanks trimmed and collapsed).
    #[test]
    fn aws_suite_query_order_and_header_values() {
        let map = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                &suite_authorization(
                    "host;x-amz-date",
                    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
                ),
            ),
        ]);
        let query = Some("Param2=value2&Param1=value1");
        let req = request("GET", "/", query, &map, b"");
        assert_eq!(
            verify_suite(&req, SUITE_AT, "service"),
            Ok(SUITE_AKID.into())
        );

        let map = headers(&[
            ("host", "example.amazonaws.com"),
            ("my-header1", "value4"),
            ("my-header1", "value1"),
            ("my-header1", "value3"),
            ("my-header1", "value2"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                &suite_authorization(
                    "host;my-header1;x-amz-date",
                    "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
                ),
            ),
        ]);
        let req = request("GET", "/", None, &map, b"");
        assert_eq!(
            verify_suite(&req, SUITE_AT, "service"),
            Ok(SUITE_AKID.into())
        );

        let map = headers(&[
            ("host", "example.amazonaws.com"),
            ("my-header1", " value1"),
            ("my-header2", "\"a   b   c\""),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                &suite_authorization(
                    "host;my-header1;my-header2;x-amz-date",
                    "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
                ),
            ),
        ]);
        let req = request("GET", "/", None, &map, b"");
        assert_eq!(
            verify_suite(&req, SUITE_AT, "service"),
            Ok(SUITE_AKID.into())
        );
    }

    /// The 2011 edition of the suite's `get-vanilla`, dated by `Date` (an HTTP date) instead of
    /// `X-Amz-Date`: service `host`, signed `date;host`.
    #[test]
    fn aws_suite_2011_get_vanilla_dated_by_date() {
        let map = headers(&[
            ("date", "Mon, 09 Sep 2011 23:36:00 GMT"),
            ("host", "host.foo.com"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, \
                 SignedHeaders=date;host, \
                 Signature=b27ccfbfa7df52a200ff74193ca6e32d4b48b8856fab7ebf1c595d0670a7e470",
            ),
        ]);
        let req = request("GET", "/", None, &map, b"");
        assert_eq!(
            verify_suite(&req, 1_315_611_360, "host"),
            Ok(SUITE_AKID.into())
        );
    }

    /// What botocore 1.44.18's `apigatewaymanagementapi` client sends for
    /// `post_to_connection(ConnectionId="L0SM9cOFvHcCIhw=", Data=b'{"msg":"hi"}')` against
    /// endpoint `https://abc.example/prod`, region `eu-west-1`, at 2026-01-15T10:30:00Z,
    /// captured with (`python3 -m venv v && v/bin/pip install botocore`):
    ///
    /// ```python
    /// import datetime, botocore.auth, botocore.session
    /// from botocore.awsrequest import AWSResponse
    /// botocore.auth.get_current_datetime = lambda: datetime.datetime(2026, 1, 15, 10, 30, 0)
    /// c = botocore.session.get_session().create_client(
    ///     "apigatewaymanagementapi", region_name="eu-west-1",
    ///     endpoint_url="https://abc.example/prod", aws_access_key_id="AKIDPORTICOEXAMPLE",
    ///     aws_secret_access_key="portico/secret+EXAMPLEKEY")  # + aws_session_token=...
    /// class Raw:
    ///     def stream(self, **kw): return iter([b""])
    /// def capture(request, **kw):
    ///     print(request.method, request.url, request.headers.items(), request.body)
    ///     return AWSResponse(request.url, 200, {}, Raw())
    /// c.meta.events.register("before-send", capture)
    /// c.post_to_connection(ConnectionId="L0SM9cOFvHcCIhw=", Data=b'{"msg":"hi"}')
    /// ```
    ///
    /// The URL's path is `/prod/@connections/L0SM9cOFvHcCIhw%3D`; botocore signs it encoded
    /// again, `/prod/%40connections/L0SM9cOFvHcCIhw%253D`. The host header is the client's.
    fn botocore_headers(session_token: bool) -> HeaderMap {
        let mut pairs = vec![
            ("host", "abc.example"),
            (
                "user-agent",
                "Botocore/1.44.18 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7 \
                 cfg/retry-mode#standard",
            ),
            ("x-amz-date", "20260115T103000Z"),
            (
                "amz-sdk-invocation-id",
                "0ffb8616-0cda-4943-be7e-ee433e8f63ef",
            ),
            ("amz-sdk-request", "attempt=1; max=3"),
            ("content-length", "12"),
        ];
        if session_token {
            pairs.push(("x-amz-security-token", "FQoGZXIvYXdzEXAMPLETOKEN=="));
            pairs.push((
                "authorization",
                "AWS4-HMAC-SHA256 \
                 Credential=AKIDPORTICOEXAMPLE/20260115/eu-west-1/execute-api/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, \
                 Signature=ef81174895a36369ed2dac3fe5cdf988da2f55e853e1d9f940600913aa821180",
            ));
        } else {
            pairs.push((
                "authorization",
                "AWS4-HMAC-SHA256 \
                 Credential=AKIDPORTICOEXAMPLE/20260115/eu-west-1/execute-api/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=d91d05ee52bd6ca447495f2f59d8a4be9643c7c5f8f360867ebf5457cbce6bfa",
            ));
        }
        headers(&pairs)
    }

    fn ours() -> impl Fn(&str) -> Option<String> {
        secret_of(AKID, SECRET)
    }

    #[test]
    fn botocore_post_to_connection_verifies() {
        for session_token in [false, true] {
            let map = botocore_headers(session_token);
            let req = request("POST", CONNECTION_PATH, None, &map, BODY);
            assert_eq!(verify(&req, AT + 5, ours()), Ok(AKID.into()));
            // Tampering with what botocore signs.
            let req = request("POST", CONNECTION_PATH, None, &map, br#"{"msg":"ho"}"#);
            assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
            let other = "/prod/@connections/M1TN0dPGwIdJDix%3D";
            let req = request("POST", other, None, &map, BODY);
            assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
            let mut moved = map.clone();
            moved.insert("host", HeaderValue::from_static("xyz.example"));
            let req = request("POST", CONNECTION_PATH, None, &moved, BODY);
            assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
            // What it does not sign may change.
            let mut moved = map.clone();
            moved.insert(
                "amz-sdk-request",
                HeaderValue::from_static("attempt=2; max=3"),
            );
            let req = request("POST", CONNECTION_PATH, None, &moved, BODY);
            assert_eq!(verify(&req, AT, ours()), Ok(AKID.into()));
        }
    }

    /// Signs like the AWS SDK for Rust does (crate `aws-sigv4`): an independent signer.
    fn aws_sigv4_sign(
        method: &str,
        uri: &str,
        pairs: &[(&str, &str)],
        body: aws_sigv4::http_request::SignableBody<'_>,
        service: &str,
        at: i64,
        settings: aws_sigv4::http_request::SigningSettings,
    ) -> HeaderMap {
        use aws_sigv4::http_request::{SignableRequest, sign};
        use std::time::{Duration, UNIX_EPOCH};
        let identity =
            aws_credential_types::Credentials::new(AKID, SECRET, None, None, "test").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name(service)
            .time(UNIX_EPOCH + Duration::from_secs(at as u64))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(method, uri, pairs.iter().copied(), body).unwrap();
        let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
        let mut map = headers(pairs);
        for (name, value) in instructions.headers() {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn aws_signed_post(service: &str, at: i64) -> HeaderMap {
        aws_sigv4_sign(
            "POST",
            &format!("https://abc.example{CONNECTION_PATH}"),
            &[
                ("host", "abc.example"),
                ("content-type", "application/json"),
            ],
            SignableBody::Bytes(BODY),
            service,
            at,
            Default::default(),
        )
    }

    #[test]
    fn aws_sigv4_signed_post_to_connection_verifies() {
        let map = aws_signed_post(SERVICE, AT);
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        assert_eq!(verify(&req, AT, ours()), Ok(AKID.into()));
        // Changed body, path, signed header, secret.
        let req = request("POST", CONNECTION_PATH, None, &map, b"{}");
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
        let req = request(
            "POST",
            "/prod/@connections/L0SM9cOFvHcCIhw=",
            None,
            &map,
            BODY,
        );
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
        let req = request("DELETE", CONNECTION_PATH, None, &map, BODY);
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
        let mut changed = map.clone();
        changed.insert("content-type", HeaderValue::from_static("text/plain"));
        let req = request("POST", CONNECTION_PATH, None, &changed, BODY);
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        let wrong_secret = secret_of(AKID, "portico/secret+EXAMPLEKEz");
        assert_eq!(verify(&req, AT, wrong_secret), Err(SigV4Error::Mismatch));
    }

    /// A query (repeated names, reserved and non-ASCII characters), repeated and padded header
    /// values, a session token: canonicalised as the AWS SDK for Rust signs them.
    #[test]
    fn aws_sigv4_signed_query_and_headers_verify() {
        let query = "b=2&a=%2F%20x&a=1&%C3%A9t%C3%A9=~ok&flag";
        let pairs = [
            ("host", "abc.example:8443"),
            ("x-custom", "  one   two  "),
            ("x-multi", "first"),
            ("x-multi", "second"),
        ];
        let map = aws_sigv4_sign(
            "GET",
            &format!("https://abc.example:8443/prod/@connections/abc%2Bdef?{query}"),
            &pairs,
            SignableBody::Bytes(b""),
            SERVICE,
            AT,
            Default::default(),
        );
        let req = request(
            "GET",
            "/prod/@connections/abc%2Bdef",
            Some(query),
            &map,
            b"",
        );
        assert_eq!(verify(&req, AT, ours()), Ok(AKID.into()));
        let req = request(
            "GET",
            "/prod/@connections/abc%2Bdef",
            Some("b=2"),
            &map,
            b"",
        );
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));
    }

    /// `x-amz-content-sha256`: a declared hash must be the body's; `UNSIGNED-PAYLOAD` leaves the
    /// body out of the signature.
    #[test]
    fn declared_payload_hash() {
        use aws_sigv4::http_request::{PayloadChecksumKind, SigningSettings};
        let body = SignableBody::Bytes(BODY);
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let uri = format!("https://abc.example{CONNECTION_PATH}");
        let pairs = [("host", "abc.example")];
        let map = aws_sigv4_sign("POST", &uri, &pairs, body, SERVICE, AT, settings.clone());
        assert!(map.contains_key("x-amz-content-sha256"));
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        assert_eq!(verify(&req, AT, ours()), Ok(AKID.into()));
        let req = request("POST", CONNECTION_PATH, None, &map, b"{}");
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Mismatch));

        let unsigned = SignableBody::UnsignedPayload;
        let map = aws_sigv4_sign("POST", &uri, &pairs, unsigned, SERVICE, AT, settings);
        assert_eq!(map["x-amz-content-sha256"], UNSIGNED_PAYLOAD);
        let req = request("POST", CONNECTION_PATH, None, &map, b"anything");
        assert_eq!(verify(&req, AT, ours()), Ok(AKID.into()));
    }

    #[test]
    fn unknown_key_wrong_service_and_skew() {
        let map = aws_signed_post(SERVICE, AT);
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        let nobody = |_: &str| None;
        assert_eq!(verify(&req, AT, nobody), Err(SigV4Error::UnknownAccessKey));
        assert_eq!(
            verify(&req, AT, secret_of("AKIDSOMEONEELSE", SECRET)),
            Err(SigV4Error::UnknownAccessKey)
        );

        // 15 minutes either way is allowed, 16 is not.
        assert_eq!(verify(&req, AT + 15 * 60, ours()), Ok(AKID.into()));
        assert_eq!(verify(&req, AT - 15 * 60, ours()), Ok(AKID.into()));
        assert_eq!(verify(&req, AT + 16 * 60, ours()), Err(SigV4Error::Expired));
        assert_eq!(verify(&req, AT - 16 * 60, ours()), Err(SigV4Error::Expired));
        assert_eq!(verify(&req, i64::MIN, ours()), Err(SigV4Error::Expired));

        let map = aws_signed_post("s3", AT);
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::WrongService));
    }

    #[test]
    fn missing_authorization() {
        let mut map = aws_signed_post(SERVICE, AT);
        map.remove("authorization");
        let req = request("POST", CONNECTION_PATH, None, &map, BODY);
        assert_eq!(verify(&req, AT, ours()), Err(SigV4Error::Missing));
    }

    #[test]
    fn malformed_requests() {
        let signed = aws_signed_post(SERVICE, AT);
        let good = signed["authorization"].to_str().unwrap().to_owned();
        let signature = good.rsplit_once("Signature=").unwrap().1.to_owned();
        let credential = format!("Credential={AKID}/20260115/eu-west-1/execute-api/aws4_request");
        let with = |authorization: &str| {
            let mut map = signed.clone();
            map.insert(
                "authorization",
                HeaderValue::from_str(authorization).unwrap(),
            );
            map
        };
        let refused = |map: &HeaderMap| {
            let req = request("POST", CONNECTION_PATH, None, map, BODY);
            verify(&req, AT, ours()).unwrap_err()
        };
        let garbage = [
            "garbage".to_owned(),
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned(),
            "AWS4-HMAC-SHA256".to_owned(),
            "AWS4-HMAC-SHA256 garbage".to_owned(),
            "AWS4-ECDSA-P256-SHA256 Credential=x".to_owned(),
            good.replace("Signature=", "Sig="),
            good.replace(", Signature=", ", Credential=x, Signature="),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=content-type;host;x-amz-date"),
            format!("AWS4-HMAC-SHA256 {credential}, Signature={signature}"),
            good.replace(&signature, &signature[..63]),
            good.replace(&signature, &format!("{}g", &signature[..63])),
            good.replace("/aws4_request", "/aws4_request/x"),
            good.replace("/aws4_request", ""),
            good.replace("/20260115/", "/2026-01-15/"),
            good.replace(&format!("{AKID}/"), "/"),
            // The credential's date is not the request's.
            good.replace("/20260115/", "/20260116/"),
            good.replace(
                "content-type;host;x-amz-date",
                "host;content-type;x-amz-date",
            ),
            good.replace(
                "content-type;host;x-amz-date",
                "Content-Type;host;x-amz-date",
            ),
            good.replace("content-type;host;x-amz-date", "content-type;x-amz-date"),
            good.replace("content-type;host;x-amz-date", "content-type;host"),
            good.replace(
                "content-type;host;x-amz-date",
                "content-type;host;;x-amz-date",
            ),
            // A signed header the request lacks.
            good.replace("content-type;host;", "content-type;host;x-absent;"),
        ];
        for authorization in &garbage {
            assert!(
                matches!(refused(&with(authorization)), SigV4Error::Malformed(_)),
                "{authorization}"
            );
        }

        // Two Authorization headers; an unparseable, a missing or a repeated X-Amz-Date.
        let mut map = signed.clone();
        map.append("authorization", HeaderValue::from_str(&good).unwrap());
        assert!(matches!(refused(&map), SigV4Error::Malformed(_)));
        for date in [
            "2026-01-15T10:30:00Z",
            "20260115T103000",
            "20261315T103000Z",
        ] {
            let mut map = signed.clone();
            map.insert("x-amz-date", HeaderValue::from_static(date));
            assert!(matches!(refused(&map), SigV4Error::Malformed(_)), "{date}");
        }
        let mut map = signed.clone();
        map.remove("x-amz-date");
        assert!(matches!(refused(&map), SigV4Error::Malformed(_)));
        let mut map = signed.clone();
        map.append("x-amz-date", HeaderValue::from_static("20260115T103000Z"));
        assert!(matches!(refused(&map), SigV4Error::Malformed(_)));
    }

    #[test]
    fn canonical_uri_encodes_the_received_path_again() {
        assert_eq!(
            canonical_uri(CONNECTION_PATH),
            "/prod/%40connections/L0SM9cOFvHcCIhw%253D"
        );
        assert_eq!(
            canonical_uri("/prod/%40connections/abc%3D"),
            "/prod/%2540connections/abc%253D"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/-._~AZaz09/é"), "/-._~AZaz09/%C3%A9");
        assert_eq!(canonical_uri("//a/./b/../c//"), "/a/c/");
    }

    #[test]
    fn canonical_query_decodes_encodes_and_sorts() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(
            canonical_query("b=2&a=%2f%20x+y&a=1&%C3%A9=~&k"),
            "%C3%A9=~&a=%2F%20x%2By&a=1&b=2&k="
        );
    }

    #[test]
    fn times() {
        let amz = DateTime::parse_amz("20150830T123600Z").unwrap();
        assert_eq!(
            (amz.unix(), amz.amz().as_str()),
            (SUITE_AT, "20150830T123600Z")
        );
        let http = DateTime::parse_http("Mon, 09 Sep 2011 23:36:00 GMT").unwrap();
        assert_eq!(
            (http.unix(), http.amz().as_str()),
            (1_315_611_360, "20110909T233600Z")
        );
        assert_eq!(DateTime::parse_amz("19700101T000000Z").unwrap().unix(), 0);
        assert_eq!(
            DateTime::parse_amz("20240229T000000Z").unwrap().unix(),
            1_709_164_800
        );
        for bad in [
            "20230229T000000Z",
            "20240230T000000Z",
            "20241301T000000Z",
            "20240101T240000Z",
        ] {
            assert_eq!(DateTime::parse_amz(bad), None, "{bad}");
        }
        assert_eq!(DateTime::parse_http("Mon, 09 Sep 2011 23:36:00 UTC"), None);
        assert_eq!(DateTime::parse_http("Mon, 09 Sept 2011 23:36:00 GMT"), None);
    }
}
