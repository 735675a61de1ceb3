//! Bitfield packing: piece `i` is bit `0x80 >> (i % 8)` of byte `i / 8`, most significant bit
//! first (docs/PROTOCOL.md, "bitfield"). The server packs what it has, the downloader unpacks
//! what its sharer has.

/// The pieces a `bitfield` of `num_pieces` says the sender has; missing bytes read as zeros
/// (the codec's `check_bitfield` refuses a bitfield of the wrong length before this).
pub fn bits_to_bools(num_pieces: u32, bits: &[u8]) -> Vec<bool> {
    (0..num_pieces as usize).map(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)).collect()
}

/// The `bitfield` bytes for `have`, spare bits of the last byte zero.
pub fn bools_to_bits(have: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; have.len().div_ceil(8)];
    for (i, h) in have.iter().enumerate() {
        if *h {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_leaves_spare_bits_zero() {
        for n in [0usize, 1, 7, 8, 9, 17] {
            let have: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
            let bits = bools_to_bits(&have);
            assert_eq!(bits.len(), n.div_ceil(8));
            assert_eq!(crate::piece::check_bitfield(n as u32, &bits), Ok(()), "n = {n}");
            assert_eq!(bits_to_bools(n as u32, &bits), have, "n = {n}");
        }
        assert_eq!(bools_to_bits(&[true, false, true]), vec![0b1010_0000]);
    }
}
