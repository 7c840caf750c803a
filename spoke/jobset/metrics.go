package jobset

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metric names are upstream JobSet's so existing dashboards keep working.
var (
	completedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Subsystem: "jobset",
		Name:      "completed_total",
		Help:      "The total number of completed JobSets.",
	}, []string{"jobset_name", "namespace"})

	failedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Subsystem: "jobset",
		Name:      "failed_total",
		Help:      "The total number of failed JobSets.",
	}, []string{"jobset_name", "namespace"})

	reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Subsystem: "jobset",
		Name:      "reconcile_duration_seconds",
		Help:      "Time taken by one reconcile of a JobSet, by result (success or error).",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 15),
	}, []string{"result"})

	registerOnce sync.Once
)

// registerMetrics adds the collectors to controller-runtime's registry, which
// the manager serves on its metrics endpoint. Safe to call more than once.
func registerMetrics() {
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{completedTotal, failedTotal, reconcileDuration} {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	})
}
