//! Serving the gateway: bind, serve [`app`](super::app), and shut down gracefully — on the
//! signal, `/readyz` turns 503 and new requests are refused, the listener closes, and
//! in-flight requests (streams included) get the configured grace period to finish.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::GatewayState;

/// Serves `state` on `listener` until `shutdown` completes, then drains for at most the
/// config's `grace` period. Returns whether every in-flight request finished in time.
pub async fn serve(
    state: Arc<GatewayState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    let grace = state.config.front.grace;
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let signal = async move {
        shutdown.await;
        st.stop_accepting();
        tracing::info!(grace = ?grace, "shutting down: finishing in-flight requests");
        let _ = stopped_tx.send(());
    };
    let server = axum::serve(listener, super::app(state.clone())).with_graceful_shutdown(signal);
    let server = server.into_future();
    tokio::pin!(server);
    let drained = async {
        if stopped_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = &mut server => r.map(|()| true),
        () = drained => {
            tracing::warn!(in_flight = state.metrics.in_flight(), "grace period over; dropping what is still in flight");
            Ok(false)
        }
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
