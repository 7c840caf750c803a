// Package kueuehub tests Kueue composed on the hub: a real Kueue manager
// (bin/kueue-manager, built from the version hack/kueue pins) on the hub's
// API server decides when a JobSet may run, the hub's dispatcher where.
// Members are simulated the way hub/dispatch's integration tests simulate
// agents: a ClusterProfile with a heartbeat and capacity, and reports
// written into the dispatches.
package kueuehub
