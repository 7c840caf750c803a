package dispatch

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const lostAfter = time.Minute

// planMember is a member with room for anything.
func planMember(name string, mutate ...func(*inventory.Member)) inventory.Member {
	m := inventory.Member{
		Name: name, Healthy: true, Reason: "healthy", HeartbeatFresh: true, Labels: map[string]string{},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")},
		Free:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")},
	}
	for _, f := range mutate {
		f(&m)
	}
	return m
}

// silent: no heartbeat for longer than the member-lost timeout.
func silent(m *inventory.Member) {
	m.Healthy, m.HeartbeatFresh, m.SilentFor, m.Reason = false, false, 2*lostAfter, "heartbeat not renewed"
}

func outOfService(m *inventory.Member) {
	m.OutOfService, m.Healthy, m.Reason = true, false, "marked out of service"
}

// planJobSet is a hub JobSet of one pod, placed as fs (zero: not placed).
func planJobSet(fs jobset.FleetStatus, annotations ...string) *jobset.JobSet {
	w := jstesting.MakeJobSet("team", "train").UID("uid-1").Finalizers(fleet.JobSetFinalizer).CreationTimestamp(t0).
		ManagedBy(fleet.ManagedByFleet).FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 3}).
		ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(1).Container("c", "busybox").Obj())
	for i := 0; i+1 < len(annotations); i += 2 {
		w.Annotation(annotations[i], annotations[i+1])
	}
	js := w.Obj()
	if fs.Cluster != "" || fs.Epoch != 0 {
		js.Status.Fleet = &fs
		js.Status.Conditions = []metav1.Condition{{Type: fleet.ConditionDispatched, Status: metav1.ConditionTrue, Reason: fleet.ReasonDispatched,
			Message: dispatchedMessage(fs), LastTransitionTime: metav1.NewTime(t0)}}
	}
	return js
}

// planDispatch is the dispatch of js's placement fs, accepted by its agent
// (which holds its finalizer), unless mutated.
func planDispatch(js *jobset.JobSet, fs jobset.FleetStatus, mutate ...func(*fleet.JobSetDispatch)) fleet.JobSetDispatch {
	d := NewDispatch(js, fs, nil)
	d.UID = types.UID("d-" + fs.Cluster)
	d.Finalizers = append(d.Finalizers, fleet.AgentFinalizer)
	for _, f := range mutate {
		f(d)
	}
	return *d
}

func deleting(d *fleet.JobSetDispatch) { d.DeletionTimestamp = ptr.To(metav1.NewTime(t0)) }

func reportedDeleted(d *fleet.JobSetDispatch) {
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue, Reason: "MemberJobSetDeleted"})
}

// stopConfirmed is what `unjoin --confirm-copies-stopped` leaves: the
// operator's word, and the agent's finalizer released.
func stopConfirmed(d *fleet.JobSetDispatch) {
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue,
		Reason: fleet.ReasonStopConfirmed, Message: "confirmed by alice"})
	d.Finalizers = []string{fleet.DispatchFinalizer}
}

// createFailed: the hub's last create of the recorded placement failed.
func createFailed(js *jobset.JobSet) *jobset.JobSet {
	meta.SetStatusCondition(&js.Status.Conditions, metav1.Condition{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse,
		Reason: fleet.ReasonDispatchFailed, Message: "denied", LastTransitionTime: metav1.NewTime(t0)})
	return js
}

func finished(js *jobset.JobSet, at time.Time) *jobset.JobSet {
	js.Spec.TTLSecondsAfterFinished = ptr.To[int32](60)
	js.Status.TerminalState = string(jobset.JobSetCompleted)
	js.Status.Conditions = append(js.Status.Conditions, metav1.Condition{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue,
		Reason: "AllJobsCompleted", LastTransitionTime: metav1.NewTime(at)})
	return js
}

func refused(d *fleet.JobSetDispatch) {
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionFalse, Reason: "Conflict", Message: "a JobSet train exists"})
}

// summary is what a plan does, in comparable form.
type summary struct {
	Record           string // "member/epoch"
	Create           string
	Update           bool
	Delete, Release  []string // members
	StopCopies       []string
	Dispatched       string // "True/Reason"
	Stale            string
	Terminal         string
	Restarts         int32
	RemoveFinalizer  bool
	EventReasons     []string
	MaxRestartsThere int32 // of the created dispatch
}

