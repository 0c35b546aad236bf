//! A seeded generator of realistic mail for the benchmarks (`search`, `soak`): a population of people in
//! many domains, conversations (threads with Re: subjects, In-Reply-To and References),
//! English and German text drawn from a Zipf-distributed vocabulary, HTML alternatives,
//! attachments (binary and text), Received headers, mixed time zones, and a few blind copies
//! known only from the envelope. The same seed gives the same mail, byte for byte.

use std::fmt::Write as _;

/// splitmix64: small, fast, good enough for test data, and the same everywhere.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Ranks drawn with probability ∝ 1/rank^s.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// A distribution over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                total += 1.0 / (r as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    /// A rank in `0..n` (0 most likely).
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len() - 1)
    }
}

const ENGLISH: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "for",
    "that",
    "on",
    "with",
    "as",
    "this",
    "be",
    "it",
    "by",
    "are",
    "we",
    "from",
    "at",
    "or",
    "have",
    "an",
    "will",
    "please",
    "can",
    "our",
    "your",
    "not",
    "all",
    "meeting",
    "report",
    "project",
    "team",
    "customer",
    "order",
    "invoice",
    "payment",
    "contract",
    "budget",
    "review",
    "update",
    "schedule",
    "delivery",
    "quarter",
    "sales",
    "support",
    "question",
    "request",
    "approval",
    "deadline",
    "proposal",
    "agenda",
    "attached",
    "document",
    "figures",
    "results",
    "account",
    "service",
    "price",
    "offer",
    "shipment",
    "release",
    "version",
    "issue",
    "problem",
    "solution",
    "server",
    "network",
    "database",
    "backup",
    "security",
    "policy",
    "training",
    "holiday",
    "office",
    "travel",
    "expenses",
    "receipt",
    "board",
    "minutes",
    "draft",
    "final",
    "changes",
    "comments",
    "feedback",
    "thanks",
    "regards",
    "tomorrow",
    "today",
    "week",
    "month",
    "next",
    "last",
    "morning",
    "afternoon",
    "call",
    "phone",
    "email",
    "letter",
    "vendor",
    "supplier",
    "warehouse",
    "inventory",
    "forecast",
    "revenue",
    "margin",
    "audit",
    "compliance",
    "tax",
    "legal",
    "lawyer",
    "court",
    "claim",
    "insurance",
    "invoices",
    "orders",
    "payments",
    "contracts",
    "reports",
    "meetings",
    "projects",
    "customers",
    "requests",
    "questions",
];

const GERMAN: &[&str] = &[
    "der",
    "die",
    "und",
    "in",
    "den",
    "von",
    "zu",
    "das",
    "mit",
    "sich",
    "des",
    "auf",
    "für",
    "ist",
    "im",
    "dem",
    "nicht",
    "ein",
    "eine",
    "als",
    "auch",
    "es",
    "an",
    "werden",
    "aus",
    "bitte",
    "wir",
    "Sie",
    "Ihnen",
    "unser",
    "Rechnung",
    "Rechnungen",
    "Angebot",
    "Angebote",
    "Auftrag",
    "Aufträge",
    "Bestellung",
    "Lieferung",
    "Lieferschein",
    "Zahlung",
    "Mahnung",
    "Vertrag",
    "Verträge",
    "Besprechung",
    "Termin",
    "Termine",
    "Bericht",
    "Berichte",
    "Quartal",
    "Umsatz",
    "Kunde",
    "Kunden",
    "Lieferant",
    "Lieferanten",
    "Abteilung",
    "Geschäftsführung",
    "Buchhaltung",
    "Steuerberater",
    "Finanzamt",
    "Prüfung",
    "Änderung",
    "Änderungen",
    "Entwurf",
    "Freigabe",
    "Rückfrage",
    "Rückmeldung",
    "Übersicht",
    "Anlage",
    "Anhang",
    "Unterlagen",
    "Straße",
    "Grüße",
    "Grüßen",
    "freundlichen",
    "Herr",
    "Frau",
    "Müller",
    "Schröder",
    "Größe",
    "Gebühren",
    "Kosten",
    "Preis",
    "Preise",
    "Woche",
    "Monat",
    "morgen",
    "heute",
    "nächste",
    "letzte",
    "Büro",
    "Urlaub",
    "Reise",
    "Spesen",
    "Beleg",
    "Belege",
    "Protokoll",
    "Sitzung",
    "Vorstand",
    "Aufsichtsrat",
    "Versicherung",
    "Schaden",
    "Anwalt",
    "Gericht",
    "Frist",
    "Fristen",
    "Zahlungsziel",
    "Überweisung",
    "Kontoauszug",
];

