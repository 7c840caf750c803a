package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	clocktesting "k8s.io/utils/clock/testing"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

func TestMetrics(t *testing.T) {
	c := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := &Agent{clusterName: "m1", live: newLiveness(c), access: &hubAccess{unauthorized: true}, states: newDispatchStates(), hubSynced: make(chan struct{})}
	a.live.restore(c.Now(), 12*time.Second)
	a.live.fenced = true
	a.states.set("fleet-member-m1/a.x", StateRunning)
	a.states.set("fleet-member-m1/a.y", StateRunning)
	a.states.set("fleet-member-m1/a.z", StateFinished)
	a.states.set("fleet-member-m1/a.z", "") // gone
	register(a)
	defer unregister(a)

	want := `
# HELP jobset_fleet_agent_fenced 1 while the agent stops its fleet JobSets because no heartbeat renewal reached the hub within the fence timeout.
# TYPE jobset_fleet_agent_fenced gauge
jobset_fleet_agent_fenced{cluster="m1"} 1
# HELP jobset_fleet_agent_last_renewal_timestamp_seconds Unix time of the last renewal of the heartbeat Lease on the hub, by the agent's clock (the start of the agent while it has not renewed yet).
# TYPE jobset_fleet_agent_last_renewal_timestamp_seconds gauge
jobset_fleet_agent_last_renewal_timestamp_seconds{cluster="m1"} 1.767225588e+09
# HELP jobset_fleet_agent_dispatches Dispatches of the member namespace by state of their member copy: Pending, Running, Suspended, Finished, Refused, Deleting.
# TYPE jobset_fleet_agent_dispatches gauge
jobset_fleet_agent_dispatches{cluster="m1",state="Deleting"} 0
jobset_fleet_agent_dispatches{cluster="m1",state="Finished"} 0
jobset_fleet_agent_dispatches{cluster="m1",state="Pending"} 0
jobset_fleet_agent_dispatches{cluster="m1",state="Refused"} 0
jobset_fleet_agent_dispatches{cluster="m1",state="Running"} 2
jobset_fleet_agent_dispatches{cluster="m1",state="Suspended"} 0
# HELP jobset_fleet_agent_hub_unauthorized 1 while the hub rejects the agent's credentials (401): its token expired or was revoked; join the member again.
# TYPE jobset_fleet_agent_hub_unauthorized gauge
jobset_fleet_agent_hub_unauthorized{cluster="m1"} 1
`
	if err := testutil.CollectAndCompare(running, strings.NewReader(want),
		"jobset_fleet_agent_fenced", "jobset_fleet_agent_last_renewal_timestamp_seconds", "jobset_fleet_agent_dispatches", "jobset_fleet_agent_hub_unauthorized"); err != nil {
		t.Error(err)
	}
	// A renewal moves the timestamp; time alone does not.
	c.Step(3 * time.Second)
	a.live.markRenewed(c.Now())
	want = `
# HELP jobset_fleet_agent_last_renewal_timestamp_seconds Unix time of the last renewal of the heartbeat Lease on the hub, by the agent's clock (the start of the agent while it has not renewed yet).
# TYPE jobset_fleet_agent_last_renewal_timestamp_seconds gauge
jobset_fleet_agent_last_renewal_timestamp_seconds{cluster="m1"} 1.767225603e+09
`
	if err := testutil.CollectAndCompare(running, strings.NewReader(want), "jobset_fleet_agent_last_renewal_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func TestHubRESTMapper(t *testing.T) {
	m, err := hubRESTMapper(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"JobSetDispatch", "JobSetDispatchList"} {
		mapping, err := m.RESTMapping(fleet.GroupVersion.WithKind(kind).GroupKind(), fleet.GroupVersion.Version)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
			t.Errorf("%s: scope %s", kind, mapping.Scope.Name())
		}
	}
	mapping, err := m.RESTMapping(fleet.GroupVersion.WithKind("JobSetDispatch").GroupKind())
	if err != nil || mapping.Resource.Resource != "jobsetdispatches" {
		t.Errorf("JobSetDispatch resource %+v, %v", mapping, err)
	}
}
