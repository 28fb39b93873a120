//! The chain between real nodes on loopback: a transfer submitted to one node over
//! JSON-RPC, mined by another, its receipt read from a third; a miner cut off from the
//! others mines a private fork that is orphaned when it rejoins, and what its polling
//! filters and WebSocket subscriptions report of that.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use nodus_chain::primitives::{Address, U256};
use nodus_chain::spec::DEV_KEYS;
use nodus_chain::wallet::{Key, eip1559};
use nodus_chain::{ChainEvent, ChainHandle};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn chain(net: &Testnet, k: usize) -> ChainHandle {
    net.node(k)
        .service::<nodus_chain::ChainHandle>()
        .cloned()
        .expect("chain enabled")
}

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let reply: Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply
}

fn transfer(key: &Key, nonce: u64, to: Address, wei: u64) -> String {
    let tx = eip1559(
        31337,
        nonce,
        Some(to),
        U256::from(wei),
        Default::default(),
        21_000,
        10_000_000_000,
        1_000_000_000,
    );
    format!("0x{}", hex::encode(key.sign_raw(tx)))
}

/// Init code that emits one log (LOG0 of no data) and deploys an empty contract.
fn emit_log(key: &Key, nonce: u64) -> String {
    let tx = eip1559(
        31337,
        nonce,
        None,
        U256::ZERO,
        hex::decode("60006000a000").unwrap().into(),
        100_000,
        10_000_000_000,
        1_000_000_000,
    );
    format!("0x{}", hex::encode(key.sign_raw(tx)))
}

/// A JSON-RPC WebSocket client: answers by id, notifications kept in order.
struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    notes: VecDeque<Value>,
    next_id: u64,
}

