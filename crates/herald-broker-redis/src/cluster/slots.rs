//! Which hash slot a Redis channel lives in.
//!
//! Redis Cluster splits its key space (sharded pub/sub channels included)
//! into 16384 slots: `CRC16(name) mod 16384`, where CRC16 is the XMODEM
//! variant (polynomial 0x1021, initial value 0) and, when the name holds a
//! non-empty `{hashtag}`, only the tag is hashed. The subscription manager
//! needs the slot of every channel to know which shard must carry it, and to
//! find the channels a slot migration or a failover affects; the publisher
//! needs it to send `SPUBLISH` to the right primary. This is the same
//! computation as the server's `CLUSTER KEYSLOT` (see the tests, checked
//! against a real server).

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM, bitwise (channel names are short; no table needed).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `name` that is hashed: the content of the first `{...}` when
/// it is non-empty, else the whole name (the server's rule).
pub fn hash_tag(name: &[u8]) -> &[u8] {
    if let Some(open) = name.iter().position(|&b| b == b'{')
        && let Some(len) = name[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &name[open + 1..open + 1 + len];
    }
    name
}

/// The hash slot of a key or sharded channel name, as `CLUSTER KEYSLOT`.
pub fn key_slot(name: &[u8]) -> u16 {
    crc16(hash_tag(name)) & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The standard check value of CRC-16/XMODEM, also quoted in the
        // Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn matches_cluster_keyslot() {
        // Results of `CLUSTER KEYSLOT` on redis-server 7.0.
        let cases: &[(&str, u16)] = &[
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("{}", 15257),
            ("a{b", 13340),
            ("", 0),
            ("herald:room/1", 3494),
            ("herald:#herald/nodes", 4040),
        ];
        for (name, slot) in cases {
            assert_eq!(key_slot(name.as_bytes()), *slot, "slot of {name:?}");
        }
    }

    #[test]
    fn hash_tags() {
        assert_eq!(hash_tag(b"{user}.a"), b"user");
        assert_eq!(
            hash_tag(b"x{}y"),
            b"x{}y",
            "empty tag hashes the whole name"
        );
        assert_eq!(
            hash_tag(b"foo{{bar}}"),
            b"{bar",
            "first {{ to the first }} after it"
        );
        assert_eq!(hash_tag(b"no tag"), b"no tag");
        assert_eq!(hash_tag(b"open{only"), b"open{only");
    }
}
