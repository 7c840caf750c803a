package dispatch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/dispatch"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// TestSubmitDispatchAndMirror: a JobSet lands on the member with the most
// room, as epoch 1, and the user sees the member's status on it.
func TestSubmitDispatchAndMirror(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "submit"}
	join(t, "submit-big", "8", sel)
	join(t, "submit-small", "4", sel)
	ns := namespace(t, "team-submit")
	js := fleetJobSet(ns, "train", 2, "1").
		Annotation(fleet.ClusterSelectorAnnotation, "test=submit").
		Label("app", "train").
		Obj()
	create(t, js)

	d := waitDispatched(t, js, "submit-big")
	type dispatched struct {
		Epoch               int64
		OriginUID           types.UID
		OriginUIDLabel      string
		TemplateManagedBy   *string
		TemplateAppLabel    string
		TemplateAnnotations int
	}
	want := dispatched{Epoch: 1, OriginUID: js.UID, OriginUIDLabel: string(js.UID), TemplateAppLabel: "train"}
	got := dispatched{Epoch: d.Spec.Epoch, OriginUID: d.Spec.Origin.UID, OriginUIDLabel: d.Labels[fleet.OriginUIDLabel],
		TemplateManagedBy: d.Spec.JobSet.Spec.ManagedBy, TemplateAppLabel: d.Spec.JobSet.Labels["app"], TemplateAnnotations: len(d.Spec.JobSet.Annotations)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dispatch: the template must carry the user's labels, no fleet annotations and no managedBy (-want +got):\n%s", diff)
	}
	if dispatchOf(t, js, "submit-small") != nil {
		t.Error("a second dispatch was created")
	}
	testenv.Eventually(t, timeout, "Dispatched condition, placement in status", func() error {
		cur := get(t, js)
		c := condition(cur, fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "submit-big") {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		if diff := cmp.Diff(jobset.FleetStatus{Cluster: "submit-big", Epoch: 1}, placed(cur), ignoreStartBookkeeping); diff != "" {
			return fmt.Errorf("status.fleet (-want +got):\n%s", diff)
		}
		if len(cur.Labels) != 1 || len(cur.Annotations) != 1 {
			return fmt.Errorf("the hub must keep its bookkeeping out of metadata: labels %v annotations %v", cur.Labels, cur.Annotations)
		}
		if len(cur.Finalizers) != 1 || cur.Finalizers[0] != fleet.JobSetFinalizer {
			return fmt.Errorf("finalizers %v", cur.Finalizers)
		}
		return nil
	})

	// The status is recorded before the dispatch and the decision exist.
	pd := &clusterinventory.PlacementDecision{}
	testenv.Eventually(t, timeout, "PlacementDecision", func() error {
		return hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), pd)
	})
	if len(pd.Decisions) != 1 || pd.Decisions[0].ClusterProfileRef.Name != "submit-big" || !strings.Contains(pd.Decisions[0].Reason, "chosen by spread") ||
		!strings.Contains(pd.Annotations[placement.ReasonsAnnotation], "submit-small: fits") || pd.OwnerReferences[0].UID != js.UID {
		t.Errorf("PlacementDecision = %+v", pd)
	}

	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus = jobset.JobSetStatus{Restarts: 1, ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "workers", Active: 1}}}
	})
	testenv.Eventually(t, timeout, "status mirrored", func() error {
		cur := get(t, js)
		if cur.Status.Restarts != 1 || len(cur.Status.ReplicatedJobsStatus) != 1 || cur.Status.ReplicatedJobsStatus[0].Active != 1 {
			return fmt.Errorf("status %+v", cur.Status)
		}
		if c := condition(cur, fleet.ConditionMemberStatusStale); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		return nil
	})
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
		s.JobSetStatus.ReplicatedJobsStatus[0] = jobset.ReplicatedJobStatus{Name: "workers", Succeeded: 1}
		s.JobSetStatus.Conditions = []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue, Reason: "AllJobsCompleted", LastTransitionTime: metav1.Now()}}
	})
	testenv.Eventually(t, timeout, "completion mirrored", func() error {
		cur := get(t, js)
		c := condition(cur, string(jobset.JobSetCompleted))
		if cur.Status.TerminalState != "Completed" || c == nil || c.Status != metav1.ConditionTrue || condition(cur, fleet.ConditionDispatched) == nil {
			return fmt.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	// The first placement has no event (its condition says it); the result has.
	testenv.Eventually(t, timeout, "events", func() error { return hasEvent(t, js, string(jobset.JobSetCompleted)) })
}

// TestNoFitThenCapacity: a JobSet too big for every member stays pending and
// says why per cluster; it is dispatched as soon as a member reports room.
func TestNoFitThenCapacity(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "nofit"}
	small := join(t, "nofit-a", "2", sel)
	join(t, "nofit-b", "3", sel)
	ns := namespace(t, "team-nofit")
	js := fleetJobSet(ns, "big", 4, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=nofit").Obj()
	create(t, js)

	testenv.Eventually(t, timeout, "NoFit condition", func() error {
		c := condition(get(t, js), fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonNoFit ||
			!strings.Contains(c.Message, "nofit-a: insufficient resources: needs cpu 4, 2 free") ||
			!strings.Contains(c.Message, "nofit-b: insufficient resources: needs cpu 4, 3 free") {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		return nil
	})
	testenv.Consistently(t, time.Second, "no dispatch while nothing fits", func() error {
		if n := len(allDispatchesOf(t, js)); n != 0 {
			return fmt.Errorf("%d dispatches", n)
		}
		return nil
	})
	pd := &clusterinventory.PlacementDecision{}
	if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), pd); err != nil || len(pd.Decisions) != 0 ||
		!strings.Contains(pd.Annotations[placement.ReasonsAnnotation], "needs cpu 4") {
		t.Errorf("pending PlacementDecision = %+v, %v", pd, err)
	}

	small.report("16", "16")
	waitDispatched(t, js, "nofit-a")
	testenv.Eventually(t, timeout, "Dispatched=True", func() error {
		if c := condition(get(t, js), fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		return hasEvent(t, js, fleet.ReasonNoFit)
	})
}

// TestSelectorAndPin: the selector and the pin override capacity.
func TestSelectorAndPin(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "sel-eu", "100", map[string]string{"test": "sel", "region": "eu"})
	join(t, "sel-us", "4", map[string]string{"test": "sel", "region": "us"})
	ns := namespace(t, "team-sel")
	us := fleetJobSet(ns, "to-us", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=sel,region in (us)").Obj()
	pinned := fleetJobSet(ns, "pinned", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "sel-us").Obj()
	free := fleetJobSet(ns, "free", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=sel").Obj()
	for _, js := range []*jobset.JobSet{us, pinned, free} {
		create(t, js)
	}
	waitDispatched(t, us, "sel-us")
	waitDispatched(t, pinned, "sel-us")
	waitDispatched(t, free, "sel-eu")
	// The dispatch is created before the JobSet's status and its
	// PlacementDecision are written: wait for those too.
	testenv.Eventually(t, timeout, "Dispatched=True and the pinned PlacementDecision", func() error {
		if c := condition(get(t, us), fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		pd := &clusterinventory.PlacementDecision{}
		if err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(pinned), pd); err != nil {
			return err
		}
		if !strings.Contains(pd.Annotations[placement.ReasonsAnnotation], `sel-eu: not the pinned cluster "sel-us"`) {
			return fmt.Errorf("pinned PlacementDecision reasons %q", pd.Annotations[placement.ReasonsAnnotation])
		}
		return nil
	})
}

// TestSuspendResumePropagate: spec changes reach the dispatch.
func TestSuspendResumePropagate(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "susp", "8", map[string]string{"test": "susp"})
	ns := namespace(t, "team-susp")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "susp").Obj()
	create(t, js)
	waitDispatched(t, js, "susp")

	update := func(f func(*jobset.JobSet)) {
		testenv.Eventually(t, timeout, "updating the JobSet", func() error {
			cur := get(t, js)
			f(cur)
			return hub.Client.Update(context.Background(), cur)
		})
	}
	update(func(j *jobset.JobSet) { j.Spec.Suspend = ptr.To(true) })
	testenv.Eventually(t, timeout, "suspend propagated", func() error {
		if d := dispatchOf(t, js, "susp"); !ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
			return fmt.Errorf("dispatch suspend = %v", d.Spec.JobSet.Spec.Suspend)
		}
		return nil
	})
	// While suspended, a queueing system may change the pod template.
	update(func(j *jobset.JobSet) {
		tpl := &j.Spec.ReplicatedJobs[0].Template.Spec.Template
		tpl.Labels = map[string]string{"kueue.x-k8s.io/queue": "gpu"}
		tpl.Spec.NodeSelector = map[string]string{"pool": "a100"}
	})
	update(func(j *jobset.JobSet) { j.Spec.Suspend = ptr.To(false) })
	testenv.Eventually(t, timeout, "resume and template change propagated", func() error {
		d := dispatchOf(t, js, "susp")
		tpl := d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template
		if ptr.Deref(d.Spec.JobSet.Spec.Suspend, true) || tpl.Labels["kueue.x-k8s.io/queue"] != "gpu" || tpl.Spec.NodeSelector["pool"] != "a100" {
			return fmt.Errorf("dispatch spec %+v", d.Spec.JobSet.Spec)
		}
		if d.Spec.Epoch != 1 {
			return fmt.Errorf("a spec change must not change the epoch: %d", d.Spec.Epoch)
		}
		return nil
	})
	testenv.Eventually(t, timeout, "events", func() error { return hasEvent(t, js, "Resuming") })
}

// TestDeleteWaitsForAgent: deleting a JobSet deletes its dispatch and keeps
// the JobSet until the agent reports its copy deleted.
func TestDeleteWaitsForAgent(t *testing.T) {
	startHub(t, placement.Spread)
	join(t, "del", "8", map[string]string{"test": "del"})
	ns := namespace(t, "team-del")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "del").Obj()
	create(t, js)
	d := waitDispatched(t, js, "del")
	testenv.Eventually(t, timeout, "finalizer", func() error {
		if len(get(t, js).Finalizers) == 0 {
			return fmt.Errorf("no finalizer yet")
		}
		return nil
	})

	if err := hub.Client.Delete(context.Background(), get(t, js)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, timeout, "dispatch being deleted", func() error {
		if cur := dispatchOf(t, js, "del"); cur == nil || cur.DeletionTimestamp == nil {
			return fmt.Errorf("dispatch %+v", cur)
		}
		return nil
	})
	// Longer than nothing, shorter than the member-lost timeout: the hub
	// must wait for the agent, not give up.
	testenv.Consistently(t, 2*time.Second, "JobSet kept while the member copy may exist", func() error {
		cur := &jobset.JobSet{}
		return hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), cur)
	})
	reportDeleted(t, d)
	testenv.Eventually(t, timeout, "JobSet and dispatch gone", func() error {
		err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), &jobset.JobSet{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("JobSet still there (%v)", err)
		}
		if cur := dispatchOf(t, js, "del"); cur != nil {
			return fmt.Errorf("dispatch still there: finalizers %v", cur.Finalizers)
		}
		return nil
	})
}

