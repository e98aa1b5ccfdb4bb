//! Detection of Norwegian personal identity numbers (fødselsnummer, D-nummer,
//! H-nummer and synthetic Test Norge numbers) in byte strings.
//!
//! This module owns what counts as such a number: where a candidate may sit
//! in a haystack ([`scan`]), whether its check digits and embedded birth date
//! hold ([`classify`]), and the cheap pre-check that lets callers skip most
//! values outright ([`may_contain`]). It does not mask anything; callers
//! decide what to do with each [`Found`].
//!
//! Everything here runs on the hot path for every string value in every span,
//! so digit runs are found eight bytes at a time and nothing allocates, but
//! for the rare value whose digits are percent-encoded (read a second time,
//! decoded: see [`scan`]).

/// Which rule a matched number satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// An ordinary fødselsnummer: a real birth date.
    Fnr,
    /// A D-nummer (temporary residents): day + 40.
    DNumber,
    /// An H-nummer (health-sector help number): month + 40.
    HNumber,
    /// A synthetic Test Norge number: month + 80.
    Synthetic,
    /// Any 11-digit run, unvalidated ([`Mode::Any11`]).
    Any11,
}

impl Detector {
    /// Every detector, in `Detector::index` order.
    pub const ALL: [Detector; 5] =
        [Detector::Fnr, Detector::DNumber, Detector::HNumber, Detector::Synthetic, Detector::Any11];

    /// The name used in config and stats.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Fnr => "fnr",
            Detector::DNumber => "d-number",
            Detector::HNumber => "h-number",
            Detector::Synthetic => "synthetic",
            Detector::Any11 => "any11",
        }
    }

    /// The detector with this [`Detector::name`], if any.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Position in [`Detector::ALL`], for fixed-size counter arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Detector::Fnr => 0,
            Detector::DNumber => 1,
            Detector::HNumber => 2,
            Detector::Synthetic => 3,
            Detector::Any11 => 4,
        }
    }
}

/// How strict detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Report only numbers whose check digits and birth date are valid.
    #[default]
    Validated,
    /// Report every 11-digit candidate, valid or not.
    Any11,
}

impl Mode {
    /// The name used in config.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Validated => "validated",
            Mode::Any11 => "any11",
        }
    }

    /// Parses a name produced by [`Mode::name`]; exact and case-sensitive.
    pub fn from_name(s: &str) -> Option<Mode> {
        match s {
            "validated" => Some(Mode::Validated),
            "any11" => Some(Mode::Any11),
            _ => None,
        }
    }
}

/// One number found in a haystack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of the first digit.
    pub start: usize,
    /// Byte offset just past the last digit; for the split form
    /// (`DDMMYY NNNNN`) the range includes the separator.
    pub end: usize,
    /// Which rule matched.
    pub detector: Detector,
}

/// Weights for the first check digit (k1), over digits 1..=10.
const K1_WEIGHTS: [u32; 10] = [3, 7, 6, 1, 8, 9, 4, 5, 2, 1];
/// Weights for the second check digit (k2), over all 11 digits.
const K2_WEIGHTS: [u32; 11] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1];

/// Validates 11 ASCII digits; returns which kind of number it is, or None.
///
/// Checks both check digits and that the birth date, once the D/H/synthetic
/// offsets are removed, is a real calendar date. Returns `None` if any byte
/// is not an ASCII digit.
pub fn classify(digits: &[u8; 11]) -> Option<Detector> {
    let mut n = [0u8; 11];
    for (v, &c) in n.iter_mut().zip(digits) {
        // One unsigned compare rejects both sides of '0'..='9'.
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        *v = d;
    }

    // k2 is unchanged by the 2032 reform: the full weighted sum is 0 mod 11.
    let k2: u32 = n.iter().zip(K2_WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
    if !k2.is_multiple_of(11) {
        return None;
    }
    // From 2032 Skatteetaten lets k1 leave remainder 0, 1, 2 or 3 (it used to
    // be 0 only). Numbers issued under the new rule may carry any birth date,
    // so all four are accepted regardless of date.
    let k1: u32 = n.iter().zip(K1_WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
    if k1 % 11 > 3 {
        return None;
    }

    let mut day = n[0] * 10 + n[1];
    let mut month = n[2] * 10 + n[3];
    let yy = n[4] * 10 + n[5];
    // Month offsets win over the day offset: a D-number can also be an
    // H-number or synthetic, and then it is reported as the latter.
    let detector = if month > 80 {
        month -= 80;
        Detector::Synthetic
    } else if month > 40 {
        month -= 40;
        Detector::HNumber
    } else if day > 40 {
        Detector::DNumber
    } else {
        Detector::Fnr
    };
    if day > 40 {
        day -= 40;
    }
    if !(1..=12).contains(&month) {
        return None;
    }
    // The century is not knowable from the number alone; 00 may be 2000 (a
    // leap year), so fail closed and allow 29 Feb for every YY divisible by 4.
    let days = match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&day).then_some(detector)
}

/// Calls `f` for every number in `hay`, left to right, non-overlapping.
///
/// `hay` is read as written ([`scan_plain`]) and, when it holds a percent
/// escape that the plain reading cannot see through (an encoded digit,
/// `%30` to `%39`; an encoded tab or `+`; the first byte of an encoded
/// three-byte separator), also as a URL decodes it. A form typed into a
/// search box can reach `url.query` with every digit encoded
/// (`%31%33%30...`). The numbers of both readings are reported, overlapping
/// ones merged into one range of `hay`: a `%` in SQL's `LIKE '%...'` is no
/// escape, so neither reading alone is right for every value, and privacy
/// fails closed.
pub fn scan(hay: &[u8], mode: Mode, f: impl FnMut(Found)) {
    // The plain reading is taken first and held back: it also tells whether
    // a decoded reading is needed, which most values (no `%` at all) never
    // do, so they are read once. Past `HELD` numbers it is read again.
    const HELD: usize = 4;
    let mut held = [None; HELD];
    let mut n = 0;
    let hidden = scan_runs(hay, mode, |x| {
        if let Some(slot) = held.get_mut(n) {
            *slot = Some(x);
        }
        n += 1;
    });
    if hidden {
        scan_decoded(hay, mode, f);
    } else if n > HELD {
        scan_plain(hay, mode, f);
    } else {
        held.into_iter().flatten().for_each(f);
    }
}

/// Whether the digit run at `start` is led by a percent escape of a digit,
/// a tab, a `+` or a three-byte UTF-8 lead (U+2013, U+202F): the escapes
/// [`scan_plain`] does not read. Each of them has a digit right after its
/// `%` or one place later, behind a hex letter (`%E2`), and that digit starts
/// a run, so looking behind every run start finds them all.
#[inline(always)]
fn hides_digits(hay: &[u8], start: usize) -> bool {
    let hidden = |at: usize| {
        escape_at(&hay[at..])
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'\t' | b'+' | 0xe2))
    };
    match hay[..start] {
        [.., b'%'] => hidden(start - 1),
        [.., b'%', _] => hidden(start - 2),
        _ => false,
    }
}

/// The byte a percent escape at the start of `s` stands for.
fn escape_at(s: &[u8]) -> Option<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    match s {
        [b'%', h, l, ..] => Some((hex(*h)? * 16 + hex(*l)?) as u8),
        _ => None,
    }
}

