package dispatch_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp/cmpopts"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

const (
	inventoryNS      = fleet.DefaultInventoryNamespace
	heartbeatTimeout = 2 * time.Second
	lostTimeout      = 4 * time.Second
	renewEvery       = 300 * time.Millisecond
	// timeout is how long a test waits for the hub to act.
	timeout = 30 * time.Second
)

var hub *testenv.Cluster

func TestMain(m *testing.M) {
	ctrl.SetLogger(testLogger())
	c, stop := testenv.StartMain("hub")
	hub = c
	ctx := context.Background()
	if err := hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inventoryNS}}); err != nil {
		panic(err)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// testLogger is silent unless HUB_TEST_VERBOSE is set.
func testLogger() logr.Logger {
	if os.Getenv("HUB_TEST_VERBOSE") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
}

// startHub runs the hub's controllers (as cmd/hub wires them) until the
// returned stop function is called or the test ends.
func startHub(t *testing.T, policy placement.Policy, configure ...func(*hubcomponent.Options)) (stop func()) {
	t.Helper()
	opts := hubcomponent.DefaultOptions()
	opts.InventoryNamespace, opts.HeartbeatTimeout, opts.MemberLostTimeout, opts.PlacementPolicy = inventoryNS, heartbeatTimeout, lostTimeout, string(policy)
	for _, f := range configure {
		f(&opts)
	}
	mgr := hub.NewManager(t, opts.CacheOptions())
	if err := hubcomponent.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	return testenv.RunManager(t, mgr)
}

// agent plays a member's agent by writing to the hub directly: it owns a
// ClusterProfile and renews the heartbeat Lease until stopped.
type agent struct {
	t       *testing.T
	name    string
	stopped chan struct{}
	once    sync.Once
}

// join adds a member with cpu allocatable (and free) and labels.
func join(t *testing.T, name, cpu string, labels map[string]string) *agent {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.MemberNamespace(name)}}
	if err := hub.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fleet.HeartbeatLeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if err := hub.Client.Create(ctx, lease); err != nil {
		t.Fatal(err)
	}
	p := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: inventoryNS, Name: name, Labels: labels},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
	}
	if err := hub.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, name: name, stopped: make(chan struct{})}
	a.report(cpu, cpu)
	go a.renew()
	t.Cleanup(a.stop)
	return a
}

func (a *agent) report(allocatable, free string) {
	a.t.Helper()
	ctx := context.Background()
	p := &clusterinventory.ClusterProfile{}
	if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: inventoryNS, Name: a.name}, p); err != nil {
		a.t.Fatal(err)
	}
	p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue,
		Reason: "Healthy", LastTransitionTime: metav1.Now()}}
	now := metav1.Now()
	p.Status.Properties = []clusterinventory.Property{
		{Name: fleet.PropertyAllocatablePrefix + "cpu", Value: allocatable, LastObservedTime: now},
		{Name: fleet.PropertyFreePrefix + "cpu", Value: free, LastObservedTime: now},
	}
	if err := hub.Client.Status().Update(ctx, p); err != nil {
		a.t.Fatal(err)
	}
}

func (a *agent) renew() {
	tick := time.NewTicker(renewEvery)
	defer tick.Stop()
	key := types.NamespacedName{Namespace: fleet.MemberNamespace(a.name), Name: fleet.HeartbeatLeaseName}
	for {
		select {
		case <-a.stopped:
			return
		case <-tick.C:
		}
		lease := &coordinationv1.Lease{}
		if err := hub.Client.Get(context.Background(), key, lease); err != nil {
			continue
		}
		lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_ = hub.Client.Update(context.Background(), lease)
	}
}

// stop stops renewing the heartbeat, as a partitioned or dead agent would.
func (a *agent) stop() { a.once.Do(func() { close(a.stopped) }) }

