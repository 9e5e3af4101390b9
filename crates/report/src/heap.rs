//! Text renderings of the single-snapshot analyses (`leaks`, `caches`,
//! `bufs`, `whatis`, `refs`, `dump`): mdb's dcmds, as tables people read;
//! and `summary`, heaptrack_print's ([`sites`]).

pub mod bufs;
pub mod caches;
pub mod dump;
pub mod js;
pub mod leaks;
pub mod refs;
pub mod sites;
pub mod whatis;

use std::fmt::Write;

use leaktrail_analysis::symbolize::Frame;

/// `12,345,678`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `+1,234` / `-5` / `0`.
pub fn signed_count(n: i64) -> String {
    match n {
        0 => "0".into(),
        n if n > 0 => format!("+{}", count(n as u64)),
        n => format!("-{}", count(n.unsigned_abs())),
    }
}

/// `, a Widget` / `, size class 128, <C string>`: what a block or group
/// holds, for the end of its header line (empty when nothing is known).
pub fn type_words(type_name: Option<&str>, size_class: Option<u64>) -> String {
    let mut o = String::new();
    if let Some(c) = size_class {
        let _ = write!(o, ", size class {}", count(c));
    }
    if let Some(t) = type_name {
        let _ = write!(o, ", {t}");
    }
    o
}

/// A stack, one frame a line, each line indented by `indent`.
pub fn stack(out: &mut String, frames: &[Frame], indent: &str) {
    if frames.is_empty() {
        let _ = writeln!(out, "{indent}(no stack recorded)");
    }
    for f in frames {
        let _ = writeln!(out, "{indent}{f}");
    }
}

/// A group's stack, as [`stack`]; for blocks from before `leaktrail
/// attach` or left out of a sample, which have none, why.
pub fn group_stack(
    out: &mut String,
    frames: &[Frame],
    before_attach: bool,
    unsampled: bool,
    indent: &str,
) {
    let why = if !frames.is_empty() {
        None
    } else if unsampled {
        Some("not in the sample (run --sample), found by the heap walk")
    } else if before_attach {
        Some("allocated before leaktrail attach loaded the tracer")
    } else {
        None
    };
    match why {
        Some(why) => {
            let _ = writeln!(out, "{indent}(no stack: {why})");
        }
        None => stack(out, frames, indent),
    }
}

#[cfg(test)]
mod tests {
    use leaktrail_analysis::caches::{Caches, ClassCounts, ClassDelta, ClassRow};
    use leaktrail_analysis::leaks::{Group, LeakKind, Leaks, Tally};
    use leaktrail_analysis::symbolize::{Frame, FrameKind};

    fn frame(function: Option<&str>, kind: FrameKind) -> Frame {
        Frame {
            address: 0x401234,
            function: function.map(str::to_string),
            file: function.map(|_| "/src/app.c".to_string()),
            line: function.map(|_| 42),
            module: Some("app".into()),
            module_offset: 0x1234,
            kind,
            column: None,
            inlined: false,
            start_line: None,
            start_column: None,
        }
    }

