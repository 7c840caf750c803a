package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/dispatch"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// afterWrite is a client that calls hook after each Patch or Delete of a
// JobSetDispatch it carries out, so a test can act between the hub's steps.
type afterWrite struct {
	client.Client
	hook func(d *fleet.JobSetDispatch)
}

func (c *afterWrite) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if d, ok := obj.(*fleet.JobSetDispatch); ok && err == nil {
		c.hook(d)
	}
	return err
}

func (c *afterWrite) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	err := c.Client.Delete(ctx, obj, opts...)
	if d, ok := obj.(*fleet.JobSetDispatch); ok && err == nil {
		c.hook(d)
	}
	return err
}

// startHubWith runs the hub's inventory and dispatcher as hub.Setup wires
// them, the dispatcher writing through afterWrite{hook}. Tests without a
// hook use startHub, which is hub.Setup itself.
func startHubWith(t *testing.T, hook func(d *fleet.JobSetDispatch)) {
	t.Helper()
	opts := hubcomponent.DefaultOptions()
	opts.InventoryNamespace = inventoryNS
	mgr := hub.NewManager(t, opts.CacheOptions())
	inv := inventory.New(mgr.GetCache(), inventoryNS, inventory.Options{
		HeartbeatTimeout: heartbeatTimeout, MemberLostTimeout: lostTimeout, LiveReader: mgr.GetAPIReader(),
	})
	if err := inv.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	c := mgr.GetClient()
	if hook != nil {
		c = &afterWrite{Client: c, hook: hook}
	}
	r := dispatch.NewReconciler(c, mgr.GetAPIReader(), inv, mgr.GetEventRecorder("jobset-fleet-hub"), dispatch.Options{})
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, mgr)
}

// TestRetiredDispatchCannotBeTaken: the hub deletes an old dispatch before
// it lets it go, so an agent returning in between cannot take it (add its
// finalizer and start a copy) while the hub runs the JobSet elsewhere.
func TestRetiredDispatchCannotBeTaken(t *testing.T) {
	var (
		mu         sync.Mutex
		agentTook  *bool
		unexpected error
	)
	oldNS := fleet.MemberNamespace("retire-a")
	startHubWith(t, func(d *fleet.JobSetDispatch) {
		mu.Lock()
		defer mu.Unlock()
		if d.Namespace != oldNS || agentTook != nil {
			return
		}
		// The agent of retire-a comes back right after the hub's first
		// step on the old dispatch and takes it, as it does before it
		// creates a copy.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &fleet.JobSetDispatch{}
			if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(d), cur); err != nil {
				return err
			}
			controllerutil.AddFinalizer(cur, fleet.AgentFinalizer)
			return hub.Client.Update(context.Background(), cur)
		})
		switch {
		case err == nil:
			agentTook = ptr.To(true)
		case apierrors.IsNotFound(err), strings.Contains(err.Error(), "being deleted"):
			// Gone, or the apiserver's refusal of a new finalizer on an
			// object being deleted: the protection this test is about.
			agentTook = ptr.To(false)
		default:
			unexpected = err
		}
	})
	sel := map[string]string{"test": "retire"}
	a := join(t, "retire-a", "8", sel)
	join(t, "retire-b", "4", sel)
	ns := namespace(t, "team-retire")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=retire").
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 3}).Obj()
	create(t, js)
	testenv.Eventually(t, timeout, "dispatch to retire-a", func() error {
		if dispatchOf(t, js, "retire-a") == nil {
			return fmt.Errorf("no dispatch yet")
		}
		return nil
	})

	// The agent goes silent before it took the dispatch; an operator says
	// nothing runs there.
	a.stop()
	testenv.Eventually(t, timeout, "retire-a's heartbeat stale", func() error {
		if c := condition(get(t, js), fleet.ConditionMemberStatusStale); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		return nil
	})
	markOutOfService(t, "retire-a")
	testenv.Eventually(t, timeout, "moved to retire-b", func() error {
		if d := dispatchOf(t, js, "retire-b"); d == nil {
			return fmt.Errorf("no dispatch on retire-b yet; status %+v", get(t, js).Status)
		}
		return nil
	})
	mu.Lock()
	took, unexpectedErr := agentTook, unexpected
	mu.Unlock()
	if unexpectedErr != nil {
		t.Fatalf("the returning agent failed for another reason than the deletion: %v", unexpectedErr)
	}
	if took == nil {
		t.Fatal("the hub never wrote to the old dispatch")
	}
	if *took {
		t.Fatalf("a returning agent took the old dispatch after the hub's first step on it, and the hub created a new one on retire-b: two copies may run; old dispatch %+v",
			dispatchOf(t, js, "retire-a"))
	}
	t.Cleanup(func() {
		if d := dispatchOf(t, js, "retire-a"); d != nil {
			d.Finalizers = nil
			_ = hub.Client.Update(context.Background(), d)
		}
	})
}

