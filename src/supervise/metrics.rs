//! Prometheus metrics on a local port (`[metrics] listen`), text exposition format, GET /metrics only.
//! A tiny HTTP/1.1 responder on its own task: a slow scraper never touches the decision path.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::SharedAllowlist;
use crate::camera::{CaptureStats, Frame, LatestSlot};
use crate::events::WriterStats;

/// Everything the daemon counts, shared by reference with the stages.
pub struct Metrics {
    pub lanes: Vec<(String, Arc<CaptureStats>, Arc<LatestSlot<Frame>>)>,
    pub decisions: Arc<AtomicU64>,
    pub opened: Arc<AtomicU64>,
    pub writer: Arc<WriterStats>,
    pub allowlist: SharedAllowlist,
    /// The cloud link's figures, when a link is configured.
    pub link: Option<Arc<crate::sync::link::LinkStats>>,
    /// Whether the anonymous count of opted-out residents' passes is kept (`[privacy] count_opted_out`).
    pub count_opted_out: bool,
    pub clock: crate::clock::SharedClock,
    /// `[sync] allowlist_max_age_hours` (`None`: no alert).
    pub allowlist_max_age: Option<chrono::Duration>,
    /// Standing alerts (`gatehouse_alert{name="..."} 1` while raised).
    pub alerts: super::Alerts,
}

impl Metrics {
    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let lane = |n: &str| format!("{{lane=\"{n}\"}}");
        family(
            "gatehouse_frames_total",
            "counter",
            "Frames captured.",
            self.lanes.iter().map(|(n, c, _)| (lane(n), r(&c.frames))).collect(),
        );
        family(
            "gatehouse_frames_dropped_total",
            "counter",
            "Frames replaced before recognition took them (newest frame wins).",
            self.lanes.iter().map(|(n, _, q)| (lane(n), q.dropped())).collect(),
        );
        family(
            "gatehouse_frames_recognized_total",
            "counter",
            "Frames recognition took.",
            self.lanes.iter().map(|(n, _, q)| (lane(n), q.delivered())).collect(),
        );
        family(
            "gatehouse_camera_reconnects_total",
            "counter",
            "Camera open failures and drops.",
            self.lanes.iter().map(|(n, c, _)| (lane(n), r(&c.reconnects))).collect(),
        );
        family(
            "gatehouse_decisions_total",
            "counter",
            "Access decisions.",
            vec![(String::new(), r(&self.decisions))],
        );
        family(
            "gatehouse_gate_opens_total",
            "counter",
            "Decisions that opened the gate.",
            vec![(String::new(), r(&self.opened))],
        );
        family(
            "gatehouse_events_committed_total",
            "counter",
            "Events committed to the database.",
            vec![(String::new(), r(&self.writer.committed))],
        );
        if self.count_opted_out {
            family(
                "gatehouse_opted_out_passes_total",
                "counter",
                "Opted-out residents' passes (nothing about them is stored; this count is all there is).",
                vec![(String::new(), r(&self.writer.opted_out))],
            );
        }
        family(
            "gatehouse_events_failed_total",
            "counter",
            "Events lost: held in memory only (the spill file full) when the daemon stopped.",
            vec![(String::new(), r(&self.writer.failed))],
        );
        family(
            "gatehouse_events_unstored",
            "gauge",
            "Decided events waiting unstored (held in memory and the spill file while the database cannot take them).",
            vec![(String::new(), r(&self.writer.held))],
        );
        family(
            "gatehouse_events_spilled_total",
            "counter",
            "Events written to the spill file because the database could not take them.",
            vec![(String::new(), r(&self.writer.spilled))],
        );
        family(
            "gatehouse_db_reserve_released_total",
            "counter",
            "Times the database reserve was released because the disk was full.",
            vec![(String::new(), r(&self.writer.reserve_released))],
        );
        family(
            "gatehouse_alert",
            "gauge",
            "1 for each standing alert (the panel's system status names the fix).",
            self.alerts
                .list()
                .into_iter()
                .map(|(name, _)| (format!("{{name=\"{name}\"}}"), 1))
                .collect(),
        );
        family(
            "gatehouse_crops_pruned_total",
            "counter",
            "Crop images deleted because storage ran short (images give way before events).",
            vec![(String::new(), r(&self.writer.crops_pruned))],
        );
        family(
            "gatehouse_crops_skipped_total",
            "counter",
            "Events stored without their crop because storage was short.",
            vec![(String::new(), r(&self.writer.crops_skipped))],
        );
        if let Some(l) = &self.link {
            family(
                "gatehouse_cloud_connected",
                "gauge",
                "1 while the MQTT link to the cloud is up.",
                vec![(String::new(), l.connected.load(Ordering::Relaxed) as u64)],
            );
            family(
                "gatehouse_events_uploaded_total",
                "counter",
                "Events the broker acknowledged (PUBACK) and the outbox marked uploaded.",
                vec![(String::new(), r(&l.upload.uploaded))],
            );
            family(
                "gatehouse_allowlist_envelopes_total",
                "counter",
                "Allowlist envelopes received, by result.",
                vec![
                    ("{result=\"applied\"}".into(), r(&l.envelopes_applied)),
                    ("{result=\"rejected\"}".into(), r(&l.envelopes_rejected)),
                ],
            );
        }
        let list = self.allowlist.current();
        family(
            "gatehouse_allowlist_entries",
            "gauge",
            "Entries in the allowlist snapshot.",
            vec![(String::new(), list.len() as u64)],
        );
        family(
            "gatehouse_allowlist_version",
            "gauge",
            "Applied allowlist version.",
            vec![(String::new(), list.version)],
        );
        let fresh = crate::sync::freshness::freshness(&list, self.clock.now(), self.allowlist_max_age);
        if let Some(age) = fresh.age_s {
            family(
                "gatehouse_allowlist_age_seconds",
                "gauge",
                "Seconds since the cloud signed the applied allowlist.",
                vec![(String::new(), age.max(0) as u64)],
            );
        }
        family(
            "gatehouse_allowlist_stale",
            "gauge",
            "1 when the applied allowlist is older than [sync] allowlist_max_age_hours (updates are not arriving).",
            vec![(String::new(), fresh.stale as u64)],
        );
        s
    }
}

