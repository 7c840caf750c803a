// Package restconfig loads the client configuration a component talks to
// its apiserver with, and applies the client-side rate limits of
// --kube-api-qps and --kube-api-burst to it however it was loaded
// (--kubeconfig, $KUBECONFIG, in-cluster): client-go's default of 5 QPS is
// far too low for a controller that owns thousands of Jobs.
package restconfig

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

// Defaults of the rate-limit flags, the same as upstream JobSet's.
const (
	DefaultQPS   = 500
	DefaultBurst = 500
)

// Flags are the client flags shared by every component.
type Flags struct {
	Kubeconfig string
	// Context is the kubeconfig context to use; empty: its current one.
	Context string
	QPS     float64
	Burst   int
}

// AddFlags registers --kubeconfig, --context, --kube-api-qps and
// --kube-api-burst.
func (f *Flags) AddFlags(fs *pflag.FlagSet, kubeconfigUsage string) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", kubeconfigUsage)
	fs.StringVar(&f.Context, "context", "", "The context of --kubeconfig (or of $KUBECONFIG, ~/.kube/config) to use (default: its current context).")
	fs.Float64Var(&f.QPS, "kube-api-qps", DefaultQPS, "Maximum queries per second to each apiserver this process talks to (client-side rate limit; negative disables it).")
	fs.IntVar(&f.Burst, "kube-api-burst", DefaultBurst, "Maximum burst of queries to each apiserver this process talks to.")
}

// Validate checks the flag values.
func (f *Flags) Validate() error {
	if f.QPS > 0 && f.Burst <= 0 {
		return fmt.Errorf("--kube-api-burst must be positive with a positive --kube-api-qps, got %d", f.Burst)
	}
	return nil
}

// Load returns the configuration of --kubeconfig if set, else controller
// runtime's lookup ($KUBECONFIG, in-cluster, ~/.kube/config), with the
// rate limits applied.
func (f *Flags) Load() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if f.Kubeconfig != "" {
		cfg, err = Kubeconfig(f.Kubeconfig, f.Context)
	} else {
		cfg, err = config.GetConfigWithContext(f.Context)
	}
	if err != nil {
		return nil, err
	}
	f.Apply(cfg)
	return cfg, nil
}

// Apply sets the rate limits on cfg (e.g. a second cluster's config).
func (f *Flags) Apply(cfg *rest.Config) {
	cfg.QPS = float32(f.QPS)
	cfg.Burst = f.Burst
}

// Kubeconfig loads the kubeconfig file at path, with context instead of
// its current context when set.
func Kubeconfig(path, context string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
