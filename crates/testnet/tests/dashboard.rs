//! The dashboard in a real headless Chromium: it loads without console errors, shows
//! the peers the API reports, keeps the token out of the address bar, and shows a login
//! prompt, never data, for a missing or wrong token. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/artefacts/dashboard/`.

#[path = "../../voice/tests/common/mod.rs"]
mod speech;

use std::path::PathBuf;
use std::time::Duration;

use nodus_msg::MsgHandle;
use nodus_node::client::ApiClient;
use nodus_testnet::browser::Browser;
use nodus_testnet::{Testnet, wait_until};
use nodus_torrent::{AddRequest, ShareRequest, TorrentHandle};
use rand::RngCore;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn artefact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("artefacts/dashboard")
        .join(name)
}

/// Ends a test's page: a screenshot kept as an artefact, and a console free of errors.
async fn end_page(browser: Browser, shot: &str) {
    browser.screenshot(&artefact(shot)).await.unwrap();
    assert_eq!(
        browser.console_errors().await.unwrap(),
        Vec::<String>::new()
    );
    browser.quit().await;
}

/// Waits for the page to be in `state` (`live` or `login`), then reports what it shows.
fn shown_when(state: &str) -> String {
    format!(
        r#"
(function poll() {{
  if (document.body.dataset.state !== '{state}') return setTimeout(poll, 20);
  done({{
    peers: document.getElementById('peer-count').textContent,
    rows: document.querySelectorAll('#peers tbody tr').length,
    dash_hidden: getComputedStyle(document.getElementById('dash')).display === 'none',
    login_hidden: getComputedStyle(document.getElementById('login')).display === 'none',
    events: document.querySelectorAll('#events li').length,
    why: document.getElementById('login-why').textContent,
    url: location.href,
    self: document.getElementById('self').textContent,
  }});
}})();
"#
    )
}

/// Waits until the page shows `n` peers.
fn peers_shown(n: usize) -> String {
    format!(
        r#"
(function poll() {{
  const c = document.getElementById('peer-count').textContent;
  if (document.body.dataset.state !== 'live' || c !== '{n}') return setTimeout(poll, 20);
  done({{ peers: c, rows: document.querySelectorAll('#peers tbody tr').length }});
}})();
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_network_and_asks_for_a_token_it_lacks() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(4, tmp.path()).await.unwrap();
    net.wait_connected(3, T).await.unwrap();
    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let status = api.get("/api/v1/status").await.unwrap();
    let base = net.node(0).endpoints.api.clone();

    // The files load without the token, under a policy that allows this origin only;
    // the data does not.
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("ui/app.js"));
    let data = http
        .get(format!("{base}/api/v1/peers"))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 401);

    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 900).await.unwrap();
    let want = api.get("/api/v1/peers").await.unwrap()["peers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(want, 3);
    let view = browser
        .dashboard(&api.dashboard_url(), want, T)
        .await
        .unwrap();
    assert!(!view.url.contains("token"), "{view:?}");
    assert!(view.panels.iter().any(|p| p == "Torrents"), "{view:?}");
    let live = browser.run(&shown_when("live"), T).await.unwrap();
    assert_eq!(live["self"], status["peer_id"], "{live}");
    assert_eq!(live["dash_hidden"], json!(false));
    assert_eq!(live["rows"], json!(want), "{live}");
    browser.screenshot(&artefact("network.png")).await.unwrap();
    assert_eq!(
        browser.console_errors().await.unwrap(),
        Vec::<String>::new()
    );

    // A peer leaves: the page follows the API without a reload.
    net.kill(3).await.unwrap();
    let after = browser.run(&peers_shown(2), T).await.unwrap();
    assert_eq!(after["rows"], json!(2), "{after}");
    let seen = browser
        .run(
            "done([...document.querySelectorAll('#events li')].map(l => l.textContent))",
            T,
        )
        .await
        .unwrap();
    assert!(
        seen.as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("netpeer_disconnected")),
        "{seen}"
    );
    assert_eq!(
        api.get("/api/v1/peers").await.unwrap()["peers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // No token in the tab: a login prompt, no data.
    browser
        .run("sessionStorage.clear(); done(null);", T)
        .await
        .unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    let missing = browser.run(&shown_when("login"), T).await.unwrap();
    assert_eq!(missing["dash_hidden"], json!(true), "{missing}");
    assert_eq!(missing["login_hidden"], json!(false), "{missing}");
    assert_eq!(missing["peers"], json!("-"), "{missing}");
    assert_eq!(missing["rows"], json!(0), "{missing}");
    assert_eq!(
        browser.console_errors().await.unwrap(),
        Vec::<String>::new()
    );

    // A wrong token: the node's refusal is shown, still no data.
    browser.goto(&format!("{base}/#token=wrong")).await.unwrap();
    let wrong = browser.run(&shown_when("login"), T).await.unwrap();
    assert!(
        wrong["why"].as_str().unwrap().contains("wrong API token"),
        "{wrong}"
    );
    assert_eq!(wrong["dash_hidden"], json!(true), "{wrong}");
    assert_eq!(wrong["login_hidden"], json!(false), "{wrong}");
    assert_eq!(wrong["peers"], json!("-"), "{wrong}");
    assert_eq!(wrong["rows"], json!(0), "{wrong}");
    browser.screenshot(&artefact("login.png")).await.unwrap();

    // Logging in through the form.
    let token = std::fs::read_to_string(net.data_dir(0).cookie_path()).unwrap();
    let form = format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('login-form').requestSubmit(); done(null);",
        Value::String(token.trim().to_string())
    );
    browser.run(&form, T).await.unwrap();
    let again = browser.run(&peers_shown(2), T).await.unwrap();
    assert_eq!(again["rows"], json!(2), "{again}");

    browser.quit().await;
    net.shutdown().await;
}

