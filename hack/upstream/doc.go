// Package upstream holds no code: its go.mod pins upstream JobSet v0.12.0
// (the version jobset-fleet is a drop-in replacement for) as tools, so that
//
//	go build -o bin/upstream-jobset sigs.k8s.io/jobset
//	go mod download -json sigs.k8s.io/jobset   # .Dir: upstream's sources and CRD
//
// work from this directory with nothing but the Go module proxy.
package upstream
