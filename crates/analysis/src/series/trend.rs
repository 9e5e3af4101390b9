//! Is it growing? Robust trend verdicts over a watch series.
//!
//! A least-squares line through a process's first minutes is the wrong
//! tool: a healthy Node.js server's V8 heap steps up for minutes and then
//! stays flat, and a line through the steps "proves" a leak. So:
//!
//! 1. **Warm-up** ([`warmup_end`]). We take the last half of the series as
//!    the reference (past warm-up, if anything is), fit it robustly, and
//!    walk backwards from its start while the earlier samples stay within
//!    a tolerance of that line: three robust standard deviations of the
//!    reference's residuals, at least 1 MiB or 1% of the level. The first
//!    run of samples outside it (two or more in a row, or 2% of the series)
//!    ends the walk; those samples and everything before them are the
//!    warm-up. Failing that, samples outside it at the very start (a
//!    process caught while starting up) are the warm-up. A steady leak
//!    lies on its own line from the start, so it has no warm-up; steps
//!    followed by a plateau leave the steps out.
//! 2. **Slope** ([`theil_sen`]): the median of pairwise slopes, with Sen's
//!    distribution-free 95% confidence interval.
//! 3. **Monotonic trend** ([`mann_kendall`]) with the tie correction, and the
//!    variance inflated by `(1 + ρ₁) / (1 − ρ₁)` for the lag-1
//!    autocorrelation ρ₁ of the residuals: memory series are strongly
//!    autocorrelated (a sawtooth is the extreme case), which the plain test
//!    mistakes for a trend. The same inflation widens the slope's interval.
//! 4. **Verdict** ([`assess`]). `growing` needs all of: a significant
//!    increasing Mann–Kendall trend (p < 0.05), an interval above zero, a
//!    fitted rise over the window of at least the *material* amount (1 MiB
//!    or 1% of the median RSS, whichever is larger), and growth that is
//!    spread out: when fewer than five sample-to-sample steps carry 80%
//!    of the rise, we have seen steps, not yet a trend, and say
//!    `inconclusive`; so is a rise seen over fewer than twice
//!    [`MIN_POINTS`] samples (a start-up ramp looks like anything). `flat`
//!    when the interval's upper end, over the window, stays below the
//!    material amount, or when there is no significant trend and the
//!    fitted rise is within the larger of the material amount and the
//!    residuals' interquartile range (the series' own fluctuation: a
//!    sawtooth). Anything else, and any window of fewer than
//!    [`MIN_POINTS`] samples, is `inconclusive`.
//!
//! Series longer than [`MAX_POINTS`] are reduced to that many bin medians
//! first (Theil–Sen is O(n²) in pairs). Per-region verdicts use the same
//! warm-up cut and the same material amount, over the samples that read the
//! full `smaps`.
//!
//! ```
//! use leaktrail_analysis::trend::{assess, material, warmup_end, Point, Verdict};
//!
//! // 100 MB, then +2 MB a second.
//! let pts: Vec<Point> = (0..40)
//!     .map(|i| Point { t: i as f64, v: 1e8 + 2e6 * i as f64 })
//!     .collect();
//! let cut = warmup_end(&pts);
//! assert_eq!(cut, 0);
//! let a = assess(&pts[cut..], material(1e8));
//! assert_eq!(a.verdict, Verdict::Growing);
//! assert!((a.fit.unwrap().slope - 2e6).abs() < 1.0);
//! ```

use leaktrail_recording::dir::{Meta, Recording, Sample};
use leaktrail_recording::maps::{LimitSource, Region};

pub use super::stats::{
    autocorrelation_inflation, mann_kendall, normal_cdf, reduce, theil_sen, MannKendall, Point,
    SenFit,
};
use super::stats::{median, mk_variance};

