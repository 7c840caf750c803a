package placement

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

func rl(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func member(name string, allocCPU, freeCPU string, lbls ...string) inventory.Member {
	m := inventory.Member{Name: name, Healthy: true, Reason: "healthy", Labels: map[string]string{},
		Allocatable: rl("cpu", allocCPU), Free: rl("cpu", freeCPU)}
	for i := 0; i+1 < len(lbls); i += 2 {
		m.Labels[lbls[i]] = lbls[i+1]
	}
	return m
}

// jobSet is the JobSet team/train of replicas Jobs of parallelism pods
// asking cpu each.
func jobSet(replicas, parallelism int32, cpu string) *jstesting.JobSetWrapper {
	return jstesting.MakeJobSet("team", "train").UID("uid-1").ReplicatedJob(
		jstesting.MakeReplicatedJob("w").Replicas(replicas).Parallelism(parallelism).Container("c", "").Requests(rl("cpu", cpu)).Obj())
}

func TestRequests(t *testing.T) {
	j := jobSet(2, 3, "500m").Obj()
	// A second replicatedJob with a big init container and a sidecar.
	rj := jobset.ReplicatedJob{Name: "driver", Replicas: 1}
	ps := &rj.Template.Spec.Template.Spec
	ps.Containers = []corev1.Container{{Name: "main", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1", "memory", "1Gi")}}}
	ps.InitContainers = []corev1.Container{
		{Name: "sidecar", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), Resources: corev1.ResourceRequirements{Requests: rl("cpu", "100m")}},
		{Name: "warmup", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "4")}},
		{Name: "limits-only", Resources: corev1.ResourceRequirements{Limits: rl("nvidia.com/gpu", "1")}},
	}
	j.Spec.ReplicatedJobs = append(j.Spec.ReplicatedJobs, rj)
	got := Requests(&j.Spec)
	// workers: 2*3*0.5 = 3 cpu. driver: max(1+0.1, 4+0.1) = 4.1 cpu, 1Gi, 1 gpu.
	want := rl("cpu", "7100m", "memory", "1Gi", "nvidia.com/gpu", "1")
	if len(got) != len(want) {
		t.Fatalf("Requests = %v, want %v", got, want)
	}
	for n, q := range want {
		if g := got[n]; g.Cmp(q) != 0 {
			t.Errorf("Requests[%s] = %s, want %s", n, g.String(), q.String())
		}
	}
}

