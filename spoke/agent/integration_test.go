package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

const (
	clusterName  = "m1"
	memberNS     = "fleet-member-m1"
	fenceTimeout = 3 * time.Second
	// hubFinalizer stands in for the hub's own finalizer, so the test sees
	// the agent's last status before the dispatch disappears.
	hubFinalizer = "test.fleet.jobset.x-k8s.io/hub"
)

// TestAgent runs a hub and a member (with kube-controller-manager, for real
// Jobs' garbage collection) in one process, joins the member, and runs the
// agent with the credentials join produced, reaching the hub through a TCP
// proxy the test can cut. The test plays the hub dispatcher.
func TestAgent(t *testing.T) {
	hub := testenv.Start(t, "agent-hub")
	member := testenv.Start(t, "agent-member", testenv.WithControllerManager())
	ctx := context.Background()
	cleanupAtEnd := t.Cleanup

	hubURL, err := url.Parse(hub.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := testenv.StartProxy(hubURL.Host)
	must(t, err)
	t.Cleanup(proxy.Cut)

	start := time.Now()
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName:  clusterName,
		Labels:       map[string]string{"region": "eu"},
		HubServerURL: "https://" + proxy.Addr,
		HubCAData:    hub.Config.CAData,
		CRDDir:       testenv.CRDPaths()[0],
	})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	t.Logf("join took %s", time.Since(start))
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	agentHub, err := client.New(agentCfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	// Capacity for the ClusterProfile properties: one node, no kubelet.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	must(t, member.Client.Create(ctx, node))
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi")}
	node.Status.Capacity = node.Status.Allocatable
	must(t, member.Client.Status().Update(ctx, node))

	a := startAgent(t, t.Cleanup, member, agentCfg)

	t.Run("heartbeat renews the Lease and publishes the ClusterProfile", func(t *testing.T) {
		var first *metav1.MicroTime
		testenv.Eventually(t, 10*time.Second, "a heartbeat renewal", func() error {
			lease := &coordinationv1.Lease{}
			if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: memberNS, Name: fleet.HeartbeatLeaseName}, lease); err != nil {
				return err
			}
			if first == nil {
				first = lease.Spec.RenewTime
				return errors.New("waiting for a renewal")
			}
			if !lease.Spec.RenewTime.After(first.Time) {
				return fmt.Errorf("renewTime still %v", lease.Spec.RenewTime)
			}
			return nil
		})
		if time.Since(a.LastRenewal()) > 2*time.Second {
			t.Errorf("agent's local last renewal is %v old", time.Since(a.LastRenewal()))
		}
		testenv.Eventually(t, 10*time.Second, "the ClusterProfile published", func() error {
			cp := &clusterinventory.ClusterProfile{}
			if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: clusterName}, cp); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(cp.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy) || cp.Status.Version.Kubernetes == "" {
				return fmt.Errorf("status %+v", cp.Status)
			}
			props := map[string]string{}
			for _, p := range cp.Status.Properties {
				props[p.Name] = p.Value
			}
			if props["allocatable.cpu"] != "8" || props["allocatable.memory"] != "32Gi" || props["free.cpu"] != "8" || props["allocatable.nvidia.com/gpu"] != "0" {
				return fmt.Errorf("properties %v", props)
			}
			if id := cp.Annotations[fleet.ClusterIDAnnotation]; id == "" || props[fleet.ClusterIDProperty] != id {
				return fmt.Errorf("cluster ID property %q, join recorded %q", props[fleet.ClusterIDProperty], id)
			}
			return nil
		})
	})

	train := newDispatch("team-a", "train", 1)
	t.Run("dispatch becomes a member JobSet with Jobs, status flows back", func(t *testing.T) {
		must(t, hub.Client.Create(ctx, train))
		js := waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
			if js.Labels[fleet.OriginUIDLabel] != string(train.Spec.Origin.UID) || js.Labels[fleet.EpochLabel] != "1" ||
				js.Annotations[fleet.DispatchAnnotation] != memberNS+"/team-a.train" || js.Labels["app"] != "train" {
				return fmt.Errorf("metadata %v %v", js.Labels, js.Annotations)
			}
			return nil
		})
		if js.ManagedByOther() {
			t.Errorf("member JobSet managedBy %q: the member's controller would ignore it", *js.Spec.ManagedBy)
		}
		testenv.Eventually(t, 20*time.Second, "2 Jobs", func() error {
			jobs := memberJobs(t, member.Client, "team-a", "train")
			if len(jobs) != 2 {
				return fmt.Errorf("%d Jobs", len(jobs))
			}
			return nil
		})
		testenv.Eventually(t, 20*time.Second, "the dispatch accepted and reported", func() error {
			d := getDispatch(t, hub.Client, train.Name)
			c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchAccepted)
			if c == nil || c.Status != metav1.ConditionTrue || d.Status.ObservedEpoch != 1 || d.Status.LastSyncTime == nil {
				return fmt.Errorf("status %+v", d.Status)
			}
			if !slices.Contains(d.Finalizers, fleet.AgentFinalizer) {
				return fmt.Errorf("no agent finalizer: %v", d.Finalizers)
			}
			rjs := d.Status.JobSetStatus.ReplicatedJobsStatus
			if len(rjs) != 1 || rjs[0].Name != "w" {
				return fmt.Errorf("jobSetStatus not mirrored: %+v", d.Status.JobSetStatus)
			}
			return nil
		})
	})

	t.Run("suspend and suspended template edits propagate", func(t *testing.T) {
		updateDispatch(t, hub.Client, train.Name, func(d *fleet.JobSetDispatch) {
			d.Spec.JobSet.Spec.Suspend = ptr.To(true)
		})
		waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
			if !js.IsSuspended() {
				return errors.New("not suspended")
			}
			return nil
		})
		testenv.Eventually(t, 20*time.Second, "every Job suspended", func() error {
			for _, j := range memberJobs(t, member.Client, "team-a", "train") {
				if !ptr.Deref(j.Spec.Suspend, false) {
					return fmt.Errorf("Job %s not suspended", j.Name)
				}
			}
			return nil
		})
		updateDispatch(t, hub.Client, train.Name, func(d *fleet.JobSetDispatch) {
			d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "b"}
			d.Spec.JobSet.Spec.Suspend = ptr.To(false)
		})
		waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
			if js.IsSuspended() || js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector["pool"] != "b" {
				return fmt.Errorf("suspend=%v nodeSelector=%v", js.IsSuspended(), js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector)
			}
			return nil
		})
		testenv.Eventually(t, 20*time.Second, "the generation of the dispatch observed", func() error {
			d := getDispatch(t, hub.Client, train.Name)
			if d.Status.ObservedGeneration != d.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", d.Status.ObservedGeneration, d.Generation)
			}
			return nil
		})
	})

	t.Run("a foreign JobSet is not taken over: Conflict", func(t *testing.T) {
		foreign := memberJobSet("team-a", "taken").ManagedBy(fleet.ManagedByFleet).Obj()
		must(t, member.Client.Create(ctx, foreign))
		d := newDispatch("team-a", "taken", 1)
		must(t, hub.Client.Create(ctx, d))
		testenv.Eventually(t, 20*time.Second, "the dispatch refused with Conflict", func() error {
			got := getDispatch(t, hub.Client, d.Name)
			c := meta.FindStatusCondition(got.Status.Conditions, fleet.DispatchAccepted)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonConflict {
				return fmt.Errorf("conditions %+v", got.Status.Conditions)
			}
			return nil
		})
		js := &jobset.JobSet{}
		must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(foreign), js))
		if js.UID != foreign.UID || js.Labels[fleet.OriginUIDLabel] != "" || js.Annotations[fleet.DispatchAnnotation] != "" {
			t.Errorf("foreign JobSet was touched: %v %v", js.Labels, js.Annotations)
		}
		must(t, hub.Client.Delete(ctx, d))
		testenv.Eventually(t, 20*time.Second, "the dispatch deleted", func() error { return gone(hub.Client, d) })
		must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(foreign), js))
	})

	t.Run("deleting a dispatch removes the member copy and reports Deleted", func(t *testing.T) {
		d := newDispatch("team-b", "short", 1)
		d.Finalizers = []string{hubFinalizer}
		must(t, hub.Client.Create(ctx, d))
		waitMemberJobSet(t, member.Client, "team-b", "short", nil)
		testenv.Eventually(t, 20*time.Second, "2 Jobs", func() error {
			if n := len(memberJobs(t, member.Client, "team-b", "short")); n != 2 {
				return fmt.Errorf("%d Jobs", n)
			}
			return nil
		})
		must(t, hub.Client.Delete(ctx, d))
		testenv.Eventually(t, 30*time.Second, "the dispatch reported Deleted and released", func() error {
			got := getDispatch(t, hub.Client, d.Name)
			if !meta.IsStatusConditionTrue(got.Status.Conditions, fleet.DispatchDeleted) || slices.Contains(got.Finalizers, fleet.AgentFinalizer) {
				return fmt.Errorf("conditions %+v finalizers %v", got.Status.Conditions, got.Finalizers)
			}
			return nil
		})
		// Deleted means gone, Jobs included (foreground deletion).
		if err := gone(member.Client, memberJobSet("team-b", "short").Obj()); err != nil {
			t.Error(err)
		}
		if n := len(memberJobs(t, member.Client, "team-b", "short")); n != 0 {
			t.Errorf("%d Jobs left after Deleted", n)
		}
		releaseHubFinalizer(t, hub.Client, d.Name)
	})

	t.Run("least privilege: the join credentials see only the member's own namespace and profile", func(t *testing.T) {
		// Another member and a user namespace, made by the hub admin.
		must(t, hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-member-other"}}))
		other := newDispatch("team-x", "secret", 1)
		other.Namespace = "fleet-member-other"
		must(t, hub.Client.Create(ctx, other))
		must(t, hub.Client.Create(ctx, &clusterinventory.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: "other"},
			Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
		}))
		must(t, hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}))

		forbidden := map[string]error{
			"get another member's dispatch":     agentHub.Get(ctx, client.ObjectKeyFromObject(other), &fleet.JobSetDispatch{}),
			"list another member's dispatches":  agentHub.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace("fleet-member-other")),
			"list dispatches of all namespaces": agentHub.List(ctx, &fleet.JobSetDispatchList{}),
			"list JobSets in a user namespace":  agentHub.List(ctx, &jobset.JobSetList{}, client.InNamespace("team-a")),
			"list Secrets in a user namespace":  agentHub.List(ctx, &corev1.SecretList{}, client.InNamespace("team-a")),
			"list Secrets in its own namespace": agentHub.List(ctx, &corev1.SecretList{}, client.InNamespace(memberNS)),
			"get another ClusterProfile":        agentHub.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: "other"}, &clusterinventory.ClusterProfile{}),
			"list ClusterProfiles":              agentHub.List(ctx, &clusterinventory.ClusterProfileList{}, client.InNamespace(fleet.DefaultInventoryNamespace)),
			"create a dispatch":                 agentHub.Create(ctx, newDispatchIn(memberNS, "team-a", "forged", 1)),
		}
		otherCP := &clusterinventory.ClusterProfile{}
		must(t, hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: "other"}, otherCP))
		otherCP.Status.Version.Kubernetes = "v0.0.0-forged"
		forbidden["update another ClusterProfile's status"] = agentHub.Status().Update(ctx, otherCP)
		for what, err := range forbidden {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want 403 Forbidden, got %v", what, err)
			}
		}
		// What it needs does work.
		if err := agentHub.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: clusterName}, &clusterinventory.ClusterProfile{}); err != nil {
			t.Errorf("get own ClusterProfile: %v", err)
		}
		if err := agentHub.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(memberNS)); err != nil {
			t.Errorf("list own dispatches: %v", err)
		}
	})

	// A second dispatch that is re-placed with a new epoch while fenced.
	moved := newDispatch("team-c", "moved", 1)
	must(t, hub.Client.Create(ctx, moved))
	waitMemberJobSet(t, member.Client, "team-c", "moved", nil)

	t.Run("agent restart creates no duplicate Jobs", func(t *testing.T) {
		before := jobUIDs(t, member.Client, "team-a", "train")
		if len(before) != 2 {
			t.Fatalf("want 2 Jobs before restart, got %v", before)
		}
		a.stop()
		a = startAgent(t, cleanupAtEnd, member, agentCfg)
		restarted := time.Now()
		testenv.Eventually(t, 10*time.Second, "a renewal by the restarted agent", func() error {
			if a.LastRenewal().Before(restarted) {
				return errors.New("restarted agent has not renewed yet")
			}
			return nil
		})
		// Give the new controllers time to reconcile everything once.
		time.Sleep(3 * time.Second)
		after := jobUIDs(t, member.Client, "team-a", "train")
		if !slices.Equal(before, after) {
			t.Errorf("Jobs changed across an agent restart: before %v, after %v", before, after)
		}
		var list jobset.JobSetList
		must(t, member.Client.List(ctx, &list, client.InNamespace("team-a")))
		if len(list.Items) != 2 { // train and the foreign "taken"
			t.Errorf("want 2 JobSets in team-a, got %d", len(list.Items))
		}
	})

	t.Run("fencing: cut off past fenceTimeout suspends; on healing stale copies go", func(t *testing.T) {
		proxy.Cut()
		cut := time.Now()
		testenv.Eventually(t, 3*fenceTimeout, "both copies suspended", func() error {
			for _, name := range []string{"train", "moved"} {
				ns := map[string]string{"train": "team-a", "moved": "team-c"}[name]
				js := &jobset.JobSet{}
				if err := member.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); err != nil {
					return err
				}
				if !js.IsSuspended() {
					return fmt.Errorf("%s not suspended (last renewal %s ago, fenced %v)", name, time.Since(a.LastRenewal()), a.Fenced())
				}
			}
			return nil
		})
		if since := time.Since(cut); since < fenceTimeout-time.Second {
			t.Errorf("fenced after %s, before the fence timeout %s", since, fenceTimeout)
		}
		if !a.Fenced() {
			t.Error("agent does not report itself fenced")
		}
		// The local JobSet keeps running: fencing touches fleet copies only.
		js := &jobset.JobSet{}
		must(t, member.Client.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: "taken"}, js))
		if js.IsSuspended() {
			t.Error("fencing suspended a JobSet that is not the fleet's")
		}

		// Meanwhile the hub declares the member lost: it releases train's
		// dispatch (placed elsewhere) and re-places moved here with epoch 2.
		forceDelete(t, hub.Client, train.Name)
		forceDelete(t, hub.Client, moved.Name)
		moved2 := newDispatch("team-c", "moved", 2)
		must(t, hub.Client.Create(ctx, moved2))
		oldMoved := &jobset.JobSet{}
		must(t, member.Client.Get(ctx, types.NamespacedName{Namespace: "team-c", Name: "moved"}, oldMoved))

		must(t, proxy.Heal())
		testenv.Eventually(t, 30*time.Second, "the agent unfenced and the stale copy deleted", func() error {
			if a.Fenced() {
				return errors.New("still fenced")
			}
			return gone(member.Client, memberJobSet("team-a", "train").Obj())
		})
		waitMemberJobSet(t, member.Client, "team-c", "moved", func(js *jobset.JobSet) error {
			if js.UID == oldMoved.UID || js.Labels[fleet.EpochLabel] != "2" || js.IsSuspended() {
				return fmt.Errorf("uid %s (old %s) epoch %s suspended %v", js.UID, oldMoved.UID, js.Labels[fleet.EpochLabel], js.IsSuspended())
			}
			return nil
		})
		testenv.Eventually(t, 20*time.Second, "the moved dispatch accepted at epoch 2", func() error {
			d := getDispatch(t, hub.Client, moved2.Name)
			if d.Status.ObservedEpoch != 2 || !meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchAccepted) {
				return fmt.Errorf("status %+v", d.Status)
			}
			return nil
		})
	})
}

