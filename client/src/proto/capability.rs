//! Capabilities: the `ibp://host:port/RID#key/typekey/KIND` URLs and the `RID#key` request token.
//!
//! A capability is a bearer secret, so every type here that holds a key has a `Debug` that
//! redacts it; only [`Capability::to_url`] / `Display` print the whole URL, for the places
//! that must hand it to a user (stdout of `ibp allocate`, an exNode). Every field is bounded
//! (PROTOCOL.md §4: RIDs up to 127 chars in ACCRE; keys are 32 base64 chars in ACCRE and
//! `IBP-…` in LoCI) and checked before anything is stored, so a hostile URL cannot make us
//! allocate more than [`MAX_CAP_URL_BYTES`].

use std::fmt;

/// Longest host name (DNS limit).
pub const MAX_HOST_BYTES: usize = 255;
/// Longest resource id (ACCRE `rid.c`).
pub const MAX_RID_BYTES: usize = 127;
/// Longest key; ACCRE issues 32, LoCI fewer, so 256 leaves room for other depots.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest typekey; ACCRE issues up to 20 digits, LoCI and libdlt short words.
pub const MAX_TYPEKEY_BYTES: usize = 64;
/// Longest whole URL we look at: the sum of the field limits plus separators, rounded up.
pub const MAX_CAP_URL_BYTES: usize = 1024;

/// The three capability types; the wire `captype` is 1/2/3 (DLS `ibp_ClientLib.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapKind {
    /// Load, send, push: the read key.
    Read,
    /// Store, write, pull into: the write key.
    Write,
    /// Probe, change, refcounts, checksums, alias, split, merge: the manage key.
    Manage,
}

impl CapKind {
    /// The wire captype (`READCAP=1`, `WRITECAP=2`, `MANAGECAP=3`).
    pub const fn captype(self) -> i32 {
        match self {
            CapKind::Read => 1,
            CapKind::Write => 2,
            CapKind::Manage => 3,
        }
    }

    /// The kind for a wire captype.
    pub const fn from_captype(captype: i32) -> Option<CapKind> {
        match captype {
            1 => Some(CapKind::Read),
            2 => Some(CapKind::Write),
            3 => Some(CapKind::Manage),
            _ => None,
        }
    }

    /// The last URL field: `READ`, `WRITE` or `MANAGE`.
    pub const fn word(self) -> &'static str {
        match self {
            CapKind::Read => "READ",
            CapKind::Write => "WRITE",
            CapKind::Manage => "MANAGE",
        }
    }

    /// Parses the URL word, ignoring ASCII case (clients differ in what they write).
    pub fn from_word(word: &str) -> Option<CapKind> {
        [CapKind::Read, CapKind::Write, CapKind::Manage]
            .into_iter()
            .find(|k| k.word().eq_ignore_ascii_case(word))
    }
}

/// Why a capability URL or key token was refused. Never carries the input: it may be a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapParseError {
    /// Longer than [`MAX_CAP_URL_BYTES`].
    TooLong,
    /// Does not start with `ibp://`.
    BadScheme,
    /// Host empty, too long, bad characters or unbalanced brackets.
    BadHost,
    /// Port missing, not a number, or 0.
    BadPort,
    /// Not exactly `RID#key/typekey/KIND` after the authority.
    WrongFieldCount,
    /// `RID#` missing (capability URLs always carry it), empty, too long or bad characters.
    BadRid,
    /// Key empty, too long or with characters outside `[A-Za-z0-9+=_.-]`.
    BadKey,
    /// Typekey empty, too long or with bad characters.
    BadTypekey,
    /// Last field is not READ, WRITE or MANAGE.
    BadKind,
}

impl fmt::Display for CapParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            CapParseError::TooLong => "capability is too long",
            CapParseError::BadScheme => "capability does not start with ibp://",
            CapParseError::BadHost => "capability has an invalid host",
            CapParseError::BadPort => "capability has an invalid port",
            CapParseError::WrongFieldCount => {
                "capability is not of the form ibp://HOST:PORT/RID#KEY/TYPEKEY/KIND"
            }
            CapParseError::BadRid => "capability has a missing or invalid RID",
            CapParseError::BadKey => "capability has an invalid key",
            CapParseError::BadTypekey => "capability has an invalid typekey",
            CapParseError::BadKind => "capability kind is not READ, WRITE or MANAGE",
        };
        f.write_str(what)
    }
}

impl std::error::Error for CapParseError {}

/// True for a key: 1..=256 bytes of `[A-Za-z0-9+=_.-]` (never `/`, `#`, space or control).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'_' | b'=' | b'.'))
}

