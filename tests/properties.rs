//! Property tests of what faces the network: the codec (frame headers, frame iteration, the
//! startup packet, message views) never panics on any bytes and round-trips what the builders
//! write; the SCRAM server never panics on any client message, and SCRAM exchanges (pass-through
//! included) succeed for any password. Cases: proptest's default (256) or `PROPTEST_CASES`
//! (`benches/fuzz.sh` runs them long).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use bytes::BytesMut;
use pgsluice::auth::{scram_secret, verify_md5, verify_password, ScramClient, ScramServer, Secret};
use pgsluice::proto::{builders, frame_len, parse_initial, startup, views, Frames, Initial};
use proptest::prelude::*;

/// Arbitrary bytes, biased towards plausible message tags and small lengths.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'Q'), Just(8u8), any::<u8>()],
            0..64
        ),
    ]
}

/// Text without NUL (the protocol cannot carry one).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

fn every_view(body: &[u8]) {
    let _ = views::ErrorFields::new(body).map(|f| f.iter().count());
    let _ = views::parameter_status(body);
    let _ = views::backend_key_data(body);
    let _ = views::ready_for_query(body);
    let _ = views::command_complete(body);
    let _ = views::authentication(body);
    let _ = views::parse_msg(body).map(|p| p.param_types.count());
    let _ = views::bind_names(body);
    let _ = views::describe_or_close(body);
    let _ = views::query_text(body);
    let _ = views::password(body);
    let _ = views::sasl_initial_response(body);
    let _ = views::data_row(body);
}

