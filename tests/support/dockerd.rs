//! A test's own Docker engine: a private `dockerd` with its own socket, data root,
//! exec root and pid file, no default bridge and no iptables rules (user-defined
//! networks and published ports still work, through the userland proxy), so the fleet
//! suites have a second real engine beside the machine's, and one a test may kill
//! without touching the machine's engine. Needs root and `dockerd`; the suites using it
//! run when `ESM_TEST_DOCKERD=1`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::within_blocking;
use super::{TempDir, temp_dir};

/// The longest a private engine may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A private engine, stopped (and its directory removed) when dropped.
pub struct PrivateEngine {
    dir: TempDir,
    daemon: Option<Child>,
}

impl PrivateEngine {
    /// Starts one and loads the test image into it (`build-test-images.sh`).
    pub fn start() -> PrivateEngine {
        let dir = temp_dir("esm-dockerd");
        let mut engine = PrivateEngine { dir, daemon: None };
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
        // A killed daemon leaves its pid file, which a new one refuses to start over.
        let _ = std::fs::remove_file(root.join("docker.pid"));
        let log = std::fs::File::options().create(true).append(true).open(root.join("dockerd.log")).expect("a log");
        let daemon = Command::new("dockerd")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--data-root={}", root.join("data").display()))
            .arg(format!("--exec-root={}", root.join("exec").display()))
            .arg(format!("--pidfile={}", root.join("docker.pid").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            // Networks from a pool of its own, apart from the machine engine's.
            .arg("--default-address-pool=base=10.213.0.0/16,size=24")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.daemon = Some(daemon);
        within_blocking(START_LIMIT, || self.answers().then_some(()))
            .unwrap_or_else(|| panic!("the private dockerd did not answer within {START_LIMIT:?}"));
    }

    /// Kills its daemon at once (`kill -9`), as when the host dies.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
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
            let stopped = within_limit(Duration::from_secs(30), || matches!(daemon.try_wait(), Ok(Some(_))));
            if !stopped {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
        }
        // A daemon killed and not started again leaves its containerd and shims running,
        // and their mounts: what names this engine's exec root goes, then the mounts.
        let exec = self.dir.path().join("exec");
        let _ = Command::new("pkill").args(["-9", "-f", &exec.display().to_string()]).status();
        for part in ["exec", "data"] {
            let _ = Command::new("umount").args(["-R", "-l"]).arg(self.dir.path().join(part)).status();
        }
    }
}

/// Whether `done` held within `limit`, polled.
fn within_limit(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
