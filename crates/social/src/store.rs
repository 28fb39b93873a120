//! The relay's events on disk (redb): committed before the relay says OK, so an event
//! acknowledged survives `kill -9`.
//!
//! Tables: events by id (the JSON as received), a time index (`created_at` big-endian
//! then id) that queries walk newest first, an author index (pubkey, then the time key)
//! for filters that name authors and for sync, the newest id per replaceable address,
//! tombstones of deleted ids with the author who deleted them (NIP-09), so a deleted
//! event is not taken back, and a deletion naming someone else's event does nothing.
//!
//! Disk budget: every event costs its JSON plus [`INDEX_COST`] bytes. Events other
//! nodes sent are *evictable* (their own time index, oldest first); what this node's
//! clients published is not. An event that would go over the budget first pushes out
//! the oldest evictable ones; when none is left it is refused ([`Stored::Full`]).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::event::{Event, Retention};
use crate::filter::Filter;

const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("by_time");
const BY_AUTHOR: TableDefinition<&[u8], ()> = TableDefinition::new("by_author");
const EVICTABLE: TableDefinition<&[u8], ()> = TableDefinition::new("evictable");
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
const DELETED: TableDefinition<&[u8], ()> = TableDefinition::new("deleted");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The layout this code writes; a store without it gets its author index and byte
/// count built at open.
const VERSION: u64 = 2;
/// What an event's index entries are counted as, beside its JSON.
pub const INDEX_COST: u64 = 160;
/// Items one sync set may hold: a larger one is refused, not built.
pub const MAX_SYNC_ITEMS: usize = 500_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("social store: {0}")]
    Db(#[from] Box<redb::Error>),
    #[error("more than {MAX_SYNC_ITEMS} events match; narrow the filter")]
    TooMany,
}

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
store_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// Already held: nothing changed.
    Duplicate,
    /// A newer event at the same replaceable address is held: this one is not kept.
    Superseded,
    /// Its id was deleted by its author before.
    Deleted,
    /// It does not fit in the disk budget, and nothing evictable is left.
    Full,
}

/// An event to store, and whether the budget may push it out later.
pub struct Incoming<E> {
    pub event: E,
    pub evictable: bool,
}

pub struct Store {
    db: Database,
    /// Bytes of events (JSON and [`INDEX_COST`] each) the store may hold.
    budget: u64,
}

/// A deleted id, with the author whose deletion named it.
fn tombstone(id: &[u8; 32], author: &[u8; 32]) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(id);
    k[32..].copy_from_slice(author);
    k
}

fn time_key(created_at: u64, id: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&created_at.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

fn author_key(pubkey: &[u8; 32], created_at: u64, id: &[u8; 32]) -> [u8; 72] {
    let mut k = [0u8; 72];
    k[..32].copy_from_slice(pubkey);
    k[32..].copy_from_slice(&time_key(created_at, id));
    k
}

/// The address under which only the newest event is kept, for replaceable kinds.
fn address(e: &Event) -> Option<Vec<u8>> {
    let mut a = e.pubkey.to_vec();
    a.extend_from_slice(&e.kind.to_be_bytes());
    match e.retention() {
        Retention::Replaceable => Some(a),
        Retention::Addressable => {
            a.extend_from_slice(e.tag("d").unwrap_or("").as_bytes());
            Some(a)
        }
        _ => None,
    }
}

/// Not expired (NIP-40) at `now`.
fn live(e: &Event, now: u64) -> bool {
    e.expires_at().is_none_or(|t| t > now)
}

fn parse(bytes: &[u8]) -> Option<Event> {
    serde_json::from_slice(bytes).ok()
}

fn cost(json_len: usize) -> u64 {
    json_len as u64 + INDEX_COST
}

struct Tables<'t> {
    events: redb::Table<'t, &'static [u8], &'static [u8]>,
    by_time: redb::Table<'t, &'static [u8], ()>,
    by_author: redb::Table<'t, &'static [u8], ()>,
    evictable: redb::Table<'t, &'static [u8], ()>,
    latest: redb::Table<'t, &'static [u8], &'static [u8]>,
    deleted: redb::Table<'t, &'static [u8], ()>,
    meta: redb::Table<'t, &'static str, u64>,
    bytes: u64,
}

