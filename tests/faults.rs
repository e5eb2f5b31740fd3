//! Control-plane faults of issue 10 not covered elsewhere: the control server SIGKILLed and
//! restarted on the same database and address during a canary gate, twice: once while the
//! canary hosts are still installing (their agents finish and report while it is down), once
//! while the deployment awaits promotion. The deployment resumes where it was (awaiting
//! promotion, nothing past the canaries dispatched), `promote` completes it, and the events
//! table holds exactly the events the agents numbered (their logs list each one), once.

mod support;

use instream::deploy::model::{HostEvent, HostState};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{Env, Server, wait_for};

const T: Duration = Duration::from_secs(90);
const HOSTS: [&str; 4] = ["host-1", "host-2", "host-3", "host-4"];

/// Sequence numbers `host`'s agents logged as sent (`status seq=N ...`, one line per event
/// queued for the control server), across every run on that host.
fn logged_seqs(env: &Env, host: &str) -> BTreeSet<u64> {
    env.lines_of(host, "agent.log")
        .iter()
        .filter_map(|l| l.split(" status seq=").nth(1))
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("a numeric seq in the agent log")
        })
        .collect()
}

fn stored_events(env: &Env, id: &str, host: &str) -> Vec<HostEvent> {
    let store = instream::store::Store::open(&env.path().join("instream.db"), false)
        .expect("open the store");
    store.events_of(id, host).expect("read the host's events")
}

/// Restarts `instream serve` on `addr` and waits until its driver has reloaded `id`.
fn restart(env: &Env, addr: &str, agent_env: &[(&str, String)], resumed_before: usize) -> Server {
    let srv = env.serve(addr, agent_env);
    assert_eq!(srv.addr(), addr, "restarted on the same address");
    wait_for(T, "the restarted server to resume the deployment", || {
        (env.log().matches("resuming deployment").count() > resumed_before).then_some(())
    });
    srv
}

#[test]
fn server_sigkilled_during_canary_gate_resumes_awaiting_promotion_and_loses_no_event() {
    let env = Env::fleet(4, 2);
    let gate = env.path().join("gate");
    // The product's start hook waits for this file: the canaries stay "installing".
    let agent_env = [("INSTREAM_HOOK_GATE", gate.display().to_string())];
    let srv = env.serve("127.0.0.1:0", &agent_env);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &[
            "-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*", "--canary", "1",
        ],
    );
    let canaries = ["host-1", "host-2"];
    let rest = ["host-3", "host-4"];
    wait_for(T, "both canaries installing (held in start)", || {
        let out = env.ok(&srv, &["status", "-t", &id, "-m", "pending"]);
        (out.lines().filter(|l| l.starts_with("installing ")).count() == 2).then_some(())
    });

    // Kill 1: in the canary step. The canaries finish while the server is down; their
    // agents keep retrying the events.
    let addr = srv.addr();
    srv.kill9();
    std::fs::write(&gate, "go").unwrap();
    wait_for(
        T,
        "the canaries' start hooks done while the server is down",
        || {
            canaries
                .iter()
                .all(|h| env.history(h) == ["1"])
                .then_some(())
        },
    );
    let srv = restart(&env, &addr, &agent_env, 0);
    let v = env.wait_state(&srv, &id, "awaiting_promotion", T);
    assert_eq!(v["progress"]["success"], 2, "both canaries succeeded: {v}");
    for h in rest {
        assert_eq!(env.current(h), None, "{h} waits for promotion");
    }

    // Kill 2: at the gate. What the store held then is what it holds after the restart.
    srv.kill9();
    let at_gate: Vec<Vec<HostEvent>> = canaries
        .iter()
        .map(|h| stored_events(&env, &id, h))
        .collect();
    let srv = restart(&env, &addr, &agent_env, 1);
    let v = env.status_json(&srv, &id);
    assert_eq!(
        v["state"], "awaiting_promotion",
        "the restarted server still waits at the gate: {v}"
    );
    assert_eq!(v["progress"]["success"], 2, "{v}");
    for h in rest {
        assert_eq!(
            env.current(h),
            None,
            "{h} was not dispatched by the restart"
        );
    }
    for (h, before) in canaries.iter().zip(&at_gate) {
        assert_eq!(
            &stored_events(&env, &id, h),
            before,
            "{h}: the restart changed no stored event"
        );
    }

    let out = env.ok(&srv, &["promote", "-t", &id]);
    assert_eq!(
        out.trim(),
        format!("{{\"status\":\"promoted\",\"id\":\"{id}\"}}")
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["success"], 4, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    drop(srv);

    for h in HOSTS {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h}");
        assert_eq!(
            env.history(h),
            ["1"],
            "{h} was activated once: no step was dispatched twice"
        );
        let evs = stored_events(&env, &id, h);
        let stored: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        let sent = logged_seqs(&env, h);
        assert!(sent.len() >= 4, "{h}: its agent logged {sent:?}");
        assert_eq!(
            stored,
            sent.iter().copied().collect::<Vec<_>>(),
            "{h}: the store holds every event the agent sent, once"
        );
        assert_eq!(
            evs.iter().filter(|e| e.state == HostState::Success).count(),
            1,
            "{h}: one success"
        );
        assert_eq!(evs.last().unwrap().state, HostState::Success, "{h}");
        eprintln!("{h}: {} events sent, {} stored", sent.len(), stored.len());
    }
    support::reliability_row(
        "control server SIGKILLed during a canary gate (canaries installing, then awaiting promotion), restarted",
        "the deployment resumes awaiting promotion with nothing else dispatched; promote completes it, 100% success",
        "nothing: every event the agents sent stored once, none changed by a restart",
    );
}
