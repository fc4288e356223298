//! The shipped monitoring: `monitoring/alerts.yml` passes `promtool check rules` and its unit
//! tests (`promtool test rules monitoring/alerts_test.yml`), and every expression of the rules
//! and of the Grafana dashboard (`monitoring/grafana/pgsluice.json`) is valid PromQL that
//! uses only metric names the pooler (`src/daemon/metrics.rs`) or the agent
//! (`src/agent/metrics.rs`) export.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs promtool; a missing promtool fails with the package to install.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "promtool cannot run ({e}): install Debian's `prometheus` package \
             (apt-get install prometheus; scripts/test.sh does it)"
        ),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `pgsluice_*` tokens of `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("pgsluice_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Every metric name the daemons export, from their sources' string literals (histograms
/// also as `_bucket`, `_sum`, `_count`).
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in ["src/daemon/metrics.rs", "src/agent/metrics.rs"] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for part in text.split('"').skip(1).step_by(2) {
            if part.starts_with("pgsluice_") && metric_names(part).len() == 1 && !part.contains(' ')
            {
                names.insert(part.to_string());
            }
        }
    }
    let histograms = [
        "pgsluice_transaction_duration_seconds",
        "pgsluice_wait_duration_seconds",
    ];
    for h in histograms {
        assert!(names.contains(h), "{h} is no longer exported");
        for s in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{s}"));
        }
    }
    assert!(names.len() > 40, "too few names found: {names:?}");
    names
}

fn assert_known(what: &str, used: &BTreeSet<String>, known: &BTreeSet<String>) {
    assert!(!used.is_empty(), "{what} uses no pgsluice metric");
    let unknown: Vec<_> = used.difference(known).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics nobody exports: {unknown:?}"
    );
}

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    let (ok, out) = promtool(&["check", "rules", "monitoring/alerts.yml"]);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "monitoring/alerts_test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_use_exported_metrics() {
    let text = std::fs::read_to_string(root().join("monitoring/alerts.yml")).unwrap();
    assert_known("monitoring/alerts.yml", &metric_names(&text), &exported());
    for alert in [
        "PgsluiceClientsWaiting",
        "PgsluiceWaitTimeHigh",
        "PgsluicePoolSaturated",
        "PgsluiceServerErrors",
        "PgsluiceFailoverHappened",
        "PgsluiceNodeFenced",
        "PgsluiceReplicaLagHigh",
        "PgsluiceCandidateWarmthLow",
        "PgsluiceAgentWithoutLeader",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "no {alert} rule"
        );
        let tests = std::fs::read_to_string(root().join("monitoring/alerts_test.yml")).unwrap();
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test"
        );
    }
}

/// Every `expr` and variable query of the dashboard.
fn dashboard_exprs(d: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

#[test]
fn dashboard_parses_and_uses_exported_metrics() {
    let path = root().join("monitoring/grafana/pgsluice.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("the dashboard is valid JSON");
    assert_eq!(d["uid"], "pgsluice-overview");
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 30, "{} expressions", exprs.len());
    let known = exported();
    for e in &exprs {
        assert_known(
            &format!("dashboard expression {e:?}"),
            &metric_names(e),
            &known,
        );
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            assert_known(&format!("variable {}", v["name"]), &metric_names(q), &known);
        }
    }
    // Both daemons are covered.
    let all = exprs.join("\n");
    assert!(all.contains("pgsluice_clients") && all.contains("pgsluice_agent_acting"));
    // Each expression is valid PromQL: promtool checks them as recording rules.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard_rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$instance", ".*").replace("$agent_job", ".*");
        text.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "dashboard expressions:\n{out}");
}

#[test]
fn metric_name_scanner() {
    let n =
        metric_names("rate(pgsluice_errors_total{kind=\"x\"}[5m]) / my_pgsluice_x + Pgsluice_y");
    assert_eq!(n.into_iter().collect::<Vec<_>>(), ["pgsluice_errors_total"]);
    assert!(Path::new(&root().join("monitoring/alerts_test.yml")).exists());
}
