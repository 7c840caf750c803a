package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/dispatch"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// clearQueue removes the JobSets earlier tests left waiting for a member
// (their hubs are gone), so that a queue test sees only its own.
func clearQueue(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	list := &jobset.JobSetList{}
	if err := hub.Client.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		js := &list.Items[i]
		if js.Status.Fleet != nil && js.Status.Fleet.Cluster != "" {
			continue
		}
		controllerutil.RemoveFinalizer(js, fleet.JobSetFinalizer)
		if err := hub.Client.Update(ctx, js); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		if err := hub.Client.Delete(ctx, js); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
}

// only keeps a test's JobSets on its own members: members of earlier tests
// may still be healthy.
func only(w *jstesting.JobSetWrapper, test string) *jstesting.JobSetWrapper {
	return w.Annotation(fleet.ClusterSelectorAnnotation, "queue-test="+test)
}

func priorityClass(t *testing.T, name string, value int32) string {
	t.Helper()
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	create(t, pc)
	t.Cleanup(func() { _ = hub.Client.Delete(context.Background(), pc) })
	return name
}

func withPriorityClass(js *jobset.JobSet, name string) *jobset.JobSet {
	for i := range js.Spec.ReplicatedJobs {
		js.Spec.ReplicatedJobs[i].Template.Spec.Template.Spec.PriorityClassName = name
	}
	return js
}

// waitsWith waits until the JobSet shows Dispatched=False with reason, and
// returns its message.
func waitsWith(t *testing.T, js *jobset.JobSet, reason string) string {
	t.Helper()
	var msg string
	testenv.Eventually(t, timeout, js.Name+" waiting with "+reason, func() error {
		c := condition(get(t, js), fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Errorf("Dispatched is %+v", c)
		}
		msg = c.Message
		return nil
	})
	return msg
}

// neverDispatched checks for d that the JobSet gets no dispatch anywhere.
func neverDispatched(t *testing.T, js *jobset.JobSet, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ds := allDispatchesOf(t, get(t, js)); len(ds) > 0 {
			t.Fatalf("%s was dispatched to %s, but must wait", js.Name, ds[0].Namespace)
		}
	}
}

// TestQueuePriorityNoOvertake: a waiting higher-priority JobSet is placed
// before an older lower-priority one, and the lower-priority one does not
// take the capacity the other waits for (BestEffortFIFO).
func TestQueuePriorityNoOvertake(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	ns := namespace(t, "queue-priority")
	urgentClass := priorityClass(t, "queue-urgent", 1000)
	m := join(t, "qp-a", "8", map[string]string{"queue-test": "priority"})
	m.report("8", "0") // full: everything waits

	low := only(fleetJobSet(ns, "low", 1, "2"), "priority").Obj()
	create(t, low)
	waitsWith(t, low, fleet.ReasonNoFit)
	urgent := withPriorityClass(only(fleetJobSet(ns, "urgent", 1, "8"), "priority").Obj(), urgentClass)
	create(t, urgent)
	waitsWith(t, urgent, fleet.ReasonNoFit)

	// Room for low, not for urgent: low would overtake urgent for the
	// capacity urgent waits for. It must keep waiting, and say why.
	m.report("8", "4")
	msg := waitsWith(t, low, fleet.ReasonQueued)
	if !strings.Contains(msg, "Queued: 2nd; ") || !strings.Contains(msg, ns+"/urgent") {
		t.Errorf("low's message %q does not give its position and whom it waits for", msg)
	}
	neverDispatched(t, low, 2*time.Second)

	// Room for one of them: the urgent one goes, though low is older.
	m.report("8", "8")
	waitDispatched(t, urgent, "qp-a")
	neverDispatched(t, low, 2*time.Second)
}

// TestQueueStrictFIFO: under StrictFIFO the first JobSet blocks those
// behind it; under BestEffortFIFO a smaller one behind it goes.
func TestQueueStrictFIFO(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread, func(o *hubcomponent.Options) { o.QueueingStrategy = string(dispatch.StrictFIFO) })
	ns := namespace(t, "queue-strict")
	m := join(t, "qs-a", "16", map[string]string{"queue-test": "strict"})
	m.report("16", "6")

	big := only(fleetJobSet(ns, "big", 1, "12"), "strict").Obj()
	create(t, big)
	waitsWith(t, big, fleet.ReasonNoFit)
	small := only(fleetJobSet(ns, "small", 1, "4"), "strict").Obj()
	create(t, small)
	msg := waitsWith(t, small, fleet.ReasonQueued)
	if !strings.Contains(msg, "waits behind "+ns+"/big") {
		t.Errorf("small's message %q does not say it waits behind big", msg)
	}
	neverDispatched(t, small, 2*time.Second)

	m.report("16", "16")
	waitDispatched(t, big, "qs-a")
	waitDispatched(t, small, "qs-a")
}

