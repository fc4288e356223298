//! Lazy, zero-copy views over the message bodies the pooler decodes.
//!
//! Each function takes a frame body (the bytes after the 5-byte header, as yielded by
//! [`super::Frames`]) and borrows from it. None of them panics, whatever the input: every
//! read is bounds-checked and bad input is a [`ProtoError`].

use super::tags::auth;
use super::ProtoError;

type Result<T> = std::result::Result<T, ProtoError>;

/// A bounds-checked cursor over a message body.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(ProtoError::Malformed(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(ProtoError::Malformed(self.what))?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Bytes up to the next NUL, consuming the NUL.
    fn cbytes(&mut self) -> Result<&'a [u8]> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtoError::Malformed(self.what))?;
        let s = self.bytes(nul)?;
        self.bytes(1)?;
        Ok(s)
    }

    fn cstr(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.cbytes()?).map_err(|_| ProtoError::InvalidUtf8(self.what))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed(self.what))
        }
    }
}

/// The longest valid UTF-8 prefix of `bytes` (the whole of it when it is valid).
fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => bytes
            .get(..e.valid_up_to())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default(),
    }
}

/// The fields of an ErrorResponse or NoticeResponse body, checked for layout up front and
/// decoded lazily.
///
/// Field values are in the server's `client_encoding`, which need not be UTF-8: the `&str`
/// accessors return the longest valid UTF-8 prefix of a value (SQLSTATE codes and severities
/// are ASCII, so they always come out whole); [`ErrorFields::get_bytes`] gives the raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct ErrorFields<'a> {
    body: &'a [u8],
}

impl<'a> ErrorFields<'a> {
    /// Checks that `body` is a list of (code byte, NUL-terminated value) ending in a NUL.
    ///
    /// # Errors
    /// [`ProtoError::Malformed`] when it is not.
    pub fn new(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(body, "ErrorResponse fields");
        while r.u8()? != 0 {
            r.cbytes()?;
        }
        r.finish()?;
        Ok(Self { body })
    }

    /// Iterates over `(field code, value)` pairs in message order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a str)> + 'a {
        self.iter_bytes().map(|(code, v)| (code, utf8_prefix(v)))
    }

    /// Iterates over `(field code, raw value bytes)` pairs in message order.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let mut r = Reader::new(self.body, "ErrorResponse fields");
        std::iter::from_fn(move || match r.u8() {
            Ok(0) | Err(_) => None,
            Ok(code) => r.cbytes().ok().map(|v| (code, v)),
        })
    }

    /// Raw value of the first field with `code`.
    #[must_use]
    pub fn get_bytes(&self, code: u8) -> Option<&'a [u8]> {
        self.iter_bytes().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// Value of the first field with `code` (see the type's note on encodings).
    #[must_use]
    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.get_bytes(code).map(utf8_prefix)
    }

    /// The SQLSTATE code (`C`).
    #[must_use]
    pub fn sqlstate(&self) -> Option<&'a str> {
        self.get(b'C')
    }

    /// The primary message (`M`).
    #[must_use]
    pub fn message(&self) -> Option<&'a str> {
        self.get(b'M')
    }

    /// The severity: the non-localized `V` field, else the localized `S` field.
    #[must_use]
    pub fn severity(&self) -> Option<&'a str> {
        self.get(b'V').or_else(|| self.get(b'S'))
    }
}

/// Decodes a ParameterStatus body into `(name, value)`.
///
/// # Errors
/// Missing terminators, trailing bytes, or non-UTF-8 strings.
pub fn parameter_status(body: &[u8]) -> Result<(&str, &str)> {
    let mut r = Reader::new(body, "ParameterStatus");
    let name = r.cstr()?;
    let value = r.cstr()?;
    r.finish()?;
    Ok((name, value))
}

/// Decodes a BackendKeyData body into `(pid, secret)`.
///
/// # Errors
/// A body that is not exactly 8 bytes.
pub fn backend_key_data(body: &[u8]) -> Result<(i32, i32)> {
    let mut r = Reader::new(body, "BackendKeyData");
    let pid = r.i32()?;
    let secret = r.i32()?;
    r.finish()?;
    Ok((pid, secret))
}

/// Decodes a ReadyForQuery body into its transaction status byte.
///
/// # Errors
/// A body that is not one of `I`, `T`, `E`.
pub fn ready_for_query(body: &[u8]) -> Result<u8> {
    match body {
        [s @ (b'I' | b'T' | b'E')] => Ok(*s),
        _ => Err(ProtoError::Malformed("ReadyForQuery")),
    }
}

/// Decodes a CommandComplete body into its command tag.
///
/// # Errors
/// A missing terminator, trailing bytes, or non-UTF-8 text.
pub fn command_complete(body: &[u8]) -> Result<&str> {
    let mut r = Reader::new(body, "CommandComplete");
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// The mechanisms offered by AuthenticationSASL, validated up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslMechanisms<'a> {
    /// NUL-terminated UTF-8 names, without the final empty name.
    list: &'a [u8],
}

impl<'a> SaslMechanisms<'a> {
    /// Iterates over the mechanism names in the server's order of preference.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.list
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .filter_map(|name| std::str::from_utf8(name).ok())
    }

    /// Whether `name` is offered.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|m| m == name)
    }
}

