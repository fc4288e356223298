//! Integration tests of the pooler against a real PostgreSQL cluster: one cluster and one
//! pooler process are shared by every test of this binary (libtest-mimic harness), started by
//! the first test that needs them and stopped after the last.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admin;
mod auth_leaks;
mod auth_query;
mod basic;
mod console;
mod control;
mod exits;
mod fencing;
mod front_door;
mod hostile;
mod import;
mod logs;
mod ops;
mod prepared;
mod reload;
mod routing;
mod security;
mod server_tls;
mod state;
mod timeouts;
mod transparency;
mod transparency_cases;
mod transparency_py;
mod upstream;
mod util;
mod wildcard;
mod workers;

use libtest_mimic::{Arguments, Failed, Trial};
use std::sync::{Arc, OnceLock};
use util::Fixture;

/// A test body: gets the shared fixture, panics or errs on failure.
type Body = fn(&Fixture) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let shared: Arc<OnceLock<Fixture>> = Arc::new(OnceLock::new());
    let tests: Vec<(&str, Body)> = [
        basic::TESTS,
        control::TESTS,
        state::TESTS,
        front_door::TESTS,
        timeouts::TESTS,
        prepared::TESTS,
        security::TESTS,
        server_tls::TESTS,
        auth_query::TESTS,
        admin::TESTS,
        auth_leaks::TESTS,
        ops::TESTS,
        routing::TESTS,
        fencing::TESTS,
        reload::TESTS,
        transparency::TESTS,
        exits::TESTS,
        transparency_py::TESTS,
        wildcard::TESTS,
        hostile::TESTS,
        logs::TESTS,
        import::TESTS,
        console::TESTS,
        upstream::TESTS,
        workers::TESTS,
    ]
    .concat();
    let trials = tests
        .into_iter()
        .map(|(name, body)| {
            let shared = shared.clone();
            Trial::test(name, move || body(shared.get_or_init(Fixture::start)))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(shared);
    routing::teardown();
    conclusion.exit();
}
