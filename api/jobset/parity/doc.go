// Package parity checks that the JobSet API jobset-fleet serves is upstream
// JobSet v0.12.0's: its test compares the CRD generated from
// api/jobset/v1alpha2 with the one upstream ships (read from the module
// cache through hack/upstream), field by field, and fails on any difference
// that crd_differences.yaml does not list with its reason.
//
// The package has no code of its own; it exists so the comparison runs
// without the apiservers the API package's own tests start.
package parity
