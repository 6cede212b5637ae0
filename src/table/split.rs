//! The numbered split: a pool zone's servers divided into disjoint subsets, one per numbered
//! name (`0.` … `3.`), made anew every rotation period — or, where no split keeps the
//! net-speed promise, no split: then every numbered name serves the whole zone.
//!
//! # The rule
//!
//! Clients (`pool` lines of ntpd and chrony) ask every numbered name about equally often, so
//! a server's share of the numbered answers is its expected records over all the records the
//! numbered names give: π_i^p / R, where π_i^p is its inclusion probability in its subset p
//! (the sampler's own, [`inclusion_probabilities`], capped at 1) and R = Σ_p min(k, |p|) the
//! records one query to each numbered name returns (k = records per answer). At the
//! unnumbered name it is π_i / min(k, n) over the whole zone: exactly its share of net
//! speed, unless it is capped. A zone is split only when every server's numbered share is
//! within [`SHARE_TOLERANCE`] of its unnumbered one; otherwise (and below
//! [`MIN_SERVERS_TO_SPLIT`] servers) the numbered names carry the whole zone. Both shares
//! are computed exactly, from the probabilities the samplers will use, once per table build.
//!
//! So a zone of 8 servers of 3 Gbit, 1 Gbit and six at 512 kbit is not split: the 3 Gbit
//! server is in every answer of the whole zone (a quarter of all records), while no subset
//! can give it more than one of the 7 or more records the four names return together.
//!
//! # Finding a split
//!
//! Subsets come in two kinds. One of at most k servers puts each of them in every answer:
//! each gets 1/R of the numbered records, whatever its net speed. In a larger one, as long
//! as nobody in it is capped, each member gets k·w_i / (W_p·R) (W_p: the subset's total
//! net speed), the same multiple k·W / (R·W_p) of its whole-zone share w_i / W for all of
//! them. So a split has a *shape*: L large subsets, and the S heaviest servers spread over
//! the small ones (R = S + k·L). It keeps the promise when those S have whole-zone shares
//! near 1/R and the large subsets have totals near k·W/R each. `shapes` lists the shapes
//! the whole-zone shares allow; most uneven small zones allow none and are served whole at
//! once, large zones allow only "every subset large".
//!
//! Each of up to [`ATTEMPTS`] attempts gives every server a key, a hash of the attempt's
//! seed and the server's feed id (not its position: instances may read the feed in
//! different orders), ranks the servers heaviest first with the keys breaking ties, and
//! fills in every allowed shape:
//!
//! 1. **Small subsets**: the S heaviest servers in key order, one to each in turn.
//! 2. **Deal** the rest to the large subsets, heaviest first, each to a subset chosen by its
//!    key among those it fits into without passing the mean total, else to the lightest.
//!    This random choice is what makes the groupings change every epoch, also when all net
//!    speeds differ.
//! 3. **Trade**: the heaviest and the lightest large subset move or swap the server(s)
//!    that best even their totals, until all are within a quarter of the tolerance: closer
//!    than needed, but no closer, so that the deal's randomness stays.
//! 4. **Check** the exact shares.
//!
//! The attempt's best shape is the split if it keeps every share within the tolerance; the
//! subsets go to the numbered names in a random order, so that `0.` is not always a small
//! one. A zone whose attempts all fail is served whole. A split costs O(n log n) per attempt
//! and shape, at table build time; large zones pass at the first attempt.
//!
//! # Why a generator of our own
//!
//! Every instance of a fleet must compute the same split for the same hour, also while a
//! rolling upgrade runs two versions side by side. rand's `StdRng` and `shuffle` do not
//! promise the same output across versions, so the split uses SplitMix64 (Steele, Lea and
//! Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), written out below,
//! and FNV-1a for zone names. Unit tests check both against their reference outputs, and
//! golden values (`tests/it/split.rs`) pin the split itself: any change of its output
//! shows there.

use super::Family;
use crate::select::{MAX_PICK, inclusion_probabilities};

/// A zone splits only from this many servers on; smaller zones serve every server under
/// every numbered name.
pub const MIN_SERVERS_TO_SPLIT: usize = 8;

