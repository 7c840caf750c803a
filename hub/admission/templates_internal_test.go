package admission

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Updates that change no pod template skip Pod Security, and with it the
// namespace read: finalizers and labels of a JobSet change all the time.
func TestTemplatesChanged(t *testing.T) {
	spec := func(image string, extra ...string) *jobset.JobSetSpec {
		s := &jobset.JobSetSpec{}
		for _, name := range append([]string{"w"}, extra...) {
			rj := jobset.ReplicatedJob{Name: name}
			rj.Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: image}}
			s.ReplicatedJobs = append(s.ReplicatedJobs, rj)
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		old, new *jobset.JobSetSpec
		want     bool
	}{
		{name: "same templates", old: spec("a"), new: spec("a")},
		{name: "a template changed", old: spec("a"), new: spec("b"), want: true},
		{name: "a replicated job added", old: spec("a"), new: spec("a", "x"), want: true},
		{name: "a replicated job removed", old: spec("a", "x"), new: spec("a")},
	} {
		if got := templatesChanged(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: templatesChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}