// TestDispatchCreateFailureShown: a dispatch create the hub's API server
// keeps refusing shows on the JobSet as Dispatched=False DispatchFailed
// with the error and a warning event, and is retried with the same epoch;
// once the refusal goes, that epoch is dispatched.
func TestDispatchCreateFailureShown(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "createfail-a", "8", nil)
	ctx := context.Background()
	memberNS := fleet.MemberNamespace("createfail-a")
	const denial = "dispatches to createfail-a are blocked by policy"
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-createfail-dispatches"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: memberNS}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{fleet.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"jobsetdispatches"}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: denial}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-createfail-dispatches"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: policy.Name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	create(t, policy)
	create(t, binding)
	t.Cleanup(func() {
		_ = hub.Client.Delete(ctx, binding)
		_ = hub.Client.Delete(ctx, policy)
	})
	testenv.Eventually(t, timeout, "the policy in force", func() error {
		probe := dispatch.NewDispatch(fleetJobSet("x", "probe", 1, "1").Obj(), jobset.FleetStatus{Cluster: "createfail-a", Epoch: 1}, nil)
		probe.Spec.Origin.UID = "probe"
		if err := hub.Client.Create(ctx, probe, client.DryRunAll); err == nil || !strings.Contains(err.Error(), denial) {
			return fmt.Errorf("dry-run create: %v", err)
		}
		return nil
	})

	ns := namespace(t, "team-createfail")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "createfail-a").Obj()
	create(t, js)
	testenv.Eventually(t, timeout, "Dispatched=False DispatchFailed with the error", func() error {
		c := condition(get(t, js), fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonDispatchFailed || !strings.Contains(c.Message, denial) {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		return hasEvent(t, js, fleet.ReasonDispatchFailed)
	})
	testenv.Consistently(t, 2*time.Second, "the same epoch retried, the failure shown", func() error {
		cur := get(t, js)
		if placed(cur).Epoch != 1 {
			return fmt.Errorf("epoch climbs while the create fails: status.fleet %+v", placed(cur))
		}
		if c := condition(cur, fleet.ConditionDispatched); c == nil || c.Reason != fleet.ReasonDispatchFailed {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		return nil
	})

	if err := hub.Client.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	d := waitDispatched(t, js, "createfail-a")
	if d.Spec.Epoch != 1 {
		t.Errorf("dispatched as epoch %d, want the recorded 1", d.Spec.Epoch)
	}
	testenv.Eventually(t, timeout, "Dispatched=True", func() error {
		cur := get(t, js)
		if c := condition(cur, fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue || placed(cur).Epoch != 1 {
			return fmt.Errorf("Dispatched = %+v, status.fleet %+v", c, placed(cur))
		}
		return nil
	})
}

// TestTTLCountsFromHubObservation: a member whose clock is a day behind
// reports its JobSet finished "a day ago"; the hub still keeps it for
// ttlSecondsAfterFinished from when it saw it finish.
func TestTTLCountsFromHubObservation(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "ttl-a", "8", nil)
	ns := namespace(t, "team-ttl")
	const ttl = 5
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "ttl-a").TTLSecondsAfterFinished(ttl).Obj()
	create(t, js)
	d := waitDispatched(t, js, "ttl-a")
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
		s.JobSetStatus.Conditions = []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue,
			Reason: "AllJobsCompleted", LastTransitionTime: metav1.NewTime(time.Now().Add(-24 * time.Hour))}}
	})
	var seenAt time.Time
	testenv.Eventually(t, timeout, "completion mirrored, its time on the hub's clock", func() error {
		cur := get(t, js)
		if cur.Status.TerminalState != string(jobset.JobSetCompleted) || cur.Status.Fleet == nil || cur.Status.Fleet.FinishedObservedTime == nil {
			return fmt.Errorf("status %+v", cur.Status)
		}
		seenAt = cur.Status.Fleet.FinishedObservedTime.Time
		return nil
	})
	if age := time.Since(seenAt); age > 10*time.Second || age < -10*time.Second {
		t.Errorf("finishedObservedTime %s is not the hub's now", seenAt)
	}
	testenv.Consistently(t, 2*time.Second, "kept for its TTL", func() error {
		if cur := get(t, js); cur.DeletionTimestamp != nil {
			return fmt.Errorf("deleted %s after it finished by the hub's clock, ttlSecondsAfterFinished is %d",
				cur.DeletionTimestamp.Sub(seenAt), ttl)
		}
		return nil
	})
	testenv.Eventually(t, timeout, "deleted after its TTL", func() error {
		cur := &jobset.JobSet{}
		err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), cur)
		if apierrors.IsNotFound(err) || (err == nil && cur.DeletionTimestamp != nil) {
			return nil
		}
		return fmt.Errorf("not deleted: %v", err)
	})
}

