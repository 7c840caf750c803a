package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/manager"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/restconfig"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// The --help sections of the membership commands.
const (
	sectionHub    = "hub"
	sectionMember = "member"
)

// membershipFlags are the flags the membership commands share.
type membershipFlags struct {
	hubKubeconfig, hubContext       string
	memberKubeconfig, memberContext string
	opts                            membership.Options
	labels                          map[string]string
	allowedNamespaces               []string
	dryRun                          bool
	output                          string
}

// addHubFlags are the flags of the hub and of the member's name there.
func (f *membershipFlags) addHubFlags(fs *pflag.FlagSet, kubeconfigUsage string) {
	fs.StringVar(&f.hubKubeconfig, "hub-kubeconfig", "", kubeconfigUsage)
	fs.StringVar(&f.hubContext, "hub-context", "", "The context of --hub-kubeconfig to use (default: its current context).")
	fs.StringVar(&f.opts.ClusterName, "cluster-name", "", "The member's name in the fleet (required).")
	fs.StringVar(&f.opts.InventoryNamespace, "inventory-namespace", fleet.DefaultInventoryNamespace, "Hub namespace of the ClusterProfiles.")
}

func (f *membershipFlags) addMemberFlags(fs *pflag.FlagSet, kubeconfigUsage string) {
	fs.StringVar(&f.memberKubeconfig, "member-kubeconfig", "", kubeconfigUsage)
	fs.StringVar(&f.memberContext, "member-context", "", "The context of --member-kubeconfig to use (default: its current context).")
	fs.StringVar(&f.opts.CRDDir, "crd-dir", "", "Directory of the CRD manifests installed on (or, with --remove-crds, removed from) the member (default: those built into this binary).")
}

// addProfileFlags are what the hub side of a join writes on the profile.
func (f *membershipFlags) addProfileFlags(fs *pflag.FlagSet) {
	fs.StringToStringVar(&f.labels, "labels", nil, "ClusterProfile labels, k=v,k2=v2.")
	fs.StringVar(&f.opts.DisplayName, "display-name", "", "The ClusterProfile's display name (default: --cluster-name).")
	fs.StringSliceVar(&f.allowedNamespaces, "allowed-namespaces", nil, "Comma-separated hub namespaces whose JobSets may run on this member (default: all but the hub's denied ones).")
	fs.DurationVar(&f.opts.TokenExpiration, "token-expiration", 24*time.Hour, "Lifetime of the agent's hub token; the agent renews it itself before it expires. The hub may shorten it and refuses less than 10m.")
	fs.StringVar(&f.opts.HubServerURL, "hub-server", "", "Hub apiserver URL as the agent's Pods on the member reach it (default: the server of --hub-kubeconfig).")
	fs.BoolVar(&f.opts.AllowLoopbackHubServer, strings.TrimPrefix(membership.AllowLoopbackHubServerFlag, "--"), false,
		"Accept a --hub-server on a loopback address (127.0.0.1, ::1, localhost), which the member's Pods reach only if the hub runs in their own network namespace.")
}

func (f *membershipFlags) addDryRunFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.dryRun, "dry-run", false, "Check everything (preflight) and print what would be created, with -o yaml; create nothing.")
	fs.StringVarP(&f.output, "output", "o", "", "With --dry-run: yaml.")
}

// hub loads the hub's configuration and a client.
func (f *membershipFlags) hub() (client.Client, *rest.Config, error) {
	if f.hubKubeconfig == "" {
		return nil, nil, errors.New("--hub-kubeconfig is required")
	}
	return load(f.hubKubeconfig, f.hubContext, "hub")
}

func (f *membershipFlags) member() (client.Client, *rest.Config, error) {
	if f.memberKubeconfig == "" {
		return nil, nil, errors.New("--member-kubeconfig is required")
	}
	return load(f.memberKubeconfig, f.memberContext, "member")
}

func load(path, context, which string) (client.Client, *rest.Config, error) {
	cfg, err := restconfig.Kubeconfig(path, context)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", which, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: api.NewScheme()})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", which, err)
	}
	return c, cfg, nil
}

