//! Measures search quality on the MetaTool development set.
//!
//! ```text
//! cargo run --release -p patchbay-search --bin search-eval -- [DATA_DIR] [--ablation]
//! ```
//! `DATA_DIR` (default `../shared/data/metatool`) holds `catalog.json`, `queries.jsonl` and
//! `queries-multi.jsonl`. The catalog is loaded as one namespace, `metatool`, each tool an
//! operation named by the tool. Every run prints a plain BM25 baseline over name + description
//! next to the crate's ranking; `--ablation` adds rows with single features switched off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use patchbay_search::{
    Centrality, Document, Expansion, Feedback, Field, FieldWeight, Hit, Ranking, SearchIndex,
};
use serde_json::Value;

/// Results looked at per query; MRR counts ranks up to this depth.
const DEPTH: usize = 100;
const NAMESPACE: &str = "metatool";

fn main() {
    let mut dir = PathBuf::from("../shared/data/metatool");
    let mut ablation = false;
    let mut dump = false;
    let mut query: Option<String> = None;
    let mut half: Option<usize> = None;
    let mut gold_only = false;
    let mut ranking = Ranking::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--set" => {
                let setting = args.next().unwrap_or_default();
                if let Err(e) = apply_setting(&mut ranking, &setting) {
                    eprintln!("search-eval: --set {setting}: {e}");
                    std::process::exit(2);
                }
            }
            "--ablation" => ablation = true,
            "--dump" => dump = true,
            "--gold-only" => gold_only = true,
            "--half" => {
                half = match args.next().as_deref() {
                    Some("even") => Some(0),
                    Some("odd") => Some(1),
                    other => {
                        eprintln!("search-eval: --half takes even or odd, not {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            "--query" => query = args.next(),
            "-h" | "--help" => {
                eprintln!(
                    "usage: search-eval [DATA_DIR] [--ablation] [--dump] [--half even|odd] [--gold-only] [--set KEY=VALUE]...\n  --gold-only: leave out the catalog's tools that no query has as gold (MetaTool's 235 distractors)\n  keys: k1, name_bonus, fb_docs, fb_terms, fb_weight, c_docs, c_weight, x_close, x_broad, x_off, q_prior, q_prior_off, s_weight, s_cands, s_name, s_params, s_fb_docs, s_fb_weight, s_off, w.FIELD, b.FIELD (FIELD: name, namespace, description, param_name, param_description)"
                );
                return;
            }
            _ => dir = PathBuf::from(arg),
        }
    }
    if let Some(q) = query {
        let tools = load_catalog(&dir.join("catalog.json")).unwrap_or_default();
        let index = build(&tools, ranking);
        for h in index.search(&q, None, 15, &|_| true) {
            println!("{:8.3}  {}", h.score, h.name);
        }
        return;
    }
    if dump {
        if let Err(e) = dump_misses(&dir, ranking) {
            eprintln!("search-eval: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run(&dir, ablation, half, gold_only, ranking) {
        eprintln!("search-eval: {e}");
        std::process::exit(1);
    }
}

/// Keeps the queries of one half of the file: `Some(0)` the even lines (0-based: the first, the
/// third, ...), `Some(1)` the odd ones, `None` all. The even half is the tuning set; the odd
/// half is held out.
fn split_half(queries: Vec<Query>, half: Option<usize>) -> Vec<Query> {
    match half {
        None => queries,
        Some(h) => queries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == h)
            .map(|(_, q)| q)
            .collect(),
    }
}

fn run(
    dir: &Path,
    ablation: bool,
    half: Option<usize>,
    gold_only: bool,
    ranking: Ranking,
) -> Result<(), String> {
    let mut tools = load_catalog(&dir.join("catalog.json"))?;
    let single = load_queries(&dir.join("queries.jsonl"))?;
    let multi = load_queries(&dir.join("queries-multi.jsonl"))?;
    if gold_only {
        // Gold over both whole files, so the catalog is the same for either half.
        let gold: std::collections::HashSet<&str> = single
            .iter()
            .chain(&multi)
            .flat_map(|q| q.gold.iter().map(String::as_str))
            .collect();
        tools.retain(|(name, _)| gold.contains(name.as_str()));
    }
    let single = split_half(single, half);
    let multi = split_half(multi, half);
    println!(
        "MetaTool dev set: {} tools, {} single-tool queries, {} two-tool queries\n",
        tools.len(),
        single.len(),
        multi.len()
    );

    let mut systems: Vec<(String, Searcher)> = Vec::new();
    let baseline = Baseline::new(&tools);
    systems.push((
        "baseline BM25 name+description".into(),
        Box::new(move |q| baseline.search(q, DEPTH)),
    ));
    // The same plain BM25 but with this crate's tokenizer (name splitting, stopwords, stemming):
    // both fields weigh 1 with the textbook k1 and b, and no extras.
    let plain = FieldWeight {
        weight: 1.0,
        b: 0.75,
    };
    let off = FieldWeight {
        weight: 0.0,
        b: 0.0,
    };
    let tokenized = Ranking {
        k1: 1.2,
        fields: [plain, off, plain, off, off],
        feedback: None,
        name_bonus: 0.0,
        centrality: None,
        expansion: None,
        semantic: None,
        query_prior: None,
    };
    let index = build(&tools, tokenized);
    systems.push((
        "BM25 name+description, our tokenizer".into(),
        Box::new(move |q| names(index.search(q, None, DEPTH, &|_| true))),
    ));
    if ablation {
        let mut no_centrality = ranking.clone();
        no_centrality.centrality = None;
        let mut feedback = ranking.clone();
        feedback.feedback = Some(Feedback {
            docs: 3,
            terms: 20,
            weight: 0.5,
        });
        let mut no_expansion = ranking.clone();
        no_expansion.expansion = None;
        let mut no_semantic = ranking.clone();
        no_semantic.semantic = None;
        let mut no_dense_feedback = ranking.clone();
        if let Some(s) = no_dense_feedback.semantic.as_mut() {
            s.feedback_docs = 0;
        }
        let mut no_prior = ranking.clone();
        no_prior.query_prior = None;
        let mut flat_name = ranking.clone();
        flat_name.fields[Field::Name as usize] = ranking.fields[Field::Description as usize];
        let variants = [
            ("patchbay, no centrality re-ranking", no_centrality),
            ("patchbay, no lexicon expansion", no_expansion),
            ("patchbay, no semantic matching", no_semantic),
            ("patchbay, no dense feedback", no_dense_feedback),
            ("patchbay, no query-word prior", no_prior),
            ("patchbay, name weighted as description", flat_name),
            ("patchbay, + feedback (3 docs, 20 terms)", feedback),
        ];
        for (label, ranking) in variants {
            let index = build(&tools, ranking);
            systems.push((
                label.into(),
                Box::new(move |q| names(index.search(q, None, DEPTH, &|_| true))),
            ));
        }
    }
    let label = if ranking == Ranking::default() {
        "patchbay (default ranking)"
    } else {
        "patchbay (with --set)"
    };
    let index = build(&tools, ranking);
    systems.push((
        label.into(),
        Box::new(move |q| names(index.search(q, None, DEPTH, &|_| true))),
    ));

    println!("queries.jsonl (one gold tool)");
    println!(
        "{:<40} {:>6} {:>6} {:>6} {:>6} {:>9}",
        "system", "R@1", "R@5", "R@10", "MRR", "ms/query"
    );
    for (label, search) in &systems {
        let (m, per_query) = timed(&single, search, single_metrics);
        println!(
            "{label:<40} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {per_query:>9.3}",
            m[0], m[1], m[2], m[3]
        );
    }
    println!("\nqueries-multi.jsonl (two gold tools)");
    println!(
        "{:<40} {:>9} {:>6} {:>6} {:>6}",
        "system", "both@10", "R@5", "R@10", "MRR"
    );
    for (label, search) in &systems {
        let (m, _) = timed(&multi, search, multi_metrics);
        println!(
            "{label:<40} {:>9.3} {:>6.3} {:>6.3} {:>6.3}",
            m[0], m[1], m[2], m[3]
        );
    }
    Ok(())
}

/// Prints, tab-separated, every single-tool query whose gold tool is not in the top 5: query,
/// gold, gold's rank (0 when not found), top 3.
fn dump_misses(dir: &Path, ranking: Ranking) -> Result<(), String> {
    let tools = load_catalog(&dir.join("catalog.json"))?;
    let single = load_queries(&dir.join("queries.jsonl"))?;
    let index = build(&tools, ranking);
    for q in &single {
        let ranked = names(index.search(&q.text, None, DEPTH, &|_| true));
        let rank = q
            .gold
            .first()
            .and_then(|g| rank_of(&ranked, g))
            .map_or(0, |r| r + 1);
        if rank == 0 || rank > 5 {
            println!(
                "{}\t{}\t{rank}\t{}",
                q.text.replace(['\n', '\t'], " "),
                q.gold.join(","),
                ranked.iter().take(3).cloned().collect::<Vec<_>>().join(",")
            );
        }
    }
    Ok(())
}

/// The feedback settings, switched on with typical values if they were off.
fn feedback(r: &mut Ranking) -> &mut Feedback {
    r.feedback.get_or_insert(Feedback {
        docs: 3,
        terms: 20,
        weight: 0.5,
    })
}

/// The lexicon expansion settings, switched on with the default values if they were off.
fn expansion(r: &mut Ranking) -> &mut Expansion {
    r.expansion.get_or_insert(Expansion {
        close: 0.2,
        broad: 0.1,
    })
}

/// Applies one `KEY=VALUE` ranking override.
fn apply_setting(r: &mut Ranking, setting: &str) -> Result<(), String> {
    let (key, value) = setting.split_once('=').ok_or("expected KEY=VALUE")?;
    let v: f32 = value.parse().map_err(|e| format!("{e}"))?;
    if let Some(k) = key.strip_prefix("s_") {
        if k == "off" {
            r.semantic = None;
            return Ok(());
        }
        let s = r
            .semantic
            .get_or_insert(Ranking::default().semantic.expect("semantic on by default"));
        match k {
            "weight" => s.weight = v,
            "cands" => s.candidates = v as usize,
            "name" => s.name_weight = v,
            "params" => s.param_weight = v,
            "fb_docs" => s.feedback_docs = v as usize,
            "fb_weight" => s.feedback_weight = v,
            _ => return Err(format!("unknown key {key}")),
        }
        return Ok(());
    }
    if let Some(k) = key.strip_prefix("c_") {
        let c = r.centrality.get_or_insert(Centrality {
            docs: 15,
            weight: 2.0,
        });
        match k {
            "docs" => c.docs = v as usize,
            "weight" => c.weight = v,
            _ => return Err(format!("unknown key {key}")),
        }
        return Ok(());
    }
    let field = |name: &str| -> Result<usize, String> {
        Ok(match name {
            "name" => Field::Name,
            "namespace" => Field::Namespace,
            "description" => Field::Description,
            "param_name" => Field::ParamName,
            "param_description" => Field::ParamDescription,
            _ => return Err(format!("unknown field {name}")),
        } as usize)
    };
    match key.split_once('.') {
        Some(("w", f)) => r.fields[field(f)?].weight = v,
        Some(("b", f)) => r.fields[field(f)?].b = v,
        _ => match key {
            "k1" => r.k1 = v,
            "name_bonus" => r.name_bonus = v,
            "fb_docs" => feedback(r).docs = v as usize,
            "fb_terms" => feedback(r).terms = v as usize,
            "fb_weight" => feedback(r).weight = v,
            "x_close" => expansion(r).close = v,
            "x_broad" => expansion(r).broad = v,
            "x_off" => r.expansion = None,
            "q_prior" => r.query_prior = Some(v),
            "q_prior_off" => r.query_prior = None,
            _ => return Err(format!("unknown key {key}")),
        },
    }
    Ok(())
}

/// A ranking under test: query in, tool names out, best first.
type Searcher = Box<dyn Fn(&str) -> Vec<String>>;

struct Query {
    text: String,
    gold: Vec<String>,
}

fn load_catalog(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let tools = json["tools"]
        .as_array()
        .ok_or_else(|| format!("{}: no \"tools\" array", path.display()))?;
    Ok(tools
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("description"))
        })
        .collect())
}

