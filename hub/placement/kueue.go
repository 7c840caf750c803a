package placement

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// Kueue on the members: a JobSet naming a LocalQueue (Kueue's queue-name
// label) waits, on a member running Kueue, until that member's
// ClusterQueue admits it. A member whose queue can admit it now is
// preferred; one whose queue cannot is still a candidate (Kueue may free
// quota, and the start deadline withdraws a copy that waits too long), but
// ranked after.

// QueueShortfall says why member m's Kueue cannot admit js's requests now,
// or "" when it can, or when the hub cannot tell: js names no LocalQueue,
// the member publishes no Kueue quotas (it runs no Kueue, so the label is
// inert there), or its report left the LocalQueue out. demand is what the
// hub sent to m's LocalQueues ("namespace/name") that m's quotas do not
// show yet (Request.QueueDemand): what goes to js's ClusterQueue is taken
// from its free quota first, so that a burst does not all prefer the
// member whose last report had room for one.
func QueueShortfall(m inventory.Member, js *jobset.JobSet, requests corev1.ResourceList, demand map[string]corev1.ResourceList) string {
	name := js.Labels[fleet.KueueQueueNameLabel]
	if name == "" || m.Kueue == nil {
		return ""
	}
	lq, cq := inventory.LocalQueue(m.Kueue, js.Namespace, name)
	switch {
	case lq == nil && m.Kueue.Omitted > 0:
		return ""
	case lq == nil:
		return fmt.Sprintf("its Kueue has no LocalQueue %s/%s", js.Namespace, name)
	case cq == nil:
		return fmt.Sprintf("its Kueue has no ClusterQueue %s (of LocalQueue %s/%s)", lq.ClusterQueue, js.Namespace, name)
	case cq.Inactive:
		return fmt.Sprintf("ClusterQueue %s is not active", cq.Name)
	}
	return clusterQueueShortfall(cq, requests, demandOn(m.Kueue, cq.Name, demand))
}

// demandOn sums the demand of the LocalQueues that feed ClusterQueue cq.
func demandOn(q *fleet.KueueQuotas, cq string, demand map[string]corev1.ResourceList) corev1.ResourceList {
	var ahead corev1.ResourceList
	for key, l := range demand {
		ns, name, _ := strings.Cut(key, "/")
		if _, c := inventory.LocalQueue(q, ns, name); c != nil && c.Name == cq {
			if ahead == nil {
				ahead = corev1.ResourceList{}
			}
			AddTo(ahead, l)
		}
	}
	return ahead
}

// clusterQueueShortfall says why cq cannot admit requests after ahead
// ("" when it can): Kueue takes all the resources a resource group covers
// from one flavor of the group, so some flavor of each group must have
// them all free. A requested resource no group covers cannot be admitted
// at all. ahead, what is sent to cq and not yet in its figures, is counted
// against every flavor: the hub cannot tell which one Kueue will take.
func clusterQueueShortfall(cq *fleet.KueueClusterQueue, requests, ahead corev1.ResourceList) string {
	covered := map[corev1.ResourceName]bool{}
	for _, rg := range cq.ResourceGroups {
		var groupHas []corev1.ResourceName
		for _, f := range rg.Flavors {
			for r := range f.Free {
				if !slices.Contains(groupHas, r) {
					groupHas = append(groupHas, r)
				}
			}
		}
		want := corev1.ResourceList{}
		for _, r := range groupHas {
			covered[r] = true
			if q, ok := requests[r]; ok {
				q = q.DeepCopy()
				if a, ok := ahead[r]; ok {
					q.Add(a)
				}
				want[r] = q
			}
		}
		if len(want) == 0 {
			continue
		}
		var closest string
		var closestFree resource.Quantity
		admits := false
		for _, f := range rg.Flavors {
			short := firstShort(f.Free, want)
			if short == "" {
				admits = true
				break
			}
			if have, need := f.Free[short], requests[short]; closest == "" || have.Cmp(closestFree) > 0 {
				closest, closestFree = fmt.Sprintf("%s %s free, needs %s", have.String(), short, need.String()), have
				if a, ok := ahead[short]; ok && !a.IsZero() {
					closest += fmt.Sprintf(" after %s for JobSets dispatched there before it", a.String())
				}
				if len(rg.Flavors) > 1 {
					closest += " (flavor " + f.Name + ")"
				}
			}
		}
		if !admits {
			return fmt.Sprintf("ClusterQueue %s has %s", cq.Name, closest)
		}
	}
	var uncovered []string
	for _, r := range sortedNames(requests) {
		if !covered[r] {
			uncovered = append(uncovered, string(r))
		}
	}
	if len(uncovered) > 0 {
		return fmt.Sprintf("ClusterQueue %s has no quota for %s", cq.Name, strings.Join(uncovered, ", "))
	}
	return ""
}

// firstShort is the first resource (by name) of want that free has less
// of, or "".
func firstShort(free, want corev1.ResourceList) corev1.ResourceName {
	for _, r := range sortedNames(want) {
		if have := free[r]; have.Cmp(want[r]) < 0 {
			return r
		}
	}
	return ""
}

// queueRanked reports whether a beats b by the members' Kueue: a member
// whose queue can admit the JobSet now comes first; between two of the
// same standing the policy decides (better).
func queueRanked(p Policy, byCount bool, a, b Verdict) bool {
	if (a.QueueShortfall == "") != (b.QueueShortfall == "") {
		return a.QueueShortfall == ""
	}
	return better(p, byCount, a, b)
}
