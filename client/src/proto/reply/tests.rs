//! Reply encoders and parsers against PROTOCOL.md examples, plus round trips.

use super::*;
use crate::proto::capability::CapKind;
use proptest::prelude::*;

fn cap(kind: CapKind, key: &str) -> Capability {
    Capability::new("127.0.0.1", 6714, "1", key, "3862277", kind).expect("valid")
}

#[test]
fn accre_simple_replies() {
    let mut out = Vec::new();
    ok(&mut out);
    assert_eq!(out, b"1 \n");
    out.clear();
    error(&mut out, ErrorCode::CapNotFound);
    assert_eq!(out, b"-4 \n");
    out.clear();
    close_notice(&mut out, 0.194336);
    assert_eq!(out, b"-66 0.194336\n");
    out.clear();
    count(&mut out, 4096);
    assert_eq!(out, b"1 4096 \n");
    assert_eq!(parse_count(&out), Ok(4096));
    assert_eq!(parse_count(b"1 100\n"), Ok(100), "LoCI omits the trailing space");
    assert_eq!(parse_ok(b"1 \n"), Ok(()));
    assert_eq!(parse_ok(b"1\n"), Ok(()));
}

#[test]
fn errors_and_backoff() {
    assert_eq!(parse_status_line(b"-43 \n"), Err(ReplyError::Ibp(ErrorCode::UnknownFunction)));
    assert_eq!(parse_status_line(b"-66 0.194336\n"), Err(ReplyError::Backoff(0.194336)));
    assert_eq!(parse_status_line(b"-66\n"), Err(ReplyError::Backoff(0.0)));
    assert_eq!(parse_status_line(b"-66 nan\n"), Err(ReplyError::Backoff(0.0)));
    assert_eq!(parse_status_line(b"-1001 \n"), Err(ReplyError::UnknownCode(-1001)));
    assert_eq!(parse_count(b"-19 \n"), Err(ReplyError::Ibp(ErrorCode::WouldExceedLimit)));
    assert!(matches!(parse_status_line(b"2 \n"), Err(ReplyError::Malformed(_))));
    assert!(matches!(parse_status_line(b"ok\n"), Err(ReplyError::Malformed(_))));
    assert!(matches!(parse_status_line(b"\n"), Err(ReplyError::Malformed(_))));
    assert!(matches!(parse_count(b"1 x \n"), Err(ReplyError::Malformed(_))));
    let mut out = Vec::new();
    close_notice(&mut out, f64::INFINITY);
    assert_eq!(out, b"-66 0.000000\n");
    assert!(ReplyError::Ibp(ErrorCode::CapNotFound).to_string().contains("IBP_E_CAP_NOT_FOUND"));
}

#[test]
fn caps_reply() {
    let three = [cap(CapKind::Read, "r1"), cap(CapKind::Write, "w1"), cap(CapKind::Manage, "m1")];
    let mut out = Vec::new();
    caps(&mut out, &three);
    assert_eq!(
        out,
        b"1 ibp://127.0.0.1:6714/1#r1/3862277/READ ibp://127.0.0.1:6714/1#w1/3862277/WRITE \
ibp://127.0.0.1:6714/1#m1/3862277/MANAGE \n"
    );
    assert_eq!(parse_caps(&out), Ok(three.clone()));
    let swapped = b"1 ibp://h:1/1#w/1/WRITE ibp://h:1/1#r/1/READ ibp://h:1/1#m/1/MANAGE \n";
    assert!(matches!(parse_caps(swapped), Err(ReplyError::Malformed(_))));
    assert!(matches!(parse_caps(b"1 ibp://h:1/1#w/1/READ\n"), Err(ReplyError::Malformed(_))));
}

#[test]
fn probe_replies() {
    let p = parse_probe(b"1 1 0 4096 65536 3599 2 1 \n").expect("probe parses");
    assert_eq!(
        p,
        ProbeReply {
            read_refs: 1,
            write_refs: 0,
            size: 4096,
            max_size: 65536,
            seconds_left: 3599,
            reliability: 2,
            atype: 1
        }
    );
    let mut out = Vec::new();
    probe(&mut out, &p);
    assert_eq!(out, b"1 1 0 4096 65536 3599 2 1 \n");
    let a = parse_alias_probe(b"1 1 0 10 20 60 \n").expect("alias probe parses");
    assert_eq!((a.offset, a.len, a.seconds_left), (10, 20, 60));
    out.clear();
    alias_probe(&mut out, &a);
    assert_eq!(out, b"1 1 0 10 20 60 \n");
}

#[test]
fn chksum_info_reply() {
    let c = parse_chksum_info(b"1 4 16 65536 1 16\n").expect("observed reply parses");
    assert_eq!((c.cstype, c.digest_bytes, c.blocksize, c.nblocks, c.nbytes), (4, 16, 65536, 1, 16));
    let mut out = Vec::new();
    chksum_info(&mut out, &c);
    assert_eq!(out, b"1 4 16 65536 1 16\n");
}

