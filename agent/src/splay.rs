//! `--splay SECS`: how long this host waits before it starts, so that a fabric's hosts do
//! not all hit the tracker, the origin and the control server in the same second.
//!
//! The delay is a hash of the deployment and the host, within the window: spread evenly
//! over a fleet, the same on a re-run of the same host (a retried agent does not get a new
//! lottery ticket), and different per deployment (not always the same hosts first). Salt's
//! splay executor works the same way over the minion id.

use std::time::Duration;

/// The delay of `host` in `deployment` within a window of `splay`.
pub fn delay(deployment: &str, host: &str, splay: Duration) -> Duration {
    let window = splay.as_millis() as u64;
    if window == 0 {
        return Duration::ZERO;
    }
    let mut h = blake3::Hasher::new();
    h.update(deployment.as_bytes());
    h.update(&[0]);
    h.update(host.as_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    Duration::from_millis(x % window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_within_the_window_stable_and_spread() {
        let w = Duration::from_secs(10);
        assert_eq!(delay("d", "h", Duration::ZERO), Duration::ZERO);
        assert_eq!(
            delay("d-1", "host-1", w),
            delay("d-1", "host-1", w),
            "stable"
        );
        let ms: Vec<u64> = (0..1000)
            .map(|i| delay("d-1", &format!("host-{i}"), w).as_millis() as u64)
            .collect();
        assert!(ms.iter().all(|&m| m < 10_000));
        // Ten one-second buckets of about 100 hosts each.
        let mut buckets = [0u32; 10];
        for m in &ms {
            buckets[(*m / 1000) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (60..=140).contains(&b)),
            "{buckets:?}"
        );
        assert_ne!(
            delay("d-1", "host-1", w),
            delay("d-2", "host-1", w),
            "another deployment, another order"
        );
    }
}
