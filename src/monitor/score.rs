//! The pool's score rule (ntppool/monitor, `statusscore`), pure: after each probe
//! `score ← 0.95 · score + step`, then a cap where the result's row has one. New servers
//! start at 0. The rule's fixed points are 20 (every probe good: 20 = 0.95 · 20 + 1) and
//! −100 (never answers: −100 = 0.95 · −100 − 5); a server is served from 10 on, which a
//! healthy new server reaches after 14 probes. Scores run from −100 to 20: [`FLOOR`] is the
//! one bound no row reaches by its own fixed point (DENY's would be −200).
//!
//! | probe result                                              | step                    | cap  |
//! |-----------------------------------------------------------|-------------------------|------|
//! | no response                                               | −5                      |      |
//! | KoD RATE                                                  | −3.5                    |      |
//! | KoD RSTR or DENY                                          | −10                     | −50  |
//! | stratum 0 without a KoD code, or an offset of exactly 0   | −2                      | 5    |
//! | no usable offset (leap 3, stratum ≥ 16, bad mode)         | −4                      |      |
//! | \|offset\| > 3 s, or stratum ≥ 8                          | −4                      | −20 when over 3 s |
//! | 750 ms < \|offset\| ≤ 3 s                                 | −2                      |      |
//! | 100 ms < \|offset\| ≤ 750 ms                              | −2.308 · \|θ\| + 0.731  |      |
//! | 25 ms < \|offset\| ≤ 100 ms                               | −6.667 · \|θ\| + 1.167  |      |
//! | \|offset\| ≤ 25 ms                                        | +1                      |      |

use super::ntp::{Kiss, Outcome};

/// The lowest score: the pool's scores run from −100 to 20. Only a server that keeps
/// refusing with DENY or RSTR (step −10) would go lower; a silent one tends to −100 itself.
pub const FLOOR: f64 = -100.0;

/// The score of a server never probed.
pub const INITIAL: f64 = 0.0;
/// The score from which the pool serves a server.
pub const USABLE: f64 = 10.0;

/// A probe's step and the cap applied after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Added after the decay.
    pub step: f64,
    /// The score is at most this afterwards.
    pub cap: Option<f64>,
}

/// The step the rule gives `outcome`.
pub fn step(outcome: &Outcome) -> Step {
    let plain = |step| Step { step, cap: None };
    match outcome {
        Outcome::NoResponse => plain(-5.0),
        Outcome::Kiss(Kiss::Rate) => plain(-3.5),
        Outcome::Kiss(Kiss::Restrict | Kiss::Deny) => Step {
            step: -10.0,
            cap: Some(-50.0),
        },
        Outcome::Untrusted(_) => Step {
            step: -2.0,
            cap: Some(5.0),
        },
        Outcome::Unusable(_) => plain(-4.0),
        Outcome::Time(m) => {
            let offset = m.offset.abs();
            if offset > 3.0 {
                Step {
                    step: -4.0,
                    cap: Some(-20.0),
                }
            } else if m.stratum >= 8 {
                plain(-4.0)
            } else if offset > 0.750 {
                plain(-2.0)
            } else if offset > 0.100 {
                plain(-2.308 * offset + 0.731)
            } else if offset > 0.025 {
                plain(-6.667 * offset + 1.167)
            } else {
                plain(1.0)
            }
        }
    }
}

