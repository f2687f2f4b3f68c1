//! The PostgreSQL engine against a real server: the shared conformance
//! suite, flushes from several brokers at once, change notifications, and
//! an unreachable database. The server comes from the end-to-end tests'
//! fixture (`tests/e2e/pg_server.py serve`), started once for this file and
//! stopped when the test process exits (its stdin pipe closes). A machine
//! without PostgreSQL fails here, with the install command in the message.

use sluice_catalog::changes::{DataChange, MetaChange, DATA_CHANNEL, META_CHANNEL};
use sluice_catalog::postgres::Heard;
use sluice_catalog::sql::read;
use sluice_catalog::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Server {
    _child: Mutex<Child>,
    url: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let work = std::env::temp_dir().join(format!("sluice-catalog-pg-{}", std::process::id()));
        let mut child = Command::new("python3")
            .arg(repo.join("tests/e2e/pg_server.py"))
            .arg("serve")
            .arg(&work)
            .current_dir(repo.join("tests/e2e"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run python3 tests/e2e/pg_server.py (bash scripts/install-test-deps.sh)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the server URL");
        assert!(
            line.starts_with("postgres://"),
            "pg_server.py did not start PostgreSQL (see its error above; bash scripts/install-test-deps.sh installs it)"
        );
        Server {
            _child: Mutex::new(child),
            url: line.trim().to_string(),
        }
    })
}

/// A fresh database on the shared server; its URL.
fn database(name: &str) -> String {
    let s = server();
    let admin =
        sluice_catalog::postgres::PgDb::connect(&s.url).expect("connect to the test server");
    read(&admin, |tx| {
        tx.execute(&format!("DROP DATABASE IF EXISTS {name}"), &[])?;
        tx.execute(&format!("CREATE DATABASE {name}"), &[])
    })
    .expect("create a test database");
    let base = s.url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&s.url);
    format!("{base}/{name}")
}

fn open(url: &str) -> Arc<Catalog> {
    Catalog::open(&CatalogUrl::Postgres(url.to_string())).expect("open the PostgreSQL catalog")
}

#[test]
fn postgres_engine_passes_the_conformance_suite() {
    let url = database("conformance");
    sluice_catalog::conformance::run(&|| open(&url));
}

#[test]
fn flushes_from_several_brokers_get_distinct_contiguous_offsets() {
    let url = database("concurrent_flushes");
    let first = open(&url);
    let topic = TopicRecord {
        name: "t".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 2,
        configs: Default::default(),
        created_ms: 0,
    };
    first.create_topic(&topic).unwrap();
    const BROKERS: usize = 3;
    const FLUSHES: usize = 40;
    let handles: Vec<_> = (0..BROKERS)
        .map(|b| {
            let url = url.clone();
            let t = topic.id;
            std::thread::spawn(move || {
                let c = open(&url);
                let mut got = Vec::new();
                for f in 0..FLUSHES {
                    // Partitions in both orders, so row locks are taken
                    // by flushes listing them differently.
                    let parts = if (b + f) % 2 == 0 { [0, 1] } else { [1, 0] };
                    let batches = parts
                        .iter()
                        .enumerate()
                        .map(|(i, &p)| FlushBatch {
                            topic: t,
                            partition: p,
                            position: i as u64 * 100,
                            length: 100,
                            offsets: 3,
                            max_timestamp: 0,
                            producer: None,
                            txn: None,
                        })
                        .collect();
                    let out = c
                        .commit_flush(&FlushCommit {
                            writer: b as i32,
                            fence: None,
                            object: ObjectRecord {
                                key: format!("b{b}-f{f}"),
                                size: 200,
                                created_ms: 0,
                            },
                            batches,
                            max_row_bytes: 1 << 20,
                            max_age_ms: i64::MAX / 2,
                        })
                        .unwrap();
                    for (o, &p) in out.outcomes.iter().zip(parts.iter()) {
                        match o {
                            BatchOutcome::Appended { base_offset } => got.push((p, *base_offset)),
                            other => panic!("unexpected outcome {other:?}"),
                        }
                    }
                }
                got
            })
        })
        .collect();
    let mut all: Vec<(i32, i64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    for p in 0..2 {
        let bases: Vec<i64> = all
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, b)| *b)
            .collect();
        let expected: Vec<i64> = (0..(BROKERS * FLUSHES) as i64).map(|i| i * 3).collect();
        assert_eq!(bases, expected, "partition {p}: every batch once, no gap");
    }
    let ends: Vec<i64> = first
        .partition_states()
        .unwrap()
        .iter()
        .map(|s| s.uploaded_end)
        .collect();
    assert_eq!(ends, vec![(BROKERS * FLUSHES * 3) as i64; 2]);
}

#[test]
fn other_brokers_hear_commits_and_topic_changes() {
    let url = database("notifications");
    let writer = open(&url);
    let listener = open(&url);
    let heard: Arc<Mutex<Vec<Heard>>> = Arc::default();
    let sink = heard.clone();
    let _listening = listener
        .listen(move |h| sink.lock().unwrap().push(h))
        .unwrap()
        .expect("a PostgreSQL catalog listens");
    let wait_for = |what: &str, pred: &dyn Fn(&[Heard]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pred(&heard.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "never heard {what}: {:?}",
                heard.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("the first resync", &|h| h.contains(&Heard::Resync));
    let topic = TopicRecord {
        name: "n".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        configs: Default::default(),
        created_ms: 0,
    };
    writer.create_topic(&topic).unwrap();
    let notice = |channel: &str, payload: &str| Heard::Notice {
        channel: channel.into(),
        payload: payload.into(),
    };
    let topics_changed = notice(META_CHANNEL, MetaChange::Topics.as_str());
    wait_for("the topic change", &|h| h.contains(&topics_changed));
    let out = writer
        .commit_flush(&FlushCommit {
            writer: 1,
            fence: None,
            object: ObjectRecord {
                key: "data/x.obj".into(),
                size: 10,
                created_ms: 0,
            },
            batches: vec![FlushBatch {
                topic: topic.id,
                partition: 0,
                position: 0,
                length: 10,
                offsets: 4,
                max_timestamp: 77,
                producer: None,
                txn: None,
            }],
            max_row_bytes: 1 << 20,
            max_age_ms: i64::MAX / 2,
        })
        .unwrap();
    let data_heard = |heard: &[Heard]| -> Option<DataChange> {
        heard.iter().find_map(|h| match h {
            Heard::Notice { channel, payload } if channel == DATA_CHANNEL => {
                Some(DataChange::decode(payload).unwrap())
            }
            _ => None,
        })
    };
    wait_for("the flush", &|h| data_heard(h).is_some());
    let change = data_heard(&heard.lock().unwrap()).unwrap();
    assert_eq!(change.rows, out.rows);
    assert_eq!(change.ends, out.ends);
    assert_eq!(change.ends[0].end, 4);
}

#[test]
fn an_unreachable_database_is_reported_as_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = sluice_catalog::postgres::PgDb::connect(&format!(
        "postgres://postgres:secret@127.0.0.1:{port}/none"
    ))
    .err()
    .expect("nothing listens there");
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(
        !text.contains("secret"),
        "the password is not shown: {text}"
    );
    assert!(text.contains(&port.to_string()), "{text}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
