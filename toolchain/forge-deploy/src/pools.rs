//! What the stages' resources share: forge's labels, the security groups and elastic IPs
//! every stage makes alike, and the instance pools (the instance type looked up in the
//! zone, the user-data limit, the fields from the pool's platform.toml section).

use std::collections::{BTreeMap, BTreeSet};

use forge_exoscale::types::ElasticIpHealthcheck;
use forge_schema::platform::{Platform, Pool};

use crate::error::DeployError;
use crate::execute::USER_DATA_LIMIT;
use crate::resource::{
    Desired, ElasticIp, InstancePool, LABEL_LOCKFILE, Labels, Ref, SecurityGroup, Spec, Template,
    UserData,
};

/// A security group `<P>-<suffix>` without external sources.
pub fn security_group(p: &Platform, suffix: &str, description: String) -> Spec {
    Spec::SecurityGroup(SecurityGroup {
        name: format!("{}-{suffix}", p.name),
        description: Some(description),
        external_sources: BTreeSet::new(),
    })
}

/// An elastic IP's health check (`mode` `http` or `https`), with the timing every stage
/// uses: every 5 s, 2 s timeout, 2 strikes to go up or down.
pub fn health_check(mode: &str, port: u16, uri: &str) -> ElasticIpHealthcheck {
    ElasticIpHealthcheck {
        mode: mode.into(),
        port: i64::from(port),
        uri: Some(uri.into()),
        interval: Some(5),
        timeout: Some(2),
        strikes_ok: Some(2),
        strikes_fail: Some(2),
        tls_sni: None,
        tls_skip_verify: None,
    }
}

/// The managed elastic IP `eip-<role>` of a stage (named `<P>-<role>` in plans).
pub fn elastic_ip(
    p: &Platform,
    stage: &str,
    role: &str,
    description: String,
    healthcheck: ElasticIpHealthcheck,
    lockfile_label: &str,
) -> Desired {
    let key = format!("eip-{role}");
    Desired {
        spec: Spec::ElasticIp(ElasticIp {
            name: format!("{}-{role}", p.name),
            description: Some(description),
            healthcheck: Some(healthcheck),
            labels: labels(&p.name, stage, &key, lockfile_label),
        }),
        key,
    }
}

/// forge's labels of a stage's resource, with the lockfile it was written from.
pub fn labels(platform: &str, stage: &str, key: &str, lockfile_label: &str) -> Labels {
    let mut l = Labels::forge(platform, stage, key);
    l.0.insert(LABEL_LOCKFILE.into(), lockfile_label.to_string());
    l
}

/// One stage's pool of members (`<P>-<role>`).
pub struct MemberPool<'a> {
    pub platform: &'a Platform,
    pub stage: &'static str,
    /// `vault`, `etcd`: the pool is `<P>-<role>`, its key `pool-<role>`.
    pub role: &'a str,
    pub description: String,
    pub pool: &'a Pool,
    /// The platform.toml section the pool comes from, for errors (`[etcd]`).
    pub section: &'a str,
    pub template: Template,
    /// Instance type ids by `family.size`.
    pub instance_types: &'a BTreeMap<String, String>,
    pub security_groups: BTreeSet<Ref>,
    pub elastic_ips: BTreeSet<Ref>,
    /// The anti-affinity group, when the pool has one.
    pub anti_affinity: Option<Ref>,
    pub ssh_key: Option<Ref>,
    /// Members get a public IPv6 address as well as IPv4.
    pub ipv6: bool,
    pub user_data: String,
    pub lockfile_label: &'a str,
}

impl MemberPool<'_> {
    pub fn desired(self) -> Result<Desired, DeployError> {
        let p = self.platform;
        let name = format!("{}-{}", p.name, self.role);
        let key = format!("pool-{}", self.role);
        let type_id = self
            .instance_types
            .get(&self.pool.instance_type)
            .ok_or_else(|| {
                DeployError::Input(format!(
                    "instance type `{}` (platform.toml {}) is not offered in {}",
                    self.pool.instance_type, self.section, p.zone
                ))
            })?;
        check_user_data(&name, &self.user_data)?;
        Ok(Desired {
            spec: Spec::InstancePool(InstancePool {
                name: name.clone(),
                description: Some(self.description),
                size: i64::from(self.pool.size),
                instance_type: Some(type_id.clone()),
                template: Some(self.template),
                disk_size: Some(i64::from(self.pool.disk_size)),
                instance_prefix: Some(name),
                public_ip_assignment: Some(if self.ipv6 { "dual" } else { "inet4" }.into()),
                anti_affinity_groups: self.anti_affinity.into_iter().collect(),
                elastic_ips: self.elastic_ips,
                private_networks: BTreeSet::new(),
                security_groups: self.security_groups,
                ssh_key: self.ssh_key,
                user_data: Some(UserData(self.user_data)),
                labels: labels(&p.name, self.stage, &key, self.lockfile_label),
            }),
            key,
        })
    }
}

/// Refuses user-data over the API's limit once base64-encoded (placeholders for addresses
/// not known yet are longer than the addresses, so the check errs on the safe side).
pub fn check_user_data(pool: &str, text: &str) -> Result<(), DeployError> {
    let encoded = text.len().div_ceil(3) * 4;
    if encoded > USER_DATA_LIMIT {
        return Err(DeployError::Input(format!(
            "the user-data of pool {pool} is {encoded} characters in base64, over Exoscale's limit of {USER_DATA_LIMIT}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_limit() {
        assert!(check_user_data("p", &"x".repeat(24_576)).is_ok());
        let e = check_user_data("p", &"x".repeat(24_577))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("32772 characters in base64, over Exoscale's limit of 32768"),
            "{e}"
        );
    }
}
