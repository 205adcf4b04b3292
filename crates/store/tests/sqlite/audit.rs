use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_store::{
    AuditQuery, AuditRecord, AuditWriter, AuditWriterConfig, CallNode, Retention, Store, now_ms,
};
use serde_json::json;

use crate::{fixture, key, open};

fn record(call_id: &str, parent: Option<&str>, time: i64) -> AuditRecord {
    AuditRecord {
        time,
        actor: "alice".into(),
        vendor: None,
        credential: Some("tok_abcdefgh".into()),
        front_door: "http".into(),
        session: Some("s1".into()),
        operation: "github.create_issue".into(),
        call_id: call_id.into(),
        parent_call_id: parent.map(Into::into),
        duration_ms: 12,
        outcome: "ok".into(),
        bytes_in: 100,
        bytes_out: 2000,
        input: None,
        output: None,
    }
}

/// Records given to the writer are on disk after `close`, and read back after reopening.
#[tokio::test]
async fn writer_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms();
    {
        let store = open(dir.path(), Some(key(1)));
        let writer = AuditWriter::spawn(Arc::clone(&store), AuditWriterConfig::default());
        for i in 0..10 {
            let mut r = record(&format!("c{i}"), None, t0 + i);
            if i == 3 {
                r.input = Some(json!({"title": "bug"}));
                r.output = Some(json!({"number": 7}));
                r.vendor = Some("xiaozhi".into());
                r.outcome = "tool_error".into();
            }
            writer.record(r);
        }
        writer.close().await;
        let stats = writer.stats();
        assert_eq!((stats.written, stats.dropped, stats.failed), (10, 0, 0));
        // After close, records are dropped and counted, not lost silently.
        writer.record(record("late", None, t0));
        assert_eq!(writer.stats().dropped, 1);
    }
    let store = open(dir.path(), Some(key(1)));
    let all = store.audit_tail(100, None).await.unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].call_id, "c0");
    assert_eq!(all[9].call_id, "c9");
    let third = &all[3];
    assert_eq!(third.input, Some(json!({"title": "bug"})));
    assert_eq!(third.output, Some(json!({"number": 7})));
    assert_eq!(third.vendor.as_deref(), Some("xiaozhi"));
    assert_eq!(third, &{
        let mut r = record("c3", None, t0 + 3);
        r.input = Some(json!({"title": "bug"}));
        r.output = Some(json!({"number": 7}));
        r.vendor = Some("xiaozhi".into());
        r.outcome = "tool_error".into();
        r
    });
}

