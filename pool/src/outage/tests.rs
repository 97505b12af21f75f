//! The outage rules under the paused clock.

use super::*;

fn link(now: Instant) -> OutageState {
    OutageState::new(Duration::from_millis(100), Duration::from_secs(2), 7, now)
}

#[tokio::test(start_paused = true)]
async fn attempts_are_free_until_the_first_failure_then_single_flight() {
    let now = Instant::now();
    let l = link(now);
    assert_eq!(l.admit(now).unwrap(), Admission::Free);
    assert_eq!(
        l.on_failure(now, "refused".into(), true),
        Transition::OutageBegan
    );
    assert_eq!(l.status(), DatabaseStatus::Disconnected);
    let later = now + Duration::from_millis(100);
    assert_eq!(l.admit(later).unwrap(), Admission::Trial);
    let refused = l.admit(later).unwrap_err();
    assert_eq!(refused.last_error, "refused");
    assert_eq!(refused.retry_in, Duration::ZERO, "a trial is in flight");
    let t = later + Duration::from_millis(5);
    assert_eq!(
        l.on_success(t, None),
        Transition::Recovered(Duration::from_millis(105))
    );
    assert_eq!(l.admit(t).unwrap(), Admission::Free);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_with_full_jitter_up_to_the_cap() {
    let now = Instant::now();
    let l = link(now);
    let mut worst = Duration::ZERO;
    for _ in 0..12 {
        l.on_failure(now, "x".into(), false);
        let wait = l.admit(now).err().map(|r| r.retry_in).unwrap_or_default();
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
        worst = worst.max(wait);
        l.release_trial();
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
    for _ in 0..8 {
        l.on_failure(now, "refused".into(), true);
    }
    l.on_probe(now, false);
    assert!(l.admit(now).is_err());
    l.on_probe(now, true);
    assert_eq!(l.status(), DatabaseStatus::Connecting);
    assert_eq!(l.admit(now).unwrap(), Admission::Trial);
}

/// A trial hung since before the server came back does not hold the recovery: a fresh
/// one is admitted at once, and the hung one failing later starts no new outage.
#[tokio::test(start_paused = true)]
async fn a_trial_hung_across_the_return_does_not_hold_the_recovery() {
    let (now, t) = (Instant::now(), Instant::now() + Duration::from_secs(3));
    let l = link(now);
    l.on_failure(now, "timed out".into(), false);
    l.on_probe(t, false);
    assert_eq!(l.admit(t).unwrap(), Admission::Trial, "the hung one");
    assert!(l.admit(t).is_err(), "single flight while out of reach");
    l.on_probe(t, true);
    assert_eq!(
        l.admit(t).unwrap(),
        Admission::Trial,
        "a fresh one at the return"
    );
    assert!(l.admit(t).is_err(), "and single flight again");
    assert!(matches!(l.on_success(t, None), Transition::Recovered(_)));
    assert_eq!(l.on_failure(t, "timed out".into(), false), Transition::None);
    assert_eq!(
        l.status(),
        DatabaseStatus::Connected,
        "the late failure is no outage"
    );
    // Only that one: the next failure is an outage again, and without a hung trial at
    // the return nothing is given up on.
    assert_eq!(
        l.on_failure(t, "refused".into(), true),
        Transition::OutageBegan
    );
    l.on_probe(t, true);
    assert!(matches!(l.on_success(t, None), Transition::Recovered(_)));
    assert_eq!(
        l.on_failure(t, "refused".into(), true),
        Transition::OutageBegan
    );
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
    l.on_success(began + Duration::from_secs(4), None);
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
