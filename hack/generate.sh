#!/usr/bin/env bash
# Regenerates everything controller-gen owns, into the tree rooted at $1.
set -euo pipefail
root=${1:-.}
cd "$root"
gen="go tool controller-gen"

echo "==> deepcopy"
$gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
echo "==> CRDs: jobset.x-k8s.io, fleet.jobset.x-k8s.io"
# Embedded ObjectMeta (Job and pod templates, PVC templates) gets a real
# schema, so labels/annotations are validated and CEL can read them.
$gen crd:generateEmbeddedObjectMeta=true paths=./api/... output:crd:artifacts:config=config/crd/bases
# ClusterProfile and PlacementDecision are generated from the pinned
# cluster-inventory-api module's Go types, so they always match the client.
echo "==> CRDs: multicluster.x-k8s.io (cluster-inventory-api)"
$gen crd paths=sigs.k8s.io/cluster-inventory-api/apis/v1alpha1 output:crd:artifacts:config=config/crd/cluster-inventory
echo "==> webhooks: member (JobSet, Pod) and hub (JobSet)"
$gen webhook paths=./spoke/webhook/... output:webhook:artifacts:config=config/webhook
$gen webhook paths=./hub/admission/... output:webhook:artifacts:config=config/hub-webhook
# The agent's role covers everything that runs in a member (spoke/ and the
# agent main); the hub's everything in hub/ and the hub main.
echo "==> RBAC: agent, hub"
$gen rbac:roleName=jobset-fleet-agent paths=./spoke/... paths=./cmd/agent/... output:rbac:artifacts:config=config/rbac/agent
$gen rbac:roleName=jobset-fleet-hub paths=./hub/... paths=./cmd/hub/... output:rbac:artifacts:config=config/rbac/hub
echo "==> Helm charts: copies of the generated CRDs, RBAC and webhooks"
hack/generate-charts.sh .
