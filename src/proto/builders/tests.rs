//! Tests of the builders: every message is decoded back with [`crate::proto::views`].

use bytes::BytesMut;

use super::*;
use crate::proto::views::{self, Auth, ErrorFields};
use crate::proto::Frames;

fn one(build: impl FnOnce(&mut BytesMut)) -> (u8, Vec<u8>) {
    let mut buf = BytesMut::new();
    build(&mut buf);
    let mut frames = Frames::new(&buf, 1 << 20);
    let (tag, body) = frames.next().unwrap().unwrap();
    assert_eq!(frames.next(), None);
    assert_eq!(frames.consumed(), buf.len(), "length back-patched");
    (tag, body.to_vec())
}

#[test]
fn error_and_notice() {
    let (tag, body) = one(|b| error_response(b, "FATAL", "28P01", "auth failed"));
    assert_eq!(tag, b'E');
    let fields = ErrorFields::new(&body).unwrap();
    assert_eq!(fields.severity(), Some("FATAL"));
    assert_eq!(fields.get(b'S'), Some("FATAL"));
    assert_eq!(fields.sqlstate(), Some("28P01"));
    assert_eq!(fields.message(), Some("auth failed"));
    let (tag, body) = one(|b| notice_response(b, "NOTICE", "00000", "hi"));
    assert_eq!(tag, b'N');
    assert_eq!(ErrorFields::new(&body).unwrap().message(), Some("hi"));
}

#[test]
fn authentication_requests() {
    let (tag, body) = one(auth_ok);
    assert_eq!((tag, views::authentication(&body)), (b'R', Ok(Auth::Ok)));
    let (_, body) = one(auth_cleartext);
    assert_eq!(views::authentication(&body), Ok(Auth::Cleartext));
    let (_, body) = one(|b| auth_md5(b, [1, 2, 3, 4]));
    assert_eq!(
        views::authentication(&body),
        Ok(Auth::Md5 { salt: [1, 2, 3, 4] })
    );
    let (_, body) = one(|b| auth_sasl(b, &["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]));
    let Ok(Auth::Sasl(mechs)) = views::authentication(&body) else {
        panic!("not SASL");
    };
    assert_eq!(
        mechs.iter().collect::<Vec<_>>(),
        ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]
    );
    assert!(mechs.contains("SCRAM-SHA-256"));
    assert!(!mechs.contains("SCRAM"));
    let (_, body) = one(|b| auth_sasl_continue(b, b"r=abc"));
    assert_eq!(
        views::authentication(&body),
        Ok(Auth::SaslContinue(&b"r=abc"[..]))
    );
    let (_, body) = one(|b| auth_sasl_final(b, b"v=xyz"));
    assert_eq!(
        views::authentication(&body),
        Ok(Auth::SaslFinal(&b"v=xyz"[..]))
    );
}

#[test]
fn session_messages() {
    let (tag, body) = one(|b| parameter_status(b, "TimeZone", "UTC"));
    assert_eq!(tag, b'S');
    assert_eq!(views::parameter_status(&body), Ok(("TimeZone", "UTC")));
    let (tag, body) = one(|b| backend_key_data(b, 1234, -99));
    assert_eq!(tag, b'K');
    assert_eq!(views::backend_key_data(&body), Ok((1234, -99)));
    let (tag, body) = one(|b| ready_for_query(b, b'T'));
    assert_eq!((tag, views::ready_for_query(&body)), (b'Z', Ok(b'T')));
    let (tag, body) = one(|b| command_complete(b, "SELECT 3"));
    assert_eq!(
        (tag, views::command_complete(&body)),
        (b'C', Ok("SELECT 3"))
    );
    assert_eq!(one(empty_query_response), (b'I', vec![]));
}

#[test]
fn negotiate_protocol() {
    let (tag, body) = one(|b| negotiate_protocol_version(b, 0, &["_pq_.foo", "_pq_.bar"]));
    assert_eq!(tag, b'v');
    assert_eq!(body, b"\0\x03\0\0\0\0\0\x02_pq_.foo\0_pq_.bar\0");
}

#[test]
fn rows() {
    let (tag, body) = one(|b| row_description(b, &["a", "bc"]));
    assert_eq!(tag, b'T');
    let mut expected = vec![0, 2];
    for name in [&b"a"[..], b"bc"] {
        expected.extend_from_slice(name);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]); // NUL, table, attnum, type
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    }
    assert_eq!(body, expected);
    let (tag, body) = one(|b| data_row(b, &[Some("x"), None, Some("")]));
    assert_eq!(tag, b'D');
    assert_eq!(
        body,
        [0, 3, 0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
    );
}

#[test]
fn frontend_messages() {
    let (tag, body) = one(|b| query(b, "SELECT 1"));
    assert_eq!((tag, views::query_text(&body)), (b'Q', Ok("SELECT 1")));
    let (tag, body) = one(|b| password_message(b, b"md5abc"));
    assert_eq!((tag, views::password(&body)), (b'p', Ok(&b"md5abc"[..])));
    let (_, body) = one(|b| sasl_initial_response(b, "SCRAM-SHA-256", b"n,,n=,r=x"));
    assert_eq!(
        views::sasl_initial_response(&body),
        Ok(("SCRAM-SHA-256", &b"n,,n=,r=x"[..]))
    );
    assert_eq!(
        one(|b| sasl_response(b, b"c=biws")),
        (b'p', b"c=biws".to_vec())
    );
    assert_eq!(one(terminate), (b'X', vec![]));
    assert_eq!(one(sync), (b'S', vec![]));
    assert_eq!(one(flush), (b'H', vec![]));
    let (tag, body) = one(|b| parse(b, "s1", "SELECT $1", &[23, 0]));
    assert_eq!(tag, b'P');
    let msg = views::parse_msg(&body).unwrap();
    assert_eq!((msg.name, msg.query), ("s1", "SELECT $1"));
    assert_eq!(msg.param_types.collect::<Vec<_>>(), [23, 0]);
    let (tag, body) = one(|b| close_statement(b, "s1"));
    assert_eq!(
        (tag, views::describe_or_close(&body)),
        (b'C', Ok((b'S', "s1")))
    );
    let (tag, body) = one(|b| describe_statement(b, ""));
    assert_eq!(
        (tag, views::describe_or_close(&body)),
        (b'D', Ok((b'S', "")))
    );
}

#[test]
fn builders_append_and_cut_nul() {
    let mut buf = BytesMut::new();
    sync(&mut buf);
    query(&mut buf, "SELECT 1\0; DROP TABLE t");
    let frames: Vec<_> = Frames::new(&buf, 1 << 20).map(Result::unwrap).collect();
    assert_eq!(frames, [(b'S', &b""[..]), (b'Q', &b"SELECT 1\0"[..])]);
}