/// True for a RID: 1..=127 printable ASCII bytes other than `/` and `#`.
pub fn is_valid_rid(rid: &str) -> bool {
    !rid.is_empty() && rid.len() <= MAX_RID_BYTES && rid.bytes().all(is_field_byte)
}

/// True for a typekey: 1..=64 printable ASCII bytes other than `/` and `#`.
pub fn is_valid_typekey(typekey: &str) -> bool {
    !typekey.is_empty() && typekey.len() <= MAX_TYPEKEY_BYTES && typekey.bytes().all(is_field_byte)
}

/// True for a host as stored (IPv6 without brackets): a DNS name, IPv4 or IPv6 literal.
pub fn is_valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_HOST_BYTES {
        return false;
    }
    if host.contains(':') {
        // IPv6 literal, optionally with a zone (`fe80::1%eth0`).
        let (addr, zone) = host.split_once('%').unwrap_or((host, ""));
        !addr.is_empty()
            && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            && zone.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    } else {
        host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    }
}

fn is_field_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'/' && b != b'#'
}

/// A full capability as issued by a depot.
///
/// Fields are public for pattern matching; values built by hand must pass [`Capability::new`]
/// (or [`Capability::validate`]) before they are printed, or the URL may not parse back.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Capability {
    /// Depot host as the client should reach it; an IPv6 literal without brackets.
    pub host: String,
    /// Depot TCP port (the shard's own port in our depot).
    pub port: u16,
    /// Resource id; ACCRE needs it in every key token.
    pub rid: String,
    /// The secret.
    pub key: String,
    /// ACCRE ignores it, LoCI checks it; kept verbatim.
    pub typekey: String,
    /// Which of the three capabilities this is.
    pub kind: CapKind,
}

impl Capability {
    /// Builds a capability, checking every field's bounds and characters.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        rid: impl Into<String>,
        key: impl Into<String>,
        typekey: impl Into<String>,
        kind: CapKind,
    ) -> Result<Capability, CapParseError> {
        let cap = Capability {
            host: host.into(),
            port,
            rid: rid.into(),
            key: key.into(),
            typekey: typekey.into(),
            kind,
        };
        cap.validate()?;
        Ok(cap)
    }

    /// Checks the field invariants that [`Capability::parse`] guarantees.
    pub fn validate(&self) -> Result<(), CapParseError> {
        if !is_valid_host(&self.host) {
            return Err(CapParseError::BadHost);
        }
        if self.port == 0 {
            return Err(CapParseError::BadPort);
        }
        if !is_valid_rid(&self.rid) {
            return Err(CapParseError::BadRid);
        }
        if !is_valid_key(&self.key) {
            return Err(CapParseError::BadKey);
        }
        if !is_valid_typekey(&self.typekey) {
            return Err(CapParseError::BadTypekey);
        }
        Ok(())
    }

    /// Parses `ibp://<host>:<port>/<RID>#<key>/<typekey>/<KIND>` (IPv6 host in brackets).
    pub fn parse(url: &str) -> Result<Capability, CapParseError> {
        if url.len() > MAX_CAP_URL_BYTES {
            return Err(CapParseError::TooLong);
        }
        let rest = strip_scheme(url).ok_or(CapParseError::BadScheme)?;
        let (authority, path) = rest.split_once('/').ok_or(CapParseError::WrongFieldCount)?;
        let (host, port) = parse_authority(authority)?;
        let mut fields = path.split('/');
        let (Some(key_field), Some(typekey), Some(kind), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(CapParseError::WrongFieldCount);
        };
        let (rid, key) = key_field.split_once('#').ok_or(CapParseError::BadRid)?;
        if !is_valid_rid(rid) {
            return Err(CapParseError::BadRid);
        }
        if !is_valid_key(key) {
            return Err(CapParseError::BadKey);
        }
        if !is_valid_typekey(typekey) {
            return Err(CapParseError::BadTypekey);
        }
        let kind = CapKind::from_word(kind).ok_or(CapParseError::BadKind)?;
        Ok(Capability {
            host: host.to_owned(),
            port,
            rid: rid.to_owned(),
            key: key.to_owned(),
            typekey: typekey.to_owned(),
            kind,
        })
    }

    /// The full URL, secret included.
    pub fn to_url(&self) -> String {
        self.to_string()
    }

    /// The `RID#key` token a request for this capability carries.
    pub fn key_ref(&self) -> KeyRef {
        KeyRef { rid: Some(self.rid.clone()), key: self.key.clone() }
    }

    /// `host:port` (IPv6 in brackets), suitable for connecting and for messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn strip_scheme(url: &str) -> Option<&str> {
    let scheme = url.get(..6)?;
    scheme.eq_ignore_ascii_case("ibp://").then(|| &url[6..])
}

