package kueuehub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
)

const (
	inventoryNS = fleet.DefaultInventoryNamespace
	renewEvery  = 300 * time.Millisecond
	// timeout is how long a test waits for Kueue or the hub to act.
	timeout = 30 * time.Second
	// poolLabel is the node label the tests' ResourceFlavors inject.
	poolLabel = "example.com/pool"
)

var (
	hub   *testenv.Cluster
	kueue *testenv.Kueue
)

// TestMain runs one hub API server with the hub's admission webhooks and a
// Kueue manager for every test; each test runs its own hub controllers,
// members, queues and namespace.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	c, stop := testenv.StartMain("kueue-hub", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	defer stop()
	hub = c
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inventoryNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := hubcomponent.DefaultOptions()
	opts.InventoryNamespace = inventoryNS
	if err := hub.ServeWebhooks(ctx, opts.Admission()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k, err := testenv.StartKueue(ctx, hub, testenv.KueueOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer k.Stop()
	kueue = k
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "last lines of Kueue's log (%s):\n%s\n", k.LogPath, k.Log(40))
	}
	return code
}

// startHub runs the hub's controllers (as cmd/hub wires them) until the
// test ends.
func startHub(t *testing.T) {
	t.Helper()
	opts := hubcomponent.DefaultOptions()
	opts.InventoryNamespace, opts.HeartbeatTimeout, opts.MemberLostTimeout = inventoryNS, 2*time.Second, 4*time.Second
	mgr := hub.NewManager(t, opts.CacheOptions())
	if err := hubcomponent.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, mgr)
}

// join adds a simulated member: a ClusterProfile with cpu allocatable and
// free, one group of nodes labelled poolLabel=pool with taints, and a
// heartbeat renewed until the test ends.
func join(t *testing.T, name, cpu, pool string, labels map[string]string, taints ...corev1.Taint) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.MemberNamespace(name)}}
	create(t, ns)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fleet.HeartbeatLeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	create(t, lease)
	p := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: inventoryNS, Name: name, Labels: labels},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
	}
	create(t, p)
	q := resource.MustParse(cpu)
	nodes, err := json.Marshal(fleet.NodeSummary{LabelKeys: []string{poolLabel}, Groups: []fleet.NodeGroup{{
		Labels: map[string]string{poolLabel: pool}, Taints: taints, Nodes: 1,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: q},
		Free:        []fleet.FreeNodes{{Count: 1, Free: corev1.ResourceList{corev1.ResourceCPU: q}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue,
		Reason: "Healthy", LastTransitionTime: now}}
	p.Status.Properties = []clusterinventory.Property{
		{Name: fleet.PropertyAllocatablePrefix + "cpu", Value: cpu, LastObservedTime: now},
		{Name: fleet.PropertyFreePrefix + "cpu", Value: cpu, LastObservedTime: now},
		{Name: fleet.PropertyNodeSummary, Value: string(nodes), LastObservedTime: now},
	}
	if err := hub.Client.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(renewEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-tick.C:
			}
			l := &coordinationv1.Lease{}
			if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(lease), l); err != nil {
				continue
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_ = hub.Client.Update(ctx, l)
		}
	})
	t.Cleanup(func() { close(stopped); wg.Wait() })
}

// kueueObject is a Kueue object (Kueue's Go types stay out of this module).
func kueueObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// clusterQueue creates a ResourceFlavor injecting poolLabel=pool, a
// ClusterQueue with cpu quota of it, and a LocalQueue of that name in ns.
func clusterQueue(t *testing.T, ns, name, pool, cpu string, preemption map[string]any) {
	t.Helper()
	spec := map[string]any{}
	if preemption != nil {
		spec["preemption"] = preemption
	}
	clusterQueueOf(t, ns, name, spec, flavor{Name: name, NodeLabels: map[string]any{poolLabel: pool}, CPU: cpu})
}

// flavor is a ResourceFlavor and its cpu quota in a ClusterQueue.
type flavor struct {
	Name        string
	NodeLabels  map[string]any
	Tolerations []any
	CPU         string
	// BorrowingLimit caps what the queue borrows of this flavor from its
	// cohort ("": no limit).
	BorrowingLimit string
}

// clusterQueueOf creates the flavors, a ClusterQueue of name with the cpu
// quota of each (spec adds to the ClusterQueue's spec: preemption,
// cohort, fair sharing) and a LocalQueue of that name in ns, and waits for
// the LocalQueue to be active. A flavor that exists is reused.
func clusterQueueOf(t *testing.T, ns, name string, spec map[string]any, flavors ...flavor) {
	t.Helper()
	var quotas []any
	for _, f := range flavors {
		fspec := map[string]any{}
		if f.NodeLabels != nil {
			fspec["nodeLabels"] = f.NodeLabels
		}
		if f.Tolerations != nil {
			fspec["tolerations"] = f.Tolerations
		}
		if err := hub.Client.Create(context.Background(), kueueObject("ResourceFlavor", "", f.Name, fspec)); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		cpu := map[string]any{"name": "cpu", "nominalQuota": f.CPU}
		if f.BorrowingLimit != "" {
			cpu["borrowingLimit"] = f.BorrowingLimit
		}
		quotas = append(quotas, map[string]any{"name": f.Name, "resources": []any{cpu}})
	}
	spec["namespaceSelector"] = map[string]any{}
	spec["resourceGroups"] = []any{map[string]any{"coveredResources": []any{"cpu"}, "flavors": quotas}}
	create(t, kueueObject("ClusterQueue", "", name, spec))
	create(t, kueueObject("LocalQueue", ns, name, map[string]any{"clusterQueue": name}))
	// Kueue takes a queue into use once its cache has it: wait for Active.
	testenv.Eventually(t, timeout, "LocalQueue "+name+" active", func() error {
		lq := kueueObject("LocalQueue", ns, name, nil)
		if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(lq), lq); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(lq.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Active" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("LocalQueue %s not active: %v", name, conds)
	})
}

