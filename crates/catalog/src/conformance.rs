//! The behaviour every catalog engine must show, as one test suite run
//! against SQLite (unit tests) and a real PostgreSQL server
//! (`tests/postgres.rs`). `open` must return a catalog over the same, at
//! first empty, database each time it is called (a second call checks that
//! what was written survives reopening).

use crate::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn topic(name: &str, partitions: i32) -> TopicRecord {
    TopicRecord {
        name: name.into(),
        id: Uuid::new_v4(),
        partitions,
        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        created_ms: 1,
    }
}

fn seg(t: Uuid, key: &str, base: i64, last: i64, ts: i64) -> SegmentRecord {
    SegmentRecord {
        topic: t,
        partition: 0,
        base_offset: base,
        last_offset: last,
        max_timestamp: ts,
        object_key: key.into(),
        position: 0,
        length: 10,
    }
}

fn object(key: &str) -> ObjectRecord {
    ObjectRecord {
        key: key.into(),
        size: 100,
        created_ms: 5,
    }
}

fn batch(t: Uuid, p: i32, position: u64, offsets: i64, seq: Option<(i64, i16, i32)>) -> FlushBatch {
    FlushBatch {
        topic: t,
        partition: p,
        position,
        length: 10,
        offsets,
        max_timestamp: 1000 + position as i64,
        txn: None,
        producer: seq.map(|(id, epoch, first)| ProducerSeq {
            producer_id: id,
            epoch,
            first_seq: first,
            last_seq: first + offsets as i32 - 1,
        }),
    }
}

fn flush(key: &str, batches: Vec<FlushBatch>) -> FlushCommit {
    FlushCommit {
        writer: 1,
        fence: None,
        object: object(key),
        batches,
        max_row_bytes: 25,
        max_age_ms: i64::MAX / 2,
    }
}

/// Runs every check; panics on the first failure.
pub fn run(open: &dyn Fn() -> Arc<Catalog>) {
    topics_uploads_offsets_and_replays(open);
    flush_commits_assign_offsets_and_check_sequences(open);
    trims_compaction_swaps_and_garbage(open);
    brokers_and_leases(open);
}

