//! Behaviour of the index through its public API: filters, browsing, ties, updates, odd input.

use patchbay_search::{Document, Param, Ranking, SearchIndex};

fn doc(ns: &str, tool: &str, description: &str) -> Document {
    Document {
        name: format!("{ns}.{tool}"),
        namespace: ns.into(),
        tool: tool.into(),
        description: description.into(),
        params: Vec::new(),
    }
}

fn names(hits: &[patchbay_search::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.name.as_str()).collect()
}

const ALL: &dyn Fn(&str) -> bool = &|_| true;

fn sample() -> SearchIndex {
    let mut index = SearchIndex::new();
    index.replace_namespace(
        "weather",
        vec![
            doc(
                "weather",
                "get_forecast",
                "Weather forecast for a city: temperature, rain and wind.",
            ),
            doc(
                "weather",
                "get_alerts",
                "Severe weather alerts for a region.",
            ),
        ],
    );
    index.replace_namespace(
        "github",
        vec![
            doc(
                "github",
                "create_issue",
                "Open a new issue in a repository.",
            ),
            doc("github", "list_issues", "List the issues of a repository."),
            doc(
                "github",
                "search_code",
                "Search source code across repositories.",
            ),
        ],
    );
    let mut files = doc("files", "readFile", "Read a file from disk.");
    files.params = vec![Param {
        name: "path".into(),
        description: "Absolute path of the file".into(),
    }];
    index.replace_namespace("files", vec![files]);
    index
}

#[test]
fn ranks_by_name_and_description() {
    let index = sample();
    assert_eq!(index.len(), 6);
    let hits = index.search("what's the forecast in Paris?", None, 3, ALL);
    assert_eq!(hits[0].name, "weather.get_forecast");
    let hits = index.search("open an issue", None, 3, ALL);
    assert_eq!(hits[0].name, "github.create_issue");
    // camelCase tool names are split: "read" matches readFile by name.
    let hits = index.search("read", None, 3, ALL);
    assert_eq!(hits[0].name, "files.readFile");
    // Parameters are searchable.
    let hits = index.search("absolute path", None, 3, ALL);
    assert_eq!(hits[0].name, "files.readFile");
    // Stemming: "forecasting" meets "forecast".
    assert_eq!(
        index.search("forecasting", None, 1, ALL)[0].name,
        "weather.get_forecast"
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn namespace_filter() {
    let index = sample();
    let hits = index.search("repository issues weather", Some("weather"), 10, ALL);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.name.starts_with("weather.")),
        "{hits:?}"
    );
    assert!(index.search("weather", Some("nope"), 10, ALL).is_empty());
}

#[test]
fn browse_with_and_without_namespace() {
    let index = sample();
    let hits = index.search("", Some("github"), 10, ALL);
    assert_eq!(
        names(&hits),
        [
            "github.create_issue",
            "github.list_issues",
            "github.search_code"
        ]
    );
    assert!(hits.iter().all(|h| h.score == 0.0));
    // Whitespace and punctuation only also browse.
    assert_eq!(
        names(&index.search("  ?! ", Some("github"), 2, ALL)),
        ["github.create_issue", "github.list_issues"]
    );
    let all = index.search("", None, 100, ALL);
    assert_eq!(all.len(), 6);
    let mut sorted = names(&all);
    sorted.sort();
    assert_eq!(names(&all), sorted);
    assert_eq!(index.search("", None, 2, ALL).len(), 2);
}

#[test]
fn allow_filter_applies_before_limit() {
    let index = sample();
    let not_create = |name: &str| name != "github.create_issue";
    let hits = index.search("issue", None, 1, &not_create);
    assert_eq!(names(&hits), ["github.list_issues"]);
    let hits = index.search("", Some("github"), 2, &not_create);
    assert_eq!(names(&hits), ["github.list_issues", "github.search_code"]);
    let hits = index.search("", None, 3, &|n: &str| n.starts_with("github."));
    assert_eq!(
        names(&hits),
        [
            "github.create_issue",
            "github.list_issues",
            "github.search_code"
        ]
    );
    assert!(index.search("issue", None, 10, &|_| false).is_empty());
    assert!(index.search("issue", None, 0, ALL).is_empty());
}