/// Clicks the first torrent card's Pause/Resume button once it reads `label` and the
/// map shows `at_least` pieces; reports the piece map as it was then.
fn click_when_filled(label: &str, at_least: u32) -> String {
    format!(
        r#"
(function poll() {{
  const map = document.querySelector('#panel-torrent canvas.piece-map');
  const b = document.querySelector('#panel-torrent button.pause');
  if (!map || !b || b.textContent !== '{label}' || !(Number(map.dataset.filled) >= {at_least})) return setTimeout(poll, 10);
  const shown = {{ filled: Number(map.dataset.filled), pieces: Number(map.dataset.pieces) }};
  b.click();
  done(shown);
}})();
"#
    )
}

/// Waits for the first torrent's piece map to show every piece; reports its legend.
const MAP_FULL: &str = r#"
(function poll() {
  const map = document.querySelector('#panel-torrent canvas.piece-map');
  if (!map || map.dataset.pieces === '0' || map.dataset.filled !== map.dataset.pieces) return setTimeout(poll, 20);
  done({
    filled: Number(map.dataset.filled),
    legend: [...document.querySelectorAll('#panel-torrent .legend .src')].map(s => s.textContent),
    button: document.querySelector('#panel-torrent button.pause').textContent,
  });
})();
"#;

async fn torrent_state(api: &ApiClient) -> Vec<Value> {
    api.get("/api/v1/torrent")
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn torrent_of(net: &Testnet, k: usize) -> TorrentHandle {
    net.node(k).service::<TorrentHandle>().unwrap().clone()
}

/// The page adds a magnet link and watches its piece map fill from two peers, each
/// holding one half: the first from the start, the second only after the page paused
/// and resumed the torrent. So what the page shows part way is fixed, not a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_torrent_panel_adds_a_magnet_fills_its_piece_map_pauses_and_removes() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, tmp.path()).await.unwrap();

    // Node 1 shares two files of 64 pieces each; node 2 takes the first file only.
    let dir = tmp.path().join("pair");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["a.bin", "b.bin"] {
        let mut data = vec![0u8; 1 << 20];
        rand::rng().fill_bytes(&mut data);
        std::fs::write(dir.join(name), &data).unwrap();
    }
    let shared = torrent_of(&net, 1)
        .share(ShareRequest {
            path: dir.display().to_string(),
            version: None,
            trackers: vec![],
            web_seeds: vec![],
            piece_length: Some(16 * 1024),
        })
        .await
        .unwrap();
    let half = torrent_of(&net, 2)
        .add(AddRequest {
            source: shared.magnet.clone(),
            files: Some(vec![1]),
            peers: vec![torrent_of(&net, 1).listen_addr().unwrap().to_string()],
            ..Default::default()
        })
        .await
        .unwrap();
    wait_until(T, "node 2 to have the first file", || async {
        torrent_of(&net, 2).get(&half.id).unwrap().pieces_have == 64
    })
    .await
    .unwrap();
    net.stop(1).await.unwrap();
    let first = torrent_of(&net, 2).listen_addr().unwrap().to_string();
    let magnet = format!("{}&x.pe={first}", shared.magnet);

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1180).await.unwrap();
    browser.goto(&api.dashboard_url()).await.unwrap();
    let mounted = r#"
