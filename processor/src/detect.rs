//! Detectors beyond personal numbers: the built-in named ones (off by
//! default, each a hand-written scanner with its validator) and custom
//! patterns (regex-lite), plus what a match is replaced with (stars, a
//! label, or a keyed pseudonym).
//!
//! Scanners report byte ranges and may report overlapping ones; the walker
//! merges overlaps before it masks (see `merge`). Nothing here runs unless
//! a config turns a detector on: the personal-number fast path is `fnr`'s.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A built-in detector that a config can turn on in `mask.detectors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// A Norwegian bank account number: 11 digits, mod-11 with weights
    /// 5,4,3,2,7,6,5,4,3,2, whole or as `XXXX XX XXXXX` / `XXXX.XX.XXXXX`.
    AccountNumber,
    /// A payment card number: 13 to 19 digits passing Luhn.
    PaymentCard,
    /// A Norwegian phone number: `+47`, `0047` or `%2B47`, then 8 digits.
    PhoneNo,
    /// An email address (also with `@` encoded as `%40`).
    Email,
    /// The token of `Bearer <token>`, and any JSON Web Token.
    BearerToken,
}

impl Builtin {
    /// Every built-in, in precedence order: when two detectors find the
    /// same text, the earlier one names it.
    pub const ALL: [Builtin; 5] = [
        Builtin::AccountNumber,
        Builtin::PaymentCard,
        Builtin::PhoneNo,
        Builtin::Email,
        Builtin::BearerToken,
    ];

    /// The name used in config and stats.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::AccountNumber => "account-number",
            Builtin::PaymentCard => "payment-card",
            Builtin::PhoneNo => "phone-no",
            Builtin::Email => "email",
            Builtin::BearerToken => "bearer-token",
        }
    }

    /// The built-in with this name, if any.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether a match is digits (stars replace its digits only, keeping
    /// separators) rather than text (stars replace every byte).
    pub fn is_numeric(self) -> bool {
        matches!(self, Builtin::AccountNumber | Builtin::PaymentCard | Builtin::PhoneNo)
    }

    /// Calls `f(start, end)` for each match in `hay`, left to right.
    pub fn scan(self, hay: &[u8], f: &mut impl FnMut(usize, usize)) {
        match self {
            Builtin::AccountNumber => scan_account(hay, f),
            Builtin::PaymentCard => scan_card(hay, f),
            Builtin::PhoneNo => scan_phone(hay, f),
            Builtin::Email => scan_email(hay, f),
            Builtin::BearerToken => scan_bearer(hay, f),
        }
    }
}

/// Every name a detector has, built in: the personal-number family's and
/// [`Builtin`]'s. Custom patterns may not take one.
pub fn reserved_names() -> impl Iterator<Item = &'static str> {
    crate::fnr::Detector::ALL.iter().map(|d| d.name()).chain(Builtin::ALL.iter().map(|b| b.name()))
}

#[inline]
fn digit(hay: &[u8], i: usize) -> bool {
    hay.get(i).is_some_and(u8::is_ascii_digit)
}

/// End of the digit run starting at `i`.
fn run_end(hay: &[u8], mut i: usize) -> usize {
    while digit(hay, i) {
        i += 1;
    }
    i
}

