// Package testenv starts real Kubernetes control planes for tests: envtest
// (kube-apiserver + etcd) clusters in the test process, optionally with a real
// kube-controller-manager, and full kwok clusters for end-to-end tests.
//
// Every binary comes from the project's bin/ directory, built by `make tools`
// from pinned Go modules; nothing is ever downloaded at test time. A missing
// binary fails the test with the command that builds it, never skips it.
package testenv
