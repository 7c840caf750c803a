package fence

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// view is what one probe read of a member: its fleet JobSets and every Job
// and Pod labelled with a JobSet name, by "<namespace>/<JobSet name>".
type view struct {
	jobSets map[string]*jobset.JobSet
	jobs    map[string][]batchv1.Job
	pods    map[string][]corev1.Pod
}

func originKey(o fleet.Origin) string { return o.Namespace + "/" + o.Name }

// read lists, in three requests whatever the number of JobSets, what the
// member holds of the fleet's copies.
func read(ctx context.Context, c client.Reader) (*view, error) {
	var jobSets jobset.JobSetList
	if err := c.List(ctx, &jobSets, client.HasLabels{fleet.OriginUIDLabel}); err != nil {
		return nil, fmt.Errorf("listing fleet JobSets: %w", err)
	}
	var jobs batchv1.JobList
	if err := c.List(ctx, &jobs, client.HasLabels{jobset.JobSetNameKey}); err != nil {
		return nil, fmt.Errorf("listing JobSets' Jobs: %w", err)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.HasLabels{jobset.JobSetNameKey}); err != nil {
		return nil, fmt.Errorf("listing JobSets' Pods: %w", err)
	}
	v := &view{jobSets: map[string]*jobset.JobSet{}, jobs: map[string][]batchv1.Job{}, pods: map[string][]corev1.Pod{}}
	for i := range jobSets.Items {
		js := &jobSets.Items[i]
		v.jobSets[js.Namespace+"/"+js.Name] = js
	}
	for _, j := range jobs.Items {
		key := j.Namespace + "/" + j.Labels[jobset.JobSetNameKey]
		v.jobs[key] = append(v.jobs[key], j)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // runs nothing any more
		}
		key := p.Namespace + "/" + p.Labels[jobset.JobSetNameKey]
		v.pods[key] = append(v.pods[key], p)
	}
	return v, nil
}

// copyState is what is left on the member of origin's copy.
type copyState struct {
	// jobSet is the copy, nil when gone (or when the JobSet of that name
	// was made for another origin).
	jobSet *jobset.JobSet
	// jobs and pods are those of the JobSet's name that are not another
	// live JobSet's: the copy's own, or orphaned ones, which may be the
	// copy's (a JobSet deleted with orphan propagation leaves its Jobs
	// running with no owner).
	jobs []batchv1.Job
	pods []corev1.Pod
}

func (v *view) stateOf(origin fleet.Origin) copyState {
	key := originKey(origin)
	js := v.jobSets[key]
	var others types.UID // a same-named JobSet that is not this copy
	if js != nil && js.Labels[fleet.OriginUIDLabel] != string(origin.UID) {
		others, js = js.UID, nil
	}
	var s copyState
	s.jobSet = js
	for _, j := range v.jobs[key] {
		if others == "" || types.UID(j.Labels[jobset.JobSetUIDKey]) != others {
			s.jobs = append(s.jobs, j)
		}
	}
	for _, p := range v.pods[key] {
		if others == "" || types.UID(p.Labels[jobset.JobSetUIDKey]) != others {
			s.pods = append(s.pods, p)
		}
	}
	return s
}

func (v *view) copyOf(origin fleet.Origin) Copy {
	s := v.stateOf(origin)
	c := Copy{Jobs: len(s.jobs), Pods: len(s.pods)}
	c.Exists = s.jobSet != nil || c.Jobs > 0 || c.Pods > 0
	if js := s.jobSet; js != nil {
		c.Deleting = js.DeletionTimestamp != nil
		c.Status = *js.Status.DeepCopy()
		c.Epoch = fleet.Epoch(js)
	}
	return c
}

// stepKind is one step towards a stopped copy.
type stepKind int

const (
	// deleteForeground deletes the copy's JobSet in the foreground (again,
	// when it was deleted in the background or with orphan propagation
	// while it still controls Jobs).
	deleteForeground stepKind = iota
	// deleteOrphanJob deletes an orphaned Job in the foreground, so it
	// goes only after its Pods.
	deleteOrphanJob
	// deleteOrphanPod deletes a Pod no Job controls any more.
	deleteOrphanPod
	// release removes the agent's report finalizer: nothing of the copy
	// runs, and the hub read its status itself.
	release
)

type step struct {
	kind stepKind
	obj  client.Object
}

// stopSteps says what to do now so that nothing of the copy runs any more.
// Only the absence of the copy's JobSet, Jobs and unfinished Pods is proof
// that it stopped: a JobSet deleted in the background or with orphan
// propagation is gone long before its Jobs and Pods.
func stopSteps(s copyState) []step {
	var steps []step
	js := s.jobSet
	controls := 0
	for i := range s.jobs {
		j := &s.jobs[i]
		owner := metav1.GetControllerOf(j)
		switch {
		case js != nil && owner != nil && owner.UID == js.UID:
			controls++
		case owner == nil && j.DeletionTimestamp == nil:
			steps = append(steps, step{deleteOrphanJob, j})
		}
	}
	for i := range s.pods {
		if p := &s.pods[i]; metav1.GetControllerOf(p) == nil && p.DeletionTimestamp == nil {
			steps = append(steps, step{deleteOrphanPod, p})
		}
	}
	if js == nil {
		return steps
	}
	foreground := controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents)
	switch {
	case js.DeletionTimestamp == nil, controls > 0 && !foreground:
		steps = append(steps, step{deleteForeground, js})
	case !foreground && !controllerutil.ContainsFinalizer(js, metav1.FinalizerOrphanDependents) && len(s.jobs) == 0 && len(s.pods) == 0 &&
		controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer):
		steps = append(steps, step{release, js})
	}
	return steps
}
