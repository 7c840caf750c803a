package agent

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// KueueRecheckInterval is how often the agent reads again the Workload of
// a copy waiting in the member's Kueue, so the hub's message follows
// Kueue's reason (nothing on the copy changes while it waits).
const KueueRecheckInterval = 10 * time.Second

// kueueJobUIDLabel is the label Kueue puts on a Workload naming the UID of
// the job it stands for.
const kueueJobUIDLabel = "kueue.x-k8s.io/job-uid"

// KueueCopy is what the agent observed of the member's Kueue for a copy.
type KueueCopy struct {
	// Managed is set when the member serves Kueue's API and the copy names
	// a LocalQueue: the member's Kueue decides when it runs.
	Managed bool
	// Queued is set while the copy waits for the member's Kueue to admit
	// it (and the hub wants it running).
	Queued *fleet.MemberQueued
	// Workloads are the Workloads labelled with the copy's UID, read while
	// the copy is suspended or the hub wants it suspended.
	Workloads []kueueWorkload
}

// LeaveToKueue is desired with what the member's Kueue owns on a copy it
// manages taken from current: Kueue suspends the copy until it admits it,
// then resumes it with the flavor's node selectors, tolerations and
// scheduling gates in the pod templates, and suspends it again to preempt
// it. The agent changes none of these: a resume would start a copy Kueue
// has not admitted, and Kueue resumes any copy it admitted that someone
// else suspended, so a suspend from the agent would only fight it. The hub
// suspends such a copy through its Workload instead (kueue_workload.go).
// Labels, annotations and the Jobs' parallelism and completions still
// follow the dispatch.
func LeaveToKueue(current, desired *jobset.JobSet) *jobset.JobSet {
	out := desired.DeepCopy()
	out.Spec.Suspend = ptr.To(current.IsSuspended())
	for i := range out.Spec.ReplicatedJobs {
		rj := &out.Spec.ReplicatedJobs[i]
		for _, have := range current.Spec.ReplicatedJobs {
			if have.Name == rj.Name {
				rj.Template.Spec.Template = *have.Template.Spec.Template.DeepCopy()
			}
		}
	}
	return out
}

// observeKueue reads what the member's Kueue does with copy t of d: nothing
// when t names no LocalQueue or the member does not serve Kueue's API.
// Otherwise, unless t finished: the Workloads Kueue made for t while t is
// suspended or the hub wants it suspended (the agent stops and resumes such
// a copy through its Workload, kueue_workload.go), and, for a copy Kueue
// holds suspended while the hub wants it running, the LocalQueue, its
// ClusterQueue and why Kueue has not admitted it. The reads are live: the
// agent keeps no informer on Kueue's objects.
func observeKueue(ctx context.Context, c client.Client, d *fleet.JobSetDispatch, t *jobset.JobSet) (KueueCopy, error) {
	queue := t.Labels[fleet.KueueQueueNameLabel]
	if queue == "" {
		return KueueCopy{}, nil
	}
	if _, err := c.RESTMapper().RESTMapping(schema.GroupKind{Group: "kueue.x-k8s.io", Kind: "Workload"}); meta.IsNoMatchError(err) {
		return KueueCopy{}, nil
	} else if err != nil {
		return KueueCopy{}, fmt.Errorf("looking up Kueue's API: %w", err)
	}
	kc := KueueCopy{Managed: true}
	hubSuspended := ptr.Deref(d.Spec.JobSet.Spec.Suspend, false)
	if (!t.IsSuspended() && !hubSuspended) || t.Status.TerminalState != "" {
		return kc, nil
	}
	// Kueue labels the Workloads it makes for a job with the job's UID:
	// the list is narrowed by it, and ownedBy decides.
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion(kueueAPIVersion)
	list.SetKind("WorkloadList")
	if err := c.List(ctx, list, client.InNamespace(t.Namespace), client.MatchingLabels{kueueJobUIDLabel: string(t.UID)}); err != nil {
		return kc, fmt.Errorf("listing Kueue Workloads of JobSet %s/%s: %w", t.Namespace, t.Name, err)
	}
	var owned *kueueWorkload
	for i := range list.Items {
		var wl kueueWorkload
		if err := fromUnstructured(&list.Items[i], &wl); err != nil {
			return kc, err
		}
		kc.Workloads = append(kc.Workloads, wl)
		if owned == nil && wl.ownedBy(t) {
			owned = &kc.Workloads[len(kc.Workloads)-1]
		}
	}
	if !t.IsSuspended() || hubSuspended {
		return kc, nil
	}
	q := &fleet.MemberQueued{LocalQueue: queue}
	lq := &unstructured.Unstructured{}
	lq.SetAPIVersion(kueueAPIVersion)
	lq.SetKind("LocalQueue")
	if err := c.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: queue}, lq); client.IgnoreNotFound(err) != nil {
		return kc, fmt.Errorf("getting Kueue LocalQueue %s/%s: %w", t.Namespace, queue, err)
	} else if err != nil {
		q.Message = fmt.Sprintf("LocalQueue %s/%s does not exist on the member", t.Namespace, queue)
	} else {
		q.ClusterQueue, _, _ = unstructured.NestedString(lq.Object, "spec", "clusterQueue")
	}
	if owned == nil {
		if q.Message == "" {
			q.Message = "the member's Kueue has not created its Workload yet"
		}
		kc.Queued = q
		return kc, nil
	}
	conds := owned.Status.Conditions
	if meta.IsStatusConditionTrue(conds, "Admitted") {
		// Kueue is about to resume it.
		return kc, nil
	}
	for _, typ := range []string{"QuotaReserved", "Admitted"} {
		if c := meta.FindStatusCondition(conds, typ); c != nil && c.Message != "" {
			q.Message = c.Message
			break
		}
	}
	if q.Message == "" {
		q.Message = "waiting for the member's Kueue to admit its Workload"
	}
	q.Message = fleet.Bounded(q.Message, fleet.MaxMemberReason)
	kc.Queued = q
	return kc, nil
}
