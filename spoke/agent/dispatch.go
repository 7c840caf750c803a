package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/spoke/cachesync"
)

// Field indexes the agent registers.
const (
	// dispatchIndex indexes member JobSets by their dispatch annotation.
	dispatchIndex = "fleet.jobset.x-k8s.io/dispatch"
	// originIndex indexes hub dispatches by "<origin namespace>/<origin
	// name>", to find the dispatch a conflicting member JobSet blocks.
	originIndex = "fleet.jobset.x-k8s.io/origin"
)

// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=create
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=list;watch

// dispatchReconciler turns the dispatches of one member namespace on the hub
// into member JobSets and reports their status back.
type dispatchReconciler struct {
	hub       client.Client // cached reads of this member namespace, writes
	hubReader client.Reader // live reads, to confirm a dispatch is gone
	member    client.Client // the member manager's cached client

	clusterName     string
	memberNamespace string
	live            *liveness
	clock           clock.PassiveClock
	states          *dispatchStates
	errors          prometheus.Counter
	// deniedNamespaces and requireNamespaces are the agent's namespace
	// policy (Options.DeniedNamespaces, Options.RequireNamespaces).
	deniedNamespaces  []string
	requireNamespaces bool

	// lastReport is, by dispatch key, when the agent last wrote its status
	// or created its copy (Observed.LastReport).
	lastReportMu sync.Mutex
	lastReport   map[string]time.Time
}

func (r *dispatchReconciler) reported(key string, at time.Time) {
	r.lastReportMu.Lock()
	defer r.lastReportMu.Unlock()
	if r.lastReport == nil {
		r.lastReport = map[string]time.Time{}
	}
	r.lastReport[key] = at
}

// forget drops a dispatch that has nothing left to report on.
func (r *dispatchReconciler) forget(key string) {
	r.lastReportMu.Lock()
	defer r.lastReportMu.Unlock()
	delete(r.lastReport, key)
}

func (r *dispatchReconciler) lastReported(key string) time.Time {
	r.lastReportMu.Lock()
	defer r.lastReportMu.Unlock()
	return r.lastReport[key]
}

// Reconcile observes one dispatch and its member copies, plans, and applies.
func (r *dispatchReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	logger := ctrl.LoggerFrom(ctx)
	if r.live.isFenced() {
		// Cut off from the hub: the fencer owns the copies until the
		// heartbeat is back, and then resyncs every dispatch.
		logger.V(4).Info("Fenced; not reconciling")
		return ctrl.Result{}, nil
	}
	o, err := r.observe(ctx, req)
	if err != nil {
		r.errors.Inc()
		return ctrl.Result{}, err
	}
	p := ComputePlan(o)
	r.states.set(o.Key, p.State)
	res, err := r.apply(ctx, o, p)
	if err != nil {
		r.errors.Inc()
	}
	return res, err
}

func (r *dispatchReconciler) observe(ctx context.Context, req reconcile.Request) (Observed, error) {
	o := Observed{Key: req.Namespace + "/" + req.Name, ClusterName: r.clusterName, Now: metav1.NewTime(r.clock.Now()), DeniedNamespaces: r.deniedNamespaces}
	o.LastReport = r.lastReported(o.Key)
	d := &fleet.JobSetDispatch{}
	switch err := r.hub.Get(ctx, req.NamespacedName, d); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return o, fmt.Errorf("getting JobSetDispatch %s: %w", o.Key, err)
	default:
		o.Dispatch = d
	}

	var copies jobset.JobSetList
	if err := r.member.List(ctx, &copies, client.MatchingFields{dispatchIndex: o.Key}); err != nil {
		return o, fmt.Errorf("listing member JobSets of dispatch %s: %w", o.Key, err)
	}
	o.Copies = copies.Items
	for i := range o.Copies {
		if js := &o.Copies[i]; js.DeletionTimestamp != nil {
			if o.Jobs == nil {
				o.Jobs = map[types.UID]int{}
			}
			n, err := countJobs(ctx, r.member, js)
			if err != nil {
				return o, err
			}
			o.Jobs[js.UID] = n
		}
	}

	if o.Dispatch != nil {
		t := &jobset.JobSet{}
		key := client.ObjectKey{Namespace: d.Spec.Origin.Namespace, Name: d.Spec.Origin.Name}
		switch err := r.member.Get(ctx, key, t); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return o, fmt.Errorf("getting member JobSet %s: %w", key, err)
		default:
			o.Target = t
		}
	}
	if t := o.Target; t != nil && t.DeletionTimestamp == nil && !meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchStarted) {
		var jobs batchv1.JobList
		if err := r.member.List(ctx, &jobs, client.InNamespace(t.Namespace), client.MatchingLabels{jobset.JobSetNameKey: t.Name}); err != nil {
			return o, fmt.Errorf("listing Jobs of member JobSet %s/%s: %w", t.Namespace, t.Name, err)
		}
		o.PodsRan = PodsRan(jobs.Items, t.UID)
	}
	if t := o.Target; t != nil && t.DeletionTimestamp == nil {
		kc, err := observeKueue(ctx, r.member, d, t)
		if err != nil {
			return o, err
		}
		o.Kueue = kc
	}
	return o, nil
}

