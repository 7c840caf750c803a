package integration

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// 1. A JobSet applied to the hub runs on one member and its status comes
// back to the hub.
func TestSubmitDispatchAndStatus(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "submit")
	create(t, newJobSet(ns, "train", 2, "100m"))

	js, m := waitPlaced(t, ns, "train")
	if got := ptr.Deref(js.Spec.ManagedBy, ""); got != fleet.ManagedByFleet {
		t.Errorf("hub admission did not claim the JobSet for the fleet: managedBy %q", got)
	}
	if c := condition(js, fleet.ConditionDispatched); !strings.Contains(c.Message, m) {
		t.Errorf("Dispatched condition does not name member %s: %q", m, c.Message)
	}

	var memberCopy *jobset.JobSet
	testenv.Eventually(t, time.Minute, "member copy with two Jobs", func() error {
		if memberCopy = memberJobSet(t, m, ns, "train"); memberCopy == nil {
			return fmt.Errorf("no JobSet %s/train on %s", ns, m)
		}
		if n := len(memberJobs(t, m, ns, "train")); n != 2 {
			return fmt.Errorf("%d Jobs on %s", n, m)
		}
		return nil
	})
	if memberCopy.Labels[fleet.OriginUIDLabel] != string(js.UID) || memberCopy.Labels[fleet.EpochLabel] != "1" || memberCopy.Labels["app"] != "train" {
		t.Errorf("member copy labels %v: want origin-uid %s, epoch 1 and the user's app label", memberCopy.Labels, js.UID)
	}
	if memberCopy.Spec.ManagedBy != nil && *memberCopy.Spec.ManagedBy != jobset.JobSetControllerName {
		t.Errorf("member copy managedBy %q: the member's controller would ignore it", *memberCopy.Spec.ManagedBy)
	}
	names := []string{}
	for _, j := range memberJobs(t, m, ns, "train") {
		names = append(names, j.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"train-w-0", "train-w-1"}) {
		t.Errorf("member Jobs %v, want train-w-0, train-w-1", names)
	}
	if other := memberJobSet(t, env.other(m), ns, "train"); other != nil {
		t.Errorf("a second copy exists on %s", env.other(m))
	}

	// Play the kubelet: both pods succeed; the real Job controller
	// completes the Jobs, the member's JobSet controller the JobSet.
	testenv.Eventually(t, time.Minute, "pods of the member Jobs", func() error {
		var pods corev1.PodList
		must(t, env.members[m].cluster.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: "train"}))
		if len(pods.Items) != 2 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
	finishPods(t, m, ns, "train")

	testenv.Eventually(t, time.Minute, "hub JobSet Completed", func() error {
		js = hubJobSet(t, ns, "train")
		c := condition(js, string(jobset.JobSetCompleted))
		if js.Status.TerminalState != string(jobset.JobSetCompleted) || c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("terminalState %q, conditions %+v", js.Status.TerminalState, js.Status.Conditions)
		}
		return nil
	})
	type succeeded struct {
		Name      string
		Succeeded int32
	}
	var rjs []succeeded
	for _, r := range js.Status.ReplicatedJobsStatus {
		rjs = append(rjs, succeeded{r.Name, r.Succeeded})
	}
	if d := cmp.Diff([]succeeded{{"w", 2}}, rjs); d != "" {
		t.Errorf("hub replicatedJobsStatus (-want +got):\n%s", d)
	}
	if c := condition(js, fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("finished JobSet lost its Dispatched condition: %+v", js.Status.Conditions)
	}
}

// 2. A JobSet no member can hold stays pending with a reason per member,
// and is dispatched once a member reports enough capacity. Each of its
// Pods fits a node (one that no node could ever hold is rejected at
// admission), but not all three at once anywhere.
func TestNoFitUntilCapacityGrows(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "nofit")
	create(t, newJobSet(ns, "huge", 3, "4"))

	var msg string
	testenv.Eventually(t, time.Minute, "Dispatched=False NoFit", func() error {
		js := hubJobSet(t, ns, "huge")
		c := condition(js, fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonNoFit {
			return fmt.Errorf("conditions %+v", js.Status.Conditions)
		}
		msg = c.Message
		return nil
	})
	for _, m := range env.names {
		if !strings.Contains(msg, m+": only ") || !strings.Contains(msg, "of 3 Pods fit at once") {
			t.Errorf("NoFit message does not say why %s does not fit: %q", m, msg)
		}
	}
	// It stays pending: no dispatch, no member copy.
	for range 20 {
		js := hubJobSet(t, ns, "huge")
		if d := dispatchesOf(t, js.UID); len(d) > 0 || placedOn(js) != "" {
			t.Fatalf("dispatched although nothing fits: %d dispatches, cluster %q", len(d), placedOn(js))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// beta grows: a node with 32 cpu joins it.
	c := env.members[beta].cluster.Client
	must(t, addNode(ctx, c, "big-"+ns, "32", "64Gi"))
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "big-" + ns}})
	})
	js, m := waitPlaced(t, ns, "huge")
	if m != beta {
		t.Fatalf("placed on %s, want %s (the only member with room for all three Pods)", m, beta)
	}
	if c := condition(js, fleet.ConditionDispatched); c.Reason != fleet.ReasonDispatched {
		t.Errorf("Dispatched reason %q", c.Reason)
	}
	testenv.Eventually(t, time.Minute, "member copy on beta", func() error {
		if memberJobSet(t, beta, ns, "huge") == nil {
			return fmt.Errorf("no copy on %s", beta)
		}
		return nil
	})
}

