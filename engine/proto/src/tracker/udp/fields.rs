//! The BEP 15 wire fields as newtypes (house rule 6), so a transaction id is never passed
//! where a connection id belongs.

/// The opaque 64-bit id a tracker hands out in a connect response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// The client's 32-bit id that pairs a response with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

/// The BEP 15 announce `key`: lets a tracker recognise a peer whose address changed. (Not
/// `torrent::PeerKey`, which names one connection inside the torrent machine.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AnnounceKey(pub u32);

/// The announce `num_want`; negative means "the tracker's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumWant(pub i32);

impl NumWant {
    /// The wire value of "tracker's default".
    pub const DEFAULT: Self = Self(-1);

    /// The number of peers asked for, or `None` for the tracker's default.
    pub fn get(self) -> Option<u32> {
        u32::try_from(self.0).ok()
    }
}

/// Seconds a client should wait before its next regular announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnounceInterval(pub u32);
