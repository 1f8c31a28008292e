//! A test's own Docker engine: a private `dockerd` with its own socket, data root,
//! exec root, pid file and default bridge, and no iptables rules (published ports work
//! through the userland proxy), so the fleet
//! suites have a second real engine beside the machine's, and one a test may kill
//! without touching the machine's engine. Needs root and `dockerd`; the suites using it
//! run when `ESM_TEST_DOCKERD=1`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::wait::within_blocking;
use super::{TempDir, temp_dir};

/// The longest a private engine may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Private engines started by this process so far: what numbers each one's bridge
/// and address pools.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// A private engine, stopped (and its directory and bridge removed) when dropped.
pub struct PrivateEngine {
    dir: TempDir,
    daemon: Option<Child>,
    /// Its own default bridge: a daemon without one (`--bridge=none`) deletes the
    /// machine engine's `docker0` at start.
    bridge: String,
    /// Its number among this process's private engines (its addresses' third octet).
    n: u32,
}

impl PrivateEngine {
    /// Starts one and loads the test image into it (`build-test-images.sh`).
    pub fn start() -> PrivateEngine {
        let dir = temp_dir("esm-dockerd");
        let n = STARTED.fetch_add(1, Ordering::SeqCst) % 100 + 1;
        let bridge = format!("esmb{}x{n}", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let done = Command::new("ip").args(args).status().expect("the ip command runs");
            assert!(done.success(), "ip {args:?}");
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.214.{n}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let mut engine = PrivateEngine { dir, daemon: None, bridge, n };
        engine.restart();
        let built = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker/build-test-images.sh"))
            .env("DOCKER_HOST", engine.host())
            .output()
            .expect("the image script runs");
        assert!(built.status.success(), "test image: {}", String::from_utf8_lossy(&built.stderr));
        engine
    }

    /// Its address, for `DOCKER_HOST` or an engine's `docker_host`.
    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.path().display())
    }

    /// Starts its daemon (again, after [`PrivateEngine::kill`]) on the same data root, and
    /// waits until it answers.
    pub fn restart(&mut self) {
        let root = self.dir.path();
        // A killed daemon leaves its pid file, which a new one refuses to start over, and
        // its containerd's, whose process may linger as a zombie no one reaps: the new
        // daemon would take it for running and wait for it.
        let _ = std::fs::remove_file(root.join("docker.pid"));
        let _ = std::fs::remove_file(root.join("exec/containerd/containerd.pid"));
        // And its networks' store: a daemon restarted over it deletes the stale default
        // network's bridge by the default name, the machine engine's `docker0`. (The
        // killed engine's containers are dead; their networks go with this.)
        let _ = std::fs::remove_file(root.join("data/network/files/local-kv.db"));
        let log = std::fs::File::options().create(true).append(true).open(root.join("dockerd.log")).expect("a log");
        let daemon = Command::new("dockerd")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--data-root={}", root.join("data").display()))
            .arg(format!("--exec-root={}", root.join("exec").display()))
            .arg(format!("--pidfile={}", root.join("docker.pid").display()))
            .arg(format!("--bridge={}", self.bridge))
            .args(["--iptables=false", "--ip-masq=false"])
            // Networks from a pool of its own, apart from the machine engine's and the
            // other private engines'.
            .arg(format!("--default-address-pool=base=10.{}.0.0/16,size=24", 100 + self.n))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.daemon = Some(daemon);
        within_blocking(START_LIMIT, || self.answers().then_some(())).unwrap_or_else(|| {
            let log = std::fs::read_to_string(root.join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!("the private dockerd did not answer within {START_LIMIT:?}; its log ends:\n{}", tail.join("\n"))
        });
    }

    /// Kills it at once (`kill -9`), as when its host dies: the daemon, its containerd
    /// and shims, and its containers' processes. (A containerd left running would keep
    /// the next daemon from starting its own.)
    pub fn kill(&mut self) {
        let running = self.cli(&["ps", "-q"]).unwrap_or_default();
        let ids: Vec<&str> = running.lines().collect();
        let mut inspect = vec!["inspect", "--format", "{{.State.Pid}}"];
        inspect.extend(&ids);
        let pids = if ids.is_empty() { String::new() } else { self.cli(&inspect).unwrap_or_default() };
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        self.kill_leftovers();
        for pid in pids.lines().filter(|p| p.trim() != "0") {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }

    /// Kills whatever names this engine's exec root (its containerd and shims) and
    /// waits until they are gone: a containerd still dying holds its database's lock,
    /// and the next daemon's containerd would wait on it.
    fn kill_leftovers(&self) {
        let exec = self.dir.path().join("exec").display().to_string();
        let _ = Command::new("pkill").args(["-9", "-f", &exec]).status();
        let gone = || {
            let found = Command::new("pgrep").args(["-f", &exec]).stdout(Stdio::null()).status();
            found.is_ok_and(|s| !s.success()).then_some(())
        };
        within_blocking(Duration::from_secs(10), gone).unwrap_or_else(|| panic!("{exec}'s processes did not die"));
    }

    /// Whether it answers now.
    pub fn answers(&self) -> bool {
        self.cli(&["version", "--format", "{{.Server.Version}}"]).is_some()
    }

    /// `docker <args>` on it: its stdout, or `None` if the CLI failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("docker").env("DOCKER_HOST", self.host()).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The containers on it labelled `esm.instance_id=<id>`.
    pub fn containers_of(&self, id: &str) -> Vec<String> {
        let filter = format!("label=esm.instance_id={id}");
        let listed = self.cli(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        listed.lines().map(str::to_owned).collect()
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        // A graceful stop takes its containers and its containerd down with it.
        if let Some(mut daemon) = self.daemon.take() {
            let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
            let stopped = within_blocking(Duration::from_secs(30), || daemon.try_wait().ok().flatten());
            if stopped.is_none() {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
        }
        // A daemon that did not stop cleanly leaves its containerd and shims running, and
        // their mounts.
        self.kill_leftovers();
        for part in ["exec", "data"] {
            let _ = Command::new("umount")
                .args(["-R", "-l"])
                .arg(self.dir.path().join(part))
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}
