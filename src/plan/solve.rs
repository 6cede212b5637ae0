//! The plan's solver: where each client country's answers come from, for one address
//! family (DESIGN §3.1). Pure: numbers in, flows out.
//!
//! # The problem
//!
//! Client country c sends `demand[c]` answers (any unit). Server country s can take up to
//! `capacity[s]` answers before one of its servers passes the load cap (the caller derives
//! it from `max_load`, the fair load and the servers' inclusion probabilities). Find flows
//! x[c][s] ≥ 0 with Σ_s x[c][s] = demand[c] and Σ_c x[c][s] ≤ capacity[s] that, in order:
//!
//! 1. maximise the demand answered in its own country, Σ_c x[c][c];
//! 2. then maximise the demand answered within its continent;
//! 3. then spread the rest in proportion to spare capacity.
//!
//! # Why a closed form, not an LP
//!
//! Step 1 decomposes: only country c's own capacity serves c in-country, so the optimum is
//! x[c][c] = min(demand, capacity) for every c at once. After it, every country has either
//! demand left or capacity left, never both. So within a continent, every country with
//! demand left may send to every country with capacity left: the flow graph is complete
//! bipartite, and its maximum flow is min(demand left, capacity left) of the continent.
//! Sending each client's remainder in proportion to the spare capacity of each server
//! country reaches that maximum, keeps every cap, and is the "proportional to spare
//! capacity" rule of step 3 as well. The same argument, over all countries, gives step 3.
//! So the lexicographic optimum is exact in O(countries²) (O(countries) per row), and no
//! LP solver is needed; tests check it against an LP solver on random instances.
//!
//! Demand that no capacity can take (the caps sum to less than the demand) is returned as
//! `overflow`; the caller serves it from the whole pool.

/// One country of the problem.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Country {
    /// Answers its clients ask for.
    pub demand: f64,
    /// Answers its servers can give at the cap.
    pub capacity: f64,
    /// Its continent, as an index; None for none.
    pub continent: Option<u8>,
}

/// The solution: flows per client country.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Solution {
    /// For each client country, (server country, answers), server countries ascending.
    pub flows: Vec<Vec<(usize, f64)>>,
    /// For each client country, demand that no capacity could take.
    pub overflow: Vec<f64>,
    /// Capacity left over per server country.
    pub spare: Vec<f64>,
    /// Answers served in the client's own country.
    pub in_country: f64,
    /// Answers served within the client's continent (own country included).
    pub in_continent: f64,
}

/// Solves the problem for `countries` (see the module doc).
pub fn solve(countries: &[Country]) -> Solution {
    let n = countries.len();
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let mut left: Vec<f64> = countries.iter().map(|c| clean(c.demand)).collect();
    let mut spare: Vec<f64> = countries.iter().map(|c| clean(c.capacity)).collect();
    let mut flows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut in_country = 0.0;
    // Step 1: own country.
    for c in 0..n {
        let x = left[c].min(spare[c]);
        if x > 0.0 {
            flows[c].push((c, x));
            left[c] -= x;
            spare[c] -= x;
            in_country += x;
        }
    }
    // Step 2: within each continent.
    let continents: Vec<u8> = {
        let mut v: Vec<u8> = countries.iter().filter_map(|c| c.continent).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut in_continent = in_country;
    for continent in continents {
        let members: Vec<usize> = (0..n)
            .filter(|&i| countries[i].continent == Some(continent))
            .collect();
        in_continent += spread(&members, &mut left, &mut spare, &mut flows);
    }
    // Step 3: anywhere.
    let everyone: Vec<usize> = (0..n).collect();
    spread(&everyone, &mut left, &mut spare, &mut flows);
    for row in &mut flows {
        row.sort_by_key(|&(s, _)| s);
        // A server country may appear from two steps: merge.
        row.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 += later.1;
                true
            } else {
                false
            }
        });
    }
    Solution {
        flows,
        overflow: left,
        spare,
        in_country,
        in_continent,
    }
}

/// Sends the demand left in `members` to the spare capacity of `members`, each client's
/// share in proportion to each server country's spare capacity; returns the answers sent.
fn spread(
    members: &[usize],
    left: &mut [f64],
    spare: &mut [f64],
    flows: &mut [Vec<(usize, f64)>],
) -> f64 {
    let demand: f64 = members.iter().map(|&i| left[i]).sum();
    let capacity: f64 = members.iter().map(|&i| spare[i]).sum();
    let sent = demand.min(capacity);
    if sent <= 0.0 {
        return 0.0;
    }
    let fraction = sent / demand; // of each client's remainder
    let servers: Vec<(usize, f64)> = members
        .iter()
        .filter(|&&s| spare[s] > 0.0)
        .map(|&s| (s, spare[s] / capacity))
        .collect();
    for &c in members {
        let give = left[c] * fraction;
        if give <= 0.0 {
            continue;
        }
        for &(s, share) in &servers {
            flows[c].push((s, give * share));
        }
        left[c] -= give;
    }
    for &(s, share) in &servers {
        spare[s] = (spare[s] - sent * share).max(0.0);
    }
    // Rounding may leave crumbs of demand: below 1e-12 of the total they are none.
    for &c in members {
        if left[c] < 1e-12 * demand {
            left[c] = 0.0;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(demand: f64, capacity: f64, continent: u8) -> Country {
        Country {
            demand,
            capacity,
            continent: Some(continent),
        }
    }

    #[test]
    fn own_country_first_then_continent_then_anywhere() {
        // 0: lots of demand, little capacity; 1: the reverse, same continent; 2: spare
        // capacity elsewhere.
        let s = solve(&[
            country(10.0, 2.0, 0),
            country(1.0, 5.0, 0),
            country(0.0, 10.0, 1),
        ]);
        assert_eq!(s.flows[0], vec![(0, 2.0), (1, 4.0), (2, 4.0)]);
        assert_eq!(s.flows[1], vec![(1, 1.0)]);
        assert!(s.flows[2].is_empty());
        assert_eq!(s.in_country, 3.0);
        assert_eq!(s.in_continent, 7.0);
        assert_eq!(s.overflow, vec![0.0; 3]);
        assert_eq!(s.spare, vec![0.0, 0.0, 6.0]);
    }

    #[test]
    fn demand_beyond_every_cap_overflows() {
        let s = solve(&[country(10.0, 1.0, 0), country(0.0, 2.0, 1)]);
        assert_eq!(s.flows[0], vec![(0, 1.0), (1, 2.0)]);
        assert_eq!(s.overflow[0], 7.0);
    }

    #[test]
    fn hostile_numbers_are_no_demand_and_no_capacity() {
        let s = solve(&[
            country(f64::NAN, f64::INFINITY, 0),
            country(-1.0, 3.0, 0),
            country(2.0, -5.0, 0),
        ]);
        assert_eq!(s.flows[2], vec![(1, 2.0)]);
        assert!(s.flows[0].is_empty() && s.flows[1].is_empty());
    }
}
