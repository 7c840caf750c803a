package v1alpha2_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	c, stop := testenv.StartMain("api")
	cluster = c
	code := m.Run()
	stop()
	os.Exit(code)
}

// applyExample creates an example file exactly as written, the way kubectl
// would send it, in its own namespace.
func applyExample(t *testing.T, file, namespace string) *jobset.JobSet {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	obj.SetNamespace(namespace)
	ctx := context.Background()
	if err := cluster.Client.Create(ctx, obj); err != nil {
		t.Fatalf("create %s: %v", file, err)
	}
	js := &jobset.JobSet{}
	if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: obj.GetName()}, js); err != nil {
		t.Fatal(err)
	}
	return js
}

func newNamespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", ".", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-")
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := cluster.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestSeedJobSetAcceptedWithDefaults(t *testing.T) {
	ns := newNamespace(t)
	js := applyExample(t, "pytorch.yaml", ns)

	if got := len(js.Spec.ReplicatedJobs); got != 1 {
		t.Fatalf("replicatedJobs: got %d, want 1", got)
	}
	rjob := js.Spec.ReplicatedJobs[0]
	if rjob.Replicas != 1 {
		t.Errorf("replicas default: got %d, want 1", rjob.Replicas)
	}
	if rjob.GroupName != "default" {
		t.Errorf("groupName default: got %q, want %q", rjob.GroupName, "default")
	}
	job := rjob.Template.Spec
	if ptr.Deref(job.Parallelism, 0) != 4 || ptr.Deref(job.Completions, 0) != 4 || ptr.Deref(job.BackoffLimit, -1) != 0 {
		t.Errorf("job template counts changed: parallelism=%v completions=%v backoffLimit=%v", job.Parallelism, job.Completions, job.BackoffLimit)
	}
	type container struct{ Image, FirstEnvValue string }
	var containers []container
	for _, c := range job.Template.Spec.Containers {
		containers = append(containers, container{Image: c.Image, FirstEnvValue: c.Env[0].Value})
	}
	want := []container{{Image: "gcr.io/k8s-staging-jobset/pytorch-resnet:latest", FirstEnvValue: "pytorch-workers-0-0.pytorch"}}
	if d := cmp.Diff(want, containers); d != "" {
		t.Errorf("pod template changed on the way in (-want +got):\n%s", d)
	}
}

func TestAllExamplesAccepted(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(testenv.RepoRoot(), "examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".yaml" {
			continue
		}
		// Files of Kueue's queues (examples/kueue-hub.yaml, kueue-members.yaml)
		// need Kueue's API, which this apiserver does not serve.
		data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(data, &head); err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		if head.Kind != "JobSet" {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			applyExample(t, e.Name(), newNamespace(t))
		})
	}
}

func TestInvalidInputRejectedWithFieldPath(t *testing.T) {
	ns := newNamespace(t)
	base := func(name string) *jobset.JobSet {
		return jstesting.MakeJobSet(ns, name).ReplicatedJob(jstesting.MakeReplicatedJob("workers").Container("c", "busybox").Obj()).Obj()
	}
	cases := []struct {
		name     string
		mutate   func(*jobset.JobSet)
		wantPath string
	}{
		{
			name:     "bad successPolicy operator enum",
			mutate:   func(js *jobset.JobSet) { js.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: "Most"} },
			wantPath: "spec.successPolicy.operator",
		},
		{
			name: "bad failurePolicy rule action enum",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{{Name: "r", Action: "Explode"}}}
			},
			wantPath: "spec.failurePolicy.rules[0].action",
		},
		{
			name: "bad restartStrategy enum",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: "Sometimes"}
			},
			wantPath: "spec.failurePolicy.restartStrategy",
		},
		{
			name: "bad dependsOn status enum",
			mutate: func(js *jobset.JobSet) {
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, js.Spec.ReplicatedJobs[0])
				js.Spec.ReplicatedJobs[1].Name = "b"
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "workers", Status: "Started"}}
			},
			wantPath: "spec.replicatedJobs[1].dependsOn[0].status",
		},
		{
			name:     "negative ttlSecondsAfterFinished",
			mutate:   func(js *jobset.JobSet) { js.Spec.TTLSecondsAfterFinished = ptr.To[int32](-1) },
			wantPath: "spec.ttlSecondsAfterFinished",
		},
		{
			name: "PVC template with a namespace",
			mutate: func(js *jobset.JobSet) {
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{Templates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "elsewhere"}}}}}
			},
			wantPath: "namespace cannot be set for VolumeClaimPolicies templates",
		},
		{
			name: "bad retention policy enum",
			mutate: func(js *jobset.JobSet) {
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{RetentionPolicy: &jobset.VolumeRetentionPolicy{WhenDeleted: ptr.To[jobset.RetentionPolicyType]("Sometimes")}}}
			},
			wantPath: "spec.volumeClaimPolicies[0].retentionPolicy.whenDeleted",
		},
		{
			name: "startupPolicy InOrder together with dependsOn",
			mutate: func(js *jobset.JobSet) {
				js.Spec.StartupPolicy = &jobset.StartupPolicy{StartupPolicyOrder: jobset.InOrder}
				js.Spec.ReplicatedJobs = append(js.Spec.ReplicatedJobs, js.Spec.ReplicatedJobs[0])
				js.Spec.ReplicatedJobs[1].Name = "b"
				js.Spec.ReplicatedJobs[1].DependsOn = []jobset.DependsOn{{Name: "workers", Status: jobset.DependencyReady}}
			},
			wantPath: "mutually exclusive",
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := base("bad-" + string(rune('a'+i)))
			tc.mutate(js)
			err := cluster.Client.Create(context.Background(), js)
			if err == nil {
				t.Fatalf("created an invalid JobSet; want an error naming %s", tc.wantPath)
			}
			if !strings.Contains(err.Error(), tc.wantPath) {
				t.Fatalf("error does not name %q: %v", tc.wantPath, err)
			}
		})
	}
}