/// Fewer samples than this after warm-up give `inconclusive`.
pub const MIN_POINTS: usize = 6;
/// Longer series are reduced to this many bin medians.
pub const MAX_POINTS: usize = 1000;
/// The smallest rise over the window that counts as growth, in bytes.
pub const MIN_MATERIAL_BYTES: f64 = 1024.0 * 1024.0;
/// The fraction of the median RSS that counts as growth.
pub const MATERIAL_FRACTION: f64 = 0.01;

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Growing steadily.
    Growing,
    /// Not growing by a material amount.
    Flat,
    /// Cannot tell yet.
    Inconclusive,
}

impl Verdict {
    /// The verdict as a word.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Flat => "flat",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The material amount of growth for a series at this level.
pub fn material(level: f64) -> f64 {
    (level * MATERIAL_FRACTION).max(MIN_MATERIAL_BYTES)
}

/// The index of the first sample after warm-up (0 when there is none).
/// See the module documentation for the rule.
pub fn warmup_end(points: &[Point]) -> usize {
    let n = points.len();
    if n < 2 * MIN_POINTS {
        return 0;
    }
    let reference = &points[n / 2..];
    let values: Vec<f64> = reference.iter().map(|p| p.v).collect();
    let Some(fit) = theil_sen(reference, mk_variance(&values)) else {
        return 0;
    };
    let residual = |p: &Point| p.v - (fit.intercept + fit.slope * p.t);
    let mut res: Vec<f64> = reference.iter().map(residual).collect();
    let centre = median(&mut res);
    let mut dev: Vec<f64> = res.iter().map(|r| (r - centre).abs()).collect();
    let sigma = 1.4826 * median(&mut dev);
    let mut levels = values.clone();
    let tolerance = (3.0 * sigma).max(material(median(&mut levels)));
    let run_needed = 2.max(n / 50);
    let mut run = 0;
    for i in (0..n / 2).rev() {
        if (residual(&points[i]) - centre).abs() > tolerance {
            run += 1;
            if run >= run_needed {
                return i + run;
            }
        } else {
            run = 0;
        }
    }
    // No long run: still drop the samples before the first consistent one
    // (a process caught while starting up, RSS ramping to its base level).
    let outside = |p: &Point| (residual(p) - centre).abs() > tolerance;
    points[..n / 2].iter().take_while(|p| outside(p)).count()
}

/// How many of the largest sample-to-sample increases it takes to make up
/// 80% of `rise`.
fn steps_carrying(points: &[Point], rise: f64) -> usize {
    let mut ups: Vec<f64> = points
        .windows(2)
        .map(|w| w[1].v - w[0].v)
        .filter(|d| *d > 0.0)
        .collect();
    ups.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    for (k, d) in ups.iter().enumerate() {
        sum += d;
        if sum >= 0.8 * rise {
            return k + 1;
        }
    }
    ups.len()
}

/// `p = 0.03`, `p < 1e-6`.
fn p_value(p: f64) -> String {
    if p < 1e-6 {
        "p < 1e-6".into()
    } else if p < 0.001 {
        format!("p = {p:.1e}")
    } else {
        format!("p = {p:.3}")
    }
}

/// The assessment of one series over its analysed window.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in a phrase.
    pub reason: String,
    /// The fit, when there were enough points for one.
    pub fit: Option<SenFit>,
    /// The trend test, when there were enough points.
    pub mann_kendall: Option<MannKendall>,
    /// Points in the window.
    pub n: usize,
}

