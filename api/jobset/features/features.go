// Package features holds the JobSet feature gates: every gate upstream
// JobSet v0.12 has, with upstream's names, stages and defaults, so the same
// --feature-gates value means the same thing to the jobset-fleet agent, the
// hub and upstream's controller. JobSet validation (api/jobset/v1alpha2/
// validation) and the member's reconciler read them through Enabled.
package features

import (
	"flag"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/component-base/featuregate"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

// The gates of upstream JobSet v0.12 (pkg/features there).
const (
	// InPlaceRestart lets failurePolicy.restartStrategy be InPlaceRestart:
	// healthy pods restart in place instead of being recreated (upstream
	// KEP 467). Alpha, off by default.
	InPlaceRestart featuregate.Feature = "InPlaceRestart"

	// TLSOptions lets the controller's configuration set the minimum TLS
	// version and cipher suites of its servers. Beta, on by default.
	TLSOptions featuregate.Feature = "TLSOptions"

	// RestartJob enables the failure policy actions RestartJob and
	// RestartJobAndIgnoreMaxRestarts, which recreate only the failed Job
	// (upstream KEP 262). Alpha, off by default.
	RestartJob featuregate.Feature = "RestartJob"

	// ElasticJobSet lets parallelism and completions of an Indexed
	// ReplicatedJob change while the JobSet runs, and propagates them to the
	// child Jobs (upstream KEP 463). Alpha, off by default.
	ElasticJobSet featuregate.Feature = "ElasticJobSet"
)

var defaults = map[featuregate.Feature]featuregate.FeatureSpec{
	InPlaceRestart: {Default: false, PreRelease: featuregate.Alpha},
	TLSOptions:     {Default: true, PreRelease: featuregate.Beta},
	RestartJob:     {Default: false, PreRelease: featuregate.Alpha},
	ElasticJobSet:  {Default: false, PreRelease: featuregate.Alpha},
}

// Gate is the process's JobSet feature gates. It is global, as upstream's
// is, because admission and the reconciler of one process must agree.
var Gate featuregate.MutableFeatureGate = newGate()

func newGate() featuregate.MutableFeatureGate {
	g := featuregate.NewFeatureGate()
	if err := g.Add(defaults); err != nil {
		panic(err) // the table above is static
	}
	return g
}

// Enabled reports whether a gate is on.
func Enabled(f featuregate.Feature) bool { return Gate.Enabled(f) }

// AddFlag registers --feature-gates (component-base's parser and help text,
// which lists every gate with its stage and default) on a standard library
// flag set.
func AddFlag(fs *flag.FlagSet) {
	pfs := pflag.NewFlagSet("", pflag.ContinueOnError)
	Gate.AddFlag(pfs)
	pfs.VisitAll(func(f *pflag.Flag) { fs.Var(&flagValue{f.Value}, f.Name, f.Usage) })
}

// flagValue adapts component-base's flag value to the standard library,
// whose help output calls String on a zero value of the flag's type.
type flagValue struct{ v pflag.Value }

func (f *flagValue) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	return f.v.String()
}

func (f *flagValue) Set(s string) error { return f.v.Set(s) }

// SetForTest sets a gate for the duration of a test and restores it in
// t.Cleanup. Tests that change gates must not run in parallel with tests
// that read them.
func SetForTest(tb testing.TB, f featuregate.Feature, value bool) {
	tb.Helper()
	featuregatetesting.SetFeatureGateDuringTest(tb, Gate, f, value)
}
