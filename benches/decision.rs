//! Decision-path benchmark (`cargo bench --bench decision`): allowlist lookups with 1,000,000 entries, and
//! the path from a voted read to the relay command. Prints p50 / p99 / max per operation.
//! Inference is not included (see `gatehouse eval` for that).

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use gatehouse::access::{self, Allowlist, Entry, Kind, SharedAllowlist};
use gatehouse::config::AccessConfig;
use gatehouse::gate::{self, safety::SharedRelay, Actor, GateCommand, Relay};
use gatehouse::recognize::CharRead;
use tokio_util::sync::CancellationToken;

const N: usize = 1_000_000;
fn report(name: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{name:<44} n={:<8} p50 {:>8.3} us   p99 {:>8.3} us   max {:>9.3} us",
        ns.len(),
        p(0.5),
        p(0.99),
        *ns.last().unwrap_or(&0) as f64 / 1000.0
    );
}

fn chars(text: &str) -> Vec<CharRead> {
    text.chars()
        .map(|ch| CharRead {
            ch,
            conf: 0.99,
            alt: None,
        })
        .collect()
}

fn main() {
    let list_plates = common::plates(N, 0x9E37_79B9_7F4A_7C15);
    let t0 = Instant::now();
    let entries: Vec<Entry> = list_plates
        .iter()
        .enumerate()
        .map(|(i, p)| Entry::new(p, if i % 50 == 0 { Kind::Blocked } else { Kind::Resident }))
        .collect();
    let list = Allowlist::new(entries, 1);
    println!(
        "built a {}-entry allowlist snapshot in {:.2} s",
        list.len(),
        t0.elapsed().as_secs_f64()
    );

    let probes_hit: Vec<&String> = list_plates.iter().step_by(97).take(100_000).collect();
    let probes_miss = common::plates(100_000, 42);
    let mut ns = Vec::with_capacity(100_000);
    for p in &probes_hit {
        let s = Instant::now();
        std::hint::black_box(list.exact(p));
        ns.push(s.elapsed().as_nanos() as u64);
    }
    report("exact lookup, hit (1M entries)", std::mem::take(&mut ns));
    for p in &probes_miss {
        let s = Instant::now();
        std::hint::black_box(list.exact(p));
        ns.push(s.elapsed().as_nanos() as u64);
    }
    report("exact lookup, miss (1M entries)", std::mem::take(&mut ns));
    for p in &probes_hit {
        let s = Instant::now();
        std::hint::black_box(list.near(p));
        ns.push(s.elapsed().as_nanos() as u64);
    }
    report("confusion lookup (1M entries)", std::mem::take(&mut ns));

    let cfg = AccessConfig::default();
    let now = Utc::now();
    let reads: Vec<(String, Vec<CharRead>)> = probes_hit
        .iter()
        .map(|p| p.as_str())
        .take(50_000)
        .chain(probes_miss.iter().map(|p| p.as_str()).take(50_000))
        .map(|p| (p.to_string(), chars(p)))
        .collect();
    for (t, c) in &reads {
        let s = Instant::now();
        std::hint::black_box(access::decide(t, c, &list, &cfg, now, chrono_tz::UTC));
        ns.push(s.elapsed().as_nanos() as u64);
    }
    report("decide (snapshot, 1M entries)", std::mem::take(&mut ns));

    // Opted-out residents are listed sealed: a read is sealed (HMAC) and, where characters are unsure, so
    // are its plausible confusion variants (at most 256).
    let key = access::PlateKey::from_bytes([7; 32]);
    let sealed_plates: Vec<&String> = list_plates.iter().skip(1).step_by(100).take(10_000).collect();
    let mut with_sealed: Vec<Entry> = list.entries().to_vec();
    for e in with_sealed.iter_mut().skip(1).step_by(100).take(10_000) {
        if e.kind == Kind::Resident {
            e.plate = key.seal(&e.plate);
            e.do_not_log = true;
        }
    }
    let sealed_list = Allowlist::with_key(with_sealed, 1, Some(key));
    for (label, conf) in [
        ("decide, 10k sealed entries, confident read", 0.99f32),
        ("decide, sealed, every character unsure", 0.5),
    ] {
        for p in sealed_plates.iter().take(20_000) {
            let c: Vec<CharRead> = p.chars().map(|ch| CharRead { ch, conf, alt: None }).collect();
            let s = Instant::now();
            std::hint::black_box(access::decide(p, &c, &sealed_list, &cfg, now, chrono_tz::UTC));
            ns.push(s.elapsed().as_nanos() as u64);
        }
        report(label, std::mem::take(&mut ns));
    }
    drop(sealed_list);

    // Voted read -> decision -> gate command queued -> relay energised, through the real controller.
    let shared = SharedAllowlist::new(list);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let flag = Arc::new(AtomicBool::new(false));
    let relay: SharedRelay = Arc::new(Mutex::new(Box::new(common::FlagRelay(flag.clone())) as Box<dyn Relay>));
    let rc = common::relay_config("bench");
    let cancel = CancellationToken::new();
    let (handle, fut) = {
        let _g = rt.enter();
        gate::run_controller(rc, relay, cancel.clone())
    };
    let task = rt.spawn(fut);
    std::thread::sleep(Duration::from_millis(50));
    let allowed: Vec<&(String, Vec<CharRead>)> = reads.iter().take(5000).collect();
    let mut queued = Vec::new();
    let mut relayed = Vec::new();
    for (t, c) in allowed {
        let s = Instant::now();
        let list = shared.current();
        let d = access::decide(t, c, &list, &cfg, now, chrono_tz::UTC);
        if d.action != access::Action::Open {
            continue; // blocked or look-alike entries: nothing to time on the relay
        }
        handle
            .try_command(GateCommand::Open {
                actor: Actor::Automatic,
                reason: "bench".into(),
            })
            .expect("queued");
        queued.push(s.elapsed().as_nanos() as u64);
        while !flag.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        relayed.push(s.elapsed().as_nanos() as u64);
        handle
            .try_command(GateCommand::Release {
                actor: Actor::System,
                reason: "bench".into(),
            })
            .expect("queued");
        while flag.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
    report("voted read -> decision -> command queued", queued);
    report("voted read -> relay energised (controller)", relayed);
    cancel.cancel();
    let _ = rt.block_on(task);
}
