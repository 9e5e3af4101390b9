//! `refs --json` and `refs --chain --json`.

use leaktrail_analysis::refs::{Chain, Chains, Hop, Ref, Refs};
use serde::Serialize;

use super::whatis::{BufferHitRecord, WhatisRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail refs --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct RefsDocument<'a> {
    schema_version: u32,
    target: u64,
    target_whatis: Option<WhatisRecord<'a>>,
    refs: Vec<RefRecord<'a>>,
    scanned_bytes: u64,
}

/// A word that refers to the target.
#[derive(Clone, Debug, Serialize)]
pub struct RefRecord<'a> {
    at: u64,
    value: u64,
    whatis: WhatisRecord<'a>,
}

/// What `leaktrail refs --chain --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ChainsDocument<'a> {
    schema_version: u32,
    target: u64,
    chains: Vec<ChainRecord<'a>>,
    levels: usize,
    unreached: bool,
}

/// One path from a root to the target.
#[derive(Clone, Debug, Serialize)]
pub struct ChainRecord<'a> {
    hops: Vec<HopRecord<'a>>,
    target: BufferHitRecord<'a>,
}

/// One pointer on a path.
#[derive(Clone, Debug, Serialize)]
pub struct HopRecord<'a> {
    at: u64,
    value: u64,
    holder: &'a str,
    whatis: Option<WhatisRecord<'a>>,
    register: Option<(i32, usize)>,
}

impl<'a> From<&'a Ref> for RefRecord<'a> {
    fn from(r: &'a Ref) -> Self {
        RefRecord {
            at: r.at,
            value: r.value,
            whatis: (&r.whatis).into(),
        }
    }
}

impl<'a> From<&'a Refs> for RefsDocument<'a> {
    fn from(r: &'a Refs) -> Self {
        RefsDocument {
            schema_version: SCHEMA_VERSION,
            target: r.target,
            target_whatis: r.target_whatis.as_ref().map(Into::into),
            refs: r.refs.iter().map(Into::into).collect(),
            scanned_bytes: r.scanned_bytes,
        }
    }
}

impl<'a> From<&'a Hop> for HopRecord<'a> {
    fn from(h: &'a Hop) -> Self {
        HopRecord {
            at: h.at,
            value: h.value,
            holder: &h.holder,
            whatis: h.whatis.as_ref().map(Into::into),
            register: h.register,
        }
    }
}

impl<'a> From<&'a Chain> for ChainRecord<'a> {
    fn from(c: &'a Chain) -> Self {
        ChainRecord {
            hops: c.hops.iter().map(Into::into).collect(),
            target: (&c.target).into(),
        }
    }
}

impl<'a> From<&'a Chains> for ChainsDocument<'a> {
    fn from(c: &'a Chains) -> Self {
        ChainsDocument {
            schema_version: SCHEMA_VERSION,
            target: c.target,
            chains: c.chains.iter().map(Into::into).collect(),
            levels: c.levels,
            unreached: c.unreached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use crate::json::whatis::tests::whatis;
    use leaktrail_analysis::whatis::BufferHit;

    #[test]
    fn refs_document_fields() {
        let refs = Refs {
            target: 0x1010,
            target_whatis: None,
            refs: vec![Ref {
                at: 0x1008,
                value: 0x1010,
                whatis: whatis(),
            }],
            scanned_bytes: 64,
        };
        let json = serde_json::to_string_pretty(&RefsDocument::from(&refs)).unwrap();
        let head = r#"{
  "schema_version": 1,
  "target": 4112,
  "target_whatis": null,
  "refs": [
    {
      "at": 4104,
      "value": 4112,
      "whatis": {
        "address": 4112,
        "area": {"#;
        assert!(json.starts_with(head), "{json}");
        assert!(json.ends_with("  ],\n  \"scanned_bytes\": 64\n}"), "{json}");
    }

    #[test]
    fn chains_document_fields() {
        let chains = Chains {
            target: 0x1000,
            chains: vec![Chain {
                hops: vec![Hop {
                    at: 0,
                    value: 0x1000,
                    holder: "register".into(),
                    whatis: None,
                    register: Some((7, 2)),
                }],
                target: BufferHit {
                    addr: 0x1000,
                    size: 8,
                    offset: 0,
                    time_ns: 1,
                    tid: 7,
                    stack_id: leaktrail_format::StackId(1),
                    stack: vec![],
                    type_name: None,
                },
            }],
            levels: 1,
            unreached: false,
        };
        assert_json(
            &ChainsDocument::from(&chains),
            r#"
{
  "schema_version": 1,
  "target": 4096,
  "chains": [
    {
      "hops": [
        {
          "at": 0,
          "value": 4096,
          "holder": "register",
          "whatis": null,
          "register": [
            7,
            2
          ]
        }
      ],
      "target": {
        "addr": 4096,
        "size": 8,
        "offset": 0,
        "time_ns": 1,
        "tid": 7,
        "stack_id": 1,
        "stack": []
      }
    }
  ],
  "levels": 1,
  "unreached": false
}"#,
        );
    }
}
