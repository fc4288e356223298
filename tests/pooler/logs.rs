//! The pooler's log output when stderr is a file: text lines without ANSI escapes, and with
//! `log_format = "json"` one JSON object per line with the documented field names.

use crate::util::{rt, scalar, ExtraPooler, Fixture};
use libtest_mimic::Failed;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("logs_text_to_a_file_has_no_colour", text_plain),
    ("logs_json_lines_parse_with_fields", json_lines),
];

/// Connects, runs one query, disconnects; then waits until `log` holds a `disconnect` line.
fn one_session(p: &ExtraPooler) -> Result<Vec<u8>, Failed> {
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(&p.url(), tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        assert_eq!(scalar(&c, "select 41 + 1").await?, "42");
        drop(c);
        let _ = task.await;
        Ok::<_, tokio_postgres::Error>(())
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = p.log();
        if String::from_utf8_lossy(&log).contains("disconnect") || Instant::now() > deadline {
            return Ok(log);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text_plain(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start_logging(fx, "", "", "info");
    let log = one_session(&p)?;
    let text = String::from_utf8_lossy(&log);
    for want in ["pooler listening", "login", "disconnect"] {
        assert!(text.contains(want), "no {want:?} line in:\n{text}");
    }
    assert!(
        !log.contains(&0x1b),
        "an ANSI escape in a log written to a file:\n{text}"
    );
    // The session's span names its fields consistently.
    for field in ["client_id=", "peer=", "database=app", "user=app"] {
        assert!(text.contains(field), "no {field:?} in:\n{text}");
    }
    Ok(())
}

fn json_lines(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start_logging(fx, "log_format = \"json\"", "", "info");
    let log = one_session(&p)?;
    let text = String::from_utf8_lossy(&log);
    assert!(!log.contains(&0x1b), "an ANSI escape in JSON logs:\n{text}");
    let mut messages = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e}): {line}"))?;
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "no {key:?} in {line}");
        }
        let message = v["message"].as_str().unwrap_or_default().to_string();
        if message == "login" || message == "disconnect" {
            let span = &v["span"];
            assert!(span["client_id"].is_number(), "client_id in {line}");
            assert!(
                span["peer"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("127.0.0.1:")),
                "peer in {line}"
            );
            assert_eq!(span["database"], "app", "database in {line}");
            assert_eq!(span["user"], "app", "user in {line}");
        }
        messages.push(message);
    }
    for want in ["pooler listening", "login", "disconnect"] {
        assert!(
            messages.iter().any(|m| m == want),
            "no {want:?} in {messages:?}"
        );
    }
    Ok(())
}