impl<'t> Tables<'t> {
    fn open(w: &'t redb::WriteTransaction) -> Result<Tables<'t>, StoreError> {
        let meta = w.open_table(META)?;
        let bytes = meta.get("bytes")?.map(|v| v.value()).unwrap_or(0);
        Ok(Tables {
            events: w.open_table(EVENTS)?,
            by_time: w.open_table(BY_TIME)?,
            by_author: w.open_table(BY_AUTHOR)?,
            evictable: w.open_table(EVICTABLE)?,
            latest: w.open_table(LATEST)?,
            deleted: w.open_table(DELETED)?,
            meta,
            bytes,
        })
    }

    fn close(mut self) -> Result<(), StoreError> {
        self.meta.insert("bytes", self.bytes)?;
        Ok(())
    }

    /// Takes a held event out of every table but `latest` (the caller's business).
    fn remove(&mut self, e: &Event, json_len: usize) -> Result<(), StoreError> {
        self.events.remove(e.id.as_slice())?;
        let t = time_key(e.created_at, &e.id);
        self.by_time.remove(t.as_slice())?;
        self.evictable.remove(t.as_slice())?;
        self.by_author
            .remove(author_key(&e.pubkey, e.created_at, &e.id).as_slice())?;
        self.bytes = self.bytes.saturating_sub(cost(json_len));
        Ok(())
    }

    /// The held event with this id, and the length of its JSON.
    fn held(&self, id: &[u8]) -> Result<Option<(Event, usize)>, StoreError> {
        Ok(self
            .events
            .get(id)?
            .and_then(|v| parse(v.value()).map(|e| (e, v.value().len()))))
    }

    /// Pushes out the oldest evictable events until `need` more bytes fit in `budget`;
    /// whether they do.
    fn make_room(&mut self, need: u64, budget: u64) -> Result<bool, StoreError> {
        while self.bytes + need > budget {
            let oldest = self.evictable.first()?.map(|(k, _)| k.value().to_vec());
            let Some(k) = oldest else { return Ok(false) };
            match self.held(&k[8..])? {
                Some((old, len)) => {
                    if let Some(addr) = address(&old)
                        && self
                            .latest
                            .get(addr.as_slice())?
                            .is_some_and(|v| v.value() == old.id.as_slice())
                    {
                        self.latest.remove(addr.as_slice())?;
                    }
                    self.remove(&old, len)?;
                }
                None => {
                    self.evictable.remove(k.as_slice())?;
                }
            }
        }
        Ok(true)
    }

    fn insert(&mut self, e: &Event, json: &str, evictable: bool) -> Result<(), StoreError> {
        self.events.insert(e.id.as_slice(), json.as_bytes())?;
        let t = time_key(e.created_at, &e.id);
        self.by_time.insert(t.as_slice(), ())?;
        if evictable {
            self.evictable.insert(t.as_slice(), ())?;
        }
        self.by_author
            .insert(author_key(&e.pubkey, e.created_at, &e.id).as_slice(), ())?;
        self.bytes += cost(json.len());
        Ok(())
    }

    fn apply(&mut self, e: &Event, evictable: bool, budget: u64) -> Result<Stored, StoreError> {
        if self.events.get(e.id.as_slice())?.is_some() {
            return Ok(Stored::Duplicate);
        }
        if self
            .deleted
            .get(tombstone(&e.id, &e.pubkey).as_slice())?
            .is_some()
        {
            return Ok(Stored::Deleted);
        }
        let json = e.to_json();
        let addr = address(e);
        let mut replaced = None;
        if let Some(addr) = &addr {
            let held = self
                .latest
                .get(addr.as_slice())?
                .map(|v| v.value().to_vec());
            if let Some(old_id) = held
                && let Some((old, len)) = self.held(&old_id)?
            {
                // Newest wins; on a tie, the lowest id (NIP-01).
                if (old.created_at, std::cmp::Reverse(old.id))
                    >= (e.created_at, std::cmp::Reverse(e.id))
                {
                    return Ok(Stored::Superseded);
                }
                replaced = Some((old, len));
            }
        }
        let mut put_back = None;
        if let Some((old, len)) = replaced {
            let was_evictable = self
                .evictable
                .get(time_key(old.created_at, &old.id).as_slice())?
                .is_some();
            self.remove(&old, len)?;
            put_back = Some((old, was_evictable));
        }
        if !self.make_room(cost(json.len()), budget)? {
            if let Some((old, was_evictable)) = put_back {
                // What was taken out for it goes back: nothing changes.
                self.insert(&old, &old.to_json(), was_evictable)?;
            }
            return Ok(Stored::Full);
        }
        if let Some(addr) = &addr {
            self.latest.insert(addr.as_slice(), e.id.as_slice())?;
        }
        if e.kind == 5 {
            self.delete_named(e)?;
        }
        self.insert(e, &json, evictable)?;
        Ok(Stored::New)
    }

    /// NIP-09: removes the events a deletion names, if its author wrote them.
    fn delete_named(&mut self, e: &Event) -> Result<(), StoreError> {
        for t in e
            .tags
            .iter()
            .filter(|t| t.first().is_some_and(|n| n == "e"))
        {
            let mut id = [0u8; 32];
            if t.get(1)
                .is_none_or(|v| hex::decode_to_slice(v, &mut id).is_err())
            {
                continue;
            }
            match self.held(id.as_slice())? {
                // Only its author may delete an event; deletions are not deleted.
                Some((target, len)) if target.pubkey == e.pubkey && target.kind != 5 => {
                    self.remove(&target, len)?;
                    self.deleted
                        .insert(tombstone(&id, &e.pubkey).as_slice(), ())?;
                }
                Some(_) => {}
                // Not seen yet: remembered with who deleted it, so it is refused when
                // it arrives only if that is its author. Anyone can name another's
                // event in a deletion; it must not keep it out.
                None => {
                    self.deleted
                        .insert(tombstone(&id, &e.pubkey).as_slice(), ())?;
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Opens (or makes) the store, holding at most `budget` bytes of events.
    pub fn open(path: &Path, budget: u64) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)?;
        let _ = nodus_core::fsutil::restrict(path);
        let w = db.begin_write()?;
        {
            let mut t = Tables::open(&w)?;
            let version = t.meta.get("version")?.map(|v| v.value());
            if version != Some(VERSION) {
                // A store of version 1 had no author index and no byte count.
                let mut bytes = 0;
                let mut rows = Vec::new();
                for row in t.events.iter()? {
                    let (_, v) = row?;
                    if let Some(e) = parse(v.value()) {
                        bytes += cost(v.value().len());
                        rows.push(author_key(&e.pubkey, e.created_at, &e.id));
                    }
                }
                for k in rows {
                    t.by_author.insert(k.as_slice(), ())?;
                }
                t.bytes = bytes;
                t.meta.insert("version", VERSION)?;
            }
            t.close()?;
        }
        w.commit()?;
        Ok(Store { db, budget })
    }

    /// Stores a verified event (not an ephemeral one), replacing, deleting and refusing
    /// as NIP-01 and NIP-09 say. Not evictable.
    pub fn insert(&self, e: &Event) -> Result<Stored, StoreError> {
        Ok(self.insert_batch(&[Incoming {
            event: e,
            evictable: false,
        }])?[0])
    }

    /// Stores events in order in one transaction (one fsync for all): what each did.
    pub fn insert_batch<E: Borrow<Event>>(
        &self,
        batch: &[Incoming<E>],
    ) -> Result<Vec<Stored>, StoreError> {
        let w = self.db.begin_write()?;
        let outcomes = {
            let mut t = Tables::open(&w)?;
            let outcomes = batch
                .iter()
                .map(|i| t.apply(i.event.borrow(), i.evictable, self.budget))
                .collect::<Result<Vec<_>, _>>()?;
            t.close()?;
            outcomes
        };
        w.commit()?;
        Ok(outcomes)
    }

    /// The events matching any of `filters` that `keep` allows, newest first, as the
    /// JSON stored; each filter returns at most its limit of them. Expired events
    /// (NIP-40) are left out.
    pub fn query(
        &self,
        filters: &[Filter],
        now: u64,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let r = self.db.begin_read()?;
        let events = r.open_table(EVENTS)?;
        let by_time = r.open_table(BY_TIME)?;
        let by_author = r.open_table(BY_AUTHOR)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for f in filters {
            let limit = f.limit();
            let mut found: Vec<(u64, [u8; 32], String)> = Vec::new();
            // Whether the stored event `raw` is one to return (then it is found).
            let offer = |raw: &[u8], found: &mut Vec<_>| {
                let Some(e) = parse(raw) else { return false };
                let wanted = f.matches(&e) && live(&e, now) && keep(&e) && !seen.contains(&e.id);
                if wanted {
                    found.push((
                        e.created_at,
                        e.id,
                        String::from_utf8_lossy(raw).into_owned(),
                    ));
                }
                wanted
            };
            let (since, until) = (f.since.unwrap_or(0), f.until.unwrap_or(u64::MAX));
            if let Some(ids) = &f.ids {
                for id in ids {
                    if found.len() == limit {
                        break;
                    }
                    if let Some(v) = events.get(id.as_slice())? {
                        offer(v.value(), &mut found);
                    }
                }
            } else if let Some(authors) = &f.authors {
                // Each author's newest `limit` matches; the newest of all of them after.
                for a in authors {
                    let lo = author_key(a, since, &[0; 32]);
                    let hi = author_key(a, until, &[0xff; 32]);
                    let mut taken = 0;
                    for row in by_author.range(lo.as_slice()..=hi.as_slice())?.rev() {
                        if taken == limit {
                            break;
                        }
                        let (k, _) = row?;
                        if let Some(v) = events.get(&k.value()[40..])?
                            && offer(v.value(), &mut found)
                        {
                            taken += 1;
                        }
                    }
                }
                found.sort_by_key(|r| std::cmp::Reverse(r.0));
                found.truncate(limit);
            } else {
                let lo = time_key(since, &[0; 32]);
                let hi = time_key(until, &[0xff; 32]);
                for row in by_time.range(lo.as_slice()..=hi.as_slice())?.rev() {
                    if found.len() == limit {
                        break;
                    }
                    let (k, _) = row?;
                    if let Some(v) = events.get(&k.value()[8..])? {
                        offer(v.value(), &mut found);
                    }
                }
            }
            for (t, id, json) in found {
                if seen.insert(id) {
                    out.push((t, json));
                }
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(out)
    }

    /// `(created_at, id)` of every held event matching `filter` that `keep` allows,
    /// limits aside: the set a negentropy sync reconciles. At most [`MAX_SYNC_ITEMS`].
    pub fn sync_items(
        &self,
        filter: &Filter,
        now: u64,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let r = self.db.begin_read()?;
        let events = r.open_table(EVENTS)?;
        let mut items = Vec::new();
        let mut offer = |raw: &[u8]| -> Result<(), StoreError> {
            if let Some(e) = parse(raw)
                && filter.matches(&e)
                && live(&e, now)
                && keep(&e)
            {
                if items.len() == MAX_SYNC_ITEMS {
                    return Err(StoreError::TooMany);
                }
                items.push((e.created_at, e.id));
            }
            Ok(())
        };
        let (since, until) = (filter.since.unwrap_or(0), filter.until.unwrap_or(u64::MAX));
        if let Some(ids) = &filter.ids {
            for id in ids {
                if let Some(v) = events.get(id.as_slice())? {
                    offer(v.value())?;
                }
            }
        } else if let Some(authors) = &filter.authors {
            let by_author = r.open_table(BY_AUTHOR)?;
            for a in authors {
                let lo = author_key(a, since, &[0; 32]);
                let hi = author_key(a, until, &[0xff; 32]);
                for row in by_author.range(lo.as_slice()..=hi.as_slice())? {
                    let (k, _) = row?;
                    if let Some(v) = events.get(&k.value()[40..])? {
                        offer(v.value())?;
                    }
                }
            }
        } else {
            let by_time = r.open_table(BY_TIME)?;
            let lo = time_key(since, &[0; 32]);
            let hi = time_key(until, &[0xff; 32]);
            for row in by_time.range(lo.as_slice()..=hi.as_slice())? {
                let (k, _) = row?;
                if let Some(v) = events.get(&k.value()[8..])? {
                    offer(v.value())?;
                }
            }
        }
        Ok(items)
    }

    /// The stored JSON of each of `ids` held and allowed by `keep`, in their order.
    pub fn get_many(
        &self,
        ids: &[[u8; 32]],
        now: u64,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let r = self.db.begin_read()?;
        let events = r.open_table(EVENTS)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(v) = events.get(id.as_slice())?
                && parse(v.value()).is_some_and(|e| live(&e, now) && keep(&e))
            {
                out.push(String::from_utf8_lossy(v.value()).into_owned());
            }
        }
        Ok(out)
    }

    /// How many stored events match any of `filters` and `keep` allows (NIP-45),
    /// limits aside.
    pub fn count(
        &self,
        filters: &[Filter],
        now: u64,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<usize, StoreError> {
        let r = self.db.begin_read()?;
        let events = r.open_table(EVENTS)?;
        let mut n = 0;
        for row in events.iter()? {
            let (_, v) = row?;
            if let Some(e) = parse(v.value())
                && live(&e, now)
                && keep(&e)
                && filters.iter().any(|f| f.matches(&e))
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Events held.
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.db.begin_read()?.open_table(EVENTS)?.len()?)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Bytes the budget counts as used.
    pub fn bytes(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .begin_read()?
            .open_table(META)?
            .get("bytes")?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Keys;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("social.redb"), u64::MAX).unwrap();
        (d, s)
    }

    fn kept<'a>(events: &[&'a Event]) -> Vec<Incoming<&'a Event>> {
        events
            .iter()
            .map(|&event| Incoming {
                event,
                evictable: false,
            })
            .collect()
    }

    fn all() -> Vec<Filter> {
        vec![Filter::default()]
    }

    fn kind(k: u16) -> Vec<Filter> {
        vec![Filter {
            kinds: Some(vec![k]),
            ..Filter::default()
        }]
    }

    #[test]
    fn queries_come_newest_first_within_limits() {
        let (_d, s) = store();
        let k = Keys::generate();
        for t in 1..=10 {
            assert_eq!(
                s.insert(&k.sign(t, 1, vec![], &t.to_string())).unwrap(),
                Stored::New
            );
        }
        let e = k.sign(3, 1, vec![], "3 again");
        let got = s
            .query(
                &[Filter {
                    limit: Some(3),
                    ..Filter::default()
                }],
                0,
                &|_| true,
            )
            .unwrap();
        let times: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![10, 9, 8]);
        let ranged = s
            .query(
                &[Filter {
                    since: Some(4),
                    until: Some(6),
                    ..Filter::default()
                }],
                0,
                &|_| true,
            )
            .unwrap();
        assert_eq!(ranged.len(), 3);
        assert_eq!(
            s.insert(&e).unwrap(),
            Stored::New,
            "same time, other content: another event"
        );
        assert_eq!(s.insert(&e).unwrap(), Stored::Duplicate);
        assert_eq!(s.count(&all(), 0, &|_| true).unwrap(), 11);
    }

    #[test]
    fn replaceable_kinds_keep_only_the_newest() {
        let (_d, s) = store();
        let k = Keys::generate();
        let old = k.sign(10, 0, vec![], r#"{"name":"old"}"#);
        let new = k.sign(20, 0, vec![], r#"{"name":"new"}"#);
        assert_eq!(s.insert(&new).unwrap(), Stored::New);
        assert_eq!(s.insert(&old).unwrap(), Stored::Superseded);
        let newer = k.sign(30, 0, vec![], r#"{"name":"newer"}"#);
        assert_eq!(s.insert(&newer).unwrap(), Stored::New);
        let got = s.query(&all(), 0, &|_| true).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].1.contains("newer"));
        // Addressable: one per d tag.
        let d = |v: &str, t| k.sign(t, 30_023, vec![vec!["d".into(), v.into()]], v);
        s.insert(&d("a", 1)).unwrap();
        s.insert(&d("b", 1)).unwrap();
        s.insert(&d("a", 2)).unwrap();
        assert_eq!(s.count(&kind(30_023), 0, &|_| true).unwrap(), 2);
    }

    #[test]
    fn deletions_remove_and_refuse_again_only_for_the_author() {
        let (_d, s) = store();
        let k = Keys::generate();
        let other = Keys::generate();
        let post = k.sign(1, 1, vec![], "oops");
        s.insert(&post).unwrap();
        let forged = other.sign(2, 5, vec![vec!["e".into(), hex::encode(post.id)]], "");
        s.insert(&forged).unwrap();
        assert_eq!(s.count(&kind(1), 0, &|_| true).unwrap(), 1);
        let del = k.sign(3, 5, vec![vec!["e".into(), hex::encode(post.id)]], "");
        s.insert(&del).unwrap();
        assert_eq!(s.count(&kind(1), 0, &|_| true).unwrap(), 0);
        assert_eq!(s.insert(&post).unwrap(), Stored::Deleted);

        // A deletion that comes first keeps the event out only if its author sent it.
        let early = k.sign(10, 1, vec![], "announced deleted before it arrives");
        let by_other = other.sign(11, 5, vec![vec!["e".into(), hex::encode(early.id)]], "");
        s.insert(&by_other).unwrap();
        assert_eq!(s.insert(&early).unwrap(), Stored::New);
        let late = k.sign(12, 1, vec![], "deleted by its author before it arrives");
        s.insert(&k.sign(13, 5, vec![vec!["e".into(), hex::encode(late.id)]], ""))
            .unwrap();
        assert_eq!(s.insert(&late).unwrap(), Stored::Deleted);
    }

    #[test]
    fn a_batch_is_applied_in_order_as_single_inserts_would_be() {
        let (_d, s) = store();
        let k = Keys::generate();
        let note = k.sign(1, 1, vec![], "once");
        let old = k.sign(5, 0, vec![], "old profile");
        let new = k.sign(6, 0, vec![], "new profile");
        let doomed = k.sign(2, 1, vec![], "doomed");
        let deletion = k.sign(3, 5, vec![vec!["e".into(), hex::encode(doomed.id)]], "");
        let outcomes = s
            .insert_batch(&kept(&[
                &note, &note, &new, &old, &doomed, &deletion, &doomed,
            ]))
            .unwrap();
        use Stored::*;
        assert_eq!(
            outcomes,
            vec![New, Duplicate, New, Superseded, New, New, Deleted]
        );
        let held: Vec<String> = s
            .query(&all(), 0, &|_| true)
            .unwrap()
            .into_iter()
            .map(|(_, j)| j)
            .collect();
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(
            held.iter()
                .all(|j| !j.contains("doomed") && !j.contains("old profile"))
        );
    }

    /// What the caller holds back (a blocked author) does not use up a filter's limit.
    #[test]
    fn held_back_events_leave_the_limit_to_others() {
        let (_d, s) = store();
        let (hidden, shown) = (Keys::generate(), Keys::generate());
        for t in 1..=5 {
            s.insert(&shown.sign(t, 1, vec![], "shown")).unwrap();
            s.insert(&hidden.sign(t + 10, 1, vec![], "hidden")).unwrap();
        }
        let keep = |e: &Event| e.pubkey != hidden.public();
        let two = [Filter {
            limit: Some(2),
            ..Filter::default()
        }];
        let got = s.query(&two, 0, &keep).unwrap();
        assert_eq!(got.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![5, 4]);
        assert_eq!(s.count(&all(), 0, &keep).unwrap(), 5);
    }

    #[test]
    fn expired_events_are_not_served() {
        let (_d, s) = store();
        let k = Keys::generate();
        s.insert(&k.sign(1, 1, vec![vec!["expiration".into(), "100".into()]], "brief"))
            .unwrap();
        assert_eq!(s.query(&all(), 99, &|_| true).unwrap().len(), 1);
        assert_eq!(s.query(&all(), 100, &|_| true).unwrap().len(), 0);
        assert_eq!(s.count(&all(), 100, &|_| true).unwrap(), 0);
    }

    fn evictable<'a>(events: &[&'a Event]) -> Vec<Incoming<&'a Event>> {
        events
            .iter()
            .map(|&event| Incoming {
                event,
                evictable: true,
            })
            .collect()
    }

    /// The budget pushes out the oldest events other nodes sent, never what this
    /// node's clients published; when nothing is left to push out, a new event is
    /// refused and nothing changes.
    #[test]
    fn the_disk_budget_evicts_oldest_from_others_and_refuses_when_full() {
        let d = tempfile::tempdir().unwrap();
        let k = Keys::generate();
        let note = |t: u64| k.sign(t, 1, vec![], &"x".repeat(200));
        let one = cost(note(100).to_json().len());
        let s = Store::open(&d.path().join("social.redb"), one * 4).unwrap();
        let own = [note(101), note(102)];
        s.insert_batch(&kept(&[&own[0], &own[1]])).unwrap();
        let theirs = [note(110), note(111)];
        s.insert_batch(&evictable(&[&theirs[0], &theirs[1]]))
            .unwrap();
        assert_eq!(s.bytes().unwrap(), one * 4);
        // A fifth pushes out the oldest of theirs (110), not the older own ones.
        let fifth = note(120);
        assert_eq!(
            s.insert_batch(&evictable(&[&fifth])).unwrap(),
            vec![Stored::New]
        );
        let held = |s: &Store| -> Vec<u64> {
            s.query(&all(), 0, &|_| true)
                .unwrap()
                .iter()
                .map(|(t, _)| *t)
                .collect()
        };
        assert_eq!(held(&s), vec![120, 111, 102, 101]);
        assert_eq!(s.bytes().unwrap(), one * 4);
        // Two own ones more: the two evictable go, then there is no room.
        s.insert(&note(130)).unwrap();
        assert_eq!(s.insert(&note(131)).unwrap(), Stored::New);
        assert_eq!(s.insert(&note(132)).unwrap(), Stored::Full);
        assert_eq!(held(&s), vec![131, 130, 102, 101]);
        // A replaceable event that cannot fit leaves the one it would replace.
        let profile = k.sign(105, 0, vec![], "short");
        assert_eq!(s.insert(&profile).unwrap(), Stored::Full);
        drop(s);
        // The count survives reopening.
        let s = Store::open(&d.path().join("social.redb"), one * 4).unwrap();
        assert_eq!(s.bytes().unwrap(), one * 4);
    }

    /// Filters by author walk the author index: the newest of each, limits across all.
    #[test]
    fn author_filters_take_the_newest_across_authors() {
        let (_d, s) = store();
        let (a, b) = (Keys::generate(), Keys::generate());
        for t in 1..=50 {
            s.insert(&a.sign(t * 2, 1, vec![], "a")).unwrap();
            s.insert(&b.sign(t * 2 + 1, 1, vec![], "b")).unwrap();
        }
        let f = |authors: Vec<[u8; 32]>, limit, until| Filter {
            authors: Some(authors),
            limit: Some(limit),
            until,
            ..Filter::default()
        };
        let times = |f: Filter| -> Vec<u64> {
            s.query(&[f], 0, &|_| true)
                .unwrap()
                .iter()
                .map(|(t, _)| *t)
                .collect()
        };
        assert_eq!(
            times(f(vec![a.public(), b.public()], 3, None)),
            vec![101, 100, 99]
        );
        assert_eq!(times(f(vec![a.public()], 2, Some(50))), vec![50, 48]);
        let items = s
            .sync_items(
                &Filter {
                    authors: Some(vec![b.public()]),
                    ..Filter::default()
                },
                0,
                &|_| true,
            )
            .unwrap();
        assert_eq!(items.len(), 50);
        assert!(items.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// A store written before the author index had it built at open.
    #[test]
    fn an_old_store_gets_its_author_index() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("social.redb");
        let k = Keys::generate();
        {
            let s = Store::open(&path, u64::MAX).unwrap();
            s.insert(&k.sign(1, 1, vec![], "old")).unwrap();
            // Back to what version 1 wrote: no author index, no count, no version.
            let w = s.db.begin_write().unwrap();
            w.delete_table(BY_AUTHOR).unwrap();
            w.delete_table(META).unwrap();
            w.commit().unwrap();
        }
        let s = Store::open(&path, u64::MAX).unwrap();
        let by_author = [Filter {
            authors: Some(vec![k.public()]),
            ..Filter::default()
        }];
        assert_eq!(s.query(&by_author, 0, &|_| true).unwrap().len(), 1);
        assert!(s.bytes().unwrap() > INDEX_COST);
    }
}
