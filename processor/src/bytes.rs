//! Compares of short byte strings (attribute keys, URL paths), and a
//! search for delimiters in them.
//!
//! In the wasm guest, `==` on slices calls compiler-builtins'
//! `memcmp`, which goes one byte at a time; the walk compares keys and ids
//! hundreds of thousands of times per batch. Up to 16 bytes these are two
//! word compares instead, and longer strings go a word at a time. Pinned to
//! the slice operators by property tests.

/// `a == b`.
#[inline]
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // First, middle and last byte: every byte when n <= 3.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        // Two overlapping words cover every byte.
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => eq_long(a, b),
    }
}

/// [`eq`] for equal lengths over 16: whole words, then one that overlaps
/// the last. Out of line, so that `eq` stays small where it is inlined.
#[inline(never)]
fn eq_long(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    let mut i = 0;
    while i + 8 < n {
        if word8(a, i) != word8(b, i) {
            return false;
        }
        i += 8;
    }
    word8(a, n - 8) == word8(b, n - 8)
}

/// The index of the first byte of `hay` that is one of `needles`.
///
/// Eight bytes per loop turn, as one word: URL paths are a few dozen bytes,
/// too short for memchr's vector loop (16 bytes and up, byte by byte below),
/// and in the wasm guest every loop turn also pays an epoch check. Pinned
/// to `position` by a property test.
#[inline]
pub(crate) fn find_any<const N: usize>(hay: &[u8], needles: [u8; N]) -> Option<usize> {
    // A word's lowest byte equal to a needle: the lowest set bit of
    // `has_zero(word ^ needle)` marks exactly that byte (bits above it may
    // be false alarms, so only the lowest counts).
    const LO: u64 = u64::from_ne_bytes([1; 8]);
    const HI: u64 = LO << 7;
    let hits = |w: u64| {
        needles.iter().fold(0, |m, &n| {
            let x = w ^ (LO * u64::from(n));
            m | (x.wrapping_sub(LO) & !x & HI)
        })
    };
    let n = hay.len();
    if n < 8 {
        return hay.iter().position(|b| needles.contains(b));
    }
    let mut at = 0;
    while at + 8 <= n {
        let m = hits(word8(hay, at));
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // The last word overlaps bytes already found clear, so its lowest hit
    // is at or after `at`.
    let m = hits(word8(hay, n - 8));
    (m != 0).then(|| n - 8 + (m.trailing_zeros() / 8) as usize)
}

#[inline(always)]
fn word4(s: &[u8], at: usize) -> u32 {
    s[at..].first_chunk::<4>().map_or(0, |w| u32::from_le_bytes(*w))
}

#[inline(always)]
fn word8(s: &[u8], at: usize) -> u64 {
    s[at..].first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Short strings over a two-letter alphabet, so that equal and
    /// nearly-equal pairs are common.
    fn short() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..40)
    }

    proptest! {
        #[test]
        fn eq_matches_the_slice_operator(a in short(), b in short()) {
            prop_assert_eq!(eq(&a, &b), a == b);
        }

        /// Delimiters anywhere (often several, often none) in strings of
        /// every length around the word size and its multiples.
        #[test]
        fn find_any_matches_position(hay in proptest::collection::vec(prop_oneof![Just(b'?'), Just(b'#'), Just(b'/'), Just(b'a'), Just(0xbf), Just(0x3e)], 0..40)) {
            let two = [b'?', b'#'];
            let three = [b'/', b'?', b'#'];
            prop_assert_eq!(find_any(&hay, two), hay.iter().position(|b| two.contains(b)));
            prop_assert_eq!(find_any(&hay, three), hay.iter().position(|b| three.contains(b)));
        }

        /// Each single-byte difference, at every position and length.
        #[test]
        fn eq_sees_every_byte(a in proptest::collection::vec(proptest::num::u8::ANY, 1..40), at in 0usize..40, flip in 1u8..=255) {
            let mut b = a.clone();
            let at = at % a.len();
            b[at] ^= flip;
            prop_assert!(!eq(&a, &b));
        }
    }
}
