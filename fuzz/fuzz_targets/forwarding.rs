//! Fuzz target: the forwarding path past the codec. The input decodes into a client script
//! (mostly well-formed extended and simple query traffic, sometimes raw bytes, cut into
//! chunks) and settings; the forwarder, the prepared-statement flow and the classifier run it
//! without IO against scripted servers (`pgsluice::session::sansio`), which check that
//! nothing panics or hangs, output is well-formed frames, buffers stay within
//! `max_inspected_message`, and the client sees PostgreSQL's answers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsluice::session::sansio::{check, Script};

fuzz_target!(|data: &[u8]| {
    check(&Script::decode(data));
});
