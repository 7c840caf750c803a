// Package kindfleet is the end-to-end test of the fleet on real clusters:
// three kind clusters (hub, member-1 and member-2, each member with two
// workers in different racks) with the hub and the agents installed from a
// release (hack/release.sh, of the VERSION the README's install block
// exports): the hub and member-1 by that block, run word for word with bash
// outside the checkout, member-2 by the agent chart, running under their
// generated RBAC, and JobSets whose containers
// (e2e/kindfleet/workload) really resolve, call and wait for each other.
//
// `make e2e-kind` runs it. The tests need Docker and take minutes, so they
// run only when JOBSET_FLEET_E2E_KIND=1; `make test` compiles them and skips.
//
// Environment:
//
//	JOBSET_FLEET_E2E_KIND=1  run at all
//	KEEP_CLUSTERS=1          keep the clusters afterwards (also on failure) and
//	                         reuse them on the next run
//	IMG_WORKLOAD             the workload image to build (make's default)
//	E2E_SETUP_HOST=1         install and start what the host lacks (Docker,
//	                         packages; make e2e-kind-host-setup does only that)
package kindfleet
