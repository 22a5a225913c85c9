//! Pod IP allocation from each node's /24: unique per pod, stable for the pod's life.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// The pod range given on the command line is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {0:?} is not an IPv4 /16 like 10.244.0.0/16")]
    NotASlash16(String),
    #[error("node {node} has no free pod IP left in {cidr}")]
    Exhausted { node: String, cidr: String },
}

/// The /16 pod range; node `i` owns the /24 number `i`.
#[derive(Clone, Copy, Debug)]
pub struct PodRange {
    base: Ipv4Addr,
}

impl PodRange {
    pub fn parse(cidr: &str) -> Result<Self, IpamError> {
        let bad = || IpamError::NotASlash16(cidr.to_string());
        let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if len != "16" || addr.octets()[2] != 0 || addr.octets()[3] != 0 {
            return Err(bad());
        }
        Ok(PodRange { base: addr })
    }

    /// The /24 of node `index`, e.g. "10.244.2.0/24".
    pub fn node_cidr(&self, index: u8) -> String {
        let [a, b, _, _] = self.base.octets();
        format!("{a}.{b}.{index}.0/24")
    }

    fn node_ip(&self, index: u8, host: u8) -> Ipv4Addr {
        let [a, b, _, _] = self.base.octets();
        Ipv4Addr::new(a, b, index, host)
    }
}

/// Which pod (by UID) holds which IP, per node. Hosts .2-.254 are handed out; .1 stays free as the
/// conventional gateway address.
pub struct PodIps {
    range: PodRange,
    by_node: Mutex<HashMap<u8, HashMap<String, Ipv4Addr>>>,
}

impl PodIps {
    pub fn new(range: PodRange) -> Self {
        PodIps { range, by_node: Mutex::default() }
    }

    /// Records an IP a pod already shows (after a simnode restart), so it is not handed out twice.
    pub fn adopt(&self, node: u8, uid: &str, ip: Ipv4Addr) {
        let mut by_node = self.by_node.lock().expect("ipam lock");
        by_node.entry(node).or_default().insert(uid.to_string(), ip);
    }

    /// The pod's IP, allocating the lowest free one on first call.
    pub fn ip_for(&self, node: u8, node_name: &str, uid: &str) -> Result<Ipv4Addr, IpamError> {
        let mut by_node = self.by_node.lock().expect("ipam lock");
        let held = by_node.entry(node).or_default();
        if let Some(ip) = held.get(uid) {
            return Ok(*ip);
        }
        let used: BTreeSet<Ipv4Addr> = held.values().copied().collect();
        let ip = (2..=254u8)
            .map(|h| self.range.node_ip(node, h))
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| IpamError::Exhausted {
                node: node_name.to_string(),
                cidr: self.range.node_cidr(node),
            })?;
        held.insert(uid.to_string(), ip);
        Ok(ip)
    }

    /// Keeps only the allocations of pods for which `keep(uid)` holds.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut by_node = self.by_node.lock().expect("ipam lock");
        for held in by_node.values_mut() {
            held.retain(|uid, _| keep(uid));
        }
    }

    /// Frees the IP of a pod that is gone.
    pub fn release(&self, uid: &str) {
        let mut by_node = self.by_node.lock().expect("ipam lock");
        for held in by_node.values_mut() {
            held.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_unique_ips_per_node_and_reuses_released_ones() {
        let ips = PodIps::new(PodRange::parse("10.244.0.0/16").unwrap());
        let a = ips.ip_for(1, "n1", "a").unwrap();
        let b = ips.ip_for(1, "n1", "b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(ips.ip_for(1, "n1", "a").unwrap(), a, "stable for the same pod");
        assert_eq!(ips.ip_for(2, "n2", "c").unwrap(), Ipv4Addr::new(10, 244, 2, 2));
        ips.release("a");
        assert_eq!(ips.ip_for(1, "n1", "d").unwrap(), a);
        ips.adopt(1, "e", Ipv4Addr::new(10, 244, 1, 4));
        assert_eq!(ips.ip_for(1, "n1", "f").unwrap(), Ipv4Addr::new(10, 244, 1, 5));
    }

    #[test]
    fn rejects_other_ranges() {
        assert!(PodRange::parse("10.244.0.0/24").is_err());
        assert!(PodRange::parse("10.244.1.0/16").is_err());
        assert!(PodRange::parse("nonsense").is_err());
    }
}
