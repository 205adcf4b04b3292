//! The inverted index and its incremental maintenance.
//!
//! Documents live in slots (`Vec<Option<Doc>>` plus a free list), so a document's id stays put
//! while others come and go. Each term has one postings list of `(doc, tf per field)`. Replacing a
//! namespace removes exactly its documents' postings (each document remembers its terms) and adds
//! the new ones; other namespaces' postings are never rebuilt. Global statistics (document count,
//! summed field lengths) are running totals; document frequency is a postings list's length.

use crate::Document;
use crate::config::{FIELDS, Field, Ranking};
use crate::hash::FxHashMap;
use crate::semantic::{self, quantise};
use crate::words::{Words, analyse};

/// Index of a document slot.
pub(crate) type DocId = u32;
/// Index of a term in the dictionary.
pub(crate) type TermId = u32;
/// Index of a namespace slot.
pub(crate) type NsId = u32;

/// One document's occurrences of one term, per field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Posting {
    pub doc: DocId,
    pub tf: [u16; FIELDS],
}

/// What is kept per document.
#[derive(Debug)]
pub(crate) struct Doc {
    pub name: Box<str>,
    /// Terms per field.
    pub len: [u32; FIELDS],
    /// Distinct terms with their total frequency over all fields: used to remove the document's
    /// postings and as the document's term vector for feedback.
    pub terms: Box<[(TermId, u16)]>,
    /// Sum of `terms`' frequencies.
    pub total_len: u32,
}

#[derive(Debug)]
pub(crate) struct Namespace {
    pub name: Box<str>,
    /// The namespace's documents, sorted by name (browsing order).
    pub docs: Vec<DocId>,
}

/// Buffers reused across the documents of one [`SearchIndex::replace_namespace`].
#[derive(Default)]
struct Scratch {
    /// The namespace's words, the same for every document.
    namespace: Words,
    name: Words,
    description: Words,
    /// Parameter names and descriptions, one at a time.
    words: Words,
    occurrences: Vec<(TermId, u8)>,
}

/// A ranked, incrementally updated index of operations. See the crate docs.
#[derive(Debug)]
pub struct SearchIndex {
    pub(crate) ranking: Ranking,
    pub(crate) docs: Vec<Option<Doc>>,
    free_docs: Vec<DocId>,
    /// Per document slot, its field lengths and namespace: kept beside `docs` in flat arrays
    /// because scoring reads them for every posting. Length normalisation is computed from
    /// these at query time, so an update never has to revisit other documents.
    pub(crate) lens: Vec<[f32; FIELDS]>,
    pub(crate) doc_ns: Vec<NsId>,
    pub(crate) live: usize,
    pub(crate) len_sums: [u64; FIELDS],
    pub(crate) dict: FxHashMap<Box<str>, TermId>,
    /// Term strings by id (empty for freed ids).
    term_names: Vec<Box<str>>,
    free_terms: Vec<TermId>,
    pub(crate) postings: Vec<Vec<Posting>>,
    pub(crate) namespaces: Vec<Option<Namespace>>,
    free_namespaces: Vec<NsId>,
    pub(crate) ns_ids: FxHashMap<Box<str>, NsId>,
    /// Semantic document vectors: `vector_dims` i8 values per document slot, flat, unit
    /// length after scaling by the slot's `vector_scale` (0 for a free slot, a document without
    /// a vector, or when semantic matching is off).
    pub(crate) vectors: Vec<i8>,
    pub(crate) vector_scale: Vec<f32>,
    pub(crate) vector_dims: usize,
}

impl Default for SearchIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl SearchIndex {
    /// An empty index with the default [`Ranking`].
    pub fn new() -> Self {
        Self::with_ranking(Ranking::default())
    }

    /// An empty index with the given ranking parameters.
    pub fn with_ranking(ranking: Ranking) -> Self {
        // Semantic vectors are only computed when the ranking uses them and the compiled-in
        // model parses.
        let vector_dims = match ranking.semantic {
            Some(_) => semantic::model().map_or(0, |m| m.dims()),
            None => 0,
        };
        Self {
            ranking,
            docs: Vec::new(),
            free_docs: Vec::new(),
            lens: Vec::new(),
            doc_ns: Vec::new(),
            live: 0,
            len_sums: [0; FIELDS],
            dict: FxHashMap::default(),
            term_names: Vec::new(),
            free_terms: Vec::new(),
            postings: Vec::new(),
            namespaces: Vec::new(),
            free_namespaces: Vec::new(),
            ns_ids: FxHashMap::default(),
            vectors: Vec::new(),
            vector_scale: Vec::new(),
            vector_dims,
        }
    }

    /// The ranking parameters in use.
    pub fn ranking(&self) -> &Ranking {
        &self.ranking
    }