const FIRST: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karl", "Lena", "Max",
    "Nina", "Otto", "Paula", "Jürgen", "Sören", "Tom", "Uwe", "Vera", "Walter", "Xenia", "Yusuf", "Zoe",
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Peggy",
    "Sybil", "Trent", "Victor", "Wendy",
];

const LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Clark",
];

const TLDS: &[&str] = &["de", "com", "org", "net", "ch", "at", "co.uk", "eu"];

const ATTACHMENTS: &[(&str, &str, bool)] = &[
    ("application/pdf", "pdf", false),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
        false,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
        false,
    ),
    ("image/png", "png", false),
    ("image/jpeg", "jpg", false),
    ("text/csv", "csv", true),
    ("text/plain", "txt", true),
];

const ZONES: &[(i64, &str)] = &[
    (3600, "+0100"),
    (7200, "+0200"),
    (0, "+0000"),
    (-18000, "-0500"),
    (32400, "+0900"),
];

/// A generated message and the envelope it was delivered with.
pub struct Generated {
    /// RFC 5322 bytes (CRLF).
    pub raw: Vec<u8>,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients (header recipients plus any blind copies).
    pub recipients: Vec<String>,
}

/// A person of the generated population.
#[derive(Clone)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Address.
    pub address: String,
}

struct Thread {
    subject: String,
    german: bool,
    ids: Vec<String>,
    people: Vec<usize>,
}

/// The generator: deterministic for a seed.
pub struct MailGen {
    rng: Rng,
    /// The population, most active first (senders and recipients are Zipf-distributed).
    pub people: Vec<Person>,
    people_zipf: Zipf,
    english: Vec<String>,
    german: Vec<String>,
    words_zipf: Zipf,
    threads: Vec<Thread>,
    /// How far back a reply reaches among the open threads.
    recent_zipf: Zipf,
    /// Messages generated so far.
    pub count: u64,
    /// Seconds since the epoch of the first message; mail advances by ~`step` seconds each.
    start: i64,
    step: i64,
}

/// Syllables for the vocabulary's long tail (names of products, projects, places…).
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ra", "tu", "ber", "dan", "fel", "gor", "hin", "jas", "kor", "lin", "mar", "nor",
    "pel", "quin", "ros", "sel", "tor", "ul", "ven", "wes", "xo", "yil", "zan", "ach", "ei", "ung", "heit",
    "keit", "schaft", "tion", "ment", "ness", "ing", "er", "en",
];

fn tail_word(rng: &mut Rng) -> String {
    let n = 3 + rng.below(3);
    (0..n).map(|_| *rng.pick(SYLLABLES)).collect()
}

