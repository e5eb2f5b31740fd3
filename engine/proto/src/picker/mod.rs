//! Piece and block selection: rarest-first with random tie-breaks, partial pieces first,
//! end-game duplicates, and a fabric filter for peers outside our fabric.
//!
//! Invariant: every piece is in exactly one of: have (verified) / verifying / partial (some
//! blocks requested or received) / unstarted. A block is requested from at most one peer,
//! except in end-game (no unstarted piece left), where it may be requested from
//! [`partial::MAX_REQUESTERS`] peers. A partial piece with an owner is asked only of its
//! owner (a peer on probation, or the one peer re-fetching a piece that failed), except for
//! end-game duplicates of a probation peer's piece. A partial piece has at least one block
//! requested or received (a release that leaves none puts it back to unstarted), and one
//! that nobody owns or is asked for can be adopted, restarted, by a peer on probation.
//! `open`, `adoptable` and `owned` index the partial pieces (with a block not asked of
//! anyone; with no owner and nothing asked; with an owner) and are kept exact by `track`.
//!
//! The picker never hashes and never reads the clock: verification results come back through
//! [`Picker::piece_verified`], time through [`Picker::set_now`], and randomness is an
//! argument.

mod buffer_pool;
mod partial;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use smallvec::smallvec;

use crate::bitfield::Bitfield;
use crate::lengths::{BlockRef, Lengths, ValidPieceIndex};
use crate::torrent::PeerKey;
use buffer_pool::BufferPool;
use partial::{BlockState, MAX_REQUESTERS, PartialPiece};

/// What a received block turned out to be.
#[derive(Debug)]
pub enum Received {
    /// We never asked anyone for this block's piece; the sender is misbehaving.
    Unsolicited,
    /// We already had it (end-game duplicate or a late answer); the bytes are wasted.
    Duplicate,
    /// Stored. `cancel` lists peers that were also asked for it (end-game) and should get a
    /// cancel; `complete` carries the whole piece when this was its last block.
    Accepted {
        /// Other requesters of this block.
        cancel: Vec<PeerKey>,
        /// The assembled piece, ready to verify.
        complete: Option<Bytes>,
    },
}

/// What a verification result means for the peers involved.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The piece is good. `liars` sent blocks that differed from the good data in an earlier,
    /// failed attempt at this piece (libtorrent's "smart ban", by byte comparison).
    Good {
        /// Peers proven to have sent bad data.
        liars: Vec<PeerKey>,
        /// Peers whose blocks make up the good piece (each once).
        senders: Vec<PeerKey>,
    },
    /// The piece failed. `sole_sender` is set when one peer sent every block: it is
    /// certainly at fault. Otherwise blame waits until the piece passes.
    Bad {
        /// The peer that sent the whole piece, if only one did.
        sole_sender: Option<PeerKey>,
    },
}

/// A failed attempt at a piece, kept until the piece passes so the bad blocks can be blamed.
#[derive(Debug)]
struct FailedAttempt {
    data: Bytes,
    senders: Vec<Option<PeerKey>>,
}

/// Filters a pick by where the peer sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerScope {
    /// Same fabric (or fabrics unknown): any piece.
    Local,
    /// Another fabric: only pieces no peer of ours in our fabric has, so each piece crosses
    /// into a fabric about once.
    Remote,
}

/// This host's share of the pieces to bring into its fabric: the pieces whose
/// [`owner`](FabricShare::owner) among `of` hosts is `rank`. The fabric's hosts hold distinct
/// ranks (an instream tracker numbers them in the order they join, a dispatcher by name, or
/// each ranks itself by peer id among the peers it meets), so without talking they split
/// the cross-fabric work instead of all fetching the same pieces over the scarce link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FabricShare {
    /// Our position among the fabric's hosts, from 0.
    pub rank: u32,
    /// How many they are.
    pub of: u32,
}

