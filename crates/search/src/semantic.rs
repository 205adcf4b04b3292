//! Semantic matching with static token vectors (the Model2Vec idea).
//!
//! Every WordPiece token of the sentence-embedding model all-MiniLM-L6-v2 has one fixed vector,
//! distilled from the model by running it on that token alone (`scripts/build_vectors.py`).
//! A text's vector is the normalised, weighted sum of its tokens' vectors; two texts are similar
//! when the cosine of their vectors is high. Unlike words, vectors meet across vocabulary:
//! "loft" lies near "cottage" and "attic", "stocks" near "investor" and "trading".
//!
//! The vocabulary (`data/vocab.txt`) and the vectors (`data/vectors.bin`, i8 with one f32 scale
//! per row) are compiled in and parsed on first use; the i8 rows are read in place from the
//! binary, not copied. Text goes through the crate's word splitting (identifiers split at case
//! changes, lowercase) and stopword removal, then greedy longest-match WordPiece.

use std::sync::OnceLock;

use std::rc::Rc;

use crate::hash::FxHashMap;
use crate::words::{Word, Words, analyse};

/// The WordPiece vocabulary, one token per line; line `i` is row `i` of [`VECTORS`].
const VOCAB: &str = include_str!("../data/vocab.txt");
/// `b"PBV1"`, u32 rows, u32 dims, rows x f32 scale, rows x dims i8 (little-endian).
const VECTORS: &[u8] = include_bytes!("../data/vectors.bin");
const MAGIC: &[u8; 4] = b"PBV1";

/// At most this many word pieces of one text count: a page of usage notes should not cost more
/// than its first paragraphs, which say what the tool is for.
const MAX_PIECES: usize = 64;
/// Longest word looked up, in characters (BERT's own limit is 100; the crate's splitter caps
/// words at 40 anyway).
const MAX_WORD_CHARS: usize = 40;

/// The static embedding model: vocabulary and quantised token vectors.
pub(crate) struct Model {
    vocab: FxHashMap<&'static str, u32>,
    dims: usize,
    /// Per row, the factor that turns its i8 values into the distilled vector; 0 for rows that
    /// carry no meaning (special tokens).
    scales: Vec<f32>,
    /// Rows x dims i8 values, stored as the bytes of the compiled-in file.
    rows: &'static [u8],
}

/// The compiled-in model, parsed on first use; `None` if the data is malformed (then semantic
/// matching is simply off).
pub(crate) fn model() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    MODEL.get_or_init(|| Model::parse(VOCAB, VECTORS)).as_ref()
}

impl Model {
    /// Parses the vocabulary and the vector file; `None` if they disagree or are truncated.
    fn parse(vocab: &'static str, bytes: &'static [u8]) -> Option<Self> {
        let u32_at = |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        if bytes.get(..4)? != MAGIC {
            return None;
        }
        let (rows, dims) = (u32_at(4)?, u32_at(8)?);
        let scales_at = 12;
        let rows_at = scales_at + rows.checked_mul(4)?;
        let end = rows_at + rows.checked_mul(dims)?;
        if dims == 0 || bytes.len() != end {
            return None;
        }
        let scales = bytes[scales_at..rows_at]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .map(|s| if s.is_finite() { s } else { 0.0 })
            .collect();
        let tokens: Vec<&'static str> = vocab.lines().collect();
        if tokens.len() != rows {
            return None;
        }
        let mut map = FxHashMap::default();
        map.reserve(rows);
        for (i, t) in tokens.into_iter().enumerate() {
            // First occurrence wins; ids fit in u32 because rows came from a u32.
            map.entry(t).or_insert(i as u32);
        }
        Some(Self {
            vocab: map,
            dims,
            scales,
            rows: &bytes[rows_at..end],
        })
    }

    /// A Zipf estimate of `word`'s frequency in general text from its rank in the vocabulary
    /// (ordered roughly by frequency); `None` if the word is not one token.
    pub(crate) fn word_frequency(&self, word: &str) -> Option<f32> {
        let id = *self.vocab.get(word)?;
        let harmonic = (self.scales.len() as f32).ln() + 0.5772;
        Some(1.0 / ((id as f32 + 1.0) * harmonic))
    }

    /// Vector length.
    pub(crate) fn dims(&self) -> usize {
        self.dims
    }

    /// The unit vector of `text` (the normalised sum of its word pieces' vectors), written into
    /// `out` (of length [`Model::dims`]); false, with `out` zeroed, if no piece is known.
    pub(crate) fn embed(&self, text: &str, out: &mut [f32]) -> bool {
        let mut words = Words::new();
        analyse(text, &mut words);
        self.embed_words(&words, out)
    }

