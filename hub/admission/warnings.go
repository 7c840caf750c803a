package admission

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// fleetMembers are the fleet's members as their ClusterProfiles describe
// them, without the hub's heartbeat view: admission judges what members
// there are and what they have, not whether they are up.
func (w *jobSetWebhook) fleetMembers(ctx context.Context) ([]inventory.Member, error) {
	profiles := &clusterinventory.ClusterProfileList{}
	if err := w.reader.List(ctx, profiles, client.InNamespace(w.opts.InventoryNamespace)); err != nil {
		return nil, fmt.Errorf("listing ClusterProfiles: %w", err)
	}
	var members []inventory.Member
	for i := range profiles.Items {
		if p := &profiles.Items[i]; inventory.IsFleetProfile(p) {
			members = append(members, inventory.Assess(p, inventory.Heartbeat{}, time.Time{}, inventory.Assessment{}))
		}
	}
	return members, nil
}

// PlacementWarnings are what the JobSet's placement annotations ask that
// no member of the fleet offers now: a pinned cluster that is not a member,
// a cluster selector that matches no member, or a pinned member the
// selector excludes. Such a JobSet is admitted (members join, and their
// labels change) but waits until one fits, which is rarely what its author
// meant: kubectl prints each warning. Annotations that fail validation are
// left to it.
func PlacementWarnings(annotations map[string]string, members []inventory.Member) admission.Warnings {
	var warnings admission.Warnings
	pinned, isPinned := annotations[fleet.PinnedClusterAnnotation]
	var pinnedMember *inventory.Member
	for i := range members {
		if members[i].Name == pinned {
			pinnedMember = &members[i]
		}
	}
	if isPinned && pinnedMember == nil {
		warnings = append(warnings, fmt.Sprintf("pinned cluster %q is not a member of the fleet (%s): the JobSet waits until a member of that name joins",
			fleet.Bounded(pinned, maxWarningValue), memberCount(len(members))))
	}
	raw, hasSelector := annotations[fleet.ClusterSelectorAnnotation]
	selector, err := labels.Parse(raw)
	if !hasSelector || err != nil {
		return warnings
	}
	quoted := fleet.Bounded(raw, maxWarningValue)
	if pinnedMember != nil {
		if !selector.Matches(labels.Set(pinnedMember.Labels)) {
			warnings = append(warnings, fmt.Sprintf("pinned cluster %q does not match cluster selector %q: the JobSet waits until its labels do", pinned, quoted))
		}
		return warnings
	}
	for _, m := range members {
		if selector.Matches(labels.Set(m.Labels)) {
			return warnings
		}
	}
	return append(warnings, fmt.Sprintf("cluster selector %q matches no member of the fleet (%s): the JobSet waits until one does", quoted, memberCount(len(members))))
}

// maxWarningValue bounds a user's value quoted in a warning: the apiserver
// truncates long warnings.
const maxWarningValue = 63

func memberCount(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}
