use super::*;

fn found(b: Builtin, hay: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    b.scan(hay.as_bytes(), &mut |s, e| out.push((s, e)));
    out
}

fn texts(b: Builtin, hay: &str) -> Vec<String> {
    found(b, hay).into_iter().map(|(s, e)| hay[s..e].to_owned()).collect()
}

/// A deterministic generator for the planted-value tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| b'0' + self.below(10) as u8).collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// An account number with a valid check digit.
fn account(rng: &mut Rng) -> Vec<u8> {
    loop {
        let mut d = rng.digits(10);
        const W: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
        let sum: u32 = d.iter().zip(W).map(|(&c, w)| u32::from(c - b'0') * w).sum();
        let check = (11 - sum % 11) % 11;
        if check < 10 {
            d.push(b'0' + check as u8);
            return d;
        }
    }
}

/// A Luhn-valid card number of `len` digits.
fn card(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut d = rng.digits(len - 1);
    d.push(b'0');
    for c in b'0'..=b'9' {
        *d.last_mut().unwrap() = c;
        if luhn_valid(&d) {
            break;
        }
    }
    d
}

#[test]
fn names_round_trip_and_do_not_clash() {
    for b in Builtin::ALL {
        assert_eq!(Builtin::from_name(b.name()), Some(b));
    }
    let names: Vec<_> = reserved_names().collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names.len(), sorted.len(), "{names:?}");
}

