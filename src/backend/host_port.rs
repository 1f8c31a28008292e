//! Whether a host port is already held by a process outside esm, where that can be
//! told from here: a port of `ESM_HOST_PORT_RANGE` someone else listens on would be
//! leased, refused by the engine, released and leased again by the next provision.
//! Leasing asks first and skips such ports.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

/// Whether binding `port`/`protocol` on `address` fails because something holds it.
/// Any other failure (no permission for a low port, an address not on this host) says
/// nothing about the port, so it is not held as far as esm can tell.
pub fn held_elsewhere(address: IpAddr, protocol: &str, port: u16) -> bool {
    let at = SocketAddr::new(address, port);
    let bound = match protocol {
        "udp" => UdpSocket::bind(at).map(drop),
        _ => TcpListener::bind(at).map(drop),
    };
    matches!(bound, Err(e) if e.kind() == ErrorKind::AddrInUse)
}

/// The ports the kernel hands out for outgoing connections
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where it says.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_range(&text)
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

/// How many ports of `range` lie inside `ephemeral`.
pub fn overlap(range: (u16, u16), ephemeral: (u16, u16)) -> u32 {
    let low = range.0.max(ephemeral.0);
    let high = range.1.min(ephemeral.1);
    if low > high { 0 } else { u32::from(high - low) + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_port_someone_listens_on_is_held_and_a_free_one_is_not() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let listener = TcpListener::bind((loopback, 0)).expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert!(held_elsewhere(loopback, "tcp", port));
        // The wildcard address overlaps the loopback listener, as the engine's would.
        assert!(held_elsewhere(IpAddr::V4(Ipv4Addr::UNSPECIFIED), "tcp", port));
        drop(listener);
        assert!(!held_elsewhere(loopback, "tcp", port));

        let socket = UdpSocket::bind((loopback, 0)).expect("bind udp");
        let port = socket.local_addr().expect("address").port();
        assert!(held_elsewhere(loopback, "udp", port));
    }

    #[test]
    fn the_kernel_range_is_parsed_and_overlaps_counted() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(parse_range("5 1"), None);
        assert_eq!(overlap((30000, 30099), (32768, 60999)), 0);
        assert_eq!(overlap((32000, 33000), (32768, 60999)), 233);
        assert_eq!(overlap((40000, 40009), (32768, 60999)), 10);
    }
}
