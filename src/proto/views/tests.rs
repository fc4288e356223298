//! Tests of the body views, with truncated and hostile inputs.

use super::*;
use crate::proto::ProtoError;

#[test]
fn error_fields_layout() {
    let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0";
    let f = ErrorFields::new(body).unwrap();
    assert_eq!(f.iter().count(), 4);
    assert_eq!(f.sqlstate(), Some("42P01"));
    assert_eq!(f.message(), Some("relation \"x\" does not exist"));
    assert_eq!(f.get(b'D'), None);
    assert!(ErrorFields::new(b"\0").unwrap().iter().next().is_none());
    for bad in [&b""[..], b"SERROR", b"SERROR\0", b"SERROR\0\0x", b"\0\0"] {
        assert!(ErrorFields::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn error_fields_non_utf8() {
    let body = b"SERREUR\0C28P01\0Mmot de passe \xe9chou\xe9\0\0";
    let f = ErrorFields::new(body).unwrap();
    assert_eq!(f.sqlstate(), Some("28P01"));
    assert_eq!(f.severity(), Some("ERREUR"));
    assert_eq!(f.message(), Some("mot de passe "));
    assert_eq!(f.get_bytes(b'M'), Some(&b"mot de passe \xe9chou\xe9"[..]));
}

#[test]
fn parameter_status_and_key_data() {
    assert_eq!(parameter_status(b"a\0b\0"), Ok(("a", "b")));
    for bad in [&b""[..], b"a\0", b"a\0b", b"a\0b\0c", b"\xff\0b\0"] {
        assert!(parameter_status(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        backend_key_data(&[0, 0, 0, 1, 255, 255, 255, 255]),
        Ok((1, -1))
    );
    assert!(backend_key_data(&[0; 7]).is_err());
    assert!(backend_key_data(&[0; 9]).is_err());
}

#[test]
fn authentication_hostile() {
    assert_eq!(authentication(&[0, 0, 0, 7]), Ok(Auth::Other(7)));
    assert_eq!(
        authentication(&[0, 0, 0, 9, 1, 2, 3]),
        Ok(Auth::Other(9)),
        "unknown methods keep their data"
    );
    for bad in [
        &b""[..],
        &[0, 0, 0],
        &[0, 0, 0, 0, 0],
        &[0, 0, 0, 5, 1, 2, 3],
        &[0, 0, 0, 5, 1, 2, 3, 4, 5],
        &[0, 0, 0, 10],
        &[0, 0, 0, 10, b'A', 0],
        &[0, 0, 0, 10, b'A', 0, 0, 0],
        &[0, 0, 0, 10, 0xff, 0, 0],
    ] {
        assert!(authentication(bad).is_err(), "{bad:?}");
    }
    let Ok(Auth::Sasl(m)) = authentication(&[0, 0, 0, 10, 0]) else {
        panic!("empty list");
    };
    assert_eq!(m.iter().count(), 0);
}

#[test]
fn parse_hostile() {
    let ok = b"s\0SELECT $1\0\0\x01\0\0\0\x17";
    let msg = parse_msg(ok).unwrap();
    assert_eq!(msg.param_types.len(), 1);
    assert!(parse_msg(b"s\0q\0\xff\xff").is_err(), "negative count");
    assert!(parse_msg(b"s\0q\0\0\x02\0\0\0\x17").is_err(), "short oids");
    assert!(parse_msg(b"s\0q\0\0\0\0").is_err(), "trailing");
    assert!(parse_msg(b"s\0q\0\0").is_err(), "truncated count");
    assert!(parse_msg(b"s\0q").is_err());
    assert!(parse_msg(b"s\0q\0\x7f\xff").is_err(), "huge count");
}

#[test]
fn bind_describe_close() {
    assert_eq!(bind_names(b"p\0s\0\0\0\0\0\0\0"), Ok(("p", "s")));
    assert!(bind_names(b"p\0s").is_err());
    assert_eq!(describe_or_close(b"Pportal\0"), Ok((b'P', "portal")));
    assert!(describe_or_close(b"Xname\0").is_err());
    assert!(describe_or_close(b"S").is_err());
    assert!(describe_or_close(b"").is_err());
    assert!(describe_or_close(b"Sa\0b\0").is_err());
}

#[test]
fn query_password_sasl() {
    assert_eq!(query_text(b"\0"), Ok(""));
    assert!(query_text(b"SELECT").is_err());
    assert!(query_text(b"SELECT\0\0").is_err());
    assert_eq!(password(b"secret\0"), Ok(&b"secret"[..]));
    assert!(password(b"secret").is_err());
    assert!(password(b"a\0b\0").is_err());
    assert_eq!(
        sasl_initial_response(b"M\0\xff\xff\xff\xff"),
        Ok(("M", &b""[..]))
    );
    assert_eq!(
        sasl_initial_response(b"M\0\0\0\0\x02ab"),
        Ok(("M", &b"ab"[..]))
    );
    assert!(
        sasl_initial_response(b"M\0\0\0\0\x03ab").is_err(),
        "lying length"
    );
    assert!(
        sasl_initial_response(b"M\0\0\0\0\x01ab").is_err(),
        "trailing"
    );
    assert_eq!(
        sasl_initial_response(b"M\0\xff\xff\xff\xfe"),
        Err(ProtoError::BadLength(-2))
    );
    assert_eq!(
        sasl_initial_response(b"M\0\x7f\xff\xff\xff"),
        Err(ProtoError::Malformed("SASLInitialResponse"))
    );
}

#[test]
fn ready_and_complete() {
    assert_eq!(ready_for_query(b"E"), Ok(b'E'));
    assert!(ready_for_query(b"").is_err());
    assert!(ready_for_query(b"Q").is_err());
    assert_eq!(command_complete(b"INSERT 0 1\0"), Ok("INSERT 0 1"));
}

#[test]
fn every_prefix_of_valid_bodies_is_handled() {
    let bodies: [&[u8]; 4] = [
        b"s\0SELECT $1\0\0\x01\0\0\0\x17",
        b"SERROR\0C42P01\0Mx\0\0",
        b"SCRAM-SHA-256\0\0\0\0\x03abc",
        &[0, 0, 0, 10, b'S', b'C', 0, 0],
    ];
    for body in bodies {
        for cut in 0..=body.len() {
            let b = &body[..cut];
            let _ = (parse_msg(b), ErrorFields::new(b), sasl_initial_response(b));
            let _ = (authentication(b), bind_names(b), describe_or_close(b));
            let _ = (parameter_status(b), backend_key_data(b), password(b));
        }
    }
}
