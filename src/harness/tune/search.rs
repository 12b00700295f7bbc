//! The search behind `hub tune`, as a pure function of an evaluation callback, so it can be
//! tested on functions whose optimum is known.
//!
//! A limit setting trades the objective (goodput) against a constraint (429s). Raising a
//! limit raises goodput until either the constraint breaks (a *wall*: the best value sits
//! on it) or the server's own quota caps goodput (a *plateau*: every value past the knee
//! gives the same goodput, up to simulation noise). An objective such as latency can also
//! peak inside the range. The search handles the three:
//! - a coarse grid over the whole range finds the best feasible point;
//! - where that point's neighbour is infeasible, **bisection** finds the wall;
//! - where the best lies on a plateau, **bisection** finds the plateau's lowest value;
//! - otherwise **golden-section** search narrows the peak (an infeasible probe counts as
//!   worst).
//!
//! Values whose objective is within a relative `tie` of the best count as equally good,
//! and the lowest of them wins: for every tunable limit a lower value is the more
//! conservative one, and noise should not push a limit up for no measurable gain.
//! Brackets stop splitting at the space's resolution or when the budget is spent; every
//! value is evaluated at most once.

/// The range searched and how finely.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Space {
    /// Lowest value tried.
    pub lo: f64,
    /// Highest value tried.
    pub hi: f64,
    /// Values are whole numbers (request and token limits).
    pub integer: bool,
    /// Brackets narrower than this are not split further (at least 1 for integers).
    pub resolution: f64,
}

impl Space {
    /// A space over `[lo, hi]` whose resolution is 1/256 of its width (1 for integers).
    pub fn new(lo: f64, hi: f64, integer: bool) -> Self {
        let width = (hi - lo) / 256.0;
        Self {
            lo,
            hi,
            integer,
            resolution: if integer { width.max(1.0) } else { width },
        }
    }

    fn snap(&self, x: f64) -> f64 {
        let x = x.clamp(self.lo, self.hi);
        if self.integer {
            x.round()
        } else {
            x
        }
    }
}

/// One evaluated value: its objective, oriented so that larger is better, or `None` when
/// a constraint failed (or the objective could not be measured).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// The parameter's value.
    pub value: f64,
    /// The oriented objective when feasible.
    pub score: Option<f64>,
}

/// How many evaluations the search may spend, and what counts as a tie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Points of the initial grid over the whole range (at least 3).
    pub grid: usize,
    /// Further evaluations to refine around the grid's best point.
    pub refine: usize,
    /// Relative difference of objectives below which two values tie (e.g. 0.005 = 0.5 %).
    pub tie: f64,
}

/// The evaluations made so far, and the callback that makes more.
struct Prober<F> {
    space: Space,
    tie: f64,
    eval: F,
    probes: Vec<Probe>,
}

impl<E, F: FnMut(f64) -> Result<Option<f64>, E>> Prober<F> {
    fn score(&mut self, x: f64) -> Result<Option<f64>, E> {
        let x = self.space.snap(x);
        if let Some(p) = self.probes.iter().find(|p| p.value == x) {
            return Ok(p.score);
        }
        let score = (self.eval)(x)?;
        self.probes.push(Probe { value: x, score });
        Ok(score)
    }

    /// Feasible and tied with the best score seen so far.
    fn good(&self, score: Option<f64>) -> bool {
        match (score, top(&self.probes)) {
            (Some(s), Some(m)) => s >= m - self.tie * m.abs(),
            _ => false,
        }
    }

    /// Bisects between `yes` (meets `test`) and `no` (does not) for at most `budget`
    /// evaluations; the bracket closes towards the boundary between them.
    fn bisect(
        &mut self,
        mut yes: f64,
        mut no: f64,
        budget: usize,
        test: fn(&Self, Option<f64>) -> bool,
    ) -> Result<(), E> {
        for _ in 0..budget {
            let mid = self.space.snap((yes + no) / 2.0);
            if (no - yes).abs() <= self.space.resolution || mid == yes || mid == no {
                break;
            }
            let s = self.score(mid)?;
            if test(self, s) {
                yes = mid;
            } else {
                no = mid;
            }
        }
        Ok(())
    }

