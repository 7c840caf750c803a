package agent

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// A copy the member's Kueue manages is stopped through its Workload.
// Kueue resumes any job whose Workload it admitted, so suspending the copy
// would not hold; deactivating the Workload (spec.active=false) is how
// Kueue lets anyone stop a job: it evicts the Workload, suspends the copy
// (whose Jobs are suspended and their Pods deleted) and releases its
// quota, and it admits it again only once the Workload is active.

// +kubebuilder:rbac:groups=kueue.x-k8s.io,resources=workloads,verbs=patch

// KueueDeactivatedAnnotation marks a Workload the agent deactivated, because
// the hub suspended its JobSet or the agent was fenced; its value is the
// dispatch key. Only such a Workload is activated again when the hub wants
// the copy running: one Kueue deactivated itself (requeuing limit, maximum
// execution time, rejected admission check) or the member's admin did
// stays inactive.
const KueueDeactivatedAnnotation = "fleet.jobset.x-k8s.io/deactivated-by-agent"

// kueueWorkload is what the agent reads of a Workload.
type kueueWorkload struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		// Active is true when unset (Kueue's default).
		Active *bool `json:"active,omitempty"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions,omitempty"`
	} `json:"status"`
}

func (wl *kueueWorkload) active() bool { return ptr.Deref(wl.Spec.Active, true) }

// ownedBy reports whether Kueue made wl for JobSet t: its controller is t
// (Kueue sets the job as the controller of the Workload it creates).
func (wl *kueueWorkload) ownedBy(t *jobset.JobSet) bool {
	ref := metav1.GetControllerOfNoCopy(&wl.Metadata)
	if ref == nil || ref.UID != t.UID || ref.Kind != "JobSet" || ref.Name != t.Name {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == jobset.GroupVersion.Group
}

// WorkloadChange is a change the agent makes to a copy's Workload.
type WorkloadChange struct {
	Namespace, Name string
	// ResourceVersion is the version the change was decided on: the patch
	// fails if Kueue changed the Workload since.
	ResourceVersion string
	// Active is the spec.active to set.
	Active bool
	// Mark is KueueDeactivatedAnnotation's value to set; empty removes it.
	Mark string
}

// KueueWorkloadChange is what the agent changes on Workload wl of its copy
// t, whose dispatch wants it suspended when hubSuspended, or nil:
//
//   - the hub wants it suspended and wl is active: deactivate it, marked;
//   - the hub wants it running and wl is inactive and marked: activate it
//     (Kueue then queues and admits it again), unmarked;
//   - the hub wants it running, wl is active but still marked (someone
//     activated it): only the mark goes, so a later deactivation by Kueue
//     is not undone.
//
// Nothing else: a Workload whose controller is not t, or that finished, is
// never touched, nor any Workload of a JobSet that is not a fleet copy or
// that finished.
func KueueWorkloadChange(t *jobset.JobSet, hubSuspended bool, wl *kueueWorkload) *WorkloadChange {
	key := t.Annotations[fleet.DispatchAnnotation]
	if key == "" || t.Labels[fleet.OriginUIDLabel] == "" || !wl.ownedBy(t) {
		return nil
	}
	if t.Status.TerminalState != "" || meta.IsStatusConditionTrue(wl.Status.Conditions, "Finished") {
		return nil
	}
	_, marked := wl.Metadata.Annotations[KueueDeactivatedAnnotation]
	ch := &WorkloadChange{Namespace: wl.Metadata.Namespace, Name: wl.Metadata.Name, ResourceVersion: wl.Metadata.ResourceVersion}
	switch {
	case hubSuspended && wl.active():
		ch.Mark = key
	case !hubSuspended && marked:
		ch.Active = true
	default:
		return nil
	}
	return ch
}

// kueueWorkloads plans, for copy t, the changes of its Workloads that make
// the member's Kueue stop it while the hub wants it suspended, and run it
// again once the hub resumes it. Activating a Workload starts work, so it
// waits for a live read of the dispatch like a resume.
func (pl *planner) kueueWorkloads(t *jobset.JobSet) {
	kc, p := &pl.o.Kueue, &pl.p
	if !kc.Managed {
		return
	}
	hubSuspended := ptr.Deref(pl.d.Spec.JobSet.Spec.Suspend, false)
	owned := false
	for i := range kc.Workloads {
		wl := &kc.Workloads[i]
		owned = owned || wl.ownedBy(t)
		if ch := KueueWorkloadChange(t, hubSuspended, wl); ch != nil {
			p.Workloads = append(p.Workloads, *ch)
			p.ConfirmDispatchCurrent = p.ConfirmDispatchCurrent || ch.Active
		}
	}
	// No event tells the agent of a Workload Kueue creates: look again
	// until there is one to deactivate.
	if hubSuspended && !owned && t.Status.TerminalState == "" && p.ReportAfter == 0 {
		p.ReportAfter = KueueRecheckInterval
	}
}

// applyWorkloadChange patches a Workload as ch says, if it is still the
// version ch was decided on. A Workload gone meanwhile is no error: Kueue
// replaced it, and the copy's next event brings the new one.
func applyWorkloadChange(ctx context.Context, c client.Client, ch WorkloadChange) error {
	var mark any
	if ch.Mark != "" {
		mark = ch.Mark
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"resourceVersion": ch.ResourceVersion,
			"annotations":     map[string]any{KueueDeactivatedAnnotation: mark},
		},
		"spec": map[string]any{"active": ch.Active},
	})
	if err != nil {
		return err
	}
	wl := &unstructured.Unstructured{}
	wl.SetAPIVersion(kueueAPIVersion)
	wl.SetKind("Workload")
	wl.SetNamespace(ch.Namespace)
	wl.SetName(ch.Name)
	if err := c.Patch(ctx, wl, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("setting spec.active=%v on Kueue Workload %s/%s: %w", ch.Active, ch.Namespace, ch.Name, err)
	}
	return nil
}

