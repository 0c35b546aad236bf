//! How text becomes terms, at indexing and at query time alike (both sides must agree).
//!
//! - Words are runs of letters and digits (any script), lower-cased, at most 40 bytes.
//! - German spelling is folded so that `Müller`, `Mueller` and `Muller` are one term
//!   (`muller`): umlauts lose their dots, `ae`/`oe`/`ue` become `a`/`o`/`u` (not `ue` after
//!   `q` or a vowel), `ß` becomes `ss` — the rules of Lucene's GermanNormalizationFilter.
//!   Other diacritics are folded to ASCII (`é` → `e`).
//! - The text analyzer (subject, body) then adds, at the word's own position, its German and
//!   its English Snowball stem, each marked with a leading `~` and only where the stem
//!   differs from the word. A word is found by a query word with a common stem: `Rechnungen`
//!   finds `Rechnung`, `invoices` finds `invoice`, whatever language the message is in, with
//!   no language detection to get wrong; phrases match the unmarked words exactly. One field
//!   holds both, so text is analyzed once.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use tantivy::tokenizer::{
    AsciiFoldingFilter, RawTokenizer, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
    TokenizerManager,
};

/// Exact words (folded, not stemmed): names, file names, List-Id.
pub const EXACT: &str = "mv_exact";
/// Exact words plus their marked stems: subject and body.
pub const TEXT: &str = "mv_text";
/// Marks a stem term, so it never equals an exact word.
pub const STEM_MARK: char = '~';
/// The whole value as one term (addresses, Message-IDs); callers lower-case it.
pub const RAW: &str = "mv_raw";

/// Longest word indexed, in bytes; longer runs (base64 debris, hashes) are dropped.
pub const MAX_WORD_BYTES: usize = 40;

/// Registers the analyzers with an index's tokenizer manager.
pub fn register(manager: &TokenizerManager) {
    manager.register(EXACT, exact_analyzer());
    manager.register(TEXT, text_analyzer());
    manager.register(RAW, TextAnalyzer::builder(RawTokenizer::default()).build());
}

fn exact_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(AsciiFoldingFilter)
        .build()
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(AsciiFoldingFilter)
        .filter(DualStemmer)
        .build()
}

/// The terms a folded query word matches in a text field: its stems, marked (words that
/// stem to them) and unmarked (words that are their own stem).
pub fn stem_terms(folded: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    for algorithm in [frostem::Algorithm::German, frostem::Algorithm::English] {
        let stem = frostem::Stemmer::new(algorithm).stem(folded).into_owned();
        out.push(format!("{STEM_MARK}{stem}"));
        out.push(stem);
    }
    out.sort();
    out.dedup();
    out
}

/// An analyzer of text-field words for finding the words of a text that match `wanted`
/// terms (snippets): one token per word at the word's offsets, whose text is the first of
/// the word, its marked German stem and its marked English stem that is wanted — exactly the
/// terms the text analyzer indexes for it — or empty when none is.
pub fn query_terms_analyzer(wanted: Arc<HashSet<String>>) -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(AsciiFoldingFilter)
        .filter(WantedTerms { wanted })
        .build()
}

/// The terms `text` yields under analyzer `name`, as (position, term).
pub fn terms(name: &str, text: &str) -> Vec<(usize, String)> {
    let mut analyzer = match name {
        TEXT => text_analyzer(),
        _ => exact_analyzer(),
    };
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.position, t.text.clone()));
    }
    out
}

/// German normalization of one lower-cased word (see the module docs).
pub fn normalize_german(word: &str, out: &mut String) {
    #[derive(PartialEq)]
    enum State {
        /// After a consonant or at the start.
        N,
        /// After a vowel that an `e` may fold into (a, o, or u after a consonant).
        U,
        /// After any other vowel.
        V,
    }
    out.clear();
    let mut state = State::N;
    for c in word.chars() {
        match c {
            'a' | 'o' => {
                out.push(c);
                state = State::U;
            }
            'u' => {
                out.push(c);
                state = if state == State::N { State::U } else { State::V };
            }
            'e' => {
                if state != State::U {
                    out.push('e');
                }
                state = State::V;
            }
            'i' | 'q' | 'y' => {
                out.push(c);
                state = State::V;
            }
            'ä' | 'ö' | 'ü' => {
                out.push(match c {
                    'ä' => 'a',
                    'ö' => 'o',
                    _ => 'u',
                });
                state = State::V;
            }
            'ß' => {
                out.push_str("ss");
                state = State::N;
            }
            _ => {
                out.push(c);
                state = State::N;
            }
        }
    }
}

