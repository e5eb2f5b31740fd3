//! The control server killed with SIGKILL mid-deployment and restarted on the same database
//! and address: status is intact, the deployment goes on to its next fabric and finishes,
//! and no host event is lost (real agents retry their reports while the server is down).

mod support;

use instream::deploy::model::HostState;
use std::time::Duration;
use support::{Env, wait_for};

const T: Duration = Duration::from_secs(90);

#[test]
fn sigkilled_server_resumes_and_loses_no_event() {
    let env = Env::fleet(6, 2);
    let gate = env.path().join("gate");
    // The product's start hook waits for this file: f1's hosts stay "installing".
    let agent_env = [("INSTREAM_HOOK_GATE", gate.display().to_string())];
    let srv = env.serve("127.0.0.1:0", &agent_env);
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*"]);

    // f1's agents (host-1, -3, -5) report up to "installing", then wait in the hook.
    wait_for(T, "f1 hosts installing", || {
        let out = env.ok(&srv, &["status", "-t", &id, "-m", "pending", "-f", "f1"]);
        (out.lines().filter(|l| l.starts_with("installing ")).count() == 3).then_some(())
    });
    let before = env.ok(&srv, &["status", "-t", &id, "-m", "pending"]);
    let addr = srv.addr();
    srv.kill9();

    // Agents finish while the server is down: their reports are retried until it is back.
    std::fs::write(&gate, "go").unwrap();
    wait_for(
        T,
        "f1 hosts' start hooks done while the server is down",
        || {
            ["host-1", "host-3", "host-5"]
                .iter()
                .all(|h| env.history(h) == ["1"])
                .then_some(())
        },
    );
    let srv = env.serve(&addr, &agent_env);
    assert_eq!(srv.addr(), addr);
    let after = env.ok(&srv, &["status", "-t", &id, "-m", "pending"]);
    // Whatever was recorded before the kill is still there (states only move forward).
    for line in before.lines().filter(|l| l.starts_with("installing")) {
        let host = line.rsplit(' ').next().unwrap();
        assert!(
            after.contains(line) || !after.contains(host),
            "{host} lost its state: before {before:?} after {after:?}"
        );
    }
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["success"], 6, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    assert!(
        env.log().contains("resuming deployment"),
        "restart resumed the driver"
    );
    drop(srv);

    let store = instream::store::Store::open(&env.path().join("instream.db"), false).unwrap();
    for h in 1..=6 {
        let host = format!("host-{h}");
        let evs = store.events_of(&id, &host).unwrap();
        let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            seqs.first()
                .map_or(vec![], |&f| (f..f + seqs.len() as u64).collect::<Vec<_>>()),
            "{host}: every event the agent numbered arrived, once"
        );
        assert!(seqs.len() >= 4, "{host}: {seqs:?}");
        assert_eq!(evs.last().unwrap().state, HostState::Success, "{host}");
    }
    support::reliability_row(
        "control server SIGKILLed mid-deployment, restarted on the same database",
        "the deployment resumes at its step and finishes",
        "nothing: every host event stored exactly once",
    );
}