impl FabricShare {
    /// Which of `of` ranks brings piece `index` into the fabric (`of` > 0): linear hashing's
    /// split rule. With `2^k <= of < 2^(k+1)`, the owner is `index mod 2^(k+1)` when that is
    /// below `of`, else `index mod 2^k`. When the count grows from `n` to `n + 1`, only the
    /// pieces of one rank move, half of them, all to the new rank `n`: a host's share only
    /// shrinks as its fabric fills, so the pieces it started under an early, small count
    /// stay its own and are not fetched again by the hosts counted after it (with
    /// `index % of`, nearly every piece changed owner at each new count). Every rank owns
    /// 1/2^(k+1) or 1/2^k of the pieces, at most twice another's, and none is left empty
    /// while there are at least as many pieces as hosts.
    pub fn owner(index: u32, of: u32) -> u32 {
        debug_assert!(of > 0, "a share of nobody");
        // 2^(k+1) - 1 (k <= 31), and 2^k - 1.
        let wide = u32::MAX >> (31 - of.max(1).ilog2());
        let m = index & wide;
        if m < of { m } else { index & (wide >> 1) }
    }

    /// True if piece `index` is ours to bring in.
    pub fn owns(&self, index: u32) -> bool {
        Self::owner(index, self.of) == self.rank
    }
}

/// Which blocks to request next, from whom.
#[derive(Debug)]
pub struct Picker {
    lengths: Lengths,
    have: Bitfield,
    verifying: HashMap<u32, (Bytes, Vec<Option<PeerKey>>)>,
    /// Sum of the lengths in `verifying`.
    verifying_bytes: u64,
    partial: BTreeMap<u32, PartialPiece>,
    /// Pieces in `partial` or `verifying`: with `have`, what the rarest-first scan skips a
    /// byte of pieces at a time.
    started: Bitfield,
    /// Pieces in `partial` with a block nobody is asked for (`missing > 0`): what finishing
    /// started pieces looks at, a byte of pieces at a time against the peer's bitfield (a
    /// walk of every partial piece per top-up was a fifth of the simulator's time, and most
    /// partial pieces are fully requested).
    open: Bitfield,
    /// Pieces in `partial` that nobody owns and nobody is asked for: what a peer on
    /// probation may adopt (see [`Picker::pick`], step 2b).
    adoptable: Bitfield,
    /// Pieces in `partial` with an owner.
    owned: Bitfield,
    failed: HashMap<u32, FailedAttempt>,
    /// Connected peers having each piece.
    availability: Vec<u16>,
    /// Connected same-fabric peers having each piece.
    local_availability: Vec<u16>,
    /// Pieces neither had, verifying nor partial.
    unstarted: u32,
    share: Option<FabricShare>,
    buffers: BufferPool,
    /// When a peer in another fabric was first seen having each piece (for the fall-back
    /// delay); `None` until then.
    remote_seen: Vec<Option<Instant>>,
    /// The caller's clock, as of its last [`Picker::set_now`].
    now: Option<Instant>,
    /// How long a piece must have been visible in other fabrics, and still absent from ours,
    /// before a host outside its share may bring it in.
    fallback_delay: Duration,
    /// Keep no block bytes (see `torrent::Config::dataless`).
    dataless: bool,
}

impl std::str::FromStr for FabricShare {
    type Err = String;

    /// `RANK/OF`, e.g. `3/40`: the fourth of forty same-fabric hosts.
    fn from_str(s: &str) -> Result<Self, String> {
        let (r, o) = s
            .split_once('/')
            .ok_or_else(|| format!("fabric share {s:?} is not RANK/OF"))?;
        let rank: u32 = r
            .trim()
            .parse()
            .map_err(|_| format!("fabric share {s:?}: bad rank"))?;
        let of: u32 = o
            .trim()
            .parse()
            .map_err(|_| format!("fabric share {s:?}: bad count"))?;
        if of == 0 || rank >= of {
            return Err(format!("fabric share {s:?}: rank must be below the count"));
        }
        Ok(Self { rank, of })
    }
}

impl std::fmt::Display for FabricShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.rank, self.of)
    }
}

impl Picker {
    /// A picker for a torrent of which `have` is already verified.
    pub fn new(lengths: Lengths, have: Bitfield) -> Self {
        let n = lengths.num_pieces() as usize;
        let unstarted = lengths.num_pieces() - have.count();
        let buffers = BufferPool::new(lengths.default_piece_len() as usize, 0);
        Self {
            lengths,
            have,
            verifying: HashMap::new(),
            verifying_bytes: 0,
            partial: BTreeMap::new(),
            started: Bitfield::new(lengths.num_pieces()),
            open: Bitfield::new(lengths.num_pieces()),
            adoptable: Bitfield::new(lengths.num_pieces()),
            owned: Bitfield::new(lengths.num_pieces()),
            failed: HashMap::new(),
            availability: vec![0; n],
            local_availability: vec![0; n],
            unstarted,
            share: None,
            buffers,
            remote_seen: vec![None; n],
            now: None,
            fallback_delay: Duration::ZERO,
            dataless: false,
        }
    }