/// The byte range of the next word (run of alphanumeric characters) at or after `at`.
fn next_word(text: &str, at: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let is_word = |i: usize| -> (bool, usize) {
        let b = bytes[i];
        if b.is_ascii() {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            // `i` is a char boundary: words and separators are made of whole chars.
            let c = text[i..].chars().next().unwrap_or(' ');
            (c.is_alphanumeric(), c.len_utf8())
        }
    };
    let mut i = at;
    while i < bytes.len() {
        let (word, len) = is_word(i);
        if word {
            break;
        }
        i += len;
    }
    if i >= bytes.len() {
        return None;
    }
    let start = i;
    while i < bytes.len() {
        let (word, len) = is_word(i);
        if !word {
            break;
        }
        i += len;
    }
    Some((start, i))
}

/// Splits text into words (runs of alphanumeric characters), lower-cases them and applies
/// German normalization.
#[derive(Clone, Copy)]
struct WordTokenizer;

struct WordStream<'a> {
    text: &'a str,
    at: usize,
    token: Token,
    lower: String,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        WordStream {
            text,
            at: 0,
            token: Token {
                position: usize::MAX,
                ..Token::default()
            },
            lower: String::new(),
        }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        loop {
            let Some((start, end)) = next_word(self.text, self.at) else {
                self.at = self.text.len();
                return false;
            };
            self.at = end;
            if end - start > MAX_WORD_BYTES {
                continue;
            }
            let word = &self.text[start..end];
            self.lower.clear();
            if word.is_ascii() {
                self.lower.push_str(word);
                self.lower.make_ascii_lowercase();
            } else {
                for c in word.chars() {
                    self.lower.extend(c.to_lowercase());
                }
            }
            normalize_german(&self.lower, &mut self.token.text);
            self.token.offset_from = start;
            self.token.offset_to = end;
            self.token.position = self.token.position.wrapping_add(1);
            self.token.position_length = 1;
            return true;
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Emits every word, then its German and English stems (marked, where they differ from the
/// word and from each other) at the same position.
#[derive(Clone, Copy)]
struct DualStemmer;

impl TokenFilter for DualStemmer {
    type Tokenizer<T: Tokenizer> = DualStemTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> DualStemTokenizer<T> {
        DualStemTokenizer {
            inner: tokenizer,
            cache: StemCache::default(),
        }
    }
}

/// Stems of recent words: mail vocabulary is Zipf-distributed, so most words repeat and
/// stemming (the costliest step of analysis) mostly becomes a lookup.
type StemCache = HashMap<String, Stems, BuildHasherDefault<FxHasher>>;

/// The rustc hasher (FxHash): fast for short keys; the cache is not exposed to adversarial
/// key choice beyond one process's own mail, and a collision costs only time.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        // A product's low bits depend only on the input's low bits, and hash tables index by
        // the low bits: bring the well-mixed high bits down (as rustc-hash 2 does).
        self.0.rotate_left(26)
    }
}
const STEM_CACHE_WORDS: usize = 200_000;

#[derive(Clone)]
struct Stems {
    german: Option<String>,
    english: Option<String>,
}

#[derive(Clone)]
struct DualStemTokenizer<T> {
    inner: T,
    cache: StemCache,
}

impl<T: Tokenizer> Tokenizer for DualStemTokenizer<T> {
    type TokenStream<'a> = DualStemStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        if self.cache.len() > STEM_CACHE_WORDS {
            self.cache.clear();
        }
        DualStemStream {
            inner: self.inner.token_stream(text),
            cache: &mut self.cache,
            token: Token::default(),
            pending: [String::new(), String::new()],
            pending_count: 0,
        }
    }
}

struct DualStemStream<'a, S> {
    inner: S,
    cache: &'a mut StemCache,
    token: Token,
    /// Stems still to emit at the current position: `pending[..pending_count]`, last first.
    pending: [String; 2],
    pending_count: usize,
}

