//! Measures index build time, search latency, replace time and memory on a large catalog.
//!
//! ```text
//! cargo run --release -p patchbay-search --bin search-bench -- [SERVERS_JSONL] [QUERIES_JSONL] [--no-semantic]
//! ```
//! `SERVERS_JSONL` defaults to `../shared/data/smithery/servers.jsonl` (one MCP server per line:
//! `{"server", "description", "tools": [{"name", "description", "inputSchema"}]}`); queries come
//! from `QUERIES_JSONL` (default `../shared/data/metatool/queries.jsonl`, natural-language agent
//! queries), or, if that file is missing, from words of the tool descriptions. Each server
//! becomes one namespace (the last path segment of its name, sanitised); the first 1k, 5k and
//! 10k operations are indexed in turn.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use patchbay_search::{Document, Ranking, SearchIndex, params_from_schema};
use serde_json::Value;

/// Queries timed per catalog size.
const QUERIES: usize = 3000;
/// Builds timed per size; the median is reported.
const BUILD_RUNS: usize = 5;
const LIMIT: usize = 10;

fn main() {
    // `--no-semantic` measures the lexical ranking alone (semantic matching off).
    let all: Vec<String> = std::env::args().skip(1).collect();
    let semantic = !all.iter().any(|a| a == "--no-semantic");
    let ranking = Ranking {
        semantic: Ranking::default().semantic.filter(|_| semantic),
        ..Ranking::default()
    };
    let mut args = all.into_iter().filter(|a| a != "--no-semantic");
    let servers = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/smithery/servers.jsonl".into()),
    );
    let queries = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/metatool/queries.jsonl".into()),
    );
    let namespaces = match load_servers(&servers) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("search-bench: {e}");
            std::process::exit(1);
        }
    };
    let total: usize = namespaces.iter().map(|(_, d)| d.len()).sum();
    let queries = load_queries(&queries).unwrap_or_else(|| description_queries(&namespaces));
    println!(
        "{} namespaces, {total} operations, {} queries per size\n",
        namespaces.len(),
        queries.len()
    );
    println!(
        "{:>6} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "ops", "ns", "build ms", "p50 µs", "p99 µs", "ns p99 µs", "repl ms", "index MiB", "RSS MiB"
    );
    for size in [1_000, 5_000, 10_000] {
        let subset = take(&namespaces, size);
        let ops: usize = subset.iter().map(|(_, d)| d.len()).sum();

        let mut builds = Vec::new();
        let mut index = SearchIndex::with_ranking(ranking.clone());
        for _ in 0..BUILD_RUNS {
            drop(index);
            let docs = subset.clone();
            let start = Instant::now();
            index = SearchIndex::with_ranking(ranking.clone());
            for (ns, docs) in docs {
                index.replace_namespace(&ns, docs);
            }
            builds.push(start.elapsed());
        }

        let mut latencies = Vec::with_capacity(queries.len());
        for q in &queries {
            let start = Instant::now();
            std::hint::black_box(index.search(q, None, LIMIT, &|_| true));
            latencies.push(start.elapsed());
        }
        // The same queries filtered to one namespace each (round robin).
        let mut ns_latencies = Vec::with_capacity(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let ns = &subset[i % subset.len()].0;
            let start = Instant::now();
            std::hint::black_box(index.search(q, Some(ns), LIMIT, &|_| true));
            ns_latencies.push(start.elapsed());
        }

        // Replace the largest namespace with a copy of itself, several times.
        let (big_ns, big_docs) = subset
            .iter()
            .max_by_key(|(_, d)| d.len())
            .cloned()
            .unwrap_or_default();
        let mut replaces = Vec::new();
        for _ in 0..BUILD_RUNS {
            let docs = big_docs.clone();
            let start = Instant::now();
            index.replace_namespace(&big_ns, docs);
            replaces.push(start.elapsed());
        }

        drop(subset);
        println!(
            "{ops:>6} {:>6} {:>10.1} {:>9.0} {:>9.0} {:>9.0} {:>9.2} {:>10.1} {:>9.1}",
            index.namespaces().len(),
            ms(median(&mut builds)),
            us(percentile(&mut latencies, 0.50)),
            us(percentile(&mut latencies, 0.99)),
            us(percentile(&mut ns_latencies, 0.99)),
            ms(median(&mut replaces)),
            index.heap_bytes() as f64 / (1024.0 * 1024.0),
            rss_mib(),
        );
        println!(
            "       (replace: namespace {big_ns:?}, {} operations)",
            big_docs.len()
        );
    }
}

/// Namespaces with their documents, in file order.
type Catalog = Vec<(String, Vec<Document>)>;

fn load_servers(path: &PathBuf) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Catalog = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let mut ns = sanitize(v["server"].as_str().unwrap_or_default());
        // Keep namespaces unique, as a registry would.
        if out.iter().any(|(n, _)| *n == ns) {
            ns = format!("{ns}_{}", out.len());
        }
        let docs = v["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .map(|t| {
                        let tool = t["name"].as_str().unwrap_or_default().to_string();
                        Document {
                            name: format!("{ns}.{tool}"),
                            namespace: ns.clone(),
                            tool,
                            description: t["description"].as_str().unwrap_or_default().to_string(),
                            params: params_from_schema(&t["inputSchema"]),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((ns, docs));
    }
    Ok(out)
}

/// Last path segment, lowercased, anything outside `[a-z0-9_-]` replaced by `_`.
fn sanitize(server: &str) -> String {
    let last = server.rsplit('/').next().unwrap_or(server);
    let s: String = last
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "server".into() } else { s }
}

/// The first namespaces holding `size` operations in all (the last one cut short).
fn take(all: &Catalog, size: usize) -> Catalog {
    let mut out = Vec::new();
    let mut n = 0;
    for (ns, docs) in all {
        if n >= size {
            break;
        }
        let docs: Vec<Document> = docs.iter().take(size - n).cloned().collect();
        n += docs.len();
        out.push((ns.clone(), docs));
    }
    out
}

fn load_queries(path: &PathBuf) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let all: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["query"].as_str().map(String::from))
        .collect();
    if all.is_empty() {
        return None;
    }
    // Spread the sample over the whole file rather than its first topic.
    let step = (all.len() / QUERIES).max(1);
    Some(all.into_iter().step_by(step).take(QUERIES).collect())
}

/// Fallback queries: four consecutive words from tool descriptions.
fn description_queries(catalog: &Catalog) -> Vec<String> {
    let words: Vec<&str> = catalog
        .iter()
        .flat_map(|(_, d)| d)
        .flat_map(|d| d.description.split_whitespace())
        .collect();
    let step = (words.len() / QUERIES).max(1);
    (0..QUERIES)
        .filter_map(|i| words.get(i * step..i * step + 4))
        .map(|w| w.join(" "))
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    percentile(v, 0.5)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Resident memory of the whole process (VmRSS), or 0 where /proc is not available.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