/// Calls `f(start, end)` for every maximal run of ASCII digits.
fn digit_runs(hay: &[u8], mut f: impl FnMut(usize, usize) -> usize) {
    let mut i = 0;
    while i < hay.len() {
        if !hay[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let e = run_end(hay, i);
        // The callback says where to go on from (at least past the run).
        i = f(i, e).max(e);
    }
}

/// Whether 11 digits are a valid Norwegian account number: the weighted
/// sum of the first ten (5,4,3,2,7,6,5,4,3,2) plus the check digit is 0
/// mod 11; a number whose check digit would be 10 is never issued.
pub fn account_valid(d: &[u8]) -> bool {
    const W: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = d.iter().zip(W).map(|(&c, w)| u32::from(c - b'0') * w).sum();
    let check = match sum % 11 {
        0 => 0,
        r => 11 - r,
    };
    check < 10 && check == u32::from(d[10] - b'0')
}

fn scan_account(hay: &[u8], f: &mut impl FnMut(usize, usize)) {
    digit_runs(hay, |s, e| {
        if e - s == 11 && account_valid(&hay[s..e]) {
            f(s, e);
            return e;
        }
        // The printed form: 4 digits, 2, 5, joined by the same space or dot.
        if e - s == 4
            && let Some(&sep @ (b' ' | b'.')) = hay.get(e)
            && run_end(hay, e + 1) == e + 3
            && hay.get(e + 3) == Some(&sep)
            && run_end(hay, e + 4) == e + 9
        {
            let d: Vec<u8> = [&hay[s..e], &hay[e + 1..e + 3], &hay[e + 4..e + 9]].concat();
            if account_valid(&d) {
                f(s, e + 9);
                return e + 9;
            }
        }
        e
    });
}

/// Whether `digits` (ASCII) pass the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn scan_card(hay: &[u8], f: &mut impl FnMut(usize, usize)) {
    digit_runs(hay, |s, e| {
        // One run, or groups joined by one space or dash (the same
        // throughout): 4, then 4s or 6s, then a last group of 1 to 6
        // (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3, 4-4-4-1).
        let mut groups = vec![(s, e)];
        if e - s == 4
            && let Some(&sep @ (b' ' | b'-')) = hay.get(e)
        {
            let mut at = e;
            while hay.get(at) == Some(&sep) && digit(hay, at + 1) {
                let g_end = run_end(hay, at + 1);
                groups.push((at + 1, g_end));
                at = g_end;
                if groups.len() > 6 {
                    break;
                }
            }
        }
        let digits: Vec<u8> = groups.iter().flat_map(|&(a, b)| hay[a..b].iter().copied()).collect();
        let shape = match groups.as_slice() {
            [_] => true,
            [.., last] => {
                let inner = &groups[1..groups.len() - 1];
                inner.iter().all(|&(a, b)| b - a == 4 || b - a == 6)
                    && (1..=6).contains(&(last.1 - last.0))
            }
            [] => false,
        };
        let end = groups.last().map_or(e, |g| g.1);
        if shape && (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
            f(s, end);
            return end;
        }
        e
    });
}

/// The length of a phone-number separator at `hay[i..]`: space, dash, dot,
/// no-break space, or `%20`.
fn phone_sep(hay: &[u8], i: usize) -> usize {
    match hay.get(i..).unwrap_or_default() {
        [b' ' | b'-' | b'.', ..] => 1,
        [0xc2, 0xa0, ..] => 2,
        [b'%', b'2', b'0', ..] => 3,
        _ => 0,
    }
}

/// The end of a `+47` country code at `i` (as `+47`, `0047`, `%2B47` or
/// `(+47)`), if one starts there.
fn phone_prefix(hay: &[u8], i: usize) -> Option<usize> {
    let rest = hay.get(i..)?;
    let n = match rest {
        [b'+', b'4', b'7', ..] => 3,
        [b'(', b'+', b'4', b'7', b')', ..] => 5,
        [b'%', b'2', b'B' | b'b', b'4', b'7', ..] => 5,
        // 0047 is a digit run of its own: nothing may lead it.
        [b'0', b'0', b'4', b'7', ..] if i == 0 || !hay[i - 1].is_ascii_digit() => 4,
        _ => return None,
    };
    Some(i + n)
}

/// Whether 8 national digits can be a Norwegian phone number (none start
/// with 0 or 1).
pub fn phone_valid(national: &[u8]) -> bool {
    national.len() == 8
        && national.iter().all(u8::is_ascii_digit)
        && (b'2'..=b'9').contains(&national[0])
}

