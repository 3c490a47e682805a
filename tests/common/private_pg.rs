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
    /// `-c name=value` settings added at start (TLS).
    settings: Vec<String>,
    /// The CA that signed the server's certificate, when it has TLS.
    ca: Option<PathBuf>,
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
        tokio::task::spawn_blocking(|| Self::start_blocking(false))
            .await
            .expect("start PostgreSQL")
    }

    /// [`PrivatePostgres::start`] with TLS on: a certificate for the name `localhost` only
    /// (no IP address), signed by a CA of its own ([`PrivatePostgres::ca_file`]).
    pub async fn start_with_tls() -> PrivatePostgres {
        tokio::task::spawn_blocking(|| Self::start_blocking(true))
            .await
            .expect("start PostgreSQL")
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        self.ca.as_deref().expect("started with TLS")
    }

    /// `postgres://postgres@localhost:<port>/postgres`: the name the certificate holds.
    pub fn url_by_name(&self) -> String {
        format!("postgres://postgres@localhost:{}/postgres", self.port)
    }

    fn start_blocking(tls: bool) -> PrivatePostgres {
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
        let (settings, ca) = if tls {
            let (settings, ca) = certificates(&root);
            (settings, Some(ca))
        } else {
            (Vec::new(), None)
        };
        let server = PrivatePostgres {
            port: free_port(),
            data,
            log,
            settings,
            ca,
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
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            socket_dir.display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let log = self.log.to_str().expect("utf-8 path").to_owned();
        let mut command = self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
        command.stdin(std::process::Stdio::null());
        command
    }

    fn pg_ctl_start(&self) {
        run(self.start_command(), "pg_ctl start");
    }
}

/// A CA and a server certificate for `localhost` signed by it (ECDSA P-256, two days), in
/// `dir`; the key readable by the server only. Returns the TLS settings and the CA file.
fn certificates(dir: &Path) -> (Vec<String>, PathBuf) {
    let openssl = |args: &[&str]| {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(args);
        run(command, &format!("openssl {}", args[0]));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=todo test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&key).arg(dir.join("server.pem"));
            run(chown, "chown postgres");
        }
    }
    let settings = vec![
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", dir.join("server.pem").display()),
        format!("ssl_key_file={}", dir.join("server.key").display()),
    ];
    (settings, dir.join("ca.pem"))
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Already stopped is fine: pg_ctl then fails, and there is nothing to do.
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]).output();
    }
}
