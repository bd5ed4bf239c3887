//! Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the message, so the
//! gateway never passes them on: not the client's to a backend, not a backend's to the client.
//! The backend client ([`crate::pool`]) drops them from responses as it parses the head; the
//! pipeline strips a client's request with [`strip`] as it enters, before any phase reads its
//! headers or a mapping sets one (so a client's `Connection: x-user-id` cannot remove the
//! caller id the gateway maps from a token), and again before forwarding (mapped headers).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers (RFC 9110 7.6.1, plus `keep-alive` and `proxy-connection`), in
/// the order of the bits [`bit`] returns.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers a `Connection` list cannot remove: the message's framing and target were read
/// from them already, and removing them would leave the message without either.
static FRAMING: [HeaderName; 2] = [header::HOST, header::CONTENT_LENGTH];

/// The bit of `name` in [`HOP_BY_HOP`], 0 when it is end-to-end.
pub fn bit(name: &str) -> u16 {
    match name {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-authenticate" => 1 << 2,
        "proxy-authorization" => 1 << 3,
        "proxy-connection" => 1 << 4,
        "te" => 1 << 5,
        "trailer" => 1 << 6,
        "transfer-encoding" => 1 << 7,
        "upgrade" => 1 << 8,
        _ => 0,
    }
}

/// The comma-separated tokens of a `Connection` (or `Transfer-Encoding`) value, trimmed, empty
/// ones skipped; a value that is not visible ASCII has none.
pub fn tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// Runs on every forwarded request, so it looks up and removes only what is present and
/// allocates nothing: one pass over the names, then one removal per header found.
pub fn strip(h: &mut HeaderMap) {
    let present = h.keys().fold(0u16, |acc, n| acc | bit(n.as_str()));
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Names listed in Connection that are not hop-by-hop already (`close` and
        // `keep-alive` are the usual values: nothing more to remove then).
        let mut listed: Vec<HeaderName> = Vec::new();
        for token in h.get_all(header::CONNECTION).iter().flat_map(tokens) {
            if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
                && bit(name.as_str()) == 0
                && !FRAMING.contains(&name)
                && h.contains_key(&name)
            {
                listed.push(name);
            }
        }
        for n in listed {
            h.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(KEEP_ALIVE, "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("proxy-authorization", "x".parse().unwrap());
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn hop_by_hop_stripping_keeps_end_to_end_headers() {
        // The usual backend response: only `Connection: keep-alive` goes.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        h.insert(header::DATE, "x".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 2);
        assert!(!h.contains_key(header::CONNECTION));
        // Names listed in Connection go, whatever their case; absent ones are fine.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "Close, X-A".parse().unwrap());
        h.append(header::CONNECTION, "x-missing,,upgrade".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert("x-b", "2".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-b"));
        // Host and Content-Length stay whatever Connection says.
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            "host, content-length, x-a".parse().unwrap(),
        );
        h.insert(header::HOST, "api.example".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key(header::HOST) && h.contains_key(header::CONTENT_LENGTH));
        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
    }
}
