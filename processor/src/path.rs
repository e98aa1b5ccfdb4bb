//! Where a span's URL path comes from: taking the path out of an HTTP
//! attribute value (`url.path`, `url.full`, `http.target`, `http.url`,
//! `http.route`) or out of a server span's name (`GET /isAlive`).
//!
//! Both return subslices of their input: they run for every span and must
//! not allocate. [`normalise`] then writes the path the noise globs see:
//! frameworks write one path many ways.

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

/// Whether [`normalise`] would change `path`: it holds a `%` escape, a `;`
/// path parameter, a repeated slash, or ends in a slash. Most paths hold
/// none, and are matched as they are.
#[inline]
#[must_use]
pub fn needs_normalising(path: &[u8]) -> bool {
    (path.len() > 1 && path.last() == Some(&b'/'))
        || find_any(path, [b'%', b';']).is_some()
        || path.windows(2).any(|w| w == b"//")
}

/// The path the noise globs match, written to `out` (cleared first):
///
/// 1. `;name=value` path parameters are cut from each segment
///    (`/app;jsessionid=AB12/isAlive` reads `/app/isAlive`);
/// 2. percent escapes are decoded (`/is%41live` reads `/isAlive`), except
///    `%2F` and `%2f`, which would make a new segment, and escapes that do
///    not decode to a byte (`%zz` stays);
/// 3. runs of slashes become one (`//actuator//health`);
/// 4. a trailing slash goes (`/isAlive/`), except on the root `/`.
///
/// Parameters are cut before decoding, so an encoded `%3B` is a character
/// of the segment, not a parameter.
pub fn normalise(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    let mut in_param = false;
    while i < path.len() {
        let b = path[i];
        if b == b'/' {
            in_param = false;
            if out.last() != Some(&b'/') {
                out.push(b'/');
            }
            i += 1;
            continue;
        }
        if in_param {
            i += 1;
            continue;
        }
        if b == b';' {
            in_param = true;
            i += 1;
            continue;
        }
        if b == b'%'
            && let Some(v) = path.get(i + 1..i + 3).and_then(hex_byte)
            && v != b'/'
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    if out.len() > 1 && out.last() == Some(&b'/') {
        out.pop();
    }
}

/// The byte two hex digits spell.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(two[0])? * 16 + digit(two[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: the ways frameworks write one path.
    /// Guarantees: each normalises to the plain form, and a path that needs
    /// nothing is reported so and left as it is.
    #[test]
    fn paths_are_normalised() {
        let cases: [(&str, &str); 16] = [
            ("/isAlive", "/isAlive"),
            ("/isAlive/", "/isAlive"),
            ("//isAlive", "/isAlive"),
            ("/app//internal///health", "/app/internal/health"),
            ("/app;jsessionid=AB12/isAlive", "/app/isAlive"),
            ("/isAlive;jsessionid=AB12", "/isAlive"),
            ("/a;x=1;y=2/b;z/", "/a/b"),
            ("/is%41live", "/isAlive"),
            ("/is%61%4c%69ve", "/isaLive"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%3Bb/c", "/a;b/c"),
            ("/bad%zz/x%4", "/bad%zz/x%4"),
            ("/", "/"),
            ("//", "/"),
            ("", ""),
            ("/metrics/%20", "/metrics/ "),
        ];
        let mut out = Vec::new();
        for (path, want) in cases {
            normalise(path.as_bytes(), &mut out);
            assert_eq!(String::from_utf8_lossy(&out), want, "{path}");
            if !needs_normalising(path.as_bytes()) {
                assert_eq!(path, want, "{path} needs normalising but is not reported so");
            }
        }
    }

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