// apply carries out a plan. Each step is idempotent, so a failure part way
// is finished by the retry.
func (r *dispatchReconciler) apply(ctx context.Context, o Observed, p Plan) (ctrl.Result, error) {
	logger := ctrl.LoggerFrom(ctx)
	if p.ConfirmDispatchGone {
		// The cache may lag behind the hub right after a reconnect; never
		// delete work the hub still wants.
		ns, name, _ := strings.Cut(o.Key, "/")
		_, err := r.liveDispatch(ctx, client.ObjectKey{Namespace: ns, Name: name})
		switch {
		case err == nil:
			logger.V(2).Info("Dispatch still exists on the hub; waiting for the cache")
			return ctrl.Result{RequeueAfter: time.Second}, nil
		case !apierrors.IsNotFound(err):
			return ctrl.Result{}, fmt.Errorf("confirming JobSetDispatch %s is gone: %w", o.Key, err)
		}
	}
	if p.ConfirmDispatchCurrent {
		live, err := r.liveDispatch(ctx, client.ObjectKeyFromObject(o.Dispatch))
		switch {
		case apierrors.IsNotFound(err) || (err == nil && (live.DeletionTimestamp != nil || live.ResourceVersion != o.Dispatch.ResourceVersion)):
			logger.Info("Not starting work from a cached dispatch the hub has changed or removed; waiting for the cache")
			return ctrl.Result{RequeueAfter: time.Second}, nil
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("confirming JobSetDispatch %s before starting work: %w", o.Key, err)
		}
	}
	for _, js := range p.Delete {
		if err := deleteJobSet(ctx, r.member, js); err != nil {
			return ctrl.Result{}, err
		}
		logger.Info("Deleted member JobSet", "jobset", client.ObjectKeyFromObject(js), "epoch", fleet.Epoch(js), "originUID", js.Labels[fleet.OriginUIDLabel])
	}
	d := o.Dispatch
	if p.AddFinalizer {
		before := d.ResourceVersion
		patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(d, fleet.AgentFinalizer)
		if err := r.hub.Patch(ctx, d, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to JobSetDispatch %s: %w", o.Key, err)
		}
		cachesync.AwaitWrite(ctx, r.hub, d, before)
	}
	if js := p.Create; js != nil {
		refusal, err := r.create(ctx, d, js)
		if err != nil {
			return ctrl.Result{}, err
		}
		if refusal != nil {
			r.states.set(o.Key, StateRefused)
			logger.Info("The member refused the copy; reporting it to the hub", "jobset", client.ObjectKeyFromObject(js), "epoch", d.Spec.Epoch, "reason", refusal.reason, "message", refusal.message)
			if st := Refused(d, metav1.NewTime(r.clock.Now()), r.clusterName, refusal.reason, refusal.message); st != nil {
				patch := client.MergeFrom(d.DeepCopy())
				d.Status = *st
				if err := r.hub.Status().Patch(ctx, d, patch); err != nil {
					return ctrl.Result{}, fmt.Errorf("reporting the refusal of JobSetDispatch %s: %w", o.Key, err)
				}
			}
			// An attempt, written or not: the next waits RefusalRetryInterval.
			r.reported(o.Key, r.clock.Now())
			return ctrl.Result{RequeueAfter: RefusalRetryInterval}, nil
		}
		logger.Info("Created member JobSet", "jobset", client.ObjectKeyFromObject(js), "epoch", d.Spec.Epoch)
		r.reported(o.Key, r.clock.Now())
		cachesync.AwaitWrite(ctx, r.member, js, "")
	}
	if js := p.Update; js != nil {
		if err := r.member.Update(ctx, js); err != nil {
			return ctrl.Result{}, fmt.Errorf("updating member JobSet %s/%s: %w", js.Namespace, js.Name, err)
		}
		logger.Info("Updated member JobSet from dispatch", "jobset", client.ObjectKeyFromObject(js), "suspend", js.IsSuspended())
	}
	for _, ch := range p.Workloads {
		if err := applyWorkloadChange(ctx, r.member, ch); err != nil {
			return ctrl.Result{}, err
		}
		logger.Info("Set the member Kueue Workload's spec.active as the hub's suspend asks", "workload", ch.Namespace+"/"+ch.Name, "active", ch.Active)
	}
	if p.Status != nil {
		patch := client.MergeFrom(d.DeepCopy())
		d.Status = *p.Status
		if err := r.hub.Status().Patch(ctx, d, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("patching status of JobSetDispatch %s: %w", o.Key, err)
		}
		r.reported(o.Key, r.clock.Now())
	}
	for _, js := range p.Release {
		patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(js, fleet.ReportFinalizer)
		if err := r.member.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("removing finalizer from member JobSet %s/%s: %w", js.Namespace, js.Name, err)
		}
		logger.Info("Member JobSet's Jobs are gone and its last status reported; released it", "jobset", client.ObjectKeyFromObject(js), "epoch", fleet.Epoch(js), "terminalState", js.Status.TerminalState)
	}
	if p.RemoveFinalizer {
		patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(d, fleet.AgentFinalizer)
		if err := r.hub.Patch(ctx, d, patch); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("removing finalizer from JobSetDispatch %s: %w", o.Key, err)
		}
		logger.Info("Member JobSet gone; released the dispatch")
	}
	if p.State == "" {
		r.forget(o.Key)
	}
	if p.Waiting != "" {
		logger.V(2).Info("Waiting", "for", p.Waiting)
		// The delete event requeues too; this is the safety net.
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	return ctrl.Result{RequeueAfter: p.ReportAfter}, nil
}

