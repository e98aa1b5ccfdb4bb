//! The detectors beyond personal numbers, through the whole engine:
//! config problems, masking in spans, scoping by key, stats and findings
//! by name, and pseudonyms.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tracescrub_processor::{Error, Finding, Processor};

/// 40 bytes, hex-encoded as a host passes it.
const KEY_HEX: &str =
    "5a71583720747261636573637275622d64697374696e63746976652d6b65792d3430627974657321";

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn batch(name: &str, attrs: Vec<KeyValue>) -> Vec<u8> {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        attributes: attrs,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn attrs_of(out: &[u8]) -> Vec<(String, String)> {
    let req = ExportTraceServiceRequest::decode(out).expect("output decodes");
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    let mut v = vec![("name".to_owned(), span.name.clone())];
    for kv in &span.attributes {
        if let Some(AnyValue { value: Some(Value::StringValue(s)) }) = &kv.value {
            v.push((kv.key.clone(), s.clone()));
        }
    }
    v
}

fn problems(json: &str) -> Vec<(String, String)> {
    match Processor::new(json).unwrap_err() {
        Error::InvalidConfig(p) => p.into_iter().map(|p| (p.path, p.reason)).collect(),
        e => panic!("{e}"),
    }
}

#[test]
fn detectors_mask_with_their_own_replacement_and_count_by_name() {
    let cfg = r#"{"mask": {
        "detectors": ["email", {"name": "payment-card", "replacement": "label"}, "phone-no", "account-number", "bearer-token"],
        "patterns": [{"name": "order-id", "regex": "ORD-[A-Z]{3}", "replacement": "label", "label": "[order]"}]
    }}"#;
    let p = Processor::new(cfg).unwrap();
    let input = batch(
        "lookup ola@nav.no",
        vec![
            attr("user", "ola.nordmann@nav.no"),
            attr("card", "4111 1111 1111 1111"),
            attr("tel", "+47 912 34 567"),
            attr("acct", "8601 11 17947"),
            attr("http.request.header.authorization", "Bearer abcdefgh12345678"),
            attr("order", "see ORD-ABC now"),
            attr("fnr", "13097248022"),
            attr("plain", "nothing here 1234"),
        ],
    );
    let (out, findings) = p.explain(&input).unwrap();
    let got = attrs_of(&out.batch);
    let want = [
        ("name", "lookup **********"),
        ("user", "*******************"),
        ("card", "[payment-card]"),
        ("tel", "+** *** ** ***"),
        ("acct", "**** ** *****"),
        ("http.request.header.authorization", "Bearer ****************"),
        ("order", "see [order] now"),
        ("fnr", "***********"),
        ("plain", "nothing here 1234"),
    ];
    let want: Vec<(String, String)> =
        want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(got, want);
    let by: Vec<(&str, u64)> =
        out.stats.masked_by_detector.iter().map(|c| (c.name.as_str(), c.value)).collect();
    assert_eq!(
        by,
        [
            ("fnr", 1),
            ("account-number", 1),
            ("payment-card", 1),
            ("phone-no", 1),
            ("email", 2),
            ("bearer-token", 1),
            ("order-id", 1)
        ]
    );
    assert_eq!(out.stats.values_masked, 8);
    let names: Vec<String> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::Masked { detector, .. } => Some(detector.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 8);
    assert!(names.contains(&"order-id".to_owned()), "{names:?}");
    // process and explain agree.
    assert_eq!(p.process(&input).unwrap(), out);
}

/// Scenario: an 11-digit run that is a valid fødselsnummer and a valid
/// account number at once, with both detectors on.
/// Guarantees: it is masked once, counted as `fnr` (the documented
/// precedence), with fnr's replacement.
#[test]
fn fnr_wins_over_account_number_on_the_same_digits() {
    // 13097248022 is a valid fødselsnummer; check it is an account too, or
    // find one that is both.
    let both = (0..100_000u64)
        .map(|i| format!("0101900{:04}", i))
        .find(|s| {
            let d = s.as_bytes();
            tracescrub_processor::fnr::classify(d.try_into().unwrap()).is_some()
                && tracescrub_processor::detect::account_valid(d)
        })
        .expect("some number is both");
    let p = Processor::new(r#"{"mask": {"detectors": ["account-number"]}}"#).unwrap();
    let out = p.process(&batch("x", vec![attr("v", &format!("id {both}."))])).unwrap();
    assert_eq!(attrs_of(&out.batch)[1].1, "id ***********.");
    let by: Vec<_> = out.stats.masked_by_detector.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(by, ["fnr"]);
}

#[test]
fn pattern_keys_limit_a_pattern_and_default_to_the_mask_scope() {
    let cfg = r#"{"mask": {
        "scope": {"keys": ["db.*"]},
        "patterns": [
            {"name": "ticket", "regex": "TCK[a-z]+", "keys": ["app.*"]},
            {"name": "secret", "regex": "sekret[a-z]*"}
        ]
    }}"#;
    let p = Processor::new(cfg).unwrap();
    let input = batch(
        "TCKabc sekretx",
        vec![
            attr("app.note", "TCKabc sekretx 13097248022"),
            attr("db.statement", "TCKabc sekretx 13097248022"),
        ],
    );
    let got = attrs_of(&p.process(&input).unwrap().batch);
    // Span names are in the scope of patterns without keys only.
    assert_eq!(got[0].1, "TCKabc *******");
    // app.*: only the ticket pattern (fnr and `secret` follow db.*).
    assert_eq!(got[1].1, "****** sekretx 13097248022");
    // db.*: fnr and `secret`, not the ticket pattern.
    assert_eq!(got[2].1, "TCKabc ******* ***********");
}

