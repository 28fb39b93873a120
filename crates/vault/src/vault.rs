//! The patient's side: records in, grants out, the log of it all. Synchronous (redb);
//! the service calls it from blocking tasks. Each public write is one transaction that
//! also appends its audit entry, so a record and its trace are written together or not
//! at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crypto::{self, Key, Keys};
use crate::error::VaultError;
use crate::fhir::audit::{self, Action, Audit};
use crate::fhir::{bundle, validate};
use crate::log;
use crate::store::{
    self, ANCHORS, AnchorRow, Authorship, GRANTS, GrantRow, LOG, LogRow, META, RECORDS, RecordRow,
};
use crate::wire::{Refusal, WireRecord};

/// Milliseconds since the Unix epoch; a test may run its own clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Imported {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub by_type: BTreeMap<String, usize>,
    /// Its audit entry (none when nothing changed).
    pub entry: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordInfo {
    #[serde(rename = "type")]
    pub rtype: String,
    pub id: String,
    pub version: u64,
    /// The provider who appended it.
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantInfo {
    pub provider: String,
    pub types: Vec<String>,
    pub until_ms: Option<u64>,
    pub created_ms: u64,
    pub expired: bool,
    /// Records it covers now.
    pub records: usize,
}

/// What a revoke did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revoked {
    pub provider: String,
    /// Records given new data keys and sealed again.
    pub rotated: usize,
    pub entry: u64,
}

/// A fetch as the patient's node answers it.
#[derive(Debug, Clone)]
pub struct Served {
    pub no: u64,
    pub enc: Vec<u8>,
    pub sealed: Vec<u8>,
    pub records: Vec<WireRecord>,
}

/// The log checked: entries, head, and what the anchors say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogCheck {
    pub entries: u64,
    #[serde(serialize_with = "hex_ser")]
    pub head: [u8; 32],
}

fn hex_ser<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

pub struct Vault {
    pub(crate) db: redb::Database,
    keys: Keys,
    /// This node's peer id: the patient whose records these are.
    me: String,
    clock: Clock,
    /// Grant keys opened from their rows, by grant number.
    grant_keys: Mutex<HashMap<u64, Key>>,
    /// When each peer without a grant last had a refusal logged: a stranger asking in a
    /// loop gets one entry a minute, not one per request (bounded; emptied by any change
    /// of grants, so a refusal after a grant or a revoke is always logged).
    refusals_logged: Mutex<HashMap<String, u64>>,
}

/// Largest resource kept: with a batch's worth of others it still fits one frame.
pub const MAX_RECORD: usize = 2 << 20;

/// A peer without a grant gets at most one refused fetch logged in this long.
const REFUSAL_LOG_EVERY_MS: u64 = 60_000;
const MAX_REFUSALS_TRACKED: usize = 4096;

fn rid(rtype: &str, id: &str) -> String {
    format!("{rtype}/{id}")
}

pub(crate) fn grant_aad(no: u64) -> Vec<u8> {
    format!("nodus-vault grant key\0{no}").into_bytes()
}

