//! Running the real `esm` binary (and, for MongoDB tests, a server) as child processes,
//! for tests that kill, restart and share stores between processes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

pub mod catalog;
pub mod docker;
pub mod dockerd;
pub mod machine;
pub mod sse;
pub mod wait;
pub use wait::eventually;

/// The OSB version header value tests send.
pub const VERSION: &str = "2.17";

/// A builder of an HTTP client for tests. esm builds reqwest without a TLS provider
/// of its own (see `esm::tls`), so every test client needs the process's default one.
pub fn http_builder() -> reqwest::ClientBuilder {
    esm::tls::install_default_provider();
    reqwest::Client::builder()
}

/// An HTTP client for tests.
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client")
}

/// `GET url`.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// A loopback port nothing listens on (bound and released), for tests that need a
/// dead address or must name a port themselves. esm itself is started on port 0.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub use tempfile::TempDir;

/// A fresh directory under the system's temp dir, removed when dropped.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir().expect("temp dir")
}

/// The MongoDB URI of this run. Tests that need it are ignored unless the build saw
/// `ESM_TEST_MONGO_URI` (see `build.rs`); run without it, they fail saying so.
pub fn mongo_uri() -> String {
    std::env::var("ESM_TEST_MONGO_URI").expect("ESM_TEST_MONGO_URI names the MongoDB server for this test")
}

/// The address space a capped esm may use ([`Esm::start_capped`]): far above what it
/// needs (~100 MB), far below what the hostile inputs of the suites would take (alias
/// bombs: gigabytes; 900 KB ids copied around; a page of backlog held per subscriber).
pub const ADDRESS_SPACE: u64 = 2 << 30;

/// Where an esm process keeps its state.
#[derive(Clone, Debug)]
pub enum StoreSetup {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// MongoDB at this URI, in this database.
    Mongo { uri: String, db: String },
}

impl StoreSetup {
    /// A database of its own (a fresh name) on this run's MongoDB ([`mongo_uri`]).
    pub fn fresh_mongo() -> StoreSetup {
        StoreSetup::Mongo { uri: mongo_uri(), db: format!("esm_test_{}", uuid::Uuid::new_v4().simple()) }
    }
}

/// How a test starts esm, beyond its environment.
#[derive(Default)]
struct Launch<'a> {
    /// Cap on the address space (`prlimit --as`).
    address_space: Option<u64>,
    /// Where its log goes.
    log: Option<&'a Path>,
    /// Its log filter (a `RUST_LOG` value) when `log` is set; `info` if not given.
    filter: Option<&'a str>,
    /// Command-line arguments.
    args: &'a [&'a str],
    /// Its stdout and stderr, when the test wants them somewhere of its own; esm's
    /// serving line is then not seen, so the test names the ports (`--port`).
    output: Option<(Stdio, Stdio)>,
}

/// A running `esm` process.
pub struct Esm {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub api: String,
    /// `http://127.0.0.1:PORT` of the operator port.
    pub ops: String,
    /// Its store.
    pub store: StoreSetup,
}

impl Esm {
    /// Starts esm on free ports and waits until it answers.
    pub async fn start(store: &StoreSetup) -> Esm {
        Self::start_with(store, &[]).await
    }

    /// Starts esm, and through a client of it registers service `svc` (plan `plan`) with
    /// a dummy manifest running `script`: how most process tests begin. The esm, and
    /// the client.
    pub async fn start_registered(store: &StoreSetup, script: &str) -> (Esm, Client) {
        let esm = Self::start(store).await;
        let client = Client::new(&esm.api);
        client.register(script).await;
        (esm, client)
    }

    /// Starts esm with extra environment variables.
    pub async fn start_with(store: &StoreSetup, env: &[(&str, &str)]) -> Esm {
        Self::launch(store, env, Launch::default()).await
    }

    /// Starts esm with extra environment variables; its output (at `info` unless
    /// `TEST_ESM_LOG` says otherwise) goes to `log`, for tests that read it.
    pub async fn start_logging(store: &StoreSetup, env: &[(&str, &str)], log: Option<&Path>) -> Esm {
        Self::launch(store, env, Launch { log, ..Launch::default() }).await
    }

