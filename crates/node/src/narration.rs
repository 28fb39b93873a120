//! A narration: what a program driving a network of nodes says it is doing (the demo's
//! steps, the nodes it runs and what they do), kept by one node so that its dashboard
//! can show it to someone watching.
//!
//! Written in-process only, through [`Narration`]; the API reads it
//! (`GET /api/v1/narration`) and its changes go out on the event stream as `narration`
//! events. Invariants: everything it keeps is bounded ([`MAX_STEPS`], [`MAX_NODES`],
//! [`MAX_ACTIVITY`], strings cut at [`MAX_TEXT`] bytes), so a long or chatty run cannot
//! make it grow; a step's index never changes once given.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use nodus_service::EventFeed;
use serde::Serialize;
use tokio::sync::broadcast;

pub const MAX_STEPS: usize = 200;
pub const MAX_NODES: usize = 256;
/// Activities kept for a page that opens late; older ones are dropped.
pub const MAX_ACTIVITY: usize = 300;
pub const MAX_TEXT: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NarratedStep {
    pub index: usize,
    pub what: String,
    pub state: StepState,
    /// What the step measured, or why it failed; empty while it runs.
    pub figure: String,
    pub started_ms: u64,
    pub elapsed_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NarratedNode {
    /// The driver's own number for it (the demo's node index).
    pub index: usize,
    pub peer_id: String,
    pub running: bool,
}

/// Something a node did: one of its events, summed up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub node: usize,
    /// The event's source: `net` or a service's name.
    pub service: String,
    /// The event's type.
    pub kind: String,
    /// A few of its fields, `key=value`.
    pub detail: String,
    /// Other narrated nodes the event names (by their peer ids).
    pub with: Vec<usize>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NarrationEvent {
    Title { title: String },
    Step { step: NarratedStep },
    Node { node: NarratedNode },
    Activity { activity: Activity },
}

/// All of it, for a page that opens after it began.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NarrationView {
    pub title: String,
    pub steps: Vec<NarratedStep>,
    pub nodes: Vec<NarratedNode>,
    pub activity: Vec<Activity>,
}

#[derive(Default)]
struct State {
    title: String,
    steps: Vec<NarratedStep>,
    nodes: Vec<NarratedNode>,
    activity: VecDeque<Activity>,
}

/// A node's narration; clones share it.
#[derive(Clone)]
pub struct Narration {
    state: Arc<Mutex<State>>,
    tx: broadcast::Sender<NarrationEvent>,
}

impl Default for Narration {
    fn default() -> Self {
        Narration {
            state: Arc::default(),
            tx: broadcast::channel(1024).0,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Narration {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    fn send(&self, ev: NarrationEvent) {
        let _ = self.tx.send(ev);
    }

    pub fn set_title(&self, title: &str) {
        let title = cut(title);
        self.with(|s| s.title = title.clone());
        self.send(NarrationEvent::Title { title });
    }

    /// A step begins; its index, for [`Narration::finish`]. Past [`MAX_STEPS`] the
    /// step is not kept (None).
    pub fn begin(&self, what: &str) -> Option<usize> {
        let step = self.with(|s| {
            if s.steps.len() >= MAX_STEPS {
                return None;
            }
            let step = NarratedStep {
                index: s.steps.len(),
                what: cut(what),
                state: StepState::Running,
                figure: String::new(),
                started_ms: now_ms(),
                elapsed_ms: None,
            };
            s.steps.push(step.clone());
            Some(step)
        })?;
        let index = step.index;
        self.send(NarrationEvent::Step { step });
        Some(index)
    }

    pub fn finish(&self, index: usize, ok: bool, figure: &str) {
        let step = self.with(|s| {
            let step = s.steps.get_mut(index)?;
            step.state = if ok { StepState::Ok } else { StepState::Failed };
            step.figure = cut(figure);
            step.elapsed_ms = Some(now_ms().saturating_sub(step.started_ms));
            Some(step.clone())
        });
        if let Some(step) = step {
            self.send(NarrationEvent::Step { step });
        }
    }

    /// A node joined the narration, or changed (stopped, started again).
    pub fn node(&self, index: usize, peer_id: &str, running: bool) {
        let node = NarratedNode {
            index,
            peer_id: cut(peer_id),
            running,
        };
        let kept = self.with(|s| {
            if let Some(n) = s.nodes.iter_mut().find(|n| n.index == index) {
                *n = node.clone();
            } else if s.nodes.len() < MAX_NODES {
                s.nodes.push(node.clone());
            } else {
                return false;
            }
            true
        });
        if kept {
            self.send(NarrationEvent::Node { node });
        }
    }

    pub fn activity(&self, node: usize, service: &str, kind: &str, detail: &str, with: Vec<usize>) {
        let activity = Activity {
            node,
            service: cut(service),
            kind: cut(kind),
            detail: cut(detail),
            with: with.into_iter().take(MAX_NODES).collect(),
            at_ms: now_ms(),
        };
        self.with(|s| {
            if s.activity.len() >= MAX_ACTIVITY {
                s.activity.pop_front();
            }
            s.activity.push_back(activity.clone());
        });
        self.send(NarrationEvent::Activity { activity });
    }

    pub fn view(&self) -> NarrationView {
        self.with(|s| NarrationView {
            title: s.title.clone(),
            steps: s.steps.clone(),
            nodes: s.nodes.clone(),
            activity: s.activity.iter().cloned().collect(),
        })
    }

    /// Its changes as a feed of the node's event stream.
    pub fn feed(&self) -> EventFeed {
        EventFeed::broadcast(self.tx.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_index_and_end_with_a_figure() {
        let n = Narration::default();
        let a = n.begin("first").unwrap();
        let b = n.begin("second").unwrap();
        n.finish(a, true, "1 ms");
        n.finish(b, false, "FAILED: no");
        let v = n.view();
        assert_eq!((v.steps[0].index, v.steps[1].index), (0, 1));
        assert_eq!(v.steps[0].state, StepState::Ok);
        assert_eq!(v.steps[1].state, StepState::Failed);
        assert_eq!(v.steps[1].figure, "FAILED: no");
        assert!(v.steps[0].elapsed_ms.is_some());
        n.finish(7, true, "no such step");
        assert_eq!(n.view().steps.len(), 2);
    }

    #[test]
    fn everything_kept_is_bounded() {
        let n = Narration::default();
        for i in 0..MAX_STEPS + 5 {
            let _ = n.begin(&format!("step {i}"));
        }
        for i in 0..MAX_ACTIVITY * 2 {
            n.activity(i % 3, "net", "peer", &"x".repeat(MAX_TEXT * 3), vec![1, 2]);
        }
        for i in 0..MAX_NODES + 5 {
            n.node(i, "peer", true);
        }
        n.node(0, "peer", false);
        let v = n.view();
        assert_eq!(v.steps.len(), MAX_STEPS);
        assert_eq!(v.activity.len(), MAX_ACTIVITY);
        assert_eq!(v.nodes.len(), MAX_NODES);
        assert!(!v.nodes[0].running);
        assert!(v.activity[0].detail.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(n.begin("one more").is_none());
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let c = cut(&s);
        assert!(c.ends_with('…'));
        assert!(c.len() <= MAX_TEXT + '…'.len_utf8());
    }

    #[tokio::test]
    async fn changes_go_out_on_the_feed() {
        use futures::StreamExt;
        let n = Narration::default();
        let mut feed = n.feed().subscribe();
        n.set_title("demo");
        let ev = feed.next().await.unwrap().unwrap();
        assert_eq!(ev["type"], "title");
        assert_eq!(ev["title"], "demo");
    }
}