#[test]
fn pseudonyms_are_stable_letters_and_follow_the_person() {
    let cfg = format!(
        r#"{{"mask": {{"replacement": "hmac", "detectors": ["email"], "hmac": {{"key_id": "k2026", "key_hex": "{KEY_HEX}"}}}}}}"#
    );
    let p = Processor::new(&cfg).unwrap();
    let input = batch(
        "x",
        vec![
            attr("a", "13097248022"),
            attr("b", "q=130972%2048022&x"),
            attr("c", "Ola@NAV.no"),
            attr("d", "ola@nav.no"),
            attr("e", "q=%31%33%30972%2048%30%322&x"),
        ],
    );
    let got = attrs_of(&p.process(&input).unwrap().batch);
    let a = &got[1].1;
    assert_eq!(got[5].1, format!("q={a}&x"), "encoded digits, the same person");
    assert!(a.starts_with("fnr:k2026:") && a.len() == "fnr:k2026:".len() + 16, "{a}");
    // The same person written another way is the same pseudonym.
    assert_eq!(got[2].1, format!("q={a}&x"));
    assert_eq!(got[3].1, got[4].1);
    assert!(got[3].1.starts_with("email:k2026:"));
    for (_, v) in &got {
        assert!(!v.as_bytes().windows(6).any(|w| w.iter().all(u8::is_ascii_digit)), "{v}");
    }
    // Golden: the same key gives the same pseudonym on every run and host.
    assert_eq!(a, "fnr:k2026:hfbptcllqsfnddcd");
    // The key never shows: not in the effective config, not in Debug.
    let key_forms = [KEY_HEX.to_owned(), "ZqX7-tracescrub".to_owned()];
    for text in [p.config().to_json(), format!("{:?}", p.config())] {
        for k in &key_forms {
            assert!(!text.contains(k.as_str()), "{text}");
        }
    }
}

#[test]
fn config_problems_are_named_and_never_quote_the_key() {
    let got = problems(
        r#"{"mask": {"replacement": "hmac", "detectors": ["emial", "fnr"],
            "patterns": [{"name": "email", "regex": "a"}, {"name": "x1", "regex": "a"},
                         {"name": "ok", "regex": "ab(c"}, {"name": "ok", "regex": "a"}]}}"#,
    );
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "mask.detectors[0].name",
            "mask.detectors[1].name",
            "mask.patterns[0].name",
            "mask.patterns[1].name",
            "mask.patterns[2].regex",
            "mask.hmac"
        ],
        "{got:#?}"
    );
    assert!(got[4].1.contains("at character 2"), "{got:?}");
    let short = problems(&format!(
        r#"{{"mask": {{"replacement": "hmac", "hmac": {{"key_id": "k", "key_hex": "{}"}}}}}}"#,
        &KEY_HEX[..40]
    ));
    assert_eq!(short[0].0, "mask.hmac.key_hex");
    assert!(short[0].1.contains("20 bytes") && !short[0].1.contains(&KEY_HEX[..40]), "{short:?}");
    let unresolved = problems(
        r#"{"mask": {"replacement": "hmac", "hmac": {"key_id": "k", "key_file": "/etc/key"}}}"#,
    );
    assert_eq!(unresolved[0].0, "mask.hmac.key_file");
    assert!(unresolved[0].1.contains("tracescrub"), "{unresolved:?}");
    let bad_id = problems(&format!(
        r#"{{"mask": {{"replacement": "hmac", "hmac": {{"key_id": "1234567", "key_hex": "{KEY_HEX}"}}}}}}"#
    ));
    assert_eq!(bad_id[0].0, "mask.hmac.key_id");
}

#[test]
fn default_config_has_no_other_detectors() {
    let p = Processor::new("{}").unwrap();
    let input = batch("x", vec![attr("user", "ola@nav.no"), attr("card", "4111111111111111")]);
    let out = p.process(&input).unwrap();
    assert_eq!(out.batch, input);
    assert_eq!(out.stats.values_masked, 0);
}
