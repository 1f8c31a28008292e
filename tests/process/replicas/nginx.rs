//! nginx from the distribution as the load balancer in front of the replicas: one
//! process (`master_process off`), round-robin over the replicas, on a loopback port
//! of its own, with everything it writes in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::wait::within_blocking;
use crate::support::{eventually, free_port};

/// The response header naming every replica nginx passed a request to, in order
/// (`$upstream_addr`): more than one means the first failed (the killed replica) and
/// nginx passed the request on.
pub const UPSTREAM_HEADER: &str = "x-esm-upstream";

/// The nginx binary: `ESM_TEST_NGINX`, else `nginx` on the `PATH`, else Debian's
/// `/usr/sbin/nginx`. The test needs it: without one it fails, saying how to get it.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("ESM_TEST_NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file());
    on_path.expect("this test needs nginx: apt-get install nginx-light, or set ESM_TEST_NGINX to its binary")
}

/// A running nginx balancing over some replicas.
pub struct Nginx {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of `replicas` (`127.0.0.1:PORT`
    /// each), with its files in `dir`, and waits until it accepts connections.
    pub async fn start(dir: &Path, replicas: &[String]) -> Nginx {
        // Workers drop to `nobody` when nginx runs as root: they must reach the
        // directory for their temporary files.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, replicas)).expect("nginx.conf");
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            // Before it reads the configuration nginx would open the distribution's log.
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { child, url: format!("http://127.0.0.1:{port}") };
        eventually(Duration::from_secs(10), &format!("nginx to listen on port {port}"), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        nginx
    }
}

impl Drop for Nginx {
    /// Fast shutdown (SIGTERM), then SIGKILL if it lingers.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        within_blocking(Duration::from_secs(5), || (!matches!(self.child.try_wait(), Ok(None))).then_some(()));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration. OSB requests are idempotent by id (a PUT or DELETE sent again
/// with the same body answers consistently), so nginx may pass any request on to the
/// next replica when one fails (`non_idempotent`): a request that reached the killed
/// replica is answered by a live one, from what the store holds.
fn config(dir: &Path, port: u16, replicas: &[String]) -> String {
    let dir = dir.display();
    let servers: String =
        replicas.iter().map(|addr| format!("        server {addr} max_fails=1 fail_timeout=1s;\n")).collect();
    format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream esm {{
{servers}        keepalive 64;
        # Shorter than esm's wait for the next request on a kept-alive connection
        # (ESM_HEADER_READ_TIMEOUT, 10 s), so nginx, not esm, closes idle ones.
        keepalive_timeout 5s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://esm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries {tries};
            add_header X-Esm-Upstream $upstream_addr always;
        }}
    }}
}}
"#,
        tries = replicas.len()
    )
}
