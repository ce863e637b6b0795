//go:build tools

// Package tools names the commands this wrapper module builds, so that `go mod tidy`
// keeps every module they need in go.sum. It is never compiled.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
