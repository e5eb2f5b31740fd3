//! Length-prefixed peer wire messages (BEP 3, BEP 6, BEP 10).
//!
//! Framing: a 4-byte big-endian length, then `len` bytes (an id byte and a payload);
//! length 0 is a keep-alive. "Not enough bytes yet" is `Ok(None)`, never an error. Every
//! length is checked against [`MAX_MSG_LEN`] (or the caller's tighter bound) before anything
//! is allocated, and every fixed-size message must have exactly its size.
//!
//! The zero-copy path is [`Message::check`] + [`Message::parse`]: the connection splits the
//! frame off its read buffer and freezes it, so a `Piece`'s data is a slice of that buffer.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::lengths::MAX_REQUEST_LEN;

/// Largest frame body we accept by default: a `piece` message of [`MAX_REQUEST_LEN`] bytes
/// (1 id + 4 index + 4 begin + data) is the largest legitimate message except a bitfield of a
/// huge torrent or a large extension message; 1 MiB leaves room for both (8M pieces).
pub const MAX_MSG_LEN: u32 = 1024 * 1024;

const _: () = assert!(MAX_MSG_LEN >= 1 + 4 + 4 + MAX_REQUEST_LEN);

mod id {
    pub(super) const CHOKE: u8 = 0;
    pub(super) const UNCHOKE: u8 = 1;
    pub(super) const INTERESTED: u8 = 2;
    pub(super) const NOT_INTERESTED: u8 = 3;
    pub(super) const HAVE: u8 = 4;
    pub(super) const BITFIELD: u8 = 5;
    pub(super) const REQUEST: u8 = 6;
    pub(super) const PIECE: u8 = 7;
    pub(super) const CANCEL: u8 = 8;
    pub(super) const PORT: u8 = 9;
    pub(super) const SUGGEST: u8 = 13;
    pub(super) const HAVE_ALL: u8 = 14;
    pub(super) const HAVE_NONE: u8 = 15;
    pub(super) const REJECT: u8 = 16;
    pub(super) const ALLOWED_FAST: u8 = 17;
    pub(super) const EXTENDED: u8 = 20;
}

/// Why a frame was refused. Any of these ends the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix exceeds the bound.
    #[error("message length {len} exceeds the limit of {max} bytes")]
    LengthTooLarge {
        /// Length announced by the prefix.
        len: u32,
        /// Bound in force.
        max: u32,
    },
    /// A fixed-size message had the wrong size.
    #[error("message id {msg_id} has length {received}, expected {expected}")]
    IncorrectLen {
        /// Message id.
        msg_id: u8,
        /// Size the message id requires (id byte included).
        expected: u32,
        /// Size received (id byte included).
        received: u32,
    },
    /// A variable-size message was shorter than its fixed header.
    #[error("message id {msg_id} has length {received}, expected at least {min}")]
    TooShort {
        /// Message id.
        msg_id: u8,
        /// Minimum size (id byte included).
        min: u32,
        /// Size received.
        received: u32,
    },
}

/// A block request, cancel or reject: piece index, offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockSpec {
    /// Piece index.
    pub index: u32,
    /// Byte offset within the piece.
    pub begin: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One peer wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Zero-length frame.
    KeepAlive,
    /// We will not serve requests.
    Choke,
    /// We will serve requests.
    Unchoke,
    /// We want something the peer has.
    Interested,
    /// We want nothing the peer has.
    NotInterested,
    /// We have this piece now.
    Have(u32),
    /// Our have-set, raw (validated against the piece count by the receiver).
    Bitfield(Bytes),
    /// Please send this block.
    Request(BlockSpec),
    /// A block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// The bytes.
        data: Bytes,
    },
    /// Forget that request.
    Cancel(BlockSpec),
    /// DHT port (BEP 5); parsed so it is not an error, otherwise ignored.
    Port(u16),
    /// BEP 6: consider downloading this piece.
    Suggest(u32),
    /// BEP 6: we have every piece.
    HaveAll,
    /// BEP 6: we have no piece.
    HaveNone,
    /// BEP 6: that request will not be served.
    Reject(BlockSpec),
    /// BEP 6: you may request this piece while choked.
    AllowedFast(u32),
    /// BEP 10: extension message `id` (0 = extension handshake) with a bencoded or raw payload.
    Extended {
        /// Extended message id (0 is the handshake).
        id: u8,
        /// Payload after the extended id byte.
        payload: Bytes,
    },
    /// A message id we do not know; ignored, as BEP 3 asks.
    Unknown {
        /// The id byte.
        id: u8,
    },
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Length of a part of a frame we encode. Our own messages are bounded far below the 4 GiB
/// a length prefix can carry (blocks are 16 KiB, bitfields and extension payloads small), so
/// anything longer is a bug, not input.
fn frame_part_len(n: usize) -> u32 {
    u32::try_from(n).expect("message part longer than a frame can carry")
}

