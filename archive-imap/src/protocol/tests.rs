use imap_next::imap_types::response::Greeting;
use imap_next::imap_types::search::SearchKey;
use imap_next::server::Options;

use super::*;

/// A protocol whose greeting was sent; literals over `max_literal` bytes are rejected.
fn protocol(max_literal: u32) -> Protocol {
    let mut options = Options::default();
    options.max_literal_size = max_literal;
    options.max_command_size = max_literal + 64 * 1024;
    options.crlf_relaxed = true;
    let greeting = Greeting::ok(None, "ready").expect("a valid greeting");
    let max_literal = options.max_literal_size;
    let mut p = Protocol::new(Server::new(options, greeting), max_literal);
    let (out, events) = run(&mut p);
    assert!(out.starts_with(b"* OK"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(events, ["greeting"]);
    p
}

/// Drives `p` until it needs input: what it wrote, and what it reported, in short.
fn run(p: &mut Protocol) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut events = Vec::new();
    loop {
        match p.next() {
            Ok(e) => events.push(describe(&e)),
            Err(Interrupt::Io(Io::Output(bytes))) => out.extend(bytes),
            Err(Interrupt::Io(Io::NeedMoreInput)) => return (out, events),
            Err(Interrupt::Error(e)) => events.push(format!("error {e}")),
        }
    }
}

fn describe(e: &Event) -> String {
    let search = |body: &CommandBody<'_>| match body {
        CommandBody::Search { criteria, uid, .. } => {
            let uid = if *uid { " uid" } else { "" };
            let keys: Vec<String> = criteria
                .as_ref()
                .iter()
                .map(|k| match k {
                    SearchKey::All => "ALL".to_string(),
                    SearchKey::Subject(s) => format!("SUBJECT {}", String::from_utf8_lossy(s.as_ref())),
                    other => format!("{other:?}"),
                })
                .collect();
            format!("{uid} {}", keys.join(" "))
        }
        _ => String::new(),
    };
    match e {
        Event::Server(ServerEvent::GreetingSent { .. }) => "greeting".into(),
        Event::Server(ServerEvent::ResponseSent { .. }) => "sent".into(),
        Event::Server(ServerEvent::CommandReceived { command }) => format!(
            "{} {}{}",
            command.tag.inner(),
            command.body.name(),
            search(&command.body)
        ),
        Event::Server(ServerEvent::CommandAuthenticateReceived { command_authenticate }) => {
            format!("{} AUTHENTICATE", command_authenticate.tag.inner())
        }
        Event::Server(ServerEvent::AuthenticateDataReceived { .. }) => "auth data".into(),
        Event::Server(ServerEvent::IdleCommandReceived { tag }) => format!("{} IDLE", tag.inner()),
        Event::Server(ServerEvent::IdleDoneReceived) => "DONE".into(),
        Event::Esearch { command, returns } => format!(
            "{} ESEARCH{} {returns:?}",
            command.tag.inner(),
            search(&command.body)
        ),
        Event::Refused { tag, why } => format!("{} refused: {why}", tag.inner()),
        Event::RawSent(_) => "raw sent".into(),
    }
}

fn min_count() -> Returns {
    Returns {
        min: true,
        count: true,
        ..Returns::default()
    }
}

fn all() -> Returns {
    Returns {
        all: true,
        ..Returns::default()
    }
}

#[test]
fn search_return_is_rewritten() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a1 UID SEARCH RETURN (MIN COUNT) SUBJECT x\r\nA2 search return () ALL\r\n");
    let (_, events) = run(&mut p);
    assert_eq!(
        events,
        [
            format!("a1 ESEARCH uid SUBJECT x {:?}", min_count()),
            format!("A2 ESEARCH ALL {:?}", all()),
        ]
    );
}

#[test]
fn other_commands_pass_unchanged() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a1 SEARCH ALL\r\na2 NOOP\r\na3 UID SEARCH SUBJECT RETURN\r\n");
    let (_, events) = run(&mut p);
    assert_eq!(
        events,
        ["a1 SEARCH ALL", "a2 NOOP", "a3 SEARCH uid SUBJECT RETURN"]
    );
}

#[test]
fn input_split_anywhere_is_the_same() {
    let input = b"x NOOP\r\na1 SEARCH RETURN (MIN COUNT) SUBJECT {3}\r\nabc\r\nb NOOP\r\n";
    for chunk in [1, 2, 3, 5, 7, 13] {
        let mut p = protocol(1000);
        let mut events = Vec::new();
        for piece in input.chunks(chunk) {
            p.enqueue_input(piece);
            events.extend(run(&mut p).1);
        }
        assert_eq!(
            events,
            [
                "x NOOP".to_string(),
                format!("a1 ESEARCH SUBJECT abc {:?}", min_count()),
                "b NOOP".to_string()
            ],
            "chunks of {chunk}"
        );
    }
}