func TestPlaceFilters(t *testing.T) {
	unhealthy := member("sick", "10", "10")
	unhealthy.Healthy, unhealthy.Reason = false, "heartbeat not renewed within 30s"
	cordoned := member("maint", "10", "10")
	cordoned.Cordoned = true
	members := []inventory.Member{
		member("a", "10", "2", "region", "eu"),
		member("b", "10", "8", "region", "us"),
		member("c", "10", "9", "region", "eu"),
		unhealthy,
		cordoned,
	}
	tests := []struct {
		name      string
		job       *jobset.JobSet
		committed map[string]corev1.ResourceList
		excluded  map[string]string
		want      string
		reasons   map[string]string
		note      string
	}{
		{
			name: "fit and health",
			job:  jobSet(1, 4, "1").Obj(),
			want: "c",
			reasons: map[string]string{
				"a":     "insufficient resources: needs cpu 4, 2 free",
				"b":     "fits; 40% of cpu free after placement",
				"c":     "chosen by spread policy; fits; 50% of cpu free",
				"sick":  "unhealthy: heartbeat not renewed within 30s",
				"maint": "cordoned by an operator",
			},
		},
		{
			// The emptiest member, but cordoned: the JobSet goes elsewhere.
			name:    "cordoned",
			job:     jobSet(1, 1, "1").Obj(),
			want:    "c",
			reasons: map[string]string{"maint": "cordoned by an operator"},
		},
		{
			name:    "pinned to a cordoned member waits",
			job:     jobSet(1, 1, "1").Annotation(fleet.PinnedClusterAnnotation, "maint").Obj(),
			reasons: map[string]string{"maint": "cordoned by an operator"},
		},
		{
			name:      "commitments count against free",
			job:       jobSet(1, 4, "1").Obj(),
			committed: map[string]corev1.ResourceList{"c": rl("cpu", "6")},
			want:      "b",
			reasons:   map[string]string{"c": "needs cpu 4, 3 free after 6 committed to recent dispatches"},
		},
		{
			name:    "selector",
			job:     jobSet(1, 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "region=us").Obj(),
			want:    "b",
			reasons: map[string]string{"c": `labels do not match selector "region=us"`},
		},
		{
			name:    "pinned",
			job:     jobSet(1, 1, "1").Annotation(fleet.PinnedClusterAnnotation, "a").Obj(),
			want:    "a",
			reasons: map[string]string{"b": `not the pinned cluster "a"`},
		},
		{
			name: "pinned to an unknown cluster",
			job:  jobSet(1, 1, "1").Annotation(fleet.PinnedClusterAnnotation, "zz").Obj(),
			note: `pinned cluster "zz" is not in the fleet`,
		},
		{
			name:     "excluded (lost member)",
			job:      jobSet(1, 1, "1").Obj(),
			excluded: map[string]string{"c": "member lost"},
			want:     "b",
			reasons:  map[string]string{"c": "member lost"},
		},
		{
			name: "nothing fits",
			job:  jobSet(2, 5, "1").Obj(),
			reasons: map[string]string{
				"b": "needs cpu 10, 8 free",
				"c": "needs cpu 10, 9 free",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Place(Request{JobSet: tc.job, Members: members, Committed: tc.committed, Excluded: tc.excluded, Policy: Spread})
			if err != nil {
				t.Fatal(err)
			}
			if r.Cluster != tc.want {
				t.Errorf("chose %q, want %q; %s", r.Cluster, tc.want, r.Explain())
			}
			if len(r.Verdicts) != len(members) {
				t.Errorf("want a verdict per member, got %d", len(r.Verdicts))
			}
			for _, v := range r.Verdicts {
				if w, ok := tc.reasons[v.Cluster]; ok && !strings.Contains(v.Reason, w) {
					t.Errorf("reason for %s = %q, want it to contain %q", v.Cluster, v.Reason, w)
				}
			}
			if tc.note != "" && !strings.Contains(r.Explain(), tc.note) {
				t.Errorf("Explain() = %q, want %q", r.Explain(), tc.note)
			}
		})
	}
}

func TestPlaceBadSelector(t *testing.T) {
	_, err := Place(Request{JobSet: jobSet(1, 1, "1").Annotation(fleet.ClusterSelectorAnnotation, "a in (").Obj()})
	if err == nil || !strings.Contains(err.Error(), fleet.ClusterSelectorAnnotation) {
		t.Fatalf("want an error naming the annotation, got %v", err)
	}
}

func TestPolicies(t *testing.T) {
	members := []inventory.Member{member("big", "100", "60"), member("small", "10", "8")}
	// After placing 2 cpu: big 58% free, small 60% free.
	for _, tc := range []struct {
		policy Policy
		want   string
	}{{Spread, "small"}, {BinPack, "big"}, {"", "small"}} {
		r, err := Place(Request{JobSet: jobSet(1, 2, "1").Obj(), Members: members, Policy: tc.policy})
		if err != nil {
			t.Fatal(err)
		}
		if r.Cluster != tc.want {
			t.Errorf("policy %q chose %q, want %q: %s", tc.policy, r.Cluster, tc.want, r.Explain())
		}
	}
}

func TestParsePolicy(t *testing.T) {
	if p, err := ParsePolicy("BinPack"); err != nil || p != BinPack {
		t.Errorf("ParsePolicy(BinPack) = %q, %v", p, err)
	}
	if _, err := ParsePolicy("random"); err == nil {
		t.Error("want an error for an unknown policy")
	}
}