    /// Keeps no block bytes: completed pieces are handed out empty (a simulation of
    /// thousands of hosts without payload; see `torrent::Config::dataless`).
    pub fn set_dataless(&mut self, dataless: bool) {
        self.dataless = dataless;
    }

    /// Sets which pieces this host brings in from other fabrics (see [`FabricShare`]).
    pub fn set_fabric_share(&mut self, share: Option<FabricShare>) {
        self.share = share.filter(|s| s.of > 1);
    }

    /// The torrent's geometry.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when no piece is left unstarted, so blocks may be requested twice.
    pub fn in_endgame(&self) -> bool {
        self.unstarted == 0
    }

    /// Number of peers known to have `piece`.
    pub fn availability(&self, piece: ValidPieceIndex) -> u16 {
        self.availability[piece.idx()]
    }

    /// A peer announced its whole have-set (bitfield or have-all).
    pub fn add_peer_pieces(&mut self, pieces: &Bitfield, scope: PeerScope) {
        for i in pieces.iter_set() {
            self.add_peer_piece_raw(i as usize, scope);
        }
    }

    /// A peer announced one piece.
    pub fn add_peer_piece(&mut self, piece: ValidPieceIndex, scope: PeerScope) {
        self.add_peer_piece_raw(piece.idx(), scope);
    }

    fn add_peer_piece_raw(&mut self, i: usize, scope: PeerScope) {
        self.availability[i] = self.availability[i].saturating_add(1);
        match scope {
            PeerScope::Local => {
                self.local_availability[i] = self.local_availability[i].saturating_add(1);
            }
            PeerScope::Remote => {
                if self.remote_seen[i].is_none() {
                    self.remote_seen[i] = self.now;
                }
            }
        }
    }

    /// Keeps up to `bytes` of verified pieces' buffers for the next pieces (see
    /// [`buffer_pool`]; two buffers at least).
    pub fn set_buffer_pool(&mut self, bytes: usize) {
        self.buffers = BufferPool::new(self.lengths.default_piece_len() as usize, bytes);
    }