func summarize(p Plan) summary {
	s := summary{Update: p.Update != nil, RemoveFinalizer: p.RemoveFinalizer, StopCopies: p.StopCopies}
	if p.Record != nil {
		s.Record = fleetOf(p.Record).Cluster + "/" + itoa(fleetOf(p.Record).Epoch)
	}
	if p.Create != nil {
		s.Create = memberOf(p.Create) + "/" + itoa(p.Create.Spec.Epoch)
		if fp := p.Create.Spec.JobSet.Spec.FailurePolicy; fp != nil {
			s.MaxRestartsThere = fp.MaxRestarts
		}
	}
	for _, d := range p.Delete {
		s.Delete = append(s.Delete, memberOf(d))
	}
	for _, d := range p.Release {
		s.Release = append(s.Release, memberOf(d))
	}
	if st := writtenStatus(p); st != nil {
		if c := meta.FindStatusCondition(st.Conditions, fleet.ConditionDispatched); c != nil {
			s.Dispatched = string(c.Status) + "/" + c.Reason
		}
		if c := meta.FindStatusCondition(st.Conditions, fleet.ConditionMemberStatusStale); c != nil {
			s.Stale = string(c.Status) + "/" + c.Reason
		}
		s.Terminal, s.Restarts = st.TerminalState, st.Restarts
	}
	for _, e := range p.Events {
		s.EventReasons = append(s.EventReasons, e.Reason)
	}
	sort.Strings(s.EventReasons)
	return s
}

// writtenStatus is the status a plan writes: with its record when it
// places, else after the rest.
func writtenStatus(p Plan) *jobset.JobSetStatus {
	if p.Status != nil {
		return p.Status
	}
	return p.Record
}

