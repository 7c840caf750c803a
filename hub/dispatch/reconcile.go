package dispatch

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

const eventAction = "Dispatch"

// requeueMargin makes sure a timeout has passed when the requeue fires.
const requeueMargin = 100 * time.Millisecond

// Reconcile drives one hub JobSet: observe, plan (pure), apply.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("jobset", req.NamespacedName.String())
	ctx = ctrl.LoggerInto(ctx, log)

	o, members, err := r.observe(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	if o.JobSet == nil && len(o.Orphans) == 0 {
		return reconcile.Result{}, nil
	}

	// Choosing and reserving are serialized so concurrent placements see
	// each other; nothing in here waits for the API server.
	r.placing.Lock()
	p, err := ComputePlan(*o, r.chooser(ctx, o, members))
	if err == nil && p.Create != nil {
		r.ledger.put(o.JobSet.UID, commitment{member: memberOf(p.Create), epoch: p.Create.Spec.Epoch, resources: p.Reserve, queue: queueOf(p.Create)})
		r.placed[o.JobSet.UID] = p.Create.Spec.Epoch
	}
	r.placing.Unlock()
	if err != nil {
		return reconcile.Result{}, err
	}

	// Judged before apply, which writes the plan's status into o.JobSet.
	frees := freesTheQueue(o, p)
	res, err := r.apply(ctx, o, p)
	if err != nil && p.Create != nil {
		// The dispatch may not exist; the next reconcile places again.
		r.ledger.forget(o.JobSet.UID)
		r.placing.Lock()
		delete(r.placed, o.JobSet.UID)
		r.placing.Unlock()
	}
	if err == nil && p.RemoveFinalizer {
		r.placing.Lock()
		delete(r.placed, o.JobSet.UID)
		r.placing.Unlock()
	}
	if err == nil && frees {
		r.kick()
	}
	return res, err
}

// freesTheQueue reports whether a plan lets JobSets waiting in the queue
// move: a JobSet left the queue (placed, or deleted while waiting), or
// capacity committed on a member is released (a dispatch deleted, a
// JobSet finished).
func freesTheQueue(o *Observed, p Plan) bool {
	js := o.JobSet
	if js == nil {
		return len(p.Delete) > 0
	}
	wasQueued := inQueue(js, o.KueueOnHub) || (js.DeletionTimestamp != nil && fleetOf(&js.Status).Cluster == "")
	if wasQueued && (p.Create != nil || p.RemoveFinalizer) {
		return true
	}
	for _, s := range []*jobset.JobSetStatus{p.Record, p.Status} {
		if s != nil && IsFinished(s) && !IsFinished(&js.Status) {
			return true
		}
	}
	return len(p.Delete) > 0 || len(p.Release) > 0
}

// observe reads the JobSet, its dispatches (and those of an earlier JobSet
// of the same name), the members, and — for a silent member the hub can
// reach itself — the JobSet's copy there.
func (r *Reconciler) observe(ctx context.Context, key types.NamespacedName) (*Observed, []inventory.Member, error) {
	o := &Observed{
		Now:                r.opts.Clock.Now(),
		LostTimeout:        r.inventory.MemberLostTimeout(),
		InventoryNamespace: r.inventory.Namespace(),
		StartTimeout:       r.opts.StartTimeout,
		Strategy:           r.opts.QueueingStrategy,
	}
	js := &jobset.JobSet{}
	switch err := r.client.Get(ctx, key, js); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, nil, fmt.Errorf("reading JobSet %s: %w", key, err)
	case ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet:
		o.JobSet = js
	}
	o.KueueOnHub = r.kueueOnHubFor(ctx, o.JobSet)

	list := &fleet.JobSetDispatchList{}
	if err := r.client.List(ctx, list, client.MatchingFields{OriginIndex: key.String()}); err != nil {
		return nil, nil, fmt.Errorf("listing dispatches of JobSet %s: %w", key, err)
	}
	for _, d := range list.Items {
		if o.JobSet != nil && d.Spec.Origin.UID == o.JobSet.UID {
			o.Dispatches = append(o.Dispatches, d)
		} else {
			o.Orphans = append(o.Orphans, d)
		}
	}
	if o.JobSet == nil && len(o.Orphans) == 0 {
		return o, nil, nil
	}

	members, err := r.inventory.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	o.Members = make(map[string]inventory.Member, len(members))
	for _, m := range members {
		o.Members[m.Name] = m
	}

	if o.JobSet != nil {
		if err := r.observeRecordedDispatch(ctx, o); err != nil {
			return nil, nil, err
		}
		ns := &corev1.Namespace{}
		switch err := r.client.Get(ctx, types.NamespacedName{Name: o.JobSet.Namespace}, ns); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, nil, fmt.Errorf("reading namespace %s: %w", o.JobSet.Namespace, err)
		default:
			o.NamespaceLabels = fleet.PodSecurityLabels(ns.Labels)
		}
	}
	r.observeCopies(ctx, o)
	return o, members, nil
}