// 3. Cluster selectors and pinned clusters decide where JobSets go.
func TestClusterSelectorAndPinnedCluster(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "steer")
	cases := []struct {
		name        string
		annotations []string
		want        string // member, or "" for pending
		wantMsg     string
	}{
		{"sel-eu", []string{fleet.ClusterSelectorAnnotation, "region=eu"}, alpha, ""},
		{"sel-us", []string{fleet.ClusterSelectorAnnotation, "region=us"}, beta, ""},
		{"sel-gold", []string{fleet.ClusterSelectorAnnotation, "tier=gold,region in (eu,us)"}, alpha, ""},
		{"pin-alpha", []string{fleet.PinnedClusterAnnotation, alpha}, alpha, ""},
		{"pin-beta", []string{fleet.PinnedClusterAnnotation, beta}, beta, ""},
		{"sel-mars", []string{fleet.ClusterSelectorAnnotation, "region=mars"}, "", `labels do not match selector "region=mars"`},
		{"pin-gamma", []string{fleet.PinnedClusterAnnotation, "gamma"}, "", `pinned cluster "gamma" is not in the fleet`},
	}
	for _, tc := range cases {
		create(t, newJobSet(ns, tc.name, 1, "10m", tc.annotations...))
	}
	for _, tc := range cases {
		if tc.want != "" {
			_, m := waitPlaced(t, ns, tc.name)
			if m != tc.want {
				t.Errorf("%s: placed on %s, want %s", tc.name, m, tc.want)
			}
			testenv.Eventually(t, time.Minute, tc.name+" copy on "+tc.want, func() error {
				if memberJobSet(t, tc.want, ns, tc.name) == nil {
					return fmt.Errorf("no copy")
				}
				return nil
			})
			if memberJobSet(t, env.other(tc.want), ns, tc.name) != nil {
				t.Errorf("%s: copy on %s too", tc.name, env.other(tc.want))
			}
			continue
		}
		testenv.Eventually(t, time.Minute, tc.name+" pending", func() error {
			js := hubJobSet(t, ns, tc.name)
			c := condition(js, fleet.ConditionDispatched)
			if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, tc.wantMsg) {
				return fmt.Errorf("conditions %+v", js.Status.Conditions)
			}
			return nil
		})
	}

	// A malformed selector is rejected at admission, with the field path.
	err := env.hub.Client.Create(ctx, newJobSet(ns, "bad-sel", 1, "10m", fleet.ClusterSelectorAnnotation, "region in (eu"))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "metadata.annotations["+fleet.ClusterSelectorAnnotation+"]") {
		t.Errorf("malformed selector: want Invalid naming metadata.annotations[%s], got %v", fleet.ClusterSelectorAnnotation, err)
	}
}

// 4. Suspend, resume and delete on the hub reach the member.
func TestSuspendResumeDelete(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "lifecycle")
	create(t, newJobSet(ns, "sr", 2, "100m"))
	_, m := waitPlaced(t, ns, "sr")
	jobsSuspended := func(want bool) func() error {
		return func() error {
			js := memberJobSet(t, m, ns, "sr")
			if js == nil {
				return fmt.Errorf("no copy on %s", m)
			}
			if js.IsSuspended() != want {
				return fmt.Errorf("member JobSet suspend=%v", js.IsSuspended())
			}
			jobs := memberJobs(t, m, ns, "sr")
			if len(jobs) != 2 {
				return fmt.Errorf("%d Jobs", len(jobs))
			}
			for _, j := range jobs {
				if ptr.Deref(j.Spec.Suspend, false) != want {
					return fmt.Errorf("Job %s suspend=%v", j.Name, ptr.Deref(j.Spec.Suspend, false))
				}
			}
			return nil
		}
	}
	testenv.Eventually(t, time.Minute, "running copy", jobsSuspended(false))

	setSuspend := func(v bool) {
		testenv.Eventually(t, 30*time.Second, "update hub JobSet", func() error {
			js := hubJobSet(t, ns, "sr")
			js.Spec.Suspend = ptr.To(v)
			return env.hub.Client.Update(ctx, js)
		})
	}
	setSuspend(true)
	testenv.Eventually(t, time.Minute, "member JobSet and Jobs suspended", jobsSuspended(true))
	testenv.Eventually(t, time.Minute, "hub shows Suspended", func() error {
		js := hubJobSet(t, ns, "sr")
		if c := condition(js, string(jobset.JobSetSuspended)); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("conditions %+v", js.Status.Conditions)
		}
		return nil
	})

	setSuspend(false)
	testenv.Eventually(t, time.Minute, "member JobSet and Jobs resumed", jobsSuspended(false))
	testenv.Eventually(t, time.Minute, "hub shows resumed", func() error {
		js := hubJobSet(t, ns, "sr")
		if c := condition(js, string(jobset.JobSetSuspended)); c != nil && c.Status == metav1.ConditionTrue {
			return fmt.Errorf("conditions %+v", js.Status.Conditions)
		}
		return nil
	})

	// Delete: the member copy and its Jobs go first, then the hub JobSet.
	js := hubJobSet(t, ns, "sr")
	must(t, env.hub.Client.Delete(ctx, js))
	testenv.Eventually(t, 2*time.Minute, "hub JobSet gone", func() error {
		err := env.hub.Client.Get(ctx, client.ObjectKeyFromObject(js), &jobset.JobSet{})
		if err == nil {
			return fmt.Errorf("hub JobSet still there")
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The hub JobSet is gone: nothing of it may be left on the member.
		if c := memberJobSet(t, m, ns, "sr"); c != nil {
			t.Fatalf("hub JobSet gone while the member copy still exists (deleting=%v)", c.DeletionTimestamp != nil)
		}
		if jobs := memberJobs(t, m, ns, "sr"); len(jobs) > 0 {
			t.Fatalf("hub JobSet gone while %d member Jobs still exist", len(jobs))
		}
		return nil
	})
	// The dispatch goes once the agent drops its own finalizer, right after
	// reporting the copy deleted.
	testenv.Eventually(t, 30*time.Second, "dispatch gone", func() error {
		if d := dispatchesOf(t, js.UID); len(d) > 0 {
			return fmt.Errorf("%d dispatches left after the JobSet is gone (finalizers %v)", len(d), d[0].Finalizers)
		}
		return nil
	})
}