// TestBurstSpreadsByCapacity places 50 one-cpu JobSets in a row, each
// counting the ones before it as commitments, as the dispatcher does before
// members report: they must land in proportion to capacity, never overflow.
func TestBurstSpreadsByCapacity(t *testing.T) {
	members := []inventory.Member{member("m40", "40", "40"), member("m20", "20", "20"), member("m2", "2", "2")}
	for _, policy := range []Policy{Spread, BinPack} {
		committed := map[string]corev1.ResourceList{}
		counts := map[string]int{}
		for range 50 {
			r, err := Place(Request{JobSet: jobSet(1, 1, "1").Obj(), Members: members, Committed: committed, Policy: policy})
			if err != nil {
				t.Fatal(err)
			}
			if r.Cluster == "" {
				t.Fatalf("%s: no fit with capacity left: %s", policy, r.Explain())
			}
			counts[r.Cluster]++
			if committed[r.Cluster] == nil {
				committed[r.Cluster] = corev1.ResourceList{}
			}
			AddTo(committed[r.Cluster], r.Requests)
		}
		switch policy {
		case Spread:
			// Equal free fractions: 62 cpu, 50 used → about 19% left everywhere.
			if counts["m40"] < 31 || counts["m40"] > 34 || counts["m20"] < 15 || counts["m20"] > 18 || counts["m2"] > 2 {
				t.Errorf("spread: counts %v, want about 32/16/2", counts)
			}
		case BinPack:
			// Fill the fullest first: m2, then m20, then the rest on m40.
			if counts["m2"] != 2 || counts["m20"] != 20 || counts["m40"] != 28 {
				t.Errorf("binpack: counts %v, want m2=2 m20=20 m40=28", counts)
			}
		}
	}
}

func TestDecision(t *testing.T) {
	j := jobSet(1, 1, "1").Obj()
	r, err := Place(Request{JobSet: j, Members: []inventory.Member{member("a", "4", "4")}})
	if err != nil {
		t.Fatal(err)
	}
	pd := Decision(j, r, "fleet-system")
	if pd.Namespace != "team" || pd.Name != "train" {
		t.Errorf("decision %s/%s, want team/train", pd.Namespace, pd.Name)
	}
	wantRef := []clusterinventory.ClusterProfileReference{{Namespace: "fleet-system", Name: "a"}}
	var gotRef []clusterinventory.ClusterProfileReference
	for _, d := range pd.Decisions {
		gotRef = append(gotRef, d.ClusterProfileRef)
	}
	if d := cmp.Diff(wantRef, gotRef); d != "" {
		t.Errorf("decisions (-want +got):\n%s", d)
	} else if !strings.Contains(pd.Decisions[0].Reason, "chosen by spread policy") {
		t.Errorf("decision reason %q, want chosen by spread policy", pd.Decisions[0].Reason)
	}
	if !*pd.OwnerReferences[0].Controller || pd.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("decision must be controlled by the JobSet: %+v", pd.OwnerReferences)
	}
	none := Decision(j, Result{Verdicts: []Verdict{{Cluster: "a", Reason: "unhealthy"}}}, "fleet-system")
	if none.Decisions == nil || len(none.Decisions) != 0 || none.Annotations[ReasonsAnnotation] != "a: unhealthy" {
		t.Errorf("pending decision: %+v", none)
	}
}

