package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics on controller-runtime's registry (served on the manager's metrics
// endpoint). Every series carries the member's cluster name.
var (
	agentErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobset_fleet_agent_errors_total",
		Help: "Errors of the agent's loops: renew (heartbeat Lease on the hub), record (last renewal on the member), profile (ClusterProfile status), fence (stopping fleet JobSets), reconcile (dispatches).",
	}, []string{"cluster", "loop"})

	fencedDesc = prometheus.NewDesc("jobset_fleet_agent_fenced",
		"1 while the agent stops its fleet JobSets because no heartbeat renewal reached the hub within the fence timeout.", []string{"cluster"}, nil)
	// A timestamp, not an age, as Prometheus advises: the age is
	// time() - this, and a scrape that stopped does not freeze it.
	lastRenewalDesc = prometheus.NewDesc("jobset_fleet_agent_last_renewal_timestamp_seconds",
		"Unix time of the last renewal of the heartbeat Lease on the hub, by the agent's clock (the start of the agent while it has not renewed yet).", []string{"cluster"}, nil)
	dispatchesDesc = prometheus.NewDesc("jobset_fleet_agent_dispatches",
		"Dispatches of the member namespace by state of their member copy: Pending, Running, Suspended, Finished, Refused, Deleting.", []string{"cluster", "state"}, nil)
	hubSyncedDesc = prometheus.NewDesc("jobset_fleet_agent_hub_synced",
		"1 once the hub cache has synced and the dispatch controller runs.", []string{"cluster"}, nil)
	hubUnauthorizedDesc = prometheus.NewDesc("jobset_fleet_agent_hub_unauthorized",
		"1 while the hub rejects the agent's credentials (401): its token expired or was revoked; join the member again.", []string{"cluster"}, nil)
)

func init() {
	metrics.Registry.MustRegister(agentErrors, running)
}

// running holds the agents whose runnable runs in this process; it
// collects their gauges on scrape.
var running = &runningAgents{agents: map[*Agent]struct{}{}}

type runningAgents struct {
	mu     sync.Mutex
	agents map[*Agent]struct{}
}

func register(a *Agent) {
	running.mu.Lock()
	defer running.mu.Unlock()
	running.agents[a] = struct{}{}
}

func unregister(a *Agent) {
	running.mu.Lock()
	defer running.mu.Unlock()
	delete(running.agents, a)
}

func (r *runningAgents) Describe(ch chan<- *prometheus.Desc) {
	ch <- fencedDesc
	ch <- lastRenewalDesc
	ch <- dispatchesDesc
	ch <- hubSyncedDesc
	ch <- hubUnauthorizedDesc
}

func (r *runningAgents) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a := range r.agents {
		ch <- prometheus.MustNewConstMetric(fencedDesc, prometheus.GaugeValue, boolValue(a.Fenced()), a.clusterName)
		ch <- prometheus.MustNewConstMetric(lastRenewalDesc, prometheus.GaugeValue, float64(a.live.LastRenewal().UnixNano())/1e9, a.clusterName)
		ch <- prometheus.MustNewConstMetric(hubSyncedDesc, prometheus.GaugeValue, boolValue(a.HubSynced()), a.clusterName)
		ch <- prometheus.MustNewConstMetric(hubUnauthorizedDesc, prometheus.GaugeValue, boolValue(a.HubUnauthorized()), a.clusterName)
		for _, state := range DispatchStates {
			ch <- prometheus.MustNewConstMetric(dispatchesDesc, prometheus.GaugeValue, float64(a.states.count(state)), a.clusterName, state)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dispatchStates is the state of each dispatch's member copy as the last
// reconcile planned it.
type dispatchStates struct {
	mu     sync.Mutex
	states map[string]string
}

func newDispatchStates() *dispatchStates { return &dispatchStates{states: map[string]string{}} }

func (s *dispatchStates) set(key, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == "" {
		delete(s.states, key)
		return
	}
	s.states[key] = state
}

func (s *dispatchStates) count(state string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.states {
		if st == state {
			n++
		}
	}
	return n
}
