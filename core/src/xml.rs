//! A small, bounded XML reader for WeChat bodies, built on quick-xml's pull reader.
//!
//! WeChat bodies are tiny flat documents, so we read them into a little tree with hard limits
//! (depth, element count) and refuse DTDs and any entity that is not one of XML's five predefined
//! ones or a character reference: nothing is ever resolved from outside the document.
//!
//! The tree borrows from the input: names and the usual single CDATA or text run of a leaf are
//! slices of the body, so reading a push allocates little more than the tree's vectors.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{Error, Result};

/// Deeper than any WeChat message (the deepest real one is 4); stops "billion levels" input.
pub const MAX_DEPTH: usize = 12;
/// More elements than any real callback carries.
pub const MAX_ELEMENTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element<'a> {
    pub name: &'a str,
    /// Text of a leaf element (CDATA unwrapped, references resolved). Empty for inner elements.
    pub text: Cow<'a, str>,
    pub children: Vec<Element<'a>>,
}

impl<'a> Element<'a> {
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child called `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_ref())
    }

    /// Appends a run of text: borrowed while it is the element's only run.
    fn push_text(&mut self, run: Cow<'a, str>) {
        if self.text.is_empty() {
            self.text = run;
        } else {
            self.text.to_mut().push_str(&run);
        }
    }
}

/// A run of the input as text: a slice of `input` when the reader lent it (it always does for a
/// `&str`), found without checking the UTF-8 again.
fn text_run<'a>(input: &'a str, raw: Cow<'_, [u8]>) -> Result<Cow<'a, str>> {
    match raw {
        Cow::Borrowed(b) => slice_of(input, b).map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).map_err(|e| Error::Xml(e.to_string())),
    }
}

/// Parses a whole document and returns its root element.
pub fn parse(input: &str) -> Result<Element<'_>> {
    // XML 1.0 forbids control characters other than tab, newline and carriage return, and WeChat
    // never sends them; one in a field could end up in a reply or a log line.
    if let Some(at) = control_character(input.as_bytes()) {
        return Err(Error::Xml(format!("control character 0x{:02x} at byte {at}", input.as_bytes()[at])));
    }
    let mut reader = Reader::from_str(input);
    // Names must match: `<a></b>` is malformed, not a guess. Checked below against our own stack
    // of open elements (quick-xml's `check_end_names` would keep a second copy of every name).
    reader.config_mut().check_end_names = false;
    let mut stack: Vec<Element> = Vec::with_capacity(MAX_DEPTH);
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| Error::Xml(format!("at byte {}: {e}", reader.error_position())))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(Error::Xml("content after the root element".into()));
            }
            Event::Start(start) => {
                count_element(&mut count)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::Xml(format!("nested deeper than {MAX_DEPTH}")));
                }
                stack.push(Element { name: slice_of(input, start.name().as_ref())?, ..Default::default() });
            }
            Event::Empty(start) => {
                count_element(&mut count)?;
                let el = Element { name: slice_of(input, start.name().as_ref())?, ..Default::default() };
                adopt(&mut stack, &mut root, el);
            }
            Event::End(end) => {
                let mut el = stack.pop().ok_or_else(|| Error::Xml("unbalanced end tag".into()))?;
                if el.name.as_bytes() != end.name().as_ref() {
                    let found = String::from_utf8_lossy(end.name().as_ref()).into_owned();
                    return Err(Error::Xml(format!("at byte {}: expected </{}>, found </{found}>", reader.buffer_position(), el.name)));
                }
                if !el.children.is_empty() {
                    el.text = Cow::Borrowed(""); // whitespace between child elements is layout, not data
                }
                adopt(&mut stack, &mut root, el);
            }
            Event::Text(text) => {
                let s = text_run(input, text.into_inner())?;
                match stack.last_mut() {
                    Some(el) => el.push_text(s),
                    None if s.trim().is_empty() => {}
                    None => return Err(Error::Xml("text outside the root element".into())),
                }
            }
            Event::CData(data) => {
                let s = text_run(input, data.into_inner())?;
                match stack.last_mut() {
                    Some(el) => el.push_text(s),
                    None => return Err(Error::Xml("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| Error::Xml(e.to_string()))?.ok_or(Error::Xml("bad character reference".into()))?
                } else {
                    match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        _ => return Err(Error::ForbiddenXml("entity reference")),
                    }
                };
                match stack.last_mut() {
                    Some(el) => el.text.to_mut().push(ch),
                    None => return Err(Error::Xml("reference outside the root element".into())),
                }
            }
            Event::DocType(_) => return Err(Error::ForbiddenXml("DOCTYPE")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Error::Xml("unexpected end of document".into()));
    }
    root.ok_or_else(|| Error::Xml("no root element".into()))
}

/// Where the first control character other than tab, newline and carriage return is. Every push
/// is scanned whole, so the scan goes 32 bytes at a time with no branch inside a block (the
/// compiler turns it into vector compares); only a block holding one is searched byte by byte.
fn control_character(bytes: &[u8]) -> Option<usize> {
    fn bad(b: u8) -> bool {
        b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r'
    }
    let mut blocks = bytes.chunks_exact(32);
    let mut at = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | bad(b)) {
            return block.iter().position(|&b| bad(b)).map(|i| at + i);
        }
        at += 32;
    }
    blocks.remainder().iter().position(|&b| bad(b)).map(|i| at + i)
}

/// Puts a finished element under its parent, or makes it the root. A parent's first child
/// reserves room for a whole WeChat message's fields (one allocation, not four growths).
fn adopt<'a>(stack: &mut [Element<'a>], root: &mut Option<Element<'a>>, el: Element<'a>) {
    match stack.last_mut() {
        Some(parent) => {
            if parent.children.is_empty() {
                parent.children.reserve(12);
            }
            parent.children.push(el)
        }
        None => *root = Some(el),
    }
}

fn count_element(count: &mut usize) -> Result<()> {
    *count += 1;
    if *count > MAX_ELEMENTS {
        return Err(Error::Xml(format!("more than {MAX_ELEMENTS} elements")));
    }
    Ok(())
}

/// `raw` (a name or a run of text quick-xml lent out of `input`) as the `&str` slice of `input`
/// it is. Found by address, with no unsafe; indexing checks it falls on character boundaries
/// (quick-xml splits only at ASCII markup). Bytes from anywhere else are refused.
fn slice_of<'a>(input: &'a str, raw: &[u8]) -> Result<&'a str> {
    let (start, base) = (raw.as_ptr() as usize, input.as_ptr() as usize);
    start.checked_sub(base).and_then(|at| input.get(at..at.checked_add(raw.len())?)).ok_or_else(|| Error::Xml("text outside the document".into()))
}

/// Appends `<name>…</name>` with `inner` writing the content.
pub fn push_element(out: &mut String, name: &str, inner: impl FnOnce(&mut String)) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    inner(out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Appends `<name><![CDATA[value]]></name>`, splitting `]]>` across two CDATA sections so any
/// text survives intact.
pub fn push_cdata(out: &mut String, name: &str, value: &str) {
    push_element(out, name, |o| {
        o.push_str("<![CDATA[");
        let mut rest = value;
        while let Some(at) = find_cdata_end(rest) {
            o.push_str(&rest[..at]);
            o.push_str("]]]]><![CDATA[>");
            rest = &rest[at + 3..];
        }
        o.push_str(rest);
        o.push_str("]]>");
    });
}

/// Where `]]>` starts in `s`: a byte scan for `]`, the rare case, before any substring search.
fn find_cdata_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|&c| c == b']') {
        let at = from + i;
        if b[at..].starts_with(b"]]>") {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Appends `<name>value</name>` unquoted: WeChat writes numbers without CDATA. `value` must
/// contain no markup (numbers, timestamps).
pub fn push_number(out: &mut String, name: &str, value: impl std::fmt::Display) {
    push_element(out, name, |o| {
        use std::fmt::Write;
        let _ = write!(o, "{value}"); // writing to a String cannot fail
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_tags_must_close_the_open_element() {
        let e = parse("<xml><a>1</b></xml>").unwrap_err().to_string();
        assert!(e.contains("expected </a>, found </b>"), "{e}");
        let e = parse("<xml><a><b>1</a></b></xml>").unwrap_err().to_string();
        assert!(e.contains("expected </b>, found </a>"), "{e}");
        let e = parse("<xml></xml></xml>").unwrap_err().to_string();
        assert!(e.contains("unbalanced") || e.contains("</xml>"), "{e}");
        assert!(parse("<xml><a>1</a ></xml>").is_ok(), "space before > is allowed");
        assert_eq!(parse("<xml><a>1</a><b/></xml>").unwrap().children.len(), 2);
    }

    #[test]
    fn finds_the_first_control_character_in_any_block() {
        // Every position of a 100-byte body: in a 32-byte block, at its edges, in the remainder.
        for at in 0..100 {
            for bad in [0u8, 0x07, 0x1f] {
                let mut body = vec![b'a'; 100];
                body[at] = bad;
                if at + 40 < 100 {
                    body[at + 40] = 0x01; // a later one is not the first
                }
                assert_eq!(control_character(&body), Some(at), "{bad:#x} at {at}");
            }
        }
        assert_eq!(control_character(b"<xml>\t\r\n x \x7f \xe4\xb8\xad</xml>"), None);
        assert_eq!(control_character(&[b' '; 64]), None);
        assert_eq!(control_character(b""), None);
    }

    #[test]
    fn reads_cdata_text_refs_and_nesting() {
        let doc = "<?xml version=\"1.0\"?>\n<xml>\n  <A><![CDATA[x]]></A>\n  <B>1 &amp; 2 &#20320;</B>\n  <C><D>d1</D><D>d2</D></C>\n  <E/>\n</xml>";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "xml");
        assert_eq!(root.text_of("A"), Some("x"));
        assert_eq!(root.text_of("B"), Some("1 & 2 你"));
        let c = root.child("C").unwrap();
        assert_eq!(c.children_named("D").map(|d| d.text.as_ref()).collect::<Vec<_>>(), ["d1", "d2"]);
        assert_eq!(c.text, "");
        assert_eq!(root.text_of("E"), Some(""));
    }

    #[test]
    fn refuses_dtd_and_entities() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><A>&e;</A></xml>";
        assert_eq!(parse(xxe), Err(Error::ForbiddenXml("DOCTYPE")));
        assert_eq!(parse("<xml><A>&e;</A></xml>"), Err(Error::ForbiddenXml("entity reference")));
    }

    #[test]
    fn refuses_malformed_and_deep_input() {
        for bad in ["", "<xml>", "<xml><A></B></xml>", "<xml></xml><xml></xml>", "text", "<xml><A>&#xFFFFFFFF;</A></xml>"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(Error::Xml(m)) if m.contains("deeper")));
        let wide = format!("<xml>{}</xml>", "<a/>".repeat(MAX_ELEMENTS + 1));
        assert!(matches!(parse(&wide), Err(Error::Xml(m)) if m.contains("elements")));
    }

    #[test]
    fn cdata_split_round_trips() {
        let mut out = String::from("<xml>");
        push_cdata(&mut out, "Content", "a]]>b]]>");
        push_cdata(&mut out, "Plain", "no end marker ]] > here");
        out.push_str("</xml>");
        assert_eq!(parse(&out).unwrap().text_of("Content"), Some("a]]>b]]>"));
        assert_eq!(parse(&out).unwrap().text_of("Plain"), Some("no end marker ]] > here"));
    }
}
