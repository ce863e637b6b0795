# etcd members' agent (spec §5.7): server/peer certificates, the CA chain, and the
# Exoscale API key the membership helper uses.
path "pki/platform/kubernetes/etcd/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/etcd/issue/server" {
  capabilities = ["create", "update"]
}
path "iam/exoscale/apikey/etcd-instance-pool" {
  capabilities = ["read"]
}
