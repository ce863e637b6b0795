//! The emulator's resources, stored as the API's own JSON objects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Resources of one zone.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Zonal {
    pub templates: BTreeMap<String, Value>,
    pub instances: BTreeMap<String, Value>,
    pub instance_pools: BTreeMap<String, Value>,
    pub elastic_ips: BTreeMap<String, Value>,
    pub load_balancers: BTreeMap<String, Value>,
    pub private_networks: BTreeMap<String, Value>,
}

/// An asynchronous operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    pub id: String,
    /// The resource kind (`instance-pool`) and id of `reference`.
    pub kind: String,
    pub resource: String,
    /// Milliseconds since the Unix epoch when the operation leaves `pending`; `None`
    /// while work (a template download) is still running.
    pub ready_at_ms: Option<u64>,
    /// `(reason, message)` of a failed operation.
    pub failure: Option<(String, String)>,
}

/// Everything the emulator knows; saved to `--state FILE` after every change (and
/// loaded from it at start, so a test or a benchmark can also seed it).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub zones: BTreeMap<String, Zonal>,
    pub security_groups: BTreeMap<String, Value>,
    pub anti_affinity_groups: BTreeMap<String, Value>,
    pub ssh_keys: BTreeMap<String, Value>,
    pub operations: BTreeMap<String, Op>,
    /// Next host number for instance and elastic IP addresses.
    pub next_instance_ip: u32,
    pub next_elastic_ip: u32,
}

/// Instance public addresses: TEST-NET-2 (198.51.100.0/24), then TEST-NET-1
/// (192.0.2.0/24); documentation ranges (RFC 5737), never routed.
pub fn instance_ip(n: u32) -> Ipv4Addr {
    let n = n % 508;
    if n < 254 {
        Ipv4Addr::new(198, 51, 100, (n + 1) as u8)
    } else {
        Ipv4Addr::new(192, 0, 2, (n - 253) as u8)
    }
}

/// Elastic IP addresses: TEST-NET-3 (203.0.113.0/24, RFC 5737).
pub fn elastic_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, (n % 254 + 1) as u8)
}

impl State {
    pub fn zone(&mut self, zone: &str) -> &mut Zonal {
        self.zones.entry(zone.to_string()).or_default()
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The instance types the emulator offers (the `standard` family and a few others), with
/// ids derived from their names so they are stable across runs.
pub fn instance_types(zones: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    let sizes: [(&str, i64, i64); 10] = [
        ("micro", 1, 512),
        ("tiny", 1, 1024),
        ("small", 2, 2048),
        ("medium", 2, 4096),
        ("large", 4, 8192),
        ("extra-large", 4, 16384),
        ("huge", 8, 32768),
        ("mega", 12, 65536),
        ("titan", 16, 131072),
        ("jumbo", 24, 229376),
    ];
    for family in ["standard", "cpu", "memory"] {
        for (size, cpus, mib) in sizes {
            if family != "standard" && matches!(size, "micro" | "tiny" | "small") {
                continue;
            }
            out.push(serde_json::json!({
                "id": name_uuid(&format!("instance-type/{family}.{size}")),
                "family": family,
                "size": size,
                "cpus": cpus,
                "memory": mib * 1024 * 1024,
                "authorized": true,
                "zones": zones,
            }));
        }
    }
    out
}

/// A UUID-shaped id derived from a name.
pub fn name_uuid(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// RFC 3339 UTC time of `ms` milliseconds since the epoch.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_documentation_ranges() {
        for n in 0..2000 {
            let ip = instance_ip(n).octets();
            assert!(
                matches!(ip, [198, 51, 100, 1..=254] | [192, 0, 2, 1..=254]),
                "{ip:?}"
            );
            let e = elastic_ip(n).octets();
            assert!(matches!(e, [203, 0, 113, 1..=254]), "{e:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
