//! Call history (`voice/voice.redb`): one row per call, written when it starts ringing,
//! when it is answered and when it ends, so a call the node was killed during is still
//! there (marked interrupted at the next start).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::VoiceError;
use crate::session::Summary;

/// Call id (hex) -> the record as JSON.
const CALLS: TableDefinition<&str, &[u8]> = TableDefinition::new("calls");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Offered, no answer from the other node yet.
    Calling,
    Ringing,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered, then hung up by either side.
    Completed,
    /// Hung up before it was answered.
    Cancelled,
    Rejected,
    Busy,
    /// Rang out here unanswered (or the caller gave up).
    Missed,
    /// Rang out at the other side unanswered.
    NoAnswer,
    /// No signal reached the other side, or the media could not start.
    Failed,
    /// Nothing came from the other side on any route for a while: the call was lost.
    Dropped,
    /// The node stopped while the call was on.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: String,
    /// The other side's peer id and contact name.
    pub peer: String,
    pub name: String,
    pub direction: Direction,
    pub state: CallState,
    pub outcome: Option<Outcome>,
    pub started_ms: u64,
    pub answered_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// Answered until ended.
    pub duration_ms: u64,
    /// The route in use (`direct <addr>`, `relay <addr>`).
    pub route: Option<String>,
    /// What the media did (when there was media).
    pub quality: Option<Summary>,
}

pub struct History {
    db: Database,
}

fn store(e: impl std::fmt::Display) -> VoiceError {
    VoiceError::Store(e.to_string())
}

impl History {
    /// Opens (or makes) the history; calls left unfinished by a stop are marked
    /// interrupted.
    pub fn open(path: &Path, now_ms: u64) -> Result<History, VoiceError> {
        let db = redb::Builder::new()
            .set_cache_size(nodus_core::datadir::DB_CACHE_BYTES)
            .create(path)
            .map_err(store)?;
        let h = History { db };
        let unfinished: Vec<CallRecord> = h
            .all()?
            .into_iter()
            .filter(|c| c.state != CallState::Ended)
            .collect();
        for mut c in unfinished {
            c.state = CallState::Ended;
            c.outcome = Some(Outcome::Interrupted);
            c.ended_ms = Some(now_ms);
            c.duration_ms = c.answered_ms.map_or(0, |a| now_ms.saturating_sub(a));
            h.put(&c)?;
        }
        Ok(h)
    }

    pub fn put(&self, c: &CallRecord) -> Result<(), VoiceError> {
        let w = self.db.begin_write().map_err(store)?;
        {
            let mut t = w.open_table(CALLS).map_err(store)?;
            let json = serde_json::to_vec(c).map_err(store)?;
            t.insert(c.id.as_str(), json.as_slice()).map_err(store)?;
        }
        w.commit().map_err(store)
    }

    /// Every call, newest first.
    pub fn all(&self) -> Result<Vec<CallRecord>, VoiceError> {
        let r = self.db.begin_read().map_err(store)?;
        let t = match r.open_table(CALLS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store(e)),
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(store)? {
            let (_, v) = row.map_err(store)?;
            if let Ok(c) = serde_json::from_slice::<CallRecord>(v.value()) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, started: u64, state: CallState) -> CallRecord {
        CallRecord {
            id: id.into(),
            peer: "peer".into(),
            name: "bob".into(),
            direction: Direction::Outgoing,
            state,
            outcome: None,
            started_ms: started,
            answered_ms: Some(started + 1000),
            ended_ms: None,
            duration_ms: 0,
            route: None,
            quality: None,
        }
    }

    #[test]
    fn calls_come_back_newest_first_and_an_unfinished_one_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voice.redb");
        {
            let h = History::open(&path, 0).unwrap();
            h.put(&call("a", 10, CallState::Ended)).unwrap();
            h.put(&call("b", 20, CallState::Active)).unwrap();
        }
        let h = History::open(&path, 5_000).unwrap();
        let all = h.all().unwrap();
        assert_eq!(
            all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(all[0].outcome, Some(Outcome::Interrupted));
        assert_eq!(all[0].duration_ms, 5_000 - 1_020);
        assert_eq!(all[1].outcome, None);
    }

    #[test]
    fn a_row_written_before_the_media_summary_grew_still_reads() {
        // A session 19 row: its summary has no REMB, queue or BYE fields.
        let mut old = serde_json::to_value(CallRecord {
            quality: Some(crate::session::Summary {
                received: 400,
                ..Default::default()
            }),
            ..call("old", 10, CallState::Ended)
        })
        .unwrap();
        let q = old["quality"].as_object_mut().unwrap();
        for newer in ["lowest_remb", "worst_queue_ms", "bye"] {
            assert!(q.remove(newer).is_some(), "{newer}");
        }
        let back: CallRecord = serde_json::from_value(old).unwrap();
        assert_eq!(back.quality.unwrap().received, 400);
    }
}