    /// [`Model::embed`] for a text already analysed. Joined forms are not words here, and
    /// stopwords are left out unless the text is nothing else. At most [`MAX_PIECES`] pieces
    /// count.
    pub(crate) fn embed_words(&self, words: &[(Rc<Word>, bool)], out: &mut [f32]) -> bool {
        out.fill(0.0);
        let plain = || words.iter().filter(|(_, joined)| !joined).map(|(w, _)| w);
        let keep_stopwords = plain().all(|w| w.stop);
        let mut budget = MAX_PIECES;
        for word in plain().filter(|w| keep_stopwords || !w.stop) {
            if budget == 0 {
                break;
            }
            let pieces = word.pieces();
            let n = pieces.len().min(budget);
            for &id in &pieces[..n] {
                self.add_row(id as usize, out);
            }
            budget -= n;
        }
        normalise(out)
    }

    /// `word`'s WordPiece ids: greedy longest match first, continuations prefixed with `##`;
    /// none if the word cannot be fully split (BERT maps it to `[UNK]`).
    pub(crate) fn split(&self, word: &str) -> Vec<u32> {
        let mut buf = String::new();
        let bounds: Vec<usize> = word
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(word.len()))
            .collect();
        if bounds.len() - 1 > MAX_WORD_CHARS {
            return Vec::new();
        }
        let mut ids: Vec<u32> = Vec::new();
        let mut start = 0;
        while start + 1 < bounds.len() {
            let mut found = None;
            for end in (start + 1..bounds.len()).rev() {
                buf.clear();
                if start > 0 {
                    buf.push_str("##");
                }
                buf.push_str(&word[bounds[start]..bounds[end]]);
                if let Some(&id) = self.vocab.get(buf.as_str()) {
                    found = Some((id, end));
                    break;
                }
            }
            let Some((id, end)) = found else {
                return Vec::new();
            };
            ids.push(id);
            start = end;
        }
        ids
    }

    /// `acc += row`, dequantised.
    fn add_row(&self, row: usize, acc: &mut [f32]) {
        let scale = self.scales.get(row).copied().unwrap_or(0.0);
        let Some(values) = self.rows.get(row * self.dims..(row + 1) * self.dims) else {
            return;
        };
        if scale == 0.0 {
            return;
        }
        for (a, &v) in acc.iter_mut().zip(values) {
            *a += scale * f32::from(v as i8);
        }
    }
}

/// Scales `v` to unit length; false (and `v` zeroed) if it is zero or not finite.
fn normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
        true
    } else {
        v.fill(0.0);
        false
    }
}

/// Quantises `v` to i8 in `out` (same length); returns the factor that maps the i8 values back
/// (0 for a zero vector).
pub(crate) fn quantise(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max <= 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Integer dot product of two i8 vectors of equal length. Sixteen independent lanes, so the
/// compiler turns the loop into SIMD multiply-adds; 127² x 16 x (dims / 16) stays far inside i32.
#[inline]
#[cfg(test)]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_fn()(a, b)
}

/// The fastest `dot_i8` this CPU runs: the same loop compiled for AVX2 where it is available
/// (twice the lanes; the scan over every operation's vector is most of a query's cost).
pub(crate) fn dot_i8_fn() -> fn(&[i8], &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return |a, b| {
            // SAFETY: AVX2 support was just checked.
            unsafe { dot_i8_avx2(a, b) }
        };
    }
    dot_i8_portable
}

