package jobset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/spoke/cachesync"
)

// apply carries out p for js (as observed), step by step in upstream's
// order; the first step that fails ends the reconcile with its error and
// nothing more is done (the status is not saved, its events are not
// emitted), as upstream's reconcile does. Transition events go out only
// once the status that records them is saved.
func (r *Reconciler) apply(ctx context.Context, js *jobset.JobSet, p Plan) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	steps := []func() error{
		func() error { return r.deleteJobs(ctx, p.DeleteJobs) },
		func() error { return r.deleteJobSetAfterTTL(ctx, js, p.DeleteJobSet) },
		func() error { return p.Err },
		func() error { return r.createService(ctx, js, p.CreateService) },
		func() error { return r.createPVCs(ctx, js, p.CreatePVCs) },
		func() error { return r.scaleJobs(ctx, p.ScaleJobs) },
		func() error { return r.createJobGroups(ctx, js, p.CreateJobs) },
		func() error { return r.suspendJobs(ctx, p.SuspendJobs) },
		func() error { return r.resumeJobs(ctx, p.ResumeJobs) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return ctrl.Result{}, err
		}
	}

	saved, err := r.saveStatus(ctx, js, p.Status)
	switch {
	case apierrors.IsConflict(err):
		// The JobSet changed since it was read; the watch event of that
		// change reconciles it again with fresh data.
		log.V(2).Info("JobSet changed while reconciling; waiting for the newer version")
		return ctrl.Result{}, nil
	case apierrors.IsNotFound(err) && p.DeleteJobSet:
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, err
	case saved:
		for _, e := range p.Events {
			r.event(js, e.eventType, e.reason, e.note)
		}
		switch p.Finished {
		case jobset.JobSetCompleted:
			completedTotal.WithLabelValues(js.Name, js.Namespace).Inc()
			log.V(2).Info("JobSet completed")
		case jobset.JobSetFailed:
			failedTotal.WithLabelValues(js.Name, js.Namespace).Inc()
			log.V(2).Info("JobSet failed")
		}
	}
	return ctrl.Result{RequeueAfter: p.RequeueAfter}, nil
}

func (r *Reconciler) deleteJobSetAfterTTL(ctx context.Context, js *jobset.JobSet, due bool) error {
	if !due {
		return nil
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Deleting JobSet: ttlSecondsAfterFinished expired")
	err := r.client.Delete(ctx, js,
		client.PropagationPolicy(metav1.DeletePropagationForeground),
		// Never delete a newer JobSet that reuses the name.
		client.Preconditions{UID: ptr.To(js.UID)})
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting JobSet after ttlSecondsAfterFinished: %w", err)
	}
	return nil
}

