package admission_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

const gpu corev1.ResourceName = "nvidia.com/gpu"

var gpuTaint = corev1.Taint{Key: string(gpu), Value: "present", Effect: corev1.TaintEffectNoSchedule}

// fitMember is a member as its agent reports it: n identical nodes, all
// free, with taints.
type fitMember struct {
	name   string
	nodes  int32
	node   corev1.ResourceList
	taints []corev1.Taint
}

// joinFitMember plays the member's agent on the hub: its namespace, a
// heartbeat Lease renewed until the test ends, and a healthy
// ClusterProfile whose properties carry the member-wide sums and the node
// summary, as agents publish them.
func joinFitMember(t *testing.T, c client.Client, m fitMember) {
	t.Helper()
	ctx := context.Background()
	ns := fleet.MemberNamespace(m.name)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fleet.HeartbeatLeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(m.name), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if err := c.Create(ctx, lease); err != nil {
		t.Fatal(err)
	}
	p := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: m.name},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	summary, err := json.Marshal(fleet.NodeSummary{Groups: []fleet.NodeGroup{{
		Nodes: m.nodes, Taints: m.taints, Allocatable: m.node, Free: []fleet.FreeNodes{{Count: m.nodes, Free: m.node}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue,
		Reason: "Healthy", LastTransitionTime: now}}
	p.Status.Properties = []clusterinventory.Property{{Name: fleet.PropertyNodeSummary, Value: string(summary), LastObservedTime: now}}
	for r, q := range m.node {
		q.Mul(int64(m.nodes))
		p.Status.Properties = append(p.Status.Properties,
			clusterinventory.Property{Name: fleet.PropertyAllocatablePrefix + string(r), Value: q.String(), LastObservedTime: now},
			clusterinventory.Property{Name: fleet.PropertyFreePrefix + string(r), Value: q.String(), LastObservedTime: now})
	}
	if err := c.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			l := &coordinationv1.Lease{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(lease), l); err == nil {
				l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
				_ = c.Update(ctx, l)
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// gpuJobSet is a JobSet of one Pod asking gpus GPUs, with tolerations.
func gpuJobSet(name string, gpus string, tolerations ...corev1.Toleration) *jobset.JobSet {
	js := jstesting.MakeJobSet("default", name).ReplicatedJob(
		jstesting.MakeReplicatedJob("trainer").Replicas(1).Container("c", "busybox").
			Requests(corev1.ResourceList{gpu: resource.MustParse(gpus)}).Obj()).Obj()
	js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Tolerations = tolerations
	return js
}

func startFitHub(t *testing.T, name string, opts hubcomponent.Options, controllers bool) *testenv.Cluster {
	t.Helper()
	c := testenv.Start(t, name, testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.DefaultInventoryNamespace}}); err != nil {
		t.Fatal(err)
	}
	if err := c.ServeWebhooks(ctx, opts.Admission()); err != nil {
		t.Fatal(err)
	}
	if !controllers {
		return c
	}
	mgr := c.NewManager(t, opts.CacheOptions())
	if err := hubcomponent.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, mgr)
	return c
}

// TestHubRejectsUnrunnable: on a real apiserver with the hub's webhooks, a
// JobSet whose Pod is larger than every member's largest node, or fits
// only nodes whose taints it does not tolerate, is rejected at creation
// with the pod template's field path and each member's reason; the same
// Pod with the toleration is admitted.
func TestHubRejectsUnrunnable(t *testing.T) {
	opts := hubcomponent.DefaultOptions()
	c := startFitHub(t, "hub-unrunnable", opts, false)
	joinFitMember(t, c.Client, fitMember{name: "fours", nodes: 4, node: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), gpu: resource.MustParse("4")}})
	joinFitMember(t, c.Client, fitMember{name: "tainted", nodes: 2, node: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), gpu: resource.MustParse("8")},
		taints: []corev1.Taint{gpuTaint}})
	ctx := context.Background()

	var err error
	// The webhook reads ClusterProfiles through its cache: wait until it
	// judges by both.
	testenv.Eventually(t, 30*time.Second, "the 8-GPU JobSet rejected", func() error {
		err = c.Client.Create(ctx, gpuJobSet("eight", "8"), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "tainted:") {
			return fmt.Errorf("create: %v", err)
		}
		return nil
	})
	err = c.Client.Create(ctx, gpuJobSet("eight", "8"))
	for _, want := range []string{
		"spec.replicatedJobs[0].template.spec.template.spec: Forbidden: no member cluster could ever run these Pods",
		"fours: needs 8 nvidia.com/gpu in one Pod; its largest node has 4",
		"tainted: Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule, on every node",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("creating an 8-GPU JobSet: error %v, want one containing %q", err, want)
		}
	}
	tolerating := gpuJobSet("eight-tolerating", "8", corev1.Toleration{Key: string(gpu), Operator: corev1.TolerationOpExists})
	if err := c.Client.Create(ctx, tolerating); err != nil {
		t.Errorf("an 8-GPU JobSet that tolerates the taint: %v", err)
	}
	if err := c.Client.Create(ctx, gpuJobSet("four", "4")); err != nil {
		t.Errorf("a 4-GPU JobSet: %v", err)
	}
}

