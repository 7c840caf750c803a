package kueuemember_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// poolLabel and poolTaint are what the members' ResourceFlavor injects
// into an admitted copy: a node selector and a toleration.
const (
	poolLabel = "example.com/pool"
	poolTaint = "example.com/dedicated"
)

// TestMemberKueue: member-1's ClusterQueue team-a has 1 cpu of quota,
// member-2's 4; both members' nodes have 8 cpu free.
//
//   - A JobSet of 2 cpu naming team-a goes to member-2, whose queue can
//     admit it (by nodes alone member-1 would be chosen: it sorts first);
//     member-2's Kueue admits the copy, resuming it with the flavor's node
//     selector and toleration, its Jobs are created, and the agent
//     reverts none of it.
//   - A JobSet of 3 cpu fits no queue now; it goes to member-1, where it
//     waits suspended in Kueue (the agent never resumes it) and the hub
//     says so: "Queued in member-1's ClusterQueue team-a: <Kueue's reason>".
//   - The first JobSet is deleted, freeing member-2's quota; past its
//     start deadline the waiting copy is withdrawn from member-1 and runs
//     on member-2, admitted there. No moment has two copies.
func TestMemberKueue(t *testing.T) {
	ctx := context.Background()
	ns := "kueue-members"
	create(t, hub.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	for _, mb := range members {
		quota := map[string]string{"member-1": "1", "member-2": "4"}[mb.name]
		setupQueue(t, mb, ns, "team-a", quota)
	}
	awaitQuotas(t, ns, "team-a")

	// 1. The JobSet goes where the queue has room, and Kueue runs it there.
	first := queuedJobSet(ns, "first", "team-a", "2", "")
	create(t, hub.Client, first)
	testenv.Eventually(t, timeout, "first placed on member-2", func() error {
		if d := dispatchOn(t, first, "member-2"); d == nil {
			return fmt.Errorf("not on member-2; dispatches on %v; Dispatched %+v", dispatchedTo(t, first),
				meta.FindStatusCondition(get(t, first).Status.Conditions, fleet.ConditionDispatched))
		}
		return nil
	})
	testenv.Eventually(t, timeout, "the placement says why member-1 was ranked after", func() error {
		pd := &clusterinventory.PlacementDecision{}
		if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(first), pd); err != nil {
			return err
		}
		if why := pd.Annotations[placement.ReasonsAnnotation]; !strings.Contains(why, "member-1: fits;") || !strings.Contains(why, "ClusterQueue team-a has 1 cpu free, needs 2") {
			return fmt.Errorf("placement reasons %q", why)
		}
		return nil
	})
	m2 := members[1]
	testenv.Eventually(t, timeout, "first admitted by member-2's Kueue", func() error {
		c := copyOn(t, m2, first)
		if c == nil || c.IsSuspended() {
			return fmt.Errorf("copy on member-2 not resumed by Kueue: %v", c != nil)
		}
		return jobsCreated(t, m2, c)
	})
	testenv.Consistently(t, 3*time.Second, "the agent leaves what Kueue changed on the admitted copy", func() error {
		c := copyOn(t, m2, first)
		if c == nil || c.IsSuspended() {
			return fmt.Errorf("copy on member-2 suspended or gone")
		}
		pod := c.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
		if pod.NodeSelector[poolLabel] != "kueue" || len(pod.Tolerations) == 0 || pod.Tolerations[0].Key != poolTaint {
			return fmt.Errorf("Kueue's node selector or toleration reverted: %v %v", pod.NodeSelector, pod.Tolerations)
		}
		return nil
	})

	// 2. A JobSet no queue can admit now waits on member-1, and the hub
	// says where.
	second := queuedJobSet(ns, "second", "team-a", "3", "15s")
	create(t, hub.Client, second)
	m1 := members[0]
	testenv.Eventually(t, timeout, "second waits in member-1's queue, shown on the hub", func() error {
		if d := dispatchOn(t, second, "member-1"); d == nil {
			return fmt.Errorf("not on member-1; dispatches on %v", dispatchedTo(t, second))
		}
		c := meta.FindStatusCondition(get(t, second).Status.Conditions, fleet.ConditionQueuedOnMember)
		if c == nil || c.Status != metav1.ConditionTrue || !strings.HasPrefix(c.Message, "Queued in member-1's ClusterQueue team-a: ") {
			return fmt.Errorf("QueuedOnMember is %+v", c)
		}
		if !strings.Contains(c.Message, "quota") {
			return fmt.Errorf("the message does not carry Kueue's reason: %q", c.Message)
		}
		return nil
	})
	t.Logf("hub says: %s", meta.FindStatusCondition(get(t, second).Status.Conditions, fleet.ConditionQueuedOnMember).Message)
	testenv.Consistently(t, 2*time.Second, "the agent does not resume the copy Kueue holds", func() error {
		if c := copyOn(t, m1, second); c == nil || !c.IsSuspended() {
			return fmt.Errorf("copy on member-1 gone or resumed")
		}
		return nil
	})

	// 3. Room appears on member-2; past the deadline the copy moves there.
	if err := hub.Client.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, "second withdrawn from member-1 and admitted on member-2", func() error {
		if n := copies(t, second); n > 1 {
			t.Fatalf("%d copies of second at once", n)
		}
		fs := get(t, second).Status.Fleet
		if fs == nil || len(fs.Withdrawals) == 0 || fs.Withdrawals[0].Cluster != "member-1" {
			return fmt.Errorf("not withdrawn from member-1: %+v", fs)
		}
		c := copyOn(t, m2, second)
		if c == nil || c.IsSuspended() {
			return fmt.Errorf("not admitted on member-2 (copy there: %v)", c != nil)
		}
		return jobsCreated(t, m2, c)
	}, testenv.Every(100*time.Millisecond))
	if c := copyOn(t, m1, second); c != nil && c.DeletionTimestamp == nil {
		t.Error("the withdrawn copy is still on member-1")
	}
	testenv.Eventually(t, timeout, "the hub no longer says queued once admitted", func() error {
		if c := meta.FindStatusCondition(get(t, second).Status.Conditions, fleet.ConditionQueuedOnMember); c != nil {
			return fmt.Errorf("QueuedOnMember is %+v", c)
		}
		return nil
	})
}