#[test]
fn ties_are_ordered_by_name() {
    // Without centrality re-ranking and semantic matching, identical text gives bit-identical
    // scores. (With them, each document's own name words make its similarity to the query and
    // the others differ.)
    let mut index = SearchIndex::with_ranking(Ranking {
        centrality: None,
        semantic: None,
        ..Ranking::default()
    });
    // Identical text under different names: equal scores.
    let docs: Vec<Document> = ["zeta", "alpha", "mid", "beta"]
        .iter()
        .map(|t| doc("ns", t, "convert currency amounts"))
        .collect();
    index.replace_namespace("ns", docs);
    for _ in 0..3 {
        let hits = index.search("currency", None, 10, ALL);
        assert_eq!(names(&hits), ["ns.alpha", "ns.beta", "ns.mid", "ns.zeta"]);
        assert!(hits.windows(2).all(|w| w[0].score == w[1].score));
    }
    // With the default ranking the order is still total and repeatable: score, then name.
    let mut index = SearchIndex::new();
    let docs: Vec<Document> = ["zeta", "alpha", "mid", "beta"]
        .iter()
        .map(|t| doc("ns", t, "convert currency amounts"))
        .collect();
    index.replace_namespace("ns", docs);
    let first = index.search("currency", None, 10, ALL);
    assert_eq!(first.len(), 4);
    for w in first.windows(2) {
        assert!(w[0].score > w[1].score || (w[0].score == w[1].score && w[0].name < w[1].name));
    }
    assert_eq!(first, index.search("currency", None, 10, ALL));
}

#[test]
fn replace_and_remove_are_incremental() {
    let mut index = sample();
    let before = index.search("repository issue", Some("github"), 10, ALL);

    index.replace_namespace(
        "weather",
        vec![doc("weather", "get_sunrise", "Sunrise and sunset times.")],
    );
    assert_eq!(index.len(), 5);
    assert!(
        !names(&index.search("forecast", None, 10, ALL)).contains(&"weather.get_forecast"),
        "replaced document is gone"
    );
    assert_eq!(
        index.search("sunset", None, 10, ALL)[0].name,
        "weather.get_sunrise"
    );
    // The other namespace keeps its order.
    let after = index.search("repository issue", Some("github"), 10, ALL);
    assert_eq!(names(&before), names(&after));

    index.remove_namespace("weather");
    assert_eq!(index.len(), 4);
    assert!(
        index
            .search("sunset", None, 10, ALL)
            .iter()
            .all(|h| !h.name.starts_with("weather."))
    );
    assert!(index.search("", Some("weather"), 10, ALL).is_empty());
    assert_eq!(index.namespaces(), ["files", "github"]);

    // Replacing with nothing removes; removing twice is harmless.
    index.replace_namespace("files", Vec::new());
    index.remove_namespace("files");
    assert_eq!(index.len(), 3);
    // Slots and terms are reused: re-adding gives the same ranking as a fresh index.
    index.replace_namespace("weather", sample_weather());
    let mut fresh = SearchIndex::new();
    fresh.replace_namespace("github", sample_github());
    fresh.replace_namespace("weather", sample_weather());
    for q in ["weather forecast", "issues in a repository", "search"] {
        let a = index.search(q, None, 10, ALL);
        let b = fresh.search(q, None, 10, ALL);
        assert_eq!(names(&a), names(&b), "{q}");
    }
}

fn sample_weather() -> Vec<Document> {
    vec![
        doc(
            "weather",
            "get_forecast",
            "Weather forecast for a city: temperature, rain and wind.",
        ),
        doc(
            "weather",
            "get_alerts",
            "Severe weather alerts for a region.",
        ),
    ]
}

fn sample_github() -> Vec<Document> {
    vec![
        doc(
            "github",
            "create_issue",
            "Open a new issue in a repository.",
        ),
        doc("github", "list_issues", "List the issues of a repository."),
        doc(
            "github",
            "search_code",
            "Search source code across repositories.",
        ),
    ]
}

#[test]
fn documents_are_indexed_under_the_given_namespace() {
    let mut index = SearchIndex::new();
    // The document claims another namespace; the call's namespace wins.
    index.replace_namespace("real", vec![doc("other", "tool", "does things")]);
    assert_eq!(index.search("things", Some("real"), 10, ALL).len(), 1);
    assert!(index.search("things", Some("other"), 10, ALL).is_empty());
}

