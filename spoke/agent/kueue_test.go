package agent

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// clusterQueue is a ClusterQueue as Kueue serves it, from YAML-like JSON.
func clusterQueue(t *testing.T, name, cohort string, active bool, flavors, reserved string) kueueClusterQueue {
	t.Helper()
	status := "False"
	if active {
		status = "True"
	}
	doc := `{"metadata":{"name":"` + name + `"},"spec":{"cohortName":"` + cohort + `","resourceGroups":[{"coveredResources":["cpu","memory"],"flavors":` + flavors + `}]},` +
		`"status":{"conditions":[{"type":"Active","status":"` + status + `","reason":"R","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}],"flavorsReservation":` + reserved + `}}`
	var cq kueueClusterQueue
	if err := json.Unmarshal([]byte(doc), &cq); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	return cq
}

func localQueue(ns, name, cq string) kueueLocalQueue {
	lq := kueueLocalQueue{Metadata: metav1.ObjectMeta{Namespace: ns, Name: name}}
	lq.Spec.ClusterQueue = cq
	return lq
}

func freeOf(t *testing.T, q fleet.KueueQuotas, cq, flavor string) corev1.ResourceList {
	t.Helper()
	for _, c := range q.ClusterQueues {
		if c.Name != cq {
			continue
		}
		for _, rg := range c.ResourceGroups {
			for _, f := range rg.Flavors {
				if f.Name == flavor {
					return f.Free
				}
			}
		}
	}
	t.Fatalf("no flavor %s of ClusterQueue %s in %+v", flavor, cq, q)
	return nil
}

func TestComputeKueueQuotas(t *testing.T) {
	const oneFlavor = `[{"name":"default","resources":[{"name":"cpu","nominalQuota":"8"},{"name":"memory","nominalQuota":"32Gi"}]}]`
	cases := []struct {
		name string
		lqs  []kueueLocalQueue
		cqs  []kueueClusterQueue
		// want is, per ClusterQueue, its flavor default's free cpu ("" for
		// a ClusterQueue that must not be reported).
		want map[string]string
	}{
		{
			name: "nominal minus reserved",
			lqs:  []kueueLocalQueue{localQueue("ns", "team-a", "team-a")},
			cqs: []kueueClusterQueue{clusterQueue(t, "team-a", "", true, oneFlavor,
				`[{"name":"default","resources":[{"name":"cpu","total":"6"},{"name":"memory","total":"1Gi"}]}]`)},
			want: map[string]string{"team-a": "2"},
		},
		{
			name: "a full queue has none free, not less than none",
			lqs:  []kueueLocalQueue{localQueue("ns", "team-a", "team-a")},
			cqs: []kueueClusterQueue{clusterQueue(t, "team-a", "", true, oneFlavor,
				`[{"name":"default","resources":[{"name":"cpu","total":"9"}]}]`)},
			want: map[string]string{"team-a": "0"},
		},
		{
			name: "an inactive queue has nothing free",
			lqs:  []kueueLocalQueue{localQueue("ns", "team-a", "team-a")},
			cqs:  []kueueClusterQueue{clusterQueue(t, "team-a", "", false, oneFlavor, `[]`)},
			want: map[string]string{"team-a": "0"},
		},
		{
			name: "borrows what the cohort leaves unused, within the borrowing limit and the others' lending limits",
			lqs:  []kueueLocalQueue{localQueue("ns", "team-a", "team-a"), localQueue("ns", "team-b", "team-b")},
			cqs: []kueueClusterQueue{
				clusterQueue(t, "team-a", "shared", true, `[{"name":"default","resources":[{"name":"cpu","nominalQuota":"4","borrowingLimit":"10"}]}]`,
					`[{"name":"default","resources":[{"name":"cpu","total":"4"}]}]`),
				clusterQueue(t, "team-b", "shared", true, `[{"name":"default","resources":[{"name":"cpu","nominalQuota":"8","lendingLimit":"5"}]}]`,
					`[{"name":"default","resources":[{"name":"cpu","total":"2"}]}]`),
				clusterQueue(t, "team-c", "shared", true, `[{"name":"default","resources":[{"name":"cpu","nominalQuota":"2"}]}]`, `[]`),
				clusterQueue(t, "other", "elsewhere", true, `[{"name":"default","resources":[{"name":"cpu","nominalQuota":"100"}]}]`, `[]`),
			},
			// team-a: 0 own + min(10, 5 from team-b + 2 from team-c);
			// team-b: 6 own + min(unlimited, 0 from team-a + 2 from team-c).
			// team-c and other: no LocalQueue, not reported.
			want: map[string]string{"team-a": "7", "team-b": "8", "team-c": "", "other": ""},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := ComputeKueueQuotas(tc.lqs, tc.cqs)
			for cq, want := range tc.want {
				if want == "" {
					for _, c := range q.ClusterQueues {
						if c.Name == cq {
							t.Errorf("ClusterQueue %s reported though no LocalQueue names it", cq)
						}
					}
					continue
				}
				got := freeOf(t, q, cq, "default")[corev1.ResourceCPU]
				if got.Cmp(resource.MustParse(want)) != 0 {
					t.Errorf("ClusterQueue %s: free cpu %s, want %s", cq, got.String(), want)
				}
			}
		})
	}
}

