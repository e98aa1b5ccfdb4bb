#!/usr/bin/env python3
"""Generate the fictional Norwegian personal numbers used by the capture rig.

Stdlib only. Writes a JSON file that the services, the driver and the
manifest writer all read, so every recording uses the same values.

Why these values are fictional: the ordinary, D- and H-numbers use birth
years 2035-2039 with individual numbers >= 500, which the century rules map
to births that have not happened yet, so no real person can hold them. The
synthetic number (month + 80) is fictional by definition.
"""

import json
import sys

K1 = [3, 7, 6, 1, 8, 9, 4, 5, 2]
K2 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2]


def check_digit(digits, weights):
    """11 - weighted sum mod 11; 11 -> 0; 10 -> None (no valid digit)."""
    k = 11 - sum(d * w for d, w in zip(digits, weights)) % 11
    if k == 11:
        return 0
    if k == 10:
        return None
    return k


def complete(ddmmyy, first_individual):
    """First valid 11-digit number for DDMMYY with individual number >= first_individual."""
    for iii in range(first_individual, 1000):
        nine = [int(c) for c in f"{ddmmyy}{iii:03d}"]
        k1 = check_digit(nine, K1)
        if k1 is None:
            continue  # k1 would be 10: this individual number is unusable
        k2 = check_digit(nine + [k1], K2)
        if k2 is None:
            continue
        return "".join(map(str, nine + [k1, k2]))
    raise SystemExit(f"no valid individual number for {ddmmyy}")


def is_valid(num):
    """Strict pre-2032 validation: both check digits as computed above."""
    if len(num) != 11 or not num.isdigit():
        return False
    d = [int(c) for c in num]
    return check_digit(d[:9], K1) == d[9] and check_digit(d[:10], K2) == d[10]


def lenient_checksums(num):
    """The looser rule tracescrub accepts (k1 remainder 0..3 after the 2032
    reform, full k2 sum 0 mod 11). Non-numbers must fail even this."""
    d = [int(c) for c in num]
    k2_ok = sum(x * w for x, w in zip(d, K2 + [1])) % 11 == 0
    k1_ok = sum(x * w for x, w in zip(d, K1 + [1])) % 11 <= 3
    return k1_ok and k2_ok


# (key, kind, DDMMYY as written in the number, first individual number, real birth date, name)
PEOPLE = [
    ("fnr", "fodselsnummer", "170536", 500, "2036-05-17", "Kari Nordmann"),
    ("fnr_leading_zero", "fodselsnummer", "030937", 500, "2037-09-03", "Ola Nordmann"),
    ("dnr", "d-number (day + 40)", "640838", 500, "2038-08-24", "Anne Prøvelid"),
    ("hnr", "h-number (month + 40)", "114635", 500, "2035-06-11", "Per Testesen"),
    ("synthetic", "synthetic test number (month + 80)", "288485", 100, "1985-04-28", "Ingrid Eksempel"),
]


def build():
    people = []
    for key, kind, ddmmyy, first, born, name in PEOPLE:
        num = complete(ddmmyy, first)
        assert is_valid(num) and lenient_checksums(num), num
        people.append({
            "key": key,
            "kind": kind,
            "number": num,
            "split_space": f"{num[:6]} {num[6:]}",
            "split_dash": f"{num[:6]}-{num[6:]}",
            "born": born,
            "name": name,
        })
    fnr = people[0]["number"]
    # Things that look like personal numbers but are not: they must survive masking.
    bad_checksum = fnr[:10] + str((int(fnr[10]) + 1) % 10)
    non_numbers = [
        {"key": "order_id", "value": "12345678901", "why": "11 digits, checksums fail"},
        {"key": "bad_checksum", "value": bad_checksum, "why": "valid date, last check digit off by one"},
        {"key": "twelve_digits", "value": "9" + fnr, "why": "12-digit id that contains a valid number; the digit run is 12 long"},
    ]
    for n in non_numbers:
        v = n["value"]
        assert not (len(v) == 11 and (is_valid(v) or lenient_checksums(v))), v
    return {"people": people, "non_numbers": non_numbers}


if __name__ == "__main__":
    data = build()
    out = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
