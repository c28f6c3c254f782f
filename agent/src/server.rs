//! The HTTP endpoints (`--listen`): `/leader` (JSON), `/healthz` (client-go's leader-election
//! watchdog), `/readyz` and `/metrics`.

use crate::error::AgentError;
use crate::status::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binds `addr` and serves the endpoints until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| AgentError::usage(format!("--listen {addr}: cannot listen there: {e}")))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), "serving /leader /healthz /readyz /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&req, &shared)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/leader" => {
            let body = serde_json::to_string(&shared.view()).unwrap_or_default() + "\n";
            reply(StatusCode::OK, "application/json", body)
        }
        "/healthz" | "/livez" => match shared.health() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", why + "\n"),
        },
        "/readyz" if shared.is_ready() => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the API server has not answered yet\n".into(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /leader, /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
