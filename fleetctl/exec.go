package fleetctl

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// ExitError is a command's non-zero exit status in the Pod; the plugin
// exits with it.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("command terminated with exit code %d", e.Code) }

func newExecCommand(o *Options) *cobra.Command {
	var (
		sel       podSelection
		container string
		stdin     bool
		tty       bool
	)
	cmd := &cobra.Command{
		Use:   "exec NAME [selection] -- COMMAND [ARG...]",
		Short: "Run a command in a Pod of a fleet JobSet, wherever it runs",
		Long: `exec runs a command in one Pod of a fleet JobSet through the hub: the first
Pod the selection matches (ordered by replicated Job, Job index, Pod index).
The member's agent runs it over the connection it holds to the hub, so you
need no credentials for the member, only the hub RBAC verb create on
jobsets/exec in group ` + fleet.RelayGroup + `. The hub records every exec
as an event on the JobSet.`,
		Example: `  kubectl fleet exec trainer -- echo hello
  kubectl fleet exec trainer --replicated-job workers --job-index 1 -- cat /etc/hostname
  kubectl fleet exec trainer -i -t -- sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("give the JobSet's name, then -- and the command")
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			cfg, rc, err := o.relayClient()
			if err != nil {
				return err
			}
			r := sel.params(relayRequest(rc, "POST", ns, args[0], fleet.RelayExec)).
				Param("stdout", "true").Param("stderr", fmt.Sprint(!tty)).
				Param("stdin", fmt.Sprint(stdin)).Param("tty", fmt.Sprint(tty))
			if container != "" {
				r = r.Param("container", container)
			}
			for _, c := range args[1:] {
				r = r.Param("command", c)
			}
			ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", r.URL())
			if err != nil {
				return err
			}
			streams := remotecommand.StreamOptions{Stdout: o.Out, Tty: tty}
			if !tty {
				streams.Stderr = o.ErrOut
			}
			if stdin {
				streams.Stdin = o.In
			}
			err = ex.StreamWithContext(cmd.Context(), streams)
			var exit exec.CodeExitError
			if errors.As(err, &exit) {
				return ExitError{Code: exit.Code}
			}
			return err
		},
	}
	sel.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&container, "container", "c", "", "The container (default: the Pod's default container).")
	cmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "Pass stdin to the command.")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "Allocate a TTY.")
	return cmd
}