    /// Advances the picker's clock (time is an argument: the picker never reads a clock).
    pub fn set_now(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// Sets how long a piece must have been seen in other fabrics before a host brings it in
    /// outside its share.
    pub fn set_fallback_delay(&mut self, delay: Duration) {
        self.fallback_delay = delay;
    }

    /// True when `piece` may be fetched from another fabric outside our share: it has been
    /// visible there for the fall-back delay times our distance from its owner in rank order
    /// (the owner had its chance, then the host ranked after it, and so on). The stagger
    /// keeps the fabric's idle hosts from all falling back on the same pieces at once: with
    /// one delay for everyone, 500 hosts a fabric each brought in a piece 250 ms after the
    /// start (fabric_sim, 10,000 hosts: 6.75x the payload into a fabric).
    fn fallback_ripe(&self, i: usize) -> bool {
        if self.fallback_delay.is_zero() {
            return true;
        }
        let wait = self.fallback_delay * self.backup_distance(i);
        match (self.remote_seen[i], self.now) {
            (Some(seen), Some(now)) => now.saturating_duration_since(seen) >= wait,
            _ => false,
        }
    }

    /// How many ranks after the owner of piece `i` ours is (1 for the first backup; 1
    /// without a share).
    fn backup_distance(&self, i: usize) -> u32 {
        let Some(s) = self.share else {
            return 1;
        };
        // Piece counts are u32.
        let owner = FabricShare::owner(u32::try_from(i).unwrap_or(u32::MAX), s.of);
        ((s.rank + s.of - owner) % s.of).max(1)
    }

    /// A peer left; its pieces no longer count.
    pub fn remove_peer_pieces(&mut self, pieces: &Bitfield, scope: PeerScope) {
        for i in pieces.iter_set() {
            let i = i as usize;
            self.availability[i] = self.availability[i].saturating_sub(1);
            if scope == PeerScope::Local {
                self.local_availability[i] = self.local_availability[i].saturating_sub(1);
            }
        }
    }

    /// True if `theirs` holds a piece we still need.
    pub fn wants_any_of(&self, theirs: &Bitfield) -> bool {
        self.have.lacks_any_of(theirs)
    }

    fn allowed(&self, piece: usize, scope: PeerScope) -> bool {
        scope == PeerScope::Local || self.local_availability[piece] == 0
    }

    /// Appends up to `max` blocks for `peer` to request to `out`, marking them requested.
    /// `their_pieces` is what the peer has; `scope` filters cross-fabric picks. A remote
    /// peer is asked only for our [`FabricShare`] of the pieces, unless `remote_fallback`
    /// (no same-fabric peer has anything for us): then one piece at a time new to the fabric
    /// and seen in other fabrics for the fall-back delay will do. A peer on `probation` gets
    /// only pieces it alone sends (it owns the pieces it starts, and no end-game duplicates),
    /// so a bad piece from it has one sender to blame. A piece that failed before is started
    /// owned by its one new sender, whoever that is, to find the culprit.
    #[allow(clippy::too_many_arguments)]
    pub fn pick(
        &mut self,
        peer: PeerKey,
        their_pieces: &Bitfield,
        scope: PeerScope,
        remote_fallback: bool,
        probation: bool,
        max: usize,
        rng: &mut impl Rng,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let want = |out: &Vec<BlockRef>| out.len() - start < max;
        let may_join = |pp: &PartialPiece| match pp.owner {
            Some(owner) => owner == peer,
            None => !probation,
        };

        // 1. Finish what is started: most advanced pieces first, so pieces complete (and
        //    can be shared) sooner.
        if self.open.count() > 0 && want(out) {
            let mut started: Vec<(u32, u32)> = Vec::new();
            for i in common_ones(their_pieces, &self.open) {
                let Some(pp) = self.partial.get(&i) else {
                    debug_assert!(false, "open piece {i} is not partial");
                    continue;
                };
                if may_join(pp) && self.allowed(i as usize, scope) {
                    started.push((pp.blocks_total - pp.missing, i));
                }
            }
            // (progress, index) is unique: the order is the same whatever the scan's.
            started.sort_unstable_by(|a, b| b.cmp(a));
            for (_, i) in started {
                if !want(out) {
                    break;
                }
                let piece = self
                    .lengths
                    .validate_piece(i)
                    .expect("partial pieces are valid");
                self.request_missing(piece, peer, max - (out.len() - start), out);
            }
        }

        // 2. Start new pieces, rarest first; ties broken by a random starting point. A peer
        //    on probation has one piece at a time: none while it owns a partial one.
        let busy_on_probation = probation
            && set_ones(&self.owned).any(|i| {
                self.partial
                    .get(&i)
                    .is_some_and(|pp| pp.owner == Some(peer))
            });
        let mut started = false;
        while want(out) && self.unstarted > 0 && !busy_on_probation {
            let share = if scope == PeerScope::Remote {
                self.share
            } else {
                None
            };
            let found = self.rarest_unstarted(their_pieces, scope, share, rng);
            let (found, fallback) = match found {
                None if share.is_some()
                    && remote_fallback
                    && !self.partial.values().any(|pp| pp.fallback) =>
                {
                    (self.rarest_unstarted_ripe(their_pieces, scope, rng), true)
                }
                f => (f, false),
            };
            let Some(piece) = found else { break };
            let one_only = probation;
            let buf =
                (!self.dataless).then(|| self.buffers.take(self.lengths.piece_len(piece) as usize));
            let mut pp = PartialPiece::new(&self.lengths, piece, buf);
            pp.fallback = fallback;
            if probation || self.failed.contains_key(&piece.get()) {
                pp.owner = Some(peer);
            }
            self.partial.insert(piece.get(), pp);
            self.started.set(piece);
            self.unstarted -= 1;
            started = true;
            self.request_missing(piece, peer, max - (out.len() - start), out);
            if one_only {
                break;
            }
        }

        // 2b. A peer on probation with no piece of its own and none to start adopts a started
        //     piece that nobody owns and nobody is asked for (its sender timed out, was
        //     choked or left after sending some blocks): the blocks received are dropped, so
        //     the whole piece comes from this one peer, and it owns the piece. Without this,
        //     once every trusted peer is gone such a piece is asked of nobody, ever (the
        //     canary stall).
        if probation && !busy_on_probation && !started && want(out) {
            // The lowest such piece, as a walk of `partial` in order would find.
            let adopt = common_ones(their_pieces, &self.adoptable)
                .find(|&i| self.allowed(i as usize, scope));
            if let Some(i) = adopt {
                let piece = self
                    .lengths
                    .validate_piece(i)
                    .expect("partial pieces are valid");
                if let Some(pp) = self.partial.get_mut(&i) {
                    pp.restart();
                    pp.owner = Some(peer);
                }
                self.request_missing(piece, peer, max - (out.len() - start), out);
            }
        }

        // 3. End-game: nothing unstarted anywhere; ask a second peer for blocks in flight.
        if want(out) && self.in_endgame() && !probation {
            for (&i, pp) in self.partial.iter_mut() {
                // A re-fetch of a failed piece stays with its one sender; a piece owned by a
                // peer on probation may get end-game duplicates (first arrival wins).
                if pp.owner.is_some_and(|o| o != peer) && self.failed.contains_key(&i) {
                    continue;
                }
                // Never a second requester in another fabric: an end-game duplicate from
                // there costs the scarce cross-fabric link (measured: up to 2x payload more
                // into a fabric at 1000 hosts).
                let remote_blocked = scope == PeerScope::Remote;
                if !their_pieces.get_raw(i) || remote_blocked {
                    continue;
                }
                let piece = self
                    .lengths
                    .validate_piece(i)
                    .expect("partial pieces are valid");
                for (bi, state) in (0u32..).zip(pp.blocks.iter_mut()) {
                    if out.len() - start >= max {
                        return;
                    }
                    if let BlockState::Requested(peers) = state
                        && peers.len() < MAX_REQUESTERS
                        && !peers.contains(&peer)
                    {
                        peers.push(peer);
                        out.push(self.lengths.block(piece, bi).expect("block in piece"));
                    }
                }
            }
        }
    }

    fn request_missing(
        &mut self,
        piece: ValidPieceIndex,
        peer: PeerKey,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let pp = self
            .partial
            .get_mut(&piece.get())
            .expect("piece is partial");
        let mut taken = 0;
        for (bi, state) in (0u32..).zip(pp.blocks.iter_mut()) {
            if taken >= max {
                break;
            }
            if *state == BlockState::Missing {
                *state = BlockState::Requested(smallvec![peer]);
                pp.missing -= 1;
                taken += 1;
                out.push(self.lengths.block(piece, bi).expect("block in piece"));
            }
        }
        self.track(piece);
    }

    /// Brings `open`, `adoptable` and `owned` up to date for `piece` after its partial
    /// state changed (or it left `partial`).
    fn track(&mut self, piece: ValidPieceIndex) {
        let (open, adoptable, owned) = match self.partial.get(&piece.get()) {
            Some(pp) => (
                pp.missing > 0,
                pp.owner.is_none() && !pp.in_flight(),
                pp.owner.is_some(),
            ),
            None => (false, false, false),
        };
        for (set, on) in [
            (&mut self.open, open),
            (&mut self.adoptable, adoptable),
            (&mut self.owned, owned),
        ] {
            if on {
                set.set(piece);
            } else {
                set.clear(piece);
            }
        }
    }

    fn rarest_unstarted(
        &self,
        their_pieces: &Bitfield,
        scope: PeerScope,
        share: Option<FabricShare>,
        rng: &mut impl Rng,
    ) -> Option<ValidPieceIndex> {
        self.rarest_unstarted_where(their_pieces, scope, rng, |i| {
            share.is_none_or(|s| s.owns(i))
        })
    }

    /// Like [`rarest_unstarted`](Self::rarest_unstarted) with no share, among pieces ripe
    /// for a fall-back fetch.
    fn rarest_unstarted_ripe(
        &self,
        their_pieces: &Bitfield,
        scope: PeerScope,
        rng: &mut impl Rng,
    ) -> Option<ValidPieceIndex> {
        self.rarest_unstarted_where(their_pieces, scope, rng, |i| self.fallback_ripe(i as usize))
    }

    fn rarest_unstarted_where(
        &self,
        their_pieces: &Bitfield,
        scope: PeerScope,
        rng: &mut impl Rng,
        keep: impl Fn(u32) -> bool,
    ) -> Option<ValidPieceIndex> {
        let n = self.lengths.num_pieces();
        if n == 0 {
            return None;
        }
        let offset = rng.gen_range(0..n);
        let mut best: Option<(u16, u32)> = None;
        // Pieces in the order offset..n, then 0..offset, a byte of the bitfields at a time:
        // only pieces the peer has and we neither have nor started are looked at one by one
        // (this scan ran for every request top-up and was the simulator's hottest loop).
        let (theirs, have, started) = (
            their_pieces.as_bytes(),
            self.have.as_bytes(),
            self.started.as_bytes(),
        );
        let bytes = theirs.len().min(have.len());
        let first = (offset / 8) as usize;
        // The byte holding `offset` is visited twice: its bits from `offset` on first, the
        // ones before `offset` last.
        let head = 0xffu8 >> (offset % 8);
        let order = (first..bytes)
            .map(|b| (b, if b == first { head } else { 0xff }))
            .chain((0..=first).map(|b| (b, if b == first { !head } else { 0xff })));
        'scan: for (b, mask) in order {
            let mut cand = theirs[b] & !have[b] & !started[b] & mask;
            while cand != 0 {
                let bit = cand.leading_zeros();
                cand &= !(0x80u8 >> bit);
                // b < 2^29 (a u32 count of pieces in bytes): the index fits u32.
                let i = u32::try_from(b).unwrap_or(u32::MAX) * 8 + bit;
                if i >= n || !self.allowed(i as usize, scope) || !keep(i) {
                    continue;
                }
                let a = self.availability[i as usize];
                if best.is_none_or(|(b, _)| a < b) {
                    best = Some((a, i));
                    if a <= 1 {
                        break 'scan; // nobody but this peer has it: as rare as it gets
                    }
                }
            }
        }
        best.and_then(|(_, i)| self.lengths.validate_piece(i))
    }

