package validation_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-base/featuregate"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/validation"
)

// testJobSet is a defaulted JobSet with a one-pod "leader" and two
// four-pod "workers" Jobs.
func testJobSet() *jobset.JobSet {
	js := jstesting.MakeJobSet("default", "pytorch").ReplicatedJob(rjob("leader", 1, 1), rjob("workers", 2, 4)).Obj()
	jobset.Default(js)
	return js
}

func rjob(name string, replicas, completions int32) jobset.ReplicatedJob {
	return jstesting.MakeReplicatedJob(name).Replicas(replicas).Parallelism(completions).Completions(completions).
		Container("c", "busybox").Obj()
}

func messages(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func claimTemplate(name string) corev1.PersistentVolumeClaim {
	return corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func mount(js *jobset.JobSet, rjobIdx int, claim string) {
	c := &js.Spec.ReplicatedJobs[rjobIdx].Template.Spec.Template.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: claim, MountPath: "/data"})
}

// Each case lists the exact messages upstream JobSet v0.12's webhook
// returns for the same object, in its order.
func TestValidateJobSet(t *testing.T) {
	cases := []struct {
		name   string
		gates  map[featuregate.Feature]bool
		mutate func(js *jobset.JobSet)
		want   []string
	}{
		{name: "valid", mutate: func(*jobset.JobSet) {}},
		{
			name: "valid with every policy",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: 1, PodIndex: 3}
				js.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"leader"}}
				js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 3, RestartStrategy: jobset.BlockingRecreate, Rules: []jobset.FailurePolicyRule{
					{Name: "a", Action: jobset.RestartJobSet, OnJobFailureReasons: []string{batchv1.JobReasonPodFailurePolicy}, TargetReplicatedJobs: []string{"workers"}},
					{Name: "b_2:x", Action: jobset.FailJobSet},
				}}
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "leader", Status: jobset.DependencyReady}}
				js.Spec.Network.Subdomain = "svc"
				js.Spec.ManagedBy = ptr.To("kueue.x-k8s.io/multikueue")
			},
		},
		{
			// Upstream does not compile the patterns: an invalid one is
			// accepted and matches nothing at run time.
			name: "message pattern that does not compile is accepted",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, OnJobFailureMessagePatterns: []string{"a(b"}},
				}}
			},
		},
		{
			// Upstream adds a ReplicatedJob's name before checking its dependsOn.
			name: "depending on itself is accepted",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "workers", Status: jobset.DependencyComplete}}
			},
		},
		{
			name: "first replicatedJob depends on another",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].DependsOn = []jobset.DependsOn{{Name: "workers", Status: jobset.DependencyReady}}
			},
			want: []string{
				"<nil>: Internal error: DependsOn can't be set for the first ReplicatedJob",
				"<nil>: Internal error: replicatedJob: leader cannot depend on replicatedJob: workers",
			},
		},
		{
			name: "depends on a later replicatedJob",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, rjob("eval", 1, 1))
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "eval", Status: jobset.DependencyComplete}}
				jobset.Default(js)
			},
			want: []string{"<nil>: Internal error: replicatedJob: workers cannot depend on replicatedJob: eval"},
		},
		{
			name:   "job names too long",
			mutate: func(js *jobset.JobSet) { js.Name = strings.Repeat("a", 60) },
			want: []string{
				`spec.replicatedJobs[0].name: Invalid value: "` + strings.Repeat("a", 60) + `-leader-0": JobSet name is too long, job names generated for this JobSet will exceed 63 characters`,
				`spec.replicatedJobs[0].name: Invalid value: "` + strings.Repeat("a", 60) + `-leader-0": JobSet name is too long, pod names generated for this JobSet will exceed 63 characters`,
				`spec.replicatedJobs[1].name: Invalid value: "` + strings.Repeat("a", 60) + `-workers-1": JobSet name is too long, job names generated for this JobSet will exceed 63 characters`,
				`spec.replicatedJobs[1].name: Invalid value: "` + strings.Repeat("a", 60) + `-workers-1": JobSet name is too long, pod names generated for this JobSet will exceed 63 characters`,
			},
		},
		{
			// "<js>-workers-1-3-abcde" is 64 characters with a 46-character name.
			name:   "pod names too long",
			mutate: func(js *jobset.JobSet) { js.Name = strings.Repeat("a", 46) },
			want: []string{
				`spec.replicatedJobs[1].name: Invalid value: "` + strings.Repeat("a", 46) + `-workers-1": JobSet name is too long, pod names generated for this JobSet will exceed 63 characters`,
			},
		},
		{
			name:   "pod names exactly 63 characters",
			mutate: func(js *jobset.JobSet) { js.Name = strings.Repeat("a", 45) },
		},
		{
			name: "replicatedJob name not a DNS label",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Name = "Leader"
			},
			want: []string{
				`spec.replicatedJobs[0].name: Invalid value: "pytorch-Leader-0": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
				`spec.replicatedJobs[0].name: Invalid value: "pytorch-Leader-0": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
			},
		},
		{
			name:   "replicas times parallelism overflows",
			mutate: func(js *jobset.JobSet) { js.Spec.ReplicatedJobs[1].Replicas = 1 << 30 },
			want:   []string{"<nil>: Internal error: the product of replicas and parallelism must not exceed 2147483647 for replicatedJob 'workers'"},
		},
		{
			name:   "group name too long",
			mutate: func(js *jobset.JobSet) { js.Spec.ReplicatedJobs[0].GroupName = strings.Repeat("g", 64) },
			want: []string{
				`spec.replicatedJobs[0].groupName: Invalid value: "` + strings.Repeat("g", 64) + `": .spec.replicatedJob[].groupName is too long, must be less than 63 characters`,
			},
		},
		{
			name:   "subdomain not a DNS label",
			mutate: func(js *jobset.JobSet) { js.Spec.Network.Subdomain = "my.svc" },
			want: []string{
				`spec.network.subdomain: Invalid value: "my.svc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
			},
		},
		{
			name:   "subdomain too long",
			mutate: func(js *jobset.JobSet) { js.Spec.Network.Subdomain = strings.Repeat("s", 64) },
			want: []string{
				`spec.network.subdomain: Invalid value: "` + strings.Repeat("s", 64) + `": .spec.network.subdomain is too long, must be less than 63 characters`,
			},
		},
		{
			name:   "managedBy not a domain-prefixed path",
			mutate: func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("kueue") },
			want:   []string{`spec.managedBy: Invalid value: "kueue": must be a domain-prefixed path (such as "acme.io/foo")`},
		},
		{
			name:   "managedBy too long",
			mutate: func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("example.com/" + strings.Repeat("x", 60)) },
			want:   []string{"spec.managedBy: Too long: may not be more than 63 bytes"},
		},
		{
			name: "targets that do not exist",
			mutate: func(js *jobset.JobSet) {
				js.Spec.SuccessPolicy.TargetReplicatedJobs = []string{"leader", "ghost"}
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, TargetReplicatedJobs: []string{"phantom"}},
				}}
			},
			want: []string{
				"<nil>: Internal error: invalid replicatedJob name 'ghost' does not appear in .spec.ReplicatedJobs",
				"<nil>: Internal error: invalid replicatedJob name 'phantom' in failure policy does not appear in .spec.ReplicatedJobs",
			},
		},
		{
			name: "rule names",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "ok", Action: jobset.FailJobSet},
					{Name: "9bad", Action: jobset.FailJobSet},
					{Name: "ok", Action: jobset.RestartJobSet},
					{Name: strings.Repeat("x", 129), Action: jobset.RestartJobSet},
					{Name: "", Action: jobset.RestartJobSet},
				}}
			},
			want: []string{
				"<nil>: Internal error: invalid failure policy rule name '9bad', a failure policy rule name must start with an alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'",
				"<nil>: Internal error: invalid failure policy rule name of length 129, the rule name must be at least 1 characters long and at most 128 characters long",
				"<nil>: Internal error: invalid failure policy rule name of length 0, the rule name must be at least 1 characters long and at most 128 characters long",
				"<nil>: Internal error: invalid failure policy rule name '', a failure policy rule name must start with an alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'",
				"<nil>: Internal error: rule names are not unique, rules with indices [0 2] all have the same name 'ok'",
			},
		},
		{
			name: "unknown job failure reason",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"OOMKilled"}},
				}}
			},
			want: []string{"<nil>: Internal error: invalid job failure reason 'OOMKilled' in failure policy is not a recognized job failure reason"},
		},
		{
			name: "RestartJob action while its gate is off",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "9bad", Action: jobset.RestartJob},
				}}
			},
			want: []string{"<nil>: Internal error: RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not allowed when RestartJob feature gate is disabled"},
		},
		{
			name:  "RestartJob action with more than 1024 replicas",
			gates: map[featuregate.Feature]bool{features.RestartJob: true},
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Replicas = 1025
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.RestartJobAndIgnoreMaxRestarts},
				}}
			},
			want: []string{"<nil>: Internal error: JobSet cannot have a failure policy rule with RestartJob or RestartJobAndIgnoreMaxRestarts action and a replicated job with replicas > 1024"},
		},
		{
			name:  "RestartJob action with its gate on",
			gates: map[featuregate.Feature]bool{features.RestartJob: true},
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.RestartJob},
				}}
			},
		},
		{
			name: "InPlaceRestart while its gate is off",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: jobset.InPlaceRestart}
			},
			want: []string{"<nil>: Internal error: InPlaceRestart restart strategy cannot be set when InPlaceRestart feature gate is disabled"},
		},
		{
			name:  "InPlaceRestart with its gate on needs never-failing Jobs",
			gates: map[featuregate.Feature]bool{features.InPlaceRestart: true},
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: jobset.InPlaceRestart}
				js.Spec.ReplicatedJobs = js.Spec.ReplicatedJobs[:1]
				js.Spec.ReplicatedJobs[0].Template.Spec.Completions = ptr.To[int32](2)
			},
			want: []string{
				"spec.replicatedJobs[0].template.spec.backoffLimit: Invalid value: null: replicatedJob leader: must be set to 2147483647 (MaxInt32) when in-place restart is enabled",
				"spec.replicatedJobs[0].template.spec.podReplacementPolicy: Invalid value: null: replicatedJob leader: must be set to Failed when in-place restart is enabled",
				"spec.replicatedJobs[0].template.spec.completions: Invalid value: 2: replicatedJob leader: completions and parallelism must be set and equal to each other when in-place restart is enabled",
			},
		},
		{
			name:  "InPlaceRestart with its gate on",
			gates: map[featuregate.Feature]bool{features.InPlaceRestart: true},
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: jobset.InPlaceRestart}
				for i := range js.Spec.ReplicatedJobs {
					s := &js.Spec.ReplicatedJobs[i].Template.Spec
					s.BackoffLimit = ptr.To[int32](math.MaxInt32)
					s.PodReplacementPolicy = ptr.To(batchv1.Failed)
				}
			},
		},
		{
			name:   "coordinator replicatedJob missing",
			mutate: func(js *jobset.JobSet) { js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "ghost"} },
			want:   []string{"<nil>: Internal error: coordinator replicatedJob ghost does not exist"},
		},
		{
			name: "coordinator job index out of range",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: 2}
			},
			want: []string{"<nil>: Internal error: coordinator job index 2 is invalid for replicatedJob workers"},
		},
		{
			name: "coordinator in a NonIndexed Job",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Template.Spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader"}
			},
			want: []string{"<nil>: Internal error: job for coordinator pod must be indexed completion mode, and completions number must be set"},
		},
		{
			name: "coordinator pod index out of range",
			mutate: func(js *jobset.JobSet) {
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "workers", JobIndex: 1, PodIndex: 4}
			},
			want: []string{"<nil>: Internal error: coordinator pod index 4 is invalid for replicatedJob workers job index 1"},
		},
		{
			name: "coordinator endpoint not a label value",
			mutate: func(js *jobset.JobSet) {
				js.Name = strings.Repeat("c", 40)
				js.Spec.ReplicatedJobs = js.Spec.ReplicatedJobs[:1]
				js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader"}
			},
			want: []string{`<nil>: Internal error: spec will lead to invalid label value "` + strings.Repeat("c", 40) + `-leader-0-0.` + strings.Repeat("c", 40) +
				`" for coordinator label "jobset.sigs.k8s.io/coordinator" (long JobSet / ReplicatedJob / SubDomain name?): must be no more than 63 bytes`},
		},
		{
			name: "volume claim policy mounted",
			mutate: func(js *jobset.JobSet) {
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{Templates: []corev1.PersistentVolumeClaim{claimTemplate("data")}}}
				mount(js, 1, "data")
			},
		},
		{
			name: "volume claim policy problems",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = js.Spec.ReplicatedJobs[:1]
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{
					{Templates: []corev1.PersistentVolumeClaim{claimTemplate("data"), claimTemplate("Cache")}},
					{Templates: []corev1.PersistentVolumeClaim{claimTemplate("data"), claimTemplate(strings.Repeat("d", 56))}},
				}
				mount(js, 0, "data")
				mount(js, 0, "Cache")
				mount(js, 0, strings.Repeat("d", 56))
				js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data"}}
			},
			want: []string{
				`spec.replicatedJobs[0].template.spec.template.spec.volumes[0].name: Invalid value: "data": volume name conflicts with VolumeClaimPolicy template name: data`,
				`spec.volumeClaimPolicies[0].template[1].name: Invalid value: "Cache": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.volumeClaimPolicies[1].template[0].name: Invalid value: "data": names must be unique for VolumeClaimPolicies template`,
				`spec.replicatedJobs[0].template.spec.template.spec.volumes[0].name: Invalid value: "data": volume name conflicts with VolumeClaimPolicy template name: data`,
				`spec.volumeClaimPolicies[1].template[1].name: Invalid value: "` + strings.Repeat("d", 56) + `": VolumeClaimPolicies template name is too long`,
			},
		},
		{
			name: "volume claim policy not mounted",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = js.Spec.ReplicatedJobs[:1]
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{Templates: []corev1.PersistentVolumeClaim{claimTemplate("data")}}}
			},
			want: []string{`spec.replicatedJobs: Invalid value: [{"name":"leader","groupName":"default","template":{"metadata":{},"spec":{"parallelism":1,"completions":1,"template":{"metadata":{},"spec":{"containers":[{"name":"c","image":"busybox","resources":{}}],"restartPolicy":"OnFailure"}},"completionMode":"Indexed"}},"replicas":1}]: replicatedJob containers don't have a matching volumeMount: data from VolumeClaimPolicies`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for g, on := range tc.gates {
				features.SetForTest(t, g, on)
			}
			js := testJobSet()
			tc.mutate(js)
			got := messages(validation.ValidateJobSet(context.Background(), js, nil))
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("errors (-want +got):\n%s", d)
			}
		})
	}
}

