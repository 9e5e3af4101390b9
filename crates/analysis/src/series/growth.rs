//! Which allocation sites and size classes grow, ranked, across snapshots.
//!
//! Reachability cannot see a cache that is never trimmed: every buffer in
//! it is still referenced. What gives it away is comparison over time. For
//! every allocation site (stack and size class) and for every size class
//! alone we take the series of live buffers and bytes across the snapshots,
//! ordered by capture time, and measure three things:
//!
//! * **slope**: the Theil–Sen slope of live bytes over time (bytes per
//!   hour), from [`super::stats::theil_sen`], robust to one odd snapshot;
//! * **monotonicity**: Kendall's τ of the series (the Mann–Kendall
//!   statistic S over its number of pairs, [`super::stats::mann_kendall`]),
//!   1 when every later snapshot holds more than every earlier one, 0 for
//!   no order, negative for shrinking;
//! * **steadiness**: how much of the rise happened on schedule. Between two
//!   snapshots a steady grower rises in proportion to the time between
//!   them; we sum, over the steps, the part of each rise up to that
//!   proportional share of the total rise, and divide by the sum of all
//!   rises. A steady leak scores 1; a one-off burst between two of `n`
//!   evenly spaced snapshots scores `1 / (n − 1)`. Snapshots taken on
//!   demand are spaced by whatever the user was doing, and a program that
//!   leaks per request rather than per second rises by the same amount
//!   between any two of them, so we also measure the same with every step
//!   given an equal share, and keep the larger of the two: a burst is
//!   unsteady by both measures.
//!
//! The **score** is the fitted rise over the window (slope × span), times
//! monotonicity, times steadiness squared: bytes of growth that look like
//! a leak. A large flat population has no rise and scores 0; a burst is
//! punished twice (its τ is below 1, and it is not steady). Suspects are
//! ranked by score, then by rise. With only two snapshots neither
//! monotonicity nor steadiness can be told from a single step, so both
//! count as 1 and the score is the rise.
//!
//! A score ranks; it does not say that anything grows. A site or class is
//! **significant** ([`Stats::grows_above`]) only when three things hold:
//! the one-sided Mann–Kendall test says its bytes rise (p below
//! [`ALPHA`]), the lower end of Sen's 95% interval for its slope is above
//! zero, and its fitted rise is above the noise of the whole heap: 1.96
//! times the standard deviation of the total live bytes about their own
//! Theil–Sen line ([`heap_noise`]). No byte constant: a quiet program's
//! small steady growth can be significant, a noisy one's is not. With
//! fewer than four snapshots no rise is significant at 5% (a perfect
//! rise over three has p = 0.15), and the diagnosis says so rather than
//! name a noise-level site. Significant suspects rank before the rest.
//!
//! ```
//! use leaktrail_analysis::growth::Stats;
//! let t = [0.0, 600.0, 1200.0, 1800.0];
//! let steady = Stats::of(&t, &[0.0, 100.0, 200.0, 300.0]);
//! let burst = Stats::of(&t, &[0.0, 0.0, 900.0, 900.0]);
//! assert!(steady.score > burst.score);
//! assert_eq!(steady.monotonicity, 1.0);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::stats::{mann_kendall, normal_cdf, theil_sen, Point};
use crate::plumbing;
use crate::profile::{Profile, SiteKey};
use crate::symbolize::{Frame, FrameKind};
use crate::Error;

/// One snapshot in the comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The snapshot file.
    pub path: PathBuf,
    /// When it was taken, ns since the epoch.
    pub time_unix_ns: u64,
    /// The process.
    pub pid: Option<i32>,
    /// Live bytes in it.
    pub live_bytes: u64,
    /// Live buffers in it.
    pub live_count: u64,
    /// Its blocks come from a walk of glibc's heap (an untraced process):
    /// sites are types and size classes, not stacks.
    pub stackless: bool,
    /// With a tracer `leaktrail attach` loaded late: its blocks from
    /// before the attach (sites by type, as `stackless`).
    pub before_attach: Option<crate::leaks::Tally>,
}

