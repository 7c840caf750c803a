package fleet_test

// Placement that stays true on the local fleet, with real agents and real
// (kwok) Pods: a JobSet whose Pods cannot start where it was sent is
// withdrawn after its start deadline and runs elsewhere, one copy at a
// time; a member whose nodes are all tainted gets no JobSet that does not
// tolerate the taint.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// inventoryNamespace holds the members' ClusterProfiles on the hub.
const inventoryNamespace = "fleet-system"

// clusterClient is an admin client of one cluster of the fleet, from its
// kubeconfig: the sampler reads every 100ms, far beyond kubectl's pace and
// client-go's default rate limit.
func clusterClient(t *testing.T, name string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(devDir, name+".kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	ctrllog.SetLogger(logr.Discard()) // the client's own logs are noise here
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func memberClients(t *testing.T) map[string]client.Client {
	t.Helper()
	cs := map[string]client.Client{}
	for _, m := range devfleet.Default.Members {
		cs[m.Name] = clusterClient(t, m.Name)
	}
	return cs
}

func otherMember(name string) string {
	for _, m := range devfleet.Default.Members {
		if m.Name != name {
			return m.Name
		}
	}
	return ""
}

// podSpecOf is the pod template spec of the first replicated Job of a
// JobSet read with example.
func podSpecOf(obj map[string]any) map[string]any {
	rj := obj["spec"].(map[string]any)["replicatedJobs"].([]any)[0].(map[string]any)
	return rj["template"].(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

// editNodes applies edit to each named node of a member, retrying on
// conflicts (kwok updates node status all the time).
func editNodes(t *testing.T, c client.Client, nodes map[string]string, edit func(*corev1.Node)) {
	t.Helper()
	ctx := context.Background()
	for name := range nodes {
		err := testenv.Poll(30*time.Second, func() error {
			n := &corev1.Node{}
			if err := c.Get(ctx, types.NamespacedName{Name: name}, n); err != nil {
				return err
			}
			edit(n)
			return c.Update(ctx, n)
		}, testenv.Every(200*time.Millisecond))
		if err != nil {
			t.Fatalf("editing node %s: %v", name, err)
		}
	}
}

// --- the copy sampler ---------------------------------------------------

// copySampler reads both members every ~100ms and records any instant at
// which two copies of one JobSet were live. A copy is live on a member
// while any of these holds there:
//   - its JobSet exists, is not being deleted and is not suspended;
//   - a Job of it is neither suspended nor finished;
//   - a Pod of it is not finished, scheduled or not (a Pod that never
//     started still counts: never two copies, not even of those).
//
// A copy being deleted whose Jobs and Pods are all gone does not count.
// It also records what the hub JobSet's Dispatched condition said.
type copySampler struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}

	mu         sync.Mutex
	n          int
	bad        []string
	first      map[string]time.Time
	last       map[string]time.Time
	pods       map[string]int  // most unfinished Pods seen at once
	scheduled  map[string]bool // a Pod of the copy was ever bound to a node
	conditions []string        // distinct Dispatched conditions, in order
}

func startCopySampler(hub client.Client, members map[string]client.Client, ns, name string) *copySampler {
	s := &copySampler{quit: make(chan struct{}), done: make(chan struct{}),
		first: map[string]time.Time{}, last: map[string]time.Time{}, pods: map[string]int{}, scheduled: map[string]bool{}}
	names := make([]string, 0, len(members))
	for m := range members {
		names = append(names, m)
	}
	slices.Sort(names)
	go func() {
		defer close(s.done)
		ctx := context.Background()
		lastLive := map[string]bool{}
		for {
			select {
			case <-s.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var live, states []string
			pods, scheduled := map[string]int{}, map[string]bool{}
			for _, m := range names {
				l, state, err := copyLive(ctx, members[m], ns, name, func(p *corev1.Pod) {
					pods[m]++
					scheduled[m] = scheduled[m] || p.Spec.NodeName != ""
				})
				if err != nil {
					// Unreadable: it runs what it ran when last read.
					l, state = lastLive[m], fmt.Sprintf("unreadable (%v), live when last read: %t", err, lastLive[m])
				}
				lastLive[m] = l
				states = append(states, m+": "+state)
				if l {
					live = append(live, m)
				}
			}
			cond := ""
			js := &jobset.JobSet{}
			if err := hub.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); err == nil {
				if c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched); c != nil {
					cond = fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
				}
			}
			now := time.Now()
			s.mu.Lock()
			s.n++
			for _, m := range live {
				if s.first[m].IsZero() {
					s.first[m] = now
				}
				s.last[m] = now
			}
			for m, n := range pods {
				s.pods[m] = max(s.pods[m], n)
				s.scheduled[m] = s.scheduled[m] || scheduled[m]
			}
			if len(live) > 1 {
				s.bad = append(s.bad, fmt.Sprintf("%s: two live copies of %s/%s: %s", now.Format(time.StampMilli), ns, name, strings.Join(states, "; ")))
			}
			if cond != "" && (len(s.conditions) == 0 || s.conditions[len(s.conditions)-1] != cond) {
				s.conditions = append(s.conditions, cond)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// copyLive reports whether member c holds a live copy of ns/name (see
// copySampler), and calls pod for each unfinished Pod of it.
func copyLive(ctx context.Context, c client.Client, ns, name string, pod func(*corev1.Pod)) (bool, string, error) {
	var parts []string
	live := false
	js := &jobset.JobSet{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); {
	case apierrors.IsNotFound(err):
		parts = append(parts, "no JobSet")
	case err != nil:
		return false, "", err
	case js.DeletionTimestamp != nil:
		parts = append(parts, "JobSet being deleted")
	case js.IsSuspended():
		parts = append(parts, "JobSet suspended")
	default:
		live = true
		parts = append(parts, "JobSet active (epoch "+js.Labels[fleet.EpochLabel]+")")
	}
	byName := client.MatchingLabels{jobset.JobSetNameKey: name}
	var jobs batchv1.JobList
	if err := c.List(ctx, &jobs, client.InNamespace(ns), byName); err != nil {
		return false, "", err
	}
	for i := range jobs.Items {
		if jobUnfinished(&jobs.Items[i]) {
			live = true
			parts = append(parts, "Job "+jobs.Items[i].Name+" unfinished")
		}
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), byName); err != nil {
		return false, "", err
	}
	unfinished := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			unfinished++
			pod(p)
		}
	}
	if unfinished > 0 {
		live = true
		parts = append(parts, fmt.Sprintf("%d unfinished Pods", unfinished))
	}
	return live, strings.Join(parts, ", "), nil
}

func jobUnfinished(j *batchv1.Job) bool {
	if ptr.Deref(j.Spec.Suspend, false) {
		return false
	}
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	return true
}

func (s *copySampler) stop() {
	s.stopOnce.Do(func() { close(s.quit) })
	<-s.done
}

// --- withdrawal -----------------------------------------------------------

// poolLabel is a node label key the agents do not report: the hub cannot
// judge a required node affinity on it, so it counts it as matching, and
// only the member's scheduler finds out that no node there has it.
const poolLabel = "e2e.jobset-fleet.io/pool"

func TestJobSetThatCannotStartIsWithdrawnAndRunsOnTheOtherMember(t *testing.T) {
	ns := namespace(t, "e2e-withdraw")
	const name = "withdraw"
	ctx := context.Background()
	hub, members := clusterClient(t, devfleet.Default.Hub), memberClients(t)

	// No node anywhere has the label yet: wherever the hub sends the
	// JobSet first, its Pods cannot be scheduled there. Only then does the
	// other member get the label, so the test depends on no tie-break.
	manifest := example(t, "pytorch.yaml", func(obj map[string]any) {
		obj["metadata"] = map[string]any{"name": name, "annotations": map[string]any{fleet.StartTimeoutAnnotation: "10s"}}
		podSpecOf(obj)["affinity"] = map[string]any{"nodeAffinity": map[string]any{
			"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{map[string]any{
				"matchExpressions": []any{map[string]any{"key": poolLabel, "operator": "In", "values": []any{"withdraw"}}},
			}}},
		}}
	})
	s := startCopySampler(hub, members, ns, name)
	t.Cleanup(s.stop)
	kubectl(t, manifest, "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	first := waitPlaced(t, ns, name)
	second := otherMember(first)
	var secondNodes map[string]string
	for _, m := range devfleet.Default.Members {
		if m.Name == second {
			secondNodes = m.Nodes()
		}
	}
	editNodes(t, members[second], secondNodes, func(n *corev1.Node) { n.Labels[poolLabel] = "withdraw" })
	t.Cleanup(func() {
		editNodes(t, members[second], secondNodes, func(n *corev1.Node) { delete(n.Labels, poolLabel) })
	})

	// Withdrawn from the first member after 10s, placed on the second, and
	// run there to the end.
	var js *jobset.JobSet
	testenv.Eventually(t, 4*time.Minute, fmt.Sprintf("%s/%s completed on %s", ns, name, second), func() error {
		js = &jobset.JobSet{}
		if err := hub.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); err != nil {
			return err
		}
		if js.Status.Fleet == nil || js.Status.Fleet.Cluster != second || js.Status.TerminalState != "Completed" {
			return fmt.Errorf("hub JobSet: fleet %+v, terminalState %q, conditions %+v", js.Status.Fleet, js.Status.TerminalState, js.Status.Conditions)
		}
		return nil
	}, testenv.Every(500*time.Millisecond))
	s.stop()

	if len(s.bad) > 0 {
		t.Errorf("two live copies at once (%d of %d samples):\n%s", len(s.bad), s.n, strings.Join(s.bad[:min(len(s.bad), 10)], "\n"))
	}
	if s.n < 100 {
		t.Errorf("only %d samples: the sampler did not watch", s.n)
	}
	// It really could not start on the first member, and really ran on the
	// second, after the first copy was gone.
	if s.pods[first] == 0 || s.scheduled[first] {
		t.Errorf("on %s: %d Pods seen, one bound to a node: %t; want Pods that are never scheduled", first, s.pods[first], s.scheduled[first])
	}
	if !s.scheduled[second] {
		t.Errorf("no Pod seen bound to a node of %s", second)
	}
	if s.first[first].IsZero() || s.first[second].IsZero() || !s.last[first].Before(s.first[second]) {
		t.Errorf("copy on %s live from %v to %v, copy on %s from %v: want the first gone before the second",
			first, s.first[first], s.last[first], second, s.first[second])
	}
	// What the user sees: why, in the condition and an event; where it
	// was tried; and no restart spent.
	withdrawn := false
	for _, c := range s.conditions {
		withdrawn = withdrawn || strings.HasPrefix(c, "False/"+fleet.ReasonStartTimeout+": ") && strings.Contains(c, first)
	}
	if !withdrawn {
		t.Errorf("hub JobSet never showed Dispatched=False reason %s naming %s; it showed:\n%s", fleet.ReasonStartTimeout, first, strings.Join(s.conditions, "\n"))
	}
	var events corev1.EventList
	if err := hub.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	event := false
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == "JobSet" && e.InvolvedObject.Name == name {
			notes = append(notes, e.Reason+": "+e.Message)
			event = event || e.Reason == fleet.ReasonStartTimeout && strings.Contains(e.Message, first)
		}
	}
	if !event {
		t.Errorf("no %s event naming %s on the hub JobSet; its events:\n%s", fleet.ReasonStartTimeout, first, strings.Join(notes, "\n"))
	}
	fs := js.Status.Fleet
	if len(fs.Withdrawals) == 0 || fs.Withdrawals[0].Cluster != first {
		t.Errorf("status.fleet.withdrawals = %+v, want the first naming %s", fs.Withdrawals, first)
	}
	if js.Status.Restarts != 0 || fs.RestartsCarried != 0 {
		t.Errorf("restarts %d (carried %d): a withdrawal is not a restart", js.Status.Restarts, fs.RestartsCarried)
	}
	// Nothing of it is left on the first member.
	if l, state, err := copyLive(ctx, members[first], ns, name, func(*corev1.Pod) {}); err != nil || l || state != "no JobSet" {
		t.Errorf("on %s after the withdrawal: %s (err %v), want nothing", first, state, err)
	}
}

