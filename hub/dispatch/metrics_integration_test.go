package dispatch_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// series gathers the hub's metrics as "name{label="value",...}" (labels
// sorted) to the gauge value or, for a histogram, its sample count.
func series(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "jobset_fleet_hub_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			if h := m.GetHistogram(); h != nil {
				out[key] = float64(h.GetSampleCount())
			} else {
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// expectSeries waits until every series of want has its value; a negative
// value means the series must be absent.
func expectSeries(t *testing.T, what string, want map[string]float64) {
	t.Helper()
	testenv.Eventually(t, timeout, what, func() error {
		got := series(t)
		for k, v := range want {
			g, ok := got[k]
			switch {
			case v < 0 && ok:
				return fmt.Errorf("%s = %v, want no such series", k, g)
			case v >= 0 && !ok:
				return fmt.Errorf("no series %s", k)
			case v >= 0 && g != v:
				return fmt.Errorf("%s = %v, want %v", k, g, v)
			}
		}
		return nil
	})
}

// TestMetricsOfTheFleet: member states (cordoned included), per-member
// series that read 0 until something happens and go when the member
// leaves, the queue's depth and wait, and dispatched-to-running.
func TestMetricsOfTheFleet(t *testing.T) {
	clearQueue(t)
	startHub(t, placement.Spread)
	small := join(t, "metrics-a", "2", map[string]string{"queue-test": "metrics"})
	join(t, "metrics-cordoned", "2", map[string]string{fleet.CordonedLabel: "true"})
	state := func(member, s string) string {
		return fmt.Sprintf(`jobset_fleet_hub_member_state{cluster=%q,state=%q}`, member, s)
	}
	expectSeries(t, "member series reading 0 from the start", map[string]float64{
		state("metrics-a", "healthy"): 1, state("metrics-a", "lost"): 0, state("metrics-a", "cordoned"): 0,
		state("metrics-cordoned", "cordoned"): 1, state("metrics-cordoned", "healthy"): 0,
		`jobset_fleet_hub_member_jobsets{cluster="metrics-a"}`:               0,
		`jobset_fleet_hub_awaiting_fence_jobsets{cluster="metrics-a"}`:       0,
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-a"}`:        0,
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-cordoned"}`: 0,
		`jobset_fleet_hub_waiting_jobsets{reason="Queued"}`:                  0,
	})
	before := series(t)

	ns := namespace(t, "metrics")
	js := only(fleetJobSet(ns, "big", 4, "1"), "metrics").Obj()
	create(t, js)
	waitsWith(t, js, fleet.ReasonNoFit)
	expectSeries(t, "the JobSet counted in the queue", map[string]float64{
		`jobset_fleet_hub_waiting_jobsets{reason="NoFit"}`: before[`jobset_fleet_hub_waiting_jobsets{reason="NoFit"}`] + 1,
	})

	small.report("16", "16")
	d := waitDispatched(t, js, "metrics-a")
	expectSeries(t, "its wait observed once it is dispatched", map[string]float64{
		`jobset_fleet_hub_queue_wait_seconds{}`:                       before[`jobset_fleet_hub_queue_wait_seconds{}`] + 1,
		`jobset_fleet_hub_dispatch_latency_seconds{}`:                 before[`jobset_fleet_hub_dispatch_latency_seconds{}`] + 1,
		`jobset_fleet_hub_waiting_jobsets{reason="NoFit"}`:            before[`jobset_fleet_hub_waiting_jobsets{reason="NoFit"}`],
		`jobset_fleet_hub_member_jobsets{cluster="metrics-a"}`:        1,
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-a"}`: 0,
	})

	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: fleet.DispatchStarted, Status: metav1.ConditionTrue, Reason: "PodRunning"})
	})
	expectSeries(t, "dispatched to running observed once", map[string]float64{
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-a"}`: 1,
	})
	reportStatus(t, d, func(s *fleet.JobSetDispatchStatus) { s.JobSetStatus.Restarts = 0 })
	expectSeries(t, "and only once", map[string]float64{
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-a"}`: 1,
	})

	// A member that leaves the fleet takes its series with it.
	p := &clusterinventory.ClusterProfile{}
	if err := hub.Client.Get(context.Background(), types.NamespacedName{Namespace: inventoryNS, Name: "metrics-cordoned"}, p); err != nil {
		t.Fatal(err)
	}
	if err := hub.Client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	expectSeries(t, "the series of a member that left removed", map[string]float64{
		state("metrics-cordoned", "cordoned"):                                -1,
		`jobset_fleet_hub_start_latency_seconds{cluster="metrics-cordoned"}`: -1,
		`jobset_fleet_hub_member_jobsets{cluster="metrics-cordoned"}`:        -1,
		state("metrics-a", "healthy"):                                        1,
	})
}