func TestQueueBestEffortFIFO(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread) // BestEffortFIFO by default
	ns := namespace(t, "queue-besteffort")
	m := join(t, "qb-a", "16", map[string]string{"queue-test": "besteffort"})
	m.report("16", "6")

	big := only(fleetJobSet(ns, "big", 1, "12"), "besteffort").Obj()
	create(t, big)
	waitsWith(t, big, fleet.ReasonNoFit)
	small := only(fleetJobSet(ns, "small", 1, "4"), "besteffort").Obj()
	create(t, small)
	waitDispatched(t, small, "qb-a")
	if c := condition(get(t, big), fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("big: Dispatched %+v", c)
	}
}

// TestQueueMovesWhenAJobSetFinishes: the capacity a finished JobSet held
// goes to the JobSet waiting for it, though the member reports nothing
// new (its report may lag; the hub's commitments are what changed).
func TestQueueMovesWhenAJobSetFinishes(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	ns := namespace(t, "queue-finish")
	m := join(t, "qf-a", "8", map[string]string{"queue-test": "finish"})
	m.report("8", "8")

	first := only(fleetJobSet(ns, "first", 1, "8"), "finish").Obj()
	create(t, first)
	d := waitDispatched(t, first, "qf-a")
	second := only(fleetJobSet(ns, "second", 1, "8"), "finish").Obj()
	create(t, second)
	waitsWith(t, second, fleet.ReasonNoFit)

	reportStatus(t, d, func(st *fleet.JobSetDispatchStatus) {
		st.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
	})
	waitDispatched(t, second, "qf-a")
}

// TestStartDeadlineWithdrawsSafely: a JobSet none of whose Pods starts
// within its start deadline is withdrawn and runs on the other member,
// and its second dispatch is created only after the agent confirmed the
// first copy deleted; a 100 ms sampler never sees two live copies.
func TestStartDeadlineWithdrawsSafely(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	ns := namespace(t, "start-deadline")
	join(t, "sd-a", "8", map[string]string{"queue-test": "deadline"})
	join(t, "sd-b", "8", map[string]string{"queue-test": "deadline"})

	js := only(fleetJobSet(ns, "stuck", 2, "1"), "deadline").Annotation(fleet.StartTimeoutAnnotation, "2s").Obj()
	create(t, js)
	first := waitDispatched(t, js, "sd-a") // equal members: by name
	// The member took it, but nothing can start: Pods stay Pending.
	reportStatus(t, first, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "workers", Active: 1}}
	})

	// The sampler: a copy is live from its dispatch's creation until its
	// agent reports it deleted.
	var (
		mu         sync.Mutex
		violations []string
		samples    int
		confirmed  time.Time
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			list := &fleet.JobSetDispatchList{}
			if err := hub.Client.List(ctx, list, client.MatchingLabels{fleet.OriginUIDLabel: string(js.UID)}); err != nil {
				continue
			}
			var live []string
			for _, d := range list.Items {
				if !meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted) {
					live = append(live, d.Namespace)
				}
			}
			mu.Lock()
			samples++
			if len(live) > 1 {
				violations = append(violations, strings.Join(live, "+"))
			}
			mu.Unlock()
		}
	}()

	// The agent of sd-a: sees its dispatch deleted, takes 2 s to delete
	// the copy, then confirms.
	testenv.Eventually(t, timeout, "the hub withdrawing the dispatch on sd-a", func() error {
		if d := dispatchOf(t, js, "sd-a"); d == nil || d.DeletionTimestamp == nil {
			return fmt.Errorf("dispatch on sd-a not being deleted")
		}
		return nil
	})
	// The hub deletes the dispatch first and writes the status after it,
	// in the same reconcile: wait for the status rather than race it.
	var cur *jobset.JobSet
	testenv.Eventually(t, timeout, "the JobSet saying it is withdrawn", func() error {
		cur = get(t, js)
		if c := condition(cur, fleet.ConditionDispatched); c == nil || c.Reason != fleet.ReasonStartTimeout || !strings.Contains(c.Message, "sd-a") {
			return fmt.Errorf("Dispatched while withdrawing: %+v", c)
		}
		return nil
	})
	// Events are recorded asynchronously, after the status.
	testenv.Eventually(t, timeout, "a StartTimeout event", func() error { return hasEvent(t, cur, fleet.ReasonStartTimeout) })
	time.Sleep(2 * time.Second)
	if d := dispatchOf(t, js, "sd-b"); d != nil {
		t.Fatalf("a dispatch on sd-b was created before sd-a confirmed its copy deleted")
	}
	mu.Lock()
	confirmed = time.Now()
	mu.Unlock()
	reportDeleted(t, first)

	second := waitDispatched(t, js, "sd-b")
	if second.CreationTimestamp.Time.Before(confirmed.Truncate(time.Second)) {
		t.Errorf("the second dispatch was created at %s, before the first was confirmed deleted at %s", second.CreationTimestamp, confirmed)
	}
	testenv.Eventually(t, timeout, "placed again on sd-b, not as a restart", func() error {
		cur := get(t, js)
		fs := placed(cur)
		c := condition(cur, fleet.ConditionDispatched)
		switch {
		case fs.Cluster != "sd-b" || c == nil || c.Status != metav1.ConditionTrue:
			return fmt.Errorf("status.fleet %+v, Dispatched %+v", fs, c)
		case len(fs.Withdrawals) != 1 || fs.Withdrawals[0].Cluster != "sd-a":
			return fmt.Errorf("withdrawals %+v", fs.Withdrawals)
		case cur.Status.Restarts != 0 || fs.RestartsCarried != 0 || fs.RestartsCountTowardsMaxCarried != 0:
			return fmt.Errorf("a withdrawal counted as a restart: restarts %d, %+v", cur.Status.Restarts, fs)
		}
		return nil
	})
	cancel()
	<-sampled
	if samples < 10 {
		t.Errorf("the sampler read the dispatches %d times: it proves nothing", samples)
	}
	if len(violations) > 0 {
		t.Errorf("two live copies seen: %v", violations)
	}
}

