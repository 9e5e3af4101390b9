//! The robust statistics `trend`, `growth` and the Node owner split share:
//! Theil–Sen slopes with Sen's interval, the Mann–Kendall trend test with
//! the tie correction, the lag-1 autocorrelation inflation of its variance,
//! and bin-median reduction of long series.
//!
//! Memory series are autocorrelated and full of steps; these tests make no
//! assumption about the distribution of the noise, and one odd sample moves
//! a median, not a fit.

/// One observation: seconds since the start, and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the start.
    pub t: f64,
    /// Bytes.
    pub v: f64,
}

/// The Mann–Kendall test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// The statistic S: concordant minus discordant pairs.
    pub s: i64,
    /// Var(S), tie-corrected and inflated for autocorrelation.
    pub var_s: f64,
    /// The normal score.
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// A Theil–Sen fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenFit {
    /// Median pairwise slope, bytes per second.
    pub slope: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
    /// Value at t = 0: median of `v - slope * t`.
    pub intercept: f64,
}

/// The standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Var(S) of Mann–Kendall for `values` without autocorrelation correction,
/// with the correction for tied groups.
pub fn mk_variance(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0
}

/// The Mann–Kendall test over values in time order; `inflation` multiplies
/// Var(S) (1 for independent samples; see [`autocorrelation_inflation`]).
pub fn mann_kendall(values: &[f64], inflation: f64) -> MannKendall {
    let mut s: i64 = 0;
    for i in 0..values.len() {
        for j in i + 1..values.len() {
            s += match values[j].partial_cmp(&values[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let var_s = mk_variance(values) * inflation.max(1.0);
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0 {
        (s as f64 - 1.0) / var_s.sqrt()
    } else if s < 0 {
        (s as f64 + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    let p = (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0);
    MannKendall { s, var_s, z, p }
}

/// `(1 + ρ₁) / (1 − ρ₁)` for the lag-1 autocorrelation ρ₁ of `residuals`,
/// clamped to [1, 20]: the factor by which positively autocorrelated
/// samples overstate the information in a series.
pub fn autocorrelation_inflation(residuals: &[f64]) -> f64 {
    let n = residuals.len();
    if n < 4 {
        return 1.0;
    }
    let mean = residuals.iter().sum::<f64>() / n as f64;
    let var: f64 = residuals.iter().map(|r| (r - mean).powi(2)).sum();
    if var <= 0.0 {
        return 1.0;
    }
    let cov: f64 = residuals
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum();
    let rho = (cov / var).clamp(-0.99, 0.95);
    ((1.0 + rho) / (1.0 - rho)).clamp(1.0, 20.0)
}

/// Theil–Sen slope with Sen's 95% interval; `var_s` is the Mann–Kendall
/// variance that sets the interval's width. `None` with fewer than two
/// distinct times.
pub fn theil_sen(points: &[Point], var_s: f64) -> Option<SenFit> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            let dt = points[j].t - points[i].t;
            if dt > 0.0 {
                slopes.push((points[j].v - points[i].v) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&mut slopes); // sorts
    let n = slopes.len() as f64;
    let c = 1.96 * var_s.max(0.0).sqrt();
    let lo_rank = ((n - c) / 2.0).floor().max(0.0) as usize;
    let hi_rank = ((n + c) / 2.0).ceil() as usize;
    let low = slopes[lo_rank.min(slopes.len() - 1)];
    let high = slopes[hi_rank.min(slopes.len() - 1)];
    let mut rest: Vec<f64> = points.iter().map(|p| p.v - slope * p.t).collect();
    let intercept = median(&mut rest);
    Some(SenFit {
        slope,
        low: low.min(slope),
        high: high.max(slope),
        intercept,
    })
}

/// Reduces a series to at most `max` points, each the median time and
/// median value of a run of consecutive samples.
pub fn reduce(points: &[Point], max: usize) -> Vec<Point> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let n = points.len();
    (0..max)
        .map(|b| {
            let (lo, hi) = (b * n / max, ((b + 1) * n / max).max(b * n / max + 1));
            let mut ts: Vec<f64> = points[lo..hi].iter().map(|p| p.t).collect();
            let mut vs: Vec<f64> = points[lo..hi].iter().map(|p| p.v).collect();
            Point {
                t: median(&mut ts),
                v: median(&mut vs),
            }
        })
        .collect()
}
