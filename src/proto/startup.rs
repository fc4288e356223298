//! The untagged first packets of a connection: SSLRequest, GSSENCRequest, CancelRequest and
//! StartupMessage, decoded by [`parse_initial`] and built by [`startup_message`] and friends.

use bytes::{BufMut, BytesMut};

use super::tags::request;
use super::ProtoError;

/// The first packet a client sends (and the one after a declined SSL/GSS request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    /// SSLRequest: the client asks for TLS (answer with one byte, `S` or `N`).
    Ssl,
    /// GSSENCRequest: the client asks for GSSAPI encryption (answer `N` to decline).
    GssEnc,
    /// CancelRequest for the backend identified by BackendKeyData.
    Cancel {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: i32,
    },
    /// StartupMessage for protocol 3.x.
    Startup {
        /// Always 3.
        major: u16,
        /// Requested minor version; above 0, answer with NegotiateProtocolVersion.
        minor: u16,
        /// Parameters in the order sent (`user`, `database`, `options`, GUCs, `_pq_.*`).
        params: Vec<(String, String)>,
    },
}

impl Initial {
    /// The value of startup parameter `name`, if this is a StartupMessage carrying it.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Self::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Decodes the untagged packet at the start of `buf`.
///
/// Returns `Ok(None)` until the whole packet is in `buf`, then the packet and its length
/// (the number of bytes to consume). `max_len` bounds the packet length.
///
/// # Errors
/// A length below 8 or above `max_len`, an unknown request code or protocol major version,
/// a request of the wrong size, parameters that are not NUL-terminated pairs ending in an
/// extra NUL, or parameters that are not UTF-8.
pub fn parse_initial(buf: &[u8], max_len: usize) -> Result<Option<(Initial, usize)>, ProtoError> {
    let Some(&[a, b, c, d]) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes([a, b, c, d]);
    let len = match usize::try_from(raw) {
        Ok(len) if len >= 8 => len,
        _ => return Err(ProtoError::BadLength(raw)),
    };
    if len > max_len {
        return Err(ProtoError::MessageTooLarge { len, max: max_len });
    }
    let Some(packet) = buf.get(..len) else {
        return Ok(None);
    };
    let (code, body) = split_u32(packet.get(4..).unwrap_or_default())?;
    let initial = match code {
        request::SSL => fixed(body, 0, Initial::Ssl)?,
        request::GSSENC => fixed(body, 0, Initial::GssEnc)?,
        request::CANCEL => {
            let (pid, rest) = split_u32(body)?;
            let (secret, rest) = split_u32(rest)?;
            fixed(
                rest,
                0,
                Initial::Cancel {
                    pid: pid as i32,
                    secret: secret as i32,
                },
            )?
        }
        code if code >> 16 == 3 => Initial::Startup {
            major: 3,
            minor: (code & 0xffff) as u16,
            params: parse_params(body)?,
        },
        code => return Err(ProtoError::UnsupportedProtocol(code)),
    };
    Ok(Some((initial, len)))
}

fn split_u32(buf: &[u8]) -> Result<(u32, &[u8]), ProtoError> {
    match buf.split_first_chunk::<4>() {
        Some((head, rest)) => Ok((u32::from_be_bytes(*head), rest)),
        None => Err(ProtoError::Malformed("truncated startup packet")),
    }
}

fn fixed(rest: &[u8], expected: usize, value: Initial) -> Result<Initial, ProtoError> {
    if rest.len() == expected {
        Ok(value)
    } else {
        Err(ProtoError::Malformed("request packet of the wrong length"))
    }
}

fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, ProtoError> {
    let mut params = Vec::new();
    loop {
        let (key, rest) = split_cstr(body)?;
        if key.is_empty() {
            if rest.is_empty() {
                return Ok(params);
            }
            return Err(ProtoError::Malformed(
                "startup packet: data after the terminator",
            ));
        }
        let (value, rest) = split_cstr(rest)?;
        params.push((to_string(key)?, to_string(value)?));
        body = rest;
    }
}

fn split_cstr(buf: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let nul = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtoError::Malformed(
            "startup packet: missing NUL terminator",
        ))?;
    let (s, rest) = buf.split_at(nul);
    Ok((s, rest.get(1..).unwrap_or_default()))
}

fn to_string(bytes: &[u8]) -> Result<String, ProtoError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| ProtoError::InvalidUtf8("startup parameter"))
}

/// Builds a protocol 3.0 StartupMessage. Strings are cut at an interior NUL, if any.
#[must_use]
pub fn startup_message(params: &[(&str, &str)]) -> BytesMut {
    let body: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut buf = BytesMut::with_capacity(9 + body);
    buf.put_i32(0);
    buf.put_u32(request::PROTOCOL_3_0);
    for (key, value) in params {
        super::builders::put_cstr(&mut buf, key.as_bytes());
        super::builders::put_cstr(&mut buf, value.as_bytes());
    }
    buf.put_u8(0);
    super::builders::patch_len(&mut buf, 0);
    buf
}

