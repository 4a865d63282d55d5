//! How the embedded engine lays a document out in its file, and the index key of a
//! `(key, value)` pair.
//!
//! A document value is: the version (u64, little-endian), the number of fields (u32),
//! then per field the key's length (u32), the key, the value's length (u32), the value.
//! Keys are at most 256 bytes and a document at most 1 GiB, so u32 lengths suffice.
//! Decoding checks every length and UTF-8, so a damaged record is reported, never
//! answered half.
//!
//! A pair is indexed by a fixed 16-byte hash (128-bit FNV-1a), so a megabyte value costs
//! 16 bytes of index. Lookups re-check each candidate's fields, so a collision costs
//! time, never a wrong answer.

use crate::store::Fields;

/// Encodes a document's version and fields.
pub(crate) fn encode(version: u64, fields: &Fields) -> Vec<u8> {
    let size = 12 + fields.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (k, v) in fields {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes what [`encode`] wrote; `Err` names what is wrong.
pub(crate) fn decode(mut bytes: &[u8]) -> Result<(u64, Fields), String> {
    let version = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().map_err(|_| "short version")?);
    let count = read_u32(&mut bytes)?;
    let mut fields = Fields::new();
    for _ in 0..count {
        let k = read_str(&mut bytes)?;
        let v = read_str(&mut bytes)?;
        fields.insert(k, v);
    }
    if !bytes.is_empty() {
        return Err(format!("{} bytes after the last field", bytes.len()));
    }
    Ok((version, fields))
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("record truncated: {n} bytes wanted, {} left", bytes.len()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn read_u32(bytes: &mut &[u8]) -> Result<u32, String> {
    let b = take(bytes, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_str(bytes: &mut &[u8]) -> Result<String, String> {
    let len = read_u32(bytes)? as usize;
    let b = take(bytes, len)?;
    String::from_utf8(b.to_vec()).map_err(|e| format!("field is not UTF-8: {e}"))
}

/// The index key of a `(key, value)` pair: 128-bit FNV-1a over the key's length, the
/// key and the value. A fixed 16 bytes whatever the value's size (values can be
/// megabytes), stable across builds and platforms (the index is on disk). Two pairs
/// that collide share an index entry; lookups re-check every candidate's fields, so a
/// collision costs time, never a wrong answer.
pub(crate) fn pair_hash(key: &str, value: &str) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    let len = (key.len() as u64).to_le_bytes();
    for b in len.iter().chain(key.as_bytes()).chain(value.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_reported() {
        let fields: Fields =
            [("k".to_owned(), "v".to_owned()), ("ключ".to_owned(), "значение 🎉".to_owned())].into_iter().collect();
        let bytes = encode(7, &fields);
        assert_eq!(decode(&bytes), Ok((7, fields)));
        assert!(decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("truncated"));
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn the_pair_hash_is_stable_and_separates_key_from_value() {
        // Pinned: the index on disk depends on it.
        assert_eq!(pair_hash("kind", "user"), pair_hash("kind", "user"));
        assert_ne!(pair_hash("ab", "c"), pair_hash("a", "bc"));
        assert_eq!(pair_hash("", "")[..4], [0x9d, 0x30, 0xc1, 0xf7][..], "{:02x?}", pair_hash("", ""));
    }
}
