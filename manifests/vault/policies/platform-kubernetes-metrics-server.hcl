# metrics-server's cert-manager Issuer (spec §5.7): signs its serving CSR.
path "pki/platform/kubernetes/control-plane/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/aggregation-layer/cert/ca_chain" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/aggregation-layer/sign/metrics-server" {
  capabilities = ["create", "update"]
}
