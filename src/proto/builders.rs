//! Message builders: free functions appending one message to a `BytesMut`.
//!
//! Each writes the tag, a placeholder length, the body, then back-patches the length, so
//! building a message allocates nothing beyond growing the caller's buffer. Builders never
//! fail: strings are cut at an interior NUL (the protocol cannot carry one), counts are capped
//! at `i16::MAX` items and byte strings at `i32::MAX` bytes, so the output is always a
//! well-formed frame.

use bytes::{BufMut, BytesMut};

use super::tags::{auth, backend, frontend};

/// Type oid of `text`, used by [`row_description`].
pub const TEXT_OID: u32 = 25;
/// OID of `int4`.
pub const INT4_OID: u32 = 23;
/// OID of `int8`.
pub const INT8_OID: u32 = 20;
/// OID of `numeric`.
pub const NUMERIC_OID: u32 = 1700;

/// Writes `s` up to its first NUL, then a NUL.
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    buf.put_slice(s.get(..end).unwrap_or_default());
    buf.put_u8(0);
}

/// Writes the length of `buf[start..]` as a big-endian `i32` at `start`.
pub(crate) fn patch_len(buf: &mut BytesMut, start: usize) {
    let len = i32::try_from(buf.len().saturating_sub(start)).unwrap_or(i32::MAX);
    if let Some(slot) = buf.get_mut(start..start.saturating_add(4)) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Writes an `i32` byte count then the bytes (at most `i32::MAX` of them).
fn put_counted(buf: &mut BytesMut, data: &[u8]) {
    let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
    buf.put_i32(len);
    buf.put_slice(data.get(..len as usize).unwrap_or_default());
}

/// Number of items to write under an `i16` count.
fn capped_i16(n: usize) -> (i16, usize) {
    let count = i16::try_from(n).unwrap_or(i16::MAX);
    (count, count as usize)
}

#[inline]
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let start = buf.len();
    buf.put_i32(0);
    body(buf);
    patch_len(buf, start);
}

fn fields(buf: &mut BytesMut, tag: u8, severity: &str, code: &str, text: &str) {
    message(buf, tag, |b| {
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', text),
        ] {
            b.put_u8(field);
            put_cstr(b, value.as_bytes());
        }
        b.put_u8(0);
    });
}

// ---------------------------------------------------------------- backend messages

/// ErrorResponse with severity (`S` and `V`), SQLSTATE `code` (`C`) and `message` (`M`).
pub fn error_response(buf: &mut BytesMut, severity: &str, code: &str, message: &str) {
    fields(buf, backend::ERROR_RESPONSE, severity, code, message);
}

/// NoticeResponse with the same fields as [`error_response`].
pub fn notice_response(buf: &mut BytesMut, severity: &str, code: &str, message: &str) {
    fields(buf, backend::NOTICE_RESPONSE, severity, code, message);
}

fn auth_code(buf: &mut BytesMut, code: i32, rest: &[u8]) {
    message(buf, backend::AUTHENTICATION, |b| {
        b.put_i32(code);
        b.put_slice(rest);
    });
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    auth_code(buf, auth::OK, &[]);
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext(buf: &mut BytesMut) {
    auth_code(buf, auth::CLEARTEXT_PASSWORD, &[]);
}

/// AuthenticationMD5Password with its salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    auth_code(buf, auth::MD5_PASSWORD, &salt);
}

/// AuthenticationSASL listing `mechanisms` (e.g. `["SCRAM-SHA-256"]`).
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    message(buf, backend::AUTHENTICATION, |b| {
        b.put_i32(auth::SASL);
        for mechanism in mechanisms {
            put_cstr(b, mechanism.as_bytes());
        }
        b.put_u8(0);
    });
}

/// AuthenticationSASLContinue carrying mechanism `data` (SCRAM server-first-message).
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth_code(buf, auth::SASL_CONTINUE, data);
}

/// AuthenticationSASLFinal carrying mechanism `data` (SCRAM server-final-message).
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth_code(buf, auth::SASL_FINAL, data);
}

/// ParameterStatus `name` = `value`.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, backend::PARAMETER_STATUS, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}

/// BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    message(buf, backend::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

/// ReadyForQuery with a transaction `status` byte (see [`super::tags::status`]).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    message(buf, backend::READY_FOR_QUERY, |b| b.put_u8(status));
}

/// NegotiateProtocolVersion: newest supported `minor` version and the unrecognized `_pq_`
/// options.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u32, unrecognized: &[&str]) {
    message(buf, backend::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_u32(super::tags::request::PROTOCOL_3_0 | (minor & 0xffff));
        let count = i32::try_from(unrecognized.len()).unwrap_or(i32::MAX);
        b.put_i32(count);
        for option in unrecognized.iter().take(count as usize) {
            put_cstr(b, option.as_bytes());
        }
    });
}