(function poll() {
  const p = document.getElementById('panel-torrent');
  if (!p || p.dataset.mounted !== 'true') return setTimeout(poll, 20);
  done(p.querySelector('h2').textContent);
})();
"#;
    assert_eq!(browser.run(mounted, T).await.unwrap(), json!("Torrents"));

    // Add: the magnet link typed into the panel's form.
    let add = format!(
        "document.getElementById('torrent-source').value = {}; \
         document.querySelector('#panel-torrent form').requestSubmit(); done(null);",
        Value::String(magnet)
    );
    browser.run(&add, T).await.unwrap();

    // The first half arrives; Pause on the page pauses the torrent in the API.
    let part = browser
        .run(&click_when_filled("Pause", 64), T)
        .await
        .unwrap();
    assert_eq!(part, json!({ "filled": 64, "pieces": 128 }));
    wait_until(T, "the torrent to be paused", || async {
        torrent_state(&api).await[0]["state"] == "paused"
    })
    .await
    .unwrap();
    browser
        .screenshot(&artefact("torrent-half.png"))
        .await
        .unwrap();

    // Node 1 comes back with the whole; Resume on the page, and the map fills, each
    // half coloured by the peer it came from.
    net.restart(1).await.unwrap();
    let id = torrent_state(&api).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = torrent_of(&net, 1).listen_addr().unwrap().to_string();
    let resumed = browser
        .run(&click_when_filled("Resume", 64), T)
        .await
        .unwrap();
    assert_eq!(resumed["filled"], json!(64), "{resumed}");
    wait_until(T, "the torrent to be resumed", || async {
        torrent_state(&api).await[0]["state"] != "paused"
    })
    .await
    .unwrap();
    torrent_of(&net, 0)
        .add_peers(&id, std::slice::from_ref(&second))
        .unwrap();
    let full = browser.run(MAP_FULL, T).await.unwrap();
    assert_eq!(full["filled"], json!(128), "{full}");
    let legend: Vec<&str> = full["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        legend.contains(&first.as_str()) && legend.contains(&second.as_str()),
        "the legend names both peers, {first} and {second}: {full}"
    );
    let map = api
        .get(&format!("/api/v1/torrent/{id}/pieces"))
        .await
        .unwrap();
    let sources = map["sources"].as_array().unwrap();
    let of = |addr: &str| 2 + sources.iter().position(|s| s == addr).unwrap() as u64;
    let map: Vec<u64> = map["map"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(map[..64].iter().all(|&v| v == of(&first)), "{map:?}");
    assert!(map[64..].iter().all(|&v| v == of(&second)), "{map:?}");
    browser
        .screenshot(&artefact("torrent-done.png"))
        .await
        .unwrap();

    // Remove asks first; declined, nothing happens; accepted, the torrent goes.
    let remove = |answer: bool| {
        format!(
            "window.confirm = (q) => {{ window.asked = q; return {answer}; }}; \
             document.querySelector('#panel-torrent button.remove').click(); done(null);"
        )
    };
    browser.run(&remove(false), T).await.unwrap();
    let asked = browser.run("done(window.asked)", T).await.unwrap();
    assert!(asked.as_str().unwrap().starts_with("Remove "), "{asked}");
    assert_eq!(torrent_state(&api).await.len(), 1);
    browser.run(&remove(true), T).await.unwrap();
    wait_until(T, "the torrent to be removed", || async {
        torrent_state(&api).await.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(
        browser.console_errors().await.unwrap(),
        Vec::<String>::new()
    );

    browser.quit().await;
    net.shutdown().await;
}

/// A message written on the page: its state there moves on to delivered, as in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_from_the_page_turns_delivered_there() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let alice = net.node(0).service::<MsgHandle>().unwrap().clone();
    let bob = net.node(1).service::<MsgHandle>().unwrap().clone();
    nodus_testnet::msg::introduce(&alice, &bob, "alice", "bob")
        .await
        .unwrap();

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1400).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 1, T).await.unwrap();
    let write = r#"
(function poll() {
  const b = [...document.querySelectorAll('#panel-msg button.contact')].find(b => b.textContent === 'bob');
  if (!b) return setTimeout(poll, 20);
  b.click();
  document.getElementById('msg-text').value = 'hello from the page';
  document.querySelector('#panel-msg form.send').requestSubmit();
  done(null);
})();
"#;
    browser.run(write, T).await.unwrap();
    let delivered = r#"
