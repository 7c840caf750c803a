package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// Unjoin removes what Join created. The member's CRDs stay unless
// RemoveCRDs; the inventory namespace, shared by every member, stays, and
// so does any namespace Join did not create.
//
// Order matters, because the hub takes an unjoin as proof that the member's
// copies are stopped:
//  1. The agent's hub access is revoked, so a still running agent can
//     neither start nor resume work.
//  2. Unless KeepWorkloads, the fleet's JobSets on the member are deleted in
//     the foreground and Unjoin waits until they are gone, Jobs included
//     (releasing ReportFinalizer itself: no agent will). If that does not
//     finish, Unjoin stops here with an error and changes nothing more.
//  3. Each dispatch of the member is marked DispatchDeleted=True, reason
//     ReasonUnjoined — with how its copy ended, when it finished — and
//     released (the agent's finalizer removed). With KeepWorkloads the
//     copies still run, so they are only released, not marked: the hub
//     keeps waiting for a confirmed fence.
//  4. The member namespace, ClusterProfile and the rest go.
func Unjoin(ctx context.Context, hub, member client.Client, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	memberNS := opts.memberNamespace()

	// 1. Revoke the agent.
	var errs []error
	for _, obj := range []client.Object{
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentRole}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}},
	} {
		errs = append(errs, deleteIfExists(ctx, hub, obj))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hub: revoking the agent: %w", err)
	}

	// 2. Stop the member's copies.
	var ended map[string]copyEnd
	if opts.KeepWorkloads {
		// Claims nothing about the copies, so a member that cannot be
		// reached (wiped, gone) does not stop the hub side.
		if err := releaseFleetJobSets(ctx, member, memberNS); err != nil {
			errs = append(errs, fmt.Errorf("member: %w", err))
		}
	} else {
		var err error
		if ended, err = deleteFleetJobSets(ctx, member, memberNS, opts.WaitTimeout); err != nil {
			return fmt.Errorf("member: %w (nothing on the hub was changed; run unjoin again)", err)
		}
	}
	errs = append(errs, deleteIfExists(ctx, member, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: AgentNamespace, Name: KubeconfigSecret}}))
	errs = append(errs, deleteNamespaceIfCreated(ctx, member, AgentNamespace))
	if opts.RemoveCRDs {
		crds, err := readCRDs(opts.CRDDir)
		errs = append(errs, err)
		for _, crd := range crds {
			errs = append(errs, deleteIfExists(ctx, member, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crd.GetName()}}))
		}
	}

	// 3. Tell the hub.
	if err := releaseDispatches(ctx, hub, memberNS, opts.ClusterName, !opts.KeepWorkloads, ended); err != nil {
		return errors.Join(append(errs, fmt.Errorf("hub: %w", err))...)
	}

	// 4. Remove the member from the hub.
	for _, obj := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}},
		&clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}},
		// Everything below also goes with the namespace; deleting it
		// explicitly matters where no namespace controller runs, and where
		// the namespace is not Join's.
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentRole}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentTokenSecret}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentServiceAccount}},
	} {
		errs = append(errs, deleteIfExists(ctx, hub, obj))
	}
	errs = append(errs, deleteNamespaceIfCreated(ctx, hub, memberNS))
	return errors.Join(errs...)
}

func deleteIfExists(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

func deleteNamespaceIfCreated(ctx context.Context, c client.Client, name string) error {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ns.Labels[CreatedByLabel] != createdByValue {
		return nil
	}
	return deleteIfExists(ctx, c, ns)
}

// copyEnd is what a deleted copy had reported: its epoch and status.
type copyEnd struct {
	epoch  int64
	status v1alpha2.JobSetStatus
}

// fleetJobSets lists the member JobSets made for dispatches of memberNS. A
// member without the JobSet CRD has none.
func fleetJobSets(ctx context.Context, member client.Client, memberNS string) ([]v1alpha2.JobSet, error) {
	var list v1alpha2.JobSetList
	if err := member.List(ctx, &list); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing member JobSets: %w", err)
	}
	var out []v1alpha2.JobSet
	for _, js := range list.Items {
		if strings.HasPrefix(js.Annotations[fleetv1alpha1.DispatchAnnotation], memberNS+"/") {
			out = append(out, js)
		}
	}
	return out, nil
}

// dispatchName is the dispatch a member copy was made for.
func dispatchName(js *v1alpha2.JobSet) string {
	_, name, _ := strings.Cut(js.Annotations[fleetv1alpha1.DispatchAnnotation], "/")
	return name
}