/// How far a server's share of the numbered names' answers may be from its share of the
/// unnumbered name's answers, relative to the latter: 0.10 allows 0.9 to 1.1 times it. A
/// zone no split keeps within this is served whole under every numbered name.
pub const SHARE_TOLERANCE: f64 = 0.10;

/// Seeded attempts per zone, family and epoch before the zone is served whole. Each fills
/// in the allowed shapes with other random choices; most zones that split at all do at
/// the first.
pub const ATTEMPTS: usize = 8;

/// Trading stops once every large subset's share ratio is this close to 1: closer than
/// needed, so there is room, but not as close as possible, which would undo the deal's
/// randomness.
const AIM: f64 = SHARE_TOLERANCE / 4.0;

/// Trades between subsets per subset at most.
const TRADES_PER_PART: usize = 8;

/// Splits servers with net speeds `weights` and feed ids `ids` into `parts` subsets for
/// answers of `records` records; returns the subset of each, or `None` when the zone is
/// too small or no split keeps every server within [`SHARE_TOLERANCE`]. The same inputs
/// (in any order) and seed give the same split.
pub fn split(
    weights: &[u32],
    ids: &[u64],
    parts: usize,
    records: usize,
    seed: u64,
) -> Option<Vec<usize>> {
    let n = weights.len();
    let parts = parts.max(1);
    // As Sampler::new takes k.
    let k = records.clamp(1, MAX_PICK);
    // Positions fit in 32 bits (the table's member ids are u32 too).
    if n < MIN_SERVERS_TO_SPLIT.max(parts)
        || u32::try_from(n).is_err()
        || ids.len() != n
        || weights.contains(&0)
    {
        return None;
    }
    // Heaviest first: the order of every attempt below, whatever breaks the ties.
    let mut sorted = weights.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    // Non-increasing, as shares grow with net speed.
    let target = whole_shares(&sorted, k);
    let shapes = shapes(&target, parts, k);
    if shapes.is_empty() {
        return None;
    }
    let zone = Ranked {
        weights: sorted,
        target,
        parts,
        k,
    };
    let mut stream = SplitMix64(seed);
    for _ in 0..ATTEMPTS {
        let attempt = stream.next();
        // Servers of equal net speed in key order; the position breaks ties only between
        // duplicate ids. Packed into one number (net speed inverted, key, position: 32 +
        // 64 + 32 bits), as sorting those is several times faster than sorting tuples.
        let mut ranked: Vec<u128> = weights
            .iter()
            .zip(ids)
            .enumerate()
            .map(|(i, (&w, &id))| {
                u128::from(!w) << 96 | u128::from(mix(attempt ^ id)) << 32 | i as u128
            })
            .collect();
        ranked.sort_unstable();
        let keys: Vec<u64> = ranked.iter().map(|&r| (r >> 32) as u64).collect();
        let labels = permutation(parts, &mut stream);
        // The shape that comes closest to the promise (the first of equals).
        let best = shapes
            .iter()
            .map(|&shape| {
                let part = build(&zone, &keys, shape);
                (worst_deviation(&zone, &part), part)
            })
            .reduce(|best, next| if next.0 < best.0 { next } else { best });
        if let Some((deviation, part)) = best
            && deviation <= SHARE_TOLERANCE
        {
            let mut part_of = vec![0; n];
            for (&r, &p) in ranked.iter().zip(&part) {
                // The low 32 bits hold the position.
                part_of[r as u32 as usize] = labels[p];
            }
            return Some(part_of);
        }
    }
    None
}

/// Each server's share of the numbered names' answers over its share of the unnumbered
/// name's, for servers with net speeds `weights` split as `part_of` into `parts` subsets
/// and answers of `records` records. 1.0 is exactly the promise.
pub fn share_ratios(weights: &[u32], part_of: &[usize], parts: usize, records: usize) -> Vec<f64> {
    let k = records.clamp(1, MAX_PICK);
    let zone = Ranked {
        weights: weights.to_vec(),
        target: whole_shares(weights, k),
        parts,
        k,
    };
    ratios(&zone, part_of)
}

/// The split seed of a zone (by its label: "@" global, "europe", "de") and family in a
/// rotation epoch. A zone's label, not its index, so that a new country code in a later
/// version does not move every other zone's split.
pub fn seed(epoch: u64, zone: &str, family: Family) -> u64 {
    mix(mix(mix(epoch) ^ fnv1a(zone.as_bytes())) ^ family as u64)
}

