//! Plans parsed and refused.

use super::spec::*;
use std::time::Duration;

#[test]
fn the_issue_s_example_parses_as_written() {
    let plan = Plan::parse(
        r#"
[[fault]]
at = "1s"
duration = "2s"
kind = "down"

[[fault]]
at = "4s"
duration = "2s"
kind = "latency"
stream = "downstream"
attributes = { latency = 300, jitter = 50 }
"#,
    )
    .unwrap();
    assert_eq!(plan.faults.len(), 2);
    assert_eq!(plan.faults[0].at, Duration::from_secs(1));
    assert!(matches!(plan.faults[0].what, What::Matrix(f) if f.name == "down"));
    let What::Toxic(t) = &plan.faults[1].what else {
        panic!("{:?}", plan.faults[1].what)
    };
    assert_eq!(t.kind.attributes()["latency"], 300);
    assert_eq!(t.kind.attributes()["jitter"], 50);
    assert_eq!(plan.faults[1].line, 7);
    assert_eq!(plan.end(), Duration::from_secs(6));
}

#[test]
fn every_and_count_repeat_a_fault() {
    let plan = Plan::parse(
        "[[fault]]\nat = \"1s\"\nduration = \"200ms\"\nkind = \"down\"\nevery = \"500ms\"\ncount = 4\n",
    )
    .unwrap();
    let starts: Vec<u128> = plan.faults.iter().map(|f| f.at.as_millis()).collect();
    assert_eq!(starts, [1000, 1500, 2000, 2500]);
    assert_eq!(plan.end(), Duration::from_millis(2700));
}

#[test]
fn every_problem_is_listed_with_its_line() {
    let err = Plan::parse(
        r#"
[[fault]]
at = "soon"
duration = "2s"
kind = "lava"

[[fault]]
at = "1s"
duration = "1s"
kind = "latency"
attributes = { latency = -3 }

[[fault]]
at = "1s"
duration = "1s"
kind = "down"
every = "100ms"
count = 3
"#,
    )
    .unwrap_err();
    let lines: Vec<usize> = err.problems.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 2, 7, 13], "{err}");
    let text = err.to_string();
    assert!(text.contains("line 2: at = \"soon\""), "{text}");
    assert!(
        text.contains("kind = \"lava\" is neither a toxic type"),
        "{text}"
    );
    assert!(text.contains("line 7: kind = \"latency\""), "{text}");
    assert!(
        text.contains("line 13: every = 100ms is shorter than duration"),
        "{text}"
    );
}

#[test]
fn overlapping_faults_that_cannot_coexist_are_refused() {
    let err = Plan::parse(
        "[[fault]]\nat = \"1s\"\nduration = \"3s\"\nkind = \"down\"\n\n\
         [[fault]]\nat = \"2s\"\nduration = \"1s\"\nkind = \"flapping\"\n\n\
         [[fault]]\nat = \"2s\"\nduration = \"1s\"\nkind = \"latency\"\n",
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].0, 6);
    assert!(err.problems[0].1.contains("the proxy's switch"), "{err}");
    // A latency beside a down is fine; two latencies downstream at once are not, upstream
    // and downstream are.
    assert!(
        Plan::parse(
            "[[fault]]\nat = \"0s\"\nduration = \"2s\"\nkind = \"latency\"\n\
             [[fault]]\nat = \"1s\"\nduration = \"2s\"\nkind = \"latency\"\nstream = \"upstream\"\n"
        )
        .is_ok()
    );
    assert!(
        Plan::parse(
            "[[fault]]\nat = \"0s\"\nduration = \"2s\"\nkind = \"latency\"\n\
             [[fault]]\nat = \"1s\"\nduration = \"2s\"\nkind = \"latency\"\n"
        )
        .is_err()
    );
}