/// [`scan`]'s two readings, merged. Out of line and allocating: only values
/// with encoded digits get here.
#[inline(never)]
fn scan_decoded(hay: &[u8], mode: Mode, mut f: impl FnMut(Found)) {
    let mut found = readings(hay, mode);
    // Masking a number one reading found can end a run the other reading
    // took for longer: in `679800 1212%38` and then 11 digits, the 11 are a
    // number as written, and once they are starred the decoded text reads
    // `679800 12128`, a split form. So the starred text is read again until
    // nothing new turns up; each turn stars more digits, so it ends.
    let mut masked = hay.to_vec();
    loop {
        star(&mut masked, &found);
        let more = readings(&masked, mode);
        if more.is_empty() {
            break;
        }
        // New numbers hold no starred byte, so they never overlap the old.
        found.extend(more);
        found.sort_unstable_by_key(|x| x.start);
    }
    found.into_iter().for_each(&mut f);
}

/// Stars every digit of the `found` ranges of `hay` in place, as masking
/// would: an ASCII digit becomes `*`, a percent-encoded one `%2A`.
fn star(hay: &mut [u8], found: &[Found]) {
    for x in found {
        let mut i = x.start;
        while i < x.end {
            match hay[i..x.end] {
                [b'%', b'3', d, ..] if d.is_ascii_digit() => {
                    hay[i + 1..i + 3].copy_from_slice(b"2A");
                    i += 3;
                }
                [d, ..] => {
                    if d.is_ascii_digit() {
                        hay[i] = b'*';
                    }
                    i += 1;
                }
                [] => break,
            }
        }
    }
}

/// The numbers of `hay` as written and of `hay` URL-decoded (taken back to
/// `hay`'s offsets), in order, overlapping ones merged into the first.
fn readings(hay: &[u8], mode: Mode) -> Vec<Found> {
    // Both readings count: privacy fails closed. A number as written stays
    // one even when an encoded digit glued to it makes a longer run decoded
    // (`04100100016%30`): the engine masked it before it read escapes.
    let mut found = Vec::new();
    scan_plain(hay, mode, |x| found.push(x));
    // The decoded text, and for each of its bytes (and its end) the offset
    // in `hay` it was read from.
    let (mut text, mut from) = (Vec::with_capacity(hay.len()), Vec::with_capacity(hay.len() + 1));
    let mut i = 0;
    while i < hay.len() {
        from.push(i);
        match escape_at(&hay[i..]) {
            Some(b) => {
                text.push(b);
                i += 3;
            }
            None => {
                text.push(hay[i]);
                i += 1;
            }
        }
    }
    from.push(hay.len());
    scan_plain(&text, mode, |x| found.push(Found { start: from[x.start], end: from[x.end], ..x }));
    found.sort_unstable_by_key(|x| (x.start, core::cmp::Reverse(x.end)));
    let mut merged: Vec<Found> = Vec::with_capacity(found.len());
    for x in found {
        match merged.last_mut() {
            Some(o) if x.start < o.end => o.end = o.end.max(x.end),
            _ => merged.push(x),
        }
    }
    merged
}

/// [`scan`]'s reading of `hay` as written.
///
/// A candidate is a maximal run of exactly 11 ASCII digits, or the split form
/// of exactly 6 digits, one separator (a space, dash, tab or `+`, a
/// no-break or narrow no-break space or en dash in UTF-8, or `%20`, `%2D`,
/// `%C2%A0` as a URL encodes them), exactly 5 digits (both runs maximal).
/// A run that makes no candidate and is led by the hex digits of a percent
/// escape is read again without them: in `q=a%2013097248022` the number is
/// `13097248022`, and `%17053650260` is still read as 11 digits (the two
/// readings never both make a candidate). Non-digit neighbours, letters and `_` included, do not protect a
/// run. In [`Mode::Validated`] only candidates [`classify`] accepts are
/// reported; in [`Mode::Any11`] every candidate is, as [`Detector::Any11`].
pub fn scan_plain(hay: &[u8], mode: Mode, f: impl FnMut(Found)) {
    scan_runs(hay, mode, f);
}