(function poll() {
  const m = [...document.querySelectorAll('#panel-msg .messages li.out')].find(l => l.querySelector('.text').textContent === 'hello from the page');
  if (!m || !['delivered', 'read'].includes(m.dataset.state) || !m.querySelector('.msg-path')) return setTimeout(poll, 20);
  const path = m.querySelector('.msg-path');
  done({ id: m.dataset.id, state: m.dataset.state, shown: m.querySelector('.state').textContent,
         via: path.dataset.via, hops: [...path.querySelectorAll('.hop')].map(h => h.textContent) });
})();
"#;
    let shown = browser.run(delivered, T).await.unwrap();
    let history = api
        .get(&format!("/api/v1/msg/history/{}", bob.local_peer_id()))
        .await
        .unwrap();
    let sent = history
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == shown["id"])
        .unwrap_or_else(|| panic!("{shown} not in {history}"));
    assert!(
        sent["state"] == "delivered" || sent["state"] == "read",
        "{sent}"
    );
    // The way it went, as the API says: straight to bob, drawn me → bob.
    assert_eq!(sent["path"], json!({"via": "direct"}), "{sent}");
    assert_eq!(shown["via"], json!("direct"), "{shown}");
    assert_eq!(shown["hops"], json!(["me", "bob"]), "{shown}");
    assert_eq!(
        nodus_testnet::msg::incoming_texts(&bob, &alice.local_peer_id().to_string()).await,
        vec!["hello from the page".to_string()]
    );
    end_page(browser, "messages.png").await;
    net.shutdown().await;
}

/// Mining started and stopped from the page: the API follows, and the page draws the
/// blocks mined meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mining_starts_and_stops_from_the_page_and_its_blocks_are_drawn() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    assert_eq!(
        api.get("/api/v1/chain").await.unwrap()["mining"]["enabled"],
        json!(false)
    );
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1400).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 0, T).await.unwrap();
    let click_when = |label: &str| {
        format!(
            r#"
(function poll() {{
  const b = document.querySelector('#panel-chain button.mine');
  if (!b || b.textContent !== '{label}' || b.disabled) return setTimeout(poll, 20);
  b.click();
  done(null);
}})();
"#
        )
    };
    browser.run(&click_when("Start mining"), T).await.unwrap();
    let drawn = r#"
(function poll() {
  const b = document.querySelector('#panel-chain .block[data-number="2"]');
  if (!b) return setTimeout(poll, 20);
  done(Number(document.querySelector('#panel-chain .stats').dataset.height));
})();
"#;
    let height = browser.run(drawn, T).await.unwrap().as_u64().unwrap();
    assert!(height >= 2, "{height}");
    assert_eq!(
        api.get("/api/v1/chain").await.unwrap()["mining"]["enabled"],
        json!(true)
    );
    browser.run(&click_when("Stop mining"), T).await.unwrap();
    wait_until(T, "mining to stop", || async {
        api.get("/api/v1/chain").await.unwrap()["mining"]["enabled"] == json!(false)
    })
    .await
    .unwrap();
    // Mining stopped, the page's newest block comes to be the API's tip.
    let tip = api.get("/api/v1/chain").await.unwrap()["height"]
        .as_u64()
        .unwrap();
    let newest = format!(
        r#"
(function poll() {{
  const shown = [...document.querySelectorAll('#panel-chain .block')].map(b => Number(b.dataset.number));
  if (shown.pop() !== {tip}) return setTimeout(poll, 20);
  done(shown.length + 1);
}})();
"#
    );
    let drawn = browser.run(&newest, T).await.unwrap().as_u64().unwrap();
    assert_eq!(drawn, (tip + 1).min(12), "blocks drawn up to {tip}");
    end_page(browser, "chain.png").await;
    net.shutdown().await;
}

/// After a fetch through the SOCKS5 proxy, the page draws the circuit: its three relays
/// in order, as the API lists them, with the layers each stretch carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onion_panel_draws_a_circuit_hop_by_hop() {
    use nodus_testnet::onion::{add_relay, handle, http_server, socks_get, wait_relays};
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(1, tmp.path()).await.unwrap();
    for exit in [false, false, true] {
        add_relay(&mut net, exit).await.unwrap();
    }
    wait_relays(&net, 0, 3, 1, T).await.unwrap();
    let port = http_server(b"through three relays".to_vec()).await.unwrap();
    let proxy = handle(&net, 0).socks_addr().to_string();
    let got = socks_get(&proxy, &format!("localhost:{port}"), "/")
        .await
        .unwrap();
    assert!(got.ends_with(b"through three relays"));
    let status = handle(&net, 0).status().await;
    assert_eq!(status.circuits.len(), 1);
    let hops = status.circuits[0].hops.clone();

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let peers = api.get("/api/v1/peers").await.unwrap()["peers"]
        .as_array()
        .unwrap()
        .len();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1600).await.unwrap();
    browser
        .dashboard(&api.dashboard_url(), peers, T)
        .await
        .unwrap();
    let drawn = r#"
