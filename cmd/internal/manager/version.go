package manager

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// What a build is, stamped by the linker (hack/ldflags.sh, used by `make
// build` and the image builds):
//
//	-X github.com/jobset-fleet/jobset-fleet/cmd/internal/manager.version=…
//
// An unstamped build (go run, go build, go test) is version "dev"; its
// commit is then the one Go records from the checkout, when it does.
var (
	version   = "dev"
	gitCommit = ""
	buildDate = "unknown"
)

// BuildInfo is the build of the running binary.
type BuildInfo struct {
	Version, GitCommit, BuildDate, GoVersion, Platform string
}

// Build returns the running binary's build.
func Build() BuildInfo {
	b := BuildInfo{Version: version, GitCommit: gitCommit, BuildDate: buildDate,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if b.GitCommit == "" {
		b.GitCommit = vcsRevision()
	}
	return b
}

// vcsRevision is the commit go build recorded ("unknown" when it recorded
// none, as in tests), "-dirty" when the tree had changes.
func vcsRevision() string {
	rev, dirty := "unknown", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
	}
	return rev + dirty
}

// String is what --version prints.
func (b BuildInfo) String() string {
	return fmt.Sprintf("version:    %s\ngit commit: %s\nbuild date: %s\ngo version: %s %s\n",
		b.Version, b.GitCommit, b.BuildDate, b.GoVersion, b.Platform)
}

// BuildInfoMetric is the name of the gauge that is 1 and whose labels say
// the build, as Prometheus' own <name>_build_info series do, so dashboards
// and alerts can tell which version runs where.
const BuildInfoMetric = "jobset_fleet_build_info"

func init() {
	b := Build()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: BuildInfoMetric,
		Help: "A metric with a constant '1' value labelled by the version, git commit and Go version of the running binary.",
	}, []string{"version", "git_commit", "go_version"})
	g.WithLabelValues(b.Version, b.GitCommit, b.GoVersion).Set(1)
	// Both binaries serve controller-runtime's registry.
	metrics.Registry.MustRegister(g)
}