#[test]
fn inq_body_and_header() {
    let body = InqBody {
        version: "1.4:1.0".into(),
        data_movers: "1".into(),
        rid: "0".into(),
        resource_type: 1,
        configured_total: 1000,
        served_total: 1000,
        used_total: 10,
        used_hard: 5,
        served_hard: 800,
        configured_hard: 800,
        allocatable_total: 990,
        allocatable_hard: 795,
        max_duration_s: 86400,
    };
    let mut out = Vec::new();
    status_inq(&mut out, &body);
    let header_len = out.iter().position(|&b| b == b'\n').expect("header") + 1;
    let n = parse_count(&out[..header_len]).expect("header parses");
    let text = &out[header_len..];
    assert_eq!(n as usize, text.len());
    assert!(text.starts_with(b"VS:1.4:1.0 DT:1  RID:0 RT:1 CT:1000 "));
    assert!(text.ends_with(b"DR:86400 RE \n"));
    assert_eq!(parse_inq_body(text), Ok(body));
    let loci = b"VS:1.4:0.4 DT:1:2:3 RID:0 RT:1 CT:5 NFU:x DR:0 RE \n";
    let parsed = parse_inq_body(loci).expect("LoCI body parses");
    assert_eq!((parsed.data_movers.as_str(), parsed.configured_total), ("1:2:3", 5));
    assert!(parse_inq_body(b"VS:1 DT:1").is_err(), "no RE");
    assert!(parse_inq_body(b"CT:x RE").is_err());
}

#[test]
fn v0_inq_reply() {
    let v = parse_v0_inq(b"4096 0 4096 0 86400 \n").expect("observed v0 line");
    assert_eq!(v.hard_mb, 4096);
    assert_eq!(v.max_duration_s, 86400);
    let mut out = Vec::new();
    v0_inq(&mut out, &v);
    assert_eq!(out, b"4096 0 4096 0 86400 \n");
    assert_eq!(parse_v0_inq(b"-29 \n"), Err(ReplyError::Ibp(ErrorCode::WrongPasswd)));
    assert!(parse_v0_inq(b"1 2 3\n").is_err());
    assert!(parse_v0_inq(b"4096 0 4096 0 86400 1.4 0.4\n").is_ok());
}

#[test]
fn res_and_version() {
    let mut out = Vec::new();
    status_res(&mut out, &["0", "1", "disk-a"]);
    assert_eq!(out, b"1 0 1 disk-a \n");
    assert_eq!(parse_res(&out), Ok(vec!["0".into(), "1".into(), "disk-a".into()]));
    out.clear();
    status_version(&mut out, "ibp-depot 0.1\nEND\nuptime 5\n");
    assert_eq!(out, b"1\nibp-depot 0.1\nuptime 5\nEND\n");
    assert!(is_version_end(b"END\n"));
    assert!(is_version_end(b"END \r\n"));
    assert!(!is_version_end(b"ENDING\n"));
}

proptest! {
    #[test]
    fn numeric_replies_round_trip(n in any::<i64>(), vals in proptest::array::uniform7(any::<i32>())) {
        let mut out = Vec::new();
        count(&mut out, n);
        prop_assert_eq!(parse_count(&out), Ok(n));
        let p = ProbeReply {
            read_refs: i64::from(vals[0]),
            write_refs: i64::from(vals[1]),
            size: n,
            max_size: i64::from(vals[2]),
            seconds_left: i64::from(vals[3]),
            reliability: vals[4],
            atype: vals[5],
        };
        out.clear();
        probe(&mut out, &p);
        prop_assert_eq!(parse_probe(&out), Ok(p));
    }

    #[test]
    fn every_error_code_round_trips(i in 0usize..66, secs in 0.0f64..3600.0) {
        let code = ErrorCode::ALL[i];
        let mut out = Vec::new();
        error(&mut out, code);
        let got = parse_status_line(&out);
        if code == ErrorCode::OutOfSockets {
            prop_assert_eq!(got, Err(ReplyError::Backoff(0.0)));
        } else {
            prop_assert_eq!(got, Err(ReplyError::Ibp(code)));
        }
        out.clear();
        close_notice(&mut out, secs);
        match parse_status_line(&out) {
            Err(ReplyError::Backoff(b)) => prop_assert!((b - secs).abs() < 1e-6),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn inq_round_trips(
        rid in "[!-~]{1,20}",
        nums in proptest::array::uniform10(any::<i64>()),
    ) {
        let body = InqBody {
            version: "1.4:1.0".into(),
            data_movers: "1".into(),
            rid,
            resource_type: nums[0],
            configured_total: nums[1],
            served_total: nums[2],
            used_total: nums[3],
            used_hard: nums[4],
            served_hard: nums[5],
            configured_hard: nums[6],
            allocatable_total: nums[7],
            allocatable_hard: nums[8],
            max_duration_s: nums[9],
        };
        let mut out = Vec::new();
        body.encode(&mut out);
        prop_assert_eq!(parse_inq_body(&out), Ok(body));
    }

    #[test]
    fn reply_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        crate::proto::fuzz::parse_reply(&data);
    }
}