// dispatchOf returns the dispatch of a JobSet in a member namespace, or nil.
func dispatchOf(t *testing.T, js *jobset.JobSet, member string) *fleet.JobSetDispatch {
	t.Helper()
	d := &fleet.JobSetDispatch{}
	err := hub.Client.Get(context.Background(), types.NamespacedName{Namespace: fleet.MemberNamespace(member), Name: fleet.DispatchName(js.Namespace, js.Name)}, d)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allDispatchesOf lists the JobSet's dispatches in every namespace.
func allDispatchesOf(t *testing.T, js *jobset.JobSet) []fleet.JobSetDispatch {
	t.Helper()
	list := &fleet.JobSetDispatchList{}
	if err := hub.Client.List(context.Background(), list, client.MatchingLabels{fleet.OriginUIDLabel: string(js.UID)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// reportStatus writes the member's view into the dispatch, as the agent does.
func reportStatus(t *testing.T, d *fleet.JobSetDispatch, mutate func(*fleet.JobSetDispatchStatus)) {
	t.Helper()
	testenv.Eventually(t, timeout, "writing dispatch status", func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		cur.Status.ObservedEpoch = cur.Spec.Epoch
		cur.Status.ObservedGeneration = cur.Generation
		cur.Status.LastSyncTime = ptr.To(metav1.Now())
		mutate(&cur.Status)
		return hub.Client.Status().Update(context.Background(), cur)
	})
}

// reportDeleted reports the member copy gone and lets the dispatch go, as
// spoke/agent does.
func reportDeleted(t *testing.T, d *fleet.JobSetDispatch) {
	t.Helper()
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue,
			Reason: "MemberJobSetDeleted", Message: "the member JobSet no longer exists"})
	})
	testenv.Eventually(t, timeout, "removing the agent's finalizer", func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(d), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		controllerutil.RemoveFinalizer(cur, fleet.AgentFinalizer)
		return hub.Client.Update(context.Background(), cur)
	})
}

// accept takes the dispatch as the agent does before it creates a copy:
// its finalizer first, then an Accepted report.
func accept(t *testing.T, d *fleet.JobSetDispatch) {
	t.Helper()
	testenv.Eventually(t, timeout, "adding the agent's finalizer", func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		if controllerutil.ContainsFinalizer(cur, fleet.AgentFinalizer) {
			return nil
		}
		controllerutil.AddFinalizer(cur, fleet.AgentFinalizer)
		return hub.Client.Update(context.Background(), cur)
	})
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue,
			Reason: "Accepted", Message: "running"})
	})
}

// markOutOfService labels a member's ClusterProfile out of service, as an
// operator confirms nothing of the fleet runs there.
func markOutOfService(t *testing.T, member string) {
	t.Helper()
	testenv.Eventually(t, timeout, "labelling "+member+" out of service", func() error {
		p := &clusterinventory.ClusterProfile{}
		if err := hub.Client.Get(context.Background(), types.NamespacedName{Namespace: inventoryNS, Name: member}, p); err != nil {
			return err
		}
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[fleet.OutOfServiceLabel] = "true"
		return hub.Client.Update(context.Background(), p)
	})
}

// placed is the hub's recorded placement of a JobSet.
func placed(js *jobset.JobSet) jobset.FleetStatus {
	if js.Status.Fleet == nil {
		return jobset.FleetStatus{}
	}
	return *js.Status.Fleet
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := hub.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// fleetJobSet is a fleet JobSet of one Job of pods pods asking cpu each.
func fleetJobSet(ns, name string, pods int32, cpu string) *jstesting.JobSetWrapper {
	return jstesting.MakeJobSet(ns, name).ManagedBy(fleet.ManagedByFleet).ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Replicas(1).Parallelism(pods).Completions(pods).
			RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj())
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := hub.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, js *jobset.JobSet) *jobset.JobSet {
	t.Helper()
	out := &jobset.JobSet{}
	if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitDispatched waits for the JobSet to be dispatched to member, accepts
// the dispatch as the member's agent would, and returns it.
func waitDispatched(t *testing.T, js *jobset.JobSet, member string) *fleet.JobSetDispatch {
	t.Helper()
	var d *fleet.JobSetDispatch
	testenv.Eventually(t, timeout, "dispatch to "+member, func() error {
		if d = dispatchOf(t, js, member); d == nil || d.DeletionTimestamp != nil {
			cur := get(t, js)
			return fmt.Errorf("no live dispatch in %s yet; conditions %+v", fleet.MemberNamespace(member), cur.Status.Conditions)
		}
		return nil
	})
	accept(t, d)
	return dispatchOf(t, js, member)
}

func condition(js *jobset.JobSet, typ string) *metav1.Condition {
	return meta.FindStatusCondition(js.Status.Conditions, typ)
}

func hasEvent(t *testing.T, js *jobset.JobSet, reason string) error {
	list := &eventsv1.EventList{}
	if err := hub.Client.List(context.Background(), list, client.InNamespace(js.Namespace)); err != nil {
		return err
	}
	var seen []string
	for _, e := range list.Items {
		if e.Regarding.Name == js.Name && e.Regarding.Kind == "JobSet" {
			if e.Reason == reason {
				return nil
			}
			seen = append(seen, e.Reason)
		}
	}
	return fmt.Errorf("no %s event for %s; saw %s", reason, js.Name, strings.Join(seen, ","))
}

// ignoreStartBookkeeping leaves out of a comparison of status.fleet what
// the start deadline keeps there (tests of it look at it themselves).
var ignoreStartBookkeeping = cmpopts.IgnoreFields(jobset.FleetStatus{}, "StartedEpoch", "StartDeadlineSince", "Withdrawals")