/// SplitMix64: the state advances by the golden-ratio increment, each output is the state
/// through [`mix`].
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number below `n`: the high half of an output scaled to n (Lemire's multiply-shift
    /// without the rejection step; its bias, below n / 2³², does not matter here).
    fn below(&mut self, n: usize) -> usize {
        scale(self.next() >> 32, n)
    }
}

/// SplitMix64's output function: a bijection of u64 that mixes every bit into every other.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 32-bit number (in a u64) scaled to `0..n`.
fn scale(x: u64, n: usize) -> usize {
    (((x & 0xFFFF_FFFF) * n as u64) >> 32) as usize
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A random permutation of `0..n` (Fisher–Yates): which numbered name gets which subset.
fn permutation(n: usize, stream: &mut SplitMix64) -> Vec<usize> {
    let mut labels: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        labels.swap(i, stream.below(i + 1));
    }
    labels
}

/// A zone as one attempt sees it: servers in rank order (heaviest first).
struct Ranked {
    /// Net speeds.
    weights: Vec<u32>,
    /// Shares of the unnumbered name's records.
    target: Vec<f64>,
    /// Subsets.
    parts: usize,
    /// Records per answer.
    k: usize,
}

/// Each server's share of the records of the whole zone: π_i / min(k, n).
fn whole_shares(weights: &[u32], k: usize) -> Vec<f64> {
    let per_answer = weights.len().min(k) as f64;
    inclusion_probabilities(weights, k)
        .into_iter()
        .map(|pi| pi / per_answer)
        .collect()
}

/// The shape of a split: `large` subsets of more than k servers each, and `parts − large`
/// subsets of at most k, holding the `small` heaviest servers between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    large: usize,
    small: usize,
}

/// The shapes a split within the tolerance can have, judged from the unnumbered shares t
/// (sorted, largest first) alone. Shapes with more large subsets come first (their names
/// answer more servers), which decides between equally good ones.
///
/// A subset of at most k servers puts each in every answer, a share of exactly 1/R; a
/// larger one gives each at most 1/R. So a shape with L large subsets and S servers in the
/// small ones (R = S + k·L) needs the largest t to be at most 1/(R·(1 − tolerance)), and S
/// servers whose t is within the tolerance of 1/R: the S heaviest are taken, as the ones
/// most likely to be capped in a large subset. Necessary, not sufficient: a shape that
/// passes still has to be filled in and checked.
fn shapes(target: &[f64], parts: usize, k: usize) -> Vec<Shape> {
    let n = target.len();
    let largest = target.first().copied().unwrap_or(0.0);
    // Leeway for rounding: this must never turn down a split the exact check would pass.
    let (low, high) = (
        (1.0 - SHARE_TOLERANCE) * (1.0 - 1e-9),
        (1.0 + SHARE_TOLERANCE) * (1.0 + 1e-9),
    );
    let mut shapes = Vec::new();
    for large in (0..=parts).rev() {
        let small_parts = parts - large;
        for small in small_parts..=(small_parts * k).min(n) {
            let in_large = n - small;
            let sizes_fit = if large == 0 {
                in_large == 0
            } else {
                in_large >= large * (k + 1)
            };
            let records = (small + k * large) as f64;
            // t non-increasing: the first `small` are in the band if the last of them is
            // (1 <= small <= n, the loop's bound).
            let in_band = small == 0 || target[small - 1] * records * high >= 1.0;
            if sizes_fit && largest * records * low <= 1.0 && in_band {
                shapes.push(Shape { large, small });
            }
        }
    }
    shapes
}

/// Fills in a shape for one attempt: the `small` heaviest servers spread evenly over the
/// small subsets in key order, the rest dealt to the large ones and traded to even totals.
/// Subsets `0..parts − large` are the small ones.
fn build(zone: &Ranked, keys: &[u64], shape: Shape) -> Vec<usize> {
    let small_parts = zone.parts - shape.large;
    let mut part = vec![0; zone.weights.len()];
    let mut by_key: Vec<usize> = (0..shape.small).collect();
    by_key.sort_by_key(|&i| keys[i]);
    for (j, &i) in by_key.iter().enumerate() {
        part[i] = j % small_parts.max(1);
    }
    if shape.large > 0 {
        let rest = &zone.weights[shape.small..];
        let mut large = deal(rest, &keys[shape.small..], shape.large);
        trade(rest, &mut large, shape.large);
        for (slot, p) in part[shape.small..].iter_mut().zip(large) {
            *slot = small_parts + p;
        }
    }
    part
}