    /// A request to `peer` ended without data (rejected, cancelled, timed out, choked, peer
    /// gone): the block goes back to the pool unless another peer is also on it.
    pub fn release(&mut self, peer: PeerKey, block: BlockRef) {
        let Some(pp) = self.partial.get_mut(&block.piece.get()) else {
            return;
        };
        let Some(state) = pp.blocks.get_mut(block.index() as usize) else {
            return;
        };
        if let BlockState::Requested(peers) = state {
            peers.retain(|p| *p != peer);
            if peers.is_empty() {
                *state = BlockState::Missing;
                pp.missing += 1;
            }
        }
        // The owner dropped out (timeout, reject, choke, gone): others may finish the piece.
        if pp.owner == Some(peer) {
            pp.owner = None;
        }
        // Nothing of it asked for or held any more: back to unstarted (see STATE.md), so that
        // it is picked rarest-first again by anyone who may start a piece, a peer on
        // probation included, and end-game does not begin while it waits.
        if pp.received == 0 && pp.missing == pp.blocks_total {
            self.partial.remove(&block.piece.get());
            self.started.clear(block.piece);
            self.unstarted += 1;
        }
        self.track(block.piece);
    }

    /// True if `block` is currently requested from `peer`.
    pub fn is_requested_from(&self, peer: PeerKey, block: BlockRef) -> bool {
        self.partial.get(&block.piece.get()).is_some_and(|pp| {
            matches!(pp.blocks.get(block.index() as usize), Some(BlockState::Requested(p)) if p.contains(&peer))
        })
    }