    /// Starts esm with extra environment variables and its address space capped at
    /// [`ADDRESS_SPACE`] (`prlimit --as`), so a test that makes it balloon fails (the
    /// allocation fails, esm dies) instead of taking the machine.
    pub async fn start_capped(store: &StoreSetup, env: &[(&str, &str)]) -> Esm {
        Self::launch(store, env, Launch { address_space: Some(ADDRESS_SPACE), ..Launch::default() }).await
    }

    /// [`Esm::start_capped`] with its embedded store in `dir`, and a client of it.
    pub async fn start_capped_in(dir: &TempDir, env: &[(&str, &str)]) -> (Esm, Client) {
        let esm = Self::start_capped(&StoreSetup::Embedded(dir.path().to_path_buf()), env).await;
        let client = Client::new(&esm.api);
        (esm, client)
    }

    /// Starts esm with command-line arguments and extra environment variables.
    pub async fn start_with_args(store: &StoreSetup, args: &[&str], env: &[(&str, &str)]) -> Esm {
        Self::launch(store, env, Launch { args, ..Launch::default() }).await
    }

    /// Starts esm with command-line arguments, extra environment variables, and its
    /// `(stdout, stderr)` where the test says (a file, a pipe nobody reads). esm's log
    /// then cannot tell where it listens: `args` must name both ports.
    pub async fn start_with_output(
        store: &StoreSetup,
        args: &[&str],
        env: &[(&str, &str)],
        output: (Stdio, Stdio),
    ) -> Esm {
        let esm = Self::spawn_with_output(store, args, env, output);
        esm.wait_until_serving().await;
        esm
    }

    /// Like [`Esm::start_with_output`], without waiting for it to answer: for tests of
    /// its start.
    pub fn spawn_with_output(store: &StoreSetup, args: &[&str], env: &[(&str, &str)], output: (Stdio, Stdio)) -> Esm {
        Self::spawn(store, env, Launch { args, output: Some(output), ..Launch::default() })
    }

    /// Starts esm with command-line arguments (`--port` to start again where a killed
    /// one served) and extra environment variables; its output, at `filter` (a
    /// `RUST_LOG` value) unless `TEST_ESM_LOG` says otherwise, goes to `log`.
    pub async fn start_with_log(
        store: &StoreSetup,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
        filter: &str,
    ) -> Esm {
        Self::launch(store, env, Launch { args, log: Some(log), filter: Some(filter), ..Launch::default() }).await
    }

    /// Starts esm and waits only until it listens (its serving line), not until it
    /// answers: for tests of an esm whose store is down.
    pub async fn start_unready(store: &StoreSetup, env: &[(&str, &str)]) -> Esm {
        Self::spawn(store, env, Launch::default())
    }

    async fn launch(store: &StoreSetup, env: &[(&str, &str)], how: Launch<'_>) -> Esm {
        let esm = Self::spawn(store, env, how);
        esm.wait_until_serving().await;
        esm
    }

