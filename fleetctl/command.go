// Package fleetctl is the kubectl-fleet plugin: read-only views of the
// fleet from the hub (where a JobSet runs, why it waits, what the members
// can take, where a JobSet would go) using the hub's own inventory
// assessment and placement code, with the user's hub credentials only.
package fleetctl

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Options are the flags every verb shares.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams

	// InventoryNamespace holds the fleet's ClusterProfiles.
	InventoryNamespace string
	// HeartbeatTimeout and MemberLostTimeout are the hub's (its defaults);
	// members are judged with them.
	HeartbeatTimeout  time.Duration
	MemberLostTimeout time.Duration

	// Now is the clock (tests fix it).
	Now func() time.Time
}

// NewCommand is `kubectl fleet` with its verbs.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{
		ConfigFlags:        genericclioptions.NewConfigFlags(true),
		IOStreams:          streams,
		InventoryNamespace: fleet.DefaultInventoryNamespace,
		HeartbeatTimeout:   30 * time.Second,
		MemberLostTimeout:  60 * time.Second,
		Now:                time.Now,
	}
	cmd := &cobra.Command{
		Use:   "kubectl-fleet",
		Short: "See where fleet JobSets run, why they wait, and what the members can take",
		Long: `kubectl fleet shows the jobset-fleet hub's view of the fleet: where each
JobSet runs, why it waits, each member's health and free capacity, and where a
new JobSet would go. It reads the hub only, with your hub credentials; it needs
no credentials for member clusters and changes nothing.`,
		Example: `  kubectl fleet get jobsets -A
  kubectl fleet describe jobset trainer -n research
  kubectl fleet members -o wide
  kubectl fleet why trainer
  kubectl fleet what-if -f jobset.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.InventoryNamespace, "inventory-namespace", o.InventoryNamespace, "Hub namespace of the fleet's ClusterProfiles.")
	cmd.PersistentFlags().DurationVar(&o.HeartbeatTimeout, "heartbeat-timeout", o.HeartbeatTimeout, "How long a member's heartbeat stays fresh (the hub's --heartbeat-timeout).")
	cmd.PersistentFlags().DurationVar(&o.MemberLostTimeout, "member-lost-timeout", o.MemberLostTimeout, "When a silent member counts as lost (the hub's --member-lost-timeout).")
	cmd.AddCommand(newGetCommand(o), newDescribeCommand(o), newMembersCommand(o), newWhyCommand(o), newWhatIfCommand(o),
		newLogsCommand(o), newExecCommand(o))
	return cmd
}

// client is an uncached client for the hub with the fleet's scheme.
func (o *Options) client() (client.Client, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: api.NewScheme()})
}

// namespace is -n, else the kubeconfig context's namespace, else "default".
func (o *Options) namespace() (string, error) {
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// FormatError is what the plugin prints for an error: the API server's
// message as kubectl shows it ("Error from server (Forbidden): ..."), no
// stack, no usage.
func FormatError(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		reason := string(s.Reason)
		if reason == "" {
			reason = "Unknown"
		}
		msg := s.Message
		if apierrors.IsForbidden(err) {
			msg += "\n(ask the hub's administrator for RBAC to read this; kubectl fleet only reads)"
		}
		return fmt.Sprintf("Error from server (%s): %s", reason, msg)
	}
	return "error: " + err.Error()
}

// Main runs the plugin and returns its exit code.
func Main(streams genericiooptions.IOStreams, args []string) int {
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		var exit ExitError
		if errors.As(err, &exit) {
			return exit.Code
		}
		_, _ = io.WriteString(streams.ErrOut, FormatError(err)+"\n")
		return 1
	}
	return 0
}
