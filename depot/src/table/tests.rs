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
    AllocRequest { resource: 0, durability: d, duration_s, size }
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
    let mut zeroed = 0;
    let g = t
        .allocate(req(Durability::Hard, 16 * 4096, 100), &s, 0, &mut fill, &mut |_, _| zeroed += 1)
        .expect("revokes");
    assert_eq!(g.revoked, vec![old.id]);
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