    /// Replaces every document of `namespace` with `docs`; other namespaces are untouched.
    ///
    /// Each document is indexed under `namespace` whatever its own `namespace` field says, so a
    /// catalog can never leak into another namespace. An empty `docs` removes the namespace.
    pub fn replace_namespace(&mut self, namespace: &str, docs: Vec<Document>) {
        self.remove_docs_of(namespace);
        if docs.is_empty() {
            return;
        }
        let ns = self.namespace_id(namespace);
        let mut scratch = Scratch::default();
        analyse(namespace, &mut scratch.namespace);
        let mut ids = Vec::with_capacity(docs.len());
        for doc in &docs {
            ids.push(self.add_doc(ns, doc, &mut scratch));
        }
        // Browsing order: by name.
        ids.sort_by(|a, b| self.doc(*a).name.cmp(&self.doc(*b).name));
        if let Some(Some(entry)) = self.namespaces.get_mut(ns as usize) {
            entry.docs = ids;
        }
    }

    /// Removes every document of `namespace`.
    pub fn remove_namespace(&mut self, namespace: &str) {
        self.remove_docs_of(namespace);
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if there are no documents.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of distinct terms in the dictionary.
    pub fn term_count(&self) -> usize {
        self.dict.len()
    }

    /// Names of the namespaces that have documents, sorted.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.namespaces.iter().flatten().map(|n| &*n.name).collect();
        out.sort_unstable();
        out
    }

    /// A live document by id. Ids come from postings and namespace lists, which only ever hold
    /// live documents.
    pub(crate) fn doc(&self, id: DocId) -> &Doc {
        match self.docs.get(id as usize) {
            Some(Some(doc)) => doc,
            _ => unreachable!("postings and namespace lists only hold live documents"),
        }
    }

    /// The id of namespace `name`, creating it if needed.
    fn namespace_id(&mut self, name: &str) -> NsId {
        if let Some(&id) = self.ns_ids.get(name) {
            return id;
        }
        let entry = Namespace {
            name: name.into(),
            docs: Vec::new(),
        };
        let id = match self.free_namespaces.pop() {
            Some(id) => {
                self.namespaces[id as usize] = Some(entry);
                id
            }
            None => {
                self.namespaces.push(Some(entry));
                (self.namespaces.len() - 1) as NsId
            }
        };
        self.ns_ids.insert(name.into(), id);
        id
    }

    /// The id of `term`, adding it to the dictionary if needed.
    fn term_id(&mut self, term: &str) -> TermId {
        if let Some(&id) = self.dict.get(term) {
            return id;
        }
        let id = match self.free_terms.pop() {
            Some(id) => {
                self.term_names[id as usize] = term.into();
                id
            }
            None => {
                self.term_names.push(term.into());
                self.postings.push(Vec::new());
                (self.term_names.len() - 1) as TermId
            }
        };
        self.dict.insert(term.into(), id);
        id
    }

    /// Tokenizes and indexes one document, returning its id.
    fn add_doc(&mut self, ns: NsId, doc: &Document, scratch: &mut Scratch) -> DocId {
        let tool = if doc.tool.is_empty() {
            &doc.name
        } else {
            &doc.tool
        };
        // Term occurrences as (term, field) pairs, sorted below so equal terms are adjacent:
        // cheaper than a map for the hundred-odd words of a typical tool.
        let Scratch {
            namespace,
            name,
            description,
            words,
            occurrences,
        } = scratch;
        occurrences.clear();
        let mut len = [0u32; FIELDS];
        analyse(tool, name);
        self.add_terms(name, Field::Name, occurrences, &mut len);
        self.add_terms(namespace, Field::Namespace, occurrences, &mut len);
        analyse(&doc.description, description);
        self.add_terms(description, Field::Description, occurrences, &mut len);
        for p in &doc.params {
            analyse(&p.name, words);
            self.add_terms(words, Field::ParamName, occurrences, &mut len);
        }
        for p in &doc.params {
            analyse(&p.description, words);
            self.add_terms(words, Field::ParamDescription, occurrences, &mut len);
        }
        occurrences.sort_unstable();

        let id = match self.free_docs.pop() {
            Some(id) => id,
            None => {
                self.docs.push(None);
                self.lens.push([0.0; FIELDS]);
                self.doc_ns.push(ns);
                self.vector_scale.push(0.0);
                self.vectors
                    .resize(self.vectors.len() + self.vector_dims, 0);
                (self.docs.len() - 1) as DocId
            }
        };
        let mut term_list: Vec<(TermId, u16)> = Vec::new();
        let mut total_len = 0u32;
        for group in scratch.occurrences.chunk_by(|a, b| a.0 == b.0) {
            let t = group[0].0;
            let mut tf = [0u16; FIELDS];
            for &(_, f) in group {
                tf[f as usize] = tf[f as usize].saturating_add(1);
            }
            let total = u16::try_from(group.len()).unwrap_or(u16::MAX);
            total_len += u32::from(total);
            term_list.push((t, total));
            self.postings[t as usize].push(Posting { doc: id, tf });
        }
        for (sum, l) in self.len_sums.iter_mut().zip(len) {
            *sum += u64::from(l);
        }
        self.lens[id as usize] = len.map(|l| l as f32);
        self.doc_ns[id as usize] = ns;
        self.set_vector(id, doc, &scratch.name, &scratch.description);
        self.docs[id as usize] = Some(Doc {
            name: doc.name.as_str().into(),
            len,
            terms: term_list.into_boxed_slice(),
            total_len,
        });
        self.live += 1;
        id
    }

