# Vault servers' agent (spec §5.7): its own serving certificate, nothing else.
path "pki/platform/vault/issue/server" {
  capabilities = ["create", "update"]
}
