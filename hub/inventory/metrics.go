package inventory

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterLabel names the member cluster on every fleet metric, the hub's
// and the agents', so one query joins them.
const ClusterLabel = "cluster"

// Member states: the values of the hub's member state gauge.
const (
	StateHealthy       = "healthy"
	StateCordoned      = "cordoned"
	StateUnhealthy     = "unhealthy"
	StateStale         = "stale"
	StateLost          = "lost"
	StateAwaitingFence = "awaiting_fence"
	StateOutOfService  = "out_of_service"
)

// States are all member states, each a series of the gauge.
var States = []string{StateHealthy, StateCordoned, StateUnhealthy, StateStale, StateLost, StateAwaitingFence, StateOutOfService}

// State is the member's one state, the one asking most of an operator
// first: out of service (the operator's word overrides the rest), awaiting
// fence (lost, with JobSets that cannot move until its copies are
// confirmed stopped), lost, stale (heartbeat not renewed in time),
// unhealthy (fresh heartbeat, but the member reports a problem), cordoned,
// healthy.
func State(m Member, lostTimeout time.Duration, awaitingFence bool) string {
	switch {
	case m.OutOfService:
		return StateOutOfService
	case m.Lost(lostTimeout) && awaitingFence:
		return StateAwaitingFence
	case m.Lost(lostTimeout):
		return StateLost
	case !m.HeartbeatFresh:
		return StateStale
	case !m.Healthy:
		return StateUnhealthy
	case m.Cordoned:
		return StateCordoned
	}
	return StateHealthy
}

// perMember holds the metric vectors labelled by member only: each gets a
// series (reading 0) when a member joins and loses it when the member
// leaves the fleet, so a quiet member's series read 0 instead of vanishing.
var perMember = &memberSeries{present: map[string]bool{}}

type memberSeries struct {
	mu      sync.Mutex
	vecs    []*prometheus.MetricVec
	present map[string]bool
}

// TrackMembers gives vecs, whose only label is ClusterLabel, a series for
// every member the inventory knows, now and as members join and leave.
func TrackMembers(vecs ...*prometheus.MetricVec) {
	perMember.mu.Lock()
	defer perMember.mu.Unlock()
	for _, v := range vecs {
		perMember.vecs = append(perMember.vecs, v)
		for name := range perMember.present {
			_, _ = v.GetMetricWithLabelValues(name)
		}
	}
}

// memberSeen records whether a member is in the fleet (its ClusterProfile
// exists), creating or deleting its series on a change.
func memberSeen(name string, present bool) {
	perMember.mu.Lock()
	defer perMember.mu.Unlock()
	if perMember.present[name] == present {
		return
	}
	if present {
		perMember.present[name] = true
	} else {
		delete(perMember.present, name)
	}
	for _, v := range perMember.vecs {
		if present {
			_, _ = v.GetMetricWithLabelValues(name)
		} else {
			v.DeleteLabelValues(name)
		}
	}
}
