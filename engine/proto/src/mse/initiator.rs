//! The dialling side (A) of an MSE handshake. `Ya, PadA` go out at once; when `Yb` (96) is
//! in, the whole request goes out (`HASH('req1', S)`, the SKEY hash, `ENCRYPT(VC,
//! crypto_provide, len(PadC), PadC, len(IA), IA)`); then we search the encrypted VC within
//! `PadB`, read `ENCRYPT(crypto_select, len(PadD))` (6) and `ENCRYPT(PadD)`.

use super::dh::{KEY_LEN, Keypair};
use super::{
    Ciphers, CryptoSet, Established, MAX_PAD, Method, MseError, Progress, Rc4, SELECT_HEADER_LEN,
    VC, be_u16, be_u32, find, hash, random_pad, req2_hash, xor20,
};
use crate::InfoHash;

#[derive(Debug)]
enum State {
    Key,
    Vc {
        keyed: Keyed,
        encrypted_vc: [u8; 8],
    },
    Select(Keyed),
    PadD {
        keyed: Keyed,
        method: Method,
        pad_len: usize,
    },
    Ended,
}

#[derive(Debug)]
struct Keyed {
    decrypt: Rc4,
    encrypt: Rc4,
}

/// Side A of MSE: see the module header.
#[derive(Debug)]
pub struct Initiator {
    keys: Keypair,
    info_hash: InfoHash,
    offered: CryptoSet,
    initial_payload: Vec<u8>,
    pad_c: Vec<u8>,
    state: State,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Initiator {
    /// Starts a handshake for `info_hash` offering `offered`; `initial_payload` (at most
    /// [`super::MAX_IA_LEN`] bytes, usually our BT handshake) rides in the request. Keys
    /// and pads come from `rng`. `Ya, PadA` are ready in [`Initiator::poll_transmit`].
    pub fn new(
        rng: &mut impl rand::RngCore,
        info_hash: InfoHash,
        offered: CryptoSet,
        initial_payload: Vec<u8>,
    ) -> Self {
        assert!(initial_payload.len() <= super::MAX_IA_LEN, "IA too long");
        let keys = Keypair::generate(rng);
        let mut out = keys.public().to_vec();
        out.extend_from_slice(&random_pad(rng));
        Self {
            keys,
            info_hash,
            offered,
            initial_payload,
            pad_c: random_pad(rng),
            state: State::Key,
            buf: Vec::new(),
            out,
        }
    }

    /// Bytes to send now; poll after `new` and after every [`Initiator::handle_input`].
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Feeds received bytes. After `Done` or an error, the machine takes no more input.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Progress, MseError> {
        if matches!(self.state, State::Ended) {
            return Err(MseError::Finished);
        }
        self.buf.extend_from_slice(data);
        let r = self.advance();
        if !matches!(r, Ok(Progress::NeedMore)) {
            self.state = State::Ended;
        }
        r
    }

    fn advance(&mut self) -> Result<Progress, MseError> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Ended);
            let (next, used) = match state {
                State::Key => {
                    let Some(yb) = self.buf.first_chunk::<KEY_LEN>() else {
                        self.state = State::Key;
                        return Ok(Progress::NeedMore);
                    };
                    let secret = self.keys.shared_secret(yb)?;
                    (self.send_request(&secret), KEY_LEN)
                }
                State::Vc {
                    mut keyed,
                    encrypted_vc,
                } => {
                    let window = self.buf.len().min(MAX_PAD + VC.len());
                    match find(&self.buf[..window], &encrypted_vc) {
                        Some(at) => {
                            keyed.decrypt.apply(&mut [0u8; 8]); // step past the VC
                            (State::Select(keyed), at + VC.len())
                        }
                        None if window == MAX_PAD + VC.len() => {
                            return Err(MseError::NoVcSync { searched: window });
                        }
                        None => {
                            self.state = State::Vc {
                                keyed,
                                encrypted_vc,
                            };
                            return Ok(Progress::NeedMore);
                        }
                    }
                }
                State::Select(mut keyed) => {
                    let Some(h) = self.buf.first_chunk_mut::<SELECT_HEADER_LEN>() else {
                        self.state = State::Select(keyed);
                        return Ok(Progress::NeedMore);
                    };
                    keyed.decrypt.apply(h);
                    let selected = be_u32(&h[..4]);
                    let method = [Method::Plaintext, Method::Rc4]
                        .into_iter()
                        .find(|m| m.bit() == selected && self.offered.contains(*m))
                        .ok_or(MseError::BadSelect {
                            selected,
                            offered: self.offered.0,
                        })?;
                    let pad_len = be_u16(&h[4..6]);
                    if pad_len > MAX_PAD {
                        return Err(MseError::PadTooLong { len: pad_len });
                    }
                    let next = State::PadD {
                        keyed,
                        method,
                        pad_len,
                    };
                    (next, SELECT_HEADER_LEN)
                }
                State::PadD {
                    mut keyed,
                    method,
                    pad_len,
                } => {
                    if self.buf.len() < pad_len {
                        self.state = State::PadD {
                            keyed,
                            method,
                            pad_len,
                        };
                        return Ok(Progress::NeedMore);
                    }
                    keyed.decrypt.apply(&mut self.buf[..pad_len]);
                    let mut leftover = self.buf.split_off(pad_len);
                    let ciphers = match method {
                        Method::Plaintext => None,
                        Method::Rc4 => {
                            keyed.decrypt.apply(&mut leftover);
                            Some(Ciphers {
                                decrypt: keyed.decrypt,
                                encrypt: keyed.encrypt,
                            })
                        }
                    };
                    return Ok(Progress::Done(Box::new(Established {
                        info_hash: self.info_hash,
                        method,
                        ciphers,
                        initial_payload: Vec::new(),
                        leftover,
                    })));
                }
                State::Ended => return Err(MseError::Finished),
            };
            self.buf.drain(..used);
            self.state = next;
        }
    }

    /// Queues the request that follows `Yb` and returns the state that waits for B's VC.
    fn send_request(&mut self, secret: &[u8; KEY_LEN]) -> State {
        let skey = &self.info_hash.0;
        let mut encrypt = Rc4::for_mse(b"keyA", secret, skey);
        let decrypt = Rc4::for_mse(b"keyB", secret, skey);
        self.out.extend_from_slice(&hash(&[b"req1", secret]));
        self.out.extend_from_slice(&xor20(
            &req2_hash(&self.info_hash),
            &hash(&[b"req3", secret]),
        ));
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&self.offered.0.to_be_bytes()); // crypto_provide
        let pad_c = std::mem::take(&mut self.pad_c);
        self.out.extend_from_slice(
            &u16::try_from(pad_c.len())
                .expect("pad <= 512")
                .to_be_bytes(),
        );
        self.out.extend_from_slice(&pad_c);
        let ia = std::mem::take(&mut self.initial_payload);
        self.out
            .extend_from_slice(&u16::try_from(ia.len()).expect("IA <= 16 KiB").to_be_bytes());
        self.out.extend_from_slice(&ia);
        encrypt.apply(&mut self.out[start..]);
        let mut encrypted_vc = VC;
        decrypt.clone().apply(&mut encrypted_vc);
        State::Vc {
            keyed: Keyed { decrypt, encrypt },
            encrypted_vc,
        }
    }
}