fn scan_phone(hay: &[u8], f: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < hay.len() {
        if !matches!(hay[i], b'+' | b'0' | b'%' | b'(') {
            i += 1;
            continue;
        }
        let Some(after) = phone_prefix(hay, i) else {
            i += 1;
            continue;
        };
        // An optional separator after the code, then 8 digits with at most
        // one separator between two of them, and no digit right after.
        let mut at = after + phone_sep(hay, after);
        let mut national = Vec::with_capacity(8);
        while national.len() < 8 {
            if !digit(hay, at) {
                break;
            }
            national.push(hay[at]);
            at += 1;
            if national.len() < 8 {
                let sep = phone_sep(hay, at);
                if sep > 0 && digit(hay, at + sep) {
                    at += sep;
                }
            }
        }
        if phone_valid(&national) && !digit(hay, at) {
            f(i, at);
            i = at;
        } else {
            i += 1;
        }
    }
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The end of a valid domain starting at `s`: labels of letters, digits and
/// inner dashes joined by dots, at least two, the last of two or more
/// letters. Trailing labels that break the rule are left off.
pub fn domain_end(hay: &[u8], s: usize) -> Option<usize> {
    let mut labels: Vec<(usize, usize)> = Vec::new();
    let mut at = s;
    loop {
        let mut e = at;
        while hay.get(e).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-') {
            e += 1;
        }
        if e == at || hay[at] == b'-' || hay[e - 1] == b'-' {
            break;
        }
        labels.push((at, e));
        if hay.get(e) == Some(&b'.') && hay.get(e + 1).is_some_and(u8::is_ascii_alphanumeric) {
            at = e + 1;
        } else {
            break;
        }
    }
    while labels.len() >= 2 {
        let (a, b) = labels[labels.len() - 1];
        if b - a >= 2 && hay[a..b].iter().all(u8::is_ascii_alphabetic) {
            return Some(b);
        }
        labels.pop();
    }
    None
}

fn scan_email(hay: &[u8], f: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    let mut taken = 0;
    while i < hay.len() {
        // `@`, or `%40` as a URL encodes it.
        let at_len = match hay[i..] {
            [b'@', ..] => 1,
            [b'%', b'4', b'0', ..] => 3,
            _ => {
                i += 1;
                continue;
            }
        };
        let mut s = i;
        while s > taken && is_local(hay[s - 1]) {
            s -= 1;
        }
        while s < i && hay[s] == b'.' {
            s += 1;
        }
        match domain_end(hay, i + at_len) {
            Some(e) if s < i => {
                f(s, e);
                taken = e;
                i = e;
            }
            _ => i += at_len,
        }
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes unpadded base64url; `None` if it is not.
fn b64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * k);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Whether `header` (a JWT's first segment) decodes to a JSON object.
pub fn jwt_header_valid(header: &[u8]) -> bool {
    let Some(json) = b64url_decode(header) else { return false };
    let trimmed = json.trim_ascii();
    trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}')
}

/// The end of a JWT (`eyJ…` `.` `…` `.` `…`) starting at `s`, if one does.
fn jwt_end(hay: &[u8], s: usize) -> Option<usize> {
    let seg = |from: usize| {
        let mut e = from;
        while hay.get(e).copied().is_some_and(is_b64url) {
            e += 1;
        }
        e
    };
    let h = seg(s);
    if h - s < 10 || hay.get(h) != Some(&b'.') || !jwt_header_valid(&hay[s..h]) {
        return None;
    }
    let p = seg(h + 1);
    if p - (h + 1) < 2 || hay.get(p) != Some(&b'.') {
        return None;
    }
    Some(seg(p + 1))
}

fn is_b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn scan_bearer(hay: &[u8], f: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < hay.len() {
        let b = hay[i];
        let word_start = i == 0 || !hay[i - 1].is_ascii_alphanumeric();
        // `Bearer <token>`: the token (RFC 6750's b64token, `=` padding).
        if (b == b'B' || b == b'b')
            && word_start
            && hay.get(i..i + 6).is_some_and(|w| w.eq_ignore_ascii_case(b"bearer"))
        {
            // One space (or `+`, `%20` as a URL encodes it), then more
            // blanks; a `+` after the first is the token's own.
            let mut t = i + 6;
            let gap = t;
            t += match hay.get(t..).unwrap_or_default() {
                [b' ' | b'\t' | b'+', ..] => 1,
                [b'%', b'2', b'0', ..] => 3,
                _ => 0,
            };
            while t > gap && matches!(hay.get(t), Some(b' ' | b'\t')) {
                t += 1;
            }
            let mut e = t;
            while hay.get(e).copied().is_some_and(is_b64token) {
                e += 1;
            }
            while hay.get(e) == Some(&b'=') {
                e += 1;
            }
            // A pseudonym (`bearer-token:key:letters`) is not a token.
            if t > gap && e - t >= 8 && hay.get(e) != Some(&b':') {
                f(t, e);
                i = e;
                continue;
            }
        }
        // A JWT anywhere: `eyJ` is how a base64url JSON object starts.
        if b == b'e'
            && (i == 0 || !is_b64url(hay[i - 1]))
            && hay.get(i..i + 3) == Some(b"eyJ")
            && let Some(e) = jwt_end(hay, i)
        {
            f(i, e);
            i = e;
            continue;
        }
        i += 1;
    }
}

/// A custom pattern, compiled.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: regex_lite::Regex,
}

