//! What the torrent machine does with each incoming message, in one place: accept it, ignore
//! it, refuse it, or close the connection. Modelled on libtorrent 2.0 (`peer_connection.cpp`
//! `incoming_*`, `bt_peer_connection.cpp` `on_*`): a peer is disconnected only for what
//! libtorrent disconnects for, so clients that libtorrent gets along with (aria2c's repeated
//! bitfields, say) get along with us too.
//!
//! The rules, each with one unit test below (named after it):
//!
//! | message | state | treatment | why |
//! | --- | --- | --- | --- |
//! | keep-alive | any | accept | only refreshes the idle timer |
//! | unknown message id | any | ignore | the frame is length-delimited, so skipping it is safe (libtorrent closes; BEP 3 asks to ignore) |
//! | extended, an id we did not offer | any | ignore | extensions we do not speak |
//! | extended handshake | over [`MAX_EXT_HANDSHAKE_LEN`] (16 KiB) | disconnect, undecoded | ours is under 200 bytes; libtorrent's `max_extended_handshake_size`-style bound, so a peer cannot make the torrent task decode megabytes |
//! | extended handshake | after [`MAX_EXT_HANDSHAKES`] on this connection | ignore, undecoded | BEP 10 allows updates, but a few suffice; each costs a decode on the torrent task |
//! | port | any | ignore | we run no DHT |
//! | choke, unchoke, interested, not-interested | repeated | accept | idempotent flags |
//! | have | index out of range | disconnect | libtorrent `invalid_have`: the peer has another torrent in mind |
//! | have | piece already announced | ignore | libtorrent: "redundant HAVE" |
//! | bitfield | wrong byte length | disconnect | libtorrent `invalid_bitfield_size` |
//! | bitfield | spare bits set | accept, spare bits cleared | libtorrent reads only `num_pieces` bits |
//! | bitfield, have-all, have-none | after earlier announcements | accept: the new piece set replaces the old | libtorrent `peer_lost` then `peer_has`; aria2c 1.36 does this |
//! | have-all, have-none, suggest, allowed-fast, reject | fast bit not set | disconnect | libtorrent `invalid_have_all` / `invalid_suggest` / `invalid_allow_fast` / `invalid_reject` |
//! | suggest | out of range, or a piece we have | ignore | libtorrent `INVALID_SUGGEST` |
//! | suggest | otherwise | accept (recorded) | a hint; rarest-first still decides |
//! | allowed-fast | out of range | ignore | libtorrent ignores it |
//! | allowed-fast | otherwise | accept (recorded) | we may request that piece while choked |
//! | request | outside the torrent, length 0 or over 128 KiB, past the piece end | reject | libtorrent `invalid_piece_requests`: reject, never close |
//! | request | a piece we do not have | reject | as above |
//! | request | while we choke the peer | reject | libtorrent `choked_piece_requests` |
//! | request | otherwise | accept (queued; bounded by count and bytes, see `uploads.rs`) | |
//! | cancel | not requested, or invalid | ignore | nothing to cancel |
//! | reject | not requested, or invalid | ignore | libtorrent "piece not in request queue" |
//! | piece | outside the torrent | disconnect | libtorrent `invalid_piece` |
//! | piece | valid range but not a block we asked for | ignore (counted as waste) | late answers after a cancel are normal |
//!
//! "Reject" means a BEP 6 `reject` when the peer set the fast bit, and silence otherwise (BEP 3
//! has no way to refuse). A request that arrives while the peer said it was not interested is
//! treated as if it were interested first (libtorrent: "be lenient").

use crate::bitfield::Bitfield;
use crate::lengths::Lengths;
use crate::wire::Message;

/// Largest extension handshake decoded: 16 KiB (ours is under 200 bytes; libtorrent sends
/// about 300, metadata-capable clients a little more).
pub(crate) const MAX_EXT_HANDSHAKE_LEN: usize = 16 * 1024;
/// Extension handshakes decoded per connection; later ones are ignored.
pub(crate) const MAX_EXT_HANDSHAKES: u32 = 4;

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// Act on it.
    Accept,
    /// Drop it silently.
    Ignore,
    /// Refuse it: a `reject` under BEP 6, else silence. Only for requests.
    Reject,
    /// Close the connection, with this reason.
    Disconnect(String),
}

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) lengths: &'a Lengths,
    /// Our verified pieces.
    pub(crate) have: &'a Bitfield,
    /// The peer set the BEP 6 bit.
    pub(crate) fast: bool,
    /// We are choking the peer.
    pub(crate) am_choking: bool,
    /// Extension handshakes the peer sent on this connection so far.
    pub(crate) ext_handshakes: u32,
}