impl MailGen {
    /// A generator for about `messages` messages (sets the date spread and population).
    pub fn new(seed: u64, messages: u64) -> MailGen {
        let mut rng = Rng::new(seed);
        let domains: Vec<String> = (0..400)
            .map(|i| format!("{}{i}.{}", tail_word(&mut rng), rng.pick(TLDS)))
            .collect();
        let population = (messages / 50).clamp(200, 50_000) as usize;
        let domain_zipf = Zipf::new(domains.len(), 1.0);
        let mut seen = std::collections::HashSet::new();
        let mut people = Vec::with_capacity(population);
        while people.len() < population {
            let first = *rng.pick(FIRST);
            let last = *rng.pick(LAST);
            // Addresses use the folded spelling (Müller → mueller), as mail systems do.
            let local = format!("{}.{}", first, last)
                .to_lowercase()
                .replace('ü', "ue")
                .replace('ö', "oe")
                .replace('ä', "ae")
                .replace('ß', "ss");
            let domain = &domains[domain_zipf.sample(&mut rng)];
            let address = match seen.contains(&format!("{local}@{domain}")) {
                false => format!("{local}@{domain}"),
                true => format!("{local}{}@{domain}", people.len()),
            };
            seen.insert(address.clone());
            people.push(Person {
                name: format!("{first} {last}"),
                address,
            });
        }
        // Vocabulary: common words first, then a long tail of made-up words; both languages
        // share the tail (product and place names are not translated).
        let mut unique = std::collections::HashSet::new();
        let mut tail = Vec::with_capacity(60_000);
        while tail.len() < 60_000 {
            let w = tail_word(&mut rng);
            if unique.insert(w.clone()) {
                tail.push(w);
            }
        }
        let vocab = |base: &[&str]| -> Vec<String> {
            base.iter()
                .map(|w| w.to_string())
                .chain(tail.iter().cloned())
                .collect()
        };
        let english = vocab(ENGLISH);
        let german = vocab(GERMAN);
        let start = 1_420_070_400; // 2015-01-01
        let span = 10 * 365 * 86_400;
        MailGen {
            people_zipf: Zipf::new(people.len(), 0.9),
            words_zipf: Zipf::new(english.len().min(german.len()), 1.05),
            rng,
            people,
            english,
            german,
            threads: Vec::new(),
            recent_zipf: Zipf::new(500, 1.0),
            count: 0,
            start,
            step: (span / messages.max(1) as i64).max(1),
        }
    }

    fn person(&mut self) -> usize {
        self.people_zipf.sample(&mut self.rng)
    }

    fn word(&mut self, german: bool) -> &str {
        let r = self.words_zipf.sample(&mut self.rng);
        if german {
            &self.german[r]
        } else {
            &self.english[r]
        }
    }