/// The most a pattern's compiled program may take, so that a config cannot
/// make the guest allocate without bound.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl Pattern {
    /// Compiles `regex`; on failure, the character position (0-based) the
    /// error is at and regex-lite's reason. Neither quotes the pattern.
    pub fn new(regex: &str) -> Result<Pattern, (usize, String)> {
        match build(regex) {
            Ok(regex) => Ok(Pattern { regex }),
            Err(e) => Err((error_position(regex), e.to_string())),
        }
    }

    /// Calls `f(start, end)` for each non-empty match in `hay`. Text that
    /// is not UTF-8 is searched in its valid stretches.
    pub fn scan(&self, hay: &[u8], f: &mut impl FnMut(usize, usize)) {
        let mut offset = 0;
        for chunk in hay.utf8_chunks() {
            let valid = chunk.valid();
            for m in self.regex.find_iter(valid) {
                if m.start() < m.end() {
                    f(offset + m.start(), offset + m.end());
                }
            }
            offset += valid.len() + chunk.invalid().len();
        }
    }
}

fn build(regex: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::RegexBuilder::new(regex).size_limit(PATTERN_SIZE_LIMIT).nest_limit(64).build()
}

/// Where in `regex` (as a character index) compiling first fails: the end
/// of the shortest prefix that, with its open groups and class closed, no
/// longer compiles; or, when every such prefix compiles (an unclosed group),
/// the first group left open. regex-lite's errors carry no position.
fn error_position(regex: &str) -> usize {
    let chars: Vec<char> = regex.chars().collect();
    let mut open: Vec<usize> = Vec::new();
    let mut class: Option<(usize, usize)> = None; // (start, members so far)
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut next = i + 1;
        if c == '\\' {
            // A whole escape: `\x{..}`, `\p{..}`, `\b{..}` or two characters.
            next = match chars.get(i + 2) {
                Some('{') => {
                    chars[i..].iter().position(|&c| c == '}').map_or(chars.len(), |p| i + p + 1)
                }
                _ => (i + 2).min(chars.len()),
            };
            if matches!(chars.get(i + 1), Some('x')) && chars.get(i + 2) != Some(&'{') {
                next = (i + 4).min(chars.len());
            }
            if let Some((_, n)) = &mut class {
                *n += 1;
            }
        } else if let Some((start, n)) = class {
            if c == ']' && n > 0 {
                class = None;
            } else if !(c == '^' && i == start + 1) {
                class = Some((start, n + 1));
            }
        } else if c == '[' {
            class = Some((i, 0));
        } else if c == '(' {
            open.push(i);
        } else if c == ')' {
            open.pop();
        } else if c == '{' {
            // A counted repetition: test it whole.
            next = chars[i..].iter().position(|&c| c == '}').map_or(chars.len(), |p| i + p + 1);
        }
        let mut candidate: String = chars[..next].iter().collect();
        if let Some((_, n)) = class {
            candidate.push_str(if n == 0 { "a]" } else { "]" });
        }
        candidate.extend(std::iter::repeat_n(')', open.len()));
        if build(&candidate).is_err() {
            return i;
        }
        i = next;
    }
    open.first().copied().unwrap_or(0)
}