// --- agent -----------------------------------------------------------------

type runningAgent struct {
	*agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func (a *runningAgent) stop() {
	a.cancel()
	<-a.done
}

var agentRuns int

// startAgent runs a member manager with the JobSet reconciler and the agent
// until cleanup (the whole test's, not a subtest's) runs.
func startAgent(t *testing.T, cleanup func(func()), member *testenv.Cluster, hubCfg *rest.Config, mutate ...func(*agent.Options)) *runningAgent {
	t.Helper()
	agentRuns++
	mgr, err := ctrl.NewManager(member.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	must(t, err)
	opts := spoke.DefaultOptions()
	ao := &opts.Agent
	ao.ClusterName, ao.HubConfig = clusterName, hubCfg
	ao.HeartbeatInterval, ao.ProfileInterval, ao.FenceTimeout = 500*time.Millisecond, time.Second, fenceTimeout
	ao.Identity = fmt.Sprintf("test-%d", agentRuns)
	for _, m := range mutate {
		m(ao)
	}
	a, err := spoke.Setup(mgr, opts)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "agent manager stopped: %v\n", err)
		}
	}()
	cleanup(func() {
		select {
		case <-r.done:
		default:
			r.stop()
		}
	})
	return r
}

// --- objects ---------------------------------------------------------------