/// CommandComplete with a command `tag` such as `SELECT 1` or `SHOW`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    message(buf, backend::COMMAND_COMPLETE, |b| {
        put_cstr(b, tag.as_bytes())
    });
}

/// RowDescription of text columns (type oid 25, text format), as the admin console returns.
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    let typed: Vec<(&str, u32)> = columns.iter().map(|c| (*c, TEXT_OID)).collect();
    row_description_typed(buf, &typed);
}

/// RowDescription of text-format columns with their type OIDs (`TEXT_OID`, `INT4_OID`,
/// `INT8_OID`, `NUMERIC_OID`); values are still sent as text.
pub fn row_description_typed(buf: &mut BytesMut, columns: &[(&str, u32)]) {
    message(buf, backend::ROW_DESCRIPTION, |b| {
        let (count, n) = capped_i16(columns.len());
        b.put_i16(count);
        for (column, oid) in columns.iter().take(n) {
            put_cstr(b, column.as_bytes());
            b.put_u32(0); // table oid
            b.put_i16(0); // attribute number
            b.put_u32(*oid);
            b.put_i16(match *oid {
                INT4_OID => 4,
                INT8_OID => 8,
                _ => -1, // variable
            });
            b.put_i32(-1); // type modifier
            b.put_i16(0); // text format
        }
    });
}

/// DataRow of text values; `None` is SQL NULL.
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    message(buf, backend::DATA_ROW, |b| {
        let (count, n) = capped_i16(values.len());
        b.put_i16(count);
        for value in values.iter().take(n) {
            match value {
                Some(v) => put_counted(b, v.as_bytes()),
                None => b.put_i32(-1),
            }
        }
    });
}

/// EmptyQueryResponse.
pub fn empty_query_response(buf: &mut BytesMut) {
    message(buf, backend::EMPTY_QUERY_RESPONSE, |_| {});
}

// --------------------------------------------------------------- frontend messages

/// Query (simple protocol).
pub fn query(buf: &mut BytesMut, sql: &str) {
    message(buf, frontend::QUERY, |b| put_cstr(b, sql.as_bytes()));
}

/// PasswordMessage: a cleartext password or an `md5...` response, NUL-terminated.
pub fn password_message(buf: &mut BytesMut, password: &[u8]) {
    message(buf, frontend::PASSWORD, |b| put_cstr(b, password));
}

/// SASLInitialResponse choosing `mechanism` with its first message `data`.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    message(buf, frontend::PASSWORD, |b| {
        put_cstr(b, mechanism.as_bytes());
        put_counted(b, data);
    });
}

/// SASLResponse carrying mechanism `data` (SCRAM client-final-message).
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    message(buf, frontend::PASSWORD, |b| b.put_slice(data));
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    message(buf, frontend::TERMINATE, |_| {});
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    message(buf, frontend::SYNC, |_| {});
}

/// Flush.
pub fn flush(buf: &mut BytesMut) {
    message(buf, frontend::FLUSH, |_| {});
}

/// Parse of statement `name` (empty: unnamed) from `query` with parameter type oids
/// (0: let the server infer).
pub fn parse(buf: &mut BytesMut, name: &str, query: &str, param_types: &[u32]) {
    message(buf, frontend::PARSE, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, query.as_bytes());
        let (count, n) = capped_i16(param_types.len());
        b.put_i16(count);
        for oid in param_types.iter().take(n) {
            b.put_u32(*oid);
        }
    });
}

/// Describe of prepared statement `name`.
pub fn describe_statement(buf: &mut BytesMut, name: &str) {
    message(buf, frontend::DESCRIBE, |b| {
        b.put_u8(b'S');
        put_cstr(b, name.as_bytes());
    });
}

/// Bind of statement `stmt` to portal `portal` with text parameters (`None`: NULL) and text
/// results.
pub fn bind_text(buf: &mut BytesMut, portal: &str, stmt: &str, params: &[Option<&str>]) {
    message(buf, frontend::BIND, |b| {
        put_cstr(b, portal.as_bytes());
        put_cstr(b, stmt.as_bytes());
        b.put_i16(0);
        let (count, n) = capped_i16(params.len());
        b.put_i16(count);
        for p in params.iter().take(n) {
            match p {
                Some(v) => put_counted(b, v.as_bytes()),
                None => b.put_i32(-1),
            }
        }
        b.put_i16(0);
    });
}

/// Execute of portal `portal`, at most `max_rows` rows (0: all).
pub fn execute(buf: &mut BytesMut, portal: &str, max_rows: i32) {
    message(buf, frontend::EXECUTE, |b| {
        put_cstr(b, portal.as_bytes());
        b.put_i32(max_rows);
    });
}

/// Close of prepared statement `name`.
pub fn close_statement(buf: &mut BytesMut, name: &str) {
    message(buf, frontend::CLOSE, |b| {
        b.put_u8(b'S');
        put_cstr(b, name.as_bytes());
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
