package manager

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestBuildInfoMetric: both binaries serve jobset_fleet_build_info = 1
// with the version, git commit and Go version as labels; a build nobody
// stamped (this test binary) says version "dev".
func TestBuildInfoMetric(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != BuildInfoMetric {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1", BuildInfoMetric, len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != "dev" || labels["go_version"] != runtime.Version() || labels["git_commit"] == "" || len(labels) != 3 {
			t.Errorf("%s labels = %v, want version=dev, go_version=%s and a git_commit", BuildInfoMetric, labels, runtime.Version())
		}
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("%s = %v, want 1", BuildInfoMetric, m.GetGauge().GetValue())
		}
		return
	}
	t.Fatalf("no %s in the metrics registry", BuildInfoMetric)
}

// TestVersionFlag builds both binaries stamped as `make build` and the
// image builds do (hack/ldflags.sh) and runs them with --version.
func TestVersionFlag(t *testing.T) {
	root := testenv.RepoRoot()
	ldflags := exec.Command(filepath.Join(root, "hack", "ldflags.sh"))
	ldflags.Env = append(os.Environ(), "VERSION=v9.8.7-test", "SOURCE_DATE_EPOCH=86400")
	out, err := ldflags.Output()
	if err != nil {
		t.Fatalf("hack/ldflags.sh: %v", err)
	}
	dir := t.TempDir()
	for _, bin := range []string{"hub", "agent"} {
		exe := filepath.Join(dir, bin)
		build := exec.Command("go", "build", "-ldflags", strings.TrimSpace(string(out)), "-o", exe, "./cmd/"+bin)
		build.Dir = root
		if msg, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", bin, err, msg)
		}
		got, err := exec.Command(exe, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", bin, err)
		}
		for _, want := range []string{
			"jobset-fleet-" + bin + "\n",
			"version:    v9.8.7-test\n",
			"build date: 1970-01-02T00:00:00Z\n",
			"go version: " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
		} {
			if !strings.Contains(string(got), want) {
				t.Errorf("%s --version printed %q, want it to contain %q", bin, got, want)
			}
		}
		if !strings.Contains(string(got), "git commit: ") || strings.Contains(string(got), "git commit: unknown") {
			t.Errorf("%s --version printed %q, want the git commit", bin, got)
		}
	}
}
