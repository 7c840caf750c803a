package placement

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

const gpu = "nvidia.com/gpu"

// nodes is a group of n identical nodes with alloc allocatable, all of it
// free, and labels key=value pairs.
func nodes(n int32, alloc corev1.ResourceList, lbls ...string) fleet.NodeGroup {
	g := fleet.NodeGroup{Nodes: n, Allocatable: alloc, Free: []fleet.FreeNodes{{Count: n, Free: alloc}}, Labels: map[string]string{}}
	for i := 0; i+1 < len(lbls); i += 2 {
		g.Labels[lbls[i]] = lbls[i+1]
	}
	return g
}

// withFree replaces a group's free histogram.
func withFree(g fleet.NodeGroup, free ...fleet.FreeNodes) fleet.NodeGroup {
	g.Free = free
	return g
}

func tainted(g fleet.NodeGroup, taints ...corev1.Taint) fleet.NodeGroup {
	g.Taints = taints
	return g
}

var gpuTaint = corev1.Taint{Key: gpu, Value: "present", Effect: corev1.TaintEffectNoSchedule}

// summarized is a healthy member whose agent publishes a node summary with
// label keys keys; its member-wide sums are those of the groups.
func summarized(name string, keys []string, groups ...fleet.NodeGroup) inventory.Member {
	m := inventory.Member{Name: name, Healthy: true, Reason: "healthy", Labels: map[string]string{},
		Allocatable: corev1.ResourceList{}, Free: corev1.ResourceList{},
		Nodes: &fleet.NodeSummary{LabelKeys: keys, Groups: groups}}
	for _, g := range groups {
		for r, q := range g.Allocatable {
			q.Mul(int64(g.Nodes))
			AddTo(m.Allocatable, corev1.ResourceList{r: q})
		}
		for _, f := range g.Free {
			for r, q := range f.Free {
				q.Mul(int64(f.Count))
				AddTo(m.Free, corev1.ResourceList{r: q})
			}
		}
	}
	return m
}

// pods is a JobSet of jobs Jobs of podsPerJob Pods each requesting req,
// with edit applied to the pod spec.
func pods(jobs, podsPerJob int32, req corev1.ResourceList, edit func(*corev1.PodSpec)) *jobset.JobSet {
	js := jstesting.MakeJobSet("team", "train").UID("uid-1").ReplicatedJob(
		jstesting.MakeReplicatedJob("w").Replicas(jobs).Parallelism(podsPerJob).Container("c", "").Requests(req).Obj()).Obj()
	if edit != nil {
		edit(&js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec)
	}
	return js
}

func requiredAffinity(terms ...corev1.NodeSelectorTerm) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
}

func in(key string, values ...string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}}}
}

