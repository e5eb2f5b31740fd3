//! `deploy --batch N --splay SECS` with real hosts (tracker, origin, `instream-peer
//! deploy`): a fabric step runs as batches of at most N hosts, each dispatched only once
//! the batch before it is complete, and each agent waits its own splay delay (within the
//! window) before it starts; the deployment still ends at 100 %.

mod support;

use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(90);

#[test]
fn batches_start_one_after_another_and_agents_spread_their_starts() {
    let env = Env::fleet(5, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &[
            "-p", "app", "-v", "1", "-f", "f1", "-H", "*", "--batch", "2", "--splay", "2",
        ],
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["total"], 5, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "-m", "progress"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let f1 = serde_json::json!({"kind": "fabric", "fabric": "f1"});
    assert_eq!(
        v["steps"],
        serde_json::json!([f1, f1, f1]),
        "5 hosts in batches of 2: {v}"
    );

    // One job per batch, of 2, 2 and 1 hosts; each dispatched after every host of the batch
    // before it had succeeded.
    let db = rusqlite::Connection::open(env.path().join("instream.db")).unwrap();
    let jobs: Vec<(i64, i64, i64)> = db
        .prepare("SELECT step, hosts, created_at FROM jobs WHERE deployment = ?1 ORDER BY step")
        .unwrap()
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        jobs.iter().map(|j| (j.0, j.1)).collect::<Vec<_>>(),
        [(0, 2), (1, 2), (2, 1)],
        "{jobs:?}"
    );
    for w in jobs.windows(2) {
        let (step, _, _) = w[0];
        let (_, _, next_dispatched) = w[1];
        let done: i64 = db
            .query_row(
                "SELECT MAX(e.received_at) FROM events e JOIN hosts h
                   ON h.deployment = e.deployment AND h.host = e.host
                 WHERE e.deployment = ?1 AND h.step = ?2 AND e.state = 'success'",
                rusqlite::params![&id, step],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            next_dispatched >= done,
            "batch {} dispatched at {next_dispatched}, before batch {step} finished at {done}",
            step + 1
        );
    }

    // Every agent waited its own delay within the 2 s window.
    let logs = env.agent_logs();
    let waits: Vec<u64> = logs
        .lines()
        .filter(|l| l.contains("splay: waiting before the start"))
        .filter_map(|l| l.split("splay_ms=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 5, "one splay wait per agent:\n{logs}");
    assert!(waits.iter().all(|&w| w < 2000), "{waits:?}");
    let mut distinct = waits.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 4,
        "delays should differ per host: {waits:?}"
    );

    // The API refuses a batch of 0 hosts and a splay over a day.
    let e = env.fails(
        &srv,
        &[
            "deploy", "-p", "app", "-v", "1", "-f", "f1", "-H", "*", "--batch", "0",
        ],
    );
    assert!(e.contains("batch must be at least 1 host"), "{e}");
    let e = env.fails(
        &srv,
        &[
            "deploy", "-p", "app", "-v", "1", "-f", "f1", "-H", "*", "--splay", "90000",
        ],
    );
    assert!(e.contains("longer than 86400 s"), "{e}");
}
