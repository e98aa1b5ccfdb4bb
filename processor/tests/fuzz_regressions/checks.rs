//! The properties the fuzz targets assert, shared by the targets
//! (`fuzz/fuzz_targets/*.rs` include this file by path) and by the replay
//! test beside it, so that a crash input found by the fuzzer replays against
//! exactly the checks that failed. Each check panics on a violation.
//!
//! This file uses only `tracescrub_processor` and `std`: the fuzz crate has
//! no other dependency to offer.

use std::sync::OnceLock;

use tracescrub_processor::fnr::{self, Detector, Mode};
use tracescrub_processor::{Error, Finding, Processor, Stats};

/// The configs an input's first byte picks from (modulo their number).
pub const CONFIGS: [&str; 5] = [
    // 0: the platform defaults.
    "{}",
    // 1: label replacement: lengths change, so every length prefix above a
    // masked value is rewritten.
    r#"{"mask": {"replacement": "label", "label": "[fnr]"}}"#,
    // 2: any11: every 11-digit run is masked, valid or not.
    r#"{"mask": {"mode": "any11"}}"#,
    // 3: everything off: the output must be the input.
    r#"{"noise": {"enabled": false}, "mask": {"enabled": false}}"#,
    // 4: narrowed keys and fields, another glob list, and a size limit.
    r#"{"noise": {"globs": ["*/isAlive", "/a*"], "drop_descendants": false},
        "mask": {"scope": {"fields": ["span-attribute", "resource-attribute", "attribute-key"], "keys": ["db.*", "k*"]}},
        "limits": {"max_batch_bytes": 2048}}"#,
];

/// Index of the everything-off config.
const ALL_OFF: usize = 3;

/// The processors for [`CONFIGS`], compiled once per process.
fn processors() -> &'static [Processor] {
    static PROCESSORS: OnceLock<Vec<Processor>> = OnceLock::new();
    PROCESSORS.get_or_init(|| {
        CONFIGS.iter().map(|c| Processor::new(c).expect("fuzz configs are valid")).collect()
    })
}