/// One point of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesPoint {
    /// Seconds after the first snapshot.
    pub t_seconds: f64,
    /// Live buffers.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The statistics of one series of live bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Theil–Sen slope, bytes per hour (0 when the snapshots span no time).
    pub slope_bytes_per_hour: f64,
    /// Last minus first, bytes.
    pub rise_bytes: f64,
    /// Kendall's τ, −1 ..= 1.
    pub monotonicity: f64,
    /// The fraction of the rise that came on schedule, 0 ..= 1.
    pub steadiness: f64,
    /// Rise × monotonicity × steadiness², bytes (0 when not growing).
    pub score: f64,
    /// The fitted rise over the window (slope × span), bytes.
    pub fitted_rise_bytes: f64,
    /// Lower end of Sen's 95% interval for the slope, bytes per hour.
    pub slope_low_bytes_per_hour: f64,
    /// One-sided Mann–Kendall p-value for a rise (1 when it cannot be told).
    pub p_value: f64,
    /// Whether the series grows above the noise of the whole heap (see
    /// [`Stats::grows_above`]); set by [`analyse`], false from [`Stats::of`].
    pub significant: bool,
}

/// The significance level of the growth test.
pub const ALPHA: f64 = 0.05;

impl Stats {
    /// The statistics of `values` (bytes) taken at `times` (seconds,
    /// ascending).
    pub fn of(times: &[f64], values: &[f64]) -> Stats {
        let n = times.len().min(values.len());
        let (times, values) = (&times[..n], &values[..n]);
        if n < 2 {
            return Stats {
                slope_bytes_per_hour: 0.0,
                rise_bytes: 0.0,
                monotonicity: 0.0,
                steadiness: 0.0,
                score: 0.0,
                fitted_rise_bytes: 0.0,
                slope_low_bytes_per_hour: 0.0,
                p_value: 1.0,
                significant: false,
            };
        }
        let rise = values[n - 1] - values[0];
        let span = times[n - 1] - times[0];
        let points: Vec<Point> = times
            .iter()
            .zip(values)
            .map(|(&t, &v)| Point { t, v })
            .collect();
        let mk = mann_kendall(values, 1.0);
        let fit = (span > 0.0).then(|| theil_sen(&points, mk.var_s)).flatten();
        let slope = fit.map_or(0.0, |f| f.slope);
        // Two snapshots are one step: nothing tells it from noise.
        let p_value = if n > 2 && mk.z > 0.0 {
            1.0 - normal_cdf(mk.z)
        } else {
            1.0
        };
        let pairs = (n * (n - 1) / 2) as f64;
        let (monotonicity, steadiness) = if n == 2 {
            (rise.signum(), 1.0)
        } else {
            (mk.s as f64 / pairs, steadiness(times, values))
        };
        let fitted = if span > 0.0 { slope * span } else { rise };
        let score = if fitted > 0.0 && rise > 0.0 && monotonicity > 0.0 {
            fitted * monotonicity * steadiness * steadiness
        } else {
            0.0
        };
        Stats {
            slope_bytes_per_hour: slope * 3600.0,
            rise_bytes: rise,
            monotonicity,
            steadiness,
            score,
            fitted_rise_bytes: fitted,
            slope_low_bytes_per_hour: fit.map_or(0.0, |f| f.low * 3600.0),
            p_value,
            significant: false,
        }
    }

    /// Whether the series grows, and by more than `noise` bytes: the
    /// one-sided Mann–Kendall p below [`ALPHA`], Sen's interval above zero,
    /// and the fitted rise above `noise`.
    pub fn grows_above(&self, noise: f64) -> bool {
        self.p_value < ALPHA
            && self.slope_low_bytes_per_hour > 0.0
            && self.fitted_rise_bytes > noise
            && self.rise_bytes > 0.0
    }
}

/// The noise of a series of totals (bytes at `times`): 1.96 times the
/// standard deviation of its residuals about its Theil–Sen line, the
/// smallest rise a site must exceed to stand out of the whole heap's
/// wobble. 0 with fewer than three points.
pub fn heap_noise(times: &[f64], totals: &[f64]) -> f64 {
    let n = times.len().min(totals.len());
    if n < 3 {
        return 0.0;
    }
    let points: Vec<Point> = times[..n]
        .iter()
        .zip(&totals[..n])
        .map(|(&t, &v)| Point { t, v })
        .collect();
    let Some(fit) = theil_sen(&points, 0.0) else {
        return 0.0;
    };
    let ss: f64 = points
        .iter()
        .map(|p| (p.v - fit.intercept - fit.slope * p.t).powi(2))
        .sum();
    // n − 2 degrees of freedom: a line has two parameters.
    1.96 * (ss / (n - 2) as f64).sqrt()
}