func TestImmutableFieldsRejectChanges(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	js := applyExample(t, "pytorch.yaml", ns)

	// set gives the field a first value, change a different one: CEL
	// transition rules only fire when the old object has the field.
	cases := []struct {
		name        string
		set, change func(*jobset.JobSet)
		wantPath    string
	}{
		{"network",
			func(js *jobset.JobSet) { js.Spec.Network = &jobset.Network{Subdomain: "other"} },
			func(js *jobset.JobSet) { js.Spec.Network.Subdomain = "changed" },
			"spec.network"},
		{"successPolicy",
			func(js *jobset.JobSet) {
				js.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: jobset.OperatorAny}
			},
			func(js *jobset.JobSet) { js.Spec.SuccessPolicy.Operator = jobset.OperatorAll },
			"spec.successPolicy"},
		{"volumeClaimPolicies",
			func(js *jobset.JobSet) {
				js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{Templates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}}}
			},
			func(js *jobset.JobSet) { js.Spec.VolumeClaimPolicies[0].Templates[0].Name = "other" },
			"spec.volumeClaimPolicies"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first := js.DeepCopy()
			tc.set(first)
			if err := cluster.Client.Update(ctx, first); err != nil {
				t.Fatalf("setting %s the first time: %v", tc.name, err)
			}
			changed := first.DeepCopy()
			tc.change(changed)
			err := cluster.Client.Update(ctx, changed)
			if err == nil {
				t.Fatalf("changed immutable %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.wantPath) || !strings.Contains(err.Error(), "immutable") {
				t.Fatalf("error should name %s and say immutable: %v", tc.wantPath, err)
			}
			js = first
		})
	}
}

func TestCRDServesPrinterColumns(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Name: "jobsets.jobset.x-k8s.io"}, crd); err != nil {
		t.Fatal(err)
	}
	// Like upstream's, the CRD has no short name.
	if got := crd.Spec.Names.ShortNames; len(got) != 0 {
		t.Errorf("short names: got %v, want none", got)
	}
	var columns []string
	for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
		columns = append(columns, c.Name)
	}
	want := "TerminalState,Restarts,Completed,Suspended,Cluster,Age"
	if got := strings.Join(columns, ","); got != want {
		t.Errorf("printer columns: got %s, want %s", got, want)
	}
	if crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
		t.Error("status subresource missing")
	}
}

// Without admission webhooks (e.g. the agent started with
// --disable-webhooks) the apiserver accepts what upstream's CRD accepts:
// rule names are checked by the webhook only, after it defaulted them.
func TestSchemaAcceptsWhatUpstreamSchemaAccepts(t *testing.T) {
	ns := newNamespace(t)
	js := jstesting.MakeJobSet(ns, "loose").
		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Container("c", "busybox").Obj()).
		FailurePolicy(&jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
			{Action: jobset.RestartJobSet},                              // unnamed
			{Name: strings.Repeat("r", 200), Action: jobset.FailJobSet}, // longer than admission allows
			{Name: "a", Action: jobset.FailJobSet, OnJobFailureReasons: []string{"BackoffLimitExceeded", "BackoffLimitExceeded"}},
		}}).
		Obj()
	if err := cluster.Client.Create(context.Background(), js); err != nil {
		t.Fatalf("rejected by the schema, upstream's accepts it: %v", err)
	}
}