    /// A block arrived from `peer` (already checked to be on our block grid).
    pub fn block_received(&mut self, peer: PeerKey, block: BlockRef, data: &[u8]) -> Received {
        let i = block.piece.get();
        if self.have.get_raw(i) || self.verifying.contains_key(&i) {
            return Received::Duplicate;
        }
        let Some(pp) = self.partial.get_mut(&i) else {
            return Received::Unsolicited;
        };
        let bi = block.index();
        let cancel = match &pp.blocks[bi as usize] {
            BlockState::Received(_) => return Received::Duplicate,
            BlockState::Missing => Vec::new(),
            BlockState::Requested(peers) => peers.iter().copied().filter(|p| *p != peer).collect(),
        };
        pp.store(bi, peer, data);
        let complete = if pp.is_complete() {
            let mut pp = self.partial.remove(&i).expect("present");
            let data = pp.take_data();
            self.verifying_bytes += data.len() as u64;
            self.verifying.insert(i, (data.clone(), pp.senders()));
            Some(data)
        } else {
            None
        };
        self.track(block.piece);
        Received::Accepted { cancel, complete }
    }

    /// The verification result for a piece handed out by [`block_received`](Self::block_received).
    pub fn piece_verified(&mut self, piece: ValidPieceIndex, ok: bool) -> Verdict {
        let i = piece.get();
        let Some((data, senders)) = self.verifying.remove(&i) else {
            debug_assert!(false, "verdict for piece {i} that was not verifying");
            return Verdict::Bad { sole_sender: None };
        };
        self.verifying_bytes -= data.len() as u64;
        self.started.clear(piece);
        if ok {
            self.have.set(piece);
            let mut liars = Vec::new();
            if let Some(failed) = self.failed.remove(&i) {
                for (bi, sender) in (0u32..).zip(failed.senders.iter()) {
                    let (Some(sender), Some(b)) = (sender, self.lengths.block(piece, bi)) else {
                        continue;
                    };
                    let range = b.offset as usize..(b.offset + b.len) as usize;
                    if failed.data[range.clone()] != data[range] && !liars.contains(sender) {
                        liars.push(*sender);
                    }
                }
            }
            let mut good_senders = Vec::new();
            for s in senders.into_iter().flatten() {
                if !good_senders.contains(&s) {
                    good_senders.push(s);
                }
            }
            if self.have.is_full() {
                self.buffers.release();
            } else {
                self.buffers.give(data);
            }
            Verdict::Good {
                liars,
                senders: good_senders,
            }
        } else {
            self.unstarted += 1;
            let first = senders.first().copied().flatten();
            let sole_sender = first.filter(|f| senders.iter().all(|s| *s == Some(*f)));
            self.failed.insert(i, FailedAttempt { data, senders });
            Verdict::Bad { sole_sender }
        }
    }

