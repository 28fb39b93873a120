//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! for the tests and the demo of what a browser shows.
//!
//! One [`Browser`] is one chromedriver process and one session; dropping it ends both.
//! Scripts run in the page ([`Browser::run`]) and report back with a callback, so a test
//! waits for what the page does (a video playing, a seek done), never a fixed time.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Chromium's binary and its driver, as Debian installs them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{0} is not installed: `apt-get install chromium chromium-driver` (scripts/test does)")]
    Missing(&'static str),
    #[error("chromedriver: {0}")]
    Driver(String),
    #[error("WebDriver request: {0}")]
    Http(#[from] reqwest::Error),
    #[error("starting chromedriver: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether Chromium and its driver are installed.
pub fn available() -> bool {
    std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Result<Browser, BrowserError> {
        if !std::path::Path::new(CHROMIUM).exists() {
            return Err(BrowserError::Missing("chromium"));
        }
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            return Err(BrowserError::Missing("chromium-driver"));
        }
        let http = reqwest::Client::new();
        // The port is chosen free, then given to chromedriver: another process may take
        // it in between, so a driver that does not come up is tried again on another.
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port()?;
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, with the Chromium it starts: ended together.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()?;
            let base = format!("http://127.0.0.1:{port}");
            let mut ready = false;
            for _ in 0..100 {
                if let Ok(r) = http.get(format!("{base}/status")).send().await
                    && let Ok(v) = r.json::<Value>().await
                    && v["value"]["ready"] == json!(true)
                {
                    ready = true;
                    break;
                }
                if driver.try_wait()?.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ready {
                last = format!("not ready on port {port}");
                let _ = driver.kill().await;
                continue;
            }
            let profile =
                std::env::temp_dir().join(format!("nodus-chromium-{}-{port}", std::process::id()));
            let caps = json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // What the page logs, for `console_errors`.
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--mute-audio",
                        "--autoplay-policy=no-user-gesture-required",
                        "--no-first-run", "--no-default-browser-check",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}});
            let v: Value = http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await?
                .json()
                .await?;
            let Some(session) = v["value"]["sessionId"].as_str() else {
                let _ = driver.kill().await;
                let _ = std::fs::remove_dir_all(&profile);
                return Err(BrowserError::Driver(v["value"]["message"].to_string()));
            };
            return Ok(Browser {
                driver,
                session: session.to_string(),
                base,
                http,
                _profile: tempdir::Dir(profile),
            });
        }
        Err(BrowserError::Driver(last))
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, BrowserError> {
        let v: Value = self
            .http
            .post(format!("{}/session/{}{path}", self.base, self.session))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if v["value"]["error"].is_string() {
            return Err(BrowserError::Driver(format!(
                "{}: {}",
                v["value"]["error"], v["value"]["message"]
            )));
        }
        Ok(v["value"].clone())
    }

    /// Closes Chromium, then ends the driver.
    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.call("/url", json!({ "url": url })).await.map(|_| ())
    }

    /// Messages the page logged at error level (console errors, uncaught exceptions,
    /// failed loads) since the last call.
    pub async fn console_errors(&self) -> Result<Vec<String>, BrowserError> {
        let v = self.call("/se/log", json!({ "type": "browser" })).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Saves what the window shows as a PNG at `path`.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<(), BrowserError> {
        let v: Value = self
            .http
            .get(format!("{}/session/{}/screenshot", self.base, self.session))
            .send()
            .await?
            .json()
            .await?;
        let png = v["value"]
            .as_str()
            .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
            .ok_or_else(|| BrowserError::Driver(format!("no screenshot: {v}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Sets the window's size in CSS pixels.
    pub async fn window_size(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.call("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(|_| ())
    }

    /// Runs `script` in the page; it ends by calling `done(value)` (its last argument),
    /// whose value comes back. Waits up to `timeout`.
    pub async fn run(&self, script: &str, timeout: Duration) -> Result<Value, BrowserError> {
        self.call("/timeouts", json!({ "script": timeout.as_millis() as u64 }))
            .await?;
        let body = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.call("/execute/async", json!({ "script": body, "args": [] }))
            .await
    }
}

/// What a player page did: it played, was seeked to the middle, and played on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Playback {
    /// When the first frame showed, in ms since the page began.
    pub first_frame_ms: Option<f64>,
    /// From setting `currentTime` to the `seeked` event, in ms.
    pub seek_ms: f64,
    pub duration: f64,
    /// Where it was seeked to, and where it had played on to when checked.
    pub mid: f64,
    pub after: f64,
    /// Whether the player showed its controls by then.
    pub controls: bool,
}

/// Waits for the page's `#player` to play, seeks it to the middle, waits for it to play
/// a second past there; fails on a media error.
const PLAY_AND_SEEK: &str = r#"
const v = document.getElementById('player');
const until = (cond, what) => new Promise((res, rej) => {
  (function poll() {
    if (v.error) return rej('media error ' + v.error.code + ' ' + v.error.message + ' while ' + what);
    if (cond()) return res();
    setTimeout(poll, 20);
  })();
});
(async () => {
  try {
    await until(() => v.currentTime > 0.5, 'waiting for playback');
    const first = window.nodusFirstFrame;
    const mid = v.duration / 2;
    const seeked = new Promise(r => v.addEventListener('seeked', r, { once: true }));
    const s0 = performance.now();
    v.currentTime = mid;
    await seeked;
    const seek = performance.now() - s0;
    await until(() => v.currentTime > mid + 1, 'playing on after the seek');
    done({ ok: { first_frame_ms: first, seek_ms: seek, duration: v.duration, mid, after: v.currentTime, controls: v.controls } });
  } catch (e) { done({ error: String(e) }); }
})();
"#;

/// A page that plays the video named by its `?src=` in `#player` and records its first
/// frame as the gateway's player page does; serve it from any origin to compare
/// streaming servers with one page.
pub const PLAYER_PAGE: &str = "<!doctype html><meta charset=utf-8><title>player</title>\
<video id=player autoplay muted playsinline preload=auto></video><script>\
const p=document.getElementById('player');window.nodusFirstFrame=null;\
p.requestVideoFrameCallback(t=>{window.nodusFirstFrame=t});\
p.src=new URLSearchParams(location.search).get('src');</script>";

/// Waits for the page's first frame; reports its time (ms since the Unix epoch) or the
/// media error.
const FIRST_FRAME: &str = r#"
const v = document.getElementById('player');
(function poll() {
  if (v.error) return done({ error: 'media error ' + v.error.code + ' ' + v.error.message });
  if (window.nodusFirstFrame !== null) return done({ ok: performance.timeOrigin + window.nodusFirstFrame });
  setTimeout(poll, 5);
})();
"#;

impl Browser {
    /// Opens a player page and waits for its first frame: when it showed, on the wall
    /// clock (Chromium's, which is this machine's).
    pub async fn first_frame(
        &self,
        page: &str,
        timeout: Duration,
    ) -> Result<std::time::SystemTime, BrowserError> {
        self.goto(page).await?;
        let v = self.run(FIRST_FRAME, timeout).await?;
        let ms = v["ok"]
            .as_f64()
            .ok_or_else(|| BrowserError::Driver(format!("the page says: {v}")))?;
        Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(ms / 1000.0))
    }

    /// Opens a player page (the gateway's `/play/...`), plays, seeks to the middle and
    /// plays on (see [`Playback`]); waits up to `timeout` in all.
    pub async fn play_and_seek(
        &self,
        page: &str,
        timeout: Duration,
    ) -> Result<Playback, BrowserError> {
        self.goto(page).await?;
        let v = self.run(PLAY_AND_SEEK, timeout).await?;
        if let Some(e) = v["error"].as_str() {
            return Err(BrowserError::Driver(format!("the page says: {e}")));
        }
        serde_json::from_value(v["ok"].clone())
            .map_err(|e| BrowserError::Driver(format!("{e}: {v}")))
    }
}

/// What node's dashboard showed once live with the expected peer count.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DashboardView {
    pub peers: usize,
    /// The titles of the panels the services contributed, mounted.
    pub panels: Vec<String>,
    /// The page's address once loaded: the login link's token must be gone from it.
    pub url: String,
}

/// Waits until the dashboard is live and shows `PEERS` peers and every panel mounted.
const DASHBOARD_LIVE: &str = r#"
(function poll() {
  const c = document.getElementById('peer-count').textContent;
  const sections = [...document.querySelectorAll('main > section[id^="panel-"]')];
  if (document.body.dataset.state !== 'live' || c !== 'PEERS' || sections.length === 0
      || sections.some(s => s.dataset.mounted !== 'true')) return setTimeout(poll, 20);
  done({ ok: { peers: Number(c), panels: sections.map(s => s.querySelector('h2').textContent), url: location.href } });
})();
"#;

impl Browser {
    /// Opens a node's dashboard at `login` (the URL `nodus ui` prints) and waits until it
    /// is live, shows `peers` peers and has mounted its services' panels.
    pub async fn dashboard(
        &self,
        login: &str,
        peers: usize,
        timeout: Duration,
    ) -> Result<DashboardView, BrowserError> {
        self.goto(login).await?;
        let v = self
            .run(
                &DASHBOARD_LIVE.replace("PEERS", &peers.to_string()),
                timeout,
            )
            .await?;
        serde_json::from_value(v["ok"].clone())
            .map_err(|e| BrowserError::Driver(format!("{e}: {v}")))
    }
}

/// One step as the narration panel shows it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ShownStep {
    pub what: String,
    pub state: String,
}

/// What the narration panel of a dashboard showed.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NarrationShown {
    pub steps: Vec<ShownStep>,
    /// The nodes of its activity list, one entry per line shown.
    pub activity_nodes: Vec<usize>,
    /// Its line about the nodes and steps.
    pub summary: String,
    /// The node map's description: how many nodes it draws, how many running.
    pub map: String,
}

