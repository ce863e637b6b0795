# Control-plane agent (spec §5.7): the CA chains, the three KV secrets, and one issue
# path per certificate the control plane presents.
path "pki/platform/kubernetes/etcd/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/control-plane/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/client/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/aggregation-layer/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/kubelet/cert/ca_chain" {
  capabilities = ["read"]
}
path "kv/platform/kubernetes/service-account" {
  capabilities = ["read"]
}
path "kv/platform/kubernetes/secret-encryption" {
  capabilities = ["read"]
}
path "kv/platform/kubernetes/kubelet-pki" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/etcd/issue/apiserver" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/apiserver" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/konnectivity-apiserver-egress" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/controller-manager" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/scheduler" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/konnectivity" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/konnectivity-server-apiserver" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/control-plane/issue/konnectivity-server-cluster" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/aggregation-layer/issue/apiserver" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/kubelet/issue/apiserver" {
  capabilities = ["create", "update"]
}
path "pki/platform/kubernetes/client/issue/operator-admin" {
  capabilities = ["create", "update"]
}
