//! One peer connection after its handshake: a reader task that frames messages off the
//! socket, and a writer task that coalesces queued messages into few write syscalls.
//! Generic over the byte stream's two halves ([`AsyncRead`] + [`AsyncWrite`]): a TCP
//! socket's split halves ([`crate::net::tcp`]) or one bidirectional QUIC stream's receive
//! and send sides ([`crate::net::quic`]) carry the same framing.
//!
//! Reader: bytes go into one `BytesMut`; each complete frame is split off and frozen, so a
//! `piece` message's data is a zero-copy slice of the read buffer ([`Message::check`] then
//! [`Message::parse`]: "not enough bytes yet" is not an error). All frames parsed from one
//! read are sent to the torrent task as one [`NetEvent::Messages`] batch over a bounded
//! channel: a torrent task that falls behind stops the readers, and TCP flow control then
//! slows the peers down, instead of memory growing.
//!
//! Writer: the torrent task hands it `Vec<Message>` batches over an unbounded channel (the
//! torrent task must never wait on one slow peer); the bytes queued per peer are counted in
//! [`PeerWriter::queued_bytes`] so the owner can drop a peer that stops reading. Small
//! messages are encoded into one buffer; a `piece` message's 13-byte header goes there too
//! and its data is written from its own `Bytes` with a vectored write, never copied.
//!
//! MSE/PE with an RC4 payload: each half owns an `Option<Rc4>`. The reader decrypts each
//! read's new bytes in place before framing; the writer gathers a batch into one buffer
//! and encrypts it there (piece data is shared, so that copy is unavoidable). Without RC4
//! both are one `None` check per read or batch: the plaintext path is unchanged.
//!
//! Either task ending (EOF, error, protocol violation, or [`PeerWriter::close`]) cancels the
//! other; the reader then reports [`NetEvent::Closed`] exactly once. A cancelled writer still
//! writes what was queued before the close, as far as the stream takes it without waiting,
//! then shuts its side down.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use proto::mse::{Ciphers, Rc4};
use proto::torrent::{PeerInfo, PeerKey};
use proto::wire::{MAX_MSG_LEN, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, trace};

/// Read buffer growth step: 256 KiB holds 16 blocks, so one read syscall usually yields a
/// batch of several `piece` messages at 400 Mbit/s.
const READ_CHUNK: usize = 256 * 1024;
/// Reserve another chunk once less than this is free (a read into a tiny tail is a wasted
/// syscall).
const MIN_READ_SPARE: usize = 32 * 1024;
/// Stop coalescing a write batch past this many bytes, so one peer's burst does not delay the
/// first bytes on the wire.
const MAX_WRITE_BATCH: usize = 1024 * 1024;
/// Most buffers per `writev` (Linux IOV_MAX is 1024; 64 covers a 1 MiB batch of 16 KiB blocks
/// with their headers).
const MAX_IOVECS: usize = 64;

/// Which transport a connection runs on, with what it measured of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// TCP; `min_rtt` is the kernel's smallest round-trip sample so far (TCP_INFO), taken
    /// when the BitTorrent handshakes were done.
    Tcp {
        /// `None` where TCP_INFO is not available.
        min_rtt: Option<std::time::Duration>,
    },
    /// A QUIC stream.
    Quic,
}