// FenceKueueChanges are the Workload changes of a fenced agent that
// suspends its copies: it deactivates the Workload of every fleet copy of
// memberNamespace (neither finished nor being deleted) that the member's
// Kueue manages, whether admitted or held in the queue. Suspending such a
// copy would not hold while the hub may already run it elsewhere: Kueue
// resumes a job whose Workload it admitted, and admits one it holds. The
// mark has the agent activate it again once it reaches the hub and the hub
// still wants the copy running there. byKueue are the copies whose
// Workloads are, or are now made, inactive: Kueue suspends them as it
// evicts them, and a suspend from the agent before the eviction would only
// have Kueue resume them in between.
func FenceKueueChanges(jobSets []jobset.JobSet, workloads []kueueWorkload, memberNamespace string) (changes []WorkloadChange, byKueue map[types.UID]bool) {
	copies := map[types.UID]*jobset.JobSet{}
	for i := range jobSets {
		if js := &jobSets[i]; kueueManagedCopy(js, memberNamespace) {
			copies[js.UID] = js
		}
	}
	byKueue = map[types.UID]bool{}
	for i := range workloads {
		wl := &workloads[i]
		ref := metav1.GetControllerOfNoCopy(&wl.Metadata)
		if ref == nil || copies[ref.UID] == nil || !wl.ownedBy(copies[ref.UID]) {
			continue
		}
		byKueue[ref.UID] = true
		if ch := KueueWorkloadChange(copies[ref.UID], true, wl); ch != nil {
			changes = append(changes, *ch)
		}
	}
	return changes, byKueue
}

// kueueManagedCopy reports whether js is a live, unfinished fleet copy of
// memberNamespace naming a LocalQueue.
func kueueManagedCopy(js *jobset.JobSet, memberNamespace string) bool {
	return isFleetCopy(js, memberNamespace) && js.Labels[fleet.KueueQueueNameLabel] != "" &&
		js.DeletionTimestamp == nil && js.Status.TerminalState == ""
}

// fenceKueueCopies makes FenceKueueChanges for the member's JobSets,
// reading the Workloads of the namespaces of the copies concerned (live,
// whole), and returns the copies Kueue stops. Nothing is read when no copy
// names a queue, nor when the member does not serve Kueue's API.
func fenceKueueCopies(ctx context.Context, c client.Client, jobSets []jobset.JobSet, memberNamespace string) (byKueue map[types.UID]bool, err error) {
	namespaces := map[string]bool{}
	for i := range jobSets {
		if js := &jobSets[i]; kueueManagedCopy(js, memberNamespace) {
			namespaces[js.Namespace] = true
		}
	}
	var workloads []kueueWorkload
	for ns := range namespaces {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(kueueAPIVersion)
		list.SetKind("WorkloadList")
		err := c.List(ctx, list, client.InNamespace(ns))
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing Kueue Workloads of namespace %s: %w", ns, err)
		}
		for i := range list.Items {
			var wl kueueWorkload
			if err := fromUnstructured(&list.Items[i], &wl); err != nil {
				return nil, err
			}
			workloads = append(workloads, wl)
		}
	}
	changes, byKueue := FenceKueueChanges(jobSets, workloads, memberNamespace)
	for _, ch := range changes {
		if err := applyWorkloadChange(ctx, c, ch); err != nil {
			return nil, err
		}
		log.FromContext(ctx).Info("Deactivated the Kueue Workload of a fleet JobSet while fenced", "workload", ch.Namespace+"/"+ch.Name)
	}
	return byKueue, nil
}