    fn spawn(store: &StoreSetup, env: &[(&str, &str)], launch: Launch<'_>) -> Esm {
        let Launch { address_space, log, filter, args, output } = launch;
        let esm = env!("CARGO_BIN_EXE_esm");
        let mut cmd = match address_space {
            None => Command::new(esm),
            Some(bytes) => {
                // prlimit execs esm: the child's pid is esm's.
                let mut cmd = Command::new("/usr/bin/prlimit");
                cmd.arg(format!("--as={bytes}")).arg("--").arg(esm);
                cmd
            }
        };
        cmd.env_clear()
            // Few malloc arenas: the address-space cap then measures data, not arenas.
            .env("MALLOC_ARENA_MAX", "2")
            .env("ESM_IP", "127.0.0.1")
            .env("ESM_CHECK_IP", "127.0.0.1")
            // esm picks free ports and says which in its serving line.
            .env("ESM_PORT", "0")
            .env("ESM_CHECK_PORT", "0")
            .env("ESM_OPERATION_LEASE", "2")
            .env("ESM_BACKENDS", "dummy")
            .stdin(Stdio::null());
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(args);
        match store {
            StoreSetup::Embedded(dir) => {
                cmd.env("ESM_STORE", "embedded").env("ESM_DATA_DIR", dir);
            }
            StoreSetup::Mongo { uri, db } => {
                cmd.env("ESM_MONGO_URI", uri).env("ESM_MONGO_DB", db);
            }
        }
        if let Some((stdout, stderr)) = output {
            let child = cmd.stdout(stdout).stderr(stderr).spawn().expect("esm starts");
            let port = |flag: &str| {
                let at = args.iter().position(|a| *a == flag).unwrap_or_else(|| panic!("{flag} is in {args:?}"));
                args.get(at + 1).copied().unwrap_or_default().to_owned()
            };
            let (api, ops) = (port("--port"), port("--check-port"));
            return Esm {
                child,
                api: format!("http://127.0.0.1:{api}"),
                ops: format!("http://127.0.0.1:{ops}"),
                store: store.clone(),
            };
        }
        // esm's output goes through a pipe read here: its serving line says where it
        // listens; the rest goes where the test wants it (a file, the test's output
        // with TEST_ESM_LOG=debug, ...) or nowhere.
        let filter = std::env::var("TEST_ESM_LOG").ok().or_else(|| log.map(|_| filter.unwrap_or("info").to_owned()));
        let sink: Box<dyn Write + Send> = match (log, &filter) {
            (Some(path), _) => Box::new(std::fs::File::create(path).expect("log file")),
            (None, Some(_)) => Box::new(std::io::stderr()),
            (None, None) => Box::new(std::io::sink()),
        };
        // The serving line is always logged, whatever else the filter leaves out.
        cmd.env("RUST_LOG", format!("{},esm::app=info", filter.as_deref().unwrap_or("warn")));
        let (reader, writer) = std::io::pipe().expect("a pipe");
        cmd.stdout(writer.try_clone().expect("pipe")).stderr(writer);
        let mut child = cmd.spawn().expect("esm starts");
        // Our copy of the writing end must go, or the reader never sees the end.
        drop(cmd);
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || forward(reader, sink, &found));
        // The serving line comes after the start-up scan, which takes each operation in
        // progress over one by one: on a loaded SecantusDB, seconds per few dozen.
        let (api, ops) = match listening.recv_timeout(Duration::from_secs(90)) {
            Ok(addresses) => addresses,
            Err(_) => {
                let _ = child.kill();
                panic!("esm did not log where it serves within 90 s (it exited: {:?})", child.try_wait());
            }
        };
        Esm { child, api: format!("http://{api}"), ops: format!("http://{ops}"), store: store.clone() }
    }

    async fn wait_until_serving(&self) {
        let client = http();
        let catalog = format!("{}/v2/catalog", self.api);
        eventually(Duration::from_secs(20), &format!("esm to serve {catalog}"), || async {
            let r = client.get(&catalog).header("X-Broker-API-Version", VERSION).send().await.ok()?;
            // 401: it serves, and wants the credentials it was started with.
            (r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("esm exits")
    }
}

impl Drop for Esm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies esm's output to `sink`, sending the addresses of its serving line
/// (`esm is serving api=ADDR ops=ADDR`, text or JSON) to `found`.
fn forward(output: std::io::PipeReader, mut sink: Box<dyn Write + Send>, found: &mpsc::Sender<(String, String)>) {
    for line in BufReader::new(output).lines() {
        let Ok(line) = line else { return };
        if line.contains("esm is serving")
            && let (Some(api), Some(ops)) = (field(&line, "api"), field(&line, "ops"))
        {
            let _ = found.send((api, ops));
        }
        let _ = writeln!(sink, "{line}");
    }
}

/// A field of a log line: `name=value` (text) or `"name":"value"` (JSON).
fn field(line: &str, name: &str) -> Option<String> {
    if let Some((_, rest)) = line.split_once(&format!(" {name}=")) {
        return rest.split_whitespace().next().map(str::to_owned);
    }
    let json: Value = serde_json::from_str(line).ok()?;
    json.pointer(&format!("/fields/{name}")).or_else(|| json.get(name))?.as_str().map(str::to_owned)
}

/// Sends a signal with the system's `kill`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A small HTTP client that speaks OSB to one esm.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The API base URL.
    pub api: String,
}

impl Client {
    /// A client for `api`. A request esm does not answer within a minute fails (status
    /// 0), so a wedged esm fails the test instead of hanging it.
    pub fn new(api: &str) -> Self {
        let http = http_builder().timeout(std::time::Duration::from_secs(60)).build().expect("a client");
        Self { http, api: api.to_owned() }
    }

    /// Sends a request; `(status, JSON body)`.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api)).header("X-Broker-API-Version", VERSION);
        if let Some(body) = body {
            req = req.json(body);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.json().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Registers service `svc` (plan `plan`) and a dummy manifest with `script`.
    pub async fn register(&self, script: &str) {
        self.register_manifest("dummy", script).await;
    }

    /// Registers service `svc` (plan `plan`) and a manifest of `manifest_type`.
    pub async fn register_manifest(&self, manifest_type: &str, script: &str) {
        let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
                             "plans": [{"id": "plan", "name": "plan", "description": "d"}]});
        let (status, body) = self.send(reqwest::Method::PUT, "/v2/et/catalog", Some(&service)).await;
        assert!(matches!(status, 200 | 201), "register service: {status} {body}");
        let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": manifest_type,
                              "manifest_content": script});
        let (status, body) = self.send(reqwest::Method::PUT, "/v2/et/manifest/m", Some(&manifest)).await;
        assert!(matches!(status, 200 | 201), "register manifest: {status} {body}");
    }

    /// Provisions `id` on plan `plan` of `svc`; `(status, body)`.
    pub async fn provision(&self, id: &str, async_ok: bool) -> (u16, Value) {
        self.provision_on(id, "plan", async_ok).await
    }

    /// Provisions `id` on `plan` of service `svc`; `(status, body)`.
    pub async fn provision_on(&self, id: &str, plan: &str, async_ok: bool) -> (u16, Value) {
        let q = if async_ok { "?accepts_incomplete=true" } else { "" };
        let body = json!({"service_id": "svc", "plan_id": plan, "organization_guid": "o", "space_guid": "s"});
        self.send(reqwest::Method::PUT, &format!("/v2/service_instances/{id}{q}"), Some(&body)).await
    }

    /// Binds `binding` to instance `id` (service `svc`, plan `plan`); `(status, body)`.
    pub async fn bind(&self, id: &str, binding: &str) -> (u16, Value) {
        let body = json!({"service_id": "svc", "plan_id": "plan"});
        self.send(reqwest::Method::PUT, &format!("/v2/service_instances/{id}/service_bindings/{binding}"), Some(&body))
            .await
    }

    /// Deprovisions `id` (service `svc`, plan `plan`); `(status, body)`.
    pub async fn deprovision(&self, id: &str, async_ok: bool) -> (u16, Value) {
        let q = if async_ok { "&accepts_incomplete=true" } else { "" };
        self.send(reqwest::Method::DELETE, &format!("/v2/service_instances/{id}?service_id=svc&plan_id=plan{q}"), None)
            .await
    }

    /// esm's own view of instance `id` (`GET /v2/et/service_instances/{id}`); `(status, body)`.
    pub async fn view(&self, id: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, &format!("/v2/et/service_instances/{id}"), None).await
    }

    /// Polls an instance's last_operation until it is final (at most `limit`); the
    /// final answer.
    pub async fn settle(&self, id: &str, limit: Duration) -> (u16, Value) {
        let path = format!("/v2/service_instances/{id}/last_operation");
        eventually(limit, &format!("{id}'s operation to finish"), || async {
            let (status, body) = self.send(reqwest::Method::GET, &path, None).await;
            (status != 200 || body["state"] != json!("in progress")).then_some((status, body))
        })
        .await
    }

    /// The state of `id`'s last operation (`None` while there is none to report).
    pub async fn operation_state(&self, id: &str) -> Option<String> {
        let (status, body) =
            self.send(reqwest::Method::GET, &format!("/v2/service_instances/{id}/last_operation"), None).await;
        (status == 200).then(|| body["state"].as_str().unwrap_or_default().to_owned())
    }
}

/// A SecantusDB server of the test's own, for tests that stop and restart MongoDB.
pub struct MongoServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl MongoServer {
    /// Starts `python3 -m secantus` persisting to `dir` on a free port.
    pub async fn start(dir: &Path) -> MongoServer {
        let mut server = MongoServer { child: None, port: free_port(), dir: dir.to_owned() };
        server.restart().await;
        server
    }

    /// Its URI.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and every call hangs, the harshest
    /// way for a store to fail. [`MongoServer::kill`] still ends it.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    /// Starts it (again) on the same port and directory, and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(std::env::var("ESM_TEST_PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-m", "secantus", "--host", "127.0.0.1", "--port", &self.port.to_string(), "--storage-path"])
            .arg(&self.dir)
            .arg("--sync-on-commit")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m secantus starts (pip install secantusdb)");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(20), &format!("secantus to listen on port {port}"), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}
