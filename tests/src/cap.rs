//! Capability URLs as the depot issues them, `ibp://HOST:PORT/RID#KEY/TYPEKEY/READ|WRITE|MANAGE`,
//! and the two tokens (`RID#KEY TYPEKEY`) a request carries instead of the URL.

use std::fmt;

/// Which right a capability grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    Read,
    Write,
    Manage,
}

impl CapKind {
    fn word(self) -> &'static str {
        match self {
            CapKind::Read => "READ",
            CapKind::Write => "WRITE",
            CapKind::Manage => "MANAGE",
        }
    }
}

/// One parsed capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// The URL exactly as the depot sent it.
    pub url: String,
    pub host: String,
    /// The shard port the depot named (base port + 1 + shard).
    pub port: u16,
    pub rid: String,
    /// The secret part, after `#`: what must never appear in a log.
    pub key: String,
    pub typekey: String,
    pub kind: CapKind,
}

impl Cap {
    /// Parses a capability URL, checking every field the protocol fixes.
    pub fn parse(url: &str, kind: CapKind) -> Result<Cap, String> {
        let rest = url.strip_prefix("ibp://").ok_or_else(|| format!("{url:?}: not ibp://"))?;
        let fields: Vec<&str> = rest.split('/').collect();
        if fields.len() != 4 {
            return Err(format!("{url:?}: {} '/'-fields after ibp://, want 4", fields.len()));
        }
        let (host, port) =
            fields[0].rsplit_once(':').ok_or_else(|| format!("{url:?}: no host:port"))?;
        let port: u16 = port.parse().map_err(|e| format!("{url:?}: port: {e}"))?;
        let (rid, key) =
            fields[1].split_once('#').ok_or_else(|| format!("{url:?}: no RID#KEY field"))?;
        if rid.is_empty() || key.is_empty() {
            return Err(format!("{url:?}: empty RID or key"));
        }
        if fields[3] != kind.word() {
            return Err(format!("{url:?}: last field {:?}, want {}", fields[3], kind.word()));
        }
        Ok(Cap {
            url: url.to_string(),
            host: host.to_string(),
            port,
            rid: rid.to_string(),
            key: key.to_string(),
            typekey: fields[2].to_string(),
            kind,
        })
    }

    /// The two request tokens, `RID#KEY TYPEKEY`.
    pub fn wire(&self) -> String {
        format!("{}#{} {}", self.rid, self.key, self.typekey)
    }

    /// The shard index this capability names, given the depot's base port.
    pub fn shard(&self, base_port: u16) -> usize {
        assert!(
            self.port > base_port,
            "cap port {} is not a shard port above base {base_port}",
            self.port
        );
        usize::from(self.port - base_port - 1)
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// The three capabilities one ALLOCATE returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub read: Cap,
    pub write: Cap,
    pub manage: Cap,
}

impl Caps {
    /// Parses an ALLOCATE reply line `1 <read> <write> <manage>`.
    pub fn parse_reply(line: &str) -> Result<Caps, String> {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() != 4 || t[0] != "1" {
            return Err(format!("ALLOCATE reply {line:?}: want `1 <read> <write> <manage>`"));
        }
        let caps = Caps {
            read: Cap::parse(t[1], CapKind::Read)?,
            write: Cap::parse(t[2], CapKind::Write)?,
            manage: Cap::parse(t[3], CapKind::Manage)?,
        };
        let keys = [&caps.read.key, &caps.write.key, &caps.manage.key];
        if keys[0] == keys[1] || keys[1] == keys[2] || keys[0] == keys[2] {
            return Err(format!("ALLOCATE reply {line:?}: the three keys are not distinct"));
        }
        Ok(caps)
    }

    /// The three secret keys.
    pub fn keys(&self) -> [&str; 3] {
        [&self.read.key, &self.write.key, &self.manage.key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_accre_style_cap() {
        let c = Cap::parse(
            "ibp://127.0.0.1:6714/1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W/14391562478771907151/READ",
            CapKind::Read,
        )
        .expect("valid cap");
        assert_eq!(c.port, 6714);
        assert_eq!(c.rid, "1");
        assert_eq!(c.key, "fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W");
        assert_eq!(c.wire(), "1#fG2haQCblxm9YBMg8ycCNaDIqfjPYe-W 14391562478771907151");
        assert_eq!(c.shard(6712), 1);
    }

    #[test]
    fn rejects_wrong_kind_and_shape() {
        assert!(Cap::parse("ibp://h:1/1#k/2/READ", CapKind::Write).is_err());
        assert!(Cap::parse("ibp://h:1/1#k/2/x/READ", CapKind::Read).is_err());
        assert!(Cap::parse("ibp://h:1/k/2/READ", CapKind::Read).is_err());
        assert!(Caps::parse_reply("-4 ").is_err());
        assert!(Caps::parse_reply(
            "1 ibp://h:1/1#a/0/READ ibp://h:1/1#a/0/WRITE ibp://h:1/1#c/0/MANAGE"
        )
        .is_err());
    }
}
