//! One-row lookups with a text parameter over the extended protocol (`auth_query`).

use super::{from_frame_err, postgres_error, ServerConn, ServerError, CONTROL_MAX};
use crate::net::frame_io::read_frame;
use crate::proto::{builders, tags::backend, views};
use bytes::BytesMut;

impl ServerConn {
    /// Runs `sql` with `$1` bound to `param` (unnamed statement and portal, one Sync) and
    /// returns the text columns of its first row, `None` when it returned no row. Reads up to
    /// ReadyForQuery, so the connection stays usable.
    ///
    /// # Errors
    /// I/O or protocol failures, and the server's error for the query.
    pub async fn query_row(
        &mut self,
        sql: &str,
        param: &str,
    ) -> Result<Option<Vec<Option<String>>>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + param.len() + 64);
        builders::parse(&mut out, "", sql, &[]);
        builders::bind_text(&mut out, "", "", &[Some(param)]);
        builders::execute(&mut out, "", 0);
        builders::sync(&mut out);
        self.send(&out).await?;
        let mut row = None;
        let mut error = None;
        loop {
            let f = read_frame(&mut self.stream, &mut self.buf, CONTROL_MAX)
                .await
                .map_err(|e| from_frame_err(&self.node, e))?;
            match f.tag {
                backend::DATA_ROW if row.is_none() => {
                    let values = views::data_row(&f.body).map_err(|e| ServerError::Protocol {
                        node: self.node.to_string(),
                        message: e.to_string(),
                    })?;
                    row = Some(
                        values
                            .into_iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect(),
                    );
                }
                backend::ERROR_RESPONSE if error.is_none() => {
                    error = Some(postgres_error(&self.node, &f.body));
                }
                backend::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(row),
        }
    }
}
