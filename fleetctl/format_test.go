package fleetctl

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

func dispatched(ok bool, reason, msg string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: fleet.ConditionDispatched, Status: status, Reason: reason, Message: msg}
}

func TestStateAndQueue(t *testing.T) {
	stale := metav1.Condition{Type: fleet.ConditionMemberStatusStale, Status: metav1.ConditionTrue, Reason: fleet.ReasonAwaitingFence}
	cases := []struct {
		name       string
		suspend    bool
		terminal   string
		conditions []metav1.Condition
		state      string
		queue      string
	}{
		{name: "not seen by the hub", state: "Pending", queue: "Pending"},
		{name: "held by Kueue", suspend: true, state: "Suspended", queue: "AwaitingAdmission"},
		{name: "running", conditions: []metav1.Condition{dispatched(true, fleet.ReasonDispatched, "dispatched to member m1 (epoch 1)")}, state: "Running", queue: "-"},
		{name: "member lost, awaiting fence", conditions: []metav1.Condition{dispatched(true, fleet.ReasonDispatched, ""), stale}, state: "Running (stale)", queue: fleet.ReasonAwaitingFence},
		{name: "no fit, with position", conditions: []metav1.Condition{dispatched(false, fleet.ReasonNoFit, "Queued: 2nd; no member cluster fits: m1: x")}, state: "Pending", queue: "NoFit 2nd"},
		{name: "queued behind the head", conditions: []metav1.Condition{dispatched(false, fleet.ReasonQueued, "Queued: 3rd; waits behind a/b")}, state: "Pending", queue: "Queued 3rd"},
		{name: "queued further back", conditions: []metav1.Condition{dispatched(false, fleet.ReasonQueued, "Queued: within the first 100; waits behind a/b")}, state: "Pending", queue: "Queued first 100"},
		{name: "an earlier hub's message", conditions: []metav1.Condition{dispatched(false, fleet.ReasonQueued, "Queued: 11th of 12; waits behind a/b")}, state: "Pending", queue: "Queued 11th of 12"},
		{name: "withdrawn", conditions: []metav1.Condition{dispatched(false, fleet.ReasonStartTimeout, "no Pod started")}, state: "Pending", queue: fleet.ReasonStartTimeout},
		{name: "finished", terminal: "Completed", conditions: []metav1.Condition{dispatched(true, fleet.ReasonDispatched, "")}, state: "Completed", queue: "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := &jobset.JobSet{Spec: jobset.JobSetSpec{Suspend: ptr.To(tc.suspend)},
				Status: jobset.JobSetStatus{TerminalState: tc.terminal, Conditions: tc.conditions}}
			if got := State(js); got != tc.state {
				t.Errorf("State = %q, want %q", got, tc.state)
			}
			if got := Queue(js); got != tc.queue {
				t.Errorf("Queue = %q, want %q", got, tc.queue)
			}
		})
	}
}

func TestJobSetTableWideColumns(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	js := jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: "trainer", Namespace: "research", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Minute))},
		Status: jobset.JobSetStatus{Restarts: 3, Conditions: []metav1.Condition{dispatched(true, fleet.ReasonDispatched, "dispatched to member m1\n(epoch 4)")},
			Fleet: &jobset.FleetStatus{Cluster: "m1", Epoch: 4}},
	}
	for _, tc := range []struct {
		wide, namespaced bool
		want             string
	}{
		{want: "NAME      CLUSTER   STATE     RESTARTS   QUEUE   AGE\ntrainer   m1        Running   3          -       90m\n"},
		{wide: true, namespaced: true, want: "NAMESPACE   NAME      CLUSTER   STATE     RESTARTS   QUEUE   AGE   EPOCH   MESSAGE\n" +
			"research    trainer   m1        Running   3          -       90m   4       dispatched to member m1 (epoch 4)\n"},
	} {
		var b bytes.Buffer
		if err := printTable(JobSetTable([]jobset.JobSet{js}, now), tc.wide, tc.namespaced, &b); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("wide=%t:\n got:\n%s\nwant:\n%s", tc.wide, b.String(), tc.want)
		}
	}
}

