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

	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// eventAction is the events.k8s.io "action" of every event this controller
// emits: they all report the outcome of reconciling the JobSet.
const eventAction = "Reconcile"

// apply carries out p for js (as observed). Child objects are changed first
// and the status last, so that the status never claims more than was done;
// transition events go out only once the status that records them is saved.
func (r *Reconciler) apply(ctx context.Context, js *v1alpha2.JobSet, p plan) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	var errs []error

	if err := r.deleteJobs(ctx, p.deleteJobs); err != nil {
		errs = append(errs, err)
	}
	if p.createService != nil {
		if err := r.createService(ctx, js, p.createService); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.createJobs(ctx, js, p.createJobs); err != nil {
		errs = append(errs, err)
	}
	if err := r.suspendJobs(ctx, p.suspendJobs); err != nil {
		errs = append(errs, err)
	}
	if err := r.resumeJobs(ctx, p.resumeJobs); err != nil {
		errs = append(errs, err)
	}

	saved, err := r.saveStatus(ctx, js, p.status)
	switch {
	case apierrors.IsConflict(err):
		// The JobSet changed since it was read; the watch event of that
		// change reconciles it again with fresh data.
		log.V(2).Info("JobSet changed while reconciling; waiting for the newer version")
		return ctrl.Result{}, errors.Join(errs...)
	case err != nil:
		errs = append(errs, err)
	case saved:
		for _, e := range p.events {
			r.event(js, e.eventType, e.reason, e.note)
		}
		switch p.finished {
		case v1alpha2.JobSetCompleted:
			completedTotal.WithLabelValues(js.Name, js.Namespace).Inc()
			log.V(2).Info("JobSet completed")
		case v1alpha2.JobSetFailed:
			failedTotal.WithLabelValues(js.Name, js.Namespace).Inc()
			log.V(2).Info("JobSet failed")
		}
	}

	if p.deleteJobSet {
		log.V(2).Info("Deleting JobSet: ttlSecondsAfterFinished expired")
		err := r.client.Delete(ctx, js,
			client.PropagationPolicy(metav1.DeletePropagationForeground),
			// Never delete a newer JobSet that reuses the name.
			client.Preconditions{UID: ptr.To(js.UID)})
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting JobSet after ttlSecondsAfterFinished: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: p.requeueAfter}, nil
}

// saveStatus patches the status when it differs from the observed one. The
// patch carries the resourceVersion: decisions such as "restart now" were
// made on this version, and must not be applied twice from a stale cache.
func (r *Reconciler) saveStatus(ctx context.Context, js *v1alpha2.JobSet, status v1alpha2.JobSetStatus) (bool, error) {
	if equality.Semantic.DeepEqual(js.Status, status) {
		return false, nil
	}
	updated := js.DeepCopy()
	updated.Status = status
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(js, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("patching status of JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
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
		log.V(2).Info("Deleted Job", "job", klog.KObj(job), "restartAttempt", job.Labels[v1alpha2.RestartsKey])
		return nil
	})
}

func (r *Reconciler) createService(ctx context.Context, js *v1alpha2.JobSet, svc *corev1.Service) error {
	err := r.client.Create(ctx, svc)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		r.event(js, corev1.EventTypeWarning, ReasonHeadlessServiceCreationFailed, err.Error())
		return fmt.Errorf("creating headless Service %s: %w", klog.KObj(svc), err)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Created headless Service", "service", klog.KObj(svc))
	return nil
}

// createJobs creates the Jobs in parallel. A Job the apiserver rejects as
// invalid is reported with a Warning event and not retried: retrying cannot
// help until the JobSet changes, and that change triggers a reconcile.
func (r *Reconciler) createJobs(ctx context.Context, js *v1alpha2.JobSet, jobs []*batchv1.Job) error {
	log := ctrl.LoggerFrom(ctx)
	var mu sync.Mutex
	var rejected []error
	err := r.parallel(ctx, len(jobs), func(i int) error {
		job := jobs[i]
		err := r.client.Create(ctx, job)
		switch {
		case err == nil:
			log.V(2).Info("Created Job", "job", klog.KObj(job))
			return nil
		case apierrors.IsAlreadyExists(err):
			return nil // created by an earlier reconcile the cache has not seen yet
		case apierrors.IsInvalid(err):
			mu.Lock()
			rejected = append(rejected, err)
			mu.Unlock()
			return nil
		default:
			return fmt.Errorf("creating Job %s: %w", klog.KObj(job), err)
		}
	})
	if len(rejected) > 0 {
		invalid := errors.Join(rejected...)
		log.Error(invalid, "The apiserver rejected child Jobs; fix the JobSet's Job template", "count", len(rejected))
		r.event(js, corev1.EventTypeWarning, ReasonJobCreationFailed, invalid.Error())
	}
	if err != nil {
		r.event(js, corev1.EventTypeWarning, ReasonJobCreationFailed, err.Error())
	}
	return err
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
func (r *Reconciler) event(js *v1alpha2.JobSet, eventType, reason, note string) {
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
