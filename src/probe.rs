//! `esm health`: asks a running esm's operator port for `/health` and exits 0 when it
//! answers 200. Meant for a container `HEALTHCHECK`, so the image needs no curl.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

/// Whether the esm configured by `config` reports itself healthy.
pub async fn healthy(config: &Config) -> Result<(), String> {
    let ip = if config.check_ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { config.check_ip };
    let addr = SocketAddr::new(ip, config.check_port);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot reach {addr}: {e}"))?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("cannot ask {addr}: {e}"))?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|e| format!("no answer from {addr}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within 5s"))??;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err(format!("{status}: {body}"))
    }
}
