//! Glob lists: compiling configured glob patterns once and matching span
//! data against them.
//!
//! This module owns the glob semantics of the whole processor. It decides
//! whether a URL path is noise (health checks, metrics scrapes) and, with
//! case sensitivity on, which attribute keys a rule applies to. The
//! semantics, whatever the caller:
//!
//! - a pattern is anchored at both ends;
//! - `*` matches any run of bytes, `/` included;
//! - the rest of [globset]'s syntax (`?`, `[...]`, `{a,b}`, `\` escapes)
//!   works as globset defines it;
//! - matching is ASCII case-insensitive unless the list was built
//!   case-sensitive.
//!
//! [globset]: https://docs.rs/globset

use std::cell::RefCell;
use std::fmt;

use aho_corasick::automaton::Automaton;
use aho_corasick::{Anchored, StartKind, dfa::DFA};
use globset::{Candidate, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// The platform's default noise globs: liveness and readiness probes,
/// metrics scrapes and Spring actuator endpoints, under any prefix.
pub const DEFAULT_NOISE_GLOBS: [&str; 7] = [
    "*/isAlive",
    "*/isReady",
    "*/prometheus",
    "*/metrics",
    "*/actuator/*",
    "*/internal/health*",
    "*/internal/status*",
];

/// What an empty pattern is rejected with.
const EMPTY_PATTERN: &str = "empty pattern matches nothing; remove it";

thread_local! {
    // Reused by `first_match` for globset's list of matching indices, so that
    // a match costs no allocation once the thread has seen one. Thread-local
    // rather than in `GlobList` because matching takes `&self` and a list may
    // be shared between threads.
    static HITS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A list of glob patterns compiled into one matcher.
#[derive(Clone)]
pub struct GlobList {
    /// All patterns, in the given order, so that globset's match indices are
    /// indices into `patterns`; empty when `stars` matches instead.
    set: GlobSet,
    /// The patterns that end in `.`, with their indices, as matchers that
    /// always run their regex over the whole candidate. globset's set takes
    /// a candidate whose last component is `..` to have no file name and so
    /// no extension, and the extension strategies it picks for patterns
    /// ending in a literal `.ext` then miss it (`*.` would not match
    /// `/a/..`). Only such candidates are checked against these.
    dotted: Vec<(usize, GlobMatcher)>,
    /// One literal per pattern that every candidate it matches contains;
    /// `None` when some pattern has none (`*`, say), or when `prefixes` is
    /// set (the starts are then the prefilter). A candidate holding none
    /// of them matches nothing, which one Aho-Corasick DFA pass tells: most
    /// paths are not noise, and globset's own per-candidate work (building
    /// a file-name `Candidate`, running several strategies) is then skipped.
    required: Option<DFA>,
    /// Each pattern's literal start (`grpc.health.v1.Health/` of
    /// `grpc.health.v1.Health/*`), as compiled; `None` when some pattern
    /// starts with a wildcard. A candidate that starts with none of them
    /// matches nothing: for span-name and attribute rules, which are mostly
    /// written this way, a few byte compares then replace the DFA pass.
    prefixes: Option<Vec<Box<[u8]>>>,
    /// The first bytes of `prefixes` (lowercased when the list is
    /// case-insensitive, so in both ASCII cases then), as a 256-bit set:
    /// most candidates start with none of them and are ruled out by one
    /// bit test, with no compare at all.
    starts: [u64; 4],
    /// Every pattern, when each has no syntax but single `*`s (see
    /// [`Stars`]): `set` is then empty, and these match instead.
    stars: Option<Vec<Stars>>,
    /// The patterns as configured (not lowercased), for reporting.
    patterns: Vec<String>,
    case_sensitive: bool,
}

/// False when `candidate` cannot start as `first_bytes` (a set from
/// [`GlobList::first_bytes`], or a union of them) allows: an empty
/// candidate, or a first byte not in the set. `None` allows anything.
#[inline(always)]
pub(crate) fn may_start_with(first_bytes: Option<&[u64; 4]>, candidate: &[u8]) -> bool {
    match (first_bytes, candidate.first()) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(starts), Some(&b)) => starts[usize::from(b / 64)] >> (b % 64) & 1 != 0,
    }
}

/// A pattern whose only syntax is single `*`s (`*/isAlive`, `legacy-*`,
/// `*/actuator/*`), as its literal pieces, lowercased when its list is
/// case-insensitive. Such a pattern needs no regex: the first piece starts
/// the candidate, the last ends it, and the others are found leftmost in
/// turn, in linear time. Most configured globs have this form, and a list
/// of them builds no globset: in a fresh guest, building globset's matchers
/// was most of the cost of compiling a list.
#[derive(Clone, Debug)]
struct Stars {
    /// The text before the first `*`; the whole pattern when it has none.
    head: Box<[u8]>,
    /// The text after the last `*`; `None` when the pattern has no `*`.
    tail: Option<Box<[u8]>>,
    /// The pieces between the first and last `*`, none empty.
    middle: Vec<memchr::memmem::Finder<'static>>,
}

impl Stars {
    /// Whether `pattern` has this form: no `?`, class, alternate, escape
    /// or `**` (which globset gives a meaning of its own next to `/`).
    fn fits(pattern: &str) -> bool {
        !pattern.contains("**") && !pattern.contains(['?', '[', ']', '{', '}', '\\', ','])
    }

