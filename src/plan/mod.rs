//! The serving plan (DESIGN §3.1): per address family, where the answers for each client
//! country come from, so that every server's expected load per unit of net speed stays
//! within `balance.max_load` of the pool-wide fair load while clients stay as local as that
//! allows. Computed when the table is built, never per query; a query draws its source in
//! O(1) from its country's row ([`Row::draw`], Walker's alias method) and picks inside it
//! with the exact sampler as before.
//!
//! # From servers to the solver's countries
//!
//! Loads are counted in records: an answer drawn from country s gives each server i of s
//! the record with probability π_i (its inclusion probability in s's set), and the fair
//! load of a server is `k · D / W` records per unit of weight (k records per answer, D
//! answers asked in all, W the family's total weight). A country's capacity is the most
//! answers it can give before its most loaded server, per unit of weight, reaches
//! `max_load` × fair: `min_i (w_i / π_i)` times that budget, which also holds for sets with
//! a server capped at π = 1 and for sets of fewer than k servers.
//!
//! An answer from a country with fewer than k servers is filled up from the whole pool, so
//! that every answer has min(k, eligible) servers, and demand that the countries cannot
//! take within the cap is answered from the whole pool. Both land on every server in
//! proportion to its weight; the budget of every country shrinks by that uniform load,
//! found by rounds of solving (it only grows, and never past the fair load, so it settles).
//!
//! Demand that no capacity can take, clients of an unknown country, and client countries
//! with no demand in the inputs get sources as well: the first two the whole pool, the last
//! the sources an infinitesimal demand of theirs would get (their own spare capacity, then
//! their continent's, then anyone's, in proportion to spare capacity).

pub mod demand;
pub mod solve;

use rand::Rng;

use crate::continent::Continent;

/// Where a planned answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A country's servers (its canonical country index).
    Country(u16),
    /// The whole pool of the family.
    Global,
}

/// One client country's sources with their shares, drawn in O(1).
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The sources and their shares (summing to 1), for reports.
    shares: Box<[(Source, f64)]>,
    /// The alias table (Vose): a draw reads one bucket, so one cache line.
    buckets: Box<[Bucket]>,
}

/// One bucket of the alias table: its own source with probability `keep` / 2³², else the
/// alias's. 12 bytes, side by side so that a draw touches one of them.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    keep: u32,
    own: Source,
    alias: Source,
}

impl Row {
    fn new(mut shares: Vec<(Source, f64)>) -> Row {
        shares.retain(|&(_, w)| w > 0.0 && w.is_finite());
        if shares.is_empty() {
            shares.push((Source::Global, 1.0));
        }
        let total: f64 = shares.iter().map(|&(_, w)| w).sum();
        for s in &mut shares {
            s.1 /= total;
        }
        // Vose's alias method: scaled shares, small and large worklists.
        let n = shares.len();
        let mut scaled: Vec<f64> = shares.iter().map(|&(_, w)| w * n as f64).collect();
        let mut keep = vec![1.0; n];
        let mut alias: Vec<usize> = (0..n).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            keep[s] = scaled[s];
            alias[s] = l;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left holds 1 up to rounding.
        let buckets = (0..n)
            .map(|i| Bucket {
                // 2³² · keep, saturating: keep = 1 always keeps.
                keep: (keep[i] * 4_294_967_296.0).min(u32::MAX as f64) as u32,
                own: shares[i].0,
                alias: shares[alias[i]].0,
            })
            .collect();
        Row {
            shares: shares.into_boxed_slice(),
            buckets,
        }
    }

    /// Draws a source: O(1), one random number, no allocation.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Source {
        let n = self.buckets.len();
        if n <= 1 {
            return self.buckets.first().map_or(Source::Global, |b| b.own);
        }
        // The high half picks the bucket (multiply-shift, unbiased to 2⁻³² · n), the low
        // half decides between its two sources.
        let r = rng.next_u64();
        let i = (((r >> 32) * n as u64) >> 32) as usize;
        let b = self.buckets[i];
        if (r as u32) < b.keep || b.keep == u32::MAX {
            b.own
        } else {
            b.alias
        }
    }

    /// The sources and their shares.
    pub fn shares(&self) -> &[(Source, f64)] {
        &self.shares
    }
}

/// One set of servers as the plan sees it: weights and inclusion probabilities in an
/// answer drawn from it.
#[derive(Debug, Clone, Copy)]
pub struct SetView<'a> {
    /// Member ids.
    pub members: &'a [u32],
    /// Inclusion probability of each member in one answer.
    pub inclusion: &'a [f64],
}

