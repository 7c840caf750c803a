package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
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

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Unjoin removes what Join created. The member's CRDs stay unless
// RemoveCRDs; the inventory namespace, shared by every member, stays, and
// so does any namespace Join did not create.
//
// Order matters, because the hub runs a member's JobSets elsewhere only on
// proof that their copies there are stopped:
//  1. The agent's hub access is revoked, so a still running agent can
//     neither start nor resume work.
//  2. Unless KeepWorkloads or ConfirmCopiesStopped, the fleet's JobSets on
//     the member are deleted in the foreground and Unjoin waits until they
//     are gone, Jobs included (releasing ReportFinalizer itself: no agent
//     will). If that does not finish, Unjoin stops here with an error and
//     changes nothing more.
//  3. Each dispatch of the member is marked DispatchDeleted=True — reason
//     ReasonUnjoined with how its copy ended, or, with
//     ConfirmCopiesStopped, ReasonStopConfirmed with who stated it —
//     deleted, and released (the agent's finalizer removed). With
//     KeepWorkloads the copies still run, so the dispatches are left as
//     they are, held by the agent's finalizer: the member namespace stays
//     Terminating and the hub waits, until an Unjoin with
//     ConfirmCopiesStopped (the copies stopped by hand, or the member
//     gone) or one without KeepWorkloads (the member reachable: it deletes
//     the copies) gives the proof.
//  4. The member namespace (only if Join created it), ClusterProfile and
//     the rest go.
//
// With ConfirmCopiesStopped Unjoin works on the hub alone: member must be
// nil.
func Unjoin(ctx context.Context, hub, member client.Client, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	switch {
	case opts.ConfirmCopiesStopped && (member != nil || opts.KeepWorkloads || opts.RemoveCRDs):
		return errors.New("membership: ConfirmCopiesStopped unjoins on the hub alone: no member client, KeepWorkloads or RemoveCRDs " +
			"(to delete the copies through a reachable member, unjoin without it)")
	case !opts.ConfirmCopiesStopped && member == nil:
		return fmt.Errorf("membership: %w", errNoMember)
	}
	memberNS := opts.memberNamespace()
	// Refuse, before changing anything, to delete JobSets that run: drain
	// first, or say so with Force.
	if !opts.ConfirmCopiesStopped && !opts.KeepWorkloads {
		if opts.Drain != nil {
			d := *opts.Drain
			if d.Out == nil {
				d.Out = opts.Progress
			}
			if err := Drain(ctx, hub, opts, d); err != nil {
				return fmt.Errorf("draining before the unjoin: %w", err)
			}
		} else if !opts.Force {
			if err := refuseRunning(ctx, member, opts); err != nil {
				return err
			}
		}
	}
	cp := &clusterinventory.ClusterProfile{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}, cp); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("hub: reading ClusterProfile %s/%s: %w", opts.InventoryNamespace, opts.ClusterName, err)
		}
		cp = nil
	}
	owned, err := recordedNamespaceUIDs(ctx, hub, cp, opts)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	// A member joined before namespace UIDs were recorded: its labelled
	// namespace is Join's if the profile names this cluster (an
	// unreachable member proves nothing, and its namespace stays).
	legacy := false
	if member != nil && len(owned) == 0 {
		if clusterID, err := ClusterID(ctx, member); err == nil {
			legacy = legacyJoined(owned, cp, clusterID)
		}
	}

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
	switch {
	case opts.ConfirmCopiesStopped:
	case opts.KeepWorkloads:
		// Claims nothing about the copies, so a member that cannot be
		// reached (wiped, gone) does not stop the hub side.
		if err := releaseFleetJobSets(ctx, member, memberNS); err != nil {
			errs = append(errs, fmt.Errorf("member: %w", err))
		}
	default:
		var err error
		if ended, err = deleteFleetJobSets(ctx, member, memberNS, opts.WaitTimeout, opts.Progress); err != nil {
			return fmt.Errorf("member: %w (nothing on the hub was changed; run unjoin again)", err)
		}
	}
	if member != nil {
		errs = append(errs, deleteIfExists(ctx, member, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}}))
		errs = append(errs, deleteNamespaceIfCreated(ctx, member, fleet.SystemNamespace))
	}
	if opts.RemoveCRDs {
		crds, err := readCRDs(opts.CRDDir)
		errs = append(errs, err)
		for _, crd := range crds {
			errs = append(errs, deleteIfExists(ctx, member, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: crd.GetName()}}))
		}
	}

	// 3. Tell the hub.
	if !opts.KeepWorkloads {
		if err := retireDispatches(ctx, hub, memberNS, opts, ended); err != nil {
			return errors.Join(append(errs, fmt.Errorf("hub: %w", err))...)
		}
	}

	// 4. Remove the member from the hub; the profile last, as it records
	// which member namespace is Join's.
	for _, obj := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.inventoryRole()}},
		// Everything below also goes with the namespace; deleting it
		// explicitly matters where no namespace controller runs, and where
		// the namespace is not Join's.
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentRole}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentTokenSecret}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: AgentServiceAccount}},
	} {
		errs = append(errs, deleteIfExists(ctx, hub, obj))
	}
	errs = append(errs, deleteJoiner(ctx, hub, opts))
	errs = append(errs, deleteMemberNamespace(ctx, hub, memberNS, owned, legacy))
	errs = append(errs, deleteIfExists(ctx, hub, &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}}))
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
	status jobset.JobSetStatus
}

