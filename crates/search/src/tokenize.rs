//! Turning text into index terms: word splitting, lowercasing, stopwords and stemming.
//!
//! Queries and documents go through the same functions, so whatever a split produces on one side
//! it also produces on the other. Identifiers are split at every boundary a programmer would see
//! (`get_weather`, `getWeather`, `get-weather`, `weather.get`, `HTMLParser`, `mp3Player`), and the
//! joined form is kept as well so that a query naming the tool exactly still matches it.

use std::sync::OnceLock;

use crate::hash::FxHashSet;
use crate::stem::stem_owned;

/// Longest word kept; longer runs (base64 blobs, hashes) carry no meaning and would only bloat
/// the dictionary.
const MAX_WORD_CHARS: usize = 40;

/// Splits `text` into lowercase words at non-alphanumeric characters, lower-to-upper case
/// changes, the end of an upper-case acronym (`HTMLParser` -> `html`, `parser`) and
/// letter/digit changes.
///
/// When an alphanumeric run splits into several words, the whole run, lowercased, follows them
/// (`ResearchHelper` -> `research`, `helper`, `researchhelper`).
pub fn split_words(text: &str) -> Vec<String> {
    split(text, true)
}

/// [`split_words`] without the joined forms: every word once, in order (`ResearchHelper` ->
/// `research`, `helper`). For the semantic side, where a joined identifier is not a word.
pub(crate) fn split_words_plain(text: &str) -> Vec<String> {
    split(text, false)
}

fn split(text: &str, joined_forms: bool) -> Vec<String> {
    let mut out = Vec::new();
    for run in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|r| !r.is_empty())
    {
        let before = out.len();
        split_run(run, &mut out);
        if joined_forms && out.len() - before > 1 {
            let joined: String = run
                .chars()
                .flat_map(char::to_lowercase)
                .take(MAX_WORD_CHARS)
                .collect();
            out.push(joined);
        }
    }
    out
}

/// Splits one alphanumeric run at case and digit boundaries, pushing lowercase words.
fn split_run(run: &str, out: &mut Vec<String>) {
    if run.is_ascii() {
        return split_ascii_run(run.as_bytes(), out);
    }
    let chars: Vec<char> = run.chars().collect();
    let mut start = 0;
    for i in 1..chars.len() {
        let (prev, cur) = (chars[i - 1], chars[i]);
        let next_is_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
        let boundary = (prev.is_lowercase() && cur.is_uppercase())
            || (prev.is_alphabetic() && cur.is_numeric())
            || (prev.is_numeric() && cur.is_alphabetic())
            // The last capital of an acronym starts the next word: HTMLParser -> HTML Parser.
            || (prev.is_uppercase() && cur.is_uppercase() && next_is_lower);
        if boundary {
            push_word(&chars[start..i], out);
            start = i;
        }
    }
    push_word(&chars[start..], out);
}

/// [`split_run`] for the common all-ASCII case, working on bytes without collecting chars.
fn split_ascii_run(run: &[u8], out: &mut Vec<String>) {
    let push = |word: &[u8], out: &mut Vec<String>| {
        let end = word.len().min(MAX_WORD_CHARS);
        // ASCII in, ASCII out: the conversion cannot fail.
        out.push(String::from_utf8(word[..end].to_ascii_lowercase()).unwrap_or_default());
    };
    let mut start = 0;
    for i in 1..run.len() {
        let (prev, cur) = (run[i - 1], run[i]);
        let next_is_lower = run.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let boundary = (prev.is_ascii_lowercase() && cur.is_ascii_uppercase())
            || (prev.is_ascii_alphabetic() && cur.is_ascii_digit())
            || (prev.is_ascii_digit() && cur.is_ascii_alphabetic())
            || (prev.is_ascii_uppercase() && cur.is_ascii_uppercase() && next_is_lower);
        if boundary {
            push(&run[start..i], out);
            start = i;
        }
    }
    push(&run[start..], out);
}

fn push_word(chars: &[char], out: &mut Vec<String>) {
    if chars.is_empty() {
        return;
    }
    out.push(
        chars
            .iter()
            .flat_map(|c| c.to_lowercase())
            .take(MAX_WORD_CHARS)
            .collect(),
    );
}

/// Common English function words and conversational filler that say nothing about which
/// operation is wanted ("can you please find me ..."). Kept sorted for easy reading.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "assist",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "certain",
    "could",
    "detailed",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "interested",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "kindly",
    "looking",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "need",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "please",
    "provide",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "specific",
    "specifically",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "various",
    "very",
    "want",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "wondering",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Is `word` (lowercase) a stopword? Single letters count as stopwords: they are mostly the
/// debris of contractions ("don't" -> "don", "t") and initials.
pub fn is_stopword(word: &str) -> bool {
    // No stopword is longer than this; most words are, and skip the lookup.
    if word.len() > 10 {
        return false;
    }
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return c.is_alphabetic();
    }
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOPWORDS.iter().copied().collect())
        .contains(word)
}

/// Index terms for free text: split words, stopwords dropped, each stemmed.
///
/// If every word is a stopword (a query like "what is it"), they are kept rather than returning
/// nothing, so such a query still ranks something.
pub fn terms(text: &str) -> Vec<String> {
    let mut words = split_words(text);
    // If every word is a stopword, keep them all.
    if words.iter().any(|w| !is_stopword(w)) {
        words.retain(|w| !is_stopword(w));
    }
    words.into_iter().map(stem_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn splits_identifier_styles() {
        assert_eq!(split_words("get_weather"), ["get", "weather"]);
        assert_eq!(split_words("getWeather"), ["get", "weather", "getweather"]);
        assert_eq!(split_words("get-weather.now"), ["get", "weather", "now"]);
        assert_eq!(split_words("HTMLParser"), ["html", "parser", "htmlparser"]);
        assert_eq!(split_words("mp3Player"), ["mp", "3", "player", "mp3player"]);
        assert_eq!(
            split_words("ResearchHelper"),
            ["research", "helper", "researchhelper"]
        );
        assert_eq!(split_words("plain"), ["plain"]);
    }

    #[test]
    fn handles_empty_and_unicode() {
        assert!(split_words("").is_empty());
        assert!(split_words("  --  ").is_empty());
        assert_eq!(split_words("Ünïcode Straße"), ["ünïcode", "straße"]);
        assert_eq!(split_words("日本語 テキスト"), ["日本語", "テキスト"]);
        // Upper-case letters whose lowercase form is longer must not panic.
        assert_eq!(split_words("İstanbul"), ["i\u{307}stanbul"]);
    }

    #[test]
    fn caps_long_words() {
        let long = "x".repeat(500);
        assert_eq!(split_words(&long)[0].chars().count(), MAX_WORD_CHARS);
    }

    #[test]
    fn terms_drop_stopwords_and_stem() {
        assert_eq!(
            terms("Can you find me the latest papers?"),
            ["find", "latest", "paper"]
        );
        assert_eq!(terms("I'm searching"), ["search"]);
        // All stopwords: kept, so the query is not empty.
        assert_eq!(terms("what is it"), ["what", "is", "it"]);
    }
}
