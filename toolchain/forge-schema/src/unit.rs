//! The bit of systemd unit syntax forge needs: where `systemctl enable` would link a unit.

/// Targets named by a unit's `[Install]` section, each with the directory suffix its link
/// goes in: `WantedBy=` → `.wants`, `RequiredBy=` → `.requires`.
pub fn install_targets(unit: &str) -> Vec<(String, &'static str)> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        for (key, dir) in [("WantedBy=", "wants"), ("RequiredBy=", "requires")] {
            if let Some(v) = line.strip_prefix(key) {
                out.extend(v.split_whitespace().map(|t| (t.to_string(), dir)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sections() {
        let unit = "[Unit]\nWantedBy=x\n[Install]\nWantedBy=multi-user.target  timers.target\nRequiredBy=a.target\n";
        assert_eq!(
            install_targets(unit),
            [
                ("multi-user.target".to_string(), "wants"),
                ("timers.target".to_string(), "wants"),
                ("a.target".to_string(), "requires"),
            ]
        );
    }
}
