//! Checks of admission logs stamped with Redis's clock (µs): the arrival curve of a token
//! bucket / GCRA and the sliding-window bound. Each returns the first violation, described.

#![allow(dead_code)] // each test file uses a different part of the helper

/// An admission: Redis time in µs and its cost in the dimension's unit.
pub type Admission = (i64, u64);

/// First interval `[t_i, t_j]` admitting more than `burst + amount · (t_j − t_i) / window`.
/// O(n) running maximum over the sorted log.
pub fn arrival_curve_violation(
    log: &[Admission],
    burst: u64,
    amount: u64,
    window_us: u64,
) -> Option<String> {
    let mut log = log.to_vec();
    log.sort_unstable();
    let (w, a, b) = (i128::from(window_us), i128::from(amount), i128::from(burst));
    let mut prefix = 0i128; // Σ cost before j
    let mut best = i128::MIN; // max over i ≤ j of (a · t_i − w · Σ cost before i)
    let mut best_i = 0;
    for (j, &(t, c)) in log.iter().enumerate() {
        let cand = a * i128::from(t) - w * prefix;
        if cand > best {
            best = cand;
            best_i = j;
        }
        prefix += i128::from(c);
        // w · Σ_{i..=j} − a · (t_j − t_i) ≤ b · w
        if w * prefix - a * i128::from(t) + best > b * w {
            let (ti, tj) = (log[best_i].0, t);
            let sum: u64 = log[best_i..=j].iter().map(|x| x.1).sum();
            return Some(format!(
                "[{ti}, {tj}] µs admitted {sum} > burst {burst} + {amount}·{}/{window_us}",
                tj - ti
            ));
        }
    }
    None
}

/// First window `(t − window, t]` admitting more than `bound`.
pub fn window_violation(log: &[Admission], bound: u64, window_us: u64) -> Option<String> {
    let mut log = log.to_vec();
    log.sort_unstable();
    let mut start = 0;
    let mut sum = 0u64;
    for j in 0..log.len() {
        sum += log[j].1;
        while log[start].0 <= log[j].0 - window_us as i64 {
            sum -= log[start].1;
            start += 1;
        }
        if sum > bound {
            return Some(format!(
                "window ({}, {}] µs admitted {sum} > {bound}",
                log[j].0 - window_us as i64,
                log[j].0
            ));
        }
    }
    None
}

#[test]
fn checkers_find_violations() {
    // burst 2, 1 per 100 µs: three at once exceed the curve, a fourth 100 µs later does not.
    assert!(arrival_curve_violation(&[(0, 1), (0, 1), (100, 1)], 2, 1, 100).is_none());
    assert!(arrival_curve_violation(&[(0, 1), (0, 1), (99, 1)], 2, 1, 100).is_some());
    assert!(arrival_curve_violation(&[(0, 2), (50, 1), (200, 2)], 2, 1, 100).is_some());
    assert!(window_violation(&[(0, 1), (99, 1)], 1, 100).is_some());
    assert!(window_violation(&[(0, 1), (100, 1)], 1, 100).is_none());
}