impl Vault {
    pub fn open(
        path: &std::path::Path,
        keys: Keys,
        me: String,
        clock: Clock,
    ) -> Result<Vault, VaultError> {
        let db = store::open(path)?;
        Ok(Vault {
            db,
            keys,
            me,
            clock,
            grant_keys: Mutex::new(HashMap::new()),
            refusals_logged: Mutex::new(HashMap::new()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    fn grant_key(&self, g: &GrantRow) -> Result<Key, VaultError> {
        if let Some(k) = self.grant_keys.lock().expect("grant keys").get(&g.no) {
            return Ok(*k);
        }
        let k = crypto::open_key(self.keys.master(), &grant_aad(g.no), &g.key)?;
        self.grant_keys.lock().expect("grant keys").insert(g.no, k);
        Ok(k)
    }

    pub(crate) fn data_key(&self, r: &str, row: &RecordRow) -> Result<Key, VaultError> {
        Ok(crypto::open_key(
            self.keys.master(),
            &crypto::aad_wrap(&self.me, r, row.epoch),
            &row.key,
        )?)
    }

    pub(crate) fn open_body(&self, r: &str, row: &RecordRow) -> Result<Vec<u8>, VaultError> {
        let dk = self.data_key(r, row)?;
        crypto::open(
            &dk,
            &crypto::aad_record(&self.me, r, row.version),
            &row.body,
        )
        .map_err(|_| VaultError::Tampered(r.to_string()))
    }

    fn next(w: &WriteTransaction, counter: &str) -> Result<u64, VaultError> {
        let mut meta = w.open_table(META)?;
        let n = meta.get(counter)?.map(|v| v.value()).unwrap_or(0);
        meta.insert(counter, n + 1)?;
        Ok(n)
    }

    /// The number the next audit entry written in `w` gets.
    fn next_seq(w: &WriteTransaction) -> Result<u64, VaultError> {
        Ok(w.open_table(LOG)?.last()?.map_or(0, |(k, _)| k.value() + 1))
    }

    /// Appends an audit entry inside `w`; its number.
    fn audit(&self, w: &WriteTransaction, mut a: Audit) -> Result<u64, VaultError> {
        let mut t = w.open_table(LOG)?;
        let (seq, prev) = match t.last()? {
            Some((k, v)) => (
                k.value() + 1,
                store::decode::<LogRow>(v.value(), "log")?.hash,
            ),
            None => (0, log::GENESIS),
        };
        a.observer.clone_from(&self.me);
        let event = serde_json::to_vec(&audit::event(seq, &a)).expect("JSON");
        let hash = log::entry_hash(&prev, seq, &event);
        t.insert(seq, store::encode(&LogRow { prev, hash, event }).as_slice())?;
        Ok(seq)
    }

    fn audit_of(&self, action: Action, who: &str, records: Vec<String>, detail: String) -> Audit {
        Audit {
            action,
            at_ms: self.now(),
            who: who.to_string(),
            observer: String::new(),
            records,
            detail,
            refused: false,
        }
    }

    fn grants_in(
        t: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<Vec<GrantRow>, VaultError> {
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(store::decode::<GrantRow>(v.value(), "grant")?);
        }
        Ok(out)
    }

    /// Seals `plain` as record `r`'s next version under `dk`, wrapped for the live
    /// grants that cover it.
    #[allow(clippy::too_many_arguments)]
    fn seal_row(
        &self,
        r: &str,
        rtype: &str,
        dk: &Key,
        plain: &[u8],
        grants: &[(GrantRow, Key)],
        mut row: RecordRow,
        changed: u64,
    ) -> RecordRow {
        row.body = crypto::seal(dk, &crypto::aad_record(&self.me, r, row.version), plain);
        let wrap_aad = crypto::aad_wrap(&self.me, r, row.epoch);
        row.key = crypto::seal(self.keys.master(), &wrap_aad, dk);
        row.wraps = grants
            .iter()
            .filter(|(g, _)| g.covers(rtype))
            .map(|(g, gk)| (g.no, crypto::seal(gk, &wrap_aad, dk)))
            .collect();
        row.digest = Sha256::digest(plain).into();
        row.changed = changed;
        row
    }

    fn live_grants(
        &self,
        t: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<Vec<(GrantRow, Key)>, VaultError> {
        let now = self.now();
        Self::grants_in(t)?
            .into_iter()
            .filter(|g| g.live(now))
            .map(|g| {
                let k = self.grant_key(&g)?;
                Ok((g, k))
            })
            .collect()
    }

    pub fn has(&self, rtype: &str, id: &str) -> Result<bool, VaultError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(RECORDS)?
            .get(rid(rtype, id).as_str())?
            .is_some())
    }

    /// Imports a FHIR Bundle: all of it, or nothing.
    pub fn import(&self, bytes: &[u8], who: &str) -> Result<Imported, VaultError> {
        let entries = {
            let r = self.db.begin_read()?;
            let records = r.open_table(RECORDS)?;
            bundle::parse(bytes, |t, id| {
                records.get(rid(t, id).as_str()).ok().flatten().is_some()
            })?
        };
        let w = self.db.begin_write()?;
        let seq = Self::next_seq(&w)?;
        let mut done = Imported::default();
        let mut changed = Vec::new();
        {
            let grants = self.live_grants(&w.open_table(GRANTS)?)?;
            let mut records = w.open_table(RECORDS)?;
            for (i, e) in entries.iter().enumerate() {
                let r = rid(&e.rtype, &e.id);
                let plain = serde_json::to_vec(&e.resource).expect("JSON");
                if plain.len() > MAX_RECORD {
                    return Err(crate::fhir::Invalid {
                        path: format!("Bundle.entry[{i}].resource"),
                        problem: format!(
                            "is {} bytes; the vault keeps resources of up to {} MiB (put large attachments elsewhere and refer to them by URL)",
                            plain.len(),
                            MAX_RECORD >> 20
                        ),
                    }
                    .into());
                }
                let old = match records.get(r.as_str())? {
                    Some(v) => Some(store::decode::<RecordRow>(v.value(), "record")?),
                    None => None,
                };
                let (row, dk) = match old {
                    Some(old) if old.digest == <[u8; 32]>::from(Sha256::digest(&plain)) => {
                        done.unchanged += 1;
                        continue;
                    }
                    Some(old) => {
                        if let Some(a) = &old.author {
                            return Err(VaultError::NotImported {
                                record: r,
                                author: a.peer.clone(),
                            });
                        }
                        done.updated += 1;
                        let dk = self.data_key(&r, &old)?;
                        (
                            RecordRow {
                                version: old.version + 1,
                                ..old
                            },
                            dk,
                        )
                    }
                    None => {
                        done.created += 1;
                        let row = RecordRow::first(Self::next(&w, "order")?, None);
                        (row, crypto::random_key())
                    }
                };
                let row = self.seal_row(&r, &e.rtype, &dk, &plain, &grants, row, seq);
                records.insert(r.as_str(), store::encode(&row).as_slice())?;
                *done.by_type.entry(e.rtype.clone()).or_default() += 1;
                changed.push(r);
            }
        }
        if changed.is_empty() {
            return Ok(done);
        }
        let detail = format!("{} created, {} updated", done.created, done.updated);
        done.entry = Some(self.audit(&w, self.audit_of(Action::Import, who, changed, detail))?);
        w.commit()?;
        Ok(done)
    }

    fn rows(&self, rtype: Option<&str>) -> Result<Vec<(String, RecordRow)>, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RECORDS)?;
        let mut out = Vec::new();
        let prefix = rtype.map(|t| format!("{t}/"));
        let iter = match &prefix {
            Some(p) => t.range(p.as_str()..)?,
            None => t.iter()?,
        };
        for row in iter {
            let (k, v) = row?;
            let k = k.value();
            if prefix.as_ref().is_some_and(|p| !k.starts_with(p.as_str())) {
                break;
            }
            out.push((
                k.to_string(),
                store::decode::<RecordRow>(v.value(), "record")?,
            ));
        }
        out.sort_by_key(|(_, row)| row.order);
        Ok(out)
    }

    pub fn list(&self, rtype: Option<&str>) -> Result<Vec<RecordInfo>, VaultError> {
        Ok(self
            .rows(rtype)?
            .into_iter()
            .map(|(k, row)| {
                let (t, id) = k.split_once('/').unwrap_or((&k, ""));
                RecordInfo {
                    rtype: t.to_string(),
                    id: id.to_string(),
                    version: row.version,
                    author: row.author.map(|a| a.peer),
                }
            })
            .collect())
    }

    pub fn count(&self) -> Result<u64, VaultError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(RECORDS)?.len()?)
    }

    /// A record's resource, decrypted.
    pub fn show(&self, rtype: &str, id: &str) -> Result<Value, VaultError> {
        let r = rid(rtype, id);
        let tx = self.db.begin_read()?;
        let row = match tx.open_table(RECORDS)?.get(r.as_str())? {
            Some(v) => store::decode::<RecordRow>(v.value(), "record")?,
            None => return Err(VaultError::NoRecord(r)),
        };
        let body = self.open_body(&r, &row)?;
        serde_json::from_slice(&body).map_err(|_| VaultError::Tampered(r))
    }

    /// Every resource (of `rtype`), decrypted, in the order they came.
    pub fn resources(&self, rtype: Option<&str>) -> Result<Vec<Value>, VaultError> {
        self.rows(rtype)?
            .into_iter()
            .map(|(r, row)| {
                let body = self.open_body(&r, &row)?;
                serde_json::from_slice(&body).map_err(|_| VaultError::Tampered(r))
            })
            .collect()
    }

    /// The whole vault as a transaction Bundle (byte-for-byte the same until it changes).
    pub fn export(&self) -> Result<Vec<u8>, VaultError> {
        Ok(bundle::export(&self.resources(None)?))
    }

    /// Grants `provider` (its X25519 key `public`) the records of `types` (all when
    /// empty) until `until_ms`. A grant to a provider that has one replaces it; the
    /// records the old one covered get new keys first, as on a revoke.
    pub fn grant(
        &self,
        provider: &str,
        public: [u8; 32],
        types: Vec<String>,
        until_ms: Option<u64>,
        who: &str,
    ) -> Result<GrantInfo, VaultError> {
        for t in &types {
            if crate::fhir::schema::R4.resource(t).is_none() {
                return Err(VaultError::UnknownType(t.clone()));
            }
        }
        let now = self.now();
        let w = self.db.begin_write()?;
        let replaced = self.revoke_in(&w, provider)?;
        let seq = Self::next_seq(&w)?;
        let no = Self::next(&w, "grant")?;
        let gk = crypto::random_key();
        let (enc, sealed) =
            crypto::seal_to(&public, &crypto::info_grant(&self.me, provider, no), &gk)?;
        let g = GrantRow {
            no,
            provider: provider.to_string(),
            public,
            types,
            until_ms,
            created_ms: now,
            key: crypto::seal(self.keys.master(), &grant_aad(no), &gk),
            enc,
            sealed,
        };
        let mut covered = 0;
        {
            let mut records = w.open_table(RECORDS)?;
            let mut updates = Vec::new();
            for row in records.iter()? {
                let (k, v) = row?;
                let r = k.value().to_string();
                let rtype = r.split('/').next().unwrap_or_default();
                if !g.covers(rtype) {
                    continue;
                }
                let mut row = store::decode::<RecordRow>(v.value(), "record")?;
                let dk = self.data_key(&r, &row)?;
                row.changed = seq;
                row.wraps.push((
                    no,
                    crypto::seal(&gk, &crypto::aad_wrap(&self.me, &r, row.epoch), &dk),
                ));
                updates.push((r, row));
            }
            for (r, row) in updates {
                records.insert(r.as_str(), store::encode(&row).as_slice())?;
                covered += 1;
            }
            w.open_table(GRANTS)?
                .insert(provider, store::encode(&g).as_slice())?;
        }
        let types_text = if g.types.is_empty() {
            "all types".to_string()
        } else {
            g.types.join(",")
        };
        let until_text = match until_ms {
            Some(u) => format!(" until {}", audit::instant(u)),
            None => String::new(),
        };
        let replaced_text = match replaced {
            Some(n) => format!("; replaced a grant ({n} records given new keys)"),
            None => String::new(),
        };
        let detail = format!(
            "grant to {provider}: {types_text}{until_text}, {covered} records{replaced_text}"
        );
        self.audit(&w, self.audit_of(Action::Grant, who, vec![], detail))?;
        w.commit()?;
        self.grant_keys.lock().expect("grant keys").insert(no, gk);
        self.refusals_logged.lock().expect("refusals").clear();
        Ok(GrantInfo {
            provider: provider.to_string(),
            types: g.types,
            until_ms,
            created_ms: now,
            expired: false,
            records: covered,
        })
    }

    pub fn grants(&self) -> Result<Vec<GrantInfo>, VaultError> {
        let now = self.now();
        let r = self.db.begin_read()?;
        let grants = Self::grants_in(&r.open_table(GRANTS)?)?;
        let records = self.rows(None)?;
        Ok(grants
            .into_iter()
            .map(|g| GrantInfo {
                records: records
                    .iter()
                    .filter(|(_, row)| row.wraps.iter().any(|(n, _)| *n == g.no))
                    .count(),
                expired: !g.live(now),
                provider: g.provider,
                types: g.types,
                until_ms: g.until_ms,
                created_ms: g.created_ms,
            })
            .collect())
    }

    /// Removes `provider`'s grant inside `w` and gives every record it covered a new
    /// data key, sealing the record again; how many, or None if there was no grant.
    fn revoke_in(&self, w: &WriteTransaction, provider: &str) -> Result<Option<usize>, VaultError> {
        let Some(g) = w
            .open_table(GRANTS)?
            .remove(provider)?
            .map(|v| store::decode::<GrantRow>(v.value(), "grant"))
            .transpose()?
        else {
            return Ok(None);
        };
        self.grant_keys.lock().expect("grant keys").remove(&g.no);
        let seq = Self::next_seq(w)?;
        let others = self.live_grants(&w.open_table(GRANTS)?)?;
        let mut records = w.open_table(RECORDS)?;
        let mut updates = Vec::new();
        for row in records.iter()? {
            let (k, v) = row?;
            let row = store::decode::<RecordRow>(v.value(), "record")?;
            if row.wraps.iter().any(|(n, _)| *n == g.no) {
                updates.push((k.value().to_string(), row));
            }
        }
        let rotated = updates.len();
        for (r, row) in updates {
            let plain = self.open_body(&r, &row)?;
            let rtype = r.split('/').next().unwrap_or_default().to_string();
            let row = RecordRow {
                epoch: row.epoch + 1,
                ..row
            };
            let row = self.seal_row(&r, &rtype, &crypto::random_key(), &plain, &others, row, seq);
            records.insert(r.as_str(), store::encode(&row).as_slice())?;
        }
        Ok(Some(rotated))
    }

    pub fn revoke(&self, provider: &str, who: &str) -> Result<Revoked, VaultError> {
        let w = self.db.begin_write()?;
        let Some(rotated) = self.revoke_in(&w, provider)? else {
            return Err(VaultError::NoGrant(provider.to_string()));
        };
        let detail = format!("revoked {provider}; {rotated} records given new keys");
        let entry = self.audit(&w, self.audit_of(Action::Revoke, who, vec![], detail))?;
        w.commit()?;
        self.refusals_logged.lock().expect("refusals").clear();
        Ok(Revoked {
            provider: provider.to_string(),
            rotated,
            entry,
        })
    }

    /// Answers `provider`'s fetch of `types` (all its grant covers when empty), and
    /// logs it, refusals included.
    pub fn serve_fetch(&self, provider: &str, types: &[String]) -> Result<Served, Refusal> {
        let result = self.fetch_for(provider, types);
        if matches!(result, Err(Refusal::NoGrant)) {
            let now = self.now();
            let mut seen = self.refusals_logged.lock().expect("refusals");
            if seen
                .get(provider)
                .is_some_and(|t| now.saturating_sub(*t) < REFUSAL_LOG_EVERY_MS)
            {
                return result;
            }
            if seen.len() >= MAX_REFUSALS_TRACKED {
                seen.clear();
            }
            seen.insert(provider.to_string(), now);
        }
        let (records, refused, detail) = match &result {
            Ok(s) => (
                s.records.iter().map(|r| rid(&r.rtype, &r.id)).collect(),
                false,
                format!("{} records", s.records.len()),
            ),
            Err(e) => (vec![], true, e.to_string()),
        };
        let logged = (|| -> Result<(), VaultError> {
            let w = self.db.begin_write()?;
            let mut a = self.audit_of(Action::Fetch, provider, records, detail);
            a.refused = refused;
            self.audit(&w, a)?;
            w.commit()?;
            Ok(())
        })();
        if let Err(e) = logged {
            // What cannot be logged is not served.
            tracing::warn!(target: "nodus::vault", "a fetch could not be logged: {e}");
            return Err(Refusal::Unavailable);
        }
        result
    }

    fn fetch_for(&self, provider: &str, types: &[String]) -> Result<Served, Refusal> {
        let unavailable = |e: VaultError| {
            tracing::warn!(target: "nodus::vault", "serving a fetch: {e}");
            Refusal::Unavailable
        };
        let r = self.db.begin_read().map_err(|e| unavailable(e.into()))?;
        let g = match r
            .open_table(GRANTS)
            .map_err(|e| unavailable(e.into()))?
            .get(provider)
            .map_err(|e| unavailable(e.into()))?
        {
            Some(v) => {
                store::decode::<GrantRow>(v.value(), "grant").map_err(|e| unavailable(e.into()))?
            }
            None => return Err(Refusal::NoGrant),
        };
        if !g.live(self.now()) {
            return Err(Refusal::Expired {
                until_ms: g.until_ms.unwrap_or(0),
            });
        }
        let outside: Vec<String> = types.iter().filter(|t| !g.covers(t)).cloned().collect();
        if !outside.is_empty() {
            return Err(Refusal::NotCovered { types: outside });
        }
        let mut records = Vec::new();
        for (r, row) in self.rows(None).map_err(unavailable)? {
            let (rtype, id) = r.split_once('/').unwrap_or((&r, ""));
            if !types.is_empty() && !types.iter().any(|t| t == rtype) {
                continue;
            }
            let Some((_, wrap)) = row.wraps.iter().find(|(n, _)| *n == g.no) else {
                continue;
            };
            records.push(WireRecord {
                rtype: rtype.to_string(),
                id: id.to_string(),
                version: row.version,
                epoch: row.epoch,
                wrap: wrap.clone(),
                body: row.body,
            });
        }
        Ok(Served {
            no: g.no,
            enc: g.enc,
            sealed: g.sealed,
            records,
        })
    }

    /// Takes a provider's own record: `resource` (JSON bytes) signed by the identity
    /// key `public_key` (protobuf) of `provider`.
    pub fn accept_append(
        &self,
        provider: &str,
        resource: &[u8],
        public_key: &[u8],
        signature: &[u8],
    ) -> Result<RecordInfo, Refusal> {
        let key = libp2p::identity::PublicKey::try_decode_protobuf(public_key)
            .map_err(|_| Refusal::BadSignature)?;
        if key.to_peer_id().to_string() != provider
            || !key.verify(&crate::wire::append_message(&self.me, resource), signature)
        {
            return Err(Refusal::BadSignature);
        }
        let v: Value = serde_json::from_slice(resource).map_err(|e| Refusal::Invalid {
            path: String::new(),
            problem: format!("not JSON: {e}"),
        })?;
        let rtype = v["resourceType"].as_str().unwrap_or_default().to_string();
        let found = validate::resource(&v, if rtype.is_empty() { "Resource" } else { &rtype })
            .map_err(|e| Refusal::Invalid {
                path: e.path,
                problem: e.problem,
            })?;
        let Some(id) = v["id"].as_str().map(str::to_string) else {
            return Err(Refusal::Invalid {
                path: format!("{rtype}.id"),
                problem: "an appended resource must have an id".into(),
            });
        };
        for f in found {
            let ok = match f.reference.split_once('/') {
                _ if f.reference.starts_with('#') => true,
                _ if f.reference.starts_with("http://") || f.reference.starts_with("https://") => {
                    true
                }
                Some((t, i)) => self.has(t, i).unwrap_or(false),
                None => false,
            };
            if !ok {
                return Err(Refusal::Invalid {
                    path: f.path,
                    problem: format!("{:?} is not a record in the vault", f.reference),
                });
            }
        }
        self.append_checked(provider, &rtype, &id, resource, public_key, signature)
            .map_err(|e| match e {
                VaultError::Refused(r) => r,
                other => {
                    tracing::warn!(target: "nodus::vault", "taking an append: {other}");
                    Refusal::Unavailable
                }
            })
    }

    fn append_checked(
        &self,
        provider: &str,
        rtype: &str,
        id: &str,
        resource: &[u8],
        public_key: &[u8],
        signature: &[u8],
    ) -> Result<RecordInfo, VaultError> {
        let r = rid(rtype, id);
        let w = self.db.begin_write()?;
        let seq = Self::next_seq(&w)?;
        let version;
        {
            let grants_t = w.open_table(GRANTS)?;
            let g = match grants_t.get(provider)? {
                Some(v) => store::decode::<GrantRow>(v.value(), "grant")?,
                None => return Err(Refusal::NoGrant.into()),
            };
            if !g.live(self.now()) {
                return Err(Refusal::Expired {
                    until_ms: g.until_ms.unwrap_or(0),
                }
                .into());
            }
            if !g.covers(rtype) {
                return Err(Refusal::NotCovered {
                    types: vec![rtype.to_string()],
                }
                .into());
            }
            let grants = self.live_grants(&grants_t)?;
            drop(grants_t);
            let mut records = w.open_table(RECORDS)?;
            let old = match records.get(r.as_str())? {
                Some(v) => Some(store::decode::<RecordRow>(v.value(), "record")?),
                None => None,
            };
            let author = Some(Authorship {
                peer: provider.to_string(),
                public_key: public_key.to_vec(),
                signature: signature.to_vec(),
            });
            let row = match old {
                Some(old) if old.author.as_ref().map(|a| a.peer.as_str()) != Some(provider) => {
                    return Err(Refusal::NotYours { record: r }.into());
                }
                Some(old) => RecordRow {
                    version: old.version + 1,
                    author,
                    ..old
                },
                None => RecordRow::first(Self::next(&w, "order")?, author),
            };
            version = row.version;
            let dk = if row.version > 1 {
                self.data_key(&r, &row)?
            } else {
                crypto::random_key()
            };
            let row = self.seal_row(&r, rtype, &dk, resource, &grants, row, seq);
            records.insert(r.as_str(), store::encode(&row).as_slice())?;
        }
        let detail = format!("appended by {provider}, version {version}");
        self.audit(
            &w,
            self.audit_of(Action::Append, provider, vec![r.clone()], detail),
        )?;
        w.commit()?;
        Ok(RecordInfo {
            rtype: rtype.to_string(),
            id: id.to_string(),
            version,
            author: Some(provider.to_string()),
        })
    }

    /// Entries `from..` of the log (at most `limit`), as AuditEvents.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<Value>, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(LOG)?;
        let mut out = Vec::new();
        for row in t.range(from..)?.take(limit) {
            let (_, v) = row?;
            let row: LogRow = store::decode(v.value(), "log")?;
            out.push(serde_json::from_slice(&row.event).unwrap_or(Value::Null));
        }
        Ok(out)
    }

    /// The head: `(entries, hash of the last)`.
    pub fn head(&self) -> Result<(u64, [u8; 32]), VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(LOG)?;
        Ok(match t.last()? {
            Some((k, v)) => (
                k.value() + 1,
                store::decode::<LogRow>(v.value(), "log")?.hash,
            ),
            None => (0, log::GENESIS),
        })
    }

    /// Walks the chain of hashes. Each anchor comes back with the hash the log holds at
    /// its entry, for the caller to compare with what the chain holds.
    #[allow(clippy::type_complexity)]
    pub fn verify_log(&self) -> Result<(LogCheck, Vec<(u64, [u8; 32], AnchorRow)>), VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(LOG)?;
        let mut prev = log::GENESIS;
        let mut n = 0u64;
        let anchors = self.anchors()?;
        let anchored: std::collections::HashSet<u64> = anchors.iter().map(|(s, _)| *s).collect();
        let mut hashes_at = HashMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            let row: LogRow = store::decode(v.value(), "log")?;
            if seq != n {
                return Err(VaultError::LogBroken {
                    entry: n,
                    why: format!("entry {n} is missing"),
                });
            }
            if row.prev != prev || log::entry_hash(&prev, seq, &row.event) != row.hash {
                return Err(VaultError::LogBroken {
                    entry: seq,
                    why: "its hash does not follow from its content and the entry before".into(),
                });
            }
            if anchored.contains(&seq) {
                hashes_at.insert(seq, row.hash);
            }
            prev = row.hash;
            n += 1;
        }
        let mut out = Vec::new();
        for (seq, a) in anchors {
            match hashes_at.get(&seq) {
                Some(h) if *h == a.head => out.push((seq, *h, a)),
                _ => {
                    return Err(VaultError::LogBroken {
                        entry: seq,
                        why: "the log no longer holds the head its anchor recorded".into(),
                    });
                }
            }
        }
        Ok((
            LogCheck {
                entries: n,
                head: prev,
            },
            out,
        ))
    }

    pub fn anchors(&self) -> Result<Vec<(u64, AnchorRow)>, VaultError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ANCHORS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value(), store::decode::<AnchorRow>(v.value(), "anchor")?));
        }
        Ok(out)
    }

    pub fn put_anchor(&self, seq: u64, row: &AnchorRow) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        w.open_table(ANCHORS)?
            .insert(seq, store::encode(row).as_slice())?;
        w.commit()?;
        Ok(())
    }

    pub fn remove_anchor(&self, seq: u64) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        w.open_table(ANCHORS)?.remove(seq)?;
        w.commit()?;
        Ok(())
    }

    /// Appends `n` fetch entries in one transaction: a long log for the benchmark.
    #[doc(hidden)]
    pub fn fill_log(&self, n: u64, who: &str) -> Result<(), VaultError> {
        let w = self.db.begin_write()?;
        for i in 0..n {
            let a = self.audit_of(
                Action::Fetch,
                who,
                vec![format!("Observation/{i}")],
                "1 record".into(),
            );
            self.audit(&w, a)?;
        }
        w.commit()?;
        Ok(())
    }

    /// The database, for tests that tamper with it.
    #[doc(hidden)]
    pub fn db(&self) -> &redb::Database {
        &self.db
    }
}

