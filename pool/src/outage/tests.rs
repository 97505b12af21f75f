//! The outage rules under the paused clock.

use super::*;

fn link(now: Instant) -> OutageState {
    OutageState::new(
        Duration::from_millis(100),
        Duration::from_secs(2),
        Duration::from_millis(200),
        Duration::from_secs(1),
        7,
        now,
    )
}

/// A failure of an attempt admitted at `now`.
fn fail(l: &OutageState, now: Instant, error: &str, unreachable: bool) -> Transition {
    let ticket = l.admit(now).unwrap_or_else(|_| {
        // Refused: fail a free-standing attempt, as one admitted earlier would.
        l.on_probe(now, now, true);
        l.admit(now).expect("due after the probe")
    });
    l.on_failure(ticket, now, error.into(), unreachable)
}

#[tokio::test(start_paused = true)]
async fn attempts_are_free_until_the_first_failure_then_single_flight() {
    let now = Instant::now();
    let l = link(now);
    let first = l.admit(now).unwrap();
    assert_eq!(first.admission, Admission::Free);
    assert_eq!(
        l.on_failure(first, now, "refused".into(), true),
        Transition::OutageBegan
    );
    assert_eq!(l.status(), DatabaseStatus::Disconnected);
    let later = now + Duration::from_millis(100);
    l.on_probe(later, later, true);
    let trial = l.admit(later).unwrap();
    assert_eq!(trial.admission, Admission::Trial);
    let refused = l.admit(later).unwrap_err();
    assert_eq!(refused.last_error, "refused");
    assert_eq!(refused.attempts_in_flight, 1, "a trial is in flight");
    let t = later + Duration::from_millis(5);
    assert_eq!(
        l.on_success(trial, t),
        Transition::Recovered(Duration::from_millis(105))
    );
    let free = l.admit(t).unwrap();
    assert_eq!(free.admission, Admission::Free);
    l.release(free);
    assert_eq!(l.attempts_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_with_full_jitter_up_to_the_cap() {
    let now = Instant::now();
    let l = link(now);
    let mut worst = Duration::ZERO;
    let mut ticket = l.admit(now).unwrap();
    for _ in 0..12 {
        l.on_failure(ticket, now, "x".into(), false);
        let wait = l.admit(now).err().map(|r| r.retry_in).unwrap_or_default();
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
        worst = worst.max(wait);
        ticket = l.admit(now + Duration::from_secs(3)).unwrap();
    }
    assert!(
        worst > Duration::from_millis(400),
        "the backoff grew: {worst:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn reachability_makes_the_next_attempt_due_at_once() {
    let now = Instant::now();
    let l = link(now);
    let mut t = now;
    for _ in 0..8 {
        t += Duration::from_millis(100);
        fail(&l, t, "refused", true);
    }
    t += Duration::from_millis(100);
    l.on_probe(t, t, false);
    assert!(l.admit(t).is_err());
    l.on_probe(t, t, true);
    assert_eq!(l.status(), DatabaseStatus::Connecting);
    assert_eq!(l.admit(t).unwrap().admission, Admission::Trial);
}

/// The probe's news admits at most one attempt per outage probe interval: a listener that
/// accepts and then resets every connection is not tried at the pace of acquires' probes.
#[tokio::test(start_paused = true)]
async fn attempts_the_probe_admits_are_paced() {
    let now = Instant::now();
    let l = link(now);
    fail(&l, now, "reset", true);
    let t = now + Duration::from_millis(10);
    l.on_probe(t, t, true);
    let trial = l.admit(t).unwrap();
    l.on_failure(trial, t, "reset".into(), true);
    let u = t + Duration::from_millis(10);
    l.on_probe(u, u, true);
    assert!(l.admit(u).is_err(), "10 ms after the last one");
    let v = t + Duration::from_millis(100);
    l.on_probe(v, v, true);
    assert_eq!(l.admit(v).unwrap().admission, Admission::Trial);
}

/// A trial hung since before the server came back does not hold the recovery: a fresh
/// one is admitted at once, and the hung one failing later starts no new outage.
#[tokio::test(start_paused = true)]
async fn a_trial_hung_across_the_return_does_not_hold_the_recovery() {
    let (now, t) = (Instant::now(), Instant::now() + Duration::from_secs(3));
    let l = link(now);
    fail(&l, now, "timed out", true);
    l.on_probe(t, t, false);
    l.on_probe(t, t, true);
    let hung = l.admit(t).unwrap();
    assert_eq!(hung.admission, Admission::Trial, "the hung one");
    l.on_probe(t, t, false);
    assert!(l.admit(t).is_err(), "single flight while out of reach");
    let t = t + Duration::from_millis(100);
    l.on_probe(t, t, true);
    let fresh = l.admit(t).unwrap();
    assert_eq!(
        fresh.admission,
        Admission::Trial,
        "a fresh one at the return"
    );
    assert!(l.admit(t).is_err(), "and single flight again");
    assert!(matches!(l.on_success(fresh, t), Transition::Recovered(_)));
    let late = t + Duration::from_secs(1);
    assert_eq!(
        l.on_failure(hung, late, "timed out".into(), true),
        Transition::None
    );
    assert_eq!(
        l.status(),
        DatabaseStatus::Connected,
        "the late failure is no outage"
    );
    // An attempt started after the success failing is an outage again.
    assert_eq!(fail(&l, late, "refused", true), Transition::OutageBegan);
}

/// An attempt without an answer for `hang_after` begins an outage; then attempts start one
/// per `hang_after` while they hang (hedges), and only while the probe reaches the server.
#[tokio::test(start_paused = true)]
async fn hung_attempts_begin_an_outage_and_are_hedged_one_at_a_time() {
    let now = Instant::now();
    let l = link(now);
    let a = l.admit(now).unwrap();
    let b = l.admit(now + Duration::from_millis(10)).unwrap();
    assert_eq!(
        (a.admission, b.admission),
        (Admission::Free, Admission::Free)
    );
    assert!(!l.overdue(now + Duration::from_millis(199), "db:5432"));
    let t = now + Duration::from_millis(200);
    assert!(l.overdue(t, "db:5432"), "the oldest hung for hang_after");
    assert!(!l.overdue(t, "db:5432"), "once");
    assert_eq!(l.status(), DatabaseStatus::Disconnected);
    assert!(
        l.snapshot(t)
            .last_error
            .unwrap()
            .contains("no answer within 200ms")
    );
    let refused = l.admit(t).unwrap_err();
    assert_eq!(refused.attempts_in_flight, 2);
    assert_eq!(l.next_due(), Some(now + Duration::from_millis(210)));
    let hedge = l.admit(now + Duration::from_millis(210)).unwrap();
    assert_eq!(hedge.admission, Admission::Trial);
    assert!(
        l.admit(now + Duration::from_millis(409)).is_err(),
        "one per hang_after"
    );
    // Out of reach: no hedges; the probe's return admits one at once.
    let u = now + Duration::from_millis(500);
    l.on_probe(u, u, false);
    assert!(l.admit(u + Duration::from_secs(1)).is_err());
    assert_eq!(l.next_due(), None, "only the probe can tell");
    l.on_probe(u, u + Duration::from_secs(1), true);
    let fresh = l.admit(u + Duration::from_secs(1)).unwrap();
    assert!(matches!(
        l.on_success(fresh, u + Duration::from_secs(1)),
        Transition::Recovered(_)
    ));
    for hung in [a, b, hedge] {
        assert_eq!(
            l.on_failure(hung, u + Duration::from_secs(2), "timed out".into(), true),
            Transition::None
        );
    }
    assert_eq!(l.attempts_in_flight(), 0);
}

/// hang_after follows the last connect's duration: a slow but answering server is not
/// taken for a silent one.
#[tokio::test(start_paused = true)]
async fn hang_after_is_four_times_the_last_connect() {
    let now = Instant::now();
    let l = link(now);
    let a = l.admit(now).unwrap();
    l.on_success(a, now + Duration::from_millis(300));
    assert_eq!(l.hang_after(), Duration::from_millis(1200));
    let t = now + Duration::from_millis(301);
    let b = l.admit(t).unwrap();
    assert!(!l.overdue(t + Duration::from_millis(1199), "db"));
    assert!(l.overdue(t + Duration::from_millis(1200), "db"));
    l.release(b);
}

/// Overlapping probes: a result older than the last one recorded changes nothing.
#[tokio::test(start_paused = true)]
async fn a_late_probe_result_does_not_undo_a_newer_one() {
    let now = Instant::now();
    let l = link(now);
    fail(&l, now, "timed out", true);
    let (older, newer) = (
        now + Duration::from_millis(100),
        now + Duration::from_millis(200),
    );
    l.on_probe(newer, newer, true);
    l.on_probe(older, newer + Duration::from_millis(900), false);
    assert_eq!(l.status(), DatabaseStatus::Connecting, "still reachable");
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_publishes_exact_figures() {
    let now = Instant::now();
    let l = link(now);
    let s = l.snapshot(now);
    assert_eq!((s.last_probe_latency, s.outage_duration), (None, None));
    assert_eq!((s.last_error, s.consecutive_failures), (None, 0));
    l.on_round_trip(Duration::from_millis(3));
    assert_eq!(
        l.snapshot(now).last_probe_latency,
        Some(Duration::from_millis(3))
    );
    l.on_round_trip(Duration::ZERO);
    assert_eq!(l.snapshot(now).last_probe_latency, Some(Duration::ZERO));
    assert!(
        !l.sessions_answer(),
        "outside an outage there is nothing to answer for"
    );
    let began = now + Duration::from_secs(2);
    l.on_silent(began, "refused".into());
    assert!(
        !l.sessions_answer(),
        "the open sessions are the silent ones"
    );
    let s = l.snapshot(began + Duration::from_secs(3));
    assert_eq!(s.outage_duration, Some(Duration::from_secs(3)));
    assert_eq!(s.last_error.as_deref(), Some("refused"));
    assert_eq!(s.consecutive_failures, 1);
    l.on_round_trip(Duration::from_millis(1));
    assert!(l.sessions_answer(), "a round trip during the outage");
    let ticket = l.admit(began + Duration::from_secs(4)).unwrap();
    l.on_success(ticket, began + Duration::from_secs(4));
    assert!(!l.sessions_answer());
    assert_eq!(
        l.snapshot(began + Duration::from_secs(5)).outage_duration,
        None
    );
}

#[test]
fn the_jitter_is_uniform_and_replays_from_its_seed() {
    // xorshift64* as Vigna defines it (shifts 12, 25, 27; multiplier 0x2545F4914F6CDD1D),
    // values computed independently from its definition.
    let mut seven = 7u64;
    let reference: Vec<f64> = (0..3).map(|_| next_f64(&mut seven)).collect();
    assert_eq!(
        reference,
        [0.8202466665411988, 0.9282901565044228, 0.08934959275158794]
    );
    let mut a = 7u64;
    let mut b = 7u64;
    let draws: Vec<f64> = (0..4000).map(|_| next_f64(&mut a)).collect();
    assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
    assert_eq!(
        draws[..8],
        (0..8).map(|_| next_f64(&mut b)).collect::<Vec<_>>()[..]
    );
    // Each tenth of [0, 1) gets its share (400 expected; 5 standard deviations apart).
    let mut tenths = [0usize; 10];
    for x in &draws {
        tenths[(x * 10.0) as usize] += 1;
    }
    assert!(tenths.iter().all(|n| (300..=500).contains(n)), "{tenths:?}");
    let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|x| x.to_bits()).collect();
    assert_eq!(distinct.len(), draws.len());
}
