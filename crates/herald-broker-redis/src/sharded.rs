//! Spreading channels over several independent Redis servers.
//!
//! With `redis://a,redis://b,redis://c` every channel lives on exactly one
//! server, chosen by a hash of its name, so that publishers and subscribers
//! on every node meet on the same server without the servers knowing of
//! each other. The hash must give the same answer in every process, on
//! every platform and in every future version of Herald, so it is spelled
//! out here rather than borrowed from `std` (whose `DefaultHasher` may
//! change and whose `RandomState` differs per process):
//!
//! **shard = FNV-1a 32-bit (offset basis `0x811C9DC5`, prime `0x01000193`)
//! of the channel name's UTF-8 bytes — the Herald name, without the prefix —
//! modulo the number of servers**, servers numbered in the order of the URL
//! list.
//!
//! Consequences for operators: every node must list the same servers in the
//! same order; adding or removing a server moves most channels, so change
//! the list on all nodes at once (pub/sub keeps no state, so nothing else
//! needs migrating). One server down affects only its channels; the broker
//! reports itself down meanwhile.

/// FNV-1a, 32 bits.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811C_9DC5;
    for &byte in data {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The index (in the URL list) of the server that carries `channel` when
/// channels are sharded over `servers` servers.
///
/// ```
/// use herald_broker_redis::shard_index;
/// assert_eq!(shard_index("anything", 1), 0);
/// assert_eq!(shard_index("room/1", 3), shard_index("room/1", 3));
/// ```
pub fn shard_index(channel: &str, servers: usize) -> usize {
    if servers <= 1 {
        return 0;
    }
    (fnv1a32(channel.as_bytes()) as u64 % servers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a32(b""), 0x811C_9DC5);
        assert_eq!(fnv1a32(b"a"), 0xE40C_292C);
        assert_eq!(fnv1a32(b"foobar"), 0xBF9C_F968);
    }

    #[test]
    fn stable_assignments() {
        // Pinned: changing these breaks mixed-version clusters.
        let got: Vec<usize> = ["a", "foobar", "room/1", "#herald/nodes"]
            .iter()
            .map(|c| shard_index(c, 3))
            .collect();
        let want: Vec<usize> = ["a", "foobar", "room/1", "#herald/nodes"]
            .iter()
            .map(|c| (fnv1a32(c.as_bytes()) % 3) as usize)
            .collect();
        assert_eq!(got, want);
        assert_eq!(shard_index("a", 3), (0xE40C_292Cu32 % 3) as usize);
        assert_eq!(shard_index("foobar", 3), (0xBF9C_F968u32 % 3) as usize);
    }

    #[test]
    fn spreads_channels() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_index(&format!("room/{i}"), 3)] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }
}
