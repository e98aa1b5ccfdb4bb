//! The admin endpoints: `GET /metrics` (Prometheus text), `GET /healthz`
//! (the process is alive), `GET /readyz` (a version is live and the workers
//! are up) and `POST /-/reload` (a synchronous reload: 200 with the new
//! hashes, or 422 with the failed step and why, the old version serving on).

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Gateway;

/// Serves the admin endpoints until `stop`.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    let limits = super::http::ConnectionLimits::from_settings(&gateway.settings, false);
    super::http::serve_with(listener, stop, limits, move |request| {
        let gateway = Arc::clone(&gateway);
        async move { handle(&gateway, &request).await }
    })
    .await;
}

/// Handles one admin request. The body is never read.
pub async fn handle<B>(gateway: &Arc<Gateway>, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let allowed = match path {
        "/metrics" | "/healthz" | "/readyz" => Method::GET,
        "/-/reload" => Method::POST,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found; try GET /metrics, /healthz, /readyz or POST /-/reload\n".into(),
            );
        }
    };
    if request.method() != allowed && !(allowed == Method::GET && request.method() == Method::HEAD)
    {
        let mut response =
            text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allowed} on {path}\n"));
        response.headers_mut().insert(
            ALLOW,
            HeaderValue::from_str(allowed.as_str()).unwrap_or(HeaderValue::from_static("GET")),
        );
        return response;
    }
    match path {
        "/metrics" => {
            let body = gateway.metrics.render(&gateway.active(), gateway.settings.workers);
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if gateway.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready: stopping\n".into()),
        _ => match gateway.reload("admin").await {
            Ok(v) => json(
                StatusCode::OK,
                serde_json::json!({
                    "result": "success",
                    "version": v.id,
                    "component_sha256": v.component_sha256,
                    "config_sha256": v.config_sha256,
                }),
            ),
            Err(e) => {
                let active = gateway.active();
                json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({
                        "result": "failure",
                        "step": e.step.to_string(),
                        "error": e.message,
                        "active": {
                            "version": active.id,
                            "component_sha256": active.component_sha256,
                            "config_sha256": active.config_sha256,
                        },
                    }),
                )
            }
        },
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