impl SetView<'static> {
    /// A country without servers of the family.
    pub const EMPTY: SetView<'static> = SetView {
        members: &[],
        inclusion: &[],
    };
}

/// What the plan is computed from, for one family.
#[derive(Debug, Clone)]
pub struct FamilyInputs<'a> {
    /// Demand per country index (any scale).
    pub demand: &'a [f64],
    /// Each country's set (empty when it has no server of the family).
    pub sets: Vec<SetView<'a>>,
    /// The whole pool.
    pub global: SetView<'a>,
    /// Weight of every member (indexed by member id).
    pub weights: &'a [u32],
    /// The continent of each country index.
    pub continents: &'a [Continent],
    /// Records per answer.
    pub k: usize,
    /// The load cap, a multiple of the fair load.
    pub max_load: f64,
}

/// The plan of one family.
#[derive(Debug, Clone, Default)]
pub struct FamilyPlan {
    /// One row per country index, then one for clients of no known country.
    rows: Box<[Row]>,
    /// Share of the demand answered in the client's country.
    pub in_country: f64,
    /// Share answered within its continent (own country included).
    pub in_continent: f64,
    /// Share of the demand no capacity could take within the cap (served from the whole
    /// pool).
    pub overflow: f64,
    /// Each member's expected load ÷ the fair load, by member id (members of the other
    /// family: 0).
    pub expected: Box<[f64]>,
    /// Each country's share of the demand the plan was made for.
    pub demand: Box<[f64]>,
    /// Each country's share of the family's weight.
    pub capacity: Box<[f64]>,
    /// Whether the demand came from the inputs (false: none was known, and demand in
    /// proportion to weight was assumed).
    pub demand_known: bool,
}

impl FamilyPlan {
    /// The row of a client country; None = unknown.
    pub fn row(&self, country: Option<u16>) -> &Row {
        let unknown = self.rows.len().saturating_sub(1);
        let i = country.map_or(unknown, |c| usize::from(c).min(unknown));
        &self.rows[i]
    }