/// The provider's side of a fetch: opens the grant key and each record. A record that
/// does not open is an error naming it: the patient's node or the path was tampered
/// with.
pub fn open_fetched(
    keys: &Keys,
    provider: &str,
    patient: &str,
    no: u64,
    enc: &[u8],
    sealed: &[u8],
    records: &[WireRecord],
) -> Result<Vec<Value>, VaultError> {
    let gk = keys
        .open_grant(enc, sealed, &crypto::info_grant(patient, provider, no))
        .map_err(|_| VaultError::Tampered("the grant key".into()))?;
    records
        .iter()
        .map(|w| {
            let r = rid(&w.rtype, &w.id);
            let dk = crypto::open_key(&gk, &crypto::aad_wrap(patient, &r, w.epoch), &w.wrap)
                .map_err(|_| VaultError::Tampered(r.clone()))?;
            let body = crypto::open(&dk, &crypto::aad_record(patient, &r, w.version), &w.body)
                .map_err(|_| VaultError::Tampered(r.clone()))?;
            let v: Value =
                serde_json::from_slice(&body).map_err(|_| VaultError::Tampered(r.clone()))?;
            if v["resourceType"] != w.rtype.as_str() || v["id"] != w.id.as_str() {
                return Err(VaultError::Tampered(r));
            }
            Ok(v)
        })
        .collect()
}