// 5. A burst of submissions spreads according to the members' capacity:
// 48 JobSets of 250m fill the fleet's 12 cpu exactly, so spread must put 32
// on alpha (8 cpu) and 16 on beta (4 cpu), and no member may be given more
// than it holds.
func TestBurstSpreadsByCapacity(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "burst")
	const n = 48
	const perJobSet = 0.25 // cpu
	// Start from what the members report.
	free := map[string]float64{}
	alloc := map[string]float64{}
	testenv.Eventually(t, time.Minute, "members report their nodes' capacity, all free", func() error {
		for _, spec := range memberSpecs {
			cp := &clusterinventory.ClusterProfile{}
			must(t, env.hub.Client.Get(ctx, types.NamespacedName{Namespace: inventoryNS, Name: spec.name}, cp))
			a, f := inventory.ParseProperties(cp.Status.Properties)
			ac, fc := a[corev1.ResourceCPU], f[corev1.ResourceCPU]
			alloc[spec.name], free[spec.name] = ac.AsApproximateFloat64(), fc.AsApproximateFloat64()
			if ac.String() != spec.cpu || fc.Cmp(ac) != 0 {
				return fmt.Errorf("%s: allocatable %s free %s", spec.name, ac.String(), fc.String())
			}
		}
		return nil
	})
	// Spread evens out the fraction left free: (Fa-x*r)/Aa == (Fb-y*r)/Ab
	// with x+y = n.
	fa, fb, aa, ab := free[alpha], free[beta], alloc[alpha], alloc[beta]
	wantAlpha := (fa/aa - fb/ab + n*perJobSet/ab) / (perJobSet/aa + perJobSet/ab)
	t.Logf("free cpu: %v; spread expects about %.1f on %s, %.1f on %s", free, wantAlpha, alpha, n-wantAlpha, beta)

	// A burst must not cut a healthy member off: its agent keeps renewing
	// its heartbeat while it turns dispatches into JobSets.
	fences := watchFences()
	defer fences.stop()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 5 {
		wg.Go(func() {
			for i := w; i < n; i += 5 {
				if err := env.hub.Client.Create(ctx, newJobSet(ns, fmt.Sprintf("b-%02d", i), 1, "250m")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every JobSet fits, so every one must be dispatched; collect where.
	var count map[string]int
	var pending []string
	err := testenv.Poll(time.Minute, func() error {
		count, pending = map[string]int{}, nil
		var list jobset.JobSetList
		must(t, env.hub.Client.List(ctx, &list, client.InNamespace(ns)))
		for i := range list.Items {
			js := &list.Items[i]
			c := condition(js, fleet.ConditionDispatched)
			switch {
			case c != nil && c.Status == metav1.ConditionTrue && placedOn(js) != "":
				count[placedOn(js)]++
			case c != nil:
				pending = append(pending, js.Name+": "+c.Message)
			default:
				pending = append(pending, js.Name+": not considered yet")
			}
		}
		if len(list.Items) != n || len(pending) > 0 {
			return fmt.Errorf("%d JobSets, %d pending", len(list.Items), len(pending))
		}
		return nil
	})
	t.Logf("placed: %v (%s after the first submission)", count, time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Errorf("not every JobSet was dispatched although the fleet holds them all: %v; e.g. %s", err, strings.Join(pending[:min(2, len(pending))], " | "))
	}
	var list jobset.JobSetList
	must(t, env.hub.Client.List(ctx, &list, client.InNamespace(ns)))
	for i := range list.Items {
		js := &list.Items[i]
		m := placedOn(js)
		if m == "" {
			continue
		}
		if d := dispatchesOf(t, js.UID); len(d) != 1 || d[0].Namespace != fleet.MemberNamespace(m) {
			t.Errorf("%s: %d dispatches, want one in %s", js.Name, len(d), fleet.MemberNamespace(m))
		}
	}
	if math.Abs(float64(count[alpha])-wantAlpha) > 3 {
		t.Errorf("%s got %d of %d, spread by capacity expects about %.0f (counts %v)", alpha, count[alpha], n, wantAlpha, count)
	}
	for _, m := range env.names {
		if used := float64(count[m]) * perJobSet; used > free[m]+1e-9 {
			t.Errorf("%s over-committed: %d JobSets, %.2f cpu placed on a member with %.2f cpu free: their pods can never all run, although the fleet has room for all of them", m, count[m], used, free[m])
		}
	}
	// Each lands where the hub says, and only there.
	testenv.Eventually(t, 2*time.Minute, "member copies", func() error {
		for _, m := range env.names {
			var list jobset.JobSetList
			must(t, env.members[m].cluster.Client.List(ctx, &list, client.InNamespace(ns)))
			if len(list.Items) != count[m] {
				return fmt.Errorf("%s has %d copies, hub placed %d there", m, len(list.Items), count[m])
			}
		}
		return nil
	})
	t.Logf("all copies on the members %s after the first submission", time.Since(start).Round(100*time.Millisecond))
	fences.stop()
	if f := fences.fenced(); len(f) > 0 {
		t.Errorf("agents fenced themselves during the burst (their heartbeat did not reach the hub for %s): %v", fenceTimeout, f)
	}
}

// 6. The agent's real join credentials are confined to its namespace and
// its own ClusterProfile.
func TestJoinCredentialsLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "priv")
	a := env.members[alpha].hubClient
	otherNS := fleet.MemberNamespace(beta)
	otherCP := &clusterinventory.ClusterProfile{}
	must(t, env.hub.Client.Get(ctx, types.NamespacedName{Namespace: inventoryNS, Name: beta}, otherCP))
	otherCP.Status.Version.Kubernetes = "v0.0.0-forged"

	forbidden := map[string]error{
		"list another member's dispatches": a.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(otherNS)),
		"get another member's dispatch":    a.Get(ctx, types.NamespacedName{Namespace: otherNS, Name: "x.y"}, &fleet.JobSetDispatch{}),
		"list JobSets in a user namespace": a.List(ctx, &jobset.JobSetList{}, client.InNamespace(ns)),
		"get another ClusterProfile":       a.Get(ctx, client.ObjectKeyFromObject(otherCP), &clusterinventory.ClusterProfile{}),
		"write another profile's status":   a.Status().Update(ctx, otherCP),
		"read another member's heartbeat":  a.Get(ctx, types.NamespacedName{Namespace: otherNS, Name: fleet.HeartbeatLeaseName}, &coordinationv1.Lease{}),
	}
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: want 403 Forbidden, got %v", what, err)
		}
	}
	if err := a.Get(ctx, types.NamespacedName{Namespace: inventoryNS, Name: alpha}, &clusterinventory.ClusterProfile{}); err != nil {
		t.Errorf("get own ClusterProfile: %v", err)
	}
	if err := a.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(fleet.MemberNamespace(alpha))); err != nil {
		t.Errorf("list own dispatches: %v", err)
	}
}