fn stems_of(word: &str) -> Stems {
    let german = frostem::Stemmer::new(frostem::Algorithm::German).stem(word);
    let english = frostem::Stemmer::new(frostem::Algorithm::English).stem(word);
    let mark = |s: &str| format!("{STEM_MARK}{s}");
    Stems {
        german: (german != word).then(|| mark(&german)),
        english: (english != word && english != german).then(|| mark(&english)),
    }
}

impl<S: TokenStream> TokenStream for DualStemStream<'_, S> {
    fn advance(&mut self) -> bool {
        if self.pending_count > 0 {
            self.pending_count -= 1;
            std::mem::swap(&mut self.token.text, &mut self.pending[self.pending_count]);
            return true;
        }
        if !self.inner.advance() {
            return false;
        }
        let word = self.inner.token();
        if !self.cache.contains_key(&word.text) {
            self.cache.insert(word.text.clone(), stems_of(&word.text));
        }
        if let Some(stems) = self.cache.get(&word.text) {
            for stem in [&stems.english, &stems.german].into_iter().flatten() {
                let slot = &mut self.pending[self.pending_count];
                slot.clear();
                slot.push_str(stem);
                self.pending_count += 1;
            }
        }
        self.token.text.clear();
        self.token.text.push_str(&word.text);
        place_at(&mut self.token, word);
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Stems shared by every thread that looks words up for snippets: sharded, each shard
/// bounded (emptied when full), so a page of snippets mostly finds its words' stems here.
struct SharedStems {
    shards: Vec<Mutex<StemCache>>,
}

/// log2 of the shards: a shard is chosen by the hash's top bits, the table within it uses
/// the low ones (choosing by the low bits would crowd each shard's keys into a few buckets).
const SHARED_STEM_SHARD_BITS: u32 = 4;
const SHARED_STEM_SHARDS: usize = 1 << SHARED_STEM_SHARD_BITS;
const SHARED_STEM_WORDS_PER_SHARD: usize = 8_192;

static SHARED_STEMS: LazyLock<SharedStems> = LazyLock::new(|| SharedStems {
    shards: (0..SHARED_STEM_SHARDS)
        .map(|_| Mutex::new(StemCache::default()))
        .collect(),
});

impl SharedStems {
    /// `f` of the stems of `word`, stemming it (outside the lock) on a miss.
    fn with<R>(&self, word: &str, f: impl FnOnce(&Stems) -> R) -> R {
        let hash = BuildHasherDefault::<FxHasher>::default().hash_one(word);
        let shard = &self.shards[(hash >> (64 - SHARED_STEM_SHARD_BITS)) as usize];
        {
            let cache = shard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(stems) = cache.get(word) {
                return f(stems);
            }
        }
        let stems = stems_of(word);
        let out = f(&stems);
        let mut cache = shard.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= SHARED_STEM_WORDS_PER_SHARD {
            cache.clear();
        }
        cache.insert(word.to_string(), stems);
        out
    }
}

/// See [`query_terms_analyzer`].
#[derive(Clone)]
struct WantedTerms {
    wanted: Arc<HashSet<String>>,
}

impl TokenFilter for WantedTerms {
    type Tokenizer<T: Tokenizer> = WantedTermsTokenizer<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> WantedTermsTokenizer<T> {
        WantedTermsTokenizer {
            inner,
            wanted: self.wanted,
        }
    }
}

#[derive(Clone)]
struct WantedTermsTokenizer<T> {
    inner: T,
    wanted: Arc<HashSet<String>>,
}

impl<T: Tokenizer> Tokenizer for WantedTermsTokenizer<T> {
    type TokenStream<'a> = WantedTermsStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        WantedTermsStream {
            inner: self.inner.token_stream(text),
            wanted: &self.wanted,
            token: Token::default(),
        }
    }
}

struct WantedTermsStream<'a, S> {
    inner: S,
    wanted: &'a HashSet<String>,
    token: Token,
}