func TestPlaceExclusiveTopologyNeedsADomainPerJob(t *testing.T) {
	withRacks := func(m inventory.Member, racks int) inventory.Member {
		m.TopologyDomains = map[string]int{"rack": racks}
		return m
	}
	members := []inventory.Member{
		withRacks(member("four-racks", "100", "50"), 4),
		withRacks(member("two-racks", "100", "100"), 2),
		member("unreported", "100", "100"),
	}
	// 4 exclusive Jobs: spread would prefer the emptier members, but only
	// four-racks has a rack for each Job.
	res, err := Place(Request{JobSet: jobSet(4, 1, "1").Annotation(jobset.ExclusiveKey, "rack").Obj(), Members: members, Policy: Spread})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cluster != "four-racks" {
		t.Fatalf("chose %q, want four-racks; %s", res.Cluster, res.Explain())
	}
	for _, want := range []string{`two-racks: has 2 "rack" topology domains, 4 exclusive Jobs need one each`, `unreported: does not report "rack" topology domains`} {
		if !strings.Contains(res.Explain(), want) {
			t.Errorf("explanation %q lacks %q", res.Explain(), want)
		}
	}

	// The annotation on a ReplicatedJob's template counts that one's Jobs.
	j := jobSet(3, 1, "1").Obj()
	j.Spec.ReplicatedJobs[0].Template.Annotations = map[string]string{jobset.ExclusiveKey: "rack"}
	if got := ExclusiveJobs(j); got["rack"] != 3 || len(got) != 1 {
		t.Errorf("ExclusiveJobs = %v, want rack:3", got)
	}
	if got := ExclusiveJobs(jobSet(3, 1, "1").Obj()); len(got) != 0 {
		t.Errorf("ExclusiveJobs without the annotation = %v", got)
	}
}

// TestSpreadByLoad: JobSets that request nothing still spread (by how many
// each member runs), bin-pack fills one member, and load breaks score ties.
func TestSpreadByLoad(t *testing.T) {
	j := jobSet(1, 1, "0").Obj()
	j.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
	members := []inventory.Member{member("a", "8", "8"), member("b", "8", "8"), member("c", "8", "8")}
	load := map[string]int{"a": 3, "b": 1, "c": 2}
	for _, tc := range []struct {
		policy Policy
		want   string
	}{{Spread, "b"}, {BinPack, "a"}} {
		r, err := Place(Request{JobSet: j, Members: members, Load: load, Policy: tc.policy})
		if err != nil || r.Cluster != tc.want {
			t.Errorf("%s: chose %q (%v), want %q", tc.policy, r.Cluster, err, tc.want)
		}
	}
	// Equal scores with requests: the less loaded member wins under spread.
	r, _ := Place(Request{JobSet: jobSet(1, 1, "1").Obj(), Members: members, Load: load, Policy: Spread})
	if r.Cluster != "b" {
		t.Errorf("score tie: chose %q, want b", r.Cluster)
	}
}

func TestAllowedNamespaces(t *testing.T) {
	only := member("only-other", "8", "8")
	only.AllowedNamespaces = []string{"other"}
	open := member("open", "4", "4")
	r, _ := Place(Request{JobSet: jobSet(1, 1, "1").Obj(), Members: []inventory.Member{only, open}})
	if r.Cluster != "open" || !strings.Contains(r.Explain(), `only-other: namespace "team" is not among the namespaces allowed on this member`) {
		t.Errorf("chose %q: %s", r.Cluster, r.Explain())
	}
	only.AllowedNamespaces = []string{"team"}
	if r, _ := Place(Request{JobSet: jobSet(1, 1, "1").Obj(), Members: []inventory.Member{only, open}}); r.Cluster != "only-other" {
		t.Errorf("allowed namespace: chose %q: %s", r.Cluster, r.Explain())
	}
}

