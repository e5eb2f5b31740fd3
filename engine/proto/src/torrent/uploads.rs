//! Serving peers' requests with bounded memory (issue 15).
//!
//! A request moves `queued -> reading -> sending -> written` (fields on `Peer`). Only
//! `reading` and `sending` hold block data, and they are bounded twice:
//!
//! - per peer, `reading + sending <= Config::max_peer_upload_bytes` (default 4 MiB): a peer
//!   that asks and never reads its socket ends up holding that much, no more;
//! - over all peers, `reading <= Config::max_upload_read_bytes` (default 16 MiB).
//!
//! So the block data held for uploads is at most `peers x max_peer_upload_bytes`, whatever
//! the peers send. A request that does not fit waits in its peer's queue (at most
//! `Config::max_peer_requests` of them; beyond, a reject or silence) and is read when
//! `Input::BlockRead` or `Input::UploadWritten` frees room. Waiting peers are served in turn,
//! starting after the last one served, so one greedy peer cannot starve the rest. A single
//! request larger than the bound is still served when the peer holds nothing else.
//!
//! Invariant: `Torrent::upload_reading` is the sum of the lengths of every `Action::Read`
//! not yet answered (including reads for peers that left or cancelled meanwhile: their
//! bytes are in memory until the read returns).

use super::*;

impl Torrent {
    /// A request that passed the leniency rules: queue it (or refuse it when the queue is full
    /// or holds it already), then read what fits.
    pub(super) fn on_request(&mut self, key: PeerKey, s: BlockSpec) {
        let Some(block) = self.lengths.validate_request(s.index, s.begin, s.len) else {
            return self.refuse(key, s);
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.pending_uploads() >= self.config.max_peer_requests as usize || p.has_upload(block) {
            return self.refuse(key, s);
        }
        p.upload_queue.push_back(block);
        self.upload_waiting.insert(key);
        self.pump_uploads();
    }

    /// Answers a request we will not serve: `reject` under BEP 6, else nothing.
    pub(super) fn refuse(&mut self, key: PeerKey, s: BlockSpec) {
        if self.peers.get(&key).is_some_and(|p| p.info.supports_fast) {
            self.actions.push_back(Action::Send {
                peer: key,
                msg: Message::Reject(s),
            });
        }
    }

    /// `Input::BlockRead`: send the block if still wanted, then read more.
    pub(super) fn on_block_read(
        &mut self,
        now: Instant,
        key: PeerKey,
        block: BlockRef,
        data: Bytes,
    ) {
        self.upload_reading = self.upload_reading.saturating_sub(u64::from(block.len));
        if let Some(p) = self.peers.get_mut(&key)
            && p.finish_read(block)
            && !p.am_choking
        {
            p.up.add(u64::from(block.len));
            p.last_sent = now;
            p.sending_bytes += u64::from(block.len);
            self.stats.bytes_uploaded += u64::from(block.len);
            let msg = Message::Piece {
                index: block.piece.get(),
                begin: block.offset,
                data,
            };
            self.actions.push_back(Action::Send { peer: key, msg });
        }
        self.pump_uploads();
    }

    /// `Input::ReadFailed`: reject the request if still wanted, then read more.
    pub(super) fn on_read_failed(&mut self, key: PeerKey, block: BlockRef) {
        self.upload_reading = self.upload_reading.saturating_sub(u64::from(block.len));
        if let Some(p) = self.peers.get_mut(&key)
            && p.finish_read(block)
        {
            self.refuse(key, spec(block));
        }
        self.pump_uploads();
    }

    /// `Input::UploadWritten`: the socket drained; read more.
    pub(super) fn on_upload_written(&mut self, key: PeerKey, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.sending_bytes = p.sending_bytes.saturating_sub(bytes);
        }
        self.pump_uploads();
    }

    /// Issues reads for waiting requests while both bounds allow, peers in turn.
    pub(super) fn pump_uploads(&mut self) {
        let per_peer = self.config.max_peer_upload_bytes;
        let global = self.config.max_upload_read_bytes;
        let mut disk_full = false;
        // Start after the peer served last, wrapping around.
        let order: Vec<PeerKey> = self
            .upload_waiting
            .range(self.upload_cursor..)
            .skip_while(|k| **k == self.upload_cursor)
            .chain(self.upload_waiting.range(..=self.upload_cursor))
            .copied()
            .collect();
        for key in order {
            let Some(p) = self.peers.get_mut(&key) else {
                self.upload_waiting.remove(&key);
                continue;
            };
            while let Some(&block) = p.upload_queue.front() {
                let len = u64::from(block.len);
                let peer_fits =
                    p.upload_bytes_held() == 0 || p.upload_bytes_held() + len <= per_peer;
                let disk_fits = self.upload_reading == 0 || self.upload_reading + len <= global;
                if !peer_fits {
                    break;
                }
                if !disk_fits {
                    // Every later peer would find the disk as full: stop; the next round
                    // starts after the peer served last.
                    disk_full = true;
                    break;
                }
                p.upload_queue.pop_front();
                p.reading.push((block, true));
                p.reading_bytes += len;
                self.upload_reading += len;
                self.upload_cursor = key;
                self.actions.push_back(Action::Read { peer: key, block });
            }
            if p.upload_queue.is_empty() {
                self.upload_waiting.remove(&key);
            }
            if disk_full {
                break;
            }
        }
    }

    /// Block data held for `key`'s uploads (being read plus queued to its socket).
    #[cfg(test)]
    pub(crate) fn upload_bytes_held(&self, key: PeerKey) -> u64 {
        self.peers.get(&key).map_or(0, |p| p.upload_bytes_held())
    }

    /// Bytes being read from disk for uploads, over all peers.
    #[cfg(test)]
    pub(crate) fn upload_bytes_reading(&self) -> u64 {
        self.upload_reading
    }
}
