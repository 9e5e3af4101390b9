//! `leaks --json`.

use leaktrail_analysis::leaks::{Group, LeakKind, Leaks, Tally};
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail leaks --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct LeaksDocument<'a> {
    schema_version: u32,
    definite: TallyRecord,
    indirect: TallyRecord,
    possible: TallyRecord,
    reachable: TallyRecord,
    groups: Vec<LeakGroupRecord<'a>>,
    libc_internal: TallyRecord,
    libc_groups: Vec<LeakGroupRecord<'a>>,
    suppressed: TallyRecord,
    suppressions_used: Vec<SuppressionRecord<'a>>,
    scanned_bytes: u64,
    root_bytes: u64,
    scan_seconds: f64,
    scan_cpu_seconds: f64,
    warnings: &'a [String],
    sample_rate: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsampled: Option<TallyRecord>,
    incomplete: bool,
}

/// `{bytes, blocks}` of one kind.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TallyRecord {
    bytes: u64,
    blocks: u64,
}

/// One suppression that matched, with what it suppressed.
#[derive(Clone, Debug, Serialize)]
pub struct SuppressionRecord<'a> {
    name: &'a str,
    origin: &'a str,
    blocks: u64,
    bytes: u64,
}

/// One group of blocks of one kind with one allocation stack.
#[derive(Clone, Debug, Serialize)]
pub struct LeakGroupRecord<'a> {
    kind: &'static str,
    bytes: u64,
    blocks: u64,
    example_address: u64,
    example_size: u64,
    example_time_ns: u64,
    stack_id: u32,
    stack: Vec<FrameRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    indirect_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    indirect_blocks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_class: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    before_attach: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unsampled: bool,
}

impl From<Tally> for TallyRecord {
    fn from(t: Tally) -> Self {
        TallyRecord {
            bytes: t.bytes,
            blocks: t.blocks,
        }
    }
}

impl<'a> From<&'a Group> for LeakGroupRecord<'a> {
    fn from(g: &'a Group) -> Self {
        LeakGroupRecord {
            kind: kind_name(g.kind),
            bytes: g.bytes,
            blocks: g.blocks,
            example_address: g.example_address,
            example_size: g.example_size,
            example_time_ns: g.example_time_ns,
            stack_id: g.stack_id.0,
            stack: frame::stack(&g.stack),
            indirect_bytes: g.indirect_bytes,
            indirect_blocks: g.indirect_blocks,
            type_name: g.type_name.as_deref(),
            size_class: g.size_class,
            before_attach: g.before_attach,
            unsampled: g.unsampled,
        }
    }
}

impl<'a> From<&'a Leaks> for LeaksDocument<'a> {
    fn from(l: &'a Leaks) -> Self {
        LeaksDocument {
            schema_version: SCHEMA_VERSION,
            definite: l.definite.into(),
            indirect: l.indirect.into(),
            possible: l.possible.into(),
            reachable: l.reachable.into(),
            groups: l.groups.iter().map(LeakGroupRecord::from).collect(),
            libc_internal: l.libc.into(),
            libc_groups: l.libc_groups.iter().map(LeakGroupRecord::from).collect(),
            suppressed: l.suppressed.into(),
            suppressions_used: l
                .suppressions_used
                .iter()
                .map(|u| SuppressionRecord {
                    name: &u.name,
                    origin: &u.origin,
                    blocks: u.blocks,
                    bytes: u.bytes,
                })
                .collect(),
            scanned_bytes: l.scanned_bytes,
            root_bytes: l.root_bytes,
            scan_seconds: l.scan_seconds,
            scan_cpu_seconds: l.scan_cpu_seconds,
            warnings: &l.warnings,
            sample_rate: l.sample_rate,
            unsampled: (l.sample_rate != 0).then_some(l.unsampled.into()),
            incomplete: l.incomplete,
        }
    }
}

fn kind_name(k: LeakKind) -> &'static str {
    match k {
        LeakKind::Definite => "definite",
        LeakKind::Indirect => "indirect",
        LeakKind::Possible => "possible",
        LeakKind::Reachable => "reachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use leaktrail_analysis::suppressions::Used;

    #[test]
    fn leaks_document_fields() {
        let t = |bytes, blocks| Tally { bytes, blocks };
        let leaks = Leaks {
            definite: t(1, 2),
            indirect: t(3, 4),
            possible: t(5, 6),
            reachable: t(7, 8),
            groups: vec![Group {
                kind: LeakKind::Indirect,
                bytes: 3,
                blocks: 4,
                example_address: 0x10,
                example_size: 1,
                example_time_ns: 9,
                stack_id: leaktrail_format::StackId(2),
                stack: vec![],
                indirect_bytes: None,
                indirect_blocks: None,
                type_name: None,
                size_class: None,
                before_attach: false,
                unsampled: false,
            }],
            scanned_bytes: 100,
            root_bytes: 50,
            scan_seconds: 0.5,
            scan_cpu_seconds: 0.25,
            warnings: vec!["w".into()],
            suppressed: t(20, 2),
            suppressions_used: vec![Used {
                name: "leak:parse_".into(),
                origin: "app.supp:3".into(),
                blocks: 2,
                bytes: 20,
            }],
            ..Leaks::default()
        };
        assert_json(
            &LeaksDocument::from(&leaks),
            r#"
{
  "schema_version": 1,
  "definite": {
    "bytes": 1,
    "blocks": 2
  },
  "indirect": {
    "bytes": 3,
    "blocks": 4
  },
  "possible": {
    "bytes": 5,
    "blocks": 6
  },
  "reachable": {
    "bytes": 7,
    "blocks": 8
  },
  "groups": [
    {
      "kind": "indirect",
      "bytes": 3,
      "blocks": 4,
      "example_address": 16,
      "example_size": 1,
      "example_time_ns": 9,
      "stack_id": 2,
      "stack": []
    }
  ],
  "libc_internal": {
    "bytes": 0,
    "blocks": 0
  },
  "libc_groups": [],
  "suppressed": {
    "bytes": 20,
    "blocks": 2
  },
  "suppressions_used": [
    {
      "name": "leak:parse_",
      "origin": "app.supp:3",
      "blocks": 2,
      "bytes": 20
    }
  ],
  "scanned_bytes": 100,
  "root_bytes": 50,
  "scan_seconds": 0.5,
  "scan_cpu_seconds": 0.25,
  "warnings": [
    "w"
  ],
  "sample_rate": 0,
  "incomplete": false
}"#,
        );
    }
}
