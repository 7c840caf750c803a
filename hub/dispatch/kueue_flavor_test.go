package dispatch

import (
	"strings"
	"testing"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// TestFlavorPerMember: a JobSet Kueue admitted on a member's flavor is
// placed on that member, even when placement prefers another, and its
// copy does not carry the member key; the flavor's other labels stay.
func TestFlavorPerMember(t *testing.T) {
	selector := func(sel ...map[string]string) *jobset.JobSet {
		js := inKueue(planJobSet(jobset.FleetStatus{}), "team-a", false)
		base := js.Spec.ReplicatedJobs[0]
		js.Spec.ReplicatedJobs = nil
		for i, s := range sel {
			rj := *base.DeepCopy()
			rj.Name = string(rune('w' + i))
			rj.Template.Spec.Template.Spec.NodeSelector = s
			js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, rj)
		}
		return js
	}
	tests := []struct {
		name        string
		js          *jobset.JobSet
		wantMember  string
		wantSays    string
		wantCopySel map[string]string
	}{{
		name:       "no member named: placement chooses (spread: a)",
		js:         selector(map[string]string{"pool": "x"}),
		wantMember: "a", wantCopySel: map[string]string{"pool": "x"},
	}, {
		name:       "flavor of member b: placed on b, key stripped, the flavor's other label kept",
		js:         selector(map[string]string{fleet.MemberNodeLabel: "b", "pool": "x"}),
		wantMember: "b", wantCopySel: map[string]string{"pool": "x"},
	}, {
		name:       "only the member key: the copy has no nodeSelector",
		js:         selector(map[string]string{fleet.MemberNodeLabel: "b"}),
		wantMember: "b",
	}, {
		name:     "flavors of two members for two replicated Jobs: not placed, says why",
		js:       selector(map[string]string{fleet.MemberNodeLabel: "a"}, map[string]string{fleet.MemberNodeLabel: "b"}),
		wantSays: "flavors of different members (" + fleet.MemberNodeLabel + "=a, b)",
	}, {
		name:     "flavor of a member not in the fleet: not placed, says which",
		js:       selector(map[string]string{fleet.MemberNodeLabel: "gone"}),
		wantSays: "ResourceFlavor of member gone",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			members := []inventory.Member{planMember("a"), planMember("b")}
			o := Observed{JobSet: tc.js, Members: map[string]inventory.Member{}, Now: t0, LostTimeout: lostAfter, KueueOnHub: true}
			for _, m := range members {
				o.Members[m.Name] = m
			}
			p, err := ComputePlan(o, func(excluded map[string]string) (Choice, error) {
				res, err := placement.Place(placement.Request{JobSet: tc.js, Members: members, Excluded: excluded, Policy: placement.Spread})
				return Choice{Result: res}, err
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantMember == "" {
				if p.Create != nil {
					t.Fatalf("placed on %s", memberOf(p.Create))
				}
				if p.Decision == nil || !strings.Contains(p.Decision.Explain(), tc.wantSays) {
					t.Errorf("placement says %v, want %q", p.Decision, tc.wantSays)
				}
				return
			}
			if p.Create == nil || memberOf(p.Create) != tc.wantMember {
				t.Fatalf("created %v, want a dispatch on %s", p.Create, tc.wantMember)
			}
			got := p.Create.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector
			if len(got) != len(tc.wantCopySel) || got["pool"] != tc.wantCopySel["pool"] {
				t.Errorf("copy's nodeSelector %v, want %v", got, tc.wantCopySel)
			}
			if tc.js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector[fleet.MemberNodeLabel] == "" && tc.wantMember == "b" {
				t.Error("the hub JobSet lost its member key: only the copy is stripped")
			}
		})
	}
}
