//! MSE/PE on a TCP stream: drives the sans-IO machines of [`proto::mse`] over a socket
//! until the encrypted handshake is done, and hands back what it established (torrent,
//! payload method, RC4 states, the first payload bytes). The BitTorrent handshake that
//! follows is read and written by [`super::tcp`] and [`super::listen`] as for plain
//! connections, through the ciphers when RC4 was selected.
//!
//! Reads are at most [`READ_CHUNK`] bytes, so with the machines' own bounds (pads, IA) an
//! MSE handshake never makes us hold more than a few KiB. The callers bound the time.

use proto::InfoHash;
use proto::mse::{CryptoSet, Established, Initiator, Progress, Responder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tcp::HandshakeFailed;

/// Largest read during the MSE handshake: the longest step (IA, 16 KiB) may take a few.
const READ_CHUNK: usize = 4096;

/// Answers an incoming MSE handshake whose first bytes (`first`) were already read.
/// `allowed` is the payload methods our policy permits; `lookup` maps
/// `HASH('req2', SKEY)` to a torrent we serve.
pub async fn respond(
    stream: &mut TcpStream,
    first: &[u8],
    allowed: CryptoSet,
    mut lookup: impl FnMut(&[u8; 20]) -> Option<InfoHash>,
) -> Result<Established, HandshakeFailed> {
    let mut machine = Responder::new(&mut rand::thread_rng(), allowed);
    let mut input = first.to_vec();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let progress = machine.handle_input(&input, &mut lookup)?;
        if let Some(out) = machine.poll_transmit() {
            stream.write_all(&out).await?;
        }
        if let Progress::Done(e) = progress {
            return Ok(*e);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeFailed::Eof);
        }
        input.clear();
        input.extend_from_slice(&chunk[..n]);
    }
}

/// Opens an MSE handshake for `info_hash` offering `offered`; `initial_payload` (our BT
/// handshake) rides in the request, saving a round trip.
pub async fn initiate(
    stream: &mut TcpStream,
    info_hash: InfoHash,
    offered: CryptoSet,
    initial_payload: Vec<u8>,
) -> Result<Established, HandshakeFailed> {
    let mut machine = Initiator::new(&mut rand::thread_rng(), info_hash, offered, initial_payload);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if let Some(out) = machine.poll_transmit() {
            stream.write_all(&out).await?;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeFailed::Eof);
        }
        if let Progress::Done(e) = machine.handle_input(&chunk[..n])? {
            return Ok(*e);
        }
    }
}

/// The payload stream's first bytes: the initiator's IA, then what followed the handshake.
pub fn payload_start(e: &Established) -> bytes::BytesMut {
    let mut b = bytes::BytesMut::with_capacity(e.initial_payload.len() + e.leftover.len() + 4096);
    b.extend_from_slice(&e.initial_payload);
    b.extend_from_slice(&e.leftover);
    b
}