    fn new(pattern: &str) -> Stars {
        let mut pieces = pattern.as_bytes().split(|&b| b == b'*');
        let head = pieces.next().unwrap_or_default().into();
        let mut rest: Vec<&[u8]> = pieces.collect();
        let tail = rest.pop().map(Into::into);
        let middle =
            rest.into_iter().map(|m| memchr::memmem::Finder::new(m).into_owned()).collect();
        Stars { head, tail, middle }
    }

    /// Whether the pattern matches `text` (folded as the pattern is).
    fn matches(&self, text: &[u8]) -> bool {
        let Some(tail) = &self.tail else { return text == &*self.head };
        // Head and tail may not overlap: `ab*b` needs three bytes.
        let Some(mut rest) = text.strip_prefix(&*self.head).and_then(|r| r.strip_suffix(&**tail))
        else {
            return false;
        };
        for piece in &self.middle {
            match piece.find(rest) {
                Some(at) => rest = &rest[at + piece.needle().len()..],
                None => return false,
            }
        }
        true
    }
}

/// A pattern that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// Position of the pattern in the list given to [`GlobList::new`].
    pub index: usize,
    /// The pattern as given.
    pub pattern: String,
    /// Why it was rejected, in lowercase words.
    pub reason: String,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pattern is left out: a config value is never echoed.
        write!(f, "glob {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for GlobError {}

impl GlobList {
    /// Exactly what [`GlobList::new`] would refuse, building a matcher only
    /// when that is the one way to know: a list of `*`-only patterns can
    /// only fail on an empty one, which [`GlobList::check`] sees. For
    /// validating a config whose lists are compiled again where they are
    /// used.
    pub fn validate(patterns: &[String], case_sensitive: bool) -> Result<(), Vec<GlobError>> {
        if patterns.iter().all(|p| Stars::fits(p)) {
            GlobList::check(patterns)
        } else {
            GlobList::new(patterns, case_sensitive).map(|_| ())
        }
    }

    /// Checks patterns without building a matcher (parsing only): what
    /// [`GlobList::new`] would refuse, at a fraction of the cost, for
    /// validating many small lists (team files) whose matchers are built
    /// only when used.
    pub fn check(patterns: &[String]) -> Result<(), Vec<GlobError>> {
        let errors: Vec<GlobError> = patterns
            .iter()
            .enumerate()
            .filter_map(|(index, pattern)| {
                let reason = if pattern.is_empty() {
                    EMPTY_PATTERN.to_owned()
                } else if plain_syntax(pattern) {
                    return None;
                } else {
                    let parsed = GlobBuilder::new(pattern)
                        .literal_separator(false)
                        .backslash_escape(true)
                        .build();
                    reason(parsed.err()?.kind())
                };
                Some(GlobError { index, pattern: pattern.clone(), reason })
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Compiles `patterns` into one matcher.
    ///
    /// Every bad pattern is reported, not just the first, so a config can be
    /// fixed in one go. An empty pattern is an error: it could only ever match
    /// an empty value, which is never what was meant.
    ///
    /// # Errors
    ///
    /// One [`GlobError`] per pattern that is empty or not a valid glob, in
    /// pattern order.
    pub fn new(patterns: &[String], case_sensitive: bool) -> Result<GlobList, Vec<GlobError>> {
        // `*`-only patterns are always valid globs: such a list is matched
        // by its pieces, and globset never builds it.
        let all_stars = patterns.iter().all(|p| Stars::fits(p));
        let mut stars = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let mut errors = Vec::new();
        let mut dotted = Vec::new();
        let mut literals = Vec::new();
        let mut prefixes: Vec<Box<[u8]>> = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            if pattern.is_empty() {
                errors.push(GlobError {
                    index,
                    pattern: pattern.clone(),
                    reason: EMPTY_PATTERN.to_owned(),
                });
                continue;
            }
            // Case-insensitivity is done by lowercasing both sides rather
            // than with globset's `case_insensitive`, which turns every
            // pattern into a case-insensitive regex. Lowercased literal
            // patterns keep globset's fast strategies (literal, prefix,
            // suffix, extension), and the cost per candidate is one
            // lowercasing copy into the caller's scratch buffer.
            let folded;
            let source = if case_sensitive {
                pattern.as_str()
            } else {
                folded = pattern.to_ascii_lowercase();
                folded.as_str()
            };
            // Both only ever used when every pattern compiled.
            literals.push(required_literal(source));
            prefixes.push(literal_prefix(source).as_bytes().into());
            if all_stars {
                stars.push(Stars::new(source));
                continue;
            }
            // Options are set explicitly so that the semantics do not depend
            // on globset's defaults, which differ between platforms
            // (`backslash_escape` is off where `\` is a path separator).
            match GlobBuilder::new(source).literal_separator(false).backslash_escape(true).build() {
                Ok(glob) => {
                    if source.ends_with('.') {
                        dotted.push((index, glob.compile_matcher()));
                    }
                    builder.add(glob);
                }
                Err(err) => errors.push(GlobError {
                    index,
                    pattern: pattern.clone(),
                    reason: reason(err.kind()),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // No prefilter if a pattern has no literal, or if one cannot be
        // built (it only ever saves time).
        // A DFA without a prefilter: paths are a few dozen bytes, too short
        // for a prefilter's setup to pay off, and a DFA takes each byte with
        // one table lookup.
        // Where every pattern starts with literal text, `may_match` reads
        // the starts alone and no DFA is needed: building one for fifty
        // override globs was a tenth of creating a processor.
        let prefixes = prefixes.iter().all(|p| !p.is_empty()).then_some(prefixes);
        let mut starts = [0u64; 4];
        for &b in prefixes.iter().flatten().filter_map(|p| p.first()) {
            let cases = if case_sensitive { [b; 2] } else { [b, b.to_ascii_uppercase()] };
            for b in cases {
                starts[usize::from(b / 64)] |= 1 << (b % 64);
            }
        }
        let required = literals
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .filter(|_| prefixes.is_none())
            // ASCII case-insensitive when the list is, so that it runs on the
            // candidate as given: most candidates fail it and are never
            // lowercased. The literals come from lowercased patterns, and a
            // lowercased candidate holds one exactly when the candidate holds
            // it in any ASCII case.
            .and_then(|l| {
                DFA::builder()
                    .start_kind(StartKind::Unanchored)
                    .prefilter(false)
                    .ascii_case_insensitive(!case_sensitive)
                    .build(l)
                    .ok()
            });
        let set = if all_stars { Ok(GlobSet::empty()) } else { builder.build() };
        match set {
            Ok(set) => Ok(GlobList {
                set,
                dotted,
                required,
                prefixes,
                starts,
                stars: all_stars.then_some(stars),
                patterns: patterns.to_vec(),
                case_sensitive,
            }),
            // Each pattern compiled alone, so only their combination can be
            // at fault (a size limit): blame the last one, whose addition
            // tipped it over.
            Err(err) => {
                let index = patterns.len() - 1;
                Err(vec![GlobError {
                    index,
                    pattern: patterns[index].clone(),
                    reason: format!("the patterns together are too big: {}", reason(err.kind())),
                }])
            }
        }
    }

    /// The patterns as given to [`GlobList::new`].
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// False when no pattern can match `candidate` by its first byte (see
    /// [`GlobList::first_bytes`]); an empty list matches nothing.
    #[inline(always)]
    fn may_start(&self, candidate: &[u8]) -> bool {
        may_start_with(self.first_bytes().as_ref(), candidate)
    }

    /// The bytes a candidate any pattern matches can start with, as a
    /// 256-bit set (bit `b % 64` of word `b / 64`), in both ASCII cases when
    /// the list is case-insensitive; `None` when some pattern starts with a
    /// wildcard. An empty candidate matches nothing when this is `Some`. It
    /// is the set [`GlobList::first_match`]'s own prefilter tests first.
    #[must_use]
    pub fn first_bytes(&self) -> Option<[u64; 4]> {
        self.prefixes.as_ref().map(|_| self.starts)
    }

    /// Whether the list has no patterns, and so matches nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Index (in the given pattern order) of the FIRST pattern that matches,
    /// or None.
    ///
    /// `scratch` is a buffer the caller keeps between calls; its contents on
    /// return are unspecified.
    #[inline]
    pub fn first_match(&self, candidate: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
        // Inline, the first-byte test spares most candidates of lists whose
        // patterns all start with literal text (span-name rules) a call.
        if !self.may_start(candidate) {
            return None;
        }
        self.first_match_called(candidate, scratch)
    }

    /// [`first_match`](Self::first_match) after its first-byte test.
    #[inline(never)]
    fn first_match_called(&self, candidate: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        if !self.may_match(candidate) {
            return None;
        }
        self.first_match_folded(self.fold(candidate, scratch))
    }

    /// [`first_match`](Self::first_match) without the literal prefilter.
    fn first_match_folded(&self, folded: &[u8]) -> Option<usize> {
        if let Some(stars) = &self.stars {
            return stars.iter().position(|s| s.matches(folded));
        }
        let candidate = Candidate::from_bytes(folded);
        let in_set = self.first_in_set(&candidate);
        let dotted = self.first_dotted(folded, &candidate);
        [in_set, dotted].into_iter().flatten().min()
    }

    /// Whether any pattern matches `candidate`.
    ///
    /// `scratch` is a buffer the caller keeps between calls; its contents on
    /// return are unspecified.
    pub fn is_match(&self, candidate: &[u8], scratch: &mut Vec<u8>) -> bool {
        if self.is_empty() {
            return false;
        }
        if !self.may_match(candidate) {
            return false;
        }
        let folded = self.fold(candidate, scratch);
        if let Some(stars) = &self.stars {
            return stars.iter().any(|s| s.matches(folded));
        }
        let candidate = Candidate::from_bytes(folded);
        self.set.is_match_candidate(&candidate) || self.first_dotted(folded, &candidate).is_some()
    }

    /// Every pattern that matches `candidate`, by index in ascending order,
    /// into `out` (cleared first).
    ///
    /// `scratch` is a buffer the caller keeps between calls; its contents on
    /// return are unspecified.
    pub fn matches_into(&self, candidate: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<usize>) {
        out.clear();
        if self.is_empty() {
            return;
        }
        if !self.may_match(candidate) {
            return;
        }
        let folded = self.fold(candidate, scratch);
        if let Some(stars) = &self.stars {
            out.extend((0..stars.len()).filter(|&i| stars[i].matches(folded)));
            return;
        }
        let candidate = Candidate::from_bytes(folded);
        self.set.matches_candidate_into(&candidate, out);
        if !self.dotted.is_empty() && (folded == b".." || folded.ends_with(b"/..")) {
            for (index, matcher) in &self.dotted {
                if matcher.is_match_candidate(&candidate) && !out.contains(index) {
                    out.push(*index);
                }
            }
            out.sort_unstable();
        }
    }

    /// The prefilters: false when no pattern can match `candidate` (as
    /// given, not folded: both compare ASCII case-insensitively when the
    /// list is).
    #[inline]
    fn may_match(&self, candidate: &[u8]) -> bool {
        if !self.may_start(candidate) {
            return false;
        }
        if let Some(prefixes) = &self.prefixes {
            return prefixes.iter().any(|p| {
                candidate.get(..p.len()).is_some_and(|start| {
                    if self.case_sensitive {
                        crate::bytes::eq(start, p)
                    } else {
                        start.eq_ignore_ascii_case(p)
                    }
                })
            });
        }
        self.required.as_ref().is_none_or(|r| holds_any(r, candidate))
    }

    /// The lowest index the set matches, if any.
    fn first_in_set(&self, candidate: &Candidate<'_>) -> Option<usize> {
        // Most candidates match nothing; `is_match` can stop at the first
        // strategy that matches and skips collecting indices.
        if !self.set.is_match_candidate(candidate) {
            return None;
        }
        if self.set.len() == 1 {
            return Some(0);
        }
        let lowest = |hits: &mut Vec<usize>| {
            // Indices come back sorted ascending.
            self.set.matches_candidate_into(candidate, hits);
            hits.first().copied()
        };
        HITS.try_with(|hits| match hits.try_borrow_mut() {
            Ok(mut hits) => lowest(&mut hits),
            Err(_) => lowest(&mut Vec::new()),
        })
        // The thread-local is gone only while the thread is exiting.
        .unwrap_or_else(|_| lowest(&mut Vec::new()))
    }

    /// The lowest index among the patterns ending in `.` that match, for the
    /// candidates the set can get wrong: those whose last component is `..`.
    fn first_dotted(&self, folded: &[u8], candidate: &Candidate<'_>) -> Option<usize> {
        if self.dotted.is_empty() || !(folded == b".." || folded.ends_with(b"/..")) {
            return None;
        }
        self.dotted
            .iter()
            .find(|(_, matcher)| matcher.is_match_candidate(candidate))
            .map(|&(index, _)| index)
    }

    /// The candidate as the compiled patterns expect it: ASCII-lowercased
    /// into `scratch` unless the list is case-sensitive.
    ///
    /// Candidates go to globset as bytes (`Candidate::from_bytes`), not as a
    /// `Path`: OTLP strings may hold invalid UTF-8, and on
    /// wasm32-unknown-unknown a `Path` can only come from a `str`, which
    /// would need a validation pass and, for bad bytes, a lossy copy.
    fn fold<'a>(&self, candidate: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if self.case_sensitive {
            return candidate;
        }
        scratch.clear();
        scratch.extend(candidate.iter().map(u8::to_ascii_lowercase));
        scratch
    }
}

impl fmt::Debug for GlobList {
    // The compiled set's own Debug output is its automata: noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobList")
            .field("patterns", &self.patterns)
            .field("case_sensitive", &self.case_sensitive)
            .finish_non_exhaustive()
    }
}

/// Whether `hay` holds any of the DFA's literals. The crate's own search
/// runs the same loop (one table lookup per byte) behind a dynamic call and
/// a general search setup, which cost more than the loop on paths a few
/// dozen bytes long.
fn holds_any(dfa: &DFA, hay: &[u8]) -> bool {
    // Built unanchored, so the start state exists; a missing one could only
    // mean "no prefilter", which is the safe answer.
    let Ok(mut state) = dfa.start_state(Anchored::No) else { return true };
    if dfa.is_match(state) {
        return true;
    }
    // Eight bytes per loop turn: in the guest each turn also pays an epoch
    // check and reloads what Cranelift spilled, which cost more than the
    // lookup itself.
    let mut step = |b: u8| {
        state = dfa.next_state(Anchored::No, state, b);
        dfa.is_special(state) && dfa.is_match(state)
    };
    let (blocks, rest) = hay.as_chunks::<8>();
    for block in blocks {
        for &b in block {
            if step(b) {
                return true;
            }
        }
    }
    rest.iter().any(|&b| step(b))
}

/// The longest run of plain characters in `glob`, or `None` if it has none
/// or uses a class or an alternate. Every candidate the glob matches holds
/// it. Classes (`[...]`, with `!`, `^`, ranges) and alternates (`{a,b}`,
/// which globset lets nest and escape) are not parsed here at all: a glob
/// with either gets no prefilter, so a subtlety of their syntax can never
/// hide a match. Any other character with a meaning (`*?]},\\!^`) ends a
/// run, and an escape skips the escaped character too: a run may come out
/// shorter than it could be, never wrong. The
/// `required_literals_are_held_by_every_match` and
/// `prefilter_never_changes_a_match` property tests pin this.
fn required_literal(glob: &str) -> Option<String> {
    if glob.contains(['[', '{']) {
        return None;
    }
    // A `/` next to `**` may match nothing (`**/x` matches `x`).
    let glob = glob.replace("**/", "*").replace("/**", "*");
    let (mut best, mut run) = (String::new(), String::new());
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | ']' | '}' | ',' | '\\' | '!' | '^' => {
                if run.len() > best.len() {
                    best = std::mem::take(&mut run);
                }
                run.clear();
                if c == '\\' {
                    chars.next();
                }
            }
            _ => run.push(c),
        }
    }
    if run.len() > best.len() {
        best = run;
    }
    (!best.is_empty()).then_some(best)
}

/// The literal text every match of `glob` starts with: up to its first
/// character that may be special, and short of a `/` before a `**` (which
/// can match nothing: `a/**` may match `a`). Empty when it starts with one.
fn literal_prefix(glob: &str) -> &str {
    let end = glob.find(['*', '?', '[', ']', '{', '}', ',', '\\']).unwrap_or(glob.len());
    let prefix = &glob[..end];
    if glob[end..].starts_with("**") { prefix.strip_suffix('/').unwrap_or(prefix) } else { prefix }
}

/// Whether `pattern` is literal text with single `*` and `?` only: no
/// class, alternation, escape or `**`, none of which it holds can be wrong,
/// so [`GlobList::check`] need not have globset parse it (which writes its
/// regex, most of the cost of checking hundreds of team files).
fn plain_syntax(pattern: &str) -> bool {
    !pattern.contains("**") && !pattern.contains(['[', ']', '{', '}', '\\'])
}

/// globset's explanation of an error, in lowercase as config problems are
/// written.
fn reason(kind: &globset::ErrorKind) -> String {
    match kind {
        // globset's text quotes the range's two characters: part of the value.
        globset::ErrorKind::InvalidRange(..) => {
            "invalid range: its first character sorts after its last".to_owned()
        }
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(patterns: &[&str], case_sensitive: bool) -> GlobList {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        GlobList::new(&patterns, case_sensitive).unwrap()
    }

    fn errors(patterns: &[&str]) -> Vec<GlobError> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        GlobList::new(&patterns, false).unwrap_err()
    }

    #[test]
    fn default_noise_globs() {
        let globs = list(&DEFAULT_NOISE_GLOBS, false);
        let mut scratch = Vec::new();
        let noise = [
            "/isAlive",
            "/isalive",
            "/ISALIVE",
            "/app/isAlive",
            "/isReady",
            "/prometheus",
            "/metrics",
            "/api/v1/metrics",
            "/actuator/health",
            "/actuator/",
            "/x/actuator/info/deep",
            "/internal/health",
            "/internal/healthz",
            "/internal/health/live",
            "/internal/status",
            "/app/internal/status/x",
        ];
        let not_noise = [
            "/api/user-metrics",
            "/api/actuator-report",
            "/actuator", // `*/actuator/*` needs the trailing slash
            "/isAliveX",
            "/metrics/x",
            "/api/metricsfoo",
            "isAlive", // no slash
            "",
            "/internal/healt",
            "/prometheus-data",
            "/users/12345",
        ];
        for path in noise {
            assert!(globs.is_match(path.as_bytes(), &mut scratch), "{path:?} should be noise");
            assert!(globs.first_match(path.as_bytes(), &mut scratch).is_some(), "{path:?}");
        }
        for path in not_noise {
            assert!(!globs.is_match(path.as_bytes(), &mut scratch), "{path:?} should not be noise");
            assert_eq!(globs.first_match(path.as_bytes(), &mut scratch), None, "{path:?}");
        }
    }

    #[test]
    fn case_sensitivity() {
        let mut scratch = Vec::new();
        let cases: [(&str, bool, &str, bool); 8] = [
            // pattern, case_sensitive, candidate, matches
            ("*/isAlive", true, "/isalive", false),
            ("*/isAlive", true, "/isAlive", true),
            ("*/isAlive", true, "/ISALIVE", false),
            ("*/isAlive", false, "/ISALIVE", true),
            ("*/isalive", false, "/IsAlive", true),
            ("[A-C]x", false, "bX", true),
            ("[A-C]x", true, "bx", false),
            // Only ASCII folds: `É` and `é` stay different.
            ("/caf\u{e9}", false, "/CAF\u{c9}", false),
        ];
        for (pattern, case_sensitive, candidate, want) in cases {
            let globs = list(&[pattern], case_sensitive);
            assert_eq!(
                globs.is_match(candidate.as_bytes(), &mut scratch),
                want,
                "{pattern:?} (case_sensitive: {case_sensitive}) vs {candidate:?}"
            );
        }
    }

    /// Lists whose every pattern starts with literal text are prefiltered
    /// on it, in the list's case mode; any wildcard start turns it off.
    #[test]
    fn literal_starts_prefilter_in_the_lists_case() {
        let mut scratch = Vec::new();
        let folded = list(&["grpc.health.v1.Health/*", "kube-probe/*"], false);
        let exact = list(&["grpc.health.v1.Health/*", "kube-probe/*"], true);
        for (candidate, folded_want, exact_want) in [
            ("grpc.health.v1.Health/Check", Some(0), Some(0)),
            ("GRPC.HEALTH.V1.HEALTH/Watch", Some(0), None),
            ("Kube-Probe/1.31", Some(1), None),
            ("kube-probe/1.31", Some(1), Some(1)),
            ("kube-prob", None, None),
            ("x-kube-probe/1", None, None),
        ] {
            assert_eq!(
                folded.first_match(candidate.as_bytes(), &mut scratch),
                folded_want,
                "{candidate}"
            );
            assert_eq!(
                exact.first_match(candidate.as_bytes(), &mut scratch),
                exact_want,
                "{candidate}"
            );
            assert_eq!(folded.is_match(candidate.as_bytes(), &mut scratch), folded_want.is_some());
        }
        assert!(folded.prefixes.is_some() && exact.prefixes.is_some());
        assert!(list(&["kube-probe/*", "*/isAlive"], false).prefixes.is_none());
        assert!(
            list(&["a/**"], true).is_match(b"a", &mut scratch)
                == list(&["a/**"], true).set.is_match("a")
        );
    }

    #[test]
    fn globset_syntax() {
        let mut scratch = Vec::new();
        let cases: [(&str, &str, bool); 16] = [
            ("/a?c", "/abc", true),
            ("/a?c", "/a/c", true), // `?` crosses `/` like `*`
            ("/a?c", "/ac", false),
            ("/[ab]x", "/bx", true),
            ("/[!ab]x", "/cx", true),
            ("/[!ab]x", "/ax", false),
            ("/{health,ready}", "/ready", true),
            ("/{health,ready}", "/healthready", false),
            ("/a\\*", "/a*", true),
            ("/a\\*", "/ab", false),
            ("*.json", "/a/b.json", true),
            ("*.json", "/a.json/b", false),
            ("/api/*/users", "/api/v1/v2/users", true),
            // `**` next to `/` is globset's recursive wildcard: `**/x` also
            // matches a bare `x`, which `*/x` does not.
            ("**/x", "x", true),
            ("*/x", "x", false),
            ("/a/**", "/a/b/c", true),
        ];
        for (pattern, candidate, want) in cases {
            let globs = list(&[pattern], true);
            assert_eq!(
                globs.is_match(candidate.as_bytes(), &mut scratch),
                want,
                "{pattern:?} vs {candidate:?}"
            );
        }
    }

    #[test]
    fn patterns_ending_in_a_dot_match_parent_components() {
        let mut scratch = Vec::new();
        let cases: [(&[&str], &str, Option<usize>); 9] = [
            (&["*."], "..", Some(0)),
            (&["*."], "/a/..", Some(0)),
            (&["*."], "/a/b.", Some(0)),
            (&["/a*."], "/a/..", Some(0)),
            (&["*\\."], "/..", Some(0)),
            (&["*..", "*."], "/..", Some(0)),
            (&["*/x", "*."], "/x/..", Some(1)),
            (&["*.", "*/.."], "/..", Some(0)),
            (&["*."], "/../x", None),
        ];
        for (patterns, candidate, want) in cases {
            let globs = list(patterns, false);
            assert_eq!(
                globs.first_match(candidate.as_bytes(), &mut scratch),
                want,
                "{patterns:?} vs {candidate:?}"
            );
            assert_eq!(
                globs.is_match(candidate.as_bytes(), &mut scratch),
                want.is_some(),
                "{patterns:?} vs {candidate:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_candidates_match_bytewise() {
        let globs = list(&DEFAULT_NOISE_GLOBS, false);
        let mut scratch = Vec::new();
        assert!(globs.is_match(b"/\xff\xfe/isALIVE", &mut scratch));
        assert!(!globs.is_match(b"/isAlive\xff", &mut scratch));
        let any_byte = list(&["/?"], false);
        assert!(any_byte.is_match(b"/\xff", &mut scratch));
    }

    #[test]
    fn bad_patterns_are_all_reported() {
        let errs = errors(&["*/ok", "a[", "", "{a,b", "/fine"]);
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.index, e.pattern.as_str())).collect();
        assert_eq!(got, [(1, "a["), (2, ""), (3, "{a,b")]);
        assert_eq!(errs[1].reason, EMPTY_PATTERN);
        for err in &errs {
            assert!(!err.reason.is_empty());
            assert_eq!(err.reason, err.reason.to_lowercase());
        }
        assert!(errs[0].reason.contains("unclosed character class"), "{}", errs[0].reason);

        let single = errors(&["a["]);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].index, 0);
        assert_eq!(single[0].pattern, "a[");
        // The pattern is reported as given, not lowercased.
        assert_eq!(errors(&["A["])[0].pattern, "A[");
    }

    #[test]
    fn first_match_is_the_earliest_pattern() {
        let globs = list(&["/a/b", "*/b", "/a/*", "*"], false);
        let mut scratch = Vec::new();
        let cases: [(&str, Option<usize>); 5] = [
            ("/a/b", Some(0)),
            ("/x/B", Some(1)),
            ("/a/c", Some(2)),
            ("zzz", Some(3)),
            ("", Some(3)),
        ];
        for (candidate, want) in cases {
            assert_eq!(
                globs.first_match(candidate.as_bytes(), &mut scratch),
                want,
                "{candidate:?}"
            );
        }
        let globs = list(&["/x", "*/metrics", "/api/*"], false);
        assert_eq!(globs.first_match(b"/api/metrics", &mut scratch), Some(1));
        assert_eq!(globs.first_match(b"/x", &mut scratch), Some(0));
        assert_eq!(globs.first_match(b"/y", &mut scratch), None);
    }

    #[test]
    fn empty_list_matches_nothing() {
        let globs = GlobList::new(&[], false).unwrap();
        let mut scratch = Vec::new();
        assert!(globs.is_empty());
        assert!(globs.patterns().is_empty());
        assert!(!globs.is_match(b"", &mut scratch));
        assert_eq!(globs.first_match(b"/x", &mut scratch), None);
    }

    #[test]
    fn patterns_are_kept_as_given() {
        let globs = list(&DEFAULT_NOISE_GLOBS, false);
        assert!(!globs.is_empty());
        assert_eq!(globs.patterns(), DEFAULT_NOISE_GLOBS);
        let debug = format!("{globs:?}");
        assert!(debug.contains("*/isAlive") && debug.contains("case_sensitive: false"), "{debug}");
    }

    /// `*`-only glob matching, the slow obvious way.
    fn naive(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| naive(rest, &text[skip..])),
            Some((&p, rest)) => text.first() == Some(&p) && naive(rest, &text[1..]),
        }
    }

    /// The indices of the patterns that globset's own matcher of each
    /// (lowercased with the candidate when not `case_sensitive`) matches.
    fn globset_matches(patterns: &[String], candidate: &str, case_sensitive: bool) -> Vec<usize> {
        let fold = |s: &str| if case_sensitive { s.to_owned() } else { s.to_ascii_lowercase() };
        let text = fold(candidate);
        (0..patterns.len())
            .filter(|&i| {
                GlobBuilder::new(&fold(&patterns[i]))
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .unwrap()
                    .compile_matcher()
                    .is_match_candidate(&Candidate::from_bytes(text.as_bytes()))
            })
            .collect()
    }

    proptest! {
        // Short candidates over few letters, and many cases: overlapping
        // pieces (`*a*a*` against `a`) must come up.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Guarantees: a list of `*`-only patterns, which builds no
        /// globset, matches as globset's own matcher of each pattern does,
        /// in both case modes: leaving globset out changes no result.
        #[test]
        fn star_lists_agree_with_globset(
            raw in prop::collection::vec(r"(\*|[aAb.]{1,2}){1,7}", 1..4),
            candidate in "[aAb.]{0,6}",
            case_sensitive in any::<bool>(),
        ) {
            // Runs of `*` collapsed, as `**` is not of this form.
            let mut patterns = raw;
            for p in &mut patterns {
                while p.contains("**") {
                    *p = p.replace("**", "*");
                }
            }
            let globs = GlobList::new(&patterns, case_sensitive).unwrap();
            prop_assert!(globs.stars.is_some());
            let every = globset_matches(&patterns, &candidate, case_sensitive);
            let mut scratch = Vec::new();
            prop_assert_eq!(globs.first_match(candidate.as_bytes(), &mut scratch), every.first().copied());
            prop_assert_eq!(globs.is_match(candidate.as_bytes(), &mut scratch), !every.is_empty());
            let mut got = Vec::new();
            globs.matches_into(candidate.as_bytes(), &mut scratch, &mut got);
            prop_assert_eq!(got, every);
        }

        /// Scenario: lists of patterns with any syntax (`?`, classes,
        /// alternates, escapes, stars), some starting with literal text,
        /// against short candidates, in both case modes.
        /// Guarantees: `first_match` agrees with globset's own matcher of
        /// each pattern, so its first-byte test never rules out a match;
        /// and `first_bytes`, which attribute rules test before looking a
        /// key up, holds the first byte of every candidate that matches.
        #[test]
        fn first_byte_tests_never_rule_out_a_match(
            patterns in prop::collection::vec(r"([aAb.]|\?|\*|\[ab\]|\{a,b\}|\\\*){1,4}", 1..4),
            candidate in "[aAb.*]{0,5}",
            case_sensitive in any::<bool>(),
        ) {
            prop_assume!(GlobList::check(&patterns).is_ok());
            let globs = GlobList::new(&patterns, case_sensitive).unwrap();
            let first = globset_matches(&patterns, &candidate, case_sensitive).first().copied();
            let mut scratch = Vec::new();
            prop_assert_eq!(globs.first_match(candidate.as_bytes(), &mut scratch), first);
            if first.is_some()
                && let Some(starts) = globs.first_bytes()
            {
                let b = *candidate.as_bytes().first().expect("a literal start matches no empty text");
                prop_assert!(starts[usize::from(b / 64)] >> (b % 64) & 1 != 0, "{:?} {:?}", patterns, candidate);
            }
        }
    }

    proptest! {
        /// `check` skips globset's parser for plain patterns: it never passes
        /// a pattern globset refuses, and agrees with globset on every other.
        #[test]
        fn check_agrees_with_globset(pattern in "[a-zé/*?.,!^\\-\\[\\]{}\\\\]{1,10}") {
            let globset_ok = GlobBuilder::new(&pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .is_ok();
            if plain_syntax(&pattern) {
                prop_assert!(globset_ok, "{pattern:?}");
            }
            prop_assert_eq!(GlobList::check(std::slice::from_ref(&pattern)).is_ok(), globset_ok);
        }

        // Runs of `*` are collapsed: globset gives `**` next to `/` its own
        // recursive meaning, which the naive matcher does not model.
        #[test]
        fn agrees_with_naive_star_matcher(
            raw in prop::collection::vec("[aAb/.*]{1,7}", 1..4),
            candidate in "[aAb/.]{0,10}",
        ) {
            let patterns: Vec<String> = raw
                .iter()
                .map(|p| {
                    let mut out = String::new();
                    for c in p.chars() {
                        if !(c == '*' && out.ends_with('*')) {
                            out.push(c);
                        }
                    }
                    out
                })
                .collect();
            let globs = GlobList::new(&patterns, false).unwrap();
            let text = candidate.to_ascii_lowercase();
            let want = patterns
                .iter()
                .position(|p| naive(p.to_ascii_lowercase().as_bytes(), text.as_bytes()));
            let mut scratch = Vec::new();
            // The candidate as generated, mixed case and all.
            prop_assert_eq!(globs.first_match(candidate.as_bytes(), &mut scratch), want);
            prop_assert_eq!(globs.is_match(candidate.as_bytes(), &mut scratch), want.is_some());
            let every: Vec<usize> = (0..patterns.len())
                .filter(|&i| naive(patterns[i].to_ascii_lowercase().as_bytes(), text.as_bytes()))
                .collect();
            let mut got = vec![99];
            globs.matches_into(candidate.as_bytes(), &mut scratch, &mut got);
            prop_assert_eq!(got, every);
            // Case-sensitive, the candidate as it is (prefixes compare exactly).
            let exact = GlobList::new(&patterns, true).unwrap();
            let want = patterns.iter().position(|p| naive(p.as_bytes(), candidate.as_bytes()));
            prop_assert_eq!(exact.first_match(candidate.as_bytes(), &mut scratch), want);
        }

        /// Scenario: patterns with every globset feature (classes, negated
        /// classes, `]` first in a class, alternates, escapes, `?`, `**`),
        /// in mixed case, and candidates in mixed case.
        /// Guarantees: the prefilters (literal starts, their first bytes,
        /// required literals), which run on the candidate before it is
        /// lowercased, never change a result, in either case mode.
        #[test]
        fn prefilter_never_changes_a_match(
            raw in prop::collection::vec(r"([aAb/.]|\*|\*\*/|/\*\*|\?|\[[!^]?\]?[ab.]\]|\{a,b/\}|\{\{a,b\},ab\}|\{a\\\},b\}|\{\[\}\]ab,b\}|\\[*a}]){1,8}", 1..4),
            candidate in r"[aAb/.*?\\\]!{},]{0,20}",
            case_sensitive in any::<bool>(),
        ) {
            let Ok(globs) = GlobList::new(&raw, case_sensitive) else { return Ok(()) };
            let folded =
                if case_sensitive { candidate.clone() } else { candidate.to_ascii_lowercase() };
            let mut scratch = Vec::new();
            let want = globs.first_match_folded(folded.as_bytes());
            prop_assert_eq!(globs.first_match(candidate.as_bytes(), &mut scratch), want);
            prop_assert_eq!(globs.is_match(candidate.as_bytes(), &mut scratch), want.is_some());
        }

        /// Scenario: globs `*LITERAL*`, case-sensitive or not, and
        /// candidates of up to 30 bytes in mixed case, across the eight-byte
        /// blocks of the prefilter's loop.
        /// Guarantees: the prefilter says a candidate holds a literal
        /// exactly when it does (so it rejects what it may, not only passes
        /// what it must).
        #[test]
        fn prefilter_finds_exactly_the_literals(
            literals in prop::collection::vec("[ab/]{1,4}", 1..4),
            candidate in "[aAb/x]{0,30}",
            case_sensitive in any::<bool>(),
        ) {
            let patterns: Vec<String> = literals.iter().map(|l| format!("*{l}*")).collect();
            let globs = GlobList::new(&patterns, case_sensitive).expect("plain globs");
            let dfa = globs.required.as_ref().expect("every glob has a literal");
            let hay = if case_sensitive { candidate.clone() } else { candidate.to_ascii_lowercase() };
            let want = literals.iter().any(|l| hay.contains(l.as_str()));
            prop_assert_eq!(holds_any(dfa, candidate.as_bytes()), want, "{:?} in {:?}", literals, candidate);
        }

        #[test]
        fn literal_prefixes_start_every_match(glob in r"([ab/.]|\*|\*\*|/\*\*/|/\*\*|\[[!^]?\]?[ab]\]|\{a,b\}|\{\{a,b\},ab\}|\{a\\\},b\}|\\[*a}]){1,8}") {
            if let Ok(g) = GlobBuilder::new(&glob).literal_separator(false).backslash_escape(true).build() {
                let (m, prefix) = (g.compile_matcher(), literal_prefix(&glob));
                for cand in ["a", "b", "ab", "/a/b", "a.b", "*", "a*b", "]", "!a", "a/", "/b", "a/b/a", "a}", "}", "bx", "/bx", "", "/", "a/a", "ab/b"] {
                    if m.is_match(cand) {
                        prop_assert!(cand.starts_with(prefix), "{glob:?} matched {cand:?}, not starting with {prefix:?}");
                    }
                }
            }
        }

        #[test]
        fn required_literals_are_held_by_every_match(glob in r"([ab/.]|\*|\*\*|/\*\*/|\[[!^]?\]?[ab]\]|\{a,b\}|\{\{a,b\},ab\}|\{a\\\},b\}|\{\[\}\]ab,b\}|\\[*a}]){1,8}") {
            if let (Some(lit), Ok(g)) = (required_literal(&glob), GlobBuilder::new(&glob).literal_separator(false).backslash_escape(true).build()) {
                let m = g.compile_matcher();
                for cand in ["a", "b", "ab", "/a/b", "a.b", "*", "a*b", "]", "!a", "a/", "/b", "a/b/a", "a}", "}", "bx", "/bx"] {
                    if m.is_match(cand) {
                        prop_assert!(cand.contains(&lit), "{glob:?} matched {cand:?} without {lit:?}");
                    }
                }
            }
        }
    }
}
