//! Unit tests of the pieces of `net` that need no relay; the RPC paths run end to end in
//! `tests/tests/net_rpc.rs` and `tests/tests/adversarial.rs`.

use std::time::Duration;

use super::driver::{ReconnectBackoff, relay_urls};

#[test]
fn a_relay_setting_may_list_the_instances_of_a_relay_cluster() {
    assert_eq!(relay_urls("ws://one:8080"), ["ws://one:8080"]);
    assert_eq!(
        relay_urls("ws://one:8080, ws://two:8080,,ws://three:8080 "),
        ["ws://one:8080", "ws://two:8080", "ws://three:8080"]
    );
}

#[test]
fn reconnect_waits_are_full_jitter_under_a_capped_exponential() {
    let minimum = Duration::from_millis(100);
    let maximum = Duration::from_secs(1);
    let steps = [100u64, 200, 400, 800, 1000, 1000, 1000];
    let mut firsts = Vec::new();
    for _ in 0..2000 {
        let mut backoff = ReconnectBackoff::new(minimum, maximum);
        for (attempt, step) in steps.iter().enumerate() {
            let delay = backoff.next_delay();
            assert!(
                delay < Duration::from_millis(*step),
                "attempt {attempt}: {delay:?}"
            );
            if attempt == 0 {
                firsts.push(delay.as_secs_f64());
            }
        }
    }
    // Uniform on [0, 100 ms): mean 50 ms, and both halves of the range are used.
    let mean = firsts.iter().sum::<f64>() / firsts.len() as f64;
    assert!((0.04..0.06).contains(&mean), "mean first wait {mean}");
    assert!(firsts.iter().any(|d| *d < 0.01));
    assert!(firsts.iter().any(|d| *d > 0.09));
}

#[test]
fn reset_starts_the_schedule_over() {
    let mut backoff = ReconnectBackoff::new(Duration::from_millis(100), Duration::from_secs(60));
    for _ in 0..10 {
        backoff.next_delay();
    }
    backoff.reset();
    assert!(backoff.next_delay() < Duration::from_millis(100));
}
