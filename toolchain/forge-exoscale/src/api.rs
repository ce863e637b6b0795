//! Typed calls for the resources forge manages (API-NOTES §5).

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Client, Retry};
use crate::error::Error;
use crate::types::*;

#[derive(Deserialize)]
struct Zones {
    zones: Vec<Zone>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct InstanceTypes {
    instance_types: Vec<InstanceType>,
}
#[derive(Deserialize)]
struct Templates {
    templates: Vec<Template>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SecurityGroups {
    security_groups: Vec<SecurityGroup>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct AntiAffinityGroups {
    anti_affinity_groups: Vec<AntiAffinityGroup>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ElasticIps {
    elastic_ips: Vec<ElasticIp>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct InstancePools {
    instance_pools: Vec<InstancePool>,
}
#[derive(Deserialize)]
struct Instances {
    instances: Vec<Instance>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LoadBalancers {
    load_balancers: Vec<LoadBalancer>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PrivateNetworks {
    private_networks: Vec<PrivateNetwork>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SshKeys {
    ssh_keys: Vec<SshKey>,
}

impl Client {
    pub async fn list_zones(&self) -> Result<Vec<Zone>, Error> {
        Ok(self.get::<Zones>("zone", &[]).await?.zones)
    }

    pub async fn list_instance_types(&self) -> Result<Vec<InstanceType>, Error> {
        Ok(self
            .get::<InstanceTypes>("instance-type", &[])
            .await?
            .instance_types)
    }

    /// The organisation's own templates in this zone.
    pub async fn list_private_templates(&self) -> Result<Vec<Template>, Error> {
        Ok(self
            .get::<Templates>("template", &[("visibility", "private")])
            .await?
            .templates)
    }

    pub async fn get_template(&self, id: &str) -> Result<Template, Error> {
        self.get(&format!("template/{id}"), &[]).await
    }

    pub async fn register_template(&self, body: &RegisterTemplate) -> Result<Reference, Error> {
        self.mutate(Method::POST, "template", Some(body), Retry::Create)
            .await
    }

    pub async fn delete_template(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("template/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_security_groups(&self) -> Result<Vec<SecurityGroup>, Error> {
        Ok(self
            .get::<SecurityGroups>("security-group", &[])
            .await?
            .security_groups)
    }

    pub async fn get_security_group(&self, id: &str) -> Result<SecurityGroup, Error> {
        self.get(&format!("security-group/{id}"), &[]).await
    }

    pub async fn create_security_group(&self, body: &CreateNamed) -> Result<Reference, Error> {
        self.mutate(Method::POST, "security-group", Some(body), Retry::Create)
            .await
    }

    pub async fn delete_security_group(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("security-group/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn add_security_group_rule(
        &self,
        group: &str,
        rule: &SecurityGroupRule,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::POST,
            &format!("security-group/{group}/rules"),
            Some(rule),
            Retry::Create,
        )
        .await
    }

    pub async fn delete_security_group_rule(
        &self,
        group: &str,
        rule: &str,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("security-group/{group}/rules/{rule}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    /// Replaces the group's external sources by `add`/`remove`ing CIDRs one at a time.
    pub async fn security_group_source(
        &self,
        group: &str,
        cidr: &str,
        add: bool,
    ) -> Result<Reference, Error> {
        let action = if add { "add-source" } else { "remove-source" };
        let body = serde_json::json!({ "cidr": cidr });
        self.mutate(
            Method::PUT,
            &format!("security-group/{group}:{action}"),
            Some(&body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_anti_affinity_groups(&self) -> Result<Vec<AntiAffinityGroup>, Error> {
        Ok(self
            .get::<AntiAffinityGroups>("anti-affinity-group", &[])
            .await?
            .anti_affinity_groups)
    }

    pub async fn create_anti_affinity_group(&self, body: &CreateNamed) -> Result<Reference, Error> {
        self.mutate(
            Method::POST,
            "anti-affinity-group",
            Some(body),
            Retry::Create,
        )
        .await
    }

    pub async fn delete_anti_affinity_group(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("anti-affinity-group/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_elastic_ips(&self) -> Result<Vec<ElasticIp>, Error> {
        Ok(self.get::<ElasticIps>("elastic-ip", &[]).await?.elastic_ips)
    }

    pub async fn get_elastic_ip(&self, id: &str) -> Result<ElasticIp, Error> {
        self.get(&format!("elastic-ip/{id}"), &[]).await
    }

    pub async fn create_elastic_ip(&self, body: &ElasticIpSpec) -> Result<Reference, Error> {
        self.mutate(Method::POST, "elastic-ip", Some(body), Retry::Create)
            .await
    }

    pub async fn update_elastic_ip(
        &self,
        id: &str,
        body: &ElasticIpSpec,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::PUT,
            &format!("elastic-ip/{id}"),
            Some(body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn delete_elastic_ip(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("elastic-ip/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_instance_pools(&self) -> Result<Vec<InstancePool>, Error> {
        Ok(self
            .get::<InstancePools>("instance-pool", &[])
            .await?
            .instance_pools)
    }

    pub async fn get_instance_pool(&self, id: &str) -> Result<InstancePool, Error> {
        self.get(&format!("instance-pool/{id}"), &[]).await
    }

    pub async fn create_instance_pool(&self, body: &InstancePoolSpec) -> Result<Reference, Error> {
        self.mutate(Method::POST, "instance-pool", Some(body), Retry::Create)
            .await
    }

    pub async fn update_instance_pool(
        &self,
        id: &str,
        body: &InstancePoolSpec,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::PUT,
            &format!("instance-pool/{id}"),
            Some(body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn scale_instance_pool(&self, id: &str, size: i64) -> Result<Reference, Error> {
        let body = serde_json::json!({ "size": size });
        self.mutate(
            Method::PUT,
            &format!("instance-pool/{id}:scale"),
            Some(&body),
            Retry::Idempotent,
        )
        .await
    }

    /// Resets one field of a pool (`labels`, `elastic-ips`, `ssh-key`, …) to its default.
    pub async fn reset_instance_pool_field(
        &self,
        id: &str,
        field: &str,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("instance-pool/{id}/{field}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn delete_instance_pool(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("instance-pool/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    /// The members of an instance pool.
    pub async fn list_pool_instances(&self, pool: &str) -> Result<Vec<Instance>, Error> {
        let q = [("manager-id", pool), ("manager-type", "instance-pool")];
        Ok(self.get::<Instances>("instance", &q).await?.instances)
    }

    pub async fn list_instances(&self) -> Result<Vec<Instance>, Error> {
        Ok(self.get::<Instances>("instance", &[]).await?.instances)
    }

    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, Error> {
        Ok(self.get::<SshKeys>("ssh-key", &[]).await?.ssh_keys)
    }

    pub async fn create_ssh_key(&self, body: &CreateSshKey) -> Result<Reference, Error> {
        self.mutate(Method::POST, "ssh-key", Some(body), Retry::Create)
            .await
    }

    pub async fn delete_ssh_key(&self, name: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("ssh-key/{name}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_load_balancers(&self) -> Result<Vec<LoadBalancer>, Error> {
        Ok(self
            .get::<LoadBalancers>("load-balancer", &[])
            .await?
            .load_balancers)
    }

    pub async fn get_load_balancer(&self, id: &str) -> Result<LoadBalancer, Error> {
        self.get(&format!("load-balancer/{id}"), &[]).await
    }

    pub async fn create_load_balancer(&self, body: &LoadBalancerSpec) -> Result<Reference, Error> {
        self.mutate(Method::POST, "load-balancer", Some(body), Retry::Create)
            .await
    }

    pub async fn update_load_balancer(
        &self,
        id: &str,
        body: &LoadBalancerSpec,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::PUT,
            &format!("load-balancer/{id}"),
            Some(body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn delete_load_balancer(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("load-balancer/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn add_load_balancer_service(
        &self,
        lb: &str,
        body: &LoadBalancerService,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::POST,
            &format!("load-balancer/{lb}/service"),
            Some(body),
            Retry::Create,
        )
        .await
    }

    pub async fn update_load_balancer_service(
        &self,
        lb: &str,
        service: &str,
        body: &LoadBalancerService,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::PUT,
            &format!("load-balancer/{lb}/service/{service}"),
            Some(body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn delete_load_balancer_service(
        &self,
        lb: &str,
        service: &str,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("load-balancer/{lb}/service/{service}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn list_private_networks(&self) -> Result<Vec<PrivateNetwork>, Error> {
        Ok(self
            .get::<PrivateNetworks>("private-network", &[])
            .await?
            .private_networks)
    }

    pub async fn get_private_network(&self, id: &str) -> Result<PrivateNetwork, Error> {
        self.get(&format!("private-network/{id}"), &[]).await
    }

    pub async fn create_private_network(
        &self,
        body: &PrivateNetworkSpec,
    ) -> Result<Reference, Error> {
        self.mutate(Method::POST, "private-network", Some(body), Retry::Create)
            .await
    }

    pub async fn update_private_network(
        &self,
        id: &str,
        body: &PrivateNetworkSpec,
    ) -> Result<Reference, Error> {
        self.mutate(
            Method::PUT,
            &format!("private-network/{id}"),
            Some(body),
            Retry::Idempotent,
        )
        .await
    }

    pub async fn delete_private_network(&self, id: &str) -> Result<Reference, Error> {
        self.mutate(
            Method::DELETE,
            &format!("private-network/{id}"),
            None::<&()>,
            Retry::Idempotent,
        )
        .await
    }

    pub async fn get_operation(&self, id: &str) -> Result<Operation, Error> {
        self.get(&format!("operation/{id}"), &[]).await
    }
}
