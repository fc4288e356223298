//! Fuzz target: everything a client's bytes reach before it is authenticated. The first byte
//! picks a split point; the input then goes through the startup packet parser, the frame
//! iterator and every message view, and its two halves through the SCRAM server as
//! client-first and client-final messages (after a valid first message on odd selectors).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsluice::auth::{scram_secret, ScramServer};
use pgsluice::proto::{frame_len, parse_initial, views, Frames};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let _ = parse_initial(rest, 10_000);
    let _ = frame_len(rest, 1 << 20);
    for frame in Frames::new(rest, 1 << 20) {
        let Ok((_, body)) = frame else { break };
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
    let split = usize::from(selector >> 1).min(rest.len());
    let (first, last) = rest.split_at(split);
    let secret = scram_secret("pw", b"salt", 1);
    let mut server = ScramServer::new(&secret);
    let first = if selector & 1 == 1 {
        &b"n,,n=,r=fuzz"[..]
    } else {
        first
    };
    let _ = server.client_first(first);
    assert!(
        server.client_final(last).is_err(),
        "a random proof was accepted"
    );
});