/// `out[i]` = the dot product of `q` with row `i` of `rows` (rows of `q.len()` values, laid end
/// to end). One call for a whole scan, so the loop is compiled for AVX2 with the dot product
/// inlined, rather than an indirect call per row.
pub(crate) fn dot_rows_i8(q: &[i8], rows: &[i8], out: &mut Vec<i32>) {
    out.clear();
    if q.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked.
        return unsafe { dot_rows_avx2(q, rows, out) };
    }
    dot_rows_body(q, rows, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_rows_avx2(q: &[i8], rows: &[i8], out: &mut Vec<i32>) {
    out.reserve(rows.len() / q.len());
    for row in rows.chunks_exact(q.len()) {
        out.push(dot_i8_avx2_body(q, row));
    }
}

#[inline(always)]
fn dot_rows_body(q: &[i8], rows: &[i8], out: &mut Vec<i32>) {
    // A plain loop: an iterator adaptor here would be compiled apart from this function,
    // without AVX2.
    out.reserve(rows.len() / q.len());
    for row in rows.chunks_exact(q.len()) {
        out.push(dot_i8_body(q, row));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_avx2_body(a, b)
}

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_body(a, b)
}

/// The dot product one pair at a time: the tail of a vector shorter than a SIMD step.
#[inline(always)]
fn scalar_dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

#[inline(always)]
fn dot_i8_body(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 16;
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = scalar_dot(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// [`dot_i8_body`] with AVX2 spelled out: sixteen values widened to i16 at a time, multiplied
/// and summed in adjacent pairs by one `vpmaddwd`; the compiler does not find that instruction
/// on its own.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn dot_i8_avx2_body(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_shuffle_epi32,
        _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepi8_epi16, _mm256_extracti128_si256,
        _mm256_madd_epi16, _mm256_setzero_si256,
    };
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(16), b[..n].chunks_exact(16));
    let tail = scalar_dot(ca.remainder(), cb.remainder());
    let mut acc = _mm256_setzero_si256();
    for (x, y) in ca.zip(cb) {
        // SAFETY: each chunk is exactly 16 bytes, the width of the unaligned load.
        let (x, y) = unsafe {
            (
                _mm_loadu_si128(x.as_ptr().cast::<__m128i>()),
                _mm_loadu_si128(y.as_ptr().cast::<__m128i>()),
            )
        };
        let products = _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepi8_epi16(y));
        acc = _mm256_add_epi32(acc, products);
    }
    let sum = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256::<1>(acc),
    );
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
    _mm_cvtsi128_si32(sum) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(text: &str) -> Vec<f32> {
        let m = model().expect("compiled-in model parses");
        let mut v = vec![0.0; m.dims()];
        m.embed(text, &mut v);
        v
    }

    fn cos(a: &str, b: &str) -> f32 {
        vector(a).iter().zip(vector(b)).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn model_parses() {
        let m = model().expect("compiled-in model parses");
        assert!(m.dims() >= 32);
        assert_eq!(m.scales.len(), VOCAB.lines().count());
    }

    #[test]
    fn related_words_are_closer_than_unrelated_ones() {
        assert!(
            cos("rent an apartment", "housing for rent")
                > cos("rent an apartment", "weather forecast")
        );
        assert!(cos("spacious loft", "house renting") > cos("spacious loft", "stock prices"));
        assert!(cos("share prices", "stock market data") > cos("share prices", "recipe ideas"));
    }

    #[test]
    fn wordpiece_splits_unknown_words() {
        let m = model().expect("model");
        // "embeddings" is not one token but splits into pieces.
        assert!(m.split("embeddings").len() >= 2);
        assert_eq!(m.split("weather").len(), 1);
    }

    #[test]
    fn odd_input_gives_no_vector_and_no_panic() {
        let m = model().expect("model");
        let mut v = vec![0.0; m.dims()];
        assert!(!m.embed("", &mut v));
        assert!(!m.embed("  ?!  ", &mut v));
        assert!(v.iter().all(|&x| x == 0.0));
        m.embed("日本語 テキスト Ünïcode İstanbul 🦀", &mut v);
        m.embed(&"x".repeat(100_000), &mut v);
        m.embed(&"word ".repeat(100_000), &mut v);
    }

    #[test]
    fn row_scan_matches_one_dot_per_row() {
        for dims in [1usize, 15, 16, 17, 128] {
            let q: Vec<i8> = (0..dims)
                .map(|i| (i as i32 * 37 % 255 - 127) as i8)
                .collect();
            let rows: Vec<i8> = (0..dims * 9)
                .map(|i| (i as i32 * 91 % 255 - 127) as i8)
                .collect();
            let mut out = Vec::new();
            dot_rows_i8(&q, &rows, &mut out);
            let scalar: Vec<i32> = rows.chunks_exact(dims).map(|r| scalar_dot(&q, r)).collect();
            assert_eq!(out, scalar, "dims {dims}");
            let each: Vec<i32> = rows.chunks_exact(dims).map(|r| dot_i8(&q, r)).collect();
            assert_eq!(each, scalar, "dims {dims}");
            let portable: Vec<i32> = rows
                .chunks_exact(dims)
                .map(|r| dot_i8_portable(&q, r))
                .collect();
            assert_eq!(portable, scalar, "dims {dims}");
        }
    }

    #[test]
    fn quantised_dot_matches_float_cosine() {
        let (a, b) = (vector("weather forecast"), vector("rain tomorrow"));
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (mut qa, mut qb) = (vec![0i8; a.len()], vec![0i8; b.len()]);
        let (sa, sb) = (quantise(&a, &mut qa), quantise(&b, &mut qb));
        let approx = dot_i8(&qa, &qb) as f32 * sa * sb;
        assert!((exact - approx).abs() < 0.02, "{exact} vs {approx}");
    }
}
