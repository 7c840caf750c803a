package jobset

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// jobOwnerIndex indexes Jobs by the UID of the JobSet that controls them.
// Indexing the UID rather than the name keeps a Job left behind by a deleted
// JobSet from being mistaken for a child of a new JobSet with the same name.
const jobOwnerIndex = "jobset.x-k8s.io/controller-uid"

// Reconciler drives a JobSet's child Jobs and headless Service and reports
// their progress in the JobSet status.
type Reconciler struct {
	client      client.Client
	recorder    events.EventRecorder
	clock       clock.PassiveClock
	parallelism int
	// concurrency is how many JobSets are reconciled at once; 0 leaves the
	// manager's default.
	concurrency int
	// watchPods is set when the InPlaceRestart gate was on at setup: only
	// then are Pods cached.
	watchPods bool
}

// Option configures a Reconciler.
type Option func(*Reconciler)

// WithConcurrency sets how many JobSets are reconciled at once.
func WithConcurrency(n int) Option { return func(r *Reconciler) { r.concurrency = n } }

// NewReconciler returns a Reconciler. c must be the manager's client
// (mgr.GetClient()): child Jobs are listed through a cache index that
// SetupWithManager registers. The recorder is typically
// mgr.GetEventRecorder(ReportingController).
func NewReconciler(c client.Client, recorder events.EventRecorder, opts ...Option) *Reconciler {
	r := &Reconciler{client: c, recorder: recorder, clock: clock.RealClock{}, parallelism: 50}
	for _, o := range opts {
		o(r)
	}
	return r
}

// SetupWithManager registers the Job index, the metrics and the controller.
// It watches JobSets, the Jobs and Services they control, and Pods only with
// the InPlaceRestart gate on (in-place restart reads the agents' reports on
// the pods; without it, a Pod informer would cost memory for nothing).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	registerMetrics()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &batchv1.Job{}, jobOwnerIndex, indexJobOwner); err != nil {
		return fmt.Errorf("indexing Jobs by controlling JobSet: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		// Controller names must be unique per process; a process running
		// several managers (multi-cluster tests) sets
		// ctrl.Options.Controller.SkipNameValidation.
		Named("jobset").
		For(&jobset.JobSet{}, builder.WithPredicates(managedHere())).
		Owns(&batchv1.Job{}).
		// Only the Service's existence matters, so cache its metadata only.
		Owns(&corev1.Service{}, builder.OnlyMetadata)
	if features.Enabled(features.InPlaceRestart) {
		r.watchPods = true
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podsByJobSetIndex, indexPodJobSet); err != nil {
			return fmt.Errorf("indexing Pods by JobSet: %w", err)
		}
		b = b.Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
			name, ok := o.GetLabels()[jobset.JobSetNameKey]
			if !ok {
				return nil
			}
			return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		}))
	}
	if r.concurrency > 0 {
		b = b.WithOptions(controller.Options{MaxConcurrentReconciles: r.concurrency})
	}
	return b.Complete(r)
}

func indexPodJobSet(obj client.Object) []string {
	name, ok := obj.GetLabels()[jobset.JobSetNameKey]
	if !ok {
		return nil
	}
	return []string{obj.GetNamespace() + "/" + name}
}

func indexJobOwner(obj client.Object) []string {
	owner := metav1.GetControllerOf(obj)
	if owner == nil || owner.Kind != "JobSet" || owner.APIVersion != jobset.GroupVersion.String() {
		return nil
	}
	return []string{string(owner.UID)}
}

// managedHere drops events of JobSets that another controller manages
// (spec.managedBy, immutable): this controller must not touch them at all.
func managedHere() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(obj client.Object) bool {
		js, ok := obj.(*jobset.JobSet)
		return !ok || !js.ManagedByOther()
	})
}

// RBAC of the reconciler. delete on jobsets is for ttlSecondsAfterFinished;
// jobsets/finalizers lets child objects carry blockOwnerDeletion; jobs/status
// patch clears startTime before a resumed Job's template changes.
//
// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets/status,verbs=get;patch
// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets/finalizers,verbs=update
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch;update

// Reconcile observes one JobSet, plans, and applies the plan.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	start := time.Now()
	defer func() {
		result := "success"
		if err != nil {
			result = "error"
		}
		reconcileDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}()
	log := ctrl.LoggerFrom(ctx)

	js := &jobset.JobSet{}
	if err := r.client.Get(ctx, req.NamespacedName, js); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if js.DeletionTimestamp != nil {
		// The garbage collector removes the children.
		return ctrl.Result{}, nil
	}
	if js.ManagedByOther() {
		log.V(5).Info("Skipping JobSet managed by another controller", "managedBy", *js.Spec.ManagedBy)
		return ctrl.Result{}, nil
	}

	log.V(2).Info("Reconciling JobSet")
	obs, err := r.observe(ctx, js)
	if err != nil {
		return ctrl.Result{}, err
	}
	return r.apply(ctx, js, ComputePlan(js, obs, r.clock.Now()))
}

// observe reads what a reconcile of js needs besides js itself: its Jobs,
// whether its headless Service exists, and, for in-place restart, its pods.
func (r *Reconciler) observe(ctx context.Context, js *jobset.JobSet) (obs Observed, err error) {
	if obs.Jobs, err = r.childJobs(ctx, js); err != nil {
		return obs, err
	}
	if js.DNSHostnamesEnabled() {
		if obs.ServiceExists, err = r.serviceExists(ctx, js); err != nil {
			return obs, err
		}
	}
	if inPlaceRestartStrategy(js) {
		if !features.Enabled(features.InPlaceRestart) || !r.watchPods {
			ctrl.LoggerFrom(ctx).Info("In-place restart strategy cannot be used when the feature gate is disabled", "featureGate", features.InPlaceRestart)
		} else if obs.Pods, err = r.pods(ctx, js); err != nil {
			return obs, err
		}
	}
	return obs, nil
}

func (r *Reconciler) pods(ctx context.Context, js *jobset.JobSet) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.client.List(ctx, &list, client.InNamespace(js.Namespace), client.MatchingFields{podsByJobSetIndex: js.Namespace + "/" + js.Name}); err != nil {
		return nil, fmt.Errorf("listing Pods of JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	return list.Items, nil
}

// childJobs lists the Jobs js controls.
func (r *Reconciler) childJobs(ctx context.Context, js *jobset.JobSet) ([]batchv1.Job, error) {
	var list batchv1.JobList
	if err := r.client.List(ctx, &list, client.InNamespace(js.Namespace), client.MatchingFields{jobOwnerIndex: string(js.UID)}); err != nil {
		return nil, fmt.Errorf("listing child Jobs of JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	return list.Items, nil
}

func (r *Reconciler) serviceExists(ctx context.Context, js *jobset.JobSet) (bool, error) {
	svc := &metav1.PartialObjectMetadata{}
	svc.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
	err := r.client.Get(ctx, types.NamespacedName{Namespace: js.Namespace, Name: js.Subdomain()}, svc)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("getting headless Service %s/%s: %w", js.Namespace, js.Subdomain(), err)
	}
	return true, nil
}
