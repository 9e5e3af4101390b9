//! The short diagnosis of a recording, in a few lines of text: what grows,
//! which function allocates it, and what is truly lost.

use std::fmt::Write;

use leaktrail_analysis::growth::Suspect;
use leaktrail_analysis::investigation::{Diagnosis, FirstSuspect, Investigation};
use leaktrail_analysis::leaks::Group;
use leaktrail_analysis::plumbing;
use leaktrail_analysis::symbolize::Frame;

use crate::growth::{class, count, series_line};
use crate::text;

/// The frame that names who allocated (the first outside allocation
/// plumbing, [`plumbing::allocating_frame`]), as `name (file:line)`.
pub fn site(frames: &[Frame]) -> String {
    match plumbing::allocating_frame(frames).filter(|f| f.function.is_some()) {
        Some(f) => {
            let name = f.function.as_deref().unwrap_or("??");
            match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    format!("{name} ({short}:{line})")
                }
                _ => name.to_string(),
            }
        }
        None => frames
            .first()
            .map_or_else(|| "an unknown site".into(), |f| f.to_string()),
    }
}

/// How many lost sites the text diagnosis names; the report lists all.
pub const LOST_SITES: usize = 5;

/// One definitely lost site's loss record, valgrind's way: `total
/// definitely lost in N buffers`, and `(D direct, I indirect)` when its
/// blocks own indirectly lost ones.
pub fn loss_record(g: &Group) -> String {
    let mut s = format!(
        "{} definitely lost in {} buffers",
        text::bytes(g.total_bytes() as f64),
        count(g.blocks)
    );
    if let Some(i) = g.indirect_bytes.filter(|&i| i > 0) {
        let _ = write!(
            s,
            " ({} direct, {} indirect)",
            text::bytes(g.bytes as f64),
            text::bytes(i as f64)
        );
    }
    s
}

/// [`loss_record`] after its site: `site (file:line): …`.
pub fn lost_site(g: &Group) -> String {
    format!("{}: {}", site(&g.stack), loss_record(g))
}

/// Snapshots below this cannot show a significant rise at 5% (a perfect
/// rise over three has a one-sided Mann–Kendall p of 0.15).
const FEWEST_FOR_SIGNIFICANCE: usize = 4;

/// The one-line answer: which function's memory grows above noise, or
/// that nothing does (or that there were too few snapshots to tell).
pub fn headline(inv: &Investigation) -> String {
    let d = inv.diagnosis();
    headline_of(d.first.as_ref(), d.compared)
}

/// [`headline`] from the first suspect ([`FirstSuspect`], or none) and
/// what was compared (`(snapshots, heap noise bytes)`, or nothing): what
/// `growth` prints as its `first suspect:` line, so the two agree.
pub fn headline_of(first: Option<&FirstSuspect<'_>>, compared: Option<(usize, f64)>) -> String {
    match (first, compared) {
        (Some(first), _) => first_suspect(first),
        (None, Some((n, _))) if n < FEWEST_FOR_SIGNIFICANCE => format!(
            "no growth above noise can be shown from {n} snapshots (take {FEWEST_FOR_SIGNIFICANCE} or more)"
        ),
        (None, Some((n, noise))) => format!(
            "no growth above noise: no allocation site rises significantly over {n} snapshots (heap noise {})",
            text::bytes(noise)
        ),
        (None, None) => "no growth compared: growth needs two snapshots or more".into(),
    }
}

/// What grows most, in words: `the JS heap: +16,000 Listener objects ...`
/// or `growth above noise: SITE keeps 1000 B buffers: ...`; the headline's
/// words for [`FirstSuspect`], which `growth` prints too.
pub fn first_suspect(first: &FirstSuspect<'_>) -> String {
    match first {
        FirstSuspect::JsHeap(_) => format!("growth in the JS heap: {}", culprit(first)),
        FirstSuspect::Site(_) => format!("growth above noise: {}", culprit(first)),
    }
}