// setupQueue creates, on mb, a ResourceFlavor injecting poolLabel=kueue
// and a toleration of poolTaint, a ClusterQueue of cpu quota of it, and a
// LocalQueue of that name in ns.
func setupQueue(t *testing.T, mb *member, ns, name, cpu string) {
	t.Helper()
	c := mb.cluster.Client
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, c, kueueObject("ResourceFlavor", "", "pool", map[string]any{
		"nodeLabels":  map[string]any{poolLabel: "kueue"},
		"tolerations": []any{map[string]any{"key": poolTaint, "operator": "Exists", "effect": "NoSchedule"}},
	}))
	create(t, c, kueueObject("ClusterQueue", "", name, map[string]any{
		"namespaceSelector": map[string]any{},
		"resourceGroups": []any{map[string]any{
			"coveredResources": []any{"cpu"},
			"flavors":          []any{map[string]any{"name": "pool", "resources": []any{map[string]any{"name": "cpu", "nominalQuota": cpu}}}},
		}},
	}))
	create(t, c, kueueObject("LocalQueue", ns, name, map[string]any{"clusterQueue": name}))
}

// awaitQuotas waits until the hub holds, for both members, an active
// ClusterQueue behind LocalQueue ns/queue.
func awaitQuotas(t *testing.T, ns, queue string) {
	t.Helper()
	testenv.Eventually(t, timeout, "the hub sees both members' Kueue quotas", func() error {
		for _, mb := range members {
			cp := &clusterinventory.ClusterProfile{}
			if err := hub.Client.Get(context.Background(), client.ObjectKey{Namespace: inventoryNS, Name: mb.name}, cp); err != nil {
				return err
			}
			q, err := inventory.ParseKueueQuotas(cp.Status.Properties)
			if err != nil || q == nil {
				return fmt.Errorf("%s: no Kueue quotas (%v)", mb.name, err)
			}
			if _, cq := inventory.LocalQueue(q, ns, queue); cq == nil || cq.Inactive {
				return fmt.Errorf("%s: ClusterQueue of %s not reported active: %+v", mb.name, queue, q)
			}
		}
		return nil
	})
}

// queuedJobSet is a JobSet of one pod asking cpu, naming LocalQueue
// queue, with a start deadline when startTimeout is set.
func queuedJobSet(ns, name, queue, cpu, startTimeout string) *jobset.JobSet {
	js := jstesting.MakeJobSet(ns, name).Label(fleet.KueueQueueNameLabel, queue).
		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(1).Parallelism(1).Completions(1).
			RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj())
	if startTimeout != "" {
		js.Annotation(fleet.StartTimeoutAnnotation, startTimeout)
	}
	return js.Obj()
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
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

// dispatchOn is js's live dispatch on member, or nil.
func dispatchOn(t *testing.T, js *jobset.JobSet, member string) *fleet.JobSetDispatch {
	t.Helper()
	d := &fleet.JobSetDispatch{}
	err := hub.Client.Get(context.Background(), client.ObjectKey{Namespace: fleet.MemberNamespace(member), Name: fleet.DispatchName(js.Namespace, js.Name)}, d)
	if apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func dispatchedTo(t *testing.T, js *jobset.JobSet) []string {
	t.Helper()
	var out []string
	for _, mb := range members {
		if dispatchOn(t, js, mb.name) != nil {
			out = append(out, mb.name)
		}
	}
	return out
}

// copyOn is the member copy of js on mb, or nil.
func copyOn(t *testing.T, mb *member, js *jobset.JobSet) *jobset.JobSet {
	t.Helper()
	c := &jobset.JobSet{}
	err := mb.cluster.Client.Get(context.Background(), client.ObjectKeyFromObject(js), c)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// copies counts the copies of js on the members, being deleted or not:
// the hub places a JobSet again only once its earlier copy is gone.
func copies(t *testing.T, js *jobset.JobSet) int {
	t.Helper()
	n := 0
	for _, mb := range members {
		if copyOn(t, mb, js) != nil {
			n++
		}
	}
	return n
}

// jobsCreated says whether the copy's Jobs exist, unsuspended.
func jobsCreated(t *testing.T, mb *member, c *jobset.JobSet) error {
	t.Helper()
	var jobs batchv1.JobList
	if err := mb.cluster.Client.List(context.Background(), &jobs, client.InNamespace(c.Namespace), client.MatchingLabels{jobset.JobSetNameKey: c.Name}); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if metav1.IsControlledBy(&j, c) && (j.Spec.Suspend == nil || !*j.Spec.Suspend) {
			return nil
		}
	}
	return fmt.Errorf("no unsuspended Job of %s/%s on %s", c.Namespace, c.Name, mb.name)
}
