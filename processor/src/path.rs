//! Where a span's URL path comes from: taking the path out of an HTTP
//! attribute value (`url.path`, `url.full`, `http.target`, `http.url`,
//! `http.route`) or out of a server span's name (`GET /isAlive`).
//!
//! Both return subslices of their input: they run for every span and must
//! not allocate. Neither decodes percent-escapes nor normalises the path;
//! the noise globs see it as sent.

use crate::bytes::find_any;

/// The longest HTTP method token [`from_span_name`] accepts.
const MAX_METHOD_LEN: usize = 20;

/// The path part of an attribute value that may be a path, a target
/// (`/p?q`) or an absolute URL.
///
/// - If the value starts with a scheme and `://` (`scheme://authority...`),
///   skip scheme and authority: the path starts at the first `/`, `?` or `#`
///   after the authority; if the authority is followed by nothing, or by
///   `?`/`#`, the path is empty.
/// - Then strip from the first `?` or `#` onward.
///
/// Returns a subslice (no allocation).
#[must_use]
pub fn from_attribute(value: &[u8]) -> &[u8] {
    let path = match after_scheme(value) {
        Some(rest) => {
            let authority_end = find_any(rest, [b'/', b'?', b'#']).unwrap_or(rest.len());
            &rest[authority_end..]
        }
        None => value,
    };
    let end = find_any(path, [b'?', b'#']).unwrap_or(path.len());
    &path[..end]
}

/// What follows `scheme://` when `value` starts with one.
///
/// The scheme must be a real one (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`), not just whatever precedes the first "://": a target like
/// `/login?next=http://h/isAlive` is a path with a URL in its query, and must
/// not be taken for `/isAlive`.
fn after_scheme(value: &[u8]) -> Option<&[u8]> {
    if !value.first()?.is_ascii_alphabetic() {
        return None;
    }
    let scheme_len = value
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    value[scheme_len..].strip_prefix(b"://")
}

/// For a server span named like `GET /isAlive` (or `GET /isAlive?x=1`): an
/// HTTP method token (1..=20 ASCII uppercase letters or '_', e.g. GET, POST,
/// OPTIONS, `_OTHER`), ONE space, then a path starting with '/'; the path
/// runs to the end of the name or to the first space/'?'/'#'. Otherwise
/// None.
#[must_use]
pub fn from_span_name(name: &[u8]) -> Option<&[u8]> {
    // A name that is all method characters (`GET`, or a token too long to be
    // a method) has no path: `position` finds nothing and we return None.
    let method_len = name
        .iter()
        .take(MAX_METHOD_LEN + 1)
        .position(|&b| !(b.is_ascii_uppercase() || b == b'_'))?;
    if method_len == 0 {
        return None;
    }
    let target = name[method_len..].strip_prefix(b" ")?;
    if target.first() != Some(&b'/') {
        return None;
    }
    let end = find_any(target, [b' ', b'?', b'#']).unwrap_or(target.len());
    Some(&target[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_attribute_values() {
        let cases: [(&str, &str); 22] = [
            ("http://host:8080/isAlive?x=1#f", "/isAlive"),
            ("https://h/", "/"),
            ("https://h", ""),
            ("https://h?q=1", ""),
            ("https://h#f", ""),
            ("/isAlive?x", "/isAlive"),
            ("/p#frag", "/p"),
            ("/users/{id}", "/users/{id}"),
            ("/", "/"),
            ("", ""),
            ("?q", ""),
            ("http://u:p@h/x", "/x"),
            ("http://[::1]:80/x", "/x"),
            ("http://[::1]/", "/"),
            ("HTTPS://H/A?b", "/A"),
            ("svc+h2.x-y://h/a/b", "/a/b"),
            ("http://h/a/../b", "/a/../b"),
            // A URL in the query is not the value's scheme.
            ("/login?next=http://h/isAlive", "/login"),
            ("/r/http://h/isAlive", "/r/http://h/isAlive"),
            // Not schemes: must start with a letter, no other characters.
            ("1http://h/x", "1http://h/x"),
            ("ht tp://h/x", "ht tp://h/x"),
            ("://h/x", "://h/x"),
        ];
        for (value, want) in cases {
            assert_eq!(from_attribute(value.as_bytes()), want.as_bytes(), "{value:?}");
        }
        assert_eq!(from_attribute(b"http://h/\xff?x"), b"/\xff");
    }

    #[test]
    fn paths_from_span_names() {
        let cases: [(&str, Option<&str>); 19] = [
            ("GET /metrics", Some("/metrics")),
            ("GET /metrics?x", Some("/metrics")),
            ("GET /metrics#f", Some("/metrics")),
            ("POST /a b", Some("/a")),
            ("OPTIONS /", Some("/")),
            ("_OTHER /isAlive", Some("/isAlive")),
            ("GET /users/{id}", Some("/users/{id}")),
            ("ABCDEFGHIJKLMNOPQRST /x", Some("/x")), // 20 letters
            ("ABCDEFGHIJKLMNOPQRSTU /x", None),      // 21 letters
            ("GET", None),
            ("GET ", None),
            ("get /x", None),
            ("Get /x", None),
            ("GET  /x", None),
            ("GET x", None),
            ("GET\t/x", None),
            (" /x", None),
            ("/x", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(from_span_name(name.as_bytes()), want.map(str::as_bytes), "{name:?}");
        }
    }
}