// --- taints ---------------------------------------------------------------

func TestJobSetAvoidsAMemberWhoseNodesItDoesNotTolerate(t *testing.T) {
	ctx := context.Background()
	hub := clusterClient(t, devfleet.Default.Hub)
	// member-1 has the most free nodes: judged by sums, it would be chosen.
	tainted, other := devfleet.Default.Members[0], devfleet.Default.Members[1].Name
	memberClient := clusterClient(t, tainted.Name)
	taint := corev1.Taint{Key: "example.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}
	isTaint := func(other corev1.Taint) bool { return taint.MatchTaint(&other) }
	editNodes(t, memberClient, tainted.Nodes(), func(n *corev1.Node) {
		if !slices.ContainsFunc(n.Spec.Taints, isTaint) {
			n.Spec.Taints = append(n.Spec.Taints, taint)
		}
	})
	t.Cleanup(func() {
		editNodes(t, memberClient, tainted.Nodes(), func(n *corev1.Node) {
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, isTaint)
		})
	})

	// The agent publishes its node summary at most every 30s.
	testenv.Eventually(t, 2*time.Minute, tainted.Name+"'s node summary shows every node tainted", func() error {
		profile := &clusterinventory.ClusterProfile{}
		if err := hub.Get(ctx, types.NamespacedName{Namespace: inventoryNamespace, Name: tainted.Name}, profile); err != nil {
			return err
		}
		summary, err := inventory.ParseNodeSummary(profile.Status.Properties)
		if err != nil || summary == nil {
			return fmt.Errorf("node summary of %s: %v, %v", tainted.Name, summary, err)
		}
		nodes := int32(0)
		for _, g := range summary.Groups {
			if !slices.ContainsFunc(g.Taints, isTaint) {
				return fmt.Errorf("%s: a group of %d nodes without the taint: %+v", tainted.Name, g.Nodes, g)
			}
			nodes += g.Nodes
		}
		if want := int32(len(tainted.Nodes())); nodes != want {
			return fmt.Errorf("%s: %d tainted nodes in the summary, want %d", tainted.Name, nodes, want)
		}
		return nil
	}, testenv.Every(time.Second))

	ns := namespace(t, "e2e-taints")
	// Several, so that landing on the other member is not a coin's luck.
	intolerant := []string{"intolerant-0", "intolerant-1", "intolerant-2"}
	for _, name := range intolerant {
		kubectl(t, example(t, "pytorch.yaml", func(obj map[string]any) {
			obj["metadata"] = map[string]any{"name": name}
		}), "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	}
	for _, name := range intolerant {
		if member := waitPlaced(t, ns, name); member != other {
			t.Errorf("%s placed on %s, whose nodes are all tainted %s; want %s", name, member, taint.ToString(), other)
		}
		reasons := placementReasons(t, hub, ns, name)
		if want := tainted.Name + ": Pods do not tolerate taint " + taint.ToString(); !strings.Contains(reasons, want) {
			t.Errorf("%s: placement reasons %q, want them to say %q", name, reasons, want)
		}
	}
	for _, name := range intolerant {
		waitTerminal(t, ns, name, "Completed")
	}

	// With the toleration, the tainted member is a candidate like any.
	kubectl(t, example(t, "pytorch.yaml", func(obj map[string]any) {
		obj["metadata"] = map[string]any{"name": "tolerant"}
		podSpecOf(obj)["tolerations"] = []any{map[string]any{"key": taint.Key, "operator": "Exists", "effect": string(taint.Effect)}}
	}), "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	waitPlaced(t, ns, "tolerant")
	if reasons := placementReasons(t, hub, ns, "tolerant"); strings.Contains(reasons, "tolerate") {
		t.Errorf("tolerant: placement reasons %q speak of taints; its Pods tolerate them", reasons)
	}
	waitTerminal(t, ns, "tolerant", "Completed")
}

// placementReasons are every member's verdicts on the PlacementDecision
// that chose a member for ns/name; the hub publishes it just after it
// records the placement in the JobSet's status.
func placementReasons(t *testing.T, hub client.Client, ns, name string) string {
	t.Helper()
	var reasons string
	testenv.Eventually(t, 30*time.Second, "the PlacementDecision of "+ns+"/"+name, func() error {
		pd := &clusterinventory.PlacementDecision{}
		if err := hub.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, pd); err != nil {
			return err
		}
		if len(pd.Decisions) == 0 {
			return fmt.Errorf("PlacementDecision %s/%s chose no member yet", ns, name)
		}
		reasons = pd.Annotations[placement.ReasonsAnnotation]
		return nil
	}, testenv.Every(200*time.Millisecond))
	return reasons
}