(function poll() {
  const c = document.querySelector('#panel-onion .circuit');
  if (!c) return setTimeout(poll, 20);
  done({
    hops: [...c.querySelectorAll('.hop[data-peer]')].map(h => h.dataset.peer),
    roles: [...c.querySelectorAll('.hop[data-peer] small')].map(s => s.textContent),
    layers: [...c.querySelectorAll('.link')].map(l => Number(l.dataset.layers)),
  });
})();
"#;
    let shown = browser.run(drawn, T).await.unwrap();
    assert_eq!(shown["hops"], json!(hops), "{shown}");
    assert_eq!(
        shown["roles"],
        json!(["guard", "middle", "exit"]),
        "{shown}"
    );
    assert_eq!(shown["layers"], json!([3, 2, 1, 0]), "{shown}");
    end_page(browser, "onion.png").await;
    net.shutdown().await;
}

/// The page at the sizes the issue names: 1,000 peers on the peer map and in the table
/// (200 rows and a count of the rest), and a piece map of 10,000 pieces, each drawn in
/// one pass. The time each took is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_peers_and_ten_thousand_pieces_are_drawn_in_one_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.dashboard(&api.dashboard_url(), 0, T).await.unwrap();
    // The page's own renderers, fed the sizes at once (what a refresh would hand them).
    let big = r#"
(async () => {
  const t0 = performance.now();
  net.peers = Array.from({ length: 1000 }, (_, i) => ({
    peer_id: '12D3KooW' + String(i).padStart(44, 'x'), addresses: ['/ip4/10.0.0.' + (i % 250) + '/tcp/4001'],
    agent: 'nodus/0.1.0', rtt_ms: i % 300, relayed: i % 7 === 0,
  }));
  renderNetwork();
  const peersMs = performance.now() - t0;
  const { drawMap } = await import('/ui/panels/torrent.js');
  const canvas = document.createElement('canvas');
  canvas.style.width = '1000px';
  document.body.append(canvas);
  const map = Array.from({ length: 10000 }, (_, i) => (i % 3 === 0 ? 0 : 2 + (i % 5)));
  const t1 = performance.now();
  drawMap(canvas, { pieces: 10000, sources: ['a', 'b', 'c', 'd', 'e'], map });
  const piecesMs = performance.now() - t1;
  done({
    count: document.getElementById('peer-count').textContent,
    rows: document.querySelectorAll('#peers tbody tr').length,
    more: document.getElementById('peers-more').textContent,
    label: document.getElementById('peer-map').getAttribute('aria-label'),
    filled: Number(canvas.dataset.filled), pieces: Number(canvas.dataset.pieces),
    peersMs, piecesMs,
  });
})();
"#;
    let v = browser.run(big, T).await.unwrap();
    println!(
        "1,000 peers drawn in {:.1} ms, 10,000 pieces in {:.1} ms",
        v["peersMs"].as_f64().unwrap(),
        v["piecesMs"].as_f64().unwrap()
    );
    assert_eq!(v["count"], json!("1000"), "{v}");
    assert_eq!(v["rows"], json!(200), "{v}");
    assert_eq!(v["more"], json!("and 800 more"), "{v}");
    assert_eq!(v["label"], json!("this node and its 1000 peers"), "{v}");
    assert_eq!(v["pieces"], json!(10000), "{v}");
    assert_eq!(v["filled"], json!(10000 - 3334), "{v}");
    browser.window_size(1280, 900).await.unwrap();
    end_page(browser, "thousand-peers.png").await;
    net.shutdown().await;
}

/// A project submitted from the page (the module chosen as a file) runs on two
/// volunteers; the page shows it finished with each volunteer's credit, as the API does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compute_project_submitted_from_the_page_finishes_with_its_volunteers_credit() {
    use nodus_compute::{ComputeHandle, examples};
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    for k in [1, 2] {
        net.node(k)
            .service::<ComputeHandle>()
            .unwrap()
            .set_volunteer(true, Some(1), None, None)
            .unwrap();
    }
    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1800).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 2, T).await.unwrap();
    let submit = format!(
        r#"
const bytes = new Uint8Array({module:?});
const dt = new DataTransfer();
dt.items.add(new File([bytes], 'primes.wasm', {{ type: 'application/wasm' }}));
document.getElementById('compute-module').files = dt.files;
document.getElementById('compute-name').value = 'primes';
document.getElementById('compute-from').value = '0';
document.getElementById('compute-to').value = '6';
document.getElementById('compute-args').value = '1000';
document.getElementById('compute-quorum').value = '2';
document.querySelector('#panel-compute form.add').requestSubmit();
done(null);
"#,
        module = examples::primes()
    );
    browser.run(&submit, T).await.unwrap();
    let finished = r#"