#[test]
fn syntax_errors_unknown_fields_and_empty_plans_say_where() {
    let err =
        Plan::parse("[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"down\"\nspeed = 3\n")
            .unwrap_err();
    assert_eq!(err.problems[0].0, 5, "{err}");
    assert!(err.problems[0].1.contains("unknown field `speed`"), "{err}");
    let err = Plan::parse("[[fault]\n").unwrap_err();
    assert_eq!(err.problems[0].0, 1, "{err}");
    let err = Plan::parse("").unwrap_err();
    assert!(err.to_string().contains("no [[fault]]"), "{err}");
    let err = Plan::parse(
        "[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"down\"\nattributes = { x = 1 }\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("takes no attributes"), "{err}");
    let plan = Plan::parse(
        "[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"kernel_loss\"\nattributes = { percent = 30 }\n",
    )
    .unwrap();
    assert!(matches!(plan.faults[0].what, What::KernelLoss(30)));
    assert!(plan.faults[0].what.is_kernel());
}

#[test]
fn a_time_without_its_unit_or_a_missing_field_is_told_the_form_wanted() {
    let err = Plan::parse("[[fault]]\nat = 5\nkind = \"server_restart\"\n").unwrap_err();
    let text = err.to_string();
    for wanted in [
        // `at = 5`: the form wanted, not serde's "invalid type: integer 5, expected a string".
        "line 1: at = 5: a time is a string with its unit",
        "at = \"5s\"",
        // No duration: what it means, for a restart too.
        "duration is missing: how long the fault lasts",
        "how long the server stays stopped",
    ] {
        assert!(text.contains(wanted), "{wanted:?} in {text}");
    }
    assert!(
        !text.contains("invalid type") && !text.contains("missing field"),
        "{text}"
    );

    let err = Plan::parse("[[fault]]\nat = \"1s\"\nduration = \"1s\"\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("kind is missing: a toxic type (latency"),
        "{err}"
    );
}

#[test]
fn a_cluster_plan_takes_the_ha_faults() {
    let plan = Plan::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/ha-plan.toml"
    )))
    .unwrap();
    let cluster = plan.cluster.clone().unwrap();
    assert_eq!((cluster.nodes, cluster.sync), (3, true));
    assert_eq!(cluster.route, crate::postgres::HaRoute::Url);
    assert!(plan.faults.iter().all(|f| matches!(f.what, What::Ha(_))));
    let haproxy = Plan::parse(
        "[cluster]\nkind = \"patroni\"\nroute = \"haproxy\"\nsync = false\n\n[[fault]]\nat = \"1s\"\nduration = \"5s\"\nkind = \"ha_isolate_leader\"\n",
    )
    .unwrap();
    let options = haproxy.cluster.unwrap().options();
    assert_eq!(options.route, crate::postgres::HaRoute::Haproxy);
    assert!(!options.synchronous);
    assert!(options.check().is_ok());
}

#[test]
fn cluster_plans_are_refused_with_what_to_change() {
    let problems = |text: &str| Plan::parse(text).unwrap_err().problems;
    // An HA fault without a cluster.
    let p = problems("[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"ha_kill_leader\"\n");
    assert_eq!(p[0].0, 1);
    assert!(p[0].1.contains("add [cluster]"), "{p:?}");
    // A proxy fault with one.
    let p = problems(
        "[cluster]\nkind = \"patroni\"\n\n[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"down\"\n",
    );
    assert_eq!(p[0].0, 4);
    assert!(p[0].1.contains("use the ha_* faults"), "{p:?}");
    // The cluster's own mistakes, every one with the table's line.
    let p = problems(
        "[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"ha_switchover\"\n\n[cluster]\nkind = \"stolon\"\nnodes = 12\nroute = \"dns\"\n",
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().all(|(line, _)| *line == 6), "{p:?}");
    assert!(p.iter().any(|(_, m)| m.contains("\"patroni\"")));
    assert!(p.iter().any(|(_, m)| m.contains("give 2 to 9")));
    assert!(p.iter().any(|(_, m)| m.contains("\"haproxy\"")));
    // The asynchronous kill is the cluster's setting.
    let p = problems(
        "[cluster]\nkind = \"patroni\"\n\n[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"ha_kill_leader_async\"\n",
    );
    assert!(p[0].1.contains("sync = false"), "{p:?}");
    // An unknown field.
    let p = problems(
        "[cluster]\nkind = \"patroni\"\nttl = 5\n\n[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"ha_switchover\"\n",
    );
    assert!(p[0].1.contains("ttl"), "{p:?}");
}