proptest! {
    #[test]
    fn frame_len_is_sane(buf in bytes(), max in 0usize..100_000) {
        match frame_len(&buf, max) {
            Ok(Some(n)) => {
                let announced = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                prop_assert!(n >= 5 && n <= max);
                prop_assert_eq!(n as i64, i64::from(announced) + 1);
            }
            Ok(None) => prop_assert!(buf.len() < 5),
            Err(_) => prop_assert!(buf.len() >= 5),
        }
    }

    #[test]
    fn frames_cover_the_input(buf in bytes(), max in 5usize..1024) {
        let mut frames = Frames::new(&buf, max);
        let mut bodies = 0;
        for f in frames.by_ref() {
            match f {
                Ok((_, body)) => {
                    every_view(body);
                    bodies += body.len() + 5;
                }
                Err(_) => break,
            }
        }
        prop_assert_eq!(bodies, frames.consumed());
        prop_assert_eq!(frames.consumed() + frames.remainder().len(), buf.len());
    }

    #[test]
    fn views_never_panic(body in bytes()) {
        every_view(&body);
    }

    #[test]
    fn parse_initial_never_panics(buf in bytes(), max in 0usize..10_000) {
        if let Ok(Some((_, used))) = parse_initial(&buf, max) {
            prop_assert!(used <= buf.len());
        }
    }

    #[test]
    fn startup_round_trips(params in proptest::collection::vec(("[a-z_]{1,12}", text()), 0..6)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let pkt = startup::startup_message(&refs);
        let (initial, used) = parse_initial(&pkt, 100_000).unwrap().unwrap();
        prop_assert_eq!(used, pkt.len());
        match initial {
            Initial::Startup { params: got, .. } => prop_assert_eq!(got, params),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn builders_round_trip(a in text(), b in text(), key in any::<(i32, i32)>(),
                           data in proptest::collection::vec(any::<u8>(), 0..64),
                           row in proptest::collection::vec(proptest::option::of(text()), 0..8),
                           oids in proptest::collection::vec(any::<u32>(), 0..8)) {
        let mut out = BytesMut::new();
        builders::query(&mut out, &a);
        builders::parameter_status(&mut out, &a, &b);
        builders::backend_key_data(&mut out, key.0, key.1);
        builders::sasl_initial_response(&mut out, &a, &data);
        let cells: Vec<Option<&str>> = row.iter().map(|c| c.as_deref()).collect();
        builders::data_row(&mut out, &cells);
        builders::parse(&mut out, &a, &b, &oids);
        builders::bind_text(&mut out, &a, &b, &cells);
        builders::command_complete(&mut out, &b);
        let frames: Vec<(u8, &[u8])> = Frames::new(&out, 1 << 20).map(Result::unwrap).collect();
        prop_assert_eq!(frames.len(), 8);
        prop_assert_eq!(views::query_text(frames[0].1).unwrap(), a.as_str());
        prop_assert_eq!(views::parameter_status(frames[1].1).unwrap(), (a.as_str(), b.as_str()));
        prop_assert_eq!(views::backend_key_data(frames[2].1).unwrap(), key);
        prop_assert_eq!(views::sasl_initial_response(frames[3].1).unwrap(), (a.as_str(), &data[..]));
        let got: Vec<Option<&[u8]>> = views::data_row(frames[4].1).unwrap();
        let want: Vec<Option<&[u8]>> = row.iter().map(|c| c.as_deref().map(str::as_bytes)).collect();
        prop_assert_eq!(got, want);
        let p = views::parse_msg(frames[5].1).unwrap();
        prop_assert_eq!((p.name, p.query), (a.as_str(), b.as_str()));
        prop_assert_eq!(p.param_types.collect::<Vec<u32>>(), oids);
        prop_assert_eq!(views::bind_names(frames[6].1).unwrap(), (a.as_str(), b.as_str()));
        prop_assert_eq!(views::command_complete(frames[7].1).unwrap(), b.as_str());
    }

    #[test]
    fn scram_server_survives_any_client(first in bytes(), last in bytes(), valid_first in any::<bool>()) {
        let secret = scram_secret("pw", b"salt", 16);
        let mut server = ScramServer::new(&secret);
        let first = if valid_first { b"n,,n=,r=abcdef".to_vec() } else { first };
        let _ = server.client_first(&first);
        prop_assert!(server.client_final(&last).is_err());
        prop_assert!(server.client_key().is_none());
    }

    #[test]
    fn scram_round_trips_and_passes_through(password in "\\PC{0,24}", salt in proptest::collection::vec(any::<u8>(), 1..24)) {
        let secret = scram_secret(&password, &salt, 16);
        let mut server = ScramServer::new(&secret);
        let mut client = ScramClient::new(&password);
        let server_first = server.client_first(&client.client_first()).unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        let server_final = server.client_final(&client_final).unwrap();
        client.handle_server_final(&server_final).unwrap();
        let client_key = server.client_key().unwrap();
        // The keys the proof revealed log in to a server holding the same secret.
        let mut upstream = ScramServer::new(&secret);
        let mut relay = ScramClient::from_client_key(client_key, secret.server_key);
        let server_first = upstream.client_first(&relay.client_first()).unwrap();
        let relay_final = relay.handle_server_first(&server_first).unwrap();
        let server_final = upstream.client_final(&relay_final).unwrap();
        relay.handle_server_final(&server_final).unwrap();
        prop_assert!(verify_password(&Secret::Scram(secret.clone()), "u", password.as_bytes()));
        // A wrong password is refused.
        let mut server = ScramServer::new(&secret);
        let mut wrong = ScramClient::new(&format!("{password}x"));
        let server_first = server.client_first(&wrong.client_first()).unwrap();
        let wrong_final = wrong.handle_server_first(&server_first).unwrap();
        prop_assert!(server.client_final(&wrong_final).is_err());
    }

    #[test]
    fn md5_round_trips(password in "\\PC{0,24}", user in "[a-z]{1,12}", salt in any::<[u8; 4]>()) {
        let secret = Secret::Md5(pgsluice::auth::md5_hex(&password, &user));
        let inner = pgsluice::auth::md5_hex(&password, &user);
        let response = pgsluice::auth::md5_salted(&inner[3..], salt);
        prop_assert!(verify_md5(&secret, &user, salt, response.as_bytes()));
        prop_assert!(!verify_md5(&secret, &user, salt, b"md5nope"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The forwarder and the prepared-statement flow, driven sans-IO against scripted servers:
    /// no panic, well-formed output, bounded buffers, and PostgreSQL's answers (see
    /// `pgsluice::session::sansio::check`).
    #[test]
    fn forwarding_keeps_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        pgsluice::session::sansio::check(&pgsluice::session::sansio::Script::decode(&data));
    }
}
