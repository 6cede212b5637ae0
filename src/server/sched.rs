//! The UDP workers' scheduling policy.
//!
//! At the rates a pool server sees, most queries find their worker asleep in `recvmmsg`,
//! so every query is a wakeup. Under the default policy (SCHED_OTHER) a woken thread
//! preempts the one running on the CPU it is woken onto, and the client that the answer
//! wakes preempts the worker in turn: two forced switches a query where one would do.
//! SCHED_BATCH (sched(7)) keeps the same fair share of the CPU and the same nice value, but
//! a woken batch thread does not preempt the running one; it runs when that one sleeps or
//! its slice ends, and never waits long when a core is idle (the scheduler wakes it on
//! the idle one). Measured on two cores at 5,000 queries a second: 12.3 → 9.5 µs of the
//! worker's CPU a query, the client's own CPU down 9 %, average latency 33 → 25 µs;
//! little change at 20,000 and 50,000 q/s, or saturated (benches/README.md).
//!
//! Only the UDP workers change policy: the runtime's threads (TCP, HTTP, reloads) keep
//! SCHED_OTHER, so a reload still preempts a worker to go live quickly.

/// Puts the calling thread under SCHED_BATCH. Any thread may lower itself to it without
/// privileges; a seccomp filter that denies `sched_setscheduler` makes this an error.
// std, nix and rustix wrap no call that sets a scheduling policy; this one is a single
// libc call on a value we own.
#[allow(unsafe_code)]
pub fn batch_current_thread() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) only reads `param`, which lives for the whole call; pid
    // 0 names the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy (`libc::SCHED_*`).
    #[allow(unsafe_code)]
    fn current_policy() -> i32 {
        // SAFETY: sched_getscheduler(2) takes no pointer; pid 0 names the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_thread_lowers_itself_to_batch_and_its_siblings_keep_their_policy() {
        let before = current_policy();
        let inside = std::thread::spawn(|| {
            batch_current_thread().expect("SCHED_BATCH needs no privilege");
            current_policy()
        })
        .join()
        .expect("thread");
        assert_eq!(inside, libc::SCHED_BATCH);
        assert_eq!(current_policy(), before, "the policy is per thread");
    }
}
