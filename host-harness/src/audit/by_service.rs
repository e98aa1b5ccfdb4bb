//! `audit --by service`: what was dropped and masked, grouped by the
//! resource it came from, as (namespace, `service.name`), over every input.
//!
//! The component names each finding's `ResourceSpans` by its index in the
//! batch (`explain-located`); this module reads those resources'
//! attributes from the batch that went in, tallies the findings per
//! service, and says which file each rule was written in. Every text it
//! reports (namespaces, service names, rules, files, detector names) goes
//! through [`redact`], the engine's own redaction of quoted text: a
//! resource attribute can hold a personal number as well as a span can.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use serde::Serialize;
use tracescrub_processor::teams::DEFAULT_TEAM_KEY;
use tracescrub_processor::{Config, Finding, redact};

/// Shown for a resource without a `service.name`.
pub const NO_SERVICE: &str = "(no service.name)";
/// Shown for a resource without the namespace attribute.
pub const NO_NAMESPACE: &str = "-";
/// Shown for values masked in the request's own unknown fields, outside
/// every resource.
pub const OUTSIDE: &str = "(outside any resource)";
/// Shown for a resource the host could not read (a batch whose resource
/// attributes do not decode, or an index past its resources).
pub const UNREADABLE: &str = "(resource not readable)";

/// A resource as `--by service` groups it, both parts redacted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceKey {
    /// The resource's `teams.key` attribute, or [`NO_NAMESPACE`].
    pub namespace: String,
    /// Its `service.name`, or [`NO_SERVICE`].
    pub service: String,
}

impl ServiceKey {
    /// The key of a resource with these attribute values.
    pub fn new(namespace: Option<&[u8]>, service: Option<&[u8]>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.map_or_else(|| NO_NAMESPACE.to_owned(), redact),
            service: service.map_or_else(|| NO_SERVICE.to_owned(), redact),
        }
    }

    fn placeholder(service: &str) -> ServiceKey {
        ServiceKey { namespace: NO_NAMESPACE.to_owned(), service: service.to_owned() }
    }
}

/// What `--by service` needs from the config: the resource attribute that
/// names a namespace, and where each rule was written.
#[derive(Debug, Clone)]
pub struct Grouping {
    /// `teams.key` (version 2), else `k8s.namespace.name`.
    pub team_key: String,
    /// Each team file's name as it starts its rules' names
    /// (`teams/team-a.yaml`), and the file as a path from here.
    team_files: Vec<(String, String)>,
    /// The platform config, where every other rule was written.
    config_file: String,
}

impl Grouping {
    /// From the config document the component was given (team files
    /// attached) and the config file's path (`None`: the embedded default).
    pub fn new(config_json: &str, config_path: Option<&Path>) -> Grouping {
        let team_key = Config::from_json(config_json)
            .map_or_else(|_| DEFAULT_TEAM_KEY.to_owned(), |c| c.teams.key);
        // A team file's rules are named after the file as the host passed
        // it in (`teams.files.<name>.file`: `teams.dir` as written, then the
        // file name), relative to the config file's directory.
        let doc: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
        let base = config_path.and_then(Path::parent).unwrap_or(Path::new(""));
        let team_files = doc
            .pointer("/teams/files")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
            // A file the host could not read names no rule.
            .filter(|(_, entry)| entry.get("error").is_none())
            .filter_map(|(_, entry)| entry.get("file")?.as_str())
            // Rule names come redacted from the processor; so are these.
            .map(|source| (redact(source.as_bytes()), base.join(source).display().to_string()))
            .collect();
        let config_file = config_path
            .map_or_else(|| "(embedded default config)".to_owned(), |p| p.display().to_string());
        Grouping { team_key, team_files, config_file }
    }

    /// The file a rule was written in, by its name (as in the stats): a
    /// team file's rules are named `<its file> <glob or condition>`, the
    /// rest are the platform config's (`noise.globs`, `noise.rules`,
    /// `noise.presets`, `overrides[i]`).
    pub fn file_of(&self, rule: &str) -> &str {
        self.team_files
            .iter()
            .find(|(source, _)| {
                rule.strip_prefix(source.as_str()).is_some_and(|r| r.starts_with(' '))
            })
            .map_or(&self.config_file, |(_, file)| file)
    }
}

/// The request with only what grouping reads: each resource's attributes,
/// strings as bytes, so a value that is not UTF-8 still names its resource
/// (lossily) and spans are skipped, not decoded.
#[derive(Clone, PartialEq, Message)]
struct Resources {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceOnly>,
}

/// `ResourceSpans` with its `resource` only.
#[derive(Clone, PartialEq, Message)]
struct ResourceOnly {
    #[prost(message, optional, tag = "1")]
    resource: Option<Attributes>,
}

