//! Schema version 2: noise rules, presets, overrides and team files, and the
//! order they apply in. Batches are built with the `opentelemetry-proto`
//! prost types; team files are passed as the host passes them, under
//! `teams.files`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value as Json, json};
use tracescrub_processor::glob::GlobList;
use tracescrub_processor::teams::{NoiseLayer, NoiseRule, preset_rules};
use tracescrub_processor::{Config, Processor, Stats, path};

/// A valid fødselsnummer.
const FNR: &str = "01019012138";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A server span `GET <path>` with the path in `url.path` too, and more
/// attributes.
fn server(id: u8, path: &str, more: &[(&str, &str)]) -> Span {
    let mut attributes = vec![kv("url.path", path)];
    attributes.extend(more.iter().map(|(k, v)| kv(k, v)));
    Span {
        trace_id: vec![id; 16],
        span_id: vec![id; 8],
        name: format!("GET {path}"),
        kind: SpanKind::Server as i32,
        attributes,
        ..Default::default()
    }
}

/// One resource per (namespace, service), each holding its spans.
fn batch(resources: Vec<(&str, &str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(ns, service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("k8s.namespace.name", ns), kv("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The spans of an output batch, in order.
fn spans_of(batch: &[u8]) -> Vec<Span> {
    let decoded = ExportTraceServiceRequest::decode(batch).expect("decodes");
    decoded.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect()
}

/// The names of the spans kept, in order.
fn kept(config: &Json, req: &ExportTraceServiceRequest) -> (Vec<String>, Stats) {
    let p = Processor::new(&config.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let out = p.process(&req.encode_to_vec()).expect("processes");
    (spans_of(&out.batch).into_iter().map(|s| s.name).collect(), out.stats)
}

/// Loads `cfg`, checks that of its team files only `good` loaded, and
/// returns the paths of the others' problems.
fn only_good_loads(cfg: &Json) -> Vec<String> {
    let parsed = Config::from_json(&cfg.to_string()).expect("the platform config loads");
    let loaded: Vec<&str> = parsed.teams.files.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(loaded, ["good"]);
    parsed.teams.problems.iter().map(|p| p.path.clone()).collect()
}

/// A version-2 config with these team files (name -> document).
fn with_teams(mut base: Json, teams: &[(&str, Json)]) -> Json {
    base["version"] = json!(2);
    let files: serde_json::Map<String, Json> = teams
        .iter()
        .map(|(name, doc)| {
            ((*name).to_owned(), json!({"file": format!("teams/{name}.yaml"), "doc": doc}))
        })
        .collect();
    base["teams"] = json!({"dir": "teams/", "files": files});
    base
}

fn rule_count(stats: &Stats, name: &str) -> u64 {
    stats.dropped_by_rule.iter().find(|c| c.name == name).map_or(0, |c| c.value)
}

/// Scenario: each rule kind in the main file: a span-name glob, an
/// attribute glob, the two presets (on by default in version 2), and a
/// version-1 document with the same batch.
/// Guarantees: each drops its span and is counted under its own name; the
/// version-1 document drops none of them (it loads as it always did).
#[test]
fn each_rule_kind_drops_its_spans() {
    let mut grpc = server(3, "/x", &[]);
    grpc.name = "grpc.health.v1.Health/Check".into();
    let req = batch(vec![(
        "ns",
        "svc",
        vec![
            server(1, "/orders", &[]),
            server(2, "/healthz", &[("user_agent.original", "kube-probe/1.31")]),
            grpc,
            server(4, "/status", &[("rpc.service", "grpc.health.v1.Health")]),
            server(5, "/custom", &[("app.kind", "warmup")]),
            server(6, "/tick", &[]),
        ],
    )]);
    let v2 = json!({"version": 2, "noise": {"rules": [
        {"span_name": "GET /tick"},
        {"attribute": "app.kind", "glob": "warm*"},
    ]}});
    let (names, stats) = kept(&v2, &req);
    assert_eq!(names, ["GET /orders"]);
    assert_eq!(rule_count(&stats, "noise.rules span_name GET /tick"), 1);
    assert_eq!(rule_count(&stats, "noise.rules app.kind warm*"), 1);
    assert_eq!(rule_count(&stats, "preset kubernetes-probes user_agent.original kube-probe/*"), 1);
    assert_eq!(rule_count(&stats, "preset grpc-health span_name grpc.health.v1.Health/*"), 1);
    assert_eq!(rule_count(&stats, "preset grpc-health rpc.service grpc.health.v1.Health"), 1);

    let v1 = json!({});
    assert_eq!(kept(&v1, &req).0.len(), 6, "version 1 changed");
    let presets_off = json!({"version": 2, "noise": {"presets": []}});
    assert_eq!(kept(&presets_off, &req).0.len(), 6);
}

/// Appends field `number` (length-delimited) holding `body`.
fn put_len(out: &mut Vec<u8>, number: u32, body: &[u8]) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// The KeyValue `k` = `v` in every shape an encoder may use: value before
/// key, an unknown field after the value or inside it, lengths of two
/// bytes (`v` made longer), the key written twice (the last one counts).
fn key_value_shapes(k: &str, v: &str) -> Vec<Vec<u8>> {
    let string = |v: &str| {
        let mut any = Vec::new();
        put_len(&mut any, 1, v.as_bytes());
        any
    };
    let key = |k: &str| {
        let mut out = Vec::new();
        put_len(&mut out, 1, k.as_bytes());
        out
    };
    let value = |any: &[u8]| {
        let mut out = Vec::new();
        put_len(&mut out, 2, any);
        out
    };
    let unknown = [0x78, 0x01]; // field 15, varint 1
    let long = format!("{v}{}", "x".repeat(200));
    vec![
        [value(&string(v)), key(k)].concat(),
        [key(k), value(&string(v)), unknown.to_vec()].concat(),
        [key(k), value(&[unknown.to_vec(), string(v)].concat())].concat(),
        [key(k), value(&string(&long))].concat(),
        [key("http.method"), value(&string(v)), key(k)].concat(),
    ]
}

/// Scenario: the kube-probe user agent written as a KeyValue of every
/// shape (see `key_value_shapes`); and the same shapes with another user
/// agent.
/// Guarantees: an attribute rule reads the KeyValue as protobuf does,
/// whatever its shape: the probe is dropped and the other is kept.
#[test]
fn attribute_rules_read_every_key_value_shape() {
    let config = json!({"version": 2});
    let p = Processor::new(&config.to_string()).unwrap_or_else(|e| panic!("{e}"));
    for (ua, dropped) in [("kube-probe/1.31", true), ("curl/8.5", false)] {
        for (n, kv) in key_value_shapes("user_agent.original", ua).into_iter().enumerate() {
            let mut span = Span {
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                name: "x".into(),
                ..Default::default()
            }
            .encode_to_vec();
            put_len(&mut span, 9, &kv);
            let (mut scope, mut rs, mut req) = (Vec::new(), Vec::new(), Vec::new());
            put_len(&mut scope, 2, &span);
            put_len(&mut rs, 2, &scope);
            put_len(&mut req, 1, &rs);
            let out = p.process(&req).unwrap_or_else(|e| panic!("shape {n}: {e}"));
            assert_eq!(out.stats.spans_dropped == 1, dropped, "{ua}, shape {n}");
        }
    }
}

/// Scenario: back-to-back resources of one namespace whose `service.name`
/// is written in every KeyValue shape (see `key_value_shapes`), between
/// resources written as usual: `billing`, then `person-api` in the shape,
/// `billing` in the shape, and `person-api`. The team's `person-*` entry
/// drops `/ping`.
/// Guarantees: a resource's rules are chosen by its match values as
/// protobuf reads them, whatever their shape, and never taken over from
/// the resource before: exactly the two `person-api` pings are dropped.
#[test]
fn resource_match_keys_read_every_key_value_shape() {
    let team = json!({"services": {"person-*": {"noise": {"extra_globs": ["*/ping"]}}}});
    let cfg = with_teams(json!({}), &[("team-a", team)]);
    let p = Processor::new(&cfg.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let usual = |svc: &str| vec![kv("service.name", svc).encode_to_vec()];
    for n in 0..key_value_shapes("service.name", "").len() {
        let shaped = |svc: &str| vec![key_value_shapes("service.name", svc).swap_remove(n)];
        let resources =
            [usual("billing"), shaped("person-api"), shaped("billing"), usual("person-api")];
        let mut req = Vec::new();
        for (i, service) in resources.iter().enumerate() {
            let mut resource = Vec::new();
            put_len(&mut resource, 1, &kv("k8s.namespace.name", "team-a").encode_to_vec());
            for attribute in service {
                put_len(&mut resource, 1, attribute);
            }
            let span = server(i as u8 + 1, "/ping", &[]).encode_to_vec();
            let (mut scope, mut rs) = (Vec::new(), Vec::new());
            put_len(&mut scope, 2, &span);
            put_len(&mut rs, 1, &resource);
            put_len(&mut rs, 2, &scope);
            put_len(&mut req, 1, &rs);
        }
        let out = p.process(&req).unwrap_or_else(|e| panic!("shape {n}: {e}"));
        let kept: Vec<u8> = spans_of(&out.batch).iter().map(|s| s.span_id[0]).collect();
        assert_eq!(kept, [1, 3], "shape {n}");
    }
}

/// Scenario: one path that every layer has an opinion on: the defaults
/// drop `*/internal/status*`; an override keeps it; the team drops it
/// again under another glob; the team's service entry keeps it.
/// Guarantees: the order is service entry, team file, overrides, defaults:
/// each layer added on top decides; and an override with `final: true`
/// goes before the team's layers.
#[test]
fn precedence_is_service_then_team_then_overrides_then_defaults() {
    let path = "/internal/status-report";
    let req = batch(vec![("team-a", "person-api", vec![server(1, path, &[])])]);
    let dropped = |config: &Json| kept(config, &req).0.is_empty();

    let base = json!({"version": 2});
    assert!(dropped(&with_teams(base.clone(), &[])), "the defaults drop it");

    let keep_override = json!({"version": 2, "overrides": [
        {"match": {"k8s.namespace.name": "team-a"}, "noise": {"keep_globs": ["*/status-report"]}},
    ]});
    assert!(!dropped(&with_teams(keep_override.clone(), &[])), "the override keeps it");

    let team = json!({"noise": {"extra_globs": ["/internal/*"]}});
    let cfg = with_teams(keep_override.clone(), &[("team-a", team.clone())]);
    assert!(dropped(&cfg), "the team file beats the override");
    assert_eq!(rule_count(&kept(&cfg, &req).1, "teams/team-a.yaml /internal/*"), 1);

    let with_service = json!({
        "noise": {"extra_globs": ["/internal/*"]},
        "services": {"person-*": {"noise": {"keep_globs": ["*/status-report"]}}},
    });
    assert!(!dropped(&with_teams(keep_override.clone(), &[("team-a", with_service.clone())])));
    // Another service of the team gets the team file, not the entry.
    let other = batch(vec![("team-a", "billing", vec![server(1, path, &[])])]);
    let cfg = with_teams(keep_override.clone(), &[("team-a", with_service.clone())]);
    assert!(kept(&cfg, &other).0.is_empty());

    let mut final_override = keep_override.clone();
    final_override["overrides"][0]["final"] = json!(true);
    final_override["overrides"][0]["noise"] = json!({"extra_globs": ["*/status-report"]});
    let cfg = with_teams(
        final_override,
        &[("team-a", json!({"noise": {"keep_globs": ["/internal/*"]}}))],
    );
    let (names, stats) = kept(&cfg, &req);
    assert!(names.is_empty(), "a final override beats the team file");
    assert_eq!(rule_count(&stats, "overrides[0] */status-report"), 1);
}

/// Scenario: `keep_globs` of a team against the default globs, and the
/// first of several matching overrides.
/// Guarantees: a kept path is kept although a default glob matches it; only
/// the first matching override applies.
#[test]
fn keep_globs_beat_defaults_and_the_first_override_wins() {
    let req =
        batch(vec![("team-b", "api", vec![server(1, "/metrics", &[]), server(2, "/ping", &[])])]);
    let team = json!({"noise": {"keep_globs": ["/metrics"]}});
    let cfg = with_teams(
        json!({"overrides": [
            {"match": {"service.name": "api"}, "noise": {"extra_globs": ["/ping"]}},
            {"match": {"service.name": "*"}, "noise": {"keep_globs": ["/ping"]}},
        ]}),
        &[("team-b", team)],
    );
    assert_eq!(kept(&cfg, &req).0, ["GET /metrics"]);
}

/// Scenario: spans whose path sources disagree (`url.path`, then
/// `http.target`), judged by a team layer and an override after it.
/// Guarantees: within a layer, a keep glob on any path beats a drop glob
/// on another, and a drop is named for the first path that matched (not the
/// lowest glob); a later layer's keep never beats an earlier layer's drop.
#[test]
fn within_a_layer_keep_wins_and_the_first_path_names_the_drop() {
    let req = batch(vec![(
        "team-a",
        "api",
        vec![
            server(1, "/b", &[("http.target", "/a")]),
            server(2, "/drop", &[("http.target", "/keep")]),
            server(3, "/x", &[]),
        ],
    )]);
    let team =
        json!({"noise": {"extra_globs": ["/a", "/b", "/drop", "/x"], "keep_globs": ["/keep"]}});
    let cfg = with_teams(
        json!({"overrides": [{"match": {"service.name": "api"}, "noise": {"keep_globs": ["/x"]}}]}),
        &[("team-a", team)],
    );
    let (names, stats) = kept(&cfg, &req);
    assert_eq!(names, ["GET /drop"]);
    let by = |glob: &str| {
        stats
            .dropped_by_rule
            .iter()
            .filter(|c| c.name.ends_with(glob))
            .map(|c| c.value)
            .sum::<u64>()
    };
    assert_eq!((by(" /b"), by(" /a"), by(" /x")), (1, 0, 1), "{:?}", stats.dropped_by_rule);
}

/// Scenario: a team file with drop globs only (no keep in its chain): span
/// 1's first path matches a later glob than its second; span 2's first
/// path matches the override's layer, its second the team's; span 3's first
/// path matches nothing, its second the team's.
/// Guarantees: the first path to match the highest-precedence layer names
/// the drop (the quick answer for a chain with no keep equals the full one).
#[test]
fn with_no_keep_the_first_path_in_the_first_layer_names_the_drop() {
    let req = batch(vec![(
        "team-a",
        "api",
        vec![
            server(1, "/b", &[("http.target", "/a")]),
            server(2, "/o", &[("http.target", "/a")]),
            server(3, "/none", &[("http.target", "/b")]),
        ],
    )]);
    let team = json!({"noise": {"extra_globs": ["/a", "/b"]}});
    let cfg = with_teams(
        json!({"overrides": [{"match": {"service.name": "api"}, "noise": {"extra_globs": ["/o"]}}]}),
        &[("team-a", team)],
    );
    let (names, stats) = kept(&cfg, &req);
    assert!(names.is_empty(), "{names:?}");
    let by = |rule: &str| rule_count(&stats, rule);
    assert_eq!(
        (by("teams/team-a.yaml /b"), by("teams/team-a.yaml /a"), by("overrides[0] /o")),
        (2, 1, 0),
        "{:?}",
        stats.dropped_by_rule
    );
}

/// Scenario: a team file of one namespace, and resources of another.
/// Guarantees: a team file applies only where `teams.key` equals its name:
/// the other namespace's spans are judged by the defaults alone.
#[test]
fn a_team_file_applies_to_its_own_namespace_only() {
    let req = batch(vec![
        ("team-a", "api", vec![server(1, "/ping", &[])]),
        ("team-b", "api", vec![server(2, "/ping", &[]), server(3, "/metrics", &[])]),
    ]);
    let cfg = with_teams(
        json!({}),
        &[("team-a", json!({"noise": {"extra_globs": ["/ping"], "keep_globs": ["/metrics"]}}))],
    );
    assert_eq!(kept(&cfg, &req).0, ["GET /ping"]);
}

/// Scenario: one trace through two namespaces: team-a's server span (which
/// only team-a's file calls noise) has a child in team-b's service, and a
/// default health check in team-a has a child in team-b too.
/// Guarantees: a team rule's drop takes only descendants of its own
/// namespace, so team-b's child of the team-a span is kept; the platform's
/// default rule still takes descendants wherever they are.
#[test]
fn a_team_rule_never_drops_another_namespaces_spans() {
    let parent = server(1, "/api/orders", &[]);
    let mut child_b = server(2, "/inventory", &[]);
    child_b.trace_id = parent.trace_id.clone();
    child_b.parent_span_id = parent.span_id.clone();
    let health = server(3, "/isAlive", &[]);
    let mut health_child = server(4, "/db-ping", &[]);
    health_child.trace_id = health.trace_id.clone();
    health_child.parent_span_id = health.span_id.clone();
    let req = batch(vec![
        ("team-a", "orders", vec![parent, health]),
        ("team-b", "inventory", vec![child_b, health_child]),
    ]);
    let cfg = with_teams(json!({}), &[("team-a", json!({"noise": {"extra_globs": ["/api/*"]}}))]);
    let (names, stats) = kept(&cfg, &req);
    assert_eq!(names, ["GET /inventory"], "{stats:?}");
    assert_eq!(rule_count(&stats, "teams/team-a.yaml /api/*"), 1);
    assert_eq!(stats.dropped_descendants, 1);
}

/// Scenario: team files whose keys and service globs carry a token and a
/// personal number, and whose overrides match on such keys.
/// Guarantees: the problems name where, never quoting either.
#[test]
fn team_file_problems_never_quote_a_key() {
    let secret = format!("Bearer s3cr3t {FNR}");
    let team = with_teams(
        json!({}),
        &[(
            "team-a",
            json!({secret.clone(): 1, "services": {format!("svc-{FNR}-[*"): {"noise": {}}}}),
        )],
    );
    let team_problems =
        Config::from_json(&team.to_string()).expect("the platform loads").teams.problems;
    let over = with_teams(
        json!({"overrides": [{"match": {secret.clone(): 5}, "noise": {"extra_globs": ["/x"]}}]}),
        &[],
    );
    let over_problems = Config::from_json(&over.to_string()).expect_err("a bad override");
    assert_eq!(
        (team_problems.len(), over_problems.len()),
        (2, 1),
        "{team_problems:?} {over_problems:?}"
    );
    for p in team_problems.iter().chain(&over_problems) {
        let shown = p.to_string();
        assert!(!shown.contains("s3cr3t") && !shown.contains(FNR), "{shown}");
    }
}

/// Scenario: team files that try to reach past their namespace or weaken
/// masking, one with a bad glob, and a good one beside them.
/// Guarantees: each bad file is left out whole (none of its rules apply,
/// even its valid ones) with its problems named `file:key.path`; the good
/// file and the platform config load.
#[test]
fn bad_team_files_are_left_out_whole_and_the_rest_load() {
    let teams = [
        (
            "sneaky",
            json!({"match": {"k8s.namespace.name": "team-b"}, "noise": {"extra_globs": ["*"]}}),
        ),
        ("unmask", json!({"noise": {"extra_globs": ["/a"]}, "mask": {"enabled": false}})),
        ("narrow", json!({"mask": {"scope": {"fields": ["span-name"]}}})),
        ("broken", json!({"noise": {"extra_globs": ["/ok", "[unclosed"]}})),
        ("good", json!({"noise": {"extra_globs": ["/ping"]}})),
    ];
    let cfg = with_teams(json!({}), &teams);
    let problems = only_good_loads(&cfg);
    for want in [
        "teams/sneaky.yaml:match",
        "teams/unmask.yaml:mask.enabled",
        "teams/narrow.yaml:mask.scope",
        "teams/broken.yaml:noise.extra_globs[1]",
    ] {
        assert!(problems.iter().any(|p| p == want), "no problem {want}: {problems:?}");
    }
    let req = batch(vec![
        ("broken", "api", vec![server(1, "/ok", &[])]),
        ("unmask", "api", vec![server(2, "/a", &[("db.statement", FNR)])]),
        ("good", "api", vec![server(3, "/ping", &[])]),
    ]);
    let p = Processor::new(&cfg.to_string()).unwrap();
    let out = p.process(&req.encode_to_vec()).unwrap();
    assert_eq!(out.stats.spans_dropped, 1, "only the good team's rule applies");
    assert!(!String::from_utf8_lossy(&out.batch).contains(FNR), "a team file unmasked a value");
}

/// Processes one span with the attributes `more` for team-a's resource and
/// one for team-b's with `cfg`; returns the stats and the text of each
/// resource's spans, team-a's first.
fn two_teams(cfg: &Json, more: &[(&str, &str)]) -> (Stats, String, String) {
    let req = batch(vec![
        ("team-a", "api", vec![server(1, "/a", more)]),
        ("team-b", "api", vec![server(2, "/b", more)]),
    ]);
    let p = Processor::new(&cfg.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let out = p.process(&req.encode_to_vec()).expect("processes");
    let decoded = ExportTraceServiceRequest::decode(out.batch.as_slice()).expect("decodes");
    let text = |i: usize| {
        let r = &decoded.resource_spans[i];
        let ns = &r.resource.as_ref().expect("resource").attributes[0];
        assert_eq!(ns.key, "k8s.namespace.name");
        format!("{:?} {:?}", ns.value, r.scope_spans)
    };
    let (a, b) = (text(0), text(1));
    assert!(a.contains("team-a") && b.contains("team-b"), "{a}\n{b}");
    (out.stats, a, b)
}

fn masked_count(stats: &Stats, detector: &str) -> u64 {
    stats.masked_by_detector.iter().find(|c| c.name == detector).map_or(0, |c| c.value)
}

/// Scenario: team-a's file adds the `email` built-in and a pattern of its
/// own; team-b's resource carries the same values; the platform replaces
/// with labels. Once with noise rules on, once with noise off (the team is
/// then read from the resource by the mask alone).
/// Guarantees: team-a's email and customer id become `[email]` and
/// `[customer-id]`, counted under those names; team-b's pass byte for byte;
/// personal numbers are masked in both.
#[test]
fn a_team_adds_detectors_for_its_own_resources_only() {
    let team = json!({"mask": {
        "detectors": ["email"],
        "patterns": [{"name": "customer-id", "regex": "CUST-[A-Z]{4}"}],
    }});
    for noise in [json!({}), json!({"enabled": false})] {
        let base = json!({"noise": noise, "mask": {"replacement": "label"}});
        let cfg = with_teams(base, &[("team-a", team.clone())]);
        let more = [
            ("enduser.email", "kari@example.no"),
            ("note", "order CUST-ABCD"),
            ("db.statement", FNR),
        ];
        let (stats, a, b) = two_teams(&cfg, &more);
        let (a, b) = (&a, &b);
        for (what, text) in [("team-a", a), ("team-b", b)] {
            assert!(!text.contains(FNR), "{noise}: {what} kept a personal number: {text}");
        }
        assert!(a.contains("[email]") && a.contains("order [customer-id]"), "{noise}: {a}");
        assert!(!a.contains("kari@example.no") && !a.contains("CUST-ABCD"), "{noise}: {a}");
        assert!(b.contains("kari@example.no") && b.contains("CUST-ABCD"), "{noise}: {b}");
        assert_eq!(masked_count(&stats, "email"), 1, "{noise}: {stats:?}");
        assert_eq!(masked_count(&stats, "customer-id"), 1, "{noise}: {stats:?}");
    }
}

/// Scenario: the platform scans only `db.*` keys; team-a's file adds
/// `app.customer.*`; both teams send a personal number under each key,
/// and the platform already turns `email` on with its own label.
/// Guarantees: team-a's `app.customer.id` is masked, team-b's is not (out
/// of the platform's scope); `db.statement` is masked for both; a team
/// listing a built-in the platform turns on keeps the platform's label.
#[test]
fn a_team_widens_a_narrowed_key_scope_with_extra_keys() {
    let base = json!({"mask": {
        "replacement": "label",
        "scope": {"keys": ["db.*"]},
        "detectors": [{"name": "email", "label": "[platform-email]", "keys": ["*"]}],
    }});
    let team = json!({"mask": {"extra_keys": ["app.customer.*"], "detectors": ["email"]}});
    let cfg = with_teams(base, &[("team-a", team)]);
    let more = [("app.customer.id", FNR), ("db.statement", FNR), ("contact", "kari@example.no")];
    let (_, a, b) = two_teams(&cfg, &more);
    let (a, b) = (&a, &b);
    assert!(!a.contains(FNR), "team-a kept a number: {a}");
    assert_eq!(b.matches(FNR).count(), 1, "team-b: only app.customer.id is out of scope: {b}");
    for text in [a, b] {
        assert!(text.contains("[platform-email]") && !text.contains("kari@"), "{text}");
    }
}

/// Scenario: team files whose `mask` tries to change how masking works:
/// a replacement or label on a detector, the pseudonym key, an unknown
/// key, a bad regex and a bad key glob.
/// Guarantees: each is a problem at `file:mask...`, the file is left out
/// whole, and the platform config loads.
#[test]
fn a_team_mask_that_changes_how_masking_works_is_refused() {
    let teams = [
        ("relabel", json!({"mask": {"detectors": [{"name": "email", "replacement": "stars"}]}})),
        ("label", json!({"mask": {"patterns": [{"name": "x", "regex": "a", "label": "[x]"}]}})),
        ("key", json!({"mask": {"hmac": {"key_id": "k"}}})),
        ("typo", json!({"mask": {"extra_key": ["a.*"]}})),
        ("regex", json!({"mask": {"patterns": [{"name": "x", "regex": "(unclosed"}]}})),
        ("glob", json!({"mask": {"extra_keys": ["[unclosed"]}})),
        ("good", json!({"mask": {"detectors": ["payment-card"]}})),
    ];
    let cfg = with_teams(json!({}), &teams);
    let problems = only_good_loads(&cfg);
    for want in [
        "teams/relabel.yaml:mask.detectors[0].replacement",
        "teams/label.yaml:mask.patterns[0].label",
        "teams/key.yaml:mask.hmac",
        "teams/typo.yaml:mask.extra_key",
        "teams/regex.yaml:mask.patterns[0].regex",
        "teams/glob.yaml:mask.extra_keys[0]",
    ] {
        assert!(problems.iter().any(|p| p == want), "no problem {want}: {problems:?}");
    }
}

/// Scenario: a good and a bad team file, with `teams.strict` off and on.
/// Guarantees: off, the config loads without the bad file; on, the bad
/// file's problems fail the whole config, each named `file:key.path`, so a
/// host can tell which team files failed.
#[test]
fn strict_teams_fail_the_config_on_a_team_problem() {
    let teams = [
        ("bad", json!({"mask": {"enabled": false}})),
        ("good", json!({"noise": {"extra_globs": ["/ping"]}})),
    ];
    let mut cfg = with_teams(json!({}), &teams);
    assert_eq!(only_good_loads(&cfg), ["teams/bad.yaml:mask.enabled"]);
    cfg["teams"]["strict"] = json!(true);
    let problems = Config::from_json(&cfg.to_string()).expect_err("strict refuses the config");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["teams/bad.yaml:mask.enabled"]);
}

/// Scenario: the platform turns on 60 patterns; one team adds 5 more,
/// another 4.
/// Guarantees: the first passes the 64-detector bound and is left out
/// with a problem that says so; the second loads and its patterns mask.
#[test]
fn a_team_passing_the_detector_bound_is_left_out() {
    let name = |i: usize| -> String {
        let letters: String =
            [i / 26, i % 26].iter().map(|d| char::from(b'a' + *d as u8)).collect();
        format!("p-{letters}")
    };
    let platform: Vec<Json> =
        (0..60).map(|i| json!({"name": name(i), "regex": format!("Q{}Q", name(i))})).collect();
    let extra = |n: usize| -> Json {
        let patterns: Vec<Json> =
            (0..n).map(|i| json!({"name": name(100 + i), "regex": "ZZTOP"})).collect();
        json!({"mask": {"patterns": patterns}})
    };
    let cfg = with_teams(
        json!({"mask": {"patterns": platform}}),
        &[("over", extra(5)), ("under", extra(4))],
    );
    let parsed = Config::from_json(&cfg.to_string()).expect("the platform config loads");
    let loaded: Vec<&str> = parsed.teams.files.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(loaded, ["under"]);
    let p = &parsed.teams.problems;
    assert!(p.iter().any(|p| p.path == "teams/over.yaml:mask" && p.reason.contains("65")), "{p:?}");
    let req = batch(vec![("under", "api", vec![server(1, "/a", &[("note", "ZZTOP")])])]);
    let out = Processor::new(&cfg.to_string()).unwrap().process(&req.encode_to_vec()).unwrap();
    assert!(!String::from_utf8_lossy(&out.batch).contains("ZZTOP"));
}

/// Scenario: 500 team files and 50 overrides, and a batch with a resource
/// of each of 500 namespaces, each with a path only its own team drops and
/// a path only the next team drops.
/// Guarantees: each resource's spans are judged by its own team: exactly
/// the 500 own paths go, each counted under its team's file.
#[test]
fn five_hundred_teams_each_judge_their_own_resources() {
    let teams: Vec<(String, Json)> = (0..500)
        .map(|i| (format!("team-{i}"), json!({"noise": {"extra_globs": [format!("/only-{i}")]}})))
        .collect();
    let refs: Vec<(&str, Json)> = teams.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let overrides: Vec<Json> = (0..50)
        .map(|i| json!({"match": {"service.name": format!("svc-{i}")}, "noise": {"extra_globs": [format!("/o-{i}")]}}))
        .collect();
    let cfg = with_teams(json!({"overrides": overrides}), &refs);
    let names: Vec<String> = (0..500).map(|i| format!("team-{i}")).collect();
    let req = batch(
        (0..500)
            .map(|i| {
                let spans = vec![
                    server(1, &format!("/only-{i}"), &[]),
                    server(2, &format!("/only-{}", (i + 1) % 500), &[]),
                ];
                (names[i].as_str(), "svc", spans)
            })
            .collect(),
    );
    let (kept_names, stats) = kept(&cfg, &req);
    assert_eq!(kept_names.len(), 500);
    assert_eq!(stats.spans_dropped, 500);
    assert_eq!(rule_count(&stats, "teams/team-7.yaml /only-7"), 1);
    for (i, name) in kept_names.iter().enumerate() {
        assert_eq!(name, &format!("GET /only-{}", (i + 1) % 500), "resource {i}");
    }
}

/// Scenario: a team file with one noise rule past the bound, and a config
/// with one team file past the bound on team files.
/// Guarantees: each is a problem of that file alone, which is left out;
/// the others load, and a processor drops nothing by the file left out.
#[test]
fn team_files_past_the_bounds_are_left_out() {
    use tracescrub_processor::teams::{MAX_TEAM_RULES, MAX_TEAMS};
    let globs: Vec<String> = (0..=MAX_TEAM_RULES).map(|i| format!("/r{i}")).collect();
    let cfg = with_teams(
        json!({}),
        &[("big", json!({"noise": {"extra_globs": globs}})), ("good", json!({}))],
    );
    let problems = only_good_loads(&cfg);
    assert_eq!(problems, ["teams/big.yaml:"], "the file over the rule bound");

    // Names sort as numbers do: the last one is past the bound.
    let names: Vec<String> = (0..=MAX_TEAMS).map(|i| format!("t{i:06}")).collect();
    let last = names.last().expect("one past the bound");
    let files: serde_json::Map<String, Json> = names
        .iter()
        .map(|n| (n.clone(), json!({"file": format!("teams/{n}.yaml"), "doc": {"noise": {"extra_globs": ["/x"]}}})))
        .collect();
    let cfg = json!({"version": 2, "teams": {"dir": "teams/", "files": files}});
    let parsed = Config::from_json(&cfg.to_string()).expect("the platform config loads");
    assert_eq!(parsed.teams.files.len(), MAX_TEAMS);
    let paths: Vec<&str> = parsed.teams.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, [format!("teams/{last}.yaml:")]);
    let req = batch(vec![
        (last.as_str(), "api", vec![server(1, "/x", &[])]),
        ("t000000", "api", vec![server(2, "/x", &[])]),
    ]);
    let (kept_names, _) = kept(&cfg, &req);
    assert_eq!(kept_names, ["GET /x"], "the file past the bound drops nothing");
}

/// Scenario: random team files, some with problems (a key a team may not
/// write, a bad glob, masking turned off) and some adding masking, over
/// batches whose resources come in random namespace order; each batch goes
/// to one processor that reads team files as their namespaces first come
/// and one that read them all up front.
/// Guarantees: both give the same bytes and the same stats, rule counts in
/// the same order: when a file is read changes nothing a batch shows.
#[test]
fn team_files_read_late_act_as_read_up_front() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    let file = (layer(), proptest::option::of(layer()), 0..6u8);
    let files = prop::collection::vec(file, 4);
    let order = prop::collection::vec((0..4usize, any::<bool>()), 1..12);
    runner
        .run(&(files, prop::collection::vec(order, 1..4)), |(files, batches)| {
            let teams: Vec<(String, Json)> = files
                .iter()
                .enumerate()
                .map(|(i, (noise, service, kind))| {
                    let mut doc = json!({"noise": noise});
                    if let Some(s) = service {
                        doc["services"] = json!({"svc-*": {"noise": s}});
                    }
                    match kind {
                        0 => doc["match"] = json!({"k8s.namespace.name": "ns-0"}),
                        1 => doc["noise"]["extra_globs"] = json!(["[bad"]),
                        2 => doc["mask"] = json!({"enabled": false}),
                        3 => doc["mask"] = json!({"extra_keys": ["*"], "detectors": ["email"]}),
                        _ => {}
                    }
                    (format!("ns-{i}"), doc)
                })
                .collect();
            let refs: Vec<(&str, Json)> =
                teams.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
            let cfg = with_teams(json!({"noise": {"rules": [{"span_name": "GET /a*"}]}}), &refs)
                .to_string();
            let late = Processor::new(&cfg).unwrap();
            let up_front = Processor::from_config(Config::from_json(&cfg).unwrap()).unwrap();
            for order in &batches {
                let names = ["ns-0", "ns-1", "ns-2", "ns-3"];
                let req = batch(
                    order
                        .iter()
                        .enumerate()
                        .map(|(i, (ns, svc))| {
                            let id = i as u8 + 1;
                            let spans = vec![
                                server(id, "/a/b", &[("enduser.id", FNR), ("mail", "a@b.no")]),
                                server(id + 100, "/ab", &[]),
                            ];
                            (names[*ns], if *svc { "svc-1" } else { "api" }, spans)
                        })
                        .collect(),
                );
                let bytes = req.encode_to_vec();
                let out = late.process(&bytes).unwrap();
                // Config order: the platform's rules, then the team files' by name.
                let order: Vec<String> = out
                    .stats
                    .dropped_by_rule
                    .iter()
                    .map(|c| c.name.split(' ').next().unwrap_or_default().to_owned())
                    .collect();
                let mut sorted = order.clone();
                sorted.sort_by_key(|n| (n.starts_with("teams/"), n.clone()));
                prop_assert_eq!(&order, &sorted);
                prop_assert_eq!(out, up_front.process(&bytes).unwrap());
            }
            Ok(())
        })
        .unwrap();
}

/// Scenario: paths written the ways frameworks write them.
/// Guarantees: each is matched as its normalised form (the default globs
/// catch `/isAlive/`, `//isAlive`, `/isAlive;jsessionid=X`, `/is%41live`),
/// in version 1 as in version 2.
#[test]
fn paths_are_normalised_before_matching() {
    let paths = ["/isAlive/", "//app//isAlive", "/isAlive;jsessionid=AB12", "/is%41live"];
    for config in [json!({}), json!({"version": 2})] {
        let spans = paths.iter().enumerate().map(|(i, p)| server(i as u8 + 1, p, &[])).collect();
        let (names, _) = kept(&config, &batch(vec![("ns", "svc", spans)]));
        assert!(names.is_empty(), "{config}: kept {names:?}");
    }
}

fn glob() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("/*".to_owned()),
        Just("*/a*".to_owned()),
        "[a-z/*]{1,6}",
    ]
}

fn layer() -> impl Strategy<Value = Json> {
    (prop::collection::vec(glob(), 0..3), prop::collection::vec(glob(), 0..3))
        .prop_map(|(extra, keep)| json!({"extra_globs": extra, "keep_globs": keep}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Scenario: random team files (globs and keep globs, service
    /// entries, some with a `mask` section that turns masking off or adds
    /// detectors) over a batch of three
    /// namespaces whose spans carry personal numbers in attributes, names
    /// and paths.
    /// Guarantees: every number the default config masks is masked with
    /// the team files too: no team file unmasks a value, whatever it says.
    #[test]
    fn no_team_file_unmasks_a_value(
        files in prop::collection::vec((0..3usize, layer(), proptest::option::of(layer()), 0..4u8), 0..4),
    ) {
        let teams: Vec<(String, Json)> = files
            .iter()
            .map(|(ns, noise, service, mask)| {
                let mut doc = json!({"noise": noise});
                if let Some(s) = service {
                    doc["services"] = json!({"*": {"noise": s}});
                }
                // Refused (turns masking off), or additions of each kind.
                match mask {
                    0 => doc["mask"] = json!({"enabled": false}),
                    1 => doc["mask"] = json!({"detectors": ["email", "account-number"]}),
                    2 => doc["mask"] = json!({"patterns": [{"name": "any", "regex": "[0-9]+"}], "extra_keys": ["*"]}),
                    _ => {}
                }
                (format!("ns-{ns}"), doc)
            })
            .collect();
        let refs: Vec<(&str, Json)> = teams.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        let cfg = with_teams(json!({}), &refs);
        let req = batch(
            (0..3)
                .map(|i| {
                    let ns = ["ns-0", "ns-1", "ns-2"][i];
                    let spans = vec![
                        server(1, &format!("/a/{FNR}"), &[("db.statement", &format!("id = {FNR}"))]),
                        server(2, "/b", &[("enduser.id", FNR)]),
                    ];
                    (ns, "svc", spans)
                })
                .collect(),
        );
        let p = Processor::new(&cfg.to_string()).unwrap();
        let out = p.process(&req.encode_to_vec()).unwrap();
        let text = String::from_utf8_lossy(&out.batch);
        prop_assert!(!text.contains(FNR), "a number survived with team files {}", cfg);
    }
}

// ---------------------------------------------------------------------------
// The layered verdict against a naive reading of the precedence

/// A layer as the precedence reads it: its source, keep and drop globs,
/// and its rules with their sources.
struct NaiveLayer {
    source: String,
    keep: Vec<String>,
    drop: Vec<String>,
    /// The default globs are named by themselves, other layers' by source.
    bare_names: bool,
    rules: Vec<(String, NoiseRule)>,
}

impl NaiveLayer {
    fn of(l: &NoiseLayer) -> NaiveLayer {
        NaiveLayer {
            source: l.source.clone(),
            keep: l.keep_globs.clone(),
            drop: l.extra_globs.clone(),
            bare_names: false,
            rules: l.rules.iter().map(|r| (l.source.clone(), r.clone())).collect(),
        }
    }
}

fn matches(glob: &str, text: &[u8], case_sensitive: bool) -> bool {
    GlobList::new(&[glob.to_owned()], case_sensitive).unwrap().is_match(text, &mut Vec::new())
}

/// The chain for a resource, written straight from the documented order:
/// the team's `services` entry, the team file, the first matching override
/// (before both when `final`), the defaults.
/// `ns` or `svc` empty: the resource has no such attribute.
fn naive_chain(cfg: &Config, ns: &str, svc: &str) -> Vec<NaiveLayer> {
    let (ns, svc) = (Some(ns).filter(|s| !s.is_empty()), Some(svc).filter(|s| !s.is_empty()));
    let team = ns.and_then(|ns| cfg.teams.files.iter().find(|t| t.name == ns));
    let service = team.and_then(|t| {
        let svc = svc?;
        t.services.iter().find(|(g, _)| matches(g, svc.as_bytes(), true)).map(|(_, l)| l)
    });
    let value = |key: &str| match key {
        "k8s.namespace.name" => ns,
        "service.name" => svc,
        _ => None,
    };
    let over = cfg.overrides.iter().find(|o| {
        o.matches.iter().all(|(k, g)| value(k).is_some_and(|v| matches(g, v.as_bytes(), true)))
    });
    let mut chain = Vec::new();
    if let Some(o) = over.filter(|o| o.is_final) {
        chain.push(NaiveLayer::of(&o.noise));
    }
    chain.extend(service.map(NaiveLayer::of));
    chain.extend(team.map(|t| NaiveLayer::of(&t.noise)));
    if let Some(o) = over.filter(|o| !o.is_final) {
        chain.push(NaiveLayer::of(&o.noise));
    }
    let mut rules: Vec<(String, NoiseRule)> =
        cfg.noise.rules.iter().map(|r| ("noise.rules".to_owned(), r.clone())).collect();
    for p in &cfg.noise.presets {
        rules.extend(preset_rules(p).unwrap().into_iter().map(|r| (format!("preset {p}"), r)));
    }
    chain.push(NaiveLayer {
        source: "noise".into(),
        keep: Vec::new(),
        drop: cfg.noise.globs.clone(),
        bare_names: true,
        rules,
    });
    chain
}

/// The rule that drops a span, by name, or `None` when it is kept: in the
/// first layer that decides, a keep glob on any path, then the first path
/// a drop glob matches (the first such glob), then a span-name rule, then
/// an attribute rule, each in the order written.
fn naive_verdict(cfg: &Config, chain: &[NaiveLayer], span: &Span) -> Option<String> {
    let mut paths: Vec<Vec<u8>> = Vec::new();
    for a in &span.attributes {
        if let Some(Value::StringValue(v)) = a.value.as_ref().and_then(|v| v.value.as_ref())
            && cfg.noise.path_attributes.contains(&a.key)
        {
            paths.push(path::from_attribute(v.as_bytes()).to_vec());
        }
    }
    if cfg.noise.span_name
        && span.kind == SpanKind::Server as i32
        && let Some(p) = path::from_span_name(span.name.as_bytes())
    {
        paths.push(p.to_vec());
    }
    let paths: Vec<Vec<u8>> = paths
        .into_iter()
        .map(|p| {
            let mut out = Vec::new();
            path::normalise(&p, &mut out);
            out
        })
        .collect();
    let cs = cfg.noise.case_sensitive;
    for layer in chain {
        if layer.keep.iter().any(|g| paths.iter().any(|p| matches(g, p, cs))) {
            return None;
        }
        for p in &paths {
            if let Some(g) = layer.drop.iter().find(|g| matches(g, p, cs)) {
                return Some(if layer.bare_names {
                    g.clone()
                } else {
                    format!("{} {g}", layer.source)
                });
            }
        }
        let named = |(source, rule): &(String, NoiseRule)| {
            let [what, glob] = rule.name_parts();
            format!("{source} {what} {glob}")
        };
        for r in &layer.rules {
            if let NoiseRule::SpanName(g) = &r.1
                && matches(g, span.name.as_bytes(), true)
            {
                return Some(named(r));
            }
        }
        for r in &layer.rules {
            if let NoiseRule::Attribute { key, glob } = &r.1
                && span.attributes.iter().any(|a| {
                    a.key == *key
                        && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(Value::StringValue(v)) if matches(glob, v.as_bytes(), true))
                })
            {
                return Some(named(r));
            }
        }
    }
    None
}

fn small_glob() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_owned()), Just("/a*".to_owned()), Just("*b".to_owned()), "[ab/*]{1,4}"]
}

fn rule() -> impl Strategy<Value = Json> {
    prop_oneof![
        small_glob().prop_map(|g| json!({"span_name": g})),
        (prop::sample::select(vec!["k1", "k2", "url.path"]), small_glob())
            .prop_map(|(k, g)| json!({"attribute": k, "glob": g})),
    ]
}

fn rules_layer() -> impl Strategy<Value = Json> {
    (
        prop::collection::vec(small_glob(), 0..3),
        prop::collection::vec(small_glob(), 0..2),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(extra, keep, rules)| {
            json!({"extra_globs": extra, "keep_globs": keep, "rules": rules})
        })
}

fn override_entry() -> impl Strategy<Value = Json> {
    (
        prop::sample::select(vec!["service.name", "k8s.namespace.name"]),
        prop::sample::select(vec!["svc-a", "svc-*", "*", "ns-0"]),
        any::<bool>(),
        rules_layer(),
    )
        .prop_map(
            |(key, glob, fin, noise)| json!({"match": {key: glob}, "final": fin, "noise": noise}),
        )
}

/// A span with paths, a name and rule attributes from small alphabets, so
/// that globs and values often meet.
fn random_span() -> impl Strategy<Value = (bool, String, Vec<(String, String)>)> {
    (
        any::<bool>(),
        prop_oneof![Just("GET /a".to_owned()), Just("GET /ab/".to_owned()), "[ab/]{0,3}"],
        prop::collection::vec(
            (prop::sample::select(vec!["url.path", "http.target", "k1", "k2"]), "/?[ab/]{0,3}")
                .prop_map(|(k, v)| (k.to_owned(), v)),
            0..4,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Scenario: random version-2 configs (default globs, rules and
    /// presets; overrides on either key, some `final`; a team file with
    /// `services` entries; every layer with keep globs, drop globs and both
    /// rule kinds) over up to eight resources in any order (two namespaces
    /// or none, two services or none, repeats back to back too) of random root spans
    /// whose paths, names and attributes come from small alphabets.
    /// Guarantees: the engine keeps exactly the spans the naive reading of
    /// the documented precedence keeps, and counts each drop under the rule
    /// that reading names.
    #[test]
    fn layered_verdicts_follow_the_documented_precedence(
        globs in prop::collection::vec(small_glob(), 0..3),
        main_rules in prop::collection::vec(rule(), 0..3),
        presets in any::<bool>(),
        overrides in prop::collection::vec(override_entry(), 0..3),
        team in rules_layer(),
        services in prop::collection::vec((prop::sample::select(vec!["svc-a", "svc-*", "*"]), rules_layer()), 0..3),
        order in prop::collection::vec(0..6usize, 1..9),
        spans in prop::collection::vec((0..8usize, random_span()), 1..24),
    ) {
        let mut doc = json!({"noise": {"globs": globs, "rules": main_rules}, "overrides": overrides});
        if !presets {
            doc["noise"]["presets"] = json!([]);
        }
        let services: serde_json::Map<String, Json> =
            services.into_iter().map(|(g, l)| (g.to_owned(), json!({"noise": l}))).collect();
        let cfg_json = with_teams(doc, &[("ns-0", json!({"noise": team, "services": services}))]);
        let cfg = Config::from_json(&cfg_json.to_string()).unwrap();
        prop_assume!(cfg.teams.problems.is_empty());
        // The batch's resources, in a random order that may repeat one
        // (back to back, too: the pods of one service). An empty namespace
        // or service: the resource has no such attribute.
        let kinds = [("ns-0", "svc-a"), ("ns-0", "svc-b"), ("ns-1", "svc-a"), ("ns-1", "svc-b"), ("ns-0", ""), ("", "svc-a")];
        let resources: Vec<(&str, &str)> = order.iter().map(|&k| kinds[k]).collect();
        let mut per_resource: Vec<Vec<Span>> = vec![Vec::new(); resources.len()];
        let mut expected_kept = Vec::new();
        let mut expected_rules = std::collections::BTreeMap::<String, u64>::new();
        for (i, (r, (server_kind, name, attrs))) in spans.iter().enumerate() {
            let r = r % resources.len();
            let id = i as u8 + 1;
            let span = Span {
                trace_id: vec![id; 16],
                span_id: vec![id; 8],
                name: name.clone(),
                kind: if *server_kind { SpanKind::Server } else { SpanKind::Internal } as i32,
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            };
            let chain = naive_chain(&cfg, resources[r].0, resources[r].1);
            match naive_verdict(&cfg, &chain, &span) {
                Some(rule) => *expected_rules.entry(rule).or_default() += 1,
                None => expected_kept.push(vec![id; 8]),
            }
            per_resource[r].push(span);
        }
        let mut req = batch(
            resources.iter().zip(per_resource).map(|((ns, svc), spans)| (*ns, *svc, spans)).collect(),
        );
        for rs in &mut req.resource_spans {
            if let Some(r) = &mut rs.resource {
                r.attributes.retain(|a| a.value != kv("", "").value);
            }
        }
        let p = Processor::new(&cfg_json.to_string()).unwrap();
        let out = p.process(&req.encode_to_vec()).unwrap();
        let mut kept: Vec<Vec<u8>> = spans_of(&out.batch).into_iter().map(|s| s.span_id).collect();
        kept.sort();
        expected_kept.sort();
        prop_assert_eq!(kept, expected_kept);
        let counted: std::collections::BTreeMap<String, u64> = out
            .stats
            .dropped_by_rule
            .iter()
            .filter(|c| c.value > 0)
            .map(|c| (c.name.clone(), c.value))
            .collect();
        prop_assert_eq!(counted, expected_rules);
    }
}
