//! The plan's closed-form solver (src/plan/solve.rs) against an independent LP solver
//! (minilp) on random instances: the lexicographic optimum (in-country answers first, then
//! in-continent answers) must match, and the solver's flows must keep every cap.

use minilp::{ComparisonOp, OptimizationDirection, Problem};
use pooldns::plan::solve::{Country, solve};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The LP optimum of in-country answers, then of in-continent answers with in-country
/// held at its optimum, and then of all answers served.
fn lp_optimum(countries: &[Country]) -> (f64, f64, f64) {
    let n = countries.len();
    let run = |stage: usize, bounds: &[f64]| -> f64 {
        let mut p = Problem::new(OptimizationDirection::Maximize);
        let mut vars = vec![Vec::with_capacity(n); n];
        for c in 0..n {
            for s in 0..n {
                let same_country = c == s;
                // The own country counts as within the continent, also without one.
                let same_continent = same_country
                    || (countries[c].continent.is_some()
                        && countries[c].continent == countries[s].continent);
                let objective = match stage {
                    0 => f64::from(u8::from(same_country)),
                    1 => f64::from(u8::from(same_continent)),
                    _ => 1.0,
                };
                vars[c].push((
                    p.add_var(objective, (0.0, f64::INFINITY)),
                    same_country,
                    same_continent,
                ));
            }
        }
        for c in 0..n {
            let row: Vec<_> = vars[c].iter().map(|&(v, _, _)| (v, 1.0)).collect();
            p.add_constraint(&row[..], ComparisonOp::Le, countries[c].demand);
        }
        for s in 0..n {
            let column: Vec<_> = (0..n).map(|c| (vars[c][s].0, 1.0)).collect();
            p.add_constraint(&column[..], ComparisonOp::Le, countries[s].capacity);
        }
        // Earlier stages held at their optimum (less a hair for the LP's rounding).
        for (stage_held, &bound) in bounds.iter().enumerate() {
            let row: Vec<_> = vars
                .iter()
                .flatten()
                .filter(
                    |&&(_, country, continent)| if stage_held == 0 { country } else { continent },
                )
                .map(|&(v, _, _)| (v, 1.0))
                .collect();
            p.add_constraint(&row[..], ComparisonOp::Ge, bound * (1.0 - 1e-9) - 1e-9);
        }
        p.solve().expect("feasible").objective()
    };
    let first = run(0, &[]);
    let second = run(1, &[first]);
    let third = run(2, &[first, second]);
    (first, second, third)
}

#[test]
fn the_closed_form_matches_an_lp_solver_on_random_instances() {
    let mut rng = StdRng::seed_from_u64(0x706c_616e);
    for case in 0..300 {
        let n = rng.random_range(1..=14);
        let continents = rng.random_range(1..=4u8);
        let countries: Vec<Country> = (0..n)
            .map(|_| Country {
                // A third of the countries without demand or without servers.
                demand: if rng.random_range(0..3) == 0 {
                    0.0
                } else {
                    rng.random_range(0.0..100.0)
                },
                capacity: if rng.random_range(0..3) == 0 {
                    0.0
                } else {
                    rng.random_range(0.0..100.0)
                },
                continent: if rng.random_range(0..10) == 0 {
                    None
                } else {
                    Some(rng.random_range(0..continents))
                },
            })
            .collect();
        let s = solve(&countries);
        let (in_country, in_continent, served) = lp_optimum(&countries);
        let total: f64 = countries.iter().map(|c| c.demand).sum();
        let tolerance = 1e-6 * total.max(1.0);
        assert!(
            (s.in_country - in_country).abs() <= tolerance,
            "case {case}: in-country {} vs LP {in_country}",
            s.in_country
        );
        assert!(
            (s.in_continent - in_continent).abs() <= tolerance,
            "case {case}: in-continent {} vs LP {in_continent}",
            s.in_continent
        );
        let overflow: f64 = s.overflow.iter().sum();
        assert!(
            (total - overflow - served).abs() <= tolerance,
            "case {case}: served {} vs LP {served}",
            total - overflow
        );
        // Every row sums to its demand, every column keeps its cap.
        let mut load = vec![0.0; n];
        for (c, row) in s.flows.iter().enumerate() {
            let sum: f64 = row.iter().map(|&(_, x)| x).sum::<f64>() + s.overflow[c];
            assert!(
                (sum - countries[c].demand).abs() <= tolerance,
                "case {case}: row {c}"
            );
            for &(to, x) in row {
                assert!(x >= 0.0);
                load[to] += x;
            }
        }
        for (i, c) in countries.iter().enumerate() {
            assert!(
                load[i] <= c.capacity + tolerance,
                "case {case}: column {i} over its cap"
            );
        }
    }
}
