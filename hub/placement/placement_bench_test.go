package placement

import (
	"fmt"
	"testing"

	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// BenchmarkPlace measures one placement decision over a large fleet: it runs
// once per JobSet submission, under the hub's placement lock.
func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			members := make([]inventory.Member, n)
			for i := range members {
				members[i] = member(fmt.Sprintf("m%d", i), "512", fmt.Sprint(64+i%400))
			}
			req := Request{JobSet: jobSet(8, 4, "2").Obj(), Members: members, Policy: Spread}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Place(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