    /// Computes the plan (see the module doc).
    pub fn build(inputs: &FamilyInputs<'_>) -> FamilyPlan {
        let countries = inputs.sets.len();
        let k = inputs.k.max(1);
        let total_weight: f64 = inputs
            .global
            .members
            .iter()
            .map(|&m| f64::from(inputs.weights[m as usize]))
            .sum();
        if total_weight <= 0.0 {
            return FamilyPlan {
                rows: vec![Row::new(Vec::new()); countries + 1].into_boxed_slice(),
                expected: vec![0.0; inputs.weights.len()].into_boxed_slice(),
                ..FamilyPlan::default()
            };
        }
        let records = k.min(inputs.global.members.len()) as f64;
        // Demand only where clients can be served: every country (a country without
        // servers is served from elsewhere).
        let demand: Vec<f64> = (0..countries)
            .map(|c| {
                let d = inputs.demand.get(c).copied().unwrap_or(0.0);
                if d.is_finite() && d > 0.0 { d } else { 0.0 }
            })
            .collect();
        let mut total_demand: f64 = demand.iter().sum();
        let demand_known = total_demand > 0.0;
        let demand = if total_demand > 0.0 {
            demand
        } else {
            // No demand known: in proportion to weight, which makes the plan the
            // strict country zones wherever they are fair.
            total_demand = total_weight;
            (0..countries)
                .map(|c| {
                    inputs.sets[c]
                        .members
                        .iter()
                        .map(|&m| f64::from(inputs.weights[m as usize]))
                        .sum()
                })
                .collect()
        };
        // Fair load in records per unit of weight.
        let fair = records * total_demand / total_weight;
        // min over each set of w_i / π_i: answers per unit of per-weight budget.
        let headroom: Vec<f64> = inputs
            .sets
            .iter()
            .map(|set| {
                set.members
                    .iter()
                    .zip(set.inclusion)
                    .filter(|&(_, &p)| p > 0.0)
                    .map(|(&m, &p)| f64::from(inputs.weights[m as usize]) / p)
                    .fold(f64::INFINITY, f64::min)
            })
            .map(|h| if h.is_finite() { h } else { 0.0 })
            .collect();
        // Inclusion in the whole pool, by member id, for the fill.
        let mut in_global = vec![0.0; inputs.weights.len()];
        for (&m, &p) in inputs.global.members.iter().zip(inputs.global.inclusion) {
            in_global[m as usize] = p;
        }
        // Per answer from each country: the fill factor E[(k − n) / (k − J)] of
        // [`fill_factor`], 0 for countries of k servers or more. A member outside the
        // country gets `factor · π_i` fill records per answer, at most `factor · k · w_i / W`
        // (global inclusion is at most proportional to weight).
        let fill: Vec<f64> = inputs
            .sets
            .iter()
            .map(|set| {
                if set.members.is_empty() || set.members.len() >= k {
                    0.0
                } else {
                    fill_factor(*set, &in_global, k)
                }
            })
            .collect();
        // Uniform load (records per unit of weight) from the whole pool: fill records and
        // the demand no country can take. Grown until it settles: the least fixed point,
        // at most the fair load itself (everything from the whole pool).
        let mut uniform = 0.0;
        let mut solution = solve::Solution::default();
        for _ in 0..200 {
            // A 0.2 % margin for what the fill's model leaves out (the small dependence
            // between members of a systematic sample): the cap is a promise.
            let budget = ((inputs.max_load * fair - uniform) * (1.0 - 2e-3)).max(0.0);
            let problem: Vec<solve::Country> = (0..countries)
                .map(|c| solve::Country {
                    demand: demand[c],
                    capacity: budget * headroom[c],
                    continent: inputs.continents.get(c).map(|&x| x as u8),
                })
                .collect();
            solution = solve::solve(&problem);
            let fill_records: f64 = solution
                .flows
                .iter()
                .flatten()
                .map(|&(s, x)| x * fill[s] * k as f64)
                .sum();
            let overflow_records: f64 = solution.overflow.iter().sum::<f64>() * records;
            let next = (fill_records + overflow_records) / total_weight;
            if next <= uniform * (1.0 + 1e-6) + fair * 1e-9 {
                break;
            }
            uniform = next;
        }
        let mut rows: Vec<Row> = (0..countries)
            .map(|c| {
                let mut shares: Vec<(Source, f64)> = solution.flows[c]
                    .iter()
                    .map(|&(s, x)| (Source::Country(s as u16), x))
                    .collect();
                if solution.overflow[c] > 0.0 {
                    shares.push((Source::Global, solution.overflow[c]));
                }
                if demand[c] > 0.0 {
                    Row::new(shares)
                } else {
                    Row::new(marginal(c, &solution.spare, inputs.continents))
                }
            })
            .collect();
        rows.push(Row::new(Vec::new()));

        // Expected load of every member, in records, then ÷ fair.
        let mut load = vec![0.0; inputs.weights.len()];
        let mut answered = vec![0.0; countries];
        for row in &solution.flows {
            for &(s, x) in row {
                answered[s] += x;
            }
        }
        let global_answers: f64 = solution.overflow.iter().sum();
        for (&m, &p) in inputs.global.members.iter().zip(inputs.global.inclusion) {
            load[m as usize] += global_answers * p;
        }
        // Fill answers per outside member: Σ over small sources of answers × factor,
        // less each member's own source (its members get no fill from it).
        let mut fill_answers = 0.0;
        for (s, set) in inputs.sets.iter().enumerate() {
            if answered[s] <= 0.0 {
                continue;
            }
            for (&m, &p) in set.members.iter().zip(set.inclusion) {
                load[m as usize] += answered[s] * p;
                // Taken back below: no fill from its own country.
                load[m as usize] -= answered[s] * fill[s] * in_global[m as usize];
            }
            fill_answers += answered[s] * fill[s];
        }
        for (&m, &p) in inputs.global.members.iter().zip(inputs.global.inclusion) {
            load[m as usize] += fill_answers * p;
        }
        let expected = load
            .iter()
            .enumerate()
            .map(|(m, &l)| {
                let w = f64::from(inputs.weights[m]);
                if w > 0.0 { l / (fair * w) } else { 0.0 }
            })
            .collect();
        let capacity = inputs
            .sets
            .iter()
            .map(|set| {
                set.members
                    .iter()
                    .map(|&m| f64::from(inputs.weights[m as usize]))
                    .sum::<f64>()
                    / total_weight
            })
            .collect();
        FamilyPlan {
            rows: rows.into_boxed_slice(),
            in_country: solution.in_country / total_demand,
            in_continent: solution.in_continent / total_demand,
            overflow: solution.overflow.iter().sum::<f64>() / total_demand,
            expected,
            demand: demand.iter().map(|d| d / total_demand).collect(),
            capacity,
            demand_known,
        }
    }
}

