//! An HTML checker for the XSS tests: it reads the markup of an answer as a browser's
//! tokenizer would (tags, attributes with quoted or bare values, raw-text elements, comments)
//! and fails on anything that could run, load or send something: a script that is not ours,
//! an `on*` or `style` attribute, a `javascript:`/`vbscript:`/`data:` URL (entities decoded,
//! white space dropped), a link or image leaving the site, `<base>`, `<meta http-equiv>`,
//! frames, objects, SVG, MathML. Text is text: a mail's `<script>` shown escaped as
//! `&lt;script&gt;` is fine.

/// Which kind of answer is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A page of the app (its own script, style sheet, forms and the one sandboxed frame).
    Page,
    /// The sanitised HTML body served for the sandboxed frame.
    SandboxedBody,
}

/// Fails the test with `what` if `html` holds anything active.
pub fn assert_safe_html(html: &str, kind: Kind, what: &str) {
    if let Err(why) = check(html, kind) {
        panic!("{what}: {why}\n--- answer ---\n{html}");
    }
}

struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn check(html: &str, kind: Kind) -> Result<(), String> {
    let b = html.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            return Err(format!("a comment at byte {i}"));
        }
        if rest.len() > 1 && (rest.as_bytes()[1] == b'!' || rest.as_bytes()[1] == b'?') {
            let end = rest.find('>').ok_or("unterminated declaration")?;
            let decl = rest[..end].to_ascii_lowercase();
            if !decl.starts_with("<!doctype html") {
                return Err(format!("declaration {decl}"));
            }
            i += end + 1;
            continue;
        }
        let closing = rest.as_bytes().get(1) == Some(&b'/');
        let start = if closing { 2 } else { 1 };
        if !rest.as_bytes().get(start).is_some_and(u8::is_ascii_alphabetic) {
            // "<" followed by anything else is text to a browser.
            i += 1;
            continue;
        }
        let (tag, len) = parse_tag(&rest[start..])?;
        i += start + len;
        if closing {
            continue;
        }
        check_tag(&tag, kind)?;
        // Raw text: the browser reads up to the closing tag without parsing markup.
        if [
            "script",
            "style",
            "textarea",
            "title",
            "xmp",
            "noscript",
            "iframe",
            "noembed",
            "noframes",
            "plaintext",
        ]
        .contains(&tag.name.as_str())
        {
            let close = format!("</{}", tag.name);
            let lower = html[i..].to_ascii_lowercase();
            let end = lower
                .find(&close)
                .ok_or(format!("<{}> is never closed", tag.name))?;
            if tag.name == "script" && !html[i..i + end].trim().is_empty() {
                return Err("an inline script".into());
            }
            i += end;
        }
    }
    Ok(())
}

/// Reads a start or end tag after `<` (or `</`): name and attributes; returns the bytes read
/// through `>`.
fn parse_tag(s: &str) -> Result<(Tag, usize), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let mut tag = Tag {
        name: s[..i].to_ascii_lowercase(),
        attrs: Vec::new(),
    };
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return Err(format!("unterminated tag <{}", tag.name));
        }
        if b[i] == b'>' {
            return Ok((tag, i + 1));
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b"/>=".contains(&b[i]) {
            i += 1;
        }
        let name = s[name_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i) {
                Some(q @ (b'"' | b'\'')) => {
                    let end = s[i + 1..]
                        .find(*q as char)
                        .ok_or(format!("unterminated attribute {name}"))?;
                    value = s[i + 1..i + 1 + end].to_string();
                    i += end + 2;
                }
                _ => {
                    let start = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = s[start..i].to_string();
                }
            }
        }
        tag.attrs.push((name, decode(&value)));
    }
}