func newDispatch(ns, name string, epoch int64) *fleet.JobSetDispatch {
	return newDispatchIn(memberNS, ns, name, epoch)
}

func newDispatchIn(hubNS, ns, name string, epoch int64) *fleet.JobSetDispatch {
	js := memberJobSet(ns, name).ManagedBy(fleet.ManagedByFleet).Obj()
	return &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: fleet.DispatchName(ns, name)},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: ns, Name: name, UID: types.UID(rand.String(12))},
			Epoch:  epoch,
			JobSet: fleet.JobSetTemplate{
				Labels: map[string]string{"app": name},
				Spec:   *js.Spec.DeepCopy(),
			},
		},
	}
}

// memberJobSet is a JobSet of one ReplicatedJob with two Jobs of one pod.
func memberJobSet(ns, name string) *jstesting.JobSetWrapper {
	return jstesting.MakeJobSet(ns, name).ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(2).
		Container("c", "busybox").Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}).Obj())
}

// --- helpers ---------------------------------------------------------------

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func gone(c client.Client, obj client.Object) error {
	err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%T %s still exists", obj, client.ObjectKeyFromObject(obj))
}

func getDispatch(t *testing.T, c client.Client, name string) *fleet.JobSetDispatch {
	t.Helper()
	d := &fleet.JobSetDispatch{}
	must(t, c.Get(context.Background(), types.NamespacedName{Namespace: memberNS, Name: name}, d))
	return d
}

