package fleetctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

func newWhyCommand(o *Options) *cobra.Command {
	var policy string
	cmd := &cobra.Command{
		Use:   "why NAME",
		Short: "Explain why a JobSet waits, or runs where it does",
		Long: `why explains a JobSet's placement: the hub's Dispatched and
MemberStatusStale conditions, each member's verdict from the hub's last
PlacementDecision, and, when you can read the fleet's ClusterProfiles, each
member's verdict if the JobSet were placed now (the hub's own placement code,
hub/placement.Place, over the members as hub/inventory assesses them).`,
		Example: `  kubectl fleet why trainer
  kubectl fleet why trainer -n research`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := placement.ParsePolicy(policy)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			view, err := readJobSetView(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			now, nowErr := o.placeNow(cmd.Context(), c, view.JobSet, pol)
			return Why(o.Out, view, now, nowErr, o.Now())
		},
	}
	cmd.Flags().StringVar(&policy, "placement-policy", string(placement.Spread), "The hub's --placement-policy (spread or binpack), for the verdicts now.")
	return cmd
}

func newWhatIfCommand(o *Options) *cobra.Command {
	var file, policy string
	cmd := &cobra.Command{
		Use:   "what-if -f FILE",
		Short: "Show where a JobSet would run now, and why not elsewhere, without creating it",
		Long: `what-if runs the hub's placement code (hub/placement.Place) for the JobSet
in FILE against the members as the hub's inventory assesses them now, and
prints the member it would choose and every other member's verdict. Nothing
is created. It does not know the fleet queue, nor what the hub dispatched
that members have not reported yet: a busy fleet may place differently.`,
		Example: `  kubectl fleet what-if -f jobset.yaml
  kubectl fleet what-if -f jobset.yaml -n research --placement-policy binpack
  cat jobset.yaml | kubectl fleet what-if -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pol, err := placement.ParsePolicy(policy)
			if err != nil {
				return err
			}
			if file == "" {
				return fmt.Errorf("-f FILE is required")
			}
			js, err := readJobSetFile(file, o.In)
			if err != nil {
				return err
			}
			if js.Namespace == "" {
				if js.Namespace, err = o.namespace(); err != nil {
					return err
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			res, err := o.placeNow(cmd.Context(), c, js, pol)
			if err != nil {
				return err
			}
			return WhatIf(o.Out, js, res)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "The JobSet manifest (- for stdin).")
	cmd.Flags().StringVar(&policy, "placement-policy", string(placement.Spread), "The hub's --placement-policy: spread or binpack.")
	return cmd
}

func readJobSetFile(path string, stdin io.Reader) (*jobset.JobSet, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	obj, gvk, err := serializer.NewCodecFactory(api.NewScheme()).UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	js, ok := obj.(*jobset.JobSet)
	if !ok {
		return nil, fmt.Errorf("reading %s: want a %s JobSet, got %s", path, jobset.GroupVersion, gvk)
	}
	return js, nil
}

// placeNow runs the hub's placement for js over the members as the hub's
// inventory assesses them now, with each member's load counted from the
// hub JobSets placed there (when the user may list them).
func (o *Options) placeNow(ctx context.Context, c client.Client, js *jobset.JobSet, policy placement.Policy) (placement.Result, error) {
	views, err := o.readMembers(ctx, c)
	if err != nil {
		return placement.Result{}, err
	}
	members := make([]inventory.Member, 0, len(views))
	for _, v := range views {
		members = append(members, v.Member)
	}
	load, err := jobSetCounts(ctx, c)
	if err != nil && !apierrors.IsForbidden(err) {
		return placement.Result{}, err
	}
	return placement.Place(placement.Request{JobSet: js, Members: members, Load: load, Policy: policy})
}

// WhatIf writes the answer of what-if.
func WhatIf(out io.Writer, js *jobset.JobSet, res placement.Result) error {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	if res.Cluster != "" {
		fmt.Fprintf(w, "JobSet %s/%s would run on %s: %s\n", js.Namespace, js.Name, res.Cluster, oneLine(res.Reason()))
	} else {
		fmt.Fprintf(w, "JobSet %s/%s fits no member now: it would wait at the hub (NoFit).\n", js.Namespace, js.Name)
	}
	if res.Note != "" {
		fmt.Fprintf(w, "Note: %s\n", res.Note)
	}
	writeResult(w, res)
	fmt.Fprintf(w, "Nothing was created.\n")
	return w.Flush()
}

func writeResult(w io.Writer, res placement.Result) {
	if len(res.Requests) > 0 {
		fmt.Fprintf(w, "Requests (all pods at once):\t%s\n", formatResources(res.Requests))
	}
	if len(res.Verdicts) == 0 {
		fmt.Fprintf(w, "No member clusters in the fleet.\n")
		return
	}
	fmt.Fprintf(w, "MEMBER\tFITS\tVERDICT\n")
	for _, v := range res.Verdicts {
		fits := "no"
		if v.Fits {
			fits = "yes"
		}
		if v.Cluster == res.Cluster {
			fits = "chosen"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", v.Cluster, fits, oneLine(v.Reason))
	}
}

// Why writes the answer of why. now is the placement if made now (its
// error, when the members cannot be read, is said instead).
func Why(out io.Writer, v JobSetView, now placement.Result, nowErr error, at time.Time) error {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	js := v.JobSet
	fs := fleetStatus(js)
	key := js.Namespace + "/" + js.Name
	d := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched)
	switch {
	case js.Status.TerminalState != "":
		fmt.Fprintf(w, "JobSet %s finished: %s", key, js.Status.TerminalState)
		if fs.Cluster != "" {
			fmt.Fprintf(w, " on %s (epoch %d)", fs.Cluster, fs.Epoch)
		}
		fmt.Fprintln(w, ".")
	case d == nil:
		fmt.Fprintf(w, "JobSet %s is not placed yet: the hub has not set its %s condition (is the hub running, and spec.managedBy %q?).\n", key, fleet.ConditionDispatched, fleet.ManagedByFleet)
	case d.Status == metav1.ConditionTrue:
		fmt.Fprintf(w, "JobSet %s runs on %s (epoch %d) since %s ago: %s\n", key, fs.Cluster, fs.Epoch, age(d.LastTransitionTime, at), oneLine(d.Message))
	default:
		fmt.Fprintf(w, "JobSet %s waits (%s, since %s ago): %s\n", key, d.Reason, age(d.LastTransitionTime, at), oneLine(d.Message))
	}
	if s := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionMemberStatusStale); s != nil && s.Status == metav1.ConditionTrue {
		fmt.Fprintf(w, "Its status may be out of date (%s): %s\n", s.Reason, oneLine(s.Message))
	}
	for _, wd := range fs.Withdrawals {
		fmt.Fprintf(w, "Withdrawn from %s (epoch %d) %s ago: no Pod started within the start deadline.\n", wd.Cluster, wd.Epoch, age(wd.Time, at))
	}

	fmt.Fprintf(w, "\nThe hub's last placement decision:\n")
	writeDecision(w, v)

	fmt.Fprintf(w, "\nIf placed now (hub/placement over the members as the hub assesses them;\nthe queue and recent, unreported dispatches are not counted):\n")
	if nowErr != nil {
		fmt.Fprintf(w, "  <not available: %s>\n", FormatError(nowErr))
	} else {
		writeResult(w, now)
	}
	return w.Flush()
}

// formatResources is "cpu=4, memory=16Gi", sorted by name.
func formatResources(l corev1.ResourceList) string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, string(n))
	}
	sort.Strings(names)
	for i, n := range names {
		q := l[corev1.ResourceName(n)]
		names[i] = n + "=" + q.String()
	}
	return strings.Join(names, ", ")
}