/// Heaviest first, each server to a subset picked by its key among those with room below
/// the mean total, else to the lightest. Leaves no subset empty.
fn deal(weights: &[u32], keys: &[u64], parts: usize) -> Vec<usize> {
    let n = weights.len();
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut totals = vec![0u128; parts];
    let mut sizes = vec![0usize; parts];
    let mut empty = parts;
    let mut part = Vec::with_capacity(n);
    let mut choice = Vec::with_capacity(parts);
    for (rank, (&weight, &key)) in weights.iter().zip(keys).enumerate() {
        let weight = u128::from(weight);
        choice.clear();
        if empty >= n - rank {
            // As many empty subsets as servers left: one each.
            choice.extend((0..parts).filter(|&p| sizes[p] == 0));
        } else {
            choice.extend((0..parts).filter(|&p| (totals[p] + weight) * parts as u128 <= total));
        }
        let p = if choice.is_empty() {
            (0..parts).min_by_key(|&p| totals[p]).unwrap_or(0)
        } else {
            // The key's low half (its high half orders the servers of equal speed).
            choice[scale(key, choice.len())]
        };
        if sizes[p] == 0 {
            empty -= 1;
        }
        totals[p] += weight;
        sizes[p] += 1;
        part.push(p);
    }
    part
}

/// The members of each subset, in rank order.
fn members_of(part: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); parts];
    for (rank, &p) in part.iter().enumerate() {
        members[p].push(rank);
    }
    members
}

/// Each server's numbered share over its unnumbered one (see the module doc).
fn ratios(zone: &Ranked, part: &[usize]) -> Vec<f64> {
    ratios_of(zone, &members_of(part, zone.parts))
}

/// [`ratios`], from the members of each subset.
fn ratios_of(zone: &Ranked, members: &[Vec<usize>]) -> Vec<f64> {
    let n = members.iter().map(Vec::len).sum();
    let records: usize = members.iter().map(|m| m.len().min(zone.k)).sum();
    let mut ratio = vec![0.0; n];
    let mut weights = Vec::new();
    for m in members {
        weights.clear();
        weights.extend(m.iter().map(|&i| zone.weights[i]));
        for (&i, pi) in m.iter().zip(inclusion_probabilities(&weights, zone.k)) {
            ratio[i] = pi / records as f64 / zone.target[i];
        }
    }
    ratio
}

/// The largest |ratio − 1| of a split; infinite when a subset is empty.
fn worst_deviation(zone: &Ranked, part: &[usize]) -> f64 {
    let members = members_of(part, zone.parts);
    if members.iter().any(Vec::is_empty) {
        return f64::INFINITY;
    }
    ratios_of(zone, &members)
        .iter()
        .map(|r| (r - 1.0).abs())
        .fold(0.0, f64::max)
}

/// The heaviest and the lightest subset trade the server (or swap the pair) that best
/// evens their net speed totals, until every subset's ratio W / (parts · W_p) is within
/// [`AIM`] of 1 or no trade helps.
fn trade(weights: &[u32], part: &mut [usize], parts: usize) {
    let mut members = members_of(part, parts);
    let mut totals: Vec<u64> = members
        .iter()
        .map(|m| m.iter().map(|&i| u64::from(weights[i])).sum())
        .collect();
    let total: u64 = totals.iter().sum();
    let ratio = |t: u64| total as f64 / (parts as f64 * t as f64);
    for _ in 0..TRADES_PER_PART * parts {
        // Subsets are never empty here (the deal fills each, trades keep one), so the
        // totals are positive.
        let (Some(heavy), Some(light)) = (
            (0..parts).max_by_key(|&p| (totals[p], std::cmp::Reverse(p))),
            (0..parts).min_by_key(|&p| (totals[p], p)),
        ) else {
            return;
        };
        if ratio(totals[heavy]) >= 1.0 - AIM && ratio(totals[light]) <= 1.0 + AIM {
            return;
        }
        let gap = totals[heavy] - totals[light];
        let Some((out, back)) = best_trade(weights, &members[heavy], &members[light], gap) else {
            return;
        };
        let mut moved = |i: usize, from: usize, to: usize| {
            members[from].retain(|&j| j != i);
            let at = members[to].partition_point(|&j| j < i);
            members[to].insert(at, i);
            totals[from] -= u64::from(weights[i]);
            totals[to] += u64::from(weights[i]);
            part[i] = to;
        };
        moved(out, heavy, light);
        if let Some(back) = back {
            moved(back, light, heavy);
        }
    }
}