fn load_queries(path: &Path) -> Result<Vec<Query>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        let gold = v["gold"].as_array().map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        });
        out.push(Query {
            text: v["query"].as_str().unwrap_or_default().to_string(),
            gold: gold.unwrap_or_default(),
        });
    }
    Ok(out)
}

fn build(tools: &[(String, String)], ranking: Ranking) -> SearchIndex {
    let docs = tools
        .iter()
        .map(|(name, description)| Document {
            name: name.clone(),
            namespace: NAMESPACE.into(),
            tool: name.clone(),
            description: description.clone(),
            params: Vec::new(),
        })
        .collect();
    let mut index = SearchIndex::with_ranking(ranking);
    index.replace_namespace(NAMESPACE, docs);
    index
}

fn names(hits: Vec<Hit>) -> Vec<String> {
    hits.into_iter().map(|h| h.name).collect()
}

/// Runs every query, averaging the metric vectors; returns them with milliseconds per query.
fn timed(
    queries: &[Query],
    search: &dyn Fn(&str) -> Vec<String>,
    metrics: fn(&[String], &[String]) -> [f64; 4],
) -> ([f64; 4], f64) {
    let start = Instant::now();
    let mut sum = [0.0; 4];
    for q in queries {
        let ranked = search(&q.text);
        for (s, m) in sum.iter_mut().zip(metrics(&ranked, &q.gold)) {
            *s += m;
        }
    }
    let n = queries.len().max(1) as f64;
    (
        sum.map(|s| s / n),
        start.elapsed().as_secs_f64() * 1000.0 / n,
    )
}

