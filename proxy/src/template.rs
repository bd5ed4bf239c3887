//! `$context.*` templates: parsed once (at `Runtime` build), rendered per request. The
//! values come from [`crate::context`].
//!
//! Used by the access log ([`Mode::AccessLog`]: values JSON-escaped, missing values `-`, as
//! AWS) and by gateway response bodies ([`Mode::GatewayResponse`]: values raw, missing values
//! empty; `$context.error.messageString` is the JSON-quoted message).
//! Entry points: [`Template::parse`], [`Template::render`].

use crate::context::{Var, write_authorizer};
use crate::pipeline::RequestCtx;
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(Box<str>),
    Var(Var),
    /// A `$context.x` this build does not know: renders `-` in access logs.
    Unknown,
    /// `$context.authorizer.<key>`: `principalId` or `claims.<name>` (set by the auth phase).
    Authorizer(Box<str>),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn json_escaping_covers_quotes_backslashes_and_controls() {
        let mut s = String::new();
        json_escape_into("a\"b\\c\nd\u{1}é", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001é");
    }
}