/// The member of `heavy` to move to `light`, with the member of `light` to move back if a
/// swap is better, that brings their totals (`gap` apart) closest together; `None` if
/// nothing narrows the gap. Members are in rank order, so their net speeds are non-increasing.
fn best_trade(
    weights: &[u32],
    heavy: &[usize],
    light: &[usize],
    gap: u64,
) -> Option<(usize, Option<usize>)> {
    let gap = i128::from(gap);
    // Moving x from heavy to light leaves a gap of |gap − 2x|; it narrows for 0 < x < gap.
    let mut best: Option<(i128, usize, Option<usize>)> = None;
    let mut consider = |x: i128, out: usize, back: Option<usize>| {
        let left = (gap - 2 * x).abs();
        if x > 0 && x < gap && best.is_none_or(|(b, _, _)| left < b) {
            best = Some((left, out, back));
        }
    };
    for &out in heavy {
        let w = i128::from(weights[out]);
        if heavy.len() > 1 {
            consider(w, out, None);
        }
        // The partner nearest to w − gap/2, from either side.
        let at = light.partition_point(|&j| 2 * i128::from(weights[j]) > 2 * w - gap);
        for &back in &light[at.saturating_sub(1)..(at + 1).min(light.len())] {
            consider(w - i128::from(weights[back]), out, Some(back));
        }
    }
    best.map(|(_, out, back)| (out, back))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEEDS: [u32; 14] = [
        512, 1500, 3000, 6000, 12000, 25000, 50000, 100_000, 250_000, 500_000, 1_000_000,
        1_500_000, 2_000_000, 3_000_000,
    ];

    /// `n` pool-like net speeds, drawn with SplitMix64 from `seed`.
    fn weights(n: usize, seed: u64) -> Vec<u32> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| SPEEDS[(rng.next() % SPEEDS.len() as u64) as usize])
            .collect()
    }

    fn ids(n: usize) -> Vec<u64> {
        (1001..).take(n).collect()
    }

    #[test]
    fn splitmix64_and_fnv1a_give_their_reference_outputs() {
        // Rosetta Code, "Pseudo-random numbers/Splitmix64".
        let mut rng = SplitMix64(1_234_567);
        let first: Vec<u64> = (0..5).map(|_| rng.next()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
        // The FNV reference values.
        assert_eq!(fnv1a(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn seeds_differ_by_epoch_zone_and_family() {
        let s = seed(10, "de", Family::V4);
        assert_eq!(s, seed(10, "de", Family::V4));
        for other in [
            seed(11, "de", Family::V4),
            seed(10, "fr", Family::V4),
            seed(10, "de", Family::V6),
            seed(10, "@", Family::V4),
        ] {
            assert_ne!(s, other);
        }
    }

    #[test]
    fn a_small_uneven_zone_is_served_whole() {
        // From the issue: split four ways, a 512 kbit server got as many numbered answers
        // as the 3 Gbit one.
        let w = [3_000_000, 1_000_000, 512, 512, 512, 512, 512, 512];
        let mut t = whole_shares(&w, 4);
        t.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(shapes(&t, 4, 4), []);
        assert_eq!(split(&w, &ids(8), 4, 4, 1), None);
    }

    #[test]
    fn a_server_too_heavy_for_a_large_subset_gets_one_of_its_own() {
        // 300 Mbit beside 36 of 100 Mbit: 3.9 Gbit in all, so it has 1/13 of the records at
        // the unnumbered name. In one of four large subsets it would be capped at 1/16; alone
        // in a subset it has one record of the 13 that one query to each name returns.
        let w: Vec<u32> = [300_000].into_iter().chain([100_000; 36]).collect();
        for epoch in 0..20 {
            let parts = split(&w, &ids(37), 4, 4, seed(epoch, "de", Family::V4)).expect("splits");
            assert!(
                parts[1..].iter().all(|&p| p != parts[0]),
                "epoch {epoch}: not alone"
            );
            for r in share_ratios(&w, &parts, 4, 4) {
                assert!((r - 1.0).abs() < 1e-9, "epoch {epoch}: {r}");
            }
        }
    }

    #[test]
    fn seven_servers_are_never_split_and_eight_equal_ones_go_two_by_two() {
        assert_eq!(split(&[1000; 7], &ids(7), 4, 4, 1), None);
        for epoch in 0..20 {
            let parts = split(&[1000; 8], &ids(8), 4, 4, seed(epoch, "de", Family::V4))
                .expect("eight equal servers split");
            let mut counts = [0; 4];
            for p in parts {
                counts[p] += 1;
            }
            assert_eq!(counts, [2; 4]);
        }
    }

    #[test]
    fn every_split_keeps_every_share_within_the_tolerance() {
        let mut splits = 0;
        for n in [8, 9, 12, 16, 24, 32, 33, 40, 100, 400] {
            for zone in 0..40 {
                // Pool-like zones, and zones of near-equal servers that can split.
                let near_equal: Vec<u32> = weights(n, zone)
                    .iter()
                    .map(|w| 100_000 + w % 9_000)
                    .collect();
                for w in [weights(n, zone), near_equal] {
                    let Some(part_of) = split(&w, &ids(n), 4, 4, seed(zone, "x", Family::V4))
                    else {
                        continue;
                    };
                    splits += 1;
                    assert_eq!(part_of.len(), n);
                    assert!((0..4).all(|p| part_of.contains(&p)), "an empty subset");
                    for r in share_ratios(&w, &part_of, 4, 4) {
                        assert!((r - 1.0).abs() <= SHARE_TOLERANCE, "n {n} zone {zone}: {r}");
                    }
                }
            }
        }
        assert!(splits > 400, "only {splits} splits");
    }

    #[test]
    fn large_pool_like_zones_split_with_balanced_totals() {
        let w = weights(400, 9);
        let parts = split(&w, &ids(400), 4, 4, 77).expect("400 servers split");
        let mut totals = [0u64; 4];
        for (i, &p) in parts.iter().enumerate() {
            totals[p] += u64::from(w[i]);
        }
        let (lo, hi) = (totals.iter().min().unwrap(), totals.iter().max().unwrap());
        assert!((*hi as f64) / (*lo as f64) < 1.05, "{totals:?}");
    }

    #[test]
    fn groupings_change_from_epoch_to_epoch_although_every_net_speed_differs() {
        // The old greedy only reordered ties: 12 distinct speeds got 2 groupings in 200
        // epochs.
        let w: Vec<u32> = (0..12).map(|i| 95_000 + 1_000 * i).collect();
        let mut groupings = std::collections::HashSet::new();
        for epoch in 0..200 {
            let parts = split(&w, &ids(12), 4, 4, seed(epoch, "de", Family::V4)).expect("splits");
            // The grouping, whatever the subsets' numbers.
            let mut groups: Vec<Vec<usize>> = (0..4)
                .map(|p| (0..12).filter(|&i| parts[i] == p).collect())
                .collect();
            groups.sort();
            groupings.insert(groups);
        }
        assert!(groupings.len() >= 150, "{} groupings", groupings.len());
    }

    #[test]
    fn the_split_follows_ids_not_positions() {
        let n = 40;
        let w = weights(n, 3);
        let id = ids(n);
        let s = seed(5, "de", Family::V4);
        let parts = split(&w, &id, 4, 4, s).expect("splits");
        let reversed = |v: &[u32]| v.iter().rev().copied().collect::<Vec<_>>();
        let rid: Vec<u64> = id.iter().rev().copied().collect();
        let mut back = split(&reversed(&w), &rid, 4, 4, s).expect("splits");
        back.reverse();
        assert_eq!(parts, back);
    }
}
