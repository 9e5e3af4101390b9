//! Hand-built findleaks results for the renderers' unit tests: sites of
//! known sizes, no snapshot needed.

use leaktrail_analysis::investigation::Investigation;
use leaktrail_analysis::leaks::{Group, LeakKind, Leaks, Tally};
use leaktrail_analysis::symbolize::{Frame, FrameKind};
use leaktrail_format::StackId;

/// A group of `kind` allocated in `function` (at `file.c:line`), with
/// `indirect` bytes in as many indirect blocks when it is definitely lost.
pub fn group(
    kind: LeakKind,
    function: &str,
    line: u32,
    (bytes, blocks): (u64, u64),
    indirect: u64,
) -> Group {
    let definite = kind == LeakKind::Definite;
    Group {
        kind,
        bytes,
        blocks,
        example_address: 0x1000 + u64::from(line),
        example_size: bytes / blocks.max(1),
        example_time_ns: 0,
        stack_id: StackId(line),
        stack: vec![Frame {
            address: 0x40_0000 + u64::from(line),
            function: Some(function.into()),
            file: Some("/src/app.c".into()),
            line: Some(line),
            module: Some("/usr/bin/app".into()),
            module_offset: u64::from(line),
            kind: FrameKind::Native,
            column: None,
            inlined: false,
            start_line: None,
            start_column: None,
        }],
        indirect_bytes: definite.then_some(indirect),
        indirect_blocks: definite.then_some(indirect.min(1)),
        type_name: None,
        size_class: None,
        before_attach: false,
        unsampled: false,
    }
}

/// Findleaks' result with these groups, the class totals added up.
pub fn leaks(groups: Vec<Group>) -> Leaks {
    let sum = |k: LeakKind| {
        groups
            .iter()
            .filter(|g| g.kind == k)
            .fold(Tally::default(), |t, g| Tally {
                bytes: t.bytes + g.bytes,
                blocks: t.blocks + g.blocks,
            })
    };
    Leaks {
        definite: sum(LeakKind::Definite),
        indirect: sum(LeakKind::Indirect),
        possible: sum(LeakKind::Possible),
        reachable: sum(LeakKind::Reachable),
        groups,
        scanned_bytes: 0,
        root_bytes: 0,
        scan_seconds: 0.0,
        scan_cpu_seconds: 0.0,
        warnings: Vec::new(),
        ..Leaks::default()
    }
}

/// A recording with no samples and no snapshots but this findleaks result
/// (of `rec/exit.core`).
pub fn investigation(leaks: Leaks) -> Investigation {
    Investigation::of_leaks("rec".into(), "rec/exit.core".into(), leaks)
}

/// Lost sites whose ranking by total differs from their ranking by direct
/// bytes: `build_tree` owns a big tree and comes first, `read_config` has
/// the most direct bytes and comes second.
pub fn ranked_sites() -> Vec<Group> {
    use LeakKind::{Definite, Indirect};
    vec![
        group(Definite, "read_config", 10, (3000, 3), 0),
        group(Definite, "build_tree", 20, (100, 1), 4000),
        group(Indirect, "tree_node", 21, (4000, 40), 0),
    ]
}