    /// Golden-section search for the peak of the score within `[lo, hi]`, spending at
    /// most `budget` evaluations.
    fn golden(&mut self, mut lo: f64, mut hi: f64, budget: usize) -> Result<(), E> {
        const INV_PHI: f64 = 0.618_033_988_749_894_9;
        if budget < 2 {
            return Ok(());
        }
        let f = |p: &mut Self, x: f64| -> Result<f64, E> {
            Ok(p.score(x)?.unwrap_or(f64::NEG_INFINITY))
        };
        let mut a = hi - (hi - lo) * INV_PHI;
        let mut b = lo + (hi - lo) * INV_PHI;
        let (mut fa, mut fb) = (f(self, a)?, f(self, b)?);
        for _ in 2..budget {
            if hi - lo <= self.space.resolution {
                break;
            }
            if fa >= fb {
                (hi, b, fb) = (b, a, fa);
                a = hi - (hi - lo) * INV_PHI;
                fa = f(self, a)?;
            } else {
                (lo, a, fa) = (a, b, fb);
                b = lo + (hi - lo) * INV_PHI;
                fb = f(self, b)?;
            }
        }
        Ok(())
    }
}

/// Searches `space` for the lowest value whose feasible score ties the best. `eval`
/// returns the oriented score of a value (`None` = infeasible). Returns every probe in
/// evaluation order; the chosen one is [`best`] of them.
pub fn search<E>(
    space: Space,
    budget: Budget,
    eval: impl FnMut(f64) -> Result<Option<f64>, E>,
) -> Result<Vec<Probe>, E> {
    let mut p = Prober {
        space,
        tie: budget.tie,
        eval,
        probes: Vec::new(),
    };
    let n = budget.grid.max(3);
    let mut grid: Vec<f64> = (0..n)
        .map(|i| space.snap(space.lo + (space.hi - space.lo) * i as f64 / (n - 1) as f64))
        .collect();
    grid.dedup();
    let mut scores = Vec::with_capacity(grid.len());
    for &x in &grid {
        scores.push(p.score(x)?);
    }
    let Some(b) = best_index(&scores) else {
        return Ok(p.probes);
    };
    let right_wall = b + 1 < grid.len() && scores[b + 1].is_none();
    let left_wall = b > 0 && scores[b - 1].is_none();
    // On a plateau (a neighbour ties with the best), its left edge: the lowest grid value
    // tied with the best, when the value below it is not.
    let lowest_good = (0..=b).find(|&i| p.good(scores[i])).unwrap_or(b);
    let plateau = lowest_good < b || (b + 1 < grid.len() && p.good(scores[b + 1]));
    let knee = Some(lowest_good).filter(|&g| plateau && g > 0);
    let sides = usize::from(right_wall) + usize::from(left_wall) + usize::from(knee.is_some());
    if let Some(share) = budget.refine.checked_div(sides) {
        if right_wall {
            p.bisect(grid[b], grid[b + 1], share, |_, s| s.is_some())?;
        }
        if left_wall {
            p.bisect(grid[b], grid[b - 1], share, |_, s| s.is_some())?;
        }
        if let Some(g) = knee {
            p.bisect(grid[g], grid[g - 1], share, |p, s| p.good(s))?;
        }
    } else {
        let lo = grid[b.saturating_sub(1)];
        let hi = grid[(b + 1).min(grid.len() - 1)];
        p.golden(lo, hi, budget.refine)?;
    }
    Ok(p.probes)
}

fn top(probes: &[Probe]) -> Option<f64> {
    probes.iter().filter_map(|p| p.score).reduce(f64::max)
}

fn best_index(scores: &[Option<f64>]) -> Option<usize> {
    scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .fold(None, |acc: Option<(usize, f64)>, (i, s)| match acc {
            Some((_, best)) if best >= s => acc,
            _ => Some((i, s)),
        })
        .map(|(i, _)| i)
}

