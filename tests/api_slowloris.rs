//! Slowloris against the control API: 1,100 sockets that each send part of a request and
//! then one byte a second. Authenticated requests still succeed while they hang on, and the
//! server cuts each slow socket off after its header timeout instead of holding it forever.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Env, TOKEN};

const SLOW: usize = 1_100;

fn raise_own_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[test]
fn slow_clients_do_not_stop_the_api_and_are_cut_off() {
    raise_own_fd_limit();
    let env = Env::new(2, 1);
    let srv = env.serve_with_args(
        "127.0.0.1:0",
        &[],
        &["--http-header-timeout".into(), "3".into()],
    );
    let addr = srv.addr();
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut s = TcpStream::connect(&addr)
            .unwrap_or_else(|e| panic!("slow socket {i} could not connect: {e}"));
        s.write_all(b"GET /api/v1/deployments HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.push(s);
    }
    // One byte a second on every slow socket, until the test is done.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let socks: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            let mut socks = socks;
            while !stop.load(Ordering::Relaxed) {
                for s in &mut socks {
                    let _ = s.write_all(b"a");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // While they hang on, authenticated requests are answered promptly.
    for _ in 0..5 {
        let t = Instant::now();
        let (code, body) = srv.http("GET", "/api/v1/deployments", Some(TOKEN), None);
        assert_eq!(code, 200, "{body}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "an authenticated request took {:?} during the attack",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Each slow socket is closed by the server after its header timeout (3 s here), not
    // held: reading it ends (EOF or reset) well before our own 15 s read timeout.
    let t = Instant::now();
    for (i, s) in slow.iter_mut().enumerate().step_by(97) {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {} // EOF, or a 408 before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "slow socket {i} was still held open after {:?}: {e}",
                t.elapsed()
            ),
        }
    }
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    // And the server is still fine.
    let (code, _) = srv.http("GET", "/api/v1/deployments", Some(TOKEN), None);
    assert_eq!(code, 200);
}