/// The `process` target: the first byte picks a config, the rest is the
/// batch.
///
/// On success: the span counts add up; the stats' lists sum to their totals;
/// with every rule off the output is the input, and whenever nothing was
/// dropped or masked it is too; processing the output again gives the same
/// bytes and does nothing (idempotence); `explain` agrees with `process`;
/// cut at `split_ranges`, each part's `process_part` output is its `process`
/// output, and when the parts agree they join into the whole's
/// bytes, with stats that sum to the whole's.
/// On failure: the error is `Malformed` with an offset inside the batch or
/// `TooLarge` for a batch over the limit, and the output buffer is empty; a
/// malformed batch has a malformed part, wherever `split_ranges` cuts it.
/// Whether a batch is malformed does not depend on the config.
pub fn process(data: &[u8]) {
    let Some((&pick, batch)) = data.split_first() else { return };
    let which = usize::from(pick) % CONFIGS.len();
    let p = &processors()[which];
    let mut out = b"stale".to_vec();
    let result = p.process_into(batch, &mut out);
    let off = processors()[ALL_OFF].process(batch);
    match result {
        Ok(stats) => {
            assert!(stats.spans_out <= stats.spans_in, "{stats:?}");
            assert_eq!(stats.spans_in - stats.spans_out, stats.spans_dropped, "{stats:?}");
            let by_rule: u64 = stats.dropped_by_rule.iter().map(|c| c.value).sum();
            assert_eq!(by_rule + stats.dropped_descendants, stats.spans_dropped, "{stats:?}");
            let by_detector: u64 = stats.masked_by_detector.iter().map(|c| c.value).sum();
            let by_field: u64 = stats.masked_by_field.iter().map(|c| c.value).sum();
            assert_eq!(by_detector, stats.values_masked, "{stats:?}");
            assert_eq!(by_field, stats.values_masked, "{stats:?}");
            assert!(
                stats
                    .dropped_by_rule
                    .iter()
                    .chain(&stats.masked_by_detector)
                    .chain(&stats.masked_by_field)
                    .all(|c| c.value > 0)
            );
            if which == ALL_OFF || (stats.spans_dropped == 0 && stats.values_masked == 0) {
                assert!(out == batch, "nothing was done, yet the output differs from the input");
            }

            let again =
                p.process(&out).expect("the output of a successful call must be processable");
            assert!(again.batch == out, "processing the output again changed it");
            assert_eq!(again.stats.spans_in, stats.spans_out);
            assert_eq!(
                (again.stats.spans_dropped, again.stats.values_masked),
                (0, 0),
                "{:?}",
                again.stats
            );

            let (explained, findings) =
                p.explain(batch).expect("explain must succeed where process does");
            assert!(explained.batch == out, "explain's output differs from process's");
            assert_eq!(explained.stats, stats);
            let dropped =
                findings.iter().filter(|f| matches!(f, Finding::Dropped { .. })).count() as u64;
            assert_eq!(dropped, stats.spans_dropped, "{findings:?}");
            for f in &findings {
                let quoted = match f {
                    Finding::Dropped { path, .. } => path,
                    Finding::Masked { key, .. } => key,
                };
                let mut leaked = false;
                fnr::scan(quoted.as_bytes(), Mode::Any11, |_| leaked = true);
                assert!(!leaked, "a finding quotes a number: {f:?}");
            }

            for parts in [2, 3] {
                let ranges = tracescrub_processor::split_ranges(batch, parts);
                let (mut joined, mut total, mut links) = (Vec::new(), Stats::default(), Vec::new());
                for range in &ranges {
                    let part = &batch[range.clone()];
                    let (output, part_links) = p
                        .process_part(part.to_vec())
                        .expect("every part of a batch that processes must process");
                    let plain =
                        p.process(part).expect("process_part and process must agree on success");
                    assert!(output == plain, "process_part and process differ on part {range:?}");
                    joined.extend_from_slice(&output.batch);
                    total.add(&output.stats);
                    links.push(part_links);
                }
                if tracescrub_processor::parts_agree(&links) {
                    assert!(
                        joined == out,
                        "parts {ranges:?} agree, yet process to other bytes than the whole"
                    );
                    assert_eq!(by_name(total), by_name(stats.clone()), "parts {ranges:?}");
                }
            }

            let off = off.expect("a batch one config reads, every config reads");
            assert_eq!(off.stats.spans_in, stats.spans_in);
        }
        Err(Error::Malformed(m)) => {
            assert!(out.is_empty(), "output left behind on error");
            assert!(
                m.offset <= batch.len() as u64,
                "offset {} past the end of {} bytes",
                m.offset,
                batch.len()
            );
            assert!(!m.reason.is_empty());
            assert!(off.is_err(), "malformed under config {which}, read under everything-off: {m}");
            let ranges = tracescrub_processor::split_ranges(batch, 2);
            let fails = ranges.iter().any(|r| {
                matches!(p.process_part(batch[r.clone()].to_vec()), Err(Error::Malformed(_)))
            });
            assert!(fails, "malformed whole ({m}), yet every part of {ranges:?} reads");
        }
        Err(Error::TooLarge { size, limit }) => {
            assert!(out.is_empty(), "output left behind on error");
            assert_eq!(size, batch.len() as u64);
            assert!(size > limit);
        }
        Err(other) => panic!("process may fail only with Malformed or TooLarge, got {other:?}"),
    }
}

/// Stats with their named counts in name order: parts' sums list a name
/// where it first appeared.
pub fn by_name(mut stats: Stats) -> Stats {
    for counts in
        [&mut stats.dropped_by_rule, &mut stats.masked_by_detector, &mut stats.masked_by_field]
    {
        counts.sort_by(|a, b| a.name.cmp(&b.name));
    }
    stats
}

