//! A symbolized stack frame, as every document that shows a stack prints it.

use leaktrail_analysis::Frame;
use serde::Serialize;

/// One frame: `{address, function, file, line, module, module_offset,
/// kind}`, plus `column` when known and `inlined` when true.
#[derive(Clone, Debug, Serialize)]
pub struct FrameRecord<'a> {
    address: u64,
    function: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    module: Option<&'a str>,
    module_offset: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inlined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_column: Option<u32>,
}

impl<'a> From<&'a Frame> for FrameRecord<'a> {
    fn from(f: &'a Frame) -> Self {
        FrameRecord {
            address: f.address,
            function: f.function.as_deref(),
            file: f.file.as_deref(),
            line: f.line,
            module: f.module.as_deref(),
            module_offset: f.module_offset,
            kind: f.kind.name(),
            column: f.column,
            inlined: f.inlined,
            start_line: f.start_line,
            start_column: f.start_column,
        }
    }
}

/// A stack, innermost frame first.
pub fn stack(frames: &[Frame]) -> Vec<FrameRecord<'_>> {
    frames.iter().map(FrameRecord::from).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use leaktrail_analysis::FrameKind;

    /// A frame with every optional field set.
    pub fn full_frame() -> Frame {
        Frame {
            address: 0x1000,
            function: Some("parse".into()),
            file: Some("app.c".into()),
            line: Some(12),
            module: Some("app".into()),
            module_offset: 0x100,
            kind: FrameKind::Js,
            column: Some(3),
            inlined: true,
            start_line: Some(10),
            start_column: None,
        }
    }

    /// A frame that knows nothing but its address.
    pub fn bare_frame() -> Frame {
        Frame {
            address: 0x2000,
            function: None,
            file: None,
            line: None,
            module: None,
            module_offset: 0,
            kind: FrameKind::Unknown,
            column: None,
            inlined: false,
            start_line: None,
            start_column: None,
        }
    }

    #[test]
    fn frame_fields() {
        assert_json(
            &FrameRecord::from(&full_frame()),
            r#"
{
  "address": 4096,
  "function": "parse",
  "file": "app.c",
  "line": 12,
  "module": "app",
  "module_offset": 256,
  "kind": "js",
  "column": 3,
  "inlined": true,
  "start_line": 10
}"#,
        );
        assert_json(
            &FrameRecord::from(&bare_frame()),
            r#"
{
  "address": 8192,
  "function": null,
  "file": null,
  "line": null,
  "module": null,
  "module_offset": 0,
  "kind": "unknown"
}"#,
        );
    }
}
