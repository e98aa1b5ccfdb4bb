//! An independent scan for personal numbers left in a batch.
//!
//! This deliberately shares no code with the processor's detector: it
//! decodes the batch with the `opentelemetry-proto` prost types and checks
//! every text-carrying field with a plain, slow validator written from the
//! rules. If the two ever disagree, an audit says so.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// A personal number found after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residual {
    /// Hex span id; empty for resource and scope fields.
    pub span_id: String,
    /// Where, e.g. `span.attributes["db.statement"]`. Digit runs in keys are
    /// starred, so the path never repeats the number.
    pub field: String,
}

/// True if `d` (11 ASCII digits) is a valid fødselsnummer, D-, H- or
/// synthetic number: both mod-11 checks (with the 2032 rule for k1) and a
/// real date after removing the day/month offsets.
pub fn is_valid_number(d: &[u8]) -> bool {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n: Vec<u32> = d.iter().map(|b| u32::from(b - b'0')).collect();
    let sum = |w: &[u32]| -> u32 { w.iter().zip(&n).map(|(a, b)| a * b).sum() };
    // k1: the weighted sum over the first 10 digits leaves 0..=3 (2032 rule).
    if sum(&[3, 7, 6, 1, 8, 9, 4, 5, 2, 1]) % 11 > 3 {
        return false;
    }
    if sum(&[5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1]) % 11 != 0 {
        return false;
    }
    let mut day = n[0] * 10 + n[1];
    let mut month = n[2] * 10 + n[3];
    let year = n[4] * 10 + n[5];
    if day > 40 {
        day -= 40;
    }
    if month > 80 {
        month -= 80;
    } else if month > 40 {
        month -= 40;
    }
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// What may join the 6 and the 5 digits of the split form: typed (space,
/// dash, tab), from a word processor (no-break space, narrow no-break space,
/// en dash), or as a URL query encodes a typed one (`+`, `%20`, `%2D`,
/// `%C2%A0`, compared without regard to case).
const SPLIT_SEPARATORS: [&str; 10] =
    [" ", "-", "\t", "\u{a0}", "\u{202f}", "\u{2013}", "+", "%20", "%2d", "%c2%a0"];

/// Every valid personal number in `text`: maximal 11-digit runs, and the
/// split form (a maximal 6-digit run, a separator, 5 digits with no digit
/// after them); a run led by a percent escape's hex digits is read with and
/// without them. Text with a percent-encoded digit (`%30` to `%39`) is also
/// read URL-decoded, and the larger count wins (a number as written still
/// counts when an encoded digit glued to it makes a longer run decoded).
pub fn numbers_in(text: &[u8]) -> usize {
    let as_written = numbers_as_written(text);
    match url_decoded(text) {
        Some(decoded) => as_written.max(numbers_as_written(&decoded)),
        None => as_written,
    }
}

fn numbers_as_written(text: &[u8]) -> usize {
    let runs = digit_runs(text);
    let mut found = 0;
    for &(run_start, e) in &runs {
        // The run as written, and (when a percent escape's hex digits lead
        // it) without them; the two never both have a number's shape.
        let stripped = run_start + escape_hex(text, run_start, e);
        let readings: &[usize] =
            if stripped == run_start { &[run_start] } else { &[run_start, stripped] };
        for &s in readings {
            if number_at(text, s, e) {
                found += 1;
            }
        }
    }
    found
}

/// Whether `text[at..]` starts with `%30` to `%39`.
fn encoded_digit_at(text: &[u8], at: usize) -> bool {
    matches!(text.get(at..), Some([b'%', b'3', d, ..]) if d.is_ascii_digit())
}

/// `text` with every `%XX` escape decoded, if it has a percent-encoded
/// digit; `None` otherwise (nothing to read again).
fn url_decoded(text: &[u8]) -> Option<Vec<u8>> {
    if !(0..text.len()).any(|i| encoded_digit_at(text, i)) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = text.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if text[i] == b'%' && hex.is_some_and(|h| !h.starts_with('+')) => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Whether the digits `text[s..e]` (a run, or a run less its escape
/// digits) are a valid number whole or as the 6 digits of the split form.
fn number_at(text: &[u8], s: usize, e: usize) -> bool {
    if e - s == 11 {
        return is_valid_number(&text[s..e]);
    }
    if e - s != 6 {
        return false;
    }
    for sep in SPLIT_SEPARATORS {
        let after = e + sep.len();
        let Some(joint) = text.get(e..after) else { continue };
        if !joint.eq_ignore_ascii_case(sep.as_bytes()) {
            continue;
        }
        let Some(five) = text.get(after..after + 5) else { continue };
        let ends = text.get(after + 5).is_none_or(|b| !b.is_ascii_digit());
        if five.iter().all(u8::is_ascii_digit) && ends {
            let joined: Vec<u8> = text[s..e].iter().chain(five).copied().collect();
            return is_valid_number(&joined);
        }
    }
    false
}

/// The digits of `text` once single separators (space, dot, dash, and
/// `%20`) between digits are taken out, as (digits, start, end) per
/// stretch: how a card or account number reads when written in groups.
fn digit_stretches(text: &[u8]) -> Vec<(Vec<u8>, usize, usize)> {
    let mut out: Vec<(Vec<u8>, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::new();
        loop {
            while i < text.len() && text[i].is_ascii_digit() {
                digits.push(text[i]);
                i += 1;
            }
            let gap = match &text[i.min(text.len())..] {
                [b' ' | b'.' | b'-', ..] => 1,
                [0xc2, 0xa0, ..] => 2,
                [b'%', b'2', b'0', ..] => 3,
                _ => 0,
            };
            if gap > 0 && text.get(i + gap).is_some_and(u8::is_ascii_digit) {
                i += gap;
            } else {
                break;
            }
        }
        out.push((digits, start, i));
    }
    out
}

/// How many values of the built-in detector `name` are in `text`, by rules
/// written apart from the engine's: a stretch of grouped digits holding a
/// mod-11 account number or a Luhn-valid card number as its whole, a `+47`
/// code followed by 8 digits, an address with a dotted domain, a bearer
/// token or a JWT. Looser than the engine where that is simpler (it may
/// count what the engine rightly leaves), never stricter on the forms the
/// README lists.
pub fn others_in(name: &str, text: &[u8]) -> usize {
    let lower = text.to_ascii_lowercase();
    match name {
        "account-number" => digit_stretches(text)
            .iter()
            .filter(|(d, s, e)| {
                let plain = e - s == 11;
                let printed = e - s == 13 && matches!(text[s + 4], b' ' | b'.');
                d.len() == 11 && (plain || printed) && {
                    let w = [5u32, 4, 3, 2, 7, 6, 5, 4, 3, 2];
                    let sum: u32 = d.iter().zip(w).map(|(c, w)| u32::from(c - b'0') * w).sum();
                    let k = (11 - sum % 11) % 11;
                    k < 10 && k == u32::from(d[10] - b'0')
                }
            })
            .count(),
        "payment-card" => digit_stretches(text)
            .iter()
            .filter(|(d, _, _)| {
                (13..=19).contains(&d.len()) && {
                    let mut sum = 0;
                    for (i, c) in d.iter().rev().enumerate() {
                        let v = u32::from(c - b'0') * if i % 2 == 1 { 2 } else { 1 };
                        sum += v / 10 + v % 10;
                    }
                    sum % 10 == 0
                }
            })
            .count(),
        "phone-no" => {
            let mut n = 0;
            for code in [&b"+47"[..], b"0047", b"%2b47"] {
                let mut from = 0;
                while let Some(p) = find(&lower[from..], code) {
                    let after = from + p + code.len();
                    let rest = &text[after..];
                    let digits: Vec<u8> =
                        rest.iter().take(20).copied().filter(u8::is_ascii_digit).take(8).collect();
                    // Allow separators: the first 8 digits within 20 bytes.
                    if digits.len() == 8 && digits[0] >= b'2' {
                        n += 1;
                    }
                    from = after;
                }
            }
            n
        }
        "email" => {
            let mut n = 0;
            for (i, _) in lower.iter().enumerate() {
                let at = if lower[i] == b'@' {
                    1
                } else if lower[i..].starts_with(b"%40") {
                    3
                } else {
                    continue;
                };
                let local = i > 0
                    && (lower[i - 1].is_ascii_alphanumeric() || b"._%+-".contains(&lower[i - 1]));
                let domain: Vec<u8> = lower[i + at..]
                    .iter()
                    .copied()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
                    .collect();
                let tld_ok = domain
                    .split(|b| *b == b'.')
                    .skip(1)
                    .any(|label| label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic));
                if local && tld_ok {
                    n += 1;
                }
            }
            n
        }
        "bearer-token" => {
            let mut n = 0;
            let mut from = 0;
            while let Some(p) = find(&lower[from..], b"bearer") {
                let at = from + p + 6;
                let gap = text[at..].iter().take_while(|b| **b == b' ' || **b == b'+').count();
                let token = text[at + gap..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b))
                    .count();
                // A pseudonym (`bearer-token:key:letters`) is not a token.
                let then = text.get(at + gap + token);
                if gap > 0 && token >= 8 && then != Some(&b':') {
                    n += 1;
                }
                from = at;
            }
            let mut from = 0;
            while let Some(p) = find(&text[from..], b"eyJ") {
                let s = from + p;
                let jwt: Vec<u8> = text[s..]
                    .iter()
                    .copied()
                    .take_while(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
                    .collect();
                if jwt.iter().filter(|b| **b == b'.').count() >= 2 && jwt.len() > 20 {
                    n += 1;
                }
                from = s + jwt.len().max(3);
            }
            n
        }
        _ => 0,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Digits at the start of the run `text[s..e]` that belong to a percent
/// escape before it (`%2013097248022` is an encoded space, then 11 digits).
pub fn escape_hex(text: &[u8], s: usize, e: usize) -> usize {
    if s >= 1 && text[s - 1] == b'%' {
        (e - s).min(2)
    } else if s >= 2 && text[s - 2] == b'%' && text[s - 1].is_ascii_hexdigit() {
        1
    } else {
        0
    }
}

/// The maximal runs of ASCII digits in `text`, as byte ranges.
pub fn digit_runs(text: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            let s = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// Stars every digit run of 6 or more in `text`, for printing keys.
fn quote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    for (s, e) in digit_runs(bytes) {
        if e - s >= 6 {
            out[s..e].fill(b'*');
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Scans every field of `req` that can carry text.
pub fn scan(req: &ExportTraceServiceRequest) -> Vec<Residual> {
    scan_with(req, &[])
}

/// Like [`scan`], and also for the built-in detectors named in `others`
/// (those a config turned on: `email`, `payment-card`, ...).
pub fn scan_with(req: &ExportTraceServiceRequest, others: &[String]) -> Vec<Residual> {
    let mut found = Vec::new();
    let mut check = |span_id: &[u8], field: String, text: &[u8]| {
        let n = numbers_in(text) + others.iter().map(|name| others_in(name, text)).sum::<usize>();
        for _ in 0..n {
            found.push(Residual { span_id: hex(span_id), field: field.clone() });
        }
    };
    for rs in &req.resource_spans {
        if let Some(r) = &rs.resource {
            attributes(&r.attributes, "resource.attributes", &[], &mut check);
        }
        for ss in &rs.scope_spans {
            if let Some(s) = &ss.scope {
                check(&[], "scope.name".into(), s.name.as_bytes());
                check(&[], "scope.version".into(), s.version.as_bytes());
                attributes(&s.attributes, "scope.attributes", &[], &mut check);
            }
            for sp in &ss.spans {
                let id = sp.span_id.as_slice();
                check(id, "span.name".into(), sp.name.as_bytes());
                check(id, "span.trace_state".into(), sp.trace_state.as_bytes());
                attributes(&sp.attributes, "span.attributes", id, &mut check);
                for (i, ev) in sp.events.iter().enumerate() {
                    check(id, format!("span.events[{i}].name"), ev.name.as_bytes());
                    attributes(
                        &ev.attributes,
                        &format!("span.events[{i}].attributes"),
                        id,
                        &mut check,
                    );
                }
                for (i, l) in sp.links.iter().enumerate() {
                    check(id, format!("span.links[{i}].trace_state"), l.trace_state.as_bytes());
                    attributes(
                        &l.attributes,
                        &format!("span.links[{i}].attributes"),
                        id,
                        &mut check,
                    );
                }
                if let Some(st) = &sp.status {
                    check(id, "span.status.message".into(), st.message.as_bytes());
                }
            }
        }
    }
    found
}

fn attributes(
    attrs: &[KeyValue],
    path: &str,
    span_id: &[u8],
    check: &mut impl FnMut(&[u8], String, &[u8]),
) {
    for kv in attrs {
        let p = format!("{path}[{:?}]", quote(&kv.key));
        check(span_id, format!("{p}.key"), kv.key.as_bytes());
        if let Some(v) = &kv.value {
            value(v, &p, span_id, check);
        }
    }
}

fn value(v: &AnyValue, path: &str, span_id: &[u8], check: &mut impl FnMut(&[u8], String, &[u8])) {
    match &v.value {
        Some(Value::StringValue(s)) => check(span_id, path.to_owned(), s.as_bytes()),
        Some(Value::BytesValue(b)) => check(span_id, path.to_owned(), b),
        // An int keeps no leading zero: check both its 11-digit form and
        // the zero-padded form of a 10-digit value.
        Some(Value::IntValue(i)) => {
            check(span_id, path.to_owned(), format!("{:011}", i.unsigned_abs()).as_bytes())
        }
        Some(Value::DoubleValue(d)) if d.fract() == 0.0 && d.abs() < 1e11 => {
            check(span_id, path.to_owned(), format!("{:011}", d.abs() as u64).as_bytes());
        }
        Some(Value::ArrayValue(a)) => {
            for (i, item) in a.values.iter().enumerate() {
                value(item, &format!("{path}[{i}]"), span_id, check);
            }
        }
        Some(Value::KvlistValue(l)) => attributes(&l.values, path, span_id, check),
        _ => {}
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_agrees_on_known_cases() {
        let cases: &[(&[u8], bool)] = &[
            (b"01019012138", true),  // fnr
            (b"41019012134", false), // day+40 with the fnr's check digits
            (b"01019012139", false), // k2 off by one
            (b"12345678901", false),
            (b"3102901213", false), // 10 digits
        ];
        for (d, ok) in cases {
            assert_eq!(is_valid_number(d), *ok, "{}", String::from_utf8_lossy(d));
        }
    }

    #[test]
    fn finds_runs_and_split_forms_only_when_standalone() {
        assert_eq!(numbers_in(b"id_01019012138x"), 1);
        assert_eq!(numbers_in(b"010190 12138 and 010190-12138"), 2);
        assert_eq!(numbers_in(b"101019012138"), 0);
        assert_eq!(numbers_in(b"0101901213 8"), 0);
    }

    /// Scenario: the split form joined by every separator a person, a word
    /// processor or a URL query produces, and by near misses.
    /// Guarantees: each separator is read (percent-encoding in either
    /// case); an em dash, an encoded dot, two separators and a sixth digit
    /// after it are not.
    #[test]
    fn reads_encoded_and_unicode_separators() {
        for sep in
            ["+", "%20", "%2D", "%2d", "%C2%A0", "%c2%a0", "\u{a0}", "\u{202f}", "\u{2013}", "\t"]
        {
            assert_eq!(numbers_in(format!("q=010190{sep}12138&x=1").as_bytes()), 1, "{sep:?}");
        }
        for miss in [
            "010190\u{2014}12138",
            "010190%2E12138",
            "010190%20%2012138",
            "010190%20121380",
            "010190%2012139",
        ] {
            assert_eq!(numbers_in(miss.as_bytes()), 0, "{miss:?}");
        }
        for glued in
            ["q=a%2001019012138", "%2201019012138%22", "%C2%A001019012138", "%20010190%2012138"]
        {
            assert_eq!(numbers_in(glued.as_bytes()), 1, "{glued:?}");
        }
    }

    /// Scenario: a number with its digits percent-encoded (all, or some),
    /// with encoded separators the plain reading does not know (tab, en
    /// dash); and encoded look-alikes.
    /// Guarantees: the numbers count, and so does a number as written that
    /// an encoded digit is glued to; an encoded 12-digit run, a wrong check
    /// digit and 10 digits do not.
    #[test]
    fn reads_percent_encoded_digits() {
        for hit in [
            "q=%30%31%30%31%39%30%31%32%31%33%38&x",
            "q=0%3101%390%31%3213%38",
            "q=%30%31%30%31%39%30%0912138",
            "q=010190%E2%80%93%31%32%31%33%38",
            "q=01019012138%30",
            "q=%3301019012138",
        ] {
            assert_eq!(numbers_in(hit.as_bytes()), 1, "{hit:?}");
        }
        for miss in [
            "q=%30%31%30%31%39%30%31%32%31%33%38%30",
            "q=%30%31%30%31%39%30%31%32%31%33%39",
            "q=%30%31%30%31%39%30%31%32%31%33",
        ] {
            assert_eq!(numbers_in(miss.as_bytes()), 0, "{miss:?}");
        }
    }

    #[test]
    fn quoted_keys_never_repeat_the_number() {
        assert_eq!(quote("person.01019012138"), "person.***********");
    }
}