#[test]
fn literal_bytes_are_never_commands() {
    let mut p = protocol(1000);
    // The SEARCH RETURN lines are literal data: passed on untouched, never rewritten.
    let secret = b"b SEARCH RETURN (MIN) ALL\r\n";
    let mut input = format!("a LOGIN {{{}}}\r\n", secret.len()).into_bytes();
    input.extend_from_slice(secret);
    input.extend_from_slice(format!(" {{{}+}}\r\n", secret.len()).as_bytes());
    input.extend_from_slice(secret);
    input.extend_from_slice(b"\r\nc SEARCH RETURN (MIN COUNT) ALL\r\n");
    p.enqueue_input(&input);
    let (out, events) = run(&mut p);
    // The synchronizing literal got its continuation request.
    assert!(out.starts_with(b"+ "), "{}", String::from_utf8_lossy(&out));
    assert_eq!(events[1..], [format!("c ESEARCH ALL {:?}", min_count())]);
    assert!(events[0].starts_with("a LOGIN"), "{events:?}");
    let mut p = protocol(1000);
    p.enqueue_input(&input);
    // The first answer is the continuation request for the synchronizing literal.
    assert!(matches!(p.next(), Err(Interrupt::Io(Io::Output(_)))));
    match p.next() {
        Ok(Event::Server(ServerEvent::CommandReceived { command })) => {
            let CommandBody::Login { username, password } = command.body else {
                panic!("not LOGIN")
            };
            assert_eq!(username.as_ref(), secret);
            assert_eq!(password.declassify().as_ref(), secret);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn authenticate_and_idle_lines_pass_through() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(run(&mut p).1, ["a AUTHENTICATE"]);
    let cont = CommandContinuationRequest::base64(Vec::new());
    assert!(p.authenticate_continue(cont).is_ok());
    // A SASL line is a message of its own, whatever it holds.
    p.enqueue_input(b"AGEAYg==\r\n");
    assert_eq!(run(&mut p).1, ["sent", "auth data"]);
    assert!(p
        .authenticate_finish(Status::ok(None, None, "done").unwrap())
        .is_ok());
    p.enqueue_input(b"b SEARCH RETURN (MIN COUNT) ALL\r\n");
    assert_eq!(
        run(&mut p).1,
        ["sent".to_string(), format!("b ESEARCH ALL {:?}", min_count())]
    );

    p.enqueue_input(b"c IDLE\r\n");
    assert_eq!(run(&mut p).1, ["c IDLE"]);
    let cont = CommandContinuationRequest::basic(None, "idling").unwrap();
    assert!(p.idle_accept(cont).is_ok());
    p.enqueue_input(b"DONE\r\nd SEARCH RETURN () ALL\r\n");
    assert_eq!(
        run(&mut p).1,
        [
            "sent".to_string(),
            "DONE".into(),
            format!("d ESEARCH ALL {:?}", all())
        ]
    );
}

#[test]
fn unknown_options_are_refused_and_the_session_goes_on() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a SEARCH RETURN (MIN FOO) ALL\r\nb NOOP\r\nc SEARCH RETURN (PARTIAL (1:5)) ALL\r\n");
    let (_, events) = run(&mut p);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events[0].starts_with("a refused: unknown RETURN option FOO"),
        "{events:?}"
    );
    assert_eq!(events[1], "b NOOP");
    // Not a list of names: imap-codec refuses it (the session answers BAD).
    assert!(events[2].starts_with("error"), "{events:?}");
}

#[test]
fn a_tag_used_twice_gets_its_own_options() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a SEARCH RETURN (MIN COUNT) ALL\r\na SEARCH ALL\r\na SEARCH RETURN () ALL\r\n");
    assert_eq!(
        run(&mut p).1,
        [
            format!("a ESEARCH ALL {:?}", min_count()),
            "a SEARCH ALL".into(),
            format!("a ESEARCH ALL {:?}", all()),
        ]
    );
}

#[test]
fn a_rewritten_command_that_fails_leaves_nothing_behind() {
    let mut p = protocol(1000);
    p.enqueue_input(b"a SEARCH RETURN (MIN) NOSUCHKEY\r\na SEARCH ALL\r\n");
    let (_, events) = run(&mut p);
    assert!(events[0].starts_with("error"), "{events:?}");
    assert_eq!(events[1], "a SEARCH ALL");
    assert!(p.input.waiting.is_empty());
}

#[test]
fn a_rejected_literal_ends_the_message() {
    let mut p = protocol(10);
    p.enqueue_input(b"a LOGIN {100}\r\n");
    let (out, events) = run(&mut p);
    assert!(String::from_utf8_lossy(&out).starts_with("a BAD"), "{out:?}");
    assert!(events[0].starts_with("error"), "{events:?}");
    // The client sends no literal after the BAD; its next command is a command.
    p.enqueue_input(b"b SEARCH RETURN (MIN COUNT) ALL\r\n");
    assert_eq!(run(&mut p).1, [format!("b ESEARCH ALL {:?}", min_count())]);
}