func TestSplitVerdicts(t *testing.T) {
	explain := placement.Result{Note: `pinned cluster "x" is not in the fleet`, Verdicts: []placement.Verdict{
		{Cluster: "m1", Reason: "unhealthy: marked out of service (label l); heartbeat not renewed within 30s"},
		{Cluster: "m-2.east", Reason: "insufficient resources: needs cpu 4, 1 free, needs memory 8Gi, 2Gi free"},
	}}.Explain()
	note, got := SplitVerdicts(explain, nil)
	if note != `pinned cluster "x" is not in the fleet` {
		t.Errorf("note = %q", note)
	}
	want := []MemberVerdict{
		{Member: "m1", Reason: "unhealthy: marked out of service (label l); heartbeat not renewed within 30s"},
		{Member: "m-2.east", Reason: "insufficient resources: needs cpu 4, 1 free, needs memory 8Gi, 2Gi free"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("verdicts:\n got %+v\nwant %+v", got, want)
	}
	// A reason part that looks like "<name>: " is a member only if known.
	_, got = SplitVerdicts("m1: unhealthy: x; quota: exceeded; m2: fits", []string{"m1", "m2"})
	if len(got) != 2 || got[0].Reason != "unhealthy: x; quota: exceeded" {
		t.Errorf("with known members: %+v", got)
	}
}

func TestMemberTable(t *testing.T) {
	rl := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		return l
	}
	members := []MemberView{
		{Member: inventory.Member{Name: "m1", Healthy: true, Reason: "healthy", Allocatable: rl("cpu", "8", "memory", "32Gi", "nvidia.com/gpu", "4", "amd.com/gpu", "2"),
			Free: rl("cpu", "500m", "memory", "1Gi", "nvidia.com/gpu", "1")}, HeartbeatAge: 4 * time.Second},
		{Member: inventory.Member{Name: "m2", Reason: "marked out of service (label l); no heartbeat Lease x", OutOfService: true, Cordoned: true}, HeartbeatAge: -1},
		{Member: inventory.Member{Name: "m3", Reason: "heartbeat not renewed within 30s"}, HeartbeatAge: 2 * time.Minute, LostMember: true},
	}
	var b bytes.Buffer
	if err := printTable(MemberTable(members, map[string]int{"m1": 3}), true, false, &b); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"NAME   HEALTH      HEARTBEAT   SCHEDULING              CPU      MEMORY     GPU   JOBSETS   REASON",
		"m1     Healthy     4s          Schedulable             500m/8   1Gi/32Gi   1/6   3         healthy",
		"m2     Unhealthy   <none>      OutOfService,Cordoned   -        -          -     0         marked out of service (label l); no heartbeat Lease x",
		"m3     Lost        2m          Schedulable             -        -          -     0         heartbeat not renewed within 30s",
	}
	if got := strings.TrimRight(b.String(), "\n"); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	b.Reset()
	if err := printTable(MemberTable(members[:1], nil), false, false, &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "?") || strings.Contains(b.String(), "REASON") {
		t.Errorf("JobSets not counted show ?, and REASON is wide only:\n%s", b.String())
	}
}

func TestHeartbeatFromLease(t *testing.T) {
	renewed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if hb := HeartbeatFromLease(nil); hb.Seen {
		t.Errorf("no Lease is no heartbeat: %+v", hb)
	}
	hb := HeartbeatFromLease(&coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: ptr.To[int32](40)}})
	if !hb.Seen || !hb.LastChange.Equal(renewed) || hb.FenceTimeout != 40*time.Second {
		t.Errorf("got %+v", hb)
	}
}

func TestFormatError(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "jobset.x-k8s.io", Resource: "jobsets"}, "", errors.New(`User "u" cannot list resource "jobsets"`))
	got := FormatError(forbidden)
	if !strings.HasPrefix(got, "Error from server (Forbidden): jobsets.jobset.x-k8s.io is forbidden: User \"u\" cannot list") {
		t.Errorf("got %q", got)
	}
	if got := FormatError(errors.New("boom")); got != "error: boom" {
		t.Errorf("got %q", got)
	}
}
