//! Supervision: logging set-up, the shutdown signal (SIGTERM / SIGINT), the panic hook that puts the
//! relays in their safe state, and the service manager's protocol (sd_notify readiness and a watchdog fed
//! only by pipeline progress).

pub mod alerts;
pub mod metrics;
mod notify;
mod watchdog;

pub use alerts::Alerts;
pub use notify::Notifier;
pub use watchdog::{run_watchdog, Progress};

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stdout (journald picks it up under systemd). `RUST_LOG` overrides the level.
pub fn init_logging(verbose: bool) {
    let default = if verbose { "gatehouse=debug,info" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

pub use crate::gate::safety::install_panic_hook;
