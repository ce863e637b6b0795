# The cluster autoscaler (spec §5.7 without the issue path of a role that never existed,
# Appendix A #12): its Exoscale API key and the control-plane CA chain.
path "iam/exoscale/apikey/cluster-autoscaler" {
  capabilities = ["read"]
}
path "pki/platform/kubernetes/control-plane/cert/ca_chain" {
  capabilities = ["read"]
}