/// What connection tasks tell their torrent task.
#[derive(Debug)]
pub enum NetEvent {
    /// A handshake completed; `writer` is how to send to the peer.
    Connected {
        /// Key allocated for the connection.
        peer: PeerKey,
        /// Handshake facts.
        info: PeerInfo,
        /// The write side.
        writer: PeerWriter,
        /// The transport.
        via: Via,
    },
    /// Messages from one read, in order.
    Messages {
        /// Sender.
        peer: PeerKey,
        /// The messages.
        msgs: Vec<Message>,
    },
    /// Payload bytes of `piece` messages the writer has handed to the socket (one event per
    /// write batch that carried any): the torrent machine's upload bound counts them until
    /// then (`Input::UploadWritten`).
    Written {
        /// The peer.
        peer: PeerKey,
        /// Piece payload bytes written.
        bytes: u64,
    },
    /// The connection is gone (sent once, after the last `Messages`).
    Closed {
        /// The peer.
        peer: PeerKey,
        /// Why, if it was an error.
        error: Option<String>,
    },
    /// An outgoing connection failed before the handshake completed.
    ConnectFailed {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// An outgoing connection reached ourselves (the handshake carried our peer id).
    ReachedOurselves {
        /// The address dialled.
        addr: SocketAddr,
    },
}

/// Exact wire size of a message as [`Message::encode`] writes it, for queue accounting.
pub fn wire_len(msg: &Message) -> usize {
    match msg {
        Message::KeepAlive | Message::Unknown { .. } => 4,
        Message::Choke
        | Message::Unchoke
        | Message::Interested
        | Message::NotInterested
        | Message::HaveAll
        | Message::HaveNone => 5,
        Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 9,
        Message::Port(_) => 7,
        Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 17,
        Message::Bitfield(b) => 5 + b.len(),
        Message::Piece { data, .. } => 13 + data.len(),
        Message::Extended { payload, .. } => 6 + payload.len(),
    }
}

/// The torrent task's handle on one connection's writer.
#[derive(Debug)]
pub struct PeerWriter {
    tx: mpsc::UnboundedSender<Vec<Message>>,
    queued: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

impl PeerWriter {
    /// Queues a batch; never waits. Returns false if the connection is already gone.
    pub fn send(&self, msgs: Vec<Message>) -> bool {
        let bytes: usize = msgs.iter().map(wire_len).sum();
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send(msgs).is_err() {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Closes the connection (both tasks stop; the reader reports [`NetEvent::Closed`]).
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

impl Drop for PeerWriter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the reader and writer tasks of an established connection and announces it to the
/// torrent task with [`NetEvent::Connected`]. `leftover` holds bytes read past the
/// handshake (already decrypted); `ciphers` the RC4 states of an MSE RC4 stream. Returns
/// when the connection is over.
pub async fn run(
    stream: tokio::net::TcpStream,
    leftover: BytesMut,
    ciphers: Option<Ciphers>,
    peer: PeerKey,
    info: PeerInfo,
    events: mpsc::Sender<NetEvent>,
    parent: &CancellationToken,
) {
    let via = Via::Tcp {
        min_rtt: crate::net::tcp::min_rtt(&stream),
    };
    let (rd, wr) = stream.into_split();
    run_halves(rd, wr, leftover, ciphers, peer, info, via, events, parent).await
}

/// [`run`] over any pair of stream halves (a QUIC stream's receive and send sides).
#[allow(clippy::too_many_arguments)] // the same facts as `run`, with the stream in halves
pub async fn run_halves<R, W>(
    rd: R,
    wr: W,
    leftover: BytesMut,
    ciphers: Option<Ciphers>,
    peer: PeerKey,
    info: PeerInfo,
    via: Via,
    events: mpsc::Sender<NetEvent>,
    parent: &CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cancel = parent.child_token();
    let (decrypt, encrypt) = match ciphers {
        Some(c) => (Some(c.decrypt), Some(c.encrypt)),
        None => (None, None),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let writer = PeerWriter {
        tx,
        queued: queued.clone(),
        cancel: cancel.clone(),
    };
    let span = tracing::debug_span!("peer", addr = %info.addr, key = peer.0);
    if events
        .send(NetEvent::Connected {
            peer,
            info,
            writer,
            via,
        })
        .await
        .is_err()
    {
        return; // torrent gone
    }
    let wcancel = cancel.clone();
    let wevents = events.clone();
    tokio::spawn(
        async move {
            if let Err(e) = write_loop(wr, encrypt, rx, queued, &wcancel, (peer, wevents)).await {
                debug!(error = %e, "write failed");
            }
            wcancel.cancel();
        }
        .instrument(span.clone()),
    );
    let error = read_loop(rd, decrypt, leftover, peer, &events, &cancel)
        .instrument(span)
        .await
        .err();
    cancel.cancel();
    let _ = events.send(NetEvent::Closed { peer, error }).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut decrypt: Option<Rc4>,
    mut buf: BytesMut,
    peer: PeerKey,
    events: &mpsc::Sender<NetEvent>,
    cancel: &CancellationToken,
) -> Result<(), String> {
    loop {
        let mut msgs = Vec::new();
        loop {
            match Message::check(&buf, MAX_MSG_LEN) {
                Ok(Some(n)) => {
                    let mut frame = buf.split_to(n).freeze();
                    frame.advance(4);
                    msgs.push(Message::parse(frame).map_err(|e| e.to_string())?);
                }
                Ok(None) => {
                    // Make room for the whole pending frame (its length is bounded by check).
                    if buf.len() >= 4 {
                        let need =
                            4 + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        buf.reserve(need.saturating_sub(buf.len()));
                    }
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if !msgs.is_empty() {
            trace!(n = msgs.len(), "received");
            if events
                .send(NetEvent::Messages { peer, msgs })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        if buf.capacity() - buf.len() < MIN_READ_SPARE {
            buf.reserve(READ_CHUNK);
        }
        let start = buf.len();
        let n = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = rd.read_buf(&mut buf) => r.map_err(|e| e.to_string())?,
        };
        if n == 0 {
            return Ok(()); // EOF
        }
        if let Some(c) = &mut decrypt {
            c.apply(&mut buf[start..]);
        }
    }
}

/// Buffers waiting to be written, in order; the first may be partly written.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Outbox {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("advance within outbox");
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Encodes `msgs` into `out`: small messages and piece headers into `small`, piece data as
/// their own chunks. Returns the piece payload bytes.
fn encode_batch(msgs: Vec<Message>, small: &mut BytesMut, out: &mut Outbox) -> u64 {
    let mut payload = 0;
    for msg in msgs {
        match msg {
            Message::Piece { index, begin, data } => {
                payload += data.len() as u64;
                Message::encode_piece_header(index, begin, data.len() as u32, small);
                out.push(small.split().freeze());
                out.push(data);
            }
            other => other.encode(small),
        }
    }
    payload
}

/// Replaces the outbox's chunks by one buffer holding them encrypted, in order.
fn encrypt_outbox(out: &mut Outbox, cipher: &mut Rc4) {
    let mut joined = BytesMut::with_capacity(out.len);
    for c in out.chunks.drain(..) {
        joined.extend_from_slice(&c);
    }
    cipher.apply(&mut joined);
    out.len = 0;
    out.push(joined.freeze());
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut encrypt: Option<Rc4>,
    mut rx: mpsc::UnboundedReceiver<Vec<Message>>,
    queued: Arc<AtomicUsize>,
    cancel: &CancellationToken,
    (peer, events): (PeerKey, mpsc::Sender<NetEvent>),
) -> std::io::Result<()> {
    let mut small = BytesMut::with_capacity(4096);
    let mut out = Outbox::default();
    loop {
        // The queue before the close: what was queued before a close (a final reject or
        // have) still goes out, and a closed writer stops once the queue is empty.
        let first = tokio::select! {
            biased;
            b = rx.recv() => match b { Some(b) => b, None => break },
            _ = cancel.cancelled() => break,
        };
        let mut payload = encode_batch(first, &mut small, &mut out);
        // Coalesce whatever else is already queued.
        while out.len + small.len() < MAX_WRITE_BATCH {
            match rx.try_recv() {
                Ok(b) => payload += encode_batch(b, &mut small, &mut out),
                Err(_) => break,
            }
        }
        out.push(small.split().freeze());
        if let Some(c) = &mut encrypt {
            encrypt_outbox(&mut out, c);
        }
        let batch_len = out.len;
        while out.len > 0 {
            let slices: Vec<IoSlice<'_>> = out
                .chunks
                .iter()
                .take(MAX_IOVECS)
                .map(|c| IoSlice::new(c))
                .collect();
            // A write that can go now goes; one that waits (a peer that stopped reading)
            // gives way to a close.
            let n = tokio::select! {
                biased;
                r = wr.write_vectored(&slices) => r?,
                _ = cancel.cancelled() => return Ok(()),
            };
            drop(slices);
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            out.advance(n);
        }
        queued.fetch_sub(batch_len, Ordering::Relaxed);
        if payload > 0 {
            // Bounded channel: waits only while the torrent task is behind on peer events.
            let written = NetEvent::Written {
                peer,
                bytes: payload,
            };
            tokio::select! {
                biased;
                r = events.send(written) => if r.is_err() { return Ok(()) },
                _ = cancel.cancelled() => return Ok(()),
            }
        }
        if small.capacity() < 1024 {
            small.reserve(4096);
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::wire::BlockSpec;

    #[test]
    fn batch_encoding_equals_message_encoding_and_keeps_piece_data_uncopied() {
        let data = Bytes::from(vec![7u8; 16384]);
        let msgs = vec![
            Message::Unchoke,
            Message::Piece {
                index: 1,
                begin: 0,
                data: data.clone(),
            },
            Message::Have(3),
            Message::Request(BlockSpec {
                index: 2,
                begin: 16384,
                len: 16384,
            }),
        ];
        let mut expected = BytesMut::new();
        for m in &msgs {
            m.encode(&mut expected);
        }
        let mut small = BytesMut::new();
        let mut out = Outbox::default();
        encode_batch(msgs, &mut small, &mut out);
        out.push(small.split().freeze());
        assert!(
            out.chunks.iter().any(|c| c.as_ptr() == data.as_ptr()),
            "piece data was copied"
        );
        let joined: Vec<u8> = out.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(joined, &expected[..]);
        assert_eq!(out.len, expected.len());
    }

    #[test]
    fn wire_len_is_exact_for_every_message() {
        let spec = BlockSpec {
            index: 1,
            begin: 2,
            len: 3,
        };
        let all = [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(9),
            Message::Bitfield(Bytes::from_static(b"\xff\x80")),
            Message::Request(spec),
            Message::Piece {
                index: 0,
                begin: 0,
                data: Bytes::from_static(b"xyz"),
            },
            Message::Cancel(spec),
            Message::Port(6881),
            Message::Suggest(1),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(spec),
            Message::AllowedFast(4),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
            Message::Unknown { id: 99 },
        ];
        for m in all {
            let mut b = BytesMut::new();
            m.encode(&mut b);
            assert_eq!(wire_len(&m), b.len(), "{m:?}");
        }
    }

    #[test]
    fn an_encrypted_batch_is_the_keystream_over_the_plain_encoding() {
        let msgs = || {
            vec![
                Message::Have(3),
                Message::Piece {
                    index: 1,
                    begin: 0,
                    data: Bytes::from(vec![9u8; 1000]),
                },
            ]
        };
        let mut plain = BytesMut::new();
        for m in msgs() {
            m.encode(&mut plain);
        }
        let mut small = BytesMut::new();
        let mut out = Outbox::default();
        encode_batch(msgs(), &mut small, &mut out);
        out.push(small.split().freeze());
        encrypt_outbox(&mut out, &mut Rc4::new(b"key"));
        assert_eq!(out.chunks.len(), 1);
        assert_eq!(out.len, plain.len());
        let mut back = out.chunks[0].to_vec();
        Rc4::new(b"key").apply(&mut back);
        assert_eq!(back, &plain[..]);
    }

    #[test]
    fn outbox_advance_crosses_chunks() {
        let mut o = Outbox::default();
        o.push(Bytes::from_static(b"abc"));
        o.push(Bytes::from_static(b"defg"));
        o.advance(4);
        assert_eq!(o.len, 3);
        assert_eq!(&o.chunks[0][..], b"efg");
    }
}
