//! A compact Porter stemmer (M. F. Porter, "An algorithm for suffix stripping", 1980).
//!
//! Stemming lets "papers", "paper" and "papering" meet in one index term. Porter is a good fit
//! here: operation descriptions and agent queries are short English, and the algorithm is a few
//! rule tables with no data files. Words that are not plain lowercase ASCII (digits, other
//! scripts) are returned unchanged, because the rules only make sense for English letters.

/// Returns the Porter stem of `word`, which must already be lowercase.
///
/// Words of one or two letters and anything containing a non `a-z` byte are returned as they are.
pub fn stem(word: &str) -> String {
    stem_owned(word.to_string())
}

/// [`stem`] reusing the word's own buffer.
pub fn stem_owned(word: String) -> String {
    if word.len() <= 2 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word;
    }
    if let Some(stem) = exception(&word) {
        return stem.to_string();
    }
    let mut w = Word {
        b: word.into_bytes(),
    };
    w.step1ab();
    if w.b.len() > 2 {
        w.step1c();
        w.step2();
        w.step3();
        w.step4();
        w.step5();
    }
    // Only ASCII letters were ever written into `b`, so this cannot fail; fall back defensively.
    String::from_utf8(w.b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Whole words Porter's rules get wrong, with their stems, from the exception lists of its
/// successor, Porter2 (Snowball's English stemmer). `news` matters most: Porter makes it
/// `new`, a word half of all tool descriptions use ("create a new issue").
fn exception(word: &str) -> Option<&'static str> {
    Some(match word {
        "news" => "news",
        "atlas" => "atlas",
        "cosmos" => "cosmos",
        "bias" => "bias",
        "andes" => "andes",
        "sky" | "skies" => "sky",
        "skis" => "ski",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "inning" | "innings" => "inning",
        "outing" | "outings" => "outing",
        "herring" | "herrings" => "herring",
        "earring" | "earrings" => "earring",
        "proceed" | "proceeds" => "proceed",
        "exceed" | "exceeds" => "exceed",
        "succeed" | "succeeds" => "succeed",
        _ => return None,
    })
}

/// The word being stemmed. The rules are phrased on prefix lengths rather than the signed
/// indices of Porter's C code, so no index can go below zero.
struct Word {
    b: Vec<u8>,
}

impl Word {
    /// Is the letter at `i` a consonant? `y` is a consonant at the start or after a vowel.
    fn cons(&self, i: usize) -> bool {
        match self.b[i] {
            b'a' | b'e' | b'i' | b'o' | b'u' => false,
            b'y' => i == 0 || !self.cons(i - 1),
            _ => true,
        }
    }

    /// The measure m of `b[..len]`: the number of vowel-consonant sequences, `[C](VC)^m[V]`.
    fn measure(&self, len: usize) -> usize {
        let mut m = 0;
        let mut i = 0;
        // Skip the leading consonants.
        while i < len && self.cons(i) {
            i += 1;
        }
        loop {
            while i < len && !self.cons(i) {
                i += 1;
            }
            if i >= len {
                return m;
            }
            while i < len && self.cons(i) {
                i += 1;
            }
            m += 1;
        }
    }

    /// Does `b[..len]` contain a vowel?
    fn has_vowel(&self, len: usize) -> bool {
        (0..len).any(|i| !self.cons(i))
    }

    /// Does `b[..len]` end with a double consonant?
    fn double_cons(&self, len: usize) -> bool {
        len >= 2 && self.b[len - 1] == self.b[len - 2] && self.cons(len - 1)
    }

    /// Does `b[..len]` end consonant-vowel-consonant, the last not `w`, `x` or `y`? Such stems
    /// (hop, fil) get their `e` back (hope, file) in step 1b and keep it in step 5.
    fn cvc(&self, len: usize) -> bool {
        if len < 3 || !self.cons(len - 1) || self.cons(len - 2) || !self.cons(len - 3) {
            return false;
        }
        !matches!(self.b[len - 1], b'w' | b'x' | b'y')
    }

    /// If the word ends with `suffix`, the length of what precedes it.
    fn ends(&self, suffix: &[u8]) -> Option<usize> {
        self.b
            .ends_with(suffix)
            .then(|| self.b.len() - suffix.len())
    }

    /// Replaces everything after `stem_len` with `to`.
    fn set(&mut self, stem_len: usize, to: &[u8]) {
        self.b.truncate(stem_len);
        self.b.extend_from_slice(to);
    }

    /// Applies the first rule of `rules` whose suffix matches, if the stem's measure exceeds
    /// `min_m`. As in Porter's original, the first matching suffix decides even when its
    /// condition fails.
    fn apply_rules(&mut self, rules: &[(&[u8], &[u8])], min_m: usize) {
        for (suffix, to) in rules {
            if let Some(stem_len) = self.ends(suffix) {
                if self.measure(stem_len) > min_m {
                    self.set(stem_len, to);
                }
                return;
            }
        }
    }