func (f *membershipFlags) requireCluster() error {
	if f.opts.ClusterName == "" {
		return errors.New("--cluster-name is required")
	}
	return nil
}

// profileOptions completes the hub side's options from the flags and the
// hub's configuration.
func (f *membershipFlags) profileOptions(hubCfg *rest.Config) error {
	f.opts.Labels = f.labels
	f.opts.AllowedNamespaces = f.allowedNamespaces
	if f.opts.HubServerURL == "" {
		f.opts.HubServerURL = hubCfg.Host
	}
	var err error
	f.opts.HubCAData, err = caData(hubCfg)
	return err
}

func (f *membershipFlags) checkOutput() error {
	switch {
	case f.dryRun && f.output != "yaml":
		return errors.New("--dry-run prints what would be created with -o yaml")
	case !f.dryRun && f.output == "yaml":
		return errors.New("-o yaml goes with --dry-run")
	}
	return nil
}

// subcommand makes a membership command with its flag sections.
func subcommand(use, short, long, example string, fss *cliflag.NamedFlagSets, run func(cmd *cobra.Command) error) *cobra.Command {
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args:          manager.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd) },
	}
	manager.SetFlags(cmd, fss)
	return cmd
}

func joinCommand() *cobra.Command {
	var (
		f          membershipFlags
		fss        cliflag.NamedFlagSets
		outputFile string
		token      string
		joinServer string
	)
	f.addHubFlags(fss.FlagSet(sectionHub), "Admin kubeconfig of the hub (required, except with --token).")
	f.addMemberFlags(fss.FlagSet(sectionMember), "Admin kubeconfig of the member (required).")
	fs := fss.FlagSet("join")
	fs.StringVar(&token, "token", "", "A join token from 'jobset-fleet-agent token create' on the hub: join with it and member credentials alone (no --hub-kubeconfig).")
	fs.StringVar(&joinServer, "token-hub-address", "", "With --token: the hub apiserver's URL as this machine reaches it, for the join's own requests, when it differs from "+
		"the address in the token (which the agent's Pods use). The hub's certificate must be valid for it.")
	f.addProfileFlags(fs)
	fs.StringVar(&outputFile, "output-kubeconfig", "", "Also write the agent's hub kubeconfig to this file (for running the agent locally).")
	fs.BoolVar(&f.opts.Force, "force", false, "Take over a cluster name that a different cluster joined with. The agent's ServiceAccount on the hub is "+
		"created anew, so the old cluster's agent tokens stop working. If the old cluster may still run some of the fleet's "+
		"JobSets (dispatches not confirmed stopped), join lists them and refuses, unless "+membership.ConfirmCopiesStoppedFlag+".")
	fs.BoolVar(&f.opts.ConfirmCopiesStopped, strings.TrimPrefix(membership.ConfirmCopiesStoppedFlag, "--"), false, "With --force: state that the old cluster's copies of the fleet's JobSets are stopped (stopped by hand, "+
		"or the cluster is gone). Each of its dispatches is marked Deleted (reason "+fleet.ReasonStopConfirmed+"), deleted and "+
		"released before the new cluster gets its token; the hub then runs those JobSets again, maybe on the new cluster.")
	f.addDryRunFlags(fs)
	return subcommand("join", "Join a member cluster to a fleet hub",
		"Join a member cluster to the fleet: its ClusterProfile, hub namespace, agent ServiceAccount, Roles\n"+
			"and token on the hub; the CRDs (built into this binary), the namespace "+fleet.SystemNamespace+"\n"+
			"and the Secret "+fleet.HubKubeconfigSecret+" on the member. Idempotent.\n\n"+
			"With both admin kubeconfigs, join does both sides. A hub team and a member team that share no\n"+
			"credentials join in two steps: the hub admin runs `token create`, the member admin\n"+
			"`join --token` with the member's kubeconfig alone.\n\n"+
			"Before writing anything join checks the cluster name, that --hub-server is not a loopback\n"+
			"address, the apiservers' versions and the member's CRDs.",
		`  # One admin holding both kubeconfigs
  jobset-fleet-agent join --hub-kubeconfig hub.kubeconfig --member-kubeconfig member.kubeconfig \
    --cluster-name member-1 --labels region=eu --hub-server https://hub.example.com:6443

  # The member side of a token join (the hub admin ran "token create")
  jobset-fleet-agent join --token jft1.eyJ... --member-kubeconfig member.kubeconfig

  # Show what would be created, create nothing
  jobset-fleet-agent join --hub-kubeconfig hub.kubeconfig --member-kubeconfig member.kubeconfig \
    --cluster-name member-1 --dry-run -o yaml`,
		&fss, func(cmd *cobra.Command) error {
			if err := f.checkOutput(); err != nil {
				return err
			}
			if token == "" && joinServer != "" {
				return errors.New("--token-hub-address goes with --token")
			}
			if token != "" {
				return joinWithToken(cmd, &f, token, joinServer, outputFile)
			}
			if err := f.requireCluster(); err != nil {
				return err
			}
			hub, hubCfg, err := f.hub()
			if err != nil {
				return err
			}
			member, memberCfg, err := f.member()
			if err != nil {
				return err
			}
			if err := f.profileOptions(hubCfg); err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := membership.Preflight(ctx, hubCfg, memberCfg, f.opts); err != nil {
				return fmt.Errorf("preflight: %w", err)
			}
			if f.dryRun {
				clusterID, err := membership.ClusterID(ctx, member)
				if err != nil {
					return err
				}
				plan, err := membership.PlanJoin(f.opts, clusterID)
				if err != nil {
					return err
				}
				return plan.WriteYAML(cmd.OutOrStdout(), hub.Scheme())
			}
			kubeconfig, err := membership.Join(ctx, hub, member, f.opts)
			if err != nil {
				return err
			}
			return joined(cmd.OutOrStdout(), f.opts.ClusterName, kubeconfig, outputFile)
		})
}

