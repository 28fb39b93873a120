//! The relay's events on disk (redb): committed before the relay says OK, so an event
//! acknowledged survives `kill -9`.
//!
//! Tables: events by id (the JSON as received), a time index (`created_at` big-endian
//! then id) that queries walk newest first, the newest id per replaceable address, and
//! tombstones of deleted ids with the author who deleted them (NIP-09), so a deleted
//! event is not taken back, and a deletion naming someone else's event does nothing.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::event::{Event, Retention};
use crate::filter::Filter;

const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("by_time");
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
const DELETED: TableDefinition<&[u8], ()> = TableDefinition::new("deleted");

#[derive(Debug, thiserror::Error)]
#[error("social store: {0}")]
pub struct StoreError(#[from] Box<redb::Error>);

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError(Box::new(e.into()))
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
}

pub struct Store {
    db: Database,
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

struct Tables<'t> {
    events: redb::Table<'t, &'static [u8], &'static [u8]>,
    by_time: redb::Table<'t, &'static [u8], ()>,
    latest: redb::Table<'t, &'static [u8], &'static [u8]>,
    deleted: redb::Table<'t, &'static [u8], ()>,
}

impl Tables<'_> {
    fn apply(&mut self, e: &Event) -> Result<Stored, StoreError> {
        let Tables {
            events,
            by_time,
            latest,
            deleted,
        } = self;
        if events.get(e.id.as_slice())?.is_some() {
            return Ok(Stored::Duplicate);
        }
        if deleted
            .get(tombstone(&e.id, &e.pubkey).as_slice())?
            .is_some()
        {
            return Ok(Stored::Deleted);
        }
        if let Some(addr) = address(e) {
            let held = latest.get(addr.as_slice())?.map(|v| v.value().to_vec());
            if let Some(old_id) = held {
                let old = events
                    .get(old_id.as_slice())?
                    .and_then(|v| parse(v.value()));
                if let Some(old) = old {
                    // Newest wins; on a tie, the lowest id (NIP-01).
                    if (old.created_at, std::cmp::Reverse(old.id))
                        >= (e.created_at, std::cmp::Reverse(e.id))
                    {
                        return Ok(Stored::Superseded);
                    }
                    events.remove(old.id.as_slice())?;
                    by_time.remove(time_key(old.created_at, &old.id).as_slice())?;
                }
            }
            latest.insert(addr.as_slice(), e.id.as_slice())?;
        }
        if e.kind == 5 {
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
                let target = events.get(id.as_slice())?.and_then(|v| parse(v.value()));
                match target {
                    // Only its author may delete an event; deletions are not deleted.
                    Some(t) if t.pubkey == e.pubkey && t.kind != 5 => {
                        events.remove(id.as_slice())?;
                        by_time.remove(time_key(t.created_at, &t.id).as_slice())?;
                        deleted.insert(tombstone(&id, &e.pubkey).as_slice(), ())?;
                    }
                    Some(_) => {}
                    // Not seen yet: remembered with who deleted it, so it is refused
                    // when it arrives only if that is its author. Anyone can name
                    // another's event in a deletion; it must not keep it out.
                    None => {
                        deleted.insert(tombstone(&id, &e.pubkey).as_slice(), ())?;
                    }
                }
            }
        }
        events.insert(e.id.as_slice(), e.to_json().as_bytes())?;
        by_time.insert(time_key(e.created_at, &e.id).as_slice(), ())?;
        Ok(Stored::New)
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let _ = nodus_core::fsutil::restrict(path);
        let w = db.begin_write()?;
        w.open_table(EVENTS)?;
        w.open_table(BY_TIME)?;
        w.open_table(LATEST)?;
        w.open_table(DELETED)?;
        w.commit()?;
        Ok(Store { db })
    }

    /// Stores a verified event (not an ephemeral one), replacing, deleting and refusing
    /// as NIP-01 and NIP-09 say.
    pub fn insert(&self, e: &Event) -> Result<Stored, StoreError> {
        Ok(self.insert_batch(std::slice::from_ref(e))?[0])
    }

    /// Stores events in order in one transaction (one fsync for all): what each did.
    pub fn insert_batch<E: Borrow<Event>>(&self, batch: &[E]) -> Result<Vec<Stored>, StoreError> {
        let w = self.db.begin_write()?;
        let outcomes = {
            let mut t = Tables {
                events: w.open_table(EVENTS)?,
                by_time: w.open_table(BY_TIME)?,
                latest: w.open_table(LATEST)?,
                deleted: w.open_table(DELETED)?,
            };
            batch
                .iter()
                .map(|e| t.apply(e.borrow()))
                .collect::<Result<Vec<_>, _>>()?
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
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for f in filters {
            let limit = f.limit();
            let mut taken = 0;
            // Whether the stored event `raw` is one to return (then it is taken).
            let mut offer = |raw: &[u8]| {
                let Some(e) = parse(raw) else { return false };
                let wanted = f.matches(&e) && live(&e, now) && keep(&e) && seen.insert(e.id);
                if wanted {
                    out.push((e.created_at, String::from_utf8_lossy(raw).into_owned()));
                }
                wanted
            };
            if let Some(ids) = &f.ids {
                for id in ids {
                    if taken == limit {
                        break;
                    }
                    if let Some(v) = events.get(id.as_slice())?
                        && offer(v.value())
                    {
                        taken += 1;
                    }
                }
                continue;
            }
            let lo = time_key(f.since.unwrap_or(0), &[0; 32]);
            let hi = time_key(f.until.unwrap_or(u64::MAX), &[0xff; 32]);
            for row in by_time.range(lo.as_slice()..=hi.as_slice())?.rev() {
                if taken == limit {
                    break;
                }
                let (k, _) = row?;
                if let Some(v) = events.get(&k.value()[8..])?
                    && offer(v.value())
                {
                    taken += 1;
                }
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Keys;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("social.redb")).unwrap();
        (d, s)
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
            .insert_batch(&[&note, &note, &new, &old, &doomed, &deletion, &doomed])
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
}
