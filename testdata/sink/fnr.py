"""Norwegian personal numbers, for the tests' own checks (stdlib only).

A port of processor/src/fnr.rs written for reading, not speed: a candidate is
a maximal run of exactly 11 ASCII digits, or 6 digits + one space or dash +
5 digits (both runs maximal); it is a number when both mod-11 check digits
hold (k1 with the 2032 rule: remainder 0..3) and the date, once the D-, H-
and synthetic offsets are taken off, is a real day. The capture sink
(otlp_sink.py) and the tests use it to assert that no valid number reaches
the sink.
"""

import re

K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)
K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)

# Maximal runs: no digit directly before or after either form.
_CANDIDATE = re.compile(r"(?<![0-9])(?:[0-9]{11}|[0-9]{6}[ -][0-9]{5})(?![0-9])")


def classify(digits):
    """'fnr' | 'd-number' | 'h-number' | 'synthetic' for a valid 11-digit string, else None."""
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit():
        return None
    n = [int(c) for c in digits]
    if sum(d * w for d, w in zip(n, K2)) % 11 != 0:
        return None
    if sum(d * w for d, w in zip(n, K1)) % 11 > 3:
        return None
    day, month, yy = n[0] * 10 + n[1], n[2] * 10 + n[3], n[4] * 10 + n[5]
    if month > 80:
        month, kind = month - 80, "synthetic"
    elif month > 40:
        month, kind = month - 40, "h-number"
    elif day > 40:
        kind = "d-number"
    else:
        kind = "fnr"
    if day > 40:
        day -= 40
    if not 1 <= month <= 12:
        return None
    # Century unknown: allow 29 Feb whenever YY is divisible by 4 (fail closed).
    days = 29 if month == 2 and yy % 4 == 0 else 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
    return kind if 1 <= day <= days else None


def find(text):
    """Every valid number in `text`, as the digits (separator removed)."""
    out = []
    for m in _CANDIDATE.finditer(text):
        digits = m.group(0).replace(" ", "").replace("-", "")
        if classify(digits):
            out.append(digits)
    return out


def complete(first9, rest=0):
    """The 11-digit number for 9 digits whose k1 sum leaves `rest`, or None."""
    n = [int(c) for c in first9]
    n.append((11 + rest - sum(d * w for d, w in zip(n, K1)) % 11) % 11)
    n.append((11 - sum(d * w for d, w in zip(n, K2)) % 11) % 11)
    if n[9] > 9 or n[10] > 9:
        return None
    return "".join(map(str, n))


if __name__ == "__main__":
    # The capture rig's numbers (testdata/capture/recorded/numbers.json).
    for good in ("17053650260", "03093750062", "64083850068", "11463550036", "28848510043"):
        assert classify(good), good
    assert find("get person:17053650260 and 030937 50062") == ["17053650260", "03093750062"]
    assert find("order 170536502601") == [] and find("17053650261") == []
    print("fnr.py: ok")
