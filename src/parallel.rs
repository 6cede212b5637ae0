//! A parallel map for the reload path: feed entries are checked, and pool zone sets built,
//! by a few threads at once.
//!
//! Why threads even when every core is busy answering queries, and more threads than
//! cores: the scheduler shares the cores between runnable threads, so a reload split over
//! several threads gets a larger share of a loaded machine than one thread would and is
//! live sooner, at the cost of a brief dip in query throughput (see benches/README.md).
//! On an idle machine the extra threads cost a few context switches.

use std::sync::atomic::{AtomicUsize, Ordering};

/// At least this many threads, the calling one included, whatever the number of cores.
const MIN_THREADS: usize = 4;
/// At most this many.
const MAX_THREADS: usize = 8;

/// `f` applied to every item, results in item order. Threads take `chunk` items at a time
/// (a chunk of 1 hands out items one by one, for items of very unequal cost: put the
/// costly ones first). Runs on the calling thread alone when there is one chunk or no
/// thread can be started. A panic in `f` is resumed on the calling thread.
pub fn map<T: Sync, R: Send>(items: &[T], chunk: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = chunk.max(1);
    let chunks = items.len().div_ceil(chunk);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(MIN_THREADS, MAX_THREADS)
        .min(chunks);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    // Each thread's chunks, by their first index.
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let start = next.fetch_add(chunk, Ordering::Relaxed);
            let Some(run) = items.get(start..items.len().min(start + chunk)) else {
                return done;
            };
            done.push((start, run.iter().map(&f).collect()));
        }
    };
    let mut done = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("reload-{i}"))
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(part) => done.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|&(start, _)| start);
    done.into_iter().flat_map(|(_, results)| results).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_item_order_for_every_chunk_size() {
        let items: Vec<u64> = (0..10_007).collect();
        let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
        for chunk in [0, 1, 7, 1024, 10_007, 20_000] {
            assert_eq!(map(&items, chunk, |x| x * x), expected, "chunk {chunk}");
        }
        assert!(map(&[] as &[u64], 4, |x| *x).is_empty());
    }

    #[test]
    fn work_is_shared_between_threads() {
        let items: Vec<u32> = (0..64).collect();
        let names = map(&items, 1, |_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::thread::current().name().map(str::to_owned)
        });
        let mut distinct = names.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 2, "{distinct:?}");
    }

    #[test]
    #[should_panic(expected = "item 500")]
    fn a_panic_reaches_the_caller() {
        let items: Vec<u32> = (0..1000).collect();
        map(&items, 10, |&i| assert!(i != 500, "item {i}"));
    }
}