/// `Resource` with its `attributes` only.
#[derive(Clone, PartialEq, Message)]
struct Attributes {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<Attribute>,
}

/// `KeyValue`, with the string and int cases of its value.
#[derive(Clone, PartialEq, Message)]
struct Attribute {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    value: Option<Scalar>,
}

/// `AnyValue`'s `string_value` (1) and `int_value` (3).
#[derive(Clone, PartialEq, Message)]
struct Scalar {
    #[prost(bytes = "vec", optional, tag = "1")]
    string: Option<Vec<u8>>,
    #[prost(int64, optional, tag = "3")]
    int: Option<i64>,
}

/// The key of each `ResourceSpans` of an OTLP batch, in batch order: its
/// `team_key` and `service.name` attributes (a string, or an int written
/// out; the last of a repeated key, as the engine reads it). `None` when
/// the batch does not decode.
pub fn resource_keys(batch: &[u8], team_key: &str) -> Option<Vec<ServiceKey>> {
    let decoded = Resources::decode(batch).ok()?;
    let keys = decoded.resource_spans.iter().map(|rs| {
        let attributes = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let value = |key: &str| -> Option<Vec<u8>> {
            let v = attributes.iter().rev().find(|a| a.key == key.as_bytes())?.value.as_ref()?;
            v.string.clone().or_else(|| v.int.map(|i| i.to_string().into_bytes()))
        };
        ServiceKey::new(value(team_key).as_deref(), value("service.name").as_deref())
    });
    Some(keys.collect())
}

/// What one service had done to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    /// Noisy spans dropped, by rule name (unredacted until reported).
    dropped_by_rule: BTreeMap<String, u64>,
    dropped_descendants: u64,
    /// Values masked, by (detector, field kind).
    masked: BTreeMap<(String, &'static str), u64>,
}

/// Findings tallied per service, over any number of batches and files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByService {
    services: BTreeMap<ServiceKey, Tally>,
}

impl ByService {
    /// Adds one batch's findings. `keys` are the batch's resources'
    /// ([`resource_keys`]; `None` when they could not be read).
    pub fn add(&mut self, keys: Option<&[ServiceKey]>, findings: &[Finding]) {
        for f in findings {
            let key = match (f.resource(), keys) {
                (None, _) => ServiceKey::placeholder(OUTSIDE),
                (Some(i), Some(keys)) => keys
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| ServiceKey::placeholder(UNREADABLE)),
                (Some(_), None) => ServiceKey::placeholder(UNREADABLE),
            };
            let tally = self.services.entry(key).or_default();
            match f {
                Finding::Dropped { rule: Some(rule), .. } => {
                    *tally.dropped_by_rule.entry(rule.clone()).or_default() += 1;
                }
                Finding::Dropped { rule: None, .. } => tally.dropped_descendants += 1,
                Finding::Masked { field, detector, .. } => {
                    *tally.masked.entry((detector.clone(), field.name())).or_default() += 1;
                }
            }
        }
    }

    /// Adds another tally (another file's) into this one.
    pub fn merge(&mut self, other: ByService) {
        for (key, t) in other.services {
            let tally = self.services.entry(key).or_default();
            for (rule, n) in t.dropped_by_rule {
                *tally.dropped_by_rule.entry(rule).or_default() += n;
            }
            tally.dropped_descendants += t.dropped_descendants;
            for (k, n) in t.masked {
                *tally.masked.entry(k).or_default() += n;
            }
        }
    }

    /// The report: services by namespace, then service name; in each, the
    /// rules that dropped most first, then the most masked, ties by name.
    pub fn report(&self, grouping: &Grouping) -> Vec<ServiceReport> {
        self.services
            .iter()
            .map(|(key, t)| {
                let mut dropped_by_rule: Vec<RuleCount> = t
                    .dropped_by_rule
                    .iter()
                    .map(|(rule, &spans)| RuleCount {
                        rule: redact(rule.as_bytes()),
                        file: redact(grouping.file_of(rule).as_bytes()),
                        spans,
                    })
                    .collect();
                dropped_by_rule.sort_by(|a, b| b.spans.cmp(&a.spans).then(a.rule.cmp(&b.rule)));
                let mut masked: Vec<MaskCount> = t
                    .masked
                    .iter()
                    .map(|((detector, field), &values)| MaskCount {
                        detector: redact(detector.as_bytes()),
                        field: (*field).to_owned(),
                        values,
                    })
                    .collect();
                masked.sort_by(|a, b| {
                    b.values
                        .cmp(&a.values)
                        .then(a.detector.cmp(&b.detector))
                        .then(a.field.cmp(&b.field))
                });
                let by_rule: u64 = dropped_by_rule.iter().map(|r| r.spans).sum();
                ServiceReport {
                    namespace: key.namespace.clone(),
                    service: key.service.clone(),
                    spans_dropped: by_rule + t.dropped_descendants,
                    dropped_by_rule,
                    dropped_descendants: t.dropped_descendants,
                    values_masked: masked.iter().map(|m| m.values).sum(),
                    masked,
                }
            })
            .collect()
    }
}