/// Whether 11 digits are a valid number, and which kind, by the rules
/// written out again: k2's weighted sum over all 11 digits is 0 mod 11, k1's
/// over the first 10 is 0 to 3 mod 11 (the 2032 rule), and the date is real
/// once the offsets are off (D: day + 40; H: month + 40; synthetic: month +
/// 80; a month offset names the kind before a day offset does).
pub fn naive_classify(d: &[u8]) -> Option<Detector> {
    if d.len() != 11 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: Vec<u32> = d.iter().map(|b| u32::from(b - b'0')).collect();
    let k1: u32 = [3, 7, 6, 1, 8, 9, 4, 5, 2, 1].iter().zip(&n).map(|(w, x)| w * x).sum();
    let k2: u32 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1].iter().zip(&n).map(|(w, x)| w * x).sum();
    if k1 % 11 > 3 || !k2.is_multiple_of(11) {
        return None;
    }
    let (day, month, yy) = (n[0] * 10 + n[1], n[2] * 10 + n[3], n[4] * 10 + n[5]);
    let (month, month_kind) = match month {
        1..=12 => (month, None),
        41..=52 => (month - 40, Some(Detector::HNumber)),
        81..=92 => (month - 80, Some(Detector::Synthetic)),
        _ => return None,
    };
    let (day, day_kind) = if day > 40 { (day - 40, Some(Detector::DNumber)) } else { (day, None) };
    let last = match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=last).contains(&day) {
        return None;
    }
    Some(month_kind.or(day_kind).unwrap_or(Detector::Fnr))
}

/// Every candidate in `hay` that `mode` reports, as (start, end, detector),
/// found the slow way: list the maximal digit runs, then take each run of
/// exactly 11, and each run of exactly 6 followed by one separator and
/// exactly 5 digits with no digit after them.
pub fn naive_find(hay: &[u8], mode: Mode) -> Vec<(usize, usize, Detector)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        let start = i;
        while i < hay.len() && hay[i].is_ascii_digit() {
            i += 1;
        }
        if i > start {
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    let mut candidates: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for &(run_start, e) in &runs {
        // The run as written; if that has no number's shape, the run less
        // the hex digits of a percent escape that leads it.
        let stripped = match (
            run_start.checked_sub(2).map(|i| hay[i]),
            run_start.checked_sub(1).map(|i| hay[i]),
        ) {
            (_, Some(b'%')) => run_start + (e - run_start).min(2),
            (Some(b'%'), Some(h)) if h.is_ascii_hexdigit() => run_start + 1,
            _ => run_start,
        };
        for s in [run_start, stripped] {
            if e - s == 11 {
                candidates.push((s, e, hay[s..e].to_vec()));
                break;
            }
            if e - s == 6 {
                // The documented separators; percent-encoding's hex in either case.
                let sep =
                    [" ", "-", "\t", "+", "\u{a0}", "\u{202f}", "\u{2013}", "%20", "%2d", "%c2%a0"]
                        .into_iter()
                        .find(|sep| {
                            let t = e + sep.len();
                            hay.get(e..t).is_some_and(|j| j.eq_ignore_ascii_case(sep.as_bytes()))
                                && hay
                                    .get(t..t + 5)
                                    .is_some_and(|f| f.iter().all(u8::is_ascii_digit))
                                && !hay.get(t + 5).is_some_and(u8::is_ascii_digit)
                        });
                if let Some(sep) = sep {
                    let t = e + sep.len();
                    candidates.push((s, t + 5, [&hay[s..e], &hay[t..t + 5]].concat()));
                    break;
                }
            }
        }
    }
    // Left to right; a number found takes its range, and a candidate that
    // starts inside it is not one (a candidate that is not a number takes
    // nothing).
    let mut taken = 0;
    candidates
        .into_iter()
        .filter_map(|(s, e, digits)| match mode {
            Mode::Validated => naive_classify(&digits).map(|d| (s, e, d)),
            Mode::Any11 => Some((s, e, Detector::Any11)),
        })
        .filter(|&(s, e, _)| {
            let free = s >= taken;
            if free {
                taken = e;
            }
            free
        })
        .collect()
}

fn fast_find(hay: &[u8], mode: Mode) -> Vec<(usize, usize, Detector)> {
    let mut out = Vec::new();
    fnr::scan_plain(hay, mode, |f| out.push((f.start, f.end, f.detector)));
    out
}

fn full_find(hay: &[u8], mode: Mode) -> Vec<(usize, usize, Detector)> {
    let mut out = Vec::new();
    fnr::scan(hay, mode, |f| out.push((f.start, f.end, f.detector)));
    out
}

