//! One Parquet table in memory, column by column, and its encoding.
//!
//! We use the `parquet` crate's column writers directly rather than going
//! through Arrow: our tables are flat (no nesting, no lists), so a column
//! is a vector of values plus, for an optional one, which rows are null.
//! A table is small next to the snapshot it comes from (one row per live
//! buffer at most), and is written as one row group.

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::Error;

/// The values of one column.
#[derive(Clone, Debug)]
pub enum Values {
    /// `int64`, required.
    I64(Vec<i64>),
    /// `int32`, required.
    I32(Vec<i32>),
    /// `int32`, optional.
    OptI32(Vec<Option<i32>>),
    /// `boolean`, required.
    Bool(Vec<bool>),
    /// `binary (STRING)`, required.
    Str(Vec<String>),
    /// `binary (STRING)`, optional.
    OptStr(Vec<Option<String>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::I64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::OptI32(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
            Values::OptStr(v) => v.len(),
        }
    }

    /// The column's line in a Parquet message type.
    fn schema_line(&self, name: &str) -> String {
        let ty = match self {
            Values::I64(_) => "required int64",
            Values::I32(_) => "required int32",
            Values::OptI32(_) => "optional int32",
            Values::Bool(_) => "required boolean",
            Values::Str(_) => "required binary",
            Values::OptStr(_) => "optional binary",
        };
        let logical = match self {
            Values::Str(_) | Values::OptStr(_) => " (STRING)",
            _ => "",
        };
        format!("  {ty} {name}{logical};\n")
    }
}

/// A table: named columns of equal length.
#[derive(Clone, Debug, Default)]
pub struct Table {
    columns: Vec<(&'static str, Values)>,
}

impl Table {
    /// Adds a column.
    pub fn column(mut self, name: &'static str, values: Values) -> Table {
        self.columns.push((name, values));
        self
    }

    /// The rows (those of the first column).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, v)| v.len())
    }

    /// The Parquet message type of the table, as `docs/parquet.md` shows it.
    pub fn schema(&self, name: &str) -> String {
        let mut s = format!("message {name} {{\n");
        for (n, v) in &self.columns {
            s.push_str(&v.schema_line(n));
        }
        s.push('}');
        s
    }

    /// Encodes the table as one Parquet file (Snappy, one row group), with
    /// `metadata` as its key-value metadata.
    pub fn encode(&self, name: &str, metadata: &[(&str, String)]) -> Result<Vec<u8>, Error> {
        debug_assert!(self.columns.iter().all(|(_, v)| v.len() == self.rows()));
        let fail = |e: parquet::errors::ParquetError| Error::Encode {
            table: name.to_string(),
            why: e.to_string(),
        };
        let schema = Arc::new(parse_message_type(&self.schema(name)).map_err(fail)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("leaktrail {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
                    .collect(),
            ))
            .build();
        let mut out = Vec::new();
        let mut writer =
            SerializedFileWriter::new(&mut out, schema, Arc::new(props)).map_err(fail)?;
        let mut group = writer.next_row_group().map_err(fail)?;
        for (_, values) in &self.columns {
            let mut col = group
                .next_column()
                .map_err(fail)?
                .ok_or_else(|| Error::Encode {
                    table: name.to_string(),
                    why: "fewer columns in the schema than in the table".into(),
                })?;
            write_values(&mut col, values).map_err(fail)?;
            col.close().map_err(fail)?;
        }
        group.close().map_err(fail)?;
        writer.close().map_err(fail)?;
        Ok(out)
    }
}

/// Definition levels of an optional column (1 present, 0 null) and its
/// present values.
fn present<T: Clone>(v: &[Option<T>]) -> (Vec<i16>, Vec<T>) {
    let levels = v.iter().map(|x| i16::from(x.is_some())).collect();
    (levels, v.iter().flatten().cloned().collect())
}

fn bytes(v: impl IntoIterator<Item = String>) -> Vec<ByteArray> {
    v.into_iter()
        .map(|s| ByteArray::from(s.into_bytes()))
        .collect()
}

fn write_values(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    values: &Values,
) -> parquet::errors::Result<()> {
    match values {
        Values::I64(v) => col.typed::<Int64Type>().write_batch(v, None, None)?,
        Values::I32(v) => col.typed::<Int32Type>().write_batch(v, None, None)?,
        Values::OptI32(v) => {
            let (levels, v) = present(v);
            col.typed::<Int32Type>()
                .write_batch(&v, Some(&levels), None)?
        }
        Values::Bool(v) => col.typed::<BoolType>().write_batch(v, None, None)?,
        Values::Str(v) => {
            col.typed::<ByteArrayType>()
                .write_batch(&bytes(v.iter().cloned()), None, None)?
        }
        Values::OptStr(v) => {
            let (levels, v) = present(v);
            col.typed::<ByteArrayType>()
                .write_batch(&bytes(v), Some(&levels), None)?
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn a_table_reads_back_with_its_nulls_signed_values_and_metadata() {
        let t = Table::default()
            .column("address", Values::I64(vec![0x7f00_0000_1000, -1]))
            .column("line", Values::OptI32(vec![Some(12), None]))
            .column("function", Values::OptStr(vec![None, Some("main".into())]))
            .column("at_exit", Values::Bool(vec![false, true]))
            .column("kind", Values::Str(vec!["native".into(), "js".into()]));
        let bytes = t
            .encode("blocks", &[("leaktrail.schema_version", "1".into())])
            .expect("encode");
        let r = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("a Parquet file");
        let meta = r.metadata().file_metadata();
        let kv = meta.key_value_metadata().expect("metadata");
        assert_eq!(kv[0].key, "leaktrail.schema_version");
        assert_eq!(kv[0].value.as_deref(), Some("1"));
        let rows: Vec<Vec<Field>> = r
            .get_row_iter(None)
            .expect("rows")
            .map(|row| {
                row.expect("row")
                    .get_column_iter()
                    .map(|(_, f)| f.clone())
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                vec![
                    Field::Long(0x7f00_0000_1000),
                    Field::Int(12),
                    Field::Null,
                    Field::Bool(false),
                    Field::Str("native".into()),
                ],
                vec![
                    Field::Long(-1),
                    Field::Null,
                    Field::Str("main".into()),
                    Field::Bool(true),
                    Field::Str("js".into()),
                ],
            ]
        );
    }
}