/// [`scan_plain`], returning whether a digit run is led by an escape that
/// only the decoded reading sees through (see [`hides_digits`]).
#[inline(always)]
fn scan_runs(hay: &[u8], mode: Mode, mut f: impl FnMut(Found)) -> bool {
    let mut hidden = false;
    // Whether it reported a number.
    let mut report = |start: usize, end: usize, digits: &[u8; 11]| {
        let detector = match mode {
            Mode::Validated => classify(digits),
            Mode::Any11 => Some(Detector::Any11),
        };
        if let Some(detector) = detector {
            f(Found { start, end, detector });
        }
        detector.is_some()
    };

    let mut i = 0;
    loop {
        let start = next_digit(hay, i);
        if start >= hay.len() {
            return hidden;
        }
        let end = run_end(hay, start);
        // The runs a reported split form skips (its separator's and its last
        // five digits) are led by no such escape: no separator is one.
        hidden |= hides_digits(hay, start);
        // Whatever happens below, the next candidate starts after this run:
        // the only case that consumes more is a split form that is reported
        // (one that is not may hide a number in its tail's digits:
        // `999999%C2%A010190 12138`).
        i = end;
        let escaped = start + escape_digits(hay, start, end);
        for start in [start, escaped] {
            match end - start {
                11 => {
                    if let Some(digits) = hay[start..].first_chunk::<11>() {
                        report(start, end, digits);
                    }
                    break;
                }
                6 => {
                    if let Some(tail) = split_tail(hay, end) {
                        let mut digits = [0u8; 11];
                        digits[..6].copy_from_slice(&hay[start..end]);
                        digits[6..].copy_from_slice(&hay[tail - 5..tail]);
                        if report(start, tail, &digits) {
                            i = tail;
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Cheap pre-check: true if `hay` could hold a number at all (has a run of
/// >= 6 bytes that are ASCII digits or `%`).
///
/// Every candidate [`scan`] can report contains such a run (the 6 digits of
/// the split form are the shortest; two percent-encoded digits are six such
/// bytes), so a `false` here means `scan` would find nothing.
// Inlined into every caller in the guest, where a call costs more than the
// check (see below); natively LLVM's own choice is faster.
#[cfg_attr(target_arch = "wasm32", inline(always))]
pub fn may_contain(hay: &[u8]) -> bool {
    // Most attributes (key and value together) are 16 to 64 bytes: up to
    // four blocks, the last overlapping, make one mask of every byte, with
    // no loop (and, in the guest, no loop state to save and restore around
    // it), small enough to inline into the walk.
    if let (Some(first), Some(last)) = (hay.first_chunk::<16>(), hay.last_chunk::<16>())
        && hay.len() <= 64
    {
        let block = |at: usize| {
            hay.get(at..)
                .and_then(|m| m.first_chunk::<16>())
                .map_or(0, |m| u64::from(marks16(m)) << at)
        };
        let m = u64::from(marks16(first))
            | block(16)
            | block(32)
            | u64::from(marks16(last)) << (hay.len() - 16);
        let three = m & (m >> 1) & (m >> 2);
        return three & (three >> 3) != 0;
    }
    may_contain_blocks(hay)
}

/// [`may_contain`] for any length. Out of line: Cranelift saves every
/// register a function uses on entry, so the loop's would tax the short path.
#[inline(never)]
fn may_contain_blocks(hay: &[u8]) -> bool {
    // Fast because it never stops at a digit: each 32 bytes become a 32-bit
    // mask of their digits (two SIMD compares in the wasm guest), and a run
    // is tracked across them by its length only. Most trace text holds no
    // digit at all. Pinned to the plain definition by the
    // `may_contain_never_hides_a_match` property test (and, for the simd128
    // path, by the component-against-native test in host-harness).
    let mut run = 0;
    let mut chunks = hay.chunks_exact(32);
    for chunk in &mut chunks {
        if run_of_six(marks32(chunk), 32, &mut run) {
            return true;
        }
    }
    let n = chunks.remainder().len();
    if n == 0 {
        return false;
    }
    let tail = match (hay.last_chunk::<32>(), hay.first_chunk::<16>(), hay.last_chunk::<16>()) {
        // One overlapping load; the bytes already seen are shifted out.
        (Some(last), ..) => marks32(last) >> (32 - n),
        // Shorter than 32 bytes in all: two overlapping blocks, or fewer bytes.
        (None, Some(first), Some(last)) => marks16(first) | marks16(last) << (n - 16),
        _ => short_marks(hay),
    };
    run_of_six(tail, n as u32, &mut run)
}

/// The mark mask (digits and `%`) of 32 bytes.
#[inline(always)]
fn marks32(chunk: &[u8]) -> u32 {
    match (chunk.first_chunk::<16>(), chunk.get(16..).and_then(|c| c.first_chunk::<16>())) {
        (Some(lo), Some(hi)) => marks16(lo) | marks16(hi) << 16,
        _ => 0,
    }
}

/// Whether the digit mask `m` of the next `width` (1..=32) bytes, following
/// `run` digits, completes a run of six; updates `run` to the digits at the
/// end of those bytes.
#[inline(always)]
fn run_of_six(m: u32, width: u32, run: &mut u32) -> bool {
    if m == 0 {
        *run = 0;
        return false;
    }
    // Bit i of `three` is set iff bytes i..i+3 are digits; of `six`, i..i+6.
    let three = m & (m >> 1) & (m >> 2);
    let six = three & (three >> 3);
    if six != 0 || *run + m.trailing_ones() >= 6 {
        return true;
    }
    // Digits at the end (a width of six or more digits returned above).
    *run = (m << (32 - width)).leading_ones();
    false
}

/// Bit i is set iff `block[i]` is an ASCII digit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn digits16(block: &[u8; 16]) -> u32 {
    use core::arch::wasm32::{i8x16_add, i8x16_lt, i8x16_splat, u8x16_bitmask, u64x2};
    let (lo, hi) = (word(block, 0), word(block, 8));
    // Compiles to one v128.load. Adding 80 moves '0'..='9' to the ten
    // lowest signed bytes (-128..=-119) and every other byte above them, so
    // one signed compare finds the digits: x86 has signed byte compares
    // only, and an unsigned one costs Cranelift three instructions.
    let v = u64x2(lo, hi);
    u32::from(u8x16_bitmask(i8x16_lt(i8x16_add(v, i8x16_splat(80)), i8x16_splat(-118))))
}

/// Bit i is set iff `block[i]` is an ASCII digit.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn digits16(block: &[u8; 16]) -> u32 {
    byte_bits(digit_mask(word(block, 0))) | (byte_bits(digit_mask(word(block, 8))) << 8)
}

/// Bit i is set iff `block[i]` is an ASCII digit or `%`: the bytes
/// [`may_contain`] counts, so that a number whose digits are all
/// percent-encoded still makes a run.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn marks16(block: &[u8; 16]) -> u32 {
    use core::arch::wasm32::{
        i8x16_add, i8x16_eq, i8x16_lt, i8x16_splat, u8x16_bitmask, u64x2, v128_or,
    };
    let v = u64x2(word(block, 0), word(block, 8));
    // As in `digits16`, and one compare more for '%'.
    let digits = i8x16_lt(i8x16_add(v, i8x16_splat(80)), i8x16_splat(-118));
    u32::from(u8x16_bitmask(v128_or(digits, i8x16_eq(v, i8x16_splat(b'%' as i8)))))
}

/// Bit i is set iff `block[i]` is an ASCII digit or `%`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn marks16(block: &[u8; 16]) -> u32 {
    byte_bits(mark_mask(word(block, 0))) | (byte_bits(mark_mask(word(block, 8))) << 8)
}

/// The mark mask (digits and `%`) of `hay`, shorter than 16 bytes.
#[inline(always)]
fn short_marks(hay: &[u8]) -> u32 {
    match hay.first_chunk::<8>() {
        Some(first) => {
            let n = hay.len();
            byte_bits(mark_mask(u64::from_le_bytes(*first)))
                | (byte_bits(mark_mask(tail_word(hay, n - 8))) << 8)
        }
        None => byte_bits(mark_mask(tail_word(hay, hay.len()))),
    }
}

/// [`digit_mask`], with the high bit also set for each `%` byte.
#[inline(always)]
fn mark_mask(w: u64) -> u64 {
    // A byte of `x` is zero iff that byte of `w` is '%'. Its low seven bits
    // plus 0x7f carry into the high bit iff they are not all zero, with no
    // carry into the next byte; or-ing `x` adds its own high bit.
    let x = w ^ 0x2525_2525_2525_2525;
    digit_mask(w) | (!(((x & LOW7) + LOW7) | x | LOW7) & HIGH)
}

#[inline(always)]
fn word(block: &[u8; 16], at: usize) -> u64 {
    block[at..].first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w))
}

/// The high bits of a byte mask gathered into the low 8 bits, byte i to
/// bit i: each bit of `m >> 7` is multiplied onto its own place in the top
/// byte, and no two products overlap, so nothing carries.
#[inline(always)]
fn byte_bits(m: u64) -> u32 {
    ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// The last `n` (0..=8) bytes of `hay` as a little-endian word, zero-padded.
#[inline(always)]
fn tail_word(hay: &[u8], n: usize) -> u64 {
    match hay.last_chunk::<8>() {
        // One unaligned load, shifted: no copy loop.
        Some(last) if n > 0 => u64::from_le_bytes(*last) >> (8 * (8 - n)),
        Some(_) => 0,
        None => hay.iter().rev().take(n).fold(0, |w, &b| (w << 8) | u64::from(b)),
    }
}

/// How many digits at the start of the run `hay[start..end]` are the hex
/// digits of a percent escape (`%20` + number, `%A0` + number): 2 right after
/// a `%`, 1 after `%` and a hex letter, else 0. A `%` is always an escape in a
/// URL; elsewhere a `%` glued to a number is rare enough to read the same.
fn escape_digits(hay: &[u8], start: usize, end: usize) -> usize {
    match hay[..start] {
        [.., b'%'] => 2.min(end - start),
        [.., b'%', h] if h.is_ascii_hexdigit() => 1,
        _ => 0,
    }
}

/// If `hay[sep..]` is one separator then a run of exactly 5 digits with no
/// digit after it, returns the offset just past those digits. The caller has
/// already checked that the 6 digits before `sep` form a maximal run.
fn split_tail(hay: &[u8], sep: usize) -> Option<usize> {
    let rest = hay.get(sep..)?;
    let n = separator_len(rest)?;
    let five = rest.get(n..n + 5)?.iter().all(u8::is_ascii_digit);
    let maximal = !rest.get(n + 5).is_some_and(u8::is_ascii_digit);
    (five && maximal).then_some(sep + n + 5)
}

/// The length of the separator `rest` starts with, if it starts with one:
/// what people type between the 6 and the 5 digits (space, dash, tab), what
/// word processors and keyboards put there in UTF-8 (no-break space U+00A0,
/// narrow no-break space U+202F, en dash U+2013), and what a URL's query
/// makes of a typed space, dash or no-break space (`+`, `%20`, `%2D`,
/// `%C2%A0`, hex digits in either case). Percent-encoded separators hold
/// ASCII digits: the masker keeps them (see the engine's `mask_text`).
pub(crate) fn separator_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [b' ' | b'-' | b'\t' | b'+', ..] => Some(1),
        [0xc2, 0xa0, ..] => Some(2),
        [0xe2, 0x80, 0xaf | 0x93, ..] => Some(3),
        [b'%', b'2', b'0' | b'D' | b'd', ..] => Some(3),
        [b'%', b'C' | b'c', b'2', b'%', b'A' | b'a', b'0', ..] => Some(6),
        _ => None,
    }
}

/// Low seven bits of every byte in a word.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// High bit of every byte in a word.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of the result is set iff that byte of `w` is an
/// ASCII digit; all other bits are clear.
///
/// Adding 0x50 to a byte's low seven bits carries into its high bit iff they
/// are >= 0x30 ('0'); adding 0x46 does iff they are >= 0x3a (one past '9').
/// Seven-bit values plus either constant stay below 0x100, so no carry
/// crosses into the next byte, and bytes >= 0x80 are masked out with `!w`.
#[inline]
fn digit_mask(w: u64) -> u64 {
    let low = w & LOW7;
    let ge_zero = low + 0x5050_5050_5050_5050;
    let gt_nine = low + 0x4646_4646_4646_4646;
    ge_zero & !gt_nine & !w & HIGH
}

/// Offset of the first ASCII digit at or after `i`, or `hay.len()` if none.
#[inline]
fn next_digit(hay: &[u8], mut i: usize) -> usize {
    // Sixteen bytes per step (one vector compare in the guest), then eight:
    // most of a trace value is not digits.
    while let Some(block) = hay.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let m = digits16(block);
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(chunk) = hay.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let m = digit_mask(u64::from_le_bytes(*chunk));
        if m != 0 {
            // Little-endian load: the lowest set bit is the earliest byte.
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < hay.len() && !hay[i].is_ascii_digit() {
        i += 1;
    }
    i.min(hay.len())
}

/// Offset of the first non-digit at or after `i`, or `hay.len()` if none.
#[inline]
fn run_end(hay: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = hay.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let m = !digit_mask(u64::from_le_bytes(*chunk)) & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < hay.len() && hay[i].is_ascii_digit() {
        i += 1;
    }
    i.min(hay.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A known-valid ordinary number (navikt/fnrvalidator's test suite).
    const X: &str = "13097248022";

    fn digits(s: &str) -> [u8; 11] {
        s.as_bytes().try_into().expect("11 bytes")
    }

    /// Completes 9 digits with check digits so that the k1 sum leaves
    /// remainder `rest` and the k2 sum leaves 0; None if a check digit would
    /// have to be 10.
    fn complete(first9: &[u8; 9], rest: u32) -> Option<[u8; 11]> {
        let mut n = [0u32; 11];
        for (v, &c) in n.iter_mut().zip(first9) {
            *v = u32::from(c - b'0');
        }
        let s1: u32 = n[..9].iter().zip(K1_WEIGHTS).map(|(d, w)| d * w).sum();
        n[9] = (11 + rest - s1 % 11) % 11;
        let s2: u32 = n[..10].iter().zip(K2_WEIGHTS).map(|(d, w)| d * w).sum();
        n[10] = (11 - s2 % 11) % 11;
        if n[9] > 9 || n[10] > 9 {
            return None;
        }
        let mut out = [0u8; 11];
        for (o, d) in out.iter_mut().zip(n) {
            *o = b'0' + d as u8;
        }
        Some(out)
    }

    /// A number with valid check digits (k1 remainder `rest`) for the date
    /// part `ddmmyy`, picking the first individual number that works.
    fn with_checks(ddmmyy: &str, rest: u32) -> [u8; 11] {
        (0..1000)
            .find_map(|ind: u32| {
                let s = format!("{ddmmyy}{ind:03}");
                complete(s.as_bytes().try_into().unwrap(), rest)
            })
            .expect("some individual number completes")
    }

    fn s(d: &[u8; 11]) -> String {
        String::from_utf8(d.to_vec()).unwrap()
    }

    #[test]
    fn detector_index_matches_all_order_and_names_are_stable() {
        let names: Vec<_> = Detector::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["fnr", "d-number", "h-number", "synthetic", "any11"]);
        for (i, d) in Detector::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
    }

    #[test]
    fn mode_names_round_trip() {
        assert_eq!(Mode::default(), Mode::Validated);
        for m in [Mode::Validated, Mode::Any11] {
            assert_eq!(Mode::from_name(m.name()), Some(m));
        }
        for bad in ["", "Validated", "any", "any11 "] {
            assert_eq!(Mode::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn classify_published_examples() {
        use Detector::*;
        // From navikt/fnrvalidator's test suite.
        let table: &[(&str, Option<Detector>)] = &[
            ("13097248022", Some(Fnr)),
            ("29029648784", Some(Fnr)),
            ("29020075838", Some(Fnr)), // 29 Feb 00
            ("15021951940", Some(Fnr)), // check digit computed as 11 -> 0
            ("53097248016", Some(DNumber)),
            ("13527248013", Some(HNumber)),
            ("10915596784", Some(Synthetic)),
            ("68467038838", Some(HNumber)),   // D + H: month wins
            ("50846202355", Some(Synthetic)), // D + synthetic
            ("02013299997", Some(Fnr)),       // 2032 rule
            ("30108299920", Some(Fnr)),       // 2032 rule, remainder 0
            ("30108299939", Some(Fnr)),       // 2032 rule, remainder 1
            ("70108299914", Some(DNumber)),   // 2032 rule
            ("13097248032", None),            // bad k1
            ("13097248023", None),            // bad k2
            ("02013299987", None),
            ("02013299996", None),
            ("32127248022", None),
            ("13137248022", None),
            ("29020112345", None),
        ];
        for &(n, want) in table {
            assert_eq!(classify(&digits(n)), want, "{n}");
        }
    }

    #[test]
    fn classify_generated_kinds() {
        use Detector::*;
        let table: &[(&str, Detector)] = &[
            ("010190", Fnr),
            ("311299", Fnr),
            ("150655", Fnr),
            ("410190", DNumber),   // day 01 + 40
            ("711299", DNumber),   // day 31 + 40
            ("015190", HNumber),   // month 11 + 40
            ("014190", HNumber),   // month 01 + 40
            ("315290", HNumber),   // month 12 + 40
            ("018190", Synthetic), // month 01 + 80
            ("319290", Synthetic), // month 12 + 80
            ("414190", HNumber),   // D + H
            ("719290", Synthetic), // D + synthetic
        ];
        for &(date, want) in table {
            let n = with_checks(date, 0);
            assert_eq!(classify(&n), Some(want), "{}", s(&n));
        }
    }

    #[test]
    fn classify_rejects_bad_check_digits() {
        for date in ["010190", "410190", "018190"] {
            let n = with_checks(date, 0);
            for pos in [9, 10] {
                let mut bad = n;
                bad[pos] = b'0' + (bad[pos] - b'0' + 1) % 10;
                // Changing k1 alone may land on another accepted remainder,
                // but then k2 no longer sums to 0; either way it must fail.
                assert_eq!(classify(&bad), None, "{}", s(&bad));
            }
        }
    }

    #[test]
    fn k1_remainders_0_to_3_accepted_from_2032() {
        for date in ["010190", "290204", "410190", "015190", "018190"] {
            for rest in 0..=10 {
                let Some(n) = (0..1000).find_map(|ind: u32| {
                    complete(format!("{date}{ind:03}").as_bytes().try_into().unwrap(), rest)
                }) else {
                    continue;
                };
                let got = classify(&n);
                assert_eq!(got.is_some(), rest <= 3, "{} rest {rest}", s(&n));
            }
        }
        // The ones pinned by the brief: 1, 2, 3 accepted, 4 rejected.
        assert!(classify(&with_checks("010190", 1)).is_some());
        assert!(classify(&with_checks("010190", 2)).is_some());
        assert!(classify(&with_checks("010190", 3)).is_some());
        assert!(classify(&with_checks("010190", 4)).is_none());
    }

    #[test]
    fn classify_dates() {
        let table: &[(&str, bool, &str)] = &[
            ("310490", false, "31 Apr"),
            ("300490", true, "30 Apr"),
            ("290200", true, "29 Feb 00 (2000 is a leap year)"),
            ("290204", true, "29 Feb 04"),
            ("290296", true, "29 Feb 96"),
            ("290201", false, "29 Feb 01"),
            ("280201", true, "28 Feb 01"),
            ("300204", false, "30 Feb"),
            ("000190", false, "day 0"),
            ("010090", false, "month 0"),
            ("011390", false, "month 13"),
            ("320190", false, "day 32"),
            ("311290", true, "31 Dec"),
            ("400190", false, "day 40"),
            ("720190", false, "D-number day 72"),
            ("690290", false, "D-number 29 Feb 90"),
            ("690292", true, "D-number 29 Feb 92"),
            ("014090", false, "month 40"),
            ("015390", false, "H-number month 53"),
            ("018090", false, "month 80"),
            ("019390", false, "synthetic month 93"),
            ("314190", true, "H-number 31 Jan"),
            ("314490", false, "H-number 31 Apr"),
            ("298200", true, "synthetic 29 Feb 00"),
            ("308200", false, "synthetic 30 Feb"),
        ];
        for &(date, ok, why) in table {
            let n = with_checks(date, 0);
            assert_eq!(classify(&n).is_some(), ok, "{why}: {}", s(&n));
        }
    }

    #[test]
    fn classify_rejects_non_digits() {
        let mut n = digits(X);
        n[4] = b'a';
        assert_eq!(classify(&n), None);
        n[4] = b'7' + 0x80;
        assert_eq!(classify(&n), None);
    }

    /// `(start, end, detector)` of one reported number.
    type Hit = (usize, usize, Detector);

    fn found(hay: &str, mode: Mode) -> Vec<Hit> {
        let mut out = Vec::new();
        scan(hay.as_bytes(), mode, |f| out.push((f.start, f.end, f.detector)));
        out
    }

    #[test]
    fn scan_boundaries() {
        use Detector::{DNumber, Fnr};
        // Mode and Detector both have an `Any11`.
        const ANY: Detector = Detector::Any11;
        use Mode::{Any11, Validated};
        let x = X;
        let sp = "130972 48022";
        let dash = "130972-48022";
        let d = with_checks("410190", 0);
        let d = s(&d);
        let cases: Vec<(String, Mode, Vec<Hit>)> = vec![
            (x.into(), Validated, vec![(0, 11, Fnr)]),
            (format!("person_{x}"), Validated, vec![(7, 18, Fnr)]),
            (format!("id={x}x"), Validated, vec![(3, 14, Fnr)]),
            (format!("{x} at start"), Validated, vec![(0, 11, Fnr)]),
            (format!("at end {x}"), Validated, vec![(7, 18, Fnr)]),
            (format!("1{x}"), Validated, vec![]),  // 12 digits
            (format!("{x}1"), Validated, vec![]),  // 12 digits
            (format!("12{x}"), Validated, vec![]), // 13 digits
            (x[..10].into(), Validated, vec![]),   // 10 digits
            (format!("1{x}"), Any11, vec![]),
            ("1234567890".into(), Any11, vec![]),
            ("1234567890123".into(), Any11, vec![]),
            (sp.into(), Validated, vec![(0, 12, Fnr)]),
            (dash.into(), Validated, vec![(0, 12, Fnr)]),
            (format!("fnr: {sp}."), Validated, vec![(5, 17, Fnr)]),
            (format!("a{dash}-b"), Validated, vec![(1, 13, Fnr)]),
            (format!("{dash}-12345"), Validated, vec![(0, 12, Fnr)]),
            (format!("1{sp}"), Validated, vec![]), // 7 digits first
            (format!("{sp}1"), Validated, vec![]), // 6 digits second
            ("130972  48022".into(), Validated, vec![]), // two spaces
            ("130972--48022".into(), Validated, vec![]), // two dashes
            ("130972_48022".into(), Validated, vec![]), // other separator
            ("130972.48022".into(), Validated, vec![]),
            ("130972\t48022".into(), Validated, vec![(0, 12, Fnr)]),
            ("130972+48022".into(), Validated, vec![(0, 12, Fnr)]),
            ("q=130972%2048022&x".into(), Validated, vec![(2, 16, Fnr)]),
            ("130972%2d48022".into(), Validated, vec![(0, 14, Fnr)]),
            ("130972%2D48022".into(), Validated, vec![(0, 14, Fnr)]),
            ("130972%c2%A048022".into(), Validated, vec![(0, 17, Fnr)]),
            ("130972\u{a0}48022".into(), Validated, vec![(0, 13, Fnr)]),
            ("130972\u{202f}48022".into(), Validated, vec![(0, 14, Fnr)]),
            ("130972\u{2013}48022".into(), Validated, vec![(0, 14, Fnr)]),
            ("130972\u{2014}48022".into(), Validated, vec![]), // em dash
            ("130972%2E48022".into(), Validated, vec![]),      // an encoded dot
            ("130972%20480221".into(), Validated, vec![]),     // 6 digits after
            ("130972%20%2048022".into(), Validated, vec![]),   // two separators
            ("130972%2048023".into(), Validated, vec![]),      // bad check digit
            ("130972%2048023".into(), Any11, vec![(0, 14, ANY)]),
            (format!("q=a%20{x}"), Validated, vec![(6, 17, Fnr)]), // escape hex not glued on
            (format!("q=%22{x}%22"), Validated, vec![(5, 16, Fnr)]),
            (format!("%C2%A0{x}"), Validated, vec![(6, 17, Fnr)]),
            ("%20130972%2048022".into(), Validated, vec![(3, 17, Fnr)]),
            (format!("%{x}"), Validated, vec![(1, 12, Fnr)]), // 11 as written
            ("999999%C2%A010190 12138".into(), Validated, vec![(11, 23, Fnr)]),
            ("999999%C2%A010190 12138".into(), Any11, vec![(0, 17, ANY)]),
            ("13097 248022".into(), Validated, vec![]), // 5 + 6
            ("123456 123456".into(), Any11, vec![]),
            ("1234567 12345".into(), Any11, vec![]),
            ("123456 12345".into(), Any11, vec![(0, 12, ANY)]),
            ("123456-12345-6".into(), Any11, vec![(0, 12, ANY)]),
            ("12345 123456 12345".into(), Any11, vec![(6, 18, ANY)]),
            ("123456 123456 12345".into(), Any11, vec![(7, 19, ANY)]),
            (format!("{x}a{d}"), Validated, vec![(0, 11, Fnr), (12, 23, DNumber)]),
            (format!("{x} {x}"), Validated, vec![(0, 11, Fnr), (12, 23, Fnr)]),
            (format!("{x}-{x}"), Validated, vec![(0, 11, Fnr), (12, 23, Fnr)]),
            ("12345678901".into(), Any11, vec![(0, 11, ANY)]),
            ("12345678901".into(), Validated, vec![]),
            ("x=12345678901;".into(), Any11, vec![(2, 13, ANY)]),
            ("123456 12345".into(), Validated, vec![]),
            (format!("æøå {x} ü"), Validated, vec![(7, 18, Fnr)]),
            (format!("Fødselsnummer:{x}—ok"), Validated, vec![(15, 26, Fnr)]),
            (format!("日本{sp}語"), Validated, vec![(6, 18, Fnr)]),
            ("".into(), Any11, vec![]),
            ("no digits at all, just words".into(), Any11, vec![]),
        ];
        for (hay, mode, want) in cases {
            assert_eq!(found(&hay, mode), want, "{hay:?} {mode:?}");
        }
    }

    /// `scan` holds back the plain reading's first numbers while it learns
    /// whether the value needs decoding: more numbers than it holds, and an
    /// encoded digit only after them, still give every number once.
    #[test]
    fn many_numbers_and_a_late_encoded_digit_are_all_read() {
        let plain = ["17053650260"; 6].join(" ");
        for tail in ["", " %31%37%30%35%33%36%35%30%32%36%30", " 170536%2050260", " 1705365026%30"]
        {
            let hay = format!("{plain}{tail}");
            let got = full_scan(hay.as_bytes(), Mode::Validated);
            assert_eq!(got, naive_full_scan(hay.as_bytes(), Mode::Validated), "{hay}");
            assert_eq!(got.len(), 6 + usize::from(!tail.is_empty()), "{hay}");
        }
    }

    #[test]
    fn underscore_does_not_protect_number() {
        assert_eq!(found(&format!("person_{X}"), Mode::Validated).len(), 1);
        assert_eq!(found(&format!("{X}_person"), Mode::Validated).len(), 1);
    }

    #[test]
    fn valid_number_inside_longer_run_is_not_a_candidate() {
        for hay in [format!("{X}0"), format!("0{X}"), format!("00{X}"), format!("0{X}0")] {
            assert!(found(&hay, Mode::Validated).is_empty(), "{hay}");
            assert!(found(&hay, Mode::Any11).is_empty(), "{hay}");
        }
    }

    #[test]
    fn split_form_is_validated_with_separator_removed() {
        // Same digits as X, but the check digits broken.
        assert!(found("130972 48023", Mode::Validated).is_empty());
        assert_eq!(found("130972 48023", Mode::Any11), vec![(0, 12, Detector::Any11)]);
    }

    #[test]
    fn may_contain_examples() {
        let table: &[(&str, bool)] = &[
            ("", false),
            ("12345", false),
            ("12345 12345", false),
            ("ab123456", true),
            ("123456", true),
            ("1234-5678", false),
            ("long text with 2024-01-02 dates and 12:34:56", false),
            ("id 987654321 here", true),
        ];
        for &(hay, want) in table {
            assert_eq!(may_contain(hay.as_bytes()), want, "{hay:?}");
        }
    }

    #[test]
    fn digit_mask_is_exact_for_every_byte_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                for filler in [0u8, b'0', b'9', b'/', b':', 0xb0, 0xff] {
                    let mut bytes = [filler; 8];
                    bytes[lane] = b;
                    let m = digit_mask(u64::from_le_bytes(bytes));
                    for (i, &c) in bytes.iter().enumerate() {
                        let bit = (m >> (i * 8 + 7)) & 1 == 1;
                        assert_eq!(bit, c.is_ascii_digit(), "byte {c:#x} lane {i}");
                    }
                    assert_eq!(m & !HIGH, 0);
                }
            }
        }
    }

    /// Plain reference for `scan`: try both forms at every position that
    /// has no digit before it.
    /// The slow way: every maximal digit run, less the hex digits of a
    /// percent escape right before it, as a candidate of 11 digits or of
    /// 6 digits + one separator + 5 digits; left to right, non-overlapping.
    fn naive_scan(hay: &[u8], mode: Mode) -> Vec<Found> {
        let digit = |i: usize| hay.get(i).is_some_and(u8::is_ascii_digit);
        let mut out = Vec::new();
        let mut i = 0;
        let mut taken = 0;
        while i < hay.len() {
            if !digit(i) || (i > 0 && digit(i - 1)) {
                i += 1;
                continue;
            }
            let mut e = i;
            while digit(e) {
                e += 1;
            }
            let mut stripped = i;
            if i >= 1 && hay[i - 1] == b'%' {
                stripped = (i + 2).min(e);
            } else if i >= 2 && hay[i - 2] == b'%' && hay[i - 1].is_ascii_hexdigit() {
                stripped = i + 1;
            }
            let raw = i;
            i = e;
            if raw < taken {
                continue;
            }
            let candidate = |s: usize| -> Option<(usize, Vec<u8>)> {
                if e - s == 11 {
                    return Some((e, hay[s..e].to_vec()));
                }
                if e - s != 6 {
                    return None;
                }
                SEPARATORS.iter().chain(&["%2d", "%c2%a0"]).find_map(|sep| {
                    let t = e + sep.len();
                    let joins =
                        hay.get(e..t).is_some_and(|h| h.eq_ignore_ascii_case(sep.as_bytes()));
                    (joins && t + 5 <= hay.len() && (t..t + 5).all(digit) && !digit(t + 5))
                        .then(|| (t + 5, [&hay[s..e], &hay[t..t + 5]].concat()))
                })
            };
            let found = candidate(raw)
                .map(|c| (raw, c))
                .or_else(|| candidate(stripped).map(|c| (stripped, c)));
            if let Some((s, (end, d))) = found {
                let d: [u8; 11] = d.try_into().unwrap();
                let det = match mode {
                    Mode::Validated => classify(&d),
                    Mode::Any11 => Some(Detector::Any11),
                };
                if let Some(detector) = det {
                    out.push(Found { start: s, end, detector });
                    taken = end;
                    i = end;
                }
            }
        }
        out
    }

    /// A valid fødselsnummer from `seed`'s xorshift stream: a real date,
    /// an individual number, check digits by mod 11 (k1 remainder 0).
    fn seeded_number(seed: &mut u64) -> [u8; 11] {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        loop {
            let v = next();
            let (dd, mm, yy, ind) =
                (1 + v % 28, 1 + (v >> 8) % 12, (v >> 16) % 100, (v >> 24) % 1000);
            let text = format!("{dd:02}{mm:02}{yy:02}{ind:03}");
            let mut d: Vec<u64> = text.bytes().map(|b| u64::from(b - b'0')).collect();
            let k1 = (11
                - [3, 7, 6, 1, 8, 9, 4, 5, 2].iter().zip(&d).map(|(w, x)| w * x).sum::<u64>() % 11)
                % 11;
            d.push(k1);
            let k2 = (11
                - [5, 4, 3, 2, 7, 6, 5, 4, 3, 2].iter().zip(&d).map(|(w, x)| w * x).sum::<u64>()
                    % 11)
                % 11;
            d.push(k2);
            if k1 < 10 && k2 < 10 {
                return std::array::from_fn(|i| b'0' + d[i] as u8);
            }
        }
    }

    /// Scenario: for the whole form and every separator, a million values:
    /// half valid numbers, half the same with a wrong check digit, a
    /// quarter of each with some digits percent-encoded, joined by `, `.
    /// Guarantees: every number is found, exactly where it was written, and
    /// no look-alike is touched.
    #[test]
    fn a_million_planted_numbers_per_separator_all_found_controls_untouched() {
        const VALUES: usize = 1_000_000;
        const PER_HAY: usize = 2_000;
        let forms = [""].into_iter().chain(SEPARATORS).chain(["%2d", "%c2%a0"]);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for sep in forms {
            let (mut found_all, mut survivors, mut touched) = (0, 0, 0);
            for _ in 0..VALUES / PER_HAY {
                let (mut hay, mut planted) = (String::new(), Vec::new());
                for i in 0..PER_HAY {
                    let mut n = seeded_number(&mut seed);
                    let control = i % 2 == 1;
                    if control {
                        n[10] = b'0' + (n[10] - b'0' + 1) % 10;
                    }
                    let which = if seed.is_multiple_of(4) { (seed >> 20) as u16 } else { 0 };
                    let start = hay.len();
                    hay.push_str(&encoded(&n, which, sep));
                    planted.push((start, hay.len(), control));
                    hay.push_str(", ");
                }
                let found = full_scan(hay.as_bytes(), Mode::Validated);
                found_all += found.len();
                // Both in order: walk them together.
                let mut f = found.iter().peekable();
                for (s, e, control) in planted {
                    while f.next_if(|x| x.end <= s).is_some() {}
                    let here = f.peek().filter(|x| x.start < e);
                    survivors +=
                        usize::from(!control && here.is_none_or(|x| (x.start, x.end) != (s, e)));
                    touched += usize::from(control && here.is_some());
                }
            }
            assert_eq!(
                (survivors, touched),
                (0, 0),
                "separator {sep:?}: survivors, controls touched"
            );
            assert_eq!(found_all, VALUES / 2, "separator {sep:?}");
        }
    }

    /// Every separator of the split form, for the naive model and the
    /// generators (the hex of `%2D` and `%C2%A0` matches in either case).
    const SEPARATORS: [&str; 10] =
        [" ", "-", "\t", "+", "\u{a0}", "\u{202f}", "\u{2013}", "%20", "%2D", "%C2%A0"];

    fn naive_may_contain(hay: &[u8]) -> bool {
        hay.split(|&b| !b.is_ascii_digit() && b != b'%').any(|run| run.len() >= 6)
    }

    fn fast_scan(hay: &[u8], mode: Mode) -> Vec<Found> {
        let mut out = Vec::new();
        scan_plain(hay, mode, |f| out.push(f));
        out
    }

    fn full_scan(hay: &[u8], mode: Mode) -> Vec<Found> {
        let mut out = Vec::new();
        scan(hay, mode, |f| out.push(f));
        out
    }

    /// The slow way for [`scan`]: [`naive_scan`] of the text as written and,
    /// when an escape of a digit, tab, `+` or 0xE2 is in it, of the text
    /// with every escape decoded (ranges taken back to the written text);
    /// overlapping ranges merged.
    fn naive_full_scan(hay: &[u8], mode: Mode) -> Vec<Found> {
        let hidden = (0..hay.len())
            .filter_map(|i| naive_escape(hay, i))
            .any(|b| b.is_ascii_digit() || b == b'\t' || b == b'+' || b == 0xe2);
        if !hidden {
            return naive_scan(hay, mode);
        }
        // Read, star what was found, read the starred text again, until
        // nothing new turns up.
        let mut found = naive_readings(hay, mode);
        let mut text = hay.to_vec();
        loop {
            for x in &found {
                let mut i = x.start;
                while i < x.end {
                    if text[i] == b'%'
                        && text.get(i + 1) == Some(&b'3')
                        && text.get(i + 2).is_some_and(u8::is_ascii_digit)
                    {
                        text[i + 1] = b'2';
                        text[i + 2] = b'A';
                        i += 3;
                    } else {
                        if text[i].is_ascii_digit() {
                            text[i] = b'*';
                        }
                        i += 1;
                    }
                }
            }
            let more = naive_readings(&text, mode);
            if more.is_empty() {
                return found;
            }
            found.extend(more);
            found.sort_by_key(|x| x.start);
        }
    }

    fn naive_escape(hay: &[u8], i: usize) -> Option<u8> {
        let hex = |b: u8| (b as char).to_digit(16);
        let (h, l) = (hex(*hay.get(i + 1)?)?, hex(*hay.get(i + 2)?)?);
        (hay[i] == b'%').then_some((h * 16 + l) as u8)
    }

    /// [`naive_scan`] of `hay` as written and of `hay` with every escape
    /// decoded (ranges taken back to `hay`), overlapping ones merged.
    fn naive_readings(hay: &[u8], mode: Mode) -> Vec<Found> {
        let mut found: Vec<Found> = naive_scan(hay, mode);
        let (mut text, mut at) = (vec![], vec![]);
        let mut i = 0;
        while i < hay.len() {
            at.push(i);
            match naive_escape(hay, i) {
                Some(b) => (text.push(b), i += 3),
                None => (text.push(hay[i]), i += 1),
            };
        }
        at.push(hay.len());
        for x in naive_scan(&text, mode) {
            found.push(Found { start: at[x.start], end: at[x.end], ..x });
        }
        found.sort_by_key(|x| (x.start, std::cmp::Reverse(x.end)));
        let mut out: Vec<Found> = vec![];
        for x in found {
            match out.last_mut() {
                Some(o) if x.start < o.end => o.end = o.end.max(x.end),
                _ => out.push(x),
            }
        }
        out
    }

    /// `n` with each digit written as is or percent-encoded (`%3d`), as
    /// `which` picks (bit i for digit i), and `sep` (if any) between the 6
    /// and the 5 digits.
    fn encoded(n: &[u8], which: u16, sep: &str) -> String {
        let mut out = String::new();
        for (i, &d) in n.iter().enumerate() {
            if i == 6 {
                out.push_str(sep);
            }
            if which & (1 << i) != 0 {
                out.push_str(&format!("%3{}", d as char));
            } else {
                out.push(d as char);
            }
        }
        out
    }

    /// Pieces that make interesting haystacks: valid numbers whole and
    /// split, digit runs of lengths around 5, 6 and 11, separators, letters,
    /// UTF-8 and raw high bytes (which the SWAR mask must not take for
    /// digits).
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let valid = valid_number().prop_map(|n| n.to_vec());
        let seps: Vec<&str> =
            SEPARATORS.iter().copied().chain(["%2d", "%c2%a0", "%C2%a0"]).collect();
        let split = (valid.clone(), prop::sample::select(seps)).prop_map(|(n, sep)| {
            let mut v = n[..6].to_vec();
            v.extend_from_slice(sep.as_bytes());
            v.extend_from_slice(&n[6..]);
            v
        });
        let run = (1usize..14, any::<u64>()).prop_map(|(len, seed)| {
            (0..len).map(|i| b'0' + ((seed >> (i % 16 * 4)) % 10) as u8).collect()
        });
        let sep = prop::sample::select(vec![
            b" ".to_vec(),
            b"-".to_vec(),
            b"  ".to_vec(),
            b"_".to_vec(),
            b"a".to_vec(),
            b"=".to_vec(),
            b"%".to_vec(),
            b"%2".to_vec(),
            b"%C2%".to_vec(),
            b"%2E".to_vec(),
            "\u{2014}".as_bytes().to_vec(),
            "\u{a0}".as_bytes().to_vec(),
            "ø".as_bytes().to_vec(),
            vec![0xb5],
        ]);
        prop_oneof![3 => valid, 2 => split, 3 => run, 4 => sep, 1 => prop::collection::vec(any::<u8>(), 0..10)]
    }

    /// A valid number of any kind (ordinary, D, H, synthetic), k1
    /// remainder 0 to 3.
    fn valid_number() -> impl Strategy<Value = [u8; 11]> + Clone {
        (0u32..12, 1u8..=28, 1u8..=12, 0u8..100, 0u32..4, 0u8..4).prop_filter_map(
            "check digit would be 10",
            |(ind, day, month, yy, rest, kind)| {
                let (dd, mm) = match kind {
                    0 => (day, month),
                    1 => (day + 40, month),
                    2 => (day, month + 40),
                    _ => (day, month + 80),
                };
                let first9 = format!("{dd:02}{mm:02}{yy:02}{:03}", ind * 83);
                complete(first9.as_bytes().try_into().unwrap(), rest)
            },
        )
    }

    fn haystack() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(piece(), 0..10).prop_map(|ps| ps.concat())
    }

    /// Scenario: a run of five, six or seven digits at every offset of
    /// every length up to 100, amid letters or amid digit-free punctuation.
    /// Guarantees: `may_contain` and its loop alone say exactly whether a
    /// run of six is there, whichever block or chunk the run falls in.
    #[test]
    fn may_contain_sees_a_run_at_every_offset() {
        for len in 0..=100 {
            for at in 0..len {
                for n in 5..=7 {
                    for filler in [b'x', b'/'] {
                        let mut hay = vec![filler; len];
                        for b in hay.iter_mut().skip(at).take(n) {
                            *b = b'5';
                        }
                        let want = naive_may_contain(&hay);
                        assert_eq!(may_contain(&hay), want, "len {len}, run of {n} at {at}");
                        assert_eq!(may_contain_blocks(&hay), want, "len {len}, run of {n} at {at}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn scan_agrees_with_naive(hay in haystack()) {
            for mode in [Mode::Validated, Mode::Any11] {
                prop_assert_eq!(fast_scan(&hay, mode), naive_scan(&hay, mode));
            }
        }

        #[test]
        fn scan_agrees_with_naive_on_random_bytes(
            hay in prop::collection::vec(
                prop_oneof![6 => b'0'..=b'9', 1 => Just(b' '), 1 => Just(b'-'), 1 => Just(b'%'), 1 => Just(b'+'), 1 => any::<u8>()],
                0..80,
            )
        ) {
            for mode in [Mode::Validated, Mode::Any11] {
                prop_assert_eq!(fast_scan(&hay, mode), naive_scan(&hay, mode));
            }
        }

        /// Scenario: haystacks as above with percent-encoded digits and
        /// escapes of every kind mixed in.
        /// Guarantees: `scan` is both readings merged (the naive model), and
        /// `may_contain` passes every value it finds a number in.
        #[test]
        fn scan_reads_encoded_digits_as_the_naive_model(
            hay in prop::collection::vec(
                prop_oneof![
                    4 => piece(),
                    2 => (b'0'..=b'9').prop_map(|d| format!("%3{}", d as char).into_bytes()),
                    1 => prop::sample::select(vec!["%09", "%2B", "%E2%80%93", "%e2%80%af", "%41", "%3A", "%"])
                        .prop_map(|e| e.as_bytes().to_vec()),
                ],
                0..14,
            ).prop_map(|ps| ps.concat())
        ) {
            for mode in [Mode::Validated, Mode::Any11] {
                let got = full_scan(&hay, mode);
                prop_assert_eq!(&got, &naive_full_scan(&hay, mode));
                if !got.is_empty() {
                    prop_assert!(may_contain(&hay));
                }
            }
        }

        /// Scenario: a valid number with any of its digits percent-encoded,
        /// whole or split by any separator (typed, UTF-8 or encoded, the
        /// encodings of tab, `+`, en dash and narrow no-break space too),
        /// inside a query string.
        /// Guarantees: one match, covering exactly the written number.
        #[test]
        fn encoded_digits_are_read(
            n in valid_number(),
            which in any::<u16>(),
            sep in prop::sample::select(vec![
                "", " ", "+", "%20", "%2D", "%2d", "%C2%A0", "%09", "%2B", "%E2%80%93", "%E2%80%AF",
                "\u{a0}", "\u{202f}", "\u{2013}", "\t", "-",
            ]),
        ) {
            let number = encoded(&n, which, sep);
            let hay = format!("q={number}&page=2");
            let got = full_scan(hay.as_bytes(), Mode::Validated);
            prop_assert_eq!(got.len(), 1, "{}", hay);
            prop_assert_eq!((got[0].start, got[0].end), (2, 2 + number.len()), "{}", hay);
        }

        /// Scenario: what is not a personal number, encoded the same ways:
        /// runs of 10, 12 and 13 digits, and 11 with a wrong check digit.
        /// Guarantees: the encoded readings add nothing to what the plain one
        /// finds (a valid number as written glued to an encoded digit).
        #[test]
        fn encoded_look_alikes_are_not_read(
            n in valid_number(),
            which in any::<u16>(),
            extra in prop::collection::vec(b'0'..=b'9', 1..3),
            sep in prop::sample::select(vec!["", "%20", "+", "%09"]),
        ) {
            let mut bad = n.to_vec();
            bad[10] = b'0' + (bad[10] - b'0' + 1) % 10;
            let longer: Vec<u8> = n.iter().chain(&extra).copied().collect();
            for digits in [&n[..10], &longer[..], &bad[..]] {
                let sep = if digits.len() == 11 { sep } else { "" };
                let hay = format!("q={}&page=2", encoded(digits, which, sep));
                // Only what the plain reading finds (a valid number as
                // written next to an encoded digit), nothing new.
                let plain = fast_scan(hay.as_bytes(), Mode::Validated);
                prop_assert_eq!(full_scan(hay.as_bytes(), Mode::Validated), plain, "{}", hay);
            }
        }

        #[test]
        fn may_contain_never_hides_a_match(hay in haystack()) {
            prop_assert_eq!(may_contain(&hay), naive_may_contain(&hay));
            if !fast_scan(&hay, Mode::Any11).is_empty() {
                prop_assert!(may_contain(&hay));
            }
        }

        /// Scenario: digit runs of every length up to seven, at every
        /// position of inputs up to 100 bytes long, so that runs straddle
        /// each block and chunk boundary and the overlapping last loads.
        /// Guarantees: `may_contain`, and its loop for any length alone, are
        /// exactly "has a run of six digits".
        #[test]
        fn may_contain_is_exact_across_block_boundaries(
            len in 0usize..100,
            runs in prop::collection::vec((0usize..100, 1usize..8), 0..4),
        ) {
            let mut hay = vec![b'x'; len];
            for (at, n) in runs {
                for b in hay.iter_mut().skip(at).take(n) {
                    *b = b'7';
                }
            }
            prop_assert_eq!(may_contain(&hay), naive_may_contain(&hay));
            prop_assert_eq!(may_contain_blocks(&hay), naive_may_contain(&hay));
        }

        #[test]
        fn swar_helpers_agree_with_byte_loops(
            hay in prop::collection::vec(any::<u8>(), 0..40),
            from in 0usize..48,
        ) {
            let want_next = (from..hay.len()).find(|&i| hay[i].is_ascii_digit()).unwrap_or(hay.len());
            let want_end = (from..hay.len()).find(|&i| !hay[i].is_ascii_digit()).unwrap_or(hay.len());
            prop_assert_eq!(next_digit(&hay, from), want_next);
            prop_assert_eq!(run_end(&hay, from), want_end);
            let want_bits = |bytes: &[u8]| bytes.iter().enumerate().fold(0u32, |m, (i, b)| m | (u32::from(b.is_ascii_digit()) << i));
            let want_marks = |bytes: &[u8]| bytes.iter().enumerate().fold(0u32, |m, (i, &b)| m | (u32::from(b.is_ascii_digit() || b == b'%') << i));
            if let Some(block) = hay.first_chunk::<16>() {
                prop_assert_eq!(digits16(block), want_bits(block));
                prop_assert_eq!(marks16(block), want_marks(block));
            }
            let short = &hay[..hay.len().min(15)];
            prop_assert_eq!(short_marks(short), want_marks(short));
        }
    }
}