/// The fill of an answer from `set` (fewer than k servers): a pick from the whole pool, of
/// which the members not in `set` are taken in the pick's random order until the answer
/// has k. A member i outside the set is in the pick with probability π_i; when J members of
/// the set are in the pick too, k − J others are there and k − n of them are taken. J is
/// counted as a sum of independent draws with the set members' own probabilities
/// (systematic sampling makes them nearly so), which gives each outside member π_i ·
/// E[(k − n) / (k − J)] fill records per answer: this returns that expectation.
fn fill_factor(set: SetView<'_>, in_global: &[f64], k: usize) -> f64 {
    let n = set.members.len();
    // Distribution of J over 0..=n.
    let mut dist = vec![0.0; n + 1];
    dist[0] = 1.0;
    for &m in set.members {
        let p = in_global
            .get(m as usize)
            .copied()
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        for j in (0..n).rev() {
            dist[j + 1] += dist[j] * p;
            dist[j] *= 1.0 - p;
        }
    }
    dist.iter()
        .enumerate()
        .filter(|&(j, _)| j < k)
        .map(|(j, &q)| q * k.saturating_sub(n) as f64 / (k - j) as f64)
        .sum()
}

/// The sources an infinitesimal demand of country `c` would get: its own spare capacity,
/// else its continent's, else anyone's, in proportion to spare capacity; else the pool.
fn marginal(c: usize, spare: &[f64], continents: &[Continent]) -> Vec<(Source, f64)> {
    if spare.get(c).is_some_and(|&s| s > 0.0) {
        return vec![(Source::Country(c as u16), 1.0)];
    }
    let mine = continents.get(c);
    let near: Vec<(Source, f64)> = spare
        .iter()
        .enumerate()
        .filter(|&(s, &x)| x > 0.0 && continents.get(s) == mine && mine.is_some())
        .map(|(s, &x)| (Source::Country(s as u16), x))
        .collect();
    if !near.is_empty() {
        return near;
    }
    spare
        .iter()
        .enumerate()
        .filter(|&(_, &x)| x > 0.0)
        .map(|(s, &x)| (Source::Country(s as u16), x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_alias_table_draws_each_source_in_its_share() {
        let row = Row::new(vec![
            (Source::Country(3), 0.5),
            (Source::Country(1), 0.3),
            (Source::Global, 0.2),
        ]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let n = 400_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            match row.draw(&mut rng) {
                Source::Country(3) => counts[0] += 1,
                Source::Country(1) => counts[1] += 1,
                Source::Global => counts[2] += 1,
                other => panic!("{other:?}"),
            }
        }
        for (count, share) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let p = *count as f64 / n as f64;
            // 5 standard deviations of a binomial share.
            let sd = (share * (1.0 - share) / n as f64).sqrt();
            assert!((p - share).abs() < 5.0 * sd, "{counts:?}");
        }
    }

    #[test]
    fn a_lone_server_takes_no_more_than_the_cap() {
        // Country 0: one server of weight 1 with all the demand of its continent's half;
        // country 1: four servers of weight 10. k = 4: each answer from 0 needs 3 fill.
        let weights = [1, 10, 10, 10, 10];
        let lone = [0u32];
        let lone_p = [1.0];
        let big = [1u32, 2, 3, 4];
        let big_p = [1.0; 4];
        let all = [0u32, 1, 2, 3, 4];
        let all_p = crate::select::inclusion_probabilities(&weights, 4);
        let inputs = FamilyInputs {
            demand: &[50.0, 50.0],
            sets: vec![
                SetView {
                    members: &lone,
                    inclusion: &lone_p,
                },
                SetView {
                    members: &big,
                    inclusion: &big_p,
                },
            ],
            global: SetView {
                members: &all,
                inclusion: &all_p,
            },
            weights: &weights,
            continents: &[Continent::Africa, Continent::Europe],
            k: 4,
            max_load: 1.5,
        };
        let plan = FamilyPlan::build(&inputs);
        let worst = plan.expected.iter().copied().fold(0.0, f64::max);
        assert!(worst <= 1.5 + 1e-9, "{:?}", plan.expected);
        assert!(plan.in_country > 0.5, "{plan:?}");
        // Zones mode would give the lone server 50 answers a second for weight 1.
        let row = plan.row(Some(0));
        assert!(row.shares().len() > 1, "{row:?}");
    }
}