    #[test]
    fn leaks_text_lists_classes_then_lost_groups_with_stacks() {
        let l = Leaks {
            definite: Tally {
                bytes: 2048,
                blocks: 2,
            },
            indirect: Tally::default(),
            possible: Tally::default(),
            reachable: Tally {
                bytes: 1_000_000,
                blocks: 1000,
            },
            groups: vec![
                Group {
                    kind: LeakKind::Definite,
                    bytes: 2048,
                    blocks: 2,
                    example_address: 0x5555_0000_1000,
                    example_size: 1024,
                    example_time_ns: 5,
                    stack_id: leaktrail_format::StackId(7),
                    stack: vec![
                        frame(Some("make_request"), FrameKind::Native),
                        frame(None, FrameKind::Native),
                    ],
                    indirect_bytes: Some(0),
                    indirect_blocks: Some(0),
                    type_name: None,
                    size_class: None,
                    before_attach: false,
                    unsampled: false,
                },
                Group {
                    kind: LeakKind::Reachable,
                    bytes: 1_000_000,
                    blocks: 1000,
                    example_address: 0x5555_0000_2000,
                    example_size: 1000,
                    example_time_ns: 1,
                    stack_id: leaktrail_format::StackId(8),
                    stack: vec![frame(Some("cache_put"), FrameKind::Native)],
                    indirect_bytes: None,
                    indirect_blocks: None,
                    type_name: None,
                    size_class: None,
                    before_attach: false,
                    unsampled: false,
                },
            ],
            scanned_bytes: 1 << 20,
            root_bytes: 4096,
            scan_seconds: 0.0,
            scan_cpu_seconds: 0.0,
            warnings: vec![],
            ..Leaks::default()
        };
        let text = super::leaks::text(&l, &Default::default());
        let want = "\
scanned 1.0 MiB (4.0 KiB of roots)
  definitely lost:          2,048 bytes in          2 blocks
  indirectly lost:              0 bytes in          0 blocks
  possibly lost:                0 bytes in          0 blocks
  still reachable:      1,000,000 bytes in      1,000 blocks

definitely lost: 2,048 bytes in 2 blocks, oldest 0x555500001000 (1,024 bytes)
    make_request /src/app.c:42
    0x401234 in ?? (app+0x1234)
";
        assert_eq!(text, want);
        let opts = super::leaks::LeaksOptions {
            reachable: true,
            ..Default::default()
        };
        assert!(super::leaks::text(&l, &opts).contains("still reachable: 1,000,000 bytes"));
        // Issue 11: libc's residue is a line of its own, its groups listed
        // only when asked for.
        let mut with_libc = l.clone();
        with_libc.libc = Tally {
            bytes: 4096,
            blocks: 1,
        };
        let mut buffer = with_libc.groups[1].clone();
        buffer.bytes = 4096;
        buffer.blocks = 1;
        buffer.stack = vec![frame(Some("_IO_file_doallocate"), FrameKind::Native)];
        with_libc.libc_groups = vec![buffer];
        let text = super::leaks::text(&with_libc, &Default::default());
        assert!(text.contains(
            "  libc internal:            4,096 bytes in          1 blocks (freed at exit by libc, not counted above; --show-libc lists them)\n"
        ), "{text}");
        assert!(!text.contains("_IO_file_doallocate"), "{text}");
        // Issue 11: what each suppression took, as valgrind and LSan print.
        let mut suppressed = l.clone();
        suppressed.suppressed = Tally {
            bytes: 300,
            blocks: 3,
        };
        suppressed.suppressions_used = vec![leaktrail_analysis::suppressions::Used {
            name: "leak:parse_header".into(),
            origin: "app.supp:2".into(),
            blocks: 3,
            bytes: 300,
        }];
        let text = super::leaks::text(&suppressed, &Default::default());
        assert!(text.contains("  suppressed:                 300 bytes in          3 blocks\nsuppressions used:\n           3 blocks            300 bytes  leak:parse_header (app.supp:2)\n"), "{text}");
        let opts = super::leaks::LeaksOptions {
            show_libc: true,
            ..Default::default()
        };
        let text = super::leaks::text(&with_libc, &opts);
        assert!(text.contains(
            "\nlibc internal (still reachable): 4,096 bytes in 1 blocks, oldest 0x555500002000 (1,000 bytes)\n    _IO_file_doallocate"
        ), "{text}");
        // Issue 11: a definite group owning indirect blocks says so, as
        // valgrind's loss records do.
        let mut l = l;
        l.groups[0].indirect_bytes = Some(4_000_000);
        l.groups[0].indirect_blocks = Some(1000);
        assert!(
            super::leaks::text(&l, &Default::default()).contains(
                "\ndefinitely lost: 4,002,048 (2,048 direct, 4,000,000 indirect) bytes in 2 (+1,000 indirect) blocks, oldest 0x555500001000"
            ),
            "{}",
            super::leaks::text(&l, &Default::default())
        );
    }

    #[test]
    fn caches_text_has_a_column_per_snapshot_and_flags_growth() {
        let counts = |n: u64| ClassCounts {
            live_count: n,
            live_bytes: n * 4000,
            allocs: n,
            frees: 0,
        };
        let c = Caches {
            sample_rate: 0,
            classes: vec![ClassRow {
                size: 4096,
                live_count: 1700,
                live_bytes: 6_800_000,
                allocs: 1700,
                frees: 0,
                snapshots: vec![counts(170), counts(1700)],
                delta: Some(ClassDelta {
                    live_count: 1530,
                    live_bytes: 6_120_000,
                    allocs: 1530,
                    frees: 0,
                }),
                grew_most: true,
            }],
            totals: vec![counts(170), counts(1700)],
        };
        let text = super::caches::text(&c, &["a.core".into(), "b.core".into()], 0);
        let want = "     class       a.core       b.core       change        bytes
     4,096          170        1,700       +1,530     +5.8 MiB  << grew most
     total          170        1,700       +1,530     +5.8 MiB
";
        assert_eq!(text, want);
    }

    #[test]
    fn js_frames_print_as_js_with_their_location() {
        let mut f = frame(Some("allocateBuffers"), FrameKind::Js);
        f.file = Some("/srv/app.js".into());
        f.line = Some(14);
        f.column = Some(25);
        let mut out = String::new();
        super::stack(&mut out, &[f], "  ");
        assert_eq!(out, "  JS allocateBuffers /srv/app.js:14:25\n");
    }
}
