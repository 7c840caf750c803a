package crd

import (
	"slices"
	"testing"
)

// The binary carries the CRDs a member needs, with their schemas.
func TestMember(t *testing.T) {
	crds, err := Member()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, crd := range crds {
		names = append(names, crd.GetName())
		if _, ok := crd.Object["spec"].(map[string]any)["versions"]; !ok {
			t.Errorf("CRD %s has no versions", crd.GetName())
		}
	}
	want := []string{"jobsetdispatches.fleet.jobset.x-k8s.io", "jobsets.jobset.x-k8s.io"}
	if !slices.Equal(names, want) {
		t.Errorf("embedded CRDs are %v, want %v", names, want)
	}
}
