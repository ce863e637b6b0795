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
