//! The exNode's serializations: the LoRS fixture, round trips (property test), and refusal
//! of malformed or hostile documents with a clear error that never quotes a capability.

use ibp_client::exnode::json::{from_json, to_json};
use ibp_client::exnode::{
    from_xml, to_xml, BlockChecksums, ChecksumAlgorithm, DepotAddr, ExNode, Function, Mapping,
    MetaValue, Metadata, Query, XmlError, XmlLimits,
};
use ibp_client::proto::{CapKind, Capability};
use proptest::prelude::*;

const FIXTURE: &str = include_str!("fixtures/lors.xnd");

#[test]
fn lors_fixture_parses() {
    let x = from_xml(FIXTURE, &XmlLimits::default()).expect("fixture parses");
    assert_eq!(x.filename(), Some("climate-2003.nc"));
    assert_eq!(x.meta("lorsversion"), Some(&MetaValue::Double(0.82)));
    let Some(MetaValue::Meta(tool)) = x.meta("Tool") else { panic!("Tool is a meta entry") };
    assert_eq!(tool[0], Metadata::string("Name", "LoDN"));
    assert_eq!(x.mappings.len(), 3);
    let m1 = &x.mappings[1];
    assert_eq!((m1.logical_offset, m1.logical_length, m1.alloc_length), (0, 5242880, 5243520));
    assert_eq!(m1.e2e_blocksize, 524288);
    assert_eq!(m1.functions[0].name, "checksum");
    assert_eq!(m1.functions[0].arguments[0], Metadata::integer("blocksize", 524288));
    let read = m1.read.as_ref().expect("read cap");
    assert_eq!(
        (read.host.as_str(), read.port, read.kind),
        ("vertex.cs.utk.edu", 6714, CapKind::Read)
    );
    let m2 = &x.mappings[2];
    assert_eq!(m2.functions[0].inner[0].name, "zlib_compress");
    assert!(m2.write.is_none());
    assert_eq!(m2.read.as_ref().map(|c| c.host.as_str()), Some("2001:db8::7"));
    // DLT's start/end strings are kept verbatim.
    assert_eq!(x.mappings[0].extra.len(), 2);
    // Two replicas of the first 5 MiB, one of the last MiB, nothing missing.
    assert_eq!(x.size(), 6291456);
    assert!(x.coverage_gaps(&Query::all()).is_empty());
    assert_eq!(x.min_replicas(&Query::all()), 1);
    let on_vertex = Query::all().depot(DepotAddr::parse("vertex.cs.utk.edu:6714").expect("addr"));
    assert_eq!(x.query(&on_vertex), vec![1]);
}

