//! The 768-bit Diffie-Hellman exchange of MSE: generator 2 and the spec's 768-bit prime
//! (the Oakley group 1 prime). Public keys and the shared secret `S` travel as 96 bytes,
//! big-endian, left-padded with zeros. Private keys are 160 random bits, as the spec advises.

use num_bigint::BigUint;

use super::MseError;

/// Bytes of a public key or of the shared secret on the wire (768 bits).
pub const KEY_LEN: usize = 768 / 8;

/// Random bytes of a private key (160 bits).
const PRIVATE_LEN: usize = 160 / 8;

/// P of the MSE spec.
const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B5766\
25E7EC6F44C42E9A63A36210000000000090563";

/// G of the MSE spec.
const GENERATOR: u32 = 2;

fn prime() -> BigUint {
    BigUint::parse_bytes(PRIME_HEX, 16).expect("the MSE prime parses")
}

fn to_wire(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// One side's key pair.
pub struct Keypair {
    private: BigUint,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keypair(..)")
    }
}

impl Keypair {
    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut impl rand::RngCore) -> Self {
        let mut x = [0u8; PRIVATE_LEN];
        rng.fill_bytes(&mut x);
        x[0] |= 0x80; // full 160 bits, never 0 or 1
        let private = BigUint::from_bytes_be(&x);
        let public = to_wire(&BigUint::from(GENERATOR).modpow(&private, &prime()));
        Self { private, public }
    }

    /// `G^X mod P`, as sent.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// `S = Y^X mod P` for the peer's public key `Y`. Keys outside `2..=P-2` (which would
    /// make `S` 0, 1 or ±1) are refused.
    pub fn shared_secret(&self, theirs: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(theirs);
        let two = BigUint::from(2u32);
        if y < two || y > &p - &two {
            return Err(MseError::BadPublicKey);
        }
        Ok(to_wire(&y.modpow(&self.private, &p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn both_sides_derive_the_same_secret() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..4 {
            let a = Keypair::generate(&mut rng);
            let b = Keypair::generate(&mut rng);
            let sa = a.shared_secret(b.public()).unwrap();
            let sb = b.shared_secret(a.public()).unwrap();
            assert_eq!(sa, sb);
            assert_ne!(sa, [0u8; KEY_LEN]);
        }
    }

    #[test]
    fn prime_is_768_bits() {
        assert_eq!(prime().bits(), 768);
    }

    #[test]
    fn degenerate_public_keys_are_refused() {
        let a = Keypair::generate(&mut StdRng::seed_from_u64(2));
        let mut one = [0u8; KEY_LEN];
        one[KEY_LEN - 1] = 1;
        assert_eq!(a.shared_secret(&one), Err(MseError::BadPublicKey));
        assert_eq!(
            a.shared_secret(&[0u8; KEY_LEN]),
            Err(MseError::BadPublicKey)
        );
        assert_eq!(
            a.shared_secret(&[0xffu8; KEY_LEN]),
            Err(MseError::BadPublicKey)
        );
        let p_minus_1 = to_wire(&(prime() - 1u32));
        assert_eq!(a.shared_secret(&p_minus_1), Err(MseError::BadPublicKey));
    }
}