/// See the module documentation.
fn steadiness(times: &[f64], values: &[f64]) -> f64 {
    let n = values.len();
    let span = times[n - 1] - times[0];
    let by_time = on_schedule(values, |i| {
        if span > 0.0 {
            (times[i] - times[i - 1]) / span
        } else {
            1.0 / (n - 1) as f64
        }
    });
    let by_step = on_schedule(values, |_| 1.0 / (n - 1) as f64);
    by_time.max(by_step)
}

/// The fraction of the rises of `values` that came within each step's
/// `share` of the total rise.
fn on_schedule(values: &[f64], share: impl Fn(usize) -> f64) -> f64 {
    let n = values.len();
    let rise = values[n - 1] - values[0];
    let ups: f64 = values.windows(2).map(|w| (w[1] - w[0]).max(0.0)).sum();
    if rise <= 0.0 || ups <= 0.0 {
        return 0.0;
    }
    let kept: f64 = (1..n)
        .map(|i| (values[i] - values[i - 1]).max(0.0).min(rise * share(i)))
        .sum();
    (kept / ups).clamp(0.0, 1.0)
}

/// One growing allocation site in one size class.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    /// 1 for the strongest.
    pub rank: usize,
    /// The allocation stack, innermost first.
    pub stack: Vec<Frame>,
    /// The size class, by its largest size.
    pub class: u64,
    /// Live buffers and bytes in each snapshot, in time order.
    pub series: Vec<SeriesPoint>,
    /// Theil–Sen slope of live bytes, bytes per hour.
    pub slope: f64,
    /// The growth score, bytes (see the module documentation).
    pub score: f64,
    /// All the statistics.
    pub stats: Stats,
    /// For a Node.js process: who owns these buffers (backing stores, V8
    /// handles, other native memory), from the stack.
    pub owner: Option<crate::owner::Owner>,
    /// What the tracer counted at the site (all its classes) up to the
    /// newest snapshot, when it counted (audit format 2).
    pub counts: Option<crate::profile::SiteCounts>,
}

/// One size class across the snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassGrowth {
    /// The class, by its largest size.
    pub class: u64,
    /// Live buffers and bytes in each snapshot.
    pub series: Vec<SeriesPoint>,
    /// Its statistics.
    pub stats: Stats,
}

/// The comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    /// The snapshots, in time order.
    pub snapshots: Vec<Observation>,
    /// Seconds from the first to the last.
    pub span_seconds: f64,
    /// The noise of the whole heap's live bytes ([`heap_noise`]): a
    /// significant site rises by more.
    pub noise_bytes: f64,
    /// Growing sites, significant ones first, then by score (only sites
    /// whose bytes rose).
    pub suspects: Vec<Suspect>,
    /// Every size class with live buffers in any snapshot, by score, then
    /// rise, then live bytes at the end.
    pub classes: Vec<ClassGrowth>,
    /// The largest sampling rate among the snapshots (0: every one is a
    /// full audit); when not 0, the series are estimates.
    pub sample_rate: u64,
}

impl Growth {
    /// Whether any snapshot's blocks come from a heap walk (no stacks).
    pub fn stackless(&self) -> bool {
        self.snapshots.iter().any(|o| o.stackless)
    }

    /// The newest snapshot's blocks from before `leaktrail attach`, if
    /// any snapshot has some.
    pub fn before_attach(&self) -> Option<crate::leaks::Tally> {
        self.snapshots.iter().rev().find_map(|o| o.before_attach)
    }
}

/// (profile index, entry index) of a site's newest frames, and its
/// per-snapshot (count, bytes).
type Site = ((usize, usize), Vec<(u64, u64)>);