// deleteFleetJobSets deletes the member JobSets made for dispatches of
// memberNS in the foreground and waits until they are gone: their Jobs
// first (the garbage collector), then ReportFinalizer (released here). It
// returns what each copy ended with, by dispatch name.
func deleteFleetJobSets(ctx context.Context, member client.Client, memberNS string, timeout time.Duration) (map[string]copyEnd, error) {
	ended := map[string]copyEnd{}
	var left []string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		copies, err := fleetJobSets(ctx, member, memberNS)
		if err != nil {
			return false, err
		}
		left = left[:0]
		for i := range copies {
			js := &copies[i]
			left = append(left, js.Namespace+"/"+js.Name)
			if e, ok := ended[dispatchName(js)]; !ok || agent.Epoch(js) >= e.epoch {
				ended[dispatchName(js)] = copyEnd{epoch: agent.Epoch(js), status: agent.ReportedStatus(js)}
			}
			if err := retire(ctx, member, js); err != nil {
				return false, err
			}
		}
		return len(copies) == 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("fleet JobSets %v not gone: %w", left, err)
	}
	return ended, nil
}

// retire moves one copy towards being gone: foreground deletion, then,
// once the garbage collector has deleted its Jobs, ReportFinalizer off.
func retire(ctx context.Context, member client.Client, js *v1alpha2.JobSet) error {
	switch {
	case js.DeletionTimestamp == nil:
		err := member.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: &js.UID})
		if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
		}
		return nil
	case !controllerutil.ContainsFinalizer(js, fleetv1alpha1.ReportFinalizer),
		controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents):
		return nil
	}
	var jobs batchv1.JobList
	if err := member.List(ctx, &jobs, client.InNamespace(js.Namespace), client.MatchingLabels{v1alpha2.JobSetNameKey: js.Name}); err != nil {
		return fmt.Errorf("listing Jobs of member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
	}
	for i := range jobs.Items {
		if owner := metav1.GetControllerOf(&jobs.Items[i]); owner != nil && owner.UID == js.UID {
			// Deleted in the background (by hand): make it foreground so
			// the garbage collector deletes its Jobs first.
			err := member.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: &js.UID})
			if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
				return fmt.Errorf("deleting member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
			}
			return nil
		}
	}
	return removeReportFinalizer(ctx, member, js)
}

func removeReportFinalizer(ctx context.Context, member client.Client, js *v1alpha2.JobSet) error {
	if !controllerutil.ContainsFinalizer(js, fleetv1alpha1.ReportFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(js, fleetv1alpha1.ReportFinalizer)
	if err := member.Patch(ctx, js, patch); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("removing finalizer from member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
	}
	return nil
}

// releaseFleetJobSets leaves the fleet's JobSets running but drops
// ReportFinalizer, which no agent would release any more.
func releaseFleetJobSets(ctx context.Context, member client.Client, memberNS string) error {
	copies, err := fleetJobSets(ctx, member, memberNS)
	if err != nil {
		return err
	}
	for i := range copies {
		if err := removeReportFinalizer(ctx, member, &copies[i]); err != nil {
			return err
		}
	}
	return nil
}

// releaseDispatches removes the agent's finalizer from the dispatches left
// in memberNS: with the agent gone nobody else would. With markDeleted (the
// copies are confirmed gone) it first sets DispatchDeleted=True, reason
// ReasonUnjoined, with the final status of a copy of the dispatch's epoch.
func releaseDispatches(ctx context.Context, hub client.Client, memberNS, cluster string, markDeleted bool, ended map[string]copyEnd) error {
	var list fleetv1alpha1.JobSetDispatchList
	if err := hub.List(ctx, &list, client.InNamespace(memberNS)); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("listing dispatches in %s: %w", memberNS, err)
	}
	for i := range list.Items {
		d := &list.Items[i]
		if markDeleted && !meta.IsStatusConditionTrue(d.Status.Conditions, fleetv1alpha1.DispatchDeleted) {
			patch := client.MergeFrom(d.DeepCopy())
			if e, ok := ended[d.Name]; ok && e.epoch == d.Spec.Epoch {
				d.Status.ObservedEpoch = e.epoch
				d.Status.JobSetStatus = e.status
			}
			meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{
				Type: fleetv1alpha1.DispatchDeleted, Status: metav1.ConditionTrue, Reason: fleetv1alpha1.ReasonUnjoined,
				Message:            fmt.Sprintf("cluster %s was unjoined after its copies of the fleet's JobSets were deleted", cluster),
				ObservedGeneration: d.Generation,
			})
			d.Status.LastSyncTime = ptrNow()
			if err := hub.Status().Patch(ctx, d, patch); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("marking dispatch %s deleted: %w", client.ObjectKeyFromObject(d), err)
			}
		}
		if !controllerutil.ContainsFinalizer(d, fleetv1alpha1.AgentFinalizer) {
			continue
		}
		patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(d, fleetv1alpha1.AgentFinalizer)
		if err := hub.Patch(ctx, d, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("releasing dispatch %s: %w", client.ObjectKeyFromObject(d), err)
		}
	}
	return nil
}

func ptrNow() *metav1.Time {
	now := metav1.Now()
	return &now
}