impl Message {
    /// Frame length (prefix included) of the first frame in `buf`: `Ok(None)` if more bytes
    /// are needed, an error if the prefix exceeds `max_len`.
    pub fn check(buf: &[u8], max_len: u32) -> Result<Option<usize>, DecodeError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = be_u32(buf);
        if len > max_len {
            return Err(DecodeError::LengthTooLarge { len, max: max_len });
        }
        let total = 4 + len as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Parses a frame body (the bytes after the length prefix).
    pub fn parse(body: Bytes) -> Result<Self, DecodeError> {
        let Some(&msg_id) = body.first() else {
            return Ok(Message::KeepAlive);
        };
        // `check` bounded the frame by a u32 length prefix; anything longer cannot match.
        let received = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let exact = |expected: u32| {
            if received == expected {
                Ok(())
            } else {
                Err(DecodeError::IncorrectLen {
                    msg_id,
                    expected,
                    received,
                })
            }
        };
        let at_least = |min: u32| {
            if received >= min {
                Ok(())
            } else {
                Err(DecodeError::TooShort {
                    msg_id,
                    min,
                    received,
                })
            }
        };
        let spec = |b: &[u8]| BlockSpec {
            index: be_u32(&b[1..]),
            begin: be_u32(&b[5..]),
            len: be_u32(&b[9..]),
        };
        Ok(match msg_id {
            id::CHOKE => exact(1).map(|_| Message::Choke)?,
            id::UNCHOKE => exact(1).map(|_| Message::Unchoke)?,
            id::INTERESTED => exact(1).map(|_| Message::Interested)?,
            id::NOT_INTERESTED => exact(1).map(|_| Message::NotInterested)?,
            id::HAVE => exact(5).map(|_| Message::Have(be_u32(&body[1..])))?,
            id::BITFIELD => Message::Bitfield(body.slice(1..)),
            id::REQUEST => exact(13).map(|_| Message::Request(spec(&body)))?,
            id::PIECE => {
                at_least(9)?;
                Message::Piece {
                    index: be_u32(&body[1..]),
                    begin: be_u32(&body[5..]),
                    data: body.slice(9..),
                }
            }
            id::CANCEL => exact(13).map(|_| Message::Cancel(spec(&body)))?,
            id::PORT => exact(3).map(|_| Message::Port(u16::from_be_bytes([body[1], body[2]])))?,
            id::SUGGEST => exact(5).map(|_| Message::Suggest(be_u32(&body[1..])))?,
            id::HAVE_ALL => exact(1).map(|_| Message::HaveAll)?,
            id::HAVE_NONE => exact(1).map(|_| Message::HaveNone)?,
            id::REJECT => exact(13).map(|_| Message::Reject(spec(&body)))?,
            id::ALLOWED_FAST => exact(5).map(|_| Message::AllowedFast(be_u32(&body[1..])))?,
            id::EXTENDED => {
                at_least(2)?;
                Message::Extended {
                    id: body[1],
                    payload: body.slice(2..),
                }
            }
            other => Message::Unknown { id: other },
        })
    }