func joinWithToken(cmd *cobra.Command, f *membershipFlags, encoded, joinServer, outputFile string) error {
	for _, name := range []string{"hub-kubeconfig", "hub-context", "cluster-name", "labels", "display-name", "allowed-namespaces", "hub-server", "token-expiration", "force", strings.TrimPrefix(membership.ConfirmCopiesStoppedFlag, "--")} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not go with --token: the hub admin chose the hub side with `token create`", name)
		}
	}
	t, err := membership.DecodeJoinToken(encoded)
	if err != nil {
		return err
	}
	t.JoinServer = joinServer
	member, memberCfg, err := f.member()
	if err != nil {
		return err
	}
	opts := f.opts
	opts.ClusterName, opts.InventoryNamespace, opts.HubServerURL, opts.HubCAData = t.ClusterName, t.InventoryNamespace, t.Server, t.CAData
	// The hub admin chose the hub's address, and token create checked it.
	opts.AllowLoopbackHubServer = true
	ctx := cmd.Context()
	// The hub's version and the token's validity need the token: the
	// version endpoint takes any caller.
	if err := membership.Preflight(ctx, t.RESTConfig(), memberCfg, opts); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if f.dryRun {
		clusterID, err := membership.ClusterID(ctx, member)
		if err != nil {
			return err
		}
		plan, err := membership.PlanJoin(opts, clusterID)
		if err != nil {
			return err
		}
		plan.Hub = nil // the hub admin created it; the join records only the cluster ID
		fmt.Fprintf(cmd.OutOrStdout(), "# on the hub, the join records %s=%s on ClusterProfile %s/%s\n", fleet.ClusterIDAnnotation, clusterID, t.InventoryNamespace, t.ClusterName)
		return plan.WriteYAML(cmd.OutOrStdout(), member.Scheme())
	}
	kubeconfig, err := membership.JoinWithToken(ctx, member, t, f.opts)
	if err != nil {
		return err
	}
	return joined(cmd.OutOrStdout(), t.ClusterName, kubeconfig, outputFile)
}

func joined(out io.Writer, cluster string, kubeconfig []byte, outputFile string) error {
	if outputFile != "" {
		if err := os.WriteFile(outputFile, kubeconfig, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", outputFile, err)
		}
	}
	fmt.Fprintf(out, "Joined %s. Run the agent on the member with --cluster-name=%s --hub-kubeconfig-secret=%s/%s\n",
		cluster, cluster, fleet.SystemNamespace, fleet.HubKubeconfigSecret)
	return nil
}

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create join tokens, for a member team that holds no hub credentials",
		Long: "A join token lets a member admin join a member with `join --token` and member credentials alone.\n" +
			"`token create` prepares the hub side with hub credentials alone.",
		Args: manager.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(tokenCreateCommand())
	return cmd
}

