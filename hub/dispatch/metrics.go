package dispatch

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	dispatchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "dispatch_latency_seconds",
		Help:    "Time from a JobSet's creation to the creation of its first JobSetDispatch.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	pendingJobSets = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "pending_jobsets",
		Help: "JobSets waiting for a member cluster.",
	})
	jobSetsPerMember = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "member_jobsets",
		Help: "Unfinished JobSets dispatched to each member cluster.",
	}, []string{"member"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{dispatchLatency, pendingJobSets, jobSetsPerMember} {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	})
}

// gauges remembers each JobSet's last known state so the gauges can be
// recomputed exactly; incrementing and decrementing would drift across
// restarts and missed deletes.
type gauges struct {
	mu    sync.Mutex
	state map[types.NamespacedName]string // "" pending, else member name
}

func (g *gauges) set(key types.NamespacedName, member string, counted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == nil {
		g.state = map[types.NamespacedName]string{}
	}
	if counted {
		g.state[key] = member
	} else {
		delete(g.state, key)
	}
	g.publishLocked()
}

func (g *gauges) publishLocked() {
	pending := 0
	perMember := map[string]int{}
	for _, m := range g.state {
		if m == "" {
			pending++
		} else {
			perMember[m]++
		}
	}
	pendingJobSets.Set(float64(pending))
	jobSetsPerMember.Reset()
	for m, n := range perMember {
		jobSetsPerMember.WithLabelValues(m).Set(float64(n))
	}
}
