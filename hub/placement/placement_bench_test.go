package placement

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// BenchmarkPlace measures one placement decision over a large fleet: it runs
// once per JobSet submission, under the hub's placement lock. Members
// publish node summaries as agents do (groups by GPU model and zone, some
// tainted, free capacity in a few buckets), so every member is judged node
// by node.
func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			members := make([]inventory.Member, n)
			for i := range members {
				members[i] = benchMember(fmt.Sprintf("m%d", i), i)
			}
			js := jobSet(8, 4, "2").Obj()
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: gpu, Operator: corev1.TolerationOpExists}}
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Resources.Requests[gpu] = rl(gpu, "1")[gpu]
			req := Request{JobSet: js, Members: members, Policy: Spread}
			if r, err := Place(req); err != nil || r.Cluster == "" {
				b.Fatalf("no placement: %v %s", err, r.Explain())
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Place(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchMember has 8 groups of GPU and CPU nodes in two zones, with free
// capacity that varies by member.
func benchMember(name string, i int) inventory.Member {
	var groups []fleet.NodeGroup
	for _, zone := range []string{"z1", "z2"} {
		for _, model := range []string{"a100", "h100"} {
			g := tainted(nodes(64, rl("cpu", "96", "memory", "1Ti", gpu, "8", "pods", "110"), "zone", zone, "gpu", model), gpuTaint)
			g.Free = []fleet.FreeNodes{
				{Count: 32, Free: rl("cpu", "0", "memory", "0", gpu, "0", "pods", "100")},
				{Count: int32(16 + i%16), Free: rl("cpu", "48", "memory", "512Gi", gpu, "4", "pods", "100")},
				{Count: int32(16 - i%16), Free: rl("cpu", "96", "memory", "1Ti", gpu, "8", "pods", "110")},
			}
			groups = append(groups, g, nodes(16, rl("cpu", "64", "memory", "256Gi", "pods", "110"), "zone", zone))
		}
	}
	return summarized(name, []string{"zone", "gpu"}, groups...)
}
