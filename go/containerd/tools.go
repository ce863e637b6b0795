//go:build tools

// Package tools names the commands this wrapper module builds, so that `go mod tidy`
// keeps every module they need in go.sum. It is never compiled.
package tools

import (
	_ "github.com/containerd/containerd/cmd/containerd"
	_ "github.com/containerd/containerd/cmd/containerd-shim"
	_ "github.com/containerd/containerd/cmd/containerd-shim-runc-v1"
	_ "github.com/containerd/containerd/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/cmd/ctr"
)
