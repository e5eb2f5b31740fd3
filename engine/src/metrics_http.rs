//! The programs' `--metrics ADDR` endpoint: a small HTTP/1.1 server that answers
//! `GET /metrics` with Prometheus text (made by the caller's `render`, e.g.
//! [`crate::session_stats::SessionStats::to_prometheus`]) and nothing else.
//!
//! Anyone who can reach the port can hold a connection, so everything is bounded
//! ([`Limits`]): connections at once (more are closed at accept, so the backlog never fills),
//! the time to send a request's headers (which is also the keep-alive idle time), and a
//! connection's whole life (a client that stops reading its answer is dropped). Bodies are
//! never read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Bounds of the metrics server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once; more are closed at once. Default 16 (a scraper or
    /// two, and a curl).
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, the wait for the next request
    /// on a kept-alive connection included. Default 5 s.
    pub header_timeout: Duration,
    /// Longest a connection lives, whatever it does. Default 60 s (scrapers reconnect).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves; connections in flight then
/// get `limits.header_timeout` to finish their request.
pub async fn run<F>(
    listener: TcpListener,
    limits: Limits,
    render: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "metrics accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics connection cap reached: closing");
            continue;
        };
        let render = render.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let answer = respond(&req, &*render);
            async move { Ok::<_, std::convert::Infallible>(answer) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            match tokio::time::timeout(limits.connection_timeout, conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection ended"),
                Err(_) => tracing::debug!(%peer, "metrics connection lived too long: closed"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(limits.header_timeout, graceful.shutdown()).await;
    Ok(())
}

fn respond(req: &Request<Incoming>, render: &dyn Fn() -> String) -> Response<String> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, proto::prometheus::CONTENT_TYPE, render())
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: this port serves GET /metrics\n".to_string(),
        ),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run(l, limits, || "x_total 1\n".to_string(), async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// Sends `req` and reads until the server closes (every request says `close`).
    async fn exchange(addr: std::net::SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .expect("the server answered and closed within 10 s")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_is_served_and_nothing_else() {
        let (addr, _stop) = start(Limits::default()).await;
        let ok = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("content-type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.ends_with("\r\n\r\nx_total 1\n"), "{ok}");
        let other = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = exchange(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("allow: GET, HEAD"), "{post}");
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_header_timeout() {
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /met").await.unwrap();
        let mut buf = Vec::new();
        // hyper answers 408 or just closes; either way the connection ends, well before 10 s.
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("the server closed a connection that never finished its headers")
            .unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        // The first holds the only slot (it sent nothing yet)...
        let _held = TcpStream::connect(addr).await.unwrap();
        // ...so the second is closed without an answer, while the first still waits.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut buf))
            .await
            .expect(
                "a connection over the cap was closed within 4 s (before the 5 s header timeout)",
            );
        assert!(
            r.is_err() || buf.is_empty(),
            "no answer over the cap: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
}
