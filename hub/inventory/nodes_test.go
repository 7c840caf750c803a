package inventory

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

func TestParseNodeSummary(t *testing.T) {
	gpuGroup := `{"labelKeys":["gpu"],"groups":[{"labels":{"gpu":"h100"},"taints":[{"key":"nvidia.com/gpu","effect":"NoSchedule"}],"nodes":3,` +
		`"allocatable":{"nvidia.com/gpu":"8"},"free":[{"count":2,"free":{"nvidia.com/gpu":"8"}},{"count":1,"free":{"nvidia.com/gpu":"2"}}]}],"omitted":1}`
	want := &fleet.NodeSummary{LabelKeys: []string{"gpu"}, Omitted: 1, Groups: []fleet.NodeGroup{{
		Labels: map[string]string{"gpu": "h100"},
		Taints: []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}},
		Nodes:  3, Allocatable: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")},
		Free: []fleet.FreeNodes{
			{Count: 2, Free: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}},
			{Count: 1, Free: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("2")}},
		},
	}}}
	tests := []struct {
		name    string
		props   []string // name, value, ...
		want    *fleet.NodeSummary
		wantErr string
	}{
		{name: "absent", props: []string{"free.cpu", "1"}},
		{name: "one part", props: []string{"node-summary", gpuGroup}, want: want},
		{name: "parts joined in order, whatever order listed", props: []string{"node-summary.2", gpuGroup[80:], "node-summary", gpuGroup[:40], "node-summary.1", gpuGroup[40:80]}, want: want},
		{name: "empty: no schedulable nodes", props: []string{"node-summary", "{}"}, want: &fleet.NodeSummary{}},
		{name: "a part missing", props: []string{"node-summary", gpuGroup[:40], "node-summary.2", gpuGroup[80:]}, wantErr: "not JSON"},
		{name: "not JSON", props: []string{"node-summary", "many nodes"}, wantErr: "not JSON"},
		{name: "bad quantity", props: []string{"node-summary", `{"groups":[{"nodes":1,"allocatable":{"cpu":"lots"}}]}`}, wantErr: "not JSON"},
		{name: "more nodes free than the group has", props: []string{"node-summary", `{"groups":[{"nodes":1,"free":[{"count":2,"free":{"cpu":"1"}}]}]}`}, wantErr: "2 nodes counted free of 1"},
		{name: "negative count", props: []string{"node-summary", `{"groups":[{"nodes":1,"free":[{"count":-1,"free":{"cpu":"1"}}]}]}`}, wantErr: "negative node count"},
		{name: "negative free", props: []string{"node-summary", `{"groups":[{"nodes":1,"free":[{"count":1,"free":{"cpu":"-1"}}]}]}`}, wantErr: "negative free cpu"},
		{name: "too many groups", props: []string{"node-summary", `{"groups":[` + strings.Repeat(`{"nodes":1},`, MaxNodeGroups) + `{"nodes":1}]}`}, wantErr: "node groups"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNodeSummary(profile(metav1.ConditionTrue, tc.props...).Status.Properties)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("got %v, %v; want nil and an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("summary (-want +got):\n%s", d)
			}
		})
	}
}

// TestAssessNodeSummary: the member carries the parsed summary; one it
// cannot use is nil, and Reason says why in bounded words, without making
// the member unhealthy.
func TestAssessNodeSummary(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Assessment{HeartbeatTimeout: 30 * time.Second, WatchingSince: t0}
	fresh := Heartbeat{Seen: true, LastChange: t0}

	m := Assess(profile(metav1.ConditionTrue, "node-summary", `{"groups":[{"nodes":2}]}`), fresh, t0, a)
	if m.Nodes == nil || len(m.Nodes.Groups) != 1 || m.Nodes.Groups[0].Nodes != 2 || m.Reason != "healthy" {
		t.Errorf("Nodes %+v, reason %q", m.Nodes, m.Reason)
	}
	m = Assess(profile(metav1.ConditionTrue), fresh, t0, a)
	if m.Nodes != nil || m.Reason != "healthy" {
		t.Errorf("no summary published: Nodes %+v, reason %q", m.Nodes, m.Reason)
	}
	m = Assess(profile(metav1.ConditionTrue, "node-summary", `{"labelKeys":["`+strings.Repeat("x", 1000)), fresh, t0, a)
	if m.Nodes != nil || !m.Healthy || !strings.HasPrefix(m.Reason, "healthy; node summary ignored: not JSON") || len(m.Reason) > 200 {
		t.Errorf("garbage summary: Nodes %+v, healthy %t, reason %q", m.Nodes, m.Healthy, m.Reason)
	}
}

// TestNodeSummaryChangeIsMemberChange: a changed summary changes the
// fingerprint the inventory notifies on, the same one republished does not.
func TestNodeSummaryChangeIsMemberChange(t *testing.T) {
	parts := func(values ...string) []clusterinventory.Property {
		var props []clusterinventory.Property
		for i, v := range values {
			props = append(props, clusterinventory.Property{Name: fleet.NodeSummaryPart(i), Value: v, LastObservedTime: metav1.Now()})
		}
		return props
	}
	before := parts(`{"groups":[{"nodes":1,"free":[{"count":1,`, `"free":{"nvidia.com/gpu":"4"}}]}]}`)
	same := parts(`{"groups":[{"nodes":1,"free":[{"count":1,`, `"free":{"nvidia.com/gpu":"4"}}]}]}`)
	freed := parts(`{"groups":[{"nodes":1,"free":[{"count":1,`, `"free":{"nvidia.com/gpu":"8"}}]}]}`)
	if propertiesFingerprint(before) != propertiesFingerprint(same) {
		t.Error("the same summary republished counts as a change")
	}
	if propertiesFingerprint(before) == propertiesFingerprint(freed) {
		t.Error("a node that freed GPUs does not count as a change")
	}
}
