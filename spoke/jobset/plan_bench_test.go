package jobset

import (
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

// BenchmarkComputePlan measures one reconcile's decision for a large JobSet:
// first with no Jobs yet (every Job is built), then with all of them running
// (the steady state, reconciled on every Job status change).
func BenchmarkComputePlan(b *testing.B) {
	for _, replicas := range []int32{16, 256, 1024} {
		js := testJobSet("bench").ReplicatedJob(rjob("workers", replicas, 8).Obj()).Obj()
		first := ComputePlan(js, Observed{}, t0)
		running := make([]batchv1.Job, 0, len(first.allCreates()))
		for _, j := range first.allCreates() {
			running = append(running, *j)
		}
		b.Run(fmt.Sprintf("jobs=%d/create", replicas), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ComputePlan(js, Observed{}, t0)
			}
		})
		b.Run(fmt.Sprintf("jobs=%d/steady", replicas), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p := ComputePlan(js, Observed{Jobs: running, ServiceExists: true}, t0); len(p.allCreates()) != 0 {
					b.Fatalf("steady state plans %d creates", len(p.allCreates()))
				}
			}
		})
	}
}
