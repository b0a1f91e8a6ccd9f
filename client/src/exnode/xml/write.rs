//! [`ExNode`] → LoRS XML. The layout follows LoRS `xndSerialize.c`: the root declares the
//! `exnode` prefix; exNode metadata first, then one `exnode:mapping` per mapping with its
//! five integer fields, our own fields (`expires`, `depot`, `e2e_checksum`) as further
//! metadata that LoRS readers skip, the kept `function` chain, and the three capability URLs.

use super::NAMESPACE;
use crate::exnode::checksum::BlockChecksums;
use crate::exnode::metadata::{Function, MetaValue, Metadata};
use crate::exnode::model::{ExNode, Mapping};
use crate::proto::Capability;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use std::io;

type W = Writer<Vec<u8>>;

/// Serializes `x` (capabilities included: the result is as secret as they are).
pub fn to_xml(x: &ExNode) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_doc(&mut w, x).expect("writing XML into a Vec cannot fail");
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    String::from_utf8(bytes).expect("the writer emits only the UTF-8 it was given")
}

fn write_doc(w: &mut W, x: &ExNode) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("exnode").with_attribute(("xmlns:exnode", NAMESPACE)).write_inner_content(
        |w| {
            for md in &x.metadata {
                write_metadata(w, "exnode:metadata", md)?;
            }
            for m in &x.mappings {
                write_mapping(w, m)?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

fn write_metadata(w: &mut W, tag: &str, md: &Metadata) -> io::Result<()> {
    let el = w
        .create_element(tag)
        .with_attribute(("name", md.name.as_str()))
        .with_attribute(("type", md.value.type_word()));
    match &md.value {
        MetaValue::String(s) => el.write_text_content(BytesText::new(s))?,
        MetaValue::Integer(n) => el.write_text_content(BytesText::new(&n.to_string()))?,
        MetaValue::Double(d) => el.write_text_content(BytesText::new(&format_double(*d)))?,
        MetaValue::Meta(children) if children.is_empty() => el.write_empty()?,
        MetaValue::Meta(children) => el.write_inner_content(|w| {
            children.iter().try_for_each(|c| write_metadata(w, "exnode:metadata", c))
        })?,
    };
    Ok(())
}

/// Rust's shortest round-trip form, with `.0` kept on whole numbers so C readers see a double.
fn format_double(d: f64) -> String {
    let s = d.to_string();
    if d.is_finite() && !s.contains(['.', 'e', 'E']) {
        format!("{s}.0")
    } else {
        s
    }
}

fn write_mapping(w: &mut W, m: &Mapping) -> io::Result<()> {
    w.create_element("exnode:mapping").write_inner_content(|w| {
        for (name, v) in [
            ("exnode_offset", m.logical_offset),
            ("logical_length", m.logical_length),
            ("alloc_offset", m.alloc_offset),
            ("alloc_length", m.alloc_length),
            ("e2e_blocksize", m.e2e_blocksize),
        ] {
            write_metadata(w, "exnode:metadata", &integer(name, v))?;
        }
        if let Some(end) = m.expires_s {
            write_metadata(w, "exnode:metadata", &integer("expires", end))?;
        }
        if let Some(d) = &m.depot {
            write_metadata(w, "exnode:metadata", &Metadata::string("depot", &d.to_string()))?;
        }
        if let Some(sums) = &m.checksum {
            write_metadata(w, "exnode:metadata", &checksum_meta(sums))?;
        }
        for md in &m.extra {
            write_metadata(w, "exnode:metadata", md)?;
        }
        for f in &m.functions {
            write_function(w, f)?;
        }
        write_cap(w, "exnode:read", &m.read)?;
        write_cap(w, "exnode:write", &m.write)?;
        write_cap(w, "exnode:manage", &m.manage)?;
        Ok(())
    })?;
    Ok(())
}

fn integer(name: &str, v: u64) -> Metadata {
    Metadata::integer(name, i64::try_from(v).unwrap_or(i64::MAX))
}

/// Our digests as one `meta` entry: algorithm, block size, and the hex digests in order.
pub(crate) fn checksum_meta(sums: &BlockChecksums) -> Metadata {
    Metadata::meta(
        "e2e_checksum",
        vec![
            Metadata::string("algorithm", sums.algorithm.word()),
            integer("blocksize", sums.block_size),
            Metadata::string("digests", &sums.digests.join(" ")),
        ],
    )
}

fn write_function(w: &mut W, f: &Function) -> io::Result<()> {
    w.create_element("exnode:function")
        .with_attribute(("name", f.name.as_str()))
        .write_inner_content(|w| {
            for md in &f.metadata {
                write_metadata(w, "exnode:metadata", md)?;
            }
            for arg in &f.arguments {
                write_metadata(w, "exnode:argument", arg)?;
            }
            f.inner.iter().try_for_each(|inner| write_function(w, inner))
        })?;
    Ok(())
}

fn write_cap(w: &mut W, tag: &str, cap: &Option<Capability>) -> io::Result<()> {
    if let Some(c) = cap {
        w.create_element(tag).write_text_content(BytesText::new(&c.to_url()))?;
    }
    Ok(())
}