/// An attribute value as the browser sees it, for URL checks: character references decoded
/// (numeric, and the named ones used to hide schemes), then white space and controls dropped,
/// lower case.
fn decode(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(';').filter(|e| *e <= 12);
        let decoded = end.and_then(|e| {
            let entity = &tail[1..e];
            let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(dec) = entity.strip_prefix('#') {
                dec.parse().ok()
            } else {
                match entity {
                    "colon" => Some(58),
                    "tab" | "Tab" => Some(9),
                    "newline" | "NewLine" => Some(10),
                    "amp" => Some(38),
                    "quot" => Some(34),
                    "lt" => Some(60),
                    "gt" => Some(62),
                    "#39" | "apos" => Some(39),
                    _ => None,
                }
            };
            code.and_then(char::from_u32).map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn normalized_url(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn check_tag(tag: &Tag, kind: Kind) -> Result<(), String> {
    let name = tag.name.as_str();
    let page = kind == Kind::Page;
    let never = [
        "base",
        "object",
        "embed",
        "applet",
        "frame",
        "frameset",
        "svg",
        "math",
        "style",
        "isindex",
        "template",
        "noscript",
        "xmp",
        "portal",
        "param",
        "audio",
        "video",
        "source",
        "track",
        "picture",
        "plaintext",
    ];
    if never.contains(&name) {
        return Err(format!("a <{name}> element"));
    }
    let page_only = [
        "script", "link", "form", "input", "button", "select", "option", "textarea", "iframe", "label",
        "fieldset", "legend", "datalist", "meta", "main", "nav", "header", "section",
    ];
    if !page && page_only.contains(&name) {
        return Err(format!("a <{name}> element in the sandboxed body"));
    }
    for (attr, value) in &tag.attrs {
        if attr.starts_with("on") {
            return Err(format!("an event handler {attr} on <{name}>"));
        }
        if [
            "style",
            "srcdoc",
            "formaction",
            "xlink:href",
            "srcset",
            "background",
            "poster",
            "http-equiv",
            "ping",
            "dynsrc",
            "lowsrc",
        ]
        .contains(&attr.as_str())
        {
            return Err(format!("attribute {attr} on <{name}>"));
        }
        let url = normalized_url(value);
        if [
            "href", "src", "action", "data", "cite", "longdesc", "codebase", "manifest", "icon",
        ]
        .contains(&attr.as_str())
        {
            for scheme in ["javascript:", "vbscript:", "data:", "livescript:"] {
                let inline_image = kind == Kind::SandboxedBody
                    && name == "img"
                    && attr == "src"
                    && [
                        "data:image/png;",
                        "data:image/jpeg;",
                        "data:image/gif;",
                        "data:image/webp;",
                    ]
                    .iter()
                    .any(|p| url.starts_with(p));
                if url.starts_with(scheme) && !inline_image {
                    return Err(format!("{attr}={value:?} on <{name}>"));
                }
            }
            let local = url.starts_with('/') && !url.starts_with("//") || url.starts_with('#');
            let inline_image = url.starts_with("data:image/");
            let out_link = page && name == "a" && tag.attr("id") == Some("out-link");
            if !local && !inline_image && !out_link {
                return Err(format!("{attr}={value:?} on <{name}> leaves the site"));
            }
            if kind == Kind::SandboxedBody && name == "a" && !url.starts_with("/out?url=") {
                return Err(format!("a link in the body not through /out: {value:?}"));
            }
        }
    }
    match name {
        "script" if tag.attr("src").is_none_or(|s| !s.starts_with("/static/app.js")) => {
            Err("a script that is not ours".into())
        }
        "link" if tag.attr("href").is_none_or(|s| !s.starts_with("/static/app.css")) => {
            Err("a link element that is not our style sheet".into())
        }
        "meta"
            if tag
                .attrs
                .iter()
                .any(|(k, _)| k != "charset" && k != "name" && k != "content") =>
        {
            Err(format!("a <meta> with {:?}", tag.attrs))
        }
        "iframe" => {
            let sandbox = tag.attr("sandbox").ok_or("an iframe without sandbox")?;
            if sandbox.contains("allow-same-origin") || sandbox.contains("allow-scripts") {
                return Err(format!("iframe sandbox {sandbox:?}"));
            }
            if !tag
                .attr("src")
                .is_some_and(|s| s.starts_with("/messages/") && s.ends_with("/html"))
            {
                return Err(format!("iframe src {:?}", tag.attr("src")));
            }
            Ok(())
        }
        "a" if tag.attr("target") == Some("_blank")
            && !tag.attr("rel").is_some_and(|r| r.contains("noopener")) =>
        {
            Err("target=_blank without rel=noopener".into())
        }
        _ => Ok(()),
    }
}

#[test]
fn the_checker_catches_what_it_must() {
    for bad in [
        "<script>x</script>",
        "<img src=x onerror=alert(1)>",
        "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "<a href=' JaVaScRiPt&colon;x'>x</a>",
        "<base href=http://evil/>",
        "<meta http-equiv=refresh content=0>",
        "<iframe src=/messages/1/html sandbox='allow-scripts'></iframe>",
        "<img src=https://tracker/p.gif>",
        "<div style=\"x\">",
        "<svg><script>x</script></svg>",
        "<!-- <img src=x onerror=y> -->",
    ] {
        assert!(check(bad, Kind::Page).is_err(), "{bad}");
    }
    for good in [
        "<!doctype html><html><head><script src=\"/static/app.js?v=1\" defer></script></head><body>&lt;script&gt; 1 <2 and a < b",
        "<pre>&lt;img src=x onerror=alert(1)&gt; javascript:alert(1)</pre>",
        "<iframe id=\"html-body\" src=\"/messages/5/html\" sandbox=\"allow-popups allow-popups-to-escape-sandbox\"></iframe>",
    ] {
        assert!(check(good, Kind::Page).is_ok(), "{good}: {:?}", check(good, Kind::Page));
    }
    assert!(check("<img src=\"data:image/png;base64,AA\">", Kind::SandboxedBody).is_ok());
    assert!(check(
        "<a href=\"/out?url=x\" rel=\"noopener\" target=\"_blank\">x</a>",
        Kind::SandboxedBody
    )
    .is_ok());
    assert!(check("<a href=\"/search\">x</a>", Kind::SandboxedBody).is_err());
}