fn rank_of(ranked: &[String], gold: &str) -> Option<usize> {
    ranked.iter().position(|r| r == gold)
}

/// Recall@1, Recall@5, Recall@10 and reciprocal rank of the (first) gold tool.
fn single_metrics(ranked: &[String], gold: &[String]) -> [f64; 4] {
    let rank = gold.first().and_then(|g| rank_of(ranked, g));
    let within = |k: usize| f64::from(u8::from(rank.is_some_and(|r| r < k)));
    [
        within(1),
        within(5),
        within(10),
        rank.map_or(0.0, |r| 1.0 / (r + 1) as f64),
    ]
}

/// Both gold tools in the top 10; Recall@5 and @10 averaged over gold tools; reciprocal rank of
/// the first gold tool found.
fn multi_metrics(ranked: &[String], gold: &[String]) -> [f64; 4] {
    let ranks: Vec<Option<usize>> = gold.iter().map(|g| rank_of(ranked, g)).collect();
    let n = ranks.len().max(1) as f64;
    let recall = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r < k)).count() as f64 / n;
    let both = f64::from(u8::from(
        !ranks.is_empty() && ranks.iter().all(|r| r.is_some_and(|r| r < 10)),
    ));
    let first = ranks.iter().flatten().min();
    [
        both,
        recall(5),
        recall(10),
        first.map_or(0.0, |&r| 1.0 / (r + 1) as f64),
    ]
}

