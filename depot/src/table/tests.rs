//! Table semantics against hand-worked cases and a replay model.

use super::*;
use crate::journal::record::Record;

fn policy() -> ResourcePolicy {
    ResourcePolicy {
        max_duration_s: 3600,
        max_alloc_bytes: 1 << 20,
        admission_factor: 1.0,
        checksum_block_bytes: 65536,
    }
}

fn table(capacity: u64) -> Table {
    Table::new(3, vec![Region::new(policy(), capacity)])
}

fn secret() -> DepotSecret {
    DepotSecret([9; 32])
}

fn counter_fill() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(7);
            *x = n;
        }
    }
}

fn req(d: Durability, size: u64, duration_s: i64) -> AllocRequest {
    AllocRequest { resource: 0, durability: d, duration_s, size, digest: None }
}

#[test]
fn allocate_find_and_expire() {
    let mut t = table(1 << 20);
    let mut fill = counter_fill();
    let mut zeroed = Vec::new();
    let g = t
        .allocate(req(Durability::Hard, 5000, 10), &secret(), 100, &mut fill, &mut |r, e| {
            zeroed.push((r, e))
        })
        .expect("fits");
    assert_eq!(crate::keys::shard_of(&g.keys[0]), Some(3));
    let a = t.find(&secret(), KeyKind::Read, &g.keys[0], 100).expect("live");
    assert_eq!((a.read_refs, a.write_refs, a.size, a.max_size), (1, 0, 0, 5000));
    assert_eq!(
        t.find(&secret(), KeyKind::Write, &g.keys[0], 100).err(),
        Some(Lookup::NotFound),
        "wrong right"
    );
    assert_eq!(t.find_any(&secret(), &g.keys[2], 100).map(|(_, k)| k).ok(), Some(KeyKind::Manage));
    assert!(t.find(&secret(), KeyKind::Read, &g.keys[0], 110).is_err(), "expired at expires_at");
    assert_eq!(t.expired(109, 10), Vec::<u64>::new());
    assert_eq!(t.expired(110, 10), vec![g.id]);
    t.remove(g.id, &mut |r, e| zeroed.push((r, e)));
    assert_eq!(zeroed.len(), 1, "space is zeroed before reuse");
    assert_eq!(t.regions[0].free_bytes(), 1 << 20);
}

#[test]
fn durations_and_sizes() {
    let mut t = table(1 << 20);
    let mut fill = counter_fill();
    let mut z = |_: u16, _: Extent| {};
    let s = secret();
    assert_eq!(
        t.allocate(req(Durability::Hard, 0, 10), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::InvalidParameter)
    );
    assert_eq!(
        t.allocate(req(Durability::Hard, 10, 0), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::InvalidParameter)
    );
    assert_eq!(
        t.allocate(req(Durability::Hard, 10, 3601), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::LongDuration)
    );
    assert_eq!(
        t.allocate(req(Durability::Hard, (1 << 20) + 1, 10), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::Policy)
    );
    let g =
        t.allocate(req(Durability::Hard, 10, -1), &s, 50, &mut fill, &mut z).expect("max duration");
    assert_eq!(t.get(g.id).map(|a| a.expires_at), Some(3650));
}

#[test]
fn admission_curve_shrinks_with_free_space() {
    let mut p = policy();
    p.admission_factor = 0.5;
    let mut t = Table::new(0, vec![Region::new(p, 1 << 20)]);
    let mut fill = counter_fill();
    let mut z = |_: u16, _: Extent| {};
    let s = secret();
    // K = 0.5 × free × max_duration: half the space for the full lease is exactly on the curve.
    t.allocate(req(Durability::Hard, 1 << 19, 3600), &s, 0, &mut fill, &mut z)
        .expect("on the curve");
    // Now free is halved, so the same request is over the curve although it would fit.
    assert_eq!(
        t.allocate(req(Durability::Hard, 1 << 19, 3600), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::Policy)
    );
    // A smaller or shorter request is still under it.
    t.allocate(req(Durability::Hard, 1 << 18, 3600), &s, 0, &mut fill, &mut z).expect("quarter");
    t.allocate(req(Durability::Hard, 1 << 18, 100), &s, 0, &mut fill, &mut z).expect("short lease");
    assert_eq!(
        t.allocate(req(Durability::Hard, 4096, 100), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::NoSpace)
    );
}

