package dispatch

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Template is what the member must run for a hub JobSet: the user's labels,
// annotations and spec, without the hub's own keys, managed by the member's
// built-in controller, without the member a Kueue flavor named
// (fleet.MemberNodeLabel), with maxRestarts reduced by the restarts already
// spent on earlier placements.
func Template(js *jobset.JobSet, fs jobset.FleetStatus) fleet.JobSetTemplate {
	t := fleet.JobSetTemplate{
		Labels:      withoutFleetKeys(js.Labels),
		Annotations: withoutFleetKeys(js.Annotations),
	}
	js.Spec.DeepCopyInto(&t.Spec)
	t.Spec.ManagedBy = nil
	withoutMemberSelector(&t.Spec)
	if fp := t.Spec.FailurePolicy; fp != nil && fs.RestartsCountTowardsMaxCarried > 0 {
		fp.MaxRestarts = max(0, fp.MaxRestarts-fs.RestartsCountTowardsMaxCarried)
	}
	return t
}

func withoutFleetKeys(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "fleet.jobset.x-k8s.io/") || k == "kubectl.kubernetes.io/last-applied-configuration" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// NewDispatch is the JobSetDispatch for the placement fs of a hub JobSet;
// namespaceLabels are the Pod Security labels of the JobSet's namespace.
func NewDispatch(js *jobset.JobSet, fs jobset.FleetStatus, namespaceLabels map[string]string) *fleet.JobSetDispatch {
	return &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:  fleet.MemberNamespace(fs.Cluster),
			Name:       fleet.DispatchName(js.Namespace, js.Name),
			Labels:     map[string]string{fleet.OriginUIDLabel: string(js.UID)},
			Finalizers: []string{fleet.DispatchFinalizer},
		},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: js.Namespace, Name: js.Name, UID: js.UID},
			Epoch:  fs.Epoch,
			JobSet: Template(js, fs),
			// The agent gives a namespace it creates these labels, so the
			// copy's Pods get no more on the member than on the hub.
			NamespaceLabels: namespaceLabels,
		},
	}
}

// memberOf is the member whose namespace holds a dispatch.
func memberOf(d *fleet.JobSetDispatch) string {
	name, _ := fleet.MemberOfNamespace(d.Namespace)
	return name
}
