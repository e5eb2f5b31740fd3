//! The receiving side (B) of an MSE handshake. Steps, each waiting for its bytes:
//! `Ya` (96) -> search `HASH('req1', S)` within `PadA` -> `HASH('req2', SKEY) xor
//! HASH('req3', S)` (20, names the torrent) -> `ENCRYPT(VC, crypto_provide, len(PadC))`
//! (14) -> `ENCRYPT(PadC, len(IA))` -> `ENCRYPT(IA)`. `Yb, PadB` go out as soon as `Ya` is
//! in; `ENCRYPT(VC, crypto_select, len(PadD), PadD)` once the method is chosen.

use super::dh::{KEY_LEN, Keypair};
use super::{
    CryptoSet, Established, MAX_IA_LEN, MAX_PAD, Method, MseError, PROVIDE_HEADER_LEN, Progress,
    Rc4, VC, be_u16, be_u32, find, hash, random_pad, xor20,
};
use crate::InfoHash;

#[derive(Debug)]
enum State {
    Key,
    Req1 {
        secret: [u8; KEY_LEN],
    },
    Skey {
        secret: [u8; KEY_LEN],
    },
    Provide(Keyed),
    PadC {
        keyed: Keyed,
        provided: CryptoSet,
        pad_len: usize,
    },
    Ia {
        keyed: Keyed,
        provided: CryptoSet,
        ia_len: usize,
    },
    Ended,
}

#[derive(Debug)]
struct Keyed {
    info_hash: InfoHash,
    decrypt: Rc4,
    encrypt: Rc4,
}

