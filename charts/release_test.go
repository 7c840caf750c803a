package charts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// release runs hack/release.sh for the parts that need no Docker (the
// rendered manifests and the packaged charts) into a scratch dist/.
func release(t *testing.T, version string) (string, error) {
	t.Helper()
	dist := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command(filepath.Join("..", "hack", "release.sh"))
	cmd.Env = append(os.Environ(), "VERSION="+version, "DIST="+dist, "RELEASE_PARTS=manifests charts")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", &releaseError{err, string(out)}
	}
	return dist, nil
}

type releaseError struct {
	err    error
	output string
}

func (e *releaseError) Error() string { return e.err.Error() + ": " + e.output }

func deploymentImage(t *testing.T, objs map[string]*unstructured.Unstructured, name string) string {
	t.Helper()
	dep := objs["Deployment "+namespace+"/"+name]
	if dep == nil {
		t.Fatalf("no Deployment %s", name)
	}
	ctrs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	return ctrs[0].(map[string]any)["image"].(string)
}

// TestReleaseReferencesTheVersion: `make release VERSION=v1.2.3` renders
// install-hub.yaml and install-agent.yaml that install what config/ does
// with the images jobset-fleet/{hub,agent}:v1.2.3, and charts of version
// 1.2.3 whose default image is the same; SHA256SUMS checks them; a second
// run writes the same files; a version that is not v-semver is refused.
// Cost: ~2 s (kustomize and helm, no Docker, no binaries).
func TestReleaseReferencesTheVersion(t *testing.T) {
	const version = "v1.2.3"
	dist, err := release(t, version)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"hub", "agent"} {
		name := "jobset-fleet-" + c
		image := "jobset-fleet/" + c + ":" + version

		data, err := os.ReadFile(filepath.Join(dist, "install-"+c+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		installed := byKey(decode(t, data))
		if got := deploymentImage(t, installed, name); got != image {
			t.Errorf("install-%s.yaml: image %s, want %s", c, got, image)
		}
		// Otherwise exactly config/<c>.
		config := byKey(kustomize(t, filepath.Join("..", "config", c)))
		if len(config) != len(installed) {
			t.Errorf("install-%s.yaml has %d objects, config/%s %d", c, len(installed), c, len(config))
		}
		for k, want := range config {
			got := installed[k]
			if got == nil {
				t.Errorf("install-%s.yaml lacks %s", c, k)
				continue
			}
			if k == "Deployment "+namespace+"/"+name {
				got = got.DeepCopy()
				ctrs, _, _ := unstructured.NestedSlice(got.Object, "spec", "template", "spec", "containers")
				ctrs[0].(map[string]any)["image"] = "jobset-fleet/" + c + ":dev"
				_ = unstructured.SetNestedSlice(got.Object, ctrs, "spec", "template", "spec", "containers")
			}
			if diff := cmp.Diff(want.Object, got.Object); diff != "" {
				t.Errorf("install-%s.yaml: %s differs from config/%s beyond the image (-config +release):\n%s", c, k, c, diff)
			}
		}

		chart := filepath.Join(dist, name+"-1.2.3.tgz")
		rendered := mustRender(t, chart)
		if got := deploymentImage(t, rendered, name); got != image {
			t.Errorf("%s: default image %s, want %s", filepath.Base(chart), got, image)
		}
		if v := rendered["Deployment "+namespace+"/"+name].GetLabels()["app.kubernetes.io/version"]; v != version {
			t.Errorf("%s: label app.kubernetes.io/version=%q, want %q", filepath.Base(chart), v, version)
		}
	}

	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}
	if n := strings.Count(string(sums), "\n"); n != 4 {
		t.Errorf("SHA256SUMS lists %d files, want 4 (two manifests, two charts):\n%s", n, sums)
	}

	again, err := release(t, version)
	if err != nil {
		t.Fatal(err)
	}
	if sums2, _ := os.ReadFile(filepath.Join(again, "SHA256SUMS")); string(sums2) != string(sums) {
		t.Errorf("a second release of the same commit differs:\n%s\nthen\n%s", sums, sums2)
	}

	for _, bad := range []string{"", "1.2.3", "v1.2", "latest"} {
		if _, err := release(t, bad); err == nil || !strings.Contains(err.Error(), "want a v-prefixed semantic version") {
			t.Errorf("VERSION=%q: %v, want the refusal", bad, err)
		}
	}
}
