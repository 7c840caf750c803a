package placement

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

const (
	// SchedulerName is the PlacementDecision schedulerName the hub writes.
	SchedulerName = "jobset-fleet-hub"
	// ReasonsAnnotation on a PlacementDecision explains the verdict for
	// every member considered, chosen or not. The API's per-cluster reason
	// (decisions[].reason) belongs to chosen clusters only: a member listed
	// there counts as chosen to every consumer, so the verdicts of the
	// others can only be told here.
	ReasonsAnnotation = "fleet.jobset.x-k8s.io/placement-reasons"
)

// Decision is the PlacementDecision the hub publishes for a JobSet: same
// namespace and name as the JobSet, controlled by it (so it goes away with
// it), listing the chosen cluster (none while pending) with its verdict in
// the API's per-cluster reason, bounded like each member's part of Explain.
func Decision(js *jobset.JobSet, r Result, inventoryNamespace string) *clusterinventory.PlacementDecision {
	pd := &clusterinventory.PlacementDecision{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       js.Namespace,
			Name:            js.Name,
			Labels:          map[string]string{clusterinventory.PlacementKeyLabel: string(js.UID)},
			Annotations:     map[string]string{ReasonsAnnotation: r.Explain()},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(js, jobset.GroupVersion.WithKind("JobSet"))},
		},
		// Decisions is required: an empty list, never null, means "none".
		Decisions:     []clusterinventory.ClusterDecision{},
		SchedulerName: SchedulerName,
	}
	if r.Cluster != "" {
		pd.Decisions = append(pd.Decisions, clusterinventory.ClusterDecision{
			ClusterProfileRef: clusterinventory.ClusterProfileReference{Name: r.Cluster, Namespace: inventoryNamespace},
			Reason:            fleet.Bounded(r.Reason(), fleet.MaxMemberReason),
		})
	}
	return pd
}
