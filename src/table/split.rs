//! The numbered split: a pool zone's servers divided into disjoint subsets of nearly equal
//! total net speed, one per numbered name, reshuffled every rotation period.
//!
//! Greedy "largest first": servers are shuffled with a seed derived from the epoch and the
//! zone (so every instance of a fleet computes the same split for the same hour), sorted
//! by net speed with the shuffle as tie-break, and each goes to the subset with the
//! smallest total so far, ties between subsets broken at random. Every server lands in
//! exactly one subset; the shuffle makes the subsets change from one epoch to the next.

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A zone splits only from this many servers on; smaller zones serve every server under
/// every numbered name.
pub const MIN_SERVERS_TO_SPLIT: usize = 8;

/// Assigns each of `weights` to one of `parts` subsets; returns the subset of each.
pub fn split(weights: &[u32], parts: usize, seed: u64) -> Vec<usize> {
    let parts = parts.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.shuffle(&mut rng);
    // Stable: equal weights keep their shuffled order.
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]));
    let mut totals = vec![0u64; parts];
    let mut part_of = vec![0usize; weights.len()];
    for i in order {
        let start = rng.random_range(0..parts);
        let mut best = start;
        for step in 1..parts {
            let p = (start + step) % parts;
            if totals[p] < totals[best] {
                best = p;
            }
        }
        totals[best] += u64::from(weights[i]);
        part_of[i] = best;
    }
    part_of
}

/// Mixes an epoch, a zone index and an address family into a split seed (SplitMix64).
pub fn seed(epoch: u64, zone: usize, family: usize) -> u64 {
    let mut z = epoch
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((zone as u64) << 8 | family as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEEDS: [u32; 14] = [
        512, 1500, 3000, 6000, 12000, 25000, 50000, 100_000, 250_000, 500_000, 1_000_000,
        1_500_000, 2_000_000, 3_000_000,
    ];

    fn weights(n: usize, seed: u64) -> Vec<u32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| SPEEDS[rng.random_range(0..SPEEDS.len())])
            .collect()
    }

    #[test]
    fn every_server_in_exactly_one_balanced_subset() {
        let w = weights(400, 9);
        let parts = split(&w, 4, 77);
        assert_eq!(parts.len(), w.len());
        let mut totals = [0u64; 4];
        let mut counts = [0usize; 4];
        for (i, &p) in parts.iter().enumerate() {
            totals[p] += u64::from(w[i]);
            counts[p] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0));
        let (lo, hi) = (totals.iter().min().unwrap(), totals.iter().max().unwrap());
        // Greedy largest-first is within the largest single weight of perfect.
        assert!(hi - lo <= u64::from(*w.iter().max().unwrap()), "{totals:?}");
        assert!((*hi as f64) / (*lo as f64) < 1.05, "{totals:?}");
    }

    #[test]
    fn same_seed_same_split_new_epoch_new_split() {
        let w = weights(50, 1);
        assert_eq!(split(&w, 4, seed(10, 0, 0)), split(&w, 4, seed(10, 0, 0)));
        assert_ne!(split(&w, 4, seed(10, 0, 0)), split(&w, 4, seed(11, 0, 0)));
        assert_ne!(seed(10, 1, 0), seed(10, 0, 1));
    }
}