/// The verdict over `points` (already past warm-up), given the material
/// amount of growth.
pub fn assess(points: &[Point], material: f64) -> Assessment {
    let points = reduce(points, MAX_POINTS);
    let n = points.len();
    let inconclusive = |reason: String, fit, mk| Assessment {
        verdict: Verdict::Inconclusive,
        reason,
        fit,
        mann_kendall: mk,
        n,
    };
    if n < MIN_POINTS {
        return inconclusive(
            format!("only {n} samples after warm-up; at least {MIN_POINTS} are needed"),
            None,
            None,
        );
    }
    let span = points[n - 1].t - points[0].t;
    let values: Vec<f64> = points.iter().map(|p| p.v).collect();
    let Some(first) = theil_sen(&points, mk_variance(&values)) else {
        return inconclusive("the samples span no time".into(), None, None);
    };
    if span <= 0.0 {
        return inconclusive("the samples span no time".into(), None, None);
    }
    let residuals: Vec<f64> = points
        .iter()
        .map(|p| p.v - (first.intercept + first.slope * p.t))
        .collect();
    let inflation = autocorrelation_inflation(&residuals);
    let mk = mann_kendall(&values, inflation);
    let fit = theil_sen(&points, mk.var_s).unwrap_or(first);
    let rise = fit.slope * span;
    let significant = mk.p < 0.05;
    let assessment = |verdict, reason| Assessment {
        verdict,
        reason,
        fit: Some(fit),
        mann_kendall: Some(mk),
        n,
    };
    if significant && mk.s > 0 && fit.low > 0.0 && rise >= material {
        if n < 2 * MIN_POINTS {
            return assessment(
                Verdict::Inconclusive,
                format!(
                    "rising, but only {n} samples; at least {} are needed to call it growth",
                    2 * MIN_POINTS
                ),
            );
        }
        let steps = steps_carrying(&points, rise);
        if steps < 5 {
            return assessment(
                Verdict::Inconclusive,
                format!(
                    "the rise came in {steps} step{}: watch longer to tell a warm-up from a leak",
                    if steps == 1 { "" } else { "s" }
                ),
            );
        }
        return assessment(
            Verdict::Growing,
            format!("steady increasing trend (Mann-Kendall {})", p_value(mk.p)),
        );
    }
    if fit.high * span < material {
        return assessment(
            Verdict::Flat,
            "the upper end of the slope's 95% interval is immaterial over the window".into(),
        );
    }
    // A rise within the series' own fluctuation, without a significant
    // trend, is what steady state looks like (a sawtooth's partial cycle at
    // either end of the window tilts the line without meaning anything).
    let mut res: Vec<f64> = points
        .iter()
        .map(|p| p.v - (fit.intercept + fit.slope * p.t))
        .collect();
    res.sort_by(f64::total_cmp);
    let spread = res[res.len() * 3 / 4] - res[res.len() / 4];
    if !significant && rise.abs() < material.max(spread) {
        return assessment(
            Verdict::Flat,
            format!("no significant trend (Mann-Kendall {})", p_value(mk.p)),
        );
    }
    if significant && mk.s < 0 {
        return assessment(Verdict::Flat, "shrinking".into());
    }
    if significant && mk.s > 0 {
        return assessment(
            Verdict::Inconclusive,
            "rising, but in steps or not yet by a material amount; watch longer".into(),
        );
    }
    assessment(
        Verdict::Inconclusive,
        "the slope's 95% interval allows both no growth and material growth; watch longer".into(),
    )
}

/// The fitted line over the analysed window, for charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitLine {
    /// Fitted bytes at t = 0.
    pub intercept_bytes: f64,
    /// Slope in bytes per second.
    pub slope_bytes_per_second: f64,
    /// Window start, seconds since the first sample.
    pub t_start: f64,
    /// Window end.
    pub t_end: f64,
}

/// One region's trend.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionTrend {
    /// The region's name (`heap`, `anon`, `stack`, `file`, `shmem`).
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its slope, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// Lower end of the 95% interval, bytes per hour.
    pub ci_low: f64,
    /// Upper end, bytes per hour.
    pub ci_high: f64,
    /// Resident bytes at the last sample that read the full `smaps`.
    pub rss_bytes: u64,
    /// Why.
    pub reason: String,
}

