//! `bufs --json`.

use std::collections::BTreeMap;

use leaktrail_analysis::bufs::{Buf, Bufs, StackGroup};
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail bufs --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BufsDocument<'a> {
    schema_version: u32,
    buffers: Vec<BufRecord<'a>>,
    bytes: u64,
    stacks: BTreeMap<u32, Vec<FrameRecord<'a>>>,
    groups: Vec<StackGroupRecord<'a>>,
    sample_rate: u64,
}

/// One live buffer.
#[derive(Clone, Debug, Serialize)]
pub struct BufRecord<'a> {
    addr: u64,
    size: u64,
    class: u64,
    time_ns: u64,
    tid: u32,
    stack_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_name: Option<&'a str>,
}

/// The buffers with one allocation stack.
#[derive(Clone, Debug, Serialize)]
pub struct StackGroupRecord<'a> {
    stack_id: u32,
    bytes: u64,
    count: u64,
    example_address: u64,
    stack: Vec<FrameRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_class: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    before_attach: bool,
}

impl<'a> From<&'a Buf> for BufRecord<'a> {
    fn from(b: &'a Buf) -> Self {
        BufRecord {
            addr: b.addr,
            size: b.size,
            class: b.class,
            time_ns: b.time_ns,
            tid: b.tid,
            stack_id: b.stack_id.0,
            type_name: b.type_name.as_deref(),
        }
    }
}

impl<'a> From<&'a StackGroup> for StackGroupRecord<'a> {
    fn from(g: &'a StackGroup) -> Self {
        StackGroupRecord {
            stack_id: g.stack_id.0,
            bytes: g.bytes,
            count: g.count,
            example_address: g.example_address,
            stack: frame::stack(&g.stack),
            type_name: g.type_name.as_deref(),
            size_class: g.size_class,
            before_attach: g.before_attach,
        }
    }
}

impl<'a> From<&'a Bufs> for BufsDocument<'a> {
    fn from(b: &'a Bufs) -> Self {
        BufsDocument {
            schema_version: SCHEMA_VERSION,
            buffers: b.buffers.iter().map(Into::into).collect(),
            bytes: b.bytes,
            stacks: b
                .stacks
                .iter()
                .map(|(&id, frames)| (id.0, frame::stack(frames)))
                .collect(),
            groups: b.groups.iter().map(Into::into).collect(),
            sample_rate: b.sample_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;

    #[test]
    fn bufs_document_fields() {
        let bufs = Bufs {
            sample_rate: 0,
            buffers: vec![Buf {
                addr: 0x1000,
                size: 24,
                class: 32,
                time_ns: 5,
                tid: 7,
                stack_id: leaktrail_format::StackId(10),
                type_name: Some("Widget".into()),
            }],
            bytes: 24,
            stacks: [
                (leaktrail_format::StackId(10), vec![]),
                (leaktrail_format::StackId(2), vec![]),
            ]
            .into_iter()
            .collect(),
            groups: vec![StackGroup {
                stack_id: leaktrail_format::StackId(10),
                bytes: 24,
                count: 1,
                example_address: 0x1000,
                stack: vec![],
                type_name: Some("<C string>".into()),
                size_class: Some(32),
                before_attach: false,
            }],
        };
        assert_json(
            &BufsDocument::from(&bufs),
            r#"
{
  "schema_version": 1,
  "buffers": [
    {
      "addr": 4096,
      "size": 24,
      "class": 32,
      "time_ns": 5,
      "tid": 7,
      "stack_id": 10,
      "type_name": "Widget"
    }
  ],
  "bytes": 24,
  "stacks": {
    "2": [],
    "10": []
  },
  "groups": [
    {
      "stack_id": 10,
      "bytes": 24,
      "count": 1,
      "example_address": 4096,
      "stack": [],
      "type_name": "<C string>",
      "size_class": 32
    }
  ],
  "sample_rate": 0
}"#,
        );
    }
}