// TestDeleteWaitsForConfirmedFence: deleting a JobSet whose member went
// silent waits, saying why and what confirms it, until an operator marks
// the member out of service.
func TestDeleteWaitsForConfirmedFence(t *testing.T) {
	startHub(t, placement.Spread)
	a := join(t, "dellost", "8", map[string]string{"test": "dellost"})
	ns := namespace(t, "team-dellost")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "dellost").Obj()
	create(t, js)
	waitDispatched(t, js, "dellost")
	testenv.Eventually(t, timeout, "finalizer", func() error {
		if len(get(t, js).Finalizers) == 0 {
			return fmt.Errorf("no finalizer yet")
		}
		return nil
	})
	a.stop()
	if err := hub.Client.Delete(context.Background(), get(t, js)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, timeout, "AwaitingFence while the silent member may still run the copy", func() error {
		c := condition(get(t, js), fleet.ConditionMemberStatusStale)
		if c == nil || c.Reason != fleet.ReasonAwaitingFence || !strings.Contains(c.Message, "kubectl label clusterprofile -n fleet-system dellost fleet.jobset.x-k8s.io/out-of-service=true") {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		return nil
	})
	testenv.Consistently(t, lostTimeout, "JobSet kept past the member-lost timeout", func() error {
		return hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), &jobset.JobSet{})
	})
	markOutOfService(t, "dellost")
	testenv.Eventually(t, timeout, "JobSet released once the member is confirmed out of service", func() error {
		err := hub.Client.Get(context.Background(), client.ObjectKeyFromObject(js), &jobset.JobSet{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("JobSet still there (%v)", err)
		}
		return nil
	})
}

