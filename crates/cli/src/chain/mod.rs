//! `nodus wallet|send|mine|chain|block|tx`: the chain, over the node's HTTP API. Keys stay
//! in this process: transactions are signed here and only the signed bytes go to the node.

mod args;
pub mod bench;
mod bench_import;
mod bench_intake;
mod bench_propagation;
pub mod demo;
mod token;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nodus_chain::keystore;
use nodus_chain::primitives::{Address, U256};
use nodus_chain::wallet::{Key, eip1559};
use nodus_core::DataDir;
use nodus_node::ApiClient;
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, s, table};

pub use args::{Commands, PasswordArgs, WalletCommand};

/// Tip offered per gas (1 gwei).
const TIP: u128 = 1_000_000_000;

pub fn is_local(c: &WalletCommand) -> bool {
    !matches!(c, WalletCommand::Balance { .. })
}

/// The wallet password: from --password-file, NODUS_WALLET_PASSWORD, or asked on the
/// terminal (twice when it protects a new account).
fn password(p: &PasswordArgs, new_account: bool) -> Result<String> {
    if let Some(f) = &p.password_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    if let Ok(pw) = std::env::var("NODUS_WALLET_PASSWORD")
        && !pw.is_empty()
    {
        return Ok(pw);
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!(
            "the wallet needs a password: give --password-file FILE, set NODUS_WALLET_PASSWORD, or run in a terminal to be asked"
        );
    }
    let pw = rpassword::prompt_password("wallet password: ")?;
    if new_account && rpassword::prompt_password("again: ")? != pw {
        bail!("the two passwords differ; nothing was written");
    }
    Ok(pw)
}

fn address(text: &str) -> Result<Address> {
    text.parse::<Address>()
        .map_err(|_| anyhow!("`{text}` is not an address (0x followed by 40 hex digits)"))
}

/// "1.5" is ether; "150wei" is wei.
pub fn parse_amount(text: &str) -> Result<U256> {
    let t = text.trim();
    if let Some(w) = t.strip_suffix("wei") {
        return w
            .trim()
            .parse::<U256>()
            .map_err(|_| anyhow!("`{text}`: wei must be a whole number"));
    }
    let t = t.strip_suffix("eth").unwrap_or(t).trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 18
        || whole.is_empty() && frac.is_empty()
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
    {
        bail!(
            "`{text}` is not an amount: write ether like 1.5 (at most 18 decimals) or wei like 1500wei"
        );
    }
    let whole = if whole.is_empty() {
        U256::ZERO
    } else {
        whole.parse::<U256>()?
    };
    let frac_wei = if frac.is_empty() {
        U256::ZERO
    } else {
        format!("{frac:0<18}").parse::<U256>()?
    };
    Ok(whole * U256::from(10u64).pow(U256::from(18)) + frac_wei)
}

pub fn format_ether(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18));
    let (whole, frac) = (wei / unit, wei % unit);
    let frac = format!("{frac:0>18}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{whole}")
    } else {
        format!("{whole}.{frac}")
    }
}

pub fn wallet_local(dir: &DataDir, c: WalletCommand, json: bool) -> Result<ExitCode> {
    let ks = keystore::dir(dir)?;
    match c {
        WalletCommand::New { password: p } => {
            let key = Key::random();
            let path = keystore::store(&ks, &key, &password(&p, true)?)?;
            report_account(&key.address, &path, "created", json);
        }
        WalletCommand::Import {
            key_or_file,
            password: p,
        } => {
            let pw = password(&p, !Path::new(&key_or_file).is_file())?;
            let key = if Path::new(&key_or_file).is_file() {
                keystore::open_file(Path::new(&key_or_file), &pw)?
            } else {
                Key::from_hex(&key_or_file).map_err(|_| {
                    anyhow!("give a private key as 64 hex digits, or the path of a keystore file")
                })?
            };
            let path = keystore::store(&ks, &key, &pw)?;
            report_account(&key.address, &path, "imported", json);
        }
        WalletCommand::List => {
            let accounts = keystore::list(&ks)?;
            if json {
                ui::json(&json!(accounts.iter().map(|(a, p)| json!({ "address": a.to_checksum(None), "file": p.display().to_string() })).collect::<Vec<_>>()));
            } else if accounts.is_empty() {
                println!("no accounts yet: `nodus wallet new` creates one");
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|(a, p)| vec![a.to_checksum(None), p.display().to_string()])
                    .collect();
                table(&["address", "keystore file"], &rows);
            }
        }
        WalletCommand::Balance { .. } => bail!("internal: balance needs the node"),
    }
    Ok(ExitCode::SUCCESS)
}

fn report_account(a: &Address, path: &Path, what: &str, json: bool) {
    if json {
        ui::json(&json!({ "address": a.to_checksum(None), "file": path.display().to_string() }));
    } else {
        println!("{what} account {}", a.to_checksum(None));
        println!(
            "keystore file {} (keystore v3; keep the password safe)",
            path.display()
        );
    }
}

