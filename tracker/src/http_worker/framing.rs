//! HTTP/1.1 framing: a request head parsed, a request read whole under its size bound, a
//! response encoded with its length. Chunked bodies are refused, not framed.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A request head and body, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    /// Path without the query.
    pub(crate) path: String,
    /// Raw query (after `?`), still percent-encoded.
    pub(crate) query: Vec<u8>,
    pub(crate) authorization: Option<String>,
    pub(crate) keep_alive: bool,
    pub(crate) body: Vec<u8>,
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(super) fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type,
            body,
        }
    }

    pub(super) fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: format!("{body}\n").into_bytes(),
        }
    }

    pub(super) fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or a malformed line.
    Malformed,
    /// Over the size bound.
    TooLarge,
}

/// Parses a request head (everything before the blank line). Returns the request without
/// its body and the declared body length.
pub(crate) fn parse_head(head: &[u8]) -> Result<(HttpRequest, usize), HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(HeadError::Malformed)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(HeadError::Malformed);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q.as_bytes().to_vec()),
        None => (target, Vec::new()),
    };
    if !path.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let mut req = HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization: None,
        keep_alive: http11,
        body: Vec::new(),
    };
    let mut content_length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| HeadError::Malformed)?;
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                req.keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                req.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not needed by any client of this API: refuse them rather
            // than mis-frame the next request.
            return Err(HeadError::Malformed);
        }
    }
    Ok((req, content_length))
}

/// Reads one request (head and body) into `buf`. `Ok(None)`: the peer closed before a
/// new request began. Returns the request and how many bytes of `buf` it used.
pub(super) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    body_limit: impl Fn(&HttpRequest) -> usize,
) -> std::io::Result<Option<Result<(HttpRequest, usize), HeadError>>> {
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= max {
            return Ok(Some(Err(HeadError::TooLarge)));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some(Err(HeadError::Malformed))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (mut req, body_len) = match parse_head(&buf[..head_end]) {
        Ok(x) => x,
        Err(e) => return Ok(Some(Err(e))),
    };
    let body_start = head_end + 4;
    let total = body_start.saturating_add(body_len);
    // An authenticated admin request may exceed `max` by its own body bound; anything
    // else must fit `max` whole.
    let admin_limit = body_limit(&req);
    let too_large = if admin_limit > max {
        body_len > admin_limit
    } else {
        total > max
    };
    if too_large {
        return Ok(Some(Err(HeadError::TooLarge)));
    }
    while buf.len() < total {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(Err(HeadError::Malformed)));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = buf[body_start..total].to_vec();
    Ok(Some(Ok((req, total))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_keep_alive_defaults() {
        let (r, len) = parse_head(b"GET /announce?a=1 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!(
            (r.path.as_str(), &r.query[..], r.keep_alive, len),
            ("/announce", &b"a=1"[..], true, 0)
        );
        let (r, _) = parse_head(b"GET / HTTP/1.0").unwrap();
        assert!(!r.keep_alive);
        let (r, len) = parse_head(
            b"POST /register HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 41\r\nConnection: close",
        )
        .unwrap();
        assert_eq!(
            (r.authorization.as_deref(), len, r.keep_alive),
            (Some("Bearer t"), 41, false)
        );
    }

    #[test]
    fn garbage_heads_are_malformed() {
        for bad in [
            &b""[..],
            b"GET",
            b"GET /x",
            b"GET /x HTTP/2",
            b"get /x HTTP/1.1",
            b"GET x HTTP/1.1",
            b"GET /x HTTP/1.1\r\nno colon",
            b"GET /x HTTP/1.1\r\nContent-Length: -1",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse_head(bad).map(|_| ()),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
    }
}