// TestIdleFleetWritesNothing: with 200 JobSets waiting and members that
// keep reporting (heartbeats, and free amounts that wobble without ever
// letting anything fit), the hub writes no JobSet and no
// PlacementDecision. The window is 15 s, not 60: members report about
// every 300 ms here (every 30 s in a fleet), so 15 s holds 50 reports of
// each member, each of which rewrote every waiting JobSet before.
func TestIdleFleetWritesNothing(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	ns := namespace(t, "idle-fleet")
	a, b := join(t, "idle-a", "4", map[string]string{"queue-test": "idle"}), join(t, "idle-b", "4", map[string]string{"queue-test": "idle"})
	const pending = 200
	for i := range pending {
		create(t, only(fleetJobSet(ns, fmt.Sprintf("js-%03d", i), 1, "100"), "idle").Obj())
	}
	testenv.Eventually(t, 2*timeout, "every JobSet waiting", func() error {
		list := &jobset.JobSetList{}
		if err := hub.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return err
		}
		n := 0
		for i := range list.Items {
			if c := condition(&list.Items[i], fleet.ConditionDispatched); c != nil && c.Status == metav1.ConditionFalse {
				n++
			}
		}
		if n != pending {
			return fmt.Errorf("%d of %d waiting", n, pending)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // let the last writes land before counting

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc, err := client.NewWithWatch(hub.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var writes sync.Map
	count := func(list client.ObjectList) {
		w, err := wc.Watch(ctx, list, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Modified:
					o := ev.Object.(client.Object)
					writes.Store(fmt.Sprintf("%T %s %s", o, o.GetName(), o.GetResourceVersion()), true)
				case watch.Error:
					// A broken watch must not read as silence.
					writes.Store(fmt.Sprintf("watch error: %v", ev.Object), true)
				}
			}
		}()
	}
	count(&jobset.JobSetList{})
	count(&clusterinventory.PlacementDecisionList{})

	// Members keep reporting: the free amount wobbles (other Pods come and
	// go) but nothing of 100 cpu ever fits.
	end := time.Now().Add(15 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		free := []string{"4", "3900m", "3500m", "4"}[i%4]
		a.report("4", free)
		b.report("4", free)
		time.Sleep(300 * time.Millisecond)
	}
	n := 0
	var sample []string
	writes.Range(func(k, _ any) bool {
		if n++; len(sample) < 5 {
			sample = append(sample, k.(string))
		}
		return true
	})
	if n > 0 {
		t.Errorf("an idle fleet wrote %d times in 15 s, e.g. %v", n, sample)
	}
	// The watches see writes: one by the test is counted.
	list := &jobset.JobSetList{}
	if err := hub.Client.List(ctx, list, client.InNamespace(ns)); err != nil || len(list.Items) == 0 {
		t.Fatalf("listing the waiting JobSets: %d, %v", len(list.Items), err)
	}
	probe := &list.Items[0]
	patch := client.MergeFrom(probe.DeepCopy())
	probe.Annotations = map[string]string{"e2e.jobset-fleet.io/probe": "1"}
	if err := hub.Client.Patch(ctx, probe, patch); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the watch seeing the test's own write", func() error {
		seen := false
		writes.Range(func(k, _ any) bool {
			seen = seen || strings.Contains(k.(string), " "+probe.Name+" ")
			return !seen
		})
		if !seen {
			return fmt.Errorf("not seen")
		}
		return nil
	})
}