/// The lowest value whose feasible score is within the relative `tie` of the best score,
/// if any value is feasible.
pub fn best(probes: &[Probe], tie: f64) -> Option<Probe> {
    let m = top(probes)?;
    probes
        .iter()
        .filter(|p| p.score.is_some_and(|s| s >= m - tie * m.abs()))
        .min_by(|a, b| a.value.total_cmp(&b.value))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(space: Space, f: impl Fn(f64) -> Option<f64>) -> (Vec<Probe>, Probe) {
        let budget = Budget {
            grid: 9,
            refine: 16,
            tie: 0.005,
        };
        let probes =
            search(space, budget, |x| Ok::<_, ()>(f(x))).expect("the evaluation never fails");
        let best = best(&probes, 0.005).expect("some value is feasible");
        (probes, best)
    }

    #[test]
    fn finds_the_constraint_boundary_of_an_increasing_objective_to_one_unit() {
        // goodput grows with the limit; 429s appear above 613. Values within 0.5 % of
        // the best tie, and the lowest of them wins.
        let (probes, best) = run(Space::new(300.0, 900.0, true), |x| {
            (x <= 613.0).then_some(x)
        });
        assert!((610.0..=613.0).contains(&best.value), "{probes:?}");
        assert!(
            probes.iter().any(|p| p.value == 613.0),
            "the wall is found: {probes:?}"
        );
        assert!(probes.len() <= 9 + 16);
    }

    #[test]
    fn finds_a_boundary_on_the_left_when_the_objective_falls_with_the_value() {
        let (_, best) = run(Space::new(0.5, 1.0, false), |x| (x >= 0.71).then_some(-x));
        assert!((best.value - 0.71).abs() <= 0.5 / 256.0 + 1e-9, "{best:?}");
    }

    #[test]
    fn finds_the_knee_of_a_plateau_to_one_unit() {
        // goodput capped by the server's quota past 600, with noise of ±0.1 % on the plateau.
        let (probes, best) = run(Space::new(300.0, 900.0, true), |x| {
            let noise = if (x as i64) % 2 == 0 { 1.001 } else { 0.999 };
            Some(x.min(600.0) * if x > 600.0 { noise } else { 1.0 })
        });
        assert!((597.0..=600.0).contains(&best.value), "{best:?} {probes:?}");
    }

    #[test]
    fn narrows_an_interior_peak_by_golden_section() {
        let (_, best) = run(Space::new(0.0, 10.0, false), |x| Some(-(x - 3.3).powi(2)));
        assert!((best.value - 3.3).abs() < 0.05, "{best:?}");
    }

    #[test]
    fn reports_no_best_when_nothing_is_feasible() {
        let probes = search(
            Space::new(1.0, 2.0, false),
            Budget {
                grid: 5,
                refine: 4,
                tie: 0.0,
            },
            |_| Ok::<_, ()>(None),
        )
        .expect("the evaluation never fails");
        assert_eq!(probes.len(), 5);
        assert_eq!(best(&probes, 0.0), None);
    }

    #[test]
    fn evaluates_each_integer_value_once() {
        let mut calls = Vec::new();
        let _ = search(
            Space::new(1.0, 4.0, true),
            Budget {
                grid: 9,
                refine: 16,
                tie: 0.005,
            },
            |x| {
                calls.push(x);
                Ok::<_, ()>((x <= 2.0).then_some(x))
            },
        );
        let mut unique = calls.clone();
        unique.sort_by(f64::total_cmp);
        unique.dedup();
        assert_eq!(calls.len(), unique.len(), "{calls:?}");
    }

    #[test]
    fn propagates_an_evaluation_error() {
        let out = search(
            Space::new(0.0, 1.0, false),
            Budget {
                grid: 3,
                refine: 0,
                tie: 0.0,
            },
            |_| Err::<Option<f64>, _>("boom"),
        );
        assert_eq!(out, Err("boom"));
    }
}
