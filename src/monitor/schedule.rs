//! When each server is probed: every `--interval` with ±5 % jitter (the first probe at a
//! random point of the first interval, so a large registry is spread out from the start),
//! and never more than `--max-rate` probes per second in all. When the cap is lower than
//! servers ÷ interval, every server is probed less often and evenly so, in due order. A
//! server is never probed twice at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    let addresses: Vec<std::net::IpAddr> =
        monitor.book().servers.iter().map(|t| t.server.ip).collect();
    if addresses.is_empty() {
        let _ = stop.changed().await;
        return;
    }
    let interval = monitor.options.interval;
    let pace = Duration::from_secs_f64(1.0 / monitor.options.max_rate.max(0.001));
    let busy: Arc<[AtomicBool]> = addresses.iter().map(|_| AtomicBool::new(false)).collect();
    let start = Instant::now();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = (0..addresses.len())
        .map(|i| Reverse((start + interval.mul_f64(rand::random::<f64>()), i)))
        .collect();
    let mut next_send = start;
    while let Some(Reverse((at, index))) = due.pop() {
        let send_at = at.max(next_send);
        tokio::select! {
            _ = tokio::time::sleep_until(send_at) => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        // Pace from when we were due to send, not from when the timer woke us: send times
        // grow by at least `pace` each, so the rate stays at or below the cap on average.
        next_send = send_at + pace;
        let jittered = interval.mul_f64(0.95 + 0.1 * rand::random::<f64>());
        due.push(Reverse((now + jittered, index)));
        if busy[index].swap(true, Ordering::AcqRel) {
            continue; // still waiting for its last probe: skip this turn
        }
        let (monitor, prober, busy) = (monitor.clone(), prober.clone(), busy.clone());
        let ip = addresses[index];
        tokio::spawn(async move {
            let outcome = prober.probe(ip).await;
            monitor.book().record(index, outcome, SystemTime::now());
            busy[index].store(false, Ordering::Release);
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