/// An Authentication (`R`) message from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// AuthenticationOk.
    Ok,
    /// AuthenticationCleartextPassword.
    Cleartext,
    /// AuthenticationMD5Password.
    Md5 {
        /// Salt to hash the password with.
        salt: [u8; 4],
    },
    /// AuthenticationSASL with the offered mechanisms.
    Sasl(SaslMechanisms<'a>),
    /// AuthenticationSASLContinue with mechanism data.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal with mechanism data.
    SaslFinal(&'a [u8]),
    /// Any other method (GSS, SSPI, ...), which we do not support.
    Other(i32),
}

/// Decodes an Authentication body.
///
/// # Errors
/// A truncated body, trailing bytes, or a mechanism list that is not NUL-terminated UTF-8.
pub fn authentication(body: &[u8]) -> Result<Auth<'_>> {
    let mut r = Reader::new(body, "Authentication");
    let auth = match r.i32()? {
        auth::OK => Auth::Ok,
        auth::CLEARTEXT_PASSWORD => Auth::Cleartext,
        auth::MD5_PASSWORD => Auth::Md5 { salt: r.array()? },
        auth::SASL => {
            let list = r.rest();
            let mut names = Reader::new(list, "AuthenticationSASL");
            loop {
                if names.cstr()?.is_empty() {
                    break;
                }
            }
            names.finish()?;
            let len = list.len().saturating_sub(1);
            Auth::Sasl(SaslMechanisms {
                list: list.get(..len).unwrap_or_default(),
            })
        }
        auth::SASL_CONTINUE => Auth::SaslContinue(r.rest()),
        auth::SASL_FINAL => Auth::SaslFinal(r.rest()),
        other => Auth::Other(other),
    };
    if !matches!(auth, Auth::Other(_)) {
        r.finish()?;
    }
    Ok(auth)
}

/// Parameter type oids of a Parse message, validated up front.
#[derive(Debug, Clone)]
pub struct ParamTypes<'a> {
    oids: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for ParamTypes<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let chunk = self.oids.next()?;
        chunk.first_chunk::<4>().map(|b| u32::from_be_bytes(*b))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.oids.size_hint()
    }
}

impl ExactSizeIterator for ParamTypes<'_> {}

/// A decoded Parse message.
#[derive(Debug, Clone)]
pub struct ParseMsg<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The SQL text.
    pub query: &'a str,
    /// Parameter type oids (0: unspecified).
    pub param_types: ParamTypes<'a>,
}

/// Decodes a Parse body.
///
/// # Errors
/// Missing terminators, a negative or wrong parameter count, trailing bytes, non-UTF-8 text.
pub fn parse_msg(body: &[u8]) -> Result<ParseMsg<'_>> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr()?;
    let query = r.cstr()?;
    let count = usize::try_from(r.i16()?).map_err(|_| ProtoError::Malformed("Parse"))?;
    let oids = r.bytes(count * 4)?;
    r.finish()?;
    Ok(ParseMsg {
        name,
        query,
        param_types: ParamTypes {
            oids: oids.chunks_exact(4),
        },
    })
}

/// Decodes the start of a Bind body into `(portal, statement)`; the parameters are not read.
///
/// # Errors
/// Missing terminators or non-UTF-8 names.
pub fn bind_names(body: &[u8]) -> Result<(&str, &str)> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Ok((portal, statement))
}

/// Decodes a Describe or Close body into `(kind, name)`, kind being `b'S'` (statement) or
/// `b'P'` (portal).
///
/// # Errors
/// Another kind, a missing terminator, trailing bytes, or a non-UTF-8 name.
pub fn describe_or_close(body: &[u8]) -> Result<(u8, &str)> {
    let mut r = Reader::new(body, "Describe/Close");
    let kind = r.u8()?;
    if kind != b'S' && kind != b'P' {
        return Err(ProtoError::Malformed("Describe/Close kind"));
    }
    let name = r.cstr()?;
    r.finish()?;
    Ok((kind, name))
}

/// Decodes a Query body into its SQL text.
///
/// # Errors
/// A missing terminator, trailing bytes, or non-UTF-8 text.
pub fn query_text(body: &[u8]) -> Result<&str> {
    let mut r = Reader::new(body, "Query");
    let sql = r.cstr()?;
    r.finish()?;
    Ok(sql)
}

/// Decodes a PasswordMessage body into the password or `md5...` response (without its NUL).
///
/// # Errors
/// A missing terminator or trailing bytes.
pub fn password(body: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(body, "PasswordMessage");
    let pw = r.cbytes()?;
    r.finish()?;
    Ok(pw)
}

/// Decodes a SASLInitialResponse body into `(mechanism, data)`; absent data (length -1)
/// comes out empty.
///
/// # Errors
/// A missing terminator, a bad or lying data length, trailing bytes, a non-UTF-8 mechanism.
pub fn sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8])> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mechanism = r.cstr()?;
    let data = match r.i32()? {
        -1 => &[][..],
        len => {
            let len = usize::try_from(len).map_err(|_| ProtoError::BadLength(len))?;
            r.bytes(len)?
        }
    };
    r.finish()?;
    Ok((mechanism, data))
}

/// Decodes a DataRow body into its column values (`None`: NULL).
///
/// # Errors
/// A bad or lying count or length, trailing bytes.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>> {
    let mut r = Reader::new(body, "DataRow");
    let count = r.i16()?;
    let count = usize::try_from(count).map_err(|_| ProtoError::BadLength(i32::from(count)))?;
    let mut values = Vec::with_capacity(count.min(body.len() / 4));
    for _ in 0..count {
        values.push(match r.i32()? {
            -1 => None,
            len => {
                let len = usize::try_from(len).map_err(|_| ProtoError::BadLength(len))?;
                Some(r.bytes(len)?)
            }
        });
    }
    r.finish()?;
    Ok(values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
