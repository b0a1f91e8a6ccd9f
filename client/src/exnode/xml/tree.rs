//! A bounded element tree: the first of the reader's two steps. Only element names (local
//! part; the `exnode:` prefix is dropped), attributes and text are kept. Comments,
//! processing instructions and the XML declaration are skipped; a DOCTYPE is refused, so no
//! entity can be defined, and quick-xml expands only the five predefined entities and
//! character references.

use super::{XmlError, XmlLimits};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// One element.
#[derive(Debug, Default)]
pub struct Element {
    /// Local name (`metadata`, `mapping`, …).
    pub name: String,
    /// Attributes by local name, unescaped, in document order.
    pub attrs: Vec<(String, String)>,
    /// Concatenated text and CDATA directly inside the element, unescaped and untrimmed.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `text` into its root element, enforcing `limits`.
pub fn parse(text: &str, limits: &XmlLimits) -> Result<Element, XmlError> {
    if text.len() > limits.max_input_bytes {
        return Err(XmlError::TooLarge { limit: limits.max_input_bytes });
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| syntax(&reader, &e))?;
        match event {
            Event::Start(start) => {
                elements = open(elements, stack.len(), root.is_some(), limits, &reader)?;
                stack.push(element(&start, limits, &reader)?);
            }
            Event::Empty(start) => {
                elements = open(elements, stack.len(), root.is_some(), limits, &reader)?;
                let el = element(&start, limits, &reader)?;
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| XmlError::Syntax {
                    position: reader.buffer_position(),
                    message: "unmatched end tag".into(),
                })?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| syntax(&reader, &e))?;
                add_text(&mut stack, &s, limits, &reader)?;
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                let s = std::str::from_utf8(&raw).map_err(|_| XmlError::NotUtf8)?;
                add_text(&mut stack, s, limits, &reader)?;
            }
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax {
            position: reader.buffer_position(),
            message: "document ends inside an element".into(),
        });
    }
    root.ok_or(XmlError::Syntax { position: 0, message: "no root element".into() })
}

/// Checks that one more element may open at `depth`; returns the new element count.
fn open(
    elements: usize,
    depth: usize,
    have_root: bool,
    limits: &XmlLimits,
    reader: &Reader<&[u8]>,
) -> Result<usize, XmlError> {
    if have_root && depth == 0 {
        return Err(XmlError::Syntax {
            position: reader.buffer_position(),
            message: "content after the root element".into(),
        });
    }
    if elements >= limits.max_elements {
        return Err(XmlError::Limit { what: "element count", limit: limits.max_elements });
    }
    if depth >= limits.max_depth {
        return Err(XmlError::Limit { what: "element depth", limit: limits.max_depth });
    }
    Ok(elements + 1)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn add_text(
    stack: &mut [Element],
    s: &str,
    limits: &XmlLimits,
    reader: &Reader<&[u8]>,
) -> Result<(), XmlError> {
    let Some(top) = stack.last_mut() else {
        if s.trim().is_empty() {
            return Ok(());
        }
        return Err(XmlError::Syntax {
            position: reader.buffer_position(),
            message: "text outside the root element".into(),
        });
    };
    if top.text.len() + s.len() > limits.max_text_bytes {
        return Err(XmlError::Limit { what: "text length", limit: limits.max_text_bytes });
    }
    top.text.push_str(s);
    Ok(())
}

fn element(
    start: &BytesStart<'_>,
    limits: &XmlLimits,
    reader: &Reader<&[u8]>,
) -> Result<Element, XmlError> {
    let name = utf8(start.local_name().into_inner())?.to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| syntax(reader, &quick_xml::Error::from(e)))?;
        if attrs.len() >= limits.max_attrs {
            return Err(XmlError::Limit {
                what: "attributes per element",
                limit: limits.max_attrs,
            });
        }
        if attr.value.len() > limits.max_attr_bytes {
            return Err(XmlError::Limit { what: "attribute length", limit: limits.max_attr_bytes });
        }
        let key = utf8(attr.key.local_name().into_inner())?.to_owned();
        let value = attr.unescape_value().map_err(|e| syntax(reader, &e))?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element { name, attrs, text: String::new(), children: Vec::new() })
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)
}

fn syntax(reader: &Reader<&[u8]>, e: &quick_xml::Error) -> XmlError {
    // quick-xml quotes tag and entity names, never element text, so no capability leaks;
    // the message is still cut short to keep a hostile name from flooding a terminal.
    let mut message = e.to_string();
    if message.len() > 160 {
        let mut cut = 160;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    XmlError::Syntax { position: reader.error_position(), message }
}