// TestPlacementFromALongQueueRewritesFew: when capacity frees and the head
// of a queue of 40 is placed, every JobSet behind it moves up one place,
// but only those whose condition then says something else are written:
// the exact places at the head and the one crossing into the first 10.
// (Stating exact places, the hub rewrote all 39.)
func TestPlacementFromALongQueueRewritesFew(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	ns := namespace(t, "queue-long")
	m := join(t, "ql-a", "8", map[string]string{"queue-test": "long"})
	m.report("8", "8")
	running := only(fleetJobSet(ns, "running", 1, "8"), "long").Obj()
	create(t, running)
	d := waitDispatched(t, running, "ql-a")

	const pending = 40
	queued := make([]*jobset.JobSet, pending)
	for i := range queued {
		queued[i] = only(fleetJobSet(ns, fmt.Sprintf("js-%02d", i), 1, "8"), "long").Obj()
		create(t, queued[i])
		time.Sleep(5 * time.Millisecond) // distinct submission order
	}
	for i, js := range queued {
		if want := map[int]string{0: "Queued: 1st; ", 4: "Queued: within the first 10; ", 39: "Queued: within the first 100; "}[i]; want != "" {
			testenv.Eventually(t, timeout, js.Name+" stating its place", func() error {
				if c := condition(get(t, js), fleet.ConditionDispatched); c == nil || !strings.HasPrefix(c.Message, want) {
					return fmt.Errorf("Dispatched is %+v, want %q", c, want)
				}
				return nil
			})
		}
	}
	waitsWith(t, queued[pending-1], fleet.ReasonNoFit)
	time.Sleep(2 * time.Second) // let the last writes land before counting

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc, err := client.NewWithWatch(hub.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &jobset.JobSetList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	written := map[string]bool{}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if o, ok := ev.Object.(client.Object); ok && ev.Type == watch.Modified {
				mu.Lock()
				written[o.GetName()] = true
				mu.Unlock()
			}
		}
	}()

	reportStatus(t, d, func(st *fleet.JobSetDispatchStatus) {
		st.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
	})
	waitDispatched(t, queued[0], "ql-a")
	testenv.Eventually(t, timeout, "the new head stating its place", func() error {
		if c := condition(get(t, queued[1]), fleet.ConditionDispatched); c == nil || !strings.HasPrefix(c.Message, "Queued: 1st; ") {
			return fmt.Errorf("Dispatched is %+v", c)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // writes the hub would still make land

	mu.Lock()
	defer mu.Unlock()
	var behind []string
	for _, js := range queued[1:] {
		if written[js.Name] {
			behind = append(behind, js.Name)
		}
	}
	// 2nd→1st, 3rd→2nd, 4th→3rd, 11th→within the first 10.
	if want := []string{"js-01", "js-02", "js-03", "js-10"}; strings.Join(behind, ",") != strings.Join(want, ",") {
		t.Errorf("the placement of the head rewrote %v of the JobSets behind it, want %v", behind, want)
	}
	if c := condition(get(t, queued[pending-1]), fleet.ConditionDispatched); c == nil || !strings.HasPrefix(c.Message, "Queued: within the first 100; ") {
		t.Errorf("the last JobSet's condition is %+v", c)
	}
}
