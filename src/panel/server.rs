//! The HTTPS listener: its own thread and runtime (a flood of panel requests cannot take time from the
//! decision path's runtime), with the connection limits of [`super::limits`]: 256 connections in all,
//! 16 per source, 5 s for the handshake and for each request head, 15 s for each whole request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::auth::Source;
use super::limits::{
    Connections, CONNECTIONS_PER_SOURCE, HANDSHAKE_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT,
};
use super::{Panel, PanelError};

/// Binds the address now (so a busy port fails start-up), then serves on a thread until cancelled.
pub fn spawn(
    panel: Panel,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) -> Result<(std::thread::JoinHandle<()>, SocketAddr), PanelError> {
    let addr = panel.cfg.listen;
    let listener = std::net::TcpListener::bind(addr).map_err(|source| PanelError::Listen { addr, source })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let thread = std::thread::Builder::new().name("panel".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("panel-worker")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "panel runtime could not start");
                return;
            }
        };
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => serve(l, tls, panel, cancel).await,
                Err(e) => tracing::error!(error = %e, "panel listener failed"),
            }
        });
        rt.shutdown_timeout(Duration::from_secs(2));
    })?;
    Ok((thread, local))
}

async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    panel: Panel,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = super::routes::router(panel);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_source = Connections::default();
    let mut refused_logged = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "panel accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Refusals are logged at most once a minute: a flood must not become a flood of log lines.
        let mut refuse = |why: &str| {
            if refused_logged.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(%peer, "panel connection refused: {why} (logged once a minute)");
                refused_logged = std::time::Instant::now();
            }
        };
        let Some(slot) = per_source.admit(peer.ip(), CONNECTIONS_PER_SOURCE) else {
            refuse("this source has its share open");
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            refuse("all connections taken");
            continue;
        };
        let (acceptor, router, cancel) = (acceptor.clone(), router.clone(), cancel.clone());
        tokio::spawn(async move {
            let _held = (permit, slot);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "panel TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let source = Source(peer.ip().to_canonical());
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(source);
                let call = router.clone().call(req);
                // A whole request (its body included) gets REQUEST_TIMEOUT: a client that trickles a body
                // in holds its connection no longer than that.
                async move {
                    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
                        Ok(r) => r,
                        Err(_) => Ok(axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::REQUEST_TIMEOUT,
                            [(axum::http::header::CONNECTION, "close")],
                            "Request took too long.",
                        ))),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}