// TestMemberLostAwaitsFence: when its member goes silent the JobSet shows
// stale status and waits — past the member-lost timeout — for proof that
// its copy stopped; once an operator confirms, it moves to the other member
// with a new epoch, the move counted as a restart against maxRestarts.
func TestMemberLostAwaitsFence(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "lost"}
	first := join(t, "lost-a", "16", sel)
	join(t, "lost-b", "8", sel)
	ns := namespace(t, "team-lost")
	js := fleetJobSet(ns, "train", 2, "1").
		Annotation(fleet.ClusterSelectorAnnotation, "test=lost").
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 5}).
		Obj()
	create(t, js)
	d := waitDispatched(t, js, "lost-a")
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus = jobset.JobSetStatus{Restarts: 2, RestartsCountTowardsMax: 2, ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "workers", Active: 1}}}
	})
	testenv.Eventually(t, timeout, "restarts mirrored", func() error {
		if r := get(t, js).Status.Restarts; r != 2 {
			return fmt.Errorf("restarts %d", r)
		}
		return nil
	})

	first.stop()
	testenv.Eventually(t, timeout, "AwaitingFence", func() error {
		c := condition(get(t, js), fleet.ConditionMemberStatusStale)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonAwaitingFence {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		return hasEvent(t, js, fleet.ReasonAwaitingFence)
	})
	testenv.Consistently(t, 2*lostTimeout, "no second copy without proof the first stopped", func() error {
		if d := dispatchOf(t, js, "lost-b"); d != nil {
			return fmt.Errorf("dispatched to lost-b while lost-a may still run it")
		}
		if cur := dispatchOf(t, js, "lost-a"); cur == nil || cur.DeletionTimestamp != nil {
			return fmt.Errorf("the copy on lost-a must be left alone while waiting: %+v", cur)
		}
		return nil
	})
	expectSeries(t, "the lost member awaiting fence", map[string]float64{
		`jobset_fleet_hub_member_state{cluster="lost-a",state="awaiting_fence"}`: 1,
		`jobset_fleet_hub_member_state{cluster="lost-a",state="lost"}`:           0,
		`jobset_fleet_hub_awaiting_fence_jobsets{cluster="lost-a"}`:              1,
		`jobset_fleet_hub_awaiting_fence_jobsets{cluster="lost-b"}`:              0,
	})

	markOutOfService(t, "lost-a")
	d2 := waitDispatched(t, js, "lost-b")
	expectSeries(t, "the member out of service, nothing awaiting fence", map[string]float64{
		`jobset_fleet_hub_member_state{cluster="lost-a",state="out_of_service"}`: 1,
		`jobset_fleet_hub_awaiting_fence_jobsets{cluster="lost-a"}`:              0,
	})
	if d2.Spec.Epoch != 2 {
		t.Errorf("epoch = %d, want 2", d2.Spec.Epoch)
	}
	if mr := d2.Spec.JobSet.Spec.FailurePolicy.MaxRestarts; mr != 2 {
		t.Errorf("maxRestarts on the new member = %d, want 5 - (2 restarts + 1 move) = 2", mr)
	}
	testenv.Eventually(t, timeout, "JobSet moved, restarts carried, old dispatch released", func() error {
		cur := get(t, js)
		if diff := cmp.Diff(jobset.FleetStatus{Cluster: "lost-b", Epoch: 2, RestartsCarried: 3, RestartsCountTowardsMaxCarried: 3}, placed(cur), ignoreStartBookkeeping); diff != "" {
			return fmt.Errorf("status.fleet (-want +got):\n%s", diff)
		}
		if c := condition(cur, fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonRedispatched {
			return fmt.Errorf("Dispatched = %+v", c)
		}
		if c := condition(cur, fleet.ConditionMemberStatusStale); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("MemberStatusStale = %+v", c)
		}
		if old := dispatchOf(t, js, "lost-a"); old != nil && controllerutil.ContainsFinalizer(old, fleet.DispatchFinalizer) {
			return fmt.Errorf("dispatch on the lost member not released: %v", old.Finalizers)
		}
		return nil
	})
	reportStatus(t, d2, func(s *fleet.JobSetDispatchStatus) {
		s.JobSetStatus = jobset.JobSetStatus{Restarts: 1, RestartsCountTowardsMax: 1}
	})
	testenv.Eventually(t, timeout, "restarts add up across members", func() error {
		if s := get(t, js).Status; s.Restarts != 4 || s.RestartsCountTowardsMax != 4 {
			return fmt.Errorf("restarts %d towards max %d, want 4 and 4", s.Restarts, s.RestartsCountTowardsMax)
		}
		return nil
	})
}

