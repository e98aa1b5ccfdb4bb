"""tracescrub's default rules as a rotel Python processor, for the load run's
side-by-side comparison (scripts/serve-load.sh starts rotel with
`--otlp-with-trace-processor` pointing here).

The same rules as host-harness/default-config.yaml, ported by hand:
- noise: a span is noise when a path read from url.path, http.target,
  http.route, url.full or http.url (scheme and authority skipped, query and
  fragment cut), or else from a SERVER span's `METHOD /path` name, matches one
  of the 7 default globs (anchored, `*` spans `/`, ASCII case-insensitive);
  every span whose parent chain reaches a noise span is dropped with it.
- mask: every maximal run of 11 digits, or 6 digits + space/dash + 5 digits,
  whose mod-11 check digits hold (k1 remainder 0..3, the 2032 rule; k2 full
  sum 0 mod 11) and whose date is real once the D- (+40 day), H- (+40 month)
  and synthetic (+80 month) offsets are removed, has its digits replaced by
  `*`, in span names, attribute keys and values (strings and bytes; nested
  arrays and kvlists too; an int or whole double that spells a valid number,
  zero-padded from 10 digits, becomes the masked string), event names and attributes, link attributes, status messages,
  resource and scope attributes, scope name and version, and trace state.

One difference rotel's hook imposes: it is called once per ResourceSpans, so
descendants are followed within a resource, where tracescrub follows them
across the whole batch. The load corpus puts each trace under one resource,
so the outputs agree. Self-contained (rotel runs it in its embedded
interpreter): nothing is imported but the standard library and rotel_sdk.
"""

import re

from rotel_sdk.open_telemetry.common.v1 import AnyValue, ArrayValue, KeyValueList

GLOBS = ["*/isAlive", "*/isReady", "*/prometheus", "*/metrics", "*/actuator/*", "*/internal/health*", "*/internal/status*"]
PATH_KEYS = frozenset(["url.path", "http.target", "http.route", "url.full", "http.url"])
SPAN_KIND_SERVER = 2

# The default globs use only `*`, which matches any run including `/`.
_NOISE = re.compile("|".join("(?:" + ".*".join(map(re.escape, g.split("*"))) + ")" for g in GLOBS),
                    re.IGNORECASE | re.ASCII | re.DOTALL)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_NAME_PATH = re.compile(r"[A-Z_]{1,20} (/[^ ?#]*)")
# Cheap pre-check: no run of 6 digits, no number.
_SIX = re.compile(r"[0-9]{6}")
_CANDIDATE = re.compile(r"(?<![0-9])(?:[0-9]{11}|[0-9]{6}[ -][0-9]{5})(?![0-9])")
K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)
K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)


def valid(d):
    n = [ord(c) - 48 for c in d]
    if sum(x * w for x, w in zip(n, K2)) % 11 or sum(x * w for x, w in zip(n, K1)) % 11 > 3:
        return False
    day, month, yy = n[0] * 10 + n[1], n[2] * 10 + n[3], n[4] * 10 + n[5]
    if month > 80:
        month -= 80
    elif month > 40:
        month -= 40
    if day > 40:
        day -= 40
    if not 1 <= month <= 12:
        return False
    days = (29 if yy % 4 == 0 else 28) if month == 2 else 30 if month in (4, 6, 9, 11) else 31
    return 1 <= day <= days


def _replace(m):
    g = m.group(0)
    if valid(g if len(g) == 11 else g[:6] + g[7:]):
        return "*" * 6 + g[6] + "*" * 5 if len(g) == 12 else "*" * 11
    return g


def mask(s):
    """The masked string, or None when nothing in it changes."""
    if not s or not _SIX.search(s):
        return None
    out = _CANDIDATE.sub(_replace, s)
    return out if out != s else None