func TestComputeKueueQuotasStaysBounded(t *testing.T) {
	var lqs []kueueLocalQueue
	var cqs []kueueClusterQueue
	for i := range 2 * MaxKueueLocalQueues {
		name := "queue-with-a-rather-long-name-" + strings.Repeat("x", 20) + "-" + string(rune('a'+i%26)) + "-" + strings.Repeat("y", i%7) + "-" + itoa(i)
		lqs = append(lqs, localQueue("namespace-"+itoa(i), name, name))
		cqs = append(cqs, clusterQueue(t, name, "", true,
			`[{"name":"default","resources":[{"name":"cpu","nominalQuota":"8"},{"name":"memory","nominalQuota":"32Gi"}]}]`, `[]`))
	}
	q := ComputeKueueQuotas(lqs, cqs)
	raw, _ := json.Marshal(q)
	if len(raw) > MaxKueueQuotasBytes {
		t.Errorf("%d bytes of JSON, more than %d", len(raw), MaxKueueQuotasBytes)
	}
	if int(q.Omitted)+len(q.LocalQueues) != len(lqs) || q.Omitted == 0 {
		t.Errorf("%d reported and %d omitted of %d LocalQueues", len(q.LocalQueues), q.Omitted, len(lqs))
	}
	if len(q.ClusterQueues) != len(q.LocalQueues) {
		t.Errorf("%d ClusterQueues for %d LocalQueues naming one each", len(q.ClusterQueues), len(q.LocalQueues))
	}
	props := KueueQuotasProperties(q, metav1.Now())
	var joined strings.Builder
	for i, p := range props {
		if p.Name != fleet.KueueQuotasPart(i) || len(p.Value) > fleet.MaxPropertyValue {
			t.Errorf("property %d: %s of %d characters", i, p.Name, len(p.Value))
		}
		joined.WriteString(p.Value)
	}
	if joined.String() != string(raw) {
		t.Error("the properties do not join into the quotas' JSON")
	}
}

func itoa(i int) string { return resource.NewQuantity(int64(i), resource.DecimalSI).String() }

// TestLeaveToKueue: on a copy the member's Kueue manages, the agent
// applies the dispatch's labels and scaling but never Kueue's fields:
// suspend either way, nor the pod template Kueue changed on admission.
func TestLeaveToKueue(t *testing.T) {
	desired := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{fleet.KueueQueueNameLabel: "team-a", "app": "new"}},
		Spec:       jobset.JobSetSpec{Suspend: ptr.To(false), ReplicatedJobs: []jobset.ReplicatedJob{{Name: "w"}}},
	}
	desired.Spec.ReplicatedJobs[0].Template.Spec.Parallelism = ptr.To[int32](4)
	admitted := desired.DeepCopy()
	admitted.Labels["app"] = "old"
	admitted.Spec.ReplicatedJobs[0].Template.Spec.Parallelism = ptr.To[int32](2)
	pod := &admitted.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
	pod.NodeSelector = map[string]string{"example.com/pool": "kueue"}
	pod.Tolerations = []corev1.Toleration{{Key: "example.com/dedicated", Operator: corev1.TolerationOpExists}}
	pod.SchedulingGates = []corev1.PodSchedulingGate{{Name: "kueue.x-k8s.io/topology"}}
	held := desired.DeepCopy()
	held.Spec.Suspend = ptr.To(true)
	heldGated := held.DeepCopy()
	heldGated.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "kueue.x-k8s.io/admission"}}

	cases := []struct {
		name             string
		current, desired *jobset.JobSet
		wantSuspend      bool
	}{
		{"held by Kueue, the hub wants it running: stays suspended", held, desired, true},
		{"admitted by Kueue, the hub wants it suspended: stays running", admitted, func() *jobset.JobSet { d := desired.DeepCopy(); d.Spec.Suspend = ptr.To(true); return d }(), false},
		{"admitted by Kueue: its pod template stays", admitted, desired, false},
		{"held by Kueue with a scheduling gate: the gate stays", heldGated, desired, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			updated := MergeMutable(tc.current, LeaveToKueue(tc.current, tc.desired))
			if updated == nil {
				updated = tc.current
			}
			if updated.IsSuspended() != tc.wantSuspend {
				t.Errorf("suspend=%v, want %v", updated.IsSuspended(), tc.wantSuspend)
			}
			got := updated.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
			want := tc.current.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
			if len(got.NodeSelector) != len(want.NodeSelector) || len(got.Tolerations) != len(want.Tolerations) || len(got.SchedulingGates) != len(want.SchedulingGates) {
				t.Errorf("pod template changed: %+v, was %+v", got, want)
			}
			if updated.Labels["app"] != "new" || *updated.Spec.ReplicatedJobs[0].Template.Spec.Parallelism != 4 {
				t.Errorf("labels %v, parallelism %d: the dispatch's must still apply", updated.Labels, *updated.Spec.ReplicatedJobs[0].Template.Spec.Parallelism)
			}
		})
	}
	// Without Kueue the same admitted-looking copy is resumed and its
	// template set from the dispatch, as before.
	if u := MergeMutable(heldGated, desired); u == nil || u.IsSuspended() || len(u.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.SchedulingGates) != 0 {
		t.Error("a copy no Kueue manages is not resumed with the dispatch's pod template")
	}
}
