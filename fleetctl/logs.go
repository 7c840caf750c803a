package fleetctl

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// podSelection is the flags that pick Pods of a JobSet as its users think
// of them.
type podSelection struct {
	replicatedJob string
	jobIndex      int
	podIndex      int
	pod           string
}

func (s *podSelection) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.replicatedJob, "replicated-job", "", "Only Pods of this replicated Job.")
	fs.IntVar(&s.jobIndex, "job-index", -1, "Only Pods of the Job with this index within its replicated Job.")
	fs.IntVar(&s.podIndex, "pod-index", -1, "Only Pods with this completion index within their Job.")
	fs.StringVar(&s.pod, "pod", "", "Only the Pod of this name.")
}

func (s *podSelection) params(r *rest.Request) *rest.Request {
	if s.replicatedJob != "" {
		r = r.Param(fleet.RelayParamReplicatedJob, s.replicatedJob)
	}
	if s.jobIndex >= 0 {
		r = r.Param(fleet.RelayParamJobIndex, strconv.Itoa(s.jobIndex))
	}
	if s.podIndex >= 0 {
		r = r.Param(fleet.RelayParamPodIndex, strconv.Itoa(s.podIndex))
	}
	if s.pod != "" {
		r = r.Param(fleet.RelayParamPod, s.pod)
	}
	return r
}

// relayClient is a REST client for the hub's relay API.
func (o *Options) relayClient() (*rest.Config, rest.Interface, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/apis"
	cfg.GroupVersion = nil
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(cfg)
	return cfg, rc, err
}

// relayRequest is verb on jobsets/<name>/<sub> of the relay API.
func relayRequest(rc rest.Interface, verb, ns, name, sub string) *rest.Request {
	return rc.Verb(verb).AbsPath("/apis", fleet.RelayGroup, fleet.RelayVersion, "namespaces", ns, fleet.RelayJobSets, name, sub)
}

type logsOptions struct {
	podSelection
	container string
	follow    bool
	previous  bool
	since     time.Duration
	tail      int64
	timestamp bool
}

func newLogsCommand(o *Options) *cobra.Command {
	l := &logsOptions{tail: -1}
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the logs of a fleet JobSet's Pods, wherever it runs",
		Long: `logs prints the logs of the Pods of a fleet JobSet, each line prefixed with
[pod/container], through the hub: the member's agent serves them over the
connection it holds to the hub, so you need no credentials for the member,
only the hub RBAC verb get on jobsets/log in group ` + fleet.RelayGroup + `.
Without a selection, every Pod and container of the JobSet.`,
		Example: `  kubectl fleet logs trainer
  kubectl fleet logs trainer --replicated-job workers --job-index 0 -f
  kubectl fleet logs trainer --pod-index 0 --tail 20 --since 10m -c main`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			_, rc, err := o.relayClient()
			if err != nil {
				return err
			}
			return l.run(cmd.Context(), rc, ns, args[0], o.Out)
		},
	}
	l.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&l.container, "container", "c", "", "Only this container (default: every container of each Pod).")
	cmd.Flags().BoolVarP(&l.follow, "follow", "f", false, "Keep streaming new lines.")
	cmd.Flags().BoolVarP(&l.previous, "previous", "p", false, "The previous instance of each container.")
	cmd.Flags().DurationVar(&l.since, "since", 0, "Only lines newer than this (5s, 2m, 3h).")
	cmd.Flags().Int64Var(&l.tail, "tail", l.tail, "Only the last lines of each container; -1: all.")
	cmd.Flags().BoolVar(&l.timestamp, "timestamps", false, "Include each line's timestamp.")
	return cmd
}

func (l *logsOptions) run(ctx context.Context, rc rest.Interface, ns, name string, out io.Writer) error {
	r := l.params(relayRequest(rc, "GET", ns, name, fleet.RelayLog))
	if l.container != "" {
		r = r.Param("container", l.container)
	}
	if l.follow {
		r = r.Param("follow", "true")
	}
	if l.previous {
		r = r.Param("previous", "true")
	}
	if l.timestamp {
		r = r.Param("timestamps", "true")
	}
	if l.since > 0 {
		r = r.Param("sinceSeconds", strconv.FormatInt(int64((l.since+time.Second-1)/time.Second), 10))
	}
	if l.tail >= 0 {
		r = r.Param("tailLines", strconv.FormatInt(l.tail, 10))
	}
	body, err := r.Stream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	if _, err := io.Copy(out, body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading logs: %w", err)
	}
	return nil
}