// TestMemberLostAtLeastOnce: a JobSet that opts into at-least-once
// failover moves once its member counts as lost, without proof.
func TestMemberLostAtLeastOnce(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "alo"}
	first := join(t, "alo-a", "16", sel)
	join(t, "alo-b", "8", sel)
	ns := namespace(t, "team-alo")
	js := fleetJobSet(ns, "train", 1, "1").
		Annotation(fleet.ClusterSelectorAnnotation, "test=alo").
		Annotation(fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce).
		FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 1}).
		Obj()
	create(t, js)
	waitDispatched(t, js, "alo-a")
	lostAt := time.Now()
	first.stop()
	d2 := waitDispatched(t, js, "alo-b")
	// Silence counts from the last renewal, at most renewEvery before stop.
	if since := time.Since(lostAt); since < lostTimeout-renewEvery {
		t.Errorf("re-dispatched %s after the member went silent, before the %s member-lost timeout", since, lostTimeout)
	}
	if d2.Spec.Epoch != 2 || d2.Spec.JobSet.Spec.FailurePolicy.MaxRestarts != 0 {
		t.Errorf("epoch %d maxRestarts %d, want 2 and 0", d2.Spec.Epoch, d2.Spec.JobSet.Spec.FailurePolicy.MaxRestarts)
	}
}

