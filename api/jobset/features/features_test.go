package features_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/component-base/featuregate"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
)

// The gates and defaults of upstream JobSet v0.12.
func TestDefaultsMatchUpstream(t *testing.T) {
	want := map[featuregate.Feature]bool{
		features.InPlaceRestart: false,
		features.TLSOptions:     true,
		features.RestartJob:     false,
		features.ElasticJobSet:  false,
	}
	got := map[featuregate.Feature]bool{}
	for f := range features.Gate.GetAll() {
		if f == "AllAlpha" || f == "AllBeta" {
			continue // component-base's own
		}
		got[f] = features.Enabled(f)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("feature gates (-want +got):\n%s", d)
	}
}

func TestFlag(t *testing.T) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	features.AddFlag(fs)
	usage := fs.Lookup("feature-gates").Usage
	for _, g := range []string{"ElasticJobSet=true|false (ALPHA - default=false)", "TLSOptions=true|false (BETA - default=true)"} {
		if !strings.Contains(usage, g) {
			t.Errorf("--feature-gates help does not list %q:\n%s", g, usage)
		}
	}
	t.Cleanup(func() {
		if err := features.Gate.Set("ElasticJobSet=false,TLSOptions=true"); err != nil {
			t.Error(err)
		}
	})
	if err := fs.Parse([]string{"--feature-gates=ElasticJobSet=true,TLSOptions=false"}); err != nil {
		t.Fatal(err)
	}
	if !features.Enabled(features.ElasticJobSet) || features.Enabled(features.TLSOptions) {
		t.Errorf("after the flag: ElasticJobSet=%v TLSOptions=%v, want true and false",
			features.Enabled(features.ElasticJobSet), features.Enabled(features.TLSOptions))
	}
}

func TestSetForTest(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		features.SetForTest(t, features.RestartJob, true)
		if !features.Enabled(features.RestartJob) {
			t.Error("RestartJob is off")
		}
	})
	if features.Enabled(features.RestartJob) {
		t.Error("RestartJob stayed on after the subtest")
	}
}