/// Without an explicit flush, the writer writes within its interval.
#[tokio::test]
async fn writer_flushes_on_its_interval_and_on_demand() {
    let f = fixture();
    let writer = AuditWriter::spawn(
        Arc::clone(&f.store),
        AuditWriterConfig {
            flush_interval: Duration::from_millis(50),
            ..AuditWriterConfig::default()
        },
    );
    writer.record(record("a", None, now_ms()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.store.audit_tail(10, None).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "not written within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.record(record("b", None, now_ms()));
    writer.flush().await;
    assert_eq!(f.store.audit_tail(10, None).await.unwrap().len(), 2);
    writer.close().await;
    writer.close().await; // a second close is harmless
}

/// A full batch is written at once, without waiting for the interval.
#[tokio::test]
async fn writer_writes_full_batches_early() {
    let f = fixture();
    let writer = AuditWriter::spawn(
        Arc::clone(&f.store),
        AuditWriterConfig {
            flush_interval: Duration::from_secs(3600),
            max_batch: 5,
            ..AuditWriterConfig::default()
        },
    );
    let t0 = now_ms();
    for i in 0..5 {
        writer.record(record(&format!("c{i}"), None, t0 + i));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while writer.stats().written < 5 {
        assert!(Instant::now() < deadline, "batch not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.store.audit_tail(10, None).await.unwrap().len(), 5);
    writer.close().await;
}

/// `record` never waits: with the writer unable to run (a single-threaded runtime that is never
/// yielded to), a full queue drops and counts the rest, and returns at once.
#[test]
fn writer_never_blocks_when_the_queue_is_full() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture();
    runtime.block_on(async {
        let writer = AuditWriter::spawn(
            Arc::clone(&f.store),
            AuditWriterConfig {
                queue_capacity: 4,
                ..AuditWriterConfig::default()
            },
        );
        let started = Instant::now();
        for i in 0..1000 {
            writer.record(record(&format!("c{i}"), None, i));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let stats = writer.stats();
        assert_eq!((stats.queued, stats.dropped, stats.written), (4, 996, 0));
        writer.close().await;
        assert_eq!(writer.stats().written, 4);
        let kept: Vec<_> = f
            .store
            .audit_tail(100, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.call_id)
            .collect();
        assert_eq!(kept, ["c0", "c1", "c2", "c3"]);
    });
}

/// The tree of a batched `call` holds the batch and its items, and an item's nested calls.
#[tokio::test]
async fn tree_of_a_batch() {
    let f = fixture();
    let t0 = now_ms();
    let mut batch = record("batch", None, t0);
    batch.operation = "call".into();
    let mut nested = record("nested", Some("item2"), t0 + 3);
    nested.operation = "fs.read_file".into();
    let records = vec![
        record("item1", Some("batch"), t0 + 1),
        record("item2", Some("batch"), t0 + 2),
        nested,
        record("unrelated", None, t0 + 4),
        record("other-child", Some("unrelated"), t0 + 5),
        batch,
    ];
    f.store.append_audit(records).await.unwrap();

    let tree = f.store.audit_tree("batch").await.unwrap();
    let ids: Vec<_> = tree.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(ids, ["batch", "item1", "item2", "nested"]);

    let root = CallNode::build(tree, "batch").unwrap();
    assert_eq!(root.record.operation, "call");
    let items: Vec<_> = root
        .children
        .iter()
        .map(|c| c.record.call_id.as_str())
        .collect();
    assert_eq!(items, ["item1", "item2"]);
    assert_eq!(root.children[1].children[0].record.call_id, "nested");

    let sub: Vec<_> = f
        .store
        .audit_tree("item2")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.call_id)
        .collect();
    assert_eq!(sub, ["item2", "nested"]);
    assert!(f.store.audit_tree("nope").await.unwrap().is_empty());
}

#[tokio::test]
async fn query_filters() {
    let f = fixture();
    let t0 = 1_000_000;
    let mut records = Vec::new();
    for i in 0..20i64 {
        let mut r = record(&format!("c{i}"), None, t0 + i * 1000);
        r.actor = if i % 2 == 0 { "alice" } else { "bob" }.into();
        r.operation = if i % 3 == 0 {
            "github.create_issue"
        } else {
            "fs.read_file"
        }
        .into();
        r.outcome = if i % 5 == 0 { "not_found" } else { "ok" }.into();
        records.push(r);
    }
    f.store.append_audit(records).await.unwrap();
    let ids = |rs: Vec<AuditRecord>| rs.into_iter().map(|r| r.call_id).collect::<Vec<_>>();

    let tail = f.store.audit_tail(3, Some("bob")).await.unwrap();
    assert_eq!(ids(tail), ["c15", "c17", "c19"]);

    let q = AuditQuery {
        since: Some(t0 + 5000),
        until: Some(t0 + 15000),
        operation: Some("github.*".into()),
        ..AuditQuery::default()
    };
    assert_eq!(
        ids(f.store.audit_query(q).await.unwrap()),
        ["c6", "c9", "c12"]
    );

    let q = AuditQuery {
        outcome: Some("not_found".into()),
        actor: Some("alice".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(f.store.audit_query(q).await.unwrap()), ["c0", "c10"]);

    // Only `*` is a wildcard; `?` is literal.
    let q = AuditQuery {
        operation: Some("fs.read_fil?".into()),
        ..AuditQuery::default()
    };
    assert!(f.store.audit_query(q).await.unwrap().is_empty());
    let q = AuditQuery {
        operation: Some("*read*".into()),
        limit: 2,
        ..AuditQuery::default()
    };
    assert_eq!(ids(f.store.audit_query(q).await.unwrap()), ["c17", "c19"]);
}

#[tokio::test]
async fn prune_by_age_and_by_count() {
    let f = fixture();
    let now = now_ms();
    let day = 86_400_000;
    let mut records = Vec::new();
    for i in 0..10i64 {
        // c0..c4 are 10 days old, c5..c9 are fresh.
        let time = if i < 5 { now - 10 * day + i } else { now + i };
        records.push(record(&format!("c{i}"), None, time));
    }
    f.store.append_audit(records).await.unwrap();

    let deleted = f
        .store
        .prune_audit(Retention {
            max_age: Some(Duration::from_secs(7 * 86_400)),
            max_rows: None,
        })
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    let deleted = f
        .store
        .prune_audit(Retention {
            max_age: None,
            max_rows: Some(3),
        })
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<_> = f
        .store
        .audit_tail(100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.call_id)
        .collect();
    assert_eq!(left, ["c7", "c8", "c9"]);
    assert_eq!(f.store.prune_audit(Retention::default()).await.unwrap(), 0);
    let deleted = f
        .store
        .prune_audit(Retention {
            max_age: None,
            max_rows: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(deleted, 3);
}

/// The store is usable as `Arc<dyn Store>` from many tasks, and the writer is cheap to clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_clones_from_many_tasks() {
    let f = fixture();
    let writer = AuditWriter::spawn(Arc::clone(&f.store), AuditWriterConfig::default());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                writer.record(record(&format!("t{t}-{i}"), None, i));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    writer.close().await;
    assert_eq!(writer.stats().written, 1000);
    let store: &dyn Store = &*f.store;
    assert_eq!(store.audit_tail(2000, None).await.unwrap().len(), 1000);
}
