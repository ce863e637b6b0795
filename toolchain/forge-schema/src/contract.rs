//! What the deploy stages rely on in the platform's images: paths, units, ports and the
//! login user, declared once. The images' recipes provide them (tests/contract.rs checks
//! every item against the recipes, so the two cannot drift apart silently); the deploy
//! stages (forge-deploy's user-data, forge-vault's members) read them from here only.

/// The user cloud-init creates on every image (Debian's cloud images' default user): the
/// templates are registered with it, and forge reaches instances over SSH as it.
pub const DEFAULT_USER: &str = "debian";

/// The `vault` image (recipes `vault`, `vault-server`, `vault-agent-vault`).
pub mod vault {
    /// Whom forge reaches the members over SSH as.
    pub const SSH_USER: &str = super::DEFAULT_USER;
    /// Vault's API (TLS) and its cluster (raft) port.
    pub const API_PORT: u16 = 8200;
    pub const CLUSTER_PORT: u16 = 8201;
    /// The path of Vault's health endpoint (the elastic IP's health check).
    pub const HEALTH_PATH: &str = "/v1/sys/health";
    /// The directory the server reads its TLS material from, and the files in it.
    pub const TLS_DIR: &str = "/etc/vault/tls";
    pub const CA_FILE: &str = "ca.pem";
    pub const CERT_FILE: &str = "server.pem";
    pub const KEY_FILE: &str = "server.key";
    /// The units: the server (starts once its certificate is there) and the agent that
    /// renews the member's certificate through `auth/exoscale`.
    pub const SERVER_UNIT: &str = "vault-server.service";
    pub const AGENT_UNIT: &str = "vault-agent.service";
    /// Files whose `CLUSTER_*` placeholders the first boot fills in from user-data.
    pub const PLACEHOLDER_FILES: &[&str] = &[
        "/etc/vault/server-conf.d/vault.hcl",
        "/etc/vault/agent-conf.d/vault.hcl",
        "/etc/default/vault",
    ];
    /// The placeholders those files hold.
    pub const PLACEHOLDERS: &[&str] = &[
        "CLUSTER_NAME",
        "CLUSTER_EIP_ADDRESS",
        "CLUSTER_MEMBER_ADDRESS",
        "CLUSTER_MEMBER_NAME",
        "CLUSTER_DOMAIN_NAME",
    ];
    /// The agent's login: its role id and the instance id, written by user-data into the
    /// agent's configuration directory.
    pub const AGENT_CONF_DIR: &str = "/etc/vault/agent-conf.d";
    pub const AGENT_ROLE_ID: &str = "/etc/vault/agent-conf.d/.role_id";
    pub const AGENT_INSTANCE_ID: &str = "/etc/vault/agent-conf.d/.instance_id";
}

/// The `etcd` image (recipes `etcd`, `etcd-member`, `etcd-healthcheck`, `wait-http`).
pub mod etcd {
    /// Whom forge reaches the members over SSH as.
    pub const SSH_USER: &str = super::DEFAULT_USER;
    /// etcd's client and peer ports.
    pub const CLIENT_PORT: u16 = 2379;
    pub const PEER_PORT: u16 = 2380;
    /// The plain-HTTP health endpoint the elastic IP checks (nginx, spec §3.0.6).
    pub const HEALTH_PORT: u16 = 2378;
    pub const HEALTH_PATH: &str = "/healthz";
    /// Where the agent reads the CA it trusts Vault's certificate with (user-data writes
    /// the Platform Root CA there).
    pub const VAULT_CA: &str = "/etc/vault/tls/ca.pem";
    /// The agent's login: the role id and the instance id user-data writes, read by the
    /// agent's configuration.
    pub const AGENT_CONFIG: &str = "/etc/etcd/vault.hcl";
    pub const AGENT_ROLE_ID: &str = "/etc/etcd/.role_id";
    pub const AGENT_INSTANCE_ID: &str = "/etc/etcd/.instance_id";
    /// The files whose placeholders the first boot fills in, with the placeholders each
    /// holds.
    pub const PLACEHOLDERS: &[(&str, &[&str])] = &[
        (
            AGENT_CONFIG,
            &[
                "VAULT_ADDRESS",
                "CLUSTER_NAME",
                "CLUSTER_MEMBER_NAME",
                "CLUSTER_DOMAIN_NAME",
                "CLUSTER_EIP_ADDRESS",
                "CLUSTER_MEMBER_ADDRESS",
                "EXOSCALE_INSTANCEPOOL_NAME",
                "EXOSCALE_CLUSTER_ZONE",
            ],
        ),
        ("/etc/etcd/base-environment", &["CLUSTER_MEMBER_ADDRESS"]),
        ("/etc/default/etcdctl", &["CLUSTER_MEMBER_ADDRESS"]),
    ];
    /// The bounded wait for an HTTP endpoint (`wait-http URL --timeout S --insecure`).
    pub const WAIT_HTTP: &str = "/usr/local/bin/wait-http";
    /// The first-boot launcher: starts the agent, waits for its files, creates or joins
    /// the cluster, starts etcd.
    pub const INIT: &str = "/usr/local/bin/exoscale-etcd-init";
    /// The unit of etcd, and of the agent that renders its certificates.
    pub const UNIT: &str = "etcd.service";
    pub const AGENT_UNIT: &str = "etcd-vault-agent.service";
    /// The files the agent renders, as etcd reads them.
    pub const TLS_DIR: &str = "/etc/etcd/tls";
}
