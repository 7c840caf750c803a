// Package kueuemember tests the fleet composed with Kueue on its members:
// a hub and two members on real apiservers (envtest; members with
// kube-controller-manager), a real Kueue manager (bin/kueue-manager) on
// each member, and the hub, the spoke JobSet reconciler and the agents
// wired in the test process as their mains wire them. The members' Kueue
// quota is capacity the hub places against; a copy waiting in a member's
// queue shows on the hub and is withdrawn past its start deadline; a copy
// the member's Kueue runs stops when the hub JobSet is suspended, and runs
// again when it is resumed.
//
//	KUBEBUILDER_ASSETS=$PWD/bin go test ./e2e/kueuemember/ -v -count=1
package kueuemember
