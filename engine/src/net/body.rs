//! Reading an HTTP answer's body with a cap on the bytes actually received. A
//! `Content-Length` check alone misses chunked bodies (no length) and servers that send
//! more than they declared; this stops reading as soon as the cap is passed, so a hostile
//! or broken server costs at most `max` bytes of memory.

/// The whole body, or `Ok(None)` once more than `max` bytes arrived (the rest is not read).
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Option<bytes::Bytes>, reqwest::Error> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Ok(None);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server on loopback that answers with a chunked body of `len` bytes
    /// (no Content-Length), in 1 KiB chunks; returns its URL.
    fn chunked_server(len: usize) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/t", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let mut left = len;
            while left > 0 {
                let n = left.min(1024);
                let chunk = format!("{n:x}\r\n{}\r\n", "x".repeat(n));
                if s.write_all(chunk.as_bytes()).is_err() {
                    return; // the client stopped reading: what the cap is for
                }
                left -= n;
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        url
    }

    #[tokio::test]
    async fn a_chunked_body_is_capped_on_the_bytes_read() {
        let resp = reqwest::get(chunked_server(10 * 1024)).await.unwrap();
        assert_eq!(resp.content_length(), None, "chunked: no length to check");
        assert_eq!(read_capped(resp, 4096).await.unwrap(), None);

        let resp = reqwest::get(chunked_server(3000)).await.unwrap();
        let body = read_capped(resp, 4096)
            .await
            .unwrap()
            .expect("under the cap");
        assert_eq!(body.len(), 3000);
    }
}
