//! Field numbers of the OTLP trace messages the engine walks, from
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`.
//! Fields not named here are copied through untouched, after their text is
//! scanned (see `Walk::unknown`).

pub(crate) mod request {
    pub const RESOURCE_SPANS: u32 = 1;
}

pub(crate) mod resource_spans {
    pub const RESOURCE: u32 = 1;
    pub const SCOPE_SPANS: u32 = 2;
    pub const SCHEMA_URL: u32 = 3;
    /// `instrumentation_library_spans`, removed from the proto in 2022 but
    /// still sent by old SDKs. Its wire layout is that of ScopeSpans, so its
    /// spans are processed too: privacy fails closed.
    pub const LEGACY_LIBRARY_SPANS: u32 = 1000;
}

pub(crate) mod resource {
    pub const ATTRIBUTES: u32 = 1;
}

pub(crate) mod scope_spans {
    pub const SCOPE: u32 = 1;
    pub const SPANS: u32 = 2;
    pub const SCHEMA_URL: u32 = 3;
}

pub(crate) mod scope {
    pub const NAME: u32 = 1;
    pub const VERSION: u32 = 2;
    pub const ATTRIBUTES: u32 = 3;
}

/// The id lengths OTLP allows: `trace_id` 16 bytes, `span_id` 8, and
/// `parent_span_id` 8 or empty (a root).
pub(crate) mod ids {
    pub const TRACE: usize = 16;
    pub const SPAN: usize = 8;
}

pub(crate) mod span {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const ATTRIBUTES: u32 = 9;
    pub const EVENTS: u32 = 11;
    pub const LINKS: u32 = 13;
    pub const STATUS: u32 = 15;
    /// `SPAN_KIND_SERVER`.
    pub const KIND_SERVER: u64 = 2;
}

pub(crate) mod event {
    pub const NAME: u32 = 2;
    pub const ATTRIBUTES: u32 = 3;
}

pub(crate) mod link {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const ATTRIBUTES: u32 = 4;
}

pub(crate) mod status {
    pub const MESSAGE: u32 = 2;
}

pub(crate) mod key_value {
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
}

pub(crate) mod any_value {
    pub const STRING: u32 = 1;
    pub const BOOL: u32 = 2;
    pub const INT: u32 = 3;
    pub const DOUBLE: u32 = 4;
    pub const ARRAY: u32 = 5;
    pub const KVLIST: u32 = 6;
    pub const BYTES: u32 = 7;
}

/// `ArrayValue.values` and `KeyValueList.values` are both field 1.
pub(crate) const LIST_VALUES: u32 = 1;