/// Serves GET /metrics until cancelled.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, cancel: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    // At most 4 scrapes at once: a flood of connections cannot exhaust the daemon's file descriptors.
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics ") {
                ("200 OK", m.render())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Allowlist;

    #[test]
    fn an_allowlist_older_than_its_maximum_age_shows_as_stale() {
        let mut list = Allowlist::new(vec![], 9);
        list.issued = Some(chrono::Utc::now() - chrono::Duration::hours(200));
        let metrics = |max_age| Metrics {
            lanes: Vec::new(),
            decisions: Arc::default(),
            opened: Arc::default(),
            writer: Arc::default(),
            allowlist: SharedAllowlist::new(list.clone()),
            link: None,
            count_opted_out: false,
            clock: Arc::new(crate::clock::SystemClock),
            allowlist_max_age: max_age,
            alerts: super::super::Alerts::default(),
        };
        let text = metrics(Some(chrono::Duration::hours(168))).render();
        assert!(text.contains("\ngatehouse_allowlist_stale 1\n"), "{text}");
        assert!(text.contains("\ngatehouse_allowlist_age_seconds 720"), "{text}");
        let text = metrics(Some(chrono::Duration::hours(240))).render();
        assert!(text.contains("\ngatehouse_allowlist_stale 0\n"), "{text}");
    }

    #[test]
    fn unstored_events_and_alerts_are_exposed() {
        let writer = Arc::new(WriterStats::default());
        writer.held.store(3, Ordering::Relaxed);
        let alerts = super::super::Alerts::default();
        alerts.raise("database", "damaged");
        let m = Metrics {
            lanes: Vec::new(),
            decisions: Arc::default(),
            opened: Arc::default(),
            writer,
            allowlist: SharedAllowlist::new(crate::access::Allowlist::default()),
            link: None,
            count_opted_out: false,
            clock: Arc::new(crate::clock::SystemClock),
            allowlist_max_age: None,
            alerts,
        };
        let text = m.render();
        assert!(text.contains("\ngatehouse_events_unstored 3\n"), "{text}");
        assert!(text.contains("\ngatehouse_alert{name=\"database\"} 1\n"), "{text}");
        assert!(text.contains("\ngatehouse_db_reserve_released_total 0\n"), "{text}");
    }
}
