//! A minimal HTTP/1.1 client for a client's Web API on the namespace's loopback (qBittorrent's
//! `/api/v2`): one request per connection (`Connection: close`), form or multipart bodies, a
//! cookie, a bounded read. The socket is made inside the namespace, where 127.0.0.1 is the
//! namespace's own loopback, not the test machine's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::netns;

/// An answer: status code, headers (names lowercased), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request body.
pub enum Body<'a> {
    None,
    /// `application/x-www-form-urlencoded`; values must need no escaping.
    Form(&'a [(&'a str, &'a str)]),
    /// `multipart/form-data`: text fields, then one file field (name, file name, bytes).
    Multipart {
        fields: &'a [(&'a str, &'a str)],
        file: (&'a str, &'a str, &'a [u8]),
    },
}

/// An answer larger than this is a broken server, not an API answer.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
const BOUNDARY: &str = "instream-matrix-boundary-7f3a";

/// One request to `addr` inside the namespace named `ns` with an optional `Cookie` header;
/// `Err` says what failed.
pub fn request(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Body,
) -> Result<Answer, String> {
    let timeout = Duration::from_secs(5);
    let mut sock = netns::enter_named(ns, move || TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .and_then(|()| sock.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set socket timeouts: {e}"))?;

    let (content_type, payload) = match body {
        Body::None => (None, Vec::new()),
        Body::Form(fields) => {
            let s: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                Some("application/x-www-form-urlencoded".to_string()),
                s.join("&").into_bytes(),
            )
        }
        Body::Multipart { fields, file } => {
            let mut b = Vec::new();
            for (k, v) in fields {
                write!(
                    b,
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .unwrap();
            }
            let (name, filename, bytes) = file;
            write!(
                b,
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
            )
            .unwrap();
            b.extend_from_slice(bytes);
            write!(b, "\r\n--{BOUNDARY}--\r\n").unwrap();
            (Some(format!("multipart/form-data; boundary={BOUNDARY}")), b)
        }
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes())
        .and_then(|()| sock.write_all(&payload))
        .map_err(|e| format!("send {method} {path} to {addr}: {e}"))?;

    // Read until the body is whole by its Content-Length (qBittorrent keeps the connection
    // open whatever `Connection: close` says) or, without one, until the server closes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = header_end(&raw) {
            let answer = parse(&raw).map_err(|e| format!("{method} {path}: {e}"))?;
            if let Some(len) = answer
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                && raw.len() >= end + 4 + len
            {
                return Ok(answer);
            }
        }
        if raw.len() > MAX_ANSWER {
            return Err(format!(
                "the answer to {method} {path} exceeds {MAX_ANSWER} bytes"
            ));
        }
        let n = sock
            .read(&mut buf)
            .map_err(|e| format!("read the answer to {method} {path}: {e}"))?;
        if n == 0 {
            return parse(&raw).map_err(|e| format!("{method} {path}: {e}"));
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn header_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse(raw: &[u8]) -> Result<Answer, String> {
    let end = header_end(raw).ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_split_into_status_headers_and_body() {
        let a = parse(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=abc; path=/\r\ncontent-length: 3\r\n\r\nOk.xx",
        )
        .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("set-cookie"), Some("SID=abc; path=/"));
        assert_eq!(a.text(), "Ok.");
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