(function poll() {
  const p = document.querySelector('#panel-compute .project[data-state="Finished"]');
  if (!p) return setTimeout(poll, 20);
  done({
    id: p.dataset.id,
    volunteers: [...p.querySelectorAll('tbody tr')].map(r => ({ peer: r.dataset.peer, credit: Number(r.children[1].textContent) })),
  });
})();
"#;
    let shown = browser.run(finished, T).await.unwrap();
    let status = api
        .get(&format!(
            "/api/v1/compute/projects/{}",
            shown["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(status["done"], json!(6), "{status}");
    let mut want: Vec<Value> = status["volunteers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!({ "peer": v["peer"], "credit": v["credit"] }))
        .collect();
    let mut got = shown["volunteers"].as_array().unwrap().clone();
    let by_peer = |a: &Value, b: &Value| a["peer"].as_str().cmp(&b["peer"].as_str());
    want.sort_by(by_peer);
    got.sort_by(by_peer);
    assert_eq!(got, want);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().all(|v| v["credit"].as_u64().unwrap() > 0),
        "{got:?}"
    );
    end_page(browser, "compute.png").await;
    net.shutdown().await;
}

/// A note posted from the page shows in its feed and replicates to a follower's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_posted_from_the_page_reaches_a_followers_node() {
    use nodus_social::{SocialHandle, topics};
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let social = |k: usize| net.node(k).service::<SocialHandle>().unwrap().clone();
    let author = social(0).public_key();
    assert!(social(1).set_follow(author, true).await.unwrap());
    net.wait_topic_known(&topics::author(&author), 0, &[1], T)
        .await
        .unwrap();

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 2000).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 1, T).await.unwrap();
    let post = r#"
document.getElementById('social-content').value = 'hello from the page';
document.querySelector('#panel-social form.add').requestSubmit();
(function poll() {
  const n = [...document.querySelectorAll('#panel-social .feed li')].find(l => l.querySelector('.text')?.textContent === 'hello from the page');
  if (!n) return setTimeout(poll, 20);
  done({ id: n.dataset.id, author: n.dataset.author, who: n.querySelector('.who').textContent });
})();
"#;
    let shown = browser.run(post, T).await.unwrap();
    assert_eq!(shown["author"], json!(hex::encode(author)), "{shown}");
    assert_eq!(shown["who"], json!("me"), "{shown}");
    let follower = ApiClient::from_data_dir(&net.data_dir(1)).unwrap();
    wait_until(T, "the note on the follower's node", || async {
        follower
            .get("/api/v1/social/feed")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == shown["id"])
    })
    .await
    .unwrap();
    end_page(browser, "social.png").await;
    net.shutdown().await;
}