fn topics_uploads_offsets_and_replays(open: &dyn Fn() -> Arc<Catalog>) {
    let t = topic("a", 3);
    {
        let c = open();
        c.create_topic(&t).unwrap();
        assert!(matches!(
            c.create_topic(&t),
            Err(CatalogError::TopicExists(_))
        ));
        c.commit_upload(&UploadCommit {
            objects: vec![object("o0")],
            segments: vec![seg(t.id, "o0", 0, 9, 100), seg(t.id, "o0", 10, 19, 200)],
            producers: vec![ProducerStateRecord {
                topic: t.id,
                partition: 0,
                producer_id: 1000,
                epoch: 0,
                batches: vec![ProducerBatch {
                    first_seq: 0,
                    last_seq: 9,
                    base_offset: 0,
                    last_offset: 9,
                }],
            }],
            ..Default::default()
        })
        .unwrap();
    }
    let c = open();
    assert_eq!(c.list_topics().unwrap(), vec![t.clone()]);
    let states = c.partition_states().unwrap();
    assert_eq!(states.len(), 3, "every partition has a row from creation");
    let p0 = states.iter().find(|s| s.partition == 0).unwrap();
    assert_eq!((p0.uploaded_end, p0.bytes), (20, 20));
    assert_eq!(c.segments_from(t.id, 0, 12, 10).unwrap().len(), 1);
    assert_eq!(c.segments_from(t.id, 0, 0, 10).unwrap().len(), 2);
    assert_eq!(c.segments_from(t.id, 0, 0, 1).unwrap().len(), 1);
    let s = c
        .first_segment_at_or_after_time(t.id, 0, 150)
        .unwrap()
        .unwrap();
    assert_eq!(s.base_offset, 10);
    assert!(c
        .first_segment_at_or_after_time(t.id, 0, 250)
        .unwrap()
        .is_none());
    assert_eq!(c.producer_states().unwrap().len(), 1);
    let a = c.allocate_producer_id().unwrap();
    assert_eq!(c.allocate_producer_id().unwrap(), a + 1);
    let id = c.cluster_id().unwrap();
    assert_eq!(open().cluster_id().unwrap(), id);

    c.set_partition_count("a", 5).unwrap();
    let mut configs = t.configs.clone();
    configs.insert("cleanup.policy".into(), "delete".into());
    c.set_topic_configs("a", &configs).unwrap();
    let listed = c.list_topics().unwrap();
    assert_eq!((listed[0].partitions, &listed[0].configs), (5, &configs));
    assert_eq!(c.partition_states().unwrap().len(), 5);
    assert!(matches!(
        c.set_partition_count("nope", 2),
        Err(CatalogError::NoSuchTopic(_))
    ));

    let off = |p: i32, o: i64| CommittedOffset {
        topic: "a".into(),
        partition: p,
        offset: o,
        leader_epoch: -1,
        metadata: Some("m\0with a NUL".into()),
        commit_ms: 9,
    };
    c.commit_offsets("g", &[off(0, 5), off(1, 7)], None)
        .unwrap();
    c.commit_offsets("g", &[off(0, 6)], None).unwrap();
    assert_eq!(c.group_offsets("g").unwrap(), vec![off(0, 6), off(1, 7)]);
    assert_eq!(c.offset_groups().unwrap(), vec!["g".to_string()]);
    c.commit_offsets("h", &[off(2, 1)], None).unwrap();
    let all = c.all_offsets().unwrap();
    assert_eq!(
        all,
        vec![
            ("g".to_string(), off(0, 6)),
            ("g".to_string(), off(1, 7)),
            ("h".to_string(), off(2, 1))
        ]
    );
    c.delete_offsets("h", None).unwrap();
    c.delete_offsets("g", Some(&[("a".into(), 0)])).unwrap();
    assert_eq!(c.group_offsets("g").unwrap(), vec![off(1, 7)]);
    c.delete_offsets("g", None).unwrap();
    assert!(c.offset_groups().unwrap().is_empty());

    let replay = |o: i64, at: i64| ReplayRecord {
        dlq_topic: "a-dlq".into(),
        partition: 0,
        offset: o,
        target_topic: "a".into(),
        target_partition: 0,
        target_offset: 100 + o,
        replayed_ms: at,
    };
    c.record_replays(&[replay(1, 10), replay(2, 10)]).unwrap();
    c.record_replays(&[replay(1, 10), replay(1, 20)]).unwrap();
    let mut replayed = c.replayed("a-dlq").unwrap();
    replayed.sort();
    assert_eq!(replayed, vec![(0, 1), (0, 2)]);
    let pending = |id: i64, p: i32, offsets: Vec<i64>| PendingReplay {
        producer_id: id,
        dlq_topic: "a-dlq".into(),
        partition: p,
        dlq_offsets: offsets,
        target_topic: "a".into(),
        target_partition: 1,
        created_ms: 30 + id,
    };
    c.begin_replays(&[
        pending(9, 0, vec![3, 5]),
        pending(8, 0, vec![4]),
        pending(7, 1, vec![0]),
    ])
    .unwrap();
    assert_eq!(
        c.pending_replays(Some(("a-dlq", 0))).unwrap(),
        vec![pending(8, 0, vec![4]), pending(9, 0, vec![3, 5])],
        "one partition's, oldest first"
    );
    assert_eq!(c.pending_replays(None).unwrap().len(), 3);
    assert!(
        c.begin_replays(&[pending(9, 0, vec![6])]).is_err(),
        "a producer id serves one batch"
    );
    c.finish_replays(&[9, 8], &[replay(3, 40), replay(5, 40), replay(4, 40)])
        .unwrap();
    assert_eq!(
        c.pending_replays(None).unwrap(),
        vec![pending(7, 1, vec![0])]
    );
    let mut replayed = c.replayed("a-dlq").unwrap();
    replayed.sort();
    assert_eq!(replayed, vec![(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);

    let cred = |user: &str, m: &str, key: &str| CredentialRecord {
        user: user.into(),
        mechanism: m.into(),
        salt: "c2FsdA==".into(),
        iterations: 4096,
        stored_key: key.into(),
        server_key: "c2s=".into(),
        updated_ms: 5,
    };
    c.put_credential(&cred("alice", "SCRAM-SHA-256", "k1"))
        .unwrap();
    c.put_credential(&cred("alice", "SCRAM-SHA-512", "k2"))
        .unwrap();
    c.put_credential(&cred("bob", "SCRAM-SHA-256", "k3"))
        .unwrap();
    c.put_credential(&cred("alice", "SCRAM-SHA-256", "k4"))
        .unwrap();
    assert_eq!(
        c.credentials("alice").unwrap(),
        vec![
            cred("alice", "SCRAM-SHA-256", "k4"),
            cred("alice", "SCRAM-SHA-512", "k2")
        ],
        "replaced, by mechanism"
    );
    assert_eq!(c.all_credentials().unwrap().len(), 3);
    assert_eq!(
        c.delete_credentials("alice", Some("SCRAM-SHA-512"))
            .unwrap(),
        1
    );
    assert_eq!(c.delete_credentials("bob", None).unwrap(), 1);
    assert_eq!(c.delete_credentials("nobody", None).unwrap(), 0);
    assert_eq!(
        c.all_credentials().unwrap(),
        vec![cred("alice", "SCRAM-SHA-256", "k4")]
    );

    c.set_user_attribute("alice", "tenant", Some("acme"))
        .unwrap();
    c.set_user_attribute("alice", "tenant", Some("globex"))
        .unwrap();
    c.set_user_attribute("bob", "tenant", Some("acme")).unwrap();
    assert_eq!(
        c.user_attributes("alice").unwrap(),
        vec![("tenant".to_string(), "globex".to_string())]
    );
    c.set_user_attribute("bob", "tenant", None).unwrap();
    assert_eq!(c.all_user_attributes().unwrap().len(), 1);

    let acl = |name: &str, op: i8, perm: i8| AclRecord {
        resource_type: 2,
        resource_name: name.into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: op,
        permission: perm,
    };
    c.put_acls(&[acl("orders", 4, 3), acl("orders", 3, 3), acl("llm.", 3, 2)])
        .unwrap();
    c.put_acls(&[acl("orders", 4, 3)]).unwrap();
    let mut all = c.all_acls().unwrap();
    all.sort();
    let mut want = vec![acl("orders", 4, 3), acl("orders", 3, 3), acl("llm.", 3, 2)];
    want.sort();
    assert_eq!(all, want, "a rule added twice is there once");
    assert_eq!(
        c.delete_acls(&[acl("orders", 3, 3), acl("nope", 3, 3)])
            .unwrap(),
        1
    );
    assert_eq!(c.all_acls().unwrap().len(), 2);

    c.alter_quotas(
        r#"[["user","alice"]]"#,
        &[
            ("producer_byte_rate".into(), Some(1024.0)),
            ("consumer_byte_rate".into(), Some(2048.5)),
        ],
    )
    .unwrap();
    c.alter_quotas(
        r#"[["user","alice"]]"#,
        &[("consumer_byte_rate".into(), None)],
    )
    .unwrap();
    assert_eq!(
        c.all_quotas().unwrap(),
        vec![(
            r#"[["user","alice"]]"#.to_string(),
            "producer_byte_rate".to_string(),
            1024.0
        )]
    );

    c.delete_topic("a").unwrap();
    assert!(c.list_topics().unwrap().is_empty());
    assert!(c.segments_from(t.id, 0, 0, 10).unwrap().is_empty());
    assert!(c.partition_states().unwrap().is_empty());
    assert!(matches!(
        c.delete_topic("a"),
        Err(CatalogError::NoSuchTopic(_))
    ));
}

fn flush_commits_assign_offsets_and_check_sequences(open: &dyn Fn() -> Arc<Catalog>) {
    let c = open();
    let t = topic("flushed", 2);
    c.create_topic(&t).unwrap();
    let gone = Uuid::new_v4();
    // Producer 7 writes seq 0..4 then 5..6 to p0; a plain batch to p1; a
    // batch for a topic that does not exist.
    let first = c
        .commit_flush(&flush(
            "f1",
            vec![
                batch(t.id, 0, 0, 5, Some((7, 0, 0))),
                batch(t.id, 0, 10, 2, Some((7, 0, 5))),
                batch(t.id, 1, 20, 3, None),
                batch(gone, 0, 30, 1, None),
            ],
        ))
        .unwrap();
    assert_eq!(
        first.outcomes,
        vec![
            BatchOutcome::Appended { base_offset: 0 },
            BatchOutcome::Appended { base_offset: 5 },
            BatchOutcome::Appended { base_offset: 0 },
            BatchOutcome::UnknownPartition,
        ]
    );
    // p0's two adjacent batches share one row (20 bytes <= 25).
    let p0: Vec<(i64, i64, u64, u64)> = c
        .segments_from(t.id, 0, 0, 10)
        .unwrap()
        .iter()
        .map(|r| (r.base_offset, r.last_offset, r.position, r.length))
        .collect();
    assert_eq!(p0, vec![(0, 6, 0, 20)]);
    assert_eq!(first.rows.len(), 2);
    let mut ends: Vec<(i32, i64)> = first.ends.iter().map(|e| (e.partition, e.end)).collect();
    ends.sort();
    assert_eq!(ends, vec![(0, 7), (1, 3)]);

    // A retry of seq 5..6 (through another broker, say) is a duplicate;
    // seq 9 skips 7..8; epoch 0 after epoch 1 is stale; a new epoch starts
    // at sequence 0.
    let second = c
        .commit_flush(&flush(
            "f2",
            vec![
                batch(t.id, 0, 0, 2, Some((7, 0, 5))),
                batch(t.id, 0, 10, 1, Some((7, 0, 9))),
                batch(t.id, 0, 20, 1, Some((7, 0, 7))),
                batch(t.id, 0, 30, 1, Some((7, 1, 0))),
                batch(t.id, 0, 40, 1, Some((7, 0, 8))),
                batch(t.id, 0, 50, 1, Some((8, 0, 3))),
            ],
        ))
        .unwrap();
    assert_eq!(
        second.outcomes,
        vec![
            BatchOutcome::Duplicate { base_offset: 5 },
            BatchOutcome::OutOfOrder,
            BatchOutcome::Appended { base_offset: 7 },
            BatchOutcome::Appended { base_offset: 8 },
            BatchOutcome::StaleEpoch,
            BatchOutcome::OutOfOrder,
        ]
    );
    // Rows never span a skipped batch's bytes.
    let rows: Vec<(i64, u64, u64)> = second
        .rows
        .iter()
        .map(|r| (r.base_offset, r.position, r.length))
        .collect();
    assert_eq!(rows, vec![(7, 20, 20)]);
    let reopened = open();
    let p0 = reopened
        .partition_states()
        .unwrap()
        .into_iter()
        .find(|s| s.topic == t.id && s.partition == 0)
        .unwrap();
    assert_eq!(p0.uploaded_end, 9);
    let keys: Vec<String> = reopened.object_keys().unwrap();
    assert!(keys.contains(&"f1".to_string()) && keys.contains(&"f2".to_string()));
    // A flush whose object is older than its limit is refused whole.
    let stale = FlushCommit {
        max_age_ms: 60_000,
        ..flush("stale", vec![batch(t.id, 0, 0, 1, None)])
    };
    assert!(matches!(
        c.commit_flush(&stale),
        Err(CatalogError::Conflict(_))
    ));
    assert!(!c.object_keys().unwrap().contains(&"stale".to_string()));
    assert_eq!(c.segments_from(t.id, 0, 9, 10).unwrap().len(), 0);
    c.delete_topic("flushed").unwrap();
    let after = c
        .commit_flush(&flush("f3", vec![batch(t.id, 0, 0, 1, None)]))
        .unwrap();
    assert_eq!(after.outcomes, vec![BatchOutcome::UnknownPartition]);
    assert!(after.rows.is_empty());
}

fn trims_compaction_swaps_and_garbage(open: &dyn Fn() -> Arc<Catalog>) {
    let c = open();
    let t = topic("kept", 1);
    c.create_topic(&t).unwrap();
    c.commit_upload(&UploadCommit {
        objects: vec![object("u1")],
        segments: vec![
            seg(t.id, "u1", 0, 9, 100),
            seg(t.id, "u1", 10, 19, 200),
            seg(t.id, "u1", 20, 29, 300),
        ],
        producers: vec![],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.trim_partition(t.id, 0, 10).unwrap(), 10);
    assert_eq!(c.trim_partition(t.id, 0, 5).unwrap(), 0, "never backwards");
    let state = c.partition_states().unwrap();
    assert_eq!(state[0].log_start, 10);
    let new = vec![SegmentRecord {
        object_key: "c1".into(),
        length: 20,
        last_offset: 29,
        ..seg(t.id, "c1", 10, 29, 300)
    }];
    assert!(!c
        .replace_segments(t.id, 0, &[0, 10], &object("c0"), &new)
        .unwrap());
    assert_eq!(
        c.segments_from(t.id, 0, 0, 10).unwrap().len(),
        2,
        "a refused swap changes nothing"
    );
    assert!(c
        .replace_segments(t.id, 0, &[10, 20], &object("c1"), &new)
        .unwrap());
    let rows = c.segments_from(t.id, 0, 0, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].object_key, "c1");
    let mut garbage = c.unreferenced_objects(i64::MAX).unwrap();
    garbage.sort();
    assert!(garbage.contains(&"u1".to_string()));
    assert!(!garbage.contains(&"c1".to_string()));
    assert!(c.unreferenced_objects(0).unwrap().is_empty());
    c.forget_objects(&garbage).unwrap();
    assert!(!c.object_keys().unwrap().contains(&"u1".to_string()));
    c.delete_topic("kept").unwrap();
}

fn brokers_and_leases(open: &dyn Fn() -> Arc<Catalog>) {
    let c = open();
    let a = c.allocate_broker_id().unwrap();
    assert!(a > 1000, "allocated ids stay above hand-set ones");
    assert_eq!(c.allocate_broker_id().unwrap(), a + 1);
    let me = BrokerRecord {
        broker_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: Some("zone-a".into()),
        epoch: 0,
        lease_expires_ms: 0,
        lease_age_ms: 0,
    };
    let first = c.register_broker(&me, 60_000).unwrap();
    assert_eq!(first.epoch, 1);
    let live = c.live_brokers().unwrap();
    assert_eq!(live.len(), 1);
    assert!(
        (0..5_000).contains(&live[0].lease_age_ms),
        "just renewed: {live:?}"
    );
    let without_age = |b: &BrokerRecord| BrokerRecord {
        lease_age_ms: 0,
        ..b.clone()
    };
    assert_eq!(without_age(&live[0]), without_age(&first));
    let other = BrokerRecord {
        port: 9093,
        ..me.clone()
    };
    assert!(
        matches!(
            c.register_broker(&other, 60_000),
            Err(CatalogError::Conflict(_))
        ),
        "a live broker's id is refused to another address"
    );
    let again = c.register_broker(&me, 60_000).unwrap();
    assert_eq!(again.epoch, 2, "a restart takes a new epoch");
    assert!(
        !c.renew_lease(1, 1, 60_000).unwrap(),
        "the old epoch is fenced"
    );
    assert!(c.renew_lease(1, 2, 60_000).unwrap());
    // Writes carrying a fence hold only under the live epoch.
    let fenced_topic = topic("fenced", 1);
    c.create_topic(&fenced_topic).unwrap();
    let offset = CommittedOffset {
        topic: "fenced".into(),
        partition: 0,
        offset: 1,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 1,
    };
    let live_fence = Fence {
        broker_id: 1,
        epoch: 2,
    };
    let stale_fence = Fence {
        broker_id: 1,
        epoch: 1,
    };
    c.commit_offsets("fg", std::slice::from_ref(&offset), Some(live_fence))
        .unwrap();
    assert!(matches!(
        c.commit_offsets("fg", std::slice::from_ref(&offset), Some(stale_fence)),
        Err(CatalogError::Fenced(_))
    ));
    let fenced_flush = |fence| FlushCommit {
        fence: Some(fence),
        object: ObjectRecord {
            created_ms: crate::now_ms(),
            ..object(&format!("fenced-{}", fence.epoch))
        },
        ..flush("unused", vec![batch(fenced_topic.id, 0, 0, 1, None)])
    };
    assert!(matches!(
        c.commit_flush(&fenced_flush(stale_fence)),
        Err(CatalogError::Fenced(_))
    ));
    assert!(c.commit_flush(&fenced_flush(live_fence)).is_ok());
    c.delete_offsets("fg", None).unwrap();
    c.delete_topic("fenced").unwrap();
    let two = BrokerRecord {
        broker_id: 2,
        rack: None,
        port: 9094,
        ..me.clone()
    };
    let two = c.register_broker(&two, 60_000).unwrap();
    assert_eq!(c.live_brokers().unwrap().len(), 2);
    // An expired lease is not live, cannot be renewed nor written under,
    // and its id may be taken over.
    assert!(c.renew_lease(2, two.epoch, -1).unwrap());
    assert!(
        !c.renew_lease(2, two.epoch, 60_000).unwrap(),
        "an expired lease is not renewed"
    );
    let expired = Fence {
        broker_id: 2,
        epoch: two.epoch,
    };
    assert!(matches!(
        c.commit_offsets("fg", std::slice::from_ref(&offset), Some(expired)),
        Err(CatalogError::Fenced(_))
    ));
    assert!(c.offset_groups().unwrap().is_empty(), "nothing was written");
    let live: Vec<i32> = c
        .live_brokers()
        .unwrap()
        .iter()
        .map(|b| b.broker_id)
        .collect();
    assert_eq!(live, vec![1]);
    let taken = BrokerRecord {
        port: 9999,
        ..two.clone()
    };
    assert!(c.register_broker(&taken, 60_000).is_ok());
    // Jobs: one holder while its lease holds; taken over once it does not.
    let one = Fence {
        broker_id: 1,
        epoch: 2,
    };
    let three = c
        .register_broker(
            &BrokerRecord {
                broker_id: 3,
                port: 9095,
                ..me.clone()
            },
            60_000,
        )
        .unwrap();
    let three_fence = Fence {
        broker_id: 3,
        epoch: three.epoch,
    };
    assert!(c.claim_job("upkeep", one).unwrap());
    assert!(c.claim_job("upkeep", one).unwrap(), "the holder keeps it");
    assert!(
        !c.claim_job("upkeep", three_fence).unwrap(),
        "held by a live broker"
    );
    assert_eq!(
        c.jobs().unwrap(),
        vec![JobRecord {
            name: "upkeep".into(),
            broker_id: 1,
            epoch: 2,
            held: true
        }]
    );
    assert!(
        c.renew_lease(1, 2, -1).unwrap(),
        "broker 1's lease runs out"
    );
    assert!(matches!(
        c.claim_job("upkeep", one),
        Err(CatalogError::Fenced(_))
    ));
    assert!(c.claim_job("upkeep", three_fence).unwrap(), "taken over");
    assert_eq!(c.jobs().unwrap()[0].broker_id, 3);
    c.release_job("upkeep", one).unwrap();
    assert_eq!(c.jobs().unwrap().len(), 1, "only the holder releases");
    assert!(c.claim_job("replay", three_fence).unwrap());
    c.release_job("replay", three_fence).unwrap();
    assert_eq!(c.jobs().unwrap().len(), 1, "released");
    let one = c.register_broker(&me, 60_000).unwrap();
    assert!(!c
        .claim_job(
            "upkeep",
            Fence {
                broker_id: 1,
                epoch: one.epoch
            }
        )
        .unwrap());
    c.deregister_broker(3, three.epoch).unwrap();
    assert_eq!(c.claim_store("t1").unwrap(), "t1");
    assert_eq!(c.claim_store("t2").unwrap(), "t1", "the first claim stays");
    c.deregister_broker(1, one.epoch).unwrap();
    c.deregister_broker(2, two.epoch + 1).unwrap();
    assert!(c.live_brokers().unwrap().is_empty());
}