impl<S: TokenStream> TokenStream for WantedTermsStream<'_, S> {
    fn advance(&mut self) -> bool {
        if !self.inner.advance() {
            return false;
        }
        let word = self.inner.token();
        self.token.text.clear();
        if self.wanted.contains(&word.text) {
            self.token.text.push_str(&word.text);
        } else {
            let wanted = self.wanted;
            let text = &mut self.token.text;
            SHARED_STEMS.with(&word.text, |stems| {
                if let Some(stem) = [&stems.german, &stems.english]
                    .into_iter()
                    .flatten()
                    .find(|stem| wanted.contains(*stem))
                {
                    text.push_str(stem);
                }
            });
        }
        place_at(&mut self.token, word);
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Puts `token` where `word` stands in the text, one position long.
fn place_at(token: &mut Token, word: &Token) {
    token.offset_from = word.offset_from;
    token.offset_to = word.offset_to;
    token.position = word.position;
    token.position_length = 1;
}
#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> Vec<String> {
        terms(EXACT, s).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn umlaut_spellings_fold_to_one_term() {
        assert_eq!(exact("Müller"), ["muller"]);
        assert_eq!(exact("Mueller"), ["muller"]);
        assert_eq!(exact("MULLER"), ["muller"]);
        assert_eq!(exact("Straße Strasse"), ["strasse", "strasse"]);
        assert_eq!(exact("Gödel Goedel"), ["godel", "godel"]);
        assert_eq!(exact("Ärger Aerger"), ["arger", "arger"]);
        // `ue` after q or a vowel is not an umlaut.
        assert_eq!(exact("Queue"), ["queue"]);
        assert_eq!(exact("Café"), ["cafe"]);
    }

    #[test]
    fn words_split_on_punctuation_and_keep_positions() {
        assert_eq!(
            terms(EXACT, "hans.mueller@example.com, 2024"),
            [
                (0, "hans".to_string()),
                (1, "muller".to_string()),
                (2, "example".to_string()),
                (3, "com".to_string()),
                (4, "2024".to_string())
            ]
        );
        let long = "a".repeat(41);
        assert_eq!(exact(&format!("x {long} y")), ["x", "y"]);
    }

    /// Whether a query word finds a text word: one of its stem terms is a text term.
    fn finds(query: &str, text: &str) -> bool {
        let indexed: Vec<String> = terms(TEXT, text).into_iter().map(|(_, t)| t).collect();
        let folded = exact(query).remove(0);
        stem_terms(&folded).iter().any(|t| indexed.contains(t))
    }

    #[test]
    fn words_and_their_stems_share_a_position() {
        assert_eq!(
            terms(TEXT, "Rechnungen invoices"),
            [
                (0, "rechnungen".to_string()),
                (0, "~rechnung".to_string()),
                (1, "invoices".to_string()),
                (1, "~invoic".to_string()),
            ]
        );
        // A word that is its own stem gets no marked copy.
        assert_eq!(terms(TEXT, "report"), [(0, "report".to_string())]);
    }

    #[test]
    fn query_words_find_other_forms_in_both_languages() {
        for (q, t) in [
            ("Rechnung", "Rechnungen"),
            ("Rechnungen", "Rechnung"),
            ("invoice", "invoices"),
            ("reports", "report"),
            ("report", "reporting"),
            ("Häuser", "Haeuser"),
            ("Verträge", "Vertrag"),
        ] {
            assert!(finds(q, t), "{q} should find {t}");
        }
        assert!(!finds("report", "repeat"));
    }

    /// The snippet analyzer marks a word exactly when the text analyzer indexes one of the
    /// wanted terms for it, whether the stem came from the shared cache or not.
    #[test]
    fn wanted_terms_mark_exactly_the_words_the_index_would_match() {
        let text = "Die Rechnungen kamen; invoices, INVOICE and the Häuser report reporting repeat \
                    Müller Mueller in";
        let indexed = terms(TEXT, text);
        for query in ["Rechnung", "invoice", "Haus", "report", "muller", "in", "nothing"] {
            let folded = exact(query).remove(0);
            let wanted: HashSet<String> = stem_terms(&folded).into_iter().collect();
            for round in 0..2 {
                let mut analyzer = query_terms_analyzer(Arc::new(wanted.clone()));
                let mut stream = analyzer.token_stream(text);
                let mut position = 0;
                while stream.advance() {
                    let t = stream.token();
                    let expected = indexed
                        .iter()
                        .filter(|(p, _)| *p == position)
                        .any(|(_, term)| wanted.contains(term));
                    assert_eq!(
                        !t.text.is_empty(),
                        expected,
                        "{query} at word {position} (round {round})"
                    );
                    if expected {
                        assert!(wanted.contains(&t.text));
                    }
                    position += 1;
                }
                assert_eq!(position, indexed.iter().map(|(p, _)| p + 1).max().unwrap_or(0));
            }
        }
    }
}
