//! RC4, the stream cipher of MSE/PE. Hand-written (a dozen lines) rather than a crate: MSE
//! only needs keystream application, and the key schedule here is the textbook one.
//!
//! MSE keys are `SHA1("keyA" | "keyB", S, SKEY)` and the first 1024 bytes of keystream are
//! discarded ([`Rc4::for_mse`]).

use sha1::{Digest, Sha1};

/// Keystream bytes MSE discards after keying (weak early RC4 output).
pub const MSE_DISCARD: usize = 1024;

/// One direction's RC4 state.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key state.
        f.write_str("Rc4(..)")
    }
}

impl Rc4 {
    /// Keys a fresh cipher (key length 1..=256 bytes).
    pub fn new(key: &[u8]) -> Self {
        assert!(!key.is_empty() && key.len() <= 256, "RC4 key length");
        let mut s = [0u8; 256];
        for (b, v) in s.iter_mut().zip(0..=u8::MAX) {
            *b = v;
        }
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, j as usize);
        }
        Self { s, i: 0, j: 0 }
    }

    /// The MSE cipher for one direction: key `SHA1(tag, secret, skey)`, 1024 bytes dropped.
    /// `tag` is `b"keyA"` for bytes the initiator sends, `b"keyB"` for the responder's.
    pub fn for_mse(tag: &[u8; 4], secret: &[u8], skey: &[u8; 20]) -> Self {
        let key: [u8; 20] = Sha1::new()
            .chain_update(tag)
            .chain_update(secret)
            .chain_update(skey)
            .finalize()
            .into();
        let mut c = Self::new(&key);
        c.apply(&mut [0u8; MSE_DISCARD]);
        c
    }

    /// XORs the next keystream bytes into `data` (encrypts and decrypts alike).
    #[inline]
    pub fn apply(&mut self, data: &mut [u8]) {
        let (mut i, mut j) = (self.i, self.j);
        for b in data {
            i = i.wrapping_add(1);
            j = j.wrapping_add(self.s[i as usize]);
            self.s.swap(i as usize, j as usize);
            let k = self.s[self.s[i as usize].wrapping_add(self.s[j as usize]) as usize];
            *b ^= k;
        }
        self.i = i;
        self.j = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(key: &[u8], text: &[u8]) -> Vec<u8> {
        let mut v = text.to_vec();
        Rc4::new(key).apply(&mut v);
        v
    }

    #[test]
    fn known_answer_vectors_match() {
        // The classic test vectors (Wikipedia "RC4", test vectors section).
        assert_eq!(
            encrypt(b"Key", b"Plaintext"),
            hex::decode("bbf316e8d940af0ad3").unwrap()
        );
        assert_eq!(
            encrypt(b"Wiki", b"pedia"),
            hex::decode("1021bf0420").unwrap()
        );
        assert_eq!(
            encrypt(b"Secret", b"Attack at dawn"),
            hex::decode("45a01f645fc35b383552544b9bf5").unwrap()
        );
    }

    #[test]
    fn split_application_equals_one_pass() {
        let text: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let whole = encrypt(b"k", &text);
        let mut c = Rc4::new(b"k");
        let mut parts = text.clone();
        let (a, b) = parts.split_at_mut(1001);
        c.apply(a);
        c.apply(b);
        assert_eq!(parts, whole);
    }

    #[test]
    fn mse_cipher_discards_1024_bytes() {
        let key: [u8; 20] = Sha1::new()
            .chain_update(b"keyA")
            .chain_update([1u8; 96])
            .chain_update([2u8; 20])
            .finalize()
            .into();
        let mut plain = Rc4::new(&key);
        let mut stream = vec![0u8; MSE_DISCARD + 8];
        plain.apply(&mut stream);
        let mut mse = Rc4::for_mse(b"keyA", &[1u8; 96], &[2u8; 20]);
        let mut next = [0u8; 8];
        mse.apply(&mut next);
        assert_eq!(&next[..], &stream[MSE_DISCARD..]);
    }
}
