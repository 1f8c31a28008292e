//! Host ports esm hands out from `ESM_HOST_PORT_RANGE`: a deployment asks for ports
//! ([`PortWant`]), and each one it gets is a port [`super::resource::Resource`] whose
//! record id is the port itself, so inserting it is the allocation (two instances, two
//! replicas, never one port).

/// A published port a deployment needs on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortWant {
    /// The unit publishing it (a compose service).
    pub unit: String,
    /// The container port.
    pub target: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host port the manifest names itself, if any.
    pub fixed: Option<u16>,
}

impl PortWant {
    /// What the port is recorded under in the instance (`web/8080/tcp`).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.unit, self.target, self.protocol)
    }
}

/// The order to try a range's ports in for `holder`: from an offset its id picks, so
/// deployments racing for ports mostly try different ones first.
pub fn candidates(low: u16, high: u16, holder: &str) -> impl Iterator<Item = u16> {
    let len = usize::from(high - low) + 1;
    let start = super::pool::spread(holder) % len;
    (0..len).map(move |i| low + u16::try_from((start + i) % len).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_of_the_range_is_a_candidate_once() {
        let mut ports: Vec<u16> = candidates(30000, 30009, "i-1").collect();
        assert_eq!(ports.len(), 10);
        ports.sort_unstable();
        assert_eq!(ports, (30000..=30009).collect::<Vec<_>>());
        assert_eq!(candidates(65535, 65535, "x").collect::<Vec<_>>(), [65535]);
    }

    #[test]
    fn a_want_is_keyed_by_unit_target_and_protocol() {
        let want = PortWant { unit: "web".into(), target: 8080, protocol: "tcp".into(), fixed: None };
        assert_eq!(want.key(), "web/8080/tcp");
    }
}