/// The vault's grants and audit log on the page; revoking there asks first, then the
/// grant is gone from the API and the revocation is in the log the page shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_from_the_page_is_gone_and_logged() {
    use nodus_vault::VaultHandle;
    use nodus_vault::synthetic::PATIENT;
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let patient = net.node(0).service::<VaultHandle>().unwrap().clone();
    patient.import(PATIENT.to_vec()).await.unwrap();
    let clinic = net.node(1).peer_id().to_string();
    patient
        .grant(&clinic, vec!["Observation".into()], None)
        .await
        .unwrap();

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 2400).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 1, T).await.unwrap();
    let revoke = |answer: bool| {
        format!(
            r#"
(function poll() {{
  const b = document.querySelector('#panel-vault tr[data-provider="{clinic}"] button.revoke');
  if (!b) return setTimeout(poll, 20);
  window.confirm = (q) => {{ window.asked = q; return {answer}; }};
  b.click();
  done(window.asked);
}})();
"#
        )
    };
    let asked = browser.run(&revoke(false), T).await.unwrap();
    assert!(asked.as_str().unwrap().starts_with("Revoke "), "{asked}");
    assert_eq!(
        api.get("/api/v1/vault/grants")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    browser.run(&revoke(true), T).await.unwrap();
    wait_until(T, "the grant to be revoked", || async {
        api.get("/api/v1/vault/grants")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await
    .unwrap();
    let logged = r#"
(function poll() {
  const actions = [...document.querySelectorAll('#panel-vault table.audit tbody tr')].map(r => r.dataset.action);
  if (!actions.includes('revoke') || document.querySelector('#panel-vault tr[data-provider]')) return setTimeout(poll, 20);
  done(actions);
})();
"#;
    let actions = browser.run(logged, T).await.unwrap();
    assert!(
        actions.as_array().unwrap().iter().any(|a| a == "grant"),
        "{actions}"
    );
    end_page(browser, "vault.png").await;
    net.shutdown().await;
}

/// A call between contacts shows on the page with its route; Hang up there asks first,
/// ends the call, and the history the page shows has it completed, with its quality.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_hung_up_from_the_page_ends_completed() {
    use nodus_voice::{Media, VoiceHandle};
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let msg = |k: usize| net.node(k).service::<MsgHandle>().unwrap().clone();
    let voice = |k: usize| net.node(k).service::<VoiceHandle>().unwrap().clone();
    nodus_testnet::msg::introduce(&msg(0), &msg(1), "alice", "bob")
        .await
        .unwrap();
    let input = speech::speech(tmp.path());
    let placed = voice(1)
        .call(
            "alice",
            Media {
                input: Some(input.clone()),
                ..Media::default()
            },
        )
        .await
        .unwrap();
    wait_until(T, "the call to ring at alice", || async {
        voice(0).list().iter().any(|c| c.id == placed.id)
    })
    .await
    .unwrap();
    voice(0)
        .answer(
            None,
            Media {
                record: Some(tmp.path().join("heard.wav")),
                ..Media::default()
            },
        )
        .await
        .unwrap();

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 2400).await.unwrap();
    browser.dashboard(&api.dashboard_url(), 1, T).await.unwrap();
    let id = placed.id.clone();
    let on = format!(
        r#"
(function poll() {{
  const c = document.querySelector('#panel-voice .call[data-id="{id}"]');
  // On, with the media's figures so far: the live call's quality.
  if (!c || c.dataset.state !== 'active' || !/[1-9][0-9]* frames in/.test(c.querySelector('div.hint').textContent)) return setTimeout(poll, 20);
  const quality = c.querySelector('div.hint').textContent;
  window.confirm = (q) => {{ window.asked = q; return true; }};
  c.querySelector('button.hangup').click();
  done({{ text: c.textContent, asked: window.asked, quality }});
}})();
"#
    );
    let shown = browser.run(&on, T).await.unwrap();
    assert_eq!(shown["asked"], json!("Hang up on bob?"), "{shown}");
    assert!(
        shown["quality"]
            .as_str()
            .unwrap()
            .contains("% lost, jitter"),
        "{shown}"
    );
    assert!(
        shown["text"].as_str().unwrap().contains("direct"),
        "{shown}"
    );
    let ended = format!(
        r#"
(function poll() {{
  const r = document.querySelector('#panel-voice table.history tr[data-id="{id}"]');
  if (!r) return setTimeout(poll, 20);
  done({{ outcome: r.dataset.outcome, quality: r.lastChild.textContent }});
}})();
"#
    );
    let row = browser.run(&ended, T).await.unwrap();
    assert_eq!(row["outcome"], json!("completed"), "{row}");
    // The media's figures, as the call's record keeps them.
    assert!(
        row["quality"].as_str().unwrap().contains("frames in"),
        "{row}"
    );
    let history = voice(0).history(1).unwrap();
    assert_eq!(history[0].id, placed.id);
    assert_eq!(
        serde_json::to_value(history[0].outcome).unwrap(),
        json!("completed")
    );
    end_page(browser, "voice.png").await;
    net.shutdown().await;
}

/// The watcher node's page narrates a testnet: a step as it runs and ends, the nodes
/// (one killed meanwhile drawn stopped), and what the others did about it, named by
/// their numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchers_page_narrates_each_step_and_what_the_nodes_did() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(3, tmp.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let watcher = net.start_watcher().await.unwrap();
    let narration = watcher.narration().clone();
    narration.set_title("a test of three nodes");
    let api = ApiClient::from_data_dir(&watcher.data_dir).unwrap();
    // Not a node of the testnet: no step can pick or stop it.
    assert_eq!(net.running(), vec![0, 1, 2]);
    let browser = Browser::start().await.unwrap();
    browser.goto(&api.dashboard_url()).await.unwrap();

    let first = narration.begin("node 2 is killed").unwrap();
    let running = r#"
