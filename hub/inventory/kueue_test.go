package inventory

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// kueueProps cuts raw into kueue-quotas properties of n characters.
func kueueProps(raw string, n int) []clusterinventory.Property {
	var props []clusterinventory.Property
	for i := 0; raw != ""; i++ {
		k := min(n, len(raw))
		props = append(props, clusterinventory.Property{Name: fleet.KueueQuotasPart(i), Value: raw[:k]})
		raw = raw[k:]
	}
	return props
}

func TestParseKueueQuotas(t *testing.T) {
	good := fleet.KueueQuotas{
		LocalQueues: []fleet.KueueLocalQueue{{Namespace: "team", Name: "team-a", ClusterQueue: "cq"}},
		ClusterQueues: []fleet.KueueClusterQueue{{Name: "cq", ResourceGroups: []fleet.KueueResourceGroup{{Flavors: []fleet.KueueFlavorFree{
			{Name: "default", Free: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}},
		}}}}},
	}
	raw, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	negative := strings.Replace(string(raw), `"cpu":"3"`, `"cpu":"-3"`, 1)
	cases := []struct {
		name    string
		props   []clusterinventory.Property
		want    bool   // quotas returned
		wantErr string // part of the error
	}{
		{"none published: no Kueue, no error", nil, false, ""},
		{"in one part", kueueProps(string(raw), 1024), true, ""},
		{"in many parts", kueueProps(string(raw), 16), true, ""},
		{"malformed", kueueProps(`{"localQueues":[`, 1024), false, "not JSON"},
		{"negative free", kueueProps(negative, 1024), false, "negative free cpu"},
		{"too many parts", kueueProps(strings.Repeat(" ", MaxKueueQuotasParts+1)+string(raw), 1), false, "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ParseKueueQuotas(tc.props)
			if (q != nil) != tc.want || (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %+v, %v; want quotas %v, error %q", q, err, tc.want, tc.wantErr)
			}
			if q == nil {
				return
			}
			lq, cq := LocalQueue(q, "team", "team-a")
			if lq == nil || cq == nil || cq.Name != "cq" {
				t.Errorf("LocalQueue team/team-a: %+v %+v", lq, cq)
			}
			if lq, _ := LocalQueue(q, "other", "team-a"); lq != nil {
				t.Error("found a LocalQueue of another namespace")
			}
		})
	}
}