/// The identity of a site across snapshots, tiers and recompilations.
///
/// A stack without JS frames is its frames by (module, file offset), as
/// [`SiteKey`]. A stack that runs JavaScript is, instead, the innermost
/// native function outside the allocation plumbing (by module and offset)
/// and the program's JS functions (not Node's own `node:` scripts), each
/// by its script, name and start position, inlined ones included. Not by
/// the address of whichever code object V8 compiled for a function:
/// Ignition, Sparkplug, Maglev and TurboFan each make one, enter the
/// allocator through different builtins, and inline different callees,
/// so one JS function's allocations would split over as many sites.
pub fn site_identity(frames: &[Frame]) -> SiteKey {
    let native = Frame::site_frame;
    if !plumbing::runs_js(frames) {
        return SiteKey(frames.iter().filter(|f| !f.inlined).map(native).collect());
    }
    let allocator = frames
        .iter()
        .take_while(|f| f.kind != FrameKind::Js)
        .find(|f| {
            f.function
                .as_deref()
                .is_some_and(|n| !plumbing::is_plumbing(n))
        })
        .map(native);
    let js = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Js && !plumbing::is_runtime(f))
        .map(|f| {
            let (line, column) = match f.start_line {
                Some(l) => (l, f.start_column.unwrap_or(0)),
                None => (f.line.unwrap_or(0), f.column.unwrap_or(0)),
            };
            (
                format!(
                    "js:{}:{}",
                    f.file.as_deref().unwrap_or(""),
                    f.function.as_deref().unwrap_or("")
                ),
                (u64::from(line) << 32) | u64::from(column),
            )
        });
    SiteKey(allocator.into_iter().chain(js).collect())
}

/// Compares `profiles` (any order: they are sorted by capture time).
pub fn analyse(profiles: &[Profile]) -> Growth {
    let mut order: Vec<&Profile> = profiles.iter().collect();
    order.sort_by(|a, b| {
        a.time_unix_ns
            .cmp(&b.time_unix_ns)
            .then(a.path.cmp(&b.path))
    });
    let n = order.len();
    let t0 = order.first().map_or(0, |p| p.time_unix_ns);
    let times: Vec<f64> = order
        .iter()
        .map(|p| p.time_unix_ns.saturating_sub(t0) as f64 / 1e9)
        .collect();
    let totals: Vec<f64> = order.iter().map(|p| p.bytes() as f64).collect();
    let noise = heap_noise(&times, &totals);

    // (site, class) -> (where its newest frames are, per-snapshot series).
    // Entries of one snapshot that are one site by identity (one JS
    // function reached through two code objects) add up.
    let mut sites: HashMap<(SiteKey, u64), Site> = HashMap::new();
    let mut classes: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (i, p) in order.iter().enumerate() {
        for (j, e) in p.entries.iter().enumerate() {
            let s = sites
                .entry((site_identity(&e.frames), e.class))
                .or_insert_with(|| ((i, j), vec![(0, 0); n]));
            s.1[i].0 += e.count;
            s.1[i].1 += e.bytes;
            // The newest snapshot's frames; in it, the largest entry's
            // (entries come largest first).
            if s.0 .0 != i {
                s.0 = (i, j);
            }
            let c = classes.entry(e.class).or_insert_with(|| vec![(0, 0); n]);
            c[i].0 += e.count;
            c[i].1 += e.bytes;
        }
    }
    let series = |v: &[(u64, u64)]| -> Vec<SeriesPoint> {
        v.iter()
            .zip(&times)
            .map(|(&(count, bytes), &t)| SeriesPoint {
                t_seconds: t,
                count,
                bytes,
            })
            .collect()
    };
    let stats = |v: &[(u64, u64)]| {
        let bytes: Vec<f64> = v.iter().map(|p| p.1 as f64).collect();
        let mut st = Stats::of(&times, &bytes);
        st.significant = st.grows_above(noise);
        st
    };

    let node = order.iter().any(|p| {
        p.modules
            .iter()
            .any(|m| leaktrail_recording::is_node(&m.path))
    });
    let counted: std::collections::HashMap<&crate::profile::SiteKey, &crate::profile::SiteCounts> =
        order
            .last()
            .and_then(|p| p.counted.as_ref())
            .map(|c| c.sites.iter().map(|s| (&s.key, s)).collect())
            .unwrap_or_default();
    let mut suspects: Vec<Suspect> = sites
        .iter()
        .filter_map(|((_, class), ((i, j), v))| {
            let st = stats(v);
            if st.rise_bytes <= 0.0 {
                return None;
            }
            Some(Suspect {
                rank: 0,
                stack: order[*i].entries[*j].frames.clone(),
                class: *class,
                series: series(v),
                slope: st.slope_bytes_per_hour,
                score: st.score,
                stats: st,
                owner: node.then(|| crate::owner::of_block(&order[*i].entries[*j].frames)),
                counts: counted.get(&order[*i].entries[*j].key).map(|&c| c.clone()),
            })
        })
        .collect();
    suspects.sort_by(|a, b| {
        b.stats
            .significant
            .cmp(&a.stats.significant)
            .then(b.score.total_cmp(&a.score))
            .then(b.stats.rise_bytes.total_cmp(&a.stats.rise_bytes))
            .then(a.class.cmp(&b.class))
            .then_with(|| SiteKey::of(&a.stack).cmp(&SiteKey::of(&b.stack)))
    });
    for (k, s) in suspects.iter_mut().enumerate() {
        s.rank = k + 1;
    }

    let mut class_rows: Vec<ClassGrowth> = classes
        .iter()
        .map(|(&class, v)| ClassGrowth {
            class,
            series: series(v),
            stats: stats(v),
        })
        .collect();
    class_rows.sort_by(|a, b| {
        let last = |c: &ClassGrowth| c.series.last().map_or(0, |p| p.bytes);
        b.stats
            .significant
            .cmp(&a.stats.significant)
            .then(b.stats.score.total_cmp(&a.stats.score))
            .then(b.stats.rise_bytes.total_cmp(&a.stats.rise_bytes))
            .then(last(b).cmp(&last(a)))
            .then(a.class.cmp(&b.class))
    });

    Growth {
        sample_rate: order.iter().map(|p| p.sample_rate).max().unwrap_or(0),
        snapshots: order
            .iter()
            .map(|p| Observation {
                path: p.path.clone(),
                time_unix_ns: p.time_unix_ns,
                pid: p.pid,
                live_bytes: p.bytes(),
                live_count: p.count(),
                stackless: p.stackless,
                before_attach: p.before_attach,
            })
            .collect(),
        span_seconds: times.last().copied().unwrap_or(0.0),
        noise_bytes: noise,
        suspects,
        classes: class_rows,
    }
}