// TestPlaceByNodes: a member is a candidate only if all Pods of the JobSet
// fit at once on its nodes, and its verdict says why not in words that do
// not change with every report.
func TestPlaceByNodes(t *testing.T) {
	cpu4gpu4 := rl("cpu", "32", gpu, "4")
	tests := []struct {
		name    string
		members []inventory.Member
		job     *jobset.JobSet
		// want is the chosen member ("" none); reasons are substrings of
		// members' verdicts.
		want      string
		reasons   map[string]string
		committed map[string]corev1.ResourceList
	}{
		{
			name: "a Pod larger than every node, though the sum is enough",
			members: []inventory.Member{
				summarized("fours", nil, nodes(2, cpu4gpu4)),
				member("old-agent", "64", "64"), // no summary: the sums decide
			},
			job:     pods(1, 1, rl(gpu, "8"), nil),
			want:    "",
			reasons: map[string]string{"fours": "needs 8 nvidia.com/gpu in one Pod; its largest node has 4", "old-agent": "needs nvidia.com/gpu 8, 0 free"},
		},
		{
			name: "without a summary the sums still decide",
			members: []inventory.Member{
				summarized("fours", nil, nodes(2, cpu4gpu4)),
				func() inventory.Member {
					m := member("old-agent", "64", "64")
					m.Allocatable[gpu], m.Free[gpu] = resource.MustParse("8"), resource.MustParse("8")
					return m
				}(),
			},
			job:  pods(1, 1, rl(gpu, "8"), nil),
			want: "old-agent",
		},
		{
			name: "fragmented free capacity",
			members: []inventory.Member{
				// 6 GPUs free in all, but as 4 and 2.
				summarized("fragmented", nil, withFree(nodes(2, cpu4gpu4),
					fleet.FreeNodes{Count: 1, Free: rl("cpu", "32", gpu, "4")}, fleet.FreeNodes{Count: 1, Free: rl("cpu", "32", gpu, "2")})),
			},
			job:     pods(1, 2, rl(gpu, "3"), nil),
			reasons: map[string]string{"fragmented": "only 1 of 2 Pods fit at once"},
		},
		{
			name:    "Pods fill nodes, several to a node",
			members: []inventory.Member{summarized("m", nil, nodes(2, cpu4gpu4))},
			job:     pods(2, 4, rl(gpu, "1", "cpu", "8"), nil),
			want:    "m",
		},
		{
			name:    "best fit keeps the large node for the large Pod",
			members: []inventory.Member{summarized("m", nil, nodes(1, rl("cpu", "8")), nodes(1, rl("cpu", "2")))},
			job: func() *jobset.JobSet {
				// Small Pods first in the spec: placed first, first-fit would
				// take the 8-cpu node and leave no room for the large one.
				js := pods(1, 2, rl("cpu", "1"), nil)
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs,
					jstesting.MakeReplicatedJob("big").Replicas(1).Container("c", "").Requests(rl("cpu", "8")).Obj())
				return js
			}(),
			want: "m",
		},
		{
			name:    "the pods a node takes",
			members: []inventory.Member{summarized("m", nil, nodes(1, rl("cpu", "8", "pods", "2")))},
			job:     pods(1, 3, nil, nil),
			reasons: map[string]string{"m": "only 2 of 3 Pods fit at once"},
		},
		{
			name: "all nodes tainted: the other member",
			members: []inventory.Member{
				summarized("tainted", nil, tainted(nodes(8, cpu4gpu4), gpuTaint)),
				summarized("plain", nil, nodes(1, cpu4gpu4)),
			},
			job:     pods(1, 1, rl(gpu, "1"), nil),
			want:    "plain",
			reasons: map[string]string{"tainted": "Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule, on every node"},
		},
		{
			name:    "tolerated",
			members: []inventory.Member{summarized("tainted", nil, tainted(nodes(8, cpu4gpu4), gpuTaint))},
			job: pods(1, 1, rl(gpu, "1"), func(s *corev1.PodSpec) {
				s.Tolerations = []corev1.Toleration{{Key: gpu, Operator: corev1.TolerationOpExists}}
			}),
			want: "tainted",
		},
		{
			name: "PreferNoSchedule does not keep Pods off",
			members: []inventory.Member{summarized("soft", nil, tainted(nodes(1, cpu4gpu4),
				corev1.Taint{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}))},
			job:  pods(1, 1, rl(gpu, "1"), nil),
			want: "soft",
		},
		{
			name: "several taints",
			members: []inventory.Member{summarized("m", nil,
				tainted(nodes(1, cpu4gpu4), gpuTaint),
				tainted(nodes(1, cpu4gpu4), corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}))},
			job:     pods(1, 1, rl(gpu, "1"), nil),
			reasons: map[string]string{"m": "Pods do not tolerate taints maintenance:NoExecute, nvidia.com/gpu=present:NoSchedule; one is on every node"},
		},
		{
			name:    "nodeSelector matches no node",
			members: []inventory.Member{summarized("m", []string{"gpu"}, nodes(2, cpu4gpu4, "gpu", "a100"))},
			job:     pods(1, 1, rl(gpu, "1"), func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"gpu": "h100"} }),
			reasons: map[string]string{"m": "nodeSelector gpu=h100 matches no node"},
		},
		{
			name: "nodeSelector picks the group",
			members: []inventory.Member{summarized("m", []string{"gpu"},
				nodes(1, cpu4gpu4, "gpu", "a100"), nodes(1, rl("cpu", "64", gpu, "2"), "gpu", "h100"))},
			job:     pods(1, 1, rl(gpu, "4"), func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"gpu": "h100"} }),
			reasons: map[string]string{"m": "needs 4 nvidia.com/gpu in one Pod; its largest node the Pods may run on has 2"},
		},
		{
			name:    "a selector on a key the summary does not report counts as met",
			members: []inventory.Member{summarized("m", []string{"gpu"}, nodes(1, cpu4gpu4, "gpu", "a100"))},
			job: pods(1, 1, rl(gpu, "1"), func(s *corev1.PodSpec) {
				s.NodeSelector = map[string]string{"kubernetes.io/hostname": "n1", "gpu": "a100"}
			}),
			want: "m",
		},
		{
			name:    "required affinity matches no node",
			members: []inventory.Member{summarized("m", []string{"gpu"}, nodes(2, cpu4gpu4, "gpu", "a100"))},
			job:     pods(1, 1, rl(gpu, "1"), requiredAffinity(in("gpu", "h100", "b200"))),
			reasons: map[string]string{"m": "required node affinity matches no node"},
		},
		{
			name:    "required affinity: terms are ORed",
			members: []inventory.Member{summarized("m", []string{"gpu"}, nodes(2, cpu4gpu4, "gpu", "a100"))},
			job:     pods(1, 1, rl(gpu, "1"), requiredAffinity(in("gpu", "h100"), in("gpu", "a100"))),
			want:    "m",
		},
		{
			name:    "required affinity on an unreported key counts as met",
			members: []inventory.Member{summarized("m", []string{"gpu"}, nodes(2, cpu4gpu4, "gpu", "a100"))},
			job:     pods(1, 1, rl(gpu, "1"), requiredAffinity(in("gpu", "h100"), in("zone", "z1"))),
			want:    "m",
		},
		{
			name:    "init containers: the largest of them counts",
			members: []inventory.Member{summarized("m", nil, nodes(4, rl("cpu", "4")))},
			job: pods(1, 1, rl("cpu", "2"), func(s *corev1.PodSpec) {
				s.InitContainers = []corev1.Container{{Name: "warmup", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "5")}}}
			}),
			reasons: map[string]string{"m": "needs 5 cpu in one Pod; its largest node has 4"},
		},
		{
			name:    "sidecars add to the containers",
			members: []inventory.Member{summarized("m", nil, nodes(4, rl("cpu", "4")))},
			job: pods(1, 1, rl("cpu", "3"), func(s *corev1.PodSpec) {
				s.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
					Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1500m")}}}
			}),
			reasons: map[string]string{"m": "needs 4500m cpu in one Pod; its largest node has 4"},
		},
		{
			name:    "pod overhead",
			members: []inventory.Member{summarized("m", nil, nodes(4, rl("cpu", "4", "memory", "16Gi")))},
			job: pods(1, 1, rl("cpu", "4", "memory", "1Gi"), func(s *corev1.PodSpec) {
				s.Overhead = rl("cpu", "250m")
			}),
			reasons: map[string]string{"m": "needs 4250m cpu in one Pod; its largest node has 4"},
		},
		{
			name: "no node has all of it together",
			members: []inventory.Member{summarized("m", nil,
				nodes(1, rl("cpu", "64", gpu, "2")), nodes(1, rl("cpu", "8", gpu, "8")))},
			job:     pods(1, 1, rl("cpu", "32", gpu, "8"), nil),
			reasons: map[string]string{"m": "needs 32 cpu and 8 nvidia.com/gpu in one Pod; no node has all of it"},
		},
		{
			name: "a member that has none of a resource",
			members: []inventory.Member{func() inventory.Member {
				m := summarized("cpu-only", nil, nodes(4, rl("cpu", "64")))
				m.Allocatable[gpu], m.Free[gpu] = resource.MustParse("0"), resource.MustParse("0")
				return m
			}()},
			job:     pods(1, 1, rl(gpu, "1"), nil),
			reasons: map[string]string{"cpu-only": "needs 1 nvidia.com/gpu in one Pod; its largest node has 0"},
		},
		{
			name:      "commitments still count through the sums",
			members:   []inventory.Member{summarized("m", nil, nodes(2, cpu4gpu4))},
			job:       pods(1, 1, rl(gpu, "4"), nil),
			committed: map[string]corev1.ResourceList{"m": rl(gpu, "6")},
			reasons:   map[string]string{"m": "after 6 committed to recent dispatches"},
		},
		{
			name: "no schedulable nodes",
			members: []inventory.Member{func() inventory.Member {
				m := summarized("empty", nil)
				m.Allocatable, m.Free = rl("cpu", "0"), rl("cpu", "0")
				return m
			}()},
			job:     pods(1, 1, nil, nil),
			reasons: map[string]string{"empty": "has no schedulable nodes"},
		},
		{
			name:    "several replicatedJobs: the verdict names the one",
			members: []inventory.Member{summarized("m", nil, nodes(2, cpu4gpu4))},
			job: func() *jobset.JobSet {
				js := pods(1, 1, rl("cpu", "1"), nil)
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs,
					jstesting.MakeReplicatedJob("trainer").Replicas(1).Container("c", "").Requests(rl(gpu, "8")).Obj())
				return js
			}(),
			reasons: map[string]string{"m": "replicatedJob trainer: needs 8 nvidia.com/gpu in one Pod; its largest node has 4"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Place(Request{JobSet: tc.job, Members: tc.members, Committed: tc.committed, Policy: Spread})
			if err != nil {
				t.Fatal(err)
			}
			if r.Cluster != tc.want {
				t.Errorf("chose %q, want %q; %s", r.Cluster, tc.want, r.Explain())
			}
			for _, v := range r.Verdicts {
				if w, ok := tc.reasons[v.Cluster]; ok && !strings.Contains(v.Reason, w) {
					t.Errorf("reason for %s = %q, want it to contain %q", v.Cluster, v.Reason, w)
				}
			}
		})
	}
}