// priorityClasses creates Kueue WorkloadPriorityClasses by name.
func priorityClasses(t *testing.T, values map[string]int64) {
	t.Helper()
	for name, value := range values {
		wpc := &unstructured.Unstructured{Object: map[string]any{"value": value}}
		wpc.SetAPIVersion("kueue.x-k8s.io/v1beta2")
		wpc.SetKind("WorkloadPriorityClass")
		wpc.SetName(name)
		create(t, wpc)
	}
}

// queuedJobSet is a JobSet for Kueue's LocalQueue queue, of one pod asking
// for cpu, kept on the members labelled kueue-test=test. It names no
// manager: the hub's admission claims it for the fleet.
func queuedJobSet(ns, name, queue, cpu, test string) *jobset.JobSet {
	return jstesting.MakeJobSet(ns, name).Label(fleet.KueueQueueNameLabel, queue).
		Annotation(fleet.ClusterSelectorAnnotation, "kueue-test="+test).
		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(1).Parallelism(1).Completions(1).
			RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj()).Obj()
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := hub.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
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

// dispatches lists a JobSet's live dispatches on any member.
func dispatches(t *testing.T, js *jobset.JobSet) []fleet.JobSetDispatch {
	t.Helper()
	list := &fleet.JobSetDispatchList{}
	if err := hub.Client.List(context.Background(), list, client.MatchingLabels{fleet.OriginUIDLabel: string(get(t, js).UID)}); err != nil {
		t.Fatal(err)
	}
	var live []fleet.JobSetDispatch
	for _, d := range list.Items {
		if d.DeletionTimestamp == nil {
			live = append(live, d)
		}
	}
	return live
}

// dispatchOf is the JobSet's dispatch on member, or nil.
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

// report writes the member's view into the dispatch, as its agent does
// (taking the dispatch with the agent's finalizer first).
func report(t *testing.T, d *fleet.JobSetDispatch, mutate func(*jobset.JobSetStatus)) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, timeout, "reporting "+d.Namespace+"/"+d.Name, func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		if !controllerutil.ContainsFinalizer(cur, fleet.AgentFinalizer) {
			controllerutil.AddFinalizer(cur, fleet.AgentFinalizer)
			if err := hub.Client.Update(ctx, cur); err != nil {
				return err
			}
		}
		cur.Status.ObservedEpoch = cur.Spec.Epoch
		cur.Status.ObservedGeneration = cur.Generation
		cur.Status.LastSyncTime = ptr.To(metav1.Now())
		meta.SetStatusCondition(&cur.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue,
			Reason: "Accepted", Message: "running"})
		mutate(&cur.Status.JobSetStatus)
		return hub.Client.Status().Update(ctx, cur)
	})
}

// running reports n active pods of the JobSet's one replicated Job.
func running(active int32) func(*jobset.JobSetStatus) {
	return func(s *jobset.JobSetStatus) {
		s.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "workers", Active: active, Ready: active}}
	}
}

// pending reports the one Pod created but not running: accepted, not
// started.
func pending(s *jobset.JobSetStatus) {
	s.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "workers", Active: 1}}
}

// reportDeleted reports the member copy gone and lets the dispatch go, as
// the agent does for a deleted dispatch.
func reportDeleted(t *testing.T, d *fleet.JobSetDispatch) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, timeout, "confirming "+d.Namespace+"/"+d.Name+" deleted", func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		if cur.DeletionTimestamp == nil {
			return fmt.Errorf("not being deleted")
		}
		if !meta.IsStatusConditionTrue(cur.Status.Conditions, fleet.DispatchDeleted) {
			meta.SetStatusCondition(&cur.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue,
				Reason: fleet.ReasonCopyDeleted, Message: "the member JobSet no longer exists"})
			if err := hub.Client.Status().Update(ctx, cur); err != nil {
				return err
			}
		}
		controllerutil.RemoveFinalizer(cur, fleet.AgentFinalizer)
		return hub.Client.Update(ctx, cur)
	})
}

// completed reports the JobSet completed on its member.
func completed(s *jobset.JobSetStatus) {
	s.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "workers", Succeeded: 1}}
	s.TerminalState = string(jobset.JobSetCompleted)
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue,
		Reason: "AllJobsCompleted", Message: "jobset completed successfully"})
}