#[test]
fn account_validator() {
    // Published examples of valid Norwegian account numbers.
    for ok in ["86011117947", "12345678903"] {
        assert!(account_valid(ok.as_bytes()), "{ok}");
    }
    for bad in ["86011117948", "12345678900", "1234567890", "123456789031", "8601111794a"] {
        assert!(!account_valid(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn account_scanner_forms_and_controls() {
    let b = Builtin::AccountNumber;
    assert_eq!(texts(b, "konto 86011117947."), ["86011117947"]);
    assert_eq!(texts(b, "konto 8601 11 17947"), ["8601 11 17947"]);
    assert_eq!(texts(b, "8601.11.17947"), ["8601.11.17947"]);
    for control in [
        "8601 11.17947",  // mixed separators
        "186011117947",   // 12 digits
        "8601111794",     // 10 digits
        "86011117948",    // bad check digit
        "8601 11 179470", // last group of 6
        "8601-11-17947",  // dashes are not the printed form
        "18601 11 17947", // first group of 5
    ] {
        assert!(found(b, control).is_empty(), "{control}");
    }
}

#[test]
fn luhn_validator() {
    for ok in ["4111111111111111", "5555555555554444", "378282246310005", "4222222222222"] {
        assert!(luhn_valid(ok.as_bytes()), "{ok}");
    }
    for bad in ["4111111111111112", "", "41111111111111a1"] {
        assert!(!luhn_valid(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn card_scanner_forms_and_controls() {
    let b = Builtin::PaymentCard;
    assert_eq!(texts(b, "card=4111111111111111&x"), ["4111111111111111"]);
    assert_eq!(texts(b, "4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
    assert_eq!(texts(b, "4111-1111-1111-1111"), ["4111-1111-1111-1111"]);
    assert_eq!(texts(b, "amex 3782 822463 10005"), ["3782 822463 10005"]);
    assert_eq!(texts(b, "4222 2222 2222 2"), ["4222 2222 2222 2"]);
    for control in [
        "4111111111111112",     // Luhn fails
        "411111111111",         // 12 digits
        "41111111111111111111", // 20 digits
        "4111 1111-1111 1111",  // mixed separators
        "4111  1111 1111 1111", // two spaces
        "2024-01-02 10:11:12",  // a timestamp
        "order 1234 5678 9012", // 12 digits in groups
    ] {
        assert!(found(b, control).is_empty(), "{control}");
    }
}

#[test]
fn phone_scanner_forms_and_controls() {
    let b = Builtin::PhoneNo;
    for (hay, want) in [
        ("ring +47 912 34 567 nå", "+47 912 34 567"),
        ("+4791234567", "+4791234567"),
        ("0047 91 23 45 67", "0047 91 23 45 67"),
        ("tel:+47-912-34-567", "+47-912-34-567"),
        ("(+47) 22 22 22 22", "(+47) 22 22 22 22"),
        ("q=%2B47%2091234567&", "%2B47%2091234567"),
        ("+47\u{a0}912\u{a0}34\u{a0}567", "+47\u{a0}912\u{a0}34\u{a0}567"),
    ] {
        assert_eq!(texts(b, hay), [want], "{hay}");
    }
    for control in [
        "91234567",        // no country code
        "+46 912 34 567",  // Sweden
        "+47 012 34 567",  // no number starts with 0
        "+47 912 34 5678", // 9 digits
        "10047 91234567",  // 0047 inside a longer run
        "+47 912  34 567", // two separators
    ] {
        assert!(found(b, control).is_empty(), "{control}");
    }
}

#[test]
fn phone_validator() {
    assert!(phone_valid(b"91234567"));
    assert!(phone_valid(b"22222222"));
    assert!(!phone_valid(b"11234567"));
    assert!(!phone_valid(b"9123456"));
}

#[test]
fn email_scanner_forms_and_controls() {
    let b = Builtin::Email;
    for (hay, want) in [
        ("mail ola.nordmann@nav.no.", "ola.nordmann@nav.no"),
        ("<Kari+test@Example.COM>", "Kari+test@Example.COM"),
        ("email=ola%40nav.no&x=1", "ola%40nav.no"),
        ("a@b.c.de-x.org", "a@b.c.de-x.org"),
    ] {
        assert_eq!(texts(b, hay), [want], "{hay}");
    }
    for control in ["user@localhost", "@nav.no", "a@b", "x@-bad.no", "ola@nav.n0", "a @b.no"] {
        assert!(found(b, control).is_empty(), "{control}");
    }
}

#[test]
fn domain_rule() {
    assert_eq!(domain_end(b"nav.no", 0), Some(6));
    assert_eq!(domain_end(b"nav.no.123", 0), Some(6));
    assert_eq!(domain_end(b"localhost", 0), None);
}

#[test]
fn bearer_scanner_forms_and_controls() {
    let b = Builtin::BearerToken;
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    for (hay, want) in [
        ("Authorization: Bearer abcDEF123-._~+/=", "abcDEF123-._~+/="),
        ("bearer   tok_live_12345678", "tok_live_12345678"),
        (&format!("jwt={jwt}&x"), jwt),
        (&format!("Bearer {jwt}"), jwt),
    ] {
        assert_eq!(texts(b, hay), [want], "{hay}");
    }
    for control in [
        "Bearer short",
        "unbearer abcdefghijkl",
        "eyJub3QganNvbg.eyJhIjoxfQ.sig", // header is not a JSON object
        "eyJhbGciOiJIUzI1NiJ9.x.sig",    // payload too short
        "bearer: the token is elsewhere",
    ] {
        assert!(found(b, control).is_empty(), "{control}");
    }
    assert!(jwt_header_valid(b"eyJhbGciOiJIUzI1NiJ9"));
    assert!(!jwt_header_valid(b"eyJhbGciOiJIUzI1NiJ"));
}

#[test]
fn pattern_scans_utf8_stretches_and_skips_empty_matches() {
    let p = Pattern::new("[a-z]+@x").unwrap();
    let hay = [b"ab@x \xff cd@x".as_slice()].concat();
    let mut out = Vec::new();
    p.scan(&hay, &mut |s, e| out.push((s, e)));
    assert_eq!(out, [(0, 4), (7, 11)]);
    let empty = Pattern::new("a*").unwrap();
    let mut n = 0;
    empty.scan(b"bbb", &mut |_, _| n += 1);
    assert_eq!(n, 0);
}

#[test]
fn pattern_errors_give_the_position() {
    for (regex, at) in
        [("ab(cd", 2), ("a)b", 1), ("*a", 0), ("ab\\", 2), ("x[z-a]", 4), ("a{2,1}", 1)]
    {
        let (pos, reason) = Pattern::new(regex).unwrap_err();
        assert_eq!(pos, at, "{regex}: {reason}");
        assert!(!reason.is_empty());
    }
}

#[test]
fn merge_unions_overlaps_and_keeps_the_lowest_detector() {
    let h = |start, end, detector| Hit { start, end, detector };
    let mut hits = vec![h(10, 20, 7), h(0, 5, 6), h(10, 20, 0), h(15, 30, 5), h(40, 41, 9)];
    let exact = merge(&mut hits);
    assert_eq!(hits, [h(0, 5, 6), h(10, 30, 0), h(40, 41, 9)]);
    assert_eq!(exact, [true, false, true]);
    let mut same = vec![h(3, 14, 5), h(3, 14, 0)];
    assert_eq!(merge(&mut same), [true]);
    assert_eq!(same, [h(3, 14, 0)]);
}

#[test]
fn star_digits_keeps_separators_and_escapes() {
    let mut out = Vec::new();
    star_digits(b"130972%2048022", b'*', &mut out);
    assert_eq!(out, b"******%20*****");
    out.clear();
    star_digits(b"%31%33 0", b'#', &mut out);
    assert_eq!(out, b"%23%23 #");
    assert_eq!(digits_of(b"%2B47%20912 34%35"), b"47912345");
}

/// Scenario: a fixed key, key id and values.
/// Guarantees: the pseudonyms are these exact strings, on every host and
/// run (the engine is the same code everywhere), and hold no digit.
#[test]
fn pseudonym_golden() {
    let keyed = Keyed::new(b"tracescrub-golden-key-0123456789abcdef", "k2026");
    let p = |name: &str, value: &[u8]| {
        let mut out = Vec::new();
        keyed.pseudonym(name, value, &mut out);
        String::from_utf8(out).unwrap()
    };
    let got = [
        p("fnr", b"13097248022"),
        p("account-number", b"86011117947"),
        p("email", b"ola.nordmann@nav.no"),
        p("phone-no", b"91234567"),
    ];
    assert_eq!(
        got,
        [
            "fnr:k2026:gtnpprrlgjtcdqjb",
            "account-number:k2026:tgrbnnnmqqhdhjnn",
            "email:k2026:hpkhttcmtlmkmmfc",
            "phone-no:k2026:ntlslqqkcglglhtn",
        ]
    );
    for g in &got {
        let tail = g.rsplit(':').next().unwrap();
        assert_eq!(tail.len(), PSEUDONYM_LEN);
        assert!(tail.bytes().all(|b| ALPHABET.contains(&b)), "{g}");
    }
    // Another key id, another key: other pseudonyms.
    let other = Keyed::new(b"another-key-of-at-least-thirty-two-bytes", "k2027");
    let mut out = Vec::new();
    other.pseudonym("fnr", b"13097248022", &mut out);
    assert_ne!(String::from_utf8(out).unwrap(), got[0]);
}

/// Plants `n` values from `make` (each with whether it must be found) into
/// texts of about 200 values joined by `joiner`, scans them, and checks
/// that every planted value is reported exactly and no control is touched.
fn plant(b: Builtin, n: usize, joiner: &str, mut make: impl FnMut(&mut Rng) -> (Vec<u8>, bool)) {
    plant_after(b, n, joiner, |rng| {
        let (value, valid) = make(rng);
        (Vec::new(), value, valid)
    })
}

/// [`plant`], each value after its own context bytes (not checked).
fn plant_after(
    b: Builtin,
    n: usize,
    joiner: &str,
    mut make: impl FnMut(&mut Rng) -> (Vec<u8>, Vec<u8>, bool),
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ b as u64);
    let (mut survivors, mut touched, mut planted) = (0, 0, 0);
    let mut left = n;
    while left > 0 {
        let mut text = Vec::new();
        let mut spans = Vec::new();
        for _ in 0..200.min(left) {
            let (before, value, valid) = make(&mut rng);
            text.extend_from_slice(&before);
            let start = text.len();
            text.extend_from_slice(&value);
            spans.push((start, text.len(), valid));
            text.extend_from_slice(joiner.as_bytes());
            left -= 1;
        }
        let mut hits = Vec::new();
        b.scan(&text, &mut |s, e| hits.push((s, e)));
        for &(s, e, valid) in &spans {
            if valid {
                planted += 1;
                if !hits.contains(&(s, e)) {
                    survivors += 1;
                }
            } else if hits.iter().any(|&(hs, he)| hs < e && s < he) {
                touched += 1;
            }
        }
    }
    assert!(planted > n / 3, "{planted} of {n} planted");
    assert_eq!((survivors, touched), (0, 0), "{}: survivors, controls touched", b.name());
}

const MILLION: usize = 1_000_000;

#[test]
fn planted_account_numbers_all_found_controls_untouched() {
    plant(Builtin::AccountNumber, MILLION, ", ", |rng| {
        let d = account(rng);
        match rng.below(6) {
            0 => (d, true),
            1 => ([&d[..4], b" ", &d[4..6], b" ", &d[6..]].concat(), true),
            2 => ([&d[..4], b".", &d[4..6], b".", &d[6..]].concat(), true),
            3 => {
                let mut bad = d;
                bad[10] = b'0' + (bad[10] - b'0' + 1) % 10;
                (bad, false)
            }
            4 => {
                let n = *rng.pick(&[10, 12, 13]);
                (rng.digits(n), false)
            }
            _ => ([&d[..4], b"-", &d[4..6], b"-", &d[6..]].concat(), false),
        }
    });
}

#[test]
fn planted_cards_all_found_controls_untouched() {
    plant(Builtin::PaymentCard, MILLION, "; ", |rng| {
        let len = 13 + rng.below(7) as usize;
        let d = card(rng, len);
        match rng.below(6) {
            0 | 1 => (d, true),
            2 => {
                let d = card(rng, 16);
                let sep = *rng.pick(&[b" ", b"-"]);
                ([&d[..4], sep, &d[4..8], sep, &d[8..12], sep, &d[12..]].concat(), true)
            }
            3 => {
                let mut bad = d;
                let last = bad.len() - 1;
                bad[last] = b'0' + (bad[last] - b'0' + 1) % 10;
                (bad, false)
            }
            4 => {
                let n = *rng.pick(&[10, 11, 12, 20]);
                (rng.digits(n), false)
            }
            _ => {
                // 12 digits in groups of four: a card's shape, too short.
                let d = rng.digits(12);
                ([&d[..4], b" ", &d[4..8], b" ", &d[8..]].concat(), false)
            }
        }
    });
}

#[test]
fn planted_phones_all_found_controls_untouched() {
    let prefixes: [&[u8]; 4] = [b"+47", b"0047", b"%2B47", b"(+47)"];
    let seps: [&[u8]; 6] = [b"", b" ", b"-", b".", b"%20", "\u{a0}".as_bytes()];
    plant(Builtin::PhoneNo, MILLION, ", ", |rng| {
        let mut national = rng.digits(8);
        national[0] = b'2' + rng.below(8) as u8;
        let sep = *rng.pick(&seps);
        let grouped = match rng.below(3) {
            0 => national.clone(),
            1 => [&national[..3], sep, &national[3..5], sep, &national[5..]].concat(),
            _ => [&national[..2], sep, &national[2..4], sep, &national[4..6], sep, &national[6..]]
                .concat(),
        };
        match rng.below(5) {
            0..=2 => ([*rng.pick(&prefixes), sep, &grouped].concat(), true),
            3 => (grouped, false), // no country code
            _ => {
                let mut bad = national.clone();
                bad[0] = *rng.pick(b"01");
                ([b"+47 ".as_slice(), &bad].concat(), false)
            }
        }
    });
}

#[test]
fn planted_emails_all_found_controls_untouched() {
    let letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    plant(Builtin::Email, MILLION, " ; ", |rng| {
        let word = |rng: &mut Rng, n: usize| -> Vec<u8> {
            (0..n).map(|_| letters[rng.below(52) as usize]).collect()
        };
        let local = [word(rng, 5), b".".to_vec(), word(rng, 4)].concat();
        let domain = [word(rng, 6), b".".to_vec(), b"no".to_vec()].concat();
        match rng.below(4) {
            0 | 1 => ([&local[..], b"@", &domain].concat(), true),
            2 => ([&local[..], b"%40", &domain].concat(), true),
            _ => ([&local[..], b"@", &word(rng, 8)].concat(), false), // no dot in the domain
        }
    });
}

#[test]
fn planted_bearer_tokens_all_found_controls_untouched() {
    let tok = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
    let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    plant_after(Builtin::BearerToken, MILLION, " | ", |rng| {
        let token: Vec<u8> = (0..8 + rng.below(40) as usize)
            .map(|_| tok[rng.below(tok.len() as u64) as usize])
            .collect();
        let seg = |rng: &mut Rng, n: usize| -> Vec<u8> {
            (0..n).map(|_| b64[rng.below(64) as usize]).collect()
        };
        let auth = b"Authorization: Bearer ".to_vec();
        match rng.below(4) {
            0 => (auth, token, true),
            1 => {
                let headers: [&[u8]; 2] =
                    [b"eyJhbGciOiJIUzI1NiJ9", b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"];
                let header = *rng.pick(&headers);
                let jwt = [header, b".", &seg(rng, 30), b".", &seg(rng, 43)].concat();
                (rng.pick(&[auth, b"jwt=".to_vec()]).clone(), jwt, true)
            }
            2 => (auth, seg(rng, 7), false), // too short a token
            _ => {
                let not_json = [b"eyJub3QganNvbg.".as_slice(), &seg(rng, 20), b".", &seg(rng, 20)];
                (b"jwt=".to_vec(), not_json.concat(), false)
            }
        }
    });
}
