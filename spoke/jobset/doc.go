// Package jobset is the member-cluster JobSet reconciler: a drop-in
// replacement for the upstream kubernetes-sigs/jobset v0.12 controller, with
// upstream's behavior — the same child objects, status shape, conditions and
// events (docs/parity.md lists each behavior with its test).
//
// Each Reconcile observes the JobSet, its child Jobs and its headless Service
// (observe: Observed), computes a Plan with pure functions (ComputePlan in
// plan.go and the policy files it calls) that follows upstream's reconcile
// step by step, and applies that plan in one place (apply.go), stopping at
// the first step that fails as upstream's does: the shape of every
// reconciler of the fleet (docs/architecture.md). The status is written with a single patch per reconcile, and only
// when it changed.
//
// The reconciler watches Pods only with the InPlaceRestart gate on (the
// in-place restart agents report on them); otherwise everything it needs is
// in the Jobs' status, which keeps memory flat on large clusters (upstream
// issue #1055). Pod placement for exclusive topology is the job of the pod
// webhooks in spoke/webhook; this package only copies the annotations they
// read.
package jobset