func updateDispatch(t *testing.T, c client.Client, name string, mutate func(*fleet.JobSetDispatch)) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "update of dispatch "+name, func() error {
		d := getDispatch(t, c, name)
		mutate(d)
		return c.Update(context.Background(), d)
	})
}

func releaseHubFinalizer(t *testing.T, c client.Client, name string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "hub finalizer removed from dispatch "+name, func() error {
		d := &fleet.JobSetDispatch{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: memberNS, Name: name}, d); err != nil {
			return client.IgnoreNotFound(err)
		}
		controllerutil.RemoveFinalizer(d, hubFinalizer)
		return c.Update(context.Background(), d)
	})
}

// forceDelete is what the hub does to the dispatch of a lost member: delete
// it and drop the agent's finalizer, which the agent cannot remove.
func forceDelete(t *testing.T, c client.Client, name string) {
	t.Helper()
	d := getDispatch(t, c, name)
	must(t, c.Delete(context.Background(), d))
	testenv.Eventually(t, 10*time.Second, "dispatch "+name+" deleted", func() error {
		d := &fleet.JobSetDispatch{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: memberNS, Name: name}, d); err != nil {
			return client.IgnoreNotFound(err)
		}
		d.Finalizers = nil
		if err := c.Update(context.Background(), d); err != nil {
			return err
		}
		return gone(c, d)
	})
}

func waitMemberJobSet(t *testing.T, c client.Client, ns, name string, check func(*jobset.JobSet) error) *jobset.JobSet {
	t.Helper()
	js := &jobset.JobSet{}
	testenv.Eventually(t, 20*time.Second, "member JobSet "+ns+"/"+name, func() error {
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, js); err != nil {
			return err
		}
		if check != nil {
			return check(js)
		}
		return nil
	})
	return js
}

func memberJobs(t *testing.T, c client.Client, ns, jobSet string) []batchv1.Job {
	t.Helper()
	var list batchv1.JobList
	must(t, c.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: jobSet}))
	return list.Items
}

func jobUIDs(t *testing.T, c client.Client, ns, jobSet string) []string {
	var uids []string
	for _, j := range memberJobs(t, c, ns, jobSet) {
		uids = append(uids, j.Name+"/"+string(j.UID))
	}
	slices.Sort(uids)
	return uids
}

func TestMain(m *testing.M) {
	// Controller logs go to stderr, shown for failing runs with -v.
	ctrl.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1}))
	os.Exit(m.Run())
}
