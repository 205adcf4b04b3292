//! Query evaluation: BM25F scoring, pseudo-relevance feedback and top-k selection.

use std::cmp::Ordering;

use crate::Hit;
use crate::config::{Expansion, FIELDS, Field, Semantic};
use crate::index::{DocId, NsId, SearchIndex, TermId};
use crate::related;
use crate::semantic::{self, quantise};
use crate::stem::stem;
use crate::tokenize::content_words;

/// At most this many distinct query terms are scored; a pasted essay should not cost more than
/// a sentence. The first terms win, which is where a question usually states its subject.
const MAX_QUERY_TERMS: usize = 64;

/// Lexicon expansion skips related words found in more than one document in this many.
const MAX_RELATED_DF_DIVISOR: usize = 20;

/// Per-document score accumulators for one query.
struct Scores {
    acc: Vec<f32>,
    /// Documents with a non-zero score, each once.
    touched: Vec<DocId>,
}

impl Scores {
    fn new(slots: usize) -> Self {
        Self {
            acc: vec![0.0; slots],
            touched: Vec::new(),
        }
    }
}

impl SearchIndex {
    /// Ranked hits for `query`, best first; only documents for which `allow(name)` holds are
    /// counted, so `limit` applies after filtering. Ties are broken by name, ascending.
    ///
    /// A query with no words (empty, blank or punctuation only) browses: with a namespace, all
    /// of its documents; without, every document; sorted by name, with score 0.
    pub fn search(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
        allow: &dyn Fn(&str) -> bool,
    ) -> Vec<Hit> {
        if limit == 0 {
            return Vec::new();
        }
        let ns = match namespace {
            Some(name) => match self.ns_ids.get(name) {
                Some(&id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        // Empty only if the query has no words at all (stopwords are kept when alone).
        let raw = content_words(query);
        if raw.is_empty() {
            return self.browse(ns, limit, allow);
        }

        let priors = self.query_priors(&raw);
        let words: Vec<String> = raw.iter().map(|w| stem(w)).collect();
        let mut query_terms = self.query_terms(&words, &priors);
        if let Some(e) = self.ranking.expansion {
            let related = self.related_terms(&words, &query_terms, e);
            query_terms.extend(related);
        }
        let sem = self
            .ranking
            .semantic
            .filter(|s| s.weight > 0.0 && s.candidates > 0 && self.vector_dims > 0);
        if query_terms.is_empty() && sem.is_none() {
            return Vec::new();
        }
        let mut scores = Scores::new(self.docs.len());
        for &(t, w) in &query_terms {
            self.accumulate(t, w, ns, &mut scores);
        }
        if let Some(fb) = self
            .ranking
            .feedback
            .filter(|f| f.docs > 0 && f.terms > 0 && f.weight > 0.0)
        {
            let top = self.top(&scores, fb.docs, allow);
            let expansion = self.expansion(&top, &query_terms, fb.terms, fb.weight);
            for (t, w) in expansion {
                self.accumulate(t, w, ns, &mut scores);
            }
        }
        if let Some(sem) = sem {
            self.add_semantic(query, ns, sem, allow, &mut scores);
        }
        if let Some(c) = self
            .ranking
            .centrality
            .filter(|c| c.docs > 1 && c.weight > 0.0)
        {
            let top = self.top(&scores, c.docs, allow);
            self.add_centrality(&top, c.weight, &mut scores);
        }
        self.top(&scores, limit, allow)
            .into_iter()
            .map(|(doc, score)| Hit {
                name: self.doc(doc).name.to_string(),
                score,
            })
            .collect()
    }

    /// Per query word, the weight its frequency in general English leaves it (see
    /// [`Ranking::query_prior`](crate::Ranking::query_prior)): "way", "help" and "information" are everywhere and say
    /// little; "arxiv" and "bitcoin" say what is wanted.
    fn query_priors(&self, words: &[String]) -> Vec<f32> {
        let (Some(a), Some(model)) = (self.ranking.query_prior, semantic::model()) else {
            return vec![1.0; words.len()];
        };
        words
            .iter()
            .map(|w| model.word_frequency(w).map_or(1.0, |p| a / (a + p)))
            .collect()
    }

    /// Distinct known query terms with their weights: the summed priors of their occurrences.
    fn query_terms(&self, words: &[String], priors: &[f32]) -> Vec<(TermId, f32)> {
        let mut out: Vec<(TermId, f32)> = Vec::new();
        for (term, &prior) in words.iter().zip(priors) {
            let Some(&t) = self.dict.get(term.as_str()) else {
                continue;
            };
            if let Some((_, w)) = out.iter_mut().find(|(u, _)| *u == t) {
                *w += prior;
            } else if out.len() < MAX_QUERY_TERMS {
                out.push((t, prior));
            }
        }
        out
    }

    /// Index terms related to the query's words in the lexicon (see [`Expansion`]), with
    /// weights: `close` or `broad` for each related word the index knows and the query does not
    /// already hold, the larger if several query words lead to it. Query words the index does
    /// not know are expanded too ("legal" finds "law"). Related words in more than one document in
    /// [`MAX_RELATED_DF_DIVISOR`] are skipped.
    fn related_terms(
        &self,
        words: &[String],
        query: &[(TermId, f32)],
        e: Expansion,
    ) -> Vec<(TermId, f32)> {
        let table = related::table();
        let max_df = (self.live / MAX_RELATED_DF_DIVISOR).max(1);
        let mut out: Vec<(TermId, f32)> = Vec::new();
        let add = |stem: &str, w: f32, out: &mut Vec<(TermId, f32)>| {
            let Some(&t) = self.dict.get(stem) else {
                return;
            };
            // A related word found in many documents would add little (low idf, reduced
            // weight) and cost a long postings scan.
            if self.postings[t as usize].len() > max_df || query.iter().any(|&(q, _)| q == t) {
                return;
            }
            if let Some((_, old)) = out.iter_mut().find(|(u, _)| *u == t) {
                *old = old.max(w);
            } else if out.len() < MAX_QUERY_TERMS {
                out.push((t, w));
            }
        };
        for (i, word) in words.iter().enumerate().take(MAX_QUERY_TERMS) {
            if words[..i].contains(word) {
                continue;
            }
            let Some(entry) = table.get(word.as_str()) else {
                continue;
            };
            for s in &entry.close {
                add(s, e.close, &mut out);
            }
            for s in &entry.broad {
                add(s, e.broad, &mut out);
            }
        }
        out.retain(|&(_, w)| w > 0.0);
        out
    }

    /// Inverse document frequency (the BM25 form that never goes negative).
    fn idf(&self, t: TermId) -> f32 {
        let n = self.live as f32;
        let df = self.postings[t as usize].len() as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Adds `weight` times term `t`'s BM25F contribution to every matching document in the
    /// namespace filter.
    fn accumulate(&self, t: TermId, weight: f32, ns: Option<NsId>, scores: &mut Scores) {
        let idf = self.idf(t) * weight;
        let k1 = self.ranking.k1;
        let name_bonus = self.ranking.name_bonus;
        // BM25F length normalisation per field, 1 / (1 - b + b * len / avg), as
        // 1 / (a + c * len) with the constants hoisted out of the loop.
        let n = self.live.max(1) as f32;
        let fields = &self.ranking.fields;
        let w: [f32; FIELDS] = std::array::from_fn(|f| fields[f].weight);
        let a: [f32; FIELDS] = std::array::from_fn(|f| 1.0 - fields[f].b.clamp(0.0, 1.0));
        let c: [f32; FIELDS] = std::array::from_fn(|f| {
            let avg = (self.len_sums[f] as f32 / n).max(1.0);
            fields[f].b.clamp(0.0, 1.0) / avg
        });
        const NAME: usize = Field::Name as usize;
        let name_df = self.postings[t as usize]
            .iter()
            .filter(|p| p.tf[NAME] > 0)
            .count() as f32;
        let name_idf = (1.0 + (n - name_df + 0.5) / (name_df + 0.5)).ln() * weight;
        for p in &self.postings[t as usize] {
            let d = p.doc as usize;
            if ns.is_some_and(|ns| self.doc_ns[d] != ns) {
                continue;
            }
            let len = &self.lens[d];
            let mut tf = 0.0;
            let mut name_tf = 0.0;
            for f in 0..FIELDS {
                if p.tf[f] > 0 {
                    let ntf = f32::from(p.tf[f]) / (a[f] + c[f] * len[f]);
                    tf += w[f] * ntf;
                    if f == NAME {
                        name_tf = ntf;
                    }
                }
            }
            if tf <= 0.0 {
                continue;
            }
            let mut s = idf * tf / (k1 + tf);
            if name_tf > 0.0 {
                s += name_bonus * name_idf * name_tf / (k1 + name_tf);
            }
            if scores.acc[d] == 0.0 {
                scores.touched.push(p.doc);
            }
            scores.acc[d] += s;
        }
    }

    /// Fuses semantic similarity into `scores` (see [`Semantic`]): the `candidates` documents
    /// (in the namespace filter) whose vectors are closest to the query's gain up to `weight`
    /// times the best lexical score (or `weight` if nothing matched lexically).
    fn add_semantic(
        &self,
        query: &str,
        ns: Option<NsId>,
        sem: Semantic,
        allow: &dyn Fn(&str) -> bool,
        scores: &mut Scores,
    ) {
        let dims = self.vector_dims;
        let Some(model) = semantic::model() else {
            return;
        };
        let mut q = vec![0.0f32; dims];
        if dims == 0 || model.dims() != dims || !model.embed(query, &mut q) {
            return;
        }
        if sem.feedback_docs > 0 && sem.feedback_weight > 0.0 {
            let top = self.top(scores, sem.feedback_docs, allow);
            self.add_feedback_centroid(&top, sem.feedback_weight, &mut q);
        }
        let mut qi = vec![0i8; dims];
        let q_scale = quantise(&q, &mut qi);
        let mut sims: Vec<(DocId, f32)> = Vec::new();
        match ns {
            Some(ns) => {
                let dot = semantic::dot_i8_fn();
                if let Some(Some(entry)) = self.namespaces.get(ns as usize) {
                    for &d in &entry.docs {
                        if let Some((v, scale)) = self.doc_vector(d) {
                            sims.push((d, dot(&qi, v) as f32 * scale * q_scale));
                        }
                    }
                }
            }
            None => {
                let mut dots = Vec::with_capacity(self.vector_scale.len());
                semantic::dot_rows_i8(&qi, &self.vectors, &mut dots);
                for (d, (&dot, &scale)) in dots.iter().zip(&self.vector_scale).enumerate() {
                    if scale > 0.0 {
                        sims.push((d as DocId, dot as f32 * scale * q_scale));
                    }
                }
            }
        }
        let k = sem.candidates.min(sims.len());
        if k == 0 {
            return;
        }
        if k < sims.len() {
            sims.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            sims.truncate(k);
        }
        let best = sims.iter().fold(f32::MIN, |m, &(_, c)| m.max(c));
        let floor = sims.iter().fold(f32::MAX, |m, &(_, c)| m.min(c));
        let range = best - floor;
        if range <= 0.0 || !range.is_finite() {
            return;
        }
        let lexical_best = scores
            .touched
            .iter()
            .fold(0.0f32, |m, &d| m.max(scores.acc[d as usize]));
        let unit = if lexical_best > 0.0 {
            lexical_best
        } else {
            1.0
        };
        for (d, c) in sims {
            let gain = sem.weight * unit * (c - floor) / range;
            if gain > 0.0 {
                if scores.acc[d as usize] == 0.0 {
                    scores.touched.push(d);
                }
                scores.acc[d as usize] += gain;
            }
        }
    }

    /// Document `d`'s quantised vector and its scale, if it has one.
    fn doc_vector(&self, d: DocId) -> Option<(&[i8], f32)> {
        let dims = self.vector_dims;
        let scale = self.vector_scale.get(d as usize).copied().unwrap_or(0.0);
        let at = d as usize * dims;
        let v = self.vectors.get(at..at + dims)?;
        (scale > 0.0).then_some((v, scale))
    }

    /// Dense pseudo-relevance feedback (Rocchio): moves the query vector `q` to
    /// `q / |q| + weight x c / |c|`, `c` the centroid of the `top` documents' vectors, each
    /// weighted by its share of their scores. The best lexical matches say what the query is
    /// about in the catalog's own terms; a tool that sits among them (a general tool beside the
    /// specific ones) then scores as close to the query as they do.
    fn add_feedback_centroid(&self, top: &[(DocId, f32)], weight: f32, q: &mut [f32]) {
        let dims = q.len();
        let total: f32 = top.iter().map(|&(_, s)| s).sum();
        if total <= 0.0 {
            return;
        }
        let mut c = vec![0.0f32; dims];
        for &(d, score) in top {
            if let Some((v, scale)) = self.doc_vector(d) {
                let w = score / total * scale;
                for (ci, &vi) in c.iter_mut().zip(v) {
                    *ci += w * f32::from(vi);
                }
            }
        }
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let (cn, qn) = (norm(&c), norm(q));
        if cn > 0.0 && qn > 0.0 {
            for (qi, ci) in q.iter_mut().zip(&c) {
                *qi = *qi / qn + weight * ci / cn;
            }
        }
    }

    /// RM3-style expansion terms from the `top` documents: each term weighs the sum over those
    /// documents of (document's share of the top scores) x (term's share of the document),
    /// times its idf so that words every description uses do not take over. The strongest
    /// term gets `weight`; terms already in the query are skipped.
    fn expansion(
        &self,
        top: &[(DocId, f32)],
        query: &[(TermId, f32)],
        count: usize,
        weight: f32,
    ) -> Vec<(TermId, f32)> {
        let total: f32 = top.iter().map(|&(_, s)| s).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        let mut weights: Vec<(TermId, f32)> = Vec::new();
        for &(doc, score) in top {
            let doc = self.doc(doc);
            let p_doc = score / total;
            let len = doc.total_len.max(1) as f32;
            for &(t, tf) in doc.terms.iter() {
                let w = p_doc * f32::from(tf) / len;
                match weights.binary_search_by_key(&t, |&(u, _)| u) {
                    Ok(i) => weights[i].1 += w,
                    Err(i) => weights.insert(i, (t, w)),
                }
            }
        }
        let mut weights: Vec<(TermId, f32)> = weights
            .into_iter()
            .filter(|(t, _)| !query.iter().any(|(q, _)| q == t))
            .map(|(t, w)| (t, w * self.idf(t)))
            .collect();
        weights.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        weights.truncate(count);
        let max = weights.first().map_or(0.0, |&(_, w)| w);
        if max <= 0.0 {
            return Vec::new();
        }
        weights
            .into_iter()
            .map(|(t, w)| (t, weight * w / max))
            .collect()
    }

    /// A document's tf-idf vector (sorted by term), L2-normalised.
    fn unit_vector(&self, doc: DocId) -> Vec<(TermId, f32)> {
        let mut v: Vec<(TermId, f32)> = self
            .doc(doc)
            .terms
            .iter()
            .map(|&(t, tf)| (t, (1.0 + f32::from(tf).ln()) * self.idf(t)))
            .collect();
        let norm = v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, w)| *w /= norm);
        }
        v
    }

    /// Adds to each of `top` its score-weighted mean similarity to the others (see
    /// [`crate::Centrality`]).
    fn add_centrality(&self, top: &[(DocId, f32)], weight: f32, scores: &mut Scores) {
        let best = top.first().map_or(0.0, |&(_, s)| s);
        let total: f32 = top.iter().map(|&(_, s)| s).sum();
        if best <= 0.0 || top.len() < 2 {
            return;
        }
        let vectors: Vec<Vec<(TermId, f32)>> =
            top.iter().map(|&(d, _)| self.unit_vector(d)).collect();
        let mut bonus = vec![0.0f32; top.len()];
        for i in 0..top.len() {
            for j in i + 1..top.len() {
                let sim = cosine(&vectors[i], &vectors[j]);
                bonus[i] += sim * top[j].1;
                bonus[j] += sim * top[i].1;
            }
        }
        for (i, &(doc, s)) in top.iter().enumerate() {
            let others = total - s;
            if others > 0.0 {
                scores.acc[doc as usize] += weight * best * bonus[i] / others;
            }
        }
    }

    /// The best `limit` allowed documents among those scored, best first.
    fn top(
        &self,
        scores: &Scores,
        limit: usize,
        allow: &dyn Fn(&str) -> bool,
    ) -> Vec<(DocId, f32)> {
        let candidates = scores
            .touched
            .iter()
            .map(|&d| (scores.acc[d as usize], d))
            .collect();
        self.best_allowed(candidates, limit, allow)
    }

    /// The best `limit` of `candidates` (`(score, doc)`) that `allow` lets through, best first:
    /// higher score, then smaller name. A query can touch thousands of documents and asks for a
    /// handful three times (feedback, centrality, the answer): partial selection, widened only
    /// if `allow` turned some of the best away, keeps that cheap, and `allow` is only asked
    /// about candidates that might be returned.
    fn best_allowed(
        &self,
        mut candidates: Vec<(f32, DocId)>,
        limit: usize,
        allow: &dyn Fn(&str) -> bool,
    ) -> Vec<(DocId, f32)> {
        let order = |a: &(f32, DocId), b: &(f32, DocId)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.doc(a.1).name.cmp(&self.doc(b.1).name))
        };
        let mut want = limit;
        loop {
            let head = if want < candidates.len() {
                candidates.select_nth_unstable_by(want, order).0
            } else {
                &mut candidates[..]
            };
            head.sort_unstable_by(order);
            let out: Vec<(DocId, f32)> = head
                .iter()
                .filter(|&&(_, d)| allow(&self.doc(d).name))
                .take(limit)
                .map(|&(s, d)| (d, s))
                .collect();
            if out.len() == limit || want >= candidates.len() {
                return out;
            }
            want = want.saturating_mul(4);
        }
    }

    /// Documents of namespace `ns` (or all) in name order, score 0.
    fn browse(&self, ns: Option<NsId>, limit: usize, allow: &dyn Fn(&str) -> bool) -> Vec<Hit> {
        let hit = |doc: DocId| Hit {
            name: self.doc(doc).name.to_string(),
            score: 0.0,
        };
        match ns {
            // A namespace's list is already sorted by name.
            Some(ns) => match self.namespaces.get(ns as usize) {
                Some(Some(entry)) => entry
                    .docs
                    .iter()
                    .copied()
                    .filter(|&d| allow(&self.doc(d).name))
                    .take(limit)
                    .map(hit)
                    .collect(),
                _ => Vec::new(),
            },
            None => {
                let all = (0..self.docs.len())
                    .filter(|&i| self.docs[i].is_some())
                    .map(|i| (0.0, i as DocId))
                    .collect();
                self.best_allowed(all, limit, allow)
                    .into_iter()
                    .map(|(d, _)| hit(d))
                    .collect()
            }
        }
    }
}

/// Cosine of two unit vectors sorted by term.
fn cosine(a: &[(TermId, f32)], b: &[(TermId, f32)]) -> f32 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    dot
}
