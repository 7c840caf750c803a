//go:build tools

// Package helm pins the helm command (helm.sh/helm/v4/cmd/helm), so that
// `go mod tidy` keeps what it needs; hack/tools.sh builds it into bin/.
package helm

import _ "helm.sh/helm/v4/cmd/helm"