// TestHubPlacesByNodes runs the hub (admission with --reject-unrunnable=false,
// and its controllers) against members whose agents publish node
// summaries. A Pod needing more GPUs than any node has is admitted but
// never dispatched: it waits, saying why per member. A JobSet that does
// not tolerate the taint on all of one member's nodes lands on the other
// member, though the tainted one has far more free.
func TestHubPlacesByNodes(t *testing.T) {
	opts := hubcomponent.DefaultOptions()
	opts.RejectUnrunnable = false
	opts.HeartbeatTimeout, opts.MemberLostTimeout = 2*time.Second, 4*time.Second
	c := startFitHub(t, "hub-fit", opts, true)
	joinFitMember(t, c.Client, fitMember{name: "fours", nodes: 2, node: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), gpu: resource.MustParse("4")}})
	joinFitMember(t, c.Client, fitMember{name: "tainted", nodes: 8, node: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), gpu: resource.MustParse("8")},
		taints: []corev1.Taint{gpuTaint}})
	ctx := context.Background()

	dispatches := func(js *jobset.JobSet) []string {
		t.Helper()
		cur := &jobset.JobSet{}
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(js), cur); err != nil {
			t.Fatal(err)
		}
		list := &fleet.JobSetDispatchList{}
		if err := c.Client.List(ctx, list, client.MatchingLabels{fleet.OriginUIDLabel: string(cur.UID)}); err != nil {
			t.Fatal(err)
		}
		var where []string
		for _, d := range list.Items {
			where = append(where, d.Namespace)
		}
		return where
	}

	t.Run("a Pod larger than every node waits with the reason", func(t *testing.T) {
		js := gpuJobSet("eight", "8")
		if err := c.Client.Create(ctx, js); err != nil {
			t.Fatalf("with --reject-unrunnable=false the JobSet is admitted: %v", err)
		}
		testenv.Eventually(t, 30*time.Second, "NoFit with per-member reasons", func() error {
			cur := &jobset.JobSet{}
			if err := c.Client.Get(ctx, client.ObjectKeyFromObject(js), cur); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(cur.Status.Conditions, fleet.ConditionDispatched)
			if cond == nil || cond.Reason != fleet.ReasonNoFit ||
				!strings.Contains(cond.Message, "fours: needs 8 nvidia.com/gpu in one Pod; its largest node has 4") ||
				!strings.Contains(cond.Message, "tainted: Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule, on every node") {
				return fmt.Errorf("Dispatched = %+v; dispatched to %v", cond, dispatches(js))
			}
			pd := &clusterinventory.PlacementDecision{}
			if err := c.Client.Get(ctx, client.ObjectKeyFromObject(js), pd); err != nil {
				return err
			}
			if len(pd.Decisions) != 0 || !strings.Contains(pd.Annotations[placement.ReasonsAnnotation], "fours: needs 8 nvidia.com/gpu in one Pod") {
				return fmt.Errorf("PlacementDecision %+v", pd)
			}
			return nil
		})
		testenv.Consistently(t, 2*time.Second, "never dispatched", func() error {
			if where := dispatches(js); len(where) != 0 {
				return fmt.Errorf("dispatched to %v", where)
			}
			return nil
		})
	})

	t.Run("all nodes of one member tainted: the other member", func(t *testing.T) {
		js := gpuJobSet("two", "2")
		if err := c.Client.Create(ctx, js); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "dispatched", func() error {
			if where := dispatches(js); len(where) != 1 {
				return fmt.Errorf("dispatched to %v", where)
			}
			return nil
		})
		if where := dispatches(js); where[0] != fleet.MemberNamespace("fours") {
			t.Fatalf("dispatched to %v, want %s only", where, fleet.MemberNamespace("fours"))
		}
		pd := &clusterinventory.PlacementDecision{}
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(js), pd); err != nil {
			t.Fatal(err)
		}
		if len(pd.Decisions) != 1 || pd.Decisions[0].ClusterProfileRef.Name != "fours" || !strings.HasPrefix(pd.Decisions[0].Reason, "chosen by spread policy; fits") ||
			len(pd.Decisions[0].Reason) > fleet.MaxMemberReason ||
			!strings.Contains(pd.Annotations[placement.ReasonsAnnotation], "tainted: Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule") {
			t.Errorf("PlacementDecision: decisions %+v, reasons %q", pd.Decisions, pd.Annotations[placement.ReasonsAnnotation])
		}
	})
}