#[test]
fn a_long_first_line_passes_unchanged() {
    let mut p = protocol(100_000);
    let tag = "t".repeat(HEAD_LIMIT);
    p.enqueue_input(format!("{tag} SEARCH RETURN (MIN) ALL\r\nb NOOP\r\n").as_bytes());
    let (_, events) = run(&mut p);
    assert!(events[0].starts_with("error"), "{events:?}");
    assert_eq!(events[1], "b NOOP");
    // Nothing is held beyond the limit.
    p.enqueue_input(&vec![b'x'; 3 * HEAD_LIMIT]);
    assert!(p.input.head.len() < HEAD_LIMIT);
}

#[test]
fn raw_output_goes_out_in_order() {
    let mut p = protocol(1000);
    let raw = p.enqueue_raw(b"* ESEARCH (TAG \"a\") COUNT 0\r\n".to_vec());
    p.enqueue_status(Status::ok(Some(Tag::unvalidated("a")), None, "done").unwrap());
    let mut out = Vec::new();
    let mut sent = Vec::new();
    loop {
        match p.next() {
            Ok(e) => sent.push(e.sent()),
            Err(Interrupt::Io(Io::Output(bytes))) => out.extend(bytes),
            Err(_) => break,
        }
    }
    assert_eq!(out, b"* ESEARCH (TAG \"a\") COUNT 0\r\na OK done\r\n");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], Some(Sent::Raw(raw)));
    assert!(matches!(sent[1], Some(Sent::Response(_))));
}

#[test]
fn line_scan_mirrors_the_fragmentizer() {
    let end = |line: &[u8]| {
        let mut s = LineScan::Other;
        let mut last = None;
        for b in line {
            last = s.step(*b);
        }
        last
    };
    assert_eq!(end(b"a {5}\r\n"), Some(Some(Literal { length: 5 })));
    assert_eq!(end(b"a {5+}\n"), Some(Some(Literal { length: 5 })));
    assert_eq!(end(b"a ~{0}\r\n"), Some(Some(Literal { length: 0 })));
    assert_eq!(end(b"a {5} \r\n"), Some(None));
    assert_eq!(end(b"a {5}\r\r\n"), Some(None));
    assert_eq!(end(b"a {5-}\r\n"), Some(None));
    assert_eq!(end(b"a {}\r\n"), Some(None));
    assert_eq!(end(b"a {99999999999}\r\n"), Some(None));
    assert_eq!(end(b"a {{7}\r\n"), Some(Some(Literal { length: 7 })));
    assert_eq!(end(b"a {5}"), None);
}

/// `OR SUBJECT s0 OR SUBJECT s1 … SUBJECT sn`: n ORs nested to the right.
fn ors(n: usize) -> String {
    let mut s: String = (0..n).map(|i| format!("OR SUBJECT s{i} ")).collect();
    s.push_str(&format!("SUBJECT s{n}"));
    s
}

#[test]
fn keys_deeper_than_imap_codec_goes_are_reparsed_and_too_deep_is_refused() {
    let mut p = protocol(1000);
    let input = format!(
        "d1 SEARCH {}\r\nd2 SEARCH RETURN (MIN COUNT) {}\r\nd3 SEARCH {}\r\nd4 NOOP\r\nd5 SEARCH OR\r\n",
        ors(100),
        ors(20),
        ors(crate::command::MAX_KEY_DEPTH + 1)
    );
    p.enqueue_input(input.as_bytes());
    let (_, events) = run(&mut p);
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[0].starts_with("d1 SEARCH Or("), "{}", events[0]);
    assert!(events[1].starts_with("d2 ESEARCH Or("), "{}", events[1]);
    assert!(
        events[1].ends_with(&format!("{:?}", min_count())),
        "{}",
        events[1]
    );
    assert_eq!(
        events[2],
        format!(
            "d3 refused: search keys nested deeper than {} levels (NOT, OR, parentheses)",
            crate::command::MAX_KEY_DEPTH
        )
    );
    assert_eq!(events[3], "d4 NOOP");
    // Not search keys at all: imap-codec's refusal stands.
    assert!(events[4].starts_with("error "), "{}", events[4]);
}

/// After STARTTLS nothing is written until the client's next command: the greeting
/// imap-next insists on is dropped, and the first command is answered as usual.
#[test]
fn after_starttls_nothing_is_sent_before_the_first_command() {
    let greeting = Greeting::ok(None, "TLS active").expect("a valid greeting");
    let options = Options::default();
    let max_literal = options.max_literal_size;
    let mut p = Protocol::after_starttls(Server::new(options, greeting), max_literal);
    let (out, events) = run(&mut p);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert_eq!(events, ["greeting"]);
    p.enqueue_input(b"a1 CAPABILITY\r\n");
    let (out, events) = run(&mut p);
    assert!(out.is_empty());
    assert_eq!(events, ["a1 CAPABILITY"]);
    let h = p.enqueue_status(Status::ok(None, None, "done").unwrap());
    let (out, events) = run(&mut p);
    assert_eq!(out, b"* OK done\r\n");
    assert_eq!(events, ["sent"]);
    let _ = h;
}