#[test]
fn hard_revokes_soft_oldest_first() {
    let mut t = table(64 * 4096);
    let mut fill = counter_fill();
    let s = secret();
    let mut z = |_: u16, _: Extent| {};
    let old = t
        .allocate(req(Durability::Soft, 32 * 4096, 100), &s, 0, &mut fill, &mut z)
        .expect("soft 1");
    let young = t
        .allocate(req(Durability::Soft, 32 * 4096, 100), &s, 0, &mut fill, &mut z)
        .expect("soft 2");
    assert_eq!(
        t.allocate(req(Durability::Soft, 4096, 100), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::NoSpace),
        "soft never revokes soft"
    );
    assert!(t.may_revoke(0, 16 * 4096, Durability::Hard), "full: a hard request may revoke");
    assert!(!t.may_revoke(0, 16 * 4096, Durability::Soft), "soft never revokes");
    let mut zeroed = 0;
    let g = t
        .allocate(req(Durability::Hard, 16 * 4096, 100), &s, 0, &mut fill, &mut |_, _| zeroed += 1)
        .expect("revokes");
    assert_eq!(g.revoked, vec![old.id]);
    assert!(!t.may_revoke(0, 16 * 4096, Durability::Hard), "the revoked run's rest holds it");
    assert!(t.may_revoke(0, 17 * 4096, Durability::Hard), "one block more than is free");
    assert_eq!(zeroed, 1);
    assert!(t.get(young.id).is_some());
    assert!(matches!(g.records[0], Record::Delete { id } if id == old.id));
}

#[test]
fn revocation_skips_allocations_in_use() {
    let mut t = table(64 * 4096);
    let mut fill = counter_fill();
    let s = secret();
    let mut z = |_: u16, _: Extent| {};
    let old = t
        .allocate(req(Durability::Soft, 32 * 4096, 100), &s, 0, &mut fill, &mut z)
        .expect("soft 1");
    let young = t
        .allocate(req(Durability::Soft, 32 * 4096, 100), &s, 0, &mut fill, &mut z)
        .expect("soft 2");
    t.pinned.insert(old.id);
    let g = t
        .allocate(req(Durability::Hard, 16 * 4096, 100), &s, 0, &mut fill, &mut z)
        .expect("revokes");
    assert_eq!(g.revoked, vec![young.id], "the busy older one is passed by");
    t.pinned.insert(g.id);
    t.pinned.insert(young.id);
    assert_eq!(
        t.allocate(req(Durability::Hard, 48 * 4096, 100), &s, 0, &mut fill, &mut z).err(),
        Some(AllocError::NoSpace),
        "only busy soft allocations left"
    );
}

#[test]
fn meta_changes_grow_and_shrink_extents() {
    let mut t = table(64 * 4096);
    let mut fill = counter_fill();
    let mut z = |_: u16, _: Extent| {};
    let g = t
        .allocate(req(Durability::Hard, 4096, 100), &secret(), 0, &mut fill, &mut z)
        .expect("fits");
    let mut m = MetaChange::of(t.get(g.id).expect("live"));
    m.max_size = 10 * 4096;
    t.set_meta(g.id, m).expect("grows in place");
    assert_eq!(t.regions[0].free_bytes(), 54 * 4096);
    m.max_size = 2 * 4096;
    t.set_meta(g.id, m).expect("shrinks");
    assert_eq!(t.regions[0].free_bytes(), 62 * 4096);
    assert_eq!(t.regions[0].hard_bytes, 2 * 4096);
}

#[test]
fn replay_of_records_rebuilds_the_same_table() {
    let mut t = table(256 * 4096);
    let mut fill = counter_fill();
    let s = secret();
    let mut log: Vec<Record> = Vec::new();
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let d = if i % 3 == 0 { Durability::Soft } else { Durability::Hard };
        let g = t
            .allocate(req(d, 4096 * (1 + i % 5), 100 + i as i64), &s, 0, &mut fill, &mut |_, _| {})
            .expect("fits");
        log.extend(g.records);
        ids.push(g.id);
        log.extend(t.apply_data(g.id, 100 * i, 0, &[i as u32, 7]));
        if i % 4 == 1 {
            log.push(t.remove(ids[(i / 2) as usize], &mut |_, _| {}));
        }
    }
    let mut r = table(256 * 4096);
    for rec in log.iter().cloned() {
        r.replay(rec).expect("applies");
    }
    let mut s2 = table(256 * 4096);
    for rec in t.snapshot() {
        s2.replay(rec).expect("applies");
    }
    for other in [&r, &s2] {
        assert_eq!(other.snapshot(), t.snapshot());
        assert_eq!(other.regions[0].free_bytes(), t.regions[0].free_bytes());
        assert_eq!(other.regions[0].soft_bytes, t.regions[0].soft_bytes);
    }
}

/// Rebuilds a table from `log` and from `t`'s snapshot; both must equal `t`.
fn assert_replays(t: &Table, log: &[Record], capacity: u64) {
    let mut r = table(capacity);
    for rec in log.iter().cloned() {
        r.replay(rec).expect("applies");
    }
    let mut s2 = table(capacity);
    for rec in t.snapshot() {
        s2.replay(rec).expect("applies");
    }
    for other in [t, &r, &s2] {
        assert_eq!(other.snapshot(), t.snapshot());
        assert_eq!(other.regions[0].free_bytes(), t.regions[0].free_bytes());
        assert_eq!(other.aliases, t.aliases);
        // The per-region count STATUS publishes matches the table, live and replayed.
        assert_eq!(other.regions[0].allocations, other.iter().count() as u64);
    }
}

