//! What the index needs to know about a word, worked out once per word and thread.
//!
//! Catalogs repeat their words endlessly ("string", "user", "id"); stemming a word and splitting
//! it into word pieces once, rather than at every occurrence, is most of what makes indexing a
//! large catalog fast.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use crate::hash::FxHashMap;
use crate::semantic;
use crate::stem::stem;
use crate::tokenize::{for_each_word, is_stopword};

/// Most words remembered per thread before the cache starts over (a few MiB).
const MAX_CACHED_WORDS: usize = 50_000;

/// One lowercase word as the index sees it.
#[derive(Debug)]
pub(crate) struct Word {
    text: Box<str>,
    /// A stopword (see [`is_stopword`]).
    pub stop: bool,
    /// Its index term: the Porter stem.
    pub term: Box<str>,
    /// Its WordPiece ids, split on first use (most joined identifiers never need them).
    pieces: OnceCell<Box<[u32]>>,
}

impl Word {
    /// The word's WordPiece ids; empty if it cannot be split or there is no model.
    pub(crate) fn pieces(&self) -> &[u32] {
        self.pieces.get_or_init(|| {
            semantic::model()
                .map(|m| m.split(&self.text).into_boxed_slice())
                .unwrap_or_default()
        })
    }
}

/// The words of a text as split by [`for_each_word`] (joined forms included), each with
/// whether it is a run's joined form (`researchhelper`).
pub(crate) type Words = Vec<(Rc<Word>, bool)>;

/// The words of `text`, into `out` (cleared first).
pub(crate) fn analyse(text: &str, out: &mut Words) {
    out.clear();
    for_each_word(text, true, |w, joined| out.push((lookup(w), joined)));
}

thread_local! {
    static WORDS: RefCell<FxHashMap<Box<str>, Rc<Word>>> = Default::default();
}

/// What is known about `word` (lowercase), from this thread's cache or worked out now.
pub(crate) fn lookup(word: &str) -> Rc<Word> {
    if let Some(known) = WORDS.with(|cache| cache.borrow().get(word).cloned()) {
        return known;
    }
    let known = Rc::new(Word {
        text: word.into(),
        stop: is_stopword(word),
        term: stem(word).into_boxed_str(),
        pieces: OnceCell::new(),
    });
    WORDS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_CACHED_WORDS {
            cache.clear();
        }
        cache.insert(word.into(), known.clone());
    });
    known
}
