//go:build tools

// Package tools names the command this wrapper module builds, so that `go mod tidy`
// keeps every module it needs in go.sum. It is never compiled.
package tools

import _ "github.com/opencontainers/runc"
