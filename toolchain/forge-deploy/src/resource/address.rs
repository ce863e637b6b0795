//! Addresses in front of instance pools: elastic IPs (with their health check) and network
//! load balancers with their services.

use forge_exoscale::types::{ElasticIpHealthcheck, LoadBalancerHealthcheck};

use super::{Labels, Ref};
use crate::diff::{Diff, FieldChange};

/// An elastic IP. A managed one has a health check, whose mode cannot change in place.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticIp {
    /// `<platform>-<key without eip->`: elastic IPs have no name in the API; forge finds
    /// them by label.
    pub name: String,
    pub description: Option<String>,
    pub healthcheck: Option<ElasticIpHealthcheck>,
    pub labels: Labels,
}

impl ElasticIp {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.field("description", |e| &e.description);
        d.nested("healthcheck", |e| &e.healthcheck, &["mode"]);
        d.field("labels", |e| &e.labels);
        d.changes
    }
}

/// A network load balancer (its services are resources of their own).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub name: String,
    pub description: Option<String>,
    pub labels: Labels,
}

impl LoadBalancer {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.field("description", |l| &l.description);
        d.field("labels", |l| &l.labels);
        d.changes
    }
}

/// A service of a network load balancer: a port forwarded to an instance pool.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerService {
    pub name: String,
    pub load_balancer: Ref,
    pub description: Option<String>,
    /// The pool it forwards to cannot change in place.
    pub instance_pool: Ref,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `round-robin` or `source-hash`.
    pub strategy: String,
    pub port: u16,
    pub target_port: u16,
    pub healthcheck: Option<LoadBalancerHealthcheck>,
}

impl LoadBalancerService {
    /// A service's key: its load balancer's and its name (services have no labels; their
    /// names are unique within their load balancer).
    pub fn key(load_balancer: &str, name: &str) -> String {
        format!("{load_balancer}.{name}")
    }

    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.replacing("load-balancer", |s| &s.load_balancer);
        d.replacing("instance-pool", |s| &s.instance_pool);
        d.field("description", |s| &s.description);
        d.field("protocol", |s| &s.protocol);
        d.field("strategy", |s| &s.strategy);
        d.field("port", |s| &s.port);
        d.field("target-port", |s| &s.target_port);
        d.nested("healthcheck", |s| &s.healthcheck, &[]);
        d.changes
    }
}
