//! Hidden helpers for durability tests.

use std::path::Path;

use chrono::Utc;

use crate::access::{Action, Decision, Reason};
use crate::events::{spawn_writer, GateEvent, WriterOptions};
use crate::recognize::CharRead;

/// Commits `count` synthetic events as fast as the store takes them; each commit is logged
/// ("event committed") only after its transaction is durable.
pub fn event_burst(config: &Path, count: usize) -> anyhow::Result<()> {
    let cfg = super::load_unlocked(config)?;
    let (sink, writer, stats) = spawn_writer(WriterOptions {
        log_plates: true,
        min_free: cfg.site.min_free_bytes,
        reserve: cfg.site.db_reserve_bytes,
        ..WriterOptions::new(cfg.site.database_path(), cfg.site.crops_dir())
    })?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async move {
        for i in 0..count {
            let now = Utc::now();
            let plate = format!("BUR{:04}", i % 10_000);
            let e = GateEvent {
                id: GateEvent::new_id(now),
                lane: "burst".into(),
                at: now,
                first_seen: now,
                chars: plate
                    .chars()
                    .map(|ch| CharRead {
                        ch,
                        conf: 0.99,
                        alt: None,
                    })
                    .collect(),
                plate,
                confidence: 0.99,
                alternatives: Vec::new(),
                reads: 3,
                decision: Decision {
                    action: Action::Deny,
                    alert: false,
                    reason: Reason::Unknown,
                    matched: None,
                },
                crop_jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
                guard_action: None,
                gate_result: None,
            };
            sink.send(e).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    drop(rt);
    let _ = writer.join();
    println!(
        "burst done: {} committed",
        stats.committed.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
