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

fn split(text: &str, joined_forms: bool) -> Vec<String> {
    let mut out = Vec::new();
    for_each_word(text, joined_forms, |word, _| out.push(word.to_owned()));
    out
}

/// Calls `f(word, joined)` for every word [`split_words`] would return (without the joined
/// forms unless `joined_forms`), in order; `joined` marks a run's joined form.
/// Allocates nothing per word: each word is lowercased into one reused buffer.
pub(crate) fn for_each_word(text: &str, joined_forms: bool, mut f: impl FnMut(&str, bool)) {
    let mut buf = String::new();
    // Most catalog text is ASCII: find runs on bytes rather than decoding chars.
    let runs: Box<dyn Iterator<Item = &str>> = if text.is_ascii() {
        let bytes = text.as_bytes();
        let mut at = 0;
        Box::new(std::iter::from_fn(move || {
            while at < bytes.len() && !bytes[at].is_ascii_alphanumeric() {
                at += 1;
            }
            let start = at;
            while at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
                at += 1;
            }
            // ASCII: every byte index is a char boundary.
            (start < at).then(|| &text[start..at])
        }))
    } else {
        Box::new(
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|r| !r.is_empty()),
        )
    };
    for run in runs {
        let words = split_run(run, &mut buf, &mut f);
        if joined_forms && words > 1 {
            buf.clear();
            if run.is_ascii() {
                let end = run.len().min(MAX_WORD_CHARS);
                buf.extend(
                    run.as_bytes()[..end]
                        .iter()
                        .map(|b| char::from(b.to_ascii_lowercase())),
                );
            } else {
                buf.extend(
                    run.chars()
                        .flat_map(char::to_lowercase)
                        .take(MAX_WORD_CHARS),
                );
            }
            f(&buf, true);
        }
    }
}

/// Splits one alphanumeric run at case and digit boundaries, passing each lowercase word to `f`;
/// returns how many words it passed.
fn split_run(run: &str, buf: &mut String, f: &mut impl FnMut(&str, bool)) -> usize {
    if run.is_ascii() {
        return split_ascii_run(run.as_bytes(), buf, f);
    }
    let chars: Vec<char> = run.chars().collect();
    let mut emit = |word: &[char]| {
        buf.clear();
        buf.extend(
            word.iter()
                .flat_map(|c| c.to_lowercase())
                .take(MAX_WORD_CHARS),
        );
        f(buf, false);
    };
    let mut start = 0;
    let mut words = 0;
    for i in 1..chars.len() {
        let (prev, cur) = (chars[i - 1], chars[i]);
        let next_is_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
        let boundary = (prev.is_lowercase() && cur.is_uppercase())
            || (prev.is_alphabetic() && cur.is_numeric())
            || (prev.is_numeric() && cur.is_alphabetic())
            // The last capital of an acronym starts the next word: HTMLParser -> HTML Parser.
            || (prev.is_uppercase() && cur.is_uppercase() && next_is_lower);
        if boundary {
            emit(&chars[start..i]);
            words += 1;
            start = i;
        }
    }
    if start < chars.len() {
        emit(&chars[start..]);
        words += 1;
    }
    words
}

/// [`split_run`] for the common all-ASCII case, working on bytes without collecting chars.
fn split_ascii_run(run: &[u8], buf: &mut String, f: &mut impl FnMut(&str, bool)) -> usize {
    let mut emit = |word: &[u8]| {
        let end = word.len().min(MAX_WORD_CHARS);
        buf.clear();
        buf.extend(
            word[..end]
                .iter()
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        f(buf, false);
    };
    let mut start = 0;
    let mut words = 0;
    for i in 1..run.len() {
        let (prev, cur) = (run[i - 1], run[i]);
        let next_is_lower = run.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let boundary = (prev.is_ascii_lowercase() && cur.is_ascii_uppercase())
            || (prev.is_ascii_alphabetic() && cur.is_ascii_digit())
            || (prev.is_ascii_digit() && cur.is_ascii_alphabetic())
            || (prev.is_ascii_uppercase() && cur.is_ascii_uppercase() && next_is_lower);
        if boundary {
            emit(&run[start..i]);
            words += 1;
            start = i;
        }
    }
    emit(&run[start..]);
    words + 1
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
    content_words(text).into_iter().map(stem_owned).collect()
}

/// [`terms`] before stemming: the split words with stopwords dropped, unless there is
/// nothing else.
pub(crate) fn content_words(text: &str) -> Vec<String> {
    let mut words = split_words(text);
    if words.iter().any(|w| !is_stopword(w)) {
        words.retain(|w| !is_stopword(w));
    }
    words
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