pub async fn wallet_balance(
    api: &ApiClient,
    dir: &DataDir,
    c: WalletCommand,
    json: bool,
) -> Result<ExitCode> {
    let WalletCommand::Balance { address: a } = c else {
        bail!("internal: not a balance command")
    };
    let addresses: Vec<Address> = match a {
        Some(a) => vec![address(&a)?],
        None => keystore::list(&keystore::dir(dir)?)?
            .into_iter()
            .map(|(a, _)| a)
            .collect(),
    };
    if addresses.is_empty() {
        bail!("no wallet account yet: give an address, or create one with `nodus wallet new`");
    }
    let mut out = Vec::new();
    for a in addresses {
        let v = api
            .get(&format!("/api/v1/chain/accounts/{}", a.to_checksum(None)))
            .await?;
        out.push(v);
    }
    if json {
        ui::json(&Value::Array(out));
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|v| {
                let wei: U256 = s(&v["balance"]).parse().unwrap_or_default();
                vec![
                    s(&v["address"]),
                    format!("{} ETH", format_ether(wei)),
                    s(&v["nonce"]),
                ]
            })
            .collect();
        table(&["address", "balance", "next nonce"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn rpc(api: &ApiClient, method: &str, params: Value) -> Result<Value> {
    Ok(api
        .post(
            "/api/v1/chain/rpc",
            &json!({ "method": method, "params": params }),
        )
        .await?)
}

pub(crate) fn quantity(v: &Value) -> Result<u128> {
    let t = v
        .as_str()
        .ok_or_else(|| anyhow!("node answered {v}, not a quantity"))?;
    Ok(u128::from_str_radix(t.trim_start_matches("0x"), 16)?)
}

pub struct SendOptions {
    pub to: String,
    pub amount: String,
    pub from: Option<String>,
    pub password: PasswordArgs,
    pub legacy: bool,
    pub wait: bool,
}

pub async fn send(api: &ApiClient, dir: &DataDir, o: SendOptions, json: bool) -> Result<ExitCode> {
    let to = address(&o.to)?;
    let value = parse_amount(&o.amount)?;
    let from = o.from.as_deref().map(address).transpose()?;
    let key = keystore::unlock(&keystore::dir(dir)?, from, &password(&o.password, false)?)?;
    let account = api
        .get(&format!(
            "/api/v1/chain/accounts/{}",
            key.address.to_checksum(None)
        ))
        .await?;
    let nonce = account["nonce"]
        .as_u64()
        .ok_or_else(|| anyhow!("node gave no nonce: {account}"))?;
    let chain_id = quantity(&rpc(api, "eth_chainId", json!([])).await?)? as u64;
    let price = quantity(&rpc(api, "eth_gasPrice", json!([])).await?)?;
    let tx = if o.legacy {
        nodus_chain::wallet::legacy(chain_id, nonce, to, value, 21_000, price)
    } else {
        let base = price.saturating_sub(TIP);
        eip1559(
            chain_id,
            nonce,
            Some(to),
            value,
            Default::default(),
            21_000,
            base * 2 + TIP,
            TIP,
        )
    };
    let raw = key.sign_raw(tx);
    let sent = api
        .post("/api/v1/chain/txs", &json!({ "raw": hex::encode(&raw) }))
        .await?;
    let hash = s(&sent["hash"]);
    if !o.wait {
        if json {
            ui::json(&sent);
        } else {
            println!("sent {hash}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = (!json).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message(format!("{hash}: waiting to be mined"));
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
    let started = Instant::now();
    let receipt = loop {
        let v = api.get(&format!("/api/v1/chain/txs/{hash}")).await?;
        if !v["receipt"].is_null() {
            break v["receipt"].clone();
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "{hash} was accepted but not mined within 5 minutes: is any node mining? (`nodus mine`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        ui::json(&receipt);
    } else {
        let block = quantity(&receipt["blockNumber"]).unwrap_or_default();
        let status = if receipt["status"] == "0x1" {
            "succeeded"
        } else {
            "FAILED"
        };
        println!(
            "sent {} ETH to {} in block {block}: {status}",
            format_ether(value),
            to.to_checksum(None)
        );
        println!("transaction {hash}");
    }
    Ok(if receipt["status"] == "0x1" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn mine(
    api: &ApiClient,
    threads: Option<usize>,
    to: Option<String>,
    stop: bool,
    json: bool,
) -> Result<ExitCode> {
    if let Some(t) = &to {
        address(t)?;
    }
    let v = api
        .post(
            "/api/v1/chain/mine",
            &json!({ "enabled": !stop, "threads": threads, "coinbase": to }),
        )
        .await?;
    if json {
        ui::json(&v);
    } else if stop {
        println!("mining stopped");
    } else {
        println!(
            "mining with {} thread(s), rewards to {}",
            s(&v["threads"]),
            s(&v["coinbase"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(api: &ApiClient, json: bool) -> Result<ExitCode> {
    let v = api.get("/api/v1/chain").await?;
    if json {
        ui::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    println!("chain id     {}", s(&v["chain_id"]));
    println!("height       {}", s(&v["height"]));
    println!("tip          {}", s(&v["head"]));
    println!("difficulty   {}", s(&v["difficulty"]));
    println!("total work   {}", s(&v["total_work"]));
    println!("base fee     {} wei", s(&v["base_fee"]));
    let mining = if v["mining"]["enabled"] == true {
        format!(
            "on, {} H/s, {} thread(s), rewards to {}",
            s(&v["hash_rate"]),
            s(&v["mining"]["threads"]),
            s(&v["mining"]["coinbase"])
        )
    } else {
        "off (`nodus mine` starts it)".into()
    };
    println!("mining       {mining}");
    println!("peers        {}", s(&v["peers"]));
    println!("mempool      {} transaction(s)", s(&v["mempool"]));
    println!(
        "json-rpc     {}",
        if v["json_rpc"].is_null() {
            "off".into()
        } else {
            s(&v["json_rpc"])
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn block(api: &ApiClient, id: &str, json: bool) -> Result<ExitCode> {
    let v = api.get(&format!("/api/v1/chain/blocks/{id}")).await?;
    if json {
        ui::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let n = |k: &str| {
        quantity(&v[k])
            .map(|x| x.to_string())
            .unwrap_or_else(|_| s(&v[k]))
    };
    println!("block        {}", n("number"));
    println!("hash         {}", s(&v["hash"]));
    println!("parent       {}", s(&v["parentHash"]));
    println!("time         {}", n("timestamp"));
    println!("miner        {}", s(&v["miner"]));
    println!("difficulty   {}", n("difficulty"));
    println!("gas used     {} of {}", n("gasUsed"), n("gasLimit"));
    println!("base fee     {} wei", n("baseFeePerGas"));
    let txs = v["transactions"].as_array().cloned().unwrap_or_default();
    println!("transactions {}", txs.len());
    for t in txs {
        let wei = U256::from(quantity(&t["value"]).unwrap_or_default());
        println!(
            "  {}  {} -> {}  {} ETH",
            s(&t["hash"]),
            s(&t["from"]),
            s(&t["to"]),
            format_ether(wei)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tx(api: &ApiClient, hash: &str, json: bool) -> Result<ExitCode> {
    let v = api.get(&format!("/api/v1/chain/txs/{hash}")).await?;
    if json {
        ui::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let t = &v["transaction"];
    let r = &v["receipt"];
    let wei = U256::from(quantity(&t["value"]).unwrap_or_default());
    println!("transaction  {}", s(&t["hash"]));
    println!("from         {}", s(&t["from"]));
    println!(
        "to           {}",
        if t["to"].is_null() {
            "(contract creation)".into()
        } else {
            s(&t["to"])
        }
    );
    println!("value        {} ETH", format_ether(wei));
    println!("nonce        {}", quantity(&t["nonce"]).unwrap_or_default());
    if r.is_null() {
        println!("state        pending (in the mempool)");
    } else {
        println!(
            "block        {}",
            quantity(&r["blockNumber"]).unwrap_or_default()
        );
        println!(
            "state        {}",
            if r["status"] == "0x1" {
                "succeeded"
            } else {
                "failed"
            }
        );
        println!(
            "gas used     {}",
            quantity(&r["gasUsed"]).unwrap_or_default()
        );
        if !r["contractAddress"].is_null() {
            println!("contract     {}", s(&r["contractAddress"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a chain or wallet command: wallet bookkeeping locally, the rest against the
/// node on `g`'s data dir.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let dir = g.data_dir()?;
    match c {
        Commands::Wallet { command } if is_local(&command) => {
            wallet_local(&dir, command, g.json)
        }
        Commands::Wallet { command } => wallet_balance(&g.api()?, &dir, command, g.json).await,
        Commands::Send {
            to,
            amount,
            from,
            password,
            legacy,
            no_wait,
        } => {
            let opts = SendOptions {
                to,
                amount,
                from,
                password,
                legacy,
                wait: !no_wait,
            };
            send(&g.api()?, &dir, opts, g.json).await
        }
        Commands::Mine { threads, to, stop } => {
            mine(&g.api()?, threads, to, stop, g.json).await
        }
        Commands::Chain => status(&g.api()?, g.json).await,
        Commands::Block { id } => block(&g.api()?, &id, g.json).await,
        Commands::Tx { hash } => tx(&g.api()?, &hash, g.json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_ether_and_wei() {
        assert_eq!(
            parse_amount("1.5").unwrap(),
            U256::from(1_500_000_000_000_000_000u128)
        );
        assert_eq!(parse_amount("42wei").unwrap(), U256::from(42));
        assert_eq!(parse_amount("0.000000000000000001").unwrap(), U256::from(1));
        assert!(parse_amount("1.2.3").is_err());
        assert!(parse_amount("abc").is_err());
        assert_eq!(
            format_ether(U256::from(1_500_000_000_000_000_000u128)),
            "1.5"
        );
    }
}