    /// Decodes the first frame of `buf`, copying any payload: `Ok(None)` if incomplete,
    /// otherwise the message and the bytes it used. The engine uses the zero-copy
    /// [`check`](Self::check) + [`parse`](Self::parse); this is for tests and fuzzing.
    pub fn decode(buf: &[u8], max_len: u32) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some(total) = Self::check(buf, max_len)? else {
            return Ok(None);
        };
        let msg = Self::parse(Bytes::copy_from_slice(&buf[4..total]))?;
        Ok(Some((msg, total)))
    }

    /// Appends the wire form (length prefix included) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let simple = |out: &mut BytesMut, msg_id: u8| {
            out.put_u32(1);
            out.put_u8(msg_id);
        };
        let with_u32 = |out: &mut BytesMut, msg_id: u8, v: u32| {
            out.put_u32(5);
            out.put_u8(msg_id);
            out.put_u32(v);
        };
        let with_spec = |out: &mut BytesMut, msg_id: u8, s: &BlockSpec| {
            out.put_u32(13);
            out.put_u8(msg_id);
            out.put_u32(s.index);
            out.put_u32(s.begin);
            out.put_u32(s.len);
        };
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => simple(out, id::CHOKE),
            Message::Unchoke => simple(out, id::UNCHOKE),
            Message::Interested => simple(out, id::INTERESTED),
            Message::NotInterested => simple(out, id::NOT_INTERESTED),
            Message::Have(i) => with_u32(out, id::HAVE, *i),
            Message::Bitfield(b) => {
                out.put_u32(1 + frame_part_len(b.len()));
                out.put_u8(id::BITFIELD);
                out.put_slice(b);
            }
            Message::Request(s) => with_spec(out, id::REQUEST, s),
            Message::Piece { index, begin, data } => {
                Self::encode_piece_header(*index, *begin, frame_part_len(data.len()), out);
                out.put_slice(data);
            }
            Message::Cancel(s) => with_spec(out, id::CANCEL, s),
            Message::Port(p) => {
                out.put_u32(3);
                out.put_u8(id::PORT);
                out.put_u16(*p);
            }
            Message::Suggest(i) => with_u32(out, id::SUGGEST, *i),
            Message::HaveAll => simple(out, id::HAVE_ALL),
            Message::HaveNone => simple(out, id::HAVE_NONE),
            Message::Reject(s) => with_spec(out, id::REJECT, s),
            Message::AllowedFast(i) => with_u32(out, id::ALLOWED_FAST, *i),
            Message::Extended { id: ext, payload } => {
                out.put_u32(2 + frame_part_len(payload.len()));
                out.put_u8(id::EXTENDED);
                out.put_u8(*ext);
                out.put_slice(payload);
            }
            // We never send unknown messages; encode as a keep-alive so the stream stays framed.
            Message::Unknown { .. } => out.put_u32(0),
        }
    }

    /// Appends only the 13-byte header of a `piece` message carrying `data_len` bytes, so the
    /// connection can write the data from its own buffer (vectored write, no copy).
    pub fn encode_piece_header(index: u32, begin: u32, data_len: u32, out: &mut BytesMut) {
        out.put_u32(9 + data_len);
        out.put_u8(id::PIECE);
        out.put_u32(index);
        out.put_u32(begin);
    }

    /// Short name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Message::KeepAlive => "keep-alive",
            Message::Choke => "choke",
            Message::Unchoke => "unchoke",
            Message::Interested => "interested",
            Message::NotInterested => "not-interested",
            Message::Have(_) => "have",
            Message::Bitfield(_) => "bitfield",
            Message::Request(_) => "request",
            Message::Piece { .. } => "piece",
            Message::Cancel(_) => "cancel",
            Message::Port(_) => "port",
            Message::Suggest(_) => "suggest",
            Message::HaveAll => "have-all",
            Message::HaveNone => "have-none",
            Message::Reject(_) => "reject",
            Message::AllowedFast(_) => "allowed-fast",
            Message::Extended { .. } => "extended",
            Message::Unknown { .. } => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    fn enc(m: &Message) -> Vec<u8> {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        b.to_vec()
    }

    /// BEP 3 `request`, field by field.
    #[test]
    fn request_fixture() {
        let mut b = Vec::new();
        b.extend_from_slice(&13u32.to_be_bytes()); // length
        b.push(6); // id: request
        b.extend_from_slice(&7u32.to_be_bytes()); // index
        b.extend_from_slice(&16384u32.to_be_bytes()); // begin
        b.extend_from_slice(&16384u32.to_be_bytes()); // length
        let m = Message::Request(BlockSpec {
            index: 7,
            begin: 16384,
            len: 16384,
        });
        assert_eq!(
            Message::decode(&b, MAX_MSG_LEN).unwrap(),
            Some((m.clone(), 17))
        );
        assert_eq!(enc(&m), b);
    }

    /// BEP 6 `have all` and `reject`, field by field.
    #[test]
    fn fast_extension_fixtures() {
        let b = [0, 0, 0, 1, 0x0e]; // length 1, id 0x0E have-all
        assert_eq!(
            Message::decode(&b, MAX_MSG_LEN).unwrap(),
            Some((Message::HaveAll, 5))
        );
        let mut r = Vec::new();
        r.extend_from_slice(&13u32.to_be_bytes()); // length
        r.push(0x10); // id: reject request
        r.extend_from_slice(&1u32.to_be_bytes()); // index
        r.extend_from_slice(&0u32.to_be_bytes()); // begin
        r.extend_from_slice(&16384u32.to_be_bytes()); // length
        let m = Message::Reject(BlockSpec {
            index: 1,
            begin: 0,
            len: 16384,
        });
        assert_eq!(Message::decode(&r, MAX_MSG_LEN).unwrap(), Some((m, 17)));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let full = enc(&Message::Piece {
            index: 1,
            begin: 0,
            data: Bytes::from_static(&[9; 100]),
        });
        for n in 0..full.len() {
            assert_eq!(
                Message::decode(&full[..n], MAX_MSG_LEN),
                Ok(None),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let b = [0xff, 0xff, 0xff, 0xff, 7];
        assert_eq!(
            Message::decode(&b, MAX_MSG_LEN),
            Err(DecodeError::LengthTooLarge {
                len: u32::MAX,
                max: MAX_MSG_LEN
            })
        );
    }

    #[test]
    fn fixed_sizes_are_enforced() {
        let b = [0, 0, 0, 2, 4, 0]; // have with a 1-byte payload
        assert_eq!(
            Message::decode(&b, MAX_MSG_LEN),
            Err(DecodeError::IncorrectLen {
                msg_id: 4,
                expected: 5,
                received: 2
            })
        );
        let b = [0, 0, 0, 5, 7, 0, 0, 0, 0]; // piece without begin
        assert!(matches!(
            Message::decode(&b, MAX_MSG_LEN),
            Err(DecodeError::TooShort { .. })
        ));
    }

    #[test]
    fn unknown_ids_are_skipped() {
        let b = [0, 0, 0, 3, 99, 1, 2, 0, 0, 0, 0];
        assert_eq!(
            Message::decode(&b, MAX_MSG_LEN).unwrap(),
            Some((Message::Unknown { id: 99 }, 7))
        );
    }

    #[test]
    fn no_panic_on_any_length_and_id() {
        for msg_id in 0..=255u8 {
            for len in 0..40u32 {
                let mut b = Vec::new();
                b.extend_from_slice(&len.to_be_bytes());
                b.push(msg_id);
                b.extend(std::iter::repeat_n(0xab, len as usize));
                for cut in 0..b.len() {
                    let _ = Message::decode(&b[..cut], MAX_MSG_LEN);
                }
            }
        }
    }

    fn arb_spec() -> impl Strategy<Value = BlockSpec> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, len)| BlockSpec {
            index,
            begin,
            len,
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Suggest),
            any::<u32>().prop_map(Message::AllowedFast),
            any::<u16>().prop_map(Message::Port),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Message::Bitfield(v.into())),
            arb_spec().prop_map(Message::Request),
            arb_spec().prop_map(Message::Cancel),
            arb_spec().prop_map(Message::Reject),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(index, begin, d)| Message::Piece {
                    index,
                    begin,
                    data: d.into()
                }),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(id, p)| {
                Message::Extended {
                    id,
                    payload: p.into(),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn same_after_round_trip(m in arb_message()) {
            let b = enc(&m);
            let (back, used) = Message::decode(&b, MAX_MSG_LEN).unwrap().unwrap();
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&b, MAX_MSG_LEN);
        }
    }
}
