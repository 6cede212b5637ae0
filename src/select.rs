//! Weighted pick of k distinct servers: the "pick" step of the answer.
//!
//! # Why not plain weighted sampling without replacement
//!
//! Drawing one server by weight, removing it and drawing again gives heavy servers *less*
//! than their share once they are likely to be drawn at all: in a set of one 1000-weight
//! server and four 10-weight ones with k = 2, the heavy one is in nearly every answer
//! (share ≈ 50 %) although it has 96 % of the net speed, and the light ones get far more
//! than 1 %. Volunteers are promised traffic proportional to net speed, so pooldns fixes
//! the *inclusion probability* of each server instead:
//!
//! * π_i = k·w_i / W, capped at 1 (a server heavier than 1/k of the set is in every answer;
//!   the cap is applied iteratively, the rest share k minus the capped count).
//! * Systematic sampling over an ordering of the set: lay the π_i end to end on [0, k),
//!   draw u in [0, 1) and take the servers under u, u+1, …, u+k−1. Each server's segment
//!   is at most 1 long, so it is hit with probability exactly π_i and never twice.
//! * One fixed ordering would freeze which servers come *together* (12 equal servers would
//!   only ever appear in 3 groups), so each set keeps several independently shuffled
//!   orderings and each query chooses one at random. Every ordering gives exact π_i, so
//!   the mixture does too.
//!
//! Per query: one random ordering, one u, k look-ups through a guide table (expected O(1)
//! each, O(log n)-free; at worst a short scan), no allocation.

use rand::Rng;
use rand::RngExt;
use rand::seq::SliceRandom;

/// The most records an answer can carry.
pub const MAX_PICK: usize = 16;

/// How many independently shuffled orderings a set of `n` members keeps: many for small
/// sets, where one ordering yields only a few distinct answers, and about 4,096 slots in all
/// for mid-size ones; at least 4 (from 1,024 members on), where each ordering already
/// yields n/k distinct answers and memory and build time matter more (a 100,000-server
/// feed has millions of slots across its pool zones and their numbered subsets).
pub fn orderings_for(n: usize) -> usize {
    (4096 / n.max(1)).clamp(4, 64)
}

/// A set of servers ready for picking: members with their inclusion probabilities laid
/// out in several orderings. Built once per table, read by every query.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Member ids (indices into the table's server list), in input order.
    members: Box<[u32]>,
    /// Inclusion probability of each member, same order as `members`.
    inclusion: Box<[f64]>,
    /// k: how many members an answer takes.
    k: usize,
    /// The length of one unit of the line [0, k) in fixed point: the line is `k · unit`
    /// long and fits in a u32.
    unit: u32,
    /// Orderings; empty when the set has at most k members (all are taken).
    orderings: Box<[Ordering]>,
}

/// The unit length for k: the largest that keeps `k · unit` within a u32.
fn unit_for(k: usize) -> u32 {
    u32::MAX / k.max(1) as u32 // k <= MAX_PICK
}

#[derive(Debug, Clone)]
struct Ordering {
    /// The members in this ordering, each with the end of its segment on the line: the
    /// running sum of π in fixed point (one unit of π = `Sampler::unit`), scaled so the
    /// last ends exactly at the end of the line. End and member sit side by side so that
    /// finding a segment touches one cache line; 8 bytes a slot keeps the millions of
    /// slots of a large feed small and quick to build.
    slots: Box<[Slot]>,
    /// guide[g] = the first slot whose segment ends past g · 2³² / n (n = number of
    /// slots): a point jumps straight to its neighbourhood instead of binary-searching the
    /// whole array, so a pick costs about two cache misses however large the set is.
    guide: Box<[u32]>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    end: u32,
    member: u32,
}

