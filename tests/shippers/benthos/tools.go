//go:build tools

// Benthos, pinned by go.mod and go.sum: a real shipper with an HTTP output, built by
// `make shippers` (the module proxy refuses `go install pkg@version` here).
package tools

import _ "github.com/redpanda-data/benthos/v4/cmd/benthos"