/// Applies the rules in the header to `msg`.
pub(crate) fn judge(msg: &Message, v: View<'_>) -> Treatment {
    use Treatment::*;
    let n = v.lengths.num_pieces();
    match msg {
        Message::KeepAlive
        | Message::Choke
        | Message::Unchoke
        | Message::Interested
        | Message::NotInterested => Accept,
        Message::Unknown { .. } | Message::Port(_) => Ignore,
        Message::Extended { id: 0, payload } if payload.len() > MAX_EXT_HANDSHAKE_LEN => {
            Disconnect(format!(
                "extension handshake of {} bytes (at most {MAX_EXT_HANDSHAKE_LEN})",
                payload.len()
            ))
        }
        Message::Extended { id: 0, .. } if v.ext_handshakes >= MAX_EXT_HANDSHAKES => Ignore,
        Message::Extended { id: 0, .. } => Accept,
        Message::Extended { .. } => Ignore,
        Message::Have(i) if *i >= n => Disconnect(format!("have for piece {i} of {n}")),
        Message::Have(_) => Accept,
        Message::Bitfield(bytes) if bytes.len() != (n as usize).div_ceil(8) => {
            Disconnect(format!("bitfield of {} bytes for {n} pieces", bytes.len()))
        }
        Message::Bitfield(_) => Accept,
        Message::HaveAll
        | Message::HaveNone
        | Message::Suggest(_)
        | Message::AllowedFast(_)
        | Message::Reject(_)
            if !v.fast =>
        {
            Disconnect(format!("{} without the fast bit", msg.name()))
        }
        Message::HaveAll | Message::HaveNone => Accept,
        Message::Suggest(i) => match v.lengths.validate_piece(*i) {
            Some(p) if !v.have.has(p) => Accept,
            _ => Ignore,
        },
        Message::AllowedFast(i) if *i >= n => Ignore,
        Message::AllowedFast(_) => Accept,
        Message::Request(s) => match v.lengths.validate_request(s.index, s.begin, s.len) {
            Some(b) if v.have.has(b.piece) && !v.am_choking => Accept,
            _ => Reject,
        },
        Message::Cancel(s) => match v.lengths.validate_request(s.index, s.begin, s.len) {
            Some(_) => Accept,
            None => Ignore,
        },
        Message::Reject(s) => match v.lengths.validate_grid_block(s.index, s.begin, s.len) {
            Some(_) => Accept,
            None => Ignore,
        },
        Message::Piece { index, begin, data } => {
            let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if v.lengths.validate_request(*index, *begin, len).is_none() {
                Disconnect(format!(
                    "piece message {index}/{begin}/{len} outside the torrent"
                ))
            } else if v.lengths.validate_grid_block(*index, *begin, len).is_none() {
                Ignore
            } else {
                Accept
            }
        }
    }
}

