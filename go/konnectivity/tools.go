//go:build tools

// Package tools names the commands this wrapper module builds, so that `go mod tidy`
// keeps every module they need in go.sum. It is never compiled.
package tools

import (
	_ "sigs.k8s.io/apiserver-network-proxy/cmd/agent"
	_ "sigs.k8s.io/apiserver-network-proxy/cmd/server"
)
