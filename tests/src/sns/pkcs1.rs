//! RSA PKCS#1 v1.5 signing with SHA-1, which SNS's `SignatureVersion` 1 uses and which
//! aws-lc-rs only verifies (it signs with SHA-256 and up). Test support only: a plain
//! Montgomery exponentiation, not constant-time, over a throwaway key.

use aws_lc_rs::digest;

/// DigestInfo of a SHA-1 hash, up to the hash itself (RFC 8017, 9.2 note 1).
const SHA1_DIGEST_INFO: [u8; 15] =
    [0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14];
/// DigestInfo of a SHA-256 hash, up to the hash itself.
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// An RSA private key's modulus and private exponent, as little-endian 32-bit limbs.
pub(crate) struct RsaPrivate {
    n: Vec<u32>,
    d: Vec<u32>,
    modulus_len: usize,
}

impl RsaPrivate {
    /// From a PKCS#8 `PrivateKeyInfo` holding an `RSAPrivateKey`.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let info = Der(der).sequence()?;
        let (_version, rest) = info.element(0x02)?;
        let (_algorithm, rest) = Der(rest).element(0x30)?;
        let (private, _) = Der(rest).element(0x04)?;
        let key = Der(private).sequence()?;
        let (_version, rest) = key.element(0x02)?;
        let (n, rest) = Der(rest).element(0x02)?;
        let (_e, rest) = Der(rest).element(0x02)?;
        let (d, _) = Der(rest).element(0x02)?;
        let n_bytes = strip_zeros(n);
        let n = limbs(n_bytes);
        let d = limbs(strip_zeros(d));
        (n.first()? & 1 == 1).then_some(RsaPrivate { d, modulus_len: n_bytes.len(), n })
    }

    /// The PKCS#1 v1.5 signature of `message` with SHA-1 (`sha256` false) or SHA-256.
    pub(crate) fn sign(&self, message: &[u8], sha256: bool) -> Vec<u8> {
        let (prefix, hash): (&[u8], _) = if sha256 {
            (&SHA256_DIGEST_INFO, digest::digest(&digest::SHA256, message))
        } else {
            (&SHA1_DIGEST_INFO, digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, message))
        };
        let t_len = prefix.len() + hash.as_ref().len();
        let mut em = vec![0xff; self.modulus_len];
        em[0] = 0;
        em[1] = 1;
        em[self.modulus_len - t_len - 1] = 0;
        em[self.modulus_len - t_len..self.modulus_len - hash.as_ref().len()].copy_from_slice(prefix);
        em[self.modulus_len - hash.as_ref().len()..].copy_from_slice(hash.as_ref());
        let s = Montgomery::new(&self.n).pow(&limbs(&em), &self.d);
        let mut out = vec![0; self.modulus_len];
        for (i, byte) in out.iter_mut().rev().enumerate() {
            *byte = (s[i / 4] >> (8 * (i % 4))) as u8;
        }
        out
    }
}

/// A DER reader over just what a PKCS#8 RSA key needs.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The first element, if it has tag `tag`, and what follows it.
    fn element(&self, tag: u8) -> Option<(&'a [u8], &'a [u8])> {
        let (&first, rest) = self.0.split_first()?;
        if first != tag {
            return None;
        }
        let (&len, mut rest) = rest.split_first()?;
        let len = if len < 0x80 {
            usize::from(len)
        } else {
            let count = usize::from(len & 0x7f);
            if count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count].iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
            rest = &rest[count..];
            len
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }

    /// The contents of the SEQUENCE this starts with.
    fn sequence(&self) -> Option<Der<'a>> {
        self.element(0x30).map(|(inner, _)| Der(inner))
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Big-endian bytes to little-endian 32-bit limbs.
fn limbs(be: &[u8]) -> Vec<u32> {
    be.rchunks(4).map(|chunk| chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b))).collect()
}

/// Arithmetic modulo an odd `n` in Montgomery form (R = 2^(32·k)).
struct Montgomery<'a> {
    n: &'a [u32],
    /// -n⁻¹ mod 2³².
    n0: u32,
    /// R² mod n.
    r2: Vec<u32>,
}

