//! `leaktrail summary`: heaptrack_print's summary of a traced process,
//! section for section (most calls to allocation functions, peak memory
//! consumers, most temporary allocations, then the totals), with each
//! site's whole stack, its peak time and its size histogram.

use std::fmt::Write;

use leaktrail_analysis::profile::SiteCounts;
use leaktrail_analysis::sites::Summary;
use leaktrail_analysis::symbolize::Frame;
use leaktrail_format::{size_bucket_limit, SITE_SIZE_BUCKETS};

use crate::flamegraph::frame_name;

/// Bytes as heaptrack prints them: `64B`, `9.14K`, `431.90K`, `4.24M`
/// (decimal units, two decimals past bytes).
pub fn heaptrack_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

/// A size bucket's upper bound, as the histogram line prints it.
fn bucket_name(bucket: usize) -> String {
    if bucket + 1 >= SITE_SIZE_BUCKETS {
        format!(
            ">{}",
            crate::text::bytes(size_bucket_limit(bucket - 1) as f64)
        )
    } else {
        format!("≤{}", crate::text::bytes(size_bucket_limit(bucket) as f64))
    }
}

/// The non-empty buckets of `sizes`: `≤64 B ×300, ≤1.0 KiB ×200`.
pub fn histogram(sizes: &[u64; SITE_SIZE_BUCKETS]) -> String {
    sizes
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(b, &n)| format!("{} ×{n}", bucket_name(b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One frame as heaptrack prints it: the function, then `at FILE:LINE`
/// and `in MODULE` indented by two.
fn frame(out: &mut String, f: &Frame, indent: &str) {
    let _ = writeln!(out, "{indent}{}", frame_name(f));
    if let Some(file) = &f.file {
        match f.line {
            Some(line) => {
                let _ = writeln!(out, "{indent}  at {file}:{line}");
            }
            None => {
                let _ = writeln!(out, "{indent}  at {file}");
            }
        }
    }
    if let Some(m) = &f.module {
        let _ = writeln!(out, "{indent}  in {m}");
    }
}

/// A site's stack (the allocating frame flush left, its callers below it
/// indented, `depth` frames at most) and its peak and sizes.
fn site(out: &mut String, s: &SiteCounts, depth: usize) {
    match s.frames.split_first() {
        None => {
            let _ = writeln!(out, "(no stack recorded)");
        }
        Some((top, callers)) => {
            frame(out, top, "");
            for f in callers.iter().take(depth.saturating_sub(1)) {
                frame(out, f, "    ");
            }
            if callers.len() + 1 > depth {
                let _ = writeln!(out, "    ... {} more frames", callers.len() + 1 - depth);
            }
        }
    }
    let _ = writeln!(
        out,
        "  peak {} after {}; sizes {}",
        heaptrack_bytes(s.peak_bytes),
        crate::text::seconds(s.peak_time_ns as f64 / 1e9),
        histogram(&s.sizes)
    );
    out.push('\n');
}

/// A count per second of `runtime_ns`, as heaptrack's `(139000/s)`.
fn per_second(n: u64, runtime_ns: u64) -> String {
    if runtime_ns == 0 {
        return String::new();
    }
    format!(" ({:.0}/s)", n as f64 / (runtime_ns as f64 / 1e9))
}

/// The summary: the `limit` sites with most allocations, the highest peaks
/// and the most temporary allocations, each stack `depth` frames deep,
/// then the totals.
pub fn text(s: &Summary, limit: usize, depth: usize) -> String {
    let mut out = crate::text::sampled_line(s.sample_rate);
    let _ = writeln!(out, "MOST CALLS TO ALLOCATION FUNCTIONS");
    for x in s.by_allocations().into_iter().take(limit) {
        let _ = writeln!(
            out,
            "{} calls to allocation functions with {} peak consumption from",
            x.allocs,
            heaptrack_bytes(x.peak_bytes)
        );
        site(&mut out, x, depth);
    }
    let _ = writeln!(out, "\nPEAK MEMORY CONSUMERS");
    for x in s.by_peak().into_iter().take(limit) {
        let _ = writeln!(
            out,
            "{} peak memory consumed over {} calls from",
            heaptrack_bytes(x.peak_bytes),
            x.allocs
        );
        site(&mut out, x, depth);
    }
    let _ = writeln!(out, "\nMOST TEMPORARY ALLOCATIONS");
    for x in s.by_temporary().into_iter().take(limit) {
        let _ = writeln!(
            out,
            "{} temporary allocations of {} allocations in total ({:.2}%) from",
            x.temporary,
            x.allocs,
            100.0 * x.temporary as f64 / x.allocs.max(1) as f64
        );
        site(&mut out, x, depth);
    }
    let t = s.runtime_ns;
    let _ = writeln!(out, "\ntotal runtime: {:.2}s.", t as f64 / 1e9);
    let _ = writeln!(
        out,
        "calls to allocation functions: {}{}",
        s.allocations,
        per_second(s.allocations, t)
    );
    let _ = writeln!(
        out,
        "temporary memory allocations: {}{}",
        s.temporary,
        per_second(s.temporary, t)
    );
    let _ = writeln!(
        out,
        "peak heap memory consumption: {} after {}",
        heaptrack_bytes(s.peak_bytes),
        crate::text::seconds(s.peak_time_ns as f64 / 1e9)
    );
    let _ = writeln!(
        out,
        "total memory leaked: {} in {} blocks (live at {})",
        heaptrack_bytes(s.leaked_bytes),
        s.leaked_blocks,
        s.path.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_as_heaptrack_prints_them() {
        assert_eq!(heaptrack_bytes(64), "64B");
        assert_eq!(heaptrack_bytes(999), "999B");
        assert_eq!(heaptrack_bytes(9137), "9.14K");
        assert_eq!(heaptrack_bytes(200_000), "200.00K");
        assert_eq!(heaptrack_bytes(4_240_000), "4.24M");
    }

    #[test]
    fn the_histogram_names_each_non_empty_bucket_by_its_bound() {
        let mut sizes = [0u64; SITE_SIZE_BUCKETS];
        sizes[leaktrail_format::size_bucket(64)] = 300;
        sizes[leaktrail_format::size_bucket(1000)] = 2;
        sizes[SITE_SIZE_BUCKETS - 1] = 1;
        assert_eq!(histogram(&sizes), "≤64 B ×300, ≤1.0 KiB ×2, >2.0 MiB ×1");
    }
}
