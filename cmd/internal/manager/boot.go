package manager

import (
	"errors"
	"flag"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/jobset-fleet/jobset-fleet/cmd/internal/crdwait"
)

// Boot is what a binary puts into the boot sequence both share (Run). The
// functions are called after the flags are parsed, so they may read the
// component's options the flags filled in.
type Boot struct {
	Component Component
	// Usage is printed by --help before the flags.
	Usage string
	// ArgsHint follows the error for an unexpected positional argument.
	ArgsHint string
	// AddFlags registers the component's own flags.
	AddFlags func(*flag.FlagSet)
	// Validate checks the component's flags.
	Validate func() error
	// Cache narrows the manager's cache; nil: the default.
	Cache func() cache.Options
	// Kinds are the API kinds the component cannot start without: Run waits
	// until they are served (a CRD may be installed right before).
	Kinds []schema.GroupVersionKind
	// Setup adds the component's controllers to mgr.
	Setup func(mgr ctrl.Manager, f Flags) error
	// Webhooks registers the component's webhooks on mgr.
	Webhooks func(ctrl.Manager) error
	// StartMessage and StartValues are logged just before the manager starts.
	StartMessage string
	StartValues  func() []any
}

// Run is a binary's life: parse the process and component flags, set up
// logging, check the flags, build the manager, wait for the kinds the
// component needs, set it up with its webhooks, and run until a signal.
func Run(args []string, b Boot) error {
	fs := flag.NewFlagSet(b.Component.Name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), b.Usage); fs.PrintDefaults() }
	var f Flags
	f.AddFlags(fs, b.Component)
	b.AddFlags(fs)
	// Logging flags (-v, --logtostderr, ...) are klog's, like every
	// Kubernetes component's.
	klog.InitFlags(fs)
	showVersion := fs.Bool("version", false, "Print the version, git commit, build date and Go version, and exit.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Printf("%s\n%s", b.Component.Name, Build())
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q%s", fs.Arg(0), b.ArgsHint)
	}
	ctrl.SetLogger(klog.NewKlogr())
	if err := errors.Join(f.Validate(), b.Validate()); err != nil {
		return err
	}
	var cacheOpts cache.Options
	if b.Cache != nil {
		cacheOpts = b.Cache()
	}
	cfg, mgr, err := New(f, b.Component, cacheOpts)
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if err := crdwait.Wait(ctx, ctrl.Log, cfg, b.Kinds, crdwait.Options{}); err != nil {
		return err
	}
	if err := b.Setup(mgr, f); err != nil {
		return err
	}
	if err := ServeWebhooks(ctx, mgr, f, b.Component, b.Webhooks); err != nil {
		return err
	}
	ctrl.Log.Info(b.StartMessage, append(b.StartValues(), "webhooks", !f.DisableWebhooks)...)
	return mgr.Start(ctx)
}