// TestPlaceExclusiveTopologyByNodes: when the summary reports the
// exclusive-topology key, each Job needs a domain of its own that holds
// all its Pods, and no other Pod shares it.
func TestPlaceExclusiveTopologyByNodes(t *testing.T) {
	node := rl("cpu", "8")
	racks := func(name string, n int, nodesPerRack int32) inventory.Member {
		var groups []fleet.NodeGroup
		for i := range n {
			groups = append(groups, nodes(nodesPerRack, node, "rack", string(rune('a'+i))))
		}
		return summarized(name, []string{"rack"}, groups...)
	}
	exclusive := func(jobs, podsPerJob int32) *jobset.JobSet {
		js := pods(jobs, podsPerJob, rl("cpu", "8"), nil)
		js.Annotations = map[string]string{jobset.ExclusiveKey: "rack"}
		return js
	}
	for _, tc := range []struct {
		name   string
		member inventory.Member
		job    *jobset.JobSet
		want   string // "" fits
	}{
		{"a rack per Job", racks("m", 4, 2), exclusive(4, 2), ""},
		{"too few racks", racks("m", 4, 2), exclusive(5, 1), `has 4 "rack" topology domains, 5 exclusive Jobs need one each`},
		{"racks too small for a Job", racks("m", 4, 2), exclusive(3, 3), `only 0 of 3 exclusive Jobs fit at once, each in a "rack" topology domain of its own`},
		{"one rack too small", func() inventory.Member {
			m := racks("m", 2, 2)
			m.Nodes.Groups[0].Free = []fleet.FreeNodes{{Count: 1, Free: node}, {Count: 1, Free: rl("cpu", "1")}}
			return m
		}(), exclusive(2, 2), `only 1 of 2 exclusive Jobs fit at once`},
		{"other Pods do not share a Job's rack", racks("m", 2, 2), func() *jobset.JobSet {
			js := pods(1, 1, rl("cpu", "8"), nil)
			js.Spec.ReplicatedJobs[0].Template.Annotations = map[string]string{jobset.ExclusiveKey: "rack"}
			js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs,
				jstesting.MakeReplicatedJob("others").Replicas(1).Parallelism(3).Container("c", "").Requests(rl("cpu", "8")).Obj())
			return js
		}(), "only 3 of 4 Pods fit at once"},
		{"a key the summary does not report: domain counts as before", func() inventory.Member {
			m := summarized("m", nil, nodes(8, node))
			m.TopologyDomains = map[string]int{"rack": 2}
			return m
		}(), exclusive(3, 1), `has 2 "rack" topology domains, 3 exclusive Jobs need one each`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Place(Request{JobSet: tc.job, Members: []inventory.Member{tc.member}})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && r.Cluster == "":
				t.Errorf("want a fit: %s", r.Explain())
			case tc.want != "" && (r.Cluster != "" || !strings.Contains(r.Verdicts[0].Reason, tc.want)):
				t.Errorf("verdict %q, want no fit with %q", r.Verdicts[0].Reason, tc.want)
			}
		})
	}
}