/// Waits until the narration panel is mounted with at least `STEPS` steps, the first
/// `STEPS` of them ended, and at least `ACTIVITY` lines of activity.
const NARRATION_SHOWN: &str = r#"
(function poll() {
  const n = document.getElementById('narration');
  const items = n ? [...n.querySelectorAll('#narration-steps li')] : [];
  const lines = n ? [...n.querySelectorAll('#narration-activity li')] : [];
  if (!n || n.dataset.mounted !== 'true' || items.length < STEPS
      || items.slice(0, STEPS).some(li => li.dataset.state === 'running') || lines.length < ACTIVITY) return setTimeout(poll, 20);
  done({ ok: {
    steps: items.map(li => ({ what: li.querySelector('.what').textContent, state: li.dataset.state })),
    activity_nodes: lines.map(li => Number(li.dataset.node)),
    summary: document.getElementById('narration-summary').textContent,
    map: document.getElementById('narration-map').getAttribute('aria-label'),
  } });
})();
"#;

impl Browser {
    /// On a dashboard already open: waits until its narration panel shows its first
    /// `steps` steps ended and `activity` lines of what the nodes did.
    pub async fn narration(
        &self,
        steps: usize,
        activity: usize,
        timeout: Duration,
    ) -> Result<NarrationShown, BrowserError> {
        let script = NARRATION_SHOWN
            .replace("STEPS", &steps.to_string())
            .replace("ACTIVITY", &activity.to_string());
        let v = self.run(&script, timeout).await?;
        serde_json::from_value(v["ok"].clone())
            .map_err(|e| BrowserError::Driver(format!("{e}: {v}")))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every Chromium process it started share its process group.
        if let Some(pid) = self.driver.id() {
            // SAFETY: kill(2) with a negative pid signals that process group only.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let _ = self.driver.start_kill();
    }
}