// fleetJobSets lists the member JobSets made for dispatches of memberNS. A
// member without the JobSet CRD has none.
func fleetJobSets(ctx context.Context, member client.Client, memberNS string) ([]jobset.JobSet, error) {
	var list jobset.JobSetList
	if err := member.List(ctx, &list); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing member JobSets: %w", err)
	}
	var out []jobset.JobSet
	for _, js := range list.Items {
		if ns, _, ok := fleet.DispatchOf(&js); ok && ns == memberNS {
			out = append(out, js)
		}
	}
	return out, nil
}

// dispatchName is the dispatch a member copy was made for.
func dispatchName(js *jobset.JobSet) string {
	_, name, _ := fleet.DispatchOf(js)
	return name
}

// deleteFleetJobSets deletes the member JobSets made for dispatches of
// memberNS in the foreground and waits until they are gone: their Jobs
// first (the garbage collector), then ReportFinalizer (released here). It
// returns what each copy ended with, by dispatch name.
func deleteFleetJobSets(ctx context.Context, member client.Client, memberNS string, timeout time.Duration, progress io.Writer) (map[string]copyEnd, error) {
	ended := map[string]copyEnd{}
	var left []string
	shown := ""
	if progress == nil {
		progress = io.Discard
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		copies, err := fleetJobSets(ctx, member, memberNS)
		if err != nil {
			return false, err
		}
		left = left[:0]
		for i := range copies {
			js := &copies[i]
			left = append(left, js.Namespace+"/"+js.Name)
			if e, ok := ended[dispatchName(js)]; !ok || fleet.Epoch(js) >= e.epoch {
				ended[dispatchName(js)] = copyEnd{epoch: fleet.Epoch(js), status: fleet.ReportedStatus(js)}
			}
			if err := retire(ctx, member, js); err != nil {
				return false, err
			}
		}
		if now := strings.Join(left, ", "); now != shown {
			if now == "" {
				fmt.Fprintf(progress, "The fleet's JobSets on the member are gone.\n")
			} else {
				fmt.Fprintf(progress, "Waiting for %d fleet JobSets on the member to be gone, Jobs included: %s\n", len(left), now)
			}
			shown = now
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
func retire(ctx context.Context, member client.Client, js *jobset.JobSet) error {
	switch {
	case js.DeletionTimestamp == nil:
		err := member.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: &js.UID})
		if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting member JobSet %s: %w", client.ObjectKeyFromObject(js), err)
		}
		return nil
	case !controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer),
		controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents):
		return nil
	}
	var jobs batchv1.JobList
	if err := member.List(ctx, &jobs, client.InNamespace(js.Namespace), client.MatchingLabels{jobset.JobSetNameKey: js.Name}); err != nil {
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

func removeReportFinalizer(ctx context.Context, member client.Client, js *jobset.JobSet) error {
	if !controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(js, fleet.ReportFinalizer)
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

// retireDispatches hands every dispatch left in memberNS back to the hub
// (retireDispatch): reason ReasonUnjoined with the final status of a copy
// of the dispatch's epoch (ended) after Unjoin deleted the copies, or
// ReasonStopConfirmed on the operator's word.
func retireDispatches(ctx context.Context, hub client.Client, memberNS string, opts Options, ended map[string]copyEnd) error {
	list, err := memberDispatches(ctx, hub, memberNS)
	if err != nil {
		return err
	}
	who := ""
	if opts.ConfirmCopiesStopped && len(list) > 0 {
		who = operator(ctx, hub)
	}
	for i := range list {
		d := &list[i]
		reason := fleet.ReasonUnjoined
		msg := fmt.Sprintf("cluster %s was unjoined after its copies of the fleet's JobSets were deleted", opts.ClusterName)
		var end *copyEnd
		if e, ok := ended[d.Name]; ok {
			end = &e
		}
		if opts.ConfirmCopiesStopped {
			reason = fleet.ReasonStopConfirmed
			msg = fmt.Sprintf("%s stated with `jobset-fleet-agent unjoin %s` that the copy of epoch %d on cluster %s is stopped",
				who, ConfirmCopiesStoppedFlag, d.Spec.Epoch, opts.ClusterName)
		}
		if err := retireDispatch(ctx, hub, d, reason, msg, end); err != nil {
			return err
		}
	}
	return nil
}

// The command-line flags of Options.Drain and Options.Force for Unjoin,
// named in its refusal.
const (
	UnjoinDrainFlag = "--drain"
	UnjoinForceFlag = "--force"
)

// ErrWorkloadsRunning is returned (wrapped, with the JobSets) when Unjoin
// would delete fleet JobSets that still run on the member.
var ErrWorkloadsRunning = errors.New("fleet JobSets run on the member")

// refuseRunning refuses when fleet JobSets of the member have not finished.
func refuseRunning(ctx context.Context, member client.Client, opts Options) error {
	copies, err := fleetJobSets(ctx, member, opts.memberNamespace())
	if err != nil {
		return fmt.Errorf("member: %w", err)
	}
	var running []string
	for i := range copies {
		if fleet.ReportedStatus(&copies[i]).TerminalState == "" && copies[i].DeletionTimestamp == nil {
			running = append(running, copies[i].Namespace+"/"+copies[i].Name)
		}
	}
	if len(running) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d have not finished (%s). Unjoin with %s to drain the member first (the hub moves what has not started, "+
		"the rest finishes), with %s to delete them now (their JobSets start again elsewhere), or with --keep-workloads to leave them running",
		ErrWorkloadsRunning, len(running), fleet.Bounded(strings.Join(running, ", "), 400), UnjoinDrainFlag, UnjoinForceFlag)
}
