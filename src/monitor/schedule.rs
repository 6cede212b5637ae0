//! When each server is probed: every `--interval` with ±5 % jitter (the first probe at a
//! random point of the first interval, so a large registry is spread out from the start),
//! and never more than `--max-rate` probes per second in all. When the cap is lower than
//! servers ÷ interval, every server is probed less often and evenly so, in due order. A
//! server is never probed twice at once. Servers are scheduled by id: a registry reload
//! adds new ones (due within an interval) and the ones removed drop out when next due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Monitor;
use super::ntp::Outcome;
use super::probe::Prober;

/// Probes every server until `stop` changes.
pub async fn run(
    monitor: Arc<Monitor>,
    prober: Arc<Prober>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = monitor.options.interval;
    let pace = Duration::from_secs_f64(1.0 / monitor.options.max_rate.max(0.001));
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut scheduled: HashSet<u64> = HashSet::new();
    let mut generation = None;
    let mut next_send = Instant::now();
    loop {
        // New servers (at start, or from a registry reload): due within an interval.
        {
            let book = monitor.book();
            if generation != Some(book.generation) {
                generation = Some(book.generation);
                let now = Instant::now();
                for t in &book.servers {
                    if scheduled.insert(t.server.id) {
                        let at = now + interval.mul_f64(rand::random::<f64>());
                        due.push(Reverse((at, t.server.id)));
                    }
                }
            }
        }
        let Some(&Reverse((at, id))) = due.peek() else {
            // Nothing registered: look again for a reload now and then.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = stop.changed() => return,
            }
        };
        let send_at = at.max(next_send);
        // Wake at least every second to see a reload.
        let wake = send_at.min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => return,
        }
        if wake < send_at {
            continue;
        }
        due.pop();
        let now = Instant::now();
        // Pace from when we were due to send, not from when the timer woke us: send times
        // grow by at least `pace` each, so the rate stays at or below the cap on average.
        next_send = send_at + pace;
        let ip = {
            let mut book = monitor.book();
            let Some(&index) = book.by_id.get(&id) else {
                scheduled.remove(&id); // no longer registered
                continue;
            };
            let tracked = &mut book.servers[index];
            let jittered = interval.mul_f64(0.95 + 0.1 * rand::random::<f64>());
            due.push(Reverse((now + jittered, id)));
            if tracked.busy {
                continue; // still waiting for its last probe: skip this turn
            }
            tracked.busy = true;
            tracked.server.ip
        };
        let (monitor, prober) = (monitor.clone(), prober.clone());
        tokio::spawn(async move {
            let outcome = prober.probe(ip).await;
            monitor
                .book()
                .record_probe(id, ip, outcome, SystemTime::now());
        });
    }
}

/// Probes every server of `monitor` once, at most `--max-rate` per second, and returns
/// each outcome in registry order (`pooldns monitor --once`).
pub async fn once(monitor: &Monitor, prober: Arc<Prober>) -> Vec<Outcome> {
    let addresses: Vec<std::net::IpAddr> =
        monitor.book().servers.iter().map(|t| t.server.ip).collect();
    let pace = Duration::from_secs_f64(1.0 / monitor.options.max_rate.max(0.001));
    let mut tasks = Vec::with_capacity(addresses.len());
    let mut next = Instant::now();
    for ip in addresses {
        tokio::time::sleep_until(next).await;
        next += pace;
        let prober = prober.clone();
        tasks.push(tokio::spawn(async move { prober.probe(ip).await }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or(Outcome::NoResponse));
    }
    outcomes
}