/// The slow way for `fnr::scan`: [`naive_find`] of the text as written and,
/// when a percent escape of a digit, tab, `+` or 0xE2 is in it, of the text
/// with every escape decoded (ranges taken back to the written text),
/// overlapping ranges merged into the first; then the same of the text with
/// those ranges starred (`%3d` as `%2A`), until nothing new turns up.
pub fn naive_full_find(hay: &[u8], mode: Mode) -> Vec<(usize, usize, Detector)> {
    let hidden = (0..hay.len())
        .filter_map(|i| escape(hay, i))
        .any(|b| b.is_ascii_digit() || b == b'\t' || b == b'+' || b == 0xe2);
    if !hidden {
        return naive_find(hay, mode);
    }
    let mut found = both_readings(hay, mode);
    let mut text = hay.to_vec();
    loop {
        for &(s, e, _) in &found {
            let mut i = s;
            while i < e {
                if text[i..e].starts_with(b"%3") && text.get(i + 2).is_some_and(u8::is_ascii_digit)
                {
                    text[i + 1..i + 3].copy_from_slice(b"2A");
                    i += 3;
                } else {
                    if text[i].is_ascii_digit() {
                        text[i] = b'*';
                    }
                    i += 1;
                }
            }
        }
        let more = both_readings(&text, mode);
        if more.is_empty() {
            return found;
        }
        found.extend(more);
        found.sort_by_key(|&(s, _, _)| s);
    }
}

fn escape(hay: &[u8], i: usize) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let (h, l) = (hex(*hay.get(i + 1)?)?, hex(*hay.get(i + 2)?)?);
    (hay[i] == b'%').then_some((h * 16 + l) as u8)
}

fn both_readings(hay: &[u8], mode: Mode) -> Vec<(usize, usize, Detector)> {
    let mut found = naive_find(hay, mode);
    let (mut text, mut at) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < hay.len() {
        at.push(i);
        if let Some(b) = escape(hay, i) {
            text.push(b);
            i += 3;
        } else {
            text.push(hay[i]);
            i += 1;
        }
    }
    at.push(hay.len());
    found.extend(naive_find(&text, mode).into_iter().map(|(s, e, d)| (at[s], at[e], d)));
    found.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
    let mut merged: Vec<(usize, usize, Detector)> = Vec::new();
    for (s, e, d) in found {
        match merged.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e, d)),
        }
    }
    merged
}

/// `hay` with every found range replaced: digits by `*`, or the whole range
/// by `label`.
fn masked(hay: &[u8], found: &[(usize, usize, Detector)], label: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e, _) in found {
        out.extend_from_slice(&hay[at..s]);
        match label {
            Some(l) => out.extend_from_slice(l),
            None => {
                out.extend(hay[s..e].iter().map(|&b| if b.is_ascii_digit() { b'*' } else { b }))
            }
        }
        at = e;
    }
    out.extend_from_slice(&hay[at..]);
    out
}

/// The `scan` target: on any bytes, `fnr::scan_plain` agrees with
/// [`naive_find`] and `fnr::scan` with [`naive_full_find`] in both modes, `may_contain` never hides a candidate, `classify` agrees
/// with [`naive_classify`] on the first 11 bytes, and masking every found
/// range (with stars or a label) leaves nothing for either finder.
pub fn scan(data: &[u8]) {
    if let Some(first) = data.first_chunk::<11>() {
        assert_eq!(
            fnr::classify(first),
            naive_classify(first),
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
    for mode in [Mode::Validated, Mode::Any11] {
        let plain = fast_find(data, mode);
        assert_eq!(
            plain,
            naive_find(data, mode),
            "{mode:?} on {:?}",
            String::from_utf8_lossy(data)
        );
        let fast = full_find(data, mode);
        assert_eq!(
            fast,
            naive_full_find(data, mode),
            "{mode:?}, decoded too, on {:?}",
            String::from_utf8_lossy(data)
        );
        if !fast.is_empty() {
            assert!(fnr::may_contain(data));
        }
        for label in [None, Some(&b"[fnr]"[..])] {
            let clean = masked(data, &fast, label);
            assert!(
                full_find(&clean, mode).is_empty(),
                "{mode:?}: masking left {:?}",
                String::from_utf8_lossy(&clean)
            );
            assert!(
                naive_full_find(&clean, Mode::Validated).is_empty(),
                "{mode:?}: masking left {:?}",
                String::from_utf8_lossy(&clean)
            );
        }
    }
}
