//! Issue 15: a panic in the control server's deployment driver is logged with the
//! component's name and ends `instream serve` with a non-zero exit and one `error:` line,
//! instead of leaving an API that accepts deployments nobody drives. The panic is injected
//! with `INSTREAM_TEST_PANIC=deploy-driver` (read in debug builds only) when the driver
//! loads the new deployment.

mod support;

use std::time::Duration;
use support::Env;

#[test]
fn a_panicking_deployment_driver_ends_serve_with_an_error() {
    let env = Env::new(1, 1);
    let mut srv = env.serve(
        "127.0.0.1:0",
        &[("INSTREAM_TEST_PANIC", "deploy-driver".into())],
    );
    env.publish(&srv, "app", "1");
    // The API stores the deployment and answers; the driver then panics loading it.
    let _ = env.cli(
        &srv,
        &["deploy", "-p", "app", "-v", "1", "-f", "*", "-H", "*"],
    );
    let status = srv.wait_exit(Duration::from_secs(30));
    let log = env.log();
    assert!(!status.success(), "exit status {status:?}; log:\n{log}");
    assert!(
        log.contains("task panicked") && log.contains("deployment driver"),
        "the panic is logged with the component's name:\n{log}"
    );
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains("deployment driver panicked: INSTREAM_TEST_PANIC=deploy-driver"),
        "one error line last:\n{log}"
    );
}
