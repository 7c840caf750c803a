// Package kueue holds no code: its go.mod pins Kueue (sigs.k8s.io/kueue) as a
// tool, so that
//
//	go build -o bin/kueue-manager sigs.k8s.io/kueue/cmd/kueue
//	go mod download -json sigs.k8s.io/kueue   # .Dir: Kueue's sources and CRDs
//
// work from this directory with nothing but the Go module proxy. A separate
// module so Kueue's dependencies never enter the main module's graph.
package kueue