// saveStatus patches the status when it differs from the observed one. The
// patch carries the resourceVersion: decisions such as "restart now" were
// made on this version, and must not be applied twice from a stale cache.
func (r *Reconciler) saveStatus(ctx context.Context, js *jobset.JobSet, status jobset.JobSetStatus) (bool, error) {
	if equality.Semantic.DeepEqual(js.Status, status) {
		return false, nil
	}
	updated := js.DeepCopy()
	updated.Status = status
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(js, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("patching status of JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	// The Jobs this reconcile created start the next one at once.
	cachesync.AwaitWrite(ctx, r.client, updated, js.ResourceVersion)
	return true, nil
}

// parallel runs fn for each of n items, at most r.parallelism at a time, and
// joins the errors.
func (r *Reconciler) parallel(ctx context.Context, n int, fn func(i int) error) error {
	var mu sync.Mutex
	var errs []error
	workqueue.ParallelizeUntil(ctx, r.parallelism, n, func(i int) {
		if err := fn(i); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	return errors.Join(errs...)
}

// deleteJobs deletes Jobs in the foreground: a Job disappears only after its
// pods, so a replacement (same name) never runs beside the old pods.
func (r *Reconciler) deleteJobs(ctx context.Context, jobs []*batchv1.Job) error {
	log := ctrl.LoggerFrom(ctx)
	return r.parallel(ctx, len(jobs), func(i int) error {
		job := jobs[i]
		err := r.client.Delete(ctx, job,
			client.PropagationPolicy(metav1.DeletePropagationForeground),
			client.Preconditions{UID: ptr.To(job.UID)})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // already gone (a conflict here means the UID changed)
		}
		if err != nil {
			return fmt.Errorf("deleting Job %s: %w", klog.KObj(job), err)
		}
		log.V(2).Info("Deleted Job", "job", klog.KObj(job), "restartAttempt", job.Labels[jobset.RestartsKey])
		return nil
	})
}

func (r *Reconciler) createService(ctx context.Context, js *jobset.JobSet, svc *corev1.Service) error {
	if svc == nil {
		return nil
	}
	err := r.client.Create(ctx, svc)
	if apierrors.IsAlreadyExists(err) {
		return nil // created by an earlier reconcile the cache has not seen yet
	}
	if err != nil {
		r.event(js, corev1.EventTypeWarning, ReasonHeadlessServiceCreationFailed, err.Error())
		return fmt.Errorf("creating headless Service %s: %w", klog.KObj(svc), err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Created headless Service", "service", klog.KObj(svc))
	return nil
}

// createPVCs creates the volumeClaimPolicies' PVCs that do not exist yet.
// Like upstream, it asks the apiserver every time rather than watching
// PVCs: one request per claim, and an existing PVC is left as it is.
func (r *Reconciler) createPVCs(ctx context.Context, js *jobset.JobSet, pvcs []*corev1.PersistentVolumeClaim) error {
	for _, pvc := range pvcs {
		err := r.client.Create(ctx, pvc)
		switch {
		case err == nil:
			ctrl.LoggerFrom(ctx).V(2).Info("Created PVC", "pvc", klog.KObj(pvc))
		case apierrors.IsAlreadyExists(err):
		default:
			r.event(js, corev1.EventTypeWarning, ReasonPVCCreationFailed, err.Error())
			return fmt.Errorf("creating PVC %s: %w", klog.KObj(pvc), err)
		}
	}
	return nil
}

// scaleJobs patches parallelism and completions of running Jobs
// (ElasticJobSet).
func (r *Reconciler) scaleJobs(ctx context.Context, scales []jobScale) error {
	var errs []error
	for _, s := range scales {
		scaled := s.job.DeepCopy()
		scaled.Spec.Parallelism, scaled.Spec.Completions = s.parallelism, s.completions
		ctrl.LoggerFrom(ctx).V(2).Info("Scaling Job", "job", klog.KObj(s.job),
			"parallelism", ptr.Deref(s.parallelism, 0), "completions", ptr.Deref(s.completions, 0))
		if err := r.client.Patch(ctx, scaled, client.MergeFrom(s.job)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("failed to patch job %q for scaling: %w", s.job.Name, err))
		}
	}
	return errors.Join(errs...)
}

// createJobGroups creates the Jobs of one replicatedJob after another;
// a replicatedJob whose Jobs are not all created stops the rest.
func (r *Reconciler) createJobGroups(ctx context.Context, js *jobset.JobSet, groups [][]*batchv1.Job) error {
	for _, jobs := range groups {
		if err := r.createJobs(ctx, js, jobs); err != nil {
			return err
		}
	}
	return nil
}

// createJobs creates Jobs in parallel. When some cannot be created, one
// Warning event carries every failure in upstream's words, and the
// reconcile fails, to be retried with backoff: a repeated failure repeats
// the same note, which the events API folds into one event whose count
// grows. A Job that already exists (created by an earlier reconcile the
// cache has not seen yet) is not a failure.
func (r *Reconciler) createJobs(ctx context.Context, js *jobset.JobSet, jobs []*batchv1.Job) error {
	log := ctrl.LoggerFrom(ctx)
	failures := make([]error, len(jobs))
	_ = r.parallel(ctx, len(jobs), func(i int) error {
		job := jobs[i]
		err := r.client.Create(ctx, job)
		switch {
		case err == nil:
			log.V(2).Info("Created Job", "job", klog.KObj(job))
			// The next reconcile, which this Job's own event may start at
			// once, must see it, or it creates it again.
			cachesync.AwaitWrite(ctx, r.client, job, "")
		case apierrors.IsAlreadyExists(err):
		default:
			failures[i] = fmt.Errorf("job %q creation failed with error: %v", job.Name, err)
		}
		return nil
	})
	// Joined in spec order, so that the same failures make the same note.
	if err := errors.Join(failures...); err != nil {
		log.Error(err, "Creating Jobs")
		r.event(js, corev1.EventTypeWarning, ReasonJobCreationFailed, err.Error())
		return err
	}
	return nil
}

func (r *Reconciler) suspendJobs(ctx context.Context, jobs []*batchv1.Job) error {
	return r.parallel(ctx, len(jobs), func(i int) error {
		job := jobs[i]
		suspended := job.DeepCopy()
		suspended.Spec.Suspend = ptr.To(true)
		if err := r.client.Patch(ctx, suspended, client.MergeFrom(job)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("suspending Job %s: %w", klog.KObj(job), err)
		}
		return nil
	})
}

// resumeJobs unsuspends Jobs, updating their pod templates first when the
// JobSet's changed while it was suspended.
func (r *Reconciler) resumeJobs(ctx context.Context, resumes []jobResume) error {
	return r.parallel(ctx, len(resumes), func(i int) error {
		job := resumes[i].job
		if resumes[i].templateChanged() && job.Status.StartTime != nil {
			// The apiserver only accepts scheduling changes to the pod
			// template of a suspended Job that has not started.
			cleared := job.DeepCopy()
			cleared.Status.StartTime = nil
			if err := r.client.Status().Patch(ctx, cleared, client.MergeFrom(job)); err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("clearing startTime of Job %s before resuming it: %w", klog.KObj(job), err)
			}
			job = cleared
		}
		resumed := job.DeepCopy()
		resumed.Spec.Template = resumes[i].template
		resumed.Spec.Suspend = ptr.To(false)
		// Lists (tolerations, scheduling gates) are replaced wholesale by a
		// merge patch, so it must apply to the version they were merged into.
		if err := r.client.Patch(ctx, resumed, client.MergeFromWithOptions(job, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("resuming Job %s: %w", klog.KObj(job), err)
		}
		ctrl.LoggerFrom(ctx).V(2).Info("Resumed Job", "job", klog.KObj(job))
		return nil
	})
}

// maxEventNote is the longest note the events API accepts; a longer one is
// rejected and the user would see no event at all.
const maxEventNote = 1024

// event records an event, shortening notes the API would refuse (several
// failed Job creates joined together easily exceed the limit).
func (r *Reconciler) event(js *jobset.JobSet, eventType, reason, note string) {
	r.recorder.Eventf(js, nil, eventType, reason, eventAction, "%s", truncateNote(note))
}

// truncateNote cuts note to maxEventNote bytes on a rune boundary.
func truncateNote(note string) string {
	const ellipsis = " …"
	if len(note) <= maxEventNote {
		return note
	}
	cut := maxEventNote - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + ellipsis
}