func tokenCreateCommand() *cobra.Command {
	var (
		f   membershipFlags
		fss cliflag.NamedFlagSets
		t   membership.TokenOptions
	)
	f.addHubFlags(fss.FlagSet(sectionHub), "Admin kubeconfig of the hub (required).")
	fs := fss.FlagSet("token")
	fs.DurationVar(&t.TTL, "ttl", time.Hour, "How long the token may be used. The hub's apiserver refuses it after that (bootstrap token expiry), and after its first successful join.")
	f.addProfileFlags(fs)
	f.addDryRunFlags(fs)
	fs.Lookup("output").Usage = "yaml (with --dry-run), or token: print only the token."
	return subcommand("create", "Prepare the hub side of a member and print a single-use join token",
		"Prepare, with hub credentials alone, the hub side of a member as join does (its namespace,\n"+
			"ClusterProfile, agent ServiceAccount and Roles), and print a short-lived, single-use join\n"+
			"token with the command the member admin runs. The token is a bootstrap token (the hub's\n"+
			"apiserver must accept them, --enable-bootstrap-token-auth, as kubeadm and kind clusters do),\n"+
			"allowed only to mint the agent's hub token and record the member's identity. It carries the\n"+
			"hub's address and CA. A new token for the same cluster revokes the earlier ones.",
		`  # On the hub: a token valid for 30 minutes
  jobset-fleet-agent token create --hub-kubeconfig hub.kubeconfig --cluster-name member-2 --ttl 30m \
    --hub-server https://hub.example.com:6443 --labels region=eu

  # Only the token, for scripts
  TOKEN=$(jobset-fleet-agent token create --hub-kubeconfig hub.kubeconfig --cluster-name member-2 -o token)`,
		&fss, func(cmd *cobra.Command) error {
			if f.output == "token" {
				if f.dryRun {
					return errors.New("-o token does not go with --dry-run")
				}
			} else if err := f.checkOutput(); err != nil {
				return err
			}
			if err := f.requireCluster(); err != nil {
				return err
			}
			hub, hubCfg, err := f.hub()
			if err != nil {
				return err
			}
			if err := f.profileOptions(hubCfg); err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := membership.Preflight(ctx, hubCfg, nil, f.opts); err != nil {
				return fmt.Errorf("preflight: %w", err)
			}
			if f.dryRun {
				plan, err := membership.PlanToken(f.opts, t)
				if err != nil {
					return err
				}
				return plan.WriteYAML(cmd.OutOrStdout(), hub.Scheme())
			}
			token, err := membership.CreateToken(ctx, hub, f.opts, t)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == "token" {
				fmt.Fprintln(out, token.Encode())
				return nil
			}
			fmt.Fprintf(out, "Prepared %s on the hub. Its join token works once, until %s:\n\n  %s\n\n"+
				"On the member, with its admin kubeconfig (and no hub credentials), run:\n\n"+
				"  jobset-fleet-agent join --token %s --member-kubeconfig <member kubeconfig>\n",
				f.opts.ClusterName, token.Expires.Format(time.RFC3339), token.Encode(), token.Encode())
			return nil
		})
}