/// Side B of MSE: see the module header.
#[derive(Debug)]
pub struct Responder {
    keys: Keypair,
    pad_b: Vec<u8>,
    pad_d: Vec<u8>,
    allowed: CryptoSet,
    state: State,
    /// Received bytes not consumed by a step yet (bounded by the largest step).
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Responder {
    /// A responder that selects among `allowed` (plaintext first); keys and pads from `rng`.
    pub fn new(rng: &mut impl rand::RngCore, allowed: CryptoSet) -> Self {
        Self {
            keys: Keypair::generate(rng),
            pad_b: random_pad(rng),
            pad_d: random_pad(rng),
            allowed,
            state: State::Key,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Bytes to send now; poll after every [`Responder::handle_input`].
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Feeds received bytes. `lookup` maps `HASH('req2', SKEY)` (see
    /// [`super::req2_hash`]) to a torrent we serve. After `Done` or an error, the machine
    /// takes no more input.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        mut lookup: impl FnMut(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Progress, MseError> {
        if matches!(self.state, State::Ended) {
            return Err(MseError::Finished);
        }
        self.buf.extend_from_slice(data);
        let r = self.advance(&mut lookup);
        if !matches!(r, Ok(Progress::NeedMore)) {
            self.state = State::Ended;
        }
        r
    }

    fn advance(
        &mut self,
        lookup: &mut dyn FnMut(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<Progress, MseError> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Ended);
            let (next, used) = match state {
                State::Key => {
                    let Some(ya) = self.buf.first_chunk::<KEY_LEN>() else {
                        self.state = State::Key;
                        return Ok(Progress::NeedMore);
                    };
                    let secret = self.keys.shared_secret(ya)?;
                    self.out.extend_from_slice(self.keys.public());
                    self.out.extend_from_slice(&self.pad_b);
                    (State::Req1 { secret }, KEY_LEN)
                }
                State::Req1 { secret } => {
                    let req1 = hash(&[b"req1", &secret]);
                    let window = self.buf.len().min(MAX_PAD + req1.len());
                    match find(&self.buf[..window], &req1) {
                        Some(at) => (State::Skey { secret }, at + req1.len()),
                        None if window == MAX_PAD + req1.len() => {
                            return Err(MseError::NoReq1Sync { searched: window });
                        }
                        None => {
                            self.state = State::Req1 { secret };
                            return Ok(Progress::NeedMore);
                        }
                    }
                }
                State::Skey { secret } => {
                    let Some(x) = self.buf.first_chunk::<20>() else {
                        self.state = State::Skey { secret };
                        return Ok(Progress::NeedMore);
                    };
                    let req2 = xor20(&hash(&[b"req3", &secret]), x);
                    let info_hash = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
                    let keyed = Keyed {
                        info_hash,
                        decrypt: Rc4::for_mse(b"keyA", &secret, &info_hash.0),
                        encrypt: Rc4::for_mse(b"keyB", &secret, &info_hash.0),
                    };
                    (State::Provide(keyed), 20)
                }
                State::Provide(mut keyed) => {
                    let Some(h) = self.buf.first_chunk_mut::<PROVIDE_HEADER_LEN>() else {
                        self.state = State::Provide(keyed);
                        return Ok(Progress::NeedMore);
                    };
                    keyed.decrypt.apply(h);
                    if h[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    let provided = CryptoSet(be_u32(&h[8..12]));
                    let pad_len = be_u16(&h[12..14]);
                    if pad_len > MAX_PAD {
                        return Err(MseError::PadTooLong { len: pad_len });
                    }
                    let next = State::PadC {
                        keyed,
                        provided,
                        pad_len,
                    };
                    (next, PROVIDE_HEADER_LEN)
                }
                State::PadC {
                    mut keyed,
                    provided,
                    pad_len,
                } => {
                    if self.buf.len() < pad_len + 2 {
                        self.state = State::PadC {
                            keyed,
                            provided,
                            pad_len,
                        };
                        return Ok(Progress::NeedMore);
                    }
                    let part = &mut self.buf[..pad_len + 2];
                    keyed.decrypt.apply(part);
                    let ia_len = be_u16(&part[pad_len..]);
                    if ia_len > MAX_IA_LEN {
                        return Err(MseError::InitialPayloadTooLong { len: ia_len });
                    }
                    let next = State::Ia {
                        keyed,
                        provided,
                        ia_len,
                    };
                    (next, pad_len + 2)
                }
                State::Ia {
                    keyed,
                    provided,
                    ia_len,
                } => {
                    if self.buf.len() < ia_len {
                        self.state = State::Ia {
                            keyed,
                            provided,
                            ia_len,
                        };
                        return Ok(Progress::NeedMore);
                    }
                    return self
                        .finish(keyed, provided, ia_len)
                        .map(|e| Progress::Done(Box::new(e)));
                }
                State::Ended => return Err(MseError::Finished),
            };
            self.buf.drain(..used);
            self.state = next;
        }
    }

    fn finish(
        &mut self,
        mut keyed: Keyed,
        provided: CryptoSet,
        ia_len: usize,
    ) -> Result<Established, MseError> {
        let method = self
            .allowed
            .select(provided)
            .ok_or(MseError::NoCommonMethod {
                provided: provided.0,
                allowed: self.allowed.0,
            })?;
        let mut rest = std::mem::take(&mut self.buf);
        let mut leftover = rest.split_off(ia_len);
        let mut initial_payload = rest;
        keyed.decrypt.apply(&mut initial_payload);
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&method.bit().to_be_bytes()); // crypto_select
        let pad_d = std::mem::take(&mut self.pad_d);
        self.out.extend_from_slice(
            &u16::try_from(pad_d.len())
                .expect("pad <= 512")
                .to_be_bytes(),
        );
        self.out.extend_from_slice(&pad_d);
        keyed.encrypt.apply(&mut self.out[start..]);
        let ciphers = match method {
            Method::Plaintext => None,
            Method::Rc4 => {
                keyed.decrypt.apply(&mut leftover);
                Some(super::Ciphers {
                    decrypt: keyed.decrypt,
                    encrypt: keyed.encrypt,
                })
            }
        };
        Ok(Established {
            info_hash: keyed.info_hash,
            method,
            ciphers,
            initial_payload,
            leftover,
        })
    }
}