#[test]
fn lors_fixture_round_trips() {
    let x = from_xml(FIXTURE, &XmlLimits::default()).expect("fixture parses");
    let text = to_xml(&x);
    assert!(text.contains(r#"xmlns:exnode="http://loci.cs.utk.edu/exnode""#));
    assert!(text
        .contains(r#"<exnode:metadata name="exnode_offset" type="integer">0</exnode:metadata>"#));
    let back = from_xml(&text, &XmlLimits::default()).expect("our output parses");
    assert_eq!(back, x);
    // And the JSON form.
    let mut json = Vec::new();
    to_json(&x, &mut json).expect("json");
    let json = String::from_utf8(json).expect("utf8");
    assert_eq!(from_json(&json, &XmlLimits::default()).expect("json parses"), x);
}

#[test]
fn debug_never_shows_keys() {
    let x = from_xml(FIXTURE, &XmlLimits::default()).expect("fixture parses");
    let debug = format!("{x:?}");
    for m in &x.mappings {
        for cap in [&m.read, &m.write, &m.manage].into_iter().flatten() {
            assert!(!debug.contains(&cap.key), "Debug leaked a key");
        }
    }
}

fn err(text: &str) -> XmlError {
    from_xml(text, &XmlLimits::default()).expect_err("must be refused")
}

const HEAD: &str = r#"<exnode xmlns:exnode="http://loci.cs.utk.edu/exnode">"#;

#[test]
fn hostile_and_malformed_documents_are_refused() {
    // Entity expansion ("billion laughs") never starts: DOCTYPE is refused outright.
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><exnode>&b;</exnode>"#;
    assert!(matches!(err(laughs), XmlError::DocType));
    // An undefined entity is a syntax error, not an expansion.
    assert!(matches!(err(&format!("{HEAD}&ext;</exnode>")), XmlError::Syntax { .. }));
    // Depth bound.
    let deep = format!("{HEAD}{}{}</exnode>", "<a>".repeat(100), "</a>".repeat(100));
    assert!(matches!(err(&deep), XmlError::Limit { what: "element depth", .. }));
    // Size bound.
    let small = XmlLimits { max_input_bytes: 100, ..XmlLimits::default() };
    let big = format!("{HEAD}{}</exnode>", " ".repeat(200));
    assert!(matches!(from_xml(&big, &small), Err(XmlError::TooLarge { limit: 100 })));
    // Mapping count bound.
    let few = XmlLimits { max_mappings: 2, ..XmlLimits::default() };
    let m = r#"<exnode:mapping><exnode:metadata name="exnode_offset" type="integer">0</exnode:metadata><exnode:metadata name="logical_length" type="integer">1</exnode:metadata></exnode:mapping>"#;
    let three = format!("{HEAD}{m}{m}{m}</exnode>");
    assert!(matches!(from_xml(&three, &few), Err(XmlError::Limit { what: "mapping count", .. })));
    assert_eq!(
        from_xml(&format!("{HEAD}{m}{m}</exnode>"), &few).expect("two fit").mappings.len(),
        2
    );
    // String length bound.
    let short = XmlLimits { max_text_bytes: 10, ..XmlLimits::default() };
    let long =
        format!(r#"{HEAD}<exnode:metadata name="x">{}</exnode:metadata></exnode>"#, "y".repeat(11));
    assert!(matches!(from_xml(&long, &short), Err(XmlError::Limit { what: "text length", .. })));
    let long_attr = format!(
        r#"{HEAD}<exnode:metadata name="{}">1</exnode:metadata></exnode>"#,
        "n".repeat(2000)
    );
    assert!(matches!(err(&long_attr), XmlError::Limit { what: "attribute length", .. }));
    // Malformed XML and wrong roots.
    assert!(matches!(err("<exnode><a></b></exnode>"), XmlError::Syntax { .. }));
    assert!(matches!(err("<exnode><a>"), XmlError::Syntax { .. }));
    assert!(matches!(err("<inode/>"), XmlError::NotAnExnode));
    assert!(matches!(err(""), XmlError::Syntax { .. }));
    assert!(matches!(err("<exnode/><exnode/>"), XmlError::Syntax { .. }));
    // Bad values.
    let bad_int =
        format!(r#"{HEAD}<exnode:metadata name="n" type="integer">12x</exnode:metadata></exnode>"#);
    assert!(matches!(err(&bad_int), XmlError::Metadata { .. }));
    let missing = format!(
        r#"{HEAD}<exnode:mapping><exnode:metadata name="exnode_offset" type="integer">0</exnode:metadata></exnode:mapping></exnode>"#
    );
    assert!(matches!(err(&missing), XmlError::Mapping { index: 0, .. }));
    let negative = m.replace(">1<", ">-1<");
    assert!(matches!(err(&format!("{HEAD}{negative}</exnode>")), XmlError::Mapping { .. }));
    let overflow = m
        .replace(">0<", ">18446744073709551615<")
        .replace("type=\"integer\">18", "type=\"string\">18");
    assert!(matches!(err(&format!("{HEAD}{overflow}</exnode>")), XmlError::Mapping { .. }));
}

#[test]
fn bad_capability_error_does_not_quote_it() {
    let secret = "ibp://h:6714/1#SECRETKEY123/1/READZ";
    let doc = format!(
        r#"{HEAD}<exnode:mapping><exnode:metadata name="exnode_offset" type="integer">0</exnode:metadata><exnode:metadata name="logical_length" type="integer">1</exnode:metadata><exnode:read>{secret}</exnode:read></exnode:mapping></exnode>"#
    );
    let e = err(&doc);
    let msg = e.to_string();
    assert!(msg.contains("mapping 0") && msg.contains("read capability"), "{msg}");
    assert!(!msg.contains("SECRETKEY123"));
}

// ---- property test: exNode → XML → exNode ----

fn arb_text() -> impl Strategy<Value = String> {
    // Printable, including XML specials and non-ASCII; XML 1.0 cannot carry most controls.
    proptest::string::string_regex("[ -~éü€\t\n]{0,24}").expect("regex")
}

fn arb_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z_][A-Za-z0-9_ <>&\"']{0,12}").expect("regex")
}

fn arb_meta() -> impl Strategy<Value = Metadata> {
    let leaf = (
        arb_name(),
        prop_oneof![
            arb_text().prop_map(MetaValue::String),
            any::<i64>().prop_map(MetaValue::Integer),
            // Halves of i32s: exact in both forms (serde_json's default float parser is not
            // correctly rounded for 17-digit values; the XML reader is).
            any::<i32>().prop_map(|n| MetaValue::Double(f64::from(n) * 0.5)),
        ],
    )
        .prop_map(|(name, value)| Metadata { name, value });
    leaf.prop_recursive(3, 12, 4, |inner| {
        (arb_name(), prop::collection::vec(inner, 0..4))
            .prop_map(|(name, children)| Metadata::meta(&name, children))
    })
}

fn arb_function() -> impl Strategy<Value = Function> {
    let leaf = (
        arb_name(),
        prop::collection::vec(arb_meta(), 0..2),
        prop::collection::vec(arb_meta(), 0..2),
    )
        .prop_map(|(name, metadata, arguments)| Function {
            name,
            metadata,
            arguments,
            inner: vec![],
        });
    leaf.prop_recursive(2, 4, 1, |inner| {
        (arb_name(), prop::collection::vec(inner, 0..2))
            .prop_map(|(name, inner)| Function { inner, ..Function::named(&name) })
    })
}

fn arb_cap(kind: CapKind) -> impl Strategy<Value = Option<Capability>> {
    proptest::option::of(
        ("[a-z][a-z0-9.-]{0,10}", 1u16.., "[0-9]{1,3}", "[A-Za-z0-9+_=.-]{1,32}", "[0-9]{1,8}")
            .prop_map(move |(host, port, rid, key, tk)| {
                Capability::new(host, port, rid, key, tk, kind).expect("valid by construction")
            }),
    )
}

fn arb_checksums() -> impl Strategy<Value = Option<BlockChecksums>> {
    proptest::option::of(
        (prop::bool::ANY, 1u64..1 << 30, prop::collection::vec(any::<u128>(), 0..5)).prop_map(
            |(md5, block_size, raw)| {
                let algorithm = if md5 { ChecksumAlgorithm::Md5 } else { ChecksumAlgorithm::Crc32 };
                let digests = raw
                    .iter()
                    .map(|r| if md5 { format!("{r:032x}") } else { format!("{:08x}", *r as u32) })
                    .collect();
                BlockChecksums { algorithm, block_size, digests }
            },
        ),
    )
}

prop_compose! {
    fn arb_mapping()(
        (logical_offset, logical_length, alloc_offset, alloc_length, e2e_blocksize) in
            (0u64..1 << 50, 0u64..1 << 40, 0u64..1 << 40, 0u64..i64::MAX as u64, 0u64..1 << 20),
        read in arb_cap(CapKind::Read),
        write in arb_cap(CapKind::Write),
        manage in arb_cap(CapKind::Manage),
        expires_s in proptest::option::of(0u64..i64::MAX as u64),
        depot in proptest::option::of(("[a-z][a-z0-9.]{0,8}", 1u16..)
            .prop_map(|(host, port)| DepotAddr { host, port })),
        checksum in arb_checksums(),
        functions in prop::collection::vec(arb_function(), 0..2),
        extra in prop::collection::vec(arb_meta(), 0..3)
            .prop_map(|v| v.into_iter().map(|mut m| { m.name.insert_str(0, "x_"); m }).collect()),
    ) -> Mapping {
        Mapping {
            logical_offset, logical_length, alloc_offset, alloc_length, e2e_blocksize,
            read, write, manage, expires_s, depot, checksum, functions, extra,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn xml_round_trip(
        metadata in prop::collection::vec(arb_meta(), 0..5),
        mappings in prop::collection::vec(arb_mapping(), 0..6),
    ) {
        let x = ExNode { metadata, mappings };
        let text = to_xml(&x);
        let back = from_xml(&text, &XmlLimits::default());
        prop_assert!(back.is_ok(), "our own output was refused: {:?}", back.err());
        prop_assert_eq!(back.ok(), Some(x.clone()));
        let mut json = Vec::new();
        to_json(&x, &mut json).expect("json");
        let json = String::from_utf8(json).expect("utf8");
        prop_assert_eq!(from_json(&json, &XmlLimits::default()).ok(), Some(x));
    }

    #[test]
    fn arbitrary_input_never_panics(text in "\\PC{0,200}") {
        let _ = from_xml(&text, &XmlLimits::default());
        let doc = format!("{HEAD}{text}</exnode>");
        let _ = from_xml(&doc, &XmlLimits::default());
    }
}
