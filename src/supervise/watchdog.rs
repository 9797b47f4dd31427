//! The systemd watchdog, fed only while every lane makes progress: its recognizer finished a frame, or
//! its capture loop is alive and retrying a camera that is down. A stalled camera read or a hung
//! recognizer stops the pings, and systemd restarts the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Notifier;

/// A lane's progress counter (bumped by its capture and recognition threads).
pub type Progress = Arc<AtomicU64>;

/// Pings `WATCHDOG=1` every `interval / 2` while every lane's counter moved since the last check.
pub async fn run_watchdog(
    notifier: Notifier,
    interval: Duration,
    lanes: Vec<(String, Progress)>,
    cancel: CancellationToken,
) {
    let period = (interval / 2).max(Duration::from_millis(50));
    let mut last: Vec<u64> = lanes.iter().map(|(_, p)| p.load(Ordering::Relaxed)).collect();
    let mut stalled_reported = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        let now: Vec<u64> = lanes.iter().map(|(_, p)| p.load(Ordering::Relaxed)).collect();
        let stalled: Vec<&str> = lanes
            .iter()
            .zip(now.iter().zip(&last))
            .filter(|(_, (n, l))| n == l)
            .map(|((name, _), _)| name.as_str())
            .collect();
        if stalled.is_empty() {
            notifier.notify("WATCHDOG=1");
            if stalled_reported {
                tracing::info!("pipeline moving again; watchdog pings resumed");
                stalled_reported = false;
            }
        } else if !stalled_reported {
            tracing::error!(lanes = ?stalled, "pipeline stalled; withholding watchdog pings");
            notifier.notify(&format!("STATUS=stalled: {}", stalled.join(", ")));
            stalled_reported = true;
        }
        last = now;
    }
}
