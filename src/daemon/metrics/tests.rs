//! Unit tests of the pooler's collector: the exposition it renders and the declared families.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::backend::Target;
use crate::config::from_str;

const CONFIG: &str = crate::config::fixtures::TWO_NODE_CLUSTER;

fn text(o: Families) -> String {
    TextEncoder::new().encode_to_string(&o.out).unwrap()
}

#[test]
fn histogram_is_cumulative_in_seconds() {
    const F: Family = family("x_seconds", Kind::Histogram, "x", &["a"]);
    let mut o = Families::default();
    o.family(&F);
    let h = crate::pool::hist::Histogram::default();
    h.observe(50);
    h.observe(300);
    o.histogram(&[("a", "b\"c")], &h.snapshot());
    let t = text(o);
    assert!(
        t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.0001\"} 1\n"),
        "{t}"
    );
    assert!(
        t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"0.0005\"} 2\n"),
        "{t}"
    );
    assert!(
        t.contains("x_seconds_bucket{a=\"b\\\"c\",le=\"+Inf\"} 2\n"),
        "{t}"
    );
    assert!(t.contains("x_seconds_sum{a=\"b\\\"c\"} 0.00035\n"), "{t}");
    assert!(t.contains("x_seconds_count{a=\"b\\\"c\"} 2\n"), "{t}");
}

#[test]
fn counters_and_gauges_keep_their_type_and_integer_values() {
    let mut o = Families::default();
    o.family(&f::LOGINS);
    o.sample(&[], 12.0);
    o.family(&f::CLIENTS);
    o.sample(&[("state", "idle")], 3.0);
    let t = text(o);
    assert!(t.contains("# TYPE pgsluice_logins_total counter\npgsluice_logins_total 12\n"));
    assert!(
        t.contains("# HELP pgsluice_clients Client connections by state"),
        "{t}"
    );
    assert!(t.contains("# TYPE pgsluice_clients gauge\npgsluice_clients{state=\"idle\"} 3\n"));
}

/// A scrape of a backend with pools: every family it shows is declared with its type, every
/// declared family with values shows, labels in the declared order (checked per sample).
#[test]
fn every_rendered_family_is_declared() {
    let config = Arc::new(from_str(CONFIG, "t").unwrap());
    let ctx = Backend::new(config.clone(), HashMap::new());
    for (db, target) in [("direct", Target::Primary), ("app", Target::Standby("b"))] {
        let d = config.database(db).unwrap();
        assert!(ctx.pool(&d, "u", target).is_some(), "{db}");
    }
    let m = Metrics::new(ctx).unwrap();
    let t = m.render();
    let mut shown = Vec::new();
    for line in t.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut w = line.split(' ').skip(2);
        let (name, kind) = (w.next().unwrap(), w.next().unwrap());
        let decl = FAMILIES.iter().find(|f| f.name == name);
        let decl = decl.unwrap_or_else(|| panic!("{name} is not declared"));
        let want = format!("{:?}", decl.kind).to_lowercase();
        assert_eq!(kind, want, "{name}");
        shown.push(name.to_string());
    }
    // What discovery saw of the nodes shows once it probed them (not here).
    let without_values = [
        "pgsluice_node_role",
        "pgsluice_node_lag_bytes",
        "pgsluice_node_lag_seconds",
        "pgsluice_node_banned",
    ];
    for f in FAMILIES
        .iter()
        .filter(|f| !without_values.contains(&f.name))
    {
        assert!(
            shown.iter().any(|s| s == f.name),
            "{} missing:\n{t}",
            f.name
        );
    }
    assert!(
        t.contains("pgsluice_pool_size{database=\"app\",user=\"u\",node=\"b\",role=\"standby\"}"),
        "{t}"
    );
    assert!(t.contains("pgsluice_node_primary{node=\"b\"} 0\n"), "{t}");
}
