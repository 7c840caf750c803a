package inventory

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestState(t *testing.T) {
	const lost = time.Minute
	healthy := Member{Healthy: true, HeartbeatFresh: true, SilentFor: time.Second}
	with := func(f func(*Member)) Member { m := healthy; f(&m); return m }
	tests := []struct {
		name     string
		m        Member
		awaiting bool
		want     string
	}{
		{"healthy", healthy, false, StateHealthy},
		{"cordoned", with(func(m *Member) { m.Cordoned = true }), false, StateCordoned},
		{"unhealthy with a fresh heartbeat", with(func(m *Member) { m.Healthy = false }), false, StateUnhealthy},
		{"stale", with(func(m *Member) { m.Healthy, m.HeartbeatFresh, m.SilentFor = false, false, 40*time.Second }), false, StateStale},
		{"stale and cordoned: stale", with(func(m *Member) {
			m.Healthy, m.HeartbeatFresh, m.Cordoned = false, false, true
		}), false, StateStale},
		{"lost", with(func(m *Member) { m.Healthy, m.HeartbeatFresh, m.SilentFor = false, false, 2*time.Minute }), false, StateLost},
		{"lost with JobSets awaiting fence", with(func(m *Member) { m.Healthy, m.HeartbeatFresh, m.SilentFor = false, false, 2*time.Minute }), true, StateAwaitingFence},
		{"awaiting fence but not lost: not yet", with(func(m *Member) { m.Healthy, m.HeartbeatFresh, m.SilentFor = false, false, 40*time.Second }), true, StateStale},
		{"out of service overrides lost", with(func(m *Member) {
			m.Healthy, m.HeartbeatFresh, m.SilentFor, m.OutOfService = false, false, 2*time.Minute, true
		}), true, StateOutOfService},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := State(tc.m, lost, tc.awaiting); got != tc.want {
				t.Errorf("State = %s, want %s", got, tc.want)
			}
		})
	}
}

// A member's series read 0 from the moment it joins, and go away only
// when it leaves the fleet.
func TestTrackMembers(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_member_total", Help: "test"}, []string{ClusterLabel})
	memberSeen("early", true)
	defer memberSeen("early", false)
	TrackMembers(vec.MetricVec)
	memberSeen("late", true)
	memberSeen("late", true)
	vec.WithLabelValues("late").Inc()
	want := `# HELP test_member_total test
# TYPE test_member_total counter
test_member_total{cluster="early"} 0
test_member_total{cluster="late"} 1
`
	if err := testutil.CollectAndCompare(vec, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	memberSeen("late", false)
	want = `# HELP test_member_total test
# TYPE test_member_total counter
test_member_total{cluster="early"} 0
`
	if err := testutil.CollectAndCompare(vec, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
