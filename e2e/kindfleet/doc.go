// Package kindfleet is the end-to-end test of the fleet on real clusters:
// three kind clusters (hub, member-1 and member-2, each member with two
// workers in different racks) with the hub and the agents installed from
// their images and kustomize bases exactly as the README tells a cluster
// admin, running under their generated RBAC, and JobSets whose containers
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
//	IMG_HUB, IMG_AGENT,      images to build and install (make's defaults)
//	IMG_WORKLOAD
package kindfleet
