//! Where things go among the live brokers: a partition's nominal leader
//! (only for cache affinity: any broker serves any partition), a group's
//! coordinator, who runs the storage upkeep. Rendezvous hashing: each key
//! goes to the broker with the highest hash of (key, broker id), so when a
//! broker joins or leaves only the keys it wins or held move.
//!
//! The hash is FNV-1a with a 64-bit finalizer, written here because it must
//! give the same answer in every broker process and every build (the
//! standard library's hasher is randomly keyed per process).

use sluice_catalog::BrokerRecord;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The broker of `brokers` that `key` hashes to (`None` if there is none).
pub fn owner<'a>(key: &[u8], brokers: &'a [BrokerRecord]) -> Option<&'a BrokerRecord> {
    brokers
        .iter()
        .max_by_key(|b| (fnv1a(&[key, &b.broker_id.to_be_bytes()]), b.broker_id))
}

/// The key of a partition.
pub fn partition_key(topic: &uuid::Uuid, partition: i32) -> Vec<u8> {
    let mut k = topic.as_bytes().to_vec();
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The key of a consumer group.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut k = b"group:".to_vec();
    k.extend_from_slice(group.as_bytes());
    k
}

/// The zone a client names in its `client.id` (`zone=...`, as WarpStream
/// and Bufstream read it), if any.
pub fn zone_of_client_id(client_id: &str) -> Option<&str> {
    let at = client_id.find("zone=")?;
    let rest = &client_id[at + "zone=".len()..];
    let end = rest.find([',', ';', ' ', '&', '|']).unwrap_or(rest.len());
    let zone = &rest[..end];
    (!zone.is_empty()).then_some(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerRecord {
        BrokerRecord {
            broker_id: id,
            host: "h".into(),
            port: 1,
            rack: None,
            epoch: 1,
            lease_expires_ms: 0,
            lease_age_ms: 0,
        }
    }

    #[test]
    fn keys_spread_and_only_a_leavers_keys_move() {
        let three: Vec<BrokerRecord> = [1, 2, 3].map(broker).to_vec();
        let two: Vec<BrokerRecord> = [1, 3].map(broker).to_vec();
        let t = uuid::Uuid::from_u128(42);
        let mut counts = [0usize; 4];
        for p in 0..300 {
            let k = partition_key(&t, p);
            let before = owner(&k, &three).unwrap().broker_id;
            counts[before as usize] += 1;
            let after = owner(&k, &two).unwrap().broker_id;
            if before != 2 {
                assert_eq!(
                    before, after,
                    "partition {p} moved though its broker stayed"
                );
            }
        }
        for id in 1..=3 {
            assert!(
                (60..=140).contains(&counts[id]),
                "uneven spread: {counts:?}"
            );
        }
        assert!(owner(b"x", &[]).is_none());
    }

    /// Every broker, of every build, must place keys alike: these values
    /// were computed independently (a Python transcription of the hash).
    #[test]
    fn the_hash_is_pinned() {
        assert_eq!(fnv1a(&[b"stable"]), 0x21c1_64bc_d8ed_6ba2);
        let three: Vec<BrokerRecord> = [1, 2, 3].map(broker).to_vec();
        let placed: Vec<i32> = ["orders", "audit", "eval"]
            .iter()
            .map(|g| owner(&group_key(g), &three).unwrap().broker_id)
            .collect();
        assert_eq!(placed, vec![2, 3, 2]);
    }

    #[test]
    fn zones_in_client_ids() {
        assert_eq!(zone_of_client_id("app,zone=eu-1a"), Some("eu-1a"));
        assert_eq!(zone_of_client_id("zone=b;x=1"), Some("b"));
        assert_eq!(zone_of_client_id("rdkafka"), None);
        assert_eq!(zone_of_client_id("zone="), None);
    }
}