// TestCouldEverRun: the JobSet is unrunnable only when every member with a
// node summary could never hold some of its Pods; the verdicts say where
// and why, per replicatedJob.
func TestCouldEverRun(t *testing.T) {
	notReady := summarized("not-ready", nil, tainted(nodes(8, rl("cpu", "32", gpu, "4")),
		corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}))
	fours := summarized("fours", nil, nodes(8, rl("cpu", "32", gpu, "4")))
	twos := summarized("twos", nil, withFree(nodes(8, rl("cpu", "32", gpu, "2")), fleet.FreeNodes{Count: 8, Free: rl("cpu", "0", gpu, "0")}))
	tainted := summarized("tainted", []string{"gpu"}, tainted(nodes(8, rl("cpu", "32", gpu, "8"), "gpu", "h100"), gpuTaint))
	old := member("old-agent", "1000", "1000")
	type verdicts map[int][]Verdict
	for _, tc := range []struct {
		name    string
		job     *jobset.JobSet
		members []inventory.Member
		want    verdicts
	}{
		{"fits a node somewhere", pods(1, 1, rl(gpu, "4"), nil), []inventory.Member{fours, twos}, nil},
		{"busy now is not never", pods(1, 1, rl(gpu, "2"), nil), []inventory.Member{twos}, nil},
		{"larger than every node", pods(1, 1, rl(gpu, "8"), nil), []inventory.Member{fours, twos}, verdicts{0: {
			{Cluster: "fours", Reason: "needs 8 nvidia.com/gpu in one Pod; its largest node has 4"},
			{Cluster: "twos", Reason: "needs 8 nvidia.com/gpu in one Pod; its largest node has 2"},
		}}},
		{"only on tainted nodes", pods(1, 1, rl(gpu, "8"), nil), []inventory.Member{fours, tainted}, verdicts{0: {
			{Cluster: "fours", Reason: "needs 8 nvidia.com/gpu in one Pod; its largest node has 4"},
			{Cluster: "tainted", Reason: "Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule, on every node"},
		}}},
		{"tolerated", pods(1, 1, rl(gpu, "8"), func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: gpu, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		}), []inventory.Member{fours, tainted}, nil},
		{"selector", pods(1, 1, nil, func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"gpu": "b200"} }), []inventory.Member{tainted}, verdicts{0: {
			{Cluster: "tainted", Reason: "nodeSelector gpu=b200 matches no node"},
		}}},
		{"no member publishes a summary", pods(1, 1, rl(gpu, "64"), nil), []inventory.Member{old}, nil},
		{"a member without a summary may run it", pods(1, 1, rl(gpu, "8"), nil), []inventory.Member{fours, twos, old}, nil},
		// Nodes not ready now (a member starting, kwok or test clusters)
		// take no Pod now, but may later.
		{"nodes not ready now", pods(1, 1, rl(gpu, "4"), nil), []inventory.Member{notReady}, nil},
		{"each replicatedJob runs somewhere, never both on one member", func() *jobset.JobSet {
			js := pods(1, 1, rl(gpu, "8"), func(s *corev1.PodSpec) { s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}} })
			js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs,
				jstesting.MakeReplicatedJob("untolerating").Replicas(1).Container("c", "").Requests(rl(gpu, "1")).Obj())
			return js
		}(), []inventory.Member{fours, tainted}, verdicts{
			0: {{Cluster: "fours", Reason: "needs 8 nvidia.com/gpu in one Pod; its largest node has 4"}},
			1: {{Cluster: "tainted", Reason: "Pods do not tolerate taint nvidia.com/gpu=present:NoSchedule, on every node"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got verdicts
			for _, u := range CouldEverRun(tc.job, tc.members) {
				if got == nil {
					got = verdicts{}
				}
				got[u.Index] = u.Members
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("unrunnable (-want +got):\n%s", diff)
			}
		})
	}
}