impl<'a> Montgomery<'a> {
    fn new(n: &'a [u32]) -> Self {
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n[0].wrapping_mul(inv)));
        }
        // 1 doubled 2·32·k times, reduced each time: R² mod n.
        let mut r2 = vec![0u32; n.len()];
        r2[0] = 1;
        for _ in 0..2 * 32 * n.len() {
            let carry = shift_left(&mut r2);
            if carry || !less(&r2, n) {
                subtract(&mut r2, n);
            }
        }
        Montgomery { n, n0: inv.wrapping_neg(), r2 }
    }

    /// a·b·R⁻¹ mod n, for a, b < n.
    fn mul(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let k = self.n.len();
        let mut t = vec![0u32; k + 2];
        for &ai in a.iter().chain(std::iter::repeat(&0)).take(k) {
            let mut carry = 0u64;
            for (tj, &bj) in t.iter_mut().zip(b.iter().chain(std::iter::repeat(&0))).take(k) {
                let s = u64::from(*tj) + u64::from(ai) * u64::from(bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[k]) + carry;
            t[k] = s as u32;
            t[k + 1] = (s >> 32) as u32;

            let m = t[0].wrapping_mul(self.n0);
            let mut carry = (u64::from(t[0]) + u64::from(m) * u64::from(self.n[0])) >> 32;
            for j in 1..k {
                let s = u64::from(t[j]) + u64::from(m) * u64::from(self.n[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[k]) + carry;
            t[k - 1] = s as u32;
            t[k] = t[k + 1] + (s >> 32) as u32;
            t[k + 1] = 0;
        }
        let high = t[k] != 0;
        t.truncate(k);
        if high || !less(&t, self.n) {
            subtract(&mut t, self.n);
        }
        t
    }

    /// base^exponent mod n.
    fn pow(&self, base: &[u32], exponent: &[u32]) -> Vec<u32> {
        let base = self.mul(base, &self.r2);
        let mut one = vec![0u32; self.n.len()];
        one[0] = 1;
        let mut result = self.mul(&one, &self.r2);
        for limb in exponent.iter().rev() {
            for bit in (0..32).rev() {
                result = self.mul(&result, &result);
                if limb >> bit & 1 == 1 {
                    result = self.mul(&result, &base);
                }
            }
        }
        self.mul(&result, &one)
    }
}

/// x <<= 1; whether a bit fell off.
fn shift_left(x: &mut [u32]) -> bool {
    let mut carry = 0;
    for limb in x.iter_mut() {
        let next = *limb >> 31;
        *limb = *limb << 1 | carry;
        carry = next;
    }
    carry == 1
}

/// x < y, same length.
fn less(x: &[u32], y: &[u32]) -> bool {
    for (a, b) in x.iter().rev().zip(y.iter().rev()) {
        if a != b {
            return a < b;
        }
    }
    false
}

/// x -= y (mod 2^(32·len)).
fn subtract(x: &mut [u32], y: &[u32]) {
    let mut borrow = 0i64;
    for (a, &b) in x.iter_mut().zip(y) {
        let d = i64::from(*a) - i64::from(b) - borrow;
        *a = d as u32;
        borrow = i64::from(d < 0);
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RsaKeyPair, UnparsedPublicKey};
    use rcgen::{KeyPair, PKCS_RSA_SHA256, RsaKeySize};

    use super::*;

    #[test]
    fn signs_as_aws_lc_rs_does_and_verifies_with_sha1() {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        let private = RsaPrivate::from_pkcs8(&key.serialize_der()).unwrap();
        let reference = RsaKeyPair::from_pkcs8(&key.serialize_der()).unwrap();
        let message = b"Message\nhello\nType\nNotification\n";

        // PKCS#1 v1.5 is deterministic: the same key and message give the same bytes.
        let mut expected = vec![0; reference.public_modulus_len()];
        reference.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut expected).unwrap();
        assert_eq!(private.sign(message, true), expected);

        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, key.public_key_raw());
        let sha1 = private.sign(message, false);
        public.verify(message, &sha1).unwrap();
        assert!(public.verify(b"Message\nhello!\nType\nNotification\n", &sha1).is_err());
    }
}
