package dispatch

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// A ResourceFlavor stands for a member through fleet.MemberNodeLabel in its
// nodeLabels. Kueue writes it into the pod templates' nodeSelector on
// admission; the hub reads it from there, places the JobSet on that
// member, and strips it from the copy. Stripping at the hub, rather than
// having agents publish a virtual node label, keeps the meaning of the key
// in the one place that acts on it: it works with every agent, and the
// member's scheduler and the hub's node-by-node fit never see a label no
// node has.

// flavorMembers are the members the JobSet's pod templates name through
// fleet.MemberNodeLabel, sorted and distinct (none: nil).
func flavorMembers(spec *jobset.JobSetSpec) []string {
	var out []string
	for i := range spec.ReplicatedJobs {
		if m, ok := spec.ReplicatedJobs[i].Template.Spec.Template.Spec.NodeSelector[fleet.MemberNodeLabel]; ok && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// flavorExclusions excludes every member but the one Kueue's flavor names
// (nil when no flavor names one). Flavors naming two members for different
// replicated Jobs exclude all: a JobSet runs on one member.
func flavorExclusions(js *jobset.JobSet, members map[string]inventory.Member) map[string]string {
	named := flavorMembers(&js.Spec)
	if len(named) == 0 {
		return nil
	}
	out := make(map[string]string, len(members))
	for name := range members {
		switch {
		case len(named) > 1:
			out[name] = fmt.Sprintf("Kueue admitted its replicated Jobs on flavors of different members (%s=%s), and a JobSet runs on one member",
				fleet.MemberNodeLabel, strings.Join(named, ", "))
		case name != named[0]:
			out[name] = fmt.Sprintf("Kueue admitted it on the ResourceFlavor of member %s (%s=%s)", named[0], fleet.MemberNodeLabel, named[0])
		}
	}
	return out
}

// withoutMemberSelector removes fleet.MemberNodeLabel from the pod
// templates' nodeSelector: it names a member, not a node.
func withoutMemberSelector(spec *jobset.JobSetSpec) {
	for i := range spec.ReplicatedJobs {
		pod := &spec.ReplicatedJobs[i].Template.Spec.Template.Spec
		if _, ok := pod.NodeSelector[fleet.MemberNodeLabel]; !ok {
			continue
		}
		delete(pod.NodeSelector, fleet.MemberNodeLabel)
		if len(pod.NodeSelector) == 0 {
			pod.NodeSelector = nil
		}
	}
}