/// The snapshot files named by `inputs`: a recording directory stands for
/// all its snapshots, in the order taken; a file for itself.
pub fn snapshot_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let found = leaktrail_recording::dir::snapshots::series(p)?;
            if found.is_empty() {
                return Err(Error::Insufficient(format!(
                    "{} has no snapshots (expected {}/snapshots/NNNN.core, as `leaktrail run` writes)",
                    p.display(),
                    p.display()
                )));
            }
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Every live buffer of the snapshot at `path` by site, JIT frames named
/// as of each buffer's allocation when the recording has V8's jitdump; an
/// untraced process's blocks by type ([`crate::profile::profile_all`]).
fn profile_of(path: &Path) -> Result<Profile, Error> {
    let snap = leaktrail_recording::Snapshot::open(path)?;
    let symbolizer = crate::symbolize::Symbolizer::for_snapshot(&snap);
    Ok(crate::profile::profile_all(&snap, &symbolizer)?.0)
}

/// Opens every snapshot named by `inputs` (see [`snapshot_paths`]) and
/// compares them. Needs at least two snapshots.
pub fn open(inputs: &[PathBuf]) -> Result<Growth, Error> {
    let paths = snapshot_paths(inputs)?;
    if paths.len() < 2 {
        return Err(Error::Insufficient(format!(
            "growth compares snapshots over time and needs at least two; got {}",
            paths.len()
        )));
    }
    let profiles = paths
        .iter()
        .map(|p| profile_of(Path::new(p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(analyse(&profiles))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: [f64; 6] = [0.0, 60.0, 120.0, 180.0, 240.0, 300.0];

    #[test]
    fn steady_growth_scores_its_rise() {
        let s = Stats::of(&T, &[0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(s.monotonicity, 1.0);
        assert!((s.steadiness - 1.0).abs() < 1e-9);
        assert!((s.score - 50.0).abs() < 1e-6);
        assert!((s.slope_bytes_per_hour - 10.0 / 60.0 * 3600.0).abs() < 1e-6);
    }

    #[test]
    fn a_flat_population_scores_nothing() {
        let s = Stats::of(&T, &[1e9, 1e9, 1e9, 1e9, 1e9, 1e9]);
        assert_eq!(s.score, 0.0);
        let wobbly = Stats::of(&T, &[1e9, 1e9 + 5.0, 1e9 - 5.0, 1e9, 1e9 + 5.0, 1e9]);
        assert_eq!(wobbly.score, 0.0);
    }

    #[test]
    fn a_burst_ten_times_larger_stays_below_steady_growth() {
        let steady = Stats::of(&T, &[0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        let burst = Stats::of(&T, &[0.0, 0.0, 500.0, 500.0, 500.0, 500.0]);
        assert!(burst.score < steady.score, "{burst:?} vs {steady:?}");
        assert!((burst.steadiness - 0.2).abs() < 1e-9);
    }

    #[test]
    fn uneven_spacing_is_still_steady() {
        let t = [0.0, 100.0, 110.0, 400.0];
        let v: Vec<f64> = t.iter().map(|x| 3.0 * x).collect();
        let s = Stats::of(&t, &v);
        assert!((s.steadiness - 1.0).abs() < 1e-9);
    }

    #[test]
    fn growth_per_step_is_steady_however_the_snapshots_are_spaced() {
        // Four steps of growth, then a snapshot long after with none.
        let t = [0.0, 0.01, 0.02, 0.04, 0.05, 0.5];
        let grow = Stats::of(&t, &[1.0, 2.0, 3.0, 4.0, 5.0, 5.0]);
        // Four of the five steps carry their share; by time it would be
        // 0.1 (the last, flat step is 90% of the span).
        assert!((grow.steadiness - 0.8).abs() < 1e-9, "{grow:?}");
        let burst = Stats::of(&t, &[0.0, 0.0, 0.0, 40.0, 40.0, 40.0]);
        assert!(burst.steadiness <= 0.2 + 1e-9, "{burst:?}");
        // Ten times the growth, and still below it.
        assert!(burst.score < grow.score, "{burst:?} vs {grow:?}");
    }

    /// The integration fixture's shape (eight steps of 400 KiB kept, a
    /// 3.8 MiB burst in step 3, the exit snapshot), with the snapshots
    /// spaced every which way, stalls of hundreds of times the usual step
    /// included: the steady site always outranks the burst.
    #[test]
    fn the_fixture_ranks_the_same_whatever_the_spacing() {
        let grow: Vec<f64> = (1..=9).map(|k| 409_600.0 * k.min(8) as f64).collect();
        let burst: Vec<f64> = (1..=9)
            .map(|k| if k >= 3 { 4_000_000.0 } else { 0.0 })
            .collect();
        // The worst case first: the step with the burst stalls.
        let mut t: Vec<f64> = (0..9).map(|k| 0.02 * k as f64).collect();
        for x in &mut t[2..] {
            *x += 100.0;
        }
        assert!(Stats::of(&t, &grow).score > Stats::of(&t, &burst).score);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut t = vec![0.0];
            for _ in 1..9 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let r = (seed >> 33) as f64 / (1u64 << 31) as f64;
                // Mostly tens of ms; sometimes a stall of seconds.
                let dt = if r < 0.1 {
                    1.0 + 10.0 * r
                } else {
                    0.01 + 0.05 * r
                };
                t.push(t.last().copied().unwrap_or(0.0) + dt);
            }
            let g = Stats::of(&t, &grow);
            let b = Stats::of(&t, &burst);
            assert!(g.score > b.score, "times {t:?}: {g:?} vs {b:?}");
        }
    }

    #[test]
    fn two_snapshots_score_the_rise() {
        let s = Stats::of(&[0.0, 10.0], &[5.0, 25.0]);
        assert_eq!(s.score, 20.0);
        let shrink = Stats::of(&[0.0, 10.0], &[25.0, 5.0]);
        assert_eq!(shrink.score, 0.0);
    }
}