(function poll() {
  const li = document.querySelector('#narration-steps li[data-index="0"]');
  if (!li || li.dataset.state !== 'running') return setTimeout(poll, 20);
  done({ what: li.querySelector('.what').textContent, summary: document.getElementById('narration-summary').textContent });
})();
"#;
    let shown = browser.run(running, T).await.unwrap();
    assert_eq!(shown["what"], json!("node 2 is killed"), "{shown}");
    assert!(
        shown["summary"]
            .as_str()
            .unwrap()
            .contains("step 1 running"),
        "{shown}"
    );

    let victim = net.node(2).peer_id();
    net.kill(2).await.unwrap();
    // The others notice; the watcher is told what they did.
    for k in [0, 1] {
        let n = net.node(k).net.clone();
        wait_until(T, "the killed node gone from the peers", || async {
            n.peers()
                .await
                .is_ok_and(|p| !p.iter().any(|p| p.peer_id == victim.to_string()))
        })
        .await
        .unwrap();
    }
    narration.finish(first, true, "nodes 0 and 1 dropped it");
    let second = narration.begin("a step that fails").unwrap();
    narration.finish(second, false, "FAILED: on purpose");

    let seen = browser.narration(2, 2, T).await.unwrap();
    assert_eq!(
        seen.steps,
        vec![
            nodus_testnet::browser::ShownStep {
                what: "node 2 is killed".into(),
                state: "ok".into()
            },
            nodus_testnet::browser::ShownStep {
                what: "a step that fails".into(),
                state: "failed".into()
            },
        ]
    );
    assert!(seen.summary.contains("1 ok, 1 failed"), "{}", seen.summary);
    assert!(
        seen.summary.contains("2 of 3 nodes running"),
        "{}",
        seen.summary
    );
    assert!(seen.map.contains("3 nodes, 2 running"), "{}", seen.map);
    // What the API holds is what the page shows.
    let view = api.get("/api/v1/narration").await.unwrap();
    assert_eq!(view["title"], json!("a test of three nodes"));
    assert_eq!(view["steps"][1]["figure"], json!("FAILED: on purpose"));
    let dropped = view["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == json!("peer_disconnected") && a["with"] == json!([2]))
        .cloned();
    let dropped = dropped.unwrap_or_else(|| panic!("no node said it lost node 2: {view}"));
    assert!(
        dropped["detail"].as_str().unwrap().contains("node 2"),
        "{dropped}"
    );
    assert!(seen.activity_nodes.iter().any(|k| *k == 0 || *k == 1));
    // Not in the events list: the narration has its own panel.
    let events = browser
        .run(
            "done([...document.querySelectorAll('#events li .svc')].filter(s => s.textContent === 'narration').length)",
            T,
        )
        .await
        .unwrap();
    assert_eq!(events, json!(0));
    end_page(browser, "narration.png").await;
    net.shutdown().await;
}

/// A torrent opened for streaming from the page: the panel links its player and file on
/// the gateway's port, the file link serves the shared bytes by range while they
/// download, and the torrent shows in the gateway's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_opened_from_the_page_streams_through_the_gateway() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(2, tmp.path()).await.unwrap();
    let mut data = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut data);
    let path = tmp.path().join("clip.bin");
    std::fs::write(&path, &data).unwrap();
    let shared = torrent_of(&net, 1)
        .share(ShareRequest {
            path: path.display().to_string(),
            version: None,
            trackers: vec![],
            web_seeds: vec![],
            piece_length: Some(16 * 1024),
        })
        .await
        .unwrap();
    let seeder = torrent_of(&net, 1).listen_addr().unwrap().to_string();
    let magnet = format!("{}&x.pe={seeder}", shared.magnet);

    let api = ApiClient::from_data_dir(&net.data_dir(0)).unwrap();
    let gateway = api.get("/api/v1/gateway").await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let browser = Browser::start().await.unwrap();
    browser.window_size(1280, 1100).await.unwrap();
    browser.goto(&api.dashboard_url()).await.unwrap();
    let open = format!(
        r#"
(function poll() {{
  const p = document.getElementById('panel-gateway');
  if (!p || p.dataset.mounted !== 'true') return setTimeout(poll, 20);
  document.getElementById('gateway-source').value = {};
  p.querySelector('form').requestSubmit();
  done(p.querySelector('h2').textContent);
}})();
"#,
        Value::String(magnet)
    );
    assert_eq!(
        browser.run(&open, T).await.unwrap(),
        json!("Content gateway")
    );
    let opened = r#"
(function poll() {
  const li = document.querySelector('#panel-gateway .opened li');
  const cached = [...document.querySelectorAll('#panel-gateway .cached li[data-id]')].map(l => l.dataset.id);
  if (!li || !cached.includes(li.dataset.id)) return setTimeout(poll, 20);
  done({ id: li.dataset.id, url: li.dataset.url, play: li.querySelector('a.play').href, file: li.querySelector('a.file').href, cached });
})();
"#;
    let shown = browser.run(opened, T).await.unwrap();
    let id = shown["id"].as_str().unwrap();
    assert_eq!(id, shared.id, "{shown}");
    assert_eq!(shown["file"], shown["url"], "{shown}");
    assert_eq!(
        shown["play"],
        json!(format!("{gateway}/play/{id}/clip.bin")),
        "{shown}"
    );
    // The link serves the file's bytes, a range at a time.
    let part = reqwest::Client::new()
        .get(shown["url"].as_str().unwrap())
        .header("Range", "bytes=500000-500999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], &data[500_000..501_000]);
    browser
        .run(
            "document.getElementById('panel-gateway').scrollIntoView(); done(null)",
            T,
        )
        .await
        .unwrap();
    end_page(browser, "gateway.png").await;
    net.shutdown().await;
}