    /// Plurals and -ed / -ing.
    fn step1ab(&mut self) {
        if self.b.ends_with(b"sses") || self.b.ends_with(b"ies") {
            self.b.truncate(self.b.len() - 2);
        } else if self.b.ends_with(b"s") && !self.b.ends_with(b"ss") {
            self.b.pop();
        }
        if let Some(stem_len) = self.ends(b"eed") {
            if self.measure(stem_len) > 0 {
                self.b.pop();
            }
            return;
        }
        let stem_len = match self.ends(b"ed").or_else(|| self.ends(b"ing")) {
            Some(s) if self.has_vowel(s) => s,
            _ => return,
        };
        self.b.truncate(stem_len);
        if self.b.ends_with(b"at") || self.b.ends_with(b"bl") || self.b.ends_with(b"iz") {
            self.b.push(b'e');
        } else if self.double_cons(self.b.len()) {
            if !matches!(self.b.last(), Some(b'l' | b's' | b'z')) {
                self.b.pop();
            }
        } else if self.measure(self.b.len()) == 1 && self.cvc(self.b.len()) {
            self.b.push(b'e');
        }
    }

    /// Terminal y to i when there is another vowel in the stem.
    fn step1c(&mut self) {
        if let Some(stem_len) = self.ends(b"y")
            && self.has_vowel(stem_len)
        {
            self.b[stem_len] = b'i';
        }
    }

    /// Double suffixes to single ones (-ization to -ize, ...).
    fn step2(&mut self) {
        const RULES: &[(&[u8], &[u8])] = &[
            (b"ational", b"ate"),
            (b"tional", b"tion"),
            (b"enci", b"ence"),
            (b"anci", b"ance"),
            (b"izer", b"ize"),
            (b"bli", b"ble"),
            (b"alli", b"al"),
            (b"entli", b"ent"),
            (b"eli", b"e"),
            (b"ousli", b"ous"),
            (b"ization", b"ize"),
            (b"ation", b"ate"),
            (b"ator", b"ate"),
            (b"alism", b"al"),
            (b"iveness", b"ive"),
            (b"fulness", b"ful"),
            (b"ousness", b"ous"),
            (b"aliti", b"al"),
            (b"iviti", b"ive"),
            (b"biliti", b"ble"),
            (b"logi", b"log"),
        ];
        self.apply_rules(RULES, 0);
    }

    /// -ic-, -full, -ness and similar.
    fn step3(&mut self) {
        const RULES: &[(&[u8], &[u8])] = &[
            (b"icate", b"ic"),
            (b"ative", b""),
            (b"alize", b"al"),
            (b"iciti", b"ic"),
            (b"ical", b"ic"),
            (b"ful", b""),
            (b"ness", b""),
        ];
        self.apply_rules(RULES, 0);
    }

    /// Removes -ant, -ence and friends when the stem is long enough (m > 1).
    fn step4(&mut self) {
        const SUFFIXES: &[&[u8]] = &[
            b"al", b"ance", b"ence", b"er", b"ic", b"able", b"ible", b"ant", b"ement", b"ment",
            b"ent", b"ion", b"ou", b"ism", b"ate", b"iti", b"ous", b"ive", b"ize",
        ];
        for suffix in SUFFIXES {
            let Some(stem_len) = self.ends(suffix) else {
                continue;
            };
            // -ion only counts after s or t (adoption, decision); otherwise try the next rule.
            if *suffix == b"ion"
                && !matches!(
                    stem_len.checked_sub(1).map(|i| self.b[i]),
                    Some(b's' | b't')
                )
            {
                continue;
            }
            if self.measure(stem_len) > 1 {
                self.b.truncate(stem_len);
            }
            return;
        }
    }

    /// Tidies a final -e and -ll.
    fn step5(&mut self) {
        if let Some(stem_len) = self.ends(b"e") {
            let m = self.measure(stem_len);
            if m > 1 || (m == 1 && !self.cvc(stem_len)) {
                self.b.pop();
            }
        }
        let len = self.b.len();
        if self.b.last() == Some(&b'l') && self.double_cons(len) && self.measure(len) > 1 {
            self.b.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn porter_examples() {
        // Pairs from Porter's paper and the reference vocabulary.
        let cases = [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("digitizer", "digit"),
            ("generalization", "gener"),
            ("hopefulness", "hope"),
            ("electrical", "electr"),
            ("adoption", "adopt"),
            ("controlling", "control"),
            ("searching", "search"),
            ("papers", "paper"),
            ("generate", "gener"),
            ("generator", "gener"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "stem({word})");
        }
    }

    #[test]
    fn porter2_exceptions() {
        // Porter alone makes "news" "new" and "skies" "ski".
        assert_eq!(stem("news"), "news");
        assert_ne!(stem("news"), stem("new"));
        assert_eq!(stem("skies"), stem("sky"));
        assert_eq!(stem("dying"), stem("die"));
        assert_eq!(stem("proceeds"), stem("proceeding"));
    }

    #[test]
    fn leaves_short_and_non_ascii_words() {
        assert_eq!(stem("is"), "is");
        assert_eq!(stem("a"), "a");
        assert_eq!(stem(""), "");
        assert_eq!(stem("mp3s"), "mp3s");
        assert_eq!(stem("cafés"), "cafés");
        assert_eq!(stem("ing"), "ing");
        assert_eq!(stem("eed"), "eed");
    }
}
