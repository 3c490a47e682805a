//! A PostgreSQL server of the test's own, for tests that stop and start the database: the
//! machine's server (127.0.0.1:5432) is shared and must never be stopped.
//!
//! `initdb` refuses to run as root, so as root the server runs as the `postgres` user
//! (`runuser`), in a temp directory it is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running private server on a free loopback port; stopped (immediately) when dropped.
pub struct PrivatePostgres {
    port: u16,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A PostgreSQL server program: on `PATH`, or where Debian keeps them.
fn program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin").join(name));
    on_path
        .chain(debian)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found on PATH or in /usr/lib/postgresql/*/bin"))
}

/// Whether this process runs as root (from `/proc/self/status`: no unsafe `geteuid`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// `program args...`, as the `postgres` user when this is root.
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PrivatePostgres {
    /// `initdb` a fresh cluster and start it; returns once it accepts connections.
    pub async fn start() -> PrivatePostgres {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("start PostgreSQL")
    }

    fn start_blocking() -> PrivatePostgres {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("pg");
        std::fs::create_dir(&root).unwrap();
        if is_root() {
            // The postgres user must enter the temp dir and own the cluster's directory.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&root);
            run(chown, "chown postgres");
        }
        let data = root.join("data");
        let log = root.join("postgres.log");
        let data_arg = data.to_str().expect("utf-8 path");
        run(
            as_postgres(
                &program("initdb"),
                &["-D", data_arg, "-U", "postgres", "-A", "trust", "-N"],
            ),
            "initdb",
        );
        let server = PrivatePostgres {
            port: free_port(),
            data,
            log,
            _dir: dir,
        };
        server.pg_ctl_start();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `pg_ctl -m immediate stop`: the server ends at once, as in a crash; its clients'
    /// connections drop. Returns once it is gone.
    pub async fn stop_immediately(&self) {
        let command = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        tokio::task::spawn_blocking(move || run(command, "pg_ctl stop"))
            .await
            .unwrap();
    }

    /// Starts the stopped server again (crash recovery included); returns once it accepts
    /// connections.
    pub async fn restart(&self) {
        let command = self.start_command();
        tokio::task::spawn_blocking(move || run(command, "pg_ctl start"))
            .await
            .unwrap();
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut all = vec!["-D", self.data.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        as_postgres(&program("pg_ctl"), &all)
    }

    fn start_command(&self) -> Command {
        let socket_dir = self.data.parent().expect("cluster dir");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            socket_dir.display()
        );
        let log = self.log.to_str().expect("utf-8 path").to_owned();
        let mut command = self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
        command.stdin(std::process::Stdio::null());
        command
    }

    fn pg_ctl_start(&self) {
        run(self.start_command(), "pg_ctl start");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Already stopped is fine: pg_ctl then fails, and there is nothing to do.
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]).output();
    }
}