/// The trend of a recording: what `trend --json` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// The verdict over total RSS.
    pub verdict: Verdict,
    /// Why, in a phrase.
    pub reason: String,
    /// Theil–Sen slope of RSS after warm-up, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// Lower end of the slope's 95% interval, bytes per hour.
    pub ci_low: f64,
    /// Upper end of the slope's 95% interval, bytes per hour.
    pub ci_high: f64,
    /// Per-region verdicts.
    pub regions: Vec<RegionTrend>,
    /// The region that carries the growth, when RSS grows.
    pub growth_region: Option<String>,
    /// Length of the excluded warm-up.
    pub warmup_seconds: f64,
    /// Projected time until RSS reaches the memory limit, when growing.
    pub time_to_limit_seconds: Option<f64>,
    /// The memory limit used for that projection.
    pub limit_bytes: Option<u64>,
    /// Where the limit came from.
    pub limit_source: Option<LimitSource>,
    /// Samples in the recording.
    pub samples: usize,
    /// Samples in the analysed window.
    pub analysed_samples: usize,
    /// Time from the first to the last sample.
    pub duration_seconds: f64,
    /// The program's RSS at the last sample (the tracer's own memory left
    /// out).
    pub rss_bytes: u64,
    /// leaktrail's own resident memory in the target at the last full
    /// sample (the tracer's audit region), which every figure above leaves
    /// out (issue 13).
    pub tracer_bytes: u64,
    /// The trend test over the analysed window.
    pub mann_kendall: Option<MannKendall>,
    /// The fitted line, for charts.
    pub fit: Option<FitLine>,
}

fn per_hour(x: f64) -> f64 {
    x * 3600.0
}

/// The program's RSS at each sample: the kernel's total less the tracer's
/// own memory as of the latest full sample (samples between full ones carry
/// it forward). The audit region grows with the program's live blocks; left
/// in, a steady leak gained a false warm-up and a weaker trend (issue 13).
pub fn program_rss(samples: &[Sample]) -> Vec<u64> {
    let mut tracer = 0u64;
    samples
        .iter()
        .map(|s| {
            if let Some(r) = s.regions {
                tracer = r.tracer;
            }
            s.rss.saturating_sub(tracer)
        })
        .collect()
}

/// The trend of a recording.
pub fn analyse(recording: &Recording) -> Trend {
    analyse_samples(&recording.meta, &recording.samples)
}