    fn sentence(&mut self, german: bool, out: &mut String) {
        let n = 4 + self.rng.below(14);
        for i in 0..n {
            let w = self.word(german).to_string();
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(&w);
            }
        }
        out.push_str(if self.rng.chance(0.1) { "?" } else { "." });
    }

    fn paragraph(&mut self, german: bool, words: u64, out: &mut String) {
        let start = out.len();
        while ((out.len() - start) as u64) < words * 6 {
            self.sentence(german, out);
            out.push(' ');
        }
        // Wrap at ~72 columns like mail clients do.
        let text = out.split_off(start);
        let mut col = 0;
        for w in text.split(' ').filter(|w| !w.is_empty()) {
            if col + w.len() > 72 {
                out.push_str("\r\n");
                col = 0;
            } else if col > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(w);
            col += w.chars().count();
        }
        out.push_str("\r\n");
    }

    /// The next message.
    pub fn next_message(&mut self) -> Generated {
        let n = self.count;
        self.count += 1;
        let rng_reply = !self.threads.is_empty() && self.rng.chance(0.35);
        let (thread_idx, reply) = if rng_reply {
            // Recent threads are the likely ones to get replies.
            let back = self.recent_zipf.sample(&mut self.rng) % self.threads.len();
            (self.threads.len() - 1 - back, true)
        } else {
            let german = self.rng.chance(0.4);
            let mut subject = String::new();
            let words = 2 + self.rng.below(5);
            for i in 0..words {
                if i > 0 {
                    subject.push(' ');
                }
                subject.push_str(self.word(german));
            }
            let a = self.person();
            let b = self.person();
            self.threads.push(Thread {
                subject,
                german,
                ids: Vec::new(),
                people: vec![a, b],
            });
            if self.threads.len() > 20_000 {
                self.threads.drain(..10_000);
            }
            (self.threads.len() - 1, false)
        };
        let german = self.threads[thread_idx].german;
        let participants = self.threads[thread_idx].people.clone();
        let sender = if reply {
            participants[self.rng.below(participants.len() as u64) as usize]
        } else {
            participants[0]
        };
        let mut to: Vec<usize> = participants.iter().copied().filter(|p| *p != sender).collect();
        if to.is_empty() || self.rng.chance(0.2) {
            to.push(self.person());
        }
        let cc: Vec<usize> = (0..self.rng.below(3)).map(|_| self.person()).collect();
        let blind: Vec<usize> = if self.rng.chance(0.05) {
            vec![self.person()]
        } else {
            Vec::new()
        };

        let id = format!(
            "<{n:x}.{:x}@{}>",
            self.rng.next_u64() & 0xffff_ffff,
            self.people[sender]
                .address
                .split('@')
                .nth(1)
                .unwrap_or("example.com")
        );
        let (subject, in_reply_to, references) = {
            let t = &self.threads[thread_idx];
            let subject = if reply {
                format!("{} {}", if german { "AW:" } else { "Re:" }, t.subject)
            } else {
                t.subject.clone()
            };
            (
                subject,
                t.ids.last().cloned(),
                t.ids.iter().rev().take(5).rev().cloned().collect::<Vec<_>>(),
            )
        };
        self.threads[thread_idx].ids.push(id.clone());

        let (offset, zone) = *self.rng.pick(ZONES);
        let utc = self.start + n as i64 * self.step + self.rng.below(self.step.max(1) as u64) as i64;
        let date = format_date(utc, offset, zone);

        let mut h = String::with_capacity(4096);
        let relay = format!(
            "mx{}.{}",
            self.rng.below(9),
            self.people[to[0]]
                .address
                .split('@')
                .nth(1)
                .unwrap_or("example.com")
        );
        for hop in 0..(1 + self.rng.below(3)) {
            let _ = write!(
                h,
                "Received: from relay{hop}.{relay} (relay{hop}.{relay} [10.{}.{}.{}])\r\n\tby {relay} with ESMTPS id {:X}\r\n\tfor <{}>; {date}\r\n",
                self.rng.below(255),
                self.rng.below(255),
                self.rng.below(255),
                self.rng.next_u64() & 0xffff_ffff_ffff,
                self.people[to[0]].address,
            );
        }
        let mailbox = |p: &Person| format!("{} <{}>", encode_name(&p.name), p.address);
        let _ = write!(h, "From: {}\r\n", mailbox(&self.people[sender]));
        let list = |ids: &[usize]| {
            ids.iter()
                .map(|i| mailbox(&self.people[*i]))
                .collect::<Vec<_>>()
                .join(",\r\n ")
        };
        let _ = write!(h, "To: {}\r\n", list(&to));
        if !cc.is_empty() {
            let _ = write!(h, "Cc: {}\r\n", list(&cc));
        }
        let _ = write!(
            h,
            "Subject: {}\r\nDate: {date}\r\nMessage-ID: {id}\r\n",
            encode_name(&subject)
        );
        if let Some(parent) = &in_reply_to {
            let _ = write!(
                h,
                "In-Reply-To: {parent}\r\nReferences: {}\r\n",
                references.join(" ")
            );
        }
        if self.rng.chance(0.1) {
            let _ = write!(
                h,
                "List-Id: {} <{}.lists.example.org>\r\n",
                self.threads[thread_idx]
                    .subject
                    .split(' ')
                    .next()
                    .unwrap_or("list"),
                sender
            );
        }
        let _ = write!(
            h,
            "X-Mailer: {}\r\nMIME-Version: 1.0\r\n",
            self.rng.pick(&[
                "Thunderbird 115.3",
                "Microsoft Outlook 16.0",
                "Apple Mail (2.3731)",
                "mutt 2.2.12"
            ])
        );

        // Body: greeting, paragraphs, sometimes a quoted earlier message.
        let mut text = String::new();
        let greeting = if german { "Hallo" } else { "Hi" };
        let first = self.people[to[0]]
            .name
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        let _ = write!(text, "{greeting} {first},\r\n\r\n");
        let paragraphs = 1 + self.rng.below(4);
        for _ in 0..paragraphs {
            let words = 15 + self.rng.below(70);
            self.paragraph(german, words, &mut text);
            text.push_str("\r\n");
        }
        if self.rng.chance(0.03) {
            text.push_str(if german {
                "Der Quartalsbericht liegt bei.\r\n"
            } else {
                "The quarterly report is attached.\r\n"
            });
        }
        let closing = if german { "Viele Grüße" } else { "Best regards" };
        let _ = write!(text, "{closing}\r\n{}\r\n", self.people[sender].name);
        if reply && self.rng.chance(0.5) {
            text.push_str("\r\n> ");
            let mut quoted = String::new();
            self.paragraph(german, 30, &mut quoted);
            text.push_str(&quoted.replace("\r\n", "\r\n> "));
            text.push_str("\r\n");
        }
        let text_part = format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        );
        let body_part = if self.rng.chance(0.3) {
            let html = text
                .split("\r\n\r\n")
                .map(|p| {
                    format!(
                        "<p>{}</p>",
                        p.replace("\r\n", " ")
                            .replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;")
                    )
                })
                .collect::<Vec<_>>()
                .join("\r\n");
            format!(
                "Content-Type: multipart/alternative; boundary=\"alt-{n}\"\r\n\r\n--alt-{n}\r\n{text_part}\r\n--alt-{n}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body style=\"font-family: Arial\">{html}</body></html>\r\n--alt-{n}--\r\n"
            )
        } else {
            text_part
        };
        let mut raw = h;
        if self.rng.chance(0.15) {
            let (mime, ext, is_text) = *self.rng.pick(ATTACHMENTS);
            let mut name = String::new();
            for i in 0..(1 + self.rng.below(2)) {
                if i > 0 {
                    name.push('-');
                }
                name.push_str(self.word(german));
            }
            let name = format!("{name}-{}.{ext}", 2015 + (utc - self.start) / (365 * 86_400));
            let payload = if is_text {
                let mut t = String::new();
                for _ in 0..(3 + self.rng.below(20)) {
                    let item = self.word(german).to_string();
                    let amount = self.rng.below(10_000);
                    let unit = self.word(german).to_string();
                    let _ = write!(t, "{item};{amount};{unit}\r\n");
                }
                format!("Content-Type: {mime}; charset=utf-8\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n{t}")
            } else {
                let len = 2_000 + self.rng.below(30_000) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| (self.rng.next_u64() & 0xff) as u8).collect();
                format!(
                    "Content-Type: {mime}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    base64_lines(&bytes)
                )
            };
            let _ = write!(
                raw,
                "Content-Type: multipart/mixed; boundary=\"mix-{n}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--mix-{n}\r\n{body_part}\r\n--mix-{n}\r\n{payload}\r\n--mix-{n}--\r\n"
            );
        } else {
            raw.push_str(&body_part);
        }
        let recipients = to
            .iter()
            .chain(&cc)
            .chain(&blind)
            .map(|i| self.people[*i].address.clone())
            .collect();
        Generated {
            raw: raw.into_bytes(),
            mail_from: self.people[sender].address.clone(),
            recipients,
        }
    }

    /// A word of vocabulary rank `rank` (0 most common) in English.
    pub fn english_word(&self, rank: usize) -> &str {
        &self.english[rank.min(self.english.len() - 1)]
    }

    /// A word of vocabulary rank `rank` in German.
    pub fn german_word(&self, rank: usize) -> &str {
        &self.german[rank.min(self.german.len() - 1)]
    }
}

/// RFC 2047 B-encoding for non-ASCII display names and subjects.
fn encode_name(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        format!("=?utf-8?b?{}?=", base64(s.as_bytes()))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (standard alphabet, padded), on one line.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_lines(bytes: &[u8]) -> String {
    let text = base64(bytes);
    let mut out = String::with_capacity(text.len() + text.len() / 76 * 2 + 2);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            out.push_str("\r\n");
        }
        out.push(c);
    }
    out.push_str("\r\n");
    out
}

/// RFC 5322 date of `utc` seconds, shown in the zone `offset` seconds east of UTC.
fn format_date(utc: i64, offset: i64, zone: &str) -> String {
    let local = utc + offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} {zone}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mail() {
        let mut a = MailGen::new(7, 1000);
        let mut b = MailGen::new(7, 1000);
        for _ in 0..50 {
            assert_eq!(a.next_message().raw, b.next_message().raw);
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(format_date(0, 0, "+0000"), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            format_date(1_711_927_800, 7200, "+0200"),
            "Mon, 1 Apr 2024 01:30:00 +0200"
        );
    }
}