def masked_number(v):
    """An int (or a whole double) that spells a valid number becomes the
    masked string; a 10-digit one is a number whose leading zero the integer
    type dropped."""
    if isinstance(v, float):
        if v != int(v) or not 1e9 <= abs(v) < 1e11:
            return None
        v = int(v)
    a = abs(v)
    if not 1_000_000_000 <= a < 100_000_000_000:
        return None
    if not valid(f"{a:011d}"):
        return None
    return AnyValue(("-" if v < 0 else "") + "*" * 11)


def masked_value(av):
    """A masked copy of a string AnyValue, or None; arrays and kvlists are
    masked in place."""
    v = av.value
    if isinstance(v, str):
        m = mask(v)
        return None if m is None else AnyValue(m)
    if isinstance(v, (bytes, list)):
        # rotel hands bytes values over as a list of ints. Scanned as bytes,
        # as tracescrub does; latin-1 maps each byte to one char.
        m = mask(bytes(v).decode("latin-1"))
        return None if m is None else AnyValue(m.encode("latin-1"))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return masked_number(v)
    if isinstance(v, ArrayValue):
        for i in range(len(v)):
            r = masked_value(v[i])
            if r is not None:
                v[i] = r
    elif isinstance(v, KeyValueList):
        for i in range(len(v)):
            mask_kv(v[i])
    return None


def mask_kv(kv):
    k = mask(kv.key)
    if k is not None:
        kv.key = k
    if kv.value is not None:
        r = masked_value(kv.value)
        if r is not None:
            kv.value = r


def mask_attrs(attrs):
    for kv in attrs:
        mask_kv(kv)


def path_of(value):
    m = _SCHEME.match(value)
    if m:
        rest = value[m.end():]
        cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
        value = rest[cut:]
    for c in "?#":
        i = value.find(c)
        if i >= 0:
            value = value[:i]
    return value


def is_noise(span):
    for kv in span.attributes:
        if kv.key in PATH_KEYS and kv.value is not None:
            v = kv.value.value
            if isinstance(v, str) and _NOISE.fullmatch(path_of(v)):
                return True
    if span.kind == SPAN_KIND_SERVER:
        m = _NAME_PATH.match(span.name)
        if m and _NOISE.fullmatch(m.group(1)):
            return True
    return False


def process_spans(resource_spans):
    # Noise: mark, then follow children within this resource.
    all_spans = [span for ss in resource_spans.scope_spans for span in ss.spans]
    dropped = set()
    queue = [(s.trace_id, s.span_id) for s in all_spans if is_noise(s)]
    if queue:
        children = {}
        for s in all_spans:
            if s.parent_span_id:
                children.setdefault((s.trace_id, s.parent_span_id), []).append((s.trace_id, s.span_id))
        while queue:
            key = queue.pop()
            if key in dropped:
                continue
            dropped.add(key)
            if key[1]:
                queue.extend(children.get(key, ()))
    for ss in resource_spans.scope_spans:
        spans = ss.spans
        for i in range(len(spans) - 1, -1, -1):
            if (spans[i].trace_id, spans[i].span_id) in dropped:
                del spans[i]
        scope = ss.scope
        if scope is not None:
            for field in ("name", "version"):
                m = mask(getattr(scope, field))
                if m is not None:
                    setattr(scope, field, m)
            mask_attrs(scope.attributes)
        for span in ss.spans:
            m = mask(span.name)
            if m is not None:
                span.name = m
            m = mask(span.trace_state)
            if m is not None:
                span.trace_state = m
            mask_attrs(span.attributes)
            for ev in span.events:
                m = mask(ev.name)
                if m is not None:
                    ev.name = m
                mask_attrs(ev.attributes)
            for ln in span.links:
                m = mask(ln.trace_state)
                if m is not None:
                    ln.trace_state = m
                mask_attrs(ln.attributes)
            st = span.status
            if st is not None:
                m = mask(st.message)
                if m is not None:
                    st.message = m
                    span.status = st
    if resource_spans.resource is not None:
        mask_attrs(resource_spans.resource.attributes)
