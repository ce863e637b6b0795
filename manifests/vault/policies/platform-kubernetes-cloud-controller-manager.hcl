# The Exoscale cloud controller manager (runs in the cluster; spec §5.7 without the unused
# PKI role, Appendix A #12): its Exoscale API key and the control-plane CA chain.
path "iam/exoscale/apikey/cloud-controller-manager" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/control-plane/cert/ca_chain" {
  capabilities = ["read"]
}
