package agent

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

var summaryTime = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func resources(s string) corev1.ResourceList {
	list := corev1.ResourceList{}
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		name, v, _ := strings.Cut(kv, "=")
		list[corev1.ResourceName(name)] = resource.MustParse(v)
	}
	return list
}

type testNode struct {
	name   string
	labels map[string]string
	taints []corev1.Taint
	alloc  string
	cordon bool
}

func (n testNode) node() corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels},
		Spec:       corev1.NodeSpec{Taints: n.taints, Unschedulable: n.cordon},
		Status:     corev1.NodeStatus{Allocatable: resources(n.alloc)},
	}
}

func boundPod(node, requests string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: resources(requests)}}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func TestComputeNodeSummary(t *testing.T) {
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}
	keys := []string{"kubernetes.io/arch", "kubernetes.io/hostname", "gpu"}
	tests := []struct {
		name  string
		nodes []testNode
		pods  []corev1.Pod
		want  string // the summary as JSON
	}{
		{
			name: "no schedulable nodes",
			nodes: []testNode{
				{name: "n1", alloc: "cpu=8", cordon: true},
			},
			want: `{"labelKeys":["gpu","kubernetes.io/arch"]}`,
		},
		{
			name: "grouped by the keys' values, hostname and other labels ignored, cordoned nodes left out",
			nodes: []testNode{
				{name: "a1", labels: map[string]string{"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "a1", "team": "x"}, alloc: "cpu=8,memory=32Gi"},
				{name: "a2", labels: map[string]string{"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "a2", "team": "y"}, alloc: "cpu=8,memory=32Gi"},
				{name: "b1", labels: map[string]string{"kubernetes.io/arch": "amd64"}, alloc: "cpu=16,memory=64Gi"},
				{name: "c1", labels: map[string]string{"kubernetes.io/arch": "amd64"}, alloc: "cpu=99", cordon: true},
				{name: "d1", alloc: "cpu=2"},
			},
			want: `{"labelKeys":["gpu","kubernetes.io/arch"],"groups":[` +
				`{"nodes":1,"allocatable":{"cpu":"2"},"free":[{"count":1,"free":{"cpu":"2"}}]},` +
				`{"labels":{"kubernetes.io/arch":"amd64"},"nodes":1,"allocatable":{"cpu":"16","memory":"64Gi"},"free":[{"count":1,"free":{"cpu":"16","memory":"64Gi"}}]},` +
				`{"labels":{"kubernetes.io/arch":"arm64"},"nodes":2,"allocatable":{"cpu":"8","memory":"32Gi"},"free":[{"count":2,"free":{"cpu":"8","memory":"32Gi"}}]}]}`,
		},
		{
			name: "NoSchedule and NoExecute taints group, in any order and whenever added; PreferNoSchedule ignored",
			nodes: []testNode{
				{name: "g1", labels: map[string]string{"gpu": "h100"}, alloc: "nvidia.com/gpu=8", taints: []corev1.Taint{
					gpuTaint, {Key: "maintenance", Value: "soon", Effect: corev1.TaintEffectNoExecute, TimeAdded: &summaryTime},
					{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule},
				}},
				{name: "g2", labels: map[string]string{"gpu": "h100"}, alloc: "nvidia.com/gpu=8", taints: []corev1.Taint{
					{Key: "maintenance", Value: "soon", Effect: corev1.TaintEffectNoExecute}, gpuTaint, gpuTaint,
				}},
				{name: "g3", labels: map[string]string{"gpu": "h100"}, alloc: "nvidia.com/gpu=8", taints: []corev1.Taint{
					gpuTaint, {Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule},
				}},
			},
			want: `{"labelKeys":["gpu","kubernetes.io/arch"],"groups":[` +
				`{"labels":{"gpu":"h100"},"taints":[{"key":"maintenance","value":"soon","effect":"NoExecute"},{"key":"nvidia.com/gpu","effect":"NoSchedule"}],"nodes":2,"allocatable":{"nvidia.com/gpu":"8"},"free":[{"count":2,"free":{"nvidia.com/gpu":"8"}}]},` +
				`{"labels":{"gpu":"h100"},"taints":[{"key":"nvidia.com/gpu","effect":"NoSchedule"}],"nodes":1,"allocatable":{"nvidia.com/gpu":"8"},"free":[{"count":1,"free":{"nvidia.com/gpu":"8"}}]}]}`,
		},
		{
			name: "free rounds down: GPUs exactly, cpu, memory and pods to sixteenths of allocatable; a wholly free node reports all it has",
			nodes: []testNode{
				{name: "n1", alloc: "cpu=7910m,memory=32Gi,nvidia.com/gpu=8,pods=110"},
				{name: "n2", alloc: "cpu=7910m,memory=32Gi,nvidia.com/gpu=8,pods=110"},
				{name: "n3", alloc: "cpu=7910m,memory=32Gi,nvidia.com/gpu=8,pods=110"},
			},
			pods: []corev1.Pod{
				// n1: 1 cpu, 1 byte, 3 GPUs and 1 pod used.
				boundPod("n1", "cpu=1,memory=1,nvidia.com/gpu=3", corev1.PodRunning),
				// n2: wholly used but for 1 GPU; its finished pod counts nothing.
				boundPod("n2", "cpu=8,memory=40Gi,nvidia.com/gpu=7", corev1.PodPending),
				boundPod("n2", "nvidia.com/gpu=1", corev1.PodSucceeded),
				// A pod not bound yet counts against no node.
				boundPod("", "cpu=8,nvidia.com/gpu=8", corev1.PodPending),
			},
			// n1: cpu 6910m is 13.97/16 of 7910m -> 13/16 = 6426m; memory
			// just below 32Gi -> 15/16 = 30Gi; 5 GPUs; 109 pods -> 15/16 of
			// 110 = 103. n2: 0 cpu, 0 memory, 1 GPU, 109 pods -> 103.
			want: `{"labelKeys":["gpu","kubernetes.io/arch"],"groups":[` +
				`{"nodes":3,"allocatable":{"cpu":"7910m","memory":"32Gi","nvidia.com/gpu":"8","pods":"110"},"free":[` +
				`{"count":1,"free":{"cpu":"7910m","memory":"32Gi","nvidia.com/gpu":"8","pods":"110"}},` +
				`{"count":1,"free":{"cpu":"6426m","memory":"30Gi","nvidia.com/gpu":"5","pods":"103"}},` +
				`{"count":1,"free":{"nvidia.com/gpu":"1","pods":"103"}}]}]}`,
		},
		{
			name: "nodes of different size in a group: allocatable is the largest, free rounded on its scale",
			nodes: []testNode{
				{name: "big", alloc: "cpu=16,memory=64Gi"},
				{name: "small", alloc: "cpu=4,memory=16Gi"},
			},
			want: `{"labelKeys":["gpu","kubernetes.io/arch"],"groups":[` +
				`{"nodes":2,"allocatable":{"cpu":"16","memory":"64Gi"},"free":[` +
				`{"count":1,"free":{"cpu":"16","memory":"64Gi"}},{"count":1,"free":{"cpu":"4","memory":"16Gi"}}]}]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var nodes []corev1.Node
			for _, n := range tc.nodes {
				nodes = append(nodes, n.node())
			}
			got, err := json.Marshal(ComputeNodeSummary(nodes, tc.pods, keys))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("summary (-want +got):\n%s", d)
			}
		})
	}
}

func TestNodeSummaryLabelKeys(t *testing.T) {
	got := NodeSummaryLabelKeys([]string{"kubernetes.io/hostname", "topology.kubernetes.io/zone", "rack"}, []string{"nvidia.com/gpu.product", "rack", ""})
	want := []string{
		"kubernetes.io/arch", "kubernetes.io/os", "node.kubernetes.io/instance-type", "nvidia.com/gpu.product",
		"rack", "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("label keys (-want +got):\n%s", d)
	}
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("example.com/k%02d", i))
	}
	got = NodeSummaryLabelKeys(nil, many)
	if len(got) != MaxNodeLabelKeys || !slices.Contains(got, "kubernetes.io/arch") || slices.Contains(got, "example.com/k39") {
		t.Errorf("%d keys %v: want %d, the well-known ones kept", len(got), got, MaxNodeLabelKeys)
	}
}

// TestNodeSummaryOmitsWhatItCannotDescribe: a node with more taints than
// the summary describes, and the nodes of groups beyond the bound, are
// counted in Omitted, never described wrongly.
func TestNodeSummaryOmitsWhatItCannotDescribe(t *testing.T) {
	var nodes []corev1.Node
	for i := range MaxNodeGroups + 5 {
		// Group i (its own taint) has i+1 nodes: the 5 smallest groups go.
		for j := range i + 1 {
			taint := corev1.Taint{Key: fmt.Sprintf("t%02d", i), Effect: corev1.TaintEffectNoSchedule}
			nodes = append(nodes, testNode{name: fmt.Sprintf("n%d-%d", i, j), taints: []corev1.Taint{taint}, alloc: "cpu=1"}.node())
		}
	}
	tainted := testNode{name: "tainted", alloc: "cpu=64"}
	for i := range MaxNodeTaints + 1 {
		tainted.taints = append(tainted.taints, corev1.Taint{Key: fmt.Sprintf("t%d", i), Effect: corev1.TaintEffectNoSchedule})
	}
	nodes = append(nodes, tainted.node())
	s := ComputeNodeSummary(nodes, nil, nil)
	if want := int32(1 + 1 + 2 + 3 + 4 + 5); s.Omitted != want {
		t.Errorf("omitted %d, want %d", s.Omitted, want)
	}
	if len(s.Groups) != MaxNodeGroups {
		t.Errorf("%d groups, want %d", len(s.Groups), MaxNodeGroups)
	}
	for _, g := range s.Groups {
		if g.Taints[0].Key < "t05" {
			t.Errorf("group of taint %s (%d nodes) kept over larger ones", g.Taints[0].Key, g.Nodes)
		}
	}
}

// TestNodeSummaryDropsVariedKeys: a label key with many values (racks) is
// no longer reported when grouping by it would exceed MaxNodeGroups; keys
// with few values stay.
func TestNodeSummaryDropsVariedKeys(t *testing.T) {
	var nodes []corev1.Node
	for i := range 200 {
		nodes = append(nodes, testNode{name: fmt.Sprint(i), alloc: "cpu=1", labels: map[string]string{
			"rack": fmt.Sprint(i % 100), "zone": fmt.Sprint(i % 3), "pool": fmt.Sprint(i % 7),
		}}.node())
	}
	s := ComputeNodeSummary(nodes, nil, []string{"rack", "zone", "pool"})
	if d := cmp.Diff([]string{"pool", "zone"}, s.LabelKeys); d != "" {
		t.Errorf("label keys (-want +got):\n%s", d)
	}
	if len(s.Groups) != 21 || s.Omitted != 0 {
		t.Errorf("%d groups, %d omitted; want 21, 0", len(s.Groups), s.Omitted)
	}
	// Few enough racks for the groups: the key stays.
	s = ComputeNodeSummary(nodes[:30], nil, []string{"rack", "zone"})
	if d := cmp.Diff([]string{"rack", "zone"}, s.LabelKeys); d != "" {
		t.Errorf("label keys of 30 nodes (-want +got):\n%s", d)
	}
}

// TestNodeSummaryAt5000Nodes: 5 000 nodes with varied labels, taints and
// free capacity give a summary within MaxNodeSummaryBytes that overstates
// no node, byte-identical whatever order the nodes and pods are listed in,
// and the hub reads back what the agent published.
func TestNodeSummaryAt5000Nodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
		// racks > MaxNodeGroups makes the rack key go.
		racks int
	}{
		{name: "a typical fleet member", keys: NodeSummaryLabelKeys(nil, []string{"nvidia.com/gpu.product"})},
		{name: "a rack key with more domains than groups", keys: NodeSummaryLabelKeys([]string{"example.com/rack-with-a-long-label-key-name"}, []string{"nvidia.com/gpu.product"}), racks: 100},
		{name: "racks and long label values", keys: NodeSummaryLabelKeys([]string{"example.com/rack-with-a-long-label-key-name"}, []string{"nvidia.com/gpu.product"}), racks: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			nodes, pods := fleetOfNodes(rng, 5000, tc.racks)
			start := time.Now()
			s := ComputeNodeSummary(nodes, pods, tc.keys)
			t.Logf("computed in %s", time.Since(start))
			raw, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes, %d groups, %d omitted", len(raw), len(s.Groups), s.Omitted)
			if len(raw) > MaxNodeSummaryBytes {
				t.Errorf("summary of %d bytes, more than %d", len(raw), MaxNodeSummaryBytes)
			}
			for _, g := range s.Groups {
				if len(g.Free) < 2 && g.Nodes > 100 {
					t.Errorf("a group of %d nodes described by %d histogram entries", g.Nodes, len(g.Free))
				}
			}
			assertNeverOverstates(t, s, nodes, pods)

			// Any listing order, the same bytes.
			rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
			again, _ := json.Marshal(ComputeNodeSummary(nodes, pods, tc.keys))
			if string(again) != string(raw) {
				t.Error("the same nodes and pods in another order give another summary")
			}

			// Published in parts the ClusterProfile CRD accepts, read back whole.
			props := NodeSummaryProperties(s, summaryTime)
			for _, p := range props {
				if len(p.Value) > fleet.MaxPropertyValue || p.Value == "" {
					t.Errorf("property %s of %d characters", p.Name, len(p.Value))
				}
			}
			back, err := inventory.ParseNodeSummary(props)
			if err != nil {
				t.Fatalf("hub parsing the published summary: %v", err)
			}
			if d := cmp.Diff(string(raw), mustJSON(t, back)); d != "" {
				t.Errorf("hub's summary differs (-agent +hub):\n%s", d)
			}
		})
	}
}

// fleetOfNodes builds n nodes across zones, instance types and GPU
// products, some tainted, each with random pods bound.
func fleetOfNodes(rng *rand.Rand, n, racks int) ([]corev1.Node, []corev1.Pod) {
	type shape struct{ instance, product, alloc string }
	shapes := []shape{
		{"cpu-large", "", "cpu=63500m,memory=250Gi,pods=110,ephemeral-storage=500Gi"},
		{"cpu-small", "", "cpu=7910m,memory=30Gi,pods=110,ephemeral-storage=100Gi"},
		{"gpu-h100", "NVIDIA-H100-80GB-HBM3", "cpu=191,memory=1800Gi,nvidia.com/gpu=8,pods=110,rdma/ib=16"},
		{"gpu-a100", "NVIDIA-A100-SXM4-40GB", "cpu=95,memory=1100Gi,nvidia.com/gpu=8,pods=110"},
		{"gpu-l4", "NVIDIA-L4", "cpu=47,memory=180Gi,nvidia.com/gpu=4,pods=110"},
	}
	zones := []string{"europe-west4-a", "europe-west4-b", "europe-west4-c"}
	var nodes []corev1.Node
	var pods []corev1.Pod
	for i := range n {
		sh := shapes[rng.IntN(len(shapes))]
		name := fmt.Sprintf("node-%05d", i)
		tn := testNode{name: name, alloc: sh.alloc, labels: map[string]string{
			"kubernetes.io/hostname":           name,
			"kubernetes.io/arch":               "amd64",
			"kubernetes.io/os":                 "linux",
			"node.kubernetes.io/instance-type": sh.instance,
			"topology.kubernetes.io/zone":      zones[rng.IntN(len(zones))],
			"topology.kubernetes.io/region":    "europe-west4",
		}}
		if racks > 0 {
			tn.labels["example.com/rack-with-a-long-label-key-name"] = fmt.Sprintf("rack-%03d-with-a-long-value-too", rng.IntN(racks))
		}
		if sh.product != "" {
			tn.labels["nvidia.com/gpu.product"] = sh.product
			tn.taints = append(tn.taints, corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule})
		}
		switch rng.IntN(20) {
		case 0:
			tn.taints = append(tn.taints, corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute, TimeAdded: &summaryTime})
		case 1:
			tn.taints = append(tn.taints, corev1.Taint{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule})
		case 2:
			tn.cordon = true
		}
		node := tn.node()
		nodes = append(nodes, node)
		// Random pods, up to about the node's size.
		alloc := node.Status.Allocatable
		for range rng.IntN(6) {
			req := fmt.Sprintf("cpu=%dm,memory=%dMi", rng.Int64N(alloc.Cpu().MilliValue()/3+1), rng.Int64N(alloc.Memory().Value()>>20/3+1))
			if g := alloc[ResourceGPU]; !g.IsZero() {
				req += fmt.Sprintf(",nvidia.com/gpu=%d", rng.Int64N(g.Value()/2+1))
			}
			pods = append(pods, boundPod(name, req, corev1.PodRunning))
		}
	}
	return nodes, pods
}

// assertNeverOverstates checks the summary against the nodes: each group
// counts exactly the schedulable nodes with its labels and taints, its
// allocatable is their largest, and for every free amount it reports, no
// more of its entries claim at least that much than nodes really have it.
func assertNeverOverstates(t *testing.T, s fleet.NodeSummary, nodes []corev1.Node, pods []corev1.Pod) {
	t.Helper()
	used := map[string]corev1.ResourceList{}
	for _, p := range pods {
		if used[p.Spec.NodeName] == nil {
			used[p.Spec.NodeName] = corev1.ResourceList{}
		}
		addTo(used[p.Spec.NodeName], p.Spec.Containers[0].Resources.Requests)
		addTo(used[p.Spec.NodeName], resources("pods=1"))
	}
	type actual struct {
		alloc, free corev1.ResourceList
	}
	byGroup := map[string][]actual{}
	schedulable := 0
	for _, n := range nodes {
		if n.Spec.Unschedulable {
			continue
		}
		schedulable++
		labels := map[string]string{}
		for _, k := range s.LabelKeys {
			if v, ok := n.Labels[k]; ok {
				labels[k] = v
			}
		}
		var taints []corev1.Taint
		for _, tn := range n.Spec.Taints {
			if tn.Effect != corev1.TaintEffectPreferNoSchedule {
				taints = append(taints, corev1.Taint{Key: tn.Key, Value: tn.Value, Effect: tn.Effect})
			}
		}
		slices.SortFunc(taints, func(a, b corev1.Taint) int { return strings.Compare(a.Key, b.Key) })
		free := corev1.ResourceList{}
		for r, a := range n.Status.Allocatable {
			f := a.DeepCopy()
			f.Sub(used[n.Name][r])
			free[r] = f
		}
		id := groupID(labels, taints)
		byGroup[id] = append(byGroup[id], actual{n.Status.Allocatable, free})
	}
	atLeast := func(have, want corev1.ResourceList) bool {
		for r, q := range want {
			if h, ok := have[r]; !ok || h.Cmp(q) < 0 {
				return false
			}
		}
		return true
	}
	counted := int(s.Omitted)
	for _, g := range s.Groups {
		id := groupID(g.Labels, g.Taints)
		reals := byGroup[id]
		if int(g.Nodes) != len(reals) {
			t.Errorf("group %s: %d nodes, really %d", id, g.Nodes, len(reals))
		}
		counted += len(reals)
		for r, q := range g.Allocatable {
			largest := resource.Quantity{}
			for _, n := range reals {
				if a := n.alloc[r]; a.Cmp(largest) > 0 {
					largest = a
				}
			}
			if q.Cmp(largest) != 0 {
				t.Errorf("group %s: allocatable %s %s, largest really %s", id, r, q.String(), largest.String())
			}
		}
		for _, e := range g.Free {
			claimed := int32(0)
			for _, other := range g.Free {
				if atLeast(other.Free, e.Free) {
					claimed += other.Count
				}
			}
			really := int32(0)
			for _, n := range reals {
				if atLeast(n.free, e.Free) {
					really++
				}
			}
			if claimed > really {
				t.Errorf("group %s: %d nodes claimed with at least %v free, really %d", id, claimed, e.Free, really)
			}
		}
	}
	if counted != schedulable {
		t.Errorf("groups and omitted count %d nodes, %d are schedulable", counted, schedulable)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestNodeSummaryProperties(t *testing.T) {
	small := NodeSummaryProperties(fleet.NodeSummary{}, summaryTime)
	if d := cmp.Diff([]clusterinventory.Property{{Name: "node-summary", Value: "{}", LastObservedTime: summaryTime}}, small); d != "" {
		t.Errorf("empty summary (-want +got):\n%s", d)
	}
	s := fleet.NodeSummary{LabelKeys: []string{strings.Repeat("k", 3000)}}
	props := NodeSummaryProperties(s, summaryTime)
	var names []string
	var joined strings.Builder
	for _, p := range props {
		names = append(names, p.Name)
		joined.WriteString(p.Value)
	}
	if d := cmp.Diff([]string{"node-summary", "node-summary.1", "node-summary.2"}, names); d != "" {
		t.Errorf("parts (-want +got):\n%s", d)
	}
	if joined.String() != mustJSON(t, s) {
		t.Error("parts do not join into the summary")
	}
	// The agent's ProfileStatus drops parts it no longer publishes.
	st := ProfileStatus(clusterinventory.ClusterProfileStatus{}, Health{Healthy: true}, "", props)
	st = ProfileStatus(st, Health{Healthy: true}, "", small)
	if len(st.Properties) != 1 || st.Properties[0].Value != "{}" {
		t.Errorf("properties after the summary shrank: %+v", st.Properties)
	}
}