/// Builds a CancelRequest for the backend identified by `pid` and `secret`.
#[must_use]
pub fn cancel_request(pid: i32, secret: i32) -> BytesMut {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(16);
    buf.put_u32(request::CANCEL);
    buf.put_i32(pid);
    buf.put_i32(secret);
    buf
}

/// Builds an SSLRequest.
#[must_use]
pub fn ssl_request() -> BytesMut {
    let mut buf = BytesMut::with_capacity(8);
    buf.put_i32(8);
    buf.put_u32(request::SSL);
    buf
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAX: usize = 10_000;

    #[test]
    fn round_trips_startup() {
        let pkt = startup_message(&[("user", "alice"), ("database", "db1"), ("x", "")]);
        let (initial, len) = parse_initial(&pkt, MAX).unwrap().unwrap();
        assert_eq!(len, pkt.len());
        assert_eq!(initial.param("database"), Some("db1"));
        assert_eq!(initial.param("nope"), None);
        assert_eq!(
            initial,
            Initial::Startup {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "db1".into()),
                    ("x".into(), String::new()),
                ],
            }
        );
    }

    #[test]
    fn needs_the_whole_packet() {
        let pkt = startup_message(&[("user", "alice")]);
        for cut in 0..pkt.len() {
            assert_eq!(parse_initial(&pkt[..cut], MAX), Ok(None), "cut {cut}");
        }
        let mut more = pkt.to_vec();
        more.extend_from_slice(b"Qtrailing");
        assert_eq!(parse_initial(&more, MAX).unwrap().unwrap().1, pkt.len());
    }

    #[test]
    fn decodes_requests() {
        let ssl = ssl_request();
        assert_eq!(parse_initial(&ssl, MAX), Ok(Some((Initial::Ssl, 8))));
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(parse_initial(&gss, MAX), Ok(Some((Initial::GssEnc, 8))));
        let cancel = cancel_request(42, -7);
        assert_eq!(
            parse_initial(&cancel, MAX),
            Ok(Some((
                Initial::Cancel {
                    pid: 42,
                    secret: -7
                },
                16
            )))
        );
    }

    #[test]
    fn minor_versions_are_reported() {
        let mut pkt = startup_message(&[("user", "u")]).to_vec();
        pkt[7] = 2;
        let (initial, _) = parse_initial(&pkt, MAX).unwrap().unwrap();
        assert!(matches!(
            initial,
            Initial::Startup {
                major: 3,
                minor: 2,
                ..
            }
        ));
    }

    #[test]
    fn rejects_hostile_packets() {
        let bad_len = |raw: i32| {
            let mut v = raw.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0, 0]);
            parse_initial(&v, MAX)
        };
        assert_eq!(bad_len(7), Err(ProtoError::BadLength(7)));
        assert_eq!(bad_len(-1), Err(ProtoError::BadLength(-1)));
        assert_eq!(bad_len(i32::MIN), Err(ProtoError::BadLength(i32::MIN)));
        assert_eq!(
            bad_len(i32::MAX),
            Err(ProtoError::MessageTooLarge {
                len: i32::MAX as usize,
                max: MAX
            })
        );
        // Protocol 2.0 and unknown request codes.
        assert_eq!(
            parse_initial(&[0, 0, 0, 9, 0, 2, 0, 0, 0], MAX),
            Err(ProtoError::UnsupportedProtocol(0x0002_0000))
        );
        assert!(matches!(
            parse_initial(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x31], MAX),
            Err(ProtoError::UnsupportedProtocol(_))
        ));
        // SSLRequest and CancelRequest of the wrong size.
        assert!(parse_initial(&[0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f, 0], MAX).is_err());
        assert!(parse_initial(&[0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1], MAX).is_err());
    }

    #[test]
    fn rejects_bad_parameters() {
        let with_body = |body: &[u8]| {
            let mut v = (i32::try_from(body.len()).unwrap() + 8)
                .to_be_bytes()
                .to_vec();
            v.extend_from_slice(&[0, 3, 0, 0]);
            v.extend_from_slice(body);
            parse_initial(&v, MAX)
        };
        assert!(with_body(b"").is_err(), "no terminator");
        assert!(with_body(b"user\0").is_err(), "key without value");
        assert!(with_body(b"user\0bob").is_err(), "value without NUL");
        assert!(with_body(b"user\0bob\0").is_err(), "no final NUL");
        assert!(
            with_body(b"user\0bob\0\0x").is_err(),
            "data after terminator"
        );
        assert_eq!(
            with_body(b"user\0\xff\0\0"),
            Err(ProtoError::InvalidUtf8("startup parameter"))
        );
        assert!(matches!(
            with_body(b"\0"),
            Ok(Some((Initial::Startup { .. }, 9)))
        ));
    }

    #[test]
    fn builders_cut_interior_nul() {
        let pkt = startup_message(&[("user", "a\0b")]);
        let (initial, _) = parse_initial(&pkt, MAX).unwrap().unwrap();
        assert_eq!(initial.param("user"), Some("a"));
    }
}
