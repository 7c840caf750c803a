package agent

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func TestShouldFence(t *testing.T) {
	for _, tc := range []struct {
		since time.Duration
		want  bool
	}{{0, false}, {29 * time.Second, false}, {30 * time.Second, true}, {time.Hour, true}} {
		if got := ShouldFence(tc.since, 30*time.Second); got != tc.want {
			t.Errorf("ShouldFence(%s, 30s) = %v, want %v", tc.since, got, tc.want)
		}
	}
}

func TestFenceActions(t *testing.T) {
	js := func(name, dispatch string, suspended, deleting bool) v1alpha2.JobSet {
		j := v1alpha2.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if dispatch != "" {
			j.Annotations = map[string]string{fleetv1alpha1.DispatchAnnotation: dispatch}
		}
		j.Spec.Suspend = ptr.To(suspended)
		if deleting {
			j.DeletionTimestamp = &now
		}
		return j
	}
	all := []v1alpha2.JobSet{
		js("fleet-running", "fleet-member-a/ns.x", false, false),
		js("fleet-suspended", "fleet-member-a/ns.y", true, false),
		js("fleet-deleting", "fleet-member-a/ns.z", false, true),
		js("other-member", "fleet-member-b/ns.x", false, false),
		js("local", "", false, false),
	}
	names := func(l []*v1alpha2.JobSet) []string {
		var out []string
		for _, j := range l {
			out = append(out, j.Name)
		}
		return out
	}
	suspend, del := FenceActions(all, "fleet-member-a", FenceSuspend)
	if got := names(suspend); len(got) != 1 || got[0] != "fleet-running" || len(del) != 0 {
		t.Errorf("suspend: got suspend=%v delete=%v", got, names(del))
	}
	suspend, del = FenceActions(all, "fleet-member-a", FenceDelete)
	if got := names(del); len(got) != 2 || got[0] != "fleet-running" || got[1] != "fleet-suspended" || len(suspend) != 0 {
		t.Errorf("delete: got suspend=%v delete=%v", names(suspend), got)
	}
	if _, err := ParseFenceAction("pause"); err == nil {
		t.Error("ParseFenceAction accepted an unknown action")
	}
}
