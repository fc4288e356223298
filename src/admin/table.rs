//! A result set under construction: column names, text rows, then the wire messages
//! (RowDescription, DataRow..., CommandComplete) built with `proto::builders`.

use crate::proto::builders;
use bytes::BytesMut;

/// Rows of text values under named, typed columns.
pub struct Table {
    columns: Vec<(&'static str, u32)>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// An empty table with these columns, all of type `text`.
    pub fn new(columns: &[&'static str]) -> Self {
        Self::typed(columns, "")
    }

    /// An empty table with these columns typed by `types`, one letter per column as
    /// PgBouncer's console declares them: `s` text, `i` int4, `q` int8, `N` numeric, `T` a
    /// timestamp shown as text. Columns past the end of `types` are text.
    pub fn typed(columns: &[&'static str], types: &str) -> Self {
        let mut codes = types.chars();
        let columns = columns
            .iter()
            .map(|c| {
                let oid = match codes.next() {
                    Some('i') => builders::INT4_OID,
                    Some('q') => builders::INT8_OID,
                    Some('N') => builders::NUMERIC_OID,
                    _ => builders::TEXT_OID,
                };
                (*c, oid)
            })
            .collect();
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row (one value per column; `None` is NULL).
    pub fn row(&mut self, values: Vec<Option<String>>) {
        self.rows.push(values);
    }

    /// Appends a row of non-null values.
    pub fn text_row<S: ToString>(&mut self, values: &[S]) {
        self.rows
            .push(values.iter().map(|v| Some(v.to_string())).collect());
    }

    /// Writes the result set and `CommandComplete` with `tag`.
    pub fn write(&self, out: &mut BytesMut, tag: &str) {
        builders::row_description_typed(out, &self.columns);
        for r in &self.rows {
            let vals: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
            builders::data_row(out, &vals);
        }
        builders::command_complete(out, tag);
    }
}

/// A value that is shown as text.
pub fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}
