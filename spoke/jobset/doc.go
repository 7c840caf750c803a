// Package jobset is the member-cluster JobSet reconciler: a drop-in
// replacement for the upstream kubernetes-sigs/jobset controller.
//
// Each Reconcile observes the JobSet, its child Jobs and its headless Service,
// computes a plan with pure functions (plan.go and the policy files it calls),
// and applies that plan in one place (apply.go). The status is written with a
// single patch per reconcile, and only when it changed.
//
// The reconciler never watches Pods: everything it needs is in the Jobs'
// status, which keeps memory flat on large clusters (upstream issue #1055).
// Pod placement for exclusive topology is the job of the pod webhooks in
// spoke/webhook; this package only copies the annotations they read.
package jobset