func unjoinCommand() *cobra.Command {
	var (
		f       membershipFlags
		fss     cliflag.NamedFlagSets
		drain   membership.DrainOptions
		doDrain bool
	)
	f.addHubFlags(fss.FlagSet(sectionHub), "Admin kubeconfig of the hub (required).")
	f.addMemberFlags(fss.FlagSet(sectionMember), "Admin kubeconfig of the member (required, except with "+membership.ConfirmCopiesStoppedFlag+").")
	fs := fss.FlagSet("unjoin")
	fs.BoolVar(&doDrain, strings.TrimPrefix(membership.UnjoinDrainFlag, "--"), false, "Drain the member first (as `drain`: the hub moves its JobSets that have not started, those that started finish), showing progress, then unjoin.")
	fs.DurationVar(&drain.Timeout, "drain-timeout", 30*time.Minute, "With --drain: how long to wait for the member to hold no dispatch.")
	fs.BoolVar(&f.opts.Force, strings.TrimPrefix(membership.UnjoinForceFlag, "--"), false, "Delete the fleet's JobSets that still run on the member (the hub runs them again elsewhere, from the start).")
	fs.BoolVar(&f.opts.RemoveCRDs, "remove-crds", false, "Also delete the CRDs (and every JobSet) from the member.")
	fs.BoolVar(&f.opts.KeepWorkloads, "keep-workloads", false, "Leave the fleet's JobSets on the member running. Their dispatches stay on the hub, held for the "+
		"member: the hub runs those JobSets nowhere else until you stop the copies and run unjoin again with "+
		membership.ConfirmCopiesStoppedFlag+" (or without --keep-workloads, which deletes them).")
	fs.BoolVar(&f.opts.ConfirmCopiesStopped, strings.TrimPrefix(membership.ConfirmCopiesStoppedFlag, "--"), false, "State that the member's copies of the fleet's JobSets are stopped (stopped by hand, or the member is "+
		"gone). Works on the hub alone (no --member-kubeconfig): each dispatch left for the member is marked "+
		"Deleted (reason "+fleet.ReasonStopConfirmed+", with who said so), deleted and released, and the hub runs those "+
		"JobSets elsewhere. Wrong, it means two copies: only after checking.")
	fs.DurationVar(&f.opts.WaitTimeout, "wait-timeout", 5*time.Minute, "How long to wait for the fleet's JobSets on the member, Jobs included, to be gone.")
	return subcommand("unjoin", "Remove a member cluster from the fleet",
		"Remove a member cluster from the fleet: everything join created, and the fleet's JobSets on\n"+
			"the member. The member's CRDs stay unless --remove-crds. Idempotent.\n\n"+
			"While fleet JobSets run on the member, unjoin refuses unless "+membership.UnjoinDrainFlag+" (drain first, then\n"+
			"unjoin) or "+membership.UnjoinForceFlag+" (delete them now). It shows what it waits for.\n\n"+
			"The hub runs the member's JobSets elsewhere only on proof that their copies there\n"+
			"stopped: unjoin gives it by deleting the copies, or, with "+membership.ConfirmCopiesStoppedFlag+",\n"+
			"on your word. With --keep-workloads it gives none: the hub waits, and the member's hub\n"+
			"namespace stays Terminating, until a later `unjoin --cluster-name <name>\n"+
			membership.ConfirmCopiesStoppedFlag+"` (or an unjoin without --keep-workloads).",
		`  # Drain the member, then unjoin it
  jobset-fleet-agent unjoin --hub-kubeconfig hub.kubeconfig --member-kubeconfig member.kubeconfig \
    --cluster-name member-1 --drain

  # The member is gone for good and its copies with it
  jobset-fleet-agent unjoin --hub-kubeconfig hub.kubeconfig --cluster-name member-1 --confirm-copies-stopped`,
		&fss, func(cmd *cobra.Command) error {
			if err := f.requireCluster(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			f.opts.Progress = out
			if doDrain {
				if f.opts.Force || f.opts.KeepWorkloads || f.opts.ConfirmCopiesStopped {
					return errors.New(membership.UnjoinDrainFlag + " does not go with " + membership.UnjoinForceFlag + ", --keep-workloads or " + membership.ConfirmCopiesStoppedFlag)
				}
				drain.Out = out
				f.opts.Drain = &drain
			}
			var hub, member client.Client
			var err error
			if f.opts.ConfirmCopiesStopped {
				if f.memberKubeconfig != "" || f.opts.KeepWorkloads || f.opts.RemoveCRDs {
					return errors.New(membership.ConfirmCopiesStoppedFlag + " works on the hub alone: drop --member-kubeconfig, --keep-workloads and --remove-crds " +
						"(to delete the copies through a reachable member, unjoin without " + membership.ConfirmCopiesStoppedFlag + ")")
				}
			} else if member, _, err = f.member(); err != nil {
				return err
			}
			if hub, _, err = f.hub(); err != nil {
				return err
			}
			if err := membership.Unjoin(cmd.Context(), hub, member, f.opts); err != nil {
				return err
			}
			fmt.Fprintf(out, "Removed %s from the fleet.\n", f.opts.ClusterName)
			if f.opts.KeepWorkloads {
				fmt.Fprintf(out, "Its JobSets keep running there, and the hub runs them nowhere else until you stop them and run\n"+
					"  jobset-fleet-agent unjoin --cluster-name %s %s\n", f.opts.ClusterName, membership.ConfirmCopiesStoppedFlag)
			}
			return nil
		})
}

var rotations = map[string]struct {
	to      membership.Rotation
	short   string
	long    string
	example string
}{
	"cordon": {membership.Cordoned, "Give a member no new JobSets; running ones stay",
		"Cordon a member: the hub places no new JobSets there; those running there stay.\n" +
			"Sets the label " + fleet.CordonedLabel + "=true on its ClusterProfile (and removes\n" +
			fleet.DrainingLabel + "). Needs only hub credentials. Idempotent.",
		"  jobset-fleet-agent cordon --hub-kubeconfig hub.kubeconfig --cluster-name member-1"},
	"uncordon": {membership.InRotation, "Put a cordoned or draining member back in rotation",
		"Put a cordoned or draining member back in rotation: removes the labels\n" +
			fleet.CordonedLabel + " and " + fleet.DrainingLabel + " from its ClusterProfile. Idempotent.",
		"  jobset-fleet-agent uncordon --hub-kubeconfig hub.kubeconfig --cluster-name member-1"},
	"drain": {membership.Draining, "Cordon a member, move its JobSets not started, wait for the rest",
		"Drain a member: cordon it and label it " + fleet.DrainingLabel + "=true, so the hub moves its\n" +
			"JobSets that have not started elsewhere, through the confirmed-stop path (never two copies).\n" +
			"JobSets that started are left to finish. Lists the member's dispatches as they change until\n" +
			"none is left, or until --timeout (then it exits non-zero and the member stays draining).\n" +
			"`uncordon` ends a drain.",
		"  # Drain, waiting up to an hour\n  jobset-fleet-agent drain --hub-kubeconfig hub.kubeconfig --cluster-name member-1 --timeout 1h"},
}

// rotationCommand is cordon, uncordon or drain: each sets the member's
// rotation on the hub; drain then watches the member empty.
func rotationCommand(verb string) *cobra.Command {
	var (
		f     membershipFlags
		fss   cliflag.NamedFlagSets
		drain = membership.DrainOptions{}
	)
	r := rotations[verb]
	f.addHubFlags(fss.FlagSet(sectionHub), "Kubeconfig of the hub, allowed to patch ClusterProfiles (required).")
	if r.to == membership.Draining {
		fs := fss.FlagSet(verb)
		fs.DurationVar(&drain.Timeout, "timeout", 10*time.Minute, "How long to show progress and wait for the member to hold no dispatch; 0: show it once and return.")
		fs.DurationVar(&drain.Interval, "interval", 2*time.Second, "How often to list the member's dispatches.")
	}
	return subcommand(verb, r.short, r.long, r.example, &fss, func(cmd *cobra.Command) error {
		if err := f.requireCluster(); err != nil {
			return err
		}
		hub, _, err := f.hub()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		return setRotation(ctx, cmd.OutOrStdout(), hub, f.opts, r.to, drain)
	})
}

func setRotation(ctx context.Context, out io.Writer, hub client.Client, opts membership.Options, r membership.Rotation, drain membership.DrainOptions) error {
	if r == membership.Draining {
		drain.Out = out
		return membership.Drain(ctx, hub, opts, drain)
	}
	if err := membership.SetRotation(ctx, hub, opts, r); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is %s.\n", opts.ClusterName, r)
	return nil
}

func caData(cfg *rest.Config) ([]byte, error) {
	if len(cfg.CAData) > 0 || cfg.CAFile == "" {
		return cfg.CAData, nil
	}
	data, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("hub CA file: %w", err)
	}
	return data, nil
}