#[test]
fn odd_input_does_not_panic() {
    let mut index = SearchIndex::new();
    assert!(index.search("anything", None, 10, ALL).is_empty());
    assert!(index.search("", None, 10, ALL).is_empty());
    index.replace_namespace(
        "odd",
        vec![
            doc("odd", "", ""),
            doc("odd", "日本語ツール", "テキストを翻訳する"),
            doc("odd", "İSTANBUL_ĲTool", "ǅemal Ωmega 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂"),
            doc("odd", &"x".repeat(10_000), &"word ".repeat(100_000)),
        ],
    );
    let queries = [
        String::new(),
        "   ".into(),
        "🙂".into(),
        "テキスト".into(),
        "the a of".into(),
        "İstanbul ǅemal".into(),
        "word ".repeat(50_000),
        (0..5000).map(|i| format!("w{i} ")).collect(),
        "\u{0}\u{FFFF}\u{10FFFF}".into(),
    ];
    for q in &queries {
        let _ = index.search(q, None, 10, ALL);
        let _ = index.search(q, Some("odd"), usize::MAX, ALL);
    }
    // Scripts without spaces are not segmented: a whole run is one word.
    assert_eq!(
        index.search("日本語ツール", None, 10, ALL)[0].name,
        "odd.日本語ツール"
    );
    // Only one document has the word; others may follow on semantic similarity alone.
    let word = index.search("word", None, 10, ALL);
    assert!(word[0].name.starts_with("odd.xxx"));
    assert!(word.iter().skip(1).all(|h| h.score < word[0].score));
}

#[test]
fn semantic_matching_finds_tools_without_shared_words() {
    let mut index = SearchIndex::new();
    index.replace_namespace(
        "tools",
        vec![
            doc(
                "tools",
                "house_renting",
                "Find apartments and houses to rent.",
            ),
            doc("tools", "stock_data", "Share prices and market data."),
            doc("tools", "forecast", "Weather forecast for a city."),
            doc("tools", "recipes", "Cooking recipes and ingredients."),
        ],
    );
    let hits = index.search("a spacious loft with two bedrooms", None, 3, ALL);
    assert_eq!(hits[0].name, "tools.house_renting");
    let hits = index.search("will it rain tomorrow", None, 3, ALL);
    assert_eq!(hits[0].name, "tools.forecast");
    // Switched off, the same queries match nothing.
    let mut lexical = SearchIndex::with_ranking(Ranking {
        semantic: None,
        ..Ranking::default()
    });
    lexical.replace_namespace("tools", vec![doc("tools", "forecast", "Weather forecast.")]);
    assert!(
        lexical
            .search("will it rain tomorrow", None, 3, ALL)
            .is_empty()
    );
}

#[test]
fn dense_feedback_lifts_a_general_tool_among_specific_matches() {
    let tools = || {
        vec![
            doc(
                "t",
                "bitcoin_sentiment",
                "Track the current price of Bitcoin and the market sentiment from the news.",
            ),
            doc(
                "t",
                "crypto_price",
                "Bitcoin, Ethereum and other cryptocurrency prices and news.",
            ),
            doc(
                "t",
                "nft_floor",
                "Floor prices of NFT collections on the blockchain.",
            ),
            doc(
                "t",
                "finance",
                "Stay informed with the latest financial updates: stocks, markets and cryptocurrencies.",
            ),
            doc(
                "t",
                "book_flight",
                "Search and book flights between two airports.",
            ),
            doc(
                "t",
                "forecast",
                "Weather forecast for a city: temperature, rain and wind.",
            ),
            doc(
                "t",
                "recipes",
                "Cooking recipes from the ingredients you have.",
            ),
            doc(
                "t",
                "price_tracker",
                "Track the price of a product on Amazon.",
            ),
        ]
    };
    let rank_and_share = |feedback_docs: usize| {
        let mut ranking = Ranking::default();
        ranking.semantic.as_mut().unwrap().feedback_docs = feedback_docs;
        let mut index = SearchIndex::with_ranking(ranking);
        index.replace_namespace("t", tools());
        let hits = index.search("what is the bitcoin price today", None, 10, ALL);
        let at = hits.iter().position(|h| h.name == "t.finance").unwrap();
        (at, hits[at].score / hits[0].score)
    };
    let (rank_without, share_without) = rank_and_share(0);
    let (rank_with, share_with) = rank_and_share(10);
    assert!(rank_with <= rank_without, "{rank_with} > {rank_without}");
    assert!(
        share_with > share_without,
        "the general tool's score relative to the best: {share_with} with feedback, {share_without} without"
    );
}
