//! Polling with a caller-chosen timeout (in the spirit of kube-runtime's `await_condition`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// First pause between probes; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(50);
/// Longest pause between probes.
const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Calls `probe` until it yields `Some(value)`, an error, or `timeout` passes.
///
/// The probe runs at least once, then after pauses growing from 50 ms to 1 s. A probe still
/// running at the deadline is abandoned. Running out of time is [`Error::Timeout`] naming
/// `what` ("box web to be deleted"); a probe error is returned as is, at once.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let timed_out = || Error::Timeout {
        what: what.to_owned(),
        // Rounded up, so a sub-second timeout never reads "after 0s".
        seconds: timeout.as_millis().div_ceil(1000) as u64,
    };
    let mut interval = FIRST_INTERVAL;
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timed_out()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep_until((now + interval).min(deadline)).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_when_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let got = poll_until("three calls", Duration::from_secs(10), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((n == 3).then_some(n))
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn times_out_naming_what_it_waited_for() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let e = poll_until::<(), _, _>("box web to be deleted", Duration::from_secs(1), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        })
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "timed out after 1s waiting for box web to be deleted"
        );
        assert!(start.elapsed() >= Duration::from_secs(1));
        // Probes at 0, 50, 150, 350 and 750 ms: backing off, not a busy loop.
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=6).contains(&n), "{n} probes");
    }

    #[tokio::test]
    async fn abandons_a_hanging_probe_at_the_deadline() {
        let e = poll_until::<(), _, _>("a hung probe", Duration::from_millis(200), || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(None)
        })
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Timeout { seconds: 1, .. }), "{e}");
    }

    #[tokio::test]
    async fn probe_errors_end_the_wait() {
        let e = poll_until::<(), _, _>("x", Duration::from_secs(2), || async {
            Err(Error::Invalid("boom".into()))
        })
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
