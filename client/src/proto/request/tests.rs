//! Request parsing against the raw examples of PROTOCOL.md, and encode→parse round trips for
//! every variant.

use super::*;
use crate::proto::capability::CapKind;
use proptest::prelude::*;

fn parse(line: &str) -> Request {
    match parse_request(line.as_bytes()) {
        Ok(req) => req,
        Err(e) => panic!("{line:?} should parse: {e}"),
    }
}

fn code_of(line: &[u8]) -> ErrorCode {
    match parse_request(line) {
        Ok(req) => panic!("{:?} should fail, parsed {req:?}", String::from_utf8_lossy(line)),
        Err(e) => e.code,
    }
}

fn key(rid: &str, key: &str) -> KeyRef {
    KeyRef { rid: Some(rid.to_owned()), key: key.to_owned() }
}

#[test]
fn lstore_allocate_capture() {
    let req = parse("1 1 7 2 1 900 65536 30\n");
    assert_eq!(
        req,
        Request::Allocate(Allocate {
            version: 1,
            chksum: None,
            rid: Some("7".into()),
            reliability: 2,
            atype: 1,
            duration_s: 900,
            size: 65536,
            timeout_s: 30,
        })
    );
    assert_eq!(req.command_number(), 1);
    assert_eq!(req.name(), "ALLOCATE");
    let mut out = Vec::new();
    req.encode(&mut out);
    assert_eq!(out, b"1 1 7 2 1 900 65536 30\n");
}

#[test]
fn v0_allocate_has_no_rid_and_chksum_form() {
    let Request::Allocate(a) = parse("0 1 1 1 3600 1048576 0.5\n") else { panic!("allocate") };
    assert_eq!((a.version, a.rid, a.size, a.timeout_s), (0, None, 1_048_576, 0));
    let Request::Allocate(c) = parse("1 29 4 65536 0 2 1 -1 4096 30 \n") else { panic!() };
    assert_eq!(c.chksum, Some(ChksumSpec { cstype: 4, blocksize: 65536 }));
    assert_eq!((c.rid.as_deref(), c.duration_s), (Some("0"), -1));
}

#[test]
fn lstore_remove_is_decr_read() {
    let req = parse("1 9 0#abc 42 42 1 30");
    assert_eq!(
        req,
        Request::Manage(Manage {
            version: 1,
            key: key("0", "abc"),
            typekey: "42".into(),
            op: ManageOp::Decr { captype: 1 },
            timeout_s: 30,
        })
    );
}

#[test]
fn probe_ignores_placeholders() {
    let want = ManageOp::Probe { captype: 3 };
    for line in ["1 9 1#k tk 40 3 0 0 0 30\n", "0 9 1#k tk 40 3 30\n", "1 9 1#k tk 40 3 9 9 9 9 30"]
    {
        let Request::Manage(m) = parse(line) else { panic!("manage") };
        assert_eq!((m.op, m.timeout_s), (want.clone(), 30), "{line}");
    }
    let Request::Manage(m) = parse("0 9 IBP-k READ 41 1 0 0 0 30") else { panic!() };
    assert_eq!((m.key.rid, m.op), (None, ManageOp::Incr { captype: 1 }));
}