// TestNoFitManyUnhealthyMembers: with a hundred unhealthy members, each
// with a long reason, a pending JobSet still shows NoFit (bounded) and its
// event is recorded.
func TestNoFitManyUnhealthyMembers(t *testing.T) {
	startHub(t, placement.Spread)
	ctx := context.Background()
	reason := "the member's control plane does not answer: " + strings.Repeat("connection refused; ", 20)
	for i := range 100 {
		p := &clusterinventory.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: inventoryNS, Name: fmt.Sprintf("many-%03d", i), Labels: map[string]string{"test": "many"}},
			Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
		}
		create(t, p)
		t.Cleanup(func() { _ = hub.Client.Delete(ctx, p) })
		p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionFalse,
			Reason: "Unreachable", Message: reason, LastTransitionTime: metav1.Now()}}
		if err := hub.Client.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	ns := namespace(t, "team-many")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=many").Obj()
	create(t, js)
	testenv.Eventually(t, timeout, "NoFit shown, bounded", func() error {
		c := condition(get(t, js), fleet.ConditionDispatched)
		if c == nil || c.Reason != fleet.ReasonNoFit || !strings.Contains(c.Message, "more members") || !strings.Contains(c.Message, "many-000") {
			return fmt.Errorf("Dispatched = %.500v", c)
		}
		return nil
	})
	testenv.Eventually(t, timeout, "NoFit event", func() error { return hasEvent(t, js, fleet.ReasonNoFit) })
}

// TestDispatchCarriesPodSecurityLabels: a dispatch carries the Pod Security
// labels of its JobSet's hub namespace (and no other), for the namespace
// the agent creates on the member.
func TestDispatchCarriesPodSecurityLabels(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "psa-a", "8", nil)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-psa", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest", "owner": "alice"}}}
	create(t, ns)
	js := fleetJobSet(ns.Name, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "psa-a").Obj()
	create(t, js)
	d := waitDispatched(t, js, "psa-a")
	want := map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
	if diff := cmp.Diff(want, d.Spec.NamespaceLabels); diff != "" {
		t.Errorf("spec.namespaceLabels (-want +got):\n%s", diff)
	}
}

// TestDeniedNamespacesNotPlaced: the dispatcher's denied namespaces reach
// placement: a JobSet there is placed nowhere, and says why.
func TestDeniedNamespacesNotPlaced(t *testing.T) {
	startHub(t, placement.Spread, func(o *hubcomponent.Options) { o.DeniedNamespaces = []string{"team-denied-*"} })
	join(t, "denied-a", "8", nil)
	ns := namespace(t, "team-denied-x")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "denied-a").Obj()
	create(t, js)
	testenv.Eventually(t, timeout, "not placed, with the reason", func() error {
		c := condition(get(t, js), fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, ns) {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		return nil
	})
	testenv.Consistently(t, time.Second, "no dispatch", func() error {
		if n := len(allDispatchesOf(t, js)); n != 0 {
			return fmt.Errorf("%d dispatches", n)
		}
		return nil
	})
}

// TestMemberLeftKeepingWorkloads: a member unjoined with its workloads
// kept (its ClusterProfile gone, its dispatches deleted but held by its
// agent's finalizer) holds the JobSet, and the hub names the command that
// confirms the copies stopped; once an operator ran it, the JobSet moves.
func TestMemberLeftKeepingWorkloads(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "left"}
	a := join(t, "left-a", "8", sel)
	join(t, "left-b", "4", sel)
	ns := namespace(t, "team-left")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=left").
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 3}).Obj()
	create(t, js)
	d := waitDispatched(t, js, "left-a")

	// What `unjoin --keep-workloads` leaves: no ClusterProfile, the
	// dispatches deleted (with the member namespace) but held by the agent.
	ctx := context.Background()
	a.stop()
	if err := hub.Client.Delete(ctx, &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: inventoryNS, Name: "left-a"}}); err != nil {
		t.Fatal(err)
	}
	if err := hub.Client.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	const confirm = "`jobset-fleet-agent unjoin --cluster-name left-a --confirm-copies-stopped`"
	testenv.Eventually(t, timeout, "AwaitingFence naming the confirming command", func() error {
		c := condition(get(t, js), fleet.ConditionMemberStatusStale)
		if c == nil || c.Reason != fleet.ReasonAwaitingFence || !strings.Contains(c.Message, confirm) || strings.Contains(c.Message, "kubectl label") {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		return nil
	})
	testenv.Consistently(t, time.Second, "not moved without proof", func() error {
		if dispatchOf(t, js, "left-b") != nil {
			return fmt.Errorf("moved while the copy on left-a may run")
		}
		return nil
	})

	// The operator's confirmation, as `unjoin --confirm-copies-stopped`
	// writes it.
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue,
			Reason: fleet.ReasonStopConfirmed, Message: "an operator confirmed nothing of the fleet runs on left-a"})
	})
	testenv.Eventually(t, timeout, "removing the agent's finalizer", func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		controllerutil.RemoveFinalizer(cur, fleet.AgentFinalizer)
		return hub.Client.Update(ctx, cur)
	})
	waitDispatched(t, js, "left-b")
	testenv.Eventually(t, timeout, "the release says who confirmed it", func() error {
		list := &eventsv1.EventList{}
		if err := hub.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == fleet.ReasonReleased && strings.Contains(e.Note, "an operator confirmed that the copy on member left-a is stopped") {
				return nil
			}
		}
		return fmt.Errorf("no %s event saying an operator confirmed it", fleet.ReasonReleased)
	})
}