// observeRecordedDispatch reads the recorded placement's dispatch from the
// API server when the cache does not have it: right after a create, or a
// hub restart, acting on its absence would place the JobSet twice.
func (r *Reconciler) observeRecordedDispatch(ctx context.Context, o *Observed) error {
	fs := fleetOf(&o.JobSet.Status)
	if fs.Cluster == "" || currentDispatch(o.Dispatches, fs) != nil {
		return nil
	}
	d := &fleet.JobSetDispatch{}
	name := types.NamespacedName{Namespace: fleet.MemberNamespace(fs.Cluster), Name: fleet.DispatchName(o.JobSet.Namespace, o.JobSet.Name)}
	switch err := r.reader.Get(ctx, name, d); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading JobSetDispatch %s: %w", name, err)
	case d.Spec.Origin.UID != o.JobSet.UID:
		return nil // an orphan; the watch brings it
	}
	for i := range o.Dispatches {
		if o.Dispatches[i].UID == d.UID {
			o.Dispatches[i] = *d
			return nil
		}
	}
	o.Dispatches = append(o.Dispatches, *d)
	return nil
}

// apply carries out a plan in its order. Each step is idempotent, so a
// failure part way is finished by the retry; decisions made on cached
// objects are written with optimistic locks, so a stale cache turns into a
// conflict and a retry, never into a wrong step.
func (r *Reconciler) apply(ctx context.Context, o *Observed, p Plan) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	js := o.JobSet
	before := observeBefore(js)
	if p.AddFinalizer {
		patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(js, fleet.JobSetFinalizer)
		if err := r.client.Patch(ctx, js, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	// Old dispatches are deleted before they are released: once a dispatch
	// has a deletion timestamp no agent can add its finalizer to it, so no
	// copy can start for it after the hub let it go. The preconditions
	// make a delete decided on a stale cache (a deposed leader's) fail
	// instead of retiring a dispatch as it is now.
	for _, d := range p.Delete {
		if err := r.client.Delete(ctx, d, client.Preconditions{UID: ptr.To(d.UID), ResourceVersion: ptr.To(d.ResourceVersion)}); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("deleting JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
		}
		r.event(o, corev1.EventTypeNormal, fleet.ReasonDeleting, "deleting JobSetDispatch %s/%s (epoch %d) on member %s", d.Namespace, d.Name, d.Spec.Epoch, memberOf(d))
	}
	// Old copies are released before a new one is created: the release is
	// where the proof that they stopped is checked against the API server.
	for _, d := range p.Release {
		if err := r.release(ctx, o, d); err != nil {
			return reconcile.Result{}, err
		}
	}
	if p.Record != nil {
		// Recorded before the dispatch exists: after a crash the next
		// reconcile knows this epoch was given out.
		patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
		js.Status = *p.Record.DeepCopy()
		if err := r.client.Status().Patch(ctx, js, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("recording placement on member %s: %w", fleetOf(p.Record).Cluster, err)
		}
	}
	if d := p.Create; d != nil {
		switch err := r.client.Create(ctx, d); {
		case err == nil:
			log.Info("Dispatched", "member", memberOf(d), "epoch", d.Spec.Epoch)
			before.dispatched(js, d, r.opts.Clock.Now())
		case apierrors.IsAlreadyExists(err):
			// Ours, created before a crash; or an older one still going away
			// (placement excluded it, the cache lagged): the next reconcile
			// sees which.
		default:
			r.reportCreateFailed(ctx, o, d, err)
			return reconcile.Result{}, fmt.Errorf("creating JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	if d := p.Update; d != nil {
		if err := r.client.Update(ctx, d); err != nil {
			return reconcile.Result{}, fmt.Errorf("propagating spec to JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	for _, name := range p.StopCopies {
		if err := r.stopCopy(ctx, o, name); err != nil {
			log.Error(err, "Stopping the copy through the hub's access to the member", "member", name)
		}
	}
	if p.Decision != nil {
		if err := r.publishDecision(ctx, js, *p.Decision); err != nil {
			return reconcile.Result{}, err
		}
	}
	if p.Status != nil {
		base := js.DeepCopy()
		js.Status = *p.Status
		if !equality.Semantic.DeepEqual(base.Status, js.Status) {
			if err := r.client.Status().Patch(ctx, js, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
				return reconcile.Result{}, fmt.Errorf("writing status: %w", err)
			}
		}
		before.statusWritten(o, r.opts.Clock.Now())
	}
	for _, e := range p.Events {
		r.event(o, e.Type, e.Reason, "%s", e.Message)
	}
	if p.RemoveFinalizer {
		patch := client.MergeFrom(js.DeepCopy())
		controllerutil.RemoveFinalizer(js, fleet.JobSetFinalizer)
		if err := r.client.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("removing finalizer: %w", err)
		}
		r.ledger.forget(js.UID)
		log.Info("Member copies removed; JobSet released")
	}
	if p.DeleteJobSet {
		log.Info("Deleting finished JobSet: ttlSecondsAfterFinished passed", "ttlSecondsAfterFinished", ptr.Deref(js.Spec.TTLSecondsAfterFinished, 0))
		if err := r.client.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("deleting JobSet after its TTL: %w", err)
		}
	}
	return reconcile.Result{RequeueAfter: p.RequeueAfter}, nil
}

// release removes the hub's finalizer from a dispatch whose copy is known
// to be stopped. The proof is checked again on the dispatch as the API
// server has it (the plan's came from the cache, and the delete just
// before changed it), and the optimistic lock makes sure the release
// applies to exactly what was checked.
func (r *Reconciler) release(ctx context.Context, o *Observed, cached *fleet.JobSetDispatch) error {
	d := &fleet.JobSetDispatch{}
	switch err := r.reader.Get(ctx, client.ObjectKeyFromObject(cached), d); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading JobSetDispatch %s/%s to release it: %w", cached.Namespace, cached.Name, err)
	case d.UID != cached.UID || !controllerutil.ContainsFinalizer(d, fleet.DispatchFinalizer):
		return nil
	}
	pl := planner{o: *o}
	ok, how := pl.stopped(d)
	if !ok {
		return fmt.Errorf("JobSetDispatch %s/%s changed since the hub read it: its copy is no longer known to be stopped", d.Namespace, d.Name)
	}
	patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(d, fleet.DispatchFinalizer)
	if err := r.client.Patch(ctx, d, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
	}
	r.event(o, corev1.EventTypeNormal, fleet.ReasonReleased, "released JobSetDispatch %s/%s (epoch %d): %s", d.Namespace, d.Name, d.Spec.Epoch, how)
	return nil
}

// reportCreateFailed shows on the JobSet that its dispatch could not be
// created (Dispatched=False, DispatchFailed, and a warning event when the
// error is new). The recorded placement stays: the retry creates the same
// dispatch, same epoch.
func (r *Reconciler) reportCreateFailed(ctx context.Context, o *Observed, d *fleet.JobSetDispatch, createErr error) {
	js := o.JobSet
	base := js.DeepCopy()
	js.Status = CreateFailedStatus(js.Status, d, createErr, r.opts.Clock.Now())
	if equality.Semantic.DeepEqual(base.Status, js.Status) {
		return
	}
	if err := r.client.Status().Patch(ctx, js, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Writing the failed dispatch create to status", "member", memberOf(d), "epoch", d.Spec.Epoch)
	}
	c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched)
	r.event(o, corev1.EventTypeWarning, fleet.ReasonDispatchFailed, "%s", c.Message)
}

// publishDecision creates or updates the JobSet's PlacementDecision.
func (r *Reconciler) publishDecision(ctx context.Context, js *jobset.JobSet, res placement.Result) error {
	want := placement.Decision(js, res, r.inventory.Namespace())
	have := &clusterinventory.PlacementDecision{}
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PlacementDecision: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading PlacementDecision: %w", err)
	}
	if equality.Semantic.DeepEqual(have.Decisions, want.Decisions) && have.Annotations[placement.ReasonsAnnotation] == want.Annotations[placement.ReasonsAnnotation] &&
		have.SchedulerName == want.SchedulerName {
		return nil
	}
	patch := client.MergeFrom(have.DeepCopy())
	have.Decisions, have.SchedulerName = want.Decisions, want.SchedulerName
	if have.Annotations == nil {
		have.Annotations = map[string]string{}
	}
	have.Annotations[placement.ReasonsAnnotation] = want.Annotations[placement.ReasonsAnnotation]
	if err := r.client.Patch(ctx, have, patch); err != nil {
		return fmt.Errorf("updating PlacementDecision: %w", err)
	}
	return nil
}

// event records an event on the JobSet (nothing when it is gone), its
// note bounded: the events API refuses longer ones.
func (r *Reconciler) event(o *Observed, typ, reason, format string, args ...any) {
	if o.JobSet == nil {
		return
	}
	r.recorder.Eventf(o.JobSet, nil, typ, reason, eventAction, "%s", fleet.Bounded(fmt.Sprintf(format, args...), fleet.MaxEventNote))
}
