//! A cache prefetch hint, safe to call: the one place the per-query path asks the CPU to
//! start loading memory it is about to read.
//!
//! Why by hand: a query's pick reads a few entries at random places among the table's
//! hundreds of megabytes (guide, slot, address), and each read is a cache miss. Issued one
//! after another, the misses add up; hinted together, they overlap. No crate wraps the
//! intrinsic for stable Rust, and std offers it only as an unsafe function.

/// Hints the CPU to bring the cache line holding `value` into every cache level. Does
/// nothing on other architectures.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of every x86_64 CPU, and a prefetch is only a hint: it
        // never faults and changes nothing but the cache. The pointer comes from a
        // reference besides.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
