//! `google.rpc.Status` with `google.rpc.RetryInfo`, the retry hint gRPC
//! clients read from a status's details (`grpc-status-details-bin`).
//!
//! The messages are written out with prost here: the four fields needed do
//! not justify a dependency on the googleapis types.

use std::time::Duration;

use hyper::body::Bytes;
use prost::Message;

/// The type URL of `google.rpc.RetryInfo` in an `Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`, with its details.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details, such as a `RetryInfo`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// What `value` holds.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message, encoded.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long the client should wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past `seconds`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The encoded `google.rpc.Status` for `code` and `message`, with a
/// `RetryInfo` asking for a retry after `retry_after`.
pub fn with_retry_info(code: i32, message: &str, retry_after: Duration) -> Bytes {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(retry_after.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(retry_after.subsec_nanos()).unwrap_or(0),
        }),
    };
    let status = Status {
        code,
        message: message.to_owned(),
        details: vec![Any {
            type_url: RETRY_INFO_TYPE_URL.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    Bytes::from(status.encode_to_vec())
}

/// The retry delay in an encoded `google.rpc.Status`'s `RetryInfo`, if it
/// has one.
pub fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = Status::decode(details).ok()?;
    let info = status.details.iter().find(|any| any.type_url == RETRY_INFO_TYPE_URL)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips_and_garbage_has_none() {
        let details = with_retry_info(8, "slow down", Duration::from_secs(7));
        assert_eq!(retry_delay(&details), Some(Duration::from_secs(7)));
        assert_eq!(retry_delay(b"\x0a\x05"), None);
        let plain = Status { code: 14, message: "down".into(), details: vec![] };
        assert_eq!(retry_delay(&plain.encode_to_vec()), None);
    }
}
