//! A private Tor network on loopback, for `bench onion`'s reference column: three
//! directory authorities, four relays (two of them exits that may reach 127.0.0.1), a
//! client and an onion service, each Debian's `tor` with `TestingTorNetwork 1` and the
//! fast voting schedule Tor's own test networks (chutney) use. The torrc files are
//! written here; every process is killed when the network is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nodus_testnet::free_port;
use tokio::process::{Child, Command};

/// What the network gives the bench.
pub struct TorNet {
    children: Vec<Child>,
    /// The client's SOCKS5 port, on 127.0.0.1.
    pub socks: String,
    dir: PathBuf,
}

const COMMON: &str = "TestingTorNetwork 1
AssumeReachable 1
PathsNeededToBuildCircuits 0.25
TestingDirAuthVoteExit *
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
RunAsDaemon 0
ShutdownWaitLength 0
SafeLogging 0
Address 127.0.0.1
";

const AUTHORITY: &str = "AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
ExitPolicy reject *:*
";

impl TorNet {
    /// Starts the network with an onion service for 127.0.0.1:`http_port` on port 80.
    pub async fn start(root: &Path, http_port: u16) -> Result<TorNet> {
        if which("tor").is_none() || which("tor-gencert").is_none() {
            bail!("tor is not installed (apt-get install tor)");
        }
        let mut net = TorNet {
            children: Vec::new(),
            socks: String::new(),
            dir: root.to_path_buf(),
        };
        let mut authorities = String::new();
        let mut auth_ports = Vec::new();
        for i in 0..3 {
            let dir = root.join(format!("auth{i}"));
            std::fs::create_dir_all(dir.join("keys"))?;
            let (or, dirport) = (free_port()?, free_port()?);
            let gencert = Command::new("tor-gencert")
                .current_dir(&dir)
                .args(["--create-identity-key", "-m", "12", "-a"])
                .arg(format!("127.0.0.1:{dirport}"))
                .args([
                    "-i",
                    "keys/authority_identity_key",
                    "-s",
                    "keys/authority_signing_key",
                    "-c",
                    "keys/authority_certificate",
                    "--passphrase-fd",
                    "0",
                ])
                .stdin(Stdio::null())
                .output()
                .await?;
            if !gencert.status.success() {
                bail!("tor-gencert: {}", String::from_utf8_lossy(&gencert.stderr));
            }
            let cert = std::fs::read_to_string(dir.join("keys/authority_certificate"))?;
            let v3ident = cert
                .lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .ok_or_else(|| anyhow!("no fingerprint in the authority certificate"))?
                .to_string();
            let fp = Command::new("tor")
                .args(["--quiet", "--ignore-missing-torrc", "--list-fingerprint", "--orport", "1"])
                .args(["--dirserver", "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff"])
                .arg("--datadirectory")
                .arg(&dir)
                .output()
                .await?;
            let fp: String = String::from_utf8_lossy(&fp.stdout)
                .split_whitespace()
                .skip(1)
                .collect();
            if fp.len() != 40 {
                bail!("tor --list-fingerprint gave {fp:?}");
            }
            authorities.push_str(&format!(
                "DirAuthority auth{i} orport={or} no-v2 v3ident={v3ident} 127.0.0.1:{dirport} {fp}\n"
            ));
            auth_ports.push((dir, or, dirport));
        }
        for (i, (dir, or, dirport)) in auth_ports.into_iter().enumerate() {
            let extra = format!("{AUTHORITY}Nickname auth{i}\nORPort {or}\nDirPort {dirport}\nSocksPort 0\n");
            net.spawn(&dir, &authorities, &extra)?;
        }
        for i in 0..4 {
            let dir = root.join(format!("relay{i}"));
            let exit = if i < 2 {
                // Accepting all of it, not only 127/8: clients read exits from the
                // microdescriptors' policy summaries, which count public addresses only.
                "ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicy accept 127.0.0.0/8:*\nExitPolicy accept *:*\n"
            } else {
                "ExitPolicy reject *:*\n"
            };
            let extra = format!("Nickname relay{i}\nORPort {}\nSocksPort 0\n{exit}", free_port()?);
            net.spawn(&dir, &authorities, &extra)?;
        }
        let hs = root.join("service");
        let extra = format!(
            "Nickname service\nSocksPort 0\nHiddenServiceDir {}\nHiddenServicePort 80 127.0.0.1:{http_port}\n",
            hs.join("hs").display()
        );
        net.spawn(&hs, &authorities, &extra)?;
        let socks = free_port()?;
        net.spawn(&root.join("client"), &authorities, &format!("Nickname client\nSocksPort {socks}\n"))?;
        net.socks = format!("127.0.0.1:{socks}");
        Ok(net)
    }

    fn spawn(&mut self, dir: &Path, authorities: &str, extra: &str) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let torrc = dir.join("torrc");
        std::fs::write(
            &torrc,
            format!(
                "{COMMON}DataDirectory {}\nLog notice file {}\n{authorities}{extra}",
                dir.display(),
                dir.join("notice.log").display()
            ),
        )?;
        let child = Command::new("tor")
            .arg("-f")
            .arg(&torrc)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting tor")?;
        self.children.push(child);
        Ok(())
    }

    /// The onion service's address, once tor has written it.
    pub async fn onion_address(&self, timeout: Duration) -> Result<String> {
        let path = self.dir.join("service/hs/hostname");
        let start = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&path) {
                return Ok(s.trim().to_string());
            }
            if start.elapsed() > timeout {
                bail!("the Tor onion service wrote no hostname in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}
