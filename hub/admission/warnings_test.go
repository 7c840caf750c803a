package admission_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

func TestPlacementWarnings(t *testing.T) {
	members := []inventory.Member{
		{Name: "eu-1", Labels: map[string]string{"region": "eu"}},
		{Name: "us-1", Labels: map[string]string{"region": "us"}},
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		members     []inventory.Member
		want        []string
	}{
		{"no placement", nil, members, nil},
		{"pinned member", map[string]string{fleet.PinnedClusterAnnotation: "eu-1"}, members, nil},
		{"pinned stranger", map[string]string{fleet.PinnedClusterAnnotation: "eu-2"}, members,
			[]string{`pinned cluster "eu-2" is not a member of the fleet (2 members): the JobSet waits until a member of that name joins`}},
		{"pinned in an empty fleet", map[string]string{fleet.PinnedClusterAnnotation: "eu-1"}, nil,
			[]string{`pinned cluster "eu-1" is not a member of the fleet (0 members): the JobSet waits until a member of that name joins`}},
		{"selector matches", map[string]string{fleet.ClusterSelectorAnnotation: "region in (us,ap)"}, members, nil},
		{"selector matches none", map[string]string{fleet.ClusterSelectorAnnotation: "region=ap"}, members,
			[]string{`cluster selector "region=ap" matches no member of the fleet (2 members): the JobSet waits until one does`}},
		{"pinned member outside the selector", map[string]string{fleet.PinnedClusterAnnotation: "eu-1", fleet.ClusterSelectorAnnotation: "region=us"}, members,
			[]string{`pinned cluster "eu-1" does not match cluster selector "region=us": the JobSet waits until its labels do`}},
		{"pinned stranger and a selector", map[string]string{fleet.PinnedClusterAnnotation: "eu-2", fleet.ClusterSelectorAnnotation: "region=ap"}, members,
			[]string{
				`pinned cluster "eu-2" is not a member of the fleet (2 members): the JobSet waits until a member of that name joins`,
				`cluster selector "region=ap" matches no member of the fleet (2 members): the JobSet waits until one does`,
			}},
		{"invalid selector is validation's", map[string]string{fleet.ClusterSelectorAnnotation: "region in (eu"}, members, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := []string(admission.PlacementWarnings(tc.annotations, tc.members))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHubAdmissionWarnings: on a real apiserver with the hub's webhooks,
// `kubectl apply` of a JobSet pinned to a cluster that is not in the fleet,
// or selecting clusters by labels no member has, succeeds and prints the
// webhook's warning; one that fits a member prints none.
// Cost: one apiserver, ~5 s.
func TestHubAdmissionWarnings(t *testing.T) {
	c := testenv.Start(t, "hub-admission-warnings", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{fleet.DefaultInventoryNamespace} {
		if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Client.Create(ctx, &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: "member-1", Labels: map[string]string{"region": "eu"}},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.ServeWebhooks(ctx, admission.Options{}.SetupWithManager); err != nil {
		t.Fatal(err)
	}
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	apply := func(name string, annotations string) (string, error) {
		manifest := `apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: ` + name + `
  namespace: default
  annotations: {` + annotations + `}
spec:
  replicatedJobs:
  - name: workers
    template:
      spec:
        template:
          spec:
            restartPolicy: Never
            containers: [{name: c, image: busybox}]
`
		f := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(kubectl, "--kubeconfig", c.KubeconfigPath, "apply", "--server-side", "-f", f).CombinedOutput()
		return string(out), err
	}

	// The webhook reads ClusterProfiles from its cache: wait until it
	// sees member-1 (a fitting JobSet draws no warning).
	testenv.Eventually(t, 30*time.Second, "the webhook to see member-1", func() error {
		out, err := apply("probe", `fleet.jobset.x-k8s.io/pinned-cluster: member-1`)
		if err != nil || strings.Contains(out, "Warning") {
			return &warningError{out}
		}
		return nil
	})
	for name, tc := range map[string]struct{ annotations, want string }{
		"fits":     {`fleet.jobset.x-k8s.io/cluster-selector: region=eu`, ""},
		"stranger": {`fleet.jobset.x-k8s.io/pinned-cluster: member-9`, `Warning: pinned cluster "member-9" is not a member of the fleet (1 member): the JobSet waits until a member of that name joins`},
		"nowhere":  {`fleet.jobset.x-k8s.io/cluster-selector: region=us`, `Warning: cluster selector "region=us" matches no member of the fleet (1 member): the JobSet waits until one does`},
	} {
		out, err := apply(name, tc.annotations)
		if err != nil {
			t.Errorf("%s: kubectl apply: %v\n%s", name, err, out)
			continue
		}
		if !strings.Contains(out, "jobset.jobset.x-k8s.io/"+name+" serverside-applied") {
			t.Errorf("%s: the JobSet was not created:\n%s", name, out)
		}
		if tc.want == "" && strings.Contains(out, "Warning") || tc.want != "" && !strings.Contains(out, tc.want) {
			t.Errorf("%s: kubectl printed\n%s\nwant the warning %q", name, out, tc.want)
		}
	}
}

type warningError struct{ out string }

func (e *warningError) Error() string { return "kubectl apply: " + e.out }
