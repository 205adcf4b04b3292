//! Ranked search over operations: BM25F over name words, namespace, description and parameters,
//! with Porter stemming, stopword removal, query expansion with WordNet-related words, a
//! separate name-match bonus, semantic matching with static token embeddings (distilled from
//! all-MiniLM-L6-v2) fused with the lexical score, the query's vector moved towards the best
//! lexical matches (dense pseudo-relevance feedback), and centrality re-ranking of the top
//! results (lexical pseudo-relevance feedback is available, off by default).
//! No I/O.
//!
//! The index is updated one namespace at a time ([`SearchIndex::replace_namespace`]), which
//! touches only that namespace's postings. How the ranking works and how well it does is in
//! `docs/search.md`; `search-eval` and `search-bench` measure quality and speed.
//!
//! ```
//! use patchbay_search::{Document, SearchIndex};
//! let mut index = SearchIndex::new();
//! index.replace_namespace("weather", vec![Document {
//!     name: "weather.get_forecast".into(),
//!     namespace: "weather".into(),
//!     tool: "get_forecast".into(),
//!     description: "Forecast for a city".into(),
//!     params: vec![],
//! }]);
//! let hits = index.search("forecast in Paris", None, 5, &|_| true);
//! assert_eq!(hits[0].name, "weather.get_forecast");
//! ```

mod config;
mod hash;
mod index;
mod related;
mod schema;
mod score;
mod semantic;
mod stem;
mod tokenize;
mod words;

pub use config::{Centrality, Expansion, FIELDS, Feedback, Field, FieldWeight, Ranking, Semantic};
pub use index::SearchIndex;
pub use schema::{params_from_object, params_from_schema};
pub use stem::stem;
pub use tokenize::{split_words, terms};

/// What the index knows about one operation.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Full operation name, `namespace.tool` (or the bare tool name for unprefixed upstreams).
    pub name: String,
    /// The namespace the operation belongs to.
    pub namespace: String,
    /// The tool's own name as the upstream gives it.
    pub tool: String,
    pub description: String,
    /// Parameter names and descriptions, flattened from the input schema.
    pub params: Vec<Param>,
}

#[derive(Debug, Clone, Default)]
pub struct Param {
    pub name: String,
    pub description: String,
}

/// One ranked result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub name: String,
    pub score: f32,
}