/// The trend of a series of samples (also used on a watch in progress).
pub fn analyse_samples(meta: &Meta, samples: &[Sample]) -> Trend {
    let t0 = samples.first().map_or(0.0, |s| s.t);
    let program = program_rss(samples);
    let tracer = samples
        .iter()
        .rev()
        .find_map(|s| s.regions.map(|r| r.tracer))
        .unwrap_or(0);
    let total: Vec<Point> = samples
        .iter()
        .zip(&program)
        .map(|(s, &v)| Point {
            t: s.t - t0,
            v: v as f64,
        })
        .collect();
    let reduced = reduce(&total, MAX_POINTS);
    let cut = warmup_end(&reduced);
    let warmup_seconds = if cut == 0 { 0.0 } else { reduced[cut].t };
    let window: Vec<Point> = total
        .iter()
        .copied()
        .filter(|p| p.t >= warmup_seconds)
        .collect();
    let mut levels: Vec<f64> = total.iter().map(|p| p.v).collect();
    let material = material(median(&mut levels));
    let a = assess(&window, material);

    let regions: Vec<RegionTrend> = Region::ALL
        .iter()
        .map(|&region| {
            let points: Vec<Point> = samples
                .iter()
                .filter_map(|s| {
                    s.regions.map(|r| Point {
                        t: s.t - t0,
                        v: r.get(region) as f64,
                    })
                })
                .filter(|p| p.t >= warmup_seconds)
                .collect();
            let last = samples
                .iter()
                .rev()
                .find_map(|s| s.regions.map(|r| r.get(region)))
                .unwrap_or(0);
            let ra = assess(&points, material);
            let fit = ra.fit;
            RegionTrend {
                name: region.name().to_string(),
                verdict: ra.verdict,
                slope_bytes_per_hour: fit.map_or(0.0, |f| per_hour(f.slope)),
                ci_low: fit.map_or(0.0, |f| per_hour(f.low)),
                ci_high: fit.map_or(0.0, |f| per_hour(f.high)),
                rss_bytes: last,
                reason: ra.reason,
            }
        })
        .collect();

    let growth_region = if a.verdict == Verdict::Growing {
        let growing = regions.iter().filter(|r| r.verdict == Verdict::Growing);
        let best = growing
            .max_by(|x, y| x.slope_bytes_per_hour.total_cmp(&y.slope_bytes_per_hour))
            .or_else(|| {
                regions
                    .iter()
                    .filter(|r| r.slope_bytes_per_hour > 0.0)
                    .max_by(|x, y| x.slope_bytes_per_hour.total_cmp(&y.slope_bytes_per_hour))
            });
        best.map(|r| r.name.clone())
    } else {
        None
    };

    let rss_bytes = program.last().copied().unwrap_or(0);
    let fit = a.fit;
    let time_to_limit_seconds = match (a.verdict, fit, meta.memory_limit) {
        (Verdict::Growing, Some(f), Some(limit)) if f.slope > 0.0 => {
            // The limit counts all the memory, the tracer's included.
            let all = samples.last().map_or(0, |s| s.rss);
            Some((limit.bytes.saturating_sub(all)) as f64 / f.slope)
        }
        _ => None,
    };
    Trend {
        verdict: a.verdict,
        reason: a.reason,
        slope_bytes_per_hour: fit.map_or(0.0, |f| per_hour(f.slope)),
        ci_low: fit.map_or(0.0, |f| per_hour(f.low)),
        ci_high: fit.map_or(0.0, |f| per_hour(f.high)),
        regions,
        growth_region,
        warmup_seconds,
        time_to_limit_seconds,
        limit_bytes: meta.memory_limit.map(|l| l.bytes),
        limit_source: meta.memory_limit.map(|l| l.source),
        samples: samples.len(),
        analysed_samples: window.len(),
        duration_seconds: total.last().map_or(0.0, |p| p.t),
        rss_bytes,
        tracer_bytes: tracer,
        mann_kendall: a.mann_kendall,
        fit: fit.map(|f| FitLine {
            intercept_bytes: f.intercept,
            slope_bytes_per_second: f.slope,
            t_start: window.first().map_or(0.0, |p| p.t),
            t_end: window.last().map_or(0.0, |p| p.t),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// xorshift: deterministic noise without a dependency.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    fn series(n: usize, dt: f64, mut f: impl FnMut(f64) -> f64) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let t = i as f64 * dt;
                Point { t, v: f(t) }
            })
            .collect()
    }

    fn verdict_of(points: &[Point]) -> (Verdict, f64, usize) {
        let cut = warmup_end(points);
        let mut levels: Vec<f64> = points.iter().map(|p| p.v).collect();
        let a = assess(&points[cut..], material(median(&mut levels)));
        (a.verdict, a.fit.map_or(0.0, |f| f.slope), cut)
    }

    #[test]
    fn normal() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-1.96) - 0.025).abs() < 1e-4);
    }

    #[test]
    fn mann_kendall_basics() {
        let up: Vec<f64> = (0..10).map(f64::from).collect();
        let mk = mann_kendall(&up, 1.0);
        assert_eq!(mk.s, 45);
        assert!(mk.p < 0.001);
        let flat = vec![5.0; 10];
        let mk = mann_kendall(&flat, 1.0);
        assert_eq!(mk.s, 0);
        assert!(mk.p > 0.999);
        // Var(S) for n = 10 without ties is 125.
        assert_eq!(mk_variance(&up), 125.0);
    }

    #[test]
    fn theil_sen_shrugs_off_outliers() {
        let mut pts = series(50, 1.0, |t| 1000.0 + 10.0 * t);
        pts[3].v = 1e9;
        pts[40].v = 0.0;
        let values: Vec<f64> = pts.iter().map(|p| p.v).collect();
        let fit = theil_sen(&pts, mk_variance(&values)).unwrap();
        assert!((fit.slope - 10.0).abs() < 0.01, "{fit:?}");
        assert!(fit.low <= 10.0 && fit.high >= 10.0);
        assert!((fit.intercept - 1000.0).abs() < 1.0);
        assert!(theil_sen(&[Point { t: 1.0, v: 1.0 }], 0.0).is_none());
    }

    #[test]
    fn steady_leak_is_growing_from_the_start() {
        let mut noise = Noise(7);
        // 2 MiB/s, 0.2 MiB noise, 100 ms samples for 4 s.
        let pts = series(40, 0.1, |t| {
            50.0 * MIB + 2.0 * MIB * t + 0.2 * MIB * noise.next()
        });
        let (v, slope, cut) = verdict_of(&pts);
        assert_eq!(v, Verdict::Growing);
        assert!((slope / (2.0 * MIB) - 1.0).abs() < 0.05, "{slope}");
        assert_eq!(cut, 0);
    }

    #[test]
    fn warmup_then_noise_is_flat() {
        let mut noise = Noise(11);
        // 50 MiB in five steps over the first second, then ±1 MiB noise.
        let pts = series(60, 0.1, |t| {
            10.0 * MIB + 10.0 * MIB * (t / 0.2).floor().min(5.0) + MIB * noise.next()
        });
        let (v, _, cut) = verdict_of(&pts);
        assert_eq!(v, Verdict::Flat);
        assert!((9..=12).contains(&cut), "{cut}");
    }

    #[test]
    fn a_leak_that_starts_late_is_growing() {
        let mut noise = Noise(9);
        // Idle for 6 minutes, then 1 MiB/min for 4 minutes.
        let pts = series(600, 1.0, |t| {
            let leak = if t < 360.0 { 0.0 } else { (t - 360.0) / 60.0 };
            (80.0 + leak) * MIB + 0.1 * MIB * noise.next()
        });
        assert_eq!(verdict_of(&pts).0, Verdict::Growing);
    }

    #[test]
    fn a_short_startup_ramp_is_warmup() {
        let mut noise = Noise(5);
        // Three samples ramping up to the base level, then 600 flat ones:
        // too short a run for the walk, but it starts the series.
        let pts = series(603, 1.0, |t| {
            let base = if t < 3.0 { 20.0 + 10.0 * t } else { 54.0 };
            base * MIB + 0.2 * MIB * noise.next()
        });
        let (v, _, cut) = verdict_of(&pts);
        assert_eq!(cut, 3);
        assert_eq!(v, Verdict::Flat);
    }

    #[test]
    fn node_like_steps_then_plateau_is_flat() {
        let mut noise = Noise(3);
        // V8: steps of uneven size over the first 3 minutes, flat for 7.
        let steps = [
            (10.0, 8.0),
            (40.0, 20.0),
            (70.0, 5.0),
            (120.0, 30.0),
            (170.0, 12.0),
        ];
        let pts = series(600, 1.0, |t| {
            let base: f64 = steps
                .iter()
                .filter(|(at, _)| t >= *at)
                .map(|(_, mb)| mb)
                .sum();
            (60.0 + base) * MIB + 0.5 * MIB * noise.next()
        });
        let (v, _, cut) = verdict_of(&pts);
        assert_eq!(v, Verdict::Flat);
        assert!((170..=185).contains(&cut), "{cut}");
        // A least-squares line over the same first 3 minutes would say
        // +tens of MB/h; a window still inside the steps is not `growing`.
        let (v, _, _) = verdict_of(&pts[..180]);
        assert_ne!(v, Verdict::Growing);
    }

    #[test]
    fn sawtooth_is_flat() {
        for (period, seed) in [(0.73, 1), (0.5, 2), (1.3, 3)] {
            let mut noise = Noise(seed);
            let pts = series(50, 0.1, |t| {
                let phase = (t / period).fract();
                30.0 * MIB + 20.0 * MIB * phase + 0.1 * MIB * noise.next()
            });
            let cut = warmup_end(&pts);
            let a = assess(&pts[cut..], material(30.0 * MIB));
            assert_eq!(a.verdict, Verdict::Flat, "period {period}: cut {cut} {a:?}");
        }
    }

    #[test]
    fn flat_and_constant_is_flat() {
        let pts = series(30, 1.0, |_| 123.0 * MIB);
        assert_eq!(verdict_of(&pts).0, Verdict::Flat);
    }

    #[test]
    fn too_short_is_inconclusive() {
        let pts = series(4, 1.0, |t| 10.0 * MIB + t * MIB);
        assert_eq!(verdict_of(&pts).0, Verdict::Inconclusive);
        assert_eq!(verdict_of(&[]).0, Verdict::Inconclusive);
    }

    #[test]
    fn a_single_step_is_not_a_leak() {
        let pts = series(40, 0.1, |t| if t < 2.5 { 10.0 * MIB } else { 60.0 * MIB });
        assert_ne!(verdict_of(&pts).0, Verdict::Growing);
    }

    fn meta() -> Meta {
        Meta {
            format: leaktrail_recording::dir::FORMAT.into(),
            version: 1,
            pid: 1,
            comm: "x".into(),
            cmdline: vec![],
            launched: true,
            start_unix_ms: 0,
            interval_ms: 1000,
            memory_limit: Some(leaktrail_recording::maps::MemoryLimit {
                bytes: 1 << 30,
                source: LimitSource::CgroupV2,
            }),
            end: None,
        }
    }

    fn sample(i: u64, rss: u64, heap: u64) -> Sample {
        Sample {
            i,
            t: i as f64,
            rss,
            pss: rss,
            anon: heap,
            swap: 0,
            regions: Some(leaktrail_recording::maps::RegionBytes {
                heap,
                file: rss - heap,
                ..Default::default()
            }),
            detail: false,
        }
    }

    #[test]
    fn recording_trend_finds_the_growing_region() {
        // 1 MiB/s into the heap over 30 s, file-backed memory flat.
        let samples: Vec<Sample> = (0..30)
            .map(|i| sample(i, (20 << 20) + (i << 20), (2 << 20) + (i << 20)))
            .collect();
        let t = analyse_samples(&meta(), &samples);
        assert_eq!(t.verdict, Verdict::Growing);
        assert_eq!(t.growth_region.as_deref(), Some("heap"));
        assert!((t.slope_bytes_per_hour / (3600.0 * MIB) - 1.0).abs() < 1e-9);
        // (1 GiB - 49 MiB) at 1 MiB/s.
        assert!((t.time_to_limit_seconds.unwrap() - 975.0).abs() < 1e-6);
        // The JSON field names are report::json::trend's, tested there.
        let names: Vec<&str> = t.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["heap", "anon", "stack", "file", "shmem"]);
        assert_eq!(t.regions[3].verdict, Verdict::Flat);
    }

    #[test]
    fn empty_and_flat_recordings() {
        let t = analyse_samples(&meta(), &[]);
        assert_eq!(t.verdict, Verdict::Inconclusive);
        assert!(t.time_to_limit_seconds.is_none());
        let samples: Vec<Sample> = (0..30).map(|i| sample(i, 20 << 20, 2 << 20)).collect();
        let t = analyse_samples(&meta(), &samples);
        assert_eq!(t.verdict, Verdict::Flat);
        assert!(t.time_to_limit_seconds.is_none());
        assert!(t.growth_region.is_none());
    }

    #[test]
    fn reduce_keeps_shape() {
        let pts = series(5000, 1.0, |t| t * 2.0);
        let r = reduce(&pts, 1000);
        assert_eq!(r.len(), 1000);
        let values: Vec<f64> = r.iter().map(|p| p.v).collect();
        let fit = theil_sen(&r, mk_variance(&values)).unwrap();
        assert!((fit.slope - 2.0).abs() < 1e-9);
    }
}
