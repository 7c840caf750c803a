package admission_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
)

// podSpec is a one-container pod spec, changed by edit.
func podSpec(edit func(*corev1.PodSpec)) corev1.PodSpec {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	if edit != nil {
		edit(&spec)
	}
	return spec
}

func privileged(s *corev1.PodSpec) {
	s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
}

func hostRoot(s *corev1.PodSpec) {
	s.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
}

// restrictedCompliant is what the restricted level asks of a container.
func restrictedCompliant(s *corev1.PodSpec) {
	s.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	s.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

func jobSetSpec(pods ...corev1.PodSpec) *jobset.JobSetSpec {
	spec := &jobset.JobSetSpec{}
	for i, pod := range pods {
		rjob := jobset.ReplicatedJob{Name: string(rune('a' + i))}
		rjob.Template.Spec.Template.Spec = pod
		spec.ReplicatedJobs = append(spec.ReplicatedJobs, rjob)
	}
	return spec
}

func TestPodSecurityCheck(t *testing.T) {
	ps, err := admission.NewPodSecurity()
	if err != nil {
		t.Fatal(err)
	}
	const (
		enforce        = "pod-security.kubernetes.io/enforce"
		enforceVersion = "pod-security.kubernetes.io/enforce-version"
		warn           = "pod-security.kubernetes.io/warn"
	)
	for _, tc := range []struct {
		name         string
		labels       map[string]string
		old, spec    *jobset.JobSetSpec
		wantErrs     []string // "field: detail"
		wantWarnings []string
		wantLabelErr bool
	}{
		{
			name: "unlabelled namespace is privileged",
			spec: jobSetSpec(podSpec(privileged), podSpec(hostRoot)),
		},
		{
			name:   "baseline forbids privileged and hostPath, per replicated job",
			labels: map[string]string{enforce: "baseline"},
			spec:   jobSetSpec(podSpec(nil), podSpec(privileged), podSpec(hostRoot)),
			wantErrs: []string{
				`spec.replicatedJobs[1].template.spec.template: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)`,
				`spec.replicatedJobs[2].template.spec.template: violates PodSecurity "baseline:latest": hostPath volumes (volume "root")`,
			},
		},
		{
			name:   "restricted lists every violation",
			labels: map[string]string{enforce: "restricted"},
			spec:   jobSetSpec(podSpec(privileged)),
			wantErrs: []string{`spec.replicatedJobs[0].template.spec.template: violates PodSecurity "restricted:latest": ` +
				`privileged (container "c" must not set securityContext.privileged=true), ` +
				`allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), ` +
				`unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), ` +
				`runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), ` +
				`seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`},
		},
		{
			name:   "restricted admits a compliant pod",
			labels: map[string]string{enforce: "restricted"},
			spec:   jobSetSpec(podSpec(restrictedCompliant)),
		},
		{
			name:     "the enforce version is honoured",
			labels:   map[string]string{enforce: "baseline", enforceVersion: "v1.30"},
			spec:     jobSetSpec(podSpec(hostRoot)),
			wantErrs: []string{`spec.replicatedJobs[0].template.spec.template: violates PodSecurity "baseline:v1.30": hostPath volumes (volume "root")`},
		},
		{
			name:         "an unparsable level enforces restricted",
			labels:       map[string]string{enforce: "strict"},
			spec:         jobSetSpec(podSpec(hostRoot)),
			wantLabelErr: true,
			wantErrs: []string{`spec.replicatedJobs[0].template.spec.template: violates PodSecurity "restricted:latest": ` +
				`allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), ` +
				`unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), ` +
				`restricted volume types (volume "root" uses restricted volume type "hostPath"), ` +
				`runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), ` +
				`seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`},
		},
		{
			name:   "warn level warns",
			labels: map[string]string{enforce: "privileged", warn: "baseline"},
			spec:   jobSetSpec(podSpec(hostRoot)),
			wantWarnings: []string{
				`spec.replicatedJobs[0].template.spec.template: would violate PodSecurity "baseline:latest": hostPath volumes (volume "root")`,
			},
		},
		{
			name:   "an update that leaves a template alone is not judged again",
			labels: map[string]string{enforce: "baseline"},
			old:    jobSetSpec(podSpec(privileged)),
			spec:   jobSetSpec(podSpec(privileged)),
		},
		{
			name:     "an update that changes a template is",
			labels:   map[string]string{enforce: "baseline"},
			old:      jobSetSpec(podSpec(nil)),
			spec:     jobSetSpec(podSpec(privileged)),
			wantErrs: []string{`spec.replicatedJobs[0].template.spec.template: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, labelErrs := admission.NamespacePolicy(tc.labels)
			if got := len(labelErrs) > 0; got != tc.wantLabelErr {
				t.Errorf("label errors %v, want some: %t", labelErrs, tc.wantLabelErr)
			}
			errs, warnings := ps.Check(policy, tc.old, tc.spec)
			var got []string
			for _, e := range errs {
				if !strings.HasPrefix(e.Error(), e.Field+": Forbidden: ") {
					t.Errorf("error %q is not Forbidden at its field", e)
				}
				got = append(got, e.Field+": "+e.Detail)
			}
			if diff := cmp.Diff(tc.wantErrs, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
