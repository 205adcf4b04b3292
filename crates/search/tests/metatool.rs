//! Quality guard on the MetaTool development set (`../shared/data/metatool` from the project's
//! root). Skipped, with a message, when the data is not there.

use std::path::PathBuf;

use patchbay_search::{Document, SearchIndex};
use serde_json::Value;

/// The target is 0.65, not reached: the hybrid ranking (BM25F + static embeddings)
/// measures 0.621 (see docs/search.md). This guard sits just under that, so a regression fails;
/// raise it as the ranking improves.
const MIN_RECALL_AT_5: f64 = 0.615;

#[test]
fn metatool_recall_at_5() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/metatool");
    let (Ok(catalog), Ok(queries)) = (
        std::fs::read_to_string(dir.join("catalog.json")),
        std::fs::read_to_string(dir.join("queries.jsonl")),
    ) else {
        println!("skipping: MetaTool data not found at {}", dir.display());
        return;
    };
    let catalog: Value = serde_json::from_str(&catalog).expect("catalog.json parses");
    let docs: Vec<Document> = catalog["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default().to_string();
            Document {
                name: name.clone(),
                namespace: "metatool".into(),
                tool: name,
                description: t["description"].as_str().unwrap_or_default().into(),
                params: Vec::new(),
            }
        })
        .collect();
    let mut index = SearchIndex::new();
    index.replace_namespace("metatool", docs);

    let (mut hits, mut total) = (0usize, 0usize);
    for line in queries.lines() {
        let Ok(q) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(query), Some(gold)) = (q["query"].as_str(), q["gold"][0].as_str()) else {
            continue;
        };
        total += 1;
        if index
            .search(query, None, 5, &|_| true)
            .iter()
            .any(|h| h.name == gold)
        {
            hits += 1;
        }
    }
    let recall = hits as f64 / total.max(1) as f64;
    println!("MetaTool Recall@5 on {total} queries: {recall:.3}");
    assert!(total > 1000, "too few queries read: {total}");
    assert!(
        recall >= MIN_RECALL_AT_5,
        "Recall@5 {recall:.3} < {MIN_RECALL_AT_5}"
    );
}
