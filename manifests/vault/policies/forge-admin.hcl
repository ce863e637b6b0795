# forge's own token after the first configuration run (the root token is then no longer
# used; docs/vault.md says how to revoke it). Exactly the paths forge declares, no more.

# Mounts and auth methods forge owns (create, tune, read).
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/pki/*" {
  capabilities = ["create", "read", "update"]
}
path "sys/mounts/kv/platform/*" {
  capabilities = ["create", "read", "update"]
}
path "sys/mounts/iam/exoscale" {
  capabilities = ["create", "read", "update"]
}
path "sys/mounts/iam/exoscale/*" {
  capabilities = ["create", "read", "update"]
}
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/exoscale" {
  capabilities = ["create", "read", "update", "sudo"]
}
path "sys/auth/kubernetes/*" {
  capabilities = ["create", "read", "update", "sudo"]
}

# The platform's policies, the audit device, the plugin catalog entries, raft membership.
path "sys/policies/acl/platform-*" {
  capabilities = ["create", "read", "update"]
}
path "sys/policies/acl/forge-admin" {
  capabilities = ["read"]
}
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
path "sys/audit/file" {
  capabilities = ["create", "update", "sudo"]
}
path "sys/plugins/catalog/secret/exoscale" {
  capabilities = ["create", "read", "update", "sudo"]
}
path "sys/plugins/catalog/auth/exoscale" {
  capabilities = ["create", "read", "update", "sudo"]
}
path "sys/storage/raft/configuration" {
  capabilities = ["read", "sudo"]
}

# What is inside the mounts forge owns.
path "pki/root/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "pki/platform/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "kv/platform/kubernetes/*" {
  capabilities = ["create", "read", "update", "list"]
}
path "iam/exoscale/*" {
  capabilities = ["create", "read", "update", "list"]
}
path "auth/exoscale/*" {
  capabilities = ["create", "read", "update", "list"]
}
path "auth/kubernetes/*" {
  capabilities = ["create", "read", "update", "list"]
}
path "sys/storage/raft/remove-peer" {
  capabilities = ["update", "sudo"]
}