/// What was done to one service's spans, over every input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceReport {
    /// The namespace (the `teams.key` attribute), or [`NO_NAMESPACE`].
    pub namespace: String,
    /// The `service.name`, or [`NO_SERVICE`] (or [`OUTSIDE`],
    /// [`UNREADABLE`]).
    pub service: String,
    /// Spans dropped: by a rule, and as descendants.
    pub spans_dropped: u64,
    /// Noisy spans dropped, per rule.
    pub dropped_by_rule: Vec<RuleCount>,
    /// Spans dropped only because an ancestor in the same batch was noise.
    pub dropped_descendants: u64,
    /// Values masked.
    pub values_masked: u64,
    /// Values masked, per detector and field kind.
    pub masked: Vec<MaskCount>,
}

/// Spans one rule dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    /// The rule as the stats and metrics name it (a team file's rules start
    /// with the file, an override's with `overrides[i]`).
    pub rule: String,
    /// The file it was written in: the team file, or the platform config.
    pub file: String,
    /// Spans it dropped.
    pub spans: u64,
}

/// Values one detector masked in one kind of field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskCount {
    /// The detector (`fnr`, `d-number`, a pattern's name...).
    pub detector: String,
    /// The field kind (`span-attribute`, `resource-attribute`...).
    pub field: String,
    /// Values masked.
    pub values: u64,
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use tracescrub_processor::FieldKind;

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn string(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.into()))
    }

    fn batch(resources: Vec<Vec<KeyValue>>) -> Vec<u8> {
        let resource_spans = resources
            .into_iter()
            .map(|attributes| ResourceSpans {
                resource: Some(Resource { attributes, ..Default::default() }),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }.encode_to_vec()
    }

    fn key(namespace: &str, service: &str) -> ServiceKey {
        ServiceKey { namespace: namespace.into(), service: service.into() }
    }

    fn dropped(resource: u32, rule: Option<&str>) -> Finding {
        Finding::Dropped {
            resource,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            rule: rule.map(str::to_owned),
            path: String::new(),
        }
    }

    fn masked(resource: Option<u32>, field: FieldKind, detector: &str) -> Finding {
        Finding::Masked {
            resource,
            trace_id: Vec::new(),
            span_id: Vec::new(),
            field,
            key: String::new(),
            detector: detector.into(),
        }
    }

    /// Scenario: resources with and without each attribute, a custom team
    /// key, a repeated key, an int value and a value with a number in it.
    /// Guarantees: each resource is keyed by its own attributes, in batch
    /// order, with the placeholders for what is missing, the last of a
    /// repeated key, and no number shown.
    #[test]
    fn resource_keys_read_the_team_key_and_service_name() {
        /// The team key, each resource's attributes, the keys wanted.
        type Case = (&'static str, Vec<Vec<KeyValue>>, Vec<ServiceKey>);
        let cases: &[Case] = &[
            (
                "k8s.namespace.name",
                vec![
                    vec![
                        string("k8s.namespace.name", "team-a"),
                        string("service.name", "checkout"),
                    ],
                    vec![string("service.name", "billing")],
                    vec![string("k8s.namespace.name", "team-b")],
                    vec![],
                ],
                vec![
                    key("team-a", "checkout"),
                    key(NO_NAMESPACE, "billing"),
                    key("team-b", NO_SERVICE),
                    key(NO_NAMESPACE, NO_SERVICE),
                ],
            ),
            (
                "team",
                vec![vec![
                    string("k8s.namespace.name", "ignored"),
                    string("team", "old"),
                    string("team", "payments"),
                    kv("service.name", Value::IntValue(17053650260)),
                ]],
                vec![key("payments", "***********")],
            ),
            (
                "k8s.namespace.name",
                vec![vec![
                    string("k8s.namespace.name", "ns-010190 12138"),
                    string("service.name", "person-01019012138"),
                ]],
                vec![key("ns-****** *****", "person-***********")],
            ),
        ];
        for (team_key, resources, want) in cases {
            let got = resource_keys(&batch(resources.clone()), team_key).expect("decodes");
            assert_eq!(&got, want, "{team_key}");
        }
        assert_eq!(resource_keys(&[0x0a, 0x05, 0x0a], "k"), None, "truncated");
    }

    /// Scenario: two batches' findings for three services, one tally merged
    /// into another, with team-file, override and default rules, and
    /// findings outside any resource or past the batch's resources.
    /// Guarantees: per service, spans per rule with the file each rule came
    /// from, descendants, and masks per detector and field; sorted by
    /// namespace and service, rules and masks by count; every figure adds
    /// up, and nothing that looks like a personal number is shown.
    #[test]
    fn findings_tally_per_service_with_the_file_of_each_rule() {
        let config = serde_json::json!({
            "version": 2,
            "overrides": [{"match": {"k8s.namespace.name": "team-b"}, "noise": {"extra_globs": ["*/ping"]}}],
            "teams": {"dir": "teams/", "files": {
                "team-a": {"file": "teams/team-a.yaml", "doc": {"noise": {"extra_globs": ["*/x-noise"]}}},
            }},
        });
        let grouping = Grouping::new(&config.to_string(), Some(Path::new("conf/scrub.yaml")));
        assert_eq!(grouping.team_key, "k8s.namespace.name");
        let keys = [key("team-a", "checkout"), key("team-b", "billing")];
        let mut first = ByService::default();
        first.add(
            Some(&keys),
            &[
                dropped(0, Some("teams/team-a.yaml */x-noise")),
                dropped(0, Some("teams/team-a.yaml */x-noise")),
                dropped(0, None),
                dropped(1, Some("overrides[0] */ping")),
                masked(Some(0), FieldKind::SpanAttribute, "fnr"),
                masked(None, FieldKind::UnknownField, "fnr"),
                masked(Some(7), FieldKind::SpanName, "fnr"),
            ],
        );
        let mut second = ByService::default();
        second.add(
            Some(&[key("team-a", "checkout")]),
            &[
                dropped(0, Some("*/isAlive")),
                masked(Some(0), FieldKind::SpanAttribute, "fnr"),
                masked(Some(0), FieldKind::ResourceAttribute, "d-number"),
            ],
        );
        second.add(None, &[dropped(3, Some("*/person/17053650260"))]);
        first.merge(second);
        let report = first.report(&grouping);
        let rule = |rule: &str, file: &str, spans| RuleCount {
            rule: rule.into(),
            file: file.into(),
            spans,
        };
        let mask = |detector: &str, field: &str, values| MaskCount {
            detector: detector.into(),
            field: field.into(),
            values,
        };
        let service = |ns: &str,
                       svc: &str,
                       dropped_by_rule: Vec<RuleCount>,
                       dropped_descendants,
                       masked: Vec<MaskCount>| {
            ServiceReport {
                namespace: ns.into(),
                service: svc.into(),
                spans_dropped: dropped_by_rule.iter().map(|r| r.spans).sum::<u64>()
                    + dropped_descendants,
                dropped_by_rule,
                dropped_descendants,
                values_masked: masked.iter().map(|m| m.values).sum(),
                masked,
            }
        };
        assert_eq!(
            report,
            [
                service(NO_NAMESPACE, OUTSIDE, vec![], 0, vec![mask("fnr", "unknown-field", 1)]),
                service(
                    NO_NAMESPACE,
                    UNREADABLE,
                    vec![rule("*/person/***********", "conf/scrub.yaml", 1)],
                    0,
                    vec![mask("fnr", "span-name", 1)],
                ),
                service(
                    "team-a",
                    "checkout",
                    vec![
                        rule("teams/team-a.yaml */x-noise", "conf/teams/team-a.yaml", 2),
                        rule("*/isAlive", "conf/scrub.yaml", 1),
                    ],
                    1,
                    vec![
                        mask("fnr", "span-attribute", 2),
                        mask("d-number", "resource-attribute", 1)
                    ],
                ),
                service(
                    "team-b",
                    "billing",
                    vec![rule("overrides[0] */ping", "conf/scrub.yaml", 1)],
                    0,
                    vec![]
                ),
            ]
        );
        assert_eq!(report[2].spans_dropped, 4);
        let json = serde_json::to_string(&report).expect("serializes");
        assert!(!json.contains("17053650260"), "{json}");
    }

    /// Scenario: the embedded default config (no file), and a version-1
    /// config.
    /// Guarantees: the namespace is `k8s.namespace.name`, and every rule is
    /// the platform config's.
    #[test]
    fn without_teams_every_rule_is_the_platform_configs() {
        for (json, path, file) in [
            ("{}", None, "(embedded default config)"),
            (r#"{"noise": {"extra_globs": ["*/warmup"]}}"#, Some(Path::new("v1.yaml")), "v1.yaml"),
        ] {
            let grouping = Grouping::new(json, path);
            assert_eq!(grouping.team_key, "k8s.namespace.name");
            assert_eq!(grouping.file_of("*/warmup"), file);
            assert_eq!(grouping.file_of("teams/x.yaml */warmup"), file);
        }
    }
}