// The hub's variant names the field where upstream names none, with the
// same message.
func TestValidateJobSetWithFieldPaths(t *testing.T) {
	js := testJobSet()
	js.Spec.SuccessPolicy.TargetReplicatedJobs = []string{"ghost"}
	js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "nope"}
	js.Spec.Network.Subdomain = "my.svc"
	got := messages(validation.ValidateJobSetWithFieldPaths(context.Background(), js, nil))
	want := []string{
		`spec.network.subdomain: Invalid value: "my.svc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
		"spec.successPolicy.targetReplicatedJobs[0]: Invalid value: invalid replicatedJob name 'ghost' does not appear in .spec.ReplicatedJobs",
		"spec.coordinator.replicatedJob: Invalid value: coordinator replicatedJob nope does not exist",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
}

func TestValidateJobSetExistingPVC(t *testing.T) {
	existingSpec := claimTemplate("data").Spec
	lookup := func(pvc *corev1.PersistentVolumeClaim, err error) validation.PVCLookup {
		return func(_ context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error) {
			if namespace != "default" || name != "data-pytorch" {
				t.Errorf("looked up %s/%s, want default/data-pytorch", namespace, name)
			}
			return pvc, err
		}
	}
	cases := []struct {
		name      string
		retention jobset.RetentionPolicyType
		existing  validation.PVCLookup
		want      []string
	}{
		{name: "absent", retention: jobset.RetentionPolicyDelete, existing: lookup(nil, nil)},
		{
			name: "same spec, retained", retention: jobset.RetentionPolicyRetain,
			existing: lookup(&corev1.PersistentVolumeClaim{Spec: existingSpec}, nil),
		},
		{
			name: "same spec, would be deleted", retention: jobset.RetentionPolicyDelete,
			existing: lookup(&corev1.PersistentVolumeClaim{Spec: existingSpec}, nil),
			want:     []string{`spec.volumeClaimPolicies[0].retentionPolicy.whenDeleted: Invalid value: "Delete": retentionPolicy must be retain when PVC exists`},
		},
		{
			name: "other spec", retention: jobset.RetentionPolicyRetain,
			existing: lookup(&corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}}, nil),
			want:     []string{`spec.volumeClaimPolicies[0].template[0].spec: Invalid value: {"accessModes":["ReadWriteMany"],"resources":{"requests":{"storage":"1Gi"}}}: spec does not match existing PVC data-pytorch in namespace default`},
		},
		{
			name: "lookup fails", retention: jobset.RetentionPolicyRetain,
			existing: lookup(nil, errors.New("boom")),
			want:     []string{"spec.volumeClaimPolicies[0].template[0]: Internal error: failed to check for existing PVC data-pytorch: boom"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := testJobSet()
			js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{
				Templates:       []corev1.PersistentVolumeClaim{claimTemplate("data")},
				RetentionPolicy: &jobset.VolumeRetentionPolicy{WhenDeleted: ptr.To(tc.retention)},
			}}
			mount(js, 0, "data")
			got := messages(validation.ValidateJobSet(context.Background(), js, tc.existing))
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("errors (-want +got):\n%s", d)
			}
		})
	}
}

func TestValidateJobSetUpdate(t *testing.T) {
	immutable := func(path string) string {
		return path + ": Invalid value: "
	}
	cases := []struct {
		name                   string
		gates                  map[featuregate.Feature]bool
		oldSuspend, newSuspend bool
		oldFinished            bool
		mutate                 func(js *jobset.JobSet)
		// wantPrefixes: each error must start with the matching entry
		// (immutability errors print the whole list, too long to spell out).
		wantPrefixes []string
	}{
		{name: "no change", mutate: func(*jobset.JobSet) {}},
		{name: "suspend toggles", newSuspend: true, mutate: func(*jobset.JobSet) {}},
		{
			name:         "running: replicas immutable",
			mutate:       func(js *jobset.JobSet) { js.Spec.ReplicatedJobs[1].Replicas = 3 },
			wantPrefixes: []string{immutable("spec.replicatedJobs")},
		},
		{
			name: "running: pod labels immutable",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[0].Template.Spec.Template.Labels = map[string]string{"a": "b"}
			},
			wantPrefixes: []string{immutable("spec.replicatedJobs")},
		},
		{
			name:       "suspended: scheduling fields may change",
			oldSuspend: true, newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				pt := &js.Spec.ReplicatedJobs[1].Template.Spec.Template
				pt.Labels = map[string]string{"kueue.x-k8s.io/queue": "q"}
				pt.Annotations = map[string]string{"a": "b"}
				pt.Spec.NodeSelector = map[string]string{"pool": "a"}
				pt.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
				pt.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "kueue"}}
			},
		},
		{
			name:       "being resumed: nodeSelector may change",
			oldSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "a"}
			},
		},
		{
			name:       "suspended: image immutable",
			oldSuspend: true, newSuspend: true,
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs[1].Template.Spec.Template.Spec.Containers[0].Image = "other"
			},
			wantPrefixes: []string{immutable("spec.replicatedJobs")},
		},
		{
			name:         "managedBy set",
			mutate:       func(js *jobset.JobSet) { js.Spec.ManagedBy = ptr.To("kueue.x-k8s.io/multikueue") },
			wantPrefixes: []string{`spec.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is immutable`},
		},
		{
			name:         "ElasticJobSet off: parallelism immutable",
			mutate:       func(js *jobset.JobSet) { scale(js, 1, 6, 6) },
			wantPrefixes: []string{immutable("spec.replicatedJobs")},
		},
		{
			name:   "ElasticJobSet: scale a running JobSet",
			gates:  map[featuregate.Feature]bool{features.ElasticJobSet: true},
			mutate: func(js *jobset.JobSet) { scale(js, 1, 6, 6) },
		},
		{
			name:   "ElasticJobSet: parallelism and completions must stay equal",
			gates:  map[featuregate.Feature]bool{features.ElasticJobSet: true},
			mutate: func(js *jobset.JobSet) { scale(js, 1, 6, 5) },
			wantPrefixes: []string{
				"spec.replicatedJobs[1].template.spec.completions: Invalid value: 5: completions must be equal to parallelism for Elastic Indexed Jobs",
			},
		},
		{
			name:   "ElasticJobSet: at least one",
			gates:  map[featuregate.Feature]bool{features.ElasticJobSet: true},
			mutate: func(js *jobset.JobSet) { scale(js, 1, 0, 0) },
			wantPrefixes: []string{
				"spec.replicatedJobs[1].template.spec.parallelism: Invalid value: 0: parallelism must be >= 1",
				"spec.replicatedJobs[1].template.spec.completions: Invalid value: 0: completions must be >= 1",
			},
		},
		{
			name:        "ElasticJobSet: not once finished",
			gates:       map[featuregate.Feature]bool{features.ElasticJobSet: true},
			oldFinished: true,
			mutate:      func(js *jobset.JobSet) { scale(js, 1, 6, 6) },
			wantPrefixes: []string{
				"spec.replicatedJobs[1].template.spec: Forbidden: Cannot mutate parallelism or completions when JobSet is in a terminal state (Completed or Failed)",
			},
		},
		{
			name:  "ElasticJobSet: NonIndexed Jobs stay immutable",
			gates: map[featuregate.Feature]bool{features.ElasticJobSet: true},
			mutate: func(js *jobset.JobSet) {
				scale(js, 1, 6, 6)
				js.Spec.ReplicatedJobs[1].Template.Spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
			},
			wantPrefixes: []string{immutable("spec.replicatedJobs")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for g, on := range tc.gates {
				features.SetForTest(t, g, on)
			}
			oldJS := testJobSet()
			oldJS.Spec.Suspend = ptr.To(tc.oldSuspend)
			if tc.oldFinished {
				oldJS.Status.Conditions = []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue}}
			}
			newJS := oldJS.DeepCopy()
			newJS.Spec.Suspend = ptr.To(tc.newSuspend)
			tc.mutate(newJS)
			got := messages(validation.ValidateJobSetUpdate(oldJS, newJS))
			if len(got) != len(tc.wantPrefixes) {
				t.Fatalf("got %d errors, want %d: %q", len(got), len(tc.wantPrefixes), got)
			}
			for i, p := range tc.wantPrefixes {
				if !strings.HasPrefix(got[i], p) {
					t.Errorf("error %d = %q, want it to start with %q", i, got[i], p)
				}
			}
		})
	}
}

func scale(js *jobset.JobSet, rjobIdx int, parallelism, completions int32) {
	s := &js.Spec.ReplicatedJobs[rjobIdx].Template.Spec
	s.Parallelism, s.Completions = ptr.To(parallelism), ptr.To(completions)
}
