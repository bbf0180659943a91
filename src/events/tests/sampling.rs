//! `EVENTS_SAMPLE_RATE`: deterministic per (user, flag).

use super::*;

// ---- sampling ----------------------------------------------------------------------

/// The users whose `flag` evaluation was recorded, out of `users` evaluated.
async fn sampled(rate: &str, flag: &str, users: impl Iterator<Item = String>) -> HashSet<String> {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_SAMPLE_RATE", rate)], &sink);
    let mut evaluated = 0;
    for user in users {
        ask(&rig, &user, &[flag]);
        evaluated += 1;
    }
    rig.events.flush().await;
    let stats = rig.events.stats();
    assert_eq!(stats.recorded + stats.sampled_out, evaluated);
    let kept: HashSet<String> = fields(&sink.accepted(), "user_id").into_iter().collect();
    assert_eq!(kept.len() as u64, stats.recorded);
    kept
}

#[tokio::test]
async fn sampling_is_deterministic_per_user_and_flag_and_close_to_the_rate() {
    const USERS: usize = 20_000;
    let on = sampled("0.25", "on", users(0..USERS).into_iter()).await;
    let share = on.len() as f64 / USERS as f64;
    assert!((0.23..=0.27).contains(&share), "{share}");
    // The same pairs, in another order, in another pipeline: the same decisions.
    assert_eq!(sampled("0.25", "on", users(0..USERS).into_iter().rev()).await, on);
    // Per flag, not per user: another flag picks a near-independent quarter.
    let off = sampled("0.25", "off", users(0..USERS).into_iter()).await;
    let both = on.intersection(&off).count() as f64 / USERS as f64;
    assert!((0.25 * 0.25 - 0.015..=0.25 * 0.25 + 0.015).contains(&both), "{both}");
}

#[tokio::test]
async fn sample_rate_zero_records_nothing_and_one_records_everything() {
    assert!(sampled("0", "on", users(0..200).into_iter()).await.is_empty());
    assert_eq!(sampled("1", "on", users(0..200).into_iter()).await.len(), 200);
}