/// The reference point: Okapi BM25 (k1 = 1.2, b = 0.75) over one field holding the tool name
/// and description, lowercased and split at non-alphanumerics; no stemming, stopwords, name
/// splitting or expansion.
struct Baseline {
    names: Vec<String>,
    postings: HashMap<String, Vec<(usize, f32)>>,
    lens: Vec<f32>,
    avg: f32,
}

impl Baseline {
    fn words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
    }

    fn new(tools: &[(String, String)]) -> Self {
        let mut postings: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
        let mut lens = Vec::new();
        for (i, (name, description)) in tools.iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let mut len = 0.0;
            for w in Self::words(name).chain(Self::words(description)) {
                *tf.entry(w).or_default() += 1.0;
                len += 1.0;
            }
            for (w, f) in tf {
                postings.entry(w).or_default().push((i, f));
            }
            lens.push(len);
        }
        let avg = lens.iter().sum::<f32>() / lens.len().max(1) as f32;
        Self {
            names: tools.iter().map(|t| t.0.clone()).collect(),
            postings,
            lens,
            avg,
        }
    }

    fn search(&self, query: &str, limit: usize) -> Vec<String> {
        let (k1, b, n) = (1.2, 0.75, self.names.len() as f32);
        let mut acc = vec![0.0f32; self.names.len()];
        for w in Self::words(query) {
            let Some(list) = self.postings.get(&w) else {
                continue;
            };
            let idf = (1.0 + (n - list.len() as f32 + 0.5) / (list.len() as f32 + 0.5)).ln();
            for &(d, tf) in list {
                acc[d] +=
                    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * self.lens[d] / self.avg));
            }
        }
        let mut ranked: Vec<usize> = (0..acc.len()).filter(|&d| acc[d] > 0.0).collect();
        ranked.sort_by(|&a, &b| {
            acc[b]
                .total_cmp(&acc[a])
                .then_with(|| self.names[a].cmp(&self.names[b]))
        });
        ranked
            .into_iter()
            .take(limit)
            .map(|d| self.names[d].clone())
            .collect()
    }
}