    /// Adds the terms of one field's words to `occurrences`: stopwords are left out unless
    /// the field has nothing else.
    fn add_terms(
        &mut self,
        words: &Words,
        field: Field,
        occurrences: &mut Vec<(TermId, u8)>,
        len: &mut [u32; FIELDS],
    ) {
        let keep_stopwords = words.iter().all(|(w, _)| w.stop);
        for (word, _) in words.iter().filter(|(w, _)| keep_stopwords || !w.stop) {
            occurrences.push((self.term_id(&word.term), field as u8));
            len[field as usize] += 1;
        }
    }

    /// Computes and stores document `id`'s semantic vector: the weighted sum of the unit
    /// vectors of its name, description and parameters, normalised and quantised. `name` and
    /// `description` are the words of the name and the description, already analysed.
    fn set_vector(&mut self, id: DocId, doc: &Document, name: &Words, description: &Words) {
        let (Some(sem), Some(model)) = (self.ranking.semantic, semantic::model()) else {
            return;
        };
        let dims = self.vector_dims;
        if dims == 0 {
            return;
        }
        let mut sum = vec![0.0f32; dims];
        let mut part = vec![0.0f32; dims];
        let mut add = |part: &[f32], weight: f32| {
            sum.iter_mut().zip(part).for_each(|(s, p)| *s += weight * p);
        };
        if sem.name_weight > 0.0 && model.embed_words(name, &mut part) {
            add(&part, sem.name_weight);
        }
        if model.embed_words(description, &mut part) {
            add(&part, 1.0);
        }
        if sem.param_weight > 0.0 && !doc.params.is_empty() {
            let mut text = String::new();
            for p in &doc.params {
                text.push_str(&p.name);
                text.push(' ');
                text.push_str(&p.description);
                text.push(' ');
            }
            if model.embed(&text, &mut part) {
                add(&part, sem.param_weight);
            }
        }
        let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            sum.iter_mut().for_each(|x| *x /= norm);
        }
        let at = id as usize * dims;
        let Some(slot) = self.vectors.get_mut(at..at + dims) else {
            return;
        };
        self.vector_scale[id as usize] = quantise(&sum, slot);
    }

    /// Removes the documents of `namespace` and the namespace itself, touching only the postings
    /// lists of terms those documents contain.
    fn remove_docs_of(&mut self, namespace: &str) {
        let Some(ns) = self.ns_ids.remove(namespace) else {
            return;
        };
        let Some(entry) = self.namespaces.get_mut(ns as usize).and_then(Option::take) else {
            return;
        };
        self.free_namespaces.push(ns);

        let mut dying = vec![false; self.docs.len()];
        let mut touched: Vec<TermId> = Vec::new();
        for &id in &entry.docs {
            let Some(doc) = self.docs.get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            dying[id as usize] = true;
            touched.extend(doc.terms.iter().map(|&(t, _)| t));
            for (sum, l) in self.len_sums.iter_mut().zip(doc.len) {
                *sum -= u64::from(l);
            }
            self.live -= 1;
            self.free_docs.push(id);
            self.vector_scale[id as usize] = 0.0;
        }
        touched.sort_unstable();
        touched.dedup();
        for t in touched {
            let list = &mut self.postings[t as usize];
            list.retain(|p| !dying[p.doc as usize]);
            if list.is_empty() {
                // Free the term so a changing vocabulary does not grow the dictionary forever.
                list.shrink_to_fit();
                let name = std::mem::take(&mut self.term_names[t as usize]);
                self.dict.remove(&name);
                self.free_terms.push(t);
            }
        }
    }

    /// An estimate of the heap memory the index holds, in bytes.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let docs: usize = self
            .docs
            .iter()
            .flatten()
            .map(|d| d.name.len() + d.terms.len() * size_of::<(TermId, u16)>())
            .sum::<usize>()
            + self.docs.capacity() * size_of::<Option<Doc>>();
        let postings: usize = self
            .postings
            .iter()
            .map(|p| p.capacity() * size_of::<Posting>())
            .sum::<usize>()
            + self.postings.capacity() * size_of::<Vec<Posting>>();
        let dict: usize = self.term_names.iter().map(|t| 2 * t.len()).sum::<usize>()
            + self.dict.capacity() * (size_of::<Box<str>>() + size_of::<TermId>() + 1)
            + self.term_names.capacity() * size_of::<Box<str>>();
        let norms = self.lens.capacity() * size_of::<[f32; FIELDS]>()
            + self.doc_ns.capacity() * size_of::<NsId>()
            + self.vectors.capacity()
            + self.vector_scale.capacity() * size_of::<f32>();
        let ns: usize = self
            .namespaces
            .iter()
            .flatten()
            .map(|n| 2 * n.name.len() + n.docs.capacity() * 4)
            .sum();
        docs + postings + dict + norms + ns
    }
}