// placedAt reports whether fs records exactly the placement member/epoch.
func placedAt(fs jobset.FleetStatus, member string, epoch int64) bool {
	return fs.Cluster == member && fs.Epoch == epoch
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// TestComputePlan is the hub's safety argument as a table: a JobSet starts
// a second copy only when the first is proven stopped (or it opted into
// at-least-once), epochs only grow, finished JobSets never run again, and
// old dispatches are released only on proof.
func TestComputePlan(t *testing.T) {
	at := func(c string, e int64) jobset.FleetStatus { return jobset.FleetStatus{Cluster: c, Epoch: e} }
	type tc struct {
		name       string
		js         *jobset.JobSet
		dispatches func(js *jobset.JobSet) []fleet.JobSetDispatch
		orphans    func() []fleet.JobSetDispatch
		members    []inventory.Member
		copies     map[string]fence.Copy
		want       summary
		wantMsg    []string // substrings of the MemberStatusStale message
		notMsg     []string // not in the MemberStatusStale message
		check      func(t *testing.T, p Plan)
		noKueue    bool // the hub serves no Kueue API
	}
	none := func(*jobset.JobSet) []fleet.JobSetDispatch { return nil }
	on := func(fs jobset.FleetStatus, mutate ...func(*fleet.JobSetDispatch)) func(*jobset.JobSet) []fleet.JobSetDispatch {
		return func(js *jobset.JobSet) []fleet.JobSetDispatch {
			return []fleet.JobSetDispatch{planDispatch(js, fs, mutate...)}
		}
	}
	healthy := []inventory.Member{planMember("a"), planMember("b")}
	aSilent := []inventory.Member{planMember("a", silent), planMember("b")}
	tests := []tc{
		{
			name: "new JobSet: recorded, then dispatched, as epoch 1",
			js:   planJobSet(jobset.FleetStatus{}), dispatches: none, members: healthy,
			want: summary{Record: "a/1", Create: "a/1", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "placed on a healthy member: nothing to do",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)), members: healthy,
			want: summary{Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh"},
		},
		{
			name: "member silent, no proof: wait, say why and how to confirm, leave the copy alone",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)), members: aSilent,
			want: summary{Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
			wantMsg: []string{"member a is lost", "kubectl label clusterprofile -n fleet-system a fleet.jobset.x-k8s.io/out-of-service=true",
				"offline for longer than its hub token lives (join's --token-expiration, 24h by default)", "`jobset-fleet-agent join --cluster-name a ...`"},
			notMsg: []string{"has been silent for"},
		},
		{
			name: "member silent for longer than its hub token lives: say it must be joined again",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)),
			members: []inventory.Member{planMember("a", silent, func(m *inventory.Member) { m.SilentFor = 30 * time.Hour }), planMember("b")},
			want:    summary{Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
			wantMsg: []string{"must be joined again", "member a has been silent for 30h"},
		},
		{
			name: "member left the fleet keeping its workloads: wait, and name the command that confirms the copies stopped",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), deleting), members: []inventory.Member{planMember("b")},
			want:    summary{Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
			wantMsg: []string{"member a has left the fleet", "`jobset-fleet-agent unjoin --cluster-name a --confirm-copies-stopped`"},
			notMsg:  []string{"kubectl label"},
		},
		{
			name: "an operator confirmed the copy of a member that left stopped: move",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), deleting, stopConfirmed), members: []inventory.Member{planMember("b")},
			want: summary{Record: "b/2", Create: "b/2", Release: []string{"a"}, Dispatched: "True/Redispatched", Stale: "False/HeartbeatFresh",
				Restarts: 1, EventReasons: []string{fleet.ReasonRedispatched}, MaxRestartsThere: 2},
			check: func(t *testing.T, p Plan) {
				d := p.Release[0]
				pl := planner{o: Observed{Members: map[string]inventory.Member{}}}
				if ok, how := pl.stopped(d); !ok || !strings.Contains(how, "an operator confirmed that the copy on member a is stopped (confirmed by alice)") {
					t.Errorf("stopped = %t, %q", ok, how)
				}
			},
		},
		{
			name: "member silent and out of service: release the old copy, move; the move is a restart",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)),
			members: []inventory.Member{planMember("a", silent, outOfService), planMember("b")},
			want: summary{Record: "b/2", Create: "b/2", Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "True/Redispatched",
				Stale: "False/HeartbeatFresh", Restarts: 1, EventReasons: []string{fleet.ReasonRedispatched}, MaxRestartsThere: 2},
		},
		{
			name: "out of service but its agent is alive: delete the dispatch so the agent stops the copy; wait for its word",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)),
			members: []inventory.Member{planMember("a", outOfService), planMember("b")},
			want:    summary{Delete: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
		},
		{
			name: "the agent reported its copy deleted: move",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), deleting, reportedDeleted), members: aSilent,
			want: summary{Record: "b/2", Create: "b/2", Release: []string{"a"}, Dispatched: "True/Redispatched", Stale: "False/HeartbeatFresh",
				Restarts: 1, EventReasons: []string{fleet.ReasonRedispatched}, MaxRestartsThere: 2},
		},
		{
			name: "the hub sees through its own access that the copy is gone: move",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)), members: aSilent, copies: map[string]fence.Copy{"a": {}},
			want: summary{Record: "b/2", Create: "b/2", Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "True/Redispatched",
				Stale: "False/HeartbeatFresh", Restarts: 1, EventReasons: []string{fleet.ReasonRedispatched}, MaxRestartsThere: 2},
		},
		{
			name: "the hub sees the copy still there: it stops it and waits",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)), members: aSilent, copies: map[string]fence.Copy{"a": {Exists: true, Epoch: 1}},
			want:    summary{StopCopies: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
			wantMsg: []string{"stopping the copy through its own access"},
		},
		{
			name: "the hub reads a result the silent agent never reported: finished, never run again",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1)), members: aSilent,
			copies: map[string]fence.Copy{"a": {Exists: true, Epoch: 1, Status: jobset.JobSetStatus{TerminalState: "Completed",
				Conditions: []metav1.Condition{{Type: "Completed", Status: metav1.ConditionTrue, Reason: "AllJobsCompleted"}}}}},
			want: summary{Delete: []string{"a"}, StopCopies: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/MemberLost",
				Terminal: "Completed", EventReasons: []string{"Completed", fleet.ReasonMemberLost}},
		},
		{
			name: "at-least-once: move as soon as the member is lost",
			js:   planJobSet(at("a", 1), fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce), dispatches: on(at("a", 1)), members: aSilent,
			want: summary{Record: "b/2", Create: "b/2", Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "True/Redispatched",
				Stale: "False/HeartbeatFresh", Restarts: 1, EventReasons: []string{fleet.ReasonRedispatched}, MaxRestartsThere: 2},
		},
		{
			name: "Wait: keep waiting for the member",
			js:   planJobSet(at("a", 1), fleet.OnMemberLostAnnotation, fleet.OnMemberLostWait), dispatches: on(at("a", 1)), members: aSilent,
			want: summary{Dispatched: "True/Dispatched", Stale: "True/MemberLost", EventReasons: []string{fleet.ReasonMemberLost}},
		},
		{
			name: "Fail: failed; the copy is released only on proof",
			js:   planJobSet(at("a", 1), fleet.OnMemberLostAnnotation, fleet.OnMemberLostFail), dispatches: on(at("a", 1)), members: aSilent,
			want: summary{Delete: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/MemberLost", Terminal: "Failed",
				EventReasons: []string{fleet.ReasonMemberLost, fleet.ReasonMemberLost}},
		},
		{
			name: "a move past maxRestarts fails the JobSet",
			js: func() *jobset.JobSet {
				js := planJobSet(at("a", 1))
				js.Status.RestartsCountTowardsMax = 3
				return js
			}(),
			dispatches: on(at("a", 1)), members: []inventory.Member{planMember("a", silent, outOfService), planMember("b")},
			want: summary{Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/MemberLost", Terminal: "Failed",
				EventReasons: []string{fleet.ReasonMemberLost}},
		},
		{
			name: "refused by its member: placed elsewhere, not counted as a restart, the refusal quoted",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), refused), members: healthy,
			want: summary{Record: "b/2", Create: "b/2", Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "True/Dispatched",
				Stale: "False/HeartbeatFresh", MaxRestartsThere: 3, EventReasons: []string{fleet.ReasonDispatchRefused}},
			check: func(t *testing.T, p Plan) {
				if e := p.Events[0]; !strings.Contains(e.Message, "member a refused the JobSet (epoch 1): Conflict: a JobSet train exists") {
					t.Errorf("event %q", e.Message)
				}
			},
		},
		{
			name: "refused with a huge message, nowhere else to go: the quote is bounded",
			js:   planJobSet(at("a", 1)), members: []inventory.Member{planMember("a")},
			dispatches: on(at("a", 1), func(d *fleet.JobSetDispatch) {
				meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionFalse,
					Reason: "Forbidden", Message: strings.Repeat("quota exceeded ", 5000)})
			}),
			want: summary{Delete: []string{"a"}, Release: []string{"a"}, Dispatched: "False/NoFit", EventReasons: []string{fleet.ReasonDispatchRefused, fleet.ReasonNoFit}},
			check: func(t *testing.T, p Plan) {
				c := meta.FindStatusCondition(writtenStatus(p).Conditions, fleet.ConditionDispatched)
				if len(c.Message) > fleet.MaxMemberReason+200 || !strings.Contains(c.Message, "a: refused the JobSet: Forbidden: quota exceeded") {
					t.Errorf("NoFit message of %d bytes: %.300q", len(c.Message), c.Message)
				}
				for _, e := range p.Events {
					if len(e.Message) > fleet.MaxEventNote {
						t.Errorf("event %s of %d bytes", e.Reason, len(e.Message))
					}
				}
			},
		},
		{
			name: "many unhealthy members with long reasons: NoFit and its event stay within the API's limits",
			js:   planJobSet(jobset.FleetStatus{}), dispatches: none,
			members: func() []inventory.Member {
				var ms []inventory.Member
				for i := range 120 {
					ms = append(ms, planMember("member-"+itoa(int64(i)), func(m *inventory.Member) {
						m.Healthy, m.Reason = false, "control plane unhealthy: "+strings.Repeat("x", 300)
					}))
				}
				return ms
			}(),
			want: summary{Dispatched: "False/NoFit", EventReasons: []string{fleet.ReasonNoFit}},
			check: func(t *testing.T, p Plan) {
				c := meta.FindStatusCondition(writtenStatus(p).Conditions, fleet.ConditionDispatched)
				if len(c.Message) > fleet.MaxConditionMessage || !strings.Contains(c.Message, "more members") {
					t.Errorf("NoFit message of %d bytes, want bounded with a count of the rest", len(c.Message))
				}
				if len(p.Events[0].Message) > fleet.MaxEventNote {
					t.Errorf("NoFit event of %d bytes", len(p.Events[0].Message))
				}
			},
		},
		{
			name: "the last create failed: retried as is, same member and epoch, no new record",
			js:   createFailed(planJobSet(at("a", 2))), dispatches: none, members: healthy,
			// No status write: Dispatched stays False/DispatchFailed until
			// the dispatch exists.
			want: summary{Create: "a/2", MaxRestartsThere: 3},
		},
		{
			name: "the last create failed and the member is lost since: placed anew",
			js:   createFailed(planJobSet(at("a", 2))), dispatches: none, members: aSilent,
			want: summary{Record: "b/3", Create: "b/3", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3,
				EventReasons: []string{fleet.ReasonDispatched}},
		},
		{
			name: "finished long ago by the member's clock: the TTL counts from when the hub saw it",
			js:   finished(planJobSet(at("a", 1)), t0.AddDate(-5, 0, 0)), dispatches: on(at("a", 1)), members: healthy,
			want: summary{Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", Terminal: "Completed"},
			check: func(t *testing.T, p Plan) {
				if p.DeleteJobSet {
					t.Error("deleted at once: the member's lastTransitionTime was taken for the hub's")
				}
				if seen := writtenStatus(p).Fleet.FinishedObservedTime; seen == nil || !seen.Time.Equal(t0.Add(time.Hour)) {
					t.Errorf("finishedObservedTime = %v, want the hub's now", seen)
				}
				if p.RequeueAfter < time.Minute {
					t.Errorf("requeue after %s, want the TTL", p.RequeueAfter)
				}
			},
		},
		{
			name: "finished, seen by the hub longer than the TTL ago: deleted",
			js: func() *jobset.JobSet {
				js := finished(planJobSet(at("a", 1)), t0.AddDate(5, 0, 0))
				js.Status.Fleet.FinishedObservedTime = ptr.To(metav1.NewTime(t0))
				return js
			}(),
			dispatches: on(at("a", 1)), members: healthy,
			want: summary{Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", Terminal: "Completed"},
			check: func(t *testing.T, p Plan) {
				if !p.DeleteJobSet {
					t.Error("not deleted an hour after the hub saw it finish with a TTL of a minute")
				}
			},
		},
		{
			name: "dispatch deleted by hand, copy not yet confirmed gone: nothing new runs",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), deleting), members: healthy,
			want: summary{Dispatched: "False/DispatchDeleted", EventReasons: []string{fleet.ReasonDispatchDeleted}},
		},
		{
			name: "dispatch deleted by hand and its copy confirmed gone: placed anew, new epoch",
			js:   planJobSet(at("a", 1)), dispatches: on(at("a", 1), deleting, reportedDeleted), members: healthy,
			want: summary{Record: "b/2", Create: "b/2", Release: []string{"a"}, Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "recorded but never created (a crash): placed anew with a new epoch",
			js:   planJobSet(at("a", 3)), dispatches: none, members: healthy,
			want: summary{Record: "a/4", Create: "a/4", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "finished: never dispatched again",
			js: func() *jobset.JobSet {
				js := planJobSet(at("a", 1))
				js.Status.TerminalState = "Completed"
				return js
			}(),
			dispatches: none, members: healthy,
			want: summary{Stale: "False/HeartbeatFresh", Terminal: "Completed", Dispatched: "True/Dispatched"},
		},
		{
			name: "pending, but an old copy on a silent member may still run: wait",
			js: func() *jobset.JobSet {
				js := planJobSet(jobset.FleetStatus{Epoch: 1})
				js.Status.Conditions = nil
				return js
			}(),
			dispatches: on(at("a", 1), deleting), members: aSilent,
			want: summary{Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
		},
		{
			name: "an earlier JobSet's dispatch: collected, released only on proof",
			js:   planJobSet(at("b", 1)), dispatches: on(at("b", 1)), members: aSilent,
			orphans: func() []fleet.JobSetDispatch {
				old := planJobSet(at("a", 1))
				old.UID = "uid-0"
				return []fleet.JobSetDispatch{planDispatch(old, at("a", 1))}
			},
			want: summary{Delete: []string{"a"}, Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh"},
		},
		{
			name: "a new JobSet of a name whose earlier copy may still run: wait for it",
			js:   planJobSet(jobset.FleetStatus{}), dispatches: none, members: aSilent,
			orphans: func() []fleet.JobSetDispatch {
				old := planJobSet(at("a", 1))
				old.UID = "uid-0"
				return []fleet.JobSetDispatch{planDispatch(old, at("a", 1))}
			},
			want: summary{Delete: []string{"a"}, Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
		},
		{
			name: "held by a Kueue queue (suspended, queue-name): not placed; says it awaits admission by that queue",
			js:   inKueue(planJobSet(jobset.FleetStatus{}), "team-a", true), dispatches: none, members: healthy,
			want: summary{Dispatched: "False/AwaitingAdmission", EventReasons: []string{fleet.ReasonAwaitingAdmission}},
			check: func(t *testing.T, p Plan) {
				c := meta.FindStatusCondition(writtenStatus(p).Conditions, fleet.ConditionDispatched)
				if c == nil || !strings.Contains(c.Message, "LocalQueue team-a admits it") {
					t.Errorf("Dispatched %+v does not name the queue", c)
				}
			},
		},
		{
			name: "held by a Kueue queue, already saying so: nothing written",
			js: func() *jobset.JobSet {
				js := inKueue(planJobSet(jobset.FleetStatus{}), "team-a", true)
				js.Status.Conditions = []metav1.Condition{{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse, Reason: fleet.ReasonAwaitingAdmission,
					Message: awaitingAdmissionMessage("team-a"), LastTransitionTime: metav1.NewTime(t0)}}
				return js
			}(),
			dispatches: none, members: healthy,
			want: summary{},
		},
		{
			name: "admitted by Kueue (unsuspended): placed",
			js:   inKueue(planJobSet(jobset.FleetStatus{}), "team-a", false), dispatches: none, members: healthy,
			want: summary{Record: "a/1", Create: "a/1", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "suspended by its user, no queue: placed and held suspended on the member, as before",
			js:   inKueue(planJobSet(jobset.FleetStatus{}), "", true), dispatches: none, members: healthy,
			want: summary{Record: "a/1", Create: "a/1", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "queue-named and suspended on a hub without Kueue: the queue is a member's; placed and held suspended there",
			js:   inKueue(planJobSet(jobset.FleetStatus{}), "team-a", true), dispatches: none, members: healthy, noKueue: true,
			want: summary{Record: "a/1", Create: "a/1", Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", MaxRestartsThere: 3},
		},
		{
			name: "preempted by Kueue after a Pod started: the suspend goes to the member copy, which stays there",
			js:   inKueue(planJobSet(jobset.FleetStatus{Cluster: "a", Epoch: 1, StartedEpoch: 1}), "team-a", true), members: healthy,
			dispatches: on(at("a", 1), func(d *fleet.JobSetDispatch) { d.Spec.JobSet.Spec.Suspend = ptr.To(false) }),
			want:       summary{Update: true, Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", EventReasons: []string{fleet.ReasonSuspending}},
		},
		{
			name: "deleting the JobSet: its dispatch goes; the finalizer stays until the copy is proven gone",
			js: func() *jobset.JobSet {
				js := planJobSet(at("a", 1))
				js.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
				return js
			}(),
			dispatches: on(at("a", 1)), members: aSilent,
			want: summary{Delete: []string{"a"}, Dispatched: "True/Dispatched", Stale: "True/AwaitingFence", EventReasons: []string{fleet.ReasonAwaitingFence}},
		},
		{
			name: "deleting the JobSet: released and let go once the agent reports",
			js: func() *jobset.JobSet {
				js := planJobSet(at("a", 1))
				js.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
				return js
			}(),
			dispatches: on(at("a", 1), deleting, reportedDeleted), members: healthy,
			want: summary{Release: []string{"a"}, RemoveFinalizer: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Observed{
				JobSet: tc.js, Dispatches: tc.dispatches(tc.js), Members: map[string]inventory.Member{},
				Copies: tc.copies, Now: t0.Add(time.Hour), LostTimeout: lostAfter, InventoryNamespace: fleet.DefaultInventoryNamespace,
				KueueOnHub: !tc.noKueue,
			}
			if tc.orphans != nil {
				o.Orphans = tc.orphans()
			}
			for _, m := range tc.members {
				o.Members[m.Name] = m
			}
			choose := func(excluded map[string]string) (Choice, error) {
				res, err := placement.Place(placement.Request{JobSet: tc.js, Members: tc.members, Excluded: excluded, Policy: placement.Spread})
				return Choice{Result: res}, err
			}
			p, err := ComputePlan(o, choose)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(p)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if p.Create != nil && p.Record == nil && !placedAt(fleetOf(&tc.js.Status), memberOf(p.Create), p.Create.Spec.Epoch) {
				t.Error("a dispatch must never be created before its placement is recorded")
			}
			if p.Record != nil && p.Status != nil {
				t.Error("a placement writes the status twice: record, then status")
			}
			for _, want := range tc.wantMsg {
				c := meta.FindStatusCondition(writtenStatus(p).Conditions, fleet.ConditionMemberStatusStale)
				if c == nil || !strings.Contains(c.Message, want) {
					t.Errorf("MemberStatusStale %+v does not say %q", c, want)
				}
			}
			for _, not := range tc.notMsg {
				if c := meta.FindStatusCondition(writtenStatus(p).Conditions, fleet.ConditionMemberStatusStale); c != nil && strings.Contains(c.Message, not) {
					t.Errorf("MemberStatusStale %q says %q", c.Message, not)
				}
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// inKueue gives js Kueue's queue-name label (none: "") and suspends it or
// not.
func inKueue(js *jobset.JobSet, queue string, suspend bool) *jobset.JobSet {
	if queue != "" {
		js.Labels = map[string]string{fleet.KueueQueueNameLabel: queue}
	}
	js.Spec.Suspend = ptr.To(suspend)
	return js
}

func TestConditionEvent(t *testing.T) {
	cond := func(typ string, ok bool, reason string) *metav1.Condition {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		return &metav1.Condition{Type: typ, Status: st, Reason: reason, Message: "m"}
	}
	dispatched, stale := fleet.ConditionDispatched, fleet.ConditionMemberStatusStale
	for _, tc := range []struct {
		name          string
		before, after *metav1.Condition
		want          string // event type, "" for none
	}{
		{"first placement: the condition says it", nil, cond(dispatched, true, fleet.ReasonDispatched), ""},
		{"first fresh heartbeat", nil, cond(stale, false, fleet.ReasonHeartbeatFresh), ""},
		{"cannot be placed", nil, cond(dispatched, false, fleet.ReasonNoFit), corev1.EventTypeWarning},
		{"first seen stale", nil, cond(stale, true, fleet.ReasonHeartbeatStale), corev1.EventTypeWarning},
		{"dispatched after waiting", cond(dispatched, false, fleet.ReasonNoFit), cond(dispatched, true, fleet.ReasonDispatched), corev1.EventTypeNormal},
		{"moved", cond(dispatched, true, fleet.ReasonDispatched), cond(dispatched, true, fleet.ReasonRedispatched), corev1.EventTypeNormal},
		{"stale again fresh", cond(stale, true, fleet.ReasonHeartbeatStale), cond(stale, false, fleet.ReasonHeartbeatFresh), corev1.EventTypeNormal},
		{"lost", cond(stale, false, fleet.ReasonHeartbeatFresh), cond(stale, true, fleet.ReasonMemberLost), corev1.EventTypeWarning},
		{"unchanged but for the message", cond(dispatched, false, fleet.ReasonNoFit), cond(dispatched, false, fleet.ReasonNoFit), ""},
		{"removed", cond(stale, false, fleet.ReasonHeartbeatFresh), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := conditionEvent(tc.before, tc.after)
			switch {
			case tc.want == "" && ok:
				t.Errorf("event %+v, want none", e)
			case tc.want != "" && (!ok || e.Type != tc.want || e.Reason != tc.after.Reason):
				t.Errorf("event %+v (%v), want %s %s", e, ok, tc.want, tc.after.Reason)
			}
		})
	}
}