// TestPodLevelResources: pod-level requests (or limits) replace the
// containers' sum, as the scheduler counts them.
func TestPodLevelResources(t *testing.T) {
	spec := &corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}},
		Resources:  &corev1.ResourceRequirements{Limits: rl("cpu", "3", "memory", "2Gi")},
	}
	got := PodRequests(spec)
	if q := got[corev1.ResourceCPU]; q.Cmp(resource.MustParse("3")) != 0 {
		t.Errorf("cpu = %s, want the pod-level 3", q.String())
	}
	if q := got[corev1.ResourceMemory]; q.Cmp(resource.MustParse("2Gi")) != 0 {
		t.Errorf("memory = %s, want 2Gi", q.String())
	}
	if spec.Resources.Requests != nil || spec.Containers[0].Resources.Limits != nil {
		t.Error("PodRequests must not modify the template it reads")
	}
}

// TestVolumeClaimPolicies: claims are provisioned on the member that runs
// the JobSet, so it must have their storage classes.
func TestVolumeClaimPolicies(t *testing.T) {
	j := jobSet(1, 1, "1").Obj()
	j.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{Templates: []corev1.PersistentVolumeClaim{
		{ObjectMeta: metav1.ObjectMeta{Name: "ckpt"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}},
	}}}
	none := member("none", "8", "8")
	defaultOnly := member("default-only", "8", "8")
	defaultOnly.StorageClasses = map[string]bool{"standard": true}
	both := member("both", "4", "4")
	both.StorageClasses = map[string]bool{"standard": true, "fast": false}
	r, _ := Place(Request{JobSet: j, Members: []inventory.Member{none, defaultOnly, both}})
	if r.Cluster != "both" {
		t.Errorf("chose %q: %s", r.Cluster, r.Explain())
	}
	for _, want := range []string{
		"none: has no default storage class for volumeClaimPolicies[0].templates[0] (ckpt)",
		`default-only: has no storage class "fast" for volumeClaimPolicies[0].templates[1] (data)`,
	} {
		if !strings.Contains(r.Explain(), want) {
			t.Errorf("explanation %q lacks %q", r.Explain(), want)
		}
	}
}

func TestDeniedNamespacesPlaceNowhere(t *testing.T) {
	for _, tc := range []struct {
		ns     string
		denied []string
		placed bool
	}{
		{ns: "team", placed: true},
		{ns: "kube-system"},
		{ns: fleet.MemberNamespace("m1")},
		{ns: "team", denied: []string{"te*"}},
	} {
		js := jobSet(1, 1, "1").Obj()
		js.Namespace = tc.ns
		res, err := Place(Request{JobSet: js, Members: []inventory.Member{member("m1", "8", "8")}, DeniedNamespaces: tc.denied})
		if err != nil {
			t.Fatal(err)
		}
		if placed := res.Cluster != ""; placed != tc.placed {
			t.Errorf("namespace %s, denied %q: placed on %q (%s), want placed %v", tc.ns, tc.denied, res.Cluster, res.Explain(), tc.placed)
		}
		if !tc.placed && !strings.Contains(res.Explain(), "does not run JobSets of namespace "+tc.ns) {
			t.Errorf("namespace %s: explanation %q does not say why", tc.ns, res.Explain())
		}
	}
}

func TestExplainIsBounded(t *testing.T) {
	res := Result{Note: strings.Repeat("n", 10000)}
	for i := range 200 {
		res.Verdicts = append(res.Verdicts, Verdict{Cluster: fmt.Sprintf("member-%03d", i), Reason: "unhealthy: " + strings.Repeat("x", 5000)})
	}
	got := res.Explain()
	if len(got) > MaxExplain {
		t.Errorf("Explain is %d bytes, want at most %d", len(got), MaxExplain)
	}
	if !strings.Contains(got, "member-000: unhealthy") || !regexp.MustCompile(`… and \d+ more members$`).MatchString(got) {
		t.Errorf("Explain = %q: want the first members and how many more", got)
	}
	short := Result{Verdicts: []Verdict{{Cluster: "a", Reason: "fits"}, {Cluster: "b", Reason: "unhealthy"}}}
	if got, want := short.Explain(), "a: fits; b: unhealthy"; got != want {
		t.Errorf("Explain = %q, want %q", got, want)
	}
}