// TestMoveBeyondMaxRestartsFails: a move is a restart; one more than
// failurePolicy.maxRestarts allows fails the JobSet instead.
func TestMoveBeyondMaxRestartsFails(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "maxr"}
	first := join(t, "maxr-a", "16", sel)
	join(t, "maxr-b", "8", sel)
	ns := namespace(t, "team-maxr")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=maxr").Obj()
	create(t, js)
	waitDispatched(t, js, "maxr-a")
	first.stop()
	markOutOfService(t, "maxr-a")
	testenv.Eventually(t, timeout, "JobSet failed", func() error {
		cur := get(t, js)
		c := condition(cur, string(jobset.JobSetFailed))
		if cur.Status.TerminalState != "Failed" || c == nil || !strings.Contains(c.Message, "more than failurePolicy.maxRestarts (0)") {
			return fmt.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	if d := dispatchOf(t, js, "maxr-b"); d != nil {
		t.Error("a JobSet out of restarts must not move")
	}
}

// TestMemberLostFail: on-member-lost=Fail fails the JobSet instead.
func TestMemberLostFail(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "lostfail"}
	first := join(t, "lostfail-a", "16", sel)
	join(t, "lostfail-b", "8", sel)
	ns := namespace(t, "team-lostfail")
	js := fleetJobSet(ns, "train", 1, "1").
		Annotation(fleet.ClusterSelectorAnnotation, "test=lostfail").
		Annotation(fleet.OnMemberLostAnnotation, fleet.OnMemberLostFail).
		Obj()
	create(t, js)
	waitDispatched(t, js, "lostfail-a")
	first.stop()
	testenv.Eventually(t, timeout, "JobSet failed", func() error {
		cur := get(t, js)
		c := condition(cur, string(jobset.JobSetFailed))
		if cur.Status.TerminalState != "Failed" || c == nil || c.Reason != fleet.ReasonMemberLost {
			return fmt.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	if d := dispatchOf(t, js, "lostfail-b"); d != nil {
		t.Error("a failed JobSet must not be re-dispatched")
	}
}

// TestHubRestartMidDispatch: restarting the hub never creates a second
// dispatch, and a decision recorded before a crash is carried out as is.
func TestHubRestartMidDispatch(t *testing.T) {
	stop := startHub(t, placement.Spread)
	sel := map[string]string{"test": "restart"}
	join(t, "restart-a", "16", sel)
	join(t, "restart-b", "16", sel)
	ns := namespace(t, "team-restart")
	js := fleetJobSet(ns, "train", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=restart").Obj()
	create(t, js)
	testenv.Eventually(t, timeout, "dispatch", func() error {
		if n := len(allDispatchesOf(t, js)); n != 1 {
			return fmt.Errorf("%d dispatches", n)
		}
		return nil
	})
	stop()

	// Crashed after recording a decision for restart-b, before creating it.
	crashed := fleetJobSet(ns, "crashed", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=restart").Obj()
	create(t, crashed)
	crashed.Status.Fleet = &jobset.FleetStatus{Cluster: "restart-b", Epoch: 3}
	if err := hub.Client.Status().Update(context.Background(), crashed); err != nil {
		t.Fatal(err)
	}
	// A dispatch whose JobSet has no record of it (made by an older hub, or
	// the status was lost): adopt it.
	adopted := fleetJobSet(ns, "adopted", 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=restart").Obj()
	create(t, adopted)
	create(t, dispatch.NewDispatch(adopted, jobset.FleetStatus{Cluster: "restart-b", Epoch: 1}, nil))

	startHub(t, placement.Spread)
	testenv.Eventually(t, timeout, "crashed placement carried out with a new epoch", func() error {
		ds := allDispatchesOf(t, crashed)
		if len(ds) != 1 || ds[0].Spec.Epoch != 4 {
			return fmt.Errorf("dispatches %d, want 1 with epoch 4 (3 was given out)", len(ds))
		}
		return nil
	})
	testenv.Eventually(t, timeout, "dispatch adopted", func() error {
		if diff := cmp.Diff(jobset.FleetStatus{Cluster: "restart-b", Epoch: 1}, placed(get(t, adopted)), ignoreStartBookkeeping); diff != "" {
			return fmt.Errorf("status.fleet (-want +got):\n%s", diff)
		}
		return hasEvent(t, adopted, fleet.ReasonAdopted)
	})
	testenv.Consistently(t, 2*time.Second, "exactly one dispatch each", func() error {
		for _, j := range []*jobset.JobSet{js, crashed, adopted} {
			if ds := allDispatchesOf(t, j); len(ds) != 1 {
				return fmt.Errorf("%s: %d dispatches", j.Name, len(ds))
			}
		}
		if e := allDispatchesOf(t, js)[0].Spec.Epoch; e != 1 {
			return fmt.Errorf("epoch %d after restart, want 1", e)
		}
		return nil
	})
}

// TestBurstSpreadsByCapacity: 50 JobSets submitted at once spread in
// proportion to capacity, because the hub counts its own commitments before
// members report them.
func TestBurstSpreadsByCapacity(t *testing.T) {
	startHub(t, placement.Spread)
	sel := map[string]string{"test": "burst"}
	join(t, "burst-40", "40", sel)
	join(t, "burst-20", "20", sel)
	join(t, "burst-2", "2", sel)
	ns := namespace(t, "team-burst")
	var jobs []*jobset.JobSet
	for i := range 50 {
		js := fleetJobSet(ns, fmt.Sprintf("job-%02d", i), 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "test=burst").Obj()
		create(t, js)
		jobs = append(jobs, js)
	}
	counts := map[string]int{}
	testenv.Eventually(t, timeout, "all 50 dispatched", func() error {
		list := &fleet.JobSetDispatchList{}
		if err := hub.Client.List(context.Background(), list); err != nil {
			return err
		}
		clear(counts)
		n := 0
		for _, d := range list.Items {
			if d.Spec.Origin.Namespace == ns {
				member, _ := fleet.MemberOfNamespace(d.Namespace)
				counts[member]++
				n++
			}
		}
		if n != 50 {
			return fmt.Errorf("%d dispatched: %v", n, counts)
		}
		return nil
	})
	t.Logf("burst placement: %v", counts)
	if counts["burst-40"] < 30 || counts["burst-40"] > 35 || counts["burst-20"] < 14 || counts["burst-20"] > 19 || counts["burst-2"] > 2 {
		t.Errorf("placement %v, want about 32/16/2 (in proportion to capacity, never over it)", counts)
	}
	for _, js := range jobs {
		if n := len(allDispatchesOf(t, js)); n != 1 {
			t.Errorf("%s: %d dispatches", js.Name, n)
		}
	}
	testenv.Eventually(t, timeout, "metrics", func() error {
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return err
		}
		perMember := map[string]float64{}
		var latencies uint64
		for _, f := range families {
			for _, m := range f.GetMetric() {
				switch f.GetName() {
				case "jobset_fleet_hub_member_jobsets":
					perMember[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				case "jobset_fleet_hub_dispatch_latency_seconds":
					latencies = m.GetHistogram().GetSampleCount()
				}
			}
		}
		for member, n := range counts {
			if perMember[member] != float64(n) {
				return fmt.Errorf("member_jobsets{cluster=%s} = %v, want %d", member, perMember[member], n)
			}
		}
		if latencies < 50 {
			return fmt.Errorf("dispatch latency observed %d times, want at least 50", latencies)
		}
		return nil
	})
}