impl Ordering {
    /// Lays out `order` (members with their inclusion probabilities, which sum to
    /// `total`) on a line `line` long.
    fn new(order: &[(f64, u32)], total: f64, line: u32) -> Ordering {
        // Rounding may leave the total a hair off k: scale so that the last segment ends
        // exactly at the end of the line and no point falls past it. Segments are
        // hundreds of thousands of units long even in a 100,000-server set, so rounding
        // each end to a unit changes no inclusion probability by more than 1e-5 of itself.
        let scale = f64::from(line) / total;
        let mut sum = 0.0;
        let mut slots: Vec<Slot> = order
            .iter()
            .map(|&(pi, member)| {
                sum += pi;
                // Non-negative: + 0.5 and truncation round to nearest.
                Slot {
                    end: (sum * scale + 0.5).min(f64::from(line)) as u32,
                    member,
                }
            })
            .collect();
        if let Some(last) = slots.last_mut() {
            last.end = line;
        }
        let n = slots.len();
        let mut guide = Vec::with_capacity(n);
        let mut j = 0;
        for g in 0..n {
            let start = ((g as u64) << 32) / n as u64;
            while j + 1 < n && u64::from(slots[j].end) <= start {
                j += 1;
            }
            guide.push(j as u32); // j < n <= u32::MAX (members are u32 ids)
        }
        Ordering {
            slots: slots.into_boxed_slice(),
            guide: guide.into_boxed_slice(),
        }
    }

    /// The slot whose segment holds `point` (a point on the line).
    fn find(&self, point: u32) -> usize {
        let n = self.slots.len();
        // g · 2³² / n <= point: the guide entry is at or before the slot sought.
        let g = ((u64::from(point) * n as u64) >> 32) as usize;
        let mut j = self.guide[g] as usize;
        while j + 1 < n && self.slots[j].end <= point {
            j += 1;
        }
        j
    }
}

/// The result of a pick: up to [`MAX_PICK`] member ids, in random order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Picks {
    ids: [u32; MAX_PICK],
    len: usize,
}

impl Picks {
    /// The picked member ids.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    fn push(&mut self, id: u32) {
        if self.len < MAX_PICK {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }
}

/// Inclusion probabilities π_i = min(1, k·w_i/W) with the cap applied iteratively, so
/// that they sum to min(k, n). Weights must be positive.
pub fn inclusion_probabilities(weights: &[u32], k: usize) -> Vec<f64> {
    let n = weights.len();
    if n <= k {
        return vec![1.0; n];
    }
    let mut by_weight: Vec<usize> = (0..n).collect();
    by_weight.sort_unstable_by(|&a, &b| weights[b].cmp(&weights[a]));
    let mut remaining_weight: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut remaining_k = k as f64;
    let mut pi = vec![0.0; n];
    let mut capped = 0;
    // Heaviest first: once one is below the cap, all lighter ones are too.
    for &i in &by_weight {
        let w = f64::from(weights[i]);
        if remaining_k * w >= remaining_weight {
            pi[i] = 1.0;
            capped += 1;
            remaining_k -= 1.0;
            remaining_weight -= w;
        } else {
            break;
        }
    }
    for &i in &by_weight[capped..] {
        pi[i] = remaining_k * f64::from(weights[i]) / remaining_weight;
    }
    pi
}