/// Who holds what grows, without the headline's lead: `SITE keeps 1000 B
/// buffers: ...` for a malloc site, the growing constructors for the JS
/// heap. The diagnosis's `leaking function` line and the report's say
/// this, so no view names another culprit than the headline.
pub fn culprit(first: &FirstSuspect<'_>) -> String {
    match first {
        FirstSuspect::JsHeap(j) => crate::growth::js_heap_line(j),
        FirstSuspect::Site(s) => format!(
            "{} keeps {} buffers: {}",
            site(&s.stack),
            class(s.class),
            series_line(&s.series, &s.stats)
        ),
    }
}

/// The malloc site that grows most when the JS heap leads (it rose by
/// fewer bytes): shown after the culprit, never as it.
pub fn malloc_site_behind<'a>(d: &Diagnosis<'a>) -> Option<&'a Suspect> {
    match d.first {
        Some(FirstSuspect::JsHeap(_)) => d.suspect,
        _ => None,
    }
}

/// The diagnosis.
pub fn text(inv: &Investigation) -> String {
    let d = inv.diagnosis();
    let t = &inv.trend;
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(inv));
    let _ = writeln!(
        out,
        "  resident memory:   {} {}{}",
        t.verdict,
        text::rate(t.slope_bytes_per_hour),
        t.growth_region
            .as_ref()
            .map(|r| format!(", growth in the {}", text::growth_words(r)))
            .unwrap_or_default()
    );
    match d.class {
        Some(c) => {
            let _ = writeln!(
                out,
                "  growing class:     {}: {}",
                class(c.class),
                series_line(&c.series, &c.stats)
            );
        }
        None => {
            let _ = writeln!(out, "  growing class:     none above noise");
        }
    }
    if let Some(j) = &inv.js_heap {
        let _ = writeln!(
            out,
            "  JS heap:           {}",
            crate::growth::js_heap_line(j)
        );
        let _ = writeln!(
            out,
            "                     {}",
            crate::growth::v8_heap_line(j)
        );
        let _ = writeln!(
            out,
            "                     {}",
            crate::growth::v8_handles_line(j)
        );
    }
    match &d.first {
        Some(first) => {
            let lead = match first {
                FirstSuspect::JsHeap(_) => "the JS heap: ",
                FirstSuspect::Site(_) => "",
            };
            let _ = writeln!(out, "  leaking function:  {lead}{}", culprit(first));
            if matches!(first, FirstSuspect::Site(_)) && d.suspect_reachable == Some(true) {
                let _ = writeln!(
                    out,
                    "                     still referenced: reachability (findleaks) cannot see this one"
                );
            }
            if let Some(s) = malloc_site_behind(&d) {
                let _ = writeln!(
                    out,
                    "                     (the malloc site that grows most, by fewer bytes: {})",
                    culprit(&FirstSuspect::Site(s))
                );
            }
        }
        None => {
            let _ = writeln!(out, "  leaking function:  none: no growth above noise");
        }
    }
    match (d.lost.first(), d.lost_total) {
        (Some(_), Some(total)) => {
            let indirect = d.indirect_total.unwrap_or_default();
            let _ = writeln!(
                out,
                "  truly leaked:      {} (of {} in {} overall)",
                lost_site(d.lost[0]),
                text::bytes((total.bytes + indirect.bytes) as f64),
                count(total.blocks + indirect.blocks)
            );
            for g in d.lost.iter().skip(1).take(LOST_SITES - 1) {
                let _ = writeln!(out, "                     {}", lost_site(g));
            }
            if d.lost.len() > LOST_SITES {
                let _ = writeln!(
                    out,
                    "                     and {} more sites (leaktrail leaks {})",
                    d.lost.len() - LOST_SITES,
                    d.leaks_snapshot
                        .map_or_else(|| "SNAP".into(), |p| p.display().to_string())
                );
            }
        }
        (None, Some(_)) => {
            let _ = writeln!(out, "  truly leaked:      nothing definitely lost");
        }
        _ => {
            let _ = writeln!(
                out,
                "  truly leaked:      not scanned (no snapshot with --memory full)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{group, investigation, leaks, ranked_sites};
    use leaktrail_analysis::leaks::LeakKind::{Definite, Reachable};

    /// Issue 11 (item 4): every lost site, ranked by its total (direct and
    /// the indirect bytes it owns); the first five named, the rest counted.
    #[test]
    fn issue_11_the_diagnosis_names_the_top_lost_sites_by_total() {
        let mut sites = ranked_sites();
        sites.extend([
            group(Definite, "site_c", 30, (500, 5), 0),
            group(Definite, "site_d", 40, (400, 4), 0),
            group(Definite, "site_e", 50, (300, 3), 0),
            group(Definite, "site_f", 60, (200, 2), 0),
            group(Definite, "site_g", 70, (100, 1), 0),
            group(Reachable, "kept", 80, (90_000, 9), 0),
        ]);
        let inv = investigation(leaks(sites));
        let t = text(&inv);
        let lines: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.contains("truly leaked"))
            .collect();
        assert_eq!(
            lines,
            [
                "  truly leaked:      build_tree (app.c:20): 4.0 KiB definitely lost in 1 buffers (100 B direct, 3.9 KiB indirect) (of 8.4 KiB in 59 overall)",
                "                     read_config (app.c:10): 2.9 KiB definitely lost in 3 buffers",
                "                     site_c (app.c:30): 500 B definitely lost in 5 buffers",
                "                     site_d (app.c:40): 400 B definitely lost in 4 buffers",
                "                     site_e (app.c:50): 300 B definitely lost in 3 buffers",
                "                     and 2 more sites (leaktrail leaks rec/exit.core)",
            ],
            "{t}"
        );
    }

    /// Issue 14: when the JS heap leads, the text's `leaking function`
    /// line names it, as the headline does, and no malloc site.
    #[test]
    fn issue_14_the_leaking_function_line_names_what_the_headline_names() {
        use leaktrail_analysis::v8::{self, Census, ConstructorCount};
        let census = |n: u64| Census {
            constructors: vec![ConstructorCount {
                constructor: "Listener".into(),
                count: n,
                bytes: 40 * n,
                addrs: vec![],
            }],
            objects: n,
            bytes: 40 * n,
            ..Census::default()
        };
        let paths = || (1..=5).map(|k| format!("rec/{k}.core").into()).collect();
        let mut inv = investigation(leaks(vec![]));
        let steady = (1..=5).map(|_| census(100)).collect::<Vec<_>>();
        inv.js_heap = Some(v8::compare(paths(), &steady));
        let t = text(&inv);
        assert!(t.starts_with("no growth compared"), "{t}");
        assert!(
            t.contains("\n  leaking function:  none: no growth above noise\n"),
            "{t}"
        );
        let leak = (1..=5).map(|k| census(4000 * k)).collect::<Vec<_>>();
        inv.js_heap = Some(v8::compare(paths(), &leak));
        let t = text(&inv);
        let first = t.lines().next().unwrap();
        assert_eq!(
            first,
            "growth in the JS heap: +16,000 Listener objects (+625.0 KiB); JS objects +625.0 KiB over 5 snapshots"
        );
        assert!(
            t.contains(&format!(
                "\n  leaking function:  the JS heap: {}\n",
                first.trim_start_matches("growth in the JS heap: ")
            )),
            "{t}"
        );
        assert_eq!(headline(&inv), first);
    }

    #[test]
    fn no_more_line_when_every_lost_site_is_named() {
        let inv = investigation(leaks(vec![
            group(Definite, "one", 1, (10, 1), 0),
            group(Definite, "two", 2, (20, 1), 0),
        ]));
        let t = text(&inv);
        let two = t.find("two (app.c:2)").expect(&t);
        let one = t.find("one (app.c:1)").expect(&t);
        assert!(two < one, "{t}");
        assert!(!t.contains("more sites"), "{t}");
    }
}