    /// True if `open`, `adoptable` and `owned` hold exactly the partial pieces they
    /// describe.
    #[cfg(test)]
    pub(crate) fn open_is_consistent(&self) -> bool {
        let of = |f: fn(&PartialPiece) -> bool| -> Vec<u32> {
            self.partial
                .iter()
                .filter(|(_, pp)| f(pp))
                .map(|(i, _)| *i)
                .collect()
        };
        self.open.iter_set().eq(of(|pp| pp.missing > 0))
            && self
                .adoptable
                .iter_set()
                .eq(of(|pp| pp.owner.is_none() && !pp.in_flight()))
            && self.owned.iter_set().eq(of(|pp| pp.owner.is_some()))
    }

    #[cfg(test)]
    pub(crate) fn debug_state(&self) -> String {
        format!(
            "unstarted={} verifying={:?} partial={:?}",
            self.unstarted,
            self.verifying.keys().collect::<Vec<_>>(),
            self.partial
                .iter()
                .map(|(i, pp)| (*i, pp.owner, pp.missing, pp.received, pp.blocks.clone()))
                .collect::<Vec<_>>()
        )
    }

    /// Bytes of complete pieces waiting for their verification result.
    pub fn bytes_verifying(&self) -> u64 {
        self.verifying_bytes
    }
}

/// The pieces set in `a`, skipping empty bytes (as [`common_ones`] does for two sets).
fn set_ones(a: &Bitfield) -> impl Iterator<Item = u32> + '_ {
    common_ones(a, a)
}

/// Indices set in both `a` and `b`, in increasing order, a byte at a time.
fn common_ones<'a>(a: &'a Bitfield, b: &'a Bitfield) -> impl Iterator<Item = u32> + 'a {
    // A bitfield of `len: u32` bits has fewer than 2^29 bytes: the byte index fits u32.
    (0u32..)
        .zip(a.as_bytes().iter().zip(b.as_bytes()))
        .filter(|(_, (x, y))| *x & *y != 0)
        .flat_map(|(byte, (x, y))| {
            let mut cand = x & y;
            std::iter::from_fn(move || {
                (cand != 0).then(|| {
                    let bit = cand.leading_zeros();
                    cand &= !(0x80u8 >> bit);
                    byte * 8 + bit
                })
            })
        })
}

#[cfg(test)]
mod tests;