// 7. FAULT: a member cut off from the hub fences its copy; a JobSet that
// opted into at-least-once failover moves to the other member only
// afterwards (by the agent's fence timeout being below the hub's
// member-lost timeout); when the link heals the old copy goes. Two copies
// never run at once.
func TestPartitionAtLeastOnceFencesThenRedispatches(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "partition")
	js := newJobSet(ns, "p", 2, "100m", fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce)
	js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 3}
	create(t, js)
	js, from := waitPlaced(t, ns, "p")
	to := env.other(from)
	testenv.Eventually(t, time.Minute, "copy running on "+from, func() error {
		running, state, err := copyRunning(ctx, from, ns, "p")
		if err != nil || !running {
			return fmt.Errorf("%s: %s %v", from, state, err)
		}
		return nil
	})

	s := startSampler(ns, "p")
	defer s.stop()
	// Polling can miss a short window; a watch sees every write of the old
	// copy: once fenced (suspended) it must never run again.
	w := watchResume(t, from, ns, "p")
	defer w.stop()

	p := env.members[from].proxy
	p.Cut()
	cut := time.Now()
	healed := false
	defer func() {
		if !healed {
			_ = p.Heal()
		}
	}()

	testenv.Eventually(t, time.Minute, "copy on "+from+" fenced (suspended)", func() error {
		c := memberJobSet(t, from, ns, "p")
		if c == nil || !c.IsSuspended() {
			return fmt.Errorf("copy on %s not suspended", from)
		}
		return nil
	})
	fenced := time.Since(cut)
	if fenced < fenceTimeout-500*time.Millisecond {
		t.Errorf("fenced %s after the cut, before fenceTimeout %s", fenced, fenceTimeout)
	}

	sawStale := false
	testenv.Eventually(t, 2*time.Minute, "hub re-dispatches to "+to, func() error {
		cur := hubJobSet(t, ns, "p")
		if c := condition(cur, fleet.ConditionMemberStatusStale); c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, from) {
			sawStale = true
		}
		if placedOn(cur) != to {
			return fmt.Errorf("still on %q", placedOn(cur))
		}
		return nil
	})
	moved := time.Since(cut)
	if !sawStale {
		t.Errorf("hub JobSet never showed MemberStatusStale=True for %s before moving", from)
	}
	// The hub counts from the last renewal it saw, at most one heartbeat
	// interval before the cut.
	if moved < memberLostTimeout-heartbeatInterval || moved < fenced {
		t.Errorf("re-dispatched %s after the cut: before memberLostTimeout %s (less one renewal interval) or before the fence (%s)", moved, memberLostTimeout, fenced)
	}
	t.Logf("fenced after %s, re-dispatched after %s", fenced.Round(100*time.Millisecond), moved.Round(100*time.Millisecond))

	testenv.Eventually(t, time.Minute, "hub shows the new member", func() error {
		cur := hubJobSet(t, ns, "p")
		d := condition(cur, fleet.ConditionDispatched)
		st := condition(cur, fleet.ConditionMemberStatusStale)
		if d == nil || d.Status != metav1.ConditionTrue || d.Reason != fleet.ReasonRedispatched || !strings.Contains(d.Message, to) || !strings.Contains(d.Message, "epoch 2") {
			return fmt.Errorf("Dispatched %+v", d)
		}
		if st == nil || st.Status != metav1.ConditionFalse || !strings.Contains(st.Message, to) {
			return fmt.Errorf("MemberStatusStale %+v", st)
		}
		if epochOf(cur) != 2 {
			return fmt.Errorf("epoch %d", epochOf(cur))
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, "epoch-2 copy running on "+to, func() error {
		c := memberJobSet(t, to, ns, "p")
		if c == nil || c.Labels[fleet.EpochLabel] != "2" {
			return fmt.Errorf("copy on %s: %v", to, c)
		}
		running, state, err := copyRunning(ctx, to, ns, "p")
		if err != nil || !running {
			return fmt.Errorf("%s: %s %v", to, state, err)
		}
		return nil
	})
	// While cut off, the old copy stays stopped.
	if c := memberJobSet(t, from, ns, "p"); c == nil || !c.IsSuspended() || c.Labels[fleet.EpochLabel] != "1" {
		t.Errorf("old copy on %s while partitioned: %v", from, c)
	}

	must(t, p.Heal())
	healed = true
	testenv.Eventually(t, time.Minute, "old copy on "+from+" removed after healing", func() error {
		if a := env.members[from].currentAgent(); a.Fenced() {
			return fmt.Errorf("agent of %s still fenced", from)
		}
		if c := memberJobSet(t, from, ns, "p"); c != nil {
			return fmt.Errorf("copy on %s still there (epoch %s, deleting %v)", from, c.Labels[fleet.EpochLabel], c.DeletionTimestamp != nil)
		}
		if jobs := memberJobs(t, from, ns, "p"); len(jobs) > 0 {
			return fmt.Errorf("%d Jobs still on %s", len(jobs), from)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, "only the epoch-2 dispatch is left", func() error {
		ds := dispatchesOf(t, js.UID)
		if len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace(to) || ds[0].Spec.Epoch != 2 {
			var got []string
			for _, d := range ds {
				got = append(got, fmt.Sprintf("%s epoch %d deleting=%v", d.Namespace, d.Spec.Epoch, d.DeletionTimestamp != nil))
			}
			return fmt.Errorf("dispatches %v", got)
		}
		return nil
	})
	if running, state, err := copyRunning(ctx, to, ns, "p"); err != nil || !running {
		t.Errorf("copy on %s after healing: %s %v", to, state, err)
	}

	s.stop()
	w.stop()
	if r := w.resumed(); r != "" {
		t.Errorf("INVARIANT 1 VIOLATED: the fenced copy on %s was resumed: %s", from, r)
	}
	if v := s.violations(); len(v) > 0 {
		t.Errorf("INVARIANT 1 VIOLATED: two copies ran at once in %d of %d samples; first: %s; last: %s", len(v), s.samples(), v[0], v[len(v)-1])
	}
	if s.samples() < 50 {
		t.Errorf("only %d samples taken", s.samples())
	}
	if last, first := s.lastRunning(from), s.firstRunning(to); first.IsZero() || !last.Before(first) {
		t.Errorf("copy on %s last seen running at %s, copy on %s first seen running at %s", from, last.Format(time.StampMilli), to, first.Format(time.StampMilli))
	}
}

// 7b. FAULT: under the default policy a partition never starts a second
// copy, however long it lasts: the member's agent fences its copy, the hub
// waits past its member-lost timeout saying what would confirm the fence,
// and when the link heals the JobSet carries on where it was, same epoch.
func TestPartitionWaitsForConfirmedFence(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "partition-safe")
	create(t, newJobSet(ns, "p", 2, "100m"))
	js, from := waitPlaced(t, ns, "p")
	to := env.other(from)
	testenv.Eventually(t, time.Minute, "copy running on "+from, func() error {
		running, state, err := copyRunning(ctx, from, ns, "p")
		if err != nil || !running {
			return fmt.Errorf("%s: %s %v", from, state, err)
		}
		return nil
	})
	s := startSampler(ns, "p")
	defer s.stop()

	p := env.members[from].proxy
	p.Cut()
	healed := false
	defer func() {
		if !healed {
			_ = p.Heal()
		}
	}()
	testenv.Eventually(t, time.Minute, "copy on "+from+" fenced (suspended)", func() error {
		if c := memberJobSet(t, from, ns, "p"); c == nil || !c.IsSuspended() {
			return fmt.Errorf("copy on %s not suspended", from)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, "hub awaits a confirmed fence", func() error {
		c := condition(hubJobSet(t, ns, "p"), fleet.ConditionMemberStatusStale)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonAwaitingFence ||
			!strings.Contains(c.Message, fleet.OutOfServiceLabel) {
			return fmt.Errorf("MemberStatusStale %+v", c)
		}
		return nil
	})
	// Well past the member-lost timeout: still no second copy.
	testenv.Consistently(t, memberLostTimeout, "no second copy without proof the copy stopped", func() error {
		if cur := hubJobSet(t, ns, "p"); placedOn(cur) != from || epochOf(cur) != 1 {
			return fmt.Errorf("hub moved the JobSet: %+v", cur.Status.Fleet)
		}
		if memberJobSet(t, to, ns, "p") != nil {
			return fmt.Errorf("a copy appeared on %s", to)
		}
		return nil
	}, testenv.Every(200*time.Millisecond))

	must(t, p.Heal())
	healed = true
	testenv.Eventually(t, time.Minute, "copy resumed on "+from, func() error {
		running, state, err := copyRunning(ctx, from, ns, "p")
		if err != nil || !running {
			return fmt.Errorf("%s: %s %v", from, state, err)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, "hub shows it fresh on the same member and epoch", func() error {
		cur := hubJobSet(t, ns, "p")
		st := condition(cur, fleet.ConditionMemberStatusStale)
		if placedOn(cur) != from || epochOf(cur) != 1 || st == nil || st.Status != metav1.ConditionFalse {
			return fmt.Errorf("placed on %q epoch %d, MemberStatusStale %+v", placedOn(cur), epochOf(cur), st)
		}
		return nil
	})
	if ds := dispatchesOf(t, js.UID); len(ds) != 1 {
		t.Errorf("%d dispatches, want 1", len(ds))
	}
	s.stop()
	for _, v := range s.violations() {
		t.Error(v)
	}
}

// 8. FAULT: the hub's controllers crash in the middle of a burst of
// dispatches and start again; every JobSet is dispatched exactly once.
//
// The hub records a placement (status.fleet and Dispatched=True) before it
// creates the dispatch, so that a crash in between cannot hand out the same
// epoch twice. A JobSet's status may therefore say "placed" while its
// dispatch does not exist yet, and after a crash in that window until the
// restarted hub has read its caches and placed it anew (next epoch). What a
// user relies on is what follows, within a bounded time of the restart:
// one dispatch, of the epoch the status names, and the copy on that member.
func TestHubRestartDuringBurst(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "hubrestart")
	const n = 24
	// How long after the restart every JobSet may take to have its one
	// dispatch and its copy: a hub start, cache sync and 24 placements on a
	// loaded machine take seconds; a placement the hub lost never comes.
	const settle = time.Minute

	mon := startDispatchMonitor(ns)
	defer mon.stop()

	created := make(chan error, 1)
	go func() {
		for i := range n {
			if err := env.hub.Client.Create(ctx, newJobSet(ns, fmt.Sprintf("h-%02d", i), 1, "10m")); err != nil {
				created <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		created <- nil
	}()
	// Crash while placements are under way.
	testenv.Eventually(t, time.Minute, "first dispatches", func() error {
		if k := mon.count(); k < 4 {
			return fmt.Errorf("%d dispatched", k)
		}
		return nil
	})
	must(t, env.crashHub())
	t.Logf("hub crashed with %d JobSets dispatched", mon.count())
	time.Sleep(time.Second)
	must(t, env.startHub())
	restarted := time.Now()
	must(t, <-created)

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("h-%02d", i)
	}
	testenv.Eventually(t, settle-time.Since(restarted), "every JobSet's one dispatch and copy after the restart", func() error {
		var missing []string
		for _, name := range names {
			if err := dispatchedOnce(t, ns, name); err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d not yet: %s", len(missing), n, strings.Join(missing, "; "))
		}
		return nil
	}, testenv.Every(250*time.Millisecond))
	t.Logf("all %d dispatched, with their copies, %s after the restart", n, time.Since(restarted).Round(100*time.Millisecond))
	placedAnew := 0
	for _, name := range names {
		js := hubJobSet(t, ns, name)
		// A placement recorded just before the crash, its dispatch not yet
		// created, is placed anew with the next epoch: epochs are never
		// reused, but one may be skipped.
		switch e := epochOf(js); {
		case e == 2:
			placedAnew++
		case e > 2:
			t.Errorf("%s: epoch %d, want 1, or 2 after a crash between recording and creating", name, e)
		}
		if memberJobSet(t, env.other(placedOn(js)), ns, name) != nil {
			t.Errorf("%s: copy on %s too", name, env.other(placedOn(js)))
		}
	}
	t.Logf("%d placed anew (epoch 2): the crash came between recording and creating their dispatch", placedAnew)
	mon.stop()
	for _, v := range mon.violations() {
		t.Error(v)
	}

	// Nothing lost: status still flows for JobSets placed before and after
	// the crash.
	for _, name := range []string{"h-00", fmt.Sprintf("h-%02d", n-1)} {
		_, m := waitPlaced(t, ns, name)
		testenv.Eventually(t, time.Minute, "pod of "+name, func() error {
			if finishPods(t, m, ns, name) == 0 {
				return fmt.Errorf("no pod yet")
			}
			return nil
		})
		testenv.Eventually(t, time.Minute, name+" Completed on the hub", func() error {
			js := hubJobSet(t, ns, name)
			if js.Status.TerminalState != string(jobset.JobSetCompleted) {
				return fmt.Errorf("terminalState %q", js.Status.TerminalState)
			}
			return nil
		})
	}
}

// dispatchedOnce says what is missing, if anything, for the hub JobSet
// ns/name to be where its status says: placed, exactly one dispatch, in
// that member's namespace with the recorded epoch, and the member's copy
// of that epoch.
func dispatchedOnce(t testing.TB, ns, name string) error {
	t.Helper()
	js := hubJobSet(t, ns, name)
	m, epoch := placedOn(js), epochOf(js)
	if c := condition(js, fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue || m == "" {
		return fmt.Errorf("not placed: status.fleet %+v", js.Status.Fleet)
	}
	ds := dispatchesOf(t, js.UID)
	if len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace(m) || ds[0].Spec.Epoch != epoch {
		var have []string
		for _, d := range ds {
			have = append(have, fmt.Sprintf("%s epoch %d", d.Namespace, d.Spec.Epoch))
		}
		return fmt.Errorf("dispatches %v, want one in %s for epoch %d", have, fleet.MemberNamespace(m), epoch)
	}
	c := memberJobSet(t, m, ns, name)
	if c == nil {
		return fmt.Errorf("no copy on %s", m)
	}
	if got, want := c.Labels[fleet.EpochLabel], strconv.FormatInt(epoch, 10); got != want {
		return fmt.Errorf("copy on %s has epoch %q, want %s", m, got, want)
	}
	return nil
}

// 9. FAULT: an agent restart creates no duplicate Jobs.
func TestAgentRestartNoDuplicateJobs(t *testing.T) {
	ns := namespace(t, "agentrestart")
	create(t, newJobSet(ns, "ar", 3, "100m"))
	js, m := waitPlaced(t, ns, "ar")
	testenv.Eventually(t, time.Minute, "three Jobs", func() error {
		if n := len(memberJobs(t, m, ns, "ar")); n != 3 {
			return fmt.Errorf("%d Jobs", n)
		}
		return nil
	})
	uids := func() []string {
		var out []string
		for _, j := range memberJobs(t, m, ns, "ar") {
			out = append(out, j.Name+"="+string(j.UID))
		}
		slices.Sort(out)
		return out
	}
	before := uids()
	copyBefore := memberJobSet(t, m, ns, "ar")

	mem := env.members[m]
	must(t, mem.stopAgent())
	must(t, mem.startAgent())
	restarted := time.Now()
	testenv.Eventually(t, time.Minute, "restarted agent renews", func() error {
		if mem.currentAgent().LastRenewal().Before(restarted) {
			return fmt.Errorf("no renewal yet")
		}
		return nil
	})
	// Let the new controllers reconcile everything, then compare, several
	// times over a few seconds.
	for range 10 {
		time.Sleep(300 * time.Millisecond)
		if after := uids(); !slices.Equal(before, after) {
			t.Fatalf("Jobs changed across an agent restart: before %v, after %v", before, after)
		}
	}
	if c := memberJobSet(t, m, ns, "ar"); c == nil || c.UID != copyBefore.UID {
		t.Errorf("member JobSet replaced across the restart")
	}
	cur := hubJobSet(t, ns, "ar")
	if placedOn(cur) != m || epochOf(cur) != 1 {
		t.Errorf("hub JobSet moved: cluster %q epoch %d", placedOn(cur), epochOf(cur))
	}
	if ds := dispatchesOf(t, js.UID); len(ds) != 1 {
		t.Errorf("%d dispatches", len(ds))
	}
	if memberJobSet(t, env.other(m), ns, "ar") != nil {
		t.Errorf("copy on %s too", env.other(m))
	}
}

// --- samplers ----------------------------------------------------------

// sampler checks both members every ~100ms and records any instant at
// which two copies of one JobSet ran.
type sampler struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}

	mu    sync.Mutex
	bad   []string
	n     int
	first map[string]time.Time
	last  map[string]time.Time
}

func startSampler(ns, name string) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{}), first: map[string]time.Time{}, last: map[string]time.Time{}}
	go func() {
		defer close(s.done)
		ctx := context.Background()
		lastRunning := map[string]bool{}
		for {
			select {
			case <-s.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var running, states []string
			for _, m := range env.names {
				r, state, err := copyRunning(ctx, m, ns, name)
				if err != nil {
					// A member that cannot be read (its apiserver is
					// down) runs what it ran: pods do not stop with it.
					r, state = lastRunning[m], fmt.Sprintf("unreadable (%v), running when last read: %t", err, lastRunning[m])
				}
				lastRunning[m] = r
				states = append(states, m+": "+state)
				if r {
					running = append(running, m)
				}
			}
			now := time.Now()
			s.mu.Lock()
			s.n++
			for _, m := range running {
				if s.first[m].IsZero() {
					s.first[m] = now
				}
				s.last[m] = now
			}
			if len(running) > 1 {
				s.bad = append(s.bad, fmt.Sprintf("%s: two copies of %s/%s running: %s", now.Format(time.StampMilli), ns, name, strings.Join(states, "; ")))
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) stop() {
	s.stopOnce.Do(func() { close(s.quit) })
	<-s.done
}

func (s *sampler) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bad)
}

func (s *sampler) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *sampler) firstRunning(m string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first[m]
}

func (s *sampler) lastRunning(m string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[m]
}

// dispatchMonitor lists the hub's dispatches every ~100ms and records any
// JobSet of ns that ever had two different dispatch objects.
type dispatchMonitor struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}

	mu   sync.Mutex
	seen map[types.UID]map[types.UID]string // origin -> dispatch uid -> where
	bad  []string
}

func startDispatchMonitor(ns string) *dispatchMonitor {
	d := &dispatchMonitor{quit: make(chan struct{}), done: make(chan struct{}), seen: map[types.UID]map[types.UID]string{}}
	go func() {
		defer close(d.done)
		for {
			var list fleet.JobSetDispatchList
			if err := env.hub.Client.List(context.Background(), &list); err == nil {
				d.mu.Lock()
				for _, x := range list.Items {
					if x.Spec.Origin.Namespace != ns {
						continue
					}
					o := x.Spec.Origin.UID
					if d.seen[o] == nil {
						d.seen[o] = map[types.UID]string{}
					}
					if _, ok := d.seen[o][x.UID]; !ok {
						d.seen[o][x.UID] = fmt.Sprintf("%s epoch %d", x.Namespace, x.Spec.Epoch)
						if len(d.seen[o]) > 1 {
							d.bad = append(d.bad, fmt.Sprintf("JobSet %s/%s dispatched twice: %v", ns, x.Spec.Origin.Name, d.seen[o]))
						}
					}
				}
				d.mu.Unlock()
			}
			select {
			case <-d.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return d
}

func (d *dispatchMonitor) stop() {
	d.stopOnce.Do(func() { close(d.quit) })
	<-d.done
}

// count is how many JobSets of the namespace were seen dispatched.
func (d *dispatchMonitor) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

func (d *dispatchMonitor) violations() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.bad)
}

// fenceWatch records which agents were ever fenced while it ran.
type fenceWatch struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	seen     map[string]bool
}

func watchFences() *fenceWatch {
	f := &fenceWatch{quit: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(f.done)
		for {
			for _, m := range env.names {
				if a := env.members[m].currentAgent(); a != nil && a.Fenced() {
					f.mu.Lock()
					f.seen[m] = true
					f.mu.Unlock()
				}
			}
			select {
			case <-f.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return f
}

func (f *fenceWatch) stop() {
	f.stopOnce.Do(func() { close(f.quit) })
	<-f.done
}

func (f *fenceWatch) fenced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for m := range f.seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// resumeWatch watches a member's copy of a JobSet and records the first
// write that resumed it after it had been suspended.
type resumeWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	first  string
}

func watchResume(t *testing.T, member, ns, name string) *resumeWatch {
	t.Helper()
	c, err := client.NewWithWatch(env.members[member].cluster.Config, client.Options{Scheme: env.hub.Client.Scheme()})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	wi, err := c.Watch(ctx, &jobset.JobSetList{}, client.InNamespace(ns))
	must(t, err)
	w := &resumeWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer wi.Stop()
		suspended := map[types.UID]bool{}
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-wi.ResultChan():
				if !ok {
					return
				}
				js, ok := ev.Object.(*jobset.JobSet)
				if !ok || js.Name != name || js.DeletionTimestamp != nil {
					continue
				}
				if js.IsSuspended() {
					suspended[js.UID] = true
					continue
				}
				if suspended[js.UID] {
					w.mu.Lock()
					if w.first == "" {
						w.first = fmt.Sprintf("at %s resourceVersion %s (epoch %s) has spec.suspend=false again",
							time.Now().Format(time.StampMilli), js.ResourceVersion, js.Labels[fleet.EpochLabel])
					}
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

func (w *resumeWatch) stop() {
	w.cancel()
	<-w.done
}

func (w *resumeWatch) resumed() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}
