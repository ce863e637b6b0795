//! Security groups and their rules, and private networks.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Serialize, Serializer};

use super::{Labels, Ref};
use crate::diff::{Diff, FieldChange};

/// A security group. Its description is sent at creation only (the API has no update
/// call for it); its external sources are managed in place.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    pub name: String,
    pub description: Option<String>,
    pub external_sources: BTreeSet<String>,
}

impl SecurityGroup {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.field("external-sources", |g| &g.external_sources);
        d.changes
    }
}

/// Which traffic a rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "ingress" => Some(Direction::Ingress),
            "egress" => Some(Direction::Egress),
            _ => None,
        }
    }
}

/// A rule's protocol, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Ah,
    Esp,
    Gre,
    Ipip,
    All,
    /// One this forge does not know (a newer API): kept so the rule can still be removed.
    Other(String),
}

impl Protocol {
    pub fn as_str(&self) -> &str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Ah => "ah",
            Protocol::Esp => "esp",
            Protocol::Gre => "gre",
            Protocol::Ipip => "ipip",
            Protocol::All => "all",
            Protocol::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Protocol {
        match s {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "icmpv6" => Protocol::Icmpv6,
            "ah" => Protocol::Ah,
            "esp" => Protocol::Esp,
            "gre" => Protocol::Gre,
            "ipip" => Protocol::Ipip,
            "all" => Protocol::All,
            other => Protocol::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Direction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a rule's traffic comes from (or goes to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A security group: one of the platform's, or another by id.
    Group(Ref),
    /// A CIDR.
    Network(String),
    /// An Exoscale-maintained public group, by name.
    Public(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Group(r) => write!(f, "{r}"),
            Peer::Network(n) => f.write_str(n),
            Peer::Public(n) => write!(f, "public:{n}"),
        }
    }
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A security group rule. Rules have no update call: a different rule is another rule, so
/// every field of it is part of its key ([`Rule::key`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub group: Ref,
    pub direction: Direction,
    pub protocol: Protocol,
    pub start_port: Option<u16>,
    pub end_port: Option<u16>,
    pub peer: Peer,
    /// Sent at creation only.
    pub description: Option<String>,
}

impl Rule {
    /// An ingress TCP rule on `group` from `peer` (a group key) for one port.
    pub fn tcp_from(group: &str, port: u16, peer: &str, description: &str) -> Rule {
        Rule::tcp_range_from(group, (port, port), peer, description)
    }

    /// An ingress TCP rule on `group` from `peer` (a group key) for a port range.
    pub fn tcp_range_from(
        group: &str,
        (start, end): (u16, u16),
        peer: &str,
        description: &str,
    ) -> Rule {
        Rule {
            group: Ref::key(group),
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            start_port: Some(start),
            end_port: Some(end),
            peer: Peer::Group(Ref::key(peer)),
            description: Some(description.to_string()),
        }
    }

    /// The rule's key: its group and everything that identifies it
    /// (`rule-vault-server-ingress-tcp-8200-from-sg-operator`).
    pub fn key(&self) -> String {
        let ports = match (self.start_port, self.end_port) {
            (Some(s), Some(e)) if s == e => format!("-{s}"),
            (Some(s), Some(e)) => format!("-{s}-{e}"),
            _ => String::new(),
        };
        let peer = match &self.peer {
            Peer::Group(Ref::Key(k)) => k.clone(),
            other => other.to_string(),
        }
        .replace(['/', ':', '.'], "_");
        let group = match &self.group {
            Ref::Key(k) => k.trim_start_matches("sg-").to_string(),
            Ref::Foreign(id) => id.clone(),
        };
        format!(
            "rule-{group}-{}-{}{ports}-from-{peer}",
            self.direction.as_str(),
            self.protocol
        )
    }

    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.replacing("group", |r| &r.group);
        d.replacing("flow-direction", |r| &r.direction);
        d.replacing("protocol", |r| &r.protocol);
        d.replacing("start-port", |r| &r.start_port);
        d.replacing("end-port", |r| &r.end_port);
        d.replacing("peer", |r| &r.peer);
        d.changes
    }
}

/// A private network; with netmask, start and end it is managed (Exoscale runs DHCP).
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateNetwork {
    pub name: String,
    pub description: Option<String>,
    pub netmask: Option<String>,
    pub start_ip: Option<String>,
    pub end_ip: Option<String>,
    pub labels: Labels,
}

impl PrivateNetwork {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.field("description", |n| &n.description);
        d.field("end-ip", |n| &n.end_ip);
        d.field("labels", |n| &n.labels);
        d.field("netmask", |n| &n.netmask);
        d.field("start-ip", |n| &n.start_ip);
        d.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_keys_name_what_identifies_the_rule() {
        let r = Rule::tcp_from("sg-vault-server", 8200, "sg-operator", "API");
        assert_eq!(
            r.key(),
            "rule-vault-server-ingress-tcp-8200-from-sg-operator"
        );
        let mut net = r.clone();
        net.peer = Peer::Network("198.51.100.0/24".into());
        net.start_port = Some(30000);
        net.end_port = Some(32767);
        assert_eq!(
            net.key(),
            "rule-vault-server-ingress-tcp-30000-32767-from-198_51_100_0_24"
        );
        let mut icmp = r;
        icmp.protocol = Protocol::parse("icmp");
        icmp.start_port = None;
        icmp.end_port = None;
        icmp.peer = Peer::Group(Ref::Foreign("abcd".into()));
        assert_eq!(icmp.key(), "rule-vault-server-ingress-icmp-from-id_abcd");
    }

    #[test]
    fn any_change_of_a_rule_replaces_it_and_the_description_is_not_compared() {
        let a = Rule::tcp_from("sg-a", 22, "sg-b", "one");
        let mut b = a.clone();
        b.description = Some("two".into());
        assert!(a.diff(Some(&b)).is_empty());
        b.end_port = Some(23);
        let c = a.diff(Some(&b));
        assert!(c.iter().all(|c| c.forces_replacement) && c.len() == 1);
    }

    #[test]
    fn unknown_protocols_survive_a_round_trip() {
        assert_eq!(Protocol::parse("sctp").as_str(), "sctp");
        assert_eq!(Protocol::parse("tcp"), Protocol::Tcp);
        assert_eq!(Direction::parse("sideways"), None);
    }
}