/// A wire bitfield of the right length, with any spare bits past the last piece cleared.
pub(crate) fn lenient_bitfield(bytes: &[u8], num_pieces: u32) -> Option<Bitfield> {
    let mut owned = bytes.to_vec();
    let spare = (8 - num_pieces % 8) % 8;
    if spare > 0
        && let Some(last) = owned.last_mut()
    {
        *last &= !((1u8 << spare) - 1);
    }
    Bitfield::from_wire(&owned, num_pieces).ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::lengths::{BLOCK_LEN, MAX_REQUEST_LEN};
    use crate::wire::BlockSpec;

    /// 10 pieces of 256 KiB; we have pieces 0..5.
    fn lengths() -> Lengths {
        Lengths::new(10 * 256 * 1024, 256 * 1024).unwrap()
    }

    fn have() -> Bitfield {
        let mut b = Bitfield::new(10);
        for i in 0..5 {
            b.set_raw(i);
        }
        b
    }

    fn judge_with(msg: Message, fast: bool, am_choking: bool) -> Treatment {
        judge_after(msg, fast, am_choking, 0)
    }

    fn judge_after(msg: Message, fast: bool, am_choking: bool, ext_handshakes: u32) -> Treatment {
        let (l, h) = (lengths(), have());
        judge(
            &msg,
            View {
                lengths: &l,
                have: &h,
                fast,
                am_choking,
                ext_handshakes,
            },
        )
    }

    fn judge_fast(msg: Message) -> Treatment {
        judge_with(msg, true, false)
    }

    fn spec(index: u32, begin: u32, len: u32) -> BlockSpec {
        BlockSpec { index, begin, len }
    }

    fn is_disconnect(t: &Treatment) -> bool {
        matches!(t, Treatment::Disconnect(_))
    }

    #[test]
    fn keep_alive_is_accepted() {
        assert_eq!(judge_fast(Message::KeepAlive), Treatment::Accept);
    }

    #[test]
    fn unknown_message_id_is_ignored() {
        assert_eq!(judge_fast(Message::Unknown { id: 99 }), Treatment::Ignore);
        assert_eq!(
            judge_with(Message::Unknown { id: 21 }, false, true),
            Treatment::Ignore
        );
    }

    #[test]
    fn extended_message_we_did_not_offer_is_ignored() {
        let msg = Message::Extended {
            id: 7,
            payload: Bytes::from_static(b"junk"),
        };
        assert_eq!(judge_fast(msg), Treatment::Ignore);
    }

    #[test]
    fn extension_handshake_over_16_kib_disconnects_undecoded() {
        let hs = |len: usize| Message::Extended {
            id: 0,
            payload: Bytes::from(vec![b'x'; len]),
        };
        assert_eq!(judge_fast(hs(MAX_EXT_HANDSHAKE_LEN)), Treatment::Accept);
        assert!(is_disconnect(&judge_fast(hs(MAX_EXT_HANDSHAKE_LEN + 1))));
        assert!(is_disconnect(&judge_fast(hs(1 << 20))));
    }

    #[test]
    fn extension_handshakes_after_a_few_are_ignored_undecoded() {
        let hs = Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"de"),
        };
        for n in 0..MAX_EXT_HANDSHAKES {
            assert_eq!(judge_after(hs.clone(), true, false, n), Treatment::Accept);
        }
        assert_eq!(
            judge_after(hs, true, false, MAX_EXT_HANDSHAKES),
            Treatment::Ignore
        );
    }

    #[test]
    fn port_is_ignored() {
        assert_eq!(judge_fast(Message::Port(6881)), Treatment::Ignore);
    }

    #[test]
    fn repeated_choke_and_interest_flags_are_accepted() {
        for m in [
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
        ] {
            assert_eq!(judge_fast(m.clone()), Treatment::Accept, "{m:?}");
            assert_eq!(judge_fast(m.clone()), Treatment::Accept, "{m:?} again");
        }
    }

    #[test]
    fn have_out_of_range_disconnects() {
        assert!(is_disconnect(&judge_fast(Message::Have(10))));
        assert!(is_disconnect(&judge_fast(Message::Have(u32::MAX))));
    }

    #[test]
    fn have_in_range_is_accepted_even_if_repeated() {
        // Redundancy is found against the peer's set by the machine, which then ignores it.
        assert_eq!(judge_fast(Message::Have(9)), Treatment::Accept);
        assert_eq!(judge_fast(Message::Have(9)), Treatment::Accept);
    }

    #[test]
    fn bitfield_of_wrong_length_disconnects() {
        assert!(is_disconnect(&judge_fast(Message::Bitfield(
            Bytes::from_static(&[0xff])
        ))));
        assert!(is_disconnect(&judge_fast(Message::Bitfield(
            Bytes::from_static(&[0, 0, 0])
        ))));
    }

    #[test]
    fn bitfield_with_spare_bits_is_accepted_with_them_cleared() {
        assert_eq!(
            judge_fast(Message::Bitfield(Bytes::from_static(&[0xff, 0xff]))),
            Treatment::Accept
        );
        let bf = lenient_bitfield(&[0xff, 0xff], 10).unwrap();
        assert_eq!(bf.count(), 10);
        assert!(bf.is_full());
    }

    #[test]
    fn bitfield_and_have_all_and_have_none_are_accepted_again() {
        // The replacement itself (availability moved exactly) is a machine test.
        for m in [
            Message::Bitfield(Bytes::from_static(&[0, 0])),
            Message::HaveAll,
            Message::HaveNone,
        ] {
            assert_eq!(judge_fast(m.clone()), Treatment::Accept, "{m:?}");
        }
    }

    #[test]
    fn fast_messages_without_the_fast_bit_disconnect() {
        for m in [
            Message::HaveAll,
            Message::HaveNone,
            Message::Suggest(1),
            Message::AllowedFast(1),
            Message::Reject(spec(0, 0, BLOCK_LEN)),
        ] {
            assert!(is_disconnect(&judge_with(m.clone(), false, false)), "{m:?}");
        }
    }

    #[test]
    fn suggest_out_of_range_or_for_a_piece_we_have_is_ignored() {
        assert_eq!(judge_fast(Message::Suggest(10)), Treatment::Ignore);
        assert_eq!(judge_fast(Message::Suggest(2)), Treatment::Ignore);
    }

    #[test]
    fn suggest_for_a_piece_we_lack_is_accepted() {
        assert_eq!(judge_fast(Message::Suggest(7)), Treatment::Accept);
    }

    #[test]
    fn allowed_fast_out_of_range_is_ignored() {
        assert_eq!(judge_fast(Message::AllowedFast(10)), Treatment::Ignore);
    }

    #[test]
    fn allowed_fast_in_range_is_accepted() {
        assert_eq!(judge_fast(Message::AllowedFast(7)), Treatment::Accept);
    }

    #[test]
    fn invalid_request_is_rejected_never_disconnected() {
        for s in [
            spec(10, 0, BLOCK_LEN),               // piece out of range
            spec(0, 0, 0),                        // empty
            spec(0, 0, MAX_REQUEST_LEN + 1),      // over 128 KiB
            spec(0, 256 * 1024 - 100, BLOCK_LEN), // past the piece end
            spec(0, u32::MAX, BLOCK_LEN),         // offset overflow
        ] {
            assert_eq!(judge_fast(Message::Request(s)), Treatment::Reject, "{s:?}");
        }
    }

    #[test]
    fn request_of_128_kib_is_accepted() {
        assert_eq!(
            judge_fast(Message::Request(spec(0, 0, MAX_REQUEST_LEN))),
            Treatment::Accept
        );
    }

    #[test]
    fn request_for_a_piece_we_lack_is_rejected() {
        assert_eq!(
            judge_fast(Message::Request(spec(7, 0, BLOCK_LEN))),
            Treatment::Reject
        );
    }

    #[test]
    fn request_while_choked_is_rejected() {
        assert_eq!(
            judge_with(Message::Request(spec(0, 0, BLOCK_LEN)), true, true),
            Treatment::Reject
        );
        // Without the fast bit the machine turns Reject into silence.
        assert_eq!(
            judge_with(Message::Request(spec(0, 0, BLOCK_LEN)), false, true),
            Treatment::Reject
        );
    }

    #[test]
    fn cancel_of_something_invalid_is_ignored() {
        assert_eq!(
            judge_fast(Message::Cancel(spec(10, 0, BLOCK_LEN))),
            Treatment::Ignore
        );
        // A valid one the machine does not find pending is a no-op there.
        assert_eq!(
            judge_fast(Message::Cancel(spec(0, 0, BLOCK_LEN))),
            Treatment::Accept
        );
    }

    #[test]
    fn reject_of_something_invalid_is_ignored() {
        assert_eq!(
            judge_fast(Message::Reject(spec(0, 100, BLOCK_LEN))),
            Treatment::Ignore
        );
        assert_eq!(
            judge_fast(Message::Reject(spec(0, 0, BLOCK_LEN))),
            Treatment::Accept
        );
    }

    #[test]
    fn piece_outside_the_torrent_disconnects() {
        let m = Message::Piece {
            index: 10,
            begin: 0,
            data: Bytes::from(vec![0; 16]),
        };
        assert!(is_disconnect(&judge_fast(m)));
    }

    #[test]
    fn piece_off_our_block_grid_is_ignored() {
        let m = Message::Piece {
            index: 0,
            begin: 100,
            data: Bytes::from(vec![0; 16]),
        };
        assert_eq!(judge_fast(m), Treatment::Ignore);
        let m = Message::Piece {
            index: 0,
            begin: 0,
            data: Bytes::from(vec![0; BLOCK_LEN as usize]),
        };
        assert_eq!(judge_fast(m), Treatment::Accept);
    }
}