fn parse_authority(authority: &str) -> Result<(&str, u16), CapParseError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(CapParseError::BadHost)?;
        if !host.contains(':') {
            return Err(CapParseError::BadHost);
        }
        (host, after.strip_prefix(':').ok_or(CapParseError::BadPort)?)
    } else {
        let (host, port) = authority.split_once(':').ok_or(CapParseError::BadPort)?;
        if host.contains(['[', ']']) {
            return Err(CapParseError::BadHost);
        }
        (host, port)
    };
    if !is_valid_host(host) {
        return Err(CapParseError::BadHost);
    }
    Ok((host, parse_port(port)?))
}

fn parse_port(port: &str) -> Result<u16, CapParseError> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CapParseError::BadPort);
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(CapParseError::BadPort),
    }
}

impl std::str::FromStr for Capability {
    type Err = CapParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::parse(s)
    }
}

impl fmt::Display for Capability {
    /// The full URL, secret included: use only where the user asked for the capability.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ibp://{}/{}#{}/{}/{}",
            self.authority(),
            self.rid,
            self.key,
            self.typekey,
            self.kind.word()
        )
    }
}

impl fmt::Debug for Capability {
    /// Redacted: the key and typekey never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ibp://{}/{}#<redacted>/…/{}", self.authority(), self.rid, self.kind.word())
    }
}

/// The `RID#key` token of a request (PROTOCOL.md §2, §4). LoCI also sends a bare key
/// meaning its default resource, so the RID is optional here.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    /// The resource id before `#`; `None` for the LoCI bare-key form.
    pub rid: Option<String>,
    /// The secret.
    pub key: String,
}

impl KeyRef {
    /// Builds a key reference, checking bounds and characters.
    pub fn new(rid: Option<String>, key: impl Into<String>) -> Result<KeyRef, CapParseError> {
        let kr = KeyRef { rid, key: key.into() };
        kr.validate()?;
        Ok(kr)
    }

    /// Checks the invariants [`KeyRef::parse`] guarantees.
    pub fn validate(&self) -> Result<(), CapParseError> {
        if let Some(rid) = &self.rid {
            if !is_valid_rid(rid) {
                return Err(CapParseError::BadRid);
            }
        }
        if !is_valid_key(&self.key) {
            return Err(CapParseError::BadKey);
        }
        Ok(())
    }

    /// Parses `RID#key` or a bare `key`.
    pub fn parse(token: &str) -> Result<KeyRef, CapParseError> {
        if token.len() > MAX_RID_BYTES + 1 + MAX_KEY_BYTES {
            return Err(CapParseError::TooLong);
        }
        let (rid, key) = match token.split_once('#') {
            Some((rid, key)) => (Some(rid), key),
            None => (None, token),
        };
        if let Some(rid) = rid {
            if !is_valid_rid(rid) {
                return Err(CapParseError::BadRid);
            }
        }
        if !is_valid_key(key) {
            return Err(CapParseError::BadKey);
        }
        Ok(KeyRef { rid: rid.map(str::to_owned), key: key.to_owned() })
    }