/// The score after a probe with `outcome` of a server that had `score`.
pub fn next(score: f64, outcome: &Outcome) -> f64 {
    let Step { step, cap } = step(outcome);
    let decayed = 0.95 * score + step;
    let capped = match cap {
        Some(cap) => decayed.min(cap),
        None => decayed,
    };
    capped.max(FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::ntp::{Measurement, Unusable};

    fn time(offset: f64, stratum: u8) -> Outcome {
        Outcome::Time(Measurement {
            offset,
            delay: 0.001,
            stratum,
            leap: 0,
            refid: [0; 4],
        })
    }

    /// Applies `outcome` n times from `from`, written out independently of `next`.
    fn trajectory(from: f64, n: usize, step: f64, cap: f64) -> Vec<f64> {
        let mut s = from;
        (0..n)
            .map(|_| {
                s = f64::min(s * 0.95 + step, cap).max(-100.0);
                s
            })
            .collect()
    }

    #[test]
    fn twenty_and_minus_one_hundred_are_fixed_points() {
        assert_eq!(next(20.0, &time(0.001, 2)), 20.0);
        assert_eq!(next(-100.0, &Outcome::NoResponse), -100.0);
    }

    #[test]
    fn a_healthy_new_server_is_usable_after_exactly_14_probes() {
        let mut s = INITIAL;
        for probe in 1..=14 {
            s = next(s, &time(0.002, 2));
            assert_eq!(s >= USABLE, probe == 14, "probe {probe}: {s}");
        }
        let expected = 20.0 * (1.0 - 0.95f64.powi(14));
        assert!((s - expected).abs() < 1e-12);
    }

    #[test]
    fn trajectories_of_each_row_match_the_table() {
        let run = |outcome: Outcome, from: f64, n: usize| {
            let mut s = from;
            (0..n)
                .map(|_| {
                    s = next(s, &outcome);
                    s
                })
                .collect::<Vec<_>>()
        };
        let inf = f64::INFINITY;
        let deny = Outcome::Kiss(Kiss::Deny);
        assert_eq!(run(deny, 15.0, 3), trajectory(15.0, 3, -10.0, -50.0));
        assert_eq!(run(deny, 15.0, 1), vec![-50.0]);
        assert_eq!(run(deny, 15.0, 200).last(), Some(&-100.0));
        assert_eq!(
            run(Outcome::Kiss(Kiss::Rate), 10.0, 5),
            trajectory(10.0, 5, -3.5, inf)
        );
        assert_eq!(
            run(Outcome::NoResponse, 0.0, 5),
            trajectory(0.0, 5, -5.0, inf)
        );
        let leap = Outcome::Unusable(Unusable::Unsynchronised);
        assert_eq!(run(leap, 20.0, 4), trajectory(20.0, 4, -4.0, inf));
        let zero = Outcome::Untrusted(Measurement {
            offset: 0.0,
            delay: 0.0,
            stratum: 0,
            leap: 0,
            refid: [0; 4],
        });
        assert_eq!(run(zero, 19.0, 3), trajectory(19.0, 3, -2.0, 5.0));
        assert_eq!(run(time(5.0, 2), 19.0, 3), trajectory(19.0, 3, -4.0, -20.0));
        assert_eq!(run(time(-5.0, 2), 19.0, 1), vec![-20.0]);
        assert_eq!(run(time(2.0, 2), 19.0, 3), trajectory(19.0, 3, -2.0, inf));
        assert_eq!(run(time(0.0, 9), 19.0, 2), trajectory(19.0, 2, -4.0, inf));
        let s300 = -2.308 * 0.3 + 0.731;
        assert_eq!(run(time(0.3, 2), 12.0, 6), trajectory(12.0, 6, s300, inf));
        let s30 = -6.667 * 0.03 + 1.167;
        assert_eq!(run(time(-0.03, 2), 0.0, 6), trajectory(0.0, 6, s30, inf));
    }

    #[test]
    fn band_edges_belong_to_the_lower_step() {
        assert_eq!(step(&time(0.025, 2)).step, 1.0);
        assert_eq!(step(&time(0.100, 2)).step, -6.667 * 0.1 + 1.167);
        assert_eq!(step(&time(0.750, 2)).step, -2.308 * 0.75 + 0.731);
        assert_eq!(step(&time(3.0, 2)).step, -2.0);
        assert_eq!(step(&time(3.0, 2)).cap, None);
    }
}