/// What a match becomes, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// Stars: for numeric detectors every digit (separators and percent
    /// escapes kept), for the others every byte.
    Stars(u8),
    /// This text.
    Label(Vec<u8>),
    /// `<name>:<key id>:<pseudonym>`.
    Hmac,
}

/// The pseudonym alphabet: 16 consonants, so a pseudonym holds no digit (it
/// can never read as a number) and spells no word.
const ALPHABET: &[u8; 16] = b"bcdfghjklmnpqrst";

/// Letters of pseudonym: 16 letters of 4 bits, the first 64 bits of the MAC.
pub const PSEUDONYM_LEN: usize = 16;

/// A keyed pseudonymiser: HMAC-SHA256 under the config's key.
#[derive(Clone)]
pub struct Keyed {
    mac: Hmac<Sha256>,
    key_id: String,
}

impl std::fmt::Debug for Keyed {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Keyed {
    /// A pseudonymiser for `key` (any length; configs require 32 bytes).
    pub fn new(key: &[u8], key_id: &str) -> Keyed {
        // HMAC takes keys of any length; this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        Keyed { mac, key_id: key_id.to_owned() }
    }

    /// Appends `<name>:<key id>:<16 letters>` for `value` to `out`.
    pub fn pseudonym(&self, name: &str, value: &[u8], out: &mut Vec<u8>) {
        let mut mac = self.mac.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(self.key_id.as_bytes());
        out.push(b':');
        for &b in &digest[..PSEUDONYM_LEN / 2] {
            out.push(ALPHABET[usize::from(b >> 4)]);
            out.push(ALPHABET[usize::from(b & 15)]);
        }
    }
}

/// The digits of a numeric match, in order: ASCII digits and percent-encoded
/// ones (`%30` to `%39`); other percent escapes (an encoded separator) and
/// every other byte are left out. The value a pseudonym is taken of, so
/// that `13097248022`, `130972 48022` and `130972%2048022` are one person.
pub fn digits_of(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i..] {
            [b'%', h, l, ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                if h == b'3' && l.is_ascii_digit() {
                    out.push(l);
                }
                i += 3;
            }
            [d, ..] if d.is_ascii_digit() => {
                out.push(d);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Appends `text` with every digit starred: ASCII digits become `c`, a
/// percent-encoded digit becomes `c` percent-encoded (so a URL stays valid
/// and decodes to stars), and every other percent escape (an encoded
/// separator) is kept as it was. Lengths are kept.
pub fn star_digits(text: &[u8], c: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < text.len() {
        match text[i..] {
            [b'%', b'3', l, ..] if l.is_ascii_digit() => {
                out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                i += 3;
            }
            [b'%', h, l, ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                out.extend_from_slice(&text[i..i + 3]);
                i += 3;
            }
            [d, ..] => {
                out.push(if d.is_ascii_digit() { c } else { d });
                i += 1;
            }
            [] => break,
        }
    }
}

/// One match: its range and the detector (index into the config's
/// detector list; lower wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub detector: u8,
}

/// Merges `hits` in place into non-overlapping groups, left to right: each
/// group is the union of the matches that overlap (transitively), named by
/// the lowest detector among them. Returns per group whether all its
/// matches had one range (then the winner's own style applies; otherwise
/// the union is masked whole: privacy fails closed).
pub(crate) fn merge(hits: &mut Vec<Hit>) -> Vec<bool> {
    hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.detector));
    let mut exact = Vec::with_capacity(hits.len());
    let mut w = 0;
    for r in 0..hits.len() {
        let h = hits[r];
        if w > 0 && h.start < hits[w - 1].end {
            let g = &mut hits[w - 1];
            if (h.start, h.end) != (g.start, g.end) {
                exact[w - 1] = false;
            }
            g.end = g.end.max(h.end);
            g.detector = g.detector.min(h.detector);
        } else {
            hits[w] = h;
            exact.push(true);
            w += 1;
        }
    }
    hits.truncate(w);
    exact
}

#[cfg(test)]
mod tests;
