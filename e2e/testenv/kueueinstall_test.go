package testenv

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestKueueInstallManifests renders Kueue's install from the pinned module
// (needs bin/kubectl and the module, as the kind e2e does): the manager
// runs the given image, manages JobSets only, serves only the webhooks of
// its own types and of JobSets, and webhook configurations come first,
// CRDs last.
func TestKueueInstallManifests(t *testing.T) {
	out, err := KueueInstallManifests(KueueInstallOptions{Image: "example.com/kueue:test"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds = append(kinds, u.GetKind())
		switch u.GetKind() {
		case "Deployment":
			containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			if img := containers[0].(map[string]any)["image"]; img != "example.com/kueue:test" {
				t.Errorf("manager image %v", img)
			}
		case "ConfigMap":
			data, _, _ := unstructured.NestedString(u.Object, "data", "controller_manager_config.yaml")
			if !strings.Contains(data, "jobset.x-k8s.io/jobset") || strings.Contains(data, "batch/job") {
				t.Errorf("integrations not JobSet only:\n%s", data)
			}
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			for _, h := range hooks {
				rules, _, _ := unstructured.NestedSlice(h.(map[string]any), "rules")
				for _, r := range rules {
					groups, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "apiGroups")
					if g := strings.Join(groups, ","); g != "kueue.x-k8s.io" && g != "jobset.x-k8s.io" {
						t.Errorf("%s keeps a webhook of %s", u.GetKind(), g)
					}
				}
			}
			if len(hooks) == 0 {
				t.Errorf("%s has no webhooks left", u.GetKind())
			}
		}
	}
	if len(kinds) < 10 || !strings.HasSuffix(kinds[0], "WebhookConfiguration") && kinds[0] != "APIService" || kinds[len(kinds)-1] != "CustomResourceDefinition" {
		t.Errorf("order of kinds: %v", kinds)
	}
}
