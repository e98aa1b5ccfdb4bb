//! The OTLP/gRPC receiver: `TraceService/Export` with the
//! `opentelemetry-proto` service types, gzip accepted, messages capped at
//! the decompressed body limit.
//!
//! Status codes follow the OTLP/gRPC spec: `InvalidArgument` (final) for a
//! malformed or oversized batch or one the upstream refused for good,
//! `Unavailable` (retried) for overload, a deadline hit, or an upstream
//! failure, `Internal` (final) for a processor trap.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use super::metrics::Transport;
use super::pool::BodyKind;
use super::{ExportError, Gateway, log};

/// The gRPC service; holds the gateway.
pub struct Receiver {
    gateway: Arc<Gateway>,
}

/// The gRPC status for an export error, with Retry-After in the message
/// for retryable ones.
pub fn grpc_status(error: &ExportError) -> Status {
    use super::upstream::SendError;
    let code = match error {
        ExportError::Malformed(_) | ExportError::TooLarge(_) | ExportError::Upstream(SendError::Rejected(_)) => Code::InvalidArgument,
        ExportError::Overloaded | ExportError::Timeout | ExportError::Upstream(_) => Code::Unavailable,
        ExportError::Trap | ExportError::Internal(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let admission = self.gateway.admit(Transport::Grpc).map_err(|e| grpc_status(&e))?;
        // The processor reads the wire format: encode what tonic decoded.
        let body = request.into_inner().encode_to_vec();
        let kind = BodyKind { gzip: false, json: false };
        match self.gateway.export(&admission, body.into(), kind, Transport::Grpc).await {
            Ok(_) => Ok(Response::new(ExportTraceServiceResponse::default())),
            Err(e) => Err(grpc_status(&e)),
        }
    }
}

/// Serves the OTLP/gRPC receiver until `stop`.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let limit = usize::try_from(gateway.settings.max_decompressed_bytes).unwrap_or(usize::MAX);
    let service = TraceServiceServer::new(Receiver { gateway })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = tonic::transport::Server::builder().serve_with_incoming_shutdown(service, incoming, stopped).await {
        log(format_args!("OTLP/gRPC receiver stopped with an error: {e}"));
    }
}
