package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/term"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/jobset-fleet/jobset-fleet/cmd/internal/crdwait"
)

// Boot is what a binary puts into the boot sequence both share (Command).
// The functions are called after the flags are parsed, so they may read the
// component's options the flags filled in.
type Boot struct {
	Component Component
	// Short and Long describe the command in --help; Example shows uses.
	Short, Long, Example string
	// AddFlags registers the component's own flags, each group in its
	// section of fss (fss.FlagSet(name)), listed in --help before the
	// sections both binaries share. A package with flags of its own adds
	// them here, e.g. pane.AddFlags(fss.FlagSet("pane")).
	AddFlags func(fss *cliflag.NamedFlagSets)
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

// Sections of --help both binaries share, after the component's own
// sections and those of Flags.AddFlags.
const (
	SectionLogging = "logging"
	SectionGeneric = "generic"
)

// Command is a binary's root command (run it with ExecuteContext and a
// context a signal cancels, ctrl.SetupSignalHandler): its flags in sections (the
// component's own first, klog's apart), and a run that parses them, sets up
// logging, checks the flags, builds the manager, waits for the kinds the
// component needs, sets it up with its webhooks, and runs until a signal.
func Command(b Boot) *cobra.Command {
	var (
		fss         cliflag.NamedFlagSets
		f           Flags
		showVersion bool
	)
	b.AddFlags(&fss)
	f.AddFlags(&fss, b.Component)
	// Logging flags (--v, --logtostderr, ...) are klog's, like every
	// Kubernetes component's.
	AddGoFlags(fss.FlagSet(SectionLogging), klog.InitFlags)
	fss.FlagSet(SectionGeneric).BoolVar(&showVersion, "version", false, "Print the version, git commit, build date and Go version, and exit.")
	cmd := &cobra.Command{
		Use:           b.Component.Name + " [flags]",
		Short:         b.Short,
		Long:          b.Long,
		Example:       b.Example,
		Args:          NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s", b.Component.Name, Build())
				return nil
			}
			ctrl.SetLogger(klog.NewKlogr())
			if err := errors.Join(f.Validate(), b.Validate()); err != nil {
				return err
			}
			return run(cmd.Context(), b, f)
		},
	}
	SetFlags(cmd, &fss)
	// A subcommand also gives the binary cobra's completion command.
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, git commit, build date and Go version (as --version)",
		Args:  NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s", b.Component.Name, Build())
		},
	})
	return cmd
}

func run(ctx context.Context, b Boot, f Flags) error {
	var cacheOpts cache.Options
	if b.Cache != nil {
		cacheOpts = b.Cache()
	}
	cfg, mgr, err := New(f, b.Component, cacheOpts)
	if err != nil {
		return err
	}
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

// NoArgs refuses positional arguments, naming the subcommands if any.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(names) > 0 {
		return fmt.Errorf("unknown command %q for %q (commands: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
	return fmt.Errorf("unexpected argument %q for %q", args[0], cmd.CommandPath())
}

// SetFlags gives cmd the flags of fss, --help in the generic section, and a
// help that lists them by section (component-base's layout), after the
// description, usage, examples and subcommands. Commands below cmd that set
// no flags of their own keep cobra's help.
func SetFlags(cmd *cobra.Command, fss *cliflag.NamedFlagSets) {
	fss.FlagSet(SectionGeneric).BoolP("help", "h", false, "Help for "+cmd.Name()+".")
	for _, name := range fss.Order {
		cmd.Flags().AddFlagSet(fss.FlagSets[name])
	}
	parentHelp, parentUsage := cmd.HelpFunc(), cmd.UsageFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c != cmd {
			parentHelp(c, args)
			return
		}
		printHelp(c, fss, true)
	})
	cmd.SetUsageFunc(func(c *cobra.Command) error {
		if c != cmd {
			return parentUsage(c)
		}
		printHelp(c, fss, false)
		return nil
	})
}

func printHelp(cmd *cobra.Command, fss *cliflag.NamedFlagSets, long bool) {
	w := cmd.OutOrStdout()
	if !long {
		w = cmd.OutOrStderr()
	}
	if desc := cmd.Long; long && desc != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(desc))
	} else if long && cmd.Short != "" {
		fmt.Fprintf(w, "%s\n\n", cmd.Short)
	}
	fmt.Fprintf(w, "Usage:\n  %s\n", cmd.UseLine())
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s <command> [flags]\n\nCommands:\n", cmd.CommandPath())
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-*s %s\n", cmd.NamePadding(), c.Name(), c.Short)
			}
		}
	}
	if long && cmd.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(cmd.Example, "\n"))
	}
	cols, _, _ := term.TerminalSize(w)
	cliflag.PrintSections(w, *fss, cols)
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nUse \"%s <command> --help\" for the flags of a command.\n", cmd.CommandPath())
	}
}

// AddGoFlags registers on fs the standard-library flags add registers, as
// the option packages (hub, spoke) and klog define theirs. A one-letter
// name also gets its shorthand, so -v=2 works as before.
func AddGoFlags(fs *pflag.FlagSet, add func(*flag.FlagSet)) {
	gfs := flag.NewFlagSet("", flag.ContinueOnError)
	add(gfs)
	fs.AddGoFlagSet(gfs)
}