impl Ws {
    async fn connect(http_url: &str) -> Ws {
        let url = http_url.replacen("http://", "ws://", 1);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Ws {
            socket,
            notes: VecDeque::new(),
            next_id: 1,
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.socket
            .send(Message::Text(req.to_string().into()))
            .await
            .unwrap();
        loop {
            let v = self.read().await;
            if v["id"] == json!(id) {
                return v;
            }
            self.notes.push_back(v);
        }
    }

    /// The next notification of subscription `sub` that `pick` accepts; earlier ones of
    /// `sub` are dropped, those of other subscriptions kept. Fails after [`T`].
    async fn note(&mut self, sub: &Value, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let mut others = VecDeque::new();
        let found = tokio::time::timeout(T, async {
            loop {
                let v = match self.notes.pop_front() {
                    Some(v) => v,
                    None => self.read().await,
                };
                assert_eq!(v["method"], "eth_subscription", "{v}");
                let result = &v["params"]["result"];
                if &v["params"]["subscription"] != sub {
                    others.push_back(v);
                } else if pick(result) {
                    return result.clone();
                }
            }
        })
        .await;
        others.append(&mut self.notes);
        self.notes = others;
        found.unwrap_or_else(|_| panic!("no notification: {what}"))
    }
}

async fn receipt(url: &str, hash: &str) -> Option<Value> {
    let r = rpc(url, "eth_getTransactionReceipt", json!([hash])).await;
    let v = r["result"].clone();
    (!v.is_null()).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_sent_to_a_is_mined_by_b_and_read_on_c() {
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let (a, b, c) = (chain(&net, 0), chain(&net, 1), chain(&net, 2));
    let miner = Address::repeat_byte(0xbb);
    b.set_mining(true, None, Some(miner));

    let key = Key::from_hex(DEV_KEYS[1]).unwrap();
    let to = Address::repeat_byte(0x42);
    let url_a = a.json_rpc_url().unwrap();
    let url_c = c.json_rpc_url().unwrap();
    let sent = rpc(
        &url_a,
        "eth_sendRawTransaction",
        json!([transfer(&key, 0, to, 12345)]),
    )
    .await;
    let hash = sent["result"]
        .as_str()
        .unwrap_or_else(|| panic!("refused: {sent}"))
        .to_string();

    wait_until(T, "the receipt on C", || async {
        receipt(&url_c, &hash).await.is_some()
    })
    .await
    .unwrap();
    let r = receipt(&url_c, &hash).await.unwrap();
    assert_eq!(r["status"], "0x1");
    assert_eq!(
        r["from"].as_str().unwrap().to_lowercase(),
        key.address.to_string().to_lowercase()
    );
    let block =
        rpc(&url_c, "eth_getBlockByHash", json!([r["blockHash"], false])).await["result"].clone();
    assert_eq!(
        block["miner"].as_str().unwrap().to_lowercase(),
        miner.to_string().to_lowercase(),
        "B mined it"
    );
    let bal = rpc(&url_c, "eth_getBalance", json!([to.to_string(), "latest"])).await;
    assert_eq!(bal["result"], "0x3039");
    // The same transaction again is refused with the error wallets know.
    let again = rpc(
        &url_a,
        "eth_sendRawTransaction",
        json!([transfer(&key, 0, to, 12345)]),
    )
    .await;
    let msg = again["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("already known") || msg.contains("nonce too low"),
        "{again}"
    );
    // Another chain id is refused.
    let foreign = {
        let tx = eip1559(
            1,
            1,
            Some(to),
            U256::from(1),
            Default::default(),
            21_000,
            10_000_000_000,
            1_000_000_000,
        );
        format!("0x{}", hex::encode(key.sign_raw(tx)))
    };
    let refused = rpc(&url_a, "eth_sendRawTransaction", json!([foreign])).await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("chain id"),
        "{refused}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_cut_off_mines_a_fork_that_is_orphaned_when_it_rejoins() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let a = chain(&net, 0);
    a.set_mining(true, None, Some(Address::repeat_byte(0xaa)));
    a.wait_for_height(3, T).await.unwrap();
    // C joins, syncs, then restarts alone on a new port (no bootstrap peer): cut off.
    let k = net.add_node(node_config(node_ip(2), &[])).await.unwrap();
    let addr_a = net.node(0).p2p_addr("tcp").unwrap();
    net.node(k).net.dial(addr_a.clone()).await.unwrap();
    let synced_to = a.read(|c| c.chain.head_number()).await.unwrap();
    assert!(
        chain(&net, k).wait_for_height(synced_to, T).await.unwrap() >= synced_to,
        "C synced"
    );
    net.kill(k).await.unwrap();
    net.restart_isolated(k).await.unwrap();
    let c = chain(&net, k);
    let fork_at = c.read(|c| c.chain.head_number()).await.unwrap();
    assert!(fork_at >= synced_to, "C kept its chain across the restart");
    let mut c_events = c.events();

    // C mines a private fork holding a transfer and a log that only C has seen, watched
    // by a log filter and by WebSocket subscriptions to logs and new heads.
    let key = Key::from_hex(DEV_KEYS[2]).unwrap();
    let to = Address::repeat_byte(0x77);
    let url_c = c.json_rpc_url().unwrap();
    let url_a = a.json_rpc_url().unwrap();
    let mut ws = Ws::connect(&url_c).await;
    let logs_sub = ws.call("eth_subscribe", json!(["logs", {}])).await["result"].clone();
    let heads_sub = ws.call("eth_subscribe", json!(["newHeads"])).await["result"].clone();
    assert!(logs_sub.is_string() && heads_sub.is_string());
    let log_filter = rpc(&url_c, "eth_newFilter", json!([{}])).await["result"].clone();
    let sent = rpc(
        &url_c,
        "eth_sendRawTransaction",
        json!([transfer(&key, 0, to, 777)]),
    )
    .await;
    let hash = sent["result"]
        .as_str()
        .unwrap_or_else(|| panic!("refused: {sent}"))
        .to_string();
    let sent = rpc(
        &url_c,
        "eth_sendRawTransaction",
        json!([emit_log(&Key::from_hex(DEV_KEYS[3]).unwrap(), 0)]),
    )
    .await;
    let log_tx = sent["result"].clone();
    assert!(log_tx.is_string(), "refused: {sent}");
    c.set_mining(true, None, Some(Address::repeat_byte(0xcc)));
    wait_until(T, "C's fork mined the transfer", || async {
        receipt(&url_c, &hash).await.is_some()
    })
    .await
    .unwrap();
    let first_head = ws.note(&heads_sub, "C's first fork block", |_| true).await;
    assert_eq!(first_head["number"], json!(format!("{:#x}", fork_at + 1)));
    let fork_log = ws
        .note(&logs_sub, "the log on C's fork", |l| {
            l["transactionHash"] == log_tx
        })
        .await;
    assert_eq!(fork_log["removed"], false);
    assert!(c.wait_for_height(fork_at + 3, T).await.unwrap() >= fork_at + 3);
    c.stop_mining().await.unwrap();
    let c_work: U256 = c.status().await.unwrap().total_work.parse().unwrap();
    // A block filter on C, up to date at its fork's tip.
    let latest = |url: String| async move {
        rpc(&url, "eth_getBlockByNumber", json!(["latest", false])).await["result"]["hash"].clone()
    };
    let filter = rpc(&url_c, "eth_newBlockFilter", json!([])).await["result"].clone();
    let fork_tip = latest(url_c.clone()).await;
    let changes = rpc(&url_c, "eth_getFilterChanges", json!([filter])).await;
    assert_eq!(changes["result"], json!([]), "{changes}");
    let logs = rpc(&url_c, "eth_getFilterChanges", json!([log_filter])).await["result"].clone();
    assert_eq!(logs, json!([fork_log]), "the log filter saw the fork's log");
    assert!(
        receipt(&url_a, &hash).await.is_none(),
        "A never saw C's transfer"
    );

    // Meanwhile A keeps mining until it has more work.
    wait_until(T, "A has more work than C", || async {
        let w: U256 = a.status().await.unwrap().total_work.parse().unwrap();
        w > c_work
    })
    .await
    .unwrap();
    a.stop_mining().await.unwrap();

    // C rejoins: it syncs A's heavier chain and drops its fork.
    net.node(k).net.dial(addr_a).await.unwrap();
    let reorg = tokio::time::timeout(T, async {
        loop {
            match c_events.recv().await {
                Ok(ChainEvent::Reorg {
                    depth,
                    returned_txs,
                    ..
                }) => return (depth, returned_txs),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("C reorganised onto A's chain");
    assert!(reorg.0 >= 3, "C's whole fork was orphaned: {reorg:?}");
    assert_eq!(reorg.1, 2, "its transfer and log went back to the pool");
    // The reorg happens at the first of A's blocks that outweighs C's fork; the rest of
    // A's chain may still be arriving.
    wait_until(T, "C to follow A's head", || async {
        c.status().await.unwrap().head == a.status().await.unwrap().head
    })
    .await
    .unwrap();
    // The filter reports the winning branch from the common ancestor on, and none of
    // the orphaned blocks.
    let changes = rpc(&url_c, "eth_getFilterChanges", json!([filter])).await["result"]
        .as_array()
        .unwrap()
        .clone();
    let after_fork = format!("{:#x}", fork_at + 1);
    let first = rpc(&url_c, "eth_getBlockByNumber", json!([after_fork, false])).await;
    assert_eq!(changes.first(), Some(&first["result"]["hash"]));
    assert_eq!(changes.last(), Some(&latest(url_c.clone()).await));
    assert!(
        !changes.contains(&fork_tip),
        "an orphaned block was reported"
    );
    // The subscription and the log filter report the orphaned log as removed, and the
    // heads subscription the winning branch from the common ancestor.
    let removed = ws
        .note(&logs_sub, "the orphaned log, removed", |l| {
            l["transactionHash"] == log_tx
        })
        .await;
    let mut expected = fork_log.clone();
    expected["removed"] = json!(true);
    assert_eq!(removed, expected);
    let logs = rpc(&url_c, "eth_getFilterChanges", json!([log_filter])).await["result"].clone();
    assert_eq!(logs, json!([expected]), "the log filter reports it removed");
    let head = ws
        .note(&heads_sub, "the winning branch's first block", |h| {
            h["hash"] == first["result"]["hash"]
        })
        .await;
    assert_eq!(head["parentHash"], first["result"]["parentHash"]);

    // The returned transfer reaches A and is mined on the winning chain.
    a.set_mining(true, None, None);
    wait_until(T, "the orphaned transfer is mined again", || async {
        receipt(&url_a, &hash).await.is_some()
    })
    .await
    .unwrap();
    let bal = rpc(&url_a, "eth_getBalance", json!([to.to_string(), "latest"])).await;
    assert_eq!(bal["result"], "0x309");
    // So is the log, which C's subscription reports again from its new block.
    let again = ws
        .note(&logs_sub, "the log mined again", |l| {
            l["transactionHash"] == log_tx
        })
        .await;
    assert_eq!(again["removed"], false);
    assert_ne!(again["blockHash"], fork_log["blockHash"]);
    assert!(
        ws.call("eth_unsubscribe", json!([logs_sub])).await["result"] == true
            && ws.call("eth_unsubscribe", json!([logs_sub])).await["result"] == false
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_syncs_headers_then_bodies_from_several_peers() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(2, dir.path()).await.unwrap();
    net.wait_connected(1, T).await.unwrap();
    let a = chain(&net, 0);
    a.set_hash_rate_cap(0);
    a.set_mining(true, None, None);
    // More than two batches of bodies (64 blocks each).
    a.wait_for_height(140, Duration::from_secs(90))
        .await
        .unwrap();
    a.stop_mining().await.unwrap();
    let b = chain(&net, 1);
    let target = a.read(|c| c.chain.head_number()).await.unwrap();
    b.wait_for_height(target, T).await.unwrap();

    // C joins through both and catches up from both.
    let boot: Vec<String> = [0, 1]
        .iter()
        .map(|k| net.node(*k).p2p_addr("tcp").unwrap().to_string())
        .collect();
    let k = net.add_node(node_config(node_ip(2), &boot)).await.unwrap();
    let c = chain(&net, k);
    let mut events = c.events();
    let (mut blocks, mut peers) = (0, std::collections::HashSet::new());
    tokio::time::timeout(T, async {
        while blocks < target as usize {
            if let Ok(ChainEvent::Synced {
                blocks: n,
                peers: p,
            }) = events.recv().await
            {
                blocks += n;
                peers.extend(p);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("C synced only {blocks} of {target} blocks"));
    assert!(
        peers.len() >= 2,
        "bodies came from {peers:?}, not from several peers"
    );
    // A block A sealed just as mining stopped may still be on its way.
    wait_until(T, "C to reach A's head", || async {
        c.status().await.unwrap().head == a.status().await.unwrap().head
    })
    .await
    .unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_invalid_blocks_is_banned() {
    nodus_testnet::test_logs();
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, dir.path()).await.unwrap();
    net.wait_connected(2, T).await.unwrap();
    let (victim, attacker) = (0, 2);
    let v = chain(&net, victim);
    let head = v.status().await.unwrap().head;
    let genesis = v.read(|c| c.chain.genesis_hash()).await.unwrap();
    let topic = v.block_topic().to_string();
    let attacker_id = net.node(attacker).peer_id();
    net.wait_topic_mesh(&topic, 1, T).await.unwrap();
    // Well-formed blocks on genesis, each without valid proof of work.
    for i in 0..20u64 {
        let block = nodus_chain::store::ChainBlock {
            header: alloy_consensus::Header {
                parent_hash: genesis,
                number: 1,
                timestamp: 1 + i,
                gas_limit: 30_000_000,
                difficulty: U256::from(1),
                base_fee_per_gas: Some(1_000_000_000),
                ..Default::default()
            },
            body: Default::default(),
        };
        let raw = nodus_chain::store::encode_block(&block);
        let _ = net.node(attacker).net.publish(&topic, raw).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until(T, "the victim to ban the attacker", || async {
        let peers = net.node(victim).net.peers().await.unwrap();
        !peers.iter().any(|p| p.peer_id == attacker_id.to_string())
    })
    .await
    .unwrap();
    let peers = net.node(victim).net.peers().await.unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p.peer_id == net.node(1).peer_id().to_string()),
        "the honest relay stays"
    );
    assert_eq!(
        v.status().await.unwrap().head,
        head,
        "nothing invalid was taken"
    );
    net.shutdown().await;
}

/// What a web page could send (plain-text bodies, a foreign Origin, a DNS name of its
/// own as Host) is refused, over HTTP and WebSocket; `eth_feeHistory` takes at most 100
/// percentiles, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_refuses_web_pages_and_bounds_fee_history() {
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, dir.path()).await.unwrap();
    let url = chain(&net, 0).json_rpc_url().unwrap();
    let port = url.rsplit(':').next().unwrap().to_string();
    let body =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": [] }).to_string();
    let send = |headers: Vec<(&'static str, String)>| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let mut req = reqwest::Client::new().post(&url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let json_type = ("content-type", "application/json".to_string());
    let (status, text) = send(vec![("content-type", "text/plain".into())]).await;
    assert_eq!(status, 415, "{text}");
    let (status, text) = send(vec![
        json_type.clone(),
        ("host", format!("evil.example:{port}")),
    ])
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("rpc_hosts"), "{text}");
    let (status, text) = send(vec![
        json_type.clone(),
        ("origin", "http://evil.example".into()),
    ])
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = send(vec![
        json_type.clone(),
        ("host", format!("localhost:{port}")),
    ])
    .await;
    assert_eq!(status, 200, "{text}");

    // A WebSocket from a web page (browsers always send its Origin) is refused; one from
    // a program is served, subscriptions and batches included.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut from_page = ws_url.as_str().into_client_request().unwrap();
    from_page
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(from_page).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a page's WebSocket was not refused: {other:?}"),
    }
    let mut ws = Ws::connect(&url).await;
    let unknown = ws.call("eth_subscribe", json!(["syncing"])).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let ranged = ws
        .call("eth_subscribe", json!(["logs", { "fromBlock": "0x0" }]))
        .await;
    assert_eq!(ranged["error"]["code"], -32602, "{ranged}");
    let bad_topic = ws
        .call("eth_subscribe", json!(["logs", { "topics": ["0x12"] }]))
        .await;
    assert_eq!(bad_topic["error"]["code"], -32602, "{bad_topic}");
    let batch = json!([
        { "jsonrpc": "2.0", "id": 7, "method": "eth_subscribe", "params": ["newHeads"] },
        { "jsonrpc": "2.0", "id": 8, "method": "eth_blockNumber", "params": [] },
    ]);
    ws.socket
        .send(Message::Text(batch.to_string().into()))
        .await
        .unwrap();
    let replies = ws.read().await;
    assert!(
        replies[0]["result"].as_str().is_some_and(|s| s.len() == 34)
            && replies[1]["result"] == "0x0",
        "{replies}"
    );

    let many: Vec<u32> = vec![50; 200_000];
    let refused = rpc(&url, "eth_feeHistory", json!(["0x400", "latest", many])).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100")
    );
    let unordered = rpc(&url, "eth_feeHistory", json!(["0x4", "latest", [50, 10]])).await;
    assert_eq!(unordered["error"]["code"], -32602, "{unordered}");
    let most: Vec<u32> = (0..100).collect();
    let fine = rpc(&url, "eth_feeHistory", json!(["0x400", "latest", most])).await;
    assert!(fine["result"]["reward"].is_array(), "{fine}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_batches_errors_and_pending_state() {
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, dir.path()).await.unwrap();
    let h = chain(&net, 0);
    let url = h.json_rpc_url().unwrap();
    assert_eq!(
        net.node(0).endpoints.extra.get("json_rpc"),
        Some(&url),
        "endpoints.json names it"
    );
    let client = reqwest::Client::new();
    let post = |body: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let batch = post(
        json!([
            { "jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [] },
            { "jsonrpc": "2.0", "id": 2, "method": "eth_noSuchMethod", "params": [] },
            { "jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": ["0x1234"] },
            { "jsonrpc": "2.0", "id": 4, "method": "net_version" },
        ])
        .to_string(),
    )
    .await;
    assert_eq!(batch[0]["result"], "0x7a69");
    assert_eq!(batch[1]["error"]["code"], -32601);
    assert_eq!(batch[2]["error"]["code"], -32602);
    assert_eq!(batch[3]["result"], "31337");
    assert_eq!(
        batch
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(post("{not json".into()).await["error"]["code"], -32700);
    assert_eq!(post("[]".into()).await["error"]["code"], -32600);
    // A creation whose code reverts: code 3, the revert data attached.
    let reverted = rpc(
        &url,
        "eth_call",
        json!([{ "data": "0x60006000fd" }, "latest"]),
    )
    .await;
    assert_eq!(reverted["error"]["code"], 3, "{reverted}");
    assert_eq!(reverted["error"]["data"], "0x");
    // A pending transaction counts for "pending", not for "latest".
    let key = Key::from_hex(DEV_KEYS[4]).unwrap();
    let who = key.address.to_string();
    rpc(
        &url,
        "eth_sendRawTransaction",
        json!([transfer(&key, 0, Address::repeat_byte(1), 1)]),
    )
    .await;
    assert_eq!(
        rpc(&url, "eth_getTransactionCount", json!([who, "pending"])).await["result"],
        "0x1"
    );
    assert_eq!(
        rpc(&url, "eth_getTransactionCount", json!([who, "latest"])).await["result"],
        "0x0"
    );
    let fees = rpc(&url, "eth_feeHistory", json!(["0x4", "latest", [50]])).await["result"].clone();
    assert_eq!(
        fees["baseFeePerGas"].as_array().unwrap().len(),
        2,
        "one block (genesis) and the next: {fees}"
    );
    // State reads name a block by number, tag or EIP-1898 object; one past the head is
    // an error that says so.
    let latest = rpc(&url, "eth_getBalance", json!([who, "latest"])).await["result"].clone();
    assert_eq!(
        rpc(&url, "eth_getBalance", json!([who, "0x0"])).await["result"],
        latest
    );
    assert_eq!(
        rpc(&url, "eth_getBalance", json!([who, {"blockNumber": "0x0"}])).await["result"],
        latest
    );
    let genesis =
        rpc(&url, "eth_getBlockByNumber", json!(["0x0", false])).await["result"]["hash"].clone();
    assert_eq!(
        rpc(&url, "eth_getBalance", json!([who, genesis])).await["result"],
        latest
    );
    assert_eq!(
        rpc(&url, "eth_getBalance", json!([who, {"blockHash": genesis}])).await["result"],
        latest
    );
    let ahead = rpc(&url, "eth_getBalance", json!([who, "0x9"])).await;
    assert!(
        ahead["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown block number 9"),
        "{ahead}"
    );
    net.shutdown().await;
}

/// A call that takes long for its gas: one BLAKE2 compression of 12 M rounds, the
/// request an attacker sent in issue 17 (0.79 s for one eth_estimateGas in release).
const HEAVY_CALL: &str = "0x5a62b71b009010602a575a6002900460e01b600052600160d4536040600060d56000600060095af150005b60006000fd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_calls_run_beside_the_chain_and_stop_when_their_caller_goes() {
    let dir = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, dir.path()).await.unwrap();
    let h = chain(&net, 0);
    let url = h.json_rpc_url().unwrap();
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_estimateGas",
        "params": [{ "data": HEAVY_CALL }] })
    .to_string();

    // A caller that sends a heavy call and leaves: its call stops.
    let addr = url.trim_start_matches("http://").to_string();
    let mut gone = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        request.len()
    );
    use tokio::io::AsyncWriteExt;
    gone.write_all(format!("{head}{request}").as_bytes())
        .await
        .unwrap();
    wait_until(T, "a heavy call running", || async {
        h.calls_running() > 0
    })
    .await
    .unwrap();
    drop(gone);
    wait_until(T, "the call of a caller that went away stops", || async {
        h.calls_abandoned() == 1
    })
    .await
    .unwrap();
    wait_until(T, "no call running", || async { h.calls_running() == 0 })
        .await
        .unwrap();

    // Heavy calls queued and running: the chain still answers at once.
    let heavy: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                rpc(&url, "eth_estimateGas", json!([{ "data": HEAVY_CALL }])).await
            })
        })
        .collect();
    wait_until(T, "a heavy call running", || async {
        h.calls_running() > 0
    })
    .await
    .unwrap();
    let number = rpc(&url, "eth_blockNumber", json!([])).await;
    assert!(number["result"].is_string(), "{number}");
    assert!(
        heavy.iter().any(|j| !j.is_finished()),
        "eth_blockNumber waited for the heavy calls"
    );
    for j in heavy {
        let r = j.await.unwrap();
        assert!(r["result"].is_string(), "{r}");
    }
    assert_eq!(h.calls_abandoned(), 1);

    // Halts say what happened (issue 17 point 16); a revert keeps code 3.
    let invalid = rpc(&url, "eth_call", json!([{ "data": "0xfe" }, "latest"])).await;
    assert_eq!(invalid["error"]["code"], -32000, "{invalid}");
    assert_eq!(invalid["error"]["message"], "invalid opcode: INVALID");
    let endless = rpc(
        &url,
        "eth_call",
        json!([{ "data": "0x5b600056" }, "latest"]),
    )
    .await;
    assert_eq!(endless["error"]["message"], "out of gas", "{endless}");
    let estimate = rpc(&url, "eth_estimateGas", json!([{ "data": "0x5b600056" }])).await;
    assert_eq!(
        estimate["error"]["message"], "gas required exceeds allowance (16777216)",
        "{estimate}"
    );
    // A transaction over EIP-7825's cap is refused as that, not as over the block's limit.
    let key = Key::from_hex(DEV_KEYS[0]).unwrap();
    let tx = eip1559(
        31337,
        0,
        Some(Address::repeat_byte(1)),
        U256::from(1),
        Default::default(),
        (1 << 24) + 1,
        10_000_000_000,
        1_000_000_000,
    );
    let raw = format!("0x{}", hex::encode(key.sign_raw(tx)));
    let refused = rpc(&url, "eth_sendRawTransaction", json!([raw])).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("transaction gas limit too high (cap: 16777216, tx: 16777217)"),
        "{refused}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_its_time_budget_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::start(0, dir.path()).await.unwrap();
    let mut config = node_config(node_ip(0), &[]);
    let mut c: nodus_chain::ChainConfig = config.section().unwrap();
    c.rpc_call_timeout_ms = 0;
    config.set_section(&c);
    let k = net.add_node(config).await.unwrap();
    let url = chain(&net, k).json_rpc_url().unwrap();
    for method in ["eth_call", "eth_estimateGas"] {
        let r = rpc(&url, method, json!([{ "data": "0x5b600056" }, "latest"])).await;
        assert_eq!(r["error"]["code"], -32000, "{r}");
        assert_eq!(r["error"]["message"], "execution aborted (timeout = 0ns)");
    }
    net.shutdown().await;
}