#[test]
fn split_merge_alias_rekey_and_digests_replay() {
    let cap = 256 * 4096;
    let mut t = table(cap);
    let mut fill = counter_fill();
    let s = secret();
    let mut log: Vec<Record> = Vec::new();
    let mut dreq = req(Durability::Hard, 100 * 4096, 600);
    dreq.digest = Some((crate::digest::DigestKind::Sha1, 8192));
    let g = t.allocate(dreq, &s, 0, &mut fill, &mut |_, _| {}).expect("fits");
    let master = g.id;
    log.extend(g.records);
    log.extend(t.apply_data(master, 5000, 0, &[1]));
    log.extend(t.apply_digests(master, 0, &[3; 20]));
    assert_eq!(t.get(master).map(|a| a.block_bytes(65536)), Some(8192));
    // Split: 30 000 bytes take 8 blocks from the end; the master keeps 92 blocks.
    let c = t.split(master, req(Durability::Soft, 30_000, 60), &s, 0, &mut fill).expect("split");
    log.extend(c.records);
    assert_eq!(t.get(master).map(|a| (a.max_size, a.extent.len)), Some((92 * 4096, 92)));
    let child = t.get(c.id).expect("child").clone();
    assert_eq!((child.max_size, child.extent.len, child.extent.start), (30_000, 8, 92));
    assert!(t.find(&s, KeyKind::Manage, &c.keys[2], 0).is_ok());
    // Too big, or more than the free space past the size: refused without change.
    let big = req(Durability::Soft, 92 * 4096, 60);
    assert_eq!(t.split(master, big, &s, 0, &mut fill).err(), Some(AllocError::NoSpace));
    // Alias of the child, and a rename of the master.
    let (aid, akeys, recs) =
        t.add_alias(c.id, Some((10, 20)), None, 0, &s, &mut fill).expect("alias");
    log.extend(recs);
    assert!(t.find_alias(&s, KeyKind::Read, &akeys[0], 0).is_ok());
    let (new_keys, rec) = t.rekey(master, &s, &mut fill).expect("rekey");
    log.push(rec);
    assert!(t.find(&s, KeyKind::Manage, &g.keys[2], 0).is_err());
    assert!(t.find(&s, KeyKind::Manage, &new_keys[2], 0).is_ok());
    assert_replays(&t, &log, cap);
    // Merge the child back: its blocks return, its alias dies with it.
    let mut zeroed = Vec::new();
    let recs = t.merge(master, c.id, &mut |_, e| zeroed.push(e)).expect("merge");
    log.extend(recs);
    assert_eq!(zeroed, vec![child.extent]);
    assert_eq!(t.get(master).map(|a| (a.max_size, a.extent.len)), Some((100 * 4096, 100)));
    assert!(t.alias(aid).is_none());
    assert_replays(&t, &log, cap);
    // Merge refusals: an allocation whose space does not follow the master's, itself.
    let spacer = t.allocate(req(Durability::Soft, 4096, 60), &s, 0, &mut fill, &mut |_, _| {});
    assert_eq!(spacer.expect("fits").records.len(), 1);
    let other = t.allocate(req(Durability::Soft, 4096, 60), &s, 0, &mut fill, &mut |_, _| {});
    let other = other.expect("fits").id;
    assert_eq!(t.merge(master, other, &mut |_, _| {}), Err(MergeError::NotMergeable));
    assert_eq!(t.merge(master, master, &mut |_, _| {}), Err(MergeError::NotMergeable));
}

#[test]
fn merge_needs_creation_refcounts_and_removal_drops_aliases() {
    let mut t = table(64 * 4096);
    let mut fill = counter_fill();
    let s = secret();
    let g = t.allocate(req(Durability::Soft, 16 * 4096, 600), &s, 0, &mut fill, &mut |_, _| {});
    let master = g.expect("fits").id;
    let c = t.split(master, req(Durability::Soft, 4096, 60), &s, 0, &mut fill).expect("split");
    let mut m = MetaChange::of(t.get(c.id).expect("child"));
    m.write_refs = 1;
    t.set_meta(c.id, m).expect("meta");
    assert_eq!(t.merge(master, c.id, &mut |_, _| {}), Err(MergeError::ChildReferenced));
    let (aid, _, _) = t.add_alias(master, None, Some(30), 0, &s, &mut fill).expect("alias");
    // The limit: expired aliases make room, live ones do not.
    for _ in 1..MAX_ALIASES_PER_ALLOCATION {
        t.add_alias(master, None, Some(10), 0, &s, &mut fill).expect("under the limit");
    }
    let full = t.add_alias(master, None, None, 5, &s, &mut fill);
    assert_eq!(full.err(), Some(AliasError::TooMany));
    let (_, _, recs) = t.add_alias(master, None, None, 10, &s, &mut fill).expect("purged");
    assert_eq!(recs.len(), MAX_ALIASES_PER_ALLOCATION, "255 expired deleted, one added");
    assert!(t.alias(aid).is_some(), "a live alias is kept");
    let _ = t.remove(master, &mut |_, _| {});
    assert!(t.alias(aid).is_none(), "aliases die with their master");
    assert!(t.aliases.is_empty() && t.aliases_of.is_empty());
}