#[test]
fn manage_change_and_truncate() {
    let Request::Manage(m) = parse("1 9 1#k tk 43 3 1000 -1 -1 30") else { panic!() };
    assert_eq!(
        m.op,
        ManageOp::Change { captype: 3, max_size: 1000, duration_s: -1, reliability: -1 }
    );
    let Request::Manage(t) = parse("1 9 1#k tk 45 512 30") else { panic!() };
    assert_eq!(t.op, ManageOp::Truncate { max_size: 512 });
    assert_eq!(code_of(b"1 9 1#k tk 44 3 30"), ErrorCode::InvalidCmd);
    assert_eq!(code_of(b"1 9 1#k tk 43 3 1000 30"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 9 1#k tk 40 30"), ErrorCode::BadFormat);
}

#[test]
fn lstore_send_with_double_space() {
    let line = "1 5  1#rk ibp://depot2:6714/3#wk/99/WRITE 77 0 4096 30 25 20 \n";
    let Request::Send(s) = parse(line) else { panic!("send") };
    assert_eq!(s.path, None);
    assert_eq!(s.key, key("1", "rk"));
    assert_eq!(s.target.host, "depot2");
    assert_eq!(s.target.kind, CapKind::Write);
    assert_eq!((s.typekey.as_str(), s.src_offset, s.len), ("77", 0, 4096));
    assert_eq!((s.timeout_s, s.dest_timeout_s, s.dest_client_timeout_s), (30, 25, 20));
    let Request::PhoebusSend(p) = parse("1 17 auto 1#rk ibp://d:1/3#wk/99/WRITE 77 0 10 30 30 30")
    else {
        panic!()
    };
    assert_eq!(p.path.as_deref(), Some("auto"));
}

#[test]
fn push_pull_path_only_with_phoebus() {
    let Request::Push(p) = parse("1 20 1  1#rk ibp://d:1/3#wk/9/WRITE tk 0 -1 100 30 30 30") else {
        panic!()
    };
    assert_eq!((p.ctype, p.path, p.remote_offset), (1, None, -1));
    let Request::Pull(q) = parse("1 21 2 gw1,gw2 1#wk ibp://d:1/3#rk/9/READ tk -1 0 100 30 30 30")
    else {
        panic!()
    };
    assert_eq!((q.ctype, q.path.as_deref()), (2, Some("gw1,gw2")));
    assert_eq!(
        code_of(b"1 20 1 gw 1#rk ibp://d:1/3#wk/9/WRITE tk 0 -1 100 30 30 30"),
        ErrorCode::BadFormat
    );
}

#[test]
fn status_forms_by_token_count() {
    let cases: &[(&str, StatusOp)] = &[
        (
            "1 4 0 1 ibp 30\n",
            StatusOp::Inq { rid: Some("0".into()), password: Password("ibp".into()) },
        ),
        ("0 4 1 ibp 0.5\n", StatusOp::Inq { rid: None, password: Password("ibp".into()) }),
        (
            "1 4 * 2 pw 30",
            StatusOp::Change { rid: Some("*".into()), password: Password("pw".into()) },
        ),
        ("1 4 4 1700000000 30", StatusOp::Stats { start_time: 1_700_000_000 }),
        ("1 4 3 30", StatusOp::Res),
        ("1 4 5 30 ", StatusOp::Version),
    ];
    for (line, op) in cases {
        let Request::Status(s) = parse(line) else { panic!("{line}") };
        assert_eq!(&s.op, op, "{line}");
    }
    assert_eq!(code_of(b"1 4 9 30"), ErrorCode::InvalidCmd);
    assert_eq!(code_of(b"1 4 30"), ErrorCode::BadFormat);
    let dbg = format!("{:?}", parse("1 4 0 1 s3cret 30"));
    assert!(!dbg.contains("s3cret"), "{dbg}");
}

#[test]
fn store_write_load_and_chksum_variants() {
    let Request::Store(s) = parse("1 2 1#wk tk 1024 30\n") else { panic!() };
    assert_eq!((s.len, s.chksum), (1024, None));
    let Request::Store(s) = parse("1 28 4 1024 1#wk tk 4096 30\n") else { panic!() };
    assert_eq!(s.chksum, Some(ChksumSpec { cstype: 4, blocksize: 1024 }));
    let Request::Write(w) = parse("0 13 1#wk tk 100 10 30") else { panic!() };
    assert_eq!((w.offset, w.len), (100, 10));
    let Request::Load(l) = parse("1 24 1 65536 1#rk tk 0 4096 30") else { panic!() };
    assert_eq!(l.chksum.map(|c| c.cstype), Some(1));
    assert_eq!(parse("1 24 1 65536 1#rk tk 0 4096 30").name(), "LOAD_CHKSUM");
}

#[test]
fn timeouts_tolerate_junk() {
    for (t, want) in
        [("0.5", 0), ("30x", 30), ("-1", -1), ("+7", 7), ("99999999999999999999", i64::MAX)]
    {
        let req = parse(&format!("1 8 1#k tk 0 10 {t}"));
        assert_eq!(req.timeout_s(), want, "{t}");
    }
    assert_eq!(code_of(b"1 8 1#k tk 0 10 x30"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 8 1#k tk 0 10 ."), ErrorCode::BadFormat);
}

#[test]
fn versions_and_unknown_commands() {
    assert_eq!(code_of(b"2 8 1#k tk 0 10 30"), ErrorCode::ProtVers);
    assert_eq!(code_of(b"-1 8 1#k tk 0 10 30"), ErrorCode::ProtVers);
    assert_eq!(code_of(b"99999999999999999999 8"), ErrorCode::ProtVers);
    assert_eq!(code_of(b"x 8 1#k tk 0 10 30"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"\n"), ErrorCode::BadFormat);
    assert_eq!(code_of(b""), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 x"), ErrorCode::BadFormat);
    for n in [0, 3, 7, 10, 11, 12, 37, 90, 95, 100, 101, -5] {
        assert_eq!(code_of(format!("1 {n} a b c").as_bytes()), ErrorCode::UnknownFunction, "{n}");
    }
    assert_eq!(code_of(b"1 99999999999999999999 a"), ErrorCode::UnknownFunction);
}

#[test]
fn token_counts_are_exact() {
    assert_eq!(code_of(b"1 8 1#k tk 0 10"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 8 1#k tk 0 10 30 30"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 1 0 2 1 900 65536 30 1"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 16 1#k tk"), ErrorCode::BadFormat);
}

#[test]
fn bad_keys_and_caps() {
    assert_eq!(code_of(b"1 8 1#k/x tk 0 10 30"), ErrorCode::WrongCapFormat);
    let long = format!("1 8 1#{} tk 0 10 30", "k".repeat(300));
    assert_eq!(code_of(long.as_bytes()), ErrorCode::WrongCapFormat);
    assert_eq!(code_of(b"1 8 1#k\0 tk 0 10 30"), ErrorCode::WrongCapFormat);
    assert_eq!(code_of(b"1 5 1#rk http://x/1 tk 0 1 30 30 30"), ErrorCode::WrongCapFormat);
    let rid = format!("1 1 {} 2 1 900 65536 30", "r".repeat(200));
    assert_eq!(code_of(rid.as_bytes()), ErrorCode::InvalidRid);
    let err = parse_request(b"1 8 1#k/secret tk 0 10 30").expect_err("bad key");
    assert!(!err.to_string().contains("secret"));
}

#[test]
fn vectors_are_bounded_before_allocation() {
    let Request::VecRead(v) = parse("1 35 1#k tk 2 100 10 0 10 30") else { panic!() };
    assert_eq!(v.iovec, vec![IoSpan { offset: 100, len: 10 }, IoSpan { offset: 0, len: 10 }]);
    assert_eq!(code_of(b"1 35 1#k tk 2 100 10 30"), ErrorCode::BadFormat);
    assert_eq!(code_of(b"1 33 1#k tk 0 30"), ErrorCode::InvalidParameter);
    assert_eq!(code_of(b"1 33 1#k tk 4097 0 1 30"), ErrorCode::InvalidParameter);
    assert_eq!(code_of(b"1 33 1#k tk 99999999999999 0 1 30"), ErrorCode::InvalidParameter);
    let mut big = b"1 33 1#k tk 5000".to_vec();
    for _ in 0..5000 {
        big.extend_from_slice(b" 0 1");
    }
    big.extend_from_slice(b" 30\n");
    assert_eq!(code_of(&big), ErrorCode::BadFormat, "too many tokens");
    let mut max = b"1 34 4 1024 1#k tk 4096".to_vec();
    for i in 0..4096 {
        max.extend_from_slice(format!(" {i} 1").as_bytes());
    }
    max.extend_from_slice(b" 30\n");
    let Request::VecWrite(v) = parse_request(&max).expect("4096 entries parse") else { panic!() };
    assert_eq!(v.iovec.len(), IOVEC_MAX);
}

#[test]
fn line_limit() {
    let mut huge = b"1 8 1#k tk 0 10 30".to_vec();
    huge.resize(crate::proto::frame::MAX_LINE_BYTES + 1, b' ');
    assert_eq!(code_of(&huge), ErrorCode::BadFormat);
}

#[test]
fn alias_rename_split_merge_chksum() {
    let Request::AliasAllocate(a) = parse("1 14 1#mk tk 0 0 0 30") else { panic!() };
    assert_eq!((a.offset, a.len, a.duration_s), (0, 0, 0));
    let Request::AliasManage(m) = parse("1 15 1#ak tk 40 30") else { panic!() };
    assert_eq!(m.op, AliasManageOp::Probe);
    let Request::AliasManage(m) = parse("1 15 1#ak tk 41 1 1#mk mtk 30") else { panic!() };
    assert!(matches!(m.op, AliasManageOp::Incr { captype: 1, .. }));
    let Request::AliasManage(m) = parse("1 15 1#ak tk 43 10 20 60 1#mk mtk 30") else { panic!() };
    assert!(matches!(m.op, AliasManageOp::Change { offset: 10, len: 20, duration_s: 60, .. }));
    assert!(matches!(parse("1 16 1#mk tk 30"), Request::Rename(_)));
    assert!(matches!(parse("1 18 1#mk tk 2 1 60 4096 30"), Request::SplitAllocate(_)));
    assert!(matches!(parse("1 30 4 65536 1#mk tk 2 1 60 4096 30"), Request::SplitAllocate(_)));
    assert!(matches!(parse("1 19 1#mk tk 1#ck ctk 30"), Request::MergeAllocate(_)));
    let Request::GetChksum(g) = parse("1 31 1#mk tk 1 30") else { panic!() };
    assert_eq!(g.flag, 1);
    assert!(matches!(parse("1 32 1#mk tk 0 30"), Request::ValidateChksum(_)));
}

#[test]
fn mcopy_lines() {
    let Request::Mcopy(m) = parse("0 6 1024\n") else { panic!() };
    assert_eq!((m.buflen, m.version), (1024, 0));
    let line = b"0 6 +s 0#IBP-k +t ibp://a:6714/0#IBP-x/1/WRITE ibp://b:6714/0#IBP-y/2/WRITE \
+k 534 +f 0 +z 4096 +i 30 31 32 40 41 +o 1 1 +p 7000 7001 +n 2 +d 3\n";
    let m = parse_mcopy_line(line).expect("MCOPY second line parses");
    assert_eq!(m.targets.len(), 2);
    assert_eq!((m.offset, m.size, m.src_sync_s), (0, 4096, 30));
    assert_eq!(m.target_syncs_s, vec![31, 32]);
    assert_eq!(m.target_timeouts_s, vec![40, 41]);
    assert_eq!((m.ports.clone(), m.service), (vec![7000, 7001], 3));
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(parse_mcopy_line(&out), Ok(m));
    assert!(parse_mcopy_line(b"0 6 +s k +t +n 999999 +d 1").is_err());
}

#[test]
fn status_change_values() {
    assert_eq!(parse_status_change_values(b"4096 2048 86400\n"), Ok((4096, 2048, 86400)));
    assert!(parse_status_change_values(b"4096 2048").is_err());
}

// ---- property tests: every variant round-trips through encode → parse ----

fn arb_key() -> impl Strategy<Value = KeyRef> {
    (proptest::option::of("[!-~&&[^/#]]{1,127}"), "[A-Za-z0-9+=_.-]{1,256}")
        .prop_map(|(rid, key)| KeyRef { rid, key })
}

fn arb_typekey() -> BoxedStrategy<String> {
    "[!-~&&[^/#]]{1,64}".boxed()
}

fn arb_cap() -> impl Strategy<Value = Capability> {
    (
        crate::proto::capability::tests::arb_host(),
        1u16..,
        "[0-9]{1,5}",
        "[A-Za-z0-9+=_.-]{1,64}",
        arb_typekey(),
        prop_oneof![Just(CapKind::Read), Just(CapKind::Write), Just(CapKind::Manage)],
    )
        .prop_map(|(h, p, r, k, t, kind)| {
            Capability::new(h, p, r, k, t, kind).expect("valid by construction")
        })
}

fn arb_chksum() -> impl Strategy<Value = Option<ChksumSpec>> {
    proptest::option::of(
        (any::<i32>(), any::<i64>())
            .prop_map(|(cstype, blocksize)| ChksumSpec { cstype, blocksize }),
    )
}

fn arb_text() -> impl Strategy<Value = String> {
    "[!-~]{1,40}"
}

fn arb_version() -> impl Strategy<Value = u8> {
    0u8..=1
}

fn arb_range_io() -> impl Strategy<Value = RangeIo> {
    (
        arb_version(),
        arb_chksum(),
        arb_key(),
        arb_typekey(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(version, chksum, key, typekey, offset, len, timeout_s)| RangeIo {
            version,
            chksum,
            key,
            typekey,
            offset,
            len,
            timeout_s,
        })
}

fn arb_allocate() -> impl Strategy<Value = Request> {
    (
        arb_version(),
        arb_chksum(),
        proptest::option::of("[!-~&&[^/#]]{1,127}"),
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(version, chksum, rid, reliability, atype, duration_s, size, timeout_s)| {
            Request::Allocate(Allocate {
                version,
                chksum,
                rid,
                reliability,
                atype,
                duration_s,
                size,
                timeout_s,
            })
        })
}

fn arb_manage() -> impl Strategy<Value = Request> {
    let op = prop_oneof![
        any::<i32>().prop_map(|captype| ManageOp::Probe { captype }),
        any::<i32>().prop_map(|captype| ManageOp::Incr { captype }),
        any::<i32>().prop_map(|captype| ManageOp::Decr { captype }),
        (any::<i32>(), any::<i64>(), any::<i64>(), any::<i32>()).prop_map(
            |(captype, max_size, duration_s, reliability)| ManageOp::Change {
                captype,
                max_size,
                duration_s,
                reliability
            }
        ),
        any::<i64>().prop_map(|max_size| ManageOp::Truncate { max_size }),
    ];
    (arb_version(), arb_key(), arb_typekey(), op, any::<i64>()).prop_map(
        |(version, key, typekey, op, timeout_s)| {
            Request::Manage(Manage { version, key, typekey, op, timeout_s })
        },
    )
}

fn arb_status() -> impl Strategy<Value = Request> {
    let rid = proptest::option::of("[!-~&&[^/#]]{1,127}");
    let op = prop_oneof![
        (rid.clone(), arb_text())
            .prop_map(|(rid, pw)| StatusOp::Inq { rid, password: Password(pw) }),
        (rid, arb_text()).prop_map(|(rid, pw)| StatusOp::Change { rid, password: Password(pw) }),
        Just(StatusOp::Res),
        Just(StatusOp::Version),
        any::<i64>().prop_map(|start_time| StatusOp::Stats { start_time }),
    ];
    (arb_version(), op, any::<i64>())
        .prop_map(|(version, op, timeout_s)| Request::Status(Status { version, op, timeout_s }))
}

fn arb_depot_copy() -> impl Strategy<Value = DepotCopy> {
    (
        (arb_version(), arb_chksum(), proptest::option::of(arb_text()), arb_key()),
        (arb_cap(), arb_typekey(), any::<i64>(), any::<i64>()),
        (any::<i64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(|((version, chksum, path, key), (target, typekey, src_offset, len), t)| {
            DepotCopy {
                version,
                chksum,
                path,
                key,
                target,
                typekey,
                src_offset,
                len,
                timeout_s: t.0,
                dest_timeout_s: t.1,
                dest_client_timeout_s: t.2,
            }
        })
}

fn arb_transfer() -> impl Strategy<Value = Transfer> {
    let ctype_path = prop_oneof![
        any::<i32>().prop_map(|c| (c, None)),
        proptest::option::of(arb_text()).prop_map(|p| (cmd::CTYPE_PHOEBUS, p)),
    ];
    (
        (arb_version(), arb_chksum(), ctype_path, arb_key()),
        (arb_cap(), arb_typekey(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(
            |((version, chksum, (ctype, path), key), (remote, typekey, lo, ro, len), t)| Transfer {
                version,
                chksum,
                ctype,
                path,
                key,
                remote,
                typekey,
                local_offset: lo,
                remote_offset: ro,
                len,
                timeout_s: t.0,
                dest_timeout_s: t.1,
                dest_client_timeout_s: t.2,
            },
        )
}

fn arb_alias() -> impl Strategy<Value = Request> {
    let op = prop_oneof![
        Just(AliasManageOp::Probe),
        (any::<i32>(), arb_key(), arb_typekey()).prop_map(
            |(captype, master_key, master_typekey)| {
                AliasManageOp::Incr { captype, master_key, master_typekey }
            }
        ),
        (any::<i32>(), arb_key(), arb_typekey()).prop_map(
            |(captype, master_key, master_typekey)| {
                AliasManageOp::Decr { captype, master_key, master_typekey }
            }
        ),
        (any::<i64>(), any::<i64>(), any::<i64>(), arb_key(), arb_typekey()).prop_map(
            |(offset, len, duration_s, master_key, master_typekey)| AliasManageOp::Change {
                offset,
                len,
                duration_s,
                master_key,
                master_typekey
            }
        ),
    ];
    let manage = (arb_version(), arb_key(), arb_typekey(), op, any::<i64>()).prop_map(
        |(version, key, typekey, op, timeout_s)| {
            Request::AliasManage(AliasManage { version, key, typekey, op, timeout_s })
        },
    );
    let allocate = (
        arb_version(),
        arb_key(),
        arb_typekey(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(version, key, typekey, offset, len, duration_s, timeout_s)| {
            Request::AliasAllocate(AliasAllocate {
                version,
                key,
                typekey,
                offset,
                len,
                duration_s,
                timeout_s,
            })
        });
    prop_oneof![manage, allocate]
}

fn arb_misc() -> impl Strategy<Value = Request> {
    let rename = (arb_version(), arb_key(), arb_typekey(), any::<i64>()).prop_map(
        |(version, key, typekey, timeout_s)| {
            Request::Rename(Rename { version, key, typekey, timeout_s })
        },
    );
    let split = (
        (arb_version(), arb_chksum(), arb_key(), arb_typekey()),
        (any::<i32>(), any::<i32>(), any::<i64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(
            |(
                (version, chksum, key, typekey),
                (reliability, atype, duration_s, size, timeout_s),
            )| {
                Request::SplitAllocate(SplitAllocate {
                    version,
                    chksum,
                    key,
                    typekey,
                    reliability,
                    atype,
                    duration_s,
                    size,
                    timeout_s,
                })
            },
        );
    let merge = (arb_version(), arb_key(), arb_typekey(), arb_key(), arb_typekey(), any::<i64>())
        .prop_map(|(version, master_key, master_typekey, child_key, child_typekey, timeout_s)| {
            Request::MergeAllocate(MergeAllocate {
                version,
                master_key,
                master_typekey,
                child_key,
                child_typekey,
                timeout_s,
            })
        });
    let query =
        (arb_version(), arb_key(), arb_typekey(), any::<i32>(), any::<i64>(), any::<bool>())
            .prop_map(|(version, key, typekey, flag, timeout_s, validate)| {
                let q = ChksumQuery { version, key, typekey, flag, timeout_s };
                if validate {
                    Request::ValidateChksum(q)
                } else {
                    Request::GetChksum(q)
                }
            });
    let vec_io = (
        arb_version(),
        arb_chksum(),
        arb_key(),
        arb_typekey(),
        proptest::collection::vec((any::<i64>(), any::<i64>()), 1..64),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(|(version, chksum, key, typekey, spans, timeout_s, write)| {
            let iovec = spans.into_iter().map(|(offset, len)| IoSpan { offset, len }).collect();
            let v = VecIo { version, chksum, key, typekey, iovec, timeout_s };
            if write {
                Request::VecWrite(v)
            } else {
                Request::VecRead(v)
            }
        });
    let mcopy = (arb_version(), any::<i64>())
        .prop_map(|(version, buflen)| Request::Mcopy(Mcopy { version, buflen }));
    prop_oneof![rename, split, merge, query, vec_io, mcopy]
}

pub(crate) fn arb_request() -> impl Strategy<Value = Request> {
    let store = (arb_version(), arb_chksum(), arb_key(), arb_typekey(), any::<i64>(), any::<i64>())
        .prop_map(|(version, chksum, key, typekey, len, timeout_s)| {
            Request::Store(Store { version, chksum, key, typekey, len, timeout_s })
        });
    prop_oneof![
        arb_allocate(),
        store,
        arb_range_io().prop_map(Request::Write),
        arb_range_io().prop_map(Request::Load),
        arb_manage(),
        arb_status(),
        arb_depot_copy().prop_map(Request::Send),
        arb_depot_copy().prop_map(Request::PhoebusSend),
        arb_transfer().prop_map(Request::Push),
        arb_transfer().prop_map(Request::Pull),
        arb_alias(),
        arb_misc(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_request_round_trips(req in arb_request()) {
        crate::proto::fuzz::check_request_round_trip(&req);
    }

    #[test]
    fn debug_never_shows_keys(req in arb_request()) {
        let dbg = format!("{req:?}");
        let mut line = Vec::new();
        req.encode(&mut line);
        for tok in crate::proto::frame::tokens(&line) {
            if let Ok(kr) = KeyRef::parse(std::str::from_utf8(tok).unwrap_or("/")) {
                if kr.key.len() >= 8 && kr.rid.is_some() {
                    prop_assert!(!dbg.contains(&kr.to_token()), "{}", dbg);
                }
            }
        }
    }

    #[test]
    fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        crate::proto::fuzz::parse_request(&line);
    }

    #[test]
    fn parse_never_panics_on_tokenish_lines(
        toks in proptest::collection::vec(prop_oneof!["[0-9]{1,3}", "-?[0-9]{1,20}", "[0-9]#[a-z]{1,4}", "ibp://h:1/0#k/1/READ", "[a-z]{1,3}"], 0..16)
    ) {
        crate::proto::fuzz::parse_request(toks.join(" ").as_bytes());
    }

    #[test]
    fn mcopy_round_trips(
        version in arb_version(),
        key in arb_key(),
        targets in proptest::collection::vec(arb_cap(), 1..5),
        typekey in arb_typekey(),
        nums in (any::<i64>(), any::<i64>(), any::<i64>(), any::<i32>()),
        per in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<i32>(), any::<i32>()), 5),
    ) {
        let n = targets.len();
        let m = McopyLine {
            version,
            key,
            typekey,
            offset: nums.0,
            size: nums.1,
            src_sync_s: nums.2,
            target_syncs_s: per.iter().take(n).map(|p| p.0).collect(),
            target_timeouts_s: per.iter().take(n).map(|p| p.1).collect(),
            options: per.iter().take(n).map(|p| p.2).collect(),
            ports: per.iter().take(n).map(|p| p.3).collect(),
            service: nums.3,
            targets,
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        prop_assert_eq!(parse_mcopy_line(&out), Ok(m));
    }
}