impl Sampler {
    /// Builds a sampler over `members` (ids) with positive `weights`, taking `k` per pick.
    /// `rng` shuffles the orderings (build time only).
    pub fn new<R: Rng + ?Sized>(members: Vec<u32>, weights: &[u32], k: usize, rng: &mut R) -> Self {
        debug_assert_eq!(members.len(), weights.len());
        let k = k.clamp(1, MAX_PICK);
        let unit = unit_for(k);
        let inclusion = inclusion_probabilities(weights, k);
        let orderings = if members.len() <= k {
            Vec::new()
        } else {
            // Shuffled as pairs, so that laying an ordering out reads memory in order.
            let mut order: Vec<(f64, u32)> = inclusion
                .iter()
                .copied()
                .zip(members.iter().copied())
                .collect();
            let total = inclusion.iter().sum();
            (0..orderings_for(members.len()))
                .map(|_| {
                    order.shuffle(rng);
                    Ordering::new(&order, total, unit * k as u32)
                })
                .collect()
        };
        Sampler {
            members: members.into_boxed_slice(),
            inclusion: inclusion.into_boxed_slice(),
            k,
            unit,
            orderings: orderings.into_boxed_slice(),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member ids in input order.
    pub fn members(&self) -> &[u32] {
        &self.members
    }

    /// Inclusion probability of each member, in the order of [`Sampler::members`].
    pub fn inclusion(&self) -> &[f64] {
        &self.inclusion
    }

    /// Picks min(k, n) distinct members, each with its inclusion probability, in random
    /// order. O(k log n), no allocation.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Picks {
        let mut picks = Picks::default();
        if self.orderings.is_empty() {
            for &m in self.members.iter() {
                picks.push(m);
            }
        } else {
            let ordering = &self.orderings[rng.random_range(0..self.orderings.len())];
            let u = rng.random_range(0..self.unit);
            let mut previous = usize::MAX;
            for step in 0..self.k as u32 {
                // < k · unit: fits the line.
                let j = ordering.find(u + step * self.unit);
                // Segments are at most 1 long, so j grows strictly; the check guards
                // against rounding only.
                if j != previous {
                    picks.push(ordering.slots[j].member);
                    previous = j;
                }
            }
        }
        picks.ids[..picks.len].shuffle(rng);
        picks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn inclusion_is_proportional_and_capped() {
        let pi = inclusion_probabilities(&[100, 100, 100, 100, 100, 100, 100, 100], 4);
        assert!(pi.iter().all(|&p| (p - 0.5).abs() < 1e-12));
        // One server with more than 1/4 of the weight is capped; the rest share 3.
        let pi = inclusion_probabilities(&[1000, 10, 10, 10, 10, 10, 10], 4);
        assert_eq!(pi[0], 1.0);
        assert!(pi[1..].iter().all(|&p| (p - 0.5).abs() < 1e-12));
        // The cap cascades: capping the first pushes the second over its cap.
        let pi = inclusion_probabilities(&[1000, 400, 100, 100, 100, 100], 4);
        assert_eq!(&pi[..2], &[1.0, 1.0]);
        assert!(pi[2..].iter().all(|&p| (p - 0.5).abs() < 1e-12));
        let sum: f64 = inclusion_probabilities(&[3, 5, 7, 11, 13, 17, 19], 4)
            .iter()
            .sum();
        assert!((sum - 4.0).abs() < 1e-12);
        assert_eq!(inclusion_probabilities(&[5, 9], 4), [1.0, 1.0]);
    }

    #[test]
    fn picks_are_distinct_and_never_more_than_k() {
        let mut rng = StdRng::seed_from_u64(1);
        let weights = [
            512, 3_000_000, 1500, 25_000, 100_000, 100_000, 6000, 1_000_000, 512,
        ];
        let s = Sampler::new((0..9).collect(), &weights, 4, &mut rng);
        for _ in 0..10_000 {
            let p = s.pick(&mut rng);
            assert_eq!(p.as_slice().len(), 4);
            let mut ids = p.as_slice().to_vec();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 4);
        }
        let small = Sampler::new(vec![7, 9], &[1, 1000], 4, &mut rng);
        let mut got = small.pick(&mut rng).as_slice().to_vec();
        got.sort_unstable();
        assert_eq!(got, [7, 9]);
        assert!(
            Sampler::new(vec![], &[], 4, &mut rng)
                .pick(&mut rng)
                .as_slice()
                .is_empty()
        );
    }

    /// Counts, over `n` picks, how often each member is included.
    fn observed(s: &Sampler, n: usize, rng: &mut StdRng) -> Vec<f64> {
        let mut counts = vec![0usize; s.len()];
        for _ in 0..n {
            for &id in s.pick(rng).as_slice() {
                counts[id as usize] += 1;
            }
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    /// Exact inclusion probabilities of plain sequential weighted sampling without
    /// replacement (draw by weight, remove, repeat), by enumerating every draw sequence.
    fn sequential_inclusion(weights: &[f64], k: usize) -> Vec<f64> {
        fn walk(weights: &[f64], taken: &mut Vec<usize>, p: f64, k: usize, out: &mut [f64]) {
            if taken.len() == k {
                for &i in taken.iter() {
                    out[i] += p;
                }
                return;
            }
            let rest: f64 = (0..weights.len())
                .filter(|i| !taken.contains(i))
                .map(|i| weights[i])
                .sum();
            for i in 0..weights.len() {
                if !taken.contains(&i) {
                    taken.push(i);
                    walk(weights, taken, p * weights[i] / rest, k, out);
                    taken.pop();
                }
            }
        }
        let mut out = vec![0.0; weights.len()];
        walk(weights, &mut Vec::new(), 1.0, k, &mut out);
        out
    }

    #[test]
    fn shares_match_net_speed_in_a_small_skewed_zone_where_sequential_sampling_fails() {
        // A small country zone: two big servers, a few mid-size, several small ones.
        let weights: [u32; 10] = [
            50_000, 50_000, 25_000, 25_000, 25_000, 12_000, 12_000, 6000, 3000, 1500,
        ];
        let k = 4;
        let pi = inclusion_probabilities(&weights, k);
        // Nobody is above 1/k of the total here, so the promise is exact proportionality.
        assert!(pi.iter().all(|&p| p < 1.0));
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (p, &w) in pi.iter().zip(&weights) {
            assert!((p - k as f64 * f64::from(w) / total).abs() < 1e-12);
        }

        // Plain sequential sampling misses the target badly (exact, not sampled).
        let seq = sequential_inclusion(&weights.map(f64::from), k);
        let worst_seq = seq
            .iter()
            .zip(&pi)
            .map(|(s, p)| (s / p - 1.0).abs())
            .fold(0.0, f64::max);
        assert!(
            worst_seq > 0.25,
            "sequential sampling off by only {worst_seq}"
        );

        // Ours hits every target within sampling noise: 400k picks, 6 standard errors.
        let mut rng = StdRng::seed_from_u64(20261122);
        let s = Sampler::new((0..weights.len() as u32).collect(), &weights, k, &mut rng);
        let n = 400_000;
        let got = observed(&s, n, &mut rng);
        for (i, (&g, &p)) in got.iter().zip(&pi).enumerate() {
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (g - p).abs() < 6.0 * se,
                "server {i}: observed {g}, expected {p}"
            );
        }
    }

    #[test]
    fn combinations_are_not_frozen() {
        // 12 equal servers: one systematic ordering would only ever give 3 groups.
        let mut rng = StdRng::seed_from_u64(3);
        let s = Sampler::new((0..12).collect(), &[1000; 12], 4, &mut rng);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let mut ids = s.pick(&mut rng).as_slice().to_vec();
            ids.sort_unstable();
            seen.insert(ids);
        }
        assert!(
            seen.len() >= 100,
            "only {} distinct answer sets",
            seen.len()
        );
    }

    #[test]
    fn guided_find_agrees_with_binary_search() {
        let mut rng = StdRng::seed_from_u64(5);
        for n in [5usize, 9, 100, 1000] {
            let weights: Vec<u32> = (0..n).map(|_| rng.random_range(1..3_000_000)).collect();
            let s = Sampler::new((0..n as u32).collect(), &weights, 4, &mut rng);
            let line = s.unit * 4;
            for o in s.orderings.iter() {
                for p in (0..2000)
                    .map(|_| rng.random_range(0..line))
                    .chain([0, 1, line - 1])
                {
                    let expected = o.slots.partition_point(|s| s.end <= p).min(n - 1);
                    assert_eq!(o.find(p), expected, "n {n} point {p}");
                }
                // Every segment holds its own end minus one.
                for (j, slot) in o.slots.iter().enumerate() {
                    if j == 0 || slot.end > o.slots[j - 1].end {
                        assert_eq!(o.find(slot.end - 1), j);
                    }
                }
            }
        }
    }

    #[test]
    fn answer_order_is_random() {
        let mut rng = StdRng::seed_from_u64(4);
        let s = Sampler::new((0..4).collect(), &[1, 1, 1, 1], 4, &mut rng);
        let mut first = [0usize; 4];
        for _ in 0..4000 {
            first[s.pick(&mut rng).as_slice()[0] as usize] += 1;
        }
        assert!(first.iter().all(|&c| c > 800), "{first:?}");
    }
}