// liveDispatch reads a dispatch's metadata from the hub apiserver. The
// live checks need only whether it exists, its resourceVersion and its
// deletion timestamp, not the JobSet it carries.
func (r *dispatchReconciler) liveDispatch(ctx context.Context, key client.ObjectKey) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(fleet.GroupVersion.WithKind("JobSetDispatch"))
	return live, r.hubReader.Get(ctx, key, live)
}

// refusal is why the member will not run a copy: a reason of the
// Accepted=False condition and the member's message.
type refusal struct{ reason, message string }

// create creates the member copy js of d, and its namespace when missing
// (unless the agent may not create namespaces). A lasting failure is a
// refusal (ClassifyCreateError); a transient one an error, retried with
// backoff.
func (r *dispatchReconciler) create(ctx context.Context, d *fleet.JobSetDispatch, js *jobset.JobSet) (*refusal, error) {
	// The namespace usually exists (every JobSet of a namespace after its
	// first): create it only when the create says it is missing, which
	// saves a failed write per JobSet.
	err := r.member.Create(ctx, js)
	if namespaceNotFound(err) {
		if r.requireNamespaces {
			return &refusal{fleet.ReasonNamespaceMissing, fmt.Sprintf("namespace %s does not exist there, and its agent runs with --create-namespaces=false", js.Namespace)}, nil
		}
		// Created with the hub namespace's Pod Security labels: a bare
		// namespace would admit privileged Pods the hub would not.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: js.Namespace, Labels: fleet.PodSecurityLabels(d.Spec.NamespaceLabels)}}
		if err := r.member.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			if reason, lasting := ClassifyCreateError(err); lasting {
				return &refusal{reason, fmt.Sprintf("creating namespace %s: %v", js.Namespace, err)}, nil
			}
			return nil, fmt.Errorf("creating namespace %s: %w", js.Namespace, err)
		}
		err = r.member.Create(ctx, js)
	}
	if reason, lasting := ClassifyCreateError(err); lasting {
		return &refusal{reason, err.Error()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("creating member JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	return nil, nil
}

// namespaceNotFound reports whether a create failed because its namespace
// does not exist (not, say, because the JobSet CRD is not served).
func namespaceNotFound(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}

// jobSetToDispatches maps a member JobSet to the dispatch it was made for,
// or, for a JobSet without the annotation, to the dispatches whose origin it
// occupies (so a Conflict clears when the JobSet goes away).
func (r *dispatchReconciler) jobSetToDispatches(ctx context.Context, js *jobset.JobSet) []reconcile.Request {
	if ns, name, ok := fleet.DispatchOf(js); ok && ns == r.memberNamespace {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
	}
	var list fleet.JobSetDispatchList
	if err := r.hub.List(ctx, &list, client.InNamespace(r.memberNamespace), client.MatchingFields{originIndex: js.Namespace + "/" + js.Name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Mapping member JobSet to dispatches", "jobset", client.ObjectKeyFromObject(js))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// allKeys is every dispatch the agent may have to act on: those in the hub
// cache and those member copies point at (orphans included).
func (r *dispatchReconciler) allKeys(ctx context.Context) ([]reconcile.Request, error) {
	seen := map[client.ObjectKey]bool{}
	var dispatches fleet.JobSetDispatchList
	if err := r.hub.List(ctx, &dispatches, client.InNamespace(r.memberNamespace)); err != nil {
		return nil, fmt.Errorf("listing dispatches: %w", err)
	}
	for i := range dispatches.Items {
		seen[client.ObjectKeyFromObject(&dispatches.Items[i])] = true
	}
	var jobSets jobset.JobSetList
	if err := r.member.List(ctx, &jobSets); err != nil {
		return nil, fmt.Errorf("listing member JobSets: %w", err)
	}
	for i := range jobSets.Items {
		if js := &jobSets.Items[i]; isFleetCopy(js, r.memberNamespace) {
			_, name, _ := fleet.DispatchOf(js)
			seen[client.ObjectKey{Namespace: r.memberNamespace, Name: name}] = true
		}
	}
	reqs := make([]reconcile.Request, 0, len(seen))
	for k := range seen {
		reqs = append(reqs, reconcile.Request{NamespacedName: k})
	}
	return reqs, nil
}