    /// Appends the wire token (`RID#key` or `key`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(rid) = &self.rid {
            out.extend_from_slice(rid.as_bytes());
            out.push(b'#');
        }
        out.extend_from_slice(self.key.as_bytes());
    }

    /// The wire token as a string (contains the secret: do not log it).
    pub fn to_token(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rid {
            Some(rid) => write!(f, "KeyRef({rid}#<redacted>)"),
            None => f.write_str("KeyRef(<redacted>)"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    const ACCRE: &str =
        "ibp://127.0.0.1:6714/1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/READ";

    #[test]
    fn parses_observed_accre_cap() {
        let cap = Capability::parse(ACCRE).expect("observed cap parses");
        assert_eq!(cap.host, "127.0.0.1");
        assert_eq!(cap.port, 6714);
        assert_eq!(cap.rid, "1");
        assert_eq!(cap.key, "fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W");
        assert_eq!(cap.typekey, "14391562478771907151");
        assert_eq!(cap.kind, CapKind::Read);
        assert_eq!(cap.to_url(), ACCRE);
        assert_eq!(cap.key_ref().to_token(), "1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W");
    }

    #[test]
    fn parses_loci_cap_and_ipv6() {
        let cap = Capability::parse("ibp://127.0.0.1:6720/0#IBP-yBYB+x=1/534914897/WRITE")
            .expect("LoCI cap parses");
        assert_eq!(cap.kind, CapKind::Write);
        assert_eq!(cap.key, "IBP-yBYB+x=1");
        let v6 = Capability::parse("ibp://[::1]:6714/0#abc/1/manage").expect("IPv6 parses");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.kind, CapKind::Manage);
        assert_eq!(v6.to_url(), "ibp://[::1]:6714/0#abc/1/MANAGE");
    }

    #[test]
    fn debug_redacts_key() {
        let cap = Capability::parse(ACCRE).expect("parses");
        let dbg = format!("{cap:?}");
        assert!(!dbg.contains("fG2haQ"), "{dbg}");
        assert!(!dbg.contains("14391562478771907151"), "{dbg}");
        assert_eq!(dbg, "ibp://127.0.0.1:6714/1#<redacted>/…/READ");
        let kr = format!("{:?}", cap.key_ref());
        assert!(!kr.contains("fG2haQ"), "{kr}");
    }

    #[test]
    fn rejects_malformed() {
        use CapParseError::*;
        let cases: &[(&str, CapParseError)] = &[
            ("http://h:1/0#k/1/READ", BadScheme),
            ("ibp://h/0#k/1/READ", BadPort),
            ("ibp://h:0/0#k/1/READ", BadPort),
            ("ibp://h:65536/0#k/1/READ", BadPort),
            ("ibp://:1/0#k/1/READ", BadHost),
            ("ibp://[::1/0#k/1/READ", BadHost),
            ("ibp://h:1/0#k/1", WrongFieldCount),
            ("ibp://h:1/0#k/1/READ/", WrongFieldCount),
            ("ibp://h:1/k/1/READ", BadRid),
            ("ibp://h:1/#k/1/READ", BadRid),
            ("ibp://h:1/0#/1/READ", BadKey),
            ("ibp://h:1/0#a b/1/READ", BadKey),
            ("ibp://h:1/0#a#b/1/READ", BadKey),
            ("ibp://h:1/0#k\0/1/READ", BadKey),
            ("ibp://h:1/0#k//READ", BadTypekey),
            ("ibp://h:1/0#k/1/ALL", BadKind),
        ];
        for (url, want) in cases {
            assert_eq!(Capability::parse(url), Err(*want), "{url:?}");
        }
        let long_key = format!("ibp://h:1/0#{}/1/READ", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(Capability::parse(&long_key), Err(BadKey));
        let huge = format!("ibp://h:1/0#{}/1/READ", "k".repeat(5000));
        assert_eq!(Capability::parse(&huge), Err(TooLong));
        let max_key = format!("ibp://h:1/0#{}/1/READ", "k".repeat(MAX_KEY_BYTES));
        assert!(Capability::parse(&max_key).is_ok());
    }

    #[test]
    fn key_ref_forms() {
        let kr = KeyRef::parse("12#abc").expect("parses");
        assert_eq!(kr.rid.as_deref(), Some("12"));
        assert_eq!(kr.key, "abc");
        let loci = KeyRef::parse("IBP-abc").expect("bare key parses");
        assert_eq!(loci.rid, None);
        assert_eq!(loci.to_token(), "IBP-abc");
        assert_eq!(KeyRef::parse("#abc"), Err(CapParseError::BadRid));
        assert_eq!(KeyRef::parse("1#"), Err(CapParseError::BadKey));
        assert_eq!(KeyRef::parse("1#a/b"), Err(CapParseError::BadKey));
        assert_eq!(KeyRef::parse(&"a".repeat(1000)), Err(CapParseError::TooLong));
    }

    pub(crate) fn arb_host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9.-]{0,30}",
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            "[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}",
        ]
    }

    proptest! {
        #[test]
        fn url_round_trips(
            host in arb_host(),
            port in 1u16..,
            rid in "[!-~&&[^/#]]{1,127}",
            key in "[A-Za-z0-9+=_.-]{1,256}",
            typekey in "[!-~&&[^/#]]{1,64}",
            kind in prop_oneof![Just(CapKind::Read), Just(CapKind::Write), Just(CapKind::Manage)],
        ) {
            let cap = Capability::new(host, port, rid, key, typekey, kind).expect("valid by construction");
            let url = cap.to_url();
            prop_assert_eq!(Capability::parse(&url), Ok(cap.clone()));
            let redacted = format!("ibp://{}/{}#<redacted>/…/{}", cap.authority(), cap.rid, kind.word());
            prop_assert_eq!(format!("{cap:?}"), redacted);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            if let Ok(cap) = Capability::parse(&s) {
                prop_assert_eq!(Capability::parse(&cap.to_url()), Ok(cap));
            }
        }
    }
}
